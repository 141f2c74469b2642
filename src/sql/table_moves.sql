------------------------------------------------------------------------------------------------------
-- Table moves (V1 -> V2) as a migration. While it is open the database writes both tables: every write to
-- V1 lands in V2, converted, in the same transaction (the forward mirror, from create_migration on), and
-- from the point of no return, when V2 becomes the source of truth, every write to V2 lands back in V1 (the
-- backward mirror), so that a retreat before the contract loses nothing. The backfill sweeps the rows
-- nobody wrote; the verifying step compares both tables row by row; the contract drops the mirrors.
------------------------------------------------------------------------------------------------------

-- The columns of a move: each V2 column that receives a V1 column, both types (format_type), whether it
-- is the converted one and whether it comes from V1's key, in V2's column order.
CREATE FUNCTION migration_ext.move_columns(m migration_ext.migration)
	RETURNS TABLE (target name, source name, target_type text, source_type text, converted boolean, is_key boolean)
	LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$
	SELECT e.key::name, e.value::name, format_type(ta.atttypid, ta.atttypmod), format_type(sa.atttypid, sa.atttypmod),
		   e.key = m.column_name, e.value = ANY ((migration_ext.walk_key(m.relation)).key_columns)
	FROM jsonb_each_text(m.column_map) e
	JOIN pg_attribute ta ON ta.attrelid = m.target_relation AND ta.attname = e.key AND ta.attnum > 0 AND NOT ta.attisdropped
	JOIN pg_attribute sa ON sa.attrelid = m.relation AND sa.attname = e.value AND sa.attnum > 0 AND NOT sa.attisdropped
	ORDER BY ta.attnum
$$;

