#include "cluster/cuda_support.h"

#include <dlfcn.h>
#include <unistd.h>

#include <filesystem>
#include <mutex>

#include "core/common/error.h"

namespace moelab::cluster {
namespace {

using MakeNccl = Communicator* (*)(std::shared_ptr<Communicator>*);

struct Plugin {
  void* handle = nullptr;
  std::string error;
};

Plugin& plugin() {
  static Plugin p;
  static std::once_flag once;
  std::call_once(once, [] {
#ifdef MOELAB_CUDA_PLUGIN
    // Beside the binary (installed layout), then where the build put it (tests).
    char self[4096];
    ssize_t n = ::readlink("/proc/self/exe", self, sizeof(self) - 1);
    std::string dir = n > 0 ? std::filesystem::path(std::string(self, n)).parent_path().string() : ".";
    for (const std::string& d : {dir, std::string(MOELAB_CUDA_PLUGIN_BUILD_DIR)}) {
      const std::string path = d + "/" + MOELAB_CUDA_PLUGIN;
      if (!std::filesystem::exists(path)) continue;
      p.handle = ::dlopen(path.c_str(), RTLD_NOW | RTLD_GLOBAL);
      if (!p.handle) p.error = std::string("cannot load the CUDA plugin: ") + ::dlerror();
      return;
    }
    p.error = std::string("the CUDA plugin ") + MOELAB_CUDA_PLUGIN + " is not beside the moelab binary";
#else
    p.error = "this build has no CUDA plugin (the CUDA toolkit was not found at configure time)";
#endif
  });
  return p;
}

}  // namespace

bool enable_cuda(std::string* why) {
  Plugin& p = plugin();
  if (!p.handle && why) *why = p.error;
  return p.handle != nullptr;
}

std::shared_ptr<Communicator> make_nccl_communicator(std::shared_ptr<Communicator> mpi) {
  std::string why;
  if (!enable_cuda(&why)) throw InputError("--comm nccl", why);
  auto make = reinterpret_cast<MakeNccl>(::dlsym(plugin().handle, "moelab_make_nccl_communicator"));
  if (!make) throw InputError("--comm nccl", "the CUDA plugin has no NCCL backend");
  return std::shared_ptr<Communicator>(make(&mpi));
}

int64_t cuda_peak_allocated_bytes(int device) {
  if (!plugin().handle) return 0;
  auto peak = reinterpret_cast<int64_t (*)(int)>(::dlsym(plugin().handle, "moelab_cuda_peak_allocated"));
  return peak ? peak(device) : 0;
}

void cuda_empty_cache() {
  if (!plugin().handle) return;
  if (auto empty = reinterpret_cast<void (*)()>(::dlsym(plugin().handle, "moelab_cuda_empty_cache"))) empty();
}

}  // namespace moelab::cluster
