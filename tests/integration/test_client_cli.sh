#!/usr/bin/env bash
# The command-line client and the Pulsar load generators against a real standalone:
# `magnetar client produce|consume` (pulsar-client's flags and output) and
# `magnetar perf produce|consume` (pulsar-perf's flags, progress lines and --json), with their
# usage errors. Small, bounded runs: this checks behaviour, perf/produce.sh measures.
# Usage: test_client_cli.sh /path/to/magnetar
source "$(dirname "$0")/lib.sh"
MG=${1:?usage: test_client_cli.sh /path/to/magnetar}

"$MG" standalone --chat-gateway off --chat-job off --kafka off --data-dir "$T_TMP/data" --bind-address 127.0.0.1 --broker-port 0 \
  --bookie-port 0 --http-port 0 $T_SA_ARGS >"$T_TMP/s.log" 2>&1 &
T_PIDS+=("$!")
if t_wait_for "$T_TMP/s.log" 'ready' 30; then t_ok "standalone ready"; else
  t_fail "standalone ready"; cat "$T_TMP/s.log"; t_end; exit 1; fi
URL=$(grep -m1 -oE 'pulsar://127\.0\.0\.1:[0-9]+' "$T_TMP/s.log")
HTTP=$(grep -m1 -oE 'http://127\.0\.0\.1:[0-9]+' "$T_TMP/s.log")

# --- magnetar client
out=$("$MG" client --help); rc=$?
t_check "client --help names produce and consume" \
  test "$rc" = 0 -a -n "$(grep produce <<<"$out")" -a -n "$(grep consume <<<"$out")"
err=$("$MG" client produce t1 -u "$URL" 2>&1); rc=$?
t_check "client produce without -m exits 2 and says so" test "$rc" = 2 -a -n "$(grep -- '-m' <<<"$err")"
err=$("$MG" client consume t1 -u "$URL" 2>&1); rc=$?
t_check "client consume without -s exits 2 and says so" test "$rc" = 2 -a -n "$(grep -- '-s' <<<"$err")"
err=$("$MG" client consume t1 -u "$URL" -s x -t Weird 2>&1); rc=$?
t_check "client consume with a bad type exits 2" test "$rc" = 2
err=$("$MG" client produce t1 -u "$URL" -m a -p novalue 2>&1); rc=$?
t_check "client produce with a bad property exits 2 and names it" \
  test "$rc" = 2 -a -n "$(grep novalue <<<"$err")"
err=$("$MG" client produce 'a//b' -u "$URL" -m a --timeout 5s 2>&1); rc=$?
t_check "client produce to a bad topic name exits 1 and names it ('$err')" \
  test "$rc" = 1 -a -n "$(grep -F "'a//b' is not a valid topic name" <<<"$err")"

timeout 30 "$MG" client consume cli -u "$URL" -s s1 -n 4 --timeout 20s >"$T_TMP/c.out" 2>"$T_TMP/c.err" &
cpid=$!
sleep 1 # the subscription starts at Latest: let it subscribe first
out=$(timeout 30 "$MG" client produce cli -u "$URL" -m hello,world -n 2 -p a=1,b=2 -k kk); rc=$?
t_check "client produce sends 4 messages ('$out')" \
  test "$rc" = 0 -a "$out" = "4 messages successfully produced"
t_wait_exit "$cpid" 30
t_check "client consume exits 0 after 4 messages (status $T_STATUS)" test "$T_STATUS" = 0
t_check "client consume prints each message as pulsar-client does" \
  test "$(grep -c '^----- got message -----$' "$T_TMP/c.out")" = 4 \
  -a "$(grep -c '^key:\[kk\], properties:\[a=1, b=2\], content:hello$' "$T_TMP/c.out")" = 2 \
  -a "$(grep -c '^key:\[kk\], properties:\[a=1, b=2\], content:world$' "$T_TMP/c.out")" = 2
t_check "client consume ends with the count" grep -qx '4 messages successfully consumed' "$T_TMP/c.out"
stats=$(curl -s -m 5 "$HTTP/admin/v2/persistent/public/default/cli/internalStats")
t_check "the 4 messages were stored once each ($stats)" grep -q '"entriesAddedCounter":4,' <<<"$stats"
out=$(timeout 30 "$MG" client consume cli -u "$URL" -s s1 -n 1 --timeout 2s 2>&1); rc=$?
t_check "client consume times out (exit 1) when nothing comes, the acked ones not redelivered" \
  test "$rc" = 1 -a -z "$(grep 'got message' <<<"$out")"