-- What V2's column receives from V1's row `row_expression` (a record of V1's type): the V1 column cast to V2's
-- type, the converted column through the codec (its text form, read back as V2's type naming the row's key
-- when it does not read).
CREATE FUNCTION migration_ext.move_value(m migration_ext.migration, c record, row_expression text) RETURNS text
	LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	key_text text := (SELECT string_agg(format('(%s.%I)::text', row_expression, k.source), ', ')
					  FROM migration_ext.move_columns(m) k WHERE k.is_key);
BEGIN
	IF NOT c.converted THEN
		RETURN format('(%s.%I)::%s', row_expression, c.source, c.target_type);
	ELSIF c.target_type = 'text' THEN
		RETURN format('%I.migrate_value(%L, (%s.%I)::text)', '@extschema@', m.codec, row_expression, c.source);
	END IF;
	RETURN format('migration_ext.cast_converted(%I.migrate_value(%L, (%s.%I)::text), NULL::%s, ARRAY[%s])',
				  '@extschema@', m.codec, row_expression, c.source, c.target_type, key_text);
END
$$;

-- The statements of one direction of the mirror, for the trigger's arguments. `forward`: V1 -> V2, the
-- converted column through the codec; otherwise V2 -> V1, each value cast back as it is (V1's readers are
-- tolerant by then). `upsert` takes the written row as $1 and, on UPDATE, the row before as $2: a row
-- whose key changed leaves the other table under its old key; the other table's row is written only when
-- it differs (compared on text forms, which every type has), which ends the back-and-forth between the
-- two mirrors after one round. `remove` takes the deleted row as $1.
CREATE FUNCTION migration_ext.move_statements(m migration_ext.migration, forward boolean, OUT upsert text,
											  OUT remove text)
	LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	into_relation regclass := CASE WHEN forward THEN m.target_relation ELSE m.relation END;
	-- Per column: its name in the table written, its type there, and the value it receives from $1.
	columns text[];
	types text[];
	values text[];
	keys text[];
	key_types text[];
	written_keys text[];
	c record;
BEGIN
	FOR c IN SELECT * FROM migration_ext.move_columns(m) LOOP
		IF forward THEN
			columns := columns || quote_ident(c.target);
			values := values || migration_ext.move_value(m, c, '($1)');
		ELSE
			columns := columns || quote_ident(c.source);
			values := values || format('(($1).%I)::%s', c.target, c.source_type);
		END IF;
		IF c.is_key THEN
			keys := keys || quote_ident(CASE WHEN forward THEN c.target ELSE c.source END);
			key_types := key_types || CASE WHEN forward THEN c.target_type ELSE c.source_type END;
			written_keys := written_keys || quote_ident(CASE WHEN forward THEN c.source ELSE c.target END);
		END IF;
	END LOOP;
	upsert := format(
		'WITH moved AS (DELETE FROM ONLY %1$s AS t WHERE (%2$s) = (%3$s) AND (%4$s) IS DISTINCT FROM (%5$s)) '
		'INSERT INTO %1$s AS t (%6$s) VALUES (%7$s) ON CONFLICT (%8$s) DO UPDATE SET %9$s '
		'WHERE ROW(%10$s)::text IS DISTINCT FROM ROW(%11$s)::text',
		into_relation,
		(SELECT string_agg('t.' || k, ', ') FROM unnest(keys) k),
		(SELECT string_agg(format('(($2).%s)::%s', k, ty), ', ') FROM unnest(written_keys, key_types) u(k, ty)),
		(SELECT string_agg(format('($2).%s', k), ', ') FROM unnest(written_keys) k),
		(SELECT string_agg(format('($1).%s', k), ', ') FROM unnest(written_keys) k),
		array_to_string(columns, ', '), array_to_string(values, ', '), array_to_string(keys, ', '),
		(SELECT string_agg(format('%s = excluded.%s', x, x), ', ') FROM unnest(columns) x),
		(SELECT string_agg('t.' || x, ', ') FROM unnest(columns) x),
		(SELECT string_agg('excluded.' || x, ', ') FROM unnest(columns) x));
	remove := format('DELETE FROM ONLY %s AS t WHERE (%s) = (%s)', into_relation,
		(SELECT string_agg('t.' || k, ', ') FROM unnest(keys) k),
		(SELECT string_agg(format('(($1).%s)::%s', k, ty), ', ') FROM unnest(written_keys, key_types) u(k, ty)));
END
$$;

-- The mirror trigger: AFTER each row, so that it writes what was finally stored. Its arguments are the two
-- statements above, written when the mirror was created: nothing is looked up per write. It runs as the
-- writer, who needs the same privileges on the other table.
CREATE FUNCTION migration_ext.move_mirror() RETURNS trigger
	LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF TG_OP = 'DELETE' THEN
		EXECUTE TG_ARGV[1] USING OLD;
	ELSE
		EXECUTE TG_ARGV[0] USING NEW, OLD;
	END IF;
	RETURN NULL;
END
$$;

CREATE FUNCTION migration_ext.move_mirror_name(migration text) RETURNS name
	LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp
	RETURN left('migration_ext_move_' || migration, 54) || '_' || left(md5(migration), 8);

-- Creates the mirror of one direction on the table it reads from, as the tables' owner, with a brief lock.
CREATE FUNCTION migration_ext.create_move_mirror(m migration_ext.migration, forward boolean) RETURNS void
	LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	s record := migration_ext.move_statements(m, forward);
	on_relation regclass := CASE WHEN forward THEN m.relation ELSE m.target_relation END;
BEGIN
	PERFORM migration_ext.run_briefly((SELECT c.relowner FROM pg_class c WHERE c.oid = on_relation),
		format('CREATE TRIGGER %I AFTER INSERT OR UPDATE OR DELETE ON %s FOR EACH ROW '
			   'EXECUTE FUNCTION migration_ext.move_mirror(%L, %L)',
			   migration_ext.move_mirror_name(m.name), on_relation, s.upsert, s.remove),
		format('mirror of migration %s', m.name));
END
$$;

-- Has the sweep of a move finished (so that V2 holds every row)? For the listing helper, which any role
-- that reads the tables may call: it tells whether the migration's job is done, nothing else.
CREATE FUNCTION migration_ext.move_swept(migration text) RETURNS boolean
	LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
	RETURN coalesce((SELECT m.phase IN ('converted', 'contracted')
						 OR (m.phase = 'backfilling'
							 AND (SELECT migration_ext.effective_state(j) FROM migration_ext.backfill_job j
								  WHERE j.id = m.job) = 'done')
					 FROM migration_ext.migration m WHERE m.name = move_swept.migration), false);

-- The column map of a move, resolved and checked: {V2 column: V1 column} for every V2 column that receives
-- one. Same-named columns by default; `column_map` adds or renames pairs, a JSON null leaves a V2 column
-- out. The converted column (column_name, in V2) comes from source_column (in V1).
CREATE FUNCTION migration_ext.plan_table_move(relation regclass, target_relation regclass, column_name name,
											  source_column name, column_map jsonb)
	RETURNS jsonb LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	resolved jsonb;
	walk record;
	problem text;
	target_keys name[];
	owner oid := (SELECT c.relowner FROM pg_class c WHERE c.oid = relation);
BEGIN
	IF target_relation = relation THEN
		RAISE EXCEPTION 'a table move copies into another table, not into % itself', relation
			USING ERRCODE = 'invalid_parameter_value',
				HINT = 'Leave target_relation out to convert the column in place.';
	END IF;
	SELECT format('%s is %s', x, CASE c.relkind WHEN 'p' THEN 'a partitioned table' WHEN 'v' THEN 'a view'
											  WHEN 'f' THEN 'a foreign table' ELSE 'not a table' END)
	INTO problem FROM unnest(ARRAY[relation, target_relation]) x JOIN pg_class c ON c.oid = x WHERE c.relkind <> 'r'
	LIMIT 1;
	IF problem IS NOT NULL THEN
		RAISE EXCEPTION 'cannot move %: %', relation, problem USING ERRCODE = 'feature_not_supported',
			DETAIL = 'A table move mirrors writes between two ordinary tables.';
	END IF;
	IF (SELECT c.relpersistence FROM pg_class c WHERE c.oid = relation) = 't'
	   OR (SELECT c.relpersistence FROM pg_class c WHERE c.oid = target_relation) = 't' THEN
		RAISE EXCEPTION 'cannot move % to %: a temporary table', relation, target_relation
			USING ERRCODE = 'feature_not_supported';
	END IF;
	IF (SELECT c.relowner FROM pg_class c WHERE c.oid = relation)
	   <> (SELECT c.relowner FROM pg_class c WHERE c.oid = target_relation) THEN
		RAISE EXCEPTION '% and % have different owners', relation, target_relation
			USING ERRCODE = 'insufficient_privilege',
				DETAIL = 'The mirrors and the sweep write one table on behalf of the other; each table''s triggers, defaults and policies would otherwise run with the other owner''s rights.',
				HINT = 'Give both tables the same owner (ALTER TABLE ... OWNER TO).';
	END IF;
	IF column_map IS NOT NULL AND jsonb_typeof(column_map) <> 'object' THEN
		RAISE EXCEPTION 'column_map must be a JSON object {"V2 column": "V1 column"}, not %', column_map
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	PERFORM migration_ext.checked_column(target_relation, column_name);
	PERFORM migration_ext.checked_column(relation, source_column);
	-- Same names, then the map, then the converted column.
	SELECT coalesce(jsonb_object_agg(a.attname, a.attname), '{}') INTO resolved
	FROM pg_attribute a WHERE a.attrelid = target_relation AND a.attnum > 0 AND NOT a.attisdropped
	  AND EXISTS (SELECT FROM pg_attribute b WHERE b.attrelid = relation AND b.attname = a.attname AND b.attnum > 0
				  AND NOT b.attisdropped);
	resolved := jsonb_strip_nulls(resolved || coalesce(column_map, '{}')) - (column_name::text);
	resolved := resolved || jsonb_build_object(column_name, source_column);
	SELECT format('%s: %s', e.key, e.value) INTO problem FROM jsonb_each(resolved) e
	WHERE jsonb_typeof(e.value) <> 'string'
	   OR NOT EXISTS (SELECT FROM pg_attribute a WHERE a.attrelid = target_relation AND a.attname = e.key
					  AND a.attnum > 0 AND NOT a.attisdropped)
	   OR NOT EXISTS (SELECT FROM pg_attribute a WHERE a.attrelid = relation AND a.attname = e.value ->> 0
					  AND a.attnum > 0 AND NOT a.attisdropped)
	LIMIT 1;
	IF problem IS NOT NULL THEN
		RAISE EXCEPTION 'column_map pairs a column of % with a column of %; this pair is not: %', target_relation,
			relation, problem USING ERRCODE = 'undefined_column';
	END IF;
	-- Generated columns are computed, not written.
	SELECT string_agg(format('%s.%I', x.rel, a.attname), ', ') INTO problem
	FROM jsonb_each_text(resolved) e,
		 LATERAL (VALUES (target_relation, e.key), (relation, e.value)) x(rel, col)
		 JOIN pg_attribute a ON a.attrelid = x.rel AND a.attname = x.col AND a.attgenerated <> '';
	IF problem IS NOT NULL THEN
		RAISE EXCEPTION 'cannot mirror generated column(s) %', problem USING ERRCODE = 'feature_not_supported',
			HINT = 'Leave them out of the map with column_map => ''{"<column>": null}''.';
	END IF;
	-- Each table receives rows with only the mapped columns: the others need a default or must allow NULL.
	SELECT string_agg(format('%s.%I', x.rel, a.attname), ', ') INTO problem
	FROM (VALUES (target_relation, (SELECT array_agg(k) FROM jsonb_object_keys(resolved) k)),
				 (relation, (SELECT array_agg(v) FROM jsonb_each_text(resolved) e(k, v)))) x(rel, mapped)
	JOIN pg_attribute a ON a.attrelid = x.rel AND a.attnum > 0 AND NOT a.attisdropped
	WHERE NOT a.attname = ANY (x.mapped) AND a.attnotnull AND NOT a.atthasdef AND a.attidentity = ''
	  AND a.attgenerated = '';
	IF problem IS NOT NULL THEN
		RAISE EXCEPTION 'column(s) % receive nothing from the other table, and are NOT NULL without a default', problem
			USING ERRCODE = 'not_null_violation',
				DETAIL = 'The mirrors insert rows with the mapped columns only.',
				HINT = 'Map them with column_map, or give them a default.';
	END IF;
	-- Every value must cast to the other table's type, both ways (the converted one only back: forward it is
	-- the codec's text form, read as V2's type).
	FOR walk IN
		SELECT e.key AS target, e.value AS source, format_type(ta.atttypid, ta.atttypmod) AS target_type,
			   format_type(sa.atttypid, sa.atttypmod) AS source_type
		FROM jsonb_each_text(resolved) e
		JOIN pg_attribute ta ON ta.attrelid = target_relation AND ta.attname = e.key
		JOIN pg_attribute sa ON sa.attrelid = relation AND sa.attname = e.value LOOP
		-- As the tables' owner, restricted: a cast's function or a domain's CHECK is theirs to run.
		BEGIN
			IF walk.target <> column_name THEN
				PERFORM migration_ext.run_as(owner, format('SELECT NULL::%s::%s', walk.source_type, walk.target_type),
											 'pg_catalog, pg_temp');
			END IF;
			PERFORM migration_ext.run_as(owner, format('SELECT NULL::%s::%s', walk.target_type, walk.source_type),
										 'pg_catalog, pg_temp');
		EXCEPTION WHEN cannot_coerce OR undefined_function THEN
			RAISE EXCEPTION 'cannot mirror %.% (%) and %.% (%): no cast between the types', relation,
				quote_ident(walk.source), walk.source_type, target_relation, quote_ident(walk.target), walk.target_type
				USING ERRCODE = 'datatype_mismatch', HINT = 'Map other columns with column_map, or add a cast.';
		END;
	END LOOP;
	-- Rows are the same row on both sides by V1's key: it must be mapped, onto a unique key of V2 (which the
	-- mirrors' ON CONFLICT names, and on which the sweep recognises rows V2 already has).
	SELECT * INTO walk FROM migration_ext.walk_key(relation);
	SELECT array_agg(e.key ORDER BY e.key) INTO target_keys FROM jsonb_each_text(resolved) e
	WHERE e.value = ANY (walk.key_columns);
	IF coalesce(cardinality(target_keys), 0) <> cardinality(walk.key_columns) THEN
		RAISE EXCEPTION 'the key (%) of % is not mapped onto %', array_to_string(walk.key_columns, ', '), relation,
			target_relation USING ERRCODE = 'invalid_parameter_value',
			DETAIL = 'A row is the same row in both tables by this key.',
			HINT = 'Map each key column with column_map => ''{"<V2 column>": "<V1 column>"}''.';
	END IF;
	IF NOT EXISTS (SELECT FROM pg_index i WHERE i.indrelid = target_relation AND i.indisunique AND i.indpred IS NULL
				   AND i.indexprs IS NULL AND i.indimmediate AND i.indisvalid
				   AND (SELECT array_agg(a.attname ORDER BY a.attname) FROM pg_attribute a
						WHERE a.attrelid = target_relation AND a.attnum = ANY (i.indkey)) = target_keys) THEN
		RAISE EXCEPTION '% has no unique index on (%), where the key of % lands', target_relation,
			array_to_string(target_keys, ', '), relation USING ERRCODE = 'object_not_in_prerequisite_state',
			DETAIL = 'Rows are recognised in both tables by their key; rows the application wrote to the new table are never overwritten by the sweep.',
			HINT = format('CREATE UNIQUE INDEX CONCURRENTLY ON %s (%s)', target_relation,
						  (SELECT string_agg(quote_ident(k), ', ') FROM unnest(target_keys) k));
	END IF;
	RETURN resolved;
