#!/usr/bin/env bash
# `magnetar admin` against a real standalone: every topics, brokers and clusters command, in
# JSON and as a table, checked for what it must show (the backlog after producing, skipping and
# resetting; the peeked payloads and ids; the producer of a live `client produce`; the
# standalone's own address), the errors (a missing topic, bad flags, an unreachable broker,
# offload without tiered storage) and --help of every group and command. The tenants and
# namespaces commands run when the broker serves /admin/v2/tenants; otherwise they are reported
# as skipped.
. "$(dirname "$0")/lib.sh"
MG=${1:?usage: test_admin_cli.sh /path/to/magnetar}

"$MG" standalone --chat-gateway off --chat-job off --kafka off --data-dir "$T_TMP/data" \
  --bind-address 127.0.0.1 --broker-port 0 --bookie-port 0 --http-port 0 $T_SA_ARGS \
  >"$T_TMP/s.log" 2>&1 &
SA=$!; T_PIDS+=("$SA")
if t_wait_for "$T_TMP/s.log" 'ready' 30; then t_ok "standalone ready"; else
  t_fail "standalone ready"; cat "$T_TMP/s.log"; t_end; exit 1; fi
URL=$(grep -m1 -oE 'pulsar://127\.0\.0\.1:[0-9]+' "$T_TMP/s.log")
HTTP=$(grep -m1 -oE 'http://127\.0\.0\.1:[0-9]+' "$T_TMP/s.log")

OUT=$T_TMP/out
ERR=$T_TMP/err
# adm ARGS...: runs `magnetar admin --admin-url HTTP ARGS` (bounded), stdout in $OUT, stderr in
# $ERR, exit status in RC.
adm() {
  timeout 20 "$MG" admin --admin-url "$HTTP" "$@" >"$OUT" 2>"$ERR"
  RC=$?
}
# jq_ok DESCRIPTION JQ_FILTER: the last command succeeded and the filter, over the JSON in $OUT,
# is true.
jq_ok() {
  local what=$1 filter=$2
  if [ "$RC" = 0 ] && jq -e "$filter" "$OUT" >/dev/null 2>&1; then t_ok "$what"
  else t_fail "$what: exit $RC, expected $filter in: $(head -c 600 "$OUT") $(cat "$ERR")"; fi
}
# out_has DESCRIPTION EXTENDED_REGEX: the last command succeeded and printed a matching line.
out_has() {
  if [ "$RC" = 0 ] && grep -qE -- "$2" "$OUT"; then t_ok "$1"
  else t_fail "$1: exit $RC, no line matching '$2' in: $(cat "$OUT") $(cat "$ERR")"; fi
}
# fails_with DESCRIPTION STATUS EXTENDED_REGEX: the last command exited STATUS with a matching
# line on stderr.
fails_with() {
  if [ "$RC" = "$2" ] && grep -qE -- "$3" "$ERR"; then t_ok "$1"
  else t_fail "$1: expected exit $2 and '$3', got exit $RC: $(cat "$ERR")"; fi
}
produce() { timeout 30 "$MG" client produce -u "$URL" --log-level warn "$@" >/dev/null 2>&1; }
T=persistent://public/default/adm-t

# --- help of every group and command
for g in tenants namespaces topics brokers clusters; do
  adm "$g" --help
  out_has "admin $g --help lists its commands" '^Commands:'
  for v in $(sed -n '/^Commands:/,/^$/p' "$OUT" | awk 'NF > 1 {print $1}'); do
    adm "$g" "$v" --help
    out_has "admin $g $v --help" "^Usage: magnetar admin $g $v "
  done
done
adm --help
out_has "admin --help names the REST groups" '^  topics '

