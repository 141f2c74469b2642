-- The migration protocol: the walkthrough of DESIGN.md §1, statement by statement, on real data with a
-- real backfill worker, then every guard on the way, from a fresh extension. Output is booleans, counts and
-- messages only (no timestamps, LSNs or pids): where the walkthrough says SELECT * FROM migration_status or
-- backfill_status, the deterministic columns are selected, and the backfill is waited for first.
\set VERBOSITY default
\set SHOW_CONTEXT never
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS migration_ext CASCADE;
DROP SCHEMA IF EXISTS proto CASCADE;
RESET client_min_messages;

------------------------------------------------------------------------------------------------------
-- The legacy world: accounts whose tokens were stored reversed, and the functions callers use.
-- (In a schema of its own, ahead of public on the search_path.)
------------------------------------------------------------------------------------------------------
CREATE EXTENSION migration_ext;
-- Waits print no progress NOTICEs: their figures differ from run to run.
SET migration_ext.wait_progress = off;
CREATE SCHEMA proto;
SET search_path = proto, public;
CREATE TABLE accounts (id bigint PRIMARY KEY, token text NOT NULL, balance bigint NOT NULL DEFAULT 0);
INSERT INTO accounts SELECT g, reverse('tok_' || md5(g::text)), 0 FROM generate_series(1, 2000) g;
ANALYZE accounts;
CREATE FUNCTION decode_token(t text) RETURNS text LANGUAGE sql STABLE AS $$ SELECT reverse($1) $$;
CREATE FUNCTION store_token(bigint, text) RETURNS void LANGUAGE sql
	AS $$ UPDATE accounts SET token = reverse($2) WHERE id = $1 $$;
SELECT count(*) FILTER (WHERE decode_token(token) = 'tok_' || md5(id::text)) AS callers_read_plain FROM accounts;

------------------------------------------------------------------------------------------------------
-- 1. The codec. 2. Freeze the callers' functions. 3. Plan the migration and its swaps.
------------------------------------------------------------------------------------------------------
SELECT create_codec('token_plain', convert => 'reverse', marker => 'tok_', detect => 'converted');
SELECT freeze_function('decode_token(text)');
SELECT freeze_function('store_token(bigint,text)');
SELECT create_migration('tokens', 'accounts', 'token', 'token_plain');
SELECT plan_swap('tokens', 'decode_token(text)', $$ SELECT migrate_value('token_plain', $1) $$, role => 'reader');
SELECT plan_swap('tokens', 'store_token(bigint,text)', $$ UPDATE accounts SET token = $2 WHERE id = $1 $$, role => 'writer');
SELECT name, phase, settled, waiting_for, relation, column_name, codec, job, readers, writers
FROM migration_status WHERE name = 'tokens';

-- The inventory of the column: an in-place update, and (sampled) every row is legacy.
SELECT in_primary_key, in_unique_index, foreign_keys, referenced_by, in_partition_key, in_expression_index,
       is_generated, user_triggers, row_estimate, sampled_rows, sampled_legacy_ratio, plan
FROM inspect_column('accounts', 'token', 'token_plain');

-- Guards while planned: the writer cannot be swapped by hand, the backfill cannot start, nothing to
-- retreat from, the door cannot be reached in one step.
SELECT pg_get_functiondef('decode_token(text)'::regprocedure) AS decode_before \gset
SELECT pg_get_functiondef('store_token(bigint,text)'::regprocedure) AS store_before \gset
SELECT swap_function('store_token(bigint,text)', $$ UPDATE accounts SET token = $2 WHERE id = $1 $$);
SELECT start_backfill('tokens');
SELECT retreat_migration('tokens');

