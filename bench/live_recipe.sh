#!/usr/bin/env bash
# The default backfill against the hand-written recipe at the same rate, beside a live application.
#
# The question: is the adaptive throttle gentler than the PL/pgSQL loop a DBA writes in five minutes,
# one that sleeps between batches of 1000 rows (bench/fixtures/plpgsql_paced.sql), when both convert at
# the same rate? And when the application surges, does the job give the machine back while the fixed
# recipe keeps taking its share?
#
# BENCH_REPEAT (5) rounds, interleaved; in each, every phase on a freshly built, CHECKPOINTed table:
#   A   the workload (live_txn.sql, BENCH_RATE tps) alone for BENCH_SECONDS, its first MARGIN s not counted
#   J   the workload, and MARGIN s into it start_backfill('accounts', 'token', 'v2') at default settings;
#       transactions completed while the job ran count                        -> p99, the job's rate
#   R   the workload, and MARGIN s into it CALL bf_paced(BENCH_RECIPE_BATCH, <J's rate of this round>);
#       transactions completed while the procedure ran count                  -> p99, its rate
#   C   start_backfill(.., throttle => false, batch_size => BENCH_BATCH), no workload -> unthrottled rate
#   S   the workload, and MARGIN s into it a surge: a second pgbench with the same clients (-c 4 -j 2)
#       and no rate limit for BENCH_SURGE_SECONDS      -> the application's tps in the surge, both pgbenches
#   SJ  as S on a table of BENCH_SURGE_ROWS, the default job started MARGIN s into the workload and the
#       surge 1 s after it; the job is cancelled when the surge ends          -> surge tps, job rows/s
#   SR  the same with the recipe paced to J's rate                           -> surge tps, recipe rows/s
# The surge phases need the job and the recipe to outlast the surge; a run where either finished first
# says so. Latency is pgbench's per-transaction log, counted from each scheduled start (-R), so a stall
# shows in full even when pgbench falls behind.
#
# Usage: bench/live_recipe.sh   (BENCH_ROWS=1000000, BENCH_SECONDS=20, BENCH_RATE=1000, BENCH_BATCH=20000,
#        BENCH_REPEAT=5, BENCH_RECIPE_BATCH=1000, BENCH_SURGE_SECONDS=10, BENCH_SURGE_ROWS=2 x BENCH_ROWS)
# A quick look: BENCH_ROWS=300000 BENCH_SECONDS=8 BENCH_SURGE_SECONDS=4 BENCH_REPEAT=1 (about 3 minutes).
# BENCH_JOB_ARGS (empty) adds arguments to every throttled start_backfill (J, SJ), e.g.
# ", live_duty_cycle => 0.3"; its results are then named live_recipe_<BENCH_TAG>.
# Writes bench/results/live_recipe.md. Exits 0 whatever the figures; non-zero when something breaks.
set -euo pipefail
shopt -s inherit_errexit
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

ROWS=${BENCH_ROWS:-1000000}
IDLE_SECONDS=${BENCH_SECONDS:-20}
RATE=${BENCH_RATE:-1000}
BATCH=${BENCH_BATCH:-20000}
REPEAT=${BENCH_REPEAT:-5}
RECIPE_BATCH=${BENCH_RECIPE_BATCH:-1000}
SURGE_SECONDS=${BENCH_SURGE_SECONDS:-10}
SURGE_ROWS=${BENCH_SURGE_ROWS:-$((2 * ROWS))}
MAX_SECONDS=${BENCH_MAX_SECONDS:-1800}
MARGIN=3
JOB_ARGS=${BENCH_JOB_ARGS:-}
NAME=live_recipe${BENCH_TAG:+_$BENCH_TAG}
[[ -z $JOB_ARGS || -n ${BENCH_TAG:-} ]] || bench_die "BENCH_JOB_ARGS needs a BENCH_TAG, so the default run's results stay as they are"
[[ ${BENCH_TAG:-} =~ ^[a-z0-9_]*$ ]] || bench_die "BENCH_TAG: lower-case letters, digits and _ only"
for n in "$ROWS" "$IDLE_SECONDS" "$RATE" "$BATCH" "$REPEAT" "$RECIPE_BATCH" "$SURGE_SECONDS" "$SURGE_ROWS" "$MAX_SECONDS"; do
    [[ $n =~ ^[1-9][0-9]*$ ]] || bench_die "BENCH_ROWS, _SECONDS, _RATE, _BATCH, _REPEAT, _RECIPE_BATCH, _SURGE_SECONDS, _SURGE_ROWS and _MAX_SECONDS must be positive integers"
