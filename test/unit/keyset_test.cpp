// Unit tests for the keyset batch statement builder (src/core/keyset.hpp): string building only, so
// the tests assert on the fragments that carry the statement's meaning.
#include "core/keyset.hpp"

#include <gtest/gtest.h>

#include <cstddef>
#include <stdexcept>
#include <string>
#include <vector>

using mext::BatchShape;
using mext::KeyColumn;

namespace
{

::testing::AssertionResult Contains(const std::string &haystack, const std::string &needle)
{
	if (haystack.find(needle) != std::string::npos)
		return ::testing::AssertionSuccess();
	return ::testing::AssertionFailure() << "statement does not contain\n  " << needle << "\nstatement:\n  "
	                                     << haystack;
}

::testing::AssertionResult Lacks(const std::string &haystack, const std::string &needle)
{
	if (haystack.find(needle) == std::string::npos)
		return ::testing::AssertionSuccess();
	return ::testing::AssertionFailure() << "statement unexpectedly contains\n  " << needle << "\nstatement:\n  "
	                                     << haystack;
}

std::size_t count_of(const std::string &haystack, const std::string &needle)
{
	std::size_t n = 0;
	for (std::size_t at = haystack.find(needle); at != std::string::npos; at = haystack.find(needle, at + 1))
		++n;
	return n;
}

BatchShape single_key_shape()
{
	BatchShape shape;
	shape.relation = "public.accounts";
	shape.key = {KeyColumn{"id", "bigint"}};
	shape.target = "payload";
	shape.api_schema = "api";
	return shape;
}

BatchShape composite_key_shape()
{
	BatchShape shape;
	shape.relation = "\"Sales\".\"Orders 2024\"";
	shape.key = {KeyColumn{"id", "bigint"}, KeyColumn{"\"Sub\"", "text"}};
	shape.target = "\"Payload\"";
	shape.api_schema = "\"mext api\"";
	return shape;
}

// ---------------------------------------------------------------------------------------------
// Single bigint key
// ---------------------------------------------------------------------------------------------

TEST(KeysetSingleKey, FirstBatch)
{
	std::string sql = mext::batch_statement(single_key_shape(), false);
	EXPECT_TRUE(Contains(sql, "FROM ONLY public.accounts ORDER BY id LIMIT $2"));
	EXPECT_TRUE(Contains(sql, "UPDATE ONLY public.accounts AS t SET payload = api.migrate_value($1, t.payload::text)"));
	EXPECT_TRUE(Contains(sql, "api.is_legacy($1, payload::text) AS mext_was_legacy_"));
	EXPECT_TRUE(Contains(sql, "api.is_legacy($1, t.payload::text) RETURNING t.id"));
	EXPECT_TRUE(Contains(sql, "(t.id) <= ((SELECT id FROM bound))"));
	EXPECT_TRUE(Contains(sql, "ORDER BY id DESC LIMIT 1"));
	EXPECT_TRUE(Contains(sql, "FULL JOIN upd u ON s.id = u.id"));
	EXPECT_TRUE(Contains(sql, "s.mext_was_legacy_ IS DISTINCT FROM (u.id IS NOT NULL)"));
	EXPECT_TRUE(Contains(sql, "ARRAY[id::text]"));
	EXPECT_TRUE(Contains(sql, "AS last_key"));
	for (const char *column : {"AS scanned", "AS legacy_seen", "AS converted", "AS conflicts"})
		EXPECT_TRUE(Contains(sql, column));
	// No lower bound: $3 is not referenced at all, and there is no IS NULL test without a source.
	EXPECT_TRUE(Lacks(sql, "$3"));
	EXPECT_TRUE(Lacks(sql, " > "));
	EXPECT_TRUE(Lacks(sql, "IS NULL OR"));
	// Never a scan of the partition tree: every reference to the relation is ONLY.
	EXPECT_EQ(count_of(sql, "public.accounts"), count_of(sql, "ONLY public.accounts"));
}

TEST(KeysetSingleKey, AfterLastKey)
{
	std::string sql = mext::batch_statement(single_key_shape(), true);
	EXPECT_TRUE(Contains(sql, "FROM ONLY public.accounts WHERE (id) > (($3[1])::bigint) ORDER BY id LIMIT $2"));
	EXPECT_TRUE(Contains(sql, "(t.id) > (($3[1])::bigint) AND (t.id) <= ((SELECT id FROM bound))"));
	EXPECT_TRUE(Lacks(sql, "$3[2]"));
	EXPECT_TRUE(Contains(sql, "ARRAY[id::text]"));
	EXPECT_TRUE(Contains(sql, "RETURNING t.id"));
}

TEST(KeysetSingleKey, WithSourceColumn)
{
	BatchShape shape = single_key_shape();
	shape.source = "legacy_payload";
	std::string sql = mext::batch_statement(shape, false);
	EXPECT_TRUE(
	    Contains(sql, "UPDATE ONLY public.accounts AS t SET payload = api.migrate_value($1, t.legacy_payload::text)"));
	EXPECT_TRUE(Contains(sql, "(payload IS NULL OR api.is_legacy($1, payload::text)) AS mext_was_legacy_"));
	EXPECT_TRUE(Contains(sql, "(t.payload IS NULL OR api.is_legacy($1, t.payload::text)) RETURNING t.id"));
	EXPECT_TRUE(Lacks(sql, "migrate_value($1, t.payload::text)"));
}

TEST(KeysetSingleKey, WithoutSourceReadsTheTargetItself)
{
	std::string sql = mext::batch_statement(single_key_shape(), true);
	EXPECT_TRUE(Contains(sql, "SET payload = api.migrate_value($1, t.payload::text)"));
	EXPECT_TRUE(Lacks(sql, "IS NULL OR"));
}

// ---------------------------------------------------------------------------------------------
// Composite key with quoted identifiers
// ---------------------------------------------------------------------------------------------

TEST(KeysetCompositeKey, FirstBatch)
{
	std::string sql = mext::batch_statement(composite_key_shape(), false);
	EXPECT_TRUE(Contains(sql, "FROM ONLY \"Sales\".\"Orders 2024\" ORDER BY id, \"Sub\" LIMIT $2"));
	EXPECT_TRUE(Contains(sql, "ORDER BY id DESC, \"Sub\" DESC LIMIT 1"));
	EXPECT_TRUE(Contains(sql, "UPDATE ONLY \"Sales\".\"Orders 2024\" AS t SET \"Payload\" = "
	                          "\"mext api\".migrate_value($1, t.\"Payload\"::text)"));
	EXPECT_TRUE(Contains(sql, "(t.id, t.\"Sub\") <= ((SELECT id FROM bound), (SELECT \"Sub\" FROM bound))"));
	EXPECT_TRUE(Contains(sql, "\"mext api\".is_legacy($1, t.\"Payload\"::text)"));
	EXPECT_TRUE(Contains(sql, "RETURNING t.id, t.\"Sub\""));
	EXPECT_TRUE(Contains(sql, "FULL JOIN upd u ON s.id = u.id AND s.\"Sub\" = u.\"Sub\""));
	EXPECT_TRUE(Contains(sql, "ARRAY[id::text, \"Sub\"::text]"));
	EXPECT_TRUE(Lacks(sql, "$3"));
	EXPECT_TRUE(Lacks(sql, "IS NULL OR"));
	EXPECT_EQ(count_of(sql, "\"Orders 2024\""), count_of(sql, "ONLY \"Sales\".\"Orders 2024\""));
}

TEST(KeysetCompositeKey, AfterLastKeyRowComparison)
{
	std::string sql = mext::batch_statement(composite_key_shape(), true);
	EXPECT_TRUE(Contains(sql, "WHERE (id, \"Sub\") > (($3[1])::bigint, ($3[2])::text) ORDER BY id, \"Sub\" LIMIT $2"));
	EXPECT_TRUE(Contains(sql, "(t.id, t.\"Sub\") > (($3[1])::bigint, ($3[2])::text) AND (t.id, t.\"Sub\") <= "));
	EXPECT_EQ(count_of(sql, "(($3[1])::bigint, ($3[2])::text)"), 2u);
	EXPECT_TRUE(Contains(sql, "ARRAY[id::text, \"Sub\"::text]"));
}

TEST(KeysetCompositeKey, TextThenIntKeyCastsEachColumnToItsType)
{
	BatchShape shape = composite_key_shape();
	shape.key = {KeyColumn{"\"Region\"", "text"}, KeyColumn{"n", "integer"}};
	std::string sql = mext::batch_statement(shape, true);
	EXPECT_TRUE(Contains(sql, "(\"Region\", n) > (($3[1])::text, ($3[2])::integer)"));
	EXPECT_TRUE(Contains(sql, "ORDER BY \"Region\", n LIMIT $2"));
	EXPECT_TRUE(Contains(sql, "ORDER BY \"Region\" DESC, n DESC LIMIT 1"));
	EXPECT_TRUE(Contains(sql, "RETURNING t.\"Region\", t.n"));
	EXPECT_TRUE(Contains(sql, "FULL JOIN upd u ON s.\"Region\" = u.\"Region\" AND s.n = u.n"));
	EXPECT_TRUE(Contains(sql, "u.\"Region\" IS NOT NULL"));
	EXPECT_TRUE(Contains(sql, "ARRAY[\"Region\"::text, n::text]"));
}

TEST(KeysetCompositeKey, WithSourceColumn)
{
	BatchShape shape = composite_key_shape();
	shape.source = "\"Old Payload\"";
	std::string sql = mext::batch_statement(shape, true);
	EXPECT_TRUE(Contains(sql, "SET \"Payload\" = \"mext api\".migrate_value($1, t.\"Old Payload\"::text)"));
	EXPECT_TRUE(Contains(sql, "(t.\"Payload\" IS NULL OR \"mext api\".is_legacy($1, t.\"Payload\"::text))"));
	EXPECT_TRUE(
	    Contains(sql, "(\"Payload\" IS NULL OR \"mext api\".is_legacy($1, \"Payload\"::text)) AS mext_was_legacy_"));
	EXPECT_TRUE(Contains(sql, "(id, \"Sub\") > (($3[1])::bigint, ($3[2])::text)"));
}

// ---------------------------------------------------------------------------------------------
// A target column that is not text
// ---------------------------------------------------------------------------------------------

TEST(KeysetTypedTarget, ConvertedTextIsReadBackAsTheColumnsTypeNamingTheKey)
{
	BatchShape shape = composite_key_shape();
	shape.target_type = "numeric(10,2)";
	std::string sql = mext::batch_statement(shape, true);
	EXPECT_TRUE(Contains(sql, "SET \"Payload\" = migration_ext.cast_converted(\"mext api\".migrate_value($1, "
	                          "t.\"Payload\"::text), NULL::numeric(10,2), ARRAY[t.id::text, t.\"Sub\"::text]) WHERE "));
	EXPECT_TRUE(Contains(sql, "\"mext api\".is_legacy($1, t.\"Payload\"::text)"));
}

TEST(KeysetTypedTarget, TextTargetAddsNothing)
{
	std::string sql = mext::batch_statement(single_key_shape(), false);
	EXPECT_TRUE(Lacks(sql, "cast_converted"));
}

TEST(KeysetTypedTarget, TableMoveCastsOnlyTheTargetColumn)
{
	mext::CopyShape copy;
	copy.batch = single_key_shape();
	copy.batch.source = "old_payload";
	copy.batch.target_type = "jsonb";
	copy.target_relation = "public.accounts_v2";
	copy.columns = {{"id", "id", ""}, {"payload", "payload", "jsonb"}};
	std::string sql = mext::copy_statement(copy, false);
	EXPECT_TRUE(Contains(sql, "SELECT t.id, migration_ext.cast_converted(api.migrate_value($1, t.old_payload::text), "
	                          "NULL::jsonb, ARRAY[t.id::text]) FROM ONLY public.accounts AS t"));
}

TEST(KeysetTableMove, MappedColumnsAreCastAndRowsReadForShare)
{
	mext::CopyShape copy;
	copy.batch = single_key_shape();
	copy.batch.source = "token";
	copy.target_relation = "public.accounts_v2";
	copy.columns = {{"account_id", "id", "bigint"}, {"payload", "token", "text"}, {"note", "remark", "text"}};
	std::string sql = mext::copy_statement(copy, true);
	EXPECT_TRUE(Contains(sql, "INSERT INTO public.accounts_v2 (account_id, payload, note) SELECT t.id::bigint, "
	                          "api.migrate_value($1, t.token::text), t.remark::text FROM ONLY public.accounts AS t"));
	// A V1 row deleted after the batch's snapshot is not copied back into V2.
	EXPECT_TRUE(Contains(sql, "FOR SHARE OF t ON CONFLICT DO NOTHING RETURNING account_id"));
	// What V2 lacked at the read, by V1's key in V2's column and type: the rows the batch should copy.
	EXPECT_TRUE(Contains(sql, "NOT EXISTS (SELECT FROM ONLY public.accounts_v2 AS v WHERE (v.account_id) = "
	                          "(r.id::bigint)) AS mext_missing_ FROM snap r)"));
	// A conflict: a row that lacked and was not copied, or the reverse.
	EXPECT_TRUE(Contains(sql, "FULL JOIN ins i ON (s.id::bigint) = (i.account_id) WHERE s.mext_missing_ IS DISTINCT "
	                          "FROM (i.account_id IS NOT NULL)"));
}

TEST(KeysetTableMove, KeyNotCopiedThrows)
{
	mext::CopyShape copy;
	copy.batch = single_key_shape();
	copy.target_relation = "public.accounts_v2";
	copy.columns = {{"payload", "payload", ""}};
	EXPECT_THROW(mext::copy_statement(copy, false), std::invalid_argument);
}

// ---------------------------------------------------------------------------------------------
// Errors and key_tuple
// ---------------------------------------------------------------------------------------------

TEST(KeysetErrors, EmptyKeyThrows)
{
	BatchShape shape = single_key_shape();
	shape.key.clear();
	EXPECT_THROW(mext::batch_statement(shape, false), std::invalid_argument);
	EXPECT_THROW(mext::batch_statement(shape, true), std::invalid_argument);
}

TEST(KeysetKeyTuple, Forms)
{
	std::vector<KeyColumn> one{KeyColumn{"id", "bigint"}};
	std::vector<KeyColumn> two{KeyColumn{"id", "bigint"}, KeyColumn{"\"Sub\"", "text"}};
	EXPECT_EQ(mext::key_tuple(one, ""), "(id)");
	EXPECT_EQ(mext::key_tuple(one, "t."), "(t.id)");
	EXPECT_EQ(mext::key_tuple(two, ""), "(id, \"Sub\")");
	EXPECT_EQ(mext::key_tuple(two, "t."), "(t.id, t.\"Sub\")");
	EXPECT_EQ(mext::key_tuple({}, "t."), "()");
}

} // namespace

