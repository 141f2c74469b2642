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
	PERFORM migration_ext.refuse_citus_table(relation);
	PERFORM migration_ext.refuse_citus_table(target_relation) WHERE target_relation IS NOT NULL;
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
		-- A move migration's tables were checked, and its column map resolved, when it was created.
		IF NOT EXISTS (SELECT FROM migration_ext.migration m WHERE m.name = start_backfill.migration
					   AND m.target_relation = start_backfill.target_relation) THEN
			PERFORM migration_ext.check_table_move(relation, target_relation, column_name, source_column);
		END IF;
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

-- Repair on read: repair_value(), the smart read that writes a legacy value's conversion back to its row,
-- and the count of what reads converted, shown by migration_status (recreated below with two more columns).
-- A reader's repair: `value` converted by the migration's codec, returned in its own type whether or not
-- it is written back; the key values name its row by the migration's walk key (walk_key()), in that order.
-- The write-back happens in a subtransaction, after the point of no return only, without waiting for any
-- lock, where the column still holds `value`, and only for a caller that may update the column (see
-- repair_value.cpp). VOLATILE because it writes; PARALLEL SAFE because in parallel mode it only converts.
CREATE FUNCTION @extschema@.repair_value(migration text, value anyelement, VARIADIC key "any") RETURNS anyelement
	LANGUAGE c VOLATILE PARALLEL SAFE AS 'MODULE_PATHNAME', 'mext_repair_value';

-- Statement-level trigger on migration_ext.migration: backends drop the migrations they repair through,
-- so that a phase change reaches every reader at its next statement.
CREATE FUNCTION migration_ext.migration_changed() RETURNS trigger
	LANGUAGE c AS 'MODULE_PATHNAME', 'mext_migration_changed';
REVOKE EXECUTE ON FUNCTION migration_ext.migration_changed() FROM PUBLIC;
CREATE TRIGGER migration_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON migration_ext.migration
	FOR EACH STATEMENT EXECUTE FUNCTION migration_ext.migration_changed();

-- The values reads have converted and written back, per migration, as of the last flush: backends count
-- their committed write-backs in shared memory, which the launcher writes here every
-- migration_ext.resume_interval. Shown to the roles that see the migration.
CREATE TABLE migration_ext.read_repair (
	migration text PRIMARY KEY,
	repaired  bigint NOT NULL DEFAULT 0
);
GRANT SELECT ON migration_ext.read_repair TO PUBLIC;
ALTER TABLE migration_ext.read_repair ENABLE ROW LEVEL SECURITY;
CREATE POLICY read_repair_table_owner ON migration_ext.read_repair FOR SELECT
	USING (EXISTS (SELECT FROM migration_ext.migration m WHERE m.name = migration));
SELECT pg_catalog.pg_extension_config_dump('migration_ext.read_repair', '');

-- The migration's committed write-backs still in shared memory; NULL when the library is not preloaded.
CREATE FUNCTION migration_ext.unflushed_repairs(migration text) RETURNS bigint
	LANGUAGE c VOLATILE STRICT AS 'MODULE_PATHNAME', 'mext_unflushed_repairs';

-- Moves this database's counters into migration_ext.read_repair when the calling transaction commits.
CREATE FUNCTION migration_ext.flush_read_repairs() RETURNS int
	LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'mext_flush_read_repairs';
REVOKE EXECUTE ON FUNCTION migration_ext.flush_read_repairs() FROM PUBLIC;

-- Values reads converted and wrote back: the flushed count and what shared memory holds since. NULL when
-- nothing was ever counted (the library is not preloaded).
CREATE FUNCTION migration_ext.repaired_by_reads(migration text) RETURNS bigint
	LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp
	RETURN (SELECT CASE WHEN u.unflushed IS NULL THEN f.flushed ELSE coalesce(f.flushed, 0) + u.unflushed END
			FROM (SELECT (SELECT r.repaired FROM migration_ext.read_repair r
						  WHERE r.migration = repaired_by_reads.migration) AS flushed) f,
				 (SELECT migration_ext.unflushed_repairs(repaired_by_reads.migration) AS unflushed) u);

