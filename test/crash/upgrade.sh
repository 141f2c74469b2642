#!/usr/bin/env bash
# ALTER EXTENSION migration_ext UPDATE from 0.1.0, populated and busy: a codec, frozen functions with
# swaps, migrations in three phases, a paused job and a job converting under a live writer. After the
# update the extension is exactly what a fresh install of the new version creates (every member object,
# its definition and its privileges, as pg_dump --binary-upgrade lists them); the running job finishes
# without a lost or clobbered row, the paused one resumes, the migrations go on to contracted, and the
# new version's functions work on the upgraded state (a reader repairs through an old migration).
set -euo pipefail
# shellcheck source=lib/crash_common.bash
source "$(dirname "$(realpath "$0")")/lib/crash_common.bash"

PORT=${MEXT_CRASH_PORT_UPGRADE:-54364}
ROWS=20000
own_cluster_start "$PORT" "migration_ext.resume_interval = 1s"
q "CREATE DATABASE upgraded" >/dev/null
q "CREATE DATABASE fresh" >/dev/null
DB=upgraded

current=$(sed -n "s/^default_version *= *'\(.*\)'/\1/p" "$($PG_CONFIG --sharedir)/extension/migration_ext.control")
check "default version" "$current" 0.2.0

q "SET client_min_messages = warning; CREATE EXTENSION migration_ext VERSION '0.1.0'" >/dev/null
check "installed version" "$(q "SELECT extversion FROM pg_extension WHERE extname = 'migration_ext'")" 0.1.0
q "SELECT create_codec('tok', 'reverse', marker => 'tok_')" >/dev/null
# table_and_reader <name>: app.<name> (id, token) with legacy tokens, its frozen reader and writer, a migration.
table_and_reader() {
	q "CREATE TABLE app.$1 (id int PRIMARY KEY, token text NOT NULL);
	   INSERT INTO app.$1 SELECT g, reverse('tok_' || g) FROM generate_series(1, $ROWS) g;
	   CREATE FUNCTION app.read_$1(t text) RETURNS text LANGUAGE sql STABLE AS \$\$ SELECT reverse(t) \$\$;
	   CREATE FUNCTION app.write_$1(i int, t text) RETURNS void LANGUAGE sql
	     AS \$\$ UPDATE app.$1 SET token = reverse(t) WHERE id = i \$\$;
	   SELECT freeze_function('app.read_$1(text)'), freeze_function('app.write_$1(int,text)');
	   SELECT create_migration('$1', 'app.$1', 'token', 'tok');
	   SELECT plan_swap('$1', 'app.read_$1(text)', \$\$ SELECT public.migrate_value('tok', t) \$\$);
	   SELECT plan_swap('$1', 'app.write_$1(int,text)', \$\$ UPDATE app.$1 SET token = t WHERE id = i \$\$,
	                    role => 'writer')" >/dev/null
}
q "CREATE SCHEMA app" >/dev/null
for m in planned tolerant busy; do table_and_reader "$m"; done
q "SELECT advance_migration('tolerant')" >/dev/null
q "SELECT advance_migration('busy'), advance_migration('busy', confirm => 'busy')" >/dev/null
PAUSED=$(paused_job app.paused "$ROWS")

# A writer through the frozen writer (new format since the door) while the job converts slowly.
BUSY=$(q "SELECT start_backfill('busy', max_rows_per_second => 2000, batch_size => 100)")
wait_for 30 scanned_above "$BUSY" 500 || die "the busy job never got going"
WRITER_STOP=$(mktemp)
(
	i=0
	while [[ ! -s $WRITER_STOP ]]; do
		i=$((i + 1))
		id=$(((i * 7919) % ROWS + 1))
		if q "SELECT app.write_busy($id, 'new_$id')" >/dev/null 2>&1; then echo "$id" >>"$WRITER_STOP.ids"; fi
	done
) &
WRITER=$!

