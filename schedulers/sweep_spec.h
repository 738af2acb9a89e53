// A sweep: the grid of experiments of a paper table, as one YAML file (configs/).
//
//   name: table2
//   model: models/tiny                  # or a list
//   calibration:                        # one or more calibration sets
//     - {name: c4, data: [data/c4.jsonl], seq_len: 512, num_samples: 64, seed: 0}
//       # checkpoint_every: 8           # batches between calibration checkpoints (0: off)
//       # layerwise: true               # one decoder layer at a time (models bigger than mem)
//       # memory_budget: 8G             # with layerwise: calibrate --memory-budget
//   criteria: [EAN, Max-RWN, {name: REAP, direction: min}]   # Min-X by default
//   ratios: [0.25, 0.5]                 # or {from: 0.125, to: 0.5, step: 0.125}
//   procedures: [one-shot, iterative]   # one-shot | searched | iterative | lottery
//   recovery: [none, {kshot: 5}, {finetune: {steps: 100, lr: 1.0e-5, data: [data/c4.jsonl]}},
//              {finetune: {steps: 50, sft: data/task_train.jsonl}}]   # SFT: loss on answers
//   seeds: [0]
//   exclude: [{criterion: EAN, ratio: 0.5}]     # drop grid points matching all keys
//   include: [{procedure: iterative, ratio: 0.25}]  # keep only points matching one
//   eval:
//     perplexity: [{name: wiki, data: data/wiki.txt}]
//     tasks: [configs/tasks/tiny_arith.jsonl]
//     max_length: 512
//     # layerwise: true               # one decoder layer at a time (eval --layerwise)
//     # memory_budget: 8G             # with layerwise: eval --memory-budget
//   resources:                          # per job kind: calibrate, prune, finetune, eval
//     calibrate: {ranks: 2, gpus: 0, mem: 8G, time: "00:30:00"}
//   slurm: {partition: gpu, account: lab, throttle: 8, launcher: srun, sbatch_args: ["--qos=high"]}
//   lottery: {start_tokens: 200000, lr: 1.0e-6, seq_len: 128, data: [data/c4.jsonl]}
//   device: cuda                        # cpu (default) | cuda
//
// Everything is validated before anything runs; errors name the file and the key
// (e.g. "sweep.yaml: ratios[2]: 1.5 is outside [0, 1)").
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/common/enum_words.h"
#include "results/claims.h"
#include "results/pruning_plan_file.h"
#include "results/sweep_plan.h"

