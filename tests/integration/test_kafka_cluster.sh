#!/usr/bin/env bash
# Kafka clients against two stateless brokers sharing a real ZooKeeper (one `magnetar bookie`,
# brokers A and B with their Kafka ports): each partition's leader in Metadata is the broker that
# owns its bundle, so kcat sees the same leaders through either broker and produces to the owner;
# a consumer group bootstrapped on one broker is coordinated by the owner of the group's bundle,
# and the offsets of partitions the other broker owns are committed through that broker: a second
# run of the group reads only what was produced after the first committed. Every wait is bounded.
# Usage: test_kafka_cluster.sh /path/to/magnetar
source "$(dirname "$0")/lib.sh"
MG=${1:?usage: test_kafka_cluster.sh /path/to/magnetar}
TOPICS=8

if ! t_zk_start; then t_fail "ZooKeeper server starts"; t_end; exit 1; fi
MD=(--metadata-url "zk:127.0.0.1:$ZK_PORT")

"$MG" bookie --port 0 --http-port 0 --bind-address 127.0.0.1 "${MD[@]}" \
  --journal-dir "$T_TMP/bk/journal" --ledger-dirs "$T_TMP/bk/ledgers" >"$T_TMP/bookie.log" 2>&1 &
T_PIDS+=("$!")
if t_wait_for "$T_TMP/bookie.log" 'ready' 30; then t_ok "bookie ready"; else
  t_fail "bookie ready"; cat "$T_TMP/bookie.log"; t_end; exit 1; fi

start_broker() { # NAME: starts a broker; PID_<NAME>, PORT_<NAME> (pulsar), KAFKA_<NAME>
  "$MG" broker "${MD[@]}" --port 0 --http-port 0 --kafka-port 0 --bind-address 127.0.0.1 \
    --ensemble-size 1 --write-quorum 1 --ack-quorum 1 >"$T_TMP/$1.log" 2>&1 &
  local pid=$!
  T_PIDS+=("$pid")
  eval "PID_$1=$pid"
  if t_wait_for "$T_TMP/$1.log" 'ready' 30; then t_ok "broker $1 ready"; else
    t_fail "broker $1 ready"; cat "$T_TMP/$1.log"; t_end; exit 1; fi
  eval "PORT_$1=$(grep -oE 'pulsar://127\.0\.0\.1:[0-9]+' "$T_TMP/$1.log" | head -1 | sed 's/.*://')"
  eval "HTTP_$1=$(grep -oE 'http://127\.0\.0\.1:[0-9]+' "$T_TMP/$1.log" | head -1 | sed 's/.*://')"
  eval "KAFKA_$1=$(grep -oE 'kafka 127\.0\.0\.1:[0-9]+' "$T_TMP/$1.log" | head -1 | sed 's/.*://')"
}
start_broker A
start_broker B
t_check "both brokers name a Kafka port ($KAFKA_A, $KAFKA_B)" test -n "$KAFKA_A" -a -n "$KAFKA_B"

kc() { timeout 30 kcat -X socket.timeout.ms=5000 "$@"; }

# Topics 1-4 first through B, then 5-8 through A: the first broker asked claims a bundle, so
# (unless every topic hashes to B's bundles) both brokers own some.
for i in $(seq 1 $TOPICS); do
  b=$KAFKA_B; [ "$i" -gt 4 ] && b=$KAFKA_A
  seq 1 50 | sed "s/^/t$i-/" | kc -b "127.0.0.1:$b" -P -t "kc$$-$i" 2>>"$T_TMP/kcat.err" || true
done
owners=$("$MG" admin metadata ls /ownership/public/default "${MD[@]}" | while read -r bundle; do
  "$MG" admin metadata get "/ownership/public/default/$bundle" "${MD[@]}"; echo; done)
t_check "both brokers own bundles" \
  bash -c "grep -q ':$PORT_A\"' <<<'$owners' && grep -q ':$PORT_B\"' <<<'$owners'"

# The same leaders through either broker.
kc -b "127.0.0.1:$KAFKA_A" -L 2>/dev/null | grep -E 'topic "kc|leader' >"$T_TMP/meta_a"
kc -b "127.0.0.1:$KAFKA_B" -L 2>/dev/null | grep -E 'topic "kc|leader' >"$T_TMP/meta_b"
t_check "Metadata through A and through B name the same leaders" \
  bash -c "[ -s '$T_TMP/meta_a' ] && sort '$T_TMP/meta_a' | cmp -s - <(sort '$T_TMP/meta_b')"
leaders=$(grep -oE 'leader [0-9]+' "$T_TMP/meta_a" | sort -u | wc -l)
t_check "partitions are led by two brokers ($leaders leaders)" test "$leaders" = 2

# Every message back through either broker (kcat follows the leaders).
got=$(for i in $(seq 1 $TOPICS); do
  kc -b "127.0.0.1:$KAFKA_A" -C -t "kc$$-$i" -o beginning -e -q 2>/dev/null; done | wc -l)
t_check "every message consumed through A ($got of $((TOPICS * 50)))" test "$got" = $((TOPICS * 50))

# A group over every topic, bootstrapped on A; its offsets land on both brokers' subscriptions.
topics=$(for i in $(seq 1 $TOPICS); do printf 'kc%s-%s ' $$ "$i"; done)
group() {
  # shellcheck disable=SC2086
  timeout 60 kcat -b "127.0.0.1:$KAFKA_A" -G "grp$$" $topics -e -q -X auto.offset.reset=earliest \
    -X session.timeout.ms=6000 -X auto.commit.interval.ms=200 2>>"$T_TMP/group.err"
}
n1=$(group | wc -l)
t_check "the group reads every message ($n1 of $((TOPICS * 50)))" test "$n1" = $((TOPICS * 50))
for i in $(seq 1 $TOPICS); do
  b=$KAFKA_B; [ "$i" -gt 4 ] && b=$KAFKA_A
  seq 51 53 | sed "s/^/t$i-/" | kc -b "127.0.0.1:$b" -P -t "kc$$-$i" 2>>"$T_TMP/kcat.err" || true
done
n2=$(group | wc -l)
t_check "a second run of the group reads only the new messages ($n2 of $((TOPICS * 3)))" \
  test "$n2" = $((TOPICS * 3))
# The coordinator commits on the partitions it owns and forwards the others to their owner: both
# brokers served OffsetCommit requests.
commits() { curl -s "http://127.0.0.1:$1/metrics" |
  awk '/^magnetar_kafka_requests_total\{api="OffsetCommit"\}/ {print $2}'; }
ca=$(commits "$HTTP_A"); cb=$(commits "$HTTP_B")
t_check "both brokers stored the group's offsets (OffsetCommit served: A ${ca:-0}, B ${cb:-0})" \
  test "${ca:-0}" -gt 0 -a "${cb:-0}" -gt 0

kill -TERM "$PID_A" "$PID_B"
for b in A B; do
  pid_var=PID_$b
  t_wait_exit "${!pid_var}" 30
  t_check "broker $b stops with status 0 (got $T_STATUS)" test "$T_STATUS" = 0
  [ "$T_STATUS" = 0 ] || tail -20 "$T_TMP/$b.log"
done
t_end
