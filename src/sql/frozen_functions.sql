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
	-- On a Citus coordinator, a swap of a function Citus distributes goes to every node over one connection
	-- per node, which Citus allows only if the transaction's distributed queries (a read check, a verify
	-- scan) did the same.
	PERFORM set_config('citus.multi_shard_modify_mode', 'sequential', true)
	WHERE migration_ext.citus_node_role() = 'coordinator';
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
	-- On a Citus coordinator, a swap of a function Citus distributes goes to every node over one connection
	-- per node, which Citus allows only if the transaction's distributed queries (a read check, a verify
	-- scan) did the same.
	PERFORM set_config('citus.multi_shard_modify_mode', 'sequential', true)
	WHERE migration_ext.citus_node_role() = 'coordinator';
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
