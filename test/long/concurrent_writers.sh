#!/usr/bin/env bash
# Live writers against the backfill: four pgbench clients rewrite random rows for the whole job, each
# transaction writing either a new legacy value or a new target value into accounts.token and logging
# the value it wrote in `writes` (same transaction). The backfill runs with its default, adaptive
# settings. Afterwards no row may hold a value derived from an overwritten one:
#   - last logged value is target: the row holds exactly it (the backfill never touches target values);
#   - last logged value is legacy: the row holds it, or its conversion (if the backfill came later);
#   - never written: the row holds the conversion of its original value.
# A writer commits its row and its log entry together, so this holds in any one snapshot, and is
# checked in one statement while the writers still run. The table is backfilled $ROUNDS times over,
# one job after the other, with the writers running throughout (a job of 200k rows takes seconds);
# before each job after the first, one transaction turns every row legacy again and logs that as a
# write of every row, like a writer's.
# Writers that rewrote a row as legacy after a job passed it leave legacy rows behind: a last job,
# writers stopped, converts exactly those, and then every row is the conversion of its last value.
#
# Env: MEXT_LONG_PORT_CONCURRENT_WRITERS (default 54362), MEXT_LONG_WRITER_ROWS (default 200000),
#      MEXT_LONG_WRITER_ROUNDS (default 8).
set -euo pipefail
# shellcheck source=lib/long_common.bash
source "$(dirname "$(realpath "$0")")/lib/long_common.bash"

ROWS=${MEXT_LONG_WRITER_ROWS:-200000}
PORT=${MEXT_LONG_PORT_CONCURRENT_WRITERS:-54362}
CLIENTS=4
ROUNDS=${MEXT_LONG_WRITER_ROUNDS:-8} # jobs run while the writers write
TAIL_SECONDS=2 # writers keep going this long after the last of them

own_cluster_start "$PORT"
DB=postgres
q "CREATE DATABASE longdb" >/dev/null
DB=longdb
load_accounts "$ROWS"
# seq orders the writes of one row: a writer draws it after its UPDATE, under the row lock, so for
# the same id seq order is lock order is commit order (xids are assigned before the lock is taken).
q "CREATE TABLE writes (seq bigserial PRIMARY KEY, id bigint NOT NULL, value text NOT NULL,
                        at_xid bigint NOT NULL DEFAULT txid_current())" >/dev/null

SCRIPT=$OWN_TMP/writer.sql
LEGACY="md5(:r || '/' || :id)"
cat >"$SCRIPT" <<SQL
\set id random(1, $ROWS)
\set kind random(0, 1)
\set r random(1, 2000000000)
BEGIN;
UPDATE accounts SET token = CASE WHEN :kind = 0 THEN $LEGACY ELSE $(v2 "$LEGACY") END WHERE id = :id;
INSERT INTO writes (id, value) VALUES (:id, CASE WHEN :kind = 0 THEN $LEGACY ELSE $(v2 "$LEGACY") END);
END;
SQL

PGBENCH_PID=
PGBENCH_LOG=$OWN_TMP/pgbench.log
stop_writers() {
	[[ -n $PGBENCH_PID ]] || return 0
	kill -TERM "$PGBENCH_PID" 2>/dev/null || true
	wait "$PGBENCH_PID" 2>/dev/null || true
	PGBENCH_PID=
	# A transaction a killed client left open is rolled back, with its log row, when its backend notices.
	wait_for 30 q_true "SELECT NOT EXISTS (SELECT FROM pg_stat_activity WHERE application_name = 'pgbench')" ||
		die "pgbench backends still there 30 s after the writers stopped"
}
trap 'stop_writers; own_cluster_cleanup' EXIT

"$PG_BINDIR/pgbench" -n -c "$CLIENTS" -j 2 -T 900 -f "$SCRIPT" "$DB" >"$PGBENCH_LOG" 2>&1 &
PGBENCH_PID=$!
wait_for 30 q_true "SELECT count(*) >= 200 FROM writes" || { cat "$PGBENCH_LOG"; die "the writers did not start"; }
say "$CLIENTS pgbench writers running: $(q "SELECT count(*) FROM writes") writes so far"

# The last logged write of each row, by seq, as SQL (see above).
LAST_WRITE="(SELECT DISTINCT ON (id) id, value, seq FROM writes ORDER BY id, seq DESC)"

