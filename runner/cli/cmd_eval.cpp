// moelab eval: perplexity / bits per byte on text files, multiple-choice accuracy
// (lm-evaluation-harness rules) and efficiency figures of one model, distributed
// over ranks like calibrate (experts by expert parallelism, sequences by data
// parallelism); rank 0 prints a table and appends one record per (model, task) to
// a JSON-lines results store (results/results_format.md).
#include <yaml-cpp/yaml.h>

#include <filesystem>
#include <iostream>
#include <set>

#include "cluster/alltoall_dispatcher.h"
#include "cluster/communicator.h"
#include "cluster/data_parallel.h"
#include "core/common/atomic_output.h"
#include "core/common/error.h"
#include "core/common/log.h"
#include "core/common/memory_budget.h"
#include "core/models/layer_loader.h"
#include "core/tokenizer/tokenizer.h"
#include "results/result_records.h"
#include "runner/cli/commands.h"
#include "runner/cli/common_options.h"
#include "runner/cli/layerwise_options.h"
#include "runner/cli/model_options.h"
#include "runner/jobs/eval/efficiency.h"
#include "runner/jobs/eval/eval_records.h"
#include "runner/jobs/eval/multiple_choice.h"
#include "runner/jobs/eval/perplexity.h"
#include "runner/jobs/eval/task_format.h"
#include "runner/jobs/layerwise/layerwise_forward.h"
#include "runner/jobs/memory/memory_guard.h"

#ifndef MOELAB_VERSION
#define MOELAB_VERSION "0.1.0"
#endif

