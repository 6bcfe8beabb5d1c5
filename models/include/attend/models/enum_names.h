#pragma once
/// Closed choices (optimizer, schedule, RAM core, soft glimpse, ...) are enums inside
/// the library; their names exist only at the edges (JSON, command line). Each enum
/// specialises EnumNames once; parse_enum and enum_name are the only conversions.
///
///   template <> struct EnumNames<Schedule> {
///     static constexpr const char* what = "schedule";
///     static constexpr std::pair<Schedule, const char*> names[] = {{Schedule::kConstant, "constant"}, ...};
///   };

#include <c10/util/Exception.h>

#include <string>
#include <utility>
#include <vector>

namespace attend::models {

template <typename E>
struct EnumNames;

/// The valid names of E in declaration order.
template <typename E>
std::vector<std::string> enum_names() {
  std::vector<std::string> out;
  for (const auto& [value, name] : EnumNames<E>::names) out.emplace_back(name);
  return out;
}

/// "a, b or c".
template <typename E>
std::string enum_choices() {
  const auto names = enum_names<E>();
  std::string out;
  for (size_t i = 0; i < names.size(); ++i) {
    out += (i == 0 ? "" : i + 1 == names.size() ? " or " : ", ") + names[i];
  }
  return out;
}

template <typename E>
const char* enum_name(E value) {
  for (const auto& [v, name] : EnumNames<E>::names) {
    if (v == value) return name;
  }
  TORCH_CHECK(false, "invalid ", EnumNames<E>::what, " value ", static_cast<int>(value));
}

/// throws c10::Error: "unknown <what> '<name>' (expected a, b or c)".
template <typename E>
E parse_enum(const std::string& name) {
  for (const auto& [value, n] : EnumNames<E>::names) {
    if (name == n) return value;
  }
  TORCH_CHECK(false, "unknown ", EnumNames<E>::what, " '", name, "' (expected ", enum_choices<E>(), ")");
}

}  // namespace attend::models
