#include "runner/jobs/train/finetune.h"

#include <torch/optim/adamw.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "cluster/data_parallel.h"
#include "core/common/atomic_output.h"
#include "core/common/error.h"
#include "core/common/json_integer.h"
#include "core/common/log.h"
#include "core/common/seeded_shuffle.h"
#include "core/hf/safetensors.h"
#include "core/models/next_token_loss.h"
#include "runner/jobs/calibrate/stop_signal.h"

namespace moelab::jobs {
namespace {

constexpr double kPi = 3.14159265358979323846;

// Example indices of 1-based step s: epochs of the data, each shuffled with seed + epoch.
std::vector<int64_t> batch_of_step(int64_t n, int64_t batch, uint64_t seed, int64_t step) {
  std::vector<int64_t> out;
  int64_t cached_epoch = -1;
  std::vector<int64_t> order;
  for (int64_t i = (step - 1) * batch; i < step * batch; ++i) {
    const int64_t epoch = i / n;
    if (epoch != cached_epoch) {
      order.resize(n);
      for (int64_t k = 0; k < n; ++k) order[k] = k;
      seeded_shuffle(order, seed + uint64_t(epoch));
      cached_epoch = epoch;
    }
    out.push_back(order[i % n]);
  }
  return out;
}

std::string checkpoint_file(const std::string& dir, int rank, int64_t step) {
  return dir + "/rank" + std::to_string(rank) + ".step" + std::to_string(step) + ".safetensors";
}

}  // namespace

double learning_rate(const FinetuneOptions& o, int64_t step) {
  if (o.warmup > 0 && step <= o.warmup) return o.lr * double(step) / double(o.warmup);
  const int64_t span = std::max<int64_t>(1, o.steps - o.warmup);
  const double progress = std::min(1.0, double(step - o.warmup) / double(span));
  return o.min_lr + 0.5 * (o.lr - o.min_lr) * (1 + std::cos(kPi * progress));
}

std::vector<TrainableTensor> trainable_tensors(models::MoeModel& m, const std::string& params) {
  if (params != "full" && params != "router" && params != "experts" && params != "compressed")
    throw InputError("--params", "\"" + params + "\" is not full, router, experts or compressed");
  if (params == "compressed" && !m.config.compressed())
    throw InputError("--params", "compressed trains the vectors of compressed experts, but " + m.config.path +
                                     " has no \"moelab_compressed_experts\" (run moelab compress first)");
  std::vector<TrainableTensor> out;
  std::set<c10::TensorImpl*> seen;
  auto add = [&](const std::string& name, at::Tensor& t, bool replicated) {
    if (!t.defined() || !seen.insert(t.unsafeGetTensorImpl()).second) return;
    out.push_back({name, &t, replicated});
  };
  const bool full = params == "full";
  if (full) add("embed", m.embed_VD, true);
  for (size_t l = 0; l < m.layers.size(); ++l) {
    auto& L = m.layers[l];
    const std::string p = "layers." + std::to_string(l) + ".";
    if (full) {
      add(p + "attn_norm", L.attn_norm_D, true);
      add(p + "ffn_norm", L.ffn_norm_D, true);
      add(p + "attn_norm_bias", L.attn_norm_bias_D, true);  // LayerNorm (Phi-3.5-MoE)
      add(p + "ffn_norm_bias", L.ffn_norm_bias_D, true);
      for (auto [n, t] : {std::pair{"wq", &L.attn.wq_HAD}, {"wk", &L.attn.wk_GAD}, {"wv", &L.attn.wv_GAD},
                          {"wo", &L.attn.wo_DHA}, {"bq", &L.attn.bq}, {"bk", &L.attn.bk}, {"bv", &L.attn.bv},
                          {"bo", &L.attn.bo}, {"q_norm", &L.attn.q_norm_A}, {"k_norm", &L.attn.k_norm_A},
                          {"wq_a", &L.attn.wq_a_RD}, {"q_a_norm", &L.attn.q_a_norm_R}, {"bq_a", &L.attn.bq_a},
                          {"wkv_a", &L.attn.wkv_a_CD}, {"kv_a_norm", &L.attn.kv_a_norm_C}, {"bkv_a", &L.attn.bkv_a},
                          {"wkv_b", &L.attn.wkv_b}})
        add(p + n, *t, true);
      if (L.shared) {  // shared experts: replicated on every rank, like attention
        add(p + "shared.gate", L.shared->mlp.gate_FD, true);
        add(p + "shared.up", L.shared->mlp.up_FD, true);
        add(p + "shared.down", L.shared->mlp.down_DF, true);
        add(p + "shared.expert_gate", L.shared->gate_1D, true);
      }
      if (L.mlp) {
        add(p + "mlp.gate", L.mlp->gate_FD, true);
        add(p + "mlp.up", L.mlp->up_FD, true);
        add(p + "mlp.down", L.mlp->down_DF, true);
      }
    }
    if (!L.moe) continue;
    if (full || params == "router") add(p + "router", L.moe->router_ED, true);
    // Compressed experts' vectors (official ces c1, c2, c3 or moelab-v1 theta): replicated
    // (every rank holds all E rows), gradient summed.
    if (full || params == "compressed") {
      add(p + "ces", L.moe->ces_E3W, true);
      add(p + "experts.theta", L.moe->theta_ED, true);
    }
    if (full || params == "experts") {
      const bool whole = L.moe->all_local();  // every rank holds every expert: replicated
      add(p + "experts.gate_up", L.moe->gate_up_EFD, whole);
      add(p + "experts.down", L.moe->down_EDF, whole);
    }
  }
  if (full) {
    add("final_norm", m.final_norm_D, true);
    add("final_norm_bias", m.final_norm_bias_D, true);
    add("lm_head", m.lm_head_VD, true);
    add("lm_head_bias", m.lm_head_bias_V, true);
  }
  return out;
}

void gather_experts_to_all(models::MoeModel& m, cluster::Communicator& comm) {
  for (auto& L : m.layers) {
    if (!L.moe || L.moe->all_local()) continue;
    at::NoGradGuard no_grad;
    L.moe->gate_up_EFD = comm.all_gather_rows(L.moe->gate_up_EFD.detach().contiguous());
    L.moe->down_EDF = comm.all_gather_rows(L.moe->down_EDF.detach().contiguous());
    for (at::Tensor* b : {&L.moe->gate_up_bias_EF, &L.moe->down_bias_ED})  // gpt-oss
      if (b->defined()) *b = comm.all_gather_rows(b->detach().contiguous());
    L.moe->first_local = 0;
  }
}

std::vector<StepRecord> finetune(models::MoeModel& m, cluster::Communicator& comm,
                                 const std::vector<TrainingExample>& data, const FinetuneOptions& o,
                                 const std::function<void(const StepRecord&)>& after_step) {
  if (data.empty()) throw InputError("training data", "no examples");
  if (o.steps <= 0) throw InputError("--steps", "must be positive");
  if (o.batch_size <= 0) throw InputError("--batch-size", "must be positive");
  if (!(o.lr > 0)) throw InputError("--lr", "must be positive");
  auto trainable = trainable_tensors(m, o.params);
  std::vector<at::Tensor> params;
  for (auto& t : trainable) {
    t.tensor->requires_grad_(true);
    params.push_back(*t.tensor);
  }
  torch::optim::AdamW opt(params, torch::optim::AdamWOptions(o.lr)
                                      .betas({o.beta1, o.beta2})
                                      .eps(o.eps)
                                      .weight_decay(o.weight_decay));

  // Resume: this rank's weights and optimizer state at the checkpoint's step.
  int64_t start = 1;
  const std::string state_path = o.checkpoint_dir + "/state.json";
  if (o.resume || (o.auto_resume && std::filesystem::exists(state_path))) {
    if (o.checkpoint_dir.empty()) throw InputError("--resume", "needs --checkpoint-dir");
    std::ifstream in(state_path);
    if (!in) throw InputError(state_path, "no checkpoint to resume from");
    nlohmann::json st = nlohmann::json::parse(in, nullptr, false);
    if (st.is_discarded() || !st.contains("step")) throw InputError(state_path, "malformed checkpoint state");
    int64_t written_by = 0, step = 0;
    try {
      written_by = json_integer_or(st, "world_size", 0);
      step = json_integer(st["step"], "step");
    } catch (const JsonIntegerError& e) {
      throw InputError(state_path, std::string("malformed checkpoint state: ") + e.what());
    }
    if (written_by != comm.size())
      throw InputError(state_path, "was written by " + std::to_string(written_by) +
                                       " ranks; resume with the same number (" + std::to_string(comm.size()) + " now)");
    if (st.value("params", "") != o.params) throw InputError(state_path, "was written for --params " + st.value("params", ""));
    auto file = hf::SafetensorsFile::open(checkpoint_file(o.checkpoint_dir, comm.rank(), step));
    at::NoGradGuard no_grad;
    for (size_t i = 0; i < trainable.size(); ++i) {
      const std::string& n = trainable[i].name;
      params[i].copy_(file->tensor(n));
      auto s = std::make_unique<torch::optim::AdamWParamState>();
      s->step(step);
      s->exp_avg(file->tensor(n + ".exp_avg").clone());
      s->exp_avg_sq(file->tensor(n + ".exp_avg_sq").clone());
      opt.state()[params[i].unsafeGetTensorImpl()] = std::move(s);
    }
    start = step + 1;
    spdlog::info("resuming after step {} from {}", step, o.checkpoint_dir);
  }
  auto save_checkpoint = [&](int64_t step) {
    std::filesystem::create_directories(o.checkpoint_dir);
    std::vector<std::pair<std::string, at::Tensor>> tensors;
    for (size_t i = 0; i < trainable.size(); ++i) {
      tensors.emplace_back(trainable[i].name, params[i].detach());
      auto it = opt.state().find(params[i].unsafeGetTensorImpl());
      if (it == opt.state().end()) continue;
      auto& s = static_cast<torch::optim::AdamWParamState&>(*it->second);
      tensors.emplace_back(trainable[i].name + ".exp_avg", s.exp_avg());
      tensors.emplace_back(trainable[i].name + ".exp_avg_sq", s.exp_avg_sq());
    }
    hf::write_safetensors(checkpoint_file(o.checkpoint_dir, comm.rank(), step), tensors);
    comm.barrier();  // every rank's file is complete before state.json names the step
    if (comm.rank() == 0) {
      nlohmann::json st = {{"step", step}, {"world_size", comm.size()}, {"params", o.params}};
      write_file_atomic(state_path, st.dump(1));
    }
    comm.barrier();
    // Older steps' files are no longer needed.
    for (const auto& e : std::filesystem::directory_iterator(o.checkpoint_dir)) {
      const std::string f = e.path().filename().string();
      const std::string mine = "rank" + std::to_string(comm.rank()) + ".step";
      if (f.rfind(mine, 0) == 0 && f != std::filesystem::path(checkpoint_file(o.checkpoint_dir, comm.rank(), step)).filename())
        std::filesystem::remove(e.path());
    }
    spdlog::info("checkpoint at step {} in {}", step, o.checkpoint_dir);
  };

  std::ofstream log;
  if (comm.rank() == 0 && !o.log_file.empty()) log.open(o.log_file, start > 1 ? std::ios::app : std::ios::trunc);
  StopOnSignal stop_signal(!o.checkpoint_dir.empty());
  cluster::DataParallelOptions dp;
  dp.batch_size = o.micro_batch > 0 ? o.micro_batch : o.batch_size;
  std::vector<StepRecord> records;
  const char* exit_after = std::getenv("MOELAB_TEST_EXIT_AFTER_STEP");  // tests: a crash mid-run
  const auto t0 = std::chrono::steady_clock::now();
  for (int64_t step = start; step <= o.steps; ++step) {
    const std::vector<int64_t> batch = batch_of_step(int64_t(data.size()), o.batch_size, o.seed, step);
    std::vector<std::vector<int64_t>> seqs;
    std::vector<int64_t> first, lengths;
    for (int64_t i : batch) {
      seqs.push_back(data[i].ids);
      first.push_back(data[i].first_target);
      lengths.push_back(int64_t(data[i].ids.size()));
    }
    const int64_t targets = models::count_next_token_targets(lengths, first);
    if (targets == 0) throw InputError("training data", "step " + std::to_string(step) + " has no targets");
    opt.zero_grad();
    double local_loss = 0;
    cluster::for_each_batch(comm, seqs, dp,
                            [&](const at::Tensor& ids, const std::vector<int64_t>& lens, const std::vector<int64_t>& idx) {
                              std::vector<int64_t> f;
                              for (int64_t i : idx) f.push_back(first[i]);
                              at::Tensor teacher_logits;
                              if (o.teacher) {  // the same batch, no graph (collective under EP, like the model)
                                at::NoGradGuard no_grad;
                                teacher_logits = models::forward(*o.teacher, ids, lens);
                              }
                              at::Tensor logits = models::forward(m, ids, lens);
                              at::Tensor loss =
                                  (o.teacher ? models::distillation_kl_sum(logits, teacher_logits, lens, f,
                                                                           o.kd_temperature)
                                             : models::next_token_nll_sum(logits, ids, lens, f)) /
                                  double(targets);
                              loss.backward();
                              local_loss += loss.item<double>();
                            });
    // Sum replicated gradients over ranks; the global norm counts rank-owned experts once.
    double sq_replicated = 0;
    at::Tensor sq_owned = at::zeros({1}, at::kDouble);
    for (size_t i = 0; i < trainable.size(); ++i) {
      at::Tensor& g = params[i].mutable_grad();
      if (!g.defined()) g = at::zeros_like(params[i]);
      if (trainable[i].replicated) {
        comm.all_reduce_sum(g);
        sq_replicated += g.to(at::kDouble).pow(2).sum().item<double>();
      } else {
        sq_owned += g.to(at::kDouble).pow(2).sum().cpu();
      }
    }
    // The stop request rides along with the loss: every rank learns of it at the same step.
    at::Tensor stats = at::cat({sq_owned, at::tensor({local_loss, stop_signal.requested() ? 1.0 : 0.0}, at::kDouble)});
    comm.all_reduce_sum(stats);
    const bool stop = stats[2].item<double>() > 0;
    if (step == 1 && !o.grads_file.empty()) {
      std::vector<std::pair<std::string, at::Tensor>> grads;
      for (size_t i = 0; i < trainable.size(); ++i) {
        at::Tensor g = params[i].grad();
        if (!trainable[i].replicated) g = comm.all_gather_rows(g.contiguous());
        grads.emplace_back(trainable[i].name, g);
      }
      if (comm.rank() == 0) hf::write_safetensors(o.grads_file, grads);
    }
    StepRecord r;
    r.step = step;
    r.grad_norm = std::sqrt(sq_replicated + stats[0].item<double>());
    r.loss = stats[1].item<double>();
    r.targets = targets;
    r.lr = learning_rate(o, step);
    if (o.clip > 0 && r.grad_norm > o.clip) {  // as torch.nn.utils.clip_grad_norm_
      const double coef = o.clip / (r.grad_norm + 1e-6);
      for (auto& p : params) p.mutable_grad().mul_(coef);
    }
    for (auto& group : opt.param_groups()) static_cast<torch::optim::AdamWOptions&>(group.options()).lr(r.lr);
    opt.step();
    records.push_back(r);
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    spdlog::info("step {}/{}  loss {:.5f}  lr {:.3g}  grad_norm {:.4g}  {} targets  ({:.1f} s)", step, o.steps, r.loss,
                 r.lr, r.grad_norm, r.targets, secs);
    if (log.is_open()) {
      log << nlohmann::json({{"step", step}, {"loss", r.loss}, {"lr", r.lr}, {"grad_norm", r.grad_norm},
                             {"targets", r.targets}})
                 .dump()
          << "\n";
      log.flush();
    }
    if (after_step) after_step(r);
    if (!o.checkpoint_dir.empty() &&
        ((o.checkpoint_every > 0 && step % o.checkpoint_every == 0) || step == o.steps || stop))
      save_checkpoint(step);
    if (stop && step < o.steps) throw TrainingInterrupted(step);
    if (exit_after && std::atoll(exit_after) == step) std::_Exit(137);
  }
  for (auto& t : trainable) {
    t.tensor->mutable_grad() = at::Tensor();
    t.tensor->requires_grad_(false);
  }
  return records;
}

}  // namespace moelab::jobs
