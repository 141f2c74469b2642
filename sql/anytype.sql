-- Columns of any type with a text form: codecs detect and convert the text form, and the backfill casts
-- what they produce back to the column's type. Each type through a backfill, count_legacy and
-- audit_column; a jsonb document migration through the protocol to contracted; a converted value that
-- does not cast, failing the job with the row's key; migrate_value() typed for readers.
\set VERBOSITY default
\set SHOW_CONTEXT never
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS migration_ext CASCADE;
DROP SCHEMA IF EXISTS anyt CASCADE;
DROP ROLE IF EXISTS anyt_caller;
RESET client_min_messages;
CREATE EXTENSION migration_ext;
SET migration_ext.wait_progress = off;
-- Date/time text forms follow DateStyle and TimeZone: the session reads them as the worker does.
SET DateStyle = 'ISO, YMD';
SET TimeZone = 'UTC';
CREATE SCHEMA anyt;
SET search_path = anyt, public;

------------------------------------------------------------------------------------------------------
-- One table a type: legacy values (and a target one, a NULL) converted by a backfill.
------------------------------------------------------------------------------------------------------
-- integer: codes renumbered from the 1xxxx series to the 2xxxx series.
SELECT create_codec('int_series', 'strip_prefix:1|add_prefix:2', marker => '2', detect => 'absent', shape => '^1[0-9]{4}$');
CREATE TABLE ints (id int PRIMARY KEY, v integer);
INSERT INTO ints VALUES (1, 10001), (2, 10002), (3, 20003), (4, NULL);
-- numeric (with a typmod): versions 1.x become 2.x.
SELECT create_codec('num_major', 'strip_prefix:1.|add_prefix:2.', marker => '2.', detect => 'absent', shape => '^1\.');
CREATE TABLE nums (id int PRIMARY KEY, v numeric(4,2));
INSERT INTO nums VALUES (1, 1.5), (2, 1.25), (3, 2.75);
-- bytea: a leading version byte 0x01 becomes 0x02.
SELECT create_codec('bytes_v2', 'strip_prefix:\x01|add_prefix:\x02', marker => '\x02', detect => 'absent', shape => '^\\x01');
CREATE TABLE blobs (id int PRIMARY KEY, v bytea);
INSERT INTO blobs VALUES (1, '\x01aabb'), (2, '\x01'), (3, '\x02cc');
-- uuid: zero-padded legacy identifiers move to the a0000000- block.
SELECT create_codec('uuid_block', 'strip_prefix:00000000-|add_prefix:a0000000-', marker => 'a0000000-',
                    detect => 'absent', shape => '^00000000-');
CREATE TABLE uuids (id int PRIMARY KEY, v uuid);
INSERT INTO uuids VALUES (1, '00000000-0000-4000-8000-000000000001'), (2, 'a0000000-0000-4000-8000-000000000002');
-- timestamptz: a two-digit-year bug stored 2024 as 1924.
SELECT create_codec('century', 'strip_prefix:19|add_prefix:20', marker => '20', detect => 'absent', shape => '^19');
CREATE TABLE stamps (id int PRIMARY KEY, v timestamptz);
INSERT INTO stamps VALUES (1, '1924-06-15 12:00:00+00'), (2, '2024-06-16 12:00:00+00');
-- a domain (its constraint holds for both formats): the integer codec again.
CREATE DOMAIN anyt.code AS integer CHECK (VALUE > 0);
CREATE TABLE codes (id int PRIMARY KEY, v anyt.code);
INSERT INTO codes VALUES (1, 10042), (2, 20043);
-- an array: the version in its first element.
SELECT create_codec('array_v2', 'strip_prefix:{1,|add_prefix:{2,', marker => '{2,', detect => 'absent', shape => '^\{1,');
CREATE TABLE arrays (id int PRIMARY KEY, v int[]);
INSERT INTO arrays VALUES (1, '{1,7,8}'), (2, '{2,9}'), (3, '{}');

