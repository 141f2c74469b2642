// SQL-callable codec functions: migrate_value (the smart read, on callers' hot paths), is_legacy,
// classify (for audit_column), codec_check (create_codec's validation) and the cache-invalidation
// trigger on migration_ext.codec.
#include "pg/codec_cache.hpp"
#include "pg/pace_point.hpp"

extern "C" {
#include "commands/trigger.h"
#include "utils/builtins.h"
#include "utils/inval.h"
#include "utils/rel.h"

PG_FUNCTION_INFO_V1(mext_migrate_value);
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

} // namespace

// migrate_value(codec, value): converts a legacy value, passes anything else through untouched.
// Every PostgreSQL call here happens in this frame, which owns nothing: the guarded lambdas only read.
Datum mext_migrate_value(PG_FUNCTION_ARGS)
{
	mext::pg::pace_point();
	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	const text *name = PG_GETARG_TEXT_PP(0);
	LoadedCodec *codec = guard([&] { return &mext::pg::codec_for_call(fcinfo, name); });
	const mext::CodecSpec &spec = codec->codec.spec();

	if (PG_ARGISNULL(1)) {
		if (spec.detect != mext::DetectMode::Null)
			PG_RETURN_NULL();
		auto converted = guard([&] { return codec->codec.migrate(nullptr, *codec); });
		text *result = cstring_to_text_with_len(converted->data(), static_cast<int>(converted->size()));
		codec->codec.release_large_scratch();
		PG_RETURN_TEXT_P(result);
	}
	Datum value = PG_GETARG_DATUM(1);
	if (spec.detect == mext::DetectMode::Null)
		PG_RETURN_DATUM(value);
	if (spec.marker && starts_with_marker(value, *spec.marker))
		PG_RETURN_DATUM(value);

	const text *detoasted = PG_GETARG_TEXT_PP(1);
	auto converted = guard([&] {
		std::string_view view = view_of(detoasted);
		try {
			return codec->codec.migrate(&view, *codec);
		} catch (...) {
			codec->codec.release_large_scratch();
			throw;
		}
	});
	if (!converted) {
		codec->codec.release_large_scratch();
		PG_RETURN_DATUM(value);
	}
	if (converted->size() > MaxAllocSize - VARHDRSZ) {
		codec->codec.release_large_scratch();
		ereport(ERROR, (errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED), errmsg("converted value is too large"),
		                errdetail("Codec \"%s\" produced %zu bytes; a text value holds at most 1 GB.",
		                          codec->name.c_str(), converted->size())));
	}
	text *result = cstring_to_text_with_len(converted->data(), static_cast<int>(converted->size()));
	codec->codec.release_large_scratch();
	PG_RETURN_TEXT_P(result);
}

// is_legacy(codec, value): true only for a value the backfill would convert; ambiguous is not legacy.
Datum mext_is_legacy(PG_FUNCTION_ARGS)
{
	mext::pg::pace_point();
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
