#include "schedulers/job_process.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "core/common/error.h"
#include "results/result_records.h"
#include "schedulers/results_dir.h"

namespace moelab::schedulers {
namespace fs = std::filesystem;

std::string this_executable() {
  char buf[4096];
  const ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) throw InputError("/proc/self/exe", "cannot find the moelab binary");
  return std::string(buf, static_cast<size_t>(n));
}

std::vector<std::string> job_command(const Job& job, const std::string& results_dir, const LaunchSettings& how) {
  std::vector<std::string> cmd;
  const std::string ranks = std::to_string(job.resources.ranks);
  // `moelab lm-eval` is one Python process that starts `moelab --ranks P` per request batch;
  // `moelab compress` is one process (it writes a copy with vectors of ones).
  const bool one_process = !job.args.empty() && (job.args.front() == "lm-eval" || job.args.front() == "compress");
  if (job.resources.ranks > 1 && !one_process) {
    if (how.launcher == "srun") {
      cmd = {"srun", "--mpi=" + how.srun_mpi, "--ntasks", ranks};
    } else {
      cmd.push_back("mpirun");
      if (::geteuid() == 0) cmd.push_back("--allow-run-as-root");
      for (const char* a : {"--oversubscribe", "-np"}) cmd.push_back(a);
      cmd.push_back(ranks);
    }
  }
  cmd.push_back(how.moelab.empty() ? this_executable() : how.moelab);
  for (auto& a : job_arguments(job, results_dir)) cmd.push_back(std::move(a));
  return cmd;
}

pid_t start_process(const std::vector<std::string>& cmd, const std::string& log_path, const std::string& header) {
  const int fd = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) throw InputError(log_path, std::string("cannot open the job log: ") + std::strerror(errno));
  std::string line = header + "\n$";
  for (const auto& c : cmd) line += " " + c;
  line += "\n";
  if (::write(fd, line.data(), line.size()) < 0) { /* the log is best effort */ }
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) {
    ::close(fd);
    throw InputError(log_path, std::string("cannot start the job: ") + std::strerror(errno));
  }
  if (pid == 0) {
    // The job must not outlive the executor: a kill -9 of the executor then stops
    // mpirun, which stops its ranks, and a re-run finds no stray writer.
    ::prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (::getppid() != parent) ::_exit(143);
    ::dup2(fd, STDOUT_FILENO);
    ::dup2(fd, STDERR_FILENO);
    const int devnull = ::open("/dev/null", O_RDONLY);
    if (devnull >= 0) ::dup2(devnull, STDIN_FILENO);
    std::vector<char*> argv;
    for (const auto& c : cmd) argv.push_back(const_cast<char*>(c.c_str()));
    argv.push_back(nullptr);
    ::execvp(argv[0], argv.data());
    const std::string msg = "error: cannot run " + cmd[0] + ": " + std::strerror(errno) + "\n";
    if (::write(STDERR_FILENO, msg.data(), msg.size()) < 0) { /* nothing more to do */ }
    ::_exit(127);
  }
  ::close(fd);
  return pid;
}

CommandResult run_command(const std::vector<std::string>& cmd) {
  int pipefd[2];
  if (::pipe2(pipefd, O_CLOEXEC) != 0) throw std::runtime_error("pipe failed");
  const pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error("fork failed");
  if (pid == 0) {
    ::dup2(pipefd[1], STDOUT_FILENO);
    ::dup2(pipefd[1], STDERR_FILENO);
    std::vector<char*> argv;
    for (const auto& c : cmd) argv.push_back(const_cast<char*>(c.c_str()));
    argv.push_back(nullptr);
    ::execvp(argv[0], argv.data());
    const std::string msg = cmd[0] + ": " + std::strerror(errno) + "\n";
    if (::write(STDERR_FILENO, msg.data(), msg.size()) < 0) { /* nothing more to do */ }
    ::_exit(127);
  }
  ::close(pipefd[1]);
  CommandResult r;
  char buf[4096];
  for (ssize_t n; (n = ::read(pipefd[0], buf, sizeof buf)) != 0;) {
    if (n < 0) {
      if (errno == EINTR) continue;
      break;
    }
    r.output.append(buf, static_cast<size_t>(n));
  }
  ::close(pipefd[0]);
  int st = 0;
  while (::waitpid(pid, &st, 0) < 0 && errno == EINTR) {
  }
  r.exit_code = exit_code_of(st);
  return r;
}

int exit_code_of(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 1;
}

Attempt::Attempt(std::string results_dir, Job job, std::string executor, std::string slurm_job)
    : dir_(std::move(results_dir)), executor_(std::move(executor)), slurm_job_(std::move(slurm_job)),
      job_(std::move(job)) {
  if (const auto previous = results::read_job_record(dir_, job_.id)) attempt_ = previous->attempt + 1;
}

void Attempt::begin(pid_t pid) {
  started_ = results::now_utc();
  t0_ = std::chrono::steady_clock::now();
  results::write_running_marker(dir_, {job_.id, results::host_name(), slurm_job_, started_, static_cast<int64_t>(pid)});
}

results::JobRecord Attempt::finish(int exit_code) {
  results::JobRecord r;
  r.id = job_.id;
  r.kind = job_.kind;
  r.label = job_.label;
  r.exit_code = exit_code;
  r.attempt = attempt_;
  r.executor = executor_;
  r.host = results::host_name();
  r.slurm_job = slurm_job_;
  r.started = started_;
  r.finished = results::now_utc();
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
  r.log = "logs/" + job_.id + ".log";
  // A zero exit without the output is a failure too (a job must leave what it promised).
  r.state = exit_code == 0 && fs::exists(fs::path(dir_) / job_.output) ? "done" : "failed";
  if (exit_code == 0 && r.state == "failed") r.exit_code = -1;
  results::write_job_record(dir_, r);
  return r;
}

}  // namespace moelab::schedulers
