#!/usr/bin/env bash
# Write-path benchmark: our background backfill vs the baselines of bench/fixtures (one UPDATE, the
# PL/pgSQL keyset recipe, pgroll's shape), all converting token to 'v2:' || reverse(token).
#
# Targets: backfill with throttle => false reaches >= 0.90x the rows/s of one UPDATE and beats the
# PL/pgSQL recipe and pgroll's shape; at 10M rows its rate stays >= 0.8x of the 1M rate and the worker's
# private memory stays < 64 MB.
#
# Usage: bench/backfill.sh           every method, BENCH_REPEAT (3) interleaved rounds of BENCH_ROWS (1M)
#        bench/backfill.sh --scale   only our backfill (throttle => false) at BENCH_ROWS and BENCH_SCALE_ROWS (10M)
# Writes bench/results/backfill.md (or backfill_scale.md). Exits 0 whether the goals are met or not
# (benchmarks report, they don't gate); non-zero only when something breaks, including a wrong result.
set -euo pipefail
shopt -s inherit_errexit  # a failing psql inside $(..) stops the script, not just the substitution
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

MODE=full
case ${1:-} in
    "") ;;
    --scale) MODE=scale ;;
    *) bench_die "usage: $0 [--scale]" ;;
esac
ROWS=${BENCH_ROWS:-1000000}
SCALE_ROWS=${BENCH_SCALE_ROWS:-10000000}
REPEAT=${BENCH_REPEAT:-3}
WAIT=${BENCH_WAIT:-30 min}  # await_backfill's timeout: past it the job counts as not finishing
B=1000                      # the baselines' batch size, as the README quotes them
for n in "$ROWS" "$SCALE_ROWS" "$REPEAT"; do
    [[ $n =~ ^[1-9][0-9]*$ ]] || bench_die "BENCH_ROWS, BENCH_SCALE_ROWS and BENCH_REPEAT must be positive integers"
done

# Methods: key -> label, and for ours the start_backfill arguments after (relation, column, codec).
declare -A LABEL=(
    [update]="one \`UPDATE\` (single_update.sql)"
    [plpgsql]="PL/pgSQL keyset recipe, B=$B (plpgsql_batched.sql)"
    [pgroll]="pgroll's shape, B=$B (pgroll_style.sql)"
    [bf50000]="backfill, throttle => false, batch_size 50000"
    [bf20000]="backfill, throttle => false, batch_size 20000"
    [bfdefault]="backfill, default settings (adaptive batches, throttle on)"
)
declare -A SCRIPT=([update]=single_update.sql [plpgsql]=plpgsql_batched.sql [pgroll]=pgroll_style.sql)
declare -A ARGS=(
    [bf50000]=", throttle => false, batch_size => 50000"
    [bf20000]=", throttle => false, batch_size => 20000"
    [bfdefault]=""
)

# 1000000 -> 1M, 200000 -> 200k: row counts as the goals name them.
short() {
    if (($1 % 1000000 == 0)); then echo "$(($1 / 1000000))M"
    elif (($1 % 1000 == 0)); then echo "$(($1 / 1000))k"
    else echo "$1"; fi
}

# sample_worker <out> <stop file>: in the background, finds this cluster's backfill worker (a child of
# OUR postmaster: other clusters on the box run workers too) and reads /proc/<pid>/status every 100 ms
# until the worker exits. Writes "<max RssAnon kB> <VmHWM kB> <samples>" to <out>. Reads /proc only,
# so sampling costs no connection and does not count as an active backend for the throttle.
sample_worker() {
    local out=$1 stop=$2 postmaster pid="" rss=0 hwm=0 n=0 grace=0 key val _
    postmaster=$(head -n1 "$PGHOST/data/postmaster.pid")
    while [[ -z $pid ]]; do
        pid=$(pgrep -P "$postmaster" -f '^postgres: migration_ext backfill job' | head -n1 || true)
        if [[ -z $pid ]]; then
            if [[ -e $stop ]]; then break; fi  # the worker came and went between two looks
            sleep 0.1
        fi
    done
    while [[ -n $pid && -e /proc/$pid ]]; do
        while read -r key val _; do
            case $key in
                RssAnon:) if ((val > rss)); then rss=$val; fi ;;
                VmHWM:) if ((val > hwm)); then hwm=$val; fi ;;
            esac
        done 2>/dev/null <"/proc/$pid/status" || true
        n=$((n + 1))
        if [[ -e $stop ]]; then
            # The job is over; a worker still there 10 s later is a bug worth reporting.
            grace=$((grace + 1))
            if ((grace > 100)); then
                echo "worker $pid still alive 10 s after its job ended" >"$out.err"
                break
            fi
        fi
        sleep 0.1
    done
    echo "$rss $hwm $n" >"$out"
}

