# Shared by the benchmark scripts (sourced, not run): a throw-away `magnetar standalone`.
#
#   perf_standalone_start NAME BIN WORK READY_WAIT_S [ARGS...]
#     starts BIN standalone with its data in WORK/data, every port picked free on 127.0.0.1, its
#     log in WORK/standalone.log, ARGS appended; waits at most READY_WAIT_S for its ready line.
#     Sets SA_PID, URL (pulsar://...) and HTTP (http://...). On failure prints the log's tail,
#     prefixed with NAME, and returns 1.
#   perf_standalone_kill
#     kills it (SIGKILL: the data is thrown away) and waits for it; safe to call twice.
#   perf_standalone_stop STOP_WAIT_S
#     stops it cleanly (SIGTERM: the bookie flushes its write cache and closes its ledgers, so the
#     data can be opened again), SIGKILL after STOP_WAIT_S; returns 1 if it had to be killed.

perf_standalone_start() {
  local name=$1 bin=$2 work=$3 wait_s=$4
  shift 4
  "$bin" standalone --chat-gateway off --chat-job off --kafka off --data-dir "$work/data" --bind-address 127.0.0.1 --broker-port 0 \
    --bookie-port 0 --http-port 0 "$@" >"$work/standalone.log" 2>&1 &
  SA_PID=$!
  URL=
  local i
  for ((i = 0; i < wait_s * 10; i++)); do
    URL=$(grep -m1 -oE 'ready: pulsar://[0-9.]+:[0-9]+' "$work/standalone.log" 2>/dev/null |
      sed 's/ready: //')
    [ -n "$URL" ] && break
    kill -0 "$SA_PID" 2>/dev/null || break
    sleep 0.1
  done
  if [ -z "$URL" ]; then
    echo "$name: the standalone did not become ready within ${wait_s}s; its log:" >&2
    tail -20 "$work/standalone.log" >&2
    return 1
  fi
  HTTP=$(grep -m1 -oE 'http://[0-9.]+:[0-9]+' "$work/standalone.log")
}

perf_standalone_kill() {
  if [ -n "${SA_PID:-}" ] && kill -0 "$SA_PID" 2>/dev/null; then
    kill -KILL "$SA_PID" 2>/dev/null
    wait "$SA_PID" 2>/dev/null
  fi
  SA_PID=
}

perf_standalone_stop() {
  local wait_s=$1 i rc=0
  [ -n "${SA_PID:-}" ] || return 0
  kill -TERM "$SA_PID" 2>/dev/null
  for ((i = 0; i < wait_s * 10; i++)); do
    kill -0 "$SA_PID" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$SA_PID" 2>/dev/null; then
    kill -KILL "$SA_PID" 2>/dev/null
    rc=1
  fi
  wait "$SA_PID" 2>/dev/null
  SA_PID=
  return "$rc"
}
