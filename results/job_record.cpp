#include "results/job_record.h"

#include <unistd.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "core/common/atomic_output.h"
#include "core/common/error.h"
#include "core/common/json_file.h"

namespace moelab::results {
namespace fs = std::filesystem;
namespace {

fs::path jobs_dir(const std::string& results_dir) { return fs::path(results_dir) / "jobs"; }

template <typename Fn>
void for_each_with_extension(const std::string& results_dir, const std::string& ext, Fn&& fn) {
  std::error_code ec;
  if (!fs::is_directory(jobs_dir(results_dir), ec)) return;
  for (const auto& e : fs::directory_iterator(jobs_dir(results_dir)))
    if (e.is_regular_file() && e.path().extension() == ext) {
      try {
        fn(e.path());
      } catch (const InputError&) {
        if (fs::exists(e.path())) throw;  // else removed while we listed: a job just finished
      }
    }
}

}  // namespace

std::string host_name() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof buf - 1) != 0) return "unknown";
  std::string h(buf);
  return h.substr(0, h.find('.'));
}

void write_job_record(const std::string& results_dir, const JobRecord& r) {
  nlohmann::json j = {{"id", r.id},             {"label", r.label},       {"state", r.state},
                      {"exit_code", r.exit_code}, {"attempt", r.attempt},   {"executor", r.executor},
                      {"host", r.host},           {"slurm_job", r.slurm_job}, {"started", r.started},
                      {"finished", r.finished},   {"seconds", r.seconds},   {"log", r.log}};
  if (r.kind) j["kind"] = to_string(*r.kind);
  fs::create_directories(jobs_dir(results_dir));
  write_file_atomic(jobs_dir(results_dir) / (r.id + ".json"), j.dump(1) + "\n");
  std::error_code ec;
  fs::remove(jobs_dir(results_dir) / (r.id + ".running"), ec);
}

namespace {

JobRecord parse_job_record(const fs::path& p) {
  return read_json_file(p.string(), "job record", [&](const nlohmann::json& j) {
    JobRecord r;
    r.state = j.at("state").get<std::string>();  // first: what a reader of the record needs most
    if (r.state != "done" && r.state != "failed")
      throw InputError(p.string(), "state: \"" + r.state + "\" is not done or failed");
    r.id = j.value("id", p.stem().string());  // the file's name says it too
    if (j.contains("kind")) {
      const std::string kind = j.at("kind").get<std::string>();
      r.kind = parse_job_kind(kind);
      if (!r.kind) throw InputError(p.string(), "kind: " + not_a_word_of(kJobKindWords, kind));
    }
    r.label = j.value("label", "");
    r.exit_code = static_cast<int>(json_integer_or(j, "exit_code", 0));
    r.attempt = json_integer_or(j, "attempt", 1);
    r.executor = j.value("executor", "");
    r.host = j.value("host", "");
    r.slurm_job = j.value("slurm_job", "");
    r.started = j.value("started", "");
    r.finished = j.value("finished", "");
    r.seconds = j.value("seconds", 0.0);
    r.log = j.value("log", "");
    return r;
  });
}

}  // namespace

std::map<std::string, JobRecord> read_job_records(const std::string& results_dir) {
  std::map<std::string, JobRecord> out;
  for_each_with_extension(results_dir, ".json", [&](const fs::path& p) {
    JobRecord r = parse_job_record(p);
    out[r.id] = std::move(r);
  });
  return out;
}

std::optional<JobRecord> read_job_record(const std::string& results_dir, const std::string& id) {
  const fs::path p = jobs_dir(results_dir) / (id + ".json");
  if (!fs::exists(p)) return std::nullopt;
  return parse_job_record(p);
}

void write_running_marker(const std::string& results_dir, const RunningMarker& m) {
  const nlohmann::json j = {
      {"id", m.id}, {"host", m.host}, {"pid", m.pid}, {"slurm_job", m.slurm_job}, {"started", m.started}};
  fs::create_directories(jobs_dir(results_dir));
  write_file_atomic(jobs_dir(results_dir) / (m.id + ".running"), j.dump() + "\n");
}

std::map<std::string, RunningMarker> read_running_markers(const std::string& results_dir) {
  std::map<std::string, RunningMarker> out;
  for_each_with_extension(results_dir, ".running", [&](const fs::path& p) {
    RunningMarker m = read_json_file(p.string(), "running marker", [](const nlohmann::json& j) {
      RunningMarker m;
      m.id = j.at("id").get<std::string>();
      m.host = j.value("host", "");
      m.pid = json_integer_or(j, "pid", 0);
      m.slurm_job = j.value("slurm_job", "");
      m.started = j.value("started", "");
      return m;
    });
    out[m.id] = std::move(m);
  });
  return out;
}

}  // namespace moelab::results
