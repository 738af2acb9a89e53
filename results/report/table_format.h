// Rendering the report's tables (report_table.h): Markdown, CSV, LaTeX (booktabs),
// HTML and JSON. Pure functions of the table: the same table gives the same bytes.
//
//   Markdown  one header row ("25% wiki PPL"), best per column in bold, "mean +- std"
//             where a cell has several seeds, "-" where there is no value; accuracies x100.
//   CSV       one header row, raw values as the result records hold them (accuracies as
//             fractions, shortest round-trip decimal), a "<column> std" column after
//             each column when some cell has several seeds; empty where there is no value.
//   LaTeX     a table environment with booktabs rules, column groups as \multicolumn
//             with \cmidrule, best in \textbf; latex_document() wraps tables into a
//             standalone article (booktabs, graphicx, geometry).
//   HTML      a <table> with the column groups as a second header row.
//   JSON      everything: cells with mean, std, n and best.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "results/report/report_table.h"

namespace moelab::results::report {

// Shortest decimal that reads back as the same double ("0.1", "12.345678901234567").
std::string shortest(double v);

std::string to_markdown(const Table& t);
std::string to_csv(const Table& t);
std::string to_latex(const Table& t);
std::string latex_document(const std::string& title, const std::vector<Table>& tables);
std::string to_html_table(const Table& t);
nlohmann::json to_json(const Table& t);

std::string html_escape(const std::string& s);
std::string latex_escape(const std::string& s);

}  // namespace moelab::results::report
