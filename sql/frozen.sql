-- Frozen functions: the signature is a contract, the body is swapped in place, every version recorded.
\set VERBOSITY default
\set SHOW_CONTEXT never
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS migration_ext CASCADE;
DROP SCHEMA IF EXISTS app CASCADE;
DROP SCHEMA IF EXISTS elsewhere CASCADE;
DROP SCHEMA IF EXISTS doomed CASCADE;
RESET client_min_messages;
CREATE EXTENSION migration_ext;

CREATE SCHEMA app;
CREATE TABLE app.items (id int PRIMARY KEY, label text);
INSERT INTO app.items VALUES (1, 'one'), (2, 'two');

-- A plpgsql function with attributes that a swap must keep.
CREATE FUNCTION app.greet(who text) RETURNS text
	LANGUAGE plpgsql STABLE STRICT SECURITY DEFINER PARALLEL SAFE COST 50
	SET search_path = app, pg_temp
AS $$ BEGIN RETURN 'hello ' || who; END $$;
-- A SQL function (its body is checked against the catalog when it is created).
CREATE FUNCTION app.label(i int) RETURNS text LANGUAGE sql STABLE
AS $$ SELECT label FROM app.items WHERE id = i $$;
-- A procedure.
CREATE PROCEDURE app.add_item(i int, l text) LANGUAGE sql
AS $$ INSERT INTO app.items VALUES (i, l) $$;

------------------------------------------------------------------------------------------------------
-- freeze_function records version 1.
------------------------------------------------------------------------------------------------------
SELECT freeze_function('app.greet(text)') AS greet_version;
SELECT freeze_function('app.label(int)') AS label_version;
SELECT freeze_function('app.add_item(int,text)') AS add_item_version;
SELECT fn, version, role, is_current, previous_version, note, wal_lsn IS NOT NULL AS has_lsn,
       created_by = current_user AS by_me, body = (SELECT prosrc FROM pg_proc WHERE oid = fn) AS body_is_prosrc
FROM function_history ORDER BY fn::text, version;

------------------------------------------------------------------------------------------------------
-- swap_function: a SQL function.
------------------------------------------------------------------------------------------------------
SELECT pg_get_functiondef('app.label(int)'::regprocedure) AS label_v1 \gset
SELECT app.label(1) AS before_swap;
SELECT swap_function('app.label(int)', $$ SELECT upper(label) FROM app.items WHERE id = i $$, note => 'shout');
SELECT app.label(1) AS after_swap;
SELECT pg_get_functiondef('app.label(int)'::regprocedure) AS label_v2 \gset
SELECT prosrc FROM pg_proc WHERE oid = 'app.label(int)'::regprocedure;

------------------------------------------------------------------------------------------------------
-- swap_function: a plpgsql function; its attributes are kept.
------------------------------------------------------------------------------------------------------
SELECT provolatile, proisstrict, prosecdef, proparallel, procost, proconfig, (SELECT lanname FROM pg_language WHERE oid = prolang) AS language,
       prorettype::regtype AS returns, proargnames
FROM pg_proc WHERE oid = 'app.greet(text)'::regprocedure;
SELECT row(provolatile, proisstrict, prosecdef, proparallel, procost, proconfig, prolang, prorettype, proargnames,
           proargtypes)::text AS greet_attributes
FROM pg_proc WHERE oid = 'app.greet(text)'::regprocedure \gset
SELECT app.greet('ann') AS before_swap;
SELECT swap_function('app.greet(text)',
	$$ BEGIN RETURN 'hi ' || who || ' (search_path ' || current_setting('search_path') || ')'; END $$,
	note => 'friendlier');
SELECT app.greet('ann') AS after_swap;
SELECT provolatile, proisstrict, prosecdef, proparallel, procost, proconfig, (SELECT lanname FROM pg_language WHERE oid = prolang) AS language,
       prorettype::regtype AS returns, proargnames
FROM pg_proc WHERE oid = 'app.greet(text)'::regprocedure;
SELECT row(provolatile, proisstrict, prosecdef, proparallel, procost, proconfig, prolang, prorettype, proargnames,
           proargtypes)::text = :'greet_attributes' AS attributes_kept
FROM pg_proc WHERE oid = 'app.greet(text)'::regprocedure;
-- STRICT is still in force: a NULL argument does not reach the body.
SELECT app.greet(NULL) IS NULL AS still_strict;

------------------------------------------------------------------------------------------------------
-- swap_function: a procedure.
------------------------------------------------------------------------------------------------------
SELECT swap_function('app.add_item(int,text)', $$ INSERT INTO app.items VALUES (i, 'new ' || l) $$);
CALL app.add_item(3, 'three');
SELECT * FROM app.items ORDER BY id;

