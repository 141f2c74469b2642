#!/usr/bin/env bash
# make demo: the walkthrough of DESIGN.md §1 on a throwaway cluster, on real data, while a live writer
# and reader (pgbench, calling the frozen functions by name) hammer the table the whole time.
set -euo pipefail
cd "$(dirname "$0")/../.."
source test/tools/cluster.sh

ROWS=${DEMO_ROWS:-200000}
PORT=${DEMO_PORT:-54399}
PGBENCH=/usr/lib/postgresql/15/bin/pgbench
dir=$(cluster_mktemp)
writer_pid=
cleanup() {
	[ -n "$writer_pid" ] && kill "$writer_pid" 2>/dev/null && wait "$writer_pid" 2>/dev/null
	cluster_stop "$dir" >/dev/null 2>&1 || true
	rm -rf "$dir"
}
trap cleanup EXIT
eval "$(cluster_start "$dir" "$PORT")"

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
sql() { psql -X -q -v ON_ERROR_STOP=1 -v SHOW_CONTEXT=never -d demo "$@"; }
step() { printf '\033[36mdemo=#\033[0m %s\n' "$1"; sql -c "$1"; }

createdb demo
say "The legacy world: $ROWS accounts whose tokens were stored reversed, and the functions callers use"
sql <<SQL
CREATE TABLE accounts (id bigint PRIMARY KEY, token text NOT NULL, balance bigint NOT NULL DEFAULT 0);
INSERT INTO accounts SELECT g, reverse('tok_' || md5(g::text)), 0 FROM generate_series(1, $ROWS) g;
VACUUM ANALYZE accounts;
-- The callers' contract: they store plain tokens and read plain tokens, by these names, forever.
CREATE FUNCTION decode_token(t text) RETURNS text LANGUAGE sql STABLE AS \$\$ SELECT reverse(\$1) \$\$;
CREATE FUNCTION store_token(bigint, text) RETURNS void LANGUAGE sql
	AS \$\$ UPDATE accounts SET token = reverse(\$2), balance = balance + 1 WHERE id = \$1 \$\$;
SQL
sql -c "SELECT id, token AS stored, decode_token(token) AS what_callers_see FROM accounts ORDER BY id LIMIT 3"

say "A live application starts: 4 clients store and read tokens through the frozen names, non-stop"
cat > "$dir/app.sql" <<SQL
\set id random(1, $ROWS)
SELECT store_token(:id, 'tok_' || md5(random()::text));
SELECT decode_token(token) FROM accounts WHERE id = :id;
SQL
chmod 644 "$dir/app.sql"
"$PGBENCH" -n -c 4 -j 2 -T 600 -P 2 -f "$dir/app.sql" demo > "$dir/app.log" 2>&1 &
writer_pid=$!
sleep 1

say "1. A codec: how a legacy value looks and converts. Detection is intrinsic, no marker column"
step "CREATE EXTENSION migration_ext"
step "SELECT create_codec('token_plain', convert => 'reverse', marker => 'tok_', detect => 'converted')"
step "SELECT * FROM audit_column('accounts', 'token', 'token_plain')"

say "2. Freeze the functions external callers use: their signatures become a contract"
step "SELECT freeze_function('decode_token(text)')"
step "SELECT freeze_function('store_token(bigint,text)')"

say "3. Plan the migration and the body swaps, in order"
step "SELECT create_migration('tokens', 'accounts', 'token', 'token_plain')"
step "SELECT plan_swap('tokens', 'decode_token(text)', \$\$ SELECT migrate_value('token_plain', \$1) \$\$, role => 'reader')"
step "SELECT plan_swap('tokens', 'store_token(bigint,text)', \$\$ UPDATE accounts SET token = \$2, balance = balance + 1 WHERE id = \$1 \$\$, role => 'writer')"
step "SELECT plan FROM inspect_column('accounts', 'token')"

say "Readers become tolerant (reversible), then the settle check"
step "SELECT advance_migration('tokens')"
for _ in $(seq 1 50); do
	settled=$(sql -At -c "SELECT settled FROM migration_status WHERE name = 'tokens'")
	[ "$settled" = t ] && break
	sleep 0.2
done
step "SELECT name, phase, settled, waiting_for FROM migration_status WHERE name = 'tokens'"
say "The door refuses without the typed sign-off"
sql -c "SELECT advance_migration('tokens')" 2>&1 | sed 's/^/   /' || true
step "SELECT advance_migration('tokens', confirm => 'tokens')"
say "Past the door, retreat is refused and says why"
sql -c "SELECT retreat_migration('tokens')" 2>&1 | sed 's/^/   /' || true

say "4. The backfill worker converts the cold rows while the application keeps writing"
job=$(sql -At -c "SELECT start_backfill('tokens', max_rows_per_second => $((ROWS / 8)))")
while :; do
	line=$(sql -At -F ' | ' -c "SELECT state, rows_scanned || '/' || rows_estimated || ' rows', percent_done || '%',
	        coalesce(rows_per_second::text, '-') || ' rows/s', 'batch ' || batch_size, 'conflicts ' || conflicts,
	        'eta ' || coalesce(to_char(eta, 'MI:SS'), '-'), coalesce(throttle_reason, '') FROM backfill_status WHERE job = $job")
	echo "   $line"
	case "$line" in done*|failed*|cancelled*|interrupted*) break ;; esac
	sleep 0.5
done
step "SELECT job, state, rows_scanned, rows_converted, rows_skipped, conflicts, batches, last_error FROM backfill_status"

say "Verify (a scan finding zero legacy rows), then contract online"
step "SELECT advance_migration('tokens')"
step "SELECT advance_migration('tokens')"
step "SELECT name, phase, settled, job_state, constraint_name FROM migration_status"
say "The contract refuses legacy values now"
sql -c "INSERT INTO accounts VALUES (0, reverse('tok_legacy'))" 2>&1 | sed 's/^/   /' || true

kill "$writer_pid" 2>/dev/null || true
wait "$writer_pid" 2>/dev/null || true
writer_pid=
say "The live application, throughout (pgbench progress every 2 s; an error would abort a client):"
grep -E "^progress" "$dir/app.log" | sed 's/^/   /' || true
echo "   clients aborted by an error: $(grep -c "aborted" "$dir/app.log" || true)"
step "SELECT count(*) AS rows, count(*) FILTER (WHERE token LIKE 'tok_%') AS new_format, count(*) FILTER (WHERE decode_token(token) NOT LIKE 'tok_%') AS unreadable FROM accounts"
step "SELECT event, from_phase, to_phase, fn, role, detail FROM migration_history ORDER BY id"
say "Done. The cluster is removed."
