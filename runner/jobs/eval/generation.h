// Greedy generation (moelab generate; lm-eval's generate_until through
// runner/lm_eval_backend): each request's context is extended one token at a time by the
// argmax of the model's next-token logits (float32), as transformers' generate with
// do_sample=False, until an end-of-sequence id, a stop string in the generated text, or
// max_gen_toks tokens.
//
// Requests are spread over ranks like evaluation (batches of sequences by data
// parallelism, experts by expert parallelism). Each batch runs its contexts once, then one
// token per step over a key/value cache (core/models/kv_cache.h, as transformers' generate), so a
// request of C context tokens generating G tokens costs one forward of C tokens and G of
// one token; the cache holds 2 x layers x B x kv_heads x head_dim x (C + G) values of the
// compute dtype. All ranks learn every request's tokens at the end.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "cluster/communicator.h"
#include "core/models/moe_model.h"
#include "core/tokenizer/tokenizer.h"

namespace moelab::jobs {

struct GenerationRequest {
  std::string context;
  std::vector<std::string> until;  // stop strings (the text is cut before the first one found)
  int64_t max_gen_toks = 256;      // tokens generated at most, > 0
  int64_t line = 0;                // 1-based line of the requests file (0: not from a file)
};

// JSON lines {"context": str, "until": [str] (optional), "max_gen_toks": int (optional,
// default `default_max_gen_toks`)}. InputError naming the file and line on a bad field.
std::vector<GenerationRequest> read_generation_requests(const std::string& path, int64_t default_max_gen_toks);

struct GenerationSettings {
  // Longest input: contexts are cut from the left to max_length - max_gen_toks tokens (as
  // lm-eval's HF backend); 0: no cut.
  int64_t max_length = 0;
  bool add_special_tokens = true;  // encode contexts with the tokenizer's special tokens ...
  // ... except a context that starts with this token's text (lm-eval's has_bos_prefix with
  // the tokenizer's BOS; HFLM decides it per batch from the batch's first context, moelab
  // per request: the same whenever a batch's contexts agree, as chat-templated ones do).
  std::optional<int64_t> bos_token;
  std::vector<int64_t> eos_ids;    // generation stops after producing one (not included)
  int64_t batch_size = 8;          // sequences per forward
};

struct GenerationResult {
  std::vector<int64_t> context_ids;  // after the cut
  std::vector<int64_t> tokens;       // generated, without the end-of-sequence id
  std::string text;                  // tokens decoded without special tokens, cut before the first stop string
  std::string stop;                  // "until" | "eos" | "length"
};

// Each request's context as token ids, as generation runs it: encoded (special tokens by
// the settings' BOS rule), cut from the left to max_length - max_gen_toks. InputError
// naming the request for a context that cannot run (no token, no room, an id outside
// [0, vocab_size)).
std::vector<std::vector<int64_t>> encode_contexts(const Tokenizer& tok, const std::vector<GenerationRequest>& requests,
                                                  const GenerationSettings& settings, int64_t vocab_size);

// The largest key/value cache one rank holds while generating (bytes): over the batches of
// settings.batch_size requests, 2 (keys, values) x layers x B x each layer's per-token
// width x (longest context + max_gen_toks) x dtype_bytes. For the memory check before the
// model is loaded.
int64_t kv_cache_peak_bytes(const hf::ModelConfig& config, int64_t dtype_bytes,
                            const std::vector<GenerationRequest>& requests,
                            const std::vector<std::vector<int64_t>>& contexts, int64_t batch_size);

// Runs every request (its context from encode_contexts) to its end; the same results on
// every rank.
std::vector<GenerationResult> generate_greedy(const models::MoeModel& model, cluster::Communicator& comm,
                                              const Tokenizer& tok, const std::vector<GenerationRequest>& requests,
                                              const std::vector<std::vector<int64_t>>& contexts,
                                              const GenerationSettings& settings);

// The end-of-sequence ids of a checkpoint folder: generation_config.json's eos_token_id
// (an id or a list), else config.json's; empty when neither names one.
std::vector<int64_t> eos_token_ids(const std::string& model_dir, const nlohmann::json& config_raw);

}  // namespace moelab::jobs
