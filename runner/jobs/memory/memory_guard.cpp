#include "runner/jobs/memory/memory_guard.h"

#include <algorithm>
#include <cstdlib>

#include "core/common/error.h"
#include "core/common/log.h"
#include "runner/jobs/memory/memory_limit.h"

namespace moelab::jobs {

using schedulers::format_bytes;
using schedulers::plan_resources;
using schedulers::RankPlan;
using schedulers::ResourcePlan;
using schedulers::ResourceQuery;
using schedulers::smallest_ranks_within;

MemoryCheck holding_model(const std::string& command, bool offer_ranks) {
  MemoryCheck c;
  c.command = command;
  c.query.batch_size = 1;
  c.query.seq_len = 1;
  c.query.num_samples = 1;
  c.offer_ranks = offer_ranks;
  return c;
}

int64_t planned_peak(const hf::ModelConfig& c, const MemoryCheck& check) {
  const ResourcePlan plan = plan_resources(c, check.query);
  int64_t peak = 0;
  for (const RankPlan& r : plan.ranks) peak = std::max(peak, r.total() - (check.statistics ? 0 : r.statistics));
  return peak + check.extra_bytes;
}

int local_ranks() {
  for (const char* name : {"OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS"})
    if (const char* v = std::getenv(name); v && std::atoi(v) > 0) return std::atoi(v);
  return 1;
}

void check_memory(const hf::ModelConfig& c, const MemoryCheck& check) {
  const auto limit = memory_limit();
  if (!limit) return;
  const int64_t per_rank = planned_peak(c, check);
  const int here = local_ranks();
  const int64_t planned = per_rank * here;
  spdlog::debug("{}: planned peak {} ({} rank(s) here), limit {} ({})", check.command, format_bytes(planned), here,
                format_bytes(limit->bytes), limit->source);
  if (planned <= limit->bytes) return;
  std::string msg = "the planned peak memory is " + format_bytes(planned) +
                    (here > 1 ? " (" + std::to_string(here) + " ranks of " + format_bytes(per_rank) + " on this node)"
                              : "") +
                    (check.extra_bytes > 0 ? " (" + check.extra_what + ": " + format_bytes(check.extra_bytes) +
                                                 (here > 1 ? " per rank)" : ")")
                                           : "") +
                    ", more than the " + format_bytes(limit->bytes) + " this process may use (" + limit->source + ")";
  std::vector<std::string> fits;
  if (check.offer_layerwise && !check.query.layerwise) {
    ResourceQuery lw = check.query;
    lw.layerwise = true;
    lw.budget = limit->bytes / here;
    MemoryCheck one = check;
    one.query = lw;
    fits.push_back("--layerwise needs " + format_bytes(planned_peak(c, one)) + " per rank");
  }
  if (check.offer_ranks) {
    ResourceQuery q = check.query;
    if (auto p = smallest_ranks_within(c, q, limit->bytes); p && *p > q.ranks) {
      q.ranks = *p;
      MemoryCheck more = check;
      more.query = q;
      fits.push_back(std::to_string(*p) + " ranks on separate nodes need " + format_bytes(planned_peak(c, more)) +
                     " each");
    }
  }
  for (size_t i = 0; i < fits.size(); ++i) msg += (i == 0 ? "; " : ", or ") + fits[i];
  if (fits.empty()) msg += "; it needs a machine with more memory";
  throw InputError(check.command, msg + " (--no-memory-check runs it anyway)");
}

}  // namespace moelab::jobs