namespace moelab::cli {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

struct EvalArgs {
  ModelOptions model;
  std::vector<std::string> data, tasks;
  std::string tokenizer, text_field = "text", results, per_item, requests, comm = "auto";
  int64_t max_length = 0, stride = 0, num_fewshot = 0, batch_size = 8;
  std::string windows = "guide";  // guide | lm-eval
  bool add_bos_token = false;     // --windows lm-eval: lm-eval's add_bos_token
  uint64_t fewshot_seed = 1234;
  bool efficiency = false, overwrite = false;
  jobs::EfficiencySpec bench;
  LayerwiseArgs lw;
};

// "--data wiki:path.txt" names the domain ("--data=wiki=path.txt" too); "--data
// path.txt" takes the file stem. A bare "wiki=path.txt" cannot work: main() turns
// every bare key=value argument into an option override (--wiki=path.txt).
jobs::TextFile parse_data_arg(const std::string& arg) {
  if (arg.rfind("--", 0) == 0)
    throw InputError("--data", "\"" + arg + "\" looks like a KEY=VALUE override; name a domain as DOMAIN:FILE");
  const size_t sep = arg.find_first_of(":=");
  if (sep != std::string::npos && sep > 0 && arg.substr(0, sep).find('/') == std::string::npos && !fs::exists(arg))
    return {arg.substr(0, sep), arg.substr(sep + 1)};
  return {fs::path(arg).stem().string(), arg};
}

void check_vocab(const std::vector<jobs::ScoredSequence>& seqs, int64_t vocab, const std::string& tokenizer) {
  for (const auto& s : seqs)
    for (int64_t id : s.ids)
      if (id < 0 || id >= vocab)
        throw InputError(tokenizer, "token id " + std::to_string(id) + " is outside the model's vocabulary (" +
                                        std::to_string(vocab) + ")");
}

using Output = jobs::EvalOutput;

void print_table(const Output& out) {
  std::cout << fmt::format("{:<24} {:<16} {:<24} {:>16} {:>10}\n", "task", "kind", "metric", "value", "n");
  for (const auto& r : out.records)
    for (const auto& [name, v] : r.metrics.items()) {
      if (name.size() > 7 && name.compare(name.size() - 7, 7, "_stderr") == 0) continue;
      std::string value = v.is_number_integer() ? std::to_string(v.get<int64_t>())
                          : v.is_number()       ? fmt::format("{:.6g}", v.get<double>())
                                                : v.dump();
      if (r.metrics.contains(name + "_stderr") && r.metrics[name + "_stderr"].is_number())
        value += fmt::format(" ± {:.3g}", r.metrics[name + "_stderr"].get<double>());
      std::cout << fmt::format("{:<24} {:<16} {:<24} {:>16} {:>10}\n", r.task, to_string(r.kind), name, value, r.n_items);
    }
}

void run_eval(const EvalArgs& a) {
  auto comm = cluster::world(a.comm);
  const int64_t P = comm->size();
  if (a.data.empty() && a.tasks.empty() && a.requests.empty() && !a.efficiency)
    throw InputError("moelab eval", "nothing to evaluate: give --data, --task, --requests or --efficiency");
  if (!a.requests.empty() && a.per_item.empty())
    throw InputError("--requests", "needs --per-item (the scores are written there, one line per request)");
  // Check the outputs before the (long) evaluation, not after it.
  if (!a.results.empty() && fs::exists(a.results)) (void)results::read_records(a.results);
  refuse_existing_output(a.per_item, a.overwrite);
  const hf::ModelConfig config = models::load_config(a.model.model_dir);
  const int64_t baseline = peak_resident_bytes();
  if (a.lw.layerwise && a.efficiency)
    throw InputError("--efficiency", "times whole-model forwards; run it without --layerwise");
  const jobs::LayerwiseOptions lw =
      a.lw.options(a.results.empty() ? std::string(".") : fs::absolute(a.results).parent_path().string());
  if (!a.lw.layerwise) {  // before any data is read; layer by layer the layers' sizes are checked below
    jobs::MemoryCheck check = jobs::holding_model("moelab eval", true);
    check.offer_layerwise = true;
    a.model.check_memory(check, int(P));
  }
  // The default context is the model's, as lm-eval's HF backend takes it (2048 when the
  // config does not say).
  const int64_t model_context = config.max_position_embeddings > 0 ? config.max_position_embeddings : 2048;
  const int64_t max_length = a.max_length > 0 ? a.max_length : model_context;
  if (a.windows == "lm-eval" && a.stride > 0)
    throw InputError("--stride", "has no meaning with --windows lm-eval (its windows are disjoint)");
  if (a.add_bos_token && a.windows != "lm-eval")
    throw InputError("--add-bos-token", "only with --windows lm-eval (the guide's windows keep the tokenizer's own "
                                        "special tokens)");
  const int64_t stride = a.stride > 0 ? a.stride : std::max<int64_t>(1, max_length / 2);
  if (config.max_position_embeddings > 0 && max_length > config.max_position_embeddings)
    spdlog::warn("--max-length {} is beyond the model's max_position_embeddings {}", max_length,
                 config.max_position_embeddings);

  // Read every input (and fail on a bad one) before the tokenizer and the model.
  std::vector<jobs::TextFile> files;
  std::vector<std::vector<std::string>> docs;
  for (const auto& d : a.data) {
    files.push_back(parse_data_arg(d));
    if (!fs::exists(files.back().path)) throw InputError(files.back().path, "no such text file");
    docs.push_back(jobs::read_text_documents(files.back().path, a.text_field));
  }
  std::vector<jobs::McTask> tasks;
  std::set<std::string> names;
  for (const auto& t : a.tasks) {
    if (!fs::exists(t)) throw InputError(t, "no such task file");
    tasks.push_back(jobs::read_mc_task(t, jobs::read_task_format(t)));
    if (!names.insert(tasks.back().format.name).second)
      throw InputError(t, "a second task named \"" + tasks.back().format.name + "\"");
  }
  std::vector<jobs::LoglikelihoodRequest> requests;
  if (!a.requests.empty()) {
    if (!fs::exists(a.requests)) throw InputError(a.requests, "no such requests file");
    requests = jobs::read_loglikelihood_requests(a.requests);
  }
  std::optional<Tokenizer> tok;
  const std::string tok_path = a.tokenizer.empty() ? a.model.model_dir : a.tokenizer;
  if (!files.empty() || !tasks.empty() || !requests.empty()) tok = Tokenizer::from_file(tok_path);

  // The token lm-eval puts before a context-free request (its prefix_token_id): BOS, else EOS.
  std::optional<int64_t> prefix_token;
  for (const char* key : {"bos_token_id", "eos_token_id"})
    if (!prefix_token && config.raw.contains(key) && config.raw[key].is_number_integer())
      prefix_token = config.raw[key].get<int64_t>();
  std::optional<jobs::PerplexityPlan> ppl_plan;
  if (!files.empty()) {
    jobs::WindowRule rule;
    rule.lm_eval_rolling = a.windows == "lm-eval";
    rule.prefix_token = prefix_token.value_or(-1);
    rule.add_special_tokens = a.add_bos_token;
    ppl_plan = jobs::plan_perplexity(files, docs, *tok, max_length, stride, rule);
    check_vocab(ppl_plan->windows, config.vocab_size, tok_path);
  }
  jobs::McSettings mc;
  mc.num_fewshot = a.num_fewshot;
  mc.fewshot_seed = a.fewshot_seed;
  mc.max_length = max_length;
  mc.prefix_token = prefix_token;
  std::vector<jobs::McPlan> mc_plans;
  for (const auto& t : tasks) {
    mc_plans.push_back(jobs::plan_mc(t, mc, *tok));
    check_vocab(mc_plans.back().requests, config.vocab_size, tok_path);
  }

  std::vector<jobs::ScoredSequence> request_seqs;
  for (const auto& r : requests)
    request_seqs.push_back(jobs::loglikelihood_request(*tok, r.context, r.continuation, max_length, prefix_token,
                                                       a.requests + ": line " + std::to_string(r.line)));
  if (!request_seqs.empty()) check_vocab(request_seqs, config.vocab_size, tok_path);

  models::MoeModel m;
  models::LoadOptions load = a.model.load_options();
  jobs::LogitsRunner run;
  if (a.lw.layerwise) {  // a shell: every layer is read when its turn comes, once per scored list
    m = load_layerwise_shell(a.model.model_dir, comm, load, lw);
    run = [&](const std::vector<std::vector<int64_t>>& seqs, const cluster::DataParallelOptions& dp,
              const std::function<void(int64_t, const at::Tensor&)>& on_logits) {
      jobs::run_layerwise(m, a.model.model_dir, load, *comm, seqs, dp, lw, nullptr, on_logits);
    };
  } else {
    reuse_freed_blocks();
    m = P > 1 ? cluster::load_expert_parallel(a.model.model_dir, comm, load) : models::load_model(a.model.model_dir, load);
    run = [&](const std::vector<std::vector<int64_t>>& seqs, const cluster::DataParallelOptions& dp,
              const std::function<void(int64_t, const at::Tensor&)>& on_logits) {
      cluster::run_data_parallel(m, *comm, seqs, dp, nullptr, on_logits);
    };
  }
  Output out;
  jobs::EvalRecordContext ctx;
  ctx.model_dir = a.model.model_dir;
  ctx.moelab_version = MOELAB_VERSION;
  ctx.world_size = P;
  ctx.text_field = a.text_field;
  ctx.windows = a.windows;
  ctx.bench = a.bench;
  if (ppl_plan) {
    spdlog::info("perplexity: {} file(s), {} document(s), {} window(s) of <= {} tokens, {}", files.size(),
                 ppl_plan->docs.size(), ppl_plan->windows.size(), max_length,
                 ppl_plan->rule.lm_eval_rolling ? "lm-eval's rolling windows" : "stride " + std::to_string(stride));
    auto scores = jobs::score_sequences(run, *comm, ppl_plan->windows, a.batch_size);
    jobs::add_perplexity_records(ctx, m, *ppl_plan, jobs::summarize_perplexity(*ppl_plan, scores), out);
  }
  for (const auto& plan : mc_plans) {
    spdlog::info("task {}: {} items, {} requests, {}-shot", plan.task->format.name, plan.task->items.size(),
                 plan.requests.size(), mc.num_fewshot);
    auto scores = jobs::score_sequences(run, *comm, plan.requests, a.batch_size);
    jobs::add_multiple_choice_records(ctx, m, plan, jobs::summarize_mc(plan, scores), out);
  }
  if (!request_seqs.empty()) {
    // Raw scores for a caller that aggregates them itself (lm-eval): per-item lines only.
    spdlog::info("requests: {} log-likelihood request(s) from {}", request_seqs.size(), a.requests);
    auto scores = jobs::score_sequences(run, *comm, request_seqs, a.batch_size);
    for (size_t i = 0; i < scores.size(); ++i)
      out.per_item.push_back({{"kind", "loglikelihood"}, {"request", int64_t(i)}, {"line", requests[i].line},
                              {"loglik", scores[i].logprob}, {"greedy", scores[i].greedy},
                              {"n_tokens", scores[i].n_scored}});
  }
  if (a.efficiency) {
    spdlog::info("efficiency: timing {} x {} forward(s) of {} x {} tokens per rank", a.bench.repeats, P,
                 a.bench.batch_size, a.bench.seq_len);
    jobs::add_efficiency_record(ctx, m, jobs::measure_efficiency(m, *comm, a.bench), out);
  }
  if (a.lw.layerwise) report_peak_memory(baseline, lw, m.device);
  if (comm->rank() == 0) {
    print_table(out);
    if (!a.per_item.empty()) {
      std::string text;
      for (const auto& j : out.per_item) text += j.dump() + "\n";
      write_file_atomic(a.per_item, text);
      spdlog::info("wrote {} ({} lines)", a.per_item, out.per_item.size());
    }
    if (!a.results.empty()) {
      const std::string now = results::now_utc();
      for (auto& r : out.records) r.timestamp = now;
      results::append_records(a.results, out.records);
      spdlog::info("appended {} record(s) to {}", out.records.size(), a.results);
    }
  }
  comm->barrier();
}

}  // namespace

