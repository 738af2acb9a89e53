#include "schedulers/results_dir.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/common/atomic_output.h"
#include "core/common/error.h"
#include "core/common/json_file.h"

namespace moelab::schedulers {
namespace fs = std::filesystem;

namespace {

const char* const kFolders[] = {"calibrate", "score", "prune", "finetune", "eval", "jobs", "logs"};

// The folders jobs write into, and whose leftovers a retry removes, must be the
// directory's own: a symbolic link there (planted, or left by a copy) would send
// outputs and deletions outside the results directory.
void check_own_folders(const fs::path& root, const std::string& dir) {
  std::error_code ec;
  for (const char* sub : kFolders)
    if (fs::is_symlink(root / sub, ec))
      throw InputError(dir, std::string("\"") + sub + "\" is a symbolic link; a results directory's folders must be "
                            "real folders inside it");
  if (fs::is_symlink(root / ".lock", ec)) throw InputError(dir, "\".lock\" is a symbolic link");
}

}  // namespace

ResultsDir ResultsDir::prepare(const std::string& dir, const SweepSpec& spec, const JobGraph& graph) {
  const fs::path root = fs::absolute(dir).lexically_normal();
  std::error_code ec;
  if (fs::exists(root, ec) && !fs::is_directory(root, ec)) throw InputError(dir, "exists and is not a directory");
  if (fs::exists(root / "plan.json")) {
    // Refuse to mix two different sweeps in one directory (their reports would mix).
    const std::string other = ResultsDir::open(root.string()).name();
    if (other != spec.name)
      throw InputError(dir, "holds the results of sweep \"" + other + "\", not \"" + spec.name +
                                "\" (give another --results directory)");
  }
  check_own_folders(root, dir);
  for (const char* sub : kFolders) fs::create_directories(root / sub);
  std::ifstream in(spec.path, std::ios::binary);
  if (!in) throw InputError(spec.path, "cannot read the sweep spec");
  std::stringstream text;
  text << in.rdbuf();
  write_file_atomic(root / "sweep.yaml", text.str());
  results::SweepPlan plan{spec.name, fs::absolute(spec.path).string(), graph.jobs, spec.claims};
  write_file_atomic(root / "plan.json", results::sweep_plan_to_json(plan).dump(1) + "\n");
  ResultsDir r;
  r.path_ = root.string();
  r.name_ = spec.name;
  r.graph_ = graph;
  return r;
}

ResultsDir ResultsDir::open(const std::string& dir) {
  const fs::path root = fs::absolute(dir).lexically_normal();
  const std::string plan = (root / "plan.json").string();
  if (!fs::exists(plan)) throw InputError(dir, "not a sweep results directory (no plan.json)");
  check_own_folders(root, dir);
  results::SweepPlan p = results::read_sweep_plan(plan);
  ResultsDir r;
  r.path_ = root.string();
  r.name_ = p.name;
  r.graph_.jobs = std::move(p.jobs);
  return r;
}

std::string ResultsDir::log_file(const std::string& job_id) const { return "logs/" + job_id + ".log"; }

SweepLock::SweepLock(const std::string& dir) {
  const std::string path = (fs::path(dir) / ".lock").string();
  fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
  if (fd_ < 0) throw InputError(path, "cannot create the sweep lock");
  if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
    ::close(fd_);
    fd_ = -1;
    throw InputError(dir, "another moelab process is running this sweep (it holds " + path + ")");
  }
}

SweepLock::~SweepLock() {
  if (fd_ >= 0) ::close(fd_);  // closing releases the flock
}

void remove_job_output(const std::string& results_dir, const Job& job) {
  const fs::path out = fs::path(results_dir) / job.output;
  std::error_code ec;
  fs::remove_all(out, ec);
  if (!fs::is_directory(out.parent_path(), ec)) return;
  // Besides its main output a job may write side outputs named after it in the same
  // folder (a prune job's "<id>.plan.json"); a kill leaves their temp names behind.
  // Job ids are 16 hex digits, so "<id>." belongs to this job alone. Committed side
  // outputs stay: a fine-tuning job resumes from its "<id>.ckpt".
  const std::string name = out.filename().string();
  const std::string side = job.id + ".";
  std::vector<fs::path> stale;
  for (const auto& e : fs::directory_iterator(out.parent_path(), ec)) {
    const std::string n = e.path().filename().string();
    const bool own_temp = n.rfind(name + ".tmp-", 0) == 0;
    const bool side_temp = !job.id.empty() && n.rfind(side, 0) == 0 && n.find(".tmp-") != std::string::npos;
    if (own_temp || side_temp) stale.push_back(e.path());
  }
  for (const auto& p : stale) fs::remove_all(p, ec);
}

}  // namespace moelab::schedulers
