#pragma once
/// The result every attention function returns: what was read and where.

#include <torch/types.h>

namespace attend::attention {

struct Attended {
  torch::Tensor context;  ///< the attended values
  torch::Tensor weights;  ///< attention weights, taken before any dropout
};

}  // namespace attend::attention
