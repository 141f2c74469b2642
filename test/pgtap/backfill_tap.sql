-- pgTAP: the backfill API contract of DESIGN.md §2 (signatures, the backfill_status view, the job controls
-- and every refusal with its SQLSTATE). A background worker cannot see the rows of this uncommitted
-- transaction, so no real job is started here: sql/backfill.sql runs the workers. Everything is rolled back.
\set tests 89
\ir preamble.psql

------------------------------------------------------------------------------------------------------
-- Signatures. DESIGN.md gives start_backfill's parameters; an overload must begin with exactly those
-- (names, types, defaults, order) and default anything it adds, so that every call DESIGN.md shows
-- works and means the same.
------------------------------------------------------------------------------------------------------
CREATE FUNCTION pg_temp.starts_with_design(fn name, design text, required int, returns regtype) RETURNS boolean
	LANGUAGE sql STABLE AS $$
	SELECT EXISTS (
		SELECT FROM pg_proc p
		WHERE p.proname = fn
		  AND p.pronamespace = (SELECT extnamespace FROM pg_extension WHERE extname = 'migration_ext')
		  AND p.prorettype = returns AND NOT p.proretset
		  AND p.pronargs - p.pronargdefaults = required
		  AND (pg_get_function_arguments(p.oid) = design
			   OR starts_with(pg_get_function_arguments(p.oid), design || ', ')))
$$;

SELECT ok(pg_temp.starts_with_design('start_backfill',
	'relation regclass, column_name name, codec text, source_column name DEFAULT NULL::name, '
	'batch_size integer DEFAULT NULL::integer, max_rows_per_second integer DEFAULT NULL::integer, '
	'throttle boolean DEFAULT true', 3, 'bigint'),
	'start_backfill(relation regclass, column_name name, codec text, source_column name DEFAULT NULL, batch_size int DEFAULT NULL, max_rows_per_second int DEFAULT NULL, throttle boolean DEFAULT true) RETURNS bigint');
SELECT ok(pg_temp.starts_with_design('start_backfill',
	'migration text, source_column name DEFAULT NULL::name, batch_size integer DEFAULT NULL::integer, '
	'max_rows_per_second integer DEFAULT NULL::integer, throttle boolean DEFAULT true', 1, 'bigint'),
	'start_backfill(migration text, source_column name DEFAULT NULL, batch_size int DEFAULT NULL, max_rows_per_second int DEFAULT NULL, throttle boolean DEFAULT true) RETURNS bigint');

SELECT has_function('pause_backfill', ARRAY['bigint'], 'pause_backfill(bigint) exists');
SELECT function_returns('pause_backfill', ARRAY['bigint'], 'void', 'pause_backfill returns void');
SELECT has_function('resume_backfill', ARRAY['bigint'], 'resume_backfill(bigint) exists');
SELECT function_returns('resume_backfill', ARRAY['bigint'], 'void', 'resume_backfill returns void');
SELECT has_function('cancel_backfill', ARRAY['bigint'], 'cancel_backfill(bigint) exists');
SELECT function_returns('cancel_backfill', ARRAY['bigint'], 'void', 'cancel_backfill returns void');
SELECT results_eq(
	$$ SELECT pg_get_function_arguments(f::regprocedure)
	   FROM unnest(ARRAY['pause_backfill(bigint)', 'resume_backfill(bigint)', 'cancel_backfill(bigint)']) f $$,
	$$ VALUES ('job bigint'), ('job bigint'), ('job bigint') $$,
	'pause_backfill(job), resume_backfill(job), cancel_backfill(job)');
SELECT has_function('wait_backfill', ARRAY['bigint', 'interval', 'boolean'], 'wait_backfill(bigint, interval, boolean) exists');
SELECT function_returns('wait_backfill', ARRAY['bigint', 'interval', 'boolean'], 'text', 'wait_backfill returns the state as text');
SELECT is(pg_get_function_arguments('wait_backfill(bigint,interval,boolean)'::regprocedure),
	'job bigint, timeout interval DEFAULT NULL::interval, progress boolean DEFAULT NULL::boolean',
	'wait_backfill(job bigint, timeout interval DEFAULT NULL, progress boolean DEFAULT NULL)');
SELECT is(pg_get_function_arguments('await_backfill(bigint,interval,boolean,text)'::regprocedure),
	'IN job bigint, IN timeout interval DEFAULT NULL::interval, IN progress boolean DEFAULT NULL::boolean, INOUT state text DEFAULT NULL::text',
	'await_backfill(job, timeout, progress, INOUT state) is a procedure of the same arguments');

