#!/usr/bin/env bash
# `magnetar replay` against a real standalone: every position form (earliest, latest, an id, an
# id with a batch index, an RFC 3339 time, a relative time, the per-partition resume form), every
# destination (stdout, file:, topic:, the copy replayed to check keys, properties and event
# times), both formats (a binary payload as base64 with its flag), --rate (a lower bound on the
# elapsed time only), progress lines and the terminal bar, --json, SIGINT and resume (the union
# of the two runs is every message once, in order), a partitioned topic, usage errors (exit 2),
# and run-time errors (exit 1): a missing topic, an id retention deleted, unwritable files, a
# destination topic that refuses producers.
# Usage: test_replay.sh /path/to/magnetar /path/to/replay_seed
source "$(dirname "$0")/lib.sh"
MG=${1:?usage: test_replay.sh /path/to/magnetar /path/to/replay_seed}
SEED=${2:?usage: test_replay.sh /path/to/magnetar /path/to/replay_seed}

start_standalone() { # $1: log file
  "$MG" standalone --chat-gateway off --chat-job off --kafka off --data-dir "$T_TMP/data" \
    --bind-address 127.0.0.1 --broker-port 0 --bookie-port 0 --http-port 0 $T_SA_ARGS >"$1" 2>&1 &
  SA_PID=$!; T_PIDS+=("$SA_PID")
  if ! t_wait_for "$1" 'ready' 30; then
    t_fail "standalone ready"; cat "$1"; t_end; exit 1
  fi
  URL=$(grep -m1 -oE 'pulsar://127\.0\.0\.1:[0-9]+' "$1")
  HTTP=$(grep -m1 -oE 'http://127\.0\.0\.1:[0-9]+' "$1")
}
start_standalone "$T_TMP/s1.log"
t_ok "standalone ready"

R() { timeout 60 "$MG" replay "$@" -u "$URL" --admin-url "$HTTP" --timeout 20s; }
# py CODE ARGS...: a Python check; exits non-zero (the check fails) on an assertion. The system's
# interpreter when there is one (a version manager's shim costs half a second a call).
PY=python3; [ -x /usr/bin/python3 ] && PY=/usr/bin/python3
py() { local code=$1; shift; "$PY" -c "$code" "$@"; }

# --- usage ------------------------------------------------------------------------------------
out=$("$MG" replay --help); rc=$?
t_check "replay --help documents every option" test "$rc" = 0 \
  -a -n "$(grep -- '--from' <<<"$out")" -a -n "$(grep -- '--until' <<<"$out")" \
  -a -n "$(grep -- '--to' <<<"$out")" -a -n "$(grep -- '--format' <<<"$out")" \
  -a -n "$(grep -- '--rate' <<<"$out")" -a -n "$(grep -- '--json' <<<"$out")"
out=$("$MG" --help)
t_check "magnetar --help lists replay as built" test -n "$(grep -E '^  replay ' <<<"$out")" \
  -a -z "$(grep -E '^  replay .*not built' <<<"$out")"
usage() { # DESCRIPTION PATTERN ARGS...: exit 2 with a message matching PATTERN
  local what=$1 pat=$2; shift 2
  err=$(R "$@" 2>&1 >/dev/null); rc=$?
  t_check "$what exits 2 and says so ('$err')" test "$rc" = 2 -a -n "$(grep -E -- "$pat" <<<"$err")"
}
usage "no --from" '--from is required' x
usage "an unknown position" "'yesterday' is not a position" x --from yesterday
usage "a bad time" "is not a position" x --from 2026-13-01T00:00:00Z
usage "--until before --from (ids)" '--until 3:1:-1 is before --from 3:5:-1' x --from 3:5 --until 3:1
usage "--until before --from (times)" 'is before --from' x --from 2026-12-07T10:00:00Z --until 2026-12-07T09:00:00Z
usage "--until earliest" 'earliest' x --from earliest --until earliest
usage "--rate 0" "--rate '0' is not" x --from earliest --rate 0
usage "--rate -5" "--rate '-5' is not" x --from earliest --rate -5
usage "an unknown format" 'format' x --from earliest --format xml
usage "an unknown destination" "--to 'ftp:x' is not" x --from earliest --to ftp:x
usage "a bad partition form" 'is not PARTITION=POSITION' x --from 0=1:2,z=3:4

