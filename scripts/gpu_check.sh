#!/usr/bin/env bash
# Runs THERE: on a lent GPU machine (about 15 minutes, one command of at most 10), from the
# repository root, as `bash scripts/gpu_check.sh`, after scripts/gather_device_deps.sh has
# filled .device/debs here and the device tool carried it (carry [".device"]).
# That machine has torch (CUDA), python3, cmake and ninja but none of moelab's Debian
# libraries and no package registry, so everything is prepared for the minutes to go to
# measuring: unpack the .deb files into a prefix of our own (never /), configure against
# the machine's own torch, build the two targets, run the CUDA checks, print ONE summary.
#
#   bash scripts/gpu_check.sh              every step
#   bash scripts/gpu_check.sh --dry-run    the CPU-side steps only (unpack, configure)
#   MOELAB_GPU_CHECK_STEPS="unpack configure build" bash scripts/gpu_check.sh
#   MOELAB_GPU_CHECK_DEVICE=cpu ...         the same steps on a machine without a GPU
#
# A run that ran out of time (the build, say) can be run again at once: on the still-warm
# machine build-gpu/ (prefix, objects, fixtures) is kept, and only what is missing is redone.
# Every step has its own timeout and a failed step does not stop the next ones (a later
# step that needs it fails quickly). All steps share one deadline (MOELAB_GPU_CHECK_BUDGET_S,
# 560 s) so that the summary is printed before the device tool's 10 minutes run out.
# The script can be sourced (the tests call unpack_debs and configure_moelab).
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DEBS=${MOELAB_DEVICE_DEBS:-$ROOT/.device/debs}
BUILD=${MOELAB_GPU_BUILD:-$ROOT/build-gpu}
# Not under .device: the device tool carries .device (64 MiB in all) and replaces it there,
# while build-gpu/ (git-ignored, not carried) stays on a warm machine between two runs.
PREFIX=${MOELAB_DEVICE_PREFIX:-$BUILD/prefix}
FIXTURES=${MOELAB_GPU_FIXTURES:-$BUILD/fixtures}
LOGS=${MOELAB_GPU_LOGS:-$BUILD/gpu_check_logs}
JOBS=${MOELAB_GPU_JOBS:-$(nproc)}
BUDGET_S=${MOELAB_GPU_CHECK_BUDGET_S:-560}
PY=${PYTHON:-python3}
MA=x86_64-linux-gnu   # Debian's multiarch triplet: libraries live in usr/lib/$MA
ALL_STEPS="unpack configure build fixtures parity_fp32 parity_bf16 cached_decoding calibrate eval"
CPU_STEPS="unpack configure"
MODEL=$ROOT/models/debian-moe
# cuda there; cpu lets the whole script be smoke-tested on a machine without a GPU
DEVICE=${MOELAB_GPU_CHECK_DEVICE:-cuda}

log() { echo "[gpu_check] $*" >&2; }

