-- The backfill worker: real background workers convert real tables, and every claim is checked on the
-- rows afterwards. Output is booleans and counts only; every wait is wait_backfill().
\set VERBOSITY default
\set SHOW_CONTEXT never
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS migration_ext CASCADE;
DROP SCHEMA IF EXISTS bf CASCADE;
DROP ROLE IF EXISTS regress_mext_bf_owner;
DROP ROLE IF EXISTS regress_mext_bf_other;
DROP ROLE IF EXISTS regress_mext_bf_nologin;
ALTER DATABASE :"DBNAME" RESET migration_ext.compress_wal;
RESET client_min_messages;
CREATE EXTENSION migration_ext;
-- Waits print no progress NOTICEs: their figures differ from run to run.
SET migration_ext.wait_progress = off;
CREATE SCHEMA bf;

-- Legacy tokens were stored reversed; reversed back, every one starts with 'tok_'.
SELECT create_codec('token_plain', convert => 'reverse', marker => 'tok_', detect => 'converted');

------------------------------------------------------------------------------------------------------
-- In place, with the defaults (throttled): legacy, target, NULL and other values side by side.
------------------------------------------------------------------------------------------------------
CREATE TABLE bf.plain (id int PRIMARY KEY, token text);
INSERT INTO bf.plain
SELECT g, CASE WHEN g <= 900 THEN reverse('tok_' || g)     -- legacy
               WHEN g <= 950 THEN 'tok_' || g              -- target already
               WHEN g <= 980 THEN NULL                     -- NULL
               ELSE 'other' || g END                       -- neither: passes through
FROM generate_series(1, 1000) g;
SELECT count_legacy('bf.plain', 'token', 'token_plain') AS legacy_before;
SELECT start_backfill('bf.plain', 'token', 'token_plain') AS job_plain \gset
SELECT wait_backfill(:job_plain, '60 s') AS plain_state;
-- (batch sizes of a throttled job adapt to the server, so they are not shown)
SELECT relation, column_name, codec, migration, state, requested, rows_scanned, rows_converted, rows_skipped,
       conflicts, percent_done, eta IS NULL AS no_eta, throttle, throttle_reason, last_key, last_error,
       error_key, role = current_user::regrole AS runs_as_caller
FROM backfill_status WHERE job = :job_plain;
SELECT count_legacy('bf.plain', 'token', 'token_plain') AS legacy_after,
       count(*) FILTER (WHERE token = 'tok_' || id) AS plain_tokens,
       count(*) FILTER (WHERE token IS NULL) AS nulls_untouched,
       count(*) FILTER (WHERE token = 'other' || id) AS others_untouched
FROM bf.plain;

-- Idempotent: a second job on the finished table scans every row, converts none and writes none:
-- no row gets a new version (same xmin, same ctid).
CREATE TEMP TABLE plain_versions AS SELECT id, xmin::text AS row_xmin, ctid AS row_ctid FROM bf.plain;
SELECT start_backfill('bf.plain', 'token', 'token_plain') AS job_plain_again \gset
SELECT wait_backfill(:job_plain_again, '60 s') AS plain_again_state;
SELECT rows_scanned, rows_converted, rows_skipped, conflicts, percent_done
FROM backfill_status WHERE job = :job_plain_again;
SELECT count(*) AS rows_with_same_version
FROM bf.plain p JOIN plain_versions v ON v.id = p.id AND v.row_xmin = p.xmin::text AND v.row_ctid = p.ctid;

------------------------------------------------------------------------------------------------------
-- throttle => false: flat out with the fixed batch size (1000 by default): 12 batches of 1000.
------------------------------------------------------------------------------------------------------
CREATE TABLE bf.flat (id bigint PRIMARY KEY, token text NOT NULL);
INSERT INTO bf.flat SELECT g, reverse('tok_' || md5(g::text)) FROM generate_series(1, 12000) g;
SELECT start_backfill('bf.flat', 'token', 'token_plain', throttle => false) AS job_flat \gset
SELECT wait_backfill(:job_flat, '60 s') AS flat_state;
SELECT state, throttle, rows_scanned, rows_converted, rows_skipped, conflicts, batches, batch_size, percent_done,
       last_key
