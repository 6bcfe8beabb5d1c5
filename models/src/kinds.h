#pragma once
// The built-in model kinds, one file each; registry.cpp registers them.

#include <attend/models/registry.h>

#include <torch/types.h>

namespace attend::models {

ModelKind ram_kind();   // ram_kind.cpp
ModelKind soft_kind();  // soft_kind.cpp
ModelKind cnn_kind();   // plain_kinds.cpp
ModelKind fc_kind();    // plain_kinds.cpp
ModelKind captioner_kind();  // captioner_kind.cpp
ModelKind cam_kind();        // cam.cpp
ModelKind seam_kind();       // seam.cpp

/// Fraction of rows whose highest score is the target.
double accuracy(const torch::Tensor& scores, const torch::Tensor& targets);

}  // namespace attend::models
