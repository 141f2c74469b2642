// The backfill worker's yield points (see core/cpu_slice.hpp for why). The per-row functions of the
// batch statement call cpu_yield_point(); in any process but a backfill worker it is one test of a flag.
#pragma once

namespace mext::pg
{

extern bool cpu_yield_enabled;
extern unsigned cpu_yield_calls;

// From the worker's main: from now on this process yields after every migration_ext.worker_cpu_slice.
void enable_cpu_yield();

void cpu_yield_now_if_due();

// The clock is read at every 8th call only: with two calls a row at ~2 us a row, a slice overruns by
// about 10 us at most, and an unthrottled job does not pay a clock read per row.
inline void cpu_yield_point()
{
	if (cpu_yield_enabled && (++cpu_yield_calls & 7u) == 0)
		cpu_yield_now_if_due();
}

} // namespace mext::pg