FROM backfill_status WHERE job = :job_flat;
SELECT count_legacy('bf.flat', 'token', 'token_plain') AS flat_legacy,
       count(*) FILTER (WHERE token = 'tok_' || md5(id::text)) AS flat_converted FROM bf.flat;

------------------------------------------------------------------------------------------------------
-- A composite key with a text column (walked in key order across key boundaries, batch by batch).
------------------------------------------------------------------------------------------------------
CREATE TABLE bf.regional (region text, id int, token text, PRIMARY KEY (region, id));
INSERT INTO bf.regional
SELECT r, g, reverse('tok_' || r || g)
FROM unnest(ARRAY['eu', 'us west', 'o''hare', 'ap']) r, generate_series(1, 250) g;
SELECT start_backfill('bf.regional', 'token', 'token_plain', batch_size => 70) AS job_regional \gset
SELECT wait_backfill(:job_regional, '60 s') AS regional_state;
SELECT j.key_columns FROM migration_ext.backfill_job j WHERE j.id = :job_regional;
SELECT state, rows_scanned, rows_converted, rows_skipped, conflicts, last_key
FROM backfill_status WHERE job = :job_regional;
SELECT region, count(*) AS rows, count(*) FILTER (WHERE token = 'tok_' || region || id) AS converted
FROM bf.regional GROUP BY region ORDER BY region COLLATE "C";
SELECT count_legacy('bf.regional', 'token', 'token_plain') AS regional_legacy;

------------------------------------------------------------------------------------------------------
-- No primary key: a unique index on NOT NULL columns is walked instead (a unique index on a nullable
-- column, and a partial one, are not usable).
------------------------------------------------------------------------------------------------------
CREATE TABLE bf.uniq (code text NOT NULL, ext_ref int, token text);
CREATE UNIQUE INDEX uniq_ext_ref ON bf.uniq (ext_ref);
CREATE UNIQUE INDEX uniq_code_partial ON bf.uniq (code) WHERE code > 'm';
CREATE UNIQUE INDEX uniq_code ON bf.uniq (code);
INSERT INTO bf.uniq SELECT 'c' || lpad(g::text, 4, '0'), g, reverse('tok_' || g) FROM generate_series(1, 500) g;
SELECT start_backfill('bf.uniq', 'token', 'token_plain', batch_size => 120) AS job_uniq \gset
SELECT wait_backfill(:job_uniq, '60 s') AS uniq_state;
SELECT j.key_columns FROM migration_ext.backfill_job j WHERE j.id = :job_uniq;
SELECT rows_scanned, rows_converted, last_key FROM backfill_status WHERE job = :job_uniq;
SELECT count_legacy('bf.uniq', 'token', 'token_plain') AS uniq_legacy;

-- No usable key at all: a clear error, and no job.
CREATE TABLE bf.nokey (id int, ext_ref int, token text);
CREATE UNIQUE INDEX nokey_ext_ref ON bf.nokey (ext_ref);
CREATE UNIQUE INDEX nokey_partial ON bf.nokey (id) WHERE id > 0;
CREATE UNIQUE INDEX nokey_expression ON bf.nokey ((id + 1));
INSERT INTO bf.nokey VALUES (1, 1, 'cba_kot');
SELECT start_backfill('bf.nokey', 'token', 'token_plain');
SELECT count(*) AS nokey_jobs FROM backfill_status WHERE relation = 'bf.nokey'::regclass;

------------------------------------------------------------------------------------------------------
-- A partitioned table: every partition is walked.
------------------------------------------------------------------------------------------------------
CREATE TABLE bf.parted (id int PRIMARY KEY, token text) PARTITION BY RANGE (id);
CREATE TABLE bf.parted_1 PARTITION OF bf.parted FOR VALUES FROM (1) TO (1001);
CREATE TABLE bf.parted_2 PARTITION OF bf.parted FOR VALUES FROM (1001) TO (2001);
CREATE TABLE bf.parted_3 PARTITION OF bf.parted FOR VALUES FROM (2001) TO (3001);
INSERT INTO bf.parted SELECT g, reverse('tok_' || g) FROM generate_series(1, 3000) g WHERE g % 10 <> 0;
INSERT INTO bf.parted SELECT g, 'tok_' || g FROM generate_series(1, 3000) g WHERE g % 10 = 0;
SELECT start_backfill('bf.parted', 'token', 'token_plain', batch_size => 400) AS job_parted \gset
SELECT wait_backfill(:job_parted, '60 s') AS parted_state;
SELECT j.partitions FROM migration_ext.backfill_job j WHERE j.id = :job_parted;
SELECT state, rows_scanned, rows_converted, rows_skipped, conflicts, percent_done
FROM backfill_status WHERE job = :job_parted;
SELECT tableoid::regclass AS partition, count(*) AS rows, count(*) FILTER (WHERE token = 'tok_' || id) AS new_format,
       count(*) FILTER (WHERE is_legacy('token_plain', token)) AS legacy
