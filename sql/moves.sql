-- Column and table moves (SOURCES.md 2, 3 and 4), each through the frozen functions callers use:
--   1. a new required field: added nullable, repaired on read, backfilled, then NOT NULL;
--   2. a rename full_name -> display_name with a dual-write mirror, expand -> migrate -> contract;
--   3. V1 and V2 tables coexisting: a read-through reader, then the final sweep with target_relation.
-- Output is booleans, counts and messages only; every wait is wait_backfill().
\set VERBOSITY default
\set SHOW_CONTEXT never
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS migration_ext CASCADE;
DROP SCHEMA IF EXISTS mv CASCADE;
RESET client_min_messages;
CREATE EXTENSION migration_ext;
-- Waits print no progress NOTICEs: their figures differ from run to run.
SET migration_ext.wait_progress = off;
-- In a schema of its own; the extension itself stays in public.
CREATE SCHEMA mv;
SET search_path = mv, public;

------------------------------------------------------------------------------------------------------
-- 1. A new required field (SOURCES.md 3): orders get a status. Callers read it through
--    order_status(bigint) and create orders through place_order(bigint); neither can change.
------------------------------------------------------------------------------------------------------
CREATE TABLE orders (id bigint PRIMARY KEY, amount int NOT NULL);
INSERT INTO orders SELECT g, g * 10 FROM generate_series(1, 1000) g;
-- Expand: nullable, instant. Some orders get a status from a new code path; the rest have none.
ALTER TABLE orders ADD COLUMN status text;
UPDATE orders SET status = 'shipped' WHERE id % 10 = 0;
CREATE FUNCTION order_status(bigint) RETURNS text LANGUAGE sql STABLE
	AS $$ SELECT status FROM orders WHERE id = $1 $$;
CREATE FUNCTION place_order(bigint) RETURNS void LANGUAGE sql
	AS $$ INSERT INTO orders (id, amount) VALUES ($1, 0) $$;
SELECT freeze_function('order_status(bigint)');
SELECT freeze_function('place_order(bigint)');
-- NULL is the legacy state; its conversion is the default.
SELECT create_codec('status_default', 'const:pending', detect => 'null');
SELECT is_legacy('status_default', NULL) AS null_is_legacy, migrate_value('status_default', NULL) AS repaired,
       is_legacy('status_default', 'shipped') AS shipped_is_legacy, migrate_value('status_default', 'shipped') AS kept;
CREATE TEMP TABLE had_null AS SELECT id FROM orders WHERE status IS NULL;
SELECT count(*) AS orders_without_status FROM had_null;
SELECT * FROM audit_column('orders', 'status', 'status_default');
-- Before the migration, callers see NULL for those orders.
SELECT count(*) FILTER (WHERE order_status(id) IS NULL) AS read_null FROM orders;

SELECT create_migration('status', 'orders', 'status', 'status_default');
SELECT plan_swap('status', 'order_status(bigint)',
                 $$ SELECT migrate_value('status_default', status) FROM orders WHERE id = $1 $$, role => 'reader');
SELECT plan_swap('status', 'place_order(bigint)',
                 $$ INSERT INTO orders (id, amount, status) VALUES ($1, 0, 'pending') $$, role => 'writer');
-- Readers become tolerant: they repair on read, nothing is written.
SELECT advance_migration('status');
SELECT name, phase, settled, waiting_for, relation, column_name, source_column, codec, readers, writers
FROM migration_status WHERE name = 'status';
SELECT count(*) FILTER (WHERE order_status(id) = 'pending') AS read_pending,
       count(*) FILTER (WHERE order_status(id) = 'shipped') AS read_shipped,
       count(*) FILTER (WHERE order_status(id) IS NULL) AS read_null
FROM orders;
SELECT count(*) AS still_null_in_table FROM orders WHERE status IS NULL;
-- A legacy writer still writes NULL; the tolerant reader repairs it on read.
SELECT place_order(1001);
SELECT status IS NULL AS stored_null, order_status(1001) AS read FROM orders WHERE id = 1001;
-- The door: writers produce the new format (an explicit status).
SELECT advance_migration('status', confirm => 'status');
SELECT place_order(1002);
SELECT status AS stored, order_status(1002) AS read FROM orders WHERE id = 1002;
-- The backfill repairs the cold rows (901 legacy: 900 + the one placed before the door).
SELECT start_backfill('status') AS job_status \gset
SELECT wait_backfill(:job_status, '60 s') AS status_state;
SELECT relation, column_name, source_column, codec, migration, state, rows_scanned, rows_converted, rows_skipped,
       conflicts, last_error
