// Repair on read: a reader converts a legacy value and writes the conversion back to its row. What is
// decided here, without PostgreSQL: whether a read may write back at all (the phase, the transaction,
// the caller's rights, the budget), and the two statements of the write-back.
#pragma once

#include <string>
#include <vector>

#include "core/phase.hpp"

namespace mext
{

// Why a read converted its value without writing it back. None: it may write back.
enum class RepairSkip {
	None,
	NotLegacy,    // the value passed through: nothing to write
	Phase,        // before the point of no return (readers that are not tolerant yet would meet the new
	              // format), or contracted
	ReadOnly,     // a read-only transaction
	Recovery,     // a standby
	Parallel,     // parallel mode (a parallel query's leader or worker) forbids writes
	Restricted,   // inside a security-restricted operation (VACUUM, REFRESH, CREATE INDEX, a check as owner)
	Serializable, // a write would add serialization conflicts that can fail the reader's commit
	Privilege,    // the caller may not update the column (or read the key)
	Budget,       // this transaction wrote back as many values as migration_ext.repairs_per_transaction allows
	Nested,       // inside another write-back (a trigger of the write reading the same migration)
	NoKey,        // a key value is NULL: no row is named
};

const char *repair_skip_name(RepairSkip skip);

// What the PostgreSQL layer observed at the call.
struct RepairFacts {
	bool legacy = false;
	Phase phase = Phase::Planned;
	bool read_only = false;
	bool in_recovery = false;
	bool parallel = false;
	bool restricted = false;
	bool serializable = false;
	bool may_update = false; // UPDATE on the column and SELECT on the key and the column
	int repaired_in_transaction = 0;
	int budget = 0; // migration_ext.repairs_per_transaction
	bool nested = false;
	bool key_has_null = false;
};

// The first reason that forbids the write-back, in the order of the cheapest observation first.
RepairSkip repair_decision(const RepairFacts &facts);

// Phases in which writers produce the new format: a converted value written back then is what a writer
// would write. Before the door some readers may not be tolerant yet; contracted holds no legacy value.
bool writes_back_in(Phase phase);

struct RepairKey {
	std::string name;     // quoted identifier
	std::string type;     // the column's type, qualified, safe to splice into a cast
	std::string equality; // OPERATOR(schema.=) of the type's default equality, quoted
	bool cast = false;    // the argument's type differs from the column's: cast it
};

// The write-back's shape. Parameters of both statements: $1..$n the key values (as the reader passed
// them), $n+1 the legacy value read, as text (NULL: the legacy state of a `null` codec); the update also
// takes $n+2, the converted value in the column's type.
struct RepairShape {
	std::string relation; // quoted, schema-qualified
	bool only = true;     // a plain table: ONLY (its unique key does not cover inheriting tables); false for
	                      // a partitioned one, whose unique key spans its partitions
	std::string column;   // quoted
	std::vector<RepairKey> key;
};

// Locks the row named by the key while it still holds the legacy value read, without waiting: a row
// another transaction has locked is skipped (SKIP LOCKED), and in READ COMMITTED a row changed since the
// read is re-checked on its newest version. Returns one row when it locked it. Run as the caller, so
// that its privileges and row-level security decide whether it may lock the row for update.
std::string repair_lock_statement(const RepairShape &shape);

// Writes the converted value into that row, with the same conditions (the lock taken just before keeps
// them true). Run as the table's owner in a security-restricted operation.
std::string repair_update_statement(const RepairShape &shape);

} // namespace mext
