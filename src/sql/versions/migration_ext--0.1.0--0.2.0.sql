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
CREATE OR REPLACE FUNCTION migration_ext.setting_int(name text, fallback bigint) RETURNS bigint
	LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
	RETURN coalesce(nullif(current_setting(name, true), '')::bigint, fallback);
CREATE OR REPLACE FUNCTION migration_ext.setting_ms(name text, fallback double precision) RETURNS double precision
	LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
	RETURN coalesce(extract(epoch FROM nullif(current_setting(name, true), '')::interval)::double precision * 1000,
					fallback);
CREATE OR REPLACE FUNCTION migration_ext.setting_real(name text, fallback double precision) RETURNS double precision
	LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
	RETURN coalesce(nullif(current_setting(name, true), '')::double precision, fallback);
CREATE OR REPLACE FUNCTION @extschema@.start_backfill(relation regclass, column_name name, codec text,
										   source_column name DEFAULT NULL, batch_size int DEFAULT NULL,
										   max_rows_per_second int DEFAULT NULL, throttle boolean DEFAULT true,
										   batch_time_target interval DEFAULT NULL,
										   max_replica_lag interval DEFAULT NULL, max_active_backends int DEFAULT NULL,
										   max_wal_bytes_per_second bigint DEFAULT NULL,
										   target_relation regclass DEFAULT NULL,
										   live_duty_cycle double precision DEFAULT NULL)
	RETURNS bigint LANGUAGE sql
	RETURN migration_ext.start_backfill(relation, column_name, codec, source_column, batch_size, max_rows_per_second,
										throttle, NULL, true, batch_time_target, max_replica_lag, max_active_backends,
										max_wal_bytes_per_second, target_relation, live_duty_cycle);
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
		   j.created_at, j.started_at, j.updated_at, j.finished_at
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
