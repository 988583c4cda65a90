#!/usr/bin/env bash
# `magnetar replay` draining a cold backlog, against the disk and against the broker's own drain,
# in one run on one throw-away standalone in a temporary directory on the real disk:
#   a. fio's sequential read (1 MiB, O_DIRECT, libaio depth 16) in the data directory, before the
#      backlog and after the drains: the disk's bound (the mean of the two);
#   then one backlog topic of --backlog-gb GiB of 1 KiB messages (written by `magnetar perf
#   produce`, held by a subscription that never reads), the standalone stopped (SIGTERM: the
#   bookie flushes and closes the ledger), and per drain the standalone restarted (nothing in its
#   caches), `sync; echo 3 > drop_caches`, and the whole backlog read by one of:
#   b. `magnetar perf consume`: a new subscription from Earliest, 5000 permits (the Pulsar
#      consumer path of perf/catchup.sh and perf/kafka.sh): the broker's drain;
#   c. `magnetar replay TOPIC --from earliest --format raw --to file:/dev/null`;
#   d. the same with `--format json` (replay's default: its encoding cost shows here);
#   the order alternating over --rounds rounds. Each drain as MB/s of payload, as x fio, replay
#   over consume of the same round; the standalone's and the client's CPU seconds per GiB.
# Writes perf/results/replay-<date>.json (--json), every tool's output beside it in
# replay-<date>-data/raw/, and prints a summary. MB are 10^6 bytes, MiB and GiB 2^20 and 2^30.
# The clients (perf consume and replay) run under `nice -n 10`, as load generators; the
# standalone and fio do not. Every wait is bounded; the standalone is stopped, the clients ended
# and the directory removed however the run ends.
set -u

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=$ROOT/build/magnetar
BASE=/var/tmp
ROUNDS=1
BACKLOG_MB=2048
JSON=
FIO_SIZE=1G
MSG_SIZE=1024
QUEUE=5000           # flow permits of the perf consume drain, as perf/catchup.sh and perf/kafka.sh
KINDS_ODD=(consume raw json)
KINDS_EVEN=(json raw consume)
PROFILE=0
PROFILE_S=10
QUICK=0
BACKLOG_SET=0
SA_EXTRA=()
READY_WAIT_S=180     # a restart opens RocksDB and recovers the ledgers of a multi-GiB backlog
STOP_WAIT_S=60
CONSUMER_READY_S=60
NICE=(nice -n 10)

