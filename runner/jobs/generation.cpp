#include "jobs/generation.h"

#include <algorithm>
#include <filesystem>

#include "cluster/data_parallel.h"
#include "common/error.h"
#include "common/file_text.h"
#include "jobs/json_lines.h"
#include "jobs/multiple_choice.h"

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

std::vector<GenerationResult> generate_greedy(const models::MoeModel& model, cluster::Communicator& comm,
                                              const Tokenizer& tok, const std::vector<GenerationRequest>& requests,
                                              const GenerationSettings& settings) {
  const int64_t S = int64_t(requests.size());
  std::vector<GenerationResult> out(S);
  std::vector<std::vector<int64_t>> seqs(S);
  std::vector<bool> done(S, false);
  for (int64_t i = 0; i < S; ++i) {
    const auto& r = requests[i];
    const bool special = settings.add_special_tokens && !starts_with_token_text(tok, settings.bos_token, r.context);
    std::vector<int64_t> ids = tok.encode(r.context, special);
    if (settings.max_length > 0) {
      const int64_t keep = settings.max_length - r.max_gen_toks;
      if (keep <= 0)
        throw InputError(r.line > 0 ? "line " + std::to_string(r.line) : "request " + std::to_string(i),
                         "max_gen_toks " + std::to_string(r.max_gen_toks) + " leaves no room for the context in " +
                             std::to_string(settings.max_length) + " tokens (--max-length)");
      if (int64_t(ids.size()) > keep) ids.erase(ids.begin(), ids.end() - keep);
    }
    if (ids.empty())
      throw InputError("request " + std::to_string(i), "the context encodes to no token (nothing to continue)");
    for (int64_t id : ids)
      if (id < 0 || id >= model.config.vocab_size)
        throw InputError("request " + std::to_string(i), "token id " + std::to_string(id) +
                                                             " is outside the model's vocabulary");
    out[i].context_ids = ids;
    seqs[i] = std::move(ids);
  }
  cluster::DataParallelOptions dp;
  dp.batch_size = settings.batch_size;
  for (;;) {
    std::vector<int64_t> active;
    for (int64_t i = 0; i < S; ++i)
      if (!done[i]) active.push_back(i);
    if (active.empty()) break;  // the same on every rank: every rank applies the same tokens
    std::vector<std::vector<int64_t>> inputs;
    for (int64_t i : active) inputs.push_back(seqs[i]);
    // One slot per active sequence, written by the rank that ran it and 0 elsewhere.
    at::Tensor next = at::zeros({int64_t(active.size())}, at::kLong);
    int64_t* nx = next.data_ptr<int64_t>();
    cluster::run_data_parallel(model, comm, inputs, dp, nullptr, [&](int64_t a, const at::Tensor& logits_TV) {
      nx[a] = logits_TV.select(0, logits_TV.size(0) - 1).to(at::kFloat).argmax().item<int64_t>();
    });
    comm.all_reduce_sum(next);
    nx = next.data_ptr<int64_t>();
    for (size_t a = 0; a < active.size(); ++a) {
      const int64_t i = active[a], id = nx[a];
      const auto& r = requests[i];
      auto& res = out[i];
      if (std::find(settings.eos_ids.begin(), settings.eos_ids.end(), id) != settings.eos_ids.end()) {
        res.stop = "eos";
        done[i] = true;
        continue;
      }
      res.tokens.push_back(id);
      seqs[i].push_back(id);
      if (!r.until.empty() && first_stop(tok.decode(res.tokens, /*skip_special_tokens=*/true), r.until) !=
                                  std::string::npos) {
        res.stop = "until";
        done[i] = true;
      } else if (int64_t(res.tokens.size()) >= r.max_gen_toks) {
        res.stop = "length";
        done[i] = true;
      }
    }
  }
  for (int64_t i = 0; i < S; ++i) {
    std::string text = tok.decode(out[i].tokens, /*skip_special_tokens=*/true);
    const size_t cut = first_stop(text, requests[i].until);
    out[i].text = cut == std::string::npos ? text : text.substr(0, cut);
  }
  return out;
}

}  // namespace moelab::jobs
