-- pgTAP: repair on read's API contract: repair_value()'s signature and attributes, its result in the value's
-- own type, the write-back from frozen readers of each language and volatility, the phases in which it
-- writes, every refusal with its SQLSTATE, and migration_status's count. Everything is rolled back, so the
-- count here stays at zero: it counts committed write-backs (sql/repair.sql commits them).
\set tests 45
\ir preamble.psql

------------------------------------------------------------------------------------------------------
-- Signature and attributes.
------------------------------------------------------------------------------------------------------
SELECT ok(to_regprocedure('repair_value(text,anyelement,"any")') IS NOT NULL,
	'repair_value(text, anyelement, VARIADIC "any") exists');
SELECT is(pg_get_function_arguments('repair_value(text,anyelement,"any")'::regprocedure),
	'migration text, value anyelement, VARIADIC key "any"', 'repair_value(migration, value, VARIADIC key)');
SELECT is(pg_get_function_result('repair_value(text,anyelement,"any")'::regprocedure), 'anyelement',
	'repair_value returns the value''s type');
SELECT is((SELECT provolatile FROM pg_proc WHERE oid = 'repair_value(text,anyelement,"any")'::regprocedure), 'v',
	'repair_value is VOLATILE: it writes');
SELECT is((SELECT proparallel FROM pg_proc WHERE oid = 'repair_value(text,anyelement,"any")'::regprocedure), 's',
	'repair_value is PARALLEL SAFE: in parallel mode it only converts');
SELECT is(current_setting('migration_ext.repairs_per_transaction'), '32',
	'migration_ext.repairs_per_transaction defaults to 32');
SELECT has_column('migration_status', 'repaired_by_reads', 'migration_status has repaired_by_reads');
SELECT col_type_is('migration_status', 'repaired_by_reads', 'bigint', 'repaired_by_reads is a bigint');
SELECT has_column('migration_status', 'repaired_share', 'migration_status has repaired_share');
SELECT col_type_is('migration_status', 'repaired_share', 'double precision', 'repaired_share is a fraction');

------------------------------------------------------------------------------------------------------
-- Frozen readers of each language and volatility repair the row they read.
------------------------------------------------------------------------------------------------------
CREATE SCHEMA tap_rep;
SELECT create_codec('tap_tok', 'reverse', marker => 'tok_');
CREATE TABLE tap_rep.accounts (id bigint PRIMARY KEY, token text);
INSERT INTO tap_rep.accounts SELECT g, reverse('tok_' || g) FROM generate_series(1, 10) g;
SELECT create_migration('tap_tokens', 'tap_rep.accounts', 'token', 'tap_tok');
CREATE FUNCTION tap_rep.sql_stable(bigint) RETURNS text LANGUAGE sql STABLE
	AS $$ SELECT repair_value('tap_tokens', token, id) FROM tap_rep.accounts WHERE id = $1 $$;
CREATE FUNCTION tap_rep.sql_immutable(bigint) RETURNS text LANGUAGE sql IMMUTABLE
	AS $$ SELECT repair_value('tap_tokens', token, id) FROM tap_rep.accounts WHERE id = $1 $$;
CREATE FUNCTION tap_rep.sql_volatile(bigint) RETURNS text LANGUAGE sql VOLATILE
	AS $$ SELECT repair_value('tap_tokens', token, id) FROM tap_rep.accounts WHERE id = $1 $$;
CREATE FUNCTION tap_rep.plpgsql_stable(i bigint) RETURNS text LANGUAGE plpgsql STABLE
	AS $$ BEGIN RETURN (SELECT repair_value('tap_tokens', token, id) FROM tap_rep.accounts WHERE id = i); END $$;
CREATE FUNCTION tap_rep.plpgsql_immutable(i bigint) RETURNS text LANGUAGE plpgsql IMMUTABLE
	AS $$ BEGIN RETURN (SELECT repair_value('tap_tokens', token, id) FROM tap_rep.accounts WHERE id = i); END $$;
