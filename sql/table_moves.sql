-- A table move as a migration (V1 -> V2): the column map, the mirrors both ways, the read-through and
-- listing helpers, the sweep, the verifying comparison, the contract and the compatibility view; what is
-- refused, and who may do it.
\set VERBOSITY default
\set SHOW_CONTEXT never
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS migration_ext CASCADE;
DROP SCHEMA IF EXISTS tm CASCADE;
DROP SCHEMA IF EXISTS tm_other CASCADE;
DROP ROLE IF EXISTS tm_owner;
DROP ROLE IF EXISTS tm_app;
DROP ROLE IF EXISTS tm_other;
RESET client_min_messages;
CREATE EXTENSION migration_ext;
SET migration_ext.wait_progress = off;
CREATE ROLE tm_owner;
CREATE ROLE tm_app;
CREATE ROLE tm_other;
CREATE SCHEMA tm AUTHORIZATION tm_owner;
GRANT USAGE ON SCHEMA tm TO tm_app, tm_other;
SET search_path = tm, public;

SET ROLE tm_owner;
-- V1: an int key, a legacy token, a column V2 drops. V2: a bigint key under another name, a column of its own.
CREATE TABLE users_v1 (id int PRIMARY KEY, token text, email text, legacy_note text);
INSERT INTO users_v1 SELECT g, 'v1:' || encode(('tok' || g)::bytea, 'base64'), 'u' || g || '@x', 'n'
FROM generate_series(1, 500) g;
CREATE TABLE users_v2 (user_id bigint NOT NULL, token text NOT NULL, email text, created_by text DEFAULT 'v2');
GRANT SELECT, INSERT, UPDATE, DELETE ON users_v1, users_v2 TO tm_app;
RESET ROLE;
SELECT create_codec('v2', 'strip_prefix:v1:|base64_decode|add_prefix:v2:', marker => 'v2:', detect => 'absent');

------------------------------------------------------------------------------------------------------
-- 1. What create_migration checks before anything is written.
------------------------------------------------------------------------------------------------------
SET ROLE tm_owner;
-- V1's key must land on a unique key of V2.
SELECT create_migration('users', 'users_v1', 'token', 'v2', target_relation => 'users_v2',
                        column_map => '{"user_id": "id"}');
ALTER TABLE users_v2 ADD PRIMARY KEY (user_id);
-- Not mapped: V2's user_id has no V1 column of that name.
SELECT create_migration('users', 'users_v1', 'token', 'v2', target_relation => 'users_v2');
SELECT create_migration('users', 'users_v1', 'token', 'v2', target_relation => 'users_v2',
                        column_map => '{"user_id": "nope"}');
SELECT create_migration('users', 'users_v1', 'token', 'v2', target_relation => 'users_v2',
                        column_map => '["user_id", "id"]');
SELECT create_migration('users', 'users_v1', 'token', 'v2', column_map => '{"user_id": "id"}');
-- No cast from V2's column back to V1's.
ALTER TABLE users_v2 ADD COLUMN flags int[];
ALTER TABLE users_v1 ADD COLUMN flags point;
SELECT create_migration('users', 'users_v1', 'token', 'v2', target_relation => 'users_v2',
                        column_map => '{"user_id": "id"}');
-- A JSON null leaves a column out of the map.
ALTER TABLE users_v1 ADD COLUMN must_have text NOT NULL DEFAULT 'x';
ALTER TABLE users_v1 ALTER COLUMN must_have DROP DEFAULT;
SELECT create_migration('users', 'users_v1', 'token', 'v2', target_relation => 'users_v2',
                        column_map => '{"user_id": "id", "flags": null}');
ALTER TABLE users_v1 DROP COLUMN must_have, DROP COLUMN flags;
ALTER TABLE users_v2 DROP COLUMN flags;
RESET ROLE;

-- Another role's table, or tables of two owners (even for a superuser), are refused.
CREATE TABLE tm.foreign_v2 (user_id bigint PRIMARY KEY, token text, email text);
ALTER TABLE tm.foreign_v2 OWNER TO tm_other;
SET ROLE tm_owner;
SELECT create_migration('users', 'users_v1', 'token', 'v2', target_relation => 'foreign_v2',
                        column_map => '{"user_id": "id"}');
RESET ROLE;
SELECT create_migration('users', 'users_v1', 'token', 'v2', target_relation => 'foreign_v2',
                        column_map => '{"user_id": "id"}');
DROP TABLE tm.foreign_v2;
SET ROLE tm_app;
SELECT create_migration('users', 'users_v1', 'token', 'v2', target_relation => 'users_v2',
                        column_map => '{"user_id": "id"}');
RESET ROLE;
-- The helpers' names must be free: a function of either name, whatever its arguments, could be what a
-- caller's call resolves to.
CREATE FUNCTION tm.users_v2_read(text) RETURNS int LANGUAGE sql RETURN 0;
SET ROLE tm_owner;
SELECT create_migration('users', 'users_v1', 'token', 'v2', target_relation => 'users_v2',
                        column_map => '{"user_id": "id"}');
