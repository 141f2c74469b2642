#!/usr/bin/env bash
# A distributed table of 1M rows over 32 shards converted by one job while clients write through the
# coordinator, and one node's backfill worker killed with kill -9 in the middle.
#
# A coordinator and two workers of its own (ports MEXT_CITUS_LIVE_PORT, +1, +2). pgbench clients update
# random rows with new-format tokens and insert new rows, each recording what it wrote in `truth` (a
# table colocated with the accounts, in the same transaction). Mid-run, a backfill worker of worker 1
# is killed with SIGKILL: that node restarts (crash recovery), its launcher resumes the node's parts
# from their checkpoints, and the coordinator's job goes on summing them.
#
# At the end: the job is done; no legacy token is left; every row holds what its last writer wrote, or
# its own token converted (zero clobbered rows); the parts' rows scanned add up to no more than the rows
# there are (a part resumed from its checkpoint, not from the start), and the killed node's parts are
# the same jobs as before, given a new worker.
set -euo pipefail
# shellcheck source=../../crash/lib/crash_common.bash
source "$(dirname "$(realpath "$0")")/../../crash/lib/crash_common.bash"
# shellcheck source=../../tools/citus.sh
source "$(dirname "$(realpath "$0")")/../../tools/citus.sh"

PORT=${MEXT_CITUS_LIVE_PORT:-54390}
W1=$((PORT + 1))
ROWS=${CITUS_LIVE_ROWS:-1000000}
PGBENCH=$PG_BINDIR/pgbench
WORK=$(cluster_mktemp)
DIR=$WORK/cluster
WRITER_PID=

