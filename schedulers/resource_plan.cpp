// The memory model of one calibration rank. Every term follows what the code does
// (files named below); the constants that are not shapes (the process baseline) are
// measured by bench/plan_vs_measured.py, which also checks the whole estimate against
// the measured peak RSS (bench/RESULTS.md, "Resource planner").
#include "schedulers/resource_plan.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>

#include "cluster/expert_placement.h"
#include "core/common/error.h"
#include "core/models/family.h"
#include "core/models/moe_model.h"
#include "results/calibration_stats.h"
#include "results/stat_groups.h"

namespace moelab::schedulers {
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

// Elements of the largest weight every rank holds (embedding or lm_head, a projection,
// a dense or shared MLP matrix): the loader converts one tensor at a time and drops its
// mapped pages after (core/models/tensor_taker.h), so this one's pages are the most resident.
int64_t largest_shared_tensor(const hf::ModelConfig& c) {
  const int64_t D = c.hidden_size;
  const int64_t q_width = c.mla ? c.num_attention_heads * c.mla->qk_head_dim() : c.num_attention_heads * c.head_dim;
  return std::max({c.vocab_size * D, q_width * D, c.dense_intermediate_size * D,
                   c.shared_expert_intermediate_size * D});
}

// Statistic sums of one MoE layer with E experts (results/calibration_stats.h):
// in memory while collecting (in_file = false) or in the HDF5 file (true: the token
// bitmap packed to bits, no outlier thresholds).
int64_t layer_stats_bytes(const std::set<std::string>& g, int64_t E, int64_t F, int64_t D, int64_t V, bool in_file) {
  const results::StatSizes sizes{E, F, D, V};
  int64_t b = 0;
  // usage is always collected; a group's required groups (act_outliers' act_moments) too.
  std::set<std::string> groups = results::with_required_groups(g);
  groups.insert(stat::kUsage);
  for (const auto& group : results::stat_groups())
    if (groups.count(group.name)) b += group.layer_bytes(sizes, in_file);
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
  if (c.mla) {  // core/models/attention.cpp: keys and values expanded per head from the latent
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

// One forward's working set on a rank (core/models/forward.cpp, attention.cpp, moe_block.cpp,
// cluster/alltoall_dispatcher.cpp, runner/jobs/calibrate/stats_collector.cpp). Whole-model mode holds
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
  if (c.attn.output_gate) f.attention += 2 * N * x.q_width * s;  // q_proj's gate half and sigmoid(gate)
  if (c.linear_attn && !c.linear_layers.empty()) {
    // A Gated DeltaNet layer (core/models/gated_deltanet.cpp), chunks of 64 tokens over Tp, the
    // length padded to whole chunks: the input projections [N, 2K + 2V + 2Hv]; the
    // convolution's output and activation [N, C]; q, k, v per value head in float32 as
    // prepared and beta-scaled (2 copies); the chunk matrices (decay, system,
    // within-chunk attention) [B, Hv, Tp, 64] float32; the solved values and decayed keys,
    // the decayed queries and keys [B, Hv, Tp, 2 Dv + 4 Dk] float32; the output, its norm
    // and gate [N, V] float32 (3) and out_proj's [N, D]. Measured within 15% by
    // bench/plan_vs_measured.py --family qwen3_next.
    const auto& a = *c.linear_attn;
    const int64_t Hv = a.num_v_heads, Tp = ceil_div(x.T, 64) * 64;
    const int64_t linear = N * (2 * a.key_dim() + 2 * a.value_dim() + 2 * Hv) * s + 2 * N * a.conv_dim() * s +
                           2 * N * Hv * (2 * a.k_head_dim + a.v_head_dim) * 4 + 3 * x.B * Hv * Tp * 64 * 4 +
                           x.B * Hv * Tp * (2 * a.v_head_dim + 4 * a.k_head_dim) * 4 + 3 * N * a.value_dim() * 4 +
                           N * D * s;
    f.attention = std::max(f.attention, linear);
  }
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
      if (has(stat::kOutNorms) || has(stat::kHiddenChange) || has(stat::kPowerSums) || has(stat::kOutMoments) ||
          has(stat::kOutMax))
        m += R * D * 8;
      // Dense observation (NAEE, dense_outputs): every expert on every token, [N, E, D]
      // rows out, back, and as the observer's view.
      if (has(stat::kNaee) || has(stat::kDenseOutputs)) m += 3 * N * E * D * s;
      if (c.shared_expert_intermediate_size > 0) m += 4 * N * c.shared_expert_intermediate_size * s;
    }
    f.moe = std::max(f.moe, m);
  }
  // calibrate's pass stops at the last layer's hidden states (models::observe_forward)
  // unless gradients need the loss; eval and forward compute the logits.
  const bool logits = q.command != PlannedCommand::Calibrate || q.groups.count(stat::kGradients) != 0;
  f.logits = logits ? N * x.V * s + N * D * s : 0;
  return f;
}

