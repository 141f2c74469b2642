#!/usr/bin/env bash
# The backfill throttles on replica replay lag, measured on a real streaming standby of this test's
# own (DESIGN.md §2, "Throttled: ... pauses on replica replay lag"):
#   1. replay paused on the standby: within a few seconds the job is 'throttled' with a reason naming
#      the replica lag and the standby, and scans nothing while held; replay resumed: the job
#      continues by itself and finishes, every row converted exactly once.
#   2. the standby is stopped (it disconnects) in the middle of another job: the job still finishes
#      ('done', never 'failed'): a signal that disappears or cannot be read is not fatal.
set -euo pipefail
# shellcheck source=lib/crash_common.bash
source "$(dirname "$(realpath "$0")")/lib/crash_common.bash"

P_PORT=${MEXT_CRASH_PORT_LAG_PRIMARY:-54353}
S_PORT=${MEXT_CRASH_PORT_LAG_STANDBY:-54354}
ROWS=300000
ROWS2=100000
SETUP_SQL=${MEXT_BENCH_SETUP:-$(realpath -m "$(dirname "$(realpath "$0")")/../../bench/fixtures/setup.sql")}
DB=postgres
trap 'exit 130' INT TERM

replay_paused() {
	q "SELECT pg_current_xact_id()" >/dev/null # the pause takes effect at the next record
	[[ $(qs "SELECT pg_get_wal_replay_pause_state()") == paused ]]
}
# matches <what> <actual> <extended regex>
matches() {
	if [[ $2 =~ $3 ]]; then
		say "ok   $1: '$2'"
	else
		say "FAIL $1: '$2' does not match /$3/"
		CHECK_FAILURES=$((CHECK_FAILURES + 1))
	fi
}
state_reason() { q_try "SELECT state || ' | ' || coalesce(throttle_reason, '<none>') FROM backfill_status WHERE job = $1"; }
lag_throttled() { [[ $(state_reason "$1") == "throttled | replica lag "* ]]; }
# The job moves again: it scanned more than <rows> and no longer waits for the replica.
moving_again() {
	local s sr
	s=$(job_field_try "$1" rows_scanned) || return 1
	sr=$(state_reason "$1") || return 1
	[[ -n $s ]] && ((s > $2)) && [[ $sr != *"replica lag"* ]]
}
load_table() { # load_table <rows>: bench/fixtures/setup.sql, then let the standby catch up
	"$PG_BINDIR/psql" -X -q -v ON_ERROR_STOP=1 -d "$DB" -v N="$1" -f "$SETUP_SQL" >/dev/null 2>&1 ||
		die "$SETUP_SQL failed"
	# No autovacuum of the table in the middle of a check: it would throttle the job for its own
	# reason ("vacuum running on the table"), which throttle_signals.sh checks on its own.
	q "ALTER TABLE accounts SET (autovacuum_enabled = off)" >/dev/null
	wait_for 60 standby_caught_up || die "the standby did not catch up after loading $1 rows"
	say "accounts: $(q "SELECT count(*) FROM accounts") legacy rows (bench setup.sql), standby caught up"
}

# ------------------------------------------------------------------ primary + streaming standby
pair_start "$P_PORT" "$S_PORT" lag_standby
check "shared_preload_libraries (primary)" "$(q "SHOW shared_preload_libraries")" migration_ext

q "CREATE DATABASE lagdb" >/dev/null
DB=lagdb
q "SET client_min_messages = warning; CREATE EXTENSION migration_ext" >/dev/null
q "SELECT create_codec('v2', 'reverse|add_prefix:v2:', 'v2:', 'absent')" >/dev/null
load_table "$ROWS"

# ------------------------------------------------------------------ 1. replay paused, then resumed
say "1. replay paused on the standby"
qs "SELECT pg_wal_replay_pause()" >/dev/null
wait_for 20 replay_paused || die "replay on the standby never paused"
say "standby replay paused at $(qs "SELECT pg_last_wal_replay_lsn()")"

JOB=$(q "SELECT start_backfill('accounts', 'token', 'v2', batch_size => 1000, max_rows_per_second => 20000,
                               max_replica_lag => '1 s')")
say "started job $JOB: $ROWS rows, batch 1000, capped at 20000 rows/s, max_replica_lag 1 s"
check "max_replica_lag_s of job $JOB" "$(job_field "$JOB" max_replica_lag_s)" 1

if wait_for 8 lag_throttled "$JOB"; then
	say "throttled on replica lag after ${SECONDS}s: $(job_line "$JOB")"
else
	say "not throttled on replica lag within 8 s: $(job_line "$JOB") | $(state_reason "$JOB")"
