// Unit tests for the adaptive backfill throttle (src/core/throttle.hpp), driven by simulated signals:
// no database. Batch time is simulated as rows * cost_per_row; WAL positions and standby replay
// positions come from a small simulated primary.
#include "core/throttle.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

using mext::Decision;
using mext::LagClock;
using mext::Pause;
using mext::RateMeter;
using mext::Signals;
using mext::Standby;
using mext::ThrottleController;
using mext::ThrottleSettings;

namespace
{

constexpr double kMiB = 1048576.0;

::testing::AssertionResult Contains(const std::string &haystack, const std::string &needle)
{
	if (haystack.find(needle) != std::string::npos)
		return ::testing::AssertionSuccess();
	return ::testing::AssertionFailure() << "\"" << haystack << "\" does not contain \"" << needle << "\"";
}

// ---------------------------------------------------------------------------------------------
// Batch-size simulation: batch time = rows * cost_per_row.
// ---------------------------------------------------------------------------------------------

struct Step {
	int size_before;
	double batch_ms;
	int size_after;
};

// Runs `batches` full batches through the controller; every batch scans exactly batch_size() rows.
std::vector<Step> simulate(ThrottleController &ctl, double cost_ms_per_row, int batches)
{
	std::vector<Step> steps;
	for (int i = 0; i < batches; ++i) {
		int size = ctl.batch_size();
		double ms = size * cost_ms_per_row;
		ctl.after_batch(size, ms);
		steps.push_back(Step{size, ms, ctl.batch_size()});
	}
	return steps;
}

ThrottleSettings default_settings()
{
	return ThrottleSettings{};
}

// ---------------------------------------------------------------------------------------------
// Signal simulation: a primary that writes WAL at a chosen rate, checked every `tick_ms`, with
// standbys a chosen number of milliseconds behind it.
// ---------------------------------------------------------------------------------------------

class Primary
{
  public:
	// Advances the clock by `ms` while writing `bytes` of WAL.
	void advance(long ms, std::uint64_t bytes)
	{
		now_ms_ += ms;
		lsn_ += bytes;
		history_[now_ms_] = lsn_;
	}

	long now_ms() const { return now_ms_; }
	std::uint64_t lsn() const { return lsn_; }

	// A standby that has replayed everything up to just before what the primary wrote `lag_ms` ago
	// (lag 0: fully caught up). The primary's position at that moment must be in the history and the
	// primary must have written something at that tick.
	Standby standby(const std::string &name, long lag_ms) const
	{
		if (lag_ms == 0)
			return Standby{name, lsn_};
		auto it = history_.find(now_ms_ - lag_ms);
		EXPECT_NE(it, history_.end()) << "no history at " << now_ms_ - lag_ms << " ms";
		return Standby{name, it->second - 1};
	}

	Signals signals(std::vector<Standby> standbys = {}) const
	{
		Signals s;
		s.now_s = now_ms_ / 1000.0;
		s.wal_lsn = lsn_;
		s.standbys = std::move(standbys);
		return s;
	}

