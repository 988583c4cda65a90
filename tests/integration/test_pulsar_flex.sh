#!/usr/bin/env bash
# The broker against an unmodified Pulsar client: the pure-JavaScript pulsar-flex 1.1.1, driven
# through the small tools in tests/pulsar-flex (produce.js, consume.js, group.js; see the README
# there for what the client sends and expects). One `magnetar standalone` on a free loopback
# port, then: (a) single messages in order on an Exclusive subscription, a second Exclusive
# consumer refused, short and full topic names; (b) batches; (c) Shared spreading; (d) Failover
# hand-over; (e) Key_Shared key ownership and order; (f) redelivery after a reconnect, individual
# ack holes, negative acks (Shared and Exclusive); (g) a restart on the same data directory:
# unacked messages come back, acked ones do not, and a consumer connected across the restart
# resumes. pulsar-flex subscribes at Latest (it never sends initialPosition), so each
# subscription is created before its messages are produced. Every wait is bounded.
# Needs node and tests/pulsar-flex/node_modules (scripts/setup-node.sh).
# Usage: test_pulsar_flex.sh /path/to/magnetar
source "$(dirname "$0")/lib.sh"
MG=${1:?usage: test_pulsar_flex.sh /path/to/magnetar}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
FLEX=$ROOT/tests/pulsar-flex
DATA=$T_TMP/data
NS=persistent://public/default
RUN=$$ # topic names differ between runs

stop_here() { t_end; exit $?; }

# --- Prerequisites: a missing one is a failure that says what to do, not a silent skip.
if ! command -v node >/dev/null 2>&1; then
  t_fail "node is installed (run scripts/setup-node.sh)"; stop_here
fi
if [ ! -f "$FLEX/node_modules/pulsar-flex/package.json" ]; then
  t_fail "pulsar-flex is installed in tests/pulsar-flex/node_modules (run scripts/setup-node.sh)"
  stop_here
fi
if ! "$MG" standalone --help 2>&1 | grep -q -- '--broker-port'; then
  t_fail "magnetar standalone has --broker-port (the broker is not part of standalone yet)"
  stop_here
fi

# --- Helpers.

# run NAME TOOL ARGS...: runs a tool (bounded twice: its own --timeout-ms, and `timeout` here);
# stdout in $T_TMP/NAME.out, stderr in $T_TMP/NAME.err, exit status in RC.
run() {
  local name=$1 tool=$2; shift 2
  timeout 150 node "$FLEX/$tool" "$@" >"$T_TMP/$name.out" 2>"$T_TMP/$name.err"
  RC=$?
}

# start NAME TOOL ARGS...: the same in the background; the pid is in BG.
start() {
  local name=$1 tool=$2; shift 2
  timeout 150 node "$FLEX/$tool" "$@" >"$T_TMP/$name.out" 2>"$T_TMP/$name.err" &
  BG=$!; T_PIDS+=("$BG")
}

# q NAME EXPR: evaluates a JavaScript expression over NAME's output, with s = the summary (last
# line), all = the other lines, m = those with a payload, range(prefix, a, b) = ["prefix-a", ..., "prefix-b"] and
# same(x, y) = deep equality; prints the result (strings bare, the rest as JSON).
q() {
  node -e '
    const fs = require("fs");
    const lines = fs.readFileSync(process.argv[1], "utf8").split("\n").filter(Boolean).map((l) => JSON.parse(l));
    const s = lines[lines.length - 1] || {};
    const all = lines.slice(0, -1);
    const m = all.filter((x) => x.payload !== undefined);
    const range = (p, a, b) => Array.from({ length: b - a + 1 }, (_, i) => `${p}-${a + i}`);
    const same = (x, y) => JSON.stringify(x) === JSON.stringify(y);
    const r = eval(process.argv[2]);
    process.stdout.write(typeof r === "string" ? r : JSON.stringify(r));
  ' "$T_TMP/$1.out" "$2" 2>/dev/null
}

