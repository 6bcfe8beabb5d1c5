#pragma once
/// `--cams raw|revised` of `attend eval --masks` and `attend segment`: which maps of a
/// seam model are used (models::CamStage), checked against the model.

#include "cli.h"
#include "validate.h"

#include <attend/models/segmentation.h>

#include <string>

namespace attend::cli {

inline constexpr const char* kCamsHelp =
    "a seam model's maps: revised (by the PCM; the default when its PCM is trained) or raw (the CAM head's, "
    "before the PCM: the maps L_er makes equivariant)";

/// The stage `--cams` asks for (kModel when absent).
/// throws UsageError for another value, a model that is not seam, a seam model that
/// segments by its own argmax (pixel supervision), or `revised` when its PCM was not trained.
inline models::CamStage cam_stage_option(const po::variables_map& vm, models::Classifier& model) {
  if (!vm.count("cams")) return models::CamStage::kModel;
  if (model.kind() != "seam") {
    throw UsageError("--cams: a '" + model.kind() + "' model has one kind of CAM; it applies to seam models");
  }
  if (models::segments_by_argmax(model)) {
    throw UsageError("--cams: this model was trained with pixel supervision and segments by its own argmax, not "
                     "by CAMs");
  }
  const bool raw = require_one_of(vm, "cams", {"raw", "revised"}) == "raw";
  if (!raw && models::resolve_cam_stage(model, models::CamStage::kModel) != models::CamStage::kRevised) {
    throw UsageError("--cams revised: this seam model's PCM was not trained (--ecr off --min-pool off); score its raw "
                     "CAMs");
  }
  return raw ? models::CamStage::kRaw : models::CamStage::kRevised;
}

}  // namespace attend::cli
