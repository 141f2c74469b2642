#!/usr/bin/env bash
# DDL and bulk changes from another session in the middle of a backfill, one job each, on the shared
# cluster (in a database of its own): DELETE of a random 10%, key updates (moved ahead of the walk and
# behind it), TRUNCATE, ALTER TABLE (ADD COLUMN, ALTER COLUMN TYPE varchar, then varchar(64), which
# rewrites the table), RENAME COLUMN, DROP TABLE. Every job must end in a terminal state with a clear
# outcome (done with every row right, or failed with a last_error that says why), never stay running
# or leave a worker behind, and the server must never restart or lose a process to a signal.
#
# Env: PGHOST/PGPORT/PGUSER of the shared cluster (set by test/run_all.sh); its log is read from
# $PGHOST/server.log when it is there.
set -euo pipefail
# shellcheck source=lib/long_common.bash
source "$(dirname "$(realpath "$0")")/lib/long_common.bash"

[[ -n ${PGHOST:-} && -n ${PGPORT:-} ]] || die "needs the shared cluster in PGHOST/PGPORT (run it through make test-long)"
ROWS=100000
RATE=10000 # rows/s: each job lasts ~10 s, time enough to hit it in the middle
LONGDB=mext_long_ddl
SERVER_LOG=$PGHOST/server.log

DB=postgres
START_TIME=$(q "SELECT pg_postmaster_start_time()")
log_count() { if [[ -r $SERVER_LOG ]]; then grep -c "$1" "$SERVER_LOG" || true; else echo "-"; fi; }
DEATHS_BEFORE=$(log_count 'terminated by signal')
PANICS_BEFORE=$(log_count PANIC)
[[ -r $SERVER_LOG ]] || say "no server log at $SERVER_LOG: the log checks are skipped"

cleanup() {
	local rc=$?
	close_all_transactions
	DB=postgres
	q "DROP DATABASE IF EXISTS $LONGDB WITH (FORCE)" >/dev/null 2>&1 || true
	exit "$rc"
}
trap cleanup EXIT
PGOPTIONS='-c client_min_messages=warning' q "DROP DATABASE IF EXISTS $LONGDB WITH (FORCE)" >/dev/null
q "CREATE DATABASE $LONGDB" >/dev/null
DB=$LONGDB
q "SET client_min_messages = warning; CREATE EXTENSION migration_ext" >/dev/null
q "SELECT create_codec('v2', 'reverse|add_prefix:v2:', 'v2:', 'absent')" >/dev/null

# make_table <name>: the bench table's shape, ROWS legacy rows.
make_table() {
	q "CREATE TABLE $1 (id bigint PRIMARY KEY, token text NOT NULL, balance bigint NOT NULL DEFAULT 0, note text);
	   INSERT INTO $1 SELECT g, md5(g::text), g % 1000, repeat('x', 60) FROM generate_series(1, $ROWS) g" >/dev/null
	q "VACUUM ANALYZE $1" >/dev/null
}

# start_job <table> <percent>: a job on the table, returned once it has scanned past <percent>.
start_job() {
	local job
	job=$(q "SELECT start_backfill('$1', 'token', 'v2', max_rows_per_second => $RATE)")
	wait_for 60 scanned_above "$job" $((ROWS * $2 / 100)) || die "job $job on $1 never got past $2% ($(job_line "$job"))"
	echo "$job"
}

# outcome <scenario> <job>: the job reaches a terminal state in time, says why if it failed, and
# leaves no worker; prints the state (as STATE) and last_error.
outcome() {
	local name=$1 job=$2 error
	STATE=$(wait_state "$job" 90)
	error=$(job_field "$job" "coalesce(last_error, '')")
	say "$name: job $job ended $STATE; last_error: ${error:-<none>}"
	say "$name: $(job_line "$job")"
	if ! is_terminal "$STATE"; then
		check "$name: job $job reaches done/failed/cancelled within 90 s (not wedged)" "$STATE" "done, failed or cancelled"
	fi
	[[ $STATE != failed ]] || check "$name: a failed job has a last_error" "$([[ -n $error ]] && echo yes || echo no)" yes
	wait_for 10 worker_gone "$job" || check "$name: no worker left behind by job $job" "$(job_line "$job")" "worker gone"
	LAST_ERROR=$error
}

