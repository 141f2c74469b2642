// The backfill worker: a dynamic background worker per job, connected to the job's database as the
// bootstrap superuser, so that it can keep the job's bookkeeping, which no other role may write; each
// batch itself runs as the table's owner in a security-restricted operation (run_batch, owner.cpp).
// Each step is one transaction that runs migration_ext.worker_step(): one keyset batch and its
// checkpoint commit together, so a crash at any point loses or repeats nothing. Between steps the
// worker paces itself and publishes its rate.
//
// Batches commit asynchronously (synchronous_commit = off). That is safe here: a commit lost in a crash
// loses its checkpoint with it, and the batch is simply run again from the previous checkpoint, on rows
// whose conversion is idempotent.
#include <cstring>

#include "core/keyset.hpp"
#include "core/throttle.hpp"
#include "pg/backfill.hpp"
#include "pg/guard.hpp"
#include "pg/pace_point.hpp"
#include "pg/settings.hpp"
#include "pg/wal_segments.hpp"
#include "pg/worker_transaction.hpp"

extern "C" {
#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/pg_type_d.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lmgr.h"
#include "storage/procarray.h"
#include "tcop/tcopprot.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

PG_FUNCTION_INFO_V1(mext_batch_statement);
PG_FUNCTION_INFO_V1(mext_copy_statement);
PG_FUNCTION_INFO_V1(mext_launch_worker);
PG_FUNCTION_INFO_V1(mext_worker_alive);
PGDLLEXPORT void mext_backfill_worker_main(Datum main_arg);
}

using mext::pg::drop_stray_cancel;
using mext::pg::in_transaction;
using mext::pg::StepError;
using mext::pg::wait_ms;

namespace
{

struct WorkerExtra {
	Oid database;
	TransactionId starter; // the transaction that created the job: its row is visible once it ends
};

constexpr int kMaxLockRetries = 3;
constexpr int kMinBatch = 10;

struct StepResult {
	char action[16];
	long scanned;
	long converted;
	int blocked; // live sessions waiting on the batch's row locks just before it committed
};

struct WorkerConfig {
	bool found;
	int batch_size;
	int max_rows_per_second; // 0: no cap
	bool throttle;
};

double now_ms()
{
	return static_cast<double>(GetCurrentTimestamp()) / 1000.0;
}

Datum int8_arg(int64 value)
{
	return Int64GetDatum(value);
}

void worker_begin(int64 job, WorkerConfig *config)
{
	Oid types[1] = {INT8OID};
	Datum values[1] = {int8_arg(job)};
	int rc =
	    SPI_execute_with_args("SELECT batch_size, max_rows_per_second, throttle FROM migration_ext.worker_begin($1)", 1,
	                          types, values, nullptr, false, 1);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "worker_begin failed: %s", SPI_result_code_string(rc));
	config->found = SPI_processed == 1;
	if (!config->found)
		return;
	bool isnull;
	HeapTuple row = SPI_tuptable->vals[0];
	TupleDesc desc = SPI_tuptable->tupdesc;
	config->batch_size = DatumGetInt32(SPI_getbinval(row, desc, 1, &isnull));
	Datum cap = SPI_getbinval(row, desc, 2, &isnull);
	config->max_rows_per_second = isnull ? 0 : DatumGetInt32(cap);
	config->throttle = DatumGetBool(SPI_getbinval(row, desc, 3, &isnull));
}

