// The backfill's processes: the per-job worker and, when the library is preloaded, the launcher that
// resumes interrupted jobs after a restart.
#pragma once

#include "pg/postgres_c.hpp"

extern "C" {
#include "postmaster/bgworker.h"
}

namespace mext::pg
{

// What a job's worker is started with, besides the job's id (in bgw_extra).
struct WorkerArgs {
	Oid database;
	TransactionId starter; // the transaction that created the job: its row is visible once it ends
};

// Registers a dynamic worker for the job and waits until it has started. The worker first waits for
// `starter` (the transaction that created or re-queued the job) to end.
void launch_backfill_worker(int64 job, TransactionId starter, pid_t *pid);

// From _PG_init under shared_preload_libraries.
void register_launcher();

// A background worker of this library: the fields every one of its workers shares.
BackgroundWorker library_worker(const char *function, const char *type, int restart_time);

} // namespace mext::pg
