// Seeded permutations that are the same on every platform and every rank (so ranks
// agree on data order without communicating): splitmix64 and a Fisher-Yates shuffle.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

namespace moelab {

// splitmix64 (Steele, Lea, Flood 2014): advances `state`, returns the next value.
inline uint64_t splitmix64(uint64_t& state) {
  uint64_t z = (state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// Fisher-Yates from the back, one splitmix64 draw per position.
template <typename T>
void seeded_shuffle(std::vector<T>& v, uint64_t seed) {
  uint64_t state = seed;
  for (size_t i = v.size(); i > 1; --i) std::swap(v[i - 1], v[splitmix64(state) % i]);
}

}  // namespace moelab
