#include "core/models/family.h"

#include "core/common/error.h"

namespace moelab::models {
namespace {
const std::vector<FamilySpec>& registry() {
  static const std::vector<FamilySpec> r = {
      mixtral_family(),
      qwen3_moe_family(),
      qwen2_moe_family(),
      olmoe_family(),
      deepseek_v3_family(),
      deepseek_v2_family(),
      gpt_oss_family(),
      glm4_moe_family(),
      minimax_m2_family(),
      glm4_moe_lite_family(),
      ernie4_5_moe_family(),
      phimoe_family(),
      llama4_family(),
      qwen3_next_family(),
      qwen3_5_moe_family(),
  };
  return r;
}

void replace_all(std::string& s, const std::string& from, const std::string& to) {
  for (size_t pos = s.find(from); pos != std::string::npos; pos = s.find(from, pos + to.size()))
    s.replace(pos, from.size(), to);
}
}  // namespace

const std::vector<FamilySpec>& all_families() { return registry(); }

const FamilySpec& family_for(const hf::ModelConfig& config) {
  for (const auto& f : registry())
    for (const auto& a : f.architectures)
      if (a == config.architecture) return f;
  for (const auto& f : registry())
    for (const auto& t : f.model_types)
      if (t == config.model_type) return f;
  std::string supported;
  for (const auto& f : registry())
    for (const auto& a : f.architectures) supported += (supported.empty() ? "" : ", ") + a;
  std::string got = config.architecture.empty() ? "model_type \"" + config.model_type + "\""
                                                 : "architecture \"" + config.architecture + "\"";
  throw InputError(config.path, "unknown " + got + " (supported: " + supported + ")");
}

FamilySpec family_spec(const std::string& name, const std::string& architecture, const std::string& model_type,
                       void (*read_hparams)(hf::ModelConfig&), const std::string& expert_count_key) {
  FamilySpec s;
  s.name = name;
  s.architectures = {architecture};
  s.model_types = {model_type};
  s.read_hparams = read_hparams;
  s.expert_count_key = expert_count_key;
  return s;
}

bool is_mtp_tensor(const FamilySpec& family, const std::string& name, int64_t num_hidden_layers) {
  if (!family.has_mtp) return false;
  if (name.find("mtp") != std::string::npos) return true;
  const std::string prefix = "model.layers.";
  if (name.compare(0, prefix.size(), prefix) != 0) return false;
  const size_t dot = name.find('.', prefix.size());
  const std::string index = name.substr(prefix.size(), dot == std::string::npos ? std::string::npos : dot - prefix.size());
  if (index.empty() || index.find_first_not_of("0123456789") != std::string::npos || index.size() > 9) return false;
  return std::stoll(index) >= num_hidden_layers;
}

std::string tensor_name(const std::string& tmpl, int64_t layer, int64_t expert, const std::string& part) {
  std::string s = tmpl;
  replace_all(s, "{L}", std::to_string(layer));
  if (expert >= 0) replace_all(s, "{E}", std::to_string(expert));
  replace_all(s, "{P}", part);
  return s;
}

}  // namespace moelab::models
