#pragma once
/// A user's TorchScript classifier as a SaliencyModel (saliency.h), opened at its
/// target layers in one of two forms:
///
///   (a) children  `forward` is a chain of the module's named children, in order, as
///                 in torchvision's ResNet/VGG (an input of more than 2 dimensions is
///                 flattened from dim 1 before a Linear child, since those models
///                 flatten before `fc` without a child for it). Targets: the
///                 children's names, all but the last, whose output is the logits.
///                 Gradients start at the earliest requested child's output, so
///                 backward costs only the children after it.
///   (b) method    an exported method returning (logits, activation_1, ...,
///                 activation_n), e.g. in Python
///                   @torch.jit.export
///                   def forward_with_activations(self, x): ... return logits, a3, a4
///                 Targets: "1".."n" (1-based, as strings).
///
/// Opening checks the split against `forward` on a seeded random probe input, so a
/// model whose children do not chain to its forward (skip connections at the top
/// level, a scaled output, ...) is refused instead of giving wrong maps.
///
///   auto model = attend::models::open_scripted_model(
///       attend::models::ScriptedModelOptions("resnet18.pt")
///           .mean({0.485, 0.456, 0.406}).std({0.229, 0.224, 0.225}));
///   auto split = model->forward(model->prepare(images), {"layer4"}, true);

#include <attend/models/saliency.h>

#include <torch/arg.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace attend::models {

struct ScriptedModelOptions {
  explicit ScriptedModelOptions(std::string path) : path_(std::move(path)) {}
  /// The TorchScript file (torch.jit.script(model).save(path) or torch.jit.trace).
  TORCH_ARG(std::string, path);
  /// "" = form (a), the module's children; else form (b), the name of the method that
  /// returns (logits, activations...).
  TORCH_ARG(std::string, method) = "";
  /// Channels of the model inputs.
  TORCH_ARG(std::int64_t, channels) = 3;
  /// Size of the probe input [1,C,H,W] the split is checked on (and that form (a)'s
  /// default layer and CAM head are recognised by).
  TORCH_ARG(std::int64_t, probe_height) = 224;
  TORCH_ARG(std::int64_t, probe_width) = 224;
  /// true: the model only takes inputs of the probe size, which height() and width()
  /// report; false: they report 0 (any size).
  TORCH_ARG(bool, fixed_size) = false;
  /// Normalisation done by prepare(): (x - mean[c]) / std[c]; both empty = none, else
  /// one value per channel each.
  TORCH_ARG(std::vector<double>, mean) = {};
  TORCH_ARG(std::vector<double>, std) = {};
  /// Class names ({} = indices); when given, one per logit.
  TORCH_ARG(std::vector<std::string>, class_names) = {};
  /// The split must reproduce forward's logits on the probe within
  /// tolerance * (1 + max |forward logits|).
  TORCH_ARG(double, tolerance) = 1e-4;
};

/// Opens a TorchScript classifier at its target layers (see the forms above). The
/// module is put in eval mode and none of its parameters requires a gradient.
///
/// requires: channels, probe_height, probe_width >= 1; mean and std both empty or both
///           of `channels` values, std > 0; tolerance >= 0.
/// ensures:  layers() lists form (a)'s children but the last, or "1".."n" for form (b);
///           default_layer() is the last child whose probe output is a feature map
///           [1,K,h,w] with h*w > 1 (else the last 4-D one, e.g. a pool), or "n";
///           forward(inputs, layers, track) gives the logits [B,classes] and the
///           requested activations [B,K,h,w]: with `track`, in the autograd graph of
///           the logits (form (a): the earliest requested activation is a leaf that
///           requires grad; form (b): the input is), else without autograd;
///           cam_weights(layer) is the Linear child's weight [classes,K] (a copy) when
///           the children after `layer` are exactly an average pool to 1x1 on the probe
///           and a Linear child, else undefined (always undefined for form (b));
///           logits(inputs) runs `forward` without autograd;
///           describe() is one line, e.g. "TorchScript m.pt (children conv1 ... fc)".
/// throws attend::IoError naming the file when it does not exist or is not TorchScript
///        (one line, no LibTorch backtrace);
///        c10::Error (message starting "<file>: ") for bad options, form (a) without
///        children or without a 4-D child output, a method the module does not have
///        (listing its methods), a method that does not return a tuple of a 2-D
///        logits tensor and 4-D activations (saying what it returned), forward or the
///        split failing on the probe, logits that are not 2-D, a class_names count
///        that is not the number of classes, and a split that "does not reproduce
///        forward (largest difference D on a probe input)".
///        Later, forward() and cam_weights() throw c10::Error for an unknown layer,
///        listing the valid ones.
std::unique_ptr<SaliencyModel> open_scripted_model(const ScriptedModelOptions& options);

}  // namespace attend::models
