# Helpers shared by the crash tests in test/crash/*.sh (sourced, not run: run_all.sh only runs
# test/crash/*.sh). Each test stays self-contained: it makes its own cluster or database and table,
# and removes them on exit.
#
# Env (set by test/run_all.sh; set them yourself to run a test by hand):
#   MEXT_CLUSTER_TOOLS  path of test/tools/cluster.sh (default: found next to this file)
#   PGHOST/PGPORT/PGUSER  the shared cluster (only the tests that use it)

CRASH_LIB_DIR=$(dirname "$(realpath "${BASH_SOURCE[0]}")")
MEXT_CLUSTER_TOOLS=${MEXT_CLUSTER_TOOLS:-$CRASH_LIB_DIR/../../tools/cluster.sh}
# shellcheck source=../../tools/cluster.sh disable=SC1091
source "$MEXT_CLUSTER_TOOLS"

unset PGDATABASE PGSERVICE PGOPTIONS
export PGCONNECT_TIMEOUT=10
TEST_NAME=${TEST_NAME:-$(basename "$0" .sh)}
CHECK_FAILURES=0
DB=${DB:-postgres}

say() { printf '[%s +%ss] %s\n' "$TEST_NAME" "$SECONDS" "$*"; }
die() { say "FAIL: $*"; exit 1; }

# check <what> <actual> <expected>: records a failure, keeps going so every check is printed.
check() {
	if [[ $2 == "$3" ]]; then
		say "ok   $1: $2"
	else
		say "FAIL $1: got '$2', expected '$3'"
		CHECK_FAILURES=$((CHECK_FAILURES + 1))
	fi
}

finish() {
	if ((CHECK_FAILURES > 0)); then
		say "$CHECK_FAILURES check(s) failed"
		exit 1
	fi
	say "all checks passed"
}

# q <sql>: one statement in $DB, unaligned tuples only; fails the test on error.
q() {
	timeout 90 "$PG_BINDIR/psql" -X -q -At -v ON_ERROR_STOP=1 -d "$DB" -c "$1"
}

# q_try <sql>: like q but quiet on failure (for polling a server that may be restarting).
q_try() {
	timeout 20 "$PG_BINDIR/psql" -X -q -At -v ON_ERROR_STOP=1 -d "$DB" -c "$1" 2>/dev/null
}

# q_true <sql>: succeeds if the query (a boolean) returns true.
q_true() { [[ $(q_try "$1") == t ]]; }

# wait_for <seconds> <command...>: polls every 0.1 s until the command succeeds; 1 on timeout.
wait_for() {
	local limit=$1; shift
	local deadline=$((SECONDS + limit))
	while ! "$@"; do
		((SECONDS < deadline)) || return 1
		sleep 0.1
	done
}

# reload_setting <name> <value>: ALTER SYSTEM SET and a reload; returns once this test's sessions see
# <value> (as current_setting() shows it). The postmaster reloads before it signals the backends, so a
# worker started after that sees it too.
reload_setting() {
	q "ALTER SYSTEM SET $1 = '$2'" >/dev/null
	q "SELECT pg_reload_conf()" >/dev/null
	wait_for 10 q_true "SELECT current_setting('$1') = '$2'" || die "reload did not apply $1 = $2"
}

# ------------------------------------------------------------ a transaction held open
# open_transaction <name> <sql>: a psql session of its own (application_name <name>) runs BEGIN and <sql>
# and keeps the transaction, and so its locks, open — no sleep: it waits for the next line on a pipe —
# until close_transaction <name>. Returns once the session is idle in its transaction; 1 if it never
# gets there (its statement failed) within 60 s.
declare -A HELD_FD=() HELD_PID=()
open_transaction() {
	local name=$1 sql=$2 fifo fd
	fifo=$(mktemp -u) && mkfifo "$fifo" || return 1
	# It takes the name only after <sql> is done, so "idle in transaction" under that name means held.
	PGAPPNAME=${name}_opening "$PG_BINDIR/psql" -X -q -At -v ON_ERROR_STOP=1 -d "$DB" <"$fifo" >/dev/null 2>&1 &
	HELD_PID[$name]=$!
	exec {fd}>"$fifo" # blocks until psql has opened the other end
	rm -f "$fifo"
	HELD_FD[$name]=$fd
	(trap '' PIPE; printf "BEGIN;\n%s;\nSET application_name = '%s';\n" "$sql" "$name" >&"$fd") 2>/dev/null ||
		return 1

	wait_for 60 q_true "SELECT EXISTS (SELECT FROM pg_stat_activity
	                                   WHERE application_name = '$name' AND state = 'idle in transaction')"
}
# close_transaction <name> [COMMIT|ROLLBACK]: ends it (COMMIT by default) and waits for the session.
close_transaction() {
	local name=$1 fd=${HELD_FD[$1]:-}
	[[ -n $fd ]] || return 0
	# In a subshell that ignores SIGPIPE: a session that already ended must not end the test with it.
	(trap '' PIPE; printf '%s;\n\\q\n' "${2:-COMMIT}" >&"$fd") 2>/dev/null || true
	exec {fd}>&-
	wait "${HELD_PID[$name]}" 2>/dev/null || true
	unset "HELD_FD[$name]" "HELD_PID[$name]"
}
# close_all_transactions: for cleanup traps; rolls back whatever is still held.
close_all_transactions() {
	local name
	for name in "${!HELD_FD[@]}"; do close_transaction "$name" ROLLBACK; done
}

