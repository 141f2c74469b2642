#include "pg/pace_point.hpp"

#include "core/cpu_slice.hpp"
#include "core/wal_flush_pacer.hpp"
#include "pg/settings.hpp"

#include <sched.h>

extern "C" {
#include "postgres.h"

#include "access/xlog.h"
}

namespace mext::pg
{

bool pacing_enabled = false;
unsigned pace_calls = 0;

namespace
{
CpuSlice slice;
WalFlushPacer wal_pacer;
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

	// XactLastRecEnd: the end of this process's last WAL record in this transaction (0 before its first).
	// Flushing up to it is what a synchronous commit of the batch would do, a piece at a time; the
	// insert position instead may point past a page header nothing has been written to yet.
	wal_pacer.set_after(static_cast<std::uint64_t>(worker_wal_flush_after_kb) * 1024);
	if (wal_pacer.due(XactLastRecEnd)) {
		XLogFlush(XactLastRecEnd);
		wal_pacer.flushed(XactLastRecEnd);
	}
}

} // namespace mext::pg
