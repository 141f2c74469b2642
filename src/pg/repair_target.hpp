// The migrations repair_value() writes back to, as a backend sees them: the table, the column, the codec,
// the phase and the key that names a row, read once and cached by migration name. A trigger on
// migration_ext.migration sends a relcache invalidation for it (a phase change, a new migration), and any
// invalidation of a target table (its key, its columns) drops that table's entries; the next call reloads.
// Entries dropped in the middle of a transaction are freed when it ends: a call further up the stack may
// still use one. Plain C data and PostgreSQL calls only: everything here may raise.
#pragma once

#include "core/phase.hpp"
#include "pg/postgres_c.hpp"

extern "C" {
#include "executor/spi.h"
}

namespace mext::pg
{

constexpr int kMaxRepairKeys = 32; // INDEX_MAX_KEYS

// The write-back's statements for one list of key argument types, prepared on first use.
struct RepairPlan {
	RepairPlan *next;
	int key_count;
	Oid argument_types[kMaxRepairKeys];
	SPIPlanPtr lock;   // prepared as the caller
	SPIPlanPtr update; // prepared as the table's owner, restricted
};

struct RepairTarget {
	RepairTarget *next;
	bool valid; // false once invalidated: freed at the end of the transaction
	char migration[NAMEDATALEN];
	Oid state_table; // migration_ext.migration, whose rows these are (a reinstalled extension has another)
	Oid relation;
	Oid owner;
	bool partitioned;
	AttrNumber attnum;
	Oid column_type;
	int32 column_typmod;
	char *codec;
	mext::Phase phase;
	bool is_move; // a column move: its legacy state is in another column
	int key_count;
	AttrNumber key_attnums[kMaxRepairKeys];
	Oid key_types[kMaxRepairKeys];
	RepairPlan *plans;
	MemoryContext context; // owns the entry, its strings and plan list
};

// Bumped by every invalidation: a call site that remembered an entry under another generation looks it
// up again by name.
extern uint64 repair_generation;

// The migration's entry, loaded on first use. Raises for a migration that does not exist.
RepairTarget *repair_target(const char *migration);

// The write-back's statements for these key argument types, prepared on first use: the lock as the
// current user, the update as the table's owner in a security-restricted operation.
RepairPlan *repair_plan(RepairTarget *target, int key_count, const Oid *argument_types);

void register_repair_target_callbacks();

} // namespace mext::pg
