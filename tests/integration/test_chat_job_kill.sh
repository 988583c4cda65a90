#!/usr/bin/env bash
# A chat Job killed with SIGKILL and restarted loses nothing: ZooKeeper, one `magnetar
# standalone` on it (broker, chat gateway, push API; --chat-job off) and `magnetar job`
# processes on the same ZooKeeper, started and killed by tests/chat/js/job_kill.test.js
# (node:test, ws): 400 numbered messages pushed at ~100/s, the Job SIGKILLed after 150 and
# restarted ~2 s later; then two Jobs at once, the active one killed (Failover hands over). The
# clients must get every message once, in order. Every wait is bounded.
# Needs node, tests/chat/js/node_modules (scripts/setup-node.sh) and Debian's zookeeper package.
# Usage: test_chat_job_kill.sh /path/to/magnetar
source "$(dirname "$0")/lib.sh"
MG=${1:?usage: test_chat_job_kill.sh /path/to/magnetar}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
JS=$ROOT/tests/chat/js

stop_here() { t_end; exit $?; }

# Jobs the Node test started (their pids in $T_TMP/jobs.pids) are killed with the rest.
kill_jobs() {
  local p
  [ -f "$T_TMP/jobs.pids" ] || return 0
  while read -r p; do [ -n "$p" ] && kill -KILL "$p" 2>/dev/null; done <"$T_TMP/jobs.pids"
  return 0
}
trap 'kill_jobs; t_cleanup' EXIT

# --- Prerequisites: a missing one is a failure that says what to do, not a silent skip.
if ! command -v node >/dev/null 2>&1; then
  t_fail "node is installed (run scripts/setup-node.sh)"; stop_here
fi
if [ ! -f "$JS/node_modules/ws/package.json" ]; then
  t_fail "ws is installed in tests/chat/js/node_modules (run scripts/setup-node.sh)"; stop_here
fi
if ! command -v java >/dev/null 2>&1 || [ ! -f /usr/share/java/zookeeper.jar ]; then
  t_fail "ZooKeeper is installed (apt-get install zookeeper)"; stop_here
fi
if ! "$MG" job --help 2>&1 | grep -q -- '--metadata-url'; then
  t_fail "magnetar has the job command"; stop_here
fi

if ! t_zk_start; then t_fail "ZooKeeper server starts"; stop_here; fi
t_ok "ZooKeeper on port $ZK_PORT"
MD_URL=zk:127.0.0.1:$ZK_PORT

# Every port option of standalone gets 0 (a free port), found in --help so later ones are too.
PORTS=()
for opt in $("$MG" standalone --help 2>&1 | grep -oE -- '--[a-z-]+-port' | sort -u); do
  PORTS+=("$opt" 0)
done

LOG=$T_TMP/standalone.log
"$MG" standalone --data-dir "$T_TMP/data" --bind-address 127.0.0.1 "${PORTS[@]}" \
  --default-retention-time-minutes 60 --journal-segment-mb 16 --metadata-url "$MD_URL" \
  $T_SA_ARGS --chat-job off >"$LOG" 2>&1 &
SPID=$!; T_PIDS+=("$SPID")
for ((i = 0; i < 300; i++)); do
  grep -q 'ready' "$LOG" 2>/dev/null && break
  kill -0 "$SPID" 2>/dev/null || break
  sleep 0.1
done
READY=$(grep -m1 'ready' "$LOG" 2>/dev/null)
BPORT=$(grep -oE 'pulsar://127\.0\.0\.1:[0-9]+' <<<"$READY" | head -1 | sed 's/.*://')
HTTP_PORT=$(grep -oE 'http://127\.0\.0\.1:[0-9]+' <<<"$READY" | head -1 | sed 's/.*://')
WS_PORT=$(grep -oE 'WebSocket [0-9]+' <<<"$READY" | grep -oE '[0-9]+')
if [ -z "$BPORT" ] || [ -z "$HTTP_PORT" ] || [ -z "$WS_PORT" ]; then
  t_fail "standalone on ZooKeeper ready with its broker, HTTP and chat WebSocket ports named"
  tail -n 5 "$LOG" | sed 's/^/    /'
  stop_here
fi
t_ok "standalone on ZooKeeper ready (broker $BPORT, HTTP $HTTP_PORT, chat WebSocket $WS_PORT)"

# The Node test: one TAP line per case becomes one ok/FAIL here.
OUT=$T_TMP/job_kill.tap
MG_BIN=$MG MG_METADATA_URL=$MD_URL MG_SERVICE_URL=pulsar://127.0.0.1:$BPORT \
  MG_HTTP_PORT=$HTTP_PORT MG_WS_PORT=$WS_PORT MG_TMP=$T_TMP \
  timeout 300 node --test --test-reporter=tap "$JS/job_kill.test.js" >"$OUT" 2>&1
RC=$?
kill_jobs
t_tap "$OUT" "job kill"
cases=$T_TAP_CASES
if [ "$RC" != 0 ] || [ "$cases" = 0 ]; then
  [ "$cases" = 0 ] && t_fail "job_kill.test.js ran its cases (exit $RC)"
  echo "    job_kill.test.js output (failures):"
  grep -E '^\s*(not ok|error:|[+-] |  +[A-Za-z(].*(got|wanted|position))' "$OUT" | head -n 40 | sed 's/^/    /'
  for f in "$T_TMP"/job-*.log; do
    [ -f "$f" ] || continue
    echo "    $(basename "$f") (last lines):"; tail -n 4 "$f" | sed 's/^/      /'
  done
  echo "    standalone log (last lines):"
  tail -n 8 "$LOG" | sed 's/^/    /'
fi
grep -E '^\s*# (note|timing):' "$OUT" | sed 's/^\s*/    /'
kill -TERM "$SPID" 2>/dev/null
t_wait_exit "$SPID" 20 || kill -KILL "$SPID" 2>/dev/null
stop_here
