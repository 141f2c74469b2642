// Values of any type through their text form. Codecs convert text; a column of another type (jsonb,
// bytea, integer, a domain, an array...) is read as its type's output, converted, and read back by its
// type's input function, which applies the column's typmod and, for a domain, its constraints.
#pragma once

#include "pg/postgres_c.hpp"

namespace mext::pg
{

struct TextForm {
	Oid type; // as the call's argument expression has it: a domain stays the domain
	int32 typmod;
	Oid input_param;
	FmgrInfo input;
	FmgrInfo output;
};

// The type of argument `argno` of this call, its typmod included, looked up once for the call site
// (allocated in the call's fn_mcxt).
TextForm *text_form_of_argument(FunctionCallInfo fcinfo, int argno);

// `value` (NULL: the null value) read as form's type. A value that does not read raises an error with
// the input function's SQLSTATE, its message as the detail, and that names the row (`key`, a text[],
// when has_key) or the codec (`codec`). *isnull: the result is NULL.
Datum read_text_form(TextForm *form, char *value, bool *isnull, bool has_key, Datum key, const char *codec);

} // namespace mext::pg
