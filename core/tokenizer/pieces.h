// The unit of work between the stages of encoding: a piece of (normalized,
// pre-tokenized) text, or an added token that was already recognised.
//
// This is the C++ counterpart of a `Split` in the Rust crate's PreTokenizedString.
// Stages replace a text piece by the pieces it splits into and never touch a piece
// that already has an id. Empty text pieces are dropped.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/tokenizer/pattern.h"

namespace moelab::tok {

struct Piece {
  std::string text;
  int64_t id = -1;         // >= 0: an added token, final
  bool at_origin = false;  // starts at offset 0 of the original input (Metaspace "first")

  bool is_token() const { return id >= 0; }
};

// SplitDelimiterBehavior of the Rust crate.
enum class SplitBehavior { Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous };

// Applies `behavior` to segments from Pattern::find_matches (covering the whole
// text) and returns the byte ranges of the resulting pieces (possibly empty ones).
std::vector<std::pair<size_t, size_t>> apply_split_behavior(const std::vector<Segment>& segments,
                                                            SplitBehavior behavior);

// Appends to `out` the sub-pieces of `parent` given by `ranges`, dropping empty ones.
void push_sub_pieces(const Piece& parent, const std::vector<std::pair<size_t, size_t>>& ranges,
                     std::vector<Piece>& out);

}  // namespace moelab::tok
