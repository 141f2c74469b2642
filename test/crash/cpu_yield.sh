#!/usr/bin/env bash
# The backfill worker gives its CPU up to the processes that wait for it after every
# migration_ext.worker_cpu_slice of running time (default 0.2 ms), instead of keeping it until the scheduler
# takes it away (on the machine this was written on, a woken backend waited for the next tick, 4 ms).
#
# The whole server (the postmaster, so every backend and worker it starts) is pinned to one CPU, pgbench
# to the other. An unthrottled job (it never pauses on its own) runs beside the live workload
# (bench/fixtures/live_txn.sql at 500 tps on a table of its own) for 3 s: with the default slice the
# workload's median latency must stay under 5 ms. The same run with the slice at 0 (never yield) is
# printed beside it, not checked: how long a woken process waits behind a busy one is the kernel's choice
# (here: a median of 60 ms to 1 s, pgbench falling behind its schedule). Each job must also have converted
# at least 100,000 rows during the 3 s, so that neither figure comes from an idle worker.
set -euo pipefail
# shellcheck source=lib/crash_common.bash
source "$(dirname "$(realpath "$0")")/lib/crash_common.bash"

PORT=${MEXT_CRASH_PORT_CPU_YIELD:-54356}
ROWS=1000000
SETUP_SQL=${MEXT_BENCH_SETUP:-$(realpath -m "$(dirname "$(realpath "$0")")/../../bench/fixtures/setup.sql")}
CPU=0         # the server: postmaster, so every backend and worker it starts
CLIENT_CPU=1  # pgbench
DB=postgres
trap 'exit 130' INT TERM

command -v taskset >/dev/null || die "taskset (util-linux) not found"
# below_ms <value> <limit>: is the decimal <value> below <limit>?
below_ms() { awk -v v="$1" -v l="$2" 'BEGIN { exit !(v < l) }'; }

# workload <seconds>: live_txn.sql through pgbench (the client on another CPU) at 500 tps; prints the
# latencies of its transactions in ms, "<p50> <p90> <p99>".
workload() {
	local log=$OWN_TMP/wl
	rm -f "$log".*
	taskset -c "$CLIENT_CPU" "$PG_BINDIR/pgbench" -n -f "$WORKLOAD_SQL" -R 500 -c 2 -j 1 -T "$1" -l \
		--log-prefix="$log" "$DB" >/dev/null 2>&1 || die "pgbench failed"
	cat "$log".* | awk '$3 ~ /^[0-9]+$/ { print $3 / 1000 }' | sort -n | awk '{ v[NR] = $1 }
		END { printf "%.3f %.3f %.3f\n", v[int(NR * 0.5)], v[int(NR * 0.9)], v[int(NR * 0.99)] }'
}

# measure <table> <label>: an unthrottled job on <table> beside the workload; sets LATENCY (the
# workload's "<p50> <p90> <p99>") and checks the job converted rows all the while.
measure() {
	local table=$1 label=$2 job before after
	job=$(q "SELECT start_backfill('$table', 'token', 'v2', throttle => false, batch_size => 20000)")
	wait_for 30 q_true "SELECT state = 'running' AND rows_scanned > 0 FROM backfill_status WHERE job = $job" ||
		die "$label: job $job never started converting"
	check "$label: the worker runs on CPU $CPU only" \
		"$(taskset -p "$(q "SELECT pid FROM backfill_status WHERE job = $job")" | awk '{ print $NF }')" 1
	before=$(q "SELECT rows_scanned FROM backfill_status WHERE job = $job")
	LATENCY=$(workload 3)
	after=$(q "SELECT rows_scanned FROM backfill_status WHERE job = $job")
	say "$label: workload latency p50/p90/p99 ${LATENCY// //} ms while job $job scanned $((after - before)) rows"
	check "$label: the job converted all the while (>= 100000 rows)" \
		"$( ((after - before >= 100000)) && echo yes || echo "no: $((after - before))")" yes
	q "SELECT cancel_backfill($job)" >/dev/null
	wait_for 30 q_true "SELECT state = 'cancelled' FROM backfill_status WHERE job = $job" ||
		die "$label: job $job was not cancelled"
}

own_cluster_start "$PORT"
q "SET client_min_messages = warning; CREATE EXTENSION migration_ext" >/dev/null
q "SELECT create_codec('v2', 'reverse|add_prefix:v2:', 'v2:', 'absent')" >/dev/null
"$PG_BINDIR/psql" -X -q -v ON_ERROR_STOP=1 -d "$DB" -v N="$ROWS" -f "$SETUP_SQL" >/dev/null 2>&1 ||
	die "$SETUP_SQL failed"
q "CREATE TABLE accounts_b (LIKE accounts INCLUDING ALL)" >/dev/null
q "INSERT INTO accounts_b SELECT * FROM accounts" >/dev/null
q "ALTER TABLE accounts SET (autovacuum_enabled = off); ALTER TABLE accounts_b SET (autovacuum_enabled = off)" >/dev/null
for sql in "VACUUM ANALYZE accounts" "VACUUM ANALYZE accounts_b" CHECKPOINT; do q "$sql" >/dev/null; done
WORKLOAD_SQL=$OWN_TMP/live_txn.sql
sed "s/random(1, 1000000)/random(1, $ROWS)/; s/accounts/accounts_w/g" "$(dirname "$SETUP_SQL")/live_txn.sql" >"$WORKLOAD_SQL"
q "CREATE TABLE accounts_w (LIKE accounts INCLUDING ALL)" >/dev/null
q "INSERT INTO accounts_w SELECT * FROM accounts" >/dev/null
taskset -p -c "$CPU" "$(postmaster_pid)" >/dev/null || die "could not pin the postmaster to CPU $CPU"
say "accounts, accounts_b: $ROWS legacy rows each for the jobs, accounts_w for the workload; server on CPU $CPU"
workload 3 >/dev/null  # warm up: accounts_w into shared buffers

check "worker_cpu_slice default" "$(q "SHOW migration_ext.worker_cpu_slice")" 200us
measure accounts "slice 0.2 ms"
read -r yield_p50 _ <<<"$LATENCY"
if below_ms "$yield_p50" 5; then
	say "ok   slice 0.2 ms: the workload's median latency ($yield_p50 ms) is under 5 ms"
else
	say "FAIL slice 0.2 ms: the workload's median latency is $yield_p50 ms, not under 5 ms"
	CHECK_FAILURES=$((CHECK_FAILURES + 1))
fi

reload_setting migration_ext.worker_cpu_slice 0
measure accounts_b "slice 0 (never yield)"
read -r plain_p50 _ <<<"$LATENCY"
say "for comparison: median latency $plain_p50 ms without yielding, $yield_p50 ms with (not checked: the kernel decides)"
finish
