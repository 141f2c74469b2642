// Unit tests for the pure C++ codec core (src/core/codec.hpp).
#include "core/codec.hpp"

#include <gtest/gtest.h>

#include <cstddef>
#include <functional>
#include <map>
#include <optional>
#include <regex>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

using mext::Codec;
using mext::CodecError;
using mext::CodecSpec;
using mext::DetectMode;
using mext::ErrorKind;
using mext::Step;
using mext::StepKind;
using mext::Verdict;

namespace
{

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

const char *error_kind_name(ErrorKind kind)
{
	switch (kind) {
	case ErrorKind::InvalidParameter:
		return "InvalidParameter";
	case ErrorKind::InvalidData:
		return "InvalidData";
	case ErrorKind::NotConverging:
		return "NotConverging";
	}
	return "?";
}

// Runs f and checks it throws a CodecError of exactly the given kind.
template <class F>::testing::AssertionResult ThrowsCodecError(F &&f, ErrorKind kind)
{
	try {
		f();
	} catch (const CodecError &e) {
		if (e.kind == kind)
			return ::testing::AssertionSuccess();
		return ::testing::AssertionFailure() << "threw CodecError of kind " << error_kind_name(e.kind) << " ("
		                                     << e.what() << "), expected kind " << error_kind_name(kind);
	} catch (const std::exception &e) {
		return ::testing::AssertionFailure() << "threw a non-CodecError exception: " << e.what();
	}
	return ::testing::AssertionFailure() << "did not throw, expected CodecError " << error_kind_name(kind);
}

std::string hex_of(std::string_view s)
{
	static const char digits[] = "0123456789abcdef";
	std::string out;
	for (unsigned char c : s) {
		out += digits[c >> 4];
		out += digits[c & 15];
	}
	return out;
}

std::string apply(StepKind kind, std::string arg, std::string_view in, bool utf8 = true)
{
	Step step{kind, std::move(arg)};
	std::string out;
	mext::apply_builtin_step(step, in, out, utf8);
	return out;
}

CodecSpec make_spec(std::string convert, std::optional<std::string> marker, DetectMode detect, bool has_shape = false,
                    bool utf8 = true)
{
	CodecSpec s;
	s.convert = std::move(convert);
	s.marker = std::move(marker);
	s.detect = detect;
	s.has_shape = has_shape;
	s.utf8 = utf8;
	return s;
}

// A Host for tests: fn: steps dispatch to lambdas by step index; shapes use std::regex.
class TestHost : public mext::Host
{
  public:
	std::map<std::size_t, std::function<std::string(std::string_view)>> functions;
	std::optional<std::regex> shape;

	int function_calls = 0;
	std::vector<std::size_t> called_indices;
	std::vector<std::string> function_inputs;
	int shape_calls = 0;
	std::vector<std::string> shape_inputs;

	std::string call_function(std::size_t step_index, std::string_view input) override
	{
		++function_calls;
		called_indices.push_back(step_index);
		function_inputs.emplace_back(input);
		auto it = functions.find(step_index);
		if (it == functions.end())
			throw std::logic_error("TestHost: no function registered for step " + std::to_string(step_index));
		return it->second(input);
	}