END
$$;

-- V2's row built from V1's row `s`: each mapped column as the mirror writes it, the others NULL.
CREATE FUNCTION migration_ext.move_target_row(m migration_ext.migration) RETURNS text
	LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$
	SELECT string_agg(coalesce((SELECT migration_ext.move_value(m, c, 's') FROM migration_ext.move_columns(m) c
								WHERE c.target = a.attname),
							   format('NULL::%s', format_type(a.atttypid, a.atttypmod))), ', ' ORDER BY a.attnum)
	FROM pg_attribute a WHERE a.attrelid = m.target_relation AND a.attnum > 0 AND NOT a.attisdropped
$$;

-- The two helpers of a move, created in V2's schema as the tables' owner (ordinary functions of theirs,
-- run as their callers):
--   <V2>_read(<V2's key>): V2's row; else, until the sweep has finished, V1's, converted, stored in V2 and
--     returned (read-through). Where it cannot be stored (a read-only transaction, a standby, no INSERT
--     privilege, a row a writer holds) it is returned converted without storing, V2's own columns NULL.
--   <V2>_list(): every row: from V1 (V2's version where V2 has the row) until the sweep has finished, then
--     from V2 alone.
CREATE FUNCTION migration_ext.create_move_helpers(m migration_ext.migration) RETURNS text[]
	LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $helpers$
DECLARE
	owner oid := (SELECT c.relowner FROM pg_class c WHERE c.oid = m.target_relation);
	target_schema name := (SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
						   WHERE c.oid = m.target_relation);
	base name := (SELECT c.relname FROM pg_class c WHERE c.oid = m.target_relation);
	read_name text := format('%I.%I', target_schema, left(base, 58) || '_read');
	list_name text := format('%I.%I', target_schema, left(base, 58) || '_list');
	parameters text;        -- V2's key columns, as the reader's parameters
	target_by_key text;     -- V2's row of those parameters
	source_by_key text;     -- V1's row of those parameters
	same_row text;          -- V2's row t is V1's row s
	columns text;
	values text;
	source_row text := migration_ext.move_target_row(m);
BEGIN
	-- A function of either name, whatever its arguments, could be what a caller's call resolves to: the
	-- names must be free in the schema.
	IF EXISTS (SELECT FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
			   WHERE n.nspname = target_schema AND p.proname IN (left(base, 58) || '_read', left(base, 58) || '_list')) THEN
		RAISE EXCEPTION 'a function named %_read or %_list already exists in schema %', left(base, 58), left(base, 58),
			quote_ident(target_schema) USING ERRCODE = 'duplicate_function',
			DETAIL = 'A table move creates its read-through and listing helpers under these names, next to V2.',
			HINT = 'Drop or rename the existing function, or move V2 to a schema of its own.';
	END IF;
	SELECT string_agg(format('%I %s', c.target, c.target_type), ', ' ORDER BY c.target),
		   string_agg(format('t.%I = $%s', c.target, c.n), ' AND ' ORDER BY c.target),
		   string_agg(format('s.%I = $%s::%s', c.source, c.n, c.source_type), ' AND ' ORDER BY c.target),
		   string_agg(format('t.%I = s.%I::%s', c.target, c.source, c.target_type), ' AND ' ORDER BY c.target)
	INTO parameters, target_by_key, source_by_key, same_row
	FROM (SELECT c.*, row_number() OVER (ORDER BY c.target) AS n FROM migration_ext.move_columns(m) c WHERE c.is_key) c;
	SELECT string_agg(quote_ident(c.target), ', '), string_agg(migration_ext.move_value(m, c, 's'), ', ')
	INTO columns, values FROM migration_ext.move_columns(m) c;
	-- V1's row is read FOR SHARE: one deleted meanwhile (its deletion mirrored into V2) is never stored back.
	-- A reader does not queue behind a writer to store what it can return anyway: a V1 row a writer holds
	-- is skipped (SKIP LOCKED), any other lock (V2's row being inserted, V1's row under the backward
	-- mirror) is waited for 1 ms at most.
	PERFORM migration_ext.run_as(owner, format(
		'CREATE FUNCTION %s(%s) RETURNS SETOF %s LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS %L',
		read_name, parameters, m.target_relation, format($fn$
#variable_conflict use_column
DECLARE
	caller_lock_timeout text := current_setting('lock_timeout');
	stored boolean;
BEGIN
	RETURN QUERY SELECT t.* FROM ONLY %3$s AS t WHERE %4$s;
	-- Once the sweep has finished V2 has every row; after the contract V1 is no longer written, and a row
	-- deleted from V2 since is not V1's to bring back.
	IF FOUND OR migration_ext.move_swept(%10$L) THEN
		RETURN;
	END IF;
	BEGIN
		PERFORM set_config('lock_timeout', '1', true);
		RETURN QUERY INSERT INTO %3$s AS t (%5$s) SELECT %6$s FROM ONLY %7$s AS s WHERE %8$s
			FOR SHARE OF s SKIP LOCKED ON CONFLICT DO NOTHING RETURNING t.*;
		stored := FOUND;
		PERFORM set_config('lock_timeout', caller_lock_timeout, true);
		IF stored THEN
			RETURN;
		END IF;
	EXCEPTION WHEN read_only_sql_transaction OR insufficient_privilege OR lock_not_available THEN
		NULL;
	END;
	-- Stored meanwhile by another transaction; else not stored (V1's row is being written, or this
	-- transaction cannot write): V1's row as this statement sees it, converted.
	RETURN QUERY SELECT t.* FROM ONLY %3$s AS t WHERE %4$s;
	IF NOT FOUND THEN
		RETURN QUERY SELECT %9$s FROM ONLY %7$s AS s WHERE %8$s;
	END IF;
END
$fn$,
		read_name, parameters, m.target_relation, target_by_key, columns, values, m.relation, source_by_key,
		source_row, m.name)), 'pg_catalog, pg_temp');
	PERFORM migration_ext.run_as(owner, format(
		'CREATE FUNCTION %s() RETURNS SETOF %s LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS %L',
		list_name, m.target_relation, format($fn$
BEGIN
	IF migration_ext.move_swept(%3$L) THEN
		RETURN QUERY SELECT t.* FROM ONLY %2$s AS t;
	ELSE
		RETURN QUERY SELECT t.* FROM ONLY %2$s AS t WHERE EXISTS (SELECT FROM ONLY %4$s AS s WHERE %5$s)
			UNION ALL SELECT %6$s FROM ONLY %4$s AS s WHERE NOT EXISTS (SELECT FROM ONLY %2$s AS t WHERE %5$s);
	END IF;
END
$fn$,
		list_name, m.target_relation, m.name, m.relation, same_row, source_row)), 'pg_catalog, pg_temp');
	RETURN ARRAY[format('%s(%s)', read_name, parameters), list_name || '()'];
END
$helpers$;

-- Every step of a move acts on both tables as their owner: the actor must still be allowed to act on both,
-- and they must still have one owner (an ALTER TABLE ... OWNER TO since the migration was created would
-- otherwise have one owner's step write the other's table).
CREATE FUNCTION migration_ext.require_move_owner(actor regrole, m migration_ext.migration, action text) RETURNS void
	LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM migration_ext.require_table_owner(actor, m.relation, action);
	PERFORM migration_ext.require_table_owner(actor, m.target_relation, action);
	IF (SELECT c.relowner FROM pg_class c WHERE c.oid = m.relation)
	   <> (SELECT c.relowner FROM pg_class c WHERE c.oid = m.target_relation) THEN
		RAISE EXCEPTION 'cannot % of migration "%": % and % no longer have the same owner', action, m.name, m.relation,
			m.target_relation USING ERRCODE = 'insufficient_privilege',
				DETAIL = 'A table move writes each table on behalf of the other, as their one owner.',
				HINT = 'Give both tables the same owner again (ALTER TABLE ... OWNER TO).';
	END IF;
END
$$;

-- create_migration() of a move: the forward mirror from now on, and the helpers.
CREATE FUNCTION migration_ext.open_table_move(actor regrole, m migration_ext.migration) RETURNS void
	LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	helpers text[];
BEGIN
	PERFORM migration_ext.create_move_mirror(m, true);
	INSERT INTO migration_ext.migration_event (migration, event, detail, by_role)
	VALUES (m.name, 'mirror', format('writes to %s land in %s', m.relation, m.target_relation), pg_get_userbyid(actor));
	helpers := migration_ext.create_move_helpers(m);
	INSERT INTO migration_ext.migration_event (migration, event, detail, by_role)
	VALUES (m.name, 'helpers', 'created ' || array_to_string(helpers, ', '), pg_get_userbyid(actor));
	RAISE NOTICE 'migration "%": writes to % now land in % too; created the read-through % and the listing %',
		m.name, m.relation, m.target_relation, helpers[1], helpers[2];
END
$$;

-- Converted requires V1 and V2 to agree: the same keys, and for each row the same mapped values (V1's
-- converted), compared by a hash of their text forms. One plain scan of each table, as their owner, in one
-- snapshot: writers go on (the mirrors keep both sides equal in each transaction).
CREATE FUNCTION migration_ext.verify_table_move(actor regrole, m migration_ext.migration) RETURNS void
	LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	source_key text;
	target_key text;
	source_values text;
	target_values text;
	found jsonb;
BEGIN
	SELECT string_agg(format('(s.%I)::%s', c.source, c.target_type), ', ') FILTER (WHERE c.is_key),
		   string_agg(format('t.%I', c.target), ', ') FILTER (WHERE c.is_key),
		   string_agg(migration_ext.move_value(m, c, 's'), ', '), string_agg(format('t.%I', c.target), ', ')
	INTO source_key, target_key, source_values, target_values FROM migration_ext.move_columns(m) c;
	found := migration_ext.run_as((SELECT c.relowner FROM pg_class c WHERE c.oid = m.relation), format($q$
SELECT jsonb_build_object('source_rows', count(a.k), 'target_rows', count(b.k),
	'source_only', count(*) FILTER (WHERE b.k IS NULL), 'target_only', count(*) FILTER (WHERE a.k IS NULL),
	'differ', count(*) FILTER (WHERE a.h <> b.h),
	'sample', concat_ws('; ',
		%7$L || array_to_string((array_agg(a.k ORDER BY a.k) FILTER (WHERE b.k IS NULL))[1:5], ', '),
		%8$L || array_to_string((array_agg(b.k ORDER BY b.k) FILTER (WHERE a.k IS NULL))[1:5], ', '),
		'different: ' || array_to_string((array_agg(a.k ORDER BY a.k) FILTER (WHERE a.h <> b.h))[1:5], ', ')))::text
FROM (SELECT ROW(%1$s)::text AS k, md5(ROW(%2$s)::text) AS h FROM ONLY %3$s AS s) a
FULL JOIN (SELECT ROW(%4$s)::text AS k, md5(ROW(%5$s)::text) AS h FROM ONLY %6$s AS t) b ON a.k = b.k$q$,
		source_key, source_values, m.relation, target_key, target_values, m.target_relation,
		format('only in %s: ', m.relation), format('only in %s: ', m.target_relation)),
		'pg_catalog, pg_temp')::jsonb;
	IF (found ->> 'source_only')::bigint + (found ->> 'target_only')::bigint + (found ->> 'differ')::bigint > 0 THEN
		RAISE EXCEPTION 'cannot advance migration "%": % and % do not agree', m.name, m.relation, m.target_relation
			USING ERRCODE = 'object_not_in_prerequisite_state',
				DETAIL = format('%s row(s) only in %s, %s only in %s, %s with different values (keys: %s).',
								found ->> 'source_only', m.relation, found ->> 'target_only', m.target_relation,
								found ->> 'differ', found ->> 'sample'),
				HINT = format('Rows only in %s are ones the sweep has not copied: start_backfill(%L) again copies them. '
							  'Others were written around the mirrors (before the point of no return to %s, or '
							  'with triggers disabled).', m.relation, m.name, m.target_relation);
	END IF;
	INSERT INTO migration_ext.migration_event (migration, event, detail, by_role)
	VALUES (m.name, 'verify', format('%s and %s agree: %s rows each, every mapped value equal', m.relation,
									 m.target_relation, found ->> 'source_rows'), pg_get_userbyid(actor));
END
$$;

-- The contract of a move: the CHECK that refuses the legacy format on V2's column (NOT VALID, then
-- validated), and both mirrors dropped.
CREATE FUNCTION migration_ext.move_contract_statements(m migration_ext.migration, OUT statements text[],
													   OUT constraint_name name)
	LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	on_target migration_ext.migration := m;
	contract record;
BEGIN
	on_target.relation := m.target_relation;
	on_target.source_column := NULL;
	SELECT * INTO contract FROM migration_ext.contract_statements(on_target);
	statements := contract.statements
		|| format('DROP TRIGGER IF EXISTS %I ON %s', migration_ext.move_mirror_name(m.name), m.relation)
		|| format('DROP TRIGGER IF EXISTS %I ON %s', migration_ext.move_mirror_name(m.name), m.target_relation);
	constraint_name := contract.constraint_name;
END
$$;

-- After the contract of a move: V1 is renamed <V1>_retired (its rows kept) and a view of V2 takes V1's
-- name, columns and grants, for callers that still name V1. The view reads V2 with its caller's rights
-- (security_invoker): V2's grants and row-level security policies apply to them as they do on V2 (its
-- callers wrote V2 through the mirrors already). Its columns that are plain columns of V2 of the same type
-- are updatable through it.
CREATE FUNCTION @extschema@.replace_with_view(migration text) RETURNS regclass
	LANGUAGE c AS 'MODULE_PATHNAME', 'mext_as_invoker';

