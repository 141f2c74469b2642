-- migration_ext install script. The Makefile concatenates the files of src/sql in a fixed order (schema,
-- codecs, Citus, frozen functions, backfill jobs, worker, controls, protocol, column moves, grants, backups) into
-- the versioned script migration_ext--<version>.sql; this first part creates the schemas and the helpers
-- every other part authorizes and acts through.
--
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

-- SQL-standard bodies (RETURN, BEGIN ATOMIC), views and policies are parsed once, here, with the script's
-- search_path, whatever SET clause they carry; PostgreSQL starts that path with the target schema
-- (@extschema@), where a role that may create objects, such as the database owner who owns public, could
-- have planted a function or an operator that matches better than pg_catalog's (format(text, bigint, ...),
-- =(oid, regrole)), bound for ever and run by every caller, SECURITY DEFINER ones included. So every
-- unqualified name in this script is pg_catalog's; every object it creates names its schema. LOCAL: the
-- extension machinery restores the caller's path when the script ends.
SET LOCAL search_path = pg_catalog, pg_temp;

CREATE SCHEMA migration_ext;
REVOKE ALL ON SCHEMA migration_ext FROM PUBLIC;
GRANT USAGE ON SCHEMA migration_ext TO PUBLIC;

-- The current value of a migration_ext.* setting, in its base unit (ms for times). A C function, so
-- calling it loads the library, which defines every setting with its default (core/defaults.hpp).
CREATE FUNCTION migration_ext.setting(name text) RETURNS double precision
	LANGUAGE c STABLE STRICT AS 'MODULE_PATHNAME', 'mext_setting';

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
			PERFORM set_config('lock_timeout', migration_ext.setting('migration_ext.ddl_lock_timeout')::int::text, true);
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
