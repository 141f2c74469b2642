// Running code as the role that owns it, inside a security-restricted operation, the way PostgreSQL's
// own maintenance commands (VACUUM, CREATE INDEX, REFRESH MATERIALIZED VIEW) do since CVE-2022-1552:
// whoever asked for the work, a table's triggers, index expressions and defaults, or a function's body,
// run with their owner's rights, never with more.
#pragma once

#include "pg/postgres_c.hpp"

namespace mext::pg
{

// The user, security context and GUC nesting level to return to.
struct RoleSwitch {
	Oid saved_user;
	int saved_context;
	int guc_level;
};

// Becomes `role` in a security-restricted operation with search_path set to `search_path`. Plain
// PostgreSQL code (may raise); an error before end_as_role() is cleaned up by the transaction's (or
// subtransaction's) abort, which restores the user and the settings.
void begin_as_role(Oid role, const char *search_path, RoleSwitch *saved);
void end_as_role(const RoleSwitch &saved);

} // namespace mext::pg