done
((SURGE_ROWS >= ROWS)) || bench_die "BENCH_SURGE_ROWS must be at least BENCH_ROWS (the workload's id range)"

# shellcheck disable=SC2119  # no extra server settings here
bench_start
WORK=$BENCH_CLUSTER/bench  # removed with the cluster
mkdir -p "$WORK"
bench_extension
echo "bench: cluster in $PGHOST, $ROWS rows, workload $RATE tps" >&2
# shellcheck source=live_lib.sh
source "$BENCH_DIR/live_lib.sh"

# in_window <t0> <t1> < "<t> <ms>": the transactions completed between t0 and t1.
in_window() { awk -v a="$1" -v b="$2" '$1 >= a && $1 <= b'; }

# stop_workload: stops the pgbench started last and checks that it ran clean.
stop_workload() {
    kill -0 "$WL_PID" 2>/dev/null || bench_die "pgbench stopped early: $(cat "$WORK/$1.out")"
    kill "$WL_PID"
    wait "$WL_PID" || true
    bench_untrack "$WL_PID"
    ! grep -qiE 'aborted|error' "$WORK/$1.out" || bench_die "workload errors in phase $1: $(cat "$WORK/$1.out")"
}

# start_recipe <name> <rate>: a session of its own, connected before the workload starts (as the
# operator's), that waits MARGIN s and then runs the paced recipe to the end. Its output, in
# $WORK/<name>.recipe: its backend pid, the epoch before the CALL and the epoch after it.
start_recipe() {
    bench_psql -f "$BENCH_FIXTURES/plpgsql_paced.sql" >/dev/null
    {
        echo "SELECT pg_backend_pid();"
        echo "SELECT pg_sleep($MARGIN);"
        echo "SELECT extract(epoch FROM clock_timestamp());"
        echo "CALL bf_paced($RECIPE_BATCH, $2);"
        echo "SELECT extract(epoch FROM clock_timestamp());"
    } | PGOPTIONS="-c client_min_messages=warning" psql -X -q -At -v ON_ERROR_STOP=1 -d "$BENCH_DB" \
        >"$WORK/$1.recipe" 2>"$WORK/$1.recipe_err" &
    RECIPE_PID=$!
    bench_track "$RECIPE_PID"
}

# recipe_beside_workload <name> <rate>: phase R. Sets RECIPE_T0, RECIPE_T1 and RECIPE_RATE.
recipe_beside_workload() {
    start_recipe "$1" "$2"
    start_workload "$1" "$MAX_SECONDS"
    wait "$RECIPE_PID" || bench_die "the paced recipe failed: $(cat "$WORK/$1.recipe_err")"
    bench_untrack "$RECIPE_PID"
    sleep "$MARGIN"
    stop_workload "$1"
    read -r RECIPE_T0 RECIPE_T1 <<<"$(sed -n '3p;4p' "$WORK/$1.recipe" | tr '\n' ' ')"
    RECIPE_RATE=$(awk -v n="$ROWS" -v a="$RECIPE_T0" -v b="$RECIPE_T1" 'BEGIN { printf "%.0f", n / (b - a) }')
    bench_verify "$ROWS" "the paced recipe (bf_paced($RECIPE_BATCH, $2))"
}

