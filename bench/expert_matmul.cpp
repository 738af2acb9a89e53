// Achieved GFLOP/s of moelab's grouped expert computation against the machine's
// matmul peak, on the same shapes (issue: benchmarks; target >= 60% of peak).
//
// moelab: models::moe_forward on N tokens (route: softmax top-k; sort the N*K rows by
// expert; one gate_up and one down matmul per expert on its contiguous rows; SwiGLU;
// gate-weighted scatter-add back to the tokens) — everything the MoE block does.
// Peak: at::mm doing the same expert FLOPs in two calls on one [N*K, D] matrix (the
// best case: one expert holding every row, no routing). FLOPs = 2 * N*K * 3 * D * F
// (gate and up [F, D], down [D, F]); the router's 2 N D E is left out of both.
//
//   moelab_bench_expert_matmul --tokens 2048 --hidden 1024 --intermediate 3584 --experts 8 --top-k 2
// Threads: at::get_num_threads() (OMP_NUM_THREADS). Prints one JSON object.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <vector>

#include "core/models/blocks.h"
#include "core/models/expert_dispatch.h"

namespace {

// Median of `reps` timed runs after one warm-up, in seconds.
double median_seconds(int reps, const std::function<void()>& run) {
  run();
  std::vector<double> t;
  for (int i = 0; i < reps; ++i) {
    const auto start = std::chrono::steady_clock::now();
    run();
    t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Grouped expert computation (moe_forward) GFLOP/s against at::mm on the same FLOPs"};
  int64_t N = 2048, D = 1024, F = 3584, E = 8, K = 2;
  int reps = 5;
  app.add_option("--tokens", N, "tokens in the batch (N)")->check(CLI::PositiveNumber);
  app.add_option("--hidden", D, "hidden size (D)")->check(CLI::PositiveNumber);
  app.add_option("--intermediate", F, "expert intermediate size (F)")->check(CLI::PositiveNumber);
  app.add_option("--experts", E, "routed experts (E)")->check(CLI::PositiveNumber);
  app.add_option("--top-k", K, "experts per token (K)")->check(CLI::PositiveNumber);
  app.add_option("--reps", reps, "timed repetitions (median reported)")->check(CLI::PositiveNumber);
  CLI11_PARSE(app, argc, argv);
  if (K > E) {
    std::fprintf(stderr, "error: --top-k %ld is more than --experts %ld\n", long(K), long(E));
    return 2;
  }

  at::manual_seed(0);
  moelab::models::ExpertWeights w;
  w.router_ED = at::randn({E, D}) * 0.05;  // small logits: routing spreads over the experts
  w.gate_up_EFD = at::randn({E, 2 * F, D}) * 0.02;
  w.down_EDF = at::randn({E, D, F}) * 0.02;
  for (int64_t e = 0; e < E; ++e) w.original_ids.push_back(e);
  moelab::hf::ModelConfig c;
  c.num_experts_per_tok = K;
  c.router.norm_topk_prob = true;
  c.hidden_act = "silu";
  moelab::models::LocalDispatcher local;
  const at::Tensor x = at::randn({N, D});

  const double flops = 2.0 * double(N * K) * 3.0 * double(D) * double(F);
  const double t_moe = median_seconds(reps, [&] { (void)moelab::models::moe_forward(w, c, x, 0, local, nullptr); });

  const at::Tensor rows = at::randn({N * K, D});
  const at::Tensor gate_up = at::randn({2 * F, D}) * 0.02, down = at::randn({D, F}) * 0.02;
  const double t_mm = median_seconds(reps, [&] {
    at::Tensor h = at::mm(rows, gate_up.t());
    (void)at::mm(h.narrow(1, 0, F), down.t());
  });

  // Rows per expert of this routing, to show how even the groups were.
  const auto routing = moelab::models::route(w, c, x, 0);
  const at::Tensor counts = at::bincount(routing.topk_ids_NK.reshape(-1), {}, E);
  nlohmann::json out = {{"tokens", N}, {"hidden", D}, {"intermediate", F}, {"experts", E}, {"top_k", K},
                        {"threads", at::get_num_threads()}, {"reps", reps}, {"expert_gflop", flops / 1e9},
                        {"moe_forward_s", t_moe}, {"mm_peak_s", t_mm},
                        {"moe_forward_gflops", flops / t_moe / 1e9}, {"mm_peak_gflops", flops / t_mm / 1e9},
                        {"fraction_of_peak", t_mm / t_moe},
                        {"rows_per_expert_min", counts.min().item<int64_t>()},
                        {"rows_per_expert_max", counts.max().item<int64_t>()}};
  std::printf("%s\n", out.dump().c_str());
  return 0;
}
