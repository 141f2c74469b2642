#include "core/space_reuse.hpp"

#include <algorithm>
#include <cmath>

namespace mext
{

bool xid_precedes(std::uint32_t a, std::uint32_t b)
{
	return static_cast<std::int32_t>(a - b) < 0;
}

long rows_per_round(double table_rows, double every, long minimum)
{
	double rows = std::ceil(std::max(table_rows, 0.0) * std::clamp(every, 0.0, 1.0));
	return std::max(static_cast<long>(rows), std::max(minimum, 1L));
}

SpaceReuse::SpaceReuse(long round_rows, std::size_t max_batches)
    : round_rows_(std::max(round_rows, 1L)), max_batches_(std::max<std::size_t>(max_batches, 2))
{
}

void SpaceReuse::converted(std::uint32_t xid, long rows)
{
	if (rows <= 0)
		return;
	batches_.push_back(Batch{xid, rows});
	pending_rows_ += rows;
	since_look_ += rows;
	if (batches_.size() > max_batches_)
		merge_neighbours();
}

// Pairs merge into their later member: the merged rows count as freeable only once the later batch is,
// which is never before any of them actually are.
void SpaceReuse::merge_neighbours()
{
	std::deque<Batch> merged;
	for (std::size_t i = 0; i < batches_.size(); i += 2) {
		if (i + 1 < batches_.size())
			merged.push_back(Batch{batches_[i + 1].xid, batches_[i].rows + batches_[i + 1].rows});
		else
			merged.push_back(batches_[i]);
	}
	batches_.swap(merged);
}

long SpaceReuse::freeable(std::uint32_t horizon) const
{
	long rows = 0;
	for (const Batch &batch : batches_) {
		if (!xid_precedes(batch.xid, horizon))
			break; // commit order: the later ones are not freeable either
		rows += batch.rows;
	}
	return rows;
}

RoundVerdict SpaceReuse::verdict(std::uint32_t horizon, bool final_round) const
{
	if (pending_rows_ == 0 || (!final_round && !due()))
		return RoundVerdict::wait;
	long rows = freeable(horizon);
	if (final_round ? rows > 0 : 2 * rows >= std::min(round_rows_, pending_rows_))
		return RoundVerdict::run;
	return RoundVerdict::held_back;
}

void SpaceReuse::reclaimed(std::uint32_t horizon)
{
	while (!batches_.empty() && xid_precedes(batches_.front().xid, horizon)) {
		pending_rows_ -= batches_.front().rows;
		batches_.pop_front();
	}
	since_look_ = 0;
}

void SpaceReuse::forget()
{
	batches_.clear();
	pending_rows_ = 0;
	since_look_ = 0;
}

} // namespace mext