FROM bf.parted GROUP BY 1 ORDER BY 1;

------------------------------------------------------------------------------------------------------
-- TOASTed values: 1 MB legacy values, stored out of line, converted whole.
------------------------------------------------------------------------------------------------------
CREATE TABLE bf.toasty (id int PRIMARY KEY, token text);
ALTER TABLE bf.toasty ALTER COLUMN token SET STORAGE EXTERNAL;
INSERT INTO bf.toasty VALUES (1, reverse('tok_' || repeat(md5('1'), 32768)));
INSERT INTO bf.toasty VALUES (2, reverse('tok_' || repeat(md5('2'), 32768)));
INSERT INTO bf.toasty VALUES (3, reverse('tok_' || repeat(md5('3'), 32768)));
INSERT INTO bf.toasty VALUES (4, 'tok_small'), (5, reverse('tok_small'));
SELECT (SELECT pg_relation_size(reltoastrelid) > 3000000 FROM pg_class WHERE oid = 'bf.toasty'::regclass) AS toasted,
       count(*) FILTER (WHERE pg_column_size(token) > 1000000) AS megabyte_values
FROM bf.toasty;
SELECT start_backfill('bf.toasty', 'token', 'token_plain', batch_size => 2) AS job_toasty \gset
SELECT wait_backfill(:job_toasty, '60 s') AS toasty_state;
SELECT rows_scanned, rows_converted, rows_skipped, conflicts FROM backfill_status WHERE job = :job_toasty;
SELECT id, length(token) AS length, left(token, 8) AS head,
       md5(token) = md5(CASE WHEN id <= 3 THEN 'tok_' || repeat(md5(id::text), 32768) ELSE 'tok_small' END) AS md5_ok
FROM bf.toasty ORDER BY id;

------------------------------------------------------------------------------------------------------
-- A codec function that fails on one value fails the job: the failing batch is rolled back whole, the
-- batches before it stay converted, and the job says where and why.
------------------------------------------------------------------------------------------------------
CREATE FUNCTION bf.upgrade(t text) RETURNS text LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
	IF t = 'boom' THEN
		RAISE EXCEPTION 'upgrade refuses "%"', t;
	END IF;
	RETURN 'v2:' || t;
END
$$;
SELECT create_codec('upgrade', 'fn:bf.upgrade', marker => 'v2:', detect => 'absent');
CREATE TABLE bf.fragile (id int PRIMARY KEY, payload text);
INSERT INTO bf.fragile SELECT g, CASE WHEN g = 55 THEN 'boom' ELSE 'item' || g END FROM generate_series(1, 100) g;
-- fixed batches of 10 (throttle => false), so the batch boundaries are known
SELECT start_backfill('bf.fragile', 'payload', 'upgrade', batch_size => 10, throttle => false) AS job_fragile \gset
SELECT wait_backfill(:job_fragile, '60 s') AS fragile_state;
SELECT state, rows_scanned, rows_converted, last_error, error_key, last_key, percent_done < 100 AS unfinished
FROM backfill_status WHERE job = :job_fragile;
-- ids 1..50 (five whole batches) converted; the batch 51..60 holding the bad row is not half-applied.
SELECT CASE WHEN id <= 50 THEN '1-50' WHEN id <= 60 THEN '51-60' ELSE '61-100' END AS ids,
       count(*) AS rows, count(*) FILTER (WHERE payload LIKE 'v2:%') AS converted,
       count(*) FILTER (WHERE is_legacy('upgrade', payload)) AS legacy
