-- The one-way door keeps its promises at the edges: nothing writes the new format before the readers
-- are tolerant (start_backfill on the column is refused), the door tests the read path on real values,
-- and past it a reader cannot be changed, reverted, unfrozen or replaced by hand into one that reads
-- the two formats differently.
\set VERBOSITY default
\set SHOW_CONTEXT never
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS migration_ext CASCADE;
DROP SCHEMA IF EXISTS door CASCADE;
RESET client_min_messages;
CREATE EXTENSION migration_ext;
-- Waits print no progress NOTICEs: their figures differ from run to run.
SET migration_ext.wait_progress = off;
CREATE SCHEMA door;
SET search_path = door, public;
CREATE TABLE accounts (id int PRIMARY KEY, token text NOT NULL);
INSERT INTO accounts SELECT g, reverse('tok_' || g) FROM generate_series(1, 500) g;
CREATE FUNCTION decode_token(t text) RETURNS text LANGUAGE sql STABLE AS $$ SELECT reverse(t) $$;
CREATE FUNCTION lookup(i int) RETURNS text LANGUAGE sql STABLE AS $$ SELECT token FROM door.accounts WHERE id = i $$;
SELECT create_codec('tok', 'reverse', marker => 'tok_');
SELECT freeze_function('decode_token(text)') AS frozen, freeze_function('lookup(int)') AS frozen;
SELECT create_migration('tokens', 'accounts', 'token', 'tok');

------------------------------------------------------------------------------------------------------
-- Before the door nothing may write the new format: a backfill of the column is refused, by either form.
------------------------------------------------------------------------------------------------------
SELECT start_backfill('accounts', 'token', 'tok');
SELECT start_backfill('tokens');
-- Nor through a partition of the table, nor as a table move into it.
CREATE TABLE parted (id int PRIMARY KEY, token text NOT NULL) PARTITION BY RANGE (id);
CREATE TABLE parted_low PARTITION OF parted FOR VALUES FROM (0) TO (1000);
INSERT INTO parted SELECT g, reverse('tok_' || g) FROM generate_series(1, 10) g;
SELECT create_migration('parted', 'parted', 'token', 'tok');
SELECT start_backfill('parted_low', 'token', 'tok');
CREATE TABLE incoming (id int PRIMARY KEY, token text NOT NULL);
SELECT start_backfill('incoming', 'token', 'tok', target_relation => 'accounts');
SELECT count(*) AS jobs FROM backfill_status;

------------------------------------------------------------------------------------------------------
-- A reader that is not tolerant: the door calls it on the column's legacy values and their converted
-- forms, and refuses, naming the first value read differently. Nothing of the door's step is kept.
------------------------------------------------------------------------------------------------------
CREATE TABLE accounts_bad (id int PRIMARY KEY, token text NOT NULL);
INSERT INTO accounts_bad SELECT g, reverse('tok_' || g) FROM generate_series(1, 20) g;
CREATE FUNCTION decode_bad(t text) RETURNS text LANGUAGE sql STABLE AS $$ SELECT reverse(t) $$;
SELECT freeze_function('decode_bad(text)') AS frozen;
SELECT create_migration('bad', 'accounts_bad', 'token', 'tok');
SELECT plan_swap('bad', 'decode_bad(text)', $$ SELECT 'decoded:' || t $$);
SELECT advance_migration('bad') AS phase;
SELECT advance_migration('bad', confirm => 'bad');
SELECT advance_migration('bad', confirm => 'bad', read_sample => -1);
SELECT phase FROM migration_status WHERE name = 'bad';
SELECT count(*) AS read_checks_recorded FROM migration_history WHERE migration = 'bad' AND event = 'read_check';

-- Tolerant readers, through migrate_value(): the door opens; the check and what it covered are recorded
-- (lookup(int) takes a key, not a value, so it is named as not checked).
SELECT plan_swap('tokens', 'decode_token(text)', $$ SELECT migrate_value('tok', t) $$);
SELECT plan_swap('tokens', 'lookup(int)', $$ SELECT migrate_value('tok', token) FROM door.accounts WHERE id = i $$);
SELECT advance_migration('tokens') AS phase;
SELECT advance_migration('tokens', confirm => 'tokens', read_sample => 50) AS phase;
SELECT event, fn, detail FROM migration_history WHERE migration = 'tokens' AND event = 'read_check';