RESET ROLE;
DROP FUNCTION tm.users_v2_read(text);
-- Checking that the types cast both ways runs their code (a cast's function, a domain's CHECK) as the
-- tables' owner, restricted, never as the extension's superuser.
CREATE SCHEMA tm_other AUTHORIZATION tm_other;
SET ROLE tm_other;
CREATE FUNCTION tm_other.who(int) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
	RAISE NOTICE 'domain check runs as %, superuser: %', current_user,
		(SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user);
	RETURN true;
END $$;
CREATE DOMAIN tm_other.watched AS int CHECK (tm_other.who(VALUE));
CREATE TABLE tm_other.a_v1 (id int PRIMARY KEY, tok text, c int);
CREATE TABLE tm_other.a_v2 (id int PRIMARY KEY, tok text, c tm_other.watched);
SELECT create_migration('watched', 'tm_other.a_v1', 'tok', 'v2', target_relation => 'tm_other.a_v2');
RESET ROLE;
SELECT rolsuper AS tm_other_is_superuser FROM pg_roles WHERE rolname = 'tm_other';

------------------------------------------------------------------------------------------------------
-- 2. Created: from now on every write to V1 lands in V2, converted, in the same transaction; two helpers.
------------------------------------------------------------------------------------------------------
SET ROLE tm_owner;
SELECT create_migration('users', 'users_v1', 'token', 'v2', target_relation => 'users_v2',
                        column_map => '{"user_id": "id"}');
SELECT name, phase, relation, column_name, source_column, target_relation FROM migration_status;
SELECT column_map FROM migration_ext.migration;
-- One move of a table at a time.
SELECT create_migration('users_again', 'users_v1', 'token', 'v2', target_relation => 'users_v2',
                        column_map => '{"user_id": "id"}');
-- The door cannot be bypassed by a sweep of one's own.
SELECT start_backfill('users_v1', 'token', 'v2', target_relation => 'users_v2');
RESET ROLE;

SET ROLE tm_app;
INSERT INTO users_v1 VALUES (1001, 'v1:' || encode('new'::bytea, 'base64'), 'new@x', 'n');
UPDATE users_v1 SET email = 'changed@x' WHERE id = 5;
DELETE FROM users_v1 WHERE id = 6;
UPDATE users_v1 SET id = 3000 WHERE id = 7;     -- a key that changes leaves V2 under its old key
BEGIN;
INSERT INTO users_v1 VALUES (1002, 'v1:' || encode('gone'::bytea, 'base64'), 'gone@x', 'n');
ROLLBACK;                                       -- and a rolled-back write leaves nothing
SELECT user_id, token, email, created_by FROM users_v2 ORDER BY user_id;
-- Read-through: V2's row, else V1's converted, stored in V2 and returned.
SELECT user_id, token, email, created_by FROM users_v2_read(10);
SELECT user_id, token, email FROM users_v2_read(5);
SELECT count(*) AS v2_rows FROM users_v2;
-- A read-only transaction cannot store: the row comes back converted, V2's own columns NULL.
BEGIN READ ONLY;
SELECT user_id, token, email, created_by FROM users_v2_read(11);
COMMIT;
SELECT count(*) AS v2_rows_after_read_only FROM users_v2;
SELECT count(*) AS missing FROM users_v2_read(6);
-- Listing answers from V1 until the sweep is done: every row, V2's where V2 has it.
SELECT count(*) AS listed, count(*) FILTER (WHERE token LIKE 'v2:%') AS converted,
       count(*) FILTER (WHERE created_by = 'v2') AS from_v2 FROM users_v2_list();
RESET ROLE;

------------------------------------------------------------------------------------------------------
-- 3. Readers tolerant, the door: from here V2 is the source of truth and its writes land back in V1.
------------------------------------------------------------------------------------------------------
SET ROLE tm_owner;
CREATE FUNCTION get_email(bigint) RETURNS text LANGUAGE sql STABLE AS $$ SELECT email FROM users_v1 WHERE id = $1 $$;
CREATE FUNCTION set_email(bigint, text) RETURNS void LANGUAGE sql AS $$ UPDATE users_v1 SET email = $2 WHERE id = $1 $$;
RESET ROLE;
SELECT freeze_function('tm.get_email(bigint)'), freeze_function('tm.set_email(bigint, text)');
SET ROLE tm_owner;
SELECT plan_swap('users', 'get_email(bigint)', $$ SELECT email FROM tm.users_v2_read($1) $$, language => 'sql');
-- A writer of V2 reads the row through first: until the sweep has finished, a row nobody touched is in V1 only.
SELECT plan_swap('users', 'set_email(bigint, text)',
                 $$ SELECT FROM tm.users_v2_read($1); UPDATE tm.users_v2 SET email = $2 WHERE user_id = $1 $$,
                 role => 'writer', language => 'sql');
