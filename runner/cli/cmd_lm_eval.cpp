// moelab lm-eval: lm-evaluation-harness's tasks on moelab's runtime, results as moelab
// records. Runs lm-eval's own command line (runner/lm_eval_backend/run_lm_eval.py) with
// `--model moelab` (each request batch goes back to this binary, `--ranks P` included),
// then turns lm-eval's results file into one record per task (kind "lm_eval",
// results/lm_eval_records.h) appended to --results. It is the sweeps' eval.lm_eval job.
//
// Not relaunched under mpirun by --ranks (main.cpp): it is one Python process, and the
// backend starts `moelab --ranks P eval|generate` for every request batch.
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <iostream>

#include "core/common/error.h"
#include "core/common/log.h"
#include "results/lm_eval_records.h"
#include "results/result_records.h"
#include "runner/cli/commands.h"
#include "runner/cli/common_options.h"
#include "schedulers/job_process.h"

#ifndef MOELAB_VERSION
#define MOELAB_VERSION "0.1.0"
#endif
#ifndef MOELAB_LM_EVAL_RUNNER
#define MOELAB_LM_EVAL_RUNNER "runner/lm_eval_backend/run_lm_eval.py"
#endif

namespace moelab::cli {
namespace {
namespace fs = std::filesystem;

struct LmEvalArgs {
  std::string model, include_path, results, dtype, output_path, device = "cpu";
  std::vector<std::string> tasks;
  int64_t num_fewshot = -1, batch_size = 8, max_length = 0, ranks = 1;
  double limit = 0;
  bool apply_chat_template = false;
};

std::string env_or(const char* name, const std::string& fallback) {
  const char* v = std::getenv(name);
  return v && *v ? v : fallback;
}

std::string number_text(double v) {
  std::string s = std::to_string(v);
  while (!s.empty() && s.back() == '0') s.pop_back();
  if (!s.empty() && s.back() == '.') s.pop_back();
  return s;
}

// Runs `cmd`; its stdout goes to ours, its stderr to ours as it comes, the last lines
// kept for the error message. Returns the exit status (128 + signal when killed).
int run_passing_through(const std::vector<std::string>& cmd, std::deque<std::string>& tail) {
  int pipefd[2];
  if (::pipe2(pipefd, O_CLOEXEC) != 0) throw InputError("moelab lm-eval", std::string("pipe: ") + std::strerror(errno));
  std::cout << std::flush;
  const pid_t pid = ::fork();
  if (pid < 0) throw InputError("moelab lm-eval", std::string("cannot start python: ") + std::strerror(errno));
  if (pid == 0) {
    ::dup2(pipefd[1], STDERR_FILENO);
    std::vector<char*> argv;
    for (const auto& c : cmd) argv.push_back(const_cast<char*>(c.c_str()));
    argv.push_back(nullptr);
    ::execvp(argv[0], argv.data());
    std::fprintf(stderr, "error: cannot run %s: %s\n", argv[0], std::strerror(errno));
    ::_exit(127);
  }
  ::close(pipefd[1]);
  std::string partial;
  char buf[4096];
  for (;;) {
    const ssize_t n = ::read(pipefd[0], buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    std::cerr.write(buf, n);
    partial.append(buf, static_cast<size_t>(n));
    size_t nl;
    while ((nl = partial.find_first_of("\n\r")) != std::string::npos) {
      if (nl > 0) tail.push_back(partial.substr(0, nl));
      if (tail.size() > 40) tail.pop_front();
      partial.erase(0, nl + 1);
    }
  }
  if (!partial.empty()) tail.push_back(partial);
  ::close(pipefd[0]);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

// The line of lm-eval's (or moelab's) stderr that says what went wrong.
std::string failure_line(const std::deque<std::string>& tail) {
  for (auto it = tail.rbegin(); it != tail.rend(); ++it) {
    const std::string& l = *it;
    if (l.rfind("error:", 0) == 0 || l.find("Error:") != std::string::npos || l.find("Error(") != std::string::npos)
      return l;
  }
  return tail.empty() ? "no output" : tail.back();
}

class TempDir {
 public:
  TempDir() {
    std::string templ = (fs::temp_directory_path() / "moelab-lm-eval-XXXXXX").string();
    if (::mkdtemp(templ.data()) == nullptr) throw InputError(templ, "cannot create a temporary folder");
    path_ = templ;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

void run_lm_eval(const LmEvalArgs& a) {
  if (!fs::is_regular_file(fs::path(a.model) / "config.json"))
    throw InputError(a.model, "not a model directory (no config.json)");
  if (a.tasks.empty()) throw InputError("--task", "give at least one lm-eval task (repeatable, or a,b,c)");
  if (!a.include_path.empty() && !fs::is_directory(a.include_path))
    throw InputError(a.include_path, "--include-path: no such folder");
  if (fs::exists(a.results)) (void)results::read_records(a.results);  // refuse a bad store before an hour of work
  const std::string runner = env_or("MOELAB_LM_EVAL_RUNNER", MOELAB_LM_EVAL_RUNNER);
  if (!fs::is_regular_file(runner))
    throw InputError(runner, "the lm-eval runner is missing (set MOELAB_LM_EVAL_RUNNER to run_lm_eval.py)");

  TempDir tmp;
  const std::string out_dir = a.output_path.empty() ? tmp.path() + "/out" : a.output_path;
  std::string tasks;
  for (const auto& t : a.tasks) tasks += (tasks.empty() ? "" : ",") + t;
  const std::string model_abs = fs::absolute(a.model).lexically_normal().string();
  // The batch size goes as lm-eval's own --batch_size, which it hands to the model type.
  std::string model_args = "pretrained=" + model_abs + ",moelab=" + schedulers::this_executable() + ",ranks=" + std::to_string(a.ranks);
  if (a.max_length > 0) model_args += ",max_length=" + std::to_string(a.max_length);
  if (!a.dtype.empty()) model_args += ",dtype=" + a.dtype;
  if (a.device != "cpu") model_args += ",compute_device=" + a.device;
  std::vector<std::string> cmd = {env_or("MOELAB_PYTHON", "python3"), runner, "--model", "moelab", "--model_args",
                                  model_args, "--tasks", tasks, "--output_path", out_dir, "--batch_size",
                                  std::to_string(a.batch_size)};
  if (!a.include_path.empty()) cmd.insert(cmd.end(), {"--include_path", fs::absolute(a.include_path).string()});
  if (a.num_fewshot >= 0) cmd.insert(cmd.end(), {"--num_fewshot", std::to_string(a.num_fewshot)});
  if (a.limit > 0) cmd.insert(cmd.end(), {"--limit", number_text(a.limit)});
  if (a.apply_chat_template) cmd.push_back("--apply_chat_template");
  // Offline unless the user chose otherwise: tasks read local files or the datasets cache.
  ::setenv("HF_DATASETS_OFFLINE", env_or("HF_DATASETS_OFFLINE", "1").c_str(), 1);
  ::setenv("HF_HUB_OFFLINE", env_or("HF_HUB_OFFLINE", "1").c_str(), 1);

  spdlog::info("lm-eval {} on {} (ranks {})", tasks, a.model, a.ranks);
  std::deque<std::string> tail;
  const int rc = run_passing_through(cmd, tail);
  if (rc != 0) throw InputError("lm-eval", "failed (exit " + std::to_string(rc) + "): " + failure_line(tail));

  fs::path newest;
  fs::file_time_type newest_time{};
  for (const auto& e : fs::recursive_directory_iterator(out_dir)) {
    const std::string n = e.path().filename().string();
    if (e.is_regular_file() && n.rfind("results_", 0) == 0 && e.path().extension() == ".json" &&
        (newest.empty() || e.last_write_time() > newest_time)) {
      newest = e.path();
      newest_time = e.last_write_time();
    }
  }
  if (newest.empty()) throw InputError(out_dir, "lm-eval wrote no results_*.json");
  std::ifstream in(newest, std::ios::binary);
  nlohmann::ordered_json j;
  try {
    j = nlohmann::ordered_json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw InputError(newest.string(), std::string("not JSON: ") + e.what());
  }
  nlohmann::json settings = {{"dtype", a.dtype.empty() ? "auto" : a.dtype},
                             {"device", a.device},
                             {"backend", "moelab"},
                             {"batch_size", a.batch_size},
                             {"max_length", a.max_length > 0 ? nlohmann::json(a.max_length) : nlohmann::json(nullptr)},
                             {"apply_chat_template", a.apply_chat_template},
                             {"include_path", a.include_path}};
  auto recs = results::lm_eval_records(j, newest.string(), a.model, settings, a.ranks);
  const std::string now = results::now_utc();
  for (auto& r : recs) {
    r.moelab_version = MOELAB_VERSION;
    r.timestamp = now;
  }
  results::append_records(a.results, recs);
  spdlog::info("appended {} record(s) to {}", recs.size(), a.results);
}

}  // namespace

void add_lm_eval_command(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "lm-eval",
      "lm-evaluation-harness tasks on moelab's runtime: runs lm-eval with `--model moelab`\n"
      "(runner/lm_eval_backend; lm-eval builds the requests, prompts, few-shot examples, filters and\n"
      "metrics, this binary scores and generates) and appends one record per task (kind lm_eval:\n"
      "lm-eval's metrics, results/results_format.md) to --results. Needs python3 with lm-eval\n"
      "(scripts/setup.sh installs the pinned version; $MOELAB_PYTHON picks another interpreter).\n"
      "Offline unless HF_DATASETS_OFFLINE / HF_HUB_OFFLINE say otherwise: tasks read local files\n"
      "(task YAMLs in --include-path) or the Hugging Face datasets cache.\n\n"
      "Examples:\n"
      "  moelab lm-eval models/debian-moe --include-path configs/tasks/lm_eval --task debian_moe_en --results results.jsonl\n"
      "  moelab lm-eval models/debian-moe --ranks 2 --include-path configs/tasks/lm_eval --task debian_moe --num-fewshot 2 --results results.jsonl\n"
      "  moelab lm-eval $PRUNED --task arc_easy,hellaswag --num-fewshot 5 --limit 200 --results results.jsonl  # cached datasets");
  auto a = std::make_shared<LmEvalArgs>();
  cmd->add_option("model", a->model, "model directory (Hugging Face layout)")->required();
  cmd->add_option("--task", a->tasks, "lm-eval task or group name (repeatable, or comma-separated)")
      ->required()
      ->delimiter(',');
  cmd->add_option("--include-path", a->include_path, "folder of extra lm-eval task YAMLs (lm-eval's --include_path)");
  cmd->add_option("--num-fewshot", a->num_fewshot, "in-context examples (default: each task's own)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--limit", a->limit, "items per task: a count (>= 1) or a fraction (< 1), as lm-eval's --limit")
      ->check(CLI::PositiveNumber);
  cmd->add_flag("--apply-chat-template", a->apply_chat_template, "format prompts with the model's chat template");
  cmd->add_option("--ranks", a->ranks, "MPI ranks each request batch runs on (experts split over them)")
      ->check(CLI::Range(1, 4096));
  add_batch_size_option(cmd, &a->batch_size, "sequences per forward pass");
  cmd->add_option("--max-length", a->max_length,
                  "context length (default: the model's max_position_embeddings, as lm-eval's HF backend)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--dtype", a->dtype, "compute dtype (moelab's --dtype; default auto: float32 on CPU)");
  cmd->add_option("--device", a->device, "where moelab computes: cpu, cuda, cuda:N (moelab's --device)");
  cmd->add_option("--results", a->results, "append one record per task to this JSON-lines file")->required();
  cmd->add_option("--output-path", a->output_path,
                  "also keep lm-eval's own output (results file; its --output_path) in this folder");
  cmd->callback([a] { run_lm_eval(*a); });
}

}  // namespace moelab::cli
