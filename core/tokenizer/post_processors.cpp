#include "core/tokenizer/post_processors.h"

#include <map>
#include <string>

namespace moelab::tok {
namespace {

// A template is a list of items: the sequence itself ($A) or a run of special ids.
struct TemplateItem {
  bool is_sequence;
  std::vector<int64_t> ids;
};

class Template : public PostProcessor {
 public:
  explicit Template(std::vector<TemplateItem> items) : items_(std::move(items)) {}
  void process(std::vector<int64_t>& ids, bool add_special_tokens) const override {
    if (!add_special_tokens) return;
    std::vector<int64_t> out;
    out.reserve(ids.size() + 4);
    for (const auto& item : items_) {
      if (item.is_sequence) out.insert(out.end(), ids.begin(), ids.end());
      else out.insert(out.end(), item.ids.begin(), item.ids.end());
    }
    ids = std::move(out);
  }

 private:
  std::vector<TemplateItem> items_;
};

class NoOp : public PostProcessor {
 public:
  void process(std::vector<int64_t>&, bool) const override {}
};

class Sequence : public PostProcessor {
 public:
  explicit Sequence(std::vector<std::unique_ptr<PostProcessor>> parts) : parts_(std::move(parts)) {}
  void process(std::vector<int64_t>& ids, bool add_special_tokens) const override {
    for (const auto& p : parts_) p->process(ids, add_special_tokens);
  }

 private:
  std::vector<std::unique_ptr<PostProcessor>> parts_;
};

std::unique_ptr<PostProcessor> make_template(const JsonField& j) {
  std::map<std::string, std::vector<int64_t>> specials;
  if (auto st = j.find("special_tokens")) {
    if (!st->is_object()) st->fail("must be an object");
    for (auto it = st->json().begin(); it != st->json().end(); ++it) {
      JsonField entry(it.value(), st->path() + "[" + quote_str(it.key()) + "]", j.file());
      std::vector<int64_t> ids;
      for (const auto& id : entry.at("ids").items()) ids.push_back(id.integer());
      specials[it.key()] = ids;
    }
  }
  std::vector<TemplateItem> items;
  for (const auto& piece : j.at("single").items()) {
    if (auto seq = piece.find("Sequence")) {
      std::string id = seq->at("id").str();
      if (id != "A") seq->at("id").fail("is " + quote_str(id) + "; a single-sequence template can only use A");
      items.push_back({true, {}});
    } else if (auto sp = piece.find("SpecialToken")) {
      std::string id = sp->at("id").str();
      auto it = specials.find(id);
      if (it == specials.end())
        sp->at("id").fail(quote_str(id) + " is not defined in post_processor.special_tokens");
      items.push_back({false, it->second});
    } else {
      piece.fail("must be {\"Sequence\": ...} or {\"SpecialToken\": ...}");
    }
  }
  return std::make_unique<Template>(std::move(items));
}

// RobertaProcessing / BertProcessing: "cls": [token, id], "sep": [token, id].
std::unique_ptr<PostProcessor> make_cls_sep(const JsonField& j) {
  auto id_of = [](const JsonField& pair) {
    if (!pair.is_array() || pair.json().size() != 2) pair.fail("must be a pair [token, id]");
    return pair.at(1).integer();
  };
  std::vector<TemplateItem> items;
  items.push_back({false, {id_of(j.at("cls"))}});
  items.push_back({true, {}});
  items.push_back({false, {id_of(j.at("sep"))}});
  return std::make_unique<Template>(std::move(items));
}

}  // namespace

std::unique_ptr<PostProcessor> make_post_processor(const JsonField& j) {
  if (j.is_null()) return nullptr;
  const std::string type = j.type();
  if (type == "TemplateProcessing") return make_template(j);
  if (type == "RobertaProcessing" || type == "BertProcessing") return make_cls_sep(j);
  if (type == "ByteLevel") return std::make_unique<NoOp>();
  if (type == "Sequence") {
    std::vector<std::unique_ptr<PostProcessor>> parts;
    for (const auto& item : j.at("processors").items()) {
      auto p = make_post_processor(item);
      if (p) parts.push_back(std::move(p));
    }
    return std::make_unique<Sequence>(std::move(parts));
  }
  j.unsupported_type(type, "TemplateProcessing, RobertaProcessing, BertProcessing, ByteLevel, Sequence");
}

}  // namespace moelab::tok
