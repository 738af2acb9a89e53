#include "runner/cli/yaml_config.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <regex>

#include "core/common/error.h"

namespace moelab::cli {
namespace {

std::string dashed(std::string s) {
  for (auto& ch : s)
    if (ch == '_') ch = '-';
  return s;
}

void flatten(const YAML::Node& node, std::vector<std::string> parents, std::vector<CLI::ConfigItem>& out) {
  for (const auto& kv : node) {
    const std::string key = dashed(kv.first.as<std::string>());
    const YAML::Node& v = kv.second;
    if (v.IsMap()) {
      auto p = parents;
      p.push_back(key);
      flatten(v, p, out);
      continue;
    }
    CLI::ConfigItem item;
    item.parents = parents;
    item.name = key;
    if (v.IsSequence()) {
      for (const auto& e : v) item.inputs.push_back(e.as<std::string>());
    } else if (v.IsScalar()) {
      item.inputs.push_back(v.as<std::string>());
    }
    out.push_back(std::move(item));
  }
}

}  // namespace

std::string YamlConfig::to_config(const CLI::App* app, bool, bool, std::string) const {
  YAML::Emitter out;
  out << YAML::BeginMap;
  for (const CLI::Option* opt : app->get_options()) {
    if (opt->get_lnames().empty() || opt->get_configurable() == false) continue;
    auto results = opt->results();
    if (results.empty()) continue;
    out << YAML::Key << opt->get_lnames()[0] << YAML::Value;
    if (results.size() == 1) out << results[0];
    else out << results;
  }
  out << YAML::EndMap;
  return std::string(out.c_str()) + "\n";
}

std::vector<CLI::ConfigItem> YamlConfig::from_config(std::istream& input) const {
  YAML::Node root;
  try {
    root = YAML::Load(input);
  } catch (const YAML::Exception& e) {
    throw InputError("--config", std::string("not valid YAML: ") + e.what());
  }
  std::vector<CLI::ConfigItem> items;
  if (root.IsNull()) return items;
  if (!root.IsMap()) throw InputError("--config", "the YAML file must be a mapping of option names to values");
  flatten(root, {}, items);
  for (auto& item : items)
    if (item.parents.empty() && !command.empty() &&
        std::find(root_options.begin(), root_options.end(), item.name) == root_options.end())
      item.parents = {command};
  return items;
}

std::vector<std::string> rewrite_overrides(const std::vector<std::string>& args) {
  static const std::regex kOverride(R"(^([A-Za-z][A-Za-z0-9_.-]*)=(.*)$)", std::regex::extended);
  std::vector<std::string> out;
  for (const auto& a : args) {
    std::smatch m;
    if (std::regex_match(a, m, kOverride)) {
      std::string key = m[1].str();
      if (auto dot = key.rfind('.'); dot != std::string::npos) key = key.substr(dot + 1);
      out.push_back("--" + dashed(key) + "=" + m[2].str());
    } else {
      out.push_back(a);
    }
  }
  return out;
}

}  // namespace moelab::cli