namespace moelab::schedulers {

using results::JobKind;
using results::Procedure;

struct CalibrationSpecEntry {
  std::string name;
  std::vector<std::string> data;
  int64_t seq_len = 512, num_samples = 128;
  // Calibration jobs save their sums every this many batches (calibrate
  // --checkpoint-every) so that a requeued Slurm task continues where it stopped.
  // Unset: about ten checkpoints per job; 0: off. Jobs collecting gradients, naee or
  // act_outliers are never checkpointed (not one-pass sums).
  std::optional<int64_t> checkpoint_every;
  // Calibrate one decoder layer at a time (calibrate --layerwise [--memory-budget]):
  // for models whose weights do not fit resources.calibrate.mem; memory_budget as
  // calibrate takes it ("8G"), "" for none. Not for gradients, naee, act_outliers.
  bool layerwise = false;
  std::string memory_budget;
  uint64_t seed = 0;
};

struct CriterionChoice {
  std::string name;             // canonical (registry) name
  results::PruneDirection direction = results::PruneDirection::kMin;
  std::string label() const { return (direction == results::PruneDirection::kMin ? "Min-" : "Max-") + name; }
};

// none; kshot (in-context examples at evaluation); finetune (next-token loss on text, or
// SFT on answers); router_kd (the routers distilled from the unpruned model).
enum class RecoveryKind { kNone, kKshot, kFinetune, kRouterKd };
inline constexpr EnumWords<RecoveryKind, 4> kRecoveryKindWords = {{{RecoveryKind::kNone, "none"},
                                                                   {RecoveryKind::kKshot, "kshot"},
                                                                   {RecoveryKind::kFinetune, "finetune"},
                                                                   {RecoveryKind::kRouterKd, "router_kd"}}};
inline const char* to_string(RecoveryKind kind) { return enum_word(kRecoveryKindWords, kind); }

struct Recovery {
  RecoveryKind kind = RecoveryKind::kNone;
  int64_t shots = 0;            // kshot: in-context examples in the task evaluation
  int64_t steps = 0, batch_size = 8, seq_len = 512;
  double lr = 1e-5;
  std::string params = "full";
  std::vector<std::string> data;  // finetune on text (next-token loss) ...
  std::string sft;                // ... or on a prompt/answer JSONL (loss on answers)
  double temperature = 1.0;       // router_kd: distillation temperature
  std::string label() const;
};

// The `searched` procedure's settings (moelab prune --search-*): a one-shot plan whose
// per-layer drop counts are searched on held-out text (runner/jobs/prune/budget_search.h).
struct BudgetSearchSpec {
  int64_t budget = 24, seq_len = 256, num_samples = 16, max_move = 2;
  std::vector<std::string> data;
};

using Resources = results::JobResources;  // as plan.json stores them

// How `moelab submit` talks to Slurm (command-line options override these).
struct SlurmSettings {
  std::string partition, account;
  int64_t throttle = 0;              // at most this many tasks of an array at once (--array=0-N%K); 0: no limit
  std::string launcher = "mpirun";   // how multi-rank jobs start inside an allocation: mpirun | srun
  std::string srun_mpi = "pmix";     // srun --mpi=<this> (the cluster's PMI plugin; srun --mpi=list)
  int64_t signal_seconds = 120;      // USR1 this long before the time limit: checkpoint, requeue
  std::vector<std::string> sbatch_args;  // extra sbatch options, e.g. ["--qos=high"]
};

// MoE Lottery's fine-tuning between rounds (procedure "lottery"; methods.md).
struct LotterySettings {
  int64_t start_tokens = 200000;  // fine-tuning tokens after round 1, doubled every round
  double lr = 1e-6;               // the paper's for Mixtral
  int64_t seq_len = 128;
  std::vector<std::string> data;  // general text; default: the point's calibration data
};

// eval.lm_eval: lm-evaluation-harness tasks run through moelab's backend (moelab lm-eval),
// one job per evaluated model beside the native eval job; records of kind "lm_eval".
struct LmEvalSpec {
  std::vector<std::string> tasks;  // lm-eval task or group names; empty: no lm-eval jobs
  std::string include_path;        // folder of task YAMLs (absolute after parsing); "" for none
  int64_t num_fewshot = -1;        // -1: each task's own (a k-shot recovery point sets k)
  double limit = 0;                // items per task (>= 1) or fraction (< 1); 0: all
  bool apply_chat_template = false;
  int64_t batch_size = 8;
};

// compressed_experts: compressed experts (arXiv 2503.00634; `moelab compress`) as points
// beside the pruned ones: per model and main count, a compress job (no expert removed: a
// token's `main` highest-gated experts run, the others' vectors modulate them), then each
// recovery setting of the sweep (fine-tuning trains the vectors: params full or
// compressed) and the evaluation. Tagged criterion compressed_label(main), ratio 0,
// procedure "compress".
struct CompressedExpertsSpec {
  std::vector<int64_t> main;        // empty: none
  std::string variant = "official";  // official | moelab-v1 (moelab compress --variant)
};
std::string compressed_label(int64_t main);  // "Compressed-main1"

struct EvalSpec {
  std::vector<std::pair<std::string, std::string>> perplexity;  // (domain, file)
  std::vector<std::string> tasks;
  int64_t max_length = 512, num_fewshot = 0;
  // Evaluate one decoder layer at a time (eval --layerwise [--memory-budget]): for models
  // whose weights do not fit resources.eval.mem; memory_budget as calibration's.
  bool layerwise = false;
  std::string memory_budget;
  LmEvalSpec lm_eval;
};

// One grid point: everything that decides one pruned-and-evaluated model.
struct GridPoint {
  std::string model, calibration;  // calibration: the set's name
  CriterionChoice criterion;
  double ratio = 0;
  Procedure procedure = Procedure::kOneShot;
  Recovery recovery;
  uint64_t seed = 0;
  bool protect_super_experts = false;  // one-shot and searched only
  bool substitute_novices = false;     // one-shot and searched only
  std::string criterion_tag() const {
    return criterion.label() + (protect_super_experts ? "+SE" : "") + (substitute_novices ? "+novices" : "");
  }
};

struct SweepSpec {
  std::string path, name;
  std::vector<std::string> models;
  std::vector<CalibrationSpecEntry> calibration;
  std::vector<CriterionChoice> criteria;
  std::vector<double> ratios;
  std::vector<Procedure> procedures;
  std::vector<Recovery> recovery;
  std::vector<uint64_t> seeds;
  std::vector<std::map<std::string, std::string>> include, exclude;
  EvalSpec eval;
  std::map<JobKind, Resources> resources;  // by job kind (score jobs take calibrate's)
  SlurmSettings slurm;
  LotterySettings lottery;
  // finetune_first: fine-tune every model before anything else and prune the fine-tuned
  // one (Chowdhury et al., ICML 2024: experts of a model fine-tuned on a downstream task;
  // RouterNormChange scores it against the model as given). kind "none": off.
  Recovery finetune_first;
  std::string device = "cpu";  // where jobs compute: cpu | cuda (calibrate, prune, finetune, eval)
  // protect_super_experts: true, false or [false, true] (a grid dimension): one-shot
  // prunes keep their super experts (moelab prune --protect-super-experts, found in the
  // point's calibration statistics); such points are tagged criterion "<label>+SE".
  // The other procedures are not protected.
  std::vector<int> protect_super_experts = {0};
  // substitute_novices: the same for MoNE's novices (moelab prune --substitute novices,
  // their mean outputs from the point's statistics); points tagged "<label>+novices".
  std::vector<int> substitute_novices = {0};
  BudgetSearchSpec budget_search;  // for the procedure "searched"
  // claims: papers' claims the report checks on this sweep's results (results/claims.h);
  // their grid values and metrics are checked against the grid and eval sections.
  std::vector<results::ClaimSpec> claims;
  CompressedExpertsSpec compressed_experts;
  const CalibrationSpecEntry& calibration_set(const std::string& name) const;
  Resources resources_for(JobKind kind) const;  // resources[resource_kind(kind)], or the defaults
};

// The kind whose `resources` entry a job of `kind` takes: score jobs take calibrate's
// (a spec has no resources.score). The job graph and the Slurm stages both ask here.
inline JobKind resource_kind(JobKind kind) { return kind == JobKind::kScore ? JobKind::kCalibrate : kind; }

// Parses and validates (criteria against the registry, ratios in [0, 1), paths exist,
// procedures known, resources well-formed). InputError naming the file and key.
SweepSpec load_sweep_spec(const std::string& path);

// The grid after include/exclude, in a fixed order (models, calibration, criteria,
// ratios, procedures, recovery, seeds).
std::vector<GridPoint> expand_grid(const SweepSpec& spec);

}  // namespace moelab::schedulers