------------------------------------------------------------------------------------------------------
-- The backfill_status view: state, rows scanned / converted / skipped, conflicts, current batch size,
-- rate, ETA, throttle reason, last key, last error, pid.
------------------------------------------------------------------------------------------------------
SELECT has_view('backfill_status', 'view backfill_status exists');
SELECT has_column('backfill_status', 'job', 'backfill_status.job');
SELECT col_type_is('backfill_status', 'job', 'bigint', 'backfill_status.job is the bigint start_backfill returns');
SELECT has_column('backfill_status', 'state', 'backfill_status.state');
SELECT col_type_is('backfill_status', 'state', 'text', 'backfill_status.state is text');
SELECT has_column('backfill_status', 'rows_scanned', 'backfill_status.rows_scanned');
SELECT has_column('backfill_status', 'rows_converted', 'backfill_status.rows_converted');
SELECT has_column('backfill_status', 'rows_skipped', 'backfill_status.rows_skipped');
SELECT has_column('backfill_status', 'conflicts', 'backfill_status.conflicts');
SELECT has_column('backfill_status', 'batch_size', 'backfill_status.batch_size (the current batch size)');
SELECT has_column('backfill_status', 'rows_per_second', 'backfill_status.rows_per_second (the rate)');
SELECT has_column('backfill_status', 'eta', 'backfill_status.eta');
SELECT col_type_is('backfill_status', 'eta', 'interval', 'backfill_status.eta is an interval');
SELECT has_column('backfill_status', 'throttle_reason', 'backfill_status.throttle_reason');
SELECT has_column('backfill_status', 'last_key', 'backfill_status.last_key');
SELECT has_column('backfill_status', 'last_error', 'backfill_status.last_error');
SELECT has_column('backfill_status', 'pid', 'backfill_status.pid');
SELECT results_eq(
	$$ SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a
	   WHERE a.attrelid = 'backfill_status'::regclass
	     AND a.attname IN ('rows_scanned', 'rows_converted', 'rows_skipped', 'conflicts') ORDER BY a.attname $$,
	$$ VALUES ('bigint'), ('bigint'), ('bigint'), ('bigint') $$,
	'the row counters are bigint');

------------------------------------------------------------------------------------------------------
-- Fixtures.
------------------------------------------------------------------------------------------------------
CREATE SCHEMA tap_bf;
SELECT create_codec('tap_plain', convert => 'reverse', marker => 'tok_');
CREATE TABLE tap_bf.accounts (id int PRIMARY KEY, token text, n int);
INSERT INTO tap_bf.accounts VALUES (1, 'cba_kot', 1), (2, 'tok_abc', 2);
CREATE TABLE tap_bf.no_key (id int, token text);
CREATE TABLE tap_bf.text_key (code text PRIMARY KEY, token text);
CREATE VIEW tap_bf.accounts_view AS SELECT * FROM tap_bf.accounts;
CREATE TABLE tap_bf.guarded (id int PRIMARY KEY, token text);

------------------------------------------------------------------------------------------------------
-- Refusals, before any job exists.
------------------------------------------------------------------------------------------------------
SELECT throws_ok($$ SELECT start_backfill('tap_bf.no_such_table', 'token', 'tap_plain') $$, '42P01',
	'relation "tap_bf.no_such_table" does not exist', 'a missing table');
SELECT throws_ok($$ SELECT start_backfill('tap_bf.accounts', 'no_such_column', 'tap_plain') $$, '42703',
	'column "no_such_column" of relation tap_bf.accounts does not exist', 'a missing column');
SELECT throws_ok($$ SELECT start_backfill('tap_bf.accounts', 'token', 'tap_plain', target_relation => 'tap_bf.accounts') $$,
	'22023', 'a table move copies into another table, not into tap_bf.accounts itself', 'a table move into itself');
SELECT throws_ok($$ SELECT start_backfill('tap_bf.accounts', 'token', 'no_such_codec') $$, '42704',
	'codec "no_such_codec" does not exist', 'an unknown codec');
SELECT throws_ok($$ SELECT start_backfill('tap_bf.accounts_view', 'token', 'tap_plain') $$, '42809',
	'tap_bf.accounts_view is not a table', 'a view');
