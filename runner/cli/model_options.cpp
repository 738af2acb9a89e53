#include "runner/cli/model_options.h"

#include "cluster/cuda_support.h"
#include "core/common/error.h"
#include "results/calibration_stats.h"

namespace moelab::cli {

void ModelOptions::add_to(CLI::App* cmd) {
  cmd->add_option("model", model_dir, "Hugging Face model directory (config.json + *.safetensors)")
      ->required()
      ->check(CLI::ExistingDirectory);
  add_compute_options(cmd);
  add_memory_check_flag(cmd, &memory_check);
}

void add_memory_check_flag(CLI::App* cmd, bool* enabled) {
  cmd->add_flag_callback("--no-memory-check", [enabled] { *enabled = false; },
                         "load the model even when its planned peak memory exceeds what the process may use "
                         "(cgroup, Slurm allocation, MemAvailable, or MOELAB_MEMORY_LIMIT)");
}

void check_model_memory(const std::string& model_dir, const std::string& dtype, jobs::MemoryCheck check, int ranks) {
  check.query.dtype = dtype;
  check.query.ranks = ranks;
  if (check.query.groups.empty()) check.query.groups = {results::stat::kUsage};
  jobs::check_memory(models::load_config(model_dir), check);
}

void ModelOptions::check_memory(jobs::MemoryCheck check, int ranks) const {
  if (!memory_check || device != "cpu") return;  // on a GPU the host holds little of the model
  check_model_memory(model_dir, dtype, std::move(check), ranks);
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
