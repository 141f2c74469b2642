-- Codecs: detection from the value itself, conversion pipelines, the per-backend cache, the errors a
-- user can reach, and the C++/PostgreSQL error boundary.
-- migration_ext.classify() is the per-value verdict audit_column counts; it is used here to show it.
\set VERBOSITY default
\set SHOW_CONTEXT never
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS migration_ext CASCADE;
DROP SCHEMA IF EXISTS codec CASCADE;
DROP SCHEMA IF EXISTS codec_fns CASCADE;
RESET client_min_messages;
CREATE EXTENSION migration_ext;
-- The tables of this file live in a schema of their own; the extension itself stays in public.
CREATE SCHEMA codec;
SET search_path = codec, public;

------------------------------------------------------------------------------------------------------
-- The seed codec: legacy tokens were stored reversed; reversed back, every one starts with 'tok_'.
------------------------------------------------------------------------------------------------------
SELECT create_codec('token_plain', convert => 'reverse', marker => 'tok_', detect => 'converted');

-- legacy: its reversal starts with the marker          -> converted
-- target: starts with the marker, its reversal does not -> passes through
-- ambiguous: both forms start with the marker         -> never guessed, passes through
-- other: neither                                      -> passes through
SELECT v, migration_ext.classify('token_plain', v) AS verdict, is_legacy('token_plain', v),
       migrate_value('token_plain', v)
FROM (VALUES (1, 'cba_kot'), (2, '99_kot'), (3, 'tok_abc'), (4, 'tok_'), (5, 'tok_x_kot'), (6, 'tok__kot'),
             (7, 'hello'), (8, '_kot'), (9, 'TOK_abc'), (10, NULL)) t(i, v)
ORDER BY i;

-- A NULL codec name yields NULL, like any strict-looking SQL function.
SELECT migrate_value(NULL, 'cba_kot') IS NULL AS null_codec_migrate, is_legacy(NULL, 'cba_kot') IS NULL AS null_codec_is_legacy;

------------------------------------------------------------------------------------------------------
-- Every builtin step.
------------------------------------------------------------------------------------------------------
-- reverse (converted mode, marker '>')
SELECT create_codec('step_reverse', 'reverse', marker => '>');
SELECT migrate_value('step_reverse', 'cba>') AS legacy, migrate_value('step_reverse', '>x') AS target,
       migrate_value('step_reverse', 'abc') AS other;

-- strip_prefix: a value without the prefix cannot be converted, so in converted mode it is "other"
SELECT create_codec('step_strip', 'strip_prefix:old:', marker => 'new');
SELECT migrate_value('step_strip', 'old:newx') AS legacy, migrate_value('step_strip', 'newx') AS target,
       migrate_value('step_strip', 'old:x') AS other_conversion, migrate_value('step_strip', 'plain') AS other_no_prefix;

-- add_prefix (absent mode: every value without the marker is legacy)
SELECT create_codec('step_add', 'add_prefix:new:', marker => 'new:', detect => 'absent');
SELECT migrate_value('step_add', 'x') AS legacy, migrate_value('step_add', 'new:x') AS target;

-- hex_encode: lower-case hex of the UTF-8 bytes, exactly what encode(..., 'hex') gives
SELECT create_codec('step_hex_encode', 'hex_encode|add_prefix:h:', marker => 'h:', detect => 'absent');
SELECT migrate_value('step_hex_encode', 'héllo') AS converted,
       migrate_value('step_hex_encode', 'héllo') = 'h:' || encode(convert_to('héllo', 'UTF8'), 'hex') AS same_as_encode;

-- hex_decode: both digit cases
SELECT create_codec('step_hex_decode', 'hex_decode|add_prefix:v2:', marker => 'v2:', detect => 'absent');
SELECT migrate_value('step_hex_decode', '68c3a96c6c6f') AS lower_digits,
       migrate_value('step_hex_decode', '68C3A96C6C6F') AS upper_digits;

