------------------------------------------------------------------------------------------------------
-- Column moves: the dual-write trigger while both columns live (expand -> migrate -> contract).
------------------------------------------------------------------------------------------------------

-- Every write to the source column lands converted in the target column too. A write that sets the
-- target itself (a writer already flipped) and leaves the source alone is kept as written. Columns that
-- are not text are converted on their text form, the target's cast back to its type.
CREATE FUNCTION migration_ext.mirror_trigger() RETURNS trigger
	LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	source_value text := to_jsonb(NEW) ->> TG_ARGV[0];
	typed_source boolean;
	typed_target boolean;
	columns text;
BEGIN
	-- A writer that sets only the target (already flipped) keeps what it wrote: on INSERT when it gives
	-- no source, on UPDATE when it leaves the source alone.
	IF (to_jsonb(NEW) ->> TG_ARGV[1]) IS NOT NULL
	   AND ((TG_OP = 'INSERT' AND source_value IS NULL)
			OR (TG_OP = 'UPDATE' AND source_value IS NOT DISTINCT FROM (to_jsonb(OLD) ->> TG_ARGV[0]))) THEN
		RETURN NEW;
	END IF;
	SELECT bool_or(a.attname = TG_ARGV[0]), bool_or(a.attname = TG_ARGV[1]) INTO typed_source, typed_target
	FROM pg_attribute a WHERE a.attrelid = TG_RELID AND a.attname IN (TG_ARGV[0], TG_ARGV[1]) AND a.attnum > 0
	  AND NOT a.attisdropped AND a.atttypid <> 'text'::regtype;
	IF NOT coalesce(typed_source OR typed_target, false) THEN
		NEW := jsonb_populate_record(NEW, jsonb_build_object(TG_ARGV[1],
			@extschema@.migrate_value(TG_ARGV[2], source_value)));
		RETURN NEW;
	END IF;
	-- The text form is the type's output (a JSON rendering can differ from it, a timestamp's for instance).
	IF typed_source THEN
		EXECUTE format('SELECT ($1).%I::text', TG_ARGV[0]) INTO source_value USING NEW;
	END IF;
	SELECT string_agg(CASE WHEN a.attname = TG_ARGV[1]
						   THEN format('%I.migrate_value($2, $3)::%s', '@extschema@', format_type(a.atttypid, a.atttypmod))
						   ELSE format('r.%I', a.attname) END, ', ' ORDER BY a.attnum)
	INTO columns FROM pg_attribute a WHERE a.attrelid = TG_RELID AND a.attnum > 0 AND NOT a.attisdropped;
	EXECUTE format('SELECT %s FROM (SELECT ($1).*) r', columns) INTO NEW USING NEW, TG_ARGV[2], source_value;
	RETURN NEW;
END
$$;

CREATE FUNCTION migration_ext.mirror_name(source_column name, target_column name) RETURNS name
	LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp
	RETURN left(format('migration_ext_mirror_%s_to_%s', source_column, target_column), 54) || '_'
		   || left(md5(source_column || '>' || target_column), 8);

CREATE FUNCTION @extschema@.create_mirror(relation regclass, source_column name, target_column name, codec text)
	RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM migration_ext.checked_column(relation, source_column);
	PERFORM migration_ext.checked_column(relation, target_column);
	PERFORM migration_ext.require_codec(codec);
	IF source_column = target_column THEN
		RAISE EXCEPTION 'source and target column are the same' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF EXISTS (SELECT FROM pg_trigger t WHERE t.tgrelid = relation
			   AND t.tgname = migration_ext.mirror_name(source_column, target_column)) THEN
		RAISE EXCEPTION 'a mirror from "%" to "%" on % already exists', source_column, target_column, relation
			USING ERRCODE = 'duplicate_object';
	END IF;
	EXECUTE format('CREATE TRIGGER %I BEFORE INSERT OR UPDATE ON %s FOR EACH ROW '
				   'EXECUTE FUNCTION migration_ext.mirror_trigger(%L, %L, %L)',
				   migration_ext.mirror_name(source_column, target_column), relation, source_column, target_column,
				   codec);
END
$$;

CREATE FUNCTION @extschema@.drop_mirror(relation regclass, source_column name, target_column name)
	RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF NOT EXISTS (SELECT FROM pg_trigger t WHERE t.tgrelid = relation
				   AND t.tgname = migration_ext.mirror_name(source_column, target_column)) THEN
		RAISE EXCEPTION 'no mirror from "%" to "%" on %', source_column, target_column, relation
			USING ERRCODE = 'undefined_object';
	END IF;
	EXECUTE format('DROP TRIGGER %I ON %s', migration_ext.mirror_name(source_column, target_column), relation);
END
$$;