void worker_step(int64 job, int batch_size, double rate, StepResult *result)
{
	// A batch never waits long for a row lock: a lock timeout is retried with a smaller batch.
	char lock_timeout[64];
	snprintf(lock_timeout, sizeof lock_timeout, "SET LOCAL lock_timeout = %d", mext::pg::lock_timeout_ms);
	SPI_execute(lock_timeout, false, 0);
	SPI_execute("SET LOCAL synchronous_commit = off", false, 0);
	Oid types[3] = {INT8OID, INT4OID, FLOAT8OID};
	Datum values[3] = {int8_arg(job), Int32GetDatum(batch_size), Float8GetDatum(rate)};
	const char nulls[3] = {' ', ' ', rate > 0 ? ' ' : 'n'};
	int rc =
	    SPI_execute_with_args("SELECT action, scanned, converted, blocked FROM migration_ext.worker_step($1, $2, $3)",
	                          3, types, values, nulls, false, 1);
	if (rc != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "worker_step failed: %s", SPI_result_code_string(rc));
	bool isnull;
	HeapTuple row = SPI_tuptable->vals[0];
	TupleDesc desc = SPI_tuptable->tupdesc;
	char *action = SPI_getvalue(row, desc, 1);
	strlcpy(result->action, action ? action : "stop", sizeof result->action);
	result->scanned = DatumGetInt64(SPI_getbinval(row, desc, 2, &isnull));
	result->converted = DatumGetInt64(SPI_getbinval(row, desc, 3, &isnull));
	result->blocked = DatumGetInt32(SPI_getbinval(row, desc, 4, &isnull));
}

void worker_note(int64 job, double rate, const char *reason, const char *warning, int batch_size)
{
	Oid types[5] = {INT8OID, FLOAT8OID, TEXTOID, TEXTOID, INT4OID};
	Datum values[5] = {int8_arg(job), Float8GetDatum(rate), reason ? CStringGetTextDatum(reason) : Datum(0),
	                   warning ? CStringGetTextDatum(warning) : Datum(0), Int32GetDatum(batch_size)};
	const char nulls[5] = {' ', rate > 0 ? ' ' : 'n', reason ? ' ' : 'n', warning ? ' ' : 'n', ' '};
	SPI_execute_with_args("SELECT migration_ext.worker_note($1, $2, $3, $4, $5)", 5, types, values, nulls, false, 0);
}

constexpr int kMaxStandbys = 16;

// What worker_poll() and standby_positions() report, as plain data.
struct Poll {
	char requested[16];
	bool throttle;
	int max_rows_per_second; // 0: no cap
	double batch_time_target_ms;
	double max_replica_lag_s;
	int max_active_backends;
	double max_wal_bytes_per_second;
	double live_duty_cycle;
	double wal_bytes;
	int active_backends;
	bool vacuum_on_table;
	double transactions;
	int standbys;
	char standby_name[kMaxStandbys][64];
	double standby_replay[kMaxStandbys];
	bool standby_readable[kMaxStandbys];
};

double double_column(HeapTuple row, TupleDesc desc, int column, bool *isnull)
{
	char *text = SPI_getvalue(row, desc, column);
	*isnull = text == nullptr;
	return text ? strtod(text, nullptr) : 0.0;
}

void worker_poll(int64 job, Poll *poll)
{
	Oid types[1] = {INT8OID};
	Datum values[1] = {int8_arg(job)};
	int rc = SPI_execute_with_args(
	    "SELECT requested, throttle, max_rows_per_second, batch_time_target_ms, max_replica_lag_s, "
	    "max_active_backends, max_wal_bytes_per_second, wal_bytes, active_backends, vacuum_on_table, transactions, "
	    "live_duty_cycle FROM migration_ext.worker_poll($1)",
	    1, types, values, nullptr, false, 1);
	if (rc != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "worker_poll failed: %s", SPI_result_code_string(rc));
	HeapTuple row = SPI_tuptable->vals[0];
	TupleDesc desc = SPI_tuptable->tupdesc;
	bool isnull;
	char *requested = SPI_getvalue(row, desc, 1);
	strlcpy(poll->requested, requested ? requested : "", sizeof poll->requested);
	poll->throttle = DatumGetBool(SPI_getbinval(row, desc, 2, &isnull));
	Datum cap = SPI_getbinval(row, desc, 3, &isnull);
	poll->max_rows_per_second = isnull ? 0 : DatumGetInt32(cap);
	poll->batch_time_target_ms = double_column(row, desc, 4, &isnull);
	poll->max_replica_lag_s = double_column(row, desc, 5, &isnull);
	poll->max_active_backends = DatumGetInt32(SPI_getbinval(row, desc, 6, &isnull));
	poll->max_wal_bytes_per_second = double_column(row, desc, 7, &isnull);
	poll->wal_bytes = double_column(row, desc, 8, &isnull);
	poll->active_backends = DatumGetInt32(SPI_getbinval(row, desc, 9, &isnull));
	poll->vacuum_on_table = DatumGetBool(SPI_getbinval(row, desc, 10, &isnull));
	poll->transactions = double_column(row, desc, 11, &isnull);
	poll->live_duty_cycle = double_column(row, desc, 12, &isnull);

	rc = SPI_execute("SELECT name, replay_bytes FROM migration_ext.standby_positions()", false, kMaxStandbys);
	poll->standbys = 0;
	if (rc != SPI_OK_SELECT)
		return;
	for (uint64 i = 0; i < SPI_processed && poll->standbys < kMaxStandbys; ++i) {
		int n = poll->standbys++;
		char *name = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);
		strlcpy(poll->standby_name[n], name ? name : "?", sizeof poll->standby_name[n]);
		bool replay_null;
		poll->standby_replay[n] = double_column(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2, &replay_null);
		poll->standby_readable[n] = !replay_null;
	}
}

