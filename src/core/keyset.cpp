#include "core/keyset.hpp"

#include <algorithm>
#include <stdexcept>

namespace mext
{

namespace
{

std::string joined(const std::vector<KeyColumn> &key, const std::string &before, const std::string &after,
                   const std::string &separator = ", ")
{
	std::string out;
	for (std::size_t i = 0; i < key.size(); ++i) {
		if (i)
			out += separator;
		out += before + key[i].name + after;
	}
	return out;
}

// (($3[1])::int8, ($3[2])::text): the last key, cast back from its text form to each column's type.
std::string last_key_tuple(const std::vector<KeyColumn> &key)
{
	std::string out = "(";
	for (std::size_t i = 0; i < key.size(); ++i) {
		if (i)
			out += ", ";
		out += "($3[" + std::to_string(i + 1) + "])::" + key[i].type;
	}
	return out + ")";
}

// The value the target column receives: the converted text form of `read_column` of alias t, read back
// as the column's type unless it is text (then nothing is added to the hot path).
std::string converted_value(const BatchShape &shape, const std::string &read_column)
{
	std::string converted = shape.api_schema + ".migrate_value($1, t." + read_column + "::text)";
	if (!shape.target_type)
		return converted;
	return "migration_ext.cast_converted(" + converted + ", NULL::" + *shape.target_type + ", ARRAY[" +
	       joined(shape.key, "t.", "::text") + "])";
}

} // namespace

std::string key_tuple(const std::vector<KeyColumn> &key, const std::string &prefix)
{
	return "(" + joined(key, prefix, "") + ")";
}

std::string batch_statement(const BatchShape &shape, bool after_last_key)
{
	if (shape.key.empty())
		throw std::invalid_argument("a keyset batch needs at least one key column");
	const std::string &api = shape.api_schema;
	const std::string read_column = shape.source ? *shape.source : shape.target;
	auto needs_work = [&](const std::string &alias) {
		if (shape.source)
			return "(" + alias + shape.target + " IS NULL OR " + api + ".is_legacy($1, " + alias + shape.target +
			       "::text))";
		return api + ".is_legacy($1, " + alias + shape.target + "::text)";
	};
	const std::string lower_bound = after_last_key ? key_tuple(shape.key, "") + " > " + last_key_tuple(shape.key) : "";
	const std::string order = joined(shape.key, "", "");

	std::string sql;
	sql += "WITH snap AS MATERIALIZED (SELECT " + order + ", " + needs_work("") + " AS mext_was_legacy_ FROM ONLY " +
	       shape.relation;
	if (after_last_key)
		sql += " WHERE " + lower_bound;
	sql += " ORDER BY " + order + " LIMIT $2), ";
	sql += "bound AS (SELECT " + order + " FROM snap ORDER BY " + joined(shape.key, "", " DESC") + " LIMIT 1), ";
	sql += "upd AS (UPDATE ONLY " + shape.relation + " AS t SET " + shape.target + " = " +
	       converted_value(shape, read_column) + " WHERE ";
	if (after_last_key)
		sql += key_tuple(shape.key, "t.") + " > " + last_key_tuple(shape.key) + " AND ";
	sql += key_tuple(shape.key, "t.") + " <= (" + joined(shape.key, "(SELECT ", " FROM bound)") + ") AND " +
	       needs_work("t.") + " RETURNING " + joined(shape.key, "t.", "") + "), ";
	// Conflicts: rows whose state at write time differs from the read. The exact count needs a join of
	// what was read with what was written; it runs only when the two counts differ, so a batch no live
	// writer touched pays nothing for it. (Changes that cancel out within one batch, such as a key
	// moved inside the batch's own range, are not counted.)
	sql += "tally AS (SELECT count(*) AS scanned, count(*) FILTER (WHERE mext_was_legacy_) AS legacy_seen FROM snap), ";
	sql += "written AS (SELECT count(*) AS converted FROM upd) ";
	sql += "SELECT tally.scanned::bigint, tally.legacy_seen::bigint, written.converted::bigint, "
	       "CASE WHEN tally.legacy_seen = written.converted THEN 0 "
	       "ELSE (SELECT count(*) FROM snap s FULL JOIN upd u ON ";
	for (std::size_t i = 0; i < shape.key.size(); ++i)
		sql += (i ? " AND s." : "s.") + shape.key[i].name + " = u." + shape.key[i].name;
	sql += " WHERE s.mext_was_legacy_ IS DISTINCT FROM (u." + shape.key[0].name +
	       " IS NOT NULL)) END::bigint AS conflicts, ";
	sql += "(SELECT ARRAY[" + joined(shape.key, "", "::text") + "] FROM bound) AS last_key FROM tally, written";
	return sql;
}

std::string copy_statement(const CopyShape &shape, bool after_last_key)
{
	const BatchShape &b = shape.batch;
	if (b.key.empty())
		throw std::invalid_argument("a keyset batch needs at least one key column");
	const std::string order = joined(b.key, "", "");
	const std::string read_column = b.source ? *b.source : b.target;
	std::string columns, values;
	for (std::size_t i = 0; i < shape.columns.size(); ++i) {
		const CopyColumn &column = shape.columns[i];
		columns += (i ? ", " : "") + column.target;
		values += i ? ", " : "";
		if (column.target == b.target)
			values += converted_value(b, read_column);
		else
			values += "t." + column.source + (column.type.empty() ? "" : "::" + column.type);
	}
	// Where each key column of V1 lands in V2: V2's column (for the anti-join and what the INSERT returns)
	// and V1's value cast to its type, from V1's row as alias r (the read) or s (a row of snap).
	std::string target_key, inserted_key, returned_key, read_key, snap_key;
	for (std::size_t i = 0; i < b.key.size(); ++i) {
		auto landing = std::find_if(shape.columns.begin(), shape.columns.end(),
		                            [&](const CopyColumn &c) { return c.source == b.key[i].name; });
		if (landing == shape.columns.end())
			throw std::invalid_argument("the key column " + b.key[i].name + " is not copied");
		const std::string separator = i ? ", " : "";
		const std::string cast = landing->type.empty() ? "" : "::" + landing->type;
		target_key += separator + "v." + landing->target;
		inserted_key += separator + "i." + landing->target;
		returned_key += separator + landing->target;
		read_key += separator + "r." + b.key[i].name + cast;
		snap_key += separator + "s." + b.key[i].name + cast;
	}
	std::string sql = "WITH snap AS MATERIALIZED (SELECT " + order + " FROM ONLY " + b.relation + " AS r";
	if (after_last_key)
		sql += " WHERE " + key_tuple(b.key, "r.") + " > " + last_key_tuple(b.key);
	sql += " ORDER BY " + order + " LIMIT $2), ";
	// What V2 lacked in the statement's snapshot (every part of one statement reads the same one), for the
	// batch's rows only.
	sql += "seen AS MATERIALIZED (SELECT r.*, NOT EXISTS (SELECT FROM ONLY " + shape.target_relation + " AS v WHERE (" +
	       target_key + ") = (" + read_key + ")) AS mext_missing_ FROM snap r), ";
	sql += "bound AS (SELECT " + order + " FROM snap ORDER BY " + joined(b.key, "", " DESC") + " LIMIT 1), ";
	sql += "ins AS (INSERT INTO " + shape.target_relation + " (" + columns + ") SELECT " + values + " FROM ONLY " +
	       b.relation + " AS t WHERE ";
	if (after_last_key)
		sql += key_tuple(b.key, "t.") + " > " + last_key_tuple(b.key) + " AND ";
	sql += key_tuple(b.key, "t.") + " <= (" + joined(b.key, "(SELECT ", " FROM bound)") +
	       ") FOR SHARE OF t ON CONFLICT DO NOTHING RETURNING " + returned_key + "), ";
	// legacy_seen: rows V2 lacked in the batch's snapshot. A conflict is a row whose state at write time
	// differs from the read: deleted from V1, or written into V2, meanwhile (or the reverse). The join runs
	// only when the two counts differ.
	sql += "tally AS (SELECT count(*) AS scanned, count(*) FILTER (WHERE mext_missing_) AS legacy_seen FROM seen), ";
	sql += "written AS (SELECT count(*) AS converted FROM ins) ";
	sql += "SELECT tally.scanned::bigint, tally.legacy_seen::bigint, written.converted::bigint, "
	       "CASE WHEN tally.legacy_seen = written.converted THEN 0 "
	       "ELSE (SELECT count(*) FROM seen s FULL JOIN ins i ON (" +
	       snap_key + ") = (" + inserted_key + ") WHERE s.mext_missing_ IS DISTINCT FROM (i." +
	       returned_key.substr(0, returned_key.find(',')) +
	       " IS NOT NULL)) END::bigint AS conflicts, "
	       "(SELECT ARRAY[" +
	       joined(b.key, "", "::text") + "] FROM bound) AS last_key FROM tally, written";
	return sql;
}

std::string reference_read_statement(const BatchShape &shape, bool after_last_key)
{
	if (shape.key.empty())
		throw std::invalid_argument("a keyset batch needs at least one key column");
	if (shape.source)
		throw std::invalid_argument("a reference table is converted in place only");
	const std::string &api = shape.api_schema;
	const std::string order = joined(shape.key, "", "");
	// The last key: the first row of the keys in descending order, a 1-row slice flattened back to text[].
	std::string sql =
	    "SELECT count(*)::bigint AS scanned, count(*) FILTER (WHERE s.mext_legacy_)::bigint AS legacy_seen, "
	    "CASE WHEN count(*) > 0 THEN ARRAY(SELECT unnest((array_agg(ARRAY[" +
	    joined(shape.key, "s.", "::text") + "]::text[] ORDER BY " + joined(shape.key, "s.", " DESC") +
	    "))[1:1])) END AS last_key, ARRAY[";
	for (std::size_t i = 0; i < shape.key.size(); ++i)
		sql += (i ? ", " : "") + std::string("coalesce(array_agg(s.") + shape.key[i].name + "::text ORDER BY " +
		       joined(shape.key, "s.", "") + ") FILTER (WHERE s.mext_legacy_), '{}')";
	sql += "] AS keys, coalesce(array_agg(s." + shape.target + "::text ORDER BY " + joined(shape.key, "s.", "") +
	       ") FILTER (WHERE s.mext_legacy_), '{}') AS olds, coalesce(array_agg(" + api + ".migrate_value($1, s." +
	       shape.target + "::text) ORDER BY " + joined(shape.key, "s.", "") +
	       ") FILTER (WHERE s.mext_legacy_), '{}') AS news FROM (SELECT " + order + ", " + shape.target + ", " + api +
	       ".is_legacy($1, " + shape.target + "::text) AS mext_legacy_ FROM " + shape.relation;
	if (after_last_key)
		sql += " WHERE " + key_tuple(shape.key, "") + " > " + last_key_tuple(shape.key);
	sql += " ORDER BY " + order + " LIMIT $2 FOR UPDATE) s";
	return sql;
}

std::string reference_write_statement(const BatchShape &shape)
{
	if (shape.key.empty())
		throw std::invalid_argument("a keyset batch needs at least one key column");
	std::string key_match;
	for (std::size_t i = 0; i < shape.key.size(); ++i) {
		key_match +=
		    (i ? " AND t." : "t.") + shape.key[i].name + " = (u.k" + std::to_string(i + 1) + ")::" + shape.key[i].type;
	}
	// unnest() of a 2-D slice gives its elements in order: one key column at a time.
	std::string sql = "UPDATE " + shape.relation + " AS t SET " + shape.target + " = u.new_value" +
	                  (shape.target_type ? "::" + *shape.target_type : "") + " FROM unnest(";
	for (std::size_t i = 0; i < shape.key.size(); ++i)
		sql += "$1[" + std::to_string(i + 1) + ":" + std::to_string(i + 1) + "][1:], ";
	sql += "$2::text[], $3::text[]) AS u(";
	for (std::size_t i = 0; i < shape.key.size(); ++i)
		sql += "k" + std::to_string(i + 1) + ", ";
	sql += "old_value, new_value) WHERE " + key_match + " AND t." + shape.target + "::text = u.old_value RETURNING 1";
	return sql;
}

} // namespace mext
