// DROP EXTENSION migration_ext while a migration is in flight would leave its swapped readers calling
// functions that no longer exist (a body is text: PostgreSQL records no dependency on what it calls).
// An event trigger at ddl_command_start refuses it, naming the migrations, unless the statement says
// CASCADE, as PostgreSQL refuses a DROP that real dependents block. A contract's CHECK constraint is a
// real dependent: PostgreSQL itself names it.
#include "pg/postgres_c.hpp"

extern "C" {
#include "commands/event_trigger.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "nodes/parsenodes.h"
#include "utils/builtins.h"

PG_FUNCTION_INFO_V1(mext_guard_drop_extension);
}

namespace
{

bool drops_this_extension(const DropStmt *drop)
{
	if (drop->removeType != OBJECT_EXTENSION)
		return false;
	ListCell *cell;
	foreach (cell, drop->objects)
		if (strcmp(strVal(lfirst(cell)), "migration_ext") == 0)
			return true;
	return false;
}

} // namespace

Datum mext_guard_drop_extension(PG_FUNCTION_ARGS)
{
	if (!CALLED_AS_EVENT_TRIGGER(fcinfo))
		ereport(ERROR, (errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
		                errmsg("guard_drop_extension() is an event trigger")));
	auto *event = reinterpret_cast<EventTriggerData *>(fcinfo->context);
	if (!IsA(event->parsetree, DropStmt))
		PG_RETURN_VOID();
	auto *drop = reinterpret_cast<DropStmt *>(event->parsetree);
	if (!drops_this_extension(drop) || drop->behavior == DROP_CASCADE)
		PG_RETURN_VOID();

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	int rc = SPI_execute("SELECT pg_catalog.string_agg(pg_catalog.format('%s (%s)', m.name, m.phase), ', ' "
	                     "ORDER BY m.name) FROM migration_ext.migration m "
	                     "WHERE m.phase OPERATOR(pg_catalog.<>) ALL "
	                     "(pg_catalog.string_to_array('planned,contracted', ','))",
	                     true, 1);
	char *in_flight = (rc == SPI_OK_SELECT && SPI_processed == 1)
	                      ? SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1)
	                      : nullptr;
	if (in_flight)
		ereport(ERROR, (errcode(ERRCODE_DEPENDENT_OBJECTS_STILL_EXIST),
		                errmsg("cannot drop extension migration_ext because migrations are in flight: %s", in_flight),
		                errdetail("Their swapped readers and writers call the extension's functions, and the column "
		                          "holds values only the extension's codecs read."),
		                errhint("Contract or retreat them first, or use DROP ... CASCADE to drop it anyway.")));
	SPI_finish();
	PG_RETURN_VOID();
}
