#!/usr/bin/env bash
# Read-path benchmark: migrate_value vs the inlined SQL CASE of bench/fixtures/smart_read.sql.
#
# Target: over 1,000,000 half-converted rows, migrate_value's per-row cost above a plain scan is at
# most 0.5x that of the inlined SQL CASE, where per-row cost = (time(count(f(token))) - time(count(token))) / rows.
#
# Usage: bench/smart_read.sh      (BENCH_ROWS=1000000, BENCH_ROUNDS=11; see bench/lib.sh for the rest)
# Prints a Markdown table and writes it to bench/results/smart_read.md. Exits 0 whether the goal is met
# or not (benchmarks report, they don't gate); non-zero only when something breaks.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

ROWS=${BENCH_ROWS:-1000000}
ROUNDS=${BENCH_ROUNDS:-11}  # ~1 s per round; this box is shared, so more rounds steady the median
GOAL=0.5
[[ $ROWS =~ ^[1-9][0-9]*$ ]] || bench_die "BENCH_ROWS must be a positive integer"
((ROUNDS >= 7)) || bench_die "BENCH_ROUNDS must be at least 7 for a meaningful median"

# shellcheck disable=SC2119  # no extra server settings here
bench_start
echo "bench: cluster in $PGHOST, $ROWS rows, $ROUNDS rounds" >&2

# The table, exactly as the baseline builds it.
bench_psql -v N="$ROWS" -f "$BENCH_FIXTURES/setup.sql"

# The half-conversion and the baseline functions, taken from smart_read.sql itself (everything before
# its timed part) so this benchmark cannot drift from the baseline it is compared with.
prelude=$(sed '/^\\timing/,$d' "$BENCH_FIXTURES/smart_read.sql")
if ! grep -q 'FUNCTION smart_sql' <<<"$prelude" || ! grep -q 'FUNCTION smart_plpgsql' <<<"$prelude" ||
    ! grep -q '^UPDATE accounts' <<<"$prelude"; then
    bench_die "unexpected layout of $BENCH_FIXTURES/smart_read.sql"
fi
bench_psql <<<"$prelude"
converted=$(bench_value "SELECT count(*) FROM accounts WHERE token LIKE 'v2:%'")
((converted == ROWS / 2)) || bench_die "expected $((ROWS / 2)) converted rows, found $converted"

bench_psql -c "CREATE EXTENSION migration_ext" \
    -c "SELECT create_codec('v2', 'reverse|add_prefix:v2:', 'v2:', 'absent')" >/dev/null

# Correctness first: a fast wrong answer is not a result. Serial, like the timed statements: this
# checks the plan being measured (parallel safety belongs in the regression tests).
wrong=$(bench_value "SET max_parallel_workers_per_gather = 0; SELECT count(*) FROM accounts WHERE migrate_value('v2', token) <>
    CASE WHEN token LIKE 'v2:%' THEN token ELSE 'v2:' || reverse(token) END")
((wrong == 0)) || bench_die "migrate_value disagrees with the SQL reference on $wrong rows"

labels=("count(token) (floor)" "count(smart_sql(token)) (inlined CASE)"
    "count(smart_plpgsql(token))" "count(migrate_value('v2', token))")
stmts=("SELECT count(token) FROM accounts" "SELECT count(smart_sql(token)) FROM accounts"
    "SELECT count(smart_plpgsql(token)) FROM accounts" "SELECT count(migrate_value('v2', token)) FROM accounts")

# Serial plans: parallel workers make timings depend on worker start-up and scheduling on a busy box.
# The warm-up pass (not timed) pulls every page into shared_buffers and loads the codec into this
# backend's cache, so the rounds measure CPU only.
setup="SET max_parallel_workers_per_gather = 0;
\\o /dev/null
$(printf '%s;\n' "${stmts[@]}")
\\o"
mapfile -t med < <(time_rounds "$ROUNDS" "$setup" "${stmts[@]}")
((${#med[@]} == 4)) || bench_die "timing failed"

version=$(bench_value "SHOW server_version")
report=$(awk -v rows="$ROWS" -v goal="$GOAL" \
    -v l0="${labels[0]}" -v l1="${labels[1]}" -v l2="${labels[2]}" -v l3="${labels[3]}" \
    -v m0="${med[0]}" -v m1="${med[1]}" -v m2="${med[2]}" -v m3="${med[3]}" 'BEGIN {
    split(l0 SUBSEP l1 SUBSEP l2 SUBSEP l3, l, SUBSEP); m[1] = m0; m[2] = m1; m[3] = m2; m[4] = m3
    case_ns = (m[2] - m[1]) * 1e6 / rows
    if (case_ns <= 0) { print "inlined CASE is not slower than the floor: no meaningful ratio" > "/dev/stderr"; exit 1 }
    print "| method | median ms | per-row cost above floor (ns) | per-row cost vs SQL CASE |"
    print "|---|---:|---:|---:|"
    for (i = 1; i <= 4; i++) {
        ns = (m[i] - m[1]) * 1e6 / rows
        printf "| `%s` | %.1f | %s | %s |\n", l[i], m[i], i == 1 ? "0 (floor)" : sprintf("%.1f", ns),
            i == 1 ? "-" : sprintf("%.2fx", ns / case_ns)
    }
    ratio = (m[4] - m[1]) * 1e6 / rows / case_ns
    printf "\nmigrate_value per-row cost = %.2fx of inlined SQL CASE (goal <= %.1fx): %s\n", ratio, goal,
        sprintf("%.2f", ratio) + 0 <= goal ? "PASS" : "FAIL"
}')

echo "$report"
mkdir -p "$BENCH_RESULTS"
{
    echo "# smart_read: migrate_value vs inlined SQL CASE"
    echo
    echo "- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    echo "- rows: $ROWS (half converted), rounds: $ROUNDS (median per method, interleaved, one session)"
    echo "- PostgreSQL $version; shared_buffers=1GB, jit=off, max_parallel_workers_per_gather=0"
    # The installed .so is what ran; the commit only says roughly which sources it came from.
    echo "- host: $(nproc) CPUs, $(uname -r); repo at $(git -C "$BENCH_REPO" describe --always --dirty 2>/dev/null || echo unknown)"
    echo
    echo "$report"
} >"$BENCH_RESULTS/smart_read.md"
echo "bench: wrote $BENCH_RESULTS/smart_read.md" >&2
