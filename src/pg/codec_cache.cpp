#include "pg/codec_cache.hpp"

#include "pg/owner.hpp"

#include <cstring>
#include <unordered_map>

extern "C" {
#include "access/htup_details.h"
#include "access/parallel.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_collation_d.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type_d.h"
#include "executor/spi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "nodes/value.h"
#include "parser/parse_func.h"
#include "regex/regex.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
}

namespace mext::pg
{

namespace
{

using CodecMap = std::unordered_map<std::string, std::shared_ptr<LoadedCodec>>;

CodecMap codec_cache;
CodecMap definition_cache; // codecs given by their definition (a contract's CHECK), keyed by it
std::vector<std::shared_ptr<LoadedCodec>> retired_codecs; // freed at the end of the transaction
uint64 cache_generation = 1;
Oid codec_table_oid = InvalidOid;

// Remembered in each call site's fn_extra.
struct CallSite {
	uint64 generation;
	LoadedCodec *codec;
	int name_length;
	char name[NAMEDATALEN];
};

mext::CodecSpec spec_from(const CodecDefinition &definition)
{
	int encoding = GetDatabaseEncoding();
	if (encoding != PG_UTF8 && pg_database_encoding_max_length() > 1)
		throw SqlError(ERRCODE_FEATURE_NOT_SUPPORTED, "migration_ext codecs need a UTF-8 or single-byte database",
		               std::string("The database encoding is ") + GetDatabaseEncodingName() + ".");
	mext::CodecSpec spec;
	spec.convert = definition.convert;
	spec.marker = definition.marker;
	spec.detect = mext::parse_detect_mode(definition.detect);
	spec.has_shape = definition.shape.has_value();
	spec.utf8 = encoding == PG_UTF8;
	return spec;
}

// Resolves schema.name(text) -> text. Plain PostgreSQL code: call it through pg_call.
Oid lookup_text_function(const char *schema, const char *name)
{
	Oid argtypes[1] = {TEXTOID};
	Oid fn = LookupFuncName(list_make2(makeString(pstrdup(schema)), makeString(pstrdup(name))), 1, argtypes, true);
	if (!OidIsValid(fn))
		ereport(ERROR,
		        (errcode(ERRCODE_UNDEFINED_FUNCTION), errmsg("function %s.%s(text) does not exist", schema, name),
		         errhint("An fn: step names a SQL function taking text and returning text.")));
	if (get_func_rettype(fn) != TEXTOID)
		ereport(ERROR, (errcode(ERRCODE_INVALID_FUNCTION_DEFINITION),
		                errmsg("function %s.%s(text) does not return text", schema, name)));
	if (pg_proc_aclcheck(fn, GetUserId(), ACL_EXECUTE) != ACLCHECK_OK)
		ereport(ERROR, (errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
		                errmsg("permission denied for function %s.%s(text)", schema, name)));
	return fn;
}

void check_shape_regex(text *shape)
{
	RE_compile_and_cache(shape, REG_ADVANCED, C_COLLATION_OID);
}

void on_codec_table_invalidation(Datum, Oid relid)
{
	if (relid == InvalidOid || relid == codec_table_oid)
		++cache_generation;
}

// A function behind an fn: step was dropped, replaced or had its privileges changed.
void on_function_invalidation(Datum, int, uint32)
{
	++cache_generation;
}

void on_transaction_end(XactEvent event, void *)
{
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_COMMIT ||
	    event == XACT_EVENT_PARALLEL_ABORT)
		retired_codecs.clear();
}

struct CodecRow {
	bool found;
	char *convert;
	char *marker;
	char *detect;
	char *shape;
	char *creator;
};

char *copy_column(HeapTuple tuple, TupleDesc desc, int column, MemoryContext target)
{
	char *value = SPI_getvalue(tuple, desc, column);
	return value ? MemoryContextStrdup(target, value) : nullptr;
}

// Plain PostgreSQL code (SPI); call it through pg_call. Strings land in the caller's context.
void fetch_codec_row(const char *name, CodecRow *row)
{
	MemoryContext caller = CurrentMemoryContext;
	Oid namespace_oid = get_namespace_oid("migration_ext", false);
	codec_table_oid = get_relname_relid("codec", namespace_oid);
	Oid argtypes[1] = {TEXTOID};
	Datum values[1] = {CStringGetTextDatum(name)};
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	// The latest committed definition, whatever the transaction's snapshot: the cache outlives the
	// transaction, so a REPEATABLE READ snapshot must not pin an old definition in it.
	SPIPlanPtr plan = SPI_prepare("SELECT convert, marker, detect, shape, created_by FROM migration_ext.codec WHERE "
	                              "name OPERATOR(pg_catalog.=) $1",
	                              1, argtypes);
	if (!plan)
		elog(ERROR, "preparing the codec lookup failed: %s", SPI_result_code_string(SPI_result));
	// Parallel mode forbids taking a new snapshot; the active one is the statement's, current enough.
	Snapshot snapshot = IsInParallelMode() ? GetActiveSnapshot() : GetLatestSnapshot();
	int rc = SPI_execute_snapshot(plan, values, nullptr, snapshot, InvalidSnapshot, true, false, 1);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "reading migration_ext.codec failed: %s", SPI_result_code_string(rc));
	row->found = SPI_processed == 1;
	if (row->found) {
		HeapTuple tuple = SPI_tuptable->vals[0];
		TupleDesc desc = SPI_tuptable->tupdesc;
		row->convert = copy_column(tuple, desc, 1, caller);
		row->marker = copy_column(tuple, desc, 2, caller);
		row->detect = copy_column(tuple, desc, 3, caller);
		row->shape = copy_column(tuple, desc, 4, caller);
		row->creator = copy_column(tuple, desc, 5, caller);
	}
	SPI_finish();
}

