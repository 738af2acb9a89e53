// The loader's view of a checkpoint (internal to models/): every tensor the config
// implies is checked for presence and shape and marked used; its data is read only
// when LoadOptions::weights (`moelab inspect` reads none). Families with a layout of
// their own (FamilySpec::load_experts) read through it too.
#pragma once

#include <sstream>
#include <string>
#include <vector>

#include "core/common/error.h"
#include "core/hf/checkpoint.h"
#include "core/models/moe_model.h"

namespace moelab::models {

class TensorTaker {
 public:
  // owned: every tensor taken is copied out of the mapping and its pages dropped
  // (load_layer: freeing the layer must free its memory, and a view would keep the
  // mapping's pages resident).
  TensorTaker(hf::Checkpoint& ck, const LoadOptions& opts, bool owned = false) : ck_(ck), opts_(opts), owned_(owned) {}

  // Checks presence and shape and marks the tensor used, without reading it.
  void check(const std::string& name, const std::vector<int64_t>& shape) {
    if (!ck_.has(name)) throw InputError(ck_.dir(), "missing tensor \"" + name + "\"");
    const auto& info = ck_.info(name);
    if (info.shape != shape)
      throw InputError(ck_.file_of(name), "tensor \"" + name + "\" has shape " + shape_str(info.shape) +
                                              ", but config.json implies " + shape_str(shape));
    ck_.mark_used(name);
    names_.push_back(name);
  }
  // The tensors checked or taken so far, in order.
  const std::vector<std::string>& names() const { return names_; }

  // The tensor in the compute dtype and device (undefined without weights).
  // view: never copied here, even when owned (the caller keeps a copy of a part).
  at::Tensor take(const std::string& name, std::vector<int64_t> shape, bool view = false) {
    check(name, shape);
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    taken_elements_ += n;
    if (!opts_.weights) return at::Tensor();
    const at::Tensor stored = ck_.tensor(name);
    at::Tensor x = stored.to(opts_.device, opts_.dtype);
    const bool converted = x.data_ptr() != stored.data_ptr();
    if (owned_ && !view && !converted) x = x.clone();
    // A converted (or owned) copy no longer needs the mapped pages: dropping them keeps a
    // bf16 checkpoint loaded in float32 at its float32 size, not both.
    if (converted || (owned_ && !view)) ck_.release(name);
    return x;
  }
  // The tensor as stored: CPU, file dtype, a view of the mapping (undefined without
  // weights). Counted in taken_elements() as stored elements (MXFP4 blocks: bytes).
  at::Tensor take_stored(const std::string& name, std::vector<int64_t> shape) {
    check(name, shape);
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    taken_elements_ += n;
    if (!opts_.weights) return at::Tensor();
    return ck_.tensor(name);
  }
  // Elements of the tensors taken so far (checked-only tensors not counted); loaders
  // that keep a part of a taken tensor correct it with uncount().
  int64_t taken_elements() const { return taken_elements_; }
  void uncount(int64_t elements) { taken_elements_ -= elements; }
  at::Tensor take_optional(const std::string& name, std::vector<int64_t> shape) {
    return ck_.has(name) ? take(name, std::move(shape)) : at::Tensor();
  }
  bool has(const std::string& name) const { return ck_.has(name); }
  bool weights() const { return opts_.weights; }
  void release(const std::string& name) const { ck_.release(name); }
  const LoadOptions& options() const { return opts_; }
  const std::string& file_of(const std::string& name) const { return ck_.file_of(name); }

  static std::string shape_str(const std::vector<int64_t>& s) {
    std::ostringstream o;
    o << "[";
    for (size_t i = 0; i < s.size(); ++i) o << (i ? ", " : "") << s[i];
    o << "]";
    return o.str();
  }

 private:
  hf::Checkpoint& ck_;
  const LoadOptions& opts_;
  bool owned_ = false;
  int64_t taken_elements_ = 0;
  std::vector<std::string> names_;
};

}  // namespace moelab::models
