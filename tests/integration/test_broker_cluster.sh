#!/usr/bin/env bash
# Stateless brokers sharing a real ZooKeeper: one `magnetar bookie` and two `magnetar broker`
# processes (A and B) on free loopback ports. The first broker asked about a topic claims its
# bundle (/ownership/public/default/<range>, ephemeral); a lookup on the other broker answers
# Redirect to the owner, which pulsar-flex follows, so clients of either broker reach the same
# topic. When the owner stops, the other broker takes the bundle over on the next lookup and
# the topic's messages and subscription are still there. Every wait is bounded.
# Usage: test_broker_cluster.sh /path/to/magnetar
source "$(dirname "$0")/lib.sh"
MG=${1:?usage: test_broker_cluster.sh /path/to/magnetar}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
FLEX=$ROOT/tests/pulsar-flex
TOPIC=persistent://public/default/cluster-$$

if [ ! -f "$FLEX/node_modules/pulsar-flex/package.json" ]; then
  t_fail "pulsar-flex is installed in tests/pulsar-flex/node_modules (run scripts/setup-node.sh)"
  t_end; exit 1
fi
if ! t_zk_start; then t_fail "ZooKeeper server starts"; t_end; exit 1; fi
URL="zk:127.0.0.1:$ZK_PORT"
MD=(--metadata-url "$URL")

"$MG" bookie --port 0 --http-port 0 --bind-address 127.0.0.1 "${MD[@]}" \
  --journal-dir "$T_TMP/bk/journal" --ledger-dirs "$T_TMP/bk/ledgers" >"$T_TMP/bookie.log" 2>&1 &
T_PIDS+=("$!")
if t_wait_for "$T_TMP/bookie.log" 'ready' 30; then t_ok "bookie ready"; else
  t_fail "bookie ready"; cat "$T_TMP/bookie.log"; t_end; exit 1; fi

start_broker() { # NAME: starts a broker, its pid in PID_<NAME>, its pulsar port in PORT_<NAME>
  "$MG" broker "${MD[@]}" --port 0 --http-port 0 --kafka-port 0 --bind-address 127.0.0.1 \
    --ensemble-size 1 --write-quorum 1 --ack-quorum 1 >"$T_TMP/$1.log" 2>&1 &
  local pid=$!
  T_PIDS+=("$pid")
  eval "PID_$1=$pid"
  if t_wait_for "$T_TMP/$1.log" 'ready' 30; then t_ok "broker $1 ready"; else
    t_fail "broker $1 ready"; cat "$T_TMP/$1.log"; t_end; exit 1; fi
  eval "PORT_$1=$(grep -oE 'pulsar://127\.0\.0\.1:[0-9]+' "$T_TMP/$1.log" | head -1 | sed 's/.*://')"
  eval "HTTP_$1=$(grep -oE 'http://127\.0\.0\.1:[0-9]+' "$T_TMP/$1.log" | head -1 | sed 's/.*://')"
}
start_broker A
start_broker B

flex() { # NAME TOOL ARGS...: output in $T_TMP/NAME.out, status in RC
  local name=$1 tool=$2; shift 2
  timeout 60 node "$FLEX/$tool" "$@" >"$T_TMP/$name.out" 2>"$T_TMP/$name.err"; RC=$?
}
summary() { tail -1 "$T_TMP/$1.out"; }

# The subscription through A: A claims the topic's bundle.
flex sub consume.js --url "pulsar://127.0.0.1:$PORT_A" --topic "$TOPIC" --subscription s \
  --type Exclusive --count 0
t_check "subscribe through broker A (rc $RC)" test "$RC" = 0
bundle=$("$MG" admin metadata ls /ownership/public/default "${MD[@]}")
owner=$("$MG" admin metadata get "/ownership/public/default/$bundle" "${MD[@]}")
t_check "A owns the topic's bundle ($bundle: $owner)" \
  grep -q "\"pulsarServiceUrl\":\"pulsar://127.0.0.1:$PORT_A\"" <<<"$owner"

# Producing through B: B's lookup redirects to A, where the messages are stored.
flex p1 produce.js --url "pulsar://127.0.0.1:$PORT_B" --topic "$TOPIC" --count 10 --prefix one --quiet
t_check "produce 10 through broker B, redirected to A ($(summary p1))" \
  grep -q '"sent":10,"errors":0' <<<"$(summary p1)"
lookups_b=$(curl -s -m 5 "http://127.0.0.1:$HTTP_B/metrics" | grep -E '^magnetar_broker_commands_total\{type="LOOKUP"\}' | awk '{print $2}')
t_check "broker B answered the lookups (LOOKUP count $lookups_b)" test "${lookups_b:-0}" -ge 1
in_a=$(curl -s -m 5 "http://127.0.0.1:$HTTP_A/metrics" | grep "^pulsar_in_messages_total{.*topic=\"$TOPIC\"" | awk '{print $2}')
t_check "broker A stored the 10 messages (pulsar_in_messages_total $in_a)" test "$in_a" = 10
in_b=$(curl -s -m 5 "http://127.0.0.1:$HTTP_B/metrics" | grep -c "topic=\"$TOPIC\"")
t_check "broker B serves nothing of the topic ($in_b series)" test "$in_b" = 0

flex c1 consume.js --url "pulsar://127.0.0.1:$PORT_B" --topic "$TOPIC" --subscription s \
  --type Exclusive --count 4
t_check "consume 4 through broker B (redirected to A) ($(summary c1))" \
  test "$RC" = 0 -a "$(grep -c '"payload":"one-' "$T_TMP/c1.out")" = 4

# A stops: its ownership goes with its session, and B takes the topic over.
kill -TERM "$PID_A"
t_wait_exit "$PID_A" 30
t_check "broker A stops with status 0 (got $T_STATUS)" test "$T_STATUS" = 0
left=$("$MG" admin metadata ls /ownership/public/default "${MD[@]}")
t_check "A's ownership is released ('$left')" test -z "$left"
flex c2 consume.js --url "pulsar://127.0.0.1:$PORT_B" --topic "$TOPIC" --subscription s \
  --type Exclusive --count 6
t_check "B took the topic over: the 6 unconsumed messages arrive ($(summary c2))" \
  test "$RC" = 0 -a "$(grep -c '"payload":"one-' "$T_TMP/c2.out")" = 6
first=$(grep -m1 -o '"payload":"one-[0-9]*"' "$T_TMP/c2.out")
t_check "they start after the 4 acknowledged ($first)" test "$first" = '"payload":"one-5"'
owner=$("$MG" admin metadata get "/ownership/public/default/$bundle" "${MD[@]}")
t_check "B owns the bundle now" grep -q "\"pulsarServiceUrl\":\"pulsar://127.0.0.1:$PORT_B\"" <<<"$owner"

kill -TERM "$PID_B"
t_wait_exit "$PID_B" 30
t_check "broker B stops with status 0 (got $T_STATUS)" test "$T_STATUS" = 0
t_end