std::shared_ptr<LoadedCodec> load_codec(const std::string &name)
{
	CodecRow row{};
	pg_call([&] { fetch_codec_row(name.c_str(), &row); });
	if (!row.found)
		throw SqlError(ERRCODE_UNDEFINED_OBJECT, "codec \"" + name + "\" does not exist", {},
		               "Create it with create_codec(name, convert, marker, detect, shape).");
	CodecDefinition definition;
	definition.convert = row.convert;
	if (row.marker)
		definition.marker = std::string(row.marker);
	definition.detect = row.detect;
	if (row.shape)
		definition.shape = std::string(row.shape);
	if (row.creator)
		definition.creator = std::string(row.creator);
	return std::make_shared<LoadedCodec>(name, definition);
}

// Both caches start over when a codec or a function behind an fn: step changes.
void retire_stale_codecs()
{
	static uint64 cache_loaded_at = 0;
	if (cache_loaded_at == cache_generation)
		return;
	for (CodecMap *cache : {&codec_cache, &definition_cache}) {
		for (auto &entry : *cache)
			retired_codecs.push_back(std::move(entry.second));
		cache->clear();
	}
	cache_loaded_at = cache_generation;
}

LoadedCodec &lookup_codec(const std::string &name)
{
	retire_stale_codecs();
	auto found = codec_cache.find(name);
	if (found != codec_cache.end())
		return *found->second;
	auto loaded = load_codec(name);
	LoadedCodec &result = *loaded;
	codec_cache.emplace(name, std::move(loaded));
	return result;
}

} // namespace

LoadedCodec::LoadedCodec(std::string codec_name, const CodecDefinition &definition)
    : name(std::move(codec_name)), codec(spec_from(definition)), context_(nullptr)
{
	pg_call([&] { context_ = AllocSetContextCreate(CacheMemoryContext, "migration_ext codec", ALLOCSET_SMALL_SIZES); });
	const auto &steps = codec.steps();
	functions_.assign(steps.size(), nullptr);
	owners_.assign(steps.size(), InvalidOid);
	for (std::size_t i = 0; i < steps.size(); ++i) {
		if (steps[i].kind != mext::StepKind::Function)
			continue;
		const std::string &qualified = steps[i].arg;
		std::string schema = qualified.substr(0, qualified.find('.'));
		std::string function = qualified.substr(qualified.find('.') + 1);
		pg_call([&] {
			Oid fn = lookup_text_function(schema.c_str(), function.c_str());
			auto *info = static_cast<FmgrInfo *>(MemoryContextAllocZero(context_, sizeof(FmgrInfo)));
			fmgr_info_cxt(fn, info, context_);
			functions_[i] = info;
			HeapTuple proc = SearchSysCache1(PROCOID, ObjectIdGetDatum(fn));
			if (!HeapTupleIsValid(proc))
				elog(ERROR, "cache lookup failed for function %u", fn);
			owners_[i] = reinterpret_cast<Form_pg_proc>(GETSTRUCT(proc))->proowner;
			ReleaseSysCache(proc);
			// The name is resolved anew in every session: a function of that name that another role
			// created since must not run (as that role) in this codec.
			if (definition.creator && !superuser_arg(owners_[i])) {
				Oid creator = get_role_oid(definition.creator->c_str(), true);
				if (!OidIsValid(creator) || !has_privs_of_role(creator, owners_[i]))
					ereport(ERROR, (errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					                errmsg("codec \"%s\" calls function %s.%s, owned by role %s", name.c_str(),
					                       schema.c_str(), function.c_str(), GetUserNameFromId(owners_[i], false)),
					                errdetail("An fn: step may call only functions of the codec's creator (%s) or of a "
					                          "superuser.",
					                          definition.creator->c_str())));
			}
		});
	}
	if (definition.shape) {
		const std::string &shape = *definition.shape;
		pg_call([&] {
			MemoryContext old = MemoryContextSwitchTo(context_);
			shape_ = cstring_to_text_with_len(shape.data(), static_cast<int>(shape.size()));
			MemoryContextSwitchTo(old);
			check_shape_regex(shape_);
		});
	}
}

