// Refusing, before anything is loaded, a run whose planned memory exceeds what this
// process may use (runner/jobs/memory/memory_limit.h): one line naming the planned peak, the limit
// and what would fit, instead of the OOM killer's silent SIGKILL minutes later.
#pragma once

#include <string>

#include "core/hf/model_config.h"
#include "schedulers/resource_plan.h"

namespace moelab::jobs {

struct MemoryCheck {
  std::string command;        // "moelab calibrate", named in the message
  schedulers::ResourceQuery query;        // the planned run (ranks, dtype, batch, groups, layerwise)
  // Whether the statistics sums count (calibrate); other commands hold the model and
  // one forward's working set.
  bool statistics = false;
  bool offer_layerwise = false;  // calibrate: name --layerwise with its planned peak
  bool offer_ranks = false;      // commands that spread experts over ranks (--ranks)
  // A command's own working memory beyond the plan, per rank (bytes; generation's key/value
  // cache), named in the message as `extra_what`.
  int64_t extra_bytes = 0;
  std::string extra_what;
};

// A command that holds the model and runs a little on it (forward, eval, merge,
// compress, finetune, prune in memory): the weights dominate; one token's forward is
// planned (activations of the command's own batches are not modelled: the check
// refuses what cannot even be loaded).
MemoryCheck holding_model(const std::string& command, bool offer_ranks);

// The planned peak per rank (bytes) of a check: plan_resources' peak, less the
// statistics unless they count.
int64_t planned_peak(const hf::ModelConfig& config, const MemoryCheck& check);

// Ranks of this job on this node (they share the node's memory): Open MPI's
// OMPI_COMM_WORLD_LOCAL_SIZE, MPICH's MPI_LOCALNRANKS, else 1.
int local_ranks();

// Throws InputError(check.command, ...) when the planned peak times the ranks on this
// node exceeds memory_limit(); nothing when no limit is known.
void check_memory(const hf::ModelConfig& config, const MemoryCheck& check);

}  // namespace moelab::jobs
