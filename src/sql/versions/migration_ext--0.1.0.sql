-- migration_ext 0.1.0 — install script.
-- User-facing functions and views live in @extschema@; the extension's own state lives in the schema
-- migration_ext, which users never need to touch. Every reference is schema-qualified and every
-- function pins its search_path, so objects planted earlier on a caller's search_path change nothing.
--
-- Who may write the state: the tables take no DML from PUBLIC. An API function that changes state is
-- the C function as_invoker(), which calls the SECURITY DEFINER implementation of the same name in
-- schema migration_ext with the calling role as its first argument, `actor`; the implementation
-- authorizes that role, and whatever it does to a user's objects (a scan, a contract's ALTER TABLE, a
-- body swap) it does through run_as(), as those objects' owner in a security-restricted operation.

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
	created_by name NOT NULL
);
-- Every backend reads codecs on a cache miss, as whatever role calls migrate_value.
GRANT SELECT ON migration_ext.codec TO PUBLIC;

-- May `actor` act on this table as its owner does: a superuser, the owner or a member of the owner role
-- (the test PostgreSQL applies to ALTER TABLE and VACUUM)?
CREATE FUNCTION migration_ext.may_act_on(actor regrole, relation regclass) RETURNS boolean
	LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
	RETURN coalesce((SELECT r.rolsuper FROM pg_roles r WHERE r.oid = actor), false)
		OR coalesce((SELECT pg_has_role(actor, c.relowner, 'USAGE') FROM pg_class c WHERE c.oid = relation), false);

CREATE FUNCTION migration_ext.require_table_owner(actor regrole, relation regclass, action text) RETURNS void
	LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF NOT migration_ext.may_act_on(actor, relation) THEN
		RAISE EXCEPTION 'must be owner of table % to %', relation, action USING ERRCODE = 'insufficient_privilege',
			DETAIL = format('Role %s is not a member of its owner role %s.', actor,
							(SELECT c.relowner::regrole FROM pg_class c WHERE c.oid = relation)),
			HINT = 'A migration and its backfill act as the table''s owner: run it as that role, or a member of it.';
	END IF;
END
$$;

-- Runs one statement on a user's objects as `role`, in a security-restricted operation (C: owner.cpp).
CREATE FUNCTION migration_ext.run_as(role oid, statement text, search_path text) RETURNS text
	LANGUAGE c AS 'MODULE_PATHNAME', 'mext_run_as';

-- DDL that must not stop the application: each statement in its own transaction, in a background worker,
-- as `role` (restricted), with lock_timeout = migration_ext.ddl_lock_timeout and retries (online_ddl.cpp).
CREATE FUNCTION migration_ext.run_online(role oid, statements text[], label text) RETURNS void
	LANGUAGE c AS 'MODULE_PATHNAME', 'mext_run_online';

-- One short DDL statement in this transaction, as `role` (restricted), its lock requested with
-- migration_ext.ddl_lock_timeout and retried with backoff, each wait a NOTICE: for a statement that scans
-- nothing, so that the strong lock is held only until this transaction commits.
CREATE FUNCTION migration_ext.run_briefly(role oid, statement text, label text) RETURNS void
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
			PERFORM set_config('lock_timeout', migration_ext.setting_ms('migration_ext.ddl_lock_timeout', 200)::int::text, true);
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

-- Refuses online DDL on a table this transaction already holds a lock on: the worker would wait for it
-- for ever, and this transaction for the worker.
CREATE FUNCTION migration_ext.require_no_lock_held(relation regclass, action text) RETURNS void
	LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF EXISTS (SELECT FROM pg_locks l WHERE l.pid = pg_backend_pid() AND l.locktype = 'relation'
			   AND l.database = (SELECT d.oid FROM pg_database d WHERE d.datname = current_database())
			   AND l.relation = require_no_lock_held.relation) THEN
		RAISE EXCEPTION 'cannot % while this transaction holds a lock on %', action, relation
			USING ERRCODE = 'object_not_in_prerequisite_state',
				DETAIL = 'The change runs in transactions of its own, which would wait for this one.',
				HINT = 'Commit first, then call it in a transaction that has not touched the table.';
	END IF;
END
$$;

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

CREATE FUNCTION @extschema@.create_codec(name text, convert text, marker text DEFAULT NULL,
										  detect text DEFAULT 'converted', shape text DEFAULT NULL)
	RETURNS void LANGUAGE c AS 'MODULE_PATHNAME', 'mext_as_invoker';

CREATE FUNCTION migration_ext.create_codec(actor regrole, name text, convert text, marker text, detect text, shape text)
	RETURNS void LANGUAGE plpgsql SECURITY DEFINER
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

-- The column a codec function may read: it must exist, not be dropped, and hold text-like data.
CREATE FUNCTION migration_ext.checked_text_column(relation regclass, column_name name, require_text boolean DEFAULT true)
	RETURNS name
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
	IF require_text AND column_type NOT IN ('text'::regtype, 'character varying'::regtype, 'character'::regtype) THEN
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
	PERFORM migration_ext.checked_text_column(relation, column_name);
	PERFORM migration_ext.require_codec(codec);
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
	pronamespace    regnamespace NOT NULL, -- by name in a dump, so a restore finds it again
	current_version int NOT NULL,
	frozen_at       timestamptz NOT NULL DEFAULT pg_catalog.now(),
	frozen_by       name NOT NULL
);

CREATE TABLE migration_ext.function_version (
	fn               regprocedure NOT NULL,     -- a frozen_function (no foreign key: pg_restore -j loads these in any order)
	version          int NOT NULL,
	body             text,                 -- prosrc, what swap_function replaces
	definition       text NOT NULL,        -- pg_get_functiondef: what revert_function re-executes
	role             text NOT NULL,        -- freeze, swap, revert, out_of_band, reader, writer
	previous_version int,                  -- the version current before this one: what revert returns to
	migration        text,
	note             text,
	created_at       timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
	created_by       name NOT NULL,
	wal_lsn          pg_lsn,
	PRIMARY KEY (fn, version)
);

-- A swap in progress, so that the event trigger knows the CREATE OR REPLACE it sees is ours (and
-- records nothing itself). A table, not a setting: only the extension's functions can write it.
CREATE TABLE migration_ext.pending_swap (
	fn  regprocedure NOT NULL,
	xid xid8 NOT NULL DEFAULT pg_catalog.pg_current_xact_id()
);
-- Read by the event trigger, which runs as whoever changed the function.
GRANT SELECT ON migration_ext.pending_swap TO PUBLIC;

-- May the current role read a function's bodies: a superuser, or a member of the function's owner role?
CREATE FUNCTION migration_ext.may_read_function(fn regprocedure) RETURNS boolean
	LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
	RETURN coalesce((SELECT pg_has_role(current_user, p.proowner, 'USAGE') FROM pg_proc p WHERE p.oid = fn), false);

