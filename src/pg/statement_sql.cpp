// The keyset batch statements (core/keyset) as SQL functions: batch_statement() for a column's batch,
// copy_statement() for a table move's. Version 0.1.0's install script declares them (its PL/pgSQL
// worker_step() built its batch with them); they stay so that a 0.1.0 install loads until ALTER
// EXTENSION migration_ext UPDATE drops them. Workers build their batch in batch_step.cpp.
#include "core/keyset.hpp"
#include "pg/guard.hpp"

extern "C" {
#include "catalog/pg_type_d.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"

PG_FUNCTION_INFO_V1(mext_batch_statement);
PG_FUNCTION_INFO_V1(mext_copy_statement);
}

namespace
{

// The shape shared by batch_statement() and copy_statement(), from their first six arguments.
struct ShapeArgs {
	const char *relation;
	const char *target;
	const char *source;
	const char *api;
	int keys;
	char **key_names;
	char **key_types;
};

char **text_array_items(ArrayType *array, int *count)
{
	Datum *items;
	deconstruct_array(array, TEXTOID, -1, false, TYPALIGN_INT, &items, nullptr, count);
	char **out = static_cast<char **>(palloc(sizeof(char *) * (*count + 1)));
	for (int i = 0; i < *count; ++i)
		out[i] = TextDatumGetCString(items[i]);
	return out;
}

ShapeArgs shape_args(FunctionCallInfo fcinfo)
{
	for (int i : {0, 1, 2, 3, 5, 6})
		if (PG_ARGISNULL(i))
			ereport(ERROR,
			        (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED), errmsg("batch statement: argument %d is NULL", i + 1)));
	ShapeArgs args;
	int type_count;
	args.key_names = text_array_items(PG_GETARG_ARRAYTYPE_P(1), &args.keys);
	args.key_types = text_array_items(PG_GETARG_ARRAYTYPE_P(2), &type_count);
	if (args.keys != type_count || args.keys == 0)
		ereport(ERROR,
		        (errcode(ERRCODE_INVALID_PARAMETER_VALUE), errmsg("batch statement: key names and types differ")));
	args.relation = text_to_cstring(PG_GETARG_TEXT_PP(0));
	args.target = text_to_cstring(PG_GETARG_TEXT_PP(3));
	args.source = PG_ARGISNULL(4) ? nullptr : text_to_cstring(PG_GETARG_TEXT_PP(4));
	args.api = text_to_cstring(PG_GETARG_TEXT_PP(5));
	return args;
}

mext::BatchShape batch_shape(const ShapeArgs &args)
{
	mext::BatchShape shape;
	shape.relation = args.relation;
	for (int i = 0; i < args.keys; ++i)
		shape.key.push_back(mext::KeyColumn{args.key_names[i], args.key_types[i]});
	shape.target = args.target;
	if (args.source)
		shape.source = std::string(args.source);
	shape.api_schema = args.api;
	return shape;
}

char *palloc_copy(const std::string &sql)
{
	char *copy = nullptr;
	mext::pg::pg_call([&] { copy = pstrdup(sql.c_str()); });
	return copy;
}

} // namespace

// batch_statement(relation, key_names, key_types, target, source, api_schema, after_last_key): the
// keyset batch, from identifiers the caller quoted.
Datum mext_batch_statement(PG_FUNCTION_ARGS)
{
	ShapeArgs args = shape_args(fcinfo);
	bool after_last_key = PG_GETARG_BOOL(6);
	char *statement =
	    mext::pg::guard([&] { return palloc_copy(mext::batch_statement(batch_shape(args), after_last_key)); });
	PG_RETURN_TEXT_P(cstring_to_text(statement));
}

// copy_statement(relation, key_names, key_types, target, source, api_schema, after_last_key,
// target_relation, copy_columns): the batch of a table move, V1 into V2.
Datum mext_copy_statement(PG_FUNCTION_ARGS)
{
	ShapeArgs args = shape_args(fcinfo);
	bool after_last_key = PG_GETARG_BOOL(6);
	if (PG_ARGISNULL(7) || PG_ARGISNULL(8))
		ereport(ERROR,
		        (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED), errmsg("copy_statement: NULL target relation or columns")));
	const char *target_relation = text_to_cstring(PG_GETARG_TEXT_PP(7));
	int column_count;
	char **columns = text_array_items(PG_GETARG_ARRAYTYPE_P(8), &column_count);
	char *statement = mext::pg::guard([&] {
		mext::CopyShape shape;
		shape.batch = batch_shape(args);
		shape.target_relation = target_relation;
		for (int i = 0; i < column_count; ++i)
			shape.columns.push_back(mext::CopyColumn{columns[i], columns[i], ""});
		return palloc_copy(mext::copy_statement(shape, after_last_key));
	});
	PG_RETURN_TEXT_P(cstring_to_text(statement));
}
