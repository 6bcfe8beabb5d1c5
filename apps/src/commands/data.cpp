// attend data translated|cluttered: generates scene data sets as IDX files plus a
// contact sheet.
#include "../cli.h"
#include "../validate.h"

#include <attend/datasets/data_spec.h>
#include <attend/datasets/digits.h>
#include <attend/datasets/idx.h>
#include <attend/datasets/scenes.h>
#include <attend/atomic_file.h>
#include <attend/io_error.h>
#include <attend/vision/contact_sheet.h>
#include <attend/vision/convert.h>
#include <attend/vision/image_io.h>

#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include <filesystem>

namespace attend::cli {
namespace {

namespace fs = std::filesystem;
namespace ds = attend::datasets;

class DataCommand : public Command {
 public:
  std::string name() const override { return "data"; }
  std::string summary() const override {
    return "generate translated or cluttered digit scenes as IDX files with a contact sheet";
  }
  std::string usage() const override { return "attend data <translated|cluttered> [options]"; }
  std::vector<std::string> examples() const override {
    return {"attend data translated --canvas 60 --out out/translated-60",
            "attend data cluttered --canvas 100 --fragments 8 --out out/cluttered-100",
            "attend --seed 7 data cluttered --source data/fashion-mnist --split test --count 500 --out out/fashion"};
  }
  std::vector<po::options_description> options() override {
    po::options_description what("Data set", 100);
    what.add_options()
        ("kind", po::value<std::string>()->value_name("KIND"), "translated or cluttered (positional)")
        ("source", po::value<std::string>()->default_value("data/mnist")->value_name("DIR"),
         "folder with MNIST-style IDX files (train-/t10k- images and labels, plain or .gz)")
        ("split", po::value<std::string>()->default_value("both")->value_name("S"), "train, test or both")
        ("count", po::value<std::int64_t>()->default_value(0)->value_name("N"),
         "scenes per split (0 = one per source digit); digit i mod N is used for scene i")
        ("canvas", po::value<std::int64_t>()->default_value(60)->value_name("S"), "canvas side in pixels")
        ("fragments", po::value<std::int64_t>()->value_name("K"),
         "clutter fragments per scene (cluttered: default 4; translated: 0)")
        ("fragment-size", po::value<std::int64_t>()->default_value(8)->value_name("F"), "fragment side in pixels");
    po::options_description output("Output", 100);
    output.add_options()
        ("out", po::value<std::string>()->value_name("DIR"), "output folder (default out/<kind>-<canvas>)")
        ("gzip", po::bool_switch(), "write .gz IDX files")
        ("sheet", po::value<std::int64_t>()->default_value(100)->value_name("N"),
         "scenes shown in contact-sheet.png (0 = no sheet)")
        ("png", po::value<std::int64_t>()->default_value(0)->value_name("N"),
         "also write the first N test scenes as png/<index>-label<L>.png");
    return {what, output};
  }
  po::positional_options_description positionals() const override {
    po::positional_options_description p;
    p.add("kind", 1);
    return p;
  }

