------------------------------------------------------------------------------------------------------
-- The backfill worker's side: the steps a background worker calls around each batch.
------------------------------------------------------------------------------------------------------

-- One step of a worker, in the worker's transaction: obey a pause or cancel request, or run one batch
-- as the owner of the job's table and write its checkpoint, which commits with it (batch_step.cpp).
-- Workers run the step in their own process; this is the same step as SQL.
CREATE FUNCTION migration_ext.worker_step(job bigint, batch_size int, rate double precision, OUT action text,
										  OUT scanned bigint, OUT converted bigint, OUT conflicts bigint,
										  OUT blocked int)
	LANGUAGE c AS 'MODULE_PATHNAME', 'mext_worker_step';

-- A worker taking a job: it claims the job and a worker slot for its whole life (claim_job), so a job
-- never has two workers and no more than migration_ext.max_jobs run, and records its pid. The role that
-- started the job must still be one that may act as the table's owner. Returns the batch size and rate
-- cap to start with, or nothing.
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

-- The server's own load signals, as aggregates only (the worker reads them as a superuser).
CREATE FUNCTION migration_ext.server_signals(relations regclass[], OUT wal_bytes numeric, OUT active_backends int,
											 OUT vacuum_on_table boolean, OUT transactions numeric)
	LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM pg_stat_clear_snapshot();
	wal_bytes := CASE WHEN pg_is_in_recovery() THEN 0 ELSE pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0') END;
	SELECT count(*) INTO active_backends FROM pg_stat_activity a
	WHERE a.state = 'active' AND a.backend_type = 'client backend' AND a.pid <> pg_backend_pid();
	SELECT EXISTS (SELECT FROM pg_stat_progress_vacuum v WHERE v.relid = ANY (relations)) INTO vacuum_on_table;
	SELECT coalesce(sum(d.xact_commit + d.xact_rollback), 0) INTO transactions FROM pg_stat_database d;
END
$$;

-- Every connected standby and the WAL position it has replayed (NULL: not reported yet).
CREATE FUNCTION migration_ext.standby_positions() RETURNS TABLE (name text, replay_bytes numeric)
	LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$
	SELECT coalesce(nullif(r.application_name, ''), r.pid::text), pg_wal_lsn_diff(r.replay_lsn, '0/0')
	FROM pg_stat_replication r ORDER BY r.pid
$$;

-- What a worker looks at before a batch: the operator's request, the job's current thresholds (which
-- alter_backfill() may have changed) and the server's signals.
CREATE FUNCTION migration_ext.worker_poll(job bigint, OUT requested text, OUT throttle boolean,
										  OUT max_rows_per_second int, OUT batch_time_target_ms double precision,
										  OUT max_replica_lag_s double precision, OUT max_active_backends int,
										  OUT max_wal_bytes_per_second bigint, OUT wal_bytes numeric,
										  OUT active_backends int, OUT vacuum_on_table boolean, OUT transactions numeric,
										  OUT live_duty_cycle double precision)
	LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	j migration_ext.backfill_job;
	signals record;
BEGIN
	SELECT * INTO j FROM migration_ext.backfill_job b WHERE b.id = job;
	requested := j.requested;
	throttle := j.throttle;
	max_rows_per_second := j.max_rows_per_second;
	batch_time_target_ms := j.batch_time_target_ms;
	max_replica_lag_s := j.max_replica_lag_s;
	max_active_backends := j.max_active_backends;
	max_wal_bytes_per_second := j.max_wal_bytes_per_second;
	live_duty_cycle := j.live_duty_cycle;
	SELECT * INTO signals FROM migration_ext.server_signals(j.partitions);
	wal_bytes := signals.wal_bytes;
	active_backends := signals.active_backends;
	vacuum_on_table := signals.vacuum_on_table;
	transactions := signals.transactions;
END
$$;

-- Progress a worker publishes between batches: its rate and why it is waiting, if it is.
CREATE FUNCTION migration_ext.worker_note(job bigint, rate double precision, throttle_reason text, warning text,
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

-- A batch failed. Lock timeouts, deadlocks and cancelled statements are retried (the worker backs off and halves the batch);
-- anything else, or a lock conflict that does not clear, fails the job with the range and the cause.
CREATE FUNCTION migration_ext.worker_failed(job bigint, error_code text, message text, max_retries int)
	RETURNS text LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	j migration_ext.backfill_job;
BEGIN
	SELECT * INTO j FROM migration_ext.backfill_job b WHERE b.id = job FOR UPDATE;
	-- lock timeout, deadlock, serialization failure, a cancelled statement (pg_cancel_backend)
	IF error_code IN ('55P03', '40P01', '40001', '57014') AND j.lock_retries < max_retries THEN
		UPDATE migration_ext.backfill_job b SET lock_retries = b.lock_retries + 1, updated_at = now(),
			state = 'throttled', throttle_reason = format('batch retried after: %s (retry %s of %s)', message,
														  b.lock_retries + 1, max_retries)
		WHERE b.id = job;
		RETURN 'retry';
	END IF;
	UPDATE migration_ext.backfill_job b SET state = 'failed', finished_at = now(), updated_at = now(),
		last_error = format('%s (SQLSTATE %s) in the batch after key %s', message, error_code,
							coalesce(b.last_key::text, '(start)')),
		error_key = coalesce(b.last_key, '{}'),
		throttle_reason = NULL
	WHERE b.id = job;
	RETURN 'stop';
END
$$;
