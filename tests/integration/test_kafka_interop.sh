#!/usr/bin/env bash
# Kafka and Pulsar clients on the same topics (one log, docs/kafka.md): one `magnetar standalone`
# on free loopback ports with its Kafka port, then
#  (a) Kafka producer (kcat, keys and headers) -> Pulsar consumers: `magnetar client consume`
#      and pulsar-flex (tests/pulsar-flex/consume.js) read every message in order with its key
#      and properties;
#  (b) Pulsar producers (`magnetar client produce -k -p`, pulsar-flex produce.js --key
#      --properties) -> kcat reads them in order with key and headers;
#  (c) Kafka and Pulsar producers taking turns on one topic -> kcat, `magnetar client consume`
#      and pulsar-flex all see the same sequence.
# pulsar-flex subscribes at Latest, so its subscriptions are made (--count 0) before the
# messages are produced. Every client run is bounded by `timeout` and its own time limit.
# Needs kcat, node and tests/pulsar-flex/node_modules (scripts/setup-node.sh).
# Usage: test_kafka_interop.sh /path/to/magnetar
source "$(dirname "$0")/lib.sh"
MG=${1:?usage: test_kafka_interop.sh /path/to/magnetar}
FLEX=$(cd "$(dirname "$0")/../pulsar-flex" && pwd)
RUN=$$ # topic names differ between runs

stop_here() { t_end; exit $?; }
if ! command -v kcat >/dev/null 2>&1; then
  t_fail "kcat is installed (scripts/setup.sh installs it)"; stop_here
fi
if ! command -v node >/dev/null 2>&1 || [ ! -f "$FLEX/node_modules/pulsar-flex/package.json" ]; then
  t_fail "node and pulsar-flex are installed in tests/pulsar-flex/node_modules (run scripts/setup-node.sh)"
  stop_here
fi

"$MG" standalone --chat-gateway off --chat-job off --data-dir "$T_TMP/data" --bind-address 127.0.0.1 \
  --broker-port 0 --bookie-port 0 --http-port 0 --kafka-port 0 $T_SA_ARGS >"$T_TMP/s.log" 2>&1 &
SA=$!; T_PIDS+=("$SA")
if t_wait_for "$T_TMP/s.log" 'ready: .*kafka 127\.0\.0\.1:[0-9]+' 30; then t_ok "standalone ready with a Kafka port"; else
  t_fail "standalone ready with a Kafka port"; cat "$T_TMP/s.log"; stop_here; fi
K=$(grep -m1 -oE 'kafka 127\.0\.0\.1:[0-9]+' "$T_TMP/s.log" | cut -d' ' -f2)
URL=$(grep -m1 -oE 'pulsar://127\.0\.0\.1:[0-9]+' "$T_TMP/s.log")

# kproduce TOPIC LINES KCAT-ARGS...: the lines (printf's \n; one message each) through kcat.
kproduce() {
  local topic=$1 lines=$2; shift 2
  printf "$lines" | timeout 30 kcat -b "$K" -X broker.address.family=v4 -P -t "$topic" "$@" \
    2>>"$T_TMP/kproduce.err"
}
# kconsume NAME TOPIC: every message of TOPIC through kcat as key|headers|payload lines in
# $T_TMP/NAME.out.
kconsume() {
  timeout 30 kcat -b "$K" -X broker.address.family=v4 -C -t "$2" -o beginning -e \
    -f '%k|%h|%s\n' >"$T_TMP/$1.out" 2>"$T_TMP/$1.err"
}
# pconsume NAME TOPIC N: N messages from a new subscription at Earliest through
# `magnetar client consume`, as key|properties|payload lines in $T_TMP/NAME.out.
pconsume() {
  timeout 40 "$MG" client consume "$2" -u "$URL" -s "sub-$1" -p Earliest -n "$3" --timeout 20s \
    >"$T_TMP/$1.raw" 2>"$T_TMP/$1.err"
  sed -nE 's/^key:\[(.*)\], properties:\[(.*)\], content:(.*)$/\1|\2|\3/p' "$T_TMP/$1.raw" >"$T_TMP/$1.out"
}
# fsub TOPIC SUB: makes pulsar-flex's subscription SUB before anything is produced.
fsub() {
  timeout 40 node "$FLEX/consume.js" --url "$URL" --topic "$1" --subscription "$2" --type Exclusive \
    --count 0 --timeout-ms 20000 >/dev/null 2>>"$T_TMP/fsub.err"
}
# fconsume NAME TOPIC SUB N: N messages through pulsar-flex as key|properties|payload lines (the
# properties as JSON) in $T_TMP/NAME.out.
fconsume() {
  timeout 60 node "$FLEX/consume.js" --url "$URL" --topic "$2" --subscription "$3" --type Exclusive \
    --count "$4" --timeout-ms 30000 >"$T_TMP/$1.raw" 2>"$T_TMP/$1.err"
  node -e '
    const lines = require("fs").readFileSync(process.argv[1], "utf8").split("\n").filter(Boolean);
    for (const l of lines) {
      const m = JSON.parse(l);
      if (m.payload !== undefined) console.log(`${m.key === null ? "" : m.key}|${JSON.stringify(m.properties)}|${m.payload}`);
    }' "$T_TMP/$1.raw" >"$T_TMP/$1.out" 2>>"$T_TMP/$1.err"
}
# same NAME EXPECTED: NAME's output is exactly EXPECTED (printf's \n); on a difference both are
# shown.
same() {
  local got want
  got=$(cat "$T_TMP/$1.out"); want=$(printf "$2")
  [ "$got" = "$want" ] && return 0
  echo "    [$1] expected:"; sed 's/^/    | /' <<<"$want"
  echo "    got:"; sed 's/^/    | /' <<<"$got"; tail -n 3 "$T_TMP/$1.err" | sed 's/^/    [stderr] /'
  return 1
}

