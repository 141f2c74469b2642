------------------------------------------------------------------------------------------------------
-- The backfill worker's side: the steps a background worker calls around each batch.
------------------------------------------------------------------------------------------------------

-- One step of a worker, in the worker's transaction: obey a pause or cancel request, or run one batch
-- and commit its checkpoint with it. Returns what the worker should do next.
CREATE FUNCTION migration_ext.worker_step(job bigint, batch_size int, rate double precision, OUT action text, OUT scanned bigint,
										  OUT converted bigint, OUT conflicts bigint, OUT blocked int)
	LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	j migration_ext.backfill_job;
	leaf regclass;
	key_names text[];
	key_types text[];
	statement text;
	r record;
	api text := quote_ident('@extschema@');
BEGIN
	scanned := 0; converted := 0; conflicts := 0; blocked := 0;
	SELECT * INTO j FROM migration_ext.backfill_job b WHERE b.id = job FOR UPDATE;
	IF NOT FOUND OR j.state IN ('done', 'failed', 'cancelled') THEN
		action := 'stop';
		RETURN;
	END IF;
	IF j.requested = 'cancel' THEN
		UPDATE migration_ext.backfill_job b SET state = 'cancelled', requested = NULL, finished_at = now(),
			updated_at = now(), throttle_reason = NULL WHERE b.id = job;
		action := 'stop';
		RETURN;
	END IF;
	-- A paused job gives its worker (and its slot) back; resume_backfill() starts a new one.
	IF j.requested = 'pause' THEN
		UPDATE migration_ext.backfill_job b SET state = 'paused', throttle_reason = 'paused by operator', pid = NULL,
			updated_at = now() WHERE b.id = job;
		action := 'stop';
		RETURN;
	END IF;
	leaf := j.partitions[j.partition_index];
	IF NOT EXISTS (SELECT FROM pg_class c WHERE c.oid = leaf) THEN
		RAISE EXCEPTION 'table % was dropped during the backfill', coalesce(j.relation::text, leaf::text)
			USING ERRCODE = 'undefined_table';
	END IF;
	-- The key's names quoted and its types as the catalog spells them now (format_type quotes them).
	SELECT array_agg(quote_ident(u.k) ORDER BY u.o), array_agg(format_type(a.atttypid, a.atttypmod) ORDER BY u.o)
	INTO key_names, key_types
	FROM unnest(j.key_columns) WITH ORDINALITY u(k, o)
	JOIN pg_attribute a ON a.attrelid = leaf AND a.attname = u.k AND a.attnum > 0 AND NOT a.attisdropped;
	IF coalesce(array_length(key_types, 1), 0) <> array_length(j.key_columns, 1) THEN
		RAISE EXCEPTION 'the key (%) of % changed during the backfill', array_to_string(j.key_columns, ', '), leaf
			USING ERRCODE = 'object_not_in_prerequisite_state';
	END IF;
	IF j.target_relation IS NULL THEN
		statement := migration_ext.batch_statement(leaf::text, key_names, key_types, quote_ident(j.column_name),
												   quote_ident(j.source_column), api, j.last_key IS NOT NULL);
	ELSE
		statement := migration_ext.copy_statement(
			leaf::text, key_names, key_types, quote_ident(j.column_name),
			quote_ident(coalesce(j.source_column, j.column_name)), api,
			j.last_key IS NOT NULL, j.target_relation::text,
			(SELECT array_agg(quote_ident(a.attname) ORDER BY a.attnum) FROM pg_attribute a
			 WHERE a.attrelid = j.target_relation AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
			   AND (a.attname = j.column_name
					OR EXISTS (SELECT FROM pg_attribute v WHERE v.attrelid = leaf AND v.attname = a.attname
							   AND v.attnum > 0 AND NOT v.attisdropped))));
	END IF;
	-- As the owner of the job's table (a partition's batch too): what the starter was allowed to act as.
	SELECT * INTO r FROM migration_ext.run_batch((SELECT c.relowner FROM pg_class c WHERE c.oid = j.relation), statement,
												 j.codec, batch_size, j.last_key);
	scanned := r.scanned; converted := r.converted; conflicts := r.conflicts;
	IF j.throttle AND r.converted > 0 THEN
		-- Still holding the batch's row locks: is a live session waiting on them right now?
		SELECT count(*) INTO blocked FROM pg_stat_activity a WHERE pg_backend_pid() = ANY (pg_blocking_pids(a.pid));
	END IF;
	IF r.scanned = 0 THEN
		IF j.partition_index < array_length(j.partitions, 1) THEN
			UPDATE migration_ext.backfill_job b SET partition_index = j.partition_index + 1, last_key = NULL,
				updated_at = now() WHERE b.id = job;
			action := 'continue';
		ELSE
			UPDATE migration_ext.backfill_job b SET state = 'done', finished_at = now(), updated_at = now(),
				throttle_reason = NULL, requested = NULL WHERE b.id = job;
			action := 'stop';
		END IF;
		RETURN;
	END IF;
	UPDATE migration_ext.backfill_job b SET
		last_key = r.last_key,
		rows_scanned = b.rows_scanned + r.scanned,
		rows_converted = b.rows_converted + r.converted,
		rows_skipped = b.rows_skipped + (r.scanned - r.legacy_seen),
		conflicts = b.conflicts + r.conflicts,
		batches = b.batches + 1,
		current_batch_size = worker_step.batch_size,
		rate = coalesce(worker_step.rate, b.rate),
		lock_retries = 0,
		state = CASE WHEN b.state IN ('queued', 'paused', 'interrupted') THEN 'running' ELSE b.state END,
		updated_at = now()
	WHERE b.id = job;
	action := 'continue';
END
$$;

-- A worker taking a job: it claims the job and a worker slot for its whole life (claim_job), so a job
-- never has two workers and no more than migration_ext.max_jobs run, and records its pid. The role that
-- started the job must still be one that may act as the table's owner. Returns the batch size and rate
-- cap to start with, or nothing.
CREATE FUNCTION migration_ext.worker_begin(job bigint, OUT batch_size int, OUT max_rows_per_second int,
										   OUT throttle boolean)
	RETURNS SETOF record LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	j migration_ext.backfill_job;
	claim text;
	role_limit int := migration_ext.setting_int('migration_ext.max_jobs_per_role', 4);
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
