#include "hf/checkpoint.h"

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "common/error.h"

namespace fs = std::filesystem;

namespace moelab::hf {

Checkpoint::Checkpoint(const std::string& dir) : dir_(dir) {
  if (!fs::is_directory(dir)) throw InputError(dir, "not a model directory");
  const std::string index = dir + "/model.safetensors.index.json";
  const std::string single = dir + "/model.safetensors";
  std::vector<std::string> shard_files;
  if (fs::exists(index)) {
    std::ifstream in(index);
    std::stringstream ss;
    ss << in.rdbuf();
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(ss.str());
    } catch (const nlohmann::json::exception& e) {
      throw InputError(index, std::string("not valid JSON: ") + e.what());
    }
    if (!j.contains("weight_map") || !j["weight_map"].is_object())
      throw InputError(index, "field \"weight_map\" is missing or not an object");
    std::map<std::string, std::string> declared;
    for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it) {
      if (!it.value().is_string()) throw InputError(index, "weight_map[\"" + it.key() + "\"] is not a file name");
      std::string shard = it.value().get<std::string>();
      if (shard.find('/') != std::string::npos || shard == "..")
        throw InputError(index, "weight_map[\"" + it.key() + "\"] names a file outside the model directory");
      declared[it.key()] = dir + "/" + shard;
    }
    std::set<std::string> uniq;
    for (const auto& [_, f] : declared) uniq.insert(f);
    shard_files.assign(uniq.begin(), uniq.end());
    for (const auto& f : shard_files) {
      if (!fs::exists(f)) throw InputError(index, "shard " + fs::path(f).filename().string() + " is missing");
      files_[f] = SafetensorsFile::open(f);
    }
    for (const auto& [name, f] : declared) {
      if (!files_[f]->contains(name))
        throw InputError(f, "index says it holds \"" + name + "\", but it does not");
      where_[name] = f;
    }
  } else if (fs::exists(single)) {
    files_[single] = SafetensorsFile::open(single);
    for (const auto& [name, _] : files_[single]->tensors()) where_[name] = single;
  } else {
    throw InputError(dir, "no model.safetensors or model.safetensors.index.json (only safetensors checkpoints are read)");
  }
}

const std::string& Checkpoint::file_of(const std::string& name) const {
  auto it = where_.find(name);
  if (it == where_.end()) throw InputError(dir_, "missing tensor \"" + name + "\"");
  return it->second;
}

const TensorInfo& Checkpoint::info(const std::string& name) const {
  return files_.at(file_of(name))->tensors().at(name);
}

at::Tensor Checkpoint::tensor(const std::string& name) const { return files_.at(file_of(name))->tensor(name); }

std::vector<std::string> Checkpoint::names() const {
  std::vector<std::string> out;
  for (const auto& [n, _] : where_) out.push_back(n);
  return out;
}

std::vector<std::string> Checkpoint::unused() const {
  std::vector<std::string> out;
  for (const auto& [n, _] : where_)
    if (!used_.count(n)) out.push_back(n);
  return out;
}

}  // namespace moelab::hf
