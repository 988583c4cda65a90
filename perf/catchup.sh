#!/usr/bin/env bash
# The catch-up benchmark of ../shared/BENCHMARKS.md (workloads 1-3) on this machine, in one run:
#   0. fio's sequential read (1 MiB, O_DIRECT, libaio depth 16) in the data directory: the disk's
#      limit, measured again at the end; the mean of the two is disk_seq_read_mb_s;
#   1. a throw-away `magnetar standalone` in a temporary directory on the real disk, and one
#      backlog topic B of --backlog-mb MiB of 1 KiB messages, batched, larger than every cache
#      budget of the standalone;
#   then for each prefetch mode (--modes, "on off"; the standalone restarted with --prefetch MODE
#   before each phase, so no phase inherits another's caches):
#   2. cold drain (workload 1): caches dropped, one new subscription drains all of B from the
#      earliest message; drain MB/s, the standalone's CPU seconds per GiB delivered, and from
#      its /metrics the bytes the bookie read from disk per byte delivered and per disk read;
#   3. isolation (workload 2): topic A, a producer at a fixed rate and a tail consumer, alone for
#      --phase-duration, then again while 4 new subscriptions drain B cold at full speed;
#      publish and end-to-end p50/p99/p99.9 and their ratios during/alone;
#   4. the same drain on NATS JetStream (file storage, same disk, same messages, server restarted
#      and caches dropped) through perf_nats_drain, and the ratio of our drain to it.
# Writes a JSON result (--json, default perf/results/catchup-<date>.json), prints a summary table
# and draws a PNG beside the JSON with gnuplot (perf/catchup.gnuplot). MB are 10^6 bytes, MiB and
# GiB 2^20 and 2^30. Load generators run under `nice -n 10`; the standalone and nats-server
# never get special priority. Every wait is bounded; the servers are stopped, the load generators
# ended and the directory removed however the run ends.
set -u

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=$ROOT/build/magnetar
NATS_BIN=$ROOT/build/perf/perf_nats_drain
BASE=/var/tmp
BACKLOG_MB=4096
PHASE=30s
JSON=
NATS=1
MODES_ARG="on off"
TAIL_CACHE_MB=
PREFETCH_MB=
FIO_SIZE=1G
TAIL_RATE=5000      # msg/s on topic A: BENCHMARKS.md's "fixed rate", far below the maximum
DRAINERS=4          # subscriptions draining B during the isolation phase (workload 2)
QUEUE=5000          # flow permits of a draining consumer: enough to never starve the dispatcher
MSG_SIZE=1024
SA_EXTRA=()
READY_WAIT_S=180    # a restart opens RocksDB and recovers the ledgers of a multi-GiB backlog
STOP_WAIT_S=60      # SIGTERM: the bookie flushes its write cache and closes its storage
CONSUMER_READY_S=60 # a subscription is created in one round trip; a minute means a dead broker
DRAIN_ROUNDS_MAX=100 # per drainer and phase: a bound on restarts when B drains faster than D
NICE=(nice -n 10)

