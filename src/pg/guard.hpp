// The one boundary between C++ exceptions and PostgreSQL's longjmp errors. Every SQL-callable entry
// point runs its body through guard(); every PostgreSQL call made from a C++ frame that owns something
// goes through pg_call().
//
//  - A C++ exception must never reach PostgreSQL (it would terminate the backend): guard() catches it,
//    copies the message into palloc'd memory, lets every C++ frame unwind, and only then ereports.
//  - A PostgreSQL error must never longjmp over a live C++ destructor: pg_call() catches it with
//    PG_TRY, copies the ErrorData, flushes the error state and throws it as PgError; guard() rethrows
//    the original error (same SQLSTATE, message, detail, hint) once the C++ frames are gone.
//    A PgError must always travel up to guard(): the transaction it belongs to still has to abort.
#pragma once

#include <exception>
#include <new>
#include <string>

#include "core/codec.hpp"

#include "pg/postgres_c.hpp"

extern "C" {
#include "utils/elog.h"
#include "utils/memutils.h"
}

namespace mext::pg
{

class PgError : public std::exception
{
  public:
	explicit PgError(ErrorData *data) : edata(data) {}
	const char *what() const noexcept override { return edata->message ? edata->message : "PostgreSQL error"; }
	ErrorData *edata;
};

// An error the extension raises itself, with the SQLSTATE a DBA can match on.
class SqlError : public std::exception
{
  public:
	SqlError(int code, std::string msg, std::string det = {}, std::string h = {})
	    : sqlstate(code), message(std::move(msg)), detail(std::move(det)), hint(std::move(h))
	{
	}
	const char *what() const noexcept override { return message.c_str(); }
	int sqlstate;
	std::string message;
	std::string detail;
	std::string hint;
};

template <typename Fn> void pg_call(Fn &&fn)
{
	MemoryContext caller_context = CurrentMemoryContext;
	ErrorData *volatile error = nullptr;
	PG_TRY();
	{
		fn();
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(caller_context);
		error = CopyErrorData();
		FlushErrorState();
	}
	PG_END_TRY();
	if (error)
		throw PgError(error);
}

int sqlstate_for(const mext::CodecError &error);

// What guard() reports once the C++ frames are gone. Plain C data in palloc'd memory.
struct PendingError {
	ErrorData *rethrow = nullptr;
	int sqlstate = 0;
	char *message = nullptr;
	char *detail = nullptr;
	char *hint = nullptr;
};

void set_pending(PendingError &pending, int sqlstate, const char *message, const std::string &detail,
                 const std::string &hint);
[[noreturn]] void raise_pending(const PendingError &pending);

template <typename Fn> auto guard(Fn &&fn) -> decltype(fn())
{
	PendingError pending;
	try {
		return fn();
	} catch (const PgError &e) {
		pending.rethrow = e.edata;
	} catch (const SqlError &e) {
		set_pending(pending, e.sqlstate, e.message.c_str(), e.detail, e.hint);
	} catch (const mext::CodecError &e) {
		set_pending(pending, sqlstate_for(e), e.what(), e.detail, e.hint);
	} catch (const std::bad_alloc &) {
		set_pending(pending, ERRCODE_OUT_OF_MEMORY, "out of memory in migration_ext", {}, {});
	} catch (const std::exception &e) {
		set_pending(pending, ERRCODE_INTERNAL_ERROR, e.what(), {}, {});
	} catch (...) {
		set_pending(pending, ERRCODE_INTERNAL_ERROR, "unknown C++ exception in migration_ext", {}, {});
	}
	raise_pending(pending);
}

} // namespace mext::pg
