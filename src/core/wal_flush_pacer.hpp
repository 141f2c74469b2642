// How much of its own WAL the backfill worker may leave unflushed.
//
// A worker commits asynchronously, so its WAL stays in PostgreSQL's WAL buffers until the WAL writer's next
// round or until somebody's synchronous commit needs the WAL behind it (test/crash/wal_flush_pace.sh: 11
// flushes during a 31 MB job). With a live workload that somebody is the application: its commit record
// lands after up to a batch of the worker's WAL, and its COMMIT writes and fsyncs all of it before
// returning. A worker that flushes after every `after` bytes of its own WAL keeps that debt small and pays
// for it itself.
#pragma once

#include <cstdint>

namespace mext
{

class WalFlushPacer
{
  public:
	// Zero never asks for a flush.
	void set_after(std::uint64_t bytes) { after_ = bytes; }

	// Called at each pace point with the end of the worker's last WAL record (0: none yet in this
	// transaction): true when at least `after` bytes were written since the last flush it asked for, and
	// the caller should flush up to `own_end` now (and call flushed()).
	bool due(std::uint64_t own_end) const { return after_ > 0 && own_end > flushed_ && own_end - flushed_ >= after_; }

	void flushed(std::uint64_t upto)
	{
		if (upto > flushed_)
			flushed_ = upto;
	}

  private:
	std::uint64_t after_ = 0;
	std::uint64_t flushed_ = 0;
};

} // namespace mext
