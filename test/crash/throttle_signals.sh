#!/usr/bin/env bash
# The backfill's throttle signals on a real server of this test's own (DESIGN.md §2, "Throttled"):
#   (a) too many active backends: 4 sessions running busy queries against max_active_backends => 2
#       throttle the job ('active backends N > 2') and it scans nothing; when they end, the job
#       continues and finishes (a throttle never sticks).
#   (b) alter_backfill() on a running job capped at 1000 rows/s to max_rows_per_second => 0 (no cap)
#       makes it finish fast.
#   (c) an operator's pause_backfill() wins over a throttle: paused while throttled -> 'paused'
#       (wait_backfill returns 'paused') and stays paused; resume -> done.
#   (d) a manual VACUUM of the table (slowed down by vacuum_cost_delay) throttles the job with
#       'vacuum running on the table'; the reason clears when the vacuum ends.
#   (e) beside a live workload (pgbench, 200 tx/s) a job started with live_duty_cycle => 0.05 says it
#       shares ('working 5 % of the time'); alter_backfill(live_duty_cycle => 0.1) on the running job
#       changes that to 10 %, and live_duty_cycle => 1 ends the sharing: the job finishes fast.
# After each part every row is converted exactly once.
set -euo pipefail
# shellcheck source=lib/crash_common.bash
source "$(dirname "$(realpath "$0")")/lib/crash_common.bash"

PORT=${MEXT_CRASH_PORT_SIGNALS:-54355}
ROWS=100000
BUSY_SESSIONS=4
BUSY_SECONDS=6
DB=postgres

TMP_DIR=$(cluster_mktemp)
PRIMARY=$TMP_DIR/primary
BG_PIDS=()

