#!/usr/bin/env bash
# A full disk under a real standalone (docs/bookie.md "Read-only state"): the data directory is a
# small ext4 file system mounted from a loop image, mostly taken by a filler file. Producing
# until it is full must give producers NotAllowedError with the reason at once (never their send
# timeout), no ledger churn, a failing health check and bookie_server_status 0; after the filler
# is deleted, PUT /api/v1/bookie/state/readonly {"readOnly":false} brings writes back, and after a
# restart every acknowledged message is readable. Also: a file system too small for the journal's
# preallocation gives a start-up error naming --journal-segment-mb.
# Needs root and loop devices: skipped (exit 0, with the reason) otherwise.
MG=$1
. "$(dirname "$0")/lib.sh"

MNT=$T_TMP/mnt
SMALL=$T_TMP/small
MOUNTED=()
fd_cleanup() {
  local p m
  for p in "${T_PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  for m in "${MOUNTED[@]}"; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; done
  t_cleanup
}
trap fd_cleanup EXIT

# fd_mount IMAGE SIZE DIR: a fresh ext4 file system of SIZE mounted on DIR.
fd_mount() {
  truncate -s "$2" "$1" && mkfs.ext4 -q -F "$1" && mkdir -p "$3" &&
    timeout 20 mount -o loop "$1" "$3" && MOUNTED+=("$3")
}

if [ "$(id -u)" != 0 ]; then echo "SKIP: needs root to mount a loop file system"; exit 0; fi
if ! command -v mkfs.ext4 >/dev/null || ! fd_mount "$T_TMP/probe.img" 16M "$T_TMP/probe"; then
  echo "SKIP: cannot mount a loop ext4 file system here"; exit 0
fi
umount "$T_TMP/probe"; MOUNTED=()

# --- start-up on a file system smaller than the journal's 256 MiB preallocation ----------------
fd_mount "$T_TMP/small.img" 48M "$SMALL" || { t_fail "mount a 48 MiB file system"; t_end; exit 1; }
timeout 30 "$MG" standalone --chat-gateway off --chat-job off --kafka off --data-dir "$SMALL/data" --bind-address 127.0.0.1 --broker-port 0 \
  --http-port 0 --bookie-port 0 $T_SA_ARGS >"$T_TMP/small.log" 2>&1; rc=$?
t_check "standalone refuses to start on 48 MiB (exit $rc, not a hang or a crash)" \
  test "$rc" != 0 -a "$rc" != 124 -a "$rc" -lt 128
t_check "the start-up error says why and names --journal-segment-mb" \
  grep -qE "journal preallocates 256 MiB .* lower it with --journal-segment-mb" "$T_TMP/small.log"

# --- a full disk -------------------------------------------------------------------------------
fd_mount "$T_TMP/data.img" 256M "$MNT" || { t_fail "mount a 256 MiB file system"; t_end; exit 1; }
start_standalone() {
  "$MG" standalone --chat-gateway off --chat-job off --kafka off --data-dir "$MNT/data" --bind-address 127.0.0.1 --broker-port 0 \
    --http-port 0 --bookie-port 0 --journal-segment-mb 4 --write-cache-mb 8 \
    $T_SA_ARGS >"$T_TMP/s$1.log" 2>&1 &
  SA_PID=$!; T_PIDS+=("$SA_PID")
  t_wait_for "$T_TMP/s$1.log" 'ready' 30 || { t_fail "standalone $1 ready"; cat "$T_TMP/s$1.log"; t_end; exit 1; }
  URL=$(grep -oE 'pulsar://127\.0\.0\.1:[0-9]+' "$T_TMP/s$1.log" | head -1)
  HTTP=$(grep -oE 'http://127\.0\.0\.1:[0-9]+' "$T_TMP/s$1.log" | head -1)
}
start_standalone 1
t_ok "standalone ready on a 256 MiB file system ($URL, $HTTP)"
# Leave about 24 MiB: the filler is what the operator deletes later. (The bookie's index and the
# metadata store take some 90 MiB of RocksDB files at start, hence 256 MiB.)
avail_kb=$(df -k --output=avail "$MNT" | tail -1)
t_check "more than 40 MiB free after start-up (${avail_kb} KiB)" test "$avail_kb" -gt $((40 * 1024))
fallocate -l $(( (avail_kb - 24 * 1024) * 1024 )) "$MNT/filler"
avail_kb=$(df -k --output=avail "$MNT" | tail -1)
t_check "filler file leaves about 24 MiB free (${avail_kb} KiB)" \
  test "$avail_kb" -lt $((30 * 1024)) -a "$avail_kb" -gt $((16 * 1024))

# Produce until sends fail (at most 4 runs of 10 s: 24 MiB take a second or two here).
acked1=0; errors1=0
for run in 1 2 3 4; do
  timeout 60 "$MG" perf produce fd -u "$URL" -r 0 -s 4096 -o 200 -t 10s --stats-interval 5s \
    --json "$T_TMP/p1.json" >"$T_TMP/p1.out" 2>&1
  acked1=$((acked1 + $(grep -oE '"messages":[0-9]+' "$T_TMP/p1.json" | cut -d: -f2)))
  errors1=$(grep -oE '"errors":[0-9]+' "$T_TMP/p1.json" | cut -d: -f2)
  [ "${errors1:-0}" -gt 0 ] && break
