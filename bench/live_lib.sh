# shellcheck shell=bash
# The live-workload benchmarks' shared parts (live_workload.sh, live_recipe.sh): the application's
# pgbench, its per-transaction latencies, and the operator's session that starts and polls the jobs.
# Source it after lib.sh's bench_start, with WORK (a scratch directory), ROWS, RATE, MAX_SECONDS, MARGIN
# and JOB_ARGS set.
PGBENCH=$PG_BINDIR/pgbench

# The baseline workload, its id range fitted to ROWS (it is written for 1,000,000).
WORKLOAD=$WORK/live_txn.sql
grep -q 'random(1, 1000000)' "$BENCH_FIXTURES/live_txn.sql" || bench_die "unexpected layout of $BENCH_FIXTURES/live_txn.sql"
sed "s/random(1, 1000000)/random(1, $ROWS)/" "$BENCH_FIXTURES/live_txn.sql" >"$WORKLOAD"

# start_workload <name> <seconds>: pgbench in the background, per-transaction log $WORK/<name>.<pid>[.<thread>].
# [<rate>] (RATE): transactions per second it schedules; "max": as fast as its clients go.
start_workload() {
    local rate=${3:-$RATE} limit=()
    [[ $rate == max ]] || limit=(-R "$rate")
    "$PGBENCH" -n -f "$WORKLOAD" "${limit[@]}" -c 4 -j 2 -T "$2" -l --log-prefix="$WORK/$1" "$BENCH_DB" \
        >"$WORK/$1.out" 2>&1 &
    WL_PID=$!
    bench_track "$WL_PID"
}

# latencies <name>: "<completion epoch s> <latency ms>" per successful transaction. A line cut short
# (the tail of a pgbench stopped by a signal) or a failed transaction has no numeric time field.
latencies() {
    cat "$WORK/$1".[0-9]* | awk 'NF >= 6 && $3 ~ /^[0-9]+$/ { printf "%.6f %.3f\n", $5 + $6 / 1e6, $3 / 1000 }'
}

# after_start_up <epoch s> < "<t> <ms>": the transactions completed MARGIN s or more after pgbench started.
# Phase B counts from the job's start, MARGIN s after its pgbench's; A and D skip the same start-up, whose
# new connections (their first plans, their catalog caches) make the slowest transactions of a run.
after_start_up() { awk -v a="$1" -v m="$MARGIN" '$1 >= a + m'; }

# summary < "<t> <ms>": "<transactions> <p50> <p99> <mean>"
summary() {
    local data
    data=$(cut -d' ' -f2)
    [[ -n $data ]] || bench_die "no transactions to summarise"
    echo "$(wc -l <<<"$data") $(percentile 50 <<<"$data") $(percentile 99 <<<"$data") $(awk '{ s += $1 } END { printf "%.3f", s / NR }' <<<"$data")"
}

# The operator's session: one psql, connected once before any workload runs, that starts every job and
# polls backfill_status twice a second. A DBA's psql is open before they call start_backfill; a new
# psql per call would fork a backend (and a psql) inside the measured window, and on this 2-core host
# one connection's start-up raises the workload's p99 for the next 100 ms by itself (a backend loads its
# catalog caches). Polling by short statements rather than wait_backfill: a waiting wait_backfill()
# holds one snapshot for the whole job, which would hold back the xmin horizon (and so HOT pruning)
# under the workload we are measuring.
open_operator_session() {
    coproc OPERATOR { PGOPTIONS="-c client_min_messages=warning" psql -X -q -At -F $'\t' -v ON_ERROR_STOP=1 -d "$BENCH_DB"; }
    bench_track "$OPERATOR_PID"
}

# operator <sql>: one statement in the operator's session; prints its one-line result.
operator() {
    local row
    echo "$1;" >&"${OPERATOR[1]}"
    read -r -t 60 row <&"${OPERATOR[0]}" || bench_die "the operator's session did not answer: $1"
    echo "$row"
}

