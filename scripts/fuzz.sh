#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz, clang++, ASan+UBSan, into build-fuzz/)
# and fuzzes each for SECONDS (default 60). Fails on the first crash, leak-free
# timeout (-timeout) or out-of-memory (-rss_limit_mb, -malloc_limit_mb): the input is
# left in build-fuzz/crashes/<target>/; once fixed, copy it to
# tests/fuzz/corpus/<target>/crash-<what> so that the replay test keeps it fixed.
#   scripts/fuzz.sh [SECONDS]        build, replay the committed corpus, then fuzz
#   scripts/fuzz.sh --replay-only    build and replay only (what ctest's replay does)
# Exits 77 (skipped, with a message) when clang++ or libFuzzer is missing.
# The fuzzing seed is fixed (MOELAB_FUZZ_SEED, default 1) so that a test run explores
# the same inputs each time: CI fails on a bug, not on the luck of a random seed. For
# exploration set MOELAB_FUZZ_SEED=0 (libFuzzer picks a random seed) and more SECONDS.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
replay_only=0
[ "$seconds" = --replay-only ] && { replay_only=1; seconds=0; }
cxx=${MOELAB_FUZZ_CXX:-$(command -v clang++ || command -v clang++-14 || true)}
cc=${MOELAB_FUZZ_CC:-$(command -v clang || command -v clang-14 || true)}
if [ -z "$cxx" ] || [ -z "$cc" ]; then
  echo "fuzz: SKIPPED: no clang++ (scripts/setup.sh installs clang from Debian)" >&2
  exit 77
fi
probe=$(mktemp -d)
trap 'rm -rf "$probe"' EXIT
echo 'extern "C" int LLVMFuzzerTestOneInput(const unsigned char*, unsigned long) { return 0; }' > "$probe/p.cpp"
if ! "$cxx" -fsanitize=fuzzer,address,undefined "$probe/p.cpp" -o "$probe/p" 2>"$probe/err"; then
  echo "fuzz: SKIPPED: $cxx cannot link libFuzzer ($(head -1 "$probe/err")); install libclang-rt-dev" >&2
  exit 77
fi

if [ ! -f build-fuzz/build.ninja ]; then
  cmake -S . -B build-fuzz -G Ninja -DMOELAB_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_CXX_COMPILER="$cxx" -DCMAKE_C_COMPILER="$cc"
fi
cmake --build build-fuzz -j "${MOELAB_BUILD_JOBS:-$(nproc)}"

targets=(fuzz_safetensors fuzz_model_config fuzz_tokenizer fuzz_sweep_spec fuzz_pruning_plan
         fuzz_jsonl_tasks fuzz_stats_hdf5)
export ASAN_OPTIONS=detect_leaks=0:allocator_may_return_null=0
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
export OMP_NUM_THREADS=1
# The statistics seed is written by moelab's own HDF5 writer (a binary file is not
# worth committing when the writer can make it).
mkdir -p build-fuzz/seeds/fuzz_stats_hdf5
build-fuzz/tests/fuzz/make_stats_seed build-fuzz/seeds/fuzz_stats_hdf5/seed-stats.h5

status=0
for t in "${targets[@]}"; do
  bin=build-fuzz/tests/fuzz/$t
  committed=tests/fuzz/corpus/$t
  # Replay: every committed input once (seeds and past crashes).
  if [ -d "$committed" ]; then
    "$bin" -rss_limit_mb=4096 -timeout=30 "$committed"/* > "build-fuzz/$t.replay.log" 2>&1 \
      || { echo "fuzz: $t FAILED replaying $committed (build-fuzz/$t.replay.log)"; tail -30 "build-fuzz/$t.replay.log"; status=1; continue; }
  fi
  [ "$replay_only" = 1 ] && { echo "fuzz: $t replayed $(ls "$committed" 2>/dev/null | wc -l) inputs"; continue; }
  # Fuzz: a scratch corpus that starts from the committed one and grows across runs.
  work=build-fuzz/corpus/$t crashes=build-fuzz/crashes/$t
  mkdir -p "$work" "$crashes"
  seeds=()
  [ -d "$committed" ] && seeds+=("$committed")
  [ -d "build-fuzz/seeds/$t" ] && seeds+=("build-fuzz/seeds/$t")
  if "$bin" "$work" "${seeds[@]}" -max_total_time="$seconds" -seed="${MOELAB_FUZZ_SEED:-1}" -timeout=10 -rss_limit_mb=2048 \
       -malloc_limit_mb=1024 -max_len=65536 -print_final_stats=1 -artifact_prefix="$crashes/" \
       > "build-fuzz/$t.log" 2>&1; then
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "build-fuzz/$t.log" | grep -o '[0-9]*$' || echo '?')
    cov=$(grep -o 'cov: [0-9]*' "build-fuzz/$t.log" | tail -1 | grep -o '[0-9]*' || echo '?')
    echo "fuzz: $t ok: $runs inputs in ${seconds}s, coverage $cov edges, corpus $(ls "$work" | wc -l)"
  else
    echo "fuzz: $t FAILED (log build-fuzz/$t.log, input in $crashes/):"
    # grep -m, not | head: under pipefail a closed pipe would end the script with 141
    grep -m 20 -E 'ERROR|SUMMARY|runtime error|==[0-9]+==|deadly|Test unit written' "build-fuzz/$t.log" || true
    status=1
  fi
done
exit $status
