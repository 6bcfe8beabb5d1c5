// attend segment <checkpoint> <image|folder>...: pseudo-masks of a CAM or SEAM model
// over images of any size (letterboxed to the model's input and back), written as
// label PNGs, overlays and optionally the CAMs as .npy.
#include "../cam_options.h"
#include "../cli.h"
#include "../image_files.h"
#include "../validate.h"

#include <attend/io_error.h>
#include <attend/models/registry.h>
#include <attend/models/segmentation.h>
#include <attend/vision/convert.h>
#include <attend/vision/image_io.h>
#include <attend/vision/npy.h>
#include <attend/vision/segmentation_render.h>

#include <torch/torch.h>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include <filesystem>
#include <iomanip>
#include <sstream>

namespace attend::cli {
namespace {

namespace am = attend::models;
namespace fs = std::filesystem;
namespace vi = attend::vision;

class SegmentCommand : public Command {
 public:
  std::string name() const override { return "segment"; }
  std::string summary() const override {
    return "pseudo-masks of a cam or seam model over images: label PNGs, overlays, CAMs";
  }
  std::string usage() const override {
    return "attend segment <checkpoint> <image|folder>... --out DIR [--alpha A] [--labels predicted|gt] [options]";
  }
  std::string description() const override {
    return "Each image (any size; BGR or grey as OpenCV reads it, with the model's channel count) is\n"
           "letterboxed to the model's input, its CAMs summed over --scales and their flips (the revised\n"
           "CAMs of a seam model whose PCM is trained), masked by the image's classes, resized back to\n"
           "the image, normalised per class, and labelled argmax over [alpha, CAMs]: 0 background, c+1\n"
           "class c. Writes NAME_labels.png (those labels), NAME_overlay.png (classes blended, outlined\n"
           "and named) and with --npy NAME_cams.npy [K,H,W] float32.\n"
           "--labels predicted takes the classes the model predicts (logit > 0); --labels gt the classes\n"
           "in the image's mask, masks/NAME.png beside images/NAME.png (as attend data objects writes).\n"
           "`attend eval CHECKPOINT --masks` finds the alpha that scores best on validation scenes.\n"
           "A seam model trained with pixel supervision (--supervision pixel) labels each pixel by its own\n"
           "argmax over background and the image's classes (probabilities summed over the same passes; no\n"
           "alpha), and --npy then holds each class's mean probability.\n";
  }
  std::vector<std::string> examples() const override {
    return {"attend segment out/seam/best.pt out/objects/images --out out/segment --alpha 0.3",
            "attend segment out/seam/best.pt out/objects/images/000001.png --out out/seg --labels gt --npy"};
  }
  std::vector<po::options_description> options() override {
    po::options_description d("Segmentation", 100);
    d.add_options()
        ("checkpoint", po::value<std::string>()->value_name("FILE"), "cam or seam checkpoint (positional)")
        ("inputs", po::value<std::vector<std::string>>()->value_name("PATH"), "images or folders (positional)")
        ("out", po::value<std::string>()->value_name("DIR"), "folder for label PNGs, overlays and .npy")
        ("alpha", po::value<double>()->default_value(0.25)->value_name("A"), "background score in [0,1]")
        ("labels", po::value<std::string>()->default_value("predicted")->value_name("L"),
         "the classes whose CAMs count: predicted (by the model) or gt (from the scene's mask file)")
        ("scales", po::value<std::string>()->default_value("0.5,1,1.5,2")->value_name("LIST"),
         "inference scales whose CAMs are summed")
        ("no-flip", po::bool_switch(), "without the horizontally flipped passes")
        ("cams", po::value<std::string>()->value_name("S"), kCamsHelp)
        ("image-weight", po::value<double>()->default_value(0.5)->value_name("W"),
         "weight of the image where a class is drawn")
        ("npy", po::bool_switch(), "also write the normalised CAMs [K,H,W] as float32 .npy (pixel-supervised: "
                                   "the class probabilities)");
    return {d};
  }
  po::positional_options_description positionals() const override {
    po::positional_options_description p;
    p.add("checkpoint", 1).add("inputs", -1);
    return p;
  }