FROM bf.fragile GROUP BY 1 ORDER BY min(id);
-- A failed job cannot be resumed (the hint says what to do) nor paused; a new job after the fix can.
SELECT resume_backfill(:job_fragile);
SELECT pause_backfill(:job_fragile);
UPDATE bf.fragile SET payload = 'defused' WHERE payload = 'boom';
SELECT start_backfill('bf.fragile', 'payload', 'upgrade', batch_size => 10) AS job_fragile_fixed \gset
SELECT wait_backfill(:job_fragile_fixed, '60 s') AS fragile_fixed_state;
SELECT rows_scanned, rows_converted, rows_skipped, last_error FROM backfill_status WHERE job = :job_fragile_fixed;
SELECT count_legacy('bf.fragile', 'payload', 'upgrade') AS fragile_legacy,
       (SELECT payload FROM bf.fragile WHERE id = 55) AS row_55;

------------------------------------------------------------------------------------------------------
-- Operator controls on a rate-capped job (100 rows/s over 5000 rows: it runs for about a minute).
------------------------------------------------------------------------------------------------------
CREATE TABLE bf.slow (id int PRIMARY KEY, token text);
INSERT INTO bf.slow SELECT g, reverse('tok_' || g) FROM generate_series(1, 5000) g;
SELECT start_backfill('bf.slow', 'token', 'token_plain', batch_size => 50, max_rows_per_second => 100) AS job_slow \gset
SELECT max_rows_per_second FROM backfill_status WHERE job = :job_slow;
SELECT pause_backfill(:job_slow);
SELECT wait_backfill(:job_slow, '60 s') AS paused_state;
-- A paused job gives its worker back.
SELECT state, requested, rows_converted < 5000 AS unfinished, pid IS NULL AS worker_given_back
FROM backfill_status WHERE job = :job_slow;
-- Pausing a paused job is harmless.
SELECT pause_backfill(:job_slow);
-- One runner per column: a paused job still holds the column.
SELECT start_backfill('bf.slow', 'token', 'token_plain');
SELECT start_backfill('bf.slow', 'token', 'token_plain', throttle => false);
-- Cancel the paused job.
SELECT cancel_backfill(:job_slow);
SELECT wait_backfill(:job_slow, '60 s') AS cancelled_state;
SELECT state, requested, finished_at IS NOT NULL AS finished FROM backfill_status WHERE job = :job_slow;
-- A cancelled job can be neither cancelled again, nor paused, nor resumed.
SELECT cancel_backfill(:job_slow);
SELECT pause_backfill(:job_slow);
SELECT resume_backfill(:job_slow);

-- A second capped job: paused, resumed (it runs again), then cancelled while it runs.
SELECT start_backfill('bf.slow', 'token', 'token_plain', batch_size => 50, max_rows_per_second => 100) AS job_slow_2 \gset
SELECT pause_backfill(:job_slow_2);
SELECT wait_backfill(:job_slow_2, '60 s') AS paused_state;
SELECT resume_backfill(:job_slow_2);
SELECT requested AS request_after_resume FROM backfill_status WHERE job = :job_slow_2;
SELECT cancel_backfill(:job_slow_2);
SELECT wait_backfill(:job_slow_2, '60 s') AS cancelled_state;
-- The rest is converted by a job without a cap: together the three jobs converted every row once.
SELECT start_backfill('bf.slow', 'token', 'token_plain') AS job_slow_3 \gset
SELECT wait_backfill(:job_slow_3, '60 s') AS rest_state;
SELECT sum(rows_converted) AS converted_by_all_jobs, sum(conflicts) AS conflicts
FROM backfill_status WHERE job IN (:job_slow, :job_slow_2, :job_slow_3);
SELECT count_legacy('bf.slow', 'token', 'token_plain') AS slow_legacy;

-- Paused, then resumed to the end (300 rows at 100 rows/s).
CREATE TABLE bf.small (id int PRIMARY KEY, token text);
INSERT INTO bf.small SELECT g, reverse('tok_' || g) FROM generate_series(1, 300) g;
SELECT start_backfill('bf.small', 'token', 'token_plain', batch_size => 50, max_rows_per_second => 100) AS job_small \gset
SELECT pause_backfill(:job_small);
SELECT wait_backfill(:job_small, '60 s') AS paused_state;
SELECT resume_backfill(:job_small);
SELECT wait_backfill(:job_small, '60 s') AS resumed_state;
SELECT state, requested, rows_scanned, rows_converted, percent_done FROM backfill_status WHERE job = :job_small;
SELECT count_legacy('bf.small', 'token', 'token_plain') AS small_legacy;
-- A finished job cannot be paused, resumed or cancelled.
SELECT pause_backfill(:job_small);
SELECT resume_backfill(:job_small);
SELECT cancel_backfill(:job_small);

