#include "schedulers/resource_check.h"

#include <algorithm>

#include "core/common/error.h"
#include "core/common/memory_budget.h"
#include "core/models/moe_model.h"
#include "criteria/catalog.h"
#include "results/calibration_stats.h"
#include "schedulers/resource_plan.h"

namespace moelab::schedulers {
namespace {

// The value after `flag` in a job's arguments, or "".
std::string arg_value(const Job& j, const std::string& flag) {
  for (size_t i = 0; i + 1 < j.args.size(); ++i)
    if (j.args[i] == flag) return j.args[i + 1];
  return "";
}

std::vector<std::string> split_commas(const std::string& s) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= s.size() && !s.empty()) {
    const size_t end = s.find(',', start);
    out.push_back(s.substr(start, end == std::string::npos ? std::string::npos : end - start));
    if (end == std::string::npos) break;
    start = end + 1;
  }
  return out;
}

}  // namespace

std::vector<MemoryCheck> check_calibration_memory(const SweepSpec& spec, const JobGraph& graph) {
  std::vector<MemoryCheck> out;
  if (spec.device != "cpu") return out;
  for (const auto& j : graph.jobs) {
    if (j.kind != JobKind::kCalibrate || j.args.size() < 2) continue;
    // A model fine-tuned first (finetune_first) does not exist yet; it has its source's shape.
    std::string model_dir = j.args[1];
    for (const auto& d : j.deps)
      if (const Job& dj = graph.job(d); dj.kind == JobKind::kFinetune && dj.args.size() >= 2) model_dir = dj.args[1];
    const hf::ModelConfig c = models::load_config(model_dir);
    schedulers::ResourceQuery q;
    q.ranks = int(j.resources.ranks);
    // The job's own arguments (job_graph.cpp data_args): what calibrate will be given.
    if (auto v = arg_value(j, "--seq-len"); !v.empty()) q.seq_len = std::stoll(v);
    if (auto v = arg_value(j, "--num-samples"); !v.empty()) q.num_samples = std::stoll(v);
    if (auto v = arg_value(j, "--batch-size"); !v.empty()) q.batch_size = std::stoll(v);
    q.groups = criteria::stat_groups_needed(split_commas(arg_value(j, "--criteria")));
    q.groups.insert(results::stat::kUsage);
    q.layerwise = std::find(j.args.begin(), j.args.end(), "--layerwise") != j.args.end();
    if (auto v = arg_value(j, "--memory-budget"); !v.empty()) q.memory_budget = parse_byte_size("memory_budget", v);
    MemoryCheck m;
    m.job_id = j.id;
    m.label = j.label;
    m.ranks = q.ranks;
    const schedulers::ResourcePlan plan = schedulers::plan_resources(c, q);
    m.per_rank = plan.peak;
    for (const auto& r : plan.ranks) m.planned += r.total();
    m.granted = schedulers::slurm_mem_bytes(j.resources.mem, spec.path + ": resources.calibrate.mem");
    m.layerwise = q.layerwise;
    if (!q.layerwise) {  // what layer by layer would need instead, for the advice
      q.layerwise = true;
      for (const auto& r : schedulers::plan_resources(c, q).ranks) m.planned_layerwise += r.total();
    }
    out.push_back(m);
  }
  return out;
}

void refuse_jobs_over_memory(const SweepSpec& spec, const JobGraph& graph) {
  for (const auto& m : check_calibration_memory(spec, graph)) {
    if (m.fits()) continue;
    const Job& j = graph.job(m.job_id);
    throw InputError(spec.path, "job " + m.job_id + " (" + m.label + ") needs about " + schedulers::format_bytes(m.planned) +
                                    " (" + std::to_string(m.ranks) + " rank(s) x up to " +
                                    schedulers::format_bytes(m.per_rank) + ", moelab plan-resources " + j.args[1] +
                                    " --ranks " + std::to_string(m.ranks) + "), more than resources.calibrate.mem " +
                                    j.resources.mem + " (" + schedulers::format_bytes(m.granted) + "): raise mem" +
                                    (!m.layerwise && m.planned_layerwise <= m.granted
                                         ? ", calibrate layer by layer (calibration set's layerwise: true; about " +
                                               schedulers::format_bytes(m.planned_layerwise) + ")"
                                         : "") +
                                    ", or pass --no-resource-check");
  }
}

}  // namespace moelab::schedulers