  int run(const po::variables_map& vm, const GlobalOptions& /*global*/, Streams& io) override {
    if (!vm.count("checkpoint")) throw UsageError("segment: missing the checkpoint (a cam or seam model)");
    if (!vm.count("out")) throw UsageError("segment: --out DIR is required");
    if (!vm.count("inputs")) throw UsageError("segment: no images given");
    const double alpha = require_finite(vm, "alpha");
    if (alpha < 0 || alpha > 1) throw UsageError("--alpha must be in [0,1], got " + format_number(alpha));
    const bool gt = require_one_of(vm, "labels", {"predicted", "gt"}) == "gt";
    const auto scales = parse_real_list(vm["scales"].as<std::string>(), "scales");
    for (double s : scales) {
      if (s <= 0 || s > 4) throw UsageError("--scales must each be in (0,4], got " + format_number(s));
    }
    vi::LabelOverlayOptions overlay;
    overlay.image_weight = require_range<double>(vm, "image-weight", 0.0, 1.0);
    const auto path = vm["checkpoint"].as<std::string>();
    am::CheckpointInfo info;
    auto model = am::load_classifier(path, &info);
    if (model->kind() != "cam" && model->kind() != "seam") {
      throw UsageError("segment: a '" + model->kind() + "' model has no class activation maps (cam or seam)");
    }
    if (!model->multi_label()) {
      throw UsageError("segment: a single-label model cannot say which classes an image has (train it on object "
                       "scenes)");
    }
    const auto names = class_names(*model, info);
    const auto files = image_files(vm["inputs"].as<std::vector<std::string>>());
    const auto out = vm["out"].as<std::string>();
    std::error_code ec;
    fs::create_directories(out, ec);
    if (ec) throw IoError(out, "cannot create the output folder: " + ec.message());

    const bool by_argmax = am::segments_by_argmax(*model);
    if (by_argmax && !vm["alpha"].defaulted()) {
      throw UsageError("--alpha: this model was trained with pixel supervision and segments by its own argmax over "
                       "background and classes; it has no background score");
    }
    const auto stage = cam_stage_option(vm, *model);
    const auto pass = by_argmax ? am::probability_pass(*model) : am::cam_pass(*model, stage);
    const am::CamInference inference = am::CamInference().scales(scales).flip(!vm["no-flip"].as<bool>());
    const cv::Size size(static_cast<int>(model->width()), static_cast<int>(model->height()));
    const auto K = model->classes();
    // An image (or its mask) that cannot be used is reported on its own line and the
    // others are still segmented; the exit code says that one failed.
    BadInputs bad(io.err);
    std::size_t written = 0;
    for (const auto& file : files) {
      cv::Mat image;
      torch::Tensor labels;
      try {
        image = read_input(file, model->channels());
        if (gt) labels = mask_classes(file, image.size(), K);
      } catch (const IoError& e) {
        bad.report(e);
        continue;
      }
      const auto box = vi::letterbox_geometry(image.size(), size);
      const auto input = vi::mat_to_tensor(vi::letterbox(image, box)).unsqueeze(0);  // [1,C,H,W] RGB in [0,1]
      if (!gt) {
        torch::NoGradGuard no_grad;
        model->module().eval();
        labels = (model->logits(input) > 0).to(torch::kFloat32);
      }
      // CAMs (or, segmenting by argmax, probabilities over background and classes) at
      // the model's size, back at the image's, normalised there.
      const auto every = by_argmax ? torch::ones({1, K + 1}) : labels;
      const auto sums = am::aggregate_cams(pass, input, every, am::CamInference(inference).normalise(false))[0];
      // The inverse of the letterbox, as vision::unletterbox does for cv::Mat: the inner
      // rectangle, resized (bilinear, half-pixel centres) to the image.
      const auto inner = sums.narrow(1, box.inner.y, box.inner.height).narrow(2, box.inner.x, box.inner.width);
      const auto back = torch::nn::functional::interpolate(
          inner.unsqueeze(0), torch::nn::functional::InterpolateFuncOptions()
                                  .size(std::vector<std::int64_t>{image.rows, image.cols})
                                  .mode(torch::kBilinear)
                                  .align_corners(false))[0];
      const auto passes = static_cast<double>(scales.size() * (inference.flip() ? 2 : 1));
      // [K,H,W]: normalised CAMs, or the mean probability of each class.
      const auto cams = by_argmax ? back.narrow(0, 1, K) / passes : am::normalise_cams(back);
      const auto masks =
          by_argmax ? am::argmax_masks(back.unsqueeze(0), labels) : am::pseudo_masks(cams.unsqueeze(0), alpha);
      const auto label_image = masks[0].to(torch::kUInt8).contiguous();
      cv::Mat labels_mat(static_cast<int>(label_image.size(0)), static_cast<int>(label_image.size(1)), CV_8UC1,
                         label_image.data_ptr<std::uint8_t>());
      const auto stem = (fs::path(out) / fs::path(file).stem()).string();
      vi::write_image(stem + "_labels.png", labels_mat.clone());
      vi::write_image(stem + "_overlay.png", vi::overlay_labels(image, labels_mat, names, overlay));
      if (vm["npy"].as<bool>()) vi::write_npy(stem + "_cams.npy", cams);
      std::vector<std::string> present;
      for (std::int64_t k = 0; k < K; ++k) {
        if (labels[0][k].item<float>() > 0) present.push_back(names[static_cast<size_t>(k)]);
      }
      const auto counts = torch::bincount(label_image.flatten().to(torch::kInt64), {}, K + 1);
      io.out << file << ": " << (present.empty() ? std::string("no class") : join(present)) << "; ";
      const double total = static_cast<double>(label_image.numel());
      io.out << std::fixed << std::setprecision(1);
      for (std::int64_t c = 0; c <= K; ++c) {
        const auto n = counts[c].item<std::int64_t>();
        if (n == 0) continue;
        io.out << (c == 0 ? std::string("background") : names[static_cast<size_t>(c - 1)]) << " "
               << 100.0 * static_cast<double>(n) / total << "% ";
      }
      io.out << "\n";
      ++written;
    }
    if (written > 0) {
      io.err << "wrote " << written << " label image" << (written == 1 ? "" : "s") << " and overlay"
             << (written == 1 ? "" : "s") << " to " << out << "\n";
    }
    return bad.exit_code();
  }

