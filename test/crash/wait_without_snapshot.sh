#!/usr/bin/env bash
# Waiting for a job, and what the wait holds. CALL await_backfill() commits between its looks at the job:
# while it waits, VACUUM removes rows deleted after it began, and a migration's reader swap made after it
# began settles. SELECT wait_backfill(), one statement, holds its snapshot and its transaction for the
# whole wait: the same rows stay, the same swap does not settle (the contrast shows the test can fail).
# Both print progress NOTICEs (percent, rows, rate, ETA) every 5 s unless told progress => false, and so
# does a long verifying scan (advance_migration's): its rows, counted by is_legacy(), every 5 s.
set -euo pipefail
# shellcheck source=lib/crash_common.bash
source "$(dirname "$(realpath "$0")")/lib/crash_common.bash"

PORT=${MEXT_CRASH_PORT_WAIT:-54365}
own_cluster_start "$PORT"
q "SET client_min_messages = warning; CREATE EXTENSION migration_ext" >/dev/null
q "SELECT create_codec('tok', 'reverse', marker => 'tok_')" >/dev/null
q "CREATE TABLE slow (id int PRIMARY KEY, token text);
   INSERT INTO slow SELECT g, reverse('tok_' || g) FROM generate_series(1, 25000) g;
   CREATE TABLE side (id int PRIMARY KEY, v text) WITH (autovacuum_enabled = off);
   INSERT INTO side SELECT g, 'x' FROM generate_series(1, 4000) g;
   CREATE TABLE app (id int PRIMARY KEY, token text);
   CREATE FUNCTION read_app(t text) RETURNS text LANGUAGE sql STABLE AS \$\$ SELECT reverse(t) \$\$;
   SELECT freeze_function('read_app(text)');
   SELECT create_migration('m1', 'app', 'token', 'tok');
   SELECT plan_swap('m1', 'read_app(text)', \$\$ SELECT public.migrate_value('tok', t) \$\$);" >/dev/null
# Slow enough that both waits below find it running: 25,000 rows at 1,000 rows/s.
JOB=$(q "SELECT start_backfill('slow', 'token', 'tok', max_rows_per_second => 1000, batch_size => 100)")
wait_for 30 scanned_above "$JOB" 0 || die "the job never started"

# dead_after_vacuum: delete 1,000 live rows of `side`, VACUUM it, and count the dead rows it had to keep.
dead_after_vacuum() {
	q "DELETE FROM side WHERE id IN (SELECT id FROM side ORDER BY id LIMIT 1000)" >/dev/null
	sleep 0.5 # past any one look of await_backfill's that began before the DELETE
	q "VACUUM side" >/dev/null
	q "SELECT n_dead_tup FROM pg_stat_user_tables WHERE relname = 'side'"
}
# settles <migration>: advance it to tolerant (a reader swap after the wait began) and look whether the
# swap settles within 3 s.
settles() {
	q "SELECT advance_migration('$1')" >/dev/null
	local i
	for i in $(seq 1 15); do
		[[ $(q "SELECT settled FROM migration_status WHERE name = '$1'") == t ]] && { echo settled; return; }
		sleep 0.2
	done
	echo "not settled: $(q "SELECT waiting_for FROM migration_status WHERE name = '$1'")"
}

"$PG_BINDIR/psql" -X -q -d "$DB" -c "CALL await_backfill($JOB)" >"$OWN_TMP/await.out" 2>&1 &
AWAIT=$!
sleep 2
check "await_backfill: VACUUM removes rows deleted while it waits (dead rows kept)" "$(dead_after_vacuum)" 0
check "await_backfill: a reader swap made while it waits settles" "$(settles m1)" settled
check "the job is still running" "$(q "SELECT state IN ('running', 'throttled') FROM backfill_status WHERE job = $JOB")" t
# Between its looks it sleeps with no snapshot at all (not even a short one that would hold back space
# reuse for the length of a sleep): its xmin is seen only in the moments of a look.
held=0
for _ in $(seq 1 20); do
	[[ $(q "SELECT bool_or(backend_xmin IS NOT NULL) FROM pg_stat_activity
	        WHERE query LIKE 'CALL await_backfill%' AND pid <> pg_backend_pid()") == t ]] && held=$((held + 1))
	sleep 0.05
done
say "await_backfill held a snapshot in $held of 20 samples"
check "await_backfill holds no snapshot while it sleeps (at most 6 of 20 samples)" "$((held <= 6))" 1
q "SELECT retreat_migration('m1')" >/dev/null

"$PG_BINDIR/psql" -X -q -At -d "$DB" -c "SELECT wait_backfill($JOB, progress => false)" >"$OWN_TMP/wait.out" 2>&1 &
WAIT=$!
sleep 2
check "wait_backfill: its snapshot keeps rows deleted while it waits (dead rows kept)" "$(dead_after_vacuum)" 1000
check "wait_backfill: a reader swap made while it waits does not settle" "$(settles m1 | cut -c1-12)" "not settled:"

wait "$AWAIT" || die "await_backfill failed: $(cat "$OWN_TMP/await.out")"
wait "$WAIT" || die "wait_backfill failed: $(cat "$OWN_TMP/wait.out")"
check "await_backfill's state" "$(grep -c '^ done$' "$OWN_TMP/await.out")" 1
check "wait_backfill's state" "$(cat "$OWN_TMP/wait.out")" done
progress=$(grep -c -E "^NOTICE:  backfill job $JOB: [0-9.]+% \([0-9]+ of [0-9]+ rows\), [0-9]+ rows/s, ETA ([0-9:]+|unknown), " \
	"$OWN_TMP/await.out" || true)
say "await_backfill printed $progress progress lines"
check "await_backfill reported progress every 5 s" "$((progress >= 3))" 1
check "the last line says done" "$(grep NOTICE "$OWN_TMP/await.out" | tail -n 1 | grep -o 'done$')" done
check "progress => false is quiet" "$(grep -c NOTICE "$OWN_TMP/wait.out" || true)" 0

# A scan that takes 6 s (is_legacy on 300,000 values, some of which sleep), counted the way advance_migration
# counts its verifying scan.
scan=$("$PG_BINDIR/psql" -X -q -At -d "$DB" -c "BEGIN" \
	-c "SELECT migration_ext.scan_progress('verifying a test', 300000)" \
	-c "SELECT count(*) FROM generate_series(1, 300000) g
	    WHERE (g % 1000 <> 0 OR pg_sleep(0.02) IS NOT NULL) AND is_legacy('tok', g::text)" \
	-c "SELECT migration_ext.scan_progress(NULL, NULL)" -c "COMMIT" 2>&1)
say "$(grep NOTICE <<<"$scan" | tail -n 1)"
lines=$(grep -c -E '^NOTICE:  verifying a test: [0-9]+ of about 300000 rows \([0-9]+%\), [0-9]+ rows/s$' <<<"$scan" || true)
check "a long scan reports its progress every 5 s" "$((lines >= 1))" 1
finish
