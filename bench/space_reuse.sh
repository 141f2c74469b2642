#!/usr/bin/env bash
# Growth benchmark: how much bigger the table and its indexes are after converting every row, with space
# reuse on (the default) and off, against one UPDATE of the whole table, measured in the same run on
# the same cluster; with the converted column not indexed and indexed. Also each method's speed
# against one UPDATE, and the share of HOT updates (no new index entries).
#
# Targets: growth of table + indexes <= 1.25x with reuse on (one UPDATE: about 2.08x), and the
# unthrottled job with reuse on >= 0.8x the speed of one UPDATE.
#
# Usage: bench/space_reuse.sh    BENCH_REPEAT (2) interleaved rounds of BENCH_ROWS (1M) per method
# Writes bench/results/space_reuse.md. Exits 0 whether the goals are met or not; non-zero only when
# something breaks, a wrong result included.
set -euo pipefail
shopt -s inherit_errexit
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

ROWS=${BENCH_ROWS:-1000000}
REPEAT=${BENCH_REPEAT:-2}
WAIT=${BENCH_WAIT:-30 min}
for n in "$ROWS" "$REPEAT"; do
    [[ $n =~ ^[1-9][0-9]*$ ]] || bench_die "BENCH_ROWS and BENCH_REPEAT must be positive integers"
done
declare -A LABEL=(
    [update]="one \`UPDATE\` (single_update.sql)"
    [on]="backfill, throttle => false, batch_size 20000, reuse_space on"
    [off]="backfill, throttle => false, batch_size 20000, reuse_space => false"
)

