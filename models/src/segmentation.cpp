#include "attend/models/segmentation.h"

#include <attend/models/cam.h>

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <map>

namespace attend::models {

namespace F = torch::nn::functional;

namespace {

torch::Tensor resize_corners(const torch::Tensor& x, std::int64_t height, std::int64_t width) {
  if (x.size(2) == height && x.size(3) == width) return x;
  return F::interpolate(x, F::InterpolateFuncOptions()
                               .size(std::vector<std::int64_t>{height, width})
                               .mode(torch::kBilinear)
                               .align_corners(true));
}

std::vector<double> default_alphas() {
  std::vector<double> out;
  for (int i = 0; i <= 60; ++i) out.push_back(i / 100.0);
  return out;
}

/// The transform a model is trained to be equivariant to (CAM: SEAM's default).
std::pair<SeamTransform, double> model_transform(Classifier& model) {
  if (auto* s = dynamic_cast<SeamClassifier*>(&model)) return {s->net->options.transform(), s->net->options.scale()};
  return {SeamTransform::kRescale, 0.5};
}

}  // namespace

CamStage resolve_cam_stage(Classifier& model, CamStage stage) {
  auto* s = dynamic_cast<SeamClassifier*>(&model);
  const bool trained_pcm = s != nullptr && s->net->options.pcm();
  if (stage == CamStage::kModel) return trained_pcm ? CamStage::kRevised : CamStage::kRaw;
  TORCH_CHECK(stage != CamStage::kRevised || trained_pcm, "segmentation: ",
              s == nullptr ? "a '" + model.kind() + "' model has no PCM, so no revised CAMs"
                           : std::string("this seam model's PCM was not trained (--ecr off --min-pool off), so its "
                                         "revised CAMs mean nothing"));
  return stage;
}

const char* cam_stage_name(CamStage resolved) { return resolved == CamStage::kRevised ? "revised" : "raw"; }

CamPass cam_pass(Classifier& model, CamStage stage) {
  const bool revise = resolve_cam_stage(model, stage) == CamStage::kRevised;
  // Evaluation mode once, here (batch norm's running statistics), not per pass.
  model.module().eval();
  if (auto* s = dynamic_cast<SeamClassifier*>(&model)) {
    return [s, revise](const torch::Tensor& images) {
      torch::NoGradGuard no_grad;
      const auto out = s->net->forward(images, revise);
      return (revise ? out.cam_rv : out.cam).narrow(1, 1, s->classes());
    };
  }
  if (auto* c = dynamic_cast<CamClassifier*>(&model)) {
    return [c](const torch::Tensor& images) {
      torch::NoGradGuard no_grad;
      auto& net = *c->net;
      TORCH_CHECK(images.dim() == 4 && images.size(1) == net.options.channels(), "cam: expected images [B,",
                  net.options.channels(), ",H,W], got ", images.sizes());
      auto x = images;
      for (std::size_t i = 0; i < net.blocks(); ++i) x = backbone_stage(net.convs, i, net.options.pools(), x);
      const auto w = net.fc->weight;  // [K,F]
      const auto maps = torch::conv2d(x, w.view({w.size(0), w.size(1), 1, 1}));
      return resize_corners(maps, images.size(2), images.size(3));
    };
  }
  TORCH_CHECK(false, "segmentation: a '", model.kind(), "' model has no class activation maps (cam or seam)");
}

bool segments_by_argmax(Classifier& model) {
  auto* s = dynamic_cast<SeamClassifier*>(&model);
  return s != nullptr && s->net->options.pixel_supervision();
}

CamPass probability_pass(Classifier& model) {
  TORCH_CHECK(segments_by_argmax(model), "segmentation: a '", model.kind(),
              "' model without pixel supervision has no per-pixel class scores");
  model.module().eval();
  auto* s = dynamic_cast<SeamClassifier*>(&model);
  return [s](const torch::Tensor& images) {
    torch::NoGradGuard no_grad;
    return torch::softmax(s->net->forward(images, false).cam, 1);
  };
}

torch::Tensor argmax_masks(const torch::Tensor& sums, const torch::Tensor& labels) {
  TORCH_CHECK(sums.dim() == 4 && labels.dim() == 2 && labels.size(0) == sums.size(0) &&
                  labels.size(1) + 1 == sums.size(1),
              "segmentation: expected scores [B,K+1,H,W] and labels [B,K], got ", sums.sizes(), " and ",
              labels.sizes());
  const auto present = torch::cat({torch::ones({labels.size(0), 1}, labels.options().dtype(torch::kBool)),
                                   labels > 0},
                                  1)
                           .view({labels.size(0), labels.size(1) + 1, 1, 1});
  // Probabilities are >= 0: an absent class's -1 never wins.
  return torch::where(present, sums, torch::full({}, -1.0, sums.options())).argmax(1);
}

std::pair<double, double> equivariance_sums(const CamPass& pass, const torch::Tensor& images,
                                            const torch::Tensor& labels, SeamTransform transform, double scale) {
  const auto y = labels.to(torch::kFloat32).view({labels.size(0), labels.size(1), 1, 1});
  const auto c = seam::max_norm(pass(images)) * y;
  const auto of_transformed = seam::max_norm(pass(seam::transform(images, transform, scale))) * y;
  const auto transformed = seam::transform(c, transform, scale);
  return {(of_transformed - transformed).abs().sum().item<double>(), c.abs().sum().item<double>()};
}

torch::Tensor dilate_labels(const torch::Tensor& labels, std::int64_t pixels) {
  TORCH_CHECK(labels.dim() == 2, "segmentation: expected a label image [H,W], got ", labels.sizes());
  TORCH_CHECK(pixels >= 0 && pixels <= 64, "segmentation: dilation must be 0..64 pixels, got ", pixels);
  if (pixels == 0) return labels;
  const auto l = labels.to(torch::kInt64);
  const auto objects = (l > 0) & (l != 255);
  auto out = torch::where(objects, l, torch::zeros_like(l));
  auto open = ~objects;
  const auto values = std::get<0>(torch::_unique(l.masked_select(objects), /*sorted=*/true));
  for (std::int64_t i = 0; i < values.numel(); ++i) {
    const auto v = values[i].item<std::int64_t>();
    const auto grown =
        torch::max_pool2d((l == v).to(torch::kFloat32).unsqueeze(0).unsqueeze(0), 2 * pixels + 1, 1, pixels)[0][0] > 0;
    const auto take = grown & open;
    out = torch::where(take, torch::full_like(out, v), out);
    open = open & ~take;
  }
  // The band: background pixels with an object above, below, left or right.
  const auto obj = (out > 0).to(torch::kFloat32);
  const auto p = F::pad(obj.unsqueeze(0).unsqueeze(0), F::PadFuncOptions({1, 1, 1, 1}))[0][0];
  const auto H = obj.size(0), W = obj.size(1);
  const auto near = p.narrow(0, 0, H).narrow(1, 1, W) + p.narrow(0, 2, H).narrow(1, 1, W) +
                    p.narrow(0, 1, H).narrow(1, 0, W) + p.narrow(0, 1, H).narrow(1, 2, W);
  out = torch::where((out == 0) & (near > 0), torch::full_like(out, 255), out);
  return out.to(labels.scalar_type());
}

SegmentationReport evaluate_segmentation(Classifier& model, const datasets::ObjectLabelSource* val,
                                         const datasets::ObjectLabelSource& test,
                                         const SegmentationEvalOptions& options) {
  TORCH_CHECK(options.batch() >= 1, "segmentation: batch must be >= 1");
  SegmentationReport report;
  report.by_argmax = segments_by_argmax(model);
  report.stage = resolve_cam_stage(model, options.stage());
  const auto pass = cam_pass(model, report.stage);
  const auto K = model.classes();
  const auto probabilities = report.by_argmax ? probability_pass(model) : CamPass();
  if (options.alpha()) {
    TORCH_CHECK(*options.alpha() >= 0 && *options.alpha() <= 1, "segmentation: alpha must be in [0,1], got ",
                *options.alpha());
  }
  // A model segmenting by its own argmax has no alpha: no curve.
  if (!report.by_argmax) {
    report.alphas = options.alphas().empty() ? default_alphas() : options.alphas();
    // A given alpha is scored with the curve.
    if (options.alpha() &&
        std::find(report.alphas.begin(), report.alphas.end(), *options.alpha()) == report.alphas.end()) {
      report.alphas.push_back(*options.alpha());
    }
    for (double a : report.alphas) TORCH_CHECK(a >= 0 && a <= 1, "segmentation: alpha must be in [0,1], got ", a);
  }
  const auto [transform, scale] = model_transform(model);
  const bool was_training = model.module().is_training();
  model.module().eval();
  torch::NoGradGuard no_grad;

  // Scores for every alpha over one source; the equivariance sums and the scores by
  // the number of objects in a scene on request (the test scenes).
  const size_t curves = std::max<size_t>(1, report.alphas.size());
  std::map<std::int64_t, std::vector<SegmentationScores>> by_objects;
  auto sweep = [&](const datasets::ObjectLabelSource& source, bool test_scenes) {
    std::vector<SegmentationScores> scores;  // one each: copies would share the counts
    for (size_t a = 0; a < curves; ++a) scores.emplace_back(K + 1);
    double diff = 0, mass = 0;
    for (std::int64_t begin = 0; begin < source.size(); begin += options.batch()) {
      std::vector<std::int64_t> indices;
      for (std::int64_t i = begin; i < std::min(source.size(), begin + options.batch()); ++i) indices.push_back(i);
      const auto batch = source.get(indices, 0);
      TORCH_CHECK(batch.labels.dim() == 2 && batch.labels.size(1) == K, "segmentation: the scenes have ",
                  batch.labels.size(-1), " classes, the model ", K);
      const auto labels = options.predicted_labels() ? (model.logits(batch.images) > 0).to(torch::kFloat32)
                                                     : batch.labels.to(torch::kFloat32);
      std::vector<torch::Tensor> truths;
      std::map<std::int64_t, std::vector<std::int64_t>> rows_by_objects;  // rows of this batch
      for (size_t b = 0; b < indices.size(); ++b) {
        const auto scene = source.scene(indices[b]);
        truths.push_back(dilate_labels(scene.labels, options.dilate()));
        rows_by_objects[static_cast<std::int64_t>(scene.objects.size())].push_back(static_cast<std::int64_t>(b));
      }
      const auto truth = torch::stack(truths);
      // Adds the masks of one alpha to its curve and, for the test scenes, to the
      // curves of each group of scenes by their number of objects.
      auto add = [&](size_t a, const torch::Tensor& masks) {
        scores[a].add(masks, truth);
        if (!test_scenes) return;
        for (const auto& [objects, rows] : rows_by_objects) {
          auto& group = by_objects[objects];
          while (group.size() < curves) group.emplace_back(K + 1);
          const auto picked = torch::tensor(rows, torch::kInt64);
          group[a].add(masks.index_select(0, picked), truth.index_select(0, picked));
        }
      };
      if (report.by_argmax) {
        const auto every = torch::ones({batch.images.size(0), K + 1});
        const auto sums = aggregate_cams(probabilities, batch.images, every,
                                         CamInference(options.inference()).normalise(false));
        add(0, argmax_masks(sums, labels));
      } else {
        const auto cams = aggregate_cams(pass, batch.images, labels, options.inference());
        for (size_t a = 0; a < report.alphas.size(); ++a) add(a, pseudo_masks(cams, report.alphas[a]));
      }
      if (test_scenes) {
        for (const auto& [objects, rows] : rows_by_objects) {
          report.scenes_by_objects[objects] += static_cast<std::int64_t>(rows.size());
        }
        const auto [d, m] = equivariance_sums(pass, batch.images, labels, transform, scale);
        diff += d;
        mass += m;
      }
    }
    return std::make_tuple(std::move(scores), diff, mass);
  };

  if (!report.by_argmax && val != nullptr && val->size() > 0) {
    auto [scores, d, m] = sweep(*val, false);
    for (const auto& s : scores) report.val_miou.push_back(s.mean_iou());
    report.val_count = val->size();
  }
  TORCH_CHECK(report.by_argmax || options.alpha() || !report.val_miou.empty(),
              "segmentation: choosing alpha needs validation scenes (or give alpha)");
  auto [scores, diff, mass] = sweep(test, true);
  report.test_count = test.size();
  report.equivariance_error = mass > 0 ? diff / mass : std::nan("");
  // By argmax: the one score, no curve, no alpha.
  size_t chosen = 0;
  report.alpha = std::nan("");
  if (!report.by_argmax) {
    for (const auto& s : scores) report.test_miou.push_back(s.mean_iou());
    if (options.alpha()) {
      chosen = static_cast<size_t>(std::find(report.alphas.begin(), report.alphas.end(), *options.alpha()) -
                                   report.alphas.begin());
    } else {
      for (size_t a = 1; a < report.val_miou.size(); ++a) {
        if (report.val_miou[a] > report.val_miou[chosen]) chosen = a;
      }
    }
    report.alpha = report.alphas[chosen];
  }
  report.test = scores[chosen];
  for (const auto& [objects, group] : by_objects) report.test_by_objects.emplace(objects, group[chosen]);
  model.module().train(was_training);
  return report;
}

}  // namespace attend::models