# --- topics: create, list, subscribe, produce, stats
adm topics create "$T"
t_check "topics create" test "$RC" = 0
adm topics create "$T"
fails_with "topics create twice: 409 and the reason" 1 'HTTP 409: This topic already exists'
adm topics list public/default
jq_ok "topics list (json) names the topic" "any(.[]; . == \"$T\")"
adm --output table topics list public/default
out_has "topics list (table, --output before the group)" "^persistent://public/default/adm-t$"
adm topics create-subscription adm-t -s s1 --messageId earliest
t_check "topics create-subscription at earliest (short topic name)" test "$RC" = 0
t_check "client produce 6 messages" produce "$T" -m m0,m1,m2,m3,m4,m5 -p k1=v1
adm topics stats "$T"
jq_ok "stats: 6 messages in, backlog 6" \
  '.msgInCounter == 6 and .subscriptions.s1.msgBacklog == 6 and .storageSize > 0'
adm topics stats "$T" --output table
out_has "stats (table): the subscription's row with backlog 6" '^s1 +Exclusive +6 '
adm topics stats-internal "$T"
jq_ok "stats-internal: 6 entries, cursor s1" \
  '.numberOfEntries == 6 and (.cursors.s1.markDeletePosition | endswith(":-1"))'
LEDGER=$(jq -r '.lastConfirmedEntry | split(":")[0]' "$OUT")
adm topics stats-internal "$T" --output table
out_has "stats-internal (table): the cursor's row" "^s1 +$LEDGER:-1 +$LEDGER:0 "
adm topics subscriptions "$T"
jq_ok "subscriptions lists s1" '. == ["s1"]'

# --- a live producer shows in stats
timeout 60 "$MG" client produce -u "$URL" --log-level warn adm-live -m p -n 1000 -r 5 >/dev/null 2>&1 &
LIVE=$!; T_PIDS+=("$LIVE")
for ((i = 0; i < 100; i++)); do
  adm topics stats adm-live
  if [ "$RC" = 0 ] && grep -q '"producerName"' "$OUT"; then break; fi
  sleep 0.1
done
jq_ok "stats: the live producer is listed (publishers: 1)" "(.publishers | length) == 1"
adm topics stats adm-live --output table
out_has "stats (table): the producer's row" '^PRODUCER +ADDRESS'
kill "$LIVE" 2>/dev/null; wait "$LIVE" 2>/dev/null
adm topics delete adm-live --force
t_check "topics delete --force of the live topic" test "$RC" = 0

# --- peek
adm topics peek-messages "$T" -s s1 -n 3
jq_ok "peek-messages: the first 3 payloads, ids and properties" \
  "[.[].payload] == [\"m0\", \"m1\", \"m2\"] and .[0].messageId == \"$LEDGER:0\" and .[2].messageId == \"$LEDGER:2\" and .[0].properties == {\"k1\": \"v1\"}"
adm topics peek-messages "$T" -s s1 -n 50 --output table
out_has "peek-messages (table): stops at the last entry" "^$LEDGER:5 .* m5$"
t_check "peek-messages (table): 6 rows and the header" test "$(wc -l <"$OUT")" = 7
adm topics stats "$T"
jq_ok "peek moved nothing (backlog 6)" '.subscriptions.s1.msgBacklog == 6'

# --- peek of a ZSTD batch: the broker answers the entry whole, the command splits it
adm topics create adm-b
adm topics create-subscription adm-b -s s -m earliest
timeout 30 "$MG" perf produce -u "$URL" adm-b -s 16 -r 0 -b 10000 --batch-max-messages 5 -z ZSTD -m 5 --log-level warn \
  >"$T_TMP/perf.log" 2>&1
t_check "perf produce: 5 messages in one ZSTD batch" test $? = 0
adm topics peek-messages adm-b -s s
jq_ok "peek-messages of a batch: its 5 messages, L:E:index ids, 16-byte payloads" \
  'length == 5 and [.[].batchIndex] == [0, 1, 2, 3, 4] and (.[4].messageId | endswith(":0:4")) and (.[0].payload | length) == 16'
