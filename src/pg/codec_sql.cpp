// SQL-callable codec functions: migrate_value (the smart read, on callers' hot paths; text and any type), is_legacy,
// classify (for audit_column), codec_check (create_codec's validation) and the cache-invalidation
// trigger on migration_ext.codec.
#include "pg/codec_cache.hpp"
#include "pg/pace_point.hpp"
#include "pg/scan_progress.hpp"
#include "pg/smart_read.hpp"
#include "pg/text_form.hpp"

extern "C" {
#include "commands/trigger.h"
#include "utils/builtins.h"
#include "utils/inval.h"
#include "utils/rel.h"

PG_FUNCTION_INFO_V1(mext_migrate_value);
PG_FUNCTION_INFO_V1(mext_migrate_value_any);
PG_FUNCTION_INFO_V1(mext_is_legacy);
PG_FUNCTION_INFO_V1(mext_classify);
PG_FUNCTION_INFO_V1(mext_codec_check);
PG_FUNCTION_INFO_V1(mext_codec_changed);
PG_FUNCTION_INFO_V1(mext_is_legacy_by_definition);
}

using mext::pg::guard;

// The core's limit on what a codec step may produce is PostgreSQL's text limit (the core cannot see it).
static_assert(mext::kMaxValueBytes == MaxAllocSize - VARHDRSZ, "codec value limit differs from text's");
using mext::pg::LoadedCodec;

namespace
{

std::string_view view_of(const text *value)
{
	return std::string_view(VARDATA_ANY(value), VARSIZE_ANY_EXHDR(value));
}

mext::Verdict classify_argument(FunctionCallInfo fcinfo)
{
	const text *name = PG_GETARG_TEXT_PP(0);
	const text *value = PG_ARGISNULL(1) ? nullptr : PG_GETARG_TEXT_PP(1);
	return guard([&] {
		LoadedCodec &codec = mext::pg::codec_for_call(fcinfo, name);
		if (!value)
			return codec.codec.classify(nullptr, codec);
		std::string_view view = view_of(value);
		mext::Verdict verdict = codec.codec.classify(&view, codec);
		codec.codec.release_large_scratch();
		return verdict;
	});
}

// What the typed migrate_value keeps in its call site's fn_extra.
struct TypedSite {
	void *codec_site; // codec_for_site()'s
	mext::pg::TextForm *form;
};

} // namespace

namespace mext::pg
{

// The marker prefix of a value, read without detoasting the whole value: a target value of megabytes
// passes through having had only its first bytes decompressed.
bool starts_with_marker(Datum value, const std::string &marker)
{
	struct varlena *raw = reinterpret_cast<struct varlena *>(DatumGetPointer(value));
	// Short (1-byte header) values are read in place; only toasted or compressed ones are sliced.
	const text *head = VARATT_IS_EXTERNAL(raw) || VARATT_IS_COMPRESSED(raw)
	                       ? DatumGetTextPSlice(value, 0, static_cast<int32>(marker.size()))
	                       : reinterpret_cast<const text *>(raw);
	std::string_view prefix = view_of(head);
	return prefix.size() >= marker.size() && prefix.compare(0, marker.size(), marker) == 0;
}

// The smart read's conversion (value == nullptr: NULL): the converted text, or nullptr when the value
// passes through untouched. A non-NULL value is one the caller found unmarked, and the codec not `null`.
// Every PostgreSQL call here happens in this frame, which owns nothing: the guarded lambda only reads.
text *converted_text(LoadedCodec *codec, const text *value)
{
	if (!value && codec->codec.spec().detect != mext::DetectMode::Null)
		return nullptr;
	auto converted = guard([&] {
		if (!value)
			return codec->codec.migrate(nullptr, *codec);
		std::string_view view = view_of(value);
		try {
			return codec->codec.migrate(&view, *codec);
		} catch (...) {
			codec->codec.release_large_scratch();
			throw;
		}
	});
	if (!converted) {
		codec->codec.release_large_scratch();
		return nullptr;
	}
	if (converted->size() > MaxAllocSize - VARHDRSZ) {
		codec->codec.release_large_scratch();
		ereport(ERROR, (errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED), errmsg("converted value is too large"),
		                errdetail("Codec \"%s\" produced %zu bytes; a text value holds at most 1 GB.",
		                          codec->name.c_str(), converted->size())));
	}
	text *result = cstring_to_text_with_len(converted->data(), static_cast<int>(converted->size()));
	codec->codec.release_large_scratch();
	return result;
}

} // namespace mext::pg

