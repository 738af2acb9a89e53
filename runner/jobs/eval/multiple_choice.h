// Multiple-choice tasks scored by log-likelihood, following EleutherAI's
// lm-evaluation-harness (HFLM, `output_type: multiple_choice`). The task format is
// configs/tasks/README.md.
//
// Per item, with k shots drawn from the pool:
//   context      = description + sum over shots of
//                    (query(shot) + target_delimiter + choices(shot)[gold] + fewshot_delimiter)
//                  + query(item)
//   continuation = target_delimiter + choice, for each choice
// Tokenization (lm-eval's `_encode_pair` for causal models): trailing whitespace of
// the context moves to the front of the continuation; then whole = encode(context +
// continuation) and ctx = encode(context), both with the tokenizer's special tokens
// (unless the string starts with the prefix token's text: has_bos_prefix, below),
// and the continuation's tokens are whole[len(ctx):]. An empty context becomes the
// prefix token (BOS, else EOS) and the continuation is encoded without special
// tokens. Context + continuation is cut from the left to max_length + 1 tokens.
// Scores: loglik = sum of the continuation tokens' log-probabilities;
//   acc       argmax loglik == gold
//   acc_norm  argmax loglik / len(choice) in Unicode code points == gold (lm-eval's acc_norm)
//   acc_bytes argmax loglik / UTF-8 bytes of choice == gold (lm-eval's acc_bytes)
// (lengths of the choice without the delimiter; argmax takes the first maximum).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "runner/jobs/eval/sequence_scores.h"

namespace moelab {
class Tokenizer;
}

namespace moelab::jobs {

// How to read a task file (defaults: the native format; a YAML file beside the task
// may override each field).
struct McFormat {
  std::string name;  // task name; default: the file stem
  // Field holding the question; empty: "query", or "context" when "query" is absent.
  std::string query_field;
  std::string choices_field = "choices";
  std::string gold_field = "gold";
  // "{field}" placeholders filled from the item's fields ("{{" and "}}" for braces);
  // replaces the query field when set.
  std::string prompt_template;
  std::string target_delimiter = " ";
  std::string fewshot_delimiter = "\n\n";
  std::string description;   // prepended to every context, as is
  std::string fewshot_file;  // pool of few-shot examples; empty: the task's own other items
  // "random": drawn per item (draw_fewshot); "first_n": the pool's first k in file order,
  // the item itself left out (lm-eval's first_n sampler, for canonically ordered shots).
  std::string fewshot_sampler = "random";
};

struct McItem {
  std::string query;  // the item's question text (template applied)
  std::vector<std::string> choices;
  int64_t gold = 0;
  int64_t line = 0;  // 1-based line in its file
};

struct McTask {
  std::string path;
  McFormat format;
  std::vector<McItem> items;
  std::vector<McItem> pool;  // few-shot pool when format.fewshot_file is set
  bool own_pool() const { return format.fewshot_file.empty(); }
};

// Refuses a prompt template written in lm-eval's Jinja syntax ("{{question}}", "{{ q }}"):
// in moelab's syntax that is a literal "{question}", which would silently score every
// item with the placeholder's name in place of its text. InputError naming `where`.
void check_prompt_template(const std::string& tpl, const std::string& where);

// Reads a task (and its few-shot file). InputError naming the file, line and field
// for a malformed line, a missing field, an empty choice, a gold index out of range.
McTask read_mc_task(const std::string& path, const McFormat& format);

struct McSettings {
  int64_t num_fewshot = 0;
  uint64_t fewshot_seed = 1234;
  int64_t max_length = 2048;               // model context, tokens
  std::optional<int64_t> prefix_token;     // for empty contexts (BOS, else EOS)
};

// The few-shot examples of item `item` (indices into the pool): k distinct indices,
// never the item itself when the pool is the task. Sampler "random": drawn by a
// splitmix64 generator seeded from (seed, item), so they depend on neither the other
// items nor the ranks; "first_n": the first k of the pool in order (seed unused).
std::vector<int64_t> draw_fewshot(const McTask& task, int64_t item, int64_t k, uint64_t seed);

// The context string of `item` given its shots.
std::string build_context(const McTask& task, int64_t item, const std::vector<int64_t>& shots);

// lm-eval's has_bos_prefix (0.4.13): HFLM encodes a string that already starts with the
// text of `token` (its prefix token: BOS, else EOS) without the tokenizer's special
// tokens, so that a chat-templated prompt ("<s><|user|>...") gets no second BOS. False
// when `token` is unset or decodes to nothing.
bool starts_with_token_text(const Tokenizer& tok, std::optional<int64_t> token, const std::string& text);

// lm-eval's (context tokens, continuation tokens); each of the two encodings drops the
// special tokens when its string starts with the prefix token's text (has_bos_prefix).
std::pair<std::vector<int64_t>, std::vector<int64_t>> encode_pair(const Tokenizer& tok, const std::string& context,
                                                                  const std::string& continuation,
                                                                  std::optional<int64_t> prefix_token,
                                                                  const std::string& where);

// One scored request, as lm-eval's HFLM.loglikelihood builds it: encode_pair, then
// context + continuation cut from the left to max_length + 1 tokens (the last one only a
// target). Throws InputError (prefixed with `where`) when the continuation adds no token
// or is longer than max_length.
ScoredSequence loglikelihood_request(const Tokenizer& tok, const std::string& context, const std::string& continuation,
                                     int64_t max_length, std::optional<int64_t> prefix_token,
                                     const std::string& where);

// lm-eval's raw `loglikelihood` requests (moelab eval --requests; the lm-eval backend in
// runner/lm_eval_backend/): JSON lines {"context": string, "continuation": string}, one
// request per non-blank line. Errors name the file, the line and the field.
struct LoglikelihoodRequest {
  std::string context, continuation;
  int64_t line = 0;  // 1-based
};
std::vector<LoglikelihoodRequest> read_loglikelihood_requests(const std::string& path);

struct McPlan {
  const McTask* task = nullptr;
  McSettings settings;
  std::vector<std::vector<int64_t>> shots;  // per item
  std::vector<ScoredSequence> requests;     // item-major, then choice
  std::vector<int64_t> first_request;       // per item, index of its first request
};

McPlan plan_mc(const McTask& task, const McSettings& settings, const Tokenizer& tok);

struct McItemResult {
  std::vector<double> loglik;
  std::vector<int64_t> n_tokens;
  std::vector<bool> greedy;
  int64_t pred = 0, pred_norm = 0, pred_bytes = 0;
};

struct McResults {
  std::vector<McItemResult> items;
  double acc = 0, acc_norm = 0, acc_bytes = 0;
  // lm-eval's stderr of a mean: sample standard deviation / sqrt(n); NaN for n < 2.
  double acc_stderr = 0, acc_norm_stderr = 0, acc_bytes_stderr = 0;
  int64_t scored_tokens = 0;  // continuation tokens, all choices
};

// scores: score_sequences() of plan.requests.
McResults summarize_mc(const McPlan& plan, const std::vector<SequenceScore>& scores);

}  // namespace moelab::jobs