-- The rows of a table (its leaf partitions') as its statistics estimate them; NULL before the first
-- ANALYZE. Statistics only: no scan, no plan, nothing run as anyone.
CREATE FUNCTION migration_ext.estimated_rows(relation regclass) RETURNS double precision
	LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
	RETURN (SELECT sum(c.reltuples) FROM pg_class c
			WHERE c.relkind <> 'p' AND c.reltuples >= 0
			  AND c.oid IN (SELECT relation UNION ALL SELECT t.relid FROM pg_partition_tree(relation) t WHERE t.isleaf));
-- The same explicit grants as a fresh install leaves on them.
REVOKE EXECUTE ON FUNCTION migration_ext.unflushed_repairs(text), migration_ext.repaired_by_reads(text),
	migration_ext.estimated_rows(regclass) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION migration_ext.unflushed_repairs(text), migration_ext.repaired_by_reads(text),
	migration_ext.estimated_rows(regclass) TO PUBLIC;

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
		   m.constraint_name, m.created_at, m.created_by, r.repaired AS repaired_by_reads,
		   r.repaired / nullif(migration_ext.estimated_rows(m.relation), 0) AS repaired_share
	FROM migration_ext.migration m, LATERAL migration_ext.settle_state(m.name) s,
		 LATERAL (SELECT migration_ext.repaired_by_reads(m.name) AS repaired) r;
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
						 coalesce(p.proargtypes[0] = (SELECT a.atttypid FROM pg_attribute a WHERE a.attrelid = m.relation
													  AND a.attname = m.column_name), false) AS takes_column_type
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
	IF m.target_relation IS NOT NULL THEN
		PERFORM migration_ext.require_move_owner(actor, m, 'advance the move');
	END IF;
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
		-- A move: V2 becomes the source of truth, and its writes land back in V1 until the contract.
		IF m.target_relation IS NOT NULL THEN
			PERFORM migration_ext.create_move_mirror(m, false);
			INSERT INTO migration_ext.migration_event (migration, event, detail, by_role)
			VALUES (name, 'mirror', format('writes to %s land in %s', m.target_relation, m.relation), pg_get_userbyid(actor));
		END IF;
	ELSIF m.phase = 'backfilling' AND m.target_relation IS NOT NULL THEN
		IF m.job IS NOT NULL AND (SELECT migration_ext.effective_state(j) FROM migration_ext.backfill_job j WHERE j.id = m.job)
								 IS DISTINCT FROM 'done' THEN
			RAISE EXCEPTION 'cannot advance migration "%": its sweep (job %) is not done', name, m.job
				USING ERRCODE = 'object_not_in_prerequisite_state',
					HINT = format('See backfill_status; wait_backfill(%s) waits for it.', m.job);
		END IF;
		PERFORM migration_ext.verify_table_move(actor, m);
	ELSIF m.phase = 'converted' AND m.target_relation IS NOT NULL THEN
		PERFORM migration_ext.require_no_lock_held(m.relation, 'contract the migration');
		PERFORM migration_ext.require_no_lock_held(m.target_relation, 'contract the migration');
		SELECT * INTO contract FROM migration_ext.move_contract_statements(m);
		PERFORM migration_ext.run_online(table_owner, contract.statements, format('contract of migration %s', name));
		UPDATE migration_ext.migration x SET constraint_name = contract.constraint_name WHERE x.name = m.name;
		INSERT INTO migration_ext.migration_event (migration, event, detail, by_role)
		VALUES (name, 'drop_mirror', format('%s <-> %s', m.relation, m.target_relation), pg_get_userbyid(actor));
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

-- Table moves as a migration kind: create_migration(..., target_relation, column_map) mirrors writes between
-- V1 and V2, the sweep copies with the column map, the verifying step compares both tables, the contract
-- drops the mirrors, and replace_with_view() can leave a view of V2 under V1's name.
ALTER TABLE migration_ext.migration ADD COLUMN target_relation regclass, ADD COLUMN column_map jsonb;
DROP FUNCTION @extschema@.create_migration(text, regclass, name, text, name, boolean);
DROP FUNCTION migration_ext.create_migration(regrole, text, regclass, name, text, name, boolean);
-- With target_relation, a table move: relation is V1, target_relation V2, column_name V2's column the codec
-- writes, source_column V1's column it reads (the same name by default); column_map pairs the other columns.
CREATE FUNCTION @extschema@.create_migration(name text, relation regclass, column_name name, codec text,
											 source_column name DEFAULT NULL, allow_key_update boolean DEFAULT false,
											 target_relation regclass DEFAULT NULL, column_map jsonb DEFAULT NULL)
	RETURNS void LANGUAGE c AS 'MODULE_PATHNAME', 'mext_as_invoker';


CREATE FUNCTION migration_ext.create_migration(actor regrole, name text, relation regclass, column_name name,
											   codec text, source_column name, allow_key_update boolean,
											   target_relation regclass, column_map jsonb)
	RETURNS void LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	inventory record;
	resolved jsonb;
	open_move text;
BEGIN
	IF name IS NULL OR btrim(name) = '' THEN
		RAISE EXCEPTION 'migration name must not be empty' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF relation IS NULL OR column_name IS NULL OR codec IS NULL THEN
		RAISE EXCEPTION 'relation, column_name and codec must not be NULL' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	PERFORM migration_ext.require_codec(codec);
	PERFORM migration_ext.require_table_owner(actor, relation, 'migrate it');
	IF target_relation IS NOT NULL THEN
		PERFORM migration_ext.require_table_owner(actor, target_relation, 'move rows into it');
		source_column := coalesce(source_column, column_name);
		resolved := migration_ext.plan_table_move(relation, target_relation, column_name, source_column, column_map);
		SELECT format('%L (%s -> %s, %s)', m.name, m.relation, m.target_relation, m.phase) INTO open_move
		FROM migration_ext.migration m
		WHERE m.target_relation IS NOT NULL AND m.phase <> 'contracted'
		  AND (m.relation IN (create_migration.relation, create_migration.target_relation)
			   OR m.target_relation IN (create_migration.relation, create_migration.target_relation))
		LIMIT 1;
		IF open_move IS NOT NULL THEN
			RAISE EXCEPTION 'migration % already moves one of these tables', open_move
				USING ERRCODE = 'object_in_use', HINT = 'Contract it first.';
		END IF;
	ELSIF column_map IS NOT NULL THEN
		RAISE EXCEPTION 'column_map is for a table move' USING ERRCODE = 'invalid_parameter_value',
			HINT = 'Pass target_relation too.';
	END IF;
	IF EXISTS (SELECT FROM migration_ext.migration m WHERE m.name = create_migration.name) THEN
		RAISE EXCEPTION 'migration "%" already exists', name USING ERRCODE = 'duplicate_object';
	END IF;
	IF target_relation IS NOT NULL THEN
		INSERT INTO migration_ext.migration (name, relation, column_name, codec, source_column, created_by,
											 target_relation, column_map)
		VALUES (name, relation, column_name, codec, source_column, pg_get_userbyid(actor), target_relation, resolved);
		INSERT INTO migration_ext.migration_event (migration, event, to_phase, detail, by_role)
		VALUES (name, 'create', 'planned', format('move %s -> %s, %I -> %I with codec %s, columns %s', relation,
												  target_relation, source_column, column_name, codec, resolved),
				pg_get_userbyid(actor));
		PERFORM migration_ext.open_table_move(actor, migration_ext.require_migration(name));
		RETURN;
	END IF;
	PERFORM migration_ext.checked_column(relation, column_name);
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

CREATE OR REPLACE FUNCTION migration_ext.retreat_migration(actor regrole, name text, caller_search_path text) RETURNS text
	LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	m migration_ext.migration := migration_ext.require_migration(name, true);
	previous_phase text := migration_ext.phase_after(name, m.phase, 'retreat');
	table_owner oid := (SELECT c.relowner FROM pg_class c WHERE c.oid = m.relation);
	s migration_ext.planned_swap;
BEGIN
	PERFORM migration_ext.require_table_owner(actor, m.relation, 'retreat its migration');
	IF m.target_relation IS NOT NULL THEN
		PERFORM migration_ext.require_move_owner(actor, m, 'retreat the move');
	END IF;
	PERFORM migration_ext.require_function_owner(actor, p.fn) FROM migration_ext.planned_swap p
	WHERE p.migration = name;
	IF m.phase = 'tolerant' THEN
		FOR s IN SELECT * FROM migration_ext.planned_swap p WHERE p.migration = name AND p.applied_version IS NOT NULL
				 ORDER BY p.ordinal DESC LOOP
			PERFORM migration_ext.restore_version(s.fn, s.restore_version, caller_search_path);
			PERFORM migration_ext.record_version(actor, s.fn, 'revert', format('migration %s: retreat', name), name, NULL);
			UPDATE migration_ext.planned_swap p SET applied_version = NULL, applied_at = NULL, applied_lsn = NULL
			WHERE p.migration = s.migration AND p.fn = s.fn;
			INSERT INTO migration_ext.migration_event (migration, event, fn, role, detail, by_role)
			VALUES (name, 'unswap', s.fn, s.role, format('restored version %s', s.restore_version), pg_get_userbyid(actor));
		END LOOP;
	ELSIF m.phase = 'contracted' AND m.target_relation IS NOT NULL THEN
		RAISE EXCEPTION 'cannot retreat migration "%": the contract of a table move ended its mirrors', name
			USING ERRCODE = 'object_not_in_prerequisite_state',
				DETAIL = format('Writes since the contract reached %s only; %s no longer holds every row.',
								m.target_relation, m.relation);
	ELSIF m.phase = 'contracted' THEN
		-- A brief ACCESS EXCLUSIVE with no scan, in this transaction so that it lands with the phase
		-- change or not at all; requested with migration_ext.ddl_lock_timeout and retried, as the contract's.
		PERFORM migration_ext.run_briefly(table_owner, CASE WHEN m.constraint_name IS NOT NULL
			THEN format('ALTER TABLE %s DROP CONSTRAINT IF EXISTS %I', m.relation, m.constraint_name)
			ELSE format('ALTER TABLE %s ALTER COLUMN %I DROP NOT NULL', m.relation, m.column_name) END,
			format('retreat of migration %s', name));
		UPDATE migration_ext.migration x SET constraint_name = NULL WHERE x.name = m.name;
	END IF;
	UPDATE migration_ext.migration x SET phase = previous_phase WHERE x.name = m.name;
	INSERT INTO migration_ext.migration_event (migration, event, from_phase, to_phase, by_role)
	VALUES (name, 'retreat', m.phase, previous_phase, pg_get_userbyid(actor));
	RETURN previous_phase;
END
$$;

CREATE OR REPLACE FUNCTION migration_ext.start_migration_backfill(actor regrole, migration text, source_column name,
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
	IF m.target_relation IS NOT NULL THEN
		PERFORM migration_ext.require_move_owner(actor, m, 'sweep the move');
	END IF;
	IF m.phase NOT IN ('producing', 'backfilling') THEN
		RAISE EXCEPTION 'cannot backfill migration "%" in phase %', migration, m.phase
			USING ERRCODE = 'object_not_in_prerequisite_state',
				DETAIL = 'The backfill starts once writers produce the new format: after the point of no return.',
				HINT = format('advance_migration(%L) until it is producing.', migration);
	END IF;
	new_job := migration_ext.start_backfill(actor, m.relation, m.column_name, m.codec,
											coalesce(source_column, m.source_column), batch_size, max_rows_per_second,
											throttle, migration, true, batch_time_target, max_replica_lag,
											max_active_backends, max_wal_bytes_per_second, m.target_relation,
											live_duty_cycle, reuse_space);
	UPDATE migration_ext.migration x SET phase = 'backfilling', job = new_job WHERE x.name = m.name;
	INSERT INTO migration_ext.migration_event (migration, event, from_phase, to_phase, detail, by_role)
	VALUES (migration, 'backfill', m.phase, 'backfilling', format('job %s', new_job), pg_get_userbyid(actor));
	RETURN new_job;
END
$$;

CREATE OR REPLACE VIEW @extschema@.migration_status WITH (security_invoker = true) AS
	SELECT m.name, m.phase, s.settled, coalesce(s.waiting_for, migration_ext.ddl_progress(m.name)) AS waiting_for,
		   m.relation, m.column_name, m.source_column, m.codec, m.job,
		   (SELECT migration_ext.effective_state(j) FROM migration_ext.backfill_job j WHERE j.id = m.job) AS job_state,
		   (SELECT count(*) FROM migration_ext.planned_swap p WHERE p.migration = m.name AND p.role = 'reader') AS readers,
		   (SELECT count(*) FROM migration_ext.planned_swap p WHERE p.migration = m.name AND p.role = 'writer') AS writers,
		   m.constraint_name, m.created_at, m.created_by, r.repaired AS repaired_by_reads,
		   r.repaired / nullif(migration_ext.estimated_rows(m.relation), 0) AS repaired_share, m.target_relation
	FROM migration_ext.migration m, LATERAL migration_ext.settle_state(m.name) s,
		 LATERAL (SELECT migration_ext.repaired_by_reads(m.name) AS repaired) r;

------------------------------------------------------------------------------------------------------
-- Table moves (V1 -> V2) as a migration. While it is open the database writes both tables: every write to
-- V1 lands in V2, converted, in the same transaction (the forward mirror, from create_migration on), and
-- from the point of no return, when V2 becomes the source of truth, every write to V2 lands back in V1 (the
-- backward mirror), so that a retreat before the contract loses nothing. The backfill sweeps the rows
-- nobody wrote; the verifying step compares both tables row by row; the contract drops the mirrors.
------------------------------------------------------------------------------------------------------

-- The columns of a move: each V2 column that receives a V1 column, both types (format_type), whether it
-- is the converted one and whether it comes from V1's key, in V2's column order.
CREATE FUNCTION migration_ext.move_columns(m migration_ext.migration)
	RETURNS TABLE (target name, source name, target_type text, source_type text, converted boolean, is_key boolean)
	LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$
	SELECT e.key::name, e.value::name, format_type(ta.atttypid, ta.atttypmod), format_type(sa.atttypid, sa.atttypmod),
		   e.key = m.column_name, e.value = ANY ((migration_ext.walk_key(m.relation)).key_columns)
	FROM jsonb_each_text(m.column_map) e
	JOIN pg_attribute ta ON ta.attrelid = m.target_relation AND ta.attname = e.key AND ta.attnum > 0 AND NOT ta.attisdropped
	JOIN pg_attribute sa ON sa.attrelid = m.relation AND sa.attname = e.value AND sa.attnum > 0 AND NOT sa.attisdropped
	ORDER BY ta.attnum
$$;

-- What V2's column receives from V1's row `row_expression` (a record of V1's type): the V1 column cast to V2's
-- type, the converted column through the codec (its text form, read back as V2's type naming the row's key
-- when it does not read).
CREATE FUNCTION migration_ext.move_value(m migration_ext.migration, c record, row_expression text) RETURNS text
	LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	key_text text := (SELECT string_agg(format('(%s.%I)::text', row_expression, k.source), ', ')
					  FROM migration_ext.move_columns(m) k WHERE k.is_key);
BEGIN
	IF NOT c.converted THEN
		RETURN format('(%s.%I)::%s', row_expression, c.source, c.target_type);
	ELSIF c.target_type = 'text' THEN
		RETURN format('%I.migrate_value(%L, (%s.%I)::text)', '@extschema@', m.codec, row_expression, c.source);
	END IF;
	RETURN format('migration_ext.cast_converted(%I.migrate_value(%L, (%s.%I)::text), NULL::%s, ARRAY[%s])',
				  '@extschema@', m.codec, row_expression, c.source, c.target_type, key_text);
END
$$;

-- The statements of one direction of the mirror, for the trigger's arguments. `forward`: V1 -> V2, the
-- converted column through the codec; otherwise V2 -> V1, each value cast back as it is (V1's readers are
-- tolerant by then). `upsert` takes the written row as $1 and, on UPDATE, the row before as $2: a row
-- whose key changed leaves the other table under its old key; the other table's row is written only when
-- it differs (compared on text forms, which every type has), which ends the back-and-forth between the
-- two mirrors after one round. `remove` takes the deleted row as $1.
CREATE FUNCTION migration_ext.move_statements(m migration_ext.migration, forward boolean, OUT upsert text,
											  OUT remove text)
	LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	into_relation regclass := CASE WHEN forward THEN m.target_relation ELSE m.relation END;
	-- Per column: its name in the table written, its type there, and the value it receives from $1.
	columns text[];
	types text[];
	values text[];
	keys text[];
	key_types text[];
	written_keys text[];
	c record;
BEGIN
	FOR c IN SELECT * FROM migration_ext.move_columns(m) LOOP
		IF forward THEN
			columns := columns || quote_ident(c.target);
			values := values || migration_ext.move_value(m, c, '($1)');
		ELSE
			columns := columns || quote_ident(c.source);
			values := values || format('(($1).%I)::%s', c.target, c.source_type);
		END IF;
		IF c.is_key THEN
			keys := keys || quote_ident(CASE WHEN forward THEN c.target ELSE c.source END);
			key_types := key_types || CASE WHEN forward THEN c.target_type ELSE c.source_type END;
			written_keys := written_keys || quote_ident(CASE WHEN forward THEN c.source ELSE c.target END);
		END IF;
	END LOOP;
	upsert := format(
		'WITH moved AS (DELETE FROM ONLY %1$s AS t WHERE (%2$s) = (%3$s) AND (%4$s) IS DISTINCT FROM (%5$s)) '
		'INSERT INTO %1$s AS t (%6$s) VALUES (%7$s) ON CONFLICT (%8$s) DO UPDATE SET %9$s '
		'WHERE ROW(%10$s)::text IS DISTINCT FROM ROW(%11$s)::text',
		into_relation,
		(SELECT string_agg('t.' || k, ', ') FROM unnest(keys) k),
		(SELECT string_agg(format('(($2).%s)::%s', k, ty), ', ') FROM unnest(written_keys, key_types) u(k, ty)),
		(SELECT string_agg(format('($2).%s', k), ', ') FROM unnest(written_keys) k),
		(SELECT string_agg(format('($1).%s', k), ', ') FROM unnest(written_keys) k),
		array_to_string(columns, ', '), array_to_string(values, ', '), array_to_string(keys, ', '),
		(SELECT string_agg(format('%s = excluded.%s', x, x), ', ') FROM unnest(columns) x),
		(SELECT string_agg('t.' || x, ', ') FROM unnest(columns) x),
		(SELECT string_agg('excluded.' || x, ', ') FROM unnest(columns) x));
	remove := format('DELETE FROM ONLY %s AS t WHERE (%s) = (%s)', into_relation,
		(SELECT string_agg('t.' || k, ', ') FROM unnest(keys) k),
		(SELECT string_agg(format('(($1).%s)::%s', k, ty), ', ') FROM unnest(written_keys, key_types) u(k, ty)));
END
$$;

-- The mirror trigger: AFTER each row, so that it writes what was finally stored. Its arguments are the two
-- statements above, written when the mirror was created: nothing is looked up per write. It runs as the
-- writer, who needs the same privileges on the other table.
CREATE FUNCTION migration_ext.move_mirror() RETURNS trigger
	LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF TG_OP = 'DELETE' THEN
		EXECUTE TG_ARGV[1] USING OLD;
	ELSE
		EXECUTE TG_ARGV[0] USING NEW, OLD;
	END IF;
	RETURN NULL;
END
$$;

CREATE FUNCTION migration_ext.move_mirror_name(migration text) RETURNS name
	LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp
	RETURN left('migration_ext_move_' || migration, 54) || '_' || left(md5(migration), 8);

-- Creates the mirror of one direction on the table it reads from, as the tables' owner, with a brief lock.
CREATE FUNCTION migration_ext.create_move_mirror(m migration_ext.migration, forward boolean) RETURNS void
	LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	s record := migration_ext.move_statements(m, forward);
	on_relation regclass := CASE WHEN forward THEN m.relation ELSE m.target_relation END;
BEGIN
	PERFORM migration_ext.run_briefly((SELECT c.relowner FROM pg_class c WHERE c.oid = on_relation),
		format('CREATE TRIGGER %I AFTER INSERT OR UPDATE OR DELETE ON %s FOR EACH ROW '
			   'EXECUTE FUNCTION migration_ext.move_mirror(%L, %L)',
			   migration_ext.move_mirror_name(m.name), on_relation, s.upsert, s.remove),
		format('mirror of migration %s', m.name));
END
$$;

-- Has the sweep of a move finished (so that V2 holds every row)? For the listing helper, which any role
-- that reads the tables may call: it tells whether the migration's job is done, nothing else.
CREATE FUNCTION migration_ext.move_swept(migration text) RETURNS boolean
	LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
	RETURN coalesce((SELECT m.phase IN ('converted', 'contracted')
						 OR (m.phase = 'backfilling'
							 AND (SELECT migration_ext.effective_state(j) FROM migration_ext.backfill_job j
								  WHERE j.id = m.job) = 'done')
					 FROM migration_ext.migration m WHERE m.name = move_swept.migration), false);

-- The column map of a move, resolved and checked: {V2 column: V1 column} for every V2 column that receives
-- one. Same-named columns by default; `column_map` adds or renames pairs, a JSON null leaves a V2 column
-- out. The converted column (column_name, in V2) comes from source_column (in V1).
CREATE FUNCTION migration_ext.plan_table_move(relation regclass, target_relation regclass, column_name name,
											  source_column name, column_map jsonb)
	RETURNS jsonb LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	resolved jsonb;
	walk record;
	problem text;
	target_keys name[];
	owner oid := (SELECT c.relowner FROM pg_class c WHERE c.oid = relation);
BEGIN
	IF target_relation = relation THEN
		RAISE EXCEPTION 'a table move copies into another table, not into % itself', relation
			USING ERRCODE = 'invalid_parameter_value',
				HINT = 'Leave target_relation out to convert the column in place.';
	END IF;
	SELECT format('%s is %s', x, CASE c.relkind WHEN 'p' THEN 'a partitioned table' WHEN 'v' THEN 'a view'
											  WHEN 'f' THEN 'a foreign table' ELSE 'not a table' END)
	INTO problem FROM unnest(ARRAY[relation, target_relation]) x JOIN pg_class c ON c.oid = x WHERE c.relkind <> 'r'
	LIMIT 1;
	IF problem IS NOT NULL THEN
		RAISE EXCEPTION 'cannot move %: %', relation, problem USING ERRCODE = 'feature_not_supported',
			DETAIL = 'A table move mirrors writes between two ordinary tables.';
	END IF;
	IF (SELECT c.relpersistence FROM pg_class c WHERE c.oid = relation) = 't'
	   OR (SELECT c.relpersistence FROM pg_class c WHERE c.oid = target_relation) = 't' THEN
		RAISE EXCEPTION 'cannot move % to %: a temporary table', relation, target_relation
			USING ERRCODE = 'feature_not_supported';
	END IF;
	IF (SELECT c.relowner FROM pg_class c WHERE c.oid = relation)
	   <> (SELECT c.relowner FROM pg_class c WHERE c.oid = target_relation) THEN
		RAISE EXCEPTION '% and % have different owners', relation, target_relation
			USING ERRCODE = 'insufficient_privilege',
				DETAIL = 'The mirrors and the sweep write one table on behalf of the other; each table''s triggers, defaults and policies would otherwise run with the other owner''s rights.',
				HINT = 'Give both tables the same owner (ALTER TABLE ... OWNER TO).';
	END IF;
	IF column_map IS NOT NULL AND jsonb_typeof(column_map) <> 'object' THEN
		RAISE EXCEPTION 'column_map must be a JSON object {"V2 column": "V1 column"}, not %', column_map
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	PERFORM migration_ext.checked_column(target_relation, column_name);
	PERFORM migration_ext.checked_column(relation, source_column);
	-- Same names, then the map, then the converted column.
	SELECT coalesce(jsonb_object_agg(a.attname, a.attname), '{}') INTO resolved
	FROM pg_attribute a WHERE a.attrelid = target_relation AND a.attnum > 0 AND NOT a.attisdropped
	  AND EXISTS (SELECT FROM pg_attribute b WHERE b.attrelid = relation AND b.attname = a.attname AND b.attnum > 0
				  AND NOT b.attisdropped);
	resolved := jsonb_strip_nulls(resolved || coalesce(column_map, '{}')) - (column_name::text);
	resolved := resolved || jsonb_build_object(column_name, source_column);
	SELECT format('%s: %s', e.key, e.value) INTO problem FROM jsonb_each(resolved) e
	WHERE jsonb_typeof(e.value) <> 'string'
	   OR NOT EXISTS (SELECT FROM pg_attribute a WHERE a.attrelid = target_relation AND a.attname = e.key
					  AND a.attnum > 0 AND NOT a.attisdropped)
	   OR NOT EXISTS (SELECT FROM pg_attribute a WHERE a.attrelid = relation AND a.attname = e.value ->> 0
					  AND a.attnum > 0 AND NOT a.attisdropped)
	LIMIT 1;
	IF problem IS NOT NULL THEN
		RAISE EXCEPTION 'column_map pairs a column of % with a column of %; this pair is not: %', target_relation,
			relation, problem USING ERRCODE = 'undefined_column';
	END IF;
	-- Generated columns are computed, not written.
	SELECT string_agg(format('%s.%I', x.rel, a.attname), ', ') INTO problem
	FROM jsonb_each_text(resolved) e,
		 LATERAL (VALUES (target_relation, e.key), (relation, e.value)) x(rel, col)
		 JOIN pg_attribute a ON a.attrelid = x.rel AND a.attname = x.col AND a.attgenerated <> '';
	IF problem IS NOT NULL THEN
		RAISE EXCEPTION 'cannot mirror generated column(s) %', problem USING ERRCODE = 'feature_not_supported',
			HINT = 'Leave them out of the map with column_map => ''{"<column>": null}''.';
	END IF;
	-- Each table receives rows with only the mapped columns: the others need a default or must allow NULL.
	SELECT string_agg(format('%s.%I', x.rel, a.attname), ', ') INTO problem
	FROM (VALUES (target_relation, (SELECT array_agg(k) FROM jsonb_object_keys(resolved) k)),
				 (relation, (SELECT array_agg(v) FROM jsonb_each_text(resolved) e(k, v)))) x(rel, mapped)
	JOIN pg_attribute a ON a.attrelid = x.rel AND a.attnum > 0 AND NOT a.attisdropped
	WHERE NOT a.attname = ANY (x.mapped) AND a.attnotnull AND NOT a.atthasdef AND a.attidentity = ''
	  AND a.attgenerated = '';
	IF problem IS NOT NULL THEN
		RAISE EXCEPTION 'column(s) % receive nothing from the other table, and are NOT NULL without a default', problem
			USING ERRCODE = 'not_null_violation',
				DETAIL = 'The mirrors insert rows with the mapped columns only.',
				HINT = 'Map them with column_map, or give them a default.';
	END IF;
	-- Every value must cast to the other table's type, both ways (the converted one only back: forward it is
	-- the codec's text form, read as V2's type).
	FOR walk IN
		SELECT e.key AS target, e.value AS source, format_type(ta.atttypid, ta.atttypmod) AS target_type,
			   format_type(sa.atttypid, sa.atttypmod) AS source_type
		FROM jsonb_each_text(resolved) e
		JOIN pg_attribute ta ON ta.attrelid = target_relation AND ta.attname = e.key
		JOIN pg_attribute sa ON sa.attrelid = relation AND sa.attname = e.value LOOP
		-- As the tables' owner, restricted: a cast's function or a domain's CHECK is theirs to run.
		BEGIN
			IF walk.target <> column_name THEN
				PERFORM migration_ext.run_as(owner, format('SELECT NULL::%s::%s', walk.source_type, walk.target_type),
											 'pg_catalog, pg_temp');
			END IF;
			PERFORM migration_ext.run_as(owner, format('SELECT NULL::%s::%s', walk.target_type, walk.source_type),
										 'pg_catalog, pg_temp');
		EXCEPTION WHEN cannot_coerce OR undefined_function THEN
			RAISE EXCEPTION 'cannot mirror %.% (%) and %.% (%): no cast between the types', relation,
				quote_ident(walk.source), walk.source_type, target_relation, quote_ident(walk.target), walk.target_type
				USING ERRCODE = 'datatype_mismatch', HINT = 'Map other columns with column_map, or add a cast.';
		END;
	END LOOP;
	-- Rows are the same row on both sides by V1's key: it must be mapped, onto a unique key of V2 (which the
	-- mirrors' ON CONFLICT names, and on which the sweep recognises rows V2 already has).
	SELECT * INTO walk FROM migration_ext.walk_key(relation);
	SELECT array_agg(e.key ORDER BY e.key) INTO target_keys FROM jsonb_each_text(resolved) e
	WHERE e.value = ANY (walk.key_columns);
	IF coalesce(cardinality(target_keys), 0) <> cardinality(walk.key_columns) THEN
		RAISE EXCEPTION 'the key (%) of % is not mapped onto %', array_to_string(walk.key_columns, ', '), relation,
			target_relation USING ERRCODE = 'invalid_parameter_value',
			DETAIL = 'A row is the same row in both tables by this key.',
			HINT = 'Map each key column with column_map => ''{"<V2 column>": "<V1 column>"}''.';
	END IF;
	IF NOT EXISTS (SELECT FROM pg_index i WHERE i.indrelid = target_relation AND i.indisunique AND i.indpred IS NULL
				   AND i.indexprs IS NULL AND i.indimmediate AND i.indisvalid
				   AND (SELECT array_agg(a.attname ORDER BY a.attname) FROM pg_attribute a
						WHERE a.attrelid = target_relation AND a.attnum = ANY (i.indkey)) = target_keys) THEN
		RAISE EXCEPTION '% has no unique index on (%), where the key of % lands', target_relation,
			array_to_string(target_keys, ', '), relation USING ERRCODE = 'object_not_in_prerequisite_state',
			DETAIL = 'Rows are recognised in both tables by their key; rows the application wrote to the new table are never overwritten by the sweep.',
			HINT = format('CREATE UNIQUE INDEX CONCURRENTLY ON %s (%s)', target_relation,
						  (SELECT string_agg(quote_ident(k), ', ') FROM unnest(target_keys) k));
	END IF;
	RETURN resolved;
END
$$;

-- V2's row built from V1's row `s`: each mapped column as the mirror writes it, the others NULL.
CREATE FUNCTION migration_ext.move_target_row(m migration_ext.migration) RETURNS text
	LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$
	SELECT string_agg(coalesce((SELECT migration_ext.move_value(m, c, 's') FROM migration_ext.move_columns(m) c
								WHERE c.target = a.attname),
							   format('NULL::%s', format_type(a.atttypid, a.atttypmod))), ', ' ORDER BY a.attnum)
	FROM pg_attribute a WHERE a.attrelid = m.target_relation AND a.attnum > 0 AND NOT a.attisdropped
$$;

-- The two helpers of a move, created in V2's schema as the tables' owner (ordinary functions of theirs,
-- run as their callers):
--   <V2>_read(<V2's key>): V2's row; else, until the sweep has finished, V1's, converted, stored in V2 and
--     returned (read-through). Where it cannot be stored (a read-only transaction, a standby, no INSERT
--     privilege, a row a writer holds) it is returned converted without storing, V2's own columns NULL.
--   <V2>_list(): every row: from V1 (V2's version where V2 has the row) until the sweep has finished, then
--     from V2 alone.
CREATE FUNCTION migration_ext.create_move_helpers(m migration_ext.migration) RETURNS text[]
	LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $helpers$
DECLARE
	owner oid := (SELECT c.relowner FROM pg_class c WHERE c.oid = m.target_relation);
	target_schema name := (SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
						   WHERE c.oid = m.target_relation);
	base name := (SELECT c.relname FROM pg_class c WHERE c.oid = m.target_relation);
	read_name text := format('%I.%I', target_schema, left(base, 58) || '_read');
	list_name text := format('%I.%I', target_schema, left(base, 58) || '_list');
	parameters text;        -- V2's key columns, as the reader's parameters
	target_by_key text;     -- V2's row of those parameters
	source_by_key text;     -- V1's row of those parameters
	same_row text;          -- V2's row t is V1's row s
	columns text;
	values text;
	source_row text := migration_ext.move_target_row(m);
BEGIN
	-- A function of either name, whatever its arguments, could be what a caller's call resolves to: the
	-- names must be free in the schema.
	IF EXISTS (SELECT FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
			   WHERE n.nspname = target_schema AND p.proname IN (left(base, 58) || '_read', left(base, 58) || '_list')) THEN
		RAISE EXCEPTION 'a function named %_read or %_list already exists in schema %', left(base, 58), left(base, 58),
			quote_ident(target_schema) USING ERRCODE = 'duplicate_function',
			DETAIL = 'A table move creates its read-through and listing helpers under these names, next to V2.',
			HINT = 'Drop or rename the existing function, or move V2 to a schema of its own.';
	END IF;
	SELECT string_agg(format('%I %s', c.target, c.target_type), ', ' ORDER BY c.target),
		   string_agg(format('t.%I = $%s', c.target, c.n), ' AND ' ORDER BY c.target),
		   string_agg(format('s.%I = $%s::%s', c.source, c.n, c.source_type), ' AND ' ORDER BY c.target),
		   string_agg(format('t.%I = s.%I::%s', c.target, c.source, c.target_type), ' AND ' ORDER BY c.target)
	INTO parameters, target_by_key, source_by_key, same_row
	FROM (SELECT c.*, row_number() OVER (ORDER BY c.target) AS n FROM migration_ext.move_columns(m) c WHERE c.is_key) c;
	SELECT string_agg(quote_ident(c.target), ', '), string_agg(migration_ext.move_value(m, c, 's'), ', ')
	INTO columns, values FROM migration_ext.move_columns(m) c;
	-- V1's row is read FOR SHARE: one deleted meanwhile (its deletion mirrored into V2) is never stored back.
	-- A reader does not queue behind a writer to store what it can return anyway: a V1 row a writer holds
	-- is skipped (SKIP LOCKED), any other lock (V2's row being inserted, V1's row under the backward
	-- mirror) is waited for 1 ms at most.
	PERFORM migration_ext.run_as(owner, format(
		'CREATE FUNCTION %s(%s) RETURNS SETOF %s LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS %L',
		read_name, parameters, m.target_relation, format($fn$
#variable_conflict use_column
DECLARE
	caller_lock_timeout text := current_setting('lock_timeout');
	stored boolean;
BEGIN
	RETURN QUERY SELECT t.* FROM ONLY %3$s AS t WHERE %4$s;
	-- Once the sweep has finished V2 has every row; after the contract V1 is no longer written, and a row
	-- deleted from V2 since is not V1's to bring back.
	IF FOUND OR migration_ext.move_swept(%10$L) THEN
		RETURN;
	END IF;
	BEGIN
		PERFORM set_config('lock_timeout', '1', true);
		RETURN QUERY INSERT INTO %3$s AS t (%5$s) SELECT %6$s FROM ONLY %7$s AS s WHERE %8$s
			FOR SHARE OF s SKIP LOCKED ON CONFLICT DO NOTHING RETURNING t.*;
		stored := FOUND;
		PERFORM set_config('lock_timeout', caller_lock_timeout, true);
		IF stored THEN
			RETURN;
		END IF;
	EXCEPTION WHEN read_only_sql_transaction OR insufficient_privilege OR lock_not_available THEN
		NULL;
	END;
	-- Stored meanwhile by another transaction; else not stored (V1's row is being written, or this
	-- transaction cannot write): V1's row as this statement sees it, converted.
	RETURN QUERY SELECT t.* FROM ONLY %3$s AS t WHERE %4$s;
	IF NOT FOUND THEN
		RETURN QUERY SELECT %9$s FROM ONLY %7$s AS s WHERE %8$s;
	END IF;
END
$fn$,
		read_name, parameters, m.target_relation, target_by_key, columns, values, m.relation, source_by_key,
		source_row, m.name)), 'pg_catalog, pg_temp');
	PERFORM migration_ext.run_as(owner, format(
		'CREATE FUNCTION %s() RETURNS SETOF %s LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS %L',
		list_name, m.target_relation, format($fn$
BEGIN
	IF migration_ext.move_swept(%3$L) THEN
		RETURN QUERY SELECT t.* FROM ONLY %2$s AS t;
	ELSE
		RETURN QUERY SELECT t.* FROM ONLY %2$s AS t WHERE EXISTS (SELECT FROM ONLY %4$s AS s WHERE %5$s)
			UNION ALL SELECT %6$s FROM ONLY %4$s AS s WHERE NOT EXISTS (SELECT FROM ONLY %2$s AS t WHERE %5$s);
	END IF;
END
$fn$,
		list_name, m.target_relation, m.name, m.relation, same_row, source_row)), 'pg_catalog, pg_temp');
	RETURN ARRAY[format('%s(%s)', read_name, parameters), list_name || '()'];
END
$helpers$;

-- Every step of a move acts on both tables as their owner: the actor must still be allowed to act on both,
-- and they must still have one owner (an ALTER TABLE ... OWNER TO since the migration was created would
-- otherwise have one owner's step write the other's table).
CREATE FUNCTION migration_ext.require_move_owner(actor regrole, m migration_ext.migration, action text) RETURNS void
	LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM migration_ext.require_table_owner(actor, m.relation, action);
	PERFORM migration_ext.require_table_owner(actor, m.target_relation, action);
	IF (SELECT c.relowner FROM pg_class c WHERE c.oid = m.relation)
	   <> (SELECT c.relowner FROM pg_class c WHERE c.oid = m.target_relation) THEN
		RAISE EXCEPTION 'cannot % of migration "%": % and % no longer have the same owner', action, m.name, m.relation,
			m.target_relation USING ERRCODE = 'insufficient_privilege',
				DETAIL = 'A table move writes each table on behalf of the other, as their one owner.',
				HINT = 'Give both tables the same owner again (ALTER TABLE ... OWNER TO).';
	END IF;
END
$$;

-- create_migration() of a move: the forward mirror from now on, and the helpers.
CREATE FUNCTION migration_ext.open_table_move(actor regrole, m migration_ext.migration) RETURNS void
	LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	helpers text[];
BEGIN
	PERFORM migration_ext.create_move_mirror(m, true);
	INSERT INTO migration_ext.migration_event (migration, event, detail, by_role)
	VALUES (m.name, 'mirror', format('writes to %s land in %s', m.relation, m.target_relation), pg_get_userbyid(actor));
	helpers := migration_ext.create_move_helpers(m);
	INSERT INTO migration_ext.migration_event (migration, event, detail, by_role)
	VALUES (m.name, 'helpers', 'created ' || array_to_string(helpers, ', '), pg_get_userbyid(actor));
	RAISE NOTICE 'migration "%": writes to % now land in % too; created the read-through % and the listing %',
		m.name, m.relation, m.target_relation, helpers[1], helpers[2];
END
$$;

-- Converted requires V1 and V2 to agree: the same keys, and for each row the same mapped values (V1's
-- converted), compared by a hash of their text forms. One plain scan of each table, as their owner, in one
-- snapshot: writers go on (the mirrors keep both sides equal in each transaction).
CREATE FUNCTION migration_ext.verify_table_move(actor regrole, m migration_ext.migration) RETURNS void
	LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	source_key text;
	target_key text;
	source_values text;
	target_values text;
	found jsonb;
BEGIN
	SELECT string_agg(format('(s.%I)::%s', c.source, c.target_type), ', ') FILTER (WHERE c.is_key),
		   string_agg(format('t.%I', c.target), ', ') FILTER (WHERE c.is_key),
		   string_agg(migration_ext.move_value(m, c, 's'), ', '), string_agg(format('t.%I', c.target), ', ')
	INTO source_key, target_key, source_values, target_values FROM migration_ext.move_columns(m) c;
	found := migration_ext.run_as((SELECT c.relowner FROM pg_class c WHERE c.oid = m.relation), format($q$
SELECT jsonb_build_object('source_rows', count(a.k), 'target_rows', count(b.k),
	'source_only', count(*) FILTER (WHERE b.k IS NULL), 'target_only', count(*) FILTER (WHERE a.k IS NULL),
	'differ', count(*) FILTER (WHERE a.h <> b.h),
	'sample', concat_ws('; ',
		%7$L || array_to_string((array_agg(a.k ORDER BY a.k) FILTER (WHERE b.k IS NULL))[1:5], ', '),
		%8$L || array_to_string((array_agg(b.k ORDER BY b.k) FILTER (WHERE a.k IS NULL))[1:5], ', '),
		'different: ' || array_to_string((array_agg(a.k ORDER BY a.k) FILTER (WHERE a.h <> b.h))[1:5], ', ')))::text
FROM (SELECT ROW(%1$s)::text AS k, md5(ROW(%2$s)::text) AS h FROM ONLY %3$s AS s) a
FULL JOIN (SELECT ROW(%4$s)::text AS k, md5(ROW(%5$s)::text) AS h FROM ONLY %6$s AS t) b ON a.k = b.k$q$,
		source_key, source_values, m.relation, target_key, target_values, m.target_relation,
		format('only in %s: ', m.relation), format('only in %s: ', m.target_relation)),
		'pg_catalog, pg_temp')::jsonb;
	IF (found ->> 'source_only')::bigint + (found ->> 'target_only')::bigint + (found ->> 'differ')::bigint > 0 THEN
		RAISE EXCEPTION 'cannot advance migration "%": % and % do not agree', m.name, m.relation, m.target_relation
			USING ERRCODE = 'object_not_in_prerequisite_state',
				DETAIL = format('%s row(s) only in %s, %s only in %s, %s with different values (keys: %s).',
								found ->> 'source_only', m.relation, found ->> 'target_only', m.target_relation,
								found ->> 'differ', found ->> 'sample'),
				HINT = format('Rows only in %s are ones the sweep has not copied: start_backfill(%L) again copies them. '
							  'Others were written around the mirrors (before the point of no return to %s, or '
							  'with triggers disabled).', m.relation, m.name, m.target_relation);
	END IF;
	INSERT INTO migration_ext.migration_event (migration, event, detail, by_role)
	VALUES (m.name, 'verify', format('%s and %s agree: %s rows each, every mapped value equal', m.relation,
									 m.target_relation, found ->> 'source_rows'), pg_get_userbyid(actor));
END
$$;

-- The contract of a move: the CHECK that refuses the legacy format on V2's column (NOT VALID, then
-- validated), and both mirrors dropped.
CREATE FUNCTION migration_ext.move_contract_statements(m migration_ext.migration, OUT statements text[],
													   OUT constraint_name name)
	LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	on_target migration_ext.migration := m;
	contract record;
BEGIN
	on_target.relation := m.target_relation;
	on_target.source_column := NULL;
	SELECT * INTO contract FROM migration_ext.contract_statements(on_target);
	statements := contract.statements
		|| format('DROP TRIGGER IF EXISTS %I ON %s', migration_ext.move_mirror_name(m.name), m.relation)
		|| format('DROP TRIGGER IF EXISTS %I ON %s', migration_ext.move_mirror_name(m.name), m.target_relation);
	constraint_name := contract.constraint_name;
END
$$;

-- After the contract of a move: V1 is renamed <V1>_retired (its rows kept) and a view of V2 takes V1's
-- name, columns and grants, for callers that still name V1. The view reads V2 with its caller's rights
-- (security_invoker): V2's grants and row-level security policies apply to them as they do on V2 (its
-- callers wrote V2 through the mirrors already). Its columns that are plain columns of V2 of the same type
-- are updatable through it.
CREATE FUNCTION @extschema@.replace_with_view(migration text) RETURNS regclass
	LANGUAGE c AS 'MODULE_PATHNAME', 'mext_as_invoker';

CREATE FUNCTION migration_ext.replace_with_view(actor regrole, migration text) RETURNS regclass
	LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	m migration_ext.migration := migration_ext.require_migration(migration, true);
	owner oid := (SELECT c.relowner FROM pg_class c WHERE c.oid = m.relation);
	source_schema name := (SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
						   WHERE c.oid = m.relation);
	source_name name := (SELECT c.relname FROM pg_class c WHERE c.oid = m.relation);
	retired name;
	columns text;
	grants text;
	label text := format('view replacing %s', m.relation);
BEGIN
	IF m.target_relation IS NULL THEN
		PERFORM migration_ext.require_table_owner(actor, m.relation, 'replace it with a view');
		RAISE EXCEPTION 'migration "%" is not a table move', migration USING ERRCODE = 'wrong_object_type';
	END IF;
	PERFORM migration_ext.require_move_owner(actor, m, 'replace V1 with a view');
	IF m.phase <> 'contracted' THEN
		RAISE EXCEPTION 'migration "%" is %: V1 is replaced by a view after the contract', migration, m.phase
			USING ERRCODE = 'object_not_in_prerequisite_state',
				DETAIL = 'Until then both tables are written, and a retreat needs V1.';
	END IF;
	IF (SELECT c.relkind FROM pg_class c WHERE c.oid = m.relation) <> 'r' THEN
		RAISE EXCEPTION '% was already replaced', m.relation USING ERRCODE = 'object_not_in_prerequisite_state';
	END IF;
	retired := left(source_name, 55) || '_retired';
	IF to_regclass(format('%I.%I', source_schema, retired)) IS NOT NULL THEN
		RAISE EXCEPTION 'relation %.% already exists', quote_ident(source_schema), quote_ident(retired)
			USING ERRCODE = 'duplicate_table', HINT = 'Rename or drop it first.';
	END IF;
	-- V1's columns in V1's order and types: from V2 where mapped, else NULL.
	SELECT string_agg(CASE WHEN c.target IS NULL THEN format('NULL::%s AS %I', format_type(a.atttypid, a.atttypmod), a.attname)
						   WHEN c.target_type = c.source_type THEN format('t.%I AS %I', c.target, a.attname)
						   ELSE format('t.%I::%s AS %I', c.target, c.source_type, a.attname) END, ', ' ORDER BY a.attnum)
	INTO columns
	FROM pg_attribute a LEFT JOIN migration_ext.move_columns(m) c ON c.source = a.attname
	WHERE a.attrelid = m.relation AND a.attnum > 0 AND NOT a.attisdropped;
	SELECT string_agg(format('GRANT %s ON %I.%I TO %s', g.privilege_type, source_schema, source_name,
							 CASE WHEN g.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(g.grantee)) END), '; ')
	INTO grants
	FROM pg_class c, LATERAL aclexplode(c.relacl) g
	WHERE c.oid = m.relation AND g.grantee <> c.relowner
	  AND g.privilege_type IN ('SELECT', 'INSERT', 'UPDATE', 'DELETE');
	PERFORM migration_ext.require_no_lock_held(m.relation, 'replace it with a view');
	PERFORM migration_ext.run_briefly(owner, format('ALTER TABLE %s RENAME TO %I', m.relation, retired), label);
	PERFORM migration_ext.run_as(owner, format('CREATE VIEW %I.%I WITH (security_invoker = true) AS SELECT %s FROM %s AS t', source_schema,
											   source_name, columns, m.target_relation), 'pg_catalog, pg_temp');
	IF grants IS NOT NULL THEN
		PERFORM migration_ext.run_as(owner, g, 'pg_catalog, pg_temp') FROM unnest(string_to_array(grants, '; ')) g;
	END IF;
	INSERT INTO migration_ext.migration_event (migration, event, detail, by_role)
	VALUES (migration, 'replace_with_view', format('%I.%I is a view of %s; the table is %I.%I', source_schema,
												   source_name, m.target_relation, source_schema, retired),
			pg_get_userbyid(actor));
	RETURN format('%I.%I', source_schema, source_name)::regclass;
END
$$;

-- Only the extension calls these, but the mirror's trigger function and whether a sweep is done.
DO $grants$
DECLARE
	f regprocedure;
BEGIN
	FOR f IN SELECT p.oid FROM pg_catalog.pg_proc p
			 WHERE p.pronamespace = 'migration_ext'::regnamespace
			   AND p.proname IN ('create_migration', 'create_move_helpers', 'create_move_mirror', 'move_columns', 'move_contract_statements', 'move_mirror', 'move_mirror_name', 'move_statements', 'move_swept', 'move_target_row', 'move_value', 'open_table_move', 'plan_table_move', 'replace_with_view', 'require_move_owner', 'verify_table_move') LOOP
		EXECUTE pg_catalog.format('REVOKE EXECUTE ON FUNCTION %s FROM PUBLIC', f);
	END LOOP;
END
$grants$;
GRANT EXECUTE ON FUNCTION migration_ext.move_mirror(), migration_ext.move_swept(text) TO PUBLIC;

------------------------------------------------------------------------------------------------------
-- Citus: codecs on every node
--
-- On a Citus cluster, queries on a distributed table run on the workers that hold its shards, and so do
-- the is_legacy() and migrate_value() calls in them: each worker needs the same codecs as the
-- coordinator. The coordinator's migration_ext.codec is the reference. A codec created or dropped there
-- is created or dropped on every worker in the same transaction (two-phase commit: on every node or on
-- none); sync_codecs() gives a worker added later every codec. On a worker, codecs change only that way.
-- Without Citus, none of this runs: Citus is looked up at run time, never required.
------------------------------------------------------------------------------------------------------

-- 'coordinator', 'worker', or NULL without Citus in this database. A node with Citus but no other node in
-- its metadata is a coordinator without workers. (Citus's catalogs exist only with Citus: dynamic SQL.)
CREATE FUNCTION migration_ext.citus_node_role() RETURNS text
	LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	group_id int;
BEGIN
	IF NOT EXISTS (SELECT FROM pg_extension e WHERE e.extname = 'citus') THEN
		RETURN NULL;
	END IF;
	EXECUTE 'SELECT groupid FROM pg_catalog.pg_dist_local_group' INTO group_id;
	RETURN CASE WHEN coalesce(group_id, 0) = 0 THEN 'coordinator' ELSE 'worker' END;
END
$$;

CREATE FUNCTION migration_ext.citus_send_to_workers(command text) RETURNS void
	LANGUAGE c STRICT AS 'MODULE_PATHNAME', 'mext_citus_send_to_workers';

-- The definitions of some codecs (all of them when names is NULL), as applied on a worker.
CREATE FUNCTION migration_ext.codec_definitions(names text[]) RETURNS jsonb
	LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
	SELECT coalesce(jsonb_agg(jsonb_build_object('name', c.name, 'convert', c.convert, 'marker', c.marker,
												 'detect', c.detect, 'shape', c.shape, 'created_at', c.created_at,
												 'created_by', c.created_by) ORDER BY c.name), '[]'::jsonb)
	FROM migration_ext.codec c
	WHERE names IS NULL OR c.name = ANY (names);
END;

-- On a worker, called by the coordinator only: makes the named codecs what `codecs` says (a name of
-- `names` absent from `codecs` is dropped; with names NULL, every codec not in `codecs` is). Each
-- definition is checked again here, against its creator's rights on this node: the superuser applying it
-- lends them nothing. Not executable by PUBLIC, and refused to any role but a superuser.
CREATE FUNCTION migration_ext.apply_codecs(codecs jsonb, names text[]) RETURNS void
	LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	c record;
BEGIN
	IF NOT coalesce((SELECT r.rolsuper FROM pg_roles r WHERE r.rolname = current_user), false) THEN
		RAISE EXCEPTION 'permission denied to apply codecs' USING ERRCODE = 'insufficient_privilege',
			DETAIL = 'The Citus coordinator applies codec changes on its workers, as a superuser.',
			HINT = 'Change codecs with create_codec() and drop_codec() on the coordinator.';
	END IF;
	IF migration_ext.citus_node_role() IS DISTINCT FROM 'worker' THEN
		RAISE EXCEPTION 'codecs are applied only on a Citus worker' USING ERRCODE = 'object_not_in_prerequisite_state',
			DETAIL = 'This node is not a Citus worker: its codecs are its own.';
	END IF;
	-- Serialized with sync_codecs() and other changes arriving here.
	LOCK TABLE migration_ext.codec IN SHARE ROW EXCLUSIVE MODE;
	FOR c IN SELECT * FROM jsonb_to_recordset(codecs)
				 AS d(name text, convert text, marker text, detect text, shape text, created_at timestamptz,
					  created_by name) LOOP
		IF NOT EXISTS (SELECT FROM pg_roles r WHERE r.rolname = c.created_by) THEN
			RAISE EXCEPTION 'role "%" of codec "%" does not exist on this worker', c.created_by, c.name
				USING ERRCODE = 'undefined_object',
					HINT = 'Citus propagates roles created on the coordinator; create it on the coordinator.';
		END IF;
		PERFORM migration_ext.codec_check((SELECT r.oid FROM pg_roles r WHERE r.rolname = c.created_by)::regrole,
										  c.convert, c.marker, c.detect, c.shape);
		INSERT INTO migration_ext.codec AS t (name, convert, marker, detect, shape, created_at, created_by)
		VALUES (c.name, c.convert, c.marker, c.detect, c.shape, c.created_at, c.created_by)
		ON CONFLICT (name) DO UPDATE
			SET convert = excluded.convert, marker = excluded.marker, detect = excluded.detect,
				shape = excluded.shape, created_at = excluded.created_at, created_by = excluded.created_by
			WHERE (t.convert, t.marker, t.detect, t.shape, t.created_at, t.created_by)
				  IS DISTINCT FROM (excluded.convert, excluded.marker, excluded.detect, excluded.shape,
									excluded.created_at, excluded.created_by);
	END LOOP;
	DELETE FROM migration_ext.codec t
	WHERE (names IS NULL OR t.name = ANY (names))
	  AND t.name NOT IN (SELECT d.name FROM jsonb_to_recordset(codecs) AS d(name text));
END
$$;

-- On the coordinator of a Citus cluster with workers, the named codecs (all with names NULL) are made the
-- same on every worker, in this transaction; elsewhere nothing happens. Called by the SECURITY DEFINER
-- functions that change codecs, whose owner (a superuser, the extension's) connects to the workers and
-- sends nothing but apply_codecs() with the definitions as one quoted literal.
CREATE FUNCTION migration_ext.propagate_codecs(names text[]) RETURNS void
	LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF migration_ext.citus_node_role() IS DISTINCT FROM 'coordinator' THEN
		RETURN;
	END IF;
	PERFORM migration_ext.citus_send_to_workers(
		format('SELECT migration_ext.apply_codecs(%L::jsonb, %L::text[])',
			   migration_ext.codec_definitions(names), names));
END
$$;

-- Codecs change on the coordinator: a worker's would differ from the cluster's and be undone by the next
-- sync_codecs().
CREATE FUNCTION migration_ext.require_codec_authority(action text) RETURNS void
	LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF migration_ext.citus_node_role() = 'worker' THEN
		RAISE EXCEPTION 'cannot % on a Citus worker', action USING ERRCODE = 'object_not_in_prerequisite_state',
			DETAIL = 'Codecs are the same on every node of the cluster; the coordinator changes them on every node.',
			HINT = 'Run it on the coordinator.';
	END IF;
END
$$;

-- sync_codecs(): after citus_add_node(), give the new worker (and any worker that missed a change) every
-- codec of the coordinator, and drop the ones the coordinator does not have. Returns how many codecs each
-- worker now has. A superuser's call, as citus_add_node() is.
CREATE FUNCTION @extschema@.sync_codecs() RETURNS int
	LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF NOT coalesce((SELECT r.rolsuper FROM pg_roles r WHERE r.rolname = current_user), false) THEN
		RAISE EXCEPTION 'permission denied to sync codecs' USING ERRCODE = 'insufficient_privilege',
			HINT = 'A superuser calls it, after citus_add_node().';
	END IF;
	IF migration_ext.citus_node_role() IS DISTINCT FROM 'coordinator' THEN
		RAISE EXCEPTION 'sync_codecs() runs on the coordinator of a Citus cluster' USING ERRCODE = 'object_not_in_prerequisite_state',
			DETAIL = CASE WHEN migration_ext.citus_node_role() IS NULL THEN 'Citus is not installed in this database.'
						  ELSE 'This node is a Citus worker.' END;
	END IF;
	-- No codec changes while the full set travels: one sent alongside would be dropped by it.
	LOCK TABLE migration_ext.codec IN SHARE ROW EXCLUSIVE MODE;
	PERFORM migration_ext.propagate_codecs(NULL);
	RETURN (SELECT count(*) FROM migration_ext.codec);
END
$$;

-- A backfill walks and rewrites a table from this node, in batches of UPDATEs through Citus's planner,
-- which refuses them on a table whose shards are elsewhere (the codec calls in them are STABLE functions of
-- the row). Refused up front, and said plainly, for every kind of table Citus manages.
CREATE FUNCTION migration_ext.refuse_citus_table(relation regclass) RETURNS void
	LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	kind text;
BEGIN
	IF migration_ext.citus_node_role() IS NULL THEN
		RETURN;
	END IF;
	EXECUTE $q$SELECT CASE WHEN p.partmethod <> 'n' OR p.colocationid <> 0 AND p.repmodel <> 't' THEN 'distributed'
						  WHEN p.repmodel = 't' THEN 'reference'
						  ELSE 'Citus local' END
			   FROM pg_catalog.pg_dist_partition p WHERE p.logicalrelid = $1$q$
		INTO kind USING relation;
	IF kind IS NOT NULL THEN
		RAISE EXCEPTION 'cannot backfill %: it is a Citus % table', relation, kind
			USING ERRCODE = 'feature_not_supported',
				DETAIL = 'Backfills of tables that Citus manages (distributed, reference and Citus local tables) are not supported yet; codecs, is_legacy() and migrate_value() work on them, on every node.',
				HINT = 'Backfill the table before distributing it, or for the backfill turn it back into a plain table with undistribute_table().';
	END IF;
END
$$;
-- Only the extension calls these.
REVOKE EXECUTE ON FUNCTION migration_ext.citus_node_role(), migration_ext.citus_send_to_workers(text),
	migration_ext.codec_definitions(text[]), migration_ext.apply_codecs(jsonb, text[]),
	migration_ext.propagate_codecs(text[]), migration_ext.require_codec_authority(text),
	migration_ext.refuse_citus_table(regclass) FROM PUBLIC;

-- Codec changes go to every node of a Citus cluster; on a worker they come only from the coordinator.
CREATE OR REPLACE FUNCTION migration_ext.create_codec(actor regrole, name text, convert text, marker text, detect text, shape text)
	RETURNS void LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM migration_ext.require_codec_authority('create a codec');
	IF create_codec.name IS NULL OR btrim(create_codec.name) = '' THEN
		RAISE EXCEPTION 'codec name must not be empty' USING ERRCODE = 'invalid_parameter_value',
			HINT = 'Name the codec, for example create_codec(''token_plain'', ...).';
	END IF;
	IF octet_length(create_codec.name) >= 64 THEN
		RAISE EXCEPTION 'codec name "%" is too long', create_codec.name USING ERRCODE = 'name_too_long',
			DETAIL = 'Codec names are at most 63 bytes.';
	END IF;
	IF create_codec.convert IS NULL THEN
		RAISE EXCEPTION 'codec conversion must not be NULL' USING ERRCODE = 'null_value_not_allowed',
			HINT = 'Give a pipeline such as ''reverse'' or ''strip_prefix:v1:|base64_decode|add_prefix:v2:''.';
	END IF;
	IF create_codec.detect IS NULL THEN
		RAISE EXCEPTION 'codec detect mode must not be NULL' USING ERRCODE = 'null_value_not_allowed',
			HINT = 'Use ''converted'', ''absent'' or ''null''.';
	END IF;
	-- Codec names are the database's, as schema names are: taking one takes CREATE on the database.
	IF NOT has_database_privilege(actor, current_database(), 'CREATE') THEN
		RAISE EXCEPTION 'permission denied to create codec "%"', create_codec.name
			USING ERRCODE = 'insufficient_privilege',
				DETAIL = format('Role %s has no CREATE privilege on database %s.', actor, current_database()),
				HINT = 'Codec names are shared by the whole database, like schema names.';
	END IF;
	IF EXISTS (SELECT FROM migration_ext.codec c WHERE c.name = create_codec.name) THEN
		RAISE EXCEPTION 'codec "%" already exists', create_codec.name USING ERRCODE = 'duplicate_object',
			HINT = 'Drop it first with drop_codec(), or choose another name.';
	END IF;
	PERFORM migration_ext.codec_check(actor, create_codec.convert, create_codec.marker, create_codec.detect,
									  create_codec.shape);
	INSERT INTO migration_ext.codec (name, convert, marker, detect, shape, created_by)
	VALUES (create_codec.name, create_codec.convert, create_codec.marker, create_codec.detect, create_codec.shape,
			pg_get_userbyid(actor));
	PERFORM migration_ext.propagate_codecs(ARRAY[create_codec.name]);
END
$$;

CREATE OR REPLACE FUNCTION migration_ext.drop_codec(actor regrole, name text) RETURNS void LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	user_migration text;
	creator name;
BEGIN
	PERFORM migration_ext.require_codec_authority('drop a codec');
	SELECT c.created_by INTO creator FROM migration_ext.codec c WHERE c.name = drop_codec.name;
	IF FOUND AND NOT (coalesce((SELECT r.rolsuper FROM pg_roles r WHERE r.oid = actor), false)
					  OR coalesce((SELECT pg_has_role(actor, r.oid, 'USAGE') FROM pg_roles r WHERE r.rolname = creator), false)) THEN
		RAISE EXCEPTION 'must be a member of role % to drop codec "%"', creator, drop_codec.name
			USING ERRCODE = 'insufficient_privilege', DETAIL = format('Role %s created it.', creator);
	END IF;
	IF to_regclass('migration_ext.migration') IS NOT NULL THEN
		SELECT m.name INTO user_migration FROM migration_ext.migration m WHERE m.codec = drop_codec.name LIMIT 1;
		IF FOUND THEN
			RAISE EXCEPTION 'codec "%" is used by migration "%"', drop_codec.name, user_migration
				USING ERRCODE = 'dependent_objects_still_exist',
					HINT = 'A migration keeps its codec for its whole life, its contract included.';
		END IF;
	END IF;
	IF EXISTS (SELECT FROM migration_ext.backfill_job b WHERE b.codec = drop_codec.name
			   AND b.state NOT IN ('done', 'failed', 'cancelled')) THEN
		RAISE EXCEPTION 'codec "%" is used by an unfinished backfill job', drop_codec.name
			USING ERRCODE = 'dependent_objects_still_exist', HINT = 'Wait for the job, or cancel it; see backfill_status.';
	END IF;
	IF EXISTS (SELECT FROM pg_trigger t WHERE t.tgfoid = 'migration_ext.mirror_trigger()'::regprocedure
			   AND (pg_catalog.string_to_array(pg_catalog.encode(t.tgargs, 'escape'), '\000'))[3] = drop_codec.name) THEN
		RAISE EXCEPTION 'codec "%" is used by a mirror trigger', drop_codec.name
			USING ERRCODE = 'dependent_objects_still_exist', HINT = 'Drop the mirror first with drop_mirror().';
	END IF;
	DELETE FROM migration_ext.codec c WHERE c.name = drop_codec.name;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'codec "%" does not exist', drop_codec.name USING ERRCODE = 'undefined_object';
	END IF;
	PERFORM migration_ext.propagate_codecs(ARRAY[drop_codec.name]);
END
$$;

------------------------------------------------------------------------------------------------------
-- Jobs in parts: parallel => N over a partitioned table, and Citus distributed tables walked on the nodes
-- that hold their shards.
------------------------------------------------------------------------------------------------------
-- Added without defaults, then filled: a default given with ADD COLUMN would be kept apart as the
-- existing rows' "missing" value, which a fresh install does not have.
ALTER TABLE migration_ext.backfill_job ADD COLUMN parallel int, ADD COLUMN distributed boolean, ADD COLUMN nodes jsonb,
	ADD COLUMN parent_job bigint, ADD COLUMN parent_remote boolean, ADD COLUMN placements text;
UPDATE migration_ext.backfill_job SET parallel = 1, distributed = false, parent_remote = false;
ALTER TABLE migration_ext.backfill_job ALTER COLUMN parallel SET DEFAULT 1, ALTER COLUMN parallel SET NOT NULL,
	ALTER COLUMN distributed SET DEFAULT false, ALTER COLUMN distributed SET NOT NULL,
	ALTER COLUMN parent_remote SET DEFAULT false, ALTER COLUMN parent_remote SET NOT NULL,
	ADD CONSTRAINT backfill_job_parallel_check CHECK (parallel BETWEEN 1 AND 64);
DROP INDEX migration_ext.backfill_job_one_per_column;
CREATE UNIQUE INDEX backfill_job_one_per_column ON migration_ext.backfill_job (relation, column_name)
	WHERE state IN ('queued', 'running', 'throttled', 'paused', 'interrupted') AND parent_job IS NULL;
CREATE INDEX backfill_job_parts ON migration_ext.backfill_job (parent_job) WHERE parent_job IS NOT NULL;

DROP FUNCTION @extschema@.start_backfill(regclass, name, text, name, int, int, boolean, interval, interval, int, bigint,
										 regclass, double precision, boolean);
DROP FUNCTION @extschema@.start_backfill(text, name, text, name, int, int, boolean, interval, interval, int, bigint,
										 regclass, double precision, boolean);
DROP FUNCTION @extschema@.start_backfill(text, name, int, int, boolean, interval, interval, int, bigint,
										 double precision, boolean);
DROP FUNCTION migration_ext.start_migration_backfill(text, name, int, int, boolean, interval, interval, int, bigint,
													 double precision, boolean);
DROP FUNCTION migration_ext.start_migration_backfill(regrole, text, name, int, int, boolean, interval, interval, int,
													 bigint, double precision, boolean);
DROP FUNCTION migration_ext.start_backfill(regclass, name, text, name, int, int, boolean, text, boolean, interval,
										   interval, int, bigint, regclass, double precision, boolean);
DROP FUNCTION migration_ext.start_backfill(regrole, regclass, name, text, name, int, int, boolean, text, boolean,
										   interval, interval, int, bigint, regclass, double precision, boolean);
DROP FUNCTION migration_ext.refuse_citus_table(regclass);
DROP FUNCTION migration_ext.worker_begin(bigint);

CREATE FUNCTION migration_ext.citus_table_kind(relation regclass) RETURNS text
	LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	kind text;
BEGIN
	IF relation IS NULL OR migration_ext.citus_node_role() IS NULL THEN
		RETURN NULL;
	END IF;
	EXECUTE $q$SELECT CASE WHEN p.partmethod <> 'n' OR p.colocationid <> 0 AND p.repmodel <> 't' THEN 'distributed'
						  WHEN p.repmodel = 't' THEN 'reference'
						  ELSE 'Citus local' END
			   FROM pg_catalog.pg_dist_partition p WHERE p.logicalrelid = $1$q$
		INTO kind USING relation;
	RETURN kind;
END
$$;
CREATE FUNCTION migration_ext.refuse_citus_table(relation regclass, allow_distributed boolean) RETURNS void
	LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	kind text := migration_ext.citus_table_kind(relation);
BEGIN
	-- A distributed table's shards are walked on their nodes; a reference table is converted through
	-- the coordinator, in place (both: not as a table move).
	IF kind IN ('distributed', 'reference') AND allow_distributed THEN
		RETURN;
	END IF;
	IF kind IS NOT NULL THEN
		RAISE EXCEPTION 'cannot backfill %: it is a Citus % table', relation, kind
			USING ERRCODE = 'feature_not_supported',
				DETAIL = CASE WHEN kind IN ('distributed', 'reference')
							  THEN format('A table move between Citus tables is not supported; a column of a %s table is converted in place.', kind)
							  ELSE 'Backfills of Citus local tables are not supported; codecs, is_legacy() and migrate_value() work on them.' END,
				HINT = CASE WHEN kind IN ('distributed', 'reference')
							THEN 'Move the rows before Citus manages the tables, or convert the column in place.'
							ELSE 'Backfill the table before Citus manages it, or for the backfill turn it back into a plain table with undistribute_table().' END;
	END IF;
END
$$;
CREATE FUNCTION migration_ext.start_backfill(relation regclass, column_name name, codec text, source_column name,
											 batch_size int, max_rows_per_second int, throttle boolean,
											 migration text DEFAULT NULL, launch boolean DEFAULT true,
											 batch_time_target interval DEFAULT NULL,
											 max_replica_lag interval DEFAULT NULL, max_active_backends int DEFAULT NULL,
											 max_wal_bytes_per_second bigint DEFAULT NULL,
											 target_relation regclass DEFAULT NULL,
											 live_duty_cycle double precision DEFAULT NULL,
											 reuse_space boolean DEFAULT NULL, parallel int DEFAULT NULL)
	RETURNS bigint LANGUAGE c AS 'MODULE_PATHNAME', 'mext_as_invoker';

CREATE FUNCTION migration_ext.start_backfill(actor regrole, relation regclass, column_name name, codec text,
											 source_column name, batch_size int, max_rows_per_second int,
											 throttle boolean, migration text, launch boolean,
											 batch_time_target interval, max_replica_lag interval,
											 max_active_backends int, max_wal_bytes_per_second bigint,
											 target_relation regclass, live_duty_cycle double precision,
											 reuse_space boolean, parallel int)
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
	distributed boolean;
	reference boolean;
	in_parts boolean;
	parent migration_ext.backfill_job;
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
	PERFORM migration_ext.refuse_citus_table(relation, target_relation IS NULL);
	PERFORM migration_ext.refuse_citus_table(target_relation, false) WHERE target_relation IS NOT NULL;
	distributed := coalesce(migration_ext.citus_table_kind(relation) = 'distributed', false);
	-- A reference table is converted through the coordinator (every copy in each batch's transaction),
	-- in place, without space reuse (a round would vacuum only this node's copy).
	reference := coalesce(migration_ext.citus_table_kind(relation) = 'reference', false);
	IF (distributed OR reference) AND migration_ext.citus_node_role() IS DISTINCT FROM 'coordinator' THEN
		RAISE EXCEPTION 'cannot backfill %: a Citus table is backfilled from the coordinator', relation
			USING ERRCODE = 'object_not_in_prerequisite_state',
				DETAIL = 'This node is a Citus worker; the coordinator starts the parts on every node that holds shards.',
				HINT = 'Call start_backfill() on the coordinator.';
	END IF;
	IF reference AND source_column IS NOT NULL THEN
		RAISE EXCEPTION 'cannot backfill %: a Citus reference table is converted in place', relation
			USING ERRCODE = 'feature_not_supported', HINT = 'Leave source_column out.';
	END IF;
	IF parallel IS NOT NULL AND NOT parallel BETWEEN 1 AND 64 THEN
		RAISE EXCEPTION 'parallel must be between 1 and 64, not %', parallel USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF parallel > 1 AND kind <> 'p' AND NOT distributed THEN
		RAISE EXCEPTION 'parallel => % needs a partitioned table or a Citus distributed table', parallel
			USING ERRCODE = 'invalid_parameter_value',
				DETAIL = format('%s is one table: its rows are walked in key order by one worker.', relation),
				HINT = 'Leave parallel out.';
	END IF;
	-- Every worker of a job is the role's, its parts and (on this node, beside them) the parent that gathers
	-- them: one role's job may not take more than the role's share.
	IF coalesce(start_backfill.parallel, 1) + (CASE WHEN distributed THEN 0 ELSE 1 END)
	   > migration_ext.setting('migration_ext.max_jobs_per_role') AND start_backfill.parallel > 1
	   AND migration_ext.setting('migration_ext.max_jobs_per_role') > 0
	   AND NOT coalesce((SELECT r.rolsuper FROM pg_roles r WHERE r.oid = actor), false) THEN
		RAISE EXCEPTION 'parallel => % needs more workers than migration_ext.max_jobs_per_role = %', parallel,
			migration_ext.setting('migration_ext.max_jobs_per_role')::int USING ERRCODE = 'configuration_limit_exceeded',
			DETAIL = 'Each part of a job is a worker of the role that started it, and so is the job gathering them.',
			HINT = 'Ask for fewer parts, or ask a superuser to raise the limit.';
	END IF;
	IF parallel > 1 AND target_relation IS NOT NULL THEN
		RAISE EXCEPTION 'a table move is walked by one worker' USING ERRCODE = 'feature_not_supported',
			HINT = 'Leave parallel out.';
	END IF;
	-- A shard move under the job would take shards away from the nodes walking them: refused while it
	-- runs (the job's worker holds Citus's placement lock), and the job is refused while a move runs.
	IF distributed AND NOT migration_ext.hold_shard_moves(migration_ext.colocation_lock_id(relation), false) THEN
		RAISE EXCEPTION 'cannot backfill %: a shard move, copy or split of its colocation group is running', relation
			USING ERRCODE = 'object_in_use',
				DETAIL = 'The shards a backfill walks must stay on their nodes until it is done.',
				HINT = 'Wait for the rebalance to finish (citus_rebalance_status()), then start the backfill.';
	END IF;
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
		-- A move migration's tables were checked, and its column map resolved, when it was created.
		IF NOT EXISTS (SELECT FROM migration_ext.migration m WHERE m.name = start_backfill.migration
					   AND m.target_relation = start_backfill.target_relation) THEN
			PERFORM migration_ext.check_table_move(relation, target_relation, column_name, source_column);
		END IF;
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
	IF distributed THEN
		leaves := ARRAY[relation];
	ELSIF kind = 'p' THEN
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
	in_parts := distributed OR (coalesce(parallel, 1) > 1 AND cardinality(leaves) > 1);
	BEGIN
		INSERT INTO migration_ext.backfill_job (relation, column_name, source_column, target_relation, codec, migration, key_columns,
												partitions, batch_size, max_rows_per_second, throttle,
												rows_estimated, current_batch_size, batch_time_target_ms,
												max_replica_lag_s, max_active_backends, max_wal_bytes_per_second,
												live_duty_cycle, owner, reuse_space, size_at_start, parallel,
												distributed, placements)
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
				coalesce(reuse_space, current_setting('migration_ext.reuse_space')::boolean) AND NOT reference,
				CASE WHEN target_relation IS NULL AND NOT distributed AND NOT reference THEN migration_ext.tables_size(leaves) END,
				CASE WHEN in_parts THEN coalesce(parallel, 1) ELSE 1 END, distributed,
				CASE WHEN distributed THEN migration_ext.placement_digest(relation) END)
		RETURNING id INTO job;
	EXCEPTION WHEN unique_violation THEN
		RAISE EXCEPTION 'a backfill of %.% is already active', relation, quote_ident(column_name)
			USING ERRCODE = 'object_in_use',
				HINT = 'Wait for it, resume it, or cancel it: see backfill_status.';
	END;
	-- The parts: on this node's partitions (or the coordinator's shards), and on every Citus worker.
	IF in_parts THEN
		SELECT * INTO parent FROM migration_ext.backfill_job b WHERE b.id = job;
		IF distributed THEN
			PERFORM migration_ext.citus_send_to_workers(
				format('SELECT migration_ext.start_node_parts(%s, %L)', job, to_jsonb(parent)));
			IF cardinality(migration_ext.local_shards(relation)) > 0 THEN
				PERFORM migration_ext.start_parts(parent, migration_ext.local_shards(relation), false, launch);
			END IF;
		ELSE
			PERFORM migration_ext.start_parts(parent, leaves, false, launch);
		END IF;
	END IF;
	-- launch => false leaves the job queued for a caller that runs worker_step() itself (the isolation tests).
	IF launch THEN
		PERFORM migration_ext.launch_job(job);
	END IF;
	RETURN job;
END
$$;
CREATE FUNCTION @extschema@.start_backfill(relation regclass, column_name name, codec text,
										   source_column name DEFAULT NULL, batch_size int DEFAULT NULL,
										   max_rows_per_second int DEFAULT NULL, throttle boolean DEFAULT true,
										   batch_time_target interval DEFAULT NULL,
										   max_replica_lag interval DEFAULT NULL, max_active_backends int DEFAULT NULL,
										   max_wal_bytes_per_second bigint DEFAULT NULL,
										   target_relation regclass DEFAULT NULL,
										   live_duty_cycle double precision DEFAULT NULL,
										   reuse_space boolean DEFAULT NULL, parallel int DEFAULT NULL)
	RETURNS bigint LANGUAGE sql
	RETURN migration_ext.start_backfill(relation, column_name, codec, source_column, batch_size, max_rows_per_second,
										throttle, NULL, true, batch_time_target, max_replica_lag, max_active_backends,
										max_wal_bytes_per_second, target_relation, live_duty_cycle, reuse_space,
										parallel);

CREATE FUNCTION migration_ext.start_migration_backfill(migration text, source_column name, batch_size int,
														max_rows_per_second int, throttle boolean,
														batch_time_target interval, max_replica_lag interval,
														max_active_backends int, max_wal_bytes_per_second bigint,
														live_duty_cycle double precision, reuse_space boolean,
														parallel int)
	RETURNS bigint LANGUAGE c AS 'MODULE_PATHNAME', 'mext_as_invoker';

CREATE FUNCTION migration_ext.start_migration_backfill(actor regrole, migration text, source_column name,
														batch_size int, max_rows_per_second int, throttle boolean,
														batch_time_target interval, max_replica_lag interval,
														max_active_backends int, max_wal_bytes_per_second bigint,
														live_duty_cycle double precision, reuse_space boolean,
														parallel int)
	RETURNS bigint LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	m migration_ext.migration := migration_ext.require_migration(migration, true);
	new_job bigint;
BEGIN
	IF m.target_relation IS NOT NULL THEN
		PERFORM migration_ext.require_move_owner(actor, m, 'sweep the move');
	END IF;
	IF m.phase NOT IN ('producing', 'backfilling') THEN
		RAISE EXCEPTION 'cannot backfill migration "%" in phase %', migration, m.phase
			USING ERRCODE = 'object_not_in_prerequisite_state',
				DETAIL = 'The backfill starts once writers produce the new format: after the point of no return.',
				HINT = format('advance_migration(%L) until it is producing.', migration);
	END IF;
	new_job := migration_ext.start_backfill(actor, m.relation, m.column_name, m.codec,
											coalesce(source_column, m.source_column), batch_size, max_rows_per_second,
											throttle, migration, true, batch_time_target, max_replica_lag,
											max_active_backends, max_wal_bytes_per_second, m.target_relation,
											live_duty_cycle, reuse_space, parallel);
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
										   reuse_space boolean DEFAULT NULL, parallel int DEFAULT NULL)
	RETURNS bigint LANGUAGE sql
	RETURN migration_ext.start_migration_backfill(migration, source_column, batch_size, max_rows_per_second, throttle,
												   batch_time_target, max_replica_lag, max_active_backends,
												   max_wal_bytes_per_second, live_duty_cycle, reuse_space, parallel);

CREATE FUNCTION @extschema@.start_backfill(relation text, column_name name, codec text,
										   source_column name DEFAULT NULL, batch_size int DEFAULT NULL,
										   max_rows_per_second int DEFAULT NULL, throttle boolean DEFAULT true,
										   batch_time_target interval DEFAULT NULL,
										   max_replica_lag interval DEFAULT NULL, max_active_backends int DEFAULT NULL,
										   max_wal_bytes_per_second bigint DEFAULT NULL,
										   target_relation regclass DEFAULT NULL,
										   live_duty_cycle double precision DEFAULT NULL,
										   reuse_space boolean DEFAULT NULL, parallel int DEFAULT NULL)
	RETURNS bigint LANGUAGE sql
	RETURN migration_ext.start_backfill(relation::regclass, column_name, codec, source_column, batch_size,
										max_rows_per_second, throttle, NULL, true, batch_time_target, max_replica_lag,
										max_active_backends, max_wal_bytes_per_second, target_relation,
										live_duty_cycle, reuse_space, parallel);

CREATE FUNCTION migration_ext.worker_begin(job bigint, OUT batch_size int, OUT max_rows_per_second int,
										   OUT throttle boolean, OUT gathers boolean)
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
	gathers := j.distributed OR (j.parallel > 1 AND EXISTS (SELECT FROM migration_ext.backfill_job p
															 WHERE p.parent_job = job AND NOT p.parent_remote));
	RETURN NEXT;
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
CREATE OR REPLACE FUNCTION migration_ext.pause_backfill(actor regrole, job bigint) RETURNS void
	LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	j migration_ext.backfill_job := migration_ext.require_job(actor, job);
	job_state text;
BEGIN
	PERFORM migration_ext.refuse_part(j, 'pause');
	job_state := migration_ext.unfinished_job_state(j, 'paused');
	UPDATE migration_ext.backfill_job b SET requested = 'pause', updated_at = now(),
		-- Nothing will run it to see the request: an interrupted job, or one queued without a worker.
		state = CASE WHEN job_state = 'interrupted' OR (job_state = 'queued' AND b.pid IS NULL)
					 THEN 'paused' ELSE b.state END
	WHERE b.id = job;
	PERFORM migration_ext.relay_to_parts(job);
END
$$;
CREATE OR REPLACE FUNCTION migration_ext.alter_backfill(actor regrole, job bigint, max_rows_per_second int,
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
	PERFORM migration_ext.refuse_part(j, 'alter');
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
CREATE OR REPLACE FUNCTION migration_ext.resume_backfill(actor regrole, job bigint) RETURNS void
	LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	j migration_ext.backfill_job := migration_ext.require_job(actor, job);
BEGIN
	PERFORM migration_ext.refuse_part(j, 'resume');
	IF migration_ext.effective_state(j) = 'failed' THEN
		RAISE EXCEPTION 'backfill job % failed, it cannot be resumed', job
			USING ERRCODE = 'object_not_in_prerequisite_state', DETAIL = j.last_error,
				HINT = 'Fix the cause, then start a new backfill: converted rows are skipped.';
	END IF;
	PERFORM migration_ext.unfinished_job_state(j, 'resumed');
	IF j.requested = 'cancel' THEN
		RAISE EXCEPTION 'backfill job % is being cancelled', job USING ERRCODE = 'object_not_in_prerequisite_state';
	END IF;
	IF migration_ext.worker_alive(j.pid) AND j.home = migration_ext.job_home() THEN
		-- Shown as running at once, so that wait_backfill() does not return on the old 'paused'.
		UPDATE migration_ext.backfill_job b SET requested = NULL, updated_at = now(),
			state = CASE WHEN b.state = 'paused' THEN 'running' ELSE b.state END,
			throttle_reason = CASE WHEN b.state = 'paused' THEN NULL ELSE b.throttle_reason END
		WHERE b.id = job;
	ELSE
		SELECT * INTO j FROM migration_ext.backfill_job b WHERE b.id = job FOR UPDATE; -- see resume_interrupted()
		IF migration_ext.worker_alive(j.pid) AND j.home = migration_ext.job_home() THEN
			RETURN; -- resumed meanwhile by the launcher or another session
		END IF;
		PERFORM migration_ext.check_job_limits(actor);
		-- A restored job is taken over here: it runs in this database from now on.
		UPDATE migration_ext.backfill_job b SET requested = NULL, updated_at = now(), state = 'queued', pid = NULL,
			home = migration_ext.job_home(), owner = actor WHERE b.id = job;
		PERFORM migration_ext.launch_job(job);
	END IF;
END
$$;
CREATE OR REPLACE FUNCTION migration_ext.cancel_backfill(actor regrole, job bigint) RETURNS void
	LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	j migration_ext.backfill_job := migration_ext.require_job(actor, job);
	job_state text := migration_ext.effective_state(j);
BEGIN
	PERFORM migration_ext.refuse_part(j, 'cancel');
	IF job_state IN ('done', 'failed', 'cancelled') THEN
		RAISE EXCEPTION 'backfill job % is already %', job, job_state USING ERRCODE = 'object_not_in_prerequisite_state';
	END IF;
	IF migration_ext.worker_alive(j.pid) AND j.home = migration_ext.job_home() THEN
		UPDATE migration_ext.backfill_job b SET requested = 'cancel', updated_at = now() WHERE b.id = job;
		PERFORM migration_ext.relay_to_parts(job);
	ELSIF (j.distributed OR j.parallel > 1) AND j.home = migration_ext.job_home() THEN
		-- A job in parts is cancelled once its parts have stopped: its worker, started again, sees to it.
		UPDATE migration_ext.backfill_job b SET requested = 'cancel', updated_at = now() WHERE b.id = job;
		PERFORM migration_ext.relay_to_parts(job);
		PERFORM migration_ext.launch_job(job);
	ELSE
		UPDATE migration_ext.backfill_job b SET state = 'cancelled', requested = NULL, finished_at = now(),
			updated_at = now() WHERE b.id = job;
	END IF;
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
CREATE OR REPLACE FUNCTION migration_ext.swap_function(actor regrole, fn regprocedure, body text, note text, language name,
											 caller_search_path text)
	RETURNS int LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	-- On a Citus coordinator, a swap of a function Citus distributes goes to every node over one connection
	-- per node, which Citus allows only if the transaction's distributed queries (a read check, a verify
	-- scan) did the same.
	PERFORM set_config('citus.multi_shard_modify_mode', 'sequential', true)
	WHERE migration_ext.citus_node_role() = 'coordinator';
	PERFORM migration_ext.require_frozen(fn);
	PERFORM migration_ext.require_function_owner(actor, fn);
	IF body IS NULL THEN
		RAISE EXCEPTION 'function body must not be NULL' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	PERFORM migration_ext.check_swap_order(fn);
	PERFORM migration_ext.replace_body(fn, body, language, caller_search_path);
	PERFORM migration_ext.recheck_reader(actor, fn, caller_search_path);
	RETURN migration_ext.record_version(actor, fn, 'swap', note);
END
$$;
CREATE OR REPLACE FUNCTION migration_ext.revert_function(actor regrole, fn regprocedure, to_version int, caller_search_path text)
	RETURNS int LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	current_row migration_ext.function_version;
	target_row migration_ext.function_version;
BEGIN
	-- On a Citus coordinator, a swap of a function Citus distributes goes to every node over one connection
	-- per node, which Citus allows only if the transaction's distributed queries (a read check, a verify
	-- scan) did the same.
	PERFORM set_config('citus.multi_shard_modify_mode', 'sequential', true)
	WHERE migration_ext.citus_node_role() = 'coordinator';
	PERFORM migration_ext.require_frozen(fn);
	PERFORM migration_ext.require_function_owner(actor, fn);
	SELECT v.* INTO current_row FROM migration_ext.function_version v
	JOIN migration_ext.frozen_function f ON f.fn = v.fn AND f.current_version = v.version
	WHERE v.fn = revert_function.fn;
	IF to_version IS NULL THEN
		IF current_row.previous_version IS NULL THEN
			RAISE EXCEPTION 'function % has no earlier version to revert to', fn
				USING ERRCODE = 'object_not_in_prerequisite_state',
					DETAIL = format('Its current version %s holds the definition it had when it was frozen.', current_row.version);
		END IF;
		to_version := current_row.previous_version;
	END IF;
	SELECT v.* INTO target_row FROM migration_ext.function_version v
	WHERE v.fn = revert_function.fn AND v.version = to_version;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'function % has no version %', fn, to_version USING ERRCODE = 'invalid_parameter_value',
			HINT = 'See function_history for its versions.';
	END IF;
	PERFORM migration_ext.restore_version(fn, to_version, caller_search_path);
	PERFORM migration_ext.recheck_reader(actor, fn, caller_search_path);
	RETURN migration_ext.record_version(actor, fn, 'revert', format('reverted to version %s', to_version), NULL,
										target_row.previous_version);
END
$$;
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
	-- On a Citus coordinator, a swap of a function Citus distributes goes to every node over one connection
	-- per node, which Citus allows only if the transaction's distributed queries (a read check, a verify
	-- scan) did the same.
	PERFORM set_config('citus.multi_shard_modify_mode', 'sequential', true)
	WHERE migration_ext.citus_node_role() = 'coordinator';
	PERFORM migration_ext.require_table_owner(actor, m.relation, 'advance its migration');
	IF m.target_relation IS NOT NULL THEN
		PERFORM migration_ext.require_move_owner(actor, m, 'advance the move');
	END IF;
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
		-- A move: V2 becomes the source of truth, and its writes land back in V1 until the contract.
		IF m.target_relation IS NOT NULL THEN
			PERFORM migration_ext.create_move_mirror(m, false);
			INSERT INTO migration_ext.migration_event (migration, event, detail, by_role)
			VALUES (name, 'mirror', format('writes to %s land in %s', m.target_relation, m.relation), pg_get_userbyid(actor));
		END IF;
	ELSIF m.phase = 'backfilling' AND m.target_relation IS NOT NULL THEN
		IF m.job IS NOT NULL AND (SELECT migration_ext.effective_state(j) FROM migration_ext.backfill_job j WHERE j.id = m.job)
								 IS DISTINCT FROM 'done' THEN
			RAISE EXCEPTION 'cannot advance migration "%": its sweep (job %) is not done', name, m.job
				USING ERRCODE = 'object_not_in_prerequisite_state',
					HINT = format('See backfill_status; wait_backfill(%s) waits for it.', m.job);
		END IF;
		PERFORM migration_ext.verify_table_move(actor, m);
	ELSIF m.phase = 'converted' AND m.target_relation IS NOT NULL THEN
		PERFORM migration_ext.require_no_lock_held(m.relation, 'contract the migration');
		PERFORM migration_ext.require_no_lock_held(m.target_relation, 'contract the migration');
		SELECT * INTO contract FROM migration_ext.move_contract_statements(m);
		PERFORM migration_ext.run_online(table_owner, contract.statements, format('contract of migration %s', name));
		UPDATE migration_ext.migration x SET constraint_name = contract.constraint_name WHERE x.name = m.name;
		INSERT INTO migration_ext.migration_event (migration, event, detail, by_role)
		VALUES (name, 'drop_mirror', format('%s <-> %s', m.relation, m.target_relation), pg_get_userbyid(actor));
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
CREATE OR REPLACE FUNCTION migration_ext.retreat_migration(actor regrole, name text, caller_search_path text) RETURNS text
	LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	m migration_ext.migration := migration_ext.require_migration(name, true);
	previous_phase text := migration_ext.phase_after(name, m.phase, 'retreat');
	table_owner oid := (SELECT c.relowner FROM pg_class c WHERE c.oid = m.relation);
	s migration_ext.planned_swap;