hdr=$(curl -s -m 10 -D - -o "$T_TMP/batch.bin" "$HTTP/admin/v2/persistent/public/default/adm-b/subscription/s/position/1")
if grep -qi '^X-Pulsar-num-batch-message: 5' <<<"$hdr" && grep -qi '^X-Pulsar-Message-ID: [0-9]*:0' <<<"$hdr" &&
  grep -qi '^X-Pulsar-Broker-Entry-METADATA-index: 4' <<<"$hdr" &&
  grep -qi '^Content-Type: application/octet-stream' <<<"$hdr"; then
  t_ok "peek route: Pulsar's headers for a batch entry"
else t_fail "peek route: Pulsar's headers for a batch entry: $hdr"; fi
out=$(curl -s -m 10 -w ' %{http_code}' "$HTTP/admin/v2/persistent/public/default/adm-b/subscription/s/position/0")
t_check "peek route: position 0 refused with 400 ($out)" grep -q 'between 1 and .* 400$' <<<"$out"
out=$(curl -s -m 10 -w ' %{http_code}' -X POST -d '{"ledgerId":"x"}' \
  "$HTTP/admin/v2/persistent/public/default/adm-b/subscription/s/resetcursor")
t_check "resetcursor route: a bad message id refused with 400 ($out)" grep -q 'message id.* 400$' <<<"$out"
adm topics delete adm-b --force

# --- skip, reset-cursor by id and by time, skip-all
adm topics skip "$T" -s s1 -n 2
adm topics stats "$T"
jq_ok "skip -n 2: backlog 4" '.subscriptions.s1.msgBacklog == 4'
adm topics peek-messages "$T" -s s1
jq_ok "after skip, peek shows m2" '.[0].payload == "m2"'
adm topics reset-cursor "$T" -s s1 --messageId "$LEDGER:1"
adm topics stats "$T"
jq_ok "reset-cursor --messageId L:1: backlog 5" '.subscriptions.s1.msgBacklog == 5'
adm topics peek-messages "$T" -s s1
jq_ok "after the reset by id, peek shows m1 at L:1" \
  ".[0].payload == \"m1\" and .[0].messageId == \"$LEDGER:1\""
adm topics reset-cursor "$T" -s s1 --messageId "$LEDGER:99"
fails_with "reset-cursor to an id the topic does not hold: 412" 1 'HTTP 412: Unable to find position'
adm topics create-subscription "$T" -s far -m 99999:0
fails_with "create-subscription at an id the topic does not hold: 412" 1 'HTTP 412'
adm topics skip-all "$T" -s s1
adm topics stats "$T"
jq_ok "skip-all: backlog 0" '.subscriptions.s1.msgBacklog == 0'
adm topics reset-cursor "$T" -s s1 --time 10m
adm topics stats "$T"
jq_ok "reset-cursor --time 10m: backlog 6 again" '.subscriptions.s1.msgBacklog == 6'
adm topics create-subscription "$T" -s s2 -m "$LEDGER:3"
adm topics stats "$T"
jq_ok "create-subscription at L:3: backlog 3" '.subscriptions.s2.msgBacklog == 3'
adm topics create-subscription "$T" -s s3
adm topics stats "$T"
jq_ok "create-subscription at latest (default): backlog 0" \
  '.subscriptions.s3.msgBacklog == 0'
adm topics subscriptions "$T" --output table
out_has "subscriptions (table) lists s2" '^s2$'
adm topics unsubscribe "$T" -s s3
adm topics subscriptions "$T"
jq_ok "unsubscribe removed s3" 'sort == ["s1", "s2"]'

# --- partitioned topics
adm topics create-partitioned-topic adm-p --partitions 3
t_check "create-partitioned-topic -p 3" test "$RC" = 0
adm topics create-partitioned-topic adm-p -p 3
fails_with "create-partitioned-topic twice: 409" 1 'HTTP 409'
adm topics delete-partitioned-topic adm-p
t_check "delete-partitioned-topic" test "$RC" = 0