-- base64_encode: what encode(..., 'base64') gives for a short value
SELECT create_codec('step_b64_encode', 'base64_encode|add_prefix:b:', marker => 'b:', detect => 'absent');
SELECT migrate_value('step_b64_encode', 'héllo wörld') AS converted,
       migrate_value('step_b64_encode', 'héllo wörld')
           = 'b:' || encode(convert_to('héllo wörld', 'UTF8'), 'base64') AS same_as_encode,
       migrate_value('step_b64_encode', 'a') AS one_byte, migrate_value('step_b64_encode', 'ab') AS two_bytes;

-- base64_decode in converted mode: legacy only if the decoded value starts with the marker
SELECT create_codec('step_b64_decode', 'base64_decode', marker => 'tok_');
SELECT migrate_value('step_b64_decode', encode('tok_abc', 'base64')) AS legacy,
       migrate_value('step_b64_decode', 'aGVsbG8=') AS decodes_without_marker,
       migrate_value('step_b64_decode', 'not base64!') AS not_base64,
       migrate_value('step_b64_decode', 'dG9rX2Fi Yw==') AS whitespace_ignored;

-- lower and upper (ASCII letters)
SELECT create_codec('step_lower', 'lower', marker => 'tok_');
SELECT migrate_value('step_lower', 'TOK_ABC') AS legacy, migrate_value('step_lower', 'tok_Abc') AS target,
       migrate_value('step_lower', 'XYZ') AS other;
SELECT create_codec('step_upper', 'upper|add_prefix:U:', marker => 'U:', detect => 'absent');
SELECT migrate_value('step_upper', 'abc-9') AS legacy, migrate_value('step_upper', 'U:abc') AS target;

-- const:V replaces the value; const: (empty) is allowed
SELECT create_codec('step_const', 'const:tok_default', marker => 'tok_');
SELECT migrate_value('step_const', 'anything') AS legacy, migrate_value('step_const', 'tok_kept') AS target;

-- '\|' is a literal '|' inside an argument, '\\' a literal backslash
SELECT create_codec('step_escape', 'add_prefix:a\|b\\:', marker => 'a|b\:', detect => 'absent');
SELECT migrate_value('step_escape', 'x') AS escaped;

------------------------------------------------------------------------------------------------------
-- A pipeline: strip the v1: prefix, base64-decode, add the v2: prefix.
------------------------------------------------------------------------------------------------------
SELECT create_codec('v1_to_v2', 'strip_prefix:v1:|base64_decode|add_prefix:v2:', marker => 'v2:', detect => 'absent');
SELECT v, migration_ext.classify('v1_to_v2', v) AS verdict, migrate_value('v1_to_v2', v)
FROM (VALUES (1, 'v1:' || encode('hello', 'base64')), (2, 'v1:' || encode(convert_to('wörld €', 'UTF8'), 'base64')),
             (3, 'v2:hello'), (4, 'v2:'), (5, 'v1:'), (6, NULL)) t(i, v)
ORDER BY i;
-- In absent mode a value without the marker is legacy: one the pipeline cannot convert is an error.
SELECT migrate_value('v1_to_v2', 'garbage');
SELECT migrate_value('v1_to_v2', 'v1:***');

------------------------------------------------------------------------------------------------------
-- Detect modes 'absent' and 'null'.
------------------------------------------------------------------------------------------------------
SELECT create_codec('versioned', 'add_prefix:v2:', marker => 'v2:', detect => 'absent');
SELECT v, migration_ext.classify('versioned', v) AS verdict, is_legacy('versioned', v), migrate_value('versioned', v)
FROM (VALUES (1, 'abc'), (2, 'v2:abc'), (3, 'V2:abc'), (4, ''), (5, NULL)) t(i, v)
ORDER BY i;

-- NULL is the legacy state: the conversion runs on the empty string; every non-NULL value is target.
SELECT create_codec('required', 'const:unset', detect => 'null');
SELECT create_codec('required_empty', 'const:', detect => 'null');
SELECT v, migration_ext.classify('required', v) AS verdict, is_legacy('required', v), migrate_value('required', v),
       migrate_value('required_empty', v) = '' AS empty_default