server_same() {
	check "$1: the server did not restart" "$(q "SELECT pg_postmaster_start_time()")" "$START_TIME"
}

legacy_or_wrong() { # <table>: rows that are not the conversion of their original value
	q "SELECT count(*) FROM $1 WHERE token <> $(v2 'md5(id::text)')"
}

# (a) DELETE of a random 10% of the rows, ahead of the walk and behind it.
make_table t_delete
JOB=$(start_job t_delete 25)
DELETED=$(q "WITH d AS (DELETE FROM t_delete WHERE random() < 0.1 RETURNING 1) SELECT count(*) FROM d")
say "delete: deleted $DELETED rows at $(job_field "$JOB" rows_scanned) rows scanned"
outcome delete "$JOB"
check "delete: state" "$STATE" "done"
check "delete: rows left" "$(q "SELECT count(*) FROM t_delete")" $((ROWS - DELETED))
check "delete: rows left that are not converted exactly once" "$(legacy_or_wrong t_delete)" 0
check "delete: rows_converted between the rows left and all rows" \
	"$(q "SELECT rows_converted BETWEEN $((ROWS - DELETED)) AND $ROWS FROM backfill_status WHERE job = $JOB")" t
server_same delete

# (b) Key updates: 10% of the rows moved far ahead of the walk (id + 10000000), and 10% of the rows
# still ahead of the checkpoint moved behind it (id = -id), which the walk can no longer reach.
make_table t_keys
JOB=$(start_job t_keys 25)
MOVED_AHEAD=$(q "WITH u AS (UPDATE t_keys SET id = id + 10000000 WHERE id % 10 = 3 RETURNING 1) SELECT count(*) FROM u")
MOVED_BEHIND=$(q "WITH u AS (UPDATE t_keys SET id = -id WHERE id % 10 = 7 AND id > 5000 + (
                    SELECT coalesce(last_key[1]::bigint, 0) FROM migration_ext.backfill_job WHERE id = $JOB) RETURNING 1)
                  SELECT count(*) FROM u")
say "keys: moved $MOVED_AHEAD rows ahead and $MOVED_BEHIND behind, at $(job_field "$JOB" rows_scanned) rows scanned"
outcome keys "$JOB"
check "keys: state" "$STATE" "done"
ORIG="CASE WHEN id > 10000000 THEN id - 10000000 WHEN id < 0 THEN -id ELSE id END"
check "keys: rows, distinct original keys (none lost, none duplicated)" \
	"$(q "SELECT count(*) || ' ' || count(DISTINCT $ORIG) FROM t_keys")" "$ROWS $ROWS"
check "keys: rows holding neither their own legacy value nor its conversion" \
	"$(q "SELECT count(*) FROM t_keys WHERE token NOT IN (md5(($ORIG)::text), $(v2 "md5(($ORIG)::text)"))")" 0
LEFT=$(q "SELECT count(*) FROM t_keys WHERE token = md5(($ORIG)::text)")
say "keys: legacy rows left by the first job: $LEFT (only rows moved behind the checkpoint may be)"
check "keys: legacy rows left that were not moved behind the checkpoint" \
	"$(q "SELECT count(*) FROM t_keys WHERE token = md5(($ORIG)::text) AND id > 0")" 0
JOB2=$(q "SELECT start_backfill('t_keys', 'token', 'v2')")
outcome "keys, second job" "$JOB2"
check "keys: second job's state" "$STATE" "done"
check "keys: second job converted exactly the rows left" "$(job_field "$JOB2" rows_converted)" "$LEFT"
check "keys: rows that are not the conversion of their original value" \
	"$(q "SELECT count(*) FROM t_keys WHERE token <> $(v2 "md5(($ORIG)::text)")")" 0
server_same keys

# (c) TRUNCATE, its exclusive lock held until the worker has been seen waiting on it (its batches time
# out on it meanwhile).
make_table t_truncate
JOB=$(start_job t_truncate 30)
open_transaction mext_truncate "TRUNCATE t_truncate" || die "truncate: the TRUNCATE did not get its lock"
wait_for 60 q_true "SELECT EXISTS (SELECT FROM pg_stat_activity w, pg_stat_activity h
                                   WHERE w.backend_type = 'migration_ext backfill' AND h.application_name = 'mext_truncate'
                                     AND h.pid = ANY (pg_blocking_pids(w.pid)))" ||
	die "truncate: the worker never waited on the TRUNCATE's lock ($(job_line "$JOB"))"