  private:
	long now_ms_ = 0;
	std::uint64_t lsn_ = 1000;
	std::map<long, std::uint64_t> history_{{0, 1000}};
};

// Runs a controller through `seconds` of checks every 100 ms with 1000 bytes of WAL per tick and one
// standby that is `lag_ms` behind; returns the last decision.
Decision run_checks(ThrottleController &ctl, Primary &primary, double seconds, long lag_ms,
                    const std::string &standby = "standby1")
{
	Decision last;
	long ticks = std::lround(seconds * 10);
	for (long i = 0; i < ticks; ++i) {
		primary.advance(100, 1000);
		long lag = std::min(lag_ms, primary.now_ms());
		last = ctl.before_batch(primary.signals({primary.standby(standby, lag)}));
	}
	return last;
}

// ---------------------------------------------------------------------------------------------
// Batch sizing
// ---------------------------------------------------------------------------------------------

TEST(ThrottleSizing, GrowsOnlyAfterStableWindowOfUnderTargetBatches)
{
	ThrottleSettings s = default_settings();
	s.stable_batches = 3;
	ThrottleController ctl(s, 1000);
	// 0.01 ms/row: 1000 rows take 10 ms, far under the 200 ms target.
	auto steps = simulate(ctl, 0.01, 6);
	EXPECT_EQ(steps[0].size_after, 1000) << "grew after one batch";
	EXPECT_EQ(steps[1].size_after, 1000) << "grew after two batches";
	EXPECT_EQ(steps[2].size_after, 1200) << "did not grow by x1.2 after three stable batches";
	EXPECT_EQ(steps[3].size_after, 1200) << "the stable window did not restart after growing";
	EXPECT_EQ(steps[4].size_after, 1200);
	EXPECT_EQ(steps[5].size_after, 1440);
}

TEST(ThrottleSizing, StableWindowRespectsSetting)
{
	ThrottleSettings s = default_settings();
	s.stable_batches = 5;
	ThrottleController ctl(s, 1000);
	auto steps = simulate(ctl, 0.01, 5);
	for (int i = 0; i < 4; ++i)
		EXPECT_EQ(steps[i].size_after, 1000) << "grew after " << i + 1 << " of 5 stable batches";
	EXPECT_EQ(steps[4].size_after, 1200);
}

TEST(ThrottleSizing, OverTargetBatchRestartsTheStableWindow)
{
	ThrottleSettings s = default_settings();
	ThrottleController ctl(s, 1000);
	ctl.after_batch(1000, 10);  // stable 1
	ctl.after_batch(1000, 10);  // stable 2
	ctl.after_batch(1000, 250); // over target: shrinks, window restarts
	int shrunk = ctl.batch_size();
	EXPECT_LT(shrunk, 1000);
	ctl.after_batch(shrunk, 10);
	ctl.after_batch(shrunk, 10);
	EXPECT_EQ(ctl.batch_size(), shrunk) << "grew before a full new stable window";
	ctl.after_batch(shrunk, 10);
	EXPECT_GT(ctl.batch_size(), shrunk);
}

TEST(ThrottleSizing, GrowthNeverExceedsFactorAllowingOnlyRowRounding)
{
	ThrottleController ctl(default_settings(), 10);
	auto steps = simulate(ctl, 0.0001, 400); // always far under target
	int grew = 0;
	for (const auto &step : steps) {
		// At most x1.2 (plus at most half a row from rounding to whole rows).
		EXPECT_LE(step.size_after, step.size_before * 1.2 + 0.5) << step.size_before << " -> " << step.size_after;
		if (step.size_after > step.size_before)
			++grew;
	}
	EXPECT_GT(grew, 10);
	EXPECT_EQ(steps.back().size_after, 100000);
}

// Strict reading of "at most x1.2 per step": rounding to whole rows must not push a step above x1.2.
TEST(ThrottleSizing, GrowthNeverExceedsFactorStrictly)
{
	ThrottleController ctl(default_settings(), 10);
	auto steps = simulate(ctl, 0.0001, 400);
	for (const auto &step : steps)
		EXPECT_LE(static_cast<double>(step.size_after), step.size_before * 1.2 + 1e-9)
		    << step.size_before << " -> " << step.size_after << " is x"
		    << static_cast<double>(step.size_after) / step.size_before;
}

TEST(ThrottleSizing, GrowthLimitedByRoomToTarget)
{
	// 19,000 rows at 0.01 ms/row take 190 ms: x1.2 would overshoot the 200 ms target.
	ThrottleController ctl(default_settings(), 19000);
	simulate(ctl, 0.01, 3);
	EXPECT_GT(ctl.batch_size(), 19000);
	EXPECT_LE(ctl.batch_size() * 0.01, 200.0 + 0.01) << "grew past the target: " << ctl.batch_size();
}

TEST(ThrottleSizing, ConvergesNearTargetAndStays)
{
	ThrottleController ctl(default_settings(), 1000);
	auto steps = simulate(ctl, 0.01, 300); // target 200 ms / 0.01 ms per row = 20,000 rows
	for (const auto &step : steps) {
		EXPECT_GE(step.size_after, 10);
		EXPECT_LE(step.size_after, 100000);
	}
	EXPECT_NEAR(ctl.batch_size(), 20000, 1000);
	// Stays put once there: the last 50 batches all within 5% of the target size and the target time.
	for (std::size_t i = steps.size() - 50; i < steps.size(); ++i) {
		EXPECT_NEAR(steps[i].size_after, 20000, 1000) << "batch " << i;
		EXPECT_LE(steps[i].batch_ms, 200.0 * 1.05) << "batch " << i;
	}
	// And it got there within a reasonable number of batches (x1.2 every 3 batches: ~50).
	std::size_t reached = steps.size();
	for (std::size_t i = 0; i < steps.size(); ++i)
		if (steps[i].size_after >= 19000) {
			reached = i;
			break;
		}
	EXPECT_LT(reached, 80u);
}

TEST(ThrottleSizing, SuddenSlowdownShrinksFast)
{
	ThrottleController ctl(default_settings(), 1000);
	simulate(ctl, 0.01, 300);
	ASSERT_NEAR(ctl.batch_size(), 20000, 1000);
	int before = ctl.batch_size();
	// Cost x10: a 20,000-row batch now takes ~2000 ms, 10x the target.
	auto steps = simulate(ctl, 0.1, 20);
	EXPECT_GT(steps[0].batch_ms, 2 * 200.0);
	EXPECT_EQ(steps[0].size_after, (before + 1) / 2) << "a batch far over target did not halve";
	// Every batch more than 2x over target halves.
	for (const auto &step : steps)
		if (step.batch_ms > 400.0)
			EXPECT_LE(step.size_after, (step.size_before + 1) / 2);
	// Down near the new target (2,000 rows) within a handful of batches, never below the clamp.
	int within = -1;
	for (std::size_t i = 0; i < steps.size(); ++i) {
		EXPECT_GE(steps[i].size_after, 10);
		if (within < 0 && steps[i].size_after * 0.1 <= 200.0)
			within = static_cast<int>(i);
	}
	ASSERT_GE(within, 0);
	EXPECT_LE(within, 5);
	EXPECT_NEAR(ctl.batch_size(), 2000, 200);
}

TEST(ThrottleSizing, ModeratelyOverTargetShrinksButNotBelowHalf)
{
	ThrottleController ctl(default_settings(), 1000);
	ctl.after_batch(1000, 300); // 1.5x target
	EXPECT_LT(ctl.batch_size(), 1000);
	EXPECT_GE(ctl.batch_size(), 500);
	EXPECT_NEAR(ctl.batch_size(), 1000 * 200.0 / 300.0, 1.0);
}

TEST(ThrottleSizing, ClampedBetween10And100000)
{
	EXPECT_EQ(ThrottleController(default_settings(), 1).batch_size(), 10);
	EXPECT_EQ(ThrottleController(default_settings(), 0).batch_size(), 10);
	EXPECT_EQ(ThrottleController(default_settings(), 10000000).batch_size(), 100000);

	ThrottleController slow(default_settings(), 40);
	simulate(slow, 1000.0, 20); // every batch is enormously over target
	EXPECT_EQ(slow.batch_size(), 10);

	ThrottleController fast(default_settings(), 50000);
	auto steps = simulate(fast, 0.0000001, 200);
	for (const auto &step : steps)
		EXPECT_LE(step.size_after, 100000);
	EXPECT_EQ(fast.batch_size(), 100000);
}

TEST(ThrottleSizing, UpdateSettingsReclamps)
{
	ThrottleController ctl(default_settings(), 20000);
	ThrottleSettings s = default_settings();
	s.max_batch = 5000;
	ctl.update_settings(s);
	EXPECT_EQ(ctl.batch_size(), 5000);
	s.min_batch = 8000;
	s.max_batch = 9000;
	ctl.update_settings(s);
	EXPECT_EQ(ctl.batch_size(), 8000);
}

TEST(ThrottleSizing, LockConflictHalves)
{
	ThrottleController ctl(default_settings(), 1000);
	ctl.after_lock_conflict();
	EXPECT_EQ(ctl.batch_size(), 500);
	ctl.after_lock_conflict();
	EXPECT_EQ(ctl.batch_size(), 250);
	for (int i = 0; i < 20; ++i)
		ctl.after_lock_conflict();
	EXPECT_EQ(ctl.batch_size(), 10);
}

TEST(ThrottleSizing, LockConflictRestartsStableWindow)
{
	ThrottleController ctl(default_settings(), 1000);
	ctl.after_batch(1000, 10);
	ctl.after_batch(1000, 10);
	ctl.after_lock_conflict();
	ASSERT_EQ(ctl.batch_size(), 500);
	ctl.after_batch(500, 5);
	EXPECT_EQ(ctl.batch_size(), 500) << "grew right after a lock conflict";
}

// ---------------------------------------------------------------------------------------------
// Rate cap pacing and lock backoff
// ---------------------------------------------------------------------------------------------

TEST(ThrottlePacing, RateCapArithmetic)
{
	Pause p = mext::pace_for_rate_cap(500, 1000, 100);
	EXPECT_DOUBLE_EQ(p.milliseconds, 1900.0);
	EXPECT_TRUE(Contains(p.reason, "500"));

	Pause none = mext::pace_for_rate_cap(std::nullopt, 1000, 100);
	EXPECT_EQ(none.milliseconds, 0.0);
	EXPECT_TRUE(none.reason.empty());

	Pause slow_enough = mext::pace_for_rate_cap(500, 1000, 2500);
	EXPECT_EQ(slow_enough.milliseconds, 0.0);
	EXPECT_TRUE(slow_enough.reason.empty());

	Pause empty_batch = mext::pace_for_rate_cap(500, 0, 10);
	EXPECT_EQ(empty_batch.milliseconds, 0.0);
}

TEST(ThrottlePacing, AfterBatchAppliesRateCap)
{
	ThrottleSettings s = default_settings();
	s.max_rows_per_second = 500;
	ThrottleController ctl(s, 1000);
	Pause p = ctl.after_batch(1000, 100);
	EXPECT_DOUBLE_EQ(p.milliseconds, 1900.0);
	EXPECT_TRUE(Contains(p.reason, "500"));

	ThrottleController uncapped(default_settings(), 1000);
	Pause q = uncapped.after_batch(1000, 100);
	EXPECT_EQ(q.milliseconds, 0.0);
	EXPECT_TRUE(q.reason.empty());
}

TEST(ThrottlePacing, LockBackoffBounds)
{
	for (double jitter : {0.0, 0.25, 0.5, 0.999}) {
		double first = mext::lock_backoff_ms(1, jitter);
		EXPECT_GE(first, 500.0) << "jitter " << jitter;
		EXPECT_LE(first, 1000.0) << "jitter " << jitter;
	}
	// Grows with the attempt number...
	EXPECT_GT(mext::lock_backoff_ms(2, 0.5), mext::lock_backoff_ms(1, 0.5));
	EXPECT_GT(mext::lock_backoff_ms(4, 0.5), mext::lock_backoff_ms(2, 0.5));
	double previous = 0;
	for (int attempt = 1; attempt <= 64; ++attempt) {
		double ms = mext::lock_backoff_ms(attempt, 0.999);
		EXPECT_GE(ms, previous) << "attempt " << attempt;
		EXPECT_LE(ms, 60000.0) << "attempt " << attempt;
		EXPECT_TRUE(std::isfinite(ms));
		previous = ms;
	}
	// ...up to the 60 s cap.
	EXPECT_GE(mext::lock_backoff_ms(30, 0.999), 55000.0);
	EXPECT_LE(mext::lock_backoff_ms(1000, 0.999), 60000.0);
	EXPECT_GT(mext::lock_backoff_ms(1000, 0.0), 0.0);
}

// ---------------------------------------------------------------------------------------------
// RateMeter and LagClock
// ---------------------------------------------------------------------------------------------

TEST(ThrottleRateMeter, RowsPerSecondIncludesWaits)
{
	RateMeter meter;
	EXPECT_EQ(meter.rows_per_second(), 0.0);
	meter.add(1000, 1.0);
	meter.add(3000, 1.0);
	EXPECT_DOUBLE_EQ(meter.rows_per_second(), 2000.0);
	meter.add(0, 2.0); // a wait
	EXPECT_DOUBLE_EQ(meter.rows_per_second(), 1000.0);
}

TEST(ThrottleRateMeter, WindowForgetsOldSamples)
{
	RateMeter meter(2);
	meter.add(100, 1.0);
	meter.add(1000, 1.0);
	meter.add(1000, 1.0);
	EXPECT_DOUBLE_EQ(meter.rows_per_second(), 1000.0);
}

TEST(ThrottleLagClock, CaughtUpIsZeroBehindIsTimeSincePrimaryPassed)
{
	LagClock clock;
	clock.record(10.0, 100);
	clock.record(11.0, 200);
	clock.record(12.0, 300);
	EXPECT_EQ(clock.lag_seconds(12.5, 300), 0.0);
	EXPECT_EQ(clock.lag_seconds(12.5, 400), 0.0);
	// The primary was first seen past 250 at 12.0, past 150 at 11.0.
	EXPECT_DOUBLE_EQ(clock.lag_seconds(12.5, 250), 0.5);
	EXPECT_DOUBLE_EQ(clock.lag_seconds(12.5, 199), 1.5);
	EXPECT_DOUBLE_EQ(clock.lag_seconds(12.5, 150), 1.5);
	// Behind the oldest sample: a lower bound.
	EXPECT_DOUBLE_EQ(clock.lag_seconds(12.5, 50), 2.5);
	// Lag keeps growing while the standby stays put.
	EXPECT_DOUBLE_EQ(clock.lag_seconds(14.0, 150), 3.0);
}

TEST(ThrottleLagClock, RepeatedPositionKeepsTheEarlierTime)
{
	LagClock clock;
	clock.record(0.0, 100);
	clock.record(1.0, 100); // no new WAL
	clock.record(2.0, 200);
	EXPECT_DOUBLE_EQ(clock.lag_seconds(3.0, 50), 3.0);
	EXPECT_DOUBLE_EQ(clock.lag_seconds(3.0, 150), 1.0);
}

TEST(ThrottleLagClock, EmptyClockReportsNoLagAndNoRate)
{
	LagClock clock;
	EXPECT_EQ(clock.lag_seconds(5.0, 0), 0.0);
	EXPECT_EQ(clock.wal_bytes_per_second(5.0), 0.0);
	clock.record(5.0, 1000);
	EXPECT_EQ(clock.wal_bytes_per_second(5.0), 0.0) << "one sample is not a rate";
}

TEST(ThrottleLagClock, WalBytesPerSecondSteady)
{
	LagClock clock;
	for (int i = 0; i <= 20; ++i)
		clock.record(i * 0.5, static_cast<std::uint64_t>(i) * 1000000); // 2 MB/s
	EXPECT_NEAR(clock.wal_bytes_per_second(10.0), 2000000.0, 1.0);
}

TEST(ThrottleLagClock, WalBytesPerSecondOnlyCountsTheWindow)
{
	LagClock clock;
	clock.record(0.0, 0);
	clock.record(1.0, 100000000); // a 100 MB burst long ago
	for (int i = 2; i <= 10; ++i)
		clock.record(i, 100000000 + static_cast<std::uint64_t>(i - 1) * 1000000); // then 1 MB/s
	EXPECT_NEAR(clock.wal_bytes_per_second(10.0, 5.0), 1000000.0, 1.0);
}

// When WAL stops, the rate "over the last window_s seconds" must fall: 8 MiB written in [0, 0.25] and
// nothing since is at most 8 MiB / 2.75 s at t = 3, not the 32 MiB/s of the burst itself.
TEST(ThrottleLagClock, WalRateFallsWhenWalStops)
{
	LagClock clock;
	clock.record(0.0, 0);
	clock.record(0.25, static_cast<std::uint64_t>(8 * kMiB));
	for (double t = 0.5; t <= 3.0; t += 0.25)
		clock.record(t, static_cast<std::uint64_t>(8 * kMiB)); // idle: same position
	EXPECT_LE(clock.wal_bytes_per_second(3.0), 8 * kMiB / 2.75 + 1.0);
}

// ---------------------------------------------------------------------------------------------
// before_batch: the signals
// ---------------------------------------------------------------------------------------------

TEST(ThrottleSignals, NothingThrottlesWhenAllIsWell)
{
	ThrottleController ctl(default_settings(), 1000);
	Primary primary;
	Decision d = run_checks(ctl, primary, 3.0, 0);
	EXPECT_FALSE(d.hold);
	EXPECT_TRUE(d.reason.empty());
	EXPECT_TRUE(d.unreadable.empty());
	EXPECT_EQ(d.wait_ms, 0.0);
}

TEST(ThrottleSignals, ReplicaLagHysteresis)
{
	ThrottleController ctl(default_settings(), 1000);
	Primary primary;
	Decision d = run_checks(ctl, primary, 5.0, 1000);
	EXPECT_FALSE(d.hold) << "held at 1.0 s lag before ever exceeding 1.5 s: " << d.reason;

	d = run_checks(ctl, primary, 0.1, 1400);
	EXPECT_FALSE(d.hold) << "held at 1.4 s lag: " << d.reason;

	d = run_checks(ctl, primary, 0.1, 2300);
	ASSERT_TRUE(d.hold) << "did not hold at 2.3 s lag";
	EXPECT_GT(d.wait_ms, 0.0);
	EXPECT_TRUE(Contains(d.reason, "replica lag"));
	EXPECT_TRUE(Contains(d.reason, "2.3"));
	EXPECT_TRUE(Contains(d.reason, "1.5"));
	EXPECT_TRUE(Contains(d.reason, "standby1"));

	d = run_checks(ctl, primary, 0.1, 1000);
	EXPECT_TRUE(d.hold) << "released at 1.0 s, above half the limit";
	EXPECT_TRUE(Contains(d.reason, "standby1"));
	EXPECT_TRUE(Contains(d.reason, "1.0"));

	d = run_checks(ctl, primary, 0.1, 800);
	EXPECT_TRUE(d.hold) << "released at 0.8 s, above 0.75 s";

	d = run_checks(ctl, primary, 0.1, 700);
	EXPECT_FALSE(d.hold) << "still holding at 0.7 s, below 0.75 s: " << d.reason;
	EXPECT_TRUE(d.reason.empty());

	// Released: back to the full limit, so 1.0 s goes on.
	d = run_checks(ctl, primary, 0.1, 1000);
	EXPECT_FALSE(d.hold) << d.reason;
	d = run_checks(ctl, primary, 0.1, 1600);
	EXPECT_TRUE(d.hold);
}

TEST(ThrottleSignals, ReplicaLagReasonExampleFormat)
{
	ThrottleController ctl(default_settings(), 1000);
	Primary primary;
	ASSERT_FALSE(run_checks(ctl, primary, 5.0, 0).hold);
	Decision d = run_checks(ctl, primary, 0.1, 2300); // first check over the limit
	ASSERT_TRUE(d.hold);
	EXPECT_EQ(d.reason, "replica lag 2.3 s > 1.5 s on standby1");
}

// While held in the hysteresis band, a reason that states the resume threshold must state the real
// one (0.75 s), not a rounded 0.8 s the lag may already be under.
TEST(ThrottleSignals, ReplicaLagHeldReasonStatesTrueResumeThreshold)
{
	ThrottleController ctl(default_settings(), 1000);
	Primary primary;
	ASSERT_TRUE(run_checks(ctl, primary, 5.0, 2000).hold);
	Decision d = run_checks(ctl, primary, 0.1, 800);
	ASSERT_TRUE(d.hold);
	if (d.reason.find("resumes below") != std::string::npos)
		EXPECT_TRUE(Contains(d.reason, "0.75")) << "the stated resume threshold is not the real one";
}

TEST(ThrottleSignals, ReplicaLagNamesTheWorstStandby)
{
	ThrottleController ctl(default_settings(), 1000);
	Primary primary;
	Decision d;
	for (int i = 0; i < 50; ++i) {
		primary.advance(100, 1000);
		d = ctl.before_batch(primary.signals({primary.standby("standby1", std::min(200L, primary.now_ms())),
		                                      primary.standby("standby2", std::min(2000L, primary.now_ms())),
		                                      primary.standby("standby3", 0)}));
	}
	ASSERT_TRUE(d.hold);
	EXPECT_TRUE(Contains(d.reason, "standby2"));
	EXPECT_TRUE(Contains(d.reason, "2.0"));
}

TEST(ThrottleSignals, ReplicaLagLimitZeroIgnoresLag)
{
	ThrottleSettings s = default_settings();
	s.max_replica_lag_s = 0;
	ThrottleController ctl(s, 1000);
	Primary primary;
	EXPECT_FALSE(run_checks(ctl, primary, 5.0, 4000).hold);
}

TEST(ThrottleSignals, VacuumHoldsUntilDone)
{
	ThrottleController ctl(default_settings(), 1000);
	Primary primary;
	Signals s = primary.signals();
	s.vacuum_on_table = true;
	for (int i = 0; i < 10; ++i) {
		primary.advance(250, 1000);
		s.now_s = primary.now_ms() / 1000.0;
		s.wal_lsn = primary.lsn();
		Decision d = ctl.before_batch(s);
		ASSERT_TRUE(d.hold) << "check " << i;
		EXPECT_GT(d.wait_ms, 0.0);
		EXPECT_TRUE(Contains(d.reason, "vacuum"));
	}
	primary.advance(250, 1000);
	s = primary.signals();
	s.vacuum_on_table = false;
	Decision d = ctl.before_batch(s);
	EXPECT_FALSE(d.hold) << "vacuum done but still held: " << d.reason;
	EXPECT_TRUE(d.reason.empty());
}

TEST(ThrottleSignals, VacuumIgnoredWhenDisabled)
{
	ThrottleSettings settings = default_settings();
	settings.hold_on_vacuum = false;
	ThrottleController ctl(settings, 1000);
	Signals s;
	s.now_s = 1;
	s.vacuum_on_table = true;
	EXPECT_FALSE(ctl.before_batch(s).hold);
}

TEST(ThrottleSignals, ActiveBackendsHoldAndRelease)
{
	ThrottleController ctl(default_settings(), 1000); // threshold 25
	Signals s;
	s.now_s = 1;
	s.active_backends = 25;
	EXPECT_FALSE(ctl.before_batch(s).hold) << "held at the threshold, not above it";
	s.now_s = 2;
	s.active_backends = 26;
	Decision d = ctl.before_batch(s);
	ASSERT_TRUE(d.hold);
	EXPECT_GT(d.wait_ms, 0.0);
	EXPECT_TRUE(Contains(d.reason, "active backends"));
	EXPECT_TRUE(Contains(d.reason, "26"));
	EXPECT_TRUE(Contains(d.reason, "25"));
	s.now_s = 3;
	s.active_backends = 10;
	d = ctl.before_batch(s);
	EXPECT_FALSE(d.hold) << d.reason;
	EXPECT_TRUE(d.reason.empty());
}

TEST(ThrottleSignals, ActiveBackendsIgnoredWhenZero)
{
	ThrottleSettings settings = default_settings();
	settings.max_active_backends = 0;
	ThrottleController ctl(settings, 1000);
	Signals s;
	s.now_s = 1;
	s.active_backends = 10000;
	EXPECT_FALSE(ctl.before_batch(s).hold);
}

TEST(ThrottleSignals, WalRateCapHoldsAndReleases)
{
	ThrottleSettings settings = default_settings();
	settings.max_wal_bytes_per_s = 1 * kMiB;
	ThrottleController ctl(settings, 1000);
	Primary primary;
	Decision d;
	// 4 MiB/s: 1 MiB every 250 ms.
	for (int i = 0; i < 12; ++i) {
		primary.advance(250, static_cast<std::uint64_t>(kMiB));
		d = ctl.before_batch(primary.signals());
	}
	ASSERT_TRUE(d.hold);
	EXPECT_GT(d.wait_ms, 0.0);
	EXPECT_TRUE(Contains(d.reason, "WAL"));
	EXPECT_TRUE(Contains(d.reason, "4.0")) << "the reason does not give the rate";
	EXPECT_TRUE(Contains(d.reason, "1.0")) << "the reason does not give the cap";
	// Then 0.4 MiB/s for long enough to leave the burst behind.
	for (int i = 0; i < 30; ++i) {
		primary.advance(250, static_cast<std::uint64_t>(0.1 * kMiB));
		d = ctl.before_batch(primary.signals());
	}
	EXPECT_FALSE(d.hold) << d.reason;
	EXPECT_TRUE(d.reason.empty());
}

TEST(ThrottleSignals, NoWalCapNoWalHold)
{
	ThrottleController ctl(default_settings(), 1000);
	Primary primary;
	Decision d;
	for (int i = 0; i < 12; ++i) {
		primary.advance(250, static_cast<std::uint64_t>(100 * kMiB));
		d = ctl.before_batch(primary.signals());
	}
	EXPECT_FALSE(d.hold) << d.reason;
}

// A throttle never sticks: once the WAL stops, the next check where the rate over the window is under
// the cap goes on. 8 MiB in the first 250 ms then nothing: under 4 MiB/s by t = 3 s on any reading.
TEST(ThrottleSignals, WalRateHoldReleasesWhenWalStops)
{
	ThrottleSettings settings = default_settings();
	settings.max_wal_bytes_per_s = 4 * kMiB;
	ThrottleController ctl(settings, 1000);
	Primary primary;
	ctl.before_batch(primary.signals());
	primary.advance(250, static_cast<std::uint64_t>(8 * kMiB));
	ASSERT_TRUE(ctl.before_batch(primary.signals()).hold);
	Decision d;
	while (primary.now_ms() < 3000) {
		primary.advance(250, 0);
		d = ctl.before_batch(primary.signals());
	}
	EXPECT_FALSE(d.hold) << "still held 2.75 s after the WAL stopped: " << d.reason;
}

TEST(ThrottleSignals, AnyOneSignalHoldsEvenIfOthersAreFine)
{
	// Each case: exactly one signal bad, everything else healthy.
	{
		ThrottleController ctl(default_settings(), 1000);
		Primary primary;
		run_checks(ctl, primary, 3.0, 0);
		primary.advance(100, 1000);
		Signals s = primary.signals({primary.standby("standby1", 0)});
		s.vacuum_on_table = true;
		EXPECT_TRUE(ctl.before_batch(s).hold) << "vacuum alone";
	}
	{
		ThrottleController ctl(default_settings(), 1000);
		Primary primary;
		run_checks(ctl, primary, 3.0, 0);
		primary.advance(100, 1000);
		Signals s = primary.signals({primary.standby("standby1", 0)});
		s.active_backends = 100;
		EXPECT_TRUE(ctl.before_batch(s).hold) << "backends alone";
	}
	{
		ThrottleController ctl(default_settings(), 1000);
		Primary primary;
		Decision d = run_checks(ctl, primary, 3.0, 2000);
		EXPECT_TRUE(d.hold) << "replica lag alone";
	}
	{
		ThrottleSettings settings = default_settings();
		settings.max_wal_bytes_per_s = 1000; // 1000 B/s; the simulated primary writes 10,000 B/s
		ThrottleController ctl(settings, 1000);
		Primary primary;
		Decision d = run_checks(ctl, primary, 3.0, 0);
		EXPECT_TRUE(d.hold) << "WAL rate alone";
		EXPECT_TRUE(Contains(d.reason, "WAL"));
	}
}

TEST(ThrottleSignals, UnreadableStandbyIsReportedNotHeld)
{
	ThrottleController ctl(default_settings(), 1000);
	Primary primary;
	run_checks(ctl, primary, 2.0, 0);
	primary.advance(100, 1000);
	Decision d = ctl.before_batch(primary.signals({Standby{"standby1", std::nullopt}}));
	EXPECT_FALSE(d.hold) << d.reason;
	EXPECT_FALSE(d.unreadable.empty());
	EXPECT_TRUE(Contains(d.unreadable, "standby1"));
	EXPECT_TRUE(d.reason.empty());

	// It reconnects: the report goes away.
	primary.advance(100, 1000);
	d = ctl.before_batch(primary.signals({primary.standby("standby1", 0)}));
	EXPECT_FALSE(d.hold);
	EXPECT_TRUE(d.unreadable.empty()) << d.unreadable;
}

TEST(ThrottleSignals, UnreadableReplicationViewIsReportedNotHeld)
{
	ThrottleController ctl(default_settings(), 1000);
	Primary primary;
	primary.advance(100, 1000);
	Signals s = primary.signals();
	s.standbys_readable = false;
	Decision d = ctl.before_batch(s);
	EXPECT_FALSE(d.hold) << d.reason;
	EXPECT_FALSE(d.unreadable.empty());
}

TEST(ThrottleSignals, UnreadableStandbyDoesNotMaskALaggingOne)
{
	ThrottleController ctl(default_settings(), 1000);
	Primary primary;
	Decision d;
	for (int i = 0; i < 40; ++i) {
		primary.advance(100, 1000);
		d = ctl.before_batch(primary.signals(
		    {Standby{"standby1", std::nullopt}, primary.standby("standby2", std::min(2000L, primary.now_ms()))}));
	}
	ASSERT_TRUE(d.hold);
	EXPECT_TRUE(Contains(d.reason, "standby2"));
	EXPECT_TRUE(Contains(d.unreadable, "standby1"));
}

// Reported whatever else throttles: a disconnected standby must show even while vacuum holds.
TEST(ThrottleSignals, UnreadableIsReportedWhileAnotherSignalHolds)
{
	ThrottleController ctl(default_settings(), 1000);
	Primary primary;
	primary.advance(100, 1000);
	Signals s = primary.signals({Standby{"standby1", std::nullopt}});
	s.vacuum_on_table = true;
	Decision d = ctl.before_batch(s);
	EXPECT_TRUE(d.hold);
	EXPECT_TRUE(Contains(d.unreadable, "standby1")) << "unreadable standby not reported while vacuum holds";

	primary.advance(100, 1000);
	s = primary.signals({Standby{"standby1", std::nullopt}});
	s.active_backends = 100;
	d = ctl.before_batch(s);
	EXPECT_TRUE(d.hold);
	EXPECT_TRUE(Contains(d.unreadable, "standby1")) << "unreadable standby not reported while backends hold";
}

TEST(ThrottleSignals, EveryUnreadableStandbyIsReported)
{
	ThrottleController ctl(default_settings(), 1000);
	Primary primary;
	primary.advance(100, 1000);
	Decision d =
	    ctl.before_batch(primary.signals({Standby{"standby1", std::nullopt}, Standby{"standby2", std::nullopt}}));
	EXPECT_FALSE(d.hold);
	EXPECT_TRUE(Contains(d.unreadable, "standby1"));
	EXPECT_TRUE(Contains(d.unreadable, "standby2"));
}

TEST(ThrottleSignals, HoldNeverSticks)
{
	// Each signal in turn goes bad and clears; the very next check after it clears goes on.
	ThrottleSettings settings = default_settings();
	ThrottleController ctl(settings, 1000);
	Primary primary;
	run_checks(ctl, primary, 3.0, 0);

	primary.advance(100, 1000);
	Signals s = primary.signals({primary.standby("standby1", 0)});
	s.vacuum_on_table = true;
	ASSERT_TRUE(ctl.before_batch(s).hold);
	primary.advance(100, 1000);
	s = primary.signals({primary.standby("standby1", 0)});
	EXPECT_FALSE(ctl.before_batch(s).hold);

	primary.advance(100, 1000);
	s = primary.signals({primary.standby("standby1", 0)});
	s.active_backends = 99;
	ASSERT_TRUE(ctl.before_batch(s).hold);
	primary.advance(100, 1000);
	s = primary.signals({primary.standby("standby1", 0)});
	EXPECT_FALSE(ctl.before_batch(s).hold);

	ASSERT_TRUE(run_checks(ctl, primary, 0.1, 2000).hold);
	EXPECT_FALSE(run_checks(ctl, primary, 0.1, 0).hold);
}

} // namespace

