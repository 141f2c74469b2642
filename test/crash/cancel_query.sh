#!/usr/bin/env bash
# pg_cancel_backend() and pg_terminate_backend() aimed at a backfill worker, on the shared cluster
# (PGHOST/PGPORT/PGUSER, with the library preloaded), in a database of this test's own.
#
# A cancel must never kill the worker: the cancelled batch is retried (the job keeps going) or the job
# fails cleanly with the cause in last_error. Two moments are covered: a cancel that lands inside a
# batch transaction (the worker waits on a row lock the test holds) and one that lands in the pause
# between batches (the rate cap). Either way nothing is lost and the job can be finished: a failed job
# by a new backfill (resume_backfill refuses it; converted rows are skipped), a live one by waiting.
# A terminate ends the worker: the job shows 'interrupted' (never 'running'), and resume_backfill()
# finishes it. Every row is checked after each part.
set -euo pipefail
# shellcheck source=lib/crash_common.bash
source "$(dirname "$(realpath "$0")")/lib/crash_common.bash"

: "${PGHOST:?PGHOST of the shared cluster}" "${PGPORT:?PGPORT of the shared cluster}"
export PGUSER=${PGUSER:-postgres}
TEST_DB=mext_crash_cancel_$$
CANCELS=3

cleanup() {
	local rc=$?
	close_all_transactions
	# Stop this database's workers before dropping it (FORCE only terminates client backends).
	DB=postgres q_try "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '$TEST_DB'" >/dev/null || true
	DB=postgres q_try "DROP DATABASE IF EXISTS $TEST_DB WITH (FORCE)" >/dev/null ||
		say "warning: could not drop database $TEST_DB"
	exit "$rc"
}
trap cleanup EXIT

DB=postgres
check "shared_preload_libraries of the shared cluster" "$(q "SHOW shared_preload_libraries")" migration_ext
q "CREATE DATABASE $TEST_DB" >/dev/null
DB=$TEST_DB
say "database $DB on $PGHOST:$PGPORT"

start_job() { # start_job <rows per second>
	q "SELECT start_backfill('accounts', 'token', 'v2', batch_size => 1000, max_rows_per_second => $1)"
}

# outcome_after_cancel <job> <old pid> <rows_scanned before the cancel>: what the cancel did, once it
# has settled (bounded: 10 s).
#   kept-going  the same worker committed another batch after the cancel (or finished the job)
#   failed      the job failed, with last_error
#   <state>     anything else (e.g. interrupted: the cancel killed the worker)
outcome_after_cancel() {
	local job=$1 old=$2 before=$3 state scanned pid alive i
	for ((i = 0; i < 40; i++)); do
		sleep 0.25
		IFS='|' read -r state scanned pid alive < <(q "SELECT s.state, s.rows_scanned, s.pid,
			EXISTS (SELECT FROM pg_stat_activity a WHERE a.pid = $old AND a.backend_type = 'migration_ext backfill')
			FROM backfill_status s WHERE s.job = $job")
		case $state in
			done) echo kept-going; return ;;
			failed | interrupted | cancelled) echo "$state"; return ;;
		esac
		if [[ $pid == "$old" && $alive == t ]] && ((scanned > before)); then
			echo kept-going
			return
		fi
	done
	echo "$state (no progress in 10 s)"
}

# The worker's pid while it waits on a row lock inside its batch / while it pauses between batches.
waiter() {
	q_try "SELECT pid FROM pg_stat_activity WHERE backend_type = 'migration_ext backfill'
	       AND datname = current_database() AND wait_event_type = 'Lock'" | grep -E '^[0-9]+$'
}
pauser() {
	q_try "SELECT pid FROM pg_stat_activity WHERE backend_type = 'migration_ext backfill'
	       AND datname = current_database() AND query LIKE '%rate cap%'" | grep -E '^[0-9]+$'
}

# finish_after_cancel <job> <outcome>: brings the column to fully converted, and checks every row and
# every counter across the jobs that did it.
finish_after_cancel() {
	local job=$1 outcome=$2 converted1 converted_rows job2 err
	case $outcome in
		kept-going)
			check "wait_backfill after the cancels" "$(q "SELECT wait_backfill($job, interval '60 seconds')")" "done"
			exactly_once "$ROWS" "$job"
			;;
		failed)
			converted1=$(job_field "$job" rows_converted)
			converted_rows=$(q "SELECT count(*) FROM accounts WHERE token = 'v2:' || reverse(md5(id::text))")
			check "rows converted in the table = rows_converted of the failed job" "$converted_rows" "$converted1"
			check "rows neither legacy nor converted once" \
				"$(q "SELECT count(*) FROM accounts WHERE token NOT IN (md5(id::text), 'v2:' || reverse(md5(id::text)))")" 0
			err=$(q "SELECT resume_backfill($job)" 2>&1 >/dev/null) || true
			say "resume_backfill on the failed job: $(head -n 1 <<<"${err:-<no error>}")"
			check "resume_backfill refuses a failed job" "$([[ $err == *"cannot be resumed"* ]] && echo refused)" refused
			job2=$(start_job 20000)
			say "new job $job2 for the rest (converted rows are skipped)"
			check "wait_backfill (new job)" "$(q "SELECT wait_backfill($job2, interval '60 seconds')")" "done"
			say "new job: $(job_line "$job2")"
			check "rows whose token <> 'v2:' || reverse(md5(id::text))" \
				"$(q "SELECT count(*) FROM accounts WHERE token <> 'v2:' || reverse(md5(id::text))")" 0
			check "new job rows_scanned" "$(job_field "$job2" rows_scanned)" "$ROWS"
			check "new job rows_skipped = rows the failed job converted" "$(job_field "$job2" rows_skipped)" "$converted1"
			check "rows_converted, both jobs" "$((converted1 + $(job_field "$job2" rows_converted)))" "$ROWS"
			;;
		*)
			q "SELECT resume_backfill($job)" >/dev/null
			check "wait_backfill after resume_backfill" "$(q "SELECT wait_backfill($job, interval '60 seconds')")" "done"
			exactly_once "$ROWS" "$job"
			;;
	esac
}

