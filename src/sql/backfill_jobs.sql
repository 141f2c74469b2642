------------------------------------------------------------------------------------------------------
-- The backfill: jobs, the batch a worker runs, and the operator's controls.
------------------------------------------------------------------------------------------------------

-- This database of this cluster; a job restored (or copied) elsewhere sees another (job_claim.cpp).
CREATE FUNCTION migration_ext.job_home() RETURNS text
	LANGUAGE c STABLE AS 'MODULE_PATHNAME', 'mext_job_home';

CREATE TABLE migration_ext.backfill_job (
	id                  bigserial PRIMARY KEY,
	relation            regclass NOT NULL,
	column_name         name NOT NULL,
	source_column       name,
	target_relation     regclass,                  -- a table move: converted rows are copied here
	codec               text NOT NULL,
	migration           text,
	key_columns         name[] NOT NULL,               -- their types are read from the catalog at each batch
	partitions          regclass[] NOT NULL,       -- the leaves walked, in order
	partition_index     int NOT NULL DEFAULT 1,
	last_key            text[],                    -- checkpoint inside partitions[partition_index]
	batch_size          int NOT NULL CHECK (batch_size > 0),
	max_rows_per_second int CHECK (max_rows_per_second > 0),
	throttle            boolean NOT NULL,
	batch_time_target_ms     double precision NOT NULL DEFAULT 200 CHECK (batch_time_target_ms > 0),
	max_replica_lag_s        double precision NOT NULL DEFAULT 1.5 CHECK (max_replica_lag_s >= 0),
	max_active_backends      int NOT NULL DEFAULT 25 CHECK (max_active_backends >= 0),
	max_wal_bytes_per_second bigint NOT NULL DEFAULT 0 CHECK (max_wal_bytes_per_second >= 0),
	live_duty_cycle          double precision NOT NULL DEFAULT 0.5 CHECK (live_duty_cycle BETWEEN 0.01 AND 1),
	state               text NOT NULL DEFAULT 'queued' CHECK (state IN ('queued', 'running', 'throttled', 'paused',
									'interrupted', 'done', 'failed', 'cancelled')),
	requested           text CHECK (requested IN ('pause', 'cancel')),
	owner               regrole NOT NULL,          -- the role that started it (its batches run as the table's owner)
	home                text NOT NULL DEFAULT migration_ext.job_home(), -- where it runs; elsewhere it is a restored copy
	rows_estimated      bigint NOT NULL DEFAULT 0,
	rows_scanned        bigint NOT NULL DEFAULT 0,
	rows_converted      bigint NOT NULL DEFAULT 0,
	rows_skipped        bigint NOT NULL DEFAULT 0,
	conflicts           bigint NOT NULL DEFAULT 0,
	batches             bigint NOT NULL DEFAULT 0,
	lock_retries        int NOT NULL DEFAULT 0,
	current_batch_size  int,
	rate                double precision,          -- rows scanned per second, smoothed
	throttle_reason     text,
	warning             text,                      -- a throttle signal that could not be read
	last_error          text,
	error_key           text[],
	pid                 int,
	created_at          timestamptz NOT NULL DEFAULT pg_catalog.now(),
	started_at          timestamptz,
	updated_at          timestamptz,
	finished_at         timestamptz,
	-- Space reuse: the worker vacuums the table as it goes, so converted rows land in the space of the
	-- old versions they replaced (reclaim.cpp). Sizes are table + indexes + TOAST of the leaves walked.
	reuse_space         boolean NOT NULL DEFAULT true,
	size_at_start       bigint,                    -- NULL for a table move, which rewrites no row in place
	size_at_end         bigint,
	reclaims            int NOT NULL DEFAULT 0,    -- rounds of space reuse run
	rows_reclaimed      bigint NOT NULL DEFAULT 0, -- dead row versions they freed (PostgreSQL's count)
	space_reclaimed     bigint NOT NULL DEFAULT 0, -- their bytes, at the table's mean bytes per row version
	reclaim_note        text,                      -- the last round's outcome, or why none could free space
	-- A job split into parts (backfill_parts.sql): a partitioned table walked by `parallel` workers, or a
	-- Citus distributed table whose shards are walked on the nodes that hold them. The parent's worker
	-- only gathers its parts' progress; each part is a job of its own, on its node.
	parallel            int NOT NULL DEFAULT 1 CHECK (parallel BETWEEN 1 AND 64), -- parts per node
	distributed         boolean NOT NULL DEFAULT false, -- the parts are on the Citus cluster's nodes
	nodes               jsonb,                     -- the parent: each node's parts, summed
	parent_job          bigint,                    -- a part: its parent job
	parent_remote       boolean NOT NULL DEFAULT false, -- a part whose parent is on the Citus coordinator
	placements          text                       -- a distributed job: where the shards were (placement_digest)
);

-- One runner per column: a second job on the same column is refused while one is unfinished.
CREATE UNIQUE INDEX backfill_job_one_per_column ON migration_ext.backfill_job (relation, column_name)
	WHERE state IN ('queued', 'running', 'throttled', 'paused', 'interrupted') AND parent_job IS NULL;
CREATE INDEX backfill_job_parts ON migration_ext.backfill_job (parent_job) WHERE parent_job IS NOT NULL;

-- A job on a table is seen and steered by the roles that may act as the table's owner (superusers, the
-- owner, members of the owner role), whoever started it. Rows are written only by the extension.
ALTER TABLE migration_ext.backfill_job ENABLE ROW LEVEL SECURITY;
CREATE POLICY backfill_job_table_owner ON migration_ext.backfill_job FOR SELECT
	USING (migration_ext.may_act_on(CURRENT_USER::regrole, relation));
GRANT SELECT ON migration_ext.backfill_job TO PUBLIC;

-- Bytes on disk of some tables: each one's heap, indexes and TOAST (a quoted body: parsed when called,
-- under the pinned search_path).
CREATE FUNCTION migration_ext.tables_size(tables regclass[]) RETURNS bigint
	LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$ SELECT sum(pg_total_relation_size(t))::bigint FROM unnest(tables) t $$;

