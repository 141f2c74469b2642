// Keyset batches: the one set-based statement that converts the next batch of a table in key order.
// Pure string building; the PostgreSQL layer hands in identifiers already quoted and type names
// already formatted, and binds every value as a parameter:
//   $1 codec name (text), $2 batch size (int), $3 the last key of the previous batch (text[]).
#pragma once

#include <optional>
#include <string>
#include <vector>

namespace mext
{

struct KeyColumn {
	std::string name; // quoted identifier
	std::string type; // format_type() of the column: safe to splice into a cast
};

struct BatchShape {
	std::string relation;              // quoted, schema-qualified; walked with ONLY (a leaf partition)
	std::vector<KeyColumn> key;        // primary key or unique NOT NULL index, in index order
	std::string target;                // quoted column that receives the target format
	std::optional<std::string> source; // quoted column read when moving data between columns
	std::string api_schema;            // quoted schema of is_legacy() and migrate_value()
	// format_type() of the target column when it is not text: the converted text form is read back as
	// that type by migration_ext.cast_converted(), which names the row's key when it does not read.
	std::optional<std::string> target_type;
};

// The statement returns one row: scanned, legacy_seen, converted, conflicts (bigint) and last_key
// (text[], NULL when the batch was empty). Rows are read and written in one statement, so the read
// and the conditional write share a snapshot; a row a live writer changed in between is re-checked
// by the UPDATE on its newest version (EvalPlanQual), converted from that version only if it is
// still legacy, and counted as a conflict whenever its state at write time differs from the read.
std::string batch_statement(const BatchShape &shape, bool after_last_key);

// Table moves (V1 and V2 coexisting): copies the next batch of V1, converted, into V2 where V2 lacks
// the row. Each V2 column receives its V1 column cast to its type; the target column receives
// api.migrate_value($1, source), cast back to target_type (V2's column) when there is one. V1's rows are
// read FOR SHARE, so a row deleted meanwhile (and its deletion mirrored into V2) is not copied back. ON
// CONFLICT DO NOTHING: a row the application (or a mirror) already wrote to V2 is never overwritten. Same
// parameters and result columns as batch_statement(); rows V2 already had are counted as not legacy
// (skipped), and conflicts is always 0.
struct CopyColumn {
	std::string target; // quoted column of V2
	std::string source; // quoted column of V1 it comes from (unused for the converted column)
	std::string type;   // format_type() of V2's column, the cast applied; empty: assigned as it is
};
struct CopyShape {
	BatchShape batch;                // relation = V1 (a leaf), target = column in V2, source = column in V1
	std::string target_relation;     // quoted V2
	std::vector<CopyColumn> columns; // every column copied, the target column included
};
std::string copy_statement(const CopyShape &shape, bool after_last_key);

// A Citus reference table, converted through the coordinator: Citus routes an UPDATE to every copy of the
// table, but refuses one that calls a STABLE function (is_legacy, migrate_value) on the row. So a batch is
// two statements. The read locks the next batch's rows (FOR UPDATE, on every copy) and converts its legacy
// values on the coordinator; it returns scanned, legacy_seen (bigint), last_key (text[]), keys (text[][]:
// one array a key column), olds and news (text[]: each legacy row's value and its conversion). The write
// sets each of those rows to its conversion only where it still holds the value read (compare and set),
// and returns the rows it wrote; its parameters are $1 keys, $2 olds, $3 news. The read takes $1 codec,
// $2 batch size, $3 last key, as batch_statement() does. In place only (no source column).
std::string reference_read_statement(const BatchShape &shape, bool after_last_key);
std::string reference_write_statement(const BatchShape &shape);

// A row comparison over the key, e.g. "(t.a, t.b)". prefix is "" or an alias with its dot.
std::string key_tuple(const std::vector<KeyColumn> &key, const std::string &prefix);

} // namespace mext
