// How long the backfill worker may keep a CPU before it offers it to whoever is waiting.
//
// A woken backend that lands on the CPU the worker is running on can wait for the scheduler tick before
// it runs: measured with perf sched on the 2-core machine of bench/live_workload.sh (Linux 6.18, HZ=250),
// 88-109 wake-ups of the application's backends in 4 s of a default backfill waited 2-5 ms behind the
// worker while the other core sat idle (264 with the worker at SCHED_IDLE). The worker's own code runs
// once per row (is_legacy, migrate_value), so it can give the CPU up itself: after every slice of running
// time it yields, and nobody waits behind it for longer than about one slice. A yield with nobody
// waiting costs one system call.
#pragma once

#include <chrono>

namespace mext
{

class CpuSlice
{
  public:
	using Clock = std::chrono::steady_clock;

	// A slice of zero (or less) never asks for a yield.
	void set_slice(std::chrono::nanoseconds slice) { slice_ = slice; }

	// Called at each yield point: true when a slice has passed since the last yield (or since the first
	// call), and the caller should yield now. The slice restarts at `now`.
	bool due(Clock::time_point now);

  private:
	std::chrono::nanoseconds slice_{0};
	Clock::time_point started_{};
	bool running_ = false;
};

} // namespace mext
