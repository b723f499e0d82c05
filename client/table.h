#pragma once

#include <ostream>
#include <string>
#include <vector>

namespace sched::client {

// A plain-text table in kubectl's manner: a header row, columns left-aligned and separated by
// at least three spaces, no trailing spaces.
class Table {
 public:
  explicit Table(std::vector<std::string> header);

  // A row with fewer cells than the header is padded with empty cells.
  void AddRow(std::vector<std::string> row);
  void Print(std::ostream& out) const;

 private:
  std::vector<std::vector<std::string>> rows_;  // rows_[0] is the header.
};

// One row with the given column widths, for output that cannot wait for every row (watch).
// A cell longer than its width pushes the rest of the row right.
void PrintTableRow(const std::vector<std::string>& cells, const std::vector<size_t>& widths,
                   std::ostream& out);

}  // namespace sched::client
