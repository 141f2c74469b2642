-- pgTAP: the codec API contract of DESIGN.md §2 (signatures, errors with their SQLSTATEs, conversions,
-- audit counts). Everything is rolled back.
\set tests 73
\ir preamble.psql

------------------------------------------------------------------------------------------------------
-- Signatures: names, argument names and types, defaults, results.
------------------------------------------------------------------------------------------------------
SELECT has_schema('migration_ext', 'the extension keeps its state in schema migration_ext');

SELECT has_function('create_codec', ARRAY['text', 'text', 'text', 'text', 'text'], 'create_codec(text, text, text, text, text) exists');
SELECT function_returns('create_codec', ARRAY['text', 'text', 'text', 'text', 'text'], 'void', 'create_codec returns void');
SELECT is(pg_get_function_arguments('create_codec(text,text,text,text,text)'::regprocedure),
	'name text, convert text, marker text DEFAULT NULL::text, detect text DEFAULT ''converted''::text, shape text DEFAULT NULL::text',
	'create_codec(name, convert, marker DEFAULT NULL, detect DEFAULT ''converted'', shape DEFAULT NULL)');

SELECT has_function('drop_codec', ARRAY['text'], 'drop_codec(text) exists');
SELECT is(pg_get_function_arguments('drop_codec(text)'::regprocedure), 'name text', 'drop_codec(name text)');

SELECT has_function('is_legacy', ARRAY['text', 'text'], 'is_legacy(text, text) exists');
SELECT function_returns('is_legacy', ARRAY['text', 'text'], 'boolean', 'is_legacy returns boolean');
SELECT is(pg_get_function_arguments('is_legacy(text,text)'::regprocedure), 'codec text, value text', 'is_legacy(codec text, value text)');

SELECT has_function('migrate_value', ARRAY['text', 'text'], 'migrate_value(text, text) exists');
SELECT function_returns('migrate_value', ARRAY['text', 'text'], 'text', 'migrate_value returns text');
SELECT is(pg_get_function_arguments('migrate_value(text,text)'::regprocedure), 'codec text, value text', 'migrate_value(codec text, value text)');
-- Hot-path functions may be cached per statement, never folded at plan time: codecs change.
SELECT volatility_is('migrate_value', ARRAY['text', 'text'], 'stable', 'migrate_value is STABLE');
SELECT volatility_is('is_legacy', ARRAY['text', 'text'], 'stable', 'is_legacy is STABLE');

SELECT has_function('count_legacy', ARRAY['regclass', 'name', 'text'], 'count_legacy(regclass, name, text) exists');
SELECT function_returns('count_legacy', ARRAY['regclass', 'name', 'text'], 'bigint', 'count_legacy returns bigint');
SELECT is(pg_get_function_arguments('count_legacy(regclass,name,text)'::regprocedure),
	'relation regclass, column_name name, codec text', 'count_legacy(relation regclass, column_name name, codec text)');

SELECT has_function('audit_column', ARRAY['regclass', 'name', 'text'], 'audit_column(regclass, name, text) exists');
SELECT is(pg_get_function_arguments('audit_column(regclass,name,text)'::regprocedure),
	'relation regclass, column_name name, codec text', 'audit_column(relation regclass, column_name name, codec text)');
SELECT is(pg_get_function_result('audit_column(regclass,name,text)'::regprocedure),
	'TABLE(legacy bigint, target bigint, ambiguous bigint, nulls bigint, other bigint, total bigint)',
	'audit_column returns counts of legacy, target, ambiguous, NULL (and other, total)');

------------------------------------------------------------------------------------------------------
-- Conversions.
------------------------------------------------------------------------------------------------------
SELECT lives_ok($$ SELECT create_codec('token_plain', convert => 'reverse', marker => 'tok_', detect => 'converted') $$,
	'the seed codec is created');
SELECT is(migrate_value('token_plain', 'cba_kot'), 'tok_abc', 'seed: a legacy value is converted');
SELECT is(migrate_value('token_plain', 'tok_abc'), 'tok_abc', 'seed: a target value passes through');
SELECT is(migrate_value('token_plain', 'tok_x_kot'), 'tok_x_kot', 'seed: an ambiguous value passes through');
SELECT is(migrate_value('token_plain', 'hello'), 'hello', 'seed: another value passes through');
SELECT is(migrate_value('token_plain', NULL), NULL, 'seed: NULL passes through');
SELECT is(migrate_value('token_plain', reverse('tok_日本語𝄞')), 'tok_日本語𝄞', 'seed: reverse works on characters');
SELECT ok(is_legacy('token_plain', 'cba_kot'), 'is_legacy: legacy');
SELECT ok(NOT is_legacy('token_plain', 'tok_x_kot'), 'is_legacy: ambiguous is not legacy');
SELECT ok(NOT is_legacy('token_plain', 'tok_abc'), 'is_legacy: target is not legacy');

