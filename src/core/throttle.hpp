// How fast a backfill may go. The seeds say the throttle, not the conversion code, sets the wall
// clock: before every batch the controller looks at the server's own signals and decides whether to
// wait and how big the batch is. Any one signal throttles, and the decision names it, so that
// backfill_status can say why. Pure arithmetic over what the worker observed; the worker waits.
#pragma once

#include "core/defaults.hpp"
#include <boost/circular_buffer.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace mext
{

// Rows per second over the last few batches, counting the waits between them: the rate a DBA sees
// and the basis of the ETA.
class RateMeter
{
  public:
	explicit RateMeter(std::size_t window = 16) : samples_(window) {}
	void add(long rows, double seconds);
	double rows_per_second() const;

  private:
	struct Sample {
		long rows;
		double seconds;
	};
	boost::circular_buffer<Sample> samples_;
};

// Replay lag in seconds, measured from the primary: how long ago the primary's WAL position was the
// one a standby has replayed now. The worker records the primary's position before every batch.
class LagClock
{
  public:
	explicit LagClock(std::size_t window = 4096) : samples_(window) {}
	void record(double now_s, std::uint64_t primary_lsn);
	// 0 when the standby has replayed everything recorded; a lower bound when it is behind the oldest.
	double lag_seconds(double now_s, std::uint64_t replay_lsn) const;
	// WAL bytes per second over the last `window_s` seconds; 0 without two samples in it.
	double wal_bytes_per_second(double now_s, double window_s = 5.0) const;
	// The same for any cumulative counter recorded in place of the LSN (transactions, say).
	double units_per_second(double now_s, double window_s = 5.0) const;

  private:
	struct Sample {
		double at;
		std::uint64_t lsn;
	};
	boost::circular_buffer<Sample> samples_;
};

struct ThrottleSettings {
	double batch_target_ms = defaults::batch_time_target_ms;
	int min_batch = defaults::min_batch;
	int max_batch = defaults::max_batch;
	double grow_factor = 1.2;
	int stable_batches = 3;                                           // batches under target before the size grows
	double max_replica_lag_s = defaults::max_replica_lag_ms / 1000.0; // pause above, resume below half of it
	int max_active_backends = defaults::max_active_backends;
	bool hold_on_vacuum = true;
	double max_wal_bytes_per_s = defaults::max_wal_bytes_per_second;
	// With a live workload (other transactions committing at least live_tps_threshold a second), the job
	// works at most this fraction of the time, so the CPU and the disk keep room for the application.
	double live_duty_cycle = defaults::live_duty_cycle;
	double live_tps_threshold = 20;
	// ... and its batches are kept this short: a batch's row locks and its burst of WAL (which every
	// synchronous commit of the application must flush first) then delay the application by little.
	// Bursts this short leave the application a lower tail beside the job than twice as long ones do,
	// at a small cost in rate (bench/live_recipe.sh, against a loop paced to the job's own rate).
	double live_batch_target_ms = 10;
	// PostgreSQL publishes a backend's transaction counts at most once a second, so for about a second
	// after its first look a job cannot tell a busy server from an idle one: it shares meanwhile.
	double workload_warmup_s = 1.0;
	std::optional<int> max_rows_per_second;
	double check_interval_ms = 250; // how often a held job looks again
};

struct Standby {
	std::string name;
	std::optional<std::uint64_t> replay_lsn; // nullopt: connected but unreadable
};

// What the worker saw just before a batch.
struct Signals {
	double now_s = 0;
	std::uint64_t wal_lsn = 0;
	std::vector<Standby> standbys;
	bool standbys_readable = true; // false: pg_stat_replication could not be read
	int active_backends = 0;
	double transactions = 0; // committed + rolled back, cluster-wide, cumulative
	// The job's own part of `transactions` (its batches, looks, notes and space-reuse rounds), as counted
	// when `transactions` was read; nullopt: unknown, and one transaction a batch is assumed.
	std::optional<double> own_transactions;
	bool vacuum_on_table = false;
};

struct Decision {
	bool hold = false;
	double wait_ms = 0;
	std::string reason;     // the signal and its value; empty when nothing throttles
	std::string unreadable; // a signal that could not be read: reported, never fatal
};

struct Pause {
	double milliseconds = 0;
	std::string reason; // empty when not throttled
};

class ThrottleController
{
  public:
	explicit ThrottleController(ThrottleSettings settings, int initial_batch);

	void update_settings(const ThrottleSettings &settings);
	const ThrottleSettings &settings() const { return settings_; }

	// Before a batch: hold (wait and look again) or go.
	Decision before_batch(const Signals &signals);
	// After a batch: sizes the next one (grow slowly after a stable window, shrink fast) and returns
	// the pause the rate cap needs. `blocked_sessions` are live sessions that were waiting on the
	// batch's row locks when it was about to commit: the workload's own latency, felt. Then the batch
	// halves and the worker rests as long as the batch took, so the workload catches up.
	Pause after_batch(long rows, double batch_ms, int blocked_sessions = 0);
	// A lock timeout or deadlock: halve at once.
	void after_lock_conflict();

	int batch_size() const { return batch_size_; }
	// Transactions per second of everything but this job, as last seen.
	double workload_tps() const { return workload_tps_; }
	// Does the job share the server with a live workload (duty cycle, short batches)?
	bool sharing() const;

  private:
	int clamp(double size) const;
	Pause size_next_batch(long rows, double batch_ms, int blocked_sessions);

	ThrottleSettings settings_;
	int batch_size_;
	int stable_ = 0;
	bool lag_holding_ = false;
	LagClock lag_clock_;
	LagClock transaction_clock_; // the same sampler, over the other sessions' transactions
	double others_ = 0;          // their count (the counter less the job's own)
	double workload_tps_ = 0;
	double batches_per_s_ = 0;
	std::optional<double> first_look_s_; // the first before_batch()
	bool warming_up_ = false;            // within workload_warmup_s of it
};

// The fixed-rate cap: after a batch of `rows` that took `batch_ms`, wait long enough that the job never
// exceeds max_rows_per_second on average.
Pause pace_for_rate_cap(std::optional<int> max_rows_per_second, long rows, double batch_ms);

// Backoff after a lock timeout or deadlock: jittered exponential, 1 s doubling to 60 s (pgroll's
// numbers), jitter in [0, 1) supplied by the caller so that tests are deterministic.
double lock_backoff_ms(int attempt, double jitter);

// The wait before attempt `attempt` (1-based) of a brief strong lock the protocol takes (ALTER TABLE,
// DROP TRIGGER) after a lock timeout: 100 ms doubling to 5 s, times 0.5..1 by `jitter` (0..1), so a
// lock freed by a transaction that ends is taken soon, and a busy table is not hammered.
double ddl_backoff_ms(int attempt, double jitter);

} // namespace mext
