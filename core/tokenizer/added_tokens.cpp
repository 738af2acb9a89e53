#include "core/tokenizer/added_tokens.h"

#include <algorithm>
#include <tuple>

#include "core/tokenizer/utf8.h"

namespace moelab::tok {
namespace {

bool same_token(const AddedToken& a, const AddedToken& b) {
  return a.content == b.content && a.single_word == b.single_word && a.lstrip == b.lstrip &&
         a.rstrip == b.rstrip && a.normalized == b.normalized && a.special == b.special;
}

// Start of the run of whitespace that ends `s` (s.size() if none).
size_t trailing_space_start(std::string_view s) {
  size_t end = s.size();
  while (end > 0) {
    size_t start = end - 1;
    while (start > 0 && (static_cast<unsigned char>(s[start]) & 0xC0) == 0x80) --start;
    size_t pos = start;
    if (!is_whitespace(decode_utf8(s, pos))) break;
    end = start;
  }
  return end;
}

// Length of the run of whitespace that starts `s`.
size_t leading_space_len(std::string_view s) {
  size_t pos = 0;
  while (pos < s.size()) {
    size_t next = pos;
    if (!is_whitespace(decode_utf8(s, next))) break;
    pos = next;
  }
  return pos;
}

}  // namespace

void AddedVocabulary::Trie::insert(const std::string& pattern, uint32_t id) {
  if (pattern.empty()) return;
  int32_t node = 0;
  for (unsigned char c : pattern) {
    auto& next = nodes[node].next;
    auto it = std::find_if(next.begin(), next.end(), [c](const auto& e) { return e.first == c; });
    if (it != next.end()) {
      node = it->second;
    } else {
      int32_t child = static_cast<int32_t>(nodes.size());
      next.emplace_back(c, child);  // before nodes.emplace_back(), which invalidates `next`
      nodes.emplace_back();
      node = child;
    }
  }
  if (nodes[node].id < 0) nodes[node].id = id;  // a repeated pattern keeps its first id
  first_byte[static_cast<unsigned char>(pattern[0])] = true;
}

std::pair<int64_t, size_t> AddedVocabulary::Trie::longest_at(const std::string& s, size_t pos) const {
  int64_t best = -1;
  size_t best_len = 0;
  int32_t node = 0;
  for (size_t i = pos; i < s.size(); ++i) {
    const auto& next = nodes[node].next;
    auto c = static_cast<unsigned char>(s[i]);
    auto it = std::find_if(next.begin(), next.end(), [c](const auto& e) { return e.first == c; });
    if (it == next.end()) break;
    node = it->second;
    if (nodes[node].id >= 0) {
      best = nodes[node].id;
      best_len = i + 1 - pos;
    }
  }
  return {best, best_len};
}

AddedVocabulary::AddedVocabulary(const JsonField& tokens, const BpeModel& model,
                                 const Normalizer* normalizer) {
  if (tokens.is_null()) return;
  uint32_t next_id = static_cast<uint32_t>(model.vocab_size());
  for (const auto& j : tokens.items()) {
    AddedToken t;
    t.content = j.at("content").str();
    t.special = j.bool_or("special", false);
    t.single_word = j.bool_or("single_word", false);
    t.lstrip = j.bool_or("lstrip", false);
    t.rstrip = j.bool_or("rstrip", false);
    t.normalized = j.bool_or("normalized", !t.special);
    if (t.content.empty()) continue;
    auto known = by_content_.find(t.content);
    if (known != by_content_.end() && same_token(by_id_[known->second], t)) continue;

    uint32_t id;
    if (known != by_content_.end()) id = known->second;
    else if (auto mid = model.token_to_id(t.content)) id = static_cast<uint32_t>(*mid);
    else id = next_id++;

    if (t.normalized && normalizer) {
      std::string s = t.content;
      normalizer->normalize(s);
      if (s != t.content) normalized_form_[id] = s;
    }
    by_content_[t.content] = id;
    if (t.special) special_.insert(t.content);
    by_id_[id] = std::move(t);
  }
  rebuild_tries();
}

void AddedVocabulary::rebuild_tries() {
  raw_ = Trie{};
  normalized_ = Trie{};
  // Insert in id order so that the result does not depend on hash order.
  std::vector<uint32_t> ids;
  for (const auto& [id, t] : by_id_) ids.push_back(id);
  std::sort(ids.begin(), ids.end());
  for (uint32_t id : ids) {
    const AddedToken& t = by_id_.at(id);
    if (t.normalized) {
      auto nf = normalized_form_.find(id);
      normalized_.insert(nf != normalized_form_.end() ? nf->second : t.content, id);
    } else {
      raw_.insert(t.content, id);
    }
  }
}

std::optional<int64_t> AddedVocabulary::token_to_id(const std::string& content) const {
  auto it = by_content_.find(content);
  if (it == by_content_.end()) return std::nullopt;
  return it->second;
}

const std::string* AddedVocabulary::decode_form(int64_t id) const {
  if (id < 0 || id > UINT32_MAX) return nullptr;
  auto it = by_id_.find(static_cast<uint32_t>(id));
  if (it == by_id_.end()) return nullptr;
  auto nf = normalized_form_.find(it->first);
  return nf != normalized_form_.end() ? &nf->second : &it->second.content;
}

bool AddedVocabulary::is_special_id(int64_t id) const {
  if (id < 0 || id > UINT32_MAX) return false;
  auto it = by_id_.find(static_cast<uint32_t>(id));
  return it != by_id_.end() && it->second.special;
}

// A port of AddedVocabulary::find_matches + split_with_indices.
void AddedVocabulary::split(std::vector<Piece>& pieces, const Trie& trie) const {
  if (trie.empty()) return;
  std::vector<Piece> out;
  out.reserve(pieces.size());
  for (auto& p : pieces) {
    if (p.is_token()) {
      out.push_back(std::move(p));
      continue;
    }
    const std::string& s = p.text;
    size_t start_offset = 0, search = 0;
    auto push_text = [&](size_t a, size_t b) {
      if (b <= a) return;
      Piece t;
      t.text = s.substr(a, b - a);
      t.at_origin = p.at_origin && a == 0;
      out.push_back(std::move(t));
    };
    while (search < s.size()) {
      size_t start = search;
      int64_t id = -1;
      size_t len = 0;
      for (; start < s.size(); ++start) {
        if (!trie.first_byte[static_cast<unsigned char>(s[start])]) continue;
        std::tie(id, len) = trie.longest_at(s, start);
        if (id >= 0) break;
      }
      if (id < 0) break;
      size_t stop = start + len;
      search = stop;
      const AddedToken& t = by_id_.at(static_cast<uint32_t>(id));
      if (t.single_word) {
        bool start_space = start == 0 || !is_word_char(last_char(std::string_view(s).substr(0, start)));
        bool stop_space = stop == s.size() || !is_word_char(first_char(std::string_view(s).substr(stop)));
        if (!start_space || !stop_space) continue;
      }
      if (t.lstrip) start = std::max(trailing_space_start(std::string_view(s).substr(0, start)), start_offset);
      if (t.rstrip) stop += leading_space_len(std::string_view(s).substr(stop));
      push_text(start_offset, start);
      Piece tok;
      tok.text = s.substr(start, stop - start);
      tok.id = id;
      out.push_back(std::move(tok));
      start_offset = stop;
    }
    push_text(start_offset, s.size());
  }
  pieces = std::move(out);
}

}  // namespace moelab::tok
