#pragma once
/// Small named checks for option values; each throws UsageError naming the option.

#include "cli.h"

#include <attend/models/enum_names.h>

#include <c10/util/Exception.h>

#include <cmath>
#include <initializer_list>
#include <sstream>
#include <string>
#include <vector>

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
  if (!(value >= lo && value <= hi)) {  // also refuses nan
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

/// A floating option that must be a finite number (not nan or inf).
inline double require_finite(const po::variables_map& vm, const std::string& name) {
  const double value = vm[name].as<double>();
  if (!std::isfinite(value)) throw UsageError("--" + name + " must be a finite number, got " + format_number(value));
  return value;
}

/// The enum value named by a string option; the error lists the valid names.
template <typename E>
E require_enum(const po::variables_map& vm, const std::string& name) {
  const auto value = vm[name].as<std::string>();
  for (const auto& valid : models::enum_names<E>()) {
    if (value == valid) return models::parse_enum<E>(value);
  }
  throw UsageError("--" + name + " must be " + models::enum_choices<E>() + ", got '" + value + "'");
}

/// "1,10,100" as whole numbers; a usage error naming --flag for anything else or an
/// empty list.
inline std::vector<std::int64_t> parse_int_list(const std::string& text, const std::string& flag) {
  std::vector<std::int64_t> out;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    try {
      size_t used = 0;
      const auto v = std::stoll(item, &used);
      if (used != item.size()) throw std::invalid_argument(item);
      out.push_back(v);
    } catch (const std::exception&) {
      throw UsageError("--" + flag + " must be a comma-separated list of whole numbers, got '" + text + "'");
    }
  }
  if (out.empty()) throw UsageError("--" + flag + " must not be empty");
  return out;
}

/// "0.5,1,1.5" as finite numbers; a usage error naming --flag for anything else or an
/// empty list.
inline std::vector<double> parse_real_list(const std::string& text, const std::string& flag) {
  std::vector<double> out;
  std::stringstream ss(text);
  for (std::string item; std::getline(ss, item, ',');) {
    if (item.empty()) continue;
    try {
      size_t used = 0;
      const double v = std::stod(item, &used);
      if (used != item.size() || !std::isfinite(v)) throw std::invalid_argument(item);
      out.push_back(v);
    } catch (const std::exception&) {
      throw UsageError("--" + flag + " must be a comma-separated list of numbers, got '" + text + "'");
    }
  }
  if (out.empty()) throw UsageError("--" + flag + " must not be empty");
  return out;
}

}  // namespace attend::cli
