#!/usr/bin/env bash
# Workload 6 of ../shared/BENCHMARKS.md (KoP produce and drain): the broker's Kafka port against
# its native Pulsar port, the same messages in the same run, on one throw-away standalone in a
# temporary directory on the real disk (--kafka on, the Kafka port picked free):
#   a. produce: N messages of 1 KiB, batched, acks after the bookie's fdatasync, through
#      perf_kafka_load produce (librdkafka: acks=all, linger.ms=1, batch.size 128 KiB,
#      batch.num.messages 1000) to topic k-produce, and through `magnetar perf produce` (batch
#      window 1 ms, 1000 messages / 128 KiB per batch) to topic p-produce; the order alternates
#      over --rounds rounds to cancel drift. N is --messages, or what the Pulsar producer sends in
#      --phase-s seconds, measured by a short calibration run first. msg/s, MB/s, the ratio
#      kafka/pulsar per round and its median; the standalone's CPU ms per MiB of each phase.
#   b. drain: one backlog topic of --backlog-gb GiB of 1 KiB messages (written once by the
#      Pulsar producer, or --backlog-producer kafka), held by a subscription that never reads;
#      the standalone stopped (SIGTERM: the bookie flushes and closes the ledger); then per drain
#      the standalone restarted (nothing in its caches), `sync; echo 3 > drop_caches`, and either
#      perf_kafka_load consume (partition 0 assigned from offset 0, no group, librdkafka's fetch
#      defaults) or `magnetar perf consume` (a new subscription from Earliest, 5000 permits)
#      drains the whole backlog; the order alternates over --drain-rounds. fio's sequential read
#      (1 MiB, O_DIRECT, libaio depth 16) in the data directory before the backlog and after the
#      drains, as perf/catchup.sh does; each drain as MB/s, as x fio (their mean), the ratio
#      kafka/pulsar, the standalone's CPU seconds per GiB and the bookie's disk bytes per byte.
# Writes perf/results/kafka-<date>.json (--json), every tool's output beside it in
# kafka-<date>-data/raw/, a PNG (perf/kafka.gnuplot) and prints a summary with the goals
# (kafka/pulsar >= 0.8 for both). MB are 10^6 bytes, MiB and GiB 2^20 and 2^30. Load generators
# run under `nice -n 10`; the standalone and fio do not. Every wait is bounded; the standalone
# is stopped, the load generators ended and the directory removed however the run ends.
set -u

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=$ROOT/build/magnetar
KL_BIN=$ROOT/build/perf/perf_kafka_load
BASE=/var/tmp
ROUNDS=3
PHASE_S=10
MESSAGES=
CALIBRATE_S=6
BACKLOG_MB=4096
DRAIN_ROUNDS=1
BACKLOG_PRODUCER=pulsar
JSON=
FIO_SIZE=1G
MSG_SIZE=1024
BATCH_BYTES=131072   # both producers: 128 KiB per batch (magnetar perf produce's default)
BATCH_MESSAGES=1000  # both producers: 1000 messages per batch at most (the same)
LINGER_MS=1          # librdkafka's linger.ms and the Pulsar batch window
OUTSTANDING=20000    # messages in flight, both producers (Pulsar -o, librdkafka's
                     # queue.buffering.max.messages): fewer leave the standalone idle (perf/README.md)
QUEUE=5000           # Pulsar flow permits of the draining consumer, as perf/catchup.sh
KAFKA_FETCH_ARGS=()
KAFKA_PRODUCE_ARGS=()
DO_PRODUCE=1
DO_DRAIN=1
PROFILE=0
QUICK=0
ROUNDS_SET=0
BACKLOG_SET=0
SA_EXTRA=()
READY_WAIT_S=180    # a restart opens RocksDB and recovers the ledgers of a multi-GiB backlog
STOP_WAIT_S=60
CONSUMER_READY_S=60
NICE=(nice -n 10)

