#include "runner/jobs/eval/perplexity.h"

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/common/error.h"
#include "core/common/file_text.h"
#include "core/common/python_text.h"
#include "core/tokenizer/tokenizer.h"
#include "runner/jobs/data/text_documents.h"
#include "runner/jobs/eval/multiple_choice.h"

namespace moelab::jobs {
std::vector<Window> sliding_windows(int64_t n, int64_t max_length, int64_t stride) {
  TORCH_CHECK(stride >= 1 && stride <= max_length, "sliding_windows: need 1 <= stride <= max_length");
  std::vector<Window> out;
  int64_t prev_end = 0;
  for (int64_t begin = 0; begin < n; begin += stride) {
    const int64_t end = std::min(begin + max_length, n);
    // Tokens before prev_end were scored by an earlier window; the window's first
    // token has no context inside it.
    Window w{begin, end, std::max(prev_end, begin + 1)};
    if (w.score_from < w.end) out.push_back(w);
    prev_end = end;
    if (end == n) break;
  }
  return out;
}

std::vector<Window> rolling_windows(int64_t n, int64_t max_length) {
  TORCH_CHECK(max_length >= 1, "rolling_windows: need max_length >= 1");
  // In token indices t (id t + 1): the first window predicts tokens [0, first) from
  // [prefix, tokens[0, first - 1)); each later one predicts up to max_length more,
  // tokens [end - len, end), from the max_length tokens before `end` (the window is
  // shifted back to a full context when fewer are left to predict).
  std::vector<Window> out;
  if (n < 1) return out;
  const int64_t first = std::min(max_length, n);
  out.push_back({0, first + 1, 1});
  for (int64_t predicted = first; predicted < n;) {
    const int64_t len = std::min(n - predicted, max_length);
    const int64_t end = predicted + len;  // tokens [end - len, end) are predicted
    out.push_back({end - max_length, end + 1, end - len + 1});
    predicted = end;
  }
  return out;
}

std::vector<std::string> read_text_documents(const std::string& path, const std::string& text_field) {
  std::vector<std::string> docs = read_documents(path, text_field, "text file");
  if (docs.size() == 1 && docs[0].empty() && !has_suffix(path, ".jsonl"))
    throw InputError(path, "the file is empty: no text to evaluate");
  if (docs.empty()) throw InputError(path, "the file holds no document (no non-blank line)");
  return docs;
}

PerplexityPlan plan_perplexity(const std::vector<TextFile>& files, const std::vector<std::vector<std::string>>& docs,
                               const Tokenizer& tok, int64_t max_length, int64_t stride, const WindowRule& rule) {
  if (max_length < 2) throw InputError("--max-length", "must be at least 2");
  if (stride < 1 || stride > max_length)
    throw InputError("--stride", "must be between 1 and --max-length (" + std::to_string(max_length) + ")");
  PerplexityPlan plan;
  plan.files = files;
  plan.max_length = max_length;
  plan.stride = stride;
  plan.rule = rule;
  if (rule.lm_eval_rolling && rule.prefix_token < 0)
    throw InputError("--windows lm-eval", "the model's config.json has no bos_token_id or eos_token_id for the "
                                          "token before each document");
  for (size_t f = 0; f < files.size(); ++f) {
    const size_t first_window = plan.windows.size();
    for (size_t d = 0; d < docs[f].size(); ++d) {
      std::vector<int64_t> ids;
      try {
        // lm-eval's rolling rule encodes as HFLM.tok_encode: add_bos_token, except that a
        // document starting with the prefix token's text gets no special tokens (has_bos_prefix).
        const bool special = !rule.lm_eval_rolling ||
                             (rule.add_special_tokens && !starts_with_token_text(tok, rule.prefix_token, docs[f][d]));
        ids = tok.encode(docs[f][d], special);
      } catch (const InputError& e) {
        const bool jsonl = has_suffix(files[f].path, ".jsonl");
        throw InputError(files[f].path, (jsonl ? "document " + std::to_string(d + 1) + ": " : "") + e.what());
      }
      const int64_t doc_index = int64_t(plan.docs.size());
      plan.docs.push_back({int64_t(f), int64_t(docs[f][d].size()), python_split_whitespace_count(docs[f][d]),
                           int64_t(ids.size())});
      const int64_t n = int64_t(ids.size());
      if (rule.lm_eval_rolling) ids.insert(ids.begin(), rule.prefix_token);
      for (const Window& w : rule.lm_eval_rolling ? rolling_windows(n, max_length)
                                                  : sliding_windows(n, max_length, stride)) {
        plan.window_doc.push_back(doc_index);
        plan.windows.push_back({std::vector<int64_t>(ids.begin() + w.begin, ids.begin() + w.end),
                                w.score_from - w.begin});
      }
    }
    if (plan.windows.size() == first_window)
      throw InputError(files[f].path, std::string("no token to score: every document tokenizes to ") +
                                          (rule.lm_eval_rolling ? "no token" : "fewer than 2 tokens"));
  }
  return plan;
}

double TextTotals::perplexity() const { return tokens > 0 ? std::exp(nll / double(tokens)) : NAN; }

double TextTotals::bits_per_byte() const { return bytes > 0 ? nll / std::log(2.0) / double(bytes) : NAN; }

double TextTotals::byte_perplexity() const { return bytes > 0 ? std::exp(nll / double(bytes)) : NAN; }

double TextTotals::word_perplexity() const { return words > 0 ? std::exp(nll / double(words)) : NAN; }

PerplexityResults summarize_perplexity(const PerplexityPlan& plan, const std::vector<SequenceScore>& window_scores) {
  TORCH_CHECK(window_scores.size() == plan.windows.size(), "summarize_perplexity: one score per window");
  PerplexityResults r;
  r.per_doc.resize(plan.docs.size());
  for (size_t d = 0; d < plan.docs.size(); ++d) {
    r.per_doc[d].docs = 1;
    r.per_doc[d].bytes = plan.docs[d].bytes;
    r.per_doc[d].words = plan.docs[d].words;
  }
  for (size_t w = 0; w < plan.windows.size(); ++w) {  // windows are in document order
    TextTotals& t = r.per_doc[plan.window_doc[w]];
    t.nll -= window_scores[w].logprob;
    t.tokens += window_scores[w].n_scored;
  }
  auto add = [](TextTotals& into, const TextTotals& x) {
    into.docs += x.docs;
    into.tokens += x.tokens;
    into.bytes += x.bytes;
    into.words += x.words;
    into.nll += x.nll;
  };
  r.per_file.resize(plan.files.size());
  for (size_t d = 0; d < plan.docs.size(); ++d) add(r.per_file[plan.docs[d].file], r.per_doc[d]);
  for (size_t f = 0; f < plan.files.size(); ++f) {
    auto it = std::find_if(r.per_domain.begin(), r.per_domain.end(),
                           [&](const auto& p) { return p.first == plan.files[f].domain; });
    if (it == r.per_domain.end()) it = r.per_domain.insert(r.per_domain.end(), {plan.files[f].domain, TextTotals{}});
    add(it->second, r.per_file[f]);
  }
  return r;
}

}  // namespace moelab::jobs
