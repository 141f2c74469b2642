// The backfill worker creates the WAL segments its next batch will fill (core/wal_headroom.hpp says
// why and how many), so that no application commit waits while PostgreSQL creates one.
#pragma once

#include "core/wal_headroom.hpp"

namespace mext::pg
{

// A headroom for this server's segment size: never more than 256 MB (and at least one segment) ahead.
WalHeadroom wal_headroom();

// The segments to look at before a batch, from the current insert position: none when from > to. Needs
// no transaction, and is called before every batch (it records the WAL step since the previous call).
struct SegmentRange {
	std::uint64_t from;
	std::uint64_t to;
};
SegmentRange wal_segments_wanted(WalHeadroom &headroom);

// What create_wal_segments did: segments created, and how many of them had their blocks reserved.
struct SegmentsCreated {
	int created = 0;
	int reserved = 0;
};

// Creates the segments of `range` that do not exist. A PostgreSQL error (a full disk, say) propagates.
// Call it inside a transaction: the setting it changes for the creation is reverted at its end.
SegmentsCreated create_wal_segments(WalHeadroom &headroom, SegmentRange range);

} // namespace mext::pg