# surge <name>: the surge, a second pgbench (log $WORK/<name>_surge.*) with the same clients and no
# rate limit, for SURGE_SECONDS. Sets SURGE_T0 and SURGE_T1, its start and end as epoch s.
surge() {
    SURGE_T0=$(date +%s.%N)
    "$PGBENCH" -n -f "$WORKLOAD" -c 4 -j 2 -T "$SURGE_SECONDS" -l --log-prefix="$WORK/$1_surge" "$BENCH_DB" \
        >"$WORK/$1_surge.out" 2>&1 || bench_die "the surge failed: $(cat "$WORK/$1_surge.out")"
    SURGE_T1=$(date +%s.%N)
    ! grep -qiE 'aborted|error' "$WORK/$1_surge.out" || bench_die "surge errors in phase $1: $(cat "$WORK/$1_surge.out")"
}

# surge_beside <name> job|recipe|none <recipe rate>: phase S, SJ or SR on a table of SURGE_ROWS. Prints
# "<surge tps> <rows/s the job or recipe converted during the surge> <1 if it outlasted the surge>".
surge_beside() {
    local name=$1 what=$2 tps before after t0 t1 job="" running=1 SURGE_T0 SURGE_T1
    bench_rebuild "$SURGE_ROWS"
    [[ $what != recipe ]] || start_recipe "$name" "$3"
    start_workload "$name" "$MAX_SECONDS"
    sleep "$MARGIN"
    case $what in
        job) job=$(operator "SELECT start_backfill('accounts', 'token', 'v2'$JOB_ARGS)") ;;
        recipe) ;;  # it starts itself MARGIN s after connecting
        none) ;;
    esac
    sleep 1
    rows_done() {
        case $what in
            job) operator "SELECT rows_scanned FROM backfill_status WHERE job = $job" ;;
            recipe) operator "SELECT coalesce((SELECT last_id FROM bf_ckpt WHERE name = 'accounts'), 0)" ;;
            none) echo 0 ;;
        esac
    }
    t0=$(date +%s.%N)
    before=$(rows_done)
    surge "$name"
    after=$(rows_done)
    t1=$(date +%s.%N)
    case $what in
        job)
            [[ $(operator "SELECT state FROM backfill_status WHERE job = $job") != done ]] || running=0
            operator "SELECT cancel_backfill($job)" >/dev/null
            ;;
        recipe)
            if kill -0 "$RECIPE_PID" 2>/dev/null; then
                operator "SELECT pg_cancel_backend($(sed -n 1p "$WORK/$name.recipe"))" >/dev/null
            else
                running=0
            fi
            wait "$RECIPE_PID" || true  # cancelled
            bench_untrack "$RECIPE_PID"
            ;;
    esac
    stop_workload "$name"
    # The application's throughput in the surge: transactions of both pgbenches completed in it (the
    # rate-limited one falls behind its schedule and catches up as fast as it can, so it surges too),
    # counted once pgbench has flushed its log.
    tps=$({ latencies "$name"; latencies "${name}_surge"; } | in_window "$SURGE_T0" "$SURGE_T1" |
        awk -v a="$SURGE_T0" -v b="$SURGE_T1" 'END { printf "%.0f", NR / (b - a) }')
    echo "$tps $(awk -v a="$before" -v b="$after" -v s="$t0" -v e="$t1" 'BEGIN { printf "%.0f", (b - a) / (e - s) }') $running"
}

