// --layerwise, --memory-budget and --scratch-dir: one decoder layer at a time, for the
// commands that run the model over data (calibrate, eval, forward).
#pragma once

#include <CLI/CLI.hpp>

#include <string>

#include "cluster/communicator.h"
#include "core/models/moe_model.h"
#include "runner/jobs/layerwise/layerwise_calibration.h"

namespace moelab::cli {

struct LayerwiseArgs {
  bool layerwise = false, no_prefetch = false;
  std::string memory_budget, scratch_dir;

  // layerwise_help: what --layerwise means for the command (its limits);
  // scratch_default: where the scratch file goes without --scratch-dir.
  void add_to(CLI::App* cmd, const std::string& layerwise_help, const std::string& scratch_default);
  // The options for jobs/ (budget parsed: InputError("--memory-budget", ...) on a bad
  // size); scratch_dir: the default when --scratch-dir is not given.
  jobs::LayerwiseOptions options(const std::string& scratch_dir) const;
};

// The model's shell for a layer-by-layer pass (core/models/layer_loader.h): with the
// expert-parallel dispatcher put into `load` when comm has several ranks; a layer larger
// than the budget is refused (InputError naming it).
models::MoeModel load_layerwise_shell(const std::string& model_dir, const std::shared_ptr<cluster::Communicator>& comm,
                                      models::LoadOptions& load, const jobs::LayerwiseOptions& lw);

// Logs the process's peak resident memory against `baseline` (its size at start) and the
// budget, and on a GPU the device allocator's peak; warns when either exceeded the budget.
void report_peak_memory(int64_t baseline, const jobs::LayerwiseOptions& lw, const at::Device& device);

}  // namespace moelab::cli