BEGIN
	-- On a Citus coordinator, a swap of a function Citus distributes goes to every node over one connection
	-- per node, which Citus allows only if the transaction's distributed queries (a read check, a verify
	-- scan) did the same.
	PERFORM set_config('citus.multi_shard_modify_mode', 'sequential', true)
	WHERE migration_ext.citus_node_role() = 'coordinator';
	PERFORM migration_ext.require_table_owner(actor, m.relation, 'retreat its migration');
	IF m.target_relation IS NOT NULL THEN
		PERFORM migration_ext.require_move_owner(actor, m, 'retreat the move');
	END IF;
	PERFORM migration_ext.require_function_owner(actor, p.fn) FROM migration_ext.planned_swap p
	WHERE p.migration = name;
	IF m.phase = 'tolerant' THEN
		FOR s IN SELECT * FROM migration_ext.planned_swap p WHERE p.migration = name AND p.applied_version IS NOT NULL
				 ORDER BY p.ordinal DESC LOOP
			PERFORM migration_ext.restore_version(s.fn, s.restore_version, caller_search_path);
			PERFORM migration_ext.record_version(actor, s.fn, 'revert', format('migration %s: retreat', name), name, NULL);
			UPDATE migration_ext.planned_swap p SET applied_version = NULL, applied_at = NULL, applied_lsn = NULL
			WHERE p.migration = s.migration AND p.fn = s.fn;
			INSERT INTO migration_ext.migration_event (migration, event, fn, role, detail, by_role)
			VALUES (name, 'unswap', s.fn, s.role, format('restored version %s', s.restore_version), pg_get_userbyid(actor));
		END LOOP;
	ELSIF m.phase = 'contracted' AND m.target_relation IS NOT NULL THEN
		RAISE EXCEPTION 'cannot retreat migration "%": the contract of a table move ended its mirrors', name
			USING ERRCODE = 'object_not_in_prerequisite_state',
				DETAIL = format('Writes since the contract reached %s only; %s no longer holds every row.',
								m.target_relation, m.relation);
	ELSIF m.phase = 'contracted' THEN
		-- A brief ACCESS EXCLUSIVE with no scan, in this transaction so that it lands with the phase
		-- change or not at all; requested with migration_ext.ddl_lock_timeout and retried, as the contract's.
		PERFORM migration_ext.run_briefly(table_owner, CASE WHEN m.constraint_name IS NOT NULL
			THEN format('ALTER TABLE %s DROP CONSTRAINT IF EXISTS %I', m.relation, m.constraint_name)
			ELSE format('ALTER TABLE %s ALTER COLUMN %I DROP NOT NULL', m.relation, m.column_name) END,
			format('retreat of migration %s', name));
		UPDATE migration_ext.migration x SET constraint_name = NULL WHERE x.name = m.name;
	END IF;
	UPDATE migration_ext.migration x SET phase = previous_phase WHERE x.name = m.name;
	INSERT INTO migration_ext.migration_event (migration, event, from_phase, to_phase, by_role)
	VALUES (name, 'retreat', m.phase, previous_phase, pg_get_userbyid(actor));
	RETURN previous_phase;
