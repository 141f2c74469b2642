// How many legacy values reads converted and wrote back, per migration: migration_status's
// repaired_by_reads. Readers must not queue on a counter row, so a backend keeps its write-backs until its
// transaction ends and, if it commits, adds them to a counter in shared memory (an atomic add, under a
// shared lock): a rolled-back write-back is never counted. The launcher's per-database helper writes the
// counters into migration_ext.read_repair every migration_ext.resume_interval (flush_read_repairs()), which
// survives a restart; what a crash or a shutdown catches in shared memory is lost. Shared memory exists only
// when the library is preloaded (shared_preload_libraries): without it write-backs happen but are not
// counted.
//
// A transaction whose only writes are write-backs commits without waiting for its WAL to reach the disk
// (synchronous_commit = off for that transaction alone): a crash may lose such a commit, which loses
// nothing but the repair (the row still holds its legacy value, which reads convert and the backfill
// converts), and any later commit that flushes WAL flushes it too. A transaction that wrote anything
// else commits as it would have.
#pragma once

#include "pg/postgres_c.hpp"

namespace mext::pg
{

// Before a write-back: notes whether this transaction has written anything but write-backs so far.
void before_repair();

// A write-back of `migration` (an entry of state table `state_table`), committed or not yet.
void record_repair(Oid state_table, const char *migration);

// The write-backs of this transaction that stand (those of a rolled-back savepoint are gone, with the
// subtransaction xids they held).
int repairs_in_transaction();

// From _PG_init: the transaction callbacks, and the shared memory when preloading.
void register_repair_counts(bool preloading);

} // namespace mext::pg
