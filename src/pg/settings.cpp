#include "pg/settings.hpp"

#include "pg/guard.hpp"

extern "C" {
#include "utils/guc.h"

#include <climits>
}

namespace mext::pg
{

int lock_timeout_ms = 500;
int resume_interval_seconds = 60;
bool compress_wal = true;
double worker_cpu_slice_ms = 0.2;
bool preallocate_wal = true;
bool wait_progress = true;
int max_jobs = 8;
int ddl_lock_timeout_ms = 200;
int max_jobs_per_role = 4;

namespace
{
int batch_size = 1000;
int settle_wait_ms = 5000;
int batch_time_target_ms = 200;
int max_replica_lag_ms = 1500;
int max_active_backends = 25;
int max_wal_bytes_per_second = 0;
double live_duty_cycle = 0.5;
} // namespace

void register_settings()
{
	DefineCustomIntVariable("migration_ext.batch_size",
	                        "Initial (or, with throttle => false, fixed) backfill batch size.", nullptr, &batch_size,
	                        1000, 1, 100000, PGC_USERSET, 0, nullptr, nullptr, nullptr);
	DefineCustomIntVariable("migration_ext.batch_time_target",
	                        "Time a backfill batch should take; batches are sized to it.", nullptr,
	                        &batch_time_target_ms, 200, 1, 60000, PGC_USERSET, GUC_UNIT_MS, nullptr, nullptr, nullptr);
	DefineCustomIntVariable("migration_ext.max_replica_lag",
	                        "Replica replay lag above which a backfill pauses (0: ignore); it resumes below half.",
	                        nullptr, &max_replica_lag_ms, 1500, 0, 3600000, PGC_USERSET, GUC_UNIT_MS, nullptr, nullptr,
	                        nullptr);
	DefineCustomIntVariable("migration_ext.max_active_backends",
	                        "Active client backends above which a backfill pauses (0: ignore).", nullptr,
	                        &max_active_backends, 25, 0, 100000, PGC_USERSET, 0, nullptr, nullptr, nullptr);
	DefineCustomIntVariable("migration_ext.max_wal_bytes_per_second",
	                        "WAL generation rate above which a backfill pauses (0: no cap).", nullptr,
	                        &max_wal_bytes_per_second, 0, 0, INT_MAX, PGC_USERSET, 0, nullptr, nullptr, nullptr);
	DefineCustomRealVariable("migration_ext.live_duty_cycle",
	                         "Fraction of the time a backfill works while other transactions commit (1: no sharing).",
	                         "With a live workload a job runs short batches and rests between them, so the "
	                         "application keeps the CPU and the disk for the rest of the time.",
	                         &live_duty_cycle, 0.5, 0.01, 1, PGC_USERSET, 0, nullptr, nullptr, nullptr);
	DefineCustomIntVariable("migration_ext.lock_timeout",
	                        "lock_timeout of each backfill batch; a timed-out batch is retried smaller.", nullptr,
	                        &lock_timeout_ms, 500, 1, 600000, PGC_SIGHUP, GUC_UNIT_MS, nullptr, nullptr, nullptr);
	DefineCustomIntVariable("migration_ext.resume_interval",
	                        "Seconds between the launcher's looks for interrupted backfill jobs (0: only at start).",
	                        nullptr, &resume_interval_seconds, 60, 0, 86400, PGC_SIGHUP, GUC_UNIT_S, nullptr, nullptr,
	                        nullptr);
	DefineCustomBoolVariable("migration_ext.compress_wal",
	                         "Backfill workers compress the full-page images they write to WAL, whatever "
	                         "wal_compression says for other sessions.",
	                         nullptr, &compress_wal, true, PGC_SUSET, 0, nullptr, nullptr, nullptr);
	DefineCustomRealVariable("migration_ext.worker_cpu_slice",
	                         "Running time after which a backfill worker yields its CPU to waiting processes "
	                         "(0: never).",
	                         "A woken backend on the worker's CPU otherwise may wait for the scheduler's next "
	                         "tick, several milliseconds.",
	                         &worker_cpu_slice_ms, 0.2, 0, 1000, PGC_SIGHUP, GUC_UNIT_MS, nullptr, nullptr, nullptr);
	DefineCustomBoolVariable("migration_ext.preallocate_wal",
	                         "Backfill workers create the WAL segment files their next batch will fill before "
	                         "running it.",
	                         "Otherwise whichever process first writes into a missing segment creates it (16 MB "
	                         "written and fsynced) while holding WALWriteLock, and every commit waits.",
	                         &preallocate_wal, true, PGC_SIGHUP, 0, nullptr, nullptr, nullptr);
	DefineCustomIntVariable("migration_ext.ddl_lock_timeout",
	                        "lock_timeout of each strong lock the migration protocol takes; a timed-out statement is "
	                        "retried with backoff.",
	                        "So that ALTER TABLE or DROP TRIGGER never keeps the application queued behind it for "
	                        "longer than this.",
	                        &ddl_lock_timeout_ms, 200, 1, 60000, PGC_USERSET, GUC_UNIT_MS, nullptr, nullptr, nullptr);
	DefineCustomIntVariable("migration_ext.settle_wait",
	                        "How long the point of no return waits for standbys to replay past the reader swaps' "
	                        "commit.",
	                        nullptr, &settle_wait_ms, 5000, 0, 3600000, PGC_USERSET, GUC_UNIT_MS, nullptr, nullptr,
	                        nullptr);
	DefineCustomBoolVariable("migration_ext.wait_progress",
	                         "wait_backfill() and await_backfill() report progress as a NOTICE every few seconds "
	                         "unless told otherwise.",
	                         nullptr, &wait_progress, true, PGC_USERSET, 0, nullptr, nullptr, nullptr);
	DefineCustomIntVariable("migration_ext.max_jobs",
	                        "Backfill workers that may run at once in the whole cluster; a job beyond it waits.",
	                        "start_backfill() and resume_backfill() refuse a job at the limit; the resumer "
	                        "leaves such a job queued, with the reason in backfill_status.",
	                        &max_jobs, 8, 1, 1024, PGC_SIGHUP, 0, nullptr, nullptr, nullptr);
	DefineCustomIntVariable("migration_ext.max_jobs_per_role",
	                        "Backfill workers one role's jobs may run at once in a database (0: no limit).", nullptr,
	                        &max_jobs_per_role, 4, 0, 1024, PGC_SIGHUP, 0, nullptr, nullptr, nullptr);
	MarkGUCPrefixReserved("migration_ext");
}

} // namespace mext::pg
