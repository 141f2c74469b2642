-- parallel => N: a partitioned table walked by N part jobs on disjoint sets of its partitions, the
-- largest dealt out first; one parent job to watch and steer, whose row sums its parts.
\set VERBOSITY default
\set SHOW_CONTEXT never
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS migration_ext CASCADE;
DROP SCHEMA IF EXISTS par CASCADE;
RESET client_min_messages;
CREATE EXTENSION migration_ext;
SET migration_ext.wait_progress = off;
CREATE SCHEMA par;
SELECT create_codec('v2', 'add_prefix:v2:', 'v2:', 'absent');

CREATE TABLE par.events (id bigint PRIMARY KEY, token text) PARTITION BY HASH (id);
SELECT format('CREATE TABLE par.events_%s PARTITION OF par.events FOR VALUES WITH (MODULUS 5, REMAINDER %s)', r, r)
FROM generate_series(0, 4) r \gexec
INSERT INTO par.events SELECT g, 'tok' || g::text FROM generate_series(1, 5000) g;
ANALYZE par.events;

-- Two parts over five partitions: three and two, none in both.
SELECT start_backfill('par.events', 'token', 'v2', parallel => 2, throttle => false) AS job \gset
CALL await_backfill(:job, '60 s', false);
SELECT state, rows_scanned, rows_converted, percent_done, parallel, parent_job, nodes ? 'local' AS summed
FROM backfill_status WHERE job = :job;
SELECT state, cardinality(partition_list) AS partitions, rows_converted > 0 AS converted
FROM (SELECT b.state, b.partitions AS partition_list, b.rows_converted FROM migration_ext.backfill_job b
	  WHERE b.parent_job = :job ORDER BY b.id) p;
SELECT count(DISTINCT p) AS partitions, count(p) AS walked
FROM migration_ext.backfill_job b, unnest(b.partitions) p WHERE b.parent_job = :job;
SELECT sum(rows_converted) AS by_parts FROM backfill_status WHERE parent_job = :job;
SELECT count(*) FILTER (WHERE token = 'v2:tok' || id::text) AS converted, count(*) AS total FROM par.events;

-- Pause and resume: the parts stop and go on with the parent; a part is steered only through it.
UPDATE par.events SET token = 'tok' || id::text;
SELECT start_backfill('par.events', 'token', 'v2', parallel => 3, max_rows_per_second => 200) AS job \gset
SELECT pause_backfill(min(job)) FROM backfill_status WHERE parent_job = :job;
SELECT pause_backfill(:job);
CALL await_backfill(:job, '60 s', false);
SELECT state, throttle_reason FROM backfill_status WHERE job = :job;
SELECT array_agg(DISTINCT state) AS parts FROM backfill_status WHERE parent_job = :job;
SELECT alter_backfill(:job, max_rows_per_second => 0, throttle => false);
SELECT resume_backfill(:job);
CALL await_backfill(:job, '60 s', false);
SELECT state, rows_converted FROM backfill_status WHERE job = :job;
SELECT array_agg(DISTINCT state) AS parts, bool_and(max_rows_per_second IS NULL) AS altered
FROM backfill_status WHERE parent_job = :job;
SELECT count(*) FILTER (WHERE token = 'v2:tok' || id::text) AS converted FROM par.events;

-- Cancel reaches every part.
UPDATE par.events SET token = 'tok' || id::text;
SELECT start_backfill('par.events', 'token', 'v2', parallel => 2, max_rows_per_second => 100) AS job \gset
SELECT cancel_backfill(:job);
CALL await_backfill(:job, '60 s', false);
SELECT state FROM backfill_status WHERE job = :job;
SELECT array_agg(DISTINCT state) AS parts FROM backfill_status WHERE parent_job = :job;

-- A plain table has one walk; parallel is refused, as are values out of range.
CREATE TABLE par.plain (id bigint PRIMARY KEY, token text);
SELECT start_backfill('par.plain', 'token', 'v2', parallel => 2);
SELECT start_backfill('par.events', 'token', 'v2', parallel => 65);
-- More parts than partitions: one part a partition.
SELECT start_backfill('par.events', 'token', 'v2', parallel => 9, throttle => false) AS job \gset
CALL await_backfill(:job, '60 s', false);
SELECT state, (SELECT count(*) FROM backfill_status s WHERE s.parent_job = :job) AS parts
FROM backfill_status WHERE job = :job;

SET client_min_messages = warning;
DROP SCHEMA par CASCADE;
DROP EXTENSION migration_ext CASCADE;
