-- migration_ext 0.1.0 -> 0.2.0, by ALTER EXTENSION migration_ext UPDATE. Jobs in flight keep running.
\echo Use "ALTER EXTENSION migration_ext UPDATE" to load this file. \quit

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
