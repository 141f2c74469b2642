#include "core/phase.hpp"

#include <array>
#include <stdexcept>

namespace mext
{

namespace
{

constexpr std::array<const char *, 6> kNames{"planned",     "tolerant",  "producing",
                                             "backfilling", "converted", "contracted"};

const char *const kDoorDetail = "New-format values have been written since the migration passed its point of no "
                                "return (tolerant -> producing): the column now holds mixed formats, and the "
                                "readers must stay tolerant to read them.";
const char *const kDoorHint = "There is no automatic way back from here; the only full rollback is a restore from "
                              "a backup taken before the migration produced new data.";

Transition allow(Phase to, bool through_door = false)
{
	Transition t;
	t.allowed = true;
	t.to = to;
	t.through_door = through_door;
	return t;
}

Transition refuse(std::string why, std::string detail = {}, std::string hint = {})
{
	Transition t;
	t.refusal = std::move(why);
	t.detail = std::move(detail);
	t.hint = std::move(hint);
	return t;
}

} // namespace

Phase parse_phase(std::string_view name)
{
	for (std::size_t i = 0; i < kNames.size(); ++i)
		if (name == kNames[i])
			return static_cast<Phase>(i);
	throw std::invalid_argument("unknown migration phase \"" + std::string(name) + "\"");
}

const char *phase_name(Phase phase)
{
	return kNames.at(static_cast<std::size_t>(phase));
}

Transition advance_from(Phase from)
{
	switch (from) {
	case Phase::Planned:
		return allow(Phase::Tolerant);
	case Phase::Tolerant:
		return allow(Phase::Producing, true);
	case Phase::Producing:
		return refuse("the next step is the backfill",
		              "Writers now produce the new format; the cold rows still "
		              "hold the old one.",
		              "Start it with start_backfill('<migration>'); it moves the migration to backfilling.");
	case Phase::Backfilling:
		return allow(Phase::Converted);
	case Phase::Converted:
		return allow(Phase::Contracted);
	case Phase::Contracted:
		return refuse("the migration is complete", "Its column is contracted: a validated constraint refuses the "
		                                           "legacy format.");
	}
	return refuse("unknown phase");
}

Transition retreat_from(Phase from)
{
	switch (from) {
	case Phase::Planned:
		return refuse("nothing to retreat from", "The migration is planned; no swap has been applied.");
	case Phase::Tolerant:
		return allow(Phase::Planned);
	case Phase::Producing:
	case Phase::Backfilling:
	case Phase::Converted:
		return refuse("cannot retreat past the point of no return", kDoorDetail, kDoorHint);
	case Phase::Contracted:
		return allow(Phase::Converted);
	}
	return refuse("unknown phase");
}

Transition door_check(const DoorState &state)
{
	if (state.readers_applied < state.reader_swaps)
		return refuse("the readers are not all tolerant yet",
		              std::to_string(state.readers_applied) + " of " + std::to_string(state.reader_swaps) +
		                  " reader swaps are applied and current.",
		              "A reader swap was reverted or replaced since; retreat_migration() and advance again.");
	if (!state.settled)
		return refuse("the reader swaps have not settled", "Still waiting for: " + state.waiting_for + ".",
		              "Wait until migration_status shows settled, then advance again.");
	if (!state.confirmed) {
		std::string literal = "'";
		for (char c : state.migration_name)
			literal += c == '\'' ? std::string("''") : std::string(1, c);
		literal += "'";
		return refuse("the point of no return needs a typed sign-off",
		              "After this step writers produce the new format and there is no way back but a restore.",
		              "Call advance_migration(" + literal + ", confirm => " + literal + ").");
	}
	return allow(Phase::Producing, true);
}

} // namespace mext
