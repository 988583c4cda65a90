#!/usr/bin/env bash
# Runs one libFuzzer target (tests/fuzz/<target>.c) under AddressSanitizer and UBSan for a given
# time, starting from its committed seed corpus, then prints how many inputs it executed and
# whether it crashed. Builds the fuzz build (build-fuzz/, clang, -DMG_FUZZ=ON) first when it is
# missing or stale. New inputs go to a work corpus outside the repository; the committed seeds
# are only read unless --into-seeds is given. See perf/README.md, "Fuzzing".
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD_DIR=$ROOT/build-fuzz
SEEDS_ROOT=$ROOT/tests/fuzz/corpus
WORK_ROOT=""
INTO_SEEDS=0
RUNS=-1
TIMEOUT_S=30     # one input running longer than this is reported as a hang (a crash)
RSS_LIMIT_MB=2048
EXTRA=()

usage() {
  cat <<USAGE
Usage: perf/fuzz.sh [options] TARGET MINUTES [-- libFuzzer flags]
       perf/fuzz.sh --list

Builds the fuzz build if needed (build-fuzz/: clang, -DMG_FUZZ=ON, ASan + UBSan + libFuzzer;
Debian packages clang and libfuzzer-14-dev, installed by scripts/setup.sh), then runs
fuzz_TARGET for MINUTES minutes (a decimal is allowed: 0.5) on its seed corpus
tests/fuzz/corpus/TARGET/ and a work corpus, and prints the number of executions and whether
it crashed. Exit status: 0 no crash, 1 a crash (the input is saved, its path printed),
2 bad arguments or build failure.

Run it niced on a shared machine: nice -n 10 perf/fuzz.sh pulsar_frame 30

Options:
  --list             the targets, one a line, with what each covers
  --runs N           stop after N executions as well (libFuzzer -runs)
  --work DIR         the work corpus and crash directory (default build-fuzz/fuzz-work/TARGET):
                     DIR/corpus gets the new inputs, DIR/crashes the crashing ones, DIR/log the
                     libFuzzer output of each run
  --into-seeds       write new inputs into the committed seed corpus instead (then minimise
                     it: see perf/README.md)
  --build-dir DIR    the fuzz build directory (default build-fuzz)
  -h, --help         this help

Flags after -- go to libFuzzer unchanged (e.g. -- -max_len=65536 -dict=FILE).
USAGE
}

list_targets() {
  cat <<LIST
pulsar_frame    Pulsar frames and commands: pw_frame_size, pw_frame_decode, topic names, SEND/MESSAGE payloads, re-encoding
pulsar_payload  message and batch payloads: pw_payload_parse, pw_metadata_unpack, pw_decompress, pw_batch_next
bookie_rpc      bookie RPC requests and responses: bk_decoder_alloc/commit/next in pieces, bk_request_check, re-encoding
http            admin HTTP requests: mg_http_server_inject (routing, path and query decoding, body limits) and the admin handlers' argument parsing
config          configuration files and command lines: mg_config_parse, mg_config_format_value round trip
goim_packet     GOIM / Bilibili chat packets: cg_packet_size, cg_packet_decode, op 9 batch split, re-encoding
kafka_records   Kafka record batches: kw_record_batch_parse, kw_decompress (every codec), kw_read_record, record headers; request headers and reads
LIST
}

args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --list) list_targets; exit 0 ;;
    --runs) RUNS=${2:?--runs needs a count}; shift 2 ;;
    --work) WORK_ROOT=${2:?--work needs a directory}; shift 2 ;;
    --into-seeds) INTO_SEEDS=1; shift ;;
    --build-dir) BUILD_DIR=${2:?--build-dir needs a directory}; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    --) shift; EXTRA=("$@"); break ;;
    -*) echo "fuzz.sh: unknown option '$1'" >&2; usage >&2; exit 2 ;;
    *) args+=("$1"); shift ;;
  esac
