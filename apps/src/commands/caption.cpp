// attend train captioner, attend eval <captioner>, attend caption: training a
// Show-Attend-Tell captioner, measuring it, and captioning image files with the
// attention map of every word.
#include "../caption_data.h"
#include "../cli.h"
#include "../distributed_run.h"
#include "../image_files.h"
#include "../interrupt.h"
#include "../model_options.h"
#include "../progress.h"
#include "../report.h"
#include "../training_options.h"
#include "../validate.h"

#include <attend/atomic_file.h>
#include <attend/datasets/parallel.h>
#include <attend/io_error.h>
#include <attend/run_lock.h>
#include <attend/models/caption_train.h>
#include <attend/models/registry.h>
#include <attend/models/trainer.h>
#include <attend/vision/contact_sheet.h>
#include <attend/vision/fit.h>
#include <attend/vision/heatmap.h>
#include <attend/vision/image_io.h>

#include <torch/torch.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <optional>
#include <iomanip>
#include <sstream>

namespace attend::cli {
namespace {

namespace am = attend::models;
namespace ds = attend::datasets;
namespace fs = std::filesystem;

bool captions(const am::ModelKind& kind) { return kind.capabilities.caption; }

int thread_count(const GlobalOptions& global) {
  return global.threads > 0 ? global.threads : attend::datasets::available_cores();
}

std::string sentence(const std::vector<std::string>& words) {
  std::string out;
  for (const auto& w : words) out += (out.empty() ? "" : " ") + w;
  return out;
}

std::string percent(double v) {
  std::ostringstream s;
  s << std::fixed << std::setprecision(1) << 100.0 * v << "%";
  return s.str();
}

std::string fixed3(double v) {
  std::ostringstream s;
  s << std::fixed << std::setprecision(3) << v;
  return s.str();
}

void print_caption_evaluation(std::ostream& out, const am::CaptionEvaluation& e, const std::string& what) {
  out << what << ": " << e.count << " images, " << e.finished << " captions ended with <end>, "
      << std::fixed << std::setprecision(1) << e.mean_length << " words on average (" << e.seconds << " s)\n";
  out << "  BLEU-1 " << fixed3(e.scores.bleu[0]) << "  BLEU-2 " << fixed3(e.scores.bleu[1]) << "  BLEU-3 "
      << fixed3(e.scores.bleu[2]) << "  BLEU-4 " << fixed3(e.scores.bleu[3]) << "\n";
  out << "  ROUGE-L " << fixed3(e.scores.rouge_l) << "  CIDEr-D " << fixed3(e.scores.cider_d) << "  exact match "
      << percent(e.exact_match) << "\n";
  if (!e.has_objects) return;
  out << "  objects named right " << percent(e.object_accuracy) << "  relation/places right "
      << percent(e.relation_accuracy) << "\n";
  auto grounding = [&](const char* name, const am::GroundingScores& g) {
    if (g.words == 0) return;
    out << "  grounding (" << name << ", " << g.words << " object words): attention mass in the box "
        << percent(g.mass) << " (uniform " << percent(g.chance_mass) << "), pointing " << percent(g.pointing)
        << " (chance " << percent(g.chance_pointing) << ")\n";
  };
  grounding("generated captions", e.generated);
  grounding("teacher forcing", e.teacher_forced);
}

am::CaptionEvalOptions eval_options(const po::variables_map& vm) {
  return am::CaptionEvalOptions()
      .beam(require_range<std::int64_t>(vm, "beam", 1, 100))
      .length_penalty(require_range<double>(vm, "length-penalty", 0.0, 10.0));
}

po::options_description decoding_options(const char* title) {
  po::options_description d(title, 100);
  d.add_options()
      ("beam", po::value<std::int64_t>()->default_value(3)->value_name("K"), "beams per image (1 = greedy)")
      ("length-penalty", po::value<double>()->default_value(0.0)->value_name("A"),
       "rank finished captions by log-probability / length^A (0 = raw log-probability)");
  return d;
}

// ---------------------------------------------------------------------------------

class CaptionTrainCommand : public Command {
 public:
  // Reached through 'train captioner': its name says so in usage errors' help pointer.
  std::string name() const override { return "train captioner"; }
  std::string summary() const override { return "train a captioner (Show, Attend and Tell)"; }
  std::string usage() const override {
    return "attend train captioner (--data FILE [--images DIR] | --scenes objects [scene options]) --run-dir DIR "
           "[options]";
  }
  std::string description() const override {
    return "Teacher forcing on one reference caption per image (drawn afresh every epoch, or always the first\n"
           "with --references first); after every epoch the validation images are captioned greedily and\n"
           "scored; best.pt keeps the best --monitor score and --patience stops early on it. The vocabulary and\n"
           "every option are stored in the checkpoints, so a checkpoint alone is enough for 'attend caption'.\n"
           "At the end the best checkpoint is evaluated on the test split (eval.json).\n"
           "\n"
           "A backbone of your own (--encoder): export it from Python with\n"
           "    torch.jit.script(model).save('backbone.pt')     (or torch.jit.trace(model, example).save(...))\n"
           "and name with --encoder-output the method (add @torch.jit.export to it) or child module that returns\n"
           "the [B,C,H,W] feature map, e.g. 'features' for torchvision's VGG; the grid is its H x W. Images reach\n"
           "it as floats in [0,1] (RGB with --channels 3): normalise inside the module if it expects other\n"
           "statistics. It is copied into the run folder (encoder.pt), which the checkpoints refer to.\n";
  }
  std::vector<std::string> examples() const override {
    return {"attend train captioner --scenes objects --level 2 --epochs 15 --run-dir out/captioner-l2",
            "attend train captioner --scenes objects --level 2 --attention hard --run-dir out/captioner-hard",
            "attend train captioner --data out/objects-l2/dataset_objects.json --run-dir out/captioner-files",
            "attend train captioner --data flickr8k/dataset_flickr8k.json --images flickr8k/images --image-size 128 "
            "--channels 3 --filters 32,64,128,256 --min-count 5 --run-dir out/flickr8k"};
  }
  std::vector<po::options_description> options() override {
    auto model = model_options_for_parsing(captions);
    model.add_options()("model", po::value<std::string>()->value_name("KIND"), "model kind (positional)");
    std::vector<po::options_description> groups{model};
    for (auto& g : caption_data_options()) groups.push_back(g);
    groups.push_back(encoder_options());
    groups.push_back(training_options());
    groups.push_back(decoding_options("Test evaluation after training"));
    groups.push_back(distributed_options());
    return groups;
  }
  std::vector<po::options_description> help_options() override {
    auto groups = model_options_for_help(captions);
    groups.push_back(encoder_options());
    for (auto& g : caption_data_options()) groups.push_back(g);
    groups.push_back(training_options());
    groups.push_back(decoding_options("Test evaluation after training"));
    return groups;
  }
  po::positional_options_description positionals() const override {
    po::positional_options_description p;
    p.add("model", 1);
    return p;
  }

