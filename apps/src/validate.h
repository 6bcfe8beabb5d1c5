#pragma once
/// Small named checks for option values; each throws UsageError naming the option.

#include "cli.h"

#include <initializer_list>
#include <sstream>
#include <string>

namespace attend::cli {

/// A number as a user would write it (1e-3, 0.5, 180), not std::to_string's 0.001000.
template <typename T>
std::string format_number(T value) {
  std::ostringstream out;
  out << value;
  return out.str();
}

template <typename T>
T require_range(const po::variables_map& vm, const std::string& name, T lo, T hi) {
  const T value = vm[name].as<T>();
  if (value < lo || value > hi) {
    throw UsageError("--" + name + " must be between " + format_number(lo) + " and " + format_number(hi) +
                     ", got " + format_number(value));
  }
  return value;
}

template <typename T>
T require_positive(const po::variables_map& vm, const std::string& name) {
  const T value = vm[name].as<T>();
  if (value <= 0) throw UsageError("--" + name + " must be positive, got " + format_number(value));
  return value;
}

inline std::string require_one_of(const po::variables_map& vm, const std::string& name,
                                  std::initializer_list<const char*> choices) {
  const auto value = vm[name].as<std::string>();
  std::string list;
  for (const char* c : choices) {
    if (value == c) return value;
    list += (list.empty() ? "" : ", ") + std::string(c);
  }
  throw UsageError("--" + name + " must be one of " + list + ", got '" + value + "'");
}

}  // namespace attend::cli
