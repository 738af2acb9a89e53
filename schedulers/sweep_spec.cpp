#include "schedulers/sweep_spec.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <regex>
#include <set>
#include <sstream>

#include "core/common/error.h"
#include "core/common/memory_budget.h"
#include "criteria/catalog.h"

namespace moelab::schedulers {
namespace {

// A value echoed in an error: in quotes, control characters escaped, so that the
// message stays on one line whatever the spec holds.
std::string shown_value(const std::string& v) {
  std::string out = "\"";
  for (unsigned char c : v) {
    if (c == '\n') {
      out += "\\n";
    } else if (c < 0x20 || c == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out + "\"";
}

class Reader {
 public:
  explicit Reader(std::string path) : path_(std::move(path)) {}
  [[noreturn]] void fail(const std::string& key, const std::string& problem) const {
    throw InputError(path_, key + ": " + problem);
  }
  template <typename T>
  T as(const YAML::Node& n, const std::string& key) const {
    try {
      return n.as<T>();
    } catch (const YAML::Exception&) {
      // An absent key is an invalid node, whose IsScalar() would throw again.
      if (!n.IsDefined()) fail(key, "missing (expected " + kind<T>() + ")");
      fail(key, "expected " + kind<T>() + ", got \"" + (n.IsScalar() ? n.Scalar() : std::string("a list or map")) +
                    "\"");
    }
  }
  // A scalar or a list of scalars -> list.
  template <typename T>
  std::vector<T> list(const YAML::Node& n, const std::string& key) const {
    std::vector<T> out;
    if (!n) return out;
    if (n.IsSequence()) {
      for (size_t i = 0; i < n.size(); ++i) out.push_back(as<T>(n[i], key + "[" + std::to_string(i) + "]"));
    } else {
      out.push_back(as<T>(n, key));
    }
    return out;
  }
  const std::string& path() const { return path_; }
  // Paths in a spec are relative to the spec file's folder; made absolute.
  std::string resolve(const std::string& p) const {
    std::filesystem::path q(p);
    if (q.is_absolute()) return q.lexically_normal().string();
    return std::filesystem::absolute(std::filesystem::path(path_).parent_path() / q).lexically_normal().string();
  }

 private:
  template <typename T>
  static std::string kind() {
    if constexpr (std::is_same_v<T, std::string>) return "a string";
    if constexpr (std::is_same_v<T, bool>) return "true or false";
    if constexpr (std::is_floating_point_v<T>) return "a number";
    return "an integer";
  }
  std::string path_;
};

std::string to_string(double v) {
  std::ostringstream o;
  o << v;
  return o.str();
}

// std::filesystem::exists without the throw: a name too long for the file system (a
// component over 255 bytes) is "does not exist" to the spec's reader, not a crash.
bool path_exists(const std::filesystem::path& p) {
  std::error_code ec;
  return std::filesystem::exists(p, ec);
}

// Resolves `p` against the spec's folder, checks it exists, returns it absolute.
void check_path(const Reader& r, const std::string& key, std::string& p) {
  const std::string abs = r.resolve(p);
  if (!path_exists(abs)) r.fail(key, "\"" + p + "\" does not exist");
  p = abs;
}

// A memory budget: a size like 512M or 8G (what --memory-budget accepts).
void check_byte_size(const Reader& r, const std::string& key, const std::string& value) {
  try {
    parse_byte_size("memory_budget", value);
  } catch (const InputError&) {
    r.fail(key, "\"" + value + "\" is not a size like 512M or 8G");
  }
}

CriterionChoice parse_criterion(const Reader& r, const YAML::Node& n, const std::string& key) {
  CriterionChoice c;
  std::string name;
  if (n.IsMap()) {
    name = r.as<std::string>(n["name"], key + ".name");
    if (n["direction"]) {
      const std::string d = r.as<std::string>(n["direction"], key + ".direction");
      const auto known = results::parse_prune_direction(d);
      if (!known) r.fail(key + ".direction", not_a_word_of(results::kPruneDirectionWords, d));
      c.direction = *known;
    }
  } else {
    name = r.as<std::string>(n, key);
    static const std::regex kPrefixed(R"(^(Min|Max|min|max)-(.+)$)");
    std::smatch m;
    if (std::regex_match(name, m, kPrefixed) && m[2].str() != "EP") {  // "EASY-EP" is a name
      c.direction = m[1].str() == "Max" || m[1].str() == "max" ? results::PruneDirection::kMax : results::PruneDirection::kMin;
      name = m[2].str();
    }
  }
  try {
    c.name = criteria::find_criterion(name).name;
  } catch (const InputError& e) {
    std::string msg = e.what();
    r.fail(key, msg.substr(msg.find(": ") + 2));
  }
  return c;
}

// A fine-tuning run's settings (a recovery's finetune map, finetune_first); errors name
// `fkey`.<field>.
Recovery parse_finetune(const Reader& r, const YAML::Node& f, const std::string& fkey) {
  Recovery rec;
  rec.kind = RecoveryKind::kFinetune;
  if (!f.IsMap()) r.fail(fkey, "expected a map (steps, lr, data or sft, batch_size, seq_len, params)");
  rec.steps = r.as<int64_t>(f["steps"], fkey + ".steps");
  if (rec.steps <= 0) r.fail(fkey + ".steps", "must be positive");
  if (f["lr"]) rec.lr = r.as<double>(f["lr"], fkey + ".lr");
  if (!(rec.lr > 0)) r.fail(fkey + ".lr", "must be positive");
  if (f["batch_size"]) rec.batch_size = r.as<int64_t>(f["batch_size"], fkey + ".batch_size");
  if (f["seq_len"]) rec.seq_len = r.as<int64_t>(f["seq_len"], fkey + ".seq_len");
  if (f["params"]) rec.params = r.as<std::string>(f["params"], fkey + ".params");
  if (rec.params != "full" && rec.params != "router" && rec.params != "experts")
    r.fail(fkey + ".params", "must be full, router or experts (full also trains compressed experts' vectors)");
  rec.data = r.list<std::string>(f["data"], fkey + ".data");
  if (f["sft"]) rec.sft = r.as<std::string>(f["sft"], fkey + ".sft");
  if (rec.data.empty() == rec.sft.empty())
    r.fail(fkey, "give either data (text files) or sft (a prompt/answer JSONL)");
  for (size_t i = 0; i < rec.data.size(); ++i)
    check_path(r, fkey + ".data[" + std::to_string(i) + "]", rec.data[i]);
  if (!rec.sft.empty()) check_path(r, fkey + ".sft", rec.sft);
  return rec;
}

Recovery parse_recovery(const Reader& r, const YAML::Node& n, const std::string& key) {
  Recovery rec;
  if (n.IsScalar()) {
    const std::string s = r.as<std::string>(n, key);
    if (s != "none")
      r.fail(key, "\"" + s + "\" is not a recovery (none, {kshot: K}, {finetune: {...}} or {router_kd: {...}})");
    return rec;
  }
  if (n.IsMap() && n["kshot"]) {
    rec.kind = RecoveryKind::kKshot;
    rec.shots = r.as<int64_t>(n["kshot"], key + ".kshot");
    if (rec.shots <= 0) r.fail(key + ".kshot", "must be a positive number of in-context examples");
    return rec;
  }
  if (n.IsMap() && n["router_kd"]) {
    // Router knowledge distillation (arXiv 2603.02217): the routers alone, trained to match
    // the unpruned model's next-token distributions on unlabeled text.
    const std::string k = key + ".router_kd";
    const YAML::Node f = n["router_kd"];
    if (f.IsMap() && f["sft"]) r.fail(k + ".sft", "router KD distils on unlabeled text: give data, not sft");
    if (f.IsMap() && f["params"] && r.as<std::string>(f["params"], k + ".params") != "router")
      r.fail(k + ".params", "router KD trains the routers only (leave params out)");
    rec = parse_finetune(r, f, k);
    rec.kind = RecoveryKind::kRouterKd;
    rec.params = "router";
    if (f["temperature"]) rec.temperature = r.as<double>(f["temperature"], k + ".temperature");
    if (!(rec.temperature > 0)) r.fail(k + ".temperature", "must be a number > 0");
    return rec;
  }
  if (!n.IsMap() || !n["finetune"])
    r.fail(key, "expected none, {kshot: K}, {finetune: {steps, lr, data or sft, ...}} or {router_kd: {steps, lr, data}}");
  return parse_finetune(r, n["finetune"], key + ".finetune");
}

Resources parse_resources(const Reader& r, const YAML::Node& n, const std::string& key) {
  static const std::set<std::string> kKeys = {"ranks", "gpus", "mem", "time"};
  Resources res;
  if (!n.IsMap()) r.fail(key, "expected a map of ranks, gpus, mem, time");
  for (const auto& kv : n) {
    const std::string k = kv.first.as<std::string>();
    if (!kKeys.count(k)) r.fail(key + "." + k, "unknown resource (ranks, gpus, mem, time)");
  }
  if (n["ranks"]) res.ranks = r.as<int64_t>(n["ranks"], key + ".ranks");
  if (n["gpus"]) res.gpus = r.as<int64_t>(n["gpus"], key + ".gpus");
  if (n["mem"]) res.mem = r.as<std::string>(n["mem"], key + ".mem");
  if (n["time"]) res.time = r.as<std::string>(n["time"], key + ".time");
  if (res.ranks < 1 || res.ranks > 1024) r.fail(key + ".ranks", "must be in [1, 1024]");
  if (res.gpus < 0 || res.gpus > 16) r.fail(key + ".gpus", "must be in [0, 16] per job");
  // Slurm's --mem: a positive integer with an optional K, M, G or T suffix.
  if (!std::regex_match(res.mem, std::regex(R"(^[1-9][0-9]*[KMGT]?$)")))
    r.fail(key + ".mem", "\"" + res.mem + "\" is not a Slurm memory size (e.g. 8G, 512M)");
  // Slurm's --time: [days-]hours:minutes:seconds, minutes:seconds or minutes.
  if (!std::regex_match(res.time, std::regex(R"(^([0-9]+-)?[0-9]+(:[0-5]?[0-9]){0,2}$)")))
    r.fail(key + ".time", "\"" + res.time + "\" is not a Slurm time limit (e.g. 01:30:00, 2-00:00:00)");
  return res;
}

std::vector<std::map<std::string, std::string>> parse_filters(const Reader& r, const YAML::Node& n,
                                                             const std::string& key) {
  static const std::set<std::string> kKeys = {"model", "calibration", "criterion", "ratio", "procedure", "recovery",
                                              "seed"};
  std::vector<std::map<std::string, std::string>> out;
  if (!n) return out;
  if (!n.IsSequence()) r.fail(key, "expected a list of maps, e.g. [{criterion: EAN, ratio: 0.5}]");
  for (size_t i = 0; i < n.size(); ++i) {
    const std::string k = key + "[" + std::to_string(i) + "]";
    if (!n[i].IsMap()) r.fail(k, "expected a map");
    std::map<std::string, std::string> f;
    for (const auto& kv : n[i]) {
      const std::string name = kv.first.as<std::string>();
      if (!kKeys.count(name))
        r.fail(k + "." + name, "unknown key (model, calibration, criterion, ratio, procedure, recovery, seed)");
      f[name] = kv.second.as<std::string>();
      // Numbers are compared as numbers (matches()): refused here when they are not.
      if (name == "ratio") f[name] = std::to_string(r.as<double>(kv.second, k + ".ratio"));
      if (name == "seed") f[name] = std::to_string(r.as<uint64_t>(kv.second, k + ".seed"));
    }
    out.push_back(std::move(f));
  }
  return out;
}

bool matches(const GridPoint& p, const std::map<std::string, std::string>& f) {
  for (const auto& [k, v] : f) {
    if (k == "model" && p.model != v) return false;
    if (k == "calibration" && p.calibration != v) return false;
    if (k == "criterion" && v != p.criterion.name && v != p.criterion.label() && v != p.criterion_tag()) return false;
    if (k == "ratio" && std::fabs(std::stod(v) - p.ratio) > 1e-12) return false;
    if (k == "procedure" && to_string(p.procedure) != v) return false;
    if (k == "recovery" && p.recovery.label() != v && to_string(p.recovery.kind) != v) return false;
    if (k == "seed" && std::to_string(p.seed) != v) return false;
  }
  return true;
}

}  // namespace

std::string compressed_label(int64_t main) { return "Compressed-main" + std::to_string(main); }

std::string Recovery::label() const {
  if (kind == RecoveryKind::kNone) return "none";
  if (kind == RecoveryKind::kKshot) return "kshot-" + std::to_string(shots);
  if (kind == RecoveryKind::kRouterKd)
    return "router-kd-" + std::to_string(steps) + "steps-lr" + to_string(lr) +
           (temperature != 1.0 ? "-T" + to_string(temperature) : "");
  return std::string(sft.empty() ? "finetune-" : "sft-") + params + "-" + std::to_string(steps) + "steps-lr" + to_string(lr);
}

const CalibrationSpecEntry& SweepSpec::calibration_set(const std::string& n) const {
  for (const auto& c : calibration)
    if (c.name == n) return c;
  throw InputError(path, "no calibration set \"" + n + "\"");
}

Resources SweepSpec::resources_for(JobKind kind) const {
  auto it = resources.find(resource_kind(kind));
  return it == resources.end() ? Resources{} : it->second;
}

namespace {
SweepSpec parse_sweep_spec(const std::string& path);
}  // namespace

SweepSpec load_sweep_spec(const std::string& path) {
  try {
    return parse_sweep_spec(path);
  } catch (const YAML::Exception& e) {
    // A shape the key-by-key checks did not foresee (found by fuzzing: a key under a
    // scalar, a missing one): still one line naming the file, never a stray exception.
    throw InputError(path, std::string("malformed sweep spec: ") + e.what());
  }
}

namespace {
// A YAML node as JSON with every scalar a string (claim_from_json reads numbers from
// strings), so that claims have one reader for the spec and for plan.json.
nlohmann::json yaml_to_json(const YAML::Node& n) {
  if (n.IsMap()) {
    nlohmann::json o = nlohmann::json::object();
    for (const auto& kv : n) o[kv.first.Scalar()] = yaml_to_json(kv.second);
    return o;
  }
  if (n.IsSequence()) {
    nlohmann::json a = nlohmann::json::array();
    for (const auto& e : n) a.push_back(yaml_to_json(e));
    return a;
  }
  if (n.IsScalar()) return n.Scalar();
  return nullptr;
}

// A claim's grid values and metric against the sweep: a value no grid point has, or a
// metric no evaluation of the sweep writes, would make a claim that is never measured.
void check_claim(const Reader& r, const SweepSpec& s, const results::ClaimSpec& c, const std::string& field) {
  if (c.kind == results::ClaimKind::kNotMeasured) return;
  auto check_value = [&](const std::string& key, const std::string& k, const std::string& v) {
    const std::string where = field + "." + key + "." + k;
    bool ok = false;
    if (k == "criterion") {
      for (const auto& x : s.criteria) ok |= x.label() == v;
      for (int64_t m : s.compressed_experts.main) ok |= compressed_label(m) == v;
      if (!ok) r.fail(where, "\"" + v + "\" is not a criterion of this sweep (as labelled: Min-EAN, Max-RWN)");
    } else if (k == "ratio") {
      char* end = nullptr;
      const double d = std::strtod(v.c_str(), &end);
      for (double x : s.ratios) ok |= *end == '\0' && std::fabs(x - d) < 1e-9;
      ok |= *end == '\0' && d == 0 && !s.compressed_experts.main.empty();  // compressed points drop nothing
      if (!ok) r.fail(where, "\"" + v + "\" is not one of the sweep's ratios");
    } else if (k == "procedure") {
      for (Procedure x : s.procedures) ok |= to_string(x) == v;
      ok |= v == "compress" && !s.compressed_experts.main.empty();
      if (!ok) r.fail(where, "\"" + v + "\" is not one of the sweep's procedures");
    } else if (k == "recovery") {
      for (const auto& x : s.recovery) ok |= x.label() == v || x.label().rfind(v + "-", 0) == 0;
      if (!ok) r.fail(where, "\"" + v + "\" is not a recovery setting of this sweep (its label or kind: none, kshot-3, kshot)");
    } else if (k == "calibration") {
      for (const auto& x : s.calibration) ok |= x.name == v;
      if (!ok) r.fail(where, "\"" + v + "\" is not a calibration set of this sweep");
    } else if (k == "model") {
      for (const auto& m : s.models) ok |= m == v || std::filesystem::path(m).filename() == v;
      if (!ok) r.fail(where, "\"" + v + "\" is not a model of this sweep (its path or folder name)");
    }
  };
  for (const auto& [k, v] : c.select) check_value("select", k, v);
  for (const auto& [k, v] : c.versus) check_value("versus", k, v);
  const std::string& m = c.metric;
  bool ok = m == "avg" ? s.eval.tasks.size() >= 2 : false;
  if (m.rfind("ppl:", 0) == 0)
    for (const auto& [domain, file] : s.eval.perplexity) ok |= "ppl:" + domain == m;
  if (m.rfind("acc:", 0) == 0) ok = m.size() > 4 && !s.eval.tasks.empty();
  if (m.rfind("lm:", 0) == 0) ok = m.size() > 3 && !s.eval.lm_eval.tasks.empty();
  if (!ok)
    r.fail(field + ".metric", "\"" + m + "\" is no metric of this sweep's eval section (ppl:<perplexity name>, "
                              "acc:<task>, avg with two tasks or more, lm:<lm-eval task>)");
}

SweepSpec parse_sweep_spec(const std::string& path) {
  if (!path_exists(path)) throw InputError(path, "no such sweep spec");
  YAML::Node root;
  try {
    root = YAML::LoadFile(path);
  } catch (const YAML::Exception& e) {
    throw InputError(path, std::string("not valid YAML: ") + e.what());
  }
  const Reader r(path);
  if (!root.IsMap()) r.fail("(top level)", "expected a map of sweep keys");
  static const std::set<std::string> kKeys = {"name",     "model",    "calibration", "criteria", "ratios",
                                              "procedures", "recovery", "seeds",     "include",  "exclude",
                                              "eval",     "resources", "slurm",    "lottery", "device",
                                              "finetune_first", "claims", "compressed_experts",
                                              "protect_super_experts", "budget_search", "substitute_novices"};
  for (const auto& kv : root) {
    const std::string k = kv.first.as<std::string>();
    if (!kKeys.count(k)) r.fail(k, "unknown key (name, model, calibration, criteria, ratios, procedures, recovery, "
                                   "seeds, include, exclude, eval, resources, slurm, lottery, device, finetune_first, claims, "
                                   "compressed_experts, protect_super_experts, budget_search, substitute_novices)");
  }
  SweepSpec s;
  s.path = path;
  s.name = root["name"] ? r.as<std::string>(root["name"], "name")
                        : std::filesystem::path(path).stem().string();
  // The name becomes a folder (results/<name>) and part of Slurm job names: a plain word.
  if (!std::regex_match(s.name, std::regex(R"(^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$)")))
    r.fail("name", shown_value(s.name) + " is not a plain name (letters, digits, '.', '_', '-'; at most 100)");
  s.models = r.list<std::string>(root["model"], "model");
  if (s.models.empty()) r.fail("model", "give the model directory (or a list)");
  for (size_t i = 0; i < s.models.size(); ++i) {
    check_path(r, s.models.size() > 1 ? "model[" + std::to_string(i) + "]" : "model", s.models[i]);
    if (!path_exists(std::filesystem::path(s.models[i]) / "config.json"))
      r.fail("model", "\"" + s.models[i] + "\" has no config.json");
  }
  if (const YAML::Node cal = root["calibration"]) {
    if (!cal.IsSequence()) r.fail("calibration", "expected a list of {name, data, seq_len, num_samples, seed}");
    for (size_t i = 0; i < cal.size(); ++i) {
      const std::string k = "calibration[" + std::to_string(i) + "]";
      CalibrationSpecEntry c;
      const char* keys = "name, data, seq_len, num_samples, seed, checkpoint_every, layerwise, memory_budget";
      if (!cal[i].IsMap()) r.fail(k, std::string("expected a map {") + keys + "}");
      for (const auto& kv : cal[i]) {
        const std::string key = kv.first.as<std::string>();
        if (key != "name" && key != "data" && key != "seq_len" && key != "num_samples" && key != "seed" &&
            key != "checkpoint_every" && key != "layerwise" && key != "memory_budget")
          r.fail(k + "." + key, std::string("unknown key (") + keys + ")");
      }
      c.name = cal[i]["name"] ? r.as<std::string>(cal[i]["name"], k + ".name") : "cal" + std::to_string(i);
      c.data = r.list<std::string>(cal[i]["data"], k + ".data");
      if (c.data.empty()) r.fail(k + ".data", "give the calibration files");
      for (size_t j = 0; j < c.data.size(); ++j) check_path(r, k + ".data[" + std::to_string(j) + "]", c.data[j]);
      if (cal[i]["seq_len"]) c.seq_len = r.as<int64_t>(cal[i]["seq_len"], k + ".seq_len");
      if (cal[i]["num_samples"]) c.num_samples = r.as<int64_t>(cal[i]["num_samples"], k + ".num_samples");
      if (cal[i]["seed"]) c.seed = r.as<uint64_t>(cal[i]["seed"], k + ".seed");
      if (c.seq_len <= 0) r.fail(k + ".seq_len", "must be positive");
      if (c.num_samples < 0) r.fail(k + ".num_samples", "must be >= 0 (0: all)");
      if (cal[i]["checkpoint_every"]) {
        c.checkpoint_every = r.as<int64_t>(cal[i]["checkpoint_every"], k + ".checkpoint_every");
        if (c.checkpoint_every < 0) r.fail(k + ".checkpoint_every", "must be >= 0 (0: off)");
      }
      if (cal[i]["layerwise"]) c.layerwise = r.as<bool>(cal[i]["layerwise"], k + ".layerwise");
      if (cal[i]["memory_budget"]) {
        c.memory_budget = r.as<std::string>(cal[i]["memory_budget"], k + ".memory_budget");
        if (!c.layerwise) r.fail(k + ".memory_budget", "needs layerwise: true");
        check_byte_size(r, k + ".memory_budget", c.memory_budget);
      }
      for (const auto& other : s.calibration)
        if (other.name == c.name) r.fail(k + ".name", "\"" + c.name + "\" is used twice");
      s.calibration.push_back(std::move(c));
    }
  }
  const YAML::Node crit = root["criteria"];
  if (!crit) r.fail("criteria", "give at least one criterion");
  if (crit.IsSequence()) {
    for (size_t i = 0; i < crit.size(); ++i) s.criteria.push_back(parse_criterion(r, crit[i], "criteria[" + std::to_string(i) + "]"));
  } else {
    s.criteria.push_back(parse_criterion(r, crit, "criteria"));
  }
  const YAML::Node ratios = root["ratios"];
  if (!ratios) r.fail("ratios", "give the pruning ratios (fractions of experts dropped)");
  if (ratios.IsMap()) {
    const double from = r.as<double>(ratios["from"], "ratios.from"), to = r.as<double>(ratios["to"], "ratios.to"),
                 step = r.as<double>(ratios["step"], "ratios.step");
    if (!(step > 0)) r.fail("ratios.step", "must be positive");
    for (double v = from; v <= to + 1e-9; v += step) s.ratios.push_back(std::round(v * 1e9) / 1e9);
  } else {
    s.ratios = r.list<double>(ratios, "ratios");
  }
  for (size_t i = 0; i < s.ratios.size(); ++i)
    if (!(s.ratios[i] >= 0 && s.ratios[i] < 1))
      r.fail(ratios.IsSequence() ? "ratios[" + std::to_string(i) + "]" : "ratios",
             to_string(s.ratios[i]) + " is outside [0, 1) (the fraction of experts dropped)");
  const std::vector<std::string> procedures =
      root["procedures"] ? r.list<std::string>(root["procedures"], "procedures") : std::vector<std::string>{"one-shot"};
  for (size_t i = 0; i < procedures.size(); ++i) {
    const auto known = results::parse_procedure(procedures[i]);
    if (!known)
      r.fail("procedures[" + std::to_string(i) + "]", not_a_word_of(results::kProcedureWords, procedures[i]));
    s.procedures.push_back(*known);
  }
  if (const YAML::Node bs = root["budget_search"]) {
    if (!bs.IsMap()) r.fail("budget_search", "expected a map (budget, data, seq_len, num_samples, max_move)");
    for (const auto& kv : bs) {
      const std::string k = kv.first.as<std::string>();
      if (k != "budget" && k != "data" && k != "seq_len" && k != "num_samples" && k != "max_move")
        r.fail("budget_search." + k, "unknown key (budget, data, seq_len, num_samples, max_move)");
    }
    auto& b = s.budget_search;
    if (bs["budget"]) b.budget = r.as<int64_t>(bs["budget"], "budget_search.budget");
    if (bs["seq_len"]) b.seq_len = r.as<int64_t>(bs["seq_len"], "budget_search.seq_len");
    if (bs["num_samples"]) b.num_samples = r.as<int64_t>(bs["num_samples"], "budget_search.num_samples");
    if (bs["max_move"]) b.max_move = r.as<int64_t>(bs["max_move"], "budget_search.max_move");
    b.data = r.list<std::string>(bs["data"], "budget_search.data");
    if (b.budget < 1) r.fail("budget_search.budget", "must be at least 1 (allocations evaluated)");
    if (b.seq_len < 2) r.fail("budget_search.seq_len", "must be at least 2");
    if (b.num_samples < 0) r.fail("budget_search.num_samples", "must be >= 0 (0: all windows)");
    if (b.max_move < 1) r.fail("budget_search.max_move", "must be at least 1");
    for (size_t i = 0; i < b.data.size(); ++i) check_path(r, "budget_search.data[" + std::to_string(i) + "]", b.data[i]);
  }
  if (std::count(s.procedures.begin(), s.procedures.end(), Procedure::kSearched) && s.budget_search.data.empty())
    r.fail("budget_search", "the procedure searched needs budget_search.data (held-out text for the search's fitness)");
  if (const YAML::Node rec = root["recovery"]) {
    if (rec.IsSequence()) {
      for (size_t i = 0; i < rec.size(); ++i) s.recovery.push_back(parse_recovery(r, rec[i], "recovery[" + std::to_string(i) + "]"));
    } else {
      s.recovery.push_back(parse_recovery(r, rec, "recovery"));
    }
  } else {
    s.recovery.push_back(Recovery{});
  }
  s.seeds = root["seeds"] ? r.list<uint64_t>(root["seeds"], "seeds") : std::vector<uint64_t>{0};
  s.include = parse_filters(r, root["include"], "include");
  s.exclude = parse_filters(r, root["exclude"], "exclude");
  if (const YAML::Node ff = root["finetune_first"]) {  // the keys of a recovery's finetune map
    s.finetune_first = parse_finetune(r, ff, "finetune_first");
  }
  if (const YAML::Node ev = root["eval"]) {
    if (!ev.IsMap())
      r.fail("eval", "expected a map (perplexity, tasks, max_length, num_fewshot, layerwise, memory_budget, lm_eval)");
    if (const YAML::Node ppl = ev["perplexity"])
      for (size_t i = 0; i < ppl.size(); ++i) {
        const std::string k = "eval.perplexity[" + std::to_string(i) + "]";
        std::string file = r.as<std::string>(ppl[i]["data"], k + ".data");
        check_path(r, k + ".data", file);
        s.eval.perplexity.emplace_back(ppl[i]["name"] ? r.as<std::string>(ppl[i]["name"], k + ".name")
                                                      : std::filesystem::path(file).stem().string(),
                                       file);
      }
    s.eval.tasks = r.list<std::string>(ev["tasks"], "eval.tasks");
    for (size_t i = 0; i < s.eval.tasks.size(); ++i) check_path(r, "eval.tasks[" + std::to_string(i) + "]", s.eval.tasks[i]);
    if (ev["max_length"]) s.eval.max_length = r.as<int64_t>(ev["max_length"], "eval.max_length");
    if (ev["num_fewshot"]) s.eval.num_fewshot = r.as<int64_t>(ev["num_fewshot"], "eval.num_fewshot");
    if (ev["layerwise"]) s.eval.layerwise = r.as<bool>(ev["layerwise"], "eval.layerwise");
    if (ev["memory_budget"]) {
      s.eval.memory_budget = r.as<std::string>(ev["memory_budget"], "eval.memory_budget");
      if (!s.eval.layerwise) r.fail("eval.memory_budget", "needs layerwise: true");
      check_byte_size(r, "eval.memory_budget", s.eval.memory_budget);
    }
    for (const auto& kv : ev) {
      const std::string k = kv.first.as<std::string>();
      if (k != "perplexity" && k != "tasks" && k != "max_length" && k != "num_fewshot" && k != "lm_eval" &&
          k != "layerwise" && k != "memory_budget")
        r.fail("eval." + k, "unknown key (perplexity, tasks, max_length, num_fewshot, layerwise, memory_budget, lm_eval)");
    }
    if (const YAML::Node le = ev["lm_eval"]) {
      if (!le.IsMap())
        r.fail("eval.lm_eval", "expected a map (tasks, include_path, num_fewshot, limit, apply_chat_template, batch_size)");
      for (const auto& kv : le) {
        const std::string k = kv.first.as<std::string>();
        static const std::set<std::string> kKeys = {"tasks",         "include_path", "num_fewshot", "limit",
                                                    "apply_chat_template", "batch_size"};
        if (!kKeys.count(k))
          r.fail("eval.lm_eval." + k,
                 "unknown key (tasks, include_path, num_fewshot, limit, apply_chat_template, batch_size)");
      }
      LmEvalSpec& l = s.eval.lm_eval;
      l.tasks = r.list<std::string>(le["tasks"], "eval.lm_eval.tasks");
      if (l.tasks.empty()) r.fail("eval.lm_eval.tasks", "name at least one lm-eval task");
      for (size_t i = 0; i < l.tasks.size(); ++i)
        if (l.tasks[i].empty() || l.tasks[i].find_first_of(", ") != std::string::npos)
          r.fail("eval.lm_eval.tasks[" + std::to_string(i) + "]", "\"" + l.tasks[i] + "\" is not a task name");
      if (le["include_path"]) {
        l.include_path = r.as<std::string>(le["include_path"], "eval.lm_eval.include_path");
        check_path(r, "eval.lm_eval.include_path", l.include_path);
      }
      if (le["num_fewshot"]) {
        l.num_fewshot = r.as<int64_t>(le["num_fewshot"], "eval.lm_eval.num_fewshot");
        if (l.num_fewshot < 0) r.fail("eval.lm_eval.num_fewshot", "must be >= 0");
      }
      if (le["limit"]) {
        l.limit = r.as<double>(le["limit"], "eval.lm_eval.limit");
        if (!(l.limit > 0)) r.fail("eval.lm_eval.limit", "must be > 0 (a count, or a fraction below 1)");
      }
      if (le["apply_chat_template"])
        l.apply_chat_template = r.as<bool>(le["apply_chat_template"], "eval.lm_eval.apply_chat_template");
      if (le["batch_size"]) {
        l.batch_size = r.as<int64_t>(le["batch_size"], "eval.lm_eval.batch_size");
        if (l.batch_size < 1) r.fail("eval.lm_eval.batch_size", "must be >= 1");
      }
    }
  }
  if (const YAML::Node res = root["resources"]) {
    for (const auto& kv : res) {
      const std::string kind = kv.first.as<std::string>();
      const auto known = results::parse_job_kind(kind);
      // a kind that takes another's resources (score: calibrate's) has no key of its own
      if (!known || resource_kind(*known) != *known)
        r.fail("resources." + kind, "unknown job kind (calibrate, prune, finetune, eval)");
      s.resources[*known] = parse_resources(r, kv.second, "resources." + kind);
    }
  }
  if (const YAML::Node sl = root["slurm"]) {
    if (!sl.IsMap()) r.fail("slurm", "expected a map (partition, account, throttle, launcher, signal_seconds, sbatch_args)");
    static const std::set<std::string> kSlurmKeys = {"partition", "account", "throttle", "launcher", "srun_mpi",
                                                     "signal_seconds", "sbatch_args"};
    for (const auto& kv : sl)
      if (!kSlurmKeys.count(kv.first.as<std::string>()))
        r.fail("slurm." + kv.first.as<std::string>(),
               "unknown key (partition, account, throttle, launcher, srun_mpi, signal_seconds, sbatch_args)");
    // Values that end up in #SBATCH lines: Slurm names only, and no line breaks, so a
    // spec cannot add lines (commands) to the batch scripts.
    const std::regex slurm_name(R"(^[A-Za-z0-9_.,:+-]*$)");
    if (sl["partition"]) s.slurm.partition = r.as<std::string>(sl["partition"], "slurm.partition");
    if (!std::regex_match(s.slurm.partition, slurm_name))
      r.fail("slurm.partition", shown_value(s.slurm.partition) + " is not a Slurm partition name");
    if (sl["account"]) s.slurm.account = r.as<std::string>(sl["account"], "slurm.account");
    if (!std::regex_match(s.slurm.account, slurm_name))
      r.fail("slurm.account", shown_value(s.slurm.account) + " is not a Slurm account name");
    if (sl["throttle"]) s.slurm.throttle = r.as<int64_t>(sl["throttle"], "slurm.throttle");
    if (s.slurm.throttle < 0) r.fail("slurm.throttle", "must be >= 0 (0: no limit)");
    if (sl["launcher"]) s.slurm.launcher = r.as<std::string>(sl["launcher"], "slurm.launcher");
    if (s.slurm.launcher != "mpirun" && s.slurm.launcher != "srun")
      r.fail("slurm.launcher", "\"" + s.slurm.launcher + "\" is not mpirun or srun");
    if (sl["srun_mpi"]) s.slurm.srun_mpi = r.as<std::string>(sl["srun_mpi"], "slurm.srun_mpi");
    if (!std::regex_match(s.slurm.srun_mpi, std::regex(R"(^[A-Za-z0-9_]+$)")))
      r.fail("slurm.srun_mpi", shown_value(s.slurm.srun_mpi) + " is not an srun MPI plugin name (srun --mpi=list)");
    if (sl["signal_seconds"]) s.slurm.signal_seconds = r.as<int64_t>(sl["signal_seconds"], "slurm.signal_seconds");
    if (s.slurm.signal_seconds < 0 || s.slurm.signal_seconds > 65535)
      r.fail("slurm.signal_seconds", "must be in [0, 65535]");
    s.slurm.sbatch_args = r.list<std::string>(sl["sbatch_args"], "slurm.sbatch_args");
    for (size_t i = 0; i < s.slurm.sbatch_args.size(); ++i) {
      const std::string& a = s.slurm.sbatch_args[i];
      const bool control = std::any_of(a.begin(), a.end(), [](char c) { return static_cast<unsigned char>(c) < 0x20; });
      if (a.rfind("--", 0) != 0 || control)
        r.fail("slurm.sbatch_args[" + std::to_string(i) + "]",
               shown_value(a) + " is not one sbatch option (\"--name=value\" on one line)");
    }
  }
  if (root["device"]) s.device = r.as<std::string>(root["device"], "device");
  // A boolean or a list of them (a grid dimension), each value once.
  auto flags = [&](const char* key, std::vector<int>& out, const std::string& why_calibration) {
    if (!root[key]) return;
    out.clear();
    for (bool b : r.list<bool>(root[key], key))
      if (std::find(out.begin(), out.end(), int(b)) == out.end()) out.push_back(b);
    if (out.empty()) r.fail(key, "give true, false or [false, true]");
    if (std::count(out.begin(), out.end(), 1) && s.calibration.empty()) r.fail(key, why_calibration);
  };
  flags("protect_super_experts", s.protect_super_experts,
        "super experts are found in calibration statistics: add a calibration set");
  flags("substitute_novices", s.substitute_novices,
        "novices are mean outputs from calibration statistics: add a calibration set");
  if (s.device != "cpu" && s.device != "cuda") r.fail("device", shown_value(s.device) + " is not cpu or cuda");
  if (const YAML::Node lo = root["lottery"]) {
    if (!lo.IsMap()) r.fail("lottery", "expected a map (start_tokens, lr, seq_len, data)");
    for (const auto& kv : lo) {
      const std::string k = kv.first.as<std::string>();
      if (k != "start_tokens" && k != "lr" && k != "seq_len" && k != "data")
        r.fail("lottery." + k, "unknown key (start_tokens, lr, seq_len, data)");
    }
    if (lo["start_tokens"]) s.lottery.start_tokens = r.as<int64_t>(lo["start_tokens"], "lottery.start_tokens");
    if (s.lottery.start_tokens <= 0) r.fail("lottery.start_tokens", "must be positive");
    if (lo["lr"]) s.lottery.lr = r.as<double>(lo["lr"], "lottery.lr");
    if (!(s.lottery.lr > 0)) r.fail("lottery.lr", "must be positive");
    if (lo["seq_len"]) s.lottery.seq_len = r.as<int64_t>(lo["seq_len"], "lottery.seq_len");
    if (s.lottery.seq_len <= 1) r.fail("lottery.seq_len", "must be at least 2");
    s.lottery.data = r.list<std::string>(lo["data"], "lottery.data");
    for (size_t i = 0; i < s.lottery.data.size(); ++i)
      check_path(r, "lottery.data[" + std::to_string(i) + "]", s.lottery.data[i]);
  }
  // Criteria that need calibration statistics need a calibration set.
  for (const auto& c : s.criteria) {
    bool data = false;
    for (const auto& need : criteria::find_criterion(c.name).needs)
      data |= need != criteria::kNeedsWeights && need != criteria::kNeedsSecondCheckpoint;
    if (data && s.calibration.empty()) r.fail("calibration", c.name + " needs calibration statistics: add a set");
    if (c.name == "RouterNormChange" && s.finetune_first.kind == RecoveryKind::kNone)
      r.fail("criteria", "RouterNormChange compares a fine-tuned model with the one it came from: add finetune_first "
                         "(the sweep then prunes the fine-tuned model)");
  }
  for (Procedure p : s.procedures)
    if (!results::chosen_from_scores(p) && s.calibration.empty())
      r.fail("procedures", std::string(to_string(p)) + " needs a calibration set");
  for (size_t i = 0; i < s.recovery.size(); ++i)
    if (s.recovery[i].kind == RecoveryKind::kKshot && s.eval.tasks.empty() && s.eval.lm_eval.tasks.empty())
      r.fail("recovery[" + std::to_string(i) + "]",
             "k-shot recovery needs eval.tasks or eval.lm_eval (it is a task evaluation setting)");
  if (const YAML::Node ce = root["compressed_experts"]) {
    if (!ce.IsMap()) r.fail("compressed_experts", "expected a map {main: [k_m, ...], variant}");
    for (const auto& kv : ce) {
      const std::string k = kv.first.as<std::string>();
      if (k != "main" && k != "variant") r.fail("compressed_experts." + k, "unknown key (main, variant)");
    }
    s.compressed_experts.main = r.list<int64_t>(ce["main"], "compressed_experts.main");
    if (s.compressed_experts.main.empty()) r.fail("compressed_experts.main", "give the main experts per token (k_m >= 1)");
    for (size_t i = 0; i < s.compressed_experts.main.size(); ++i)
      if (s.compressed_experts.main[i] < 1)
        r.fail("compressed_experts.main[" + std::to_string(i) + "]", "must be >= 1 (and below the model's top-k)");
    if (ce["variant"]) s.compressed_experts.variant = r.as<std::string>(ce["variant"], "compressed_experts.variant");
    if (s.compressed_experts.variant != "official" && s.compressed_experts.variant != "moelab-v1")
      r.fail("compressed_experts.variant", shown_value(s.compressed_experts.variant) + " is not official or moelab-v1");
  }
  if (const YAML::Node cl = root["claims"]) {
    if (!cl.IsSequence()) r.fail("claims", "expected a list of {paper, claim, kind, metric, select, ...}");
    for (size_t i = 0; i < cl.size(); ++i) {
      const std::string field = "claims[" + std::to_string(i) + "]";
      s.claims.push_back(results::claim_from_json(yaml_to_json(cl[i]), path, field));
      check_claim(r, s, s.claims.back(), field);
    }
  }
  return s;
}
}  // namespace

std::vector<GridPoint> expand_grid(const SweepSpec& s) {
  std::vector<GridPoint> out;
  for (const auto& model : s.models)
    for (const auto& crit : s.criteria) {
      // Weight-only criteria under one-shot need no calibration: one point, not one per set.
      bool data = false;
      for (const auto& need : criteria::find_criterion(crit.name).needs)
        data |= need != criteria::kNeedsWeights && need != criteria::kNeedsSecondCheckpoint;
      for (size_t ci = 0; ci < std::max<size_t>(1, s.calibration.size()); ++ci)
        for (double ratio : s.ratios)
          for (Procedure proc : s.procedures) {
            const bool by_scores = results::chosen_from_scores(proc);
            const bool needs_cal = data || !by_scores;
            if (!needs_cal && ci > 0) continue;
            // Protection applies to one-shot prunes; the other procedures run unprotected once.
            std::vector<int> protect = by_scores ? s.protect_super_experts : std::vector<int>{0};
            std::vector<int> novices = by_scores ? s.substitute_novices : std::vector<int>{0};
            for (int prot : protect)
             for (int nov : novices)
              for (const auto& rec : s.recovery)
                for (uint64_t seed : s.seeds) {
                  GridPoint p;
                  p.model = model;
                  p.calibration = needs_cal ? s.calibration.at(ci).name : "";
                  p.criterion = crit;
                  p.ratio = ratio;
                  p.procedure = proc;
                  p.recovery = rec;
                  p.seed = seed;
                  p.protect_super_experts = prot != 0;
                  p.substitute_novices = nov != 0;
                  bool keep = s.include.empty();
                  for (const auto& f : s.include) keep |= matches(p, f);
                  for (const auto& f : s.exclude) keep &= !matches(p, f);
                  if (keep) out.push_back(std::move(p));
                }
          }
    }
  return out;
}

}  // namespace moelab::schedulers
