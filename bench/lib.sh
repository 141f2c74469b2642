# shellcheck shell=bash
# Helpers shared by the benchmarks in bench/. Source it from a script that runs `set -euo pipefail`:
#   source "$(dirname "$0")/lib.sh"
#   bench_start               # throwaway cluster, stopped and removed on exit
#   bench_psql -c 'SELECT 1'
#   median_ms 7 'SELECT count(token) FROM accounts'
#
# Environment: BENCH_FIXTURES (the table and baseline scripts; default bench/fixtures), BENCH_PORT, BENCH_DB,
# TMPDIR (where the cluster directory goes), BENCH_KEEP=1 to leave the cluster running for inspection,
# BENCH_HUGE_PAGES=1 for shared memory in huge pages (reserve them first: see bench_start).

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BENCH_REPO=$(dirname "$BENCH_DIR")
# The baselines live beside the repo, not in it; resolve once so messages show a real path.
BENCH_FIXTURES=${BENCH_FIXTURES:-$BENCH_DIR/fixtures}
export BENCH_RESULTS=$BENCH_DIR/results  # where scripts write their reports
BENCH_DB=${BENCH_DB:-postgres}
# The socket lives in the cluster's own directory and TCP is off, so the port cannot collide with
# another cluster; it only has to be a valid number.
BENCH_PORT=${BENCH_PORT:-54329}
BENCH_CLUSTER=""

# shellcheck source=../test/tools/cluster.sh
source "$BENCH_REPO/test/tools/cluster.sh"

bench_die() { echo "bench: $*" >&2; exit 1; }

# Background helpers a script started (pgbench, samplers): stopped by pid before the server goes.
BENCH_PIDS=()
bench_track() { BENCH_PIDS+=("$1"); }
bench_untrack() {  # <pid>: once waited for, so cleanup never signals a recycled pid
    local keep=() pid
    for pid in ${BENCH_PIDS[@]+"${BENCH_PIDS[@]}"}; do [[ $pid == "$1" ]] || keep+=("$pid"); done
    BENCH_PIDS=(${keep[@]+"${keep[@]}"})
}

bench_cleanup() {
    local rc=$? pid
    for pid in ${BENCH_PIDS[@]+"${BENCH_PIDS[@]}"}; do kill "$pid" 2>/dev/null || true; done
    BENCH_PIDS=()
    if [[ -n $BENCH_CLUSTER ]]; then
        if [[ ${BENCH_KEEP:-0} == 1 ]]; then
            echo "bench: BENCH_KEEP=1, cluster left running in $BENCH_CLUSTER (stop: test/tools/cluster.sh stop $BENCH_CLUSTER)" >&2
        else
            cluster_stop "$BENCH_CLUSTER" || echo "bench: could not remove $BENCH_CLUSTER" >&2
        fi
        BENCH_CLUSTER=""
    fi
    return "$rc"
}
trap bench_cleanup EXIT
# Turn signals into a normal exit so the EXIT trap stops the server.
trap 'exit 130' INT
trap 'exit 143' TERM

# bench_start [extra postgresql.conf lines...]: a fresh cluster with settings that keep the measured
# statements away from I/O and background noise; exports PGHOST/PGPORT/PGUSER.
bench_start() {
    [[ -f $("$PG_CONFIG" --pkglibdir)/migration_ext.so ]] ||
        bench_die "migration_ext is not installed: make -C $BENCH_REPO -j2 && make -C $BENCH_REPO install"
    BENCH_CLUSTER=$(cluster_mktemp)
    local exports huge=()
    # BENCH_HUGE_PAGES=1: shared memory in 2 MB pages. On a VM where page faults are costly (this one:
    # a fresh backend or worker faults on the first touch of every 4 kB of shared buffers it reads) that
    # halves the workload's latency and speeds the jobs; it needs the pages reserved beforehand.
    if [[ ${BENCH_HUGE_PAGES:-0} == 1 ]]; then
        (($(awk '/^HugePages_Free:/ { print $2 }' /proc/meminfo) >= 600)) ||
            bench_die "BENCH_HUGE_PAGES=1 needs 600 free huge pages for shared_buffers = 1GB: echo 700 > /proc/sys/vm/nr_hugepages"
        huge=("huge_pages = on")
    fi
    # shared_buffers holds the whole table, so every timed scan is a memory scan; big max_wal_size and
    # checkpoint_timeout keep checkpoints out of the setup; jit=off because JIT compile time on a
    # 1M-row count dominates differences between functions and varies run to run.
    exports=$(cluster_start "$BENCH_CLUSTER" "$BENCH_PORT" \
        "shared_buffers = 1GB" "max_wal_size = 8GB" "checkpoint_timeout = 30min" "jit = off" ${huge[@]+"${huge[@]}"} "$@")
    eval "$exports"
    [[ -n ${PGHOST:-} ]] || bench_die "cluster did not start"
}

