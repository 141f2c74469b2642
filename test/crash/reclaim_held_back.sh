#!/usr/bin/env bash
# Space reuse when it cannot reclaim, and once it can again:
#  (a) a REPEATABLE READ transaction open since before the job holds the horizon back: the job's rounds
#      free nothing, backfill_status.reclaim_note names the holder's pid, and the job goes on and converts
#      every row exactly once; ended, the next round reclaims.
#  (b) another session holds SHARE UPDATE EXCLUSIVE on the table (as a VACUUM or autovacuum does): the job
#      leaves its round to it, says so, and goes on.
set -euo pipefail
# shellcheck source=lib/crash_common.bash
source "$(dirname "$(realpath "$0")")/lib/crash_common.bash"

ROWS=100000
PORT=${MEXT_CRASH_PORT_RECLAIM_HELD:-54348}
declare -A HELD_PID=() HELD_FD=()

own_cluster_start "$PORT" "autovacuum = off"
trap 'close_all_transactions; own_cluster_cleanup' EXIT
q "CREATE DATABASE crashdb" >/dev/null
DB=crashdb

note_of() { q "SELECT coalesce(reclaim_note, '') FROM backfill_status WHERE job = $1"; }

# ------------------------------------------------------------------ (a) a snapshot holds the horizon
setup_accounts "$ROWS"
open_transaction holder "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ; SELECT count(*) FROM accounts"
HOLDER=$(q "SELECT pid FROM pg_stat_activity WHERE application_name = 'holder'")
say "(a) pid $HOLDER holds a snapshot taken before the job"
JOB=$(q "SELECT start_backfill('accounts', 'token', 'v2', batch_size => 1000, max_rows_per_second => 20000)")
wait_for 60 q_true "SELECT reclaim_note LIKE 'space not reclaimed: pid $HOLDER holds a snapshot%' FROM backfill_status WHERE job = $JOB" ||
	die "no note naming pid $HOLDER: '$(note_of "$JOB")' ($(job_line "$JOB"))"
say "note: $(note_of "$JOB")"
check "the job goes on while held back" "$(q "SELECT state IN ('running', 'throttled', 'done') FROM backfill_status WHERE job = $JOB")" t
check "nothing reclaimed while held back" "$(q "SELECT rows_reclaimed FROM backfill_status WHERE job = $JOB")" 0
wait_for 120 q_true "SELECT scanned_all FROM (SELECT rows_scanned >= $ROWS * 0.8 AS scanned_all FROM backfill_status WHERE job = $JOB) s" ||
	die "the job did not get far while held back ($(job_line "$JOB"))"
close_transaction holder
say "the holder ended at $(job_field "$JOB" rows_scanned) rows scanned"
state=$(q "CALL await_backfill($JOB, interval '120 seconds', progress => false)")
check "await_backfill" "$state" "done"
exactly_once "$ROWS" "$JOB"
check "a round after the holder ended reclaimed its rows" \
	"$(q "SELECT reclaims > 0 AND rows_reclaimed > 0 FROM backfill_status WHERE job = $JOB")" t
say "growth $(job_field "$JOB" growth), last note: '$(note_of "$JOB")'"

# ------------------------------------------------------------------ (b) a VACUUM's lock is held
q "DROP TABLE accounts" >/dev/null
setup_accounts "$ROWS"
open_transaction locker "LOCK TABLE accounts IN SHARE UPDATE EXCLUSIVE MODE"
say "(b) a session holds SHARE UPDATE EXCLUSIVE on accounts"
JOB=$(q "SELECT start_backfill('accounts', 'token', 'v2', batch_size => 1000, max_rows_per_second => 20000)")
wait_for 60 q_true "SELECT reclaim_note LIKE 'a round was left to the VACUUM%' FROM backfill_status WHERE job = $JOB" ||
	die "no note about the VACUUM already at work: '$(note_of "$JOB")' ($(job_line "$JOB"))"
say "note: $(note_of "$JOB")"
check "batches go on beside the lock" "$(q "SELECT rows_converted > 0 FROM backfill_status WHERE job = $JOB")" t
close_transaction locker
state=$(q "CALL await_backfill($JOB, interval '120 seconds', progress => false)")
check "await_backfill" "$state" "done"
exactly_once "$ROWS" "$JOB"
check "rounds after the lock was released reclaimed" "$(q "SELECT reclaims > 0 FROM backfill_status WHERE job = $JOB")" t
finish
