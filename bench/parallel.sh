#!/usr/bin/env bash
# Parallel backfill benchmark: a table partitioned by hash of its key into 8 partitions, converted by one
# UPDATE of the whole table, by a backfill walking its partitions with one worker (parallel => 1), and by
# the same with two part jobs over disjoint sets of partitions (parallel => 2). Codec: add_prefix:v2:
# (legacy = no 'v2:' prefix); the UPDATE writes the same values.
#
# Targets: none fixed by the project yet. What it reports: parallel => 2 against parallel => 1 (at most
# 2x, and only with two cores free for the two parts), and each against one UPDATE of the same rows.
#
# Usage: bench/parallel.sh    BENCH_REPEAT (3) interleaved rounds of BENCH_ROWS (1M) per method
# Writes bench/results/parallel.md. Exits 0 whether a speed-up shows or not; non-zero only when something
# breaks, a wrong result included (every run is checked: no legacy row left, every row exactly converted).
set -euo pipefail
shopt -s inherit_errexit
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

ROWS=${BENCH_ROWS:-1000000}
REPEAT=${BENCH_REPEAT:-3}
WAIT=${BENCH_WAIT:-30 min}
PARTITIONS=8
for n in "$ROWS" "$REPEAT"; do
    [[ $n =~ ^[1-9][0-9]*$ ]] || bench_die "BENCH_ROWS and BENCH_REPEAT must be positive integers"
done
declare -A LABEL=(
    [update]="one \`UPDATE\` of the whole table"
    [p1]="backfill, throttle => false, batch_size 20000, parallel => 1"
    [p2]="backfill, throttle => false, batch_size 20000, parallel => 2"
)
declare -A PARALLEL=([p1]=1 [p2]=2)

# rebuild: the partitioned table from scratch, all tokens legacy (md5 hex), rows of about 100 bytes
# (8-byte key, 33-byte token, 41-byte filler, 24-byte tuple header), VACUUMed, then a CHECKPOINT so every
# method starts from the same heap and pays the same full-page writes.
rebuild() {
    bench_psql -v N="$ROWS" -v P="$PARTITIONS" <<'SQL'
DROP TABLE IF EXISTS t CASCADE;
CREATE TABLE t (id bigint PRIMARY KEY, token text NOT NULL, filler text) PARTITION BY HASH (id);
SELECT format('CREATE TABLE t_p%s PARTITION OF t FOR VALUES WITH (MODULUS %s, REMAINDER %s)', r, :P, r)
FROM generate_series(0, :P - 1) r \gexec
INSERT INTO t SELECT g, md5(g::text), repeat('x', 40) FROM generate_series(1, :N) g;
VACUUM ANALYZE t;
CHECKPOINT;
SQL
}

