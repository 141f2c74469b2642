#!/usr/bin/env bash
# The one-way door `tolerant -> producing` needs the reader swaps *settled* (DESIGN.md §2): no
# transaction that began before the swap is still open, and every streaming standby has replayed
# past the swap's WAL position. Checked on a real primary + streaming standby of this test's own:
#   (a) a transaction opened before advance_migration() (planned -> tolerant) keeps settled = false,
#       waiting_for names its pid, and the door is refused saying the swaps have not settled; once
#       it ends, settled = true (a transaction begun after the swap does not hold it back).
#   (b) retreat to planned, pause WAL replay on the standby, advance again: settled = false,
#       waiting_for names the standby, the door is refused; resume replay and within a few seconds
#       settled = true and the door opens with confirm.
set -euo pipefail
# shellcheck source=lib/crash_common.bash
source "$(dirname "$(realpath "$0")")/lib/crash_common.bash"

P_PORT=${MEXT_CRASH_PORT_SETTLE_PRIMARY:-54351}
S_PORT=${MEXT_CRASH_PORT_SETTLE_STANDBY:-54352}

SESSION_PID=

settle_cleanup() {
	local rc=$?
	if [[ -n $SESSION_PID ]]; then kill "$SESSION_PID" 2>/dev/null || true; fi
	pair_cleanup "$rc"
}
trap 'exit 130' INT TERM

# q_err <sql>: runs it, prints stdout and stderr (ERROR/DETAIL/HINT); the exit status is psql's.
q_err() { timeout 60 "$PG_BINDIR/psql" -X -q -At -v ON_ERROR_STOP=1 -d "$DB" -c "$1" 2>&1; }
# Does the standby's copy of decode_token already carry the tolerant body?
standby_reader_is_tolerant() {
	PGHOST=$STANDBY PGPORT=$S_PORT DB=settle \
		q "SELECT prosrc ~ 'migrate_value' FROM pg_proc WHERE oid = 'decode_token(text)'::regprocedure"
}
status_field() { q "SELECT $1 FROM migration_status WHERE name = 'tokens'"; }
settled_is() { [[ $(q_try "SELECT settled FROM migration_status WHERE name = 'tokens'") == "$1" ]]; }
# contains <what> <haystack> <needle>
contains() {
	if [[ $2 == *"$3"* ]]; then
		say "ok   $1: contains '$3'"
	else
		say "FAIL $1: '$2' does not contain '$3'"
		CHECK_FAILURES=$((CHECK_FAILURES + 1))
	fi
}

# ------------------------------------------------------------------ primary + streaming standby
DB=postgres
pair_start "$P_PORT" "$S_PORT" settle_standby
trap settle_cleanup EXIT
check "shared_preload_libraries (primary)" "$(q "SHOW shared_preload_libraries")" migration_ext
check "standby is in recovery" "$(qs "SELECT pg_is_in_recovery()")" t

# ------------------------------------------------------------------ the walkthrough's setup
q "CREATE DATABASE settle" >/dev/null
DB=settle
q "SET client_min_messages = warning; CREATE EXTENSION migration_ext" >/dev/null
q "CREATE TABLE accounts (id bigint PRIMARY KEY, token text NOT NULL, balance bigint NOT NULL DEFAULT 0);
   INSERT INTO accounts SELECT g, reverse('tok_' || md5(g::text)), 0 FROM generate_series(1, 2000) g;
   CREATE FUNCTION decode_token(t text) RETURNS text LANGUAGE sql STABLE AS \$\$ SELECT reverse(\$1) \$\$;
   CREATE FUNCTION store_token(bigint, text) RETURNS void LANGUAGE sql
     AS \$\$ UPDATE accounts SET token = reverse(\$2), balance = balance + 1 WHERE id = \$1 \$\$;" >/dev/null
