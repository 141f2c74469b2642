#!/usr/bin/env bash
# Throwaway PostgreSQL 15 clusters for tests.
#
# As a command:
#   cluster.sh start <dir> <port> [extra postgresql.conf lines...]
#   cluster.sh standby <primary_dir> <primary_port> <standby_dir> <standby_port>
#   cluster.sh stop <dir>
# "start"/"standby" print `export PGHOST=<dir> PGPORT=<port> PGUSER=postgres`
# on stdout (everything else goes to stderr), so `eval "$(cluster.sh start ..)"`
# works.
#
# As a library (`source cluster.sh`): cluster_start, cluster_start_standby,
# cluster_stop, cluster_pg_ctl, cluster_datadir, cluster_mktemp.
#
# Layout of a cluster directory <dir> (owned by postgres):
#   <dir>/data          PGDATA
#   <dir>/server.log    server log (pg_ctl -l; logging_collector=off)
#   <dir>/.s.PGSQL.N    unix socket, so PGHOST=<dir>
# Keeping the socket and log outside PGDATA stops pg_basebackup from copying
# them into a standby.
#
# PostgreSQL refuses to run as root, so servers run as the `postgres` OS user;
# clients connect as root over the socket with -U postgres (trust auth).

PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
PG_BINDIR=${PG_BINDIR:-$("$PG_CONFIG" --bindir)}

# Run a command as the postgres OS user (directly if we already are).
# cd / because root's cwd is often unreadable for postgres.
_cluster_as_pg() {
    if [[ $(id -un) == postgres ]]; then
        (cd / && "$@")
    else
        (cd / && runuser -u postgres -- "$@")
    fi
}

# Directory whose ancestors postgres can traverse (a root-made mktemp dir is
# 0700, which postgres could not enter). Honours TMPDIR so a test runner can
# find and clean up clusters a test left behind.
cluster_mktemp() {
    local d
    d=$(mktemp -d "${TMPDIR:-/tmp}/mext.XXXXXX")
    chmod 755 "$d"
    echo "$d"
}

cluster_datadir() { echo "$1/data"; }

# pg_ctl on the cluster in <dir>, as postgres, e.g.
#   cluster_pg_ctl "$dir" stop -m immediate     # simulate a crash
#   cluster_pg_ctl "$dir" start -w
cluster_pg_ctl() {
    local dir=$1; shift
    _cluster_as_pg "$PG_BINDIR/pg_ctl" -D "$dir/data" -l "$dir/server.log" "$@"
}

# Create <dir> owned by postgres; fail clearly if postgres can't reach it.
_cluster_mkdir() {
    local dir=$1
    mkdir -p "$dir"
    chown postgres:postgres "$dir"
    chmod 755 "$dir"
    if ! _cluster_as_pg test -w "$dir"; then
        echo "cluster.sh: postgres cannot access $dir (make its parents traversable, e.g. use cluster_mktemp)" >&2
        return 1
    fi
}

_cluster_start_server() {
    local dir=$1 port=$2
    if ! cluster_pg_ctl "$dir" start -w -t 120 >&2; then
        echo "cluster.sh: server in $dir failed to start; log tail:" >&2
        tail -n 50 "$dir/server.log" >&2 || true
        return 1
    fi
    echo "export PGHOST=$dir PGPORT=$port PGUSER=postgres"
}

