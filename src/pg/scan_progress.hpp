// Progress of a long scan an operator waits for in psql (advance_migration's verifying scan): the
// per-row function the scan calls (is_legacy) counts its rows, and every few seconds a NOTICE says how
// far it is, as wait_backfill does for a job. Off (one test of a flag) unless a scan turned it on, and
// only for the transaction that did.
#pragma once

namespace mext::pg
{

extern bool scan_progress_active;

void scan_progress_row();

inline void count_scanned_row()
{
	if (scan_progress_active)
		scan_progress_row();
}

} // namespace mext::pg
