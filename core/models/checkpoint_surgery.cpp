#include "core/models/checkpoint_surgery.h"

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "core/common/atomic_output.h"
#include "core/common/error.h"
#include "core/common/log.h"
#include "core/hf/checkpoint.h"
#include "core/models/compressed_experts.h"
#include "core/models/model_writer.h"
#include "core/models/saved_config.h"

namespace fs = std::filesystem;

namespace moelab::models {
namespace {

// What becomes of one input tensor.
struct Action {
  enum Kind { kCopy, kDrop, kRows, kMix, kMixRows } kind = kCopy;
  std::string out_name;  // kCopy, kMix: the name written (a kept or merged expert is renumbered)
  int64_t experts = 0;   // kRows, kMixRows: the input's expert count (along `axis`)
  int64_t axis = 0;      // kRows, kMixRows: the expert axis (1 for ERNIE-4.5's [1, E] correction bias)
  at::Tensor rows;       // kRows: kept experts [kept] int64
  // kMix: the weighted sum of these tensors (a merged expert's matrix); kMixRows: one row
  // per group along `axis`, the group's weighted rows, or its dominant's (`dominant`).
  std::vector<std::string> sources;
  std::vector<double> weights;
  std::vector<ExpertGroup> groups;
  bool dominant = false;
};

// The weighted sum rounded through float32 (what expert_merging.cpp computes on a model
// loaded in float32) to `dtype`: a merge by surgery writes the same values as the
// in-memory one saved in the input's dtype.
at::Tensor weighted_sum(const std::vector<at::Tensor>& xs, const std::vector<double>& weights, at::ScalarType dtype) {
  return weighted_sum_f64(xs, weights).to(at::kFloat).to(dtype);
}

// Per-layer actions of the tensors that name or index routed experts; the rest are
// copied under their own name.
std::map<std::string, Action> expert_actions(const hf::ModelConfig& in, const FamilySpec& fam,
                                             const std::map<int64_t, std::vector<int64_t>>& keep_of) {
  const TensorNames& n = fam.names;
  std::vector<std::string> row_templates = {n.router, n.router_fused, n.router_correction_bias,
                                            n.experts_gate_up_fused, n.experts_down_fused, n.experts_theta,
                                            n.experts_ces};
  if (fam.name == "gpt_oss") {  // its own layout (core/models/families/gpt_oss.cpp): every tensor [E, ...]
    row_templates.push_back("model.layers.{L}.mlp.router.bias");
    for (const char* p : {"gate_up_proj", "gate_up_proj_bias", "down_proj", "down_proj_bias", "gate_up_proj_blocks",
                          "gate_up_proj_scales", "down_proj_blocks", "down_proj_scales"})
      row_templates.push_back(std::string("model.layers.{L}.mlp.experts.") + p);
  }
  std::map<std::string, Action> out;
  for (const auto& [l, keep] : keep_of) {
    const int64_t E = in.num_experts_per_layer.at(l);
    Action rows;
    rows.kind = Action::kRows;
    rows.experts = E;
    rows.rows = at::tensor(keep, at::TensorOptions().dtype(at::kLong));
    for (const auto& tmpl : row_templates)
      if (!tmpl.empty()) out[tensor_name(tmpl, l)] = rows;
    if (n.correction_bias_row) out[tensor_name(n.router_correction_bias, l)].axis = 1;
    std::vector<int64_t> new_id(E, -1);
    for (size_t i = 0; i < keep.size(); ++i) new_id[keep[i]] = int64_t(i);
    for (const std::string* tmpl : {&n.expert_gate, &n.expert_up, &n.expert_down}) {
      if (tmpl->empty()) continue;
      for (int64_t e = 0; e < E; ++e) {
        Action a;
        if (new_id[e] < 0) {
          a.kind = Action::kDrop;
        } else {
          a.out_name = tensor_name(*tmpl, l, new_id[e]);
        }
        out[tensor_name(*tmpl, l, e)] = a;
      }
    }
  }
  return out;
}

// The tensors that follow the router's rows when experts merge (the router, its
// correction bias) and those averaged like the experts' matrices.
std::vector<std::string> router_row_templates(const FamilySpec& fam) {
  const TensorNames& n = fam.names;
  return {n.router, n.router_fused, n.router_correction_bias};
}
std::vector<std::string> expert_row_templates(const FamilySpec& fam) {
  const TensorNames& n = fam.names;
  return {n.experts_gate_up_fused, n.experts_down_fused, n.experts_theta, n.experts_ces};
}

std::map<std::string, Action> merge_actions(const hf::ModelConfig& in, const FamilySpec& fam,
                                            const ExpertMerges& merges, RouterMerge router) {
  const TensorNames& n = fam.names;
  std::map<std::string, Action> out;
  for (const auto& [l, groups] : merges) {
    Action rows;
    rows.kind = Action::kMixRows;
    rows.experts = in.num_experts_per_layer.at(l);
    rows.groups = groups;
    for (const auto& tmpl : expert_row_templates(fam))
      if (!tmpl.empty()) out[tensor_name(tmpl, l)] = rows;
    rows.dominant = router == RouterMerge::kDominant;
    for (const auto& tmpl : router_row_templates(fam))
      if (!tmpl.empty()) out[tensor_name(tmpl, l)] = rows;
    if (n.correction_bias_row) out[tensor_name(n.router_correction_bias, l)].axis = 1;
    for (const std::string* tmpl : {&n.expert_gate, &n.expert_up, &n.expert_down}) {
      if (tmpl->empty()) continue;
      for (size_t g = 0; g < groups.size(); ++g) {
        // Written where the group's dominant expert was; the other members are dropped.
        Action a;
        a.kind = Action::kMix;
        a.out_name = tensor_name(*tmpl, l, int64_t(g));
        a.weights = groups[g].weights;
        for (int64_t e : groups[g].members) {
          a.sources.push_back(tensor_name(*tmpl, l, e));
          if (e != groups[g].dominant) out[tensor_name(*tmpl, l, e)] = Action{Action::kDrop};
        }
        out[tensor_name(*tmpl, l, groups[g].dominant)] = a;
      }
    }
  }
  return out;
}

// Writes out_dir from the input's files by `actions` (tensors without one are copied),
// one output shard per input shard, one tensor produced at a time.
// `after`: new tensors written right after an input tensor, in its shard.
void write_surgery(const hf::ModelConfig& input, const hf::ModelConfig& output, const FamilySpec& family,
                   const std::map<std::string, Action>& actions, const std::string& out_dir,
                   const SurgeryOptions& opts, const char* what,
                   const std::map<std::string, std::vector<hf::TensorSource>>& after = {}) {
  const fs::path in_dir = fs::path(input.path).parent_path();
  const hf::Checkpoint ck(in_dir.string());
  const bool sharded = fs::exists(in_dir / "model.safetensors.index.json");
  // The input's tensors by file, in file order: each shard is read front to back.
  std::map<std::string, std::vector<std::string>> by_file;
  for (const std::string& name : ck.names()) by_file[ck.file_of(name)].push_back(name);
  AtomicDir dir(out_dir, opts.overwrite);
  nlohmann::json weight_map = nlohmann::json::object();
  int64_t total_bytes = 0, written_tensors = 0;
  // The tensors the previous output was made from: their mapped pages are dropped when
  // the next one is produced (and the last ones' after the file), so that only one
  // output's inputs are resident at a time.
  std::vector<std::string> previous;
  auto drop_previous = [&ck, &previous] {
    for (const auto& p : previous) ck.release(p);
    previous.clear();
  };
  for (auto& [file, names] : by_file) {
    std::sort(names.begin(), names.end(),
              [&](const std::string& a, const std::string& b) { return ck.info(a).begin < ck.info(b).begin; });
    std::vector<hf::TensorSource> sources;
    for (const std::string& name : names) {
      const hf::TensorInfo& info = ck.info(name);
      auto it = actions.find(name);
      const Action a = it == actions.end() ? Action{Action::kCopy, name} : it->second;
      if (a.kind == Action::kDrop) continue;
      if (is_mtp_tensor(family, name, input.num_hidden_layers)) continue;  // not pruned with the model
      const bool convert = opts.dtype && c10::isFloatingType(info.dtype);
      hf::TensorSource s;
      s.name = a.kind == Action::kCopy || a.kind == Action::kMix ? a.out_name : name;
      s.dtype = convert ? *opts.dtype : info.dtype;
      s.shape = info.shape;
      if (a.kind == Action::kRows || a.kind == Action::kMixRows) {
        if (int64_t(s.shape.size()) <= a.axis || s.shape[a.axis] != a.experts)
          throw InputError(file, "tensor \"" + name + "\" should have one row per expert (" +
                                     std::to_string(a.experts) + ") along its axis " + std::to_string(a.axis));
      }
      if (a.kind == Action::kRows) {
        s.shape[a.axis] = a.rows.size(0);
        s.produce = [&ck, &previous, drop_previous, name, rows = a.rows, axis = a.axis] {
          drop_previous();
          previous = {name};
          return ck.tensor(name).index_select(axis, rows);
        };
      } else if (a.kind == Action::kMixRows) {
        s.shape[a.axis] = int64_t(a.groups.size());
        const at::ScalarType dtype = s.dtype;
        s.produce = [&ck, &previous, drop_previous, name, a, dtype] {
          drop_previous();
          previous = {name};
          const at::Tensor t = ck.tensor(name);
          std::vector<at::Tensor> rows;
          for (const auto& g : a.groups) {
            if (a.dominant) {
              rows.push_back(t.select(a.axis, g.dominant).to(at::kFloat).to(dtype));
              continue;
            }
            std::vector<at::Tensor> members;
            for (int64_t e : g.members) members.push_back(t.select(a.axis, e));
            rows.push_back(weighted_sum(members, g.weights, dtype));
          }
          return at::stack(rows, a.axis);
        };
      } else if (a.kind == Action::kMix) {
        for (const auto& src : a.sources)
          if (!ck.has(src) || ck.info(src).shape != info.shape)
            throw InputError(file, "tensor \"" + src + "\" is missing or differs in shape from \"" + name +
                                       "\" (experts of one merge group)");
        const at::ScalarType dtype = s.dtype;
        s.produce = [&ck, &previous, drop_previous, a, dtype] {
          drop_previous();
          previous = a.sources;
          std::vector<at::Tensor> xs;
          for (const auto& src : a.sources) xs.push_back(ck.tensor(src));
          return weighted_sum(xs, a.weights, dtype);
        };
      } else {
        // A view of the mapping: written as stored, no copy unless converted.
        s.produce = [&ck, &previous, drop_previous, name] {
          drop_previous();
          previous = {name};
          return ck.tensor(name);
        };
      }
      sources.push_back(std::move(s));
      if (auto extra = after.find(name); extra != after.end())
        sources.insert(sources.end(), extra->second.begin(), extra->second.end());
    }
    for (const auto& s : sources) {
      int64_t numel = 1;
      for (int64_t d : s.shape) numel *= d;
      total_bytes += numel * int64_t(at::elementSize(s.dtype));
    }
    if (sources.empty()) continue;  // every tensor of this shard was dropped
    const std::string fname = fs::path(file).filename().string();
    std::map<std::string, std::string> meta = hf::SafetensorsFile::open(file)->metadata();
    if (!meta.count("format")) meta["format"] = "pt";
    hf::write_safetensors_streamed((dir.path() / fname).string(), sources, meta);
    drop_previous();
    for (const auto& s : sources) weight_map[s.name] = fname;
    written_tensors += int64_t(sources.size());
    spdlog::debug("wrote {} ({} tensors)", fname, sources.size());
  }
  if (sharded) {
    nlohmann::json index = {{"metadata", {{"total_size", total_bytes}}}, {"weight_map", weight_map}};
    write_file_atomic(dir.path() / "model.safetensors.index.json", index.dump(2));
  } else if (written_tensors == 0) {
    throw InputError(in_dir.string(), std::string(what) + " would leave no tensor to write");
  }
  SavedConfigOptions co;
  if (opts.dtype) co.dtype = dtype_config_name(*opts.dtype);
  co.dequantised = false;  // tensors are written as stored
  write_saved_config(dir.path(), output, family, co, out_dir);
  dir.commit();
}

}  // namespace

bool editable_by_surgery(const hf::ModelConfig& c, bool generic_experts) {
  if (c.has_novices()) return false;  // the model path refuses them by name
  if (c.raw.contains("quantization_config") && !c.raw["quantization_config"].is_null()) return false;
  return !generic_experts || family_for(c).load_experts == nullptr;
}

void prune_checkpoint(const hf::ModelConfig& input, const hf::ModelConfig& pruned, const FamilySpec& family,
                      const std::map<int64_t, std::vector<int64_t>>& keep_of, const std::string& out_dir,
                      const SurgeryOptions& opts) {
  write_surgery(input, pruned, family, expert_actions(input, family, keep_of), out_dir, opts, "pruning");
}

void compress_checkpoint(const hf::ModelConfig& input, const hf::ModelConfig& compressed, const FamilySpec& family,
                         const std::string& out_dir, const SurgeryOptions& opts) {
  if (family.load_experts != nullptr || input.compressed())
    throw InputError(input.path, "compressing by surgery needs a plain checkpoint of the generic expert layouts");
  const hf::Checkpoint ck(fs::path(input.path).parent_path().string());
  const TensorNames& n = family.names;
  std::map<std::string, std::vector<hf::TensorSource>> after;
  for (int64_t l = 0; l < input.num_hidden_layers; ++l) {
    const int64_t E = input.num_experts_per_layer[l];
    if (E == 0) continue;
    std::string anchor = tensor_name(n.router, l);
    if (!ck.has(anchor)) anchor = tensor_name(n.router_fused, l);
    if (!ck.has(anchor)) throw InputError(ck.dir(), "layer " + std::to_string(l) + " has no router tensor");
    // The vectors in the dtype the in-memory path saves them in.
    const at::ScalarType dtype = opts.dtype.value_or(dtype_from_config(input.torch_dtype));
    hf::TensorSource s;
    s.name = tensor_name(compressed.compressed_official() ? n.experts_ces : n.experts_theta, l);
    s.dtype = dtype;
    s.shape = ce_vectors_shape(compressed, E);
    s.produce = [shape = s.shape, dtype] { return at::ones(shape, at::TensorOptions().dtype(dtype)); };
    after[anchor].push_back(std::move(s));
  }
  write_surgery(input, compressed, family, {}, out_dir, opts, "compressing", after);
}

void merge_checkpoint(const hf::ModelConfig& input, const hf::ModelConfig& merged, const FamilySpec& family,
                      const ExpertMerges& merges, RouterMerge router, const std::string& out_dir,
                      const SurgeryOptions& opts) {
  if (family.load_experts != nullptr)
    throw InputError(input.path, "merging by surgery does not know " + family.name + "'s expert layout");
  write_surgery(input, merged, family, merge_actions(input, family, merges, router), out_dir, opts, "merging");
}

}  // namespace moelab::models
