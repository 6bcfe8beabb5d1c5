// attend data translated|cluttered|objects: generates scene data sets (IDX files, or
// for object scenes a caption data set with masks) plus a contact sheet.
#include "../cli.h"
#include "../data_options.h"
#include "../interrupt.h"
#include "../scene_options.h"
#include "../validate.h"

#include <attend/datasets/data_spec.h>
#include <attend/datasets/digits.h>
#include <attend/datasets/idx.h>
#include <attend/datasets/object_scenes.h>
#include <attend/datasets/parallel.h>
#include <attend/datasets/scenes.h>
#include <attend/atomic_file.h>
#include <attend/io_error.h>
#include <attend/vision/contact_sheet.h>
#include <attend/vision/convert.h>
#include <attend/vision/image_io.h>

#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <iomanip>
#include <sstream>

namespace attend::cli {
namespace {

/// Scenes generated between two looks at the interrupt flag.
constexpr std::int64_t kSceneChunk = 2048;

namespace fs = std::filesystem;
namespace ds = attend::datasets;

class DataCommand : public Command {
 public:
  std::string name() const override { return "data"; }
  std::string summary() const override {
    return "generate translated or cluttered digit scenes (IDX) or captioned object scenes with masks";
  }
  std::string usage() const override { return "attend data <translated|cluttered|objects> [options]"; }
  std::string description() const override {
    return "translated, cluttered: one digit per scene (Mnih et al. 2014), written as IDX files.\n"
           "objects: several digits or Fashion-MNIST items per scene with captions, boxes and masks, written as\n"
           "  PNG images, VOC-style label PNGs, instance PNGs and dataset_objects.json in the layout of\n"
           "  Karpathy's dataset_coco.json (see docs/data.md). Items of train/val come from the source's train\n"
           "  file (item i is val when i % 10 == 9), test items from its t10k file.\n";
  }
  std::vector<std::string> examples() const override {
    return {"attend data translated --canvas 60 --out out/translated-60",
            "attend data cluttered --canvas 100 --fragments 8 --out out/cluttered-100",
            "attend --seed 7 data cluttered --source data/fashion-mnist --split test --count 500 --out out/fashion",
            "attend data objects --level 2 --count 20000 --out out/objects-l2",
            "attend data objects --objects 1-4 --items both --colour --background clutter --canvas 128 "
            "--out out/objects-128",
            "attend data objects --level 2 --hold-out '3 left of 7,1 above 2' --out out/objects-heldout"};
  }
  std::vector<po::options_description> options() override {
    po::options_description what("Data set", 100);
    what.add_options()
        ("kind", po::value<std::string>()->value_name("KIND"), "translated, cluttered or objects (positional)")
        ("source", po::value<std::string>()->default_value("data/mnist")->value_name("DIR"),
         "folder with MNIST-style IDX files (train-/t10k- images and labels, plain or .gz)")
        ("split", po::value<std::string>()->default_value("both")->value_name("S"), "train, test or both")
        ("count", po::value<std::int64_t>()->default_value(0)->value_name("N"),
         "scenes per split (0 = one per source digit); digit i mod N is used for scene i. objects: training "
         "scenes (0 = 5000)")
        ("canvas", po::value<std::int64_t>()->value_name("S"), "canvas side in pixels (default 60; objects 64)")
        ("fragments", po::value<std::int64_t>()->value_name("K"),
         "clutter fragments per scene (cluttered: default 4; translated: 0; objects with clutter: 8)")
        ("fragment-size", po::value<std::int64_t>()->value_name("F"),
         "fragment side in pixels (default 8; objects: 10, in pixels of the 28x28 item)")
        ("classes", po::value<std::int64_t>()->default_value(10)->value_name("K"),
         "translated, cluttered: the source's labels must lie in 0..K-1");
    auto objects = object_scene_options();
    objects.add_options()
        ("val-count", po::value<std::int64_t>()->value_name("N"), "validation scenes (default count/10)")
        ("test-count", po::value<std::int64_t>()->value_name("N"), "test scenes (default count/10)");
    po::options_description output("Output", 100);
    output.add_options()
        ("out", po::value<std::string>()->value_name("DIR"), "output folder (default out/<kind>-<canvas>)")
        ("gzip", po::bool_switch(), "write .gz IDX files")
        ("sheet", po::value<std::int64_t>()->default_value(100)->value_name("N"),
         "scenes shown in contact-sheet.png (0 = no sheet)")
        ("png", po::value<std::int64_t>()->default_value(0)->value_name("N"),
         "also write the first N test scenes as png/<index>-label<L>.png");
    return {what, objects, output};
  }
  po::positional_options_description positionals() const override {
    po::positional_options_description p;
    p.add("kind", 1);
    return p;
  }