FROM backfill_status WHERE job = :job_status;
-- Verify (zero NULL left), contract: NOT NULL through a validated check that does not stay behind.
SELECT advance_migration('status') AS verified;
SELECT advance_migration('status') AS contract;
SELECT name, phase, job = :job_status AS job_is_the_backfill, job_state, constraint_name
FROM migration_status WHERE name = 'status';
SELECT attnotnull AS status_not_null FROM pg_attribute WHERE attrelid = 'orders'::regclass AND attname = 'status';
SELECT count(*) AS check_constraints FROM pg_constraint WHERE conrelid = 'orders'::regclass AND contype = 'c';
-- Every order that had no status reads 'pending' and stores it; the others are untouched.
SELECT count(*) AS had_null, count(*) FILTER (WHERE order_status(h.id) = 'pending') AS read_pending,
       count(*) FILTER (WHERE o.status = 'pending') AS stored_pending
FROM had_null h JOIN orders o USING (id);
SELECT status, count(*) FROM orders GROUP BY status ORDER BY status;
SELECT * FROM audit_column('orders', 'status', 'status_default');
INSERT INTO orders (id, amount) VALUES (1003, 0);
SELECT place_order(1003);
-- Retreat from contracted drops NOT NULL (and nothing else); advance sets it again.
SELECT retreat_migration('status');
SELECT attnotnull AS status_not_null FROM pg_attribute WHERE attrelid = 'orders'::regclass AND attname = 'status';
SELECT advance_migration('status');
SELECT attnotnull AS status_not_null FROM pg_attribute WHERE attrelid = 'orders'::regclass AND attname = 'status';
SELECT event, from_phase, to_phase, fn, role, detail FROM migration_history WHERE migration = 'status' ORDER BY id;

------------------------------------------------------------------------------------------------------
-- 2. A rename with dual write (SOURCES.md 4): full_name -> display_name. Callers read through
--    get_person_name(bigint) and write through set_person_name(bigint, text) and add_person(bigint, text).
------------------------------------------------------------------------------------------------------
CREATE TABLE people (id bigint PRIMARY KEY, full_name text NOT NULL, email text);
INSERT INTO people SELECT g, 'Person ' || g, NULL FROM generate_series(1, 500) g;
CREATE FUNCTION get_person_name(bigint) RETURNS text LANGUAGE sql STABLE
	AS $$ SELECT full_name FROM people WHERE id = $1 $$;
CREATE FUNCTION set_person_name(bigint, text) RETURNS void LANGUAGE sql
	AS $$ UPDATE people SET full_name = $2 WHERE id = $1 $$;
CREATE FUNCTION add_person(bigint, text) RETURNS void LANGUAGE sql
	AS $$ INSERT INTO people (id, full_name) VALUES ($1, $2) $$;
SELECT freeze_function('get_person_name(bigint)');
SELECT freeze_function('set_person_name(bigint,text)');
SELECT freeze_function('add_person(bigint,text)');

-- Expand: the new column, NULL; a codec that copies as is (NULL is "not yet"); the mirror.
ALTER TABLE people ADD COLUMN display_name text;
SELECT create_codec('copy', 'const:', detect => 'null');
SELECT migrate_value('copy', 'Ada') AS copied, is_legacy('copy', NULL) AS null_is_legacy,
       is_legacy('copy', 'Ada') AS name_is_legacy;
SELECT create_mirror('people', 'full_name', 'display_name', 'copy');
SELECT tgname, tgenabled, pg_get_triggerdef(oid) AS definition
FROM pg_trigger WHERE tgrelid = 'people'::regclass AND NOT tgisinternal;
-- Every write after the mirror lands in both columns: an update of the name, an insert, and an update
-- of another column (the missing copy is filled in).
SELECT set_person_name(1, 'Ada Lovelace');
SELECT add_person(501, 'Grace Hopper');
UPDATE people SET email = 'p2@example.org' WHERE id = 2;
UPDATE people SET full_name = 'Ada King' WHERE id = 1;
SELECT id, full_name, display_name FROM people WHERE id IN (1, 2, 3, 501) ORDER BY id;
SELECT count(*) AS display_name_missing FROM people WHERE display_name IS NULL;

-- The migration: target display_name, converted from source full_name.
SELECT create_migration('rename', 'people', 'display_name', 'copy', source_column => 'full_name');
SELECT name, phase, relation, column_name, source_column, codec FROM migration_status WHERE name = 'rename';
SELECT plan_swap('rename', 'get_person_name(bigint)',
                 $$ SELECT coalesce(display_name, full_name) FROM people WHERE id = $1 $$, role => 'reader');
