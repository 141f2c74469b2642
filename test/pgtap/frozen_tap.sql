-- pgTAP: the frozen-function API contract of DESIGN.md §2 (signatures, the history view, swaps and
-- reverts, the event trigger, errors with their SQLSTATEs). Everything is rolled back.
\set tests 57
\ir preamble.psql

------------------------------------------------------------------------------------------------------
-- Signatures.
------------------------------------------------------------------------------------------------------
SELECT has_function('freeze_function', ARRAY['regprocedure'], 'freeze_function(regprocedure) exists');
SELECT function_returns('freeze_function', ARRAY['regprocedure'], 'integer', 'freeze_function returns the version');
SELECT is(pg_get_function_arguments('freeze_function(regprocedure)'::regprocedure), 'fn regprocedure',
	'freeze_function(fn regprocedure)');

SELECT has_function('swap_function', ARRAY['regprocedure', 'text', 'text', 'name'], 'swap_function(regprocedure, text, text, name) exists');
SELECT function_returns('swap_function', ARRAY['regprocedure', 'text', 'text', 'name'], 'integer', 'swap_function returns the version');
SELECT is(pg_get_function_arguments('swap_function(regprocedure,text,text,name)'::regprocedure),
	'fn regprocedure, body text, note text DEFAULT NULL::text, language name DEFAULT NULL::name',
	'swap_function(fn, body, note DEFAULT NULL, language DEFAULT NULL)');

SELECT has_function('revert_function', ARRAY['regprocedure', 'integer'], 'revert_function(regprocedure, integer) exists');
SELECT function_returns('revert_function', ARRAY['regprocedure', 'integer'], 'integer', 'revert_function returns the version');
SELECT is(pg_get_function_arguments('revert_function(regprocedure,integer)'::regprocedure),
	'fn regprocedure, to_version integer DEFAULT NULL::integer', 'revert_function(fn, to_version DEFAULT NULL)');

SELECT has_function('unfreeze_function', ARRAY['regprocedure'], 'unfreeze_function(regprocedure) exists');

SELECT has_view('function_history', 'view function_history exists');
SELECT has_column('function_history', 'fn', 'function_history.fn');
SELECT col_type_is('function_history', 'fn', 'regprocedure', 'function_history.fn is regprocedure');
SELECT col_type_is('function_history', 'version', 'integer', 'function_history.version is integer');
SELECT col_type_is('function_history', 'role', 'text', 'function_history.role is text');
SELECT col_type_is('function_history', 'body', 'text', 'function_history.body is text');
SELECT col_type_is('function_history', 'note', 'text', 'function_history.note is text');
SELECT col_type_is('function_history', 'created_at', 'timestamp with time zone', 'function_history.created_at (time)');
SELECT col_type_is('function_history', 'wal_lsn', 'pg_lsn', 'function_history.wal_lsn (WAL position)');
SELECT col_type_is('function_history', 'is_current', 'boolean', 'function_history.is_current is boolean');
SELECT col_type_is('function_history', 'previous_version', 'integer', 'function_history.previous_version is integer');

SELECT ok(EXISTS (SELECT FROM pg_event_trigger WHERE evtname = 'migration_ext_frozen_ddl' AND evtevent = 'ddl_command_end'),
	'event trigger on ddl_command_end exists');
SELECT ok(EXISTS (SELECT FROM pg_event_trigger WHERE evtname = 'migration_ext_frozen_drop' AND evtevent = 'sql_drop'),
	'event trigger on sql_drop exists');

------------------------------------------------------------------------------------------------------
-- Freeze, swap, revert.
------------------------------------------------------------------------------------------------------
CREATE SCHEMA tap_app;
CREATE FUNCTION tap_app.greet(who text) RETURNS text LANGUAGE plpgsql STABLE STRICT
	AS $$ BEGIN RETURN 'hello ' || who; END $$;
CREATE FUNCTION tap_app.twice(n int) RETURNS int LANGUAGE sql IMMUTABLE AS $$ SELECT n * 2 $$;
CREATE TEMP TABLE saved_definitions AS
	SELECT 'greet_v1'::text AS label, pg_get_functiondef('tap_app.greet(text)'::regprocedure) AS definition;

SELECT is(freeze_function('tap_app.greet(text)'), 1, 'freeze_function records version 1');
SELECT is(freeze_function('tap_app.twice(int)'), 1, 'freeze_function records version 1 per function');
SELECT is(swap_function('tap_app.greet(text)', $$ BEGIN RETURN 'hi ' || who; END $$, 'shorter'), 2,
	'swap_function records version 2');
SELECT is(tap_app.greet('ann'), 'hi ann', 'callers get the swapped plpgsql body');
SELECT is(swap_function('tap_app.twice(int)', $$ SELECT n * 3 $$), 2, 'swap of a SQL function');
SELECT is(tap_app.twice(7), 21, 'callers get the swapped SQL body');
SELECT results_eq(
	$$ SELECT provolatile::text, proisstrict FROM pg_proc WHERE oid = 'tap_app.greet(text)'::regprocedure $$,
	$$ VALUES ('s', true) $$, 'volatility and strictness are kept');

SELECT throws_ok($$ SELECT swap_function('tap_app.greet(text)', $b$ BEGIN RETURN 'x' || ; END $b$) $$, '42601', NULL,
	'a body that does not compile is refused');
