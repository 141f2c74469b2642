// A round of space reuse (see reclaim.hpp). VACUUM cannot run inside a transaction block or a function:
// it commits the transaction it is called in and runs each table in transactions of its own. A
// background worker owns its transactions, so it calls ExecVacuum() between batches the way a backend
// runs a top-level VACUUM: with a transaction started, no SPI connection and no snapshot, PortalContext
// set (VACUUM keeps its memory under it across its transactions), and the transaction VACUUM leaves
// open committed afterwards.
#include "pg/reclaim.hpp"

#include <algorithm>
#include <cstdio>
#include <cstdlib>

#include "pg/worker_transaction.hpp"

extern "C" {
#include "access/relation.h"
#include "access/transam.h"
#include "catalog/pg_type_d.h"
#include "commands/vacuum.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "nodes/parsenodes.h"
#include "parser/parse_node.h"
#include "pgstat.h"
#include "postmaster/autovacuum.h"
#include "storage/lmgr.h"
#include "storage/procarray.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/timestamp.h"
}

#include "pg/spi_row.hpp"

namespace mext::pg
{

namespace
{

// What the round saw of the table before it decided.
struct Look {
	bool exists;
	bool busy; // someone holds SHARE UPDATE EXCLUSIVE: autovacuum, a VACUUM, an ANALYZE, some DDL
	TransactionId horizon;
	double dead_rows; // PostgreSQL's count of dead row versions in the table
	double live_rows;
	double heap_bytes;
};

// Who holds the horizon back, oldest first: a session's snapshot or transaction, a prepared
// transaction, a replication slot, a standby's hot_standby_feedback. Names and pids only.
constexpr const char *kHolderQuery = R"SQL(
SELECT h.who FROM (
	SELECT format('pid %s', a.pid) AS who, pg_catalog.age(coalesce(a.backend_xmin, a.backend_xid)) AS age
	FROM pg_catalog.pg_stat_activity a
	WHERE a.pid <> pg_catalog.pg_backend_pid() AND coalesce(a.backend_xmin, a.backend_xid) IS NOT NULL
	  AND (a.datid IS NULL OR a.datid = (SELECT d.oid FROM pg_catalog.pg_database d
										 WHERE d.datname = pg_catalog.current_database()))
	UNION ALL
	SELECT format('prepared transaction %L', p.gid), pg_catalog.age(p.transaction) FROM pg_catalog.pg_prepared_xacts p
	UNION ALL
	SELECT format('replication slot %L', s.slot_name), pg_catalog.age(s.xmin)
	FROM pg_catalog.pg_replication_slots s WHERE s.xmin IS NOT NULL
	UNION ALL
	SELECT format('standby %s (hot_standby_feedback)', coalesce(nullif(r.application_name, ''), r.pid::text)),
		   pg_catalog.age(r.backend_xmin)
	FROM pg_catalog.pg_stat_replication r WHERE r.backend_xmin IS NOT NULL
) h ORDER BY h.age DESC LIMIT 1
)SQL";

constexpr const char *kTableStats = "SELECT pg_catalog.pg_stat_get_dead_tuples($1)::float8 AS dead, "
                                    "pg_catalog.pg_stat_get_live_tuples($1)::float8 AS live, "
                                    "pg_catalog.pg_relation_size($1)::float8 AS heap";

void read_stats(Oid table, Look *look)
{
	Oid types[1] = {OIDOID};
	Datum values[1] = {ObjectIdGetDatum(table)};
	pgstat_clear_snapshot();
	if (SPI_execute_with_args(kTableStats, 1, types, values, nullptr, true, 1) != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "migration_ext: could not read the statistics of table %u", table);
	SpiRow row;
	look->dead_rows = row.number("dead");
	look->live_rows = row.number("live");
	look->heap_bytes = row.number("heap");
}

void look_at(Oid table, Look *look)
{
	Relation rel = try_relation_open(table, AccessShareLock);
	look->exists = rel != nullptr;
	if (!rel)
		return;
	look->horizon = GetOldestNonRemovableTransactionId(rel);
	relation_close(rel, AccessShareLock);
	// The lock VACUUM takes, tried without waiting: held, autovacuum (or another VACUUM) is at work.
	look->busy = !ConditionalLockRelationOid(table, ShareUpdateExclusiveLock);
	if (!look->busy)
		UnlockRelationOid(table, ShareUpdateExclusiveLock);
	read_stats(table, look);
}

void find_holder(char *out, std::size_t size)
{
	strlcpy(out, "a transaction or snapshot", size);
	if (SPI_execute(kHolderQuery, true, 1) == SPI_OK_SELECT && SPI_processed == 1)
		SpiRow().text("who", out, size, "a transaction or snapshot");
}

void note(int64 job, int rounds, double rows, double bytes, const char *text)
{
	Oid types[5] = {INT8OID, INT4OID, INT8OID, INT8OID, TEXTOID};
	Datum values[5] = {Int64GetDatum(job), Int32GetDatum(rounds), Int64GetDatum(static_cast<int64>(rows)),
	                   Int64GetDatum(static_cast<int64>(bytes)), CStringGetTextDatum(text)};
	if (SPI_execute_with_args("UPDATE migration_ext.backfill_job b SET reclaims = b.reclaims + $2, "
	                          "rows_reclaimed = b.rows_reclaimed + $3, space_reclaimed = b.space_reclaimed + $4, "
	                          "reclaim_note = $5, updated_at = pg_catalog.now() WHERE b.id = $1",
	                          5, types, values, nullptr, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "migration_ext: could not record the space reclaim of backfill job %lld",
		     static_cast<long long>(job));
}

void publish_note(int64 job, int rounds, double rows, double bytes, const char *text)
{
	StepError error{};
	if (!in_transaction([&] { note(job, rounds, rows, bytes, text); }, &error))
		elog(LOG, "migration_ext: backfill job %lld: %s", static_cast<long long>(job), error.message);
}

// Beside a live workload (the throttle shares the server with it), a job's VACUUM is paced like
// autovacuum's (autovacuum_vacuum_cost_delay and _limit, each falling back to the vacuum_cost_* setting as
// autovacuum does): the DBA already chose what background cleanup may cost production. Otherwise it runs as
// a manual VACUUM does, by vacuum_cost_delay and vacuum_cost_limit (flat out by default): nobody is there to
// feel it, and the throttle holds the job (and its rounds) back when somebody comes.
// Session settings of this worker: VACUUM reads them when it starts.
void set_vacuum_cost(bool beside_workload)
{
	double delay = std::atof(GetConfigOptionResetString("vacuum_cost_delay"));
	int limit = std::atoi(GetConfigOptionResetString("vacuum_cost_limit"));
	if (beside_workload) {
		if (autovacuum_vac_cost_delay >= 0)
			delay = autovacuum_vac_cost_delay;
		if (autovacuum_vac_cost_limit > 0)
			limit = autovacuum_vac_cost_limit;
	}
	char value[32];
	snprintf(value, sizeof value, "%g", delay);
	SetConfigOption("vacuum_cost_delay", value, PGC_SUSET, PGC_S_SESSION);
	snprintf(value, sizeof value, "%d", limit);
	SetConfigOption("vacuum_cost_limit", value, PGC_SUSET, PGC_S_SESSION);
}

// VACUUM (SKIP_LOCKED, TRUNCATE false) of one table, as its owner in a security-restricted operation
// (VACUUM itself switches to the owner for the table's work; its permission check is the owner's too).
// TRUNCATE false: giving the end of the table back would need an ACCESS EXCLUSIVE lock on a live table,
// and the space is about to be reused by the rows converted next anyway.
bool run_vacuum(Oid table, Oid owner, bool beside_workload, StepError *error)
{
	set_vacuum_cost(beside_workload);
	MemoryContext caller = CurrentMemoryContext;
	MemoryContext portal = AllocSetContextCreate(TopMemoryContext, "migration_ext reclaim", ALLOCSET_DEFAULT_SIZES);
	MemoryContext saved_portal = PortalContext;
	Oid saved_user;
	int saved_context;
	GetUserIdAndSecContext(&saved_user, &saved_context);
	volatile bool ok = true;

	MemoryContextSwitchTo(portal);
	VacuumStmt *stmt = makeNode(VacuumStmt);
	stmt->options =
	    list_make2(makeDefElem(pstrdup("skip_locked"), nullptr, -1),
	               makeDefElem(pstrdup("truncate"), reinterpret_cast<Node *>(makeString(pstrdup("false"))), -1));
	stmt->rels = list_make1(makeVacuumRelation(nullptr, table, NIL));
	stmt->is_vacuumcmd = true;
	ParseState *pstate = make_parsestate(nullptr);
	MemoryContextSwitchTo(caller);

	PG_TRY();
	{
		PortalContext = portal;
		SetCurrentStatementStartTimestamp();
		StartTransactionCommand();
		SetUserIdAndSecContext(owner, saved_context | SECURITY_LOCAL_USERID_CHANGE | SECURITY_RESTRICTED_OPERATION);
		ExecVacuum(pstate, stmt, true);
		SetUserIdAndSecContext(saved_user, saved_context);
		CommitTransactionCommand();
	}
	PG_CATCH();
	{
		SetUserIdAndSecContext(saved_user, saved_context);
		MemoryContextSwitchTo(caller);
		ErrorData *data = CopyErrorData();
		FlushErrorState();
		AbortCurrentTransaction();
		copy_error(error, data);
		FreeErrorData(data);
		ok = false;
	}
	PG_END_TRY();
	PortalContext = saved_portal;
	MemoryContextSwitchTo(caller);
	MemoryContextDelete(portal);
	return ok;
}

double now_ms()
{
	return static_cast<double>(GetCurrentTimestamp()) / 1000.0;
}

} // namespace

ReclaimOutcome reclaim_round(int64 job, const ReclaimTarget &target, mext::SpaceReuse &reuse)
{
	// The worker's own updates reach PostgreSQL's statistics (and autovacuum's view of the table) here.
	pgstat_report_stat(true);
	Look look{};
	StepError error{};
	if (!in_transaction([&] { look_at(target.table, &look); }, &error) || !look.exists) {
		reuse.forget(); // the table is gone: the next step fails the job with the reason
		return ReclaimOutcome::waited;
	}
	mext::RoundVerdict verdict = reuse.verdict(look.horizon, target.final_round);
	// A snapshot taken while the last batch ran holds the horizon for a moment only (a statement, a look
	// of await_backfill()): look again briefly before reporting the horizon held back.
	for (int attempt = 0; verdict == mext::RoundVerdict::held_back && attempt < 30; ++attempt) {
		wait_ms(10);
		if (!in_transaction([&] { look_at(target.table, &look); }, &error) || !look.exists)
			return ReclaimOutcome::waited;
		verdict = reuse.verdict(look.horizon, target.final_round);
	}
	char text[640];
	if (verdict == mext::RoundVerdict::wait)
		return ReclaimOutcome::waited;
	if (verdict == mext::RoundVerdict::held_back) {
		char holder[128];
		in_transaction([&] { find_holder(holder, sizeof holder); }, nullptr);
		snprintf(text, sizeof text,
		         "space not reclaimed: %s holds a snapshot older than %ld converted rows, whose old versions stay "
		         "until it ends; the job goes on without reuse meanwhile",
		         holder, reuse.pending() - reuse.freeable(look.horizon));
		publish_note(job, 0, 0, 0, text);
		reuse.held_back();
		return ReclaimOutcome::held_back;
	}
	if (look.busy) {
		publish_note(job, 0, 0, 0, "a round was left to the VACUUM (or autovacuum) already working on the table");
		reuse.held_back();
		return ReclaimOutcome::busy;
	}

	double started = now_ms();
	if (!run_vacuum(target.table, target.owner, target.beside_workload, &error)) {
		snprintf(text, sizeof text, "space reclaim failed: %s (SQLSTATE %s); the job goes on", error.message,
		         error.sqlstate);
		elog(LOG, "migration_ext: backfill job %lld: %s", static_cast<long long>(job), text);
		publish_note(job, 0, 0, 0, text);
		reuse.held_back();
		return ReclaimOutcome::failed;
	}
	reuse.reclaimed(look.horizon);
	Look after{};
	if (!in_transaction([&] { read_stats(target.table, &after); }, nullptr))
		after.dead_rows = look.dead_rows;
	// Freed row versions by PostgreSQL's own count (VACUUM sets it to what it had to leave), and their
	// space at the table's mean bytes per row version before the round.
	double freed = std::max(look.dead_rows - after.dead_rows, 0.0);
	double versions = look.dead_rows + look.live_rows;
	double bytes = versions > 0 ? freed * look.heap_bytes / versions : 0;
	snprintf(text, sizeof text, "last round freed %.0f row versions (%.1f MB) in %.1f s", freed, bytes / 1048576.0,
	         (now_ms() - started) / 1000.0);
	publish_note(job, 1, freed, bytes, text);
	return ReclaimOutcome::ran;
}

} // namespace mext::pg