CREATE FUNCTION migration_ext.launch_worker(job bigint) RETURNS int
	LANGUAGE c STRICT AS 'MODULE_PATHNAME', 'mext_launch_worker';

-- The worker's claim on its job and on a worker slot: 'claimed', 'taken' or 'full' (job_claim.cpp).
CREATE FUNCTION migration_ext.claim_job(job bigint) RETURNS text
	LANGUAGE c STRICT AS 'MODULE_PATHNAME', 'mext_claim_job';

-- Refuses a new worker for `actor` when migration_ext.max_jobs workers run in the cluster, or
-- migration_ext.max_jobs_per_role of the role's jobs have one in this database.
CREATE FUNCTION migration_ext.check_job_limits(actor regrole) RETURNS void
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

-- Is the worker of a job alive? Read from the process array, not pg_stat_activity, whose contents a
-- transaction caches: wait_backfill() must see a worker die while it waits.
CREATE FUNCTION migration_ext.worker_alive(pid int) RETURNS boolean
	LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'mext_worker_alive';

-- The state a DBA should see: a job that claims to run but has no live worker was interrupted (a
-- crash, kill -9, an immediate shutdown). A queued job gets a minute for its worker to appear.
-- `j` was read with the caller's snapshot; a worker that ended the job and exited after that snapshot was
-- taken must not make a finished job look interrupted. So once the worker is seen gone, the job is read
-- again: each statement here takes a new snapshot (READ COMMITTED), and a process's last commit is
-- visible before it leaves the process array.
CREATE FUNCTION migration_ext.effective_state(j migration_ext.backfill_job) RETURNS text
	LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	now_state text;
BEGIN
	-- Restored from a backup into another database (or cluster): it never runs on its own there, and
	-- shows as paused until resume_backfill() takes it over.
	IF j.state IN ('queued', 'running', 'throttled', 'paused', 'interrupted') AND j.home <> migration_ext.job_home() THEN
		RETURN 'paused';
	END IF;
	-- Queued with no worker (not launched yet, or waiting for a slot), or paused (a paused job gives its
	-- worker back): nothing was interrupted.
	IF j.state NOT IN ('queued', 'running', 'throttled', 'paused') OR migration_ext.worker_alive(j.pid)
	   OR (j.state = 'queued' AND j.pid IS NULL) OR (j.state = 'paused' AND j.requested = 'pause') THEN
		RETURN j.state;
	END IF;
	SELECT b.state INTO now_state FROM migration_ext.backfill_job b WHERE b.id = j.id;
	RETURN CASE
		WHEN now_state IN ('running', 'throttled') THEN 'interrupted'
		WHEN now_state = 'paused' AND j.requested IS DISTINCT FROM 'pause' THEN 'interrupted'
		WHEN now_state = 'queued' AND j.pid IS NOT NULL AND j.created_at < now() - interval '1 minute' THEN 'interrupted'
		ELSE coalesce(now_state, j.state) END;
END
$$;

