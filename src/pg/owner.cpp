// Work done on a user's objects on someone else's behalf runs as their owner, restricted: run_as() for
// the protocol's statements (a verifying scan, a contract's ALTER TABLE, a body swap), run_batch() for a
// 0.1.0 backfill worker's batch. Neither is executable by PUBLIC: only the extension's own functions, which
// have decided whose work it is, call them.
#include "pg/owner.hpp"

extern "C" {
#include "access/htup_details.h"
#include "catalog/pg_type_d.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/guc.h"

PG_FUNCTION_INFO_V1(mext_run_as);
PG_FUNCTION_INFO_V1(mext_run_batch);
}

namespace mext::pg
{

void begin_as_role(Oid role, const char *search_path, RoleSwitch *saved)
{
	GetUserIdAndSecContext(&saved->saved_user, &saved->saved_context);
	SetUserIdAndSecContext(role, saved->saved_context | SECURITY_LOCAL_USERID_CHANGE | SECURITY_RESTRICTED_OPERATION);
	saved->guc_level = NewGUCNestLevel();
	(void)set_config_option("search_path", search_path, PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);
}

void end_as_role(const RoleSwitch &saved)
{
	AtEOXact_GUC(false, saved.guc_level);
	SetUserIdAndSecContext(saved.saved_user, saved.saved_context);
}

} // namespace mext::pg

namespace
{

// Defense in depth behind the REVOKE: these switch users, which only the extension's owner may ask for.
void require_superuser(const char *function)
{
	if (!superuser())
		ereport(ERROR, (errcode(ERRCODE_INSUFFICIENT_PRIVILEGE), errmsg("permission denied for function %s", function),
		                errdetail("Only migration_ext's own functions call it.")));
}

} // namespace

// run_as(role, statement, search_path): runs one statement as `role` in a security-restricted operation
// with that search_path; returns the first column of its first row as text, or NULL.
Datum mext_run_as(PG_FUNCTION_ARGS)
{
	require_superuser("run_as");
	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2))
		ereport(ERROR, (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED), errmsg("run_as: NULL argument")));
	Oid role = PG_GETARG_OID(0);
	char *statement = text_to_cstring(PG_GETARG_TEXT_PP(1));
	char *search_path = text_to_cstring(PG_GETARG_TEXT_PP(2));
	MemoryContext caller = CurrentMemoryContext;
	char *first = nullptr;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	mext::pg::RoleSwitch saved;
	mext::pg::begin_as_role(role, search_path, &saved);
	int rc = SPI_execute(statement, false, 0);
	if (rc < 0)
		elog(ERROR, "run_as: %s", SPI_result_code_string(rc));
	if (SPI_tuptable && SPI_processed > 0) {
		char *value = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
		if (value)
			first = MemoryContextStrdup(caller, value);
	}
	mext::pg::end_as_role(saved);
	SPI_finish();
	if (!first)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(first));
}

// run_batch(role, statement, codec, batch_size, last_key): declared by version 0.1.0 only (dropped by the
// update to 0.2.0, whose workers run their batch in batch_step.cpp). One keyset batch of a backfill (the
// statement from batch_statement() or copy_statement()), run as `role`, the owner of the job's table,
// in a security-restricted operation with search_path pg_catalog, pg_temp: the table's triggers, index
// expressions, defaults and constraints run with their owner's rights, whoever started the job.
Datum mext_run_batch(PG_FUNCTION_ARGS)
{
	require_superuser("run_batch");
	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2) || PG_ARGISNULL(3))
		ereport(ERROR, (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED), errmsg("run_batch: NULL argument")));
	TupleDesc result_desc;
	if (get_call_result_type(fcinfo, nullptr, &result_desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "run_batch must return a record");
	BlessTupleDesc(result_desc);
	Oid owner = PG_GETARG_OID(0);
	char *statement = text_to_cstring(PG_GETARG_TEXT_PP(1));
	Oid types[3] = {TEXTOID, INT4OID, TEXTARRAYOID};
	Datum values[3] = {PG_GETARG_DATUM(2), PG_GETARG_DATUM(3), PG_ARGISNULL(4) ? Datum(0) : PG_GETARG_DATUM(4)};
	const char nulls[3] = {' ', ' ', PG_ARGISNULL(4) ? 'n' : ' '};

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	mext::pg::RoleSwitch saved;
	mext::pg::begin_as_role(owner, "pg_catalog, pg_temp", &saved);
	int rc = SPI_execute_with_args(statement, 3, types, values, nulls, false, 1);
	if (rc < 0 || SPI_processed != 1 || SPI_tuptable->tupdesc->natts != result_desc->natts)
		elog(ERROR, "run_batch: the batch returned no result (%s)", SPI_result_code_string(rc));
	mext::pg::end_as_role(saved);
	HeapTupleHeader row = SPI_returntuple(SPI_tuptable->vals[0], result_desc);
	SPI_finish();
	PG_RETURN_DATUM(PointerGetDatum(row));
}