END
$$;
CREATE OR REPLACE FUNCTION migration_ext.settle_state(migration text, OUT settled boolean, OUT waiting_for text)
	LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	m migration_ext.migration := migration_ext.require_migration(migration);
	swapped_at timestamptz;
	swapped_lsn pg_lsn;
	old_transactions text;
	lagging text;
BEGIN
	IF m.phase = 'planned' THEN
		settled := false;
		waiting_for := 'the reader swaps (advance_migration applies them)';
		RETURN;
	END IF;
	IF m.phase <> 'tolerant' THEN
		settled := true;
		RETURN;
	END IF;
	SELECT max(s.applied_at), max(s.applied_lsn) INTO swapped_at, swapped_lsn
	FROM migration_ext.planned_swap s WHERE s.migration = settle_state.migration AND s.role = 'reader';
	IF swapped_at IS NULL THEN
		settled := true;
		RETURN;
	END IF;
	PERFORM pg_stat_clear_snapshot();
	SELECT string_agg(format('pid %s (transaction open since %s)', a.pid, a.xact_start), ', ' ORDER BY a.xact_start)
	INTO old_transactions
	FROM pg_stat_activity a
	WHERE a.xact_start < swapped_at AND a.pid <> pg_backend_pid()
	  -- Any process that may run a reader, custom background workers included; not the ones that never
	  -- call user functions (autovacuum, WAL senders) nor this extension's own workers.
	  AND a.backend_type NOT IN ('autovacuum worker', 'autovacuum launcher', 'walsender', 'migration_ext backfill',
								 'migration_ext online ddl',
								 'migration_ext launcher', 'migration_ext resumer');
	SELECT string_agg(format('prepared transaction %L', p.gid), ', ') INTO lagging
	FROM pg_prepared_xacts p WHERE p.prepared < swapped_at;
	old_transactions := concat_ws(', ', old_transactions, lagging);
	-- On a Citus coordinator, every worker's old transactions too.
	old_transactions := concat_ws(', ', nullif(old_transactions, ''),
								  migration_ext.workers_waiting_for('old_transactions',
																	extract(epoch FROM swapped_at)::text));
	SELECT string_agg(format('standby %s replayed %s < %s', coalesce(nullif(r.application_name, ''), r.client_addr::text, r.pid::text),
							 coalesce(r.replay_lsn::text, 'nothing'), swapped_lsn), ', ')
	INTO lagging
	FROM pg_stat_replication r
	WHERE swapped_lsn IS NOT NULL AND migration_ext.replays(r) AND (r.replay_lsn IS NULL OR r.replay_lsn < swapped_lsn);
	waiting_for := nullif(concat_ws(', ', nullif(old_transactions, ''), lagging), '');
	settled := waiting_for IS NULL;
