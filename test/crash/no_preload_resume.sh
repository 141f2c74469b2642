#!/usr/bin/env bash
# Without shared_preload_libraries there is no launcher: a job whose worker died must show
# 'interrupted' (never 'running' with no worker), stay so, and continue from its checkpoint only when
# resume_backfill() is called. Interrupted twice: `pg_ctl stop -m immediate` + start, then kill -9
# of the worker (a crash restart). Afterwards every row is converted exactly once and the job's
# counters are exact.
set -euo pipefail
# shellcheck source=lib/crash_common.bash
source "$(dirname "$(realpath "$0")")/lib/crash_common.bash"

ROWS=200000
PORT=${MEXT_CRASH_PORT_NO_PRELOAD:-54343}
STAY_INTERRUPTED_SECONDS=5

# cluster.sh preloads the library once it is installed; a later line in postgresql.conf wins.
own_cluster_start "$PORT" "shared_preload_libraries = ''"
DB=postgres
check "shared_preload_libraries" "$(q "SHOW shared_preload_libraries")" ""
check "launchers running" \
	"$(q "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'migration_ext launcher'")" 0
q "CREATE DATABASE crashdb" >/dev/null
DB=crashdb
setup_accounts "$ROWS"

JOB=$(q "SELECT start_backfill('accounts', 'token', 'v2', batch_size => 1000, max_rows_per_second => 10000)")
say "started job $JOB: $ROWS rows, batch 1000, capped at 10000 rows/s"

# expect_interrupted_then_resume <old worker pid>: the state after the interruption, and by hand only.
expect_interrupted_then_resume() {
	local old=$1 raw scanned i state workers
	raw=$(q "SELECT state FROM migration_ext.backfill_job WHERE id = $JOB")
	say "after the restart: $(job_line "$JOB") (raw state in backfill_job: $raw)"
	check "backfill_status.state after the restart" "$(job_field "$JOB" state)" interrupted
	check "wait_backfill returns at once" "$(q "SELECT wait_backfill($JOB, interval '10 seconds')")" interrupted
	scanned=$(job_field "$JOB" rows_scanned)
	for ((i = 0; i < STAY_INTERRUPTED_SECONDS * 2; i++)); do
		sleep 0.5
		state=$(job_field "$JOB" state)
		workers=$(q "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'migration_ext backfill'")
		if [[ $state != interrupted || $workers != 0 ]]; then
			check "job stays interrupted without a worker (after $((i + 1))/2 s)" "$state/$workers workers" \
				"interrupted/0 workers"
			break
		fi
	done
	check "still interrupted after $STAY_INTERRUPTED_SECONDS s, with no worker" \
		"$(job_field "$JOB" state)/$(q "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'migration_ext backfill'")" \
		"interrupted/0"
	check "rows_scanned did not move while interrupted" "$(job_field "$JOB" rows_scanned)" "$scanned"

	q "SELECT resume_backfill($JOB)" >/dev/null
	RESUMED_PID=
	wait_resumed "$JOB" "$old" 30 || die "resume_backfill did not get job $JOB going ($(job_line "$JOB"))"
	say "resume_backfill: worker ${RESUMED_PID:-<none, job already done>}; $(job_line "$JOB")"
}

# 1. Immediate shutdown, start.
wait_for 60 scanned_above "$JOB" $((ROWS * 30 / 100)) || die "job never got past 30% ($(job_line "$JOB"))"
pid=$(wait_for 3 worker_pid_in_batch "$JOB") || pid=$(live_worker_pid "$JOB") || die "no live worker"
before=$(job_field "$JOB" rows_scanned)
cluster_pg_ctl "$OWN_CLUSTER" stop -m immediate -w -t 60 >/dev/null || die "pg_ctl stop -m immediate failed"
say "pg_ctl stop -m immediate with worker $pid running, at rows_scanned=$before (>30%)"
cluster_pg_ctl "$OWN_CLUSTER" start -w -t 60 >/dev/null || die "the server did not start again"
wait_for 60 server_ready || die "server not accepting connections after the start"
check "shared_preload_libraries after the restart" "$(q "SHOW shared_preload_libraries")" ""
expect_interrupted_then_resume "$pid"

# 2. kill -9 of the worker: the postmaster crash-restarts, and still nothing may resume the job.
wait_for 60 scanned_above "$JOB" $((ROWS * 65 / 100)) || die "job never got past 65% ($(job_line "$JOB"))"
pid=$(wait_for 3 worker_pid_in_batch "$JOB") || pid=$(live_worker_pid "$JOB") || die "no live worker"
before=$(job_field "$JOB" rows_scanned)
kill -9 "$pid"
say "kill -9 worker $pid at rows_scanned=$before (>65%)"
wait_for 30 grep -q "(PID $pid) was terminated by signal 9" "$OWN_CLUSTER/server.log" ||
	die "the server log never reported worker $pid killed"
wait_for 60 server_ready || die "server did not come back after the crash restart"
expect_interrupted_then_resume "$pid"

state=$(q "SELECT wait_backfill($JOB, interval '90 seconds')")
check "wait_backfill" "$state" "done"
exactly_once "$ROWS" "$JOB"
check "server log has no PANIC" "$(grep -c PANIC "$OWN_CLUSTER/server.log" || true)" 0
check "signal deaths in the log (our kill only)" "$(signal_deaths)" 1
finish
