#!/usr/bin/env bash
# Runs every test: setup (idempotent), build, then the CTest suite (GoogleTest units,
# fixtures built with transformers/tokenizers, pytest end-to-end tests, fault tests),
# then the reliability stages: the fuzz targets replay their committed corpus and
# fuzz for MOELAB_FUZZ_SECONDS each (default 20; 60 with MOELAB_LONG_TESTS=1).
# MOELAB_LONG_TESTS=1 adds the long suites: longer fuzzing, and the unit suite again under
# ASan+UBSan (scripts/sanitize.sh: a second, instrumented build of every library, 15-20
# minutes on 2 cores, which a CI run of under an hour cannot also hold; run it before a
# release and after changes to memory handling).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh
ctest --preset default -j "${MOELAB_TEST_JOBS:-2}" "$@"

fuzz_seconds=${MOELAB_FUZZ_SECONDS:-20}
[ "${MOELAB_LONG_TESTS:-0}" = 1 ] && fuzz_seconds=${MOELAB_FUZZ_SECONDS:-60}
echo "== reliability: fuzzing (${fuzz_seconds} s per target)"
rc=0
bash scripts/fuzz.sh "$fuzz_seconds" || rc=$?
if [ "$rc" = 77 ]; then
  echo "== reliability: fuzzing SKIPPED (see the message above); this run did not fuzz"
elif [ "$rc" != 0 ]; then
  exit "$rc"
fi
if [ "${MOELAB_LONG_TESTS:-0}" = 1 ]; then
  echo "== reliability: unit tests under ASan+UBSan"
  bash scripts/sanitize.sh
else
  echo "== reliability: ASan+UBSan unit stage not run (MOELAB_LONG_TESTS=1 runs it: scripts/sanitize.sh)"
fi
