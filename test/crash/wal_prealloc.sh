#!/usr/bin/env bash
# migration_ext.preallocate_wal: a backfill worker creates the WAL segments its next batch will fill,
# so that no application commit waits while the server creates one (16 MB written and fsynced under
# WALWriteLock).
#
# The same unthrottled job runs beside a small pgbench writer, twice, each time on a new cluster of this
# test's own (where the checkpoint has few segments to keep for reuse: a first job needs new ones), and
# the server log (debug2, which names each segment a process creates, and each process by its type) says
# who created segments during the job:
#   off: nobody creates ahead, and somebody creates segments anyway: the job needs new ones here.
#   on (the default): the worker logs the segments it created ahead; no other process (no client backend,
#     no WAL writer) created one, nor did the worker's own WAL writes; the worker reserved the blocks of
#     every segment it created; and every segment file in pg_wal has all its blocks allocated (the
#     worker's are made sparse, then reserved with posix_fallocate).
set -euo pipefail
# shellcheck source=lib/crash_common.bash
source "$(dirname "$(realpath "$0")")/lib/crash_common.bash"

PORT=${MEXT_CRASH_PORT_WAL_PREALLOC:-54358}
ROWS=300000
DB=postgres
WORKER_TYPE="migration_ext backfill"
trap 'exit 130' INT TERM

LOG_MARK=0
log_since_mark() { tail -c +"$((LOG_MARK + 1))" "$OWN_CLUSTER/server.log"; }

# run_job <table> <batch size>: an unthrottled job on a fresh <table> beside pgbench; the server log of
# the job is then in $JOB_LOG.
run_job() {
	local table=$1 batch=$2 job pgbench_pid
	q "CREATE TABLE $table (id int PRIMARY KEY, token text NOT NULL, note text)" >/dev/null
	q "INSERT INTO $table SELECT g, md5(g::text), repeat('x', 40) FROM generate_series(1, $ROWS) g" >/dev/null
	q "CHECKPOINT" >/dev/null
	LOG_MARK=$(stat -c %s "$OWN_CLUSTER/server.log")
	"$PG_BINDIR/pgbench" -n -f "$WORK/writer.sql" -c 2 -T 300 "$DB" >"$WORK/pgbench_$table.out" 2>&1 &
	pgbench_pid=$!
	job=$(q "SELECT start_backfill('$table', 'token', 'v2', throttle => false, batch_size => $batch)")
	check "$table: job $job" "$(q "SELECT wait_backfill($job, '300 s')")" "done"
	kill "$pgbench_pid" 2>/dev/null || true
	wait "$pgbench_pid" 2>/dev/null || true
	check "$table: legacy rows left" "$(q "SELECT count_legacy('$table', 'token', 'v2')")" 0
	log_since_mark >"$WORK/$table.log"
	JOB_LOG=$WORK/$table.log
}

# created_by <log> <pattern>: segments created by processes whose type matches <pattern> (grep -E).
created_by() { grep -F 'creating and filling new WAL file' "$1" | grep -v -F 'done creating' | cut -d'|' -f1 | grep -cE "$2" || true; }
# created_by_others <log>: segments created by any process but the worker.
created_by_others() { echo $(($(created_by "$1" '.') - $(created_by "$1" "^$WORKER_TYPE\$"))); }
# created_ahead <log>: the segments the worker says it created ahead.
created_ahead() { { grep -oE 'created [0-9]+ WAL segment\(s\) ahead' "$1" || true; } | awk '{ n += $2 } END { print n + 0 }'; }
# reserved_ahead <log>: how many of those it says it reserved the blocks of.
reserved_ahead() { { grep -oE '\([0-9]+ with their blocks reserved\)' "$1" || true; } | tr -d '(' | awk '{ n += $1 } END { print n + 0 }'; }

WORK=$(mktemp -d)

# new_cluster: this test's cluster, new (the previous one, if any, removed), with the extension, the
# codec and the pgbench writer's table.
new_cluster() {
	if [[ -n ${OWN_CLUSTER:-} ]]; then
		cluster_stop "$OWN_CLUSTER" >/dev/null 2>&1 || true
		rm -rf "$OWN_TMP"
	fi
	own_cluster_start "$PORT" "max_wal_size = 4GB" "min_wal_size = 32MB" "checkpoint_timeout = 30min" \
		"autovacuum = off" "wal_init_zero = on" "log_min_messages = debug2" "log_line_prefix = '%b|%p|'"
	q "SET client_min_messages = warning; CREATE EXTENSION migration_ext" >/dev/null
	q "SELECT create_codec('v2', 'reverse|add_prefix:v2:', 'v2:', 'absent')" >/dev/null
	q "CREATE TABLE side (id int PRIMARY KEY, n bigint NOT NULL DEFAULT 0)" >/dev/null
	q "INSERT INTO side SELECT g FROM generate_series(1, 100) g" >/dev/null
}
printf '%s\n' '\set id random(1, 100)' 'UPDATE side SET n = n + 1 WHERE id = :id;' >"$WORK/writer.sql"

new_cluster
check "preallocate_wal default" "$(q "SHOW migration_ext.preallocate_wal")" on

reload_setting migration_ext.preallocate_wal off
run_job unprepared 20000
say "off: segments created by: worker $(created_by "$JOB_LOG" "^$WORKER_TYPE\$"), others $(created_by_others "$JOB_LOG")"
check "off: segments created ahead" "$(created_ahead "$JOB_LOG")" 0
check "off: the job needed new segments" "$( (($(created_by "$JOB_LOG" '.') >= 2)) && echo yes || echo "no: $(created_by "$JOB_LOG" '.')")" yes

# Batches of 100,000 rows (about 30 MB of WAL each): the worker then creates two segments at one look,
# and each must have its blocks reserved, not only the first (the second was left sparse until the
# decision to reserve was taken once a look instead of once a segment).
new_cluster
run_job prepared 100000
ahead=$(created_ahead "$JOB_LOG")
say "on: $ahead segments created ahead"
check "on: the worker created segments ahead" "$( ((ahead >= 2)) && echo yes || echo "no: $ahead")" yes
check "on: segments created by any other process" "$(created_by_others "$JOB_LOG")" 0
check "on: segments the worker created other than ahead" "$(($(created_by "$JOB_LOG" "^$WORKER_TYPE\$") - ahead))" 0
# wal_init_zero is on here: every segment the worker creates gets its blocks reserved, however many it
# creates at one look.
check "on: segments created ahead without their blocks reserved" "$((ahead - $(reserved_ahead "$JOB_LOG")))" 0
# Every segment file has its blocks: the pre-created ones were reserved, not left sparse.
sparse=$(find "$OWN_CLUSTER/data/pg_wal" -maxdepth 1 -name '0000000*' -type f -printf '%f %b %s\n' |
	awk '$2 * 512 < $3 { print $1 }')
check "on: segment files with unallocated blocks" "${sparse:-none}" none
rm -rf "$WORK"
finish
