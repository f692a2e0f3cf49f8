# Thin wrapper over CMake + Ninja: the README's commands.
BUILD      ?= build
ASAN_BUILD ?= build-asan
CMAKE_GEN  := -G Ninja
JOBS       ?= $(shell nproc)

.PHONY: all build deps check test unit asan format-check cppcheck demo bench \
        clean format metrics

all: build

deps:
	@scripts/deps.sh build

build: deps
	@cmake -S . -B $(BUILD) $(CMAKE_GEN) -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

check:
	@scripts/deps.sh build test
	@$(MAKE) --no-print-directory build
	@$(MAKE) --no-print-directory format-check cppcheck
	@cmake -S . -B $(ASAN_BUILD) $(CMAKE_GEN) -DIOMT_SANITIZE=ON \
	    -DCMAKE_BUILD_TYPE=Debug >/dev/null
	@cmake --build $(ASAN_BUILD) -j $(JOBS)
	@echo "== unit tests under AddressSanitizer + UBSan"
	@cd $(ASAN_BUILD) && ASAN_OPTIONS=detect_leaks=1 \
	    ctest -L unit --output-on-failure
	@echo "== all tests"
	@cd $(BUILD) && ctest --output-on-failure -j 2

SOURCES = $(shell find include lib cli hub agent tests bench fuzz \
            -name '*.[ch]' 2>/dev/null)

format-check:
	@echo "== clang-format"
	@clang-format --dry-run --Werror $(SOURCES)

format:
	@clang-format -i $(SOURCES)

cppcheck:
	@echo "== cppcheck"
	@cppcheck --quiet --error-exitcode=1 --inline-suppr \
	    --enable=warning,performance,portability \
	    --std=c11 -I include -I lib --suppress=missingIncludeSystem \
	    lib cli hub agent bench

demo: build
	@scripts/deps.sh demo
	@scripts/demo.sh

bench: build
	@scripts/deps.sh bench
	@scripts/bench.sh

metrics:
	@/usr/bin/python3 scripts/style-metrics.py

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) demo bench/out