SELECT throws_ok($$ SELECT start_backfill('tap_bf.no_key', 'token', 'tap_plain') $$, '55000',
	'relation tap_bf.no_key has no usable key to walk', 'a table without a usable key');
SELECT throws_ok($$ SELECT start_backfill('tap_bf.text_key', 'code', 'tap_plain') $$, '0A000',
	'column "code" is part of every usable key of tap_bf.text_key', 'the key column itself');
SELECT throws_ok($$ SELECT start_backfill('tap_bf.accounts', 'token', 'tap_plain', batch_size => 0) $$, '22023',
	'batch_size must be positive, not 0', 'batch_size 0');
SELECT throws_ok($$ SELECT start_backfill('tap_bf.accounts', 'token', 'tap_plain', max_rows_per_second => -1) $$, '22023',
	'max_rows_per_second must be positive, not -1', 'a negative rate cap');
SELECT throws_ok($$ SELECT start_backfill('tap_bf.accounts', 'token', NULL) $$, '22004',
	'relation, column_name and codec must not be NULL', 'a NULL codec');
SELECT throws_ok($$ SELECT start_backfill('tap_bf.accounts', 'token', 'tap_plain', source_column => 'nope') $$, '42703',
	'column "nope" of relation tap_bf.accounts does not exist', 'a missing source column');
SELECT throws_ok($$ SELECT pause_backfill(-1) $$, '42704', 'backfill job -1 does not exist', 'pausing an unknown job');
SELECT throws_ok($$ SELECT resume_backfill(-1) $$, '42704', 'backfill job -1 does not exist', 'resuming an unknown job');
SELECT throws_ok($$ SELECT cancel_backfill(-1) $$, '42704', 'backfill job -1 does not exist', 'cancelling an unknown job');
SELECT throws_ok($$ SELECT wait_backfill(-1, '1 s') $$, '42704', 'backfill job -1 does not exist', 'waiting for an unknown job');
SELECT throws_ok($$ CALL await_backfill(-1, '1 s') $$, '25001', 'await_backfill() cannot run inside a transaction block',
	'await_backfill commits while it waits, so not inside a transaction block');
SELECT throws_ok($$ SELECT wait_backfill(NULL) $$, '22004', 'job id must not be NULL', 'waiting for a NULL job');

-- A job's batches run as the table's owner: only roles that may act as the owner start one.
CREATE ROLE regress_mext_tap_reader LOGIN;
CREATE ROLE regress_mext_tap_nologin NOLOGIN;
GRANT USAGE ON SCHEMA tap_bf TO regress_mext_tap_reader, regress_mext_tap_nologin;
GRANT SELECT ON tap_bf.guarded TO regress_mext_tap_reader;
GRANT SELECT, UPDATE ON tap_bf.guarded TO regress_mext_tap_nologin;
SET ROLE regress_mext_tap_reader;
SELECT throws_ok($$ SELECT start_backfill('tap_bf.guarded', 'token', 'tap_plain') $$, '42501',
	'must be owner of table tap_bf.guarded to backfill it', 'a role with SELECT but no UPDATE');
RESET ROLE;
SET ROLE regress_mext_tap_nologin;
SELECT throws_ok($$ SELECT start_backfill('tap_bf.guarded', 'token', 'tap_plain') $$, '42501',
	'must be owner of table tap_bf.guarded to backfill it', 'a role with UPDATE that does not own the table');
RESET ROLE;
SELECT is((SELECT count(*) FROM backfill_status), 0::bigint, 'no refused call left a job');

------------------------------------------------------------------------------------------------------
-- The controls, on a job that no worker runs (queued without a launch, as the isolation tests do).
------------------------------------------------------------------------------------------------------
SELECT migration_ext.start_backfill('tap_bf.accounts', 'token', 'tap_plain', NULL, 10, NULL, true, launch => false)
	AS tap_job \gset
SELECT results_eq(
	format($$ SELECT state, requested, rows_scanned, rows_converted, rows_skipped, conflicts, batch_size,
	                 percent_done, eta, last_key, last_error, pid
	          FROM backfill_status WHERE job = %s $$, :tap_job),
	$$ VALUES ('queued', NULL::text, 0::bigint, 0::bigint, 0::bigint, 0::bigint, 10, 0.0, NULL::interval, NULL::text[],
	           NULL::text, NULL::int) $$,
	'a new job is queued, with nothing done yet');
