#!/usr/bin/env bash
# Configures (once) and builds moelab into build/ with the default CMake preset.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -f build/build.ninja ]; then
  cmake --preset default
fi
cmake --build build -j "${MOELAB_BUILD_JOBS:-$(nproc)}"
