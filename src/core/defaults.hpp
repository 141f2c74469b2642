// Every tunable default, written once. The migration_ext.* settings are defined with these values
// (pg/settings.cpp), the throttle starts from them (core/throttle.hpp), and SQL reads the settings
// through migration_ext.setting(), a C function, so that it never needs a number of its own.
#pragma once

namespace mext::defaults
{

constexpr int batch_size = 1000;              // the first batch of a throttled job
constexpr int unthrottled_batch_size = 20000; // every batch of a job started with throttle => false
constexpr int min_batch = 10;
constexpr int max_batch = 100000;
constexpr int batch_time_target_ms = 200;
constexpr int max_replica_lag_ms = 1500;
constexpr int max_active_backends = 25;     // 0: ignore
constexpr int max_wal_bytes_per_second = 0; // 0: no cap
constexpr double live_duty_cycle = 0.5;     // 1: no sharing
constexpr int lock_timeout_ms = 500;
constexpr int resume_interval_s = 60;
constexpr double worker_cpu_slice_ms = 0.2;
constexpr int max_jobs = 8;
constexpr int max_jobs_per_role = 4;
constexpr int ddl_lock_timeout_ms = 200;
constexpr int gather_interval_ms = 500; // how often the parent of a job in parts sums its parts
constexpr int settle_wait_ms = 5000;
// Write-backs of repair_value() in one transaction. Each holds a subtransaction's xid until the transaction
// ends, and a backend caches 64 of them (PGPROC_MAX_CACHED_SUBXIDS): past that every snapshot of every
// backend gets slower. Half of it leaves room for the application's own savepoints.
constexpr int repairs_per_transaction = 32;
constexpr int max_repairs_per_transaction = 64;
constexpr bool reuse_space = true;      // a job reclaims the space of the rows it replaced as it goes
constexpr double reclaim_every = 0.05;  // a round of space reuse after this share of a table is converted
constexpr long reclaim_min_rows = 1000; // ... but never after fewer rows

} // namespace mext::defaults
