// moelab prune: scores -> pruning plan -> pruned checkpoint. Removes experts from a
// checkpoint and writes a Hugging Face model directory that transformers loads.
// Three ways to say which experts go: --drop lists (manual), --scores with a
// criterion and a ratio (one-shot plan), --procedure iterative with calibration data
// (statistics re-collected each round), --procedure lottery (iterative with
// fine-tuning between rounds), or --plan (a saved plan, applied as is).
#include <regex>

#include "cluster/communicator.h"
#include "core/common/error.h"
#include "core/common/log.h"
#include "core/models/checkpoint_surgery.h"
#include "core/models/expert_surgery.h"
#include "core/models/layer_loader.h"
#include "core/models/model_writer.h"
#include "criteria/family.h"
#include "results/stats_file.h"
#include "runner/cli/commands.h"
#include "runner/cli/common_options.h"
#include "runner/cli/model_options.h"
#include "runner/jobs/data/calibration_data.h"
#include "runner/jobs/data/training_data.h"
#include "runner/jobs/prune/budget_search.h"
#include "runner/jobs/prune/iterative_pruning.h"
#include "runner/jobs/prune/novice_substitution.h"
#include "runner/jobs/prune/pruning_plan.h"
#include "runner/jobs/prune/super_experts.h"

namespace moelab::cli {
namespace {

struct PruneArgs {
  ModelOptions model;
  std::vector<std::string> drops, layer_ratios;
  std::string out, save_dtype = "auto", plan_in, plan_out, scores;
  // --direction, --scope, --procedure (the plan's enums once checked)
  std::string direction = "min", scope = "uniform", procedure_word = "one-shot";
  results::Procedure procedure = results::Procedure::kOneShot;
  jobs::PlanOptions plan;
  jobs::CalibrationSpec data;
  int64_t batch_size = 8;
  // MoE Lottery
  std::vector<std::string> finetune_data;
  int64_t lottery_start_tokens = 200000, finetune_seq_len = 128;
  jobs::FinetuneOptions finetune;
  bool overwrite = false;
  bool in_memory = false;  // load the model and save it even where surgery would do
  // Super-expert protection (runner/jobs/prune/super_experts.h), from the statistics file.
  bool protect_super = false;
  std::string substitute;  // "novices": MoNE (runner/jobs/prune/novice_substitution.h), from --stats
  std::string stats;
  jobs::SuperExpertRule super_rule;
  // Searched per-layer budgets (runner/jobs/prune/budget_search.h) on held-out data.
  jobs::BudgetSearchOptions search{0};
  jobs::CalibrationSpec search_data{{}, "", 256, 16};
};

// The super experts of `stats_path` as plan options; the statistics must be of this
// model's MoE layers.
void protect_super_experts(const PruneArgs& a, const models::MoeModel& m, jobs::PlanOptions& plan) {
  if (a.stats.empty())
    throw InputError("--protect-super-experts", "needs --stats, the calibration statistics (with out_max) of the model");
  jobs::check_super_expert_rule(a.super_rule);
  const results::CalibrationStats st = results::read_stats(a.stats);
  const auto layers = m.config.moe_layer_experts();
  bool same = st.layers.size() == layers.size();
  for (const auto& l : st.layers)
    same = same && layers.count(l.layer) && l.tokens_E.size(0) == layers.at(l.layer);
  if (!same)
    throw InputError(a.stats, "statistics of a different model: their MoE layers or expert counts differ from " +
                                  a.model.model_dir);
  const jobs::SuperExperts found = jobs::find_super_experts(st, a.super_rule, a.stats);
  plan.protect = found.experts;
  plan.protect_rule = jobs::describe(found, a.super_rule);
  int64_t n = 0;
  std::string list;
  for (const auto& [l, ids] : found.experts)
    for (int64_t e : ids) {
      ++n;
      list += (list.empty() ? "" : ", ") + std::to_string(l) + ":" + std::to_string(e);
    }
  spdlog::info("{}: {} protected{}{}", plan.protect_rule, n, n ? " (layer:expert) " : "", list);
}

// "L:e1,e2,..." -> (L, {e1, e2, ...})
models::ExpertDrops parse_drops(const std::vector<std::string>& specs) {
  static const std::regex kSpec(R"(^([0-9]+):([0-9]+(,[0-9]+)*)$)");
  models::ExpertDrops drops;
  for (const auto& s : specs) {
    std::smatch m;
    if (!std::regex_match(s, m, kSpec))
      throw InputError("--drop", "\"" + s + "\" is not LAYER:EXPERT[,EXPERT...] (e.g. 0:1,5)");
    int64_t layer = std::stoll(m[1].str());
    std::stringstream ss(m[2].str());
    std::string e;
    while (std::getline(ss, e, ',')) drops[layer].push_back(std::stoll(e));
  }
  return drops;
}

// "L:r" -> (L, r)
std::map<int64_t, double> parse_layer_ratios(const std::vector<std::string>& specs) {
  static const std::regex kSpec(R"(^([0-9]+):([0-9]*\.?[0-9]+)$)");
  std::map<int64_t, double> out;
  for (const auto& s : specs) {
    std::smatch m;
    if (!std::regex_match(s, m, kSpec)) throw InputError("--layer-ratio", "\"" + s + "\" is not LAYER:RATIO (e.g. 3:0.25)");
    out[std::stoll(m[1].str())] = std::stod(m[2].str());
  }
  return out;
}

// One-shot pruning (--drop, --plan, --scores) is surgery on the checkpoint files
// (core/models/checkpoint_surgery.h): memory about one tensor, kept tensors byte-identical.
// The iterative procedures need the model in memory to re-collect statistics, and an
// MXFP4 checkpoint (gpt-oss) is written dequantised as the loader reads it (moelab
// writes no MXFP4): those load the model and save it (core/models/model_writer.h).
bool by_surgery(const PruneArgs& a, const hf::ModelConfig& c) {
  if (a.in_memory || a.procedure != results::Procedure::kOneShot || !a.substitute.empty()) return false;
  return models::editable_by_surgery(c, /*generic_experts=*/false);
}

// The kept experts (ids in the input checkpoint) of each MoE layer that lost some.
std::map<int64_t, std::vector<int64_t>> kept_experts(const models::MoeModel& m, const hf::ModelConfig& input) {
  std::map<int64_t, std::vector<int64_t>> out;
  for (int64_t l = 0; l < int64_t(m.layers.size()); ++l)
    if (m.layers[l].moe && int64_t(m.layers[l].moe->original_ids.size()) != input.num_experts_per_layer[l])
      out[l] = m.layers[l].moe->original_ids;
  return out;
}

void run_prune(PruneArgs a) {
  a.procedure = *results::parse_procedure(a.procedure_word);  // IsMember checked the words
  const int modes = int(!a.drops.empty()) + int(!a.plan_in.empty()) + int(!a.scores.empty()) +
                    int(a.procedure != results::Procedure::kOneShot);
  if (modes != 1)
    throw InputError("moelab prune",
                     "give exactly one of --drop, --plan, --scores, --procedure iterative|lottery");
  if (a.out.empty() && a.plan_out.empty()) throw InputError("--out", "give the output model directory (or --plan-out)");
  refuse_existing_output(a.out, a.overwrite);
  a.plan.layer_ratios = parse_layer_ratios(a.layer_ratios);
  a.plan.direction = *results::parse_prune_direction(a.direction);  // IsMember checked the words
  a.plan.scope = *results::parse_prune_scope(a.scope);
  if (a.protect_super && a.scores.empty())
    throw InputError("--protect-super-experts", "applies to one-shot pruning by scores (--scores with --criterion)");
  if (a.search.budget != 0 && a.scores.empty())
    throw InputError("--search-budget", "searches the allocation of a one-shot plan: give --scores and --criterion");
  if (a.search.budget < 0) throw InputError("--search-budget", "must be at least 1 (0: no search)");
  if (!a.substitute.empty()) {
    if (a.substitute != "novices") throw InputError("--substitute", "\"" + a.substitute + "\" is not novices");
    if (a.scores.empty() && a.plan_in.empty())
      throw InputError("--substitute", "replaces the experts of a plan: give --scores with --criterion, or --plan");
    if (a.stats.empty())
      throw InputError("--substitute", "needs --stats, the calibration statistics (with out_moments) of the model");
  }
  if (!a.stats.empty() && !a.protect_super && a.substitute.empty())
    throw InputError("--stats", "is read by --protect-super-experts and --substitute; give one (or leave --stats out)");
  const bool surgery = by_surgery(a, models::load_config(a.model.model_dir));
  // Surgery plans on the model's shell: every tensor checked, none read.
  if (!surgery) a.model.check_memory(jobs::holding_model("moelab prune", false), 1);
  models::MoeModel m = surgery ? models::load_model_shell(a.model.model_dir, models::LoadOptions{})
                               : models::load_model(a.model.model_dir, a.model.load_options());
  const hf::ModelConfig input = m.config;
  const auto before = models::count_params(input);

  std::optional<jobs::PruningPlan> plan;
  if (!a.drops.empty()) {
    models::remove_experts(m, parse_drops(a.drops));
  } else if (!a.plan_in.empty()) {
    plan = results::load_plan(a.plan_in);
    if (plan->substitute == "novices" && a.substitute.empty())
      throw InputError(a.plan_in, "substituted novices for its dropped experts: give --substitute novices --stats too");
    if (a.substitute.empty()) jobs::apply_plan(m, *plan, a.plan_in);
  } else if (!a.scores.empty()) {
    if (a.plan.criterion.empty()) throw InputError("--criterion", "name the criterion whose scores to prune by");
    const auto scores = results::read_scores(a.scores);
    if (a.protect_super) protect_super_experts(a, m, a.plan);
    std::optional<jobs::PruningPlan::Search> searched;
    if (a.search.budget > 0) {
      // The search runs the model: loaded whole here (the pruned checkpoint may still be
      // written by surgery).
      if (a.search_data.files.empty()) throw InputError("--search-data", "the budget search needs held-out text");
      if (a.search_data.tokenizer.empty()) a.search_data.tokenizer = a.model.model_dir;
      a.search_data.seed = a.search.seed;
      const jobs::CalibrationSet held = jobs::load_calibration_set(a.search_data);
      a.model.check_memory(jobs::holding_model("moelab prune --search-budget", false), 1);
      const models::MoeModel full = models::load_model(a.model.model_dir, a.model.load_options());
      const auto r = jobs::search_layer_budgets(full, scores.get(a.plan.criterion, a.scores), a.plan, held.sequences,
                                                a.search);
      for (const auto& [l, d] : r.drops) a.plan.layer_ratios[l] = double(d) / double(full.config.num_experts_per_layer[l]);
      searched = jobs::PruningPlan::Search{a.search.budget, r.evaluations, r.targets, a.search.seed, r.fitness,
                                           r.uniform_fitness, held.description};
      spdlog::info("budget search: {} allocations evaluated ({} from {}), KL {:.6g} per target token against {:.6g} "
                   "for the uniform allocation", r.evaluations, r.resumed, a.search.state_path.empty() ? "none" : a.search.state_path,
                   r.fitness, r.uniform_fitness);
    }
    plan = jobs::plan_from_scores(m, scores.get(a.plan.criterion, a.scores), a.plan, a.scores);
    plan->search = searched;
    if (a.substitute.empty()) jobs::apply_plan(m, *plan, "pruning plan");
  } else {
    if (a.plan.criterion.empty()) throw InputError("--criterion", "name the criterion to prune by");
    if (a.data.files.empty()) throw InputError("--data", "the iterative procedure needs calibration data");
    auto comm = cluster::world("auto");
    if (a.data.tokenizer.empty()) a.data.tokenizer = a.model.model_dir;
    const jobs::CalibrationSet set = jobs::load_calibration_set(a.data);
    jobs::CollectOptions collect;
    collect.batch_size = a.batch_size;
    collect.power_exponents = criteria::power_exponents_for({a.plan.criterion}, collect.power_exponents);
    jobs::LotteryOptions lottery;
    if (a.procedure == results::Procedure::kLottery) {
      if (a.finetune_data.empty()) throw InputError("--finetune-data", "MoE Lottery needs general text to fine-tune on");
      jobs::CalibrationSpec ft = a.data;
      ft.files = a.finetune_data;
      ft.seq_len = a.finetune_seq_len;
      lottery.enabled = true;
      lottery.data = jobs::load_text_examples(ft);
      lottery.start_tokens = a.lottery_start_tokens;
      lottery.seq_len = a.finetune_seq_len;
      lottery.finetune = a.finetune;
    }
    plan = jobs::prune_iteratively(m, *comm, set, a.plan, collect, lottery);
    if (comm->rank() != 0) return;  // every rank pruned the same model; rank 0 writes
  }
  if (!a.substitute.empty()) {  // MoNE: the plan's dropped experts become novices
    plan->substitute = a.substitute;
    jobs::substitute_novices(m, *plan, results::read_stats(a.stats), a.stats);
    int64_t n = 0;
    for (const auto& [l, lp] : plan->layers) n += int64_t(lp.drop.size());
    spdlog::info("MoNE: {} dropped experts replaced by novices (their mean outputs in {})", n, a.stats);
  }
  if (plan) {
    plan->model = a.model.model_dir;
    if (!a.plan_out.empty()) {
      results::save_plan(*plan, a.plan_out);
      spdlog::info("wrote plan {}", a.plan_out);
    }
    for (const auto& [l, lp] : plan->layers)
      spdlog::info("layer {}: keeps {} of {} experts", l, lp.keep.size(), lp.num_experts);
  }
  if (a.out.empty()) return;
  if (surgery) {
    models::SurgeryOptions so;
    so.overwrite = a.overwrite;
    if (a.save_dtype != "auto") so.dtype = parse_dtype(a.save_dtype);
    models::prune_checkpoint(input, m.config, *m.family, kept_experts(m, input), a.out, so);
  } else {
    models::SaveOptions so;
    so.overwrite = a.overwrite;
    if (a.save_dtype != "auto") so.dtype = parse_dtype(a.save_dtype);
    models::save_model(m, a.out, so);
  }
  const auto after = models::count_params(m);
  spdlog::info("wrote {}: {} -> {} parameters ({} -> {} active per token)", a.out, before.total, after.total,
               before.active_per_token, after.active_per_token);
}

}  // namespace

void add_prune_command(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "prune",
      "Remove experts from a checkpoint and write a model directory that transformers loads.\n"
      "Dropping expert j of a layer removes its weights and row j of the router; routing keeps top-k and\n"
      "renormalises over the surviving experts as the model's own router does. Expert ids are the\n"
      "checkpoint's (0-based, per layer).\n\n"
      "Which experts go, one of:\n"
      "  --drop L:e,...      by hand\n"
      "  --scores FILE       one-shot: the scores of --criterion (from moelab score), --direction min drops\n"
      "                      the lowest (Min-X), max the highest; --ratio of every layer's experts\n"
      "                      (uniform, default; --layer-ratio L:r overrides a layer) or of all experts\n"
      "                      together (--scope global; no layer goes below top-k)\n"
      "  --procedure iterative  one expert per layer per round, statistics of --criterion re-collected on\n"
      "                      the pruned model each round from --data, until --ratio is reached\n"
      "  --procedure lottery MoE Lottery: iterative, with next-token fine-tuning on --finetune-data after\n"
      "                      each round (--lottery-start-tokens, doubling every round; AdamW, cosine,\n"
      "                      optimizer reset each round; --finetune-lr, --finetune-batch-size)\n"
      "  --plan FILE         a saved plan (--plan-out writes one; JSON, see runner/jobs/prune/pruning_plan.h)\n"
      "A layer may not keep fewer than top-k experts unless --reduce-top-k lowers k for every layer.\n\n"
      "If layers end up with different expert counts, config.json records them in\n"
      "moelab_num_experts_per_layer and points auto_map at a small modeling_moelab.py, so load it with\n"
      "AutoModelForCausalLM.from_pretrained(dir, trust_remote_code=True).\n\n"
      "Examples:\n"
      "  moelab prune models/debian-moe --drop 0:1,5 --drop 1:2 --out pruned/\n"
      "  moelab calibrate models/debian-moe --data models/debian-moe/corpus/en.calibration.jsonl --criteria EAN --out stats.h5\n"
      "  moelab score --stats stats.h5 --model models/debian-moe --criteria EAN --out scores.json\n"
      "  moelab prune models/debian-moe --scores scores.json --criterion EAN --ratio 0.5 --plan-out plan.json --out pruned/\n"
      "  moelab prune models/debian-moe --procedure iterative --criterion EAN --ratio 0.25 --data models/debian-moe/corpus/en.calibration.jsonl --out pruned/\n"
      "  moelab prune models/debian-moe --plan plan.json --out pruned/\n\n"
      "--drop, --scores and --plan prune the checkpoint files tensor by tensor without loading the model\n"
      "(memory: about one tensor; kept tensors byte-identical, in their stored dtype unless --save-dtype);\n"
      "the iterative procedures and MXFP4 checkpoints load the model and save it.");
  auto a = std::make_shared<PruneArgs>();
  a->model.add_to(cmd);
  cmd->add_option("--drop", a->drops, "LAYER:EXPERT[,EXPERT...] to remove (repeatable)");
  cmd->add_option("--scores", a->scores, "scores JSON from moelab score (one-shot plan)");
  cmd->add_option("--plan", a->plan_in, "apply this saved pruning plan");
  cmd->add_option("--procedure", a->procedure_word, "one-shot (with --scores), iterative or lottery (with --data)")
      ->check(CLI::IsMember({"one-shot", "iterative", "lottery"}));
  cmd->add_option("--finetune-data", a->finetune_data, "lottery: general text to fine-tune on between rounds");
  cmd->add_option("--finetune-seq-len", a->finetune_seq_len, "lottery: tokens per fine-tuning sequence")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--lottery-start-tokens", a->lottery_start_tokens,
                  "lottery: fine-tuning tokens after round 1, doubled every round (default 200000)");
  cmd->add_option("--finetune-lr", a->finetune.lr, "lottery: AdamW learning rate (the paper: 1e-6 for Mixtral)");
  cmd->add_option("--finetune-batch-size", a->finetune.batch_size, "lottery: sequences per optimizer step")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--finetune-params", a->finetune.params, "lottery: full, router or experts")
      ->check(CLI::IsMember({"full", "router", "experts"}));
  cmd->add_option("--criterion", a->plan.criterion, "criterion to prune by (e.g. EAN)");
  cmd->add_option("--direction", a->direction, "min: drop the lowest scores (Min-X); max: the highest")
      ->check(CLI::IsMember({"min", "max"}));
  cmd->add_option("--ratio", a->plan.ratio, "fraction of experts dropped, in [0, 1) (default 0.5)");
  cmd->add_option("--scope", a->scope, "uniform: the ratio in every layer; global: over all experts together")
      ->check(CLI::IsMember({"uniform", "global"}));
  cmd->add_option("--layer-ratio", a->layer_ratios, "LAYER:RATIO overriding the ratio of one layer (repeatable)");
  cmd->add_flag("--reduce-top-k", a->plan.reduce_top_k,
                "allow layers to keep fewer than top-k experts by lowering top-k to the smallest kept count");
  cmd->add_option("--plan-out", a->plan_out, "write the pruning plan (JSON) here");
  cmd->add_flag("--protect-super-experts", a->protect_super,
                "never drop a super expert (largest output value above max(q99.5, max/10) over all experts, first "
                "75% of the MoE layers; Su et al. 2025, as REAP); needs --stats with out_max");
  cmd->add_option("--stats", a->stats, "calibration statistics (HDF5): super experts, novices' mean outputs");
  cmd->add_option("--substitute", a->substitute,
                  "novices: replace each dropped expert by its mean output over the calibration tokens routed to "
                  "it (MoNE, arXiv 2507.00390; --stats with out_moments); the router keeps every row");
  cmd->add_option("--search-budget", a->search.budget,
                  "search how many experts each layer drops (total fixed by --ratio): allocations evaluated "
                  "(EvoESAP-style (1+1) evolution from the uniform one; fitness: KL to the unpruned model on "
                  "--search-data); 0: uniform");
  cmd->add_option("--search-data", a->search_data.files, "held-out text for the budget search (.txt, .jsonl, .json ids)");
  cmd->add_option("--search-seq-len", a->search_data.seq_len, "budget search: tokens per held-out sequence (256)");
  cmd->add_option("--search-samples", a->search_data.num_samples, "budget search: held-out sequences (16)");
  cmd->add_option("--search-seed", a->search.seed, "budget search: seed of the mutations (and of drawing sequences)");
  cmd->add_option("--search-max-move", a->search.max_move, "budget search: most drops one mutation moves (2)");
  cmd->add_option("--search-state", a->search.state_path,
                  "budget search: JSON-lines record of every evaluation; a run given it again resumes");
  cmd->add_option("--super-expert-quantile", a->super_rule.quantile, "super experts: percentile, in (0, 100] (99.5)");
  cmd->add_option("--super-expert-factor", a->super_rule.factor, "super experts: at least max / this, >= 1 (10)");
  cmd->add_option("--super-expert-layers", a->super_rule.layer_fraction,
                  "super experts: leading fraction of the MoE layers searched, in (0, 1] (0.75)");
  add_calibration_data_options(cmd, &a->data, "iterative: ");
  add_batch_size_option(cmd, &a->batch_size, "iterative: sequences per forward pass");
  add_output_options(cmd, &a->out, &a->overwrite, "output model directory (written atomically)");
  cmd->add_option("--save-dtype", a->save_dtype,
                  "dtype of the saved weights: auto (as stored in the input), float32, bfloat16, float16")
      ->check(CLI::IsMember({"auto", "float32", "bfloat16", "float16"}));
  cmd->add_flag("--in-memory", a->in_memory,
                "load the whole model, prune it and save it, instead of pruning the checkpoint files tensor by "
                "tensor (writes every tensor in the config's dtype, experts per-expert; for comparisons)");
  cmd->callback([a] {
    auto comm = cluster::world("auto");
    cluster::run_or_abort(*comm, [&] { run_prune(*a); });
  });
}

}  // namespace moelab::cli
