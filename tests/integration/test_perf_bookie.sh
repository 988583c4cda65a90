#!/usr/bin/env bash
# `magnetar perf bookie` and perf/bookie.sh as a smoke check, not a benchmark: no figure is
# judged, only that the run completes, every entry reads back intact, and the summary and JSON
# carry the expected fields. Also the dispatcher's answers and the clear failures (no bookie,
# bad options). Usage: test_perf_bookie.sh /path/to/magnetar
source "$(dirname "$0")/lib.sh"
MG=${1:?usage: test_perf_bookie.sh /path/to/magnetar}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)

# The dispatcher.
out=$("$MG" perf --help); rc=$?
t_check "perf --help exits 0 and lists bookie" test "$rc" = 0 -a -n "$(grep -w bookie <<<"$out")"
err=$("$MG" perf catchup 2>&1); rc=$?
t_check "perf catchup: exits 1, not built yet" test "$rc" = 1 -a -n "$(grep 'this workload is not built yet' <<<"$err")"
err=$("$MG" perf frob 2>&1); rc=$?
t_check "unknown workload exits 2 and names it" test "$rc" = 2 -a -n "$(grep "unknown workload 'frob'" <<<"$err")"
out=$("$MG" perf bookie --help); rc=$?
t_check "perf bookie --help documents --read-inflight and --fio-dir" \
  test "$rc" = 0 -a -n "$(grep -- '--read-inflight' <<<"$out")" -a -n "$(grep -- '--fio-dir' <<<"$out")"
err=$("$MG" perf bookie --entry-size 1kB 2>&1); rc=$?
t_check "ambiguous size refused with exit 2" test "$rc" = 2 -a -n "$(grep -- '--entry-size' <<<"$err")"
err=$("$MG" perf bookie --skip-add 2>&1); rc=$?
t_check "--skip-add without --ledger exits 2" test "$rc" = 2

# No bookie there: a closed port on loopback (bind one, note it, free it).
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' 2>/dev/null || echo 1)
err=$(timeout 30 "$MG" perf bookie --bookie "127.0.0.1:$port" --entries 10 2>&1); rc=$?
t_check "no bookie: exits 1 saying it cannot use the bookie (rc $rc)" \
  test "$rc" = 1 -a -n "$(grep 'cannot use the bookie' <<<"$err")"

# The whole benchmark through perf/bookie.sh, without fio (its 64 MiB fdatasync run is too long
# for a test), against the bookie the script starts. /var/tmp: O_DIRECT needs a real disk.
out=$(timeout 100 bash "$ROOT/perf/bookie.sh" --bin "$MG" --dir /var/tmp --no-fio \
  --entries 2000 --settle 1s --no-drop-caches --json "$T_TMP/r.json" 2>"$T_TMP/err.log"); rc=$?
if [ "$rc" = 0 ]; then t_ok "perf/bookie.sh --entries 2000 exits 0"; else
  t_fail "perf/bookie.sh --entries 2000 exits 0 (rc $rc)"; tail -20 "$T_TMP/err.log"; fi
t_check "summary has the add line with adds/s" grep -qE '^  add \(fsync on\) +[0-9]+ adds/s' <<<"$out"
t_check "summary has the read line, marked WARM" grep -qE '^  read \(WARM\) +[0-9]+ entries/s' <<<"$out"
t_check "summary names 2000 entries of 1024 B" grep -q '2000 entries x 1024 B' <<<"$out"
t_check "summary reports the bookie's disk reads" grep -qE '^  bookie disk reads' <<<"$out"
t_check "JSON written" test -s "$T_TMP/r.json"
for key in '"benchmark": "bookie"' '"entries": 2000' '"adds_per_s": ' '"latency_ms": {"p50": ' \
  '"caches_dropped": false' '"state": "warm"' '"mismatches": 0' '"bytes_per_request": ' \
  '"fio": null' '"read_vs_fio_seqread": null'; do
  t_check "JSON has $key" grep -qF "$key" "$T_TMP/r.json"
done
json_parses() { python3 -m json.tool "$1" >/dev/null; }
if command -v python3 >/dev/null 2>&1; then
  t_check "JSON parses" json_parses "$T_TMP/r.json"
fi
wdir=$(grep -oE '/var/tmp/magnetar-perf-bookie\.[A-Za-z0-9]+' "$T_TMP/err.log" | head -1)
t_check "the script named its directory ('$wdir') and removed it" test -n "$wdir" -a ! -e "${wdir:-/}"

# A bookie of our own, to check the verification and the windows exactly.
VT=$(mktemp -d /var/tmp/magnetar-test-perf.XXXXXX)
trap 't_cleanup; rm -rf "$VT"' EXIT
"$MG" bookie --metadata-url "rocksdb:$VT/md" --port 0 --http-port 0 --bind-address 127.0.0.1 \
  --journal-dir "$VT/j" --ledger-dirs "$VT/l" >"$VT/bookie.log" 2>&1 &
bp=$!; T_PIDS+=("$bp")
if t_wait_for "$VT/bookie.log" 'ready: rpc' 30; then t_ok "bookie ready"; else
  t_fail "bookie ready"; cat "$VT/bookie.log"; fi
bport=$(grep -oE 'ready: rpc [^,]*:[0-9]+' "$VT/bookie.log" | sed 's/.*://')
pb() { "$MG" perf bookie --bookie "127.0.0.1:${bport:-1}" --ledger 42 --settle 0 --no-drop-caches \
  --log-level warn "$@"; }

pb --entries 500 --entry-size 100 --read-max-kb 1 --no-delete-ledger --json "$T_TMP/w.json" \
  >"$T_TMP/w.out" 2>&1; rc=$?
t_check "500 entries of 100 B written and read back (rc $rc)" test "$rc" = 0
t_check "1 KiB windows of 100 B entries: 50 requests" grep -qF '"requests": 50,' "$T_TMP/w.json"
err=$(pb --entries 10 2>&1); rc=$?
t_check "a ledger that already holds entries is refused (rc $rc)" \
  test "$rc" = 1 -a -n "$(grep 'already holds entries 0..499' <<<"$err")"
pb --skip-add --entries 500 --entry-size 100 --read-max-kb 4 --json "$T_TMP/s.json" >/dev/null 2>&1; rc=$?
t_check "--skip-add reads the kept ledger intact (rc $rc)" test "$rc" = 0
t_check "--skip-add: 4 KiB windows of 100 B entries: 13 requests" grep -qF '"requests": 13,' "$T_TMP/s.json"
t_check "--skip-add: no add figures in the JSON" grep -qF '"add": null' "$T_TMP/s.json"
err=$(pb --skip-add --entries 500 --entry-size 200 2>&1); rc=$?
t_check "entries of another size are counted as mismatches, exit 1 (rc $rc)" \
  test "$rc" = 1 -a -n "$(grep '500 entries read back differ' <<<"$err")"
err=$(pb --skip-add --entries 501 --entry-size 100 2>&1); rc=$?
t_check "--skip-add with more entries than stored exits 1 (rc $rc)" \
  test "$rc" = 1 -a -n "$(grep 'fewer than --entries 501' <<<"$err")"
kill -TERM "$bp" 2>/dev/null
t_wait_exit "$bp" 30
t_check "bookie stopped cleanly (status $T_STATUS)" test "$T_STATUS" = 0
t_end
