#!/usr/bin/env bash
# The admin API refuses what cannot work, with a status and a reason that say what was wrong:
# tenant, namespace and topic names by Pulsar's named-entity rule plus "." / ".." (412), names
# too long (412), numbers that are not numbers or do not fit int64_t (400), partition counts
# past BR_ADMIN_PARTITIONS_MAX (412); and the valid requests next to them still work, up to a
# topic with the largest partition count, which a producer then uses.
. "$(dirname "$0")/lib.sh"
MG=${1:?usage: test_admin_validation.sh /path/to/magnetar}

"$MG" standalone --chat-gateway off --chat-job off --kafka off --data-dir "$T_TMP/data" --bind-address 127.0.0.1 --broker-port 0 \
  --bookie-port 0 --http-port 0 $T_SA_ARGS >"$T_TMP/s.log" 2>&1 &
SA=$!; T_PIDS+=("$SA")
if t_wait_for "$T_TMP/s.log" 'ready' 30; then t_ok "standalone ready"; else
  t_fail "standalone ready"; cat "$T_TMP/s.log"; t_end; exit 1; fi
URL=$(grep -m1 -oE 'pulsar://127\.0\.0\.1:[0-9]+' "$T_TMP/s.log")
HTTP=$(grep -m1 -oE 'http://127\.0\.0\.1:[0-9]+' "$T_TMP/s.log")
BASE=$HTTP/admin/v2/persistent

# req METHOD PATH [BODY]: sets CODE and BODY (--path-as-is: "." and ".." reach the server).
req() {
  local out
  if [ $# -ge 3 ]; then
    out=$(curl -s --path-as-is -m 10 -X "$1" -H 'Content-Type: application/json' -d "$3" \
      -w '\n%{http_code}' "$BASE/$2")
  else
    out=$(curl -s --path-as-is -m 10 -X "$1" -w '\n%{http_code}' "$BASE/$2")
  fi
  CODE=${out##*$'\n'}
  BODY=${out%$'\n'*}
}

# expect DESCRIPTION STATUS REASON_SUBSTRING METHOD PATH [BODY]
expect() {
  local what=$1 status=$2 reason=$3; shift 3
  req "$@"
  if [ "$CODE" = "$status" ] && grep -qF -- "$reason" <<<"$BODY"; then t_ok "$what ($CODE)"
  else t_fail "$what: expected $status with '$reason', got $CODE '$BODY'"; fi
}

long65=$(printf 'a%.0s' $(seq 65))
long256=$(printf 't%.0s' $(seq 256))

# --- names
expect "tenant '..x' refused" 412 "start with '..'" PUT "..x/default/t"
expect "namespace '..y' refused" 412 "start with '..'" PUT "public/..y/t"
expect "tenant '.' refused" 412 "may not be '.'" PUT "./default/t"
expect "topic '..' refused" 412 "may not be '.'" PUT "public/default/.."
expect "tenant 'a/b' (%2F) refused" 412 "invalid character '/'" PUT "a%2Fb/default/t"
expect "topic 'a/b' (%2F) refused" 412 "invalid character '/'" PUT "public/default/a%2Fb"
expect "tenant with a space refused" 412 "invalid character ' '" PUT "a%20b/default/t"
expect "an empty tenant matches no route" 404 "" PUT "/default/t"
expect "a 65-byte tenant refused" 412 "longer than 64 bytes" PUT "$long65/default/t"
expect "a 256-byte topic refused" 412 "longer than 255 bytes" PUT "public/default/$long256"
out=$(curl -s -m 5 "$BASE/public/default")
t_check "the refused topic names created nothing in public/default ($out)" test "$out" = "[]"

# --- valid names still work: Pulsar's whole character set, a 64-byte tenant
long64=$(printf 'a%.0s' $(seq 64))
expect "topic with -=:._ and digits created" 204 "" PUT "public/default/a-b=c:d.e_f9"
# (a topic's namespace must exist: tenant and namespace created first)
t_check "a 64-byte tenant created" test "$(curl -s -m 10 -o /dev/null -w '%{http_code}' -X PUT \
  "$HTTP/admin/v2/tenants/$long64")" = 204
t_check "its namespace created" test "$(curl -s -m 10 -o /dev/null -w '%{http_code}' -X PUT \
  "$HTTP/admin/v2/namespaces/$long64/default")" = 204
expect "a topic of a 64-byte tenant accepted" 204 "" PUT "$long64/default/t"
expect "a name starting with one dot accepted" 204 "" PUT "public/default/.hidden"
expect "subscription created" 204 "" PUT "public/default/a-b=c:d.e_f9/subscription/s"

# --- numbers
S="public/default/a-b=c:d.e_f9/subscription/s"
expect "skip 3 accepted" 204 "" POST "$S/skip/3"
expect "skip 2^63-1 accepted" 204 "" POST "$S/skip/9223372036854775807"
expect "skip 2^64 refused" 400 "out of range: the largest is 9223372036854775807" \
  POST "$S/skip/18446744073709551616"
expect "skip 2^63 refused" 400 "out of range" POST "$S/skip/9223372036854775808"
expect "skip -1 refused" 400 "non-negative decimal integer" POST "$S/skip/-1"
expect "skip +3 refused" 400 "non-negative decimal integer" POST "$S/skip/+3"
expect "skip abc refused" 400 "non-negative decimal integer, not 'abc'" POST "$S/skip/abc"
expect "resetcursor past int64 refused" 400 "out of range" \
  POST "$S/resetcursor/99999999999999999999999"
expect "resetcursor 0 accepted" 204 "" POST "$S/resetcursor/0"

# --- partitions
expect "65,536 partitions refused" 412 "more than the limit of 1024 partitions" \
  PUT "public/default/p65536/partitions" 65536
expect "1,025 partitions refused" 412 "limit of 1024" PUT "public/default/p1025/partitions" 1025
expect "2^64 partitions refused" 400 "out of range" \
  PUT "public/default/p2/partitions" 18446744073709551616
expect "0 partitions refused" 412 "more than 0" PUT "public/default/p0/partitions" 0
expect "-3 partitions refused" 412 "more than 0" PUT "public/default/p0/partitions" -3
expect "a body that is no number refused" 400 "decimal integer" \
  PUT "public/default/p0/partitions" '"four"'
expect "4 partitions created" 204 "" PUT "public/default/p4/partitions" 4
req GET "public/default/p4/partitions"
t_check "4 partitions read back ($BODY)" test "$BODY" = '{"partitions":4}'
expect "1,024 partitions created" 204 "" PUT "public/default/p1024/partitions" 1024
req GET "public/default/partitioned"
t_check "the refused counts left no partitioned topic ($BODY)" \
  test -z "$(grep -oE 'p(65536|1025|2|0)"' <<<"$BODY")"
out=$(timeout 90 "$MG" client produce p1024 -u "$URL" -m hi -n 10 2>"$T_TMP/p.err"); rc=$?
t_check "a producer attaches to every one of 1,024 partitions and sends ($rc: $out)" \
  test "$rc" = 0 -a "$out" = "10 messages successfully produced"

kill -TERM "$SA"; t_wait_exit "$SA" 20
t_check "the standalone stops cleanly (status $T_STATUS)" test "$T_STATUS" = 0
if [ "$T_FAIL" != 0 ]; then tail -30 "$T_TMP/s.log"; cat "$T_TMP/p.err"; fi
t_end
