-- Key columns: the plan inspect_column() prints is the one start_backfill() carries out. A key column is
-- rewritten in place while the backfill walks another unique key on NOT NULL columns (composite keys
-- included, foreign keys cascading); without such a key, behind a foreign key that does not cascade,
-- or in a partition key, both say "leave it" and the backfill is refused with the same reason.
\set VERBOSITY default
\set SHOW_CONTEXT never
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS migration_ext CASCADE;
DROP SCHEMA IF EXISTS keys CASCADE;
RESET client_min_messages;
CREATE EXTENSION migration_ext;
-- Waits print no progress NOTICEs: their figures differ from run to run.
SET migration_ext.wait_progress = off;
CREATE SCHEMA keys;
SET search_path = keys, public;
SELECT create_codec('tok', 'reverse', marker => 'tok_');

------------------------------------------------------------------------------------------------------
-- A composite primary key (region, code) whose code is converted, and a unique NOT NULL id beside it:
-- the backfill walks id and rewrites the key in place; rows referencing it with ON UPDATE CASCADE follow.
------------------------------------------------------------------------------------------------------
CREATE TABLE items (region text NOT NULL, code text NOT NULL, id int NOT NULL UNIQUE, PRIMARY KEY (region, code));
CREATE TABLE item_notes (region text, code text, note text,
	FOREIGN KEY (region, code) REFERENCES items ON UPDATE CASCADE);
INSERT INTO items SELECT CASE WHEN g % 2 = 0 THEN 'eu' ELSE 'us' END, reverse('tok_' || g), g FROM generate_series(1, 300) g;
INSERT INTO item_notes SELECT region, code, 'note of ' || id FROM items WHERE id <= 20;
SELECT in_primary_key, referenced_by, plan FROM inspect_column('items', 'code');
SELECT start_backfill('items', 'code', 'tok', throttle => false) AS job_items \gset
SELECT wait_backfill(:job_items, '60 s') AS items_state;
SELECT rows_converted, last_error FROM backfill_status WHERE job = :job_items;
SELECT count_legacy('items', 'code', 'tok') AS legacy_codes,
       count(*) FILTER (WHERE code = 'tok_' || id) AS converted_codes FROM items;
SELECT count(*) FILTER (WHERE n.code = 'tok_' || substr(n.note, 9)) AS notes_followed FROM item_notes n;
-- The same through the protocol, allow_key_update => true.
CREATE TABLE accounts (code text PRIMARY KEY, id int NOT NULL UNIQUE);
INSERT INTO accounts SELECT reverse('tok_' || g), g FROM generate_series(1, 50) g;
SELECT create_migration('codes', 'accounts', 'code', 'tok');
SELECT create_migration('codes', 'accounts', 'code', 'tok', allow_key_update => true);
SELECT advance_migration('codes') AS phase, advance_migration('codes', confirm => 'codes') AS phase;
SELECT start_backfill('codes') AS job_codes \gset
SELECT wait_backfill(:job_codes, '60 s') AS codes_state;
SELECT advance_migration('codes') AS phase;
SELECT count(*) FILTER (WHERE code = 'tok_' || id) AS converted_codes FROM accounts;

------------------------------------------------------------------------------------------------------
-- Refusals, each the plan inspect_column() printed.
------------------------------------------------------------------------------------------------------
-- The only key: nothing else to walk.
CREATE TABLE only_key (code text PRIMARY KEY, label text);
INSERT INTO only_key VALUES (reverse('tok_1'), 'one');
SELECT plan FROM inspect_column('only_key', 'code');
SELECT start_backfill('only_key', 'code', 'tok');
-- Referenced without ON UPDATE CASCADE.
CREATE TABLE parents (code text PRIMARY KEY, id int NOT NULL UNIQUE);
CREATE TABLE children (parent text REFERENCES parents);
INSERT INTO parents VALUES (reverse('tok_1'), 1);
INSERT INTO children VALUES (reverse('tok_1'));
SELECT plan FROM inspect_column('parents', 'code');
SELECT start_backfill('parents', 'code', 'tok');
-- In the partition key.
CREATE TABLE regional (region text NOT NULL, id int NOT NULL, PRIMARY KEY (region, id)) PARTITION BY LIST (region);
CREATE TABLE regional_a PARTITION OF regional FOR VALUES IN ('a_kot');
CREATE TABLE regional_rest PARTITION OF regional DEFAULT;
CREATE UNIQUE INDEX regional_ids ON regional_a (id);
INSERT INTO regional VALUES ('a_kot', 1), ('b_kot', 2);
SELECT plan FROM inspect_column('regional', 'region');
SELECT start_backfill('regional', 'region', 'tok');
SELECT start_backfill('regional_a', 'region', 'tok');
SELECT count(*) AS jobs_for_refusals FROM backfill_status
WHERE relation IN ('only_key'::regclass, 'parents'::regclass, 'regional'::regclass, 'regional_a'::regclass);

------------------------------------------------------------------------------------------------------
-- Clean up: nothing of this file is left.
------------------------------------------------------------------------------------------------------
RESET search_path;
SET client_min_messages = warning;
DROP EXTENSION migration_ext CASCADE;
DROP SCHEMA keys CASCADE;
RESET client_min_messages;
