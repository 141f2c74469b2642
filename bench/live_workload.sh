#!/usr/bin/env bash
# Live-workload benchmark: what a backfill at DEFAULT settings costs a fixed-rate application
# (bench/fixtures/live_txn.sql through pgbench), and how much of its unthrottled speed it keeps.
#
# Targets: the workload's p99 latency while the default backfill runs is <= 1.5x its p99 alone,
# and the default backfill still converts at >= 25 % of the unthrottled rate.
#
# BENCH_REPEAT (3) rounds of three phases, interleaved, each phase on a freshly built and CHECKPOINTed
# table; medians over the rounds. One round is not enough on a shared box: a neighbour's burst in one
# 30 s window moves a p99 by 10x.
#   A  the workload alone for BENCH_SECONDS, its first 3 s (start-up) not counted -> p50/p99
#   B  the workload, and start_backfill('accounts','token','v2') in the middle of it; only transactions
#      that completed while the job ran count                             -> p99 under backfill, default rate
#   C  start_backfill(.., throttle => false, batch_size => BENCH_BATCH), no workload -> unthrottled rate
#   D  the workload beside a PL/pgSQL busy loop holding one core for BENCH_SECONDS -> p99 beside pure CPU
#      work: the floor any in-database work sets on this host before it writes a byte or takes a lock
#   E  the workload, and the same default backfill of an UNLOGGED copy of the table, which the workload
#      never touches -> p99 beside the job's CPU and memory work alone: no WAL, no row the workload
#      locks, no page it shares (attribution: B - E is what the WAL and the shared table cost)
# Latency is pgbench's per-transaction log: with -R it counts from the scheduled start, so a stall shows
# up in full even when pgbench falls behind (no coordinated omission).
#
# Usage: bench/live_workload.sh   (BENCH_ROWS=1000000, BENCH_SECONDS=30, BENCH_RATE=1000, BENCH_BATCH=20000,
#                                  BENCH_REPEAT=3)
# BENCH_JOB_ARGS (empty) adds arguments to phase B's start_backfill, e.g. ", max_rows_per_second => 50000",
# to measure a point of the latency/rate trade-off; its results are then named live_workload_<BENCH_TAG>.
# Writes bench/results/live_workload.md and live_workload.png. Exits 0 whether the goals are met or
# not; non-zero only when something breaks, including a wrong result.
set -euo pipefail
shopt -s inherit_errexit  # a failing psql inside $(..) stops the script, not just the substitution
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

ROWS=${BENCH_ROWS:-1000000}
IDLE_SECONDS=${BENCH_SECONDS:-30}
RATE=${BENCH_RATE:-1000}
BATCH=${BENCH_BATCH:-20000}               # the unthrottled reference, as backfill.sh's headline
REPEAT=${BENCH_REPEAT:-3}
MAX_SECONDS=${BENCH_MAX_SECONDS:-1800}    # a backfill still running then counts as not finishing
MARGIN=3                                  # workload seconds before the backfill starts and after it ends
JOB_ARGS=${BENCH_JOB_ARGS:-}
NAME=live_workload${BENCH_TAG:+_$BENCH_TAG}
[[ -z $JOB_ARGS || -n ${BENCH_TAG:-} ]] || bench_die "BENCH_JOB_ARGS needs a BENCH_TAG, so the default run's results stay as they are"
[[ ${BENCH_TAG:-} =~ ^[a-z0-9_]*$ ]] || bench_die "BENCH_TAG: lower-case letters, digits and _ only"
for n in "$ROWS" "$IDLE_SECONDS" "$RATE" "$BATCH" "$REPEAT" "$MAX_SECONDS"; do
    [[ $n =~ ^[1-9][0-9]*$ ]] || bench_die "BENCH_ROWS, _SECONDS, _RATE, _BATCH, _REPEAT and _MAX_SECONDS must be positive integers"
done
command -v gnuplot >/dev/null || bench_die "gnuplot not found (apt-get install gnuplot-nox)"

