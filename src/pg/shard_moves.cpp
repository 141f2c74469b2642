// Citus moves, copies and splits a shard placement only while it holds an advisory lock on the
// placements of the table's colocation group, taken without waiting: a move that cannot take it fails at
// once with Citus's own error ("could not acquire the lock required to move ..."). The parent worker of a
// distributed backfill holds that lock in share mode for its whole life, so no shard leaves the node
// walking it; start_backfill() tries it first, and refuses to start while a move runs.
//
// The lock's tag is Citus's: an advisory lock of this database whose fourth field is 13
// (ADV_LOCKTAG_CLASS_CITUS_REBALANCE_PLACEMENT_COLOCATION in Citus 11.0 to 13.0), keyed by the colocation
// id. Share mode conflicts with the exclusive lock of a move and not with the share lock Citus takes to
// create a colocated table.
#include "pg/postgres_c.hpp"

extern "C" {
#include "fmgr.h"
#include "miscadmin.h"
#include "storage/lock.h"

PG_FUNCTION_INFO_V1(mext_hold_shard_moves);
}

namespace
{

constexpr uint16 kCitusPlacementColocationLock = 13;

} // namespace

// hold_shard_moves(colocation bigint, for_session boolean): takes the lock without waiting; true when
// taken. For the session, it is held until the process exits; otherwise until this transaction ends.
// Superusers only (not executable by PUBLIC): a session lock outlives every transaction.
Datum mext_hold_shard_moves(PG_FUNCTION_ARGS)
{
	if (!superuser())
		ereport(ERROR,
		        (errcode(ERRCODE_INSUFFICIENT_PRIVILEGE), errmsg("permission denied for function hold_shard_moves")));
	int64 colocation = PG_GETARG_INT64(0);
	bool for_session = PG_GETARG_BOOL(1);
	LOCKTAG tag;
	SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, static_cast<uint32>(colocation >> 32), static_cast<uint32>(colocation),
	                     kCitusPlacementColocationLock);
	LockAcquireResult result = LockAcquire(&tag, ShareLock, for_session, true);
	PG_RETURN_BOOL(result != LOCKACQUIRE_NOT_AVAIL);
}
