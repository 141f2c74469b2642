-- Repair on read: repair_value() converts a legacy value and writes the conversion back to its row, after
-- the point of no return only, from frozen readers of every volatility and language; it never fails the
-- read and never clobbers a newer value; reads that may not write (read-only, serializable, restricted,
-- over budget, without privilege) only convert; migration_status counts what reads converted. The attacks
-- on the write-back are at the end: a table owner's trigger never runs with a reader's rights, and a reader
-- never writes what it may not write itself.
\set VERBOSITY default
\set SHOW_CONTEXT never
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS migration_ext CASCADE;
DROP SCHEMA IF EXISTS rep CASCADE;
DROP SCHEMA IF EXISTS rep_evil CASCADE;
DO $$
DECLARE
	r name;
BEGIN
	FOR r IN SELECT rolname FROM pg_roles WHERE rolname LIKE 'regress\_mext\_repair\_%' LOOP
		EXECUTE format('DROP OWNED BY %I', r);
		EXECUTE format('DROP ROLE %I', r);
	END LOOP;
END $$;
RESET client_min_messages;
CREATE EXTENSION migration_ext;
SET migration_ext.wait_progress = off;
CREATE SCHEMA rep;
SET search_path = rep, public;

------------------------------------------------------------------------------------------------------
-- A table of legacy tokens (stored reversed), its migration, and readers of every volatility and
-- language that repair through it.
------------------------------------------------------------------------------------------------------
SELECT create_codec('tok', 'reverse', marker => 'tok_');
CREATE TABLE accounts (id bigint PRIMARY KEY, token text);
INSERT INTO accounts SELECT g, reverse('tok_' || g) FROM generate_series(1, 20) g;
SELECT create_migration('tokens', 'rep.accounts', 'token', 'tok');
CREATE FUNCTION read_sql_stable(bigint) RETURNS text LANGUAGE sql STABLE
	AS $$ SELECT token FROM rep.accounts WHERE id = $1 $$;
CREATE FUNCTION read_sql_immutable(bigint) RETURNS text LANGUAGE sql IMMUTABLE
	AS $$ SELECT repair_value('tokens', token, id) FROM rep.accounts WHERE id = $1 $$;
CREATE FUNCTION read_sql_volatile(bigint) RETURNS text LANGUAGE sql VOLATILE
	AS $$ SELECT repair_value('tokens', token, id) FROM rep.accounts WHERE id = $1 $$;
CREATE FUNCTION read_plpgsql_stable(i bigint) RETURNS text LANGUAGE plpgsql STABLE
	AS $$ BEGIN RETURN (SELECT repair_value('tokens', token, id) FROM rep.accounts WHERE id = i); END $$;
CREATE FUNCTION read_plpgsql_immutable(i bigint) RETURNS text LANGUAGE plpgsql IMMUTABLE
	AS $$ BEGIN RETURN (SELECT repair_value('tokens', token, id) FROM rep.accounts WHERE id = i); END $$;
-- A PL/pgSQL simple expression (no table in it): the value and key come in as arguments.
CREATE FUNCTION read_plpgsql_expression(t text, i bigint) RETURNS text LANGUAGE plpgsql STABLE
	AS $$ BEGIN RETURN repair_value('tokens', t, i); END $$;
SELECT freeze_function('read_sql_stable(bigint)'), freeze_function('read_sql_immutable(bigint)'),
       freeze_function('read_plpgsql_stable(bigint)');
SELECT plan_swap('tokens', 'read_sql_stable(bigint)',
       $$ SELECT repair_value('tokens', token, id) FROM rep.accounts WHERE id = $1 $$);

-- Before the point of no return a read only converts: a reader that is not tolerant yet could meet the
-- new format.
SELECT advance_migration('tokens') AS phase;
SELECT read_sql_stable(1) AS tolerant_read, read_sql_volatile(2) AS tolerant_read_volatile;
SELECT id, token FROM accounts WHERE id IN (1, 2) ORDER BY id;