server_ready() { "$PG_BINDIR/pg_isready" -q -t 2 -d "$DB" >/dev/null 2>&1; }

# ------------------------------------------------------------ own cluster

OWN_TMP=
OWN_CLUSTER=

# own_cluster_start <port> [postgresql.conf lines...]: a throwaway cluster of this test only; exports
# PGHOST/PGPORT/PGUSER for it. Removed (with its temp dir) on exit; its log is shown if the test fails.
own_cluster_start() {
	OWN_TMP=$(cluster_mktemp)
	OWN_CLUSTER=$OWN_TMP/cluster
	trap own_cluster_cleanup EXIT
	local env
	env=$(cluster_start "$OWN_CLUSTER" "$@") || die "could not start a cluster in $OWN_CLUSTER"
	eval "$env"
	export PGHOST PGPORT PGUSER
	say "own cluster: $OWN_CLUSTER, port $PGPORT"
}

own_cluster_cleanup() {
	local rc=$?
	if ((rc != 0)) && [[ -f $OWN_CLUSTER/server.log ]]; then
		echo "---- last 60 lines of $OWN_CLUSTER/server.log ----"
		tail -n 60 "$OWN_CLUSTER/server.log" || true
	fi
	if [[ -n $OWN_CLUSTER ]]; then cluster_stop "$OWN_CLUSTER" >/dev/null 2>&1 || true; fi
	[[ -n $OWN_TMP && -d $OWN_TMP ]] && rm -rf "$OWN_TMP"
	exit "$rc"
}

postmaster_pid() { head -n 1 "$OWN_CLUSTER/data/postmaster.pid" 2>/dev/null; }

# Lines of the server log that say a process died of a signal (beyond the ones a test caused).
signal_deaths() { grep -c 'terminated by signal' "$OWN_CLUSTER/server.log" || true; }

# kill9_and_recover <pid> <seconds> <label>: kill -9 a backend of the own cluster; waits for the server
# log to report it and, within <seconds>, for the crash restart to accept connections again. Checks
# (under <label>) that the postmaster survived and that this kill is the log's only new signal death.
kill9_and_recover() {
	local pid=$1 seconds=$2 label=$3 postmaster deaths
	postmaster=$(postmaster_pid)
	deaths=$(signal_deaths)
	kill -9 "$pid"
	wait_for 30 grep -q "(PID $pid) was terminated by signal 9" "$OWN_CLUSTER/server.log" ||
		die "the server log never reported $pid killed"
	wait_for "$seconds" server_ready || die "server did not come back after the crash restart"
	check "$label: postmaster survived (crash restart, not a new server)" "$(postmaster_pid)" "$postmaster"
	check "$label: new signal deaths in the log (only our kill)" "$(($(signal_deaths) - deaths))" 1
}

# stop_immediate_and_start <seconds>: pg_ctl stop -m immediate (no shutdown checkpoint: the next start
# recovers from WAL, as after a power cut), then start again and wait for connections.
stop_immediate_and_start() {
	local old_postmaster
	old_postmaster=$(postmaster_pid)
	cluster_pg_ctl "$OWN_CLUSTER" stop -m immediate -w -t 60 >/dev/null || die "pg_ctl stop -m immediate failed"
	[[ ! -e $OWN_CLUSTER/data/postmaster.pid ]] || die "postmaster.pid still there after the stop"
	[[ $(ps -o stat= -p "$old_postmaster" 2>/dev/null) == [^Z]* ]] &&
		die "postmaster $old_postmaster still running after the stop"
	cluster_pg_ctl "$OWN_CLUSTER" start -w -t "$1" >/dev/null || die "the server did not start again"
	wait_for "$1" server_ready || die "server not accepting connections after the start"
}

# ------------------------------------------------------------ a primary and its streaming standby

PAIR_TMP=
PRIMARY=
STANDBY=
S_PORT=
STANDBY_NAME=