close_transaction mext_truncate
say "truncate: committed at $(job_field "$JOB" rows_scanned) rows scanned"
outcome truncate "$JOB"
check "truncate: rows left" "$(q "SELECT count(*) FROM t_truncate")" 0
server_same truncate

# (d) ALTER TABLE: ADD COLUMN, then ALTER COLUMN token TYPE varchar (no rewrite), then varchar(64)
# (a rewrite of the whole table under an exclusive lock).
make_table t_alter
JOB=$(start_job t_alter 20)
q "ALTER TABLE t_alter ADD COLUMN extra int DEFAULT 7" >/dev/null
say "alter: ADD COLUMN at $(job_field "$JOB" rows_scanned) rows scanned"
wait_for 60 scanned_above "$JOB" $((ROWS * 40 / 100)) || true
q "ALTER TABLE t_alter ALTER COLUMN token TYPE varchar" >/dev/null
say "alter: TYPE varchar at $(job_field "$JOB" rows_scanned) rows scanned"
wait_for 60 scanned_above "$JOB" $((ROWS * 60 / 100)) || true
q "ALTER TABLE t_alter ALTER COLUMN token TYPE varchar(64)" >/dev/null
say "alter: TYPE varchar(64) at $(job_field "$JOB" rows_scanned) rows scanned"
outcome alter "$JOB"
check "alter: column type" "$(q "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = 't_alter'::regclass AND attname = 'token'")" "character varying(64)"
if [[ $STATE == "done" ]]; then
	check "alter: rows not converted exactly once" "$(legacy_or_wrong t_alter)" 0
else
	say "alter: the job ended $STATE; a new job must finish the rest"
	JOB2=$(q "SELECT start_backfill('t_alter', 'token', 'v2')")
	outcome "alter, second job" "$JOB2"
	check "alter: second job's state" "$STATE" "done"
	check "alter: rows not converted exactly once" "$(legacy_or_wrong t_alter)" 0
fi
check "alter: rows" "$(q "SELECT count(*) FROM t_alter")" "$ROWS"
server_same alter

# (e) RENAME COLUMN of the column being backfilled.
make_table t_rename
JOB=$(start_job t_rename 30)
q "ALTER TABLE t_rename RENAME COLUMN token TO token_v1" >/dev/null
say "rename: committed at $(job_field "$JOB" rows_scanned) rows scanned"
outcome rename "$JOB"
if [[ $STATE == failed ]]; then
	check "rename: last_error names the missing column" \
		"$([[ $LAST_ERROR == *token* ]] && echo yes || echo "no: $LAST_ERROR")" yes
fi
check "rename: rows that are not legacy or converted" \
	"$(q "SELECT count(*) FROM t_rename WHERE token_v1 NOT IN (md5(id::text), $(v2 'md5(id::text)'))")" 0
server_same rename

# (f) DROP TABLE.
make_table t_drop
JOB=$(start_job t_drop 30)
q "DROP TABLE t_drop" >/dev/null
say "drop: committed"
outcome drop "$JOB"
check "drop: state (failed or cancelled)" "$([[ $STATE == failed || $STATE == cancelled ]] && echo yes || echo "no: $STATE")" yes
if [[ $STATE == failed ]]; then
	check "drop: last_error says the table is gone" \
		"$(grep -qiE 'does not exist|dropped|no longer exists' <<<"$LAST_ERROR" && echo yes || echo "no: $LAST_ERROR")" yes
fi
server_same drop

check "no unfinished job left" \
	"$(q "SELECT count(*) FROM backfill_status WHERE state NOT IN ('done', 'failed', 'cancelled')")" 0
if [[ -r $SERVER_LOG ]]; then
	check "processes terminated by a signal (server log)" "$(($(log_count 'terminated by signal') - DEATHS_BEFORE))" 0
	check "PANIC (server log)" "$(($(log_count PANIC) - PANICS_BEFORE))" 0
fi
finish
