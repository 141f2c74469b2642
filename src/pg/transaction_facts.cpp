// What a PL/pgSQL function cannot see of its own transaction.
#include "pg/postgres_c.hpp"

extern "C" {
#include "access/transam.h"
#include "access/xact.h"

PG_FUNCTION_INFO_V1(mext_xid_is_mine);
PG_FUNCTION_INFO_V1(mext_in_transaction_block);
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
