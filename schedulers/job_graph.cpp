#include "schedulers/job_graph.h"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <map>
#include <set>
#include <sstream>

#include "core/common/error.h"
#include "core/common/json_integer.h"
#include "criteria/catalog.h"
#include "results/stat_groups.h"

namespace moelab::schedulers {
namespace {

std::string num(double v) {
  std::ostringstream o;
  o << v;
  return o.str();
}

bool needs_data(const std::string& criterion) {
  for (const auto& need : criteria::find_criterion(criterion).needs)
    if (need != criteria::kNeedsWeights && need != criteria::kNeedsSecondCheckpoint) return true;
  return false;
}

std::map<std::string, std::string> point_tags(const GridPoint& p) {
  return {{"model", p.model},         {"calibration", p.calibration}, {"criterion", p.criterion_tag()},
          {"ratio", num(p.ratio)},     {"procedure", to_string(p.procedure)},     {"recovery", p.recovery.label()},
          {"seed", std::to_string(p.seed)}};
}

std::string replace_all(std::string s, const std::string& from, const std::string& to) {
  for (size_t p = s.find(from); p != std::string::npos; p = s.find(from, p + to.size())) s.replace(p, from.size(), to);
  return s;
}

class Builder {
 public:
  explicit Builder(const SweepSpec& s) : s_(s) {}

  // Adds the job unless an identical one exists; returns its id.
  std::string add(Job j) {
    // score reads weights only, compress writes vectors of ones: both on the CPU.
    if (s_.device != "cpu" && j.kind != JobKind::kScore && !(j.args.size() > 0 && j.args[0] == "compress")) {
      j.args.push_back("--device");
      j.args.push_back(s_.device);
    }
    std::string key = to_string(j.kind);  // hashed into the id as the word: ids stay as before
    for (const auto& a : j.args) key += '\x1f' + a;
    for (const auto& d : j.deps) key += '\x1e' + d;
    j.id = stable_hash(key);
    if (auto it = index_.find(j.id); it != index_.end()) return j.id;
    for (auto& a : j.args) a = replace_all(a, "{id}", j.id);
    j.output = replace_all(j.output, "{id}", j.id);
    j.resources = s_.resources_for(j.kind);
    index_[j.id] = graph_.jobs.size();
    graph_.jobs.push_back(std::move(j));
    return graph_.jobs.back().id;
  }
  const Job& get(const std::string& id) const { return graph_.jobs[index_.at(id)]; }
  JobGraph take() { return std::move(graph_); }

 private:
  const SweepSpec& s_;
  JobGraph graph_;
  std::map<std::string, size_t> index_;
};

std::vector<std::string> data_args(const CalibrationSpecEntry& c) {
  std::vector<std::string> a;
  for (const auto& f : c.data) {
    a.push_back("--data");
    a.push_back(f);
  }
  for (const auto& [k, v] : std::vector<std::pair<std::string, std::string>>{
           {"--seq-len", std::to_string(c.seq_len)},
           {"--num-samples", std::to_string(c.num_samples)},
           {"--seed", std::to_string(c.seed)}}) {
    a.push_back(k);
    a.push_back(v);
  }
  return a;
}

}  // namespace

int64_t calibration_checkpoint_every(const CalibrationSpecEntry& c, int64_t ranks) {
  if (c.checkpoint_every) return *c.checkpoint_every;
  if (c.num_samples == 0) return 8;  // all of the data: its size is not known here
  // calibrate's default batch of 8 sequences, one batch per rank per step.
  const int64_t steps = ((c.num_samples + 7) / 8 + ranks - 1) / std::max<int64_t>(ranks, 1);
  return std::max<int64_t>(1, steps / 10);
}

nlohmann::json graph_to_json(const JobGraph& g) {
  nlohmann::json jobs = nlohmann::json::array();
  for (const auto& j : g.jobs) jobs.push_back(job_to_json(j));
  return jobs;
}

JobGraph graph_from_json(const nlohmann::json& j, const std::string& source) {
  if (!j.is_array()) throw InputError(source, "malformed job graph: expected a list of jobs");
  JobGraph g;
  for (const auto& x : j) g.jobs.push_back(job_from_json(x, source));
  return g;
}

std::vector<std::string> job_arguments(const Job& j, const std::string& results_dir) {
  std::vector<std::string> out;
  for (const auto& a : j.args) out.push_back(replace_all(a, "{out}", results_dir));
  return out;
}

std::string stable_hash(const std::string& text) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : text) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

