// moelab generate: greedy continuations of prompts (--text) or of lm-eval generate_until
// requests (--requests, JSON lines), spread over ranks like eval; rank 0 prints or writes
// them. The algorithm and its cost: runner/jobs/eval/generation.h.
#include <filesystem>
#include <iostream>

#include "cluster/communicator.h"
#include "cluster/data_parallel.h"
#include "core/common/atomic_output.h"
#include "core/common/error.h"
#include "core/common/log.h"
#include "core/common/memory_budget.h"
#include "core/tokenizer/tokenizer.h"
#include "runner/cli/commands.h"
#include "runner/cli/common_options.h"
#include "runner/cli/model_options.h"
#include "runner/jobs/eval/generation.h"
#include "runner/jobs/memory/memory_guard.h"
#include "schedulers/resource_plan.h"

namespace moelab::cli {
namespace {

namespace fs = std::filesystem;

struct GenerateArgs {
  ModelOptions model;
  std::vector<std::string> texts, until;
  std::string requests, out, tokenizer, comm = "auto";
  int64_t max_new_tokens = 256, max_length = 0, batch_size = 8;
  bool no_special_tokens = false, overwrite = false;
};

void run_generate(const GenerateArgs& a) {
  auto comm = cluster::world(a.comm);
  if (a.texts.empty() == a.requests.empty())
    throw InputError("moelab generate", "give either --text (repeatable) or --requests FILE");
  if (!a.requests.empty() && a.out.empty())
    throw InputError("--requests", "needs --out (the continuations are written there, one JSON line per request)");
  refuse_existing_output(a.out, a.overwrite);
  const hf::ModelConfig config = models::load_config(a.model.model_dir);
  std::vector<jobs::GenerationRequest> requests;
  if (!a.requests.empty()) {
    if (!fs::exists(a.requests)) throw InputError(a.requests, "no such requests file");
    requests = jobs::read_generation_requests(a.requests, a.max_new_tokens);
  }
  for (const auto& t : a.texts) requests.push_back({t, a.until, a.max_new_tokens, 0});
  const std::string tok_path = a.tokenizer.empty() ? a.model.model_dir : a.tokenizer;
  const Tokenizer tok = Tokenizer::from_file(tok_path);
  jobs::GenerationSettings s;
  s.max_length = a.max_length;
  s.add_special_tokens = !a.no_special_tokens;
  s.eos_ids = jobs::eos_token_ids(a.model.model_dir, config.raw);
  if (config.raw.contains("bos_token_id") && config.raw["bos_token_id"].is_number_integer())
    s.bos_token = config.raw["bos_token_id"].get<int64_t>();
  s.batch_size = a.batch_size;
  const auto contexts = jobs::encode_contexts(tok, requests, s, config.vocab_size);
  // The weights and, beside them, the largest batch's key/value cache.
  jobs::MemoryCheck check = jobs::holding_model("moelab generate", true);
  check.extra_what = "key/value cache of " + std::to_string(std::min<int64_t>(a.batch_size, int64_t(requests.size()))) +
                     " sequence(s), --batch-size";
  check.extra_bytes =
      jobs::kv_cache_peak_bytes(config, schedulers::dtype_bytes(a.model.dtype), requests, contexts, a.batch_size);
  a.model.check_memory(check, comm->size());

  reuse_freed_blocks();
  models::MoeModel m = comm->size() > 1 ? cluster::load_expert_parallel(a.model.model_dir, comm, a.model.load_options())
                                        : models::load_model(a.model.model_dir, a.model.load_options());
  spdlog::info("generating for {} request(s), greedy, at most {} new token(s) each by default", requests.size(),
               a.max_new_tokens);
  const auto results = jobs::generate_greedy(m, *comm, tok, requests, contexts, s);
  if (comm->rank() == 0) {
    if (!a.out.empty()) {
      std::string text;
      for (size_t i = 0; i < results.size(); ++i) {
        const auto& r = results[i];
        nlohmann::json j = {{"request", int64_t(i)}, {"text", r.text}, {"tokens", r.tokens}, {"stop", r.stop},
                            {"n_context", int64_t(r.context_ids.size())}};
        if (requests[i].line > 0) j["line"] = requests[i].line;
        text += j.dump() + "\n";
      }
      write_file_atomic(a.out, text);
      spdlog::info("wrote {} ({} lines)", a.out, results.size());
    } else {
      for (size_t i = 0; i < results.size(); ++i)
        std::cout << requests[i].context << results[i].text << "\n" << std::flush;
    }
  }
  comm->barrier();
}

}  // namespace

void add_generate_command(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "generate",
      "Greedy generation: continue prompts token by token with the most likely next token (as\n"
      "transformers' generate with do_sample=False) until the model's end-of-sequence id\n"
      "(generation_config.json, else config.json), a stop string (--until; cut before it) or\n"
      "--max-new-tokens. --requests takes lm-eval generate_until requests as JSON lines {\"context\",\n"
      "\"until\": [...], \"max_gen_toks\"} and writes {\"request\", \"text\", \"tokens\", \"stop\",\n"
      "\"n_context\"} lines to --out (the lm-eval backend runner/lm_eval_backend uses it). Requests are\n"
      "spread over ranks in batches of --batch-size; each batch runs its contexts once, then one token\n"
      "per step over a key/value cache.\n\n"
      "Examples:\n"
      "  moelab generate models/debian-moe --text 'The Debian project' --max-new-tokens 24\n"
      "  moelab generate models/debian-moe --text 'Question: what is apt?' --until '.' --max-new-tokens 48\n"
      "  moelab --ranks 2 generate models/debian-moe --requests configs/tasks/generate_example.jsonl --out gen.jsonl");
  auto a = std::make_shared<GenerateArgs>();
  a->model.add_to(cmd);
  cmd->add_option("--text", a->texts, "a prompt to continue (repeatable); printed with its continuation");
  cmd->add_option("--until", a->until, "--text: stop string (repeatable); the continuation is cut before it");
  cmd->add_option("--requests", a->requests, "lm-eval generate_until requests (JSON lines)");
  add_output_options(cmd, &a->out, &a->overwrite, "write the continuations here (JSON lines; required with --requests)");
  cmd->add_option("--max-new-tokens", a->max_new_tokens,
                  "tokens generated at most (a request's own max_gen_toks wins)")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--max-length", a->max_length,
                  "cut contexts from the left to max-length - max_gen_toks tokens, as lm-eval's HF backend "
                  "(default: no cut)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_flag("--no-special-tokens", a->no_special_tokens,
                "encode prompts without the tokenizer's special tokens (lm-eval's add_bos_token=False)");
  cmd->add_option("--tokenizer", a->tokenizer, "tokenizer.json or its folder (default: the model directory)");
  add_batch_size_option(cmd, &a->batch_size, "sequences per forward pass");
  add_comm_option(cmd, &a->comm, "communicator under mpirun: auto, mpi, nccl, local");
  cmd->callback([a] {
    auto comm = cluster::world(a->comm);
    cluster::run_or_abort(*comm, [&] { run_generate(*a); });
  });
}

}  // namespace moelab::cli