q "SELECT create_codec('token_plain', convert => 'reverse', marker => 'tok_', detect => 'converted')" >/dev/null
q "SELECT freeze_function('decode_token(text)')" >/dev/null
q "SELECT freeze_function('store_token(bigint,text)')" >/dev/null
q "SELECT create_migration('tokens', 'accounts', 'token', 'token_plain')" >/dev/null
q "SELECT plan_swap('tokens', 'decode_token(text)', \$\$ SELECT migrate_value('token_plain', \$1) \$\$, role => 'reader')" >/dev/null
q "SELECT plan_swap('tokens', 'store_token(bigint,text)',
                    \$\$ UPDATE accounts SET token = \$2, balance = balance + 1 WHERE id = \$1 \$\$, role => 'writer')" >/dev/null
check "phase after setup" "$(status_field phase)" planned
wait_for 30 standby_caught_up || die "standby did not catch up after the setup"

# ------------------------------------------------------------------ (a) an open old transaction
say "(a) a transaction opened before the reader swap holds the door"
# A second session, kept open as a coprocess: its transaction stays open between our statements.
coproc OLD_TX { "$PG_BINDIR/psql" -X -q -At -d "$DB" 2>&1; }
SESSION_PID=$OLD_TX_PID
echo "BEGIN; SELECT pg_backend_pid();" >&"${OLD_TX[1]}"
read -r -t 15 old_pid <&"${OLD_TX[0]}" || die "the second session did not answer"
[[ $old_pid =~ ^[0-9]+$ ]] || die "the second session said '$old_pid'"
check "second session pid $old_pid is idle in transaction" \
	"$(q "SELECT state FROM pg_stat_activity WHERE pid = $old_pid")" "idle in transaction"

check "advance_migration('tokens') (planned -> tolerant)" "$(q "SELECT advance_migration('tokens')")" tolerant
check "settled (transaction $old_pid still open)" "$(status_field settled)" f
waiting=$(status_field waiting_for)
say "waiting_for: $waiting"
contains "waiting_for names the old transaction" "$waiting" "pid $old_pid"
# Stays so: it is the open transaction, not a moment's lag.
sleep 2
check "settled 2 s later (transaction $old_pid still open)" "$(status_field settled)" f
rc=0
out=$(q_err "SELECT advance_migration('tokens', confirm => 'tokens')") || rc=$?
say "door with confirm while unsettled: $(tr '\n' ' ' <<<"$out")"
check "door refused while transaction $old_pid is open (psql exit)" "$rc" 1
contains "refusal says the swaps have not settled" "$out" "the reader swaps have not settled"
contains "refusal names what it waits for" "$out" "pid $old_pid"
check "phase after the refusal" "$(status_field phase)" tolerant

echo "COMMIT;" >&"${OLD_TX[1]}"
if wait_for 10 settled_is t; then
	check "settled after transaction $old_pid ended" "$(status_field settled)" t
else
	check "settled within 10 s after transaction $old_pid ended" "$(status_field settled)" t
fi
check "waiting_for after it ended" "$(status_field "coalesce(waiting_for, '<null>')")" "<null>"

# A transaction that begins after the swap does not hold the door.
echo "BEGIN; SELECT 'new';" >&"${OLD_TX[1]}"
read -r -t 15 answer <&"${OLD_TX[0]}" || die "the second session did not answer"
check "a new transaction is open in pid $old_pid" "$answer/$(q "SELECT state FROM pg_stat_activity WHERE pid = $old_pid")" \
	"new/idle in transaction"
check "settled with a transaction begun after the swap" "$(status_field settled)" t
echo "COMMIT;" >&"${OLD_TX[1]}"
echo '\q' >&"${OLD_TX[1]}"
wait "$SESSION_PID" 2>/dev/null || true
SESSION_PID=

check "retreat_migration('tokens') (tolerant -> planned)" "$(q "SELECT retreat_migration('tokens')")" planned
check "settled in planned" "$(status_field settled)" f
wait_for 30 standby_caught_up || die "standby did not catch up after the retreat"

