#include "pg/batch_step.hpp"

#include <cstring>

#include "core/keyset.hpp"
#include "pg/guard.hpp"
#include "pg/owner.hpp"
#include "pg/spi_row.hpp"

extern "C" {
#include "access/htup_details.h"
#include "catalog/pg_type_d.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"

PG_FUNCTION_INFO_V1(mext_worker_step);
}

namespace mext::pg
{

namespace
{

// Everything a step needs, read under the job row's lock: the job, and the catalog as it is now (the
// leaf's and the key's names quoted, the key's types as format_type() spells them; a key column that
// is gone leaves key_names shorter than key_count; the target column's type unless it is text). Identifiers are quoted
// here, so the statement does not depend on anybody's search_path.
constexpr const char *kJobQuery = R"SQL(
SELECT j.state, j.requested, j.throttle, j.codec, j.last_key, j.partition_index,
	coalesce(array_length(j.partitions, 1), 0) AS partition_count,
	coalesce(j.relation::text, j.partitions[j.partition_index]::text) AS table_name, c.relowner AS owner,
	lc.oid IS NOT NULL AS leaf_exists, quote_ident(ln.nspname) || '.' || quote_ident(lc.relname) AS leaf,
	lc.relowner AS leaf_owner, j.target_relation IS NOT NULL AS is_move, tc.oid IS NOT NULL AS target_exists,
	tc.relowner AS target_owner,
	quote_ident(j.column_name) AS target, quote_ident(j.source_column) AS source,
	quote_ident(coalesce(j.source_column, j.column_name)) AS move_source,
	(SELECT quote_ident(n.nspname) FROM pg_catalog.pg_extension e
	 JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'migration_ext') AS api,
	array_to_string(j.key_columns, ', ') AS key_list, coalesce(array_length(j.key_columns, 1), 0) AS key_count,
	k.names AS key_names, k.types AS key_types,
	(SELECT format_type(a.atttypid, a.atttypmod) FROM pg_catalog.pg_attribute a
	 WHERE a.attrelid = coalesce(tc.oid, lc.oid) AND a.attname = j.column_name AND a.attnum > 0 AND NOT a.attisdropped
	   AND a.atttypid <> 'pg_catalog.text'::pg_catalog.regtype) AS target_type,
	quote_ident(tn.nspname) || '.' || quote_ident(tc.relname) AS target_relation,
	lc.oid AS leaf_oid,
	CASE WHEN lc.reltuples >= 0 THEN lc.reltuples::float8
		 ELSE j.rows_estimated::float8 / greatest(coalesce(array_length(j.partitions, 1), 1), 1) END AS leaf_rows,
	coalesce((to_jsonb(j) ->> 'reuse_space')::boolean, false) AS reuse_space, to_jsonb(j) ? 'size_at_end' AS has_sizes,
	copied.targets AS copy_columns, copied.sources AS copy_sources, copied.types AS copy_types
FROM migration_ext.backfill_job j
LEFT JOIN pg_catalog.pg_class c ON c.oid = j.relation
LEFT JOIN pg_catalog.pg_class lc ON lc.oid = j.partitions[j.partition_index]
LEFT JOIN pg_catalog.pg_namespace ln ON ln.oid = lc.relnamespace
LEFT JOIN pg_catalog.pg_class tc ON tc.oid = j.target_relation
LEFT JOIN pg_catalog.pg_namespace tn ON tn.oid = tc.relnamespace
-- A table move's columns: a move migration's map {V2 column: V1 column}, else the columns of the same name.
-- (Read through to_jsonb(): a job of an install not yet updated to a version with column_map keeps running.)
LEFT JOIN LATERAL (
	SELECT pg_catalog.to_jsonb(x) -> 'column_map' AS column_map FROM migration_ext.migration x WHERE x.name = j.migration
) mg ON true
LEFT JOIN LATERAL (
	SELECT array_agg(quote_ident(a.attname) ORDER BY a.attnum) AS targets,
		   array_agg(quote_ident(coalesce(mg.column_map ->> a.attname::text, a.attname)) ORDER BY a.attnum) AS sources,
		   array_agg(format_type(a.atttypid, a.atttypmod) ORDER BY a.attnum) AS types
	FROM pg_catalog.pg_attribute a
	WHERE a.attrelid = tc.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
	  AND (a.attname = j.column_name
		   OR (mg.column_map IS NULL AND EXISTS (SELECT FROM pg_catalog.pg_attribute v WHERE v.attrelid = lc.oid
												  AND v.attname = a.attname AND v.attnum > 0 AND NOT v.attisdropped))
		   OR (mg.column_map ->> a.attname::text) IS NOT NULL)
) copied ON true
LEFT JOIN LATERAL (
	SELECT array_agg(quote_ident(u.k) ORDER BY u.o) AS names,
		   array_agg(format_type(a.atttypid, a.atttypmod) ORDER BY u.o) AS types
	FROM unnest(j.key_columns) WITH ORDINALITY u(k, o)
	JOIN pg_catalog.pg_attribute a ON a.attrelid = lc.oid AND a.attname = u.k AND a.attnum > 0 AND NOT a.attisdropped
) k ON true
WHERE j.id = $1
FOR UPDATE OF j
)SQL";

// The checkpoint, in the batch's transaction: a crash loses both or neither.
constexpr const char *kCheckpoint = R"SQL(
UPDATE migration_ext.backfill_job b SET
	last_key = $2, rows_scanned = b.rows_scanned + $3, rows_converted = b.rows_converted + $4,
	rows_skipped = b.rows_skipped + ($3 - $5), conflicts = b.conflicts + $6, batches = b.batches + 1,
	current_batch_size = $7, rate = coalesce($8, b.rate), lock_retries = 0,
	state = CASE WHEN b.state IN ('queued', 'paused', 'interrupted') THEN 'running' ELSE b.state END,
	updated_at = now()
WHERE b.id = $1
)SQL";

