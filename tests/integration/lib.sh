# Helpers for the shell integration tests. Each test sources this, calls `t_begin NAME` per
# case and ends with `t_end`, which prints "N passed, N failed" and sets the exit status.
set -u
T_PASS=0
T_FAIL=0
T_TMP=$(mktemp -d "${TMPDIR:-/tmp}/magnetar-test.XXXXXX")
T_PIDS=()
# Arguments appended to every `magnetar standalone` the scripts start, from
# MG_TEST_STANDALONE_ARGS (ctest's *_prefetch_off entries set "--prefetch off"): the same tests
# then run in another mode of the broker. Scripts write it unquoted, last on the command line,
# so it splits into words (no quoting inside; a later flag overrides an earlier one).
T_SA_ARGS=${MG_TEST_STANDALONE_ARGS:-}

t_cleanup() {
  local p
  for p in "${T_PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  rm -rf "$T_TMP"
}
trap t_cleanup EXIT

t_ok() { T_PASS=$((T_PASS + 1)); echo "ok   - $*"; }
t_fail() { T_FAIL=$((T_FAIL + 1)); echo "FAIL - $*"; }

# t_check DESCRIPTION COMMAND...: passes when the command succeeds.
t_check() {
  local what=$1; shift
  if "$@"; then t_ok "$what"; else t_fail "$what"; fi
}

# t_wait_for FILE PATTERN SECONDS: waits until FILE has a line matching PATTERN (bounded).
t_wait_for() {
  local file=$1 pattern=$2 limit_s=$3 i
  for ((i = 0; i < limit_s * 10; i++)); do
    grep -qE "$pattern" "$file" 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}

# t_wait_exit PID SECONDS: waits for a child to exit (bounded); its status is in T_STATUS.
t_wait_exit() {
  local pid=$1 limit_s=$2 i
  for ((i = 0; i < limit_s * 10; i++)); do
    if ! kill -0 "$pid" 2>/dev/null; then
      wait "$pid"; T_STATUS=$?
      return 0
    fi
    sleep 0.1
  done
  T_STATUS=-1
  return 1
}

# t_tap FILE PREFIX: one ok/FAIL per top-level case of a TAP report (node --test
# --test-reporter=tap), named "PREFIX: <case>"; sets T_TAP_CASES to how many there were.
t_tap() {
  local file=$1 prefix=$2 line
  T_TAP_CASES=0
  while IFS= read -r line; do
    if [[ $line =~ ^ok\ [0-9]+\ -\ (.*)$ ]]; then
      t_ok "$prefix: ${BASH_REMATCH[1]}"; T_TAP_CASES=$((T_TAP_CASES + 1))
    elif [[ $line =~ ^not\ ok\ [0-9]+\ -\ (.*)$ ]]; then
      t_fail "$prefix: ${BASH_REMATCH[1]}"; T_TAP_CASES=$((T_TAP_CASES + 1))
    fi
  done <"$file"
}

t_end() {
  echo "$T_PASS passed, $T_FAIL failed"
  [ "$T_FAIL" = 0 ]
}

# t_zk_start: starts a ZooKeeper server (Debian's zookeeper package) on a free loopback port
# with a data directory under $T_TMP; sets ZK_PORT and ZK_PID. Readiness: `srvr` reports a Mode
# (ZooKeeper does once it serves sessions). Every probe is bounded, since a port taken by some
# other server may accept and never answer; a server that dies (port in use) is retried on
# another port.
t_zk_probe() {
  timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1 && printf srvr >&3 && grep -q Mode <&3" 2>/dev/null
}

t_zk_start() {
  local dir attempt i
  for attempt in 1 2 3; do
    dir=$T_TMP/zk$attempt
    mkdir -p "$dir/data"
    ZK_PORT=$(( 20000 + RANDOM % 20000 ))
    if (exec 3<>"/dev/tcp/127.0.0.1/$ZK_PORT") 2>/dev/null; then continue; fi  # taken
    cat >"$dir/zoo.cfg" <<CFG
tickTime=500
dataDir=$dir/data
clientPortAddress=127.0.0.1
clientPort=$ZK_PORT
admin.enableServer=false
minSessionTimeout=1000
maxSessionTimeout=60000
4lw.commands.whitelist=ruok,srvr
CFG
    java -cp "/etc/zookeeper/conf:/usr/share/java/zookeeper.jar" \
      -Dzookeeper.admin.enableServer=false org.apache.zookeeper.server.ZooKeeperServerMain \
      "$dir/zoo.cfg" >"$dir/zk.log" 2>&1 &
    ZK_PID=$!; T_PIDS+=("$ZK_PID")
    for ((i = 0; i < 150; i++)); do
      kill -0 "$ZK_PID" 2>/dev/null || break
      if t_zk_probe "$ZK_PORT"; then return 0; fi
      sleep 0.2
    done
    kill -KILL "$ZK_PID" 2>/dev/null
    echo "ZooKeeper attempt $attempt on port $ZK_PORT failed; its log:"; tail -5 "$dir/zk.log"
  done
  return 1
}