# ------------------------------------------------------------------ (b) a standby that has not replayed
say "(b) a standby that has not replayed the reader swap holds the door"
qs "SELECT pg_wal_replay_pause()" >/dev/null
# The pause takes effect at the next record: make one, until the standby reports it paused.
replay_paused() {
	q "SELECT pg_current_xact_id()" >/dev/null
	[[ $(qs "SELECT pg_get_wal_replay_pause_state()") == paused ]]
}
wait_for 20 replay_paused || die "replay on the standby never paused"
say "standby replay paused at $(qs "SELECT pg_last_wal_replay_lsn()")"

check "advance_migration('tokens') again (planned -> tolerant)" "$(q "SELECT advance_migration('tokens')")" tolerant
swap_lsn=$(q "SELECT max(applied_lsn) FROM migration_ext.planned_swap WHERE migration = 'tokens' AND role = 'reader'")
say "reader swap at WAL $swap_lsn"
# The standby receives the swap's WAL (and reports it) but does not replay it.
received() {
	q_true "SELECT flush_lsn >= '$swap_lsn' FROM pg_stat_replication WHERE application_name = '$STANDBY_NAME'"
}
wait_for 15 received || die "the standby never received the swap's WAL"
sleep 1.5 # past a status interval: the standby has reported its replay position since
say "pg_stat_replication: $(q "SELECT format('flush_lsn=%s replay_lsn=%s', flush_lsn, replay_lsn)
                              FROM pg_stat_replication WHERE application_name = '$STANDBY_NAME'")"
check "standby still runs the old decode_token body" \
	"$(standby_reader_is_tolerant)" f
check "settled (standby replay paused)" "$(status_field settled)" f
waiting=$(status_field waiting_for)
say "waiting_for: $waiting"
contains "waiting_for names the standby" "$waiting" "standby $STANDBY_NAME"
contains "waiting_for names the swap's WAL position" "$waiting" "< $swap_lsn"
rc=0
out=$(q_err "SELECT advance_migration('tokens', confirm => 'tokens')") || rc=$?
say "door with confirm while the standby lags: $(tr '\n' ' ' <<<"$out")"
check "door refused while the standby lags (psql exit)" "$rc" 1
contains "refusal says the swaps have not settled" "$out" "the reader swaps have not settled"
contains "refusal names the standby" "$out" "standby $STANDBY_NAME"
check "phase after the refusal" "$(status_field phase)" tolerant
sleep 2
check "settled 2 s later (replay still paused)" "$(status_field settled)" f

qs "SELECT pg_wal_replay_resume()" >/dev/null
t0=$(date +%s%N)
if wait_for 10 settled_is t; then
	say "settled $((($(date +%s%N) - t0) / 1000000)) ms after pg_wal_replay_resume()"
	check "settled after the standby replayed" "$(status_field settled)" t
else
	check "settled within 10 s after pg_wal_replay_resume()" "$(status_field settled)" t
	say "waiting_for: $(status_field waiting_for)"
fi
check "standby replayed past the swap" \
	"$(q "SELECT replay_lsn >= '$swap_lsn' FROM pg_stat_replication WHERE application_name = '$STANDBY_NAME'")" t
check "standby now runs the tolerant decode_token" \
	"$(standby_reader_is_tolerant)" t
rc=0
out=$(q_err "SELECT advance_migration('tokens')") || rc=$?
check "door without confirm still refused" "$rc" 1
contains "refusal asks for the typed sign-off" "$out" "typed sign-off"
check "advance_migration('tokens', confirm => 'tokens')" \
	"$(q "SELECT advance_migration('tokens', confirm => 'tokens')")" producing
check "phase" "$(status_field phase)" producing
check "store_token now writes the new format" \
	"$(q "SELECT prosrc !~ 'reverse' FROM pg_proc WHERE oid = 'store_token(bigint,text)'::regprocedure")" t
finish