# --- terminate
adm topics terminate "$T"
jq_ok "terminate answers the last message id" ".ledgerId == $LEDGER and .entryId == 5"
if produce "$T" -m late; then t_fail "a produce to the terminated topic fails"
else t_ok "a produce to the terminated topic fails"; fi
adm topics stats-internal "$T"
jq_ok "stats-internal: state Terminated" '.state == "Terminated"'

# --- offload: no tiered storage in this broker, its answer is reported
adm topics offload "$T" --size-threshold 0
fails_with "offload: the broker's 404 and why" 1 'HTTP 40[45].*'
grep -q 'tiered storage' "$ERR" && t_ok "offload: the hint names tiered storage" ||
  t_fail "offload: the hint names tiered storage: $(cat "$ERR")"
adm topics offload-status "$T"
fails_with "offload-status: the broker's 404" 1 'HTTP 40[45]'

# --- delete, then errors
adm topics delete "$T" --force
t_check "topics delete" test "$RC" = 0
adm topics stats "$T"
fails_with "stats of a missing topic: exit 1, 404 and the reason" 1 'HTTP 404: Topic not found'
adm topics peek-messages nosuch -s s1
fails_with "peek of a missing topic: exit 1" 1 'HTTP 404: Topic not found'
adm topics stats "$T" --bogus
fails_with "an unknown flag: exit 2" 2 "unknown option '--bogus'"
adm topics stats
fails_with "a missing topic argument: exit 2" 2 'too few arguments'
adm topics skip "$T" -s s1
fails_with "skip without --count: exit 2" 2 'count'
adm topics reset-cursor "$T" -s s1
fails_with "reset-cursor without --time or --messageId: exit 2" 2 'exactly one of'
adm topics create-subscription "$T" -s x -m 1-2
fails_with "a bad message id: exit 2" 2 'not a message id'
adm topics stats non-persistent://public/default/x
fails_with "a non-persistent topic: exit 2" 2 'only persistent topics'
adm topics nosuch
fails_with "an unknown command: exit 2" 2 "unknown command 'nosuch'"
adm namespaces set-retention public/default --size 10X --time 3h
fails_with "set-retention --size 10X: exit 2" 2 "'10X' is not a size"
adm namespaces set-backlog-quota public/default --limit 2G --policy nope
fails_with "set-backlog-quota --policy nope: exit 2" 2 'policy'
timeout 20 "$MG" admin --admin-url http://127.0.0.1:1 topics stats "$T" >"$OUT" 2>"$ERR"; RC=$?
fails_with "an unreachable --admin-url: exit 1, said so" 1 'cannot reach the broker.*127\.0\.0\.1:1'

