// Changes that must be the same on every node of a Citus cluster (codecs), sent from the coordinator to
// the workers inside the coordinator's transaction, the way Citus propagates its own DDL: each worker runs
// the command in a transaction of its own that Citus commits with two-phase commit when the coordinator's
// transaction commits, and rolls back when it aborts. So a change is on every node or on none, and a worker
// that cannot apply it (down, or refusing the definition) fails the change on the coordinator.
//
// Citus stays optional: there is no link-time dependency. Citus's function is looked up in its library by
// name, when a change is first sent, and only once the SQL side has seen the citus extension in this
// database (which loads the library). Citus 11.0 and later export it with this signature.
#include "pg/postgres_c.hpp"

extern "C" {
#include "fmgr.h"
#include "utils/builtins.h"

PG_FUNCTION_INFO_V1(mext_citus_send_to_workers);
}

namespace
{

using SendCommandToWorkers = void (*)(const char *command);

SendCommandToWorkers citus_sender()
{
	static SendCommandToWorkers sender = nullptr;
	if (!sender)
		sender = reinterpret_cast<SendCommandToWorkers>(
		    load_external_function("$libdir/citus", "SendCommandToWorkersWithMetadata", false, nullptr));
	if (!sender)
		ereport(ERROR, (errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
		                errmsg("this version of Citus cannot propagate migration_ext's changes to its workers"),
		                errdetail("Its library has no function SendCommandToWorkersWithMetadata."),
		                errhint("migration_ext supports Citus 11.0 and later.")));
	return sender;
}

} // namespace

// citus_send_to_workers(command): run command on every worker with Citus metadata, in this transaction,
// as the current role. Plain C calls into PostgreSQL and Citus: no C++ object is alive across them.
Datum mext_citus_send_to_workers(PG_FUNCTION_ARGS)
{
	char *command = text_to_cstring(PG_GETARG_TEXT_PP(0));
	citus_sender()(command);
	PG_RETURN_VOID();
}
