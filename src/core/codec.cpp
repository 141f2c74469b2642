#include "core/codec.hpp"

#include <boost/algorithm/hex.hpp>
#include <boost/algorithm/string/predicate.hpp>

#include <algorithm>
#include <array>
#include <utility>

namespace mext
{

CodecError::CodecError(ErrorKind k, const std::string &message, std::string d, std::string h)
    : std::runtime_error(message), kind(k), detail(std::move(d)), hint(std::move(h))
{
}

namespace
{

const char *const kStepsHint = "Steps are reverse, strip_prefix:P, add_prefix:P, hex_encode, hex_decode, "
                               "base64_encode, base64_decode, lower, upper, const:V and fn:schema.name, "
                               "joined with '|'.";

struct StepName {
	const char *name;
	StepKind kind;
	bool takes_argument;
};

constexpr std::array<StepName, 11> kStepNames{{
    {"reverse", StepKind::Reverse, false},
    {"strip_prefix", StepKind::StripPrefix, true},
    {"add_prefix", StepKind::AddPrefix, true},
    {"hex_encode", StepKind::HexEncode, false},
    {"hex_decode", StepKind::HexDecode, false},
    {"base64_encode", StepKind::Base64Encode, false},
    {"base64_decode", StepKind::Base64Decode, false},
    {"lower", StepKind::Lower, false},
    {"upper", StepKind::Upper, false},
    {"const", StepKind::Const, true},
    {"fn", StepKind::Function, true},
}};

CodecError bad_definition(const std::string &message, std::string detail = {})
{
	return CodecError(ErrorKind::InvalidParameter, message, std::move(detail), kStepsHint);
}

CodecError bad_value(const std::string &message, std::string detail = {})
{
	return CodecError(ErrorKind::InvalidData, message, std::move(detail));
}

// A function name must be exactly schema.name so that the PostgreSQL layer never resolves it through a
// caller's search_path.
void check_function_name(const std::string &arg)
{
	auto dot = arg.find('.');
	if (arg.empty() || dot == std::string::npos || dot == 0 || dot + 1 == arg.size() ||
	    arg.find('.', dot + 1) != std::string::npos)
		throw bad_definition("step \"fn:" + arg + "\" does not name a function as schema.name",
		                     "An fn: step calls a SQL function text -> text and must be schema-qualified.");
}

Step parse_step(const std::string &raw)
{
	if (raw.empty())
		throw bad_definition("empty step in codec pipeline");
	auto colon = raw.find(':');
	std::string name = raw.substr(0, colon);
	for (const auto &candidate : kStepNames) {
		if (name != candidate.name)
			continue;
		if (!candidate.takes_argument) {
			if (colon != std::string::npos)
				throw bad_definition("step \"" + name + "\" takes no argument", "Found \"" + raw + "\".");
			return Step{candidate.kind, {}};
		}
		std::string arg = colon == std::string::npos ? std::string() : raw.substr(colon + 1);
		if (arg.empty() && candidate.kind != StepKind::Const)
			throw bad_definition("step \"" + name + "\" needs an argument", "Write it as " + name + ":VALUE.");
		if (colon == std::string::npos)
			throw bad_definition("step \"" + name + "\" needs an argument", "Write it as " + name + ":VALUE.");
		if (candidate.kind == StepKind::Function)
			check_function_name(arg);
		return Step{candidate.kind, arg};
	}
	throw bad_definition("unknown codec step \"" + name + "\"");
}

// Decodes one UTF-8 sequence length from its lead byte; 0 for an invalid lead byte.
int utf8_sequence_length(unsigned char lead)
{
	if (lead < 0x80)
		return 1;
	if ((lead & 0xE0) == 0xC0)
		return lead >= 0xC2 ? 2 : 0;
	if ((lead & 0xF0) == 0xE0)
		return 3;
	if ((lead & 0xF8) == 0xF0)
		return lead <= 0xF4 ? 4 : 0;
	return 0;
}

void reverse_characters(std::string_view in, std::string &out, bool utf8)
{
	out.resize(in.size());
	bool ascii = std::all_of(in.begin(), in.end(), [](char c) { return static_cast<unsigned char>(c) < 0x80; });
	if (!utf8 || ascii) {
		std::copy(in.rbegin(), in.rend(), out.begin());
		return;
	}
	// Copy each character, lead byte first, to its mirrored position: a character stays intact.
	std::size_t i = 0;
	std::size_t end = in.size();
	while (i < in.size()) {
		int len = utf8_sequence_length(static_cast<unsigned char>(in[i]));
		if (len == 0 || i + len > in.size())
			len = 1;
		end -= len;
		in.copy(&out[end], len, i);
		i += len;
	}
}

void check_text(const std::string &value, bool utf8, const char *step)
{
	if (value.find('\0') != std::string::npos)
		throw bad_value(std::string(step) + " produced a zero byte, which text cannot hold");
	if (utf8 && !is_valid_utf8(value))
		throw bad_value(std::string(step) + " produced invalid UTF-8");
}

constexpr char kBase64Alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

void base64_encode(std::string_view in, std::string &out)
{
	out.clear();
	out.reserve((in.size() + 2) / 3 * 4);
	std::size_t i = 0;
	for (; i + 2 < in.size(); i += 3) {
		unsigned v = (unsigned char)in[i] << 16 | (unsigned char)in[i + 1] << 8 | (unsigned char)in[i + 2];
		out += kBase64Alphabet[v >> 18 & 63];
		out += kBase64Alphabet[v >> 12 & 63];
		out += kBase64Alphabet[v >> 6 & 63];
		out += kBase64Alphabet[v & 63];
	}
	if (i < in.size()) {
		unsigned v = (unsigned char)in[i] << 16;
		if (i + 1 < in.size())
			v |= (unsigned char)in[i + 1] << 8;
		out += kBase64Alphabet[v >> 18 & 63];
		out += kBase64Alphabet[v >> 12 & 63];
		out += i + 1 < in.size() ? kBase64Alphabet[v >> 6 & 63] : '=';
		out += '=';
	}
}

int base64_digit(char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

// Accepts what PostgreSQL's decode(..., 'base64') accepts: whitespace anywhere, '=' padding at the end.
void base64_decode(std::string_view in, std::string &out)
{
	out.clear();
	out.reserve(in.size() / 4 * 3);
	unsigned accumulator = 0;
	int bits = 0;
	int padding = 0;
	std::size_t digits = 0;
	for (char c : in) {
		if (c == ' ' || c == '\t' || c == '\n' || c == '\r')
			continue;
		if (c == '=') {
			++padding;
			++digits;
			continue;
		}
		int d = base64_digit(c);
		if (d < 0)
			throw bad_value("invalid base64 character", std::string("Found \"") + c + "\".");
		if (padding)
			throw bad_value("invalid base64: data after '=' padding");
		accumulator = accumulator << 6 | static_cast<unsigned>(d);
		bits += 6;
		++digits;
		if (bits >= 8) {
			bits -= 8;
			out += static_cast<char>(accumulator >> bits & 0xFF);
		}
	}
	if (digits % 4 != 0 || padding > 2)
		throw bad_value("invalid base64 end sequence", "The input length is not a multiple of four.");
}

void change_case(std::string_view in, std::string &out, bool upper)
{
	out.assign(in.begin(), in.end());
	for (char &c : out) {
		if (upper && c >= 'a' && c <= 'z')
			c = static_cast<char>(c - 'a' + 'A');
		else if (!upper && c >= 'A' && c <= 'Z')
			c = static_cast<char>(c - 'A' + 'a');
	}
}

} // namespace

std::vector<Step> parse_pipeline(std::string_view spec)
{
	if (spec.empty())
		throw bad_definition("codec conversion is empty");
	std::vector<Step> steps;
	std::string current;
	for (std::size_t i = 0; i < spec.size(); ++i) {
		char c = spec[i];
		if (c == '\\' && i + 1 < spec.size() && (spec[i + 1] == '|' || spec[i + 1] == '\\')) {
			current += spec[++i];
		} else if (c == '|') {
			steps.push_back(parse_step(current));
			current.clear();
		} else {
			current += c;
		}
	}
	steps.push_back(parse_step(current));
	return steps;
}

DetectMode parse_detect_mode(std::string_view text)
{
	if (text == "converted")
		return DetectMode::Converted;
	if (text == "absent")
		return DetectMode::Absent;
	if (text == "null")
		return DetectMode::Null;
	throw CodecError(ErrorKind::InvalidParameter, "unknown detect mode \"" + std::string(text) + "\"", {},
	                 "Use 'converted', 'absent' or 'null'.");
}

const char *detect_mode_name(DetectMode mode)
{
	switch (mode) {
	case DetectMode::Converted:
		return "converted";
	case DetectMode::Absent:
		return "absent";
	case DetectMode::Null:
		return "null";
	}
	return "?";
}

const char *verdict_name(Verdict verdict)
{
	switch (verdict) {
	case Verdict::Null:
		return "null";
	case Verdict::Target:
		return "target";
	case Verdict::Legacy:
		return "legacy";
	case Verdict::Ambiguous:
		return "ambiguous";
	case Verdict::Other:
		return "other";
	}
	return "?";
}

bool is_valid_utf8(std::string_view text)
{
	std::size_t i = 0;
	while (i < text.size()) {
		auto lead = static_cast<unsigned char>(text[i]);
		int len = utf8_sequence_length(lead);
		if (len == 0 || i + len > text.size())
			return false;
		for (int k = 1; k < len; ++k)
			if ((static_cast<unsigned char>(text[i + k]) & 0xC0) != 0x80)
				return false;
		if (len == 3) {
			auto second = static_cast<unsigned char>(text[i + 1]);
			if ((lead == 0xE0 && second < 0xA0) || (lead == 0xED && second >= 0xA0)) // overlong, surrogate
				return false;
		} else if (len == 4) {
			auto second = static_cast<unsigned char>(text[i + 1]);
			if ((lead == 0xF0 && second < 0x90) || (lead == 0xF4 && second >= 0x90))
				return false;
		}
		i += len;
	}
	return true;
}

namespace
{
void require_room(std::size_t bytes, const char *step)
{
	if (bytes > kMaxValueBytes)
		throw bad_value(std::string(step) + " would produce a value of " + std::to_string(bytes) + " bytes",
		                "A text value holds at most " + std::to_string(kMaxValueBytes) + " bytes.");
}
} // namespace

void apply_builtin_step(const Step &step, std::string_view in, std::string &out, bool utf8)
{
	switch (step.kind) {
	case StepKind::Reverse:
		reverse_characters(in, out, utf8);
		return;
	case StepKind::StripPrefix:
		if (!boost::algorithm::starts_with(in, step.arg))
			throw bad_value("value does not start with \"" + step.arg + "\"", "The strip_prefix step needs it.");
		out.assign(in.substr(step.arg.size()));
		return;
	case StepKind::AddPrefix:
		require_room(step.arg.size() + in.size(), "add_prefix");
		out.clear();
		out.reserve(step.arg.size() + in.size());
		out.append(step.arg).append(in);
		return;
	case StepKind::HexEncode:
		require_room(in.size() * 2, "hex_encode");
		out.clear();
		out.reserve(in.size() * 2);
		boost::algorithm::hex_lower(in.begin(), in.end(), std::back_inserter(out));
		return;
	case StepKind::HexDecode:
		out.clear();
		try {
			boost::algorithm::unhex(in.begin(), in.end(), std::back_inserter(out));
		} catch (const boost::algorithm::hex_decode_error &) {
			throw bad_value("invalid hexadecimal data",
			                "hex_decode needs an even number of hexadecimal digits, two per byte.");
		}
		check_text(out, utf8, "hex_decode");
		return;
	case StepKind::Base64Encode:
		require_room((in.size() + 2) / 3 * 4, "base64_encode");
		base64_encode(in, out);
		return;
	case StepKind::Base64Decode:
		base64_decode(in, out);
		check_text(out, utf8, "base64_decode");
		return;
	case StepKind::Lower:
		change_case(in, out, false);
		return;
	case StepKind::Upper:
		change_case(in, out, true);
		return;
	case StepKind::Const:
		out.assign(step.arg);
		return;
	case StepKind::Function:
		break;
	}
	throw CodecError(ErrorKind::InvalidParameter, "step needs the database to run");
}

Codec::Codec(const CodecSpec &spec) : spec_(spec), steps_(parse_pipeline(spec.convert))
{
	if (spec_.marker && spec_.marker->empty())
		throw CodecError(ErrorKind::InvalidParameter, "codec marker is empty", {},
		                 "Pass NULL for no marker, or the fixed prefix every target value starts with.");
	if (spec_.detect != DetectMode::Null && !spec_.marker)
		throw CodecError(ErrorKind::InvalidParameter,
		                 std::string("detect mode \"") + detect_mode_name(spec_.detect) + "\" needs a marker",
		                 "Without a fixed prefix there is no way to tell a target value from a legacy one.",
		                 "Give marker => the prefix every target-format value starts with.");
	probe_convergence();
}

bool Codec::has_function_steps() const
{
	for (const auto &step : steps_)
		if (step.kind == StepKind::Function)
			return true;
	return false;
}

bool Codec::has_marker(std::string_view value) const
{
	return spec_.marker && boost::algorithm::starts_with(value, *spec_.marker);
}

// In 'absent' mode nothing forces the pipeline to produce the marker; a codec that turns legacy values
// into other legacy values would make a backfill loop forever. Probe a few typical values now; the
// runtime check in migrate() catches what the probes cannot (fn: steps, data-dependent pipelines).
void Codec::probe_convergence() const
{
	if (spec_.detect != DetectMode::Absent || has_function_steps())
		return;
	static const char *const probes[] = {"legacy", "0123456789abcdef", "ZGF0YQ==", "A", ""};
	for (const char *probe : probes) {
		std::string out;
		try {
			std::string a(probe), b;
			for (const auto &step : steps_) {
				apply_builtin_step(step, a, b, spec_.utf8);
				a.swap(b);
			}
			out = a;
		} catch (const CodecError &e) {
			if (e.kind == ErrorKind::InvalidData)
				continue;
			throw;
		}
		if (!has_marker(out))
			throw CodecError(ErrorKind::NotConverging, "codec output is still detected as legacy",
			                 "Converting \"" + std::string(probe) + "\" gives \"" + out +
			                     "\", which does not start with the marker \"" + *spec_.marker + "\".",
			                 "End the pipeline with add_prefix:" + *spec_.marker + " or similar.");
	}
}

std::string_view Codec::run_into_scratch(std::string_view value, Host &host) const
{
	std::string_view current = value;
	std::string *out = &scratch_a_;
	for (std::size_t i = 0; i < steps_.size(); ++i) {
		const Step &step = steps_[i];
		if (step.kind == StepKind::Function)
			*out = host.call_function(i, current);
		else
			apply_builtin_step(step, current, *out, spec_.utf8);
		current = *out;
		out = out == &scratch_a_ ? &scratch_b_ : &scratch_a_;
	}
	return current;
}

void Codec::release_large_scratch() const
{
	for (std::string *scratch : {&scratch_a_, &scratch_b_})
		if (scratch->capacity() > kScratchKeepBytes)
			std::string().swap(*scratch);
}

std::string Codec::run(std::string_view value, Host &host) const
{
	return std::string(run_into_scratch(value, host));
}

Verdict Codec::classify(const std::string_view *value, Host &host) const
{
	if (value == nullptr)
		return spec_.detect == DetectMode::Null ? Verdict::Legacy : Verdict::Null;
	if (spec_.detect == DetectMode::Null)
		return Verdict::Target;
	bool raw_marked = has_marker(*value);
	if (spec_.detect == DetectMode::Absent) {
		if (raw_marked)
			return Verdict::Target;
		return !spec_.has_shape || host.matches_shape(*value) ? Verdict::Legacy : Verdict::Other;
	}
	if (spec_.has_shape && !host.matches_shape(*value))
		return raw_marked ? Verdict::Target : Verdict::Other;
	bool converted_marked;
	try {
		converted_marked = has_marker(run_into_scratch(*value, host));
	} catch (const CodecError &e) {
		if (e.kind != ErrorKind::InvalidData)
			throw;
		converted_marked = false; // it does not have the shape of a transformed value
	}
	if (raw_marked)
		return converted_marked ? Verdict::Ambiguous : Verdict::Target;
	return converted_marked ? Verdict::Legacy : Verdict::Other;
}

std::optional<std::string_view> Codec::migrate(const std::string_view *value, Host &host) const
{
	if (value == nullptr) {
		if (spec_.detect != DetectMode::Null)
			return std::nullopt;
		return run_into_scratch(std::string_view(), host);
	}
	if (spec_.detect == DetectMode::Null || has_marker(*value))
		return std::nullopt; // target, or ambiguous: never guessed
	if (spec_.has_shape && !host.matches_shape(*value))
		return std::nullopt;
	if (spec_.detect == DetectMode::Absent) {
		std::string_view out = run_into_scratch(*value, host);
		if (!has_marker(out))
			throw CodecError(ErrorKind::NotConverging, "codec output is still detected as legacy",
			                 "The converted value does not start with the marker \"" + *spec_.marker + "\".",
			                 "Fix the codec's conversion so that it produces the marker.");
		return out;
	}
	std::string_view out;
	try {
		out = run_into_scratch(*value, host);
	} catch (const CodecError &e) {
		if (e.kind != ErrorKind::InvalidData)
			throw;
		return std::nullopt;
	}
	if (!has_marker(out))
		return std::nullopt;
	return out;
}

} // namespace mext