 private:
  // An input image as stored, 8-bit, with the model's channel count (BGRA loses alpha).
  static cv::Mat read_input(const std::string& file, std::int64_t channels) {
    cv::Mat image = vi::read_image_as_stored(file);
    if (image.depth() != CV_8U) throw IoError(file, "only 8-bit images are supported");
    if (image.channels() == 4) cv::cvtColor(image, image, cv::COLOR_BGRA2BGR);
    if (image.channels() != channels) {
      throw IoError(file, "has " + std::to_string(image.channels()) + " channel" + (image.channels() == 1 ? "" : "s") +
                              "; the model takes " + std::to_string(channels) + (channels == 3 ? " (colour)" : " (grey)"));
    }
    return image;
  }

  static std::string join(const std::vector<std::string>& words) {
    std::string s;
    for (const auto& w : words) s += (s.empty() ? "" : ", ") + w;
    return s;
  }

  static std::vector<std::string> class_names(am::Classifier& model, const am::CheckpointInfo& info) {
    if (info.data.value("kind", "") == "objects") {
      try {
        return datasets::object_words(datasets::DataSpec::from_json(info.data).objects().items());
      } catch (const c10::Error&) {
        // Fall back to indices.
      }
    }
    std::vector<std::string> out;
    for (std::int64_t k = 0; k < model.classes(); ++k) out.push_back(std::to_string(k));
    return out;
  }

  // The classes present in the scene's mask file: masks/NAME.png beside images/NAME.png.
  static torch::Tensor mask_classes(const std::string& file, cv::Size size, std::int64_t classes) {
    const auto p = fs::path(file);
    const auto mask_path = (p.parent_path().parent_path() / "masks" / p.filename()).replace_extension(".png");
    if (!fs::exists(mask_path)) {
      throw IoError(file, "--labels gt needs its mask " + mask_path.string() +
                              " (masks/NAME.png beside images/NAME.png, as attend data objects writes)");
    }
    const auto mask = vi::read_image_as_stored(mask_path.string());
    if (mask.type() != CV_8UC1) throw IoError(mask_path.string(), "is not an 8-bit label image");
    if (mask.size() != size) {
      throw IoError(mask_path.string(), "is " + std::to_string(mask.cols) + "x" + std::to_string(mask.rows) +
                                            ", its image " + std::to_string(size.width) + "x" +
                                            std::to_string(size.height));
    }
    auto labels = torch::zeros({1, classes});
    for (int l = 1; l < 255; ++l) {
      if (cv::countNonZero(mask == l) == 0) continue;
      if (l > classes) {
        throw IoError(mask_path.string(), "holds label " + std::to_string(l) + ", outside the model's classes 1.." +
                                              std::to_string(classes) + " (and 255, ignore)");
      }
      labels[0][l - 1] = 1.0f;
    }
    return labels;
  }
};

}  // namespace

std::unique_ptr<Command> make_segment_command() { return std::make_unique<SegmentCommand>(); }

}  // namespace attend::cli
