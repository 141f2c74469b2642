#include "core/repair.hpp"

#include <stdexcept>

namespace mext
{

namespace
{

// k1 OPERATOR(pg_catalog.=) $1 AND ... AND <the column still holds the legacy value read>. The text form
// is the type's output function (format('%s')), the form the reader's value was converted from, whatever
// casts to text the type has.
std::string conditions(const RepairShape &shape)
{
	if (shape.key.empty())
		throw std::invalid_argument("a write-back needs at least one key column");
	std::string sql;
	for (std::size_t i = 0; i < shape.key.size(); ++i) {
		const RepairKey &k = shape.key[i];
		const std::string param = "$" + std::to_string(i + 1);
		sql += (i ? " AND " : "") + k.name + " " + k.equality + " " +
		       (k.cast ? "CAST(" + param + " AS " + k.type + ")" : param);
	}
	const std::string legacy = "$" + std::to_string(shape.key.size() + 1);
	sql += " AND CASE WHEN " + legacy + " IS NULL THEN " + shape.column + " IS NULL ELSE pg_catalog.format('%s', " +
	       shape.column + ") OPERATOR(pg_catalog.=) " + legacy + " END";
	return sql;
}

std::string target(const RepairShape &shape)
{
	return (shape.only ? "ONLY " : "") + shape.relation;
}

} // namespace

const char *repair_skip_name(RepairSkip skip)
{
	switch (skip) {
	case RepairSkip::None:
		return "none";
	case RepairSkip::NotLegacy:
		return "not legacy";
	case RepairSkip::Phase:
		return "phase";
	case RepairSkip::ReadOnly:
		return "read-only transaction";
	case RepairSkip::Recovery:
		return "recovery";
	case RepairSkip::Parallel:
		return "parallel mode";
	case RepairSkip::Restricted:
		return "security-restricted operation";
	case RepairSkip::Serializable:
		return "serializable transaction";
	case RepairSkip::Privilege:
		return "no privilege";
	case RepairSkip::Budget:
		return "budget spent";
	case RepairSkip::Nested:
		return "nested";
	case RepairSkip::NoKey:
		return "NULL key";
	}
	return "?";
}

bool writes_back_in(Phase phase)
{
	return phase == Phase::Producing || phase == Phase::Backfilling || phase == Phase::Converted;
}

RepairSkip repair_decision(const RepairFacts &f)
{
	if (!f.legacy)
		return RepairSkip::NotLegacy;
	if (!writes_back_in(f.phase))
		return RepairSkip::Phase;
	if (f.nested)
		return RepairSkip::Nested;
	if (f.in_recovery)
		return RepairSkip::Recovery;
	if (f.read_only)
		return RepairSkip::ReadOnly;
	if (f.parallel)
		return RepairSkip::Parallel;
	if (f.restricted)
		return RepairSkip::Restricted;
	if (f.serializable)
		return RepairSkip::Serializable;
	if (f.key_has_null)
		return RepairSkip::NoKey;
	if (f.repaired_in_transaction >= f.budget)
		return RepairSkip::Budget;
	if (!f.may_update)
		return RepairSkip::Privilege;
	return RepairSkip::None;
}

std::string repair_lock_statement(const RepairShape &shape)
{
	return "SELECT 1 FROM " + target(shape) + " WHERE " + conditions(shape) + " FOR UPDATE SKIP LOCKED";
}

std::string repair_update_statement(const RepairShape &shape)
{
	return "UPDATE " + target(shape) + " SET " + shape.column + " = $" + std::to_string(shape.key.size() + 2) +
	       " WHERE " + conditions(shape);
}

} // namespace mext
