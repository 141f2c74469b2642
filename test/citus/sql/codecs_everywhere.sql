-- A codec created or dropped on the coordinator is the same on every worker, each checked through its own
-- connection; a change is on every node or on none.
\set SHOW_CONTEXT never
\getenv coordinator_port MEXT_CITUS_COORDINATOR_PORT
\getenv worker1_port MEXT_CITUS_WORKER1_PORT
\getenv worker2_port MEXT_CITUS_WORKER2_PORT
SELECT migration_ext.citus_node_role();
SELECT create_codec('tok', 'reverse', marker => 'tok_');
SELECT create_codec('v2', 'strip_prefix:v1:|add_prefix:v2:', marker => 'v2:', detect => 'absent');
CREATE VIEW codecs AS SELECT name, convert, marker, detect, shape, created_at, created_by FROM migration_ext.codec;
SELECT md5(string_agg(c::text, ',' ORDER BY name)) AS coordinator_codecs FROM codecs c \gset

\c - - - :worker1_port
SELECT migration_ext.citus_node_role();
SELECT name, convert, marker, detect, created_by FROM migration_ext.codec ORDER BY name;
-- Identical rows, creation times included.
SELECT md5(string_agg(c::text, ',' ORDER BY name)) = :'coordinator_codecs' AS same_as_coordinator
FROM (SELECT name, convert, marker, detect, shape, created_at, created_by FROM migration_ext.codec) c;
SELECT is_legacy('tok', reverse('tok_1')), migrate_value('tok', reverse('tok_1')), migrate_value('v2', 'v1:abc');
-- A worker takes codec changes only from the coordinator.
SELECT create_codec('local_only', 'reverse');
SELECT drop_codec('tok');

\c - - - :worker2_port
SELECT name, convert, marker, detect, created_by FROM migration_ext.codec ORDER BY name;
SELECT md5(string_agg(c::text, ',' ORDER BY name)) = :'coordinator_codecs' AS same_as_coordinator
FROM (SELECT name, convert, marker, detect, shape, created_at, created_by FROM migration_ext.codec) c;
SELECT is_legacy('tok', reverse('tok_1')), migrate_value('v2', 'v1:abc');

\c - - - :coordinator_port
SELECT drop_codec('v2');
-- Rolled back on the coordinator: on no worker either.
BEGIN;
SELECT create_codec('rolled_back', 'reverse', marker => 'tok_');
ROLLBACK;
-- A definition a worker refuses fails everywhere: this function exists on the coordinator only.
SET citus.enable_ddl_propagation = off;
CREATE FUNCTION coordinator_only(t text) RETURNS text LANGUAGE sql IMMUTABLE RETURN upper(t);
RESET citus.enable_ddl_propagation;
SELECT create_codec('half', 'fn:public.coordinator_only', marker => 'X');
SELECT name FROM migration_ext.codec ORDER BY name;

\c - - - :worker1_port
SELECT name FROM migration_ext.codec ORDER BY name;
SELECT migrate_value('v2', 'v1:abc');
\c - - - :worker2_port
SELECT name FROM migration_ext.codec ORDER BY name;

\c - - - :coordinator_port
SELECT drop_codec('tok');
DROP FUNCTION coordinator_only(text);
DROP VIEW codecs;
\c - - - :worker1_port
SELECT count(*) AS codecs_left FROM migration_ext.codec;
\c - - - :worker2_port
SELECT count(*) AS codecs_left FROM migration_ext.codec;
