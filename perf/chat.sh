#!/usr/bin/env bash
# The chat fan-out benchmark of ../shared/BENCHMARKS.md (workload 5) on this machine, in one run:
# for each N of --connections, N WebSocket subscribers in one room and --rate pushes per second
# for --duration seconds, against
#   1. Magnetar: a throw-away `magnetar standalone` (chat gateway and Job worker on) in a temporary
#      directory; its "cg-gateway" thread pinned to CPU 1, every other thread to CPU 0;
#   2. the peer: nginx with the nchan module (one worker, pinned to CPU 1 with
#      worker_cpu_affinity), its config generated from perf/chat/nginx.conf.in.
# The load client (build/perf/perf_chat_load, perf/chat_load.c) runs under `nice -n 10` on CPU 0:
# it stands for the other machines. For each server and N the script reads the server's VmRSS
# (the standalone process, or the nchan worker) before the connections and once all N are idle,
# so RSS per idle connection = delta / N, and the server's CPU seconds during the push phase.
# Reported per N: deliveries/s of each and the ideal N x rate, their ratio, RSS per idle
# connection, p99 and p999 delivery latency from the pusher's timestamp, drops; beside the goals
# of the chat gateway's issue. A markdown table (printed and written), results.json and a gnuplot
# PNG (deliveries/s against N) go to --out.
#
# --scenario job-restart instead runs the Job worker's outage: ZooKeeper (Debian package
# zookeeper), a standalone with --metadata-url zk:... --chat-job off, a separate `magnetar job`;
# --rooms rooms of --per-room connections, --room-rate pushes/s spread over the rooms; after
# --warmup-s the job is SIGKILLed, restarted --outage-s later, and the load client marks the
# restart (SIGUSR2): how long until every message acknowledged before the restart reached every
# connection, and the delivery latency meanwhile. A timeline PNG shows deliveries per second and
# the lag.
#
# Every wait is bounded; every process started here is stopped, and the directory removed,
# however the run ends.
set -u

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=$ROOT/build/magnetar
LOAD=$ROOT/build/perf/perf_chat_load
TEMPLATE=$ROOT/perf/chat/nginx.conf.in
NCHAN_MODULE=/usr/lib/nginx/modules/ngx_nchan_module.so
BASE=/var/tmp
SCENARIO=fanout
CONNECTIONS=10000,50000,100000
RATE=40
DURATION_S=30
OUT=
SERVERS="magnetar nchan"
BODY_BYTES=100
CONNECT_RATE=5000
ROOMS=1000
PER_ROOM=5
ROOM_RATE=400
WARMUP_S=20
OUTAGE_S=60
AFTER_S=60
DRAIN_S=15
SETTLE_S=3            # idle connections settle before the RSS is read
READY_WAIT_S=60       # standalone start
LISTEN_WAIT_S=30      # a server's WebSocket port listening
CONNECT_TIMEOUT_S=180 # the load client's connect phase (100k at 5000/s take 20 s)
ZK_WAIT_S=60
GATEWAY_CPU=1
OTHER_CPU=0
NICE_N=10             # BENCHMARKS.md: load generators may run under nice -n 10
SA_EXTRA=()

