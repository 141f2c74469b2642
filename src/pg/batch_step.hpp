// One step of a backfill job, the whole trip in this process: lock the job's row, obey a pause or
// cancel request, or build the keyset batch (core/keyset) from the catalog as it is now, run it as the
// owner of the job's table in a security-restricted operation, and write its checkpoint, all in the
// caller's transaction, so that the batch and its checkpoint commit together. The worker calls it
// directly; migration_ext.worker_step() is the same step as SQL, for tests that interleave it with
// other sessions.
#pragma once

#include "pg/postgres_c.hpp"

namespace mext::pg
{

struct StepResult {
	char action[16]; // "continue", "stop", or "table_end" (see run_step)
	long scanned;
	long converted;
	long conflicts;
	int blocked; // live sessions waiting on the batch's row locks just before it committed
	// For space reuse (reclaim.hpp): the table walked, its owner and row estimate, and whether the job
	// reuses space (a table move leaves no old versions behind: it never does).
	Oid table;
	Oid owner;
	double table_rows;
	bool reuse_space;
};

// Runs inside a transaction with SPI connected. rate <= 0: no rate to record. With hold_table_end, a
// step that finds the table (partition) walked to its end returns "table_end" and leaves the job where
// it is, so that the worker can reclaim the table's space before the job moves on or is done.
void run_step(int64 job, int batch_size, double rate, StepResult *result, bool hold_table_end = false);

} // namespace mext::pg