const Job& JobGraph::job(const std::string& id) const {
  for (const auto& j : jobs)
    if (j.id == id) return j;
  throw std::out_of_range("no job " + id);
}

int64_t JobGraph::count(JobKind kind) const {
  int64_t n = 0;
  for (const auto& j : jobs) n += j.kind == kind;
  return n;
}

// `moelab finetune MODEL ...` with a recovery's settings; resumable (a requeued task goes on
// from its last checkpoint).
std::vector<std::string> finetune_args(const std::string& model, const Recovery& r, uint64_t seed) {
  std::vector<std::string> a = {"finetune", model};
  for (const auto& f : r.data) a.insert(a.end(), {"--data", f});
  if (!r.sft.empty()) a.insert(a.end(), {"--sft", r.sft});
  a.insert(a.end(), {"--seq-len", std::to_string(r.seq_len), "--steps", std::to_string(r.steps), "--lr", num(r.lr),
                     "--batch-size", std::to_string(r.batch_size), "--params", r.params, "--seed",
                     std::to_string(seed), "--checkpoint-dir", "{out}/finetune/{id}.ckpt", "--checkpoint-every",
                     std::to_string(std::max<int64_t>(1, r.steps / 4)), "--auto-resume", "--out",
                     "{out}/finetune/{id}", "--overwrite"});
  return a;
}

