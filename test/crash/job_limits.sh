#!/usr/bin/env bash
# Backfill workers are capped, and no launch is lost: migration_ext.max_jobs (cluster-wide) and
# migration_ext.max_jobs_per_role refuse a job at the limit with a clear error and leave no job behind;
# a paused job gives its worker back and gets one again on resume; a job whose worker cannot be
# started (no background worker slot) stays queued with the reason in backfill_status, and the
# launcher's resumer starts it, and the others, once slots free up.
set -euo pipefail
# shellcheck source=lib/crash_common.bash
source "$(dirname "$(realpath "$0")")/lib/crash_common.bash"

PORT=${MEXT_CRASH_PORT_JOB_LIMITS:-54359}
ROWS=20000

# Six background worker slots: the logical replication launcher's, migration_ext's launcher's and four
# jobs'. The launcher's resumer needs one more when it runs, so it looks only at start until step 4
# turns it on.
own_cluster_start "$PORT" "max_worker_processes = 6" "max_parallel_workers_per_gather = 0" \
	"migration_ext.resume_interval = 0"
q "CREATE DATABASE limitsdb" >/dev/null
DB=limitsdb
q "SET client_min_messages = warning; CREATE EXTENSION migration_ext" >/dev/null
q "SELECT create_codec('v2', 'reverse|add_prefix:v2:', 'v2:', 'absent')" >/dev/null
q "CREATE ROLE limits_alice LOGIN" >/dev/null
for t in 1 2 3 4 5 6 7; do
	q "CREATE TABLE t$t (id int PRIMARY KEY, token text)" >/dev/null
	q "INSERT INTO t$t SELECT g, md5(g::text) FROM generate_series(1, $ROWS) g" >/dev/null
done
q "ALTER TABLE t7 OWNER TO limits_alice" >/dev/null
q "CREATE TABLE t8 (id int PRIMARY KEY, token text)" >/dev/null
q "INSERT INTO t8 SELECT g, md5(g::text) FROM generate_series(1, $ROWS) g" >/dev/null
q "ALTER TABLE t8 OWNER TO limits_alice" >/dev/null

# start <table> [role]: a slow job (100 rows/s) on the table, started as the role; prints the job id.
start() {
	local as=${2:+SET ROLE $2;}
	q "$as SELECT start_backfill('$1', 'token', 'v2', batch_size => 50, max_rows_per_second => 100)"
}
workers() { q "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'migration_ext backfill'"; }
given_back() { q_true "SELECT pid IS NULL AND state = 'paused' FROM backfill_status WHERE job = $1"; }
worker_count_is() { [[ $(workers) == "$1" ]]; }
has_worker() { q_true "SELECT state IN ('running', 'throttled') AND pid IS NOT NULL FROM backfill_status WHERE job = $1"; }

# 1. migration_ext.max_jobs
reload_setting migration_ext.max_jobs 2
J1=$(start t1)
J2=$(start t2)
wait_for 30 worker_count_is 2 || die "two jobs, $(workers) workers"
out=$(q "SELECT start_backfill('t3', 'token', 'v2')" 2>&1) && die "a third job started past max_jobs = 2"
check "the third job is refused" "$(grep -o 'too many backfill workers: 2 of migration_ext.max_jobs = 2 are running' <<<"$out")" \
	"too many backfill workers: 2 of migration_ext.max_jobs = 2 are running"
check "and left no job" "$(q "SELECT count(*) FROM backfill_status WHERE relation = 't3'::regclass")" 0

# 2. A paused job gives its worker back: another job may start, and the paused one waits its turn.
q "SELECT pause_backfill($J1)" >/dev/null
wait_for 30 given_back "$J1" || die "the paused job kept its worker ($(job_line "$J1"))"
wait_for 30 worker_count_is 1 || die "$(workers) workers after the pause"
check "paused job, no worker" "$(job_field "$J1" state)/$(job_field "$J1" "pid IS NULL")" "paused/t"
J3=$(start t3)
wait_for 30 has_worker "$J3" || die "the job started in the freed slot has no worker ($(job_line "$J3"))"
out=$(q "SELECT resume_backfill($J1)" 2>&1) && die "resume_backfill went past max_jobs = 2"
check "resuming past the limit is refused" "$(grep -c 'too many backfill workers' <<<"$out")" 1
check "the refused resume leaves it paused" "$(job_field "$J1" state)" paused
q "SELECT cancel_backfill($J3)" >/dev/null
wait_for 30 worker_count_is 1 || die "$(workers) workers after the cancel"
q "SELECT resume_backfill($J1)" >/dev/null
wait_for 30 has_worker "$J1" || die "the resumed job got no worker ($(job_line "$J1"))"
say "after resume: $(job_line "$J1")"

