-- pgTAP: the migration protocol's API contract of DESIGN.md §2 (signatures, the status and history views,
-- the phase machine and its door, every refusal with its SQLSTATE), on a migration that needs no backfill
-- to reach producing. No backfill worker is started here (it could not see this uncommitted transaction):
-- sql/protocol.sql runs the whole walkthrough. Everything is rolled back.
\set tests 79
\ir preamble.psql

------------------------------------------------------------------------------------------------------
-- Signatures, as DESIGN.md calls them.
------------------------------------------------------------------------------------------------------
-- A table move's two arguments come last, with defaults: calls by position or name written for the
-- first six still resolve.
SELECT has_function('create_migration', ARRAY['text', 'regclass', 'name', 'text', 'name', 'boolean', 'regclass', 'jsonb'],
	'create_migration(text, regclass, name, text, name, boolean, regclass, jsonb) exists');
SELECT function_returns('create_migration', ARRAY['text', 'regclass', 'name', 'text', 'name', 'boolean', 'regclass', 'jsonb'],
	'void', 'create_migration returns void');
SELECT is(pg_get_function_arguments('create_migration(text,regclass,name,text,name,boolean,regclass,jsonb)'::regprocedure),
	'name text, relation regclass, column_name name, codec text, source_column name DEFAULT NULL::name, allow_key_update boolean DEFAULT false, target_relation regclass DEFAULT NULL::regclass, column_map jsonb DEFAULT NULL::jsonb',
	'create_migration(name, relation, column_name, codec, source_column DEFAULT NULL, allow_key_update DEFAULT false, target_relation DEFAULT NULL, column_map DEFAULT NULL)');
SELECT has_function('plan_swap', ARRAY['text', 'regprocedure', 'text', 'text', 'name'],
	'plan_swap(text, regprocedure, text, text, name) exists');
SELECT function_returns('plan_swap', ARRAY['text', 'regprocedure', 'text', 'text', 'name'], 'void', 'plan_swap returns void');
SELECT is(pg_get_function_arguments('plan_swap(text,regprocedure,text,text,name)'::regprocedure),
	'migration text, fn regprocedure, body text, role text DEFAULT ''reader''::text, language name DEFAULT NULL::name',
	'plan_swap(migration, fn, body, role DEFAULT ''reader'', language DEFAULT NULL)');
SELECT has_function('advance_migration', ARRAY['text', 'text', 'integer'], 'advance_migration(text, text, integer) exists');
SELECT function_returns('advance_migration', ARRAY['text', 'text', 'integer'], 'text', 'advance_migration returns the new phase');
SELECT is(pg_get_function_arguments('advance_migration(text,text,integer)'::regprocedure),
	'name text, confirm text DEFAULT NULL::text, read_sample integer DEFAULT 100',
	'advance_migration(name, confirm DEFAULT NULL, read_sample DEFAULT 100)');
SELECT has_function('retreat_migration', ARRAY['text'], 'retreat_migration(text) exists');
SELECT function_returns('retreat_migration', ARRAY['text'], 'text', 'retreat_migration returns the new phase');
SELECT is(pg_get_function_arguments('retreat_migration(text)'::regprocedure), 'name text', 'retreat_migration(name)');
SELECT has_function('inspect_column', ARRAY['regclass', 'name', 'text'], 'inspect_column(regclass, name, text) exists');
SELECT function_returns('inspect_column', ARRAY['regclass', 'name', 'text'], 'setof record', 'inspect_column returns rows');
SELECT is(pg_get_function_arguments('inspect_column(regclass,name,text)'::regprocedure),
	'relation regclass, column_name name, codec text DEFAULT NULL::text', 'inspect_column(relation, column_name, codec DEFAULT NULL)');
SELECT is(pg_get_function_result('inspect_column(regclass,name,text)'::regprocedure),
	'TABLE(in_primary_key boolean, in_unique_index boolean, foreign_keys text[], referenced_by text[], in_partition_key boolean, in_expression_index boolean, in_partial_index boolean, is_generated boolean, user_triggers text[], row_estimate bigint, sampled_rows bigint, sampled_legacy_ratio numeric, plan text)',
	'inspect_column: primary key, unique index, foreign keys (either side), partition key, expression index, generated, triggers, estimate, sampled ratio, plan');

