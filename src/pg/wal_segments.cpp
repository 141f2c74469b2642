#include "pg/wal_segments.hpp"

#include <fcntl.h>
#include <unistd.h>

#include "pg/postgres_c.hpp"

extern "C" {
#include "access/xlog.h"
#include "access/xlog_internal.h"
#include "utils/guc.h"
}

namespace mext::pg
{

namespace
{

constexpr std::uint64_t kMaxHeadroomBytes = 256ull << 20;

TimeLineID insert_timeline()
{
	return GetWALInsertionTimeLine();
}

// XLogFileInit() opens a segment, creating it first when it does not exist: under a temporary name,
// fsynced, then renamed into place under ControlFileLock, never over a segment somebody else installed
// meanwhile (the checkpointer creates and recycles segments ahead the same way). It returns an open
// descriptor.
//
// With wal_init_zero on, PostgreSQL would write the whole segment's zeros itself; measured beside the
// benchmark's workload, that 16 MB write and its fsync still delayed every commit by 14-19 ms, now
// through the disk rather than WALWriteLock. So the worker creates the file sparse (wal_init_zero off
// for this transaction only) and reserves its blocks with posix_fallocate(), which writes no data. The
// commits then landed in the new segment with no delay beyond a random moment's. Space is reserved as a
// zero-fill would reserve it; on a full disk the reservation fails here, the worker reports it and stops
// creating segments, and the server meets the full disk when it writes into that segment, as it would
// have when creating it. Where the DBA turned wal_init_zero off (a copy-on-write file system), the file
// stays sparse as they chose.
//
// create_segment: one segment; with `reserve` (wal_init_zero then already off for the transaction), sparse
// and with its blocks reserved.
void create_segment(XLogSegNo segment, TimeLineID timeline, bool reserve)
{
	int fd = XLogFileInit(segment, timeline);
	int err = 0;
#ifdef HAVE_POSIX_FALLOCATE
	if (reserve)
		err = posix_fallocate(fd, 0, wal_segment_size);
#else
	(void)reserve;
#endif
	close(fd);
	if (err != 0)
		ereport(ERROR, (errcode_for_file_access(),
		                errmsg("could not reserve %d bytes for WAL segment %llu: %s", wal_segment_size,
		                       static_cast<unsigned long long>(segment), strerror(err))));
}

} // namespace

WalHeadroom wal_headroom()
{
	const auto segment_size = static_cast<std::uint64_t>(wal_segment_size);
	return WalHeadroom(segment_size, kMaxHeadroomBytes / segment_size);
}

SegmentRange wal_segments_wanted(WalHeadroom &headroom)
{
	if (RecoveryInProgress())
		return SegmentRange{1, 0};
	const XLogRecPtr insert = GetXLogInsertRecPtr();
	const std::uint64_t wanted = headroom.wanted(insert);
	return SegmentRange{headroom.first_missing(insert), wanted};
}

SegmentsCreated create_wal_segments(WalHeadroom &headroom, SegmentRange range)
{
	const TimeLineID timeline = insert_timeline();
	// Decided once, from the server's setting, before this transaction turns it off for every segment
	// it creates.
#ifdef HAVE_POSIX_FALLOCATE
	const bool reserve = wal_init_zero;
	if (reserve)
		(void)set_config_option("wal_init_zero", "off", PGC_SUSET, PGC_S_SESSION, GUC_ACTION_LOCAL, true, 0, false);
#else
	const bool reserve = false; // without posix_fallocate, PostgreSQL's own zero-fill reserves the space
#endif
	SegmentsCreated result;
	for (std::uint64_t segment = range.from; segment <= range.to; ++segment) {
		char path[MAXPGPATH];
		XLogFilePath(path, timeline, segment, wal_segment_size);
		if (access(path, F_OK) != 0) {
			create_segment(segment, timeline, reserve);
			++result.created;
			result.reserved += reserve ? 1 : 0;
		}
		headroom.ensured_upto(segment);
	}
	return result;
}

} // namespace mext::pg