SELECT plan_swap('rename', 'set_person_name(bigint,text)',
                 $$ UPDATE people SET full_name = $2, display_name = $2 WHERE id = $1 $$, role => 'writer');
SELECT plan_swap('rename', 'add_person(bigint,text)',
                 $$ INSERT INTO people (id, full_name, display_name) VALUES ($1, $2, $2) $$, role => 'writer');
-- The backfill cannot start before the door.
SELECT start_backfill('rename');
SELECT advance_migration('rename');
SELECT count(*) FILTER (WHERE get_person_name(id) = full_name) AS readable FROM people;
SELECT advance_migration('rename', confirm => 'rename');
SELECT set_person_name(3, 'Alan Turing');
SELECT add_person(502, 'Edsger Dijkstra');
SELECT id, full_name, display_name, get_person_name(id) AS read FROM people WHERE id IN (3, 502) ORDER BY id;
-- The cold rows: 4..500 have no display_name yet.
SELECT count(*) AS display_name_missing FROM people WHERE display_name IS NULL;
SELECT start_backfill('rename') AS job_rename \gset
SELECT wait_backfill(:job_rename, '60 s') AS rename_state;
SELECT relation, column_name, source_column, codec, migration, state, rows_scanned, rows_converted, rows_skipped,
       conflicts, last_error
FROM backfill_status WHERE job = :job_rename;
-- A bulk load with triggers off (session_replication_role = replica) slips past the mirror: the
-- verifying scan finds it, and a second backfill converts it (and only it).
SET session_replication_role = replica;
INSERT INTO people (id, full_name) VALUES (503, 'Barbara Liskov');
RESET session_replication_role;
SELECT advance_migration('rename');
SELECT start_backfill('rename') AS job_rename_again \gset
SELECT wait_backfill(:job_rename_again, '60 s') AS rename_again_state;
SELECT rows_scanned, rows_converted, rows_skipped, conflicts FROM backfill_status WHERE job = :job_rename_again;
SELECT advance_migration('rename') AS verified;
-- Flip the reader to the new column (a plain swap of the frozen function), then validate.
SELECT swap_function('get_person_name(bigint)', $$ SELECT display_name FROM people WHERE id = $1 $$,
                     note => 'read display_name');
SELECT count(*) FILTER (WHERE get_person_name(id) = full_name) AS readable, count(*) AS people FROM people;
SELECT count(*) AS display_differs FROM people WHERE display_name IS DISTINCT FROM full_name;
-- Contract: display_name NOT NULL, the mirror trigger dropped.
SELECT advance_migration('rename') AS contract;
SELECT name, phase, job = :job_rename_again AS job_is_the_last_backfill, job_state, constraint_name
FROM migration_status WHERE name = 'rename';
SELECT attname, attnotnull FROM pg_attribute
WHERE attrelid = 'people'::regclass AND attname IN ('full_name', 'display_name') ORDER BY attname;
SELECT count(*) AS user_triggers FROM pg_trigger WHERE tgrelid = 'people'::regclass AND NOT tgisinternal;
SELECT count(*) AS check_constraints FROM pg_constraint WHERE conrelid = 'people'::regclass AND contype = 'c';
-- The flipped writers keep both columns equal without the mirror; a write of full_name alone no longer
-- reaches display_name, and a row without display_name is refused.
SELECT set_person_name(4, 'Donald Knuth');
SELECT full_name, display_name, get_person_name(4) AS read FROM people WHERE id = 4;
UPDATE people SET full_name = 'Person five' WHERE id = 5;
SELECT full_name, display_name FROM people WHERE id = 5;
INSERT INTO people (id, full_name) VALUES (600, 'No Display');
SELECT event, from_phase, to_phase, fn, role, detail FROM migration_history WHERE migration = 'rename' ORDER BY id;
SELECT version, role, note, migration, is_current FROM function_history
WHERE fn = 'get_person_name(bigint)'::regprocedure ORDER BY version;

-- drop_mirror: the contract dropped it already; a pair never mirrored; then a mirror created and dropped.
SELECT drop_mirror('people', 'full_name', 'display_name');
SELECT drop_mirror('people', 'email', 'display_name');
SELECT create_mirror('people', 'email', 'full_name', 'copy');
SELECT count(*) AS user_triggers FROM pg_trigger WHERE tgrelid = 'people'::regclass AND NOT tgisinternal;
SELECT drop_mirror('people', 'email', 'full_name');
SELECT count(*) AS user_triggers FROM pg_trigger WHERE tgrelid = 'people'::regclass AND NOT tgisinternal;
SELECT drop_mirror('no_such_table', 'email', 'full_name');