# run_baseline <key> <rows>: runs the baseline script's set-up untimed and times the part after its
# `\timing on` line (the part the README times) between clock_timestamp() calls in the same session.
# Sets RESULT="<seconds> <WAL bytes> - - -".
run_baseline() {
    local script=$BENCH_FIXTURES/${SCRIPT[$1]} rows=$2
    grep -qx '\\timing on' "$script" || bench_die "unexpected layout of $script (no \\timing on line)"
    RESULT=$({
        sed '/^\\timing on$/,$d' "$script"
        echo "SELECT clock_timestamp() AS t0, pg_current_wal_lsn() AS l0 \\gset"
        sed '0,/^\\timing on$/d' "$script"
        echo "SELECT extract(epoch FROM clock_timestamp() - :'t0'::timestamptz) AS secs,
                     pg_wal_lsn_diff(pg_current_wal_lsn(), :'l0'::pg_lsn) AS wal \\gset"
        printf '%s\n' '\echo :secs :wal - - -'
    } | bench_psql -At -v N="$rows" -v B="$B")
}

# run_ours <key> <rows>: times start_backfill .. await_backfill's return in one session, samples the
# worker's memory meanwhile, and checks the job's own account. CALL await_backfill() holds no snapshot
# while it waits (a SELECT wait_backfill() would keep every old row version visible, and the job's space
# reuse, on by default, could reclaim nothing).
# Sets RESULT="<s> <WAL> <RssAnon kB> <VmHWM kB> <batches>" (not printed: the sampler must be this shell's child).
run_ours() {
    local key=$1 rows=$2 mem=$WORK/mem stop=$WORK/mem.stop spid out job state secs wal
    rm -f "$mem" "$mem.err" "$stop"
    sample_worker "$mem" "$stop" &
    spid=$!
    bench_track "$spid"
    # Separate statements: start_backfill must commit before the worker can see its job.
    out=$(bench_psql -At -v args="${ARGS[$key]}" -v wait="$WAIT" <<'SQL'
SELECT clock_timestamp() AS t0, pg_current_wal_lsn() AS l0 \gset
SELECT start_backfill('accounts', 'token', 'v2' :args) AS job \gset
CALL await_backfill(:job, :'wait', false) \gset
SELECT extract(epoch FROM clock_timestamp() - :'t0'::timestamptz) AS secs,
       pg_wal_lsn_diff(pg_current_wal_lsn(), :'l0'::pg_lsn) AS wal \gset
\echo :job :state :secs :wal
SQL
    )
    touch "$stop"
    wait "$spid"
    bench_untrack "$spid"
    read -r job state secs wal <<<"$out"
    local account
    account=$(bench_value "SELECT state, rows_scanned, rows_converted, conflicts, batches, coalesce(last_error, '-')
                           FROM backfill_status WHERE job = $job")
    local repro="reproduce: bench/lib.sh cluster, setup.sql with N=$rows, CREATE EXTENSION migration_ext, the v2 codec,
  SELECT start_backfill('accounts', 'token', 'v2'${ARGS[$key]}); CALL await_backfill(<job>, '$WAIT', false);"
    [[ $state == "done" ]] || bench_die "${LABEL[$key]}: job $job ended '$state' after ${secs}s; job: $account
$repro"
    local scanned converted conflicts batches
    IFS='|' read -r _ scanned converted conflicts batches _ <<<"$account"
    ((scanned == rows && converted == rows && conflicts == 0)) ||
        bench_die "${LABEL[$key]}: job $job state|scanned|converted|conflicts|batches|error = $account, expected $rows rows converted, 0 conflicts
$repro"
    [[ ! -e $mem.err ]] || bench_die "${LABEL[$key]}: $(cat "$mem.err")
$repro"
    local rss hwm samples
    read -r rss hwm samples <"$mem"
    ((samples > 0)) || { rss=-; hwm=-; }  # finished before the first sample: no figure, not a zero
    RESULT="$secs $wal $rss $hwm $batches"
}

# One timed run of a method on a freshly built table, verified afterwards; appends to $RUNS.
run_method() {
    local key=$1 rows=$2 round=$3 result
    bench_rebuild "$rows"
    if [[ -n ${SCRIPT[$key]:-} ]]; then run_baseline "$key" "$rows"; else run_ours "$key" "$rows"; fi
    result=$RESULT
    bench_verify "$rows" "${LABEL[$key]} at $rows rows, round $round"
    echo "$key $rows $result" >>"$RUNS"
    echo "bench: round $round, $(short "$rows"), ${LABEL[$key]}: $(cut -d' ' -f1 <<<"$result") s" >&2
}

# stats <key> <rows>: from $RUNS, "<median s> <median WAL> <max RssAnon kB|-> <max VmHWM kB|-> <median batches|-> <runs, s>"
stats() {
    awk -v k="$1" -v n="$2" '$1 == k && $2 == n' "$RUNS" | {
        local s w r h b
        mapfile -t lines
        s=$(printf '%s\n' "${lines[@]}" | cut -d' ' -f3 | median)
        w=$(printf '%s\n' "${lines[@]}" | cut -d' ' -f4 | median)
        r=$(printf '%s\n' "${lines[@]}" | cut -d' ' -f5 | grep -v '^-$' | sort -g | tail -n1 || true)
        h=$(printf '%s\n' "${lines[@]}" | cut -d' ' -f6 | grep -v '^-$' | sort -g | tail -n1 || true)
        b=$(printf '%s\n' "${lines[@]}" | cut -d' ' -f7 | grep -v '^-$' | median || true)
        echo "$s $w ${r:--} ${h:--} ${b:--} $(printf '%s\n' "${lines[@]}" | awk '{ printf "%s%.2f", (NR > 1 ? ", " : ""), $3 }')"
    }
}

# shellcheck disable=SC2119  # no extra server settings here
bench_start
WORK=$BENCH_CLUSTER/bench  # removed with the cluster
mkdir -p "$WORK"
RUNS=$WORK/runs
: >"$RUNS"
bench_extension
mkdir -p "$BENCH_RESULTS"

if [[ $MODE == full ]]; then
    methods=(update plpgsql pgroll bf50000 bf20000 bfdefault)
    echo "bench: cluster in $PGHOST, $ROWS rows, $REPEAT rounds of ${#methods[@]} methods" >&2
    # Interleaved rounds: a slow drift (other tenants of the box) spreads over every method.
    for ((round = 1; round <= REPEAT; round++)); do
        for key in "${methods[@]}"; do run_method "$key" "$ROWS" "$round"; done
    done

    table=$(
        echo "| method | median wall (s) | runs (s) | rows/s | throughput vs one UPDATE | WAL bytes/row | batches | worker peak RssAnon (MB) |"
        echo "|---|---:|---:|---:|---:|---:|---:|---:|"
        base=$(stats update "$ROWS" | cut -d' ' -f1)
        for key in "${methods[@]}"; do
            read -r s w r _ b runs <<<"$(stats "$key" "$ROWS")"
            awk -v l="${LABEL[$key]}" -v s="$s" -v w="$w" -v r="$r" -v b="$b" -v runs="$runs" -v n="$ROWS" -v base="$base" 'BEGIN {
                printf "| %s | %.2f | %s | %.0f | %.2fx | %.0f | %s | %s |\n", l, s, runs, n / s, base / s, w / n,
                    b == "-" ? "-" : sprintf("%.0f", b), r == "-" ? "-" : sprintf("%.1f", r / 1024) }'
        done
    )
    ratio() { awk -v a="$(stats "$1" "$ROWS" | cut -d' ' -f1)" -v b="$(stats "$2" "$ROWS" | cut -d' ' -f1)" 'BEGIN { printf "%.2f", b / a }'; }
    verdicts=$(
        for key in bf20000 bf50000; do
            x=$(ratio "$key" update)
            name="backfill (throttle => false, batch_size 20000)"
            [[ $key == bf20000 ]] || name="backfill (throttle => false, batch_size 50000)"
            echo "$name throughput = ${x}x of one UPDATE (goal >= 0.90x): $(awk -v x="$x" 'BEGIN { print (x + 0 >= 0.90 ? "PASS" : "FAIL") }')"
        done
        for key in plpgsql pgroll; do
            x=$(ratio bf20000 "$key")
            echo "backfill (throttle => false) vs ${LABEL[$key]%% (*}: ${x}x its throughput, $(awk -v x="$x" 'BEGIN { print (x + 0 > 1 ? "beats it" : "does NOT beat it") }')"
        done
        echo "backfill at default settings (throttle on) throughput = $(ratio bfdefault update)x of one UPDATE (no goal: it yields to load by design)"
        read -r _ wu _ <<<"$(stats update "$ROWS")"
        read -r _ wb _ <<<"$(stats bf20000 "$ROWS")"
        awk -v u="$wu" -v b="$wb" -v n="$ROWS" 'BEGIN {
            printf "WAL per converted row: one UPDATE %.0f B, backfill (throttle => false) %.0f B = %.2fx\n", u / n, b / n, b / u }'
        peak=$(for key in bf50000 bf20000 bfdefault; do stats "$key" "$ROWS" | cut -d' ' -f3; done | grep -v '^-$' | sort -g | tail -n1 || true)
        if [[ -n $peak ]]; then
            awk -v p="$peak" -v n="$(short "$ROWS")" 'BEGIN {
                printf "worker peak private memory (max RssAnon over our runs, sampled every 100 ms) = %.1f MB at %s rows\n", p / 1024, n }'
        else
            echo "worker peak private memory: no sample (every job ended within 100 ms)"
        fi
    )
    report="$table