# --- unpacking -----------------------------------------------------------------------
# dpkg -x extracts a package's files under a directory without running its scripts and
# without touching dpkg's database, so nothing lands in / (no root needed either).
unpack_debs() {  # unpack_debs DEBS_DIR PREFIX
  local debs=$1 prefix=$2 n=0 d
  mkdir -p "$prefix"
  shopt -s nullglob
  local files=("$debs"/*.deb)
  shopt -u nullglob
  if ((${#files[@]} == 0)); then
    log "no .deb files in $debs (run scripts/gather_device_deps.sh first)"
    return 1
  fi
  local stamp
  for d in "${files[@]}"; do
    # a stamp per package: a second run on a warm machine skips the unpacking
    stamp="$prefix/.unpacked/$(basename "$d")"
    [[ -e $stamp ]] && continue
    dpkg -x "$d" "$prefix" || { log "dpkg -x $d failed"; return 1; }
    mkdir -p "$prefix/.unpacked" && : >"$stamp"
    n=$((n + 1))
  done
  log "unpacked $n new of ${#files[@]} packages into $prefix"
  make_gap_libs "$prefix"
  make_pkg_config "$prefix"
}

# Shared libraries of the prefix that this machine lacks, as links in one folder: the
# search path for the libraries moelab's own libraries pull in (libcurl for libhdf5, ...).
# Sonames the system already has are left out, so its own (newer) copies keep serving
# python3, torch and CUDA, and the prefix's only fill gaps.
make_gap_libs() {  # make_gap_libs PREFIX
  local prefix=$1 gap=$1/gaplibs f name have
  rm -rf "$gap" && mkdir -p "$gap"
  have=$(ldconfig -p 2>/dev/null | awk '{print $1}' | sort -u)
  while IFS= read -r f; do
    name=$(basename "$f")
    grep -qxF "$name" <<<"$have" && continue
    [[ -e $gap/$name ]] || ln -s "$f" "$gap/$name"
  done < <(find "$prefix/usr/lib/$MA" -maxdepth 1 -name 'lib*.so.*' 2>/dev/null)
}

# Debian's .pc files say prefix=/usr: a pkg-config that reads only the prefix's .pc files
# and moves their prefix there (PCRE2 is found through pkg-config).
make_pkg_config() {  # make_pkg_config PREFIX
  local prefix=$1 pc
  pc=$(command -v pkg-config || true)
  mkdir -p "$prefix/bin"
  cat >"$prefix/bin/pkg-config" <<EOF
#!/bin/sh
# written by scripts/gpu_check.sh: pkg-config over $prefix only
PKG_CONFIG_LIBDIR=$prefix/usr/lib/$MA/pkgconfig:$prefix/usr/share/pkgconfig
export PKG_CONFIG_LIBDIR
LD_LIBRARY_PATH=$prefix/usr/lib/$MA\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}
export LD_LIBRARY_PATH
exec ${pc:-$prefix/usr/bin/pkgconf} --define-variable=prefix=$prefix/usr "\$@"
EOF
  chmod +x "$prefix/bin/pkg-config"
}

# Library path for programs built against the prefix: Open MPI's own folder, HDF5's serial
# folder, and the gap libraries (not the whole usr/lib/$MA: see make_gap_libs).
prefix_ld_path() {  # prefix_ld_path PREFIX
  local p=$1
  echo "$p/usr/lib/$MA/openmpi/lib:$p/usr/lib/$MA/hdf5/serial:$p/gaplibs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
}

# Open MPI and PMIx look for their plugins and help files where they were installed (/usr);
# these variables move them to the prefix (ompi_info --path all shows the moved paths).
export_mpi_env() {  # export_mpi_env PREFIX
  export OPAL_PREFIX=$1/usr PMIX_INSTALL_PREFIX=$1/usr
  export PATH=$1/usr/bin:$PATH
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 PMIX_MCA_psec=native
}

# --- configuring -----------------------------------------------------------------------
# configure_moelab BUILD_DIR TORCH_CMAKE_PREFIX PREFIX [extra cmake args...]
# Points every find_package of cmake/Dependencies.cmake at the prefix explicitly where
# Debian's layout or its wrappers (mpicc, h5cc, .pc files: all say /usr) would mislead CMake.
# Settings for a package whose files the prefix lacks are left out, so that the system's
# copy is found as usual (the tests configure with a tiny prefix).
configure_moelab() {
  local build=$1 torch=$2 p=$3
  shift 3
  local lib=$p/usr/lib/$MA
  local args=(-S "$ROOT" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release
    "-DCMAKE_PREFIX_PATH=$torch;$p/usr"
    "-DPython3_EXECUTABLE=$(command -v "$PY")")
  if [[ -f $lib/openmpi/lib/libmpi.so && -f $lib/openmpi/include/mpi.h ]]; then
    # mpicc would work under OPAL_PREFIX, but explicit paths leave nothing to guess
    args+=(-DMPI_SKIP_COMPILER_WRAPPER=ON -DMPI_C_COMPILER=MPI_C_COMPILER-NOTFOUND
      "-DMPI_C_HEADER_DIR=$lib/openmpi/include" -DMPI_C_LIB_NAMES=mpi
      "-DMPI_mpi_LIBRARY=$lib/openmpi/lib/libmpi.so")
  fi
  [[ -x $p/usr/bin/orterun ]] && args+=("-DMOELAB_MPIRUN=$p/usr/bin/orterun")
  if [[ -f $lib/hdf5/serial/libhdf5.so ]]; then
    # Debian's h5cc prints /usr paths: a wrapper that fails makes FindHDF5 search instead
    args+=(-DHDF5_NO_FIND_PACKAGE_CONFIG_FILE=ON -DHDF5_C_COMPILER_EXECUTABLE=/bin/false
      "-DHDF5_C_INCLUDE_DIR=$p/usr/include/hdf5/serial"
      "-DHDF5_hdf5_LIBRARY_RELEASE=$lib/hdf5/serial/libhdf5.so")
  fi
  [[ -f $p/usr/include/unicode/utypes.h ]] && args+=("-DICU_ROOT=$p/usr")
  # only when PCRE2 is there: this pkg-config sees the prefix's .pc files alone
  [[ -x $p/bin/pkg-config && -f $lib/pkgconfig/libpcre2-8.pc ]] && args+=("-DPKG_CONFIG_EXECUTABLE=$p/bin/pkg-config")
  # libraries that the prefix's libraries need (libcurl for libhdf5, ...): the linker
  # looks for them where the program will (rpath-link), the system's first
  [[ -d $p/gaplibs ]] && args+=("-DCMAKE_EXE_LINKER_FLAGS=-Wl,-rpath-link,$p/gaplibs:$lib/openmpi/lib"
    "-DCMAKE_SHARED_LINKER_FLAGS=-Wl,-rpath-link,$p/gaplibs:$lib/openmpi/lib"
    "-DCMAKE_MODULE_LINKER_FLAGS=-Wl,-rpath-link,$p/gaplibs:$lib/openmpi/lib")
  log "cmake ${args[*]} $*"
  cmake "${args[@]}" "$@"
}

torch_cmake_prefix() { "$PY" -c 'import torch; print(torch.utils.cmake_prefix_path)'; }

# --- steps and their summary -------------------------------------------------------------
declare -A STATUS TIME NOTE
ORDER=()
START=$(date +%s)

remaining() { echo $((BUDGET_S - ($(date +%s) - START))); }

# run_step NAME TIMEOUT_S COMMAND... : runs under `timeout` (never past the shared
# deadline, 10 s kept for the summary), output to $LOGS/NAME.log, never stops the script.
run_step() {
  local name=$1 limit=$2
  shift 2
  local left=$(($(remaining) - 10))
  ORDER+=("$name")
  if ((left < 5)); then
    STATUS[$name]="skipped"; TIME[$name]=0; NOTE[$name]="no time left"
    return 1
  fi
  ((limit > left)) && limit=$left
  mkdir -p "$LOGS"
  log "step $name (timeout ${limit}s)"
  local t0 rc ms
  t0=$(date +%s%N)
  # `timeout` runs programs, not shell functions: the script calls itself (__call)
  timeout -k 5 "$limit" bash "$ROOT/scripts/gpu_check.sh" __call "$@" >"$LOGS/$name.log" 2>&1
  rc=$?
  ms=$((($(date +%s%N) - t0) / 1000000))
  TIME[$name]=$((ms / 1000)).$((ms % 1000 / 100))
  if ((rc == 0)); then
    STATUS[$name]=ok
  elif ((rc == 124 || rc == 137)); then
    STATUS[$name]="FAILED (timeout ${limit}s)"
  else
    STATUS[$name]="FAILED (rc $rc)"
  fi
  ((rc == 0)) || tail -n 15 "$LOGS/$name.log" | sed "s/^/[$name] /" >&2
  return $rc
}

# gtest counts and the largest logit difference that the parity tests print
gtest_note() {  # gtest_note LOG
  local f=$1 passed failed skipped worst
  passed=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' "$f" | tail -1)
  failed=$(sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' "$f" | tail -1)
  skipped=$(sed -n 's/^\[  SKIPPED \] \([0-9]*\) test.*/\1/p' "$f" | tail -1)
  worst=$(sed -n 's/.*max |logit diff|[^=]*= \([0-9.eE+-]*\).*/\1/p' "$f" | sort -g | tail -1)
  echo "passed ${passed:-0}, failed ${failed:-0}, skipped ${skipped:-0}${worst:+, worst max|logit diff| $worst}"
}

unit_tests() {  # unit_tests GTEST_FILTER: $DEVICE for the tests that read MOELAB_TEST_DEVICE
  MOELAB_TEST_DEVICE=$DEVICE MOELAB_FIXTURES=$FIXTURES LD_LIBRARY_PATH=$(prefix_ld_path "$PREFIX") \
    "$BUILD/tests/moelab_unit_tests" --gtest_filter="$1" --gtest_color=no
}

moelab_run() { LD_LIBRARY_PATH=$(prefix_ld_path "$PREFIX") "$BUILD/runner/moelab" "$@"; }

step_unpack() { run_step unpack 120 unpack_debs "$DEBS" "$PREFIX" && NOTE[unpack]="$(ls "$PREFIX/.unpacked" | wc -l) packages, $(ls "$PREFIX/gaplibs" | wc -l) libraries the system lacks"; }

step_configure() {
  local torch
  torch=$(torch_cmake_prefix) || { ORDER+=(configure); STATUS[configure]="FAILED (import torch)"; TIME[configure]=0; return 1; }
  run_step configure 120 configure_moelab "$BUILD" "$torch" "$PREFIX"
  NOTE[configure]="torch $(sed -n 's/.*libtorch \([^ ]*\) from.*/\1/p' "$LOGS/configure.log" | sed -n 1p), CUDA: $(sed -n 's/.*CUDA compiled in: \(.*\)/\1/p' "$LOGS/configure.log" | sed -n 1p), plugin: $(grep -q 'CUDA plugin with the NCCL' "$LOGS/configure.log" && echo yes || echo no)"
}

step_build() { run_step build 420 cmake --build "$BUILD" -j "$JOBS" --target moelab moelab_unit_tests; }

# The fixtures as ctest builds them (tests/CMakeLists.txt: make_fixtures.py --out
# build/fixtures): make_models.py's models with transformers' reference logits, and the
# tokenizers. Python runs with the machine's own libraries (no prefix on its path).
fixtures_cmd() { "$PY" "$ROOT/tests/fixtures/make_fixtures.py" --out "$FIXTURES"; }
step_fixtures() { run_step fixtures 240 fixtures_cmd; NOTE[fixtures]="$(find "$FIXTURES/models" -maxdepth 1 -name '*.ref.safetensors' 2>/dev/null | wc -l) model references"; }

step_parity_fp32() { run_step parity_fp32 120 unit_tests '*TransformersParity.LogitsWithin1e4*:ModelLoading.*'; NOTE[parity_fp32]=$(gtest_note "$LOGS/parity_fp32.log"); }
step_parity_bf16() { run_step parity_bf16 120 unit_tests '*TransformersParity.Bfloat16*'; NOTE[parity_bf16]=$(gtest_note "$LOGS/parity_bf16.log"); }
# CachedDecoding loads its models with default options (fp32, CPU); run for completeness
step_cached_decoding() { run_step cached_decoding 120 unit_tests '*CachedDecoding*:*TokenizerParity*:KvCache.*'; NOTE[cached_decoding]=$(gtest_note "$LOGS/cached_decoding.log"); }

calibrate_cmd() {
  moelab_run calibrate "$MODEL" --device "$DEVICE" --dtype float32 --data "$MODEL/corpus/en.calibration.jsonl" \
    --seq-len 256 --num-samples 64 --batch-size 8 --out "$BUILD/gpu_check_stats.h5" --overwrite
}
step_calibrate() {
  run_step calibrate 90 calibrate_cmd
  NOTE[calibrate]="64 x 256 tokens fp32, last $(grep -o '[0-9.]* tok/s' "$LOGS/calibrate.log" | tail -1), $(grep -o 'peak resident memory: [0-9.]* MiB' "$LOGS/calibrate.log" | tail -1)"
}

eval_cmd() {
  local dt
  for dt in float32 bfloat16; do
    echo "=== dtype $dt"
    moelab_run eval "$MODEL" --device "$DEVICE" --dtype "$dt" --data "en:$MODEL/corpus/en.test.jsonl" \
      --max-length 256 --stride 128 --efficiency || return
  done
}
step_eval() {
  run_step eval 120 eval_cmd
  NOTE[eval]=$(awk '/^=== dtype/{dt=$3} $1=="en" && $3=="perplexity"{ppl[dt]=$4} $3=="tokens_per_second"{tps[dt]=$4}
    END{for(d in ppl) printf "%s: ppl %s, %s tok/s; ", d, ppl[d], tps[d]}' "$LOGS/eval.log")
}

summary() {
  local s name
  s=$(
    echo "===== moelab gpu_check summary ($(date -u +%FT%TZ), $(hostname)) ====="
    local gpu="no nvidia-smi"
    command -v nvidia-smi >/dev/null && gpu=$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | sed -n 1p)
    echo "device: $gpu"
    echo "torch: $("$PY" -c 'import torch;print(torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())' 2>/dev/null)"
    for name in "${ORDER[@]}"; do
      printf '%-16s %-24s %7ss  %s\n' "$name" "${STATUS[$name]}" "${TIME[$name]}" "${NOTE[$name]:-}"
    done
    echo "total $(($(date +%s) - START)) s; logs in $LOGS"
  )
  echo "$s"
  if [[ -n ${OUT:-} ]]; then
    mkdir -p "$OUT" && echo "$s" >"$OUT/gpu_check.txt"
    # the logs come back too (small), to read what failed
    mkdir -p "$OUT/gpu_check_logs" && cp "$LOGS"/*.log "$OUT/gpu_check_logs/" 2>/dev/null
  fi
}

main() {
  local steps=${MOELAB_GPU_CHECK_STEPS:-$ALL_STEPS} a
  for a in "$@"; do
    case $a in
      --dry-run) steps=$CPU_STEPS ;;
      -h | --help) sed -n '2,20p' "${BASH_SOURCE[0]}"; return 0 ;;
      *) log "unknown argument $a"; return 2 ;;
    esac
  done
  export_mpi_env "$PREFIX"
  local want=" $steps " fixtures_pid=""
  for s in $ALL_STEPS; do
    [[ $want == *" $s "* ]] || continue
    if [[ $s == build && $want == *" fixtures "* ]]; then
      # the fixtures (python, mostly one core) are built while ninja compiles
      mkdir -p "$LOGS"
      # only the fixtures' entries come back (the build's are set meanwhile, here)
      ( step_fixtures
        printf 'STATUS[fixtures]=%q TIME[fixtures]=%q NOTE[fixtures]=%q\n' \
          "${STATUS[fixtures]}" "${TIME[fixtures]}" "${NOTE[fixtures]:-}" >"$LOGS/.fixtures.state" ) &
      fixtures_pid=$!
    fi
    if [[ $s == fixtures && -n $fixtures_pid ]]; then
      wait "$fixtures_pid"
      ORDER+=(fixtures)
      local st
      st=$(cat "$LOGS/.fixtures.state" 2>/dev/null) || st=""
      if [[ -n $st ]]; then
        eval "$st"
      else
        STATUS[fixtures]="FAILED (no state)"; TIME[fixtures]=0
      fi
      continue
    fi
    "step_$s"
  done
  summary
  local name
  for name in "${ORDER[@]}"; do [[ ${STATUS[$name]} == ok ]] || return 1; done
  return 0
}

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
  if [[ ${1:-} == __call ]]; then
    shift
    "$@"
    exit
  fi
  main "$@"
fi
