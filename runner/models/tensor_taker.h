// The loader's view of a checkpoint (internal to models/): every tensor the config
// implies is checked for presence and shape and marked used; its data is read only
// when LoadOptions::weights (`moelab inspect` reads none). Families with a layout of
// their own (FamilySpec::load_experts) read through it too.
#pragma once

#include <sstream>
#include <string>
#include <vector>

#include "common/error.h"
#include "hf/checkpoint.h"
#include "models/moe_model.h"

namespace moelab::models {

class TensorTaker {
 public:
  TensorTaker(hf::Checkpoint& ck, const LoadOptions& opts) : ck_(ck), opts_(opts) {}

  // Checks presence and shape and marks the tensor used, without reading it.
  void check(const std::string& name, const std::vector<int64_t>& shape) {
    if (!ck_.has(name)) throw InputError(ck_.dir(), "missing tensor \"" + name + "\"");
    const auto& info = ck_.info(name);
    if (info.shape != shape)
      throw InputError(ck_.file_of(name), "tensor \"" + name + "\" has shape " + shape_str(info.shape) +
                                              ", but config.json implies " + shape_str(shape));
    ck_.mark_used(name);
  }

  // The tensor in the compute dtype and device (undefined without weights).
  at::Tensor take(const std::string& name, std::vector<int64_t> shape) {
    check(name, shape);
    if (!opts_.weights) return at::Tensor();
    return ck_.tensor(name).to(opts_.device, opts_.dtype);
  }
  // The tensor as stored: CPU, file dtype, a view of the mapping (undefined without weights).
  at::Tensor take_stored(const std::string& name, std::vector<int64_t> shape) {
    check(name, shape);
    if (!opts_.weights) return at::Tensor();
    return ck_.tensor(name);
  }
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
};

}  // namespace moelab::models
