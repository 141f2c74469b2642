#include "core/wal_flush_pacer.hpp"

#include <gtest/gtest.h>

using mext::WalFlushPacer;

TEST(WalFlushPacer, ZeroNeverFlushes)
{
	WalFlushPacer pacer;
	for (std::uint64_t end = 0; end < (64u << 20); end += 4096)
		EXPECT_FALSE(pacer.due(end));
}

TEST(WalFlushPacer, FlushesOncePerAmountWritten)
{
	WalFlushPacer pacer;
	pacer.set_after(256 * 1024);
	const std::uint64_t start = 0x7B000000; // a server's WAL does not start at 0
	pacer.flushed(start);
	EXPECT_FALSE(pacer.due(start + 255 * 1024));
	EXPECT_TRUE(pacer.due(start + 256 * 1024));
	pacer.flushed(start + 300 * 1024);
	EXPECT_FALSE(pacer.due(start + 300 * 1024)); // just flushed
	EXPECT_FALSE(pacer.due(start + 555 * 1024));
	EXPECT_TRUE(pacer.due(start + 556 * 1024));
}

TEST(WalFlushPacer, CountsFromTheFirstPositionItSees)
{
	// Before anything was flushed, the first record's end is far beyond 0: flush at once, then pace.
	WalFlushPacer pacer;
	pacer.set_after(64 * 1024);
	EXPECT_TRUE(pacer.due(0x7B000040));
	pacer.flushed(0x7B000040);
	EXPECT_FALSE(pacer.due(0x7B000040 + 1000));
}

TEST(WalFlushPacer, NoRecordYetIsNeverDue)
{
	// At the start of a transaction the end of the worker's last record reads 0.
	WalFlushPacer pacer;
	pacer.set_after(1);
	pacer.flushed(0x1000000);
	EXPECT_FALSE(pacer.due(0));
}

TEST(WalFlushPacer, NeverMovesBackwards)
{
	WalFlushPacer pacer;
	pacer.set_after(1024);
	pacer.flushed(10 * 1024);
	pacer.flushed(2 * 1024); // a stale position changes nothing
	EXPECT_FALSE(pacer.due(10 * 1024 + 1023));
	EXPECT_TRUE(pacer.due(11 * 1024));
}

TEST(WalFlushPacer, ALowerSettingTakesEffectAtOnce)
{
	// A reload (SIGHUP) changes the setting under a running worker.
	WalFlushPacer pacer;
	pacer.set_after(1 << 20);
	pacer.flushed(1 << 30);
	EXPECT_FALSE(pacer.due((1 << 30) + (128 << 10)));
	pacer.set_after(64 << 10);
	EXPECT_TRUE(pacer.due((1 << 30) + (128 << 10)));
	pacer.set_after(0);
	EXPECT_FALSE(pacer.due((1 << 30) + (128 << 10)));
}
