#!/usr/bin/env bash
# A column rename full_name -> display_name done ONLINE (SOURCES.md 4: expand -> migrate -> contract)
# while a live application never stops: 4 pgbench clients keep renaming random people, inserting new
# ones and reading names, only through the frozen functions callers use:
#   get_person_name(bigint)        the reader
#   set_person_name(bigint, text)  the writer of an existing person
#   add_person(text) -> bigint     the writer of a new person
# Steps, each with the writer running: expand (ADD COLUMN display_name), the mirror (dual-write
# trigger), the migration (reader swap to coalesce(display_name, full_name), writer swaps), the door,
# the backfill, the verifying scan, the reader flip to display_name, the contract (NOT NULL, mirror
# dropped). Afterwards: every row's display_name (and full_name) is the last name the application
# wrote for it, no reader ever got NULL for an existing person, no pgbench client aborted, the mirror
# is gone and display_name is NOT NULL.
#
# The writer design past the door: the writer swaps write BOTH columns, the same value. Until
# full_name is dropped (a later contract, once nothing reads it), it stays the column the mirror copies
# from and the column any reader that was never flipped (an old version restored by revert_function,
# a session still on the old body) reads; writing both keeps the two columns equal at every instant, so
# the validation "no row where display_name IS DISTINCT FROM full_name" is exact, and it does not need
# full_name's NOT NULL dropped. Writing only display_name would leave full_name stale for those
# readers (and a new person would need full_name nullable).
#
# Ground truth: each application transaction records the name it wrote in name_truth in the same
# transaction, after the people row (whose row lock orders concurrent writers of one person), so
# name_truth holds the last committed name of every person.
#
# Runs on the shared cluster (PGHOST/PGPORT/PGUSER, library preloaded), in a database of its own.
# Bounded: the writer runs for WRITER_SECONDS, the migration must finish inside that window.
set -euo pipefail
# shellcheck source=lib/crash_common.bash
source "$(dirname "$(realpath "$0")")/lib/crash_common.bash"

: "${PGHOST:?PGHOST of the shared cluster}" "${PGPORT:?PGPORT of the shared cluster}"
export PGUSER=${PGUSER:-postgres}
TEST_DB=mext_crash_rename_$$
ROWS=${RENAME_ROWS:-100000}
CLIENTS=4
WRITER_SECONDS=${RENAME_WRITER_SECONDS:-60}
PGBENCH=$PG_BINDIR/pgbench
WORK=$(cluster_mktemp)
PGBENCH_PID=

