#!/usr/bin/env bash
# Repair on read: a read-heavy pgbench workload calling a frozen reader that repairs (repair_value) against
# the same workload calling the plain tolerant reader (migrate_value), on one cluster in one run.
#
#   (a) the minute: BENCH_CLIENTS clients read random rows of the first BENCH_SHARE_ROWS rows for
#       BENCH_SECONDS through the plain reader and through the repairing one, BENCH_MINUTES pairs in
#       alternating order (the rows put back to legacy after each): the share of those rows the reads
#       converted (migration_status.repaired_by_reads, checked against the table), and the mean latency of
#       the repairing minute against the plain one (what the write-back costs a workload whose reads find
#       fewer and fewer legacy rows).
#   (b) the write-back itself: BENCH_ROUNDS interleaved rounds of BENCH_ROUND_SECONDS each, the repairing
#       reader on rows nobody read yet (every read writes back) and the plain reader on legacy rows: the
#       read's latency with its write-back against the plain tolerant read, median of the per-round ratios.
#
# Usage: bench/repair_read.sh   (BENCH_ROWS=1000000, BENCH_SHARE_ROWS=200000, BENCH_SECONDS=60, BENCH_MINUTES=3,
#                               BENCH_ROUNDS=5, BENCH_ROUND_SECONDS=10, BENCH_CLIENTS=4; see bench/lib.sh)
# Prints a Markdown report and writes it to bench/results/repair_read.md.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

ROWS=${BENCH_ROWS:-1000000}
SHARE_ROWS=${BENCH_SHARE_ROWS:-200000}
MINUTE=${BENCH_SECONDS:-60}
MINUTES=${BENCH_MINUTES:-3}
ROUNDS=${BENCH_ROUNDS:-5}
ROUND_SECONDS=${BENCH_ROUND_SECONDS:-10}
CLIENTS=${BENCH_CLIENTS:-4}
PGBENCH=$PG_BINDIR/pgbench
((ROWS > SHARE_ROWS)) || bench_die "BENCH_ROWS must exceed BENCH_SHARE_ROWS"
((ROUNDS >= 3)) || bench_die "BENCH_ROUNDS must be at least 3 for a median"
# Rows after the minute's: one region per repairing round (each client reads its own stride of it in key
# order, so every read finds a row nobody read), and the plain rounds' region.
REGION=$(((ROWS - SHARE_ROWS) / (ROUNDS + 1)))
STRIDE=$((REGION / CLIENTS))

bench_start
echo "bench: cluster in $PGHOST, $ROWS rows, minute on $SHARE_ROWS, $ROUNDS rounds of ${ROUND_SECONDS}s, $CLIENTS clients" >&2
bench_rebuild "$ROWS"
bench_extension
bench_psql >/dev/null <<'SQL'
CREATE FUNCTION read_plain(bigint) RETURNS text LANGUAGE sql STABLE
	AS $$ SELECT migrate_value('v2', token) FROM accounts WHERE id = $1 $$;
CREATE FUNCTION read_repair(bigint) RETURNS text LANGUAGE sql STABLE
	AS $$ SELECT repair_value('accounts_v2', token, id) FROM accounts WHERE id = $1 $$;
SELECT freeze_function('read_plain(bigint)'), freeze_function('read_repair(bigint)');
SELECT create_migration('accounts_v2', 'accounts', 'token', 'v2');
SELECT advance_migration('accounts_v2');
SELECT advance_migration('accounts_v2', confirm => 'accounts_v2', read_sample => 0);
SQL
WORK=$(mktemp -d "${TMPDIR:-/tmp}/repair_read.XXXXXX")
trap 'rm -rf "$WORK"; bench_cleanup' EXIT

printf '\\set id random(1, %d)\nSELECT read_plain(:id);\n' "$SHARE_ROWS" >"$WORK/plain_random.sql"
printf '\\set id random(1, %d)\nSELECT read_repair(:id);\n' "$SHARE_ROWS" >"$WORK/repair_random.sql"
# Each client walks its own stride of a region in key order: every read is of a row nobody read.
printf '\\set n :n + 1\n\\set id :base + :client_id * %d + :n\nSELECT read_%s(:id);\n' "$STRIDE" plain >"$WORK/plain_fresh.sql"
printf '\\set n :n + 1\n\\set id :base + :client_id * %d + :n\nSELECT read_%s(:id);\n' "$STRIDE" repair >"$WORK/repair_fresh.sql"

repaired() { bench_value "SELECT coalesce(repaired_by_reads, 0) FROM migration_status WHERE name = 'accounts_v2'"; }

# run <name> <script> <seconds> [-D base=N]: pgbench; prints "<transactions> <mean ms> <p99 ms>" from its
# per-transaction log (latency in us, 3rd field).
run() {
    local name=$1 script=$2 seconds=$3; shift 3
    rm -f "$WORK/$name".log*
    "$PGBENCH" -n -M prepared -c "$CLIENTS" -j 2 -T "$seconds" -D n=0 "$@" -f "$script" \
        -l --log-prefix="$WORK/$name.log" "$BENCH_DB" >"$WORK/$name.out" 2>&1 ||
        bench_die "pgbench $name failed: $(tail -3 "$WORK/$name.out")"
    local lat
    lat=$(cat "$WORK/$name".log* | awk '{ print $3 / 1000 }')
    printf '%s %s %s\n' "$(wc -l <<<"$lat")" "$(awk '{ s += $1 } END { printf "%.4f", s / NR }' <<<"$lat")" \
        "$(percentile 99 <<<"$lat")"
}

