#!/usr/bin/env bash
# A table move users_v1 -> users_v2 (another key name and type, a column dropped, a column of V2's own,
# the token converted 'v1:<base64>' -> 'v2:<plain>') done as a migration while the application writes
# both tables through every phase: pgbench clients insert, update and delete rows of V1 from the start
# to the contract, and from the point of no return others insert, update and delete rows of V2 (reading
# a row through users_v2_read() first, as a writer of V2 does while cold rows are still in V1 only).
# Deadlocks between a writer of V1 and one of V2 on the same row are retried by pgbench (--max-tries):
# an error the client sees and retries, never a lost write.
#
# Ground truth: every application transaction records what it wrote (or that it deleted) in `truth`, in
# the same transaction, after the row it wrote (whose lock orders concurrent writers of one row), and
# only when its write found the row: `truth` holds the last committed state of every row.
#
# At the end V2 must be exactly the truth: every row not deleted, with its last email and its token
# converted; no deleted row back; no legacy token. The verifying step (V1 and V2 compared row by row)
# passes while both writers run; the contract drops the mirrors while V2's writers go on.
#
# Runs on the shared cluster (PGHOST/PGPORT/PGUSER, library preloaded), in a database of its own.
set -euo pipefail
# shellcheck source=lib/crash_common.bash
source "$(dirname "$(realpath "$0")")/lib/crash_common.bash"

: "${PGHOST:?PGHOST of the shared cluster}" "${PGPORT:?PGPORT of the shared cluster}"
export PGUSER=${PGUSER:-postgres}
TEST_DB=mext_crash_table_move_$$
ROWS=${TABLE_MOVE_ROWS:-20000}
PGBENCH=$PG_BINDIR/pgbench
WORK=$(cluster_mktemp)
V1_PID=
V2_PID=

