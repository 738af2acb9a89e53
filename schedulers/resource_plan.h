// How much memory one rank of `moelab calibrate` needs, from config.json alone (no
// weights are read): what `moelab plan-resources` prints and what sweeps check a
// calibration job's `mem` against before running or submitting it.
//
// It lives in jobs/ because it models a job (calibrate: collect_statistics.h) and the
// schedulers, which link jobs, use it; it needs the config parsing of models/ and the
// criteria's statistic groups, both below jobs.
//
// All figures are BYTES, per rank, of resident memory (what /usr/bin/time -f %M
// reports as peak RSS), split into components:
//   baseline      the process itself: libtorch's CPU part, MPI, the program (measured,
//                 bench/RESULTS.md "Resource planner");
//   shared        weights every rank holds: embeddings, lm_head, norms, attention,
//                 routers, shared experts, dense MLP layers, in the compute dtype;
//   checkpoint    when the compute dtype differs from the file's, the mapped pages of
//                 the largest of those weights while it is converted (the loader drops
//                 each tensor's pages once it is converted); 0 otherwise (the weights
//                 are then views of the mapped file);
//   experts       this rank's routed experts (contiguous block of every MoE layer,
//                 cluster/expert_placement.h), 3 D F values each, plus the one expert
//                 being copied while loading;
//   activations   the working set of one forward over batch_size x seq_len tokens:
//                 residual stream, attention (q, k, v, scores), router logits and
//                 probabilities, dispatch buffers (rows sent to and received from the
//                 experts' ranks), per-expert intermediates, the logits, and what the
//                 statistic collectors convert to float64; plus, with gradients, what
//                 autograd keeps for the backward pass and the experts' gradients;
//   statistics    the statistic groups' sums (results/calibration_stats.h shapes, every
//                 layer, every expert: sums are all-reduced in place on every rank);
//   hidden_states layer-by-layer mode only: the hidden states of this rank's
//                 calibration tokens kept between layers, or, when they go to a scratch
//                 file, the one batch read back from it.
// Layer by layer (runner/jobs/layerwise/layerwise_calibration.cpp), "shared" and "experts" are ONE
// decoder layer's weights on this rank (the largest), copied out of the mapping
// (checkpoint = 0: the mapped pages are dropped); the embedding and lm_head are never
// held (a batch's embedding rows are gathered from the mapping, and no logits are
// computed); "activations" is the largest of one batch's forward through one layer
// (no logits), the copy of one expert while a layer loads, and (less the layer, which
// is not held yet then) one batch's embedding rows gathered before the first layer.
// The HDF5 output (written by rank 0) is a disk figure, not part of the peak.
#pragma once

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "core/hf/model_config.h"

