------------------------------------------------------------------------------------------------------
-- The operator's controls of a backfill job: pause, alter, resume, cancel, wait, and its status.
------------------------------------------------------------------------------------------------------

CREATE FUNCTION @extschema@.pause_backfill(job bigint) RETURNS void
	LANGUAGE c AS 'MODULE_PATHNAME', 'mext_as_invoker';

CREATE FUNCTION migration_ext.pause_backfill(actor regrole, job bigint) RETURNS void
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

-- Changes the thresholds of a job while it runs; the worker applies them before its next batch.
-- NULL leaves a setting as it is; max_rows_per_second => 0 removes the rate cap.
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

CREATE FUNCTION @extschema@.resume_backfill(job bigint) RETURNS void
	LANGUAGE c AS 'MODULE_PATHNAME', 'mext_as_invoker';

-- A job is resumed in the name of the role that resumes it: its workers count against that role's limit.
CREATE FUNCTION migration_ext.resume_backfill(actor regrole, job bigint) RETURNS void
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

CREATE FUNCTION @extschema@.cancel_backfill(job bigint) RETURNS void
	LANGUAGE c AS 'MODULE_PATHNAME', 'mext_as_invoker';

CREATE FUNCTION migration_ext.cancel_backfill(actor regrole, job bigint) RETURNS void
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

CREATE FUNCTION migration_ext.xid_is_mine(xid) RETURNS boolean
	LANGUAGE c STRICT VOLATILE AS 'MODULE_PATHNAME', 'mext_xid_is_mine';

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

-- Sleeps without a snapshot when CALLed between the COMMITs of a procedure (transaction_facts.cpp).
CREATE PROCEDURE migration_ext.nap(seconds double precision)
	LANGUAGE c AS 'MODULE_PATHNAME', 'mext_nap';

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
		CALL migration_ext.nap(0.2);
	END LOOP;
	IF reported THEN
		RAISE NOTICE '%', migration_ext.progress_line(job);
	END IF;
END
$$;

CREATE VIEW @extschema@.backfill_status WITH (security_invoker = true) AS
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

-- One line of progress for an operator who waits: percent, rows, rate, ETA and what holds the worker back.
CREATE FUNCTION migration_ext.progress_line(job bigint) RETURNS text
	LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
	RETURN (SELECT format('backfill job %s: %s%% (%s of %s rows), %s rows/s, ETA %s, %s', s.job, s.percent_done,
						  s.rows_scanned, s.rows_estimated, coalesce(round(s.rows_per_second), 0),
						  coalesce(to_char(date_trunc('second', s.eta), 'HH24:MI:SS'), 'unknown'),
						  CASE WHEN s.throttle_reason IS NOT NULL AND s.state IN ('running', 'throttled')
							   THEN 'throttled: ' || s.throttle_reason ELSE s.state END)
			FROM @extschema@.backfill_status s WHERE s.job = progress_line.job);

-- Run by the launcher's per-database helper after a restart and every migration_ext.resume_interval:
-- every job that should run but has no live worker (interrupted, or queued without one) gets a new one,
-- which continues from its checkpoint. A paused job stays paused. A launch that fails leaves its job
-- queued with the reason and goes on with the others.
CREATE FUNCTION migration_ext.resume_interrupted() RETURNS int
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
