-- A backfill of a distributed table: one job on the coordinator; its parts on the workers that hold the
-- shards, each walking its own; the job's status sums them and its controls reach them. A shard move is
-- refused while the job runs.
\set SHOW_CONTEXT never
\getenv coordinator_port MEXT_CITUS_COORDINATOR_PORT
\getenv worker1_port MEXT_CITUS_WORKER1_PORT
SELECT create_codec('v2', 'add_prefix:v2:', marker => 'v2:', detect => 'absent');
CREATE TABLE orders (id bigint PRIMARY KEY, token text);
SELECT create_distributed_table('orders', 'id');
INSERT INTO orders SELECT g, 'tok' || g::text FROM generate_series(1, 4000) g;

-- Waits until job :job has converted some rows (each statement of a DO block sees new commits).
CREATE FUNCTION wait_for_progress(job bigint) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
	FOR i IN 1 .. 600 LOOP
		IF (SELECT s.rows_converted FROM backfill_status s WHERE s.job = wait_for_progress.job) > 0 THEN
			RETURN true;
		END IF;
		PERFORM pg_sleep(0.1);
	END LOOP;
	RETURN false;
END $$;

-- Two parts on each worker (parallel => 2), over its shards.
SELECT start_backfill('orders', 'token', 'v2', parallel => 2) AS job \gset
SELECT wait_backfill(:job, '120 s');
SELECT state, rows_scanned, rows_converted, percent_done, parallel, last_error,
	   (SELECT array_agg(n ORDER BY n) FROM jsonb_object_keys(nodes) n) = ARRAY['localhost:' || :worker1_port,
			'localhost:' || (:worker1_port + 1)] AS both_workers
FROM backfill_status WHERE job = :job;
SELECT sum((n.value ->> 'parts')::int) AS parts, sum((n.value ->> 'rows_converted')::int) AS rows,
	   bool_and(n.value -> 'states' = '{"done": 2}') AS all_done
FROM backfill_status s, jsonb_each(s.nodes) n WHERE s.job = :job;
SELECT count(*) FILTER (WHERE token = 'v2:tok' || id::text) AS converted, count(*) AS total FROM orders;

-- On a worker: the parts, done, each over shards of its own, and steered only through the parent.
\c - - - :worker1_port
SELECT count(*) AS parts, bool_and(state = 'done') AS done, bool_and(rows_converted > 0) AS each_converted
FROM backfill_status WHERE parent_job = :job;
SELECT count(DISTINCT p) = count(p) AS disjoint
FROM migration_ext.backfill_job b, unnest(b.partitions) p WHERE b.parent_job = :job;
\set VERBOSITY default
SELECT pause_backfill(min(job)) FROM backfill_status WHERE parent_job = :job;
\set VERBOSITY terse
\c - - - :coordinator_port

-- Pause, alter, resume: a slow job.
UPDATE orders SET token = 'tok' || id::text;
SELECT start_backfill('orders', 'token', 'v2', max_rows_per_second => 100) AS job \gset
SELECT wait_for_progress(:job);
-- No shard leaves its node while the job runs; another job on the column is refused.
SELECT citus_move_shard_placement(s.shardid, 'localhost', :worker1_port, 'localhost', :worker1_port + 1)
FROM citus_shards s WHERE s.table_name = 'orders'::regclass AND s.nodeport = :worker1_port LIMIT 1;
SELECT start_backfill('orders', 'token', 'v2');
SELECT pause_backfill(:job);
SELECT wait_backfill(:job, '60 s');
SELECT rows_converted AS at_pause FROM backfill_status WHERE job = :job \gset
SELECT pg_sleep(1.5);
SELECT state, rows_converted = :at_pause AS still, throttle_reason FROM backfill_status WHERE job = :job;
\c - - - :worker1_port
SELECT state, requested FROM backfill_status WHERE parent_job = :job;
\c - - - :coordinator_port
SELECT alter_backfill(:job, max_rows_per_second => 0, throttle => false);
SELECT resume_backfill(:job);
SELECT wait_backfill(:job, '120 s');
SELECT state, rows_converted, max_rows_per_second, throttle
FROM backfill_status WHERE job = :job;
\c - - - :worker1_port
SELECT bool_and(state = 'done') AS done, bool_and(max_rows_per_second IS NULL AND NOT throttle) AS altered
FROM backfill_status WHERE parent_job = :job;
\c - - - :coordinator_port
SELECT count(*) FILTER (WHERE token = 'v2:tok' || id::text) AS converted FROM orders;
-- The move goes through once the job is done.
SELECT count(*) AS moved FROM (
	SELECT citus_move_shard_placement(s.shardid, 'localhost', :worker1_port, 'localhost', :worker1_port + 1,
									  shard_transfer_mode => 'block_writes')
	FROM citus_shards s WHERE s.table_name = 'orders'::regclass AND s.nodeport = :worker1_port LIMIT 1) m;

-- A shard moved while the job is paused (its parent, which holds Citus's placement lock, has stopped): on
-- resume the job fails, saying so, and its parts are cancelled; it never ends done with a shard unwalked.
UPDATE orders SET token = 'tok' || id::text;
SELECT start_backfill('orders', 'token', 'v2', max_rows_per_second => 100) AS job \gset
SELECT wait_for_progress(:job);
SELECT pause_backfill(:job);
SELECT wait_backfill(:job, '60 s');
SELECT count(*) AS moved FROM (
	SELECT citus_move_shard_placement(s.shardid, 'localhost', :worker1_port + 1, 'localhost', :worker1_port,
									  shard_transfer_mode => 'block_writes')
	FROM citus_shards s WHERE s.table_name = 'orders'::regclass AND s.nodeport = :worker1_port + 1 LIMIT 1) m;
SELECT resume_backfill(:job);
SELECT wait_backfill(:job, '60 s');
SELECT state, last_error LIKE 'shards of public.orders moved while the job did not hold them%' AS says_why
FROM backfill_status WHERE job = :job;
\c - - - :worker1_port
SELECT array_agg(DISTINCT state) AS parts FROM backfill_status WHERE parent_job = :job;
\c - - - :coordinator_port

-- A Citus table is backfilled from the coordinator only.
\c - - - :worker1_port
\set VERBOSITY default
SELECT start_backfill('orders', 'token', 'v2');
\set VERBOSITY terse
\c - - - :coordinator_port

-- Cancel: every part stops.
UPDATE orders SET token = 'tok' || id::text;
SELECT start_backfill('orders', 'token', 'v2', max_rows_per_second => 100) AS job \gset
SELECT wait_for_progress(:job);
SELECT cancel_backfill(:job);
SELECT wait_backfill(:job, '60 s');
\c - - - :worker1_port
SELECT bool_and(state = 'cancelled') AS cancelled FROM backfill_status WHERE parent_job = :job;
\c - - - :coordinator_port
SELECT count(*) FILTER (WHERE token LIKE 'v2:%') BETWEEN 1 AND 3999 AS partly FROM orders;

DROP FUNCTION wait_for_progress(bigint);
DROP TABLE orders;
SELECT drop_codec('v2');