# --- data ---------------------------------------------------------------------------------------
# plain: 50 single messages, every 10th payload binary; batched: 40 messages in batches of 8.
"$SEED" "$URL" plain 50 --binary-every 10 >/dev/null &&
  "$SEED" "$URL" batched 40 --batch 8 >/dev/null && "$SEED" "$URL" big 600 --batch 7 >/dev/null
t_check "test data produced" test $? = 0

# seqs FILE: the seq property of every JSON line, space-separated.
seqs() { py 'import json,sys; print(" ".join(json.loads(l)["properties"]["seq"] for l in open(sys.argv[1])))' "$1"; }

# --- earliest, json, stdout ------------------------------------------------------------------------
R plain --from earliest >"$T_TMP/all.json" 2>"$T_TMP/all.err"; rc=$?
t_check "earliest to stdout: exit 0, 50 lines" test "$rc" = 0 -a "$(wc -l <"$T_TMP/all.json")" = 50
t_check "stdout carries only messages; the summary is on stderr" \
  py 'import json,sys; [json.loads(l) for l in open(sys.argv[1])]' "$T_TMP/all.json"
t_check "the summary says why it stopped and what it wrote" \
  grep -qE '^replay: 50 messages, .* from persistent://public/default/plain to stdout' "$T_TMP/all.err"
t_check "json lines carry id, times, key, properties, payload and its encoding" py '
import json,sys
ls=[json.loads(l) for l in open(sys.argv[1])]
b,t=ls[0],ls[1]
assert b["payload"]=="/wD+gA==" and b["payloadEncoding"]=="base64", b
assert t["payload"]=="m-1" and t["payloadEncoding"]=="utf8", t
assert t["key"]=="k1" and t["properties"]=={"seq":"1","src":"seed"}, t
assert t["eventTime"]==1700000000001 and t["publishTime"]>1700000000000, t
assert [l["properties"]["seq"] for l in ls]==[str(i) for i in range(50)]
assert all(len(l["messageId"].split(":"))==3 for l in ls) and "partition" not in t
' "$T_TMP/all.json"
ID10=$(py 'import json,sys; print(json.loads(open(sys.argv[1]).readlines()[10])["messageId"])' "$T_TMP/all.json")
ID19=$(py 'import json,sys; print(json.loads(open(sys.argv[1]).readlines()[19])["messageId"])' "$T_TMP/all.json")
L=${ID10%%:*}

# --- json escaping: quotes, backslashes, control characters, multi-byte UTF-8 --------------------
# The json lines are written by replay's own encoder: every payload, key and property value must
# come back as it was through a JSON parser. The long one puts escapes on both sides of 8-byte
# boundaries.
LONG="$(printf 'a%.0s' {1..37})\"$(printf 'b%.0s' {1..13})\\$(printf 'c%.0s' {1..21})"
ESC_MSGS=("quo\"te" 'back\slash' $'tab\there' $'nl\nx' $'ctl\x01\x1f\x7f' 'é中😀 utf8' "$LONG")
"$MG" client produce escapes -u "$URL" -k $'k\t"ey' -p $'p=v\\"\x02' \
  -m "$(IFS=,; echo "${ESC_MSGS[*]}")" >/dev/null 2>&1
R escapes --from earliest >"$T_TMP/esc.json" 2>/dev/null
printf '%s\0' "${ESC_MSGS[@]}" >"$T_TMP/esc.want"
t_check "json escaping: payloads, key and properties come back exactly through a JSON parser" py '
import json,sys
want=open(sys.argv[2],"rb").read().split(b"\0")[:-1]
ls=[json.loads(l) for l in open(sys.argv[1],encoding="utf-8")]
got=[l["payload"].encode() for l in ls]
assert got==want, (got,want)
assert all(l["payloadEncoding"]=="utf8" for l in ls)
assert all(l["key"]=="k\t\"ey" and l["properties"]=={"p":"v\\\"\x02"} for l in ls), ls[0]
' "$T_TMP/esc.json" "$T_TMP/esc.want"