  int run(const po::variables_map& vm, const GlobalOptions& global, Streams& io) override {
    if (!vm.count("kind")) throw UsageError("data: missing the kind of data set (translated or cluttered)");
    const auto kind = vm["kind"].as<std::string>();
    if (kind != "translated" && kind != "cluttered") {
      throw UsageError("data: unknown kind '" + kind + "', expected translated or cluttered");
    }
    const auto split = require_one_of(vm, "split", {"train", "test", "both"});
    const auto canvas = require_range<std::int64_t>(vm, "canvas", 1, 4096);
    const auto count = require_range<std::int64_t>(vm, "count", 0, 10'000'000);
    const auto fragment_size = require_range<std::int64_t>(vm, "fragment-size", 1, 4096);
    const auto sheet = require_range<std::int64_t>(vm, "sheet", 0, 10'000);
    const auto pngs = require_range<std::int64_t>(vm, "png", 0, 100'000);
    std::int64_t fragments = kind == "cluttered" ? 4 : 0;
    if (vm.count("fragments")) {
      fragments = require_range<std::int64_t>(vm, "fragments", 0, 1000);
      if (kind == "translated" && fragments != 0) {
        throw UsageError("data: translated scenes have no clutter; use 'cluttered' for --fragments " +
                         std::to_string(fragments));
      }
    }
    const auto source = vm["source"].as<std::string>();
    const auto out_dir = vm.count("out") ? vm["out"].as<std::string>()
                                         : "out/" + kind + "-" + std::to_string(canvas);
    const bool gzip = vm["gzip"].as<bool>();
    // Fail on an impossible count before loading anything: count * S * S bytes.
    if (count * canvas * canvas > (std::int64_t{1} << 34)) {
      throw UsageError("data: --count " + std::to_string(count) + " scenes of " + std::to_string(canvas) + "x" +
                       std::to_string(canvas) + " exceed the 16 GiB limit");
    }

    std::vector<std::string> splits;
    if (split != "test") splits.push_back("train");
    if (split != "train") splits.push_back("test");
    std::error_code ec;
    fs::create_directories(out_dir, ec);
    if (ec) throw IoError(out_dir, "cannot create output folder: " + ec.message());

    nlohmann::json manifest = {{"kind", kind},         {"source", source},     {"canvas", canvas},
                               {"fragments", fragments}, {"fragment_size", fragment_size},
                               {"seed", global.seed},   {"splits", nlohmann::json::object()}};
    std::string sheet_path;
    const auto spec = ds::DataSpec()
                          .kind(ds::DataKind::kScenes)
                          .scenes(ds::parse_scene_kind(kind))
                          .source(source)
                          .canvas(canvas)
                          .fragments(fragments)
                          .fragment_size(fragment_size)
                          .seed(global.seed);
    for (const auto& name : splits) {
      const auto generator = spec.scene_generator(name);
      const auto& digits = generator->digits();
      if (digits.labels.max().item<std::int64_t>() > 255) {
        throw IoError(source, "labels above 255 cannot be written as unsigned-byte IDX labels");
      }
      const auto n = count > 0 ? count : digits.size();
      if (n * canvas * canvas * (digits.images.dim() == 4 ? digits.images.size(3) : 1) > (std::int64_t{1} << 34)) {
        throw UsageError("data: " + std::to_string(n) + " scenes of " + std::to_string(canvas) + "x" +
                         std::to_string(canvas) + " exceed the 16 GiB limit; lower --count or --canvas");
      }
      const auto scenes = generator->generate_all(n);
      const std::string prefix = name == "train" ? "train" : "t10k";
      const std::string suffix = gzip ? ".gz" : "";
      const auto images_path = (fs::path(out_dir) / (prefix + "-images-idx3-ubyte" + suffix)).string();
      const auto labels_path = (fs::path(out_dir) / (prefix + "-labels-idx1-ubyte" + suffix)).string();
      ds::write_idx(images_path, scenes.images);
      ds::write_idx(labels_path, scenes.labels.to(torch::kUInt8));
      manifest["splits"][name] = {{"scenes", n}, {"images", images_path}, {"labels", labels_path}};
      io.out << "wrote " << n << " " << name << " scenes (" << canvas << "x" << canvas << ", " << fragments
             << " fragments) to " << images_path << "\n";

      if (pngs > 0 && (name == "test" || split == "train")) {
        const auto shown = std::min(pngs, n);
        for (std::int64_t i = 0; i < shown; ++i) {
          char file[64];
          std::snprintf(file, sizeof file, "%05lld-label%lld.png", static_cast<long long>(i),
                        static_cast<long long>(scenes.labels[i].item<std::int64_t>()));
          vision::write_image((fs::path(out_dir) / "png" / file).string(),
                              vision::tensor_to_mat(scenes.images[i]));
        }
        io.out << "wrote " << shown << " scenes as PNG to " << (fs::path(out_dir) / "png").string() << "\n";
      }
      // The sheet shows the test split when there is one, else the training split.
      if (sheet > 0 && (name == "test" || split == "train")) {
        const auto shown = std::min(sheet, n);
        const auto images = scenes.images.narrow(0, 0, shown);
        std::vector<std::string> captions;
        const auto labels = scenes.labels.narrow(0, 0, shown);
        for (std::int64_t i = 0; i < shown; ++i) captions.push_back(std::to_string(labels[i].item<std::int64_t>()));
        const auto opts = vision::ContactSheetOptions().columns(10).scale(canvas <= 64 ? 2 : 1);
        sheet_path = (fs::path(out_dir) / "contact-sheet.png").string();
        vision::write_image(sheet_path, vision::make_contact_sheet(images, captions, opts));
      }
    }
    const auto manifest_path = (fs::path(out_dir) / "manifest.json").string();
    write_file_atomically(manifest_path, manifest.dump(2) + "\n");
    if (!sheet_path.empty()) io.out << "contact sheet " << sheet_path << "\n";
    return kSuccess;
  }
};

}  // namespace

std::unique_ptr<Command> make_data_command() { return std::make_unique<DataCommand>(); }

}  // namespace attend::cli