# cluster_start <dir> <port> [extra postgresql.conf lines...]
cluster_start() {
    local dir=$1 port=$2; shift 2
    dir=$(realpath -m "$dir")     # socket path must be absolute
    _cluster_mkdir "$dir" || return 1

    # C.UTF-8 gives UTF8 with byte-order collation; plain C as fallback.
    local locale=C
    locale -a 2>/dev/null | grep -qiE '^c\.utf-?8$' && locale=C.UTF-8
    if ! _cluster_as_pg "$PG_BINDIR/initdb" -D "$dir/data" -A trust -U postgres \
            --no-sync -E UTF8 --locale="$locale" >"$dir/initdb.log" 2>&1; then
        echo "cluster.sh: initdb failed:" >&2
        cat "$dir/initdb.log" >&2
        return 1
    fi

    # Preloading a library that is not installed would stop the server from
    # starting, so only preload once `make install` has put it in place.
    local preload="#shared_preload_libraries: migration_ext.so not installed"
    [[ -f $("$PG_CONFIG" --pkglibdir)/migration_ext.so ]] &&
        preload="shared_preload_libraries = 'migration_ext'"

    # Later settings win, so appending overrides initdb's defaults.
    {
        echo "# --- test/tools/cluster.sh ---"
        echo "port = $port"
        echo "listen_addresses = ''"               # unix socket only
        echo "unix_socket_directories = '$dir'"
        echo "$preload"
        echo "max_worker_processes = 16"
        echo "wal_level = replica"                 # allow standbys
        echo "max_wal_senders = 10"
        echo "fsync = on"                          # crash tests need real
        echo "synchronous_commit = on"             # durability
        echo "logging_collector = off"             # log goes to server.log
        local line
        for line in "$@"; do echo "$line"; done
    } >>"$dir/data/postgresql.conf"

    _cluster_start_server "$dir" "$port"
}

# cluster_start_standby <primary_dir> <primary_port> <standby_dir> <standby_port>
# Streaming standby via pg_basebackup -R over the primary's unix socket
# (initdb's default pg_hba allows local replication connections).
cluster_start_standby() {
    local pdir=$1 pport=$2 sdir=$3 sport=$4
    pdir=$(realpath -m "$pdir")
    sdir=$(realpath -m "$sdir")
    _cluster_mkdir "$sdir" || return 1
    if ! _cluster_as_pg "$PG_BINDIR/pg_basebackup" -h "$pdir" -p "$pport" -U postgres \
            -D "$sdir/data" -R -X stream -c fast --no-sync >"$sdir/basebackup.log" 2>&1; then
        echo "cluster.sh: pg_basebackup failed:" >&2
        cat "$sdir/basebackup.log" >&2
        return 1
    fi
    # The copied postgresql.conf still names the primary's port and socket.
    {
        echo "# --- standby overrides (test/tools/cluster.sh) ---"
        echo "port = $sport"
        echo "unix_socket_directories = '$sdir'"
    } >>"$sdir/data/postgresql.conf"
    _cluster_start_server "$sdir" "$sport"
}

# cluster_stop <dir>: fast shutdown if running, then remove <dir>.
cluster_stop() {
    local dir=$1
    [[ -e $dir ]] || return 0
    # Guard the rm -rf: only remove what looks like one of our clusters
    # (or an empty dir left by a failed start).
    if [[ -z $dir || $dir == / ]] || ! [[ -e $dir/data || -e $dir/initdb.log ||
            -e $dir/basebackup.log || -z $(ls -A "$dir") ]]; then
        echo "cluster.sh: '$dir' does not look like a test cluster, not removing" >&2
        return 1
    fi
    if [[ -f $dir/data/postmaster.pid ]]; then
        cluster_pg_ctl "$dir" stop -m fast -w >/dev/null 2>&1 ||
            cluster_pg_ctl "$dir" stop -m immediate -w >/dev/null 2>&1 || true
    fi
    rm -rf "$dir"
}

# Command mode (only when executed, not when sourced).
if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
    set -euo pipefail
    usage() {
        echo "usage: $0 start <dir> <port> [conf lines...]" >&2
        echo "       $0 standby <primary_dir> <primary_port> <standby_dir> <standby_port>" >&2
        echo "       $0 stop <dir>" >&2
        exit 2
    }
    cmd=${1:-}; shift || true
    case $cmd in
        start)   (($# >= 2)) || usage; cluster_start "$@" ;;
        standby) (($# == 4)) || usage; cluster_start_standby "$@" ;;
        stop)    (($# == 1)) || usage; cluster_stop "$1" ;;
        *)       usage ;;
    esac
fi
