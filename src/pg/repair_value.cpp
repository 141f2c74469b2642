// repair_value(migration, value, VARIADIC key): the smart read of migrate_value() that also writes the
// conversion back to the row it came from, so that the rows the application reads convert first.
//
// The write-back never changes what the read returns (the converted value, in the value's type, whether it
// wrote or not) and never fails it: it runs in a subtransaction whose errors are swallowed, waits for no
// lock (the row's is taken with SKIP LOCKED, anything else with a 1 ms lock_timeout), and writes only
// where the column still holds the value read (a newer write is never clobbered). It happens only after
// the point of no return, outside read-only, serializable, parallel and security-restricted contexts, at
// most migration_ext.repairs_per_transaction times a transaction, and only for a caller that may update
// the column: the caller locks the row with its own rights and row-level security, then the table's owner
// writes it in a security-restricted operation, so that the table's triggers and index expressions run
// with their owner's rights, never the reader's (who may be a superuser reading someone's table).
//
// The frames here own no C++ objects: PostgreSQL errors may cross them (see guard.hpp).
#include "core/repair.hpp"
#include "pg/codec_cache.hpp"
#include "pg/owner.hpp"
#include "pg/pace_point.hpp"
#include "pg/repair_counts.hpp"
#include "pg/repair_target.hpp"
#include "pg/settings.hpp"
#include "pg/smart_read.hpp"
#include "pg/text_form.hpp"

#include <cstring>

extern "C" {
#include "access/parallel.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/pg_type_d.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "parser/parse_coerce.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/resowner.h"

PG_FUNCTION_INFO_V1(mext_repair_value);
}

using mext::pg::guard;
using mext::pg::LoadedCodec;
using mext::pg::RepairPlan;
using mext::pg::RepairTarget;

namespace
{

// What a call site keeps in its fn_extra.
struct RepairSite {
	void *codec_site; // codec_for_site()'s
	mext::pg::TextForm *form;
	uint64 generation; // repair_generation when `target` was looked up
	RepairTarget *target;
	int name_length;
	char name[NAMEDATALEN];
	int key_count;
	Oid key_types[mext::pg::kMaxRepairKeys];    // the key arguments' types, as the call passes them
	bool key_literal[mext::pg::kMaxRepairKeys]; // an untyped literal, passed as a C string: bound as text
};

bool in_write_back = false; // a write-back's own statements call repair_value() again

RepairSite *site_of(FunctionCallInfo fcinfo)
{
	if (fcinfo->flinfo == nullptr)
		ereport(ERROR, (errcode(ERRCODE_FEATURE_NOT_SUPPORTED), errmsg("repair_value() needs a call site")));
	auto *site = static_cast<RepairSite *>(fcinfo->flinfo->fn_extra);
	if (site)
		return site;
	if (get_fn_expr_variadic(fcinfo->flinfo))
		ereport(ERROR, (errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
		                errmsg("repair_value() takes the key's values one by one, not as a VARIADIC array"),
		                errhint("Write repair_value('migration', column, key1, key2).")));
	int key_count = PG_NARGS() - 2;
	if (key_count > mext::pg::kMaxRepairKeys)
		ereport(ERROR, (errcode(ERRCODE_TOO_MANY_ARGUMENTS),
		                errmsg("repair_value() takes at most %d key values", mext::pg::kMaxRepairKeys)));
	site = static_cast<RepairSite *>(MemoryContextAllocZero(fcinfo->flinfo->fn_mcxt, sizeof(RepairSite)));
	site->form = mext::pg::text_form_of_argument(fcinfo, 1);
	site->key_count = key_count;
	for (int i = 0; i < key_count; ++i) {
		site->key_types[i] = get_fn_expr_argtype(fcinfo->flinfo, i + 2);
		site->key_literal[i] = site->key_types[i] == UNKNOWNOID;
		if (site->key_literal[i])
			site->key_types[i] = TEXTOID;
	}
	fcinfo->flinfo->fn_extra = site;
	return site;
}

// What makes a call unusable whatever the data: a column move, key values that do not name a row by the
// migration's key. Raised at every call, in every phase, so that a reader is found wrong when it is first
// tried, before the point of no return.
void check_call(const RepairSite *site, const RepairTarget *t)
{
	if (t->is_move)
		ereport(ERROR, (errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
		                errmsg("repair_value() cannot repair migration \"%s\", a column move", t->migration),
		                errdetail("Its legacy state is in another column; the mirror trigger and the backfill fill "
		                          "this one."),
		                errhint("Read the new column through migrate_value() until the backfill is done.")));
	if (site->key_count != t->key_count) {
		StringInfoData key;
		initStringInfo(&key);
		for (int i = 0; i < t->key_count; ++i)
			appendStringInfo(&key, "%s%s", i ? ", " : "",
			                 quote_identifier(get_attname(t->relation, t->key_attnums[i], false)));
		ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
		                errmsg("repair_value() got %d key value(s) for migration \"%s\", whose rows are named by %d",
		                       site->key_count, t->migration, t->key_count),
		                errdetail("The key of %s is (%s).", get_rel_name(t->relation), key.data),
		                errhint("Pass the value, then the row's key values in that order: repair_value('%s', %s, %s).",
		                        t->migration, quote_identifier(get_attname(t->relation, t->attnum, false)), key.data)));
	}
	for (int i = 0; i < t->key_count; ++i) {
		Oid from = site->key_types[i];
		Oid to = t->key_types[i];
		if (from != to && !can_coerce_type(1, &from, &to, COERCION_EXPLICIT))
			ereport(ERROR, (errcode(ERRCODE_DATATYPE_MISMATCH),
			                errmsg("key value %d of repair_value() is of type %s, which cannot be cast to %s", i + 1,
			                       format_type_be(from), format_type_be(to)),
			                errdetail("Key column %s of %s is of type %s.",
			                          quote_identifier(get_attname(t->relation, t->key_attnums[i], false)),
			                          get_rel_name(t->relation), format_type_be(to))));
	}
}

