#include "runner/jobs/eval/generation.h"

#include <algorithm>
#include <filesystem>

#include "core/common/error.h"
#include "core/common/file_text.h"
#include "core/models/kv_cache.h"
#include "runner/jobs/data/json_lines.h"
#include "runner/jobs/eval/multiple_choice.h"

namespace moelab::jobs {
namespace {

// The position of the first stop string in `text`, or npos.
size_t first_stop(const std::string& text, const std::vector<std::string>& until) {
  size_t best = std::string::npos;
  for (const auto& s : until) {
    if (s.empty()) continue;
    const size_t at = text.find(s);
    if (at < best) best = at;
  }
  return best;
}

// Every rank learns every request's tokens and stop reason from the rank that ran it
// (`mine`): counts first, then the tokens, each summed over ranks (0 elsewhere).
void share_results(cluster::Communicator& comm, const std::vector<int64_t>& mine, std::vector<GenerationResult>& out) {
  static const std::vector<std::string> kStops = {"until", "eos", "length"};
  const int64_t S = int64_t(out.size());
  at::Tensor head = at::zeros({S, 2}, at::kLong);  // token count, stop reason (1-based)
  int64_t* h = head.data_ptr<int64_t>();
  for (int64_t i : mine) {
    h[2 * i] = int64_t(out[i].tokens.size());
    h[2 * i + 1] = int64_t(std::find(kStops.begin(), kStops.end(), out[i].stop) - kStops.begin()) + 1;
  }
  comm.all_reduce_sum(head);
  h = head.data_ptr<int64_t>();
  std::vector<int64_t> offset(S + 1, 0);
  for (int64_t i = 0; i < S; ++i) offset[i + 1] = offset[i] + h[2 * i];
  at::Tensor flat = at::zeros({offset[S]}, at::kLong);
  for (int64_t i : mine) std::copy(out[i].tokens.begin(), out[i].tokens.end(), flat.data_ptr<int64_t>() + offset[i]);
  comm.all_reduce_sum(flat);
  const int64_t* f = flat.data_ptr<int64_t>();
  for (int64_t i = 0; i < S; ++i) {
    out[i].tokens.assign(f + offset[i], f + offset[i + 1]);
    out[i].stop = kStops.at(size_t(h[2 * i + 1] - 1));
  }
}

}  // namespace

std::vector<GenerationRequest> read_generation_requests(const std::string& path, int64_t default_max_gen_toks) {
  std::vector<GenerationRequest> out;
  for_each_json_line(path, "requests file", [&](const nlohmann::json& j, const std::string& where, int64_t n) {
    GenerationRequest r;
    r.line = n;
    if (!j.contains("context") || !j["context"].is_string())
      throw InputError(where, "field \"context\" must be a string");
    r.context = j["context"].get<std::string>();
    if (j.contains("until") && !j["until"].is_null()) {
      const auto& u = j["until"];
      if (u.is_string()) {
        r.until.push_back(u.get<std::string>());
      } else if (u.is_array()) {
        for (const auto& s : u) {
          if (!s.is_string()) throw InputError(where, "field \"until\" must be a string or a list of strings");
          r.until.push_back(s.get<std::string>());
        }
      } else {
        throw InputError(where, "field \"until\" must be a string or a list of strings");
      }
    }
    r.max_gen_toks = default_max_gen_toks;
    if (j.contains("max_gen_toks") && !j["max_gen_toks"].is_null()) {
      if (!j["max_gen_toks"].is_number_integer() || j["max_gen_toks"].get<int64_t>() <= 0)
        throw InputError(where, "field \"max_gen_toks\" must be a positive integer");
      r.max_gen_toks = j["max_gen_toks"].get<int64_t>();
    }
    out.push_back(std::move(r));
  });
  if (out.empty()) throw InputError(path, "no requests");
  return out;
}

std::vector<int64_t> eos_token_ids(const std::string& model_dir, const nlohmann::json& config_raw) {
  auto ids_of = [](const nlohmann::json& j) {
    std::vector<int64_t> ids;
    if (!j.contains("eos_token_id")) return ids;
    const auto& v = j["eos_token_id"];
    if (v.is_number_integer()) ids.push_back(v.get<int64_t>());
    if (v.is_array())
      for (const auto& x : v)
        if (x.is_number_integer()) ids.push_back(x.get<int64_t>());
    return ids;
  };
  const auto gen = std::filesystem::path(model_dir) / "generation_config.json";
  if (std::filesystem::exists(gen)) {
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(read_file_text(gen.string(), "generation config"));
    } catch (const nlohmann::json::exception&) {
      throw InputError(gen.string(), "not valid JSON");
    }
    if (auto ids = ids_of(j); !ids.empty()) return ids;
  }
  return ids_of(config_raw);
}