SELECT 'ints' AS t, * FROM audit_column('ints', 'v', 'int_series')
UNION ALL SELECT 'nums', * FROM audit_column('nums', 'v', 'num_major')
UNION ALL SELECT 'blobs', * FROM audit_column('blobs', 'v', 'bytes_v2')
UNION ALL SELECT 'uuids', * FROM audit_column('uuids', 'v', 'uuid_block')
UNION ALL SELECT 'stamps', * FROM audit_column('stamps', 'v', 'century')
UNION ALL SELECT 'codes', * FROM audit_column('codes', 'v', 'int_series')
UNION ALL SELECT 'arrays', * FROM audit_column('arrays', 'v', 'array_v2');

SELECT start_backfill('ints', 'v', 'int_series') AS job \gset
SELECT wait_backfill(:job, '60 s') AS ints_state;
SELECT start_backfill('nums', 'v', 'num_major') AS job \gset
SELECT wait_backfill(:job, '60 s') AS nums_state;
SELECT start_backfill('blobs', 'v', 'bytes_v2') AS job \gset
SELECT wait_backfill(:job, '60 s') AS blobs_state;
SELECT start_backfill('uuids', 'v', 'uuid_block') AS job \gset
SELECT wait_backfill(:job, '60 s') AS uuids_state;
SELECT start_backfill('stamps', 'v', 'century') AS job \gset
SELECT wait_backfill(:job, '60 s') AS stamps_state;
SELECT start_backfill('codes', 'v', 'int_series') AS job \gset
SELECT wait_backfill(:job, '60 s') AS codes_state;
SELECT start_backfill('arrays', 'v', 'array_v2') AS job \gset
SELECT wait_backfill(:job, '60 s') AS arrays_state;

SELECT count_legacy('ints', 'v', 'int_series') AS ints, count_legacy('nums', 'v', 'num_major') AS nums,
       count_legacy('blobs', 'v', 'bytes_v2') AS blobs, count_legacy('uuids', 'v', 'uuid_block') AS uuids,
       count_legacy('stamps', 'v', 'century') AS stamps, count_legacy('codes', 'v', 'int_series') AS codes,
       count_legacy('arrays', 'v', 'array_v2') AS arrays;
SELECT id, v FROM ints ORDER BY id;
SELECT id, v FROM nums ORDER BY id;
SELECT id, v FROM blobs ORDER BY id;
SELECT id, v FROM uuids ORDER BY id;
SELECT id, v FROM stamps ORDER BY id;
SELECT id, v FROM codes ORDER BY id;
SELECT id, v FROM arrays ORDER BY id;
SELECT state, rows_scanned, rows_converted FROM backfill_status WHERE relation = 'arrays'::regclass;

------------------------------------------------------------------------------------------------------
-- migrate_value() typed: a value of any type comes back as that type, no cast needed; text-like
-- arguments keep the text form.
------------------------------------------------------------------------------------------------------
SELECT migrate_value('int_series', 10007) AS int_value, pg_typeof(migrate_value('int_series', 10007)) AS int_type,
       migrate_value('int_series', 20007) AS passes, migrate_value('int_series', NULL::int) AS null_value,
       migrate_value('num_major', 1.5::numeric) AS numeric_value,
       migrate_value('bytes_v2', '\x01ff'::bytea) AS bytea_value,
       migrate_value('array_v2', ARRAY[1, 5]) AS array_value,
       pg_typeof(migrate_value('int_series', 10007::anyt.code)) AS domain_type,
       pg_typeof(migrate_value('int_series', '10007')) AS literal_type,
       pg_typeof(migrate_value('int_series', '10007'::varchar)) AS varchar_type;
-- A converted value its type does not read: the reader's error names the codec.
SELECT create_codec('int_to_word', 'strip_prefix:1|add_prefix:x', marker => 'x', detect => 'absent', shape => '^1');
SELECT migrate_value('int_to_word', 10007);
SELECT create_codec('int_negated', 'strip_prefix:1|add_prefix:-', marker => '-', detect => 'absent', shape => '^1');
SELECT migrate_value('int_negated', 10007::anyt.code);

