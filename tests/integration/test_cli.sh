#!/usr/bin/env bash
# The magnetar executable end to end: help, version, dispatch, option errors, and a real
# `magnetar standalone` serving /admin/v2/brokers/health and /metrics, refusing a second
# process on its data directory or its port, and stopping cleanly on SIGTERM and SIGINT.
# Usage: test_cli.sh /path/to/magnetar
source "$(dirname "$0")/lib.sh"
MG=${1:?usage: test_cli.sh /path/to/magnetar}

out=$("$MG" --help); rc=$?
t_check "--help exits 0 and lists standalone" test "$rc" = 0 -a -n "$(grep -w standalone <<<"$out")"
out=$("$MG" --version); rc=$?
t_check "--version prints the version" grep -qE '^magnetar [0-9]+\.[0-9]+\.[0-9]+$' <<<"$out"
"$MG" >/dev/null 2>&1; rc=$?
t_check "no command exits 2" test "$rc" = 2
err=$("$MG" frobnicate 2>&1); rc=$?
t_check "unknown command exits 2 and names it" test "$rc" = 2 -a -n "$(grep "unknown command 'frobnicate'" <<<"$err")"
for cmd in standalone bookie broker gateway job client perf replay admin; do
  out=$("$MG" "$cmd" --help 2>&1); rc=$?
  t_check "'$cmd --help' exits 0 and shows its usage" test "$rc" = 0 -a -n "$(grep -i 'usage' <<<"$out")"
done
err=$("$MG" replay 2>&1); rc=$?
t_check "'replay' without a topic exits 2 and says what is missing" test "$rc" = 2 -a -n "$err"

out=$("$MG" standalone --help); rc=$?
t_check "standalone --help documents --http-port and its default" \
  test "$rc" = 0 -a -n "$(grep -A2 -- '--http-port PORT' <<<"$out" | tr -s ' \n' ' ' | grep 'default: 8080)')"
t_check "standalone --help documents --broker-port and --bookie-port" \
  test -n "$(grep -- '--broker-port' <<<"$out")" -a -n "$(grep -- '--bookie-port' <<<"$out")"
t_check "standalone --help documents --config and --log-level" \
  test -n "$(grep -- '--config' <<<"$out")" -a -n "$(grep -- '--log-level' <<<"$out")"
err=$("$MG" standalone --http-port 70000 2>&1); rc=$?
t_check "out-of-range port refused naming the option" test "$rc" = 2 -a -n "$(grep -- '--http-port' <<<"$err")"
err=$("$MG" standalone --log-level loud 2>&1); rc=$?
t_check "bad log level refused with the choices" test "$rc" = 2 -a -n "$(grep 'trace' <<<"$err")"
printf 'http-prot=1\n' >"$T_TMP/bad.conf"
err=$("$MG" standalone --config "$T_TMP/bad.conf" 2>&1); rc=$?
t_check "unknown config key refused with file and line" \
  test "$rc" = 2 -a -n "$(grep -F "$T_TMP/bad.conf" <<<"$err" | grep 'line 1')"

# A real standalone on a free port; the config file's values lose to flags.
printf 'data-dir=%s\nhttp-port=1\nlog-level=debug\n' "$T_TMP/data" >"$T_TMP/good.conf"
"$MG" standalone --chat-gateway off --chat-job off --kafka off --config "$T_TMP/good.conf" --http-port 0 --broker-port 0 --bookie-port 0 --bind-address 127.0.0.1 \
  $T_SA_ARGS >"$T_TMP/s1.log" 2>&1 &
s1=$!; T_PIDS+=("$s1")
if t_wait_for "$T_TMP/s1.log" 'ready' 20; then t_ok "standalone logs a ready line"; else
  t_fail "standalone logs a ready line"; cat "$T_TMP/s1.log"; fi
port=$(grep -oE 'http://127\.0\.0\.1:[0-9]+' "$T_TMP/s1.log" | head -1 | sed 's/.*://')
t_check "flag beat the config file's port (got '${port:-none}')" test -n "$port" -a "${port:-1}" != 1
t_check "config file's data-dir was used" test -f "$T_TMP/data/LOCK"

body=$(curl -s -m 5 "http://127.0.0.1:$port/admin/v2/brokers/health")
t_check "GET /admin/v2/brokers/health answers ok" test "$body" = ok
metrics=$(curl -s -m 5 "http://127.0.0.1:$port/metrics")
t_check "GET /metrics has process metrics" grep -qE '^process_resident_memory_bytes [0-9.e+]+$' <<<"$metrics"
t_check "GET /metrics has magnetar_build_info" grep -qE '^magnetar_build_info\{version="[0-9.]+"\} 1$' <<<"$metrics"
code=$(curl -s -o /dev/null -w '%{http_code}' -m 5 "http://127.0.0.1:$port/no/such/path")
t_check "unknown path answers 404 (got $code)" test "$code" = 404

"$MG" standalone --chat-gateway off --chat-job off --kafka off --data-dir "$T_TMP/data" --http-port 0 --broker-port 0 --bookie-port 0 $T_SA_ARGS \
  >"$T_TMP/s2.log" 2>&1; rc=$?
t_check "second process on the same data dir exits 1, saying it is in use" \
  test "$rc" = 1 -a -n "$(grep 'in use' "$T_TMP/s2.log")"