# --- brokers and clusters
HOSTPORT=${HTTP#http://}
adm brokers list
jq_ok "brokers list: the standalone's address" ". == [\"$HOSTPORT\"]"
adm brokers list standalone --output table
out_has "brokers list standalone (table)" "^$HOSTPORT$"
adm brokers list nosuch
fails_with "brokers list of another cluster: exit 1, 404" 1 'HTTP 404: Cluster nosuch does not exist'
adm brokers healthcheck
out_has "brokers healthcheck: ok" '^ok$'
adm brokers health --output table
out_has "brokers health (table)" "^$HTTP +ok$"
adm clusters list
jq_ok "clusters list: standalone" '. == ["standalone"]'

# --- tenants and namespaces (they need the broker's /admin/v2/tenants routes)
code=$(curl -s -m 10 -o /dev/null -w '%{http_code}' "$HTTP/admin/v2/tenants")
if [ "$code" = 404 ]; then
  echo "skip - tenants and namespaces: this broker does not serve /admin/v2/tenants (404)"
else
  adm tenants list
  jq_ok "tenants list has public" 'any(.[]; . == "public")'
  adm tenants create adm-acme --admin-roles r1,r2 --allowed-clusters standalone
  t_check "tenants create" test "$RC" = 0
  adm tenants create adm-acme
  fails_with "tenants create twice: 409" 1 'HTTP 409'
  adm tenants get adm-acme
  jq_ok "tenants get: roles and clusters" \
    '(.adminRoles | sort) == ["r1", "r2"] and .allowedClusters == ["standalone"]'
  adm tenants get adm-acme --output table
  out_has "tenants get (table)" '^adminRoles +r1,r2$'
  adm tenants list --output table
  out_has "tenants list (table)" '^adm-acme$'
  adm namespaces create nosuch-tenant/ns
  fails_with "namespaces create in a missing tenant: 404" 1 'HTTP 404'
  adm namespaces create adm-acme/ns1
  t_check "namespaces create" test "$RC" = 0
  adm namespaces list adm-acme
  jq_ok "namespaces list" '. == ["adm-acme/ns1"]'
  adm namespaces list adm-acme --output table
  out_has "namespaces list (table)" '^adm-acme/ns1$'
  NS=adm-acme/ns1
  adm namespaces set-retention "$NS" --size 10G --time 3h
  t_check "set-retention 10G 3h" test "$RC" = 0
  adm namespaces get-retention "$NS"
  jq_ok "get-retention: 10240 MB, 180 minutes" \
    '.retentionSizeInMB == 10240 and .retentionTimeInMinutes == 180'
  adm namespaces set-retention "$NS" -s -1 -t -1
  adm namespaces get-retention "$NS" --output table
  out_has "set-retention -1 -1, get-retention (table)" '^retentionSizeInMB +-1$'
  adm namespaces policies "$NS"
  jq_ok "policies: retention_policies" \
    '.retention_policies.retentionSizeInMB == -1 and .deleted == false'
  adm namespaces remove-retention "$NS"
  adm namespaces policies "$NS"
  jq_ok "remove-retention: policies without retention" '.retention_policies == null'
  adm namespaces set-message-ttl "$NS" -ttl 3600
  t_check "set-message-ttl -ttl 3600" test "$RC" = 0
  adm namespaces get-message-ttl "$NS"
  jq_ok "get-message-ttl: 3600" '. == 3600'
  adm namespaces set-message-ttl "$NS" --messageTTL 2h
  adm namespaces policies "$NS"
  jq_ok "set-message-ttl --messageTTL 2h: 7200 in the policies" '.message_ttl_in_seconds == 7200'
  adm namespaces remove-message-ttl "$NS"
  adm namespaces policies "$NS"
  jq_ok "remove-message-ttl" '.message_ttl_in_seconds == null'
  adm namespaces set-backlog-quota "$NS" --limit 2G --policy producer_request_hold
  t_check "set-backlog-quota --limit 2G" test "$RC" = 0
  adm namespaces set-backlog-quota "$NS" -lt 3h -p consumer_backlog_eviction -t message_age
  t_check "set-backlog-quota -lt 3h --type message_age" test "$RC" = 0
  adm namespaces get-backlog-quotas "$NS"
  jq_ok "get-backlog-quotas: both" \
    '.destination_storage.limitSize == 2147483648 and .destination_storage.policy == "producer_request_hold" and .message_age.limitTime == 10800'
  adm namespaces get-backlog-quotas "$NS" --output table
  out_has "get-backlog-quotas (table)" '^destination_storage\.limitSize +2147483648$'
  adm namespaces remove-backlog-quota "$NS"
  adm namespaces get-backlog-quotas "$NS"
  jq_ok "remove-backlog-quota: destination_storage gone" \
    '(has("destination_storage") | not) and has("message_age")'
  adm topics create "persistent://$NS/t"
  adm namespaces delete "$NS"
  fails_with "namespaces delete with a topic: 409" 1 'HTTP 409'
  adm namespaces delete "$NS" --force
  t_check "namespaces delete --force" test "$RC" = 0
  adm tenants delete adm-acme
  t_check "tenants delete" test "$RC" = 0
  adm tenants get adm-acme
  fails_with "tenants get of a deleted tenant: 404" 1 'HTTP 404'
fi

kill -TERM "$SA"
t_wait_exit "$SA" 20 && t_ok "standalone stopped" || t_fail "standalone stopped"
t_end
