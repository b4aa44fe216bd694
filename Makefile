# Thin wrapper over CMake. The two commands a newcomer runs: `make demo` and `make test`.
BUILD   ?= build
JOBS    ?= $(shell nproc)
MODEL   ?= models/all-MiniLM-L6-v2
DATA    ?= $(abspath ../shared/data)
FUZZ_SECONDS ?= 30
# In CI (CI=true) the data, the model and the tools are all expected: a test that skips for
# want of one fails instead (tests/check.h, tests/skip.sh); only a CPU without AVX512-BF16 may
# skip. Set PETL_REQUIRE_ALL=1 by hand for the same on any machine.
ifneq ($(filter true 1,$(CI)),)
export PETL_REQUIRE_ALL ?= 1
endif

.PHONY: all deps model model-base build demo test test-unit test-asan fuzz bench clean format

all: build

deps:
	@scripts/install-deps

model:
	@scripts/fetch-model

# The base-size checkpoint (all-mpnet-base-v2, 438 MB): its forward is tested against
# transformers; `make demo` does not need it.
model-base:
	@scripts/fetch-model all-mpnet-base-v2

$(BUILD)/Makefile: CMakeLists.txt
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release -DPETL_DATA_DIR=$(DATA)

build: $(BUILD)/Makefile
	cmake --build $(BUILD) -j $(JOBS)

# Set up, build, and run the main job on a few sentences.
demo: deps model build
	@scripts/demo

# Set up, then every test: unit + golden + CLI tests, then the same under ASan/UBSan, then
# each fuzzer for a bounded time.
test: deps model model-base build
	ctest --test-dir $(BUILD) --output-on-failure -j 2
	$(MAKE) test-asan
	$(MAKE) fuzz

test-unit: build
	ctest --test-dir $(BUILD) --output-on-failure -j 2

test-asan:
	cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DPETL_SANITIZE=ON -DPETL_DATA_DIR=$(DATA) >/dev/null
	cmake --build build-asan -j $(JOBS)
	ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
	  ctest --test-dir build-asan --output-on-failure -j 2

fuzz:
	CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=Debug -DPETL_FUZZ=ON -DPETL_DATA_DIR=$(DATA) >/dev/null
	cmake --build build-fuzz -j $(JOBS)
	scripts/run-fuzzers build-fuzz $(FUZZ_SECONDS)

# Side by side with the reference stack (PyTorch + transformers), in its own virtual environment.
bench: deps model model-base build
	@[ -x .venv-ref/bin/python ] || scripts/reference/setup-venv
	bench/embed-bench
	bench/train-bench
	bench/time-to-accuracy

clean:
	rm -rf $(BUILD) build-asan build-fuzz

format:
	clang-format -i include/*.h src/*.c src/*.h tools/*.c tools/*.h tests/*.c tests/*.h fuzz/*.c
