#!/usr/bin/env bash
# 10,000 concurrent WebSocket connections in one room of a standalone's chat gateway: every one
# authenticates, and every message pushed through the HTTP API while they are connected reaches
# every one of them, once, in order. The clients are perf_chat_load (perf/chat_load.c, the chat
# benchmark's epoll load client) at a low push rate: this is a test of scale, not of speed.
# Every phase is bounded.
# Usage: test_chat_10k.sh /path/to/magnetar /path/to/perf_chat_load
source "$(dirname "$0")/lib.sh"
MG=${1:?usage: test_chat_10k.sh /path/to/magnetar /path/to/perf_chat_load}
LOAD=${2:?usage: test_chat_10k.sh /path/to/magnetar /path/to/perf_chat_load}
N=10000

stop_here() { t_end; exit $?; }

# Each side needs a descriptor per connection: the soft limit is raised to the hard one by both
# programs; the hard one must allow it.
hard=$(ulimit -Hn)
if [ "$hard" != unlimited ] && [ "$hard" -lt $((N + 2000)) ]; then
  t_fail "the hard open-file limit ($hard) allows $N connections and more (raise it: ulimit -Hn)"
  stop_here
fi

"$MG" standalone --data-dir "$T_TMP/data" --bind-address 127.0.0.1 --broker-port 0 \
  --bookie-port 0 --http-port 0 --chat-tcp-port 0 --chat-ws-port 0 --chat-push-port 0 --kafka off \
  --journal-segment-mb 16 $T_SA_ARGS >"$T_TMP/sa.log" 2>&1 &
SA=$!; T_PIDS+=("$SA")
if ! t_wait_for "$T_TMP/sa.log" 'ready' 30; then
  t_fail "standalone ready"; tail -n 5 "$T_TMP/sa.log"; stop_here
fi
READY=$(grep -m1 'ready' "$T_TMP/sa.log")
HTTP_PORT=$(grep -oE 'http://127\.0\.0\.1:[0-9]+' <<<"$READY" | sed 's/.*://')
WS_PORT=$(grep -oE 'WebSocket [0-9]+' <<<"$READY" | grep -oE '[0-9]+')
t_ok "standalone ready (HTTP $HTTP_PORT, chat WebSocket $WS_PORT)"

# 10k connections, then 4 pushes a second for 5 s: 20 messages to every connection.
timeout 240 "$LOAD" --mode magnetar --target "127.0.0.1:$WS_PORT" \
  --push-url "http://127.0.0.1:$HTTP_PORT/goim/push/room?type=live&room={room}" \
  --connections $N --connect-timeout-s 120 --rate 4 --duration 5 --drain-s 30 --quiet \
  >"$T_TMP/load.json" 2>"$T_TMP/load.err"
rc=$?
t_check "the load client finished (exit $rc)" test "$rc" = 0
python3 - "$T_TMP/load.json" $N <<'PY' >"$T_TMP/checks.txt" 2>&1
import json, sys
r = json.load(open(sys.argv[1]))
n = int(sys.argv[2])
c = r["connections"]
checks = [
    (f"{c['opened']} of {n} connections opened", c["opened"] == n and c["failed"] == 0),
    (f"all stayed open ({c['open_at_end']})", c["open_at_end"] == n and c["closed_by_server"] == 0),
    (f"every push stored ({r['pushes']['acked']} of {r['pushes']['sent']})",
     r["pushes"]["sent"] > 0 and r["pushes"]["acked"] == r["pushes"]["sent"]),
    (f"every message reached every connection ({r['unique']} of {r['expected']})",
     r["unique"] == r["expected"] and r["expected"] == n * r["pushes"]["acked"]),
    (f"none twice ({r['duplicates']}), none out of order ({r['out_of_order']}), none dropped ({r['drops']})",
     r["duplicates"] == 0 and r["out_of_order"] == 0 and r["drops"] == 0),
    (f"no protocol error ({r['proto_errors']}, {r['unparsed']} unparsed)",
     r["proto_errors"] == 0 and r["unparsed"] == 0),
]
for what, ok in checks:
    print(("ok " if ok else "FAIL ") + what)
PY
while IFS= read -r line; do
  case $line in
    "ok "*) t_ok "${line#ok }" ;;
    "FAIL "*) t_fail "${line#FAIL }" ;;
    *) t_fail "reading the load client's result: $line" ;;
  esac
done <"$T_TMP/checks.txt"
[ "$T_FAIL" = 0 ] || { tail -n 5 "$T_TMP/load.err" | sed 's/^/    /'; head -c 600 "$T_TMP/load.json"; echo; }

kill -TERM "$SA" 2>/dev/null
t_wait_exit "$SA" 30 || kill -KILL "$SA" 2>/dev/null
t_check "the standalone stops on SIGTERM with status 0 (got $T_STATUS)" test "$T_STATUS" = 0
stop_here
