#!/usr/bin/env bash
# Citus for the scale-out tests: make it available for the PostgreSQL that PG_CONFIG names, and start a
# coordinator with N workers as throwaway clusters (built on cluster.sh).
#
# As a command:
#   citus.sh ensure                         Citus installed for PG_CONFIG, or fail saying what is needed
#   citus.sh start <dir> <port> <workers>   coordinator on <port>, worker i on <port>+i; prints exports
#   citus.sh stop <dir>
#
# As a library (`source citus.sh`): citus_ensure, citus_start, citus_start_node, citus_add_worker,
# citus_stop, citus_psql.
#
# Where Citus comes from, in this order:
#   1. CITUS_TARBALL names a Citus source tarball (relative paths are taken from the current directory):
#      when PG_CONFIG's citus.so is of that version it is used as is; otherwise the tarball is built
#      and installed into PG_CONFIG's directories (its build needs libzstd-dev liblz4-dev libkrb5-dev,
#      installed with apt when missing and running as root). A second run finds the version installed
#      and builds nothing.
#   2. Without CITUS_TARBALL, an installed citus.so (Citus's own packages, or an earlier build) is used.
#   3. Neither: the suite fails with a message naming CITUS_TARBALL. Never a silent skip.

_CITUS_TOOLS=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=cluster.sh
source "$_CITUS_TOOLS/cluster.sh"

CITUS_BUILD_PACKAGES=(libzstd-dev liblz4-dev libkrb5-dev)

# The version compiled into an installed citus.so ("13.0.5"), empty when there is none.
citus_installed_version() {
    local so
    so=$("$PG_CONFIG" --pkglibdir)/citus.so
    [[ -f $so ]] || return 0
    # citus_version() answers "Citus <version> on <platform>, compiled by ..."; the string is in the library.
    grep -aoE 'Citus [0-9]+\.[0-9]+(\.[0-9]+)?(-[a-z0-9]+)? on ' "$so" | head -n 1 | awk '{print $2}'
}