RepairTarget *target_of(RepairSite *site, const text *name)
{
	const char *data = VARDATA_ANY(name);
	int length = VARSIZE_ANY_EXHDR(name);
	if (site->target && site->generation == mext::pg::repair_generation && site->name_length == length &&
	    std::memcmp(site->name, data, length) == 0)
		return site->target;
	if (length == 0 || length >= NAMEDATALEN)
		ereport(ERROR,
		        (errcode(ERRCODE_UNDEFINED_OBJECT), errmsg("migration \"%s\" does not exist", text_to_cstring(name))));
	char migration[NAMEDATALEN];
	std::memcpy(migration, data, length);
	migration[length] = '\0';
	site->target = nullptr;
	site->generation = mext::pg::repair_generation;
	RepairTarget *target = mext::pg::repair_target(migration);
	check_call(site, target);
	site->target = target;
	site->name_length = length;
	std::memcpy(site->name, data, length);
	return target;
}

// Has the current role `mode` on the column, through the table or the column itself?
bool column_privilege(Oid relation, AttrNumber attnum, Oid user, AclMode mode)
{
	return pg_class_aclcheck(relation, user, mode) == ACLCHECK_OK ||
	       pg_attribute_aclcheck(relation, attnum, user, mode) == ACLCHECK_OK;
}

// UPDATE on the column, and SELECT on it and on the key, which the write-back's conditions read.
bool may_write(const RepairTarget *t)
{
	Oid user = GetUserId();
	if (!column_privilege(t->relation, t->attnum, user, ACL_UPDATE) ||
	    !column_privilege(t->relation, t->attnum, user, ACL_SELECT))
		return false;
	for (int i = 0; i < t->key_count; ++i)
		if (!column_privilege(t->relation, t->key_attnums[i], user, ACL_SELECT))
			return false;
	return true;
}

// The converted value for the column: `converted` itself when the value has the column's type, else its
// text form read by the column type's input function (typmod and domain checks included).
Datum column_value(const RepairTarget *t, const mext::pg::TextForm *form, Datum converted, text *converted_text)
{
	if (form->type == t->column_type)
		return converted;
	Oid input;
	Oid param;
	getTypeInputInfo(t->column_type, &input, &param);
	return OidInputFunctionCall(input, text_to_cstring(converted_text), param, t->column_typmod);
}

// The write-back. True when it wrote the row. Every error is swallowed (the read goes on) except a
// cancel, which the caller asked for.
bool write_back(RepairTarget *t, const RepairSite *site, FunctionCallInfo fcinfo, text *legacy, Datum converted,
                text *converted_form)
{
	MemoryContext caller_context = CurrentMemoryContext;
	ResourceOwner caller_owner = CurrentResourceOwner;
	volatile bool written = false;
	in_write_back = true;
	BeginInternalSubTransaction(nullptr);
	MemoryContextSwitchTo(caller_context);
	PG_TRY();
	{
		Datum values[mext::pg::kMaxRepairKeys + 2];
		char nulls[mext::pg::kMaxRepairKeys + 2];
		for (int i = 0; i < site->key_count; ++i) {
			values[i] = site->key_literal[i] ? CStringGetTextDatum(PG_GETARG_CSTRING(i + 2)) : PG_GETARG_DATUM(i + 2);
			nulls[i] = ' ';
		}
		values[site->key_count] = legacy ? PointerGetDatum(legacy) : Datum(0);
		nulls[site->key_count] = legacy ? ' ' : 'n';
		values[site->key_count + 1] = column_value(t, site->form, converted, converted_form);
		nulls[site->key_count + 1] = ' ';

		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		int guc_level = NewGUCNestLevel();
		(void)set_config_option("search_path", "pg_catalog, pg_temp", PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE, true,
		                        0, false);
		(void)set_config_option("lock_timeout", "1", PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);
		RepairPlan *plan = mext::pg::repair_plan(t, site->key_count, site->key_types);
		int rc = SPI_execute_plan(plan->lock, values, nulls, false, 1);
		if (rc != SPI_OK_SELECT)
			elog(ERROR, "migration_ext: the write-back's lock failed: %s", SPI_result_code_string(rc));
		if (SPI_processed == 1) {
			mext::pg::RoleSwitch saved;
			mext::pg::begin_as_role(t->owner, "pg_catalog, pg_temp", &saved);
			rc = SPI_execute_plan(plan->update, values, nulls, false, 0);
			mext::pg::end_as_role(saved);
			if (rc != SPI_OK_UPDATE)
				elog(ERROR, "migration_ext: the write-back failed: %s", SPI_result_code_string(rc));
			written = SPI_processed == 1;
		}
		AtEOXact_GUC(false, guc_level);
		SPI_finish();
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(caller_context);
		CurrentResourceOwner = caller_owner;
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(caller_context);
		ErrorData *error = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(caller_context);
		CurrentResourceOwner = caller_owner;
		in_write_back = false;
		if (error->sqlerrcode == ERRCODE_QUERY_CANCELED)
			ReThrowError(error);
		ereport(DEBUG1, (errmsg_internal("repair_value(): migration \"%s\": not written back: %s", t->migration,
		                                 error->message)));
		FreeErrorData(error);
		return false;
	}
	PG_END_TRY();
	in_write_back = false;
	return written;
}

} // namespace

