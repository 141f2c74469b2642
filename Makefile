# migration_ext — PGXS build of the extension, plus the two commands the README leads with:
#   make demo   install what is missing, build, install, run the walkthrough on a throwaway cluster
#   make test   the same set-up, then every suite (CTest, pg_regress, isolation, pgTAP, crash tests)
#   make test-citus   the same set-up, then the Citus suite (a coordinator and two workers)

EXTENSION  = migration_ext
MODULE_big = migration_ext
# The current version's install script is built from src/sql/ (one file a concept) in this fixed order;
# the scripts of released versions and the upgrade scripts between them are kept as shipped in
# src/sql/versions/. The version is written once, in the control file.
EXTVERSION = $(shell sed -n "s/^default_version *= *'\(.*\)'/\1/p" migration_ext.control)
SQL_PARTS  = schema codecs citus frozen_functions backfill_jobs backfill_worker backfill_controls read_repair \
             backfill_parts protocol column_moves table_moves grants backups
DATA_built = migration_ext--$(EXTVERSION).sql
DATA       = $(wildcard src/sql/versions/migration_ext--*.sql)

CORE_SRCS  = $(wildcard src/core/*.cpp)
PG_SRCS    = $(wildcard src/pg/*.cpp)
OBJS       = $(CORE_SRCS:.cpp=.o) $(PG_SRCS:.cpp=.o)

# Server headers are -isystem so that their warnings stay theirs; C++17 only for our sources.
PG_CPPFLAGS  = -Isrc
PG_CXXFLAGS  = -std=c++17 -fno-omit-frame-pointer -Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers -MMD -MP
SHLIB_LINK   = -lstdc++

# `make installcheck` runs both lists against the server PGHOST/PGPORT name, where migration_ext is
# installed; test/run_all.sh (`make test`) asks `make test-lists` for the same lists. Each regression
# file starts from a clean slate, so any subset runs in any order.
REGRESS        = $(sort $(basename $(notdir $(wildcard sql/*.sql))))
ISOLATION      = $(sort $(basename $(notdir $(wildcard test/isolation/specs/*.spec))))
ISOLATION_OPTS = --inputdir=test/isolation --outputdir=test/isolation/output_iso
# Before the PGXS include, whose clean rule tests it while it is read.
EXTRA_CLEAN    = $(OBJS:.o=.d) $(BUILD_DIR) test/isolation/output_iso

# Debian's pg_config for 15 unless the caller names another; PGXS is only there once the headers are.
PG_CONFIG ?= $(firstword $(wildcard /usr/lib/postgresql/15/bin/pg_config) pg_config)
# No JIT bitcode: it would need a matching clang and buys nothing for a few hot functions.
override with_llvm = no
PGXS := $(shell $(PG_CONFIG) --pgxs 2>/dev/null)
ifneq ($(wildcard $(PGXS)),)
include $(PGXS)
override CXXFLAGS := $(filter-out -Wmissing-prototypes -Wdeclaration-after-statement,$(CXXFLAGS))
# PGXS passes the server include dirs with -I; make them -isystem for C++ translation units.
override CPPFLAGS := $(patsubst -I/usr/include/postgresql/%,-isystem /usr/include/postgresql/%,$(CPPFLAGS))
endif

-include $(OBJS:.o=.d)

migration_ext--$(EXTVERSION).sql: $(SQL_PARTS:%=src/sql/%.sql) migration_ext.control
	for part in $(SQL_PARTS:%=src/sql/%.sql); do cat $$part; echo; done >$@

BUILD_DIR ?= build

.PHONY: deps unit demo test test-long test-citus bench
deps:
	bash test/tools/deps.sh

unit: deps
	cmake -S . -B $(BUILD_DIR) -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	cmake --build $(BUILD_DIR) -j2

demo: deps
	$(MAKE) -j2 all && $(MAKE) install
	bash test/demo/walkthrough.sh

test: deps
	$(MAKE) -j2 all && $(MAKE) install
	$(MAKE) unit
	BUILD_DIR=$(BUILD_DIR) bash test/run_all.sh

.PHONY: test-lists
test-lists:
	@echo 'REGRESS=$(REGRESS)'
	@echo 'ISOLATION=$(ISOLATION)'

# Torture that takes longer: the codec fuzzer (FUZZ_SECONDS) and test/long (random kills on 1M rows).
test-long: deps
	$(MAKE) -j2 all && $(MAKE) install
	MEXT_SUITES="fuzz long" bash test/run_all.sh

# Scale-out: test/citus on a coordinator and two workers. Citus is the installed citus.so, or is built from
# the source tarball CITUS_TARBALL names (see test/tools/citus.sh); with neither the suite fails, saying so.
test-citus: deps
	$(MAKE) -j2 all && $(MAKE) install
	MEXT_SUITES=citus bash test/run_all.sh

bench: deps
	$(MAKE) -j2 all && $(MAKE) install
	bash bench/run_all.sh
