#!/usr/bin/env bash
# Sanitizer build: the GoogleTest unit suite built with gcc's AddressSanitizer and
# UndefinedBehaviorSanitizer (build-asan/) and run with both halting on the first
# report, LeakSanitizer included. libtorch itself is not instrumented: ASan still sees
# every access moelab's code makes, including into tensors libtorch allocated. (The
# suite runs leak-free with libtorch 2.15; should a libtorch update add exit-time
# "leaks" of its registries, suppress those by library, not detect_leaks=0.)
# Fixtures: $MOELAB_FIXTURES, else build/fixtures (made by the main suite), else
# built here into build-asan/fixtures.
set -euo pipefail
cd "$(dirname "$0")/.."
flags="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined -O1"
if [ ! -f build-asan/build.ninja ]; then
  cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug \
    -DCMAKE_CXX_FLAGS="$flags" -DCMAKE_C_FLAGS="$flags" \
    -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=address,undefined"
fi
cmake --build build-asan -j "${MOELAB_BUILD_JOBS:-$(nproc)}" --target moelab_unit_tests

# (make_fixtures.py is stamped per part: a no-op when they are up to date.)
fixtures=${MOELAB_FIXTURES:-}
if [ -z "$fixtures" ]; then
  fixtures=$PWD/build-asan/fixtures
  [ -d build/fixtures ] && fixtures=$PWD/build/fixtures
fi
python3 tests/fixtures/make_fixtures.py --out "$fixtures"
export MOELAB_FIXTURES=$fixtures
export ASAN_OPTIONS=detect_leaks=1:halt_on_error=1:abort_on_error=1:detect_stack_use_after_return=1
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
echo "sanitize: moelab_unit_tests under ASan+UBSan (fixtures: $MOELAB_FIXTURES)"
build-asan/tests/moelab_unit_tests --gtest_brief=1 "$@"
