// DDL that must not stop the application: each statement in a transaction of its own, run by a
// background worker, with a short lock_timeout and retried with backoff while the lock is not free.
// An ALTER TABLE ... ADD CONSTRAINT takes ACCESS EXCLUSIVE and keeps it to its transaction's end; run
// together with the VALIDATE in the caller's transaction, every reader and writer of the table would
// wait for the whole validating scan. Here the ADD commits at once, the VALIDATE scans under SHARE
// UPDATE EXCLUSIVE (reads and writes go on), and a strong lock that cannot be had within the timeout
// is given up and tried again, so nobody queues behind it for long.
//
// run_online() waits for the worker and relays its progress as NOTICEs; a cancel of the caller stops
// the worker. The statements are written to be run again: a statement that completed stays done.
#include "core/throttle.hpp"
#include "pg/backfill.hpp"
#include "pg/owner.hpp"
#include "pg/settings.hpp"
#include "pg/worker_transaction.hpp"

extern "C" {
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "storage/dsm.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/procarray.h"
#include "storage/spin.h"
#include "tcop/tcopprot.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/wait_event.h"

PG_FUNCTION_INFO_V1(mext_run_online);
PGDLLEXPORT void mext_online_ddl_main(Datum main_arg);
}

namespace
{

// Shared between run_online() and its worker, in a dynamic shared memory segment.
struct OnlineDdl {
	slock_t mutex;
	Oid database;
	Oid role;
	int caller_pid; // the worker stops when the caller is gone
	int lock_timeout_ms;
	int statement_count;
	char label[NAMEDATALEN];
	// Written by the worker, under mutex.
	uint32 progress_version;
	char progress[512];
	bool finished;
	bool failed;
	char sqlstate[6];
	char message[512];
	int failed_statement;
	// The statements, each ended by '\0'.
	char text[FLEXIBLE_ARRAY_MEMBER];
};

void publish(OnlineDdl *shared, const char *progress)
{
	SpinLockAcquire(&shared->mutex);
	strlcpy(shared->progress, progress, sizeof shared->progress);
	++shared->progress_version;
	SpinLockRelease(&shared->mutex);
	pgstat_report_activity(STATE_RUNNING, progress);
}

void run_statement(const OnlineDdl *shared, const char *statement)
{
	mext::pg::RoleSwitch saved;
	mext::pg::begin_as_role(shared->role, "pg_catalog, pg_temp", &saved);
	int rc = SPI_execute(statement, false, 0);
	if (rc < 0)
		elog(ERROR, "online DDL: %s", SPI_result_code_string(rc));
	mext::pg::end_as_role(saved);
}

} // namespace

