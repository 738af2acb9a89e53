#include "cluster/launcher.h"

#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "core/common/error.h"

namespace moelab::cluster {
namespace {

int launcher_size() {
  for (const char* var : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE"})
    if (const char* v = std::getenv(var)) return std::atoi(v);
  return 0;
}

}  // namespace

std::vector<std::string> relaunch_under_mpirun_if_asked(const std::vector<std::string>& args) {
  std::vector<std::string> rest;
  std::string ranks_text;
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--ranks" && i + 1 < args.size()) {
      ranks_text = args[++i];
    } else if (args[i].rfind("--ranks=", 0) == 0) {
      ranks_text = args[i].substr(8);
    } else {
      rest.push_back(args[i]);
    }
  }
  if (ranks_text.empty()) return rest;
  char* end = nullptr;
  long ranks = std::strtol(ranks_text.c_str(), &end, 10);
  if (*end != '\0' || ranks < 1 || ranks > 4096)
    throw InputError("--ranks", "\"" + ranks_text + "\" is not a rank count in [1, 4096]");
  if (int have = launcher_size(); have > 0) {
    if (have != ranks)
      throw InputError("--ranks", "asks for " + ranks_text + " ranks, but the launcher started " + std::to_string(have));
    return rest;
  }
  if (ranks == 1) return rest;
  std::vector<std::string> cmd = {"mpirun", "--oversubscribe", "-np", std::to_string(ranks)};
  if (::geteuid() == 0) cmd.insert(cmd.begin() + 1, "--allow-run-as-root");
  char self[4096];
  ssize_t n = ::readlink("/proc/self/exe", self, sizeof(self) - 1);
  if (n <= 0) throw InputError("--ranks", "cannot find the moelab binary to relaunch");
  self[n] = '\0';
  cmd.push_back(self);
  cmd.insert(cmd.end(), rest.begin(), rest.end());
  std::vector<char*> argv;
  for (auto& s : cmd) argv.push_back(s.data());
  argv.push_back(nullptr);
  ::execvp("mpirun", argv.data());
  throw InputError("--ranks", std::string("cannot run mpirun: ") + std::strerror(errno));
}

void prefer_native_pmix_security() { ::setenv("PMIX_MCA_psec", "native", /*overwrite=*/0); }

}  // namespace moelab::cluster