------------------------------------------------------------------------------------------------------
-- The views.
------------------------------------------------------------------------------------------------------
SELECT has_view('migration_status', 'view migration_status exists');
SELECT has_column('migration_status', 'name', 'migration_status.name');
SELECT has_column('migration_status', 'phase', 'migration_status.phase');
SELECT has_column('migration_status', 'settled', 'migration_status.settled');
SELECT col_type_is('migration_status', 'settled', 'boolean', 'migration_status.settled is boolean');
SELECT has_column('migration_status', 'waiting_for', 'migration_status.waiting_for');
SELECT has_column('migration_status', 'relation', 'migration_status.relation');
SELECT col_type_is('migration_status', 'relation', 'regclass', 'migration_status.relation is regclass');
SELECT has_column('migration_status', 'column_name', 'migration_status.column_name');
SELECT has_column('migration_status', 'codec', 'migration_status.codec');
SELECT has_column('migration_status', 'job', 'migration_status.job');
SELECT col_type_is('migration_status', 'job', 'bigint', 'migration_status.job is the bigint start_backfill returns');
SELECT has_view('migration_history', 'view migration_history exists');
SELECT has_column('migration_history', 'event', 'migration_history.event');
SELECT has_column('migration_history', 'from_phase', 'migration_history.from_phase');
SELECT has_column('migration_history', 'to_phase', 'migration_history.to_phase');
SELECT has_column('migration_history', 'role', 'migration_history.role');
SELECT col_type_is('migration_history', 'at', 'timestamp with time zone', 'migration_history.at (the time)');
SELECT col_type_is('migration_history', 'wal_lsn', 'pg_lsn', 'migration_history.wal_lsn (the WAL position)');

------------------------------------------------------------------------------------------------------
-- Fixtures: tokens stored reversed, a reader and a writer that callers use.
------------------------------------------------------------------------------------------------------
CREATE SCHEMA tap_proto;
CREATE TABLE tap_proto.accounts (id int PRIMARY KEY, token text NOT NULL, n int);
INSERT INTO tap_proto.accounts VALUES (1, 'cba_kot', 1), (2, 'fed_kot', 2);
CREATE FUNCTION tap_proto.read_token(t text) RETURNS text LANGUAGE sql STABLE AS $$ SELECT reverse(t) $$;
CREATE FUNCTION tap_proto.write_token(i int, t text) RETURNS void LANGUAGE sql
	AS $$ UPDATE tap_proto.accounts SET token = reverse(t) WHERE id = i $$;
SELECT create_codec('tap_plain', convert => 'reverse', marker => 'tok_');
SELECT freeze_function('tap_proto.read_token(text)');
SELECT freeze_function('tap_proto.write_token(int,text)');
CREATE TEMP TABLE saved AS SELECT pg_get_functiondef('tap_proto.read_token(text)'::regprocedure) AS reader_before;

------------------------------------------------------------------------------------------------------
-- The phase machine up to producing (no backfill needed for that).
------------------------------------------------------------------------------------------------------
SELECT lives_ok($$ SELECT create_migration('tap_m', 'tap_proto.accounts', 'token', 'tap_plain') $$, 'create_migration');
SELECT lives_ok($$ SELECT plan_swap('tap_m', 'tap_proto.read_token(text)', $b$ SELECT migrate_value('tap_plain', t) $b$,
	role => 'reader') $$, 'plan_swap of a reader');
SELECT lives_ok($$ SELECT plan_swap('tap_m', 'tap_proto.write_token(int,text)',
	$b$ UPDATE tap_proto.accounts SET token = t WHERE id = i $b$, role => 'writer') $$, 'plan_swap of a writer');
SELECT results_eq($$ SELECT phase, settled, job FROM migration_status WHERE name = 'tap_m' $$,
	$$ VALUES ('planned', false, NULL::bigint) $$, 'a new migration is planned, not settled, without a job');
SELECT throws_ok($$ SELECT retreat_migration('tap_m') $$, '55000', 'cannot retreat migration "tap_m": nothing to retreat from',
	'nothing to retreat from while planned');
SELECT throws_ok($$ SELECT start_backfill('tap_m') $$, '55000', 'cannot backfill migration "tap_m" in phase planned',
	'no backfill while planned');