usage() {
  cat <<EOF
Usage: perf/chat.sh [options]

Chat fan-out (BENCHMARKS.md workload 5): N WebSocket subscribers in one room, pushes at a fixed
rate, against Magnetar's chat gateway and against nginx + nchan, the servers pinned to CPU 1 and
the load client on CPU 0. Needs root (raising the open-file limit, pinning) and the Debian
packages nginx, libnginx-mod-nchan, jq and gnuplot-nox (zookeeper for --scenario job-restart).

Options:
  --connections LIST   comma-separated N (default 10000,50000,100000)
  --rate N             pushes per second into the room (default 40)
  --duration S         seconds of pushing per run (default 30)
  --out DIR            results directory (default perf/results/chat-<date>)
  --servers "A B"      which servers: magnetar, nchan or both (default "magnetar nchan")
  --body-bytes N       pushed message size (default 100)
  --connect-rate N     connections opened per second (default 5000)
  --drain-s S          longest wait for deliveries after the last push (default 15)
  --scenario NAME      fanout (default) or job-restart
  --rooms N            job-restart: rooms (default 1000)
  --per-room N         job-restart: connections per room (default 5)
  --room-rate N        job-restart: pushes per second over all rooms (default 400)
  --warmup-s S         job-restart: pushing before the job is killed (default 20)
  --outage-s S         job-restart: seconds the job stays dead (default 60)
  --after-s S          job-restart: pushing after the restart (default 60)
  --nice N             niceness of the load client (default 10; 0 when other work shares
                       CPU 0 and would starve it)
  --dir DIR            parent of the temporary directory (default /var/tmp)
  --bin PATH           the magnetar executable (default build/magnetar)
  --load-bin PATH      the load client (default build/perf/perf_chat_load)
  --standalone-arg ARG pass ARG to \`magnetar standalone\` (repeat it)
  --help               this help
EOF
}

while [ $# -gt 0 ]; do
  case "$1" in
    --help|-h) usage; exit 0 ;;
    --connections) CONNECTIONS=${2:?--connections needs a list}; shift 2 ;;
    --rate) RATE=${2:?--rate needs a number}; shift 2 ;;
    --duration) DURATION_S=${2:?--duration needs seconds}; shift 2 ;;
    --out) OUT=${2:?--out needs a directory}; shift 2 ;;
    --servers) SERVERS=${2:?--servers needs a list}; shift 2 ;;
    --body-bytes) BODY_BYTES=${2:?--body-bytes needs a number}; shift 2 ;;
    --connect-rate) CONNECT_RATE=${2:?--connect-rate needs a number}; shift 2 ;;
    --drain-s) DRAIN_S=${2:?--drain-s needs seconds}; shift 2 ;;
    --scenario) SCENARIO=${2:?--scenario needs a name}; shift 2 ;;
    --rooms) ROOMS=${2:?--rooms needs a number}; shift 2 ;;
    --per-room) PER_ROOM=${2:?--per-room needs a number}; shift 2 ;;
    --room-rate) ROOM_RATE=${2:?--room-rate needs a number}; shift 2 ;;
    --warmup-s) WARMUP_S=${2:?--warmup-s needs seconds}; shift 2 ;;
    --outage-s) OUTAGE_S=${2:?--outage-s needs seconds}; shift 2 ;;
    --after-s) AFTER_S=${2:?--after-s needs seconds}; shift 2 ;;
    --nice) NICE_N=${2:?--nice needs a number}; shift 2 ;;
    --dir) BASE=${2:?--dir needs a directory}; shift 2 ;;
    --bin) BIN=${2:?--bin needs a path}; shift 2 ;;
    --load-bin) LOAD=${2:?--load-bin needs a path}; shift 2 ;;
    --standalone-arg) SA_EXTRA+=("${2:?--standalone-arg needs a value}"); shift 2 ;;
    --standalone-arg=*) SA_EXTRA+=("${1#--standalone-arg=}"); shift ;;
    *) echo "perf/chat.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
done

say() { printf '%s chat: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { say "$*"; exit 1; }

for v in "$RATE" "$DURATION_S" "$BODY_BYTES" "$CONNECT_RATE" "$DRAIN_S" "$ROOMS" "$PER_ROOM" \
  "$ROOM_RATE" "$WARMUP_S" "$OUTAGE_S" "$AFTER_S"; do
  [[ $v =~ ^[0-9]+$ ]] && [ "$v" -gt 0 ] || die "numeric options need positive integers ('$v')"
done
[[ $NICE_N =~ ^-?[0-9]+$ ]] || die "--nice needs an integer"
IFS=, read -r -a NS <<<"$CONNECTIONS"
for n in "${NS[@]}"; do
  [[ $n =~ ^[0-9]+$ ]] && [ "$n" -gt 0 ] || die "--connections: '$n' is not a positive integer"
done
case "$SCENARIO" in fanout | job-restart) ;; *) die "--scenario is fanout or job-restart" ;; esac
for s in $SERVERS; do
  case "$s" in magnetar | nchan) ;; *) die "--servers: '$s' is neither magnetar nor nchan" ;; esac
done
[ "$(id -u)" = 0 ] || die "must run as root: the open-file limits of 100k connections and the pinning"
[ -x "$LOAD" ] || die "$LOAD is not an executable; build first (cmake --build build) or pass --load-bin"
command -v jq >/dev/null 2>&1 || die "jq is needed (Debian package jq)"
command -v taskset >/dev/null 2>&1 || die "taskset is needed (Debian package util-linux)"
[ "$(nproc)" -ge 2 ] || die "two CPUs are needed: the server on CPU 1, the load client on CPU 0"
HAVE_GNUPLOT=1
command -v gnuplot >/dev/null 2>&1 || { HAVE_GNUPLOT=0; say "gnuplot is missing (Debian package gnuplot-nox): no PNG this run"; }

STAMP=$(date +%Y%m%d-%H%M%S)
[ -n "$OUT" ] || OUT=$ROOT/perf/results/chat-$STAMP
mkdir -p "$OUT" || die "cannot create $OUT"
OUT=$(cd "$OUT" && pwd)
mkdir -p "$BASE" || exit 1
WORK=$(mktemp -d "$BASE/magnetar-perf-chat.XXXXXX") || exit 1
# shellcheck source=perf/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SA_PID=
NGINX_PID=
LOAD_PID=
JOB_PID=
ZK_PID=
# shellcheck disable=SC2317  # called through the EXIT trap
stop_pid() { # $1 = pid variable name; SIGTERM, at most 10 s, then SIGKILL
  local pid=${!1} i
  [ -n "$pid" ] || return 0
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null
    for ((i = 0; i < 100; i++)); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null
  fi
  wait "$pid" 2>/dev/null
  printf -v "$1" '%s' ""
}
# shellcheck disable=SC2317
stop_zk() { # ZooKeeper runs in its own process group (the JVM may leave helpers)
  [ -n "$ZK_PID" ] || return 0
  kill -TERM -- "-$ZK_PID" 2>/dev/null
  local i
  for ((i = 0; i < 100; i++)); do
    kill -0 "$ZK_PID" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL -- "-$ZK_PID" 2>/dev/null
  wait "$ZK_PID" 2>/dev/null
  ZK_PID=
}
# shellcheck disable=SC2317
cleanup() {
  stop_pid LOAD_PID
  stop_pid JOB_PID
  perf_standalone_kill
  stop_pid NGINX_PID
  stop_zk
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- helpers --------------------------------------------------------------------------------

# A free TCP port on 127.0.0.1 below the ephemeral range (so no client socket takes it meanwhile).
free_port() {
  local p i
  for ((i = 0; i < 200; i++)); do
    p=$((20000 + RANDOM % 10000))
    ss -Hltn "sport = :$p" 2>/dev/null | grep -q . && continue
    ss -Htan "sport = :$p" 2>/dev/null | grep -q . && continue
    echo "$p"
    return 0
  done
  return 1
}

# Waits at most $2 seconds for something to listen on 127.0.0.1:$1.
wait_listen() {
  local i
  for ((i = 0; i < $2 * 10; i++)); do
    ss -Hltn "sport = :$1" 2>/dev/null | grep -q . && return 0
    sleep 0.1
  done
  return 1
}

# The open-file limit: every connection is a descriptor in the load client and one in the server
# process (the standalone, or the nchan worker). The client and nginx raise their limits
# themselves, which needs CAP_SYS_RESOURCE above the hard limit; some containers lack it.
NOFILE_HARD=$(ulimit -Hn)
NOFILE_RAISE=0
if [ "$NOFILE_HARD" = unlimited ] ||
  prlimit --nofile=$((NOFILE_HARD + 1)):$((NOFILE_HARD + 1)) -- true 2>/dev/null; then
  NOFILE_RAISE=1
fi
# Prints why $1 connections cannot be held, and fails, when the limit is too low.
nofile_enough() {
  [ "$NOFILE_RAISE" = 1 ] && return 0
  [ $(($1 + 1100)) -le "$NOFILE_HARD" ] && return 0
  echo "not run: $1 connections need about $(($1 + 1100)) open files in one process; the hard limit is $NOFILE_HARD and cannot be raised here (no CAP_SYS_RESOURCE)"
  return 1
}
nofile_for() { # the worker_rlimit_nofile for $1 connections
  local want=$(($1 + 10000))
  [ "$NOFILE_RAISE" = 0 ] && [ "$want" -gt "$NOFILE_HARD" ] && want=$NOFILE_HARD
  echo "$want"
}

rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }
# CPU ticks (utime + stime) of a process or a thread: $1 = /proc path (/proc/PID or .../task/TID)
cpu_ticks() { sed 's/.*) //' "$1/stat" 2>/dev/null | awk '{ print $12 + $13 }'; }
TICKS_PER_S=$(getconf CLK_TCK)

# Writes "t_s server_cpu_s gateway_cpu_s" once a second to $1 (CPU seconds used in that second by
# process $2 and, for magnetar ($4), its thread $3) while the load client runs, at most $5
# seconds: the figures survive a server that dies during the run.
cpu_sampler() {
  local out=$1 pid=$2 tid=$3 kind=$4 max_s=$5 i p0 p1 g0='' g1=''
  echo "# t_s server_cpu_s gateway_thread_cpu_s" >"$out"
  p0=$(cpu_ticks "/proc/$pid")
  [ "$kind" = magnetar ] && g0=$(cpu_ticks "/proc/$pid/task/$tid")
  for ((i = 1; i <= max_s; i++)); do
    sleep 1
    p1=$(cpu_ticks "/proc/$pid")
    [ -n "$p1" ] || break
    [ "$kind" = magnetar ] && g1=$(cpu_ticks "/proc/$pid/task/$tid")
    echo "$i $(ticks_delta_s "$p0" "$p1") $(ticks_delta_s "$g0" "$g1")" >>"$out"
    p0=$p1 g0=$g1
  done
}

# Seconds between two cpu_ticks readings, or null when either is missing.
ticks_delta_s() {
  if [ -z "${1:-}" ] || [ -z "${2:-}" ]; then
    echo null
  else
    awk -v a="$1" -v b="$2" -v t="$TICKS_PER_S" 'BEGIN { printf "%.2f", (b - a) / t }'
  fi
}

# Whether process $1 runs (a zombie, exited but not yet reaped, does not).
proc_alive() {
  local state
  state=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)
  [ -n "$state" ] && [ "$state" != Z ]
}

server_log() { # where the server of kind $1 writes its log
  if [ "$1" = magnetar ]; then echo "$WORK/standalone.log"; else echo "$WORK/nginx/error.log"; fi
}

# The thread of $1 whose name is $2 (empty when none).
thread_named() {
  local t
  for t in /proc/"$1"/task/*; do
    [ "$(cat "$t/comm" 2>/dev/null)" = "$2" ] && { basename "$t"; return 0; }
  done
  return 1
}

# Runs the load client in the background ($1 = output prefix, the rest its arguments) and waits
# for its ready file; prints nothing, sets LOAD_PID. Returns 1 when it never became ready.
load_start() {
  local prefix=$1 i
  shift
  rm -f "$WORK/ready"
  nice -n "$NICE_N" taskset -c "$OTHER_CPU" "$LOAD" --ready-file "$WORK/ready" \
    --connect-timeout-s "$CONNECT_TIMEOUT_S" --connect-rate "$CONNECT_RATE" \
    --body-bytes "$BODY_BYTES" --drain-s "$DRAIN_S" "$@" \
    >"$prefix.json" 2>"$prefix.log" &
  LOAD_PID=$!
  for ((i = 0; i < (CONNECT_TIMEOUT_S + 30) * 10; i++)); do
    [ -s "$WORK/ready" ] && return 0
    kill -0 "$LOAD_PID" 2>/dev/null || break
    sleep 0.1
  done
  say "the load client did not finish connecting; its log:"
  tail -5 "$prefix.log" >&2
  stop_pid LOAD_PID
  return 1
}

# Waits for the load client to end, at most $1 seconds.
load_wait() {
  local i
  for ((i = 0; i < $1 * 10; i++)); do
    kill -0 "$LOAD_PID" 2>/dev/null || break
    sleep 0.1
  done
  stop_pid LOAD_PID
}

# Busy and total ticks of CPU $1 so far (/proc/stat: user nice system idle iowait irq softirq
# steal), as "busy total".
cpu_stat() {
  awk -v c="cpu$1" '$1 == c { print $2 + $3 + $4 + $7 + $8 + $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9 }' /proc/stat
}

# How busy CPU $1 was between two cpu_stat samples $2 and $3, as JSON: the machine is shared, and
# a server that got only part of its core says so here.
cpu_json() {
  echo "$2 $3" | awk -v t="$TICKS_PER_S" -v c="$1" '{
    printf "{\"cpu\":%d,\"busy_s\":%.2f,\"total_s\":%.2f}", c, ($3 - $1) / t, ($4 - $2) / t }'
}

# Writes $1.meta.json: RSS before and with the idle connections, per connection open, CPU seconds
# during the push (the server's, its gateway thread's, and how busy each CPU was in all).
write_meta() { # $1 prefix, $2 n, $3 rss_before, $4 rss_idle, $5 cpu_s, $6 gateway_cpu_s, $7 note, $8 CPUs JSON, $9 opened
  jq -n --argjson n "$2" --argjson before "$3" --argjson idle "$4" --argjson cpu "$5" \
    --argjson gw "${6:-null}" --arg note "$7" --argjson cpus "${8:-null}" \
    --argjson opened "${9:-0}" --arg load "$(cat /proc/loadavg)" '{
      connections: $n, opened: $opened, rss_before_kib: $before, rss_idle_kib: $idle,
      rss_per_conn_kib: (if $opened > 0 and $idle > 0 then (($idle - $before) / $opened) else null end),
      cpu_s_push: $cpu, gateway_thread_cpu_s_push: $gw, cpus_during_push: $cpus,
      loadavg_after: $load, note: $note }' >"$1.meta.json"
}

# --- Magnetar -------------------------------------------------------------------------------

# lib.sh runs "BIN standalone ...": BIN is this wrapper, which pins the standalone (and so every
# thread it starts) to CPU 0 and execs it, so SA_PID is the standalone's own pid.
PINNED_BIN=$WORK/magnetar-on-cpu$OTHER_CPU
printf '#!/bin/sh\nexec taskset -c %s "%s" "$@"\n' "$OTHER_CPU" "$BIN" >"$PINNED_BIN"
chmod +x "$PINNED_BIN"

# Starts the standalone with the chat ports and moves its gateway thread to CPU 1; sets SA_PID,
# URL, HTTP (lib.sh), WS_PORT and GW_TID. $@: more standalone arguments.
magnetar_start() {
  WS_PORT=$(free_port) && TCP_PORT=$(free_port) && PUSH_PORT=$(free_port) || return 1
  rm -rf "$WORK/data"
  perf_standalone_start perf/chat.sh "$PINNED_BIN" "$WORK" "$READY_WAIT_S" \
    --chat-ws-port "$WS_PORT" --chat-tcp-port "$TCP_PORT" --chat-push-port "$PUSH_PORT" \
    --chat-gateway on "$@" ${SA_EXTRA[@]+"${SA_EXTRA[@]}"} || return 1
  if ! wait_listen "$WS_PORT" "$LISTEN_WAIT_S"; then
    say "nothing listens on the gateway's WebSocket port $WS_PORT"
    return 1
  fi
  if ! GW_TID=$(thread_named "$SA_PID" cg-gateway); then
    say "the standalone has no thread named cg-gateway"
    return 1
  fi
  taskset -p -c "$GATEWAY_CPU" "$GW_TID" >/dev/null || return 1
}

# --- nginx + nchan --------------------------------------------------------------------------

# Starts nginx with a config from the template for $1 connections; sets NGINX_PID, NCHAN_PORT
# and NCHAN_WORKER.
nchan_start() {
  local n=$1 dir=$WORK/nginx i
  [ -x "$(command -v nginx)" ] || { say "nginx is missing (Debian package nginx)"; return 1; }
  [ -f "$NCHAN_MODULE" ] || { say "$NCHAN_MODULE is missing (Debian package libnginx-mod-nchan)"; return 1; }
  NCHAN_PORT=$(free_port) || return 1
  rm -rf "$dir"
  mkdir -p "$dir/tmp" || return 1
  # worker_cpu_affinity takes a bit mask, CPU 0 rightmost.
  local mask=1 c
  for ((c = 0; c < GATEWAY_CPU; c++)); do mask="${mask}0"; done
  sed -e "s|@DIR@|$dir|g" -e "s|@CPU_MASK@|$mask|" -e "s|@NOFILE@|$(nofile_for "$n")|" \
    -e "s|@WORKER_CONNECTIONS@|$((n + 5000))|" -e "s|@SHM_MB@|128|" -e "s|@HOST@|127.0.0.1|" \
    -e "s|@PORT@|$NCHAN_PORT|" -e "s|@BUFFER_LENGTH@|10|" "$TEMPLATE" >"$dir/nginx.conf" || return 1
  nginx -c "$dir/nginx.conf" -p "$dir" -g 'daemon off;' >"$dir/stdout.log" 2>&1 &
  NGINX_PID=$!
  if ! wait_listen "$NCHAN_PORT" "$LISTEN_WAIT_S"; then
    say "nginx did not listen on $NCHAN_PORT; its log:"
    tail -5 "$dir/stdout.log" "$dir/error.log" >&2 2>/dev/null
    return 1
  fi
  NCHAN_WORKER=
  for ((i = 0; i < 100; i++)); do
    NCHAN_WORKER=$(pgrep -P "$NGINX_PID" | head -1)
    [ -n "$NCHAN_WORKER" ] && break
    sleep 0.1
  done
  [ -n "$NCHAN_WORKER" ] || { say "nginx started no worker"; return 1; }
  # The master only forks and waits: keep it off the worker's CPU.
  taskset -p -c "$OTHER_CPU" "$NGINX_PID" >/dev/null
}

# --- one fan-out run ------------------------------------------------------------------------

# Runs the fan-out for server $1 and $2 connections; results in $OUT/$1-$2.{json,log,meta.json,
# timeline}. Returns 1 when the server or the client could not be run (the reason in the log).
fanout_run() {
  local server=$1 n=$2 prefix=$OUT/$1-$2 target push pid path
  local rss_before rss_idle cpu0 cpu1 gw0='' gw1='' gw_cpu=null note='' opened
  rm -f "$prefix".*
  if ! note=$(nofile_enough "$n"); then
    write_meta "$prefix" "$n" 0 0 0 null "$note"
    say "$server N=$n: $note"
    return 1
  fi
  if [ "$server" = magnetar ]; then
    if ! magnetar_start --chat-job on; then
      note="the standalone could not run the chat gateway (see $prefix.server.log)"
      cp "$WORK/standalone.log" "$prefix.server.log" 2>/dev/null
      perf_standalone_kill
      write_meta "$prefix" "$n" 0 0 0 null "$note"
      say "magnetar N=$n: $note"
      return 1
    fi
    pid=$SA_PID
    target=127.0.0.1:$WS_PORT
    path=/sub
    push="$HTTP/goim/push/room?type=live&room={room}"
  else
    if ! nchan_start "$n"; then
      stop_pid NGINX_PID
      write_meta "$prefix" "$n" 0 0 0 null "nginx with nchan could not start"
      return 1
    fi
    pid=$NCHAN_WORKER
    target=127.0.0.1:$NCHAN_PORT
    path="/sub?id=room{room}"
    push="http://127.0.0.1:$NCHAN_PORT/pub?id=room{room}"
  fi
  rss_before=$(rss_kib "$pid")
  say "$server N=$n: server RSS $rss_before KiB; connecting"
  if load_start "$prefix" --mode "$server" --target "$target" --path "$path" \
    --push-url "$push" --connections "$n" --rate "$RATE" --duration "$DURATION_S" \
    --timeline "$prefix.timeline"; then
    sleep "$SETTLE_S"
    rss_idle=$(rss_kib "$pid")
    opened=$(jq .opened "$WORK/ready")
    [ "$opened" = "$n" ] || note="only $opened of $n connections opened (see $prefix.log)"
    cpu0=$(cpu_ticks "/proc/$pid")
    [ "$server" = magnetar ] && gw0=$(cpu_ticks "/proc/$SA_PID/task/$GW_TID")
    say "$server N=$n: $(jq -r '"\(.opened) open, \(.failed) failed in \(.connect_s) s"' "$WORK/ready"); RSS $rss_idle KiB; pushing for ${DURATION_S}s"
    local s0a s1a s0b s1b
    s0a=$(cpu_stat "$OTHER_CPU")
    s1a=$(cpu_stat "$GATEWAY_CPU")
    kill -USR1 "$LOAD_PID"
    cpu_sampler "$prefix.cpu" "$pid" "${GW_TID:-}" "$server" $((DURATION_S + DRAIN_S + 60)) &
    local sampler=$!
    load_wait $((DURATION_S + DRAIN_S + 60))
    kill "$sampler" 2>/dev/null
    wait "$sampler" 2>/dev/null
    cpu1=$(cpu_ticks "/proc/$pid")
    s0b=$(cpu_stat "$OTHER_CPU")
    s1b=$(cpu_stat "$GATEWAY_CPU")
    [ "$server" = magnetar ] && gw1=$(cpu_ticks "/proc/$SA_PID/task/$GW_TID")
    if ! proc_alive "$pid" || [ -z "$cpu1" ]; then
      # Its CPU time is gone with it: null, not a difference with nothing.
      cpu1='' gw1=''
      note="the server exited during the run${note:+; $note}"
      local why
      why=$(grep -m1 -E 'assertion failed|[Ss]egmentation|panic|FATAL|abort' "$(server_log "$server")" 2>/dev/null)
      [ -n "$why" ] && note="$note: $why"
      say "$server N=$n: $note"
    fi
    gw_cpu=$(ticks_delta_s "$gw0" "$gw1")
    write_meta "$prefix" "$n" "$rss_before" "$rss_idle" "$(ticks_delta_s "$cpu0" "$cpu1")" \
      "$gw_cpu" "$note" "[$(cpu_json "$OTHER_CPU" "$s0a" "$s0b"),$(cpu_json "$GATEWAY_CPU" "$s1a" "$s1b")]" \
      "$opened"
  else
    write_meta "$prefix" "$n" "$rss_before" 0 0 null "the load client did not connect"
  fi
  if [ "$server" = magnetar ]; then
    cp "$WORK/standalone.log" "$prefix.server.log" 2>/dev/null
    perf_standalone_kill
  else
    cp "$WORK/nginx/error.log" "$prefix.server.log" 2>/dev/null
    stop_pid NGINX_PID
  fi
  [ -s "$prefix.json" ] || return 1
  say "$server N=$n: $(jq -r '"\(.deliveries_per_s | floor) deliveries/s of \(.ideal_nominal_per_s) ideal, p99 \(.latency_ms.p99) ms, drops \(.drops)"' "$prefix.json")"
}

# --- the fan-out report ---------------------------------------------------------------------

# One record per server and N from the client's JSON and the meta file (null when not run).
fanout_report() {
  local records=() s n
  for n in "${NS[@]}"; do
    for s in magnetar nchan; do
      local j=$OUT/$s-$n.json m=$OUT/$s-$n.meta.json
      [ -s "$j" ] || j=/dev/null
      [ -s "$m" ] || m=/dev/null
      records+=("$(jq -n --arg s "$s" --argjson n "$n" --slurpfile r "$j" --slurpfile meta "$m" \
        '{server: $s, connections: $n, result: ($r[0] // null), meta: ($meta[0] // null)}')")
    done
  done
  printf '%s\n' "${records[@]}" | jq -s --argjson rate "$RATE" --argjson duration "$DURATION_S" \
    --arg stamp "$STAMP" --arg load "$(cat /proc/loadavg)" '
    . as $all |
    def pick($s; $n): $all | map(select(.server == $s and .connections == $n))[0];
    def dps: if .result then .result.deliveries_per_s else null end;
    def per_cpu: if .result and .meta.cpu_s_push and .meta.cpu_s_push > 0
      then .result.deliveries_in_push / .meta.cpu_s_push else null end;
    {
      benchmark: "chat fan-out (BENCHMARKS.md workload 5)", stamp: $stamp, rate: $rate,
      duration_s: $duration, loadavg_at_end: $load,
      goals: { deliveries_at_100k_per_s: 4000000, rss_per_idle_conn_kib_max: 4,
               p99_ms_max: 100, ratio_to_nchan_min: 3 },
      runs: .,
      rows: ([.[].connections] | unique | map(. as $n | {
        connections: $n, ideal_per_s: ($n * $rate),
        magnetar: (pick("magnetar"; $n)), nchan: (pick("nchan"; $n))
      } | {
        connections, ideal_per_s,
        magnetar_deliveries_per_s: (.magnetar | dps), nchan_deliveries_per_s: (.nchan | dps),
        ratio: (if (.magnetar | dps) and (.nchan | dps) and (.nchan | dps) > 0
                then ((.magnetar | dps) / (.nchan | dps)) else null end),
        magnetar_deliveries_per_cpu_s: (.magnetar | per_cpu),
        nchan_deliveries_per_cpu_s: (.nchan | per_cpu),
        magnetar_gateway_deliveries_per_cpu_s: (if .magnetar.result and .magnetar.meta.gateway_thread_cpu_s_push
          and .magnetar.meta.gateway_thread_cpu_s_push > 0
          then .magnetar.result.deliveries_in_push / .magnetar.meta.gateway_thread_cpu_s_push else null end),
        magnetar_rss_per_conn_kib: .magnetar.meta.rss_per_conn_kib,
        nchan_rss_per_conn_kib: .nchan.meta.rss_per_conn_kib,
        magnetar_p99_ms: .magnetar.result.latency_ms.p99, nchan_p99_ms: .nchan.result.latency_ms.p99,
        magnetar_p999_ms: .magnetar.result.latency_ms.p999, nchan_p999_ms: .nchan.result.latency_ms.p999,
        magnetar_drops: .magnetar.result.drops, nchan_drops: .nchan.result.drops,
        magnetar_opened: .magnetar.result.connections.opened, nchan_opened: .nchan.result.connections.opened,
        magnetar_pushes_acked: .magnetar.result.pushes.acked, nchan_pushes_acked: .nchan.result.pushes.acked,
        magnetar_cpu_s: .magnetar.meta.cpu_s_push, nchan_cpu_s: .nchan.meta.cpu_s_push,
        magnetar_gateway_cpu_s: .magnetar.meta.gateway_thread_cpu_s_push,
        magnetar_note: .magnetar.meta.note, nchan_note: .nchan.meta.note
      }))
    }' >"$OUT/results.json" || return 1

  jq -r '
    def f($d): if . == null then "-" elif ($d == 0) then (. | floor | tostring)
      else ((. * pow(10; $d) | round) / pow(10; $d) | tostring) end;
    "| N | ideal/s | magnetar/s | nchan/s | magnetar/nchan | per server CPU s m / n | RSS/conn KiB m / n | p99 ms m / n | p999 ms m / n | drops m / n | pushes acked m / n |",
    "|---:|---:|---:|---:|---:|---|---|---|---|---|---|",
    (.rows[] | "| \(.connections) | \(.ideal_per_s) | \(.magnetar_deliveries_per_s | f(0)) | \(.nchan_deliveries_per_s | f(0)) | \(.ratio | f(2)) | \(.magnetar_deliveries_per_cpu_s | f(0)) / \(.nchan_deliveries_per_cpu_s | f(0)) | \(.magnetar_rss_per_conn_kib | f(2)) / \(.nchan_rss_per_conn_kib | f(2)) | \(.magnetar_p99_ms | f(1)) / \(.nchan_p99_ms | f(1)) | \(.magnetar_p999_ms | f(1)) / \(.nchan_p999_ms | f(1)) | \(.magnetar_drops | f(0)) / \(.nchan_drops | f(0)) | \(.magnetar_pushes_acked | f(0)) / \(.nchan_pushes_acked | f(0)) |"),
    "",
    "Goals (the chat gateway issue): every delivery made at 100k (4,000,000 deliveries/s at 40 pushes/s), <= 4 KiB RSS per idle connection, p99 <= 100 ms, >= 3 x nchan deliveries/s.",
    "",
    (.rows[] | select(.magnetar_note != null and .magnetar_note != "") | "magnetar N=\(.connections): \(.magnetar_note)"),
    (.rows[] | select(.nchan_note != null and .nchan_note != "") | "nchan N=\(.connections): \(.nchan_note)"),
    (.runs[] | select(.meta.cpus_during_push != null) | "CPU during the push, \(.server) N=\(.connections): server \(.meta.cpu_s_push) s\(if .meta.gateway_thread_cpu_s_push then " (gateway thread \(.meta.gateway_thread_cpu_s_push) s)" else "" end); CPU 1 busy \(.meta.cpus_during_push[1].busy_s) of \(.meta.cpus_during_push[1].total_s) s, CPU 0 busy \(.meta.cpus_during_push[0].busy_s) of \(.meta.cpus_during_push[0].total_s) s (other work on the machine included); load client \(.result.client_cpu_s // "-") s; load average after: \(.meta.loadavg_after)")
  ' "$OUT/results.json" >"$OUT/summary.md"
  {
    echo "# chat fan-out $STAMP: $RATE pushes/s for ${DURATION_S}s into one room"
    echo
    echo "Command: perf/chat.sh --connections $CONNECTIONS --rate $RATE --duration $DURATION_S --servers \"$SERVERS\""
    echo
    cat "$OUT/summary.md"
  } >"$OUT/summary.md.tmp" && mv "$OUT/summary.md.tmp" "$OUT/summary.md"
  cat "$OUT/summary.md"

  if [ "$HAVE_GNUPLOT" = 1 ]; then
    jq -r '.rows[] | "\(.connections) \(.ideal_per_s) \(.magnetar_deliveries_per_s // "NaN") \(.nchan_deliveries_per_s // "NaN")"' \
      "$OUT/results.json" >"$OUT/deliveries.dat"
    if timeout 60 gnuplot -e "dat='$OUT/deliveries.dat'; out='$OUT/deliveries.png'; heading='chat fan-out $STAMP, $RATE pushes/s'" \
      "$ROOT/perf/chat/fanout.gnuplot" 2>"$WORK/gnuplot.err"; then
      say "plot: $OUT/deliveries.png"
    else
      say "gnuplot failed: $(tail -3 "$WORK/gnuplot.err" | tr '\n' ' ')"
    fi
  fi
}

# --- job-restart ----------------------------------------------------------------------------

# Sends a ZooKeeper four-letter word to 127.0.0.1:$1 and prints the answer (2 s at most).
zk_word() {
  timeout 2 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1" && printf "%s" "$2" >&3 && cat <&3' _ "$1" "$2" 2>/dev/null
}

# Starts ZooKeeper from Debian's zookeeper package (as tests/support/zk_harness.c does) in its own
# process group; sets ZK_PID and ZK_PORT once it serves.
zk_start() {
  local dir=$WORK/zk i cp=/etc/zookeeper/conf:/usr/share/java/zookeeper.jar
  command -v java >/dev/null 2>&1 && [ -f /usr/share/java/zookeeper.jar ] ||
    { say "ZooKeeper needs java and Debian's zookeeper package"; return 1; }
  ZK_PORT=$(free_port) || return 1
  mkdir -p "$dir/data" || return 1
  printf 'tickTime=500\ndataDir=%s/data\nclientPortAddress=127.0.0.1\nclientPort=%s\nadmin.enableServer=false\nminSessionTimeout=1000\nmaxSessionTimeout=60000\n4lw.commands.whitelist=ruok,srvr\nforceSync=no\n' \
    "$dir" "$ZK_PORT" >"$dir/zoo.cfg"
  setsid taskset -c "$OTHER_CPU" java -Xms16m -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
    -XX:-UsePerfData -Djava.net.preferIPv4Stack=true -Dzookeeper.admin.enableServer=false \
    -cp "$cp" org.apache.zookeeper.server.ZooKeeperServerMain "$dir/zoo.cfg" \
    >"$dir/zk.log" 2>&1 </dev/null &
  ZK_PID=$!
  for ((i = 0; i < ZK_WAIT_S * 2; i++)); do
    [ "$(zk_word "$ZK_PORT" ruok)" = imok ] && zk_word "$ZK_PORT" srvr | grep -q 'Mode: ' && return 0
    kill -0 "$ZK_PID" 2>/dev/null || break
    sleep 0.5
  done
  say "ZooKeeper did not serve on $ZK_PORT within ${ZK_WAIT_S}s; its log:"
  tail -5 "$dir/zk.log" >&2
  return 1
}

# Starts `magnetar job` on CPU 0 (log appended to $1); sets JOB_PID. job_alive says, 2 s later,
# whether it is still running.
job_launch() {
  taskset -c "$OTHER_CPU" "$BIN" job --metadata-url "zk:127.0.0.1:$ZK_PORT" --service-url "$URL" \
    >>"$1" 2>&1 </dev/null &
  JOB_PID=$!
}
job_alive() { # $1 log file
  sleep 2
  kill -0 "$JOB_PID" 2>/dev/null && return 0
  say "magnetar job exited at once; its log:"
  tail -5 "$1" >&2
  JOB_PID=
  return 1
}

job_restart_run() {
  local prefix=$OUT/job-restart n=$((ROOMS * PER_ROOM)) total_s=$((WARMUP_S + OUTAGE_S + AFTER_S))
  local drain=$((DRAIN_S > 180 ? DRAIN_S : 180)) note=
  rm -f "$prefix".*
  zk_start || { write_meta "$prefix" "$n" 0 0 0 null "ZooKeeper did not start"; return 1; }
  if ! magnetar_start --metadata-url "zk:127.0.0.1:$ZK_PORT" --chat-job off; then
    note="the standalone could not run the chat gateway with ZooKeeper metadata (see $prefix.server.log)"
    cp "$WORK/standalone.log" "$prefix.server.log" 2>/dev/null
    write_meta "$prefix" "$n" 0 0 0 null "$note"
    say "$note"
    return 1
  fi
  job_launch "$prefix.job.log"
  if ! job_alive "$prefix.job.log"; then
    write_meta "$prefix" "$n" 0 0 0 null "magnetar job did not start (see $prefix.job.log)"
    return 1
  fi
  say "job-restart: $ROOMS rooms x $PER_ROOM connections, $ROOM_RATE pushes/s; job killed at ${WARMUP_S}s for ${OUTAGE_S}s"
  if ! load_start "$prefix" --mode magnetar --target "127.0.0.1:$WS_PORT" --path /sub \
    --push-url "$HTTP/goim/push/room?type=live&room={room}" --connections "$n" --rooms "$ROOMS" \
    --rate "$ROOM_RATE" --duration "$total_s" --drain-s "$drain" --timeline "$prefix.timeline"; then
    write_meta "$prefix" "$n" 0 0 0 null "the load client did not connect"
    return 1
  fi
  kill -USR1 "$LOAD_PID"
  sleep "$WARMUP_S"
  kill -USR2 "$LOAD_PID" # mark 1: the kill
  kill -KILL "$JOB_PID" 2>/dev/null
  wait "$JOB_PID" 2>/dev/null
  JOB_PID=
  say "job-restart: job killed; restarting it in ${OUTAGE_S}s"
  sleep "$OUTAGE_S"
  job_launch "$prefix.job.log"
  kill -USR2 "$LOAD_PID" # mark 2: the restart
  if job_alive "$prefix.job.log"; then
    say "job-restart: job restarted; waiting for the catch-up"
  else
    note="the restarted job exited at once"
  fi
  load_wait $((AFTER_S + drain + 60))
  if ! proc_alive "$SA_PID"; then
    note="the standalone exited during the run${note:+; $note}"
    local why
    why=$(grep -m1 -E 'assertion failed|[Ss]egmentation|panic|FATAL|abort' "$WORK/standalone.log" 2>/dev/null)
    [ -n "$why" ] && note="$note: $why"
    say "job-restart: $note"
  fi
  stop_pid JOB_PID
  cp "$WORK/standalone.log" "$prefix.server.log" 2>/dev/null
  perf_standalone_kill
  stop_zk
  write_meta "$prefix" "$n" 0 0 0 null "$note"
}

job_restart_report() {
  local j=$OUT/job-restart.json
  if [ ! -s "$j" ]; then
    jq -n --slurpfile m "$OUT/job-restart.meta.json" '{scenario: "job-restart", result: null, note: $m[0].note}' \
      >"$OUT/results.json"
    say "job-restart: not measured: $(jq -r .note "$OUT/job-restart.meta.json")"
    return 1
  fi
  jq --argjson rooms "$ROOMS" --argjson per "$PER_ROOM" --argjson rate "$ROOM_RATE" \
    --argjson warm "$WARMUP_S" --argjson outage "$OUTAGE_S" --arg stamp "$STAMP" '{
      scenario: "job-restart", stamp: $stamp, rooms: $rooms, per_room: $per, rate: $rate,
      warmup_s: $warm, outage_s: $outage,
      kill_at_s: (.marks[0].at_s // null), restart_at_s: (.marks[1].at_s // null),
      caught_up_after_restart_s: (.marks[1].caught_up_after_s // null),
      catchup_latency_ms: (.marks[1].latency_ms // null),
      lag_max_msgs: (.marks[1].lag_max // null),
      drops: .drops, duplicates: .duplicates, deliveries: .deliveries, latency_ms: .latency_ms,
      result: . }' "$j" >"$OUT/results.json"
  {
    echo "# chat job-restart $STAMP: $ROOMS rooms x $PER_ROOM connections, $ROOM_RATE pushes/s, job down ${OUTAGE_S}s"
    echo
    jq -r '"- every message acknowledged before the restart delivered \(.caught_up_after_restart_s // "never (within the run)") s after it",
      "- delivery latency meanwhile: p50 \(.catchup_latency_ms.p50 // "-") ms, p99 \(.catchup_latency_ms.p99 // "-") ms, max \(.catchup_latency_ms.max // "-") ms",
      "- largest lag (messages acknowledged, not yet received, over all connections): \(.lag_max_msgs // "-")",
      "- whole run: \(.deliveries) deliveries, drops \(.drops), duplicates \(.duplicates), p99 \(.latency_ms.p99) ms"' "$OUT/results.json"
  } | tee "$OUT/summary.md"
  if [ "$HAVE_GNUPLOT" = 1 ] && [ -s "$OUT/job-restart.timeline" ]; then
    if timeout 60 gnuplot -e "dat='$OUT/job-restart.timeline'; out='$OUT/job-restart.png'; kill_at=$(jq '.kill_at_s // -1' "$OUT/results.json"); restart_at=$(jq '.restart_at_s // -1' "$OUT/results.json"); heading='chat job-restart $STAMP'" \
      "$ROOT/perf/chat/timeline.gnuplot" 2>"$WORK/gnuplot.err"; then
      say "plot: $OUT/job-restart.png"
    else
      say "gnuplot failed: $(tail -3 "$WORK/gnuplot.err" | tr '\n' ' ')"
    fi
  fi
}

# --- main -----------------------------------------------------------------------------------

case " $SERVERS " in *" magnetar "*) [ -x "$BIN" ] || die "$BIN is not an executable; build first or pass --bin" ;; esac
say "results in $OUT"
if [ "$SCENARIO" = fanout ]; then
  for n in "${NS[@]}"; do
    for s in $SERVERS; do
      fanout_run "$s" "$n" || say "$s N=$n: not measured"
    done
  done
  fanout_report
else
  [ -x "$BIN" ] || die "$BIN is not an executable"
  job_restart_run || say "job-restart: not measured"
  job_restart_report
fi