# expect NAME DESCRIPTION EXPR: passes when EXPR (see q) is true; on failure shows the tool's
# exit status, summary and last error lines.
expect() {
  local name=$1 what=$2 expr=$3
  if [ "$(q "$name" "$expr")" = true ]; then t_ok "$what"; else
    t_fail "$what"
    echo "    [$name] rc=${RC:-?} summary: $(tail -n 1 "$T_TMP/$name.out" 2>/dev/null | cut -c1-400)"
    tail -n 3 "$T_TMP/$name.err" 2>/dev/null | sed 's/^/    [stderr] /'
  fi
}

# expect_rc NAME DESCRIPTION CODE: the last run's exit status.
expect_rc() {
  if [ "$RC" = "$3" ]; then t_ok "$2"; else
    t_fail "$2 (exit $RC, wanted $3)"
    tail -n 3 "$T_TMP/$1.err" 2>/dev/null | sed 's/^/    [stderr] /'
  fi
}

# Every port option of standalone but the broker's gets 0 (a free port), so parallel tests do not
# collide; found in --help, so ports added later are covered too.
OTHER_PORTS=()
for opt in $("$MG" standalone --help 2>&1 | grep -oE -- '--[a-z-]+-port' | sort -u); do
  [ "$opt" = --broker-port ] || OTHER_PORTS+=("$opt" 0)
done
if "$MG" standalone --help 2>&1 | grep -q -- '--advertised-address'; then
  OTHER_PORTS+=(--advertised-address 127.0.0.1)
fi

# start_standalone LOG: starts standalone on $DATA with the broker on $BPORT (0 when empty: a free
# port, read back from the ready line's pulsar://127.0.0.1:PORT) and waits (bounded) for the
# ready line. Sets SPID, BPORT and URL.
start_standalone() {
  local log=$1 i
  "$MG" standalone --chat-gateway off --chat-job off --kafka off --data-dir "$DATA" --bind-address 127.0.0.1 --broker-port "${BPORT:-0}" \
    "${OTHER_PORTS[@]}" $T_SA_ARGS >"$log" 2>&1 &
  SPID=$!; T_PIDS+=("$SPID")
  for ((i = 0; i < 300; i++)); do
    grep -q 'ready' "$log" 2>/dev/null && break
    kill -0 "$SPID" 2>/dev/null || break
    sleep 0.1
  done
  BPORT=$(grep 'ready' "$log" 2>/dev/null | grep -oE 'pulsar://127\.0\.0\.1:[0-9]+' | head -1 | sed 's/.*://')
  if [ -z "$BPORT" ]; then
    echo "    standalone did not log a ready line naming pulsar://127.0.0.1:PORT; its log:"
    tail -n 5 "$log" | sed 's/^/    /'
    return 1
  fi
  URL=pulsar://127.0.0.1:$BPORT
}

# create_sub NAME TOPIC SUB TYPE: subscribes once and closes, so the subscription exists.
create_sub() {
  run "$1" consume.js --url "$URL" --topic "$2" --subscription "$3" --type "$4" --count 0 --timeout-ms 15000
  expect_rc "$1" "subscription $3 ($4) on ${2##*/} created" 0
}

# nothing_left NAME TOPIC SUB TYPE: a consumer finds no message left (3 s).
nothing_left() {
  run "$1" consume.js --url "$URL" --topic "$2" --subscription "$3" --type "$4" --count 1 \
    --timeout-ms 3000 --allow-short
  expect "$1" "nothing left on $3 of ${2##*/}" 's.received === 0'
}

BPORT=""
if start_standalone "$T_TMP/s1.log"; then t_ok "standalone ready (broker on port $BPORT)"; else
  t_fail "standalone ready"; stop_here
fi