# --- latest, an id, --until an id ------------------------------------------------------------------
out=$(R plain --from latest 2>/dev/null); rc=$?
t_check "latest: nothing before the end, exit 0" test "$rc" = 0 -a -z "$out"
R plain --from "${ID10%:-1}" >"$T_TMP/id.json" 2>/dev/null
t_check "an id (L:E) starts at that message, inclusive" test "$(seqs "$T_TMP/id.json")" = "$(seq -s ' ' 10 49)"
R plain --from "$ID10" --until "$ID19" >"$T_TMP/until.json" 2>"$T_TMP/until.err"; rc=$?
t_check "--until an id is inclusive ($rc)" test "$rc" = 0 -a "$(seqs "$T_TMP/until.json")" = "$(seq -s ' ' 10 19)"
t_check "--until says it stopped there" grep -q 'stopped: reached --until' "$T_TMP/until.err"

# --- batch indexes -------------------------------------------------------------------------------
R batched --from earliest >"$T_TMP/b.json" 2>/dev/null
B11=$(py 'import json,sys; print(json.loads(open(sys.argv[1]).readlines()[11])["messageId"])' "$T_TMP/b.json")
B18=$(py 'import json,sys; print(json.loads(open(sys.argv[1]).readlines()[18])["messageId"])' "$T_TMP/b.json")
t_check "batched messages have batch indexes ($B11, $B18)" test "${B11##*:}" = 3 -a "${B18##*:}" = 2
R batched --from "$B11" --until "$B18" >"$T_TMP/bi.json" 2>/dev/null
t_check "an id with a batch index starts and stops inside batches" \
  test "$(seqs "$T_TMP/bi.json")" = "$(seq -s ' ' 11 18)"

# --- times -----------------------------------------------------------------------------------------
"$SEED" "$URL" timed 10 >/dev/null
sleep 1.1
NOW_MS=$(date +%s%3N)
T_UTC=$(py 'import sys,datetime; t=datetime.datetime.fromtimestamp(int(sys.argv[1])/1000,datetime.timezone.utc); print(t.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]+"Z")' "$NOW_MS")
T_OFF=$(py 'import sys,datetime; tz=datetime.timezone(datetime.timedelta(hours=2)); t=datetime.datetime.fromtimestamp(int(sys.argv[1])/1000,tz); print(t.isoformat(timespec="milliseconds"))' "$NOW_MS")
sleep 0.3
"$SEED" "$URL" timed 10 --first 10 >/dev/null
R timed --from "$T_UTC" >"$T_TMP/t1.json" 2>/dev/null
t_check "an RFC 3339 time ($T_UTC) starts at the first message published at or after it" \
  test "$(seqs "$T_TMP/t1.json")" = "$(seq -s ' ' 10 19)"
R timed --from "$T_OFF" >"$T_TMP/t2.json" 2>/dev/null
t_check "the same instant with an offset ($T_OFF)" test "$(seqs "$T_TMP/t2.json")" = "$(seq -s ' ' 10 19)"
R timed --from earliest --until "$T_UTC" >"$T_TMP/t3.json" 2>/dev/null
t_check "--until a time: the messages published at or before it" \
  test "$(seqs "$T_TMP/t3.json")" = "$(seq -s ' ' 0 9)"
R timed --from -1h >"$T_TMP/t4.json" 2>/dev/null
t_check "a relative time (-1h)" test "$(seqs "$T_TMP/t4.json")" = "$(seq -s ' ' 0 19)"
out=$(R timed --from -0s 2>/dev/null); rc=$?
t_check "a relative time after the last message replays nothing" test "$rc" = 0 -a -z "$out"

# --- the admin route behind times -------------------------------------------------------------------
MID="$HTTP/admin/v2/persistent/public/default"
out=$(curl -s -m 5 "$MID/plain/messageid/0")
t_check "GET messageid/0 answers the first message ($out)" \
  test "$out" = "{\"ledgerId\":$L,\"entryId\":0,\"partitionIndex\":-1,\"batchIndex\":-1}"
out=$(curl -s -m 5 -w ' %{http_code}' "$MID/plain/messageid/$(( $(date +%s%3N) + 3600000 ))")
t_check "GET messageid past the last message: 404 ($out)" \
  test "$out" = '{"reason":"no message after the timestamp"} 404'
t_check "GET messageid/abc: 400" \
  test "$(curl -s -m 5 -o /dev/null -w '%{http_code}' "$MID/plain/messageid/abc")" = 400