cleanup() {
	local rc=$?
	if [[ -n $PGBENCH_PID ]]; then
		kill "$PGBENCH_PID" 2>/dev/null || true
		wait "$PGBENCH_PID" 2>/dev/null || true
	fi
	# Stop this database's backfill worker before dropping it (FORCE only terminates client backends).
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
say "database $DB on $PGHOST:$PGPORT, $ROWS people, $CLIENTS clients for ${WRITER_SECONDS} s"

# ------------------------------------------------------------------ the legacy world
q "CREATE EXTENSION migration_ext" >/dev/null
q "CREATE TABLE people (id bigserial PRIMARY KEY, full_name text NOT NULL, email text)" >/dev/null
q "INSERT INTO people (id, full_name) SELECT g, 'Person ' || g FROM generate_series(1, $ROWS) g" >/dev/null
q "SELECT setval('people_id_seq', $ROWS)" >/dev/null
q "CREATE TABLE name_truth (id bigint PRIMARY KEY, name text NOT NULL, writes bigint NOT NULL DEFAULT 0)" >/dev/null
q "INSERT INTO name_truth SELECT id, full_name FROM people" >/dev/null
q "CREATE TABLE bad_reads (id bigint, at timestamptz DEFAULT clock_timestamp())" >/dev/null
q "VACUUM ANALYZE people, name_truth" >/dev/null
q "CREATE FUNCTION get_person_name(bigint) RETURNS text LANGUAGE sql STABLE
     AS \$\$ SELECT full_name FROM people WHERE id = \$1 \$\$" >/dev/null
q "CREATE FUNCTION set_person_name(bigint, text) RETURNS void LANGUAGE sql
     AS \$\$ UPDATE people SET full_name = \$2 WHERE id = \$1 \$\$" >/dev/null
q "CREATE FUNCTION add_person(text) RETURNS bigint LANGUAGE sql
     AS \$\$ INSERT INTO people (full_name) VALUES (\$1) RETURNING id \$\$" >/dev/null
for fn in 'get_person_name(bigint)' 'set_person_name(bigint,text)' 'add_person(text)'; do
	q "SELECT freeze_function('$fn')" >/dev/null
done

# ------------------------------------------------------------------ the live application
# Renames and reads target the original people (1..ROWS, never deleted): a person always exists, so a
# NULL read is a broken reader, recorded in bad_reads.
cat >"$WORK/rename.sql" <<'SQL'
\set id random(1, :rows)
\set r random(1, 1000000000)
BEGIN;
SELECT set_person_name(:id, 'R' || :client_id || '-' || :r);
INSERT INTO name_truth AS t VALUES (:id, 'R' || :client_id || '-' || :r, 1)
  ON CONFLICT (id) DO UPDATE SET name = excluded.name, writes = t.writes + 1;
COMMIT;
\set rid random(1, :rows)
SELECT get_person_name(:rid) IS NULL AS bad_read \gset
\if :bad_read
INSERT INTO bad_reads (id) VALUES (:rid);
\endif
SQL
cat >"$WORK/add.sql" <<'SQL'
\set r random(1, 1000000000)
BEGIN;
SELECT add_person('N' || :client_id || '-' || :r) AS new_id \gset
INSERT INTO name_truth VALUES (:new_id, 'N' || :client_id || '-' || :r, 1);
COMMIT;
SQL
chmod 644 "$WORK"/*.sql
"$PGBENCH" -n -c "$CLIENTS" -j 2 -T "$WRITER_SECONDS" -D rows="$ROWS" \
	-f "$WORK/rename.sql@4" -f "$WORK/add.sql@1" "$DB" >"$WORK/pgbench.log" 2>&1 &
PGBENCH_PID=$!

writes() { q "SELECT sum(writes) FROM name_truth"; }
writer_alive() { kill -0 "$PGBENCH_PID" 2>/dev/null; }
LAST_WRITES=0
# step <name> <sql>: runs one step of the migration while the writer runs; says how many writes the
# application committed since the previous step.
step() {
	local out now
	writer_alive || die "the pgbench writer ended before '$1' (raise RENAME_WRITER_SECONDS?)"
	out=$(q "$2") || die "$1 failed"
	now=$(writes)
	say "$1: ${out:-ok} (application writes since the last step: $((now - LAST_WRITES)))"
	LAST_WRITES=$now
}
wait_for 30 q_true "SELECT sum(writes) > 0 FROM name_truth" || die "the application never wrote ($(tail -n 5 "$WORK/pgbench.log"))"
sleep 1
LAST_WRITES=$(writes)

# ------------------------------------------------------------------ expand
step "expand: ADD COLUMN display_name" "ALTER TABLE people ADD COLUMN display_name text"
step "codec" "SELECT create_codec('copy', 'const:', detect => 'null')"
sleep 1
step "mirror" "SELECT create_mirror('people', 'full_name', 'display_name', 'copy')"
sleep 1
check "writes since the mirror landed in both columns (renamed rows and new rows with display_name = full_name)" \
	"$(q "SELECT count(*) FILTER (WHERE display_name IS DISTINCT FROM full_name) FROM people WHERE display_name IS NOT NULL")" 0

# ------------------------------------------------------------------ migrate
step "create_migration" "SELECT create_migration('rename', 'people', 'display_name', 'copy', source_column => 'full_name')"
step "plan reader" "SELECT plan_swap('rename', 'get_person_name(bigint)',
	\$\$ SELECT coalesce(display_name, full_name) FROM people WHERE id = \$1 \$\$, role => 'reader')"
step "plan writer set_person_name" "SELECT plan_swap('rename', 'set_person_name(bigint,text)',
	\$\$ UPDATE people SET full_name = \$2, display_name = \$2 WHERE id = \$1 \$\$, role => 'writer')"
step "plan writer add_person" "SELECT plan_swap('rename', 'add_person(text)',
	\$\$ INSERT INTO people (full_name, display_name) VALUES (\$1, \$1) RETURNING id \$\$, role => 'writer')"
step "advance (readers tolerant)" "SELECT advance_migration('rename')"
wait_for 30 q_true "SELECT settled FROM migration_status WHERE name = 'rename'" ||
	die "the reader swap never settled: $(q "SELECT waiting_for FROM migration_status WHERE name = 'rename'")"
sleep 1
step "advance through the door" "SELECT advance_migration('rename', confirm => 'rename')"
sleep 1
# Capped so that the backfill and the writer overlap for a few seconds (and fight over rows).
JOB=$(q "SELECT start_backfill('rename', max_rows_per_second => 25000)")
say "backfill job $JOB started"
check "wait_backfill" "$(q "SELECT wait_backfill($JOB, interval '90 seconds')")" "done"
step "backfill done" "SELECT format('scanned %s converted %s skipped %s conflicts %s batches %s',
	rows_scanned, rows_converted, rows_skipped, conflicts, batches) FROM backfill_status WHERE job = $JOB"
step "verify (advance to converted)" "SELECT advance_migration('rename')"
step "flip the reader to display_name" "SELECT swap_function('get_person_name(bigint)',
	\$\$ SELECT display_name FROM people WHERE id = \$1 \$\$, note => 'read display_name')"
sleep 1
check "validate: rows where display_name IS DISTINCT FROM full_name (the writer still running)" \
	"$(q "SELECT count(*) FROM people WHERE display_name IS DISTINCT FROM full_name")" 0

# ------------------------------------------------------------------ contract
step "contract" "SELECT advance_migration('rename')"
CONTRACTED_AT_WRITES=$LAST_WRITES
check "the writer was still running after the contract" "$(writer_alive && echo yes || echo no)" yes

say "waiting for the writer to end (-T $WRITER_SECONDS)"
rc=0
wait "$PGBENCH_PID" || rc=$?
PGBENCH_PID=
say "pgbench: $(grep -E '^number of transactions actually processed|^number of failed|^tps' "$WORK/pgbench.log" | tr '\n' ';')"
check "pgbench exit status" "$rc" 0
check "pgbench clients aborted" "$(grep -c 'aborted' "$WORK/pgbench.log" || true)" 0
check "the application wrote after the contract" \
	"$(q "SELECT sum(writes) > $CONTRACTED_AT_WRITES FROM name_truth")" t
if ((rc != 0)); then tail -n 20 "$WORK/pgbench.log"; fi

# ------------------------------------------------------------------ every row
check "people without a recorded name / names without a person" \
	"$(q "SELECT count(*) FILTER (WHERE p.id IS NULL) || '/' || count(*) FILTER (WHERE t.id IS NULL)
	      FROM people p FULL JOIN name_truth t USING (id)")" 0/0
check "rows whose display_name is not the last name written" \
	"$(q "SELECT count(*) FROM people p JOIN name_truth t USING (id) WHERE p.display_name IS DISTINCT FROM t.name")" 0
check "rows whose full_name is not the last name written" \
	"$(q "SELECT count(*) FROM people p JOIN name_truth t USING (id) WHERE p.full_name IS DISTINCT FROM t.name")" 0
check "rows get_person_name() reads wrong" \
	"$(q "SELECT count(*) FROM people p JOIN name_truth t USING (id) WHERE get_person_name(p.id) IS DISTINCT FROM t.name")" 0
check "reads that returned NULL for an existing person" "$(q "SELECT count(*) FROM bad_reads")" 0
check "people renamed during the run / inserted during the run, both > 0" \
	"$(q "SELECT (count(*) FILTER (WHERE name LIKE 'R%') > 0) AND (count(*) FILTER (WHERE name LIKE 'N%') > 0) FROM name_truth")" t
check "migration phase" "$(q "SELECT phase || '/' || job_state FROM migration_status WHERE name = 'rename'")" contracted/done
check "display_name NOT NULL" \
	"$(q "SELECT attnotnull FROM pg_attribute WHERE attrelid = 'people'::regclass AND attname = 'display_name'")" t
check "triggers left on people (the mirror is gone)" \
	"$(q "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'people'::regclass AND NOT tgisinternal")" 0
check "drop_mirror after the contract refuses" \
	"$(q "SELECT drop_mirror('people', 'full_name', 'display_name')" 2>&1 | grep -c 'no mirror from' || true)" 1
check "migration_history" \
	"$(q "SELECT string_agg(event || coalesce(':' || to_phase, ''), ' ' ORDER BY id) FROM migration_history WHERE migration = 'rename'")" \
	"create:planned swap advance:tolerant read_check swap swap advance:producing backfill:backfilling advance:converted read_check drop_mirror advance:contracted"
say "people: $(q "SELECT count(*) FROM people") rows, $(q "SELECT count(*) FROM people WHERE id > $ROWS") inserted during the run"
finish