LoadedCodec::~LoadedCodec()
{
	if (context_)
		MemoryContextDelete(context_);
}

// An fn: step's function runs wherever the codec is evaluated: in a superuser's verifying scan, in the
// CHECK constraint of a contract on every write, in a mirror trigger, in migrate_value. So that no role
// ever runs code a less privileged role can change, a function not owned by a superuser runs as its
// owner, in a security-restricted operation with search_path pg_catalog, pg_temp, as if it were a
// SECURITY DEFINER function pinned to a safe path; a superuser's function runs as the caller.
std::string LoadedCodec::call_function(std::size_t step_index, std::string_view input)
{
	text *result = nullptr;
	FmgrInfo *info = functions_.at(step_index);
	Oid owner = owners_.at(step_index);
	pg_call([&] {
		// The codec is cached per backend, but the caller can change (SET ROLE, SECURITY DEFINER):
		// check the privilege on every call, as calling the function directly would.
		if (pg_proc_aclcheck(info->fn_oid, GetUserId(), ACL_EXECUTE) != ACLCHECK_OK)
			ereport(ERROR, (errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			                errmsg("permission denied for function %s", get_func_name(info->fn_oid)),
			                errdetail("Codec \"%s\" calls it in an fn: step.", name.c_str())));
		text *argument = cstring_to_text_with_len(input.data(), static_cast<int>(input.size()));
		if (superuser_arg(owner)) {
			result = DatumGetTextPP(FunctionCall1Coll(info, DEFAULT_COLLATION_OID, PointerGetDatum(argument)));
			return;
		}
		RoleSwitch saved;
		begin_as_role(owner, "pg_catalog, pg_temp", &saved);
		PG_TRY();
		{
			result = DatumGetTextPP(FunctionCall1Coll(info, DEFAULT_COLLATION_OID, PointerGetDatum(argument)));
		}
		PG_CATCH();
		{
			// pg_call() turns the error into a C++ exception that may be caught and handled: the
			// caller's role and settings must be back before anything else runs.
			end_as_role(saved);
			PG_RE_THROW();
		}
		PG_END_TRY();
		end_as_role(saved);
	});
	return std::string(VARDATA_ANY(result), VARSIZE_ANY_EXHDR(result));
}

bool LoadedCodec::matches_shape(std::string_view value)
{
	bool matched = false;
	pg_call([&] {
		matched = RE_compile_and_execute(shape_, const_cast<char *>(value.data()), static_cast<int>(value.size()),
		                                 REG_ADVANCED, C_COLLATION_OID, 0, nullptr);
	});
	return matched;
}

LoadedCodec &codec_for_call(FunctionCallInfo fcinfo, const text *name)
{
	if (!fcinfo->flinfo)
		return codec_for_site(nullptr, nullptr, name);
	return codec_for_site(&fcinfo->flinfo->fn_extra, fcinfo->flinfo->fn_mcxt, name);
}

