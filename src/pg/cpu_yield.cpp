#include "pg/cpu_yield.hpp"

#include "core/cpu_slice.hpp"
#include "pg/settings.hpp"

#include <sched.h>

namespace mext::pg
{

bool cpu_yield_enabled = false;
unsigned cpu_yield_calls = 0;

namespace
{
CpuSlice slice;
}

void enable_cpu_yield()
{
	cpu_yield_enabled = true;
}

void cpu_yield_now_if_due()
{
	// Read each time: a reload (SIGHUP) changes the setting under a running worker.
	slice.set_slice(std::chrono::nanoseconds(static_cast<long long>(worker_cpu_slice_ms * 1e6)));
	if (slice.due(CpuSlice::Clock::now()))
		sched_yield(); // POSIX; returns at once when nothing else is runnable here
}

} // namespace mext::pg
