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
// Totals: NLL in nats, summed in float64 in a fixed order (windows in document
// order, documents in file order, files in command-line order), so the result does
// not depend on the rank count. perplexity = exp(NLL / scored tokens);
// bits_per_byte = NLL / ln 2 / UTF-8 bytes of the documents' text (whole
// documents as read, first tokens included).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "jobs/sequence_scores.h"

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

// The documents of one file, as text. InputError naming the file (and line) for an
// unreadable or empty file, a JSONL line that is not an object with a string
// `text_field`.
std::vector<std::string> read_text_documents(const std::string& path, const std::string& text_field);

struct TextDocument {
  int64_t file = 0;  // index into PerplexityPlan::files
  int64_t bytes = 0;
  int64_t tokens = 0;
};

struct PerplexityPlan {
  std::vector<TextFile> files;
  int64_t max_length = 0, stride = 0;
  std::vector<TextDocument> docs;
  std::vector<int64_t> window_doc;      // per window, its document
  std::vector<ScoredSequence> windows;  // in document order
};

// Tokenizes the documents of every file and cuts them into windows. Throws
// InputError naming a file that has no token to score.
PerplexityPlan plan_perplexity(const std::vector<TextFile>& files, const std::vector<std::vector<std::string>>& docs,
                               const Tokenizer& tok, int64_t max_length, int64_t stride);

struct TextTotals {
  int64_t docs = 0, tokens = 0, bytes = 0;  // tokens: scored tokens
  double nll = 0;                           // nats
  double perplexity() const;
  double bits_per_byte() const;
};

struct PerplexityResults {
  std::vector<TextTotals> per_doc, per_file;               // plan order
  std::vector<std::pair<std::string, TextTotals>> per_domain;  // domains in order of first appearance
};

// window_scores: score_sequences() of plan.windows.
PerplexityResults summarize_perplexity(const PerplexityPlan& plan, const std::vector<SequenceScore>& window_scores);

}  // namespace moelab::jobs