END
$$;
CREATE OR REPLACE FUNCTION migration_ext.wait_standbys_past_commit(migration text) RETURNS void
	LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	wait_ms int := migration_ext.setting('migration_ext.settle_wait')::int;
	deadline timestamptz := clock_timestamp() + make_interval(secs => wait_ms / 1000.0);
	lagging text := nullif(migration_ext.node_standbys_behind(wait_ms), '');
BEGIN
	-- On a Citus coordinator, every worker's standbys too, past a position of that worker after the swaps.
	lagging := nullif(concat_ws(', ', lagging, migration_ext.workers_waiting_for('standbys',
		greatest(0, extract(epoch FROM deadline - clock_timestamp()) * 1000)::int::text)), '');
	IF lagging IS NOT NULL THEN
		RAISE EXCEPTION 'cannot advance migration "%": the reader swaps have not settled', migration
			USING ERRCODE = 'object_not_in_prerequisite_state',
				DETAIL = format('Still waiting for: %s (a position after the swaps'' commit).', lagging),
				HINT = 'Wait until the standbys catch up, then advance again.';
	END IF;
END
$$;
CREATE FUNCTION migration_ext.node_old_transactions(since timestamptz) RETURNS text
	LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	waiting text;
BEGIN
	PERFORM pg_stat_clear_snapshot();
	SELECT string_agg(format('pid %s (transaction open since %s)', a.pid, a.xact_start), ', ' ORDER BY a.xact_start)
	INTO waiting
	FROM pg_stat_activity a
	WHERE a.xact_start < since AND a.pid <> pg_backend_pid()
	  AND a.backend_type NOT IN ('autovacuum worker', 'autovacuum launcher', 'walsender', 'migration_ext backfill',
								 'migration_ext online ddl', 'migration_ext launcher', 'migration_ext resumer');
	RETURN coalesce(concat_ws(', ', waiting, (SELECT string_agg(format('prepared transaction %L', p.gid), ', ')
											  FROM pg_prepared_xacts p WHERE p.prepared < since)), '');
