// A worker's claim on its job, and on one of the cluster's migration_ext.max_jobs worker slots: session
// locks in a part of the user lock space no SQL function reaches (pg_advisory_lock() tags its keys 1 or
// 2 in the tag's last field; these carry their own values there, and the slots no database at all), held
// for the worker's life and released by its exit, a crash included; a transaction's abort leaves them.
// A public advisory-lock key could be taken first by any role and block every job.
#include "pg/settings.hpp"

#include "pg/postgres_c.hpp"

extern "C" {
#include "access/xlog.h"
#include "miscadmin.h"
#include "storage/lock.h"
#include "utils/builtins.h"

PG_FUNCTION_INFO_V1(mext_claim_job);
PG_FUNCTION_INFO_V1(mext_job_home);
}

namespace
{

constexpr uint16 kJobKeySpace = 0x6d65;
constexpr uint16 kSlotKeySpace = 0x6d66;

bool take_session_lock(const LOCKTAG &tag)
{
	return LockAcquire(&tag, ExclusiveLock, true, true) != LOCKACQUIRE_NOT_AVAIL;
}

void release_session_lock(const LOCKTAG &tag)
{
	LockRelease(&tag, ExclusiveLock, true);
}

} // namespace

// claim_job(job): 'claimed' (this process now owns the job and a worker slot), 'taken' (another worker
// has the job) or 'full' (every slot is in use). Called by the worker itself, once.
Datum mext_claim_job(PG_FUNCTION_ARGS)
{
	if (!superuser())
		ereport(ERROR, (errcode(ERRCODE_INSUFFICIENT_PRIVILEGE), errmsg("permission denied for function claim_job"),
		                errdetail("Only a backfill worker claims its job.")));
	int64 job = PG_GETARG_INT64(0);
	LOCKTAG job_tag;
	SET_LOCKTAG_ADVISORY(job_tag, MyDatabaseId, static_cast<uint32>(static_cast<uint64>(job) >> 32),
	                     static_cast<uint32>(job), kJobKeySpace);
	if (!take_session_lock(job_tag))
		PG_RETURN_TEXT_P(cstring_to_text("taken"));
	for (int slot = 1; slot <= mext::pg::max_jobs; ++slot) {
		LOCKTAG slot_tag;
		SET_LOCKTAG_ADVISORY(slot_tag, InvalidOid, static_cast<uint32>(slot), 0, kSlotKeySpace);
		if (take_session_lock(slot_tag))
			PG_RETURN_TEXT_P(cstring_to_text("claimed"));
	}
	release_session_lock(job_tag);
	PG_RETURN_TEXT_P(cstring_to_text("full"));
}

// job_home(): this database of this cluster, as '<system identifier>/<database OID>'. A job records it
// when it starts; a job whose home differs was restored from a backup (or copied) into another database,
// and never runs there on its own. A promoted streaming standby keeps both, so failover resumes jobs.
Datum mext_job_home(PG_FUNCTION_ARGS)
{
	char home[64];
	snprintf(home, sizeof home, UINT64_FORMAT "/%u", GetSystemIdentifier(), MyDatabaseId);
	PG_RETURN_TEXT_P(cstring_to_text(home));
}
