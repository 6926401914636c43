# Thin wrapper over CMake. `make run` and `make test` set up everything on a
# fresh Debian 12 machine (scripts/bootstrap installs what is missing).

BUILD      ?= build
BUILD_ASAN ?= build-asan
JOBS       ?= $(shell nproc)
LISTEN     ?= 127.0.0.1:8080
LAKE       ?= ./events-lake

.PHONY: all bootstrap bootstrap-test build build-asan test test-fast run format lint bench clean install

all: build

bootstrap:
	@scripts/bootstrap

bootstrap-test:
	@scripts/bootstrap --test

third_party/duckdb/VERSION:
	@scripts/fetch-duckdb

third_party/web/VERSION:
	@scripts/fetch-web

$(BUILD)/CMakeCache.txt: third_party/duckdb/VERSION third_party/web/VERSION
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null

build: $(BUILD)/CMakeCache.txt
	@cmake --build $(BUILD) -j $(JOBS) -- --no-print-directory

$(BUILD_ASAN)/CMakeCache.txt: third_party/duckdb/VERSION third_party/web/VERSION
	@cmake -S . -B $(BUILD_ASAN) -DCMAKE_BUILD_TYPE=Debug -DEVENTS_SANITIZE=ON -DCMAKE_C_COMPILER=clang >/dev/null

build-asan: $(BUILD_ASAN)/CMakeCache.txt
	@cmake --build $(BUILD_ASAN) -j $(JOBS) -- --no-print-directory

# Everything: the suite on the normal build, then again under ASan+UBSan.
test: bootstrap-test build build-asan
	@cd $(BUILD) && ctest --output-on-failure -j $(JOBS)
	@cd $(BUILD_ASAN) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
		ctest --output-on-failure -j $(JOBS) -LE nosan

# The suite on the normal build only.
test-fast: build
	@cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

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
	@clang-tidy -p $(BUILD) --quiet --warnings-as-errors='*' $$(git ls-files 'lib/*.c' 'lake/*.c' 'server/*.c' 'cli/*.c') 2>/dev/null
	@cppcheck --quiet --enable=warning,performance,portability --inline-suppr --error-exitcode=1 \
		-I lib -I lake -I server -I include -D_GNU_SOURCE --library=scripts/jansson.cfg lib lake server cli

clean:
	@rm -rf $(BUILD) $(BUILD_ASAN)