-- May `actor` change this function: a superuser, its owner or a member of the owner role?
CREATE FUNCTION migration_ext.require_function_owner(actor regrole, fn regprocedure) RETURNS void
	LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF NOT coalesce((SELECT r.rolsuper OR pg_has_role(actor, p.proowner, 'USAGE')
					 FROM pg_proc p, pg_roles r WHERE p.oid = fn AND r.oid = actor), false) THEN
		RAISE EXCEPTION 'must be owner of function %', fn USING ERRCODE = 'insufficient_privilege',
			DETAIL = format('Role %s is not a member of its owner role %s.', actor,
							(SELECT p.proowner::regrole FROM pg_proc p WHERE p.oid = fn));
	END IF;
END
$$;

-- Past and planned bodies are the function owner's to read (as pg_proc's prosrc is not secret, but a
-- body planned for later, or replaced for a reason, may be).
GRANT SELECT ON migration_ext.frozen_function, migration_ext.function_version TO PUBLIC;
ALTER TABLE migration_ext.function_version ENABLE ROW LEVEL SECURITY;
CREATE POLICY function_version_owner ON migration_ext.function_version FOR SELECT
	USING (migration_ext.may_read_function(fn));

CREATE VIEW @extschema@.function_history WITH (security_invoker = true) AS
	SELECT v.fn, v.version, v.role, v.body, v.note, v.migration, v.created_at, v.created_by, v.wal_lsn,
		   v.version = f.current_version AS is_current, v.previous_version
	FROM migration_ext.function_version v
	JOIN migration_ext.frozen_function f USING (fn);

-- Records the function's present definition as the next version and makes it current.
CREATE FUNCTION migration_ext.record_version(actor regrole, fn regprocedure, role text, note text,
											 migration text DEFAULT NULL, previous_version int DEFAULT NULL)
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
												note, created_by, wal_lsn)
	SELECT record_version.fn, next_version, p.prosrc, pg_get_functiondef(p.oid), record_version.role,
		   CASE WHEN record_version.role = 'revert' THEN record_version.previous_version ELSE nullif(previous, 0) END,
		   record_version.migration, record_version.note, pg_get_userbyid(actor),
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
	LANGUAGE c AS 'MODULE_PATHNAME', 'mext_as_invoker';

CREATE FUNCTION migration_ext.freeze_function(actor regrole, fn regprocedure) RETURNS int
	LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	kind "char";
	owner_ok boolean;
BEGIN
	IF fn IS NULL THEN
		RAISE EXCEPTION 'function must not be NULL' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	SELECT p.prokind, pg_has_role(actor, p.proowner, 'USAGE') INTO kind, owner_ok FROM pg_proc p WHERE p.oid = fn;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'function with OID % does not exist', fn::oid USING ERRCODE = 'undefined_function';
	END IF;
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
	INSERT INTO migration_ext.frozen_function (fn, identity, proname, pronamespace, current_version, frozen_by)
	SELECT fn, fn::text, p.proname, p.pronamespace::regnamespace, 0, pg_get_userbyid(actor) FROM pg_proc p WHERE p.oid = fn;
	RETURN migration_ext.record_version(actor, fn, 'freeze', 'frozen');
END
$$;

CREATE FUNCTION @extschema@.unfreeze_function(fn regprocedure) RETURNS void
	LANGUAGE c AS 'MODULE_PATHNAME', 'mext_as_invoker';

CREATE FUNCTION migration_ext.unfreeze_function(actor regrole, fn regprocedure) RETURNS void
	LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	past_door text;
BEGIN
	PERFORM migration_ext.require_frozen(fn);
	PERFORM migration_ext.require_function_owner(actor, fn);
	SELECT x.name INTO past_door FROM migration_ext.migration x JOIN migration_ext.planned_swap s ON s.migration = x.name
	WHERE s.fn = unfreeze_function.fn AND s.role = 'reader' AND s.applied_version IS NOT NULL
	  AND x.phase IN ('producing', 'backfilling', 'converted') LIMIT 1;
	IF FOUND THEN
		RAISE EXCEPTION 'function % is a reader of migration "%", past its point of no return', fn, past_door
			USING ERRCODE = 'object_in_use',
				DETAIL = 'The column holds both formats; unfrozen, its body could change unchecked to one that reads only one of them.',
				HINT = 'Swap it with swap_function(): a new body is checked on real values of both formats.';
	END IF;
	DELETE FROM migration_ext.function_version v WHERE v.fn = unfreeze_function.fn;
	DELETE FROM migration_ext.frozen_function f WHERE f.fn = unfreeze_function.fn;
END
$$;

-- CREATE OR REPLACE with the frozen signature and attributes and a new body, run as the function's owner
-- (restricted): whoever advances a migration, a body its owner planned is created with the owner's
-- rights, never a superuser's (a language only a superuser may use stays refused). The event trigger
-- sees the pending_swap row and leaves the recording to the caller. The body is validated under the
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
	-- Stored settings are catalog text: quoted element by element, as pg_get_functiondef() does.
	FOREACH setting IN ARRAY coalesce(p.proconfig, '{}'::text[]) LOOP
		statement := statement || migration_ext.setting_clause(setting) || ' ';
	END LOOP;
	statement := statement || format('AS %L', body);
	INSERT INTO migration_ext.pending_swap (fn) VALUES (replace_body.fn);
	-- Compiled under the caller's schemas, behind pg_catalog so that nothing planted there can redefine
	-- a built-in type or operator of the signature.
	PERFORM migration_ext.run_as(p.proowner, statement, 'pg_catalog, ' || caller_search_path);
	DELETE FROM migration_ext.pending_swap s WHERE s.fn = replace_body.fn;
END
$$;

CREATE FUNCTION migration_ext.setting_clause(setting text) RETURNS text
	LANGUAGE c IMMUTABLE STRICT AS 'MODULE_PATHNAME', 'mext_setting_clause';

CREATE FUNCTION migration_ext.swap_function(fn regprocedure, body text, note text, language name,
											 caller_search_path text)
	RETURNS int LANGUAGE c AS 'MODULE_PATHNAME', 'mext_as_invoker';

CREATE FUNCTION migration_ext.swap_function(actor regrole, fn regprocedure, body text, note text, language name,
											 caller_search_path text)
	RETURNS int LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM migration_ext.require_frozen(fn);
	PERFORM migration_ext.require_function_owner(actor, fn);
	IF body IS NULL THEN
		RAISE EXCEPTION 'function body must not be NULL' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	PERFORM migration_ext.check_swap_order(fn);
	PERFORM migration_ext.replace_body(fn, body, language, caller_search_path);
	PERFORM migration_ext.recheck_reader(actor, fn, caller_search_path);
	RETURN migration_ext.record_version(actor, fn, 'swap', note);
END
$$;

-- Public entry points that compile a body are plain SQL without a pinned search_path, only so that
-- they can hand the caller's search_path to the pinned function doing the work.
CREATE FUNCTION @extschema@.swap_function(fn regprocedure, body text, note text DEFAULT NULL,
										   language name DEFAULT NULL)
	RETURNS int LANGUAGE sql
	RETURN migration_ext.swap_function(fn, body, note, language, pg_catalog.current_setting('search_path'));

-- Re-executes a recorded definition (byte-identical pg_get_functiondef afterwards), as the function's
-- owner, restricted.
CREATE FUNCTION migration_ext.restore_version(fn regprocedure, version int, caller_search_path text) RETURNS void
	LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	stored text;