fi
reason=$(job_field "$JOB" "coalesce(throttle_reason, '<none>')")
say "throttle_reason: $reason"
check "state while the standby does not replay" "$(job_field "$JOB" state)" throttled
# The first hold says "lag X s > 1.0 s on <standby>"; a hold that goes on says "lag X s on <standby>
# (resumes below 0.5 s)" (hysteresis). Either names the lag, the limit and the standby.
matches "throttle_reason names the replica lag and the standby" "$reason" \
	"^replica lag [0-9]+(\.[0-9]+)? s (> 1(\.0+)? s on $STANDBY_NAME|on $STANDBY_NAME \(resumes below 0\.50* s\))$"
held1=$(job_field "$JOB" rows_scanned)
sleep 2
held2=$(job_field "$JOB" rows_scanned)
say "while held: $(job_line "$JOB") | $(state_reason "$JOB")"
check "rows_scanned stays constant for 2 s while throttled ($held1 -> $held2)" "$held2" "$held1"
check "job is not done while the standby lags" "$( ((held2 < ROWS)) && echo yes || echo no)" yes
matches "still throttled on replica lag" "$(state_reason "$JOB")" "^throttled \| replica lag .* on $STANDBY_NAME"
# Seen from the standby: the replayed copy of the table has not moved since the pause.
check "standby replayed no conversion" \
	"$(PGHOST=$STANDBY PGPORT=$S_PORT DB=lagdb q "SELECT count(*) FROM accounts WHERE token LIKE 'v2:%'")" 0

qs "SELECT pg_wal_replay_resume()" >/dev/null
t0=$(date +%s%N)
if wait_for 15 moving_again "$JOB" "$held2"; then
	say "moving again $((($(date +%s%N) - t0) / 1000000)) ms after pg_wal_replay_resume(): $(job_line "$JOB")"
else
	say "not moving 15 s after pg_wal_replay_resume(): $(job_line "$JOB") | $(state_reason "$JOB")"
fi
sr=$(state_reason "$JOB")
say "after the resume: $sr"
# Running, or done; a rate-capped job that waits out its cap shows 'throttled | rate cap N rows/s'.
matches "job continues after the resume (state | reason)" "$sr" \
	"^(running \| <none>|done \| <none>|throttled \| rate cap 20000 rows/s)$"
check "rows_scanned grew after the resume" "$( (($(job_field "$JOB" rows_scanned) > held2)) && echo yes || echo no)" yes
check "wait_backfill($JOB, '120 s')" "$(q "SELECT wait_backfill($JOB, interval '120 seconds')")" "done"
exactly_once "$ROWS" "$JOB"
check "warning of job $JOB" "$(job_field "$JOB" "coalesce(warning, '<none>')")" "<none>"
wait_for 60 standby_caught_up || die "the standby did not catch up after job $JOB"
check "standby replayed every conversion" \
	"$(PGHOST=$STANDBY PGPORT=$S_PORT DB=lagdb q "SELECT count(*) FROM accounts WHERE token LIKE 'v2:%'")" "$ROWS"

# ------------------------------------------------------------------ 2. the standby goes away mid-job
say "2. the standby is stopped in the middle of a job"
load_table "$ROWS2"
JOB2=$(q "SELECT start_backfill('accounts', 'token', 'v2', batch_size => 1000, max_rows_per_second => 20000,
                                max_replica_lag => '1 s')")
say "started job $JOB2: $ROWS2 rows, batch 1000, capped at 20000 rows/s, max_replica_lag 1 s"
wait_for 30 scanned_above "$JOB2" 10000 || die "job $JOB2 never got past 10000 rows ($(job_line "$JOB2"))"
say "before the stop: $(job_line "$JOB2") | $(state_reason "$JOB2")"
cluster_pg_ctl "$STANDBY" stop -m fast -w -t 60 >/dev/null || die "could not stop the standby"
no_standby() { [[ $(q_try "SELECT count(*) FROM pg_stat_replication") == 0 ]]; }
wait_for 15 no_standby || die "the primary still lists a standby 15 s after it stopped"
say "standby stopped; pg_stat_replication is empty; $(job_line "$JOB2")"
check "job $JOB2 is not finished when the standby went away" \
	"$( (($(job_field "$JOB2" rows_scanned) < ROWS2)) && echo yes || echo no)" yes

# Watch it to the end: it must never fail, and finish.
states=()
deadline=$((SECONDS + 60))
while ((SECONDS < deadline)); do
	st=$(job_field "$JOB2" state)
	[[ " ${states[*]} " == *" $st "* ]] || states+=("$st")
	case $st in done | failed | cancelled | interrupted | paused) break ;; esac
	sleep 0.2
done
say "states seen after the standby stopped: ${states[*]}"
check "job $JOB2 never failed after the standby stopped" \
	"$([[ " ${states[*]} " == *" failed "* ]] && echo failed || echo never)" never
check "wait_backfill($JOB2, '60 s')" "$(q "SELECT wait_backfill($JOB2, interval '60 seconds')")" "done"
say "job $JOB2 at the end: $(job_line "$JOB2") warning=$(job_field "$JOB2" "coalesce(warning, '<none>')")"
exactly_once "$ROWS2" "$JOB2"
finish