void add_eval_command(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "eval",
      "Evaluate a model: perplexity and bits per byte on text, multiple-choice accuracy scored by\n"
      "log-likelihood as lm-evaluation-harness does, and efficiency figures (parameters, expert FLOPs,\n"
      "tokens/s, peak memory). Rank 0 prints a table and appends one JSON line per (model, task) to\n"
      "--results (format: results/results_format.md).\n\n"
      "Perplexity: .txt = one document, .jsonl = one document per line (--text-field); windows of\n"
      "--max-length tokens every --stride tokens within a document, each scoring the tokens the previous\n"
      "window did not (the Hugging Face sliding-window rule); --windows lm-eval: lm-evaluation-harness's\n"
      "loglikelihood_rolling (disjoint windows, every token scored, the first after BOS/EOS).\n"
      "bits_per_byte = NLL / ln 2 / UTF-8 bytes; byte_perplexity and word_perplexity as lm-eval's.\n"
      "Tasks: JSONL items {\"query\", \"choices\", \"gold\"} with an optional YAML of the same stem beside\n"
      "(format: configs/tasks/README.md); --num-fewshot shots drawn with --fewshot-seed.\n"
      "Under mpirun (or --ranks P) experts and sequences are spread over ranks; results do not\n"
      "depend on the rank count.\n\n"
      "Examples:\n"
      "  moelab eval models/debian-moe --data en:models/debian-moe/corpus/en.test.jsonl --data models/debian-moe/corpus/code.test.jsonl --results results.jsonl\n"
      "  moelab eval models/debian-moe --task configs/tasks/debian_moe_en.jsonl --num-fewshot 3 --per-item items.jsonl\n"
      "  moelab prune models/debian-moe --drop 0:1,5 --out pruned/\n"
      "  moelab eval pruned/ --efficiency --results results.jsonl\n"
      "  moelab eval models/debian-moe --data models/debian-moe/corpus/en.test.jsonl --windows lm-eval --max-length 256\n"
      "  moelab eval models/debian-moe --requests configs/tasks/requests_example.jsonl --per-item scores.jsonl\n"
      "  moelab --ranks 2 eval models/debian-moe --data models/debian-moe/corpus/en.test.jsonl --max-length 256 --stride 128 --results r.jsonl\n"
      "  moelab eval models/debian-moe --task configs/tasks/debian_moe_en.jsonl --layerwise --memory-budget 64M");
  auto a = std::make_shared<EvalArgs>();
  a->model.add_to(cmd);
  cmd->add_option("--data", a->data, "[DOMAIN:]FILE: text for perplexity (.txt, .jsonl); domain defaults to the "
                                     "file stem; repeatable");
  cmd->add_option("--task", a->tasks, "multiple-choice task file (.jsonl); repeatable");
  cmd->add_option("--requests", a->requests,
                  "lm-eval loglikelihood requests: JSON lines {\"context\", \"continuation\"}, scored as lm-eval's "
                  "HF backend scores them; their log-likelihoods and greedy flags go to --per-item");
  cmd->add_flag("--efficiency", a->efficiency, "also measure parameters, expert FLOPs, tokens/s and peak memory");
  cmd->add_option("--tokenizer", a->tokenizer, "tokenizer.json or its folder (default: the model directory)");
  cmd->add_option("--text-field", a->text_field, "JSONL field holding a document's text");
  cmd->add_option("--max-length", a->max_length,
                  "tokens per window / longest context (default: the model's max_position_embeddings, else 2048, "
                  "as lm-eval)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--stride", a->stride, "perplexity window stride in tokens (default: max-length / 2)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--windows", a->windows,
                  "perplexity windows: guide (the transformers perplexity guide's sliding windows) or lm-eval "
                  "(lm-evaluation-harness's loglikelihood_rolling: disjoint windows, every token scored)")
      ->check(CLI::IsMember({"guide", "lm-eval"}));
  cmd->add_flag("--add-bos-token", a->add_bos_token,
                "--windows lm-eval: tokenize documents with the tokenizer's special tokens, as lm-eval 0.4.13's "
                "HF backend does by default (add_bos_token unset or true; a second start token on tokenizers "
                "that add one); without it, as its add_bos_token=False");
  cmd->add_option("--num-fewshot", a->num_fewshot, "few-shot examples per item")->check(CLI::NonNegativeNumber);
  cmd->add_option("--fewshot-seed", a->fewshot_seed, "seed for drawing the few-shot examples");
  cmd->add_option("--bench-seq-len", a->bench.seq_len, "--efficiency: tokens per timed sequence")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--bench-batch", a->bench.batch_size, "--efficiency: sequences per forward per rank")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--bench-repeats", a->bench.repeats, "--efficiency: timed forwards")->check(CLI::PositiveNumber);
  cmd->add_option("--results", a->results, "append one record per (model, task) to this JSON-lines file");
  cmd->add_option("--per-item", a->per_item,
                  "write per-document NLLs and per-item log-likelihoods and predictions (JSON lines)");
  cmd->add_flag("--overwrite", a->overwrite, "replace --per-item if it exists");
  add_batch_size_option(cmd, &a->batch_size, "sequences per forward pass");
  add_comm_option(cmd, &a->comm, "communicator under mpirun: auto, mpi, nccl, local");
  a->lw.add_to(cmd,
               "one decoder layer at a time from the safetensors (each rank only its experts), the hidden states "
               "of every window or request kept between layers: the same numbers as the whole model, bit for bit, "
               "in a fraction of its memory; the layers are read once per data file list, task and request file; "
               "not with --efficiency",
               "that of --results, else the working directory");
  cmd->callback([a] {
    auto comm = cluster::world(a->comm);
    cluster::run_or_abort(*comm, [&] { run_eval(*a); });
  });
}

}  // namespace moelab::cli
