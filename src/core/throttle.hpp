// How fast a backfill may go. Decides, after every batch, how long to wait before the next one and
// says why, so that backfill_status can name the signal. Pure arithmetic over what the worker
// observed; the worker does the waiting.
#pragma once

#include <boost/circular_buffer.hpp>

#include <optional>
#include <string>

namespace mext {

// Rows per second over the last few batches, counting the waits between them: the rate a DBA sees
// and the basis of the ETA.
class RateMeter {
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

struct Pause {
	double milliseconds = 0;
	std::string reason; // empty when not throttled
};

// The fixed-rate cap: after a batch of `rows` that took `batch_ms`, wait long enough that the job never
// exceeds max_rows_per_second on average.
Pause pace_for_rate_cap(std::optional<int> max_rows_per_second, long rows, double batch_ms);

// Backoff after a lock timeout or deadlock: jittered exponential, 1 s doubling to 60 s (pgroll's
// numbers), jitter in [0, 1) supplied by the caller so that tests are deterministic.
double lock_backoff_ms(int attempt, double jitter);

} // namespace mext