CREATE FUNCTION tap_rep.plpgsql_volatile(i bigint) RETURNS text LANGUAGE plpgsql VOLATILE
	AS $$ BEGIN RETURN (SELECT repair_value('tap_tokens', token, id) FROM tap_rep.accounts WHERE id = i); END $$;
SELECT freeze_function(f::regprocedure) FROM unnest(ARRAY['tap_rep.sql_stable(bigint)', 'tap_rep.sql_immutable(bigint)',
	'tap_rep.sql_volatile(bigint)', 'tap_rep.plpgsql_stable(bigint)', 'tap_rep.plpgsql_immutable(bigint)',
	'tap_rep.plpgsql_volatile(bigint)']) f;

-- Planned and tolerant: converted, not written.
SELECT is(tap_rep.sql_stable(1), 'tok_1', 'planned: the reader converts');
SELECT is((SELECT token FROM tap_rep.accounts WHERE id = 1), '1_kot', 'planned: nothing is written back');
SELECT advance_migration('tap_tokens');
SELECT is(tap_rep.sql_volatile(1), 'tok_1', 'tolerant: the reader converts');
SELECT is((SELECT token FROM tap_rep.accounts WHERE id = 1), '1_kot',
	'tolerant: nothing is written back (a reader that is not tolerant yet would meet the new format)');
SELECT advance_migration('tap_tokens', confirm => 'tap_tokens', read_sample => 0);

SELECT is(tap_rep.sql_stable(1), 'tok_1', 'SQL STABLE reader converts');
SELECT is((SELECT token FROM tap_rep.accounts WHERE id = 1), 'tok_1', 'SQL STABLE reader writes back');
SELECT is(tap_rep.sql_immutable(2), 'tok_2', 'SQL IMMUTABLE reader converts');
SELECT is((SELECT token FROM tap_rep.accounts WHERE id = 2), 'tok_2', 'SQL IMMUTABLE reader writes back');
SELECT is(tap_rep.sql_volatile(3), 'tok_3', 'SQL VOLATILE reader converts');
SELECT is((SELECT token FROM tap_rep.accounts WHERE id = 3), 'tok_3', 'SQL VOLATILE reader writes back');
SELECT is(tap_rep.plpgsql_stable(4), 'tok_4', 'PL/pgSQL STABLE reader converts');
SELECT is((SELECT token FROM tap_rep.accounts WHERE id = 4), 'tok_4', 'PL/pgSQL STABLE reader writes back');
SELECT is(tap_rep.plpgsql_immutable(5), 'tok_5', 'PL/pgSQL IMMUTABLE reader converts');
SELECT is((SELECT token FROM tap_rep.accounts WHERE id = 5), 'tok_5', 'PL/pgSQL IMMUTABLE reader writes back');
SELECT is(tap_rep.plpgsql_volatile(6), 'tok_6', 'PL/pgSQL VOLATILE reader converts');
SELECT is((SELECT token FROM tap_rep.accounts WHERE id = 6), 'tok_6', 'PL/pgSQL VOLATILE reader writes back');
SELECT is(tap_rep.sql_stable(1), 'tok_1', 'a converted row reads the same');

------------------------------------------------------------------------------------------------------
-- The value's own type comes back, and is written back as the column's.
------------------------------------------------------------------------------------------------------
CREATE DOMAIN tap_rep.token_domain AS text CHECK (VALUE LIKE 'tok\_%' OR VALUE LIKE '%\_kot');
SELECT create_codec('tap_series', 'strip_prefix:1|add_prefix:2', marker => '2', detect => 'absent', shape => '^1[0-9]{4}$');
CREATE TABLE tap_rep.typed (id int PRIMARY KEY, n integer, v varchar(12), d tap_rep.token_domain);
INSERT INTO tap_rep.typed VALUES (1, 10001, '1_kot', '1_kot');
SELECT create_migration('tap_n', 'tap_rep.typed', 'n', 'tap_series'),
       create_migration('tap_v', 'tap_rep.typed', 'v', 'tap_tok'),
       create_migration('tap_d', 'tap_rep.typed', 'd', 'tap_tok');
