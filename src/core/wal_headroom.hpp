// How far ahead of the WAL insert position the backfill worker creates WAL segment files.
//
// A backfill writes WAL far faster than the application it runs beside (the benchmark's UPDATE of a
// freshly loaded table: about 380 bytes a row, 380 MB for 1,000,000 rows), and soon uses up the
// segments the last checkpoint kept for reuse. Then the process whose WAL write first reaches a segment
// that does not exist creates it: PostgreSQL writes the whole segment (16 MB of zeros) and fsyncs it
// while holding WALWriteLock, and every commit in the cluster waits behind it. Measured on the 2-core
// benchmark host: each segment created during a default job stalled all four application clients at
// once for 19-26 ms, among the workload's slowest 1 % of transactions. So before each batch the worker
// creates the segments it is about to fill itself, outside that lock: at least the next one, and as
// many as twice the largest WAL step (from one look to the next) it saw recently.
#pragma once

#include <boost/circular_buffer.hpp>

#include <algorithm>
#include <cstdint>
#include <optional>

namespace mext
{

class WalHeadroom
{
  public:
	// segment_size: wal_segment_size. max_ahead: never more segments than this beyond the insert position.
	WalHeadroom(std::uint64_t segment_size, std::uint64_t max_ahead = 64)
	    : segment_size_(segment_size), max_ahead_(std::max<std::uint64_t>(1, max_ahead))
	{
	}

	// Before a batch, at WAL insert position `insert`: the last segment number that should exist before the
	// batch starts. Records the WAL written since the previous call as one step.
	std::uint64_t wanted(std::uint64_t insert)
	{
		if (last_insert_ && insert > *last_insert_)
			steps_.push_back(insert - *last_insert_);
		last_insert_ = insert;
		std::uint64_t largest = 0;
		for (std::uint64_t step : steps_)
			largest = std::max(largest, step);
		const std::uint64_t current = insert / segment_size_;
		const std::uint64_t reach = (insert + 2 * largest) / segment_size_;
		return std::clamp(reach, current + 1, current + max_ahead_);
	}

	// Segments up to this number exist already (created by the worker, or found there): no need to look.
	std::uint64_t ensured() const { return ensured_; }
	void ensured_upto(std::uint64_t segment) { ensured_ = std::max(ensured_, segment); }

	// The first segment worth creating for `wanted`: beyond both the insert position's and ensured().
	std::uint64_t first_missing(std::uint64_t insert) const { return std::max(ensured_, insert / segment_size_) + 1; }

  private:
	std::uint64_t segment_size_;
	std::uint64_t max_ahead_;
	std::uint64_t ensured_ = 0;
	std::optional<std::uint64_t> last_insert_;
	boost::circular_buffer<std::uint64_t> steps_{4};
};

} // namespace mext
