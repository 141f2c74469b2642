#include "pg/repair_counts.hpp"

#include <cstring>

extern "C" {
#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/namespace.h"
#include "catalog/pg_type_d.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/guc.h"
#include "utils/memutils.h"

PG_FUNCTION_INFO_V1(mext_unflushed_repairs);
PG_FUNCTION_INFO_V1(mext_flush_read_repairs);
}

namespace mext::pg
{

namespace
{

constexpr int kSlots = 1024; // migrations counted at once in the cluster
constexpr int kPending = 64; // a transaction's write-backs (at most max_repairs_per_transaction)
constexpr const char *kName = "migration_ext repair counts";

// One migration's committed write-backs not yet written to migration_ext.read_repair. A slot is named by
// its database, the state table of the extension there (a reinstalled extension is another one) and the
// migration's name; database InvalidOid: free.
struct Slot {
	Oid database;
	Oid state_table;
	char migration[NAMEDATALEN];
	pg_atomic_uint64 repaired;
};

struct Counters {
	LWLock *lock; // shared: find a slot and add; exclusive: take or free one
	int used;     // slots [0, used) have been taken at some point
	Slot slots[kSlots];
};

Counters *counters = nullptr;
shmem_request_hook_type previous_request_hook = nullptr;
shmem_startup_hook_type previous_startup_hook = nullptr;

// This transaction's write-backs, each at the subtransaction level that made it.
struct Pending {
	Oid state_table;
	char migration[NAMEDATALEN];
	int level;
};
Pending pending[kPending];
int pending_count = 0;
bool only_repairs = false;                  // this transaction's writes so far are write-backs alone
XLogRecPtr repairs_end = InvalidXLogRecPtr; // the end of the WAL its last write-back wrote

// What flush_read_repairs() moved to the table, subtracted from the counters once that commits.
struct Flushed {
	int slot;
	uint64 amount;
};
Flushed *flushed = nullptr; // kSlots entries in TopMemoryContext
int flushed_count = 0;

void request_shmem()
{
	if (previous_request_hook)
		previous_request_hook();
	RequestAddinShmemSpace(sizeof(Counters));
	RequestNamedLWLockTranche(kName, 1);
}

void startup_shmem()
{
	if (previous_startup_hook)
		previous_startup_hook();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	bool found;
	counters = static_cast<Counters *>(ShmemInitStruct(kName, sizeof(Counters), &found));
	if (!found) {
		counters->lock = &(GetNamedLWLockTranche(kName))->lock;
		counters->used = 0;
		for (Slot &slot : counters->slots) {
			slot.database = InvalidOid;
			pg_atomic_init_u64(&slot.repaired, 0);
		}
	}
	LWLockRelease(AddinShmemInitLock);
}

bool slot_is(const Slot &slot, Oid state_table, const char *migration)
{
	return slot.database == MyDatabaseId && slot.state_table == state_table &&
	       std::strncmp(slot.migration, migration, NAMEDATALEN) == 0;
}

// The migration's slot, or -1. Under the lock, in either mode.
int find_slot(Oid state_table, const char *migration)
{
	for (int i = 0; i < counters->used; ++i)
		if (slot_is(counters->slots[i], state_table, migration))
			return i;
	return -1;
}

// Adds a committed transaction's write-backs. No error may escape: the transaction has committed.
void add_committed()
{
	for (int i = 0; i < pending_count; ++i) {
		const Pending &p = pending[i];
		LWLockAcquire(counters->lock, LW_SHARED);
		int slot = find_slot(p.state_table, p.migration);
		if (slot >= 0)
			pg_atomic_fetch_add_u64(&counters->slots[slot].repaired, 1);
		LWLockRelease(counters->lock);
		if (slot >= 0)
			continue;
		LWLockAcquire(counters->lock, LW_EXCLUSIVE);
		slot = find_slot(p.state_table, p.migration);
		for (int j = 0; slot < 0 && j < kSlots; ++j)
			if (counters->slots[j].database == InvalidOid) {
				Slot &fresh = counters->slots[j];
				fresh.database = MyDatabaseId;
				fresh.state_table = p.state_table;
				strlcpy(fresh.migration, p.migration, NAMEDATALEN);
				pg_atomic_write_u64(&fresh.repaired, 0);
				counters->used = Max(counters->used, j + 1);
				slot = j;
			}
		if (slot >= 0)
			pg_atomic_fetch_add_u64(&counters->slots[slot].repaired, 1);
		LWLockRelease(counters->lock);
		if (slot < 0)
			elog(LOG, "migration_ext: no free counter for migration \"%s\": %d migrations are counted already",
			     p.migration, kSlots);
	}
}

void subtract_flushed()
{
	for (int i = 0; i < flushed_count; ++i)
		pg_atomic_fetch_sub_u64(&counters->slots[flushed[i].slot].repaired, flushed[i].amount);
}

void on_transaction_end(XactEvent event, void *)
{
	switch (event) {
	case XACT_EVENT_PRE_COMMIT:
		// Deferred triggers have run by now: any WAL this backend wrote after the last write-back shows.
		if (pending_count > 0 && only_repairs && XactLastRecEnd == repairs_end)
			(void)set_config_option("synchronous_commit", "off", PGC_USERSET, PGC_S_SESSION, GUC_ACTION_LOCAL, true, 0,
			                        false);
		return;
	case XACT_EVENT_COMMIT:
	case XACT_EVENT_PREPARE: // a prepared transaction's write-backs count now: it almost always commits
		if (counters) {
			add_committed();
			subtract_flushed();
		}
		break;
	case XACT_EVENT_ABORT:
		break;
	default:
		return;
	}
	pending_count = 0;
	flushed_count = 0;
	only_repairs = false;
	repairs_end = InvalidXLogRecPtr;
}

// A rolled-back savepoint takes its write-backs with it; a released one hands them to its parent.
void on_subtransaction_end(SubXactEvent event, SubTransactionId, SubTransactionId, void *)
{
	int level = GetCurrentTransactionNestLevel();
	if (event == SUBXACT_EVENT_ABORT_SUB) {
		int kept = 0;
		for (int i = 0; i < pending_count; ++i)
			if (pending[i].level < level)
				pending[kept++] = pending[i];
		pending_count = kept;
	} else if (event == SUBXACT_EVENT_COMMIT_SUB) {
		for (int i = 0; i < pending_count; ++i)
			if (pending[i].level >= level)
				pending[i].level = level - 1;
	}
}

Oid current_state_table()
{
	return get_relname_relid("migration", get_namespace_oid("migration_ext", false));
}

} // namespace

void before_repair()
{
	if (pending_count == 0)
		only_repairs = !TransactionIdIsValid(GetTopTransactionIdIfAny());
	else if (XactLastRecEnd != repairs_end)
		only_repairs = false;
}

void record_repair(Oid state_table, const char *migration)
{
	repairs_end = XactLastRecEnd;
	if (pending_count >= kPending)
		return;
	Pending &p = pending[pending_count++];
	p.state_table = state_table;
	strlcpy(p.migration, migration, NAMEDATALEN);
	p.level = GetCurrentTransactionNestLevel();
}

int repairs_in_transaction()
{
	return pending_count;
}

void register_repair_counts(bool preloading)
{
	RegisterXactCallback(on_transaction_end, nullptr);
	RegisterSubXactCallback(on_subtransaction_end, nullptr);
	if (!preloading)
		return;
	previous_request_hook = shmem_request_hook;
	shmem_request_hook = request_shmem;
	previous_startup_hook = shmem_startup_hook;
	shmem_startup_hook = startup_shmem;
}

} // namespace mext::pg