SELECT advance_migration(m), advance_migration(m, confirm => m, read_sample => 0) FROM unnest(ARRAY['tap_n', 'tap_v', 'tap_d']) m;
SELECT is((SELECT repair_value('tap_n', n, id) FROM tap_rep.typed), 20001, 'an integer converts as an integer');
SELECT is((SELECT pg_typeof(repair_value('tap_v', v, id))::text FROM tap_rep.typed), 'character varying',
	'a varchar comes back as varchar');
SELECT is((SELECT repair_value('tap_d', d, id)::text FROM tap_rep.typed), 'tok_1', 'a domain value converts');
SELECT results_eq($$ SELECT n, v::text, d::text FROM tap_rep.typed $$, $$ VALUES (20001, 'tok_1', 'tok_1') $$,
	'each column is written back as its type');

------------------------------------------------------------------------------------------------------
-- Refusals, with their SQLSTATEs.
------------------------------------------------------------------------------------------------------
SELECT throws_ok($$ SELECT repair_value('tap_nope', token, id) FROM tap_rep.accounts WHERE id = 7 $$, '42704',
	'migration "tap_nope" does not exist', 'an unknown migration');
SELECT throws_ok($$ SELECT repair_value('tap_tokens', token, id, id) FROM tap_rep.accounts WHERE id = 7 $$, '22023',
	'repair_value() got 2 key value(s) for migration "tap_tokens", whose rows are named by 1', 'a wrong number of key values');
SELECT throws_ok($$ SELECT repair_value('tap_tokens', token, point(0, 0)) FROM tap_rep.accounts WHERE id = 7 $$, '42804',
	'key value 1 of repair_value() is of type point, which cannot be cast to bigint', 'a key value that cannot name the row');
SELECT throws_ok($$ SELECT repair_value('tap_tokens', token, VARIADIC ARRAY[id]) FROM tap_rep.accounts WHERE id = 7 $$,
	'0A000', 'repair_value() takes the key''s values one by one, not as a VARIADIC array', 'a VARIADIC array');
CREATE TABLE tap_rep.people (id int PRIMARY KEY, full_name text, display_name text);
INSERT INTO tap_rep.people VALUES (1, 'Ann', NULL);
SELECT create_codec('tap_copy', 'const:', detect => 'null');
SELECT create_migration('tap_rename', 'tap_rep.people', 'display_name', 'tap_copy', source_column => 'full_name');
SELECT throws_ok($$ SELECT repair_value('tap_rename', display_name, id) FROM tap_rep.people $$, '0A000',
	'repair_value() cannot repair migration "tap_rename", a column move', 'a column move');
SELECT throws_ok($$ SET migration_ext.repairs_per_transaction = 65 $$, '22023', NULL,
	'at most 64 write-backs a transaction (a backend caches 64 subtransaction xids)');

------------------------------------------------------------------------------------------------------
-- Reads that only convert, and the count.
------------------------------------------------------------------------------------------------------
SELECT is(repair_value('tap_tokens', '7_kot'::text, NULL::bigint), 'tok_7', 'a NULL key: converted');
SELECT is(repair_value('tap_tokens', 'x_kot'::text, 7::bigint), 'tok_x', 'a value the row does not hold: converted');
SELECT is((SELECT token FROM tap_rep.accounts WHERE id = 7), '7_kot', '... and the row keeps what it holds');
SET LOCAL migration_ext.repairs_per_transaction = 0;
SELECT is(tap_rep.sql_stable(8), 'tok_8', 'repairs_per_transaction = 0: converted');
SELECT is((SELECT token FROM tap_rep.accounts WHERE id = 8), '8_kot', '... and not written back');
RESET migration_ext.repairs_per_transaction;
SELECT is((SELECT repaired_by_reads FROM migration_status WHERE name = 'tap_tokens'), 0::bigint,
	'write-backs count once their transaction commits');
SET LOCAL transaction_read_only = on;
SELECT is(tap_rep.sql_stable(9), 'tok_9', 'a read-only transaction converts');
SELECT is((SELECT token FROM tap_rep.accounts WHERE id = 9), '9_kot', '... and writes nothing');

SELECT * FROM finish();
ROLLBACK;