------------------------------------------------------------------------------------------------------
-- Past the door: each reader writes back the row it read, and returns the same as before.
------------------------------------------------------------------------------------------------------
SELECT advance_migration('tokens', confirm => 'tokens') AS phase;
SELECT read_sql_stable(1) AS sql_stable, read_sql_immutable(2) AS sql_immutable, read_sql_volatile(3) AS sql_volatile,
       read_plpgsql_stable(4) AS plpgsql_stable, read_plpgsql_immutable(5) AS plpgsql_immutable;
SELECT read_plpgsql_expression(token, id) AS plpgsql_expression FROM accounts WHERE id = 6;
-- An IMMUTABLE reader with a constant argument is evaluated while the statement is planned: it repairs then.
PREPARE immutable_read AS SELECT read_sql_immutable(7);
EXECUTE immutable_read;
SELECT id, token FROM accounts WHERE id <= 8 ORDER BY id;
-- A converted row reads the same, and is not written again.
SELECT read_sql_stable(1) AS again, read_sql_volatile(8) AS row_8;
SELECT name, phase, repaired_by_reads FROM migration_status WHERE name = 'tokens';
ANALYZE accounts;
SELECT repaired_by_reads, round(repaired_share::numeric, 2) AS repaired_share FROM migration_status WHERE name = 'tokens';

------------------------------------------------------------------------------------------------------
-- Reads that only convert.
------------------------------------------------------------------------------------------------------
-- A read-only transaction.
BEGIN READ ONLY;
SELECT read_sql_stable(9) AS read_only;
COMMIT;
-- A serializable one: a write would add conflicts that could fail the reader's commit.
BEGIN ISOLATION LEVEL SERIALIZABLE;
SELECT read_sql_stable(10) AS serializable;
COMMIT;
-- A repeatable read one writes back.
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT read_sql_stable(11) AS repeatable_read;
COMMIT;
-- A NULL key names no row.
SELECT repair_value('tokens', '12_kot'::text, NULL::bigint) AS null_key;
-- A value that is not what the row holds: converted, and the row keeps what it has.
SELECT repair_value('tokens', 'cba_kot'::text, 12::bigint) AS not_the_rows_value;
SELECT id, token FROM accounts WHERE id BETWEEN 9 AND 12 ORDER BY id;
-- A rolled-back savepoint takes its write-back (and its count) with it.
BEGIN;
SAVEPOINT before_read;
SELECT read_sql_stable(13) AS in_savepoint;
ROLLBACK TO SAVEPOINT before_read;
COMMIT;
SELECT token AS after_rollback FROM accounts WHERE id = 13;
-- A transaction writes back at most migration_ext.repairs_per_transaction values; the rest only convert.
SET migration_ext.repairs_per_transaction = 2;
SELECT count(repair_value('tokens', token, id)) AS read, count(*) FILTER (WHERE token NOT LIKE 'tok_%') AS legacy_read
FROM accounts WHERE id BETWEEN 13 AND 18;
SELECT count(*) FILTER (WHERE token LIKE 'tok_%') AS converted_13_to_18 FROM accounts WHERE id BETWEEN 13 AND 18;
SET migration_ext.repairs_per_transaction = 0;
SELECT read_sql_stable(19) AS never_written;
RESET migration_ext.repairs_per_transaction;
SET migration_ext.repairs_per_transaction = 65;
-- Inside a security-restricted operation (REFRESH MATERIALIZED VIEW runs its query so) reads only convert.
CREATE MATERIALIZED VIEW refreshed AS SELECT read_sql_volatile(19) AS token WITH NO DATA;
REFRESH MATERIALIZED VIEW refreshed;
SELECT (SELECT token FROM refreshed) AS refreshed, (SELECT token FROM accounts WHERE id = 19) AS stored;
-- The count: every write-back that committed, and only those (rows 1-8, 11, and two of 13-18).
SELECT repaired_by_reads FROM migration_status WHERE name = 'tokens';
-- The launcher writes the counters into the state table; the total stays the same.
SELECT migration_ext.flush_read_repairs() AS flushed;
SELECT repaired FROM migration_ext.read_repair WHERE migration = 'tokens';
SELECT migration_ext.unflushed_repairs('tokens') AS unflushed, repaired_by_reads FROM migration_status WHERE name = 'tokens';

