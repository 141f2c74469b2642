// Values of any type through their text form (text_form.hpp), and cast_converted(), the batch's cast of
// a converted value back to its column's type. Plain C frames: nothing here owns C++ objects, so a
// PostgreSQL error may cross any of them.
#include "pg/text_form.hpp"

extern "C" {
#include "nodes/nodeFuncs.h"
#include "nodes/primnodes.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"

PG_FUNCTION_INFO_V1(mext_cast_converted);
}

namespace mext::pg
{

namespace
{

// The typmod of the call's argument expression (numeric(10,2), varchar(20)...); -1 when unknown.
int32 argument_typmod(FmgrInfo *flinfo, int argno)
{
	if (flinfo->fn_expr == nullptr || !IsA(flinfo->fn_expr, FuncExpr))
		return -1;
	List *args = reinterpret_cast<FuncExpr *>(flinfo->fn_expr)->args;
	if (argno >= list_length(args))
		return -1;
	return exprTypmod(static_cast<Node *>(list_nth(args, argno)));
}

} // namespace

TextForm *text_form_of_argument(FunctionCallInfo fcinfo, int argno)
{
	Oid type = fcinfo->flinfo ? get_fn_expr_argtype(fcinfo->flinfo, argno) : InvalidOid;
	if (!OidIsValid(type))
		ereport(ERROR, (errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
		                errmsg("could not determine the type of a value given to migration_ext")));
	auto *form = static_cast<TextForm *>(MemoryContextAllocZero(fcinfo->flinfo->fn_mcxt, sizeof(TextForm)));
	form->type = type;
	form->typmod = argument_typmod(fcinfo->flinfo, argno);
	Oid input_function, output_function;
	bool varlena;
	getTypeInputInfo(type, &input_function, &form->input_param);
	getTypeOutputInfo(type, &output_function, &varlena);
	fmgr_info_cxt(input_function, &form->input, fcinfo->flinfo->fn_mcxt);
	fmgr_info_cxt(output_function, &form->output, fcinfo->flinfo->fn_mcxt);
	return form;
}

Datum read_text_form(TextForm *form, char *value, bool *isnull, bool has_key, Datum key, const char *codec)
{
	MemoryContext caller = CurrentMemoryContext;
	volatile Datum result = 0;
	ErrorData *volatile error = nullptr;
	PG_TRY();
	{
		result = InputFunctionCall(&form->input, value, form->input_param, form->typmod);
	}
	PG_CATCH();
	{
		// Only what the value itself caused (invalid input, out of range, a domain's constraint) is
		// reported as the converted value's fault; anything else (a cancel, out of memory) goes on as it is.
		MemoryContextSwitchTo(caller);
		ErrorData *data = CopyErrorData();
		int category = ERRCODE_TO_CATEGORY(data->sqlerrcode);
		if (category != ERRCODE_DATA_EXCEPTION && category != ERRCODE_INTEGRITY_CONSTRAINT_VIOLATION) {
			FreeErrorData(data);
			PG_RE_THROW();
		}
		FlushErrorState();
		error = data;
	}
	PG_END_TRY();
	if (error) {
		char *type_name = format_type_with_typemod(form->type, form->typmod);
		if (has_key)
			ereport(ERROR, (errcode(error->sqlerrcode),
			                errmsg("converted value of the row with key %s is not a valid %s",
			                       OidOutputFunctionCall(F_ARRAY_OUT, key), type_name),
			                errdetail("%s", error->message),
			                errhint("The codec's output must be valid input for the column's type: fix the codec "
			                        "or the row, then start the backfill again.")));
		ereport(ERROR, (errcode(error->sqlerrcode),
		                errmsg("value converted by codec \"%s\" is not a valid %s", codec ? codec : "?", type_name),
		                errdetail("%s", error->message),
		                errhint("The codec's output must be valid input for the value's type.")));
	}
	*isnull = value == nullptr;
	return result;
}

} // namespace mext::pg

// cast_converted(value text, model anyelement, key text[]) RETURNS anyelement: `value` read as the type
// of `model` (a typed NULL, typmod included), the batch's last step for a column that is not text. A
// value that does not read fails naming the row's key. Anyone may call it: it does what a cast does.
Datum mext_cast_converted(PG_FUNCTION_ARGS)
{
	auto *form = static_cast<mext::pg::TextForm *>(fcinfo->flinfo ? fcinfo->flinfo->fn_extra : nullptr);
	if (form == nullptr) {
		form = mext::pg::text_form_of_argument(fcinfo, 1);
		fcinfo->flinfo->fn_extra = form;
	}
	char *value = PG_ARGISNULL(0) ? nullptr : text_to_cstring(PG_GETARG_TEXT_PP(0));
	bool isnull;
	Datum result = mext::pg::read_text_form(form, value, &isnull, !PG_ARGISNULL(2),
	                                        PG_ARGISNULL(2) ? 0 : PG_GETARG_DATUM(2), nullptr);
	if (isnull)
		PG_RETURN_NULL();
	PG_RETURN_DATUM(result);
}