cleanup() {
	local rc=$? pid
	for pid in "${BG_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
	if ((rc != 0)) && [[ -f $PRIMARY/server.log ]]; then
		echo "---- last 60 lines of $PRIMARY/server.log ----"
		tail -n 60 "$PRIMARY/server.log" || true
	fi
	cluster_stop "$PRIMARY" >/dev/null 2>&1 || true
	rm -rf "$TMP_DIR"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# matches <what> <actual> <extended regex>
matches() {
	if [[ $2 =~ $3 ]]; then
		say "ok   $1: '$2'"
	else
		say "FAIL $1: '$2' does not match /$3/"
		CHECK_FAILURES=$((CHECK_FAILURES + 1))
	fi
}
yes_no() { if "$@"; then echo yes; else echo no; fi; }
state_reason() { q_try "SELECT state || ' | ' || coalesce(throttle_reason, '<none>') FROM backfill_status WHERE job = $1"; }
state_reason_matches() { [[ $(state_reason "$1") =~ $2 ]]; } # <job> <regex>
# The job moves again: it scanned more than <rows> and its reason no longer matches <regex>.
moving_again() { # <job> <rows> <regex>
	local s sr
	s=$(job_field_try "$1" rows_scanned) || return 1
	sr=$(state_reason "$1") || return 1
	[[ -n $s ]] && ((s > $2)) && ! [[ $sr =~ $3 ]]
}
# held_for <job> <seconds>: rows_scanned does not move for that long; says what it saw.
held_for() {
	local a b
	a=$(job_field "$1" rows_scanned)
	sleep "$2"
	b=$(job_field "$1" rows_scanned)
	check "rows_scanned stays constant for $2 s ($a -> $b)" "$b" "$a"
}
now_ms() { echo $(($(date +%s%N) / 1000000)); }

# busy_sessions <n> <seconds>: n sessions each running a CPU-bound query, ended by statement_timeout.
busy_sessions() {
	local i
	for ((i = 0; i < $1; i++)); do
		"$PG_BINDIR/psql" -X -q -d "$DB" -c "SET statement_timeout = '${2}s'" \
			-c "SELECT count(*) FROM (SELECT generate_series(1, 1000000000)) s" >/dev/null 2>&1 &
		BG_PIDS+=($!)
	done
}
busy_count() { q "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%generate_series(1, 1000000000)%'
                  AND state = 'active' AND pid <> pg_backend_pid()"; }
wait_background() {
	local pid
	for pid in "${BG_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
	BG_PIDS=()
}
# settle_job <job>: after a failed check, let the job end anyway (bounded; cancelled if it will not)
# so that one failure does not cascade into the next part, which recreates the table.
settle_job() {
	local st
	st=$(job_field "$1" state)
	[[ $st == "done" ]] && return 0
	say "job $1 is '$st' ($(state_reason "$1")); waiting up to 60 s for it to end by itself"
	wait_for 60 q_true "SELECT state IN ('done', 'failed', 'cancelled') FROM backfill_status WHERE job = $1" || {
		say "job $1 still '$(job_field "$1" state)': cancelling it"
		q "SELECT cancel_backfill($1)" >/dev/null || true
		wait_for 30 q_true "SELECT state IN ('done', 'failed', 'cancelled') FROM backfill_status WHERE job = $1" || true
	}
	say "job $1 ended: $(job_line "$1")"
}
fresh_table() {
	setup_accounts "$ROWS"
	# Only the vacuum this test runs may throttle a job for "vacuum running on the table".
	q "ALTER TABLE accounts SET (autovacuum_enabled = off)" >/dev/null
}

env=$(cluster_start "$PRIMARY" "$PORT") || die "could not start a cluster in $PRIMARY"
eval "$env"
export PGHOST PGPORT PGUSER
say "own cluster: $PRIMARY, port $PORT"
check "shared_preload_libraries" "$(q "SHOW shared_preload_libraries")" migration_ext
q "CREATE DATABASE sigdb" >/dev/null
DB=sigdb

# ------------------------------------------------------------------ (a) active backends
say "(a) too many active backends"
fresh_table
JOB=$(q "SELECT start_backfill('accounts', 'token', 'v2', batch_size => 1000, max_rows_per_second => 20000,
                               max_active_backends => 2)")
say "started job $JOB: batch 1000, capped at 20000 rows/s, max_active_backends 2"
wait_for 20 scanned_above "$JOB" 5000 || die "job $JOB never got past 5000 rows ($(job_line "$JOB"))"
busy_sessions "$BUSY_SESSIONS" "$BUSY_SECONDS"
t0=$(now_ms)
ACTIVE_RE='^throttled \| active backends [0-9]+ > 2$'
if wait_for 5 state_reason_matches "$JOB" "$ACTIVE_RE"; then
	say "throttled $(($(now_ms) - t0)) ms after $BUSY_SESSIONS busy sessions started ($(busy_count) active)"
fi
sr=$(state_reason "$JOB")
say "state | throttle_reason: $sr"
matches "throttled on active backends" "$sr" "$ACTIVE_RE"
n=$(sed -E 's/^.*active backends ([0-9]+) > 2$/\1/' <<<"$sr")
check "active backends counted at least the $BUSY_SESSIONS busy sessions" "$(yes_no test "${n:-0}" -ge "$BUSY_SESSIONS")" yes
held_for "$JOB" 2
check "job $JOB is not done while throttled" "$(yes_no test "$(job_field "$JOB" rows_scanned)" -lt "$ROWS")" yes
before=$(job_field "$JOB" rows_scanned)
wait_background
say "the busy sessions ended ($(busy_count) still active)"
t0=$(now_ms)
if wait_for 10 moving_again "$JOB" "$before" 'active backends'; then
	say "moving again $(($(now_ms) - t0)) ms after the busy sessions ended: $(state_reason "$JOB")"
fi
check "job $JOB continues after the busy sessions ended" \
	"$(yes_no moving_again "$JOB" "$before" 'active backends')" yes
check "wait_backfill($JOB, '60 s')" "$(q "SELECT wait_backfill($JOB, interval '60 seconds')")" "done"
settle_job "$JOB"
exactly_once "$ROWS" "$JOB"

# ------------------------------------------------------------------ (b) alter_backfill lifts a rate cap
say "(b) alter_backfill(max_rows_per_second => 0) on a job capped at 1000 rows/s"
fresh_table
JOB=$(q "SELECT start_backfill('accounts', 'token', 'v2', batch_size => 1000, max_rows_per_second => 1000)")
say "started job $JOB: batch 1000, capped at 1000 rows/s (would take $((ROWS / 1000)) s)"
wait_for 20 scanned_above "$JOB" 1000 || die "job $JOB never got past 1000 rows ($(job_line "$JOB"))"
sleep 1
say "capped: $(job_line "$JOB") | $(state_reason "$JOB") | $(job_field "$JOB" rows_per_second) rows/s"
check "job $JOB is far from done under its cap" "$(yes_no test "$(job_field "$JOB" rows_scanned)" -le 10000)" yes
check "max_rows_per_second before" "$(job_field "$JOB" max_rows_per_second)" 1000
t0=$(now_ms)
q "SELECT alter_backfill($JOB, max_rows_per_second => 0)" >/dev/null
check "max_rows_per_second after alter_backfill(..., 0)" "$(job_field "$JOB" "coalesce(max_rows_per_second::text, '<null>')")" "<null>"
check "wait_backfill($JOB, '30 s')" "$(q "SELECT wait_backfill($JOB, interval '30 seconds')")" "done"
elapsed=$(($(now_ms) - t0))
settle_job "$JOB"
say "finished $elapsed ms after the cap was lifted"
check "finished within 20 s of alter_backfill (the cap alone needed ~$((ROWS / 1000)) s)" \
	"$(yes_no test "$elapsed" -lt 20000)" yes
exactly_once "$ROWS" "$JOB"

# ------------------------------------------------------------------ (c) a manual pause wins
say "(c) pause_backfill while throttled"
fresh_table
JOB=$(q "SELECT start_backfill('accounts', 'token', 'v2', batch_size => 1000, max_rows_per_second => 20000,
                               max_active_backends => 2)")
say "started job $JOB: batch 1000, capped at 20000 rows/s, max_active_backends 2"
wait_for 20 scanned_above "$JOB" 5000 || die "job $JOB never got past 5000 rows ($(job_line "$JOB"))"
busy_sessions "$BUSY_SESSIONS" 8
wait_for 5 state_reason_matches "$JOB" "$ACTIVE_RE" || true
matches "throttled on active backends before the pause" "$(state_reason "$JOB")" "$ACTIVE_RE"
q "SELECT pause_backfill($JOB)" >/dev/null
check "wait_backfill($JOB, '10 s') after pause_backfill" "$(q "SELECT wait_backfill($JOB, interval '10 seconds')")" paused
check "state | throttle_reason while paused" "$(state_reason "$JOB")" "paused | paused by operator"
held_for "$JOB" 1.5
check "still paused while the busy sessions run ($(busy_count) active)" "$(state_reason "$JOB")" \
	"paused | paused by operator"
q "SELECT resume_backfill($JOB)" >/dev/null
# What an operator types next: wait for the resumed job. The busy sessions still run, so it is
# throttled again for a few seconds, then finishes. (Until ae52b5e a resumed job kept the stale
# 'paused' until its worker's next batch, which a throttle delays: this wait returned 'paused'.)
check "wait_backfill($JOB, '60 s') right after resume_backfill" \
	"$(q "SELECT wait_backfill($JOB, interval '60 seconds')")" "done"
say "after the wait: $(state_reason "$JOB") ($(busy_count) busy sessions active)"
wait_background
settle_job "$JOB"
exactly_once "$ROWS" "$JOB"

# ------------------------------------------------------------------ (d) a vacuum of the table
say "(d) a manual VACUUM of the table"
fresh_table
JOB=$(q "SELECT start_backfill('accounts', 'token', 'v2', batch_size => 1000, max_rows_per_second => 10000)")
say "started job $JOB: batch 1000, capped at 10000 rows/s"
wait_for 20 scanned_above "$JOB" 5000 || die "job $JOB never got past 5000 rows ($(job_line "$JOB"))"
# Slowed down so that it lasts; statement_timeout ends it after 5 s at the latest.
"$PG_BINDIR/psql" -X -q -d "$DB" -c "SET statement_timeout = '5s'" -c "SET vacuum_cost_delay = 10" \
	-c "SET vacuum_cost_limit = 1" -c "VACUUM (VERBOSE OFF) accounts" >/dev/null 2>&1 &
BG_PIDS+=($!)
VACUUM_RE='^throttled \| vacuum running on the table$'
t0=$(now_ms)
if wait_for 5 state_reason_matches "$JOB" "$VACUUM_RE"; then
	say "throttled $(($(now_ms) - t0)) ms after the VACUUM started"
fi
say "pg_stat_progress_vacuum: $(q "SELECT coalesce(string_agg(format('%s %s', relid::regclass, phase), ', '), '<none>')
                                  FROM pg_stat_progress_vacuum")"
check "state | throttle_reason while the VACUUM runs" "$(state_reason "$JOB")" "throttled | vacuum running on the table"
held_for "$JOB" 1
before=$(job_field "$JOB" rows_scanned)
wait_background
check "no vacuum of the table is running any more" "$(q "SELECT count(*) FROM pg_stat_progress_vacuum")" 0
t0=$(now_ms)
if wait_for 10 moving_again "$JOB" "$before" 'vacuum'; then
	say "moving again $(($(now_ms) - t0)) ms after the VACUUM ended: $(state_reason "$JOB")"
fi
check "the vacuum reason cleared and job $JOB continues" "$(yes_no moving_again "$JOB" "$before" 'vacuum')" yes
check "wait_backfill($JOB, '60 s')" "$(q "SELECT wait_backfill($JOB, interval '60 seconds')")" "done"
check "throttle_reason when done" "$(job_field "$JOB" "coalesce(throttle_reason, '<none>')")" "<none>"
exactly_once "$ROWS" "$JOB"

# ------------------------------------------------------------------ (e) sharing with a live workload
say "(e) live_duty_cycle beside a live workload"
E_ROWS=$((3 * ROWS)) # at 5 % and then 10 % of the time the job must still be running when both are looked at
setup_accounts "$E_ROWS"
q "ALTER TABLE accounts SET (autovacuum_enabled = off)" >/dev/null
# A query on a table: PostgreSQL 15 publishes a backend's commit count only with other statistics it
# has pending, so a workload of bare SELECT 1 would not show in pg_stat_database.
q "CREATE TABLE live_counter (id int PRIMARY KEY, n int); INSERT INTO live_counter VALUES (1, 0)" >/dev/null
echo 'SELECT n FROM live_counter WHERE id = 1;' >"$TMP_DIR/live.sql"
"$PG_BINDIR/pgbench" -n -f "$TMP_DIR/live.sql" -R 200 -c 2 -T 120 "$DB" >"$TMP_DIR/pgbench.log" 2>&1 &
WORKLOAD_PID=$!
BG_PIDS+=("$WORKLOAD_PID")
sleep 2 # the job sees the workload's commits from its first look on
kill -0 "$WORKLOAD_PID" 2>/dev/null || die "pgbench did not start: $(cat "$TMP_DIR/pgbench.log")"
say "workload: $(q "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pgbench'") pgbench sessions, $(q "SELECT sum(xact_commit) FROM pg_stat_database") commits so far"
# Without space reuse: its VACUUM rounds would take their share of the time this part compares.
JOB=$(q "SELECT start_backfill('accounts', 'token', 'v2', live_duty_cycle => 0.05, reuse_space => false)")
say "started job $JOB beside pgbench at 200 tx/s: live_duty_cycle 0.05"
share_re() { echo "^(running|throttled) \\| sharing with a live workload \\([0-9]+ tx/s\\): working $1 % of the time\$"; }
wait_for 10 state_reason_matches "$JOB" "$(share_re 5)" || true
matches "job $JOB shares with the workload" "$(state_reason "$JOB")" "$(share_re 5)"
a=$(job_field "$JOB" rows_scanned)
sleep 2
b=$(job_field "$JOB" rows_scanned)
say "at 5 %: $((b - a)) rows in 2 s; $(job_line "$JOB")"
q "SELECT alter_backfill($JOB, live_duty_cycle => 0.1)" >/dev/null
check "live_duty_cycle after alter_backfill" "$(job_field "$JOB" live_duty_cycle)" 0.1
wait_for 10 state_reason_matches "$JOB" "$(share_re 10)" || true
matches "the running job shares at the new duty cycle" "$(state_reason "$JOB")" "$(share_re 10)"
left=$((E_ROWS - $(job_field "$JOB" rows_scanned)))
t0=$(now_ms)
q "SELECT alter_backfill($JOB, live_duty_cycle => 1)" >/dev/null
check "wait_backfill($JOB, '60 s') after live_duty_cycle => 1" "$(q "SELECT wait_backfill($JOB, interval '60 seconds')")" "done"
elapsed=$(($(now_ms) - t0))
say "the last $left rows took $elapsed ms without sharing (at 5 %: $((b - a)) rows in 2 s)"
check "without sharing the rest took less than a quarter of its time at 5 %" \
	"$(yes_no test $((elapsed * (b - a + 1) * 4)) -lt $((left * 2000)))" yes
check "pgbench still running: the workload lasted the whole part" "$(yes_no kill -0 "$WORKLOAD_PID")" yes
kill "$WORKLOAD_PID" 2>/dev/null || true
wait_background
settle_job "$JOB"
exactly_once "$E_ROWS" "$JOB"
finish
