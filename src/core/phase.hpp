// The migration protocol's phases and the rules between them, including the one-way door.
//   planned -> tolerant -> producing -> backfilling -> converted -> contracted
// Every step before `producing` is a reversible swap; `tolerant -> producing` is the one point of no
// return (new-format data starts landing), and needs applied, settled readers and a typed sign-off.
#pragma once

#include <string>
#include <string_view>

namespace mext
{

enum class Phase { Planned, Tolerant, Producing, Backfilling, Converted, Contracted };

Phase parse_phase(std::string_view name); // throws std::invalid_argument
const char *phase_name(Phase phase);

struct Transition {
	bool allowed = false;
	Phase to = Phase::Planned;
	bool through_door = false; // the step after which no retreat is possible
	std::string refusal;       // why not, when !allowed
	std::string detail;
	std::string hint;
};

Transition advance_from(Phase from);
Transition retreat_from(Phase from);

// What the door needs, as observed by the database.
struct DoorState {
	int reader_swaps = 0;
	int readers_applied = 0;
	bool settled = false;
	std::string waiting_for; // the old transactions and lagging standbys, when not settled
	bool confirmed = false;  // confirm => equals the migration's name
	std::string migration_name;
};

// Empty refusal when the door may open.
Transition door_check(const DoorState &state);

} // namespace mext
