#include "pg/scan_progress.hpp"

#include "pg/postgres_c.hpp"
#include "pg/settings.hpp"

extern "C" {
#include "storage/proc.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(mext_scan_progress);
}

namespace mext::pg
{

bool scan_progress_active = false;

namespace
{

constexpr long kReportEveryMs = 5000;

char label[256];
int64 rows = 0;
int64 estimate = 0;
TimestampTz started = 0;
TimestampTz reported = 0;
LocalTransactionId transaction = InvalidLocalTransactionId;

} // namespace

void scan_progress_row()
{
	// A scan that failed never turned it off: its transaction ended, and so does its progress.
	if (MyProc->lxid != transaction) {
		scan_progress_active = false;
		return;
	}
	if ((++rows & 1023) != 0)
		return;
	TimestampTz now = GetCurrentTimestamp();
	if (!TimestampDifferenceExceeds(reported, now, kReportEveryMs))
		return;
	reported = now;
	double seconds = static_cast<double>(now - started) / USECS_PER_SEC;
	double percent = estimate > 0 ? 100.0 * static_cast<double>(rows) / static_cast<double>(estimate) : 0;
	ereport(NOTICE, (errmsg("%s: %lld of about %lld rows (%.0f%%), %.0f rows/s", label, static_cast<long long>(rows),
	                        static_cast<long long>(estimate), percent > 100 ? 100 : percent,
	                        seconds > 0 ? static_cast<double>(rows) / seconds : 0)));
}

} // namespace mext::pg

// scan_progress(label, estimate): from now on, in this transaction, a NOTICE every few seconds counts
// the rows the scan has looked at (when migration_ext.wait_progress is on); scan_progress(NULL, NULL)
// stops it.
Datum mext_scan_progress(PG_FUNCTION_ARGS)
{
	using namespace mext::pg;
	scan_progress_active = false;
	if (PG_ARGISNULL(0) || !wait_progress)
		PG_RETURN_VOID();
	strlcpy(label, text_to_cstring(PG_GETARG_TEXT_PP(0)), sizeof label);
	estimate = PG_ARGISNULL(1) ? 0 : PG_GETARG_INT64(1);
	rows = 0;
	started = reported = GetCurrentTimestamp();
	transaction = MyProc->lxid;
	scan_progress_active = true;
	PG_RETURN_VOID();
}