SELECT lives_ok($$ SELECT create_codec('v1_to_v2', 'strip_prefix:v1:|base64_decode|add_prefix:v2:', marker => 'v2:', detect => 'absent') $$,
	'a pipeline codec is created');
SELECT is(migrate_value('v1_to_v2', 'v1:' || encode('hello', 'base64')), 'v2:hello', 'pipeline converts');
SELECT is(migrate_value('v1_to_v2', 'v2:kept'), 'v2:kept', 'pipeline passes target through');

SELECT lives_ok($$ SELECT create_codec('encoders', 'hex_encode|upper|add_prefix:X', marker => 'X', detect => 'absent') $$,
	'an encoding codec is created');
SELECT is(migrate_value('encoders', 'hé'), 'X' || upper(encode(convert_to('hé', 'UTF8'), 'hex')), 'hex_encode|upper matches encode()');
SELECT lives_ok($$ SELECT create_codec('b64', 'base64_encode|add_prefix:b:', marker => 'b:', detect => 'absent') $$,
	'a base64 codec is created');
SELECT is(migrate_value('b64', 'wörld'), 'b:' || encode(convert_to('wörld', 'UTF8'), 'base64'), 'base64_encode matches encode()');
SELECT lives_ok($$ SELECT create_codec('lowered', 'lower|const:tok_x', marker => 'tok_') $$, 'a const codec is created');
SELECT is(migrate_value('lowered', 'ANY'), 'tok_x', 'const replaces the value');

SELECT lives_ok($$ SELECT create_codec('required', 'const:none', detect => 'null') $$, 'a null-mode codec is created without a marker');
SELECT is(migrate_value('required', NULL), 'none', 'null mode: NULL is converted');
SELECT is(migrate_value('required', 'x'), 'x', 'null mode: a value is target');

SELECT lives_ok($$ SELECT create_codec('shaped', 'add_prefix:v2:', marker => 'v2:', detect => 'absent', shape => '^[0-9]+$') $$,
	'a shaped codec is created');
SELECT is(migrate_value('shaped', '123'), 'v2:123', 'shape: matching value is legacy');
SELECT is(migrate_value('shaped', 'abc'), 'abc', 'shape: non-matching value passes through');