BEGIN
	SELECT v.definition INTO stored FROM migration_ext.function_version v
	WHERE v.fn = restore_version.fn AND v.version = restore_version.version;
	INSERT INTO migration_ext.pending_swap (fn) VALUES (restore_version.fn);
	PERFORM migration_ext.run_as((SELECT p.proowner FROM pg_proc p WHERE p.oid = restore_version.fn), stored,
								 'pg_catalog, ' || caller_search_path);
	DELETE FROM migration_ext.pending_swap s WHERE s.fn = restore_version.fn;
END
$$;

CREATE FUNCTION migration_ext.revert_function(fn regprocedure, to_version int, caller_search_path text)
	RETURNS int LANGUAGE c AS 'MODULE_PATHNAME', 'mext_as_invoker';

CREATE FUNCTION migration_ext.revert_function(actor regrole, fn regprocedure, to_version int, caller_search_path text)
	RETURNS int LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	current_row migration_ext.function_version;
	target_row migration_ext.function_version;
BEGIN
	PERFORM migration_ext.require_frozen(fn);
	PERFORM migration_ext.require_function_owner(actor, fn);
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
	PERFORM migration_ext.recheck_reader(actor, fn, caller_search_path);
	RETURN migration_ext.record_version(actor, fn, 'revert', format('reverted to version %s', to_version), NULL,
										target_row.previous_version);
END
$$;

CREATE FUNCTION @extschema@.revert_function(fn regprocedure, to_version int DEFAULT NULL) RETURNS int
	LANGUAGE sql
	RETURN migration_ext.revert_function(fn, to_version, pg_catalog.current_setting('search_path'));

-- DDL on a frozen function outside migration_ext: renames and moves are refused (callers use the name);
-- any other change (CREATE OR REPLACE, ALTER ... SET, OWNER) is recorded as an out-of-band version, in
-- the name of the role that made it. Runs as that role; only the recording goes through as_invoker().
CREATE FUNCTION migration_ext.on_ddl_command_end() RETURNS event_trigger
	LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	command record;
	frozen record;
BEGIN
	IF to_regclass('migration_ext.frozen_function') IS NULL THEN
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
		CONTINUE WHEN EXISTS (SELECT FROM migration_ext.pending_swap s
							  WHERE s.fn = frozen.fn AND s.xid = pg_current_xact_id());
		PERFORM migration_ext.record_out_of_band(frozen.fn, command.command_tag);
	END LOOP;
END
$$;

CREATE FUNCTION migration_ext.record_out_of_band(fn regprocedure, command_tag text) RETURNS void
	LANGUAGE c AS 'MODULE_PATHNAME', 'mext_as_invoker';

-- Only a change its owner (or a superuser) could make is recorded: the DDL just happened, as `actor`.
CREATE FUNCTION migration_ext.record_out_of_band(actor regrole, fn regprocedure, command_tag text) RETURNS void
	LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM migration_ext.require_frozen(fn);
	PERFORM migration_ext.require_function_owner(actor, fn);
	-- The DDL's own search_path is not known here: the extension's schema stands in for it.
	PERFORM migration_ext.recheck_reader(actor, fn, format('%I, pg_temp', '@extschema@'));
	PERFORM migration_ext.record_version(actor, fn, 'out_of_band', format('%s outside migration_ext', command_tag));
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
	FOR dropped IN SELECT f.identity FROM pg_event_trigger_dropped_objects() d
				   JOIN migration_ext.frozen_function f ON f.fn = d.objid::regprocedure
				   WHERE d.classid = 'pg_proc'::regclass LOOP
		RAISE EXCEPTION 'cannot drop frozen function %', dropped.identity
			USING ERRCODE = 'dependent_objects_still_exist',
				DETAIL = 'External callers depend on this signature.',
				HINT = 'Unfreeze it first with unfreeze_function(), if the contract really ends.';
	END LOOP;
END
$$;

CREATE EVENT TRIGGER migration_ext_frozen_ddl ON ddl_command_end
	WHEN TAG IN ('CREATE FUNCTION', 'ALTER FUNCTION', 'CREATE PROCEDURE', 'ALTER PROCEDURE')
	EXECUTE FUNCTION migration_ext.on_ddl_command_end();

CREATE EVENT TRIGGER migration_ext_frozen_drop ON sql_drop
	EXECUTE FUNCTION migration_ext.on_sql_drop();

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
	finished_at         timestamptz
);

-- One runner per column: a second job on the same column is refused while one is unfinished.
CREATE UNIQUE INDEX backfill_job_one_per_column ON migration_ext.backfill_job (relation, column_name)
	WHERE state IN ('queued', 'running', 'throttled', 'paused', 'interrupted');

-- A job on a table is seen and steered by the roles that may act as the table's owner (superusers, the
-- owner, members of the owner role), whoever started it. Rows are written only by the extension.
ALTER TABLE migration_ext.backfill_job ENABLE ROW LEVEL SECURITY;
CREATE POLICY backfill_job_table_owner ON migration_ext.backfill_job FOR SELECT
	USING (migration_ext.may_act_on(CURRENT_USER::regrole, relation));
GRANT SELECT ON migration_ext.backfill_job TO PUBLIC;

CREATE FUNCTION migration_ext.batch_statement(relation text, key_names text[], key_types text[], target text,
											  source text, api_schema text, after_last_key boolean)
	RETURNS text LANGUAGE c IMMUTABLE AS 'MODULE_PATHNAME', 'mext_batch_statement';

CREATE FUNCTION migration_ext.copy_statement(relation text, key_names text[], key_types text[], target text,
											 source text, api_schema text, after_last_key boolean,
											 target_relation text, copy_columns text[])
	RETURNS text LANGUAGE c IMMUTABLE AS 'MODULE_PATHNAME', 'mext_copy_statement';

CREATE FUNCTION migration_ext.launch_worker(job bigint) RETURNS int
	LANGUAGE c STRICT AS 'MODULE_PATHNAME', 'mext_launch_worker';

-- The worker's claim on its job and on a worker slot: 'claimed', 'taken' or 'full' (job_claim.cpp).
CREATE FUNCTION migration_ext.claim_job(job bigint) RETURNS text
	LANGUAGE c STRICT AS 'MODULE_PATHNAME', 'mext_claim_job';

