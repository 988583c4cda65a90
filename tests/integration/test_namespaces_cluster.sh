#!/usr/bin/env bash
# Tenants and namespaces in a cluster: one `magnetar bookie` and two `magnetar broker`
# processes (A and B) sharing a real ZooKeeper, on free loopback ports. Both brokers find
# public/default at start (one created it, the other found it there), and the namespaces of
# topics written before namespaces existed (seeded with ZooKeeper's own client) get their nodes. A namespace created and
# changed through A is read back through B at once (the metadata), and B's cache of the
# namespace's policies, read when B first served the namespace, follows each change within a
# bounded wait: B's watch fired. GET .../{topic}/retention?applied=true answers from that cache
# (br_ns_policies_find) without reading the metadata. A forced delete through A makes B drop the
# namespace too. Every wait is bounded.
# Usage: test_namespaces_cluster.sh /path/to/magnetar
source "$(dirname "$0")/lib.sh"
MG=${1:?usage: test_namespaces_cluster.sh /path/to/magnetar}

if ! t_zk_start; then t_fail "ZooKeeper server starts"; t_end; exit 1; fi
MD=(--metadata-url "zk:127.0.0.1:$ZK_PORT")

# Metadata from before tenants and namespaces: topics of legacy/ns (a managed ledger and a
# partitioned topic), without their tenant and namespace nodes. ZooKeeper's own client writes it.
zk_create() { # PATH...: creates each node, empty, in one client session
  local cmds=() p
  for p in "$@"; do cmds+=("create $p ''"); done
  printf '%s\n' "${cmds[@]}" quit | timeout 60 java -cp "/etc/zookeeper/conf:/usr/share/java/*" \
    org.apache.zookeeper.ZooKeeperMain -server "127.0.0.1:$ZK_PORT" >"$T_TMP/zkcli.log" 2>&1
}
zk_create /managed-ledgers /managed-ledgers/legacy /managed-ledgers/legacy/ns \
  /managed-ledgers/legacy/ns/persistent /managed-ledgers/legacy/ns/persistent/old \
  /managed-ledgers/legacy/empty /admin /admin/partitioned-topics /admin/partitioned-topics/older \
  /admin/partitioned-topics/older/ns /admin/partitioned-topics/older/ns/persistent \
  /admin/partitioned-topics/older/ns/persistent/p
t_check "ZooKeeper holds topics of legacy/ns and older/ns (as written before namespaces)" \
  test "$("$MG" admin metadata ls /managed-ledgers/legacy/ns/persistent "${MD[@]}")" = old

"$MG" bookie --port 0 --http-port 0 --bind-address 127.0.0.1 "${MD[@]}" \
  --journal-dir "$T_TMP/bk/journal" --ledger-dirs "$T_TMP/bk/ledgers" >"$T_TMP/bookie.log" 2>&1 &
T_PIDS+=("$!")
if t_wait_for "$T_TMP/bookie.log" 'ready' 30; then t_ok "bookie ready"; else
  t_fail "bookie ready"; cat "$T_TMP/bookie.log"; t_end; exit 1; fi

start_broker() { # NAME: starts a broker; its admin URL in HTTP_<NAME>
  "$MG" broker "${MD[@]}" --port 0 --http-port 0 --kafka off --bind-address 127.0.0.1 \
    --ensemble-size 1 --write-quorum 1 --ack-quorum 1 >"$T_TMP/$1.log" 2>&1 &
  T_PIDS+=("$!")
  if t_wait_for "$T_TMP/$1.log" 'ready' 30; then t_ok "broker $1 ready"; else
    t_fail "broker $1 ready"; cat "$T_TMP/$1.log"; t_end; exit 1; fi
  eval "HTTP_$1=$(grep -oE 'http://127\.0\.0\.1:[0-9]+' "$T_TMP/$1.log" | head -1)"
}
start_broker A
start_broker B

