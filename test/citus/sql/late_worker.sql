-- A worker added after a codec was created gets it from the coordinator's resumer within
-- migration_ext.resume_interval (here 1 s), which also drops what the coordinator no longer has; or at
-- once from sync_codecs().
\set SHOW_CONTEXT never
\getenv coordinator_port MEXT_CITUS_COORDINATOR_PORT
\getenv late_port MEXT_CITUS_LATE_WORKER_PORT
ALTER SYSTEM SET migration_ext.resume_interval = '1s';
SELECT pg_reload_conf();
SELECT create_codec('early', 'reverse', marker => 'tok_');
SELECT count(*) AS workers FROM citus_get_active_worker_nodes();
-- The new node already has a codec the cluster does not have.
\c - - - :late_port
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS migration_ext;
INSERT INTO migration_ext.codec (name, convert, marker, detect, created_by)
VALUES ('stale', 'reverse', 'tok_', 'converted', 'postgres') ON CONFLICT DO NOTHING;
\c - - - :coordinator_port
SELECT 1 FROM citus_add_node('localhost', :late_port);

\c - - - :late_port
-- Citus has the extension on the new node; the coordinator's resumer gives it the codecs.
SELECT extversion FROM pg_extension WHERE extname = 'migration_ext';
DO $$
BEGIN
	FOR i IN 1 .. 300 LOOP
		EXIT WHEN EXISTS (SELECT FROM migration_ext.codec WHERE name = 'early')
			  AND NOT EXISTS (SELECT FROM migration_ext.codec WHERE name = 'stale');
		PERFORM pg_sleep(0.1);
	END LOOP;
END $$;
SELECT name, convert, marker, detect, created_by FROM migration_ext.codec ORDER BY name;
SELECT migrate_value('early', reverse('tok_1'));

-- sync_codecs() does the same at once (and has nothing to change now).
\c - - - :coordinator_port
SELECT sync_codecs();

-- From now on it takes every change.
\c - - - :coordinator_port
SELECT create_codec('later', 'upper', marker => 'A');
SELECT drop_codec('early');
\c - - - :late_port
SELECT name FROM migration_ext.codec ORDER BY name;

-- Only on the coordinator, and only for a superuser.
SELECT sync_codecs();
\c - - - :coordinator_port
CREATE ROLE sync_tester;
SET ROLE sync_tester;
SELECT sync_codecs();
RESET ROLE;
DROP ROLE sync_tester;

SELECT drop_codec('later');
SELECT citus_remove_node('localhost', :late_port);
SELECT count(*) AS workers FROM citus_get_active_worker_nodes();
ALTER SYSTEM RESET migration_ext.resume_interval;
SELECT pg_reload_conf();
