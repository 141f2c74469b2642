// libFuzzer target for the codec pipeline parser and every conversion step. Input: a pipeline spec, a
// newline, then a value. Properties checked beyond "no crash, no sanitizer report":
//  - parse_pipeline either succeeds or throws CodecError(InvalidParameter), nothing else;
//  - a step fails only with CodecError(InvalidData);
//  - round trips hold: hex_decode(hex_encode(v)) == v, base64_decode(base64_encode(v)) == v, and
//    reverse(reverse(v)) == v, for every valid UTF-8 value;
//  - a Codec in 'absent' mode that converts a value returns one that starts with its marker.
#include "core/codec.hpp"

#include <cstdint>
#include <cstdlib>
#include <string>

namespace
{

struct NoDatabase : mext::Host {
	std::string call_function(std::size_t, std::string_view input) override { return "v2:" + std::string(input); }
	bool matches_shape(std::string_view) override { return true; }
};

void require(bool condition)
{
	if (!condition)
		std::abort();
}

std::string run(mext::StepKind kind, std::string_view value)
{
	std::string out;
	mext::apply_builtin_step(mext::Step{kind, {}}, value, out, true);
	return out;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t *data, std::size_t size)
{
	std::string input(reinterpret_cast<const char *>(data), size);
	auto newline = input.find('\n');
	std::string spec = input.substr(0, newline);
	std::string value = newline == std::string::npos ? std::string() : input.substr(newline + 1);

	if (mext::is_valid_utf8(value) && value.find('\0') == std::string::npos) {
		require(run(mext::StepKind::HexDecode, run(mext::StepKind::HexEncode, value)) == value);
		require(run(mext::StepKind::Base64Decode, run(mext::StepKind::Base64Encode, value)) == value);
		require(run(mext::StepKind::Reverse, run(mext::StepKind::Reverse, value)) == value);
	}

	std::vector<mext::Step> steps;
	try {
		steps = mext::parse_pipeline(spec);
	} catch (const mext::CodecError &e) {
		require(e.kind == mext::ErrorKind::InvalidParameter);
		return 0;
	}
	for (const auto &step : steps) {
		if (step.kind == mext::StepKind::Function)
			continue;
		std::string out;
		try {
			mext::apply_builtin_step(step, value, out, true);
		} catch (const mext::CodecError &e) {
			require(e.kind == mext::ErrorKind::InvalidData);
		}
	}

	try {
		mext::CodecSpec codec_spec;
		codec_spec.convert = spec;
		codec_spec.marker = "v2:";
		codec_spec.detect = mext::DetectMode::Absent;
		mext::Codec codec(codec_spec);
		NoDatabase host;
		std::string_view view(value);
		auto converted = codec.migrate(&view, host);
		if (converted)
			require(converted->substr(0, 3) == "v2:");
	} catch (const mext::CodecError &) {
	}
	return 0;
}