SELECT is(advance_migration('tap_m'), 'tolerant', 'planned -> tolerant');
SELECT is(tap_proto.read_token('cba_kot'), 'tok_abc', 'the tolerant reader converts a legacy value');
SELECT is(tap_proto.read_token('tok_abc'), 'tok_abc', 'and passes a new one through');
SELECT results_eq($$ SELECT phase, settled, waiting_for FROM migration_status WHERE name = 'tap_m' $$,
	$$ VALUES ('tolerant', true, NULL::text) $$, 'tolerant and settled (no older transaction, no standby)');
SELECT is(retreat_migration('tap_m'), 'planned', 'tolerant -> planned');
SELECT is(pg_get_functiondef('tap_proto.read_token(text)'::regprocedure), (SELECT reader_before FROM saved),
	'the retreat restores the reader byte for byte');
SELECT is(advance_migration('tap_m'), 'tolerant', 'planned -> tolerant again');

SELECT throws_ok($$ SELECT swap_function('tap_proto.write_token(int,text)', 'SELECT') $$, '55000',
	'function tap_proto.write_token(integer,text) is a writer of migration "tap_m", which is still tolerant',
	'a writer is not swapped before the door');
SELECT throws_ok($$ SELECT advance_migration('tap_m') $$, '55000',
	'cannot advance migration "tap_m": the point of no return needs a typed sign-off', 'the door needs confirm');
SELECT throws_ok($$ SELECT advance_migration('tap_m', confirm => 'yes') $$, '55000',
	'cannot advance migration "tap_m": the point of no return needs a typed sign-off', 'the door needs the migration''s name');
SELECT throws_ok($$ SELECT start_backfill('tap_m') $$, '55000', 'cannot backfill migration "tap_m" in phase tolerant',
	'no backfill before the door');
SELECT is(advance_migration('tap_m', confirm => 'tap_m'), 'producing', 'tolerant -> producing through the door');
SELECT lives_ok($$ SELECT tap_proto.write_token(1, 'tok_new') $$, 'the swapped writer writes');
SELECT is((SELECT token FROM tap_proto.accounts WHERE id = 1), 'tok_new', 'the new format');
SELECT throws_ok($$ SELECT retreat_migration('tap_m') $$, '55000',
	'cannot retreat migration "tap_m": cannot retreat past the point of no return', 'no retreat past the door');
SELECT throws_ok($$ SELECT advance_migration('tap_m') $$, '55000',
	'cannot advance migration "tap_m": the next step is the backfill', 'producing -> backfilling is start_backfill''s');
SELECT throws_ok($$ SELECT plan_swap('tap_m', 'tap_proto.read_token(text)', 'SELECT t') $$, '55000',
	'migration "tap_m" is producing: swaps are planned before it advances', 'no swap planned after advancing');
SELECT results_eq(
	$$ SELECT event, from_phase, to_phase, role, wal_lsn IS NOT NULL FROM migration_history
	   WHERE migration = 'tap_m' ORDER BY id $$,
	$$ VALUES ('create', NULL, 'planned', NULL, true),
	          ('swap', NULL, NULL, 'reader', true),
	          ('advance', 'planned', 'tolerant', NULL, true),
	          ('unswap', NULL, NULL, 'reader', true),
	          ('retreat', 'tolerant', 'planned', NULL, true),
	          ('swap', NULL, NULL, 'reader', true),
	          ('advance', 'planned', 'tolerant', NULL, true),
	          ('read_check', NULL, NULL, NULL, true),
	          ('swap', NULL, NULL, 'writer', true),
	          ('advance', 'tolerant', 'producing', NULL, true) $$,
	'migration_history: every phase change and swap, with a WAL position');
SELECT results_eq($$ SELECT phase, settled, relation, column_name, codec FROM migration_status WHERE name = 'tap_m' $$,
	$$ VALUES ('producing', true, 'tap_proto.accounts'::regclass, 'token'::name, 'tap_plain') $$,
	'migration_status after the door');

------------------------------------------------------------------------------------------------------
-- inspect_column and what create_migration refuses.
------------------------------------------------------------------------------------------------------
CREATE TABLE tap_proto.parent (code text PRIMARY KEY, email text UNIQUE);
CREATE TABLE tap_proto.child (id int PRIMARY KEY, parent_code text REFERENCES tap_proto.parent,
                              parent_email text REFERENCES tap_proto.parent (email) ON UPDATE CASCADE);
