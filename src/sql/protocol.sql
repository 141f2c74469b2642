------------------------------------------------------------------------------------------------------
-- The migration protocol: planned -> tolerant -> producing -> backfilling -> converted -> contracted.
------------------------------------------------------------------------------------------------------

-- Is this the name of a phase? The one list of phases is the C++ core's (core/phase.hpp).
CREATE FUNCTION migration_ext.is_phase(phase text) RETURNS boolean
	LANGUAGE c IMMUTABLE STRICT AS 'MODULE_PATHNAME', 'mext_is_phase';

CREATE TABLE migration_ext.migration (
	name             text PRIMARY KEY CHECK (name <> ''),
	relation         regclass NOT NULL,
	column_name      name NOT NULL,
	codec            text NOT NULL,             -- drop_codec() refuses while a migration uses it
	source_column    name,
	allow_key_update boolean NOT NULL DEFAULT false,
	phase            text NOT NULL DEFAULT 'planned' CHECK (migration_ext.is_phase(phase)),
	job              bigint,
	constraint_name  name,
	created_at       timestamptz NOT NULL DEFAULT pg_catalog.now(),
	created_by       name NOT NULL,
	target_relation  regclass,                  -- a table move: V2 (relation is V1, source_column V1's column)
	column_map       jsonb                      -- a table move: {V2 column: V1 column}, resolved at creation
);

CREATE TABLE migration_ext.planned_swap (
	migration       text NOT NULL,
	fn              regprocedure NOT NULL,
	role            text NOT NULL CHECK (role IN ('reader', 'writer')),
	body            text NOT NULL,
	language        name,
	ordinal         serial,
	restore_version int,          -- the version current before the swap: what retreat restores
	applied_version int,          -- the version the swap recorded
	applied_at      timestamptz,
	applied_lsn     pg_lsn,
	PRIMARY KEY (migration, fn)
);

CREATE TABLE migration_ext.migration_event (
	id         bigserial PRIMARY KEY,
	migration  text NOT NULL,
	event      text NOT NULL,     -- advance, retreat, swap, unswap, backfill
	from_phase text,
	to_phase   text,
	fn         regprocedure,
	role       text,
	detail     text,
	at         timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
	by_role    name NOT NULL,
	wal_lsn    pg_lsn DEFAULT CASE WHEN pg_catalog.pg_is_in_recovery() THEN NULL
								  ELSE pg_catalog.pg_current_wal_insert_lsn() END
);

GRANT SELECT ON migration_ext.migration, migration_ext.planned_swap, migration_ext.migration_event TO PUBLIC;
-- Readers that repair (repair_value()) cache a migration's phase: every change reaches them at once.
CREATE TRIGGER migration_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON migration_ext.migration
	FOR EACH STATEMENT EXECUTE FUNCTION migration_ext.migration_changed();
-- A migration and its history are seen by the roles that may act on its table.
ALTER TABLE migration_ext.migration ENABLE ROW LEVEL SECURITY;
CREATE POLICY migration_table_owner ON migration_ext.migration FOR SELECT
	USING (migration_ext.may_act_on(CURRENT_USER::regrole, relation));
ALTER TABLE migration_ext.migration_event ENABLE ROW LEVEL SECURITY;
CREATE POLICY migration_event_table_owner ON migration_ext.migration_event FOR SELECT
	USING (EXISTS (SELECT FROM migration_ext.migration m WHERE m.name = migration));
ALTER TABLE migration_ext.read_repair ENABLE ROW LEVEL SECURITY;
CREATE POLICY read_repair_table_owner ON migration_ext.read_repair FOR SELECT
	USING (EXISTS (SELECT FROM migration_ext.migration m WHERE m.name = migration));
-- A planned body is its function owner's to read, like the function's history.
ALTER TABLE migration_ext.planned_swap ENABLE ROW LEVEL SECURITY;
CREATE POLICY planned_swap_owner ON migration_ext.planned_swap FOR SELECT USING (migration_ext.may_read_function(fn));

CREATE FUNCTION migration_ext.phase_after(migration text, phase text, direction text) RETURNS text
	LANGUAGE c IMMUTABLE AS 'MODULE_PATHNAME', 'mext_phase_after';

CREATE FUNCTION migration_ext.door_check(migration text, reader_swaps int, readers_applied int, settled boolean,
										 waiting_for text, confirmed boolean)
	RETURNS void LANGUAGE c IMMUTABLE AS 'MODULE_PATHNAME', 'mext_door_check';

CREATE FUNCTION migration_ext.require_migration(name text, lock boolean DEFAULT false)
	RETURNS migration_ext.migration LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	m migration_ext.migration;
BEGIN
	IF name IS NULL THEN
		RAISE EXCEPTION 'migration name must not be NULL' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF lock THEN
		SELECT * INTO m FROM migration_ext.migration x WHERE x.name = require_migration.name FOR UPDATE;
	ELSE
		SELECT * INTO m FROM migration_ext.migration x WHERE x.name = require_migration.name;
	END IF;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'migration "%" does not exist', name USING ERRCODE = 'undefined_object',
			HINT = 'Create it with create_migration(name, relation, column_name, codec).';
	END IF;
	RETURN m;
END
$$;

-- What a column is, structurally: what can be rewritten in place and what cannot (SOURCES.md 1).
CREATE FUNCTION @extschema@.inspect_column(relation regclass, column_name name, codec text DEFAULT NULL)
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

CREATE FUNCTION @extschema@.plan_swap(migration text, fn regprocedure, body text, role text DEFAULT 'reader',
									  language name DEFAULT NULL)
	RETURNS void LANGUAGE c AS 'MODULE_PATHNAME', 'mext_as_invoker';

-- Planned by a role that may act as the table's owner, on a function it may change.
CREATE FUNCTION migration_ext.plan_swap(actor regrole, migration text, fn regprocedure, body text, role text,
										language name)
	RETURNS void LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	m migration_ext.migration := migration_ext.require_migration(migration, true);
BEGIN
	PERFORM migration_ext.require_table_owner(actor, m.relation, 'plan its migration');
	IF role IS NULL OR role NOT IN ('reader', 'writer') THEN
		RAISE EXCEPTION 'swap role must be ''reader'' or ''writer'', not %', coalesce(quote_literal(role), 'NULL')
			USING ERRCODE = 'invalid_parameter_value',
				HINT = 'Readers become tolerant before the point of no return; writers change at it.';
	END IF;
	IF body IS NULL THEN
		RAISE EXCEPTION 'function body must not be NULL' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF m.phase <> 'planned' THEN
		RAISE EXCEPTION 'migration "%" is %: swaps are planned before it advances', migration, m.phase
			USING ERRCODE = 'object_not_in_prerequisite_state';
	END IF;
	PERFORM migration_ext.require_frozen(fn);
	PERFORM migration_ext.require_function_owner(actor, fn);
	IF EXISTS (SELECT FROM migration_ext.planned_swap s WHERE s.migration = plan_swap.migration AND s.fn = plan_swap.fn) THEN
		RAISE EXCEPTION 'function % already has a planned swap in migration "%"', fn, migration
			USING ERRCODE = 'duplicate_object';
	END IF;
	INSERT INTO migration_ext.planned_swap (migration, fn, role, body, language) VALUES (migration, fn, role, body, language);
END
$$;

-- Does this WAL receiver replay what it receives (a standby), as opposed to only storing it (pg_receivewal,
-- a backup tool's WAL streamer), which reports a flush position and never a replay position?
CREATE FUNCTION migration_ext.replays(r pg_stat_replication) RETURNS boolean
	LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
	RETURN r.replay_lsn IS NOT NULL OR r.flush_lsn IS NULL;

-- Settled: no transaction that began before the reader swaps is still open, and every streaming
-- standby has replayed past the swaps' WAL position.
CREATE FUNCTION migration_ext.settle_state(migration text, OUT settled boolean, OUT waiting_for text)
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

-- Applies one planned swap and records it, with the version to restore on retreat.
CREATE FUNCTION migration_ext.apply_swap(actor regrole, s migration_ext.planned_swap, caller_search_path text)
	RETURNS void
	LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	before int;
	after int;
BEGIN
	SELECT f.current_version INTO before FROM migration_ext.frozen_function f WHERE f.fn = s.fn;
	PERFORM migration_ext.replace_body(s.fn, s.body, s.language, caller_search_path);
	after := migration_ext.record_version(actor, s.fn, s.role, format('migration %s: %s swap', s.migration, s.role),
										  s.migration);
	UPDATE migration_ext.planned_swap p SET restore_version = before, applied_version = after,
		applied_at = clock_timestamp(),
		applied_lsn = CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_insert_lsn() END
	WHERE p.migration = s.migration AND p.fn = s.fn;
	INSERT INTO migration_ext.migration_event (migration, event, fn, role, detail, by_role)
	VALUES (s.migration, 'swap', s.fn, s.role, format('version %s -> %s', before, after), pg_get_userbyid(actor));
END
$$;

-- Real legacy values of the migration's column, taken at its door: what every reader is checked on,
-- then and whenever a reader changes later. Kept where no role but the extension reads them.
CREATE TABLE migration_ext.read_sample (
	migration text NOT NULL,
	ordinal   int NOT NULL,
	value     text,               -- NULL: the legacy state of a `null` codec
	PRIMARY KEY (migration, ordinal)
);

-- The first `size` legacy values of the column (in the table's physical order), read as its owner.
CREATE FUNCTION migration_ext.sample_legacy_values(m migration_ext.migration, size int) RETURNS int
	LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	sample text[];
BEGIN
	IF size < 0 THEN
		RAISE EXCEPTION 'read_sample must not be negative' USING ERRCODE = 'invalid_parameter_value',
			HINT = 'Pass 0 to open the door without checking the readers on real values.';
	END IF;
	sample := migration_ext.run_as((SELECT c.relowner FROM pg_class c WHERE c.oid = m.relation),
		format('SELECT array_agg(v) FROM (SELECT %I::text AS v FROM %s WHERE %I.is_legacy(%L, %I::text) LIMIT %s) s',
			   coalesce(m.source_column, m.column_name), m.relation, '@extschema@', m.codec,
			   coalesce(m.source_column, m.column_name), size), 'pg_catalog, pg_temp')::text[];
	DELETE FROM migration_ext.read_sample r WHERE r.migration = m.name;
	INSERT INTO migration_ext.read_sample (migration, ordinal, value)
	SELECT m.name, o, v FROM unnest(coalesce(sample, '{}')) WITH ORDINALITY u(v, o);
	RETURN coalesce(cardinality(sample), 0);
END
$$;

-- "A tested read path": every applied reader of the migration (or only `fn`) is called, as its owner,
-- on each sampled legacy value and on its converted form, and must return the same for both. A reader
-- that takes one argument of the column's text form or of the column's type is checked; another
-- signature is recorded as not checked. Refuses naming the first value read differently; records what it checked. The readers run
-- with the caller's search_path behind pg_catalog, as the application calls them with its own.
CREATE FUNCTION migration_ext.read_check(actor regrole, m migration_ext.migration, fn regprocedure,
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

-- A reader of a migration past its point of no return changed (swap, revert, CREATE OR REPLACE): its new
-- body must still read both formats alike, on the values sampled at the door, until the contract
-- guarantees the column holds only the new one.
CREATE FUNCTION migration_ext.recheck_reader(actor regrole, fn regprocedure, caller_search_path text) RETURNS void
	LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	m migration_ext.migration;
BEGIN
	FOR m IN SELECT x.* FROM migration_ext.migration x JOIN migration_ext.planned_swap s ON s.migration = x.name
			 WHERE s.fn = recheck_reader.fn AND s.role = 'reader' AND s.applied_version IS NOT NULL
			   AND x.phase IN ('producing', 'backfilling', 'converted') LOOP
		PERFORM migration_ext.read_check(actor, m, fn, caller_search_path);
	END LOOP;
END
$$;

CREATE FUNCTION migration_ext.flushed_insert_lsn() RETURNS pg_lsn
	LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'mext_flushed_insert_lsn';

-- On this node: its streaming standbys that have not replayed up to its WAL flushed now (after the swaps,
-- which committed before this call: this transaction began after that commit, so its insert position is
-- past it; flushed, so that it can reach the standbys), waiting up to `wait_ms` for them; '' when all have.
-- The door's check on the coordinator and, through it, on every Citus worker.
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

-- The door's settle check, against a position after the reader swaps' commit: this transaction began
-- after that commit (with a standby connected, advance_migration refuses the swaps' own transaction),
-- so its insert position is past it; flushed, so that it can reach the standbys. Every streaming standby
-- gets migration_ext.settle_wait to replay up to it.
CREATE FUNCTION migration_ext.wait_standbys_past_commit(migration text) RETURNS void
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

-- What is left of a migration's contract, as statements for run_online(): the CHECK that refuses the legacy
-- format added NOT VALID and validated (for a `null` codec: a NOT NULL check, validated, so that SET NOT
-- NULL needs no scan, then dropped), and the dual-write trigger of a column move dropped.
CREATE FUNCTION migration_ext.contract_statements(m migration_ext.migration, OUT statements text[],
												  OUT constraint_name name, OUT drops_mirror boolean)
	LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	check_name name := regexp_replace(left(format('%s_%s_not_legacy', m.relation::text, m.column_name), 63),
									  '[^A-Za-z0-9_]', '_', 'g');
	existing pg_constraint;
	null_codec boolean := (SELECT c.detect FROM migration_ext.codec c WHERE c.name = m.codec) = 'null';
	mirror name := CASE WHEN m.source_column IS NOT NULL THEN migration_ext.mirror_name(m.source_column, m.column_name) END;
BEGIN
	statements := '{}';
	SELECT * INTO existing FROM pg_constraint c WHERE c.conrelid = m.relation AND c.conname = check_name;
	-- The name is the table's and column's, shortened and with other characters as '_': another column
	-- can come to the same one. A constraint of that name on another column is not this contract's.
	IF existing.oid IS NOT NULL AND existing.conkey IS DISTINCT FROM
			ARRAY[(SELECT a.attnum FROM pg_attribute a WHERE a.attrelid = m.relation AND a.attname = m.column_name)] THEN
		check_name := left(check_name, 54) || '_' || left(md5(m.name), 8);
		SELECT * INTO existing FROM pg_constraint c WHERE c.conrelid = m.relation AND c.conname = check_name;
	END IF;
	IF NOT null_codec OR NOT (SELECT a.attnotnull FROM pg_attribute a WHERE a.attrelid = m.relation
							  AND a.attname = m.column_name) THEN
		IF existing.oid IS NULL THEN
			-- The CHECK carries the codec's definition, not its name: it holds by itself, so a restore
			-- checks the table's rows whether or not the codec table has its rows yet. A codec with fn:
			-- steps is named instead (its functions run as their owner only for a codec that was created).
			statements := statements || format('ALTER TABLE %s ADD CONSTRAINT %I CHECK (%s) NOT VALID', m.relation,
				check_name, CASE WHEN null_codec THEN format('%I IS NOT NULL', m.column_name)
								 ELSE (SELECT CASE WHEN c.convert LIKE 'fn:%' OR c.convert LIKE '%|fn:%'
												   THEN format('NOT %I.is_legacy(%L, %I::text)', '@extschema@', m.codec, m.column_name)
												   ELSE format('NOT migration_ext.is_legacy_by_definition(%L, %L, %L, %L, %I::text)',
															   c.convert, c.marker, c.detect, c.shape, m.column_name) END
									   FROM migration_ext.codec c WHERE c.name = m.codec) END);
		END IF;
		IF existing.oid IS NULL OR NOT existing.convalidated THEN
			statements := statements || format('ALTER TABLE %s VALIDATE CONSTRAINT %I', m.relation, check_name);
		END IF;
		IF null_codec THEN
			statements := statements || format('ALTER TABLE %s ALTER COLUMN %I SET NOT NULL', m.relation, m.column_name);
		END IF;
	END IF;
	IF null_codec AND (existing.oid IS NOT NULL OR cardinality(statements) > 0) THEN
		statements := statements || format('ALTER TABLE %s DROP CONSTRAINT IF EXISTS %I', m.relation, check_name);
	END IF;
	constraint_name := CASE WHEN NOT null_codec THEN check_name END;
	drops_mirror := mirror IS NOT NULL AND EXISTS (SELECT FROM pg_trigger t WHERE t.tgrelid = m.relation AND t.tgname = mirror);
	IF drops_mirror THEN
		statements := statements || format('DROP TRIGGER IF EXISTS %I ON %s', mirror, m.relation);
	END IF;
END
$$;

CREATE FUNCTION migration_ext.advance_migration(name text, confirm text, caller_search_path text, read_sample int)
	RETURNS text LANGUAGE c AS 'MODULE_PATHNAME', 'mext_as_invoker';

-- Progress NOTICEs of a long scan in this transaction: the rows is_legacy() looks at (scan_progress.cpp).
CREATE FUNCTION migration_ext.scan_progress(label text, estimate bigint) RETURNS void
	LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'mext_scan_progress';

-- What it does to the table (the verifying scan, the contract) runs as the table's owner, restricted;
-- the swaps as each function's owner.
CREATE FUNCTION migration_ext.advance_migration(actor regrole, name text, confirm text, caller_search_path text,
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

CREATE FUNCTION @extschema@.advance_migration(name text, confirm text DEFAULT NULL, read_sample int DEFAULT 100)
	RETURNS text LANGUAGE sql
	RETURN migration_ext.advance_migration(name, confirm, pg_catalog.current_setting('search_path'), read_sample);

CREATE FUNCTION migration_ext.retreat_migration(name text, caller_search_path text) RETURNS text
	LANGUAGE c AS 'MODULE_PATHNAME', 'mext_as_invoker';

CREATE FUNCTION migration_ext.retreat_migration(actor regrole, name text, caller_search_path text) RETURNS text
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

CREATE FUNCTION @extschema@.retreat_migration(name text) RETURNS text
	LANGUAGE sql
	RETURN migration_ext.retreat_migration(name, pg_catalog.current_setting('search_path'));

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

-- The migration form, as DESIGN.md gives it: start_backfill('tokens', <the same options>).
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

-- start_backfill('accounts', 'token', 'v2'): with three untyped literals PostgreSQL would find the
-- regclass form and the migration form equally good and refuse the call; this text form wins that
-- tie (string category at every position) and resolves the name as the caller's search_path would.
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

-- A writer swap of a migration is applied at its point of no return, never before: swap_function()
-- refuses one while the migration has not passed it.
CREATE FUNCTION migration_ext.check_swap_order(fn regprocedure) RETURNS void
	LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	m record;
BEGIN
	SELECT x.name, x.phase INTO m FROM migration_ext.planned_swap p JOIN migration_ext.migration x ON x.name = p.migration
	WHERE p.fn = check_swap_order.fn AND p.role = 'writer' AND x.phase IN ('planned', 'tolerant') LIMIT 1;
	IF FOUND THEN
		RAISE EXCEPTION 'function % is a writer of migration "%", which is still %', fn, m.name, m.phase
			USING ERRCODE = 'object_not_in_prerequisite_state',
				DETAIL = 'Writers change only after every reader is tolerant and settled: flip that order and a reader hits a value it does not understand.',
				HINT = format('advance_migration(%L) applies the writer swaps at the point of no return.', m.name);
	END IF;
END
$$;

-- What a migration's online contract is doing or waiting for right now: its worker's activity. The
-- worker runs as a superuser, whose activity pg_stat_activity shows only to privileged roles; this shows
-- it to the roles that may act on the table.
CREATE FUNCTION migration_ext.ddl_progress(migration text) RETURNS text
	LANGUAGE c AS 'MODULE_PATHNAME', 'mext_as_invoker';

CREATE FUNCTION migration_ext.ddl_progress(actor regrole, migration text) RETURNS text
	LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF NOT EXISTS (SELECT FROM migration_ext.migration m WHERE m.name = ddl_progress.migration
				   AND migration_ext.may_act_on(actor, m.relation)) THEN
		RETURN NULL;
	END IF;
	RETURN (SELECT a.query FROM pg_stat_activity a WHERE a.backend_type = 'migration_ext online ddl'
			AND a.application_name = left('contract of migration ' || migration, 63)
			ORDER BY a.backend_start LIMIT 1);
END
$$;

CREATE VIEW @extschema@.migration_status WITH (security_invoker = true) AS
	SELECT m.name, m.phase, s.settled, coalesce(s.waiting_for, migration_ext.ddl_progress(m.name)) AS waiting_for,
		   m.relation, m.column_name, m.source_column, m.codec, m.job,
		   (SELECT migration_ext.effective_state(j) FROM migration_ext.backfill_job j WHERE j.id = m.job) AS job_state,
		   (SELECT count(*) FROM migration_ext.planned_swap p WHERE p.migration = m.name AND p.role = 'reader') AS readers,
		   (SELECT count(*) FROM migration_ext.planned_swap p WHERE p.migration = m.name AND p.role = 'writer') AS writers,
		   m.constraint_name, m.created_at, m.created_by, r.repaired AS repaired_by_reads,
		   r.repaired / nullif(migration_ext.estimated_rows(m.relation), 0) AS repaired_share, m.target_relation
	FROM migration_ext.migration m, LATERAL migration_ext.settle_state(m.name) s,
		 LATERAL (SELECT migration_ext.repaired_by_reads(m.name) AS repaired) r;

CREATE VIEW @extschema@.migration_history WITH (security_invoker = true) AS
	SELECT e.id, e.migration, e.event, e.from_phase, e.to_phase, e.fn, e.role, e.detail, e.at, e.by_role AS role_name,
		   e.wal_lsn
	FROM migration_ext.migration_event e;
