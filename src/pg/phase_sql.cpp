// The protocol's rules, from src/core/phase, as SQL functions the protocol's plpgsql calls.
#include <stdexcept>

#include "core/phase.hpp"
#include "pg/guard.hpp"

extern "C" {
#include "access/xlog.h"
#include "access/xlog_internal.h"
#include "utils/builtins.h"
#include "utils/pg_lsn.h"

PG_FUNCTION_INFO_V1(mext_is_phase);
PG_FUNCTION_INFO_V1(mext_phase_after);
PG_FUNCTION_INFO_V1(mext_flushed_insert_lsn);
PG_FUNCTION_INFO_V1(mext_door_check);
}

namespace
{

std::string text_argument(FunctionCallInfo fcinfo, int n)
{
	const text *value = PG_GETARG_TEXT_PP(n);
	return std::string(VARDATA_ANY(value), VARSIZE_ANY_EXHDR(value));
}

[[noreturn]] void refuse(const mext::Transition &t, const std::string &migration, const char *direction)
{
	throw mext::pg::SqlError(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
	                         "cannot " + std::string(direction) + " migration \"" + migration + "\": " + t.refusal,
	                         t.detail, t.hint);
}

} // namespace

// is_phase(name): one of the protocol's phases?
Datum mext_is_phase(PG_FUNCTION_ARGS)
{
	bool known = mext::pg::guard([&] {
		try {
			mext::parse_phase(text_argument(fcinfo, 0));
			return true;
		} catch (const std::invalid_argument &) {
			return false;
		}
	});
	PG_RETURN_BOOL(known);
}

// phase_after(migration, phase, direction 'advance' | 'retreat'): the next phase, or the refusal.
Datum mext_phase_after(PG_FUNCTION_ARGS)
{
	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2))
		ereport(ERROR, (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED), errmsg("phase_after: NULL argument")));
	const char *next = mext::pg::guard([&] {
		std::string migration = text_argument(fcinfo, 0);
		std::string direction = text_argument(fcinfo, 2);
		mext::Phase from = mext::parse_phase(text_argument(fcinfo, 1));
		mext::Transition t = direction == "retreat" ? mext::retreat_from(from) : mext::advance_from(from);
		if (!t.allowed)
			refuse(t, migration, direction == "retreat" ? "retreat" : "advance");
		return mext::phase_name(t.to);
	});
	PG_RETURN_TEXT_P(cstring_to_text(next));
}

// door_check(migration, reader_swaps, readers_applied, settled, waiting_for, confirmed): raises the
// refusal that names the first condition that fails.
Datum mext_door_check(PG_FUNCTION_ARGS)
{
	for (int i : {0, 1, 2, 3, 5})
		if (PG_ARGISNULL(i))
			ereport(ERROR, (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED), errmsg("door_check: NULL argument")));
	mext::pg::guard([&] {
		mext::DoorState state;
		state.migration_name = text_argument(fcinfo, 0);
		state.reader_swaps = PG_GETARG_INT32(1);
		state.readers_applied = PG_GETARG_INT32(2);
		state.settled = PG_GETARG_BOOL(3);
		state.waiting_for = PG_ARGISNULL(4) ? std::string() : text_argument(fcinfo, 4);
		state.confirmed = PG_GETARG_BOOL(5);
		mext::Transition t = mext::door_check(state);
		if (!t.allowed)
			refuse(t, state.migration_name, "advance");
	});
	PG_RETURN_VOID();
}

// flushed_insert_lsn(): the WAL insert position, once everything before it is flushed (and so can be
// sent to standbys): the position the door waits for standbys to replay. NULL during recovery.
Datum mext_flushed_insert_lsn(PG_FUNCTION_ARGS)
{
	if (RecoveryInProgress())
		PG_RETURN_NULL();
	XLogRecPtr position = GetXLogInsertRecPtr();
	// At the start of a page the insert position points past the page's header, which nothing has
	// written yet, and XLogFlush() refuses to flush to it: everything before the page is what counts.
	uint32 offset = static_cast<uint32>(position % XLOG_BLCKSZ);
	if (offset == SizeOfXLogShortPHD || offset == SizeOfXLogLongPHD)
		position -= offset;
	XLogFlush(position);
	PG_RETURN_LSN(position);
}
