#include "jobs/perplexity.h"

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "common/error.h"
#include "common/file_text.h"
#include "jobs/text_documents.h"
#include "tokenizer/tokenizer.h"

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

std::vector<std::string> read_text_documents(const std::string& path, const std::string& text_field) {
  std::vector<std::string> docs = read_documents(path, text_field, "text file");
  if (docs.size() == 1 && docs[0].empty() && !has_suffix(path, ".jsonl"))
    throw InputError(path, "the file is empty: no text to evaluate");
  if (docs.empty()) throw InputError(path, "the file holds no document (no non-blank line)");
  return docs;
}

PerplexityPlan plan_perplexity(const std::vector<TextFile>& files, const std::vector<std::vector<std::string>>& docs,
                               const Tokenizer& tok, int64_t max_length, int64_t stride) {
  if (max_length < 2) throw InputError("--max-length", "must be at least 2");
  if (stride < 1 || stride > max_length)
    throw InputError("--stride", "must be between 1 and --max-length (" + std::to_string(max_length) + ")");
  PerplexityPlan plan;
  plan.files = files;
  plan.max_length = max_length;
  plan.stride = stride;
  for (size_t f = 0; f < files.size(); ++f) {
    const size_t first_window = plan.windows.size();
    for (size_t d = 0; d < docs[f].size(); ++d) {
      std::vector<int64_t> ids;
      try {
        ids = tok.encode(docs[f][d], /*add_special_tokens=*/true);
      } catch (const InputError& e) {
        const bool jsonl = has_suffix(files[f].path, ".jsonl");
        throw InputError(files[f].path, (jsonl ? "document " + std::to_string(d + 1) + ": " : "") + e.what());
      }
      const int64_t doc_index = int64_t(plan.docs.size());
      plan.docs.push_back({int64_t(f), int64_t(docs[f][d].size()), int64_t(ids.size())});
      for (const Window& w : sliding_windows(int64_t(ids.size()), max_length, stride)) {
        plan.window_doc.push_back(doc_index);
        plan.windows.push_back({std::vector<int64_t>(ids.begin() + w.begin, ids.begin() + w.end),
                                w.score_from - w.begin});
      }
    }
    if (plan.windows.size() == first_window)
      throw InputError(files[f].path, "no token to score: every document tokenizes to fewer than 2 tokens");
  }
  return plan;
}

double TextTotals::perplexity() const { return tokens > 0 ? std::exp(nll / double(tokens)) : NAN; }

double TextTotals::bits_per_byte() const { return bytes > 0 ? nll / std::log(2.0) / double(bytes) : NAN; }

PerplexityResults summarize_perplexity(const PerplexityPlan& plan, const std::vector<SequenceScore>& window_scores) {
  TORCH_CHECK(window_scores.size() == plan.windows.size(), "summarize_perplexity: one score per window");
  PerplexityResults r;
  r.per_doc.resize(plan.docs.size());
  for (size_t d = 0; d < plan.docs.size(); ++d) {
    r.per_doc[d].docs = 1;
    r.per_doc[d].bytes = plan.docs[d].bytes;
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