# --- (a) Kafka producer -> Pulsar consumers
KA=kafka-to-pulsar-$RUN
fsub "$KA" flex
kproduce "$KA" 'k1:first\nk2:second\nk3:third\n' -K: -H app=kcat -H n=1
kproduce "$KA" 'k4:fourth\n' -K: -H app=kcat -H n=2
pconsume a_pulsar "$KA" 4
t_check "magnetar client consume reads the kcat messages in order with keys and properties" same a_pulsar \
  'k1|app=kcat, n=1|first\nk2|app=kcat, n=1|second\nk3|app=kcat, n=1|third\nk4|app=kcat, n=2|fourth'
fconsume a_flex "$KA" flex 4
t_check "pulsar-flex reads the kcat messages in order with keys and properties" same a_flex \
  'k1|{"app":"kcat","n":"1"}|first\nk2|{"app":"kcat","n":"1"}|second\nk3|{"app":"kcat","n":"1"}|third\nk4|{"app":"kcat","n":"2"}|fourth'

# --- (b) Pulsar producers -> Kafka consumer
PK=pulsar-to-kafka-$RUN
out=$(timeout 30 "$MG" client produce "$PK" -u "$URL" -m p1,p2,p3 -k pkey -p a=b,c=d 2>&1); rc=$?
t_check "magnetar client produce sends 3 ($out)" test "$rc" = 0
timeout 60 node "$FLEX/produce.js" --url "$URL" --topic "$PK" --count 3 --prefix flex --key fkey \
  --properties src=flex --quiet >"$T_TMP/b_fprod.out" 2>"$T_TMP/b_fprod.err"; rc=$?
t_check "pulsar-flex sends 3 (rc $rc)" test "$rc" = 0
kconsume b_kafka "$PK"
t_check "kcat reads both producers' messages in order with keys and headers" same b_kafka \
  'pkey|a=b,c=d|p1\npkey|a=b,c=d|p2\npkey|a=b,c=d|p3\nfkey|src=flex|flex-1\nfkey|src=flex|flex-2\nfkey|src=flex|flex-3'

# --- (c) both kinds of producers taking turns, both kinds of consumers
MX=mixed-$RUN
fsub "$MX" flex
kproduce "$MX" 'x:kafka-1\n' -K: -H via=kafka
timeout 30 "$MG" client produce "$MX" -u "$URL" -m pulsar-2 -k x -p via=pulsar >/dev/null 2>&1
kproduce "$MX" 'x:kafka-3\ny:kafka-4\n' -K: -H via=kafka
timeout 60 node "$FLEX/produce.js" --url "$URL" --topic "$MX" --count 1 --prefix flex-5 --key y \
  --properties via=flex --quiet >/dev/null 2>&1
timeout 30 "$MG" client produce "$MX" -u "$URL" -m pulsar-6 -k y -p via=pulsar >/dev/null 2>&1
kproduce "$MX" 'kafka-7\n' -H via=kafka
kconsume c_kafka "$MX"
t_check "kcat sees the alternating sequence" same c_kafka \
  'x|via=kafka|kafka-1\nx|via=pulsar|pulsar-2\nx|via=kafka|kafka-3\ny|via=kafka|kafka-4\ny|via=flex|flex-5-1\ny|via=pulsar|pulsar-6\n|via=kafka|kafka-7'
pconsume c_pulsar "$MX" 7
t_check "magnetar client consume sees the same sequence (no key: key:[null], as pulsar-client)" \
  same c_pulsar \
  'x|via=kafka|kafka-1\nx|via=pulsar|pulsar-2\nx|via=kafka|kafka-3\ny|via=kafka|kafka-4\ny|via=flex|flex-5-1\ny|via=pulsar|pulsar-6\nnull|via=kafka|kafka-7'
fconsume c_flex "$MX" flex 7
t_check "pulsar-flex sees the same sequence" same c_flex \
  'x|{"via":"kafka"}|kafka-1\nx|{"via":"pulsar"}|pulsar-2\nx|{"via":"kafka"}|kafka-3\ny|{"via":"kafka"}|kafka-4\ny|{"via":"flex"}|flex-5-1\ny|{"via":"pulsar"}|pulsar-6\n|{"via":"kafka"}|kafka-7'

t_check "every kcat producer exited cleanly" test ! -s "$T_TMP/kproduce.err"
# The standalone ran through all of it and stops cleanly; otherwise the end of its log.
if kill -0 "$SA" 2>/dev/null; then t_ok "standalone still running at the end"; else
  t_fail "standalone still running at the end"; fi
kill -TERM "$SA" 2>/dev/null
t_wait_exit "$SA" 30
t_check "standalone stops with status 0 (got $T_STATUS)" test "$T_STATUS" = 0
if [ "$T_FAIL" != 0 ]; then # a sanitizer's report (build-asan), else the end of the log
  echo "---- the standalone's log"
  if grep -q '^==[0-9]*==ERROR' "$T_TMP/s.log"; then sed -n '/^==[0-9]*==ERROR/,/^SUMMARY/p' "$T_TMP/s.log"
  else tail -n 25 "$T_TMP/s.log"; fi
fi
t_end
