------------------------------------------------------------------------------------------------------
-- Repair on read: repair_value(), the smart read that also writes a legacy value's conversion back to its
-- row, and the count of what reads converted (migration_status.repaired_by_reads).
------------------------------------------------------------------------------------------------------

-- A reader's repair: `value` converted by the migration's codec, returned in its own type whether or not
-- it is written back; the key values name its row by the migration's walk key (walk_key()), in that order.
-- The write-back happens in a subtransaction, after the point of no return only, without waiting for any
-- lock, where the column still holds `value`, and only for a caller that may update the column (see
-- repair_value.cpp). VOLATILE because it writes; PARALLEL SAFE because in parallel mode it only converts.
CREATE FUNCTION @extschema@.repair_value(migration text, value anyelement, VARIADIC key "any") RETURNS anyelement
	LANGUAGE c VOLATILE PARALLEL SAFE AS 'MODULE_PATHNAME', 'mext_repair_value';

-- Statement-level trigger on migration_ext.migration: backends drop the migrations they repair through,
-- so that a phase change reaches every reader at its next statement.
CREATE FUNCTION migration_ext.migration_changed() RETURNS trigger
	LANGUAGE c AS 'MODULE_PATHNAME', 'mext_migration_changed';

-- The values reads have converted and written back, per migration, as of the last flush: backends count
-- their committed write-backs in shared memory, which the launcher writes here every
-- migration_ext.resume_interval. Row-level security (see protocol) shows a migration's row to the roles
-- that see the migration.
CREATE TABLE migration_ext.read_repair (
	migration text PRIMARY KEY,
	repaired  bigint NOT NULL DEFAULT 0
);
GRANT SELECT ON migration_ext.read_repair TO PUBLIC;

-- The migration's committed write-backs still in shared memory; NULL when the library is not preloaded.
CREATE FUNCTION migration_ext.unflushed_repairs(migration text) RETURNS bigint
	LANGUAGE c VOLATILE STRICT AS 'MODULE_PATHNAME', 'mext_unflushed_repairs';

-- Moves this database's counters into migration_ext.read_repair when the calling transaction commits.
CREATE FUNCTION migration_ext.flush_read_repairs() RETURNS int
	LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'mext_flush_read_repairs';

-- Values reads converted and wrote back: the flushed count and what shared memory holds since. NULL when
-- nothing was ever counted (the library is not preloaded).
CREATE FUNCTION migration_ext.repaired_by_reads(migration text) RETURNS bigint
	LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp
	RETURN (SELECT CASE WHEN u.unflushed IS NULL THEN f.flushed ELSE coalesce(f.flushed, 0) + u.unflushed END
			FROM (SELECT (SELECT r.repaired FROM migration_ext.read_repair r
						  WHERE r.migration = repaired_by_reads.migration) AS flushed) f,
				 (SELECT migration_ext.unflushed_repairs(repaired_by_reads.migration) AS unflushed) u);

-- The rows of a table (its leaf partitions') as its statistics estimate them; NULL before the first
-- ANALYZE. Statistics only: no scan, no plan, nothing run as anyone.
CREATE FUNCTION migration_ext.estimated_rows(relation regclass) RETURNS double precision
	LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
	RETURN (SELECT sum(c.reltuples) FROM pg_class c
			WHERE c.relkind <> 'p' AND c.reltuples >= 0
			  AND c.oid IN (SELECT relation UNION ALL SELECT t.relid FROM pg_partition_tree(relation) t WHERE t.isleaf));