FROM (VALUES (1, NULL), (2, 'x'), (3, ''), (4, 'unset')) t(i, v)
ORDER BY i;

------------------------------------------------------------------------------------------------------
-- shape: a PostgreSQL regular expression further restricts what counts as legacy.
------------------------------------------------------------------------------------------------------
SELECT create_codec('shaped', 'reverse', marker => 'tok_', shape => '^[a-z_]+$');
SELECT v, migration_ext.classify('shaped', v) AS verdict, migrate_value('shaped', v)
FROM (VALUES (1, 'cba_kot'), (2, 'CBA_kot'), (3, 'cba_kot!'), (4, 'tok_ABC'), (5, 'tok_x_kot'), (6, 'tok_X_kot')) t(i, v)
ORDER BY i;
SELECT create_codec('shaped_absent', 'add_prefix:v2:', marker => 'v2:', detect => 'absent', shape => '^[0-9]+$');
SELECT v, migration_ext.classify('shaped_absent', v) AS verdict, migrate_value('shaped_absent', v)
FROM (VALUES (1, '123'), (2, '12a'), (3, 'v2:12a'), (4, '')) t(i, v)
ORDER BY i;
-- The shape is matched by characters, as PostgreSQL's ~ does.
SELECT create_codec('shaped_utf8', 'add_prefix:v2:', marker => 'v2:', detect => 'absent', shape => '^.{3}$');
SELECT migrate_value('shaped_utf8', 'äöü') AS three_characters, migrate_value('shaped_utf8', 'abcd') AS four_characters;

------------------------------------------------------------------------------------------------------
-- fn:schema.name steps call a SQL function text -> text.
------------------------------------------------------------------------------------------------------
CREATE SCHEMA codec_fns;
CREATE FUNCTION codec_fns.rot13(t text) RETURNS text LANGUAGE sql IMMUTABLE STRICT
	AS $$ SELECT translate(t, 'abcdefghijklmnopqrstuvwxyz', 'nopqrstuvwxyzabcdefghijklm') $$;
CREATE FUNCTION codec_fns.tag(t text) RETURNS text LANGUAGE plpgsql IMMUTABLE
	AS $$ BEGIN RETURN 'v3:' || t; END $$;
SELECT create_codec('rot13', 'fn:codec_fns.rot13|add_prefix:r:', marker => 'r:', detect => 'absent');
SELECT migrate_value('rot13', 'hello') AS legacy, migrate_value('rot13', 'r:hello') AS target;
-- mixed with builtin steps, in converted mode
SELECT create_codec('rot13_reversed', 'reverse|fn:codec_fns.rot13', marker => 'gbx_');
SELECT migrate_value('rot13_reversed', 'cba_kot') AS legacy, migrate_value('rot13_reversed', 'gbx_abc') AS target,
       migrate_value('rot13_reversed', 'cba') AS other;
SELECT create_codec('tagged', 'fn:codec_fns.tag', marker => 'v3:', detect => 'absent');
SELECT migrate_value('tagged', v) FROM (VALUES (1, 'a'), (2, 'v3:b'), (3, '')) t(i, v) ORDER BY i;
-- A function step is called per legacy value of a table, too.
SELECT migrate_value('rot13', 'row' || g) FROM generate_series(1, 3) g ORDER BY g;

------------------------------------------------------------------------------------------------------
-- Multibyte UTF-8: reverse reverses characters, exactly as PostgreSQL's reverse() does.
------------------------------------------------------------------------------------------------------
CREATE TABLE multibyte (i int, v text);
INSERT INTO multibyte VALUES
	(1, 'tok_añ'), (2, 'tok_€uro'), (3, 'tok_𝄞 clef'), (4, 'tok_日本語'), (5, 'tok_e' || U&'\0301' || 'x'),
	(6, 'tok_😀👍🏽');