$verdicts"
    title="# backfill: throughput vs one UPDATE, the PL/pgSQL recipe and pgroll's shape"
    file=$BENCH_RESULTS/backfill.md
    params="- rows: $ROWS; $REPEAT interleaved rounds, median per method; the table is rebuilt with setup.sql and CHECKPOINTed before every run"
else
    sizes=("$ROWS" "$SCALE_ROWS")
    echo "bench: cluster in $PGHOST, scale: $(short "$ROWS") vs $(short "$SCALE_ROWS") rows, $REPEAT rounds" >&2
    for ((round = 1; round <= REPEAT; round++)); do
        for n in "${sizes[@]}"; do run_method bf20000 "$n" "$round"; done
    done
    table=$(
        echo "| rows | median wall (s) | runs (s) | rows/s | WAL bytes/row | batches | worker peak RssAnon (MB) | worker VmHWM (MB) |"
        echo "|---:|---:|---:|---:|---:|---:|---:|---:|"
        for n in "${sizes[@]}"; do
            read -r s w r h b runs <<<"$(stats bf20000 "$n")"
            awk -v s="$s" -v w="$w" -v r="$r" -v h="$h" -v b="$b" -v runs="$runs" -v n="$n" 'BEGIN {
                printf "| %d | %.2f | %s | %.0f | %.0f | %.0f | %s | %s |\n", n, s, runs, n / s, w / n, b,
                    r == "-" ? "-" : sprintf("%.1f", r / 1024), h == "-" ? "-" : sprintf("%.1f", h / 1024) }'
        done
    )
    read -r s1 _ <<<"$(stats bf20000 "$ROWS")"
    read -r s2 _ r2 _ <<<"$(stats bf20000 "$SCALE_ROWS")"
    verdicts=$(
        awk -v s1="$s1" -v s2="$s2" -v n1="$ROWS" -v n2="$SCALE_ROWS" -v a="$(short "$SCALE_ROWS")" -v b="$(short "$ROWS")" 'BEGIN {
            x = sprintf("%.2f", (n2 / s2) / (n1 / s1))
            printf "backfill rate(%s)/rate(%s) = %s (goal >= 0.80): %s\n", a, b, x, (x + 0 >= 0.80 ? "PASS" : "FAIL") }'
        if [[ $r2 == - ]]; then
            echo "worker peak private memory at $(short "$SCALE_ROWS"): no sample"
        else
            awk -v r="$r2" -v a="$(short "$SCALE_ROWS")" 'BEGIN {
                x = sprintf("%.1f", r / 1024)
                printf "worker peak private memory at %s = %s MB (goal < 64 MB): %s\n", a, x, (x + 0 < 64 ? "PASS" : "FAIL") }'
        fi
    )
    report="$table

$verdicts"
    title="# backfill --scale: our backfill (throttle => false, batch_size 20000) at $(short "$ROWS") and $(short "$SCALE_ROWS") rows"
    file=$BENCH_RESULTS/backfill_scale.md
    params="- rows: $ROWS and $SCALE_ROWS; $REPEAT interleaved rounds, median per size; the table is rebuilt with setup.sql and CHECKPOINTed before every run"
fi

echo "$report"
{
    echo "$title"
    echo
    bench_meta
    echo "$params"
    echo "- timing: clock_timestamp() in one psql session around the timed statement (baselines: the part after their \`\\timing on\`; ours: start_backfill .. CALL await_backfill returning)"
    echo "- WAL: pg_wal_lsn_diff over the same span / rows; worker memory: /proc/<pid>/status of the backfill worker every 100 ms (RssAnon = private memory; VmHWM also counts the shared buffers it touched)"
    echo "- every run verified: 0 rows differ from 'v2:' || reverse(md5(id::text)); ours also: job done, all rows converted, 0 conflicts"
    echo
    echo "$report"
} >"$file"
echo "bench: wrote $file" >&2
