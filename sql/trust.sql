-- The trust model, tried as an attacker would: an ordinary role (alice) owns a table and functions, a
-- superuser works on them, and another role (bob) tries to get in. No road leads to a superuser's
-- rights: stored settings cannot smuggle SQL into a swap; a superuser's backfill, verifying scan and
-- contract run the table's code as its owner, restricted; an fn: step runs as its function's owner;
-- the state cannot be forged; worker claims cannot be squatted; bodies are their owner's to read.
\set VERBOSITY default
\set SHOW_CONTEXT never
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS migration_ext CASCADE;
DROP SCHEMA IF EXISTS trust CASCADE;
DROP ROLE IF EXISTS regress_mext_t_alice;
DROP ROLE IF EXISTS regress_mext_t_bob;
DROP SCHEMA IF EXISTS trust_dbo CASCADE;
DROP SCHEMA IF EXISTS trust_bob CASCADE;
DROP ROLE IF EXISTS regress_mext_t_dbo;
RESET client_min_messages;
CREATE EXTENSION migration_ext;
-- Waits print no progress NOTICEs: their figures differ from run to run.
SET migration_ext.wait_progress = off;
CREATE ROLE regress_mext_t_alice LOGIN;
CREATE ROLE regress_mext_t_bob LOGIN;
CREATE SCHEMA trust;
GRANT USAGE ON SCHEMA trust TO regress_mext_t_alice, regress_mext_t_bob;
GRANT CREATE ON SCHEMA trust TO regress_mext_t_alice;
GRANT CREATE ON DATABASE :"DBNAME" TO regress_mext_t_alice, regress_mext_t_bob;
CREATE FUNCTION trust.is_super(role name) RETURNS boolean LANGUAGE sql STABLE
	AS $$ SELECT rolsuper FROM pg_roles WHERE rolname = role $$;

------------------------------------------------------------------------------------------------------
-- 1. A frozen function's stored search_path carrying SQL. PostgreSQL's check of search_path lets
--    comments and quotes through; re-emitted unquoted, a superuser's swap would have run the ALTER ROLE.
------------------------------------------------------------------------------------------------------
SET ROLE regress_mext_t_alice;
CREATE FUNCTION trust.decode(t text) RETURNS text LANGUAGE sql AS $$ SELECT pg_catalog.reverse(t) $$;
SELECT freeze_function('trust.decode(text)') AS frozen;
SELECT set_config('search_path',
	$$pg_catalog/**/AS/**/'select/**/$1';ALTER/**/ROLE/**/regress_mext_t_alice/**/SUPERUSER;--$$, false) IS NOT NULL
	AS planted;
ALTER FUNCTION trust.decode(text) SET search_path FROM CURRENT;
RESET search_path;
SELECT proconfig AS stored_settings FROM pg_proc WHERE oid = 'trust.decode(text)'::regprocedure;
RESET ROLE;
SELECT swap_function('trust.decode(text)', $$ SELECT 'swapped:' || t $$) AS swapped_by_superuser;
SELECT trust.is_super('regress_mext_t_alice') AS alice_is_superuser;
SELECT trust.decode('x') AS after_swap,
       proconfig AS settings_kept FROM pg_proc WHERE oid = 'trust.decode(text)'::regprocedure;
SELECT revert_function('trust.decode(text)') AS reverted_by_superuser;
SELECT trust.is_super('regress_mext_t_alice') AS alice_is_superuser;
-- A body planned in a language only a superuser may use stays refused when a superuser applies it: the
-- swap is created as the function's owner.
SET ROLE regress_mext_t_alice;
CREATE TABLE trust.tokens (id int PRIMARY KEY, token text, note text);
INSERT INTO trust.tokens SELECT g, reverse('tok_' || g), NULL FROM generate_series(1, 300) g;
CREATE FUNCTION trust.read_token(i int) RETURNS text LANGUAGE sql STABLE
	AS $$ SELECT token FROM trust.tokens WHERE id = i $$;
SELECT freeze_function('trust.read_token(int)') AS frozen;
SELECT create_codec('t_tok', 'reverse', marker => 'tok_');
CREATE TABLE trust.accounts (id int PRIMARY KEY, token text);
SELECT create_migration('t_tokens', 'trust.accounts', 'token', 't_tok');
SELECT plan_swap('t_tokens', 'trust.read_token(int)', 'timeofday', language => 'internal');
RESET ROLE;
SELECT advance_migration('t_tokens');
SELECT phase FROM migration_status WHERE name = 't_tokens';