int64_t expert_params(const hf::ModelConfig& c) { return 3 * c.hidden_size * c.moe_intermediate_size; }

// One batch through one decoder layer, layer by layer (models::decoder_layer_forward,
// moe_block.cpp, cluster/alltoall_dispatcher.cpp, the collectors' on_* calls). There
// every block of 128 KiB or more is its own mapping, unmapped when freed
// (map_large_blocks), so what counts is the most that is alive AT ONCE, not the
// sum of every temporary as in the whole-model pass (forward_bytes): the residual
// stream plus the largest of these moments (measured: bench/plan_vs_measured.py):
//   attention   as forward_bytes (projections, scores, masks);
//   expert      the rows on this rank's experts x_MD and the outputs so far [R', D],
//               the largest expert's gate/up [n, 2F] and activation [n, F], and either
//               the activation's function before the product [n, F] or the
//               collectors' float64 copy of the activation and its square (2 [n, F]);
//   combine     x_MD, the outputs, the outputs on the tokens' rank (under expert
//               parallelism also their reordered copy) and the collectors' float64
//               copy [R, D];
//   observed    after the block: the routed output and the hidden states before it
//               [N, D] with hidden_change's float64 copies (before, after, sum);
//   dense       dense observation (dense_outputs): [N, E, D] rows out, back and viewed;
//   mlp         a dense MLP's or the shared experts' gate, up and products [N, F'].
// R' = the rows a rank receives (as many as it sends: a balanced router), n = 1.5 times
// the balanced share of one expert of all the ranks' rows (routers are uneven; twice it,
// as forward_bytes takes, over-planned the layer-by-layer peaks by up to 19% at P = 2,
// where one step pools every rank's batch and evens the experts out: bench/RESULTS.md),
// the router's logits and probabilities alive throughout.
int64_t layer_forward_bytes(const hf::ModelConfig& c, const Shapes& x, const ResourceQuery& q, int64_t residual,
                            int64_t attention) {
  auto has = [&](const std::string& k) { return q.groups.count(k) != 0; };
  const int64_t s = x.s, N = x.N, D = x.D, F = x.F;
  const int P = q.ranks;
  // Ranks with a batch in a step (the others only serve their experts).
  const int64_t batches = q.num_samples > 0 ? ceil_div(q.num_samples, q.batch_size) : P;
  const int64_t active = std::max<int64_t>(1, std::min<int64_t>(P, batches));
  const bool act_f64 = has(stat::kActNorms) || has(stat::kActMoments) || has(stat::kPowerSums);
  const bool out_f64 = has(stat::kOutNorms) || has(stat::kPowerSums) || has(stat::kOutMoments) || has(stat::kOutMax);
  int64_t most = attention;
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    const int64_t E = c.num_experts_per_layer[l];
    if (E == 0) {
      most = std::max(most, N * D * s + 4 * N * c.dense_intermediate_size * s);
      continue;
    }
    const int64_t R = N * std::min(x.K, E);
    const int64_t R_in = ceil_div(active * R, P);                   // rows this rank's experts receive
    const int64_t n = std::min(active * N, 3 * ceil_div(active * R, E) / 2);  // rows of the largest expert
    const int64_t router = N * E * (s + 8);
    const int64_t expert = 2 * R_in * D * s + 3 * n * F * s + (act_f64 ? 2 * n * F * 8 : n * F * s);
    const int64_t combine = (P > 1 ? 3 * R_in + R : 3 * R_in) * D * s + (out_f64 ? R * D * 8 : 0);
    int64_t moe = std::max(expert, combine);
    if (has(stat::kHiddenChange)) moe = std::max(moe, 2 * N * D * s + 3 * N * D * 8);
    if (has(stat::kDenseOutputs)) moe = std::max(moe, 2 * R_in * D * s + 3 * N * E * D * s);
    if (c.shared_expert_intermediate_size > 0)
      moe = std::max(moe, N * D * s + 4 * N * c.shared_expert_intermediate_size * s);
    most = std::max(most, router + moe);
  }
  return residual + most;
}


