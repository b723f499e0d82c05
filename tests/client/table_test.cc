#include "client/table.h"

#include <sstream>

#include "gtest/gtest.h"

namespace sched::client {
namespace {

TEST(Table, AlignsColumnsWithThreeSpaces) {
  Table table({"NAME", "STATE", "AGE"});
  table.AddRow({"a", "RUNNING", "5m"});
  table.AddRow({"longer-name", "PENDING", "45s"});
  std::ostringstream out;
  table.Print(out);
  EXPECT_EQ(out.str(),
            "NAME          STATE     AGE\n"
            "a             RUNNING   5m\n"
            "longer-name   PENDING   45s\n");
}

TEST(Table, LeavesNoTrailingSpacesForEmptyLastCells) {
  Table table({"ID", "MESSAGE"});
  table.AddRow({"1", ""});
  table.AddRow({"2"});
  table.AddRow({"3", "exit code 2"});
  std::ostringstream out;
  table.Print(out);
  EXPECT_EQ(out.str(),
            "ID   MESSAGE\n"
            "1\n"
            "2\n"
            "3    exit code 2\n");
}

TEST(PrintTableRow, PadsToGivenWidthsAndPushesLongCellsRight) {
  std::ostringstream out;
  PrintTableRow({"ID", "STATE", "AGE"}, {4, 7, 3}, out);
  PrintTableRow({"123456", "RUNNING", "5s"}, {4, 7, 3}, out);
  EXPECT_EQ(out.str(),
            "ID     STATE     AGE\n"
            "123456   RUNNING   5s\n");
}

}  // namespace
}  // namespace sched::client