-- A migration of alice's table whose reader a superuser owns and planned: alice may act on the table, not
-- as the function's owner, so she may not advance it (the swap and the read check would run the
-- superuser's function with her search_path).
CREATE TABLE trust.ledger (id int PRIMARY KEY, token text);
ALTER TABLE trust.ledger OWNER TO regress_mext_t_alice;
CREATE FUNCTION trust.read_ledger(t text) RETURNS text LANGUAGE sql STABLE AS $$ SELECT pg_catalog.reverse(t) $$;
SELECT freeze_function('trust.read_ledger(text)') AS frozen;
SELECT create_migration('t_ledger', 'trust.ledger', 'token', 't_tok');
SELECT plan_swap('t_ledger', 'trust.read_ledger(text)', $$ SELECT public.migrate_value('t_tok', t) $$);
SET ROLE regress_mext_t_alice;
SELECT advance_migration('t_ledger');
RESET ROLE;

------------------------------------------------------------------------------------------------------
-- 2. A superuser's backfill on alice's table: her trigger, her index expression and her codec function
--    run as alice, never as the superuser, and with a pinned search_path.
------------------------------------------------------------------------------------------------------
SET ROLE regress_mext_t_alice;
CREATE TABLE trust.seen (what text, role_name name, superuser boolean, path text);
CREATE FUNCTION trust.seen_by_trigger() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO trust.seen VALUES ('trigger', current_user, trust.is_super(current_user),
								   current_setting('search_path'));
	RETURN NEW;
END
$$;
CREATE TRIGGER seen BEFORE UPDATE ON trust.tokens FOR EACH ROW EXECUTE FUNCTION trust.seen_by_trigger();
CREATE FUNCTION trust.note_index_call() RETURNS void LANGUAGE plpgsql VOLATILE AS $$
BEGIN
	INSERT INTO trust.seen VALUES ('index expression', current_user, trust.is_super(current_user),
								   current_setting('search_path'));
END
$$;
CREATE FUNCTION trust.indexed(t text) RETURNS text LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
	IF t = 'tok_1' THEN
		PERFORM trust.note_index_call();
	END IF;
	RETURN t;
END
$$;
CREATE INDEX tokens_indexed ON trust.tokens (trust.indexed(token));
RESET ROLE;
-- The regclass form, started by the superuser: the job is recorded as the superuser's, its writes as alice's.
SELECT start_backfill('trust.tokens', 'token', 't_tok', throttle => false) AS job_super \gset
SELECT wait_backfill(:job_super, '120 s') AS super_state;
SELECT state, rows_converted, role::text = current_user AS started_by_superuser FROM backfill_status WHERE job = :job_super;
SELECT what, role_name, superuser, path, count(*) FROM trust.seen GROUP BY 1, 2, 3, 4 ORDER BY 1;

------------------------------------------------------------------------------------------------------
-- 3. fn: steps. bob may not put alice's function in a codec of his; alice's own function runs as alice
--    wherever her codec is evaluated, even by a superuser, whatever body she gives it later.
------------------------------------------------------------------------------------------------------
SET ROLE regress_mext_t_alice;
CREATE FUNCTION trust.unwrap(t text) RETURNS text LANGUAGE plpgsql STABLE AS $$
BEGIN
	RETURN substr(t, 4);
END
$$;
SELECT create_codec('t_unwrap', 'fn:trust.unwrap|add_prefix:v2:', marker => 'v2:', detect => 'absent');
RESET ROLE;
SET ROLE regress_mext_t_bob;
SELECT create_codec('t_bobs', 'fn:trust.unwrap|add_prefix:v2:', marker => 'v2:', detect => 'absent');
RESET ROLE;
-- After the codec was created, alice turns the function into an attempt on the superuser's rights.
SET ROLE regress_mext_t_alice;
CREATE OR REPLACE FUNCTION trust.unwrap(t text) RETURNS text LANGUAGE plpgsql VOLATILE AS $$
BEGIN
	RAISE NOTICE 'unwrap runs as % (superuser: %), search_path %', current_user, trust.is_super(current_user),
		current_setting('search_path');
	IF t = 'v1:escalate' THEN
		EXECUTE 'ALTER ROLE regress_mext_t_alice SUPERUSER';
	END IF;
	RETURN substr(t, 4);