------------------------------------------------------------------------------------------------------
-- Past the door, a reader keeps reading both formats alike: a swap, a revert or a CREATE OR REPLACE to a
-- body that does not is refused and changes nothing; unfreezing is refused; a body that does is taken.
------------------------------------------------------------------------------------------------------
SELECT swap_function('decode_token(text)', $$ SELECT t $$);
SELECT revert_function('decode_token(text)');
CREATE OR REPLACE FUNCTION decode_token(t text) RETURNS text LANGUAGE sql STABLE AS $$ SELECT upper(t) $$;
SELECT unfreeze_function('decode_token(text)');
SELECT decode_token('321_kot') AS still_tolerant, decode_token('tok_123') AS target_read;
SELECT swap_function('decode_token(text)', $$ SELECT migrate_value('tok', t) || '' $$, note => 'tolerant still')
	AS swapped;
SELECT version, role, note FROM function_history WHERE fn = 'decode_token(text)'::regprocedure ORDER BY version;

------------------------------------------------------------------------------------------------------
-- read_sample => 0 opens the door without the read check, and says so.
------------------------------------------------------------------------------------------------------
CREATE TABLE accounts2 (id int PRIMARY KEY, token text NOT NULL);
INSERT INTO accounts2 SELECT g, reverse('tok_' || g) FROM generate_series(1, 10) g;
CREATE FUNCTION decode2(t text) RETURNS text LANGUAGE sql STABLE AS $$ SELECT reverse(t) $$;
SELECT freeze_function('decode2(text)') AS frozen;
SELECT create_migration('tokens2', 'accounts2', 'token', 'tok');
SELECT plan_swap('tokens2', 'decode2(text)', $$ SELECT migrate_value('tok', t) $$);
SELECT advance_migration('tokens2') AS phase;
SELECT advance_migration('tokens2', confirm => 'tokens2', read_sample => 0) AS phase;
SELECT detail FROM migration_history WHERE migration = 'tokens2' AND event = 'read_check';

------------------------------------------------------------------------------------------------------
-- Two columns whose contract constraint names come out the same ("a.b" and a_b): each gets its own.
------------------------------------------------------------------------------------------------------
CREATE TABLE twins (id int PRIMARY KEY, "a.b" text, a_b text);
INSERT INTO twins SELECT g, reverse('tok_' || g), reverse('tok_' || g) FROM generate_series(1, 20) g;
SELECT create_migration('twin_dot', 'twins', 'a.b', 'tok'), create_migration('twin_underscore', 'twins', 'a_b', 'tok');
SELECT advance_migration(m) AS tolerant FROM unnest(ARRAY['twin_dot', 'twin_underscore']) m;
SELECT advance_migration(m, confirm => m) AS producing FROM unnest(ARRAY['twin_dot', 'twin_underscore']) m;
SELECT start_backfill('twin_dot', throttle => false) AS twin_job1 \gset
SELECT start_backfill('twin_underscore', throttle => false) AS twin_job2 \gset
SELECT wait_backfill(:twin_job1, '60 s') AS backfilled, wait_backfill(:twin_job2, '60 s') AS backfilled;
SELECT advance_migration(m) AS converted FROM unnest(ARRAY['twin_dot', 'twin_underscore']) m;
SELECT advance_migration(m) AS contracted FROM unnest(ARRAY['twin_dot', 'twin_underscore']) m;
SELECT name, constraint_name IS NOT NULL AS constrained FROM migration_status WHERE name LIKE 'twin%' ORDER BY name;
SELECT count(DISTINCT constraint_name) AS distinct_constraints FROM migration_status WHERE name LIKE 'twin%';
INSERT INTO twins VALUES (100, 'x_kot', NULL);
INSERT INTO twins VALUES (101, NULL, 'x_kot');

------------------------------------------------------------------------------------------------------
-- Clean up: nothing of this file is left.
------------------------------------------------------------------------------------------------------
RESET search_path;
SET client_min_messages = warning;
DROP EXTENSION migration_ext CASCADE;
DROP SCHEMA door CASCADE;
RESET client_min_messages;
