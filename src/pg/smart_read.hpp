// The smart read's two steps, shared by migrate_value() and repair_value(): does a value carry the
// codec's marker (a target value passes through), and its conversion.
#pragma once

#include <string>

#include "pg/codec_cache.hpp"

namespace mext::pg
{

// The marker prefix of a text value, read without detoasting the whole value.
bool starts_with_marker(Datum value, const std::string &marker);

// The conversion of a text form (value == nullptr: NULL), or nullptr when the value passes through
// untouched. Call it from a frame that owns nothing: it may raise.
text *converted_text(LoadedCodec *codec, const text *value);

} // namespace mext::pg
