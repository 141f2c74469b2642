-- A worker added after a codec was created gets it from sync_codecs(), which also drops what the
-- coordinator no longer has.
\set SHOW_CONTEXT never
\getenv coordinator_port MEXT_CITUS_COORDINATOR_PORT
\getenv late_port MEXT_CITUS_LATE_WORKER_PORT
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
-- Citus has the extension on the new node, but none of the coordinator's codecs.
SELECT extversion FROM pg_extension WHERE extname = 'migration_ext';
SELECT name FROM migration_ext.codec ORDER BY name;
SELECT migrate_value('early', reverse('tok_1'));

\c - - - :coordinator_port
SELECT sync_codecs();
\c - - - :late_port
SELECT name, convert, marker, detect, created_by FROM migration_ext.codec ORDER BY name;
SELECT migrate_value('early', reverse('tok_1'));

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
