#include "runner/jobs/eval/eval_records.h"

#include <cmath>

namespace moelab::jobs {
namespace {

nlohmann::json ppl_metrics(const TextTotals& t) {
  return {{"perplexity", t.perplexity()},
          {"bits_per_byte", t.bits_per_byte()},
          {"byte_perplexity", t.byte_perplexity()},
          {"word_perplexity", t.word_perplexity()},
          {"nll_per_token", t.tokens > 0 ? t.nll / double(t.tokens) : NAN},
          {"nll_sum", t.nll}};
}

results::ResultRecord base_record(const EvalRecordContext& c, const models::MoeModel& m) {
  results::ResultRecord r;
  r.model = c.model_dir;
  r.moelab_version = c.moelab_version;
  r.world_size = c.world_size;
  const std::string dtype = m.dtype == at::kBFloat16 ? "bfloat16" : m.dtype == at::kHalf ? "float16" : "float32";
  r.settings = {{"dtype", dtype}, {"device", m.device.str()}};
  return r;
}

}  // namespace

void add_perplexity_records(const EvalRecordContext& c, const models::MoeModel& m, const PerplexityPlan& plan,
                            const PerplexityResults& res, EvalOutput& out) {
  for (const auto& [domain, totals] : res.per_domain) {
    results::ResultRecord r = base_record(c, m);
    r.task = domain;
    r.kind = results::RecordKind::kPerplexity;
    r.metrics = ppl_metrics(totals);
    r.n_items = totals.docs;
    r.n_tokens = totals.tokens;
    r.settings.update({{"max_length", plan.max_length}, {"text_field", c.text_field}, {"windows", c.windows}});
    if (plan.rule.lm_eval_rolling) r.settings["add_bos_token"] = plan.rule.add_special_tokens;
    else r.settings["stride"] = plan.stride;
    nlohmann::json files = nlohmann::json::array();
    for (size_t f = 0; f < plan.files.size(); ++f) {
      if (plan.files[f].domain != domain) continue;
      const auto& t = res.per_file[f];
      nlohmann::json entry = {{"path", plan.files[f].path}, {"n_documents", t.docs}, {"n_tokens", t.tokens},
                    {"n_bytes", t.bytes}};
      entry.update(ppl_metrics(t));
      files.push_back(entry);
    }
    r.details = {{"n_bytes", totals.bytes}, {"files", files}};
    out.records.push_back(r);
  }
  std::vector<int64_t> doc_in_file(plan.files.size(), 0);
  for (size_t d = 0; d < plan.docs.size(); ++d) {
    const auto& doc = plan.docs[d];
    const auto& t = res.per_doc[d];
    out.per_item.push_back({{"kind", "perplexity"}, {"task", plan.files[doc.file].domain},
                            {"file", plan.files[doc.file].path}, {"document", doc_in_file[doc.file]++},
                            {"n_tokens", t.tokens}, {"n_bytes", t.bytes}, {"nll", t.nll}});
  }
}

void add_multiple_choice_records(const EvalRecordContext& c, const models::MoeModel& m, const McPlan& plan,
                                 const McResults& res, EvalOutput& out) {
  const McTask& task = *plan.task;
  results::ResultRecord r = base_record(c, m);
  r.task = task.format.name;
  r.kind = results::RecordKind::kMultipleChoice;
  r.metrics = {{"acc", res.acc},           {"acc_stderr", res.acc_stderr},
               {"acc_norm", res.acc_norm}, {"acc_norm_stderr", res.acc_norm_stderr},
               {"acc_bytes", res.acc_bytes}, {"acc_bytes_stderr", res.acc_bytes_stderr}};
  r.n_items = int64_t(task.items.size());
  r.n_tokens = res.scored_tokens;
  r.settings.update({{"num_fewshot", plan.settings.num_fewshot},
                     {"fewshot_seed", plan.settings.fewshot_seed},
                     {"max_length", plan.settings.max_length},
                     {"target_delimiter", task.format.target_delimiter},
                     {"fewshot_delimiter", task.format.fewshot_delimiter}});
  r.details = {{"path", task.path}, {"n_requests", int64_t(plan.requests.size())}};
  if (!task.format.fewshot_file.empty()) r.details["fewshot_file"] = task.format.fewshot_file;
  out.records.push_back(r);
  for (size_t i = 0; i < task.items.size(); ++i) {
    const auto& x = res.items[i];
    const int64_t gold = task.items[i].gold;
    out.per_item.push_back({{"kind", "multiple_choice"}, {"task", task.format.name}, {"item", int64_t(i)},
                            {"line", task.items[i].line}, {"gold", gold}, {"fewshot", plan.shots[i]},
                            {"loglik", x.loglik}, {"n_tokens", x.n_tokens}, {"greedy", x.greedy},
                            {"pred", x.pred}, {"pred_norm", x.pred_norm}, {"pred_bytes", x.pred_bytes},
                            {"acc", int(x.pred == gold)}, {"acc_norm", int(x.pred_norm == gold)},
                            {"acc_bytes", int(x.pred_bytes == gold)}});
  }
}

void add_efficiency_record(const EvalRecordContext& c, const models::MoeModel& m, const EfficiencyFigures& f,
                           EvalOutput& out) {
  results::ResultRecord r = base_record(c, m);
  r.task = "efficiency";
  r.kind = results::RecordKind::kEfficiency;
  r.metrics = {{"total_params", f.total_params},
               {"active_params_per_token", f.active_params_per_token},
               {"routed_expert_params", f.routed_expert_params},
               {"expert_flops_per_token", f.expert_flops_per_token},
               {"tokens_per_second", f.tokens_per_second},
               {"peak_rss_bytes", f.peak_rss_bytes_max},
               {"peak_rss_bytes_all_ranks", f.peak_rss_bytes_sum}};
  if (f.skipping) {  // NAEE dynamic skipping (moelab set-skipping)
    r.metrics["expert_rows_skipped_fraction"] = f.expert_rows_skipped_fraction;
    r.metrics["expert_flops_per_token_with_skipping"] = f.expert_flops_per_token_with_skipping;
  }
  r.n_items = c.bench.repeats * c.world_size * c.bench.batch_size;
  r.n_tokens = f.timed_tokens;
  r.settings.update({{"seq_len", c.bench.seq_len}, {"batch_size", c.bench.batch_size}, {"repeats", c.bench.repeats}});
  r.details = {{"seconds", f.seconds}};
  out.records.push_back(r);
}

}  // namespace moelab::jobs