END
$$;
CREATE FUNCTION migration_ext.node_standbys_behind(wait_ms int) RETURNS text
	LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	target pg_lsn := migration_ext.flushed_insert_lsn();
	deadline timestamptz := clock_timestamp() + make_interval(secs => wait_ms / 1000.0);
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
	RETURN coalesce(lagging, '');
END
$$;
CREATE FUNCTION migration_ext.workers_waiting_for(check_name text, arg text) RETURNS text
	LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	command text := CASE check_name
		WHEN 'old_transactions' THEN format('SELECT migration_ext.node_old_transactions(pg_catalog.to_timestamp(%s))',
											arg::double precision)
		WHEN 'standbys' THEN format('SELECT migration_ext.node_standbys_behind(%s)', arg::int) END;
	waiting text;
BEGIN
	IF command IS NULL THEN
		RAISE EXCEPTION 'unknown settle check "%"', check_name USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF migration_ext.citus_node_role() IS DISTINCT FROM 'coordinator' THEN
		RETURN NULL;
	END IF;
	EXECUTE $q$SELECT string_agg(format('node %s:%s: %s', w.nodename, w.nodeport,
										CASE WHEN w.success THEN w.result ELSE 'not reachable (' || w.result || ')' END),
								 ', ' ORDER BY w.nodename, w.nodeport)
			   FROM pg_catalog.run_command_on_workers($1) w WHERE NOT w.success OR w.result <> ''$q$
		INTO waiting USING command;
	RETURN waiting;