LoadedCodec &codec_for_site(void **slot, MemoryContext slot_context, const text *name)
{
	const char *name_data = VARDATA_ANY(name);
	int name_length = VARSIZE_ANY_EXHDR(name);
	auto *site = slot ? static_cast<CallSite *>(*slot) : nullptr;
	if (site && site->generation == cache_generation && site->name_length == name_length &&
	    std::memcmp(site->name, name_data, name_length) == 0)
		return *site->codec;

	if (name_length == 0 || name_length >= NAMEDATALEN)
		throw SqlError(ERRCODE_UNDEFINED_OBJECT, "codec \"" + std::string(name_data, name_length) + "\" does not exist",
		               {}, "Create it with create_codec(name, convert, marker, detect, shape).");
	LoadedCodec &codec = lookup_codec(std::string(name_data, name_length));
	if (slot) {
		if (!site)
			pg_call([&] {
				site = static_cast<CallSite *>(MemoryContextAllocZero(slot_context, sizeof(CallSite)));
				*slot = site;
			});
		site->generation = cache_generation;
		site->codec = &codec;
		site->name_length = name_length;
		std::memcpy(site->name, name_data, name_length);
	}
	return codec;
}

LoadedCodec &codec_for_definition(FunctionCallInfo fcinfo, const CodecDefinition &definition)
{
	// The key: every field, each ended by a byte no text value contains ('\0'), a missing one by '\1'.
	static std::string key;
	key.clear();
	for (const std::optional<std::string> &field :
	     {std::optional<std::string>(definition.convert), definition.marker,
	      std::optional<std::string>(definition.detect), definition.shape, definition.creator}) {
		if (field)
			key += *field;
		key += field ? '\0' : '\1';
	}
	struct Site {
		uint64 generation;
		LoadedCodec *codec;
		std::size_t key_length;
		char key[FLEXIBLE_ARRAY_MEMBER];
	};
	auto *site = fcinfo->flinfo ? static_cast<Site *>(fcinfo->flinfo->fn_extra) : nullptr;
	if (site && site->generation == cache_generation && site->key_length == key.size() &&
	    std::memcmp(site->key, key.data(), key.size()) == 0)
		return *site->codec;

	retire_stale_codecs();
	auto found = definition_cache.find(key);
	LoadedCodec *codec;
	if (found != definition_cache.end()) {
		codec = found->second.get();
	} else {
		auto loaded = std::make_shared<LoadedCodec>("(contract)", definition);
		codec = loaded.get();
		definition_cache.emplace(key, std::move(loaded));
	}
	if (fcinfo->flinfo)
		pg_call([&] {
			if (!site || site->key_length < key.size())
				site =
				    static_cast<Site *>(MemoryContextAlloc(fcinfo->flinfo->fn_mcxt, offsetof(Site, key) + key.size()));
			site->generation = cache_generation;
			site->codec = codec;
			site->key_length = key.size();
			std::memcpy(site->key, key.data(), key.size());
			fcinfo->flinfo->fn_extra = site;
		});
	return *codec;
}

void validate_codec_definition(const CodecDefinition &definition, Oid actor)
{
	LoadedCodec probe("validation", definition);
	for (std::size_t i = 0; i < probe.functions().size(); ++i) {
		if (!probe.functions()[i])
			continue;
		Oid fn = probe.functions()[i]->fn_oid;
		Oid owner = probe.function_owner(i);
		pg_call([&] {
			if (pg_proc_aclcheck(fn, actor, ACL_EXECUTE) != ACLCHECK_OK)
				ereport(ERROR, (errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				                errmsg("permission denied for function %s", get_func_name(fn))));
			// Another role's function would run as that role wherever the codec is evaluated: only the
			// codec's creator's own functions (or those of a role it belongs to) and superusers' qualify.
			if (!superuser_arg(owner) && !has_privs_of_role(actor, owner))
				ereport(ERROR,
				        (errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				         errmsg("function %s is owned by role %s", get_func_name(fn), GetUserNameFromId(owner, false)),
				         errdetail("An fn: step runs its function as the function's owner, wherever the codec is "
				                   "evaluated."),
				         errhint("Use a function you own, or one owned by a superuser.")));
		});
	}
}

void register_codec_cache_callbacks()
{
	CacheRegisterRelcacheCallback(on_codec_table_invalidation, PointerGetDatum(nullptr));
	CacheRegisterSyscacheCallback(PROCOID, on_function_invalidation, PointerGetDatum(nullptr));
	RegisterXactCallback(on_transaction_end, nullptr);
}

} // namespace mext::pg