# pair_start <primary port> <standby port> <standby name>: a throwaway primary (PGHOST/PGPORT/PGUSER
# exported for it) and a streaming standby of it (pg_basebackup) that reports its replay every second
# under <standby name> in the primary's pg_stat_replication. Returns once the standby streams. Both are
# removed on exit by pair_cleanup, their logs shown if the test fails.
pair_start() {
	local p_port=$1 env
	S_PORT=$2
	STANDBY_NAME=$3
	PAIR_TMP=$(cluster_mktemp)
	PRIMARY=$PAIR_TMP/primary
	STANDBY=$PAIR_TMP/standby
	trap pair_cleanup EXIT
	env=$(cluster_start "$PRIMARY" "$p_port") || die "could not start the primary"
	eval "$env"
	export PGHOST PGPORT PGUSER
	cluster_start_standby "$PRIMARY" "$p_port" "$STANDBY" "$S_PORT" >/dev/null || die "could not start the standby"
	{
		echo "wal_receiver_status_interval = 1s"
		echo "hot_standby_feedback = off"
		echo "cluster_name = '$STANDBY_NAME'"
	} >>"$STANDBY/data/postgresql.conf"
	cluster_pg_ctl "$STANDBY" restart -w -t 60 >/dev/null || die "could not restart the standby"
	DB=postgres wait_for 30 streaming || die "standby $STANDBY_NAME never streamed"
	say "primary $PRIMARY:$p_port, standby $STANDBY:$S_PORT ($STANDBY_NAME) streaming"
}

# pair_cleanup [exit status]: the EXIT trap of pair_start; a test with more to undo traps its own
# function and ends it with pair_cleanup "$rc".
pair_cleanup() {
	local rc=${1:-$?} d
	if ((rc != 0)); then
		for d in "$PRIMARY" "$STANDBY"; do
			[[ -f $d/server.log ]] || continue
			echo "---- last 40 lines of $d/server.log ----"
			tail -n 40 "$d/server.log" || true
		done
	fi
	if [[ -n $STANDBY ]]; then cluster_stop "$STANDBY" >/dev/null 2>&1 || true; fi
	if [[ -n $PRIMARY ]]; then cluster_stop "$PRIMARY" >/dev/null 2>&1 || true; fi
	[[ -n $PAIR_TMP && -d $PAIR_TMP ]] && rm -rf "$PAIR_TMP"
	exit "$rc"
}

# qs <sql>: in the standby's postgres database.
qs() { PGHOST=$STANDBY PGPORT=$S_PORT DB=postgres q "$1"; }
streaming() {
	q_true "SELECT EXISTS (SELECT FROM pg_stat_replication WHERE application_name = '$STANDBY_NAME'
	                       AND state = 'streaming' AND replay_lsn IS NOT NULL)"
}
standby_caught_up() {
	q_true "SELECT coalesce(bool_and(replay_lsn >= pg_current_wal_lsn()), false) FROM pg_stat_replication"
}

# ------------------------------------------------------------ the table and the job

# setup_accounts <rows>: the bench table (as bench/fixtures/setup.sql), all tokens legacy md5
# text, and the extension with the 'v2' codec.
setup_accounts() {
	local n=$1
	q "SET client_min_messages = warning; CREATE EXTENSION IF NOT EXISTS migration_ext" >/dev/null
	q "SELECT create_codec('v2', 'reverse|add_prefix:v2:', 'v2:', 'absent')
	   WHERE NOT EXISTS (SELECT FROM migration_ext.codec WHERE name = 'v2')" >/dev/null
	q "SET client_min_messages = warning; DROP TABLE IF EXISTS accounts CASCADE" >/dev/null
	q "CREATE TABLE accounts (id bigint PRIMARY KEY, token text NOT NULL, balance bigint NOT NULL DEFAULT 0, note text)" >/dev/null
	q "INSERT INTO accounts SELECT g, md5(g::text), g % 1000, repeat('x', 60) FROM generate_series(1, $n) g" >/dev/null
	q "VACUUM ANALYZE accounts" >/dev/null
	say "accounts: $(q "SELECT count(*) FROM accounts") rows, all legacy"
}

job_field() { q "SELECT $2 FROM backfill_status WHERE job = $1"; }
job_field_try() { q_try "SELECT $2 FROM backfill_status WHERE job = $1"; }

# One line describing the job and whether its pid is a live backfill worker, read in one statement.
job_line() {
	q_try "SELECT format('state=%s scanned=%s converted=%s skipped=%s conflicts=%s pid=%s worker_alive=%s last_error=%s',
	                     s.state, s.rows_scanned, s.rows_converted, s.rows_skipped, s.conflicts, s.pid,
	                     EXISTS (SELECT FROM pg_stat_activity a
	                             WHERE a.pid = s.pid AND a.backend_type = 'migration_ext backfill'),
	                     coalesce(s.last_error, '-'))
	       FROM backfill_status s WHERE s.job = $1"
}

