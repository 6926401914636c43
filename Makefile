# Thin wrapper over CMake. `make run` and `make test` set up everything on a
# fresh Debian 12 machine (scripts/bootstrap installs what is missing); plain
# `make` installs nothing and names the packages it misses.

BUILD      ?= build
BUILD_ASAN ?= build-asan
JOBS       ?= $(shell nproc)
# Tests at once: more than the CPUs, since a test spends part of its time waiting on its
# servers, fsync and sleeps. On 2 CPUs the plain suite kept 1.4 of them busy at -j 3 and 1.6
# at -j 4; the sanitizer suite 1.4 at -j 2 and 1.9 at -j 3, so it runs one test fewer.
TEST_JOBS      ?= $(shell echo $$(( $$(nproc) + 2 )))
ASAN_TEST_JOBS ?= $(shell echo $$(( $$(nproc) + 1 )))
LISTEN     ?= 127.0.0.1:8080
LAKE       ?= ./events-lake

.PHONY: all bootstrap bootstrap-test build build-asan test test-fast run format lint bench clean install

all: build

bootstrap:
	@scripts/bootstrap

bootstrap-test:
	@scripts/bootstrap --test

# Before anything is fetched or configured: the Debian packages the build needs,
# named with what to run when one is missing (scripts/bootstrap --check).
third_party/duckdb/VERSION:
	@scripts/bootstrap --check
	@scripts/fetch-duckdb

third_party/web/VERSION:
	@scripts/bootstrap --check
	@scripts/fetch-web

# Configures build directory $(1) with cmake arguments $(2); $(3) is what
# `scripts/bootstrap --check` must find. The target is the directory's Makefile,
# which cmake writes last: a directory without one (a cache an interrupted or failed
# configure left) is configured afresh. cmake's output is shown only when it fails,
# and then nothing of the attempt is kept, so the next `make` starts clean.
define configure
	@scripts/bootstrap --check $(3)
	@[ -f $(1)/Makefile ] || rm -f $(1)/CMakeCache.txt; \
	new=; [ -d $(1) ] || new=1; \
	if ! out=$$(cmake -S . -B $(1) $(2) 2>&1); then \
		printf '%s\n' "$$out" | sed '/^See also /d' >&2; \
		if [ -n "$$new" ]; then rm -rf $(1); else rm -rf $(1)/CMakeCache.txt $(1)/CMakeFiles; fi; \
		echo "make: configuring $(1) failed (cmake's output above) and was undone; if a package is missing, run \`make bootstrap\` (or \`make run\`)" >&2; \
		exit 1; \
	fi; \
	touch $(1)/Makefile
endef

$(BUILD)/Makefile: third_party/duckdb/VERSION third_party/web/VERSION
	$(call configure,$(BUILD),-DCMAKE_BUILD_TYPE=RelWithDebInfo)

build: $(BUILD)/Makefile
	@cmake --build $(BUILD) -j $(JOBS) -- --no-print-directory

$(BUILD_ASAN)/Makefile: third_party/duckdb/VERSION third_party/web/VERSION
	$(call configure,$(BUILD_ASAN),-DCMAKE_BUILD_TYPE=Debug -DEVENTS_SANITIZE=ON -DCMAKE_C_COMPILER=clang,asan)

build-asan: $(BUILD_ASAN)/Makefile
	@cmake --build $(BUILD_ASAN) -j $(JOBS) -- --no-print-directory

# Everything: the suite on the normal build, then again under ASan+UBSan.
test: bootstrap-test build build-asan
	@cd $(BUILD) && ctest --output-on-failure -j $(TEST_JOBS)
	@cd $(BUILD_ASAN) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
		LSAN_OPTIONS=suppressions=$(CURDIR)/tests/lsan.supp ctest --output-on-failure -j $(ASAN_TEST_JOBS) -LE nosan

# The suite on the normal build only.
test-fast: build
	@cd $(BUILD) && ctest --output-on-failure -j $(TEST_JOBS)

# The server on a local lake with the demo workload; the dashboard at http://$(LISTEN)/.
# DEMO=0 make run: the server alone.
run: bootstrap build
	@exec scripts/run $(BUILD) $(LISTEN) $(LAKE)

bench: build
	@bench/run-all

# The events binary, libevents (static and shared), events.h and events.pc.
PREFIX ?= /usr/local
install: build
	@cmake --install $(BUILD) --prefix $(PREFIX)

format:
	@clang-format -i $$(git ls-files '*.c' '*.h')

lint: build
	@scripts/check-size
	@clang-tidy -p $(BUILD) --quiet --warnings-as-errors='*' $$(git ls-files 'lib/*.c' 'lake/*.c' 'server/*.c' 'cli/*.c') 2>/dev/null
	@cppcheck --quiet --enable=warning,performance,portability --inline-suppr --error-exitcode=1 \
		-I lib -I lake -I server -I include -I $(BUILD)/include -D_GNU_SOURCE --library=scripts/jansson.cfg lib lake server cli

clean:
	@rm -rf $(BUILD) $(BUILD_ASAN)