using mext::pg::converted_text;
using mext::pg::starts_with_marker;

// migrate_value(codec, value text): converts a legacy value, passes anything else through untouched.
Datum mext_migrate_value(PG_FUNCTION_ARGS)
{
	mext::pg::pace_point();
	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	const text *name = PG_GETARG_TEXT_PP(0);
	LoadedCodec *codec = guard([&] { return &mext::pg::codec_for_call(fcinfo, name); });
	const mext::CodecSpec &spec = codec->codec.spec();

	if (PG_ARGISNULL(1)) {
		text *result = converted_text(codec, nullptr);
		if (!result)
			PG_RETURN_NULL();
		PG_RETURN_TEXT_P(result);
	}
	Datum value = PG_GETARG_DATUM(1);
	if (spec.detect == mext::DetectMode::Null)
		PG_RETURN_DATUM(value);
	if (spec.marker && starts_with_marker(value, *spec.marker))
		PG_RETURN_DATUM(value);
	text *result = converted_text(codec, PG_GETARG_TEXT_PP(1));
	if (!result)
		PG_RETURN_DATUM(value);
	PG_RETURN_TEXT_P(result);
}

// migrate_value(codec, value anyelement) RETURNS anyelement: the smart read of a value of any other type,
// on its text form. A value that passes through is returned as it is, never re-read from its text; a
// converted one is read back by its type's input function.
Datum mext_migrate_value_any(PG_FUNCTION_ARGS)
{
	mext::pg::pace_point();
	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	if (fcinfo->flinfo == nullptr)
		ereport(ERROR, (errcode(ERRCODE_FEATURE_NOT_SUPPORTED), errmsg("migrate_value() needs a call site")));
	auto *site = static_cast<TypedSite *>(fcinfo->flinfo->fn_extra);
	if (site == nullptr) {
		site = static_cast<TypedSite *>(MemoryContextAllocZero(fcinfo->flinfo->fn_mcxt, sizeof(TypedSite)));
		site->form = mext::pg::text_form_of_argument(fcinfo, 1);
		fcinfo->flinfo->fn_extra = site;
	}
	const text *name = PG_GETARG_TEXT_PP(0);
	LoadedCodec *codec =
	    guard([&] { return &mext::pg::codec_for_site(&site->codec_site, fcinfo->flinfo->fn_mcxt, name); });
	const mext::CodecSpec &spec = codec->codec.spec();

	text *result;
	if (PG_ARGISNULL(1)) {
		result = converted_text(codec, nullptr);
	} else {
		if (spec.detect == mext::DetectMode::Null)
			PG_RETURN_DATUM(PG_GETARG_DATUM(1));
		text *form = cstring_to_text(OutputFunctionCall(&site->form->output, PG_GETARG_DATUM(1)));
		if (spec.marker && starts_with_marker(PointerGetDatum(form), *spec.marker))
			PG_RETURN_DATUM(PG_GETARG_DATUM(1));
		result = converted_text(codec, form);
	}
	if (!result) {
		if (PG_ARGISNULL(1))
			PG_RETURN_NULL();
		PG_RETURN_DATUM(PG_GETARG_DATUM(1));
	}
	bool isnull;
	Datum typed = mext::pg::read_text_form(site->form, text_to_cstring(result), &isnull, false, 0, codec->name.c_str());
	if (isnull)
		PG_RETURN_NULL();
	PG_RETURN_DATUM(typed);
}

// is_legacy(codec, value): true only for a value the backfill would convert; ambiguous is not legacy.
Datum mext_is_legacy(PG_FUNCTION_ARGS)
{
	mext::pg::pace_point();
	mext::pg::count_scanned_row();
	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	PG_RETURN_BOOL(classify_argument(fcinfo) == mext::Verdict::Legacy);
}

