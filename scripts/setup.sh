#!/usr/bin/env bash
# One-time (idempotent) setup for moelab: Debian packages + PyPI packages.
# Fast when everything is present: each group is checked before anything is installed.
set -euo pipefail

DEB_PACKAGES=(
  build-essential cmake ninja-build pkg-config
  libopenmpi-dev openmpi-bin
  libhdf5-dev
  libyaml-cpp-dev libspdlog-dev libfmt-dev libcli11-dev nlohmann-json3-dev
  libgtest-dev libgmock-dev
  libpcre2-dev libicu-dev
  clang libclang-rt-14-dev   # fuzzing (scripts/fuzz.sh): clang++ and libFuzzer
  slurm-wlm munge
  chromium
  fortunes fortunes-min fortunes-de fortunes-es fortunes-it fortunes-ru fortunes-pl fortunes-cs fortunes-zh fortunes-br
)
# Pinned so that parity tests compare against one known transformers.
PY_PACKAGES=(
  torch==2.15.0 transformers==5.24.0 safetensors==0.8.0 tokenizers==0.23.3
  h5py==3.16.0 matplotlib==3.11.2 pytest==9.2.0 numpy
  lm-eval==0.4.13   # the reference for evaluation rules (tests compare against its own functions)
  accelerate==1.16.0   # lm-eval's Hugging Face backend (the reference of the moelab model type)
)

log() { echo "[setup] $*"; }

missing_debs=()
for p in "${DEB_PACKAGES[@]}"; do
  # no `| grep -q`: grep stops reading at the first match and, under pipefail, the
  # writer's SIGPIPE would count an installed package as missing
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [[ $status == *"install ok installed"* ]] || missing_debs+=("$p")
done
if ((${#missing_debs[@]})); then
  log "installing Debian packages: ${missing_debs[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing_debs[@]}" >/dev/null
else
  log "Debian packages present"
fi

PY=${PYTHON:-python3}
if ! "$PY" - "${PY_PACKAGES[@]}" <<'PYEOF'
import sys
from importlib.metadata import version, PackageNotFoundError
bad = []
for spec in sys.argv[1:]:
    name, _, want = spec.partition("==")
    try:
        have = version(name)
    except PackageNotFoundError:
        bad.append(spec); continue
    if want and have.split("+")[0] != want:
        bad.append(spec)
sys.exit(1 if bad else 0)
PYEOF
then
  log "installing PyPI packages: ${PY_PACKAGES[*]}"
  "$PY" -m pip install -q "${PY_PACKAGES[@]}"
else
  log "PyPI packages present"
fi
log "done"