done
t_check "producing until the disk is full: some acknowledged ($acked1), then sends fail ($errors1)" \
  test "${acked1:-0}" -gt 0 -a "${errors1:-0}" -gt 0
t_check "the bookie logged the full disk" grep -q "the disk is full" "$T_TMP/s1.log"

t0=$(date +%s%N)
out=$(timeout 30 "$MG" client produce fd -u "$URL" -m one --timeout 20s 2>&1); rc=$?
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
t_check "a send to the full disk fails at once (${ms} ms, exit $rc) with the reason ('$out')" \
  test "$rc" != 0 -a "$ms" -lt 5000 -a -n "$(grep -i 'read-only: disk full' <<<"$out")"

code=$(curl -s -m 5 -o "$T_TMP/h1" -w '%{http_code}' "$HTTP/admin/v2/brokers/health")
t_check "health fails while read-only ($code: $(cat "$T_TMP/h1"))" \
  test "$code" = 503 -a -n "$(grep -i 'disk full' "$T_TMP/h1")"
m=$(curl -s -m 5 "$HTTP/metrics")
t_check "metrics: bookie_server_status 0 and bookie_state read_only 1" \
  test -n "$(grep -E '^bookie_server_status 0' <<<"$m")" -a \
       -n "$(grep -E '^bookie_state\{state="read_only"\} 1' <<<"$m")"

# More sends over a few back-off periods must not create a ledger per failed send.
for i in 1 2 3 4 5 6; do
  timeout 30 "$MG" client produce fd -u "$URL" -m x -n 20 --timeout 10s >/dev/null 2>&1
  sleep 1
done
ledgers=$(curl -s -m 5 "$HTTP/admin/v2/persistent/public/default/fd/internalStats" | grep -oE '"ledgerId":[0-9]+' | sort -u | wc -l)
t_check "no ledger churn: $ledgers ledgers listed after 120 failed sends" test "$ledgers" -le 4
warns=$(grep -c 'WARN' "$T_TMP/s1.log")
t_check "warnings stay few ($warns lines)" test "$warns" -lt 200

code=$(curl -s -m 40 -o "$T_TMP/r0" -w '%{http_code}' -X PUT -d '{"readOnly":false}' \
  "$HTTP/api/v1/bookie/state/readonly")
t_check "PUT readOnly false while the disk is still full answers 507 ($code: $(cat "$T_TMP/r0"))" \
  test "$code" = 507

# Space comes back: delete the filler, make the bookie writable again.
rm -f "$MNT/filler"
code=$(curl -s -m 40 -o "$T_TMP/r1" -w '%{http_code}' -X PUT -H 'Content-Type: application/json' \
  -d '{"readOnly":false}' "$HTTP/api/v1/bookie/state/readonly")
t_check "PUT /api/v1/bookie/state/readonly {\"readOnly\":false} answers 200 ($code: $(cat "$T_TMP/r1"))" test "$code" = 200
code=$(curl -s -m 5 -o /dev/null -w '%{http_code}' "$HTTP/admin/v2/brokers/health")
t_check "health ok again ($code)" test "$code" = 200
m=$(curl -s -m 5 "$HTTP/metrics")
t_check "metrics: bookie_server_status 1 again" test -n "$(grep -E '^bookie_server_status 1' <<<"$m")"
ok=0
for i in $(seq 1 40); do  # the managed ledger's back-off is at most 30 s
  if timeout 30 "$MG" client produce fd -u "$URL" -m back --timeout 10s >/dev/null 2>&1; then ok=1; break; fi
  sleep 1
done
t_check "writes work again after the resume" test "$ok" = 1
timeout 60 "$MG" perf produce fd -u "$URL" -r 0 -s 4096 -m 2000 -t 30s --stats-interval 10s \
  --json "$T_TMP/p2.json" >"$T_TMP/p2.out" 2>&1
acked2=$(grep -oE '"messages":[0-9]+' "$T_TMP/p2.json" | cut -d: -f2)
errors2=$(grep -oE '"errors":[0-9]+' "$T_TMP/p2.json" | cut -d: -f2)
t_check "2000 more messages acknowledged ($acked2, errors $errors2)" test "${acked2:-0}" = 2000 -a "${errors2:-1}" = 0

# Restart: every acknowledged message is readable.
kill -TERM "$SA_PID"; t_wait_exit "$SA_PID" 60
t_check "standalone stops with status 0 (got $T_STATUS)" test "$T_STATUS" = 0
start_standalone 2
total=$((acked1 + ok + acked2))
timeout 90 "$MG" perf consume fd -u "$URL" --subscription-position Earliest -m "$total" -t 60s \
  --stats-interval 10s --json "$T_TMP/c.json" >"$T_TMP/c.out" 2>&1
got=$(grep -oE '"messages":[0-9]+' "$T_TMP/c.json" | cut -d: -f2)
t_check "after the restart all $total acknowledged messages are read back (got $got)" \
  test "${got:-0}" -ge "$total"
kill -TERM "$SA_PID"; t_wait_exit "$SA_PID" 60
t_end
