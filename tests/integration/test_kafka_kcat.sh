#!/usr/bin/env bash
# The broker's Kafka port against kcat (Debian's kcat 1.7.1, librdkafka 2.0.2): one
# `magnetar standalone` on free loopback ports (the Kafka port read from its ready line), then
# metadata (-L: the broker, topics made by producing with 1 partition, a partitioned topic made
# over the admin API with 3), keys and headers produced (-k, -K, -H) and read back (-f with %k %h
# %o %s), consuming from -o beginning, -o end, a given offset and -o -N, a consumer group (-G:
# a second run of the group sees only what came after the first committed), and one partition
# of a partitioned topic (-p 2). Every kcat run is bounded by `timeout`.
# Usage: test_kafka_kcat.sh /path/to/magnetar
source "$(dirname "$0")/lib.sh"
MG=${1:?usage: test_kafka_kcat.sh /path/to/magnetar}
RUN=$$ # topic and group names differ between runs

if ! command -v kcat >/dev/null 2>&1; then
  t_fail "kcat is installed (scripts/setup.sh installs it)"; t_end; exit 1
fi

"$MG" standalone --chat-gateway off --chat-job off --data-dir "$T_TMP/data" --bind-address 127.0.0.1 \
  --broker-port 0 --bookie-port 0 --http-port 0 --kafka-port 0 $T_SA_ARGS >"$T_TMP/s.log" 2>&1 &
SA=$!; T_PIDS+=("$SA")
if t_wait_for "$T_TMP/s.log" 'ready: .*kafka 127\.0\.0\.1:[0-9]+' 30; then t_ok "standalone ready with a Kafka port"; else
  t_fail "standalone ready with a Kafka port"; cat "$T_TMP/s.log"; t_end; exit 1; fi
K=$(grep -m1 -oE 'kafka 127\.0\.0\.1:[0-9]+' "$T_TMP/s.log" | cut -d' ' -f2)
HTTP=$(grep -m1 -oE 'http://127\.0\.0\.1:[0-9]+' "$T_TMP/s.log")

# kc NAME ARGS...: kcat against the broker, bounded; stdout in $T_TMP/NAME.out, stderr in
# $T_TMP/NAME.err, exit status in RC.
kc() {
  local name=$1; shift
  timeout 30 kcat -b "$K" -X broker.address.family=v4 "$@" >"$T_TMP/$name.out" 2>"$T_TMP/$name.err"
  RC=$?
}
# produce TOPIC LINES KCAT-ARGS...: the lines (one message each, printf's \n) to TOPIC.
produce() {
  local topic=$1 lines=$2; shift 2
  printf "$lines" | timeout 30 kcat -b "$K" -X broker.address.family=v4 -P -t "$topic" "$@" \
    2>>"$T_TMP/produce.err"
}
# same NAME EXPECTED: the output of NAME is exactly EXPECTED (printf's \n); on a difference both
# are shown.
same() {
  local got want
  got=$(cat "$T_TMP/$1.out"); want=$(printf "$2")
  [ "$got" = "$want" ] && return 0
  echo "    [$1] rc=$RC, expected:"; sed 's/^/    | /' <<<"$want"
  echo "    got:"; sed 's/^/    | /' <<<"$got"; tail -n 3 "$T_TMP/$1.err" | sed 's/^/    [stderr] /'
  return 1
}

# --- metadata
A=a$RUN; B=b$RUN; P=p$RUN
produce "$A" 'a1\n'; produce "$B" 'b1\n'
kc meta -L
t_check "kcat -L names the broker at the Kafka port" grep -qE "broker [0-9]+ at $K" "$T_TMP/meta.out"
t_check "kcat -L lists both topics produced to, with 1 partition each" \
  test -n "$(grep -F "topic \"$A\" with 1 partitions" "$T_TMP/meta.out")" \
  -a -n "$(grep -F "topic \"$B\" with 1 partitions" "$T_TMP/meta.out")"
code=$(curl -s -m 10 -o /dev/null -w '%{http_code}' -X PUT -H 'Content-Type: application/json' \
  --data 3 "$HTTP/admin/v2/persistent/public/default/$P/partitions")
t_check "a partitioned topic with 3 partitions is created over the admin API (HTTP $code)" \
  test "$code" = 204 -o "$code" = 200
kc meta_p -L -t "$P"
t_check "kcat -L -t shows the partitioned topic with 3 partitions" \
  grep -qF "topic \"$P\" with 3 partitions" "$T_TMP/meta_p.out"
kc meta_all -L
t_check "and kcat -L lists it as one topic of 3 partitions, not its partitions" \
  test -n "$(grep -F "topic \"$P\" with 3 partitions" "$T_TMP/meta_all.out")" \
  -a -z "$(grep -F "$P-partition-" "$T_TMP/meta_all.out")"