SELECT i, migrate_value('token_plain', reverse(v)) = v AS round_trip,
       migrate_value('token_plain', reverse(v)) = reverse(reverse(v)) AS same_as_reverse,
       octet_length(v) > length(v) AS multibyte,
       migrate_value('token_plain', reverse(v)) AS converted
FROM multibyte ORDER BY i;
SELECT migrate_value('step_reverse', 'añ€𝄞>') AS reversed, reverse('añ€𝄞>') AS postgres_reverse;

------------------------------------------------------------------------------------------------------
-- Empty strings.
------------------------------------------------------------------------------------------------------
SELECT migrate_value('token_plain', '') = '' AS seed_passes_empty, migration_ext.classify('token_plain', '') AS seed,
       migrate_value('versioned', '') AS absent_converts_empty,
       migrate_value('step_b64_decode', '') = '' AS b64_empty,
       migrate_value('step_hex_decode', '') AS hex_empty,
       migrate_value('v1_to_v2', 'v1:') AS pipeline_empty_payload,
       migrate_value('required', '') = '' AS null_mode_empty_is_target;

------------------------------------------------------------------------------------------------------
-- A TOASTed multi-megabyte value.
------------------------------------------------------------------------------------------------------
CREATE TABLE big (id int PRIMARY KEY, kind text, v text);
CREATE TABLE big_external (id int PRIMARY KEY, kind text, v text);
ALTER TABLE big_external ALTER COLUMN v SET STORAGE EXTERNAL;   -- out of line, uncompressed
INSERT INTO big VALUES
	(1, 'legacy', reverse('tok_' || repeat(md5('legacy'), 100000))),
	(2, 'target', 'tok_' || repeat(md5('target'), 100000)),
	(3, 'other', repeat(md5('other'), 100000));
-- (not INSERT ... SELECT: that would copy the compressed datums as they are)
INSERT INTO big_external VALUES
	(1, 'legacy', reverse('tok_' || repeat(md5('legacy'), 100000))),
	(2, 'target', 'tok_' || repeat(md5('target'), 100000)),
	(3, 'other', repeat(md5('other'), 100000));
-- Both are out of line: compressed in big, as is (3 x 3.2 MB) in big_external.
SELECT (SELECT pg_relation_size(reltoastrelid) > 0 FROM pg_class WHERE relname = 'big') AS big_toasted,
       (SELECT pg_relation_size(reltoastrelid) > 9000000 FROM pg_class WHERE relname = 'big_external') AS external_toasted,
       (SELECT sum(pg_column_size(v)) < 1000000 FROM big) AS big_compressed,
       (SELECT sum(pg_column_size(v)) > 9000000 FROM big_external) AS external_uncompressed;
SELECT 'big' AS tab, id, kind, length(v), migration_ext.classify('token_plain', v) AS verdict,
       length(migrate_value('token_plain', v)) AS migrated_length,
       md5(migrate_value('token_plain', v)) = md5(CASE kind WHEN 'legacy' THEN reverse(v) ELSE v END) AS md5_ok,
       left(migrate_value('token_plain', v), 8) AS head
FROM big
UNION ALL
SELECT 'big_external', id, kind, length(v), migration_ext.classify('token_plain', v),
       length(migrate_value('token_plain', v)),
       md5(migrate_value('token_plain', v)) = md5(CASE kind WHEN 'legacy' THEN reverse(v) ELSE v END),
       left(migrate_value('token_plain', v), 8)
FROM big_external
ORDER BY 1, 2;
-- A pipeline over a multi-megabyte value.
SELECT length(migrate_value('versioned', v)) AS length,
       md5(migrate_value('versioned', v)) = md5('v2:' || v) AS md5_ok
FROM big_external WHERE id = 3;
SELECT count_legacy('big', 'v', 'token_plain') AS big_legacy;

