// The backfill worker's pace points. The per-row functions of the batch statement (is_legacy,
// migrate_value) call pace_point(); in any process but a backfill worker it is one test of a flag. In a
// worker it gives the CPU up after every migration_ext.worker_cpu_slice of running time
// (core/cpu_slice.hpp).
#pragma once

namespace mext::pg
{

extern bool pacing_enabled;
extern unsigned pace_calls;

// From the worker's main: from now on this process paces itself.
void enable_pacing();

void pace_now_if_due();

// The clock is read at every 8th call only: with two calls a row at ~2 us a row, a slice overruns by
// about 10 us at most, and an unthrottled job does not pay a clock read per row.
inline void pace_point()
{
	if (pacing_enabled && (++pace_calls & 7u) == 0)
		pace_now_if_due();
}

} // namespace mext::pg
