// The library's entry: PG_MODULE_MAGIC and _PG_init, which wires the per-backend caches and, when the
// library is preloaded, the launcher that must exist from server start and the read-repair counters'
// shared memory.
#include "pg/backfill.hpp"
#include "pg/codec_cache.hpp"
#include "pg/repair_counts.hpp"
#include "pg/repair_target.hpp"
#include "pg/settings.hpp"

extern "C" {
#include "miscadmin.h"

PG_MODULE_MAGIC;

PGDLLEXPORT void _PG_init(void);
}

void _PG_init(void)
{
	mext::pg::register_codec_cache_callbacks();
	mext::pg::register_settings();
	mext::pg::register_repair_target_callbacks();
	mext::pg::register_repair_counts(process_shared_preload_libraries_in_progress);
	if (process_shared_preload_libraries_in_progress)
		mext::pg::register_launcher();
}