-- One batch, as `role` (the owner of the job's table) in a security-restricted operation (owner.cpp).
CREATE FUNCTION migration_ext.run_batch(role oid, statement text, codec text, batch_size int,
										last_key text[], OUT scanned bigint, OUT legacy_seen bigint,
										OUT converted bigint, OUT conflicts bigint, OUT last_key text[])
	LANGUAGE c AS 'MODULE_PATHNAME', 'mext_run_batch';

-- Refuses a new worker for `actor` when migration_ext.max_jobs workers run in the cluster, or
-- migration_ext.max_jobs_per_role of the role's jobs have one in this database.
CREATE FUNCTION migration_ext.check_job_limits(actor regrole) RETURNS void
	LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	cluster_limit int := migration_ext.setting_int('migration_ext.max_jobs', 8);
	role_limit int := migration_ext.setting_int('migration_ext.max_jobs_per_role', 4);
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
	PERFORM migration_ext.checked_text_column(target_relation, column_name);
	PERFORM migration_ext.checked_text_column(relation, coalesce(source_column, column_name));
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

-- Defaults come from the migration_ext.* settings; the library defines them, and before it is
-- loaded in this backend a setting may not exist yet: then the documented default applies.
CREATE FUNCTION migration_ext.setting_int(name text, fallback bigint) RETURNS bigint
	LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
	RETURN coalesce(nullif(current_setting(name, true), '')::bigint, fallback);

CREATE FUNCTION migration_ext.setting_ms(name text, fallback double precision) RETURNS double precision
	LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
	RETURN coalesce(extract(epoch FROM nullif(current_setting(name, true), '')::interval)::double precision * 1000,
					fallback);

CREATE FUNCTION migration_ext.setting_real(name text, fallback double precision) RETURNS double precision
	LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
	RETURN coalesce(nullif(current_setting(name, true), '')::double precision, fallback);

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
											 live_duty_cycle double precision DEFAULT NULL)
	RETURNS bigint LANGUAGE c AS 'MODULE_PATHNAME', 'mext_as_invoker';

-- Who may start a job on a table: whoever may act as its owner (superusers, the owner, members of the
-- owner role). Its batches run as the table's owner, restricted, whoever started it.
CREATE FUNCTION migration_ext.start_backfill(actor regrole, relation regclass, column_name name, codec text,
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
				coalesce(batch_size, CASE WHEN throttle THEN migration_ext.setting_int('migration_ext.batch_size', 1000)
										  ELSE 20000 END), max_rows_per_second,
				coalesce(throttle, true), estimate,
				coalesce(batch_size, CASE WHEN throttle THEN migration_ext.setting_int('migration_ext.batch_size', 1000)
										  ELSE 20000 END),
				coalesce(extract(epoch FROM batch_time_target) * 1000,
						 migration_ext.setting_ms('migration_ext.batch_time_target', 200)),
				coalesce(extract(epoch FROM max_replica_lag),
						 migration_ext.setting_ms('migration_ext.max_replica_lag', 1500) / 1000),
				coalesce(max_active_backends, migration_ext.setting_int('migration_ext.max_active_backends', 25)),
				coalesce(max_wal_bytes_per_second,
						 migration_ext.setting_int('migration_ext.max_wal_bytes_per_second', 0)),
				coalesce(live_duty_cycle, migration_ext.setting_real('migration_ext.live_duty_cycle', 0.5)), actor)
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
										   live_duty_cycle double precision DEFAULT NULL)
	RETURNS bigint LANGUAGE sql
	RETURN migration_ext.start_backfill(relation, column_name, codec, source_column, batch_size, max_rows_per_second,
										throttle, NULL, true, batch_time_target, max_replica_lag, max_active_backends,
										max_wal_bytes_per_second, target_relation, live_duty_cycle);

-- One step of a worker, in the worker's transaction: obey a pause or cancel request, or run one batch
-- and commit its checkpoint with it. Returns what the worker should do next.
CREATE FUNCTION migration_ext.worker_step(job bigint, batch_size int, rate double precision, OUT action text, OUT scanned bigint,
										  OUT converted bigint, OUT conflicts bigint, OUT blocked int)
	LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	j migration_ext.backfill_job;
	leaf regclass;
	key_names text[];
	key_types text[];
	statement text;
	r record;
	api text := quote_ident('@extschema@');
BEGIN
	scanned := 0; converted := 0; conflicts := 0; blocked := 0;
	SELECT * INTO j FROM migration_ext.backfill_job b WHERE b.id = job FOR UPDATE;
	IF NOT FOUND OR j.state IN ('done', 'failed', 'cancelled') THEN
		action := 'stop';
		RETURN;
	END IF;
	IF j.requested = 'cancel' THEN
		UPDATE migration_ext.backfill_job b SET state = 'cancelled', requested = NULL, finished_at = now(),
			updated_at = now(), throttle_reason = NULL WHERE b.id = job;
		action := 'stop';
		RETURN;
	END IF;
	-- A paused job gives its worker (and its slot) back; resume_backfill() starts a new one.
	IF j.requested = 'pause' THEN
		UPDATE migration_ext.backfill_job b SET state = 'paused', throttle_reason = 'paused by operator', pid = NULL,
			updated_at = now() WHERE b.id = job;
		action := 'stop';
		RETURN;
	END IF;
	leaf := j.partitions[j.partition_index];
	IF NOT EXISTS (SELECT FROM pg_class c WHERE c.oid = leaf) THEN
		RAISE EXCEPTION 'table % was dropped during the backfill', coalesce(j.relation::text, leaf::text)
			USING ERRCODE = 'undefined_table';
	END IF;
	-- The key's names quoted and its types as the catalog spells them now (format_type quotes them).
	SELECT array_agg(quote_ident(u.k) ORDER BY u.o), array_agg(format_type(a.atttypid, a.atttypmod) ORDER BY u.o)
	INTO key_names, key_types
	FROM unnest(j.key_columns) WITH ORDINALITY u(k, o)
	JOIN pg_attribute a ON a.attrelid = leaf AND a.attname = u.k AND a.attnum > 0 AND NOT a.attisdropped;
	IF coalesce(array_length(key_types, 1), 0) <> array_length(j.key_columns, 1) THEN
		RAISE EXCEPTION 'the key (%) of % changed during the backfill', array_to_string(j.key_columns, ', '), leaf
			USING ERRCODE = 'object_not_in_prerequisite_state';
	END IF;
	IF j.target_relation IS NULL THEN
		statement := migration_ext.batch_statement(leaf::text, key_names, key_types, quote_ident(j.column_name),
												   quote_ident(j.source_column), api, j.last_key IS NOT NULL);
	ELSE
		statement := migration_ext.copy_statement(
			leaf::text, key_names, key_types, quote_ident(j.column_name),
			quote_ident(coalesce(j.source_column, j.column_name)), api,
			j.last_key IS NOT NULL, j.target_relation::text,
			(SELECT array_agg(quote_ident(a.attname) ORDER BY a.attnum) FROM pg_attribute a
			 WHERE a.attrelid = j.target_relation AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
			   AND (a.attname = j.column_name
					OR EXISTS (SELECT FROM pg_attribute v WHERE v.attrelid = leaf AND v.attname = a.attname
							   AND v.attnum > 0 AND NOT v.attisdropped))));
	END IF;
	-- As the owner of the job's table (a partition's batch too): what the starter was allowed to act as.
	SELECT * INTO r FROM migration_ext.run_batch((SELECT c.relowner FROM pg_class c WHERE c.oid = j.relation), statement,
												 j.codec, batch_size, j.last_key);
	scanned := r.scanned; converted := r.converted; conflicts := r.conflicts;
	IF j.throttle AND r.converted > 0 THEN
		-- Still holding the batch's row locks: is a live session waiting on them right now?
		SELECT count(*) INTO blocked FROM pg_stat_activity a WHERE pg_backend_pid() = ANY (pg_blocking_pids(a.pid));
	END IF;
	IF r.scanned = 0 THEN
		IF j.partition_index < array_length(j.partitions, 1) THEN
			UPDATE migration_ext.backfill_job b SET partition_index = j.partition_index + 1, last_key = NULL,
				updated_at = now() WHERE b.id = job;
			action := 'continue';
		ELSE
			UPDATE migration_ext.backfill_job b SET state = 'done', finished_at = now(), updated_at = now(),
				throttle_reason = NULL, requested = NULL WHERE b.id = job;
			action := 'stop';
		END IF;
		RETURN;
	END IF;
	UPDATE migration_ext.backfill_job b SET
		last_key = r.last_key,
		rows_scanned = b.rows_scanned + r.scanned,
		rows_converted = b.rows_converted + r.converted,
		rows_skipped = b.rows_skipped + (r.scanned - r.legacy_seen),
		conflicts = b.conflicts + r.conflicts,
		batches = b.batches + 1,
		current_batch_size = worker_step.batch_size,
		rate = coalesce(worker_step.rate, b.rate),
		lock_retries = 0,
		state = CASE WHEN b.state IN ('queued', 'paused', 'interrupted') THEN 'running' ELSE b.state END,
		updated_at = now()
	WHERE b.id = job;
	action := 'continue';