# shellcheck disable=SC2119  # no extra server settings here
bench_start
WORK=$BENCH_CLUSTER/bench  # removed with the cluster
mkdir -p "$WORK"
bench_extension
echo "bench: cluster in $PGHOST, $ROWS rows, workload $RATE tps" >&2

# shellcheck source=live_lib.sh
source "$BENCH_DIR/live_lib.sh"

# round <r>: phases A, D, B, E and C; appends one line to $ROUNDS:
#   r A_n A_p50 A_p99 A_mean B_n B_p50 B_p99 B_mean B_t0 B_t1 B_rate B_batches B_conflicts C_s C_rate C_batches
#   D_n D_p50 D_p99 D_mean E_n E_p50 E_p99 E_mean E_rate
# and leaves B's latencies and status samples in $WORK/busy<r>.lat, busy<r>.status.
round() {
    local r=$1 a b d e t0 t1 rate batches conflicts
    # A: the workload alone.
    bench_rebuild "$ROWS"
    t0=$(date +%s.%N)
    start_workload "idle$r" "$IDLE_SECONDS"
    wait "$WL_PID" || bench_die "pgbench failed: $(cat "$WORK/idle$r.out")"
    bench_untrack "$WL_PID"
    a=$(latencies "idle$r" | after_start_up "$t0" | summary)
    echo "bench: round $r, A, workload alone: <transactions> <p50> <p99> <mean ms> = $a" >&2

    # D: the workload beside one core of pure CPU work in a backend: no I/O, no WAL, no locks.
    bench_rebuild "$ROWS"
    t0=$(date +%s.%N)
    start_workload "cpu$r" "$IDLE_SECONDS"
    bench_psql -c "DO \$\$ DECLARE stop timestamptz := clock_timestamp() + interval '$((IDLE_SECONDS + 1)) s';
        BEGIN WHILE clock_timestamp() < stop LOOP END LOOP; END \$\$" &
    local busy_loop=$!
    bench_track "$busy_loop"
    wait "$WL_PID" || bench_die "pgbench failed: $(cat "$WORK/cpu$r.out")"
    bench_untrack "$WL_PID"
    wait "$busy_loop" || bench_die "the busy loop failed"
    bench_untrack "$busy_loop"
    d=$(latencies "cpu$r" | after_start_up "$t0" | summary)
    echo "bench: round $r, D, workload beside one busy core: <transactions> <p50> <p99> <mean ms> = $d" >&2

    # B: the same workload, a default backfill in its middle.
    bench_rebuild "$ROWS"
    backfill_beside_workload "busy$r"
    t0=$JOB_T0 t1=$JOB_T1 rate=$JOB_RATE batches=$JOB_BATCHES conflicts=$JOB_CONFLICTS
    verify_backfill "$JOB_ARGS"
    latencies "busy$r" >"$WORK/busy$r.lat"
    b=$(awk -v a="$t0" -v b="$t1" '$1 >= a && $1 <= b' "$WORK/busy$r.lat" | summary)
    echo "bench: round $r, B, workload + default backfill: <transactions> <p50> <p99> <mean ms> = $b; backfill $rate rows/s" >&2

    # E: the workload on accounts, the same default backfill on an unlogged copy nobody else touches.
    bench_rebuild "$ROWS"
    bench_psql -c "DROP TABLE IF EXISTS accounts_copy" -c "CREATE UNLOGGED TABLE accounts_copy (LIKE accounts INCLUDING ALL)" \
        -c "INSERT INTO accounts_copy SELECT * FROM accounts" -c "VACUUM ANALYZE accounts_copy" -c CHECKPOINT >/dev/null
    backfill_beside_workload "copy$r" accounts_copy
    e="$(latencies "copy$r" | awk -v a="$JOB_T0" -v b="$JOB_T1" '$1 >= a && $1 <= b' | summary) $JOB_RATE"
    bench_verify "$ROWS" "backfill job $JOB of accounts_copy" accounts_copy
    bench_psql -c "DROP TABLE accounts_copy" >/dev/null
    echo "bench: round $r, E, workload + default backfill of an unlogged copy: <transactions> <p50> <p99> <mean ms> <rows/s> = $e" >&2

    # C: the unthrottled backfill, no workload.
    bench_rebuild "$ROWS"
    run_backfill ", throttle => false, batch_size => $BATCH" "$WORK/fast$r.status"
    verify_backfill ", throttle => false, batch_size => $BATCH"
    echo "bench: round $r, C, unthrottled backfill alone: $JOB_RATE rows/s" >&2
    echo "$r $a $b $t0 $t1 $rate $batches $conflicts $(awk -v a="$JOB_T0" -v b="$JOB_T1" 'BEGIN { printf "%.3f", b - a }') $JOB_RATE $JOB_BATCHES $d $e" >>"$ROUNDS"
}