std::vector<std::vector<int64_t>> encode_contexts(const Tokenizer& tok, const std::vector<GenerationRequest>& requests,
                                                  const GenerationSettings& settings, int64_t vocab_size) {
  std::vector<std::vector<int64_t>> contexts;
  for (size_t i = 0; i < requests.size(); ++i) {
    const auto& r = requests[i];
    const std::string where = r.line > 0 ? "line " + std::to_string(r.line) : "request " + std::to_string(i);
    const bool special = settings.add_special_tokens && !starts_with_token_text(tok, settings.bos_token, r.context);
    std::vector<int64_t> ids = tok.encode(r.context, special);
    if (settings.max_length > 0) {
      const int64_t keep = settings.max_length - r.max_gen_toks;
      if (keep <= 0)
        throw InputError(where, "max_gen_toks " + std::to_string(r.max_gen_toks) +
                                    " leaves no room for the context in " + std::to_string(settings.max_length) +
                                    " tokens (--max-length)");
      if (int64_t(ids.size()) > keep) ids.erase(ids.begin(), ids.end() - keep);
    }
    if (ids.empty()) throw InputError(where, "the context encodes to no token (nothing to continue)");
    for (int64_t id : ids)
      if (id < 0 || id >= vocab_size)
        throw InputError(where, "token id " + std::to_string(id) + " is outside the model's vocabulary");
    contexts.push_back(std::move(ids));
  }
  return contexts;
}

int64_t kv_cache_peak_bytes(const hf::ModelConfig& c, int64_t dtype_bytes, const std::vector<GenerationRequest>& requests,
                            const std::vector<std::vector<int64_t>>& contexts, int64_t batch_size) {
  // Values cached per token and layer: keys and values of every kv head (MLA: expanded to
  // every head, as core/models/kv_cache.h keeps them).
  const int64_t per_token = c.mla ? c.num_attention_heads * (c.mla->qk_head_dim() + c.mla->v_head_dim)
                                  : 2 * c.num_key_value_heads * c.head_dim;
  const int64_t S = int64_t(requests.size()), bs = std::max<int64_t>(1, batch_size);
  int64_t peak = 0;
  for (int64_t b = 0; b < S; b += bs) {
    int64_t slots = 0;
    const int64_t B = std::min(S, b + bs) - b;
    for (int64_t i = b; i < b + B; ++i)
      slots = std::max(slots, int64_t(contexts[i].size()) + requests[i].max_gen_toks);
    // Gated DeltaNet layers keep a state of fixed size instead (core/models/kv_cache.h): the
    // convolution's last inputs [C, W - 1] and the float32 delta-rule state [Hv, Dk, Dv].
    int64_t attention_layers = c.num_hidden_layers, linear_state = 0;
    if (c.linear_attn) {
      const auto& a = *c.linear_attn;
      for (int64_t l = 0; l < c.num_hidden_layers; ++l)
        if (c.uses_linear_attention(l)) {
          --attention_layers;
          linear_state += B * (a.conv_dim() * (a.conv_kernel - 1) * dtype_bytes +
                               a.num_v_heads * a.k_head_dim * a.v_head_dim * 4);
        }
    }
    peak = std::max(peak, attention_layers * B * per_token * slots * dtype_bytes + linear_state);
  }
  return peak;
}

