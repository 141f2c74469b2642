// The launcher: a static background worker, present only when the library is preloaded. At every
// server start and after every crash restart (its restart time brings it back), and then every
// migration_ext.resume_interval seconds, it starts a short-lived helper in each database that accepts
// connections; the helper relaunches the workers of jobs left running with no worker. Without
// preload, resume_backfill() does the same by hand.
#include <cstring>
#include <vector>

#include "pg/backfill.hpp"
#include "pg/settings.hpp"

extern "C" {
#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_database.h"
#include "catalog/pg_type_d.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

PGDLLEXPORT void mext_launcher_main(Datum main_arg);
PGDLLEXPORT void mext_resumer_main(Datum main_arg);
}

namespace
{

// Plain C data only: this runs between PostgreSQL calls that may longjmp.
int connectable_databases(Oid *out, int capacity)
{
	int count = 0;
	StartTransactionCommand();
	Relation rel = table_open(DatabaseRelationId, AccessShareLock);
	TableScanDesc scan = table_beginscan_catalog(rel, 0, nullptr);
	HeapTuple tuple;
	while ((tuple = heap_getnext(scan, ForwardScanDirection)) != nullptr && count < capacity) {
		auto *database = reinterpret_cast<Form_pg_database>(GETSTRUCT(tuple));
		if (database->datallowconn && !database->datistemplate)
			out[count++] = database->oid;
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	CommitTransactionCommand();
	return count;
}

void start_resumer(Oid database)
{
	BackgroundWorker worker = mext::pg::library_worker("mext_resumer_main", "migration_ext resumer", BGW_NEVER_RESTART);
	snprintf(worker.bgw_name, BGW_MAXLEN, "migration_ext resumer for database %u", database);
	worker.bgw_main_arg = ObjectIdGetDatum(database);
	worker.bgw_notify_pid = MyProcPid;
	BackgroundWorkerHandle *handle;
	if (!RegisterDynamicBackgroundWorker(&worker, &handle)) {
		elog(LOG, "migration_ext: no worker slot to resume jobs in database %u", database);
		return;
	}
	// One database at a time: the helpers are short, and this keeps worker slots for the jobs.
	(void)WaitForBackgroundWorkerShutdown(handle);
}

} // namespace

void mext_launcher_main(Datum)
{
	pqsignal(SIGTERM, die);
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(nullptr, nullptr, 0);
	pgstat_report_appname("migration_ext launcher");

	for (;;) {
		Oid databases[256];
		int count = connectable_databases(databases, 256);
		for (int i = 0; i < count; ++i)
			start_resumer(databases[i]);
		// Sleep until the next look. The latch is also set whenever a resumer starts or stops
		// (bgw_notify_pid), so wake-ups alone never trigger a scan: only the clock does.
		TimestampTz next_scan =
		    GetCurrentTimestamp() + static_cast<TimestampTz>(mext::pg::resume_interval_seconds) * 1000000;
		for (;;) {
			long wait_ms = mext::pg::resume_interval_seconds > 0
			                   ? static_cast<long>((next_scan - GetCurrentTimestamp()) / 1000)
			                   : 60000;
			if (mext::pg::resume_interval_seconds > 0 && wait_ms <= 0)
				break;
			(void)WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, wait_ms, PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
			CHECK_FOR_INTERRUPTS();
			if (ConfigReloadPending) {
				ConfigReloadPending = false;
				ProcessConfigFile(PGC_SIGHUP);
				// A shorter interval takes effect now, not after the sleep begun under the old one.
				next_scan = Min(next_scan, GetCurrentTimestamp() +
				                               static_cast<TimestampTz>(mext::pg::resume_interval_seconds) * 1000000);
			}
		}
	}
}

// Plain C data only. The installed extension's function migration_ext.<name>(), or InvalidOid. It is found
// through pg_depend, never by name: this runs as a superuser in every database, and a role that may
// create schemas there could otherwise plant a function of that name.
Oid installed_function(const char *name)
{
	Oid types[1] = {NAMEOID};
	Datum values[1] = {CStringGetDatum(name)};
	int rc = SPI_execute_with_args(
	    "SELECT p.oid FROM pg_catalog.pg_extension e "
	    "JOIN pg_catalog.pg_depend d ON d.refclassid OPERATOR(pg_catalog.=) "
	    "'pg_catalog.pg_extension'::pg_catalog.regclass AND d.refobjid OPERATOR(pg_catalog.=) e.oid "
	    "AND d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_proc'::pg_catalog.regclass "
	    "AND d.deptype OPERATOR(pg_catalog.=) 'e' "
	    "JOIN pg_catalog.pg_proc p ON p.oid OPERATOR(pg_catalog.=) d.objid "
	    "WHERE e.extname OPERATOR(pg_catalog.=) 'migration_ext' "
	    "AND p.proname OPERATOR(pg_catalog.=) $1 AND p.pronargs OPERATOR(pg_catalog.=) 0",
	    1, types, values, nullptr, true, 1);
	if (rc != SPI_OK_SELECT || SPI_processed != 1)
		return InvalidOid;
	bool isnull;
	return DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
}

// Runs the installed extension's function migration_ext.<name>() (if this version has it) in a transaction
// of its own; logs its result, followed by `done`, when that is positive.
void in_own_transaction(const char *name, const char *done)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	Oid function = installed_function(name);
	if (OidIsValid(function)) {
		int count = DatumGetInt32(OidFunctionCall0(function));
		if (done && count > 0)
			elog(LOG, "migration_ext: %d %s", count, done);
	}
	PopActiveSnapshot();
	SPI_finish();
	CommitTransactionCommand();
}

// Connects to one database as the bootstrap superuser (no role given), relaunches its interrupted jobs
// (each relaunched worker runs as its job's owner), writes the read-repair counters of its migrations
// from shared memory into migration_ext.read_repair (an extension older than 0.2.0 has no such function)
// and, on a Citus coordinator, gives workers added since the coordinator's codecs.
void mext_resumer_main(Datum main_arg)
{
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnectionByOid(DatumGetObjectId(main_arg), InvalidOid, 0);
	pgstat_report_appname("migration_ext resumer");
	// Nothing a database owner put on its default search_path takes part in what follows.
	SetConfigOption("search_path", "pg_catalog, pg_temp", PGC_SUSET, PGC_S_OVERRIDE);

	// Each in a transaction of its own: one that fails (a Citus worker that is down) ends this helper with
	// its error in the log, and the launcher starts it again next time.
	in_own_transaction("resume_interrupted", "interrupted backfill job(s) resumed");
	in_own_transaction("flush_read_repairs", nullptr);
	in_own_transaction("sync_new_workers", "Citus worker(s) given the coordinator's codecs");
	proc_exit(0);
}

namespace mext::pg
{

void register_launcher()
{
	// A restart time brings the launcher back after a crash restart, when interrupted jobs need it most.
	BackgroundWorker worker = library_worker("mext_launcher_main", "migration_ext launcher", 5);
	RegisterBackgroundWorker(&worker);
}

BackgroundWorker library_worker(const char *function, const char *type, int restart_time)
{
	BackgroundWorker worker;
	std::memset(&worker, 0, sizeof worker);
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = restart_time;
	strlcpy(worker.bgw_library_name, "migration_ext", BGW_MAXLEN);
	strlcpy(worker.bgw_function_name, function, BGW_MAXLEN);
	strlcpy(worker.bgw_name, type, BGW_MAXLEN);
	strlcpy(worker.bgw_type, type, BGW_MAXLEN);
	return worker;
}

} // namespace mext::pg
