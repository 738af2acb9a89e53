// The memory model of one calibration rank. Every term follows what the code does
// (files named below); the constants that are not shapes (the process baseline) are
// measured by bench/plan_vs_measured.py, which also checks the whole estimate against
// the measured peak RSS (bench/RESULTS.md, "Resource planner").
#include "jobs/resource_plan.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>

#include "cluster/expert_placement.h"
#include "common/error.h"
#include "models/moe_model.h"
#include "results/calibration_stats.h"

namespace moelab::jobs {
namespace {

namespace stat = results::stat;

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Elements of one decoder layer's weights other than its routed experts (attention,
// norms, router, shared experts, dense MLP): count_params of a one-layer config.
int64_t layer_shared_params(const hf::ModelConfig& c, int64_t layer) {
  hf::ModelConfig one = c;
  one.num_hidden_layers = 1;
  one.num_experts_per_layer = {c.num_experts_per_layer[layer]};
  const models::ParamCounts p = models::count_params(one);
  return p.total - p.routed_experts - p.embedding - p.lm_head - c.hidden_size /* final norm */;
}

// Statistic sums of one MoE layer with E experts (results/calibration_stats.h):
// in memory while collecting (in_file = false) or in the HDF5 file (true: the token
// bitmap packed to bits, no outlier thresholds).
int64_t layer_stats_bytes(const std::set<std::string>& g, int64_t E, int64_t F, int64_t D, int64_t V, bool in_file) {
  auto has = [&](const std::string& k) { return g.count(k) != 0; };
  int64_t b = 16 * E;  // usage: tokens_E (int64) + gate_sum_E (f64), always collected
  if (has(stat::kActNorms)) b += 16 * E;
  if (has(stat::kOutNorms)) b += 16 * E;
  if (has(stat::kCoactivation)) b += 8 * E * E;
  if (has(stat::kTokenIds)) b += in_file ? E * ceil_div(V, 8) : E * V;  // bool [E, V] until packed
  if (has(stat::kActMoments) || has(stat::kActOutliers)) b += 16 * E * F;
  if (has(stat::kHiddenChange)) b += 8 * E;
  if (has(stat::kActOutliers)) b += 8 * E + (in_file ? 0 : 16 * E * F);  // + lo/hi thresholds [E, F] f64
  if (has(stat::kGradients)) b += 16 * E + 8 * E * E + 16 * E * F;
  // NAEE: at most --naee-budget (4096) subsets of E flags plus a loss each.
  if (has(stat::kNaee)) b += 4096 * (E + 8);
  if (has(stat::kDenseOutputs)) b += 8 * E * D;
  if (has(stat::kGateRatios)) b += 8 * results::kGateRatioBins;
  // power_sums [E, 2, X, X] f64 with the default X = 3 exponents.
  if (has(stat::kPowerSums)) b += 8 * E * 2 * 9;
  return b;
}

struct Shapes {
  int64_t s = 4;  // bytes per compute value
  int64_t B = 1, T = 1, N = 1;
  int64_t D = 0, V = 0, K = 0, F = 0, H = 0;
  int64_t q_width = 0, k_width = 0, v_width = 0, out_width = 0;
};

Shapes shapes_of(const hf::ModelConfig& c, const ResourceQuery& q) {
  Shapes x;
  x.s = dtype_bytes(q.dtype);
  // The largest batch a rank runs: batch_size sequences, fewer when the set is smaller.
  x.B = q.num_samples > 0 ? std::min(q.batch_size, q.num_samples) : q.batch_size;
  x.T = q.seq_len;
  x.N = x.B * x.T;
  x.D = c.hidden_size;
  x.V = c.vocab_size;
  x.K = c.num_experts_per_tok;
  x.F = c.moe_intermediate_size;
  x.H = c.num_attention_heads;
  if (c.mla) {  // models/attention.cpp: keys and values expanded per head from the latent
    x.q_width = x.H * c.mla->qk_head_dim();
    x.k_width = x.H * c.mla->qk_head_dim() + c.mla->kv_lora_rank + c.mla->qk_rope_head_dim;
    x.v_width = x.H * c.mla->v_head_dim;
    x.out_width = x.H * c.mla->v_head_dim;
  } else {
    x.q_width = x.H * c.head_dim;
    // Keys and values repeated from G to H heads for scaled_dot_product_attention.
    x.k_width = (c.num_key_value_heads + x.H) * c.head_dim;
    x.v_width = (c.num_key_value_heads + x.H) * c.head_dim;
    x.out_width = x.H * c.head_dim;
  }
  return x;
}

// One forward's working set on a rank (models/forward.cpp, attention.cpp, moe_block.cpp,
// cluster/alltoall_dispatcher.cpp, jobs/stats_collector.cpp). Whole-model mode holds
// the residual stream throughout; each layer's attention or MoE temporaries come and
// go, and the logits come after the last layer.
//
// The logits ADD to the largest layer's temporaries instead of reusing their memory:
// measured (bench/plan_vs_measured.py), and what glibc's malloc does: temporaries under
// its mmap threshold (which rises to 32 MiB after the first large free) come from the
// heap, which stays resident when they are freed (only its top is trimmed), while the
// logits, allocated later, are placed anew.
struct ForwardBytes {
  int64_t residual = 0, attention = 0, moe = 0, logits = 0;
  int64_t peak() const { return residual + std::max(attention, moe) + logits; }
};

ForwardBytes forward_bytes(const hf::ModelConfig& c, const Shapes& x, const ResourceQuery& q) {
  auto has = [&](const std::string& k) { return q.groups.count(k) != 0; };
  const int64_t s = x.s, N = x.N, D = x.D;
  ForwardBytes f;
  // h, its norm, the selected valid rows x_ND, and the sum h + y.
  f.residual = 4 * N * D * s;
  // q, k, v projections and their rotated/transposed copies, the attention output and
  // o_proj's; the scores [B, H, T, T] (the unfused CPU kernel with a mask) and the
  // boolean masks [B, 1, T, T].
  f.attention = 2 * N * (x.q_width + x.k_width + x.v_width) * s + N * (x.out_width + D) * s +
                x.B * x.H * x.T * x.T * s + 2 * x.B * x.T * x.T;
  const int P = q.ranks;
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    const int64_t E = c.num_experts_per_layer[l];
    int64_t m = 0;
    if (E == 0) {  // dense MLP: gate, up, act products [N, F_dense]
      m = 4 * N * c.dense_intermediate_size * s;
    } else {
      const int64_t R = N * std::min(x.K, E);  // (token, slot) rows
      // Router logits (compute dtype), probabilities and top-k in float32.
      m += N * E * (s + 8);
      // Rows gathered for the experts, the experts' outputs (list and concatenation),
      // the outputs back on the tokens' rank; under expert parallelism the received
      // rows and their regrouped copy, both ways (cluster/alltoall_dispatcher.cpp; a
      // balanced router: a rank receives as many rows as it sends).
      m += R * D * s * (P > 1 ? 6 : 4);
      // One expert at a time: gate/up [n, 2F], the activation and its product [n, F],
      // with n its rows (twice the balanced share: random and trained routers are uneven).
      const int64_t n = std::min(N, 2 * ceil_div(R, E));
      m += 4 * n * x.F * s;
      // Collectors copy the activation to float64 (norms, moments, outliers, power
      // sums) and the combined outputs [R, D] (output norms, EASY-EP, power sums).
      if (has(stat::kActNorms) || has(stat::kActMoments) || has(stat::kActOutliers) || has(stat::kPowerSums))
        m += 2 * n * x.F * 8;
      if (has(stat::kOutNorms) || has(stat::kHiddenChange) || has(stat::kPowerSums)) m += R * D * 8;
      // Dense observation (NAEE, dense_outputs): every expert on every token, [N, E, D]
      // rows out, back, and as the observer's view.
      if (has(stat::kNaee) || has(stat::kDenseOutputs)) m += 3 * N * E * D * s;
      if (c.shared_expert_intermediate_size > 0) m += 4 * N * c.shared_expert_intermediate_size * s;
    }
    f.moe = std::max(f.moe, m);
  }
  f.logits = N * x.V * s + N * D * s;
  return f;
}

int64_t expert_params(const hf::ModelConfig& c) { return 3 * c.hidden_size * c.moe_intermediate_size; }

}  // namespace