t_check "GET messageid on a missing topic: 404, and it is not created" \
  test "$(curl -s -m 5 -o /dev/null -w '%{http_code}' "$MID/ghost/messageid/0")" = 404 \
  -a "$(curl -s -m 5 -o /dev/null -w '%{http_code}' "$MID/ghost/internalStats")" = 404

# --- --follow ------------------------------------------------------------------------------------------
"$SEED" "$URL" fol 3 >/dev/null
timeout 60 "$MG" replay fol -u "$URL" --admin-url "$HTTP" --from latest --follow --format raw \
  --to file:"$T_TMP/fol.out" 2>"$T_TMP/fol.err" &
rpid=$!
for i in $(seq 1 100); do
  curl -s -m 5 "$MID/fol/stats" | grep -q '"isDurable":false' && break
  sleep 0.1
done
"$SEED" "$URL" fol 5 --first 3 >/dev/null
t_wait_for "$T_TMP/fol.out" '^m-7$' 20
kill -INT "$rpid"
t_wait_exit "$rpid" 30
t_check "--follow from latest writes the new messages only, until interrupted (status $T_STATUS)" \
  test "$T_STATUS" = 130 -a "$(tr '\n' ' ' <"$T_TMP/fol.out")" = "m-3 m-4 m-5 m-6 m-7 "

# --- file: and raw, --json -------------------------------------------------------------------------
R plain --from earliest --format raw --to file:"$T_TMP/raw.out" --json "$T_TMP/raw.json" \
  >"$T_TMP/raw.stdout" 2>/dev/null; rc=$?
t_check "raw to a file: exit 0, nothing on stdout" test "$rc" = 0 -a ! -s "$T_TMP/raw.stdout"
t_check "raw: payloads only, newline-separated, binary as is" py '
import sys
d=open(sys.argv[1],"rb").read().split(b"\n")
assert d[-1]==b"" and len(d)==51, len(d)
assert d[0]==b"\xff\x00\xfe\x80" and d[10]==b"\xff\x00\xfe\x8a" and d[1]==b"m-1" and d[49]==b"m-49"
' "$T_TMP/raw.out"
t_check "--json summary: messages, bytes, positions, why, status" py '
import json,sys
j=json.load(open(sys.argv[1]))
assert j["messages"]==50 and j["stopped"]=="end" and j["exitStatus"]==0 and j["error"] is None, j
assert j["first"].endswith(":0:-1") and j["last"].endswith(":49:-1"), j
assert j["resume"]=="after:"+j["last"], j
assert j["bytes"]==5*4+sum(len("m-%d"%i) for i in range(50) if i%10), j
assert j["destination"]=="file "+sys.argv[2] and j["format"]=="raw", j
' "$T_TMP/raw.json" "$T_TMP/raw.out"

# --- topic: re-publish, then replay the copy -----------------------------------------------------
R batched --from earliest --to topic:copy --json "$T_TMP/copy.json" 2>"$T_TMP/copy.err"; rc=$?
t_check "re-publish to another topic: exit 0 ($(tail -1 "$T_TMP/copy.err"))" test "$rc" = 0
R copy --from earliest >"$T_TMP/copy.out" 2>/dev/null
t_check "the copy keeps payloads, keys, properties and event times" py '
import json,sys
a=[json.loads(l) for l in open(sys.argv[1])]
b=[json.loads(l) for l in open(sys.argv[2])]
assert len(a)==40 and len(b)==40, (len(a),len(b))
for x,y in zip(a,b):
    for f in ("payload","payloadEncoding","key","properties","eventTime"):
        assert x[f]==y[f], (f,x,y)
' "$T_TMP/b.json" "$T_TMP/copy.out"
err=$(R batched --from earliest --to topic:batched 2>&1); rc=$?
t_check "re-publishing into the topic being replayed is refused (exit 2)" test "$rc" = 2

# --- rate, progress lines, terminal bar ----------------------------------------------------------
# 600 messages at 300/s, burst max(1, 300/10) = 30: it cannot finish in under (600 - 30) / 300 s.
t0=$(date +%s%N)
R big --from earliest --format raw --rate 300 --stats-interval 200ms --to file:"$T_TMP/rate.out" \
  2>"$T_TMP/rate.err"; rc=$?
t1=$(date +%s%N)
elapsed_ms=$(( (t1 - t0) / 1000000 ))
t_check "--rate 300 on 600 messages took at least 1900 ms (took $elapsed_ms ms)" \
  test "$rc" = 0 -a "$elapsed_ms" -ge 1900 -a "$(wc -l <"$T_TMP/rate.out")" = 600