# req METHOD URL [BODY]: sets CODE and BODY.
req() {
  local out
  if [ $# -ge 3 ]; then
    out=$(curl -s -m 10 -X "$1" -H 'Content-Type: application/json' -d "$3" -w '\n%{http_code}' "$2")
  else
    out=$(curl -s -m 10 -X "$1" -w '\n%{http_code}' "$2")
  fi
  CODE=${out##*$'\n'}
  BODY=${out%$'\n'*}
}
# expect DESCRIPTION STATUS BODY_SUBSTRING METHOD URL [BODY]
expect() {
  local what=$1 status=$2 want=$3; shift 3
  req "$@"
  if [ "$CODE" = "$status" ] && grep -qF -- "$want" <<<"$BODY"; then t_ok "$what ($CODE)"
  else t_fail "$what: expected $status with '$want', got $CODE '$BODY'"; fi
}
# eventually DESCRIPTION STATUS BODY_SUBSTRING URL: polls GET URL for up to 10 s.
eventually() {
  local what=$1 status=$2 want=$3 url=$4 i
  for ((i = 0; i < 100; i++)); do
    req GET "$url"
    if [ "$CODE" = "$status" ] && grep -qF -- "$want" <<<"$BODY"; then t_ok "$what ($CODE)"; return; fi
    sleep 0.1
  done
  t_fail "$what: expected $status with '$want' within 10 s, last $CODE '$BODY'"
}

expect "public/default seen through A" 200 '"public/default"' GET "$HTTP_A/admin/v2/namespaces/public"
expect "public/default seen through B" 200 '"public/default"' GET "$HTTP_B/admin/v2/namespaces/public"
expect "the tenants of the existing topics are there too" 200 '["legacy","older","public"]' \
  GET "$HTTP_B/admin/v2/tenants"
expect "legacy/ns exists for its topic" 200 '["legacy/ns"]' GET "$HTTP_A/admin/v2/namespaces/legacy"
expect "older/ns exists for its partitioned topic" 200 '["older/ns"]' \
  GET "$HTTP_A/admin/v2/namespaces/older"
expect "legacy/ns has its policies" 200 '"deleted":false' GET "$HTTP_B/admin/v2/namespaces/legacy/ns"
expect "its topic is listed" 200 '["persistent://legacy/ns/old"]' \
  GET "$HTTP_B/admin/v2/persistent/legacy/ns"
expect "legacy/empty (no topics) is not a namespace" 404 "Namespace does not exist" \
  GET "$HTTP_B/admin/v2/namespaces/legacy/empty"

expect "tenant created through A" 204 "" PUT "$HTTP_A/admin/v2/tenants/acme"
expect "namespace created through A" 204 "" PUT "$HTTP_A/admin/v2/namespaces/acme/orders"
expect "B lists it" 200 '["acme/orders"]' GET "$HTTP_B/admin/v2/namespaces/acme"
expect "B refuses a duplicate" 409 "Namespace already exists" PUT "$HTTP_B/admin/v2/namespaces/acme/orders"
expect "a topic created through A" 204 "" PUT "$HTTP_A/admin/v2/persistent/acme/orders/t1"

# B reads the namespace into its cache (and watches it) when it first serves it.
APPLIED_B="$HTTP_B/admin/v2/persistent/acme/orders/t1"
expect "B applies no namespace retention yet" 200 '"retentionTimeInMinutes"' GET "$APPLIED_B/retention?applied=true"
before=$BODY
expect "B applies no TTL yet" 200 '0' GET "$APPLIED_B/messageTTL?applied=true"
t_check "the applied TTL is 0 ($BODY)" test "$BODY" = 0

# Changes through A.
expect "retention set through A" 204 "" POST "$HTTP_A/admin/v2/namespaces/acme/orders/retention" \
  '{"retentionTimeInMinutes":77,"retentionSizeInMB":88}'
expect "B reads the retention at once" 200 '{"retentionTimeInMinutes":77,"retentionSizeInMB":88}' \
  GET "$HTTP_B/admin/v2/namespaces/acme/orders/retention"
t_check "the applied retention was not that before ($before)" test "$before" != \
  '{"retentionTimeInMinutes":77,"retentionSizeInMB":88}'
eventually "B's cache follows: the applied retention" 200 \
  '{"retentionTimeInMinutes":77,"retentionSizeInMB":88}' "$APPLIED_B/retention?applied=true"
expect "TTL set through A" 204 "" POST "$HTTP_A/admin/v2/namespaces/acme/orders/messageTTL" 120
eventually "B's cache follows: the applied TTL" 200 '120' "$APPLIED_B/messageTTL?applied=true"
expect "backlog quota set through A" 204 "" \
  POST "$HTTP_A/admin/v2/namespaces/acme/orders/backlogQuota?backlogQuotaType=destination_storage" \
  '{"limitSize":4096,"policy":"producer_exception"}'
eventually "B's cache follows: the applied backlog quota" 200 \
  '"destination_storage":{"limit":4096,"limitSize":4096,"limitTime":-1,"policy":"producer_exception"}' \
  "$APPLIED_B/backlogQuotaMap?applied=true"
expect "retention removed through B" 204 "" DELETE "$HTTP_B/admin/v2/namespaces/acme/orders/retention"
expect "A reads it removed" 204 "" GET "$HTTP_A/admin/v2/namespaces/acme/orders/retention"
eventually "B's cache follows the removal: the broker's default applies again" 200 "$before" \
  "$APPLIED_B/retention?applied=true"

# A forced delete through A: B's watch sees the namespace go.
expect "namespace with a topic not deleted without force" 409 "Cannot delete non empty namespace" \
  DELETE "$HTTP_B/admin/v2/namespaces/acme/orders"
expect "forced delete through A" 204 "" DELETE "$HTTP_A/admin/v2/namespaces/acme/orders?force=true"
eventually "B's cache drops it: its topics are refused" 404 "Namespace does not exist" \
  "$APPLIED_B/retention?applied=true"
expect "B finds no topic there" 404 "Namespace does not exist" PUT "$HTTP_B/admin/v2/persistent/acme/orders/t1"
expect "the tenant goes through B" 204 "" DELETE "$HTTP_B/admin/v2/tenants/acme"
expect "A lists the others" 200 '["legacy","older","public"]' GET "$HTTP_A/admin/v2/tenants"

if [ "$T_FAIL" != 0 ]; then tail -20 "$T_TMP/A.log" "$T_TMP/B.log"; fi
t_end