------------------------------------------------------------------------------------------------------
-- Readers become tolerant (reversible).
------------------------------------------------------------------------------------------------------
SELECT advance_migration('tokens');
SELECT name, phase, settled, waiting_for, relation, column_name, codec, job
FROM migration_status WHERE name = 'tokens';
-- The tolerant reader reads both formats; the writer still writes the legacy one.
SELECT count(*) FILTER (WHERE decode_token(token) = 'tok_' || md5(id::text)) AS legacy_rows_read_plain,
       decode_token('tok_already') AS target_passes_through
FROM accounts;
SELECT pg_get_functiondef('decode_token(text)'::regprocedure) = :'decode_before' AS decode_unchanged,
       pg_get_functiondef('store_token(bigint,text)'::regprocedure) = :'store_before' AS store_unchanged;

-- Order is enforced: the writer is not swapped before the door, by hand either.
SELECT swap_function('store_token(bigint,text)', $$ UPDATE accounts SET token = $2 WHERE id = $1 $$);
-- The door needs the typed sign-off ...
SELECT advance_migration('tokens');
SELECT advance_migration('tokens', confirm => 'yes');
SELECT advance_migration('tokens', confirm => 'TOKENS');
-- ... and a backfill cannot start before it.
SELECT start_backfill('tokens');
SELECT name, phase FROM migration_status WHERE name = 'tokens';

-- Retreat from tolerant restores the readers byte for byte.
SELECT retreat_migration('tokens');
SELECT pg_get_functiondef('decode_token(text)'::regprocedure) = :'decode_before' AS decode_restored,
       pg_get_functiondef('store_token(bigint,text)'::regprocedure) = :'store_before' AS store_untouched;
SELECT name, phase, settled, waiting_for FROM migration_status WHERE name = 'tokens';
SELECT advance_migration('tokens');

-- A reader reverted behind the protocol's back: the door refuses until the swap is current again.
SELECT revert_function('decode_token(text)') AS reverted_to_version;
SELECT advance_migration('tokens', confirm => 'tokens');
SELECT retreat_migration('tokens');
SELECT advance_migration('tokens');
SELECT pg_get_functiondef('decode_token(text)'::regprocedure) <> :'decode_before' AS reader_tolerant_again;

------------------------------------------------------------------------------------------------------
-- THE ONE-WAY DOOR: writers produce the new format.
------------------------------------------------------------------------------------------------------
SELECT name, phase, settled, waiting_for FROM migration_status WHERE name = 'tokens';
SELECT advance_migration('tokens', confirm => 'tokens');
SELECT name, phase, settled, waiting_for, job FROM migration_status WHERE name = 'tokens';
SELECT store_token(1, 'tok_fresh');
SELECT token AS stored_plain, decode_token(token) AS read_back FROM accounts WHERE id = 1;
-- Past the door: no retreat, and the next step is the backfill, not advance_migration.
SELECT retreat_migration('tokens');
SELECT advance_migration('tokens');
-- Swaps are planned before a migration advances.
SELECT plan_swap('tokens', 'decode_token(text)', $$ SELECT $1 $$, role => 'reader');

------------------------------------------------------------------------------------------------------
-- The backfill worker converts the cold rows.
------------------------------------------------------------------------------------------------------
SELECT start_backfill('tokens') AS job_tokens \gset
SELECT wait_backfill(:job_tokens, '60 s') AS tokens_state;
SELECT relation, column_name, codec, migration, state, rows_scanned, rows_converted, rows_skipped, conflicts,
       percent_done, last_error
FROM backfill_status WHERE job = :job_tokens;
SELECT name, phase, settled, waiting_for, relation, column_name, codec, job = :job_tokens AS job_is_the_backfill,
       job_state
FROM migration_status WHERE name = 'tokens';
SELECT retreat_migration('tokens');

