// The migration_ext.* settings: defaults for the thresholds a job can also be given directly.
#pragma once

namespace mext::pg
{

extern int lock_timeout_ms;         // each batch runs with this lock_timeout
extern int resume_interval_seconds; // the launcher's period
extern bool compress_wal;           // the worker compresses its own full-page images

void register_settings();

} // namespace mext::pg
