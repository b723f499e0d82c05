#include <iostream>

#include "client/schedctl.h"
#include "server/common/memory.h"

int main(int argc, char** argv) {
  sched::KeepFreedMemoryForReuse();
  return sched::client::RunSchedctl(argc, argv, std::cout, std::cerr);
}