END
$$;
RESET ROLE;
SELECT migrate_value('t_unwrap', 'v1:abc') AS converted_for_superuser;
SELECT migrate_value('t_unwrap', 'v1:escalate');
SELECT trust.is_super('regress_mext_t_alice') AS alice_is_superuser;
-- The step's name is resolved anew in each session: once the function it finds belongs to another role
-- (here given away by a superuser), the codec refuses to run it.
SET ROLE regress_mext_t_alice;
CREATE FUNCTION trust.unwrap2(t text) RETURNS text LANGUAGE sql STABLE AS $$ SELECT substr(t, 4) $$;
SELECT create_codec('t_unwrap2', 'fn:trust.unwrap2|add_prefix:v2:', marker => 'v2:', detect => 'absent');
SELECT migrate_value('t_unwrap2', 'v1:abc') AS converted_while_hers;
RESET ROLE;
ALTER FUNCTION trust.unwrap2(text) OWNER TO regress_mext_t_bob;
SELECT migrate_value('t_unwrap2', 'v1:abc');
-- Nor can anyone build a codec around her function by hand: the by-definition form a contract uses takes
-- built-in steps only.
SET ROLE regress_mext_t_bob;
SELECT migration_ext.is_legacy_by_definition('fn:trust.unwrap|add_prefix:v2:', 'v2:', 'absent', NULL, 'v1:escalate');
RESET ROLE;
-- A function a superuser owns runs as the caller, as a direct call would.
SELECT create_codec('t_upper', 'fn:pg_catalog.upper|add_prefix:v2:', marker => 'v2:', detect => 'absent');
SELECT migrate_value('t_upper', 'abc') AS upper_converted;

------------------------------------------------------------------------------------------------------
-- 4. The state cannot be forged, nor the extension's internals called.
------------------------------------------------------------------------------------------------------
SET ROLE regress_mext_t_bob;
SELECT nextval('migration_ext.backfill_job_id_seq');
UPDATE migration_ext.backfill_job SET pid = pg_backend_pid();
INSERT INTO migration_ext.backfill_job (relation, column_name, codec, key_columns, partitions, batch_size, throttle,
                                        owner, state)