------------------------------------------------------------------------------------------------------
-- count_legacy and audit_column.
------------------------------------------------------------------------------------------------------
CREATE TABLE accounts (id int PRIMARY KEY, token text, token_vc varchar(40), token_ch char(7), n int);
INSERT INTO accounts VALUES
	(1, 'cba_kot',   'cba_kot', 'cba_kot', 1),   -- legacy
	(2, 'fed_kot',   'fed_kot', 'fed_kot', 2),   -- legacy
	(3, '987_kot',   NULL,      NULL,      3),   -- legacy
	(4, 'tok_abc',   'tok_abc', 'tok_abc', 4),   -- target
	(5, 'tok_x_kot', 'hello',   'hello',   5),   -- ambiguous
	(6, NULL,        'x',       'x',       6),   -- NULL
	(7, 'hello',     'x',       'x',       7),   -- other
	(8, '',          'x',       'x',       8);   -- other
SELECT count_legacy('accounts', 'token', 'token_plain') AS legacy_tokens;
SELECT * FROM audit_column('accounts', 'token', 'token_plain');
SELECT count_legacy('accounts', 'token_vc', 'token_plain') AS legacy_varchar,
       count_legacy('accounts', 'token_ch', 'token_plain') AS legacy_char;
SELECT * FROM audit_column('accounts', 'token_vc', 'token_plain');
-- With the null codec, the NULLs are the legacy values.
SELECT count_legacy('accounts', 'token', 'required') AS legacy_nulls;
SELECT * FROM audit_column('accounts', 'token', 'required');
-- Identifiers that need quoting.
CREATE TABLE "Odd Table" ("Odd Column" text);
INSERT INTO "Odd Table" VALUES ('cba_kot'), ('tok_abc'), (NULL);
SELECT count_legacy('"Odd Table"', 'Odd Column', 'token_plain') AS odd_legacy;
SELECT * FROM audit_column('"Odd Table"', 'Odd Column', 'token_plain');
-- After converting the legacy rows, none are left.
UPDATE accounts SET token = migrate_value('token_plain', token);
SELECT count_legacy('accounts', 'token', 'token_plain') AS legacy_after_update;
SELECT * FROM audit_column('accounts', 'token', 'token_plain');

------------------------------------------------------------------------------------------------------
-- The cache is invalidated within one session: the next statement uses the new definition.
------------------------------------------------------------------------------------------------------
SELECT create_codec('changing', 'reverse', marker => 'tok_');
PREPARE use_changing(text) AS SELECT migrate_value('changing', $1);
SELECT migrate_value('changing', 'CBA_kot') AS before_change;
EXECUTE use_changing('cba_kot');
SELECT drop_codec('changing');
SELECT migrate_value('changing', 'cba_kot');
SELECT create_codec('changing', 'lower|reverse', marker => 'tok_');
SELECT migrate_value('changing', 'CBA_KOT') AS after_change;
EXECUTE use_changing('CBA_KOT');
-- In one transaction, and undone by its rollback.
BEGIN;
SELECT drop_codec('changing');
SELECT create_codec('changing', 'const:tok_rolled_back', marker => 'tok_');
EXECUTE use_changing('anything');
ROLLBACK;
EXECUTE use_changing('CBA_KOT');
SELECT migrate_value('changing', 'anything') AS after_rollback;
DEALLOCATE use_changing;