SELECT throws_ok($$ SELECT start_backfill('tap_bf.accounts', 'token', 'tap_plain') $$, '55006',
	'a backfill of tap_bf.accounts.token is already active', 'one runner per column');
SELECT is(wait_backfill(:tap_job, '0 s'), 'queued', 'wait_backfill returns the current state at its timeout');
SELECT lives_ok(format('SELECT pause_backfill(%s)', :tap_job), 'a queued job can be paused');
SELECT is((SELECT requested FROM backfill_status WHERE job = :tap_job), 'pause', 'the pause is requested');
SELECT lives_ok(format('SELECT cancel_backfill(%s)', :tap_job), 'a job without a worker is cancelled at once');
SELECT is(wait_backfill(:tap_job, '10 s'), 'cancelled', 'wait_backfill returns the state it ended in');
SELECT throws_ok(format('SELECT cancel_backfill(%s)', :tap_job), '55000',
	format('backfill job %s is already cancelled', :tap_job), 'cancelling a cancelled job');
SELECT throws_ok(format('SELECT pause_backfill(%s)', :tap_job), '55000',
	format('backfill job %s is cancelled, it cannot be paused', :tap_job), 'pausing a cancelled job');
SELECT throws_ok(format('SELECT resume_backfill(%s)', :tap_job), '55000',
	format('backfill job %s is cancelled, it cannot be resumed', :tap_job), 'resuming a cancelled job');
SELECT lives_ok($$ SELECT migration_ext.start_backfill('tap_bf.accounts', 'token', 'tap_plain', NULL, NULL, NULL, true,
	launch => false) $$, 'a finished job frees its column');

-- Row-level security: the owner of a table sees and steers the jobs on it; another role neither sees nor
-- steers them.
CREATE FUNCTION pg_temp.visible_jobs(own boolean) RETURNS bigint[] LANGUAGE plpgsql AS $$
BEGIN
	RETURN (SELECT coalesce(array_agg(job ORDER BY job), '{}') FROM backfill_status
			WHERE (relation = 'tap_bf.owned'::regclass) = own);
EXCEPTION WHEN insufficient_privilege THEN
	RETURN NULL;
END
$$;
CREATE ROLE regress_mext_tap_owner LOGIN;
GRANT USAGE ON SCHEMA tap_bf TO regress_mext_tap_owner;
CREATE TABLE tap_bf.owned (id int PRIMARY KEY, token text);
ALTER TABLE tap_bf.owned OWNER TO regress_mext_tap_owner;
-- (Queued without a worker by a superuser, as only a superuser may.)
SELECT migration_ext.start_backfill('tap_bf.owned', 'token', 'tap_plain', NULL, NULL, NULL, true, launch => false)
	AS owned_job \gset
SET ROLE regress_mext_tap_owner;
SELECT lives_ok('SELECT count(*) FROM backfill_status', 'a role that is not superuser may read backfill_status');
SELECT is(pg_temp.visible_jobs(true), ARRAY[:owned_job]::bigint[], 'the owner sees the job on its table in backfill_status');
SELECT is(pg_temp.visible_jobs(false), '{}'::bigint[], 'and no job on another table');
SELECT lives_ok(format('SELECT pause_backfill(%s)', :owned_job), 'it may pause its own job');
RESET ROLE;
SET ROLE regress_mext_tap_reader;
SELECT is(pg_temp.visible_jobs(false), '{}'::bigint[], 'another role does not see it in backfill_status');
SELECT is((SELECT count(*) FROM migration_ext.backfill_job), 0::bigint, 'nor in the job table');
SELECT throws_ok(format('SELECT cancel_backfill(%s)', :owned_job), '42704',
	format('backfill job %s does not exist', :owned_job), 'nor can it cancel the job');
SELECT throws_ok(format('SELECT pause_backfill(%s)', :tap_job), '42704',
	format('backfill job %s does not exist', :tap_job), 'nor pause the job of a superuser');
RESET ROLE;
SELECT is((SELECT requested FROM backfill_status WHERE job = :owned_job), 'pause', 'the owner''s pause stands');

-- The worker compresses its own full-page images unless a superuser says otherwise.
LOAD 'migration_ext';
SELECT is(current_setting('migration_ext.compress_wal'), 'on', 'migration_ext.compress_wal is on by default');
SELECT is((SELECT context FROM pg_settings WHERE name = 'migration_ext.compress_wal'), 'superuser',
	'migration_ext.compress_wal is superuser-only, as wal_compression is');
