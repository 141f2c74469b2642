#!/usr/bin/env bash
# kill -9 the backfill worker in the middle of a round of space reuse: while its VACUUM of the table
# runs (pg_stat_progress_vacuum shows the worker's pid), slowed to a crawl by the server's vacuum cost
# settings, which a job's rounds follow when no live workload shares the server. The postmaster
# crash-restarts the cluster; the preloaded launcher resumes the job, which goes on reclaiming and
# finishes: every row converted exactly once, the table's indexes agree with its heap, and it grew far
# less than the job's rewrite of every row.
set -euo pipefail
# shellcheck source=lib/crash_common.bash
source "$(dirname "$(realpath "$0")")/lib/crash_common.bash"

ROWS=100000
PORT=${MEXT_CRASH_PORT_KILL9_RECLAIM:-54347}

# No autovacuum: the rounds are the job's own, and none is skipped because autovacuum got there first.
own_cluster_start "$PORT" "autovacuum = off"
DB=postgres
wait_for 20 q_true "SELECT EXISTS (SELECT FROM pg_stat_activity WHERE backend_type = 'migration_ext launcher')" ||
	die "no migration_ext launcher in pg_stat_activity"
q "CREATE DATABASE crashdb" >/dev/null
DB=crashdb
setup_accounts "$ROWS"
size_before=$(q "SELECT pg_total_relation_size('accounts')")
reload_setting vacuum_cost_limit 1
reload_setting vacuum_cost_delay 100ms

# On an idle server its rounds run at vacuum_cost_delay and _limit: 1 unit per 100 ms. Slow enough
# that the resumed worker's first round (after another 5% of the table, a second) comes after the reload
# below that lets its rounds run at full speed.
JOB=$(q "SELECT start_backfill('accounts', 'token', 'v2', batch_size => 1000, max_rows_per_second => 5000)")
say "started job $JOB: $ROWS rows, a round of space reuse every $(q "SELECT current_setting('migration_ext.reclaim_every')") of them"

worker_vacuuming() {
	q_try "SELECT a.pid FROM backfill_status s JOIN pg_stat_activity a ON a.pid = s.pid
	       JOIN pg_stat_progress_vacuum v ON v.pid = a.pid AND v.relid = 'accounts'::regclass
	       WHERE s.job = $JOB AND a.query LIKE '%reclaiming space%'" | grep -E '^[0-9]+$'
}
pid=$(wait_for 60 worker_vacuuming) || die "the worker never vacuumed the table ($(job_line "$JOB"))"
sleep 1
check "the worker is still in its VACUUM a second later" "$(worker_vacuuming)" "$pid"
before=$(job_field "$JOB" rows_scanned)
say "kill -9 worker $pid in its VACUUM at rows_scanned=$before; $(q "SELECT phase || ', ' || heap_blks_scanned || ' of ' || heap_blks_total || ' pages' FROM pg_stat_progress_vacuum WHERE pid = $pid")"
kill9_and_recover "$pid" 60 "kill in a reclaim"
reload_setting vacuum_cost_delay 0
say "after crash restart: $(job_line "$JOB")"

RESUMED_PID=
wait_resumed "$JOB" "$pid" 30 || die "the launcher did not resume job $JOB within 30 s ($(job_line "$JOB"))"
say "resumed by the launcher: worker ${RESUMED_PID:-<none, job already done>}"
q "SELECT alter_backfill($JOB, max_rows_per_second => 0)" >/dev/null

# CALL await_backfill(): a wait that holds no snapshot, which would keep every old version visible.
state=$(q "CALL await_backfill($JOB, interval '120 seconds', progress => false)")
check "await_backfill" "$state" "done"
exactly_once "$ROWS" "$JOB"
check "rounds of space reuse after the restart" "$(q "SELECT reclaims > 0 AND rows_reclaimed > 0 FROM backfill_status WHERE job = $JOB")" t
check "index scan and heap scan see the same rows" \
	"$(q "SET enable_seqscan = off; SET enable_bitmapscan = off; SELECT count(*) FROM accounts WHERE id > 0")" \
	"$(q "SET enable_indexscan = off; SET enable_bitmapscan = off; SELECT count(*) FROM accounts WHERE id > 0")"
growth=$(q "SELECT round(pg_total_relation_size('accounts')::numeric / $size_before, 2)")
say "table + indexes: $(q "SELECT pg_size_pretty($size_before::bigint)") before, $(q "SELECT pg_size_pretty(pg_total_relation_size('accounts'))") after (${growth}x; growth column: $(job_field "$JOB" growth))"
check "grew less than a rewrite without reuse (2x)" "$(q "SELECT $growth < 1.6")" t
check "server log has no PANIC" "$(grep -c PANIC "$OWN_CLUSTER/server.log" || true)" 0
check "signal deaths in the log (our kill only)" "$(signal_deaths)" 1
finish