int64_t dtype_bytes(const std::string& dtype) {
  if (dtype == "float32" || dtype == "auto") return 4;
  if (dtype == "bfloat16" || dtype == "float16") return 2;
  if (dtype == "float64") return 8;
  throw InputError("--dtype", "unknown dtype \"" + dtype + "\" (float32, bfloat16, float16, float64)");
}

int max_useful_ranks(const hf::ModelConfig& c) {
  int64_t e = 1;
  for (int64_t n : c.num_experts_per_layer) e = std::max(e, n);
  return int(std::min<int64_t>(e, 4096));
}

ResourcePlan plan_resources(const hf::ModelConfig& c, const ResourceQuery& q) {
  if (q.ranks < 1 || q.ranks > 4096) throw InputError("--ranks", "must be in [1, 4096]");
  if (q.batch_size < 1) throw InputError("--batch-size", "must be positive");
  if (q.seq_len < 1) throw InputError("--seq-len", "must be positive");
  if (q.num_samples < 0) throw InputError("--num-samples", "must be >= 0 (0: all)");
  const Shapes x = shapes_of(c, q);
  const int64_t s = x.s;
  const int P = q.ranks;
  ResourcePlan plan;
  plan.query = q;
  plan.tokens_per_forward = x.N;
  plan.design_estimate = q.layerwise;

  const models::ParamCounts params = models::count_params(c);
  const int64_t file_s = c.torch_dtype == "float32" || c.torch_dtype == "bfloat16" || c.torch_dtype == "float16" ||
                                 c.torch_dtype == "float64"
                             ? dtype_bytes(c.torch_dtype)
                             : s;
  // Whole model: every non-expert weight; layer by layer: embedding, lm_head, final
  // norm and the largest decoder layer's non-expert weights.
  int64_t shared_params = params.total - params.routed_experts;
  if (q.layerwise) {
    int64_t largest = 0;
    for (int64_t l = 0; l < c.num_hidden_layers; ++l) largest = std::max(largest, layer_shared_params(c, l));
    shared_params = params.embedding + params.lm_head + c.hidden_size + largest;
  }
  const ForwardBytes fwd = forward_bytes(c, x, q);
  int64_t stats = 0;
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    const int64_t E = c.num_experts_per_layer[l];
    if (E == 0) continue;
    stats += layer_stats_bytes(q.groups, E, x.F, x.D, x.V, false);
    plan.hdf5_bytes += layer_stats_bytes(q.groups, E, x.F, x.D, x.V, true);
  }
  const bool gradients = q.groups.count(stat::kGradients) != 0;

  cluster::ExpertPlacement place(0, P);
  for (int r = 0; r < P; ++r) {
    RankPlan rp;
    rp.rank = r;
    rp.baseline = P > 1 ? kMpiRankBaselineBytes : kProcessBaselineBytes;
    rp.shared = shared_params * s;
    rp.checkpoint = file_s != s ? shared_params * file_s : 0;
    int64_t held = 0, largest = 0;
    for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
      const int64_t n = place.count(c.num_experts_per_layer[l], r);
      held += n;
      largest = std::max(largest, n);
    }
    rp.experts_held = q.layerwise ? largest : held;
    // model_loader.cpp copies one expert at a time into the stacked tensors.
    rp.experts = (rp.experts_held + (rp.experts_held > 0 ? 1 : 0)) * expert_params(c) * s;
    rp.activations = q.layerwise ? fwd.residual + std::max(fwd.attention, fwd.moe) : fwd.peak();
    if (gradients) {
      // Autograd keeps every layer's activations for the backward pass, the logits'
      // log-softmax and gradient, and one gradient per local expert weight
      // (jobs/expert_gradients.cpp).
      rp.activations += c.num_hidden_layers * (fwd.residual + fwd.attention + fwd.moe) + 2 * fwd.logits +
                        held * expert_params(c) * s;
    }
    rp.statistics = stats;
    plan.ranks.push_back(rp);
  }
  if (q.layerwise) {
    // Hidden states of every calibration token between layers; each rank keeps its own
    // sequences (batches are spread over ranks: cluster/data_parallel.h).
    const int64_t samples = q.num_samples > 0 ? q.num_samples : q.batch_size * P;
    for (auto& rp : plan.ranks) {
      int64_t mine = 0;  // batch b runs on rank b % P
      for (int64_t first = int64_t(rp.rank) * q.batch_size; first < samples; first += int64_t(P) * q.batch_size)
        mine += std::min(q.batch_size, samples - first);
      rp.hidden_states = mine * q.seq_len * x.D * s;
    }
    int64_t worst = 0;
    for (const auto& rp : plan.ranks) worst = std::max(worst, rp.total());
    if (q.budget > 0 && worst > q.budget) {
      // Over the budget: hidden states go to a scratch file; a batch in and one out stay.
      plan.scratch_bytes = samples * q.seq_len * x.D * s;
      for (auto& rp : plan.ranks) rp.hidden_states = 2 * x.N * x.D * s;
    }
  }
  for (const auto& rp : plan.ranks) plan.peak = std::max(plan.peak, rp.total());
  return plan;
}

