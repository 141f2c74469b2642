// Unit tests for the migration phases and the one-way door (src/core/phase.hpp).
#include "core/phase.hpp"

#include <gtest/gtest.h>

#include <stdexcept>
#include <string>
#include <vector>

using mext::DoorState;
using mext::Phase;
using mext::Transition;

namespace
{

::testing::AssertionResult Contains(const std::string &haystack, const std::string &needle)
{
	if (haystack.find(needle) != std::string::npos)
		return ::testing::AssertionSuccess();
	return ::testing::AssertionFailure() << "\"" << haystack << "\" does not contain \"" << needle << "\"";
}

const std::vector<Phase> kAll{Phase::Planned,     Phase::Tolerant,  Phase::Producing,
                              Phase::Backfilling, Phase::Converted, Phase::Contracted};

// ---------------------------------------------------------------------------------------------
// advance_from
// ---------------------------------------------------------------------------------------------

void ExpectAllowed(const Transition &t, Phase to, bool through_door)
{
	EXPECT_TRUE(t.allowed);
	EXPECT_EQ(t.to, to);
	EXPECT_EQ(t.through_door, through_door);
	EXPECT_TRUE(t.refusal.empty()) << t.refusal;
}

TEST(PhaseAdvance, PlannedToTolerant)
{
	ExpectAllowed(mext::advance_from(Phase::Planned), Phase::Tolerant, false);
}

TEST(PhaseAdvance, TolerantToProducingGoesThroughTheDoor)
{
	ExpectAllowed(mext::advance_from(Phase::Tolerant), Phase::Producing, true);
}

TEST(PhaseAdvance, ProducingRefusedWithStartBackfillHint)
{
	Transition t = mext::advance_from(Phase::Producing);
	EXPECT_FALSE(t.allowed);
	EXPECT_FALSE(t.refusal.empty());
	EXPECT_TRUE(Contains(t.hint, "start_backfill"));
}

TEST(PhaseAdvance, BackfillingToConverted)
{
	ExpectAllowed(mext::advance_from(Phase::Backfilling), Phase::Converted, false);
}

TEST(PhaseAdvance, ConvertedToContracted)
{
	ExpectAllowed(mext::advance_from(Phase::Converted), Phase::Contracted, false);
}

TEST(PhaseAdvance, ContractedRefused)
{
	Transition t = mext::advance_from(Phase::Contracted);
	EXPECT_FALSE(t.allowed);
	EXPECT_FALSE(t.refusal.empty());
	EXPECT_FALSE(t.through_door);
}

TEST(PhaseAdvance, OnlyTolerantGoesThroughTheDoor)
{
	for (Phase p : kAll) {
		Transition t = mext::advance_from(p);
		EXPECT_EQ(t.through_door, p == Phase::Tolerant) << mext::phase_name(p);
		if (t.allowed)
			EXPECT_EQ(static_cast<int>(t.to), static_cast<int>(p) + 1)
			    << "advance skips a phase from " << mext::phase_name(p);
	}
}

// ---------------------------------------------------------------------------------------------
// retreat_from
// ---------------------------------------------------------------------------------------------

TEST(PhaseRetreat, PlannedRefused)
{
	Transition t = mext::retreat_from(Phase::Planned);
	EXPECT_FALSE(t.allowed);
	EXPECT_FALSE(t.refusal.empty());
}

TEST(PhaseRetreat, TolerantToPlanned)
{
	ExpectAllowed(mext::retreat_from(Phase::Tolerant), Phase::Planned, false);
}

TEST(PhaseRetreat, ContractedToConverted)
{
	ExpectAllowed(mext::retreat_from(Phase::Contracted), Phase::Converted, false);
}

TEST(PhaseRetreat, PastTheDoorRefusedWithMixedFormatsAndRestore)
{
	for (Phase p : {Phase::Producing, Phase::Backfilling, Phase::Converted}) {
		SCOPED_TRACE(mext::phase_name(p));
		Transition t = mext::retreat_from(p);
		EXPECT_FALSE(t.allowed);
		EXPECT_FALSE(t.refusal.empty());
		EXPECT_TRUE(Contains(t.detail, "mixed formats"));
		EXPECT_TRUE(Contains(t.hint, "restore"));
	}
}

TEST(PhaseRetreat, NeverThroughTheDoor)
{
	for (Phase p : kAll)
		EXPECT_FALSE(mext::retreat_from(p).through_door) << mext::phase_name(p);
}

// ---------------------------------------------------------------------------------------------
// Names
// ---------------------------------------------------------------------------------------------

TEST(PhaseNames, RoundTrip)
{
	const std::vector<std::string> names{"planned", "tolerant", "producing", "backfilling", "converted", "contracted"};
	for (std::size_t i = 0; i < kAll.size(); ++i) {
		EXPECT_EQ(std::string(mext::phase_name(kAll[i])), names[i]);
		EXPECT_EQ(mext::parse_phase(names[i]), kAll[i]);
		EXPECT_EQ(mext::parse_phase(mext::phase_name(kAll[i])), kAll[i]);
	}
}

TEST(PhaseNames, UnknownThrows)
{
	EXPECT_THROW(mext::parse_phase("done"), std::invalid_argument);
	EXPECT_THROW(mext::parse_phase(""), std::invalid_argument);
	EXPECT_THROW(mext::parse_phase("Planned"), std::invalid_argument);
	EXPECT_THROW(mext::parse_phase("planned "), std::invalid_argument);
}

// ---------------------------------------------------------------------------------------------
// door_check
// ---------------------------------------------------------------------------------------------

DoorState ready_door()
{
	DoorState s;
	s.reader_swaps = 2;
	s.readers_applied = 2;
	s.settled = true;
	s.confirmed = true;
	s.migration_name = "orders_v2";
	return s;
}

TEST(PhaseDoor, AllowedToProducingWhenReady)
{
	Transition t = mext::door_check(ready_door());
	EXPECT_TRUE(t.allowed);
	EXPECT_EQ(t.to, Phase::Producing);
	EXPECT_TRUE(t.through_door);
	EXPECT_TRUE(t.refusal.empty());
}

TEST(PhaseDoor, ReadersNotAppliedRefusedFirst)
{
	DoorState s = ready_door();
	s.readers_applied = 1;
	s.settled = false;
	s.waiting_for = "pid 4242";
	s.confirmed = false;
	Transition t = mext::door_check(s);
	EXPECT_FALSE(t.allowed);
	EXPECT_TRUE(Contains(t.refusal, "readers"));
	EXPECT_TRUE(Contains(t.detail, "1 of 2"));
	EXPECT_TRUE(t.detail.find("pid 4242") == std::string::npos) << "reported settling before readers";
	EXPECT_TRUE(t.hint.find("confirm =>") == std::string::npos) << "asked for confirmation before readers";
}

TEST(PhaseDoor, NotSettledRefusedSecondWithWaitingFor)
{
	DoorState s = ready_door();
	s.settled = false;
	s.waiting_for = "pid 4242 (xact started 10:01), standby1";
	s.confirmed = false;
	Transition t = mext::door_check(s);
	EXPECT_FALSE(t.allowed);
	EXPECT_TRUE(Contains(t.refusal, "settled"));
	EXPECT_TRUE(Contains(t.detail, "pid 4242 (xact started 10:01), standby1"));
	EXPECT_TRUE(t.hint.find("confirm =>") == std::string::npos) << "asked for confirmation before settling";
}

TEST(PhaseDoor, NotConfirmedRefusedThirdWithExactCall)
{
	DoorState s = ready_door();
	s.confirmed = false;
	Transition t = mext::door_check(s);
	EXPECT_FALSE(t.allowed);
	EXPECT_FALSE(t.refusal.empty());
	EXPECT_TRUE(Contains(t.hint, "advance_migration('orders_v2', confirm => 'orders_v2')"));
}

// The hint is a call to paste: a name with a quote must come out as a valid SQL literal.
TEST(PhaseDoor, ConfirmHintQuotesTheNameAsALiteral)
{
	DoorState s = ready_door();
	s.confirmed = false;
	s.migration_name = "bob's_fix";
	Transition t = mext::door_check(s);
	EXPECT_FALSE(t.allowed);
	EXPECT_TRUE(Contains(t.hint, "advance_migration('bob''s_fix', confirm => 'bob''s_fix')"));
}

TEST(PhaseDoor, NoReaderSwapsStillNeedsSettleAndConfirm)
{
	DoorState s;
	s.migration_name = "m";
	Transition t = mext::door_check(s); // 0 of 0 readers: nothing to apply
	EXPECT_FALSE(t.allowed);
	EXPECT_TRUE(Contains(t.refusal, "settled"));
	s.settled = true;
	t = mext::door_check(s);
	EXPECT_FALSE(t.allowed);
	EXPECT_TRUE(Contains(t.hint, "confirm => 'm'"));
	s.confirmed = true;
	EXPECT_TRUE(mext::door_check(s).allowed);
}

} // namespace
