// Unit tests for repair on read (src/core/repair.hpp): when a read may write back, and the statements.
#include "core/repair.hpp"

#include <gtest/gtest.h>

#include <stdexcept>
#include <string>

using mext::Phase;
using mext::RepairFacts;
using mext::RepairShape;
using mext::RepairSkip;

namespace
{

RepairFacts allowed()
{
	RepairFacts f;
	f.legacy = true;
	f.phase = Phase::Producing;
	f.may_update = true;
	f.budget = 32;
	return f;
}

RepairShape one_key()
{
	RepairShape s;
	s.relation = "app.accounts";
	s.column = "token";
	s.key.push_back({"id", "pg_catalog.int8", "OPERATOR(pg_catalog.=)", false});
	return s;
}

} // namespace

TEST(RepairDecision, AllowedWhenEveryConditionHolds)
{
	EXPECT_EQ(mext::repair_decision(allowed()), RepairSkip::None);
}

TEST(RepairDecision, OnlyPhasesWhereWritersProduceTheNewFormat)
{
	for (Phase p : {Phase::Planned, Phase::Tolerant, Phase::Contracted}) {
		RepairFacts f = allowed();
		f.phase = p;
		EXPECT_EQ(mext::repair_decision(f), RepairSkip::Phase) << mext::phase_name(p);
	}
	for (Phase p : {Phase::Producing, Phase::Backfilling, Phase::Converted}) {
		RepairFacts f = allowed();
		f.phase = p;
		EXPECT_EQ(mext::repair_decision(f), RepairSkip::None) << mext::phase_name(p);
	}
}

TEST(RepairDecision, EachConditionAloneForbidsIt)
{
	struct Case {
		void (*spoil)(RepairFacts &);
		RepairSkip expected;
	};
	const Case cases[] = {
	    {[](RepairFacts &f) { f.legacy = false; }, RepairSkip::NotLegacy},
	    {[](RepairFacts &f) { f.read_only = true; }, RepairSkip::ReadOnly},
	    {[](RepairFacts &f) { f.in_recovery = true; }, RepairSkip::Recovery},
	    {[](RepairFacts &f) { f.parallel = true; }, RepairSkip::Parallel},
	    {[](RepairFacts &f) { f.restricted = true; }, RepairSkip::Restricted},
	    {[](RepairFacts &f) { f.serializable = true; }, RepairSkip::Serializable},
	    {[](RepairFacts &f) { f.may_update = false; }, RepairSkip::Privilege},
	    {[](RepairFacts &f) { f.repaired_in_transaction = 32; }, RepairSkip::Budget},
	    {[](RepairFacts &f) { f.budget = 0; }, RepairSkip::Budget},
	    {[](RepairFacts &f) { f.nested = true; }, RepairSkip::Nested},
	    {[](RepairFacts &f) { f.key_has_null = true; }, RepairSkip::NoKey},
	};
	for (const Case &c : cases) {
		RepairFacts f = allowed();
		c.spoil(f);
		EXPECT_EQ(mext::repair_decision(f), c.expected) << mext::repair_skip_name(c.expected);
	}
}

TEST(RepairDecision, AValueThatPassesThroughNeverLooksFurther)
{
	RepairFacts f;
	f.legacy = false;
	f.read_only = true;
	f.phase = Phase::Tolerant;
	EXPECT_EQ(mext::repair_decision(f), RepairSkip::NotLegacy);
}

TEST(RepairStatements, LockSkipsLockedRowsAndChecksTheValueRead)
{
	EXPECT_EQ(mext::repair_lock_statement(one_key()),
	          "SELECT 1 FROM ONLY app.accounts WHERE id OPERATOR(pg_catalog.=) $1 AND CASE WHEN $2 IS NULL THEN "
	          "token IS NULL ELSE pg_catalog.format('%s', token) OPERATOR(pg_catalog.=) $2 END FOR UPDATE SKIP LOCKED");
}

TEST(RepairStatements, UpdateWritesTheConvertedValueUnderTheSameConditions)
{
	EXPECT_EQ(mext::repair_update_statement(one_key()),
	          "UPDATE ONLY app.accounts SET token = $3 WHERE id OPERATOR(pg_catalog.=) $1 AND CASE WHEN $2 IS NULL "
	          "THEN token IS NULL ELSE pg_catalog.format('%s', token) OPERATOR(pg_catalog.=) $2 END");
}

TEST(RepairStatements, CompositeKeysCastsAndPartitionedTables)
{
	RepairShape s = one_key();
	s.only = false;
	s.key.push_back({"\"Tenant\"", "public.citext", "OPERATOR(public.=)", true});
	const std::string lock = mext::repair_lock_statement(s);
	EXPECT_EQ(lock.rfind("SELECT 1 FROM app.accounts WHERE ", 0), 0u) << lock;
	EXPECT_NE(lock.find("id OPERATOR(pg_catalog.=) $1 AND \"Tenant\" OPERATOR(public.=) CAST($2 AS public.citext)"),
	          std::string::npos)
	    << lock;
	EXPECT_NE(lock.find("WHEN $3 IS NULL"), std::string::npos) << lock;
	EXPECT_NE(mext::repair_update_statement(s).find("SET token = $4 WHERE"), std::string::npos);
}

TEST(RepairStatements, AKeyIsRequired)
{
	RepairShape s = one_key();
	s.key.clear();
	EXPECT_THROW(mext::repair_lock_statement(s), std::invalid_argument);
	EXPECT_THROW(mext::repair_update_statement(s), std::invalid_argument);
}
