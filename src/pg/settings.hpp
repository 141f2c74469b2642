// The migration_ext.* settings: defaults for the thresholds a job can also be given directly.
#pragma once

namespace mext::pg
{

extern int lock_timeout_ms;         // each batch runs with this lock_timeout
extern int resume_interval_seconds; // the launcher's period
extern bool compress_wal;           // the worker compresses its own full-page images
extern double worker_cpu_slice_ms;  // the worker yields its CPU after this much running time (0: never)
extern bool wait_progress;          // waits report progress unless told otherwise (read from SQL)
extern int max_jobs;                // backfill workers running at once, cluster-wide
extern int ddl_lock_timeout_ms;     // lock_timeout of each strong lock the protocol takes
extern int max_jobs_per_role;       // backfill workers of one role's jobs at once, per database (0: no limit)
extern int repairs_per_transaction; // repair_value() write-backs in one transaction (0: reads only convert)
extern double reclaim_every;        // share of a table converted between two rounds of space reuse

void register_settings();

} // namespace mext::pg