------------------------------------------------------------------------------------------------------
-- A converted value that does not cast fails the job, naming the row's key; the rows before it stay
-- converted, the row and those after it untouched.
------------------------------------------------------------------------------------------------------
CREATE TABLE bad (id int PRIMARY KEY, v anyt.code);
INSERT INTO bad VALUES (1, 20001), (2, 20002), (3, 20003), (4, 10004), (5, 10005);
SELECT start_backfill('bad', 'v', 'int_negated', batch_size => 2, throttle => false) AS bad_job \gset
SELECT wait_backfill(:bad_job, '60 s') AS bad_state;
SELECT state, last_error, error_key FROM backfill_status WHERE job = :bad_job;
SELECT id, v FROM bad ORDER BY id;
-- The same for a plain integer column and a value that is not a number.
CREATE TABLE bad_int (id text PRIMARY KEY, v integer);
INSERT INTO bad_int VALUES ('a', 10001), ('b', 20002);
SELECT start_backfill('bad_int', 'v', 'int_to_word') AS job \gset
SELECT wait_backfill(:job, '60 s') AS bad_int_state;
SELECT state, last_error, error_key FROM backfill_status WHERE relation = 'bad_int'::regclass;

------------------------------------------------------------------------------------------------------
-- A jsonb document migration through the protocol: {"v": 1, "name": ...} becomes {"v": 2, "full_name": ...}
-- by an fn: step; the reader reads both through the typed migrate_value(); contracted at the end.
------------------------------------------------------------------------------------------------------
CREATE FUNCTION anyt.doc_v1_to_v2(doc text) RETURNS text LANGUAGE sql IMMUTABLE STRICT
	RETURN ((doc::jsonb - 'name') || jsonb_build_object('v', 2, 'full_name', doc::jsonb -> 'name'))::text;
SELECT create_codec('doc_v2', 'fn:anyt.doc_v1_to_v2', marker => '{"v": 2', detect => 'absent', shape => '^\{"v": 1[,}]');
CREATE TABLE docs (id int PRIMARY KEY, doc jsonb NOT NULL);
INSERT INTO docs SELECT g, jsonb_build_object('v', 1, 'name', 'user ' || g, 'tags', jsonb_build_array(g))
FROM generate_series(1, 50) g;
CREATE FUNCTION anyt.doc_name(d jsonb) RETURNS text LANGUAGE sql STABLE AS $$ SELECT d ->> 'name' $$;
SELECT freeze_function('anyt.doc_name(jsonb)');
SELECT create_migration('docs', 'docs', 'doc', 'doc_v2');
SELECT plan_swap('docs', 'anyt.doc_name(jsonb)', $$ SELECT migrate_value('doc_v2', d) ->> 'full_name' $$, role => 'reader');
SELECT sampled_rows, sampled_legacy_ratio, plan FROM inspect_column('docs', 'doc', 'doc_v2');
SELECT advance_migration('docs');
SELECT advance_migration('docs', confirm => 'docs');
SELECT detail FROM migration_history WHERE migration = 'docs' AND event = 'read_check';
SELECT start_backfill('docs') AS job \gset
SELECT wait_backfill(:job, '60 s') AS docs_state;
SELECT advance_migration('docs');
SELECT advance_migration('docs');
SELECT phase FROM migration_status WHERE name = 'docs';
SELECT doc FROM docs WHERE id = 7;
SELECT anyt.doc_name(doc) AS name, count(*) FROM docs WHERE id <= 2 GROUP BY 1 ORDER BY 1;
SELECT pg_get_constraintdef(c.oid) AS contract FROM pg_constraint c WHERE c.conrelid = 'docs'::regclass AND c.contype = 'c';
-- The contract refuses the legacy format, in any key order a writer gives it.
INSERT INTO docs VALUES (51, '{"name": "late", "v": 1}');
INSERT INTO docs VALUES (52, '{"v": 2, "full_name": "late"}');

