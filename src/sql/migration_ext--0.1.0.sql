-- migration_ext 0.1.0 — install script.
-- User-facing functions and views live in @extschema@; the extension's own state lives in the schema
-- migration_ext, which users never need to touch. Every reference is schema-qualified and every
-- function pins its search_path, so objects planted earlier on a caller's search_path change nothing.

\echo Use "CREATE EXTENSION migration_ext" to load this file. \quit

CREATE SCHEMA migration_ext;
REVOKE ALL ON SCHEMA migration_ext FROM PUBLIC;
GRANT USAGE ON SCHEMA migration_ext TO PUBLIC;

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
	created_by name NOT NULL DEFAULT CURRENT_USER
);
-- Every backend reads codecs on a cache miss, as whatever role calls migrate_value.
GRANT SELECT ON migration_ext.codec TO PUBLIC;

CREATE FUNCTION migration_ext.codec_changed() RETURNS trigger
	LANGUAGE c AS 'MODULE_PATHNAME', 'mext_codec_changed';

CREATE TRIGGER codec_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON migration_ext.codec
	FOR EACH STATEMENT EXECUTE FUNCTION migration_ext.codec_changed();

CREATE FUNCTION migration_ext.codec_check(convert text, marker text, detect text, shape text) RETURNS void
	LANGUAGE c STABLE AS 'MODULE_PATHNAME', 'mext_codec_check';

CREATE FUNCTION migration_ext.classify(codec text, value text) RETURNS text
	LANGUAGE c STABLE PARALLEL SAFE AS 'MODULE_PATHNAME', 'mext_classify';

CREATE FUNCTION @extschema@.is_legacy(codec text, value text) RETURNS boolean
	LANGUAGE c STABLE PARALLEL SAFE AS 'MODULE_PATHNAME', 'mext_is_legacy';

CREATE FUNCTION @extschema@.migrate_value(codec text, value text) RETURNS text
	LANGUAGE c STABLE PARALLEL SAFE AS 'MODULE_PATHNAME', 'mext_migrate_value';

CREATE FUNCTION @extschema@.create_codec(name text, convert text, marker text DEFAULT NULL,
										  detect text DEFAULT 'converted', shape text DEFAULT NULL)
	RETURNS void LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
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
	IF EXISTS (SELECT FROM migration_ext.codec c WHERE c.name = create_codec.name) THEN
		RAISE EXCEPTION 'codec "%" already exists', create_codec.name USING ERRCODE = 'duplicate_object',
			HINT = 'Drop it first with drop_codec(), or choose another name.';
	END IF;
	PERFORM migration_ext.codec_check(create_codec.convert, create_codec.marker, create_codec.detect,
									  create_codec.shape);
	INSERT INTO migration_ext.codec (name, convert, marker, detect, shape)
	VALUES (create_codec.name, create_codec.convert, create_codec.marker, create_codec.detect, create_codec.shape);
END
$$;

CREATE FUNCTION @extschema@.drop_codec(name text) RETURNS void LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	DELETE FROM migration_ext.codec c WHERE c.name = drop_codec.name;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'codec "%" does not exist', drop_codec.name USING ERRCODE = 'undefined_object';
	END IF;
END
$$;

-- The column a codec function may read: it must exist, not be dropped, and hold text-like data.
CREATE FUNCTION migration_ext.checked_text_column(relation regclass, column_name name) RETURNS name
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
	IF column_type NOT IN ('text'::regtype, 'character varying'::regtype, 'character'::regtype) THEN
		RAISE EXCEPTION 'column "%" of relation % is of type %, not text', column_name, relation, column_type
			USING ERRCODE = 'datatype_mismatch',
				HINT = 'Codecs convert text, varchar and char columns.';
	END IF;
	RETURN column_name;
END
$$;

CREATE FUNCTION @extschema@.count_legacy(relation regclass, column_name name, codec text) RETURNS bigint
	LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	result bigint;
