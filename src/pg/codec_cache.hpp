// Codecs as a backend sees them: parsed once, cached by name, dropped when migration_ext.codec changes.
// A trigger on that table sends a relcache invalidation for it; every backend's callback bumps a
// generation counter, and the next lookup reloads. Entries replaced in the middle of a transaction are
// kept alive until it ends, because a codec can be in use further up the stack (an fn: step calling a
// SQL function that itself calls migrate_value).
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/codec.hpp"
#include "pg/guard.hpp"

extern "C" {
#include "fmgr.h"
}

namespace mext::pg
{

struct CodecDefinition {
	std::string convert;
	std::optional<std::string> marker;
	std::string detect;
	std::optional<std::string> shape;
	std::optional<std::string> creator; // the role that created it (a stored codec)
};

class LoadedCodec : public mext::Host
{
  public:
	LoadedCodec(std::string name, const CodecDefinition &definition);
	~LoadedCodec() override;
	LoadedCodec(const LoadedCodec &) = delete;
	LoadedCodec &operator=(const LoadedCodec &) = delete;

	std::string call_function(std::size_t step_index, std::string_view input) override;
	bool matches_shape(std::string_view value) override;

	const std::string name;
	const mext::Codec codec;

	// The functions of fn: steps, their owners. Indexed by step; nullptr / InvalidOid for builtin steps.
	const std::vector<FmgrInfo *> &functions() const { return functions_; }
	Oid function_owner(std::size_t step_index) const { return owners_.at(step_index); }

  private:
	MemoryContext context_;             // owns shape_ and the FmgrInfos of fn: steps
	text *shape_ = nullptr;             // the regex, as PostgreSQL's regex cache wants it
	std::vector<FmgrInfo *> functions_; // indexed by step; nullptr for builtin steps
	std::vector<Oid> owners_;           // the owner of each fn: step's function
};

// The codec for this call site: a per-FmgrInfo pointer checked against the cache generation, so the
// hot path costs a length compare and a memcmp. Throws SqlError for an unknown codec.
LoadedCodec &codec_for_call(FunctionCallInfo fcinfo, const text *name);
// The same, remembered in *slot (allocated in slot_context) instead of the call's fn_extra: for a call
// site that keeps more than the codec there. slot == nullptr: nothing remembered.
LoadedCodec &codec_for_site(void **slot, MemoryContext slot_context, const text *name);

// A codec given by its definition (a contract's CHECK carries it, so that it holds without the codec
// table's rows, during a restore for instance), cached per backend like the named ones.
LoadedCodec &codec_for_definition(FunctionCallInfo fcinfo, const CodecDefinition &definition);

// Validates a definition as create_codec receives it from `actor`, and that actor may use every
// function its fn: steps name: throws CodecError / SqlError / PgError.
void validate_codec_definition(const CodecDefinition &definition, Oid actor);

void register_codec_cache_callbacks();

} // namespace mext::pg