------------------------------------------------------------------------------------------------------
-- source_column: target := convert(source), filling a new NULL column from the old one.
------------------------------------------------------------------------------------------------------
CREATE TABLE bf.moved (id int PRIMARY KEY, old_token text, token text);
INSERT INTO bf.moved SELECT g, reverse('tok_' || g), NULL FROM generate_series(1, 400) g;
-- rows a dual write already filled (kept as written), and one whose old value is already in the new format
UPDATE bf.moved SET token = 'tok_dual' || id WHERE id % 100 = 0;
UPDATE bf.moved SET old_token = 'tok_' || id WHERE id = 7;
SELECT start_backfill('bf.moved', 'token', 'token_plain', source_column => 'old_token', batch_size => 150) AS job_moved \gset
SELECT wait_backfill(:job_moved, '60 s') AS moved_state;
SELECT source_column, rows_scanned, rows_converted, rows_skipped, conflicts FROM backfill_status WHERE job = :job_moved;
SELECT count(*) FILTER (WHERE token IS NULL) AS still_null,
       count(*) FILTER (WHERE token = 'tok_' || id) AS filled,
       count(*) FILTER (WHERE token = 'tok_dual' || id) AS dual_writes_kept,
       count(*) FILTER (WHERE old_token = CASE id WHEN 7 THEN 'tok_7' ELSE reverse('tok_' || id) END) AS sources_untouched
FROM bf.moved;

------------------------------------------------------------------------------------------------------
-- The NULL codec: a new required column gets its default, existing values are kept.
------------------------------------------------------------------------------------------------------
SELECT create_codec('default_status', 'const:active', detect => 'null');
CREATE TABLE bf.members (id int PRIMARY KEY, status text);
INSERT INTO bf.members SELECT g, CASE WHEN g % 20 = 0 THEN 'closed' END FROM generate_series(1, 400) g;
SELECT start_backfill('bf.members', 'status', 'default_status') AS job_members \gset
SELECT wait_backfill(:job_members, '60 s') AS members_state;
SELECT rows_scanned, rows_converted, rows_skipped, conflicts FROM backfill_status WHERE job = :job_members;
SELECT status, count(*) FROM bf.members GROUP BY status ORDER BY status NULLS FIRST;

------------------------------------------------------------------------------------------------------
-- A varchar column.
------------------------------------------------------------------------------------------------------
CREATE TABLE bf.vc (id int PRIMARY KEY, token varchar(64));
INSERT INTO bf.vc SELECT g, reverse('tok_' || g) FROM generate_series(1, 500) g;
SELECT start_backfill('bf.vc', 'token', 'token_plain', batch_size => 200) AS job_vc \gset
SELECT wait_backfill(:job_vc, '60 s') AS vc_state;
SELECT rows_scanned, rows_converted FROM backfill_status WHERE job = :job_vc;
SELECT count(*) FILTER (WHERE token = 'tok_' || id) AS vc_converted,
       (SELECT format_type(atttypid, atttypmod) FROM pg_attribute
        WHERE attrelid = 'bf.vc'::regclass AND attname = 'token') AS column_type
FROM bf.vc;

------------------------------------------------------------------------------------------------------
-- Roles: the table's owner runs a job, and its worker writes as that role; a member of the owner role
-- sees it; another role, even with UPDATE on the table, neither sees, steers nor starts one.
------------------------------------------------------------------------------------------------------
CREATE ROLE regress_mext_bf_owner LOGIN;
CREATE ROLE regress_mext_bf_other LOGIN;
CREATE ROLE regress_mext_bf_nologin NOLOGIN;
GRANT USAGE ON SCHEMA bf TO regress_mext_bf_owner, regress_mext_bf_other, regress_mext_bf_nologin;
CREATE TABLE bf.owned (id int PRIMARY KEY, token text, changed_by name);
CREATE FUNCTION bf.stamp() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	NEW.changed_by := current_user;
	RETURN NEW;
