# Third-party dependencies. All come from Debian packages, except libtorch, which
# comes from the PyPI `torch` wheel (fast CPU kernels, CUDA inside).

find_package(Python3 REQUIRED COMPONENTS Interpreter)

# --- libtorch from the installed torch wheel ---------------------------------
execute_process(
  COMMAND ${Python3_EXECUTABLE} -c "import torch; print(torch.utils.cmake_prefix_path)"
  OUTPUT_VARIABLE MOELAB_TORCH_PREFIX OUTPUT_STRIP_TRAILING_WHITESPACE
  RESULT_VARIABLE _torch_rc)
if(NOT _torch_rc EQUAL 0)
  message(FATAL_ERROR "moelab: `import torch` failed with ${Python3_EXECUTABLE}; run scripts/setup.sh first")
endif()
list(APPEND CMAKE_PREFIX_PATH ${MOELAB_TORCH_PREFIX})

# The torch wheel was built against the NCCL of the `nvidia-nccl` wheel; the CUDA
# toolkit's older libnccl must not win at link time (undefined ncclCommGrow...).
execute_process(
  COMMAND ${Python3_EXECUTABLE} -c "import nvidia.nccl, os; print(os.path.join(list(nvidia.nccl.__path__)[0], 'lib'))"
  OUTPUT_VARIABLE MOELAB_NCCL_LIBDIR OUTPUT_STRIP_TRAILING_WHITESPACE
  ERROR_QUIET RESULT_VARIABLE _nccl_rc)
if(_nccl_rc EQUAL 0 AND EXISTS ${MOELAB_NCCL_LIBDIR})
  message(STATUS "moelab: using the torch wheel's NCCL in ${MOELAB_NCCL_LIBDIR}")
  # moelab's own NCCL backend uses that same library (one NCCL per process).
  get_filename_component(_nccl_root ${MOELAB_NCCL_LIBDIR} DIRECTORY)
  if(EXISTS ${_nccl_root}/include/nccl.h AND EXISTS ${MOELAB_NCCL_LIBDIR}/libnccl.so.2)
    set(MOELAB_NCCL_INCLUDE_DIR ${_nccl_root}/include)
    set(MOELAB_NCCL_LIBRARY ${MOELAB_NCCL_LIBDIR}/libnccl.so.2)
  endif()
  add_link_options("LINKER:-rpath-link,${MOELAB_NCCL_LIBDIR}" "LINKER:-rpath,${MOELAB_NCCL_LIBDIR}")
else()
  set(MOELAB_NCCL_LIBDIR "")
endif()

find_package(Torch REQUIRED)
if(TARGET torch_cuda OR TORCH_CUDA_LIBRARIES)
  set(MOELAB_WITH_CUDA ON)
else()
  set(MOELAB_WITH_CUDA OFF)
endif()
message(STATUS "moelab: libtorch ${Torch_VERSION} from ${MOELAB_TORCH_PREFIX}, CUDA compiled in: ${MOELAB_WITH_CUDA}")

# --- Debian packages -------------------------------------------------------------
find_package(MPI REQUIRED COMPONENTS C)
find_package(HDF5 REQUIRED COMPONENTS C)
find_package(yaml-cpp REQUIRED)
find_package(fmt REQUIRED)
find_package(spdlog REQUIRED)
find_package(CLI11 CONFIG REQUIRED)
find_package(nlohmann_json REQUIRED)
find_package(PkgConfig REQUIRED)
pkg_check_modules(PCRE2 REQUIRED IMPORTED_TARGET libpcre2-8)
find_package(ICU REQUIRED COMPONENTS uc)

# The torch wheel ships its own fmt (newer than Debian's, which Debian's spdlog was
# built against) in torch/include/fmt. Targets that include both torch and spdlog
# get this folder first on their include path so <fmt/...> resolves to Debian's.
set(MOELAB_FMT_SHIM ${CMAKE_BINARY_DIR}/fmt_shim)
file(MAKE_DIRECTORY ${MOELAB_FMT_SHIM})
# Debian's fmt headers: /usr/include/fmt, or under the prefix that scripts/gpu_check.sh
# unpacks Debian's packages into on a machine without them (read from fmt's own target).
get_target_property(_fmt_inc fmt::fmt INTERFACE_INCLUDE_DIRECTORIES)
set(_fmt_dir /usr/include/fmt)
foreach(_d IN LISTS _fmt_inc)
  if(EXISTS ${_d}/fmt/format.h)
    set(_fmt_dir ${_d}/fmt)
    break()
  endif()
endforeach()
set(_fmt_old "")
if(IS_SYMLINK ${MOELAB_FMT_SHIM}/fmt)
  file(READ_SYMLINK ${MOELAB_FMT_SHIM}/fmt _fmt_old)
endif()
if(NOT _fmt_old STREQUAL _fmt_dir)
  file(REMOVE ${MOELAB_FMT_SHIM}/fmt)
  file(CREATE_LINK ${_fmt_dir} ${MOELAB_FMT_SHIM}/fmt SYMBOLIC)
endif()

# Links a target against libtorch's CPU part, with the include-order fix above.
# libtorch_cuda is NOT linked into moelab's programs: loading it costs ~370 MB of
# resident memory per process (per rank!) even when no GPU is used. It comes with
# the CUDA plugin (cluster/cuda_plugin.cpp), loaded only when a GPU is asked for.
# The C++ frontend's headers (torch/optim, for fine-tuning); its code is in libtorch_cpu.
set(MOELAB_TORCH_API_INCLUDE ${TORCH_INSTALL_PREFIX}/include/torch/csrc/api/include)

function(moelab_link_torch target)
  target_include_directories(${target} BEFORE PRIVATE ${MOELAB_FMT_SHIM})
  target_link_libraries(${target} PUBLIC torch_cpu_library)
  target_compile_options(${target} PRIVATE ${TORCH_CXX_FLAGS})
  if(MOELAB_WITH_CUDA)
    target_compile_definitions(${target} PUBLIC MOELAB_WITH_CUDA=1)
  endif()
endfunction()