END
$$;

-- A worker taking a job: it claims the job and a worker slot for its whole life (claim_job), so a job
-- never has two workers and no more than migration_ext.max_jobs run, and records its pid. The role that
-- started the job must still be one that may act as the table's owner. Returns the batch size and rate
-- cap to start with, or nothing.
CREATE FUNCTION migration_ext.worker_begin(job bigint, OUT batch_size int, OUT max_rows_per_second int,
										   OUT throttle boolean)
	RETURNS SETOF record LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	j migration_ext.backfill_job;
	claim text;
	role_limit int := migration_ext.setting_int('migration_ext.max_jobs_per_role', 4);
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

-- The server's own load signals, as aggregates only (the worker reads them as a superuser).
CREATE FUNCTION migration_ext.server_signals(relations regclass[], OUT wal_bytes numeric, OUT active_backends int,
											 OUT vacuum_on_table boolean, OUT transactions numeric)
	LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM pg_stat_clear_snapshot();
	wal_bytes := CASE WHEN pg_is_in_recovery() THEN 0 ELSE pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0') END;
	SELECT count(*) INTO active_backends FROM pg_stat_activity a
	WHERE a.state = 'active' AND a.backend_type = 'client backend' AND a.pid <> pg_backend_pid();
	SELECT EXISTS (SELECT FROM pg_stat_progress_vacuum v WHERE v.relid = ANY (relations)) INTO vacuum_on_table;
	SELECT coalesce(sum(d.xact_commit + d.xact_rollback), 0) INTO transactions FROM pg_stat_database d;
END
$$;

-- Every connected standby and the WAL position it has replayed (NULL: not reported yet).
CREATE FUNCTION migration_ext.standby_positions() RETURNS TABLE (name text, replay_bytes numeric)
	LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$
	SELECT coalesce(nullif(r.application_name, ''), r.pid::text), pg_wal_lsn_diff(r.replay_lsn, '0/0')
	FROM pg_stat_replication r ORDER BY r.pid
$$;

-- What a worker looks at before a batch: the operator's request, the job's current thresholds (which
-- alter_backfill() may have changed) and the server's signals.
CREATE FUNCTION migration_ext.worker_poll(job bigint, OUT requested text, OUT throttle boolean,
										  OUT max_rows_per_second int, OUT batch_time_target_ms double precision,
										  OUT max_replica_lag_s double precision, OUT max_active_backends int,
										  OUT max_wal_bytes_per_second bigint, OUT wal_bytes numeric,
										  OUT active_backends int, OUT vacuum_on_table boolean, OUT transactions numeric,
										  OUT live_duty_cycle double precision)
	LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	j migration_ext.backfill_job;
	signals record;
BEGIN
	SELECT * INTO j FROM migration_ext.backfill_job b WHERE b.id = job;
	requested := j.requested;
	throttle := j.throttle;
	max_rows_per_second := j.max_rows_per_second;
	batch_time_target_ms := j.batch_time_target_ms;
	max_replica_lag_s := j.max_replica_lag_s;
	max_active_backends := j.max_active_backends;
	max_wal_bytes_per_second := j.max_wal_bytes_per_second;
	live_duty_cycle := j.live_duty_cycle;
	SELECT * INTO signals FROM migration_ext.server_signals(j.partitions);
	wal_bytes := signals.wal_bytes;
	active_backends := signals.active_backends;
	vacuum_on_table := signals.vacuum_on_table;
	transactions := signals.transactions;
END
$$;

