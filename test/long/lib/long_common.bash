# Helpers shared by the long torture tests in test/long/*.sh (sourced, not run: run_all.sh only runs
# test/long/*.sh). They build on the crash tests' helpers (own clusters, q/check/say/die, job_line,
# exactly_once), which this file sources.
#
# Env (set by test/run_all.sh; set them yourself to run a test by hand):
#   MEXT_CLUSTER_TOOLS    path of test/tools/cluster.sh (default: found in the repo)
#   PGHOST/PGPORT/PGUSER  the shared cluster (only the tests that use it)
#   MEXT_BENCH_FIXTURES   folder of the bench fixtures (setup.sql); default <repo>/bench/fixtures

LONG_LIB_DIR=$(dirname "$(realpath "${BASH_SOURCE[0]}")")
# shellcheck source=../../crash/lib/crash_common.bash
source "$LONG_LIB_DIR/../../crash/lib/crash_common.bash"

MEXT_BENCH_FIXTURES=${MEXT_BENCH_FIXTURES:-$(realpath -m "$LONG_LIB_DIR/../../../bench/fixtures")}

# The converted form of a legacy value under the 'v2' codec, as SQL.
v2() { echo "('v2:' || reverse($1))"; }

# load_accounts <rows>: the extension, the 'v2' codec, and the bench table built by the shared
# setup.sql (legacy md5 tokens); where that file is missing, the same table from crash_common.
load_accounts() {
	local n=$1
	if [[ ! -f $MEXT_BENCH_FIXTURES/setup.sql ]]; then
		say "no $MEXT_BENCH_FIXTURES/setup.sql: building the same table inline"
		setup_accounts "$n"
		return
	fi
	q "SET client_min_messages = warning; CREATE EXTENSION IF NOT EXISTS migration_ext" >/dev/null
	q "SELECT create_codec('v2', 'reverse|add_prefix:v2:', 'v2:', 'absent')
	   WHERE NOT EXISTS (SELECT FROM migration_ext.codec WHERE name = 'v2')" >/dev/null
	PGOPTIONS='-c client_min_messages=warning' timeout 300 "$PG_BINDIR/psql" -X -q -v ON_ERROR_STOP=1 \
		-d "$DB" -v N="$n" -f "$MEXT_BENCH_FIXTURES/setup.sql" >/dev/null || die "setup.sql failed"
	say "accounts: $(q "SELECT count(*) FROM accounts") rows from setup.sql, all legacy"
}

# is_terminal <state>: done, failed or cancelled.
is_terminal() { [[ $1 == "done" || $1 == "failed" || $1 == "cancelled" ]]; }

# wait_state <job> <seconds>: wait_backfill in rounds (q has its own 90 s limit) until the job is
# done/failed/cancelled, or has stopped moving by itself (paused, interrupted), or the time is up.
# Prints the state it is in then.
wait_state() {
	local job=$1 limit=$2 deadline state round
	deadline=$((SECONDS + limit))
	while :; do
		round=$((deadline - SECONDS))
		((round > 60)) && round=60
		((round < 1)) && round=1
		state=$(q "SELECT wait_backfill($job, interval '$round seconds')") || state="(wait_backfill failed)"
		if is_terminal "$state" || [[ $state == paused || $state == interrupted ]] || ((SECONDS >= deadline)); then
			echo "$state"
			return
		fi
	done
}

# worker_gone <job>: the job's recorded pid is no live backend any more.
worker_gone() { q_true "SELECT NOT migration_ext.worker_alive(pid) FROM migration_ext.backfill_job WHERE id = $1"; }

# q_try as in crash_common, but a query that hangs (or fails only after seconds) is reported on
# stderr: polling loops would otherwise hide a server that stopped answering.
q_try() {
	local started=$SECONDS rc=0 out err
	err=$(mktemp)
	out=$(timeout 20 "$PG_BINDIR/psql" -X -q -At -v ON_ERROR_STOP=1 -d "$DB" -c "$1" 2>"$err") || rc=$?
	if ((rc != 0 && SECONDS - started >= 5)); then
		say "slow query failed (exit $rc after $((SECONDS - started)) s): $(head -c 300 "$err") -- ${1:0:120}" >&2
	fi
	rm -f "$err"
	[[ -z $out ]] || printf '%s\n' "$out"
	return "$rc"
}