# 3. migration_ext.max_jobs_per_role, counted for the role that starts a job.
reload_setting migration_ext.max_jobs 8
reload_setting migration_ext.max_jobs_per_role 1
J7=$(start t7 limits_alice)
wait_for 30 has_worker "$J7" || die "alice's job has no worker ($(job_line "$J7"))"
out=$(q "SET ROLE limits_alice; SELECT start_backfill('t8', 'token', 'v2')" 2>&1) &&
	die "alice's second job started past max_jobs_per_role = 1"
check "alice's second job is refused" \
	"$(grep -o 'role limits_alice already runs 1 backfill job(s), the limit of migration_ext.max_jobs_per_role' <<<"$out")" \
	"role limits_alice already runs 1 backfill job(s), the limit of migration_ext.max_jobs_per_role"
# A job in parts counts each part: alice may not take more workers by asking for parts.
q "CREATE TABLE tp (id int PRIMARY KEY, token text) PARTITION BY HASH (id);
   CREATE TABLE tp0 PARTITION OF tp FOR VALUES WITH (MODULUS 2, REMAINDER 0);
   CREATE TABLE tp1 PARTITION OF tp FOR VALUES WITH (MODULUS 2, REMAINDER 1);
   INSERT INTO tp SELECT g, 'tok' || g FROM generate_series(1, 100) g;
   ALTER TABLE tp OWNER TO limits_alice; ALTER TABLE tp0 OWNER TO limits_alice; ALTER TABLE tp1 OWNER TO limits_alice" \
	>/dev/null
out=$(q "SET ROLE limits_alice; SELECT start_backfill('tp', 'token', 'v2', parallel => 2)" 2>&1) &&
	die "alice's job of two parts started past max_jobs_per_role = 1"
check "alice's job of two parts is refused" \
	"$(grep -c 'parallel => 2 needs more workers than migration_ext.max_jobs_per_role = 1' <<<"$out")" 1
check "no job left behind" "$(q "SELECT count(*) FROM migration_ext.backfill_job WHERE relation = 'tp'::regclass")" 0

# 4. No background worker slot: the two launchers and four jobs fill the six. Two more jobs stay queued,
#    with the reason; once three jobs end, the resumer (one slot) starts both.
reload_setting migration_ext.max_jobs_per_role 0
J4=$(start t4)
wait_for 30 worker_count_is 4 || die "four jobs, $(workers) workers"
out=$(q "SELECT start_backfill('t5', 'token', 'v2', batch_size => 50, max_rows_per_second => 100)" 2>&1) ||
	die "start_backfill failed when no worker slot was free: $out"
J5=$(tail -n 1 <<<"$out")
check "a WARNING says the job is queued" "$(grep -c "backfill job $J5 is queued but not started" <<<"$out")" 1
J6=$(q "SELECT start_backfill('t6', 'token', 'v2', batch_size => 50, max_rows_per_second => 100)" 2>/dev/null | tail -n 1)
for job in "$J5" "$J6"; do
	check "job $job: queued without a worker" "$(job_field "$job" "state || '/' || (pid IS NULL)")" "queued/true"
	check "job $job: the reason" "$(job_field "$job" "warning = 'not started: could not start a backfill worker'")" t
done
for job in "$J1" "$J2" "$J4"; do q "SELECT cancel_backfill($job)" >/dev/null; done
wait_for 30 worker_count_is 1 || die "$(workers) workers after cancelling three jobs"
reload_setting migration_ext.resume_interval 1s
wait_for 60 has_worker "$J5" || die "the resumer never started job $J5 ($(job_line "$J5"))"
wait_for 60 has_worker "$J6" || die "the resumer never started job $J6 ($(job_line "$J6"))"
check "job $J5 runs, its reason cleared" "$(job_field "$J5" "coalesce(warning, 'none')")" none
check "job $J6 runs, its reason cleared" "$(job_field "$J6" "coalesce(warning, 'none')")" none

for job in "$J5" "$J6" "$J7"; do q "SELECT cancel_backfill($job)" >/dev/null; done
wait_for 30 worker_count_is 0 || die "$(workers) workers left after cancelling every job"
finish
