#!/usr/bin/env bash
# Build the libFuzzer targets with clang and run each for SECONDS (default 60)
# on a copy of its seed corpus in tests/fuzz/corpus/<target>/.
#   ./scripts/fuzz.sh 600          # ten minutes per target
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
CC=clang cmake -S . -B build-fuzz -DEVR_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build-fuzz -j"$(nproc)" --target fuzz_publish fuzz_sockspec fuzz_agent
for target in publish sockspec agent; do
  work=$(mktemp -d)
  cp tests/fuzz/corpus/$target/* "$work"/
  log=$(mktemp)
  if ! ./build-fuzz/fuzz_$target -max_total_time="$seconds" -print_final_stats=1 \
       -artifact_prefix=build-fuzz/ "$work" >"$log" 2>&1; then
    tail -40 "$log"
    echo "fuzz_$target: FAILED (artifact in build-fuzz/)"
    exit 1
  fi
  execs=$(grep -m1 stat::number_of_executed_units "$log" | awk '{print $2}')
  echo "fuzz_$target: $execs executions in $seconds s, no crash"
  rm -rf "$work" "$log"
done
