#include "pg/settings.hpp"

#include "core/defaults.hpp"
#include "pg/postgres_c.hpp"

extern "C" {
#include "utils/builtins.h"
#include "utils/guc.h"

PG_FUNCTION_INFO_V1(mext_setting);

#include <climits>
}

namespace mext::pg
{

int lock_timeout_ms = defaults::lock_timeout_ms;
int resume_interval_seconds = defaults::resume_interval_s;
bool compress_wal = true;
double worker_cpu_slice_ms = defaults::worker_cpu_slice_ms;
bool wait_progress = true;
int max_jobs = defaults::max_jobs;
int ddl_lock_timeout_ms = defaults::ddl_lock_timeout_ms;
int max_jobs_per_role = defaults::max_jobs_per_role;
int repairs_per_transaction = defaults::repairs_per_transaction;
double reclaim_every = defaults::reclaim_every;

namespace
{
int batch_size = defaults::batch_size;
int unthrottled_batch_size = defaults::unthrottled_batch_size;
int settle_wait_ms = defaults::settle_wait_ms;
int batch_time_target_ms = defaults::batch_time_target_ms;
int max_replica_lag_ms = defaults::max_replica_lag_ms;
int max_active_backends = defaults::max_active_backends;
int max_wal_bytes_per_second = defaults::max_wal_bytes_per_second;
double live_duty_cycle = defaults::live_duty_cycle;
bool reuse_space = defaults::reuse_space;
} // namespace

void register_settings()
{
	DefineCustomIntVariable("migration_ext.batch_size", "First batch size of a throttled backfill that is given none.",
	                        nullptr, &batch_size, defaults::batch_size, 1, defaults::max_batch, PGC_USERSET, 0, nullptr,
	                        nullptr, nullptr);
	DefineCustomIntVariable("migration_ext.unthrottled_batch_size",
	                        "Batch size of a backfill started with throttle => false and no batch_size.", nullptr,
	                        &unthrottled_batch_size, defaults::unthrottled_batch_size, 1, defaults::max_batch,
	                        PGC_USERSET, 0, nullptr, nullptr, nullptr);
	DefineCustomIntVariable("migration_ext.batch_time_target",
	                        "Time a backfill batch should take; batches are sized to it.", nullptr,
	                        &batch_time_target_ms, defaults::batch_time_target_ms, 1, 60000, PGC_USERSET, GUC_UNIT_MS,
	                        nullptr, nullptr, nullptr);
	DefineCustomIntVariable("migration_ext.max_replica_lag",
	                        "Replica replay lag above which a backfill pauses (0: ignore); it resumes below half.",
	                        nullptr, &max_replica_lag_ms, defaults::max_replica_lag_ms, 0, 3600000, PGC_USERSET,
	                        GUC_UNIT_MS, nullptr, nullptr, nullptr);
	DefineCustomIntVariable("migration_ext.max_active_backends",
	                        "Active client backends above which a backfill pauses (0: ignore).", nullptr,
	                        &max_active_backends, defaults::max_active_backends, 0, 100000, PGC_USERSET, 0, nullptr,
	                        nullptr, nullptr);
	DefineCustomIntVariable("migration_ext.max_wal_bytes_per_second",
	                        "WAL generation rate above which a backfill pauses (0: no cap).", nullptr,
	                        &max_wal_bytes_per_second, defaults::max_wal_bytes_per_second, 0, INT_MAX, PGC_USERSET, 0,
	                        nullptr, nullptr, nullptr);
	DefineCustomRealVariable("migration_ext.live_duty_cycle",
	                         "Fraction of the time a backfill works while other transactions commit (1: no sharing).",
	                         "With a live workload a job runs short batches and rests between them, so the "
	                         "application keeps the CPU and the disk for the rest of the time.",
	                         &live_duty_cycle, defaults::live_duty_cycle, 0.01, 1, PGC_USERSET, 0, nullptr, nullptr,
	                         nullptr);
	DefineCustomIntVariable("migration_ext.lock_timeout",
	                        "lock_timeout of each backfill batch; a timed-out batch is retried smaller.", nullptr,
	                        &lock_timeout_ms, defaults::lock_timeout_ms, 1, 600000, PGC_SIGHUP, GUC_UNIT_MS, nullptr,
	                        nullptr, nullptr);
	DefineCustomIntVariable("migration_ext.resume_interval",
	                        "Seconds between the launcher's looks for interrupted backfill jobs (0: only at start).",
	                        nullptr, &resume_interval_seconds, defaults::resume_interval_s, 0, 86400, PGC_SIGHUP,
	                        GUC_UNIT_S, nullptr, nullptr, nullptr);
	DefineCustomBoolVariable("migration_ext.compress_wal",
	                         "Backfill workers compress the full-page images they write to WAL, whatever "
	                         "wal_compression says for other sessions.",
	                         nullptr, &compress_wal, true, PGC_SUSET, 0, nullptr, nullptr, nullptr);
	DefineCustomRealVariable("migration_ext.worker_cpu_slice",
	                         "Running time after which a backfill worker yields its CPU to waiting processes "
	                         "(0: never).",
	                         "A woken backend on the worker's CPU otherwise may wait for the scheduler's next "
	                         "tick, several milliseconds.",
	                         &worker_cpu_slice_ms, defaults::worker_cpu_slice_ms, 0, 1000, PGC_SIGHUP, GUC_UNIT_MS,
	                         nullptr, nullptr, nullptr);
	DefineCustomIntVariable("migration_ext.ddl_lock_timeout",
	                        "lock_timeout of each strong lock the migration protocol takes; a timed-out statement is "
	                        "retried with backoff.",
	                        "So that ALTER TABLE or DROP TRIGGER never keeps the application queued behind it for "
	                        "longer than this.",
	                        &ddl_lock_timeout_ms, defaults::ddl_lock_timeout_ms, 1, 60000, PGC_USERSET, GUC_UNIT_MS,
	                        nullptr, nullptr, nullptr);
	DefineCustomIntVariable("migration_ext.settle_wait",
	                        "How long the point of no return waits for standbys to replay past the reader swaps' "
	                        "commit.",
	                        nullptr, &settle_wait_ms, defaults::settle_wait_ms, 0, 3600000, PGC_USERSET, GUC_UNIT_MS,
	                        nullptr, nullptr, nullptr);
	DefineCustomBoolVariable("migration_ext.wait_progress",
	                         "wait_backfill() and await_backfill() report progress as a NOTICE every few seconds "
	                         "unless told otherwise.",
	                         nullptr, &wait_progress, true, PGC_USERSET, 0, nullptr, nullptr, nullptr);
	DefineCustomIntVariable("migration_ext.max_jobs",
	                        "Backfill workers that may run at once in the whole cluster; a job beyond it waits.",
	                        "start_backfill() and resume_backfill() refuse a job at the limit; the resumer "
	                        "leaves such a job queued, with the reason in backfill_status.",
	                        &max_jobs, defaults::max_jobs, 1, 1024, PGC_SIGHUP, 0, nullptr, nullptr, nullptr);
	DefineCustomIntVariable("migration_ext.max_jobs_per_role",
	                        "Backfill workers one role's jobs may run at once in a database (0: no limit).", nullptr,
	                        &max_jobs_per_role, defaults::max_jobs_per_role, 0, 1024, PGC_SIGHUP, 0, nullptr, nullptr,
	                        nullptr);
	DefineCustomIntVariable(
	    "migration_ext.repairs_per_transaction",
	    "Legacy values repair_value() writes back in one transaction; past it, reads only convert "
	    "(0: never write back).",
	    "Each write-back is a subtransaction whose xid the backend keeps until the transaction ends.",
	    &repairs_per_transaction, defaults::repairs_per_transaction, 0, defaults::max_repairs_per_transaction,
	    PGC_USERSET, 0, nullptr, nullptr, nullptr);
	DefineCustomBoolVariable("migration_ext.reuse_space",
	                         "Backfills reclaim the space of the rows they replaced as they go, unless started with "
	                         "reuse_space => false.",
	                         "Between batches the job's worker vacuums the table, so that the rows it converts next "
	                         "land in the space the old versions took instead of at the end of the table.",
	                         &reuse_space, defaults::reuse_space, PGC_USERSET, 0, nullptr, nullptr, nullptr);
	DefineCustomRealVariable(
	    "migration_ext.reclaim_every", "Share of a table a backfill converts between two rounds of space reuse.",
	    "The table grows by about this share before the first round frees space; each round "
	    "is a VACUUM of the table, which scans its indexes whole.",
	    &reclaim_every, defaults::reclaim_every, 0.001, 1, PGC_SIGHUP, 0, nullptr, nullptr, nullptr);
	MarkGUCPrefixReserved("migration_ext");
}

} // namespace mext::pg

// setting(name): the current value of one of migration_ext's numeric settings, in its base unit (ms for
// times), whoever calls it. A C function: calling it loads the library, which defines every setting, so
// SQL never needs a default of its own.
Datum mext_setting(PG_FUNCTION_ARGS)
{
	const char *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	if (strncmp(name, "migration_ext.", strlen("migration_ext.")) != 0)
		ereport(ERROR,
		        (errcode(ERRCODE_INVALID_PARAMETER_VALUE), errmsg("\"%s\" is not a migration_ext setting", name)));
	// The value in the setting's base unit, without a unit.
	const char *value = GetConfigOption(name, false, false);
	char *end = nullptr;
	double number = strtod(value, &end);
	if (end == value || *end != '\0')
		ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE), errmsg("setting \"%s\" is not a number", name)));
	PG_RETURN_FLOAT8(number);
}