q "ALTER EXTENSION migration_ext UPDATE" >/dev/null
check "updated version" "$(q "SELECT extversion FROM pg_extension WHERE extname = 'migration_ext'")" "$current"
check "the job runs on across the update" "$(q "SELECT state IN ('running', 'throttled') FROM backfill_status WHERE job = $BUSY")" t
wait_for 20 scanned_above "$BUSY" 3000 || die "the busy job stopped after the update"

# The new version's wait, on a job started by the old one.
check "busy job done" "$(q "SELECT wait_backfill($BUSY, '300 s', progress => false)")" done
echo stop >"$WRITER_STOP"
wait "$WRITER"
check "no legacy token left" "$(q "SELECT count_legacy('app.busy', 'token', 'tok')")" 0
written=$(sort -un "$WRITER_STOP.ids" | wc -l)
say "the writer wrote $written distinct rows during the update"
check "no write clobbered" "$(q "SELECT count(*) FROM app.busy WHERE id IN ($(sort -un "$WRITER_STOP.ids" | paste -sd,)) AND token <> 'new_' || id")" 0
check "every row converted or written" "$(q "SELECT count(*) FROM app.busy WHERE token NOT IN ('tok_' || id, 'new_' || id)")" 0
rm -f "$WRITER_STOP" "$WRITER_STOP.ids"

q "SELECT resume_backfill($PAUSED)" >/dev/null
check "paused job resumed and done" "$(q "SELECT wait_backfill($PAUSED, '300 s', progress => false)")" done
check "reader on the upgraded state" "$(q "SELECT app.read_busy('new_5')")" new_5
q "SELECT advance_migration('busy')" >/dev/null
q "SELECT advance_migration('busy')" >/dev/null
q "SELECT advance_migration('planned'), advance_migration('tolerant', confirm => 'tolerant')" >/dev/null
check "phases after the update" \
	"$(q "SELECT string_agg(name || '=' || phase, ' ' ORDER BY name) FROM migration_status")" \
	"busy=contracted planned=tolerant tolerant=producing"
check "history kept" "$(q "SELECT count(*) > 0 FROM migration_history WHERE migration = 'busy' AND to_phase = 'producing'")" t
# Repair on read, new in 0.2.0, on a migration the old version planned: the read converts and writes back.
check "repair_value on the upgraded state" "$(q "SELECT repair_value('tolerant', token, id) FROM app.tolerant WHERE id = 7")" tok_7
check "the read wrote its row back" "$(q "SELECT token FROM app.tolerant WHERE id = 7")" tok_7

# The upgraded extension is the fresh one, object for object (OIDs and frozen xids aside).
DB=fresh q "SET client_min_messages = warning; CREATE EXTENSION migration_ext" >/dev/null
# Every object's definition and privileges as pg_dump --binary-upgrade lists them, without OIDs, frozen
# xids, sequence positions and the objects of schema app, which only the upgraded database has.
members() {
	"$PG_BINDIR/pg_dump" --schema-only --binary-upgrade -d "$1" |
		grep -v -e 'binary_upgrade_set_next' -e 'binary_upgrade_create_empty_extension' -e 'relfrozenxid' \
			-e '^WHERE oid = ' -e '^\\restrict' -e '^\\unrestrict' -e 'pg_catalog.setval' |
		awk '/^-- Name: / { skip = ($0 ~ /; Schema: app;/ || $0 ~ /^-- Name: app; Type: SCHEMA;/) } !skip'
}
diff <(members upgraded) <(members fresh) >"$OWN_TMP/upgrade.diff" || true
check "upgraded = fresh (lines of difference)" "$(wc -l <"$OWN_TMP/upgrade.diff")" 0
[[ -s $OWN_TMP/upgrade.diff ]] && head -40 "$OWN_TMP/upgrade.diff"
check "dump listed the members" "$(members fresh | grep -c -E 'ALTER EXTENSION migration_ext ADD (FUNCTION|PROCEDURE)')" \
	"$(DB=fresh q "SELECT count(*) FROM pg_depend WHERE refobjid = (SELECT oid FROM pg_extension WHERE extname = 'migration_ext') AND deptype = 'e' AND classid = 'pg_proc'::regclass")"
finish
