// The SQL a backfill worker calls around its batches (worker_begin, worker_poll, worker_note,
// worker_failed, standby_positions in the install script), each run through SPI inside
// the caller's transaction. Results are read by column name, so the SQL and the C++ cannot drift apart
// by position. Plain data only: these run inside in_transaction(), where an error longjmps.
#pragma once

#include <cstddef>

#include "pg/postgres_c.hpp"
#include "pg/worker_transaction.hpp"

namespace mext::pg
{

// How many lock timeouts, deadlocks or cancels in a row a job retries before it fails.
constexpr int kMaxLockRetries = 3;
constexpr int kMaxStandbys = 16;

struct WorkerConfig {
	bool found; // false: finished, cancelled, or already running in another worker
	int batch_size;
	int max_rows_per_second; // 0: no cap
	bool throttle;
	bool gathers; // a job in parts: its worker gathers the parts' progress instead of walking
};

// The operator's request, the job's current thresholds and the server's load signals.
struct Poll {
	char requested[16];
	bool throttle;
	int max_rows_per_second; // 0: no cap
	double batch_time_target_ms;
	double max_replica_lag_s;
	int max_active_backends;
	double max_wal_bytes_per_second;
	double live_duty_cycle;
	double wal_bytes;
	int active_backends;
	bool vacuum_on_table;
	double transactions;
	double own_transactions; // this process's commits and rollbacks, published before `transactions` was read
	int standbys;
	char standby_name[kMaxStandbys][64];
	double standby_replay[kMaxStandbys];
	bool standby_readable[kMaxStandbys];
};

void worker_begin(int64 job, WorkerConfig *config);
void worker_poll(int64 job, Poll *poll);
// A parent's round (worker_gather): "continue" or "stop".
void worker_gather(int64 job, char *action, std::size_t action_size);
// A distributed job's parent keeps Citus from moving the table's shards while it lives.
bool worker_hold_shards(int64 job);
// ... and, once it holds them, fails the job if a shard moved while it did not (false then).
bool worker_check_placements(int64 job);
void worker_note(int64 job, double rate, const char *reason, const char *warning, int batch_size);
// The job's verdict on a failed batch: "retry" or "stop".
void worker_failed(int64 job, const StepError &error, char *verdict, std::size_t verdict_size);

} // namespace mext::pg