# --------------------------------------------------------------- 1. a cancel inside a batch
# Before each cancel the test locks a row ahead of the checkpoint (in a session of its own) and waits
# until the worker blocks on it inside its batch transaction: the cancel lands there for sure. The lock
# is released right after the cancel, so a retried batch goes through.
lock_row_ahead() { # lock_row_ahead <id>: a session of its own holds the row lock until release_row
	open_transaction mext_crash_locker "SELECT FROM accounts WHERE id = $1 FOR UPDATE" ||
		die "the lock holder did not get row $1"
}
release_row() { close_transaction mext_crash_locker; }

ROWS=100000
setup_accounts "$ROWS"
lock_row_ahead 30500
JOB=$(start_job 10000)
say "part 1: job $JOB, $ROWS rows at 10000 rows/s"
outcome=kept-going
for ((n = 1; n <= CANCELS; n++)); do
	if ((n > 1)); then
		ahead=$(($(q "SELECT coalesce(last_key[1]::bigint, 0) FROM backfill_status WHERE job = $JOB") + 20000))
		((ahead < ROWS)) || break
		lock_row_ahead "$ahead"
	fi
	pid=$(wait_for 30 waiter) || die "the worker never waited on the locked row ($(job_line "$JOB"))"
	say "cancel $n: worker $pid waits on a row lock inside its batch: $(job_line "$JOB")"
	before=$(job_field "$JOB" rows_scanned)
	check "pg_cancel_backend($pid)" "$(q "SELECT pg_cancel_backend($pid)")" t
	release_row
	outcome=$(outcome_after_cancel "$JOB" "$pid" "$before")
	say "after cancel $n: $outcome; $(job_line "$JOB")"
	[[ $outcome == kept-going ]] || break
done
last_error=$(job_field "$JOB" last_error)
check "part 1: a cancel inside a batch is retried or fails the job cleanly" \
	"$([[ $outcome == kept-going || ($outcome == failed && $last_error == *"user request"*) ]] && echo yes || echo "no: $outcome")" yes
finish_after_cancel "$JOB" "$outcome"

# --------------------------------------------------------------- 2. a cancel between batches
ROWS=20000
setup_accounts "$ROWS"
# 1000-row batches at 2000 rows/s: the worker spends most of its time in the pause between batches.
JOB=$(start_job 2000)
say "part 2: job $JOB, $ROWS rows at 2000 rows/s"
outcome=kept-going
for ((n = 1; n <= CANCELS; n++)); do
	pid=$(wait_for 30 pauser) || die "the worker was never seen pausing for the rate cap ($(job_line "$JOB"))"
	say "cancel $n: worker $pid pauses between batches: $(job_line "$JOB")"
	before=$(job_field "$JOB" rows_scanned)
	check "pg_cancel_backend($pid)" "$(q "SELECT pg_cancel_backend($pid)")" t
	outcome=$(outcome_after_cancel "$JOB" "$pid" "$before")
	say "after cancel $n: $outcome; $(job_line "$JOB")"
	[[ $outcome == kept-going ]] || break
done
if [[ $outcome != kept-going && $outcome != failed ]]; then
	say "server log lines of worker $pid:"
	grep -E "\[$pid\]|PID $pid\)" "$(q "SHOW data_directory")/../server.log" 2>/dev/null | tail -n 4 || true
fi
last_error=$(job_field "$JOB" last_error)
check "part 2: a cancel between batches is retried or fails the job cleanly" \
	"$([[ $outcome == kept-going || ($outcome == failed && $last_error == *"user request"*) ]] && echo yes || echo "no: $outcome")" yes
finish_after_cancel "$JOB" "$outcome"

# --------------------------------------------------------------- 3. terminate
ROWS=100000
setup_accounts "$ROWS"
JOB=$(start_job 20000)
say "part 3: job $JOB, $ROWS rows at 20000 rows/s"
wait_for 60 scanned_above "$JOB" $((ROWS * 30 / 100)) || die "job never got past 30% ($(job_line "$JOB"))"
pid=$(live_worker_pid "$JOB") || die "no live worker ($(job_line "$JOB"))"
check "pg_terminate_backend($pid)" "$(q "SELECT pg_terminate_backend($pid, 10000)")" t
say "terminated worker $pid: $(job_line "$JOB")"
state=$(job_field "$JOB" state)
check "state after the terminate" "$state" interrupted
bad=$(running_without_worker "$JOB") || true
check "no 'running' without a worker" "${bad:-none}" none
state=$(q "SELECT wait_backfill($JOB, interval '5 seconds')")
if [[ $state != interrupted ]]; then
	# The shared cluster's launcher (migration_ext.resume_interval) may have resumed it first.
	say "note: job already $state again before resume_backfill: $(job_line "$JOB")"
fi
q "SELECT resume_backfill($JOB)" >/dev/null
RESUMED_PID=
wait_resumed "$JOB" "$pid" 30 || die "resume_backfill did not get job $JOB going ($(job_line "$JOB"))"
say "resume_backfill: worker ${RESUMED_PID:-<none, job already done>}; $(job_line "$JOB")"
check "wait_backfill after resume_backfill" "$(q "SELECT wait_backfill($JOB, interval '60 seconds')")" "done"
exactly_once "$ROWS" "$JOB"
finish