cleanup() {
	local rc=$?
	for pid in $V1_PID $V2_PID; do
		kill "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
	DB=postgres q_try "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '$TEST_DB'" >/dev/null || true
	DB=postgres q_try "DROP DATABASE IF EXISTS $TEST_DB WITH (FORCE)" >/dev/null ||
		say "warning: could not drop database $TEST_DB"
	rm -rf "$WORK"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

DB=postgres
q "CREATE DATABASE $TEST_DB" >/dev/null
DB=$TEST_DB
say "database $DB on $PGHOST:$PGPORT, $ROWS users"

# ------------------------------------------------------------------ V1, V2 and the truth
q "CREATE EXTENSION migration_ext" >/dev/null
q "CREATE TABLE users_v1 (id int PRIMARY KEY, token text NOT NULL, email text, legacy_note text DEFAULT 'v1')" >/dev/null
q "INSERT INTO users_v1 (id, token, email)
   SELECT g, 'v1:' || encode(('t' || g)::bytea, 'base64'), 'e' || g FROM generate_series(1, $ROWS) g" >/dev/null
q "CREATE TABLE users_v2 (user_id bigint PRIMARY KEY, token text NOT NULL, email text, tier text DEFAULT 'basic')" >/dev/null
q "CREATE SEQUENCE new_ids START 1000000" >/dev/null
q "CREATE TABLE truth (id bigint PRIMARY KEY, email text, plain text, deleted boolean NOT NULL, writes bigint NOT NULL)" >/dev/null
q "INSERT INTO truth SELECT g, 'e' || g, 't' || g, false, 0 FROM generate_series(1, $ROWS) g" >/dev/null
q "VACUUM ANALYZE users_v1, truth" >/dev/null
q "CREATE FUNCTION get_email(bigint) RETURNS text LANGUAGE sql STABLE AS \$\$ SELECT email FROM users_v1 WHERE id = \$1 \$\$" >/dev/null
q "SELECT freeze_function('get_email(bigint)')" >/dev/null
q "SELECT create_codec('v2', 'strip_prefix:v1:|base64_decode|add_prefix:v2:', marker => 'v2:', detect => 'absent')" >/dev/null

# ------------------------------------------------------------------ the application
# Writers of V1: legacy tokens. Each records its write in truth only if it found its row.
cat >"$WORK/v1_update.sql" <<'SQL'
\set id random(1, :rows)
\set r random(1, 1000000000)
BEGIN;
WITH w AS (UPDATE users_v1 SET email = 'u1-' || :r, token = 'v1:' || encode(('p' || :r)::bytea, 'base64')
           WHERE id = :id RETURNING id)
INSERT INTO truth AS t SELECT id, 'u1-' || :r, 'p' || :r, false, 1 FROM w
  ON CONFLICT (id) DO UPDATE SET email = excluded.email, plain = excluded.plain, writes = t.writes + 1;
COMMIT;
SQL
cat >"$WORK/v1_insert.sql" <<'SQL'
\set r random(1, 1000000000)
BEGIN;
WITH w AS (INSERT INTO users_v1 (id, token, email)
           VALUES (nextval('new_ids'), 'v1:' || encode(('n' || :r)::bytea, 'base64'), 'i1-' || :r) RETURNING id)
INSERT INTO truth SELECT id, 'i1-' || :r, 'n' || :r, false, 1 FROM w;
COMMIT;
SQL
cat >"$WORK/v1_delete.sql" <<'SQL'
\set id random(1, :rows)
BEGIN;
WITH w AS (DELETE FROM users_v1 WHERE id = :id RETURNING id)
INSERT INTO truth AS t SELECT id, NULL, NULL, true, 1 FROM w
  ON CONFLICT (id) DO UPDATE SET deleted = true, writes = t.writes + 1;
COMMIT;
SQL
# Writers of V2 (from the point of no return): new-format tokens; a row nobody touched is read through
# into V2 first.
cat >"$WORK/v2_update.sql" <<'SQL'
\set id random(1, :rows)
\set r random(1, 1000000000)
BEGIN;
SELECT count(*) FROM users_v2_read(:id);
WITH w AS (UPDATE users_v2 SET email = 'u2-' || :r, token = 'v2:q' || :r WHERE user_id = :id RETURNING user_id)
INSERT INTO truth AS t SELECT user_id, 'u2-' || :r, 'q' || :r, false, 1 FROM w
  ON CONFLICT (id) DO UPDATE SET email = excluded.email, plain = excluded.plain, writes = t.writes + 1;
COMMIT;
SQL
cat >"$WORK/v2_insert.sql" <<'SQL'
\set r random(1, 1000000000)
BEGIN;
WITH w AS (INSERT INTO users_v2 (user_id, token, email) VALUES (nextval('new_ids'), 'v2:m' || :r, 'i2-' || :r)
           RETURNING user_id)
INSERT INTO truth SELECT user_id, 'i2-' || :r, 'm' || :r, false, 1 FROM w;
COMMIT;
SQL
cat >"$WORK/v2_delete.sql" <<'SQL'
\set id random(1, :rows)
BEGIN;
SELECT count(*) FROM users_v2_read(:id);
WITH w AS (DELETE FROM users_v2 WHERE user_id = :id RETURNING user_id)
INSERT INTO truth AS t SELECT user_id, NULL, NULL, true, 1 FROM w
  ON CONFLICT (id) DO UPDATE SET deleted = true, writes = t.writes + 1;
COMMIT;
SQL
chmod 644 "$WORK"/*.sql

start_writers() { # start_writers <label> <prefix>: 2 clients until stopped
	"$PGBENCH" -n -c 2 -j 2 -T 600 --max-tries=20 -D rows="$ROWS" \
		-f "$WORK/$2_update.sql@6" -f "$WORK/$2_insert.sql@2" -f "$WORK/$2_delete.sql@1" \
		"$DB" >"$WORK/$1.log" 2>&1 &
}
stop_writers() { # stop_writers <pid> <label>: an interrupted transaction rolls back, truth with it
	kill -0 "$1" 2>/dev/null || die "$2 ended early: $(tail -n 5 "$WORK/$2.log")"
	kill -TERM "$1" 2>/dev/null || true
	wait "$1" 2>/dev/null || true
	say "$2 stopped"
}
writes() { q "SELECT sum(writes) FROM truth"; }
LAST_WRITES=0
# step <name> <sql>: one step of the migration while the writers run; the application must have
# written since the previous step.
step() {
	local out now
	out=$(q "$2") || die "$1 failed"
	sleep 1.5
	now=$(writes)
	say "$1: ${out:-ok} (application writes since the last step: $((now - LAST_WRITES)))"
	((now > LAST_WRITES)) || die "the application wrote nothing during '$1' (see $WORK)"
	LAST_WRITES=$now
}

start_writers v1_writers v1
V1_PID=$!
wait_for 30 q_true "SELECT sum(writes) > 0 FROM truth" || die "the application never wrote ($(tail -n 5 "$WORK/v1_writers.log"))"
LAST_WRITES=$(writes)

# ------------------------------------------------------------------ the migration, writers running
step "create_migration (the forward mirror)" "SELECT create_migration('users', 'users_v1', 'token', 'v2',
	target_relation => 'users_v2', column_map => '{\"user_id\": \"id\"}')"
check "V2 rows written by the mirror so far are V1's, converted" \
	"$(q "SELECT count(*) FROM users_v2 b LEFT JOIN users_v1 a ON a.id = b.user_id
	      WHERE a.id IS NULL OR b.token IS DISTINCT FROM migrate_value('v2', a.token) OR b.email IS DISTINCT FROM a.email")" 0
step "plan reader" "SELECT plan_swap('users', 'get_email(bigint)', \$\$ SELECT email FROM users_v2_read(\$1) \$\$, language => 'sql')"
step "advance (readers tolerant)" "SELECT advance_migration('users')"
wait_for 30 q_true "SELECT settled FROM migration_status WHERE name = 'users'" ||
	die "the reader swap never settled: $(q "SELECT waiting_for FROM migration_status WHERE name = 'users'")"
step "advance through the door (the backward mirror)" "SELECT advance_migration('users', confirm => 'users')"
start_writers v2_writers v2
V2_PID=$!
step "writers of V2 started" "SELECT 'v2 writers running'"
# Capped so that the sweep and the writers overlap for several seconds.
step "start the sweep" "SELECT start_backfill('users', max_rows_per_second => 5000)"
JOB=$(q "SELECT job FROM migration_status WHERE name = 'users'")
wait_for 400 q_true "SELECT state IN ('done', 'failed', 'cancelled') FROM backfill_status WHERE job = $JOB" ||
	die "the sweep did not finish: $(q "SELECT migration_ext.progress_line($JOB)")"
check "the sweep's state" "$(q "SELECT state FROM backfill_status WHERE job = $JOB")" done
step "sweep done" "SELECT format('scanned %s copied %s already in V2 %s', rows_scanned, rows_converted, rows_skipped)
	FROM backfill_status WHERE job = $JOB"
step "verify (V1 and V2 compared, writers running)" "SELECT advance_migration('users')"
stop_writers "$V1_PID" v1_writers
V1_PID=
step "contract (mirrors dropped, V2's writers running)" "SELECT advance_migration('users')"
stop_writers "$V2_PID" v2_writers
V2_PID=

# ------------------------------------------------------------------ every row
# A client whose transaction failed for good (an error, or a deadlock retried --max-tries times) aborts,
# and says so in the log; retried deadlocks are silent.
for side in v1_writers v2_writers; do
	check "$side: clients aborted" "$(grep -c 'aborted' "$WORK/$side.log" || true)" 0
done
check "rows written during the run: updated, inserted and deleted on each side, all > 0" \
	"$(q "SELECT count(*) FILTER (WHERE email LIKE 'u1-%') > 0 AND count(*) FILTER (WHERE email LIKE 'i1-%') > 0
	       AND count(*) FILTER (WHERE email LIKE 'u2-%') > 0 AND count(*) FILTER (WHERE email LIKE 'i2-%') > 0
	       AND count(*) FILTER (WHERE deleted) > 0 FROM truth")" t
check "rows of V2 that are not the last write (missing, different, or a deleted row back)" \
	"$(q "SELECT count(*) FROM truth t FULL JOIN users_v2 b ON b.user_id = t.id
	      WHERE (t.deleted AND b.user_id IS NOT NULL) OR (NOT t.deleted AND b.user_id IS NULL) OR t.id IS NULL
	         OR (NOT t.deleted AND (b.email IS DISTINCT FROM t.email OR b.token IS DISTINCT FROM 'v2:' || t.plain))")" 0
q "SELECT 'mismatch: ' || row(t.*)::text || ' v2=' || coalesce(row(b.*)::text, 'none') || ' v1=' ||
	       coalesce((SELECT row(a.*)::text FROM users_v1 a WHERE a.id = coalesce(t.id, b.user_id)), 'none')
   FROM truth t FULL JOIN users_v2 b ON b.user_id = t.id
   WHERE (t.deleted AND b.user_id IS NOT NULL) OR (NOT t.deleted AND b.user_id IS NULL) OR t.id IS NULL
      OR (NOT t.deleted AND (b.email IS DISTINCT FROM t.email OR b.token IS DISTINCT FROM 'v2:' || t.plain))
   ORDER BY coalesce(t.id, b.user_id) LIMIT 10"
check "legacy tokens in V2" "$(q "SELECT count_legacy('users_v2', 'token', 'v2')")" 0
check "V2's own column got its default" "$(q "SELECT count(*) FROM users_v2 WHERE tier IS DISTINCT FROM 'basic'")" 0
check "mirrors left" "$(q "SELECT count(*) FROM pg_trigger WHERE tgrelid IN ('users_v1'::regclass, 'users_v2'::regclass) AND NOT tgisinternal")" 0
check "migration phase" "$(q "SELECT phase || '/' || job_state FROM migration_status WHERE name = 'users'")" contracted/done
check "migration_history" \
	"$(q "SELECT string_agg(event || coalesce(':' || to_phase, ''), ' ' ORDER BY id) FROM migration_history WHERE migration = 'users'")" \
	"create:planned mirror helpers swap advance:tolerant read_check mirror advance:producing backfill:backfilling verify advance:converted drop_mirror advance:contracted"
say "users_v2: $(q "SELECT count(*) FROM users_v2") rows; truth: $(q "SELECT count(*) FILTER (WHERE deleted) || ' deleted, ' || sum(writes) || ' writes' FROM truth")"
finish
