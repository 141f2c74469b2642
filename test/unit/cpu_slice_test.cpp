#include "core/cpu_slice.hpp"

#include <gtest/gtest.h>

using namespace std::chrono_literals;
using mext::CpuSlice;

namespace
{
CpuSlice::Clock::time_point at(std::chrono::microseconds us)
{
	return CpuSlice::Clock::time_point{} + 1h + us;
}
} // namespace

TEST(CpuSlice, ZeroSliceNeverYields)
{
	CpuSlice slice;
	for (int us = 0; us < 10000; us += 100)
		EXPECT_FALSE(slice.due(at(std::chrono::microseconds(us))));
}

TEST(CpuSlice, YieldsOncePerSliceOfRunningTime)
{
	CpuSlice slice;
	slice.set_slice(200us);
	EXPECT_FALSE(slice.due(at(0us))); // the first call starts the slice
	EXPECT_FALSE(slice.due(at(150us)));
	EXPECT_TRUE(slice.due(at(200us))); // a whole slice: yield, and a new slice starts here
	EXPECT_FALSE(slice.due(at(399us)));
	EXPECT_TRUE(slice.due(at(400us)));
}

TEST(CpuSlice, RowsOfTenMicrosecondsYieldEveryTwentyRows)
{
	CpuSlice slice;
	slice.set_slice(200us);
	int yields = 0;
	for (int row = 0; row <= 2000; ++row)
		yields += slice.due(at(std::chrono::microseconds(row * 10)));
	EXPECT_EQ(yields, 100); // 20 ms of rows, one yield per 200 us
}

TEST(CpuSlice, ALongRowYieldsOnceNotOncePerMissedSlice)
{
	CpuSlice slice;
	slice.set_slice(200us);
	slice.due(at(0us));
	EXPECT_TRUE(slice.due(at(5000us)));  // 25 slices late: one yield
	EXPECT_FALSE(slice.due(at(5100us))); // and the next slice counts from it
	EXPECT_TRUE(slice.due(at(5200us)));
}

TEST(CpuSlice, AClockThatGoesBackRestartsTheSlice)
{
	CpuSlice slice;
	slice.set_slice(200us);
	slice.due(at(1000us));
	EXPECT_FALSE(slice.due(at(500us)));
	EXPECT_FALSE(slice.due(at(650us)));
	EXPECT_TRUE(slice.due(at(700us)));
}

TEST(CpuSlice, ChangingTheSliceTakesEffectAtOnce)
{
	CpuSlice slice;
	slice.set_slice(1000us);
	slice.due(at(0us));
	EXPECT_FALSE(slice.due(at(300us)));
	slice.set_slice(100us);
	EXPECT_TRUE(slice.due(at(400us)));
	slice.set_slice(0us);
	EXPECT_FALSE(slice.due(at(9000us)));
}
