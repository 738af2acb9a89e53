// Writes a small, valid statistics file (2 MoE layers, 4 experts, the usage,
// act_norms and coactivation groups) with moelab's own writer: the seed that lets
// fuzz_stats_hdf5 mutate a real HDF5 layout instead of guessing one from nothing.
// Usage: make_stats_seed <out.h5>
#include <iostream>

#include "results/stats_file.h"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: make_stats_seed <out.h5>\n";
    return 2;
  }
  using namespace moelab::results;
  CalibrationStats s;
  s.model = "seed-model";
  s.architecture = "MixtralForCausalLM";
  s.calibration = "seed.jsonl";
  s.moelab_version = "fuzz";
  s.num_sequences = 2, s.num_tokens = 16, s.seq_len = 8, s.vocab_size = 32, s.hidden_size = 8;
  s.experts_per_token = 2;
  s.collected = {stat::kUsage, stat::kActNorms, stat::kCoactivation};
  for (int64_t l = 0; l < 2; ++l) {
    LayerStats ls;
    ls.layer = l;
    ls.tokens_E = at::tensor({8, 8, 10, 6}, at::kLong);
    ls.gate_sum_E = at::tensor({4.0, 4.0, 5.0, 3.0}, at::kDouble);
    ls.act_norm_sum_E = at::rand({4}, at::kDouble);
    ls.act_norm_sq_sum_E = at::rand({4}, at::kDouble);
    ls.coactivation_EE = at::ones({4, 4}, at::kLong);
    s.layers.push_back(ls);
  }
  write_stats(s, argv[1]);
  return 0;
}
