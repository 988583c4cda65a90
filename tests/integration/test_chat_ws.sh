#!/usr/bin/env bash
# The chat gateway's client protocol end to end: one `magnetar standalone` (broker, bookie, chat
# gateway, Job and push API, all on free loopback ports), then tests/chat/js/protocol.test.js
# (Node's test runner, the ws package) against it: GOIM and Bilibili clients over WebSocket and
# raw TCP, pushes through the HTTP API, batching, positions, room changes and accepted ops,
# resume from the log, bad input, the slow-consumer policy and the online API. Then standalone
# is stopped with SIGTERM and must exit 0. Every wait is bounded.
# Needs node and tests/chat/js/node_modules (scripts/setup-node.sh).
# Usage: test_chat_ws.sh /path/to/magnetar
source "$(dirname "$0")/lib.sh"
MG=${1:?usage: test_chat_ws.sh /path/to/magnetar}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
JS=$ROOT/tests/chat/js
DATA=$T_TMP/data
LOG=$T_TMP/standalone.log

stop_here() { t_end; exit $?; }

# --- Prerequisites: a missing one is a failure that says what to do, not a silent skip.
if ! command -v node >/dev/null 2>&1; then
  t_fail "node is installed (run scripts/setup-node.sh)"; stop_here
fi
if [ ! -f "$JS/node_modules/ws/package.json" ]; then
  t_fail "ws is installed in tests/chat/js/node_modules (run scripts/setup-node.sh)"; stop_here
fi
if ! "$MG" standalone --help 2>&1 | grep -q -- '--chat-ws-port'; then
  t_fail "magnetar standalone has --chat-ws-port (the chat gateway is not part of standalone)"
  stop_here
fi

# --- Standalone with the chat gateway and Job (on by default), every port chosen by the kernel.
"$MG" standalone --data-dir "$DATA" --bind-address 127.0.0.1 --broker-port 0 --bookie-port 0 \
  --http-port 0 --chat-tcp-port 0 --chat-ws-port 0 --chat-push-port 0 --kafka-port 0 \
  --default-retention-time-minutes 60 --journal-segment-mb 16 $T_SA_ARGS >"$LOG" 2>&1 &
SPID=$!; T_PIDS+=("$SPID")
for ((i = 0; i < 300; i++)); do
  grep -q 'magnetar standalone .* ready:' "$LOG" 2>/dev/null && break
  kill -0 "$SPID" 2>/dev/null || break
  sleep 0.1
done
READY=$(grep 'magnetar standalone .* ready:' "$LOG" 2>/dev/null | head -1)
HTTP_PORT=$(echo "$READY" | grep -oE 'http://127\.0\.0\.1:[0-9]+' | head -1 | sed 's/.*://')
TCP_PORT=$(echo "$READY" | grep -oE 'chat gateway TCP [0-9]+' | grep -oE '[0-9]+$')
WS_PORT=$(echo "$READY" | grep -oE 'WebSocket [0-9]+' | grep -oE '[0-9]+$')
if [ -z "$HTTP_PORT" ] || [ -z "$TCP_PORT" ] || [ -z "$WS_PORT" ]; then
  t_fail "standalone logs a ready line naming the HTTP, chat TCP and WebSocket ports"
  tail -n 20 "$LOG" | sed 's/^/    /'
  stop_here
fi
t_ok "standalone ready (HTTP $HTTP_PORT, chat TCP $TCP_PORT, WebSocket $WS_PORT)"

# The Job must have linked to the gateway before pushes can reach clients (bounded).
if t_wait_for "$LOG" 'chat job .*gateway .* ready' 30; then t_ok "the chat Job linked to the gateway"; else
  t_fail "the chat Job linked to the gateway"
  tail -n 20 "$LOG" | sed 's/^/    /'
fi

# --- The protocol tests (bounded twice: node's own per-test timeout, and `timeout` here).
cd "$JS" || stop_here
MG_HTTP_PORT=$HTTP_PORT MG_CHAT_TCP_PORT=$TCP_PORT MG_CHAT_WS_PORT=$WS_PORT \
  timeout 240 node --test --test-reporter=spec --test-timeout=120000 protocol.test.js \
  >"$T_TMP/node.out" 2>&1
RC=$?
sed 's/^/    /' "$T_TMP/node.out"
if [ "$RC" = 0 ]; then t_ok "protocol.test.js passes"; else
  t_fail "protocol.test.js passes (exit $RC)"
  echo "    standalone log, last lines:"
  tail -n 30 "$LOG" | sed 's/^/    /'
fi
cd "$ROOT" || true
if ! kill -0 "$SPID" 2>/dev/null; then
  wait "$SPID"; T_STATUS=$?
  t_fail "standalone still runs after the protocol tests (it died with status $T_STATUS)"
  tail -n 5 "$LOG" | sed 's/^/    /'
  stop_here
fi
t_ok "standalone still runs after the protocol tests"

# --- Stop: SIGTERM, exit status 0.
kill -TERM "$SPID"
t_wait_exit "$SPID" 30
t_check "standalone stops on SIGTERM with status 0 (got $T_STATUS)" test "$T_STATUS" = 0
if grep -aqE 'assertion failed|AddressSanitizer|runtime error' "$LOG"; then
  t_fail "no assertion or sanitizer report in the standalone log"
  grep -aE 'assertion failed|AddressSanitizer|runtime error' "$LOG" | head -5 | sed 's/^/    /'
fi

t_end