------------------------------------------------------------------------------------------------------
-- Calls that cannot work raise in every phase, so that a reader is found wrong when it is first tried.
------------------------------------------------------------------------------------------------------
SELECT repair_value('no_such_migration', token, id) FROM accounts WHERE id = 20;
SELECT repair_value('tokens', token) FROM accounts WHERE id = 20;
SELECT repair_value('tokens', token, id, id) FROM accounts WHERE id = 20;
SELECT repair_value('tokens', token, point(1, 2)) FROM accounts WHERE id = 20;
SELECT repair_value('tokens', token, VARIADIC ARRAY[id]) FROM accounts WHERE id = 20;
-- A key value of another type that casts names the row: text '20' for bigint 20.
SELECT repair_value('tokens', token, id::text) AS cast_key FROM accounts WHERE id = 20;
SELECT token FROM accounts WHERE id = 20;
-- An untyped literal names it too.
SELECT repair_value('tokens', token, '12') AS literal_key FROM accounts WHERE id = 12;
SELECT token FROM accounts WHERE id = 12;

------------------------------------------------------------------------------------------------------
-- Other tables: a composite key, a partitioned table, a jsonb column, a new required field (NULL is the
-- legacy state), and a column move, which it refuses.
------------------------------------------------------------------------------------------------------
CREATE TABLE tenants (tenant text NOT NULL, id int NOT NULL, token text, PRIMARY KEY (tenant, id));
INSERT INTO tenants VALUES ('a', 1, '1_kot'), ('b', 1, '2_kot');
SELECT create_migration('tenant_tokens', 'rep.tenants', 'token', 'tok');
SELECT advance_migration('tenant_tokens'), advance_migration('tenant_tokens', confirm => 'tenant_tokens', read_sample => 0);
SELECT repair_value('tenant_tokens', token, tenant, id) AS composite FROM tenants WHERE tenant = 'b' AND id = 1;
SELECT tenant, id, token FROM tenants ORDER BY tenant;

CREATE TABLE parted (id int PRIMARY KEY, token text) PARTITION BY RANGE (id);
CREATE TABLE parted_low PARTITION OF parted FOR VALUES FROM (0) TO (10);
CREATE TABLE parted_high PARTITION OF parted FOR VALUES FROM (10) TO (20);
INSERT INTO parted VALUES (1, '1_kot'), (11, '11_kot');
SELECT create_migration('parted_tokens', 'rep.parted', 'token', 'tok');
SELECT advance_migration('parted_tokens'), advance_migration('parted_tokens', confirm => 'parted_tokens', read_sample => 0);
SELECT repair_value('parted_tokens', token, id) AS partitioned FROM parted WHERE id = 11;
SELECT tableoid::regclass AS partition, id, token FROM parted ORDER BY id;

CREATE TABLE docs (id int PRIMARY KEY, doc jsonb);
INSERT INTO docs VALUES (1, '{"v": 1, "name": "Ann"}'), (2, '{"v": 2, "full_name": "Bo"}');
CREATE FUNCTION doc_v2(doc text) RETURNS text LANGUAGE sql IMMUTABLE STRICT
	RETURN ((doc::jsonb - 'name') || jsonb_build_object('v', 2, 'full_name', doc::jsonb -> 'name'))::text;
SELECT create_codec('doc_v2', 'fn:rep.doc_v2', marker => '{"v": 2', detect => 'absent', shape => '^\{"v": 1[,}]');
SELECT create_migration('docs', 'rep.docs', 'doc', 'doc_v2');
SELECT advance_migration('docs'), advance_migration('docs', confirm => 'docs', read_sample => 0);
SELECT id, repair_value('docs', doc, id) ->> 'full_name' AS full_name, pg_typeof(repair_value('docs', doc, id)) AS type
FROM docs ORDER BY id;
SELECT id, doc FROM docs ORDER BY id;