std::vector<GenerationResult> generate_greedy(const models::MoeModel& model, cluster::Communicator& comm,
                                              const Tokenizer& tok, const std::vector<GenerationRequest>& requests,
                                              const std::vector<std::vector<int64_t>>& seqs,
                                              const GenerationSettings& settings) {
  const int64_t S = int64_t(requests.size());
  TORCH_CHECK(int64_t(seqs.size()) == S, "one context per request");
  std::vector<GenerationResult> out(S);
  for (int64_t i = 0; i < S; ++i) out[i].context_ids = seqs[i];
  // Batch b (requests [b * bs, (b + 1) * bs)) runs on rank b % P, in waves of P batches: a
  // wave's ranks prefill their batch's contexts, then decode one token per step for every
  // unfinished sequence (finished ones leave the batch and its cache) until no rank has one
  // left. Every rank runs every step (with B = 0 when it has nothing), as expert
  // parallelism's exchanges need.
  const int64_t P = comm.size(), bs = std::max<int64_t>(1, settings.batch_size);
  const int64_t num_batches = (S + bs - 1) / bs, waves = (num_batches + P - 1) / P;
  // Applies a sequence's next token; true when the sequence has ended.
  auto advance = [&](int64_t i, int64_t id) {
    const auto& r = requests[i];
    auto& res = out[i];
    if (std::find(settings.eos_ids.begin(), settings.eos_ids.end(), id) != settings.eos_ids.end()) {
      res.stop = "eos";
      return true;
    }
    res.tokens.push_back(id);
    if (!r.until.empty() &&
        first_stop(tok.decode(res.tokens, /*skip_special_tokens=*/true), r.until) != std::string::npos) {
      res.stop = "until";
      return true;
    }
    if (int64_t(res.tokens.size()) >= r.max_gen_toks) {
      res.stop = "length";
      return true;
    }
    return false;
  };
  std::vector<int64_t> mine;  // requests this rank ran
  for (int64_t w = 0; w < waves; ++w) {
    const int64_t b = w * P + comm.rank();
    std::vector<int64_t> live;  // requests of this rank's batch still generating, in batch order
    for (int64_t i = b * bs; b < num_batches && i < std::min(S, (b + 1) * bs); ++i) live.push_back(i);
    mine.insert(mine.end(), live.begin(), live.end());
    models::KvCache cache;
    for (int64_t i : live)
      cache.reserve = std::max(cache.reserve, int64_t(seqs[i].size()) + requests[i].max_gen_toks);
    // Prefill: the contexts, right-padded.
    int64_t T = 0;
    std::vector<int64_t> lengths;
    for (int64_t i : live) {
      lengths.push_back(int64_t(seqs[i].size()));
      T = std::max(T, lengths.back());
    }
    at::Tensor ids = at::zeros({int64_t(live.size()), std::max<int64_t>(T, 1)}, at::kLong);
    for (size_t a = 0; a < live.size(); ++a)
      std::copy(seqs[live[a]].begin(), seqs[live[a]].end(), ids[a].data_ptr<int64_t>());
    at::Tensor logits_BV = models::forward_cached(model, ids, lengths, cache);
    for (;;) {
      const at::Tensor next = logits_BV.to(at::kFloat).argmax(-1).cpu().contiguous();
      const int64_t* nx = next.data_ptr<int64_t>();
      std::vector<int64_t> rows, still;
      for (size_t a = 0; a < live.size(); ++a)
        if (!advance(live[a], nx[a])) {
          rows.push_back(int64_t(a));
          still.push_back(live[a]);
        }
      at::Tensor left = at::tensor({int64_t(still.size())}, at::kLong);
      comm.all_reduce_sum(left);  // the same decision on every rank
      if (left.item<int64_t>() == 0) break;
      cache.keep(rows);
      live = still;
      at::Tensor step = at::zeros({int64_t(live.size()), 1}, at::kLong);
      for (size_t a = 0; a < live.size(); ++a) step.data_ptr<int64_t>()[a] = out[live[a]].tokens.back();
      logits_BV = models::forward_cached(model, step, std::vector<int64_t>(live.size(), 1), cache);
    }
  }
  share_results(comm, mine, out);
  for (int64_t i = 0; i < S; ++i) {
    std::string text = tok.decode(out[i].tokens, /*skip_special_tokens=*/true);
    const size_t cut = first_stop(text, requests[i].until);
    out[i].text = cut == std::string::npos ? text : text.substr(0, cut);
  }
  return out;
}

}  // namespace moelab::jobs
