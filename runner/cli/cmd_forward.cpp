// moelab forward: run the model on token ids or text; print next-token predictions
// and/or save logits and routing decisions to a safetensors file.
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cluster/alltoall_dispatcher.h"
#include "cluster/communicator.h"
#include "cluster/data_parallel.h"
#include "core/common/error.h"
#include "core/common/log.h"
#include "core/common/memory_budget.h"
#include "core/hf/safetensors.h"
#include "core/models/layer_loader.h"
#include "core/models/moe_model.h"
#include "core/tokenizer/tokenizer.h"
#include "runner/cli/commands.h"
#include "runner/cli/common_options.h"
#include "runner/cli/layerwise_options.h"
#include "runner/cli/model_options.h"
#include "runner/jobs/calibrate/observer_fanout.h"
#include "runner/jobs/calibrate/skip_counter.h"
#include "runner/jobs/data/calibration_data.h"
#include "runner/jobs/layerwise/layerwise_forward.h"
#include "runner/jobs/memory/memory_guard.h"

namespace moelab::cli {
namespace {

struct ForwardArgs {
  ModelOptions model;
  std::string ids_json, out, comm = "auto";
  std::vector<std::string> texts;
  int top = 0;
  int64_t batch_size = 8;
  bool routing = false;
  LayerwiseArgs lw;
};

// Records top-k expert choices and gate weights per layer, cut per sequence: a
// forward's rows are the batch's valid tokens in order, and on_sequence() is called
// for the batch's sequences in that same order.
class RoutingRecorder : public models::MoeObserver {
 public:
  // layer -> one [len, 2K] tensor (ids then weights, float32) per local sequence
  std::map<int64_t, std::vector<at::Tensor>> per_sequence;
  std::vector<int64_t> sequence_index;

  void on_routing(int64_t layer, const at::Tensor&, const at::Tensor& topk_ids_NK, const at::Tensor& topk_w_NK) override {
    if (pending_.count(layer)) {  // a new forward has started
      pending_.clear();
      cursor_ = 0;
    }
    pending_[layer] = at::cat({topk_ids_NK.to(at::kFloat), topk_w_NK.to(at::kFloat)}, 1).cpu();
  }
  void on_sequence(int64_t index, int64_t len) {
    for (auto& [layer, t] : pending_) per_sequence[layer].push_back(t.narrow(0, cursor_, len));
    sequence_index.push_back(index);
    cursor_ += len;
  }