int64_t file_bytes_per_value(const hf::ModelConfig& c, int64_t compute_bytes) {
  return c.torch_dtype == "float32" || c.torch_dtype == "bfloat16" || c.torch_dtype == "float16" ||
                 c.torch_dtype == "float64"
             ? dtype_bytes(c.torch_dtype)
             : compute_bytes;
}

// What eval and forward keep of the logits beyond one batch's [B, T, V] (in the plan's
// activations), per rank: eval scores one sequence at a time (its rows in float32 and
// their log-softmax, runner/jobs/eval/sequence_scores.cpp); forward keeps every sequence's logits in
// float32 and gathers them on rank 0 (cmd_forward.cpp), so rank 0 holds all of them.
int64_t kept_logits_bytes(const hf::ModelConfig& c, const ResourceQuery& q, int rank) {
  const int64_t T = q.seq_len, V = c.vocab_size;
  if (q.command == PlannedCommand::Eval) return 2 * T * V * 4;
  if (q.command != PlannedCommand::Forward) return 0;
  const int64_t S = q.num_samples > 0 ? q.num_samples : q.batch_size * q.ranks;
  if (rank == 0) return S * T * V * 4;
  int64_t mine = 0;
  for (int64_t first = int64_t(rank) * q.batch_size; first < S; first += int64_t(q.ranks) * q.batch_size)
    mine += std::min(q.batch_size, S - first);
  return mine * T * V * 4;
}

// Pruning by surgery (core/models/checkpoint_surgery.cpp): one tensor at a time, copied from
// the mapped input (its pages resident until written, then dropped) or, when its first
// axis indexes experts, sliced to the kept rows (a copy beside the pages). The largest
// tensor is the embedding or lm_head, a projection, a dense or shared MLP matrix, an
// expert's matrix, or a layer's fused experts [E, 2F, D] in the fused layouts; the
// sliced ones are the routers [E, D] and fused experts. Stored dtype throughout (the
// output is written in it).
ResourcePlan plan_surgery(const hf::ModelConfig& c, const ResourceQuery& q) {
  const int64_t file_s = file_bytes_per_value(c, dtype_bytes(q.dtype));
  const models::FamilySpec& family = models::family_for(c);
  const bool fused = family.experts_fused_transposed || family.load_experts != nullptr;
  int64_t E = 0;
  for (int64_t n : c.num_experts_per_layer) E = std::max(E, n);
  const int64_t D = c.hidden_size, F = c.moe_intermediate_size;
  const int64_t fused_experts = q.largest_tensor_bytes > 0 ? q.largest_fused_experts_bytes
                                : (fused ? E * 2 * F * D * file_s : 0);
  const int64_t largest = q.largest_tensor_bytes > 0
                              ? q.largest_tensor_bytes
                              : std::max({largest_shared_tensor(c) * file_s, F * D * file_s, fused_experts});
  const int64_t sliced = std::max(E * D * file_s, fused_experts);
  ResourcePlan plan;
  plan.query = q;
  RankPlan rp;
  rp.baseline = kProcessBaselineBytes;
  rp.checkpoint = largest;
  rp.activations = std::max<int64_t>(0, 2 * sliced - rp.checkpoint);  // a sliced copy beside its pages
  plan.ranks.push_back(rp);
  plan.peak = rp.total();
  return plan;
}

}  // namespace