-- create_mirror refuses: the same column twice, a missing column (either side), an unknown codec, a
-- duplicate.
CREATE TABLE mirrored (id int PRIMARY KEY, src text, dst text, n int);
SELECT create_mirror('mirrored', 'src', 'src', 'copy');
SELECT create_mirror('mirrored', 'src', 'no_such_column', 'copy');
SELECT create_mirror('mirrored', 'no_such_column', 'dst', 'copy');
SELECT create_mirror('mirrored', 'src', 'dst', 'no_such_codec');
SELECT create_mirror('mirrored', 'src', 'dst', 'copy');
SELECT create_mirror('mirrored', 'src', 'dst', 'copy');
SELECT count(*) AS user_triggers FROM pg_trigger WHERE tgrelid = 'mirrored'::regclass AND NOT tgisinternal;
-- The mirror's own contract: a write that sets the target itself and leaves the source alone (a writer
-- already flipped) is kept as written. An update ...
INSERT INTO mirrored VALUES (1, 'one', NULL);
UPDATE mirrored SET dst = 'flipped' WHERE id = 1;
-- ... and an insert that gives only the target.
INSERT INTO mirrored (id, dst) VALUES (2, 'only the target');
INSERT INTO mirrored (id, src, dst) VALUES (3, 'source wins', 'stale');
SELECT id, quote_nullable(src) AS src, quote_nullable(dst) AS dst FROM mirrored ORDER BY id;
SELECT drop_mirror('mirrored', 'src', 'dst');

------------------------------------------------------------------------------------------------------
-- 3. V1 and V2 tables coexisting (SOURCES.md 2). users_v1 holds legacy tokens (stored reversed);
--    users_v2 holds 'v2:' tokens. Callers read through get_user(bigint).
------------------------------------------------------------------------------------------------------
SELECT create_codec('v2', 'reverse|add_prefix:v2:', 'v2:', 'absent');
CREATE TABLE users_v1 (id bigint PRIMARY KEY, token text NOT NULL, email text);
INSERT INTO users_v1 SELECT g, 'tok' || g, 'u' || g || '@example.org' FROM generate_series(1, 300) g;
CREATE TABLE users_v2 (id bigint PRIMARY KEY, token text NOT NULL, email text, migrated_by text DEFAULT 'sweep');
CREATE FUNCTION get_user(bigint) RETURNS text LANGUAGE sql
	AS $$ SELECT token FROM users_v1 WHERE id = $1 $$;
SELECT freeze_function('get_user(bigint)');
-- The tolerant body: read V2, fall back to V1, convert, write V2 (the key decides; never overwrite).
SELECT swap_function('get_user(bigint)', $$
  WITH hit AS (SELECT token FROM users_v2 WHERE id = $1),
       miss AS (INSERT INTO users_v2 (id, token, email, migrated_by)
                SELECT id, migrate_value('v2', token), email, 'read-through' FROM users_v1
                WHERE id = $1 AND NOT EXISTS (SELECT FROM hit)
                ON CONFLICT DO NOTHING RETURNING token)
  SELECT token FROM hit UNION ALL SELECT token FROM miss $$, note => 'read-through', language => 'sql');
-- A read of an id only in V1 returns the converted value, and leaves the row in V2.
SELECT EXISTS (SELECT FROM users_v2 WHERE id = 7) AS in_v2_before;
SELECT get_user(7) AS first_read;
SELECT id, token, email, migrated_by FROM users_v2 WHERE id = 7;
-- The second read comes from V2: V1 changing afterwards does not show (and V2 is not written again).
UPDATE users_v1 SET token = 'tok7changed' WHERE id = 7;
SELECT xmin::text AS v2_xmin FROM users_v2 WHERE id = 7 \gset
SELECT get_user(7) AS second_read;
SELECT xmin::text = :'v2_xmin' AS v2_row_not_rewritten FROM users_v2 WHERE id = 7;
-- An id in neither table: nothing, and nothing written.
SELECT get_user(100000) IS NULL AS unknown_id, count(*) AS v2_rows FROM users_v2;
-- The application writes V2 directly for a user it migrated itself, with a value of its own.
INSERT INTO users_v2 VALUES (9, 'v2:written-by-the-app', 'app@example.org', 'application');
SELECT get_user(9) AS app_value;

-- The final sweep: V1 is walked by its key, every user V2 lacks is copied converted; the rows V2 already
-- has (7 and 9) are skipped, never overwritten.
SELECT start_backfill('users_v1', 'token', 'v2', target_relation => 'users_v2') AS job_sweep \gset
SELECT wait_backfill(:job_sweep, '60 s') AS sweep_state;
SELECT relation, column_name, source_column, target_relation, codec, state, rows_scanned, rows_converted,
       rows_skipped, conflicts, last_error
