#!/usr/bin/env bash
# kill -9 the backfill worker mid-batch, three times at different points of one job. Each kill makes
# the postmaster crash-restart the whole cluster (a backend died without cleaning up shared memory);
# the preloaded launcher must then resume the job from its last committed checkpoint, by itself.
# Afterwards every row is converted exactly once and the job's counters are exact.
set -euo pipefail
# shellcheck source=lib/crash_common.bash
source "$(dirname "$(realpath "$0")")/lib/crash_common.bash"

ROWS=200000
PORT=${MEXT_CRASH_PORT_KILL9:-54341}
KILL_AT_PERCENT=(20 45 70)

own_cluster_start "$PORT"
DB=postgres
check "shared_preload_libraries" "$(q "SHOW shared_preload_libraries")" migration_ext
wait_for 20 q_true "SELECT EXISTS (SELECT FROM pg_stat_activity WHERE backend_type = 'migration_ext launcher')" ||
	die "no migration_ext launcher in pg_stat_activity"
q "CREATE DATABASE crashdb" >/dev/null
DB=crashdb
setup_accounts "$ROWS"

JOB=$(q "SELECT start_backfill('accounts', 'token', 'v2', batch_size => 1000, max_rows_per_second => 10000)")
say "started job $JOB: $ROWS rows, batch 1000, capped at 10000 rows/s"

for percent in "${KILL_AT_PERCENT[@]}"; do
	threshold=$((ROWS * percent / 100))
	wait_for 60 scanned_above "$JOB" "$threshold" || die "job $JOB never got past $percent% ($(job_line "$JOB"))"
	# Aim the kill into a batch transaction; after 3 s of trying, kill wherever the worker is.
	where="seen converting a batch"
	pid=$(wait_for 3 worker_pid_in_batch "$JOB") || pid=
	if [[ -z $pid ]]; then
		where="between batches"
		pid=$(live_worker_pid "$JOB") || die "job $JOB has no live worker before the kill ($(job_line "$JOB"))"
	fi
	before=$(job_field "$JOB" rows_scanned)
	say "kill -9 worker $pid ($where) at rows_scanned=$before (>$percent%)"
	# The postmaster notices the dead child, resets every backend and reinitializes shared memory.
	kill9_and_recover "$pid" 60 "kill at $percent%"
	say "after crash restart: $(job_line "$JOB")"

	RESUMED_PID=
	wait_resumed "$JOB" "$pid" 30 || die "the launcher did not resume job $JOB within 30 s ($(job_line "$JOB"))"
	say "resumed by the launcher: worker ${RESUMED_PID:-<none, job already done>}; $(job_line "$JOB")"
done

state=$(q "SELECT wait_backfill($JOB, interval '90 seconds')")
check "wait_backfill" "$state" "done"
exactly_once "$ROWS" "$JOB"
check "server log has no PANIC" "$(grep -c PANIC "$OWN_CLUSTER/server.log" || true)" 0
check "signal deaths in the log (our 3 kills only)" "$(signal_deaths)" "${#KILL_AT_PERCENT[@]}"
finish
