#!/usr/bin/env bash
# A codec's scratch memory after a huge value: the backend's private resident memory (Private_Clean +
# Private_Dirty of /proc/<pid>/smaps_rollup) before, right after one migrate_value() of a
# SCRATCH_MB-megabyte legacy value (two built-in steps, so both scratch buffers hold a copy), and
# after the next 10-byte call. Usage: bash bench/scratch_memory.sh   (SCRATCH_MB, default 500)
set -euo pipefail
source "$(dirname "$0")/lib.sh"

MB=${SCRATCH_MB:-500}
bench_start
bench_psql -q -c "CREATE EXTENSION IF NOT EXISTS migration_ext" \
	-c "SELECT create_codec('scratch_v2', 'upper|add_prefix:v2:', marker => 'v2:', detect => 'absent')" >/dev/null

# One session runs the calls; this shell reads its memory between them.
fifo=$(mktemp -u) && mkfifo "$fifo"
bench_psql -q -At <"$fifo" >"$fifo.out" 2>&1 &
session=$!
bench_track "$session"
exec {to_session}>"$fifo"
rm -f "$fifo"
say_to_session() { printf '%s\n' "$1" >&"$to_session"; }
wait_output_lines() { local n=$1; for _ in $(seq 600); do (($(wc -l <"$fifo.out") >= n)) && return; sleep 0.1; done; bench_die "the session did not answer"; }
private_kb() { awk '/^Private_(Clean|Dirty):/ {kb += $2} END {print kb}' "/proc/$1/smaps_rollup"; }

say_to_session "SELECT pg_backend_pid();"
wait_output_lines 1
pid=$(head -n 1 "$fifo.out")
say_to_session "SELECT length(migrate_value('scratch_v2', 'warm-up'));"
wait_output_lines 2
before=$(private_kb "$pid")
say_to_session "SELECT length(migrate_value('scratch_v2', repeat('x', $MB * 1024 * 1024)));"
wait_output_lines 3
after_large=$(private_kb "$pid")
say_to_session "SELECT length(migrate_value('scratch_v2', 'ten bytes!'));"
wait_output_lines 4
after_small=$(private_kb "$pid")
say_to_session '\q'
exec {to_session}>&-
wait "$session" || true
bench_untrack "$session"
rm -f "$fifo.out"

printf 'backend private memory, %s MB value through a two-step codec:\n' "$MB"
printf '  before                       %8.1f MB\n' "$(bc -l <<<"$before / 1024")"
printf '  after the %s MB call        %8.1f MB\n' "$MB" "$(bc -l <<<"$after_large / 1024")"
printf '  after the next 10-byte call  %8.1f MB\n' "$(bc -l <<<"$after_small / 1024")"