# client_min_messages: setup.sql's "DROP TABLE IF EXISTS" NOTICE is noise, not news.
bench_psql() { PGOPTIONS="${PGOPTIONS:-} -c client_min_messages=warning" psql -X -q -v ON_ERROR_STOP=1 -d "$BENCH_DB" "$@"; }

# One value, no decoration.
bench_value() { bench_psql -At -c "$1"; }

# median < numbers: median of one number per line.
median() {
    sort -g | awk '{ v[NR] = $1 } END {
        if (NR == 0) exit 1
        if (NR % 2) printf "%.3f\n", v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# time_rounds <rounds> <setup sql> <stmt>...: in ONE session (same backend, same caches), runs the
# statements interleaved round after round — s1 s2 .. sN, s1 s2 .. sN, … — and prints one line per
# statement: its median time in ms. Interleaving spreads slow drifts (other tenants, frequency scaling)
# over all statements instead of charging them to whichever ran last. Times are psql's \timing: the
# client round trip over a unix socket is microseconds, far below a full scan.
time_rounds() {
    local rounds=$1 setup=$2; shift 2
    local n=$# r stmt times
    times=$(
        {
            echo "$setup"
            echo '\o /dev/null'        # drop the result rows; \timing still prints to stdout
            printf '%s\n' '\timing on'
            for ((r = 0; r < rounds; r++)); do
                for stmt in "$@"; do echo "$stmt;"; done
            done
        } | bench_psql | awk '/^Time: / { print $2 }'
    )
    [[ $(wc -l <<<"$times") -eq $((rounds * n)) ]] ||
        bench_die "expected $((rounds * n)) timings, got: $times"
    local i
    for ((i = 1; i <= n; i++)); do
        # Statement i's timings are lines i, i+n, i+2n, …
        awk -v i="$i" -v n="$n" '(NR - i) % n == 0' <<<"$times" | median
    done
}

# median_ms <k> <sql> [setup sql]: median over k runs of one statement, in one session.
median_ms() { time_rounds "$1" "${3:-}" "$2"; }

# bench_rebuild <rows>: the baseline table from scratch, then a checkpoint, so every timed method starts
# from the same heap and pays the same full-page writes.
bench_rebuild() {
    bench_psql -v N="$1" -f "$BENCH_FIXTURES/setup.sql"
    bench_psql -c CHECKPOINT
}

# bench_meta: the report lines every result file starts with (date, server, host, source revision).
bench_meta() {
    echo "- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    echo "- PostgreSQL $(bench_value "SHOW server_version"); shared_buffers=$(bench_value "SHOW shared_buffers"), huge_pages=$(bench_value "SHOW huge_pages"), jit=off"
    # The installed .so is what ran; the commit only says roughly which sources it came from.
    echo "- host: $(nproc) CPUs, $(uname -r), shared with other work; repo at $(git -C "$BENCH_REPO" describe --always --dirty 2>/dev/null || echo unknown)"
}

# bench_extension: migration_ext and the codec of the baselines' conversion, 'v2:' || reverse(token).
bench_extension() {
    bench_psql -c "CREATE EXTENSION IF NOT EXISTS migration_ext" \
        -c "SELECT create_codec('v2', 'reverse|add_prefix:v2:', 'v2:', 'absent')" >/dev/null
}

# bench_verify <rows> <what> [<table>]: every row of accounts (or <table>) holds exactly the baselines'
# conversion of its original token.
bench_verify() {
    local bad
    bad=$(bench_value "SELECT count(*) FILTER (WHERE token IS DISTINCT FROM 'v2:' || reverse(md5(id::text)))
                       || ' ' || count(*) FROM ${3:-accounts}")
    [[ $bad == "0 $1" ]] || bench_die "$2: wrong result: <wrong rows> <total rows> = $bad, expected 0 $1"
}

# percentile <p> < numbers: nearest-rank percentile of one number per line.
percentile() {
    sort -g | awk -v p="$1" '{ v[NR] = $1 } END {
        if (NR == 0) exit 1
        i = int(p / 100 * NR); if (i < p / 100 * NR) i++; if (i < 1) i = 1
        printf "%.3f\n", v[i] }'
}
