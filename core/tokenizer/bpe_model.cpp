#include "core/tokenizer/bpe_model.h"

#include <cstdio>
#include <queue>

#include "core/common/error.h"
#include "core/tokenizer/utf8.h"

namespace moelab::tok {
namespace {

constexpr size_t kCacheMaxWordBytes = 256;  // as the Rust crate's MAX_LENGTH
constexpr size_t kCacheCapacity = 1 << 17;

uint64_t pair_key(uint32_t a, uint32_t b) { return (static_cast<uint64_t>(a) << 32) | b; }

struct Candidate {
  uint32_t rank, pos, new_id;
};
// Priority: lowest rank first, then leftmost position (the Rust crate's Merge order).
struct LowerPriority {
  bool operator()(const Candidate& a, const Candidate& b) const {
    return a.rank != b.rank ? a.rank > b.rank : a.pos > b.pos;
  }
};

struct Symbol {
  uint32_t id;
  int64_t prev, next;
  bool alive;
};

}  // namespace

BpeModel::BpeModel(const JsonField& model) : file_(model.file()) {
  if (auto d = model.find("dropout")) {
    if (!d->json().is_number()) d->fail("must be a number or null");
    double p = d->json().get<double>();
    if (p != 0.0)
      d->fail("is " + d->json().dump() +
              ": BPE dropout is not supported (it makes encoding random); use null or 0");
  }
  if (auto u = model.find("unk_token")) unk_token_ = u->str();
  if (auto p = model.find("continuing_subword_prefix")) {
    continuing_subword_prefix_ = p->str();
    has_prefix_ = true;
  }
  if (auto s = model.find("end_of_word_suffix")) {
    end_of_word_suffix_ = s->str();
    has_suffix_ = true;
  }
  fuse_unk_ = model.bool_or("fuse_unk", false);
  byte_fallback_ = model.bool_or("byte_fallback", false);
  ignore_merges_ = model.bool_or("ignore_merges", false);

  const JsonField vocab = model.at("vocab");
  if (!vocab.is_object()) vocab.fail("must be an object mapping tokens to ids");
  vocab_.reserve(vocab.json().size());
  vocab_r_.reserve(vocab.json().size());
  for (auto it = vocab.json().begin(); it != vocab.json().end(); ++it) {
    JsonField entry(it.value(), vocab.path() + "[" + quote_str(it.key()) + "]", file_);
    int64_t id = entry.integer();
    if (id < 0 || id > UINT32_MAX) entry.fail("is " + std::to_string(id) + ", not an id in 0..2^32-1");
    vocab_.emplace(it.key(), static_cast<uint32_t>(id));
    vocab_r_.emplace(static_cast<uint32_t>(id), it.key());
  }

  const JsonField merges = model.at("merges");
  uint32_t rank = 0;
  auto lookup = [&](const JsonField& where, const std::string& token) -> uint32_t {
    auto it = vocab_.find(token);
    if (it == vocab_.end()) where.fail("names token " + quote_str(token) + ", which is not in model.vocab");
    return it->second;
  };
  for (const auto& m : merges.items()) {
    std::string a, b;
    if (m.is_string()) {
      std::string line = m.str();
      if (line.rfind("#version", 0) == 0) continue;
      size_t sp = line.find(' ');
      if (sp == std::string::npos || line.find(' ', sp + 1) != std::string::npos)
        m.fail("must be two tokens separated by one space, not " + quote_str(line));
      a = line.substr(0, sp);
      b = line.substr(sp + 1);
    } else if (m.is_array() && m.json().size() == 2) {
      a = m.at(0).str();
      b = m.at(1).str();
    } else {
      m.fail("must be a string \"a b\" or a pair [\"a\", \"b\"]");
    }
    uint32_t a_id = lookup(m, a), b_id = lookup(m, b);
    size_t prefix_len = has_prefix_ ? continuing_subword_prefix_.size() : 0;
    if (b.size() < prefix_len) m.fail("second token " + quote_str(b) + " is shorter than continuing_subword_prefix");
    uint32_t new_id = lookup(m, a + b.substr(prefix_len));
    merges_[pair_key(a_id, b_id)] = {rank, new_id};  // a repeated pair keeps its last rank
    ++rank;
  }

  for (int byte = 0; byte < 256; ++byte) {
    char name[8];
    std::snprintf(name, sizeof name, "<0x%02X>", byte);
    auto it = vocab_.find(name);
    byte_ids_[byte] = it == vocab_.end() ? -1 : it->second;
  }
}

std::optional<int64_t> BpeModel::token_to_id(const std::string& token) const {
  auto it = vocab_.find(token);
  if (it == vocab_.end()) return std::nullopt;
  return it->second;
}

const std::string* BpeModel::id_to_token(int64_t id) const {
  if (id < 0 || id > UINT32_MAX) return nullptr;
  auto it = vocab_r_.find(static_cast<uint32_t>(id));
  return it == vocab_r_.end() ? nullptr : &it->second;
}

void BpeModel::encode_word(std::string_view word, std::vector<int64_t>& out) const {
  if (word.empty()) return;
  if (ignore_merges_) {
    auto it = vocab_.find(std::string(word));
    if (it != vocab_.end()) {
      out.push_back(it->second);
      return;
    }
  }
  const bool cacheable = word.size() < kCacheMaxWordBytes;
  std::string key;
  if (cacheable) {
    key.assign(word);
    std::lock_guard<std::mutex> lock(cache_mu_);
    auto it = cache_.find(key);
    if (it != cache_.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  std::vector<uint32_t> ids;
  merge_word(word, ids);
  out.insert(out.end(), ids.begin(), ids.end());
  if (cacheable) {
    std::lock_guard<std::mutex> lock(cache_mu_);
    if (cache_.size() < kCacheCapacity) cache_.emplace(std::move(key), std::move(ids));
  }
}

void BpeModel::merge_word(std::string_view word, std::vector<uint32_t>& ids) const {
  ids.reserve(word.size());
  std::optional<uint32_t> pending_unk;
  size_t pos = 0;
  std::string s;
  while (pos < word.size()) {
    const size_t start = pos;
    pos += utf8_len(static_cast<unsigned char>(word[pos]));
    if (pos > word.size()) pos = word.size();
    s.clear();
    if (start != 0 && has_prefix_) s += continuing_subword_prefix_;
    s.append(word.substr(start, pos - start));
    if (pos == word.size() && has_suffix_) s += end_of_word_suffix_;

    auto it = vocab_.find(s);
    if (it != vocab_.end()) {
      if (pending_unk) {
        ids.push_back(*pending_unk);
        pending_unk.reset();
      }
      ids.push_back(it->second);
      continue;
    }
    if (byte_fallback_) {
      bool all = true;
      for (unsigned char c : s) all = all && byte_ids_[c] >= 0;
      if (all) {
        // As in the Rust crate, a pending unk is not flushed before byte tokens.
        for (unsigned char c : s) ids.push_back(static_cast<uint32_t>(byte_ids_[c]));
        continue;
      }
    }
    if (unk_token_) {
      auto unk = vocab_.find(*unk_token_);
      if (unk == vocab_.end())
        throw InputError(file_, "model.unk_token " + quote_str(*unk_token_) +
                                    " is not in model.vocab (needed for " + quote_str(s) + ")");
      if (pending_unk && !fuse_unk_) ids.push_back(*pending_unk);
      pending_unk = unk->second;
    }
    // Without an unk token an unknown character is dropped, as in the Rust crate.
  }
  if (pending_unk) ids.push_back(*pending_unk);
  apply_merges(ids);
}

void BpeModel::apply_merges(std::vector<uint32_t>& ids) const {
  const size_t n = ids.size();
  if (n < 2 || merges_.empty()) return;
  std::vector<Symbol> sym(n);
  for (size_t i = 0; i < n; ++i)
    sym[i] = {ids[i], static_cast<int64_t>(i) - 1, i + 1 < n ? static_cast<int64_t>(i + 1) : -1, true};

  std::vector<Candidate> initial;
  initial.reserve(n);
  for (size_t i = 0; i + 1 < n; ++i) {
    auto it = merges_.find(pair_key(ids[i], ids[i + 1]));
    if (it != merges_.end())
      initial.push_back({it->second.first, static_cast<uint32_t>(i), it->second.second});
  }
  std::priority_queue<Candidate, std::vector<Candidate>, LowerPriority> queue(LowerPriority{},
                                                                             std::move(initial));
  while (!queue.empty()) {
    const Candidate top = queue.top();
    queue.pop();
    Symbol& cur = sym[top.pos];
    if (!cur.alive || cur.next < 0) continue;
    const Symbol right = sym[cur.next];
    auto it = merges_.find(pair_key(cur.id, right.id));
    if (it == merges_.end() || it->second.second != top.new_id) continue;  // stale entry

    sym[cur.next].alive = false;
    cur.id = top.new_id;
    cur.next = right.next;
    if (right.next >= 0) sym[right.next].prev = top.pos;

    if (cur.prev >= 0) {
      auto m = merges_.find(pair_key(sym[cur.prev].id, cur.id));
      if (m != merges_.end())
        queue.push({m->second.first, static_cast<uint32_t>(cur.prev), m->second.second});
    }
    if (cur.next >= 0) {
      auto m = merges_.find(pair_key(cur.id, sym[cur.next].id));
      if (m != merges_.end()) queue.push({m->second.first, top.pos, m->second.second});
    }
  }
  ids.clear();
  for (int64_t i = 0; i >= 0; i = sym[i].next) ids.push_back(sym[i].id);
}

}  // namespace moelab::tok
