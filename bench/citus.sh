#!/usr/bin/env bash
# Distributed backfill benchmark: a Citus cluster of a coordinator and 2 workers, all on this machine
# (test/tools/citus.sh). The same rows converted in a Citus distributed table (32 shards, 16 on each
# worker; the backfill runs one part on each worker over its own shards, summed by the coordinator's
# job), and in a plain table of the same shape on the coordinator (one job, one worker). Codec:
# add_prefix:v2: (legacy = no 'v2:' prefix).
#
# Targets: none fixed by the project yet. What it reports: each method's rows/s and the distributed
# table's against the plain one's. On one host the nodes share its CPUs: with 2 cores the two workers'
# parts, the coordinator's gathering and every server's background processes compete for them, so the
# ratio says what splitting the work costs or gains on one machine, not what separate machines would give.
#
# Usage: bench/citus.sh    BENCH_REPEAT (2) interleaved rounds of BENCH_ROWS (1M) per method
# Environment: BENCH_CITUS_PORT (54650): the coordinator's port, workers on the next two (TCP on localhost:
# Citus connects to its nodes by host and port, so these ports must be free).
# Needs Citus installed for PG_CONFIG (test/tools/citus.sh ensure says what is missing).
# Writes bench/results/citus.md. Exits 0 whether the distributed table is faster or not; non-zero only
# when something breaks, a wrong result included (every run is checked: no legacy row left, every row
# exactly converted, the job's account, both workers' parts).
set -euo pipefail
shopt -s inherit_errexit
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
# shellcheck source=../test/tools/citus.sh
source "$BENCH_REPO/test/tools/citus.sh"

ROWS=${BENCH_ROWS:-1000000}
REPEAT=${BENCH_REPEAT:-2}
WAIT=${BENCH_WAIT:-30 min}
PORT=${BENCH_CITUS_PORT:-54650}
WORKERS=2
SHARDS=32
for n in "$ROWS" "$REPEAT" "$PORT"; do
    [[ $n =~ ^[1-9][0-9]*$ ]] || bench_die "BENCH_ROWS, BENCH_REPEAT and BENCH_CITUS_PORT must be positive integers"
done
declare -A LABEL=(
    [dist]="distributed table ($SHARDS shards on $WORKERS workers), one part per worker"
    [local]="plain table on the coordinator, one job"
)
declare -A TABLE=([dist]=t [local]=t_local)

# The nodes: citus.sh's settings, plus those of bench_start (lib.sh) that keep the timed work in memory
# and checkpoints out of it. shared_buffers is per node: three nodes on one host.
_citus_node_conf+=("shared_buffers = 512MB" "max_wal_size = 8GB" "checkpoint_timeout = 30min" "jit = off")

CITUS_DIR=""
citus_bench_cleanup() {
    local rc=$?
    if [[ -n $CITUS_DIR ]]; then
        if [[ ${BENCH_KEEP:-0} == 1 ]]; then
            echo "bench: BENCH_KEEP=1, Citus cluster left running in $CITUS_DIR (stop: test/tools/citus.sh stop $CITUS_DIR)" >&2
        else
            rm -rf "$CITUS_DIR/bench"  # this script's own files, beside the nodes
            citus_stop "$CITUS_DIR" || echo "bench: could not remove $CITUS_DIR" >&2
        fi
        CITUS_DIR=""
    fi
    return "$rc"
}
trap citus_bench_cleanup EXIT

# node_psql <port> <psql args...>: a node of the cluster directly.
node_psql() { PGPORT=$1 bench_psql "${@:2}"; }
ports() { local i; for ((i = 0; i <= WORKERS; i++)); do echo $((PORT + i)); done; }

# rebuild <method>: its table from scratch, all tokens legacy (md5 hex), rows of about 100 bytes (8-byte
# key, 33-byte token, 41-byte filler, 24-byte tuple header), VACUUMed, then a CHECKPOINT on every node.
rebuild() {
    local tab=${TABLE[$1]} p
    bench_psql -v tab="$tab" -v N="$ROWS" -v dist="$([[ $1 == dist ]] && echo 1 || echo 0)" -v S="$SHARDS" <<'SQL'
DROP TABLE IF EXISTS :"tab" CASCADE;
CREATE TABLE :"tab" (id bigint PRIMARY KEY, token text NOT NULL, filler text);
\if :dist
SELECT create_distributed_table(:'tab', 'id', shard_count => :S) \gset
\endif
INSERT INTO :"tab" SELECT g, md5(g::text), repeat('x', 40) FROM generate_series(1, :N) g;
VACUUM ANALYZE :"tab";
SQL
    for p in $(ports); do node_psql "$p" -c CHECKPOINT; done
}

