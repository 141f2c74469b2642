// A frozen function's stored settings (pg_proc.proconfig, "name=value"), written back as SET clauses
// when its body is swapped. The value is catalog text its owner chose: it is quoted here as
// pg_get_functiondef() quotes it, list settings (search_path, temp_tablespaces) element by element,
// so no value can end the clause and append SQL of its own.
#include "pg/postgres_c.hpp"

extern "C" {
#include "lib/stringinfo.h"
#include "nodes/pg_list.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/varlena.h"

PG_FUNCTION_INFO_V1(mext_setting_clause);
}

// setting_clause('name=value') -> 'SET name TO ''value''' (a list setting: 'SET name TO ''a'', ''b''').
Datum mext_setting_clause(PG_FUNCTION_ARGS)
{
	char *setting = text_to_cstring(PG_GETARG_TEXT_PP(0));
	char *equals = strchr(setting, '=');
	if (!equals || equals == setting)
		ereport(ERROR,
		        (errcode(ERRCODE_INVALID_PARAMETER_VALUE), errmsg("malformed function setting \"%s\"", setting)));
	*equals = '\0';
	const char *name = setting;
	char *value = equals + 1;

	StringInfoData clause;
	initStringInfo(&clause);
	appendStringInfo(&clause, "SET %s TO ", quote_identifier(name));
	if (GetConfigOptionFlags(name, true) & GUC_LIST_QUOTE) {
		List *items;
		if (!SplitGUCList(value, ',', &items))
			ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			                errmsg("malformed list in function setting \"%s\"", name)));
		if (items == NIL)
			appendStringInfoString(&clause, "''");
		ListCell *cell;
		foreach (cell, items) {
			if (cell != list_head(items))
				appendStringInfoString(&clause, ", ");
			appendStringInfoString(&clause, quote_literal_cstr(static_cast<char *>(lfirst(cell))));
		}
	} else {
		appendStringInfoString(&clause, quote_literal_cstr(value));
	}
	PG_RETURN_TEXT_P(cstring_to_text(clause.data));
}
