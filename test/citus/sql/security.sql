-- Who changes codecs on the workers, and as whom. The coordinator authorizes the role that calls
-- create_codec() and drop_codec(); the extension's owner then applies the change on each worker, sending
-- only apply_codecs() with the definitions as one quoted literal, which each worker checks again against
-- the codec creator's rights there. Nothing a codec's creator writes runs as a superuser on any node.
\set SHOW_CONTEXT never
\getenv coordinator_port MEXT_CITUS_COORDINATOR_PORT
\getenv worker1_port MEXT_CITUS_WORKER1_PORT
\getenv worker2_port MEXT_CITUS_WORKER2_PORT
CREATE ROLE codec_author;
CREATE ROLE other_author;
GRANT CREATE ON DATABASE postgres TO codec_author, other_author;

-- The attack: a name and a marker that would end the command sent to the workers and run their own,
-- as the superuser who connects there.
SET ROLE codec_author;
SELECT create_codec($n$x'); CREATE ROLE pwned SUPERUSER; SELECT ('$n$, 'reverse',
					marker => $m$'::text); CREATE ROLE pwned2 SUPERUSER; --$m$);
SELECT create_codec('dollar$$quoted', 'reverse', marker => $m$$$; CREATE ROLE pwned3 SUPERUSER; $$$m$);
RESET ROLE;
\c - - - :worker1_port
SELECT name, marker, created_by FROM migration_ext.codec ORDER BY name;
SELECT count(*) AS injected_roles FROM pg_roles WHERE rolname LIKE 'pwned%';
-- The worker-side entry point and the sender are the extension's own: no other role may call them.
SET ROLE codec_author;
SELECT migration_ext.apply_codecs('[{"name": "forged", "convert": "reverse", "detect": "converted", "created_by": "postgres"}]', NULL);
RESET ROLE;
\c - - - :worker2_port
SELECT name, marker, created_by FROM migration_ext.codec ORDER BY name;
SELECT count(*) AS injected_roles FROM pg_roles WHERE rolname LIKE 'pwned%';

\c - - - :coordinator_port
SELECT count(*) AS injected_roles FROM pg_roles WHERE rolname LIKE 'pwned%';
SET ROLE codec_author;
SELECT migration_ext.citus_send_to_workers('CREATE ROLE pwned4 SUPERUSER');
SELECT migration_ext.propagate_codecs(NULL);
-- Even a superuser's call to apply_codecs() is refused outside a worker.
RESET ROLE;
SELECT migration_ext.apply_codecs('[]', NULL);

-- A codec's creator stays its owner on every node: another role can neither drop it on the coordinator
-- nor anywhere else.
SET ROLE other_author;
SELECT drop_codec('dollar$$quoted');
-- An fn: step may name only a function its creator may run as its owner would, on every node.
RESET ROLE;
CREATE FUNCTION owned_by_other(t text) RETURNS text LANGUAGE sql IMMUTABLE RETURN lower(t);
ALTER FUNCTION owned_by_other(text) OWNER TO other_author;
SET ROLE codec_author;
SELECT create_codec('borrowed', 'fn:public.owned_by_other', marker => 'x');
RESET ROLE;

SET ROLE codec_author;
SELECT drop_codec($n$x'); CREATE ROLE pwned SUPERUSER; SELECT ('$n$);
SELECT drop_codec('dollar$$quoted');
RESET ROLE;
\c - - - :worker1_port
SELECT count(*) AS codecs_left FROM migration_ext.codec;
\c - - - :worker2_port
SELECT count(*) AS codecs_left FROM migration_ext.codec;
\c - - - :coordinator_port
DROP FUNCTION owned_by_other(text);

-- A distributed backfill: only a role that may act as the table's owner starts one (its batches run as the
-- owner on every node); the functions by which the coordinator starts and steers the parts on the
-- workers are not for roles to call there, to start parts, cancel others' or pin shards.
SELECT create_codec('sec', 'add_prefix:v2:', marker => 'v2:', detect => 'absent');
CREATE TABLE sec_dist (id bigint PRIMARY KEY, token text);
SELECT create_distributed_table('sec_dist', 'id');
ALTER TABLE sec_dist OWNER TO other_author;
SET ROLE codec_author;
SELECT start_backfill('sec_dist', 'token', 'sec');
RESET ROLE;
\c - - - :worker1_port
SET ROLE codec_author;
SELECT migration_ext.start_node_parts(1, '{"relation": "public.sec_dist", "owner": "codec_author"}');
SELECT migration_ext.follow_parent(1, true, '{"requested": "cancel"}');
SELECT migration_ext.hold_shard_moves(1, true);
RESET ROLE;
-- Even a superuser's forged call checks the job's role against this node's catalog.
SELECT migration_ext.start_node_parts(1, '{"relation": "public.sec_dist", "column_name": "token", "codec": "sec", "owner": "codec_author"}');
SELECT count(*) AS parts FROM migration_ext.backfill_job WHERE relation = 'sec_dist'::regclass;
\c - - - :coordinator_port
DROP TABLE sec_dist;
SELECT drop_codec('sec');
REVOKE CREATE ON DATABASE postgres FROM codec_author, other_author;
DROP ROLE codec_author, other_author;