usage() {
  cat <<EOF
Usage: perf/replay.sh [options]

\`magnetar replay\` draining a cold backlog of 1 KiB messages to /dev/null (--format raw and
--format json), against \`magnetar perf consume\` draining the same backlog (a new subscription
from Earliest) and against fio's sequential read of the same disk, each drain after a standalone
restart and a page-cache drop, on one fresh standalone. Needs root (it drops the page cache
before each drain), fio, jq and curl; perf (linux-perf) for --profile.

Options:
  --quick              a smoke run: a 256 MiB backlog, fio 256M
  --rounds R           drains of each kind, the order alternating (default 1)
  --backlog-gb G       backlog size in GiB (default 2)
  --backlog-mb M       backlog size in MiB (overrides --backlog-gb)
  --profile            perf record -g for --profile-s seconds, 1 s into each replay drain of the
                       first round (raw and json): of the replay process and of the standalone;
                       perf report heads beside the result (it perturbs those drains)
  --profile-s S        length of each recording (default 10)
  --dir DIR            parent of the temporary directory (default /var/tmp; not tmpfs)
  --bin PATH           the magnetar executable (default build/magnetar)
  --json FILE          result file (default perf/results/replay-<date>.json)
  --fio-size SIZE      fio's file (default 1G)
  --standalone-arg ARG pass ARG to \`magnetar standalone\` (repeat it)
  --help               this help
EOF
}

while [ $# -gt 0 ]; do
  case "$1" in
    --help|-h) usage; exit 0 ;;
    --quick) QUICK=1; shift ;;
    --rounds) ROUNDS=${2:?--rounds needs a number}; shift 2 ;;
    --backlog-gb) BACKLOG_MB=$(awk -v g="${2:?--backlog-gb needs a number}" 'BEGIN { printf "%d", g * 1024 }'); BACKLOG_SET=1; shift 2 ;;
    --backlog-mb) BACKLOG_MB=${2:?--backlog-mb needs a number}; BACKLOG_SET=1; shift 2 ;;
    --profile) PROFILE=1; shift ;;
    --profile-s) PROFILE_S=${2:?--profile-s needs a number}; shift 2 ;;
    --dir) BASE=${2:?--dir needs a directory}; shift 2 ;;
    --bin) BIN=${2:?--bin needs a path}; shift 2 ;;
    --json) JSON=${2:?--json needs a file}; shift 2 ;;
    --fio-size) FIO_SIZE=${2:?--fio-size needs a size}; shift 2 ;;
    --standalone-arg) SA_EXTRA+=("${2:?--standalone-arg needs a value}"); shift 2 ;;
    --standalone-arg=*) SA_EXTRA+=("${1#--standalone-arg=}"); shift ;;
    *) echo "perf/replay.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
done
if [ "$QUICK" = 1 ]; then
  [ "$BACKLOG_SET" = 1 ] || BACKLOG_MB=256
  FIO_SIZE=256M
fi

say() { printf '%s replay: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { say "$*"; exit 1; }
is_uint() { [[ $1 =~ ^[0-9]+$ ]]; }

{ is_uint "$ROUNDS" && [ "$ROUNDS" -ge 1 ]; } || die "--rounds needs a positive integer"
{ is_uint "$BACKLOG_MB" && [ "$BACKLOG_MB" -ge 1 ]; } || die "the backlog needs a positive size"
{ is_uint "$PROFILE_S" && [ "$PROFILE_S" -ge 1 ]; } || die "--profile-s needs a positive integer"
[ "$(id -u)" = 0 ] || die "must run as root: every drain starts with echo 3 > /proc/sys/vm/drop_caches"
[ -x "$BIN" ] || die "$BIN is not an executable; build first (cmake --build build) or pass --bin"
for t in jq curl fio; do
  command -v "$t" >/dev/null 2>&1 || die "$t is needed (Debian package $t)"
done
[ "$PROFILE" = 0 ] || command -v perf >/dev/null 2>&1 || die "--profile needs perf (Debian package linux-perf)"

mkdir -p "$BASE" || exit 1
[ "$(stat -f -c %T "$BASE")" != tmpfs ] || die "$BASE is tmpfs, not a disk; pass --dir on a real file system"

STAMP=$(date +%Y%m%d-%H%M%S)
[ -n "$JSON" ] || JSON=$ROOT/perf/results/replay-$STAMP.json
mkdir -p "$(dirname "$JSON")" || exit 1
JSON=$(cd "$(dirname "$JSON")" && pwd)/$(basename "$JSON")
PD=${JSON%.json}-data
mkdir -p "$PD" || exit 1

# shellcheck source=perf/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
WORK=$(mktemp -d "$BASE/magnetar-perf-replay.XXXXXX") || exit 1
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

# Room for the backlog twice (entry logs, journal, indexes) and fio's file, with 2 GiB to spare.
NEED_MB=$((BACKLOG_MB * 2 + 2048 + 1024))
AVAIL_MB=$(df -Pm "$BASE" | awk 'NR == 2 { print $4 }')
[ "${AVAIL_MB:-0}" -ge "$NEED_MB" ] || die "$BASE has ${AVAIL_MB:-?} MiB free, this run needs about $NEED_MB"

CLK_TCK=$(getconf CLK_TCK)
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

# --- helpers --------------------------------------------------------------------------------
cpu_s() { # PID: its utime + stime in seconds
  local line rest
  read -r line <"/proc/$1/stat" 2>/dev/null || return 1
  rest=${line##*) }
  # shellcheck disable=SC2086
  set -- $rest
  awk -v u="${12}" -v s="${13}" -v hz="$CLK_TCK" 'BEGIN { printf "%.2f\n", (u + s) / hz }'
}
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

# run_client LIMIT_S OUT ERR CMD...: runs a client in the background under nice, waits at most
# LIMIT_S (then SIGINT, SIGKILL 10 s later), keeping its CPU seconds (sampled every 0.1 s, so up
# to 0.1 s short) in CLIENT_CPU and its pid in CLIENT_PID; returns its status (124 when
# interrupted).
CLIENT_CPU=
CLIENT_PID=
run_client() {
  local limit=$1 out=$2 err=$3 pid i c
  shift 3
  "${NICE[@]}" "$@" >"$out" 2>"$err" &
  pid=$!
  CLIENT_PID=$pid
  CLIENT_CPU=
  [ -z "${ON_CLIENT_START:-}" ] || "$ON_CLIENT_START"
  for ((i = 0; i < limit * 10; i++)); do
    c=$(cpu_s "$pid" 2>/dev/null) || break
    [ -n "$c" ] && CLIENT_CPU=$c
    if [ -n "${SA_PID:-}" ] && ! kill -0 "$SA_PID" 2>/dev/null; then
      say "the standalone (pid $SA_PID) exited during the drain: $(tail -2 "$WORK/standalone.log" | tr '\n' ' ')"
      break
    fi
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    say "$(basename "$1") still running after $((i / 10))s: interrupting it"
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

# --profile: perf record -g of the client and of the standalone, 1 s into the drain.
# shellcheck disable=SC2317  # run through maybe_profile
record() { # LABEL PID
  perf record -g -o "$R/profile-$1.data" -p "$2" -- sleep "$PROFILE_S" >/dev/null 2>"$R/profile-$1.err"
  perf report --stdio --no-children -g none --sort dso,symbol -i "$R/profile-$1.data" 2>/dev/null |
    grep -E '^ +[0-9]' | head -40 >"$R/profile-$1-self.txt"
  perf report --stdio --no-children -i "$R/profile-$1.data" 2>/dev/null | head -120 >"$R/profile-$1.txt"
  rm -f "$R/profile-$1.data"
}
# shellcheck disable=SC2317  # run through ON_CLIENT_START
maybe_profile() {
  local label=$PROFILE_LABEL cpid=$CLIENT_PID spid=$SA_PID
  (
    sleep 1
    record "$label-client" "$cpid" &
    record "$label-standalone" "$spid" &
    wait
  ) &
}
wait_profiles() { # the recording subshells: at most PROFILE_S + 30 s
  local p i
  for p in $(jobs -pr); do
    [ "$p" = "${SA_PID:-}" ] && continue
    for ((i = 0; i < (PROFILE_S + 30) * 10; i++)); do
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
  perf_standalone_start perf/replay.sh "$BIN" "$WORK" "$READY_WAIT_S" \
    ${SA_EXTRA[@]+"${SA_EXTRA[@]}"} || exit 1
  say "standalone ready: $URL, admin $HTTP, pid $SA_PID"
}
stop_standalone() {
  perf_standalone_stop "$STOP_WAIT_S" || say "the standalone did not stop within ${STOP_WAIT_S}s: killed"
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

# --- the backlog --------------------------------------------------------------------------------
TOPIC=replay-backlog
FULL=persistent://public/default/$TOPIC
N_BACKLOG=$((BACKLOG_MB * 1024 * 1024 / MSG_SIZE))
DRAIN_LIMIT_S=$((120 + BACKLOG_MB * 1048576 / 10000000)) # slower than 10 MB/s is a failure

start_standalone
run_fio before
say "== backlog: $N_BACKLOG messages of $MSG_SIZE B ($BACKLOG_MB MiB) on $TOPIC"
# A durable subscription that never reads holds the backlog: without it retention could delete
# the ledgers the perf consume drain acknowledged, and the next drain would find less.
run_client "$CONSUMER_READY_S" "$R/keep.out" "$R/keep.err" "$BIN" perf consume -u "$URL" \
  -S replay-keep --subscription-position Earliest -t 1s "$FULL" ||
  die "could not create the subscription that keeps the backlog: $(tail -3 "$R/keep.err" | tr '\n' ' ')"
BL_LIMIT=$((600 + BACKLOG_MB * 1048576 / 5000000))
run_client $((BL_LIMIT + 60)) "$R/backlog.out" "$R/backlog.err" "$BIN" perf produce -u "$URL" \
  -r 0 -s "$MSG_SIZE" -o 20000 -b 1 --batch-max-messages 1000 --batch-max-bytes 131072 \
  --stats-interval 10s -m "$N_BACKLOG" -t "${BL_LIMIT}s" --json "$R/backlog.json" "$FULL" ||
  die "the backlog producer failed: $(tail -3 "$R/backlog.err" | tr '\n' ' ')"
[ "$(jq -r '.messages' "$R/backlog.json")" = "$N_BACKLOG" ] ||
  die "the backlog has $(jq -r '.messages' "$R/backlog.json") messages, not $N_BACKLOG"
say "backlog: $(jq -r '"\(.messages) messages, \(.bytes / 1e6 | floor) MB in \(.seconds) s"' "$R/backlog.json")"
# A clean stop flushes the bookie's write cache and closes the ledger: the backlog is on disk.
stop_standalone

# --- the drains ---------------------------------------------------------------------------------
# drain_run KIND ROUND: one cold drain; its figures in $R/drain-KIND-ROUND.json, one shape for
# both clients: messages, bytes (payload), seconds.
drain_run() {
  local kind=$1 round=$2 name=drain-$1-$2 st cpu0 cpu1
  start_standalone
  drop_caches
  scrape "$R/$name-metrics-before.txt"
  cpu0=$(cpu_s "$SA_PID")
  ON_CLIENT_START=
  if [ "$PROFILE" = 1 ] && [ "$round" = 1 ] && [ "$kind" != consume ]; then
    ON_CLIENT_START=maybe_profile PROFILE_LABEL=$kind
  fi
  if [ "$kind" = consume ]; then
    say "drain $round: perf consume, a new subscription from Earliest, $N_BACKLOG messages"
    run_client $((DRAIN_LIMIT_S + 60)) "$R/$name.out" "$R/$name.err" "$BIN" perf consume \
      -u "$URL" -S "drain-$round" --subscription-position Earliest -q "$QUEUE" -m "$N_BACKLOG" \
      -t "${DRAIN_LIMIT_S}s" --stats-interval 1s --json "$R/$name-tool.json" "$FULL"
    st=$?
    [ -s "$R/$name-tool.json" ] || echo '{}' >"$R/$name-tool.json"
    jq '{messages: (.messages // 0), bytes: (.bytes // 0), seconds: (.seconds // 0)}' \
      "$R/$name-tool.json" >"$R/$name-client.json" 2>/dev/null || echo '{}' >"$R/$name-client.json"
  else
    say "drain $round: replay --from earliest --format $kind --to file:/dev/null"
    run_client $((DRAIN_LIMIT_S + 60)) "$R/$name.out" "$R/$name.err" "$BIN" replay "$FULL" \
      --from earliest --format "$kind" --to file:/dev/null -u "$URL" --admin-url "$HTTP" \
      --timeout 60s --stats-interval 1s --json "$R/$name-tool.json"
    st=$?
    [ -s "$R/$name-tool.json" ] || echo '{}' >"$R/$name-tool.json"
    jq '{messages: (.messages // 0), bytes: (.bytes // 0), seconds: ((.elapsedMs // 0) / 1000)}' \
      "$R/$name-tool.json" >"$R/$name-client.json" 2>/dev/null || echo '{}' >"$R/$name-client.json"
  fi
  ON_CLIENT_START=
  cpu1=$(cpu_s "$SA_PID")
  scrape "$R/$name-metrics-after.txt"
  wait_profiles
  stop_standalone
  [ "$st" = 0 ] || say "$kind drain exited with status $st: $(tail -3 "$R/$name.err" | tr '\n' ' ')"
  jq -n --slurpfile c "$R/$name-client.json" --slurpfile t "$R/$name-tool.json" --arg kind "$kind" \
    --argjson round "$round" --argjson want "$N_BACKLOG" --argjson status "$st" \
    --argjson cpu0 "$(num "$cpu0")" --argjson cpu1 "$(num "$cpu1")" --argjson ccpu "$(num "$CLIENT_CPU")" \
    --argjson rs0 "$(num "$(metric "$R/$name-metrics-before.txt" bookie_disk_read_size_bytes_sum)")" \
    --argjson rs1 "$(num "$(metric "$R/$name-metrics-after.txt" bookie_disk_read_size_bytes_sum)")" '
    def delta(a; b): if a != null and b != null then b - a else null end;
    def per_gib(x; b): if x != null and b > 0 then x / (b / 1073741824) else null end;
    ($c[0]) as $c | ($c.bytes // 0) as $b | ($c.seconds // 0) as $s
    | delta($cpu0; $cpu1) as $cpu | delta($rs0; $rs1) as $disk
    | {
        kind: $kind, round: $round, exit_status: $status,
        complete: ($status == 0 and ($c.messages // 0) == $want),
        messages: ($c.messages // 0), bytes: $b, seconds: $s,
        mb_per_s: (if $s > 0 then $b / $s / 1e6 else null end),
        msg_per_s: (if $s > 0 then ($c.messages // 0) / $s else null end),
        standalone_cpu_s: $cpu, standalone_cpu_s_per_gib: per_gib($cpu; $b),
        client_cpu_s: $ccpu, client_cpu_s_per_gib: per_gib($ccpu; $b),
        client_cores: (if $ccpu != null and $s > 0 then $ccpu / $s else null end),
        disk_read_bytes: $disk,
        read_amplification: (if $disk != null and $b > 0 then $disk / $b else null end),
        tool: $t[0]
      }' >"$R/$name.json" || die "could not build the figures of $name"
  say "drain $round, $kind: $(jq -r '"\(.messages) messages in \(.seconds) s: \(.mb_per_s // 0 | floor) MB/s, standalone \(.standalone_cpu_s_per_gib // 0 | . * 100 | round / 100) CPU s/GiB, client \(.client_cpu_s_per_gib // 0 | . * 100 | round / 100) CPU s/GiB"' "$R/$name.json")"
}

for ((round = 1; round <= ROUNDS; round++)); do
  if ((round % 2 == 1)); then order=("${KINDS_ODD[@]}"); else order=("${KINDS_EVEN[@]}"); fi
  for kind in "${order[@]}"; do
    drain_run "$kind" "$round"
  done
done
run_fio after
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

# --- the result --------------------------------------------------------------------------------
for f in before after; do [ -s "$R/fio-$f.json" ] || echo '{}' >"$R/fio-$f.json"; done
DRAINS='[]'
files=()
for f in "$R"/drain-*-[0-9]*.json; do
  case "$f" in *-tool.json|*-client.json) continue ;; esac
  [ -s "$f" ] && files+=("$f")
done
[ "${#files[@]}" = 0 ] || DRAINS=$(jq -s 'sort_by(.round)' "${files[@]}")
PROFILES='{}'
for f in "$R"/profile-*.txt; do
  [ -f "$f" ] || continue
  PROFILES=$(jq --arg k "$(basename "$f" .txt)" --arg p "raw/$(basename "$f")" '. + {($k): $p}' <<<"$PROFILES")
done

jq -n --slurpfile fb "$R/fio-before.json" --slurpfile fa "$R/fio-after.json" \
  --slurpfile bl "$R/backlog.json" --argjson drain "$DRAINS" --argjson profiles "$PROFILES" \
  --arg date "$STAMP" --arg load_start "$LOAD_START" --arg load_end "$LOAD_END" \
  --argjson rounds "$ROUNDS" --argjson backlog_mb "$BACKLOG_MB" --argjson nb "$N_BACKLOG" \
  --argjson quick "$([ "$QUICK" = 1 ] && echo true || echo false)" --arg bin "$BIN" \
  --arg fio_size "$FIO_SIZE" --argjson queue "$QUEUE" '
  def fio(f): (f.jobs[0].read // null) as $r
    | if $r == null or ($r.bw_bytes // 0) == 0 then null
      else {mb_s: ($r.bw_bytes / 1e6), iops: $r.iops, clat_mean_ms: ($r.clat_ns.mean / 1e6)} end;
  def ratio(a; b): if a != null and b != null and b > 0 then a / b else null end;
  def median: map(select(. != null)) | sort
    | if length == 0 then null elif length % 2 == 1 then .[length / 2 | floor]
      else (.[length / 2 - 1] + .[length / 2]) / 2 end;
  def one(k; r): $drain | map(select(.kind == k and .round == r)) | .[0];
  (fio($fb[0])) as $before | (fio($fa[0])) as $after
  | ([$before, $after] | map(select(. != null) | .mb_s)) as $fios
  | (if ($fios | length) > 0 then ($fios | add / length) else null end) as $disk
  | ([range(1; $rounds + 1)] | map(. as $r | one("consume"; $r) as $c | one("raw"; $r) as $w
      | one("json"; $r) as $j
      | {round: $r, order: (if $r % 2 == 1 then "consume raw json" else "json raw consume" end),
         consume_mb_per_s: $c.mb_per_s, raw_mb_per_s: $w.mb_per_s, json_mb_per_s: $j.mb_per_s,
         consume_x_fio: ratio($c.mb_per_s; $disk), raw_x_fio: ratio($w.mb_per_s; $disk),
         json_x_fio: ratio($j.mb_per_s; $disk),
         raw_over_consume: ratio($w.mb_per_s; $c.mb_per_s),
         json_over_consume: ratio($j.mb_per_s; $c.mb_per_s),
         json_over_raw: ratio($j.mb_per_s; $w.mb_per_s),
         standalone_cpu_s_per_gib: {consume: $c.standalone_cpu_s_per_gib, raw: $w.standalone_cpu_s_per_gib,
           json: $j.standalone_cpu_s_per_gib},
         client_cpu_s_per_gib: {consume: $c.client_cpu_s_per_gib, raw: $w.client_cpu_s_per_gib,
           json: $j.client_cpu_s_per_gib},
         complete: (($c.complete // false) and ($w.complete // false) and ($j.complete // false))})) as $rows
  | {
      workload: "replay",
      date: $date,
      quick: $quick,
      units: {mb: "10^6 bytes of payload", mib: "2^20 bytes", gib: "2^30 bytes", cpu: "s of utime+stime"},
      raw_over_consume_median: ($rows | map(.raw_over_consume) | median),
      json_over_consume_median: ($rows | map(.json_over_consume) | median),
      consume_mb_s_median: ($rows | map(.consume_mb_per_s) | median),
      raw_mb_s_median: ($rows | map(.raw_mb_per_s) | median),
      json_mb_s_median: ($rows | map(.json_mb_per_s) | median),
      disk_seq_read_mb_s: $disk,
      rounds: $rows,
      fio: {before: $before, after: $after, seq_read_mean_mb_s: $disk},
      options: {rounds: $rounds, message_size: 1024, backlog_mb: $backlog_mb, backlog_messages: $nb,
        consume_permits: $queue, fio_size: $fio_size, bin: $bin},
      backlog: $bl[0],
      load_average: {start: $load_start, end: $load_end},
      profiles: $profiles,
      drains: $drain,
      notes: ([
        "MB/s: payload bytes over the client'"'"'s own span: perf consume from its subscription being ready to the last message; replay from after its admin requests (lastMessageId, internalStats) to the end, subscribing included",
        "client CPU: the client'"'"'s utime+stime from /proc/PID/stat, sampled every 0.1 s (up to 0.1 s short); standalone CPU: /proc/PID/stat before and after the drain",
        "replay reads with a non-durable reader of 1000 permits (src/tools/replay.c RP_RECEIVER_QUEUE); perf consume has \($queue) permits"
      ] + (if $quick then ["--quick: a smoke run, the figures measure little"] else [] end))
    }' >"$JSON" || die "could not write $JSON"

# --- the summary -------------------------------------------------------------------------------
echo
echo "replay drain benchmark, $STAMP: 1 KiB messages; MB = 10^6 B of payload; load average $LOAD_START -> $LOAD_END"
jq -r '
  def f(x; d): if x == null then "-" else (x * pow(10; d) | round / pow(10; d) | tostring) end;
  def pad(w): tostring | if length < w then " " * (w - length) + . else . end;
  def row(cells): cells | map(pad(12)) | join("");
  "cold backlog of \(.options.backlog_mb) MiB (\(.options.backlog_messages) messages); fio sequential read \(f(.disk_seq_read_mb_s; 1)) MB/s (before \(f(.fio.before.mb_s; 1)), after \(f(.fio.after.mb_s; 1)))",
  row(["round", "drain", "MB/s", "x fio", "/consume", "SA CPUs/GiB", "cl CPUs/GiB"]),
  (.rounds[] as $r | ("consume", "raw", "json") as $k
    | row([$r.round, $k, f($r[$k + "_mb_per_s"]; 1), f($r[$k + "_x_fio"]; 3),
        (if $k == "consume" then "1" else f($r[$k + "_over_consume"]; 3) end),
        f($r.standalone_cpu_s_per_gib[$k]; 2), f($r.client_cpu_s_per_gib[$k]; 2)])
      + (if $r.complete then "" else "  (incomplete)" end)),
  "replay raw / consume, median: \(f(.raw_over_consume_median; 3)); replay json / consume, median: \(f(.json_over_consume_median; 3))"
' "$JSON"
jq -r '.notes[] | "note: " + .' "$JSON"
for f in "$R"/profile-*-self.txt; do
  [ -f "$f" ] && say "profile: $PD/raw/$(basename "$f")"
done
say "result: $JSON (tool outputs in $PD/raw)"
jq -e '.rounds | all(.complete)' "$JSON" >/dev/null || exit 1
exit 0
