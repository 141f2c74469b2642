// The API functions that change the extension's state are this one C function, as_invoker(): it calls
// the implementation of the same name in schema migration_ext, with the calling role as an extra first
// argument. The implementations are SECURITY DEFINER and not executable by PUBLIC, so the state tables
// take writes only from them, and each one authorizes the role it is given. That role cannot be forged:
// only this function supplies it, from GetUserId(), the role the caller's code runs as (inside another
// role's SECURITY DEFINER function, that role).
#include "pg/postgres_c.hpp"

extern "C" {
#include "access/htup_details.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type_d.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "nodes/value.h"
#include "parser/parse_func.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"

PG_FUNCTION_INFO_V1(mext_as_invoker);
}

namespace
{

// The implementation behind an API function: migration_ext.<its name>(regrole, <its arguments>), which
// must be SECURITY DEFINER (nobody could call it through here otherwise).
FmgrInfo *implementation_of(FmgrInfo *api)
{
	HeapTuple tuple = SearchSysCache1(PROCOID, ObjectIdGetDatum(api->fn_oid));
	if (!HeapTupleIsValid(tuple))
		elog(ERROR, "cache lookup failed for function %u", api->fn_oid);
	auto *proc = reinterpret_cast<Form_pg_proc>(GETSTRUCT(tuple));
	Oid types[FUNC_MAX_ARGS];
	int nargs = proc->pronargs + 1;
	if (nargs > FUNC_MAX_ARGS)
		elog(ERROR, "too many arguments for as_invoker");
	types[0] = REGROLEOID;
	for (int i = 1; i < nargs; ++i)
		types[i] = proc->proargtypes.values[i - 1];
	List *name = list_make2(makeString(pstrdup("migration_ext")), makeString(pstrdup(NameStr(proc->proname))));
	ReleaseSysCache(tuple);
	Oid implementation = LookupFuncName(name, nargs, types, false);

	tuple = SearchSysCache1(PROCOID, ObjectIdGetDatum(implementation));
	if (!HeapTupleIsValid(tuple))
		elog(ERROR, "cache lookup failed for function %u", implementation);
	bool definer = reinterpret_cast<Form_pg_proc>(GETSTRUCT(tuple))->prosecdef;
	ReleaseSysCache(tuple);
	if (!definer)
		elog(ERROR, "migration_ext: implementation function %u is not SECURITY DEFINER", implementation);
	auto *info = static_cast<FmgrInfo *>(MemoryContextAllocZero(api->fn_mcxt, sizeof(FmgrInfo)));
	fmgr_info_cxt(implementation, info, api->fn_mcxt);
	return info;
}

} // namespace

Datum mext_as_invoker(PG_FUNCTION_ARGS)
{
	// Inside VACUUM, CREATE INDEX, a backfill's batch or the like, the current role is a table's owner
	// lent to its code: that code must not steer migrations or jobs in the owner's name.
	if (InSecurityRestrictedOperation())
		ereport(ERROR, (errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
		                errmsg("cannot call %s within a security-restricted operation",
		                       get_func_name(fcinfo->flinfo->fn_oid))));
	auto *implementation = static_cast<FmgrInfo *>(fcinfo->flinfo->fn_extra);
	if (!implementation)
		fcinfo->flinfo->fn_extra = implementation = implementation_of(fcinfo->flinfo);

	LOCAL_FCINFO(call, FUNC_MAX_ARGS);
	InitFunctionCallInfoData(*call, implementation, PG_NARGS() + 1, PG_GET_COLLATION(), nullptr, nullptr);
	call->args[0].value = ObjectIdGetDatum(GetUserId());
	call->args[0].isnull = false;
	for (int i = 0; i < PG_NARGS(); ++i)
		call->args[i + 1] = fcinfo->args[i];
	Datum result = FunctionCallInvoke(call);
	fcinfo->isnull = call->isnull;
	return result;
}