t_check "progress lines every --stats-interval when stderr is no terminal" \
  test "$(grep -cE '^replay: [0-9]+ messages, [0-9.]+ MiB, [0-9]+ msg/s, at [0-9]+:[0-9]+:-?[0-9]+, [0-9]+%' "$T_TMP/rate.err")" -ge 3
script -qec "$MG replay big -u $URL --admin-url $HTTP --from earliest --format raw --rate 1000 --to file:$T_TMP/tty.out" \
  /dev/null >"$T_TMP/tty.log" 2>&1 </dev/null
t_check "on a terminal, a bar redrawn in place with messages, MiB, rate, position and time left" \
  py 'import sys; d=open(sys.argv[1],"rb").read(); assert d.count(b"\r[")>=2 and b" msgs " in d and b" MiB " in d and b"msg/s at " in d and b" left " in d, d[:300]' "$T_TMP/tty.log"

# --- SIGINT in the middle (600 messages at 100/s take at least 5.8 s), then resume --------------
timeout 60 "$MG" replay big -u "$URL" --admin-url "$HTTP" --from earliest --format raw --rate 100 \
  --to file:"$T_TMP/resume.out" --json "$T_TMP/int.json" 2>"$T_TMP/int.err" &
rpid=$!
t_wait_for "$T_TMP/resume.out" 'm-' 20
sleep 0.7
kill -INT "$rpid"
t_wait_exit "$rpid" 30
RES=$(grep -oE -- '--from [^ ]+' "$T_TMP/int.err" | tail -1 | cut -d' ' -f2)
t_check "SIGINT stops cleanly: exit 130, the resume position printed ($RES)" \
  test "$T_STATUS" = 130 -a -n "$RES" -a -n "$(grep 'stopped: interrupted (SIGINT)' "$T_TMP/int.err")"
t_check "the --json summary of the interrupted run" py '
import json,sys
j=json.load(open(sys.argv[1])); assert j["stopped"]=="interrupted" and j["exitStatus"]==130 and j["resume"]==sys.argv[2] and 0<j["messages"]<600, j
' "$T_TMP/int.json" "$RES"
R big --from "$RES" --format raw --to file:"$T_TMP/resume.out" --append 2>/dev/null; rc=$?
t_check "resume: exit 0; both runs together hold every message once, in order" \
  test "$rc" = 0 -a "$(cat "$T_TMP/resume.out" | tr '\n' ' ')" = "$(seq -s ' ' 0 599 | sed 's/[0-9]*/m-&/g') "

# --- a partitioned topic ----------------------------------------------------------------------------
curl -s -m 10 -X PUT "$HTTP/admin/v2/persistent/public/default/parts/partitions" -d 3 >/dev/null
"$SEED" "$URL" parts 300 >/dev/null
timeout 60 "$MG" replay parts -u "$URL" --admin-url "$HTTP" --from earliest --rate 50 \
  --to file:"$T_TMP/p.out" 2>"$T_TMP/p.err" &
rpid=$!
t_wait_for "$T_TMP/p.out" 'seq' 20
sleep 0.5
kill -TERM "$rpid"
t_wait_exit "$rpid" 30
PRES=$(grep -oE -- '--from [^ ]+' "$T_TMP/p.err" | tail -1 | cut -d' ' -f2)
t_check "SIGTERM stops cleanly too (exit 143); a partitioned topic resumes with every partition's position ($PRES)" \
  test "$T_STATUS" = 143 -a -n "$(grep -E '^0=.+,1=.+,2=.+$' <<<"$PRES")" \
  -a -n "$(grep 'stopped: interrupted (SIGTERM)' "$T_TMP/p.err")"
R parts --from "$PRES" --to file:"$T_TMP/p.out" --append 2>/dev/null; rc=$?
t_check "every partition's messages, each once, in order within its partition (exit $rc)" py '
import json,sys
ls=[json.loads(l) for l in open(sys.argv[1])]
seqs=[int(l["properties"]["seq"]) for l in ls]
assert sorted(seqs)==list(range(300)), (len(seqs), len(set(seqs)))
parts={}
for l in ls: parts.setdefault(l["partition"],[]).append(int(l["properties"]["seq"]))
assert len(parts)>=2 and all(v==sorted(v) for v in parts.values()), parts.keys()
' "$T_TMP/p.out"
usage "a single id on a partitioned topic" 'give a message id per partition' parts --from 1:2
usage "a partition the topic does not have" 'names partition 7' parts --from 7=earliest

