#!/usr/bin/env bash
# Random crashes on a 1M-row job: at 5 random moments of one backfill (capped so that it lasts about
# a minute), alternately kill -9 the worker (the postmaster crash-restarts the cluster) and
# `pg_ctl stop -m immediate` + start (crash recovery). Each moment is a random row count plus a random
# delay; half the time the kill is aimed into a batch transaction. The preloaded launcher must resume
# the job every time, by itself, and backfill_status must then name the worker that really runs it
# (never 'interrupted' or a dead pid while a worker converts). At every restart the committed
# checkpoint and counters must agree with the table; at the end every row is converted exactly once
# and the counters are exact.
#
# Env: MEXT_LONG_SEED (replay a run: the seed is printed first), MEXT_LONG_ROWS (default 1000000),
#      MEXT_LONG_PORT_RANDOM_CRASHES (default 54361).
set -euo pipefail
# shellcheck source=lib/long_common.bash
source "$(dirname "$(realpath "$0")")/lib/long_common.bash"

ROWS=${MEXT_LONG_ROWS:-1000000}
PORT=${MEXT_LONG_PORT_RANDOM_CRASHES:-54361}
CRASHES=5
JOB_SECONDS=60
RATE=$((ROWS / JOB_SECONDS + 1))

SEED=${MEXT_LONG_SEED:-$(($(od -An -N2 -tu2 /dev/urandom) % 32768))}
RANDOM=$SEED
say "seed $SEED (replay with MEXT_LONG_SEED=$SEED)"

# The moments: sorted random row counts between 2% and 92% of the table, each with a delay of up to
# a second after the job passes it; whether to aim into a batch; which kind of crash comes first.
AT_ROWS=() DELAY_MS=() AIM=()
for ((i = 0; i < CRASHES; i++)); do
	AT_ROWS+=($((ROWS * (20 + RANDOM % 900) / 1000)))
	DELAY_MS+=($((RANDOM % 1000)))
	AIM+=($((RANDOM % 2)))
done
mapfile -t AT_ROWS < <(printf '%s\n' "${AT_ROWS[@]}" | sort -n)
FIRST_KIND=$((RANDOM % 2)) # 0: kill -9 first, 1: immediate stop first
say "plan: crash at rows_scanned > ${AT_ROWS[*]}; delays ${DELAY_MS[*]} ms; aim into a batch: ${AIM[*]}; first: $( ((FIRST_KIND)) && echo 'immediate stop' || echo 'kill -9')"

own_cluster_start "$PORT"
DB=postgres
check "shared_preload_libraries" "$(q "SHOW shared_preload_libraries")" migration_ext
wait_for 20 q_true "SELECT EXISTS (SELECT FROM pg_stat_activity WHERE backend_type = 'migration_ext launcher')" ||
	die "no migration_ext launcher in pg_stat_activity"
q "CREATE DATABASE longdb" >/dev/null
DB=longdb
load_accounts "$ROWS"

# What a committed checkpoint promises, read in one snapshot: the table holds exactly rows_converted
# converted rows, and (ids are 1..N) the checkpoint key is the number of rows scanned.
checkpoint_consistent() {
	local line
	line=$(q "SELECT format('converted_in_table=%s rows_converted=%s last_key=%s rows_scanned=%s',
	                        (SELECT count(*) FROM accounts WHERE token LIKE 'v2:%'), j.rows_converted,
	                        coalesce(j.last_key[1], '0'), j.rows_scanned),
	                 (SELECT count(*) FROM accounts WHERE token LIKE 'v2:%') = j.rows_converted
	                 AND coalesce(j.last_key[1], '0')::bigint = j.rows_scanned
	          FROM migration_ext.backfill_job j WHERE j.id = $JOB")
	say "checkpoint vs table: ${line%|*}"
	check "checkpoint and counters agree with the table ($1)" "${line##*|}" t
}

# The one backfill worker alive in this database (the cluster runs this one job); fails unless exactly one.
one_live_worker() {
	q_try "SELECT min(pid) FROM pg_stat_activity WHERE backend_type = 'migration_ext backfill'
	       AND datname = current_database() HAVING count(*) = 1" | grep -E '^[0-9]+$'
}

