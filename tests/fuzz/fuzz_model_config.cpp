// Fuzzes config.json: every field read_model_config validates (types, ranges, RoPE
// spellings, per-layer expert counts), then the accessors the model loader calls.
#include "core/common/error.h"
#include "core/hf/model_config.h"
#include "fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = moelab::fuzz::write_input(data, size, "config.json");
  try {
    const auto cfg = moelab::hf::read_model_config(path);
    (void)cfg.num_routed_experts_max();
    (void)cfg.moe_layer_experts();
    for (int64_t l = 0; l < cfg.num_hidden_layers; ++l) (void)cfg.skip_beta_of(l);
  } catch (const moelab::InputError&) {
  }
  return 0;
}