# verify <what>: no legacy row remains, and every row holds exactly 'v2:' || its original token.
verify() {
    local bad
    bad=$(bench_value "SELECT count(*) FILTER (WHERE left(token, 3) <> 'v2:') || ' '
                       || count(*) FILTER (WHERE token IS DISTINCT FROM 'v2:' || md5(id::text)) || ' ' || count(*) FROM t")
    [[ $bad == "0 0 $ROWS" ]] ||
        bench_die "$1: wrong result: <legacy rows> <rows not exactly converted> <rows> = $bad, expected 0 0 $ROWS"
}

# run <method> <round>: one conversion of a freshly built table, timed between clock_timestamp() calls in
# one session, verified. Appends "<method> <seconds> <parts> <walk seconds|->" to $RUNS; the walk is
# from the first part's start to the last part's end (the parent's own start-up and its half-second
# gathering left out), or the one job's start to its end.
run() {
    local key=$1 round=$2 secs out job state account walk parts
    rebuild
    if [[ -z $ROW_BYTES ]]; then  # the shape of the table, once, before any conversion
        ROW_BYTES=$(bench_value "SELECT round(avg(pg_column_size(t.*))) FROM t")
        TABLE_MB=$(bench_value "SELECT round(sum(pg_relation_size(relid)) / 1048576.0) FROM pg_partition_tree('t') WHERE isleaf")
    fi
    if [[ $key == update ]]; then
        secs=$(bench_psql -At <<'SQL'
SELECT clock_timestamp() AS t0 \gset
UPDATE t SET token = 'v2:' || token WHERE left(token, 3) <> 'v2:';
SELECT extract(epoch FROM clock_timestamp() - :'t0'::timestamptz);
SQL
        )
        parts=- walk=-
    else
        # Separate statements: start_backfill must commit before the workers see the job. CALL
        # await_backfill() holds no snapshot while it waits.
        out=$(bench_psql -At -v n="${PARALLEL[$key]}" -v wait="$WAIT" <<'SQL'
SELECT clock_timestamp() AS t0 \gset
SELECT start_backfill('t', 'token', 'v2', throttle => false, batch_size => 20000, parallel => :n) AS job \gset
CALL await_backfill(:job, :'wait', false) \gset
SELECT extract(epoch FROM clock_timestamp() - :'t0'::timestamptz) AS secs \gset
\echo :job :state :secs
SQL
        )
        read -r job state secs <<<"$(tail -n1 <<<"$out")"
        account=$(bench_value "SELECT state, rows_scanned, rows_converted, conflicts, coalesce(last_error, '-')
                               FROM backfill_status WHERE job = $job")
        [[ $state == "done" && $account == "done|$ROWS|$ROWS|0|-" ]] ||
            bench_die "${LABEL[$key]}, round $round: job $job ended '$state' after ${secs}s;
  state|scanned|converted|conflicts|error = $account, expected done|$ROWS|$ROWS|0|-
  parts: $(bench_value "SELECT string_agg(format('%s %s %s rows %s', job, state, rows_converted, coalesce(last_error, '')), '; ')
                        FROM backfill_status WHERE parent_job = $job")"
        # The parts: as many as asked for (none for parallel => 1: one job walks every partition), each
        # done, over disjoint partitions that together are the table's.
        read -r parts walk <<<"$(bench_value "
            WITH p AS (SELECT * FROM migration_ext.backfill_job WHERE parent_job = $job),
                 w AS (SELECT * FROM p UNION ALL SELECT * FROM migration_ext.backfill_job j
                       WHERE j.id = $job AND NOT EXISTS (SELECT FROM p))
            SELECT (SELECT count(*) FROM p) || ' '
                   || round(extract(epoch FROM max(finished_at) - min(started_at))::numeric, 3)
                   || ' ' || bool_and(state = 'done')
                   || ' ' || (SELECT count(*) = count(DISTINCT l) AND count(*) = $PARTITIONS FROM w, unnest(w.partitions) l)
            FROM w" | awk '{ if ($3 != "true" || $4 != "true") print "bad", $0; else print $1, $2 }')"
        [[ $parts != bad ]] || bench_die "${LABEL[$key]}, round $round: job $job: parts not all done or not disjoint: $walk"
        local want=$((PARALLEL[$key] > 1 ? PARALLEL[$key] : 0))
        ((parts == want)) || bench_die "${LABEL[$key]}, round $round: job $job has $parts parts, expected $want"
    fi
    verify "${LABEL[$key]}, round $round"
    echo "$key $secs $parts $walk" >>"$RUNS"
    echo "bench: round $round, ${LABEL[$key]}: ${secs}s" >&2
}

col() { awk -v k="$1" -v c="$2" '$1 == k { print $c }' "$RUNS"; }
med() { col "$1" 2 | median; }

# shellcheck disable=SC2119  # no extra server settings: cluster.sh's max_worker_processes (16) has room for the parent and its parts
bench_start
WORK=$BENCH_CLUSTER/bench
mkdir -p "$WORK"
RUNS=$WORK/runs
: >"$RUNS"
ROW_BYTES="" TABLE_MB=""
bench_psql -c "CREATE EXTENSION IF NOT EXISTS migration_ext" \
    -c "SELECT create_codec('v2', 'add_prefix:v2:', marker => 'v2:', detect => 'absent')" >/dev/null
mkdir -p "$BENCH_RESULTS"
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
methods=(update p1 p2)
echo "bench: cluster in $PGHOST, $ROWS rows in $PARTITIONS hash partitions, $REPEAT rounds of ${#methods[@]} methods (load: $LOAD_BEFORE)" >&2
for ((round = 1; round <= REPEAT; round++)); do
    for key in "${methods[@]}"; do run "$key" "$round"; done
done
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

table=$(
    echo "| method | median wall (s) | runs (s) | rows/s | speed vs one UPDATE | parts | median walk of the parts (s) |"
    echo "|---|---:|---:|---:|---:|---:|---:|"
    base=$(med update)
    for key in "${methods[@]}"; do
        s=$(med "$key")
        runs=$(col "$key" 2 | awk '{ printf "%s%.2f", (NR > 1 ? ", " : ""), $1 }')
        w=$(col "$key" 4 | grep -v '^-$' | median || echo -)
        p=$(col "$key" 3 | head -n1)
        awk -v l="${LABEL[$key]}" -v s="$s" -v b="$base" -v runs="$runs" -v n="$ROWS" -v p="$p" -v w="$w" 'BEGIN {
            printf "| %s | %.2f | %s | %.0f | %.2fx | %s | %s |\n", l, s, runs, n / s, b / s,
                (p == "-" ? "-" : (p == 0 ? "1 job, no parts" : p)), (w == "-" ? "-" : sprintf("%.2f", w)) }'
    done
)
verdicts=$(
    u=$(med update) s1=$(med p1) s2=$(med p2)
    awk -v u="$u" -v a="$s1" -v b="$s2" 'BEGIN {
        printf "parallel => 2 against parallel => 1: %.2fx the speed (%.2f s vs %.2f s; 2 would be ideal)\n", a / b, b, a
        printf "parallel => 1 against one UPDATE: %.2fx its speed (%.2f s vs %.2f s)\n", u / a, a, u
        printf "parallel => 2 against one UPDATE: %.2fx its speed (%.2f s vs %.2f s)\n", u / b, b, u }'
)
report="$table

$verdicts"
echo "$report"
{
    echo "# parallel: a partitioned table converted by one UPDATE, and by a backfill with parallel => 1 and 2"
    echo
    bench_meta
    echo "- load average (1, 5, 15 min) before: $LOAD_BEFORE; after: $LOAD_AFTER. The two parts share the host's $(nproc) CPUs with the server's other processes and with anything else running there"
    echo "- rows: $ROWS in a table partitioned by hash of id into $PARTITIONS partitions (id bigint primary key, token text = md5(id), filler text of 40 bytes; $ROW_BYTES bytes a row, $TABLE_MB MB of heap); $REPEAT interleaved rounds, median per method; every run on a freshly built, VACUUMed and CHECKPOINTed table"
    echo "- conversion: codec v2 = add_prefix:v2: (marker 'v2:', detect 'absent'); the UPDATE: \`UPDATE t SET token = 'v2:' || token WHERE left(token, 3) <> 'v2:'\`"
    echo "- time: clock_timestamp() in one psql session around the UPDATE, or from before start_backfill() to CALL await_backfill() returning (the parent's worker sums its parts twice a second, and await_backfill looks every 0.2 s: both included). Walk of the parts: first part's start to last part's end, from the jobs' own rows (parallel => 1: the one job's start to end)"
    echo "- every run verified: 0 legacy rows, every row exactly 'v2:' || md5(id); backfills also: the job done with all rows scanned and converted, 0 conflicts; its parts done, over disjoint partitions covering the table"
    echo
    echo "$report"
} >"$BENCH_RESULTS/parallel.md"
echo "bench: wrote $BENCH_RESULTS/parallel.md" >&2
