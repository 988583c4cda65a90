#!/usr/bin/env bash
# The chat roles as processes of their own (docs/chat_gateway.md "Running it"): ZooKeeper, a
# standalone as the broker with its chat roles off, `magnetar gateway` and `magnetar job` on the
# same ZooKeeper. Checks their --help and the refusal of a missing --metadata-url, that the
# gateway registers under /chat/gateways, that a client of the gateway process gets a message
# pushed through the broker's API and carried by the Job process (tests/chat/js/roles.test.js),
# and that SIGTERM stops both with status 0. Every wait is bounded.
# Needs node, tests/chat/js/node_modules (scripts/setup-node.sh) and Debian's zookeeper package.
# Usage: test_chat_roles.sh /path/to/magnetar
source "$(dirname "$0")/lib.sh"
MG=${1:?usage: test_chat_roles.sh /path/to/magnetar}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
JS=$ROOT/tests/chat/js

stop_here() { t_end; exit $?; }

if ! command -v node >/dev/null 2>&1 || [ ! -f "$JS/node_modules/ws/package.json" ]; then
  t_fail "node and tests/chat/js/node_modules are installed (run scripts/setup-node.sh)"; stop_here
fi

# --- The commands' help and their refusals.
for cmd in gateway job; do
  out=$("$MG" $cmd --help 2>&1); rc=$?
  t_check "magnetar $cmd --help exits 0 and documents --metadata-url" \
    test "$rc" = 0 -a -n "$(grep -- '--metadata-url' <<<"$out")"
  err=$("$MG" $cmd 2>&1); rc=$?
  t_check "magnetar $cmd without --metadata-url is refused, saying so (exit $rc)" \
    test "$rc" = 2 -a -n "$(grep -- '--metadata-url' <<<"$err")"
done
err=$("$MG" gateway --metadata-url zk:127.0.0.1:1 --queue-soft-bytes 2MiB --queue-hard-bytes 1MiB 2>&1)
rc=$?
t_check "a hard queue limit below the soft one is refused (exit $rc)" \
  test "$rc" = 2 -a -n "$(grep -- '--queue-hard-bytes' <<<"$err")"

if ! t_zk_start; then t_fail "ZooKeeper server starts"; stop_here; fi
MD_URL=zk:127.0.0.1:$ZK_PORT

# --- The broker: a standalone with its chat roles off (it still serves the push API).
"$MG" standalone --chat-gateway off --chat-job off --kafka off --data-dir "$T_TMP/data" \
  --bind-address 127.0.0.1 --broker-port 0 --bookie-port 0 --http-port 0 --journal-segment-mb 16 \
  --metadata-url "$MD_URL" $T_SA_ARGS >"$T_TMP/sa.log" 2>&1 &
SA=$!; T_PIDS+=("$SA")
if ! t_wait_for "$T_TMP/sa.log" 'ready' 30; then
  t_fail "standalone ready"; tail -n 5 "$T_TMP/sa.log"; stop_here
fi
READY=$(grep -m1 'ready' "$T_TMP/sa.log")
BPORT=$(grep -oE 'pulsar://127\.0\.0\.1:[0-9]+' <<<"$READY" | sed 's/.*://')
HTTP_PORT=$(grep -oE 'http://127\.0\.0\.1:[0-9]+' <<<"$READY" | sed 's/.*://')
t_check "the standalone runs no chat gateway (--chat-gateway off)" \
  test -z "$(grep -o 'chat gateway TCP' <<<"$READY")"

# --- The gateway and the Job, each a process of its own.
"$MG" gateway --metadata-url "$MD_URL" --service-url "pulsar://127.0.0.1:$BPORT" \
  --bind-address 127.0.0.1 --tcp-port 0 --ws-port 0 --push-port 0 >"$T_TMP/gw.log" 2>&1 &
GW=$!; T_PIDS+=("$GW")
if ! t_wait_for "$T_TMP/gw.log" 'ready' 30; then
  t_fail "magnetar gateway ready"; tail -n 5 "$T_TMP/gw.log"; stop_here
fi
WS_PORT=$(grep -m1 'ready' "$T_TMP/gw.log" | grep -oE 'ws://[0-9.]+:[0-9]+' | sed 's/.*://')
t_check "magnetar gateway names its WebSocket port ($WS_PORT)" test -n "$WS_PORT"
t_check "the gateway registered under /chat/gateways" \
  t_wait_for "$T_TMP/gw.log" 'registered at /chat/gateways/' 10
"$MG" job --metadata-url "$MD_URL" --service-url "pulsar://127.0.0.1:$BPORT" --name roles-job \
  >"$T_TMP/job.log" 2>&1 &
JOB=$!; T_PIDS+=("$JOB")
if ! t_wait_for "$T_TMP/job.log" 'ready' 30; then
  t_fail "magnetar job ready"; tail -n 5 "$T_TMP/job.log"; stop_here
fi
t_check "the Job linked to the gateway" t_wait_for "$T_TMP/gw.log" 'Job roles-job linked' 15

OUT=$T_TMP/roles.tap
MG_HTTP_PORT=$HTTP_PORT MG_WS_PORT=$WS_PORT timeout 120 node --test --test-reporter=tap \
  "$JS/roles.test.js" >"$OUT" 2>&1
RC=$?
t_check "a client of the gateway process gets a message carried by the Job process" test "$RC" = 0
[ "$RC" = 0 ] || grep -E 'not ok|error|Error' "$OUT" | head -n 20 | sed 's/^/    /'

for p in "$JOB" "$GW" "$SA"; do
  kill -TERM "$p" 2>/dev/null
  t_wait_exit "$p" 30 || kill -KILL "$p" 2>/dev/null
  t_check "process $p stops on SIGTERM with status 0 (got $T_STATUS)" test "$T_STATUS" = 0
done
stop_here