# round <r>: appends to $ROUNDS
#   r A_n A_p50 A_p99 A_mean J_n J_p50 J_p99 J_mean J_rate R_n R_p50 R_p99 R_mean R_rate
#   C_rate S_tps SJ_tps SJ_rows SJ_outlasted SR_tps SR_rows SR_outlasted
round() {
    local r=$1 a j jrate rr c s sj sr t0
    bench_rebuild "$ROWS"
    t0=$(date +%s.%N)
    start_workload "idle$r" "$IDLE_SECONDS"
    wait "$WL_PID" || bench_die "pgbench failed: $(cat "$WORK/idle$r.out")"
    bench_untrack "$WL_PID"
    a=$(latencies "idle$r" | after_start_up "$t0" | summary)
    echo "bench: round $r, A, workload alone: <transactions> <p50> <p99> <mean ms> = $a" >&2

    bench_rebuild "$ROWS"
    backfill_beside_workload "job$r"
    jrate=$JOB_RATE
    j="$(latencies "job$r" | in_window "$JOB_T0" "$JOB_T1" | summary) $jrate"
    verify_backfill "$JOB_ARGS"
    echo "bench: round $r, J, workload + default job: <transactions> <p50> <p99> <mean ms> <rows/s> = $j" >&2

    bench_rebuild "$ROWS"
    recipe_beside_workload "recipe$r" "$jrate"
    rr="$(latencies "recipe$r" | in_window "$RECIPE_T0" "$RECIPE_T1" | summary) $RECIPE_RATE"
    echo "bench: round $r, R, workload + recipe paced to $jrate rows/s: <transactions> <p50> <p99> <mean ms> <rows/s> = $rr" >&2

    bench_rebuild "$ROWS"
    run_backfill ", throttle => false, batch_size => $BATCH" "$WORK/fast$r.status"
    verify_backfill ", throttle => false, batch_size => $BATCH"
    c=$JOB_RATE
    echo "bench: round $r, C, unthrottled job alone: $c rows/s" >&2

    s=$(surge_beside "surge$r" none | cut -d' ' -f1)
    echo "bench: round $r, S, surge alone: $s tps" >&2
    sj=$(surge_beside "surgejob$r" job)
    echo "bench: round $r, SJ, surge beside the default job: <tps> <job rows/s> <job outlasted it> = $sj" >&2
    sr=$(surge_beside "surgerecipe$r" recipe "$jrate")
    echo "bench: round $r, SR, surge beside the recipe: <tps> <recipe rows/s> <recipe outlasted it> = $sr" >&2
    echo "$r $a $j $rr $c $s $sj $sr" >>"$ROUNDS"
}

ROUNDS=$WORK/rounds
: >"$ROUNDS"
open_operator_session
for ((r = 1; r <= REPEAT; r++)); do round "$r"; done
close_operator_session
{
    echo "# $NAME: one line per round; columns: r A_n A_p50 A_p99 A_mean J_n J_p50 J_p99 J_mean J_rate R_n R_p50 R_p99 R_mean R_rate C_rate S_tps SJ_tps SJ_rows_per_s SJ_outlasted SR_tps SR_rows_per_s SR_outlasted"
    cat "$ROUNDS"
} >"$BENCH_RESULTS/${NAME}_rounds.txt"

