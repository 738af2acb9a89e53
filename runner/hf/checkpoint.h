// A Hugging Face model directory: config.json plus model.safetensors, or shards
// listed in model.safetensors.index.json. Shards are memory-mapped on first use, so
// a process that needs a few tensors (one rank's experts) touches only those pages.
#pragma once

#include <ATen/ATen.h>

#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "hf/safetensors.h"

namespace moelab::hf {

class Checkpoint {
 public:
  // Opens `dir`; validates the index (every shard exists) and every shard header.
  explicit Checkpoint(const std::string& dir);

  const std::string& dir() const { return dir_; }
  std::string config_path() const { return dir_ + "/config.json"; }
  bool has(const std::string& name) const { return where_.count(name) != 0; }
  const TensorInfo& info(const std::string& name) const;
  // The tensor as stored (CPU, file dtype, backed by the mapping).
  at::Tensor tensor(const std::string& name) const;
  void release(const std::string& name) const { files_.at(file_of(name))->release(name); }
  void prefetch(const std::string& name) const { files_.at(file_of(name))->prefetch(name); }
  // The file that holds `name` (for error messages).
  const std::string& file_of(const std::string& name) const;
  std::vector<std::string> names() const;

  // Loader bookkeeping: every tensor must be consumed exactly once; leftovers are an
  // error (a checkpoint with tensors the model does not know is not what we think).
  void mark_used(const std::string& name) { used_.insert(name); }
  std::vector<std::string> unused() const;

 private:
  std::string dir_;
  std::map<std::string, std::shared_ptr<SafetensorsFile>> files_;
  std::map<std::string, std::string> where_;  // tensor -> file path
  std::set<std::string> used_;
};

}  // namespace moelab::hf
