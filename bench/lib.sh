# shellcheck shell=bash
# Helpers shared by the benchmarks in bench/. Source it from a script that runs `set -euo pipefail`:
#   source "$(dirname "$0")/lib.sh"
#   bench_start               # throwaway cluster, stopped and removed on exit
#   bench_psql -c 'SELECT 1'
#   median_ms 7 'SELECT count(token) FROM accounts'
#
# Environment: BENCH_SHARED (baseline scripts; default <repo>/../shared/bench), BENCH_PORT, BENCH_DB,
# TMPDIR (where the cluster directory goes), BENCH_KEEP=1 to leave the cluster running for inspection.

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BENCH_REPO=$(dirname "$BENCH_DIR")
# The baselines live beside the repo, not in it; resolve once so messages show a real path.
BENCH_SHARED=${BENCH_SHARED:-$(realpath -m "$BENCH_REPO/../shared/bench")}
export BENCH_RESULTS=$BENCH_DIR/results  # where scripts write their reports
BENCH_DB=${BENCH_DB:-postgres}
# The socket lives in the cluster's own directory and TCP is off, so the port cannot collide with
# another cluster; it only has to be a valid number.
BENCH_PORT=${BENCH_PORT:-54329}
BENCH_CLUSTER=""

# shellcheck source=../test/tools/cluster.sh
source "$BENCH_REPO/test/tools/cluster.sh"

bench_die() { echo "bench: $*" >&2; exit 1; }

bench_cleanup() {
    local rc=$?
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
    [[ -d $BENCH_SHARED ]] || bench_die "baselines not found at $BENCH_SHARED (set BENCH_SHARED)"
    [[ -f $("$PG_CONFIG" --pkglibdir)/migration_ext.so ]] ||
        bench_die "migration_ext is not installed: make -C $BENCH_REPO -j2 && make -C $BENCH_REPO install"
    BENCH_CLUSTER=$(cluster_mktemp)
    local exports
    # shared_buffers holds the whole table, so every timed scan is a memory scan; big max_wal_size and
    # checkpoint_timeout keep checkpoints out of the setup; jit=off because JIT compile time on a
    # 1M-row count dominates differences between functions and varies run to run.
    exports=$(cluster_start "$BENCH_CLUSTER" "$BENCH_PORT" \
        "shared_buffers = 1GB" "max_wal_size = 8GB" "checkpoint_timeout = 30min" "jit = off" "$@")
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
