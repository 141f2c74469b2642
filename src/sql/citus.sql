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

-- What Citus makes of a table: 'distributed', 'reference', 'Citus local', or NULL (a plain table, or no
-- Citus in this database). Citus's catalogs exist only with Citus: dynamic SQL.
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

-- A backfill of a distributed table runs where its shards are (backfill_parts.sql); a backfill through
-- Citus's planner would be refused at its first batch (the codec calls in the UPDATE are STABLE functions
-- of the row). So the other kinds of tables Citus manages, and moves between distributed tables, are
-- refused up front and said plainly.
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

-- The protocol across a Citus cluster: readers run on every node (a distributed function, or a query
-- pushed down to the shards), so the settle check waits on every node, not only the coordinator.

-- On this node: the transactions open since before `since` (the reader swaps' commit) that could still
-- run a reader of the old version, as settle_state() counts them; '' when there are none.
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

-- On the coordinator: what each worker still waits for, as 'node <host>:<port>: <what>' joined; NULL when
-- nothing (or without Citus workers). `check_name` is 'old_transactions' (since `arg`, in seconds since 1970) or
-- 'standbys' (waiting up to `arg` milliseconds): only these two questions, whoever asks. A worker that does
-- not answer is waited for: nothing is known of it.
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

-- What this node's codecs are, as one digest: equal on two nodes when they have the same codecs.
CREATE FUNCTION migration_ext.codec_digest() RETURNS text
	LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
	SELECT md5(coalesce(jsonb_agg(jsonb_build_array(c.name, c.convert, c.marker, c.detect, c.shape,
													extract(epoch FROM c.created_at), c.created_by) ORDER BY c.name)::text, ''))
	FROM migration_ext.codec c;
END;

-- Run by the resumer every migration_ext.resume_interval: on a Citus coordinator, when a worker's codecs
-- differ from the coordinator's (a worker added since, or one restored from an old backup), every worker
-- is given the coordinator's codecs, as sync_codecs() does. Returns how many workers differed.
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