VALUES ('trust.tokens', 'note', 't_tok', '{id}', '{trust.tokens}', 10, true, 'regress_mext_t_alice', 'running');
SELECT migration_ext.claim_job(1);
SELECT migration_ext.run_as('regress_mext_t_alice'::regrole, 'SELECT 1', 'pg_catalog');
SELECT * FROM migration_ext.worker_step(1, 10, NULL);
SELECT migration_ext.launch_worker(1);
SELECT migration_ext.start_backfill('regress_mext_t_alice', 'trust.tokens', 'note', 't_tok', NULL, NULL, NULL, true,
                                    NULL, false, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
SELECT migration_ext.create_codec('regress_mext_t_alice', 'forged', 'reverse', 'tok_', 'converted', NULL);
-- A job id bob guesses names no job of his, and he sees no migration of hers.
SELECT pause_backfill(:job_super);
SELECT count(*) AS bob_sees_migrations FROM migration_status;
SELECT count(*) AS bob_sees_migration_events FROM migration_history;
RESET ROLE;
-- Queuing a job without a worker is for a superuser's tests only: the launch limits would not see it.
SET ROLE regress_mext_t_alice;
SELECT migration_ext.start_backfill('trust.tokens', 'note', 't_tok', NULL, NULL, NULL, true, launch => false);
RESET ROLE;

------------------------------------------------------------------------------------------------------
-- 4b. Every batch runs as the owner of the job's table; tables a job would touch under another owner are
--     refused before it starts: a partition someone else owns (created by a superuser's maintenance,
--     say), whose rows would run the parent's triggers with that owner's rights, and a table move into
--     a table of another owner.
------------------------------------------------------------------------------------------------------
SET ROLE regress_mext_t_alice;
CREATE TABLE trust.parted (id int PRIMARY KEY, token text) PARTITION BY RANGE (id);
CREATE TABLE trust.parted_1 PARTITION OF trust.parted FOR VALUES FROM (0) TO (100);
RESET ROLE;
CREATE TABLE trust.parted_2 PARTITION OF trust.parted FOR VALUES FROM (100) TO (200);
ALTER TABLE trust.parted_2 OWNER TO regress_mext_t_bob;
INSERT INTO trust.parted SELECT g, reverse('tok_' || g) FROM generate_series(1, 150) g;
SET ROLE regress_mext_t_alice;
SELECT start_backfill('trust.parted', 'token', 't_tok');
RESET ROLE;
SELECT start_backfill('trust.parted', 'token', 't_tok');
CREATE TABLE trust.superuser_copy (id int PRIMARY KEY, token text);
GRANT INSERT, SELECT ON trust.superuser_copy TO regress_mext_t_alice;
SELECT start_backfill('trust.tokens', 'token', 't_tok', target_relation => 'trust.superuser_copy');

------------------------------------------------------------------------------------------------------
-- 4c. What start_backfill() refuses stays refused while a job runs: a partition or a move's new table
--     given to another role since (bob's trigger would read alice's table as alice), and a move whose new
--     table is dropped (the batch would have become an in-place rewrite of the old table). Steps driven
--     by hand, as the isolation tests do.
------------------------------------------------------------------------------------------------------
SET ROLE regress_mext_t_alice;
CREATE TABLE trust.secret (s text);
INSERT INTO trust.secret VALUES ('alice only');
CREATE TABLE trust.split (id int PRIMARY KEY, token text) PARTITION BY RANGE (id);
CREATE TABLE trust.split_1 PARTITION OF trust.split FOR VALUES FROM (0) TO (100);
CREATE TABLE trust.split_2 PARTITION OF trust.split FOR VALUES FROM (100) TO (200);
INSERT INTO trust.split SELECT g, reverse('tok_' || g) FROM generate_series(1, 150) g;
CREATE TABLE trust.old_home (id int PRIMARY KEY, token text);
INSERT INTO trust.old_home SELECT g, reverse('tok_' || g) FROM generate_series(1, 50) g;
CREATE TABLE trust.new_home (id int PRIMARY KEY, token text);
CREATE TABLE trust.gone_home (id int PRIMARY KEY, token text);
RESET ROLE;
SELECT migration_ext.start_backfill('trust.split', 'token', 't_tok', NULL, 10, NULL, false, NULL, false) AS split_job \gset
SELECT migration_ext.start_backfill('trust.old_home', 'token', 't_tok', NULL, 10, NULL, false, NULL, false,
                                    target_relation => 'trust.new_home') AS move_job \gset
SELECT action, scanned FROM migration_ext.worker_step(:split_job, 10, NULL);
SELECT action, scanned FROM migration_ext.worker_step(:move_job, 10, NULL);
ALTER TABLE trust.split_2 OWNER TO regress_mext_t_bob;
ALTER TABLE trust.new_home OWNER TO regress_mext_t_bob;
CREATE SCHEMA trust_bob AUTHORIZATION regress_mext_t_bob;
SET ROLE regress_mext_t_bob;
CREATE TABLE trust_bob.loot (role_name name, what text);
GRANT INSERT ON trust_bob.loot TO PUBLIC;
CREATE FUNCTION trust_bob.steal() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO trust_bob.loot SELECT current_user, s FROM trust.secret;
	RETURN NEW;
END
$$;
CREATE TRIGGER steal BEFORE UPDATE ON trust.split_2 FOR EACH ROW EXECUTE FUNCTION trust_bob.steal();
CREATE TRIGGER steal BEFORE INSERT ON trust.new_home FOR EACH ROW EXECUTE FUNCTION trust_bob.steal();
GRANT UPDATE ON trust.split_2 TO regress_mext_t_alice;
GRANT INSERT ON trust.new_home TO regress_mext_t_alice;
RESET ROLE;
SELECT action FROM migration_ext.worker_step(:split_job, 100, NULL);
SELECT action FROM migration_ext.worker_step(:split_job, 100, NULL);
SELECT action FROM migration_ext.worker_step(:split_job, 100, NULL);
SELECT action FROM migration_ext.worker_step(:move_job, 100, NULL);
SELECT count(*) AS rows_bob_got FROM trust_bob.loot;
SELECT cancel_backfill(:move_job);
SELECT cancel_backfill(:split_job);
SELECT migration_ext.start_backfill('trust.old_home', 'token', 't_tok', NULL, 10, NULL, false, NULL, false,
                                    target_relation => 'trust.gone_home') AS gone_job \gset
DROP TABLE trust.gone_home;
SELECT action FROM migration_ext.worker_step(:gone_job, 100, NULL);
SELECT count(*) FILTER (WHERE token LIKE 'tok_%') AS old_rows_rewritten FROM trust.old_home;
SELECT cancel_backfill(:gone_job);
DROP SCHEMA trust_bob CASCADE;

------------------------------------------------------------------------------------------------------
-- 5. The worker's claim lives where no role can take it first: a session holding every advisory-lock
--    key a job could use (the old claim key included) blocks no job.
------------------------------------------------------------------------------------------------------
SELECT count(pg_advisory_lock(1835365492, g)) AS int4_keys_held,
       count(pg_advisory_lock(g)) AS int8_keys_held
FROM generate_series(:job_super + 1, :job_super + 50) g;
SET ROLE regress_mext_t_alice;
UPDATE trust.tokens SET note = 'note' || id;
SELECT create_codec('t_note', 'add_prefix:n2:', marker => 'n2:', detect => 'absent');
SELECT start_backfill('trust.tokens', 'note', 't_note', throttle => false) AS job_squatted \gset
SELECT wait_backfill(:job_squatted, '120 s') AS state_beside_squatter;
RESET ROLE;
SELECT pg_advisory_unlock_all();

-- A codec in use by a mirror trigger (or an unfinished job) is not dropped from under it.
SET ROLE regress_mext_t_alice;
SELECT create_mirror('trust.tokens', 'token', 'note', 't_unwrap');
SELECT drop_codec('t_unwrap');
SELECT drop_mirror('trust.tokens', 'token', 'note');
RESET ROLE;

------------------------------------------------------------------------------------------------------
-- 6. Bodies, past and planned, are their function owner's to read; standby positions are not public.
------------------------------------------------------------------------------------------------------
SET ROLE regress_mext_t_alice;
SELECT count(*) > 0 AS alice_reads_her_history, bool_or(body LIKE '%swapped%') AS with_bodies
FROM function_history WHERE fn = 'trust.decode(text)'::regprocedure;
RESET ROLE;
SET ROLE regress_mext_t_bob;
SELECT count(*) AS bob_reads_history FROM function_history;
SELECT count(*) AS bob_reads_versions FROM migration_ext.function_version;
SELECT count(*) AS bob_reads_planned_bodies FROM migration_ext.planned_swap;
SELECT count(*) AS bob_sees_jobs FROM backfill_status;
SELECT * FROM migration_ext.standby_positions();
RESET ROLE;

------------------------------------------------------------------------------------------------------
-- 7. Inside a security-restricted operation (here REFRESH MATERIALIZED VIEW, which runs the view's query
--    as its owner) no state-changing function may be called in the owner's name.
------------------------------------------------------------------------------------------------------
SET ROLE regress_mext_t_alice;
CREATE FUNCTION trust.sneaky() RETURNS int LANGUAGE plpgsql VOLATILE AS $$
BEGIN
	PERFORM create_codec('t_sneaky', 'reverse', 'tok_');
	RETURN 1;
END
$$;
CREATE MATERIALIZED VIEW trust.refreshed AS SELECT trust.sneaky() AS one WITH NO DATA;
RESET ROLE;
REFRESH MATERIALIZED VIEW trust.refreshed;
SELECT count(*) AS sneaky_codecs FROM migration_ext.codec WHERE name = 't_sneaky';

------------------------------------------------------------------------------------------------------
-- Clean up.
------------------------------------------------------------------------------------------------------
SELECT state, count(*) FROM backfill_status GROUP BY state ORDER BY state;
SELECT count(unfreeze_function(fn)) AS unfrozen FROM (SELECT DISTINCT fn FROM function_history) f;
SET client_min_messages = warning;
DROP SCHEMA trust CASCADE;
RESET client_min_messages;
DROP EXTENSION migration_ext;
------------------------------------------------------------------------------------------------------
-- 8. The extension installed into a schema another role may create in (here its owner; in PostgreSQL 15
--    the database owner owns public). Bodies, views and policies are parsed once, by the install or
--    update script: an operator or function planted there before, matching better than pg_catalog's,
--    must not become what they call. may_act_on() runs inside SECURITY DEFINER start_backfill().
------------------------------------------------------------------------------------------------------
CREATE ROLE regress_mext_t_dbo LOGIN;
CREATE SCHEMA trust_dbo AUTHORIZATION regress_mext_t_dbo;
SET ROLE regress_mext_t_dbo;
CREATE TABLE trust_dbo.mine (id int PRIMARY KEY, token text);
CREATE FUNCTION trust_dbo.escalate() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
	IF (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user) THEN
		EXECUTE 'ALTER ROLE regress_mext_t_dbo SUPERUSER';
	END IF;
END
$$;
CREATE FUNCTION trust_dbo.format(f text, a bigint, b numeric, c bigint, d bigint, e numeric, g text, h text)
	RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	PERFORM trust_dbo.escalate();
	RETURN pg_catalog.format(f, a, b, c, d, e, g, h);
END
$$;
CREATE FUNCTION trust_dbo.oid_eq_regrole(a oid, b regrole) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
	PERFORM trust_dbo.escalate();
	RETURN a OPERATOR(pg_catalog.=) b::oid;
END
$$;
CREATE OPERATOR trust_dbo.= (LEFTARG = oid, RIGHTARG = regrole, FUNCTION = trust_dbo.oid_eq_regrole);
CREATE FUNCTION trust_dbo.numeric_times_bigint(a numeric, b bigint) RETURNS numeric LANGUAGE plpgsql AS $$
BEGIN
	PERFORM trust_dbo.escalate();
	RETURN a OPERATOR(pg_catalog.*) b::numeric;
END
$$;
CREATE OPERATOR trust_dbo.* (LEFTARG = numeric, RIGHTARG = bigint, FUNCTION = trust_dbo.numeric_times_bigint);
RESET ROLE;
-- What the extension's members (functions, views' rules, policies) call outside pg_catalog and itself.
CREATE FUNCTION pg_temp.bound_elsewhere() RETURNS bigint LANGUAGE sql AS $$
	WITH members AS (
		SELECT d.classid, d.objid FROM pg_depend d JOIN pg_extension e ON e.oid = d.refobjid
		WHERE d.refclassid = 'pg_extension'::regclass AND e.extname = 'migration_ext' AND d.deptype = 'e'),
	dependents AS (
		SELECT classid, objid FROM members
		UNION SELECT 'pg_rewrite'::regclass, r.oid FROM pg_rewrite r JOIN members m ON m.objid = r.ev_class
		UNION SELECT 'pg_policy'::regclass, p.oid FROM pg_policy p JOIN members m ON m.objid = p.polrelid)
	SELECT count(*) FROM pg_depend d JOIN dependents x ON x.classid = d.classid AND x.objid = d.objid
	WHERE d.deptype = 'n'
	  AND ((d.refclassid = 'pg_proc'::regclass
			AND (SELECT p.pronamespace FROM pg_proc p WHERE p.oid = d.refobjid) = 'trust_dbo'::regnamespace)
		OR (d.refclassid = 'pg_operator'::regclass
			AND (SELECT o.oprnamespace FROM pg_operator o WHERE o.oid = d.refobjid) = 'trust_dbo'::regnamespace))
