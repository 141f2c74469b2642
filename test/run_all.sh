#!/usr/bin/env bash
# `make test` runner. Assumes migration_ext is already built and installed
# and the CMake build dir ($BUILD_DIR, default "build") holds the unit tests.
#
# Env:
#   MEXT_SUITES         suites to run (default "unit regress isolation pgtap crash"; `make test-citus`
#                       runs "citus")
#   MEXT_TEST_PORT      port of the throwaway cluster (default 54329)
#   MEXT_CITUS_PORT     the citus suite's coordinator; its workers take the next three ports (default 54380)
#   CITUS_TARBALL       the citus suite builds Citus from it unless the same version is installed
#   MEXT_CRASH_TIMEOUT  seconds per crash script (default 600)
#   REGRESS             pg_regress test names (default: the Makefile's REGRESS, sql/*.sql)
#   ISOLATION           isolation spec names (default: the Makefile's ISOLATION)
#   BUILD_DIR, PG_CONFIG
#
# Prints "<suite>: P passed, F failed" per suite and, as the very last line,
# "P passed, F failed" totals. Exits non-zero if anything failed; a suite
# that could not run at all counts as one failure.
set -euo pipefail

# Work from the repo root wherever we are called from (or copied to).
cd "$(dirname "$(realpath "${BASH_SOURCE[0]}")")/.."
ROOT=$PWD
# shellcheck source-path=SCRIPTDIR/..
source test/tools/cluster.sh

BUILD_DIR=${BUILD_DIR:-build}
PORT=${MEXT_TEST_PORT:-54329}
SUITES=${MEXT_SUITES:-unit regress isolation pgtap crash}
CRASH_TIMEOUT=${MEXT_CRASH_TIMEOUT:-600}
PGXS_ROOT=$(dirname "$("$PG_CONFIG" --pgxs)")/../..   # .../lib/pgxs
PG_REGRESS=$PGXS_ROOT/src/test/regress/pg_regress
PG_ISOLATION_REGRESS=$PGXS_ROOT/src/test/isolation/pg_isolation_regress
PSQL=("$PG_BINDIR/psql" -X -q -v ON_ERROR_STOP=1)

# Caller's libpq settings must not redirect our clients elsewhere.
unset PGDATABASE PGSERVICE PGOPTIONS

TMP=$(mktemp -d /tmp/mext-test.XXXXXX)
chmod 755 "$TMP"              # postgres must traverse into cluster dirs
CLUSTER=$TMP/cluster
CLUSTER_OK=0

