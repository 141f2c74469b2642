#!/usr/bin/env bash
# Disk floor: what writing at a backfill's pace costs the live workload on this host when PostgreSQL has
# nothing to do with the writes. A default backfill writes ~40 MB/s of WAL here (pg_stat_wal over a
# job: 392 B per row at ~100,000 rows/s), besides its table pages. This benchmark runs the same workload
# as live_workload.sh (live_txn.sql, 1000 tps, 4 clients) alone and beside a plain file writer (perl)
# that writes BENCH_WRITE_MB MB/s, 1 MB at a time, into 16 MB files, each fsync'ed once full, on the same
# file system as the cluster: no WAL, no locks, no shared buffers, a few % of one CPU.
#   A  the workload alone                                    -> p99
#   N  beside the writer, a new file every 16 MB (old ones deleted: as new WAL segments and growing
#      table files are)                                       -> p99
#   S  beside the writer, rewriting the same 16 MB file       -> p99
#   F  beside the writer, 64 kB at a time with an fsync after each (the way commits flush WAL) -> p99
# BENCH_REPEAT (3) rounds, interleaved, BENCH_SECONDS (20) each phase; medians. The shape of the writes
# decides: a backfill's WAL leaves in small flushes (every commit, the WAL writer), like F.
# Writes bench/results/disk_floor_<BENCH_WRITE_MB>mbps.md.
set -euo pipefail
shopt -s inherit_errexit
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

ROWS=1000000
SECONDS_PER_PHASE=${BENCH_SECONDS:-20}
REPEAT=${BENCH_REPEAT:-3}
WRITE_MB=${BENCH_WRITE_MB:-40}
for n in "$SECONDS_PER_PHASE" "$REPEAT" "$WRITE_MB"; do
    [[ $n =~ ^[1-9][0-9]*$ ]] || bench_die "BENCH_SECONDS, BENCH_REPEAT and BENCH_WRITE_MB must be positive integers"
done

# shellcheck disable=SC2119  # no extra server settings here
bench_start
WORK=$BENCH_CLUSTER/bench  # removed with the cluster, the writer's files too
mkdir -p "$WORK/files"
bench_extension
bench_rebuild "$ROWS"
cp "$BENCH_FIXTURES/live_txn.sql" "$WORK/live_txn.sql"

# writer <new|same|stream> <seconds>: WRITE_MB MB/s under $WORK/files: into 16 MB files, each fsync'ed
# when full (new, same), or 64 kB at a time with an fsync after each (stream).
writer() {
    perl -e '
        use strict; use Time::HiRes qw(time sleep); use IO::Handle;
        my ($mode, $seconds, $rate, $dir) = @ARGV;
        my $chunk = "\x01" x (1 << 20);
        my ($start, $written, $file) = (time, 0, 0);
        if ($mode eq "stream") {  # 64 kB writes, each fsynced: the way commits flush WAL
            $chunk = "\x01" x (64 << 10);
            open(my $fh, "+>", "$dir/stream") or die "$dir/stream: $!";
            binmode $fh; $fh->autoflush(1);
            while (time - $start < $seconds) {
                seek($fh, 0, 0) if $written % 256 == 0;  # a 16 MB file, rewritten
                print $fh $chunk or die "write: $!"; $fh->sync or die "fsync: $!"; $written++;
                my $ahead = $start + $written / ($rate * 16) - time;
                sleep($ahead) if $ahead > 0;
            }
            printf "%.1f\n", $written / 16 / (time - $start);
            exit 0;
        }
        while (time - $start < $seconds) {
            my $name = "$dir/seg" . ($mode eq "new" ? $file : 0);
            open(my $fh, "+>", $name) or die "$name: $!";
            binmode $fh;
            for (1 .. 16) {
                print $fh $chunk or die "write: $!"; $written++;
                my $ahead = $start + $written / $rate - time;
                sleep($ahead) if $ahead > 0;
            }
            $fh->flush; $fh->sync or die "fsync: $!"; close $fh;
            unlink "$dir/seg" . ($file - 8) if $mode eq "new" && $file >= 8;
            $file++;
        }
        printf "%.1f\n", $written / (time - $start);' "$1" "$2" "$WRITE_MB" "$WORK/files" >>"$WORK/rate.$1"
    rm -f "$WORK"/files/seg* "$WORK"/files/stream
}

