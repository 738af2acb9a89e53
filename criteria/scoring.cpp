#include "criteria/scoring.h"

#include <algorithm>
#include <cctype>
#include <filesystem>

#include "core/common/error.h"
#include "core/common/log.h"

namespace moelab::criteria {
results::CriterionScores score_criterion(const Criterion& c, const ScoreInputs& in, const std::vector<int64_t>& layers) {
  for (const auto& need : c.needs()) {
    if (need == kNeedsWeights && !in.model)
      throw InputError("criterion " + c.name(), "needs the model's weights: pass --model DIR");
    if (need == kNeedsSecondCheckpoint && !in.second)
      throw InputError("criterion " + c.name(), "needs a second checkpoint: pass --second-model DIR");
  }
  results::CriterionScores out;
  out.name = c.name();
  out.version = c.version();
  for (size_t i = 0; i < layers.size(); ++i) {
    at::Tensor s = c.score_layer(in, int64_t(i), layers[i]).to(at::kDouble).contiguous();
    out.layers[layers[i]] = std::vector<double>(s.data_ptr<double>(), s.data_ptr<double>() + s.numel());
  }
  return out;
}

void check_stats_match(const results::CalibrationStats& st, const hf::ModelConfig& c, const std::string& stats_path) {
  // What the file records of its model must equal the model's own config: equal expert
  // counts alone are not enough (a d=1024 model's statistics scored against a d=192 model
  // used to pass). The path may differ (folders move): that is only a note.
  const std::string model = c.path.empty() ? "the model" : c.path;
  auto differs = [&](const std::string& field, const std::string& file_value, const std::string& model_value) {
    throw InputError(stats_path, "was collected on a different model: " + field + " " + file_value +
                                     " in the statistics (" + st.model + "), " + model_value + " in " + model);
  };
  if (!st.architecture.empty() && st.architecture != c.architecture)
    differs("architecture", st.architecture, c.architecture);
  if (st.hidden_size > 0 && st.hidden_size != c.hidden_size)
    differs("hidden_size", std::to_string(st.hidden_size), std::to_string(c.hidden_size));
  if (st.vocab_size > 0 && st.vocab_size != c.vocab_size)
    differs("vocab_size", std::to_string(st.vocab_size), std::to_string(c.vocab_size));
  const auto moe = c.moe_layer_experts();
  bool ok = moe.size() == st.layers.size();
  size_t i = 0;
  for (auto it = moe.begin(); ok && it != moe.end(); ++it, ++i)
    ok = st.layers[i].layer == it->first &&
         (!st.layers[i].tokens_E.defined() || st.layers[i].tokens_E.size(0) == it->second);
  if (!ok)
    throw InputError(stats_path, "was collected on a different model (" + st.model + ", " + st.architecture +
                                     "): its MoE layers or expert counts differ from " + model);
  if (!st.model.empty() && !c.path.empty()) {
    std::error_code ec;
    const auto a = std::filesystem::weakly_canonical(st.model, ec);
    const auto b = std::filesystem::weakly_canonical(std::filesystem::path(c.path).parent_path(), ec);
    if (a != b)
      spdlog::info("note: {} was collected on {}, used with {} (same architecture and shapes)", stats_path, st.model,
                b.string());
  }
}

}  // namespace moelab::criteria