# check_rows <when>: no row holds a value derived from an overwritten one; one statement, one snapshot.
check_rows() {
	local counts bad
	counts=$(q "SELECT format('target_mismatch=%s legacy_mismatch=%s unwritten_mismatch=%s rows=%s',
	                   count(*) FILTER (WHERE l.value LIKE 'v2:%' AND a.token <> l.value),
	                   count(*) FILTER (WHERE l.value NOT LIKE 'v2:%' AND a.token NOT IN (l.value, $(v2 l.value))),
	                   count(*) FILTER (WHERE l.id IS NULL AND a.token <> $(v2 'md5(a.id::text)')),
	                   count(*))
	            FROM accounts a LEFT JOIN $LAST_WRITE l USING (id)")
	check "$1: rows (last write target: holds it; legacy: holds it or its conversion; unwritten: converted original)" \
		"$counts" "target_mismatch=0 legacy_mismatch=0 unwritten_mismatch=0 rows=$ROWS"
	[[ $counts == "target_mismatch=0 legacy_mismatch=0 unwritten_mismatch=0 rows=$ROWS" ]] && return
	# Which rows, and whether they hold an overwritten value or its conversion (another snapshot).
	bad=$(q "SELECT a.id, a.token, l.value AS last_value,
	                EXISTS (SELECT FROM writes w WHERE w.id = a.id AND w.seq < l.seq
	                        AND a.token IN (w.value, $(v2 w.value))) AS from_an_overwritten_write,
	                a.token IN (md5(a.id::text), $(v2 'md5(a.id::text)')) AS from_the_original
	         FROM accounts a JOIN $LAST_WRITE l USING (id)
	         WHERE a.token <> l.value AND (l.value LIKE 'v2:%' OR a.token <> $(v2 l.value))
	         ORDER BY a.id LIMIT 10")
	say "offending rows (id|token|last value|from an overwritten write|from the original):"$'\n'"$bad"
}

TOTAL_CONFLICTS=0 TOTAL_DURING=0
for ((round = 1; round <= ROUNDS; round++)); do
	if ((round > 1)); then
		q "WITH u AS (UPDATE accounts SET token = md5(id::text || '/reset $round') RETURNING id, token)
		   INSERT INTO writes (id, value) SELECT id, token FROM u" >/dev/null
	fi
	seq_start=$(q "SELECT max(seq) FROM writes")
	legacy_before=$(q "SELECT count(*) FROM accounts WHERE token NOT LIKE 'v2:%'")
	JOB=$(q "SELECT start_backfill('accounts', 'token', 'v2')")
	state=$(wait_state "$JOB" 120)
	during=$(($(q "SELECT max(seq) FROM writes") - seq_start))
	kill -0 "$PGBENCH_PID" 2>/dev/null || { cat "$PGBENCH_LOG"; die "pgbench ended by itself during job $JOB"; }
	check "round $round: job $JOB's state" "$state" "done"
	conflicts=$(job_field "$JOB" conflicts)
	TOTAL_CONFLICTS=$((TOTAL_CONFLICTS + conflicts)) TOTAL_DURING=$((TOTAL_DURING + during))
	say "round $round: $legacy_before legacy rows at the start, ~$during writes during the job; $(job_line "$JOB")"
	check "round $round: job $JOB's rows_scanned (every key once)" "$(job_field "$JOB" rows_scanned)" "$ROWS"
	check_rows "round $round, writers running"
done
sleep "$TAIL_SECONDS"
stop_writers
if grep -qiE 'error|abort' "$PGBENCH_LOG"; then
	cat "$PGBENCH_LOG"
	die "pgbench reported errors"
fi
say "writes committed while jobs ran: ~$TOTAL_DURING; in all: $(q "SELECT count(*) FROM writes") on $(q "SELECT count(DISTINCT id) FROM writes") rows"
say "conflicts of the $ROUNDS jobs (a writer changed a row between a batch's read and its write): $TOTAL_CONFLICTS"
((TOTAL_DURING > 1000)) || die "too few writes during the jobs ($TOTAL_DURING) to prove anything"
check "some batch met a live writer (conflicts > 0 over $ROUNDS jobs)" "$((TOTAL_CONFLICTS > 0))" 1
check_rows "writers stopped"

LEFT=$(q "SELECT count(*) FROM accounts WHERE token NOT LIKE 'v2:%'")
say "legacy rows left behind (written as legacy after the last job passed them): $LEFT"
JOB2=$(q "SELECT start_backfill('accounts', 'token', 'v2')")
check "last job (writers stopped)" "$(wait_state "$JOB2" 120)" "done"
say "last job: $(job_line "$JOB2")"
check "last job converted exactly the legacy rows left behind" "$(job_field "$JOB2" rows_converted)" "$LEFT"
check "last job's conflicts" "$(job_field "$JOB2" conflicts)" 0
check "legacy rows left" "$(q "SELECT count(*) FROM accounts WHERE token NOT LIKE 'v2:%'")" 0
check "rows that are not the conversion of their last value" \
	"$(q "SELECT count(*) FROM accounts a LEFT JOIN $LAST_WRITE l USING (id)
	      WHERE a.token <> CASE WHEN l.value IS NULL THEN $(v2 'md5(a.id::text)')
	                            WHEN l.value LIKE 'v2:%' THEN l.value ELSE $(v2 l.value) END")" 0
check "row count" "$(q "SELECT count(*) FROM accounts")" "$ROWS"
check "server log has no PANIC" "$(grep -c PANIC "$OWN_CLUSTER/server.log" || true)" 0
check "processes terminated by a signal" "$(signal_deaths)" 0
finish
