#include "results/report/table_format.h"

#include <charconv>
#include <cmath>
#include <cstdio>

namespace moelab::results::report {
namespace {

const char* kPlusMinus = "\xc2\xb1";  // U+00B1

std::string fixed(double v, int decimals) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  std::string s = buf;
  if (s[0] == '-' && s.find_first_not_of("-0.") == std::string::npos) s.erase(0, 1);  // no "-0.00"
  return s;
}

double shown(const Column& c, double v) { return c.percent ? v * 100 : v; }

std::string header(const Column& c) { return c.group.empty() ? c.label : c.group + " " + c.label; }

bool has_groups(const Table& t) {
  for (const auto& c : t.columns)
    if (!c.group.empty()) return true;
  return false;
}

// Runs of equal group labels: (first column, count).
std::vector<std::pair<size_t, size_t>> group_runs(const Table& t) {
  std::vector<std::pair<size_t, size_t>> runs;
  for (size_t i = 0; i < t.columns.size(); ++i) {
    if (!runs.empty() && t.columns[runs.back().first].group == t.columns[i].group) {
      ++runs.back().second;
    } else {
      runs.push_back({i, 1});
    }
  }
  return runs;
}

std::string md_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '|') out += '\\';
    out += c;
  }
  return out;
}

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n\r") == std::string::npos) return s;
  std::string out = "\"";
  for (char c : s) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

}  // namespace

std::string shortest(double v) {
  if (std::isnan(v)) return "nan";
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, res.ptr);
}

std::string html_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

std::string latex_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '\\': out += "\\textbackslash{}"; break;
      case '&': case '%': case '$': case '#': case '_': case '{': case '}':
        out += '\\';
        out += c;
        break;
      case '~': out += "\\textasciitilde{}"; break;
      case '^': out += "\\textasciicircum{}"; break;
      default: out += c;
    }
  }
  return out;
}

std::string to_markdown(const Table& t) {
  std::string s = "### " + md_escape(t.title) + "\n\n";
  s += "|";
  for (const auto& h : t.row_headers) s += " " + md_escape(h) + " |";
  for (const auto& c : t.columns) s += " " + md_escape(header(c)) + " |";
  s += "\n|";
  for (size_t i = 0; i < t.row_headers.size(); ++i) s += "---|";
  for (size_t i = 0; i < t.columns.size(); ++i) s += "---:|";
  s += "\n";
  for (const auto& row : t.rows) {
    s += "|";
    for (const auto& l : row.labels) s += " " + md_escape(l) + " |";
    for (size_t i = 0; i < t.columns.size(); ++i) {
      const Cell& c = row.cells[i];
      const Column& col = t.columns[i];
      std::string v = "-";
      if (c.present) {
        v = fixed(shown(col, c.mean), col.decimals);
        if (c.best) v = "**" + v + "**";
        if (c.n > 1) v += std::string(" ") + kPlusMinus + " " + fixed(shown(col, c.std), col.decimals);
      }
      s += " " + v + " |";
    }
    s += "\n";
  }
  s += "\n" + md_escape(t.caption) + "\n";
  return s;
}

std::string to_csv(const Table& t) {
  const bool std_cols = t.has_std();
  std::string s;
  std::vector<std::string> head = t.row_headers;
  for (const auto& c : t.columns) {
    head.push_back(header(c));
    if (std_cols) head.push_back(header(c) + " std");
  }
  for (size_t i = 0; i < head.size(); ++i) s += (i ? "," : "") + csv_field(head[i]);
  s += "\n";
  for (const auto& row : t.rows) {
    std::vector<std::string> f = row.labels;
    for (const auto& c : row.cells) {
      f.push_back(c.present ? shortest(c.mean) : "");
      if (std_cols) f.push_back(c.present && c.n > 1 ? shortest(c.std) : "");
    }
    for (size_t i = 0; i < f.size(); ++i) s += (i ? "," : "") + csv_field(f[i]);
    s += "\n";
  }
  return s;
}

