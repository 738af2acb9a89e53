#include "runner/cli/layerwise_options.h"

#include "cluster/alltoall_dispatcher.h"
#include "cluster/cuda_support.h"
#include "core/common/log.h"
#include "core/common/memory_budget.h"
#include "core/models/layer_loader.h"

namespace moelab::cli {

void LayerwiseArgs::add_to(CLI::App* cmd, const std::string& layerwise_help, const std::string& scratch_default) {
  cmd->add_flag("--layerwise", layerwise, layerwise_help);
  cmd->add_option("--memory-budget", memory_budget,
                  "with --layerwise: resident memory (RSS, VmHWM) each process may add above its own size when "
                  "it starts (libtorch, MPI and the arguments: about 120 MB on CPU, logged at the end with the "
                  "peak). It counts everything the run adds: the code libtorch pages in as its kernels first run "
                  "(about 20 MB on CPU, whatever the model), the largest layer's weights (this rank's share, "
                  "compute dtype), the hidden states of the rank's tokens (kept in memory when they fit "
                  "in half of what that layer leaves, else in a scratch file) and one batch's working memory. "
                  "Sizes like 512M, 8G (powers of 1024). On a GPU (--device cuda) the layer's weights and one "
                  "batch live on the device, the hidden states on the host: the budget holds for each (a layer "
                  "larger than it is refused; the device's allocator peak is logged at the end, and its cache "
                  "emptied after each layer)")
      ->needs(cmd->get_option("--layerwise"));
  cmd->add_option("--scratch-dir", scratch_dir,
                  "with --layerwise: directory of the hidden-states scratch file (default: " + scratch_default +
                      "); the file has no name (unlinked on creation) and goes with the process")
      ->needs(cmd->get_option("--layerwise"));
  cmd->add_flag("--no-prefetch", no_prefetch,
                "with --layerwise: do not read the next layer from disk while the current one runs (the page "
                "cache's readahead, not counted in the budget; for measuring what it saves)")
      ->needs(cmd->get_option("--layerwise"));
}

jobs::LayerwiseOptions LayerwiseArgs::options(const std::string& default_scratch_dir) const {
  jobs::LayerwiseOptions lw;
  if (!memory_budget.empty()) lw.memory_budget = parse_byte_size("--memory-budget", memory_budget);
  lw.scratch_dir = scratch_dir.empty() ? default_scratch_dir : scratch_dir;
  lw.prefetch = !no_prefetch;
  return lw;
}

models::MoeModel load_layerwise_shell(const std::string& model_dir, const std::shared_ptr<cluster::Communicator>& comm,
                                      models::LoadOptions& load, const jobs::LayerwiseOptions& lw) {
  if (comm->size() > 1) load.dispatcher = std::make_shared<cluster::AllToAllDispatcher>(comm);
  models::MoeModel m = models::load_model_shell(model_dir, load);
  jobs::check_layer_budget(m, model_dir, lw.memory_budget);
  return m;
}

void report_peak_memory(int64_t baseline, const jobs::LayerwiseOptions& lw, const at::Device& device) {
  const int64_t peak = peak_resident_bytes();
  spdlog::info("peak resident memory: {} ({} above the {} at start{}; getrusage ru_maxrss {})", mib(peak),
               mib(peak - baseline), mib(baseline),
               lw.memory_budget ? "; budget " + mib(lw.memory_budget) : "", mib(rusage_peak_bytes()));
  if (lw.memory_budget && peak - baseline > lw.memory_budget)
    spdlog::warn("peak resident memory exceeded --memory-budget by {}", mib(peak - baseline - lw.memory_budget));
  if (device.is_cuda()) {  // on a GPU the budget holds for the device too (one layer and one batch there)
    const int64_t device_peak = cluster::cuda_peak_allocated_bytes(device.index() < 0 ? 0 : device.index());
    spdlog::info("peak device memory: {} allocated{}", mib(device_peak),
                 lw.memory_budget ? "; budget " + mib(lw.memory_budget) : "");
    if (lw.memory_budget && device_peak > lw.memory_budget)
      spdlog::warn("peak device memory exceeded --memory-budget by {}", mib(device_peak - lw.memory_budget));
  }
}

}  // namespace moelab::cli
