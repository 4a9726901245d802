#!/usr/bin/env bash
# Run every test of evrelay on a fresh Debian 12 machine:
#   1. install the packages, build with warnings as errors;
#   2. unit (cmocka) and integration (real processes) tests with ctest;
#   3. the same tests in an ASAN+UBSAN build;
#   4. the pure modules' unit tests under valgrind;
#   5. each libFuzzer target for a short smoke run;
#   6. clang-format check.
# Set EVR_QUICK=1 to run only step 2.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh

echo "== build"
./scripts/build.sh build
echo "== tests"
ctest --test-dir build --output-on-failure -j2

[ "${EVR_QUICK:-0}" = 1 ] && exit 0

echo "== tests under ASAN+UBSAN"
./scripts/build.sh build-asan -DEVR_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug
ASAN_OPTIONS=detect_leaks=1 ctest --test-dir build-asan --output-on-failure -j2

echo "== unit tests under valgrind"
for t in build/test_*; do
  valgrind -q --error-exitcode=1 --leak-check=full "$t" >/dev/null
  echo "valgrind clean: $(basename "$t")"
done

echo "== fuzz smoke (${EVR_FUZZ_SECONDS:=10} s per target)"
./scripts/fuzz.sh "$EVR_FUZZ_SECONDS"

echo "== clang-format"
git ls-files '*.c' '*.h' | xargs clang-format --dry-run -Werror
echo "all checks passed"