CREATE TABLE orders (id int PRIMARY KEY, status text);
INSERT INTO orders VALUES (1, NULL), (2, 'shipped');
SELECT create_codec('status_default', 'const:pending', detect => 'null');
SELECT create_migration('status', 'rep.orders', 'status', 'status_default');
SELECT advance_migration('status'), advance_migration('status', confirm => 'status', read_sample => 0);
SELECT id, repair_value('status', status, id) AS status FROM orders ORDER BY id;
SELECT id, status FROM orders ORDER BY id;

CREATE TABLE people (id int PRIMARY KEY, full_name text, display_name text);
SELECT create_codec('copy', 'const:', detect => 'null');
SELECT create_migration('rename', 'rep.people', 'display_name', 'copy', source_column => 'full_name');
SELECT repair_value('rename', display_name, id) FROM people;
INSERT INTO people VALUES (1, 'Ann', NULL);
SELECT repair_value('rename', display_name, id) FROM people;

------------------------------------------------------------------------------------------------------
-- Attacks. The table's owner plants code in the write-back's path (a trigger); a role without the right
-- to write reads; row-level security hides rows from updates; a SECURITY DEFINER reader is handed values;
-- functions and operators are planted on the caller's search_path.
------------------------------------------------------------------------------------------------------
CREATE ROLE regress_mext_repair_owner;
CREATE ROLE regress_mext_repair_app;
CREATE ROLE regress_mext_repair_guest;
GRANT USAGE, CREATE ON SCHEMA rep TO regress_mext_repair_owner;
GRANT USAGE ON SCHEMA rep TO regress_mext_repair_app, regress_mext_repair_guest;
CREATE TABLE writers (current_role_name name, session_role_name name);
GRANT INSERT ON writers TO PUBLIC;
CREATE TABLE superuser_only (note text);
SET ROLE regress_mext_repair_owner;
CREATE TABLE owned (id int PRIMARY KEY, token text);
INSERT INTO owned SELECT g, reverse('tok_' || g) FROM generate_series(1, 8) g;
CREATE FUNCTION record_writer() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO rep.writers VALUES (current_user, session_user);
	RETURN NEW;
END $$;
CREATE TRIGGER record_writer BEFORE UPDATE ON owned FOR EACH ROW EXECUTE FUNCTION record_writer();
CREATE FUNCTION read_owned(bigint) RETURNS text LANGUAGE sql STABLE
	AS $$ SELECT repair_value('owned_tokens', token, id) FROM rep.owned WHERE id = $1 $$;
SELECT create_migration('owned_tokens', 'rep.owned', 'token', 'tok');
SELECT advance_migration('owned_tokens'), advance_migration('owned_tokens', confirm => 'owned_tokens', read_sample => 0);
GRANT SELECT ON owned TO regress_mext_repair_app;
RESET ROLE;

-- A superuser reads: the owner's trigger runs as the owner, restricted, never as the superuser.
SELECT rep.read_owned(1) AS superuser_read;
SELECT current_role_name, session_role_name FROM writers;
-- A role that may only read the table: converted, not written.
SET ROLE regress_mext_repair_app;
SELECT rep.read_owned(2) AS reader_without_update;
RESET ROLE;
SELECT token AS row_2 FROM owned WHERE id = 2;
-- Given UPDATE on the column it writes, and the trigger still runs as the owner.
GRANT UPDATE (token) ON rep.owned TO regress_mext_repair_app;
SET ROLE regress_mext_repair_app;
SELECT rep.read_owned(2) AS reader_with_update;
RESET ROLE;
SELECT token AS row_2 FROM owned WHERE id = 2;
SELECT current_role_name, count(*) FROM writers GROUP BY current_role_name;

-- The owner's trigger now tries what only a superuser may do: inside the write-back it runs as the owner
-- and fails; the failure is swallowed, the row stays as it was, and the read goes on.
SET ROLE regress_mext_repair_owner;
CREATE OR REPLACE FUNCTION record_writer() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO rep.superuser_only VALUES (format('written as %s', current_user));
	RETURN NEW;
