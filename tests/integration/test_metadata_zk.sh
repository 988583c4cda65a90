#!/usr/bin/env bash
# magnetar with ZooKeeper as its metadata store: a standalone registers itself through a real
# ZooKeeper server, `magnetar admin metadata` inspects it, and the registration (an ephemeral
# node) goes away when the standalone stops. Usage: test_metadata_zk.sh /path/to/magnetar
source "$(dirname "$0")/lib.sh"
MG=${1:?usage: test_metadata_zk.sh /path/to/magnetar}

if ! t_zk_start; then t_fail "ZooKeeper server starts"; t_end; exit 1; fi
t_ok "ZooKeeper server starts on 127.0.0.1:$ZK_PORT"
URL="zk:127.0.0.1:$ZK_PORT"

"$MG" standalone --chat-gateway off --chat-job off --kafka off --data-dir "$T_TMP/data" --metadata-url "$URL" --http-port 0 --broker-port 0 \
  --bookie-port 0 \
  --bind-address 127.0.0.1 $T_SA_ARGS >"$T_TMP/s.log" 2>&1 &
s=$!; T_PIDS+=("$s")
if t_wait_for "$T_TMP/s.log" 'ready' 30; then t_ok "standalone on ZooKeeper is ready"; else
  t_fail "standalone on ZooKeeper is ready"; cat "$T_TMP/s.log"; fi
port=$(grep -oE 'http://127\.0\.0\.1:[0-9]+' "$T_TMP/s.log" | head -1 | sed 's/.*://')

out=$("$MG" admin metadata ls /brokers --metadata-url "$URL"); rc=$?
t_check "admin metadata ls /brokers on ZooKeeper shows the standalone ('$out')" \
  test "$rc" = 0 -a "$out" = "127.0.0.1:$port"
out=$("$MG" admin metadata get "/brokers/127.0.0.1:$port" --stat --metadata-url "$URL")
t_check "admin metadata get on ZooKeeper prints the value" grep -q "http://127.0.0.1:$port" <<<"$out"
t_check "admin metadata get --stat on ZooKeeper shows an ephemeral node" grep -qE '^lifetime +ephemeral, session 0x[0-9a-f]+' <<<"$out"
out=$("$MG" admin metadata ls / --metadata-url "$URL")
t_check "admin metadata ls / on ZooKeeper lists brokers and zookeeper" \
  test -n "$(grep -x brokers <<<"$out")" -a -n "$(grep -x zookeeper <<<"$out")"
err=$("$MG" admin metadata ls /nope --metadata-url "$URL" 2>&1); rc=$?
t_check "admin metadata ls of a missing node on ZooKeeper exits 1" test "$rc" = 1 -a -n "$(grep 'no such node' <<<"$err")"
err=$("$MG" admin metadata ls / --metadata-url "zk:127.0.0.1:1" --timeout 3s 2>&1); rc=$?
t_check "admin metadata on an unreachable ZooKeeper fails within its timeout (rc $rc)" test "$rc" = 1

kill -TERM "$s"
t_wait_exit "$s" 15
t_check "standalone on ZooKeeper stops with status 0 (got $T_STATUS)" test "$T_STATUS" = 0
out=$("$MG" admin metadata ls /brokers --metadata-url "$URL")
t_check "its ephemeral registration is gone ('$out')" test -z "$out"

t_end
