// What every background worker of this library does around a unit of work: one transaction with SPI
// and a snapshot, whose error is caught and returned rather than thrown (the worker decides what a
// failure means), and waits on the latch that wake for interrupts and postmaster death.
#pragma once

#include "pg/postgres_c.hpp"

extern "C" {
#include "access/xact.h"
#include "utils/memutils.h"
}

namespace mext::pg
{

struct StepError {
	char sqlstate[6];
	char message[512];
};

void begin_transaction();
void commit_transaction();

// Runs fn inside its own transaction. An error aborts the transaction and is returned in `error`
// (when given), never thrown.
template <typename Fn> bool in_transaction(Fn &&fn, StepError *error);

// Sleeps on the latch, waking for interrupts (SIGTERM ends the process here), configuration reloads
// and postmaster death.
void wait_ms(double milliseconds);

// A pg_cancel_backend() that arrives between transactions has no statement to cancel. Left pending,
// the next CHECK_FOR_INTERRUPTS outside a transaction would raise an ERROR nobody catches and end the
// worker; it is dropped instead.
void drop_stray_cancel();

void copy_error(StepError *error, ErrorData *data);

template <typename Fn> bool in_transaction(Fn &&fn, StepError *error)
{
	MemoryContext caller = CurrentMemoryContext;
	volatile bool ok = true;
	PG_TRY();
	{
		begin_transaction();
		fn();
		commit_transaction();
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(caller);
		ErrorData *data = CopyErrorData();
		FlushErrorState();
		AbortCurrentTransaction();
		if (error)
			copy_error(error, data);
		FreeErrorData(data);
		ok = false;
	}
	PG_END_TRY();
	return ok;
}

} // namespace mext::pg
