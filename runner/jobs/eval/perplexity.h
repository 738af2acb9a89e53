// Perplexity and bits per byte of text files, per file and per domain.
//
// Documents: a .jsonl file holds one document per non-blank line (a JSON object with
// a text field); any other file (.txt, .md, ...) is one document. Each document is
// tokenized on its own with the tokenizer's special tokens (as transformers'
// `tokenizer(text)` does: Llama-style tokenizers prepend <s>), and windows never
// span two documents.
//
// Windows (Hugging Face, "Perplexity of fixed-length models"): over a document of n
// tokens, windows start at 0, stride, 2*stride, ... and hold up to max_length
// tokens; a window scores only the tokens after the previous window's end, and a
// token is scored only with at least one token of context in its window, so the
// document's first token is never scored (nor, when stride == max_length, the first
// token of each window). The last window ends at the document's end.
//
// Windows (lm-evaluation-harness, `loglikelihood_rolling`; `--windows lm-eval`): the
// document is tokenized without special tokens (unless `add_special_tokens`: lm-eval's
// add_bos_token, which then has two start tokens on tokenizers that add one) and cut into
// disjoint windows of max_length predicted tokens; every token is scored, the first one
// given only the prefix token (BOS, else EOS), each later window's first token given the
// max_length tokens before it, and the last window shifted back to a full context
// (lm_eval.utils.get_rolling_token_windows with context_len 1, then make_disjoint_window).
//
// Totals: NLL in nats, summed in float64 in a fixed order (windows in document
// order, documents in file order, files in command-line order), so the result does
// not depend on the rank count. perplexity = exp(NLL / scored tokens);
// bits_per_byte = NLL / ln 2 / UTF-8 bytes of the documents' text (whole
// documents as read, first tokens included); byte_perplexity = exp(NLL / bytes) and
// word_perplexity = exp(NLL / words), words as lm-eval counts them (len(re.split(r"\s+",
// text)) per document).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "runner/jobs/eval/sequence_scores.h"

namespace moelab {
class Tokenizer;
}

namespace moelab::jobs {

struct TextFile {
  std::string domain;  // results are reported per file and per domain
  std::string path;
};

// Tokens [begin, end) of a document are run; [score_from, end) are scored.
struct Window {
  int64_t begin = 0, end = 0, score_from = 0;
};

// The windows of a document of n tokens (those that score nothing are left out).
// Needs 1 <= stride <= max_length.
std::vector<Window> sliding_windows(int64_t n, int64_t max_length, int64_t stride);

// lm-eval's rolling windows of a document of n >= 1 tokens, as windows over the n + 1
// ids [prefix, tokens...]: each runs at most max_length ids (its last id is only a
// target) and the scored ranges cover ids 1..n exactly once. Needs max_length >= 1.
std::vector<Window> rolling_windows(int64_t n, int64_t max_length);

// Which windows plan_perplexity cuts.
struct WindowRule {
  bool lm_eval_rolling = false;     // false: the transformers guide's sliding windows
  int64_t prefix_token = -1;        // lm_eval_rolling: the id before the document
  bool add_special_tokens = false;  // lm_eval_rolling: lm-eval's add_bos_token
};

// The documents of one file, as text. InputError naming the file (and line) for an
// unreadable or empty file, a JSONL line that is not an object with a string
// `text_field`.
std::vector<std::string> read_text_documents(const std::string& path, const std::string& text_field);

struct TextDocument {
  int64_t file = 0;  // index into PerplexityPlan::files
  int64_t bytes = 0;
  int64_t words = 0;  // len(re.split(r"\s+", text))
  int64_t tokens = 0;
};

struct PerplexityPlan {
  std::vector<TextFile> files;
  int64_t max_length = 0, stride = 0;
  WindowRule rule;
  std::vector<TextDocument> docs;
  std::vector<int64_t> window_doc;      // per window, its document
  std::vector<ScoredSequence> windows;  // in document order
};

// Tokenizes the documents of every file and cuts them into windows. Throws
// InputError naming a file that has no token to score.
PerplexityPlan plan_perplexity(const std::vector<TextFile>& files, const std::vector<std::vector<std::string>>& docs,
                               const Tokenizer& tok, int64_t max_length, int64_t stride, const WindowRule& rule = {});

struct TextTotals {
  int64_t docs = 0, tokens = 0, bytes = 0, words = 0;  // tokens: scored tokens
  double nll = 0;                                      // nats
  double perplexity() const;
  double bits_per_byte() const;
  double byte_perplexity() const;
  double word_perplexity() const;
};

struct PerplexityResults {
  std::vector<TextTotals> per_doc, per_file;               // plan order
  std::vector<std::pair<std::string, TextTotals>> per_domain;  // domains in order of first appearance
};

// window_scores: score_sequences() of plan.windows.
PerplexityResults summarize_perplexity(const PerplexityPlan& plan, const std::vector<SequenceScore>& window_scores);

}  // namespace moelab::jobs