void mext_online_ddl_main(Datum main_arg)
{
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	dsm_segment *segment = dsm_attach(DatumGetUInt32(main_arg));
	if (!segment)
		proc_exit(0); // the caller is gone
	auto *shared = static_cast<OnlineDdl *>(dsm_segment_address(segment));
	BackgroundWorkerInitializeConnectionByOid(shared->database, InvalidOid, 0);
	pgstat_report_appname(shared->label);
	SetConfigOption("search_path", "pg_catalog, pg_temp", PGC_SUSET, PGC_S_OVERRIDE);
	char timeout[32];
	snprintf(timeout, sizeof timeout, "%d", shared->lock_timeout_ms);
	SetConfigOption("lock_timeout", timeout, PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("statement_timeout", "0", PGC_SUSET, PGC_S_OVERRIDE);

	const char *statement = shared->text;
	for (int i = 0; i < shared->statement_count; ++i, statement += strlen(statement) + 1) {
		char progress[512];
		for (int attempt = 1;; ++attempt) {
			// A caller that was cancelled terminates this worker; one that died cannot: stop as well,
			// rather than keep asking for a strong lock nobody waits for.
			if (!BackendPidGetProc(shared->caller_pid))
				proc_exit(0);
			snprintf(progress, sizeof progress, "%s: %s", shared->label, statement);
			publish(shared, progress);
			mext::pg::StepError error{};
			if (mext::pg::in_transaction([&] { run_statement(shared, statement); }, &error))
				break;
			// Lock timeouts and deadlocks are retried; anything else ends the DDL with its error.
			if (strcmp(error.sqlstate, "55P03") != 0 && strcmp(error.sqlstate, "40P01") != 0) {
				SpinLockAcquire(&shared->mutex);
				shared->failed = true;
				shared->failed_statement = i;
				strlcpy(shared->sqlstate, error.sqlstate, sizeof shared->sqlstate);
				strlcpy(shared->message, error.message, sizeof shared->message);
				SpinLockRelease(&shared->mutex);
				proc_exit(0);
			}
			double wait = mext::ddl_backoff_ms(attempt, static_cast<double>(random() % 1000) / 1000.0);
			snprintf(progress, sizeof progress, "%s: waiting for a lock (attempt %d, %s), next try in %.0f ms: %s",
			         shared->label, attempt, error.message, wait, statement);
			publish(shared, progress);
			pgstat_report_activity(STATE_IDLE, progress);
			mext::pg::wait_ms(wait);
		}
	}
	SpinLockAcquire(&shared->mutex);
	shared->finished = true;
	SpinLockRelease(&shared->mutex);
	proc_exit(0);
}

// run_online(role, statements, label): runs each statement in its own transaction as `role`,
// restricted, with lock_timeout = migration_ext.ddl_lock_timeout and retries; returns when all are
// done, raises the first error that is not a lock timeout. Only the extension's functions call it.
Datum mext_run_online(PG_FUNCTION_ARGS)
{
	if (!superuser())
		ereport(ERROR, (errcode(ERRCODE_INSUFFICIENT_PRIVILEGE), errmsg("permission denied for function run_online"),
		                errdetail("Only migration_ext's own functions call it.")));
	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2))
		ereport(ERROR, (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED), errmsg("run_online: NULL argument")));
	Datum *items;
	bool *nulls;
	int count;
	deconstruct_array(PG_GETARG_ARRAYTYPE_P(1), TEXTOID, -1, false, TYPALIGN_INT, &items, &nulls, &count);
	if (count == 0)
		PG_RETURN_VOID();
	Size text_bytes = 0;
	for (int i = 0; i < count; ++i) {
		if (nulls[i])
			ereport(ERROR, (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED), errmsg("run_online: NULL statement")));
		text_bytes += VARSIZE_ANY_EXHDR(DatumGetTextPP(items[i])) + 1;
	}
	dsm_segment *segment = dsm_create(offsetof(OnlineDdl, text) + text_bytes, 0);
	auto *shared = static_cast<OnlineDdl *>(dsm_segment_address(segment));
	memset(shared, 0, offsetof(OnlineDdl, text));
	SpinLockInit(&shared->mutex);
	shared->database = MyDatabaseId;
	shared->role = PG_GETARG_OID(0);
	shared->caller_pid = MyProcPid;
	shared->lock_timeout_ms = mext::pg::ddl_lock_timeout_ms;
	shared->statement_count = count;
	text_to_cstring_buffer(PG_GETARG_TEXT_PP(2), shared->label, sizeof shared->label);
	char *cursor = shared->text;
	for (int i = 0; i < count; ++i) {
		text *statement = DatumGetTextPP(items[i]);
		memcpy(cursor, VARDATA_ANY(statement), VARSIZE_ANY_EXHDR(statement));
		cursor += VARSIZE_ANY_EXHDR(statement);
		*cursor++ = '\0';
	}

	BackgroundWorker worker =
	    mext::pg::library_worker("mext_online_ddl_main", "migration_ext online ddl", BGW_NEVER_RESTART);
	snprintf(worker.bgw_name, BGW_MAXLEN, "migration_ext online DDL: %s", shared->label);
	worker.bgw_main_arg = UInt32GetDatum(dsm_segment_handle(segment));
	worker.bgw_notify_pid = MyProcPid;
	BackgroundWorkerHandle *handle;
	if (!RegisterDynamicBackgroundWorker(&worker, &handle))
		ereport(ERROR, (errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED), errmsg("could not start an online DDL worker"),
		                errdetail("All background worker slots are in use."),
		                errhint("Try again when a backfill job has finished, or raise max_worker_processes.")));

	uint32 seen_version = 0;
	PG_TRY();
	{
		for (;;) {
			pid_t pid;
			BgwHandleStatus status = GetBackgroundWorkerPid(handle, &pid);
			char progress[512] = "";
			SpinLockAcquire(&shared->mutex);
			bool fresh = shared->progress_version != seen_version;
			if (fresh) {
				seen_version = shared->progress_version;
				strlcpy(progress, shared->progress, sizeof progress);
			}
			SpinLockRelease(&shared->mutex);
			if (fresh && strstr(progress, "waiting for a lock"))
				ereport(NOTICE, (errmsg("%s", progress)));
			if (status == BGWH_STOPPED)
				break;
			if (status == BGWH_POSTMASTER_DIED)
				ereport(ERROR, (errcode(ERRCODE_ADMIN_SHUTDOWN), errmsg("the postmaster died")));
			(void)WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, 250, PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
			CHECK_FOR_INTERRUPTS();
		}
	}
	PG_CATCH();
	{
		// Cancelled, or the caller's statement_timeout: the DDL stops with it.
		TerminateBackgroundWorker(handle);
		PG_RE_THROW();
	}
	PG_END_TRY();

	if (shared->failed) {
		const char *statement = shared->text;
		for (int i = 0; i < shared->failed_statement; ++i)
			statement += strlen(statement) + 1;
		ereport(ERROR, (errcode(MAKE_SQLSTATE(shared->sqlstate[0], shared->sqlstate[1], shared->sqlstate[2],
		                                      shared->sqlstate[3], shared->sqlstate[4])),
		                errmsg("%s", shared->message), errdetail("While running: %s", statement)));
	}
	if (!shared->finished)
		ereport(ERROR, (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
		                errmsg("the online DDL worker of %s stopped before it finished", shared->label),
		                errhint("See the server log; running the step again continues where it stopped.")));
	dsm_detach(segment);
	PG_RETURN_VOID();
}