done
if [ ${#args[@]} -ne 2 ]; then
  echo "fuzz.sh: need TARGET and MINUTES" >&2
  usage >&2
  exit 2
fi
TARGET=${args[0]}
MINUTES=${args[1]}
if ! list_targets | awk '{print $1}' | grep -qx "$TARGET"; then
  echo "fuzz.sh: unknown target '$TARGET'; the targets are:" >&2
  list_targets | awk '{print "  " $1}' >&2
  exit 2
fi
if ! [[ "$MINUTES" =~ ^[0-9]+([.][0-9]+)?$ ]] || [ "$(awk -v m="$MINUTES" 'BEGIN{print (m > 0)}')" != 1 ]; then
  echo "fuzz.sh: MINUTES must be a positive number, not '$MINUTES'" >&2
  exit 2
fi
if ! [[ "$RUNS" =~ ^-?[0-9]+$ ]]; then
  echo "fuzz.sh: --runs must be a whole number, not '$RUNS'" >&2
  exit 2
fi
SECONDS_MAX=$(awk -v m="$MINUTES" 'BEGIN{s = int(m * 60 + 0.5); print (s < 1 ? 1 : s)}')

# --- build ------------------------------------------------------------------------------------
command -v clang >/dev/null || {
  echo "fuzz.sh: clang is missing (scripts/setup.sh installs clang and libfuzzer-14-dev)" >&2
  exit 2
}
if ! grep -qs '^MG_FUZZ:BOOL=ON' "$BUILD_DIR/CMakeCache.txt"; then
  echo "fuzz.sh: configuring $BUILD_DIR (clang, MG_FUZZ=ON)"
  cmake -S "$ROOT" -B "$BUILD_DIR" -G Ninja -DCMAKE_C_COMPILER=clang -DMG_FUZZ=ON \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null || { echo "fuzz.sh: configure failed" >&2; exit 2; }
fi
cmake --build "$BUILD_DIR" --target "fuzz_$TARGET" >/dev/null ||
  { echo "fuzz.sh: building fuzz_$TARGET failed (run: cmake --build $BUILD_DIR --target fuzz_$TARGET)" >&2; exit 2; }
BIN=$(find "$BUILD_DIR" -type f -name "fuzz_$TARGET" -perm -u+x | head -1)
[ -n "$BIN" ] || { echo "fuzz.sh: fuzz_$TARGET not found under $BUILD_DIR" >&2; exit 2; }

# --- run --------------------------------------------------------------------------------------
[ -n "$WORK_ROOT" ] || WORK_ROOT=$BUILD_DIR/fuzz-work/$TARGET
SEEDS=$SEEDS_ROOT/$TARGET
mkdir -p "$WORK_ROOT/corpus" "$WORK_ROOT/crashes" "$WORK_ROOT/log"
[ -d "$SEEDS" ] || { echo "fuzz.sh: no seed corpus at $SEEDS" >&2; exit 2; }
if [ "$INTO_SEEDS" = 1 ]; then
  CORPORA=("$SEEDS")
else
  CORPORA=("$WORK_ROOT/corpus" "$SEEDS") # libFuzzer writes new inputs into the first only
fi
LOG=$WORK_ROOT/log/$(date -u +%Y%m%dT%H%M%SZ).txt

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:strict_string_checks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
echo "fuzz.sh: fuzz_$TARGET for ${SECONDS_MAX}s (log $LOG)"
start=$(date +%s)
set +e
"$BIN" -max_total_time="$SECONDS_MAX" -runs="$RUNS" -timeout="$TIMEOUT_S" \
  -rss_limit_mb="$RSS_LIMIT_MB" -print_final_stats=1 -close_fd_mask=1 \
  -artifact_prefix="$WORK_ROOT/crashes/" "${EXTRA[@]}" "${CORPORA[@]}" >"$LOG" 2>&1
rc=$?
set -e
elapsed=$(( $(date +%s) - start ))

execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$LOG" | tail -1)
if [ -z "$execs" ]; then
  # No final stats (a crash ends the run first): the last status line's #N.
  execs=$(grep -o '^#[0-9]*' "$LOG" | tail -1 | tr -d '#')
fi
rate=$(awk -v n="${execs:-0}" -v s="$elapsed" 'BEGIN{printf "%.0f", (s > 0 ? n / s : n)}')
corpus_n=$(find "${CORPORA[0]}" -type f | wc -l)
echo "fuzz.sh: target=$TARGET executions=${execs:-0} seconds=$elapsed execs_per_s=$rate corpus_files=$corpus_n"
artifact=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$LOG" | tail -1)
if [ "$rc" -eq 0 ]; then
  echo "fuzz.sh: no crash"
  exit 0
fi
if [ "$rc" -eq 72 ] && [ -z "$artifact" ]; then
  # libFuzzer's exit status after SIGINT or SIGTERM (-interrupted_exitcode).
  echo "fuzz.sh: interrupted, no crash until then"
  exit 0
fi
echo "fuzz.sh: CRASH (libFuzzer exit status $rc); the report is in $LOG" >&2
grep -m1 -E 'ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error:|invariant broken|Assertion' "$LOG" >&2 || true
if [ -n "$artifact" ]; then
  echo "fuzz.sh: crashing input: $artifact" >&2
  echo "fuzz.sh: reproduce: $BIN $artifact" >&2
fi
exit 1
