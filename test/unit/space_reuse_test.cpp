#include "core/space_reuse.hpp"

#include <gtest/gtest.h>

using mext::RoundVerdict;
using mext::SpaceReuse;

TEST(XidPrecedes, ComparesAcrossTheWraparound)
{
	EXPECT_TRUE(mext::xid_precedes(100, 101));
	EXPECT_FALSE(mext::xid_precedes(101, 100));
	EXPECT_FALSE(mext::xid_precedes(100, 100));
	EXPECT_TRUE(mext::xid_precedes(0xFFFFFFF0u, 5)); // 5 came after the counter wrapped
	EXPECT_FALSE(mext::xid_precedes(5, 0xFFFFFFF0u));
}

TEST(RowsPerRound, IsAShareOfTheTableWithAFloor)
{
	EXPECT_EQ(mext::rows_per_round(1000000, 0.05, 1000), 50000);
	EXPECT_EQ(mext::rows_per_round(10000, 0.05, 1000), 1000);
	EXPECT_EQ(mext::rows_per_round(-1, 0.05, 1000), 1000); // never analyzed: the floor
	EXPECT_EQ(mext::rows_per_round(1000000, 2.0, 1000), 1000000);
	EXPECT_EQ(mext::rows_per_round(0, 0.05, 0), 1);
}

TEST(SpaceReuse, WaitsForARoundsWorthOfRows)
{
	SpaceReuse reuse(1000);
	reuse.converted(10, 400);
	reuse.converted(11, 400);
	EXPECT_FALSE(reuse.due());
	EXPECT_EQ(reuse.verdict(100, false), RoundVerdict::wait);
	reuse.converted(12, 400);
	EXPECT_TRUE(reuse.due());
	EXPECT_EQ(reuse.pending(), 1200);
	EXPECT_EQ(reuse.verdict(100, false), RoundVerdict::run);
}

TEST(SpaceReuse, CountsOnlyBatchesBeforeTheHorizon)
{
	SpaceReuse reuse(1000);
	reuse.converted(10, 300);
	reuse.converted(20, 300);
	reuse.converted(30, 600);
	EXPECT_EQ(reuse.freeable(10), 0); // the horizon is batch 10 itself: still visible to someone
	EXPECT_EQ(reuse.freeable(11), 300);
	EXPECT_EQ(reuse.freeable(25), 600);
	EXPECT_EQ(reuse.freeable(31), 1200);
	reuse.reclaimed(25);
	EXPECT_EQ(reuse.pending(), 600);
	EXPECT_FALSE(reuse.due()); // counting starts again after a round
	EXPECT_EQ(reuse.freeable(31), 600);
}

TEST(SpaceReuse, AHorizonHeldBackBeforeTheRoundIsReported)
{
	SpaceReuse reuse(1000);
	reuse.converted(50, 1000);
	reuse.converted(60, 200);
	EXPECT_EQ(reuse.verdict(40, false), RoundVerdict::held_back); // a snapshot older than every batch
	EXPECT_EQ(reuse.verdict(55, false), RoundVerdict::run);       // most of it can go
	reuse.held_back();
	EXPECT_FALSE(reuse.due()); // the next look after another round's rows
	EXPECT_EQ(reuse.pending(), 1200);
	reuse.converted(70, 1000);
	EXPECT_EQ(reuse.verdict(71, false), RoundVerdict::run); // released: everything waiting is freed
	reuse.reclaimed(71);
	EXPECT_EQ(reuse.pending(), 0);
}

TEST(SpaceReuse, ASmallFreeableShareIsHeldBackButAFinalRoundTakesIt)
{
	SpaceReuse reuse(1000);
	reuse.converted(10, 100);
	reuse.converted(20, 1900);
	EXPECT_EQ(reuse.verdict(15, false), RoundVerdict::held_back); // 100 of 2000
	EXPECT_EQ(reuse.verdict(15, true), RoundVerdict::run);        // the end of the table: worth it
	EXPECT_EQ(reuse.verdict(5, true), RoundVerdict::held_back);
	reuse.forget();
	EXPECT_EQ(reuse.verdict(100, true), RoundVerdict::wait); // nothing pending
}

TEST(SpaceReuse, WorksAcrossTheXidWraparound)
{
	SpaceReuse reuse(100);
	reuse.converted(0xFFFFFFF0u, 60);
	reuse.converted(3, 60); // the counter wrapped between the batches
	EXPECT_EQ(reuse.freeable(0xFFFFFFF1u), 60);
	EXPECT_EQ(reuse.freeable(4), 120);
}

TEST(SpaceReuse, MemoryStaysBoundedAndMergingNeverFreesEarly)
{
	SpaceReuse reuse(1000000, 8);
	for (std::uint32_t xid = 100; xid < 1100; ++xid)
		reuse.converted(xid, 1);
	EXPECT_LE(reuse.remembered_batches(), 8u);
	EXPECT_EQ(reuse.pending(), 1000);
	// A horizon in the middle: whatever is counted freeable committed before it.
	for (std::uint32_t horizon = 100; horizon <= 1100; horizon += 37)
		EXPECT_LE(reuse.freeable(horizon), static_cast<long>(horizon - 100));
	EXPECT_EQ(reuse.freeable(1100), 1000);
}