// The live workload's share: with other transactions committing, the job works at most
// live_duty_cycle of the time; without them it runs flat out.
TEST(ThrottleLiveWorkload, SharesTheMachineWithALiveWorkload)
{
	mext::ThrottleSettings settings;
	settings.live_duty_cycle = 0.5;
	mext::ThrottleController controller(settings, 1000);
	mext::Signals signals;
	double tx = 0;
	for (int second = 0; second <= 5; ++second) {
		signals.now_s = second;
		signals.transactions = tx;
		tx += 500; // 500 transactions a second besides the job
		controller.before_batch(signals);
	}
	EXPECT_GT(controller.workload_tps(), 400);
	mext::Pause pause = controller.after_batch(1000, 100);
	EXPECT_DOUBLE_EQ(pause.milliseconds, 100);
	EXPECT_NE(pause.reason.find("live workload"), std::string::npos) << pause.reason;
}

TEST(ThrottleLiveWorkload, AnIdleServerGetsNoPause)
{
	mext::ThrottleController controller(mext::ThrottleSettings{}, 1000);
	mext::Signals signals;
	for (int second = 0; second <= 5; ++second) {
		signals.now_s = second;
		signals.transactions = 7; // nothing commits
		controller.before_batch(signals);
	}
	EXPECT_DOUBLE_EQ(controller.after_batch(1000, 100).milliseconds, 0);
}