# (a) The minute, BENCH_MINUTES times: the plain reader and the repairing one on the same rows, in
# alternating order; after each pair the rows the reads converted are put back to legacy.
minutes_table="| pair | plain reads | mean ms | repairing reads | mean ms | rows converted by reads | share | mean ratio |"
minutes_table+=$'\n|---:|---:|---:|---:|---:|---:|---:|---:|'
shares=()
minute_ratios=()
for ((m = 0; m < MINUTES; m++)); do
    order=(plain repair)
    ((m % 2 == 0)) || order=(repair plain)
    for kind in "${order[@]}"; do
        if [[ $kind == plain ]]; then
            read -r plain_n plain_mean plain_p99 < <(run minute_plain "$WORK/plain_random.sql" "$MINUTE")
        else
            before=$(repaired)
            read -r repair_n repair_mean repair_p99 < <(run minute_repair "$WORK/repair_random.sql" "$MINUTE")
            by_reads=$(($(repaired) - before))
        fi
    done
    in_table=$(bench_value "SELECT count(*) FROM accounts WHERE id <= $SHARE_ROWS AND token LIKE 'v2:%'")
    ((in_table == by_reads)) || bench_die "repaired_by_reads counted $by_reads, the table holds $in_table converted rows"
    share=$(awk -v a="$by_reads" -v b="$SHARE_ROWS" 'BEGIN { printf "%.1f", 100 * a / b }')
    ratio=$(awk -v a="$repair_mean" -v b="$plain_mean" 'BEGIN { printf "%.3f", a / b }')
    shares+=("$share")
    minute_ratios+=("$ratio")
    minutes_table+=$'\n'"| $((m + 1)) | $plain_n | $plain_mean | $repair_n | $repair_mean | $by_reads | $share % | $ratio |"
    echo "bench: minute $((m + 1)): plain $plain_n reads ($plain_mean ms), repairing $repair_n reads ($repair_mean ms), $by_reads rows converted" >&2
    bench_psql -c "UPDATE accounts SET token = md5(id::text) WHERE id <= $SHARE_ROWS AND token LIKE 'v2:%'" \
        -c "VACUUM accounts" >/dev/null
done
share=$(printf '%s\n' "${shares[@]}" | median)
minute_ratio=$(printf '%s\n' "${minute_ratios[@]}" | median)

# (b) Interleaved rounds; the order within a round alternates.
plain_base=$((SHARE_ROWS + ROUNDS * REGION))
rounds_table="| round | repairing reads | wrote back | mean ms | p99 ms | plain reads | mean ms | p99 ms | mean ratio | p99 ratio |"
rounds_table+=$'\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|'
mean_ratios=()
p99_ratios=()
for ((r = 0; r < ROUNDS; r++)); do
    base=$((SHARE_ROWS + r * REGION))
    order=(repair plain)
    ((r % 2 == 0)) || order=(plain repair)
    for kind in "${order[@]}"; do
        if [[ $kind == repair ]]; then
            before=$(repaired)
            read -r w_n w_mean w_p99 < <(run "round${r}_repair" "$WORK/repair_fresh.sql" "$ROUND_SECONDS" -D base="$base")
            w_wrote=$(($(repaired) - before))
            ((w_wrote * 10 >= w_n * 9)) ||
                bench_die "round $((r + 1)): $w_wrote of $w_n reads wrote back: the clients outran their stride of $STRIDE rows (raise BENCH_ROWS)"
        else
            read -r p_n p_mean p_p99 < <(run "round${r}_plain" "$WORK/plain_fresh.sql" "$ROUND_SECONDS" -D base="$plain_base")
        fi
    done
    mr=$(awk -v a="$w_mean" -v b="$p_mean" 'BEGIN { printf "%.3f", a / b }')
    pr=$(awk -v a="$w_p99" -v b="$p_p99" 'BEGIN { printf "%.3f", a / b }')
    mean_ratios+=("$mr")
    p99_ratios+=("$pr")
    rounds_table+=$'\n'"| $((r + 1)) | $w_n | $w_wrote | $w_mean | $w_p99 | $p_n | $p_mean | $p_p99 | $mr | $pr |"
    echo "bench: round $((r + 1)): write-back $w_mean ms ($w_wrote of $w_n reads wrote), plain $p_mean ms: $mr" >&2
done
mean_ratio=$(printf '%s\n' "${mean_ratios[@]}" | median)
p99_ratio=$(printf '%s\n' "${p99_ratios[@]}" | median)

# Every row holds its legacy token or exactly its conversion.
bad=$(bench_value "SELECT count(*) FROM accounts WHERE token NOT IN (md5(id::text), 'v2:' || reverse(md5(id::text)))")
((bad == 0)) || bench_die "$bad rows hold neither their legacy token nor its conversion"

report=$(
    echo "| what | value |"
    echo "|---|---:|"
    echo "| share of the $SHARE_ROWS rows read that reads converted in ${MINUTE} s (median of $MINUTES) | **$share %** |"
    echo "| mean read latency over that minute, repairing / plain tolerant reader (median of $MINUTES pairs) | **${minute_ratio}x** |"
    echo "| a read that writes back / a plain tolerant read, mean latency (median of $ROUNDS interleaved rounds) | **${mean_ratio}x** |"
    echo "| the same, p99 | **${p99_ratio}x** |"
    echo
    echo "$minutes_table"
    echo
    echo "$rounds_table"
)
echo "$report"
mkdir -p "$BENCH_RESULTS"
{
    echo "# repair_read: repair on read against the plain tolerant read"
    echo
    bench_meta
    echo "- $ROWS rows; pgbench -M prepared, $CLIENTS clients, 2 threads; the minute reads random rows of the first $SHARE_ROWS; each round ${ROUND_SECONDS} s per reader, the repairing one on rows nobody read"
    echo
    echo "$report"
} >"$BENCH_RESULTS/repair_read.md"
echo "bench: wrote $BENCH_RESULTS/repair_read.md" >&2
