// Starting a job's worker, and whether it lives: the launch shared by start_backfill(), resume_backfill()
// and the launcher, and the liveness test behind a job's effective state.
#include <cstring>

#include "pg/backfill.hpp"

extern "C" {
#include "access/xact.h"
#include "miscadmin.h"
#include "storage/procarray.h"
#include "utils/acl.h"

PG_FUNCTION_INFO_V1(mext_launch_worker);
PG_FUNCTION_INFO_V1(mext_worker_alive);
}

namespace mext::pg
{

void launch_backfill_worker(int64 job, TransactionId starter, pid_t *pid)
{
	BackgroundWorker worker = library_worker("mext_backfill_worker_main", "migration_ext backfill", BGW_NEVER_RESTART);
	snprintf(worker.bgw_name, BGW_MAXLEN, "migration_ext backfill job %lld", static_cast<long long>(job));
	worker.bgw_main_arg = Int64GetDatum(job);
	WorkerArgs extra{MyDatabaseId, starter};
	static_assert(sizeof extra <= BGW_EXTRALEN, "worker arguments must fit in bgw_extra");
	std::memcpy(worker.bgw_extra, &extra, sizeof extra);
	worker.bgw_notify_pid = MyProcPid;

	BackgroundWorkerHandle *handle;
	if (!RegisterDynamicBackgroundWorker(&worker, &handle))
		ereport(ERROR, (errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED), errmsg("could not start a backfill worker"),
		                errdetail("All background worker slots are in use."),
		                errhint("Raise max_worker_processes (a restart is needed), or wait for other jobs.")));
	BgwHandleStatus status = WaitForBackgroundWorkerStartup(handle, pid);
	if (status != BGWH_STARTED)
		ereport(ERROR, (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE), errmsg("the backfill worker did not start"),
		                errhint(status == BGWH_POSTMASTER_DIED ? "The postmaster died." : "See the server log.")));
}

} // namespace mext::pg

// launch_worker(job): starts a worker for the job. Only the extension's functions call it, once they
// have decided the job may run; the worker checks again (worker_begin).
Datum mext_launch_worker(PG_FUNCTION_ARGS)
{
	if (!superuser())
		ereport(ERROR, (errcode(ERRCODE_INSUFFICIENT_PRIVILEGE), errmsg("permission denied for function launch_worker"),
		                errhint("Start or resume a job with start_backfill() or resume_backfill().")));
	pid_t pid = 0;
	mext::pg::launch_backfill_worker(PG_GETARG_INT64(0), GetTopTransactionIdIfAny(), &pid);
	PG_RETURN_INT32(pid);
}

// worker_alive(pid): is there a live backend with this pid? NULL pid: no.
Datum mext_worker_alive(PG_FUNCTION_ARGS)
{
	if (PG_ARGISNULL(0))
		PG_RETURN_BOOL(false);
	PG_RETURN_BOOL(BackendPidGetProc(PG_GETARG_INT32(0)) != nullptr);
}