END
$$;
CREATE TRIGGER owned_stamp BEFORE UPDATE ON bf.owned FOR EACH ROW EXECUTE FUNCTION bf.stamp();
INSERT INTO bf.owned SELECT g, reverse('tok_' || g) FROM generate_series(1, 600) g;
ALTER TABLE bf.owned OWNER TO regress_mext_bf_owner;
GRANT regress_mext_bf_owner TO regress_mext_bf_nologin;
GRANT SELECT, UPDATE ON bf.owned TO regress_mext_bf_other;
CREATE TABLE bf.readonly (id int PRIMARY KEY, token text);
INSERT INTO bf.readonly VALUES (1, 'cba_kot');
GRANT SELECT ON bf.readonly TO regress_mext_bf_other;
ALTER TABLE bf.readonly OWNER TO regress_mext_bf_owner;

SET ROLE regress_mext_bf_owner;
SELECT start_backfill('bf.owned', 'token', 'token_plain', batch_size => 100) AS job_owned \gset
-- The owner sees its own job only.
SELECT count(*) AS jobs_seen_by_owner, bool_and(job = :job_owned) AS only_its_own FROM backfill_status;
RESET ROLE;

SET ROLE regress_mext_bf_other;
SELECT count(*) AS jobs_seen_by_other FROM backfill_status;
SELECT count(*) AS rows_seen_by_other FROM migration_ext.backfill_job;
SELECT pause_backfill(:job_owned);
SELECT cancel_backfill(:job_owned);
SELECT resume_backfill(:job_owned);
SELECT wait_backfill(:job_owned, '1 s');
-- ... nor can it forge a job row for another role
INSERT INTO migration_ext.backfill_job (relation, column_name, codec, key_columns, partitions, batch_size,
                                        throttle, owner)
VALUES ('bf.owned', 'token', 'token_plain', '{id}', '{bf.owned}', 10, true, 'regress_mext_bf_owner');
-- SELECT and UPDATE on the table do not allow a backfill: only its owner's roles may start one.
SELECT start_backfill('bf.owned', 'token', 'token_plain');
SELECT start_backfill('bf.readonly', 'token', 'token_plain');
RESET ROLE;

-- A member of the owner role sees the job, whether or not it can log in (no worker runs as it).
SET ROLE regress_mext_bf_nologin;
SELECT count(*) AS jobs_seen_by_member FROM backfill_status WHERE job = :job_owned;
SELECT start_backfill('bf.owned', 'token', 'token_plain');
RESET ROLE;

SELECT wait_backfill(:job_owned, '60 s') AS owned_state;
SELECT role, rows_scanned, rows_converted FROM backfill_status WHERE job = :job_owned;
SELECT count_legacy('bf.owned', 'token', 'token_plain') AS owned_legacy, changed_by, count(*)
FROM bf.owned GROUP BY changed_by;
-- The refused calls left no job and changed nothing.
SELECT count(*) AS readonly_jobs FROM backfill_status WHERE relation = 'bf.readonly'::regclass;
SELECT token AS readonly_token FROM bf.readonly;