# --- (a) Single messages, Exclusive.
A=$NS/flex-a-$RUN
create_sub a0 "$A" sa Exclusive
run a1 produce.js --url "$URL" --topic "$A" --count 100 --prefix a --properties origin=flex,n=1
expect_rc a1 "(a) produce 100 exits 0" 0
expect a1 "(a) 100 sends acknowledged, no error" 's.sent === 100 && s.errors === 0 && m.length === 100'
run a2 consume.js --url "$URL" --topic "$A" --subscription sa --type Exclusive --count 100 --timeout-ms 30000
expect_rc a2 "(a) consume 100 exits 0" 0
expect a2 "(a) all 100 payloads arrive once, in order" 'same(m.map((x) => x.payload), range("a", 1, 100))'
expect a2 "(a) properties arrive intact" 'm.every((x) => same(x.properties, { origin: "flex", n: "1" }))'
expect a2 "(a) no key on keyless messages" 'm.every((x) => x.key === null || x.key === "")'
expect a2 "(a) first delivery has redeliveryCount 0" 'm.every((x) => x.redeliveryCount === 0)'
expect a2 "(a) every ack confirmed by ACK_RESPONSE" 's.acked === 100 && s.acksPending === 0'
nothing_left a3 "$A" sa Exclusive

start a4 consume.js --url "$URL" --topic "$A" --subscription sa --type Exclusive --count 0 \
  --hold-ms 5000 --timeout-ms 15000
holder=$BG
if t_wait_for "$T_TMP/a4.err" 'subscribed' 15; then
  run a5 consume.js --url "$URL" --topic "$A" --subscription sa --type Exclusive --count 1 --timeout-ms 8000
  expect_rc a5 "(a) a second Exclusive consumer is refused (SUBSCRIBE answered by ERROR)" 1
  t_check "(a) the refusal reaches the caller as PulsarFlexSubscribeError" grep -q PulsarFlexSubscribeError "$T_TMP/a5.err"
else
  t_fail "(a) first Exclusive consumer subscribed"
fi
t_wait_exit "$holder" 20
t_check "(a) the holding consumer closes cleanly (exit $T_STATUS)" test "$T_STATUS" = 0

SHORT=flex-short-$RUN
create_sub as0 "$SHORT" sshort Exclusive
run as1 produce.js --url "$URL" --topic "$NS/$SHORT" --count 5 --prefix s
run as2 consume.js --url "$URL" --topic "$SHORT" --subscription sshort --type Exclusive --count 5 --timeout-ms 15000
expect as2 "(a) short name t and $NS/t are one topic" 'same(m.map((x) => x.payload), range("s", 1, 5))'

# --- (b) Batches: 5 sendBatch calls of 10, taken as 50 messages.
B=$NS/flex-b-$RUN
create_sub b0 "$B" sb Exclusive
run b1 produce.js --url "$URL" --topic "$B" --count 50 --batch 10 --prefix b
expect_rc b1 "(b) produce 5 batches of 10 exits 0" 0
expect b1 "(b) 5 batch receipts, 50 sent" 's.sent === 50 && s.errors === 0 && all.filter((x) => x.batch).length === 5'
run b2 consume.js --url "$URL" --topic "$B" --subscription sb --type Exclusive --count 50 --timeout-ms 30000
expect_rc b2 "(b) consume 50 exits 0" 0
expect b2 "(b) the 50 batched payloads arrive once, in order" 'same(m.map((x) => x.payload), range("b", 1, 50))'
expect b2 "(b) each batch is one entry: 5 message ids, 10 messages each" \
  'const ids = m.map((x) => x.messageId.split(":").slice(0, 2).join(":")); new Set(ids).size === 5 && ids.every((id, i) => id === ids[i - (i % 10)])'
nothing_left b3 "$B" sb Exclusive

# --- (c) Shared: two consumers, small queues, both take some, together all, none twice.
C=$NS/flex-c-$RUN
start c1 group.js --url "$URL" --topic "$C" --subscription sc --type Shared --consumers 2 --count 100 \
  --receive-queue 10 --timeout-ms 60000 --ready-file "$T_TMP/c.ready"
grp=$BG
if t_wait_for "$T_TMP/c.ready" subscribed 20; then
  run c2 produce.js --url "$URL" --topic "$C" --count 100 --prefix c --quiet
  expect c2 "(c) 100 produced" 's.sent === 100'
fi
t_wait_exit "$grp" 90; RC=$T_STATUS
expect_rc c1 "(c) Shared group exits 0" 0
expect c1 "(c) all 100 taken, none twice" 's.distinct === 100 && s.duplicates === 0'
expect c1 "(c) both consumers took some" 's.perConsumer.every((p) => p.received > 0)'

