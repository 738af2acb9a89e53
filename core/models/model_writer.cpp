#include "core/models/model_writer.h"

#include <filesystem>
#include <fstream>

#include "core/common/atomic_output.h"
#include "core/common/error.h"
#include "core/common/log.h"
#include "core/hf/safetensors.h"
#include "core/models/saved_config.h"

namespace fs = std::filesystem;

namespace moelab::models {
at::ScalarType dtype_from_config(const std::string& s) {
  if (s == "bfloat16") return at::kBFloat16;
  if (s == "float16") return at::kHalf;
  return at::kFloat;
}

namespace {

using Named = std::vector<std::pair<std::string, at::Tensor>>;

Named collect_tensors(const MoeModel& m, const std::string& out_dir) {
  const auto& n = m.family->names;
  const auto& c = m.config;
  Named out;
  // Every defined tensor under its name (absent ones belong to another attention kind,
  // norm kind or router).
  auto put = [&](const std::string& name, const at::Tensor& t) {
    if (t.defined()) out.emplace_back(name, t);
  };
  out.emplace_back(n.embed, m.embed_VD);
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    const LayerWeights& L = m.layers[l];
    out.emplace_back(tensor_name(n.attn_norm, l), L.attn_norm_D);
    out.emplace_back(tensor_name(n.ffn_norm, l), L.ffn_norm_D);
    put(tensor_name(n.attn_norm_bias, l), L.attn_norm_bias_D);
    put(tensor_name(n.ffn_norm_bias, l), L.ffn_norm_bias_D);
    const auto& a = L.attn;
    auto bias = [&](const std::string& tmpl) { return tensor_name(tmpl, l, -1, "bias"); };
    put(tensor_name(n.q_a_proj, l), a.wq_a_RD);
    put(bias(n.q_a_proj), a.bq_a);
    put(tensor_name(n.q_a_norm, l), a.q_a_norm_R);
    put(tensor_name(c.mla && c.mla->q_lora_rank > 0 ? n.q_b_proj : n.q_proj, l), a.wq_HAD);
    put(bias(n.q_proj), a.bq);
    put(tensor_name(n.k_proj, l), a.wk_GAD);
    put(bias(n.k_proj), a.bk);
    put(tensor_name(n.v_proj, l), a.wv_GAD);
    put(bias(n.v_proj), a.bv);
    put(tensor_name(n.kv_a_proj, l), a.wkv_a_CD);
    put(bias(n.kv_a_proj), a.bkv_a);
    put(tensor_name(n.kv_a_norm, l), a.kv_a_norm_C);
    put(tensor_name(n.kv_b_proj, l), a.wkv_b);
    put(tensor_name(n.o_proj, l), a.wo_DHA);
    put(bias(n.o_proj), a.bo);
    put(tensor_name(n.q_norm, l), a.q_norm_A);
    put(tensor_name(n.k_norm, l), a.k_norm_A);
    put(tensor_name(n.sinks, l), a.sinks_H);
    put(tensor_name(n.linear_qkvz, l), a.in_qkvz);
    put(tensor_name(n.linear_ba, l), a.in_ba);
    put(tensor_name(n.linear_qkv, l), a.in_qkv);
    put(tensor_name(n.linear_z, l), a.in_z);
    put(tensor_name(n.linear_b, l), a.in_b);
    put(tensor_name(n.linear_a, l), a.in_a);
    put(tensor_name(n.linear_conv, l), a.conv_C1W);
    put(tensor_name(n.linear_dt_bias, l), a.dt_bias_V);
    put(tensor_name(n.linear_A_log, l), a.A_log_V);
    put(tensor_name(n.linear_norm, l), a.linear_norm_Dv);
    put(tensor_name(n.linear_out, l), a.linear_out_DV);
    if (L.moe) {
      const ExpertWeights& w = *L.moe;
      if (!w.all_local()) throw InputError(out_dir, "saving needs all experts in one process (no expert parallelism)");
      const int64_t F = w.down_EDF.size(2);
      if (m.family->save_experts) {  // a layout of the family's own (gpt-oss)
        m.family->save_experts(w, l, out);
      } else if (m.family->experts_fused_transposed) {  // Llama-4: [E, D, 2F], [E, F, D]
        out.emplace_back(tensor_name(n.router, l), w.router_ED);
        out.emplace_back(tensor_name(n.experts_gate_up_fused, l), w.gate_up_EFD.transpose(1, 2).contiguous());
        out.emplace_back(tensor_name(n.experts_down_fused, l), w.down_EDF.transpose(1, 2).contiguous());
      } else {
        out.emplace_back(tensor_name(n.router, l), w.router_ED);
        put(tensor_name(n.router_correction_bias, l),
            n.correction_bias_row && w.correction_bias_E.defined() ? w.correction_bias_E.view({1, -1})
                                                                   : w.correction_bias_E);
        for (int64_t e = 0; e < w.num_real(); ++e) {
          out.emplace_back(tensor_name(n.expert_gate, l, e), w.gate_up_EFD[e].narrow(0, 0, F));
          out.emplace_back(tensor_name(n.expert_up, l, e), w.gate_up_EFD[e].narrow(0, F, F));
          out.emplace_back(tensor_name(n.expert_down, l, e), w.down_EDF[e]);
        }
      }
      if (w.ces_E3W.defined()) out.emplace_back(tensor_name(n.experts_ces, l), w.ces_E3W);
      if (w.theta_ED.defined()) out.emplace_back(tensor_name(n.experts_theta, l), w.theta_ED);
      if (w.novice_ND.defined()) out.emplace_back(tensor_name(n.experts_novices, l), w.novice_ND);
      if (L.shared) {
        out.emplace_back(tensor_name(n.shared_gate, l), L.shared->mlp.gate_FD);
        out.emplace_back(tensor_name(n.shared_up, l), L.shared->mlp.up_FD);
        out.emplace_back(tensor_name(n.shared_down, l), L.shared->mlp.down_DF);
        put(tensor_name(n.shared_expert_gate, l), L.shared->gate_1D);
      }
    } else {
      out.emplace_back(tensor_name(n.mlp_gate, l), L.mlp->gate_FD);
      out.emplace_back(tensor_name(n.mlp_up, l), L.mlp->up_FD);
      out.emplace_back(tensor_name(n.mlp_down, l), L.mlp->down_DF);
    }
  }
  out.emplace_back(n.final_norm, m.final_norm_D);
  put(n.final_norm_bias, m.final_norm_bias_D);
  put(n.lm_head_bias, m.lm_head_bias_V);
  if (!c.tie_word_embeddings) out.emplace_back(n.lm_head, m.lm_head_VD);
  return out;
}

}  // namespace