SELECT is(tap_app.greet('ann'), 'hi ann', 'a refused body changes nothing');
SELECT is((SELECT max(version) FROM function_history WHERE fn = 'tap_app.greet(text)'::regprocedure), 2,
	'a refused body records no version');

SELECT is(revert_function('tap_app.greet(text)'), 3, 'revert_function records version 3');
SELECT is(tap_app.greet('ann'), 'hello ann', 'revert brings the previous body back');
SELECT is(pg_get_functiondef('tap_app.greet(text)'::regprocedure),
	(SELECT definition FROM saved_definitions WHERE label = 'greet_v1'), 'the reverted definition is byte-identical');
SELECT is(revert_function('tap_app.greet(text)', 2), 4, 'revert to a named version');
SELECT is(tap_app.greet('ann'), 'hi ann', 'the named version''s body is back');

SELECT results_eq(
	$$ SELECT version, role, is_current, previous_version, note, wal_lsn IS NOT NULL
	   FROM function_history WHERE fn = 'tap_app.greet(text)'::regprocedure ORDER BY version $$,
	$$ VALUES (1, 'freeze', false, NULL::int, 'frozen', true),
	          (2, 'swap', false, 1, 'shorter', true),
	          (3, 'revert', false, NULL, 'reverted to version 1', true),
	          (4, 'revert', true, 1, 'reverted to version 2', true) $$,
	'function_history records every version, the current one, and what revert returns to');

------------------------------------------------------------------------------------------------------
-- The event trigger.
------------------------------------------------------------------------------------------------------
SELECT throws_ok($$ DROP FUNCTION tap_app.greet(text) $$, '2BP01', NULL, 'DROP FUNCTION of a frozen function is refused');
SELECT throws_ok($$ ALTER FUNCTION tap_app.greet(text) RENAME TO greet2 $$, '55006',
	'function tap_app.greet(text) is frozen: its name and schema are a contract', 'RENAME of a frozen function is refused');
CREATE SCHEMA tap_other;
SELECT throws_ok($$ ALTER FUNCTION tap_app.greet(text) SET SCHEMA tap_other $$, '55006',
	'function tap_app.greet(text) is frozen: its name and schema are a contract', 'SET SCHEMA of a frozen function is refused');
SELECT has_function('tap_app', 'greet', ARRAY['text'], 'the frozen function is still there, under its name');
SELECT lives_ok($$ CREATE OR REPLACE FUNCTION tap_app.twice(n int) RETURNS int LANGUAGE sql IMMUTABLE AS 'SELECT n * 5' $$,
	'an out-of-band CREATE OR REPLACE is allowed');
SELECT results_eq(
	$$ SELECT role, note FROM function_history WHERE fn = 'tap_app.twice(int)'::regprocedure AND is_current $$,
	$$ VALUES ('out_of_band', 'CREATE FUNCTION outside migration_ext') $$,
	'and recorded as an out_of_band version');

------------------------------------------------------------------------------------------------------
-- Errors.
------------------------------------------------------------------------------------------------------
CREATE FUNCTION tap_app.loose() RETURNS int LANGUAGE sql AS 'SELECT 1';
SELECT throws_ok($$ SELECT freeze_function('tap_app.greet(text)') $$, '42710', 'function tap_app.greet(text) is already frozen',
	'freezing twice');
SELECT throws_ok($$ SELECT swap_function('tap_app.loose()', 'SELECT 2') $$, '55000', 'function tap_app.loose() is not frozen',
	'swapping an unfrozen function');
SELECT throws_ok($$ SELECT swap_function('tap_app.greet(text)', NULL) $$, '22004', 'function body must not be NULL',
	'a NULL body');
SELECT throws_ok($$ SELECT revert_function('tap_app.greet(text)', 42) $$, '22023', 'function tap_app.greet(text) has no version 42',
	'reverting to a version that does not exist');
CREATE FUNCTION tap_app.fresh() RETURNS int LANGUAGE sql AS 'SELECT 1';
SELECT is(freeze_function('tap_app.fresh()'), 1, 'a fresh function is frozen');
SELECT throws_ok($$ SELECT revert_function('tap_app.fresh()') $$, '55000',
	'function tap_app.fresh() has no earlier version to revert to', 'reverting with no earlier version');
SELECT throws_ok($$ SELECT freeze_function('sum(int)') $$, '42809',
	'cannot freeze sum(integer): only functions and procedures can be frozen', 'freezing an aggregate');
SELECT throws_ok($$ SELECT freeze_function(NULL) $$, '22004', 'function must not be NULL', 'freezing NULL');

------------------------------------------------------------------------------------------------------
-- Unfreeze, and DROP EXTENSION with frozen functions present.
------------------------------------------------------------------------------------------------------
SELECT lives_ok($$ SELECT unfreeze_function('tap_app.fresh()') $$, 'unfreeze_function');
SELECT lives_ok($$ DROP FUNCTION tap_app.fresh() $$, 'an unfrozen function can be dropped');
SELECT lives_ok($$ DROP EXTENSION migration_ext $$, 'DROP EXTENSION works with frozen functions present');
SELECT is(tap_app.greet('ann'), 'hi ann', 'the functions stay as they are');

SELECT * FROM finish();
ROLLBACK;