# The version a Citus source tarball builds, from its configure.ac (AC_INIT([Citus], [13.0.5])).
citus_tarball_version() {
    local tarball=$1 top
    top=$(tar tf "$tarball" | head -n 1)
    top=${top%%/*}
    tar xOf "$tarball" "$top/configure.ac" | sed -n 's/^AC_INIT(\[Citus\], *\[\([^]]*\)\]).*/\1/p'
}

_citus_build_packages() {
    local missing=() pkg status
    for pkg in "${CITUS_BUILD_PACKAGES[@]}"; do
        status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)
        [[ $status == installed ]] || missing+=("$pkg")
    done
    ((${#missing[@]} == 0)) && return 0
    if ((EUID != 0)); then
        echo "citus.sh: building Citus needs ${missing[*]}; install them (as root: apt-get install ${missing[*]})" >&2
        return 1
    fi
    echo "citus.sh: installing ${missing[*]}" >&2
    apt-get update >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >&2
}

# citus_ensure: Citus installed for PG_CONFIG (see the header for where it comes from).
citus_ensure() {
    local installed tarball wanted build src
    installed=$(citus_installed_version)
    if [[ -z ${CITUS_TARBALL:-} ]]; then
        if [[ -n $installed ]]; then
            echo "citus.sh: using the installed Citus $installed ($("$PG_CONFIG" --pkglibdir)/citus.so)" >&2
            return 0
        fi
        echo "citus.sh: Citus is not installed for $PG_CONFIG and CITUS_TARBALL is not set." >&2
        echo "citus.sh: set CITUS_TARBALL to a Citus source tarball (13.0 or later, e.g. citus-13.0.5.tar.xz" >&2
        echo "citus.sh: from https://github.com/citusdata/citus/releases) to build it; the build needs" >&2
        echo "citus.sh: ${CITUS_BUILD_PACKAGES[*]} and the PostgreSQL server headers." >&2
        echo "citus.sh: Or install Citus's package for this PostgreSQL." >&2
        return 1
    fi
    tarball=$(realpath -m "$CITUS_TARBALL")
    if [[ ! -f $tarball ]]; then
        echo "citus.sh: CITUS_TARBALL=$CITUS_TARBALL: no such file ($tarball)" >&2
        return 1
    fi
    wanted=$(citus_tarball_version "$tarball")
    if [[ -z $wanted ]]; then
        echo "citus.sh: CITUS_TARBALL=$tarball does not look like a Citus source tarball (no AC_INIT([Citus], ...))" >&2
        return 1
    fi
    if [[ $installed == "$wanted" ]]; then
        echo "citus.sh: Citus $wanted already installed for $PG_CONFIG, not rebuilding" >&2
        return 0
    fi
    _citus_build_packages || return 1
    echo "citus.sh: building Citus $wanted from $tarball (installed: ${installed:-none}); a few minutes" >&2
    build=$(mktemp -d "${TMPDIR:-/tmp}/citus-build.XXXXXX")
    tar xf "$tarball" -C "$build"
    src=$(find "$build" -mindepth 1 -maxdepth 1 -type d | head -n 1)
    # Citus includes libpq-fe.h from pg_config's includedir; a relocated server copy may lack libpq's
    # headers there, while the system's libpq (a dependency of the server headers' package) has them.
    local cppflags=
    if [[ ! -f $("$PG_CONFIG" --includedir)/libpq-fe.h ]]; then
        cppflags=$(pkg-config --cflags-only-I libpq 2>/dev/null || echo -I/usr/include/postgresql)
    fi
    if ! (cd "$src" && ./configure --without-libcurl PG_CONFIG="$PG_CONFIG" CPPFLAGS="$cppflags" &&
            make -j"$(nproc)" with_llvm=no && make install with_llvm=no) >"$build/build.log" 2>&1; then
        echo "citus.sh: building Citus $wanted failed; log tail ($build/build.log):" >&2
        tail -n 40 "$build/build.log" >&2
        return 1
    fi
    rm -rf "$build"
    installed=$(citus_installed_version)
    if [[ $installed != "$wanted" ]]; then
        echo "citus.sh: after installing, $("$PG_CONFIG" --pkglibdir)/citus.so reports '${installed}', not $wanted" >&2
        return 1
    fi
    echo "citus.sh: Citus $wanted installed for $PG_CONFIG" >&2
}

# ---------------------------------------------------------------- clusters

# Every node of a test cluster: TCP on localhost (Citus connects to its nodes by host and port), Citus
# first in shared_preload_libraries as it requires, migration_ext's launcher beside it.
_citus_node_conf=(
    "listen_addresses = 'localhost'"
    "shared_preload_libraries = 'citus,migration_ext'"
    "max_connections = 100"
    "max_worker_processes = 24"
    "max_prepared_transactions = 50"          # Citus's two-phase commits
    "citus.shard_count = 4"                   # few shards: a small cluster, quick DDL
    "migration_ext.wait_progress = off"
)

citus_psql() {
    local port=$1; shift
    "$PG_BINDIR/psql" -X -q -v ON_ERROR_STOP=1 -h localhost -p "$port" -U postgres -d postgres "$@"
}

# citus_start_node <dir> <port>: a cluster with the citus extension, not yet part of any Citus cluster.
citus_start_node() {
    local dir=$1 port=$2
    cluster_start "$dir" "$port" "${_citus_node_conf[@]}" >/dev/null || return 1
    citus_psql "$port" -c "SET client_min_messages = warning; CREATE EXTENSION citus" >&2
}

# citus_add_worker <coordinator_port> <port>: the node on <port> joins the Citus cluster as a worker.
citus_add_worker() {
    citus_psql "$1" -At -c "SELECT citus_add_node('localhost', $2)" >/dev/null
}

# citus_start <dir> <port> <workers>: a coordinator in <dir>/coordinator on <port> and worker i in
# <dir>/worker<i> on <port>+i, with migration_ext created on the coordinator (Citus creates it on the
# workers). Prints `export PGHOST=localhost PGPORT=<port> PGUSER=postgres`.
citus_start() {
    local dir=$1 port=$2 workers=$3 i
    mkdir -p "$dir" && chmod 755 "$dir"       # postgres enters it to reach each node's directory
    citus_start_node "$dir/coordinator" "$port" || return 1
    citus_psql "$port" -c "SELECT citus_set_coordinator_host('localhost', $port)" >/dev/null || return 1
    for ((i = 1; i <= workers; i++)); do
        citus_start_node "$dir/worker$i" $((port + i)) || return 1
        citus_add_worker "$port" $((port + i)) || return 1
    done
    citus_psql "$port" -c "SET client_min_messages = warning; CREATE EXTENSION migration_ext" >&2 || return 1
    echo "export PGHOST=localhost PGPORT=$port PGUSER=postgres"
}

# citus_stop <dir>: stop and remove every node under <dir>.
citus_stop() {
    local dir=$1 node
    [[ -d $dir ]] || return 0
    for node in "$dir"/coordinator "$dir"/worker*; do
        [[ -e $node ]] && cluster_stop "$node"
    done
    rmdir "$dir" 2>/dev/null || true
}

# Command mode (only when executed, not when sourced).
if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
    set -euo pipefail
    usage() {
        echo "usage: $0 ensure" >&2
        echo "       $0 start <dir> <port> <workers>" >&2
        echo "       $0 stop <dir>" >&2
        exit 2
    }
    cmd=${1:-}; shift || true
    case $cmd in
        ensure) (($# == 0)) || usage; citus_ensure ;;
        start)  (($# == 3)) || usage; citus_start "$@" ;;
        stop)   (($# == 1)) || usage; citus_stop "$1" ;;
        *)      usage ;;
    esac
fi
