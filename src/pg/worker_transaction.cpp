#include "pg/worker_transaction.hpp"

#include <algorithm>

extern "C" {
#include "access/xact.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "postmaster/interrupt.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/snapmgr.h"
#include "utils/wait_event.h"
}

namespace mext::pg
{

void begin_transaction()
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	PushActiveSnapshot(GetTransactionSnapshot());
}

void commit_transaction()
{
	PopActiveSnapshot();
	SPI_finish();
	CommitTransactionCommand();
}

void copy_error(StepError *error, ErrorData *data)
{
	strlcpy(error->sqlstate, unpack_sql_state(data->sqlerrcode), sizeof error->sqlstate);
	strlcpy(error->message, data->message ? data->message : "unknown error", sizeof error->message);
}

void drop_stray_cancel()
{
	if (QueryCancelPending) {
		QueryCancelPending = false;
		elog(LOG, "migration_ext: a cancel request between transactions was ignored");
	}
}

void wait_ms(double milliseconds)
{
	while (milliseconds > 0) {
		long chunk = static_cast<long>(std::min(milliseconds, 1000.0));
		if (chunk <= 0)
			break;
		(void)WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, chunk, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		drop_stray_cancel();
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending) {
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		milliseconds -= chunk;
	}
}

} // namespace mext::pg
