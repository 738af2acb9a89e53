#include "schedulers/orphan_jobs.h"

#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <thread>
#include <vector>

namespace moelab::schedulers {
namespace fs = std::filesystem;
namespace {

// Processes of moelab or an MPI launcher whose argv has an argument under one of the
// job output folders of `prefix` (the results directory + '/'); zombies excluded.
std::vector<pid_t> processes_with_argument(const std::string& prefix) {
  static const char* kOutputs[] = {"calibrate/", "score/", "prune/", "finetune/", "eval/"};
  static const char* kPrograms[] = {"moelab", "mpirun", "mpiexec", "orterun", "prterun", "srun"};
  std::vector<pid_t> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator("/proc", ec)) {
    const std::string name = e.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    const pid_t pid = static_cast<pid_t>(std::stol(name));
    if (pid == ::getpid()) continue;
    std::ifstream in(e.path() / "cmdline", std::ios::binary);
    const std::string cmdline((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const std::string program = fs::path(cmdline.substr(0, cmdline.find('\0'))).filename().string();
    bool match = false;
    for (const char* p : kPrograms) match |= program == p;
    if (!match) continue;
    match = false;
    for (size_t pos = cmdline.find('\0'); pos != std::string::npos && pos + 1 < cmdline.size() && !match;) {
      const size_t end = cmdline.find('\0', pos + 1);
      const std::string arg = cmdline.substr(pos + 1, end == std::string::npos ? std::string::npos : end - pos - 1);
      if (arg.rfind(prefix, 0) == 0)
        for (const char* o : kOutputs) match |= arg.compare(prefix.size(), std::strlen(o), o) == 0;
      pos = end;
    }
    if (match) out.push_back(pid);  // a zombie's cmdline is empty: never matched
  }
  return out;
}

}  // namespace

int stop_orphan_jobs(const std::string& results_dir, std::chrono::milliseconds grace) {
  const std::string prefix = fs::absolute(results_dir).lexically_normal().string() + "/";
  const std::vector<pid_t> orphans = processes_with_argument(prefix);
  for (pid_t p : orphans) ::kill(p, SIGTERM);
  const auto deadline = std::chrono::steady_clock::now() + grace;
  while (!processes_with_argument(prefix).empty() && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  for (pid_t p : processes_with_argument(prefix)) ::kill(p, SIGKILL);
  while (!processes_with_argument(prefix).empty() && std::chrono::steady_clock::now() < deadline + grace)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  return static_cast<int>(orphans.size());
}

int remove_stale_job_temps(const std::string& results_dir) {
  std::error_code ec;
  std::vector<fs::path> stale;
  for (const auto& e : fs::directory_iterator(fs::path(results_dir) / "jobs", ec)) {
    const std::string n = e.path().filename().string();
    const size_t at = n.rfind(".tmp-");
    if (at == std::string::npos) continue;
    char* end = nullptr;
    const long pid = std::strtol(n.c_str() + at + 5, &end, 10);
    if (pid <= 0 || *end != '\0') continue;
    if (::kill(pid_t(pid), 0) != 0 && errno == ESRCH) stale.push_back(e.path());
  }
  for (const auto& p : stale) fs::remove(p, ec);
  return static_cast<int>(stale.size());
}

}  // namespace moelab::schedulers
