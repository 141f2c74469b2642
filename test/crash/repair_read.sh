#!/usr/bin/env bash
# Repair on read across a standby and restarts, on a real primary and its streaming standby:
#   (a) on the standby a reader converts and writes nothing (the row stays legacy on both servers);
#   (b) on the primary the same reader writes back, and migration_status counts it;
#   (c) the launcher writes the counters into migration_ext.read_repair within resume_interval, and the
#       count survives a restart;
#   (d) after an immediate shutdown the count is what was written by then (shared memory is gone), and
#       every row reads converted whether or not its repair outlived the crash (a transaction of repairs
#       alone commits without waiting for its WAL flush: losing one loses nothing but the repair).
set -euo pipefail
# shellcheck source=lib/crash_common.bash
source "$(dirname "$(realpath "$0")")/lib/crash_common.bash"

P_PORT=${MEXT_CRASH_PORT_REPAIR_PRIMARY:-54366}
S_PORT=${MEXT_CRASH_PORT_REPAIR_STANDBY:-54367}

DB=postgres
pair_start "$P_PORT" "$S_PORT" repair_standby
# The launcher looks every second: a started launcher sleeps out the interval it had, so this needs a restart.
q "ALTER SYSTEM SET migration_ext.resume_interval = '1s'" >/dev/null
cluster_pg_ctl "$PRIMARY" restart -m fast -w -t 60 >/dev/null || die "the primary did not restart"
q "CREATE DATABASE repair" >/dev/null
DB=repair
q "SET client_min_messages = warning; CREATE EXTENSION migration_ext" >/dev/null
q "CREATE TABLE accounts (id bigint PRIMARY KEY, token text NOT NULL);
   INSERT INTO accounts SELECT g, reverse('tok_' || g) FROM generate_series(1, 100) g;
   CREATE FUNCTION read_token(bigint) RETURNS text LANGUAGE sql STABLE
     AS \$\$ SELECT repair_value('tokens', token, id) FROM accounts WHERE id = \$1 \$\$;
   SELECT create_codec('tok', 'reverse', marker => 'tok_');
   SELECT freeze_function('read_token(bigint)');
   SELECT create_migration('tokens', 'accounts', 'token', 'tok');
   SELECT advance_migration('tokens');
   SELECT advance_migration('tokens', confirm => 'tokens', read_sample => 0)" >/dev/null
reads() { q "SELECT string_agg(read_token(g), ',' ORDER BY g) FROM generate_series($1, $2) g"; }
repaired() { q "SELECT repaired_by_reads FROM migration_status WHERE name = 'tokens'"; }
legacy_between() { q "SELECT count(*) FROM accounts WHERE id BETWEEN $1 AND $2 AND token NOT LIKE 'tok\_%'"; }

# (a) The standby.
wait_for 30 standby_caught_up || die "the standby did not catch up"
sq() { PGHOST=$STANDBY PGPORT=$S_PORT DB=repair q "$1"; }
check "standby: the reader converts" "$(sq "SELECT read_token(1)")" tok_1
check "standby: nothing written there" "$(sq "SELECT token FROM accounts WHERE id = 1")" 1_kot
check "primary: nothing written either" "$(q "SELECT token FROM accounts WHERE id = 1")" 1_kot

# (b) The primary.
check "primary: ten reads" "$(reads 1 10)" "$(q "SELECT string_agg('tok_' || g, ',' ORDER BY g) FROM generate_series(1, 10) g")"
check "primary: the ten rows written back" "$(legacy_between 1 10)" 0
check "counted" "$(repaired)" 10
wait_for 30 standby_caught_up || die "the standby did not catch up"
check "standby: the write-backs replicated" "$(sq "SELECT count(*) FROM accounts WHERE id <= 10 AND token LIKE 'tok\_%'")" 10

# (c) Written by the launcher, kept across a restart.
wait_for 30 q_true "SELECT coalesce((SELECT repaired FROM migration_ext.read_repair WHERE migration = 'tokens'), 0) = 10" ||
	die "the launcher never wrote the counters"
check "in shared memory, nothing left to write" "$(q "SELECT migration_ext.unflushed_repairs('tokens')")" 0
cluster_pg_ctl "$PRIMARY" restart -m fast -w -t 60 >/dev/null || die "the primary did not restart"
wait_for 60 q_true "SELECT true" || die "the primary is not accepting connections"
check "count after a restart" "$(repaired)" 10

# (d) An immediate shutdown before the launcher's next write: the launcher waits an hour once it has
# made the look it planned under the old interval.
reload_setting migration_ext.resume_interval 1h
sleep 2
check "ten more reads" "$(reads 11 20 | tr ',' '\n' | grep -c '^tok_')" 10
check "counted before the crash" "$(repaired)" 20
cluster_pg_ctl "$PRIMARY" stop -m immediate -w -t 60 >/dev/null || die "pg_ctl stop -m immediate failed"
cluster_pg_ctl "$PRIMARY" start -w -t 120 >/dev/null || die "the primary did not start again"
wait_for 60 q_true "SELECT true" || die "the primary is not accepting connections"
check "count after the crash: what the launcher had written" "$(repaired)" 10
say "repairs of rows 11-20 that outlived the crash: $((10 - $(legacy_between 11 20)))"
check "every row reads converted" "$(reads 1 100 | tr ',' '\n' | grep -c '^tok_')" 100
reads 11 20 >/dev/null
check "rows 11-20 written back now" "$(legacy_between 11 20)" 0
finish
