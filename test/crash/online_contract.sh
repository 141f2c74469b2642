#!/usr/bin/env bash
# The protocol's long steps never stop the application: on a 1M-row table with clients updating single
# rows non-stop, the verifying scan (backfilling -> converted) and the online contract (converted ->
# contracted: ADD ... NOT VALID, then VALIDATE in a transaction of its own) keep every update under a
# second. Then, with a transaction holding a row lock on the table, the contract's ADD CONSTRAINT gives
# up its lock request after migration_ext.ddl_lock_timeout and retries (the caller sees why, as a
# NOTICE, and the updates still never wait long), and completes once that transaction ends.
set -euo pipefail
# shellcheck source=lib/crash_common.bash
source "$(dirname "$(realpath "$0")")/lib/crash_common.bash"

ROWS=${ONLINE_CONTRACT_ROWS:-1000000}
PORT=${MEXT_CRASH_PORT_ONLINE_CONTRACT:-54360}
MAX_WAIT_MS=1000

own_cluster_start "$PORT" "max_wal_size = 4GB" "checkpoint_timeout = 30min"
q "CREATE DATABASE contractdb" >/dev/null
DB=contractdb
setup_accounts "$ROWS"
WORK=$(mktemp -d)
trap 'close_all_transactions; [[ -n ${BENCH:-} ]] && kill "$BENCH" 2>/dev/null; rm -rf "$WORK"; own_cluster_cleanup' EXIT

q "SELECT create_migration('m', 'accounts', 'token', 'v2')" >/dev/null
q "SELECT advance_migration('m')" >/dev/null
q "SELECT advance_migration('m', confirm => 'm')" >/dev/null
JOB=$(q "SELECT start_backfill('m', throttle => false, batch_size => 20000)")
check "backfill" "$(q "SELECT wait_backfill($JOB, interval '10 minutes')")" done

# updates <name>: two clients updating single random rows as fast as they can, until stopped; each
# transaction's latency is logged.
updates() {
	cat >"$WORK/update.sql" <<SQL
\set id random(1, $ROWS)
UPDATE accounts SET balance = balance + 1 WHERE id = :id;
SQL
	"$PG_BINDIR/pgbench" -n -f "$WORK/update.sql" -c 2 -j 2 -T 600 -l --log-prefix="$WORK/$1" "$DB" \
		>"$WORK/$1.out" 2>&1 &
	BENCH=$!
	wait_for 30 q_true "SELECT count(*) >= 2 FROM pg_stat_activity WHERE application_name = 'pgbench' AND state = 'active'" ||
		die "pgbench did not start"
	sleep 1
}
# stop_updates <name>: stops the clients; prints the worst latency (ms) and the number of transactions.
stop_updates() {
	kill -INT "$BENCH" 2>/dev/null || true
	wait "$BENCH" 2>/dev/null || true
	BENCH=
	cat "$WORK/$1".* | awk '{ if ($3 > max) max = $3; n++ } END { printf "%.0f %d\n", max / 1000, n }'
}
ms_since() { echo $((($(date +%s%N) - $1) / 1000000)); }

# 1. The verifying scan and the contract, under non-stop updates.
updates scan
t0=$(date +%s%N)
check "verifying scan" "$(q "SELECT advance_migration('m')")" converted
scan_ms=$(ms_since "$t0")
read -r scan_worst scan_n <<<"$(stop_updates scan)"
say "verifying scan of $ROWS rows: ${scan_ms} ms; $scan_n updates meanwhile, the slowest ${scan_worst} ms"
check "no update waited ${MAX_WAIT_MS} ms or more during the scan" "$((scan_worst < MAX_WAIT_MS))" 1

updates contract
t0=$(date +%s%N)
check "online contract" "$(q "SELECT advance_migration('m')")" contracted
contract_ms=$(ms_since "$t0")
read -r contract_worst contract_n <<<"$(stop_updates contract)"
say "contract (ADD NOT VALID + VALIDATE) of $ROWS rows: ${contract_ms} ms; $contract_n updates meanwhile, the slowest ${contract_worst} ms"
check "no update waited ${MAX_WAIT_MS} ms or more during the contract" "$((contract_worst < MAX_WAIT_MS))" 1
check "the constraint is validated" \
	"$(q "SELECT convalidated FROM pg_constraint WHERE conrelid = 'accounts'::regclass AND contype = 'c'")" t
out=$(q "INSERT INTO accounts (id, token) VALUES (0, 'legacy')" 2>&1) && die "a legacy value got past the contract"
check "the contract refuses the legacy format" "$(grep -c 'violates check constraint' <<<"$out")" 1

# 2. A transaction holding a row lock across the contract: the ADD's ACCESS EXCLUSIVE request times out
#    and is retried; the updates are never held behind it for long; once the transaction ends, it completes.
check "retreat" "$(q "SELECT retreat_migration('m')")" converted
open_transaction holder "UPDATE accounts SET balance = balance WHERE id = 1" || die "could not hold a row lock"
updates held
PGOPTIONS="-c client_min_messages=notice" "$PG_BINDIR/psql" -X -q -At -d "$DB" \
	-c "SELECT advance_migration('m')" >"$WORK/advance.out" 2>"$WORK/advance.notices" &
ADVANCE=$!
wait_for 60 grep -q "waiting for a lock" "$WORK/advance.notices" || die "no retry was reported"
sleep 3
retries=$(grep -c "waiting for a lock" "$WORK/advance.notices")
say "while the row lock is held: $retries lock timeouts reported, e.g. $(grep -m1 'waiting for a lock' "$WORK/advance.notices" | cut -c1-160)"
check "the migration waits, still converted" "$(q "SELECT phase FROM migration_status WHERE name = 'm'")" converted
check "migration_status says what it waits for" \
	"$(q "SELECT waiting_for LIKE 'contract of migration m: %' FROM migration_status WHERE name = 'm'")" t
say "migration_status.waiting_for: $(q "SELECT waiting_for FROM migration_status WHERE name = 'm'" | cut -c1-140)"
close_transaction holder
wait "$ADVANCE" || die "advance_migration failed: $(cat "$WORK/advance.notices")"
check "the contract completes once the transaction ends" "$(cat "$WORK/advance.out")" contracted
read -r held_worst held_n <<<"$(stop_updates held)"
say "$held_n updates meanwhile, the slowest ${held_worst} ms"
check "no update waited ${MAX_WAIT_MS} ms or more while the contract retried" "$((held_worst < MAX_WAIT_MS))" 1
check "retries are recorded (more than one lock timeout)" "$((retries > 1))" 1
finish