SELECT is((SELECT vartype FROM pg_settings WHERE name = 'migration_ext.compress_wal'), 'bool',
	'migration_ext.compress_wal is a boolean');

-- The workers' pace settings are the server's (reload), not a session's.
SELECT is((SELECT setting || ' ' || unit || ' ' || context FROM pg_settings WHERE name = 'migration_ext.worker_cpu_slice'),
	'0.2 ms sighup', 'migration_ext.worker_cpu_slice: 0.2 ms, changed by a reload');
SELECT throws_ok($$SET migration_ext.worker_cpu_slice = 0$$, '55P02', NULL,
	'a session cannot change migration_ext.worker_cpu_slice');

-- How much of the time a job works while a live workload commits: a threshold like the others (a
-- session's default, a start_backfill argument, changed on a running job by alter_backfill).
SELECT is((SELECT setting || ' ' || context FROM pg_settings WHERE name = 'migration_ext.live_duty_cycle'),
	'0.5 user', 'migration_ext.live_duty_cycle: 0.5, a session may change it');
SELECT throws_ok($$SET migration_ext.live_duty_cycle = 0$$, '22023', NULL,
	'migration_ext.live_duty_cycle refuses 0: a job that never works would never finish');
CREATE TABLE tap_bf.duty (id int PRIMARY KEY, token text);
SET LOCAL migration_ext.live_duty_cycle = 0.3;
SELECT migration_ext.start_backfill('tap_bf.duty', 'token', 'tap_plain', NULL, NULL, NULL, true, launch => false)
	AS duty_job \gset
RESET migration_ext.live_duty_cycle;
SELECT is((SELECT live_duty_cycle FROM backfill_status WHERE job = :duty_job), 0.3::float8,
	'a job takes its live_duty_cycle from the session that starts it');
SELECT lives_ok(format('SELECT alter_backfill(%s, live_duty_cycle => 1)', :duty_job),
	'alter_backfill changes live_duty_cycle');
SELECT is((SELECT live_duty_cycle FROM migration_ext.worker_poll(:duty_job)), 1::float8,
	'the worker reads the new live_duty_cycle before its next batch');
SELECT throws_ok(format('SELECT alter_backfill(%s, live_duty_cycle => 0)', :duty_job), '22023',
	'live_duty_cycle must be between 0.01 and 1, not 0', 'alter_backfill refuses a live_duty_cycle of 0');
SELECT throws_ok(format('SELECT alter_backfill(%s, live_duty_cycle => %L)', :duty_job, 'NaN'), '22023',
	'live_duty_cycle must be between 0.01 and 1, not NaN', 'alter_backfill refuses NaN');
SELECT is((SELECT live_duty_cycle FROM backfill_status WHERE job = :duty_job), 1::float8,
	'a refused change leaves the job as it was');
SELECT lives_ok(format('SELECT cancel_backfill(%s)', :duty_job), 'a cancelled job frees the column again');
SELECT throws_ok($$ SELECT start_backfill('tap_bf.duty', 'token', 'tap_plain', live_duty_cycle => 1.5) $$, '22023',
	'live_duty_cycle must be between 0.01 and 1, not 1.5', 'start_backfill refuses a live_duty_cycle above 1');
SELECT isnt(migration_ext.start_backfill('tap_bf.duty', 'token', 'tap_plain', NULL, NULL, NULL, true, launch => false,
	live_duty_cycle => 0.25), NULL, 'start_backfill takes live_duty_cycle as an argument');
SELECT is((SELECT live_duty_cycle FROM backfill_status WHERE relation = 'tap_bf.duty'::regclass AND state = 'queued'),
	0.25::float8, 'and the job has it');

-- A job's state is read again once its worker is seen gone: a worker that ended the job and exited after
-- the caller's snapshot was taken must not make a finished job look interrupted.
UPDATE migration_ext.backfill_job SET state = 'done', pid = NULL, finished_at = now() WHERE id = :tap_job;
SELECT is(migration_ext.effective_state(jsonb_populate_record(b, '{"state": "running", "pid": 2147483647}')), 'done',
	'a job its gone worker finished is done, even to a caller that saw it running')
FROM migration_ext.backfill_job b WHERE b.id = :tap_job;
-- (A job whose row still says running once its worker is gone is interrupted: test/crash/no_preload_resume.sh.)

SELECT * FROM finish();
ROLLBACK;
