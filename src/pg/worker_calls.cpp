#include "pg/worker_calls.hpp"

extern "C" {
#include "catalog/pg_type_d.h"
#include "executor/spi.h"
#include "utils/builtins.h"
}

#include "pg/settings.hpp"
#include "pg/spi_row.hpp"

namespace mext::pg
{

namespace
{

// Runs a query that must return exactly one row.
void one_row(const char *what, const char *sql, int nargs, Oid *types, Datum *values, const char *nulls)
{
	int rc = SPI_execute_with_args(sql, nargs, types, values, nulls, false, 1);
	if (rc != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "migration_ext: %s failed: %s", what, SPI_result_code_string(rc));
}

} // namespace

void worker_begin(int64 job, WorkerConfig *config)
{
	Oid types[1] = {INT8OID};
	Datum values[1] = {Int64GetDatum(job)};
	int rc = SPI_execute_with_args("SELECT * FROM migration_ext.worker_begin($1)", 1, types, values, nullptr, false, 1);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "migration_ext: worker_begin failed: %s", SPI_result_code_string(rc));
	config->found = SPI_processed == 1;
	if (!config->found)
		return;
	SpiRow row;
	config->batch_size = row.int4("batch_size");
	config->max_rows_per_second = row.is_null("max_rows_per_second") ? 0 : row.int4("max_rows_per_second");
	config->throttle = row.boolean("throttle");
	// An install script older than jobs in parts has no such column: then no job has parts.
	config->gathers = SPI_fnumber(SPI_tuptable->tupdesc, "gathers") > 0 && row.boolean("gathers");
}

void worker_gather(int64 job, char *action, std::size_t action_size)
{
	Oid types[1] = {INT8OID};
	Datum values[1] = {Int64GetDatum(job)};
	one_row("worker_gather", "SELECT migration_ext.worker_gather($1) AS action", 1, types, values, nullptr);
	SpiRow().text("action", action, action_size, "stop");
}

bool worker_hold_shards(int64 job)
{
	Oid types[1] = {INT8OID};
	Datum values[1] = {Int64GetDatum(job)};
	one_row("hold_shard_moves",
	        "SELECT coalesce(bool_and(migration_ext.hold_shard_moves(migration_ext.colocation_lock_id(b.relation), "
	        "true)), true) AS held FROM migration_ext.backfill_job b WHERE b.id = $1 AND b.distributed",
	        1, types, values, nullptr);
	return SpiRow().boolean("held");
}

bool worker_check_placements(int64 job)
{
	Oid types[1] = {INT8OID};
	Datum values[1] = {Int64GetDatum(job)};
	one_row("check_placements", "SELECT migration_ext.check_placements($1) AS same", 1, types, values, nullptr);
	return SpiRow().boolean("same");
}

void worker_note(int64 job, double rate, const char *reason, const char *warning, int batch_size)
{
	Oid types[5] = {INT8OID, FLOAT8OID, TEXTOID, TEXTOID, INT4OID};
	Datum values[5] = {Int64GetDatum(job), Float8GetDatum(rate), reason ? CStringGetTextDatum(reason) : Datum(0),
	                   warning ? CStringGetTextDatum(warning) : Datum(0), Int32GetDatum(batch_size)};
	const char nulls[5] = {' ', rate > 0 ? ' ' : 'n', reason ? ' ' : 'n', warning ? ' ' : 'n', ' '};
	SPI_execute_with_args("SELECT migration_ext.worker_note($1, $2, $3, $4, $5)", 5, types, values, nulls, false, 0);
}

void worker_poll(int64 job, Poll *poll)
{
	Oid types[1] = {INT8OID};
	Datum values[1] = {Int64GetDatum(job)};
	one_row("worker_poll", "SELECT * FROM migration_ext.worker_poll($1)", 1, types, values, nullptr);
	SpiRow row;
	row.text("requested", poll->requested, sizeof poll->requested, "");
	poll->throttle = row.boolean("throttle");
	poll->max_rows_per_second = row.is_null("max_rows_per_second") ? 0 : row.int4("max_rows_per_second");
	poll->batch_time_target_ms = row.number("batch_time_target_ms");
	poll->max_replica_lag_s = row.number("max_replica_lag_s");
	poll->max_active_backends = row.int4("max_active_backends");
	poll->max_wal_bytes_per_second = row.number("max_wal_bytes_per_second");
	poll->live_duty_cycle = row.number("live_duty_cycle");
	poll->wal_bytes = row.number("wal_bytes");
	poll->active_backends = row.int4("active_backends");
	poll->vacuum_on_table = row.boolean("vacuum_on_table");
	poll->transactions = row.number("transactions");

	int rc = SPI_execute("SELECT name, replay_bytes FROM migration_ext.standby_positions()", false, kMaxStandbys);
	poll->standbys = 0;
	if (rc != SPI_OK_SELECT)
		return;
	for (uint64 i = 0; i < SPI_processed && poll->standbys < kMaxStandbys; ++i) {
		int n = poll->standbys++;
		SpiRow standby(i);
		standby.text("name", poll->standby_name[n], sizeof poll->standby_name[n], "?");
		poll->standby_readable[n] = !standby.is_null("replay_bytes");
		poll->standby_replay[n] = standby.number("replay_bytes");
	}
}

void worker_failed(int64 job, const StepError &error, char *verdict, std::size_t verdict_size)
{
	Oid types[4] = {INT8OID, TEXTOID, TEXTOID, INT4OID};
	Datum values[4] = {Int64GetDatum(job), CStringGetTextDatum(error.sqlstate), CStringGetTextDatum(error.message),
	                   Int32GetDatum(kMaxLockRetries)};
	int rc = SPI_execute_with_args("SELECT migration_ext.worker_failed($1, $2, $3, $4)", 4, types, values, nullptr,
	                               false, 1);
	char *value = (rc == SPI_OK_SELECT && SPI_processed == 1)
	                  ? SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1)
	                  : nullptr;
	strlcpy(verdict, value ? value : "stop", verdict_size);
}

} // namespace mext::pg