  int run(const po::variables_map& vm, const GlobalOptions& global, Streams& io) override {
    if (!vm.count("kind")) throw UsageError("data: missing the kind of data set (translated, cluttered or objects)");
    const auto kind = vm["kind"].as<std::string>();
    if (kind == "objects") return run_objects(vm, global, io);
    if (kind != "translated" && kind != "cluttered") {
      throw UsageError("data: unknown kind '" + kind + "', expected translated, cluttered or objects");
    }
    for (const char* flag : {"level", "objects", "size", "jitter", "max-overlap", "repeat-classes", "colour",
                             "background", "background-level", "mask-threshold", "relation-margin", "hold-out",
                             "val-count", "test-count", "items", "fashion"}) {
      if (vm.count(flag) && !vm[flag].defaulted()) {
        throw UsageError(std::string("--") + flag + " applies to 'attend data objects', not to " + kind + " scenes");
      }
    }
    const auto split = require_one_of(vm, "split", {"train", "test", "both"});
    const auto canvas = vm.count("canvas") ? require_range<std::int64_t>(vm, "canvas", 1, 4096) : 60;
    const auto count = require_range<std::int64_t>(vm, "count", 0, 10'000'000);
    const auto fragment_size = vm.count("fragment-size") ? require_range<std::int64_t>(vm, "fragment-size", 1, 4096) : 8;
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
    check_scene_geometry(source, canvas, fragment_size);
    const auto classes = require_range<std::int64_t>(vm, "classes", 1, 256);
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
    // Ctrl-C (or SIGTERM) stops between chunks of scenes and after a file is complete:
    // no temporary file is left and no manifest.json is written.
    InterruptScope interrupt;
    auto stop_if_asked = [&] {
      if (interrupt.flag().load()) {
        throw Interrupted("data: stopped before the data set was complete; " + out_dir +
                          " has no manifest.json (run the command again)");
      }
    };
    for (const auto& name : splits) {
      const auto generator = spec.scene_generator(name);
      const auto& digits = generator->digits();
      ds::check_labels(digits, classes);
      const auto n = count > 0 ? count : digits.size();
      if (n * canvas * canvas * (digits.images.dim() == 4 ? digits.images.size(3) : 1) > (std::int64_t{1} << 34)) {
        throw UsageError("data: " + std::to_string(n) + " scenes of " + std::to_string(canvas) + "x" +
                         std::to_string(canvas) + " exceed the 16 GiB limit; lower --count or --canvas");
      }
      // In chunks, to answer Ctrl-C; a scene is a function of its index, so the
      // chunks give the same bytes as one call.
      ds::SceneBatch scenes;
      for (std::int64_t first = 0; first < n; first += kSceneChunk) {
        stop_if_asked();
        std::vector<std::int64_t> indices(static_cast<size_t>(std::min(kSceneChunk, n - first)));
        for (size_t i = 0; i < indices.size(); ++i) indices[i] = first + static_cast<std::int64_t>(i);
        auto chunk = generator->generate(indices, 0);
        if (first == 0) {
          auto sizes = chunk.images.sizes().vec();
          sizes[0] = n;
          scenes.images = torch::empty(sizes, chunk.images.options());
          scenes.labels = torch::empty({n}, chunk.labels.options());
        }
        scenes.images.narrow(0, first, chunk.images.size(0)).copy_(chunk.images);
        scenes.labels.narrow(0, first, chunk.labels.size(0)).copy_(chunk.labels);
      }
      stop_if_asked();
      const std::string prefix = name == "train" ? "train" : "t10k";
      const std::string suffix = gzip ? ".gz" : "";
      const auto images_path = (fs::path(out_dir) / (prefix + "-images-idx3-ubyte" + suffix)).string();
      const auto labels_path = (fs::path(out_dir) / (prefix + "-labels-idx1-ubyte" + suffix)).string();
      ds::write_idx(images_path, scenes.images);
      ds::write_idx(labels_path, scenes.labels.to(torch::kUInt8));
      stop_if_asked();
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
    stop_if_asked();
    const auto manifest_path = (fs::path(out_dir) / "manifest.json").string();
    write_file_atomically(manifest_path, manifest.dump(2) + "\n");
    if (!sheet_path.empty()) io.out << "contact sheet " << sheet_path << "\n";
    return kSuccess;
  }

 private:
  int run_objects(const po::variables_map& vm, const GlobalOptions& global, Streams& io) {
    for (const char* flag : {"split", "gzip", "png", "classes"}) {
      if (!vm[flag].defaulted()) throw UsageError(std::string("--") + flag + " does not apply to object scenes");
    }
    const auto options = parse_object_scene_options(vm);
    ds::ObjectSceneCounts counts;
    counts.train = require_range<std::int64_t>(vm, "count", 0, 10'000'000);
    if (counts.train == 0) counts.train = 5000;
    counts.val = vm.count("val-count") ? require_range<std::int64_t>(vm, "val-count", 0, 10'000'000)
                                       : std::max<std::int64_t>(1, counts.train / 10);
    counts.test = vm.count("test-count") ? require_range<std::int64_t>(vm, "test-count", 0, 10'000'000)
                                         : std::max<std::int64_t>(1, counts.train / 10);
    const auto canvas = options.canvas();
    const auto total = counts.train + counts.val + counts.test;
    if (total * canvas * canvas * (options.colour() ? 3 : 1) > (std::int64_t{1} << 36)) {
      throw UsageError("data: " + std::to_string(total) + " scenes of " + std::to_string(canvas) + "x" +
                       std::to_string(canvas) + " exceed the 64 GiB limit; lower --count or --canvas");
    }
    const auto sheet = require_range<std::int64_t>(vm, "sheet", 0, 10'000);
    const auto out_dir = vm.count("out") ? vm["out"].as<std::string>() : "out/objects-" + std::to_string(canvas);

    ds::ObjectSources sources;
    sources.digits_dir = vm["source"].as<std::string>();
    sources.fashion_dir = vm["fashion"].as<std::string>();
    const auto start = std::chrono::steady_clock::now();
    const ds::ObjectSceneGenerator generator(options, global.seed, sources);
    const int threads = global.threads > 0 ? global.threads : attend::datasets::available_cores();
    // The options' layouts must be possible: the first scene of each split says so
    // before anything is written (a usage error); a later failure is a failure.
    try {
      if (counts.train > 0) generator.generate(ds::ObjectSplit::kTrain, 0);
      if (counts.val > 0) generator.generate(ds::ObjectSplit::kVal, 0);
      if (counts.test > 0) generator.generate(ds::ObjectSplit::kTest, 0);
    } catch (const c10::Error& e) {
      throw UsageError(std::string(e.what_without_backtrace()));
    }
    nlohmann::json written;
    try {
      // Ctrl-C stops the writers; the folder then has no dataset_objects.json.
      InterruptScope interrupt;
      written = ds::write_object_scenes(generator, counts, out_dir, threads, &interrupt.flag());
    } catch (const ds::DataSetInterrupted& e) {
      throw Interrupted(e.what());
    }
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    io.out << "wrote " << counts.train << " train, " << counts.val << " val and " << counts.test << " test scenes ("
           << canvas << "x" << canvas << ", " << ds::to_string(options.items()) << ", "
           << (options.colour() ? "colour" : "grey") << ", " << ds::to_string(options.background()) << ") to "
           << out_dir << " in " << std::fixed << std::setprecision(1) << seconds << " s\n";

    if (sheet > 0) {
      // The first test scenes (else whatever comes first), with their boxes and first caption.
      const auto& images = written["images"];
      size_t first = 0;
      while (first < images.size() && images[first]["split"] != "test") ++first;
      if (first == images.size()) first = 0;
      const auto shown = std::min<std::int64_t>(sheet, static_cast<std::int64_t>(images.size() - first));
      std::vector<torch::Tensor> tiles;
      std::vector<std::string> captions;
      std::vector<std::vector<vision::SheetBox>> boxes;
      for (std::int64_t i = 0; i < shown; ++i) {
        const auto& entry = images[first + static_cast<size_t>(i)];
        const auto split = ds::parse_object_split(entry["split"].get<std::string>());
        // The scene is regenerated (a pure function of seed, split and index) rather than re-read.
        std::int64_t index = entry["imgid"].get<std::int64_t>();
        if (split == ds::ObjectSplit::kVal) index -= counts.train;
        if (split == ds::ObjectSplit::kTest) index -= counts.train + counts.val;
        const auto scene = generator.generate(split, index);
        tiles.push_back(options.colour() ? scene.image.permute({2, 0, 1}) : scene.image.unsqueeze(0));
        captions.push_back(entry["sentences"][0]["raw"].get<std::string>());
        std::vector<vision::SheetBox> list;
        for (const auto& ob : scene.objects) list.push_back({ob.bbox[0], ob.bbox[1], ob.bbox[2], ob.bbox[3], ob.word});
        boxes.push_back(list);
      }
      const auto columns = canvas <= 64 ? 8 : 6;
      const auto opts = vision::ContactSheetOptions().columns(columns).scale(canvas <= 64 ? 3 : canvas <= 128 ? 2 : 1);
      const auto sheet_path = (fs::path(out_dir) / "contact-sheet.png").string();
      vision::write_image(sheet_path, vision::make_contact_sheet(torch::stack(tiles), captions, opts, boxes));
      io.out << "contact sheet " << sheet_path << "\n";
    }
    nlohmann::json manifest = {{"kind", "objects"},
                               {"seed", global.seed},
                               {"options", options.to_json()},
                               {"sources", {{"digits", sources.digits_dir}, {"fashion", sources.fashion_dir}}},
                               {"counts", {{"train", counts.train}, {"val", counts.val}, {"test", counts.test}}},
                               {"dataset", (fs::path(out_dir) / "dataset_objects.json").string()},
                               {"seconds", seconds}};
    write_file_atomically((fs::path(out_dir) / "manifest.json").string(), manifest.dump(2) + "\n");
    return kSuccess;
  }
};

}  // namespace

std::unique_ptr<Command> make_data_command() { return std::make_unique<DataCommand>(); }

}  // namespace attend::cli