------------------------------------------------------------------------------------------------------
-- Every bad input, with its message.
------------------------------------------------------------------------------------------------------
-- unknown codec
SELECT migrate_value('no_such_codec', 'x');
SELECT is_legacy('no_such_codec', 'x');
SELECT migrate_value('', 'x');
SELECT drop_codec('no_such_codec');
-- unknown step
SELECT create_codec('bad', 'reverse|rot26', marker => 'x');
-- malformed step arguments
SELECT create_codec('bad', 'strip_prefix', marker => 'x');
SELECT create_codec('bad', 'add_prefix:', marker => 'x');
SELECT create_codec('bad', 'reverse:x', marker => 'x');
SELECT create_codec('bad', 'const', marker => 'x');
SELECT create_codec('bad', 'fn:noschema', marker => 'x');
SELECT create_codec('bad', 'fn:a.b.c', marker => 'x');
-- empty pipeline, empty step
SELECT create_codec('bad', '', marker => 'x');
SELECT create_codec('bad', 'reverse||upper', marker => 'x');
-- fn: naming a missing function, or one not returning text
SELECT create_codec('bad', 'fn:codec_fns.missing', marker => 'x');
CREATE FUNCTION codec_fns.length_of(t text) RETURNS int LANGUAGE sql IMMUTABLE AS $$ SELECT length(t) $$;
SELECT create_codec('bad', 'fn:codec_fns.length_of', marker => 'x');
-- a bad regular expression as shape
SELECT create_codec('bad', 'reverse', marker => 'x', shape => '([a-z]');
-- empty, blank, NULL, too long and duplicate names
SELECT create_codec('', 'reverse', marker => 'x');
SELECT create_codec('   ', 'reverse', marker => 'x');
SELECT create_codec(NULL, 'reverse', marker => 'x');
SELECT create_codec(repeat('n', 64), 'reverse', marker => 'x');
SELECT create_codec('token_plain', 'reverse', marker => 'tok_');
-- NULL conversion, NULL or unknown detect mode, empty marker
SELECT create_codec('bad', NULL, marker => 'x');
SELECT create_codec('bad', 'reverse', marker => 'x', detect => NULL);
SELECT create_codec('bad', 'reverse', marker => 'x', detect => 'sometimes');
SELECT create_codec('bad', 'reverse', marker => '', detect => 'absent');
-- converted and absent modes without a marker
SELECT create_codec('bad', 'reverse');
SELECT create_codec('bad', 'add_prefix:v2:', detect => 'absent');
-- an absent codec whose output is still legacy would never converge
SELECT create_codec('bad', 'reverse', marker => 'v2:', detect => 'absent');
SELECT create_codec('bad', 'upper|add_prefix:v2:', marker => 'V2:', detect => 'absent');
-- ... and one the probes cannot judge (an fn: step) is caught when it runs
CREATE FUNCTION codec_fns.same(t text) RETURNS text LANGUAGE sql IMMUTABLE AS $$ SELECT t $$;
SELECT create_codec('not_converging', 'fn:codec_fns.same', marker => 'v3:', detect => 'absent');
SELECT migrate_value('not_converging', 'x');
-- count_legacy and audit_column on a missing column, one that is not text (its text form), a missing
-- relation, NULLs
SELECT count_legacy('accounts', 'no_such_column', 'token_plain');
SELECT count_legacy('accounts', 'n', 'token_plain');
SELECT * FROM audit_column('accounts', 'no_such_column', 'token_plain');
SELECT * FROM audit_column('accounts', 'n', 'token_plain');
SELECT count_legacy('no_such_table', 'token', 'token_plain');
SELECT count_legacy('accounts', NULL, 'token_plain');
SELECT count_legacy('accounts', 'token', 'no_such_codec');
-- none of the refused codecs exists
SELECT count(*) AS refused_codecs_stored FROM migration_ext.codec WHERE name IN ('bad', '', '   ');

------------------------------------------------------------------------------------------------------
-- The guard: (a) a C++ exception thrown by a codec step becomes a clean ERROR.
------------------------------------------------------------------------------------------------------
SELECT pg_backend_pid() AS backend_pid \gset
SELECT create_codec('hex_then_v2', 'hex_decode|add_prefix:v2:', marker => 'v2:', detect => 'absent');
SELECT migrate_value('hex_then_v2', 'zz');
SELECT migrate_value('hex_then_v2', '616263') AS next_statement_works;
SELECT migrate_value('hex_then_v2', 'abc');
SELECT migrate_value('hex_then_v2', '00');
SELECT migrate_value('hex_then_v2', 'ff');
SELECT migrate_value('hex_then_v2', '68c3a9') AS still_works;
-- Its SQLSTATE is invalid_text_representation, and PL/pgSQL can catch it.
DO $$
DECLARE
	state text;
	message text;