-- Progress a worker publishes between batches: its rate and why it is waiting, if it is.
CREATE FUNCTION migration_ext.worker_note(job bigint, rate double precision, throttle_reason text, warning text,
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

-- A batch failed. Lock timeouts, deadlocks and cancelled statements are retried (the worker backs off and halves the batch);
-- anything else, or a lock conflict that does not clear, fails the job with the range and the cause.
CREATE FUNCTION migration_ext.worker_failed(job bigint, error_code text, message text, max_retries int)
	RETURNS text LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	j migration_ext.backfill_job;
BEGIN
	SELECT * INTO j FROM migration_ext.backfill_job b WHERE b.id = job FOR UPDATE;
	-- lock timeout, deadlock, serialization failure, a cancelled statement (pg_cancel_backend)
	IF error_code IN ('55P03', '40P01', '40001', '57014') AND j.lock_retries < max_retries THEN
		UPDATE migration_ext.backfill_job b SET lock_retries = b.lock_retries + 1, updated_at = now(),
			state = 'throttled', throttle_reason = format('batch retried after: %s (retry %s of %s)', message,
														  b.lock_retries + 1, max_retries)
		WHERE b.id = job;
		RETURN 'retry';
	END IF;
	UPDATE migration_ext.backfill_job b SET state = 'failed', finished_at = now(), updated_at = now(),
		last_error = format('%s (SQLSTATE %s) in the batch after key %s', message, error_code,
							coalesce(b.last_key::text, '(start)')),
		error_key = coalesce(b.last_key, '{}'),
		throttle_reason = NULL
	WHERE b.id = job;
	RETURN 'stop';
END
$$;

CREATE FUNCTION @extschema@.pause_backfill(job bigint) RETURNS void
	LANGUAGE c AS 'MODULE_PATHNAME', 'mext_as_invoker';

CREATE FUNCTION migration_ext.pause_backfill(actor regrole, job bigint) RETURNS void
	LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	job_state text := migration_ext.unfinished_job_state(migration_ext.require_job(actor, job), 'paused');
BEGIN
	UPDATE migration_ext.backfill_job b SET requested = 'pause', updated_at = now(),
		-- Nothing will run it to see the request: an interrupted job, or one queued without a worker.
		state = CASE WHEN job_state = 'interrupted' OR (job_state = 'queued' AND b.pid IS NULL)
					 THEN 'paused' ELSE b.state END
	WHERE b.id = job;
END
$$;

-- Changes the thresholds of a job while it runs; the worker applies them before its next batch.
-- NULL leaves a setting as it is; max_rows_per_second => 0 removes the rate cap.
CREATE FUNCTION @extschema@.alter_backfill(job bigint, max_rows_per_second int DEFAULT NULL,
										   batch_time_target interval DEFAULT NULL,
										   max_replica_lag interval DEFAULT NULL, max_active_backends int DEFAULT NULL,
										   max_wal_bytes_per_second bigint DEFAULT NULL, throttle boolean DEFAULT NULL,
										   live_duty_cycle double precision DEFAULT NULL)
	RETURNS void LANGUAGE c AS 'MODULE_PATHNAME', 'mext_as_invoker';

CREATE FUNCTION migration_ext.alter_backfill(actor regrole, job bigint, max_rows_per_second int,
											 batch_time_target interval, max_replica_lag interval,
											 max_active_backends int, max_wal_bytes_per_second bigint,
											 throttle boolean, live_duty_cycle double precision)
	RETURNS void LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	j migration_ext.backfill_job := migration_ext.require_job(actor, job);
BEGIN
	IF max_rows_per_second < 0 THEN
		RAISE EXCEPTION 'max_rows_per_second must not be negative' USING ERRCODE = 'invalid_parameter_value',
			HINT = 'Pass 0 to remove the rate cap.';
	END IF;
	PERFORM migration_ext.check_throttle_settings(batch_time_target, max_replica_lag, max_active_backends,
												  max_wal_bytes_per_second, live_duty_cycle);
	PERFORM migration_ext.unfinished_job_state(j, 'altered');
	UPDATE migration_ext.backfill_job b SET
		max_rows_per_second = CASE WHEN alter_backfill.max_rows_per_second IS NULL THEN b.max_rows_per_second
								   ELSE nullif(alter_backfill.max_rows_per_second, 0) END,
		batch_time_target_ms = coalesce(extract(epoch FROM alter_backfill.batch_time_target) * 1000, b.batch_time_target_ms),
		max_replica_lag_s = coalesce(extract(epoch FROM alter_backfill.max_replica_lag), b.max_replica_lag_s),
		max_active_backends = coalesce(alter_backfill.max_active_backends, b.max_active_backends),
		max_wal_bytes_per_second = coalesce(alter_backfill.max_wal_bytes_per_second, b.max_wal_bytes_per_second),
		throttle = coalesce(alter_backfill.throttle, b.throttle),
		live_duty_cycle = coalesce(alter_backfill.live_duty_cycle, b.live_duty_cycle),
		updated_at = now()
	WHERE b.id = job;
END
$$;

CREATE FUNCTION @extschema@.resume_backfill(job bigint) RETURNS void
	LANGUAGE c AS 'MODULE_PATHNAME', 'mext_as_invoker';

-- A job is resumed in the name of the role that resumes it: its workers count against that role's limit.
CREATE FUNCTION migration_ext.resume_backfill(actor regrole, job bigint) RETURNS void
	LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	j migration_ext.backfill_job := migration_ext.require_job(actor, job);
BEGIN
	IF migration_ext.effective_state(j) = 'failed' THEN
		RAISE EXCEPTION 'backfill job % failed, it cannot be resumed', job
			USING ERRCODE = 'object_not_in_prerequisite_state', DETAIL = j.last_error,
				HINT = 'Fix the cause, then start a new backfill: converted rows are skipped.';
	END IF;
	PERFORM migration_ext.unfinished_job_state(j, 'resumed');
	IF j.requested = 'cancel' THEN
		RAISE EXCEPTION 'backfill job % is being cancelled', job USING ERRCODE = 'object_not_in_prerequisite_state';
	END IF;
	IF migration_ext.worker_alive(j.pid) AND j.home = migration_ext.job_home() THEN
		-- Shown as running at once, so that wait_backfill() does not return on the old 'paused'.
		UPDATE migration_ext.backfill_job b SET requested = NULL, updated_at = now(),
			state = CASE WHEN b.state = 'paused' THEN 'running' ELSE b.state END,
			throttle_reason = CASE WHEN b.state = 'paused' THEN NULL ELSE b.throttle_reason END
		WHERE b.id = job;
	ELSE
		SELECT * INTO j FROM migration_ext.backfill_job b WHERE b.id = job FOR UPDATE; -- see resume_interrupted()
		IF migration_ext.worker_alive(j.pid) AND j.home = migration_ext.job_home() THEN
			RETURN; -- resumed meanwhile by the launcher or another session
		END IF;
		PERFORM migration_ext.check_job_limits(actor);
		-- A restored job is taken over here: it runs in this database from now on.
		UPDATE migration_ext.backfill_job b SET requested = NULL, updated_at = now(), state = 'queued', pid = NULL,
			home = migration_ext.job_home(), owner = actor WHERE b.id = job;
		PERFORM migration_ext.launch_job(job);
	END IF;
END
$$;

CREATE FUNCTION @extschema@.cancel_backfill(job bigint) RETURNS void
	LANGUAGE c AS 'MODULE_PATHNAME', 'mext_as_invoker';

CREATE FUNCTION migration_ext.cancel_backfill(actor regrole, job bigint) RETURNS void
	LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	j migration_ext.backfill_job := migration_ext.require_job(actor, job);
	job_state text := migration_ext.effective_state(j);
BEGIN
	IF job_state IN ('done', 'failed', 'cancelled') THEN
		RAISE EXCEPTION 'backfill job % is already %', job, job_state USING ERRCODE = 'object_not_in_prerequisite_state';
	END IF;
	IF migration_ext.worker_alive(j.pid) AND j.home = migration_ext.job_home() THEN
		UPDATE migration_ext.backfill_job b SET requested = 'cancel', updated_at = now() WHERE b.id = job;
	ELSE
		UPDATE migration_ext.backfill_job b SET state = 'cancelled', requested = NULL, finished_at = now(),
			updated_at = now() WHERE b.id = job;
	END IF;
END
$$;

CREATE FUNCTION migration_ext.xid_is_mine(xid) RETURNS boolean
	LANGUAGE c STRICT VOLATILE AS 'MODULE_PATHNAME', 'mext_xid_is_mine';

-- Waits until the job stops moving by itself (done, failed, cancelled, paused, interrupted) or the
-- timeout passes; returns the state it is in then.
CREATE FUNCTION @extschema@.wait_backfill(job bigint, timeout interval DEFAULT NULL) RETURNS text
	LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	deadline timestamptz := CASE WHEN timeout < interval '100 years' THEN clock_timestamp() + timeout END;
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
		-- A paused job whose pause was withdrawn (resume, cancel) is about to move: keep waiting.
		SELECT migration_ext.effective_state(b) INTO job_state FROM migration_ext.backfill_job b
		WHERE b.id = job AND (b.state <> 'paused' OR b.requested IS NOT DISTINCT FROM 'pause'
							  OR migration_ext.effective_state(b) = 'interrupted');
		EXIT WHEN job_state IN ('done', 'failed', 'cancelled', 'paused', 'interrupted');
		EXIT WHEN deadline IS NOT NULL AND clock_timestamp() >= deadline;
		PERFORM pg_sleep(0.05);
	END LOOP;
	RETURN job_state;
END
$$;

CREATE VIEW @extschema@.backfill_status WITH (security_invoker = true) AS
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

-- Run by the launcher's per-database helper after a restart and every migration_ext.resume_interval:
-- every job that should run but has no live worker (interrupted, or queued without one) gets a new one,
-- which continues from its checkpoint. A paused job stays paused. A launch that fails leaves its job
-- queued with the reason and goes on with the others.
CREATE FUNCTION migration_ext.resume_interrupted() RETURNS int
	LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	j migration_ext.backfill_job;
	resumed int := 0;
	cluster_limit int := migration_ext.setting_int('migration_ext.max_jobs', 8);
	role_limit int := migration_ext.setting_int('migration_ext.max_jobs_per_role', 4);
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

------------------------------------------------------------------------------------------------------
-- The migration protocol: planned -> tolerant -> producing -> backfilling -> converted -> contracted.
------------------------------------------------------------------------------------------------------

CREATE TABLE migration_ext.migration (
	name             text PRIMARY KEY CHECK (name <> ''),
	relation         regclass NOT NULL,
	column_name      name NOT NULL,
	codec            text NOT NULL,             -- drop_codec() refuses while a migration uses it
	source_column    name,
	allow_key_update boolean NOT NULL DEFAULT false,
	phase            text NOT NULL DEFAULT 'planned' CHECK (phase IN ('planned', 'tolerant', 'producing', 'backfilling',
																	  'converted', 'contracted')),
	job              bigint,
	constraint_name  name,
	created_at       timestamptz NOT NULL DEFAULT pg_catalog.now(),
	created_by       name NOT NULL
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
-- A migration and its history are seen by the roles that may act on its table.
ALTER TABLE migration_ext.migration ENABLE ROW LEVEL SECURITY;
CREATE POLICY migration_table_owner ON migration_ext.migration FOR SELECT
	USING (migration_ext.may_act_on(CURRENT_USER::regrole, relation));
ALTER TABLE migration_ext.migration_event ENABLE ROW LEVEL SECURITY;
CREATE POLICY migration_event_table_owner ON migration_ext.migration_event FOR SELECT
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
	PERFORM migration_ext.checked_text_column(relation, column_name, codec IS NOT NULL);
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

CREATE FUNCTION @extschema@.create_migration(name text, relation regclass, column_name name, codec text,
											 source_column name DEFAULT NULL, allow_key_update boolean DEFAULT false)
	RETURNS void LANGUAGE c AS 'MODULE_PATHNAME', 'mext_as_invoker';

CREATE FUNCTION migration_ext.create_migration(actor regrole, name text, relation regclass, column_name name,
											   codec text, source_column name, allow_key_update boolean)
	RETURNS void LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	inventory record;
BEGIN
	IF name IS NULL OR btrim(name) = '' THEN
		RAISE EXCEPTION 'migration name must not be empty' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF relation IS NULL OR column_name IS NULL OR codec IS NULL THEN
		RAISE EXCEPTION 'relation, column_name and codec must not be NULL' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	PERFORM migration_ext.require_codec(codec);
	PERFORM migration_ext.checked_text_column(relation, column_name);
	PERFORM migration_ext.require_table_owner(actor, relation, 'migrate it');
	IF source_column IS NOT NULL THEN
		PERFORM migration_ext.checked_text_column(relation, source_column);
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
-- that takes one argument of the column's text form is checked; another signature is recorded as not
-- checked. Refuses naming the first value read differently; records what it checked. The readers run
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
							  ELSE format_type(p.proargtypes[0], NULL) END AS argument, p.pronargs, p.proretset
				  FROM migration_ext.planned_swap s JOIN pg_proc p ON p.oid = s.fn
				  JOIN pg_namespace n ON n.oid = p.pronamespace
				  WHERE s.migration = m.name AND s.role = 'reader' AND s.applied_version IS NOT NULL
					AND (read_check.fn IS NULL OR s.fn = read_check.fn)
				  ORDER BY s.ordinal LOOP
		IF reader.pronargs <> 1 OR reader.proretset
		   OR reader.argument NOT IN ('text', 'character varying', 'bpchar', 'name') THEN
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

-- The door's settle check, against a position after the reader swaps' commit: this transaction began
-- after that commit (with a standby connected, advance_migration refuses the swaps' own transaction),
-- so its insert position is past it; flushed, so that it can reach the standbys. Every streaming standby
-- gets migration_ext.settle_wait to replay up to it.
CREATE FUNCTION migration_ext.wait_standbys_past_commit(migration text) RETURNS void
	LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	target pg_lsn := migration_ext.flushed_insert_lsn();
	deadline timestamptz := clock_timestamp()
		+ make_interval(secs => migration_ext.setting_ms('migration_ext.settle_wait', 5000) / 1000);
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
	PERFORM migration_ext.require_table_owner(actor, m.relation, 'advance its migration');
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
	ELSIF m.phase = 'backfilling' THEN
		IF m.job IS NOT NULL AND (SELECT migration_ext.effective_state(j) FROM migration_ext.backfill_job j WHERE j.id = m.job)
								 IS DISTINCT FROM 'done' THEN
			RAISE EXCEPTION 'cannot advance migration "%": its backfill (job %) is not done', name, m.job
				USING ERRCODE = 'object_not_in_prerequisite_state',
					HINT = format('See backfill_status; wait_backfill(%s) waits for it.', m.job);
		END IF;
		remaining := migration_ext.run_as(table_owner, format('SELECT count(*) FROM %s WHERE %s', m.relation,
					   CASE WHEN m.source_column IS NULL
							THEN format('%I.is_legacy(%L, %I::text)', '@extschema@', m.codec, m.column_name)
							-- A column move: a NULL target is left to convert only where its source is set (or
							-- the codec fills NULL itself).
							ELSE format('(%I IS NULL AND (%I IS NOT NULL OR %L)) OR %I.is_legacy(%L, %I::text)',
										m.column_name, m.source_column,
										(SELECT c.detect = 'null' FROM migration_ext.codec c WHERE c.name = m.codec),
										'@extschema@', m.codec, m.column_name) END), 'pg_catalog, pg_temp')::bigint;
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
	PERFORM migration_ext.require_table_owner(actor, m.relation, 'retreat its migration');
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
														live_duty_cycle double precision)
	RETURNS bigint LANGUAGE c AS 'MODULE_PATHNAME', 'mext_as_invoker';

CREATE FUNCTION migration_ext.start_migration_backfill(actor regrole, migration text, source_column name,
														batch_size int, max_rows_per_second int, throttle boolean,
														batch_time_target interval, max_replica_lag interval,
														max_active_backends int, max_wal_bytes_per_second bigint,
														live_duty_cycle double precision)
	RETURNS bigint LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	m migration_ext.migration := migration_ext.require_migration(migration, true);
	new_job bigint;
BEGIN
	IF m.phase NOT IN ('producing', 'backfilling') THEN
		RAISE EXCEPTION 'cannot backfill migration "%" in phase %', migration, m.phase
			USING ERRCODE = 'object_not_in_prerequisite_state',
				DETAIL = 'The backfill starts once writers produce the new format: after the point of no return.',
				HINT = format('advance_migration(%L) until it is producing.', migration);
	END IF;
	new_job := migration_ext.start_backfill(actor, m.relation, m.column_name, m.codec,
											coalesce(source_column, m.source_column), batch_size, max_rows_per_second,
											throttle, migration, true, batch_time_target, max_replica_lag,
											max_active_backends, max_wal_bytes_per_second, NULL, live_duty_cycle);
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
										   live_duty_cycle double precision DEFAULT NULL)
	RETURNS bigint LANGUAGE sql
	RETURN migration_ext.start_migration_backfill(migration, source_column, batch_size, max_rows_per_second, throttle,
												   batch_time_target, max_replica_lag, max_active_backends,
												   max_wal_bytes_per_second, live_duty_cycle);

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
										   live_duty_cycle double precision DEFAULT NULL)
	RETURNS bigint LANGUAGE sql
	RETURN migration_ext.start_backfill(relation::regclass, column_name, codec, source_column, batch_size,
										max_rows_per_second, throttle, NULL, true, batch_time_target, max_replica_lag,
										max_active_backends, max_wal_bytes_per_second, target_relation,
										live_duty_cycle);

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
		   m.constraint_name, m.created_at, m.created_by
	FROM migration_ext.migration m, LATERAL migration_ext.settle_state(m.name) s;

