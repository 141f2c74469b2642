#!/usr/bin/env bash
# Backups restore: a database with a migration in every phase (planned, tolerant, producing, backfilling
# with its job running, converted, contracted), a column move and a paused job is dumped with pg_dump
# -Fp, -Fc and -Fd while the job runs, and restored with psql, pg_restore, pg_restore -j 4 and a
# pg_restore --section split into fresh databases. Each restored copy has every table's rows, every
# frozen function's body and history, every migration's phase and history; its readers answer; its jobs
# come back paused (none starts by itself, though the launcher looks every second) and finish after
# resume_backfill() with no legacy value left; and every migration goes on from its phase to contracted.
# DROP EXTENSION without CASCADE is refused while migrations are in flight.
set -euo pipefail
# shellcheck source=lib/crash_common.bash
source "$(dirname "$(realpath "$0")")/lib/crash_common.bash"

PORT=${MEXT_CRASH_PORT_BACKUP:-54361}
ROWS=20000
own_cluster_start "$PORT" "migration_ext.resume_interval = 1s"
WORK=$(mktemp -d)
chmod 777 "$WORK"
trap 'rm -rf "$WORK"; own_cluster_cleanup' EXIT
q "CREATE DATABASE src" >/dev/null
DB=src

q "SET client_min_messages = warning; CREATE EXTENSION migration_ext" >/dev/null
q "SELECT create_codec('tok', 'reverse', marker => 'tok_')" >/dev/null
# table_and_reader <name>: app.<name> (id, token, copy) with legacy tokens, and its reader and writer.
table_and_reader() {
	q "CREATE TABLE app.$1 (id int PRIMARY KEY, token text NOT NULL, copy text);
	   INSERT INTO app.$1 SELECT g, reverse('tok_' || g), NULL FROM generate_series(1, $ROWS) g;
	   CREATE FUNCTION app.read_$1(t text) RETURNS text LANGUAGE sql STABLE AS \$\$ SELECT reverse(t) \$\$;
	   CREATE FUNCTION app.write_$1(i int, t text) RETURNS void LANGUAGE sql
	     AS \$\$ UPDATE app.$1 SET token = reverse(t) WHERE id = i \$\$;
	   SELECT freeze_function('app.read_$1(text)'), freeze_function('app.write_$1(int,text)');
	   SELECT create_migration('$1', 'app.$1', 'token', 'tok');
	   SELECT plan_swap('$1', 'app.read_$1(text)', \$\$ SELECT public.migrate_value('tok', t) \$\$);
	   SELECT plan_swap('$1', 'app.write_$1(int,text)', \$\$ UPDATE app.$1 SET token = t WHERE id = i \$\$,
	                    role => 'writer')" >/dev/null
}
advance() { q "SELECT advance_migration('$1'${2:+, confirm => '$1'})"; }
q "CREATE SCHEMA app" >/dev/null
for m in planned tolerant producing backfilling converted contracted; do table_and_reader "$m"; done
for m in tolerant producing backfilling converted contracted; do advance "$m" >/dev/null; done
for m in producing backfilling converted contracted; do advance "$m" confirm >/dev/null; done
for m in converted contracted; do
	job=$(q "SELECT start_backfill('$m', throttle => false)")
	[[ $(q "SELECT wait_backfill($job, '120 s')") == done ]] || die "backfill of $m did not finish"
	advance "$m" >/dev/null
done
advance contracted >/dev/null
# A column move (token -> copy, through a mirror), converted, and a paused job.
q "CREATE TABLE app.moved (id int PRIMARY KEY, token text, copy text);
   INSERT INTO app.moved SELECT g, reverse('tok_' || g), NULL FROM generate_series(1, $ROWS) g;
   SELECT create_mirror('app.moved', 'token', 'copy', 'tok');
   SELECT create_migration('moved', 'app.moved', 'copy', 'tok', source_column => 'token');
   SELECT advance_migration('moved'), advance_migration('moved', confirm => 'moved')" >/dev/null