# phase <name> [new|same]: the workload for SECONDS_PER_PHASE, beside the writer if named; prints its
# "<p50> <p99>" in ms.
phase() {
    local name=$1 mode=${2:-} pid
    "$PG_BINDIR/pgbench" -n -f "$WORK/live_txn.sql" -R 1000 -c 4 -j 2 -T "$SECONDS_PER_PHASE" -l \
        --log-prefix="$WORK/$name" "$BENCH_DB" >"$WORK/$name.out" 2>&1 &
    pid=$!
    bench_track "$pid"
    [[ -z $mode ]] || writer "$mode" "$SECONDS_PER_PHASE"
    wait "$pid" || bench_die "pgbench failed: $(cat "$WORK/$name.out")"
    bench_untrack "$pid"
    local data
    data=$(cat "$WORK/$name".[0-9]* | awk 'NF >= 6 && $3 ~ /^[0-9]+$/ { print $3 / 1000 }')
    echo "$(percentile 50 <<<"$data") $(percentile 99 <<<"$data")"
}

ROUNDS=$WORK/rounds
: >"$ROUNDS"
for ((r = 1; r <= REPEAT; r++)); do
    a=$(phase "alone$r")
    n=$(phase "new$r" new)
    s=$(phase "same$r" same)
    f=$(phase "stream$r" stream)
    echo "bench: round $r: p50/p99 alone $a, beside new files $n, beside one file $s, beside small flushes $f" >&2
    echo "$r $a $n $s $f" >>"$ROUNDS"
done
col() { cut -d' ' -f"$1" "$ROUNDS" | median; }
report=$(
    echo "| round | A: p50 alone (ms) | A: p99 alone (ms) | N: p99 beside 16 MB bursts, new files (ms) | S: p99 beside 16 MB bursts, one file (ms) | F: p99 beside 64 kB flushes (ms) |"
    echo "|---|---:|---:|---:|---:|---:|"
    awk '{ printf "| %d | %.2f | %.2f | %.2f | %.2f | %.2f |\n", $1, $2, $3, $5, $7, $9 }' "$ROUNDS"
    awk -v a="$(col 2)" -v b="$(col 3)" -v n="$(col 5)" -v s="$(col 7)" -v f="$(col 9)" 'BEGIN {
        printf "| **median** | %.2f | %.2f | %.2f | %.2f | %.2f |\n\n", a, b, n, s, f
        printf "p99 beside a plain writer of %s MB/s / p99 alone: 16 MB bursts into new files %.2fx, into one file %.2fx; 64 kB flushes %.2fx", '"$WRITE_MB"', n / b, s / b, f / b
        printf " (the writer reached %s / %s / %s MB/s, medians)", "'"$(median <"$WORK/rate.new")"'", "'"$(median <"$WORK/rate.same")"'", "'"$(median <"$WORK/rate.stream")"'"
        if (b > 10 * a) printf " (INCONCLUSIVE: the workload alone has a p99 of %.0fx its median; the host stalled)", b / a
        printf "\n" }'
)
echo "$report"
{
    echo "# disk_floor: the live workload beside a plain file writer of $WRITE_MB MB/s (no PostgreSQL work)"
    echo
    bench_meta
    echo "- workload: live_txn.sql via \`pgbench -n -R 1000 -c 4 -j 2 -l\` on $ROWS rows, $SECONDS_PER_PHASE s a phase, $REPEAT rounds interleaved (A, N, S)"
    echo "- writer: perl, paced to $WRITE_MB MB/s, on the cluster's file system. N: 1 MB writes into 16 MB files, an fsync per file, a new file each time (the ninth oldest deleted); S: the same, rewriting one file; F: 64 kB writes with an fsync after each, rewriting one 16 MB file"
    echo
    echo "$report"
} >"$BENCH_RESULTS/disk_floor_${WRITE_MB}mbps.md"
echo "bench: wrote $BENCH_RESULTS/disk_floor_${WRITE_MB}mbps.md" >&2
