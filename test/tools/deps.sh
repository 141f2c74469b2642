#!/usr/bin/env bash
# Install the Debian packages needed to build and test migration_ext.
# Idempotent: silent no-op when everything is already installed, so it is
# cheap to call from `make test` / CI on every run.
set -euo pipefail

PACKAGES=(
    postgresql-15                           # server binaries + pg_regress deps
    postgresql-server-dev-15                # pgxs, pg_config, headers
    postgresql-15-pgtap                     # pgTAP extension
    libtap-parser-sourcehandler-pgtap-perl  # pg_prove
    libboost-dev
    libgtest-dev                            # C++ unit tests (ctest)
    cmake
    g++
    make
    gnuplot-nox                             # benchmark plots
    clang-14 libclang-rt-14-dev             # the codec fuzzer (libFuzzer), make test-long
)

missing=()
for pkg in "${PACKAGES[@]}"; do
    # db:Status-Status is exactly "installed" only for fully installed
    # packages (not "config-files", "half-installed", or unknown).
    status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)
    [[ $status == installed ]] || missing+=("$pkg")
done

((${#missing[@]} == 0)) && exit 0

if ((EUID != 0)); then
    echo "deps.sh: missing packages: ${missing[*]} (run as root to install)" >&2
    exit 1
fi

echo "deps.sh: installing ${missing[*]}" >&2
# A fresh machine may have no package lists yet, so update once first.
apt-get update
DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