void worker_failed(int64 job, const StepError &error, char *verdict, std::size_t verdict_size)
{
	Oid types[4] = {INT8OID, TEXTOID, TEXTOID, INT4OID};
	Datum values[4] = {int8_arg(job), CStringGetTextDatum(error.sqlstate), CStringGetTextDatum(error.message),
	                   Int32GetDatum(kMaxLockRetries)};
	int rc = SPI_execute_with_args("SELECT migration_ext.worker_failed($1, $2, $3, $4)", 4, types, values, nullptr,
	                               false, 1);
	char *value = (rc == SPI_OK_SELECT && SPI_processed == 1)
	                  ? SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1)
	                  : nullptr;
	strlcpy(verdict, value ? value : "stop", verdict_size);
}

void report_activity(int64 job, const char *what, long batch_size)
{
	char activity[128];
	snprintf(activity, sizeof activity, "backfill job %lld: %s (batch %ld)", static_cast<long long>(job), what,
	         batch_size);
	pgstat_report_activity(STATE_RUNNING, activity);
}

mext::ThrottleSettings settings_from(const Poll &poll)
{
	mext::ThrottleSettings settings;
	settings.batch_target_ms = poll.batch_time_target_ms;
	settings.max_replica_lag_s = poll.max_replica_lag_s;
	settings.max_active_backends = poll.max_active_backends;
	settings.max_wal_bytes_per_s = poll.max_wal_bytes_per_second;
	settings.live_duty_cycle = poll.live_duty_cycle;
	if (poll.max_rows_per_second > 0)
		settings.max_rows_per_second = poll.max_rows_per_second;
	return settings;
}

mext::Signals signals_from(const Poll &poll, double now_s)
{
	mext::Signals signals;
	signals.now_s = now_s;
	signals.wal_lsn = static_cast<std::uint64_t>(poll.wal_bytes);
	signals.active_backends = poll.active_backends;
	signals.vacuum_on_table = poll.vacuum_on_table;
	signals.transactions = poll.transactions;
	for (int i = 0; i < poll.standbys; ++i) {
		mext::Standby standby{poll.standby_name[i], std::nullopt};
		if (poll.standby_readable[i])
			standby.replay_lsn = static_cast<std::uint64_t>(poll.standby_replay[i]);
		signals.standbys.push_back(standby);
	}
	return signals;
}

// Right after a checkpoint, the first change to every page writes a full copy of it to WAL: for a
// backfill, which touches every page of the table, those images are about a third of its WAL. Every
// synchronous commit of the application flushes whatever WAL precedes it, the backfill's included, and
// standbys replay all of it, so the worker compresses its own images (lz4 where the server has it) and
// leaves wal_compression alone for everyone else. PGC_SUSET: only a superuser may turn this off, as
// only a superuser may change wal_compression itself.
void compress_own_full_page_images()
{
	if (!mext::pg::compress_wal)
		return;
#if PG_VERSION_NUM >= 150000
	if (wal_compression != WAL_COMPRESSION_NONE)
		return; // the server already compresses, with the method its DBA chose
#ifdef USE_LZ4
	const char *method = "lz4";
#else
	const char *method = "pglz";
#endif
#else
	if (wal_compression)
		return;
	const char *method = "on";
#endif
	SetConfigOption("wal_compression", method, PGC_SUSET, PGC_S_SESSION);
}

