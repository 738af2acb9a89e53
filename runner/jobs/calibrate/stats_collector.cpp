#include "results/stat_groups.h"
#include "runner/jobs/calibrate/stats_collector.h"

namespace moelab::jobs {
namespace {
at::TensorOptions f64() { return at::TensorOptions().dtype(at::kDouble); }
at::TensorOptions i64() { return at::TensorOptions().dtype(at::kLong); }
}  // namespace

StatsCollector::StatsCollector(const models::MoeModel& m, std::set<std::string> groups)
    : groups_(results::with_required_groups(std::move(groups))), vocab_(m.config.vocab_size) {
  groups_.insert(results::stat::kUsage);  // always: every criterion normalises by it
  for (int64_t l = 0; l < m.config.num_hidden_layers; ++l) {
    if (!m.layers[l].moe) continue;
    const int64_t E = m.layers[l].moe->num_experts(), F = m.layers[l].moe->down_EDF.size(2);
    results::LayerStats s;
    s.layer = l;
    s.tokens_E = at::zeros({E}, i64());
    s.gate_sum_E = at::zeros({E}, f64());
    if (has(results::stat::kActNorms)) {
      s.act_norm_sum_E = at::zeros({E}, f64());
      s.act_norm_sq_sum_E = at::zeros({E}, f64());
    }
    if (has(results::stat::kOutNorms)) {
      s.out_norm_sum_E = at::zeros({E}, f64());
      s.gate_out_norm_sum_E = at::zeros({E}, f64());
    }
    if (has(results::stat::kCoactivation)) s.coactivation_EE = at::zeros({E, E}, i64());
    if (has(results::stat::kActMoments)) {
      s.act_sum_EF = at::zeros({E, F}, f64());
      s.act_sq_sum_EF = at::zeros({E, F}, f64());
    }
    if (has(results::stat::kHiddenChange)) s.easyep_sum_E = at::zeros({E}, f64());
    const int64_t D = m.config.hidden_size;
    if (has(results::stat::kOutMoments)) {
      s.out_sum_ED = at::zeros({E, D}, f64());
      s.out_sq_sum_ED = at::zeros({E, D}, f64());
    }
    if (has(results::stat::kOutMax)) s.out_max_E = at::zeros({E}, f64());
    if (has(results::stat::kTokenIds)) seen_EV_.push_back(at::zeros({E, vocab_}, at::kBool));
    slot_of_layer_[l] = layers_.size();
    layers_.push_back(std::move(s));
  }
}

void StatsCollector::append_state(StateTensors& out) {
  flush_experts();
  for (size_t i = 0; i < layers_.size(); ++i) {
    auto& s = layers_[i];
    const std::string p = "stats.layer" + std::to_string(s.layer) + ".";
    const std::pair<const char*, at::Tensor*> fields[] = {
        {"tokens_E", &s.tokens_E},           {"gate_sum_E", &s.gate_sum_E},
        {"act_norm_sum_E", &s.act_norm_sum_E}, {"act_norm_sq_sum_E", &s.act_norm_sq_sum_E},
        {"out_norm_sum_E", &s.out_norm_sum_E}, {"gate_out_norm_sum_E", &s.gate_out_norm_sum_E},
        {"coactivation_EE", &s.coactivation_EE}, {"act_sum_EF", &s.act_sum_EF},
        {"act_sq_sum_EF", &s.act_sq_sum_EF},   {"easyep_sum_E", &s.easyep_sum_E},
        {"out_sum_ED", &s.out_sum_ED},         {"out_sq_sum_ED", &s.out_sq_sum_ED},
        {"out_max_E", &s.out_max_E}};
    for (const auto& [name, t] : fields)
      if (t->defined()) out.emplace_back(p + name, t);
    if (i < seen_EV_.size()) out.emplace_back(p + "seen_EV", &seen_EV_[i]);
  }
}

void StatsCollector::on_batch(const at::Tensor& token_ids_N) { batch_ids_N_ = token_ids_N.to(at::kLong).cpu(); }

void StatsCollector::start_outlier_pass() {
  outlier_pass_ = true;
  for (auto& s : layers_) {
    // Per-channel population mean and std over the expert's routed tokens (pass 1).
    at::Tensor n = s.tokens_E.to(at::kDouble).clamp_min(1).unsqueeze(1);
    at::Tensor mean = s.act_sum_EF / n;
    at::Tensor std = (s.act_sq_sum_EF / n - mean.pow(2)).clamp_min(0).sqrt();
    lo_EF_.push_back(mean - 3 * std);
    hi_EF_.push_back(mean + 3 * std);
    s.act_outliers_E = at::zeros({s.tokens_E.size(0)}, i64());
  }
}

void StatsCollector::all_reduce_outliers(cluster::Communicator& comm) {
  for (auto& s : layers_) comm.all_reduce_sum(s.act_outliers_E);
}

void StatsCollector::on_routing(int64_t layer, const at::Tensor&, const at::Tensor& topk_ids_NK,
                                const at::Tensor& topk_w_NK) {
  if (outlier_pass_) return;
  const size_t slot = slot_of_layer_.at(layer);
  auto& s = layers_[slot];
  const int64_t E = s.tokens_E.size(0), K = topk_ids_NK.size(1);
  at::Tensor ids = topk_ids_NK.cpu(), flat = ids.reshape(-1);
  s.tokens_E += at::bincount(flat, {}, E);
  s.gate_sum_E.index_add_(0, flat, topk_w_NK.cpu().to(at::kDouble).reshape(-1));
  if (has(results::stat::kCoactivation)) {
    // Every ordered pair (j, k) of a token's experts, j != k, plus the diagonal.
    at::Tensor a = ids.unsqueeze(2).expand({-1, K, K}).reshape(-1);
    at::Tensor b = ids.unsqueeze(1).expand({-1, K, K}).reshape(-1);
    s.coactivation_EE.view(-1).index_add_(0, a * E + b, at::ones({a.size(0)}, i64()));
  }
  if (has(results::stat::kTokenIds) && batch_ids_N_.numel() > 0) {
    at::Tensor tok = batch_ids_N_.unsqueeze(1).expand({-1, K}).reshape(-1);
    seen_EV_[slot].view(-1).index_fill_(0, flat * vocab_ + tok, true);
  }
}

void StatsCollector::on_expert(int64_t layer, int64_t e, const at::Tensor&, const at::Tensor& act_nF,
                               const at::Tensor& out_nD, const at::Tensor& gate_n) {
  const size_t slot = slot_of_layer_.at(layer);
  auto& s = layers_[slot];
  if (outlier_pass_) {
    at::Tensor act = act_nF.detach().to(at::kCPU, at::kDouble);
    at::Tensor out = (act < lo_EF_[slot][e]).logical_or(act > hi_EF_[slot][e]);
    s.act_outliers_E[e] += out.sum();
    return;
  }
  if (has(results::stat::kActNorms) || has(results::stat::kOutNorms)) {
    if (rows_.layer() != layer) flush_experts();
    rows_.add(layer, e, act_nF, out_nD, gate_n, has(results::stat::kActNorms));
  }
  if (has(results::stat::kActMoments)) {
    at::Tensor act = act_nF.detach().to(at::kCPU, at::kDouble);
    s.act_sum_EF[e] += act.sum(0);
    s.act_sq_sum_EF[e] += act.pow(2).sum(0);
  }
  if ((has(results::stat::kOutMoments) || has(results::stat::kOutMax)) && out_nD.size(0) > 0) {
    at::Tensor out = out_nD.detach().to(at::kCPU, at::kDouble);
    if (has(results::stat::kOutMoments)) {
      s.out_sum_ED[e] += out.sum(0);
      s.out_sq_sum_ED[e] += out.pow(2).sum(0);
    }
    if (has(results::stat::kOutMax)) s.out_max_E[e] = std::max(s.out_max_E[e].item<double>(), out.max().item<double>());
  }
}

// Per row: ||a|| and ||f|| in float64 (each element squared and summed in float64, as
// the statistics are defined), then summed per expert with index_add_ over the rows'
// expert ids.
void StatsCollector::flush_experts() {
  if (!rows_.empty()) {
    auto& s = layers_[slot_of_layer_.at(rows_.layer())];
    const at::Tensor expert_M = rows_.expert_ids();
    if (has(results::stat::kActNorms)) {
      const at::Tensor norm_M = rows_.act_norms();
      s.act_norm_sum_E.index_add_(0, expert_M, norm_M);
      s.act_norm_sq_sum_E.index_add_(0, expert_M, norm_M * norm_M);
    }
    if (has(results::stat::kOutNorms)) {
      const at::Tensor norm_M = rows_.out_norms();
      s.out_norm_sum_E.index_add_(0, expert_M, norm_M);
      s.gate_out_norm_sum_E.index_add_(0, expert_M, rows_.gates() * norm_M);
    }
  }
  rows_.clear();
}

void StatsCollector::on_combine(int64_t layer, const at::Tensor& expert_R, const at::Tensor& token_R,
                                const at::Tensor& gate_R, const at::Tensor& out_RD) {
  flush_experts();  // this layer's experts have all run
  if (outlier_pass_ || !has(results::stat::kHiddenChange)) return;
  at::Tensor norm_R = out_RD.to(at::kCPU, at::kDouble).norm(2, 1);
  pending_[layer] = {expert_R.cpu(), token_R.cpu(), gate_R.to(at::kCPU, at::kDouble) * norm_R};
}

// EASY-EP (RUCAIBox/EASYEP, pruning/model_new.py and expert_selection.py): each
// routed row's g_j(x) ||f_j(x)|| is weighted by max(0, 1 - cos(h_in, h_out)), with
// h_in the residual stream entering the MoE block and h_out = h_in + the block's
// routed output (their `x_before_moe` and `x_after_rmoe`).
void StatsCollector::on_moe_output(int64_t layer, const at::Tensor& h_in_ND, const at::Tensor& y_ND) {
  if (outlier_pass_ || !has(results::stat::kHiddenChange)) return;
  auto it = pending_.find(layer);
  if (it == pending_.end()) return;
  const PendingRows rows = std::move(it->second);
  pending_.erase(it);
  if (rows.token_R.numel() == 0) return;
  // In float64: 1 - cos is small (about 1e-3 here), and float32 (EASYEP's choice)
  // rounds cos at 1e-7 absolute, i.e. up to 1e-4 relative to 1 - cos.
  at::Tensor h_in = h_in_ND.to(at::kCPU, at::kDouble);
  at::Tensor h_out = h_in + y_ND.to(at::kCPU, at::kDouble);
  at::Tensor cos_N = at::cosine_similarity(h_in, h_out, 1, 1e-8);
  at::Tensor weight_N = (1 - cos_N).clamp_min(0);
  auto& s = layers_[slot_of_layer_.at(layer)];
  s.easyep_sum_E.index_add_(0, rows.expert_R, rows.gate_norm_R * weight_N.index_select(0, rows.token_R));
}

void StatsCollector::all_reduce(cluster::Communicator& comm) {
  flush_experts();
  for (size_t i = 0; i < layers_.size(); ++i) {
    auto& s = layers_[i];
    for (at::Tensor* t : {&s.tokens_E, &s.gate_sum_E, &s.act_norm_sum_E, &s.act_norm_sq_sum_E, &s.out_norm_sum_E,
                          &s.gate_out_norm_sum_E, &s.coactivation_EE, &s.act_sum_EF, &s.act_sq_sum_EF, &s.easyep_sum_E,
                          &s.out_sum_ED, &s.out_sq_sum_ED})
      if (t->defined()) comm.all_reduce_sum(*t);
    // A maximum, not a sum: every rank's row, then the largest per expert.
    if (s.out_max_E.defined()) s.out_max_E = std::get<0>(comm.all_gather_rows(s.out_max_E.unsqueeze(0)).max(0)).contiguous();
    if (has(results::stat::kTokenIds)) {
      at::Tensor seen = seen_EV_[i].to(at::kInt);
      comm.all_reduce_sum(seen);
      // Pack to bits, least significant bit first within a byte: bit v%8 of byte v/8.
      const int64_t E = seen.size(0), W = (vocab_ + 7) / 8;
      at::Tensor bits = at::zeros({E, W * 8}, at::kLong);
      bits.narrow(1, 0, vocab_).copy_(seen > 0);
      at::Tensor weights = at::pow(2, at::arange(8, at::kLong));
      s.token_bitmap_EW = (bits.view({E, W, 8}) * weights).sum(2).to(at::kByte);
    }
  }
}

results::CalibrationStats StatsCollector::take() {
  flush_experts();
  results::CalibrationStats st;
  st.collected = groups_;
  st.layers = std::move(layers_);
  return st;
}

}  // namespace moelab::jobs