// repair_value(migration text, value anyelement, VARIADIC key "any") RETURNS anyelement
Datum mext_repair_value(PG_FUNCTION_ARGS)
{
	mext::pg::pace_point();
	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	RepairSite *site = site_of(fcinfo);
	RepairTarget *target = target_of(site, PG_GETARG_TEXT_PP(0));
	text *codec_name = cstring_to_text(target->codec);
	LoadedCodec *codec =
	    guard([&] { return &mext::pg::codec_for_site(&site->codec_site, fcinfo->flinfo->fn_mcxt, codec_name); });
	const mext::CodecSpec &spec = codec->codec.spec();
	const bool is_text = site->form->type == TEXTOID;

	// The smart read, as migrate_value() does it.
	text *legacy = nullptr;
	if (!PG_ARGISNULL(1)) {
		if (spec.detect == mext::DetectMode::Null)
			PG_RETURN_DATUM(PG_GETARG_DATUM(1));
		if (is_text) {
			if (spec.marker && mext::pg::starts_with_marker(PG_GETARG_DATUM(1), *spec.marker))
				PG_RETURN_DATUM(PG_GETARG_DATUM(1));
			legacy = PG_GETARG_TEXT_PP(1);
		} else {
			legacy = cstring_to_text(OutputFunctionCall(&site->form->output, PG_GETARG_DATUM(1)));
			if (spec.marker && mext::pg::starts_with_marker(PointerGetDatum(legacy), *spec.marker))
				PG_RETURN_DATUM(PG_GETARG_DATUM(1));
		}
	}
	text *converted_form = mext::pg::converted_text(codec, legacy);
	if (!converted_form) {
		if (PG_ARGISNULL(1))
			PG_RETURN_NULL();
		PG_RETURN_DATUM(PG_GETARG_DATUM(1));
	}
	Datum converted = PointerGetDatum(converted_form);
	if (!is_text) {
		bool isnull;
		converted = mext::pg::read_text_form(site->form, text_to_cstring(converted_form), &isnull, false, 0,
		                                     codec->name.c_str());
	}

	// The write-back, where it may happen.
	mext::RepairFacts facts;
	facts.legacy = true;
	facts.phase = target->phase;
	facts.nested = in_write_back;
	facts.in_recovery = RecoveryInProgress();
	facts.read_only = XactReadOnly;
	facts.parallel = IsInParallelMode();
	facts.restricted = InSecurityRestrictedOperation();
	facts.serializable = IsolationIsSerializable();
	for (int i = 0; i < site->key_count; ++i)
		facts.key_has_null = facts.key_has_null || PG_ARGISNULL(i + 2);
	facts.repaired_in_transaction = mext::pg::repairs_in_transaction();
	facts.budget = mext::pg::repairs_per_transaction;
	facts.may_update = true;
	mext::RepairSkip skip = mext::repair_decision(facts);
	if (skip == mext::RepairSkip::None && !may_write(target))
		skip = mext::RepairSkip::Privilege;
	if (skip == mext::RepairSkip::None) {
		mext::pg::before_repair();
		if (write_back(target, site, fcinfo, legacy, converted, converted_form))
			mext::pg::record_repair(target->state_table, target->migration);
	} else {
		ereport(DEBUG2, (errmsg_internal("repair_value(): migration \"%s\": converted only (%s)", target->migration,
		                                 mext::repair_skip_name(skip))));
	}
	PG_RETURN_DATUM(converted);
}