out=$(timeout 30 "$MG" client consume cli -u "$URL" -s s2 -p Earliest -n 4 --timeout 10s); rc=$?
t_check "a new subscription at Earliest gets all 4" \
  test "$rc" = 0 -a "$(grep -c 'got message' <<<"$out")" = 4

# --- interoperability with pulsar-flex (an unmodified third-party client), both ways
FLEX=$(cd "$(dirname "$0")/../pulsar-flex" && pwd)
if [ -f "$FLEX/node_modules/pulsar-flex/package.json" ]; then
  timeout 60 node "$FLEX/consume.js" --url "$URL" --topic interop1 --subscription f --type Exclusive \
    --count 3 --timeout-ms 20000 >"$T_TMP/f1.out" 2>"$T_TMP/f1.err" &
  fpid=$!
  t_wait_for "$T_TMP/f1.err" 'subscribed' 20
  out=$(timeout 30 "$MG" client produce interop1 -u "$URL" -m c1,c2,c3 -p from=c); rc=$?
  t_wait_exit "$fpid" 30
  t_check "C client produces, pulsar-flex consumes all 3 in order with properties" \
    test "$rc" = 0 -a "$T_STATUS" = 0 \
    -a "$(grep -o '"payload":"c[0-9]"' "$T_TMP/f1.out" | tr -d '\n')" = '"payload":"c1""payload":"c2""payload":"c3"' \
    -a "$(grep -c '"from":"c"' "$T_TMP/f1.out")" = 3
  timeout 30 "$MG" client consume interop2 -u "$URL" -s c -n 3 --timeout 20s >"$T_TMP/c2.out" 2>&1 &
  cpid=$!
  sleep 1
  timeout 60 node "$FLEX/produce.js" --url "$URL" --topic interop2 --count 3 --prefix f \
    --properties from=flex --quiet >/dev/null 2>&1
  t_wait_exit "$cpid" 30
  t_check "pulsar-flex produces, the C client consumes all 3 in order with properties" \
    test "$T_STATUS" = 0 -a "$(grep -o 'content:f-[0-9]' "$T_TMP/c2.out" | tr -d '\n')" = 'content:f-1content:f-2content:f-3' \
    -a "$(grep -c 'properties:\[from=flex\]' "$T_TMP/c2.out")" = 3
else
  t_fail "pulsar-flex is installed in tests/pulsar-flex/node_modules (run scripts/setup-node.sh)"
fi

# --- magnetar perf produce / consume
out=$("$MG" perf produce --help); rc=$?
t_check "perf produce --help documents pulsar-perf's flags" \
  test "$rc" = 0 -a -n "$(grep -- '--rate' <<<"$out")" -a -n "$(grep -- '--batch-time-window' <<<"$out")" \
  -a -n "$(grep -- '--compression' <<<"$out")"
err=$("$MG" perf produce -u "$URL" -z BROTLI t 2>&1); rc=$?
t_check "perf produce with an unknown codec exits 2" test "$rc" = 2
timeout 60 "$MG" perf consume -u "$URL" -S ps -m 3000 -t 40s --stats-interval 1s \
  --json "$T_TMP/consume.json" perf >"$T_TMP/pc.out" 2>"$T_TMP/pc.err" &
cpid=$!
sleep 1
timeout 60 "$MG" perf produce -u "$URL" -r 2000 -m 3000 -s 200 -z LZ4 --stats-interval 1s \
  --json "$T_TMP/produce.json" perf >"$T_TMP/pp.out" 2>"$T_TMP/pp.err"; rc=$?
t_check "perf produce of 3000 messages at 2000/s exits 0 (rc $rc)" test "$rc" = 0
t_check "perf produce prints pulsar-perf's progress line" \
  grep -qE '^Throughput produced: [0-9.]+ msg/s --- [0-9.]+ Mbit/s --- Latency: mean: [0-9.]+ ms - med: [0-9.]+ - 95pct: ' "$T_TMP/pp.out"
t_check "perf produce --json counts 3000 messages and no error" \
  grep -qE '"messages":3000,"bytes":600000,"errors":0' "$T_TMP/produce.json"
t_wait_exit "$cpid" 60
t_check "perf consume of 3000 messages exits 0 (status $T_STATUS)" test "$T_STATUS" = 0
t_check "perf consume --json counts 3000 messages" grep -q '"messages":3000' "$T_TMP/consume.json"
t_check "perf consume prints its aggregated line" grep -q '^Aggregated throughput received: ' "$T_TMP/pc.out"

kill -TERM "${T_PIDS[0]}"
t_wait_exit "${T_PIDS[0]}" 30
t_check "standalone stops with status 0 (got $T_STATUS)" test "$T_STATUS" = 0
t_end
