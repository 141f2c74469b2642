------------------------------------------------------------------------------------------------------
-- Codecs
------------------------------------------------------------------------------------------------------

CREATE TABLE migration_ext.codec (
	name       text PRIMARY KEY CHECK (name <> '' AND octet_length(name) < 64),
	convert    text NOT NULL,
	marker     text,
	detect     text NOT NULL CHECK (detect IN ('converted', 'absent', 'null')),
	shape      text,
	created_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
	created_by name NOT NULL
);
-- Every backend reads codecs on a cache miss, as whatever role calls migrate_value.
GRANT SELECT ON migration_ext.codec TO PUBLIC;
-- An API function that changes state: calls migration_ext.<its name>(<the calling role>, <its arguments>).
-- (Each is declared with LANGUAGE c AS 'MODULE_PATHNAME', 'mext_as_invoker'.)

CREATE FUNCTION migration_ext.codec_changed() RETURNS trigger
	LANGUAGE c AS 'MODULE_PATHNAME', 'mext_codec_changed';

CREATE TRIGGER codec_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON migration_ext.codec
	FOR EACH STATEMENT EXECUTE FUNCTION migration_ext.codec_changed();

-- Validates a definition, and that every function an fn: step names may be used by `actor` (see codec_cache.cpp).
CREATE FUNCTION migration_ext.codec_check(actor regrole, convert text, marker text, detect text, shape text) RETURNS void
	LANGUAGE c STABLE AS 'MODULE_PATHNAME', 'mext_codec_check';

CREATE FUNCTION migration_ext.classify(codec text, value text) RETURNS text
	LANGUAGE c STABLE PARALLEL SAFE AS 'MODULE_PATHNAME', 'mext_classify';

CREATE FUNCTION @extschema@.is_legacy(codec text, value text) RETURNS boolean
	LANGUAGE c STABLE PARALLEL SAFE AS 'MODULE_PATHNAME', 'mext_is_legacy';

-- is_legacy() for a codec of built-in steps given by its definition: what a contract's CHECK calls.
CREATE FUNCTION migration_ext.is_legacy_by_definition(convert text, marker text, detect text, shape text,
													  value text) RETURNS boolean
	LANGUAGE c STABLE PARALLEL SAFE AS 'MODULE_PATHNAME', 'mext_is_legacy_by_definition';

CREATE FUNCTION @extschema@.migrate_value(codec text, value text) RETURNS text
	LANGUAGE c STABLE PARALLEL SAFE AS 'MODULE_PATHNAME', 'mext_migrate_value';

-- migrate_value() for a value of any other type (jsonb, bytea, integer, a domain, an array...): converted
-- on its text form and read back as its type, so that a reader needs no cast. Text-like arguments
-- resolve to the text form above.
CREATE FUNCTION @extschema@.migrate_value(codec text, value anyelement) RETURNS anyelement
	LANGUAGE c STABLE PARALLEL SAFE AS 'MODULE_PATHNAME', 'mext_migrate_value_any';

-- The batch's cast of a converted text form back to its column's type (the type of `model`, a typed
-- NULL): a value that does not read fails naming the row's key, before the UPDATE would fail without it.
CREATE FUNCTION migration_ext.cast_converted(value text, model anyelement, key text[]) RETURNS anyelement
	LANGUAGE c STABLE PARALLEL SAFE AS 'MODULE_PATHNAME', 'mext_cast_converted';

CREATE FUNCTION @extschema@.create_codec(name text, convert text, marker text DEFAULT NULL,
										  detect text DEFAULT 'converted', shape text DEFAULT NULL)
	RETURNS void LANGUAGE c AS 'MODULE_PATHNAME', 'mext_as_invoker';

