#!/usr/bin/env bash
# The bookie benchmark on this machine, end to end: starts a throw-away `magnetar bookie` in a
# temporary directory on the real disk, runs `magnetar perf bookie` against it (with fio in the
# bookie's ledger directory, so both measure the same disk), stops the bookie and removes the
# directory. The summary goes to stdout, the JSON to perf/results/bookie-<date>.json.
# Every wait is bounded; the bookie is stopped and the directory removed however the run ends.
set -u

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=$ROOT/build/magnetar
BASE=/var/tmp
BOOKIE_ARGS=()
FIO=1
PERF_ARGS=()
READY_WAIT_S=60   # the bookie opens RocksDB and registers itself: seconds, not minutes
STOP_WAIT_S=60    # SIGTERM: the bookie flushes and closes its storage

usage() {
  cat <<EOF
Usage: perf/bookie.sh [script options] [magnetar perf bookie options]

Runs the bookie benchmark on this machine: a fresh bookie in a temporary directory on the real
disk, \`magnetar perf bookie\` against it with fio in the same directory, then cleans up.
Run it as root so the page cache can be dropped before the read phase (else the read is warm).

Script options:
  --dir DIR          parent of the temporary directory (default /var/tmp; must not be tmpfs:
                     the bookie reads with O_DIRECT and fio must measure the real disk)
  --bin PATH         the magnetar executable (default build/magnetar)
  --no-fio           skip fio (a quick functional check; no ratios are reported)
  --bookie-arg ARG   pass ARG to \`magnetar bookie\` (repeat it: --bookie-arg --readahead-kb
                     --bookie-arg 8192, or --bookie-arg=--no-readahead)
  --help             this help

Every other argument goes to \`magnetar perf bookie\` (see \`magnetar perf bookie --help\`),
e.g. --entries 100000, --read-inflight 8, --read-max-kb 8192, --fio-size 2G.
The JSON result is written to perf/results/bookie-<date>.json (a later --json FILE wins).
EOF
}

while [ $# -gt 0 ]; do
  case "$1" in
    --help|-h) usage; exit 0 ;;
    --dir) BASE=${2:?--dir needs a directory}; shift 2 ;;
    --dir=*) BASE=${1#--dir=}; shift ;;
    --bin) BIN=${2:?--bin needs a path}; shift 2 ;;
    --bin=*) BIN=${1#--bin=}; shift ;;
    --no-fio) FIO=0; shift ;;
    --bookie-arg) BOOKIE_ARGS+=("${2:?--bookie-arg needs a value}"); shift 2 ;;
    --bookie-arg=*) BOOKIE_ARGS+=("${1#--bookie-arg=}"); shift ;;
    *) PERF_ARGS+=("$1"); shift ;;
  esac
done

if [ ! -x "$BIN" ]; then
  echo "perf/bookie.sh: $BIN is not an executable; build first (cmake --build build) or pass --bin" >&2
  exit 1
fi
if [ "$FIO" = 1 ] && ! command -v fio >/dev/null 2>&1; then
  echo "perf/bookie.sh: fio is not installed (Debian package fio; scripts/setup.sh installs it)" >&2
  exit 1
fi
mkdir -p "$BASE" || exit 1
if [ "$(stat -f -c %T "$BASE")" = tmpfs ]; then
  echo "perf/bookie.sh: $BASE is tmpfs, not a disk; pass --dir on a real file system" >&2
  exit 1
fi

WORK=$(mktemp -d "$BASE/magnetar-perf-bookie.XXXXXX") || exit 1
BOOKIE_PID=
# shellcheck disable=SC2317  # called through the EXIT trap
cleanup() {
  if [ -n "$BOOKIE_PID" ] && kill -0 "$BOOKIE_PID" 2>/dev/null; then
    kill -KILL "$BOOKIE_PID" 2>/dev/null
    wait "$BOOKIE_PID" 2>/dev/null
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

"$BIN" bookie --metadata-url "rocksdb:$WORK/metadata" --port 0 --http-port 0 \
  --bind-address 127.0.0.1 --journal-dir "$WORK/journal" --ledger-dirs "$WORK/ledgers" \
  ${BOOKIE_ARGS[@]+"${BOOKIE_ARGS[@]}"} >"$WORK/bookie.log" 2>&1 &
BOOKIE_PID=$!

RPC_PORT="" HTTP_PORT=""
for ((i = 0; i < READY_WAIT_S * 10; i++)); do
  line=$(grep -m1 'ready: rpc ' "$WORK/bookie.log" 2>/dev/null)
  if [ -n "$line" ]; then
    RPC_PORT=$(sed -E 's/.*ready: rpc [^,]*:([0-9]+),.*/\1/' <<<"$line")
    HTTP_PORT=$(sed -E 's/.*, http [^,]*:([0-9]+),.*/\1/' <<<"$line")
    break
  fi
  kill -0 "$BOOKIE_PID" 2>/dev/null || break
  sleep 0.1
done
if ! [[ "$RPC_PORT" =~ ^[0-9]+$ && "$HTTP_PORT" =~ ^[0-9]+$ ]]; then
  echo "perf/bookie.sh: the bookie did not become ready within ${READY_WAIT_S}s; its log:" >&2
  tail -20 "$WORK/bookie.log" >&2
  exit 1
fi
echo "perf/bookie.sh: bookie ready on 127.0.0.1:$RPC_PORT (http $HTTP_PORT) in $WORK" >&2

JSON=$ROOT/perf/results/bookie-$(date +%Y%m%d-%H%M%S).json
for ((i = 0; i < ${#PERF_ARGS[@]}; i++)); do   # a --json given by the caller wins: name it
  case "${PERF_ARGS[i]}" in
    --json) JSON=${PERF_ARGS[i + 1]:-$JSON} ;;
    --json=*) JSON=${PERF_ARGS[i]#--json=} ;;
  esac
done
mkdir -p "$(dirname "$JSON")" || exit 1
FIO_ARGS=()
[ "$FIO" = 1 ] && FIO_ARGS=(--fio-dir "$WORK/ledgers")
"$BIN" perf bookie --bookie "127.0.0.1:$RPC_PORT" --bookie-http "127.0.0.1:$HTTP_PORT" \
  ${FIO_ARGS[@]+"${FIO_ARGS[@]}"} --json "$JSON" ${PERF_ARGS[@]+"${PERF_ARGS[@]}"}
STATUS=$?

kill -TERM "$BOOKIE_PID" 2>/dev/null
for ((i = 0; i < STOP_WAIT_S * 10; i++)); do
  kill -0 "$BOOKIE_PID" 2>/dev/null || break
  sleep 0.1
done
if kill -0 "$BOOKIE_PID" 2>/dev/null; then
  echo "perf/bookie.sh: the bookie did not stop within ${STOP_WAIT_S}s of SIGTERM; killing it" >&2
else
  wait "$BOOKIE_PID"
  BOOKIE_STATUS=$?
  BOOKIE_PID=
  if [ "$BOOKIE_STATUS" != 0 ]; then
    echo "perf/bookie.sh: the bookie exited with status $BOOKIE_STATUS; its log:" >&2
    tail -20 "$WORK/bookie.log" >&2
  fi
fi
if [ "$STATUS" = 0 ]; then
  echo "perf/bookie.sh: result written to $JSON" >&2
elif [ "$STATUS" = 1 ]; then
  echo "perf/bookie.sh: the benchmark failed; the bookie's log ends with:" >&2
  tail -10 "$WORK/bookie.log" >&2
fi
exit "$STATUS"