PlannedCommand planned_command(const std::string& name) {
  if (name == "calibrate") return PlannedCommand::Calibrate;
  if (name == "eval") return PlannedCommand::Eval;
  if (name == "forward") return PlannedCommand::Forward;
  if (name == "prune") return PlannedCommand::Prune;
  throw InputError("--command", "unknown command \"" + name + "\" (calibrate, eval, forward, prune)");
}

const char* planned_command_name(PlannedCommand command) {
  switch (command) {
    case PlannedCommand::Calibrate: return "calibrate";
    case PlannedCommand::Eval: return "eval";
    case PlannedCommand::Forward: return "forward";
    case PlannedCommand::Prune: return "prune";
  }
  return "calibrate";
}

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

int64_t layerwise_memory_budget(const ResourceQuery& q) {
  if (q.memory_budget > 0) return q.memory_budget;
  if (q.budget <= 0) return 0;
  // calibrate counts its budget from its own size at start: the process baseline.
  return std::max<int64_t>(1, q.budget - (q.ranks > 1 ? kMpiRankBaselineBytes : kProcessBaselineBytes));
}

ResourcePlan plan_resources(const hf::ModelConfig& c, const ResourceQuery& query) {
  ResourceQuery q = query;
  // eval and forward collect nothing: no statistics, no collectors' copies.
  const bool logits_job = q.command == PlannedCommand::Eval || q.command == PlannedCommand::Forward;
  if (logits_job) q.groups.clear();
  if (q.ranks < 1 || q.ranks > 4096) throw InputError("--ranks", "must be in [1, 4096]");
  if (q.batch_size < 1) throw InputError("--batch-size", "must be positive");
  if (q.seq_len < 1) throw InputError("--seq-len", "must be positive");
  if (q.num_samples < 0) throw InputError("--num-samples", "must be >= 0 (0: all)");
  if (q.memory_budget < 0) throw InputError("--memory-budget", "must be positive");
  if (q.command == PlannedCommand::Prune) return plan_surgery(c, q);
  const Shapes x = shapes_of(c, q);
  const int64_t s = x.s;
  const int P = q.ranks;
  ResourcePlan plan;
  plan.query = q;
  plan.tokens_per_forward = x.N;

  const models::ParamCounts params = models::count_params(c);
  const int64_t file_s = file_bytes_per_value(c, s);
  // Whole model: every non-expert weight.
  const int64_t shared_params = params.total - params.routed_experts;
  const ForwardBytes fwd = forward_bytes(c, x, q);
  int64_t stats = 0;
  for (int64_t l = 0; l < c.num_hidden_layers && !logits_job; ++l) {
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
    rp.statistics = stats;
    if (q.layerwise) {
      // One decoder layer at a time (core/models/layer_loader.h load_layer): its non-expert
      // weights and this rank's experts, copied out of the mapping in the compute
      // dtype; the largest such layer on this rank is the peak.
      int64_t best = -1;
      for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
        const int64_t shared_l = layer_shared_params(c, l), held_l = place.count(c.num_experts_per_layer[l], r);
        const int64_t bytes = (shared_l + held_l * expert_params(c)) * s;
        if (bytes > best) {
          best = bytes;
          rp.shared = shared_l * s;
          rp.experts_held = held_l;
          rp.experts = held_l * expert_params(c) * s;
        }
      }
      rp.layer_bytes = rp.shared + rp.experts;
      // The largest of: one batch through one layer (no logits); loading a layer's
      // expert: its three matrices' mapped pages, resident while they are copied (and
      // converted) into the layer's stacked experts; and, before the first layer (no layer held then: counted here
      // less the layer), one batch's embeddings (models::embed_from_checkpoint): the
      // mapped pages of its rows (a page at least each, at most the whole matrix), the
      // gathered rows and their conversion to the compute dtype.
      const int64_t load = rp.experts_held > 0 ? expert_params(c) * file_s : 0;
      const int64_t row = x.D * file_s;
      const int64_t embed = std::min(std::min(x.V, x.N) * std::max<int64_t>(row, 4096), x.V * row) + x.N * row +
                            (file_s != s ? x.N * x.D * s : 0);
      // eval and forward, after the last layer (models::load_output_head): the final
      // norm and lm_head copied out of the mapping (its pages resident while copied),
      // then each batch's normed states and logits and what the command keeps of them.
      int64_t head = 0;
      if (logits_job) {
        const int64_t lm_head = x.V * x.D;
        head = std::max(lm_head * (s + file_s),
                        lm_head * s + x.N * (x.D + x.V) * s + kept_logits_bytes(c, q, r));
      }
      rp.activations = std::max({layer_forward_bytes(c, x, q, fwd.residual, fwd.attention), load,
                                 embed - rp.layer_bytes, head - rp.layer_bytes});
    } else {
      int64_t held = 0;
      for (int64_t l = 0; l < c.num_hidden_layers; ++l) held += place.count(c.num_experts_per_layer[l], r);
      rp.experts_held = held;
      rp.shared = shared_params * s;
      rp.checkpoint = file_s != s ? largest_shared_tensor(c) * file_s : 0;
      // model_loader.cpp copies one expert at a time into the stacked tensors.
      rp.experts = (held + (held > 0 ? 1 : 0)) * expert_params(c) * s;
      rp.activations = fwd.peak() + kept_logits_bytes(c, q, r);
      if (gradients) {
        // Autograd keeps every layer's activations for the backward pass, the logits'
        // log-softmax and gradient, and one gradient per local expert weight
        // (runner/jobs/calibrate/expert_gradients.cpp).
        rp.activations += c.num_hidden_layers * (fwd.residual + fwd.attention + fwd.moe) + 2 * fwd.logits +
                          held * expert_params(c) * s;
      }
    }
    plan.ranks.push_back(rp);
  }
  if (q.layerwise) {
    // Hidden states of this rank's calibration sequences between layers: batch b runs
    // on rank b % P (cluster/data_parallel.h), each [B, T, D] in the compute dtype.
    // calibrate keeps them in memory when they take at most half of what the largest
    // layer leaves of --memory-budget; else they are in a scratch file, and only the
    // batch read back from it is resident (its output is the forward's residual).
    const int64_t samples = q.num_samples > 0 ? q.num_samples : q.batch_size * P;
    const int64_t memory_budget = layerwise_memory_budget(q);
    for (auto& rp : plan.ranks) {
      int64_t mine = 0;
      for (int64_t first = int64_t(rp.rank) * q.batch_size; first < samples; first += int64_t(P) * q.batch_size)
        mine += std::min(q.batch_size, samples - first);
      const int64_t state_bytes = mine * q.seq_len * x.D * s;
      rp.scratch = memory_budget > 0 && state_bytes > (memory_budget - rp.layer_bytes) / 2;
      rp.hidden_states = rp.scratch ? std::min(mine, x.B) * q.seq_len * x.D * s : state_bytes;
      if (rp.scratch) plan.scratch_bytes += state_bytes;
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

}  // namespace moelab::schedulers