std::string to_latex(const Table& t) {
  const size_t nl = t.row_headers.size();
  std::string s = "\\begin{table}[ht]\n\\centering\n";
  s += "\\caption{" + latex_escape(t.title) + ". " + latex_escape(t.caption) + "}\n";
  s += "\\label{tab:" + t.id + "}\n";
  // A table of text only (the claims): wrapped columns sharing the line; shrinking it
  // would make sentences unreadable. Else shrink to the line width only when wider than it.
  const bool text_only = t.columns.empty() && nl > 0;
  if (text_only) {
    char width[32];
    std::snprintf(width, sizeof width, "p{%.3f\\linewidth}", 0.92 / double(nl));
    s += "{\\small\n\\begin{tabular}{";
    for (size_t i = 0; i < nl; ++i) s += width;
    s += "}\n\\toprule\n";
  } else {
    s += "\\resizebox{\\ifdim\\width>\\linewidth\\linewidth\\else\\width\\fi}{!}{%\n";
    s += "\\begin{tabular}{" + std::string(nl, 'l') + std::string(t.columns.size(), 'r') + "}\n\\toprule\n";
  }
  if (has_groups(t)) {
    std::string rules;
    s += std::string(nl > 0 ? nl - 1 : 0, '&');
    for (const auto& [first, count] : group_runs(t)) {
      const size_t a = nl + first + 1, b = nl + first + count;
      s += " & \\multicolumn{" + std::to_string(count) + "}{c}{" + latex_escape(t.columns[first].group) + "}";
      if (!t.columns[first].group.empty())
        rules += "\\cmidrule(lr){" + std::to_string(a) + "-" + std::to_string(b) + "}";
    }
    s += " \\\\\n" + rules + "\n";
  }
  for (size_t i = 0; i < nl; ++i) s += (i ? " & " : "") + latex_escape(t.row_headers[i]);
  for (const auto& c : t.columns) {
    s += " & " + latex_escape(c.label) + (c.percent ? " (\\%)" : "");
    if (c.mark_best) s += c.lower_is_better ? " $\\downarrow$" : " $\\uparrow$";
  }
  s += " \\\\\n\\midrule\n";
  for (size_t r = 0; r < t.rows.size(); ++r) {
    const Row& row = t.rows[r];
    if (r > 0 && t.rows[r - 1].baseline && !row.baseline) s += "\\midrule\n";
    for (size_t i = 0; i < row.labels.size(); ++i) {
      // Blocks of rows with one criterion: name it on the first row only (paper style).
      const bool repeat = i == 0 && nl > 1 && r > 0 && t.rows[r - 1].labels[0] == row.labels[0];
      s += (i ? " & " : "") + (repeat ? std::string() : latex_escape(row.labels[i]));
    }
    for (size_t i = 0; i < t.columns.size(); ++i) {
      const Cell& c = row.cells[i];
      const Column& col = t.columns[i];
      std::string v = "--";
      if (c.present) {
        v = fixed(shown(col, c.mean), col.decimals);
        if (c.best) v = "\\textbf{" + v + "}";
        if (c.n > 1) v += "$\\pm$" + fixed(shown(col, c.std), col.decimals);
      }
      s += " & " + v;
    }
    s += " \\\\\n";
  }
  s += "\\bottomrule\n\\end{tabular}}\n\\end{table}\n";  // "}" closes the resize box or the small-font group
  return s;
}

std::string latex_document(const std::string& title, const std::vector<Table>& tables) {
  std::string s =
      "% Written by moelab report. Compile with pdflatex (packages: booktabs, graphicx, geometry).\n"
      "\\documentclass{article}\n\\usepackage[T1]{fontenc}\n\\usepackage[utf8]{inputenc}\n"
      "\\usepackage{booktabs}\n\\usepackage{graphicx}\n\\usepackage[margin=1.5cm,landscape]{geometry}\n"
      "\\begin{document}\n\\section*{" +
      latex_escape(title) + "}\n\n";
  for (const auto& t : tables) s += to_latex(t) + "\n";
  s += "\\end{document}\n";
  return s;
}

std::string to_html_table(const Table& t) {
  const bool groups = has_groups(t);
  // The caption as a paragraph above the table (a <caption> is as narrow as its table);
  // the table in a box that scrolls sideways, so that a table wider than the page (20+
  // columns) keeps every column readable instead of running off the page's right edge.
  std::string s = "<p class=\"caption\" id=\"table-" + html_escape(t.id) + "\"><b>" + html_escape(t.title) + ".</b> " +
                  html_escape(t.caption) + "</p>\n<div class=\"table-scroll\">\n<table class=\"report\" data-id=\"" + html_escape(t.id) +
                  "\">\n<thead>\n<tr>";
  const std::string span = groups ? " rowspan=\"2\"" : "";
  for (const auto& h : t.row_headers) s += "<th" + span + ">" + html_escape(h) + "</th>";
  if (groups) {
    for (const auto& [first, count] : group_runs(t))
      s += "<th colspan=\"" + std::to_string(count) + "\" class=\"group\">" + html_escape(t.columns[first].group) +
           "</th>";
    s += "</tr>\n<tr>";
  }
  for (const auto& c : t.columns) {
    std::string label = html_escape(c.label) + (c.percent ? " (%)" : "");
    if (c.mark_best) label += c.lower_is_better ? " &darr;" : " &uarr;";
    s += "<th>" + label + "</th>";
  }
  s += "</tr>\n</thead>\n<tbody>\n";
  for (const auto& row : t.rows) {
    s += row.baseline ? "<tr class=\"baseline\">" : "<tr>";
    for (const auto& l : row.labels) s += "<td class=\"label\">" + html_escape(l) + "</td>";
    for (size_t i = 0; i < t.columns.size(); ++i) {
      const Cell& c = row.cells[i];
      const Column& col = t.columns[i];
      std::string v = "&ndash;";
      if (c.present) {
        v = fixed(shown(col, c.mean), col.decimals);
        if (c.best) v = "<b>" + v + "</b>";
        if (c.n > 1) v += " &plusmn; " + fixed(shown(col, c.std), col.decimals);
      }
      s += "<td>" + v + "</td>";
    }
    s += "</tr>\n";
  }
  s += "</tbody>\n</table>\n</div>\n";
  return s;
}

nlohmann::json to_json(const Table& t) {
  nlohmann::json cols = nlohmann::json::array(), rows = nlohmann::json::array();
  for (const auto& c : t.columns)
    cols.push_back({{"group", c.group}, {"label", c.label}, {"lower_is_better", c.lower_is_better},
                    {"mark_best", c.mark_best}, {"percent", c.percent}});
  for (const auto& r : t.rows) {
    nlohmann::json cells = nlohmann::json::array();
    for (const auto& c : r.cells)
      cells.push_back(c.present ? nlohmann::json{{"mean", c.mean}, {"std", c.std}, {"n", c.n}, {"best", c.best}}
                                : nlohmann::json(nullptr));
    rows.push_back({{"labels", r.labels}, {"baseline", r.baseline}, {"cells", cells}});
  }
  return {{"id", t.id},           {"title", t.title}, {"caption", t.caption},
          {"row_headers", t.row_headers}, {"columns", cols}, {"rows", rows}};
}

}  // namespace moelab::results::report