CREATE VIEW @extschema@.migration_history WITH (security_invoker = true) AS
	SELECT e.id, e.migration, e.event, e.from_phase, e.to_phase, e.fn, e.role, e.detail, e.at, e.by_role AS role_name,
		   e.wal_lsn
	FROM migration_ext.migration_event e;

------------------------------------------------------------------------------------------------------
-- Column moves: the dual-write trigger while both columns live (expand -> migrate -> contract).
------------------------------------------------------------------------------------------------------

-- Every write to the source column lands converted in the target column too. A write that sets the
-- target itself (a writer already flipped) and leaves the source alone is kept as written.
CREATE FUNCTION migration_ext.mirror_trigger() RETURNS trigger
	LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	source_value text := to_jsonb(NEW) ->> TG_ARGV[0];
BEGIN
	-- A writer that sets only the target (already flipped) keeps what it wrote: on INSERT when it gives
	-- no source, on UPDATE when it leaves the source alone.
	IF (to_jsonb(NEW) ->> TG_ARGV[1]) IS NOT NULL
	   AND ((TG_OP = 'INSERT' AND source_value IS NULL)
			OR (TG_OP = 'UPDATE' AND source_value IS NOT DISTINCT FROM (to_jsonb(OLD) ->> TG_ARGV[0]))) THEN
		RETURN NEW;
	END IF;
	NEW := jsonb_populate_record(NEW, jsonb_build_object(TG_ARGV[1],
		@extschema@.migrate_value(TG_ARGV[2], source_value)));
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
	PERFORM migration_ext.checked_text_column(relation, source_column);
	PERFORM migration_ext.checked_text_column(relation, target_column);
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