	bool matches_shape(std::string_view value) override
	{
		++shape_calls;
		shape_inputs.emplace_back(value);
		if (!shape) {
			ADD_FAILURE() << "matches_shape called on a host without a shape";
			return false;
		}
		return std::regex_search(std::string(value), *shape);
	}
};

std::string ascii_upper(std::string_view in)
{
	std::string out(in);
	for (char &c : out)
		if (c >= 'a' && c <= 'z')
			c = static_cast<char>(c - 'a' + 'A');
	return out;
}

Verdict classify(const Codec &codec, mext::Host &host, std::optional<std::string_view> value)
{
	if (!value)
		return codec.classify(nullptr, host);
	std::string_view v = *value;
	return codec.classify(&v, host);
}

// Calls migrate and copies the result immediately (the view is only valid until the next call).
std::optional<std::string> migrate(const Codec &codec, mext::Host &host, std::optional<std::string_view> value)
{
	std::optional<std::string_view> r;
	if (!value) {
		r = codec.migrate(nullptr, host);
	} else {
		std::string_view v = *value;
		r = codec.migrate(&v, host);
	}
	if (!r)
		return std::nullopt;
	return std::string(*r);
}

std::string verdict_str(Verdict v)
{
	return mext::verdict_name(v);
}

// A ~1 MB string of mixed 1-, 2-, 3- and 4-byte UTF-8 characters.
std::string big_utf8_string()
{
	const std::string chunk = "abcXYZ 0123 h\xC3\xA9llo \xE2\x86\x92 \xF0\x9F\x98\x80 \xE4\xB8\xAD|\\=+/\n";
	std::string s;
	s.reserve(1024 * 1024 + chunk.size());
	while (s.size() < 1024 * 1024)
		s += chunk;
	return s;
}

// ---------------------------------------------------------------------------------------------
// CodecError
// ---------------------------------------------------------------------------------------------

TEST(CodecErrorTest, CarriesKindMessageDetailHint)
{
	CodecError e(ErrorKind::InvalidData, "bad value", "the detail", "the hint");
	EXPECT_EQ(e.kind, ErrorKind::InvalidData);
	EXPECT_STREQ(e.what(), "bad value");
	EXPECT_EQ(e.detail, "the detail");
	EXPECT_EQ(e.hint, "the hint");
	const std::runtime_error &base = e;
	EXPECT_STREQ(base.what(), "bad value");
}

// ---------------------------------------------------------------------------------------------
// parse_pipeline
// ---------------------------------------------------------------------------------------------

struct StepCase {
	const char *spec;
	StepKind kind;
	const char *arg;
};

class ParseSingleStep : public ::testing::TestWithParam<StepCase>
{
};

TEST_P(ParseSingleStep, ParsesKindAndArg)
{
	const StepCase &c = GetParam();
	std::vector<Step> steps = mext::parse_pipeline(c.spec);
	ASSERT_EQ(steps.size(), 1u) << c.spec;
	EXPECT_EQ(steps[0].kind, c.kind) << c.spec;
	EXPECT_EQ(steps[0].arg, c.arg) << c.spec;
}

INSTANTIATE_TEST_SUITE_P(
    Builtins, ParseSingleStep,
    ::testing::Values(
        StepCase{"reverse", StepKind::Reverse, ""}, StepCase{"strip_prefix:P", StepKind::StripPrefix, "P"},
        StepCase{"add_prefix:P", StepKind::AddPrefix, "P"}, StepCase{"hex_encode", StepKind::HexEncode, ""},
        StepCase{"hex_decode", StepKind::HexDecode, ""}, StepCase{"base64_encode", StepKind::Base64Encode, ""},
        StepCase{"base64_decode", StepKind::Base64Decode, ""}, StepCase{"lower", StepKind::Lower, ""},
        StepCase{"upper", StepKind::Upper, ""}, StepCase{"const:V", StepKind::Const, "V"},
        StepCase{"const:active", StepKind::Const, "active"},
        StepCase{"fn:schema.name", StepKind::Function, "schema.name"},
        StepCase{"fn:public.up", StepKind::Function, "public.up"},
        // arguments run to the next '|', colons included
        StepCase{"strip_prefix:v1:", StepKind::StripPrefix, "v1:"}, StepCase{"const:a:b:c", StepKind::Const, "a:b:c"},
        StepCase{"add_prefix:\xC3\xA9\xE2\x86\x92", StepKind::AddPrefix, "\xC3\xA9\xE2\x86\x92"}));

TEST(ParsePipeline, ThreeStepPipeline)
{
	std::vector<Step> steps = mext::parse_pipeline("strip_prefix:v1:|base64_decode|add_prefix:v2:");
	ASSERT_EQ(steps.size(), 3u);
	EXPECT_EQ(steps[0].kind, StepKind::StripPrefix);
	EXPECT_EQ(steps[0].arg, "v1:");
	EXPECT_EQ(steps[1].kind, StepKind::Base64Decode);
	EXPECT_EQ(steps[1].arg, "");
	EXPECT_EQ(steps[2].kind, StepKind::AddPrefix);
	EXPECT_EQ(steps[2].arg, "v2:");
}

TEST(ParsePipeline, ManyStepsKeepOrder)
{
	std::vector<Step> steps = mext::parse_pipeline("lower|reverse|hex_encode|hex_decode|upper|fn:s.f|const:z");
	ASSERT_EQ(steps.size(), 7u);
	EXPECT_EQ(steps[0].kind, StepKind::Lower);
	EXPECT_EQ(steps[1].kind, StepKind::Reverse);
	EXPECT_EQ(steps[2].kind, StepKind::HexEncode);
	EXPECT_EQ(steps[3].kind, StepKind::HexDecode);
	EXPECT_EQ(steps[4].kind, StepKind::Upper);
	EXPECT_EQ(steps[5].kind, StepKind::Function);
	EXPECT_EQ(steps[5].arg, "s.f");
	EXPECT_EQ(steps[6].kind, StepKind::Const);
	EXPECT_EQ(steps[6].arg, "z");
}

TEST(ParsePipeline, EscapedPipeIsLiteral)
{
	std::vector<Step> steps = mext::parse_pipeline("add_prefix:a\\|b|upper");
	ASSERT_EQ(steps.size(), 2u);
	EXPECT_EQ(steps[0].kind, StepKind::AddPrefix);
	EXPECT_EQ(steps[0].arg, "a|b");
	EXPECT_EQ(steps[1].kind, StepKind::Upper);
}

TEST(ParsePipeline, EscapedPipeOnlyArgument)
{
	std::vector<Step> steps = mext::parse_pipeline("const:\\|");
	ASSERT_EQ(steps.size(), 1u);
	EXPECT_EQ(steps[0].kind, StepKind::Const);
	EXPECT_EQ(steps[0].arg, "|");
}

TEST(ParsePipeline, EscapedBackslashIsLiteral)
{
	std::vector<Step> steps = mext::parse_pipeline("add_prefix:a\\\\b");
	ASSERT_EQ(steps.size(), 1u);
	EXPECT_EQ(steps[0].arg, "a\\b");
}

TEST(ParsePipeline, EscapedBackslashBeforeSeparator)
{
	// 'x\\' is x followed by a literal backslash; the following '|' then separates steps.
	std::vector<Step> steps = mext::parse_pipeline("add_prefix:x\\\\|upper");
	ASSERT_EQ(steps.size(), 2u);
	EXPECT_EQ(steps[0].kind, StepKind::AddPrefix);
	EXPECT_EQ(steps[0].arg, "x\\");
	EXPECT_EQ(steps[1].kind, StepKind::Upper);
}

TEST(ParsePipeline, EscapedBackslashThenEscapedPipe)
{
	std::vector<Step> steps = mext::parse_pipeline("strip_prefix:\\\\\\|v1|reverse");
	ASSERT_EQ(steps.size(), 2u);
	EXPECT_EQ(steps[0].kind, StepKind::StripPrefix);
	EXPECT_EQ(steps[0].arg, "\\|v1");
	EXPECT_EQ(steps[1].kind, StepKind::Reverse);
}

class ParseInvalid : public ::testing::TestWithParam<const char *>
{
};

TEST_P(ParseInvalid, ThrowsInvalidParameter)
{
	const char *spec = GetParam();
	EXPECT_TRUE(ThrowsCodecError([&] { mext::parse_pipeline(spec); }, ErrorKind::InvalidParameter))
	    << "spec: '" << spec << "'";
}

INSTANTIATE_TEST_SUITE_P(Errors, ParseInvalid,
                         ::testing::Values("",                // empty spec
                                           "reverse||upper",  // empty step
                                           "|reverse",        // empty leading step
                                           "reverse|",        // empty trailing step
                                           "rot13",           // unknown step
                                           "reverse|rot13",   // unknown step later in the pipeline
                                           "REVERSE",         // step names are exact
                                           "strip_prefix",    // needs an argument
                                           "strip_prefix:",   // empty argument
                                           "add_prefix",      // needs an argument
                                           "add_prefix:",     // empty argument
                                           "reverse:x",       // takes no argument
                                           "hex_encode:x",    // takes no argument
                                           "base64_decode:x", // takes no argument
                                           "upper:x",         // takes no argument
                                           "fn:",             // not schema.name
                                           "fn:noschema",     // not schema.name
                                           "fn:a.b.c"         // not schema.name
                                           ));

// ---------------------------------------------------------------------------------------------
// apply_builtin_step
// ---------------------------------------------------------------------------------------------

TEST(ApplyStep, ReverseAscii)
{
	EXPECT_EQ(apply(StepKind::Reverse, "", "abc123"), "321cba");
}

TEST(ApplyStep, ReverseEmpty)
{
	EXPECT_EQ(apply(StepKind::Reverse, "", ""), "");
}

TEST(ApplyStep, ReverseUtf8ReversesCharacters)
{
	// "héllo→" -> "→olléh"
	EXPECT_EQ(apply(StepKind::Reverse, "", "h\xC3\xA9llo\xE2\x86\x92"), "\xE2\x86\x92oll\xC3\xA9h");
}

TEST(ApplyStep, ReverseUtf8Emoji)
{
	// "a😀b🎉" -> "🎉b😀a"
	std::string out = apply(StepKind::Reverse, "",
	                        "a\xF0\x9F\x98\x80"
	                        "b\xF0\x9F\x8E\x89");
	EXPECT_EQ(out, "\xF0\x9F\x8E\x89"
	               "b\xF0\x9F\x98\x80"
	               "a");
	EXPECT_TRUE(mext::is_valid_utf8(out));
}

TEST(ApplyStep, ReverseBytesWhenNotUtf8)
{
	EXPECT_EQ(apply(StepKind::Reverse, "", "h\xC3\xA9", /*utf8=*/false), "\xA9\xC3h");
	EXPECT_EQ(apply(StepKind::Reverse, "", "ab\xE9", /*utf8=*/false), "\xE9"
	                                                                  "ba");
}

TEST(ApplyStep, StripPrefix)
{
	EXPECT_EQ(apply(StepKind::StripPrefix, "v1:", "v1:abc"), "abc");
	EXPECT_EQ(apply(StepKind::StripPrefix, "v1:", "v1:"), "");
	EXPECT_EQ(apply(StepKind::StripPrefix, "\xC3\xA9",
	                "\xC3\xA9"
	                "a"),
	          "a");
}

TEST(ApplyStep, StripPrefixMissingThrowsInvalidData)
{
	EXPECT_TRUE(ThrowsCodecError([] { apply(StepKind::StripPrefix, "v1:", "abc"); }, ErrorKind::InvalidData));
	EXPECT_TRUE(ThrowsCodecError([] { apply(StepKind::StripPrefix, "v1:", "v1"); }, ErrorKind::InvalidData));
	EXPECT_TRUE(ThrowsCodecError([] { apply(StepKind::StripPrefix, "v1:", ""); }, ErrorKind::InvalidData));
	EXPECT_TRUE(ThrowsCodecError([] { apply(StepKind::StripPrefix, "v1:", "xv1:abc"); }, ErrorKind::InvalidData));
}

TEST(ApplyStep, AddPrefix)
{
	EXPECT_EQ(apply(StepKind::AddPrefix, "v2:", "abc"), "v2:abc");
	EXPECT_EQ(apply(StepKind::AddPrefix, "v2:", ""), "v2:");
	EXPECT_EQ(apply(StepKind::AddPrefix, "a|b", "c"), "a|bc");
}

TEST(ApplyStep, HexEncodeIsLowercase)
{
	EXPECT_EQ(apply(StepKind::HexEncode, "", "\x01\xff"), "01ff");
	EXPECT_EQ(apply(StepKind::HexEncode, "", "JK"), "4a4b");
	EXPECT_EQ(apply(StepKind::HexEncode, "", "\xC3\xA9"), "c3a9");
	EXPECT_EQ(apply(StepKind::HexEncode, "", ""), "");
}

TEST(ApplyStep, HexDecodeAcceptsBothCases)
{
	EXPECT_EQ(apply(StepKind::HexDecode, "", "4a4b"), "JK");
	EXPECT_EQ(apply(StepKind::HexDecode, "", "4A4B"), "JK");
	EXPECT_EQ(apply(StepKind::HexDecode, "", "4A4b"), "JK");
	EXPECT_EQ(apply(StepKind::HexDecode, "", "c3a9"), "\xC3\xA9");
	EXPECT_EQ(apply(StepKind::HexDecode, "", "C3A9"), "\xC3\xA9");
	EXPECT_EQ(apply(StepKind::HexDecode, "", ""), "");
}

TEST(ApplyStep, HexDecodeOddLengthThrowsInvalidData)
{
	EXPECT_TRUE(ThrowsCodecError([] { apply(StepKind::HexDecode, "", "abc"); }, ErrorKind::InvalidData));
	EXPECT_TRUE(ThrowsCodecError([] { apply(StepKind::HexDecode, "", "4"); }, ErrorKind::InvalidData));
}

TEST(ApplyStep, HexDecodeNonHexThrowsInvalidData)
{
	EXPECT_TRUE(ThrowsCodecError([] { apply(StepKind::HexDecode, "", "zz"); }, ErrorKind::InvalidData));
	EXPECT_TRUE(ThrowsCodecError([] { apply(StepKind::HexDecode, "", "4g"); }, ErrorKind::InvalidData));
	EXPECT_TRUE(ThrowsCodecError([] { apply(StepKind::HexDecode, "", "0x41"); }, ErrorKind::InvalidData));
	EXPECT_TRUE(ThrowsCodecError([] { apply(StepKind::HexDecode, "", "4a 4b"); }, ErrorKind::InvalidData));
}

TEST(ApplyStep, HexDecodeNulThrowsInvalidData)
{
	EXPECT_TRUE(ThrowsCodecError([] { apply(StepKind::HexDecode, "", "00"); }, ErrorKind::InvalidData));
	EXPECT_TRUE(ThrowsCodecError([] { apply(StepKind::HexDecode, "", "410042"); }, ErrorKind::InvalidData));
}

TEST(ApplyStep, HexDecodeInvalidUtf8ThrowsInvalidData)
{
	EXPECT_TRUE(ThrowsCodecError([] { apply(StepKind::HexDecode, "", "ff"); }, ErrorKind::InvalidData));
	EXPECT_TRUE(ThrowsCodecError([] { apply(StepKind::HexDecode, "", "41c3"); }, ErrorKind::InvalidData));
	EXPECT_TRUE(ThrowsCodecError([] { apply(StepKind::HexDecode, "", "a941"); }, ErrorKind::InvalidData));
}

struct B64Case {
	const char *plain;
	const char *encoded;
};

class Base64Rfc4648 : public ::testing::TestWithParam<B64Case>
{
};

TEST_P(Base64Rfc4648, Encode)
{
	EXPECT_EQ(apply(StepKind::Base64Encode, "", GetParam().plain), GetParam().encoded);
}

TEST_P(Base64Rfc4648, Decode)
{
	EXPECT_EQ(apply(StepKind::Base64Decode, "", GetParam().encoded), GetParam().plain);
}

INSTANTIATE_TEST_SUITE_P(Vectors, Base64Rfc4648,
                         ::testing::Values(B64Case{"", ""}, B64Case{"f", "Zg=="}, B64Case{"fo", "Zm8="},
                                           B64Case{"foo", "Zm9v"}, B64Case{"foob", "Zm9vYg=="},
                                           B64Case{"fooba", "Zm9vYmE="}, B64Case{"foobar", "Zm9vYmFy"}));

TEST(ApplyStep, Base64UsesStandardAlphabet)
{
	// bytes fb ff bf encode to "+/+/" in the standard (not URL-safe) alphabet; not valid UTF-8, so
	// only encode is checked here.
	EXPECT_EQ(apply(StepKind::Base64Encode, "", "\xfb\xff\xbf"), "+/+/");
	// "é?>" = c3 a9 3f 3e -> w6k/Pg==
	EXPECT_EQ(apply(StepKind::Base64Encode, "", "\xC3\xA9?>"), "w6k/Pg==");
	EXPECT_EQ(apply(StepKind::Base64Decode, "", "w6k/Pg=="), "\xC3\xA9?>");
}

TEST(ApplyStep, Base64DecodeIgnoresWhitespace)
{
	EXPECT_EQ(apply(StepKind::Base64Decode, "", "Zm9v\nYmFy"), "foobar");
	EXPECT_EQ(apply(StepKind::Base64Decode, "", "Zm9v\r\nYmFy\n"), "foobar");
	EXPECT_EQ(apply(StepKind::Base64Decode, "", " Zm9v YmE= "), "fooba");
	EXPECT_EQ(apply(StepKind::Base64Decode, "", "Zm\t9vYg==\n"), "foob");
	EXPECT_EQ(apply(StepKind::Base64Decode, "", "\n"), "");
}

TEST(ApplyStep, Base64DecodeInvalidCharacterThrowsInvalidData)
{
	EXPECT_TRUE(ThrowsCodecError([] { apply(StepKind::Base64Decode, "", "Zm9v!mFy"); }, ErrorKind::InvalidData));
	EXPECT_TRUE(ThrowsCodecError([] { apply(StepKind::Base64Decode, "", "Zm9-"); }, ErrorKind::InvalidData));
	EXPECT_TRUE(ThrowsCodecError([] { apply(StepKind::Base64Decode, "", "Zm9\xC3\xA9"); }, ErrorKind::InvalidData));
}

TEST(ApplyStep, Base64DecodeBadPaddingThrowsInvalidData)
{
	// incomplete final quantum
	EXPECT_TRUE(ThrowsCodecError([] { apply(StepKind::Base64Decode, "", "Zg="); }, ErrorKind::InvalidData));
	EXPECT_TRUE(ThrowsCodecError([] { apply(StepKind::Base64Decode, "", "Zm9vY"); }, ErrorKind::InvalidData));
	// '=' too early in a quantum
	EXPECT_TRUE(ThrowsCodecError([] { apply(StepKind::Base64Decode, "", "Z==="); }, ErrorKind::InvalidData));
	EXPECT_TRUE(ThrowsCodecError([] { apply(StepKind::Base64Decode, "", "===="); }, ErrorKind::InvalidData));
	EXPECT_TRUE(ThrowsCodecError([] { apply(StepKind::Base64Decode, "", "Zm9vY==="); }, ErrorKind::InvalidData));
}

TEST(ApplyStep, Base64DecodeRejectsMissingPadding)
{
	// PostgreSQL's decode(..., 'base64') rejects an unpadded final quantum ("invalid base64 end sequence").
	EXPECT_TRUE(ThrowsCodecError([] { apply(StepKind::Base64Decode, "", "Zg"); }, ErrorKind::InvalidData));
	EXPECT_TRUE(ThrowsCodecError([] { apply(StepKind::Base64Decode, "", "Zm8"); }, ErrorKind::InvalidData));
}

TEST(ApplyStep, Base64DecodeNulThrowsInvalidData)
{
	EXPECT_TRUE(ThrowsCodecError([] { apply(StepKind::Base64Decode, "", "AA=="); }, ErrorKind::InvalidData));
	EXPECT_TRUE(ThrowsCodecError([] { apply(StepKind::Base64Decode, "", "QQBC"); }, ErrorKind::InvalidData));
}

TEST(ApplyStep, Base64DecodeInvalidUtf8ThrowsInvalidData)
{
	EXPECT_TRUE(ThrowsCodecError([] { apply(StepKind::Base64Decode, "", "/w=="); }, ErrorKind::InvalidData));
	EXPECT_TRUE(ThrowsCodecError([] { apply(StepKind::Base64Decode, "", "+/+/"); }, ErrorKind::InvalidData));
	EXPECT_TRUE(ThrowsCodecError([] { apply(StepKind::Base64Decode, "", "QcM="); }, ErrorKind::InvalidData));
}

TEST(ApplyStep, LowerChangesOnlyAsciiLetters)
{
	EXPECT_EQ(apply(StepKind::Lower, "", "HeLLo 123_XYZ"), "hello 123_xyz");
	// "HÉLLO é" -> "hÉllo é": multibyte characters are left alone
	EXPECT_EQ(apply(StepKind::Lower, "", "H\xC3\x89LLO \xC3\xA9"), "h\xC3\x89llo \xC3\xA9");
	EXPECT_EQ(apply(StepKind::Lower, "", ""), "");
}

TEST(ApplyStep, UpperChangesOnlyAsciiLetters)
{
	EXPECT_EQ(apply(StepKind::Upper, "", "HeLLo 123_xyz"), "HELLO 123_XYZ");
	// "héllo →" -> "HéLLO →"
	EXPECT_EQ(apply(StepKind::Upper, "", "h\xC3\xA9llo \xE2\x86\x92"), "H\xC3\xA9LLO \xE2\x86\x92");
	EXPECT_EQ(apply(StepKind::Upper, "", ""), "");
}

TEST(ApplyStep, ConstIgnoresInput)
{
	EXPECT_EQ(apply(StepKind::Const, "active", "whatever"), "active");
	EXPECT_EQ(apply(StepKind::Const, "active", ""), "active");
	EXPECT_EQ(apply(StepKind::Const, "active", "\xE2\x86\x92"), "active");
}

TEST(ApplyStep, RoundTripsOnUtf8Strings)
{
	const std::vector<std::string> inputs = {
	    "",
	    "a",
	    "ab",
	    "abc",
	    "hello world",
	    "h\xC3\xA9llo\xE2\x86\x92",
	    "\xF0\x9F\x98\x80\xF0\x9F\x8E\x89",
	    "\xE4\xB8\xAD\xE6\x96\x87 text | with \\ specials = + /\n\t",
	};
	for (const std::string &x : inputs) {
		EXPECT_EQ(apply(StepKind::Base64Decode, "", apply(StepKind::Base64Encode, "", x)), x) << x;
		EXPECT_EQ(apply(StepKind::HexDecode, "", apply(StepKind::HexEncode, "", x)), x) << x;
		EXPECT_EQ(apply(StepKind::HexEncode, "", x), hex_of(x)) << x;
		EXPECT_EQ(apply(StepKind::Reverse, "", apply(StepKind::Reverse, "", x)), x) << x;
	}
}

TEST(ApplyStep, RoundTripsOnOneMegabyteString)
{
	const std::string x = big_utf8_string();
	ASSERT_GE(x.size(), 1024u * 1024u);
	ASSERT_TRUE(mext::is_valid_utf8(x));

	std::string b64 = apply(StepKind::Base64Encode, "", x);
	EXPECT_GE(b64.size(), (x.size() + 2) / 3 * 4);
	EXPECT_EQ(apply(StepKind::Base64Decode, "", b64), x);

	std::string hex = apply(StepKind::HexEncode, "", x);
	EXPECT_EQ(hex.size(), 2 * x.size());
	EXPECT_EQ(hex, hex_of(x));
	EXPECT_EQ(apply(StepKind::HexDecode, "", hex), x);

	std::string rev = apply(StepKind::Reverse, "", x);
	EXPECT_TRUE(mext::is_valid_utf8(rev));
	EXPECT_EQ(apply(StepKind::Reverse, "", rev), x);
}

// ---------------------------------------------------------------------------------------------
// is_valid_utf8
// ---------------------------------------------------------------------------------------------

TEST(IsValidUtf8, AcceptsValid)
{
	EXPECT_TRUE(mext::is_valid_utf8(""));
	EXPECT_TRUE(mext::is_valid_utf8("hello"));
	EXPECT_TRUE(mext::is_valid_utf8("h\xC3\xA9llo\xE2\x86\x92"));
	EXPECT_TRUE(mext::is_valid_utf8("\xF0\x9F\x98\x80"));
	EXPECT_TRUE(mext::is_valid_utf8("\xF4\x8F\xBF\xBF")); // U+10FFFF
}

TEST(IsValidUtf8, RejectsInvalid)
{
	EXPECT_FALSE(mext::is_valid_utf8("\xff"));
	EXPECT_FALSE(mext::is_valid_utf8("a\xC3"));            // truncated
	EXPECT_FALSE(mext::is_valid_utf8("\xA9"));             // lone continuation byte
	EXPECT_FALSE(mext::is_valid_utf8("\xE2\x86"));         // truncated 3-byte
	EXPECT_FALSE(mext::is_valid_utf8("\xC0\xAF"));         // overlong
	EXPECT_FALSE(mext::is_valid_utf8("\xED\xA0\x80"));     // UTF-16 surrogate
	EXPECT_FALSE(mext::is_valid_utf8("\xF4\x90\x80\x80")); // above U+10FFFF
}

// ---------------------------------------------------------------------------------------------
// Detect modes and verdict names
// ---------------------------------------------------------------------------------------------

TEST(DetectModeTest, ParsesKnownNames)
{
	EXPECT_EQ(mext::parse_detect_mode("converted"), DetectMode::Converted);
	EXPECT_EQ(mext::parse_detect_mode("absent"), DetectMode::Absent);
	EXPECT_EQ(mext::parse_detect_mode("null"), DetectMode::Null);
}

TEST(DetectModeTest, RejectsUnknownNames)
{
	for (const char *bad : {"maybe", "", "convert", "nul", "absent "}) {
		EXPECT_TRUE(ThrowsCodecError([&] { mext::parse_detect_mode(bad); }, ErrorKind::InvalidParameter))
		    << "'" << bad << "'";
	}
}

TEST(DetectModeTest, NameRoundTrips)
{
	EXPECT_STREQ(mext::detect_mode_name(DetectMode::Converted), "converted");
	EXPECT_STREQ(mext::detect_mode_name(DetectMode::Absent), "absent");
	EXPECT_STREQ(mext::detect_mode_name(DetectMode::Null), "null");
	for (DetectMode m : {DetectMode::Converted, DetectMode::Absent, DetectMode::Null})
		EXPECT_EQ(mext::parse_detect_mode(mext::detect_mode_name(m)), m);
}

TEST(VerdictTest, Names)
{
	EXPECT_STREQ(mext::verdict_name(Verdict::Null), "null");
	EXPECT_STREQ(mext::verdict_name(Verdict::Target), "target");
	EXPECT_STREQ(mext::verdict_name(Verdict::Legacy), "legacy");
	EXPECT_STREQ(mext::verdict_name(Verdict::Ambiguous), "ambiguous");
	EXPECT_STREQ(mext::verdict_name(Verdict::Other), "other");
}

// ---------------------------------------------------------------------------------------------
// Codec construction
// ---------------------------------------------------------------------------------------------

TEST(CodecConstruction, ConvertedWithoutMarkerIsInvalid)
{
	EXPECT_TRUE(ThrowsCodecError([] { Codec c(make_spec("reverse", std::nullopt, DetectMode::Converted)); },
	                             ErrorKind::InvalidParameter));
}

TEST(CodecConstruction, AbsentWithoutMarkerIsInvalid)
{
	EXPECT_TRUE(ThrowsCodecError([] { Codec c(make_spec("reverse|add_prefix:v2:", std::nullopt, DetectMode::Absent)); },
	                             ErrorKind::InvalidParameter));
}

TEST(CodecConstruction, EmptyMarkerIsInvalid)
{
	EXPECT_TRUE(ThrowsCodecError([] { Codec c(make_spec("reverse", std::string(), DetectMode::Converted)); },
	                             ErrorKind::InvalidParameter));
	EXPECT_TRUE(
	    ThrowsCodecError([] { Codec c(make_spec("reverse|add_prefix:v2:", std::string(), DetectMode::Absent)); },
	                     ErrorKind::InvalidParameter));
}

TEST(CodecConstruction, BadPipelineIsInvalid)
{
	EXPECT_TRUE(ThrowsCodecError([] { Codec c(make_spec("rot13", std::string("tok_"), DetectMode::Converted)); },
	                             ErrorKind::InvalidParameter));
	EXPECT_TRUE(ThrowsCodecError([] { Codec c(make_spec("", std::string("tok_"), DetectMode::Converted)); },
	                             ErrorKind::InvalidParameter));
}

TEST(CodecConstruction, AbsentThatNeverConvergesIsRejected)
{
	EXPECT_TRUE(ThrowsCodecError([] { Codec c(make_spec("reverse", std::string("v2:"), DetectMode::Absent)); },
	                             ErrorKind::NotConverging));
}

TEST(CodecConstruction, AbsentThatConvergesIsAccepted)
{
	EXPECT_NO_THROW({ Codec c(make_spec("reverse|add_prefix:v2:", std::string("v2:"), DetectMode::Absent)); });
}

TEST(CodecConstruction, AbsentWithFunctionStepIsAcceptedWithoutHost)
{
	// The probe cannot call a host at construction time; fn: pipelines are checked at run time.
	EXPECT_NO_THROW({ Codec c(make_spec("fn:public.f", std::string("v2:"), DetectMode::Absent)); });
}

TEST(CodecConstruction, NullModeWithoutMarkerIsAccepted)
{
	EXPECT_NO_THROW({ Codec c(make_spec("const:active", std::nullopt, DetectMode::Null)); });
}

TEST(CodecConstruction, ExposesStepsSpecAndFunctionFlag)
{
	Codec c(make_spec("strip_prefix:v1:|base64_decode|add_prefix:v2:", std::string("v2:"), DetectMode::Absent));
	ASSERT_EQ(c.steps().size(), 3u);
	EXPECT_EQ(c.steps()[0].kind, StepKind::StripPrefix);
	EXPECT_EQ(c.steps()[0].arg, "v1:");
	EXPECT_EQ(c.steps()[1].kind, StepKind::Base64Decode);
	EXPECT_EQ(c.steps()[2].kind, StepKind::AddPrefix);
	EXPECT_EQ(c.steps()[2].arg, "v2:");
	EXPECT_EQ(c.spec().convert, "strip_prefix:v1:|base64_decode|add_prefix:v2:");
	ASSERT_TRUE(c.spec().marker.has_value());
	EXPECT_EQ(*c.spec().marker, "v2:");
	EXPECT_EQ(c.spec().detect, DetectMode::Absent);
	EXPECT_FALSE(c.has_function_steps());

	Codec f(make_spec("fn:public.up|add_prefix:v2:", std::string("v2:"), DetectMode::Absent));
	EXPECT_TRUE(f.has_function_steps());
}

// ---------------------------------------------------------------------------------------------
// Codec semantics: converted mode (the seed's codec)
// ---------------------------------------------------------------------------------------------

class SeedCodec : public ::testing::Test
{
  protected:
	Codec codec{make_spec("reverse", std::string("tok_"), DetectMode::Converted)};
	TestHost host;
};

TEST_F(SeedCodec, LegacyValueMigrates)
{
	EXPECT_EQ(verdict_str(classify(codec, host, "321cba_kot")), "legacy");
	EXPECT_EQ(migrate(codec, host, "321cba_kot"), std::optional<std::string>("tok_abc123"));
}

// A value past the scratch keep size leaves no capacity behind, and the codec converts as before.
TEST_F(SeedCodec, LargeValueScratchIsReleased)
{
	std::string large(3 * mext::kScratchKeepBytes, 'x');
	large += "_kot";
	auto converted = migrate(codec, host, large);
	ASSERT_TRUE(converted.has_value());
	EXPECT_EQ(converted->size(), large.size());
	codec.release_large_scratch();
	EXPECT_EQ(migrate(codec, host, "321cba_kot"), std::optional<std::string>("tok_abc123"));
	codec.release_large_scratch();
	EXPECT_EQ(migrate(codec, host, "654cba_kot"), std::optional<std::string>("tok_abc456"));
}

TEST_F(SeedCodec, TargetValuePassesThrough)
{
	EXPECT_EQ(verdict_str(classify(codec, host, "tok_abc123")), "target");
	EXPECT_EQ(migrate(codec, host, "tok_abc123"), std::nullopt);
}

TEST_F(SeedCodec, OtherValuePassesThrough)
{
	EXPECT_EQ(verdict_str(classify(codec, host, "hello")), "other");
	EXPECT_EQ(migrate(codec, host, "hello"), std::nullopt);
}

TEST_F(SeedCodec, NullPassesThrough)
{
	EXPECT_EQ(verdict_str(classify(codec, host, std::nullopt)), "null");
	EXPECT_EQ(migrate(codec, host, std::nullopt), std::nullopt);
}

TEST_F(SeedCodec, AmbiguousValuePassesThrough)
{
	// "tok__kot" starts with the marker and so does its reverse (it is a palindrome).
	EXPECT_EQ(verdict_str(classify(codec, host, "tok__kot")), "ambiguous");
	EXPECT_EQ(migrate(codec, host, "tok__kot"), std::nullopt);
}

TEST_F(SeedCodec, EmptyStringIsOther)
{
	EXPECT_EQ(verdict_str(classify(codec, host, "")), "other");
	EXPECT_EQ(migrate(codec, host, ""), std::nullopt);
}

TEST_F(SeedCodec, MarkerAloneReversedIsLegacy)
{
	EXPECT_EQ(verdict_str(classify(codec, host, "_kot")), "legacy");
	EXPECT_EQ(migrate(codec, host, "_kot"), std::optional<std::string>("tok_"));
}

TEST_F(SeedCodec, Utf8LegacyValue)
{
	// "→é_kot" reversed is "tok_é→"
	EXPECT_EQ(verdict_str(classify(codec, host, "\xE2\x86\x92\xC3\xA9_kot")), "legacy");
	EXPECT_EQ(migrate(codec, host, "\xE2\x86\x92\xC3\xA9_kot"), std::optional<std::string>("tok_\xC3\xA9\xE2\x86\x92"));
}

TEST_F(SeedCodec, RunAppliesPipelineUnconditionally)
{
	EXPECT_EQ(codec.run("hello", host), "olleh");
	EXPECT_EQ(codec.run("tok_abc", host), "cba_kot");
	EXPECT_EQ(codec.run("", host), "");
}

TEST_F(SeedCodec, NoHostCallsWithoutShapeOrFunctions)
{
	classify(codec, host, "321cba_kot");
	classify(codec, host, "tok_abc123");
	classify(codec, host, "hello");
	migrate(codec, host, "321cba_kot");
	EXPECT_EQ(host.function_calls, 0);
	EXPECT_EQ(host.shape_calls, 0);
}

TEST_F(SeedCodec, MigratedViewValidUntilNextCall)
{
	std::string_view a = "321cba_kot";
	std::optional<std::string_view> ra = codec.migrate(&a, host);
	ASSERT_TRUE(ra.has_value());
	std::string first(*ra); // copy before the next call
	EXPECT_EQ(first, "tok_abc123");

	std::string_view b = "fed_kot";
	std::optional<std::string_view> rb = codec.migrate(&b, host);
	ASSERT_TRUE(rb.has_value());
	std::string second(*rb);
	EXPECT_EQ(second, "tok_def");
	EXPECT_EQ(first, "tok_abc123");

	// A pass-through in between does not disturb a later conversion.
	std::string_view c = "tok_zzz";
	EXPECT_FALSE(codec.migrate(&c, host).has_value());
	std::string_view d = "987_kot";
	std::optional<std::string_view> rd = codec.migrate(&d, host);
	ASSERT_TRUE(rd.has_value());
	EXPECT_EQ(std::string(*rd), "tok_789");
}

TEST_F(SeedCodec, MigrateDoesNotModifyInput)
{
	std::string input = "321cba_kot";
	std::string_view v = input;
	std::optional<std::string_view> r = codec.migrate(&v, host);
	ASSERT_TRUE(r.has_value());
	EXPECT_EQ(std::string(*r), "tok_abc123");
	EXPECT_EQ(input, "321cba_kot");
}

TEST(ConvertedMode, ConversionErrorIsOtherNotAnError)
{
	Codec codec(make_spec("hex_decode", std::string("tok_"), DetectMode::Converted));
	TestHost host;
	Verdict v = Verdict::Legacy;
	EXPECT_NO_THROW(v = classify(codec, host, "zz"));
	EXPECT_EQ(verdict_str(v), "other");
	std::optional<std::string> r = std::string("sentinel");
	EXPECT_NO_THROW(r = migrate(codec, host, "zz"));
	EXPECT_EQ(r, std::nullopt);
	// odd length and NUL-producing values are also just Other
	EXPECT_EQ(verdict_str(classify(codec, host, "abc")), "other");
	EXPECT_EQ(verdict_str(classify(codec, host, "00")), "other");
	// a value that does decode, but not to the marker, is Other
	EXPECT_EQ(verdict_str(classify(codec, host, "41")), "other");
}

TEST(ConvertedMode, HexLegacyValueMigrates)
{
	Codec codec(make_spec("hex_decode", std::string("tok_"), DetectMode::Converted));
	TestHost host;
	std::string legacy = hex_of("tok_x");
	EXPECT_EQ(legacy, "746f6b5f78");
	EXPECT_EQ(verdict_str(classify(codec, host, legacy)), "legacy");
	EXPECT_EQ(migrate(codec, host, legacy), std::optional<std::string>("tok_x"));
	EXPECT_EQ(verdict_str(classify(codec, host, "tok_x")), "target");
}

TEST(ConvertedMode, Base64PipelineMigrates)
{
	Codec codec(make_spec("strip_prefix:v1:|base64_decode|add_prefix:v2:", std::string("v2:"), DetectMode::Converted));
	TestHost host;
	EXPECT_EQ(verdict_str(classify(codec, host, "v1:Zm9vYmFy")), "legacy");
	EXPECT_EQ(migrate(codec, host, "v1:Zm9vYmFy"), std::optional<std::string>("v2:foobar"));
	EXPECT_EQ(verdict_str(classify(codec, host, "v2:foobar")), "target");
	EXPECT_EQ(migrate(codec, host, "v2:foobar"), std::nullopt);
	// no v1: prefix -> strip_prefix fails -> Other
	EXPECT_EQ(verdict_str(classify(codec, host, "Zm9vYmFy")), "other");
	// bad base64 -> Other
	EXPECT_EQ(verdict_str(classify(codec, host, "v1:!!!!")), "other");
}

// ---------------------------------------------------------------------------------------------
// Absent mode
// ---------------------------------------------------------------------------------------------

class AbsentCodec : public ::testing::Test
{
  protected:
	Codec codec{make_spec("reverse|add_prefix:v2:", std::string("v2:"), DetectMode::Absent)};
	TestHost host;
};

TEST_F(AbsentCodec, UnmarkedValueIsLegacy)
{
	EXPECT_EQ(verdict_str(classify(codec, host, "abc")), "legacy");
	EXPECT_EQ(migrate(codec, host, "abc"), std::optional<std::string>("v2:cba"));
}

TEST_F(AbsentCodec, MarkedValueIsTarget)
{
	EXPECT_EQ(verdict_str(classify(codec, host, "v2:cba")), "target");
	EXPECT_EQ(migrate(codec, host, "v2:cba"), std::nullopt);
}

TEST_F(AbsentCodec, NullPassesThrough)
{
	EXPECT_EQ(verdict_str(classify(codec, host, std::nullopt)), "null");
	EXPECT_EQ(migrate(codec, host, std::nullopt), std::nullopt);
}

TEST_F(AbsentCodec, PartialMarkerIsLegacy)
{
	EXPECT_EQ(verdict_str(classify(codec, host, "v2")), "legacy");
	EXPECT_EQ(migrate(codec, host, "v2"), std::optional<std::string>("v2:2v"));
}

TEST_F(AbsentCodec, MigratedValueIsTarget)
{
	std::optional<std::string> m = migrate(codec, host, "h\xC3\xA9llo");
	ASSERT_TRUE(m.has_value());
	EXPECT_EQ(*m, "v2:oll\xC3\xA9h");
	EXPECT_EQ(verdict_str(classify(codec, host, *m)), "target");
}

// ---------------------------------------------------------------------------------------------
// Null mode
// ---------------------------------------------------------------------------------------------

class NullModeCodec : public ::testing::Test
{
  protected:
	Codec codec{make_spec("const:active", std::nullopt, DetectMode::Null)};
	TestHost host;
};

TEST_F(NullModeCodec, NullIsLegacyAndMigrates)
{
	EXPECT_EQ(verdict_str(classify(codec, host, std::nullopt)), "legacy");
	EXPECT_EQ(migrate(codec, host, std::nullopt), std::optional<std::string>("active"));
}

TEST_F(NullModeCodec, NonNullIsTarget)
{
	EXPECT_EQ(verdict_str(classify(codec, host, "x")), "target");
	EXPECT_EQ(migrate(codec, host, "x"), std::nullopt);
	EXPECT_EQ(verdict_str(classify(codec, host, "")), "target");
	EXPECT_EQ(migrate(codec, host, ""), std::nullopt);
}

// ---------------------------------------------------------------------------------------------
// Shape
// ---------------------------------------------------------------------------------------------

class ShapeCodec : public ::testing::Test
{
  protected:
	ShapeCodec() { host.shape.emplace("^[0-9a-f]{32}$"); }
	Codec codec{make_spec("reverse|add_prefix:v2:", std::string("v2:"), DetectMode::Absent, /*has_shape=*/true)};
	TestHost host;
};

TEST_F(ShapeCodec, MatchingValueIsLegacy)
{
	const std::string value = "0123456789abcdef0123456789abcdef";
	EXPECT_EQ(verdict_str(classify(codec, host, value)), "legacy");
	EXPECT_GE(host.shape_calls, 1);
	std::string reversed(value.rbegin(), value.rend());
	EXPECT_EQ(migrate(codec, host, value), std::optional<std::string>("v2:" + reversed));
}

TEST_F(ShapeCodec, NonMatchingValueIsOtherAndPassesThrough)
{
	EXPECT_EQ(verdict_str(classify(codec, host, "hello")), "other");
	EXPECT_EQ(migrate(codec, host, "hello"), std::nullopt);
	EXPECT_GE(host.shape_calls, 1);
	ASSERT_FALSE(host.shape_inputs.empty());
	EXPECT_EQ(host.shape_inputs.back(), "hello");
	// 31 hex digits: does not match either
	EXPECT_EQ(verdict_str(classify(codec, host, "0123456789abcdef0123456789abcde")), "other");
}

TEST_F(ShapeCodec, ShapeNotCalledForMarkedValues)
{
	EXPECT_EQ(verdict_str(classify(codec, host, "v2:fedcba9876543210fedcba9876543210")), "target");
	EXPECT_EQ(migrate(codec, host, "v2:fedcba9876543210fedcba9876543210"), std::nullopt);
	EXPECT_EQ(verdict_str(classify(codec, host, "v2:hello")), "target");
	EXPECT_EQ(host.shape_calls, 0);
}

TEST_F(ShapeCodec, ShapeNotCalledForNull)
{
	EXPECT_EQ(verdict_str(classify(codec, host, std::nullopt)), "null");
	EXPECT_EQ(migrate(codec, host, std::nullopt), std::nullopt);
	EXPECT_EQ(host.shape_calls, 0);
}

TEST(ShapeConverted, ShapeRestrictsLegacyInConvertedMode)
{
	Codec codec(make_spec("reverse", std::string("tok_"), DetectMode::Converted, /*has_shape=*/true));
	TestHost host;
	host.shape.emplace("^[0-9]+_kot$");
	EXPECT_EQ(verdict_str(classify(codec, host, "321_kot")), "legacy");
	EXPECT_EQ(migrate(codec, host, "321_kot"), std::optional<std::string>("tok_123"));
	// would be legacy by conversion, but does not match the shape
	EXPECT_NE(verdict_str(classify(codec, host, "321cba_kot")), "legacy");
	EXPECT_EQ(migrate(codec, host, "321cba_kot"), std::nullopt);
}

// ---------------------------------------------------------------------------------------------
// fn: steps
// ---------------------------------------------------------------------------------------------

TEST(FunctionSteps, HostFunctionIsCalledWithStepIndex)
{
	Codec codec(make_spec("fn:public.up|add_prefix:v2:", std::string("v2:"), DetectMode::Absent));
	TestHost host;
	host.functions[0] = ascii_upper;
	EXPECT_EQ(migrate(codec, host, "abc"), std::optional<std::string>("v2:ABC"));
	EXPECT_EQ(host.function_calls, 1);
	ASSERT_EQ(host.called_indices.size(), 1u);
	EXPECT_EQ(host.called_indices[0], 0u);
	ASSERT_EQ(host.function_inputs.size(), 1u);
	EXPECT_EQ(host.function_inputs[0], "abc");
}

TEST(FunctionSteps, StepIndexIsPositionInPipeline)
{
	Codec codec(make_spec("reverse|fn:public.up|add_prefix:v2:", std::string("v2:"), DetectMode::Absent));
	TestHost host;
	host.functions[1] = ascii_upper;
	EXPECT_EQ(migrate(codec, host, "abc"), std::optional<std::string>("v2:CBA"));
	ASSERT_EQ(host.called_indices.size(), 1u);
	EXPECT_EQ(host.called_indices[0], 1u);
	ASSERT_EQ(host.function_inputs.size(), 1u);
	EXPECT_EQ(host.function_inputs[0], "cba");
}

TEST(FunctionSteps, TargetValueDoesNotCallFunctionInAbsentMode)
{
	Codec codec(make_spec("fn:public.up|add_prefix:v2:", std::string("v2:"), DetectMode::Absent));
	TestHost host;
	host.functions[0] = ascii_upper;
	EXPECT_EQ(migrate(codec, host, "v2:abc"), std::nullopt);
	EXPECT_EQ(verdict_str(classify(codec, host, "v2:abc")), "target");
	EXPECT_EQ(migrate(codec, host, std::nullopt), std::nullopt);
	EXPECT_EQ(host.function_calls, 0);
}

TEST(FunctionSteps, AbsentModeNonConvergingFunctionThrowsAtRunTime)
{
	Codec codec(make_spec("fn:public.f", std::string("v2:"), DetectMode::Absent));
	TestHost host;
	host.functions[0] = [](std::string_view in) { return "nope:" + std::string(in); };
	EXPECT_TRUE(ThrowsCodecError([&] { migrate(codec, host, "abc"); }, ErrorKind::NotConverging));
	EXPECT_GE(host.function_calls, 1);
}

TEST(FunctionSteps, AbsentModeConvergingFunctionIsFine)
{
	Codec codec(make_spec("fn:public.f", std::string("v2:"), DetectMode::Absent));
	TestHost host;
	host.functions[0] = [](std::string_view in) { return "v2:" + std::string(in); };
	EXPECT_EQ(migrate(codec, host, "abc"), std::optional<std::string>("v2:abc"));
}

TEST(FunctionSteps, ConvertedModeUsesFunctionForDetection)
{
	Codec codec(make_spec("fn:public.up", std::string("TOK_"), DetectMode::Converted));
	TestHost host;
	host.functions[0] = ascii_upper;
	EXPECT_EQ(verdict_str(classify(codec, host, "tok_abc")), "legacy");
	EXPECT_EQ(migrate(codec, host, "tok_abc"), std::optional<std::string>("TOK_ABC"));
	EXPECT_EQ(verdict_str(classify(codec, host, "hello")), "other");
	EXPECT_GE(host.function_calls, 3);
	for (std::size_t idx : host.called_indices)
		EXPECT_EQ(idx, 0u);
}

TEST(FunctionSteps, HostExceptionsPropagate)
{
	Codec codec(make_spec("fn:public.f|add_prefix:v2:", std::string("v2:"), DetectMode::Absent));
	TestHost host;
	host.functions[0] = [](std::string_view) -> std::string { throw std::logic_error("boom from host"); };
	EXPECT_THROW(migrate(codec, host, "abc"), std::logic_error);
	EXPECT_THROW(codec.run("abc", host), std::logic_error);
}

TEST(FunctionSteps, RunCallsFunction)
{
	Codec codec(make_spec("fn:public.up|add_prefix:v2:", std::string("v2:"), DetectMode::Absent));
	TestHost host;
	host.functions[0] = ascii_upper;
	EXPECT_EQ(codec.run("xyz", host), "v2:XYZ");
	EXPECT_EQ(host.function_calls, 1);
}

// ---------------------------------------------------------------------------------------------
// Non-UTF-8 server encoding
// ---------------------------------------------------------------------------------------------

TEST(NonUtf8, ReverseReversesBytes)
{
	Codec codec(make_spec("reverse", std::string("tok_"), DetectMode::Converted, /*has_shape=*/false,
	                      /*utf8=*/false));
	TestHost host;
	EXPECT_EQ(codec.run("h\xC3\xA9", host), "\xA9\xC3h");
	// Latin-1 "é" (0xE9) followed by the reversed marker
	EXPECT_EQ(verdict_str(classify(codec, host, "\xE9_kot")), "legacy");
	EXPECT_EQ(migrate(codec, host, "\xE9_kot"), std::optional<std::string>("tok_\xE9"));
}

TEST(Utf8, CodecReverseReversesCharacters)
{
	Codec codec(make_spec("reverse", std::string("tok_"), DetectMode::Converted));
	TestHost host;
	EXPECT_EQ(codec.run("h\xC3\xA9", host), "\xC3\xA9h");
}

} // namespace

