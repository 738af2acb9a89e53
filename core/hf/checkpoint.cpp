#include "core/hf/checkpoint.h"

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/common/error.h"
#include "core/hf/text_part.h"

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
  // The text model of a multimodal checkpoint: its decoder's names without the wrapper's
  // prefix, the other modalities' tensors hidden. (A config.json that cannot be read is
  // reported by hf::read_model_config, not here.)
  std::ifstream cfg(dir + "/config.json");
  if (!cfg) return;
  const nlohmann::json config = nlohmann::json::parse(cfg, nullptr, /*allow_exceptions=*/false);
  const TextPart* part = text_part_of(config);
  if (!part) return;
  std::map<std::string, std::string> shown;
  for (const auto& [name, file] : where_) {
    bool other = false;
    for (const auto& p : part->other_parts) other = other || name.compare(0, p.size(), p) == 0;
    if (other) continue;
    if (name.compare(0, part->stored_prefix.size(), part->stored_prefix) == 0) {
      const std::string text_name = part->text_prefix + name.substr(part->stored_prefix.size());
      shown[text_name] = file;
      stored_[text_name] = name;
    } else {
      shown[name] = file;
    }
  }
  where_ = std::move(shown);
}

const std::string& Checkpoint::stored(const std::string& name) const {
  auto it = stored_.find(name);
  return it == stored_.end() ? name : it->second;
}

const std::string& Checkpoint::file_of(const std::string& name) const {
  auto it = where_.find(name);
  if (it == where_.end()) throw InputError(dir_, "missing tensor \"" + name + "\"");
  return it->second;
}

const TensorInfo& Checkpoint::info(const std::string& name) const {
  return files_.at(file_of(name))->tensors().at(stored(name));
}

at::Tensor Checkpoint::tensor(const std::string& name) const {
  return files_.at(file_of(name))->tensor(stored(name));
}

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
