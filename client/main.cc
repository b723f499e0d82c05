#include <iostream>

#include "client/schedctl.h"

int main(int argc, char** argv) {
  return sched::client::RunSchedctl(argc, argv, std::cout, std::cerr);
}