# --- (d) Failover: c0 (first to subscribe) takes everything until it closes after 20.
D=$NS/flex-d-$RUN
start d1 group.js --url "$URL" --topic "$D" --subscription sd --type Failover --consumers 2 --count 40 \
  --close-after 0:20 --timeout-ms 60000 --ready-file "$T_TMP/d.ready"
grp=$BG
if t_wait_for "$T_TMP/d.ready" subscribed 20; then
  run d2 produce.js --url "$URL" --topic "$D" --count 40 --prefix d --quiet
fi
t_wait_exit "$grp" 90; RC=$T_STATUS
expect_rc d1 "(d) Failover group exits 0" 0
expect d1 "(d) the active consumer took d-1..d-20 in order" 'same(s.perConsumer[0].payloads, range("d", 1, 20))'
expect d1 "(d) after it closed the other took d-21..d-40 in order" 'same(s.perConsumer[1].payloads, range("d", 21, 40))'
expect d1 "(d) nothing reached the standby before the hand-over" \
  's.perConsumer[0].closedAfterSeq !== null && s.perConsumer[1].firstSeq > s.perConsumer[0].closedAfterSeq'

# --- (e) Key_Shared: 4 keys, 2 consumers; each key on one consumer, in order.
E=$NS/flex-e-$RUN
start e1 group.js --url "$URL" --topic "$E" --subscription se --type Key_Shared --consumers 2 --count 40 \
  --timeout-ms 60000 --ready-file "$T_TMP/e.ready"
grp=$BG
if t_wait_for "$T_TMP/e.ready" subscribed 20; then
  run e2 produce.js --url "$URL" --topic "$E" --count 40 --prefix e --keys k1,k2,k3,k4 --quiet
fi
t_wait_exit "$grp" 90; RC=$T_STATUS
expect_rc e1 "(e) Key_Shared group exits 0" 0
expect e1 "(e) all 40 taken, none twice" 's.distinct === 40 && s.duplicates === 0'
expect e1 "(e) the 4 keys arrive with their messages" 'same(Object.keys(s.keyOwners).sort(), ["k1", "k2", "k3", "k4"])'
expect e1 "(e) each key went to exactly one consumer" 's.keysOnOneConsumer'
expect e1 "(e) per key, order is preserved" 's.keyOrderOk'

# --- (f) Redelivery.
F=$NS/flex-f-$RUN
create_sub f0 "$F" sf Exclusive
run f1 produce.js --url "$URL" --topic "$F" --count 10 --prefix f --quiet
run f2 consume.js --url "$URL" --topic "$F" --subscription sf --type Exclusive --count 10 --ack none --timeout-ms 20000
expect f2 "(f) 10 taken without acks" 'same(m.map((x) => x.payload), range("f", 1, 10)) && s.acked === 0'
run f3 consume.js --url "$URL" --topic "$F" --subscription sf --type Exclusive --count 10 --timeout-ms 20000
expect f3 "(f) after reconnecting, the 10 unacked come again, in order" 'same(m.map((x) => x.payload), range("f", 1, 10))'
nothing_left f4 "$F" sf Exclusive

F2=$NS/flex-f2-$RUN
create_sub h0 "$F2" sf2 Exclusive
run h1 produce.js --url "$URL" --topic "$F2" --count 10 --prefix h --quiet
run h2 consume.js --url "$URL" --topic "$F2" --subscription sf2 --type Exclusive --count 10 --ack every-other --timeout-ms 20000
expect h2 "(f) 10 taken, the odd ones acked" 's.distinct === 10 && s.acked === 5'
run h3 consume.js --url "$URL" --topic "$F2" --subscription sf2 --type Exclusive --count 5 --timeout-ms 20000
expect h3 "(f) exactly the 5 unacked (the holes) come again, in order" 'same(m.map((x) => x.payload), ["h-2", "h-4", "h-6", "h-8", "h-10"])'
nothing_left h4 "$F2" sf2 Exclusive

