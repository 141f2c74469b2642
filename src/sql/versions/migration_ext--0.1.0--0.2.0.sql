-- migration_ext 0.1.0 -> 0.2.0, by ALTER EXTENSION migration_ext UPDATE. Jobs in flight keep running.
\echo Use "ALTER EXTENSION migration_ext UPDATE" to load this file. \quit

-- SQL-standard bodies (RETURN, BEGIN ATOMIC), views and policies are parsed once, here, with the script's
-- search_path, whatever SET clause they carry; PostgreSQL starts that path with the target schema
-- (@extschema@), where a role that may create objects, such as the database owner who owns public, could
-- have planted a function or an operator that matches better than pg_catalog's (format(text, bigint, ...),
-- =(oid, regrole)), bound for ever and run by every caller, SECURITY DEFINER ones included. So every
-- unqualified name in this script is pg_catalog's; every object it creates names its schema. LOCAL: the
-- extension machinery restores the caller's path when the script ends.
SET LOCAL search_path = pg_catalog, pg_temp;

-- Space reuse: a job vacuums its table as it goes (reuse_space), and records the table's size and what
-- its rounds reclaimed. start_backfill() and alter_backfill() take reuse_space as their last argument:
-- the old signatures go, the SQL wrappers first (their bodies depend on the implementations), and come
-- back below with it.
-- The columns come without defaults, which are set afterwards, as a fresh install has them: a column added
-- with a default would keep it as a "missing value" that a fresh table does not have.
ALTER TABLE migration_ext.backfill_job ADD COLUMN reuse_space boolean, ADD COLUMN size_at_start bigint,
	ADD COLUMN size_at_end bigint, ADD COLUMN reclaims int, ADD COLUMN rows_reclaimed bigint,
	ADD COLUMN space_reclaimed bigint, ADD COLUMN reclaim_note text;
UPDATE migration_ext.backfill_job SET reuse_space = true, reclaims = 0, rows_reclaimed = 0, space_reclaimed = 0;
ALTER TABLE migration_ext.backfill_job ALTER COLUMN reuse_space SET DEFAULT true,
	ALTER COLUMN reuse_space SET NOT NULL, ALTER COLUMN reclaims SET DEFAULT 0, ALTER COLUMN reclaims SET NOT NULL,
	ALTER COLUMN rows_reclaimed SET DEFAULT 0, ALTER COLUMN rows_reclaimed SET NOT NULL,
	ALTER COLUMN space_reclaimed SET DEFAULT 0, ALTER COLUMN space_reclaimed SET NOT NULL;
-- Bytes on disk of some tables: each one's heap, indexes and TOAST (a quoted body: parsed when called,
-- under the pinned search_path).
CREATE FUNCTION migration_ext.tables_size(tables regclass[]) RETURNS bigint
	LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$ SELECT sum(pg_total_relation_size(t))::bigint FROM unnest(tables) t $$;