-- Before the door a write to V2 is V2's alone: nothing carries it back.
INSERT INTO users_v2 (user_id, token, email) VALUES (9999, 'v2:stray', 'stray@x');
SELECT count(*) AS in_v1 FROM users_v1 WHERE id = 9999;
SELECT advance_migration('users');
-- V2 given to another owner since: the door would write V2's rows into V1 as that owner. Refused.
RESET ROLE;
ALTER TABLE tm.users_v2 OWNER TO tm_other;
SET ROLE tm_owner;
SELECT advance_migration('users', confirm => 'users');
RESET ROLE;
ALTER TABLE tm.users_v2 OWNER TO tm_owner;
SET ROLE tm_owner;
SELECT advance_migration('users', confirm => 'users');
SELECT set_email(12, 'written to v2@x');
SELECT id, email FROM users_v1 WHERE id = 12;
SELECT get_email(12), get_email(13);
INSERT INTO users_v2 (user_id, token, email) VALUES (4000, 'v2:fresh', 'fresh@x');
SELECT id, token, email, legacy_note FROM users_v1 WHERE id = 4000;
DELETE FROM users_v2 WHERE user_id = 8;
SELECT count(*) AS deleted_in_v1 FROM users_v1 WHERE id = 8;
-- A legacy writer of V1 still lands in V2, converted; V1's row takes the converted value back.
UPDATE users_v1 SET token = 'v1:' || encode('late'::bytea, 'base64') WHERE id = 14;
SELECT (SELECT token FROM users_v1 WHERE id = 14) AS v1, (SELECT token FROM users_v2 WHERE user_id = 14) AS v2;

------------------------------------------------------------------------------------------------------
-- 4. The sweep copies the rows nobody touched; the verifying step compares both tables row by row.
------------------------------------------------------------------------------------------------------
SELECT start_backfill('users');
SELECT wait_backfill(job, '60s') FROM migration_status WHERE name = 'users';
SELECT rows_scanned, rows_converted, rows_skipped, conflicts FROM backfill_status;
SELECT (SELECT count(*) FROM users_v1) AS v1_rows, (SELECT count(*) FROM users_v2) AS v2_rows;
-- The stray row written to V2 before the door is in V2 only: listed, and the step refused.
SELECT advance_migration('users');
DELETE FROM users_v2 WHERE user_id = 9999;
-- A row changed around the mirrors is found too.
ALTER TABLE users_v2 DISABLE TRIGGER USER;
UPDATE users_v2 SET email = 'drifted' WHERE user_id = 20;
ALTER TABLE users_v2 ENABLE TRIGGER USER;
SELECT advance_migration('users');
UPDATE users_v2 SET email = email WHERE user_id = 20;   -- mirrored back: V1 agrees again
SELECT advance_migration('users');
SELECT count(*) AS listed FROM users_v2_list();

------------------------------------------------------------------------------------------------------
-- 5. The contract: V2's column refuses the legacy format, the mirrors are gone. Then V1's name can be a view.
------------------------------------------------------------------------------------------------------
SELECT replace_with_view('users');
SELECT advance_migration('users');
SELECT conname FROM pg_constraint WHERE conrelid = 'users_v2'::regclass AND contype = 'c';
SELECT count(*) AS mirrors FROM pg_trigger WHERE tgrelid IN ('users_v1'::regclass, 'users_v2'::regclass);
INSERT INTO users_v2 (user_id, token) VALUES (5000, 'v1:bGVnYWN5');
SELECT retreat_migration('users');
SELECT replace_with_view('users');
SELECT relkind, reloptions FROM pg_class WHERE oid = 'users_v1'::regclass;
SELECT count(*) AS retired_rows FROM users_v1_retired;
RESET ROLE;
SET ROLE tm_app;
SELECT id, token, email, legacy_note FROM users_v1 WHERE id = 12;
UPDATE users_v1 SET email = 'through the view' WHERE id = 13;
SELECT email FROM users_v2 WHERE user_id = 13;
RESET ROLE;
-- The view reads V2 with its caller's rights: V2's row-level security applies through it.
ALTER TABLE tm.users_v2 ENABLE ROW LEVEL SECURITY;
CREATE POLICY only_13 ON tm.users_v2 USING (user_id = 13);
SET ROLE tm_app;
SELECT count(*) AS rows_through_the_view FROM users_v1;
RESET ROLE;
ALTER TABLE tm.users_v2 DISABLE ROW LEVEL SECURITY;
SELECT event, detail FROM migration_history WHERE event NOT IN ('advance', 'swap', 'read_check') ORDER BY id;

RESET search_path;
SET client_min_messages = warning;
DROP EXTENSION migration_ext CASCADE;
DROP SCHEMA tm CASCADE;
DROP SCHEMA tm_other CASCADE;
DROP OWNED BY tm_owner, tm_app, tm_other;
DROP ROLE tm_owner;
DROP ROLE tm_app;
DROP ROLE tm_other;