# --- run-time errors ---------------------------------------------------------------------------------
err=$(R nosuchtopic --from earliest --json "$T_TMP/missing.json" 2>&1); rc=$?
t_check "a missing topic: exit 1, named ('$err'), and not created" test "$rc" = 1 \
  -a -n "$(grep 'topic persistent://public/default/nosuchtopic does not exist' <<<"$err")" \
  -a "$(curl -s -m 5 -o /dev/null -w '%{http_code}' "$HTTP/admin/v2/persistent/public/default/nosuchtopic/internalStats")" = 404
t_check "its --json says so" py 'import json,sys; j=json.load(open(sys.argv[1])); assert j["stopped"]=="error" and "does not exist" in j["error"] and j["exitStatus"]==1, j' "$T_TMP/missing.json"
err=$(R plain --from earliest --to file:"$T_TMP/no/such/dir/x" 2>&1); rc=$?
t_check "a file that cannot be opened: exit 1, named ('$err')" \
  test "$rc" = 1 -a -n "$(grep "cannot open $T_TMP/no/such/dir/x" <<<"$err")"
err=$(R plain --from earliest --to file:/dev/full --json "$T_TMP/full.json" 2>&1); rc=$?
t_check "a write error (ENOSPC): exit 1, named, and how far it got ('$(head -1 <<<"$err")')" \
  test "$rc" = 1 -a -n "$(grep 'cannot write to file /dev/full: No space left on device' <<<"$err")" \
  -a -n "$(grep 'last written none' <<<"$err")"
t_check "its --json: error, nothing written" py 'import json,sys; j=json.load(open(sys.argv[1])); assert j["stopped"]=="error" and j["messages"]==0 and j["last"] is None, j' "$T_TMP/full.json"
curl -s -m 10 -X PUT "$HTTP/admin/v2/persistent/public/default/closed" >/dev/null
curl -s -m 10 -X POST "$HTTP/admin/v2/persistent/public/default/closed/terminate" >/dev/null
err=$(R plain --from earliest --to topic:closed 2>&1); rc=$?
t_check "a destination topic that refuses producers: exit 1, named ('$(head -1 <<<"$err")')" \
  test "$rc" = 1 -a -n "$(grep 'cannot create a producer on closed' <<<"$err")"

# --- an id older than retention --------------------------------------------------------------------
# A restart opens a new ledger; a subscription that consumed everything lets retention (0 by
# default) delete the old one.
"$SEED" "$URL" ret 5 >/dev/null
OLD=$(R ret --from earliest 2>/dev/null | head -1 | py 'import json,sys; print(json.loads(sys.stdin.readline())["messageId"])')
kill -TERM "$SA_PID"; t_wait_exit "$SA_PID" 30
start_standalone "$T_TMP/s2.log"
"$SEED" "$URL" ret 5 --first 5 >/dev/null
curl -s -m 10 -X PUT "$HTTP/admin/v2/persistent/public/default/ret/subscription/done" >/dev/null
curl -s -m 10 -X POST "$HTTP/admin/v2/persistent/public/default/ret/subscription/done/skip_all" >/dev/null
for i in $(seq 1 50); do
  curl -s -m 5 "$HTTP/admin/v2/persistent/public/default/ret/internalStats" | grep -q "\"ledgerId\":${OLD%%:*}," || break
  sleep 0.2
done
err=$(R ret --from "$OLD" 2>&1); rc=$?
t_check "an id retention deleted ($OLD): exit 1, said so ('$err')" \
  test "$rc" = 1 -a -n "$(grep 'is before the oldest message persistent://public/default/ret keeps' <<<"$err")"
R ret --from earliest >"$T_TMP/ret.json" 2>/dev/null
t_check "earliest then starts at what is kept" test "$(seqs "$T_TMP/ret.json")" = "5 6 7 8 9"

kill -TERM "$SA_PID"
t_wait_exit "$SA_PID" 30
t_check "standalone stops with status 0 (got $T_STATUS)" test "$T_STATUS" = 0
t_end