// Plans kept for the life of the process (a worker runs one job): prepared once, replanned by
// PostgreSQL's plan cache when what they read changes.
SPIPlanPtr job_plan;
SPIPlanPtr checkpoint_plan;
// The batch statement of the current leaf and key, prepared as the table's owner.
struct BatchPlan {
	char *sql = nullptr; // in TopMemoryContext
	Oid owner = InvalidOid;
	SPIPlanPtr plan = nullptr;
};
BatchPlan batch_plan;

SPIPlanPtr kept_plan(SPIPlanPtr *slot, const char *sql, int nargs, Oid *types)
{
	if (*slot == nullptr) {
		SPIPlanPtr plan = SPI_prepare(sql, nargs, types);
		if (plan == nullptr)
			elog(ERROR, "migration_ext: could not prepare a worker statement: %s", SPI_result_code_string(SPI_result));
		if (SPI_keepplan(plan) != 0)
			elog(ERROR, "migration_ext: could not keep a worker statement");
		*slot = plan;
	}
	return *slot;
}

void update_job(int64 job, const char *set_clause)
{
	char sql[512];
	snprintf(sql, sizeof sql, "UPDATE migration_ext.backfill_job b SET %s, updated_at = now() WHERE b.id = $1",
	         set_clause);
	Oid types[1] = {INT8OID};
	Datum values[1] = {Int64GetDatum(job)};
	if (SPI_execute_with_args(sql, 1, types, values, nullptr, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "migration_ext: could not update backfill job %lld", static_cast<long long>(job));
}

char **text_items(Datum array, int *count)
{
	Datum *items;
	bool *nulls;
	deconstruct_array(DatumGetArrayTypeP(array), TEXTOID, -1, false, TYPALIGN_INT, &items, &nulls, count);
	char **out = static_cast<char **>(palloc(sizeof(char *) * (*count + 1)));
	for (int i = 0; i < *count; ++i)
		out[i] = nulls[i] ? pstrdup("") : TextDatumGetCString(items[i]);
	return out;
}

// What the batch statement is built from, as plain C data (it crosses into C++ below).
struct Shape {
	const char *leaf;
	const char *target;
	const char *source;      // NULL: the column converts in place
	const char *move_source; // a table move's column in V1
	const char *api;
	const char *target_relation; // NULL: not a table move
	const char *target_type;     // NULL: the target column is text
	int keys;
	char **key_names;
	char **key_types;
	int copy_count;
	char **copy_columns;
	char **copy_sources;
	char **copy_types;
	bool after_last_key;
};

char *palloc_copy(const std::string &sql)
{
	char *copy = nullptr;
	pg_call([&] { copy = MemoryContextStrdup(TopMemoryContext, sql.c_str()); });
	return copy;
}

// The statement, in TopMemoryContext. C++ exceptions end here (guard), never crossing a PostgreSQL frame.
char *build_statement(const Shape &s)
{
	return guard([&] {
		BatchShape shape;
		shape.relation = s.leaf;
		for (int i = 0; i < s.keys; ++i)
			shape.key.push_back(KeyColumn{s.key_names[i], s.key_types[i]});
		shape.api_schema = s.api;
		if (s.target_type)
			shape.target_type = std::string(s.target_type);
		if (!s.target_relation) {
			shape.target = s.target;
			if (s.source)
				shape.source = std::string(s.source);
			return palloc_copy(batch_statement(shape, s.after_last_key));
		}
		CopyShape copy;
		shape.target = s.target;
		shape.source = std::string(s.move_source);
		copy.batch = shape;
		copy.target_relation = s.target_relation;
		for (int i = 0; i < s.copy_count; ++i)
			copy.columns.push_back(CopyColumn{s.copy_columns[i], s.copy_sources[i], s.copy_types[i]});
		return palloc_copy(copy_statement(copy, s.after_last_key));
	});
}

// Is the table a Citus reference table (its rows on every node, changed only through Citus)? Citus's catalog
// exists only with Citus.
bool is_citus_reference(Oid table)
{
	if (SPI_execute("SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'citus'", true, 1) != SPI_OK_SELECT ||
	    SPI_processed == 0)
		return false;
	Oid types[1] = {OIDOID};
	Datum values[1] = {ObjectIdGetDatum(table)};
	return SPI_execute_with_args("SELECT 1 FROM pg_catalog.pg_dist_partition p WHERE p.logicalrelid = $1 "
	                             "AND p.partmethod = 'n' AND p.repmodel = 't'",
	                             1, types, values, nullptr, true, 1) == SPI_OK_SELECT &&
	       SPI_processed == 1;
}

// A batch of a Citus reference table (see reference_read_statement()): the read, as the owner, then the
// compare-and-set write of the legacy rows it locked. Returns what batch_statement() returns.
struct Counts {
	long scanned, legacy_seen, converted;
	Datum last_key;
	bool last_key_null;
};
Counts reference_batch(const Shape &s, Oid owner, Datum codec, int batch_size, Datum last_key)
{
	char *read_sql = nullptr, *write_sql = nullptr;
	guard([&] {
		BatchShape shape;
		shape.relation = s.leaf;
		for (int i = 0; i < s.keys; ++i)
			shape.key.push_back(KeyColumn{s.key_names[i], s.key_types[i]});
		shape.api_schema = s.api;
		shape.target = s.target;
		if (s.target_type)
			shape.target_type = std::string(s.target_type);
		read_sql = palloc_copy(reference_read_statement(shape, s.after_last_key));
		write_sql = palloc_copy(reference_write_statement(shape));
		return 0;
	});
	Counts counts{};
	Oid read_types[3] = {TEXTOID, INT4OID, TEXTARRAYOID};
	Datum read_values[3] = {codec, Int32GetDatum(batch_size), last_key};
	const char read_nulls[3] = {' ', ' ', s.after_last_key ? ' ' : 'n'};
	RoleSwitch saved;
	begin_as_role(owner, "pg_catalog, pg_temp", &saved);
	if (SPI_execute_with_args(read_sql, 3, read_types, read_values, read_nulls, false, 1) != SPI_OK_SELECT ||
	    SPI_processed != 1)
		elog(ERROR, "migration_ext: the batch read of a reference table returned no result");
	SpiRow read;
	bool isnull;
	counts.scanned = read.int8("scanned");
	counts.legacy_seen = read.int8("legacy_seen");
	counts.last_key = read.copy("last_key", &counts.last_key_null);
	Datum write_values[3] = {read.copy("keys", &isnull), read.copy("olds", &isnull), read.copy("news", &isnull)};
	if (counts.legacy_seen > 0) {
		Oid write_types[3] = {TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID};
		if (SPI_execute_with_args(write_sql, 3, write_types, write_values, nullptr, false, 0) !=
		    SPI_OK_UPDATE_RETURNING)
			elog(ERROR, "migration_ext: the batch write of a reference table failed");
		counts.converted = static_cast<long>(SPI_processed);
	}
	end_as_role(saved);
	pfree(read_sql);
	pfree(write_sql);
	return counts;
}

// The plan of `sql` for `owner`, prepared as the owner (restricted): planning may call the key type's
// support functions, which are the table owner's to run, not the worker's.
SPIPlanPtr batch_plan_for(char *sql, Oid owner)
{
	if (batch_plan.plan && batch_plan.owner == owner && std::strcmp(batch_plan.sql, sql) == 0) {
		pfree(sql);
		return batch_plan.plan;
	}
	if (batch_plan.plan) {
		SPI_freeplan(batch_plan.plan);
		pfree(batch_plan.sql);
		batch_plan = BatchPlan{};
	}
	Oid types[3] = {TEXTOID, INT4OID, TEXTARRAYOID};
	RoleSwitch saved;
	begin_as_role(owner, "pg_catalog, pg_temp", &saved);
	SPIPlanPtr plan = SPI_prepare(sql, 3, types);
	if (plan == nullptr)
		elog(ERROR, "migration_ext: could not prepare the batch: %s", SPI_result_code_string(SPI_result));
	end_as_role(saved);
	if (SPI_keepplan(plan) != 0)
		elog(ERROR, "migration_ext: could not keep the batch statement");
	batch_plan = BatchPlan{sql, owner, plan};
	return plan;
}

// The step itself (see run_step).
void step(int64 job, int batch_size, double rate, StepResult *result, bool hold_table_end)
{
	Oid job_types[1] = {INT8OID};
	Datum job_values[1] = {Int64GetDatum(job)};
	if (SPI_execute_plan(kept_plan(&job_plan, kJobQuery, 1, job_types), job_values, nullptr, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "migration_ext: could not read backfill job %lld", static_cast<long long>(job));
	if (SPI_processed != 1)
		return;
	SpiRow row;
	char *state = row.text("state");
	char *requested = row.text("requested");
	if (std::strcmp(state, "done") == 0 || std::strcmp(state, "failed") == 0 || std::strcmp(state, "cancelled") == 0)
		return;
	if (requested && std::strcmp(requested, "cancel") == 0) {
		update_job(job, "state = 'cancelled', requested = NULL, finished_at = now(), throttle_reason = NULL");
		return;
	}
	// A paused job gives its worker (and its slot) back; resume_backfill() starts a new one.
	if (requested && std::strcmp(requested, "pause") == 0) {
		update_job(job, "state = 'paused', throttle_reason = 'paused by operator', pid = NULL");
		return;
	}
	if (!row.boolean("leaf_exists"))
		ereport(ERROR, (errcode(ERRCODE_UNDEFINED_TABLE),
		                errmsg("table %s was dropped during the backfill", row.text("table_name"))));
	// A move whose new table is gone must not turn into a conversion of the old table in place: the
	// statement below would be the in-place one, rewriting the rows the old readers still read.
	if (row.boolean("is_move") && !row.boolean("target_exists"))
		ereport(ERROR, (errcode(ERRCODE_UNDEFINED_TABLE),
		                errmsg("the table that %s moves to was dropped during the backfill", row.text("table_name")),
		                errhint("Create the new table again and start a new backfill: copied rows are skipped.")));
	// start_backfill() refuses a partition or a move's target that another role owns: the batch runs as
	// the job's table's owner, and the other owner's triggers, defaults and index expressions would run
	// with those rights. An owner changed since (ALTER TABLE ... OWNER TO) is refused the same way here.
	Oid owner = row.oid("owner");
	const char *foreign_table = row.oid("leaf_owner") != owner ? row.text("leaf")
	                            : row.boolean("is_move") && row.oid("target_owner") != owner
	                                ? row.text("target_relation")
	                                : nullptr;
	if (foreign_table)
		ereport(ERROR, (errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
		                errmsg("table %s is no longer owned by the owner of %s", foreign_table, row.text("table_name")),
		                errdetail("A batch runs as the owner of %s; a table another role owns would run its code "
		                          "with that owner's rights.",
		                          row.text("table_name")),
		                errhint("Give both tables one owner (ALTER TABLE ... OWNER TO), then start a new backfill.")));

	Shape shape{};
	shape.leaf = row.text("leaf");
	shape.target = row.text("target");
	shape.source = row.text("source");
	shape.move_source = row.text("move_source");
	shape.api = row.text("api");
	shape.target_relation = row.text("target_relation");
	shape.target_type = row.text("target_type");
	int key_count = row.int4("key_count");
	bool isnull;
	Datum names = row.copy("key_names", &isnull);
	if (!isnull)
		shape.key_names = text_items(names, &shape.keys);
	Datum types = row.copy("key_types", &isnull);
	int type_count = 0;
	char **key_types = isnull ? nullptr : text_items(types, &type_count);
	if (shape.keys != key_count || type_count != key_count || key_count == 0)
		ereport(ERROR, (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
		                errmsg("the key (%s) of %s changed during the backfill", row.text("key_list"), shape.leaf)));
	shape.key_types = key_types;
	if (shape.target_relation) {
		Datum columns = row.copy("copy_columns", &isnull);
		if (isnull)
			ereport(ERROR, (errcode(ERRCODE_UNDEFINED_TABLE),
			                errmsg("table %s has no column in common with %s", shape.target_relation, shape.leaf)));
		shape.copy_columns = text_items(columns, &shape.copy_count);
		int count = 0;
		shape.copy_sources = text_items(row.copy("copy_sources", &isnull), &count);
		shape.copy_types = text_items(row.copy("copy_types", &isnull), &count);
	}
	Datum last_key = row.copy("last_key", &isnull);
	shape.after_last_key = !isnull;
	Datum codec = row.copy("codec", &isnull);
	bool throttle = row.boolean("throttle");
	int partition_index = row.int4("partition_index");
	int partition_count = row.int4("partition_count");
	result->table = row.oid("leaf_oid");
	result->owner = owner;
	result->table_rows = row.number("leaf_rows");
	result->reuse_space = row.boolean("reuse_space") && !row.boolean("is_move");
	// The install script of an older version lacks the columns of space reuse (a worker of this library
	// may run on it until ALTER EXTENSION ... UPDATE): then the job's size is not recorded.
	bool has_sizes = row.boolean("has_sizes");

	// The batch, as the owner of the job's table (a partition's batch too): what the starter was allowed
	// to act as, whoever started it.
	long scanned, legacy_seen;
	Datum next_key;
	bool next_key_null;
	if (!shape.target_relation && !shape.source && is_citus_reference(result->table)) {
		Counts counts = reference_batch(shape, owner, codec, batch_size, last_key);
		scanned = counts.scanned;
		legacy_seen = counts.legacy_seen;
		result->converted = counts.converted;
		result->conflicts = legacy_seen - counts.converted; // a row changed between the read and the write
		next_key = counts.last_key;
		next_key_null = counts.last_key_null;
	} else {
		SPIPlanPtr plan = batch_plan_for(build_statement(shape), owner);
		Datum batch_values[3] = {codec, Int32GetDatum(batch_size), last_key};
		const char batch_nulls[3] = {' ', ' ', shape.after_last_key ? ' ' : 'n'};
		RoleSwitch saved;
		begin_as_role(owner, "pg_catalog, pg_temp", &saved);
		int rc = SPI_execute_plan(plan, batch_values, batch_nulls, false, 1);
		if (rc < 0 || SPI_processed != 1)
			elog(ERROR, "migration_ext: the batch returned no result (%s)", SPI_result_code_string(rc));
		end_as_role(saved);
		SpiRow batch;
		scanned = batch.int8("scanned");
		legacy_seen = batch.int8("legacy_seen");
		result->converted = batch.int8("converted");
		result->conflicts = batch.int8("conflicts");
		next_key = batch.copy("last_key", &isnull);
		next_key_null = isnull;
	}
	result->scanned = scanned;

	if (throttle && result->converted > 0) {
		// Still holding the batch's row locks: is a live session waiting on them right now?
		if (SPI_execute("SELECT count(*)::int AS blocked FROM pg_catalog.pg_stat_activity a "
		                "WHERE pg_catalog.pg_backend_pid() = ANY (pg_catalog.pg_blocking_pids(a.pid))",
		                true, 1) == SPI_OK_SELECT &&
		    SPI_processed == 1)
			result->blocked = SpiRow().int4("blocked");
	}
	strlcpy(result->action, "continue", sizeof result->action);
	if (scanned == 0) {
		if (hold_table_end) {
			strlcpy(result->action, "table_end", sizeof result->action);
		} else if (partition_index < partition_count) {
			update_job(job, "partition_index = b.partition_index + 1, last_key = NULL");
		} else {
			update_job(job, has_sizes
			                    ? "state = 'done', finished_at = now(), throttle_reason = NULL, requested = NULL, "
			                      "size_at_end = migration_ext.tables_size(b.partitions)"
			                    : "state = 'done', finished_at = now(), throttle_reason = NULL, requested = NULL");
			strlcpy(result->action, "stop", sizeof result->action);
		}
		return;
	}
	Oid checkpoint_types[8] = {INT8OID, TEXTARRAYOID, INT8OID, INT8OID, INT8OID, INT8OID, INT4OID, FLOAT8OID};
	Datum checkpoint_values[8] = {Int64GetDatum(job),         next_key,
	                              Int64GetDatum(scanned),     Int64GetDatum(result->converted),
	                              Int64GetDatum(legacy_seen), Int64GetDatum(result->conflicts),
	                              Int32GetDatum(batch_size),  Float8GetDatum(rate)};
	const char checkpoint_nulls[8] = {' ', next_key_null ? 'n' : ' ', ' ', ' ', ' ', ' ', ' ', rate > 0 ? ' ' : 'n'};
	if (SPI_execute_plan(kept_plan(&checkpoint_plan, kCheckpoint, 8, checkpoint_types), checkpoint_values,
	                     checkpoint_nulls, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "migration_ext: could not write the checkpoint of backfill job %lld", static_cast<long long>(job));
}

} // namespace

void run_step(int64 job, int batch_size, double rate, StepResult *result, bool hold_table_end)
{
	*result = StepResult{};
	strlcpy(result->action, "stop", sizeof result->action);
	// Built-in names only, whoever calls: nothing on the caller's search_path takes part.
	int guc_level = NewGUCNestLevel();
	(void)set_config_option("search_path", "pg_catalog, pg_temp", PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE, true, 0,
	                        false);
	step(job, batch_size, rate, result, hold_table_end);
	AtEOXact_GUC(true, guc_level);
}

} // namespace mext::pg

// worker_step(job, batch_size, rate): one step as SQL (action, scanned, converted, conflicts, blocked).
// Not executable by PUBLIC; checked again here, as it writes the job's bookkeeping as the caller.
Datum mext_worker_step(PG_FUNCTION_ARGS)
{
	if (!superuser())
		ereport(ERROR, (errcode(ERRCODE_INSUFFICIENT_PRIVILEGE), errmsg("permission denied for function worker_step"),
		                errdetail("Only migration_ext's backfill workers call it.")));
	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		ereport(ERROR, (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED), errmsg("worker_step: NULL job or batch size")));
	TupleDesc result_desc;
	if (get_call_result_type(fcinfo, nullptr, &result_desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "worker_step must return a record");
	BlessTupleDesc(result_desc);
	mext::pg::StepResult step;
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	mext::pg::run_step(PG_GETARG_INT64(0), PG_GETARG_INT32(1), PG_ARGISNULL(2) ? 0 : PG_GETARG_FLOAT8(2), &step);
	SPI_finish();
	Datum values[5] = {CStringGetTextDatum(step.action), Int64GetDatum(step.scanned), Int64GetDatum(step.converted),
	                   Int64GetDatum(step.conflicts), Int32GetDatum(step.blocked)};
	bool nulls[5] = {false, false, false, false, false};
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(result_desc, values, nulls)));
}