-- The job, if `actor` may see it (as row-level security shows it to a role's own queries).
CREATE FUNCTION migration_ext.require_job(actor regrole, job bigint) RETURNS migration_ext.backfill_job
	LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	j migration_ext.backfill_job;
BEGIN
	IF job IS NULL THEN
		RAISE EXCEPTION 'job id must not be NULL' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	SELECT * INTO j FROM migration_ext.backfill_job b WHERE b.id = job;
	IF NOT FOUND OR NOT migration_ext.may_act_on(actor, j.relation) THEN
		RAISE EXCEPTION 'backfill job % does not exist', job USING ERRCODE = 'undefined_object',
			HINT = 'See backfill_status for the jobs you can see.';
	END IF;
	RETURN j;
END
$$;

-- The job's effective state, or an error when it has finished (done, failed, cancelled) and so cannot be
-- <action> (paused, resumed, altered).
CREATE FUNCTION migration_ext.unfinished_job_state(j migration_ext.backfill_job, action text) RETURNS text
	LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	job_state text := migration_ext.effective_state(j);
BEGIN
	IF job_state IN ('done', 'failed', 'cancelled') THEN
		RAISE EXCEPTION 'backfill job % is %, it cannot be %', j.id, job_state, action
			USING ERRCODE = 'object_not_in_prerequisite_state';
	END IF;
	RETURN job_state;
END
$$;

-- The key a backfill walks: the primary key, else the first unique, non-partial, non-expression index
-- whose columns are all NOT NULL; none that contains `avoid`, the column the backfill rewrites (a key
-- rewritten under the walk would move rows behind or ahead of it).
CREATE FUNCTION migration_ext.walk_key(relation regclass, avoid name DEFAULT NULL, OUT key_columns name[],
									   OUT key_types text[])
	LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	chosen oid;
	avoided int2 := (SELECT a.attnum FROM pg_attribute a WHERE a.attrelid = relation AND a.attname = avoid
					 AND a.attnum > 0 AND NOT a.attisdropped);
BEGIN
	SELECT i.indexrelid INTO chosen
	FROM pg_index i
	WHERE i.indrelid = relation AND i.indisunique AND i.indisvalid AND i.indpred IS NULL AND i.indexprs IS NULL
	  AND NOT EXISTS (SELECT FROM unnest(i.indkey) k JOIN pg_attribute a ON a.attrelid = relation AND a.attnum = k
					  WHERE NOT a.attnotnull)
	  AND 0 <> ALL (i.indkey)
	  AND (avoided IS NULL OR avoided <> ALL (i.indkey))
	ORDER BY i.indisprimary DESC, i.indnatts, i.indexrelid
	LIMIT 1;
	IF chosen IS NULL AND avoided IS NOT NULL AND EXISTS (SELECT FROM pg_index i WHERE i.indrelid = relation
			AND i.indisunique AND avoided = ANY (i.indkey)) THEN
		RAISE EXCEPTION 'column "%" is part of every usable key of %', avoid, relation
			USING ERRCODE = 'feature_not_supported',
				DETAIL = 'A backfill walks the table in key order; rewriting the key it walks would move rows under it, and the table has no other unique key on NOT NULL columns.',
				HINT = 'Add one (CREATE UNIQUE INDEX CONCURRENTLY on NOT NULL columns) and the key is rewritten in place while that one is walked; or expand to a new column and contract.';
	END IF;
	IF chosen IS NULL THEN
		RAISE EXCEPTION 'relation % has no usable key to walk', relation USING ERRCODE = 'object_not_in_prerequisite_state',
			DETAIL = 'A backfill walks the table in key order, by its primary key or a unique index on NOT NULL columns.',
			HINT = 'Add a primary key, or a unique index on NOT NULL columns (CREATE UNIQUE INDEX CONCURRENTLY).';
	END IF;
	SELECT array_agg(a.attname ORDER BY k.ord), array_agg(format_type(a.atttypid, a.atttypmod) ORDER BY k.ord)
	INTO key_columns, key_types
	FROM pg_index i, unnest(i.indkey) WITH ORDINALITY k(attnum, ord)
	JOIN pg_attribute a ON a.attrelid = relation AND a.attnum = k.attnum
	WHERE i.indexrelid = chosen AND k.ord <= i.indnkeyatts;
END
$$;

-- Can a backfill rewrite this column in place? Not a partition key column (the row would move to another
-- partition), nor a key that foreign keys reference without ON UPDATE CASCADE (the update would fail
-- at the first referenced row). The refusal names the constraint and the way out.
CREATE FUNCTION migration_ext.require_rewritable(relation regclass, column_name name) RETURNS void
	LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	attnum int2 := (SELECT a.attnum FROM pg_attribute a WHERE a.attrelid = relation AND a.attname = column_name);
	blocking text;
BEGIN
	IF EXISTS (SELECT FROM pg_partitioned_table p WHERE p.partrelid = relation AND attnum = ANY (p.partattrs::int2[]))
	   OR EXISTS (SELECT FROM pg_partition_ancestors(relation) t JOIN pg_partitioned_table p ON p.partrelid = t.relid
				  JOIN pg_attribute a ON a.attrelid = t.relid AND a.attnum = ANY (p.partattrs::int2[])
				  WHERE a.attname = column_name) THEN
		RAISE EXCEPTION 'column "%" of % is in its partition key', column_name, relation
			USING ERRCODE = 'feature_not_supported',
				DETAIL = 'Rewriting it in place would move rows between partitions under the backfill.',
				HINT = 'Expand to a new column and contract instead (see inspect_column()).';
	END IF;
	SELECT format('%s from %s', c.conname, c.conrelid::regclass) INTO blocking FROM pg_constraint c
	WHERE c.contype = 'f' AND c.confrelid = relation AND attnum = ANY (c.confkey) AND c.confupdtype <> 'c' LIMIT 1;
	IF blocking IS NOT NULL THEN
		RAISE EXCEPTION 'column "%" of % is referenced by foreign key % without ON UPDATE CASCADE', column_name,
			relation, blocking USING ERRCODE = 'feature_not_supported',
				DETAIL = 'A referenced value cannot be rewritten while rows refer to it.',
				HINT = 'Make the foreign key ON UPDATE CASCADE, or expand to a new column and contract.';
	END IF;
END
$$;

-- A table move (V1 -> V2): V2 receives column_name converted from V1's source column, and must have a
-- unique index on V1's walking key, on which rows it already has are recognised.
CREATE FUNCTION migration_ext.check_table_move(relation regclass, target_relation regclass, column_name name,
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

CREATE FUNCTION migration_ext.check_throttle_settings(batch_time_target interval, max_replica_lag interval,
													  max_active_backends int, max_wal_bytes_per_second bigint,
													  live_duty_cycle double precision)
	RETURNS void LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF batch_time_target <= interval '0' THEN
		RAISE EXCEPTION 'batch_time_target must be positive, not %', batch_time_target
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF max_replica_lag < interval '0' THEN
		RAISE EXCEPTION 'max_replica_lag must not be negative' USING ERRCODE = 'invalid_parameter_value',
			HINT = 'Pass 0 to ignore replica lag.';
	END IF;
	IF max_active_backends < 0 THEN
		RAISE EXCEPTION 'max_active_backends must not be negative' USING ERRCODE = 'invalid_parameter_value',
			HINT = 'Pass 0 to ignore the number of active backends.';
	END IF;
	IF max_wal_bytes_per_second < 0 THEN
		RAISE EXCEPTION 'max_wal_bytes_per_second must not be negative' USING ERRCODE = 'invalid_parameter_value',
			HINT = 'Pass 0 for no WAL rate cap.';
	END IF;
	IF NOT live_duty_cycle BETWEEN 0.01 AND 1 THEN
		RAISE EXCEPTION 'live_duty_cycle must be between 0.01 and 1, not %', live_duty_cycle
			USING ERRCODE = 'invalid_parameter_value',
				DETAIL = 'It is the fraction of the time a job works while other transactions commit.',
				HINT = 'Pass 1 for a job that does not make room for a live workload.';
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

-- Who may start a job on a table: whoever may act as its owner (superusers, the owner, members of the
-- owner role). Its batches run as the table's owner, restricted, whoever started it.
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

-- Starts a worker for a queued job and records its pid. A launch that fails (no free background worker
-- slot) leaves the job queued, with the reason in backfill_status and a WARNING; the resumer, or
-- resume_backfill(), tries again.
CREATE FUNCTION migration_ext.launch_job(job bigint) RETURNS boolean
	LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	new_pid int;
	reason text;
BEGIN
	BEGIN
		new_pid := migration_ext.launch_worker(job);
	EXCEPTION WHEN OTHERS THEN
		GET STACKED DIAGNOSTICS reason = MESSAGE_TEXT;
		UPDATE migration_ext.backfill_job b SET pid = NULL, state = 'queued', updated_at = now(),
			warning = format('not started: %s', reason) WHERE b.id = job;
		RAISE WARNING 'backfill job % is queued but not started: %', job, reason
			USING HINT = 'resume_backfill() tries again; with migration_ext preloaded, the resumer does.';
		RETURN false;
	END;
	-- A worker that already runs the job keeps it (the new one finds the job claimed and exits).
	UPDATE migration_ext.backfill_job b SET pid = new_pid, state = 'queued', created_at = now(), warning = NULL
	WHERE b.id = job AND NOT migration_ext.worker_alive(b.pid);
	RETURN true;
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