ROUNDS=$WORK/rounds
: >"$ROUNDS"
open_operator_session
for ((r = 1; r <= REPEAT; r++)); do round "$r"; done
close_operator_session
# col <n>: the median of column n over the rounds.
col() { cut -d' ' -f"$1" "$ROUNDS" | median; }
idle_p99=$(col 4) busy_p99=$(col 8) busy_rate=$(col 12) fast_rate=$(col 16) cpu_p99=$(col 20) copy_p99=$(col 24)

# The plot shows the round whose p99 under backfill is the median one (the upper median if even).
read -r plot_round busy_t0 busy_t1 <<<"$(sort -k8,8g "$ROUNDS" | sed -n "$(((REPEAT + 2) / 2))p" | cut -d' ' -f1,10,11)"
cp "$WORK/busy$plot_round.lat" "$WORK/busy.lat"
cp "$WORK/busy$plot_round.status" "$WORK/busy.status"

# --- The plot: per-second p99 and mean latency of B, and the job's rate and batch size, on one clock
# (seconds since start_backfill).
awk -v t0="$busy_t0" '{ print int($1 - t0 + 1000) - 1000, $2 }' "$WORK/busy.lat" | sort -k1,1n -k2,2g |
    awk 'function flush() { if (n) { i = int(0.99 * n); if (i < 0.99 * n) i++; printf "%d\t%.3f\t%.3f\t%d\n", s, v[i], sum / n, n } }
         $1 != s && NR > 1 { flush(); n = 0; sum = 0 }
         { s = $1; v[++n] = $2; sum += $2 } END { flush() }' >"$WORK/busy.persec"
# Rate from rows_scanned over the last two samples (~1 s: a batch commits ~200 ms of work at once, so
# one 0.5 s step is lumpy; the last sample ends at finished_at, not when the poll saw it), beside the
# job's own smoothed rows_per_second.
awk -F'\t' -v t0="$busy_t0" -v t1="$busy_t1" 'BEGIN { OFS = "\t"; t[0] = t[-1] = t0; s[0] = s[-1] = 0 } {
        t[NR] = ($2 == "done" && $1 > t1) ? t1 : $1; s[NR] = $5
        rate = t[NR] > t[NR - 2] ? (s[NR] - s[NR - 2]) / (t[NR] - t[NR - 2]) : 0
        print t[NR] - t0, $3, $4, rate, ($2 == "throttled" ? 1 : 0) }' \
    "$WORK/busy.status" >"$WORK/busy.plot"