SELECT results_eq($$ SELECT in_primary_key, in_unique_index, referenced_by FROM inspect_column('tap_proto.parent', 'code') $$,
	$$ VALUES (true, true, ARRAY['child_parent_code_fkey from tap_proto.child ON UPDATE NO ACTION']) $$,
	'inspect_column: a primary key referenced without cascade');
SELECT is((SELECT plan FROM inspect_column('tap_proto.parent', 'code')),
	'leave it: the key cannot be rewritten in place (it is referenced without ON UPDATE CASCADE); make the foreign keys ON UPDATE CASCADE, or expand to a new column and contract',
	'inspect_column: its plan');
SELECT is((SELECT foreign_keys FROM inspect_column('tap_proto.child', 'parent_email')),
	ARRAY['child_parent_email_fkey references tap_proto.parent ON UPDATE CASCADE'], 'inspect_column: a foreign key column');
SELECT throws_ok($$ SELECT create_migration('tap_pk', 'tap_proto.parent', 'code', 'tap_plain') $$, '0A000',
	'column "code" of tap_proto.parent is structurally fixed', 'a key column is refused');
SELECT throws_ok($$ SELECT create_migration('tap_email', 'tap_proto.parent', 'email', 'tap_plain') $$, '0A000',
	'column "email" of tap_proto.parent is structurally fixed', 'a referenced column is refused');
SELECT lives_ok($$ SELECT create_migration('tap_email', 'tap_proto.parent', 'email', 'tap_plain', allow_key_update => true) $$,
	'unless allow_key_update => true');
SELECT throws_ok($$ SELECT inspect_column('tap_proto.parent', 'no_such_column') $$, '42703',
	'column "no_such_column" of relation tap_proto.parent does not exist', 'inspect_column of a missing column');

------------------------------------------------------------------------------------------------------
-- Refusals.
------------------------------------------------------------------------------------------------------
CREATE FUNCTION tap_proto.loose(t text) RETURNS text LANGUAGE sql AS $$ SELECT t $$;
SELECT throws_ok($$ SELECT advance_migration('no_such_migration') $$, '42704', 'migration "no_such_migration" does not exist',
	'advancing an unknown migration');
SELECT throws_ok($$ SELECT retreat_migration('no_such_migration') $$, '42704', 'migration "no_such_migration" does not exist',
	'retreating an unknown migration');
SELECT throws_ok($$ SELECT plan_swap('no_such_migration', 'tap_proto.read_token(text)', 'SELECT t') $$, '42704',
	'migration "no_such_migration" does not exist', 'planning a swap in an unknown migration');
SELECT throws_ok($$ SELECT advance_migration(NULL) $$, '22004', 'migration name must not be NULL', 'a NULL migration name');
SELECT throws_ok($$ SELECT create_migration('tap_m', 'tap_proto.accounts', 'token', 'tap_plain') $$, '42710',
	'migration "tap_m" already exists', 'a duplicate migration');
SELECT throws_ok($$ SELECT create_migration('', 'tap_proto.accounts', 'token', 'tap_plain') $$, '22023',
	'migration name must not be empty', 'an empty migration name');
SELECT throws_ok($$ SELECT create_migration('tap_x', 'tap_proto.accounts', 'token', 'no_such_codec') $$, '42704',
	'codec "no_such_codec" does not exist', 'an unknown codec');
SELECT throws_ok($$ SELECT create_migration('tap_x', 'tap_proto.accounts', 'nope', 'tap_plain') $$, '42703',
	'column "nope" of relation tap_proto.accounts does not exist', 'a missing column');
SELECT throws_ok($$ SELECT plan_swap('tap_email', 'tap_proto.loose(text)', 'SELECT t') $$, '55000',
	'function tap_proto.loose(text) is not frozen', 'a swap of a function that is not frozen');
SELECT throws_ok($$ SELECT plan_swap('tap_email', 'tap_proto.read_token(text)', 'SELECT t', role => 'admin') $$, '22023',
	'swap role must be ''reader'' or ''writer'', not ''admin''', 'a bad swap role');
SELECT lives_ok($$ SELECT plan_swap('tap_email', 'tap_proto.read_token(text)', 'SELECT t') $$, 'a reader swap');
SELECT throws_ok($$ SELECT plan_swap('tap_email', 'tap_proto.read_token(text)', 'SELECT upper(t)') $$, '42710',
	'function tap_proto.read_token(text) already has a planned swap in migration "tap_email"', 'a duplicate swap');

SELECT * FROM finish();
ROLLBACK;
