// What a PL/pgSQL function cannot see of its own transaction.
#include <algorithm>

#include "pg/postgres_c.hpp"

extern "C" {
#include "access/transam.h"
#include "access/xact.h"
#include "executor/spi.h"
#include "nodes/parsenodes.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/latch.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(mext_xid_is_mine);
PG_FUNCTION_INFO_V1(mext_in_transaction_block);
PG_FUNCTION_INFO_V1(mext_nap);
}

// xid_is_mine(xid): was this row version written by the current transaction (or a subtransaction)?
Datum mext_xid_is_mine(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(TransactionIdIsCurrentTransactionId(DatumGetTransactionId(PG_GETARG_DATUM(0))));
}

// in_transaction_block(): inside BEGIN ... COMMIT, where a procedure cannot commit on its own?
Datum mext_in_transaction_block(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(IsTransactionBlock());
}

// CALL nap(seconds): sleeps, waking for interrupts, holding no snapshot, so that a session waiting this way
// holds back no vacuum, no space reuse and no settle check. A statement keeps its snapshot as long as it runs
// (pg_sleep() too, and a CALL's own), so in a context that may commit (await_backfill(), between its looks)
// the transaction is committed first, as the caller's COMMIT would, and the sleep runs in a fresh one.
Datum mext_nap(PG_FUNCTION_ARGS)
{
	double seconds = PG_ARGISNULL(0) ? 0 : PG_GETARG_FLOAT8(0);
	if (!(seconds > 0)) // NULL, zero, negative, NaN
		seconds = 0;
	seconds = std::min(seconds, 3600.0);
	bool may_commit =
	    fcinfo->context && IsA(fcinfo->context, CallContext) && !castNode(CallContext, fcinfo->context)->atomic;
	if (may_commit) {
		if (SPI_connect_ext(SPI_OPT_NONATOMIC) != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		SPI_commit();
		SPI_finish();
	}
	TimestampTz until = GetCurrentTimestamp() + static_cast<TimestampTz>(seconds * 1e6);
	for (;;) {
		long left_ms = static_cast<long>((until - GetCurrentTimestamp()) / 1000);
		if (left_ms <= 0)
			break;
		(void)WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, left_ms, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
	PG_RETURN_VOID();
}