REVOKE EXECUTE ON FUNCTION migration_ext.tables_size(regclass[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION migration_ext.tables_size(regclass[]) TO PUBLIC;
DROP FUNCTION @extschema@.start_backfill(regclass, name, text, name, int, int, boolean, interval, interval, int, bigint,
										 regclass, double precision);
DROP FUNCTION @extschema@.start_backfill(text, name, text, name, int, int, boolean, interval, interval, int, bigint,
										 regclass, double precision);
DROP FUNCTION @extschema@.start_backfill(text, name, int, int, boolean, interval, interval, int, bigint,
										 double precision);
DROP FUNCTION migration_ext.start_migration_backfill(text, name, int, int, boolean, interval, interval, int, bigint,
													 double precision);
DROP FUNCTION migration_ext.start_migration_backfill(regrole, text, name, int, int, boolean, interval, interval, int,
													 bigint, double precision);
DROP FUNCTION migration_ext.start_backfill(regclass, name, text, name, int, int, boolean, text, boolean, interval,
										   interval, int, bigint, regclass, double precision);
DROP FUNCTION migration_ext.start_backfill(regrole, regclass, name, text, name, int, int, boolean, text, boolean,
										   interval, interval, int, bigint, regclass, double precision);
DROP FUNCTION @extschema@.alter_backfill(bigint, int, interval, interval, int, bigint, boolean, double precision);
DROP FUNCTION migration_ext.alter_backfill(regrole, bigint, int, interval, interval, int, bigint, boolean,
										   double precision);

-- ... and back with reuse_space (the implementation of the relation form follows with the other backfill
-- functions below).
CREATE FUNCTION migration_ext.start_backfill(relation regclass, column_name name, codec text, source_column name,
											 batch_size int, max_rows_per_second int, throttle boolean,
											 migration text DEFAULT NULL, launch boolean DEFAULT true,
											 batch_time_target interval DEFAULT NULL,
											 max_replica_lag interval DEFAULT NULL, max_active_backends int DEFAULT NULL,
											 max_wal_bytes_per_second bigint DEFAULT NULL,
											 target_relation regclass DEFAULT NULL,
											 live_duty_cycle double precision DEFAULT NULL,
											 reuse_space boolean DEFAULT NULL)
	RETURNS bigint LANGUAGE c AS 'MODULE_PATHNAME', 'mext_as_invoker';

CREATE FUNCTION migration_ext.start_migration_backfill(migration text, source_column name, batch_size int,
														max_rows_per_second int, throttle boolean,
														batch_time_target interval, max_replica_lag interval,
														max_active_backends int, max_wal_bytes_per_second bigint,
														live_duty_cycle double precision, reuse_space boolean)
	RETURNS bigint LANGUAGE c AS 'MODULE_PATHNAME', 'mext_as_invoker';

CREATE FUNCTION migration_ext.start_migration_backfill(actor regrole, migration text, source_column name,
														batch_size int, max_rows_per_second int, throttle boolean,
														batch_time_target interval, max_replica_lag interval,
														max_active_backends int, max_wal_bytes_per_second bigint,
														live_duty_cycle double precision, reuse_space boolean)
	RETURNS bigint LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	m migration_ext.migration := migration_ext.require_migration(migration, true);
	new_job bigint;
BEGIN
	IF m.phase NOT IN ('producing', 'backfilling') THEN
		RAISE EXCEPTION 'cannot backfill migration "%" in phase %', migration, m.phase
			USING ERRCODE = 'object_not_in_prerequisite_state',
				DETAIL = 'The backfill starts once writers produce the new format: after the point of no return.',
				HINT = format('advance_migration(%L) until it is producing.', migration);
	END IF;
	new_job := migration_ext.start_backfill(actor, m.relation, m.column_name, m.codec,
											coalesce(source_column, m.source_column), batch_size, max_rows_per_second,
											throttle, migration, true, batch_time_target, max_replica_lag,
											max_active_backends, max_wal_bytes_per_second, NULL, live_duty_cycle,
											reuse_space);
	UPDATE migration_ext.migration x SET phase = 'backfilling', job = new_job WHERE x.name = m.name;
	INSERT INTO migration_ext.migration_event (migration, event, from_phase, to_phase, detail, by_role)
	VALUES (migration, 'backfill', m.phase, 'backfilling', format('job %s', new_job), pg_get_userbyid(actor));
	RETURN new_job;
END
$$;

CREATE FUNCTION @extschema@.start_backfill(migration text, source_column name DEFAULT NULL, batch_size int DEFAULT NULL,
										   max_rows_per_second int DEFAULT NULL, throttle boolean DEFAULT true,
										   batch_time_target interval DEFAULT NULL,
										   max_replica_lag interval DEFAULT NULL, max_active_backends int DEFAULT NULL,
										   max_wal_bytes_per_second bigint DEFAULT NULL,
										   live_duty_cycle double precision DEFAULT NULL,
										   reuse_space boolean DEFAULT NULL)
	RETURNS bigint LANGUAGE sql
	RETURN migration_ext.start_migration_backfill(migration, source_column, batch_size, max_rows_per_second, throttle,
												   batch_time_target, max_replica_lag, max_active_backends,
												   max_wal_bytes_per_second, live_duty_cycle, reuse_space);

CREATE FUNCTION @extschema@.start_backfill(relation text, column_name name, codec text,
										   source_column name DEFAULT NULL, batch_size int DEFAULT NULL,
										   max_rows_per_second int DEFAULT NULL, throttle boolean DEFAULT true,
										   batch_time_target interval DEFAULT NULL,
										   max_replica_lag interval DEFAULT NULL, max_active_backends int DEFAULT NULL,
										   max_wal_bytes_per_second bigint DEFAULT NULL,
										   target_relation regclass DEFAULT NULL,
										   live_duty_cycle double precision DEFAULT NULL,
										   reuse_space boolean DEFAULT NULL)
	RETURNS bigint LANGUAGE sql
	RETURN migration_ext.start_backfill(relation::regclass, column_name, codec, source_column, batch_size,
										max_rows_per_second, throttle, NULL, true, batch_time_target, max_replica_lag,
										max_active_backends, max_wal_bytes_per_second, target_relation,
										live_duty_cycle, reuse_space);

CREATE FUNCTION @extschema@.alter_backfill(job bigint, max_rows_per_second int DEFAULT NULL,
										   batch_time_target interval DEFAULT NULL,
										   max_replica_lag interval DEFAULT NULL, max_active_backends int DEFAULT NULL,
										   max_wal_bytes_per_second bigint DEFAULT NULL, throttle boolean DEFAULT NULL,
										   live_duty_cycle double precision DEFAULT NULL, reuse_space boolean DEFAULT NULL)
	RETURNS void LANGUAGE c AS 'MODULE_PATHNAME', 'mext_as_invoker';

CREATE FUNCTION migration_ext.alter_backfill(actor regrole, job bigint, max_rows_per_second int,
											 batch_time_target interval, max_replica_lag interval,
											 max_active_backends int, max_wal_bytes_per_second bigint,
											 throttle boolean, live_duty_cycle double precision, reuse_space boolean)
	RETURNS void LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	j migration_ext.backfill_job := migration_ext.require_job(actor, job);
BEGIN
	IF max_rows_per_second < 0 THEN
		RAISE EXCEPTION 'max_rows_per_second must not be negative' USING ERRCODE = 'invalid_parameter_value',
			HINT = 'Pass 0 to remove the rate cap.';
	END IF;
	PERFORM migration_ext.check_throttle_settings(batch_time_target, max_replica_lag, max_active_backends,
												  max_wal_bytes_per_second, live_duty_cycle);
	PERFORM migration_ext.unfinished_job_state(j, 'altered');
	UPDATE migration_ext.backfill_job b SET
		max_rows_per_second = CASE WHEN alter_backfill.max_rows_per_second IS NULL THEN b.max_rows_per_second
								   ELSE nullif(alter_backfill.max_rows_per_second, 0) END,
		batch_time_target_ms = coalesce(extract(epoch FROM alter_backfill.batch_time_target) * 1000, b.batch_time_target_ms),
		max_replica_lag_s = coalesce(extract(epoch FROM alter_backfill.max_replica_lag), b.max_replica_lag_s),
		max_active_backends = coalesce(alter_backfill.max_active_backends, b.max_active_backends),
		max_wal_bytes_per_second = coalesce(alter_backfill.max_wal_bytes_per_second, b.max_wal_bytes_per_second),
		throttle = coalesce(alter_backfill.throttle, b.throttle),
		live_duty_cycle = coalesce(alter_backfill.live_duty_cycle, b.live_duty_cycle),
		reuse_space = coalesce(alter_backfill.reuse_space, b.reuse_space),
		updated_at = now()
	WHERE b.id = job;
END
$$;

-- wait_backfill() reports progress as NOTICEs (its new argument `progress`), and await_backfill() waits
-- as a procedure that holds no snapshot.
DROP FUNCTION @extschema@.wait_backfill(bigint, interval);

-- Has the job stopped moving by itself (done, failed, cancelled, paused, interrupted)? Its state if so,
-- else NULL. A paused job whose pause was withdrawn (resume, cancel) is about to move: not stopped.
CREATE FUNCTION migration_ext.stopped_state(job bigint) RETURNS text
	LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
	RETURN (SELECT s.state FROM (SELECT migration_ext.effective_state(b) AS state, b.state AS stored, b.requested
								 FROM migration_ext.backfill_job b WHERE b.id = stopped_state.job) s
			WHERE s.state IN ('done', 'failed', 'cancelled', 'interrupted')
			   OR (s.state = 'paused' AND (s.stored <> 'paused' OR s.requested IS NOT DISTINCT FROM 'pause')));

-- Does the operator want progress NOTICEs: the argument, else migration_ext.wait_progress (on).
CREATE FUNCTION migration_ext.wants_progress(progress boolean) RETURNS boolean
	LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
	RETURN coalesce(progress, current_setting('migration_ext.wait_progress', true)::boolean, true);

-- Seconds between two progress NOTICEs of a wait.
CREATE FUNCTION migration_ext.progress_every() RETURNS interval
	LANGUAGE sql IMMUTABLE RETURN interval '5 seconds';

-- Waits until the job stops moving by itself (done, failed, cancelled, paused, interrupted) or the
-- timeout passes; returns the state it is in then. With progress (default: migration_ext.wait_progress),
-- a NOTICE every few seconds says how far it is. A function runs inside its caller's statement, whose
-- snapshot stays open as long as it waits; CALL await_backfill() waits without one.
CREATE FUNCTION @extschema@.wait_backfill(job bigint, timeout interval DEFAULT NULL, progress boolean DEFAULT NULL)
	RETURNS text
	LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	deadline timestamptz := CASE WHEN timeout < interval '100 years' THEN clock_timestamp() + timeout END;
	report boolean := migration_ext.wants_progress(progress);
	next_report timestamptz := clock_timestamp() + migration_ext.progress_every();
	reported boolean := false;
	job_state text;
BEGIN
	PERFORM migration_ext.require_job(current_user::regrole, job);
	-- A worker that would have to see this transaction's change of the job waits for it to commit.
	IF (SELECT migration_ext.xid_is_mine(b.xmin) AND b.pid IS NOT NULL
			   AND b.state NOT IN ('done', 'failed', 'cancelled')
		FROM migration_ext.backfill_job b WHERE b.id = job) THEN
		RAISE EXCEPTION 'backfill job % was started or changed in this transaction', job
			USING ERRCODE = 'object_not_in_prerequisite_state',
				DETAIL = 'Its worker waits for this transaction to commit, so waiting here would wait for ever.',
				HINT = 'Commit first, then call wait_backfill().';
	END IF;
	LOOP
		job_state := migration_ext.stopped_state(job);
		EXIT WHEN job_state IS NOT NULL;
		IF deadline IS NOT NULL AND clock_timestamp() >= deadline THEN
			job_state := (SELECT migration_ext.effective_state(b) FROM migration_ext.backfill_job b WHERE b.id = job);
			EXIT;
		END IF;
		IF report AND clock_timestamp() >= next_report THEN
			RAISE NOTICE '%', migration_ext.progress_line(job);
			reported := true;
			next_report := clock_timestamp() + migration_ext.progress_every();
		END IF;
		PERFORM pg_sleep(0.05);
	END LOOP;
	IF reported THEN
		RAISE NOTICE '%', migration_ext.progress_line(job);
	END IF;
	RETURN job_state;
END
$$;

-- Is this call inside an explicit transaction block (BEGIN ... COMMIT)?
CREATE FUNCTION migration_ext.in_transaction_block() RETURNS boolean
	LANGUAGE c STABLE AS 'MODULE_PATHNAME', 'mext_in_transaction_block';

-- wait_backfill() as a procedure that commits between its looks at the job: while it waits it holds no
-- snapshot for longer than one look, so it holds back neither vacuum nor a migration's settle check.
-- Procedures that commit cannot pin settings (SET clauses), so every name here is schema-qualified.
CREATE PROCEDURE @extschema@.await_backfill(job bigint, timeout interval DEFAULT NULL, progress boolean DEFAULT NULL,
											INOUT state text DEFAULT NULL)
	LANGUAGE plpgsql
AS $$
DECLARE
	deadline timestamptz := CASE WHEN timeout OPERATOR(pg_catalog.<) interval '100 years'
								 THEN pg_catalog.clock_timestamp() OPERATOR(pg_catalog.+) timeout END;
	report boolean := migration_ext.wants_progress(progress);
	next_report timestamptz := pg_catalog.clock_timestamp() OPERATOR(pg_catalog.+) migration_ext.progress_every();
	reported boolean := false;
BEGIN
	IF migration_ext.in_transaction_block() THEN
		RAISE EXCEPTION 'await_backfill() cannot run inside a transaction block'
			USING ERRCODE = 'active_sql_transaction',
				DETAIL = 'It commits between its looks at the job, so that waiting holds no snapshot.',
				HINT = 'CALL it on its own, or use SELECT wait_backfill() inside a transaction.';
	END IF;
	PERFORM migration_ext.require_job(CURRENT_USER::regrole, job);
	LOOP
		COMMIT;
		state := migration_ext.stopped_state(job);
		EXIT WHEN state IS NOT NULL;
		IF deadline IS NOT NULL AND pg_catalog.clock_timestamp() OPERATOR(pg_catalog.>=) deadline THEN
			state := (SELECT migration_ext.effective_state(b) FROM migration_ext.backfill_job b
					  WHERE b.id OPERATOR(pg_catalog.=) job);
			EXIT;
		END IF;
		IF report AND pg_catalog.clock_timestamp() OPERATOR(pg_catalog.>=) next_report THEN
			RAISE NOTICE '%', migration_ext.progress_line(job);
			reported := true;
			next_report := pg_catalog.clock_timestamp() OPERATOR(pg_catalog.+) migration_ext.progress_every();
		END IF;
		COMMIT;
		PERFORM pg_catalog.pg_sleep(0.2);
	END LOOP;
	IF reported THEN
		RAISE NOTICE '%', migration_ext.progress_line(job);
	END IF;
END
$$;

-- One line of progress for an operator who waits: percent, rows, rate, ETA and what holds the worker back.
CREATE FUNCTION migration_ext.progress_line(job bigint) RETURNS text
	LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
	RETURN (SELECT format('backfill job %s: %s%% (%s of %s rows), %s rows/s, ETA %s, %s', s.job, s.percent_done,
						  s.rows_scanned, s.rows_estimated, coalesce(round(s.rows_per_second), 0),
						  coalesce(to_char(date_trunc('second', s.eta), 'HH24:MI:SS'), 'unknown'),
						  CASE WHEN s.throttle_reason IS NOT NULL AND s.state IN ('running', 'throttled')
							   THEN 'throttled: ' || s.throttle_reason ELSE s.state END)
			FROM @extschema@.backfill_status s WHERE s.job = progress_line.job);

-- The same explicit grants as a fresh install leaves on them.
REVOKE EXECUTE ON FUNCTION migration_ext.in_transaction_block(), migration_ext.stopped_state(bigint),
	migration_ext.progress_line(bigint), migration_ext.wants_progress(boolean), migration_ext.progress_every()
	FROM PUBLIC;
GRANT EXECUTE ON FUNCTION migration_ext.in_transaction_block(), migration_ext.stopped_state(bigint),
	migration_ext.progress_line(bigint), migration_ext.wants_progress(boolean), migration_ext.progress_every()
	TO PUBLIC;

-- A batch is one trip in the worker's process (batch_step.cpp): worker_step() becomes that step, and
-- the statement builders and run_batch() it called are gone.
DROP FUNCTION migration_ext.worker_step(bigint, int, double precision);
-- One step of a worker, in the worker's transaction: obey a pause or cancel request, or run one batch
-- as the owner of the job's table and write its checkpoint, which commits with it (batch_step.cpp).
-- Workers run the step in their own process; this is the same step as SQL.
CREATE FUNCTION migration_ext.worker_step(job bigint, batch_size int, rate double precision, OUT action text,
										  OUT scanned bigint, OUT converted bigint, OUT conflicts bigint,
										  OUT blocked int)
	LANGUAGE c AS 'MODULE_PATHNAME', 'mext_worker_step';
REVOKE EXECUTE ON FUNCTION migration_ext.worker_step(bigint, int, double precision) FROM PUBLIC;
DROP FUNCTION migration_ext.batch_statement(text, text[], text[], text, text, text, boolean);
DROP FUNCTION migration_ext.copy_statement(text, text[], text[], text, text, text, boolean, text, text[]);
DROP FUNCTION migration_ext.run_batch(oid, text, text, int, text[]);

-- Is this the name of a phase? The one list of phases is the C++ core's (core/phase.hpp).
CREATE FUNCTION migration_ext.is_phase(phase text) RETURNS boolean
	LANGUAGE c IMMUTABLE STRICT AS 'MODULE_PATHNAME', 'mext_is_phase';
REVOKE EXECUTE ON FUNCTION migration_ext.is_phase(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION migration_ext.is_phase(text) TO PUBLIC;
ALTER TABLE migration_ext.migration DROP CONSTRAINT migration_phase_check,
	ADD CONSTRAINT migration_phase_check CHECK (migration_ext.is_phase(phase));

-- Defaults are the library's alone: SQL reads every migration_ext.* setting through setting(), a C
-- function (calling it loads the library, which defines them), instead of carrying its own fallbacks.
CREATE FUNCTION migration_ext.setting(name text) RETURNS double precision
	LANGUAGE c STABLE STRICT AS 'MODULE_PATHNAME', 'mext_setting';
REVOKE EXECUTE ON FUNCTION migration_ext.setting(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION migration_ext.setting(text) TO PUBLIC;

CREATE OR REPLACE FUNCTION migration_ext.run_briefly(role oid, statement text, label text) RETURNS void
	LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	attempt int := 0;
	reason text;
	caller_timeout text := current_setting('lock_timeout');
BEGIN
	LOOP
		attempt := attempt + 1;
		BEGIN
			PERFORM set_config('lock_timeout', migration_ext.setting('migration_ext.ddl_lock_timeout')::int::text, true);
			PERFORM migration_ext.run_as(role, statement, 'pg_catalog, pg_temp');
			PERFORM set_config('lock_timeout', caller_timeout, true);
			RETURN;
		EXCEPTION WHEN lock_not_available THEN
			GET STACKED DIAGNOSTICS reason = MESSAGE_TEXT;
		END;
		RAISE NOTICE '%: waiting for a lock (attempt %, %): %', label, attempt, reason, statement;
		PERFORM pg_sleep(least(5.0, 0.1 * 2 ^ least(attempt - 1, 6)) * (0.5 + random() / 2));
	END LOOP;
END
$$;

CREATE OR REPLACE FUNCTION migration_ext.check_job_limits(actor regrole) RETURNS void
	LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	cluster_limit int := migration_ext.setting('migration_ext.max_jobs')::bigint;
	role_limit int := migration_ext.setting('migration_ext.max_jobs_per_role')::bigint;
	running int;
BEGIN
	PERFORM pg_stat_clear_snapshot();
	SELECT count(*) INTO running FROM pg_stat_activity a WHERE a.backend_type = 'migration_ext backfill';
	IF running >= cluster_limit THEN
		RAISE EXCEPTION 'too many backfill workers: % of migration_ext.max_jobs = % are running', running, cluster_limit
			USING ERRCODE = 'configuration_limit_exceeded',
				HINT = 'Wait for a job to finish or pause one, or raise migration_ext.max_jobs (a reload).';
	END IF;
	IF role_limit > 0 THEN
		SELECT count(*) INTO running FROM migration_ext.backfill_job b
		WHERE b.owner = actor AND b.state IN ('queued', 'running', 'throttled') AND migration_ext.worker_alive(b.pid);
		IF running >= role_limit THEN
			RAISE EXCEPTION 'role % already runs % backfill job(s), the limit of migration_ext.max_jobs_per_role', actor,
				running USING ERRCODE = 'configuration_limit_exceeded',
					HINT = 'Wait for one of them to finish or pause one, or ask a superuser to raise the limit.';
		END IF;
	END IF;
END
$$;

CREATE FUNCTION migration_ext.start_backfill(actor regrole, relation regclass, column_name name, codec text,
											 source_column name, batch_size int, max_rows_per_second int,
											 throttle boolean, migration text, launch boolean,
											 batch_time_target interval, max_replica_lag interval,
											 max_active_backends int, max_wal_bytes_per_second bigint,
											 target_relation regclass, live_duty_cycle double precision,
											 reuse_space boolean)
	RETURNS bigint LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	kind "char";
	walk record;
	leaves regclass[];
	foreign_leaf text;
	covering text;
	estimate bigint;
	job bigint;
BEGIN
	IF relation IS NULL OR column_name IS NULL OR codec IS NULL THEN
		RAISE EXCEPTION 'relation, column_name and codec must not be NULL' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	SELECT c.relkind INTO kind FROM pg_class c WHERE c.oid = relation;
	IF (SELECT c.relpersistence FROM pg_class c WHERE c.oid = relation) = 't' THEN
		RAISE EXCEPTION '% is a temporary table', relation USING ERRCODE = 'feature_not_supported',
			DETAIL = 'The backfill worker is another session, and cannot see this session''s temporary tables.';
	END IF;
	IF kind NOT IN ('r', 'p') THEN
		RAISE EXCEPTION '% is not a table', relation USING ERRCODE = 'wrong_object_type',
			HINT = 'A backfill rewrites the rows of a table or a partitioned table.';
	END IF;
	PERFORM migration_ext.require_table_owner(actor, relation, 'backfill it');
	IF NOT launch AND NOT coalesce((SELECT r.rolsuper FROM pg_roles r WHERE r.oid = actor), false) THEN
		RAISE EXCEPTION 'only a superuser may queue a job without a worker' USING ERRCODE = 'insufficient_privilege';
	END IF;
	IF target_relation IS NULL THEN
		PERFORM migration_ext.checked_column(relation, column_name);
		IF source_column IS NOT NULL THEN
			PERFORM migration_ext.checked_column(relation, source_column);
		END IF;
	ELSE
		PERFORM migration_ext.require_table_owner(actor, target_relation, 'copy rows into it');
		-- The copy runs as one role: the owner of both tables, so that neither table's code (triggers,
		-- defaults, policies) runs with the other owner's rights.
		IF (SELECT c.relowner FROM pg_class c WHERE c.oid = relation)
		   <> (SELECT c.relowner FROM pg_class c WHERE c.oid = target_relation) THEN
			RAISE EXCEPTION '% and % have different owners', relation, target_relation
				USING ERRCODE = 'insufficient_privilege',
					DETAIL = 'A table move copies rows as the tables'' owner; each table''s triggers, defaults and policies would otherwise run with the other owner''s rights.',
					HINT = 'Give both tables the same owner (ALTER TABLE ... OWNER TO).';
		END IF;
		PERFORM migration_ext.check_table_move(relation, target_relation, column_name, source_column);
	END IF;
	-- The door cannot be bypassed: new-format values land only once readers are tolerant and settled.
	SELECT format('%L (%s)', m.name, m.phase) INTO covering FROM migration_ext.migration m
	WHERE m.phase IN ('planned', 'tolerant') AND start_backfill.column_name IN (m.column_name, m.source_column)
	  AND (m.relation IN (start_backfill.relation, start_backfill.target_relation)
		   OR m.relation IN (SELECT a.relid FROM pg_partition_ancestors(start_backfill.relation) a)
		   OR start_backfill.relation IN (SELECT t.relid FROM pg_partition_tree(m.relation) t))
	LIMIT 1;
	IF covering IS NOT NULL THEN
		RAISE EXCEPTION 'column "%" of % belongs to migration %, which has not passed its point of no return',
			column_name, relation, covering USING ERRCODE = 'object_not_in_prerequisite_state',
			DETAIL = 'A backfill writes the new format; readers must be tolerant and settled first.',
			HINT = 'advance_migration() through the door, then start_backfill(<migration>).';
	END IF;
	IF migration IS NOT NULL AND NOT EXISTS (SELECT FROM migration_ext.migration m WHERE m.name = migration
											 AND m.relation = start_backfill.relation AND m.column_name = start_backfill.column_name) THEN
		RAISE EXCEPTION 'migration "%" does not cover %.%', migration, relation, quote_ident(column_name)
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	PERFORM migration_ext.require_codec(codec);
	IF batch_size IS NOT NULL AND batch_size <= 0 THEN
		RAISE EXCEPTION 'batch_size must be positive, not %', batch_size USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF max_rows_per_second IS NOT NULL AND max_rows_per_second <= 0 THEN
		RAISE EXCEPTION 'max_rows_per_second must be positive, not %', max_rows_per_second
			USING ERRCODE = 'invalid_parameter_value', HINT = 'Pass NULL for no rate cap.';
	END IF;
	PERFORM migration_ext.check_throttle_settings(batch_time_target, max_replica_lag, max_active_backends,
												  max_wal_bytes_per_second, live_duty_cycle);
	IF target_relation IS NULL THEN
		PERFORM migration_ext.require_rewritable(relation, column_name);
	END IF;
	SELECT * INTO walk FROM migration_ext.walk_key(relation, CASE WHEN target_relation IS NULL THEN column_name END);
	IF kind = 'p' THEN
		SELECT array_agg(t.relid ORDER BY t.relid::text) INTO leaves
		FROM pg_partition_tree(relation) t JOIN pg_class c ON c.oid = t.relid
		WHERE t.isleaf AND c.relkind = 'r';
		IF leaves IS NULL THEN
			RAISE EXCEPTION 'partitioned table % has no partitions', relation USING ERRCODE = 'object_not_in_prerequisite_state';
		END IF;
		-- Every batch runs as the partitioned table's owner: a partition someone else owns would have that
		-- owner's table rewritten, or run the parent's triggers with its rights. Refused before starting.
		SELECT format('partition %s is owned by role %s, not by the table''s owner %s', leaf, c.relowner::regrole,
					  (SELECT p.relowner::regrole FROM pg_class p WHERE p.oid = relation)) INTO foreign_leaf
		FROM unnest(leaves) leaf JOIN pg_class c ON c.oid = leaf
		WHERE c.relowner <> (SELECT p.relowner FROM pg_class p WHERE p.oid = relation) LIMIT 1;
		IF foreign_leaf IS NOT NULL THEN
			RAISE EXCEPTION 'cannot backfill %: %', relation, foreign_leaf
				USING ERRCODE = 'insufficient_privilege',
					HINT = 'Give every partition the owner of the partitioned table (ALTER TABLE ... OWNER TO).';
		END IF;
	ELSE
		leaves := ARRAY[relation];
	END IF;
	IF launch THEN
		PERFORM migration_ext.check_job_limits(actor);
	END IF;
	SELECT coalesce(sum(migration_ext.row_estimate(leaf)), 0)::bigint INTO estimate FROM unnest(leaves) leaf;
	BEGIN
		INSERT INTO migration_ext.backfill_job (relation, column_name, source_column, target_relation, codec, migration, key_columns,
												partitions, batch_size, max_rows_per_second, throttle,
												rows_estimated, current_batch_size, batch_time_target_ms,
												max_replica_lag_s, max_active_backends, max_wal_bytes_per_second,
												live_duty_cycle, owner, reuse_space, size_at_start)
		VALUES (relation, column_name, source_column, target_relation, codec, migration, walk.key_columns, leaves,
				coalesce(batch_size, CASE WHEN throttle THEN migration_ext.setting('migration_ext.batch_size')::bigint
										  ELSE migration_ext.setting('migration_ext.unthrottled_batch_size')::bigint END), max_rows_per_second,
				coalesce(throttle, true), estimate,
				coalesce(batch_size, CASE WHEN throttle THEN migration_ext.setting('migration_ext.batch_size')::bigint
										  ELSE migration_ext.setting('migration_ext.unthrottled_batch_size')::bigint END),
				coalesce(extract(epoch FROM batch_time_target) * 1000,
						 migration_ext.setting('migration_ext.batch_time_target')),
				coalesce(extract(epoch FROM max_replica_lag),
						 migration_ext.setting('migration_ext.max_replica_lag') / 1000),
				coalesce(max_active_backends, migration_ext.setting('migration_ext.max_active_backends')::bigint),
				coalesce(max_wal_bytes_per_second,
						 migration_ext.setting('migration_ext.max_wal_bytes_per_second')::bigint),
				coalesce(live_duty_cycle, migration_ext.setting('migration_ext.live_duty_cycle')), actor,
				coalesce(reuse_space, current_setting('migration_ext.reuse_space')::boolean),
				CASE WHEN target_relation IS NULL THEN migration_ext.tables_size(leaves) END)
		RETURNING id INTO job;
	EXCEPTION WHEN unique_violation THEN
		RAISE EXCEPTION 'a backfill of %.% is already active', relation, quote_ident(column_name)
			USING ERRCODE = 'object_in_use',
				HINT = 'Wait for it, resume it, or cancel it: see backfill_status.';
	END;
	-- launch => false leaves the job queued for a caller that runs worker_step() itself (the isolation tests).
	IF launch THEN
		PERFORM migration_ext.launch_job(job);
	END IF;
	RETURN job;
END
$$;

CREATE OR REPLACE FUNCTION migration_ext.worker_begin(job bigint, OUT batch_size int, OUT max_rows_per_second int,
										   OUT throttle boolean)
	RETURNS SETOF record LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	j migration_ext.backfill_job;
	claim text;
	role_limit int := migration_ext.setting('migration_ext.max_jobs_per_role')::bigint;
BEGIN
	SELECT * INTO j FROM migration_ext.backfill_job b WHERE b.id = job FOR UPDATE;
	IF NOT FOUND OR j.state IN ('done', 'failed', 'cancelled') OR j.home <> migration_ext.job_home() THEN
		RETURN;
	END IF;
	claim := migration_ext.claim_job(job);
	IF claim = 'taken' THEN
		RETURN;
	END IF;
	IF claim = 'full' OR (role_limit > 0 AND role_limit <= (
			SELECT count(*) FROM migration_ext.backfill_job b WHERE b.owner = j.owner AND b.id <> job
			AND b.state IN ('queued', 'running', 'throttled') AND migration_ext.worker_alive(b.pid))) THEN
		UPDATE migration_ext.backfill_job b SET pid = NULL, state = 'queued', updated_at = now(),
			warning = CASE WHEN claim = 'full'
						   THEN 'not started: migration_ext.max_jobs backfill workers are running'
						   ELSE format('not started: role %s runs migration_ext.max_jobs_per_role jobs', j.owner) END
		WHERE b.id = job;
		RETURN;
	END IF;
	-- Paused before its worker got going: the worker gives the job back at once, as a pause between
	-- batches does.
	IF j.requested = 'pause' THEN
		UPDATE migration_ext.backfill_job b SET state = 'paused', throttle_reason = 'paused by operator', pid = NULL,
			updated_at = now() WHERE b.id = job;
		RETURN;
	END IF;
	IF NOT migration_ext.may_act_on(j.owner, j.relation)
	   OR (j.target_relation IS NOT NULL AND NOT migration_ext.may_act_on(j.owner, j.target_relation)) THEN
		UPDATE migration_ext.backfill_job b SET state = 'failed', finished_at = now(), updated_at = now(),
			last_error = format('permission denied: role %s may no longer act as the owner of %s', j.owner, j.relation)
		WHERE b.id = job;
		RETURN;
	END IF;
	UPDATE migration_ext.backfill_job b SET pid = pg_backend_pid(),
		state = 'running',
		started_at = coalesce(b.started_at, now()), updated_at = now(), throttle_reason = NULL, warning = NULL
	WHERE b.id = job;
	batch_size := coalesce(j.current_batch_size, j.batch_size);
	max_rows_per_second := j.max_rows_per_second;
	throttle := j.throttle;
	RETURN NEXT;
END
$$;

CREATE OR REPLACE FUNCTION migration_ext.resume_interrupted() RETURNS int
	LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	j migration_ext.backfill_job;
	resumed int := 0;
	cluster_limit int := migration_ext.setting('migration_ext.max_jobs')::bigint;
	role_limit int := migration_ext.setting('migration_ext.max_jobs_per_role')::bigint;
	running int;
	launched_for regrole[] := '{}';
BEGIN
	PERFORM pg_stat_clear_snapshot();
	SELECT count(*) INTO running FROM pg_stat_activity a WHERE a.backend_type = 'migration_ext backfill';
	-- The row is locked first (which also gives this transaction an id the new worker waits for), and
	-- the worker launched in a statement of its own: inside an UPDATE's SET list a concurrent change of
	-- the row would make PostgreSQL evaluate it, and so launch a worker, twice. The workers started
	-- here hold their slots until this transaction ends: no more are started than the limits allow,
	-- so one role's queued jobs cannot take every slot of the cluster.
	FOR j IN SELECT * FROM migration_ext.backfill_job b
			 WHERE b.state IN ('queued', 'running', 'throttled', 'paused', 'interrupted')
			   AND b.requested IS DISTINCT FROM 'pause' AND b.home = migration_ext.job_home() ORDER BY b.id
			 FOR UPDATE LOOP
		CONTINUE WHEN migration_ext.worker_alive(j.pid);
		EXIT WHEN running + resumed >= cluster_limit;
		CONTINUE WHEN role_limit > 0 AND role_limit <= cardinality(array_positions(launched_for, j.owner))
			+ (SELECT count(*) FROM migration_ext.backfill_job b WHERE b.owner = j.owner
			   AND b.state IN ('queued', 'running', 'throttled') AND migration_ext.worker_alive(b.pid));
		IF migration_ext.launch_job(j.id) THEN
			resumed := resumed + 1;
			launched_for := launched_for || j.owner;
		END IF;
	END LOOP;
	RETURN resumed;
END
$$;

CREATE OR REPLACE FUNCTION migration_ext.wait_standbys_past_commit(migration text) RETURNS void
	LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	target pg_lsn := migration_ext.flushed_insert_lsn();
	deadline timestamptz := clock_timestamp()
		+ make_interval(secs => migration_ext.setting('migration_ext.settle_wait') / 1000);
	lagging text;
BEGIN
	LOOP
		PERFORM pg_stat_clear_snapshot();
		SELECT string_agg(format('standby %s replayed %s < %s', coalesce(nullif(r.application_name, ''),
								 r.client_addr::text, r.pid::text), coalesce(r.replay_lsn::text, 'nothing'), target), ', ')
		INTO lagging FROM pg_stat_replication r
		WHERE migration_ext.replays(r) AND (r.replay_lsn IS NULL OR r.replay_lsn < target);
		EXIT WHEN lagging IS NULL OR clock_timestamp() >= deadline;
		PERFORM pg_sleep(0.05);
	END LOOP;
	IF lagging IS NOT NULL THEN
		RAISE EXCEPTION 'cannot advance migration "%": the reader swaps have not settled', migration
			USING ERRCODE = 'object_not_in_prerequisite_state',
				DETAIL = format('Still waiting for: %s (a position after the swaps'' commit).', lagging),
				HINT = 'Wait until the standbys catch up, then advance again.';
	END IF;
END
$$;

DROP FUNCTION migration_ext.setting_int(text, bigint);
DROP FUNCTION migration_ext.setting_ms(text, double precision);
DROP FUNCTION migration_ext.setting_real(text, double precision);

-- Bound anew: 0.1.0's script parsed these bodies, views and policies with the target schema first on its
-- search_path, so a function or operator planted there before the install (see the top of this file) may
-- be what they call. Their text is unchanged; replaced here, with pg_catalog's names, they call what a
-- fresh install of 0.2.0 calls. OR REPLACE only replaces the extension's own members.
CREATE OR REPLACE FUNCTION migration_ext.may_act_on(actor regrole, relation regclass) RETURNS boolean
	LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
	RETURN coalesce((SELECT r.rolsuper FROM pg_roles r WHERE r.oid = actor), false)
		OR coalesce((SELECT pg_has_role(actor, c.relowner, 'USAGE') FROM pg_class c WHERE c.oid = relation), false);
CREATE OR REPLACE FUNCTION migration_ext.may_read_function(fn regprocedure) RETURNS boolean
	LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
	RETURN coalesce((SELECT pg_has_role(current_user, p.proowner, 'USAGE') FROM pg_proc p WHERE p.oid = fn), false);
ALTER POLICY function_version_owner ON migration_ext.function_version USING (migration_ext.may_read_function(fn));
CREATE OR REPLACE VIEW @extschema@.function_history WITH (security_invoker = true) AS
	SELECT v.fn, v.version, v.role, v.body, v.note, v.migration, v.created_at, v.created_by, v.wal_lsn,
		   v.version = f.current_version AS is_current, v.previous_version
	FROM migration_ext.function_version v
	JOIN migration_ext.frozen_function f USING (fn);
CREATE OR REPLACE FUNCTION @extschema@.swap_function(fn regprocedure, body text, note text DEFAULT NULL,
										   language name DEFAULT NULL)
	RETURNS int LANGUAGE sql
	RETURN migration_ext.swap_function(fn, body, note, language, pg_catalog.current_setting('search_path'));
CREATE OR REPLACE FUNCTION @extschema@.revert_function(fn regprocedure, to_version int DEFAULT NULL) RETURNS int
	LANGUAGE sql
	RETURN migration_ext.revert_function(fn, to_version, pg_catalog.current_setting('search_path'));
ALTER POLICY backfill_job_table_owner ON migration_ext.backfill_job USING (migration_ext.may_act_on(CURRENT_USER::regrole, relation));
CREATE FUNCTION @extschema@.start_backfill(relation regclass, column_name name, codec text,
										   source_column name DEFAULT NULL, batch_size int DEFAULT NULL,
										   max_rows_per_second int DEFAULT NULL, throttle boolean DEFAULT true,
										   batch_time_target interval DEFAULT NULL,
										   max_replica_lag interval DEFAULT NULL, max_active_backends int DEFAULT NULL,
										   max_wal_bytes_per_second bigint DEFAULT NULL,
										   target_relation regclass DEFAULT NULL,
										   live_duty_cycle double precision DEFAULT NULL,
										   reuse_space boolean DEFAULT NULL)
	RETURNS bigint LANGUAGE sql
	RETURN migration_ext.start_backfill(relation, column_name, codec, source_column, batch_size, max_rows_per_second,
										throttle, NULL, true, batch_time_target, max_replica_lag, max_active_backends,
										max_wal_bytes_per_second, target_relation, live_duty_cycle, reuse_space);
CREATE OR REPLACE FUNCTION migration_ext.worker_note(job bigint, rate double precision, throttle_reason text, warning text,
										  batch_size int)
	RETURNS void LANGUAGE sql SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
	UPDATE migration_ext.backfill_job b SET rate = coalesce(worker_note.rate, b.rate),
		throttle_reason = worker_note.throttle_reason, warning = worker_note.warning,
		current_batch_size = worker_note.batch_size, updated_at = now(),
		state = CASE WHEN b.state IN ('running', 'throttled')
					 THEN CASE WHEN worker_note.throttle_reason IS NULL THEN 'running' ELSE 'throttled' END
					 ELSE b.state END
	WHERE b.id = worker_note.job;
END;
CREATE OR REPLACE VIEW @extschema@.backfill_status WITH (security_invoker = true) AS
	SELECT j.id AS job, j.relation, j.column_name, j.source_column, j.target_relation, j.codec, j.migration,
		   e.state, j.requested,
		   j.rows_scanned, j.rows_converted, j.rows_skipped, j.conflicts, j.batches,
		   j.current_batch_size AS batch_size, j.max_rows_per_second,
		   round(j.rate::numeric, 1) AS rows_per_second,
		   greatest(j.rows_estimated, j.rows_scanned) AS rows_estimated,
		   CASE WHEN e.state = 'done' THEN 100.0
				ELSE round(100.0 * j.rows_scanned / greatest(j.rows_estimated, j.rows_scanned, 1), 1) END AS percent_done,
		   CASE WHEN j.rate > 0 AND e.state IN ('running', 'throttled')
				THEN make_interval(secs => greatest(j.rows_estimated - j.rows_scanned, 0) / j.rate) END AS eta,
		   CASE WHEN e.state = 'paused' AND j.home <> migration_ext.job_home()
				THEN 'restored from a backup: resume_backfill() continues it from its checkpoint'
				ELSE j.throttle_reason END AS throttle_reason,
		   j.warning, j.last_key, j.partitions[j.partition_index] AS partition,
		   j.throttle, round(j.batch_time_target_ms::numeric) AS batch_time_target_ms, j.max_replica_lag_s,
		   j.max_active_backends, j.max_wal_bytes_per_second, j.live_duty_cycle,
		   j.last_error, j.error_key, j.pid, j.owner AS role,
		   j.created_at, j.started_at, j.updated_at, j.finished_at,
		   j.reuse_space, j.size_at_start,
		   -- The table's size now (at the end, once done) against its size at the start.
		   pg_catalog.round(coalesce(j.size_at_end, migration_ext.tables_size(j.partitions))::numeric
							OPERATOR(pg_catalog./) nullif(j.size_at_start, 0)::numeric, 3) AS growth,
		   j.reclaims, j.rows_reclaimed, j.space_reclaimed, j.reclaim_note
	FROM migration_ext.backfill_job j
	-- Once a row, so that the state, the percentage and the ETA agree even if the worker exits meanwhile.
	-- OFFSET 0 keeps the planner from pulling the subquery up into the three expressions that use it.
	CROSS JOIN LATERAL (SELECT migration_ext.effective_state(j) AS state OFFSET 0) e;
ALTER POLICY migration_table_owner ON migration_ext.migration USING (migration_ext.may_act_on(CURRENT_USER::regrole, relation));
ALTER POLICY migration_event_table_owner ON migration_ext.migration_event USING (EXISTS (SELECT FROM migration_ext.migration m WHERE m.name = migration));
ALTER POLICY planned_swap_owner ON migration_ext.planned_swap USING (migration_ext.may_read_function(fn));
CREATE OR REPLACE FUNCTION migration_ext.replays(r pg_stat_replication) RETURNS boolean
	LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
	RETURN r.replay_lsn IS NOT NULL OR r.flush_lsn IS NULL;
CREATE OR REPLACE FUNCTION @extschema@.advance_migration(name text, confirm text DEFAULT NULL, read_sample int DEFAULT 100)
	RETURNS text LANGUAGE sql
	RETURN migration_ext.advance_migration(name, confirm, pg_catalog.current_setting('search_path'), read_sample);
CREATE OR REPLACE FUNCTION @extschema@.retreat_migration(name text) RETURNS text
	LANGUAGE sql
	RETURN migration_ext.retreat_migration(name, pg_catalog.current_setting('search_path'));
CREATE OR REPLACE VIEW @extschema@.migration_status WITH (security_invoker = true) AS
	SELECT m.name, m.phase, s.settled, coalesce(s.waiting_for, migration_ext.ddl_progress(m.name)) AS waiting_for,
		   m.relation, m.column_name, m.source_column, m.codec, m.job,
		   (SELECT migration_ext.effective_state(j) FROM migration_ext.backfill_job j WHERE j.id = m.job) AS job_state,
		   (SELECT count(*) FROM migration_ext.planned_swap p WHERE p.migration = m.name AND p.role = 'reader') AS readers,
		   (SELECT count(*) FROM migration_ext.planned_swap p WHERE p.migration = m.name AND p.role = 'writer') AS writers,
		   m.constraint_name, m.created_at, m.created_by
	FROM migration_ext.migration m, LATERAL migration_ext.settle_state(m.name) s;
CREATE OR REPLACE VIEW @extschema@.migration_history WITH (security_invoker = true) AS
	SELECT e.id, e.migration, e.event, e.from_phase, e.to_phase, e.fn, e.role, e.detail, e.at, e.by_role AS role_name,
		   e.wal_lsn
	FROM migration_ext.migration_event e;
CREATE OR REPLACE FUNCTION migration_ext.mirror_name(source_column name, target_column name) RETURNS name
	LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp
	RETURN left(format('migration_ext_mirror_%s_to_%s', source_column, target_column), 54) || '_'
		   || left(md5(source_column || '>' || target_column), 8);

-- Columns of any type with a text form: codecs work on a value's text form, the backfill casts what they
-- produce back to the column's type (cast_converted), and migrate_value() has a form for any type.
-- migrate_value() for a value of any other type (jsonb, bytea, integer, a domain, an array...): converted
-- on its text form and read back as its type, so that a reader needs no cast. Text-like arguments
-- resolve to the text form above.
CREATE FUNCTION @extschema@.migrate_value(codec text, value anyelement) RETURNS anyelement
	LANGUAGE c STABLE PARALLEL SAFE AS 'MODULE_PATHNAME', 'mext_migrate_value_any';

-- The batch's cast of a converted text form back to its column's type (the type of `model`, a typed
-- NULL): a value that does not read fails naming the row's key, before the UPDATE would fail without it.
CREATE FUNCTION migration_ext.cast_converted(value text, model anyelement, key text[]) RETURNS anyelement
	LANGUAGE c STABLE PARALLEL SAFE AS 'MODULE_PATHNAME', 'mext_cast_converted';
REVOKE EXECUTE ON FUNCTION migration_ext.cast_converted(text, anyelement, text[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION migration_ext.cast_converted(text, anyelement, text[]) TO PUBLIC;

-- The column a codec function may read: it must exist and not be dropped. Any type will do: codecs work
-- on its text form (its type's output), and what they produce is read back by its type's input.
CREATE FUNCTION migration_ext.checked_column(relation regclass, column_name name) RETURNS regtype
	LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	column_type regtype;
BEGIN
	IF relation IS NULL OR column_name IS NULL THEN
		RAISE EXCEPTION 'relation and column must not be NULL' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	SELECT a.atttypid::regtype INTO column_type
	FROM pg_attribute a
	WHERE a.attrelid = relation AND a.attname = column_name AND a.attnum > 0 AND NOT a.attisdropped;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'column "%" of relation % does not exist', column_name, relation
			USING ERRCODE = 'undefined_column';
	END IF;
	RETURN column_type;
END
$$;
REVOKE EXECUTE ON FUNCTION migration_ext.checked_column(regclass, name) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION migration_ext.checked_column(regclass, name) TO PUBLIC;

CREATE OR REPLACE FUNCTION @extschema@.count_legacy(relation regclass, column_name name, codec text) RETURNS bigint
	LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	result bigint;
BEGIN
	PERFORM migration_ext.checked_column(relation, column_name);
	PERFORM migration_ext.require_codec(codec);
	EXECUTE format('SELECT count(*) FROM %s WHERE %s.is_legacy($1, %I::text)',
				   relation, quote_ident('@extschema@'), column_name)
		INTO result USING codec;
	RETURN result;
END
$$;

CREATE OR REPLACE FUNCTION @extschema@.audit_column(relation regclass, column_name name, codec text)
	RETURNS TABLE (legacy bigint, target bigint, ambiguous bigint, nulls bigint, other bigint, total bigint)
	LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM migration_ext.checked_column(relation, column_name);
	PERFORM migration_ext.require_codec(codec);
	RETURN QUERY EXECUTE format(
		'SELECT count(*) FILTER (WHERE v = ''legacy''), count(*) FILTER (WHERE v = ''target''),
				count(*) FILTER (WHERE v = ''ambiguous''), count(*) FILTER (WHERE v = ''null''),
				count(*) FILTER (WHERE v = ''other''), count(*)
		 FROM (SELECT migration_ext.classify($1, %I::text) AS v FROM %s) s', column_name, relation)
		USING codec;
END
$$;

CREATE OR REPLACE FUNCTION @extschema@.inspect_column(relation regclass, column_name name, codec text DEFAULT NULL)
	RETURNS TABLE (in_primary_key boolean, in_unique_index boolean, foreign_keys text[], referenced_by text[],
				   in_partition_key boolean, in_expression_index boolean, in_partial_index boolean,
				   is_generated boolean, user_triggers text[], row_estimate bigint, sampled_rows bigint,
				   sampled_legacy_ratio numeric, plan text)
	LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	attnum int2;
	sample_percent float8;
	walk_columns text;
BEGIN
	PERFORM migration_ext.checked_column(relation, column_name);
	SELECT a.attnum, a.attgenerated <> '' INTO attnum, is_generated
	FROM pg_attribute a WHERE a.attrelid = relation AND a.attname = column_name;
	SELECT coalesce(bool_or(i.indisprimary AND attnum = ANY (i.indkey)), false),
		   coalesce(bool_or(i.indisunique AND attnum = ANY (i.indkey)), false),
		   coalesce(bool_or(i.indexprs IS NOT NULL
							AND pg_get_indexdef(i.indexrelid) ~ ('\m' || quote_ident(column_name) || '\M')), false),
		   coalesce(bool_or(i.indpred IS NOT NULL
							AND (attnum = ANY (i.indkey) OR pg_get_expr(i.indpred, i.indrelid) ~ ('\m' || quote_ident(column_name) || '\M'))), false)
	INTO in_primary_key, in_unique_index, in_expression_index, in_partial_index
	FROM pg_index i WHERE i.indrelid = relation;
	SELECT array_agg(format('%s references %s ON UPDATE %s', c.conname, c.confrelid::regclass,
							CASE c.confupdtype WHEN 'c' THEN 'CASCADE' WHEN 'n' THEN 'SET NULL' WHEN 'd' THEN 'SET DEFAULT'
											   WHEN 'r' THEN 'RESTRICT' ELSE 'NO ACTION' END))
	INTO foreign_keys FROM pg_constraint c WHERE c.contype = 'f' AND c.conrelid = relation AND attnum = ANY (c.conkey);
	SELECT array_agg(format('%s from %s ON UPDATE %s', c.conname, c.conrelid::regclass,
							CASE c.confupdtype WHEN 'c' THEN 'CASCADE' WHEN 'n' THEN 'SET NULL' WHEN 'd' THEN 'SET DEFAULT'
											   WHEN 'r' THEN 'RESTRICT' ELSE 'NO ACTION' END))
	INTO referenced_by FROM pg_constraint c WHERE c.contype = 'f' AND c.confrelid = relation AND attnum = ANY (c.confkey);
	SELECT coalesce(bool_or(attnum = ANY (p.partattrs::int2[])), false) INTO in_partition_key
	FROM pg_partitioned_table p WHERE p.partrelid = relation;
	in_partition_key := coalesce(in_partition_key, false);
	SELECT array_agg(t.tgname::text ORDER BY t.tgname) INTO user_triggers
	FROM pg_trigger t WHERE t.tgrelid = relation AND NOT t.tgisinternal;
	row_estimate := migration_ext.row_estimate(relation);
	IF codec IS NOT NULL THEN
		PERFORM migration_ext.require_codec(codec);
		sample_percent := least(100, greatest(0.01, 100.0 * 10000 / greatest(row_estimate, 1)));
		EXECUTE format('SELECT count(*), round(avg(CASE WHEN %s.is_legacy($1, %I::text) THEN 1 ELSE 0 END), 4)
						FROM %s TABLESAMPLE BERNOULLI ($2)', quote_ident('@extschema@'), column_name, relation)
			INTO sampled_rows, sampled_legacy_ratio USING codec, sample_percent;
	END IF;
	-- The plan is what start_backfill() will do with the column: each one is executable, or the refusal
	-- start_backfill() gives, with its reason.
	BEGIN
		SELECT array_to_string(w.key_columns, ', ') INTO walk_columns FROM migration_ext.walk_key(relation, column_name) w;
	EXCEPTION WHEN feature_not_supported OR object_not_in_prerequisite_state THEN
		walk_columns := NULL;
	END;
	plan := CASE
		WHEN is_generated THEN 'leave it: a generated column is computed, not stored by writers; change its expression instead'
		WHEN in_partition_key THEN 'leave it: the partition key cannot be rewritten in place (rows would move between partitions); expand to a new column and contract'
		WHEN referenced_by IS NOT NULL AND EXISTS (SELECT FROM pg_constraint c WHERE c.contype = 'f' AND c.confrelid = relation AND attnum = ANY (c.confkey) AND c.confupdtype <> 'c')
			THEN 'leave it: the key cannot be rewritten in place (it is referenced without ON UPDATE CASCADE); make the foreign keys ON UPDATE CASCADE, or expand to a new column and contract'
		WHEN (in_primary_key OR in_unique_index) AND walk_columns IS NULL
			THEN 'leave it: the column is in every unique key the backfill could walk; add a unique index on other NOT NULL columns, or expand to a new column and contract'
		WHEN referenced_by IS NOT NULL THEN format('key update with cascade: allow_key_update => true rewrites it in place, walking the key (%s), cascading to the referencing rows', walk_columns)
		WHEN in_primary_key THEN format('key update: allow_key_update => true rewrites the primary key in place, walking the key (%s)', walk_columns)
		WHEN in_unique_index THEN format('in-place update, walking the key (%s); the unique index must stay unique after conversion (a codec that maps two values to one would fail)', walk_columns)
		WHEN foreign_keys IS NOT NULL THEN 'in-place update; the referenced values must exist in the new format first'
		ELSE 'in-place update: backfill it in batches'
	END;
	IF user_triggers IS NOT NULL THEN
		plan := plan || format('; note: triggers %s fire on every converted row', array_to_string(user_triggers, ', '));
	END IF;
	IF in_expression_index OR in_partial_index THEN
		plan := plan || '; note: an expression or partial index uses the column and is recomputed on every converted row';
	END IF;
	RETURN NEXT;
END
$$;

CREATE OR REPLACE FUNCTION migration_ext.create_migration(actor regrole, name text, relation regclass, column_name name,
											   codec text, source_column name, allow_key_update boolean)
	RETURNS void LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	inventory record;
BEGIN
	IF name IS NULL OR btrim(name) = '' THEN
		RAISE EXCEPTION 'migration name must not be empty' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF relation IS NULL OR column_name IS NULL OR codec IS NULL THEN
		RAISE EXCEPTION 'relation, column_name and codec must not be NULL' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	PERFORM migration_ext.require_codec(codec);
	PERFORM migration_ext.checked_column(relation, column_name);
	PERFORM migration_ext.require_table_owner(actor, relation, 'migrate it');
	IF source_column IS NOT NULL THEN
		PERFORM migration_ext.checked_column(relation, source_column);
	END IF;
	SELECT * INTO inventory FROM @extschema@.inspect_column(relation, column_name);
	IF NOT coalesce(allow_key_update, false) AND (inventory.in_primary_key OR inventory.in_partition_key
												 OR inventory.referenced_by IS NOT NULL) THEN
		RAISE EXCEPTION 'column "%" of % is structurally fixed', column_name, relation
			USING ERRCODE = 'feature_not_supported', DETAIL = inventory.plan,
				HINT = 'See inspect_column(); pass allow_key_update => true only if foreign keys cascade.';
	END IF;
	IF EXISTS (SELECT FROM migration_ext.migration m WHERE m.name = create_migration.name) THEN
		RAISE EXCEPTION 'migration "%" already exists', name USING ERRCODE = 'duplicate_object';
	END IF;
	INSERT INTO migration_ext.migration (name, relation, column_name, codec, source_column, allow_key_update, created_by)
	VALUES (name, relation, column_name, codec, source_column, coalesce(allow_key_update, false), pg_get_userbyid(actor));
	INSERT INTO migration_ext.migration_event (migration, event, to_phase, detail, by_role)
	VALUES (name, 'create', 'planned', format('%s.%I with codec %s', relation, column_name, codec), pg_get_userbyid(actor));
END
$$;

CREATE OR REPLACE FUNCTION migration_ext.read_check(actor regrole, m migration_ext.migration, fn regprocedure,
										 caller_search_path text)
	RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	sample text[] := (SELECT array_agg(r.value ORDER BY r.ordinal) FROM migration_ext.read_sample r
					  WHERE r.migration = m.name);
	reader record;
	differs text;
	checked text[] := '{}';
	unchecked text[] := '{}';
BEGIN
	IF coalesce(cardinality(sample), 0) = 0 THEN
		INSERT INTO migration_ext.migration_event (migration, event, fn, detail, by_role)
		VALUES (m.name, 'read_check', read_check.fn, 'no legacy value sampled: no reader checked', pg_get_userbyid(actor));
		RETURN;
	END IF;
	FOR reader IN SELECT p.oid AS fn, p.proowner, format('%I.%I', n.nspname, p.proname) AS call,
						 CASE WHEN p.proargtypes[0] = 'bpchar'::regtype THEN 'bpchar'
							  ELSE format_type(p.proargtypes[0], NULL) END AS argument, p.pronargs, p.proretset,
						 p.proargtypes[0] = (SELECT a.atttypid FROM pg_attribute a WHERE a.attrelid = m.relation
											 AND a.attname = m.column_name) AS takes_column_type
				  FROM migration_ext.planned_swap s JOIN pg_proc p ON p.oid = s.fn
				  JOIN pg_namespace n ON n.oid = p.pronamespace
				  WHERE s.migration = m.name AND s.role = 'reader' AND s.applied_version IS NOT NULL
					AND (read_check.fn IS NULL OR s.fn = read_check.fn)
				  ORDER BY s.ordinal LOOP
		IF reader.pronargs <> 1 OR reader.proretset
		   OR (reader.argument NOT IN ('text', 'character varying', 'bpchar', 'name') AND NOT reader.takes_column_type) THEN
			unchecked := unchecked || reader.fn::regprocedure::text;
			CONTINUE;
		END IF;
		differs := migration_ext.run_as(reader.proowner, format(
			'SELECT format(%L, v, a, c, b) FROM (SELECT v, c, %s(v::%s)::text AS a, %s(c::%s)::text AS b FROM '
			'(SELECT v, %I.migrate_value(%L, v) AS c FROM unnest(%L::text[]) v) s) t WHERE a IS DISTINCT FROM b LIMIT 1',
			'legacy value %L reads as %L, but its converted form %L reads as %L', reader.call, reader.argument,
			reader.call, reader.argument, '@extschema@', m.codec, coalesce(sample, '{}')),
			'pg_catalog, ' || caller_search_path);
		IF differs IS NOT NULL THEN
			RAISE EXCEPTION 'reader % of migration "%" does not read both formats alike', reader.fn::regprocedure, m.name
				USING ERRCODE = 'object_not_in_prerequisite_state', DETAIL = differs || '.',
					HINT = 'A tolerant reader returns the same for a legacy value and its converted form, e.g. by '
						   'reading it through migrate_value().';
		END IF;
		checked := checked || reader.fn::regprocedure::text;
	END LOOP;
	INSERT INTO migration_ext.migration_event (migration, event, fn, detail, by_role)
	VALUES (m.name, 'read_check', read_check.fn,
			format('%s legacy value(s): %s%s', coalesce(cardinality(sample), 0),
				   CASE WHEN cardinality(checked) > 0 THEN 'read alike by ' || array_to_string(checked, ', ')
						ELSE 'no reader checked' END,
				   CASE WHEN cardinality(unchecked) > 0 THEN '; not checked (signature): ' || array_to_string(unchecked, ', ')
						ELSE '' END),
			pg_get_userbyid(actor));
END
$$;

CREATE OR REPLACE FUNCTION migration_ext.check_table_move(relation regclass, target_relation regclass, column_name name,
											   source_column name)
	RETURNS void LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	walk record;
BEGIN
	IF target_relation = relation THEN
		RAISE EXCEPTION 'a table move copies into another table, not into % itself', relation
			USING ERRCODE = 'invalid_parameter_value',
				HINT = 'Leave target_relation out to convert the column in place.';
	END IF;
	PERFORM migration_ext.checked_column(target_relation, column_name);
	PERFORM migration_ext.checked_column(relation, coalesce(source_column, column_name));
	SELECT * INTO walk FROM migration_ext.walk_key(relation);
	-- Plain columns, immediate: ON CONFLICT DO NOTHING must recognise exactly the rows with the same key.
	IF NOT EXISTS (SELECT FROM pg_index i WHERE i.indrelid = target_relation AND i.indisunique AND i.indpred IS NULL
				   AND i.indexprs IS NULL AND i.indimmediate
				   AND (SELECT array_agg(a.attname ORDER BY a.attname) FROM pg_attribute a
						WHERE a.attrelid = target_relation AND a.attnum = ANY (i.indkey))
					   = (SELECT array_agg(k ORDER BY k) FROM unnest(walk.key_columns) k)) THEN
		RAISE EXCEPTION '% has no unique index on the key (%) of %', target_relation,
			array_to_string(walk.key_columns, ', '), relation USING ERRCODE = 'object_not_in_prerequisite_state',
			DETAIL = 'Rows the application already wrote to the new table are recognised by that key and never overwritten.';
	END IF;
END
$$;

CREATE OR REPLACE FUNCTION migration_ext.mirror_trigger() RETURNS trigger
	LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	source_value text := to_jsonb(NEW) ->> TG_ARGV[0];
	typed_source boolean;
	typed_target boolean;
	columns text;
BEGIN
	-- A writer that sets only the target (already flipped) keeps what it wrote: on INSERT when it gives
	-- no source, on UPDATE when it leaves the source alone.
	IF (to_jsonb(NEW) ->> TG_ARGV[1]) IS NOT NULL
	   AND ((TG_OP = 'INSERT' AND source_value IS NULL)
			OR (TG_OP = 'UPDATE' AND source_value IS NOT DISTINCT FROM (to_jsonb(OLD) ->> TG_ARGV[0]))) THEN
		RETURN NEW;
	END IF;
	SELECT bool_or(a.attname = TG_ARGV[0]), bool_or(a.attname = TG_ARGV[1]) INTO typed_source, typed_target
	FROM pg_attribute a WHERE a.attrelid = TG_RELID AND a.attname IN (TG_ARGV[0], TG_ARGV[1]) AND a.attnum > 0
	  AND NOT a.attisdropped AND a.atttypid <> 'text'::regtype;
	IF NOT coalesce(typed_source OR typed_target, false) THEN
		NEW := jsonb_populate_record(NEW, jsonb_build_object(TG_ARGV[1],
			@extschema@.migrate_value(TG_ARGV[2], source_value)));
		RETURN NEW;
	END IF;
	-- The text form is the type's output (a JSON rendering can differ from it, a timestamp's for instance).
	IF typed_source THEN
		EXECUTE format('SELECT ($1).%I::text', TG_ARGV[0]) INTO source_value USING NEW;
	END IF;
	SELECT string_agg(CASE WHEN a.attname = TG_ARGV[1]
						   THEN format('%I.migrate_value($2, $3)::%s', '@extschema@', format_type(a.atttypid, a.atttypmod))
						   ELSE format('r.%I', a.attname) END, ', ' ORDER BY a.attnum)
	INTO columns FROM pg_attribute a WHERE a.attrelid = TG_RELID AND a.attnum > 0 AND NOT a.attisdropped;
	EXECUTE format('SELECT %s FROM (SELECT ($1).*) r', columns) INTO NEW USING NEW, TG_ARGV[2], source_value;
	RETURN NEW;
END
$$;

CREATE OR REPLACE FUNCTION @extschema@.create_mirror(relation regclass, source_column name, target_column name, codec text)
	RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM migration_ext.checked_column(relation, source_column);
	PERFORM migration_ext.checked_column(relation, target_column);
	PERFORM migration_ext.require_codec(codec);
	IF source_column = target_column THEN
		RAISE EXCEPTION 'source and target column are the same' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF EXISTS (SELECT FROM pg_trigger t WHERE t.tgrelid = relation
			   AND t.tgname = migration_ext.mirror_name(source_column, target_column)) THEN
		RAISE EXCEPTION 'a mirror from "%" to "%" on % already exists', source_column, target_column, relation
			USING ERRCODE = 'duplicate_object';
	END IF;
	EXECUTE format('CREATE TRIGGER %I BEFORE INSERT OR UPDATE ON %s FOR EACH ROW '
				   'EXECUTE FUNCTION migration_ext.mirror_trigger(%L, %L, %L)',
				   migration_ext.mirror_name(source_column, target_column), relation, source_column, target_column,
				   codec);
END
$$;

DROP FUNCTION migration_ext.checked_text_column(regclass, name, boolean);

-- advance_migration's verifying scan reports progress as NOTICEs.
-- Progress NOTICEs of a long scan in this transaction: the rows is_legacy() looks at (scan_progress.cpp).
CREATE FUNCTION migration_ext.scan_progress(label text, estimate bigint) RETURNS void
	LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'mext_scan_progress';
REVOKE EXECUTE ON FUNCTION migration_ext.scan_progress(text, bigint) FROM PUBLIC;
CREATE OR REPLACE FUNCTION migration_ext.advance_migration(actor regrole, name text, confirm text, caller_search_path text,
												read_sample int)
	RETURNS text LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	m migration_ext.migration := migration_ext.require_migration(name, true);
	next_phase text := migration_ext.phase_after(name, m.phase, 'advance');
	table_owner oid := (SELECT c.relowner FROM pg_class c WHERE c.oid = m.relation);
	s migration_ext.planned_swap;
	settle record;
	readers int;
	readers_current int;
	remaining bigint;
	new_constraint name;
	contract record;
BEGIN
	PERFORM migration_ext.require_table_owner(actor, m.relation, 'advance its migration');
	-- Its swaps create bodies, and its read check calls readers, as their functions' owners, with the
	-- caller's search_path: only a role that may act as those owners may ask for it.
	PERFORM migration_ext.require_function_owner(actor, p.fn) FROM migration_ext.planned_swap p
	WHERE p.migration = name;
	IF m.phase = 'planned' THEN
		FOR s IN SELECT * FROM migration_ext.planned_swap p WHERE p.migration = name AND p.role = 'reader'
				 ORDER BY p.ordinal LOOP
			PERFORM migration_ext.apply_swap(actor, s, caller_search_path);
		END LOOP;
	ELSIF m.phase = 'tolerant' THEN
		SELECT count(*), count(*) FILTER (WHERE f.current_version = p.applied_version)
		INTO readers, readers_current
		FROM migration_ext.planned_swap p JOIN migration_ext.frozen_function f ON f.fn = p.fn
		WHERE p.migration = name AND p.role = 'reader';
		-- A standby settles only on a position after the swaps' commit, which this transaction cannot
		-- reach if it made them. (Without standbys, readers and writers swapped in one transaction
		-- change together, and the check of older transactions below still holds.)
		IF EXISTS (SELECT FROM migration_ext.planned_swap p WHERE p.migration = name AND p.applied_version IS NOT NULL
				   AND migration_ext.xid_is_mine(p.xmin))
		   AND EXISTS (SELECT FROM pg_stat_replication r WHERE migration_ext.replays(r)) THEN
			RAISE EXCEPTION 'cannot advance migration "%": its reader swaps were applied in this transaction', name
				USING ERRCODE = 'object_not_in_prerequisite_state',
					DETAIL = 'No standby can have replayed them before they commit.',
					HINT = 'Commit the tolerant step, wait until migration_status shows settled, then advance.';
		END IF;
		SELECT * INTO settle FROM migration_ext.settle_state(name);
		PERFORM migration_ext.door_check(name, readers, readers_current, settle.settled, settle.waiting_for,
										 confirm IS NOT DISTINCT FROM name);
		PERFORM migration_ext.wait_standbys_past_commit(name);
		PERFORM migration_ext.sample_legacy_values(m, coalesce(read_sample, 100));
		PERFORM migration_ext.read_check(actor, m, NULL, caller_search_path);
		FOR s IN SELECT * FROM migration_ext.planned_swap p WHERE p.migration = name AND p.role = 'writer'
				 ORDER BY p.ordinal LOOP
			PERFORM migration_ext.apply_swap(actor, s, caller_search_path);
		END LOOP;
	ELSIF m.phase = 'backfilling' THEN
		IF m.job IS NOT NULL AND (SELECT migration_ext.effective_state(j) FROM migration_ext.backfill_job j WHERE j.id = m.job)
								 IS DISTINCT FROM 'done' THEN
			RAISE EXCEPTION 'cannot advance migration "%": its backfill (job %) is not done', name, m.job
				USING ERRCODE = 'object_not_in_prerequisite_state',
					HINT = format('See backfill_status; wait_backfill(%s) waits for it.', m.job);
		END IF;
		-- A NOTICE every few seconds while the scan runs (migration_ext.wait_progress).
		PERFORM migration_ext.scan_progress(format('verifying %s.%I', m.relation, m.column_name),
											migration_ext.row_estimate(m.relation));
		remaining := migration_ext.run_as(table_owner, format('SELECT count(*) FROM %s WHERE %s', m.relation,
					   CASE WHEN m.source_column IS NULL
							THEN format('%I.is_legacy(%L, %I::text)', '@extschema@', m.codec, m.column_name)
							-- A column move: a NULL target is left to convert only where its source is set (or
							-- the codec fills NULL itself).
							ELSE format('(%I IS NULL AND (%I IS NOT NULL OR %L)) OR %I.is_legacy(%L, %I::text)',
										m.column_name, m.source_column,
										(SELECT c.detect = 'null' FROM migration_ext.codec c WHERE c.name = m.codec),
										'@extschema@', m.codec, m.column_name) END), 'pg_catalog, pg_temp')::bigint;
		PERFORM migration_ext.scan_progress(NULL, NULL);
		IF remaining > 0 THEN
			RAISE EXCEPTION 'cannot advance migration "%": % legacy value(s) remain in %.%', name, remaining, m.relation,
				quote_ident(m.column_name) USING ERRCODE = 'object_not_in_prerequisite_state',
				DETAIL = 'The verifying scan found rows the backfill has not converted (written since, or skipped).',
				HINT = format('Run start_backfill(%L) again: converted rows are skipped.', name);
		END IF;
	ELSIF m.phase = 'converted' THEN
		-- The contract, online: ADD ... NOT VALID commits at once (a brief ACCESS EXCLUSIVE), VALIDATE
		-- scans under SHARE UPDATE EXCLUSIVE while reads and writes go on, and every strong lock is
		-- taken with migration_ext.ddl_lock_timeout and retried (run_online). Each statement is written
		-- from what the catalog holds now, so a contract that was interrupted continues.
		PERFORM migration_ext.require_no_lock_held(m.relation, 'contract the migration');
		SELECT * INTO contract FROM migration_ext.contract_statements(m);
		PERFORM migration_ext.run_online(table_owner, contract.statements, format('contract of migration %s', name));
		new_constraint := contract.constraint_name;
		UPDATE migration_ext.migration x SET constraint_name = new_constraint WHERE x.name = m.name;
		IF contract.drops_mirror THEN
			INSERT INTO migration_ext.migration_event (migration, event, detail, by_role)
			VALUES (name, 'drop_mirror', format('%I -> %I', m.source_column, m.column_name), pg_get_userbyid(actor));
		END IF;
	END IF;
	UPDATE migration_ext.migration x SET phase = next_phase WHERE x.name = m.name;
	INSERT INTO migration_ext.migration_event (migration, event, from_phase, to_phase, by_role)
	VALUES (name, 'advance', m.phase, next_phase, pg_get_userbyid(actor));
	RETURN next_phase;
END
$$;

REVOKE EXECUTE ON FUNCTION
	migration_ext.start_backfill(regclass, name, text, name, int, int, boolean, text, boolean, interval, interval, int,
								 bigint, regclass, double precision, boolean),
	migration_ext.start_backfill(regrole, regclass, name, text, name, int, int, boolean, text, boolean, interval,
								 interval, int, bigint, regclass, double precision, boolean),
	migration_ext.start_migration_backfill(text, name, int, int, boolean, interval, interval, int, bigint,
										   double precision, boolean),
	migration_ext.start_migration_backfill(regrole, text, name, int, int, boolean, interval, interval, int, bigint,
										   double precision, boolean),
	migration_ext.alter_backfill(regrole, bigint, int, interval, interval, int, bigint, boolean, double precision,
								 boolean)
	FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
	migration_ext.start_backfill(regclass, name, text, name, int, int, boolean, text, boolean, interval, interval, int,
								 bigint, regclass, double precision, boolean),
	migration_ext.start_migration_backfill(text, name, int, int, boolean, interval, interval, int, bigint,
										   double precision, boolean)
	TO PUBLIC;
