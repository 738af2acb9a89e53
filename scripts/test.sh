#!/usr/bin/env bash
# Runs every test: setup (idempotent), build, then the CTest suite (GoogleTest units,
# fixtures built with transformers/tokenizers, pytest end-to-end tests).
# MOELAB_LONG_TESTS=1 adds the long suites (none yet).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh
ctest --preset default -j "${MOELAB_TEST_JOBS:-2}" "$@"