------------------------------------------------------------------------------------------------------
-- A body that does not compile is refused, and nothing changes.
------------------------------------------------------------------------------------------------------
SELECT count(*) AS label_versions FROM function_history WHERE fn = 'app.label(int)'::regprocedure \gset
SELECT count(*) AS greet_versions FROM function_history WHERE fn = 'app.greet(text)'::regprocedure \gset
SELECT pg_get_functiondef('app.greet(text)'::regprocedure) AS greet_v2 \gset
-- SQLSTATE and message only: the error position points into the CREATE OR REPLACE the extension builds.
CREATE FUNCTION pg_temp.outcome(statement text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE statement;
	RETURN 'accepted';
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE || ': ' || SQLERRM;
END
$$;
SELECT pg_temp.outcome(statement) FROM (VALUES
	(1, $q$ SELECT swap_function('app.label(int)', $$ SELECT no_such_column FROM app.items WHERE id = i $$) $q$),
	(2, $q$ SELECT swap_function('app.label(int)', $$ SELEC 1 $$) $q$),
	(3, $q$ SELECT swap_function('app.label(int)', $$ SELECT 1, 2 $$) $q$),
	(4, $q$ SELECT swap_function('app.greet(text)', $$ BEGIN RETURN 'x' || ; END $$) $q$),
	(5, $q$ SELECT swap_function('app.greet(text)', $$ BEGIN RETURN 1 $$) $q$)) t(i, statement)
ORDER BY i;
SELECT pg_get_functiondef('app.label(int)'::regprocedure) = :'label_v2' AS label_unchanged,
       pg_get_functiondef('app.greet(text)'::regprocedure) = :'greet_v2' AS greet_unchanged,
       (SELECT count(*) FROM function_history WHERE fn = 'app.label(int)'::regprocedure) = :label_versions
           AS no_new_label_version,
       (SELECT count(*) FROM function_history WHERE fn = 'app.greet(text)'::regprocedure) = :greet_versions
           AS no_new_greet_version;
SELECT app.label(1) AS still_swapped;

------------------------------------------------------------------------------------------------------
-- revert_function: back to the previous version, byte for byte.
------------------------------------------------------------------------------------------------------
SELECT revert_function('app.label(int)') AS reverted_version;
SELECT pg_get_functiondef('app.label(int)'::regprocedure) = :'label_v1' AS identical_to_v1;
SELECT app.label(1) AS after_revert;
-- Its previous version is the one before the version it restored: there is none before version 1.
SELECT revert_function('app.label(int)');
-- To a named version.
SELECT revert_function('app.label(int)', to_version => 2) AS reverted_version;
SELECT pg_get_functiondef('app.label(int)'::regprocedure) = :'label_v2' AS identical_to_v2;
SELECT app.label(2) AS after_revert_to_2;
-- And back to the previous version of version 2, which is version 1.
SELECT revert_function('app.label(int)') AS reverted_version;
SELECT pg_get_functiondef('app.label(int)'::regprocedure) = :'label_v1' AS identical_to_v1;
-- A version that does not exist.
SELECT revert_function('app.label(int)', 99);
SELECT revert_function('app.label(int)', 0);
-- The plpgsql function, with its attributes.
SELECT pg_get_functiondef('app.greet(text)'::regprocedure) AS greet_before_revert \gset
SELECT revert_function('app.greet(text)') AS reverted_version;
SELECT app.greet('ann') AS after_revert;
SELECT row(provolatile, proisstrict, prosecdef, proparallel, procost, proconfig, prolang, prorettype, proargnames,
           proargtypes)::text = :'greet_attributes' AS attributes_kept
FROM pg_proc WHERE oid = 'app.greet(text)'::regprocedure;

------------------------------------------------------------------------------------------------------
-- swap_function with another language; revert brings the old language back.
------------------------------------------------------------------------------------------------------
SELECT swap_function('app.label(int)',
	$$ BEGIN RETURN (SELECT label || '!' FROM app.items WHERE id = i); END $$, language => 'plpgsql');
SELECT (SELECT lanname FROM pg_language WHERE oid = prolang) AS language, provolatile FROM pg_proc WHERE oid = 'app.label(int)'::regprocedure;
SELECT app.label(1) AS plpgsql_body;
SELECT swap_function('app.label(int)', 'x', language => 'no_such_language');
SELECT revert_function('app.label(int)') AS reverted_version;
SELECT (SELECT lanname FROM pg_language WHERE oid = prolang) AS language FROM pg_proc WHERE oid = 'app.label(int)'::regprocedure;
SELECT pg_get_functiondef('app.label(int)'::regprocedure) = :'label_v1' AS identical_to_v1;

------------------------------------------------------------------------------------------------------
-- The event trigger: a frozen function cannot be dropped, renamed or moved.
------------------------------------------------------------------------------------------------------
DROP FUNCTION app.label(int);
DROP FUNCTION app.label;
DROP PROCEDURE app.add_item(int, text);
ALTER FUNCTION app.label(int) RENAME TO label_renamed;
ALTER PROCEDURE app.add_item(int, text) RENAME TO add_thing;
CREATE SCHEMA elsewhere;
ALTER FUNCTION app.label(int) SET SCHEMA elsewhere;
-- Dropping it with its schema is refused too.
CREATE SCHEMA doomed;
CREATE FUNCTION doomed.f() RETURNS int LANGUAGE sql AS 'SELECT 1';
SELECT freeze_function('doomed.f()');
DROP SCHEMA doomed CASCADE;
-- All still there, under their names, in their schemas.
SELECT p.oid::regprocedure AS fn, n.nspname AS schema
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname IN ('app', 'elsewhere', 'doomed') ORDER BY p.oid::regprocedure::text;
SELECT app.label(1) AS still_callable;

------------------------------------------------------------------------------------------------------
-- Out-of-band changes are recorded as versions.
------------------------------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION app.label(i int) RETURNS text LANGUAGE sql STABLE
AS $$ SELECT 'out of band ' || i $$;
SELECT app.label(1) AS out_of_band_body;
ALTER FUNCTION app.label(int) COST 7;
-- ... and revert like any other version.
SELECT revert_function('app.label(int)') AS reverted_version;
SELECT procost, app.label(1) AS body_kept FROM pg_proc WHERE oid = 'app.label(int)'::regprocedure;
SELECT revert_function('app.label(int)') AS reverted_version;
SELECT procost, app.label(1) AS back_to_v1 FROM pg_proc WHERE oid = 'app.label(int)'::regprocedure;
SELECT pg_get_functiondef('app.label(int)'::regprocedure) = :'label_v1' AS identical_to_v1;

------------------------------------------------------------------------------------------------------
-- function_history.
------------------------------------------------------------------------------------------------------
SELECT fn, version, role, is_current, previous_version, note, wal_lsn IS NOT NULL AS has_lsn
FROM function_history ORDER BY fn::text, version;
-- Exactly one current version per frozen function; LSNs never go backwards.
SELECT fn, count(*) FILTER (WHERE is_current) AS current_versions,
       bool_and(wal_lsn >= coalesce(prev_lsn, '0/0')) AS lsn_monotonic
FROM (SELECT fn, is_current, wal_lsn, lag(wal_lsn) OVER (PARTITION BY fn ORDER BY version) AS prev_lsn
      FROM function_history) h
GROUP BY fn ORDER BY fn::text;

------------------------------------------------------------------------------------------------------
-- Errors.
------------------------------------------------------------------------------------------------------
-- freezing twice
SELECT freeze_function('app.label(int)');
-- a function that is not frozen
CREATE FUNCTION app.loose(int) RETURNS int LANGUAGE sql IMMUTABLE AS 'SELECT $1';
SELECT swap_function('app.loose(int)', 'SELECT $1 + 1');
SELECT revert_function('app.loose(int)');
SELECT unfreeze_function('app.loose(int)');
SELECT app.loose(1) AS loose_unchanged;
-- a NULL body or function
SELECT swap_function('app.label(int)', NULL);
SELECT freeze_function(NULL);
SELECT swap_function(NULL, 'SELECT 1');
-- a function that does not exist
SELECT freeze_function('app.no_such_function(int)');
-- an aggregate (and a window function)
SELECT freeze_function('sum(int)');
SELECT freeze_function('row_number()');
-- none of them left a trace
SELECT count(*) AS history_rows_for_refused
FROM function_history WHERE fn::text IN ('app.loose(integer)', 'sum(integer)', 'row_number()');

------------------------------------------------------------------------------------------------------
-- unfreeze_function ends the contract: its history goes, renames and drops are allowed again.
------------------------------------------------------------------------------------------------------
SELECT unfreeze_function('doomed.f()');
DROP SCHEMA doomed CASCADE;
SELECT unfreeze_function('app.add_item(int,text)');
SELECT count(*) AS add_item_history FROM function_history WHERE fn = 'app.add_item(int,text)'::regprocedure;
ALTER PROCEDURE app.add_item(int, text) RENAME TO add_thing;
DROP PROCEDURE app.add_thing(int, text);
SELECT to_regprocedure('app.add_item(int,text)') IS NULL AS add_item_gone;

------------------------------------------------------------------------------------------------------
-- DROP EXTENSION with frozen functions present works; the functions stay and are no longer guarded.
------------------------------------------------------------------------------------------------------
SELECT count(*) AS still_frozen FROM function_history WHERE is_current;
DROP EXTENSION migration_ext;
SELECT count(*) AS schema_left FROM pg_namespace WHERE nspname = 'migration_ext';
SELECT count(*) AS event_triggers_left FROM pg_event_trigger WHERE evtname LIKE 'migration_ext%';
SELECT app.label(1) AS label, app.greet('ann') AS greet;
ALTER FUNCTION app.loose(int) RENAME TO looser;
DROP FUNCTION app.looser(int);
-- CREATE EXTENSION again: a clean slate.
CREATE EXTENSION migration_ext;
SELECT count(*) AS history_rows FROM function_history;
SELECT freeze_function('app.label(int)') AS refrozen_version;
DROP FUNCTION app.label(int);
SELECT unfreeze_function('app.label(int)');
SET client_min_messages = warning;
DROP SCHEMA app CASCADE;
RESET client_min_messages;
DROP SCHEMA elsewhere;
DROP EXTENSION migration_ext;
