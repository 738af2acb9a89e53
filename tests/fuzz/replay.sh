#!/usr/bin/env bash
# Runs a fuzz target once over every file of its regression corpus (no fuzzing):
# each past crash stays fixed (inputs named as files run once each).
set -euo pipefail
bin=$1 corpus=$2
[ -d "$corpus" ] && [ -n "$(ls -A "$corpus")" ] || { echo "replay: no corpus in $corpus" >&2; exit 1; }
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0:allocator_may_return_null=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
exec "$bin" -rss_limit_mb=4096 -timeout=30 "$corpus"/*
