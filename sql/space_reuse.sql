-- Space reuse: the worker vacuums the table between batches, so converted rows land in the space of the
-- old versions they replaced. Every row is converted with reuse on and off; backfill_status shows the
-- growth and the space reclaimed. Waits are CALL await_backfill(): it holds no snapshot, which would
-- keep every old version visible (wait_backfill() does, as any statement does while it runs).
\set VERBOSITY default
\set SHOW_CONTEXT never
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS migration_ext CASCADE;
DROP SCHEMA IF EXISTS sr CASCADE;
RESET client_min_messages;
CREATE EXTENSION migration_ext;
SET migration_ext.wait_progress = off;
CREATE SCHEMA sr;
SELECT create_codec('v2', 'reverse|add_prefix:v2:', 'v2:', 'absent');
SHOW migration_ext.reuse_space;

-- A table of 40,000 legacy rows, no autovacuum of its own (the rounds are the job's), built afresh.
CREATE FUNCTION sr.fill(t regclass) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE format('TRUNCATE %s', t);
	EXECUTE format('INSERT INTO %s SELECT g, md5(g::text), repeat(''x'', 60) FROM generate_series(1, 40000) g', t);
	EXECUTE format('ANALYZE %s', t);
END $$;
CREATE TABLE sr.on_ (id bigint PRIMARY KEY, token text NOT NULL, note text) WITH (autovacuum_enabled = off);
CREATE TABLE sr.off_ (LIKE sr.on_ INCLUDING ALL) WITH (autovacuum_enabled = off);
SELECT sr.fill('sr.on_'), sr.fill('sr.off_');
VACUUM sr.on_, sr.off_;

-- Reuse on (the default): a round after every 5% of the table (2,000 rows, at least 1,000) converted;
-- a round that finds the rows' old versions still visible to some snapshot waits for the next.
SELECT pg_total_relation_size('sr.on_') AS size_before \gset
SELECT start_backfill('sr.on_', 'token', 'v2', throttle => false, batch_size => 1000) AS job_on \gset
CALL await_backfill(:job_on);
SELECT state, rows_converted, reuse_space, size_at_start = :size_before AS started_from_its_size,
       reclaims >= 5 AS rounds_ran, rows_reclaimed >= 30000 AS most_old_versions_freed,
       space_reclaimed > 30000 * 100 AS freed_bytes, growth < 1.5 AS grew_little,
       reclaim_note ~ '^last round freed \d+ row versions \([0-9.]+ MB\) in [0-9.]+ s$' AS note_says_last_round
FROM backfill_status WHERE job = :job_on;
SELECT count(*) FILTER (WHERE token = 'v2:' || reverse(md5(id::text))) AS converted, count(*) AS total FROM sr.on_;

-- Reuse off: the same rewrite doubles the table.
SELECT start_backfill('sr.off_', 'token', 'v2', throttle => false, batch_size => 1000, reuse_space => false) AS job_off \gset
CALL await_backfill(:job_off);
SELECT state, rows_converted, reuse_space, reclaims, rows_reclaimed, space_reclaimed, reclaim_note,
       growth >= 1.8 AS doubled
FROM backfill_status WHERE job = :job_off;
SELECT count(*) FILTER (WHERE token = 'v2:' || reverse(md5(id::text))) AS converted, count(*) AS total FROM sr.off_;
SELECT (SELECT growth FROM backfill_status WHERE job = :job_on) < (SELECT growth FROM backfill_status WHERE job = :job_off)
	AS reuse_grew_less;

-- The default comes from migration_ext.reuse_space; alter_backfill() switches a job, the migration
-- form takes the switch too.
SET migration_ext.reuse_space = off;
SELECT sr.fill('sr.on_');
SELECT start_backfill('sr.on_', 'token', 'v2', max_rows_per_second => 100) AS job_default_off \gset
SELECT reuse_space FROM backfill_status WHERE job = :job_default_off;
SELECT alter_backfill(:job_default_off, reuse_space => true);
SELECT reuse_space FROM backfill_status WHERE job = :job_default_off;
SELECT alter_backfill(:job_default_off, max_rows_per_second => 0);
CALL await_backfill(:job_default_off);
SELECT state, rows_converted, reclaims > 0 AS rounds_ran_once_switched_on FROM backfill_status WHERE job = :job_default_off;
RESET migration_ext.reuse_space;

-- A table move rewrites no row in place: no size to compare, no rounds.
CREATE TABLE sr.v2 (id bigint PRIMARY KEY, token text);
SELECT sr.fill('sr.off_');
SELECT start_backfill('sr.off_', 'token', 'v2', target_relation => 'sr.v2', throttle => false) AS job_move \gset
CALL await_backfill(:job_move);
SELECT state, rows_converted, size_at_start IS NULL AS no_size, growth IS NULL AS no_growth, reclaims
FROM backfill_status WHERE job = :job_move;

-- Only the roles that may act as the table's owner switch a job's reuse.
CREATE ROLE regress_mext_sr_other;
SET ROLE regress_mext_sr_other;
SELECT alter_backfill(:job_on, reuse_space => false);
RESET ROLE;
DROP ROLE regress_mext_sr_other;

SET client_min_messages = warning;
DROP SCHEMA sr CASCADE;
DROP EXTENSION migration_ext CASCADE;
