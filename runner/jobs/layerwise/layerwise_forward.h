// The logits of sequences computed one decoder layer at a time (moelab eval and forward
// with --layerwise): the model is never held whole. As calibrate --layerwise
// (runner/jobs/layerwise/layerwise_calibration.h): the batches' embeddings first (gathered from the
// mapped matrix), then per layer its weights read from the safetensors (this rank's
// experts only), every batch of this rank through it (outputs over inputs, in memory or
// in a scratch file), the layer freed; last the final norm and lm_head. Per layer the
// batches run in the whole-model pass's order with its operations, so the logits are
// those of cluster::run_data_parallel, bit for bit.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "cluster/communicator.h"
#include "cluster/data_parallel.h"
#include "core/models/moe_model.h"
#include "runner/jobs/layerwise/layerwise_calibration.h"

namespace moelab::jobs {

// Collective (every rank calls it with the same sequences). shell:
// models::load_model_shell(dir, load), with the expert-parallel dispatcher when comm has
// several ranks; left a shell. Calls on_logits(sequence index, logits [len, V] in the
// compute dtype) on the rank that ran the sequence, as run_data_parallel does. The
// observer (may be null) sees every layer's routing; its on_batch comes once per layer
// and batch, so it must not rely on one forward at a time.
void run_layerwise(models::MoeModel& shell, const std::string& dir, const models::LoadOptions& load,
                   cluster::Communicator& comm, const std::vector<std::vector<int64_t>>& sequences,
                   const cluster::DataParallelOptions& dp, const LayerwiseOptions& lw, models::MoeObserver* observer,
                   const std::function<void(int64_t, const at::Tensor&)>& on_logits);

}  // namespace moelab::jobs