namespace moelab::schedulers {

// The process baseline (bytes): the measured peak RSS of `moelab calibrate` on the
// 3-layer test fixture (weights under 3 MiB, activations under 2 MiB), as a plain
// process (P = 1, as sweeps run one-rank jobs) and as a rank under mpirun. libtorch's
// CPU part alone is ~124 MiB (bench/RESULTS.md, expert parallelism).
inline constexpr int64_t kProcessBaselineBytes = 145LL << 20;
inline constexpr int64_t kMpiRankBaselineBytes = 150LL << 20;

// The command whose memory is planned. calibrate: the statistics sums and collectors;
// eval and forward: no statistics, the logits of a batch and what the command keeps of
// them (eval: one sequence's log-probabilities; forward: every sequence's logits, gathered
// on rank 0); layer by layer also the output head's load at the end; prune: surgery on
// the checkpoint files (core/models/checkpoint_surgery.h), one tensor at a time.
enum class PlannedCommand { Calibrate, Eval, Forward, Prune };

// "calibrate" | "eval" | "forward" | "prune"; throws InputError("--command", ...).
PlannedCommand planned_command(const std::string& name);
const char* planned_command_name(PlannedCommand command);

struct ResourceQuery {
  PlannedCommand command = PlannedCommand::Calibrate;
  int ranks = 1;                 // P
  std::string dtype = "float32"; // compute dtype: float32 | bfloat16 | float16 | float64
  int64_t batch_size = 8;        // sequences per forward (calibrate --batch-size)
  int64_t seq_len = 512;         // tokens per sequence
  int64_t num_samples = 128;     // sequences in the calibration set (0: unknown, "all"); eval: windows
  std::set<std::string> groups;  // statistic groups (results::stat::k*)
  bool layerwise = false;        // one decoder layer resident at a time (calibrate --layerwise)
  // Layer-by-layer mode: calibrate's --memory-budget (bytes a rank may add above its
  // size at start; 0: none). A rank's hidden states go to a scratch file when they
  // exceed half of what its largest layer leaves of it, as calibrate decides
  // (runner/jobs/layerwise/layerwise_calibration.cpp).
  int64_t memory_budget = 0;
  // prune: the checkpoint's largest tensor and its largest fused-experts tensor (bytes,
  // as stored), read from the safetensors headers when the model directory has them;
  // 0: estimated from config.json (the Hub's per-expert layout, fused for the families
  // that only have that one).
  int64_t largest_tensor_bytes = 0, largest_fused_experts_bytes = 0;
  // The most bytes per rank for everything (plan-resources --budget). Layer by layer
  // without a memory_budget, calibrate is taken to be given --memory-budget = budget
  // minus the process baseline. 0: no limit.
  int64_t budget = 0;
};

// Layer by layer: the --memory-budget calibrate is run with for a query (memory_budget,
// else budget minus the rank's process baseline, else 0).
int64_t layerwise_memory_budget(const ResourceQuery& query);

struct RankPlan {
  int rank = 0;
  int64_t experts_held = 0;  // routed experts over all MoE layers (layer-by-layer: of the largest layer)
  int64_t layer_bytes = 0;   // layer-by-layer: the largest layer's weights on this rank (shared + experts)
  bool scratch = false;      // layer-by-layer: this rank's hidden states go to a scratch file
  int64_t baseline = 0, shared = 0, checkpoint = 0, experts = 0, activations = 0, statistics = 0,
          hidden_states = 0;
  int64_t total() const {
    return baseline + shared + checkpoint + experts + activations + statistics + hidden_states;
  }
};

struct ResourcePlan {
  ResourceQuery query;
  std::vector<RankPlan> ranks;  // P entries
  int64_t peak = 0;             // the largest rank total
  int64_t hdf5_bytes = 0;       // statistics file, uncompressed (large datasets are deflated: an upper bound)
  int64_t scratch_bytes = 0;    // layer-by-layer: hidden states in a scratch file (all ranks together)
  int64_t tokens_per_forward = 0;
};

// Bytes of one value of a compute dtype; "auto" is float32 (the CPU default).
// Throws InputError("--dtype", ...) for any other name.
int64_t dtype_bytes(const std::string& dtype);

// The plan. config: models::load_config (family fields read). Throws InputError
// ("--ranks", "--batch-size", ...) for values out of range.
ResourcePlan plan_resources(const hf::ModelConfig& config, const ResourceQuery& query);

// The rank count above which no rank gets smaller: the most routed experts of a layer.
int max_useful_ranks(const hf::ModelConfig& config);

// The smallest P in [1, max_useful_ranks] whose peak fits `budget` bytes (query.ranks
// is ignored), or nullopt.
std::optional<int> smallest_ranks_within(const hf::ModelConfig& config, ResourceQuery query, int64_t budget);

// (Sizes on the command line, e.g. --budget: parse_byte_size in core/common/memory_budget.h.)
// A Slurm --mem value ("16G", "512M", "4096": no suffix means megabytes, as Slurm reads
// it; suffixes are powers of 1024). Throws InputError(what, ...).
int64_t slurm_mem_bytes(const std::string& text, const std::string& what);
// "1.5 GiB", "312 MiB", "12 KiB", "100 B".
std::string format_bytes(int64_t bytes);

}  // namespace moelab::schedulers