job=$(q "SELECT start_backfill('moved', throttle => false)")
[[ $(q "SELECT wait_backfill($job, '120 s')") == done ]] || die "the column move's backfill did not finish"
advance moved >/dev/null
PAUSED=$(paused_job app.paused "$ROWS")
# The backfilling migration's job runs (slowly) through the dumps.
RUNNING=$(q "SELECT start_backfill('backfilling', max_rows_per_second => 1000, batch_size => 100)")
wait_for 30 scanned_above "$RUNNING" 500 || die "the running job never got going"
check "phases" "$(q "SELECT string_agg(name || '=' || phase, ' ' ORDER BY name) FROM migration_status")" \
	"backfilling=backfilling contracted=contracted converted=converted moved=converted planned=planned producing=producing tolerant=tolerant"

# DROP EXTENSION while migrations are in flight is refused and names them.
out=$(q "DROP EXTENSION migration_ext" 2>&1) && die "DROP EXTENSION went through"
check "DROP EXTENSION refused" "$(grep -o 'cannot drop extension migration_ext because migrations are in flight: backfilling (backfilling), converted (converted), moved (converted), producing (producing), tolerant (tolerant)' <<<"$out")" \
	"cannot drop extension migration_ext because migrations are in flight: backfilling (backfilling), converted (converted), moved (converted), producing (producing), tolerant (tolerant)"

# What a restored copy must equal: the state tables' contents (as the views show them) and the tables
# that nothing changes while the dumps run.
STATE="SELECT md5(string_agg(x, '|' ORDER BY x)) FROM (
	SELECT format('%s %s %s %s', name, phase, codec, constraint_name) AS x FROM migration_status
	UNION ALL SELECT format('%s %s %s %s %s', migration, event, from_phase, to_phase, detail) FROM migration_history
	UNION ALL SELECT format('%s %s %s %s %s', fn, version, role, body, is_current) FROM function_history
	UNION ALL SELECT format('%s %s', fn, pg_get_functiondef(fn)) FROM migration_ext.frozen_function
	UNION ALL SELECT format('%s %s %s %s', name, convert, marker, detect) FROM migration_ext.codec
	UNION ALL SELECT format('%s %s %s', migration, ordinal, value) FROM migration_ext.read_sample) s"
rows_of() { q "SELECT count(*) || ' ' || md5(string_agg(format('%s %s %s', id, token, copy), '|' ORDER BY id)) FROM app.$1"; }
STABLE_TABLES="planned tolerant producing converted contracted moved"
declare -A SRC_ROWS
for t in $STABLE_TABLES; do SRC_ROWS[$t]=$(rows_of "$t"); done
SRC_STATE=$(q "$STATE")

DUMP_OPTS=(-h "$PGHOST" -p "$PGPORT" -U postgres)
"$PG_BINDIR/pg_dump" "${DUMP_OPTS[@]}" -Fp -f "$WORK/src.sql" src || die "pg_dump -Fp failed"
"$PG_BINDIR/pg_dump" "${DUMP_OPTS[@]}" -Fc -f "$WORK/src.dump" src || die "pg_dump -Fc failed"
"$PG_BINDIR/pg_dump" "${DUMP_OPTS[@]}" -Fd -j 2 -f "$WORK/src.dir" src || die "pg_dump -Fd failed"
say "dumped while job $RUNNING ran ($(job_line "$RUNNING" | cut -d' ' -f1-3))"
q "SELECT cancel_backfill($RUNNING)" >/dev/null