CREATE FUNCTION migration_ext.create_codec(actor regrole, name text, convert text, marker text, detect text, shape text)
	RETURNS void LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM migration_ext.require_codec_authority('create a codec');
	IF create_codec.name IS NULL OR btrim(create_codec.name) = '' THEN
		RAISE EXCEPTION 'codec name must not be empty' USING ERRCODE = 'invalid_parameter_value',
			HINT = 'Name the codec, for example create_codec(''token_plain'', ...).';
	END IF;
	IF octet_length(create_codec.name) >= 64 THEN
		RAISE EXCEPTION 'codec name "%" is too long', create_codec.name USING ERRCODE = 'name_too_long',
			DETAIL = 'Codec names are at most 63 bytes.';
	END IF;
	IF create_codec.convert IS NULL THEN
		RAISE EXCEPTION 'codec conversion must not be NULL' USING ERRCODE = 'null_value_not_allowed',
			HINT = 'Give a pipeline such as ''reverse'' or ''strip_prefix:v1:|base64_decode|add_prefix:v2:''.';
	END IF;
	IF create_codec.detect IS NULL THEN
		RAISE EXCEPTION 'codec detect mode must not be NULL' USING ERRCODE = 'null_value_not_allowed',
			HINT = 'Use ''converted'', ''absent'' or ''null''.';
	END IF;
	-- Codec names are the database's, as schema names are: taking one takes CREATE on the database.
	IF NOT has_database_privilege(actor, current_database(), 'CREATE') THEN
		RAISE EXCEPTION 'permission denied to create codec "%"', create_codec.name
			USING ERRCODE = 'insufficient_privilege',
				DETAIL = format('Role %s has no CREATE privilege on database %s.', actor, current_database()),
				HINT = 'Codec names are shared by the whole database, like schema names.';
	END IF;
	IF EXISTS (SELECT FROM migration_ext.codec c WHERE c.name = create_codec.name) THEN
		RAISE EXCEPTION 'codec "%" already exists', create_codec.name USING ERRCODE = 'duplicate_object',
			HINT = 'Drop it first with drop_codec(), or choose another name.';
	END IF;
	PERFORM migration_ext.codec_check(actor, create_codec.convert, create_codec.marker, create_codec.detect,
									  create_codec.shape);
	INSERT INTO migration_ext.codec (name, convert, marker, detect, shape, created_by)
	VALUES (create_codec.name, create_codec.convert, create_codec.marker, create_codec.detect, create_codec.shape,
			pg_get_userbyid(actor));
	PERFORM migration_ext.propagate_codecs(ARRAY[create_codec.name]);
END
$$;

CREATE FUNCTION @extschema@.drop_codec(name text) RETURNS void
	LANGUAGE c AS 'MODULE_PATHNAME', 'mext_as_invoker';

-- A codec is dropped by its creator (or a member of that role) or a superuser.
CREATE FUNCTION migration_ext.drop_codec(actor regrole, name text) RETURNS void LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	user_migration text;
	creator name;
BEGIN
	PERFORM migration_ext.require_codec_authority('drop a codec');
	SELECT c.created_by INTO creator FROM migration_ext.codec c WHERE c.name = drop_codec.name;
	IF FOUND AND NOT (coalesce((SELECT r.rolsuper FROM pg_roles r WHERE r.oid = actor), false)
					  OR coalesce((SELECT pg_has_role(actor, r.oid, 'USAGE') FROM pg_roles r WHERE r.rolname = creator), false)) THEN
		RAISE EXCEPTION 'must be a member of role % to drop codec "%"', creator, drop_codec.name
			USING ERRCODE = 'insufficient_privilege', DETAIL = format('Role %s created it.', creator);
	END IF;
	IF to_regclass('migration_ext.migration') IS NOT NULL THEN
		SELECT m.name INTO user_migration FROM migration_ext.migration m WHERE m.codec = drop_codec.name LIMIT 1;
		IF FOUND THEN
			RAISE EXCEPTION 'codec "%" is used by migration "%"', drop_codec.name, user_migration
				USING ERRCODE = 'dependent_objects_still_exist',
					HINT = 'A migration keeps its codec for its whole life, its contract included.';
		END IF;
	END IF;
	IF EXISTS (SELECT FROM migration_ext.backfill_job b WHERE b.codec = drop_codec.name
			   AND b.state NOT IN ('done', 'failed', 'cancelled')) THEN
		RAISE EXCEPTION 'codec "%" is used by an unfinished backfill job', drop_codec.name
			USING ERRCODE = 'dependent_objects_still_exist', HINT = 'Wait for the job, or cancel it; see backfill_status.';
	END IF;
	IF EXISTS (SELECT FROM pg_trigger t WHERE t.tgfoid = 'migration_ext.mirror_trigger()'::regprocedure
			   AND (pg_catalog.string_to_array(pg_catalog.encode(t.tgargs, 'escape'), '\000'))[3] = drop_codec.name) THEN
		RAISE EXCEPTION 'codec "%" is used by a mirror trigger', drop_codec.name
			USING ERRCODE = 'dependent_objects_still_exist', HINT = 'Drop the mirror first with drop_mirror().';
	END IF;
	DELETE FROM migration_ext.codec c WHERE c.name = drop_codec.name;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'codec "%" does not exist', drop_codec.name USING ERRCODE = 'undefined_object';
	END IF;
	PERFORM migration_ext.propagate_codecs(ARRAY[drop_codec.name]);