usage() {
  cat <<EOF
Usage: perf/catchup.sh [options]

Runs the catch-up benchmark (BENCHMARKS.md workloads 1-3, and the NATS JetStream peer) against a
fresh standalone in a temporary directory on the real disk: fio's sequential read, a backlog of
1 KiB messages, then per prefetch mode a cold drain and the tail-isolation phases. Needs root
(it drops the page cache before every cold read) and installs jq, fio, gnuplot-nox, nats-server
and libnats-dev with apt-get when they are missing.

Options:
  --backlog-mb N       size of the backlog topic in MiB of payload (default 4096)
  --phase-duration D   length of each isolation phase: 30s, 2m, ... (default 30s)
  --modes "on off"     prefetch modes to run, in order (default "on off")
  --dir DIR            parent of the temporary directory (default /var/tmp; not tmpfs)
  --bin PATH           the magnetar executable (default build/magnetar)
  --nats-bin PATH      the NATS client (default build/perf/perf_nats_drain)
  --json FILE          result file (default perf/results/catchup-<date>.json); the PNG and
                       the plotted series go beside it (FILE without .json, plus .png and -data/)
  --no-nats            skip the NATS JetStream peer
  --tail-cache-mb N    the standalone's tail cache budget (default: its own default)
  --prefetch-mb N      the standalone's prefetch budget (default: its own default)
  --fio-size SIZE      fio's file (default 1G)
  --standalone-arg ARG pass ARG to \`magnetar standalone\` (repeat it)
  --help               this help

The --prefetch, --tail-cache-mb and --prefetch-mb options are passed to the standalone only if
\`magnetar standalone --help\` lists them; without --prefetch a single mode runs with no flag
and the result says so ("prefetch_option": false).
EOF
}

while [ $# -gt 0 ]; do
  case "$1" in
    --help|-h) usage; exit 0 ;;
    --backlog-mb) BACKLOG_MB=${2:?--backlog-mb needs a number}; shift 2 ;;
    --phase-duration) PHASE=${2:?--phase-duration needs a value}; shift 2 ;;
    --modes) MODES_ARG=${2?--modes needs a list}; shift 2 ;;
    --dir) BASE=${2:?--dir needs a directory}; shift 2 ;;
    --bin) BIN=${2:?--bin needs a path}; shift 2 ;;
    --nats-bin) NATS_BIN=${2:?--nats-bin needs a path}; shift 2 ;;
    --json) JSON=${2:?--json needs a file}; shift 2 ;;
    --no-nats) NATS=0; shift ;;
    --tail-cache-mb) TAIL_CACHE_MB=${2:?--tail-cache-mb needs a number}; shift 2 ;;
    --prefetch-mb) PREFETCH_MB=${2:?--prefetch-mb needs a number}; shift 2 ;;
    --fio-size) FIO_SIZE=${2:?--fio-size needs a size}; shift 2 ;;
    --standalone-arg) SA_EXTRA+=("${2:?--standalone-arg needs a value}"); shift 2 ;;
    --standalone-arg=*) SA_EXTRA+=("${1#--standalone-arg=}"); shift ;;
    *) echo "perf/catchup.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
done

say() { printf '%s catchup: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { say "$*"; exit 1; }

# Seconds in a duration as the perf tools take it (500ms, 30s, 2m, 1h; a bare number is seconds),
# rounded up: every bound below is whole seconds.
duration_s() {
  local d=$1 n unit
  [[ $d =~ ^([0-9]+)(ms|s|m|h)?$ ]] || return 1
  n=${BASH_REMATCH[1]} unit=${BASH_REMATCH[2]:-s}
  case "$unit" in
    ms) echo $(((n + 999) / 1000)) ;;
    s) echo "$n" ;;
    m) echo $((n * 60)) ;;
    h) echo $((n * 3600)) ;;
  esac
}

if ! [[ $BACKLOG_MB =~ ^[0-9]+$ ]] || [ "$BACKLOG_MB" -lt 1 ]; then
  die "--backlog-mb needs a positive integer"
fi
if ! PHASE_S=$(duration_s "$PHASE") || [ "$PHASE_S" -lt 1 ]; then
  die "--phase-duration: '$PHASE' is not a duration like 30s or 2m"
fi
for v in "$TAIL_CACHE_MB" "$PREFETCH_MB"; do
  [ -z "$v" ] || [[ $v =~ ^[0-9]+$ ]] || die "--tail-cache-mb and --prefetch-mb need integers"
done
[ "$(id -u)" = 0 ] || die "must run as root: every cold read starts with echo 3 > /proc/sys/vm/drop_caches"
[ -x "$BIN" ] || die "$BIN is not an executable; build first (cmake --build build) or pass --bin"

# --- tools ----------------------------------------------------------------------------------
APT_UPDATED=0
apt_install() {
  say "installing Debian package(s) $* (missing)"
  if [ "$APT_UPDATED" = 0 ]; then
    DEBIAN_FRONTEND=noninteractive timeout 300 apt-get update -qq >&2 || true
    APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -qq "$@" >&2
}
command -v jq >/dev/null 2>&1 || apt_install jq || die "jq is needed (Debian package jq)"
command -v fio >/dev/null 2>&1 || apt_install fio || die "fio is needed (Debian package fio)"
command -v curl >/dev/null 2>&1 || apt_install curl || die "curl is needed (Debian package curl)"
command -v gnuplot >/dev/null 2>&1 || apt_install gnuplot-nox ||
  say "gnuplot is missing and could not be installed: no PNG this run"
NOTES=()
[ "$NATS" = 1 ] || NOTES+=("NATS peer skipped (--no-nats)")
if [ "$NATS" = 1 ]; then
  command -v nats-server >/dev/null 2>&1 || apt_install nats-server || true
  [ -f /usr/include/nats/nats.h ] || apt_install libnats-dev || true
  if [ ! -x "$NATS_BIN" ] && [ -f /usr/include/nats/nats.h ] && [ -d "$ROOT/build" ]; then
    # The target exists only when CMake saw libnats; building it re-runs the configure step.
    say "building perf_nats_drain"
    timeout 600 cmake --build "$ROOT/build" --target perf_nats_drain >&2 || true
  fi
  if ! command -v nats-server >/dev/null 2>&1; then
    NATS=0 NOTES+=("NATS peer skipped: nats-server is not installed")
  elif [ ! -x "$NATS_BIN" ]; then
    NATS=0 NOTES+=("NATS peer skipped: $NATS_BIN is missing (libnats-dev, then cmake --build build --target perf_nats_drain)")
  fi
  [ "$NATS" = 1 ] || say "${NOTES[-1]}"
fi

# --- what the standalone offers -------------------------------------------------------------
SA_HELP=$("$BIN" standalone --help 2>&1) || die "$BIN standalone --help failed"
# Only lines that start an option count: another option's help may mention --NAME.
has_option() { grep -qE -- "^ +(-[a-zA-Z], )?--$1( |\$)" <<<"$SA_HELP"; }
# The default the help states for --NAME: its paragraph runs to the next line starting an option.
option_default() {
  awk -v start="^ +(-[a-zA-Z], )?--$1( |\$)" '
    /^ +(-[a-zA-Z], )?--[a-z]/ { inside = 0 }
    $0 ~ start { inside = 1 }
    inside { text = text " " $0 }
    END { if (match(text, /default: [0-9]+/)) print substr(text, RSTART + 9, RLENGTH - 9) }
  ' <<<"$SA_HELP"
}
PREFETCH_OPTION=false
if has_option prefetch; then
  PREFETCH_OPTION=true
  read -r -a MODES <<<"$MODES_ARG"
  [ "${#MODES[@]}" -ge 1 ] || die "--modes lists no mode"
  for m in "${MODES[@]}"; do
    [ "$m" = on ] || [ "$m" = off ] || die "--modes: '$m' is neither on nor off"
  done
else
  MODES=(default)
  NOTES+=("magnetar standalone has no --prefetch option yet: one mode ran with the standalone's defaults, prefetch_off figures are null")
  say "${NOTES[-1]}"
fi
BUDGET_ARGS=()
if has_option tail-cache-mb; then
  TAIL_CACHE_MB=${TAIL_CACHE_MB:-$(option_default tail-cache-mb)}
  [ -n "$TAIL_CACHE_MB" ] && BUDGET_ARGS+=(--tail-cache-mb "$TAIL_CACHE_MB")
elif [ -n "$TAIL_CACHE_MB" ]; then
  NOTES+=("--tail-cache-mb ignored: the standalone has no such option")
  TAIL_CACHE_MB=
fi
if has_option prefetch-mb; then
  PREFETCH_MB=${PREFETCH_MB:-$(option_default prefetch-mb)}
  [ -n "$PREFETCH_MB" ] && BUDGET_ARGS+=(--prefetch-mb "$PREFETCH_MB")
elif [ -n "$PREFETCH_MB" ]; then
  NOTES+=("--prefetch-mb ignored: the standalone has no such option")
  PREFETCH_MB=
fi
WRITE_CACHE_MB=$(option_default write-cache-mb)
READ_CACHE_MB=$(option_default read-cache-mb)
# A --standalone-arg may set a budget too; the last value on the command line wins.
for ((i = 0; i < ${#SA_EXTRA[@]}; i++)); do
  case "${SA_EXTRA[i]}" in
    --write-cache-mb) WRITE_CACHE_MB=${SA_EXTRA[i + 1]:-} ;;
    --write-cache-mb=*) WRITE_CACHE_MB=${SA_EXTRA[i]#*=} ;;
    --read-cache-mb) READ_CACHE_MB=${SA_EXTRA[i + 1]:-} ;;
    --read-cache-mb=*) READ_CACHE_MB=${SA_EXTRA[i]#*=} ;;
  esac
done
BUDGETS_OK=true
for b in "$WRITE_CACHE_MB" "$READ_CACHE_MB" "$TAIL_CACHE_MB" "$PREFETCH_MB"; do
  if [ -n "$b" ] && [ "$b" -ge "$BACKLOG_MB" ]; then BUDGETS_OK=false; fi
done
if [ "$BUDGETS_OK" = false ]; then
  NOTES+=("the backlog ($BACKLOG_MB MiB) is not larger than every cache budget (write ${WRITE_CACHE_MB:-?}, read ${READ_CACHE_MB:-?}, tail ${TAIL_CACHE_MB:--}, prefetch ${PREFETCH_MB:--} MiB): the drains may be served from memory")
  say "WARNING: ${NOTES[-1]}"
fi

# --- the directory --------------------------------------------------------------------------
mkdir -p "$BASE" || exit 1
if [ "$(stat -f -c %T "$BASE")" = tmpfs ]; then
  die "$BASE is tmpfs, not a disk; pass --dir on a real file system"
fi
# Room for the backlog twice (the entry logs, and as much again as a margin for the journal and
# the indexes), NATS's copy and fio's file, with a GiB to spare.
NEED_MB=$((BACKLOG_MB * (2 + NATS) + 2048))
AVAIL_MB=$(df -Pm "$BASE" | awk 'NR == 2 { print $4 }')
[ "${AVAIL_MB:-0}" -ge "$NEED_MB" ] || die "$BASE has ${AVAIL_MB:-?} MiB free, this run needs about $NEED_MB"

STAMP=$(date +%Y%m%d-%H%M%S)
[ -n "$JSON" ] || JSON=$ROOT/perf/results/catchup-$STAMP.json
mkdir -p "$(dirname "$JSON")" || exit 1
JSON=$(cd "$(dirname "$JSON")" && pwd)/$(basename "$JSON")
OUT_BASE=${JSON%.json}
PNG=$OUT_BASE.png
PD=$OUT_BASE-data
mkdir -p "$PD" || exit 1

WORK=$(mktemp -d "$BASE/magnetar-perf-catchup.XXXXXX") || exit 1
DATA=$WORK/data
R=$WORK/results # raw outputs of every tool, read back with jq
mkdir -p "$DATA" "$R" || exit 1
SA_PID=
NATS_PID=
# shellcheck disable=SC2317  # called through the EXIT trap
cleanup() {
  local p
  # Only this shell's children still running (jobs -pr): a pid that exited earlier may have been
  # reused by an unrelated process since.
  for p in $(jobs -pr); do
    kill -KILL "$p" 2>/dev/null
    wait "$p" 2>/dev/null
  done
  # Every tool's own output (small: JSON, progress lines, logs) stays beside the result, so a
  # surprising figure can be traced to the lines it came from.
  mkdir -p "$PD/raw" && cp -p "$R"/* "$WORK"/*.log "$PD/raw/" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

CLK_TCK=$(getconf CLK_TCK)
N=$((BACKLOG_MB * 1024 * 1024 / MSG_SIZE))
TOPIC_B=persistent://public/default/catchup-b-$STAMP
# A cold drain slower than 10 MB/s is a failure to report, not a reason to wait longer.
DRAIN_LIMIT_S=$((120 + BACKLOG_MB * 1048576 / 10000000))
say "backlog $BACKLOG_MB MiB = $N messages of $MSG_SIZE B; modes: ${MODES[*]}; isolation phases of ${PHASE_S}s; work dir $WORK"

# --- helpers --------------------------------------------------------------------------------
# start_bg OUT ERR CMD...: runs CMD in the background, its pid in LAST_PID (the trap ends it).
start_bg() {
  local out=$1 err=$2
  shift 2
  "$@" >"$out" 2>"$err" &
  LAST_PID=$!
}

# wait_pid PID LIMIT_S: the process's exit status; after LIMIT_S seconds it is interrupted
# (SIGINT: the perf tools then write what they measured), killed 10 s later, and 124 returned.
wait_pid() {
  local pid=$1 limit=$2 i
  for ((i = 0; i < limit * 10; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    say "process $pid still running after ${limit}s: interrupting it"
    kill -INT "$pid" 2>/dev/null
    for ((i = 0; i < 100; i++)); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    return 124
  fi
  wait "$pid"
}

# wait_line FILE REGEX LIMIT_S PID: waits until FILE has a line matching REGEX; fails when PID
# exits first or LIMIT_S passes.
wait_line() {
  local file=$1 re=$2 limit=$3 pid=$4 i
  for ((i = 0; i < limit * 10; i++)); do
    grep -qE -- "$re" "$file" 2>/dev/null && return 0
    kill -0 "$pid" 2>/dev/null || { grep -qE -- "$re" "$file" 2>/dev/null; return; }
    sleep 0.1
  done
  return 1
}

drop_caches() {
  timeout 300 sync
  echo 3 >/proc/sys/vm/drop_caches || die "cannot drop the page cache"
}

# The epoch seconds of the ISO-8601 timestamp that starts the log line matching REGEX in FILE.
log_time() {
  local ts
  ts=$(grep -m1 -E -- "$2" "$1" 2>/dev/null | grep -oE '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+Z')
  [ -n "$ts" ] && date -d "$ts" +%s.%N
}

# utime + stime of PID, in seconds.
cpu_s() {
  local line rest
  read -r line <"/proc/$1/stat" || return 1
  rest=${line##*) } # the command name may hold spaces; the fields after it do not
  # shellcheck disable=SC2086
  set -- $rest
  awk -v u="${12}" -v s="${13}" -v hz="$CLK_TCK" 'BEGIN { printf "%.2f\n", (u + s) / hz }'
}

# watch_cpu PID LIMIT_S: waits (bounded) for PID to exit, keeping in CLIENT_CPU the last CPU
# seconds it was seen to have used. Sampled every 0.2 s, so up to 0.2 s short: enough to tell
# whether the load generator, rather than the server, set the pace of a drain.
CLIENT_CPU=
watch_cpu() {
  local pid=$1 limit=$2 i c
  CLIENT_CPU=
  for ((i = 0; i < limit * 5; i++)); do
    c=$(cpu_s "$pid" 2>/dev/null) || break
    [ -n "$c" ] && CLIENT_CPU=$c
    sleep 0.2
  done
}

# Bytes PID made the block layer read (O_DIRECT included), from /proc/PID/io.
io_read_bytes() {
  awk '$1 == "read_bytes:" { print $2 }' "/proc/$1/io" 2>/dev/null
}

# metric FILE NAME: the value of the sample NAME (labels included, as written) or nothing.
metric() {
  awk -v n="$2" '$1 == n && $2 ~ /^-?[0-9.]+([eE][-+]?[0-9]+)?$/ { print $2; exit }' "$1"
}

# A JSON number, or null when the argument is empty.
num() { if [ -n "${1:-}" ]; then echo "$1"; else echo null; fi; }

SA_LOG=
SA_URL=
SA_HTTP=
SA_STARTS=0
start_standalone() { # MODE
  local mode=$1 i args=()
  [ "$mode" = default ] || args+=(--prefetch "$mode")
  SA_STARTS=$((SA_STARTS + 1))
  SA_LOG=$WORK/standalone-$SA_STARTS.log
  "$BIN" standalone --chat-gateway off --chat-job off --kafka off --data-dir "$DATA" --bind-address 127.0.0.1 --broker-port 0 \
    --bookie-port 0 --http-port 0 ${args[@]+"${args[@]}"} ${BUDGET_ARGS[@]+"${BUDGET_ARGS[@]}"} \
    ${SA_EXTRA[@]+"${SA_EXTRA[@]}"} >"$SA_LOG" 2>&1 &
  SA_PID=$!
  SA_URL='' SA_HTTP=''
  for ((i = 0; i < READY_WAIT_S * 10; i++)); do
    SA_URL=$(grep -m1 -oE 'ready: pulsar://[0-9.]+:[0-9]+' "$SA_LOG" 2>/dev/null | sed 's/ready: //')
    [ -n "$SA_URL" ] && break
    kill -0 "$SA_PID" 2>/dev/null || break
    sleep 0.1
  done
  if [ -z "$SA_URL" ]; then
    say "the standalone did not become ready within ${READY_WAIT_S}s; its log:"
    tail -20 "$SA_LOG" >&2
    exit 1
  fi
  SA_HTTP=$(grep -m1 -oE 'metrics on http://[0-9.]+:[0-9]+' "$SA_LOG" | sed 's/metrics on //')
  say "standalone (prefetch $mode) ready at $SA_URL, metrics at ${SA_HTTP:-?}, pid $SA_PID"
}

stop_standalone() {
  local i
  [ -n "$SA_PID" ] || return 0
  kill -TERM "$SA_PID" 2>/dev/null
  for ((i = 0; i < STOP_WAIT_S * 10; i++)); do
    kill -0 "$SA_PID" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$SA_PID" 2>/dev/null; then
    say "the standalone did not stop within ${STOP_WAIT_S}s: killing it"
    kill -KILL "$SA_PID" 2>/dev/null
  fi
  wait "$SA_PID" 2>/dev/null
  SA_PID=
}

scrape() { # FILE: the standalone's /metrics, or an empty file when it does not answer
  if [ -z "$SA_HTTP" ] || ! curl -s --max-time 10 "$SA_HTTP/metrics" >"$1"; then
    : >"$1"
  fi
}

# run_fio NAME: fio's sequential read in the data directory; its JSON in $R/fio-NAME.json.
run_fio() {
  local name=$1 st
  say "fio sequential read ($name): 1 MiB O_DIRECT, libaio depth 16, $FIO_SIZE"
  start_bg "$R/fio-$name.json" "$R/fio-$name.err" fio --name=seqread \
    --filename="$DATA/fio-seqread.tmp" --rw=read --bs=1M --direct=1 --ioengine=libaio \
    --iodepth=16 --size="$FIO_SIZE" --runtime=60 --output-format=json
  wait_pid "$LAST_PID" 300
  st=$?
  rm -f "$DATA/fio-seqread.tmp"
  if [ "$st" != 0 ] || ! jq -e '.jobs[0].read.bw_bytes > 0' "$R/fio-$name.json" >/dev/null 2>&1; then
    say "fio ($name) failed (status $st): $(tail -3 "$R/fio-$name.err" | tr '\n' ' ')"
    echo '{}' >"$R/fio-$name.json"
    return 1
  fi
  say "fio ($name): $(jq -r '.jobs[0].read.bw_bytes / 1e6 | floor' "$R/fio-$name.json") MB/s"
}

# series_mb FILE: "t MB/s" from a perf tool's progress lines (one a second from its start).
series_mb() {
  awk '/^Throughput (received|produced):/ { n++; printf "%d %.3f\n", n, $6 / 8 }' "$1"
}

# consume NAME TOPIC POSITION COUNT LIMIT_S: starts `perf consume` (niced) for one new
# subscription; its outputs are $R/NAME.{json,out,err}.
consume() {
  local name=$1 topic=$2 pos=$3 count=$4 limit=$5
  start_bg "$R/$name.out" "$R/$name.err" "${NICE[@]}" "$BIN" perf consume -u "$SA_URL" \
    -S "$name" --subscription-position "$pos" -q "$QUEUE" -m "$count" -t "${limit}s" \
    --stats-interval 1s --json "$R/$name.json" "$topic"
}

# --- 0. fio before, the backlog --------------------------------------------------------------
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
run_fio before

say "== building the backlog: $N messages of $MSG_SIZE B on $TOPIC_B"
start_standalone "${MODES[0]}"
# A durable subscription that never reads holds the backlog: without it, the first drain's acks
# would let retention delete the ledgers, and every later subscription would find B empty.
start_bg "$R/keep.out" "$R/keep.err" "${NICE[@]}" "$BIN" perf consume -u "$SA_URL" \
  -S catchup-keep --subscription-position Earliest -t 1s "$TOPIC_B"
wait_pid "$LAST_PID" "$CONSUMER_READY_S" ||
  die "could not create the subscription that keeps the backlog: $(tail -3 "$R/keep.err" | tr '\n' ' ')"
# At the maximum rate, with as many in flight as the produce benchmark needs (perf/README.md).
PRODUCE_LIMIT_S=$((600 + BACKLOG_MB * 1048576 / 5000000))
start_bg "$R/backlog.out" "$R/backlog.err" "${NICE[@]}" "$BIN" perf produce -u "$SA_URL" \
  -r 0 -s "$MSG_SIZE" -o 20000 -m "$N" -t "${PRODUCE_LIMIT_S}s" --stats-interval 10s \
  --json "$R/backlog.json" "$TOPIC_B"
BACKLOG_PID=$LAST_PID
for ((i = 1; i <= (PRODUCE_LIMIT_S + 60) * 5; i++)); do
  kill -0 "$BACKLOG_PID" 2>/dev/null || break
  sleep 0.2
  ((i % 50 == 0)) || continue
  line=$(awk -v n="$N" '/^Throughput produced/ { got += $3 * 10; r = $6 / 8 } END { if (got) printf "%.0f MB/s, about %d of %d messages", r, got, n }' "$R/backlog.out")
  [ -n "$line" ] && say "backlog: $line"
done
wait_pid "$BACKLOG_PID" 60 || die "the backlog producer failed: $(tail -3 "$R/backlog.err" | tr '\n' ' ')"
[ "$(jq -r '.messages' "$R/backlog.json")" = "$N" ] || die "the backlog has $(jq -r '.messages' "$R/backlog.json") messages, not $N"
say "backlog: $(jq -r '"\(.messages) messages, \(.bytes / 1e6 | floor) MB at \(.mib_per_s * 1.048576 | floor) MB/s"' "$R/backlog.json")"
# A clean stop flushes the bookie's write cache and closes the ledger: the backlog is on disk.
stop_standalone

# --- per mode: cold drain, isolation ---------------------------------------------------------
# metric_deltas BEFORE AFTER: a JSON object of after - before for the samples that tell how the
# read path behaved (prefetch, caches, read-ahead, disk reads, bookie requests); quantiles left out.
metric_deltas() {
  awk '
    FNR == 1 { f++ }
    /^#/ || /quantile=/ { next }
    $1 !~ /prefetch|cache|readahead|disk_read|disk_stretches|rpc_requests_total|read_latency_ms_(sum|count)|dispatch/ { next }
    $2 !~ /^-?[0-9.]+([eE][-+]?[0-9]+)?$/ { next }
    f == 1 { before[$1] = $2; next }
    { printf "%s\t%s\n", $1, $2 - ($1 in before ? before[$1] : 0) }
  ' "$1" "$2" | jq -R -s 'split("\n") | map(select(length > 0) | split("\t") | {(.[0]): (.[1] | tonumber)}) | add // {}'
}

cold_drain() { # MODE
  local mode=$1 name=drain-$1 st cpu0 cpu1 io0 io1
  say "== prefetch $mode: cold drain of $TOPIC_B by one subscription (workload 1)"
  start_standalone "$mode"
  drop_caches
  scrape "$R/$name-metrics-before.txt"
  cpu0=$(cpu_s "$SA_PID") io0=$(io_read_bytes "$SA_PID")
  consume "$name" "$TOPIC_B" Earliest "$N" "$DRAIN_LIMIT_S"
  local pid=$LAST_PID i got seen=-1 still=0 c client_cpu=''
  # Polled often so the CPU figures end with the drain; a minute without a message is a stall.
  for ((i = 1; i <= (DRAIN_LIMIT_S + 60) * 5; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    c=$(cpu_s "$pid" 2>/dev/null) && [ -n "$c" ] && client_cpu=$c
    sleep 0.2
    ((i % 25 == 0)) || continue
    got=$(awk '/^Throughput received/ { n += $3 } END { printf "%d", n }' "$R/$name.out")
    kill -0 "$pid" 2>/dev/null &&
      say "drain ($mode): $(series_mb "$R/$name.out" | tail -1 | awk '{ print $2 }') MB/s, about $got of $N messages"
    if [ "$got" = "$seen" ]; then still=$((still + 5)); else still=0 seen=$got; fi
    if [ "$still" -ge 60 ]; then
      say "drain ($mode): no message for 60 s: stopping it"
      kill -INT "$pid" 2>/dev/null
      break
    fi
  done
  wait_pid "$pid" 60
  st=$?
  cpu1=$(cpu_s "$SA_PID") io1=$(io_read_bytes "$SA_PID")
  scrape "$R/$name-metrics-after.txt"
  [ -s "$R/$name.json" ] || echo '{}' >"$R/$name.json"
  [ "$st" = 0 ] || say "the drain exited with status $st: $(tail -3 "$R/$name.err" | tr '\n' ' ')"
  say "drain ($mode): $(jq -r 'if .seconds then "\(.messages) messages in \(.seconds) s: \(.bytes / .seconds / 1e6 | floor) MB/s" else "no result" end' "$R/$name.json")"
  series_mb "$R/$name.out" >"$PD/drain-$mode.dat"
  jq -n --slurpfile c "$R/$name.json" --argjson want "$N" --argjson status "$st" \
    --argjson cpu0 "$(num "$cpu0")" --argjson cpu1 "$(num "$cpu1")" \
    --argjson io0 "$(num "$io0")" --argjson io1 "$(num "$io1")" --argjson ccpu "$(num "$client_cpu")" \
    --argjson rs0 "$(num "$(metric "$R/$name-metrics-before.txt" bookie_disk_read_size_bytes_sum)")" \
    --argjson rs1 "$(num "$(metric "$R/$name-metrics-after.txt" bookie_disk_read_size_bytes_sum)")" \
    --argjson rc0 "$(num "$(metric "$R/$name-metrics-before.txt" bookie_disk_read_size_bytes_count)")" \
    --argjson rc1 "$(num "$(metric "$R/$name-metrics-after.txt" bookie_disk_read_size_bytes_count)")" \
    --argjson ra0 "$(num "$(metric "$R/$name-metrics-before.txt" 'bookie_readahead_bytes_total{state="issued"}')")" \
    --argjson ra1 "$(num "$(metric "$R/$name-metrics-after.txt" 'bookie_readahead_bytes_total{state="issued"}')")" \
    --argjson deltas "$(metric_deltas "$R/$name-metrics-before.txt" "$R/$name-metrics-after.txt")" '
    def delta(a; b): if a != null and b != null then b - a else null end;
    ($deltas.magnetar_cache_hits_total) as $hits | ($deltas.magnetar_cache_misses_total) as $misses
    | ($c[0]) as $c
    | ($c.bytes // 0) as $bytes
    | delta($rs0; $rs1) as $disk_bytes | delta($rc0; $rc1) as $disk_reads
    | delta($cpu0; $cpu1) as $cpu
    | {
        complete: (($c.messages // 0) == $want and $status == 0),
        exit_status: $status,
        messages: ($c.messages // 0), bytes: $bytes, seconds: $c.seconds,
        drain_mb_s: (if ($c.seconds // 0) > 0 then $bytes / $c.seconds / 1e6 else null end),
        standalone_cpu_s: $cpu,
        consumer_cpu_s: $ccpu,
        consumer_cores: (if $ccpu != null and ($c.seconds // 0) > 0 then $ccpu / $c.seconds else null end),
        cpu_s_per_gib: (if $cpu != null and $bytes > 0 then $cpu / ($bytes / 1073741824) else null end),
        disk_read_bytes: $disk_bytes, disk_reads: $disk_reads,
        read_amplification: (if $disk_bytes != null and $bytes > 0 then $disk_bytes / $bytes else null end),
        avg_disk_read_bytes: (if $disk_reads != null and $disk_reads > 0 then $disk_bytes / $disk_reads else null end),
        readahead_issued_bytes: delta($ra0; $ra1),
        proc_io_read_bytes: delta($io0; $io1),
        served_without_wait_share: (($deltas.magnetar_dispatch_entries_ready_total) as $r
          | ($deltas.magnetar_dispatch_entries_waited_total) as $w
          | if $r != null and $w != null and ($r + $w) > 0 then $r / ($r + $w) else null end),
        cache_hit_share: (if $hits != null and $misses != null and ($hits + $misses) > 0 then $hits / ($hits + $misses) else null end),
        dispatch_waits: $deltas.magnetar_dispatch_waits_total,
        dispatch_wait_s: $deltas.magnetar_dispatch_wait_seconds_sum,
        prefetch_fetched_bytes: $deltas.magnetar_prefetch_fetched_bytes_total,
        prefetch_wasted_bytes: $deltas.magnetar_prefetch_wasted_bytes_total,
        metrics_delta: $deltas,
        consumer: $c
      }' >"$R/mode-$mode-drain.json" || die "could not build the drain figures of mode $mode"
  jq -e '.disk_read_bytes != null' "$R/mode-$mode-drain.json" >/dev/null ||
    NOTES+=("mode $mode: read_amplification and avg_disk_read_bytes are null: /metrics did not answer or had no bookie_disk_read_size_bytes_sum/_count")
  jq -e '.standalone_cpu_s != null' "$R/mode-$mode-drain.json" >/dev/null ||
    NOTES+=("mode $mode: cpu_s_per_gib is null: /proc/$SA_PID/stat could not be read")
  stop_standalone
}

# tail_phase MODE WHICH: topic A at TAIL_RATE with a tail consumer for PHASE_S; with WHICH =
# during, DRAINERS subscriptions drain B from the earliest message the whole time (each starts
# again under a new name when it reaches the end, so the load lasts the whole phase).
tail_phase() {
  local mode=$1 which=$2 topic=persistent://public/default/catchup-a-$1-$STAMP
  local count=$((TAIL_RATE * PHASE_S)) limit=$((PHASE_S * 3 + 60)) k i
  local tail=tail-$mode-$which prod=produce-$mode-$which
  local slot_pid=() slot_round=() drain_files=() t_drain0='' t_drain1='' m0 m1
  m0=$R/iso-$mode-$which-metrics-before.txt m1=$R/iso-$mode-$which-metrics-after.txt
  if [ "$which" = during ]; then
    say "== prefetch $mode: isolation, $TAIL_RATE msg/s on topic A while $DRAINERS subscriptions drain B cold (${PHASE_S}s)"
    drop_caches
  else
    say "== prefetch $mode: isolation, $TAIL_RATE msg/s on topic A alone (${PHASE_S}s)"
  fi
  scrape "$m0"
  if [ "$which" = during ]; then
    t_drain0=$EPOCHREALTIME
    for ((k = 0; k < DRAINERS; k++)); do
      slot_round[k]=1
      consume "iso-$mode-$k-1" "$TOPIC_B" Earliest "$N" "$DRAIN_LIMIT_S"
      slot_pid[k]=$LAST_PID
      drain_files+=("iso-$mode-$k-1")
    done
    for ((k = 0; k < DRAINERS; k++)); do
      wait_line "$R/iso-$mode-$k-1.err" 'consumers ready' "$CONSUMER_READY_S" "${slot_pid[k]}" ||
        die "drainer $k did not subscribe: $(tail -3 "$R/iso-$mode-$k-1.err" | tr '\n' ' ')"
    done
  fi
  consume "$tail" "$topic" Latest "$count" "$limit"
  local tail_pid=$LAST_PID
  wait_line "$R/$tail.err" 'consumers ready' "$CONSUMER_READY_S" "$tail_pid" ||
    die "the tail consumer did not subscribe: $(tail -3 "$R/$tail.err" | tr '\n' ' ')"
  start_bg "$R/$prod.out" "$R/$prod.err" "${NICE[@]}" "$BIN" perf produce -u "$SA_URL" \
    -r "$TAIL_RATE" -s "$MSG_SIZE" -m "$count" -t "${limit}s" --stats-interval 1s \
    --json "$R/$prod.json" "$topic"
  local prod_pid=$LAST_PID
  # While the producer runs: restart any drainer that reached the end of B, and report progress.
  for ((i = 0; i < limit * 5; i++)); do
    kill -0 "$prod_pid" 2>/dev/null || break
    if [ "$which" = during ]; then
      for ((k = 0; k < DRAINERS; k++)); do
        kill -0 "${slot_pid[k]}" 2>/dev/null && continue
        wait "${slot_pid[k]}" 2>/dev/null
        [ "${slot_round[k]}" -lt "$DRAIN_ROUNDS_MAX" ] || continue
        slot_round[k]=$((slot_round[k] + 1))
        consume "iso-$mode-$k-${slot_round[k]}" "$TOPIC_B" Earliest "$N" "$DRAIN_LIMIT_S"
        slot_pid[k]=$LAST_PID
        drain_files+=("iso-$mode-$k-${slot_round[k]}")
      done
    fi
    if ((i % 25 == 24)); then
      say "isolation ($mode, $which): $(grep -c '^Throughput produced' "$R/$prod.out") of ${PHASE_S} s"
    fi
    sleep 0.2
  done
  wait_pid "$prod_pid" 60 || say "the topic A producer failed: $(tail -3 "$R/$prod.err" | tr '\n' ' ')"
  wait_pid "$tail_pid" 60 || say "the tail consumer ended with an error or at its time limit: $(tail -3 "$R/$tail.err" | tr '\n' ' ')"
  if [ "$which" = during ]; then
    t_drain1=$EPOCHREALTIME
    for ((k = 0; k < DRAINERS; k++)); do
      kill -INT "${slot_pid[k]}" 2>/dev/null
    done
    for ((k = 0; k < DRAINERS; k++)); do
      wait_pid "${slot_pid[k]}" 30 >/dev/null
    done
  fi
  scrape "$m1"
  [ -s "$R/$prod.json" ] || echo '{}' >"$R/$prod.json"
  [ -s "$R/$tail.json" ] || echo '{}' >"$R/$tail.json"

  # Series for the plot: seconds since the producer was ready.
  local t0 t_tail
  t0=$(log_time "$R/$prod.err" 'producers ready')
  t_tail=$(log_time "$R/$tail.err" 'consumers ready')
  awk -v off="$(awk -v a="${t_tail:-0}" -v b="${t0:-0}" 'BEGIN { print a - b }')" '
    /^Throughput received:/ { n++; if ($3 > 0) for (i = 1; i < NF; i++) if ($i == "99pct:") printf "%.1f %s\n", n + off, $(i + 1) }
  ' "$R/$tail.out" >"$PD/tail-$mode-$which.dat"
  local drains_json='[]' f
  if [ "$which" = during ]; then
    local files=()
    for f in "${drain_files[@]}"; do
      [ -s "$R/$f.json" ] && files+=("$R/$f.json")
    done
    [ "${#files[@]}" -gt 0 ] && drains_json=$(jq -s '.' "${files[@]}")
    for f in "${drain_files[@]}"; do
      printf '%s %s\n' "$(log_time "$R/$f.err" 'consumers ready')" "$R/$f.out"
    done | while read -r ready out; do
      [ -n "$out" ] || continue
      awk -v off="$(awk -v a="${ready:-0}" -v b="${t0:-0}" 'BEGIN { print a - b }')" \
        '/^Throughput received:/ { n++; printf "%d %.3f\n", int(n + off + 0.5), $6 / 8 }' "$out"
    done | awk '{ s[$1] += $2 } END { for (t in s) print t, s[t] }' | sort -n >"$PD/isodrain-$mode.dat"
  fi
  jq -n --slurpfile p "$R/$prod.json" --slurpfile t "$R/$tail.json" --argjson drains "$drains_json" \
    --argjson count "$count" --argjson d0 "$(num "$t_drain0")" --argjson d1 "$(num "$t_drain1")" \
    --argjson rs0 "$(num "$(metric "$m0" bookie_disk_read_size_bytes_sum)")" \
    --argjson rs1 "$(num "$(metric "$m1" bookie_disk_read_size_bytes_sum)")" '
    def pct(l): if l == null then null else {p50: l.p50, p99: l.p99, p99_9: l.p999} end;
    ($p[0]) as $p | ($t[0]) as $t
    | ($drains | map(.bytes // 0) | add // 0) as $dbytes
    | {
        publish_ms: pct($p.latency_ms), tail_ms: pct($t.latency_ms),
        published: ($p.messages // 0), received: ($t.messages // 0), expected: $count,
        publish_msg_per_s: $p.msg_per_s
      }
      + (if $d0 == null then {} else {
          drain: {
            subscriptions: ($drains | length),
            messages: ($drains | map(.messages // 0) | add // 0),
            bytes: $dbytes,
            seconds: ($d1 - $d0),
            mb_s: (if $d1 > $d0 then $dbytes / ($d1 - $d0) / 1e6 else null end),
            disk_read_bytes: (if $rs0 != null and $rs1 != null then $rs1 - $rs0 else null end),
            read_amplification: (if $rs0 != null and $rs1 != null and $dbytes > 0 then ($rs1 - $rs0) / $dbytes else null end)
          }
        } end)' >"$R/mode-$mode-$which.json" || die "could not build the $which figures of mode $mode"
  say "isolation ($mode, $which): $(jq -r '"publish p99 \(.publish_ms.p99) ms, tail p99 \(.tail_ms.p99) ms, \(.received)/\(.expected) received" + (if .drain then ", drain \(.drain.mb_s // 0 | floor) MB/s over \(.drain.subscriptions) subscriptions" else "" end)' "$R/mode-$mode-$which.json")"
}

for mode in "${MODES[@]}"; do
  cold_drain "$mode"
  start_standalone "$mode"
  tail_phase "$mode" alone
  tail_phase "$mode" during
  stop_standalone
done

run_fio after
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

# --- NATS JetStream ---------------------------------------------------------------------------
NATS_URL=
NATS_LOG=
NATS_STARTS=0
start_nats() {
  local i port
  NATS_STARTS=$((NATS_STARTS + 1))
  NATS_LOG=$WORK/nats-server-$NATS_STARTS.log
  # -p -1: a free port picked by the server; loopback only; the store on the same disk.
  nats-server -js -a 127.0.0.1 -p -1 -sd "$WORK/nats" >"$NATS_LOG" 2>&1 &
  NATS_PID=$!
  if ! wait_line "$NATS_LOG" 'Server is ready' "$READY_WAIT_S" "$NATS_PID"; then
    say "nats-server did not become ready within ${READY_WAIT_S}s; its log:"
    tail -20 "$NATS_LOG" >&2
    return 1
  fi
  port=$(grep -m1 -oE 'client connections on 127\.0\.0\.1:[0-9]+' "$NATS_LOG" | grep -oE '[0-9]+$')
  NATS_URL=nats://127.0.0.1:$port
  say "nats-server ready at $NATS_URL, pid $NATS_PID"
}
stop_nats() {
  local i
  [ -n "$NATS_PID" ] || return 0
  kill -TERM "$NATS_PID" 2>/dev/null
  for ((i = 0; i < STOP_WAIT_S * 10; i++)); do
    kill -0 "$NATS_PID" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$NATS_PID" 2>/dev/null
  wait "$NATS_PID" 2>/dev/null
  NATS_PID=
}

NATS_STATUS=skipped
echo '{}' >"$R/nats.json"
if [ "$NATS" = 1 ]; then
  say "== NATS JetStream: publish $N messages of $MSG_SIZE B to a file-storage stream"
  if start_nats; then
    start_bg "$R/nats-publish.out" "$R/nats-publish.err" "${NICE[@]}" "$NATS_BIN" publish \
      --url "$NATS_URL" --count "$N" --size "$MSG_SIZE" --max-pending 20000 \
      --timeout "$PRODUCE_LIMIT_S" --stats-interval 10000 --json "$R/nats-publish.json"
    if wait_pid "$LAST_PID" $((PRODUCE_LIMIT_S + 60)); then
      say "nats publish: $(tail -1 "$R/nats-publish.out")"
      # A restart empties nats-server's own caches, as the standalone's restart does.
      stop_nats
      if start_nats; then
        drop_caches
        say "== NATS JetStream: cold drain with a pull consumer"
        n_cpu0=$(cpu_s "$NATS_PID") n_io0=$(io_read_bytes "$NATS_PID")
        start_bg "$R/nats-drain.out" "$R/nats-drain.err" "${NICE[@]}" "$NATS_BIN" drain \
          --url "$NATS_URL" --count "$N" --batch "$QUEUE" --ack all --timeout "$DRAIN_LIMIT_S" \
          --stats-interval 1000 --json "$R/nats-drain.json"
        watch_cpu "$LAST_PID" $((DRAIN_LIMIT_S + 60))
        wait_pid "$LAST_PID" 10
        st=$?
        n_cpu1=$(cpu_s "$NATS_PID") n_io1=$(io_read_bytes "$NATS_PID")
        say "nats drain: $(tail -1 "$R/nats-drain.out")"
        awk '/^drain: t=/ { sub(/^t=/, "", $2); printf "%s %s\n", $2, $6 }' "$R/nats-drain.out" >"$PD/nats.dat"
        [ -s "$R/nats-drain.json" ] || echo '{}' >"$R/nats-drain.json"
        jq -n --slurpfile p "$R/nats-publish.json" --slurpfile d "$R/nats-drain.json" \
          --argjson status "$st" --argjson cpu0 "$(num "$n_cpu0")" --argjson cpu1 "$(num "$n_cpu1")" \
          --argjson io0 "$(num "$n_io0")" --argjson io1 "$(num "$n_io1")" \
          --argjson ccpu "$(num "$CLIENT_CPU")" '
          ($d[0]) as $d | ($d.bytes // 0) as $bytes
          | (if $cpu0 != null and $cpu1 != null then $cpu1 - $cpu0 else null end) as $cpu
          | (if $io0 != null and $io1 != null then $io1 - $io0 else null end) as $io
          | {
              complete: (($d.complete // false) and $status == 0),
              drain_mb_s: (if ($d.complete // false) then $d.mb_per_s else null end),
              server_cpu_s_per_gib: (if $cpu != null and $bytes > 0 then $cpu / ($bytes / 1073741824) else null end),
              client_cpu_s: $ccpu,
              client_cores: (if $ccpu != null and ($d.seconds // 0) > 0 then $ccpu / $d.seconds else null end),
              proc_io_read_bytes: $io,
              read_amplification_proc_io: (if $io != null and $bytes > 0 then $io / $bytes else null end),
              publish: $p[0], drain: $d
            }' >"$R/nats.json"
        NATS_STATUS="done"
      else
        NATS_STATUS="nats-server did not restart"
      fi
    else
      NATS_STATUS="the publish failed: $(tail -2 "$R/nats-publish.err" | tr '\n' ' ')"
    fi
    stop_nats
  else
    NATS_STATUS="nats-server did not start"
  fi
  [ "$NATS_STATUS" = "done" ] || { NOTES+=("NATS peer: $NATS_STATUS"); say "${NOTES[-1]}"; }
fi

# --- the result --------------------------------------------------------------------------------
for mode in "${MODES[@]}"; do
  for part in drain alone during; do
    [ -s "$R/mode-$mode-$part.json" ] || echo '{}' >"$R/mode-$mode-$part.json"
  done
  jq -n --slurpfile d "$R/mode-$mode-drain.json" --slurpfile a "$R/mode-$mode-alone.json" \
    --slurpfile u "$R/mode-$mode-during.json" '{drain: $d[0], isolation: {alone: $a[0], during: $u[0]}}' \
    >"$R/mode-$mode.json"
done
NOTES+=("read_amplification and avg_disk_read_bytes come from the bookie's bookie_disk_read_size_bytes (_sum, _count) in /metrics; served_without_wait_share is magnetar_dispatch_entries_ready_total / (that + magnetar_dispatch_entries_waited_total): entries handed to dispatch by reads that did not wait for a bookie; cache_hit_share is magnetar_cache_hits_total / (hits + magnetar_cache_misses_total), entries served from the caches over all entries read")
NOTES+=("drain_mb_s: bytes delivered from the subscription being ready to the last message (the consumer's JSON), which includes the first cold read; NATS's is measured over the same span")
NOTES_JSON=$(printf '%s\n' "${NOTES[@]}" | jq -R -s 'split("\n") | map(select(length > 0))')
MODES_JSON=$(printf '%s\n' "${MODES[@]}" | jq -R -s 'split("\n") | map(select(length > 0))')
MODE_FILES=()
for mode in "${MODES[@]}"; do MODE_FILES+=("$R/mode-$mode.json"); done

jq -n --slurpfile fb "$R/fio-before.json" --slurpfile fa "$R/fio-after.json" \
  --slurpfile bl "$R/backlog.json" --slurpfile nats "$R/nats.json" \
  --slurpfile modes_data <(jq -s '.' "${MODE_FILES[@]}") \
  --argjson modes "$MODES_JSON" --argjson notes "$NOTES_JSON" \
  --argjson prefetch_option "$PREFETCH_OPTION" --argjson budgets_ok "$BUDGETS_OK" \
  --arg date "$STAMP" --arg load_start "$LOAD_START" --arg load_end "$LOAD_END" \
  --arg nats_status "$NATS_STATUS" --argjson backlog_mb "$BACKLOG_MB" --argjson n "$N" \
  --argjson phase_s "$PHASE_S" --argjson rate "$TAIL_RATE" --argjson drainers "$DRAINERS" \
  --argjson tail_cache_mb "$(num "$TAIL_CACHE_MB")" --argjson prefetch_mb "$(num "$PREFETCH_MB")" \
  --argjson write_cache_mb "$(num "$WRITE_CACHE_MB")" --argjson read_cache_mb "$(num "$READ_CACHE_MB")" \
  --arg fio_size "$FIO_SIZE" --arg bin "$BIN" '
  def fio(f): (f.jobs[0].read // null) as $r
    | if $r == null or ($r.bw_bytes // 0) == 0 then null
      else {mb_s: ($r.bw_bytes / 1e6), iops: $r.iops, clat_mean_ms: ($r.clat_ns.mean / 1e6)} end;
  def ratio(a; b): if a != null and b != null and b > 0 then a / b else null end;
  (fio($fb[0])) as $before | (fio($fa[0])) as $after
  | ([$before, $after] | map(select(. != null) | .mb_s)) as $fios
  | (if ($fios | length) > 0 then ($fios | add / length) else null end) as $disk
  | ([$modes, $modes_data[0]] | transpose | map({(.[0]): .[1]}) | add) as $m
  | def figures(x):
      (x.isolation.alone) as $al | (x.isolation.during) as $du
      | {
          drain_mb_s: x.drain.drain_mb_s,
          disk_seq_read_mb_s: $disk,
          drain_ratio: ratio(x.drain.drain_mb_s; $disk),
          publish_p99_ratio: ratio($du.publish_ms.p99; $al.publish_ms.p99),
          tail_p99_ratio: ratio($du.tail_ms.p99; $al.tail_ms.p99),
          read_amplification: x.drain.read_amplification,
          avg_disk_read_bytes: x.drain.avg_disk_read_bytes,
          cpu_s_per_gib: x.drain.cpu_s_per_gib,
          cache_hit_share: x.drain.cache_hit_share,
          served_without_wait_share: x.drain.served_without_wait_share,
          consumer_cores: x.drain.consumer_cores,
          isolation_drain_mb_s: $du.drain.mb_s,
          ratios: {
            publish: {p50: ratio($du.publish_ms.p50; $al.publish_ms.p50), p99: ratio($du.publish_ms.p99; $al.publish_ms.p99), p99_9: ratio($du.publish_ms.p99_9; $al.publish_ms.p99_9)},
            tail: {p50: ratio($du.tail_ms.p50; $al.tail_ms.p50), p99: ratio($du.tail_ms.p99; $al.tail_ms.p99), p99_9: ratio($du.tail_ms.p99_9; $al.tail_ms.p99_9)}
          },
          percentiles_ms: {
            publish_alone: $al.publish_ms, publish_during: $du.publish_ms,
            tail_alone: $al.tail_ms, tail_during: $du.tail_ms
          },
          drain_complete: x.drain.complete
        };
    def nulls: {drain_mb_s: null, disk_seq_read_mb_s: $disk, drain_ratio: null, publish_p99_ratio: null,
      tail_p99_ratio: null, read_amplification: null, avg_disk_read_bytes: null, cpu_s_per_gib: null,
      cache_hit_share: null, served_without_wait_share: null, consumer_cores: null,
      isolation_drain_mb_s: null, ratios: null, percentiles_ms: null, drain_complete: null};
    ($m[if $prefetch_option then "on" else "default" end]) as $primary
  | ($m["off"]) as $off
  | (if $primary != null then figures($primary) else nulls end) as $top
  | ($nats[0].drain_mb_s // null) as $nats_mb_s
  | {
      workload: "catchup",
      date: $date,
      units: {mb: "10^6 bytes", mib: "2^20 bytes", gib: "2^30 bytes", latency: "ms", cpu: "s of utime+stime"},
      prefetch_option: $prefetch_option,
      mode: (if $prefetch_option then "on" else "default" end),
      options: {backlog_mb: $backlog_mb, messages: $n, message_size: 1024, phase_duration_s: $phase_s,
        tail_rate_msg_s: $rate, drain_subscriptions: $drainers, modes: $modes, fio_size: $fio_size,
        tail_cache_mb: $tail_cache_mb, prefetch_mb: $prefetch_mb, write_cache_mb: $write_cache_mb,
        read_cache_mb: $read_cache_mb, bin: $bin},
      backlog_larger_than_budgets: $budgets_ok,
      load_average: {start: $load_start, end: $load_end}
    }
    + ($top | del(.ratios, .percentiles_ms))
    + {
      ratios: $top.ratios,
      percentiles_ms: $top.percentiles_ms,
      prefetch_off: (if $off != null then figures($off) else nulls end),
      nats_drain_mb_s: $nats_mb_s,
      drain_vs_nats: ratio($top.drain_mb_s; $nats_mb_s),
      prefetch_off_drain_vs_nats: (if $off != null then ratio($off.drain.drain_mb_s; $nats_mb_s) else null end),
      nats: (if $nats_status == "done" then $nats[0] else {status: $nats_status} end),
      fio: {before: $before, after: $after, seq_read_mean_mb_s: $disk},
      backlog: $bl[0],
      modes: $m,
      notes: $notes
    }' >"$JSON" || die "could not write $JSON"

# --- the summary -------------------------------------------------------------------------------
if [ "$PREFETCH_OPTION" = true ]; then
  HEAD_ON="prefetch on" HEAD_OFF="prefetch off"
else
  HEAD_ON="default" HEAD_OFF="(no --prefetch)"
fi
echo
echo "Catch-up benchmark, $BACKLOG_MB MiB backlog of 1 KiB messages, isolation phases ${PHASE_S}s at $TAIL_RATE msg/s (MB = 10^6 B)"
printf '%-36s %16s %16s  %s\n' figure "$HEAD_ON" "$HEAD_OFF" goal
jq -r '
  def f(x; d): if x == null then "null" elif (x | type) == "string" then x
    else (x * pow(10; d) | round / pow(10; d) | tostring) end;
  def mark(x; met): if x == null then "" elif met then " ok" else " MISS" end;
  def row(name; a; b; d; goal; cond):
    [name, f(a; d) + mark(a; a != null and (a | cond)), f(b; d) + mark(b; b != null and (b | cond)), goal] | @tsv;
  def plain(name; a; b; d):
    [name, f(a; d), f(b; d), ""] | @tsv;
  . as $r | ($r.prefetch_off) as $o
  | plain("drain MB/s (one subscription)"; $r.drain_mb_s; $o.drain_mb_s; 1),
    plain("disk sequential read MB/s (fio)"; $r.disk_seq_read_mb_s; $o.disk_seq_read_mb_s; 1),
    row("drain_ratio"; $r.drain_ratio; $o.drain_ratio; 3; ">= 0.8"; . >= 0.8),
    plain("publish p99 ms alone"; $r.percentiles_ms.publish_alone.p99; $o.percentiles_ms.publish_alone.p99; 3),
    plain("publish p99 ms during drain"; $r.percentiles_ms.publish_during.p99; $o.percentiles_ms.publish_during.p99; 3),
    row("publish_p99_ratio"; $r.publish_p99_ratio; $o.publish_p99_ratio; 2; "<= 1.5"; . <= 1.5),
    plain("tail p99 ms alone"; $r.percentiles_ms.tail_alone.p99; $o.percentiles_ms.tail_alone.p99; 3),
    plain("tail p99 ms during drain"; $r.percentiles_ms.tail_during.p99; $o.percentiles_ms.tail_during.p99; 3),
    row("tail_p99_ratio"; $r.tail_p99_ratio; $o.tail_p99_ratio; 2; "<= 1.5"; . <= 1.5),
    plain("drain MB/s, 4 subscriptions"; $r.isolation_drain_mb_s; $o.isolation_drain_mb_s; 1),
    row("read_amplification"; $r.read_amplification; $o.read_amplification; 3; "<= 1.1"; . <= 1.1),
    row("avg_disk_read KiB"; (if $r.avg_disk_read_bytes then $r.avg_disk_read_bytes / 1024 else null end);
        (if $o.avg_disk_read_bytes then $o.avg_disk_read_bytes / 1024 else null end); 1; ">= 256 KiB"; . >= 256),
    row("cpu_s_per_gib (standalone)"; $r.cpu_s_per_gib; $o.cpu_s_per_gib; 3; "<= 0.5"; . <= 0.5),
    plain("cache_hit_share (cold drain)"; $r.cache_hit_share; $o.cache_hit_share; 3),
    plain("served_without_wait_share (cold drain)"; $r.served_without_wait_share; $o.served_without_wait_share; 3),
    plain("consumer CPU, cores (cold drain)"; $r.consumer_cores; $o.consumer_cores; 2),
    plain("NATS JetStream drain MB/s"; $r.nats_drain_mb_s; (if $r.nats_drain_mb_s then "(same)" else null end); 1),
    plain("NATS client CPU, cores"; $r.nats.client_cores; (if $r.nats.client_cores then "(same)" else null end); 2),
    plain("drain_vs_nats"; $r.drain_vs_nats; $r.prefetch_off_drain_vs_nats; 3)
' "$JSON" | while IFS=$'\t' read -r name a b goal; do
  printf '%-36s %16s %16s  %s\n' "$name" "$a" "$b" "$goal"
done
jq -r '.notes[] | "note: " + .' "$JSON"
jq -r '.modes | to_entries[] | select(.value.drain.complete == false) | "note: the cold drain of mode \(.key) did not complete; its figures cover \(.value.drain.messages) messages"' "$JSON"

# --- the plot ----------------------------------------------------------------------------------
if command -v gnuplot >/dev/null 2>&1; then
  for mode in "${MODES[@]}"; do
    for f in "drain-$mode" "isodrain-$mode" "tail-$mode-alone" "tail-$mode-during"; do
      [ -f "$PD/$f.dat" ] || : >"$PD/$f.dat"
    done
  done
  [ -f "$PD/nats.dat" ] || : >"$PD/nats.dat"
  if timeout 60 gnuplot -e "dir='$PD'; out='$PNG'; modes='${MODES[*]}'; nats=$([ "$NATS_STATUS" = "done" ] && echo 1 || echo 0); heading='catch-up $STAMP, $BACKLOG_MB MiB backlog'" \
    "$ROOT/perf/catchup.gnuplot" 2>"$WORK/gnuplot.err"; then
    say "plot: $PNG"
  else
    say "gnuplot failed: $(tail -3 "$WORK/gnuplot.err" | tr '\n' ' ')"
  fi
fi
say "result: $JSON (series in $PD)"
exit 0
