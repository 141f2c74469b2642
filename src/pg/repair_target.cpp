#include "pg/repair_target.hpp"

#include <cstring>
#include <string>

#include "core/repair.hpp"
#include "pg/guard.hpp"
#include "pg/owner.hpp"
#include "pg/spi_row.hpp"

extern "C" {
#include "access/htup_details.h"
#include "access/parallel.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_operator.h"
#include "catalog/pg_type_d.h"
#include "commands/trigger.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/typcache.h"

PG_FUNCTION_INFO_V1(mext_migration_changed);
}

namespace mext::pg
{

uint64 repair_generation = 1;

namespace
{

RepairTarget *targets = nullptr;    // valid entries and invalidated ones not freed yet
Oid known_state_table = InvalidOid; // migration_ext.migration, as last read

// The migration's row and its walk key (the backfill's: the primary key or a unique index on NOT NULL
// columns, none containing the column itself), read as the state table's owner: row-level security hides
// a migration from roles that cannot act on its table, yet any role's reader repairs through it.
constexpr const char *kLookup = R"SQL(
SELECT m.relation::pg_catalog.oid AS relation, m.column_name, m.codec, m.phase, m.source_column IS NOT NULL AS is_move,
	CASE WHEN m.source_column IS NULL
		 THEN (SELECT w.key_columns FROM migration_ext.walk_key(m.relation, m.column_name) w) END AS key_columns
FROM migration_ext.migration m WHERE m.name OPERATOR(pg_catalog.=) $1
)SQL";

Oid state_table_oid()
{
	Oid namespace_oid = get_namespace_oid("migration_ext", false);
	Oid state = get_relname_relid("migration", namespace_oid);
	if (!OidIsValid(state))
		elog(ERROR, "migration_ext: table migration_ext.migration does not exist");
	known_state_table = state;
	return state;
}

Oid relation_owner(Oid relation, char *relkind)
{
	HeapTuple tuple = SearchSysCache1(RELOID, ObjectIdGetDatum(relation));
	if (!HeapTupleIsValid(tuple))
		ereport(ERROR,
		        (errcode(ERRCODE_UNDEFINED_TABLE), errmsg("relation %u of a migration does not exist", relation)));
	auto *form = reinterpret_cast<Form_pg_class>(GETSTRUCT(tuple));
	Oid owner = form->relowner;
	*relkind = form->relkind;
	ReleaseSysCache(tuple);
	return owner;
}

void free_entry(RepairTarget *entry)
{
	for (RepairPlan *plan = entry->plans; plan; plan = plan->next) {
		if (plan->lock)
			SPI_freeplan(plan->lock);
		if (plan->update)
			SPI_freeplan(plan->update);
	}
	MemoryContextDelete(entry->context);
}

// A change of the state table invalidates every entry, and an entry being read (see load()); a change of
// a target table, its entries.
void invalidate(Oid relid)
{
	bool every = relid == InvalidOid || relid == known_state_table;
	bool any = every;
	for (RepairTarget *entry = targets; entry; entry = entry->next)
		if (entry->valid && (every || relid == entry->relation || relid == entry->state_table)) {
			entry->valid = false;
			any = true;
		}
	if (any)
		++repair_generation;
}

void on_relcache_invalidation(Datum, Oid relid)
{
	invalidate(relid);
}

// Invalidated entries are freed once no call can be using them: at the end of the transaction.
void on_transaction_end(XactEvent event, void *)
{
	if (event != XACT_EVENT_COMMIT && event != XACT_EVENT_ABORT && event != XACT_EVENT_PREPARE)
		return;
	RepairTarget **link = &targets;
	while (*link) {
		RepairTarget *entry = *link;
		if (entry->valid) {
			link = &entry->next;
			continue;
		}
		*link = entry->next;
		free_entry(entry);
	}
}

// Reads the migration's row into a new entry (in its own context under CacheMemoryContext).
RepairTarget *load(const char *migration)
{
	uint64 generation_at_start = repair_generation;
	Oid state = state_table_oid();
	char ignored;
	Oid state_owner = relation_owner(state, &ignored);
	MemoryContext caller = CurrentMemoryContext;
	MemoryContext context =
	    AllocSetContextCreate(CacheMemoryContext, "migration_ext repair target", ALLOCSET_SMALL_SIZES);
	auto *entry = static_cast<RepairTarget *>(MemoryContextAllocZero(context, sizeof(RepairTarget)));
	entry->context = context;
	entry->state_table = state;
	strlcpy(entry->migration, migration, NAMEDATALEN);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	RoleSwitch saved;
	begin_as_role(state_owner, "pg_catalog, pg_temp", &saved);
	Oid types[1] = {TEXTOID};
	Datum values[1] = {CStringGetTextDatum(migration)};
	SPIPlanPtr plan = SPI_prepare(kLookup, 1, types);
	if (plan == nullptr)
		elog(ERROR, "migration_ext: could not prepare the migration lookup: %s", SPI_result_code_string(SPI_result));
	// The latest committed row, whatever the transaction's snapshot: the entry outlives the transaction, so
	// a REPEATABLE READ snapshot taken before the point of no return must not pin the old phase in it.
	Snapshot snapshot = IsInParallelMode() ? GetActiveSnapshot() : GetLatestSnapshot();
	int rc = SPI_execute_snapshot(plan, values, nullptr, snapshot, InvalidSnapshot, true, false, 1);
	end_as_role(saved);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "migration_ext: reading migration \"%s\" failed: %s", migration, SPI_result_code_string(rc));
	if (SPI_processed != 1)
		ereport(ERROR, (errcode(ERRCODE_UNDEFINED_OBJECT), errmsg("migration \"%s\" does not exist", migration),
		                errhint("repair_value() takes the name of a migration (create_migration()), not of a codec.")));

