#include "pg/guard.hpp"

namespace mext::pg
{

int sqlstate_for(const mext::CodecError &error)
{
	switch (error.kind) {
	case mext::ErrorKind::InvalidParameter:
		return ERRCODE_INVALID_PARAMETER_VALUE;
	case mext::ErrorKind::InvalidData:
		return ERRCODE_INVALID_TEXT_REPRESENTATION;
	case mext::ErrorKind::NotConverging:
		return ERRCODE_INVALID_PARAMETER_VALUE;
	}
	return ERRCODE_INTERNAL_ERROR;
}

void set_pending(PendingError &pending, int sqlstate, const char *message, const std::string &detail,
                 const std::string &hint)
{
	pending.sqlstate = sqlstate;
	pending.message = pstrdup(message);
	pending.detail = detail.empty() ? nullptr : pstrdup(detail.c_str());
	pending.hint = hint.empty() ? nullptr : pstrdup(hint.c_str());
}

void raise_pending(const PendingError &pending)
{
	if (pending.rethrow)
		ReThrowError(pending.rethrow);
	ereport(ERROR, (errcode(pending.sqlstate), errmsg_internal("%s", pending.message),
	                pending.detail ? errdetail_internal("%s", pending.detail) : 0,
	                pending.hint ? errhint("%s", pending.hint) : 0));
	pg_unreachable();
}

} // namespace mext::pg
