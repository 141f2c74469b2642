#!/usr/bin/env bash
# Failover: a job running on the primary continues on its promoted streaming standby. The primary is
# stopped with -m immediate mid-job and the standby promoted; the launcher there resumes the job from the
# checkpoint the standby replayed (a promoted standby is the same cluster and database to a job, unlike
# a restored backup), and it finishes with every row converted exactly once.
set -euo pipefail
# shellcheck source=lib/crash_common.bash
source "$(dirname "$(realpath "$0")")/lib/crash_common.bash"

ROWS=200000
pair_start "${MEXT_CRASH_PORT_FAILOVER_PRIMARY:-54362}" "${MEXT_CRASH_PORT_FAILOVER_STANDBY:-54363}" failover_standby
q "ALTER SYSTEM SET migration_ext.resume_interval = '1s'" >/dev/null
q "SELECT pg_reload_conf()" >/dev/null
setup_accounts "$ROWS"
JOB=$(q "SELECT start_backfill('accounts', 'token', 'v2', batch_size => 1000, max_rows_per_second => 20000)")
wait_for 60 scanned_above "$JOB" $((ROWS * 30 / 100)) || die "job never got past 30% ($(job_line "$JOB"))"
before=$(job_field "$JOB" rows_scanned)
cluster_pg_ctl "$PRIMARY" stop -m immediate -w -t 60 >/dev/null || die "could not stop the primary"
say "primary stopped (-m immediate) at rows_scanned=$before"
cluster_pg_ctl "$STANDBY" promote -w -t 60 >/dev/null || die "could not promote the standby"
export PGHOST=$STANDBY PGPORT=$S_PORT
wait_for 60 q_true "SELECT NOT pg_is_in_recovery()" || die "the standby did not leave recovery"
say "standby promoted: $(job_line "$JOB")"
wait_for 60 live_worker_pid "$JOB" >/dev/null || {
	[[ $(job_field "$JOB" state) == done ]] || die "no worker resumed job $JOB on the new primary ($(job_line "$JOB"))"
}
say "resumed on the new primary: $(job_line "$JOB")"
check "wait_backfill on the new primary" "$(q "SELECT wait_backfill($JOB, interval '120 seconds')")" done
exactly_once "$ROWS" "$JOB"
finish
