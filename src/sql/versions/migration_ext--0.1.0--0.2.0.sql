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

CREATE OR REPLACE FUNCTION migration_ext.start_backfill(actor regrole, relation regclass, column_name name, codec text,
											 source_column name, batch_size int, max_rows_per_second int,
											 throttle boolean, migration text, launch boolean,
											 batch_time_target interval, max_replica_lag interval,
											 max_active_backends int, max_wal_bytes_per_second bigint,
											 target_relation regclass, live_duty_cycle double precision)
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
		PERFORM migration_ext.checked_text_column(relation, column_name);
		IF source_column IS NOT NULL THEN
			PERFORM migration_ext.checked_text_column(relation, source_column);
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
												live_duty_cycle, owner)
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
				coalesce(live_duty_cycle, migration_ext.setting('migration_ext.live_duty_cycle')), actor)
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