$$;
CREATE EXTENSION migration_ext SCHEMA trust_dbo VERSION '0.1.0';
ALTER EXTENSION migration_ext UPDATE;
SELECT pg_temp.bound_elsewhere() AS updated_bound_to_planted;
SELECT trust_dbo.create_codec('t_dbo', 'reverse', marker => 'tok_');
SET ROLE regress_mext_t_dbo;
SELECT trust_dbo.start_backfill('trust_dbo.mine', 'token', 't_dbo') > 0 AS started;
RESET ROLE;
SELECT trust_dbo.wait_backfill(max(job), '120 s') AS state FROM trust_dbo.backfill_status;
SELECT migration_ext.progress_line(max(job)) IS NOT NULL AS superuser_read_progress FROM trust_dbo.backfill_status;
SELECT rolsuper AS dbo_is_superuser FROM pg_roles WHERE rolname = 'regress_mext_t_dbo';
DROP EXTENSION migration_ext;
CREATE EXTENSION migration_ext SCHEMA trust_dbo;
SELECT pg_temp.bound_elsewhere() AS installed_bound_to_planted;
DROP EXTENSION migration_ext;
DROP SCHEMA trust_dbo CASCADE;
REVOKE CREATE ON DATABASE :"DBNAME" FROM regress_mext_t_alice, regress_mext_t_bob;
DROP ROLE regress_mext_t_alice;
DROP ROLE regress_mext_t_bob;
DROP ROLE regress_mext_t_dbo;
