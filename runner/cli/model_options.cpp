#include "cli/model_options.h"

#include "cluster/cuda_support.h"
#include "common/error.h"

namespace moelab::cli {

void ModelOptions::add_to(CLI::App* cmd) {
  cmd->add_option("model", model_dir, "Hugging Face model directory (config.json + *.safetensors)")
      ->required()
      ->check(CLI::ExistingDirectory);
  add_compute_options(cmd);
}

void ModelOptions::add_compute_options(CLI::App* cmd) {
  cmd->add_option("--dtype", dtype,
                  "compute dtype: auto (float32 on CPU, bfloat16 on CUDA), float32, bfloat16, float16, float64 "
                  "(reference runs: statistics to float64 rounding)")
      ->check(CLI::IsMember({"auto", "float32", "bfloat16", "float16", "float64"}));
  cmd->add_option("--device", device, "cpu, cuda or cuda:N");
}

at::ScalarType parse_dtype(const std::string& s) {
  if (s == "float32") return at::kFloat;
  if (s == "bfloat16") return at::kBFloat16;
  if (s == "float16") return at::kHalf;
  if (s == "float64") return at::kDouble;
  throw InputError("--dtype", "unknown dtype \"" + s + "\"");
}

models::LoadOptions ModelOptions::load_options() const {
  models::LoadOptions o;
  try {
    o.device = at::Device(device);
  } catch (const std::exception&) {
    throw InputError("--device", "unknown device \"" + device + "\" (use cpu, cuda or cuda:N)");
  }
  if (o.device.is_cuda()) {
    std::string why;
    if (!cluster::enable_cuda(&why)) throw InputError("--device", why);
    if (!at::hasCUDA()) throw InputError("--device", "CUDA was asked for, but no CUDA device is available");
  }
  o.dtype = dtype == "auto" ? (o.device.is_cuda() ? at::kBFloat16 : at::kFloat) : parse_dtype(dtype);
  return o;
}

}  // namespace moelab::cli
