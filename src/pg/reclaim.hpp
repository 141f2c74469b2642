// Space reuse between a backfill's batches: a look at the table (the horizon, another VACUUM at work)
// and, when core/space_reuse says it frees enough, a VACUUM of it run by the worker as a top-level
// command, as the table's owner in a security-restricted operation. The outcome goes to the job's row
// (reclaims, rows_reclaimed, space_reclaimed, reclaim_note), which backfill_status shows.
#pragma once

#include "core/space_reuse.hpp"
#include "pg/postgres_c.hpp"

namespace mext::pg
{

struct ReclaimTarget {
	Oid table;            // the leaf the job walks
	Oid owner;            // the owner of the job's table: the VACUUM runs as this role
	bool beside_workload; // the job shares the server with a live workload: its VACUUM is paced like autovacuum's
	bool final_round;     // the walk of this table is over: any freeable row is worth a round
};

enum class ReclaimOutcome {
	waited,    // nothing due
	ran,       // a VACUUM ran
	held_back, // a snapshot older than the converted rows keeps their old versions: nothing to free
	busy,      // autovacuum or another VACUUM works the table: this round is left to it
	failed,    // the VACUUM raised an error (reported in reclaim_note; the job goes on)
};

// Runs between transactions, in a backfill worker only. Starts and commits its own transactions.
ReclaimOutcome reclaim_round(int64 job, const ReclaimTarget &target, mext::SpaceReuse &reuse);

} // namespace mext::pg
