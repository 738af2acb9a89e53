// One expert-importance criterion. Each criterion lives in its own file, cites the
// paper it comes from and says which reading of it is implemented; criteria/registry.cpp
// lists them (a new criterion is one file plus one line there).
//
// Convention: score_layer returns one float64 score per routed expert of the layer,
// computed from calibration statistics and/or the weights. The DIRECTION is not part
// of the criterion: "Min-X" drops the experts with the lowest scores, "Max-X" the
// highest (MC-Suite's 32 variants are 16 criteria x 2 directions).
#pragma once

#include <ATen/ATen.h>

#include <memory>
#include <string>
#include <vector>

#include "core/models/moe_model.h"
#include "criteria/catalog.h"  // kNeedsWeights, kNeedsSecondCheckpoint
#include "results/calibration_stats.h"

namespace moelab::criteria {

struct ScoreInputs {
  const results::CalibrationStats* stats = nullptr;  // null for weight-only scoring
  const models::MoeModel* model = nullptr;           // weights (all experts local)
  const models::MoeModel* second = nullptr;          // the other checkpoint, when needed
  uint64_t seed = 0;                                 // for randomised criteria
};

class Criterion {
 public:
  virtual ~Criterion() = default;
  virtual std::string name() const = 0;         // e.g. "EAN"
  virtual std::string description() const = 0;  // one line
  virtual int version() const { return 1; }     // bumped when scores change
  virtual std::vector<std::string> needs() const = 0;
  // `moe_index`: index among the model's MoE layers; `layer`: decoder layer index.
  // Returns [E] float64.
  virtual at::Tensor score_layer(const ScoreInputs& in, int64_t moe_index, int64_t layer) const = 0;
};

}  // namespace moelab::criteria
