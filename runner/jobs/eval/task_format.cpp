#include "runner/jobs/eval/task_format.h"

#include <yaml-cpp/yaml.h>

#include <filesystem>
#include <map>

#include "core/common/error.h"

namespace moelab::jobs {
namespace fs = std::filesystem;

jobs::McFormat read_task_format(const std::string& task_path) {
  jobs::McFormat f;
  fs::path yaml;
  for (const char* ext : {".yaml", ".yml"})
    if (fs::exists(fs::path(task_path).replace_extension(ext))) yaml = fs::path(task_path).replace_extension(ext);
  if (yaml.empty()) return f;
  YAML::Node root;
  try {
    root = YAML::LoadFile(yaml.string());
  } catch (const YAML::Exception& e) {
    throw InputError(yaml.string(), std::string("not valid YAML: ") + e.what());
  }
  if (!root.IsMap()) throw InputError(yaml.string(), "expected a mapping of task settings");
  const std::map<std::string, std::string*> fields = {
      {"name", &f.name},
      {"query_field", &f.query_field},
      {"choices_field", &f.choices_field},
      {"gold_field", &f.gold_field},
      {"prompt_template", &f.prompt_template},
      {"target_delimiter", &f.target_delimiter},
      {"fewshot_delimiter", &f.fewshot_delimiter},
      {"description", &f.description},
      {"fewshot_file", &f.fewshot_file},
      {"fewshot_sampler", &f.fewshot_sampler}};
  for (const auto& kv : root) {
    const std::string key = kv.first.as<std::string>();
    auto it = fields.find(key);
    if (it == fields.end()) {
      std::string known;
      for (const auto& [k, _] : fields) known += (known.empty() ? "" : ", ") + k;
      throw InputError(yaml.string(), "unknown key \"" + key + "\" (known: " + known + ")");
    }
    if (!kv.second.IsScalar()) throw InputError(yaml.string(), "key \"" + key + "\" must be a string");
    *it->second = kv.second.as<std::string>();
  }
  if (f.fewshot_sampler != "random" && f.fewshot_sampler != "first_n")
    throw InputError(yaml.string(), "key \"fewshot_sampler\" is \"" + f.fewshot_sampler +
                                        "\"; known: random, first_n");
  if (!f.prompt_template.empty())
    jobs::check_prompt_template(f.prompt_template, yaml.string() + ": key \"prompt_template\"");
  if (!f.fewshot_file.empty() && fs::path(f.fewshot_file).is_relative())
    f.fewshot_file = (yaml.parent_path() / f.fewshot_file).string();
  return f;
}

}  // namespace moelab::jobs
