// attend classify <checkpoint> <image>...: predictions for image files, and for a
// RAM the glimpse trace of each.
#include "../cli.h"
#include "../image_files.h"
#include "../validate.h"

#include <attend/io_error.h>
#include <attend/models/registry.h>
#include <attend/models/trainer.h>
#include <attend/vision/fit.h>
#include <attend/vision/image_io.h>
#include <attend/vision/trace.h>

#include <torch/torch.h>

#include <ATen/CPUGeneratorImpl.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <iomanip>
#include <sstream>

namespace attend::cli {
namespace {

namespace am = attend::models;
namespace fs = std::filesystem;

class ClassifyCommand : public Command {
 public:
  std::string name() const override { return "classify"; }
  std::string summary() const override { return "classify image files; for models that look through glimpses, draw where they looked"; }
  std::string usage() const override { return "attend classify <checkpoint> <image>... [--trace PNG|DIR] [options]"; }
  std::vector<std::string> examples() const override {
    return {"attend classify out/ram-c60/best.pt digit.png --trace digit-trace.png",
            "attend classify out/ram-c60/best.pt scenes/*.png --trace out/traces --samples 10",
            "attend classify out/cnn/best.pt photo.jpg --invert --json"};
  }
  std::vector<po::options_description> options() override {
    po::options_description d("Classification", 100);
    d.add_options()
        ("checkpoint", po::value<std::string>()->value_name("FILE"), "trained classifier (positional)")
        ("images", po::value<std::vector<std::string>>()->value_name("IMAGE"),
         "image files or folders of them (positional)")
        ("trace", po::value<std::string>()->value_name("PATH"),
         "models with glimpses (ram, soft): write the glimpse trace (a .png for one image, else a folder)")
        ("samples", po::value<std::int64_t>()->default_value(0)->value_name("M"),
         "stochastic models (ram): average M sampled trajectories drawn with --seed (0 = follow the policy mean)")
        ("invert", po::bool_switch(), "invert grey levels first (dark digits on light paper)")
        ("top", po::value<std::int64_t>()->default_value(3)->value_name("N"), "classes to list per image")
        ("json", po::bool_switch(), "print all class probabilities as JSON");
    return {d};
  }
  po::positional_options_description positionals() const override {
    po::positional_options_description p;
    p.add("checkpoint", 1).add("images", -1);
    return p;
  }

  int run(const po::variables_map& vm, const GlobalOptions& global, Streams& io) override {
    if (!vm.count("checkpoint")) throw UsageError("classify: missing the checkpoint");
    if (!vm.count("images")) throw UsageError("classify: no image files given");
    const auto images = image_files(vm["images"].as<std::vector<std::string>>());
    const auto samples = require_range<std::int64_t>(vm, "samples", 0, 1000);
    const auto top = require_range<std::int64_t>(vm, "top", 1, 1000);
    auto classifier = am::load_classifier(vm["checkpoint"].as<std::string>());
    const auto& capabilities = am::model_registry().at(classifier->kind()).capabilities;
    if (samples > 0 && !capabilities.stochastic_eval) {
      throw UsageError("--samples needs a model whose predictions are sampled; a '" + classifier->kind() +
                       "' model is deterministic");
    }
    std::string trace;
    bool trace_is_file = false;
    if (vm.count("trace")) {
      if (!capabilities.glimpse_trace) {
        std::string glimpsing;
        for (const auto& k : am::model_registry().kinds()) {
          if (k.capabilities.glimpse_trace) glimpsing += (glimpsing.empty() ? "" : ", ") + k.name;
        }
        throw UsageError("--trace needs a model that looks through glimpses (" + glimpsing + "); this one is a '" +
                         classifier->kind() + "'");
      }
      trace = vm["trace"].as<std::string>();
      trace_is_file = images.size() == 1 && fs::path(trace).extension() == ".png";
      if (!trace_is_file) {
        std::error_code ec;
        fs::create_directories(trace, ec);
        if (ec) throw IoError(trace, "cannot create trace folder: " + ec.message());
      }
    }
    torch::NoGradGuard no_grad;
    am::ModeGuard evaluating(classifier->module(), false);
    // Sampled trajectories (--samples) follow --seed.
    auto generator = at::make_generator<at::CPUGeneratorImpl>(global.seed);
    const auto fit = vision::FitImageOptions()
                         .channels(classifier->channels())
                         .height(classifier->height())
                         .width(classifier->width())
                         .invert(vm["invert"].as<bool>());
    nlohmann::json all = nlohmann::json::array();
    // An image that cannot be read is reported on its own line; the others are still
    // classified, and the exit code says that one failed.
    BadInputs bad(io.err);
    for (const auto& path : images) {
      vision::FittedImage fitted;
      try {
        fitted = vision::read_fitted_image(path, fit);
      } catch (const IoError& e) {
        bad.report(e);
        continue;
      }
      const auto batch = fitted.image.unsqueeze(0);
      const auto probs = classifier->predict(batch, samples, generator).exp()[0];
      const auto predicted = probs.argmax().item<std::int64_t>();
      nlohmann::json entry = {{"image", path}, {"fitted", fitted.note}, {"predicted", predicted},
                              {"probabilities", std::vector<double>(probs.data_ptr<float>(),
                                                                    probs.data_ptr<float>() + probs.numel())}};
      if (!trace.empty()) {
        const auto where = classifier->glimpse_trace(batch);
        const auto target = trace_is_file ? trace : (fs::path(trace) / (fs::path(path).stem().string() + "-trace.png")).string();
        std::ostringstream title;
        title << fs::path(path).filename().string() << ": " << predicted << " (p=" << std::fixed
              << std::setprecision(2) << probs[predicted].item<float>() << ")";
        vision::write_image(target, vision::draw_glimpse_trace(
                                        fitted.image, where->locations[0], where->retina, where->glimpses[0],
                                        title.str(), {}, where->sides.defined() ? where->sides[0] : torch::Tensor()));
        entry["trace"] = target;
      }
      all.push_back(entry);
      if (!vm["json"].as<bool>()) {
        const auto order = probs.argsort(0, /*descending=*/true);
        io.out << path << ": " << predicted << "  (" << fitted.note << ")\n   ";
        for (std::int64_t i = 0; i < std::min(top, probs.size(0)); ++i) {
          const auto c = order[i].item<std::int64_t>();
          io.out << "  " << c << ": " << std::fixed << std::setprecision(3) << probs[c].item<float>();
        }
        io.out << "\n";
        if (entry.contains("trace")) io.out << "    trace " << entry["trace"].get<std::string>() << "\n";
      }
    }
    if (vm["json"].as<bool>()) io.out << all.dump(2) << "\n";
    return bad.exit_code();
  }
};

}  // namespace

std::unique_ptr<Command> make_classify_command() { return std::make_unique<ClassifyCommand>(); }

}  // namespace attend::cli