-- The views run as the caller: row-level security shows each role the jobs of tables it may act on, and
-- the bodies of functions it owns.
GRANT SELECT ON @extschema@.backfill_status, @extschema@.migration_status, @extschema@.migration_history,
	@extschema@.function_history TO PUBLIC;

------------------------------------------------------------------------------------------------------
-- Who may call what: every function of schema migration_ext is the extension's own, except the entry
-- points below (as_invoker() calls into the implementations, which authorize their actor) and what the
-- views, row-level security policies, create_mirror() and wait_backfill() evaluate as the caller.
------------------------------------------------------------------------------------------------------
REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA migration_ext FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
	migration_ext.start_backfill(regclass, name, text, name, int, int, boolean, text, boolean, interval, interval, int,
								 bigint, regclass, double precision),
	migration_ext.start_migration_backfill(text, name, int, int, boolean, interval, interval, int, bigint,
										   double precision),
	migration_ext.swap_function(regprocedure, text, text, name, text),
	migration_ext.revert_function(regprocedure, int, text),
	migration_ext.advance_migration(text, text, text, int),
	migration_ext.retreat_migration(text, text),
	migration_ext.record_out_of_band(regprocedure, text),
	migration_ext.ddl_progress(text),
	migration_ext.replays(pg_stat_replication),
	migration_ext.is_legacy_by_definition(text, text, text, text, text),
	migration_ext.job_home(),
	migration_ext.may_act_on(regrole, regclass),
	migration_ext.may_read_function(regprocedure),
	migration_ext.require_job(regrole, bigint),
	migration_ext.effective_state(migration_ext.backfill_job),
	migration_ext.worker_alive(int),
	migration_ext.xid_is_mine(xid),
	migration_ext.settle_state(text),
	migration_ext.require_migration(text, boolean),
	migration_ext.classify(text, text),
	migration_ext.checked_text_column(regclass, name, boolean),
	migration_ext.require_codec(text),
	migration_ext.row_estimate(regclass),
	migration_ext.mirror_trigger(),
	migration_ext.mirror_name(name, name)
TO PUBLIC;

------------------------------------------------------------------------------------------------------
-- Backups: pg_dump keeps every row of the state (codecs, frozen functions and their history, migrations
-- and their history, jobs with their checkpoints, the door's read samples). A job restored into another
-- database comes back paused (see job_home()).
------------------------------------------------------------------------------------------------------
SELECT pg_catalog.pg_extension_config_dump('migration_ext.codec', '');
SELECT pg_catalog.pg_extension_config_dump('migration_ext.frozen_function', '');
SELECT pg_catalog.pg_extension_config_dump('migration_ext.function_version', '');
SELECT pg_catalog.pg_extension_config_dump('migration_ext.migration', '');
SELECT pg_catalog.pg_extension_config_dump('migration_ext.planned_swap', '');
SELECT pg_catalog.pg_extension_config_dump('migration_ext.planned_swap_ordinal_seq', '');
SELECT pg_catalog.pg_extension_config_dump('migration_ext.migration_event', '');
SELECT pg_catalog.pg_extension_config_dump('migration_ext.migration_event_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('migration_ext.backfill_job', '');
SELECT pg_catalog.pg_extension_config_dump('migration_ext.backfill_job_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('migration_ext.read_sample', '');

-- DROP EXTENSION without CASCADE is refused while migrations are in flight (drop_guard.cpp).
CREATE FUNCTION migration_ext.guard_drop_extension() RETURNS event_trigger
	LANGUAGE c AS 'MODULE_PATHNAME', 'mext_guard_drop_extension';
CREATE EVENT TRIGGER migration_ext_drop_guard ON ddl_command_start WHEN TAG IN ('DROP EXTENSION')
	EXECUTE FUNCTION migration_ext.guard_drop_extension();
REVOKE EXECUTE ON FUNCTION migration_ext.guard_drop_extension() FROM PUBLIC;
