#define PCRE2_CODE_UNIT_WIDTH 8
#include "core/tokenizer/pattern.h"

#include <pcre2.h>

#include <stdexcept>

#include "core/tokenizer/json_fields.h"
#include "core/tokenizer/utf8.h"

namespace moelab::tok {

struct Pattern::Compiled {
  pcre2_code* code = nullptr;
  ~Compiled() { pcre2_code_free(code); }
};

namespace {

std::string pcre2_message(int code) {
  PCRE2_UCHAR buf[256];
  int n = pcre2_get_error_message(code, buf, sizeof buf);
  return n < 0 ? "PCRE2 error " + std::to_string(code) : std::string(reinterpret_cast<char*>(buf));
}

// Per-thread match state, reused across calls: match data for the whole-match
// offsets and a JIT stack larger than the 32 KiB default.
struct MatchState {
  pcre2_match_data* md = pcre2_match_data_create(1, nullptr);
  pcre2_match_context* ctx = pcre2_match_context_create(nullptr);
  pcre2_jit_stack* stack = pcre2_jit_stack_create(32 * 1024, 8 * 1024 * 1024, nullptr);
  MatchState() {
    if (stack) pcre2_jit_stack_assign(ctx, nullptr, stack);
  }
  ~MatchState() {
    pcre2_jit_stack_free(stack);
    pcre2_match_context_free(ctx);
    pcre2_match_data_free(md);
  }
};

MatchState& match_state() {
  thread_local MatchState state;
  return state;
}

}  // namespace

Pattern Pattern::regex(const std::string& regex) {
  int err = 0;
  PCRE2_SIZE err_off = 0;
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(regex.data()), regex.size(),
                                   PCRE2_UTF | PCRE2_UCP, &err, &err_off, nullptr);
  if (!code)
    throw std::invalid_argument(pcre2_message(err) + " at offset " + std::to_string(err_off));
  pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);  // falls back to the interpreter on failure
  Pattern p;
  p.source_ = regex;
  p.is_regex_ = true;
  p.compiled_ = std::make_shared<Compiled>();
  p.compiled_->code = code;
  return p;
}

Pattern Pattern::literal(const std::string& text) {
  Pattern p;
  p.source_ = text;
  return p;
}

bool Pattern::search(std::string_view s, size_t from, size_t& start, size_t& end) const {
  if (!is_regex_) {
    size_t at = s.find(source_, from);
    if (at == std::string_view::npos) return false;
    start = at;
    end = at + source_.size();
    return true;
  }
  MatchState& st = match_state();
  int rc = pcre2_match(compiled_->code, reinterpret_cast<PCRE2_SPTR>(s.data()), s.size(), from,
                       PCRE2_NO_UTF_CHECK, st.md, st.ctx);
  if (rc == PCRE2_ERROR_NOMATCH) return false;
  if (rc < 0)
    throw std::runtime_error("regex " + source_ + " failed to match: " + pcre2_message(rc));
  PCRE2_SIZE* ov = pcre2_get_ovector_pointer(st.md);
  start = ov[0];
  end = ov[1];
  return true;
}

std::vector<std::pair<size_t, size_t>> Pattern::find_all(std::string_view s) const {
  std::vector<std::pair<size_t, size_t>> out;
  size_t from = 0;
  bool have_last = false;
  size_t last_end = 0;
  while (from <= s.size()) {
    size_t start, end;
    if (!search(s, from, start, end)) break;
    if (start == end && have_last && end == last_end) {
      // Empty match where the previous one ended: step over one character.
      if (from >= s.size()) break;
      from += utf8_len(static_cast<unsigned char>(s[from]));
      continue;
    }
    out.emplace_back(start, end);
    have_last = true;
    last_end = end;
    from = end;
  }
  return out;
}

std::vector<Segment> Pattern::find_matches(std::string_view s) const {
  if (s.empty()) return {{0, 0, false}};
  std::vector<Segment> out;
  size_t prev = 0;
  for (auto [start, end] : find_all(s)) {
    if (prev != start) out.push_back({prev, start, false});
    out.push_back({start, end, true});
    prev = end;
  }
  if (prev != s.size()) out.push_back({prev, s.size(), false});
  return out;
}

Pattern make_pattern(const JsonField& j) {
  if (!j.is_object()) j.fail("must be an object {\"String\": ...} or {\"Regex\": ...}");
  if (auto s = j.find("String")) return Pattern::literal(s->str());
  if (auto r = j.find("Regex")) {
    std::string re = r->str();
    try {
      return Pattern::regex(re);
    } catch (const std::invalid_argument& e) {
      r->fail("is not a valid regular expression: " + std::string(e.what()));
    }
  }
  j.fail("must have a \"String\" or a \"Regex\" member");
}

}  // namespace moelab::tok
