-- is_legacy() and migrate_value() on a distributed table's column, in queries through the coordinator
-- that run on the workers' shards; a backfill Citus tables cannot take is refused, saying why.
\set SHOW_CONTEXT never
SELECT create_codec('tok', 'reverse', marker => 'tok_');
CREATE TABLE accounts (id bigint PRIMARY KEY, token text);
SELECT create_distributed_table('accounts', 'id');
INSERT INTO accounts SELECT g, CASE WHEN g % 4 = 0 THEN 'tok_' || g ELSE reverse('tok_' || g) END
FROM generate_series(1, 200) g;
-- Spread over both workers.
SELECT count(DISTINCT nodeport) AS nodes FROM citus_shards WHERE table_name = 'accounts'::regclass;
SELECT count(*) FILTER (WHERE is_legacy('tok', token)) AS legacy,
	   count(*) FILTER (WHERE NOT is_legacy('tok', token)) AS converted,
	   count(*) FILTER (WHERE migrate_value('tok', token) = 'tok_' || id) AS readable
FROM accounts;
SELECT id, token, migrate_value('tok', token) FROM accounts WHERE id IN (3, 4) ORDER BY id;
SELECT count_legacy('accounts', 'token', 'tok');
SELECT * FROM audit_column('accounts', 'token', 'tok');

-- A reference table: a copy on every node.
CREATE TABLE codes (code text PRIMARY KEY);
SELECT create_reference_table('codes');
INSERT INTO codes VALUES (reverse('tok_a')), ('tok_b');
SELECT code, is_legacy('tok', code), migrate_value('tok', code) FROM codes ORDER BY code;

-- A reference table is converted through the coordinator: each batch locks its rows on every copy, converts
-- them there, and writes them back to every copy where they still hold what was read (a distributed
-- table's backfill: distributed_backfill).
CREATE TABLE labels (id int PRIMARY KEY, label text);
SELECT create_reference_table('labels');
INSERT INTO labels SELECT g, CASE WHEN g % 5 = 0 THEN 'tok_' || g ELSE reverse('tok_' || g) END
FROM generate_series(1, 300) g;
SELECT start_backfill('labels', 'label', 'tok', batch_size => 40) AS job \gset
SELECT wait_backfill(:job, '60 s');
SELECT state, rows_scanned, rows_converted, rows_skipped, conflicts, batches > 1 AS batched, reuse_space
FROM backfill_status WHERE job = :job;
SELECT count(*) AS copies, sum(result::int) AS legacy_left
FROM run_command_on_placements('labels', $$SELECT count(*) FROM %s WHERE left(label, 4) <> 'tok_'$$);
SELECT count(*) FILTER (WHERE label = 'tok_' || id) AS converted FROM labels;
\set VERBOSITY default
SELECT start_backfill('labels', 'label', 'tok', source_column => 'id');
-- Its key is the column itself: refused, as on one node.
SELECT start_backfill('codes', 'code', 'tok');
CREATE TABLE accounts_v2 (id bigint PRIMARY KEY, token text);
SELECT create_distributed_table('accounts_v2', 'id', colocate_with => 'accounts');
SELECT start_backfill('accounts', 'token', 'tok', target_relation => 'accounts_v2');
SELECT start_backfill('accounts', 'token', 'tok', parallel => 0);
SELECT count(*) AS jobs FROM migration_ext.backfill_job WHERE relation IN ('accounts'::regclass, 'codes'::regclass);

-- A plain table beside them backfills as ever.
CREATE TABLE plain (id bigint PRIMARY KEY, token text);
INSERT INTO plain SELECT g, reverse('tok_' || g) FROM generate_series(1, 50) g;
SELECT start_backfill('plain', 'token', 'tok') AS job \gset
SELECT wait_backfill(:job, '60 s');
SELECT count_legacy('plain', 'token', 'tok');

DROP TABLE accounts, accounts_v2, codes, labels, plain;
SELECT drop_codec('tok');
