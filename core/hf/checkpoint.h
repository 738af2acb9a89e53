// A Hugging Face model directory: config.json plus model.safetensors, or shards
// listed in model.safetensors.index.json. Shards are memory-mapped on first use, so
// a process that needs a few tensors (one rank's experts) touches only those pages.
// A multimodal checkpoint whose text model moelab reads (core/hf/text_part.h) shows only that
// model's tensors, under its text-only names.
#pragma once

#include <ATen/ATen.h>

#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "core/hf/safetensors.h"

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
  void release(const std::string& name) const { files_.at(file_of(name))->release(stored(name)); }
  void prefetch(const std::string& name) const { files_.at(file_of(name))->prefetch(stored(name)); }
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
  // The name a tensor has in its file: its own, except in the text model of a multimodal
  // checkpoint (core/hf/text_part.h), whose tensors the names above show as the text model's.
  const std::string& stored(const std::string& name) const;
  std::map<std::string, std::string> where_;  // tensor -> file path
  std::map<std::string, std::string> stored_;  // shown name -> name in the file, where they differ
  std::set<std::string> used_;
};

}  // namespace moelab::hf
