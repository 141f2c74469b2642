// A codec: how a legacy value is told apart from a target-format one by looking at the value itself,
// and how it converts. Pure C++: the PostgreSQL layer supplies what only the server can do (calling a
// SQL function for an `fn:` step, matching a `shape` with PostgreSQL's regex engine) through Host.
#pragma once

#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace mext
{

enum class ErrorKind {
	InvalidParameter, // the codec definition is wrong (unknown step, bad argument, bad detect mode)
	InvalidData,      // a value cannot be converted (not hex, bad base64, missing prefix, invalid UTF-8)
	NotConverging,    // a converted value would still be detected as legacy
};

class CodecError : public std::runtime_error
{
  public:
	CodecError(ErrorKind kind, const std::string &message, std::string detail = {}, std::string hint = {});
	ErrorKind kind;
	std::string detail;
	std::string hint;
};

enum class StepKind {
	Reverse,
	StripPrefix,
	AddPrefix,
	HexEncode,
	HexDecode,
	Base64Encode,
	Base64Decode,
	Lower,
	Upper,
	Const,
	Function,
};

struct Step {
	StepKind kind;
	std::string arg; // prefix, constant, or schema-qualified function name
};

// Parses 'strip_prefix:v1:|base64_decode|add_prefix:v2:'. Arguments run to the next '|'; a literal '|'
// inside an argument is written '\|' and a literal backslash '\\'. Throws CodecError(InvalidParameter).
std::vector<Step> parse_pipeline(std::string_view spec);

enum class DetectMode {
	Converted, // legacy iff its conversion starts with the marker (and the value itself does not)
	Absent,    // legacy iff it does not start with the marker
	Null,      // NULL is the legacy state; any non-NULL value is target
};

DetectMode parse_detect_mode(std::string_view text);
const char *detect_mode_name(DetectMode mode);

enum class Verdict { Null, Target, Legacy, Ambiguous, Other };
const char *verdict_name(Verdict verdict);

// What only the database can do. Implementations may throw any C++ exception; it propagates.
class Host
{
  public:
	virtual ~Host() = default;
	// Calls the SQL function named by an `fn:` step (index = position of the step in the pipeline).
	virtual std::string call_function(std::size_t step_index, std::string_view input) = 0;
	// Does the value match the codec's shape regex? Only called when the codec has a shape.
	virtual bool matches_shape(std::string_view value) = 0;
};

struct CodecSpec {
	std::string convert;
	std::optional<std::string> marker;
	DetectMode detect = DetectMode::Converted;
	bool has_shape = false;
	bool utf8 = true; // server encoding is UTF-8: reverse and validation work on characters
};

class Codec
{
  public:
	// Parses and validates; throws CodecError(InvalidParameter) for a bad definition, and
	// CodecError(NotConverging) when a probe value provably never converges.
	explicit Codec(const CodecSpec &spec);

	// Full classification, ambiguity included (audit_column, is_legacy). value == nullptr means NULL.
	Verdict classify(const std::string_view *value, Host &host) const;

	// The smart read: nullopt means "pass the input through untouched"; otherwise the converted value,
	// valid until the next call on this codec. value == nullptr means NULL.
	std::optional<std::string_view> migrate(const std::string_view *value, Host &host) const;

	// Runs the pipeline unconditionally (used by tests and by the convergence probe).
	std::string run(std::string_view value, Host &host) const;

	// The scratch buffers keep their capacity from call to call (a hot path allocates nothing), except
	// a large value's: once the caller has copied the result out, buffers past kScratchKeepBytes are
	// freed, so one huge value does not stay resident in the backend for its life.
	void release_large_scratch() const;

	const std::vector<Step> &steps() const { return steps_; }
	const CodecSpec &spec() const { return spec_; }
	bool has_function_steps() const;

  private:
	// Runs the pipeline into scratch_ and returns a view of it.
	std::string_view run_into_scratch(std::string_view value, Host &host) const;
	bool has_marker(std::string_view value) const;
	void probe_convergence() const;

	CodecSpec spec_;
	std::vector<Step> steps_;
	mutable std::string scratch_a_;
	mutable std::string scratch_b_;
};

// The largest value a step may produce: PostgreSQL's text limit (1 GB less its 4-byte header). A step
// that would grow a value past it fails with InvalidData before it allocates: a pipeline of repeated
// encodings grows a value exponentially. The fuzzer builds with a small limit (-DMEXT_MAX_VALUE_BYTES).
#ifndef MEXT_MAX_VALUE_BYTES
#define MEXT_MAX_VALUE_BYTES (0x3FFFFFFF - 4)
#endif
inline constexpr std::size_t kMaxValueBytes = MEXT_MAX_VALUE_BYTES;

inline constexpr std::size_t kScratchKeepBytes = 1 << 20;

// Single conversion step on a value (builtin steps only; Function steps need a Host).
void apply_builtin_step(const Step &step, std::string_view in, std::string &out, bool utf8);

// UTF-8 helpers shared with the PostgreSQL layer's tests.
bool is_valid_utf8(std::string_view text);

} // namespace mext