# Silent (the totals line must stay last): stop the shared cluster, then any
# cluster a crash test or the citus suite left under $TMP, then drop everything.
cleanup() {
    cluster_stop "$CLUSTER" >/dev/null 2>&1 || true
    local pidfile
    find "$TMP" -name postmaster.pid 2>/dev/null | while read -r pidfile; do
        _cluster_as_pg "$PG_BINDIR/pg_ctl" -D "$(dirname "$pidfile")" \
            stop -m immediate -w >/dev/null 2>&1 || true
    done || true
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM      # exit runs the EXIT trap

# A suite reports its counts by calling `counts P F`.
counts() { echo "$1 $2" >"$TMP/counts"; }

need_cluster() {
    ((CLUSTER_OK)) && return 0
    echo "cluster is not running" >&2
    return 1
}

# test_list REGRESS|ISOLATION: the tests of that kind, from the environment if it names them, else
# the Makefile's list, so that this runner and `make installcheck` run the same tests. The make
# flags of a calling `make test` are dropped: its jobserver is not ours to use.
test_list() {
    local kind=$1
    if [[ -n ${!kind:-} ]]; then
        echo "${!kind}"
        return 0
    fi
    env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL \
        make -s --no-print-directory -C "$ROOT" PG_CONFIG="$PG_CONFIG" test-lists |
        sed -n "s/^$kind=//p"
}

# ---------------------------------------------------------------- suites

suite_unit() {
    if [[ ! -f $BUILD_DIR/CTestTestfile.cmake ]]; then
        echo "no CTest build directory at '$BUILD_DIR' (set BUILD_DIR)" >&2
        return 1
    fi
    local log=$TMP/unit.log rc=0
    ctest --test-dir "$BUILD_DIR" --output-on-failure 2>&1 | tee "$log" || rc=$?
    # "92% tests passed, 1 tests failed out of 12"
    local re='([0-9]+) tests? failed out of ([0-9]+)'
    local line
    line=$(grep -E "[0-9]+% tests passed, $re" "$log" | tail -n 1) || true
    if [[ $line =~ $re ]]; then
        counts $((BASH_REMATCH[2] - BASH_REMATCH[1])) "${BASH_REMATCH[1]}"
    elif ((rc == 0)) && grep -q 'No tests were found' "$log"; then
        counts 0 0
    else
        return 1
    fi
}

# run_pg_regress <binary> <inputdir> <outputdir> <dbname> <tests...>
# Shared by pg_regress and pg_isolation_regress (same driver and output).
run_pg_regress() {
    local bin=$1 indir=$2 outdir=$3 db=$4; shift 4
    local log=$outdir.log rc=0 p f
    mkdir -p "$outdir"
    # No --use-existing: in PG15 that also skips creating the test database.
    # Without it pg_regress (re)creates $db with its usual settings
    # (lc_messages=C, datestyle, ...), exactly like `make installcheck`.
    "$bin" --host="$PGHOST" --port="$PGPORT" --user=postgres \
        --bindir="$PG_BINDIR" --inputdir="$indir" --outputdir="$outdir" \
        --dbname="$db" "$@" 2>&1 | tee "$log" || rc=$?
    # PG15: "test codec          ... ok       12 ms" / "... FAILED" /
    # "... failed (ignored)"
    p=$(grep -cE '\.\.\. +ok( |$)' "$log") || true
    f=$(grep -cE '\.\.\. +(FAILED|failed)' "$log") || true
    counts "$p" "$f"
    if ((f > 0)) && [[ -f $outdir/regression.diffs ]]; then
        echo "---- $outdir/regression.diffs (first 200 lines) ----"
        head -n 200 "$outdir/regression.diffs"
    fi
    # A non-zero exit without any failed test means the driver itself broke.
    ((rc == 0 || f > 0))
}

suite_regress() {
    local list tests=()
    list=$(test_list REGRESS)
    read -ra tests <<<"$list"
    if ((${#tests[@]} == 0)); then echo "no regression tests"; counts 0 0; return 0; fi
    need_cluster
    run_pg_regress "$PG_REGRESS" . "$TMP/regress" contrib_regression_mext "${tests[@]}"
}

suite_isolation() {
    local list tests=()
    list=$(test_list ISOLATION)
    read -ra tests <<<"$list"
    if ((${#tests[@]} == 0)); then echo "no isolation specs"; counts 0 0; return 0; fi
    need_cluster
    run_pg_regress "$PG_ISOLATION_REGRESS" test/isolation "$TMP/isolation" \
        isolation_regression_mext "${tests[@]}"
}

suite_pgtap() {
    local files=()
    # Tests are the *.sql files; the preamble they include (preamble.psql) is not one.
    mapfile -t files < <(find test/pgtap -maxdepth 1 -type f -name '*.sql' 2>/dev/null | LC_ALL=C sort)
    if ((${#files[@]} == 0)); then echo "no pgTAP tests"; counts 0 0; return 0; fi
    need_cluster
    # An empty database: each test creates pgtap and migration_ext itself, in
    # the transaction it rolls back (test/pgtap/preamble.psql).
    "${PSQL[@]}" -d postgres -c 'CREATE DATABASE mext_tap'

    local log=$TMP/pgtap.log rc=0 res p f
    pg_prove --nocolor --failures --comments -b "$PG_BINDIR/psql" \
        -h "$PGHOST" -p "$PGPORT" -U postgres -d mext_tap "${files[@]}" 2>&1 |
        tee "$log" || rc=$?

    # Total assertions run come from "Files=F, Tests=T, ...". Failed ones come
    # from the "Test Summary Report" blocks, one per problem file:
    #   test/pgtap/x.sql (Wstat: 0 Tests: 2 Failed: 1)
    #     Failed test:  2
    #     Parse errors: Bad plan.  You planned 3 tests but ran 2.
    # A file that died (non-zero Wstat or parse errors) with no failed
    # assertion still counts as one failure. ("Failed N/M subtests" is not
    # used: it counts planned-but-never-run tests as failed.)
    res=$(awk '
        function flush() {
            if (inblock) { failed += f; if (f == 0 && (w != 0 || perr)) died++ }
            inblock = 0; perr = 0
        }
        function num(re,   s) { if (!match($0, re)) return 0; s = substr($0, RSTART, RLENGTH); gsub(/[^0-9]/, "", s); return s + 0 }
        /\(Wstat: [0-9]+/ && /Failed: [0-9]+\)/ {
            flush(); inblock = 1; w = num("Wstat: [0-9]+"); f = num("Failed: [0-9]+\\)"); next
        }
        inblock && /^ +Parse errors:/ { perr = 1 }
        /^Files=[0-9]+, Tests=[0-9]+,/ { flush(); total = num("Tests=[0-9]+"); seen = 1 }
        END {
            flush()
            if (!seen) exit 1
            p = total - failed; if (p < 0) p = 0
            print p, failed + died
        }' "$log") || { echo "could not parse pg_prove output (exit $rc)" >&2; return 1; }
    read -r p f <<<"$res"
    counts "$p" "$f"
    # pg_prove exits non-zero on failures; that alone is not a crash.
    ((rc == 0 || f > 0))
}

# Every executable script of a folder is one test (crash/restart/standby tests, long torture tests).
run_scripts() {
    local dir=$1 label=$2 scripts=() s name log rc p=0 f=0 t0
    mapfile -t scripts < <(find "$dir" -maxdepth 1 -type f -name '*.sh' 2>/dev/null | LC_ALL=C sort)
    need_cluster
    mkdir -p "$TMP/$label" "$TMP/crash-tmp"
    # timeout puts the test in its own process group (so a timeout kills the
    # whole tree), which also hides it from Ctrl-C: run it in the background
    # and forward INT/TERM ourselves; `wait` is interruptible, a foreground
    # command would delay the trap until the test ends.
    local pid=
    trap 'kill -TERM "$pid" 2>/dev/null; wait "$pid"; exit 130' INT TERM
    for s in "${scripts[@]}"; do
        if [[ ! -x $s ]]; then
            echo "$label: skipping $s (not executable)"
            continue
        fi
        name=$(basename "$s" .sh)
        log=$TMP/$label/$name.log
        t0=$SECONDS
        rc=0
        # TMPDIR lets cleanup find clusters a test made with cluster_mktemp.
        TMPDIR=$TMP/crash-tmp MEXT_CLUSTER_TOOLS=$ROOT/test/tools/cluster.sh \
            timeout -k 30 "$CRASH_TIMEOUT" "$ROOT/$s" </dev/null >"$log" 2>&1 &
        pid=$!
        wait "$pid" || rc=$?
        if ((rc == 0)); then
            echo "$label: $name ... ok ($((SECONDS - t0)) s)"
            p=$((p + 1))
        else
            ((rc == 124)) && rc="timeout after ${CRASH_TIMEOUT} s"
            echo "$label: $name ... FAILED ($rc)"
            echo "---- $name output ----"
            cat "$log"
            echo "---- end of $name output ----"
            f=$((f + 1))
        fi
    done
    counts "$p" "$f"
}

suite_crash() { run_scripts test/crash crash; }
suite_long() { run_scripts test/long long; }

# The Citus suite (test/citus): pg_regress files against a coordinator and two workers of its own, with
# a third node started but left out of the cluster, for the test that adds a worker. The files reach each
# node through the ports in MEXT_CITUS_*_PORT (psql's \getenv). Then the scripts of test/citus/live, each
# on a Citus cluster it starts (a live workload, a node killed).
suite_citus() {
    # shellcheck source-path=SCRIPTDIR/..
    source test/tools/citus.sh
    citus_ensure
    local port=${MEXT_CITUS_PORT:-54380} dir=$TMP/citus list tests=()
    citus_start "$dir" "$port" 2 >/dev/null
    citus_start_node "$dir/worker3" $((port + 3))
    mapfile -t tests < <(find test/citus/sql -maxdepth 1 -name '*.sql' -printf '%f\n' | sed 's/\.sql$//' | LC_ALL=C sort)
    ((${#tests[@]} > 0)) || { echo "no Citus tests in test/citus/sql" >&2; return 1; }
    # The workers' own connections, for the files' \getenv; the database and its settings exist already.
    PGHOST=localhost PGPORT=$port MEXT_CITUS_COORDINATOR_PORT=$port MEXT_CITUS_WORKER1_PORT=$((port + 1)) \
        MEXT_CITUS_WORKER2_PORT=$((port + 2)) MEXT_CITUS_LATE_WORKER_PORT=$((port + 3)) \
        run_pg_regress "$PG_REGRESS" test/citus "$TMP/citus-regress" postgres --use-existing "${tests[@]}"
    local regress_p regress_f
    read -r regress_p regress_f <"$TMP/counts"
    # The live scripts (test/citus/live) start clusters of their own (ports MEXT_CITUS_LIVE_PORT and up):
    # this one is stopped first, to leave them the machine.
    citus_stop "$dir" >/dev/null
    MEXT_CITUS_LIVE_PORT=$((port + 10)) CLUSTER_OK=1 run_scripts test/citus/live citus
    local live_p live_f
    read -r live_p live_f <"$TMP/counts"
    counts $((regress_p + live_p)) $((regress_f + live_f))
}

# The codec fuzzer (clang's libFuzzer), for FUZZ_SECONDS; a crash fails it and leaves its input in
# test/fuzz/corpus/ as a regression input.
suite_fuzz() {
    if bash test/fuzz/run.sh; then counts 1 0; else counts 0 1; fi
}

# ---------------------------------------------------------------- main

for s in $SUITES; do
    if [[ $s != unit && $s != fuzz && $s != citus ]]; then
        echo "=== starting test cluster in $CLUSTER (port $PORT) ==="
        # Expected outputs hold no progress NOTICEs, which a slow wait would otherwise print.
        if cluster_start "$CLUSTER" "$PORT" "migration_ext.wait_progress = off" >/dev/null; then
            export PGHOST=$CLUSTER PGPORT=$PORT PGUSER=postgres
            CLUSTER_OK=1
        else
            echo "could not start the test cluster" >&2
        fi
        break
    fi
done

declare -A PASSED FAILED
ORDER=()
for s in $SUITES; do
    [[ -v "PASSED[$s]" ]] && continue        # listed twice
    ORDER+=("$s")
    echo "=== suite: $s ==="
    rm -f "$TMP/counts"
    rc=0
    if declare -F "suite_$s" >/dev/null; then
        # Subshell with errexit really on: calling the suite in an if/||
        # context would silently disable set -e inside it.
        set +e
        (set -e; "suite_$s")
        rc=$?
        set -e
    else
        echo "unknown suite '$s'" >&2
        rc=1
    fi
    p=0 f=0
    [[ -s $TMP/counts ]] && read -r p f <"$TMP/counts"
    if ((rc != 0)); then
        echo "suite $s could not run (exit $rc); counted as 1 failure" >&2
        f=$((f + 1))
    fi
    PASSED[$s]=$p FAILED[$s]=$f
done

echo "=== summary ==="
total_p=0 total_f=0
for s in "${ORDER[@]}"; do
    echo "$s: ${PASSED[$s]} passed, ${FAILED[$s]} failed"
    total_p=$((total_p + PASSED[$s])) total_f=$((total_f + FAILED[$s]))
done
echo "$total_p passed, $total_f failed"
((total_f == 0))