// classify(codec, value): 'legacy', 'target', 'ambiguous', 'null' or 'other'.
Datum mext_classify(PG_FUNCTION_ARGS)
{
	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(mext::verdict_name(classify_argument(fcinfo))));
}

// codec_check(actor, convert, marker, detect, shape): raises the error create_codec should report, if any.
Datum mext_codec_check(PG_FUNCTION_ARGS)
{
	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(3))
		ereport(ERROR,
		        (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED), errmsg("codec conversion and detect mode must not be NULL")));
	Oid actor = PG_GETARG_OID(0);
	const text *convert = PG_GETARG_TEXT_PP(1);
	const text *marker = PG_ARGISNULL(2) ? nullptr : PG_GETARG_TEXT_PP(2);
	const text *detect = PG_GETARG_TEXT_PP(3);
	const text *shape = PG_ARGISNULL(4) ? nullptr : PG_GETARG_TEXT_PP(4);
	guard([&] {
		mext::pg::CodecDefinition definition;
		definition.convert = std::string(view_of(convert));
		if (marker)
			definition.marker = std::string(view_of(marker));
		definition.detect = std::string(view_of(detect));
		if (shape)
			definition.shape = std::string(view_of(shape));
		mext::pg::validate_codec_definition(definition, actor);
	});
	PG_RETURN_VOID();
}

// Statement-level trigger on migration_ext.codec: every backend drops its parsed codecs at its next
// statement (the invalidation is sent at commit and read when a transaction or statement starts).
Datum mext_codec_changed(PG_FUNCTION_ARGS)
{
	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR, (errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED), errmsg("codec_changed() is a trigger")));
	auto *trigger = reinterpret_cast<TriggerData *>(fcinfo->context);
	CacheInvalidateRelcache(trigger->tg_relation);
	return PointerGetDatum(nullptr);
}

// is_legacy_by_definition(convert, marker, detect, shape, value): is_legacy() for a codec given by its
// definition instead of its name. A contract's CHECK constraint calls it: the constraint holds the codec
// itself, so rows restored before (or without) the codec table's rows are checked alike. Built-in steps
// only: anyone may call it, and an fn: step runs its function as the function's owner, which only a
// codec its creator made may ask for (such a contract names its codec instead).
Datum mext_is_legacy_by_definition(PG_FUNCTION_ARGS)
{
	mext::pg::pace_point();
	if (PG_ARGISNULL(0) || PG_ARGISNULL(2))
		ereport(ERROR, (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
		                errmsg("a codec's conversion and detect mode must not be NULL")));
	// Detoasted here, in a frame that owns nothing; the strings are built inside guard().
	const text *fields[4];
	for (int i = 0; i < 4; ++i)
		fields[i] = PG_ARGISNULL(i) ? nullptr : PG_GETARG_TEXT_PP(i);
	const text *value = PG_ARGISNULL(4) ? nullptr : PG_GETARG_TEXT_PP(4);
	mext::Verdict verdict = guard([&] {
		auto optional_text = [&](int n) {
			return fields[n] ? std::optional<std::string>(std::string(view_of(fields[n]))) : std::nullopt;
		};
		mext::pg::CodecDefinition definition;
		definition.convert = std::string(view_of(fields[0]));
		definition.marker = optional_text(1);
		definition.detect = std::string(view_of(fields[2]));
		definition.shape = optional_text(3);
		for (const mext::Step &step : mext::parse_pipeline(definition.convert))
			if (step.kind == mext::StepKind::Function)
				throw mext::pg::SqlError(ERRCODE_FEATURE_NOT_SUPPORTED,
				                         "is_legacy_by_definition() takes built-in steps only",
				                         "An fn: step runs as its function's owner, for codecs its creator made.",
				                         "Use is_legacy() with the codec's name.");
		LoadedCodec &codec = mext::pg::codec_for_definition(fcinfo, definition);
		if (!value)
			return codec.codec.classify(nullptr, codec);
		std::string_view view = view_of(value);
		mext::Verdict result = codec.codec.classify(&view, codec);
		codec.codec.release_large_scratch();
		return result;
	});
	PG_RETURN_BOOL(verdict == mext::Verdict::Legacy);
}