mkdir -p "$BENCH_RESULTS"
png=$BENCH_RESULTS/$NAME.png
duration=$(awk -v a="$busy_t0" -v b="$busy_t1" 'BEGIN { printf "%.2f", b - a }')
gnuplot <<GNUPLOT
set terminal pngcairo size 1200,800 font ",10" noenhanced
set output "$png"
set datafile separator "\t"
set multiplot layout 2,1 title "live_txn.sql at $RATE tps (-c 4 -j 2) while start_backfill('accounts','token','v2') converts $ROWS rows at default settings (round $plot_round of $REPEAT)"
set xrange [-$MARGIN - 1 : $duration + $MARGIN + 1]
set grid
set lmargin 10
set rmargin 12   # the same in both panels, so their time axes line up
set key top left opaque
set arrow 1 from 0, graph 0 to 0, graph 1 nohead dashtype 2
set arrow 2 from $duration, graph 0 to $duration, graph 1 nohead dashtype 2
set ylabel "workload latency (ms)"
set y2label "backfill rows/s"
set ytics nomirror
set y2tics
set yrange [0:*]
set y2range [0:*]
plot "$WORK/busy.persec" using (\$1 + 0.5):2 with histeps lw 2 title "p99 latency per second", \
     "$WORK/busy.persec" using (\$1 + 0.5):3 with histeps title "mean latency per second", \
     $idle_p99 with lines dashtype 3 lc rgb "black" title "p99 of the workload alone (median of rounds)", \
     "$WORK/busy.plot" using 1:4 axes x1y2 with fsteps lw 2 title "backfill rows/s (from rows_scanned, over ~1 s)", \
     "$WORK/busy.plot" using 1:2 axes x1y2 with lines dashtype 2 title "backfill rows_per_second (reported)"
set xlabel "seconds since start_backfill (dashed: job start and end)"
set ylabel "batch size (rows)"
unset y2label
unset y2tics
plot "$WORK/busy.plot" using 1:3 with steps lw 2 title "backfill batch size", \
     "$WORK/busy.plot" using 1:(\$5 > 0 ? \$3 : 1/0) with points pt 7 ps 0.8 title "throttled (sample)"
unset multiplot
GNUPLOT
# The samples behind the plot, kept beside it.
{
    printf 'epoch\tstate\trows_per_second\tbatch_size\trows_scanned\tthrottle_reason\n'
    cat "$WORK/busy.status"
} >"$BENCH_RESULTS/${NAME}_status.tsv"

# Why the jobs waited: reasons with their numbers masked, so one cause counts once.
reasons=$(cat "$WORK"/busy[0-9]*.status | cut -f6 | grep -vx -- '-' | sed -E 's/[0-9]+(\.[0-9]+)?/N/g' |
    sort | uniq -c | sort -rn | awk '{ n = $1; $1 = ""; printf "| %s | %d |\n", substr($0, 2), n }' || true)
samples=$(cat "$WORK"/busy[0-9]*.status | wc -l)