// A step that would grow a value past PostgreSQL's text limit fails as bad data before it allocates:
// found by the fuzzer, a pipeline of repeated base64_encode steps asked for 2 GB.
TEST(StepLimits, GrowingPastTheTextLimitIsInvalidData)
{
	const std::string buffer(mext::kMaxValueBytes, 'a');
	// Past the limit by a few bytes: hex doubles it, base64 adds a third, the prefix three bytes.
	const std::string_view three_quarters(buffer.data(), mext::kMaxValueBytes / 4 * 3 + 3);
	const std::pair<mext::Step, std::string_view> cases[] = {
	    {mext::Step{mext::StepKind::HexEncode, {}}, three_quarters},
	    {mext::Step{mext::StepKind::Base64Encode, {}}, three_quarters},
	    {mext::Step{mext::StepKind::AddPrefix, "v2:"}, buffer},
	};
	for (const auto &[step, value] : cases) {
		std::string out;
		try {
			mext::apply_builtin_step(step, value, out, true);
			ADD_FAILURE() << "no error for step " << static_cast<int>(step.kind);
		} catch (const mext::CodecError &e) {
			EXPECT_EQ(e.kind, mext::ErrorKind::InvalidData);
			EXPECT_NE(std::string(e.what()).find("would produce a value of"), std::string::npos) << e.what();
		}
		EXPECT_EQ(out.capacity(), std::string().capacity()); // nothing was allocated for it
	}
}