std::optional<int> smallest_ranks_within(const hf::ModelConfig& c, ResourceQuery q, int64_t budget) {
  for (int p = 1; p <= max_useful_ranks(c); ++p) {
    q.ranks = p;
    if (plan_resources(c, q).peak <= budget) return p;
  }
  return std::nullopt;
}

namespace {

// The number and the unit of "1.5GiB" / "16G" / "4096".
std::pair<double, std::string> split_size(const std::string& text, const std::string& what) {
  size_t i = 0;
  while (i < text.size() && (std::isdigit(static_cast<unsigned char>(text[i])) || text[i] == '.')) ++i;
  std::string num = text.substr(0, i), unit = text.substr(i);
  while (!unit.empty() && unit.front() == ' ') unit.erase(0, 1);
  char* end = nullptr;
  const double v = num.empty() ? -1 : std::strtod(num.c_str(), &end);
  if (num.empty() || *end != '\0' || !(v > 0) || !std::isfinite(v))
    throw InputError(what, "\"" + text + "\" is not a memory size (e.g. 8GiB, 16G, 512MiB)");
  return {v, unit};
}

int64_t to_bytes(double v, double scale, const std::string& text, const std::string& what) {
  const double b = v * scale;
  if (b >= 9.0e18) throw InputError(what, "\"" + text + "\" is too large");
  return int64_t(std::llround(b));
}

}  // namespace