# The invariant a DBA relies on: a job the view calls running/throttled has a live worker behind it.
# Prints the offending row, if any.
running_without_worker() {
	q_try "SELECT format('state=%s pid=%s', s.state, s.pid) FROM backfill_status s
	       WHERE s.job = $1 AND s.state IN ('running', 'throttled')
	         AND NOT EXISTS (SELECT FROM pg_stat_activity a
	                         WHERE a.pid = s.pid AND a.backend_type = 'migration_ext backfill')"
}

scanned_above() { # scanned_above <job> <rows>
	local s
	s=$(job_field_try "$1" rows_scanned) || return 1
	[[ -n $s ]] && ((s > $2))
}

# A live worker pid for the job (from backfill_status, confirmed in pg_stat_activity), or fail.
live_worker_pid() {
	q_try "SELECT s.pid FROM backfill_status s JOIN pg_stat_activity a
	         ON a.pid = s.pid AND a.backend_type = 'migration_ext backfill'
	       WHERE s.job = $1 AND s.state IN ('queued', 'running', 'throttled')" | grep -E '^[0-9]+$'
}

# The worker's pid, but only while it is inside a batch (pg_stat_activity shows it converting), so
# that a kill lands in the middle of a batch transaction rather than in the pause between batches.
worker_pid_in_batch() {
	q_try "SELECT s.pid FROM backfill_status s JOIN pg_stat_activity a
	         ON a.pid = s.pid AND a.backend_type = 'migration_ext backfill'
	       WHERE s.job = $1 AND a.state = 'active' AND a.query LIKE '%converting%'" | grep -E '^[0-9]+$'
}

# wait_resumed <job> <old pid> <seconds>: until the job has a live worker other than <old pid> (or
# is done). Meanwhile checks that the view never shows running/throttled without a worker.
wait_resumed() {
	local job=$1 old=$2 limit=$3 deadline bad pid state
	deadline=$((SECONDS + limit))
	while ((SECONDS < deadline)); do
		bad=$(running_without_worker "$job") || true
		if [[ -n $bad ]]; then
			# A worker that just started may not be in pg_stat_activity for an instant; look again.
			sleep 0.5
			bad=$(running_without_worker "$job") || true
			if [[ -n $bad ]]; then
				say "FAIL job $job shows '$bad' but no backfill worker has that pid"
				CHECK_FAILURES=$((CHECK_FAILURES + 1))
			fi
		fi
		state=$(job_field_try "$job" state) || state=
		[[ $state == "done" ]] && return 0
		pid=$(live_worker_pid "$job") || pid=
		if [[ -n $pid && $pid != "$old" ]]; then
			# shellcheck disable=SC2034 # read by the caller
			RESUMED_PID=$pid
			return 0
		fi
		sleep 0.2
	done
	return 1
}

# exactly_once <rows> <job>: every row converted once, none lost, none twice; the job's committed
# counters are exact.
exactly_once() {
	local n=$1 job=$2
	say "exactly-once check, job $job: $(job_line "$job")"
	check "rows whose token <> 'v2:' || reverse(md5(id::text))" \
		"$(q "SELECT count(*) FROM accounts WHERE token <> 'v2:' || reverse(md5(id::text))")" 0
	check "rows still legacy (lost)" "$(q "SELECT count(*) FROM accounts WHERE token = md5(id::text)")" 0
	check "rows converted twice" \
		"$(q "SELECT count(*) FROM accounts WHERE token = 'v2:' || reverse('v2:' || reverse(md5(id::text)))")" 0
	check "row count" "$(q "SELECT count(*) FROM accounts")" "$n"
	check "backfill_status.state" "$(job_field "$job" state)" "done"
	check "backfill_status.rows_scanned" "$(job_field "$job" rows_scanned)" "$n"
	check "backfill_status.rows_converted" "$(job_field "$job" rows_converted)" "$n"
	check "backfill_status.rows_skipped (a batch run twice would skip its rows)" \
		"$(job_field "$job" rows_skipped)" 0
	check "backfill_status.conflicts" "$(job_field "$job" conflicts)" 0
}

# paused_job <table> <rows>: a table of <rows> legacy tokens (codec 'tok') and a job on it that has
# converted a little and is paused; prints the job's id.
paused_job() {
	q "CREATE TABLE $1 (id int PRIMARY KEY, token text)" >/dev/null
	q "INSERT INTO $1 SELECT g, reverse('tok_' || g) FROM generate_series(1, $2) g" >/dev/null
	local job
	job=$(q "SELECT start_backfill('$1', 'token', 'tok', max_rows_per_second => 2000, batch_size => 200)")
	wait_for 30 scanned_above "$job" 0 || die "the job on $1 never started"
	q "SELECT pause_backfill($job)" >/dev/null
	[[ $(q "SELECT wait_backfill($job, '30 s')") == paused ]] || die "the job on $1 did not pause"
	echo "$job"
}