CREATE FUNCTION migration_ext.replace_with_view(actor regrole, migration text) RETURNS regclass
	LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	m migration_ext.migration := migration_ext.require_migration(migration, true);
	owner oid := (SELECT c.relowner FROM pg_class c WHERE c.oid = m.relation);
	source_schema name := (SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
						   WHERE c.oid = m.relation);
	source_name name := (SELECT c.relname FROM pg_class c WHERE c.oid = m.relation);
	retired name;
	columns text;
	grants text;
	label text := format('view replacing %s', m.relation);
BEGIN
	IF m.target_relation IS NULL THEN
		PERFORM migration_ext.require_table_owner(actor, m.relation, 'replace it with a view');
		RAISE EXCEPTION 'migration "%" is not a table move', migration USING ERRCODE = 'wrong_object_type';
	END IF;
	PERFORM migration_ext.require_move_owner(actor, m, 'replace V1 with a view');
	IF m.phase <> 'contracted' THEN
		RAISE EXCEPTION 'migration "%" is %: V1 is replaced by a view after the contract', migration, m.phase
			USING ERRCODE = 'object_not_in_prerequisite_state',
				DETAIL = 'Until then both tables are written, and a retreat needs V1.';
	END IF;
	IF (SELECT c.relkind FROM pg_class c WHERE c.oid = m.relation) <> 'r' THEN
		RAISE EXCEPTION '% was already replaced', m.relation USING ERRCODE = 'object_not_in_prerequisite_state';
	END IF;
	retired := left(source_name, 55) || '_retired';
	IF to_regclass(format('%I.%I', source_schema, retired)) IS NOT NULL THEN
		RAISE EXCEPTION 'relation %.% already exists', quote_ident(source_schema), quote_ident(retired)
			USING ERRCODE = 'duplicate_table', HINT = 'Rename or drop it first.';
	END IF;
	-- V1's columns in V1's order and types: from V2 where mapped, else NULL.
	SELECT string_agg(CASE WHEN c.target IS NULL THEN format('NULL::%s AS %I', format_type(a.atttypid, a.atttypmod), a.attname)
						   WHEN c.target_type = c.source_type THEN format('t.%I AS %I', c.target, a.attname)
						   ELSE format('t.%I::%s AS %I', c.target, c.source_type, a.attname) END, ', ' ORDER BY a.attnum)
	INTO columns
	FROM pg_attribute a LEFT JOIN migration_ext.move_columns(m) c ON c.source = a.attname
	WHERE a.attrelid = m.relation AND a.attnum > 0 AND NOT a.attisdropped;
	SELECT string_agg(format('GRANT %s ON %I.%I TO %s', g.privilege_type, source_schema, source_name,
							 CASE WHEN g.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(g.grantee)) END), '; ')
	INTO grants
	FROM pg_class c, LATERAL aclexplode(c.relacl) g
	WHERE c.oid = m.relation AND g.grantee <> c.relowner
	  AND g.privilege_type IN ('SELECT', 'INSERT', 'UPDATE', 'DELETE');
	PERFORM migration_ext.require_no_lock_held(m.relation, 'replace it with a view');
	PERFORM migration_ext.run_briefly(owner, format('ALTER TABLE %s RENAME TO %I', m.relation, retired), label);
	PERFORM migration_ext.run_as(owner, format('CREATE VIEW %I.%I WITH (security_invoker = true) AS SELECT %s FROM %s AS t', source_schema,
											   source_name, columns, m.target_relation), 'pg_catalog, pg_temp');
	IF grants IS NOT NULL THEN
		PERFORM migration_ext.run_as(owner, g, 'pg_catalog, pg_temp') FROM unnest(string_to_array(grants, '; ')) g;
	END IF;
	INSERT INTO migration_ext.migration_event (migration, event, detail, by_role)
	VALUES (migration, 'replace_with_view', format('%I.%I is a view of %s; the table is %I.%I', source_schema,
												   source_name, m.target_relation, source_schema, retired),
			pg_get_userbyid(actor));
	RETURN format('%I.%I', source_schema, source_name)::regclass;
END
$$;