	SpiRow row;
	entry->relation = row.oid("relation");
	entry->is_move = row.boolean("is_move");
	char *column =
	    SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, SPI_fnumber(SPI_tuptable->tupdesc, "column_name"));
	char *phase =
	    SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, SPI_fnumber(SPI_tuptable->tupdesc, "phase"));
	entry->codec = MemoryContextStrdup(context, SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
	                                                         SPI_fnumber(SPI_tuptable->tupdesc, "codec")));
	entry->phase = guard([&] { return mext::parse_phase(phase); });

	char relkind;
	entry->owner = relation_owner(entry->relation, &relkind);
	entry->partitioned = relkind == RELKIND_PARTITIONED_TABLE;
	entry->attnum = get_attnum(entry->relation, column);
	if (entry->attnum == InvalidAttrNumber)
		ereport(ERROR, (errcode(ERRCODE_UNDEFINED_COLUMN),
		                errmsg("column \"%s\" of migration \"%s\" does not exist", column, migration)));
	Oid collation;
	get_atttypetypmodcoll(entry->relation, entry->attnum, &entry->column_type, &entry->column_typmod, &collation);

	bool keys_null;
	Datum keys = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
	                           SPI_fnumber(SPI_tuptable->tupdesc, "key_columns"), &keys_null);
	if (!keys_null) {
		Datum *names;
		bool *nulls;
		int count;
		deconstruct_array(DatumGetArrayTypeP(keys), NAMEOID, NAMEDATALEN, false, TYPALIGN_CHAR, &names, &nulls, &count);
		if (count > kMaxRepairKeys)
			elog(ERROR, "migration_ext: a key of %d columns", count);
		entry->key_count = count;
		for (int i = 0; i < count; ++i) {
			entry->key_attnums[i] = get_attnum(entry->relation, NameStr(*DatumGetName(names[i])));
			entry->key_types[i] = get_atttype(entry->relation, entry->key_attnums[i]);
		}
	}
	SPI_finish();
	MemoryContextSwitchTo(caller);
	// An invalidation that arrived while this was read may be newer than what it read: the entry serves
	// this call only.
	entry->valid = generation_at_start == repair_generation;
	entry->next = targets;
	targets = entry;
	return entry;
}

// OPERATOR(schema.=): the type's default equality, named so that no search_path can put another in its place.
char *equality_of(Oid type)
{
	TypeCacheEntry *cache = lookup_type_cache(type, TYPECACHE_EQ_OPR);
	if (!OidIsValid(cache->eq_opr))
		ereport(ERROR, (errcode(ERRCODE_UNDEFINED_FUNCTION),
		                errmsg("key type %s has no default equality operator", format_type_be(type))));
	HeapTuple tuple = SearchSysCache1(OPEROID, ObjectIdGetDatum(cache->eq_opr));
	if (!HeapTupleIsValid(tuple))
		elog(ERROR, "cache lookup failed for operator %u", cache->eq_opr);
	auto *form = reinterpret_cast<Form_pg_operator>(GETSTRUCT(tuple));
	char *result =
	    psprintf("OPERATOR(%s.%s)", quote_identifier(get_namespace_name(form->oprnamespace)), NameStr(form->oprname));
	ReleaseSysCache(tuple);
	return result;
}