 private:
  std::map<int64_t, at::Tensor> pending_;
  int64_t cursor_ = 0;
};

void run_forward_on_rank(const ForwardArgs& a) {
  std::vector<std::vector<int64_t>> seqs;
  std::optional<Tokenizer> tok;
  const std::string tok_path = a.model.model_dir + "/tokenizer.json";
  if (std::filesystem::exists(tok_path)) tok = Tokenizer::from_file(tok_path);
  if (!a.ids_json.empty()) {
    seqs = jobs::read_token_id_file(a.ids_json);
    if (seqs.empty()) throw InputError(a.ids_json, "field \"input_ids\" is empty");
    for (const auto& s : seqs)
      if (s.empty()) throw InputError(a.ids_json, "field \"input_ids\": each sequence must be a non-empty list");
  }
  for (const auto& t : a.texts) {
    if (!tok) throw InputError(a.model.model_dir, "--text needs a tokenizer.json in the model directory");
    seqs.push_back(tok->encode(t));
    if (seqs.back().empty()) throw InputError("--text", "text \"" + t + "\" encodes to no tokens");
  }
  if (seqs.empty()) throw InputError("moelab forward", "give --ids-json or --text");

  // Several ranks (mpirun): experts split over ranks, batches over ranks.
  auto comm = cluster::world(a.comm);
  const int64_t baseline = peak_resident_bytes();
  if (a.lw.layerwise && a.routing)
    throw InputError("--routing", "records one whole forward at a time; run it without --layerwise");
  const jobs::LayerwiseOptions lw =
      a.lw.options(a.out.empty() ? std::string(".") : std::filesystem::absolute(a.out).parent_path().string());
  models::LoadOptions load = a.model.load_options();
  models::MoeModel m;
  if (a.lw.layerwise) {  // a shell: every layer is read when its turn comes
    m = load_layerwise_shell(a.model.model_dir, comm, load, lw);
  } else {
    jobs::MemoryCheck check = jobs::holding_model("moelab forward", true);
    check.offer_layerwise = true;
    a.model.check_memory(check, comm->size());
    m = comm->size() > 1 ? cluster::load_expert_parallel(a.model.model_dir, comm, load)
                         : models::load_model(a.model.model_dir, load);
  }
  RoutingRecorder rec;
  std::optional<jobs::SkipCounter> skips;  // NAEE dynamic skipping: how many expert rows it saved
  std::vector<models::MoeObserver*> observers;
  if (a.routing) observers.push_back(&rec);
  if (jobs::skipping_enabled(m.config)) observers.push_back(&skips.emplace(m));
  jobs::ObserverFanOut fan(observers);
  std::vector<int64_t> local_index;
  std::vector<at::Tensor> local_logits;
  cluster::DataParallelOptions dp;
  dp.batch_size = a.batch_size;
  const auto on_logits = [&](int64_t index, const at::Tensor& logits_TV) {
    local_index.push_back(index);
    local_logits.push_back(logits_TV.to(at::kCPU, at::kFloat));
    if (a.routing) rec.on_sequence(index, logits_TV.size(0));
  };
  if (a.lw.layerwise)
    jobs::run_layerwise(m, a.model.model_dir, load, *comm, seqs, dp, lw, observers.empty() ? nullptr : &fan, on_logits);
  else
    cluster::run_data_parallel(m, *comm, seqs, dp, observers.empty() ? nullptr : &fan, on_logits);
  if (a.lw.layerwise) report_peak_memory(baseline, lw, m.device);
  const int64_t S = int64_t(seqs.size());
  std::vector<at::Tensor> logits = cluster::gather_sequence_outputs(*comm, local_index, local_logits, S);
  std::map<int64_t, std::vector<at::Tensor>> routing;
  for (const auto& [layer, pieces] : rec.per_sequence)
    routing[layer] = cluster::gather_sequence_outputs(*comm, rec.sequence_index, pieces, S);
  if (skips) skips->all_reduce(*comm);
  if (comm->rank() != 0) return;  // rank 0 reports and writes
  if (skips) spdlog::info("NAEE dynamic skipping: {}", jobs::describe_skipping(*skips));

  if (a.top > 0) {
    for (size_t b = 0; b < seqs.size(); ++b) {
      at::Tensor last = at::softmax(logits[b][logits[b].size(0) - 1], -1);
      auto [p, idx] = at::topk(last, std::min<int64_t>(a.top, last.size(0)));
      std::cout << "sequence " << b << " (" << logits[b].size(0) << " tokens), next token:\n";
      for (int64_t i = 0; i < p.size(0); ++i) {
        int64_t id = idx[i].item<int64_t>();
        std::cout << "  " << id;
        if (tok) std::cout << "  " << nlohmann::json(tok->decode({id})).dump();
        std::cout << "  p=" << p[i].item<float>() << "\n";
      }
    }
  }
  if (!a.out.empty()) {
    std::vector<std::pair<std::string, at::Tensor>> out;
    for (size_t b = 0; b < seqs.size(); ++b) out.emplace_back("logits." + std::to_string(b), logits[b]);
    for (auto& [l, pieces] : routing) {
      at::Tensor all = at::cat(pieces, 0);
      const int64_t K = all.size(1) / 2;
      out.emplace_back("topk_ids." + std::to_string(l), all.narrow(1, 0, K).to(at::kLong));
      out.emplace_back("topk_weights." + std::to_string(l), all.narrow(1, K, K).contiguous());
    }
    hf::write_safetensors(a.out, out, {{"model", a.model.model_dir}});
    spdlog::info("wrote {} ({} sequences)", a.out, seqs.size());
  }
}

void run_forward(const ForwardArgs& a) {
  auto comm = cluster::world(a.comm);
  cluster::run_or_abort(*comm, [&] { run_forward_on_rank(a); });
}

}  // namespace

void add_forward_command(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "forward",
      "Run the model on token ids or text: print the most likely next tokens, or save logits (and the\n"
      "router's top-k choices per layer) to a safetensors file for comparison with other tools.\n\n"
      "Sequences of different lengths are batched with right padding; padding never reaches the experts.\n"
      "Output tensors: logits.<i> [len_i, vocab] float32 for sequence i; with --routing also\n"
      "topk_ids.<layer> [tokens, k] int64 and topk_weights.<layer> [tokens, k] over the batch's tokens\n"
      "in order.\n\n"
      "Examples:\n"
      "  moelab forward models/debian-moe --text 'The quick brown fox' --top 5\n"
      "  moelab tokenize --tokenizer models/debian-moe --input README.md --output ids.json\n"
      "  moelab forward models/debian-moe --ids-json ids.json --out logits.safetensors --routing\n"
      "  (ids.json: {\"input_ids\": [[1, 2, 3], [4, 5]]} or tokenize's {\"ids\": [...]})\n"
      "  mpirun -np 4 moelab forward models/debian-moe --ids-json ids.json --out logits.safetensors\n"
      "  (expert parallel: each rank holds 1/4 of every layer's experts and runs 1/4 of the batches;\n"
      "   rank 0 writes the output)\n"
      "  moelab forward models/debian-moe --text 'The quick brown fox' --top 5 --layerwise --memory-budget 64M");
  auto a = std::make_shared<ForwardArgs>();
  a->model.add_to(cmd);
  cmd->add_option("--ids-json", a->ids_json, "JSON file {\"input_ids\": [[...], ...]} of pre-tokenized sequences")
      ->check(CLI::ExistingFile);
  cmd->add_option("--text", a->texts, "text to run (repeatable; needs tokenizer.json in the model directory)");
  cmd->add_option("--out", a->out, "write logits (and routing) to this safetensors file");
  cmd->add_option("--top", a->top, "print the N most likely next tokens of each sequence");
  cmd->add_flag("--routing", a->routing, "also save each layer's top-k expert ids and gate weights");
  add_batch_size_option(cmd, &a->batch_size, "sequences per forward pass (each rank runs its own batches)");
  add_comm_option(cmd, &a->comm, "communicator under mpirun: auto (MPI), mpi, nccl (GPU tensors), local");
  a->lw.add_to(cmd,
               "one decoder layer at a time from the safetensors (each rank only its experts), the hidden states "
               "kept between layers: the same logits as the whole model, bit for bit, in a fraction of its "
               "memory; not with --routing",
               "that of --out, else the working directory");
  cmd->callback([a] { run_forward(*a); });
}

}  // namespace moelab::cli