  int run(const po::variables_map& vm, const GlobalOptions& global, Streams& io) override {
    const auto& kind = am::model_registry().at(vm["model"].as<std::string>());
    if (!vm.count("run-dir")) throw UsageError("train: --run-dir is required");
    const auto run_dir = vm["run-dir"].as<std::string>();
    const auto training = parse_training_options(vm, global, run_dir);
    const auto captioning = am::CaptionTrainOptions()
                                .monitor(require_enum<am::CaptionMonitor>(vm, "monitor"))
                                .references(require_enum<am::CaptionReferences>(vm, "references"));
    const auto min_count = require_range<std::int64_t>(vm, "min-count", 1, 1'000'000);
    const auto evaluation = eval_options(vm);
    const auto user_options = given_model_options(vm, kind);
    if (!vm.count("encoder")) {
      for (const char* flag : {"encoder-output", "fine-tune-encoder"}) {
        if (!vm[flag].defaulted()) throw UsageError(std::string("--") + flag + " needs --encoder FILE");
      }
    } else if (user_options.contains("filters")) {
      throw UsageError("--filters shapes the built-in encoder; it does not apply with --encoder");
    }
    const auto description = caption_data_description(vm, global.seed);

    // The options first (a mistake there should not wait for the images to load).
    nlohmann::json options;
    try {
      am::complete_options(kind, user_options, am::InputShape{1, 64, 64});
    } catch (const c10::Error& e) {
      throw UsageError(e.what_without_backtrace());
    }
    const auto max_length = user_options.contains("max_length") ? user_options["max_length"].get<std::int64_t>()
                                                                 : kind.option("max_length")->fallback.get<std::int64_t>();
    auto data = open_caption_data(description, true, true, true, thread_count(global), io.err, max_length - 2);
    try {
      options = am::complete_options(kind, user_options,
                                     am::InputShape{data.train->channels(), data.train->height(), data.train->width()});
      const auto vocabulary = ds::Vocabulary::build(data.vocabulary_text, min_count);
      options["vocabulary"] = vocabulary.words();
    } catch (const c10::Error& e) {
      throw UsageError(e.what_without_backtrace());
    }
    // With RANK and WORLD_SIZE set: join the other workers (rank 0 alone writes).
    DistributedRun distributed(vm);
    // One run per folder, from its first file to its last (creates the folder).
    std::unique_ptr<RunFolderLock> lock;
    if (distributed.writer()) lock = std::make_unique<RunFolderLock>(run_dir);
    if (vm.count("encoder")) {
      // The run folder keeps its own copy, so its checkpoints stay usable.
      const auto copy = fs::absolute(fs::path(run_dir) / "encoder.pt").lexically_normal();
      std::error_code ec;
      const auto given = vm["encoder"].as<std::string>();
      if (!fs::exists(given, ec)) throw IoError(given, "TorchScript encoder file does not exist");
      if (distributed.writer() && !fs::equivalent(given, copy, ec)) {
        auto read = [](const std::string& path) {
          std::ifstream in(path, std::ios::binary);
          std::string bytes{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
          if (!in.good() && !in.eof()) throw IoError(path, "cannot read the file");
          return bytes;
        };
        const auto bytes = read(given);
        if (fs::exists(copy, ec)) {
          // A frozen backbone's weights live in that file, not in the checkpoints:
          // resuming with another one would silently change the model.
          if (read(copy.string()) != bytes && am::will_resume(run_dir, training.resume())) {
            throw UsageError("--encoder " + given + " differs from the " + copy.string() +
                             " this run was trained with; give --no-resume or another --run-dir");
          }
        }
        write_file_atomically(copy.string(), bytes);
      }
      options["encoder"] = {{"file", copy.string()},
                            {"output", vm["encoder-output"].as<std::string>()},
                            {"fine_tune", vm["fine-tune-encoder"].as<bool>()}};
      distributed.barrier();  // the other ranks build their model from rank 0's copy
    }
    if (data.over_long > 0 && distributed.writer()) {
      io.err << "attend: warning: " << data.over_long << " training caption" << (data.over_long == 1 ? " has" : "s have")
             << " more than " << max_length - 2 << " words and will be cut (raise --max-length)\n";
    }
    std::unique_ptr<am::CaptionModel> model;
    try {
      am::ScopedSeed seeded(global.seed);
      model = std::make_unique<am::CaptionModel>(options);
    } catch (const c10::Error& e) {
      throw UsageError(e.what_without_backtrace());
    }
    if (model->grid().first < 1 || model->grid().second < 1) {
      throw UsageError("the images are too small for this encoder");
    }
    if (distributed.writer()) {
      io.err << "attend: " << describe_caption_data(description) << "; vocabulary of " << model->vocabulary().size()
             << " words; " << model->grid().first << "x" << model->grid().second << " attention grid\n";
    }

    auto observers = std::make_shared<am::ObserverList>();
    if (distributed.writer()) {
      observers->add(std::make_shared<ProgressObserver>(io.err, io.err_is_tty));
      observers->add(std::make_shared<MetricsJsonl>((fs::path(run_dir) / "metrics.jsonl").string(),
                                                    require_positive<std::int64_t>(vm, "log-every")));
    } else if (auto log = distributed.rank_log(run_dir)) {
      observers->add(log);
    }
    am::FitHooks hooks;
    distributed.join(model->module(), hooks);
    am::FitSummary summary;
    {
      InterruptScope interrupt;
      summary = am::train_captioner(*model, *data.train, data.val.get(), training, captioning, description,
                                    observers.get(), &interrupt.flag(), hooks);
    }
    distributed.report(io.err);
    if (!distributed.writer()) {
      if (summary.status == am::FitStatus::kInterrupted) throw Interrupted("stopped with rank 0");
      return kSuccess;
    }
    if (summary.status == am::FitStatus::kInterrupted) {
      throw Interrupted("training saved at step " + std::to_string(summary.global_step) + " in " +
                        summary.last_checkpoint + "; run the same command again to resume");
    }
    const auto checkpoint = !summary.best_checkpoint.empty() && fs::exists(summary.best_checkpoint)
                                ? summary.best_checkpoint
                                : summary.last_checkpoint;
    auto best = am::load_captioner(checkpoint);
    const auto e = am::evaluate_captioner(*best, *data.test, evaluation);
    auto report = am::to_json(e, true);
    report["checkpoint"] = checkpoint;
    report["beam"] = evaluation.beam();
    write_json_file((fs::path(run_dir) / "eval.json").string(), report);
    print_caption_evaluation(io.out, e, "test (" + checkpoint + ", beam " + std::to_string(evaluation.beam()) + ")");
    io.out << "run folder " << run_dir << " (last.pt, " << (summary.best_checkpoint.empty() ? "" : "best.pt, ")
           << "metrics.jsonl, eval.json)\n";
    return kSuccess;
  }

 private:
  static po::options_description encoder_options() {
    po::options_description e("Encoder (a TorchScript backbone instead of the built-in CNN)", 100);
    e.add_options()
        ("encoder", po::value<std::string>()->value_name("FILE"), "TorchScript module whose output is the feature grid")
        ("encoder-output", po::value<std::string>()->default_value("forward")->value_name("NAME"),
         "its method or child module that returns [B,C,H,W]")
        ("fine-tune-encoder", po::bool_switch(), "train the backbone's weights too (default: frozen)");
    return e;
  }
  static po::options_description training_options() {
    auto t = common_training_options(
        "stop after N epochs without a better validation --monitor score (0 = never)", 64, 1e-3);
    t.add_options()
        ("monitor", po::value<std::string>()->default_value("cider")->value_name("M"),
         ("validation score (greedy captions) for best.pt and --patience: " + am::enum_choices<am::CaptionMonitor>())
             .c_str())
        ("references", po::value<std::string>()->default_value("random")->value_name("R"),
         "which caption of an image to train on: random (one drawn afresh every epoch) or first (always "
         "the first: one word order when the first caption follows a convention, as object scenes' do; "
         "trained on both orders of a two-object caption, the model hedges its first object word and "
         "looks at the other object half the time, docs/results.md)")
        ("min-count", po::value<std::int64_t>()->default_value(1)->value_name("N"),
         "words seen fewer than N times in the training captions become <unk>");
    return t;
  }
};

// ---------------------------------------------------------------------------------

class CaptionEvalCommand : public Command {
 public:
  std::string name() const override { return "eval"; }
  std::string summary() const override { return "evaluate a trained captioner"; }
  std::string usage() const override {
    return "attend eval <captioner checkpoint> [--data FILE | --scenes objects ...] [options]";
  }
  std::string description() const override {
    return "Captions every test image and prints BLEU-1..4, ROUGE-L and CIDEr-D (as the COCO caption evaluation\n"
           "computes them) and exact match; on data with objects, also whether the captions name the right\n"
           "objects and relation, and grounding: for each object word, the attention mass inside that object's\n"
           "box and whether the most attended cell lies in it, on generated captions and under teacher forcing,\n"
           "each beside its uniform-attention chance level. Without data options the test split of the data the\n"
           "model was trained on is used.\n";
  }
  std::vector<std::string> examples() const override {
    return {"attend eval out/captioner-l2/best.pt", "attend eval out/captioner-l2/best.pt --beam 1 --json",
            "attend eval out/captioner-l2/best.pt --captions out/test-captions.json"};
  }
  std::vector<po::options_description> options() override {
    po::options_description d("Evaluation", 100);
    d.add_options()
        ("checkpoint", po::value<std::string>()->value_name("FILE"), "checkpoint to evaluate (positional)")
        ("split", po::value<std::string>()->default_value("test")->value_name("S"), "val or test")
        ("json", po::bool_switch(), "print the report as JSON")
        ("captions", po::value<std::string>()->value_name("FILE"),
         "also write the generated captions as [{\"image\", \"caption\"}] JSON (the input of 'attend score')")
        ("intervene", po::bool_switch(),
         "soft attention on scenes of two or more objects: replace the attention of the first object word by the "
         "map that named the second object, and report how often the model then names the second object");
    std::vector<po::options_description> groups{d, decoding_options("Decoding")};
    for (auto& g : caption_data_options()) groups.push_back(g);
    return groups;
  }
  po::positional_options_description positionals() const override {
    po::positional_options_description p;
    p.add("checkpoint", 1);
    return p;
  }
  int run(const po::variables_map& vm, const GlobalOptions& global, Streams& io) override {
    if (!vm.count("checkpoint")) throw UsageError("eval: missing the checkpoint to evaluate");
    const auto path = vm["checkpoint"].as<std::string>();
    const auto split = require_one_of(vm, "split", {"val", "test"});
    const auto evaluation = eval_options(vm);
    am::CheckpointInfo info;
    auto model = am::load_captioner(path, &info);
    nlohmann::json description;
    if (vm.count("data") || vm.count("scenes")) {
      description = caption_data_description(vm, global.seed);
    } else if (info.data.contains("kind")) {
      description = info.data;
      if (vm.count("test-count") && description["kind"] == "objects") {
        description["counts"]["test"] = require_range<std::int64_t>(vm, "test-count", 1, 1'000'000);
      }
    } else {
      throw UsageError("eval: the checkpoint does not say what it was trained on; give --data or --scenes");
    }
    auto data = open_caption_data(description, false, split == "val", split == "test", thread_count(global), io.err);
    const auto* source = split == "val" ? data.val.get() : data.test.get();
    if (source == nullptr) throw UsageError("eval: the data have no '" + split + "' split");
    // The model's input size: file images are fitted to it.
    if (source->channels() != model->channels() || source->height() != model->height() ||
        source->width() != model->width()) {
      if (description["kind"] != "captions") {
        throw UsageError("eval: these scenes are " + std::to_string(source->width()) + "x" +
                         std::to_string(source->height()) + " but the model takes " + std::to_string(model->width()) +
                         "x" + std::to_string(model->height()));
      }
      description["channels"] = model->channels();
      description["height"] = model->height();
      description["width"] = model->width();
      data = open_caption_data(description, false, split == "val", split == "test", thread_count(global), io.err);
      source = split == "val" ? data.val.get() : data.test.get();
    }
    const auto e = am::evaluate_captioner(*model, *source, evaluation);
    auto report = am::to_json(e, false);
    report["checkpoint"] = path;
    report["split"] = split;
    report["beam"] = evaluation.beam();
    if (vm.count("captions")) {
      auto list = nlohmann::json::array();
      for (size_t i = 0; i < e.captions.size(); ++i) list.push_back({{"image", e.names[i]}, {"caption", sentence(e.captions[i])}});
      write_json_file(vm["captions"].as<std::string>(), list);
    }
    std::optional<am::InterventionResult> intervention;
    if (vm["intervene"].as<bool>()) {
      if (model->net->options.attention() != am::CaptionAttention::kSoft) {
        throw UsageError(std::string("--intervene needs a captioner with soft attention, this one has '") +
                         am::enum_name(model->net->options.attention()) + "'");
      }
      intervention = am::attention_intervention(*model, *source);
      report["intervention"] = {{"images", intervention->images},
                                {"says_second", intervention->says_second},
                                {"says_first", intervention->says_first},
                                {"uniform_says_second", intervention->uniform_says_second},
                                {"uniform_says_first", intervention->uniform_says_first}};
    }
    if (vm["json"].as<bool>()) {
      io.out << report.dump(2) << "\n";
    } else {
      print_caption_evaluation(io.out, e, split + " (" + path + ", beam " + std::to_string(evaluation.beam()) + ")");
      if (intervention) {
        io.out << "  intervention (" << intervention->images << " captions naming two objects): with the second "
               << "object's map at the first object word the model names the second object "
               << percent(intervention->says_second) << ", the first " << percent(intervention->says_first)
               << " (uniform map: " << percent(intervention->uniform_says_second) << " / "
               << percent(intervention->uniform_says_first) << ")\n";
      }
    }
    return kSuccess;
  }
};

// ---------------------------------------------------------------------------------

class CaptionCommand : public Command {
 public:
  std::string name() const override { return "caption"; }
  std::string summary() const override { return "caption image files and show where the model looked for each word"; }
  std::string usage() const override { return "attend caption <checkpoint> <image|folder>... [--beam K] [--json] [--attention DIR]"; }
  std::string description() const override {
    return "Prints one caption per image. Images are converted to the model's channels and resized (stretched)\n"
           "to its input size; the first such change is said once. --attention writes, per image, a grid of\n"
           "panels: the image with the attention map that produced each word blended over it, the word below\n"
           "(and beta, the context gate, for the soft model).\n";
  }
  std::vector<std::string> examples() const override {
    return {"attend caption out/captioner-l2/best.pt out/objects-l2/images/006000.png",
            "attend caption out/captioner-l2/best.pt scenes/ --beam 5 --attention out/attention",
            "attend caption out/captioner-l2/best.pt a.png b.png --json"};
  }
  std::vector<po::options_description> options() override {
    po::options_description d("Captioning", 100);
    d.add_options()
        ("checkpoint", po::value<std::string>()->value_name("FILE"), "trained captioner (positional)")
        ("images", po::value<std::vector<std::string>>()->value_name("IMAGE"),
         "image files or folders of them (positional)")
        ("json", po::bool_switch(), "print the captions as JSON, with each word's attention grid")
        ("attention", po::value<std::string>()->value_name("DIR"),
         "write <DIR>/<image name>.attention.png: the attention map of every word over the image")
        ("max-length", po::value<std::int64_t>()->value_name("N"), "at most N words (default: the model's limit)")
        ("batch", po::value<std::int64_t>()->default_value(32)->value_name("B"), "images decoded at once");
    return {d, decoding_options("Decoding")};
  }
  po::positional_options_description positionals() const override {
    po::positional_options_description p;
    p.add("checkpoint", 1).add("images", -1);
    return p;
  }
  int run(const po::variables_map& vm, const GlobalOptions& /*global*/, Streams& io) override {
    if (!vm.count("checkpoint")) throw UsageError("caption: missing the checkpoint");
    if (!vm.count("images")) throw UsageError("caption: no image files given");
    const auto beam = require_range<std::int64_t>(vm, "beam", 1, 100);
    const auto penalty = require_range<double>(vm, "length-penalty", 0.0, 10.0);
    const auto batch = require_range<std::int64_t>(vm, "batch", 1, 4096);
    const auto files = image_files(vm["images"].as<std::vector<std::string>>());
    auto model = am::load_captioner(vm["checkpoint"].as<std::string>());
    const auto max_words = vm.count("max-length") ? require_range<std::int64_t>(vm, "max-length", 1, model->max_length() - 2)
                                                  : model->max_length() - 2;
    std::string attention_dir;
    if (vm.count("attention")) {
      if (model->net->options.attention() == am::CaptionAttention::kNone) {
        throw UsageError("--attention: this captioner has no attention (it was trained with --attention none)");
      }
      attention_dir = vm["attention"].as<std::string>();
      std::error_code ec;
      fs::create_directories(attention_dir, ec);
      if (ec) throw IoError(attention_dir, "cannot create folder: " + ec.message());
    }
    const auto fit = vision::FitImageOptions()
                         .channels(model->channels())
                         .height(model->height())
                         .width(model->width())
                         .mode(vision::FitMode::kStretch);
    const auto [rows, columns] = model->grid();
    auto json = nlohmann::json::array();
    bool noted = false;
    // Batches of the images that can be read; each one that cannot is reported on its
    // own line and the others are still captioned (the exit code says one failed).
    BadInputs bad(io.err);
    for (size_t next = 0; next < files.size();) {
      std::vector<torch::Tensor> images;
      std::vector<std::string> paths;
      for (; next < files.size() && static_cast<std::int64_t>(images.size()) < batch; ++next) {
        vision::FittedImage fitted;
        try {
          fitted = vision::read_fitted_image(files[next], fit);
        } catch (const IoError& e) {
          bad.report(e);
          continue;
        }
        if (!noted && fitted.note != "used as is" && fitted.note != "read as grey") {
          io.err << "attend: note: " << files[next] << ": " << fitted.note << " (the model takes "
                 << model->width() << "x" << model->height() << (model->channels() == 1 ? " grey" : " colour")
                 << "); other images are fitted the same way\n";
          noted = true;
        }
        images.push_back(fitted.image);
        paths.push_back(files[next]);
      }
      if (images.empty()) continue;
      const auto stacked = torch::stack(images);
      const auto decoded =
          model->caption(stacked, am::BeamSearchOptions().beam(beam).length_penalty(penalty).max_length(max_words + 1));
      for (size_t k = 0; k < decoded.size(); ++k) {
        const auto& path = paths[k];
        const auto& d = decoded[k];
        const auto words = model->words(d);
        const auto text = sentence(words);
        if (vm["json"].as<bool>()) {
          nlohmann::json entry = {{"image", path}, {"caption", text}, {"log_prob", d.log_prob},
                                  {"finished", d.finished}, {"grid", {rows, columns}}};
          auto per_word = nlohmann::json::array();
          for (size_t w = 0; w < words.size(); ++w) {
            nlohmann::json word = {{"word", words[w]}};
            if (d.alphas.defined()) {
              const auto a = d.alphas[static_cast<std::int64_t>(w)].contiguous();
              word["attention"] = std::vector<float>(a.data_ptr<float>(), a.data_ptr<float>() + a.numel());
            }
            if (d.betas.defined()) word["beta"] = d.betas[static_cast<std::int64_t>(w)].item<double>();
            per_word.push_back(word);
          }
          entry["words"] = per_word;
          json.push_back(entry);
        } else {
          io.out << path << ": " << text << (d.finished ? "" : " ...") << "\n";
        }
        if (!attention_dir.empty() && d.alphas.defined() && !words.empty()) {
          std::vector<torch::Tensor> panels;
          std::vector<std::string> labels;
          for (size_t w = 0; w < words.size(); ++w) {
            const auto map = d.alphas[static_cast<std::int64_t>(w)].view({rows, columns});
            panels.push_back(vision::overlay_heatmap_rgb(stacked[static_cast<std::int64_t>(k)], map));
            std::string label = words[w];
            if (d.betas.defined() && model->net->options.gate()) {
              std::ostringstream b;
              b << std::fixed << std::setprecision(2) << d.betas[static_cast<std::int64_t>(w)].item<double>();
              label += " (" + b.str() + ")";
            }
            labels.push_back(label);
          }
          const auto side = std::max(model->height(), model->width());
          const auto sheet = vision::make_contact_sheet(
              torch::stack(panels), labels,
              vision::ContactSheetOptions()
                  .columns(std::min<std::int64_t>(6, static_cast<std::int64_t>(panels.size())))
                  .scale(side <= 64 ? 3 : side <= 128 ? 2 : 1));
          const auto out_path = (fs::path(attention_dir) / (fs::path(path).stem().string() + ".attention.png")).string();
          vision::write_image(out_path, sheet);
        }
      }
    }
    if (vm["json"].as<bool>()) io.out << json.dump(2) << "\n";
    if (!attention_dir.empty() && !vm["json"].as<bool>()) {
      io.out << "attention maps in " << attention_dir << "\n";
    }
    return bad.exit_code();
  }
};

}  // namespace

std::unique_ptr<Command> make_caption_train_command() { return std::make_unique<CaptionTrainCommand>(); }
std::unique_ptr<Command> make_caption_eval_command() { return std::make_unique<CaptionEvalCommand>(); }
std::unique_ptr<Command> make_caption_command() { return std::make_unique<CaptionCommand>(); }

}  // namespace attend::cli