# --- keys and headers
H=h$RUN
produce "$H" 'v1\nv2\n' -k key1 -H trace=abc -H n=1
produce "$H" 'ka:va\nkb:vb\n' -K: -H trace=def
kc keys -C -t "$H" -o beginning -e -f '%k|%h|%o|%s\n'
t_check "keys and headers come back with their offsets (-f %k|%h|%o|%s)" same keys \
  'key1|trace=abc,n=1|0|v1\nkey1|trace=abc,n=1|1|v2\nka|trace=def|2|va\nkb|trace=def|3|vb'

# --- offsets
O=o$RUN
produce "$O" 'm0\nm1\nm2\nm3\nm4\nm5\nm6\nm7\nm8\nm9\n'
kc beg -C -t "$O" -o beginning -e -f '%o:%s\n'
t_check "-o beginning reads all 10 in order" same beg '0:m0\n1:m1\n2:m2\n3:m3\n4:m4\n5:m5\n6:m6\n7:m7\n8:m8\n9:m9'
kc end -C -t "$O" -o end -e -f '%o:%s\n'
t_check "-o end reads nothing and stops at offset 10" \
  test "$RC" = 0 -a ! -s "$T_TMP/end.out" -a -n "$(grep -F "at offset 10" "$T_TMP/end.err")"
kc at -C -t "$O" -o 6 -e -f '%o:%s\n'
t_check "-o 6 starts at offset 6" same at '6:m6\n7:m7\n8:m8\n9:m9'
kc rel -C -t "$O" -o -3 -e -f '%o:%s\n'
t_check "-o -3 reads the last 3" same rel '7:m7\n8:m8\n9:m9'
kc count -C -t "$O" -o 2 -c 3 -f '%o:%s\n'
t_check "-o 2 -c 3 reads 3 from offset 2" same count '2:m2\n3:m3\n4:m4'
produce "$O" 'm10\n'
kc end2 -C -t "$O" -o -1 -e -f '%o:%s\n'
t_check "a message produced later is at offset 10" same end2 '10:m10'

# --- consumer group
G=g$RUN; GT=gt$RUN
produce "$GT" 'g1\ng2\ng3\n'
kc grp1 -G "$G" -X auto.offset.reset=earliest -e -f '%o:%s\n' "$GT"
t_check "a new group (-G) reads everything from the beginning (rc $RC)" same grp1 '0:g1\n1:g2\n2:g3'
produce "$GT" 'g4\ng5\n'
kc grp2 -G "$G" -X auto.offset.reset=earliest -e -f '%o:%s\n' "$GT"
t_check "the same group's second run reads only what came after its commit (rc $RC)" \
  same grp2 '3:g4\n4:g5'
stats=$(curl -s -m 10 "$HTTP/admin/v2/persistent/public/default/$GT/stats")
t_check "the group is a subscription of the topic with nothing left ($stats)" \
  grep -qE "\"$G\":\\{[^}]*\"msgBacklog\":0," <<<"$stats"

# --- one partition of a partitioned topic
produce "$P" 'on-two-a\non-two-b\n' -p 2
kc part2 -C -t "$P" -p 2 -o beginning -e -f '%p|%o|%s\n'
t_check "-p 2 writes to partition 2 and reads it back" same part2 '2|0|on-two-a\n2|1|on-two-b'
kc part0 -C -t "$P" -p 0 -o beginning -e -f '%p|%o|%s\n'
t_check "partition 0 stays empty" test "$RC" = 0 -a ! -s "$T_TMP/part0.out"
stats=$(curl -s -m 10 "$HTTP/admin/v2/persistent/public/default/$P-partition-2/stats")
t_check "partition 2 is the Pulsar topic $P-partition-2 ($stats)" grep -q '"msgInCounter":2,' <<<"$stats"

t_check "every kcat producer exited cleanly" test ! -s "$T_TMP/produce.err"
# The standalone ran through all of it and stops cleanly; otherwise the end of its log.
if kill -0 "$SA" 2>/dev/null; then t_ok "standalone still running at the end"; else
  t_fail "standalone still running at the end"; fi
kill -TERM "$SA" 2>/dev/null
t_wait_exit "$SA" 30
t_check "standalone stops with status 0 (got $T_STATUS)" test "$T_STATUS" = 0
if [ "$T_FAIL" != 0 ]; then # a sanitizer's report (build-asan), else the end of the log
  echo "---- the standalone's log"
  if grep -q '^==[0-9]*==ERROR' "$T_TMP/s.log"; then sed -n '/^==[0-9]*==ERROR/,/^SUMMARY/p' "$T_TMP/s.log"
  else tail -n 25 "$T_TMP/s.log"; fi
fi
t_end
