#include "schedulers/slurm_executor.h"

#include <sys/stat.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>

#include "core/common/atomic_output.h"
#include "core/common/error.h"
#include "core/common/file_text.h"
#include "results/job_record.h"
#include "results/result_records.h"
#include "schedulers/job_process.h"
#include "schedulers/slurm_queue.h"

#ifndef MOELAB_SLURM_DIR
#define MOELAB_SLURM_DIR "slurm"
#endif

namespace moelab::schedulers {
namespace fs = std::filesystem;
namespace {

// The spec key of a stage's resources.
std::string resource_key(JobKind kind) { return std::string("resources.") + to_string(resource_kind(kind)); }

std::string render(const std::string& tmpl, const std::map<std::string, std::string>& values,
                   const std::string& template_file) {
  std::string out;
  size_t pos = 0;
  while (true) {
    const size_t open = tmpl.find("{{", pos);
    if (open == std::string::npos) break;
    const size_t close = tmpl.find("}}", open);
    if (close == std::string::npos) throw InputError(template_file, "unclosed {{ placeholder");
    const std::string key = tmpl.substr(open + 2, close - open - 2);
    auto it = values.find(key);
    if (it == values.end()) throw InputError(template_file, "unknown placeholder {{" + key + "}}");
    out += tmpl.substr(pos, open - pos) + it->second;
    pos = close + 2;
  }
  return out + tmpl.substr(pos);
}

std::string first_line(const std::string& s) {
  std::string t = s;
  while (!t.empty() && (t.back() == '\n' || t.back() == ' ')) t.pop_back();
  // sbatch prints "sbatch: error: ..." lines; the last one says why.
  const size_t nl = t.rfind('\n');
  return nl == std::string::npos ? t : t.substr(nl + 1);
}

std::string next_submission_dir(const fs::path& slurm_dir) {
  for (int n = 1;; ++n) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "submit-%03d", n);
    if (!fs::exists(slurm_dir / buf)) return buf;
  }
}

std::string quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

}  // namespace

std::string default_slurm_template() { return std::string(MOELAB_SLURM_DIR) + "/array_job.sbatch.in"; }

std::vector<StageSubmission> read_submissions(const std::string& results_dir) {
  std::vector<StageSubmission> out;
  const std::string path = results_dir + "/slurm/submissions.jsonl";
  std::ifstream in(path);
  int line_no = 0;
  for (std::string line; std::getline(in, line);) {
    ++line_no;
    if (line.empty()) continue;
    try {
      const auto j = nlohmann::json::parse(line);
      StageSubmission s;
      const std::string stage = j.at("stage").get<std::string>();
      const auto kind = results::parse_job_kind(stage);
      if (!kind)
        throw InputError(path, "line " + std::to_string(line_no) + ": stage " + not_a_word_of(results::kJobKindWords, stage));
      s.kind = *kind;
      s.array_job = j.at("array_job").get<std::string>();
      s.script = j.value("script", "");
      s.ids = j.at("ids").get<std::vector<std::string>>();
      out.push_back(std::move(s));
    } catch (const nlohmann::json::exception& e) {
      throw InputError(path, "line " + std::to_string(line_no) + ": malformed submission: " + e.what());
    }
  }
  return out;
}

std::map<std::string, std::string> jobs_in_flight(const std::string& results_dir,
                                                  const std::map<std::string, std::string>& queue) {
  std::map<std::string, std::string> out;
  for (const auto& s : read_submissions(results_dir))
    for (size_t t = 0; t < s.ids.size(); ++t) {
      const std::string task = s.array_job + "_" + std::to_string(t);
      auto it = queue.find(task);
      if (it != queue.end() && slurm_state_in_flight(it->second)) out[s.ids[t]] = task;
    }
  return out;
}