JobGraph build_job_graph(const SweepSpec& s) {
  const std::vector<GridPoint> grid = expand_grid(s);
  Builder b(s);
  // finetune_first: each model is fine-tuned once and every job after it (calibration,
  // scoring, pruning, the unpruned baseline's evaluation) starts from the fine-tuned one;
  // RouterNormChange scores it against the model as given.
  std::map<std::string, std::string> first_ft;  // model -> its fine-tuning job
  if (s.finetune_first.kind == RecoveryKind::kFinetune)
    for (const auto& m : s.models) {
      Job ft;
      ft.kind = JobKind::kFinetune;
      ft.label = "finetune first " + s.finetune_first.label() + " " + m;
      ft.args = finetune_args(m, s.finetune_first, s.seeds.empty() ? 0 : s.seeds.front());
      ft.output = "finetune/{id}";
      ft.tags = {{"model", m}, {"criterion", "none"}, {"ratio", "0"}, {"procedure", "none"}, {"recovery", "none"},
                 {"stage", "finetune_first"}};
      first_ft[m] = b.add(std::move(ft));
    }
  auto model_path = [&](const std::string& m) {
    auto it = first_ft.find(m);
    return it == first_ft.end() ? m : "{out}/" + b.get(it->second).output;
  };
  auto model_deps = [&](const std::string& m) {
    auto it = first_ft.find(m);
    return it == first_ft.end() ? std::vector<std::string>{} : std::vector<std::string>{it->second};
  };
  // Statistics each (model, calibration set) must serve: the data criteria of its one-shot points.
  std::map<std::pair<std::string, std::string>, std::set<std::string>> calib_criteria;
  for (const auto& p : grid)
    if (results::chosen_from_scores(p.procedure) && needs_data(p.criterion.name))
      calib_criteria[{p.model, p.calibration}].insert(p.criterion.name);
  // Super-expert protection reads the point's statistics; a weight criterion's point (no
  // calibration set of its own) those of the sweep's first set.
  auto protect_calibration = [&](const GridPoint& p) {
    return p.calibration.empty() ? s.calibration.at(0).name : p.calibration;
  };
  // (model, calibration set) -> groups its calibration adds for them (out_max, out_moments).
  std::map<std::pair<std::string, std::string>, std::set<std::string>> extra_groups;
  for (const auto& p : grid) {
    if (p.protect_super_experts) extra_groups[{p.model, protect_calibration(p)}].insert(results::stat::kOutMax);
    if (p.substitute_novices) extra_groups[{p.model, protect_calibration(p)}].insert(results::stat::kOutMoments);
  }
  for (const auto& [key, groups] : extra_groups) calib_criteria[key];

  std::map<std::pair<std::string, std::string>, std::string> calibrate_job;
  for (const auto& [key, crits] : calib_criteria) {
    Job j;
    j.kind = JobKind::kCalibrate;
    std::string list;
    for (const auto& c : crits) list += (list.empty() ? "" : ",") + c;
    j.label = "calibrate " + key.second + " for " + (list.empty() ? "super experts" : list);
    j.args = {"calibrate", model_path(key.first)};
    j.deps = model_deps(key.first);
    for (const auto& a : data_args(s.calibration_set(key.second))) j.args.push_back(a);
    // Usage alone (always collected) when only the super experts are wanted.
    j.args.insert(j.args.end(), {"--criteria", list.empty() ? "EUF" : list});
    if (extra_groups.count(key)) {
      std::string groups;
      for (const auto& g : extra_groups.at(key)) groups += (groups.empty() ? "" : ",") + g;
      j.args.insert(j.args.end(), {"--collect", groups});
    }
    const CalibrationSpecEntry& cal = s.calibration_set(key.second);
    // Groups that are not one-pass sums can be neither checkpointed nor collected layer
    // by layer.
    const results::StatGroup* whole_model = results::first_whole_model_group(
        criteria::stat_groups_needed(crits.empty() ? std::vector<std::string>{"EUF"}
                                                   : std::vector<std::string>(crits.begin(), crits.end())));
    const std::string multi_pass = whole_model ? whole_model->name : "";
    if (cal.layerwise) {
      if (!multi_pass.empty())
        throw InputError(s.path, "calibration set \"" + cal.name + "\" is layerwise, but criteria " + list +
                                     " need statistic group \"" + multi_pass +
                                     "\", which needs the whole model: calibrate them with another set");
      j.args.push_back("--layerwise");
      if (!cal.memory_budget.empty()) j.args.insert(j.args.end(), {"--memory-budget", cal.memory_budget});
    }
    const int64_t every = calibration_checkpoint_every(cal, s.resources_for(JobKind::kCalibrate).ranks);
    // Resumable: a requeued Slurm task (time limit, preemption) continues from the last
    // checkpoint, which lies beside the output and survives the output's removal.
    if (every > 0 && multi_pass.empty())
      j.args.insert(j.args.end(), {"--checkpoint-every", std::to_string(every), "--checkpoint-dir",
                                   "{out}/calibrate/{id}.h5.ckpt"});
    j.args.insert(j.args.end(), {"--out", "{out}/calibrate/{id}.h5", "--overwrite"});
    j.output = "calibrate/{id}.h5";
    calibrate_job[key] = b.add(std::move(j));
  }

  // Scores: per (model, calibration or none, seed), every criterion that can be scored there.
  std::set<std::string> all_criteria;
  for (const auto& p : grid) all_criteria.insert(p.criterion.name);
  std::map<std::tuple<std::string, std::string, uint64_t>, std::string> score_job;
  auto scores_for = [&](const GridPoint& p) {
    // Weight criteria ride along with a scoring job that exists anyway (the model's
    // first calibration set), else get one without statistics.
    std::string cal = needs_data(p.criterion.name) ? p.calibration : "";
    if (cal.empty())
      for (const auto& [key, crits] : calib_criteria)
        if (key.first == p.model) {
          cal = key.second;
          break;
        }
    auto key = std::make_tuple(p.model, cal, p.seed);
    if (auto it = score_job.find(key); it != score_job.end()) return it->second;
    Job j;
    j.kind = JobKind::kScore;
    std::string list;
    std::vector<std::string> crits;
    j.deps = model_deps(p.model);
    if (!cal.empty()) {
      const std::string calib = calibrate_job.at({p.model, cal});
      j.deps.push_back(calib);
      for (const auto& c : calib_criteria.at({p.model, cal})) crits.push_back(c);
    }
    for (const auto& c : all_criteria)
      if (!needs_data(c)) crits.push_back(c);
    for (const auto& c : crits) list += (list.empty() ? "" : ",") + c;
    j.label = "score " + list + (cal.empty() ? "" : " on " + cal);
    j.args = {"score", "--model", model_path(p.model)};
    if (!cal.empty()) j.args.insert(j.args.end(), {"--stats", "{out}/" + b.get(j.deps.back()).output});
    if (std::find(crits.begin(), crits.end(), "RouterNormChange") != crits.end())
      j.args.insert(j.args.end(), {"--second-model", p.model});  // the model before finetune_first
    j.args.insert(j.args.end(), {"--criteria", list, "--seed", std::to_string(p.seed), "--out", "{out}/score/{id}.json"});
    j.output = "score/{id}.json";
    return score_job[key] = b.add(std::move(j));
  };

  // Evaluations: one per (final model, in-context shots); the unpruned models once per
  // shots setting of the sweep (the baseline of each recovery row).
  struct EvalTarget {
    std::string dep, model;  // dep: the job that wrote the model ("" for an unpruned one)
    int64_t shots;
    std::map<std::string, std::string> tags;
  };
  std::set<std::pair<std::string, int64_t>> evaluated;
  std::vector<EvalTarget> to_eval;
  std::set<int64_t> kshots;
  for (const auto& r : s.recovery)
    if (r.kind == RecoveryKind::kKshot) kshots.insert(r.shots);
  for (const auto& m : s.models) {
    const std::map<std::string, std::string> base = {
        {"model", m}, {"criterion", "none"}, {"ratio", "0"}, {"procedure", "none"}, {"recovery", "none"}};
    const std::string dep = first_ft.count(m) ? first_ft.at(m) : "";
    to_eval.push_back({dep, model_path(m), s.eval.num_fewshot, base});
    for (int64_t k : kshots) {
      auto tags = base;
      tags["recovery"] = "kshot-" + std::to_string(k);
      to_eval.push_back({dep, model_path(m), k, tags});
    }
  }
  // After the job that wrote a point's model: its recovery fine-tuning (if any), then its
  // evaluation target (once per final model and shots setting). `tags`: the point's.
  auto recover_and_evaluate = [&](const std::string& model_job, const Recovery& rec, uint64_t seed,
                                  const std::map<std::string, std::string>& tags) {
    std::string final_id = model_job;
    if (rec.kind == RecoveryKind::kFinetune || rec.kind == RecoveryKind::kRouterKd) {
      Job ft;
      ft.kind = JobKind::kFinetune;
      ft.label = "finetune " + rec.label() + " after " + b.get(model_job).label;
      ft.deps = {model_job};
      ft.args = finetune_args("{out}/" + b.get(model_job).output, rec, seed);
      if (rec.kind == RecoveryKind::kRouterKd)  // the teacher: the model the point pruned (after finetune_first)
        ft.args.insert(ft.args.end() - 3, {"--teacher", model_path(tags.at("model")), "--kd-temperature",
                                           num(rec.temperature)});
      ft.output = "finetune/{id}";
      ft.tags = tags;
      final_id = b.add(std::move(ft));
    }
    const int64_t shots = rec.kind == RecoveryKind::kKshot ? rec.shots : s.eval.num_fewshot;
    if (evaluated.insert({final_id, shots}).second)
      to_eval.push_back({final_id, "{out}/" + b.get(final_id).output, shots, tags});
  };
  for (const auto& p : grid) {
    Job pr;
    pr.kind = JobKind::kPrune;
    pr.label = "prune " + p.criterion_tag() + " r=" + num(p.ratio) + " " + to_string(p.procedure);
    pr.args = {"prune", model_path(p.model), "--criterion", p.criterion.name, "--direction", to_string(p.criterion.direction), "--ratio",
               num(p.ratio)};
    pr.deps = model_deps(p.model);
    if (results::chosen_from_scores(p.procedure)) {
      const std::string sc = scores_for(p);
      pr.deps.push_back(sc);
      pr.args.insert(pr.args.end(), {"--scores", "{out}/" + b.get(sc).output});
      if (p.procedure == Procedure::kSearched) {  // the per-layer counts searched on held-out text, resumable
        const BudgetSearchSpec& bs = s.budget_search;
        pr.args.insert(pr.args.end(), {"--search-budget", std::to_string(bs.budget)});
        for (const auto& f : bs.data) pr.args.insert(pr.args.end(), {"--search-data", f});
        pr.args.insert(pr.args.end(), {"--search-seq-len", std::to_string(bs.seq_len), "--search-samples",
                                       std::to_string(bs.num_samples), "--search-max-move", std::to_string(bs.max_move),
                                       "--search-seed", std::to_string(p.seed), "--search-state",
                                       "{out}/prune/{id}.search.jsonl"});
      }
      if (p.protect_super_experts) {
        const std::string calib = calibrate_job.at({p.model, protect_calibration(p)});
        pr.deps.push_back(calib);
        pr.args.insert(pr.args.end(), {"--protect-super-experts", "--stats", "{out}/" + b.get(calib).output});
      }
      if (p.substitute_novices) {
        const std::string calib = calibrate_job.at({p.model, protect_calibration(p)});
        if (std::find(pr.deps.begin(), pr.deps.end(), calib) == pr.deps.end()) pr.deps.push_back(calib);
        pr.args.insert(pr.args.end(), {"--substitute", "novices"});
        if (!p.protect_super_experts) pr.args.insert(pr.args.end(), {"--stats", "{out}/" + b.get(calib).output});
      }
    } else {
      pr.args.insert(pr.args.end(), {"--procedure", to_string(p.procedure)});
      for (const auto& a : data_args(s.calibration_set(p.calibration))) pr.args.push_back(a);
      if (p.procedure == Procedure::kLottery) {
        const auto& text = s.lottery.data.empty() ? s.calibration_set(p.calibration).data : s.lottery.data;
        for (const auto& f : text) pr.args.insert(pr.args.end(), {"--finetune-data", f});
        pr.args.insert(pr.args.end(), {"--lottery-start-tokens", std::to_string(s.lottery.start_tokens),
                                       "--finetune-lr", num(s.lottery.lr), "--finetune-seq-len",
                                       std::to_string(s.lottery.seq_len)});
      }
    }
    pr.args.insert(pr.args.end(), {"--plan-out", "{out}/prune/{id}.plan.json", "--out", "{out}/prune/{id}", "--overwrite"});
    pr.output = "prune/{id}";
    pr.tags = point_tags(p);
    pr.tags["recovery"] = "none";
    recover_and_evaluate(b.add(std::move(pr)), p.recovery, p.seed, point_tags(p));
  }
  // Compressed experts: one compress job per (model, main count), shared by the recovery
  // settings after it; tagged as a criterion of their own at ratio 0 (no expert removed).
  for (const auto& m : s.models)
    for (int64_t main : s.compressed_experts.main)
      for (const auto& rec : s.recovery)
        for (uint64_t seed : s.seeds) {
          const std::string variant = s.compressed_experts.variant;
          std::map<std::string, std::string> tags = {
              {"model", m},           {"calibration", ""},          {"criterion", compressed_label(main)},
              {"ratio", "0"},         {"procedure", "compress"},     {"recovery", "none"},
              {"seed", std::to_string(seed)}};
          Job c;
          c.kind = JobKind::kPrune;
          c.label = "compress main " + std::to_string(main) + " (" + variant + ")";
          c.args = {"compress", model_path(m), "--main", std::to_string(main), "--variant", variant,
                    "--out", "{out}/prune/{id}", "--overwrite"};
          c.deps = model_deps(m);
          c.output = "prune/{id}";
          c.tags = tags;
          c.tags.erase("seed");  // one compress job for every seed: compression draws nothing
          const std::string compress_id = b.add(std::move(c));
          tags["recovery"] = rec.label();
          recover_and_evaluate(compress_id, rec, seed, tags);
        }
  if (!s.eval.perplexity.empty() || !s.eval.tasks.empty())
    for (const auto& t : to_eval) {
      Job ev;
      ev.kind = JobKind::kEval;
      const std::string shots_note = t.tags.at("recovery").rfind("kshot-", 0) == 0 ? " " + t.tags.at("recovery") : "";
      ev.label = "eval " + (t.dep.empty() ? "unpruned " + t.model : b.get(t.dep).label) + shots_note;
      if (!t.dep.empty()) ev.deps = {t.dep};
      ev.args = {"eval", t.model};
      // In-context examples change task scores only: perplexity comes from the shots-free evaluation.
      if (shots_note.empty())
        for (const auto& [domain, file] : s.eval.perplexity) ev.args.insert(ev.args.end(), {"--data", domain + ":" + file});
      for (const auto& task : s.eval.tasks) ev.args.insert(ev.args.end(), {"--task", task});
      ev.args.insert(ev.args.end(), {"--max-length", std::to_string(s.eval.max_length), "--results",
                                     "{out}/eval/{id}.jsonl"});
      if (!s.eval.tasks.empty()) ev.args.insert(ev.args.end(), {"--num-fewshot", std::to_string(t.shots)});
      if (s.eval.layerwise) {
        ev.args.push_back("--layerwise");
        if (!s.eval.memory_budget.empty()) ev.args.insert(ev.args.end(), {"--memory-budget", s.eval.memory_budget});
      }
      ev.output = "eval/{id}.jsonl";
      ev.tags = t.tags;
      b.add(std::move(ev));
    }
  // lm-evaluation-harness tasks: one `moelab lm-eval` job per evaluated model (a job of
  // kind eval, so that executors, status and reports treat it as one). It starts its
  // own ranks (job_command does not wrap it in mpirun).
  if (const LmEvalSpec& le = s.eval.lm_eval; !le.tasks.empty())
    for (const auto& t : to_eval) {
      Job ev;
      ev.kind = JobKind::kEval;
      const bool kshot = t.tags.at("recovery").rfind("kshot-", 0) == 0;
      const std::string shots_note = kshot ? " " + t.tags.at("recovery") : "";
      ev.label = "lm-eval " + (t.dep.empty() ? "unpruned " + t.model : b.get(t.dep).label) + shots_note;
      if (!t.dep.empty()) ev.deps = {t.dep};
      ev.args = {"lm-eval", t.model};
      for (const auto& task : le.tasks) ev.args.insert(ev.args.end(), {"--task", task});
      if (!le.include_path.empty()) ev.args.insert(ev.args.end(), {"--include-path", le.include_path});
      const int64_t shots = kshot ? t.shots : le.num_fewshot;
      if (shots >= 0) ev.args.insert(ev.args.end(), {"--num-fewshot", std::to_string(shots)});
      if (le.limit > 0) ev.args.insert(ev.args.end(), {"--limit", num(le.limit)});
      if (le.apply_chat_template) ev.args.push_back("--apply-chat-template");
      ev.args.insert(ev.args.end(), {"--ranks", std::to_string(s.resources_for(JobKind::kEval).ranks), "--batch-size",
                                     std::to_string(le.batch_size), "--results", "{out}/eval/{id}.jsonl"});
      ev.output = "eval/{id}.jsonl";
      ev.tags = t.tags;
      b.add(std::move(ev));
    }
  return b.take();
}

}  // namespace moelab::schedulers