# run <method> <indexed 0|1>: a fresh table (with an index on token when indexed), then one conversion.
# Appends "<method> <indexed> <seconds> <growth> <hot share> <reclaims>" to $RUNS.
run() {
    local key=$1 idx=$2 before after secs out job reclaims=-
    bench_rebuild "$ROWS"
    if ((idx)); then
        bench_psql -c "CREATE INDEX accounts_token ON accounts (token)" -c "VACUUM ANALYZE accounts" -c CHECKPOINT
    fi
    before=$(bench_value "SELECT pg_total_relation_size('accounts')")
    bench_value "SELECT pg_stat_reset_single_table_counters('accounts'::regclass)" >/dev/null
    if [[ $key == update ]]; then
        secs=$(bench_psql -At <<'SQL'
SELECT clock_timestamp() AS t0 \gset
UPDATE accounts SET token = 'v2:' || reverse(token) WHERE left(token, 3) <> 'v2:';
SELECT extract(epoch FROM clock_timestamp() - :'t0'::timestamptz);
SQL
        )
    else
        # CALL await_backfill(): the wait holds no snapshot (a SELECT wait_backfill() would keep every
        # old version visible, and nothing could be reclaimed).
        out=$(bench_psql -At -v reuse="$([[ $key == on ]] && echo true || echo false)" -v wait="$WAIT" <<'SQL'
SELECT clock_timestamp() AS t0 \gset
SELECT start_backfill('accounts', 'token', 'v2', throttle => false, batch_size => 20000, reuse_space => :reuse) AS job \gset
CALL await_backfill(:job, :'wait', false);
SELECT extract(epoch FROM clock_timestamp() - :'t0'::timestamptz) AS secs \gset
\echo :job :secs
SQL
        )
        read -r job secs <<<"$(tail -n1 <<<"$out")"
        local account
        account=$(bench_value "SELECT state || ' ' || rows_converted || ' ' || reclaims FROM backfill_status WHERE job = $job")
        [[ ${account% *} == "done $ROWS" ]] || bench_die "${LABEL[$key]}: job $job: $account"
        reclaims=${account##* }
    fi
    bench_verify "$ROWS" "${LABEL[$key]}, indexed=$idx"
    after=$(bench_value "SELECT pg_total_relation_size('accounts')")
    # The statistics of this backend's UPDATE or of the worker reach the counters at their end.
    sleep 1
    hot=$(bench_value "SELECT round(n_tup_hot_upd::numeric / greatest(n_tup_upd, 1), 4) FROM pg_stat_user_tables WHERE relname = 'accounts'")
    echo "$key $idx $secs $(awk -v a="$after" -v b="$before" 'BEGIN { printf "%.3f", a / b }') $hot $reclaims" >>"$RUNS"
    echo "bench: $key indexed=$idx: ${secs}s, growth $(tail -n1 "$RUNS" | cut -d' ' -f4)x" >&2
}

col() { awk -v k="$1" -v i="$2" -v c="$3" '$1 == k && $2 == i { print $c }' "$RUNS"; }

bench_start
WORK=$BENCH_CLUSTER/bench
mkdir -p "$WORK"
RUNS=$WORK/runs
: >"$RUNS"
bench_extension
mkdir -p "$BENCH_RESULTS"
methods=(update on off)
echo "bench: cluster in $PGHOST, $ROWS rows, $REPEAT rounds of ${#methods[@]} methods, token not indexed and indexed" >&2
for ((round = 1; round <= REPEAT; round++)); do
    for idx in 0 1; do
        for key in "${methods[@]}"; do run "$key" "$idx"; done
    done
done

table=$(
    echo "| converted column | method | median growth (table + indexes) | median wall (s) | runs (s) | speed vs one UPDATE | HOT updates | rounds of reuse |"
    echo "|---|---|---:|---:|---:|---:|---:|---:|"
    for idx in 0 1; do
        base=$(col update "$idx" 3 | median)
        for key in "${methods[@]}"; do
            g=$(col "$key" "$idx" 4 | median)
            s=$(col "$key" "$idx" 3 | median)
            h=$(col "$key" "$idx" 5 | median)
            r=$(col "$key" "$idx" 6 | grep -v '^-$' | median || echo -)
            runs=$(col "$key" "$idx" 3 | awk '{ printf "%s%.1f", (NR > 1 ? ", " : ""), $1 }')
            awk -v i="$idx" -v l="${LABEL[$key]}" -v g="$g" -v s="$s" -v b="$base" -v h="$h" -v r="$r" -v runs="$runs" 'BEGIN {
                printf "| %s | %s | %.2fx | %.2f | %s | %.2fx | %.1f %% | %s |\n", (i ? "indexed" : "not indexed"), l, g, s, runs,
                    b / s, 100 * h, r == "-" ? "-" : sprintf("%.0f", r) }'
        done
    done
)
verdicts=$(
    for idx in 0 1; do
        what=$([[ $idx == 1 ]] && echo "indexed" || echo "not indexed")
        g=$(col on "$idx" 4 | median)
        u=$(col update "$idx" 4 | median)
        x=$(awk -v a="$(col update "$idx" 3 | median)" -v b="$(col on "$idx" 3 | median)" 'BEGIN { printf "%.2f", a / b }')
        awk -v g="$g" -v u="$u" -v w="$what" 'BEGIN {
            printf "token %s: growth with reuse on %.2fx (goal <= 1.25x), one UPDATE %.2fx: %s\n", w, g, u, (g + 0 <= 1.25 ? "PASS" : "FAIL") }'
        awk -v x="$x" -v w="$what" 'BEGIN {
            printf "token %s: speed with reuse on = %.2fx of one UPDATE (goal >= 0.80): %s\n", w, x, (x + 0 >= 0.80 ? "PASS" : "FAIL") }'
    done
)
report="$table

$verdicts"
echo "$report"
{
    echo "# space_reuse: growth of the table and its indexes after converting every row"
    echo
    bench_meta
    echo "- rows: $ROWS (bench/fixtures/setup.sql), token converted to 'v2:' || reverse(token); $REPEAT interleaved rounds, median per method; every run on a freshly built, VACUUMed and CHECKPOINTed table, verified afterwards"
    echo "- growth: pg_total_relation_size(accounts) after / before; time: clock_timestamp() in one session around the UPDATE, or start_backfill .. CALL await_backfill returning"
    echo "- HOT updates: n_tup_hot_upd / n_tup_upd of the table (counters reset before each run)"
    echo
    echo "$report"
} >"$BENCH_RESULTS/space_reuse.md"
echo "bench: wrote $BENCH_RESULTS/space_reuse.md" >&2
