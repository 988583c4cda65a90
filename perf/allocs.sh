#!/usr/bin/env bash
# Heap allocations per produced entry in a standalone: counts the libc malloc, calloc, realloc
# and posix_memalign calls of a throw-away `magnetar standalone` (uprobes through `perf stat`,
# so every allocation counts, the libraries' too) while `magnetar perf produce` runs against it,
# and divides them by the entries the managed ledgers added meanwhile (ml_add_latency_ms_count
# on /metrics). With --sites, `perf record --call-graph dwarf` instead lists where they happen.
# Needs root (uprobes) and perf (Debian package linux-perf). Probes it adds are removed at the
# end; the standalone is stopped and its directory removed however the run ends.
#
#   perf/allocs.sh [--bin PATH] [--dir DIR] [--sites] [-- magnetar perf produce options]
#   perf/allocs.sh -- -r 5000 -t 10s -b 0     # default: one message per entry, 5000 entries/s
set -u

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=$ROOT/build/magnetar
BASE=/var/tmp
SITES=0
PRODUCE=(-r 5000 -t 10s -b 0)
LIBC=$(ldconfig -p | awk '/libc\.so\.6 .*x86-64/ { print $NF; exit }')
READY_WAIT_S=60

while [ $# -gt 0 ]; do
  case "$1" in
    --help|-h) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    --bin) BIN=${2:?--bin needs a path}; shift 2 ;;
    --dir) BASE=${2:?--dir needs a directory}; shift 2 ;;
    --sites) SITES=1; shift ;;
    --) shift; [ $# -gt 0 ] && PRODUCE=("$@"); break ;;
    *) echo "perf/allocs.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
done
command -v perf >/dev/null || { echo "perf/allocs.sh: perf is not installed" >&2; exit 1; }
[ -x "$BIN" ] || { echo "perf/allocs.sh: $BIN is not an executable" >&2; exit 1; }

ADDED=()
for f in malloc calloc realloc posix_memalign; do
  if ! perf probe -l 2>/dev/null | grep -q "probe_libc:$f "; then
    perf probe -q -x "$LIBC" -a "$f" || { echo "perf/allocs.sh: cannot add a uprobe on $f (root?)" >&2; exit 1; }
    ADDED+=("probe_libc:$f")
  fi
done
# shellcheck source=perf/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
WORK=$(mktemp -d "$BASE/magnetar-perf-allocs.XXXXXX") || exit 1
SA_PID=
# shellcheck disable=SC2317  # called through the EXIT trap
cleanup() {
  perf_standalone_kill
  for p in ${ADDED[@]+"${ADDED[@]}"}; do perf probe -q -d "$p"; done
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

perf_standalone_start perf/allocs.sh "$BIN" "$WORK" "$READY_WAIT_S" || exit 1
TOPIC=persistent://public/default/perf-allocs
added() {
  curl -s --max-time 10 "$HTTP/metrics" | awk '/^ml_add_latency_ms_count/ { s += $2 } END { print s + 0 }'
}

# Warm-up: the topic, its ledger and the connections exist before counting.
nice -n 10 "$BIN" perf produce -u "$URL" -s 1024 -r 2000 -t 2s "$TOPIC" >/dev/null 2>&1
E0=$(added)
if [ "$SITES" = 1 ]; then
  perf record -q -e probe_libc:malloc,probe_libc:calloc --call-graph dwarf,16384 -p "$SA_PID" \
    -o "$WORK/perf.data" &
else
  perf stat -x, -e probe_libc:malloc,probe_libc:calloc,probe_libc:realloc,probe_libc:posix_memalign \
    -p "$SA_PID" -o "$WORK/stat" &
fi
PERF_PID=$!
sleep 0.5
nice -n 10 "$BIN" perf produce -u "$URL" -s 1024 "${PRODUCE[@]}" "$TOPIC" >"$WORK/produce.log" 2>&1
sleep 1
kill -INT "$PERF_PID"
wait "$PERF_PID"
E=$(($(added) - E0))
grep -m1 'Aggregated throughput produced' "$WORK/produce.log" | cut -c1-120
echo "entries added: $E (magnetar perf produce -s 1024 ${PRODUCE[*]})"
if [ "$SITES" = 1 ]; then
  perf report -i "$WORK/perf.data" --stdio --no-children -g caller,0.5,callee --sort sym 2>/dev/null |
    grep -E -- 'Samples|--[0-9.]+%--|^ +[0-9.]+%'
else
  awk -F, -v e="$E" '/probe_libc/ { n += $1; printf "  %-28s %10d  %5.2f per entry\n", $3, $1, e ? $1 / e : 0 }
    END { printf "  %-28s %10d  %5.2f per entry\n", "all", n, e ? n / e : 0 }' "$WORK/stat"
fi
