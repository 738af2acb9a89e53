#include "runner/jobs/eval/multiple_choice.h"

#include <cctype>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/common/error.h"
#include "core/common/file_text.h"
#include "core/common/python_text.h"
#include "core/common/seeded_shuffle.h"
#include "core/tokenizer/tokenizer.h"
#include "runner/jobs/data/json_lines.h"

namespace moelab::jobs {
namespace {

// Unicode code points of UTF-8 text (Python's len(str)).
int64_t code_points(const std::string& s) {
  int64_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

// Byte length of `s` without its trailing whitespace (Python's len(s.rstrip()) in bytes).
size_t rstrip_length(const std::string& s) {
  size_t end = s.size();
  while (end > 0) {
    size_t start = end - 1;
    while (start > 0 && (static_cast<unsigned char>(s[start]) & 0xC0) == 0x80) --start;
    size_t len = 0;
    if (!is_python_space(decode_utf8(s, start, &len))) break;
    end = start;
  }
  return end;
}

// "{field}" placeholders filled from the item; "{{" and "}}" are literal braces.
std::string fill_template(const std::string& tpl, const nlohmann::json& item, const std::string& where) {
  std::string out;
  for (size_t i = 0; i < tpl.size(); ++i) {
    const char c = tpl[i];
    if ((c == '{' || c == '}') && i + 1 < tpl.size() && tpl[i + 1] == c) {
      out += c;
      ++i;
    } else if (c == '{') {
      const size_t close = tpl.find('}', i);
      if (close == std::string::npos) throw InputError(where, "prompt template: '{' without '}'");
      const std::string field = tpl.substr(i + 1, close - i - 1);
      if (!item.contains(field) || !(item[field].is_string() || item[field].is_number()))
        throw InputError(where, "field \"" + field + "\" (used by the prompt template) is missing or not a string");
      out += item[field].is_string() ? item[field].get<std::string>() : item[field].dump();
      i = close;
    } else if (c == '}') {
      throw InputError(where, "prompt template: '}' without '{' (write \"}}\" for a brace)");
    } else {
      out += c;
    }
  }
  return out;
}

}  // namespace

void check_prompt_template(const std::string& tpl, const std::string& where) {
  // "{{" + optional spaces + an identifier (dots allowed: Jinja's doc.field) + spaces + "}}"
  auto ident = [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.'; };
  for (size_t open = tpl.find("{{"); open != std::string::npos; open = tpl.find("{{", open + 2)) {
    size_t i = open + 2;
    while (i < tpl.size() && tpl[i] == ' ') ++i;
    const size_t name_start = i;
    while (i < tpl.size() && ident(tpl[i])) ++i;
    const size_t name_end = i;
    while (i < tpl.size() && tpl[i] == ' ') ++i;
    if (name_end > name_start && tpl.compare(i, 2, "}}") == 0) {
      const std::string name = tpl.substr(name_start, name_end - name_start);
      throw InputError(where, "\"" + tpl.substr(open, i + 2 - open) +
                                  "\" is lm-eval's Jinja syntax; moelab's prompt templates write a field as {" +
                                  name + "} (\"{{\" and \"}}\" are literal braces)");
    }
  }
}

namespace {

McItem parse_item(const nlohmann::json& j, const McFormat& f, const std::string& where) {
  McItem it;
  if (!f.prompt_template.empty()) {
    it.query = fill_template(f.prompt_template, j, where);
  } else {
    std::string field = f.query_field;
    if (field.empty()) field = j.contains("query") || !j.contains("context") ? "query" : "context";
    if (!j.contains(field) || !j[field].is_string())
      throw InputError(where, "field \"" + field + "\" is missing or not a string");
    it.query = j[field].get<std::string>();
  }
  const std::string& cf = f.choices_field;
  if (!j.contains(cf) || !j[cf].is_array())
    throw InputError(where, "field \"" + cf + "\" is missing or not a list of strings");
  for (const auto& c : j[cf]) {
    if (!c.is_string()) throw InputError(where, "field \"" + cf + "\" must hold strings only");
    if (c.get<std::string>().empty())
      throw InputError(where, "field \"" + cf + "\": choice " + std::to_string(it.choices.size()) + " is empty");
    it.choices.push_back(c.get<std::string>());
  }
  if (it.choices.size() < 2) throw InputError(where, "field \"" + cf + "\" needs at least 2 choices");
  const std::string& gf = f.gold_field;
  if (!j.contains(gf) || !j[gf].is_number_integer())
    throw InputError(where, "field \"" + gf + "\" is missing or not an integer (the index of the right choice)");
  it.gold = j[gf].get<int64_t>();
  if (it.gold < 0 || it.gold >= int64_t(it.choices.size()))
    throw InputError(where, "field \"" + gf + "\" = " + std::to_string(it.gold) + " is out of range (" +
                                std::to_string(it.choices.size()) + " choices: 0.." +
                                std::to_string(it.choices.size() - 1) + ")");
  return it;
}

std::vector<McItem> read_items(const std::string& path, const McFormat& f) {
  std::vector<McItem> items;
  for_each_json_line(path, "task file", [&](const nlohmann::json& j, const std::string& where, int64_t n) {
    items.push_back(parse_item(j, f, where));
    items.back().line = n;
  });
  if (items.empty()) throw InputError(path, "the task file holds no item (no non-blank line)");
  return items;
}

template <typename Score>
int64_t argmax(const std::vector<double>& ll, Score denom) {
  int64_t best = 0;  // the first maximum, as numpy.argmax
  for (size_t c = 1; c < ll.size(); ++c)
    if (ll[c] / denom(c) > ll[best] / denom(best)) best = int64_t(c);
  return best;
}

// Mean and lm-eval's stderr (sample standard deviation / sqrt(n)) of 0/1 values.
std::pair<double, double> mean_stderr(const std::vector<double>& x) {
  const double n = double(x.size());
  double mean = 0;
  for (double v : x) mean += v;
  mean /= n;
  if (x.size() < 2) return {mean, NAN};
  double ss = 0;
  for (double v : x) ss += (v - mean) * (v - mean);
  return {mean, std::sqrt(ss / (n - 1)) / std::sqrt(n)};
}

}  // namespace

McTask read_mc_task(const std::string& path, const McFormat& format) {
  McTask t;
  t.path = path;
  t.format = format;
  if (t.format.name.empty()) t.format.name = std::filesystem::path(path).stem().string();
  t.items = read_items(path, t.format);
  if (!t.format.fewshot_file.empty()) t.pool = read_items(t.format.fewshot_file, t.format);
  return t;
}

std::vector<int64_t> draw_fewshot(const McTask& task, int64_t item, int64_t k, uint64_t seed) {
  const int64_t pool = int64_t(task.own_pool() ? task.items.size() : task.pool.size());
  const int64_t avail = task.own_pool() ? pool - 1 : pool;
  if (k > avail)
    throw InputError("--num-fewshot", std::to_string(k) + " shots asked for, but the few-shot pool of task \"" +
                                          task.format.name + "\" has only " + std::to_string(avail) + " other items");
  std::vector<int64_t> out;
  if (task.format.fewshot_sampler == "first_n") {
    for (int64_t i = 0; int64_t(out.size()) < k; ++i)
      if (!task.own_pool() || i != item) out.push_back(i);
    return out;
  }
  uint64_t state = seed * 0x9e3779b97f4a7c15ull + uint64_t(item);
  while (int64_t(out.size()) < k) {
    int64_t r = int64_t(splitmix64(state) % uint64_t(avail));
    if (task.own_pool() && r >= item) ++r;  // skip the item itself
    if (std::find(out.begin(), out.end(), r) == out.end()) out.push_back(r);
  }
  return out;
}

std::string build_context(const McTask& task, int64_t item, const std::vector<int64_t>& shots) {
  const McFormat& f = task.format;
  const auto& pool = task.own_pool() ? task.items : task.pool;
  std::string ctx = f.description;
  for (int64_t s : shots) {
    const McItem& x = pool[s];
    ctx += x.query + f.target_delimiter + x.choices[x.gold] + f.fewshot_delimiter;
  }
  return ctx + task.items[item].query;
}

bool starts_with_token_text(const Tokenizer& tok, std::optional<int64_t> token, const std::string& text) {
  if (!token || *token < 0) return false;
  const std::string t = tok.decode({*token}, /*skip_special_tokens=*/false);
  return !t.empty() && text.compare(0, t.size(), t) == 0;
}

std::pair<std::vector<int64_t>, std::vector<int64_t>> encode_pair(const Tokenizer& tok, const std::string& context,
                                                                  const std::string& continuation,
                                                                  std::optional<int64_t> prefix_token,
                                                                  const std::string& where) {
  if (context.empty()) {
    std::vector<int64_t> cont = tok.encode(continuation, /*add_special_tokens=*/false);
    if (!prefix_token)
      throw InputError(where, "the context is empty and the model's config.json has no bos_token_id or eos_token_id "
                              "to stand for it");
    if (!cont.empty() && cont[0] == *prefix_token) return {{cont[0]}, {cont.begin() + 1, cont.end()}};
    return {{*prefix_token}, cont};
  }
  // Trailing whitespace belongs to the continuation (" Paris", not "Paris" after "is ").
  const size_t keep = rstrip_length(context);
  const std::string ctx_text = context.substr(0, keep);
  const std::string cont_text = context.substr(keep) + continuation;
  const std::string whole_text = ctx_text + cont_text;
  std::vector<int64_t> whole = tok.encode(whole_text, !starts_with_token_text(tok, prefix_token, whole_text));
  std::vector<int64_t> ctx = tok.encode(ctx_text, !starts_with_token_text(tok, prefix_token, ctx_text));
  std::vector<int64_t> cont;
  if (whole.size() > ctx.size()) cont.assign(whole.begin() + int64_t(ctx.size()), whole.end());
  return {ctx, cont};
}

ScoredSequence loglikelihood_request(const Tokenizer& tok, const std::string& context, const std::string& continuation,
                                     int64_t max_length, std::optional<int64_t> prefix_token,
                                     const std::string& where) {
  std::vector<int64_t> ctx, cont;
  try {
    std::tie(ctx, cont) = encode_pair(tok, context, continuation, prefix_token, where);
  } catch (const InputError& e) {
    const std::string msg = e.what();
    throw InputError(msg.rfind(where, 0) == 0 ? msg : where + ": " + msg);
  }
  if (cont.empty()) throw InputError(where, "adds no token to the context");
  if (int64_t(cont.size()) > max_length)
    throw InputError(where, "is " + std::to_string(cont.size()) + " tokens, longer than --max-length " +
                                std::to_string(max_length));
  // lm-eval keeps the last max_length + 1 tokens (the last one is only a target).
  std::vector<int64_t> ids = ctx;
  ids.insert(ids.end(), cont.begin(), cont.end());
  if (int64_t(ids.size()) > max_length + 1) ids.erase(ids.begin(), ids.end() - (max_length + 1));
  const int64_t first = int64_t(ids.size()) - int64_t(cont.size());
  return {std::move(ids), first};
}

std::vector<LoglikelihoodRequest> read_loglikelihood_requests(const std::string& path) {
  std::vector<LoglikelihoodRequest> out;
  for_each_json_line(path, "requests file", [&](const nlohmann::json& j, const std::string& where, int64_t n) {
    LoglikelihoodRequest r;
    r.line = n;
    for (auto [key, dest] : {std::pair<const char*, std::string*>{"context", &r.context},
                             std::pair<const char*, std::string*>{"continuation", &r.continuation}}) {
      if (!j.contains(key) || !j[key].is_string())
        throw InputError(where, std::string("field \"") + key + "\" must be a string");
      *dest = j[key].get<std::string>();
    }
    out.push_back(std::move(r));
  });
  if (out.empty()) throw InputError(path, "no requests");
  return out;
}

McPlan plan_mc(const McTask& task, const McSettings& settings, const Tokenizer& tok) {
  McPlan plan;
  plan.task = &task;
  plan.settings = settings;
  const McFormat& f = task.format;
  for (int64_t i = 0; i < int64_t(task.items.size()); ++i) {
    const McItem& item = task.items[i];
    const std::string where = task.path + ": line " + std::to_string(item.line);
    plan.shots.push_back(draw_fewshot(task, i, settings.num_fewshot, settings.fewshot_seed));
    const std::string context = build_context(task, i, plan.shots.back());
    plan.first_request.push_back(int64_t(plan.requests.size()));
    for (size_t c = 0; c < item.choices.size(); ++c)
      plan.requests.push_back(loglikelihood_request(tok, context, f.target_delimiter + item.choices[c],
                                                    settings.max_length, settings.prefix_token,
                                                    where + ": choice " + std::to_string(c)));
  }
  return plan;
}

McResults summarize_mc(const McPlan& plan, const std::vector<SequenceScore>& scores) {
  TORCH_CHECK(scores.size() == plan.requests.size(), "summarize_mc: one score per request");
  const McTask& task = *plan.task;
  McResults r;
  std::vector<double> acc, acc_norm, acc_bytes;
  for (size_t i = 0; i < task.items.size(); ++i) {
    const McItem& item = task.items[i];
    McItemResult x;
    for (size_t c = 0; c < item.choices.size(); ++c) {
      const SequenceScore& s = scores[plan.first_request[i] + c];
      x.loglik.push_back(s.logprob);
      x.n_tokens.push_back(s.n_scored);
      x.greedy.push_back(s.greedy);
      r.scored_tokens += s.n_scored;
    }
    x.pred = argmax(x.loglik, [](size_t) { return 1.0; });
    x.pred_norm = argmax(x.loglik, [&](size_t c) { return double(code_points(item.choices[c])); });
    x.pred_bytes = argmax(x.loglik, [&](size_t c) { return double(item.choices[c].size()); });
    acc.push_back(x.pred == item.gold);
    acc_norm.push_back(x.pred_norm == item.gold);
    acc_bytes.push_back(x.pred_bytes == item.gold);
    r.items.push_back(std::move(x));
  }
  std::tie(r.acc, r.acc_stderr) = mean_stderr(acc);
  std::tie(r.acc_norm, r.acc_norm_stderr) = mean_stderr(acc_norm);
  std::tie(r.acc_bytes, r.acc_bytes_stderr) = mean_stderr(acc_bytes);
  return r;
}

}  // namespace moelab::jobs