usage() {
  cat <<EOF
Usage: perf/kafka.sh [options]

Workload 6 (KoP produce and drain): Kafka produce through librdkafka against native Pulsar
produce of the same 1 KiB messages, and a Kafka consumer draining a cold backlog against a
Pulsar consumer draining the same, on one fresh standalone with the Kafka port on. Needs root
(it drops the page cache before each drain), fio, jq and curl; gnuplot for the PNG.

Options:
  --quick                 a smoke run: 2 rounds of 3 s phases, a 256 MiB backlog, fio 256M
  --rounds R              produce rounds, the order alternating (default 3)
  --phase-s S             the length a produce phase aims at (default 10: at 400 MB/s a
                          phase writes 4 GB, and the bookie reclaims deleted topics' entry logs
                          only by its garbage collection, so longer phases can fill the disk)
  --messages N            messages per produce phase (default: calibrated for --phase-s)
  --backlog-gb G          backlog size in GiB (default 4)
  --backlog-mb M          backlog size in MiB (overrides --backlog-gb)
  --backlog-producer P    pulsar or kafka: who writes the backlog (default pulsar)
  --drain-rounds R        drains of each kind, the order alternating (default 1)
  --kafka-fetch-max-bytes B       the Kafka consumer's fetch.max.bytes (default librdkafka's)
  --kafka-partition-fetch-bytes B the Kafka consumer's max.partition.fetch.bytes (default
                          librdkafka's, 1 MiB)
  --kafka-produce-arg ARG pass ARG to perf_kafka_load produce (repeat it)
  --no-produce, --no-drain  skip a part
  --profile               perf record -g of the standalone for 10 s in the first Kafka and
                          Pulsar phase of each part; perf report --stdio heads beside the result
  --dir DIR               parent of the temporary directory (default /var/tmp; not tmpfs)
  --bin PATH              the magnetar executable (default build/magnetar)
  --kafka-load PATH       perf_kafka_load (default build/perf/perf_kafka_load)
  --json FILE             result file (default perf/results/kafka-<date>.json)
  --fio-size SIZE         fio's file (default 1G)
  --standalone-arg ARG    pass ARG to \`magnetar standalone\` (repeat it)
  --help                  this help
EOF
}

while [ $# -gt 0 ]; do
  case "$1" in
    --help|-h) usage; exit 0 ;;
    --quick) QUICK=1; shift ;;
    --rounds) ROUNDS=${2:?--rounds needs a number}; ROUNDS_SET=1; shift 2 ;;
    --phase-s) PHASE_S=${2:?--phase-s needs a number}; shift 2 ;;
    --messages) MESSAGES=${2:?--messages needs a number}; shift 2 ;;
    --backlog-gb) BACKLOG_MB=$(awk -v g="${2:?--backlog-gb needs a number}" 'BEGIN { printf "%d", g * 1024 }'); BACKLOG_SET=1; shift 2 ;;
    --backlog-mb) BACKLOG_MB=${2:?--backlog-mb needs a number}; BACKLOG_SET=1; shift 2 ;;
    --backlog-producer) BACKLOG_PRODUCER=${2:?--backlog-producer needs pulsar or kafka}; shift 2 ;;
    --drain-rounds) DRAIN_ROUNDS=${2:?--drain-rounds needs a number}; shift 2 ;;
    --kafka-fetch-max-bytes) KAFKA_FETCH_ARGS+=(--fetch-max-bytes "${2:?needs bytes}"); shift 2 ;;
    --kafka-partition-fetch-bytes) KAFKA_FETCH_ARGS+=(--partition-fetch-bytes "${2:?needs bytes}"); shift 2 ;;
    --kafka-produce-arg) KAFKA_PRODUCE_ARGS+=("${2:?--kafka-produce-arg needs a value}"); shift 2 ;;
    --no-produce) DO_PRODUCE=0; shift ;;
    --no-drain) DO_DRAIN=0; shift ;;
    --profile) PROFILE=1; shift ;;
    --dir) BASE=${2:?--dir needs a directory}; shift 2 ;;
    --bin) BIN=${2:?--bin needs a path}; shift 2 ;;
    --kafka-load) KL_BIN=${2:?--kafka-load needs a path}; shift 2 ;;
    --json) JSON=${2:?--json needs a file}; shift 2 ;;
    --fio-size) FIO_SIZE=${2:?--fio-size needs a size}; shift 2 ;;
    --standalone-arg) SA_EXTRA+=("${2:?--standalone-arg needs a value}"); shift 2 ;;
    --standalone-arg=*) SA_EXTRA+=("${1#--standalone-arg=}"); shift ;;
    *) echo "perf/kafka.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
done
# --quick: short phases and a small backlog; --rounds and the backlog size still apply if given.
if [ "$QUICK" = 1 ]; then
  [ "$ROUNDS_SET" = 1 ] || ROUNDS=2
  [ "$BACKLOG_SET" = 1 ] || BACKLOG_MB=256
  PHASE_S=3 CALIBRATE_S=2 FIO_SIZE=256M
fi

say() { printf '%s kafka: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { say "$*"; exit 1; }
is_uint() { [[ $1 =~ ^[0-9]+$ ]]; }

{ is_uint "$ROUNDS" && [ "$ROUNDS" -ge 1 ]; } || die "--rounds needs a positive integer"
{ is_uint "$DRAIN_ROUNDS" && [ "$DRAIN_ROUNDS" -ge 1 ]; } || die "--drain-rounds needs a positive integer"
{ is_uint "$PHASE_S" && [ "$PHASE_S" -ge 1 ]; } || die "--phase-s needs a positive integer"
{ is_uint "$BACKLOG_MB" && [ "$BACKLOG_MB" -ge 1 ]; } || die "the backlog needs a positive size"
[ -z "$MESSAGES" ] || { is_uint "$MESSAGES" && [ "$MESSAGES" -ge 1 ]; } || die "--messages needs a positive integer"
[ "$BACKLOG_PRODUCER" = pulsar ] || [ "$BACKLOG_PRODUCER" = kafka ] || die "--backlog-producer is pulsar or kafka"
[ "$(id -u)" = 0 ] || [ "$DO_DRAIN" = 0 ] || die "must run as root: every drain starts with echo 3 > /proc/sys/vm/drop_caches"
[ -x "$BIN" ] || die "$BIN is not an executable; build first (cmake --build build) or pass --bin"
[ -x "$KL_BIN" ] || die "$KL_BIN is not an executable; cmake --build build --target perf_kafka_load (needs librdkafka-dev)"
for t in jq curl fio; do
  command -v "$t" >/dev/null 2>&1 || die "$t is needed (Debian package $t)"
done
[ "$PROFILE" = 0 ] || command -v perf >/dev/null 2>&1 || die "--profile needs perf (Debian package linux-perf)"

mkdir -p "$BASE" || exit 1
[ "$(stat -f -c %T "$BASE")" != tmpfs ] || die "$BASE is tmpfs, not a disk; pass --dir on a real file system"

STAMP=$(date +%Y%m%d-%H%M%S)
[ -n "$JSON" ] || JSON=$ROOT/perf/results/kafka-$STAMP.json
mkdir -p "$(dirname "$JSON")" || exit 1
JSON=$(cd "$(dirname "$JSON")" && pwd)/$(basename "$JSON")
OUT_BASE=${JSON%.json}
PNG=$OUT_BASE.png
PD=$OUT_BASE-data
mkdir -p "$PD" || exit 1

# shellcheck source=perf/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
WORK=$(mktemp -d "$BASE/magnetar-perf-kafka.XXXXXX") || exit 1
R=$WORK/results # every tool's own output, read back with jq
mkdir -p "$R" || exit 1
SA_PID=
SA_STARTS=0
# shellcheck disable=SC2317  # called through the EXIT trap
cleanup() {
  local p
  perf_standalone_kill
  # Only this shell's children still running: a pid that exited earlier may have been reused.
  for p in $(jobs -pr); do
    kill -KILL "$p" 2>/dev/null
    wait "$p" 2>/dev/null
  done
  [ -f "$WORK/standalone.log" ] && cp "$WORK/standalone.log" "$R/standalone-$SA_STARTS.log"
  mkdir -p "$PD/raw" && cp -p "$R"/* "$PD/raw/" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Room for the backlog twice (entry logs, journal, indexes), one produce phase (its topic is
# deleted after it: 12 GiB, 30 s at 400 MB/s) and fio's file, with 2 GiB to spare.
NEED_MB=$((BACKLOG_MB * 2 * DO_DRAIN + 2048 + 12288 * DO_PRODUCE))
AVAIL_MB=$(df -Pm "$BASE" | awk 'NR == 2 { print $4 }')
[ "${AVAIL_MB:-0}" -ge "$NEED_MB" ] || die "$BASE has ${AVAIL_MB:-?} MiB free, this run needs about $NEED_MB"

CLK_TCK=$(getconf CLK_TCK)
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
NOTES=()

# --- helpers --------------------------------------------------------------------------------
cpu_s() { # PID: its utime + stime in seconds
  local line rest
  read -r line <"/proc/$1/stat" 2>/dev/null || return 1
  rest=${line##*) }
  # shellcheck disable=SC2086
  set -- $rest
  awk -v u="${12}" -v s="${13}" -v hz="$CLK_TCK" 'BEGIN { printf "%.2f\n", (u + s) / hz }'
}
io_read_bytes() { awk '$1 == "read_bytes:" { print $2 }' "/proc/$1/io" 2>/dev/null; }
num() { if [ -n "${1:-}" ]; then echo "$1"; else echo null; fi; }
metric() { # FILE NAME
  awk -v n="$2" '$1 == n && $2 ~ /^-?[0-9.]+([eE][-+]?[0-9]+)?$/ { print $2; exit }' "$1" 2>/dev/null
}
scrape() { # FILE: the standalone's /metrics, or an empty file
  if [ -z "${HTTP:-}" ] || ! curl -s --max-time 10 "$HTTP/metrics" >"$1"; then : >"$1"; fi
}
drop_caches() {
  timeout 300 sync
  echo 3 >/proc/sys/vm/drop_caches || die "cannot drop the page cache"
}

# run_client LIMIT_S OUT ERR CMD...: runs a load generator in the background under nice, waits
# at most LIMIT_S (then SIGINT, SIGKILL 10 s later), keeping its CPU seconds (sampled every
# 0.2 s, so up to 0.2 s short) in CLIENT_CPU; returns its status (124 when interrupted).
CLIENT_CPU=
run_client() {
  local limit=$1 out=$2 err=$3 pid i c
  shift 3
  "${NICE[@]}" "$@" >"$out" 2>"$err" &
  pid=$!
  CLIENT_CPU=
  [ -z "${ON_CLIENT_START:-}" ] || "$ON_CLIENT_START"
  for ((i = 0; i < limit * 5; i++)); do
    c=$(cpu_s "$pid" 2>/dev/null) || break
    [ -n "$c" ] && CLIENT_CPU=$c
    # A standalone that exited (or was stopped by something else) ends the phase at once.
    if [ -n "${SA_PID:-}" ] && ! kill -0 "$SA_PID" 2>/dev/null; then
      say "the standalone (pid $SA_PID) exited during the phase: $(tail -2 "$WORK/standalone.log" | tr '\n' ' ')"
      break
    fi
    sleep 0.2
  done
  if kill -0 "$pid" 2>/dev/null; then
    say "$(basename "$1") still running after $((i / 5))s: interrupting it"
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

# --profile: perf record -g of the standalone for 10 s, once per label, started 2 s into the phase.
PROFILED=" "
# shellcheck disable=SC2317  # the profile_* functions run through ON_CLIENT_START
maybe_profile() { # LABEL
  [ "$PROFILE" = 1 ] || return 0
  [[ $PROFILED == *" $1 "* ]] && return 0
  PROFILED+="$1 "
  (
    sleep 2
    perf record -g -o "$R/profile-$1.data" -p "$SA_PID" -- sleep 10 >/dev/null 2>"$R/profile-$1.err"
    perf report --stdio -i "$R/profile-$1.data" 2>/dev/null | head -60 >"$R/profile-$1.txt"
    perf report --stdio --no-children -g none --sort comm,dso,symbol -i "$R/profile-$1.data" 2>/dev/null |
      grep -E '^ +[0-9]' | head -40 >"$R/profile-$1-self.txt"
    rm -f "$R/profile-$1.data"
  ) &
}

wait_profiles() { # the recording subshells: at most 20 s
  local p i
  for p in $(jobs -pr); do
    [ "$p" = "${SA_PID:-}" ] && continue
    for ((i = 0; i < 200; i++)); do
      kill -0 "$p" 2>/dev/null || break
      sleep 0.1
    done
  done
}

start_standalone() {
  if [ "$SA_STARTS" -gt 0 ] && [ -f "$WORK/standalone.log" ]; then
    cp "$WORK/standalone.log" "$R/standalone-$SA_STARTS.log"
  fi
  SA_STARTS=$((SA_STARTS + 1))
  perf_standalone_start perf/kafka.sh "$BIN" "$WORK" "$READY_WAIT_S" --kafka on --kafka-port 0 \
    ${SA_EXTRA[@]+"${SA_EXTRA[@]}"} || exit 1
  KAFKA=$(grep -m1 -oE 'kafka [0-9.]+:[0-9]+' "$WORK/standalone.log" | sed 's/kafka //')
  [ -n "$KAFKA" ] || die "the standalone's ready line names no Kafka port: $(grep -m1 ready "$WORK/standalone.log")"
  say "standalone ready: $URL, kafka $KAFKA, metrics $HTTP, pid $SA_PID"
}
stop_standalone() {
  perf_standalone_stop "$STOP_WAIT_S" || say "the standalone did not stop within ${STOP_WAIT_S}s: killed"
}

delete_topic() { # NAME: the topic and its data (the produce phases would fill the disk)
  curl -s --max-time 60 -X DELETE "$HTTP/admin/v2/persistent/public/default/$1?force=true" \
    -o "$R/delete-$1.out" -w '%{http_code}' | grep -q '^2' ||
    say "could not delete topic $1: $(cat "$R/delete-$1.out" 2>/dev/null)"
}

# run_fio NAME: fio's sequential read in the data directory; its JSON in $R/fio-NAME.json.
run_fio() {
  local name=$1 st
  say "fio sequential read ($name): 1 MiB O_DIRECT, libaio depth 16, $FIO_SIZE"
  mkdir -p "$WORK/data"
  timeout 300 fio --name=seqread --filename="$WORK/data/fio-seqread.tmp" --rw=read --bs=1M \
    --direct=1 --ioengine=libaio --iodepth=16 --size="$FIO_SIZE" --runtime=60 \
    --output-format=json >"$R/fio-$name.json" 2>"$R/fio-$name.err"
  st=$?
  rm -f "$WORK/data/fio-seqread.tmp"
  if [ "$st" != 0 ] || ! jq -e '.jobs[0].read.bw_bytes > 0' "$R/fio-$name.json" >/dev/null 2>&1; then
    say "fio ($name) failed (status $st): $(tail -3 "$R/fio-$name.err" | tr '\n' ' ')"
    echo '{}' >"$R/fio-$name.json"
    return 1
  fi
  say "fio ($name): $(jq -r '.jobs[0].read.bw_bytes / 1e6 | floor' "$R/fio-$name.json") MB/s"
}

# --- a. produce -------------------------------------------------------------------------------
K_TOPIC='k-produce'
P_TOPIC='p-produce'
# Pulsar: the batch limits above; Kafka: the same through librdkafka's names.
P_ARGS=(-r 0 -s "$MSG_SIZE" -o "$OUTSTANDING" -b "$LINGER_MS" --batch-max-messages "$BATCH_MESSAGES"
  --batch-max-bytes "$BATCH_BYTES" --stats-interval 1s)
K_ARGS=(--size "$MSG_SIZE" --acks all --linger-ms "$LINGER_MS" --batch-size "$BATCH_BYTES"
  --batch-messages "$BATCH_MESSAGES" --queue-messages "$OUTSTANDING" --compression none)

# produce_phase SIDE ROUND N: one phase; its figures in $R/produce-SIDE-ROUND.json.
produce_phase() {
  local side=$1 round=$2 n=$3 name=produce-$1-$2 st cpu0 cpu1 limit
  limit=$((PHASE_S * 10 + 120)) # a side 10 times slower than the calibration still ends
  cpu0=$(cpu_s "$SA_PID")
  ON_CLIENT_START=
  [ "$round" = 1 ] && ON_CLIENT_START="profile_$side"
  if [ "$side" = kafka ]; then
    say "round $round: kafka produce of $n messages to $K_TOPIC"
    run_client "$limit" "$R/$name.out" "$R/$name.err" "$KL_BIN" produce --bootstrap "$KAFKA" \
      --topic "$K_TOPIC" --count "$n" --timeout "$limit" "${K_ARGS[@]}" \
      ${KAFKA_PRODUCE_ARGS[@]+"${KAFKA_PRODUCE_ARGS[@]}"} --json "$R/$name-client.json"
  else
    say "round $round: pulsar produce of $n messages to $P_TOPIC"
    run_client "$limit" "$R/$name.out" "$R/$name.err" "$BIN" perf produce -u "$URL" "${P_ARGS[@]}" \
      -m "$n" -t "${limit}s" --json "$R/$name-client.json" "persistent://public/default/$P_TOPIC"
  fi
  st=$?
  cpu1=$(cpu_s "$SA_PID")
  ON_CLIENT_START=
  [ -s "$R/$name-client.json" ] || echo '{}' >"$R/$name-client.json"
  [ "$st" = 0 ] || say "$side produce exited with status $st: $(tail -3 "$R/$name.err" | tr '\n' ' ')"
  # Both tools' JSON to one shape: messages, bytes, seconds, MB/s (10^6), msg/s, latency.
  jq -n --slurpfile c "$R/$name-client.json" --arg side "$side" --argjson round "$round" \
    --argjson want "$n" --argjson status "$st" --argjson cpu0 "$(num "$cpu0")" \
    --argjson cpu1 "$(num "$cpu1")" --argjson ccpu "$(num "$CLIENT_CPU")" '
    ($c[0]) as $c | ($c.bytes // 0) as $b | ($c.seconds // 0) as $s
    | (if $cpu0 != null and $cpu1 != null then $cpu1 - $cpu0 else null end) as $cpu
    | {
        side: $side, round: $round, exit_status: $status,
        complete: ($status == 0 and ($c.messages // 0) == $want),
        messages: ($c.messages // 0), bytes: $b, seconds: $s,
        msg_per_s: (if $s > 0 then ($c.messages // 0) / $s else null end),
        mb_per_s: (if $s > 0 then $b / $s / 1e6 else null end),
        latency_ms: (($c.latency_ms // {}) | {mean, p50, p99, p999, max}),
        standalone_cpu_s: $cpu,
        standalone_cpu_ms_per_mib: (if $cpu != null and $b > 0 then 1000 * $cpu / ($b / 1048576) else null end),
        client_cpu_s: $ccpu,
        client_cores: (if $ccpu != null and $s > 0 then $ccpu / $s else null end),
        client: $c
      }' >"$R/$name.json" || die "could not build the figures of $name"
  say "round $round, $side: $(jq -r '"\(.messages) messages in \(.seconds) s: \(.msg_per_s // 0 | floor) msg/s, \(.mb_per_s // 0 | . * 10 | floor / 10) MB/s, p99 \(.latency_ms.p99) ms"' "$R/$name.json")"
  [ "$PROFILE" = 0 ] || wait_profiles
  delete_topic "$([ "$side" = kafka ] && echo "$K_TOPIC" || echo "$P_TOPIC")"
}
# shellcheck disable=SC2317  # run through ON_CLIENT_START
profile_kafka() { maybe_profile produce-kafka; }
# shellcheck disable=SC2317
profile_pulsar() { maybe_profile produce-pulsar; }

N_PRODUCE=0
if [ "$DO_PRODUCE" = 1 ]; then
  start_standalone
  if [ -z "$MESSAGES" ]; then
    say "calibration: pulsar produce for ${CALIBRATE_S}s to size the phases (${PHASE_S}s each)"
    run_client $((CALIBRATE_S + 60)) "$R/calibrate.out" "$R/calibrate.err" "$BIN" perf produce \
      -u "$URL" "${P_ARGS[@]}" -t "${CALIBRATE_S}s" --json "$R/calibrate.json" \
      persistent://public/default/p-calibrate || die "the calibration failed: $(tail -3 "$R/calibrate.err" | tr '\n' ' ')"
    delete_topic p-calibrate
    # The median of the per-second rates after the first second (the topic's creation and the
    # client's start slow the first one), else the run's mean.
    CAL_RATE=$(awk '/^Throughput produced:/ { n++; if (n > 1) print $3 }' "$R/calibrate.out" | sort -n |
      awk '{ v[NR] = $1 } END { if (NR) printf "%d", (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }')
    [ -n "$CAL_RATE" ] || CAL_RATE=$(jq -r '.msg_per_s | floor' "$R/calibrate.json")
    MESSAGES=$(awk -v r="$CAL_RATE" -v p="$PHASE_S" 'BEGIN { n = int(r * p / 1000) * 1000; print (n < 1000 ? 1000 : n) }')
    say "calibration: $CAL_RATE msg/s (median of the seconds after the first): $MESSAGES messages per phase"
  fi
  N_PRODUCE=$MESSAGES
  for ((round = 1; round <= ROUNDS; round++)); do
    if ((round % 2 == 1)); then order=(kafka pulsar); else order=(pulsar kafka); fi
    for side in "${order[@]}"; do
      produce_phase "$side" "$round" "$N_PRODUCE"
    done
  done
  if [ "$DO_DRAIN" = 0 ]; then stop_standalone; fi
fi

# --- b. drain ---------------------------------------------------------------------------------
B_TOPIC=kafka-backlog
N_BACKLOG=$((BACKLOG_MB * 1024 * 1024 / MSG_SIZE))
DRAIN_LIMIT_S=$((120 + BACKLOG_MB * 1048576 / 10000000)) # slower than 10 MB/s is a failure

drain_run() { # SIDE ROUND
  local side=$1 round=$2 name=drain-$1-$2 st cpu0 cpu1 io0 io1
  start_standalone
  drop_caches
  scrape "$R/$name-metrics-before.txt"
  cpu0=$(cpu_s "$SA_PID") io0=$(io_read_bytes "$SA_PID")
  ON_CLIENT_START=
  [ "$round" = 1 ] && ON_CLIENT_START="profile_drain_$side"
  if [ "$side" = kafka ]; then
    say "drain $round: kafka consumer, partition 0 from offset 0, $N_BACKLOG messages"
    run_client $((DRAIN_LIMIT_S + 60)) "$R/$name.out" "$R/$name.err" "$KL_BIN" consume \
      --bootstrap "$KAFKA" --topic "$B_TOPIC" --offset beginning --count "$N_BACKLOG" \
      --timeout "$DRAIN_LIMIT_S" ${KAFKA_FETCH_ARGS[@]+"${KAFKA_FETCH_ARGS[@]}"} \
      --json "$R/$name-client.json"
  else
    say "drain $round: pulsar consumer, a new subscription from Earliest, $N_BACKLOG messages"
    run_client $((DRAIN_LIMIT_S + 60)) "$R/$name.out" "$R/$name.err" "$BIN" perf consume \
      -u "$URL" -S "drain-$round" --subscription-position Earliest -q "$QUEUE" -m "$N_BACKLOG" \
      -t "${DRAIN_LIMIT_S}s" --stats-interval 1s --json "$R/$name-client.json" \
      "persistent://public/default/$B_TOPIC"
  fi
  st=$?
  ON_CLIENT_START=
  cpu1=$(cpu_s "$SA_PID") io1=$(io_read_bytes "$SA_PID")
  scrape "$R/$name-metrics-after.txt"
  wait_profiles
  stop_standalone
  [ -s "$R/$name-client.json" ] || echo '{}' >"$R/$name-client.json"
  [ "$st" = 0 ] || say "$side drain exited with status $st: $(tail -3 "$R/$name.err" | tr '\n' ' ')"
  jq -n --slurpfile c "$R/$name-client.json" --arg side "$side" --argjson round "$round" \
    --argjson want "$N_BACKLOG" --argjson status "$st" \
    --argjson cpu0 "$(num "$cpu0")" --argjson cpu1 "$(num "$cpu1")" \
    --argjson io0 "$(num "$io0")" --argjson io1 "$(num "$io1")" --argjson ccpu "$(num "$CLIENT_CPU")" \
    --argjson rs0 "$(num "$(metric "$R/$name-metrics-before.txt" bookie_disk_read_size_bytes_sum)")" \
    --argjson rs1 "$(num "$(metric "$R/$name-metrics-after.txt" bookie_disk_read_size_bytes_sum)")" '
    def delta(a; b): if a != null and b != null then b - a else null end;
    ($c[0]) as $c | ($c.bytes // 0) as $b | ($c.seconds // 0) as $s
    | delta($cpu0; $cpu1) as $cpu | delta($rs0; $rs1) as $disk
    | {
        side: $side, round: $round, exit_status: $status,
        complete: ($status == 0 and ($c.messages // 0) == $want),
        messages: ($c.messages // 0), bytes: $b, seconds: $s,
        mb_per_s: (if $s > 0 then $b / $s / 1e6 else null end),
        msg_per_s: (if $s > 0 then ($c.messages // 0) / $s else null end),
        standalone_cpu_s: $cpu,
        cpu_s_per_gib: (if $cpu != null and $b > 0 then $cpu / ($b / 1073741824) else null end),
        disk_read_bytes: $disk,
        read_amplification: (if $disk != null and $b > 0 then $disk / $b else null end),
        proc_io_read_bytes: delta($io0; $io1),
        client_cpu_s: $ccpu,
        client_cores: (if $ccpu != null and $s > 0 then $ccpu / $s else null end),
        client: $c
      }' >"$R/$name.json" || die "could not build the figures of $name"
  say "drain $round, $side: $(jq -r '"\(.messages) messages in \(.seconds) s: \(.mb_per_s // 0 | floor) MB/s, \(.cpu_s_per_gib // 0 | . * 100 | round / 100) CPU s/GiB"' "$R/$name.json")"
}
# shellcheck disable=SC2317  # run through ON_CLIENT_START
profile_drain_kafka() { maybe_profile drain-kafka; }
# shellcheck disable=SC2317
profile_drain_pulsar() { maybe_profile drain-pulsar; }

if [ "$DO_DRAIN" = 1 ]; then
  [ -n "$SA_PID" ] || start_standalone
  wait_profiles
  run_fio before
  say "== backlog: $N_BACKLOG messages of $MSG_SIZE B ($BACKLOG_MB MiB) on $B_TOPIC, by the $BACKLOG_PRODUCER producer"
  # A durable subscription that never reads holds the backlog: without it retention could
  # delete the ledgers the Pulsar drain acknowledged, and the next drain would find less.
  run_client "$CONSUMER_READY_S" "$R/keep.out" "$R/keep.err" "$BIN" perf consume -u "$URL" \
    -S kafka-keep --subscription-position Earliest -t 1s "persistent://public/default/$B_TOPIC" ||
    die "could not create the subscription that keeps the backlog: $(tail -3 "$R/keep.err" | tr '\n' ' ')"
  BL_LIMIT=$((600 + BACKLOG_MB * 1048576 / 5000000))
  if [ "$BACKLOG_PRODUCER" = kafka ]; then
    run_client $((BL_LIMIT + 60)) "$R/backlog.out" "$R/backlog.err" "$KL_BIN" produce \
      --bootstrap "$KAFKA" --topic "$B_TOPIC" --count "$N_BACKLOG" --timeout "$BL_LIMIT" \
      --stats-interval 10000 "${K_ARGS[@]}" --json "$R/backlog.json"
  else
    run_client $((BL_LIMIT + 60)) "$R/backlog.out" "$R/backlog.err" "$BIN" perf produce -u "$URL" \
      "${P_ARGS[@]}" --stats-interval 10s -m "$N_BACKLOG" -t "${BL_LIMIT}s" --json "$R/backlog.json" \
      "persistent://public/default/$B_TOPIC"
  fi || die "the backlog producer failed: $(tail -3 "$R/backlog.err" | tr '\n' ' ')"
  [ "$(jq -r '.messages' "$R/backlog.json")" = "$N_BACKLOG" ] ||
    die "the backlog has $(jq -r '.messages' "$R/backlog.json") messages, not $N_BACKLOG"
  say "backlog: $(jq -r '"\(.messages) messages, \(.bytes / 1e6 | floor) MB in \(.seconds) s"' "$R/backlog.json")"
  # A clean stop flushes the bookie's write cache and closes the ledger: the backlog is on disk.
  stop_standalone
  for ((round = 1; round <= DRAIN_ROUNDS; round++)); do
    if ((round % 2 == 1)); then order=(kafka pulsar); else order=(pulsar kafka); fi
    for side in "${order[@]}"; do
      drain_run "$side" "$round"
    done
  done
  run_fio after
fi
[ -n "$SA_PID" ] && stop_standalone
wait_profiles
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

# --- the result --------------------------------------------------------------------------------
collect() { # PATTERN: a JSON array of the files matching it, in round order
  local files=() f
  for f in "$R"/$1; do [ -s "$f" ] && files+=("$f"); done
  if [ "${#files[@]}" -gt 0 ]; then jq -s 'sort_by(.round)' "${files[@]}"; else echo '[]'; fi
}
for f in before after; do [ -s "$R/fio-$f.json" ] || echo '{}' >"$R/fio-$f.json"; done
[ -s "$R/backlog.json" ] || echo '{}' >"$R/backlog.json"
[ -s "$R/calibrate.json" ] || echo '{}' >"$R/calibrate.json"
PROFILES='{}'
for f in "$R"/profile-*.txt; do
  [ -f "$f" ] || continue
  PROFILES=$(jq --arg k "$(basename "$f" .txt)" --arg p "raw/$(basename "$f")" '. + {($k): $p}' <<<"$PROFILES")
done
NOTES+=("produce MB/s: payload bytes delivered over the time from the first send to the last acknowledgement (Kafka: delivery report; Pulsar: send receipt); drain MB/s: payload bytes from the assignment (Kafka) or the subscription being ready (Pulsar) to the last message")
NOTES+=("batching: Kafka linger.ms $LINGER_MS, batch.size $BATCH_BYTES, batch.num.messages $BATCH_MESSAGES, acks=all, compression none, idempotence off; Pulsar batch window $LINGER_MS ms, $BATCH_MESSAGES messages / $BATCH_BYTES bytes per batch, $OUTSTANDING messages in flight, compression none")
[ "$QUICK" = 1 ] && NOTES+=("--quick: a smoke run, the figures measure nothing")
NOTES_JSON=$(printf '%s\n' "${NOTES[@]}" | jq -R -s 'split("\n") | map(select(length > 0))')

jq -n --slurpfile fb "$R/fio-before.json" --slurpfile fa "$R/fio-after.json" \
  --slurpfile bl "$R/backlog.json" --slurpfile cal "$R/calibrate.json" \
  --argjson produce "$(collect 'produce-*-[0-9]*.json' | jq 'map(select(.side))')" \
  --argjson drain "$(collect 'drain-*-[0-9]*.json' | jq 'map(select(.side))')" \
  --argjson notes "$NOTES_JSON" --argjson profiles "$PROFILES" \
  --arg date "$STAMP" --arg load_start "$LOAD_START" --arg load_end "$LOAD_END" \
  --argjson rounds "$ROUNDS" --argjson drain_rounds "$DRAIN_ROUNDS" --argjson n "$N_PRODUCE" \
  --argjson backlog_mb "$BACKLOG_MB" --argjson nb "$N_BACKLOG" --arg backlog_producer "$BACKLOG_PRODUCER" \
  --argjson quick "$([ "$QUICK" = 1 ] && echo true || echo false)" --arg bin "$BIN" \
  --arg fio_size "$FIO_SIZE" --argjson kafka_fetch "$(printf '%s\n' ${KAFKA_FETCH_ARGS[@]+"${KAFKA_FETCH_ARGS[@]}"} | jq -R -s 'split("\n") | map(select(length > 0))')" '
  def fio(f): (f.jobs[0].read // null) as $r
    | if $r == null or ($r.bw_bytes // 0) == 0 then null
      else {mb_s: ($r.bw_bytes / 1e6), iops: $r.iops, clat_mean_ms: ($r.clat_ns.mean / 1e6)} end;
  def ratio(a; b): if a != null and b != null and b > 0 then a / b else null end;
  def median: map(select(. != null)) | sort
    | if length == 0 then null elif length % 2 == 1 then .[length / 2 | floor]
      else (.[length / 2 - 1] + .[length / 2]) / 2 end;
  def side(l; s; r): l | map(select(.side == s and .round == r)) | .[0];
  (fio($fb[0])) as $before | (fio($fa[0])) as $after
  | ([$before, $after] | map(select(. != null) | .mb_s)) as $fios
  | (if ($fios | length) > 0 then ($fios | add / length) else null end) as $disk
  | ([range(1; $rounds + 1)] | map(. as $r | side($produce; "kafka"; $r) as $k | side($produce; "pulsar"; $r) as $p
      | select($k != null or $p != null)
      | {round: $r, first: (if $r % 2 == 1 then "kafka" else "pulsar" end),
         kafka_msg_per_s: $k.msg_per_s, kafka_mb_per_s: $k.mb_per_s,
         pulsar_msg_per_s: $p.msg_per_s, pulsar_mb_per_s: $p.mb_per_s,
         kafka_p99_ms: $k.latency_ms.p99, pulsar_p99_ms: $p.latency_ms.p99,
         kafka_cpu_ms_per_mib: $k.standalone_cpu_ms_per_mib, pulsar_cpu_ms_per_mib: $p.standalone_cpu_ms_per_mib,
         complete: (($k.complete // false) and ($p.complete // false)),
         ratio: ratio($k.msg_per_s; $p.msg_per_s)})) as $prounds
  | ([range(1; $drain_rounds + 1)] | map(. as $r | side($drain; "kafka"; $r) as $k | side($drain; "pulsar"; $r) as $p
      | select($k != null or $p != null)
      | {round: $r, first: (if $r % 2 == 1 then "kafka" else "pulsar" end),
         kafka_mb_per_s: $k.mb_per_s, pulsar_mb_per_s: $p.mb_per_s,
         kafka_x_fio: ratio($k.mb_per_s; $disk), pulsar_x_fio: ratio($p.mb_per_s; $disk),
         kafka_cpu_s_per_gib: $k.cpu_s_per_gib, pulsar_cpu_s_per_gib: $p.cpu_s_per_gib,
         kafka_read_amplification: $k.read_amplification, pulsar_read_amplification: $p.read_amplification,
         complete: (($k.complete // false) and ($p.complete // false)),
         ratio: ratio($k.mb_per_s; $p.mb_per_s)})) as $drounds
  | {
      workload: "kafka",
      date: $date,
      quick: $quick,
      units: {mb: "10^6 bytes", mib: "2^20 bytes", gib: "2^30 bytes", latency: "ms", cpu: "s of utime+stime"},
      goals: {produce_ratio: 0.8, drain_ratio: 0.8},
      produce_ratio_median: ($prounds | map(.ratio) | median),
      drain_ratio_median: ($drounds | map(.ratio) | median),
      produce_kafka_mb_s_median: ($prounds | map(.kafka_mb_per_s) | median),
      produce_pulsar_mb_s_median: ($prounds | map(.pulsar_mb_per_s) | median),
      drain_kafka_mb_s_median: ($drounds | map(.kafka_mb_per_s) | median),
      drain_pulsar_mb_s_median: ($drounds | map(.pulsar_mb_per_s) | median),
      disk_seq_read_mb_s: $disk,
      produce_rounds: $prounds,
      drain_rounds: $drounds,
      fio: {before: $before, after: $after, seq_read_mean_mb_s: $disk},
      options: {rounds: $rounds, messages_per_phase: $n, message_size: 1024, drain_rounds: $drain_rounds,
        backlog_mb: $backlog_mb, backlog_messages: $nb, backlog_producer: $backlog_producer,
        kafka_fetch_args: $kafka_fetch, fio_size: $fio_size, bin: $bin},
      calibration: $cal[0],
      backlog: $bl[0],
      load_average: {start: $load_start, end: $load_end},
      profiles: $profiles,
      produce: $produce,
      drain: $drain,
      notes: $notes
    }' >"$JSON" || die "could not write $JSON"

# --- the summary -------------------------------------------------------------------------------
echo
echo "KoP benchmark (workload 6), $STAMP: 1 KiB messages; MB = 10^6 B; load average $LOAD_START -> $LOAD_END"
jq -r '
  def f(x; d): if x == null then "-" else (x * pow(10; d) | round / pow(10; d) | tostring) end;
  def mark(x; g): if x == null then "" elif x >= g then " ok" else " MISS" end;
  def pad(w): tostring | if length < w then " " * (w - length) + . else . end;
  def row(cells): cells | map(pad(16)) | join("");
  (if (.produce_rounds | length) > 0 then
    "produce: \(.options.messages_per_phase) messages per phase; kafka acks=all, linger 1 ms; pulsar batch window 1 ms",
    row(["round", "first", "kafka msg/s", "kafka MB/s", "pulsar msg/s", "pulsar MB/s", "kafka p99 ms", "pulsar p99 ms", "kafka/pulsar"]),
    (.produce_rounds[] | row([.round, .first, f(.kafka_msg_per_s; 0), f(.kafka_mb_per_s; 1), f(.pulsar_msg_per_s; 0),
      f(.pulsar_mb_per_s; 1), f(.kafka_p99_ms; 1), f(.pulsar_p99_ms; 1), f(.ratio; 3)]) + (if .complete then "" else "  (incomplete)" end)),
    "produce kafka/pulsar, median: \(f(.produce_ratio_median; 3))\(mark(.produce_ratio_median; 0.8))   (goal >= 0.8)",
    ""
   else empty end),
  (if (.drain_rounds | length) > 0 then
    "drain: cold backlog of \(.options.backlog_mb) MiB (\(.options.backlog_messages) messages, written by the \(.options.backlog_producer) producer); fio sequential read \(f(.disk_seq_read_mb_s; 1)) MB/s (before \(f(.fio.before.mb_s; 1)), after \(f(.fio.after.mb_s; 1)))",
    row(["round", "first", "kafka MB/s", "x fio", "pulsar MB/s", "x fio", "kafka CPUs/GiB", "pulsar CPUs/GiB", "kafka/pulsar"]),
    (.drain_rounds[] | row([.round, .first, f(.kafka_mb_per_s; 1), f(.kafka_x_fio; 3), f(.pulsar_mb_per_s; 1), f(.pulsar_x_fio; 3),
      f(.kafka_cpu_s_per_gib; 2), f(.pulsar_cpu_s_per_gib; 2), f(.ratio; 3)]) + (if .complete then "" else "  (incomplete)" end)),
    "drain kafka/pulsar, median: \(f(.drain_ratio_median; 3))\(mark(.drain_ratio_median; 0.8))   (goal >= 0.8)",
    ""
   else empty end)
' "$JSON"
jq -r '.notes[] | "note: " + .' "$JSON"
for f in "$R"/profile-*.txt; do
  [ -f "$f" ] && say "profile: $PD/raw/$(basename "$f")"
done

# --- the plot ------------------------------------------------------------------------------------
if command -v gnuplot >/dev/null 2>&1 && [ -f "$ROOT/perf/kafka.gnuplot" ]; then
  jq -r '.produce_rounds[] | "\(.round) \(.kafka_mb_per_s // 0) \(.pulsar_mb_per_s // 0)"' "$JSON" >"$PD/produce.dat"
  jq -r '.drain_rounds[] | "\(.round) \(.kafka_mb_per_s // 0) \(.pulsar_mb_per_s // 0)"' "$JSON" >"$PD/drain.dat"
  if timeout 60 gnuplot -e "dir='$PD'; out='$PNG'; fio=$(jq -r '.disk_seq_read_mb_s // 0' "$JSON"); heading='KoP $STAMP'" \
    "$ROOT/perf/kafka.gnuplot" 2>"$R/gnuplot.err"; then
    say "plot: $PNG"
  else
    say "gnuplot failed: $(tail -3 "$R/gnuplot.err" | tr '\n' ' ')"
  fi
fi
say "result: $JSON (tool outputs in $PD/raw)"
jq -e '(.produce_rounds + .drain_rounds) | all(.complete)' "$JSON" >/dev/null || exit 1
exit 0
