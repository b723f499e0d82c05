#include "client/table.h"

#include <algorithm>

namespace sched::client {
namespace {

constexpr size_t kColumnGap = 3;

}  // namespace

Table::Table(std::vector<std::string> header) { rows_.push_back(std::move(header)); }

void Table::AddRow(std::vector<std::string> row) {
  row.resize(std::max(row.size(), rows_[0].size()));
  rows_.push_back(std::move(row));
}

void Table::Print(std::ostream& out) const {
  std::vector<size_t> widths;
  for (const auto& row : rows_) {
    widths.resize(std::max(widths.size(), row.size()));
    for (size_t i = 0; i < row.size(); ++i) widths[i] = std::max(widths[i], row[i].size());
  }
  for (const auto& row : rows_) PrintTableRow(row, widths, out);
}

void PrintTableRow(const std::vector<std::string>& cells, const std::vector<size_t>& widths,
                   std::ostream& out) {
  // Trailing empty cells would only leave trailing spaces.
  size_t n = cells.size();
  while (n > 0 && cells[n - 1].empty()) --n;
  std::string line;
  for (size_t i = 0; i < n; ++i) {
    line += cells[i];
    if (i + 1 < n) {
      const size_t width = i < widths.size() ? widths[i] : 0;
      line.append(std::max(width, cells[i].size()) - cells[i].size() + kColumnGap, ' ');
    }
  }
  out << line << '\n';
}

}  // namespace sched::client