// The job's loop. Besides plain data it holds the throttle controller, whose memory is the process's:
// every PostgreSQL error is caught inside in_transaction(), and a FATAL (SIGTERM) ends the process.
void run_job(int64 job)
{
	WorkerConfig config{};
	StepError error{};
	if (!in_transaction([&] { worker_begin(job, &config); }, &error)) {
		elog(LOG, "migration_ext: backfill job %lld could not start: %s", static_cast<long long>(job), error.message);
		return;
	}
	if (!config.found)
		return; // finished, cancelled, or already running in another worker

	mext::RateMeter meter;
	mext::ThrottleController controller(mext::ThrottleSettings{}, config.batch_size);
	bool throttle = config.throttle;
	std::optional<int> rate_cap;
	if (config.max_rows_per_second > 0)
		rate_cap = config.max_rows_per_second;
	const int fixed_batch = config.batch_size;
	std::string published_reason, published_warning;
	double published_at = 0;
	int lock_attempt = 0;
	double last_poll = 0;
	mext::WalHeadroom wal_headroom = mext::pg::wal_headroom();
	bool create_wal_ahead = true; // until it fails once
	MemoryContext step_context = AllocSetContextCreate(TopMemoryContext, "migration_ext step", ALLOCSET_DEFAULT_SIZES);

	// Publishes at once when the job starts or stops waiting (or a warning appears or clears), and its
	// reason, rate and batch size at most once a second otherwise.
	auto publish = [&](const std::string &reason, const std::string &warning, bool force) {
		double now = now_ms();
		bool same_state = reason.empty() == published_reason.empty() && warning.empty() == published_warning.empty();
		if (!force && same_state && now - published_at < 1000)
			return;
		published_reason = reason;
		published_warning = warning;
		published_at = now;
		double rate = meter.rows_per_second();
		int size = throttle ? controller.batch_size() : fixed_batch;
		in_transaction(
		    [&] {
			    worker_note(job, rate, reason.empty() ? nullptr : reason.c_str(),
			                warning.empty() ? nullptr : warning.c_str(), size);
		    },
		    nullptr);
	};

	for (;;) {
		drop_stray_cancel();
		CHECK_FOR_INTERRUPTS();
		MemoryContextReset(step_context);
		MemoryContext old = MemoryContextSwitchTo(step_context);
		std::string warning = published_warning;

		// Look at the server before every batch when throttled, and at least once a second anyway
		// (for changed thresholds). An operator's pause or cancel skips the throttle: worker_step obeys it.
		if (throttle || now_ms() - last_poll >= 1000) {
			Poll poll{};
			last_poll = now_ms();
			if (in_transaction([&] { worker_poll(job, &poll); }, &error)) {
				throttle = poll.throttle;
				controller.update_settings(settings_from(poll));
				rate_cap = controller.settings().max_rows_per_second;
				if (throttle && poll.requested[0] == '\0') {
					mext::Decision decision = controller.before_batch(signals_from(poll, now_ms() / 1000.0));
					warning = decision.unreadable;
					if (decision.hold) {
						MemoryContextSwitchTo(old);
						publish(decision.reason, warning, false);
						report_activity(job, decision.reason.c_str(), controller.batch_size());
						wait_ms(decision.wait_ms);
						continue;
					}
				}
			} else {
				warning = std::string("throttle signals unreadable: ") + error.message;
			}
		}

		// The WAL segments this batch will fill, created now rather than by whichever commit reaches them.
		mext::pg::SegmentRange segments = mext::pg::wal_segments_wanted(wal_headroom);
		if (mext::pg::preallocate_wal && create_wal_ahead && segments.from <= segments.to) {
			StepError wal_error{};
			mext::pg::SegmentsCreated made;
			double creating = now_ms();
			if (!in_transaction([&] { made = mext::pg::create_wal_segments(wal_headroom, segments); }, &wal_error)) {
				create_wal_ahead = false;
				ereport(LOG, (errmsg("migration_ext: backfill job %lld could not create WAL segments ahead: %s",
				                     static_cast<long long>(job), wal_error.message),
				              errdetail("The job goes on; the server creates segments when it reaches them.")));
			} else if (made.created > 0) {
				elog(DEBUG1,
				     "migration_ext: backfill job %lld created %d WAL segment(s) ahead (%d with their blocks reserved) "
				     "in %.1f ms",
				     static_cast<long long>(job), made.created, made.reserved, now_ms() - creating);
			}
		}

		int batch_size = throttle ? controller.batch_size() : fixed_batch;
		StepResult step{};
		double started = now_ms();
		report_activity(job, "converting", batch_size);
		double rate = meter.rows_per_second();
		bool ok = in_transaction([&] { worker_step(job, batch_size, rate, &step); }, &error);
		MemoryContextSwitchTo(old);
		pgstat_report_activity(STATE_IDLE, nullptr);

		if (!ok) {
			char verdict[16];
			StepError note_error{};
			if (!in_transaction([&] { worker_failed(job, error, verdict, sizeof verdict); }, &note_error))
				strlcpy(verdict, "stop", sizeof verdict);
			if (std::strcmp(verdict, "retry") != 0) {
				elog(LOG, "migration_ext: backfill job %lld failed: %s", static_cast<long long>(job), error.message);
				return;
			}
			controller.after_lock_conflict();
			report_activity(job, "backing off after a lock conflict", controller.batch_size());
			wait_ms(mext::lock_backoff_ms(++lock_attempt, static_cast<double>(random() % 1000) / 1000.0));
			continue;
		}
		lock_attempt = 0;
		if (std::strcmp(step.action, "stop") == 0)
			return;
		double batch_ms = now_ms() - started;
		mext::Pause pause = throttle ? controller.after_batch(step.scanned, batch_ms, step.blocked)
		                             : mext::pace_for_rate_cap(rate_cap, step.scanned, batch_ms);
		meter.add(step.scanned, (batch_ms + pause.milliseconds) / 1000.0);
		publish(pause.reason, warning, pause.reason != published_reason);
		if (pause.milliseconds > 0) {
			report_activity(job, pause.reason.c_str(), batch_size);
			wait_ms(pause.milliseconds);
		}
	}
}

} // namespace

