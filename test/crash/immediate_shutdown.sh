#!/usr/bin/env bash
# `pg_ctl stop -m immediate` in the middle of a backfill (no shutdown checkpoint: the next start runs
# crash recovery), twice at different points of one job. After each start the preloaded launcher must
# resume the job by itself, from its last committed checkpoint. Afterwards every row is converted
# exactly once and the job's counters are exact.
set -euo pipefail
# shellcheck source=lib/crash_common.bash
source "$(dirname "$(realpath "$0")")/lib/crash_common.bash"

ROWS=200000
PORT=${MEXT_CRASH_PORT_IMMEDIATE:-54342}
STOP_AT_PERCENT=(25 60)

own_cluster_start "$PORT"
DB=postgres
check "shared_preload_libraries" "$(q "SHOW shared_preload_libraries")" migration_ext
q "CREATE DATABASE crashdb" >/dev/null
DB=crashdb
setup_accounts "$ROWS"

JOB=$(q "SELECT start_backfill('accounts', 'token', 'v2', batch_size => 1000, max_rows_per_second => 10000)")
say "started job $JOB: $ROWS rows, batch 1000, capped at 10000 rows/s"

for percent in "${STOP_AT_PERCENT[@]}"; do
	threshold=$((ROWS * percent / 100))
	wait_for 60 scanned_above "$JOB" "$threshold" || die "job $JOB never got past $percent% ($(job_line "$JOB"))"
	pid=$(wait_for 3 worker_pid_in_batch "$JOB") || pid=$(live_worker_pid "$JOB") ||
		die "job $JOB has no live worker before the stop ($(job_line "$JOB"))"
	before=$(job_field "$JOB" rows_scanned)
	say "pg_ctl stop -m immediate with worker $pid running, at rows_scanned=$before (>$percent%)"
	stop_immediate_and_start 60
	grep -q 'database system was interrupted' "$OWN_CLUSTER/server.log" ||
		die "no crash recovery in the log: was the stop really immediate?"
	say "started again (postmaster $(postmaster_pid)): $(job_line "$JOB")"

	RESUMED_PID=
	wait_resumed "$JOB" "$pid" 30 || die "the launcher did not resume job $JOB within 30 s ($(job_line "$JOB"))"
	say "resumed by the launcher: worker ${RESUMED_PID:-<none, job already done>}; $(job_line "$JOB")"
done

state=$(q "SELECT wait_backfill($JOB, interval '90 seconds')")
check "wait_backfill" "$state" "done"
exactly_once "$ROWS" "$JOB"
check "server log has no PANIC" "$(grep -c PANIC "$OWN_CLUSTER/server.log" || true)" 0
check "processes terminated by a signal (none: nothing but the stops happened)" "$(signal_deaths)" 0
check "crash recoveries in the log (one per immediate stop)" \
	"$(grep -c 'database system was interrupted' "$OWN_CLUSTER/server.log" || true)" "${#STOP_AT_PERCENT[@]}"
finish
