#!/usr/bin/env bash
# Workload 4 of ../shared/BENCHMARKS.md (produce), plus the consume rate of what was produced, on
# this machine: a throw-away `magnetar standalone` in a temporary directory on the real disk,
# then `magnetar perf produce` with 1 KiB messages, batching and fsync on (the bookie answers
# after its journal's fdatasync):
#   1. maximum throughput: --rate 0 for --duration;
#   2. publish latency at half of that rate, for --duration;
#   3. fio's 4 KiB write + fdatasync in the standalone's data directory (the same disk), and
#      the ratio of the maximum produce MiB/s to it;
#   4. `magnetar perf consume` draining everything from the earliest message (from the page cache:
#      this is not the cold catch-up workload).
# Each produce phase also reports the standalone's CPU seconds (utime + stime from
# /proc/PID/stat, broker and bookie together) per MiB produced in it.
# JSON results go to perf/results/{produce-max,produce-half,consume}-<date>.json. Every wait is
# bounded; the standalone is stopped and the directory removed however the run ends.
set -u

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=$ROOT/build/magnetar
BASE=/var/tmp
DURATION=20s
PRODUCERS=1
OUTSTANDING=20000   # fewer leave the standalone idle between round trips (perf/README.md)
EXTRA=()
READY_WAIT_S=60
STOP_WAIT_S=60

usage() {
  cat <<EOF
Usage: perf/produce.sh [options] [-- magnetar perf produce options]

Runs the produce benchmark (1 KiB messages, batching on, fsync on) against a fresh standalone
in a temporary directory on the real disk: maximum throughput, latency at half of it, fio's
fdatasync write in the same directory, then a consume of everything produced.

Options:
  --dir DIR          parent of the temporary directory (default /var/tmp; not tmpfs)
  --bin PATH         the magnetar executable (default build/magnetar)
  --duration D       length of each produce phase (default 20s)
  --producers N      producers (default 1)
  --max-outstanding N  messages in flight per producer (default 20000)
  --help             this help

Arguments after -- go to both produce phases (e.g. -- --compression LZ4).
EOF
}

while [ $# -gt 0 ]; do
  case "$1" in
    --help|-h) usage; exit 0 ;;
    --dir) BASE=${2:?--dir needs a directory}; shift 2 ;;
    --bin) BIN=${2:?--bin needs a path}; shift 2 ;;
    --duration) DURATION=${2:?--duration needs a value}; shift 2 ;;
    --producers) PRODUCERS=${2:?--producers needs a number}; shift 2 ;;
    --max-outstanding) OUTSTANDING=${2:?--max-outstanding needs a number}; shift 2 ;;
    --) shift; EXTRA=("$@"); break ;;
    *) echo "perf/produce.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
done

if [ ! -x "$BIN" ]; then
  echo "perf/produce.sh: $BIN is not an executable; build first or pass --bin" >&2
  exit 1
fi
mkdir -p "$BASE" || exit 1
if [ "$(stat -f -c %T "$BASE")" = tmpfs ]; then
  echo "perf/produce.sh: $BASE is tmpfs, not a disk; pass --dir on a real file system" >&2
  exit 1
fi
# shellcheck source=perf/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
WORK=$(mktemp -d "$BASE/magnetar-perf-produce.XXXXXX") || exit 1
SA_PID=
# shellcheck disable=SC2317  # called through the EXIT trap
cleanup() {
  perf_standalone_kill
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

perf_standalone_start perf/produce.sh "$BIN" "$WORK" "$READY_WAIT_S" || exit 1
echo "perf/produce.sh: standalone ready at $URL, data in $WORK/data" >&2

STAMP=$(date +%Y%m%d-%H%M%S)
mkdir -p "$ROOT/perf/results" || exit 1
TOPIC=persistent://public/default/perf-produce-$STAMP
COMMON=(-u "$URL" -s 1024 -n "$PRODUCERS" -o "$OUTSTANDING" -b 1 -t "$DURATION")
TICKS_PER_S=$(getconf CLK_TCK)

# The standalone's CPU time so far, in clock ticks (utime + stime: fields 14 and 15 of
# /proc/PID/stat, counted after the ')' that ends the command name).
sa_cpu_ticks() {
  sed 's/.*) //' "/proc/$SA_PID/stat" | awk '{ print $12 + $13 }'
}

# Prints the standalone's CPU per MiB produced for a phase: $1 = ticks before, $2 = the phase's
# JSON result (its "bytes"), $3 = the phase's name.
report_cpu() {
  local after bytes
  after=$(sa_cpu_ticks)
  bytes=$(grep -oE '"bytes":[0-9]+' "$2" | head -1 | cut -d: -f2)
  awk -v b="$1" -v a="$after" -v t="$TICKS_PER_S" -v n="${bytes:-0}" -v p="$3" 'BEGIN {
    s = (a - b) / t; m = n / 1048576
    printf "standalone CPU during %s: %.2f s for %.1f MiB produced = %.2f CPU ms per MiB\n", \
      p, s, m, (m > 0 ? 1000 * s / m : 0) }'
}

echo "== 1. maximum throughput (--rate 0, $DURATION)"
CPU0=$(sa_cpu_ticks)
"$BIN" perf produce "${COMMON[@]}" -r 0 --json "$ROOT/perf/results/produce-max-$STAMP.json" \
  --fio-dir "$WORK/data" ${EXTRA[@]+"${EXTRA[@]}"} "$TOPIC" || exit 1
report_cpu "$CPU0" "$ROOT/perf/results/produce-max-$STAMP.json" "the maximum (and fio after it)"
MAX=$(grep -oE '"msg_per_s":[0-9.]+' "$ROOT/perf/results/produce-max-$STAMP.json" | head -1 | cut -d: -f2)
HALF=$(awk -v m="$MAX" 'BEGIN { printf "%d", m / 2 }')
echo "== 2. publish latency at half of it (--rate $HALF msg/s, $DURATION)"
CPU0=$(sa_cpu_ticks)
"$BIN" perf produce "${COMMON[@]}" -r "$HALF" --json "$ROOT/perf/results/produce-half-$STAMP.json" \
  ${EXTRA[@]+"${EXTRA[@]}"} "$TOPIC" || exit 1
report_cpu "$CPU0" "$ROOT/perf/results/produce-half-$STAMP.json" "the half rate"
echo "== 3. consume everything produced, from the earliest message"
TOTAL=$(cat "$ROOT/perf/results/produce-max-$STAMP.json" "$ROOT/perf/results/produce-half-$STAMP.json" |
  grep -oE '"messages":[0-9]+' | awk -F: '{ s += $2 } END { print s }')
"$BIN" perf consume -u "$URL" --subscription-position Earliest -m "$TOTAL" -t 300s \
  --json "$ROOT/perf/results/consume-$STAMP.json" "$TOPIC"
STATUS=$?

kill -TERM "$SA_PID" 2>/dev/null
for ((i = 0; i < STOP_WAIT_S * 10; i++)); do
  kill -0 "$SA_PID" 2>/dev/null || break
  sleep 0.1
done
if ! kill -0 "$SA_PID" 2>/dev/null; then
  wait "$SA_PID"
  SA_STATUS=$?
  SA_PID=
  [ "$SA_STATUS" != 0 ] && echo "perf/produce.sh: the standalone exited with status $SA_STATUS" >&2
fi
echo "perf/produce.sh: results in perf/results/{produce-max,produce-half,consume}-$STAMP.json" >&2
exit "$STATUS"