// The two statements, as palloc'd strings. What goes into them is quoted or qualified here.
void build_statements(RepairTarget *t, const Oid *argument_types, char **lock, char **update)
{
	const char *relation =
	    quote_qualified_identifier(get_namespace_name(get_rel_namespace(t->relation)), get_rel_name(t->relation));
	const char *column = quote_identifier(get_attname(t->relation, t->attnum, false));
	const char *names[kMaxRepairKeys];
	const char *types[kMaxRepairKeys];
	const char *equalities[kMaxRepairKeys];
	for (int i = 0; i < t->key_count; ++i) {
		names[i] = quote_identifier(get_attname(t->relation, t->key_attnums[i], false));
		types[i] = format_type_extended(t->key_types[i], -1, FORMAT_TYPE_FORCE_QUALIFY);
		equalities[i] = equality_of(t->key_types[i]);
	}
	guard([&] {
		mext::RepairShape shape;
		shape.relation = relation;
		shape.only = !t->partitioned;
		shape.column = column;
		for (int i = 0; i < t->key_count; ++i)
			shape.key.push_back(
			    mext::RepairKey{names[i], types[i], equalities[i], argument_types[i] != t->key_types[i]});
		std::string lock_sql = mext::repair_lock_statement(shape);
		std::string update_sql = mext::repair_update_statement(shape);
		pg_call([&] {
			*lock = pstrdup(lock_sql.c_str());
			*update = pstrdup(update_sql.c_str());
		});
	});
}

SPIPlanPtr kept(const char *sql, int count, Oid *types)
{
	SPIPlanPtr plan = SPI_prepare(sql, count, types);
	if (plan == nullptr)
		elog(ERROR, "migration_ext: could not prepare the write-back: %s", SPI_result_code_string(SPI_result));
	if (SPI_keepplan(plan) != 0)
		elog(ERROR, "migration_ext: could not keep the write-back's plan");
	return plan;
}

} // namespace

RepairTarget *repair_target(const char *migration)
{
	for (RepairTarget *entry = targets; entry; entry = entry->next)
		if (entry->valid && std::strcmp(entry->migration, migration) == 0)
			return entry;
	return load(migration);
}

RepairPlan *repair_plan(RepairTarget *t, int key_count, const Oid *argument_types)
{
	for (RepairPlan *plan = t->plans; plan; plan = plan->next)
		if (plan->key_count == key_count &&
		    std::memcmp(plan->argument_types, argument_types, sizeof(Oid) * key_count) == 0 && plan->lock &&
		    plan->update)
			return plan;
	char *lock_sql;
	char *update_sql;
	build_statements(t, argument_types, &lock_sql, &update_sql);
	Oid types[kMaxRepairKeys + 2];
	std::memcpy(types, argument_types, sizeof(Oid) * key_count);
	types[key_count] = TEXTOID;
	types[key_count + 1] = t->column_type;

	auto *plan = static_cast<RepairPlan *>(MemoryContextAllocZero(t->context, sizeof(RepairPlan)));
	plan->key_count = key_count;
	std::memcpy(plan->argument_types, argument_types, sizeof(Oid) * key_count);
	plan->lock = kept(lock_sql, key_count + 1, types);
	// Planning may call the key type's support functions: the owner's to run, like the statement.
	RoleSwitch saved;
	begin_as_role(t->owner, "pg_catalog, pg_temp", &saved);
	plan->update = kept(update_sql, key_count + 2, types);
	end_as_role(saved);
	plan->next = t->plans;
	t->plans = plan;
	return plan;
}

void register_repair_target_callbacks()
{
	CacheRegisterRelcacheCallback(on_relcache_invalidation, PointerGetDatum(nullptr));
	RegisterXactCallback(on_transaction_end, nullptr);
}

} // namespace mext::pg

// Statement-level trigger on migration_ext.migration: every backend drops its repair targets at its next
// statement (a phase change reaches readers that repair as soon as it commits).
Datum mext_migration_changed(PG_FUNCTION_ARGS)
{
	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
		        (errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED), errmsg("migration_changed() is a trigger")));
	auto *trigger = reinterpret_cast<TriggerData *>(fcinfo->context);
	CacheInvalidateRelcache(trigger->tg_relation);
	return PointerGetDatum(nullptr);
}