# The job as the view shows it next to the workers really alive, in one snapshot, and a verdict:
# ok (a queued/running/throttled job under the pid of a live worker), done, none (no worker yet), or
# mismatch (a worker runs, but the view names another pid or calls the job interrupted).
job_vs_workers() {
	q_try "SELECT format('state=%s pid=%s scanned=%s; live backfill workers: %s', s.state, s.pid, s.rows_scanned,
	                     coalesce(w.pids, 'none')),
	              CASE WHEN s.state = 'done' THEN 'done'
	                   WHEN s.state IN ('queued', 'running', 'throttled') AND s.pid = ANY (w.arr) THEN 'ok'
	                   WHEN w.arr IS NOT NULL THEN 'mismatch' ELSE 'none' END
	       FROM backfill_status s,
	            LATERAL (SELECT array_agg(a.pid ORDER BY a.pid) AS arr, string_agg(a.pid::text, ' ' ORDER BY a.pid) AS pids
	                     FROM pg_stat_activity a
	                     WHERE a.backend_type = 'migration_ext backfill' AND a.datname = current_database()) w
	       WHERE s.job = $JOB"
}

# wait_relaunched <crash n>: until the view shows the job run by a live worker (or done). A worker
# that runs the job while the view names a dead pid or says interrupted, for 3 s, fails the check.
wait_relaunched() {
	local n=$1 deadline=$((SECONDS + 60)) out verdict first_bad="" first_line=""
	while ((SECONDS < deadline)); do
		out=$(job_vs_workers) || out="(query failed)|none"
		verdict=${out##*|} RELAUNCH_LINE=${out%|*}
		case $verdict in
		ok | done) return 0 ;;
		mismatch)
			[[ -n $first_bad ]] || { first_bad=$SECONDS first_line=$RELAUNCH_LINE; }
			if ((SECONDS - first_bad >= 3)); then
				check "crash $n: backfill_status names the live worker of the job" \
					"$first_line (then ${SECONDS}s: $RELAUNCH_LINE)" "running/throttled under a live worker's pid"
				return 0
			fi
			;;
		*) first_bad= ;;
		esac
		sleep 0.2
	done
	die "the launcher did not resume job $JOB within 60 s after crash $n ($RELAUNCH_LINE)"
}

JOB=$(q "SELECT start_backfill('accounts', 'token', 'v2', max_rows_per_second => $RATE)")
say "started job $JOB: $ROWS rows, capped at $RATE rows/s (~${JOB_SECONDS} s), adaptive batches"

KILLS=0 STOPS=0
for ((i = 0; i < CRASHES; i++)); do
	n=$((i + 1))
	wait_for 120 scanned_above "$JOB" "${AT_ROWS[i]}" ||
		die "job $JOB never got past ${AT_ROWS[i]} rows ($(job_line "$JOB"))"
	sleep "$(printf '0.%03d' "${DELAY_MS[i]}")"
	where="wherever it was"
	pid=
	if ((AIM[i])); then
		pid=$(wait_for 3 worker_pid_in_batch "$JOB") && where="seen converting a batch" || pid=
	fi
	[[ -n $pid ]] || pid=$(wait_for 5 one_live_worker) ||
		die "job $JOB has not exactly one live worker before crash $n ($(job_vs_workers))"
	before=$(job_field "$JOB" rows_scanned)

	if (((i + FIRST_KIND) % 2 == 0)); then
		KILLS=$((KILLS + 1))
		say "crash $n/$CRASHES: kill -9 worker $pid ($where) at rows_scanned=$before"
		kill9_and_recover "$pid" 90 "crash $n"
	else
		STOPS=$((STOPS + 1))
		say "crash $n/$CRASHES: pg_ctl stop -m immediate, worker $pid ($where), at rows_scanned=$before"
		stop_immediate_and_start 120
	fi
	say "crash $n: back up: $(job_line "$JOB")"
	checkpoint_consistent "after crash $n"

	wait_relaunched "$n"
	say "crash $n: resumed by the launcher: $RELAUNCH_LINE"
done

# (A job the view wrongly calls interrupted while its worker runs is waited for too: checked above.)
deadline=$((SECONDS + 240))
while state=$(wait_state "$JOB" 60); ! is_terminal "$state" && ((SECONDS < deadline)); do sleep 1; done
check "wait_backfill" "$state" "done"
say "final: $(job_line "$JOB")"
checkpoint_consistent "at the end"
exactly_once "$ROWS" "$JOB"
check "server log has no PANIC" "$(grep -c PANIC "$OWN_CLUSTER/server.log" || true)" 0
check "processes terminated by a signal (our $KILLS kill -9 only)" "$(signal_deaths)" "$KILLS"
say "$KILLS kill -9, $STOPS immediate stops; seed $SEED"
finish
