// One MoE layer's routed rows as its experts ran, gathered for statistics that are
// summed per expert: each expert's activation row norms (taken at once: the
// activation is not kept), its output rows (views: usually consecutive rows of the
// layer's one [M, D] output, see core/models/moe_block.cpp) and gates. Once the layer's
// experts have all run, a collector reduces all rows with a few tensor ops and
// index_add_ over expert_ids() instead of a dozen small ops per expert.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <vector>

namespace moelab::jobs {

class LayerExpertRows {
 public:
  // Starts over when `layer` differs from the rows held (call flush first to use them).
  // act_nF [n, F], out_nD [n, D], gate_n [n] (any float dtype, any device); with
  // keep_act_norm false the activation is not looked at.
  void add(int64_t layer, int64_t expert, const at::Tensor& act_nF, const at::Tensor& out_nD,
           const at::Tensor& gate_n, bool keep_act_norm);
  int64_t layer() const { return layer_; }
  bool empty() const { return rows_total_ == 0; }
  // [M] int64 (CPU): the expert of every row, in the order added.
  at::Tensor expert_ids() const;
  // [M] float64 (CPU): ||a|| of every row (each element squared and summed in float64).
  at::Tensor act_norms() const;
  // [M] float64 (CPU): ||f|| of every output row, in float64.
  at::Tensor out_norms() const;
  // [M] float64 (CPU): the gates.
  at::Tensor gates() const;
  // Drops everything held.
  void clear();

 private:
  int64_t layer_ = -1, rows_total_ = 0;
  std::vector<int64_t> expert_, rows_;
  std::vector<at::Tensor> act_norm_, out_, gate_;
};

}  // namespace moelab::jobs
