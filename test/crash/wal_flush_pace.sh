#!/usr/bin/env bash
# migration_ext.worker_wal_flush_after: a backfill worker flushes its own WAL after every that much of it,
# instead of leaving it to the WAL writer and to the application's next synchronous commit.
#
# The same unthrottled job (ROWS rows, one codec, batches of 20,000) runs twice on a cluster of this test's
# own where nothing else writes: with the setting at 64kB, the WAL fsyncs the server counts
# (pg_stat_wal.wal_sync, counted by the process that syncs; the worker's counts are in once it has
# exited) must number at least half of the job's WAL / 64 kB; at 0 (the default), at most a quarter of
# that: the WAL writer's rounds and the batches' commits only. Both jobs convert every row.
set -euo pipefail
# shellcheck source=lib/crash_common.bash
source "$(dirname "$(realpath "$0")")/lib/crash_common.bash"

PORT=${MEXT_CRASH_PORT_WAL_FLUSH:-54357}
ROWS=100000
PACE_KB=64
DB=postgres
trap 'exit 130' INT TERM

# run_job <table>: an unthrottled job on <table>; sets WAL_BYTES (the WAL the server wrote meanwhile)
# and SYNCS (the WAL fsyncs counted meanwhile, the worker's included).
run_job() {
	local table=$1 lsn0 syncs0 job
	read -r lsn0 syncs0 <<<"$(q "SELECT pg_current_wal_lsn(), wal_sync FROM pg_stat_wal" | tr '|' ' ')"
	job=$(q "SELECT start_backfill('$table', 'token', 'v2', throttle => false, batch_size => 20000)")
	check "$table: job $job" "$(q "SELECT wait_backfill($job, '120 s')")" done
	# A worker reports its WAL statistics when it exits.
	wait_for 30 q_true "SELECT count(*) = 0 FROM pg_stat_activity WHERE application_name = 'migration_ext backfill'" ||
		die "the worker of job $job did not exit"
	read -r WAL_BYTES SYNCS <<<"$(q "SELECT pg_current_wal_lsn() - '$lsn0'::pg_lsn, wal_sync - $syncs0 FROM pg_stat_wal" | tr '|' ' ')"
	check "$table: legacy rows left" "$(q "SELECT count_legacy('$table', 'token', 'v2')")" 0
	say "$table: $WAL_BYTES bytes of WAL, $SYNCS WAL fsyncs"
}

# The WAL writer's round stays at its default (200 ms); checkpoints stay out of the way.
own_cluster_start "$PORT" "max_wal_size = 4GB" "checkpoint_timeout = 30min" "autovacuum = off"
q "SET client_min_messages = warning; CREATE EXTENSION migration_ext" >/dev/null
q "SELECT create_codec('v2', 'reverse|add_prefix:v2:', 'v2:', 'absent')" >/dev/null
for table in paced unpaced; do
	q "CREATE TABLE $table (id int PRIMARY KEY, token text NOT NULL)" >/dev/null
	q "INSERT INTO $table SELECT g, md5(g::text) FROM generate_series(1, $ROWS) g" >/dev/null
done
q "CHECKPOINT" >/dev/null
check "worker_wal_flush_after default" "$(q "SHOW migration_ext.worker_wal_flush_after")" 0

reload_setting migration_ext.worker_wal_flush_after "${PACE_KB}kB"
run_job paced
expected=$((WAL_BYTES / (PACE_KB * 1024)))
check "at ${PACE_KB}kB: WAL fsyncs >= half of WAL / ${PACE_KB} kB ($((expected / 2)))" \
	"$( ((SYNCS >= expected / 2)) && echo yes || echo "no: $SYNCS")" yes

reload_setting migration_ext.worker_wal_flush_after 0
run_job unpaced
check "at 0: WAL fsyncs <= a quarter of WAL / ${PACE_KB} kB ($((expected / 4)))" \
	"$( ((SYNCS <= expected / 4)) && echo yes || echo "no: $SYNCS")" yes
finish
