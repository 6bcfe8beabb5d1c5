#include "cli.h"

#include <iostream>

int main(int argc, char** argv) try {
  return attend::cli::run_cli(argc, argv, std::cout, std::cerr);
} catch (...) {
  std::cerr << "attend: error: unexpected failure\n";
  return attend::cli::kFailure;
}
