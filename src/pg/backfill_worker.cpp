// The backfill worker: a dynamic background worker per job, connected to the job's database as the
// bootstrap superuser, so that it can keep the job's bookkeeping, which no other role may write; each
// batch itself runs as the table's owner in a security-restricted operation (run_batch, owner.cpp).
// Each step is one transaction that runs run_step() (batch_step.cpp): one keyset batch and its
// checkpoint commit together, so a crash at any point loses or repeats nothing. Between steps the
// worker paces itself and publishes its rate.
//
// Batches commit asynchronously (synchronous_commit = off). That is safe here: a commit lost in a crash
// loses its checkpoint with it, and the batch is simply run again from the previous checkpoint, on rows
// whose conversion is idempotent.
#include <cstring>

#include "core/defaults.hpp"
#include "core/space_reuse.hpp"
#include "core/throttle.hpp"
#include "pg/backfill.hpp"
#include "pg/batch_step.hpp"
#include "pg/pace_point.hpp"
#include "pg/reclaim.hpp"
#include "pg/settings.hpp"
#include "pg/worker_calls.hpp"
#include "pg/worker_transaction.hpp"

extern "C" {
#include "access/xact.h"
#include "access/xlog.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/lmgr.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

PGDLLEXPORT void mext_backfill_worker_main(Datum main_arg);
}

using mext::pg::drop_stray_cancel;
using mext::pg::in_transaction;
using mext::pg::StepError;
using mext::pg::wait_ms;

namespace
{

using mext::pg::Poll;
using mext::pg::WorkerConfig;

double now_ms()
{
	return static_cast<double>(GetCurrentTimestamp()) / 1000.0;
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
	signals.own_transactions = poll.own_transactions;
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
	if (wal_compression != WAL_COMPRESSION_NONE)
		return; // the server already compresses, with the method its DBA chose
#ifdef USE_LZ4
	const char *method = "lz4";
#else
	const char *method = "pglz";
#endif
	SetConfigOption("wal_compression", method, PGC_SUSET, PGC_S_SESSION);
}

// A batch never waits long for a row lock (a lock timeout is retried with a smaller batch), and commits
// asynchronously (see the top of this file). `xid` receives the batch's transaction id, by which space
// reuse tells when the old versions it left are free to go.
void batch_in_this_transaction(int64 job, int batch_size, double rate, bool hold_table_end, mext::pg::StepResult *step,
                               TransactionId *xid)
{
	char lock_timeout[32];
	snprintf(lock_timeout, sizeof lock_timeout, "%d", mext::pg::lock_timeout_ms);
	(void)set_config_option("lock_timeout", lock_timeout, PGC_USERSET, PGC_S_SESSION, GUC_ACTION_LOCAL, true, 0, false);
	(void)set_config_option("synchronous_commit", "off", PGC_USERSET, PGC_S_SESSION, GUC_ACTION_LOCAL, true, 0, false);
	mext::pg::run_step(job, batch_size, rate, step, hold_table_end);
	*xid = GetTopTransactionIdIfAny();
}

// Space reuse follows the table the job walks: a new partition starts a new account, sized to it.
void follow_table(const mext::pg::StepResult &step, Oid *table, mext::SpaceReuse *reuse)
{
	if (step.table == *table)
		return;
	*table = step.table;
	reuse->forget();
	reuse->set_round_rows(
	    mext::rows_per_round(step.table_rows, mext::pg::reclaim_every, mext::defaults::reclaim_min_rows));
}

// A job in parts walks nothing itself: twice a second it has every part follow the job's request and
// settings and sums their progress (worker_gather, backfill_parts.sql), until the job stops moving. A
// distributed job's shards must stay where their parts walk them: Citus's moves are held off meanwhile.
void gather_parts(int64 job)
{
	StepError error{};
	bool holding_shards = false;
	for (;;) {
		drop_stray_cancel();
		CHECK_FOR_INTERRUPTS();
		if (!holding_shards) {
			in_transaction([&] { holding_shards = mext::pg::worker_hold_shards(job); }, nullptr);
			bool same = true;
			if (holding_shards && in_transaction([&] { same = mext::pg::worker_check_placements(job); }, &error) &&
			    !same) {
				elog(LOG, "migration_ext: backfill job %lld failed: its shards moved", static_cast<long long>(job));
				return;
			}
		}
		char action[16] = "continue";
		pgstat_report_activity(STATE_RUNNING, "gathering the parts' progress");
		if (!in_transaction([&] { mext::pg::worker_gather(job, action, sizeof action); }, &error))
			elog(LOG, "migration_ext: backfill job %lld could not gather its parts: %s", static_cast<long long>(job),
			     error.message);
		pgstat_report_activity(STATE_IDLE, nullptr);
		if (std::strcmp(action, "stop") == 0)
			return;
		wait_ms(mext::defaults::gather_interval_ms);
	}
}

// Every transaction this process ends, counted as pg_stat_database counts them (commits and rollbacks,
// VACUUM's own included).
unsigned long own_transactions = 0;
void count_own_transaction(XactEvent event, void *)
{
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT)
		++own_transactions;
}