-- converted: refused while a legacy row remains (one written by a legacy writer after the backfill).
INSERT INTO accounts VALUES (2001, reverse('tok_late'), 0);
SELECT advance_migration('tokens');
SELECT name, phase FROM migration_status WHERE name = 'tokens';
-- Running the backfill again converts it (and only it).
SELECT start_backfill('tokens') AS job_tokens_again \gset
SELECT wait_backfill(:job_tokens_again, '60 s') AS tokens_again_state;
SELECT rows_scanned, rows_converted, rows_skipped, conflicts FROM backfill_status WHERE job = :job_tokens_again;
SELECT advance_migration('tokens');
SELECT name, phase, settled, waiting_for, job = :job_tokens_again AS job_is_the_second_backfill, job_state
FROM migration_status WHERE name = 'tokens';
SELECT count_legacy('accounts', 'token', 'token_plain') AS legacy_left,
       count(*) FILTER (WHERE token = 'tok_' || md5(id::text)) AS converted_rows,
       count(*) FILTER (WHERE decode_token(token) LIKE 'tok\_%') AS readable_rows
FROM accounts;
SELECT retreat_migration('tokens');

------------------------------------------------------------------------------------------------------
-- contracted: a CHECK constraint, added NOT VALID then validated, refuses the legacy format.
------------------------------------------------------------------------------------------------------
SELECT advance_migration('tokens');
SELECT name, phase, settled, waiting_for, constraint_name FROM migration_status WHERE name = 'tokens';
SELECT conname, contype, convalidated, pg_get_constraintdef(oid) AS definition
FROM pg_constraint WHERE conrelid = 'accounts'::regclass AND contype = 'c';
INSERT INTO accounts VALUES (3000, reverse('tok_legacy_writer'), 0);
INSERT INTO accounts VALUES (3000, 'tok_new_writer', 0);
SELECT store_token(2, 'tok_via_writer');
SELECT advance_migration('tokens');
-- Retreat from contracted drops the constraint (and nothing else).
SELECT retreat_migration('tokens');
SELECT name, phase, constraint_name FROM migration_status WHERE name = 'tokens';
SELECT count(*) AS check_constraints FROM pg_constraint WHERE conrelid = 'accounts'::regclass AND contype = 'c';
INSERT INTO accounts VALUES (3001, reverse('tok_legacy_again'), 0);
-- Contracting again validates every row: the legacy row makes it fail, and nothing changes.
SELECT advance_migration('tokens');
SELECT name, phase, constraint_name FROM migration_status WHERE name = 'tokens';
DELETE FROM accounts WHERE id = 3001;
SELECT advance_migration('tokens');
SELECT count(*) FILTER (WHERE convalidated) AS validated_checks
FROM pg_constraint WHERE conrelid = 'accounts'::regclass AND contype = 'c';

-- Every step, in order, with the role that took it (and a WAL position for each).
SELECT event, from_phase, to_phase, fn, role, detail, role_name, wal_lsn IS NOT NULL AS has_wal_lsn
FROM migration_history WHERE migration = 'tokens' ORDER BY id;
SELECT fn, version, role, migration, is_current FROM function_history ORDER BY fn::text, version;