void save_model(const MoeModel& m, const std::string& out_dir, const SaveOptions& opts) {
  const auto& c = m.config;
  const at::ScalarType dtype = opts.dtype.value_or(dtype_from_config(c.torch_dtype));
  AtomicDir dir(out_dir, opts.overwrite);

  // Shard greedily in checkpoint order.
  Named all = collect_tensors(m, out_dir);
  std::vector<Named> shards(1);
  int64_t bytes = 0;
  for (auto& [name, t] : all) {
    int64_t nb = t.numel() * int64_t(at::elementSize(dtype));
    if (bytes > 0 && bytes + nb > opts.max_shard_bytes) {
      shards.emplace_back();
      bytes = 0;
    }
    shards.back().emplace_back(name, t);
    bytes += nb;
  }
  const std::map<std::string, std::string> meta = {{"format", "pt"}};
  if (shards.size() == 1) {
    hf::write_safetensors((dir.path() / "model.safetensors").string(), shards[0], meta, dtype);
  } else {
    nlohmann::json index = {{"metadata", {{"total_size", 0}}}, {"weight_map", nlohmann::json::object()}};
    int64_t total = 0;
    for (size_t s = 0; s < shards.size(); ++s) {
      char fname[64];
      std::snprintf(fname, sizeof fname, "model-%05zu-of-%05zu.safetensors", s + 1, shards.size());
      hf::write_safetensors((dir.path() / fname).string(), shards[s], meta, dtype);
      for (auto& [name, t] : shards[s]) {
        index["weight_map"][name] = fname;
        total += t.numel() * int64_t(at::elementSize(dtype));
      }
    }
    index["metadata"]["total_size"] = total;
    write_file_atomic(dir.path() / "model.safetensors.index.json", index.dump(2));
  }

  SavedConfigOptions co;
  co.dtype = dtype_config_name(dtype);
  co.dequantised = true;  // weights are written as loaded: dequantised (gpt-oss MXFP4)
  hf::ModelConfig written = c;  // the expert counts the layers hold
  for (int64_t l = 0; l < c.num_hidden_layers; ++l)
    written.num_experts_per_layer[l] = m.layers[l].moe ? m.layers[l].moe->num_real() : 0;
  written.novices_per_layer.clear();
  for (int64_t l = 0; l < c.num_hidden_layers; ++l)
    if (m.layers[l].moe && m.layers[l].moe->num_novices() > 0) written.novices_per_layer.resize(c.num_hidden_layers, 0);
  for (int64_t l = 0; l < int64_t(written.novices_per_layer.size()); ++l)
    written.novices_per_layer[l] = m.layers[l].moe ? m.layers[l].moe->num_novices() : 0;
  write_saved_config(dir.path(), written, *m.family, co, out_dir);
  dir.commit();
}

}  // namespace moelab::models
