#!/usr/bin/env bash
# Runs HERE (a Debian bookworm machine with network): downloads the .deb files that a moelab
# build needs into .device/debs/, for a GPU machine that reaches no package registry (the
# device tool carries .device/ there; scripts/gpu_check.sh unpacks them into a prefix).
# Idempotent: a package whose .deb is already there is not downloaded again.
#
# Usage: bash scripts/gather_device_deps.sh [DEST]   (DEST defaults to .device/debs)
set -euo pipefail
cd "$(dirname "$0")/.."
DEST=${1:-.device/debs}
mkdir -p "$DEST"

# The -dev packages of scripts/setup.sh that the build uses (cmake/Dependencies.cmake,
# tests/CMakeLists.txt), pkg-config for PCRE2, and the runtime libraries they need.
# The runtime list is the closure of the ELF files' NEEDED sonames (readelf -d, dpkg -S),
# not `apt-cache depends`: the latter drags in compilers, fortran and other -dev packages
# (over 400 MiB). Left out on purpose: libc6, libgcc-s1, libstdc++6 (any image with python3
# and nvcc has them, and a second libc in LD_LIBRARY_PATH would break it), the fortran,
# C++ and high-level HDF5 libraries (moelab uses the C API only), mpi compilers' gfortran.
BUILD_PKGS=(
  libopenmpi-dev openmpi-bin openmpi-common
  libhdf5-dev
  libyaml-cpp-dev libspdlog-dev libfmt-dev libcli11-dev nlohmann-json3-dev libgtest-dev
  libpcre2-dev libicu-dev
  pkgconf pkgconf-bin libpkgconf3
)
RUNTIME_PKGS=(
  # Open MPI and what libmpi/orted/its MCA plugins load
  libopenmpi3 libpmix2 libhwloc15 libevent-core-2.1-7 libevent-pthreads-2.1-7 libfabric1
  libucx0 libibverbs1 ibverbs-providers librdmacm1 libpsm2-2 libpsm-infinipath1
  libnl-3-200 libnl-route-3-200 libnuma1 libmunge2 libudev1 libatomic1
  # HDF5 (serial) and libcurl, which libhdf5 links (read-only S3 driver)
  libhdf5-103-1 libsz2 libaec0 libcurl4 libnghttp2-14 libidn2-0 libunistring2 librtmp1
  libssh2-1 libpsl5 libgssapi-krb5-2 libkrb5-3 libk5crypto3 libkrb5support0 libcom-err2
  libkeyutils1 libldap-2.5-0 libsasl2-2 libbrotli1 libzstd1 libssl3 libgnutls30
  libhogweed6 libnettle8 libgmp10 libp11-kit0 libffi8 libtasn1-6
  # the rest of moelab's direct libraries
  libyaml-cpp0.7 libspdlog1.10 libfmt9 libpcre2-8-0 libicu72 libuuid1
)

need=()
for p in "${BUILD_PKGS[@]}" "${RUNTIME_PKGS[@]}"; do
  # apt-get download names files <pkg>_<version>_<arch>.deb (':' in versions as %3a)
  compgen -G "$DEST/${p}_*.deb" >/dev/null || need+=("$p")
done
if ((${#need[@]})); then
  echo "[gather] downloading ${#need[@]} packages: ${need[*]}"
  (cd "$DEST" && apt-get download -q "${need[@]}")
else
  echo "[gather] all ${#BUILD_PKGS[@]}+${#RUNTIME_PKGS[@]} packages present in $DEST"
fi
total=$(du -cb "$DEST"/*.deb | tail -1 | cut -f1)
echo "[gather] $(ls "$DEST"/*.deb | wc -l) .deb files in $DEST, total $((total / 1024 / 1024)) MiB ($total bytes)"
# The device tool carries 64 MiB in all (the working tree included), all of .device/.
if ((total > 50 * 1024 * 1024)); then
  echo "[gather] WARNING: over 50 MiB; the device tool's carry limit is 64 MiB in all" >&2
fi
if [[ $DEST == .device/debs ]]; then
  carried=$(du -sb .device | cut -f1)
  echo "[gather] .device (what carry [\".device\"] sends): $((carried / 1024 / 1024)) MiB"
  if ((carried > total + 1024 * 1024)); then
    echo "[gather] WARNING: .device holds more than the .deb files; remove the rest before carrying it" >&2
  fi
fi