CREATE SCHEMA tap_fns;
CREATE FUNCTION tap_fns.shout(t text) RETURNS text LANGUAGE sql AS $$ SELECT 'S:' || upper(t) $$;
CREATE FUNCTION tap_fns.refuse(t text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	RAISE EXCEPTION 'refused %', t USING ERRCODE = 'check_violation';
END
$$;
SELECT lives_ok($$ SELECT create_codec('shouting', 'fn:tap_fns.shout', marker => 'S:', detect => 'absent') $$, 'an fn: codec is created');
SELECT is(migrate_value('shouting', 'hi'), 'S:HI', 'fn: step calls the SQL function');

------------------------------------------------------------------------------------------------------
-- Errors and their SQLSTATEs.
------------------------------------------------------------------------------------------------------
SELECT throws_ok($$ SELECT migrate_value('nope', 'x') $$, '42704', 'codec "nope" does not exist', 'unknown codec');
SELECT throws_ok($$ SELECT create_codec('bad', 'rot26', marker => 'x') $$, '22023', 'unknown codec step "rot26"', 'unknown step');
SELECT throws_ok($$ SELECT create_codec('bad', 'strip_prefix', marker => 'x') $$, '22023', 'step "strip_prefix" needs an argument',
	'strip_prefix without argument');
SELECT throws_ok($$ SELECT create_codec('bad', 'reverse:x', marker => 'x') $$, '22023', 'step "reverse" takes no argument',
	'reverse with an argument');
SELECT throws_ok($$ SELECT create_codec('bad', 'fn:noschema', marker => 'x') $$, '22023',
	'step "fn:noschema" does not name a function as schema.name', 'fn: without a schema');
SELECT throws_ok($$ SELECT create_codec('bad', 'fn:tap_fns.missing', marker => 'x') $$, '42883',
	'function tap_fns.missing(text) does not exist', 'fn: naming a missing function');
CREATE FUNCTION tap_fns.len(t text) RETURNS int LANGUAGE sql AS $$ SELECT length(t) $$;
SELECT throws_ok($$ SELECT create_codec('bad', 'fn:tap_fns.len', marker => 'x') $$, '42P13',
	'function tap_fns.len(text) does not return text', 'fn: naming a function not returning text');
SELECT throws_ok($$ SELECT create_codec('bad', 'reverse', marker => 'x', shape => '(') $$, '2201B', NULL, 'bad shape regex');
SELECT throws_ok($$ SELECT create_codec('', 'reverse', marker => 'x') $$, '22023', 'codec name must not be empty', 'empty name');
SELECT throws_ok($$ SELECT create_codec(NULL, 'reverse', marker => 'x') $$, '22023', 'codec name must not be empty', 'NULL name');
SELECT throws_ok($$ SELECT create_codec('token_plain', 'reverse', marker => 'tok_') $$, '42710',
	'codec "token_plain" already exists', 'duplicate name');
SELECT throws_ok($$ SELECT create_codec('bad', 'reverse', marker => 'x', detect => 'maybe') $$, '22023',
	'unknown detect mode "maybe"', 'unknown detect mode');
SELECT throws_ok($$ SELECT create_codec('bad', 'reverse') $$, '22023', 'detect mode "converted" needs a marker',
	'converted mode without a marker');
SELECT throws_ok($$ SELECT create_codec('bad', 'reverse', marker => 'v2:', detect => 'absent') $$, '22023',
	'codec output is still detected as legacy', 'a non-converging absent codec');
SELECT throws_ok($$ SELECT create_codec('bad', NULL, marker => 'x') $$, '22004', 'codec conversion must not be NULL', 'NULL conversion');
SELECT throws_ok($$ SELECT drop_codec('nope') $$, '42704', 'codec "nope" does not exist', 'dropping an unknown codec');

SELECT lives_ok($$ SELECT create_codec('hex_then_v2', 'hex_decode|add_prefix:v2:', marker => 'v2:', detect => 'absent') $$,
	'a hex codec is created');
SELECT throws_ok($$ SELECT migrate_value('hex_then_v2', 'zz') $$, '22P02', 'invalid hexadecimal data', 'a throwing step: clean error');
SELECT is(migrate_value('hex_then_v2', '6869'), 'v2:hi', 'the next call works');
SELECT lives_ok($$ SELECT create_codec('refusing', 'fn:tap_fns.refuse', marker => 'v3:', detect => 'absent') $$,
	'a refusing fn: codec is created');
SELECT throws_ok($$ SELECT migrate_value('refusing', 'x') $$, '23514', 'refused x',
	'an error inside the fn: step keeps its SQLSTATE and message');

------------------------------------------------------------------------------------------------------
-- count_legacy and audit_column.
------------------------------------------------------------------------------------------------------
CREATE TABLE tap_accounts (id int PRIMARY KEY, token text, n int);
INSERT INTO tap_accounts VALUES
	(1, 'cba_kot', 1), (2, 'fed_kot', 2), (3, 'tok_abc', 3), (4, 'tok_x_kot', 4), (5, NULL, 5), (6, 'hello', 6);
SELECT is(count_legacy('tap_accounts', 'token', 'token_plain'), 2::bigint, 'count_legacy counts legacy values');
SELECT results_eq($$ SELECT * FROM audit_column('tap_accounts', 'token', 'token_plain') $$,
	$$ VALUES (2::bigint, 1::bigint, 1::bigint, 1::bigint, 1::bigint, 6::bigint) $$,
	'audit_column: 2 legacy, 1 target, 1 ambiguous, 1 NULL, 1 other of 6');
SELECT results_eq($$ SELECT legacy, nulls FROM audit_column('tap_accounts', 'token', 'required') $$,
	$$ VALUES (1::bigint, 0::bigint) $$, 'audit_column with a null-mode codec counts NULLs as legacy');
SELECT throws_ok($$ SELECT count_legacy('tap_accounts', 'nope', 'token_plain') $$, '42703',
	'column "nope" of relation public.tap_accounts does not exist', 'count_legacy on a missing column');
SELECT is(count_legacy('tap_accounts', 'n', 'token_plain'), 0::bigint, 'count_legacy on a non-text column reads its text form');

SELECT * FROM finish();
ROLLBACK;