------------------------------------------------------------------------------------------------------
-- The NULL codec: a new required column is backfilled, then becomes NOT NULL.
------------------------------------------------------------------------------------------------------
SELECT create_codec('default_status', 'const:active', detect => 'null');
CREATE TABLE members (id int PRIMARY KEY, status text);
INSERT INTO members SELECT g, CASE WHEN g % 100 = 0 THEN 'closed' END FROM generate_series(1, 1000) g;
SELECT create_migration('status', 'members', 'status', 'default_status');
-- No swaps: nothing to settle, but the door still needs its sign-off.
SELECT advance_migration('status');
SELECT name, phase, settled, waiting_for, readers, writers FROM migration_status WHERE name = 'status';
SELECT advance_migration('status');
SELECT advance_migration('status', confirm => 'status');
-- converted is refused while the backfill is not done: a slow one (fixed batches of 10 at 100 rows/s) ...
SELECT start_backfill('status', batch_size => 10, max_rows_per_second => 100, throttle => false) AS job_slow \gset
SELECT advance_migration('status');
-- ... and a cancelled one.
SELECT cancel_backfill(:job_slow);
SELECT wait_backfill(:job_slow, '60 s') AS slow_state;
SELECT advance_migration('status');
SELECT start_backfill('status') AS job_status \gset
SELECT wait_backfill(:job_status, '60 s') AS status_state;
SELECT advance_migration('status');
SELECT advance_migration('status');
SELECT name, phase, job = :job_status AS job_is_the_last_backfill, job_state, constraint_name
FROM migration_status WHERE name = 'status';
SELECT attnotnull AS status_not_null FROM pg_attribute WHERE attrelid = 'members'::regclass AND attname = 'status';
SELECT count(*) AS check_constraints FROM pg_constraint WHERE conrelid = 'members'::regclass AND contype = 'c';
SELECT status, count(*) FROM members GROUP BY status ORDER BY status;
INSERT INTO members VALUES (1001, NULL);
SELECT retreat_migration('status');
SELECT attnotnull AS status_not_null FROM pg_attribute WHERE attrelid = 'members'::regclass AND attname = 'status';
SELECT advance_migration('status');
SELECT attnotnull AS status_not_null FROM pg_attribute WHERE attrelid = 'members'::regclass AND attname = 'status';

------------------------------------------------------------------------------------------------------
-- inspect_column: what the column is, structurally, and the plan that follows.
------------------------------------------------------------------------------------------------------
CREATE TABLE coded (code text PRIMARY KEY, email text UNIQUE, note text, lowered text, shouted text);
CREATE INDEX coded_lower ON coded (lower(lowered));
CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;
CREATE TRIGGER coded_touch BEFORE UPDATE ON coded FOR EACH ROW EXECUTE FUNCTION touch();
CREATE TABLE plain_parent (code text PRIMARY KEY, label text);
CREATE TABLE cascade_parent (code text PRIMARY KEY, label text);
CREATE TABLE unique_parent (id int PRIMARY KEY, email text UNIQUE);
CREATE TABLE child (id int PRIMARY KEY,
                    plain_code text REFERENCES plain_parent,
                    cascade_code text REFERENCES cascade_parent ON UPDATE CASCADE,
                    email text REFERENCES unique_parent (email) ON UPDATE CASCADE);
CREATE TABLE regions (region text, id int, token text, PRIMARY KEY (region, id)) PARTITION BY LIST (region);
CREATE TABLE regions_eu PARTITION OF regions FOR VALUES IN ('eu');
CREATE TABLE generated (id int PRIMARY KEY, token text, shown text GENERATED ALWAYS AS (upper(token)) STORED);
SELECT c.rel, c.col, i.in_primary_key AS pk, i.in_unique_index AS uniq, i.foreign_keys, i.referenced_by,
       i.in_partition_key AS part, i.in_expression_index AS expr, i.is_generated AS gen, i.user_triggers
FROM (VALUES (1, 'coded', 'code'), (2, 'coded', 'email'), (3, 'coded', 'note'), (4, 'coded', 'lowered'),
             (5, 'plain_parent', 'code'), (6, 'cascade_parent', 'code'), (7, 'unique_parent', 'email'),
             (8, 'child', 'plain_code'), (9, 'child', 'cascade_code'), (10, 'regions', 'region'),
             (11, 'regions', 'token'), (12, 'generated', 'shown')) c(i, rel, col),
     LATERAL inspect_column(c.rel::regclass, c.col::name) i
ORDER BY c.i;
SELECT c.rel, c.col, i.plan
FROM (VALUES (1, 'coded', 'code'), (2, 'coded', 'email'), (3, 'coded', 'note'), (4, 'coded', 'lowered'),
             (5, 'plain_parent', 'code'), (6, 'cascade_parent', 'code'), (7, 'unique_parent', 'email'),
             (8, 'child', 'plain_code'), (9, 'child', 'cascade_code'), (10, 'regions', 'region'),
             (11, 'regions', 'token'), (12, 'generated', 'shown')) c(i, rel, col),
     LATERAL inspect_column(c.rel::regclass, c.col::name) i