"$MG" standalone --chat-gateway off --chat-job off --kafka off --data-dir "$T_TMP/data2" --bind-address 127.0.0.1 --http-port "$port" --broker-port 0 --bookie-port 0 \
  $T_SA_ARGS >"$T_TMP/s3.log" 2>&1; rc=$?
t_check "second process on the same port exits 1, naming the port" \
  test "$rc" = 1 -a -n "$(grep -- ":$port" "$T_TMP/s3.log")"

# The metadata store, inspected read-only while standalone runs.
MDURL="rocksdb:$T_TMP/data/metadata"
out=$("$MG" admin metadata ls / --metadata-url "$MDURL"); rc=$?
t_check "admin metadata ls / lists the tenants' policies, the bookie and the broker (rc $rc, '$out')" \
  test "$rc" = 0 -a "$out" = "$(printf 'admin\nbookies\nbrokers')"
out=$("$MG" admin metadata ls /brokers --metadata-url "$MDURL")
t_check "standalone registered itself in /brokers ('$out')" test "$out" = "127.0.0.1:$port"
out=$("$MG" admin metadata get "/brokers/127.0.0.1:$port" --stat --metadata-url "$MDURL"); rc=$?
t_check "admin metadata get prints the registration" grep -q "\"webServiceUrl\":\"http://127.0.0.1:$port\"" <<<"$out"
t_check "admin metadata get --stat shows an ephemeral node" grep -qE '^lifetime +ephemeral' <<<"$out"
err=$("$MG" admin metadata get /no/such --metadata-url "$MDURL" 2>&1); rc=$?
t_check "admin metadata get of a missing node exits 1, saying so" test "$rc" = 1 -a -n "$(grep 'no such node' <<<"$err")"
err=$("$MG" admin metadata get bad//path --metadata-url "$MDURL" 2>&1); rc=$?
t_check "admin metadata get of a bad path exits 2" test "$rc" = 2 -a -n "$(grep 'not a valid path' <<<"$err")"
err=$("$MG" admin metadata get / --metadata-url "etcd:x" 2>&1); rc=$?
t_check "admin metadata with a bad URL exits 2" test "$rc" = 2
err=$("$MG" admin metadata frob / 2>&1); rc=$?
t_check "admin metadata with an unknown action exits 2" test "$rc" = 2 -a -n "$(grep "unknown action 'frob'" <<<"$err")"
out=$("$MG" admin metadata --help); rc=$?
t_check "admin metadata --help documents --metadata-url" test "$rc" = 0 -a -n "$(grep -- '--metadata-url' <<<"$out")"

kill -TERM "$s1"
t_wait_exit "$s1" 10
t_check "SIGTERM stops standalone with status 0 (got $T_STATUS)" test "$T_STATUS" = 0
t_check "standalone logs that it stopped" grep -q 'stopped' "$T_TMP/s1.log"

"$MG" standalone --chat-gateway off --chat-job off --kafka off --data-dir "$T_TMP/data" --http-port 0 --broker-port 0 --bookie-port 0 --bind-address 127.0.0.1 \
  $T_SA_ARGS >"$T_TMP/s4.log" 2>&1 &
s4=$!; T_PIDS+=("$s4")
t_check "restart on the same data dir after a clean stop" t_wait_for "$T_TMP/s4.log" 'ready' 20
port4=$(grep -oE 'http://127\.0\.0\.1:[0-9]+' "$T_TMP/s4.log" | head -1 | sed 's/.*://')
out=$("$MG" admin metadata ls /brokers --metadata-url "$MDURL")
t_check "after a restart only the live registration is left ('$out')" test "$out" = "127.0.0.1:$port4"
kill -INT "$s4"
t_wait_exit "$s4" 10
t_check "SIGINT stops standalone with status 0 (got $T_STATUS)" test "$T_STATUS" = 0

# The embedded bookie's port is internal: it stays on 127.0.0.1 whatever --bind-address says
# (the broker reaches the bookie in process), while the public ports follow --bind-address.
"$MG" standalone --chat-gateway off --chat-job off --kafka off --data-dir "$T_TMP/data5" --http-port 0 --broker-port 0 --bookie-port 0 \
  --bind-address 127.0.0.2 $T_SA_ARGS >"$T_TMP/s5.log" 2>&1 &
s5=$!; T_PIDS+=("$s5")
t_check "standalone on 127.0.0.2 is ready" t_wait_for "$T_TMP/s5.log" 'ready' 20
bport=$(grep -oE 'bookie [0-9.]+:[0-9]+' "$T_TMP/s5.log" | head -1 | sed 's/.*://')
pport=$(grep -oE 'pulsar://[0-9.]+:[0-9]+' "$T_TMP/s5.log" | head -1 | sed 's/.*://')
listen=$(ss -ltnH 2>/dev/null | awk '{print $4}')
t_check "the bookie port ${bport:-?} listens on 127.0.0.1 only ($(grep -E ":${bport:-x}\$" <<<"$listen" | tr '\n' ' '))" \
  test -n "$bport" -a "$(grep -E ":$bport\$" <<<"$listen")" = "127.0.0.1:$bport"
t_check "the broker port ${pport:-?} follows --bind-address" \
  test -n "$pport" -a "$(grep -E ":$pport\$" <<<"$listen")" = "127.0.0.2:$pport"
kill -TERM "$s5"
t_wait_exit "$s5" 10

t_end
