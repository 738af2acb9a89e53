#include "core/tokenizer/pieces.h"

#include <algorithm>

namespace moelab::tok {

// A straight port of NormalizedString::split's folds, so that runs of matches are
// grouped exactly as in the Rust crate.
std::vector<std::pair<size_t, size_t>> apply_split_behavior(const std::vector<Segment>& segments,
                                                            SplitBehavior behavior) {
  std::vector<std::pair<size_t, size_t>> out;
  out.reserve(segments.size());
  switch (behavior) {
    case SplitBehavior::Isolated:
      for (const auto& s : segments) out.emplace_back(s.start, s.end);
      break;
    case SplitBehavior::Removed:
      for (const auto& s : segments)
        if (!s.is_match) out.emplace_back(s.start, s.end);
      break;
    case SplitBehavior::Contiguous: {
      bool previous = false;
      for (const auto& s : segments) {
        if (s.is_match == previous && !out.empty()) out.back().second = s.end;
        else out.emplace_back(s.start, s.end);
        previous = s.is_match;
      }
      break;
    }
    case SplitBehavior::MergedWithPrevious: {
      bool previous = false;
      for (const auto& s : segments) {
        if (s.is_match && !previous && !out.empty()) out.back().second = s.end;
        else out.emplace_back(s.start, s.end);
        previous = s.is_match;
      }
      break;
    }
    case SplitBehavior::MergedWithNext: {
      bool previous = false;  // whether the segment to the right was a match
      for (auto it = segments.rbegin(); it != segments.rend(); ++it) {
        if (it->is_match && !previous && !out.empty()) out.back().first = it->start;
        else out.emplace_back(it->start, it->end);
        previous = it->is_match;
      }
      std::reverse(out.begin(), out.end());
      break;
    }
  }
  return out;
}

void push_sub_pieces(const Piece& parent, const std::vector<std::pair<size_t, size_t>>& ranges,
                     std::vector<Piece>& out) {
  for (auto [start, end] : ranges) {
    if (end <= start) continue;
    Piece p;
    p.text = parent.text.substr(start, end - start);
    p.at_origin = parent.at_origin && start == 0;
    out.push_back(std::move(p));
  }
}

}  // namespace moelab::tok