SlurmSubmission submit_slurm(const ResultsDir& dir, const SweepSpec& spec, const SlurmOptions& opts,
                             const std::function<void(const std::string&)>& progress) {
  const std::string template_file = opts.template_file.empty() ? default_slurm_template() : opts.template_file;
  const std::string tmpl = read_file_text(template_file, "Slurm batch template");
  const SlurmSettings& ss = opts.settings;

  SlurmSubmission sub;
  std::set<std::string> done;
  for (const auto& [id, r] : results::read_job_records(dir.path()))
    if (r.state == "done") done.insert(id);
  std::map<std::string, std::string> in_flight;  // job id -> "<array>_<task>"
  if (!opts.dry_run && fs::exists(dir.path() + "/slurm/submissions.jsonl")) {
    const auto queue = slurm_queue();
    in_flight = jobs_in_flight(dir.path(), queue);
    if (!in_flight.empty() && !opts.resume)
      throw InputError(dir.path(), std::to_string(in_flight.size()) +
                                       " jobs of this sweep are queued or running in Slurm; wait, scancel them, or "
                                       "pass --resume to submit only what is missing");
    // Queued tasks may wait on a whole earlier array that can no longer succeed (one
    // of its tasks was cancelled or failed): Slurm would drop them later. Cancel them
    // now (they have not started, nothing is lost) and submit them again with the
    // missing jobs; running tasks are kept and waited for, task by task.
    std::vector<std::string> cancel = {"scancel"};
    for (auto it = in_flight.begin(); it != in_flight.end();) {
      if (queue.at(it->second) == "PENDING") {
        cancel.push_back(it->second);
        it = in_flight.erase(it);
      } else {
        ++it;
      }
    }
    if (cancel.size() > 1) {
      const CommandResult r = run_command(cancel);
      if (r.exit_code != 0) throw InputError("scancel", "cannot cancel the queued tasks: " + first_line(r.output));
      progress("cancelled " + std::to_string(cancel.size() - 1) +
               " queued task(s) of earlier submissions; they are submitted again below");
    }
  }
  // The stages' job lists: not done, not in flight.
  std::map<JobKind, std::vector<const Job*>> by_stage;  // in JobKind order: the stages' order
  for (const auto& j : dir.graph().jobs) {
    if (done.count(j.id)) {
      ++sub.done_before;
    } else if (in_flight.count(j.id)) {
      ++sub.in_flight;
    } else {
      by_stage[j.kind].push_back(&j);
    }
  }
  const fs::path slurm_dir = fs::path(dir.path()) / "slurm";
  fs::create_directories(slurm_dir);
  sub.dir = "slurm/" + next_submission_dir(slurm_dir);
  const fs::path sub_dir = fs::path(dir.path()) / sub.dir;
  fs::create_directories(sub_dir);
  // Until the first array is queued, an error removes this submission's folder: a
  // failed submit leaves nothing that looks like one.
  struct RemoveUnlessKept {
    fs::path path;
    bool keep = false;
    ~RemoveUnlessKept() {
      std::error_code ec;
      if (!keep) fs::remove_all(path, ec);
    }
  } guard{sub_dir};

  // Scripts first (all of them), validated, then submitted in stage order.
  const std::string moelab = opts.moelab.empty() ? this_executable() : opts.moelab;
  // Paths go into #SBATCH lines and shell words of the batch script: only characters
  // that need no quoting in either, so no path can change what the script does.
  for (const auto& [what, path] : {std::pair<std::string, std::string>{"results directory", dir.path()},
                                   {"moelab binary", moelab}})
    if (!std::regex_match(path, std::regex(R"(^[A-Za-z0-9_./+,:@%=~-]+$)")))
      throw InputError(path, "the " + what + " path has characters a batch script would need to quote (spaces, "
                                 "quotes, $, ...): use a plain path for Slurm");
  std::vector<StageSubmission> stages;
  for (const auto& [kind, jobs] : by_stage) {
    const std::string stage = to_string(kind);
    const Resources res = jobs.front()->resources;
    std::string jobs_text;
    StageSubmission st;
    st.kind = kind;
    for (const Job* j : jobs) {
      jobs_text += job_to_json(*j).dump() + "\n";
      st.ids.push_back(j->id);
    }
    const fs::path jobs_file = sub_dir / (stage + ".jobs.jsonl");
    write_file_atomic(jobs_file, jobs_text);
    std::string directives;
    if (res.gpus > 0) directives += "#SBATCH --gpus=" + std::to_string(res.gpus) + "\n";
    if (!ss.partition.empty()) directives += "#SBATCH --partition=" + ss.partition + "\n";
    if (!ss.account.empty()) directives += "#SBATCH --account=" + ss.account + "\n";
    for (const auto& a : ss.sbatch_args) directives += "#SBATCH " + a + "\n";
    const std::map<std::string, std::string> values = {
        {"stage", stage},
        {"sweep", dir.name()},
        {"count", std::to_string(jobs.size())},
        {"job_name", "moelab-" + dir.name() + "-" + stage},
        {"last", std::to_string(jobs.size() - 1)},
        {"throttle", ss.throttle > 0 ? "%" + std::to_string(ss.throttle) : ""},
        {"ranks", std::to_string(res.ranks)},
        {"mem", res.mem},
        {"time", res.time},
        {"results", dir.path()},
        {"signal_seconds", std::to_string(ss.signal_seconds)},
        {"directives", directives},
        {"moelab", moelab},
        {"jobs_file", jobs_file.string()},
        {"launcher", ss.launcher},
        {"srun_mpi", ss.srun_mpi}};
    const fs::path script = sub_dir / (stage + ".sbatch");
    write_file_atomic(script, render(tmpl, values, template_file));
    ::chmod(script.c_str(), 0755);
    st.script = (fs::path(sub.dir) / (stage + ".sbatch")).string();
    stages.push_back(std::move(st));
  }
  if (stages.empty()) {
    progress("nothing to submit: " + std::to_string(sub.done_before) + " jobs done, " +
             std::to_string(sub.in_flight) + " running");
    return sub;
  }
  // Dependencies: on this submission's earlier arrays (whole array) and on queued
  // tasks of earlier submissions (that task only).
  std::map<std::string, size_t> stage_of_job;  // job id -> index into stages
  for (size_t s = 0; s < stages.size(); ++s)
    for (const auto& id : stages[s].ids) stage_of_job[id] = s;
  std::vector<std::set<size_t>> needs_stage(stages.size());
  std::vector<std::set<std::string>> needs_task(stages.size());
  for (size_t s = 0; s < stages.size(); ++s)
    for (const auto& id : stages[s].ids)
      for (const auto& d : dir.graph().job(id).deps) {
        if (auto it = stage_of_job.find(d); it != stage_of_job.end()) needs_stage[s].insert(it->second);
        if (auto it = in_flight.find(d); it != in_flight.end()) needs_task[s].insert(it->second);
      }

  std::string submit_sh = "#!/bin/bash\n# The sbatch commands of " + sub.dir + " (moelab submit" +
                          std::string(opts.dry_run ? " --dry-run" : "") + ").\nset -euo pipefail\n";
  for (size_t s = 0; s < stages.size(); ++s) {
    std::string dep_sh;
    for (size_t d : needs_stage[s]) dep_sh += ":${" + stages[d].stage() + "_job}";
    for (const auto& t : needs_task[s]) dep_sh += ":" + t;
    submit_sh += stages[s].stage() + "_job=$(sbatch --parsable" +
                 (dep_sh.empty() ? "" : " --dependency=afterok" + dep_sh) + " " +
                 quote((fs::path(dir.path()) / stages[s].script).string()) + ")\necho \"" + stages[s].stage() +
                 ": ${" + stages[s].stage() + "_job}\"\n";
  }
  write_file_atomic(sub_dir / "submit.sh", submit_sh);
  ::chmod((sub_dir / "submit.sh").c_str(), 0755);

  if (opts.validate || !opts.dry_run) {
    const CommandResult which = run_command({"sbatch", "--version"});
    if (which.exit_code != 0) {
      if (opts.dry_run) {
        progress("sbatch not found: scripts written but not checked against Slurm");
      } else {
        throw InputError("sbatch", "not found: moelab submit needs Slurm (moelab sweep run runs a sweep locally)");
      }
    } else {
      // Slurm checks every stage's request before any is queued: a request the cluster
      // cannot satisfy fails here, naming the spec key, with nothing submitted (and
      // the scripts of this submission removed).
      for (const auto& st : stages) {
        const CommandResult r = run_command({"sbatch", "--test-only", (fs::path(dir.path()) / st.script).string()});
        if (r.exit_code != 0)
          throw InputError(spec.path, resource_key(st.kind) + ": Slurm rejects the request (" + first_line(r.output) + ")");
      }
    }
  }
  if (opts.dry_run) {
    for (const auto& st : stages)
      progress("wrote " + st.script + " (" + std::to_string(st.ids.size()) + " " + st.stage() + " jobs)");
    progress("dry run: nothing submitted; " + sub.dir + "/submit.sh submits these scripts");
    guard.keep = true;
    sub.stages = std::move(stages);
    return sub;
  }

  for (size_t s = 0; s < stages.size(); ++s) {
    std::vector<std::string> cmd = {"sbatch", "--parsable"};
    std::string dep;
    for (size_t d : needs_stage[s]) dep += ":" + stages[d].array_job;
    for (const auto& t : needs_task[s]) dep += ":" + t;
    if (!dep.empty()) cmd.push_back("--dependency=afterok" + dep);
    cmd.push_back((fs::path(dir.path()) / stages[s].script).string());
    const CommandResult r = run_command(cmd);
    std::string id = r.output;
    id = id.substr(0, id.find_first_of(";\n"));
    if (r.exit_code != 0 || id.empty() || id.find_first_not_of("0123456789") != std::string::npos)
      throw InputError(stages[s].script, "sbatch failed: " + first_line(r.output));
    stages[s].array_job = id;
    guard.keep = true;
    if (!dep.empty()) stages[s].dependencies.push_back("afterok" + dep);
    // Log each array as soon as it is queued, so status and resume know it even if a
    // later sbatch fails.
    std::string log;
    const std::string log_path = dir.path() + "/slurm/submissions.jsonl";
    if (fs::exists(log_path)) log = read_file_text(log_path, "submissions log");
    log += nlohmann::json{{"submission", sub.dir},
                          {"stage", stages[s].stage()},
                          {"array_job", id},
                          {"script", stages[s].script},
                          {"dependency", dep.empty() ? "" : "afterok" + dep},
                          {"ids", stages[s].ids},
                          {"time", results::now_utc()}}
               .dump() +
           "\n";
    write_file_atomic(log_path, log);
    progress("submitted " + stages[s].stage() + ": array job " + id + " (" + std::to_string(stages[s].ids.size()) +
             " tasks" + (ss.throttle > 0 ? ", at most " + std::to_string(ss.throttle) + " at once" : "") +
             (dep.empty() ? "" : ", after " + dep.substr(1)) + ")");
  }
  sub.stages = std::move(stages);
  return sub;
}

}  // namespace moelab::schedulers