cleanup() {
	local rc=$?
	touch "$WORK/stop"
	if [[ -n $WRITER_PID ]]; then
		kill "$WRITER_PID" 2>/dev/null || true
		wait "$WRITER_PID" 2>/dev/null || true
	fi
	if ((rc != 0)); then
		for node in "$DIR"/coordinator "$DIR"/worker1; do
			[[ -f $node/server.log ]] && { echo "---- last 40 lines of $node/server.log"; tail -n 40 "$node/server.log"; }
		done
		[[ -f $WORK/writers.log ]] && { echo "---- writers"; tail -n 20 "$WORK/writers.log"; }
	fi
	citus_stop "$DIR" >/dev/null 2>&1 || true
	rm -rf "$WORK"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

citus_start "$DIR" "$PORT" 2 >/dev/null || die "could not start the Citus cluster"
export PGHOST=localhost PGPORT=$PORT PGUSER=postgres
for p in "$PORT" "$W1" $((PORT + 2)); do
	PGPORT=$p q "ALTER SYSTEM SET migration_ext.resume_interval = '1s'" >/dev/null
	PGPORT=$p q "SELECT pg_reload_conf()" >/dev/null
done
say "coordinator on port $PORT, workers on $W1 and $((PORT + 2)); $ROWS rows over 32 shards"

q "SELECT create_codec('v2', 'add_prefix:v2:', marker => 'v2:', detect => 'absent')" >/dev/null
q "CREATE TABLE accounts (id bigint PRIMARY KEY, token text NOT NULL, note text)" >/dev/null
q "SELECT create_distributed_table('accounts', 'id', shard_count => 32)" >/dev/null
q "CREATE TABLE truth (id bigint PRIMARY KEY, value text NOT NULL)" >/dev/null
q "SELECT create_distributed_table('truth', 'id', colocate_with => 'accounts')" >/dev/null
q "CREATE SEQUENCE new_ids START 100000000" >/dev/null
q "INSERT INTO accounts SELECT g, 'tok' || g::text, 'loaded' FROM generate_series(1, $ROWS) g" >/dev/null
q "VACUUM ANALYZE accounts" >/dev/null

# ------------------------------------------------------------------ the application, through the coordinator
cat >"$WORK/update.sql" <<'SQL'
\set id random(1, :rows)
\set r random(1, 1000000000)
BEGIN;
UPDATE accounts SET token = 'v2:w' || :r WHERE id = :id;
INSERT INTO truth VALUES (:id, 'v2:w' || :r) ON CONFLICT (id) DO UPDATE SET value = excluded.value;
COMMIT;
SQL
cat >"$WORK/insert.sql" <<'SQL'
\set r random(1, 1000000000)
SELECT nextval('new_ids') AS nid \gset
BEGIN;
INSERT INTO accounts VALUES (:nid, 'v2:n' || :r, 'inserted');
INSERT INTO truth VALUES (:nid, 'v2:n' || :r);
COMMIT;
SQL
chmod 644 "$WORK"/*.sql
# Short pgbench runs one after the other: a client whose node restarts under it aborts (its transaction
# rolls back, truth with it), and the next run goes on.
(
	while [[ ! -e $WORK/stop ]]; do
		"$PGBENCH" -n -c 2 -j 2 -T 3 -D rows="$ROWS" -f "$WORK/update.sql@4" -f "$WORK/insert.sql@1" postgres \
			>>"$WORK/writers.log" 2>&1 || true
	done
) &
WRITER_PID=$!
wait_for 30 q_true "SELECT count(*) > 0 FROM truth" || die "the writers wrote nothing"

# ------------------------------------------------------------------ the job, and a kill -9 in the middle
JOB=$(q "SELECT start_backfill('accounts', 'token', 'v2')")
say "job $JOB started on the coordinator"
W1_PARTS=$(PGPORT=$W1 q "SELECT string_agg(job::text, ',' ORDER BY job) FROM backfill_status WHERE parent_job = $JOB")
[[ -n $W1_PARTS ]] || die "worker 1 has no parts of job $JOB"
PGPORT=$W1 wait_for 300 q_true "SELECT sum(rows_scanned) > 50000 FROM backfill_status WHERE parent_job = $JOB" ||
	die "worker 1's parts did not get going"
VICTIM=$(PGPORT=$W1 q "SELECT pid FROM pg_stat_activity WHERE backend_type = 'migration_ext backfill' LIMIT 1")
[[ -n $VICTIM ]] || die "no backfill worker to kill on worker 1"
SCANNED_BEFORE=$(PGPORT=$W1 q "SELECT sum(rows_scanned) FROM backfill_status WHERE parent_job = $JOB")
kill -9 "$VICTIM"
say "killed backfill worker $VICTIM on worker 1 (its parts had scanned $SCANNED_BEFORE rows)"
sleep 1
PGPORT=$W1 wait_for 120 q_true "SELECT count(*) > 0 FROM pg_stat_activity WHERE backend_type = 'migration_ext backfill'" ||
	PGPORT=$W1 q_true "SELECT bool_and(state = 'done') FROM backfill_status WHERE parent_job = $JOB" ||
	die "worker 1's parts were not resumed"
say "worker 1 is back; its parts run again"

STATE=$(q "CALL await_backfill($JOB, '15 min', false)")
touch "$WORK/stop"
wait "$WRITER_PID" 2>/dev/null || true
WRITER_PID=
check "job state" "$STATE" done
check "parts of worker 1 after the restart" \
	"$(PGPORT=$W1 q "SELECT string_agg(job::text, ',' ORDER BY job) FROM backfill_status WHERE parent_job = $JOB")" "$W1_PARTS"
check "legacy tokens left" "$(q "SELECT count(*) FROM accounts WHERE token NOT LIKE 'v2:%'")" 0
check "clobbered rows (not what the last writer wrote, nor the row's own token converted)" \
	"$(q "SELECT count(*) FROM accounts a LEFT JOIN truth t ON t.id = a.id
	      WHERE a.token IS DISTINCT FROM coalesce(t.value, 'v2:tok' || a.id::text)")" 0
check "rows the writers wrote that are missing" \
	"$(q "SELECT count(*) FROM truth t LEFT JOIN accounts a ON a.id = t.id WHERE a.id IS NULL")" 0
TOTAL=$(q "SELECT count(*) FROM accounts")
SCANNED=$(q "SELECT rows_scanned FROM backfill_status WHERE job = $JOB")
CONVERTED=$(q "SELECT rows_converted FROM backfill_status WHERE job = $JOB")
UNTOUCHED=$(q "SELECT count(*) FROM accounts a WHERE a.id <= $ROWS AND NOT EXISTS (SELECT FROM truth t WHERE t.id = a.id)")
WRITES=$(q "SELECT count(*) FROM truth")
say "rows $TOTAL, scanned $SCANNED, converted $CONVERTED, untouched by the writers $UNTOUCHED, rows the writers wrote $WRITES"
check "rows scanned: at least the loaded rows, at most the rows there are" \
	"$(((SCANNED >= ROWS) && (SCANNED <= TOTAL)))" 1
check "rows converted: every untouched row, at most the loaded rows" \
	"$(((CONVERTED >= UNTOUCHED) && (CONVERTED <= ROWS)))" 1
check "the nodes' parts add up to the job" \
	"$(q "SELECT sum((n.value ->> 'rows_converted')::bigint) FROM backfill_status s, jsonb_each(s.nodes) n WHERE s.job = $JOB")" \
	"$CONVERTED"
((WRITES > 100)) || die "the writers wrote only $WRITES rows"
finish
