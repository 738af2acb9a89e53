#include "runner/jobs/prune/ream_grouping.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace moelab::jobs {

ReamGroups ream_groups(const at::Tensor& features_ED, const at::Tensor& saliency_E, int64_t num_groups) {
  at::Tensor f = features_ED.to(at::kDouble).contiguous();
  const at::Tensor s_t = saliency_E.to(at::kDouble).contiguous();
  const int64_t E = f.size(0), G = std::clamp<int64_t>(num_groups, 1, E);
  const double* s = s_t.data_ptr<double>();
  // Centroids: highest saliency first, ties to the lower id.
  std::vector<int64_t> order(E);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return s[a] > s[b]; });
  const std::vector<int64_t> centroids(order.begin(), order.begin() + G);  // most salient first

  at::Tensor dots = at::matmul(f, f.t());
  auto acc = dots.accessor<double, 2>();
  auto cosine = [&](int64_t i, int64_t j) {
    const double ni = std::sqrt(acc[i][i]), nj = std::sqrt(acc[j][j]);
    return ni > 0 && nj > 0 ? acc[i][j] / (ni * nj) : 0.0;
  };
  std::vector<std::vector<int64_t>> members(G);
  for (int64_t g = 0; g < G; ++g) members[g].push_back(centroids[g]);
  for (int64_t i = G; i < E; ++i) {
    const int64_t e = order[i];
    int64_t best = 0;
    double best_cos = -2;
    for (int64_t g = 0; g < G; ++g) {  // centroids in saliency order: a strictly higher cosine wins
      const double c = cosine(e, centroids[g]);
      if (c > best_cos) {
        best_cos = c;
        best = g;
      }
    }
    members[best].push_back(e);
  }
  // Groups ordered by smallest member, members ascending (the merge plan's convention).
  std::vector<int64_t> idx(G);
  std::iota(idx.begin(), idx.end(), 0);
  for (auto& m : members) std::sort(m.begin(), m.end());
  std::sort(idx.begin(), idx.end(), [&](int64_t a, int64_t b) { return members[a][0] < members[b][0]; });
  ReamGroups out;
  for (int64_t g : idx) {
    double total = 0;
    for (int64_t e : members[g]) total += s[e];
    std::vector<double> w;
    for (int64_t e : members[g]) w.push_back(total > 0 ? s[e] / total : 1.0 / double(members[g].size()));
    out.groups.push_back(members[g]);
    out.weights.push_back(std::move(w));
    out.centroids.push_back(centroids[g]);
  }
  return out;
}

}  // namespace moelab::jobs