report=$(
    echo "| round | A: p50 alone (ms) | A: p99 alone (ms) | D: p99 beside a busy core (ms) | E: p99 beside the job on an unlogged copy (ms) | B: p50 under backfill (ms) | B: p99 under backfill (ms) | B: transactions in window | B: default backfill (s) | B: rows/s | B: batches | C: unthrottled (s) | C: rows/s |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    awk '{ printf "| %d | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %d | %.2f | %d | %d | %.2f | %d |\n", $1, $3, $4, $20, $24, $7, $8, $6, $11 - $10, $12, $13, $15, $16 }' "$ROUNDS"
    awk -v a="$(col 3)" -v b="$idle_p99" -v g="$cpu_p99" -v h="$copy_p99" -v c="$(col 7)" -v d="$busy_p99" -v e="$busy_rate" -v f="$fast_rate" 'BEGIN {
        printf "| **median** | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | | | %d | | | %d |\n", a, b, g, h, c, d, e, f }'
    echo
    # A quiet run of the workload alone has a p99 within a few times its median (1.2-1.6 ms vs 0.6 here).
    # When the host stalls the disk or the vCPUs, the p99 alone is tens to hundreds of ms, every phase
    # meets a stall or not by chance, and the ratio says nothing about the backfill.
    awk -v b="$busy_p99" -v a="$idle_p99" -v m="$(col 3)" -v r="$busy_rate" -v f="$fast_rate" 'BEGIN {
        x = sprintf("%.2f", b / a); y = sprintf("%.1f", 100 * r / f)
        verdict = (a > 10 * m) ? sprintf("INCONCLUSIVE: the workload alone has a p99 of %.0fx its median; the host stalled, measure again", a / m) : (x + 0 <= 1.5 ? "PASS" : "FAIL")
        printf "p99 under the default backfill / p99 alone = %.2f ms / %.2f ms = %sx (goal <= 1.5x): %s\n", b, a, x, verdict
        printf "default backfill rate under the workload = %s %% of the unthrottled rate (goal >= 25 %%): %s\n", y, (y + 0 >= 25 ? "PASS" : "FAIL") }'
    awk -v g="$cpu_p99" -v a="$idle_p99" 'BEGIN {
        printf "floor on this host: p99 beside one core of pure CPU work in a backend / p99 alone = %.2f ms / %.2f ms = %.2fx\n", g, a, g / a }'
    # The goal line compares medians over the rounds; a round's own B and A are minutes apart, so their
    # ratios show how much of that is the host's mood of the moment.
    echo "per round, p99 under the default backfill / p99 alone: $(awk '{ printf "%.2fx ", $8 / $4 }' "$ROUNDS")(median $(awk '{ printf "%.2f\n", $8 / $4 }' "$ROUNDS" | median | awk '{ printf "%.2f", $1 }')x); the unlogged copy's: $(awk '{ printf "%.2fx ", $24 / $4 }' "$ROUNDS")"
    awk -v h="$copy_p99" -v a="$idle_p99" 'BEGIN {
        printf "the job without its WAL or the workload'"'"'s rows: p99 beside the default backfill of an unlogged copy / p99 alone = %.2f ms / %.2f ms = %.2fx\n", h, a, h / a }'
)
echo "$report"
{
    echo "# $NAME: a ${JOB_ARGS:+non-}default backfill beside a fixed-rate application"
    [[ -z $JOB_ARGS ]] || echo "- phase B: start_backfill('accounts', 'token', 'v2'$JOB_ARGS)"
    echo
    bench_meta
    echo "- rows: $ROWS; workload: live_txn.sql via \`pgbench -n -R $RATE -c 4 -j 2 -l\`; latency counts from each transaction's scheduled start, so it includes schedule lag"
    echo "- $REPEAT rounds, interleaved; each round: A: $IDLE_SECONDS s of workload alone, its first ${MARGIN} s (pgbench's start-up) not counted. B: pgbench starts, ${MARGIN} s later start_backfill('accounts','token','v2'), pgbench stops ${MARGIN} s after the job is done; only transactions completed between the job's created_at and finished_at count. C: start_backfill(.., throttle => false, batch_size => $BATCH), no workload. D: $IDLE_SECONDS s of workload (first ${MARGIN} s not counted) beside a PL/pgSQL busy loop (\`WHILE clock_timestamp() < stop LOOP END LOOP\`) holding one of the host's cores: what pure CPU work in a backend costs the workload here, without I/O, WAL or locks. E: as B, but the job converts an UNLOGGED copy of the table (accounts_copy) that the workload never touches: the job's CPU and memory work without its WAL and without sharing a row or a page with the workload. Every phase on a freshly built, CHECKPOINTed table; every backfill verified (0 rows differ from 'v2:' || reverse(md5(id::text)), 0 conflicts expected and counted)."
    echo "- backfill rate = rows / (finished_at - created_at); every job started and polled every 0.5 s (backfill_status) by one operator session, connected before any workload ran, rather than waited for with wait_backfill(), whose snapshot would hold back the xmin horizon during the run"
    echo
    echo "$report"
    echo
    echo "![workload latency and backfill rate over time]($NAME.png)"
    echo
    echo "The plot is round $plot_round (median p99 under backfill); its status samples are in ${NAME}_status.tsv."
    echo "Throttle reasons over all rounds ($samples status samples, every 0.5 s; numbers masked as N):"
    echo
    if [[ -n $reasons ]]; then
        echo "| throttle_reason | samples |"
        echo "|---|---:|"
        echo "$reasons"
    else
        echo "none: no job ever reported a throttle reason."
    fi
} >"$BENCH_RESULTS/$NAME.md"
echo "bench: wrote $BENCH_RESULTS/$NAME.md and $png" >&2