# col <n>: the median of column n over the rounds; ratio <a> <b>: the median over rounds of col a / col b.
col() { cut -d' ' -f"$1" "$ROUNDS" | median; }
# (unrounded: lib.sh's median prints 3 decimals, and a ratio rounded twice can land on the other side of 1.0)
ratio() {
    awk -v a="$1" -v b="$2" '{ print $a / $b }' "$ROUNDS" | sort -g |
        awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
each() { awk -v a="$1" -v b="$2" -v f="$3" '{ printf f " ", $a / $b }' "$ROUNDS"; }

report=$(
    echo "| round | A: p99 alone (ms) | J: p99 beside the job (ms) | R: p99 beside the recipe (ms) | **J/R p99** | J: job rows/s | R: recipe rows/s | C: unthrottled rows/s | **J/C rate** | S: surge alone (tps) | SJ: surge beside the job (tps) | SR: surge beside the recipe (tps) | **SJ/S** | **SR/S** | SJ: job rows/s in the surge | SR: recipe rows/s in the surge |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    awk '{ printf "| %d | %.2f | %.2f | %.2f | %.2f | %d | %d | %d | %.1f %% | %d | %d%s | %d%s | %.2f | %.2f | %d | %d |\n",
           $1, $4, $8, $13, $8 / $13, $10, $15, $16, 100 * $10 / $16, $17, $18, ($20 ? "" : " (job ended first)"),
           $21, ($23 ? "" : " (recipe ended first)"), $18 / $17, $21 / $17, $19, $22 }' "$ROUNDS"
    printf '| **median** | %.2f | %.2f | %.2f | %.2f | %.0f | %.0f | %.0f | %.1f %% | %.0f | %.0f | %.0f | %.2f | %.2f | %.0f | %.0f |\n' \
        "$(col 4)" "$(col 8)" "$(col 13)" "$(ratio 8 13)" "$(col 10)" "$(col 15)" "$(col 16)" "$(awk -v x="$(ratio 10 16)" 'BEGIN { print 100 * x }')" \
        "$(col 17)" "$(col 18)" "$(col 21)" "$(ratio 18 17)" "$(ratio 21 17)" "$(col 19)" "$(col 22)"
    echo
    echo "Medians are per column; the ratio columns' medians are medians of the per-round ratios."
    # On a quiet host the workload alone has a p99 within a few times its p50. A round whose p99 alone is
    # ten times its p50 or more met a stall of the host (other tenants): every phase of it meets one or
    # not by chance, and its ratios say more about the host than about the job.
    echo "rounds whose workload alone had a p99 of 10x its p50 or more (the host stalled): $(awk '$4 >= 10 * $3 { printf "%d ", $1; n++ } END { if (!n) printf "none" }' "$ROUNDS")"
    awk -v x="$(ratio 8 13)" -v y="$(ratio 10 16)" 'BEGIN {
        printf "ours/recipe p99 at the same rate (median of rounds) = %.2f (goal <= 1.0): %s\n", x, (x <= 1.0 ? "PASS" : "FAIL")
        printf "the default job'"'"'s rate beside the workload = %.1f %% of the unthrottled rate (goal >= 25 %%): %s\n", 100 * y, (y >= 0.25 ? "PASS" : "FAIL") }'
    echo "per round, ours/recipe p99: $(each 8 13 %.2f)"
    echo "p99 beside the default job / p99 alone (median of rounds) = $(ratio 8 4 | xargs printf %.2f); per round: $(each 8 4 %.2f)"
    echo "surge throughput beside the default job / alone = $(ratio 18 17 | xargs printf %.2f) (per round: $(each 18 17 %.2f)); beside the paced recipe / alone = $(ratio 21 17 | xargs printf %.2f) (per round: $(each 21 17 %.2f))"
)
echo "$report"
{
    echo "# $NAME: the default backfill vs the paced PL/pgSQL recipe, beside a live application"
    [[ -z $JOB_ARGS ]] || echo "- every throttled job: start_backfill('accounts', 'token', 'v2'$JOB_ARGS)"
    echo
    bench_meta
    echo "- rows: $ROWS (surge phases: $SURGE_ROWS); workload: live_txn.sql via \`pgbench -n -R $RATE -c 4 -j 2 -l\`, latency from each transaction's scheduled start"
    echo "- $REPEAT rounds, interleaved; each phase on a freshly built, CHECKPOINTed table. A: $IDLE_SECONDS s of workload alone (its first $MARGIN s not counted). J: the default job started $MARGIN s into the workload; transactions completed between its created_at and finished_at count. R: bf_paced($RECIPE_BATCH, <J's rate in the same round>) (bench/fixtures/plpgsql_paced.sql) started $MARGIN s into the workload, from a session connected before it; transactions completed while the CALL ran count. C: start_backfill(.., throttle => false, batch_size => $BATCH), no workload. S: the workload, and $MARGIN s into it a second pgbench on the same script with no rate limit (-c 4 -j 2) for $SURGE_SECONDS s: the application's transactions per second over the surge, both pgbenches' (the rate-limited one falls behind its schedule and catches up as fast as it can). SJ: as S with the default job started $MARGIN s into the workload and the surge 1 s after it, the job cancelled when the surge ends; SR: the same with the recipe at J's rate. Rows/s in the surge: rows the job (rows_scanned) or the recipe (its checkpoint row) converted while the surge ran, per second. Every completed conversion verified."
    echo
    echo "$report"
} >"$BENCH_RESULTS/$NAME.md"
echo "bench: wrote $BENCH_RESULTS/$NAME.md" >&2
