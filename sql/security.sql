-- Security: a role steers and reads only its own backfill jobs and cannot write the extension's state;
-- the worker runs as the job's role; the install script and every SECURITY DEFINER function pin
-- search_path, so functions and operators planted in a schema earlier on the search_path change nothing.
-- It creates the extension itself (with evil first on the search_path) and drops it, with its roles
-- and schemas, at its end.
\set VERBOSITY default
\set SHOW_CONTEXT never
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS migration_ext CASCADE;
DROP SCHEMA IF EXISTS sec CASCADE;
DROP SCHEMA IF EXISTS evil CASCADE;
DROP ROLE IF EXISTS regress_mext_alice;
DROP ROLE IF EXISTS regress_mext_bob;
RESET client_min_messages;
CREATE ROLE regress_mext_alice LOGIN;
CREATE ROLE regress_mext_bob LOGIN;

------------------------------------------------------------------------------------------------------
-- bob plants look-alikes of what the extension uses in his schema evil: functions and operators with
-- the same or a better-matching signature, and an is_legacy() that always says false. Each records its
-- call (from any session, the backfill workers included) and raises a notice.
------------------------------------------------------------------------------------------------------
CREATE SCHEMA evil AUTHORIZATION regress_mext_bob;
SET ROLE regress_mext_bob;
CREATE TABLE evil.calls (fn text, by_role name);
GRANT SELECT, INSERT ON evil.calls TO PUBLIC;
CREATE FUNCTION evil.caught(fn text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO evil.calls VALUES (fn, current_user);
	RAISE NOTICE 'evil called: %', fn;
END
$$;
CREATE FUNCTION evil.format(f text, a text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN PERFORM evil.caught('format(text,text)'); RETURN pg_catalog.format(f, a); END $$;
CREATE FUNCTION evil.format(f text, VARIADIC a text[]) RETURNS text LANGUAGE plpgsql AS $$
BEGIN PERFORM evil.caught('format(text,text[])'); RETURN pg_catalog.format(f, VARIADIC a); END $$;
CREATE FUNCTION evil.quote_ident(t text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN PERFORM evil.caught('quote_ident(text)'); RETURN pg_catalog.quote_ident(t); END $$;
CREATE FUNCTION evil.quote_ident(t name) RETURNS text LANGUAGE plpgsql AS $$
BEGIN PERFORM evil.caught('quote_ident(name)'); RETURN pg_catalog.quote_ident(t::text); END $$;
CREATE FUNCTION evil.now() RETURNS timestamptz LANGUAGE plpgsql AS $$
BEGIN PERFORM evil.caught('now()'); RETURN pg_catalog.now(); END $$;
CREATE FUNCTION evil.clock_timestamp() RETURNS timestamptz LANGUAGE plpgsql AS $$
BEGIN PERFORM evil.caught('clock_timestamp()'); RETURN pg_catalog.clock_timestamp(); END $$;
CREATE FUNCTION evil.is_legacy(codec text, value text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN PERFORM evil.caught('is_legacy(text,text)'); RETURN false; END $$;
CREATE FUNCTION evil.reverse(t text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN PERFORM evil.caught('reverse(text)'); RETURN pg_catalog.reverse(t); END $$;
CREATE FUNCTION evil.to_regclass(t text) RETURNS regclass LANGUAGE plpgsql AS $$
BEGIN PERFORM evil.caught('to_regclass(text)'); RETURN pg_catalog.to_regclass(t); END $$;
CREATE FUNCTION evil.current_setting(t text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN PERFORM evil.caught('current_setting(text)'); RETURN pg_catalog.current_setting(t); END $$;
CREATE FUNCTION evil.set_config(n text, v text, l boolean) RETURNS text LANGUAGE plpgsql AS $$
BEGIN PERFORM evil.caught('set_config(text,text,boolean)'); RETURN pg_catalog.set_config(n, v, l); END $$;
CREATE FUNCTION evil.pg_get_functiondef(f regprocedure) RETURNS text LANGUAGE plpgsql AS $$
BEGIN PERFORM evil.caught('pg_get_functiondef(regprocedure)'); RETURN pg_catalog.pg_get_functiondef(f); END $$;
CREATE FUNCTION evil.has_table_privilege(r regclass, p text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN PERFORM evil.caught('has_table_privilege(regclass,text)'); RETURN true; END $$;
CREATE FUNCTION evil.pg_has_role(u name, r regrole, p text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN PERFORM evil.caught('pg_has_role(name,regrole,text)'); RETURN true; END $$;
CREATE FUNCTION evil.text_eq(a text, b text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN PERFORM evil.caught('=(text,text)'); RETURN pg_catalog.texteq(a, b); END $$;
CREATE OPERATOR evil.= (LEFTARG = text, RIGHTARG = text, FUNCTION = evil.text_eq);
CREATE FUNCTION evil.int8_eq(a bigint, b bigint) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN PERFORM evil.caught('=(bigint,bigint)'); RETURN pg_catalog.int8eq(a, b); END $$;
CREATE OPERATOR evil.= (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = evil.int8_eq);
CREATE FUNCTION evil.regclass_eq(a regclass, b regclass) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN PERFORM evil.caught('=(regclass,regclass)'); RETURN pg_catalog.oideq(a, b); END $$;
CREATE OPERATOR evil.= (LEFTARG = regclass, RIGHTARG = regclass, FUNCTION = evil.regclass_eq);
CREATE FUNCTION evil.oid_regclass_eq(a oid, b regclass) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN PERFORM evil.caught('=(oid,regclass)'); RETURN pg_catalog.oideq(a, b); END $$;
CREATE OPERATOR evil.= (LEFTARG = oid, RIGHTARG = regclass, FUNCTION = evil.oid_regclass_eq);
CREATE FUNCTION evil.regprocedure_eq(a regprocedure, b regprocedure) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN PERFORM evil.caught('=(regprocedure,regprocedure)'); RETURN pg_catalog.oideq(a, b); END $$;
CREATE OPERATOR evil.= (LEFTARG = regprocedure, RIGHTARG = regprocedure, FUNCTION = evil.regprocedure_eq);
CREATE FUNCTION evil.regrole_eq(a regrole, b regrole) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN PERFORM evil.caught('=(regrole,regrole)'); RETURN pg_catalog.oideq(a, b); END $$;
CREATE OPERATOR evil.= (LEFTARG = regrole, RIGHTARG = regrole, FUNCTION = evil.regrole_eq);
CREATE DOMAIN evil.text AS pg_catalog.text;
GRANT USAGE ON SCHEMA evil TO PUBLIC;
RESET ROLE;
SELECT count(*) AS evil_functions FROM pg_proc WHERE pronamespace = 'evil'::regnamespace;
SELECT count(*) AS evil_operators FROM pg_operator WHERE oprnamespace = 'evil'::regnamespace;

------------------------------------------------------------------------------------------------------
-- The install script runs with evil first on the caller's search_path, and calls none of it.
------------------------------------------------------------------------------------------------------
SET search_path = evil, public;
CREATE EXTENSION migration_ext SCHEMA public;
-- Waits print no progress NOTICEs: their figures differ from run to run.
SET migration_ext.wait_progress = off;
RESET search_path;
SELECT count(*) AS evil_calls_during_install FROM evil.calls;
SELECT extnamespace::regnamespace AS extension_schema FROM pg_extension WHERE extname = 'migration_ext';

------------------------------------------------------------------------------------------------------
-- What the catalog says: every SECURITY DEFINER function of the extension pins search_path ...
------------------------------------------------------------------------------------------------------
SELECT p.oid::regprocedure AS security_definer_function, l.lanname AS language, p.proconfig,
       'search_path=pg_catalog, pg_temp' = ANY (p.proconfig) AS search_path_pinned
FROM pg_proc p
JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'migration_ext'
JOIN pg_language l ON l.oid = p.prolang
WHERE p.prosecdef
ORDER BY p.oid::regprocedure::text;
-- ... so does every PL/pgSQL function ...
SELECT count(*) AS plpgsql_functions,
       count(*) FILTER (WHERE 'search_path=pg_catalog, pg_temp' = ANY (p.proconfig)) AS pinned
FROM pg_proc p
JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'migration_ext'
WHERE p.prolang = (SELECT oid FROM pg_language WHERE lanname = 'plpgsql') AND p.prokind = 'f';
-- ... and these do not: C functions, SQL wrappers whose body is parsed once, at CREATE time (its
-- references are bound then, whatever the caller's search_path), so that they can pass the caller's
-- search_path on, and the procedure await_backfill, which commits (a SET clause would forbid that) and
-- names everything schema-qualified. None is SECURITY DEFINER.
SELECT p.oid::regprocedure AS function_without_pinned_search_path, l.lanname AS language, p.prosecdef,
       CASE WHEN l.lanname = 'sql' THEN p.prosqlbody IS NOT NULL END AS body_bound_at_create
FROM pg_proc p
JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'migration_ext'
JOIN pg_language l ON l.oid = p.prolang
WHERE NOT EXISTS (SELECT FROM unnest(p.proconfig) c WHERE c LIKE 'search_path=%')
ORDER BY l.lanname, p.oid::regprocedure::text;
-- The state tables: what PUBLIC may do with them (row-level security guards the job table).
SELECT c.relname AS state_table, c.relrowsecurity AS row_security,
       coalesce((SELECT string_agg(a.privilege_type, ', ' ORDER BY a.privilege_type)
                 FROM aclexplode(c.relacl) a WHERE a.grantee = 0), '') AS public_may
FROM pg_class c
WHERE c.relnamespace = 'migration_ext'::regnamespace AND c.relkind = 'r'
ORDER BY c.relname;

------------------------------------------------------------------------------------------------------
-- alice owns a table and starts a backfill on it, capped at 50 rows/s and paused in the transaction
-- that starts it (so its worker waits and converts nothing). A trigger records who writes each row.
-- Her sessions (and so her worker) have evil first on their search_path.
------------------------------------------------------------------------------------------------------
ALTER ROLE regress_mext_alice SET search_path = evil, public;
CREATE SCHEMA sec;
GRANT USAGE ON SCHEMA sec TO regress_mext_alice, regress_mext_bob;
GRANT CREATE ON SCHEMA sec TO regress_mext_alice;
SELECT create_codec('tok', 'reverse', marker => 'tok_');

SET ROLE regress_mext_alice;
CREATE TABLE sec.alice_tokens (id int PRIMARY KEY, token text);
CREATE TABLE sec.who_wrote (current_role_name name, session_role_name name);
CREATE FUNCTION sec.record_writer() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO sec.who_wrote VALUES (current_user, session_user);
	RETURN NEW;
END
$$;
CREATE TRIGGER record_writer AFTER UPDATE ON sec.alice_tokens FOR EACH ROW EXECUTE FUNCTION sec.record_writer();
INSERT INTO sec.alice_tokens SELECT g, reverse('tok_' || g) FROM generate_series(1, 2000) g;
BEGIN;
SELECT start_backfill('sec.alice_tokens', 'token', 'tok', max_rows_per_second => 50) AS job_alice \gset
SELECT pause_backfill(:job_alice);
COMMIT;
SELECT wait_backfill(:job_alice, '60 s') AS alice_state;
SELECT relation, column_name, state, requested, rows_converted, max_rows_per_second, role
FROM backfill_status;
-- alice freezes a function of her own; a codec needs CREATE on the database (codec names are the
-- database's, like schema names), which she is given.
CREATE FUNCTION sec.alice_decode(t text) RETURNS text LANGUAGE sql AS $$ SELECT pg_catalog.reverse(t) $$;
SELECT freeze_function('sec.alice_decode(text)');
\set VERBOSITY terse
SELECT create_codec('alice_codec', 'reverse', 'tok_');
\set VERBOSITY default
RESET ROLE;
GRANT CREATE ON DATABASE :"DBNAME" TO regress_mext_alice;
SET ROLE regress_mext_alice;
SELECT create_codec('alice_codec', 'reverse', 'tok_');
RESET ROLE;
REVOKE CREATE ON DATABASE :"DBNAME" FROM regress_mext_alice;

------------------------------------------------------------------------------------------------------
-- bob sees nothing of alice's job and can steer none of it.
------------------------------------------------------------------------------------------------------
SET ROLE regress_mext_bob;
SELECT count(*) AS jobs_bob_sees FROM backfill_status;
SELECT count(*) AS job_rows_bob_sees FROM migration_ext.backfill_job;
SELECT pause_backfill(:job_alice);
SELECT resume_backfill(:job_alice);
SELECT cancel_backfill(:job_alice);
SELECT alter_backfill(:job_alice, max_rows_per_second => 0);
SELECT wait_backfill(:job_alice, '1 s');
-- nor through the functions the worker uses: only the extension (its worker, a superuser) may call them
SELECT migration_ext.launch_worker(:job_alice);
SELECT * FROM migration_ext.worker_begin(:job_alice);
SELECT * FROM migration_ext.worker_step(:job_alice, 10, NULL);
SELECT migration_ext.worker_note(:job_alice, 1, 'bob was here', NULL, 1);
SELECT migration_ext.worker_failed(:job_alice, 'XX000', 'bob was here', 0);
SELECT migration_ext.resume_interrupted() AS resumed_for_bob;
-- nor can he start a backfill on her table
SELECT start_backfill('sec.alice_tokens', 'token', 'tok');
SELECT start_backfill('sec.alice_tokens', 'token', 'tok', throttle => false, batch_size => 1);
-- nor write her job's row, nor any job row: the table takes no DML but the extension's
UPDATE migration_ext.backfill_job SET requested = 'cancel' WHERE id = :job_alice;
UPDATE migration_ext.backfill_job SET requested = 'cancel';
DELETE FROM migration_ext.backfill_job WHERE id = :job_alice;
INSERT INTO migration_ext.backfill_job (relation, column_name, codec, key_columns, partitions, batch_size,
                                        throttle, owner)
VALUES ('sec.alice_tokens', 'token', 'tok', '{id}', '{sec.alice_tokens}', 10, true, 'regress_mext_alice');
-- nor write any other state table
INSERT INTO migration_ext.codec (name, convert, marker, detect) VALUES ('bobs', 'reverse', 'tok_', 'converted');
UPDATE migration_ext.codec SET convert = 'lower' WHERE name = 'tok';
DELETE FROM migration_ext.codec;
TRUNCATE migration_ext.codec;
\set VERBOSITY terse
SELECT create_codec('bobs', 'reverse', 'tok_');
\set VERBOSITY default
SELECT drop_codec('alice_codec');
INSERT INTO migration_ext.frozen_function (fn, identity, proname, pronamespace, current_version)
VALUES ('sec.alice_decode(text)', 'x', 'x', 0, 1);
UPDATE migration_ext.frozen_function SET current_version = 0;
DELETE FROM migration_ext.function_version;
INSERT INTO migration_ext.pending_swap (fn) VALUES ('sec.alice_decode(text)');
INSERT INTO migration_ext.migration (name, relation, column_name, codec) VALUES ('bobs', 'sec.alice_tokens', 'token', 'tok');
UPDATE migration_ext.migration SET phase = 'contracted';
DELETE FROM migration_ext.planned_swap;
INSERT INTO migration_ext.migration_event (migration, event) VALUES ('bobs', 'advance');
SELECT migration_ext.record_version('regress_mext_bob', 'sec.alice_decode(text)', 'swap', 'bob was here');
SELECT freeze_function('sec.alice_decode(text)');
SELECT create_migration('bobs', 'sec.alice_tokens', 'token', 'tok');
-- nor call the event-trigger functions
SELECT migration_ext.on_ddl_command_end();
SELECT migration_ext.on_sql_drop();
RESET ROLE;
-- alice's job is as she left it.
SELECT relation, state, requested, rows_converted, max_rows_per_second, throttle_reason, last_error, role
FROM backfill_status WHERE job = :job_alice;

------------------------------------------------------------------------------------------------------
-- alice lifts the cap and resumes: her batches run as alice, the table's owner (evil first on her
-- search_path changes nothing: a batch runs with search_path pg_catalog, pg_temp), and convert every
-- row; the trigger saw alice, never a superuser.
------------------------------------------------------------------------------------------------------
SET ROLE regress_mext_alice;
SELECT alter_backfill(:job_alice, max_rows_per_second => 0);
SELECT resume_backfill(:job_alice);
SELECT wait_backfill(:job_alice, '120 s') AS alice_state;
SELECT relation, state, rows_scanned, rows_converted, max_rows_per_second, last_error, role
FROM backfill_status WHERE job = :job_alice;
SELECT current_role_name, count(*) AS rows_written FROM sec.who_wrote GROUP BY 1;
SELECT count(*) FILTER (WHERE token = 'tok_' || id) AS converted FROM sec.alice_tokens;
RESET ROLE;

-- bob cannot write a job for himself on her table either, nor take her job.
SET ROLE regress_mext_bob;
INSERT INTO migration_ext.backfill_job (relation, column_name, codec, key_columns, partitions, batch_size, throttle,
                                        owner)
VALUES ('sec.alice_tokens', 'token', 'tok', '{id}', '{sec.alice_tokens}', 10, true, 'regress_mext_bob');
UPDATE migration_ext.backfill_job SET owner = 'regress_mext_bob' WHERE id = :job_alice;
RESET ROLE;
SELECT count(*) AS rows_written_by_anyone_else FROM sec.who_wrote WHERE current_role_name <> 'regress_mext_alice';

------------------------------------------------------------------------------------------------------
-- Shadowing: a superuser runs every main flow with evil first on the search_path. The results are those
-- of a clean search_path, and no evil function or operator is ever called. (The tests' own calls of
-- is_legacy are schema-qualified: an unqualified one would find evil's, as it should.)
------------------------------------------------------------------------------------------------------
CREATE TABLE sec.shadow (id bigint PRIMARY KEY, token text, copy text);
INSERT INTO sec.shadow SELECT g, reverse('tok_' || g), NULL FROM generate_series(1, 500) g;
CREATE FUNCTION sec.decode_token(t text) RETURNS text LANGUAGE sql STABLE AS $$ SELECT pg_catalog.reverse(t) $$;
CREATE FUNCTION sec.store_token(i bigint, t text) RETURNS void LANGUAGE sql
	AS $$ UPDATE sec.shadow SET token = pg_catalog.reverse(t) WHERE id = i $$;

SET search_path = evil, public;
-- codecs
SELECT create_codec('shadow_tok', 'reverse', marker => 'tok_');
SELECT migrate_value('shadow_tok', 'cba_kot') AS converted, public.is_legacy('shadow_tok', 'cba_kot') AS legacy,
       public.is_legacy('shadow_tok', 'tok_abc') AS target_is_legacy;
SELECT count_legacy('sec.shadow', 'token', 'shadow_tok') AS legacy_rows;
SELECT * FROM audit_column('sec.shadow', 'token', 'shadow_tok');
SELECT in_primary_key, in_unique_index, user_triggers, sampled_rows, sampled_legacy_ratio, plan
FROM inspect_column('sec.shadow', 'token', 'shadow_tok');
-- frozen functions: freeze, swap, revert
SELECT freeze_function('sec.decode_token(text)') AS frozen;
SELECT freeze_function('sec.store_token(bigint,text)') AS frozen;
SELECT swap_function('sec.decode_token(text)', $$ SELECT 'swapped:' || t $$, note => 'shadowed') AS swapped;
SELECT sec.decode_token('x') AS after_swap;
SELECT revert_function('sec.decode_token(text)') AS reverted;
SELECT sec.decode_token('cba_kot') AS after_revert;
SELECT fn, version, role, is_current, previous_version FROM function_history ORDER BY fn::text, version;
-- a column-move mirror
SELECT create_mirror('sec.shadow', 'token', 'copy', 'shadow_tok');
UPDATE sec.shadow SET token = reverse('tok_mirrored') WHERE id = 500;
SELECT token, copy FROM sec.shadow WHERE id = 500;
SELECT drop_mirror('sec.shadow', 'token', 'copy');
-- a migration through the door, its backfill to done, the verifying scan, the contract
SELECT create_migration('shadow', 'sec.shadow', 'token', 'shadow_tok');
SELECT plan_swap('shadow', 'sec.decode_token(text)', $$ SELECT public.migrate_value('shadow_tok', t) $$);
SELECT plan_swap('shadow', 'sec.store_token(bigint,text)', $$ UPDATE sec.shadow SET token = t WHERE id = i $$,
                 role => 'writer');
SELECT advance_migration('shadow') AS phase;
SELECT sec.decode_token('cba_kot') AS tolerant_legacy, sec.decode_token('tok_abc') AS tolerant_target;
SELECT name, phase, settled, waiting_for, readers, writers FROM migration_status;
SELECT retreat_migration('shadow') AS phase;
SELECT advance_migration('shadow') AS phase;
SELECT advance_migration('shadow', confirm => 'shadow') AS phase;
SELECT sec.store_token(1, 'tok_written');
SELECT token AS stored_plain FROM sec.shadow WHERE id = 1;
SELECT start_backfill('shadow') AS job_shadow \gset
SELECT wait_backfill(:job_shadow, '120 s') AS shadow_state;
SELECT state, rows_scanned, rows_converted, rows_skipped, conflicts, last_error, role::text = current_user AS runs_as_caller
FROM backfill_status WHERE job = :job_shadow;
SELECT count_legacy('sec.shadow', 'token', 'shadow_tok') AS legacy_rows;
SELECT advance_migration('shadow') AS phase;
SELECT advance_migration('shadow') AS phase;
SELECT name, phase, settled, waiting_for, relation, column_name, codec, job_state, constraint_name
FROM migration_status;
INSERT INTO sec.shadow VALUES (501, reverse('tok_late'));
SELECT retreat_migration('shadow') AS phase;
SELECT retreat_migration('shadow');
-- repair on read, past the door: the read converts and writes back; its write-back's statements name
-- pg_catalog's functions and operators, and the key's own equality, never evil's
UPDATE sec.shadow SET token = reverse('tok_read_' || id) WHERE id IN (2, 3);
SELECT repair_value('shadow', token, id) AS repaired FROM sec.shadow WHERE id = 2;
SELECT repair_value('shadow', token, id::int) AS repaired_by_int_key FROM sec.shadow WHERE id = 3;
SELECT id, token AS written_back FROM sec.shadow WHERE id IN (2, 3) ORDER BY id;
-- a backfill by the regclass form, to done
UPDATE sec.shadow SET copy = reverse('tok_c' || id) WHERE id <= 100;
SELECT count_legacy('sec.shadow', 'copy', 'shadow_tok') AS legacy_copies;
SELECT start_backfill('sec.shadow', 'copy', 'shadow_tok', throttle => false) AS job_copy \gset
SELECT wait_backfill(:job_copy, '120 s') AS copy_state;
SELECT state, rows_scanned, rows_converted, rows_skipped, last_error FROM backfill_status WHERE job = :job_copy;
SELECT count_legacy('sec.shadow', 'copy', 'shadow_tok') AS legacy_copies,
       count(*) FILTER (WHERE copy = 'tok_c' || id) AS converted_copies FROM sec.shadow;

-- The same with evil ahead of pg_catalog itself: look-alikes with the very signatures of pg_catalog's
-- (=(text,text), now(), reverse(), the type text, ...) now come first for any unpinned lookup.
RESET search_path;
CREATE FUNCTION sec.v2_decode(t text) RETURNS text LANGUAGE sql STABLE AS $$ SELECT pg_catalog.upper(t) $$;
UPDATE sec.shadow SET copy = CASE WHEN id <= 10 THEN 'v1:' || id END;
SET search_path = evil, pg_catalog, public;
SELECT create_codec('shadow_v2', 'strip_prefix:v1:|add_prefix:v2:', marker => 'v2:', detect => 'absent');
SELECT migrate_value('shadow_v2', 'v1:abc') AS converted, public.is_legacy('shadow_v2', 'v1:abc') AS legacy,
       public.is_legacy('shadow_v2', 'v2:abc') AS target_is_legacy;
SELECT count_legacy('sec.shadow', 'copy', 'shadow_v2') AS legacy_copies;
SELECT * FROM audit_column('sec.shadow', 'copy', 'shadow_v2');
SELECT start_backfill('sec.shadow', 'copy', 'shadow_v2') AS job_v2 \gset
SELECT wait_backfill(:job_v2, '120 s') AS v2_state;
SELECT state, rows_scanned, rows_converted, rows_skipped, last_error FROM backfill_status WHERE job = :job_v2;
-- (the type text is spelled pg_catalog.text here: plain text would be evil's now, in this file's own input)
SELECT freeze_function('sec.v2_decode(pg_catalog.text)') AS frozen;
SELECT swap_function('sec.v2_decode(pg_catalog.text)', $$ SELECT 'swapped:' || t $$) AS swapped;
SELECT sec.v2_decode('x'::pg_catalog.text) AS after_swap;
SELECT revert_function('sec.v2_decode(pg_catalog.text)') AS reverted;
SELECT sec.v2_decode('x'::pg_catalog.text) AS after_revert;
RESET search_path;
SELECT p.oid::regprocedure AS v2_decode_functions FROM pg_proc p
WHERE p.proname = 'v2_decode' AND p.pronamespace = 'sec'::regnamespace ORDER BY 1::text;
SELECT fn, version, role, is_current, previous_version FROM function_history
WHERE fn = 'sec.v2_decode(text)'::regprocedure ORDER BY version;
SELECT migration, event, from_phase, to_phase, fn, role FROM migration_history ORDER BY id;

-- Nothing of evil ran: no notice above, and no call recorded by any session (workers included).
SELECT count(*) AS evil_calls FROM evil.calls;
SELECT fn, by_role, count(*) FROM evil.calls GROUP BY 1, 2 ORDER BY 1, 2;

------------------------------------------------------------------------------------------------------
-- Clean up.
------------------------------------------------------------------------------------------------------
SELECT state, count(*) FROM backfill_status GROUP BY state ORDER BY state;
-- (A migration's readers are unfrozen once it is contracted: before, the column holds both formats.)
SELECT advance_migration('shadow') AS phase;
SELECT count(unfreeze_function(fn)) AS unfrozen FROM (SELECT DISTINCT fn FROM function_history) f;
SET client_min_messages = warning;
DROP SCHEMA sec CASCADE;
DROP SCHEMA evil CASCADE;
RESET client_min_messages;
DROP EXTENSION migration_ext;
DROP ROLE regress_mext_alice;
DROP ROLE regress_mext_bob;
