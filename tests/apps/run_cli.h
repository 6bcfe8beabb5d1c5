#pragma once
// Runs the attend command line in-process, capturing what it prints.

#include "cli.h"

#include <sstream>
#include <string>
#include <vector>

namespace attend::testing {

struct CliRun {
  int code;
  std::string out;
  std::string err;
};

/// `attend <args...>`: the exit code and what went to stdout and stderr.
inline CliRun run(std::vector<std::string> args) {
  args.insert(args.begin(), "attend");
  std::vector<const char*> argv;
  for (const auto& a : args) argv.push_back(a.c_str());
  std::ostringstream out, err;
  const int code = attend::cli::run_cli(static_cast<int>(argv.size()), argv.data(), out, err);
  return {code, out.str(), err.str()};
}

}  // namespace attend::testing