// The job's own transactions (its batches, looks, notes and space-reuse rounds, many a second) are not a
// workload: an otherwise idle server gets no pause however many the job commits, and a real workload is
// still seen beside them.
TEST(ThrottleLiveWorkload, TheJobsOwnTransactionsAreNoWorkload)
{
	mext::ThrottleController controller(mext::ThrottleSettings{}, 1000);
	mext::Signals signals;
	for (int second = 0; second <= 5; ++second) {
		signals.now_s = second;
		signals.transactions = 7 + 150.0 * second; // all of them the job's own
		signals.own_transactions = 150.0 * second;
		controller.before_batch(signals);
	}
	EXPECT_LT(controller.workload_tps(), 1);
	EXPECT_DOUBLE_EQ(controller.after_batch(1000, 100).milliseconds, 0);

	mext::ThrottleController busy(mext::ThrottleSettings{}, 1000);
	for (int second = 0; second <= 5; ++second) {
		signals.now_s = second;
		signals.transactions = 7 + 150.0 * second + 40.0 * second; // 40 a second of others
		signals.own_transactions = 150.0 * second;
		busy.before_batch(signals);
	}
	EXPECT_NEAR(busy.workload_tps(), 40, 1);
	EXPECT_GT(busy.after_batch(1000, 100).milliseconds, 0);
}

