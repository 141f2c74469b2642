-- The migration protocol on a distributed table: the frozen functions' swaps reach every node (Citus
-- distributes functions), the settle check waits for old transactions on the workers too, the backfill
-- runs on the nodes, the verifying scan and the online contract go through Citus to every shard.
\set SHOW_CONTEXT never
\getenv coordinator_port MEXT_CITUS_COORDINATOR_PORT
\getenv worker1_port MEXT_CITUS_WORKER1_PORT
SELECT create_codec('v2', 'add_prefix:v2:', marker => 'v2:', detect => 'absent');
CREATE TABLE cards (id bigint PRIMARY KEY, token text NOT NULL);
SELECT create_distributed_table('cards', 'id');
INSERT INTO cards SELECT g, 'tok' || g::text FROM generate_series(1, 2000) g;
CREATE FUNCTION read_card(i bigint) RETURNS text LANGUAGE sql STABLE AS $$ SELECT token FROM cards WHERE id = i $$;
CREATE FUNCTION write_card(i bigint, t text) RETURNS void LANGUAGE sql AS $$ UPDATE cards SET token = t WHERE id = i $$;
SELECT freeze_function('read_card(bigint)'), freeze_function('write_card(bigint,text)');
SELECT create_migration('cards_v2', 'cards', 'token', 'v2');
SELECT plan_swap('cards_v2', 'read_card(bigint)', $$ SELECT migrate_value('v2', token) FROM cards WHERE id = i $$);
SELECT plan_swap('cards_v2', 'write_card(bigint,text)', $$ UPDATE cards SET token = t WHERE id = i $$,
				 role => 'writer');

-- A transaction on a worker, older than the reader swaps (prepared, so that it outlives this session's
-- turn there): the door waits for it.
\c - - - :worker1_port
BEGIN;
SELECT count(*) > 0 AS reads FROM pg_class;
PREPARE TRANSACTION 'old_reader';
\c - - - :coordinator_port
SELECT advance_migration('cards_v2');
\c - - - :worker1_port
SELECT prosrc AS reader_on_a_worker FROM pg_proc WHERE proname = 'read_card';
\c - - - :coordinator_port
SELECT settled, regexp_replace(waiting_for, 'localhost:[0-9]+', 'localhost:<port>') AS waiting_for
FROM migration_status WHERE name = 'cards_v2';
\set VERBOSITY terse
SELECT advance_migration('cards_v2', confirm => 'cards_v2');
\set VERBOSITY default
\c - - - :worker1_port
COMMIT PREPARED 'old_reader';
\c - - - :coordinator_port
SELECT settled, waiting_for FROM migration_status WHERE name = 'cards_v2';
SELECT advance_migration('cards_v2', confirm => 'cards_v2');
SELECT write_card(1, 'v2:written');
SELECT start_backfill('cards_v2') AS job \gset
SELECT wait_backfill(:job, '60 s');
SELECT advance_migration('cards_v2');
SELECT advance_migration('cards_v2');
SELECT name, phase, constraint_name FROM migration_status WHERE name = 'cards_v2';
SELECT read_card(1) AS written, read_card(2) AS converted;
SELECT count(*) FILTER (WHERE token NOT LIKE 'v2:%') AS legacy FROM cards;
-- The contract's check is on every shard, validated: a legacy value is refused through the coordinator.
DO $$
BEGIN
	INSERT INTO cards VALUES (5000, 'legacy');
	RAISE EXCEPTION 'a legacy value was accepted';
EXCEPTION WHEN check_violation THEN
	RAISE NOTICE 'a legacy value is refused by the shard''s check';
END $$;
\c - - - :worker1_port
SELECT count(*) > 0 AS shards, bool_and(convalidated) AS validated
FROM pg_constraint WHERE conname LIKE 'public_cards_token_not_legacy_%';
SELECT prosrc AS writer_on_a_worker FROM pg_proc WHERE proname = 'write_card';
\c - - - :coordinator_port
SELECT event, from_phase, to_phase FROM migration_history WHERE migration = 'cards_v2' ORDER BY id;

-- Clean up for the files after this one (a migration is kept for ever, its codec with it).
SELECT unfreeze_function('read_card(bigint)'), unfreeze_function('write_card(bigint,text)');
DROP FUNCTION read_card(bigint), write_card(bigint, text);
DROP TABLE cards CASCADE;
DELETE FROM migration_ext.migration_event WHERE migration = 'cards_v2';
DELETE FROM migration_ext.planned_swap WHERE migration = 'cards_v2';
DELETE FROM migration_ext.migration WHERE name = 'cards_v2';
SELECT drop_codec('v2');