BEGIN
	PERFORM migrate_value('hex_then_v2', 'zz');
	RAISE EXCEPTION 'not reached';
EXCEPTION WHEN invalid_text_representation THEN
	GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, message = MESSAGE_TEXT;
	RAISE NOTICE 'caught %: %', state, message;
END
$$;
-- Inside a transaction, a savepoint rolls the failure back and the same codec keeps working.
BEGIN;
SELECT migrate_value('hex_then_v2', '78') AS before_failure;
SAVEPOINT s;
SELECT migrate_value('hex_then_v2', 'zz');
ROLLBACK TO SAVEPOINT s;
SELECT migrate_value('hex_then_v2', '79') AS after_failure;
COMMIT;

------------------------------------------------------------------------------------------------------
-- The guard: (b) an ERROR raised inside a guarded PostgreSQL call (an fn: step function) propagates
-- with its own message, HINT and SQLSTATE, can be caught, and leaves the backend usable.
------------------------------------------------------------------------------------------------------
CREATE FUNCTION codec_fns.picky(t text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	IF t LIKE '%bad%' THEN
		RAISE EXCEPTION 'picky refuses "%"', t USING ERRCODE = 'check_violation', DETAIL = 'It is bad.',
			HINT = 'Send good values.';
	END IF;
	RETURN 'v3:' || t;
END
$$;
SELECT create_codec('picky', 'fn:codec_fns.picky', marker => 'v3:', detect => 'absent');
SELECT migrate_value('picky', 'good') AS good;
SELECT migrate_value('picky', 'so bad');
DO $$
DECLARE
	state text;
	message text;
	detail text;
	hint text;
BEGIN
	PERFORM migrate_value('picky', 'bad value');
	RAISE EXCEPTION 'not reached';
EXCEPTION WHEN check_violation THEN
	GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, message = MESSAGE_TEXT, detail = PG_EXCEPTION_DETAIL,
		hint = PG_EXCEPTION_HINT;
	RAISE NOTICE 'caught %: % / % / %', state, message, detail, hint;
END
$$;
-- is_legacy does not call the function: in absent mode a value without the marker is legacy as it is.
SELECT is_legacy('picky', 'bad') AS bad_is_legacy;
-- The error aborts a whole statement over a table, and nothing else.
CREATE TABLE picky_rows (i int, v text);
INSERT INTO picky_rows VALUES (1, 'one'), (2, 'bad two'), (3, 'three');
SELECT i, migrate_value('picky', v) FROM picky_rows ORDER BY i;
-- Caught per row in PL/pgSQL, the other rows convert.
DO $$
DECLARE
	r record;
BEGIN
	FOR r IN SELECT i, v FROM picky_rows ORDER BY i LOOP
		BEGIN
			RAISE NOTICE 'row %: %', r.i, migrate_value('picky', r.v);
		EXCEPTION WHEN check_violation THEN
			RAISE NOTICE 'row %: refused (%)', r.i, SQLERRM;
		END;
	END LOOP;
END
$$;
-- The backend is the same one and keeps working.
SELECT pg_backend_pid() = :backend_pid AS same_backend;
SELECT migrate_value('picky', 'after') AS a, migrate_value('picky', 'v3:kept') AS b,
       migrate_value('token_plain', 'cba_kot') AS c, migrate_value('v1_to_v2', 'v1:' || encode('ok', 'base64')) AS d,
       migrate_value('rot13', 'uryyb') AS e;
SELECT migrate_value('picky', 'row' || g) FROM generate_series(1, 3) g ORDER BY g;
SELECT count_legacy('accounts', 'token_vc', 'token_plain') AS still_counting;

------------------------------------------------------------------------------------------------------
-- Clean up: nothing of this file is left.
------------------------------------------------------------------------------------------------------
RESET search_path;
SET client_min_messages = warning;
DROP EXTENSION migration_ext;
DROP SCHEMA codec CASCADE;
DROP SCHEMA codec_fns CASCADE;
RESET client_min_messages;
