------------------------------------------------------------------------------------------------------
-- Jobs in parts: one backfill walked by several workers.
--
-- A partitioned table started with parallel => N is walked by N part jobs on disjoint sets of its
-- partitions. A Citus distributed table is walked where its shards are: each node that holds shards
-- runs parallel => N part jobs over its own shards, throttled on its own load, resumed by its own
-- launcher after a restart. A part is an ordinary job (batches, checkpoints, throttle, space reuse)
-- with a parent. The parent is the job the operator sees and steers: its worker walks nothing, it
-- passes the parent's request and settings on to the parts (on every node) twice a second and sums
-- their progress into the parent's row and its `nodes` column.
------------------------------------------------------------------------------------------------------

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