ORDER BY c.i;
SELECT * FROM inspect_column('coded', 'no_such_column');
SELECT * FROM inspect_column('no_such_table', 'code');
SELECT * FROM inspect_column('coded', 'code', 'no_such_codec');

-- create_migration refuses what cannot be rewritten in place, unless told keys may be updated.
SELECT create_migration('m_pk', 'coded', 'code', 'token_plain');
SELECT create_migration('m_partition', 'regions', 'region', 'token_plain');
SELECT create_migration('m_referenced', 'unique_parent', 'email', 'token_plain');
SELECT create_migration('m_referenced', 'unique_parent', 'email', 'token_plain', allow_key_update => true);
SELECT create_migration('m_unique', 'coded', 'email', 'token_plain');
SELECT name, phase, relation, column_name FROM migration_status WHERE name IN ('m_referenced', 'm_unique') ORDER BY name;

------------------------------------------------------------------------------------------------------
-- Every other error a caller can reach.
------------------------------------------------------------------------------------------------------
-- unknown migrations
SELECT advance_migration('no_such_migration');
SELECT advance_migration('no_such_migration', confirm => 'no_such_migration');
SELECT retreat_migration('no_such_migration');
SELECT plan_swap('no_such_migration', 'decode_token(text)', $$ SELECT $1 $$);
SELECT start_backfill('no_such_migration');
-- duplicates
SELECT create_migration('tokens', 'accounts', 'token', 'token_plain');
CREATE FUNCTION peek(t text) RETURNS text LANGUAGE sql AS $$ SELECT t $$;
SELECT freeze_function('peek(text)');
SELECT plan_swap('m_unique', 'peek(text)', $$ SELECT upper($1) $$);
SELECT plan_swap('m_unique', 'peek(text)', $$ SELECT lower($1) $$);
-- a function that is not frozen, a bad role, a NULL body
CREATE FUNCTION loose(t text) RETURNS text LANGUAGE sql AS $$ SELECT t $$;
SELECT plan_swap('m_unique', 'loose(text)', $$ SELECT upper($1) $$);
SELECT plan_swap('m_unique', 'peek(text)', $$ SELECT upper($1) $$, role => 'admin');
SELECT plan_swap('m_unique', 'peek(text)', $$ SELECT upper($1) $$, role => NULL);
SELECT plan_swap('m_unique', 'peek(text)', NULL, role => 'writer');
-- bad arguments to create_migration
SELECT create_migration('', 'coded', 'note', 'token_plain');
SELECT create_migration(NULL, 'coded', 'note', 'token_plain');
SELECT create_migration('m_bad', 'coded', 'note', 'no_such_codec');
SELECT create_migration('m_bad', 'coded', 'no_such_column', 'token_plain');
SELECT create_migration('m_bad', 'no_such_table', 'note', 'token_plain');
SELECT count(*) AS refused_migrations_stored FROM migration_status WHERE name IN ('', 'm_bad', 'm_pk', 'm_partition');
-- NULL names
SELECT advance_migration(NULL);
SELECT retreat_migration(NULL);

------------------------------------------------------------------------------------------------------
-- Every migration, where it ended.
------------------------------------------------------------------------------------------------------
SELECT name, phase, settled, waiting_for, relation, column_name, codec, job IS NOT NULL AS has_job, job_state
FROM migration_status ORDER BY name;

-- The contract ends: unfrozen, the functions can go with their schema, and then the extension.
SELECT count(unfreeze_function(fn)) AS unfrozen FROM (SELECT DISTINCT fn FROM function_history) f;
SET client_min_messages = warning;
DROP SCHEMA proto CASCADE;
RESET client_min_messages;
RESET search_path;
DROP EXTENSION migration_ext;