FROM backfill_status WHERE job = :job_sweep;
SELECT count(*) AS v2_rows,
       count(*) FILTER (WHERE token = 'v2:' || reverse('tok' || id) AND migrated_by = 'sweep') AS swept,
       count(*) FILTER (WHERE email = 'u' || id || '@example.org') AS email_copied,
       count(*) FILTER (WHERE NOT EXISTS (SELECT FROM users_v1 v1 WHERE v1.id = v2.id)) AS not_in_v1
FROM users_v2 v2;
SELECT id, token, email, migrated_by FROM users_v2 WHERE id IN (7, 9) ORDER BY id;
-- V1 is left as it was: listing still goes against V1 until the move is done.
SELECT count(*) AS v1_rows, count(*) FILTER (WHERE token LIKE 'tok%') AS v1_unchanged FROM users_v1;
-- Every caller now reads V2.
SELECT count(*) FILTER (WHERE get_user(id) = 'v2:' || reverse('tok' || id)) AS read_converted FROM users_v1;
-- A second sweep copies nothing.
SELECT start_backfill('users_v1', 'token', 'v2', target_relation => 'users_v2') AS job_sweep_again \gset
SELECT wait_backfill(:job_sweep_again, '60 s') AS sweep_again_state;
SELECT rows_scanned, rows_converted, rows_skipped, conflicts FROM backfill_status WHERE job = :job_sweep_again;

-- Refused: a target without a unique index on V1's key (none at all, a partial one, one on another
-- column), a target column that is missing, a source column missing in V1, an unknown codec.
CREATE TABLE v2_no_index (id bigint NOT NULL, token text);
CREATE TABLE v2_partial (id bigint NOT NULL, token text);
CREATE UNIQUE INDEX v2_partial_id ON v2_partial (id) WHERE id > 0;
CREATE TABLE v2_other_key (user_id bigint PRIMARY KEY, id bigint, token text);
CREATE TABLE v2_no_column (id bigint PRIMARY KEY, secret text);
SELECT start_backfill('users_v1', 'token', 'v2', target_relation => 'v2_no_index');
SELECT start_backfill('users_v1', 'token', 'v2', target_relation => 'v2_partial');
SELECT start_backfill('users_v1', 'token', 'v2', target_relation => 'v2_other_key');
SELECT start_backfill('users_v1', 'token', 'v2', target_relation => 'v2_no_column');
SELECT start_backfill('users_v1', 'token', 'v2', source_column => 'no_such_column', target_relation => 'users_v2');
SELECT start_backfill('users_v1', 'token', 'no_such_codec', target_relation => 'users_v2');
-- A unique index that contains the key but is not unique on it (an expression beside it) recognises
-- nothing: refused like no index at all, so the application's row for user 3 is never doubled.
CREATE TABLE v2_expression (id bigint NOT NULL, token text);
CREATE UNIQUE INDEX v2_expression_id ON v2_expression (id, lower(token));
INSERT INTO v2_expression VALUES (3, 'v2:written-by-the-app');
SELECT start_backfill('users_v1', 'token', 'v2', target_relation => 'v2_expression');
SELECT count(wait_backfill(job, '60 s')) AS jobs_started FROM backfill_status
WHERE target_relation = 'v2_expression'::regclass;
SELECT count(*) AS rows_for_user_3 FROM v2_expression WHERE id = 3;
-- A deferrable unique constraint cannot be an ON CONFLICT arbiter: refused at the start, not by a job
-- that fails at its first batch.
CREATE TABLE v2_deferrable (id bigint NOT NULL, token text, CONSTRAINT v2_deferrable_id UNIQUE (id) DEFERRABLE);
SELECT start_backfill('users_v1', 'token', 'v2', target_relation => 'v2_deferrable');
SELECT count(wait_backfill(job, '60 s')) AS jobs_started FROM backfill_status
WHERE target_relation = 'v2_deferrable'::regclass;

------------------------------------------------------------------------------------------------------
-- Clean up: nothing of this file is left.
------------------------------------------------------------------------------------------------------
SELECT state, count(*) FROM (SELECT wait_backfill(job, '60 s') AS state FROM backfill_status) s
GROUP BY state ORDER BY state;
SELECT name, phase FROM migration_status ORDER BY name;
SELECT count(unfreeze_function(fn)) AS unfrozen FROM (SELECT DISTINCT fn FROM function_history) f;
RESET search_path;
SET client_min_messages = warning;
DROP SCHEMA mv CASCADE;
RESET client_min_messages;
DROP EXTENSION migration_ext;