END $$;
RESET ROLE;
SELECT rep.read_owned(3) AS superuser_read_with_hostile_trigger;
SELECT count(*) AS superuser_only_rows FROM superuser_only;
SELECT token AS row_3 FROM owned WHERE id = 3;
SET ROLE regress_mext_repair_owner;
DROP TRIGGER record_writer ON owned;
RESET ROLE;

-- Row-level security: the reader may see every row but update only rows 1 to 4.
SET ROLE regress_mext_repair_owner;
ALTER TABLE owned ENABLE ROW LEVEL SECURITY;
CREATE POLICY everyone_reads ON owned FOR SELECT USING (true);
CREATE POLICY app_updates_low ON owned FOR UPDATE USING (id <= 4);
RESET ROLE;
SET ROLE regress_mext_repair_app;
SELECT rep.read_owned(4) AS update_allowed, rep.read_owned(5) AS update_hidden;
RESET ROLE;
SELECT id, token FROM owned WHERE id IN (4, 5) ORDER BY id;

-- A SECURITY DEFINER reader of the owner's: the write-back is authorized as the owner, its current role,
-- for a guest with no right on the table. Handed a value, it writes only the conversion of what the row
-- holds, where the row holds it.
SET ROLE regress_mext_repair_owner;
CREATE FUNCTION read_as_owner(t text, i bigint) RETURNS text LANGUAGE sql STABLE SECURITY DEFINER
	SET search_path = pg_catalog AS $$ SELECT public.repair_value('owned_tokens', t, i) $$;
GRANT EXECUTE ON FUNCTION read_as_owner(text, bigint) TO regress_mext_repair_guest;
RESET ROLE;
SET ROLE regress_mext_repair_guest;
SELECT rep.read_as_owner('ffo_kot', 6) AS not_the_rows_value, rep.read_as_owner('6_kot', 6) AS the_rows_value;
SELECT count(*) FROM rep.owned;
RESET ROLE;
SELECT id, token FROM owned WHERE id IN (6, 7) ORDER BY id;

-- Functions and operators planted ahead of pg_catalog on the caller's search_path are never called.
CREATE SCHEMA rep_evil;
CREATE TABLE rep_evil.calls (fn text);
CREATE FUNCTION rep_evil.format(f text, a text) RETURNS text LANGUAGE plpgsql
	AS $$ BEGIN INSERT INTO rep_evil.calls VALUES ('format'); RETURN pg_catalog.format(f, a); END $$;
CREATE FUNCTION rep_evil.int8_eq(a bigint, b bigint) RETURNS boolean LANGUAGE plpgsql
	AS $$ BEGIN INSERT INTO rep_evil.calls VALUES ('='); RETURN pg_catalog.int8eq(a, b); END $$;
CREATE OPERATOR rep_evil.= (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = rep_evil.int8_eq);
CREATE FUNCTION rep_evil.text_eq(a text, b text) RETURNS boolean LANGUAGE plpgsql
	AS $$ BEGIN INSERT INTO rep_evil.calls VALUES ('=(text)'); RETURN pg_catalog.texteq(a, b); END $$;
CREATE OPERATOR rep_evil.= (LEFTARG = text, RIGHTARG = text, FUNCTION = rep_evil.text_eq);
SET search_path = rep_evil, rep, public;
SELECT repair_value('tokens', token, id) AS planted_path FROM rep.accounts WHERE id = 19;
RESET search_path;
SELECT count(*) AS evil_calls FROM rep_evil.calls;
SELECT token AS row_19 FROM rep.accounts WHERE id = 19;

SET client_min_messages = warning;
DROP EXTENSION migration_ext CASCADE;
DROP SCHEMA rep CASCADE;
DROP SCHEMA rep_evil CASCADE;
DROP OWNED BY regress_mext_repair_owner, regress_mext_repair_app, regress_mext_repair_guest;
DROP ROLE regress_mext_repair_owner;
DROP ROLE regress_mext_repair_app;
DROP ROLE regress_mext_repair_guest;
RESET client_min_messages;
RESET search_path;