restore() { # restore <database> <how...>
	local db=$1; shift
	q "CREATE DATABASE $db" >/dev/null
	"$@" >"$WORK/$db.log" 2>&1 || die "restore into $db failed: $(tail -n 5 "$WORK/$db.log")"
}
restore r_plain "$PG_BINDIR/psql" -X -q -v ON_ERROR_STOP=1 -d r_plain -f "$WORK/src.sql"
restore r_custom "$PG_BINDIR/pg_restore" "${DUMP_OPTS[@]}" --exit-on-error -d r_custom "$WORK/src.dump"
restore r_parallel "$PG_BINDIR/pg_restore" "${DUMP_OPTS[@]}" --exit-on-error -j 4 -d r_parallel "$WORK/src.dir"
restore r_sections bash -c "for s in pre-data data post-data; do
	'$PG_BINDIR/pg_restore' -h '$PGHOST' -p '$PGPORT' -U postgres --exit-on-error --section=\$s -d r_sections '$WORK/src.dump' || exit 1
done"

for DB in r_plain r_custom r_parallel r_sections; do
	say "--- $DB"
	for t in $STABLE_TABLES; do check "$DB: rows of app.$t" "$(rows_of "$t")" "${SRC_ROWS[$t]}"; done
	check "$DB: codecs, frozen functions, history, migrations, read samples" "$(q "$STATE")" "$SRC_STATE"
	check "$DB: the backfilling job's checkpoint and rows agree (no legacy row up to its last key)" \
		"$(q "SELECT count(*) FROM app.backfilling t, backfill_status s WHERE s.job = $RUNNING
		      AND t.id <= s.last_key[1]::int AND public.is_legacy('tok', t.token)")" 0
	check "$DB: a reader answers for both formats" \
		"$(q "SELECT app.read_backfilling(reverse('tok_7')) || ' ' || app.read_backfilling('tok_7')")" "tok_7 tok_7"
	check "$DB: the contract still refuses the legacy format" \
		"$(q "INSERT INTO app.contracted VALUES (0, 'legacy_kot')" 2>&1 | grep -c 'violates check constraint' || true)" 1
	check "$DB: restored jobs are paused" \
		"$(q "SELECT string_agg(job || '=' || state, ' ' ORDER BY job) FROM backfill_status WHERE job IN ($RUNNING, $PAUSED)")" \
		"$PAUSED=paused $RUNNING=paused"
	sleep 2 # two looks of the launcher
	check "$DB: no worker started by itself" \
		"$(q "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'migration_ext backfill' AND datname = '$DB'")" 0
	for job in "$RUNNING" "$PAUSED"; do
		q "SELECT resume_backfill($job)" >/dev/null
		q "SELECT alter_backfill($job, max_rows_per_second => 0, throttle => false)" >/dev/null
	done
	for job in "$RUNNING" "$PAUSED"; do
		check "$DB: job $job resumed and done" "$(q "SELECT wait_backfill($job, '120 s')")" done
	done
	check "$DB: no legacy value left by the jobs" \
		"$(q "SELECT public.count_legacy('app.backfilling', 'token', 'tok') + public.count_legacy('app.paused', 'token', 'tok')")" 0
	# Every migration on to contracted.
	advance planned >/dev/null
	advance tolerant confirm >/dev/null
	advance planned confirm >/dev/null
	for m in planned tolerant producing; do
		job=$(q "SELECT start_backfill('$m', throttle => false)")
		[[ $(q "SELECT wait_backfill($job, '120 s')") == done ]] || die "$DB: the backfill of $m did not finish"
	done
	for m in planned tolerant producing backfilling; do advance "$m" >/dev/null; done
	for m in planned tolerant producing backfilling converted moved; do advance "$m" >/dev/null; done
	check "$DB: every migration contracted" \
		"$(q "SELECT string_agg(DISTINCT phase, ',') FROM migration_status")" contracted
done
DB=r_plain
q "DROP EXTENSION migration_ext CASCADE" >/dev/null 2>&1 || die "DROP EXTENSION ... CASCADE failed"
check "CASCADE drops it, and the contract constraints with it" \
	"$(q "SELECT count(*) FROM pg_constraint WHERE conrelid = 'app.contracted'::regclass AND contype = 'c'")" 0
finish
