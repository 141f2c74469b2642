-- Hostile input: every SQL entry point called with NULL in each argument, wrong types, hostile
-- identifiers (quotes, semicolons, spaces, mixed case, non-ASCII), huge values and out-of-range numbers.
-- Each call gets a clear error or the right result, and the server never restarts: the file ends on
-- the same backend, with the same postmaster start time.
-- It starts from a fresh extension and leaves nothing of its own behind.
\set VERBOSITY default
\set SHOW_CONTEXT never
SELECT pg_backend_pid() AS start_pid, pg_postmaster_start_time() AS start \gset
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS migration_ext CASCADE;
DROP SCHEMA IF EXISTS "hos;tile ""Sch" CASCADE;
RESET client_min_messages;
CREATE EXTENSION migration_ext;
-- Waits print no progress NOTICEs: their figures differ from run to run.
SET migration_ext.wait_progress = off;

-- Everything of this file lives in a schema whose name needs quoting.
CREATE SCHEMA "hos;tile ""Sch";
SET search_path = "hos;tile ""Sch", public;

-- A codec whose name is an injection attempt: it is data, bound as a parameter or quoted as a literal.
SELECT create_codec($$tok'); DROP TABLE "we;ird ""Tab"; --$$, 'reverse', marker => 'tok_') AS hostile_codec;
\set codec 'tok''); DROP TABLE "we;ird ""Tab"; --'
SELECT name, convert, marker, detect FROM migration_ext.codec;

------------------------------------------------------------------------------------------------------
-- create_codec / drop_codec: NULL in each argument, wrong types, bad names.
------------------------------------------------------------------------------------------------------
SELECT create_codec(NULL, 'reverse', 'tok_');
SELECT create_codec('c', NULL, 'tok_');
SELECT create_codec('c', 'reverse', NULL);             -- 'converted' needs a marker
SELECT create_codec('c', 'reverse', 'tok_', NULL);
SELECT create_codec('c_null_shape', 'reverse', 'tok_', 'converted', NULL) AS null_shape_is_fine;
SELECT create_codec('c', 'reverse', 'tok_', 'bogus');
SELECT create_codec('c', 'no;such step', 'tok_');
SELECT create_codec('c', 'reverse', 'tok_', shape => '((');
SELECT create_codec('c', 'fn:nosuch', 'tok_');
SELECT create_codec('c', 'fn:"hos;tile ""Sch".nosuch', 'tok_');
SELECT create_codec(1, 2);
SELECT create_codec('   ', 'reverse', 'tok_');
SELECT create_codec(repeat('é', 32), 'reverse', 'tok_');   -- 64 bytes
SELECT create_codec(repeat('é', 31), 'reverse', 'tok_') AS name_of_62_bytes;
SELECT create_codec($$x'); DROP TABLE "we;ird ""Tab"; --$$, 'reverse', 'tok_');
SELECT create_codec($$tok'); DROP TABLE "we;ird ""Tab"; --$$, 'reverse', 'tok_');
SELECT drop_codec(NULL);
SELECT drop_codec('no such codec');
SELECT drop_codec($$x'); DROP TABLE "we;ird ""Tab"; --$$) AS dropped_injection_named_codec;
SELECT drop_codec(repeat('é', 31)) AS dropped_non_ascii_codec;
SELECT drop_codec('c_null_shape');
SELECT count(*) AS codecs_left FROM migration_ext.codec;

------------------------------------------------------------------------------------------------------
-- is_legacy / migrate_value: a NULL codec gives NULL; a NULL value is not legacy and passes through.
------------------------------------------------------------------------------------------------------
SELECT is_legacy(NULL, 'cba_kot') IS NULL AS null_codec_is_legacy, migrate_value(NULL, 'cba_kot') IS NULL AS null_codec_migrate,
       is_legacy(NULL, NULL) IS NULL AS both_null_is_legacy, migrate_value(NULL, NULL) IS NULL AS both_null_migrate;
SELECT is_legacy(:'codec', NULL) AS null_value_is_legacy, migrate_value(:'codec', NULL) IS NULL AS null_value_migrates_to_null;
SELECT is_legacy(:'codec', 'cba_kot') AS legacy, migrate_value(:'codec', 'cba_kot') AS converted,
       migrate_value(:'codec', $$'; DROP TABLE x; --$$) AS passes_through;
SELECT is_legacy('no such codec', 'x');
SELECT migrate_value('no such codec', 'x');
SELECT migrate_value(:'codec', 42);

------------------------------------------------------------------------------------------------------
-- Huge values: 10 MB arguments and values, a 1 MB prefix.
------------------------------------------------------------------------------------------------------
-- A 10 MB codec name or conversion string is refused; the error echoes the whole argument back, so
-- only its SQLSTATE, its start and its length are shown here.
DO $$
BEGIN
	PERFORM create_codec(repeat('n', 10 * 1024 * 1024), 'reverse', 'tok_');
EXCEPTION WHEN OTHERS THEN
	RAISE NOTICE 'refused: SQLSTATE %, "%...", % characters', SQLSTATE, left(SQLERRM, 20), length(SQLERRM);
END
$$;
DO $$
BEGIN
	PERFORM create_codec('huge_garbage', repeat('z', 10 * 1024 * 1024), 'tok_');
EXCEPTION WHEN OTHERS THEN
	RAISE NOTICE 'refused: SQLSTATE %, "%...", % characters', SQLSTATE, left(SQLERRM, 20), length(SQLERRM);
END
$$;
-- A valid 10 MB conversion: a constant of 10 MB, and a pipeline of 1.7 million steps.
SELECT create_codec('huge_const', 'const:' || repeat('x', 10 * 1024 * 1024), detect => 'null');
SELECT length(migrate_value('huge_const', NULL)) AS const_length,
       migrate_value('huge_const', NULL) = repeat('x', 10 * 1024 * 1024) AS const_exact,
       migrate_value('huge_const', 'kept') AS non_null_passes_through;
SELECT create_codec('huge_pipeline', repeat('lower|', 1747626) || 'add_prefix:V2:', marker => 'V2:', detect => 'absent');
SELECT octet_length(convert) AS pipeline_bytes FROM migration_ext.codec WHERE name = 'huge_pipeline';
SELECT migrate_value('huge_pipeline', 'HeLLo') AS pipeline_result, is_legacy('huge_pipeline', 'V2:x') AS target_is_legacy;
-- A 1 MB prefix, as marker and as conversion step.
SELECT create_codec('huge_prefix', 'add_prefix:' || repeat('p', 1024 * 1024), marker => repeat('p', 1024 * 1024),
                    detect => 'absent');
SELECT length(migrate_value('huge_prefix', 'abc')) AS prefixed_length,
       migrate_value('huge_prefix', 'abc') = repeat('p', 1024 * 1024) || 'abc' AS prefixed_exact,
       is_legacy('huge_prefix', 'abc') AS short_is_legacy,
       is_legacy('huge_prefix', repeat('p', 1024 * 1024) || 'abc') AS prefixed_is_legacy,
       is_legacy('huge_prefix', repeat('p', 1024 * 1024 - 1)) AS almost_prefix_is_legacy;
SELECT create_codec('huge_strip', 'strip_prefix:' || repeat('q', 1024 * 1024) || '|add_prefix:V2:', marker => 'V2:',
                    detect => 'absent');
SELECT migrate_value('huge_strip', repeat('q', 1024 * 1024) || 'rest') AS stripped;
-- 10 MB values through the codec of the seed.
SELECT length(migrate_value(:'codec', repeat('a', 10 * 1024 * 1024) || '_kot')) AS converted_length,
       migrate_value(:'codec', repeat('a', 10 * 1024 * 1024) || '_kot') = 'tok_' || repeat('a', 10 * 1024 * 1024)
           AS converted_exact,
       is_legacy(:'codec', 'tok_' || repeat('a', 10 * 1024 * 1024)) AS target_is_legacy;
SELECT drop_codec('huge_const'), drop_codec('huge_pipeline'), drop_codec('huge_prefix'), drop_codec('huge_strip');

------------------------------------------------------------------------------------------------------
-- The hostile table: quotes, semicolons, spaces, mixed case and non-ASCII in every name, and values
-- that look like SQL. 1000 small rows of every kind and one legacy value of 10 MB.
------------------------------------------------------------------------------------------------------
CREATE TABLE "we;ird ""Tab" ("Tok én" text, "ID" int PRIMARY KEY);
INSERT INTO "we;ird ""Tab" ("ID", "Tok én")
SELECT g, CASE WHEN g % 10 < 7 THEN reverse('tok_' || g || $$'; DROP TABLE x; --"é$$)   -- legacy
               WHEN g % 10 = 7 THEN 'tok_' || g                                          -- target already
               WHEN g % 10 = 8 THEN NULL
               ELSE $$Robert'); DROP TABLE "we;ird ""Tab";--$$ END                         -- neither
FROM generate_series(1, 1000) g;
INSERT INTO "we;ird ""Tab" VALUES (reverse('tok_' || repeat('b', 10 * 1024 * 1024)), 1001);
SELECT count_legacy('"we;ird ""Tab"', 'Tok én', :'codec') AS legacy_before;
SELECT * FROM audit_column('"we;ird ""Tab"', 'Tok én', :'codec');
SELECT in_primary_key, in_unique_index, foreign_keys, referenced_by, in_partition_key, in_expression_index,
       in_partial_index, is_generated, user_triggers, sampled_rows, sampled_legacy_ratio, plan
FROM inspect_column('"we;ird ""Tab"', 'Tok én', :'codec');
SELECT in_primary_key, plan FROM inspect_column('"we;ird ""Tab"', 'ID');

-- count_legacy / audit_column / inspect_column: NULLs, wrong types, missing things.
SELECT count_legacy(NULL, 'Tok én', :'codec');
SELECT count_legacy('"we;ird ""Tab"', NULL, :'codec');
SELECT count_legacy('"we;ird ""Tab"', 'Tok én', NULL);
SELECT count_legacy('we;ird "Tab', 'Tok én', :'codec');   -- unquoted: not even a name
SELECT count_legacy('no_such_table', 'Tok én', :'codec');
SELECT count_legacy(0, 'Tok én', :'codec');
SELECT count_legacy('"we;ird ""Tab"', 'tok én', :'codec');
SELECT count_legacy('"we;ird ""Tab"', 'ID', :'codec');
SELECT count_legacy('"we;ird ""Tab"', 'Tok én', 'no such codec');
SELECT count_legacy('"we;ird ""Tab"', 'Tok én', 42);
SELECT * FROM audit_column(NULL, NULL, NULL);
SELECT * FROM audit_column('"we;ird ""Tab"', 'Tok én', NULL);
SELECT * FROM audit_column('"we;ird ""Tab"', 'Tok én; DROP TABLE x', :'codec');
SELECT * FROM inspect_column(NULL, 'Tok én');
SELECT * FROM inspect_column('"we;ird ""Tab"', NULL);
SELECT plan FROM inspect_column('"we;ird ""Tab"', 'Tok én', NULL);
SELECT * FROM inspect_column('"we;ird ""Tab"', 'Tok én', 'no such codec');
SELECT in_primary_key, sampled_legacy_ratio, plan FROM inspect_column('"we;ird ""Tab"', 'ID', :'codec');

------------------------------------------------------------------------------------------------------
-- start_backfill, both forms: NULLs, wrong types, out-of-range numbers. Nothing is started.
------------------------------------------------------------------------------------------------------
SELECT start_backfill(NULL);
SELECT start_backfill(NULL::text, NULL, NULL);
SELECT start_backfill('no such migration');
SELECT start_backfill($$m'; DROP TABLE x; --$$);
SELECT start_backfill(NULL::regclass, 'Tok én', :'codec');
SELECT start_backfill('"we;ird ""Tab"'::regclass, NULL, :'codec');
SELECT start_backfill('"we;ird ""Tab"'::regclass, 'Tok én', NULL);
SELECT start_backfill('"we;ird ""Tab"', NULL, :'codec');
SELECT start_backfill('"we;ird ""Tab"', 'Tok én', NULL);
SELECT start_backfill('we;ird "Tab', 'Tok én', :'codec');
SELECT start_backfill(42, 'Tok én', :'codec');          -- an integer is taken as a table OID
SELECT start_backfill('"we;ird ""Tab"', 'no such column', :'codec');
SELECT start_backfill('"we;ird ""Tab"', 'ID', :'codec');
SELECT start_backfill('"we;ird ""Tab"', 'Tok én', 'no such codec');
SELECT start_backfill('"we;ird ""Tab"', 'Tok én', :'codec', source_column => 'no such column');
SELECT start_backfill('"we;ird ""Tab"', 'Tok én', :'codec', batch_size => 0);
SELECT start_backfill('"we;ird ""Tab"', 'Tok én', :'codec', batch_size => -1);
SELECT start_backfill('"we;ird ""Tab"', 'Tok én', :'codec', batch_size => 2147483648);
SELECT start_backfill('"we;ird ""Tab"', 'Tok én', :'codec', batch_size => 'many');
SELECT start_backfill('"we;ird ""Tab"', 'Tok én', :'codec', max_rows_per_second => -5);
SELECT start_backfill('"we;ird ""Tab"', 'Tok én', :'codec', max_rows_per_second => 0);
SELECT start_backfill('"we;ird ""Tab"', 'Tok én', :'codec', batch_time_target => '-1 s');
SELECT start_backfill('"we;ird ""Tab"', 'Tok én', :'codec', batch_time_target => '0 s');
SELECT start_backfill('"we;ird ""Tab"', 'Tok én', :'codec', max_replica_lag => '-1 s');
SELECT start_backfill('"we;ird ""Tab"', 'Tok én', :'codec', max_active_backends => -1);
SELECT start_backfill('"we;ird ""Tab"', 'Tok én', :'codec', max_wal_bytes_per_second => -1);
SELECT start_backfill('"we;ird ""Tab"', 'Tok én', :'codec', live_duty_cycle => 0);
SELECT start_backfill('"we;ird ""Tab"', 'Tok én', :'codec', live_duty_cycle => -1e308);
SELECT start_backfill('"we;ird ""Tab"', 'Tok én', :'codec', live_duty_cycle => 'Infinity');
SELECT start_backfill('"we;ird ""Tab"', 'Tok én', :'codec', target_relation => 'no_such_table');
SELECT start_backfill('"we;ird ""Tab"', 'Tok én', :'codec', target_relation => '"we;ird ""Tab"', source_column => 'ID');
SELECT count(*) AS jobs_after_refusals FROM backfill_status;

------------------------------------------------------------------------------------------------------
-- The backfill on the hostile table works and converts every row (batch_size 2147483647, throttled:
-- the controller clamps it), then runs again and changes nothing.
------------------------------------------------------------------------------------------------------
SELECT start_backfill('"we;ird ""Tab"', 'Tok én', :'codec', batch_size => 2147483647,
                      max_rows_per_second => 2147483647, throttle => NULL) AS job_weird \gset
SELECT wait_backfill(:job_weird, '120 s') AS weird_state;
SELECT relation, column_name, codec = :'codec' AS codec_is_hostile_name, state, rows_scanned, rows_converted,
       rows_skipped, conflicts, percent_done, last_key, last_error, throttle
FROM backfill_status WHERE job = :job_weird;
SELECT count_legacy('"we;ird ""Tab"', 'Tok én', :'codec') AS legacy_after;
SELECT count(*) FILTER (WHERE "ID" % 10 < 7 AND "Tok én" = 'tok_' || "ID" || $$'; DROP TABLE x; --"é$$) AS legacy_converted,
       count(*) FILTER (WHERE "ID" % 10 = 7 AND "Tok én" = 'tok_' || "ID") AS target_untouched,
       count(*) FILTER (WHERE "ID" % 10 = 8 AND "Tok én" IS NULL) AS null_untouched,
       count(*) FILTER (WHERE "ID" % 10 = 9 AND "Tok én" = $$Robert'); DROP TABLE "we;ird ""Tab";--$$) AS other_untouched
FROM "we;ird ""Tab" WHERE "ID" <= 1000;
SELECT "Tok én" = 'tok_' || repeat('b', 10 * 1024 * 1024) AS huge_row_converted FROM "we;ird ""Tab" WHERE "ID" = 1001;
SELECT start_backfill('"we;ird ""Tab"', 'Tok én', :'codec', batch_size => 2147483647, throttle => false) AS job_again \gset
SELECT wait_backfill(:job_again, '120 s') AS again_state;
SELECT state, rows_scanned, rows_converted, rows_skipped, conflicts, last_error FROM backfill_status WHERE job = :job_again;

-- A composite key of text values that need escaping in an array literal (quotes, commas, braces,
-- backslashes, spaces, the word NULL, the empty string), in hostile column names; tiny batches so
-- that the checkpoint passes through every one of them.
CREATE TABLE "Ké""y;tab" ("K 1" text, "k;2" int, "Tok én" text, "Néw ""col" text, PRIMARY KEY ("K 1", "k;2"));
INSERT INTO "Ké""y;tab"
SELECT k, g, reverse('tok_' || g), NULL
FROM generate_series(1, 50) g, unnest(ARRAY['a"b', 'c,d', '{e}', 'f\g', 'h i', 'NULL', '', 'ü', $$'); --$$]) k;
SELECT start_backfill('"Ké""y;tab"', 'Tok én', :'codec', batch_size => 7, throttle => false) AS job_key \gset
SELECT wait_backfill(:job_key, '120 s') AS key_state;
SELECT state, rows_scanned, rows_converted, rows_skipped, conflicts, last_error,
       last_key = (SELECT ARRAY["K 1", "k;2"::text] FROM "Ké""y;tab"
                   ORDER BY "K 1" DESC, "k;2" DESC LIMIT 1) AS checkpoint_is_last_key
FROM backfill_status WHERE job = :job_key;
SELECT count(*) AS rows, count(*) FILTER (WHERE "Tok én" = 'tok_' || "k;2") AS converted FROM "Ké""y;tab";

------------------------------------------------------------------------------------------------------
-- The operator's controls: NULL job, unknown jobs, wrong types, out-of-range numbers.
------------------------------------------------------------------------------------------------------
SELECT pause_backfill(NULL);
SELECT resume_backfill(NULL);
SELECT cancel_backfill(NULL);
SELECT alter_backfill(NULL);
SELECT alter_backfill(NULL, max_rows_per_second => 10);
SELECT wait_backfill(NULL);
SELECT wait_backfill(NULL, '1 s');
SELECT pause_backfill(-1);
SELECT resume_backfill(0);
SELECT cancel_backfill(9223372036854775807);
SELECT alter_backfill(-9223372036854775808);
SELECT wait_backfill(9223372036854775807, '1 s');
SELECT pause_backfill('abc');
SELECT wait_backfill(:job_key, 'soon');
SELECT alter_backfill(:job_key, max_rows_per_second => 'fast');
-- A finished job: no pause, resume, cancel or alter; waiting returns at once whatever the timeout.
SELECT pause_backfill(:job_key);
SELECT resume_backfill(:job_key);
SELECT cancel_backfill(:job_key);
SELECT alter_backfill(:job_key, max_rows_per_second => 10);
SELECT wait_backfill(:job_key) AS no_timeout, wait_backfill(:job_key, NULL) AS null_timeout,
       wait_backfill(:job_key, '-1 s') AS negative_timeout, wait_backfill(:job_key, '0 s') AS zero_timeout;
SELECT wait_backfill(:job_key, '1000000 years');

-- A paused job (paused in the transaction that starts it, so its worker never runs a batch).
UPDATE "Ké""y;tab" SET "Tok én" = reverse("Tok én");
BEGIN;
SELECT start_backfill('"Ké""y;tab"', 'Tok én', :'codec', batch_size => 5) AS job_paused \gset
SELECT pause_backfill(:job_paused);
COMMIT;
SELECT wait_backfill(:job_paused, '60 s') AS paused_state;
SELECT wait_backfill(:job_paused, '-1 s') AS negative_timeout_on_paused;
SELECT alter_backfill(:job_paused, max_rows_per_second => -5);
SELECT alter_backfill(:job_paused, max_rows_per_second => -2147483648);
SELECT alter_backfill(:job_paused, batch_time_target => '-1 s');
SELECT alter_backfill(:job_paused, batch_time_target => '0 s');
SELECT alter_backfill(:job_paused, max_replica_lag => '-1 s');
SELECT alter_backfill(:job_paused, max_active_backends => -1);
SELECT alter_backfill(:job_paused, max_wal_bytes_per_second => -1);
SELECT alter_backfill(:job_paused, live_duty_cycle => 1.0000001);
SELECT alter_backfill(:job_paused, live_duty_cycle => 0.0099999);
SELECT alter_backfill(:job_paused, live_duty_cycle => 'NaN');
SELECT alter_backfill(:job_paused);   -- nothing to change: a no-op
SELECT alter_backfill(:job_paused, max_rows_per_second => 2147483647, batch_time_target => '1 hour',
                      max_replica_lag => '0 s', max_active_backends => 2147483647,
                      max_wal_bytes_per_second => 9223372036854775807, throttle => NULL,
                      live_duty_cycle => 1);
SELECT state, requested, rows_converted, max_rows_per_second, throttle, batch_time_target_ms, max_replica_lag_s,
       max_active_backends, max_wal_bytes_per_second, live_duty_cycle
FROM backfill_status WHERE job = :job_paused;
SELECT alter_backfill(:job_paused, max_rows_per_second => 0);   -- removes the cap
SELECT max_rows_per_second FROM backfill_status WHERE job = :job_paused;
-- A second job on the same column is refused while this one is unfinished.
SELECT start_backfill('"Ké""y;tab"', 'Tok én', :'codec');
SELECT resume_backfill(:job_paused);
SELECT wait_backfill(:job_paused, '120 s') AS resumed_state;
SELECT state, rows_scanned, rows_converted, last_error FROM backfill_status WHERE job = :job_paused;
SELECT count(*) FILTER (WHERE "Tok én" = 'tok_' || "k;2") AS converted_again FROM "Ké""y;tab";

------------------------------------------------------------------------------------------------------
-- create_mirror / drop_mirror: NULLs, hostile names, wrong columns.
------------------------------------------------------------------------------------------------------
SELECT create_mirror(NULL, 'Tok én', 'Néw "col', :'codec');
SELECT create_mirror('"Ké""y;tab"', NULL, 'Néw "col', :'codec');
SELECT create_mirror('"Ké""y;tab"', 'Tok én', NULL, :'codec');
SELECT create_mirror('"Ké""y;tab"', 'Tok én', 'Néw "col', NULL);
SELECT create_mirror('"Ké""y;tab"', 'Tok én', 'Tok én', :'codec');
SELECT create_mirror('"Ké""y;tab"', 'no such column', 'Néw "col', :'codec');
SELECT create_mirror('"Ké""y;tab"', 'Tok én', 'no such column', :'codec');
SELECT create_mirror('"Ké""y;tab"', 'Tok én', 'Néw "col', :'codec') AS mirror_created;
SELECT create_mirror('"Ké""y;tab"', 'Tok én', 'Néw "col', :'codec');
INSERT INTO "Ké""y;tab" VALUES ($$x'; --$$, 1, reverse('tok_mirrored'), NULL);
UPDATE "Ké""y;tab" SET "Tok én" = reverse('tok_updated') WHERE "K 1" = 'a"b' AND "k;2" = 2;
SELECT "K 1", "k;2", "Tok én", "Néw ""col" FROM "Ké""y;tab" WHERE "Néw ""col" IS NOT NULL ORDER BY 1, 2;
SELECT tgname FROM pg_trigger WHERE tgrelid = '"Ké""y;tab"'::regclass ORDER BY 1;
SELECT drop_mirror(NULL, NULL, NULL);
SELECT drop_mirror('"Ké""y;tab"', NULL, 'Néw "col');
SELECT drop_mirror('"Ké""y;tab"', 'Néw "col', 'Tok én');
SELECT drop_mirror('"Ké""y;tab"', 'Tok én', 'Néw "col') AS mirror_dropped;
SELECT count(*) AS triggers_left FROM pg_trigger WHERE tgrelid = '"Ké""y;tab"'::regclass AND NOT tgisinternal;

------------------------------------------------------------------------------------------------------
-- Frozen functions with hostile names and bodies full of quotes and dollar signs.
------------------------------------------------------------------------------------------------------
CREATE TABLE "Acc""ts; x" ("ID" bigint PRIMARY KEY, "Tok én" text);
INSERT INTO "Acc""ts; x" SELECT g, reverse('tok_' || g) FROM generate_series(1, 200) g;
CREATE FUNCTION "dé""code; f"(t text) RETURNS text LANGUAGE sql STABLE AS $$ SELECT reverse($1) $$;
CREATE FUNCTION "st""ore; f"(bigint, text) RETURNS void LANGUAGE sql
	AS $$ UPDATE "Acc""ts; x" SET "Tok én" = reverse($2) WHERE "ID" = $1 $$;
SELECT freeze_function(NULL);
SELECT freeze_function('no_such_function(int)');
SELECT freeze_function('"dé""code; f"(int)');
SELECT freeze_function('sum(int)');
SELECT freeze_function('"dé""code; f"(text)') AS decode_version;
SELECT freeze_function('"dé""code; f"(text)');
SELECT freeze_function('"st""ore; f"(bigint,text)') AS store_version;
SELECT swap_function(NULL, 'SELECT $1');
SELECT swap_function('"dé""code; f"(text)', NULL);
SELECT swap_function('lower(text)', 'SELECT $1');
SELECT swap_function('"dé""code; f"(text)', 'SELECT no_such_function($1)');
SELECT swap_function('"dé""code; f"(text)', 'SELECT $1', language => 'no such language');
SELECT swap_function('"dé""code; f"(text)', 42);
SELECT swap_function('"dé""code; f"(text)', $b$ SELECT 'it''s $$ ; "quoted" ' || $1 $b$, note => $$q'uote; --$$)
    AS swapped_version;
SELECT "dé""code; f"('x') AS swapped_body_runs;
SELECT version, role, note, body
FROM function_history WHERE fn = '"dé""code; f"(text)'::regprocedure ORDER BY version;
SELECT swap_function('"dé""code; f"(text)', 'SELECT $1', note => NULL, language => NULL) AS null_note_and_language;
SELECT revert_function(NULL);
SELECT revert_function('"dé""code; f"(text)', -1);
SELECT revert_function('"dé""code; f"(text)', 0);
SELECT revert_function('"dé""code; f"(text)', 2147483647);
SELECT revert_function('"dé""code; f"(text)', 'two');
SELECT revert_function('"dé""code; f"(text)', NULL) AS reverted_to_previous;
SELECT revert_function('"dé""code; f"(text)', 1) AS reverted_to_first;
SELECT "dé""code; f"('cba_kot') AS first_body_again;
SELECT revert_function('"st""ore; f"(bigint,text)');
SELECT unfreeze_function(NULL);
SELECT unfreeze_function('lower(text)');
SELECT unfreeze_function('no_such_function(int)');

------------------------------------------------------------------------------------------------------
-- The migration protocol with hostile names, all the way to contracted.
------------------------------------------------------------------------------------------------------
SELECT create_migration(NULL, '"Acc""ts; x"', 'Tok én', :'codec');
SELECT create_migration('', '"Acc""ts; x"', 'Tok én', :'codec');
SELECT create_migration(' ', '"Acc""ts; x"', 'Tok én', :'codec');
SELECT create_migration('m', NULL, 'Tok én', :'codec');
SELECT create_migration('m', '"Acc""ts; x"', NULL, :'codec');
SELECT create_migration('m', '"Acc""ts; x"', 'Tok én', NULL);
SELECT create_migration('m', '"Acc""ts; x"', 'Tok én', 'no such codec');
SELECT create_migration('m', 'no_such_table', 'Tok én', :'codec');
SELECT create_migration('m', 'we;ird "Tab', 'Tok én', :'codec');
SELECT create_migration('m', '"Acc""ts; x"', 'no such column', :'codec');
SELECT create_migration('m', '"Acc""ts; x"', 'Tok én', :'codec', source_column => 'no such column');
SELECT create_migration('m', '"Acc""ts; x"', 'ID', :'codec');
SELECT create_migration('m', '"Acc""ts; x"', 'Tok én', :'codec', allow_key_update => 'maybe');
SELECT create_migration($$m'; DROP TABLE x; --"$$, '"Acc""ts; x"', 'Tok én', :'codec', allow_key_update => NULL)
    AS hostile_migration;
\set mig 'm''; DROP TABLE x; --"'
SELECT create_migration(:'mig', '"Acc""ts; x"', 'Tok én', :'codec');
SELECT plan_swap(NULL, '"dé""code; f"(text)', 'SELECT $1');
SELECT plan_swap('no such migration', '"dé""code; f"(text)', 'SELECT $1');
SELECT plan_swap(:'mig', NULL, 'SELECT $1');
SELECT plan_swap(:'mig', '"dé""code; f"(text)', NULL);
SELECT plan_swap(:'mig', '"dé""code; f"(text)', 'SELECT $1', role => NULL);
SELECT plan_swap(:'mig', '"dé""code; f"(text)', 'SELECT $1', role => $$ad'min$$);
SELECT plan_swap(:'mig', 'lower(text)', 'SELECT $1');
SELECT plan_swap(:'mig', '"dé""code; f"(text)', $$ SELECT migrate_value('tok''); DROP TABLE "we;ird ""Tab"; --', $1) $$)
    AS reader_planned;
SELECT plan_swap(:'mig', '"dé""code; f"(text)', 'SELECT $1');
SELECT plan_swap(:'mig', '"st""ore; f"(bigint,text)', $$ UPDATE "Acc""ts; x" SET "Tok én" = $2 WHERE "ID" = $1 $$,
                 role => 'writer') AS writer_planned;
SELECT advance_migration(NULL);
SELECT advance_migration(NULL, NULL);
SELECT advance_migration('no such migration');
SELECT retreat_migration(NULL);
SELECT retreat_migration('no such migration');
SELECT retreat_migration(:'mig');
SELECT advance_migration(:'mig', confirm => NULL) AS to_tolerant;
SELECT "dé""code; f"('cba_kot') AS tolerant_reads_legacy, "dé""code; f"('tok_new') AS tolerant_reads_target;
SELECT advance_migration(:'mig', confirm => NULL);
SELECT advance_migration(:'mig', confirm => 'm');
SELECT advance_migration(:'mig', confirm => :'mig') AS through_the_door;
SELECT "st""ore; f"(1, 'tok_written');
SELECT "Tok én" AS written_plain FROM "Acc""ts; x" WHERE "ID" = 1;
SELECT start_backfill(:'mig', batch_size => 0);
SELECT start_backfill(:'mig', max_rows_per_second => -5);
SELECT start_backfill(:'mig', source_column => 'no such column');
SELECT start_backfill(:'mig', batch_size => 2147483647, throttle => false) AS job_mig \gset
SELECT wait_backfill(:job_mig, '120 s') AS mig_state;
SELECT rows_scanned, rows_converted, rows_skipped, last_error FROM backfill_status WHERE job = :job_mig;
SELECT advance_migration(:'mig') AS to_converted;
SELECT advance_migration(:'mig') AS to_contracted;
SELECT name, phase, relation, column_name, codec = :'codec' AS codec_is_hostile_name, constraint_name, job_state
FROM migration_status WHERE name = :'mig';
SELECT conname, pg_get_constraintdef(oid) AS definition FROM pg_constraint
WHERE conrelid = '"Acc""ts; x"'::regclass ORDER BY conname;
INSERT INTO "Acc""ts; x" VALUES (1000, reverse('tok_refused'));
SELECT retreat_migration(:'mig') AS back_to_converted;
SELECT retreat_migration(:'mig');
SELECT advance_migration(:'mig') AS contracted_again;
SELECT count(*) AS events FROM migration_history WHERE migration = :'mig';
-- A codec a migration uses cannot be dropped.
SELECT drop_codec(:'codec');
SELECT name, phase FROM migration_status ORDER BY name;

------------------------------------------------------------------------------------------------------
-- Clean up: nothing of this file is left.
------------------------------------------------------------------------------------------------------
SELECT state, count(*) FROM backfill_status GROUP BY state ORDER BY state;
SELECT count(unfreeze_function(fn)) AS unfrozen FROM (SELECT DISTINCT fn FROM function_history) f;
RESET search_path;
SET client_min_messages = warning;
DROP SCHEMA "hos;tile ""Sch" CASCADE;
RESET client_min_messages;
DROP EXTENSION migration_ext;

-- The server never restarted and this is the same backend.
SELECT pg_backend_pid() = :start_pid AS same_backend, pg_postmaster_start_time() = :'start' AS no_restart;