int64_t slurm_mem_bytes(const std::string& text, const std::string& what) {
  auto [v, unit] = split_size(text, what);
  // sbatch --mem: "Default units are megabytes. Different units can be specified using
  // the suffix [K|M|G|T]" (powers of 1024).
  if (unit.empty() || unit == "M") return to_bytes(v, 0x1p20, text, what);
  if (unit == "K") return to_bytes(v, 0x1p10, text, what);
  if (unit == "G") return to_bytes(v, 0x1p30, text, what);
  if (unit == "T") return to_bytes(v, 0x1p40, text, what);
  throw InputError(what, "\"" + text + "\" is not a Slurm memory size (e.g. 8G, 512M)");
}

std::string format_bytes(int64_t bytes) {
  static const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  double v = double(bytes);
  int u = 0;
  while (std::fabs(v) >= 1024 && u < 5) {
    v /= 1024;
    ++u;
  }
  char buf[48];
  if (u == 0)
    std::snprintf(buf, sizeof(buf), "%lld B", static_cast<long long>(bytes));
  else
    std::snprintf(buf, sizeof(buf), v < 10 ? "%.2f %s" : (v < 100 ? "%.1f %s" : "%.0f %s"), v, kUnits[u]);
  return buf;
}

}  // namespace moelab::jobs