FN=$NS/flex-fn-$RUN
create_sub n0 "$FN" sn Shared
run n1 produce.js --url "$URL" --topic "$FN" --count 5 --prefix n --quiet
run n2 consume.js --url "$URL" --topic "$FN" --subscription sn --type Shared --nack-first --count 5 --timeout-ms 20000
expect_rc n2 "(f) Shared consumer with a negative ack exits 0" 0
expect n2 "(f) the negatively acked message comes again and all 5 are taken" \
  's.nacked === 1 && s.distinct === 5 && m.filter((x) => x.payload === m[0].payload).length === 2'
expect n2 "(f) its redelivery carries redeliveryCount >= 1 (Shared)" \
  'm.slice(1).filter((x) => x.payload === m[0].payload).every((x) => x.redeliveryCount >= 1)'
nothing_left n3 "$FN" sn Shared

FX=$NS/flex-fx-$RUN
create_sub x0 "$FX" sx Exclusive
run x1 produce.js --url "$URL" --topic "$FX" --count 5 --prefix x --quiet
run x2 consume.js --url "$URL" --topic "$FX" --subscription sx --type Exclusive --nack-first --count 5 --timeout-ms 20000
expect_rc x2 "(f) Exclusive consumer with a negative ack exits 0" 0
expect x2 "(f) Exclusive negative ack rewinds: x-1..x-5 then taken in order" \
  'same(m.filter((x) => x.action !== "nack").map((x) => x.payload), range("x", 1, 5))'

# --- (g) Restart on the same data directory.
G=$NS/flex-g-$RUN
create_sub r0 "$G" sg Exclusive
start live consume.js --url "$URL" --topic "$G" --subscription glive --type Exclusive --count 60 --timeout-ms 120000
live=$BG
t_check "(g) a consumer that stays connected across the restart subscribed" t_wait_for "$T_TMP/live.err" subscribed 20
run r1 produce.js --url "$URL" --topic "$G" --count 50 --prefix g --quiet
expect r1 "(g) 50 produced and acknowledged" 's.sent === 50 && s.errors === 0'
run r2 consume.js --url "$URL" --topic "$G" --subscription sg --type Exclusive --count 20 --timeout-ms 20000
expect r2 "(g) g-1..g-20 taken and acked before the restart" 'same(m.map((x) => x.payload), range("g", 1, 20)) && s.acked === 20'
t_wait_for "$T_TMP/live.out" '"g-50"' 30 || echo "    (the connected consumer had not seen g-50 before the restart)"

kill -TERM "$SPID"
t_wait_exit "$SPID" 30
t_check "(g) SIGTERM stops standalone with status 0 (got $T_STATUS)" test "$T_STATUS" = 0
if start_standalone "$T_TMP/s2.log"; then t_ok "(g) standalone restarts on the same data dir and port"; else
  t_fail "(g) standalone restarts on the same data dir and port"; stop_here
fi
run r3 consume.js --url "$URL" --topic "$G" --subscription sg --type Exclusive --count 30 --timeout-ms 30000
expect_rc r3 "(g) consume after the restart exits 0" 0
expect r3 "(g) exactly the 30 unacked (g-21..g-50) arrive, in order" 'same(m.map((x) => x.payload), range("g", 21, 50))'
nothing_left r4 "$G" sg Exclusive
run r5 produce.js --url "$URL" --topic "$G" --count 10 --prefix g2 --quiet --timeout-ms 30000
expect r5 "(g) 10 more produced after the restart" 's.sent === 10'
t_wait_exit "$live" 120; RC=$T_STATUS
expect_rc live "(g) the connected consumer reconnected by itself and finished" 0
expect live "(g) it saw all 60 (50 before, 10 after the restart)" \
  's.distinct === 60 && range("g", 1, 50).concat(range("g2", 1, 10)).every((p) => m.some((x) => x.payload === p))'

kill -TERM "$SPID"
t_wait_exit "$SPID" 30
t_check "standalone stops with status 0 at the end (got $T_STATUS)" test "$T_STATUS" = 0

t_end
