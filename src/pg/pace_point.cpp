#include "pg/pace_point.hpp"

#include "core/cpu_slice.hpp"
#include "pg/settings.hpp"

#include <sched.h>

namespace mext::pg
{

bool pacing_enabled = false;
unsigned pace_calls = 0;

namespace
{
CpuSlice slice;
} // namespace

void enable_pacing()
{
	pacing_enabled = true;
}

void pace_now_if_due()
{
	// Settings are read each time: a reload (SIGHUP) changes them under a running worker.
	slice.set_slice(std::chrono::nanoseconds(static_cast<long long>(worker_cpu_slice_ms * 1e6)));
	if (slice.due(CpuSlice::Clock::now()))
		sched_yield(); // POSIX; returns at once when nothing else is runnable here
}

} // namespace mext::pg