# verify <method> <what>: no legacy row remains, and every row holds exactly 'v2:' || its original token.
verify() {
    local bad
    bad=$(bench_value "SELECT sum((left(token, 3) <> 'v2:')::int) || ' '
                       || sum((token IS DISTINCT FROM 'v2:' || md5(id::text))::int) || ' ' || count(*) FROM ${TABLE[$1]}")
    [[ $bad == "0 0 $ROWS" ]] ||
        bench_die "$2: wrong result: <legacy rows> <rows not exactly converted> <rows> = $bad, expected 0 0 $ROWS"
}

# part_times <port> <parent job>: "<first start> <last end> <parts> <all done> <rows converted>" (epochs)
# of the parts of the coordinator's job on the node at <port>.
part_times() {
    node_psql "$1" -At -c "SELECT extract(epoch FROM min(started_at)) || ' ' || extract(epoch FROM max(finished_at))
                                  || ' ' || count(*) || ' ' || bool_and(state = 'done') || ' ' || sum(rows_converted)
                           FROM migration_ext.backfill_job WHERE parent_job = $2 AND parent_remote"
}

# run <method> <round>: one conversion of a freshly built table, timed between clock_timestamp() calls in
# one session on the coordinator, from before start_backfill() to CALL await_backfill() returning;
# checked. Appends "<method> <seconds> <walk seconds> <rows per worker node|->" to $RUNS, the walk being
# from the first part's start to the last part's end on the workers (the job's start to end for the plain
# table).
run() {
    local key=$1 round=$2 tab=${TABLE[$1]} out job state secs account walk per_node=- what
    what="${LABEL[$key]}, round $round"
    rebuild "$key"
    out=$(bench_psql -At -v tab="$tab" -v wait="$WAIT" <<'SQL'
SELECT clock_timestamp() AS t0 \gset
SELECT start_backfill(:'tab', 'token', 'v2', throttle => false, batch_size => 20000) AS job \gset
CALL await_backfill(:job, :'wait', false) \gset
SELECT extract(epoch FROM clock_timestamp() - :'t0'::timestamptz) AS secs \gset
\echo :job :state :secs
SQL
    )
    read -r job state secs <<<"$(tail -n1 <<<"$out")"
    account=$(bench_value "SELECT state, rows_scanned, rows_converted, conflicts, coalesce(last_error, '-')
                           FROM backfill_status WHERE job = $job")
    [[ $state == "done" && $account == "done|$ROWS|$ROWS|0|-" ]] ||
        bench_die "$what: job $job ended '$state' after ${secs}s;
  state|scanned|converted|conflicts|error = $account, expected done|$ROWS|$ROWS|0|-
  nodes: $(bench_value "SELECT coalesce(nodes::text, '-') FROM backfill_status WHERE job = $job")"
    if [[ $key == dist ]]; then
        # One part on each worker (parallel => 1), done, the two converting every row between them; none on
        # the coordinator, which holds no shards.
        local i p first="" last="" s e n ok rows total=0 nodes
        per_node=""
        for ((i = 1; i <= WORKERS; i++)); do
            p=$((PORT + i))
            read -r s e n ok rows <<<"$(part_times "$p" "$job")"
            [[ $n == 1 && $ok == true ]] || bench_die "$what: job $job on the worker at port $p: $n parts, all done: $ok (expected 1, true)"
            per_node+="${per_node:+/}$rows"
            total=$((total + rows))
            first=$(awk -v a="$first" -v b="$s" 'BEGIN { print (a == "" || b < a) ? b : a }')
            last=$(awk -v a="$last" -v b="$e" 'BEGIN { print (a == "" || b > a) ? b : a }')
        done
        ((total == ROWS)) || bench_die "$what: job $job: the workers' parts converted $total rows, expected $ROWS"
        nodes=$(bench_value "SELECT count(*) FROM backfill_status s, jsonb_each(s.nodes) n WHERE s.job = $job")
        ((nodes == WORKERS)) || bench_die "$what: job $job reports $nodes nodes, expected $WORKERS: $(bench_value "SELECT nodes FROM backfill_status WHERE job = $job")"
        walk=$(awk -v a="$first" -v b="$last" 'BEGIN { printf "%.3f", b - a }')
    else
        walk=$(bench_value "SELECT round(extract(epoch FROM finished_at - started_at)::numeric, 3) FROM migration_ext.backfill_job WHERE id = $job")
    fi
    verify "$key" "$what"
    echo "$key $secs $walk $per_node" >>"$RUNS"
    echo "bench: round $round, ${LABEL[$key]}: ${secs}s ($(awk -v n="$ROWS" -v s="$secs" 'BEGIN { printf "%.0f", n / s }') rows/s)" >&2
}

col() { awk -v k="$1" -v c="$2" '$1 == k { print $c }' "$RUNS"; }

citus_ensure
for p in $(ports); do
    ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || bench_die "port $p is taken; set BENCH_CITUS_PORT to a free range of $((WORKERS + 1)) ports"
done
CITUS_DIR=$(cluster_mktemp)
eval "$(citus_start "$CITUS_DIR" "$PORT" "$WORKERS")"
[[ ${PGPORT:-} == "$PORT" ]] || bench_die "the Citus cluster did not start"
bench_psql -c "SELECT create_codec('v2', 'add_prefix:v2:', marker => 'v2:', detect => 'absent')" >/dev/null
mkdir -p "$BENCH_RESULTS"
WORK=$CITUS_DIR/bench
mkdir -p "$WORK"
RUNS=$WORK/runs
: >"$RUNS"
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
methods=(dist local)
echo "bench: Citus cluster in $CITUS_DIR (coordinator on port $PORT, $WORKERS workers), $ROWS rows, $REPEAT rounds of ${#methods[@]} methods (load: $LOAD_BEFORE)" >&2
for ((round = 1; round <= REPEAT; round++)); do
    for key in "${methods[@]}"; do run "$key" "$round"; done
done
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
# The placement of the distributed table's shards, as the runs had it.
PLACEMENT=$(bench_value "SELECT string_agg(format('%s shards on port %s', n, nodeport), ', ' ORDER BY nodeport)
                         FROM (SELECT nodeport, count(*) AS n FROM citus_shards WHERE table_name = 't'::regclass GROUP BY 1) s")
CITUS_VERSION=$(citus_installed_version)

table=$(
    echo "| method | median wall (s) | runs (s) | rows/s | median walk (s) | rows converted per worker |"
    echo "|---|---:|---:|---:|---:|---:|"
    for key in "${methods[@]}"; do
        s=$(col "$key" 2 | median)
        w=$(col "$key" 3 | median)
        runs=$(col "$key" 2 | awk '{ printf "%s%.2f", (NR > 1 ? ", " : ""), $1 }')
        per=$(col "$key" 4 | head -n1)
        awk -v l="${LABEL[$key]}" -v s="$s" -v w="$w" -v runs="$runs" -v n="$ROWS" -v per="${per:--}" 'BEGIN {
            printf "| %s | %.2f | %s | %.0f | %.2f | %s |\n", l, s, runs, n / s, w, per }'
    done
)
verdicts=$(
    awk -v d="$(col dist 2 | median)" -v l="$(col local 2 | median)" -v dw="$(col dist 3 | median)" \
        -v lw="$(col local 3 | median)" -v n="$ROWS" 'BEGIN {
        printf "distributed against one node: %.2fx the rows/s (%.0f vs %.0f rows/s; walks alone: %.2fx)\n", l / d, n / d, n / l, lw / dw }'
    echo "all three nodes run on this one host of $(nproc) CPUs: the two workers' parts share them with each other, with the coordinator's job gathering their progress twice a second, and with every node's background processes"
)
report="$table

$verdicts"
echo "$report"
{
    echo "# citus: a Citus distributed table's backfill (a part on each worker) against the same rows on one node"
    echo
    bench_meta
    echo "- Citus $CITUS_VERSION: a coordinator and $WORKERS workers, all on this host ($(nproc) CPUs; shared_buffers 512MB each); the distributed table: $PLACEMENT (create_distributed_table(..., shard_count => $SHARDS)); the plain table lives on the coordinator, which holds no shards"
    echo "- load average (1, 5, 15 min) before: $LOAD_BEFORE; after: $LOAD_AFTER"
    echo "- rows: $ROWS in each table (id bigint primary key, token text = md5(id), filler text of 40 bytes); $REPEAT interleaved rounds, median per method; every run on a freshly built, VACUUMed table, CHECKPOINT on every node"
    echo "- conversion: codec v2 = add_prefix:v2: (marker 'v2:', detect 'absent'); start_backfill(..., throttle => false, batch_size => 20000), parallel left at 1 (one part per worker node)"
    echo "- time: clock_timestamp() in one psql session on the coordinator, from before start_backfill() to CALL await_backfill() returning (the coordinator's job gathers the workers' parts twice a second, await_backfill looks every 0.2 s: both included). Walk: the first part's start to the last part's end on the workers, or the plain table's job's start to end"
    echo "- every run verified: 0 legacy rows, every row exactly 'v2:' || md5(id); the job done with all rows scanned and converted, 0 conflicts; for the distributed table one part on each worker, done, the two converting every row"
    echo
    echo "$report"
} >"$BENCH_RESULTS/citus.md"
echo "bench: wrote $BENCH_RESULTS/citus.md" >&2
