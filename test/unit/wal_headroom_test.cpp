#include "core/wal_headroom.hpp"

#include <gtest/gtest.h>

using mext::WalHeadroom;

namespace
{
constexpr std::uint64_t kSegment = 16u << 20;
constexpr std::uint64_t kStart = 0x3A000000; // a server's WAL does not start at 0: segment 58 of 16 MB
} // namespace

TEST(WalHeadroom, AlwaysTheNextSegmentFirst)
{
	// Before any step is known, and with steps too small to reach it, the next segment is wanted: the
	// insert position may cross into it during the batch.
	WalHeadroom headroom(kSegment);
	EXPECT_EQ(headroom.wanted(kStart), kStart / kSegment + 1);
	EXPECT_EQ(headroom.wanted(kStart + 1000), kStart / kSegment + 1);
}

TEST(WalHeadroom, TwiceTheLargestRecentStepAhead)
{
	WalHeadroom headroom(kSegment);
	headroom.wanted(kStart);
	// A 20 MB step: the next batch may write as much again, and twice that is covered.
	std::uint64_t insert = kStart + (20u << 20);
	EXPECT_EQ(headroom.wanted(insert), (insert + (40u << 20)) / kSegment);
	// Smaller steps afterwards: the large one still counts while it is among the last four.
	for (int i = 1; i <= 3; ++i) {
		insert += 1u << 20;
		EXPECT_EQ(headroom.wanted(insert), (insert + (40u << 20)) / kSegment) << "step " << i;
	}
	// ... and no longer once four smaller ones followed it.
	insert += 1u << 20;
	EXPECT_EQ(headroom.wanted(insert), insert / kSegment + 1);
}

TEST(WalHeadroom, NeverMoreThanTheCapAhead)
{
	WalHeadroom headroom(kSegment, 3);
	headroom.wanted(kStart);
	std::uint64_t insert = kStart + (1ull << 30); // a 1 GB step
	EXPECT_EQ(headroom.wanted(insert), insert / kSegment + 3);
	WalHeadroom zero_cap(kSegment, 0); // a cap of 0 still means the next segment
	EXPECT_EQ(zero_cap.wanted(kStart), kStart / kSegment + 1);
}

TEST(WalHeadroom, APositionThatDidNotMoveIsNoStep)
{
	WalHeadroom headroom(kSegment);
	headroom.wanted(kStart);
	headroom.wanted(kStart); // an idle look: no WAL
	EXPECT_EQ(headroom.wanted(kStart), kStart / kSegment + 1);
}

TEST(WalHeadroom, FirstMissingSkipsWhatExists)
{
	WalHeadroom headroom(kSegment);
	const std::uint64_t current = kStart / kSegment;
	EXPECT_EQ(headroom.first_missing(kStart), current + 1);
	headroom.ensured_upto(current + 3);
	EXPECT_EQ(headroom.ensured(), current + 3);
	EXPECT_EQ(headroom.first_missing(kStart), current + 4);
	headroom.ensured_upto(current + 1); // never goes back
	EXPECT_EQ(headroom.ensured(), current + 3);
	// Once the insert position has passed what was ensured, the next one after it is missing.
	EXPECT_EQ(headroom.first_missing(kStart + 5 * kSegment), current + 6);
}
