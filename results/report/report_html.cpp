#include "results/report/report_html.h"

#include <fstream>
#include <sstream>

#include "core/common/error.h"
#include "results/report/table_format.h"

namespace moelab::results::report {
namespace {

std::string read_bytes(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) throw InputError(p.string(), "cannot read the plot image");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

const char* kStyle = R"(<style>
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto; max-width: 80em;
       color: #222; background: #fff; padding: 0 1em; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ccc; }
div.table-scroll { overflow-x: auto; max-width: 100%; margin: 0 0 2em; }
table.report { border-collapse: collapse; margin: 0; font-size: 0.85em; }
p.caption { font-size: 0.85em; max-width: 70em; margin: 1.5em 0 0.4em; }
table.report th, table.report td { padding: 0.2em 0.6em; text-align: right; white-space: nowrap; }
table.report td.label { text-align: left; }
table.report thead tr:first-child th { border-top: 2px solid #222; }
table.report thead tr:last-child th { border-bottom: 1px solid #222; }
table.report th.group { border-bottom: 1px solid #888; text-align: center; }
table.report tbody tr:last-child td { border-bottom: 2px solid #222; }
table.report tr.baseline td { background: #f3f3f3; }
figure { margin: 1em 0 2em; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: 0.85em; color: #444; }
ul.notes { color: #8a4b00; font-size: 0.9em; }
</style>
)";

}  // namespace

std::string base64(const std::string& bytes) {
  static const char* k = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 2 < bytes.size(); i += 3) {
    const uint32_t v = uint32_t(uint8_t(bytes[i])) << 16 | uint32_t(uint8_t(bytes[i + 1])) << 8 | uint8_t(bytes[i + 2]);
    out += {k[v >> 18], k[(v >> 12) & 63], k[(v >> 6) & 63], k[v & 63]};
  }
  if (i + 1 == bytes.size()) {
    const uint32_t v = uint32_t(uint8_t(bytes[i])) << 16;
    out += {k[v >> 18], k[(v >> 12) & 63], '=', '='};
  } else if (i + 2 == bytes.size()) {
    const uint32_t v = uint32_t(uint8_t(bytes[i])) << 16 | uint32_t(uint8_t(bytes[i + 1])) << 8;
    out += {k[v >> 18], k[(v >> 12) & 63], k[(v >> 6) & 63], '='};
  }
  return out;
}

std::string report_html(const Page& page, const std::filesystem::path& plots_dir) {
  std::string s = "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>" +
                  html_escape(page.title) + "</title>\n" + kStyle + "</head>\n<body>\n<h1>" + html_escape(page.title) +
                  "</h1>\n";
  for (const auto& line : page.summary) s += "<p>" + html_escape(line) + "</p>\n";
  if (!page.notes.empty()) {
    s += "<ul class=\"notes\">\n";
    for (const auto& n : page.notes) s += "<li>" + html_escape(n) + "</li>\n";
    s += "</ul>\n";
  }
  s += "<h2>Tables</h2>\n";
  if (page.tables.empty()) s += "<p>No finished evaluations to tabulate.</p>\n";
  for (const auto& t : page.tables) s += to_html_table(t);
  s += "<h2>Plots</h2>\n";
  if (!page.plots.made) s += "<p>" + html_escape(page.plots.note) + "</p>\n";
  for (const auto& p : page.plots.plots) {
    const std::string png = base64(read_bytes(plots_dir / (p.stem + ".png")));
    s += "<figure id=\"plot-" + html_escape(p.stem) + "\">\n<img alt=\"" + html_escape(p.title) +
         "\" src=\"data:image/png;base64," + png + "\">\n<figcaption><b>" + html_escape(p.title) + ".</b> " +
         html_escape(p.caption) + " <a href=\"plots/" + html_escape(p.stem) + ".svg\">SVG</a></figcaption>\n</figure>\n";
  }
  s += "</body>\n</html>\n";
  return s;
}

}  // namespace moelab::results::report