// PostgreSQL publishes transaction counts at most once a second per backend: for the first second of its
// job the controller cannot tell a busy server from an idle one, and shares as if a workload were live.
TEST(ThrottleLiveWorkload, SharesUntilTheWorkloadIsMeasured)
{
	mext::ThrottleController controller(mext::ThrottleSettings{}, 1000);
	mext::Signals signals;
	signals.transactions = 7; // nothing published yet, busy or not
	signals.now_s = 100;
	controller.before_batch(signals);
	mext::Pause pause = controller.after_batch(1000, 30);
	EXPECT_DOUBLE_EQ(pause.milliseconds, 30); // half of the time
	EXPECT_NE(pause.reason.find("until the workload is measured"), std::string::npos) << pause.reason;
	// ... with the live batch target: a 30 ms batch is over the 10 ms target, so the next one is smaller.
	EXPECT_LT(controller.batch_size(), 1000);

	signals.now_s = 100.9;
	controller.before_batch(signals);
	EXPECT_GT(controller.after_batch(500, 10).milliseconds, 0);

	// A second of an unchanged counter: the server is idle, the job runs flat out.
	signals.now_s = 101.0;
	controller.before_batch(signals);
	mext::Pause idle = controller.after_batch(500, 10);
	EXPECT_DOUBLE_EQ(idle.milliseconds, 0);
	EXPECT_EQ(idle.reason, "");
}