END
$$;
CREATE FUNCTION migration_ext.codec_digest() RETURNS text
	LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
	SELECT md5(coalesce(jsonb_agg(jsonb_build_array(c.name, c.convert, c.marker, c.detect, c.shape,
													extract(epoch FROM c.created_at), c.created_by) ORDER BY c.name)::text, ''))
	FROM migration_ext.codec c;
END;
CREATE FUNCTION migration_ext.sync_new_workers() RETURNS int
	LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	differing int;
BEGIN
	IF migration_ext.citus_node_role() IS DISTINCT FROM 'coordinator' THEN
		RETURN 0;
	END IF;
	EXECUTE 'SELECT count(*) FROM pg_catalog.run_command_on_workers($1) w
			 WHERE w.success AND w.result IS DISTINCT FROM $2'
		INTO differing USING 'SELECT migration_ext.codec_digest()', migration_ext.codec_digest();
	IF differing > 0 THEN
		LOCK TABLE migration_ext.codec IN SHARE ROW EXCLUSIVE MODE;
		PERFORM migration_ext.propagate_codecs(NULL);
	END IF;
	RETURN differing;
END
$$;
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
		   j.reclaims, j.rows_reclaimed, j.space_reclaimed, j.reclaim_note,
		   j.parallel, j.parent_job, j.nodes
	FROM migration_ext.backfill_job j
	-- Once a row, so that the state, the percentage and the ETA agree even if the worker exits meanwhile.
	-- OFFSET 0 keeps the planner from pulling the subquery up into the three expressions that use it.
	CROSS JOIN LATERAL (SELECT migration_ext.effective_state(j) AS state OFFSET 0) e;
CREATE PROCEDURE migration_ext.nap(seconds double precision)
	LANGUAGE c AS 'MODULE_PATHNAME', 'mext_nap';

CREATE OR REPLACE PROCEDURE @extschema@.await_backfill(job bigint, timeout interval DEFAULT NULL, progress boolean DEFAULT NULL,
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
		CALL migration_ext.nap(0.2);
	END LOOP;
	IF reported THEN
		RAISE NOTICE '%', migration_ext.progress_line(job);
	END IF;
END
$$;
-- The shards of a distributed table that this node holds (shards are tables of their own). Citus names a
-- shard schema-qualified only outside the search_path: the table's schema is put on it for the lookup.
CREATE FUNCTION migration_ext.local_shards(relation regclass) RETURNS regclass[]
	LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	names text[];
	shards regclass[];
BEGIN
	EXECUTE $q$SELECT array_agg(pg_catalog.shard_name(s.logicalrelid, s.shardid) ORDER BY s.shardid)
			   FROM pg_catalog.pg_dist_shard s JOIN pg_catalog.pg_dist_placement p ON p.shardid = s.shardid
			   WHERE s.logicalrelid = $1 AND p.groupid = (SELECT g.groupid FROM pg_catalog.pg_dist_local_group g)$q$
		INTO names USING relation;
	PERFORM set_config('search_path', format('pg_catalog, %I, pg_temp',
											 (SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
											  WHERE c.oid = relation)), true);
	SELECT array_agg(pg_catalog.to_regclass(n) ORDER BY o) INTO shards FROM unnest(names) WITH ORDINALITY u(n, o);
	IF array_position(shards, NULL) IS NOT NULL THEN
		RAISE EXCEPTION 'shard % of % is not on this node', names[array_position(shards, NULL)], relation
			USING ERRCODE = 'undefined_table', DETAIL = 'Citus''s metadata places it here.';
	END IF;
	RETURN coalesce(shards, '{}');
END
$$;

-- Shard moves of a distributed table's colocation group are refused while a job walks it: a job's parent
-- holds, for its whole life, the lock Citus takes to move, copy or split a placement (shard_moves.cpp).
-- With `for_session` false, only tries it for this transaction: false when a move runs now.
CREATE FUNCTION migration_ext.hold_shard_moves(colocation bigint, for_session boolean) RETURNS boolean
	LANGUAGE c STRICT AS 'MODULE_PATHNAME', 'mext_hold_shard_moves';

-- Where a distributed table's shards are: every placement's shard and node group, as one digest.
CREATE FUNCTION migration_ext.placement_digest(relation regclass) RETURNS text
	LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	digest text;
BEGIN
	EXECUTE $q$SELECT md5(string_agg(s.shardid || ':' || p.groupid, ',' ORDER BY s.shardid, p.groupid))
			   FROM pg_catalog.pg_dist_shard s JOIN pg_catalog.pg_dist_placement p ON p.shardid = s.shardid
			   WHERE s.logicalrelid = $1$q$
		INTO digest USING relation;
	RETURN digest;
END
$$;

-- The parent of a distributed job, each time it takes Citus's placement lock (at its start, after a pause,
-- after a restart): a shard moved while nobody held the lock would leave a part walking a copy that is
-- gone or no longer read, and the new copy unwalked. Then the job fails, saying so, and its parts are
-- cancelled; false is returned.
CREATE FUNCTION migration_ext.check_placements(job bigint) RETURNS boolean
	LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	j migration_ext.backfill_job;
BEGIN
	SELECT * INTO j FROM migration_ext.backfill_job b WHERE b.id = job FOR UPDATE;
	IF NOT FOUND OR NOT j.distributed OR j.placements IS NULL
	   OR j.placements = migration_ext.placement_digest(j.relation) THEN
		RETURN true;
	END IF;
	UPDATE migration_ext.backfill_job b SET requested = 'cancel' WHERE b.id = job;
	PERFORM migration_ext.relay_to_parts(job);
	UPDATE migration_ext.backfill_job b SET state = 'failed', requested = NULL, pid = NULL, throttle_reason = NULL,
		finished_at = now(), updated_at = now(),
		last_error = format('shards of %s moved while the job did not hold them (paused or restarting): its parts were cancelled; start a new backfill, converted rows are skipped', j.relation)
	WHERE b.id = job;
	RETURN false;
END
$$;

-- The id under which Citus locks the placements of a distributed table: its colocation group.
CREATE FUNCTION migration_ext.colocation_lock_id(relation regclass) RETURNS bigint
	LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	colocation bigint;
BEGIN
	EXECUTE 'SELECT p.colocationid FROM pg_catalog.pg_dist_partition p WHERE p.logicalrelid = $1'
		INTO colocation USING relation;
	RETURN CASE WHEN coalesce(colocation, 0) <> 0 THEN colocation ELSE relation::oid::bigint END;
END
$$;

-- Creates the parts of `parent` on this node: up to parent.parallel jobs over `leaves` (the largest first,
-- dealt out in turn, so that the parts are of a size), each with the parent's settings; launches them.
-- `remote`: the parent is on the Citus coordinator, not here.
CREATE FUNCTION migration_ext.start_parts(parent migration_ext.backfill_job, leaves regclass[], remote boolean,
										  launch boolean)
	RETURNS int LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	part_count int := least(parent.parallel, cardinality(leaves));
	part_leaves regclass[];
	part bigint;
BEGIN
	FOR i IN 1 .. part_count LOOP
		SELECT array_agg(l.leaf ORDER BY l.leaf::text) INTO part_leaves
		FROM (SELECT leaf, row_number() OVER (ORDER BY migration_ext.row_estimate(leaf) DESC, leaf::text) - 1 AS n
			  FROM unnest(leaves) leaf) l
		WHERE l.n % part_count = i - 1;
		INSERT INTO migration_ext.backfill_job (relation, column_name, source_column, codec, migration, key_columns,
												partitions, batch_size, max_rows_per_second, throttle,
												rows_estimated, current_batch_size, batch_time_target_ms,
												max_replica_lag_s, max_active_backends, max_wal_bytes_per_second,
												live_duty_cycle, owner, reuse_space, size_at_start, parent_job,
												parent_remote)
		SELECT parent.relation, parent.column_name, parent.source_column, parent.codec, parent.migration,
			   parent.key_columns, part_leaves, parent.batch_size, parent.max_rows_per_second, parent.throttle,
			   (SELECT coalesce(sum(migration_ext.row_estimate(leaf)), 0)::bigint FROM unnest(part_leaves) leaf),
			   parent.batch_size, parent.batch_time_target_ms, parent.max_replica_lag_s,
			   parent.max_active_backends, parent.max_wal_bytes_per_second, parent.live_duty_cycle, parent.owner,
			   parent.reuse_space, migration_ext.tables_size(part_leaves), parent.id, remote
		RETURNING id INTO part;
		IF launch THEN
			PERFORM migration_ext.launch_job(part);
		END IF;
	END LOOP;
	RETURN part_count;
END
$$;

-- On a node of a Citus cluster, sent by the coordinator's start_backfill() in its transaction: the parts
-- of the coordinator's job `parent` over this node's shards. Everything is checked again here, against
-- this node's catalog: the role that started the job must be able to act as the table's owner here too.
-- Not executable by PUBLIC, and refused to any role but a superuser.
CREATE FUNCTION migration_ext.start_node_parts(parent bigint, job jsonb) RETURNS int
	LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	j migration_ext.backfill_job := jsonb_populate_record(NULL::migration_ext.backfill_job, job);
	shards regclass[];
BEGIN
	IF NOT coalesce((SELECT r.rolsuper FROM pg_roles r WHERE r.rolname = current_user), false) THEN
		RAISE EXCEPTION 'permission denied to start the parts of a distributed backfill'
			USING ERRCODE = 'insufficient_privilege',
				HINT = 'Start the backfill with start_backfill() on the Citus coordinator.';
	END IF;
	IF migration_ext.citus_table_kind(j.relation) IS DISTINCT FROM 'distributed' THEN
		RAISE EXCEPTION '% is not a Citus distributed table on this node', j.relation
			USING ERRCODE = 'wrong_object_type';
	END IF;
	PERFORM migration_ext.require_table_owner(j.owner, j.relation, 'backfill it');
	PERFORM migration_ext.checked_column(j.relation, j.column_name);
	PERFORM migration_ext.require_codec(j.codec);
	shards := migration_ext.local_shards(j.relation);
	IF cardinality(shards) = 0 THEN
		RETURN 0;
	END IF;
	j.id := parent;
	RETURN migration_ext.start_parts(j, shards, migration_ext.citus_node_role() = 'worker', true);
END
$$;