void mext_backfill_worker_main(Datum main_arg)
{
	int64 job = DatumGetInt64(main_arg);
	WorkerExtra extra;
	std::memcpy(&extra, MyBgworkerEntry->bgw_extra, sizeof extra);

	pqsignal(SIGTERM, die);
	pqsignal(SIGINT, StatementCancelHandler);
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnectionByOid(extra.database, InvalidOid, 0);
	pgstat_report_appname("migration_ext backfill");
	// Nothing a database owner put on its default search_path takes part in the bookkeeping.
	SetConfigOption("search_path", "pg_catalog, pg_temp", PGC_SUSET, PGC_S_OVERRIDE);
	compress_own_full_page_images();
	mext::pg::enable_pacing();

	if (TransactionIdIsValid(extra.starter)) {
		StartTransactionCommand();
		XactLockTableWait(extra.starter, nullptr, nullptr, XLTW_None);
		CommitTransactionCommand();
	}
	run_job(job);
	proc_exit(0);
}

namespace mext::pg
{

void launch_backfill_worker(int64 job, TransactionId starter, pid_t *pid)
{
	BackgroundWorker worker = library_worker("mext_backfill_worker_main", "migration_ext backfill", BGW_NEVER_RESTART);
	snprintf(worker.bgw_name, BGW_MAXLEN, "migration_ext backfill job %lld", static_cast<long long>(job));
	worker.bgw_main_arg = Int64GetDatum(job);
	WorkerExtra extra{MyDatabaseId, starter};
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

namespace
{

// The shape shared by batch_statement() and copy_statement(), from their first six arguments.
struct ShapeArgs {
	const char *relation;
	const char *target;
	const char *source;
	const char *api;
	int keys;
	char **key_names;
	char **key_types;
};

char **text_array_items(ArrayType *array, int *count)
{
	Datum *items;
	deconstruct_array(array, TEXTOID, -1, false, TYPALIGN_INT, &items, nullptr, count);
	char **out = static_cast<char **>(palloc(sizeof(char *) * (*count + 1)));
	for (int i = 0; i < *count; ++i)
		out[i] = TextDatumGetCString(items[i]);
	return out;
}

ShapeArgs shape_args(FunctionCallInfo fcinfo)
{
	for (int i : {0, 1, 2, 3, 5, 6})
		if (PG_ARGISNULL(i))
			ereport(ERROR,
			        (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED), errmsg("batch statement: argument %d is NULL", i + 1)));
	ShapeArgs args;
	int type_count;
	args.key_names = text_array_items(PG_GETARG_ARRAYTYPE_P(1), &args.keys);
	args.key_types = text_array_items(PG_GETARG_ARRAYTYPE_P(2), &type_count);
	if (args.keys != type_count || args.keys == 0)
		ereport(ERROR,
		        (errcode(ERRCODE_INVALID_PARAMETER_VALUE), errmsg("batch statement: key names and types differ")));
	args.relation = text_to_cstring(PG_GETARG_TEXT_PP(0));
	args.target = text_to_cstring(PG_GETARG_TEXT_PP(3));
	args.source = PG_ARGISNULL(4) ? nullptr : text_to_cstring(PG_GETARG_TEXT_PP(4));
	args.api = text_to_cstring(PG_GETARG_TEXT_PP(5));
	return args;
}

mext::BatchShape batch_shape(const ShapeArgs &args)
{
	mext::BatchShape shape;
	shape.relation = args.relation;
	for (int i = 0; i < args.keys; ++i)
		shape.key.push_back(mext::KeyColumn{args.key_names[i], args.key_types[i]});
	shape.target = args.target;
	if (args.source)
		shape.source = std::string(args.source);
	shape.api_schema = args.api;
	return shape;
}

char *palloc_copy(const std::string &sql)
{
	char *copy = nullptr;
	mext::pg::pg_call([&] { copy = pstrdup(sql.c_str()); });
	return copy;
}

} // namespace

// batch_statement(relation, key_names, key_types, target, source, api_schema, after_last_key): the
// keyset batch, from identifiers the caller quoted.
Datum mext_batch_statement(PG_FUNCTION_ARGS)
{
	ShapeArgs args = shape_args(fcinfo);
	bool after_last_key = PG_GETARG_BOOL(6);
	char *statement =
	    mext::pg::guard([&] { return palloc_copy(mext::batch_statement(batch_shape(args), after_last_key)); });
	PG_RETURN_TEXT_P(cstring_to_text(statement));
}

// copy_statement(relation, key_names, key_types, target, source, api_schema, after_last_key,
// target_relation, copy_columns): the batch of a table move, V1 into V2.
Datum mext_copy_statement(PG_FUNCTION_ARGS)
{
	ShapeArgs args = shape_args(fcinfo);
	bool after_last_key = PG_GETARG_BOOL(6);
	if (PG_ARGISNULL(7) || PG_ARGISNULL(8))
		ereport(ERROR,
		        (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED), errmsg("copy_statement: NULL target relation or columns")));
	const char *target_relation = text_to_cstring(PG_GETARG_TEXT_PP(7));
	int column_count;
	char **columns = text_array_items(PG_GETARG_ARRAYTYPE_P(8), &column_count);
	char *statement = mext::pg::guard([&] {
		mext::CopyShape shape;
		shape.batch = batch_shape(args);
		shape.target_relation = target_relation;
		for (int i = 0; i < column_count; ++i)
			shape.copy_columns.emplace_back(columns[i]);
		return palloc_copy(mext::copy_statement(shape, after_last_key));
	});
	PG_RETURN_TEXT_P(cstring_to_text(statement));
}

// worker_alive(pid): is there a live backend with this pid? NULL pid: no.
Datum mext_worker_alive(PG_FUNCTION_ARGS)
{
	if (PG_ARGISNULL(0))
		PG_RETURN_BOOL(false);
	PG_RETURN_BOOL(BackendPidGetProc(PG_GETARG_INT32(0)) != nullptr);
}