close_operator_session() {
    local pid=$OPERATOR_PID
    # shellcheck disable=SC2093,SC1083  # closes the coproc's input; shellcheck misreads {fd}>&-
    exec {OPERATOR[1]}>&-
    wait "$pid" || bench_die "the operator's session failed"
    bench_untrack "$pid"
}

# run_backfill <start_backfill extra args> <status file> [<table>]: starts a job (on accounts, or <table>)
# from the operator's session and polls it every 0.5 s into <status file> ("epoch state rows_per_second
# batch_size rows_scanned throttle_reason", tab separated) until it is done.
# Sets JOB, JOB_T0, JOB_T1 (created_at, finished_at as epoch s) and JOB_RATE (rows scanned / (T1 - T0)).
run_backfill() {
    local args=$1 status=$2 table=${3:-accounts} row state deadline=$((SECONDS + MAX_SECONDS))
    JOB=$(operator "SELECT start_backfill('$table', 'token', 'v2'$args)")
    : >"$status"
    while :; do
        row=$(operator "SELECT extract(epoch FROM clock_timestamp()), state, coalesce(rows_per_second, 0),
                coalesce(batch_size, 0), rows_scanned, coalesce(throttle_reason, '-')
            FROM backfill_status WHERE job = $JOB")
        echo "$row" >>"$status"
        state=$(cut -f2 <<<"$row")
        case $state in
            done) break ;;
            queued | running | throttled) ;;
            *) bench_die "backfill job $JOB ended '$state': $(bench_value "SELECT * FROM backfill_status WHERE job = $JOB")
reproduce: setup.sql with N=$ROWS, CREATE EXTENSION migration_ext, the v2 codec, SELECT start_backfill('$table', 'token', 'v2'$args)" ;;
        esac
        ((SECONDS < deadline)) || bench_die "backfill job $JOB still '$state' after $MAX_SECONDS s: $row"
        sleep 0.5
    done
    local account scanned converted conflicts
    account=$(operator "SELECT extract(epoch FROM created_at) || ' ' || extract(epoch FROM finished_at) || ' ' ||
        rows_scanned || ' ' || rows_converted || ' ' || conflicts || ' ' || batches FROM backfill_status WHERE job = $JOB")
    read -r JOB_T0 JOB_T1 scanned converted conflicts JOB_BATCHES <<<"$account"
    ((scanned == ROWS && converted == ROWS)) ||
        bench_die "backfill job $JOB: scanned/converted $scanned/$converted of $ROWS rows (conflicts $conflicts)"
    JOB_CONFLICTS=$conflicts
    JOB_RATE=$(awk -v n="$scanned" -v a="$JOB_T0" -v b="$JOB_T1" 'BEGIN { printf "%.0f", n / (b - a) }')
}

# verify_backfill <start_backfill extra args>: every row of the last job holds the expected value. A full
# scan computing md5() per row holds a core for a second or two: run it once the workload has stopped,
# or the plot shows its cost right after the job as if the job had caused it.
verify_backfill() {
    bench_verify "$ROWS" "backfill job $JOB (start_backfill('accounts', 'token', 'v2'$1)) at $ROWS rows"
}

# backfill_beside_workload <name> [<table>]: the workload (log $WORK/<name>.*), and MARGIN s into it a
# default job on accounts (or <table>); pgbench runs "forever" and is stopped by a signal MARGIN s after
# the job ends (the tail of its log lost with it lies outside the window used). Sets what run_backfill sets.
backfill_beside_workload() {
    local name=$1 table=${2:-accounts}
    start_workload "$name" "$MAX_SECONDS"
    sleep "$MARGIN"
    run_backfill "$JOB_ARGS" "$WORK/$name.status" "$table"
    sleep "$MARGIN"
    kill -0 "$WL_PID" 2>/dev/null || bench_die "pgbench stopped early: $(cat "$WORK/$name.out")"
    kill "$WL_PID"
    wait "$WL_PID" || true
    bench_untrack "$WL_PID"
    ! grep -qiE 'aborted|error' "$WORK/$name.out" || bench_die "workload errors during backfill job $JOB: $(cat "$WORK/$name.out")"
}