TEST(ThrottleLiveWorkload, AWarmUpOfZeroTrustsTheFirstLook)
{
	mext::ThrottleSettings settings;
	settings.workload_warmup_s = 0;
	mext::ThrottleController controller(settings, 1000);
	mext::Signals signals;
	signals.now_s = 100;
	controller.before_batch(signals);
	EXPECT_DOUBLE_EQ(controller.after_batch(1000, 30).milliseconds, 0);
}

TEST(ThrottleLiveWorkload, BlockedSessionsHalveTheBatchAndRest)
{
	mext::ThrottleController controller(mext::ThrottleSettings{}, 8000);
	mext::Pause pause = controller.after_batch(8000, 40, 2);
	EXPECT_EQ(controller.batch_size(), 4000);
	EXPECT_DOUBLE_EQ(pause.milliseconds, 40);
	EXPECT_NE(pause.reason.find("2 live sessions waited"), std::string::npos) << pause.reason;
}

TEST(DdlBackoff, StartsShortDoublesAndCaps)
{
	EXPECT_DOUBLE_EQ(mext::ddl_backoff_ms(1, 1.0), 100.0);
	EXPECT_DOUBLE_EQ(mext::ddl_backoff_ms(2, 1.0), 200.0);
	EXPECT_DOUBLE_EQ(mext::ddl_backoff_ms(6, 1.0), 3200.0);
	EXPECT_DOUBLE_EQ(mext::ddl_backoff_ms(7, 1.0), 5000.0);
	EXPECT_DOUBLE_EQ(mext::ddl_backoff_ms(60, 1.0), 5000.0);
	EXPECT_DOUBLE_EQ(mext::ddl_backoff_ms(1, 0.0), 50.0);
	EXPECT_DOUBLE_EQ(mext::ddl_backoff_ms(0, 2.0), 100.0);
}