------------------------------------------------------------------------------------------------------
-- Every error a caller can reach, with its message.
------------------------------------------------------------------------------------------------------
CREATE TABLE bf.shapes (id int PRIMARY KEY, code text NOT NULL UNIQUE, n int, token text);
CREATE VIEW bf.shapes_view AS SELECT * FROM bf.shapes;
-- missing table, column, codec
SELECT start_backfill('bf.no_such_table', 'token', 'token_plain');
SELECT start_backfill('bf.shapes', 'no_such_column', 'token_plain');
SELECT start_backfill('bf.shapes', 'token', 'no_such_codec');
-- a view, the key column itself
SELECT start_backfill('bf.shapes_view', 'token', 'token_plain');
CREATE TABLE bf.text_key (code text PRIMARY KEY, token text);
SELECT start_backfill('bf.text_key', 'code', 'token_plain');
-- a missing source column, a table move into the table itself
SELECT start_backfill('bf.shapes', 'token', 'token_plain', source_column => 'no_such_column');
SELECT start_backfill('bf.shapes', 'token', 'token_plain', target_relation => 'bf.shapes');
-- batch sizes and rate caps
SELECT start_backfill('bf.shapes', 'token', 'token_plain', batch_size => 0);
SELECT start_backfill('bf.shapes', 'token', 'token_plain', batch_size => -5);
SELECT start_backfill('bf.shapes', 'token', 'token_plain', max_rows_per_second => -1);
SELECT start_backfill('bf.shapes', 'token', 'token_plain', max_rows_per_second => 0);
-- NULL arguments
SELECT start_backfill(NULL::regclass, 'token', 'token_plain');
SELECT start_backfill('bf.shapes', 'token', NULL);
-- jobs that do not exist
SELECT pause_backfill(999999);
SELECT resume_backfill(999999);
SELECT cancel_backfill(999999);
SELECT wait_backfill(999999, '1 s');
SELECT wait_backfill(NULL, '1 s');
-- none of the refused calls left a job behind
SELECT count(*) AS jobs_for_refused_calls
FROM backfill_status WHERE relation IN ('bf.shapes'::regclass, 'bf.text_key'::regclass);

------------------------------------------------------------------------------------------------------
-- The worker compresses the full-page images it writes (migration_ext.compress_wal, on by default)
-- while wal_compression stays off for everyone else: the same job after a checkpoint writes clearly
-- less WAL with it than without it.
------------------------------------------------------------------------------------------------------
SHOW wal_compression;
-- (No autovacuum on the probe, none due elsewhere, and no space reuse: a vacuum's WAL falling into one
-- of the two windows would blur them.)
CREATE TABLE bf.wal_probe (id int PRIMARY KEY, token text, note text) WITH (autovacuum_enabled = off);
CREATE FUNCTION bf.wal_of_one_job() RETURNS numeric LANGUAGE plpgsql AS $$
BEGIN
	TRUNCATE bf.wal_probe;
	INSERT INTO bf.wal_probe SELECT g, reverse('tok_' || md5(g::text)), repeat('x', 60) FROM generate_series(1, 20000) g;
	RETURN pg_current_wal_lsn() - '0/0'::pg_lsn;
END $$;
VACUUM ANALYZE;
SELECT bf.wal_of_one_job() AS wal0 \gset
CHECKPOINT;
SELECT start_backfill('bf.wal_probe', 'token', 'token_plain', throttle => false, batch_size => 5000,
                      reuse_space => false) AS job_wal \gset
SELECT wait_backfill(:job_wal, '60 s') AS compressed_state;
SELECT pg_current_wal_lsn() - '0/0'::pg_lsn - :wal0 AS wal_compressed \gset
ALTER DATABASE :"DBNAME" SET migration_ext.compress_wal = off;
VACUUM ANALYZE;
SELECT bf.wal_of_one_job() AS wal0 \gset
CHECKPOINT;
SELECT start_backfill('bf.wal_probe', 'token', 'token_plain', throttle => false, batch_size => 5000,
                      reuse_space => false) AS job_wal \gset
SELECT wait_backfill(:job_wal, '60 s') AS uncompressed_state;
SELECT pg_current_wal_lsn() - '0/0'::pg_lsn - :wal0 AS wal_plain \gset
ALTER DATABASE :"DBNAME" RESET migration_ext.compress_wal;
SELECT :wal_compressed < 0.9 * :wal_plain AS compressed_job_writes_less_wal,
       count_legacy('bf.wal_probe', 'token', 'token_plain') AS legacy_left;
-- Only a superuser may turn it off, as only a superuser may change wal_compression.
SET ROLE regress_mext_bf_other;
SET migration_ext.compress_wal = off;
RESET ROLE;

------------------------------------------------------------------------------------------------------
-- Every job has ended; nothing is left running.
------------------------------------------------------------------------------------------------------
SELECT state, count(*) FROM backfill_status GROUP BY state ORDER BY state;

SET client_min_messages = warning;
DROP SCHEMA bf CASCADE;
RESET client_min_messages;
DROP EXTENSION migration_ext;
DROP ROLE regress_mext_bf_owner;
DROP ROLE regress_mext_bf_other;
DROP ROLE regress_mext_bf_nologin;