END
$$;

CREATE FUNCTION migration_ext.require_codec(codec text) RETURNS void
	LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF NOT EXISTS (SELECT FROM migration_ext.codec c WHERE c.name = codec) THEN
		RAISE EXCEPTION 'codec "%" does not exist', codec USING ERRCODE = 'undefined_object',
			HINT = 'Create it with create_codec(name, convert, marker, detect, shape).';
	END IF;
END
$$;

-- Rows in a table: its statistics, or the planner's guess from its size before the first ANALYZE. Planning
-- may evaluate the table's row-security policies: a superuser (an implementation function) plans as the
-- table's owner, restricted.
CREATE FUNCTION migration_ext.row_estimate(relation regclass) RETURNS bigint
	LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	statement text := format('EXPLAIN (FORMAT JSON) SELECT 1 FROM %s', relation);
	plan json;
BEGIN
	IF (SELECT r.rolsuper FROM pg_roles r WHERE r.rolname = current_user) THEN
		plan := migration_ext.run_as((SELECT c.relowner FROM pg_class c WHERE c.oid = relation), statement,
									 'pg_catalog, pg_temp')::json;
	ELSE
		EXECUTE statement INTO plan;
	END IF;
	RETURN (plan -> 0 -> 'Plan' ->> 'Plan Rows')::numeric::bigint;
END
$$;

-- The column a codec function may read: it must exist and not be dropped. Any type will do: codecs work
-- on its text form (its type's output), and what they produce is read back by its type's input.
CREATE FUNCTION migration_ext.checked_column(relation regclass, column_name name) RETURNS regtype
	LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	column_type regtype;
BEGIN
	IF relation IS NULL OR column_name IS NULL THEN
		RAISE EXCEPTION 'relation and column must not be NULL' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	SELECT a.atttypid::regtype INTO column_type
	FROM pg_attribute a
	WHERE a.attrelid = relation AND a.attname = column_name AND a.attnum > 0 AND NOT a.attisdropped;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'column "%" of relation % does not exist', column_name, relation
			USING ERRCODE = 'undefined_column';
	END IF;
	RETURN column_type;
END
$$;

CREATE FUNCTION @extschema@.count_legacy(relation regclass, column_name name, codec text) RETURNS bigint
	LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	result bigint;
BEGIN
	PERFORM migration_ext.checked_column(relation, column_name);
	PERFORM migration_ext.require_codec(codec);
	EXECUTE format('SELECT count(*) FROM %s WHERE %s.is_legacy($1, %I::text)',
				   relation, quote_ident('@extschema@'), column_name)
		INTO result USING codec;
	RETURN result;
END
$$;

CREATE FUNCTION @extschema@.audit_column(relation regclass, column_name name, codec text)
	RETURNS TABLE (legacy bigint, target bigint, ambiguous bigint, nulls bigint, other bigint, total bigint)
	LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM migration_ext.checked_column(relation, column_name);
	PERFORM migration_ext.require_codec(codec);
	RETURN QUERY EXECUTE format(
		'SELECT count(*) FILTER (WHERE v = ''legacy''), count(*) FILTER (WHERE v = ''target''),
				count(*) FILTER (WHERE v = ''ambiguous''), count(*) FILTER (WHERE v = ''null''),
				count(*) FILTER (WHERE v = ''other''), count(*)
		 FROM (SELECT migration_ext.classify($1, %I::text) AS v FROM %s) s', column_name, relation)
		USING codec;
END
$$;