// The job's loop. Besides plain data it holds the throttle controller, whose memory is the process's:
// every PostgreSQL error is caught inside in_transaction(), and a FATAL (SIGTERM) ends the process.
void run_job(int64 job)
{
	WorkerConfig config{};
	StepError error{};
	if (!in_transaction([&] { mext::pg::worker_begin(job, &config); }, &error)) {
		elog(LOG, "migration_ext: backfill job %lld could not start: %s", static_cast<long long>(job), error.message);
		return;
	}
	if (!config.found)
		return; // finished, cancelled, or already running in another worker
	if (config.gathers) {
		gather_parts(job);
		return;
	}

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
	MemoryContext step_context = AllocSetContextCreate(TopMemoryContext, "migration_ext step", ALLOCSET_DEFAULT_SIZES);
	// Space reuse: the committed batches whose old versions no round has freed yet, in the table walked.
	mext::SpaceReuse reuse(mext::defaults::reclaim_min_rows);
	Oid reuse_table = InvalidOid;
	mext::pg::StepResult last_step{};

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
			    mext::pg::worker_note(job, rate, reason.empty() ? nullptr : reason.c_str(),
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
		// (for changed thresholds). An operator's pause or cancel skips the throttle: run_step obeys it.
		if (throttle || now_ms() - last_poll >= 1000) {
			Poll poll{};
			last_poll = now_ms();
			// This process's own transactions, all published now, so that the server's count read next
			// holds exactly these of them: the throttle takes them out of the live workload.
			pgstat_report_stat(true);
			poll.own_transactions = static_cast<double>(own_transactions);
			if (in_transaction([&] { mext::pg::worker_poll(job, &poll); }, &error)) {
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

		int batch_size = throttle ? controller.batch_size() : fixed_batch;
		// A round of space reuse takes the place of a batch, behind the same throttle.
		if (last_step.reuse_space && reuse.due()) {
			MemoryContextSwitchTo(old);
			report_activity(job, "reclaiming space", batch_size);
			mext::pg::reclaim_round(job, {reuse_table, last_step.owner, throttle && controller.sharing(), false},
			                        reuse);
			pgstat_report_activity(STATE_IDLE, nullptr);
			continue;
		}
		mext::pg::StepResult step{};
		TransactionId xid = InvalidTransactionId;
		double started = now_ms();
		report_activity(job, "converting", batch_size);
		double rate = meter.rows_per_second();
		bool hold_table_end = last_step.reuse_space && reuse.pending() > 0;
		bool ok = in_transaction([&] { batch_in_this_transaction(job, batch_size, rate, hold_table_end, &step, &xid); },
		                         &error);
		MemoryContextSwitchTo(old);
		pgstat_report_activity(STATE_IDLE, nullptr);

		if (!ok) {
			char verdict[16];
			StepError note_error{};
			if (!in_transaction([&] { mext::pg::worker_failed(job, error, verdict, sizeof verdict); }, &note_error))
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
		last_step = step;
		if (step.reuse_space) {
			follow_table(step, &reuse_table, &reuse);
			if (TransactionIdIsValid(xid))
				reuse.converted(xid, step.converted);
		} else {
			reuse.forget();
		}
		// The walk of this table is over: a last round frees what it left, then the job moves on.
		if (std::strcmp(step.action, "table_end") == 0) {
			report_activity(job, "reclaiming space", batch_size);
			mext::pg::reclaim_round(job, {reuse_table, step.owner, throttle && controller.sharing(), true}, reuse);
			pgstat_report_activity(STATE_IDLE, nullptr);
			reuse.forget();
			continue;
		}
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
	mext::pg::WorkerArgs extra;
	std::memcpy(&extra, MyBgworkerEntry->bgw_extra, sizeof extra);

	pqsignal(SIGTERM, die);
	pqsignal(SIGINT, StatementCancelHandler);
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnectionByOid(extra.database, InvalidOid, 0);
	pgstat_report_appname("migration_ext backfill");
	// Nothing a database owner put on its default search_path takes part in the bookkeeping.
	SetConfigOption("search_path", "pg_catalog, pg_temp", PGC_SUSET, PGC_S_OVERRIDE);
	// On a Citus node, a part walks shards, which Citus hides from the catalog queries of sessions
	// other than its own unless told not to.
	if (GetConfigOption("citus.override_table_visibility", true, false))
		SetConfigOption("citus.override_table_visibility", "off", PGC_SUSET, PGC_S_OVERRIDE);
	compress_own_full_page_images();
	mext::pg::enable_pacing();
	RegisterXactCallback(count_own_transaction, nullptr);

	if (TransactionIdIsValid(extra.starter)) {
		StartTransactionCommand();
		XactLockTableWait(extra.starter, nullptr, nullptr, XLTW_None);
		CommitTransactionCommand();
	}
	run_job(job);
	proc_exit(0);
}
