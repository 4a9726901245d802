#!/usr/bin/env bash
# Build the libFuzzer targets with clang and run each for SECONDS (default
# 60), one after the other, on a copy of its seed corpus. The targets are
# the files tests/fuzz/fuzz_<name>.c, each with its seeds in
# tests/fuzz/corpus/<name>/ (CMake builds the same list with EVR_FUZZ).
#   ./scripts/fuzz.sh 600              # ten minutes per target
#   ./scripts/fuzz.sh 60 mi cluster    # only fuzz_mi and fuzz_cluster
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
shift || true
names=("$@")
if [ ${#names[@]} -eq 0 ]; then
  for src in tests/fuzz/fuzz_*.c; do
    name=${src#tests/fuzz/fuzz_}
    names+=("${name%.c}")
  done
fi
for name in "${names[@]}"; do
  if [ ! -f "tests/fuzz/fuzz_$name.c" ] || [ ! -d "tests/fuzz/corpus/$name" ]; then
    echo "fuzz_$name: no tests/fuzz/fuzz_$name.c or no tests/fuzz/corpus/$name/"
    exit 1
  fi
done

CC=clang cmake -S . -B build-fuzz -DEVR_FUZZ=ON -DEVR_WERROR=ON \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build-fuzz -j"$(nproc)" --target "${names[@]/#/fuzz_}"

work=$(mktemp -d)
log=$(mktemp)
trap 'rm -rf "$work" "$log"' EXIT
for name in "${names[@]}"; do
  rm -rf "${work:?}"/*
  cp "tests/fuzz/corpus/$name"/* "$work"/
  # -timeout: an input that takes this long is a finding (timeout-<hash>)
  if ! "./build-fuzz/fuzz_$name" -max_total_time="$seconds" -timeout=25 \
       -print_final_stats=1 -artifact_prefix=build-fuzz/ "$work" >"$log" 2>&1; then
    tail -40 "$log"
    echo "fuzz_$name: FAILED (artifact in build-fuzz/)"
    exit 1
  fi
  execs=$(grep -m1 stat::number_of_executed_units "$log" | awk '{print $2}')
  echo "fuzz_$name: $execs executions in $seconds s, no crash"
done
