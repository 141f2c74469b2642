// Space reuse while a backfill runs. Every converted row leaves its old version behind; a VACUUM of the
// table between batches frees that space, and the rows converted next land in it instead of at the end
// of the table. A round frees only the old versions of batches that committed before the oldest
// snapshot still open (the horizon): while a long transaction elsewhere holds it back, a round would
// free nothing, and the job says so and goes on. This class keeps the account: which committed batches
// still have old versions waiting, how many rows that is, and when a round is worth running. Pure
// arithmetic over transaction ids; the worker runs the VACUUM.
#pragma once

#include <cstdint>
#include <deque>

namespace mext
{

// PostgreSQL's 32-bit transaction ids wrap around: a precedes b when b is less than 2^31 ahead of it.
bool xid_precedes(std::uint32_t a, std::uint32_t b);

// Rows converted between two rounds, for a table of `table_rows` rows: `every` of them (a share, 0..1),
// but never fewer than `minimum`, so that a small table is not vacuumed after every batch.
long rows_per_round(double table_rows, double every, long minimum);

enum class RoundVerdict {
	wait,      // not enough converted since the last look
	run,       // a VACUUM now frees the old versions of at least half a round's rows
	held_back, // rows are waiting, but the horizon keeps (most of) their old versions visible
};

class SpaceReuse
{
  public:
	// At most `max_batches` committed batches are remembered; beyond that neighbours merge, each merged
	// entry keeping the later id, so that a row is never counted as freeable before it is.
	explicit SpaceReuse(long round_rows, std::size_t max_batches = 256);

	void set_round_rows(long round_rows) { round_rows_ = round_rows; }
	long round_rows() const { return round_rows_; }

	// A batch that committed as transaction `xid` and converted `rows` rows (each leaving an old version).
	void converted(std::uint32_t xid, long rows);

	// Enough rows converted since the last round (or the last look that found the horizon held back)?
	bool due() const { return since_look_ >= round_rows_; }
	// Rows whose old versions no round has freed yet.
	long pending() const { return pending_rows_; }
	// Of those, the rows of batches that committed before `horizon`, the oldest transaction id some
	// snapshot may still need: a VACUUM now frees their old versions.
	long freeable(std::uint32_t horizon) const;

	// What to do with the horizon at `horizon`. At the end of a table (`final_round`) any freeable row
	// is worth a round; otherwise at least half a round's rows.
	RoundVerdict verdict(std::uint32_t horizon, bool final_round) const;

	// A round ran with the horizon at `horizon`: the batches before it are freed and forgotten.
	void reclaimed(std::uint32_t horizon);
	// The horizon was held back: look again after another round's worth of rows.
	void held_back() { since_look_ = 0; }
	// The walk moved to another table (a partition), or a round at the end of one ran.
	void forget();

	std::size_t remembered_batches() const { return batches_.size(); }

  private:
	struct Batch {
		std::uint32_t xid;
		long rows;
	};
	void merge_neighbours();

	long round_rows_;
	std::size_t max_batches_;
	std::deque<Batch> batches_; // in commit order
	long pending_rows_ = 0;
	long since_look_ = 0;
};

} // namespace mext