-- A contract by definition (built-in steps) on a column that is not text.
SELECT create_migration('codes', 'codes', 'v', 'int_series');
SELECT advance_migration('codes'), advance_migration('codes', confirm => 'codes');
SELECT start_backfill('codes') AS job \gset
SELECT wait_backfill(:job, '60 s') AS codes_state;
SELECT advance_migration('codes');
SELECT advance_migration('codes');
SELECT pg_get_constraintdef(c.oid) AS contract FROM pg_constraint c WHERE c.conrelid = 'codes'::regclass AND c.contype = 'c'
  AND c.conname LIKE '%not_legacy';
INSERT INTO codes VALUES (9, 10009);

------------------------------------------------------------------------------------------------------
-- A column move from text into jsonb, with the mirror trigger converting live writes.
------------------------------------------------------------------------------------------------------
CREATE TABLE moves (id int PRIMARY KEY, old_doc text, doc jsonb);
INSERT INTO moves VALUES (1, '{"v": 1, "name": "a"}', NULL), (2, '{"v": 2, "full_name": "b"}', NULL);
SELECT create_mirror('moves', 'old_doc', 'doc', 'doc_v2');
INSERT INTO moves VALUES (3, '{"v": 1, "name": "c"}', NULL);
UPDATE moves SET old_doc = '{"v": 1, "name": "a2"}' WHERE id = 1;
SELECT start_backfill('moves', 'doc', 'doc_v2', source_column => 'old_doc') AS job \gset
SELECT wait_backfill(:job, '60 s') AS moves_state;
SELECT id, doc, pg_typeof(doc) FROM moves ORDER BY id;

------------------------------------------------------------------------------------------------------
-- Who may call what: cast_converted() does what a cast does, for anyone, and no more: a type the caller
-- cannot name stays out of reach, and a domain's constraint holds.
------------------------------------------------------------------------------------------------------
CREATE ROLE anyt_caller;
SET ROLE anyt_caller;
SELECT migration_ext.cast_converted('5', NULL::int, ARRAY['k']) AS cast_as_anyone;
SELECT migration_ext.cast_converted('5', NULL::anyt.code, ARRAY['k']);
RESET ROLE;
GRANT USAGE ON SCHEMA anyt TO anyt_caller;
SET ROLE anyt_caller;
SELECT migration_ext.cast_converted('-5', NULL::anyt.code, ARRAY['k']);
RESET ROLE;
REVOKE USAGE ON SCHEMA anyt FROM anyt_caller;
-- A domain's CHECK is the table owner's code: a superuser's backfill runs it as that owner, restricted.
CREATE TABLE anyt.seen_by (who name);
CREATE FUNCTION anyt.seen(v int) RETURNS boolean LANGUAGE plpgsql
	AS $$ BEGIN INSERT INTO anyt.seen_by VALUES (current_user); RETURN true; END $$;
CREATE DOMAIN anyt.watched AS integer CHECK (anyt.seen(VALUE));
CREATE TABLE anyt.owned (id int PRIMARY KEY, v anyt.watched);
INSERT INTO anyt.owned VALUES (1, 10001), (2, 10002);
GRANT USAGE ON SCHEMA anyt TO anyt_caller;
ALTER TABLE anyt.owned OWNER TO anyt_caller;
ALTER TABLE anyt.seen_by OWNER TO anyt_caller;
ALTER FUNCTION anyt.seen(int) OWNER TO anyt_caller;
TRUNCATE anyt.seen_by;
SELECT start_backfill('anyt.owned', 'v', 'int_series') AS job \gset
SELECT wait_backfill(:job, '60 s') AS owned_state;
SELECT who, count(*) FROM anyt.seen_by GROUP BY who;
SELECT id, v FROM anyt.owned ORDER BY id;

SELECT count(unfreeze_function(fn)) AS unfrozen FROM (SELECT DISTINCT fn FROM function_history) f;
SET client_min_messages = warning;
DROP SCHEMA anyt CASCADE;
DROP OWNED BY anyt_caller;
DROP ROLE anyt_caller;
RESET client_min_messages;
RESET search_path;
RESET DateStyle;
RESET TimeZone;
DROP EXTENSION migration_ext;