// ---------------------------------------------------------------------------------------------
// Citus reference tables: a read that locks and converts, then a compare-and-set write
// ---------------------------------------------------------------------------------------------

TEST(KeysetReference, ReadLocksTheBatchAndConvertsOnlyLegacyRows)
{
	std::string sql = mext::reference_read_statement(single_key_shape(), true);
	EXPECT_TRUE(Contains(sql, "FROM public.accounts WHERE (id) > (($3[1])::bigint) ORDER BY id LIMIT $2 FOR UPDATE"));
	EXPECT_TRUE(Contains(sql, "api.is_legacy($1, payload::text) AS mext_legacy_"));
	EXPECT_TRUE(
	    Contains(sql, "array_agg(api.migrate_value($1, s.payload::text) ORDER BY s.id) FILTER (WHERE s.mext_legacy_)"));
	EXPECT_TRUE(Contains(sql, "array_agg(s.payload::text ORDER BY s.id) FILTER (WHERE s.mext_legacy_)"));
	EXPECT_TRUE(Contains(sql, "ORDER BY s.id DESC))[1:1])) END AS last_key"));
	for (const char *column : {"AS scanned", "AS legacy_seen", "AS keys", "AS olds", "AS news"})
		EXPECT_TRUE(Contains(sql, column));
	// Citus routes it to the table itself: never ONLY, which Citus's router does not take.
	EXPECT_TRUE(Lacks(sql, "ONLY"));
	EXPECT_TRUE(Lacks(mext::reference_read_statement(single_key_shape(), false), "$3"));
}

TEST(KeysetReference, WriteIsACompareAndSetOnEveryKeyColumn)
{
	std::string sql = mext::reference_write_statement(composite_key_shape());
	EXPECT_TRUE(Contains(sql, "UPDATE \"Sales\".\"Orders 2024\" AS t SET \"Payload\" = u.new_value FROM unnest("));
	EXPECT_TRUE(Contains(sql, "$1[1:1][1:], $1[2:2][1:], $2::text[], $3::text[]) AS u(k1, k2, old_value, new_value)"));
	EXPECT_TRUE(Contains(sql, "t.id = (u.k1)::bigint AND t.\"Sub\" = (u.k2)::text"));
	EXPECT_TRUE(Contains(sql, "AND t.\"Payload\"::text = u.old_value RETURNING 1"));
	BatchShape typed = single_key_shape();
	typed.target_type = "jsonb";
	EXPECT_TRUE(Contains(mext::reference_write_statement(typed), "SET payload = u.new_value::jsonb"));
}

TEST(KeysetReference, RefusesASourceColumn)
{
	BatchShape shape = single_key_shape();
	shape.source = "old_payload";
	EXPECT_THROW(mext::reference_read_statement(shape, false), std::invalid_argument);
}
