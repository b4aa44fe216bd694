#!/usr/bin/env bash
# How a CLI test ends when it cannot run (some of) its checks here: `exec bash "$TESTS/skip.sh"
# NAME WHAT REASON`. It prints the reason and exits 77, which CTest reports as "Skipped"
# (SKIP_RETURN_CODE in CMakeLists.txt), never as passed. WHAT says what is missing: "data",
# "model" or "tool" (what `make test` installs or the machine is expected to hold), or
# "avx512bf16" (the CPU's instruction set: no set-up can provide it). With PETL_REQUIRE_ALL=1 (set
# by `make test` under CI=true and by .ci/run) every skip except those in allowed is a failure
# (exit 1), so CI cannot pass with checks silently not run. The same rule as test_skip in
# tests/check.h; keep the two lists equal.
allowed="avx512bf16"
name=${1:?usage: skip.sh NAME WHAT REASON} what=${2:?} reason=${3:?}
if [ -n "${PETL_REQUIRE_ALL:-}" ] && [ "$PETL_REQUIRE_ALL" != 0 ] &&
    ! [[ " $allowed " == *" $what "* ]]; then
    echo "$name: FAIL: required but skipped ($what): $reason" >&2
    echo "$name: PETL_REQUIRE_ALL=$PETL_REQUIRE_ALL: only a missing $allowed may skip" >&2
    exit 1
fi
echo "$name: SKIP ($what): $reason"
exit 77
