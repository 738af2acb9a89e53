#include "runner/jobs/layerwise/layer_expert_rows.h"

#include <algorithm>

namespace moelab::jobs {
namespace {

// The rows of `parts` [n_i, C] stacked [sum n_i, C]: a view when they are consecutive
// rows of one contiguous tensor, else a copy.
at::Tensor stack_rows(const std::vector<at::Tensor>& parts) {
  if (parts.size() == 1) return parts[0];
  const at::Tensor& first = parts[0];
  const int64_t C = first.size(1);
  int64_t rows = 0;
  for (const at::Tensor& p : parts) {
    if (!p.is_contiguous() || p.size(1) != C || p.scalar_type() != first.scalar_type() ||
        !p.storage().is_alias_of(first.storage()) || p.storage_offset() != first.storage_offset() + rows * C)
      return at::cat(parts, 0);
    rows += p.size(0);
  }
  return first.as_strided({rows, C}, {C, 1}, first.storage_offset());
}

at::Tensor cat_cpu(const std::vector<at::Tensor>& parts, at::ScalarType dtype) {
  return (parts.size() == 1 ? parts[0] : at::cat(parts, 0)).to(at::kCPU, dtype);
}

}  // namespace

void LayerExpertRows::add(int64_t layer, int64_t expert, const at::Tensor& act_nF, const at::Tensor& out_nD,
                          const at::Tensor& gate_n, bool keep_act_norm) {
  if (layer != layer_) clear();
  layer_ = layer;
  if (act_nF.size(0) == 0) return;
  expert_.push_back(expert);
  rows_.push_back(act_nF.size(0));
  rows_total_ += act_nF.size(0);
  if (keep_act_norm) act_norm_.push_back(at::linalg_vector_norm(act_nF.detach(), 2, {1}, false, at::kDouble));
  out_.push_back(out_nD.detach());
  gate_.push_back(gate_n.detach());
}

at::Tensor LayerExpertRows::expert_ids() const {
  at::Tensor ids = at::empty({rows_total_}, at::kLong);
  int64_t* p = ids.data_ptr<int64_t>();
  for (size_t i = 0; i < expert_.size(); ++i) p = std::fill_n(p, rows_[i], expert_[i]);
  return ids;
}

at::Tensor LayerExpertRows::act_norms() const { return cat_cpu(act_norm_, at::kDouble); }

at::Tensor LayerExpertRows::out_norms() const {
  return at::linalg_vector_norm(stack_rows(out_), 2, {1}, false, at::kDouble).cpu();
}

at::Tensor LayerExpertRows::gates() const { return cat_cpu(gate_, at::kDouble); }

void LayerExpertRows::clear() {
  layer_ = -1;
  rows_total_ = 0;
  expert_.clear();
  rows_.clear();
  act_norm_.clear();
  out_.clear();
  gate_.clear();
}

}  // namespace moelab::jobs