using mext::pg::counters;

// unflushed_repairs(migration): the migration's committed write-backs still in shared memory (not yet in
// migration_ext.read_repair); NULL when the library is not preloaded, and nothing is counted.
Datum mext_unflushed_repairs(PG_FUNCTION_ARGS)
{
	if (counters == nullptr)
		PG_RETURN_NULL();
	char *migration = text_to_cstring(PG_GETARG_TEXT_PP(0));
	Oid state_table = mext::pg::current_state_table();
	LWLockAcquire(counters->lock, LW_SHARED);
	int slot = mext::pg::find_slot(state_table, migration);
	uint64 repaired = slot >= 0 ? pg_atomic_read_u64(&counters->slots[slot].repaired) : 0;
	LWLockRelease(counters->lock);
	PG_RETURN_INT64(static_cast<int64>(repaired));
}

// flush_read_repairs(): adds this database's counters to migration_ext.read_repair, in this transaction;
// they leave shared memory when it commits. Counters of migrations that no longer exist (or of an extension
// since dropped) are dropped. Returns the number of migrations written. The launcher's per-database helper
// calls it every migration_ext.resume_interval.
Datum mext_flush_read_repairs(PG_FUNCTION_ARGS)
{
	if (counters == nullptr)
		PG_RETURN_INT32(0);
	using mext::pg::flushed;
	using mext::pg::flushed_count;
	if (flushed == nullptr)
		flushed = static_cast<mext::pg::Flushed *>(
		    MemoryContextAlloc(TopMemoryContext, sizeof(mext::pg::Flushed) * mext::pg::kSlots));
	Oid state_table = mext::pg::current_state_table();

	// Slots of another extension instance in this database are freed; those of this one are read.
	struct Read {
		int slot;
		uint64 amount;
		char migration[NAMEDATALEN];
	};
	Read *reads = static_cast<Read *>(palloc(sizeof(Read) * mext::pg::kSlots));
	int read_count = 0;
	LWLockAcquire(counters->lock, LW_EXCLUSIVE);
	for (int i = 0; i < counters->used; ++i) {
		mext::pg::Slot &slot = counters->slots[i];
		if (slot.database != MyDatabaseId)
			continue;
		uint64 amount = pg_atomic_read_u64(&slot.repaired);
		if (slot.state_table != state_table) {
			slot.database = InvalidOid;
			continue;
		}
		// What an earlier flush of this transaction took is still in the slot until it commits.
		for (int k = 0; k < flushed_count; ++k)
			if (flushed[k].slot == i)
				amount -= flushed[k].amount;
		if (amount == 0 || flushed_count + read_count >= mext::pg::kSlots)
			continue;
		reads[read_count].slot = i;
		reads[read_count].amount = amount;
		strlcpy(reads[read_count].migration, slot.migration, NAMEDATALEN);
		++read_count;
	}
	LWLockRelease(counters->lock);

	int written = 0;
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	for (int i = 0; i < read_count; ++i) {
		Oid types[2] = {TEXTOID, INT8OID};
		Datum values[2] = {CStringGetTextDatum(reads[i].migration), Int64GetDatum(static_cast<int64>(reads[i].amount))};
		int rc = SPI_execute_with_args(
		    "INSERT INTO migration_ext.read_repair AS r (migration, repaired) "
		    "SELECT $1, $2 WHERE EXISTS (SELECT FROM migration_ext.migration m WHERE m.name OPERATOR(pg_catalog.=) $1) "
		    "ON CONFLICT (migration) DO UPDATE SET repaired = r.repaired OPERATOR(pg_catalog.+) excluded.repaired",
		    2, types, values, nullptr, false, 0);
		if (rc != SPI_OK_INSERT)
			elog(ERROR, "migration_ext: could not write the read repairs of \"%s\": %s", reads[i].migration,
			     SPI_result_code_string(rc));
		written += static_cast<int>(SPI_processed);
		// A migration that no longer exists loses its count with the rest.
		flushed[flushed_count].slot = reads[i].slot;
		flushed[flushed_count].amount = reads[i].amount;
		++flushed_count;
	}
	SPI_finish();
	PG_RETURN_INT32(written);
}