BEGIN
	PERFORM migration_ext.checked_text_column(relation, column_name);
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
	PERFORM migration_ext.checked_text_column(relation, column_name);
	RETURN QUERY EXECUTE format(
		'SELECT count(*) FILTER (WHERE v = ''legacy''), count(*) FILTER (WHERE v = ''target''),
				count(*) FILTER (WHERE v = ''ambiguous''), count(*) FILTER (WHERE v = ''null''),
				count(*) FILTER (WHERE v = ''other''), count(*)
		 FROM (SELECT migration_ext.classify($1, %I::text) AS v FROM %s) s', column_name, relation)
		USING codec;
END
$$;

------------------------------------------------------------------------------------------------------
-- Frozen functions: the signature is a contract, the body is swapped in place, every swap recorded.
------------------------------------------------------------------------------------------------------

CREATE TABLE migration_ext.frozen_function (
	fn              regprocedure PRIMARY KEY,
	identity        text NOT NULL,        -- the schema-qualified signature at freeze time
	proname         name NOT NULL,        -- name and schema: what callers invoke, never to change
	pronamespace    oid NOT NULL,
	current_version int NOT NULL,
	frozen_at       timestamptz NOT NULL DEFAULT pg_catalog.now(),
	frozen_by       name NOT NULL DEFAULT CURRENT_USER
);

CREATE TABLE migration_ext.function_version (
	fn               regprocedure NOT NULL REFERENCES migration_ext.frozen_function ON DELETE CASCADE,
	version          int NOT NULL,
	body             text,                 -- prosrc, what swap_function replaces
	definition       text NOT NULL,        -- pg_get_functiondef: what revert_function re-executes
	role             text NOT NULL,        -- freeze, swap, revert, out_of_band, reader, writer
	previous_version int,                  -- the version current before this one: what revert returns to
	migration        text,
	note             text,
	created_at       timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
	created_by       name NOT NULL DEFAULT CURRENT_USER,
	wal_lsn          pg_lsn,
	PRIMARY KEY (fn, version)
);

CREATE VIEW @extschema@.function_history AS
	SELECT v.fn, v.version, v.role, v.body, v.note, v.migration, v.created_at, v.created_by, v.wal_lsn,
		   v.version = f.current_version AS is_current, v.previous_version
	FROM migration_ext.function_version v
	JOIN migration_ext.frozen_function f USING (fn);

-- Records the function's present definition as the next version and makes it current.
CREATE FUNCTION migration_ext.record_version(fn regprocedure, role text, note text, migration text DEFAULT NULL,
											 previous_version int DEFAULT NULL)
	RETURNS int LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	next_version int;
	previous int;
BEGIN
	SELECT f.current_version INTO previous FROM migration_ext.frozen_function f WHERE f.fn = record_version.fn
		FOR UPDATE;
	SELECT coalesce(max(v.version), 0) + 1 INTO next_version
	FROM migration_ext.function_version v WHERE v.fn = record_version.fn;
	INSERT INTO migration_ext.function_version (fn, version, body, definition, role, previous_version, migration,
												note, wal_lsn)
	SELECT record_version.fn, next_version, p.prosrc, pg_get_functiondef(p.oid), record_version.role,
		   CASE WHEN record_version.role = 'revert' THEN record_version.previous_version ELSE nullif(previous, 0) END,
		   record_version.migration, record_version.note,
		   CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_insert_lsn() END
	FROM pg_proc p WHERE p.oid = record_version.fn;
	UPDATE migration_ext.frozen_function f SET current_version = next_version WHERE f.fn = record_version.fn;
	RETURN next_version;
END
$$;

CREATE FUNCTION migration_ext.require_frozen(fn regprocedure) RETURNS void
	LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF fn IS NULL THEN
		RAISE EXCEPTION 'function must not be NULL' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF NOT EXISTS (SELECT FROM migration_ext.frozen_function f WHERE f.fn = require_frozen.fn) THEN
		RAISE EXCEPTION 'function % is not frozen', fn USING ERRCODE = 'object_not_in_prerequisite_state',
			HINT = format('Freeze it first: SELECT freeze_function(%L);', fn::text);
	END IF;
END
$$;

CREATE FUNCTION @extschema@.freeze_function(fn regprocedure) RETURNS int
	LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	kind "char";
	owner_ok boolean;
BEGIN
	IF fn IS NULL THEN
		RAISE EXCEPTION 'function must not be NULL' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	SELECT p.prokind, pg_has_role(p.proowner, 'USAGE') INTO kind, owner_ok FROM pg_proc p WHERE p.oid = fn;
	IF kind NOT IN ('f', 'p') THEN
		RAISE EXCEPTION 'cannot freeze %: only functions and procedures can be frozen', fn
			USING ERRCODE = 'wrong_object_type';
	END IF;
	IF NOT owner_ok THEN
		RAISE EXCEPTION 'must be owner of function %', fn USING ERRCODE = 'insufficient_privilege';
	END IF;
	IF EXISTS (SELECT FROM migration_ext.frozen_function f WHERE f.fn = freeze_function.fn) THEN
		RAISE EXCEPTION 'function % is already frozen', fn USING ERRCODE = 'duplicate_object',
			HINT = 'See function_history for its versions.';
	END IF;
	INSERT INTO migration_ext.frozen_function (fn, identity, proname, pronamespace, current_version)
	SELECT fn, fn::text, p.proname, p.pronamespace, 0 FROM pg_proc p WHERE p.oid = fn;
	RETURN migration_ext.record_version(fn, 'freeze', 'frozen');
END
$$;

CREATE FUNCTION @extschema@.unfreeze_function(fn regprocedure) RETURNS void
	LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM migration_ext.require_frozen(fn);
	DELETE FROM migration_ext.frozen_function f WHERE f.fn = unfreeze_function.fn;
END
$$;

-- CREATE OR REPLACE with the frozen signature and attributes and a new body. The event trigger sees
-- migration_ext.in_swap and leaves the recording to the caller. The body is validated under the
-- caller's search_path, as a CREATE OR REPLACE typed by the caller would be.
CREATE FUNCTION migration_ext.replace_body(fn regprocedure, body text, language name, caller_search_path text)
	RETURNS void
	LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	p record;
	statement text;
	setting text;
BEGIN
	SELECT pr.*, n.nspname, l.lanname INTO p
	FROM pg_proc pr JOIN pg_namespace n ON n.oid = pr.pronamespace JOIN pg_language l ON l.oid = pr.prolang
	WHERE pr.oid = fn;
	IF p.prosqlbody IS NOT NULL AND language IS NULL THEN
		language := 'sql';
	END IF;
	IF language IS NOT NULL AND NOT EXISTS (SELECT FROM pg_language WHERE lanname = language) THEN
		RAISE EXCEPTION 'language "%" does not exist', language USING ERRCODE = 'undefined_object';
	END IF;
	statement := format('CREATE OR REPLACE %s %I.%I(%s) ',
						CASE p.prokind WHEN 'p' THEN 'PROCEDURE' ELSE 'FUNCTION' END,
						p.nspname, p.proname, pg_get_function_arguments(fn));
	IF p.prokind = 'f' THEN
		statement := statement || format('RETURNS %s %s %s %s PARALLEL %s COST %s ',
			pg_get_function_result(fn),
			CASE p.provolatile WHEN 'i' THEN 'IMMUTABLE' WHEN 's' THEN 'STABLE' ELSE 'VOLATILE' END,
			CASE WHEN p.proisstrict THEN 'STRICT' ELSE 'CALLED ON NULL INPUT' END,
			CASE WHEN p.proleakproof THEN 'LEAKPROOF' ELSE '' END,
			CASE p.proparallel WHEN 's' THEN 'SAFE' WHEN 'r' THEN 'RESTRICTED' ELSE 'UNSAFE' END,
			p.procost);
		IF p.proretset THEN
			statement := statement || format('ROWS %s ', p.prorows);
		END IF;
	END IF;
	statement := statement || format('LANGUAGE %I %s ', coalesce(language, p.lanname),
		CASE WHEN p.prosecdef THEN 'SECURITY DEFINER' ELSE 'SECURITY INVOKER' END);
	FOREACH setting IN ARRAY coalesce(p.proconfig, '{}'::text[]) LOOP
		statement := statement || format('SET %I TO %L ', split_part(setting, '=', 1),
										 substr(setting, strpos(setting, '=') + 1));
	END LOOP;
	statement := statement || format('AS %L', body);
	PERFORM set_config('search_path', caller_search_path, true);
	PERFORM set_config('migration_ext.in_swap', 'on', true);
	EXECUTE statement;
	PERFORM set_config('migration_ext.in_swap', 'off', true);
END
$$;

CREATE FUNCTION migration_ext.swap_function(fn regprocedure, body text, note text, language name,
											 caller_search_path text)
	RETURNS int LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM migration_ext.require_frozen(fn);
	IF body IS NULL THEN
		RAISE EXCEPTION 'function body must not be NULL' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	PERFORM migration_ext.replace_body(fn, body, language, caller_search_path);
	RETURN migration_ext.record_version(fn, 'swap', note);
END
$$;

-- Public entry points that compile a body are plain SQL without a pinned search_path, only so that
-- they can hand the caller's search_path to the pinned function doing the work.
CREATE FUNCTION @extschema@.swap_function(fn regprocedure, body text, note text DEFAULT NULL,
										   language name DEFAULT NULL)
	RETURNS int LANGUAGE sql
	RETURN migration_ext.swap_function(fn, body, note, language, pg_catalog.current_setting('search_path'));

-- Re-executes a recorded definition (byte-identical pg_get_functiondef afterwards).
CREATE FUNCTION migration_ext.restore_version(fn regprocedure, version int, caller_search_path text) RETURNS void
	LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	stored text;
BEGIN
	SELECT v.definition INTO stored FROM migration_ext.function_version v
	WHERE v.fn = restore_version.fn AND v.version = restore_version.version;
	PERFORM set_config('search_path', caller_search_path, true);
	PERFORM set_config('migration_ext.in_swap', 'on', true);
	EXECUTE stored;
	PERFORM set_config('migration_ext.in_swap', 'off', true);
END
$$;

CREATE FUNCTION migration_ext.revert_function(fn regprocedure, to_version int, caller_search_path text)
	RETURNS int LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	current_row migration_ext.function_version;
	target_row migration_ext.function_version;
BEGIN
	PERFORM migration_ext.require_frozen(fn);
	SELECT v.* INTO current_row FROM migration_ext.function_version v
	JOIN migration_ext.frozen_function f ON f.fn = v.fn AND f.current_version = v.version
	WHERE v.fn = revert_function.fn;
	IF to_version IS NULL THEN
		IF current_row.previous_version IS NULL THEN
			RAISE EXCEPTION 'function % has no earlier version to revert to', fn
				USING ERRCODE = 'object_not_in_prerequisite_state',
					DETAIL = format('Its current version %s holds the definition it had when it was frozen.', current_row.version);
		END IF;
		to_version := current_row.previous_version;
	END IF;
	SELECT v.* INTO target_row FROM migration_ext.function_version v
	WHERE v.fn = revert_function.fn AND v.version = to_version;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'function % has no version %', fn, to_version USING ERRCODE = 'invalid_parameter_value',
			HINT = 'See function_history for its versions.';
	END IF;
	PERFORM migration_ext.restore_version(fn, to_version, caller_search_path);
	RETURN migration_ext.record_version(fn, 'revert', format('reverted to version %s', to_version), NULL,
										target_row.previous_version);
END
$$;

CREATE FUNCTION @extschema@.revert_function(fn regprocedure, to_version int DEFAULT NULL) RETURNS int
	LANGUAGE sql
	RETURN migration_ext.revert_function(fn, to_version, pg_catalog.current_setting('search_path'));

-- DDL on a frozen function outside migration_ext: renames and moves are refused (callers use the name);
-- any other change (CREATE OR REPLACE, ALTER ... SET, OWNER) is recorded as an out-of-band version.
CREATE FUNCTION migration_ext.on_ddl_command_end() RETURNS event_trigger
	LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	command record;
	frozen record;
BEGIN
	IF to_regclass('migration_ext.frozen_function') IS NULL
	   OR coalesce(current_setting('migration_ext.in_swap', true), '') = 'on' THEN
		RETURN;
	END IF;
	FOR command IN SELECT * FROM pg_event_trigger_ddl_commands() WHERE classid = 'pg_proc'::regclass LOOP
		SELECT f.* INTO frozen FROM migration_ext.frozen_function f WHERE f.fn = command.objid::regprocedure;
		CONTINUE WHEN NOT FOUND;
		IF EXISTS (SELECT FROM pg_proc p WHERE p.oid = command.objid
				   AND (p.proname <> frozen.proname OR p.pronamespace <> frozen.pronamespace)) THEN
			RAISE EXCEPTION 'function % is frozen: its name and schema are a contract', frozen.identity
				USING ERRCODE = 'object_in_use',
					DETAIL = 'External callers invoke it by this name; renaming or moving it would break them.',
					HINT = format('Swap its body with swap_function(), or unfreeze_function(%L) first.', frozen.identity);
		END IF;
		PERFORM migration_ext.record_version(frozen.fn, 'out_of_band',
											 format('%s outside migration_ext', command.command_tag));
	END LOOP;
END
$$;

CREATE FUNCTION migration_ext.on_sql_drop() RETURNS event_trigger
	LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	dropped record;
BEGIN
	IF to_regclass('migration_ext.frozen_function') IS NULL THEN
		RETURN; -- the extension itself is being dropped
	END IF;
	FOR dropped IN SELECT * FROM pg_event_trigger_dropped_objects() WHERE classid = 'pg_proc'::regclass LOOP
		IF EXISTS (SELECT FROM migration_ext.frozen_function f WHERE f.fn = dropped.objid::regprocedure) THEN
			RAISE EXCEPTION 'cannot drop frozen function %', dropped.object_identity
				USING ERRCODE = 'dependent_objects_still_exist',
					DETAIL = 'External callers depend on this signature.',
					HINT = 'Unfreeze it first with unfreeze_function(), if the contract really ends.';
		END IF;
	END LOOP;
END
$$;

CREATE EVENT TRIGGER migration_ext_frozen_ddl ON ddl_command_end
	WHEN TAG IN ('CREATE FUNCTION', 'ALTER FUNCTION', 'CREATE PROCEDURE', 'ALTER PROCEDURE')
	EXECUTE FUNCTION migration_ext.on_ddl_command_end();

CREATE EVENT TRIGGER migration_ext_frozen_drop ON sql_drop
	EXECUTE FUNCTION migration_ext.on_sql_drop();