-- The parts here of job `parent` (`remote`: a parent on the coordinator) follow it: its settings, and
-- its request — 'pause' and 'cancel' are passed on as an operator's would be; with no request, a part
-- that is paused or has no worker is started again. Returns what the parts here add up to.
CREATE FUNCTION migration_ext.follow_parent(parent bigint, remote boolean, settings jsonb) RETURNS jsonb
	LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	p migration_ext.backfill_job := jsonb_populate_record(NULL::migration_ext.backfill_job, settings);
	part migration_ext.backfill_job;
	part_state text;
BEGIN
	IF NOT coalesce((SELECT r.rolsuper FROM pg_roles r WHERE r.rolname = current_user), false) THEN
		RAISE EXCEPTION 'permission denied to steer the parts of a backfill' USING ERRCODE = 'insufficient_privilege';
	END IF;
	UPDATE migration_ext.backfill_job b SET max_rows_per_second = p.max_rows_per_second, throttle = p.throttle,
		batch_time_target_ms = p.batch_time_target_ms, max_replica_lag_s = p.max_replica_lag_s,
		max_active_backends = p.max_active_backends, max_wal_bytes_per_second = p.max_wal_bytes_per_second,
		live_duty_cycle = p.live_duty_cycle, reuse_space = p.reuse_space, updated_at = now()
	WHERE b.parent_job = parent AND b.parent_remote = remote AND b.state NOT IN ('done', 'failed', 'cancelled')
	  AND (b.max_rows_per_second, b.throttle, b.batch_time_target_ms, b.max_replica_lag_s, b.max_active_backends,
		   b.max_wal_bytes_per_second, b.live_duty_cycle, b.reuse_space)
		  IS DISTINCT FROM (p.max_rows_per_second, p.throttle, p.batch_time_target_ms, p.max_replica_lag_s,
							p.max_active_backends, p.max_wal_bytes_per_second, p.live_duty_cycle, p.reuse_space);
	FOR part IN SELECT * FROM migration_ext.backfill_job b WHERE b.parent_job = parent AND b.parent_remote = remote
				AND b.state NOT IN ('done', 'failed', 'cancelled') ORDER BY b.id FOR UPDATE LOOP
		part_state := migration_ext.effective_state(part);
		CONTINUE WHEN part_state IN ('done', 'failed', 'cancelled');
		IF p.requested = 'cancel' THEN
			UPDATE migration_ext.backfill_job b
			SET requested = CASE WHEN migration_ext.worker_alive(b.pid) THEN 'cancel' END,
				state = CASE WHEN migration_ext.worker_alive(b.pid) THEN b.state ELSE 'cancelled' END,
				finished_at = CASE WHEN migration_ext.worker_alive(b.pid) THEN NULL ELSE now() END, updated_at = now()
			WHERE b.id = part.id AND (b.requested IS DISTINCT FROM 'cancel' OR NOT migration_ext.worker_alive(b.pid));
		ELSIF p.requested = 'pause' THEN
			UPDATE migration_ext.backfill_job b SET requested = 'pause', updated_at = now(),
				state = CASE WHEN migration_ext.worker_alive(b.pid) THEN b.state ELSE 'paused' END
			WHERE b.id = part.id AND (b.requested IS DISTINCT FROM 'pause' OR NOT migration_ext.worker_alive(b.pid));
		-- (A part left queued because no worker could start, for the cluster's or the role's limit, is tried
		-- again every few seconds, not at every round.)
		ELSIF part.requested = 'pause' OR part_state IN ('paused', 'interrupted')
			  OR (part_state = 'queued' AND NOT migration_ext.worker_alive(part.pid)
				  AND part.updated_at < now() - interval '5 seconds') THEN
			UPDATE migration_ext.backfill_job b SET requested = NULL, state = 'queued', pid = NULL, updated_at = now()
			WHERE b.id = part.id AND NOT migration_ext.worker_alive(b.pid);
			IF FOUND THEN
				PERFORM migration_ext.launch_job(part.id);
			ELSE
				UPDATE migration_ext.backfill_job b SET requested = NULL, updated_at = now() WHERE b.id = part.id;
			END IF;
		END IF;
	END LOOP;
	RETURN migration_ext.parts_summary(parent, remote);
END
$$;

-- What the parts here of job `parent` add up to: how many are in each state, their rows, rate and
-- estimate, and a failed part's error or a throttled part's reason.
CREATE FUNCTION migration_ext.parts_summary(parent bigint, remote boolean) RETURNS jsonb
	LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
	SELECT jsonb_build_object(
		'parts', count(*),
		'states', coalesce((SELECT jsonb_object_agg(s.state, s.n)
							FROM (SELECT migration_ext.effective_state(b) AS state, count(*) AS n
								  FROM migration_ext.backfill_job b
								  WHERE b.parent_job = parent AND b.parent_remote = remote GROUP BY 1) s), '{}'),
		'rows_estimated', coalesce(sum(greatest(b.rows_estimated, b.rows_scanned)), 0),
		'rows_scanned', coalesce(sum(b.rows_scanned), 0), 'rows_converted', coalesce(sum(b.rows_converted), 0),
		'rows_skipped', coalesce(sum(b.rows_skipped), 0), 'conflicts', coalesce(sum(b.conflicts), 0),
		'batches', coalesce(sum(b.batches), 0),
		'rate', coalesce(sum(b.rate) FILTER (WHERE b.state IN ('running', 'throttled')), 0),
		'reclaims', coalesce(sum(b.reclaims), 0), 'rows_reclaimed', coalesce(sum(b.rows_reclaimed), 0),
		'space_reclaimed', coalesce(sum(b.space_reclaimed), 0),
		'last_error', (SELECT format('part job %s: %s', f.id, f.last_error) FROM migration_ext.backfill_job f
					   WHERE f.parent_job = parent AND f.parent_remote = remote AND f.state = 'failed'
					   ORDER BY f.id LIMIT 1),
		'throttle_reason', (SELECT t.throttle_reason FROM migration_ext.backfill_job t
							WHERE t.parent_job = parent AND t.parent_remote = remote AND t.state = 'throttled'
							ORDER BY t.id LIMIT 1))
	FROM migration_ext.backfill_job b
	WHERE b.parent_job = parent AND b.parent_remote = remote;
END;

-- The parent's worker, twice a second: every node's parts follow the parent and report; the parent's
-- row gets their sums and a state. Returns 'stop' once the parent has stopped moving (done, failed,
-- cancelled, paused), else 'continue'. A node that does not answer keeps its last report and is named
-- in the parent's warning; its parts go on (and its launcher resumes them after a restart).
CREATE FUNCTION migration_ext.worker_gather(job bigint) RETURNS text
	LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	j migration_ext.backfill_job;
	settings jsonb;
	reports jsonb;
	unreachable text;
	r record;
	total jsonb := '{}';
	states jsonb;
	active bigint;
	new_state text;
BEGIN
	SELECT * INTO j FROM migration_ext.backfill_job b WHERE b.id = job;
	IF NOT FOUND OR j.state IN ('done', 'failed', 'cancelled') THEN
		RETURN 'stop';
	END IF;
	settings := to_jsonb(j);
	-- This node's own parts (all of them without Citus; the coordinator's shards with it).
	reports := jsonb_build_object(CASE WHEN j.distributed THEN 'coordinator' ELSE 'local' END,
								  migration_ext.follow_parent(job, false, settings));
	IF j.distributed THEN
		FOR r IN EXECUTE 'SELECT nodename || '':'' || nodeport AS node, success, result
						  FROM pg_catalog.run_command_on_workers($1)'
			USING format('SELECT migration_ext.follow_parent(%s, true, %L)', job, settings) LOOP
			IF r.success THEN
				reports := reports || jsonb_build_object(r.node, r.result::jsonb);
			ELSE
				-- Its last report stands while it does not answer (a node removed from the cluster is
				-- no longer asked, and its report goes).
				unreachable := concat_ws('; ', unreachable, format('node %s: %s', r.node, r.result));
				IF j.nodes ? r.node THEN
					reports := reports || jsonb_build_object(r.node, j.nodes -> r.node);
				END IF;
			END IF;
		END LOOP;
	END IF;
	-- Nodes without parts report zeros: leave them out.
	SELECT coalesce(jsonb_object_agg(n.key, n.value), '{}') INTO reports
	FROM jsonb_each(reports) n WHERE (n.value ->> 'parts')::int > 0;
	SELECT jsonb_object_agg(k, v) INTO total
	FROM (SELECT k, sum((n.value ->> k)::numeric) AS v
		  FROM jsonb_each(reports) n,
			   unnest(ARRAY['parts', 'rows_estimated', 'rows_scanned', 'rows_converted', 'rows_skipped', 'conflicts',
							'batches', 'rate', 'reclaims', 'rows_reclaimed', 'space_reclaimed']) k
		  GROUP BY k) s;
	SELECT coalesce(jsonb_object_agg(s.state, s.n), '{}') INTO states
	FROM (SELECT st.key AS state, sum(st.value::bigint) AS n
		  FROM jsonb_each(reports) n, jsonb_each_text(n.value -> 'states') st GROUP BY st.key) s;
	active := coalesce((states ->> 'queued')::bigint, 0) + coalesce((states ->> 'running')::bigint, 0)
			  + coalesce((states ->> 'throttled')::bigint, 0) + coalesce((states ->> 'interrupted')::bigint, 0);
	new_state := CASE
		WHEN coalesce((total ->> 'parts')::bigint, 0) = 0 THEN 'running'
		WHEN active > 0 AND coalesce((states ->> 'throttled')::bigint, 0) = active THEN 'throttled'
		WHEN active > 0 THEN 'running'
		WHEN coalesce((states ->> 'paused')::bigint, 0) > 0 AND j.requested = 'cancel' THEN 'running'
		WHEN coalesce((states ->> 'paused')::bigint, 0) > 0 THEN CASE WHEN j.requested = 'pause' THEN 'paused' ELSE 'running' END
		WHEN coalesce((states ->> 'failed')::bigint, 0) > 0 THEN 'failed'
		WHEN coalesce((states ->> 'cancelled')::bigint, 0) > 0 THEN 'cancelled'
		ELSE 'done' END;
	UPDATE migration_ext.backfill_job b SET
		nodes = reports, state = new_state, updated_at = now(),
		rows_estimated = coalesce((total ->> 'rows_estimated')::bigint, b.rows_estimated),
		rows_scanned = coalesce((total ->> 'rows_scanned')::bigint, 0),
		rows_converted = coalesce((total ->> 'rows_converted')::bigint, 0),
		rows_skipped = coalesce((total ->> 'rows_skipped')::bigint, 0),
		conflicts = coalesce((total ->> 'conflicts')::bigint, 0), batches = coalesce((total ->> 'batches')::bigint, 0),
		rate = (total ->> 'rate')::double precision, reclaims = coalesce((total ->> 'reclaims')::int, 0),
		rows_reclaimed = coalesce((total ->> 'rows_reclaimed')::bigint, 0),
		space_reclaimed = coalesce((total ->> 'space_reclaimed')::bigint, 0),
		warning = CASE WHEN unreachable IS NOT NULL THEN 'unreachable: ' || unreachable END,
		throttle_reason = CASE WHEN new_state = 'throttled'
							   THEN (SELECT n.key || ': ' || (n.value ->> 'throttle_reason') FROM jsonb_each(reports) n
									 WHERE n.value ->> 'throttle_reason' IS NOT NULL ORDER BY n.key LIMIT 1)
							   WHEN new_state = 'paused' THEN 'paused by operator' END,
		last_error = (SELECT n.key || ', ' || (n.value ->> 'last_error') FROM jsonb_each(reports) n
					  WHERE n.value ->> 'last_error' IS NOT NULL ORDER BY n.key LIMIT 1),
		requested = CASE WHEN new_state IN ('done', 'failed', 'cancelled') THEN NULL ELSE b.requested END,
		pid = CASE WHEN new_state IN ('done', 'failed', 'cancelled', 'paused') THEN NULL ELSE b.pid END,
		finished_at = CASE WHEN new_state IN ('done', 'failed', 'cancelled') THEN now() END,
		size_at_end = CASE WHEN new_state = 'done' AND NOT b.distributed THEN migration_ext.tables_size(b.partitions) END
	WHERE b.id = job;
	RETURN CASE WHEN new_state IN ('done', 'failed', 'cancelled', 'paused') THEN 'stop' ELSE 'continue' END;
END
$$;

-- A control of the parent reaches its parts at once, in the caller's transaction (the parent's worker
-- would pass it on within half a second, but a parent paused or interrupted has none running).
CREATE FUNCTION migration_ext.relay_to_parts(job bigint) RETURNS void
	LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	j migration_ext.backfill_job;
BEGIN
	SELECT * INTO j FROM migration_ext.backfill_job b WHERE b.id = job;
	IF NOT FOUND OR NOT (j.distributed OR j.parallel > 1) THEN
		RETURN;
	END IF;
	-- Resuming is the parent worker's: it starts the parts again once it runs.
	IF j.requested IS NULL AND j.state NOT IN ('cancelled') THEN
		RETURN;
	END IF;
	PERFORM migration_ext.follow_parent(job, false, to_jsonb(j) || jsonb_build_object('requested',
		CASE WHEN j.state = 'cancelled' THEN 'cancel' ELSE j.requested END));
	IF j.distributed THEN
		PERFORM migration_ext.citus_send_to_workers(format('SELECT migration_ext.follow_parent(%s, true, %L)', job,
			to_jsonb(j) || jsonb_build_object('requested', CASE WHEN j.state = 'cancelled' THEN 'cancel' ELSE j.requested END)));
	END IF;
END
$$;

-- A part is steered through its parent.
CREATE FUNCTION migration_ext.refuse_part(j migration_ext.backfill_job, action text) RETURNS void
	LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF j.parent_job IS NOT NULL THEN
		RAISE EXCEPTION 'backfill job % is a part of job %', j.id, j.parent_job
			USING ERRCODE = 'object_not_in_prerequisite_state',
				DETAIL = CASE WHEN j.parent_remote THEN 'It walks this node''s shards for a job of the Citus coordinator.'
							  ELSE 'It walks some of the partitions for that job.' END,
				HINT = format('%s_backfill(%s)%s steers it with the other parts.', action, j.parent_job,
							  CASE WHEN j.parent_remote THEN ' on the coordinator' ELSE '' END);
	END IF;
END
$$;

REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA migration_ext FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
	migration_ext.start_backfill(regclass, name, text, name, int, int, boolean, text, boolean, interval, interval, int,
								 bigint, regclass, double precision, boolean, int),
	migration_ext.start_migration_backfill(text, name, int, int, boolean, interval, interval, int, bigint,
										   double precision, boolean, int),
	migration_ext.tables_size(regclass[]),
	migration_ext.swap_function(regprocedure, text, text, name, text),
	migration_ext.revert_function(regprocedure, int, text),
	migration_ext.advance_migration(text, text, text, int),
	migration_ext.retreat_migration(text, text),
	migration_ext.record_out_of_band(regprocedure, text),
	migration_ext.ddl_progress(text),
	migration_ext.replays(pg_stat_replication),
	migration_ext.is_legacy_by_definition(text, text, text, text, text),
	migration_ext.job_home(),
	migration_ext.may_act_on(regrole, regclass),
	migration_ext.may_read_function(regprocedure),
	migration_ext.require_job(regrole, bigint),
	migration_ext.effective_state(migration_ext.backfill_job),
	migration_ext.worker_alive(int),
	migration_ext.xid_is_mine(xid),
	migration_ext.in_transaction_block(),
	migration_ext.is_phase(text),
	migration_ext.setting(text),
	migration_ext.stopped_state(bigint),
	migration_ext.progress_line(bigint),
	migration_ext.wants_progress(boolean),
	migration_ext.progress_every(),
	migration_ext.settle_state(text),
	migration_ext.require_migration(text, boolean),
	migration_ext.classify(text, text),
	migration_ext.checked_column(regclass, name),
	migration_ext.cast_converted(text, anyelement, text[]),
	migration_ext.require_codec(text),
	migration_ext.row_estimate(regclass),
	migration_ext.mirror_trigger(),
	migration_ext.move_mirror(),
	migration_ext.move_swept(text),
	migration_ext.mirror_name(name, name),
	migration_ext.unflushed_repairs(text),
	migration_ext.repaired_by_reads(text),
	migration_ext.estimated_rows(regclass),
	migration_ext.node_old_transactions(timestamptz),
	migration_ext.workers_waiting_for(text, text),
	migration_ext.citus_node_role()
TO PUBLIC;
