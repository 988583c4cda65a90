#!/usr/bin/env bash
# The chat page (GET /chat, src/chat_gateway/page/chat.html) in headless Chromium: two people
# chat in one room, the online count reaches 2, and a page reloaded mid-stream resumes from the
# position it kept in sessionStorage with no gap and no duplicate. One `magnetar standalone`
# (broker, chat gateway, chat Job, push API) on free loopback ports; the browser part is
# tests/chat/js/page.test.js (node:test, puppeteer-core driving Debian's chromium).
# Needs node, tests/chat/js/node_modules (scripts/setup-node.sh) and /usr/bin/chromium.
# Usage: test_chat_page.sh /path/to/magnetar
source "$(dirname "$0")/lib.sh"
MG=${1:?usage: test_chat_page.sh /path/to/magnetar}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
JS=$ROOT/tests/chat/js
CHROMIUM=${MG_CHROMIUM:-/usr/bin/chromium}

stop_here() { t_end; exit $?; }

# --- Prerequisites: a missing one is a failure that says what to do, not a silent skip.
if ! command -v node >/dev/null 2>&1; then
  t_fail "node is installed (run scripts/setup-node.sh)"; stop_here
fi
for mod in ws puppeteer-core; do
  if [ ! -f "$JS/node_modules/$mod/package.json" ]; then
    t_fail "$mod is installed in tests/chat/js/node_modules (run scripts/setup-node.sh)"; stop_here
  fi
done
if [ ! -x "$CHROMIUM" ]; then
  t_fail "chromium is installed at $CHROMIUM (apt-get install chromium)"; stop_here
fi
if ! "$MG" standalone --help 2>&1 | grep -q -- '--chat-ws-port'; then
  t_fail "magnetar standalone has --chat-ws-port (the chat gateway is not part of standalone)"
  stop_here
fi

# Every port option of standalone gets 0 (a free port), found in --help so later ones are too.
PORTS=()
for opt in $("$MG" standalone --help 2>&1 | grep -oE -- '--[a-z-]+-port' | sort -u); do
  PORTS+=("$opt" 0)
done

LOG=$T_TMP/standalone.log
"$MG" standalone --data-dir "$T_TMP/data" --bind-address 127.0.0.1 "${PORTS[@]}" \
  --default-retention-time-minutes 60 --journal-segment-mb 16 $T_SA_ARGS >"$LOG" 2>&1 &
SPID=$!; T_PIDS+=("$SPID")
for ((i = 0; i < 300; i++)); do
  grep -q 'ready' "$LOG" 2>/dev/null && break
  kill -0 "$SPID" 2>/dev/null || break
  sleep 0.1
done
READY=$(grep -m1 'ready' "$LOG" 2>/dev/null)
HTTP_PORT=$(grep -oE 'http://127\.0\.0\.1:[0-9]+' <<<"$READY" | head -1 | sed 's/.*://')
WS_PORT=$(grep -oE 'WebSocket [0-9]+' <<<"$READY" | grep -oE '[0-9]+')
if [ -z "$HTTP_PORT" ] || [ -z "$WS_PORT" ]; then
  t_fail "standalone ready with its HTTP and chat WebSocket ports named"
  tail -n 5 "$LOG" | sed 's/^/    /'
  stop_here
fi
t_ok "standalone ready (HTTP $HTTP_PORT, chat WebSocket $WS_PORT)"

# The browser test: one TAP line per case becomes one ok/FAIL here.
OUT=$T_TMP/page.tap
MG_HTTP_PORT=$HTTP_PORT MG_WS_PORT=$WS_PORT MG_TMP=$T_TMP MG_CHROMIUM=$CHROMIUM \
  timeout 240 node --test --test-reporter=tap "$JS/page.test.js" >"$OUT" 2>&1
RC=$?
t_tap "$OUT" "page"
cases=$T_TAP_CASES
if [ "$RC" != 0 ] || [ "$cases" = 0 ]; then
  [ "$cases" = 0 ] && t_fail "page.test.js ran its cases (exit $RC)"
  echo "    page.test.js output (last lines):"
  grep -vE '^\s*(duration_ms|type):' "$OUT" | tail -n 40 | sed 's/^/    /'
  echo "    standalone log (last lines):"
  tail -n 10 "$LOG" | sed 's/^/    /'
fi
grep -E '^\s*# (note|timing):' "$OUT" | sed 's/^\s*/    /'
kill -TERM "$SPID" 2>/dev/null
t_wait_exit "$SPID" 20 || kill -KILL "$SPID" 2>/dev/null
stop_here
