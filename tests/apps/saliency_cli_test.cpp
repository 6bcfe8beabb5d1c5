// attend train cam and attend saliency as a user runs them: a multi-label CAM
// classifier on object scenes, overlays and .npy maps, a video round trip, metrics,
// TorchScript models, and the bad inputs with their exit codes.
#include "cli.h"
#include "run_cli.h"

#include <attend/datasets/idx.h>
#include <attend/vision/npy.h>
#include <attend/vision/video.h>

#include <test_support.h>

#include <torch/torch.h>

#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>

#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>

#include <gtest/gtest.h>

namespace ds = attend::datasets;
namespace fs = std::filesystem;
using attend::testing::contains;
using attend::testing::TempDir;
using attend::testing::run;

namespace {

std::string data(const std::string& name) { return std::string(ATTEND_TEST_DATA) + "/" + name; }

/// 28x28 items, a bright block per item, 60 training and 30 test items, labels i % 10.
void write_block_items(const std::string& dir) {
  fs::create_directories(dir);
  for (const auto& [prefix, n] : std::vector<std::pair<std::string, int>>{{"train", 60}, {"t10k", 30}}) {
    auto gen = at::make_generator<at::CPUGeneratorImpl>(prefix == "train" ? 7 : 8);
    auto images = torch::zeros({n, 28, 28}, torch::kUInt8);
    images.narrow(1, 6, 16).narrow(2, 8, 12).copy_(torch::randint(100, 256, {n, 16, 12}, gen, torch::kUInt8));
    ds::write_idx(dir + "/" + prefix + "-images-idx3-ubyte", images);
    ds::write_idx(dir + "/" + prefix + "-labels-idx1-ubyte", (torch::arange(n) % 10).to(torch::kUInt8));
  }
}

/// One multi-label CAM classifier for the suite, trained once on object scenes.
class SaliencyCli : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    write_block_items(dir_->file("items"));
    const auto r = run({"train", "cam", "--scenes", "objects", "--source", dir_->file("items"), "--canvas", "32",
                        "--objects", "1-2", "--count", "16", "--val-count", "4", "--test-count", "4", "--epochs", "1",
                        "--batch", "8", "--cam-filters", "4,6", "--cam-pools", "1", "--run-dir",
                        dir_->file("cam")});
    ASSERT_EQ(r.code, 0) << r.err;
    train_out_ = new std::string(r.out);
    checkpoint_ = new std::string(dir_->file("cam/last.pt"));
    // A test image of the scenes' size.
    cv::Mat image(32, 32, CV_8UC3, cv::Scalar(0, 0, 0));
    image(cv::Rect(6, 8, 12, 14)).setTo(cv::Scalar(200, 220, 240));
    cv::imwrite(dir_->file("scene.png"), image);
  }
  static void TearDownTestSuite() {
    delete dir_;
    delete train_out_;
    delete checkpoint_;
  }
  static TempDir* dir_;
  static std::string* train_out_;
  static std::string* checkpoint_;
};
TempDir* SaliencyCli::dir_ = nullptr;
std::string* SaliencyCli::train_out_ = nullptr;
std::string* SaliencyCli::checkpoint_ = nullptr;

}  // namespace

TEST_F(SaliencyCli, TrainCamOnObjectScenesIsMultiLabel) {
  EXPECT_TRUE(contains(*train_out_, "mean F1 over classes")) << *train_out_;
  std::ifstream in(dir_->file("cam/eval.json"));
  const auto eval = nlohmann::json::parse(in);
  EXPECT_EQ(eval["results"][0]["multi_label"], true);
  EXPECT_EQ(eval["results"][0]["classes"].size(), 10u);
  // Precision and recall follow from the counts.
  for (const auto& c : eval["results"][0]["classes"]) {
    const double tp = c["tp"], fp = c["fp"];
    if (tp + fp > 0) {
      EXPECT_DOUBLE_EQ(c["precision"].get<double>(), tp / (tp + fp));
    }
  }
  // A single-label kind, or single labels, are refused on object scenes.
  const auto cnn = run({"train", "cnn", "--scenes", "objects", "--source", dir_->file("items"), "--run-dir",
                        dir_->file("cnn")});
  EXPECT_EQ(cnn.code, 2);
  EXPECT_TRUE(contains(cnn.err, "several classes per image")) << cnn.err;
  const auto single = run({"train", "cam", "--scenes", "objects", "--labels", "single", "--source",
                           dir_->file("items"), "--run-dir", dir_->file("single")});
  EXPECT_EQ(single.code, 2);
  EXPECT_TRUE(contains(single.err, "--labels single does not fit object scenes")) << single.err;
}

TEST_F(SaliencyCli, OverlaysAndNpyMapsForEachMethodAndClass) {
  const auto out = dir_->file("overlays");
  const auto r = run({"saliency", *checkpoint_, dir_->file("scene.png"), "--out", out, "--method", "gradcam,cam",
                      "--top-k", "2", "--npy", "--colour-bar"});
  ASSERT_EQ(r.code, 0) << r.err;
  int pngs = 0, maps = 0, raws = 0;
  for (const auto& e : fs::directory_iterator(out)) {
    const auto name = e.path().filename().string();
    if (e.path().extension() == ".png" && name != "scene_grid.png") ++pngs;
    if (e.path().extension() == ".npy") {
      const auto t = attend::vision::read_npy(e.path().string());
      if (name.find("_raw") != std::string::npos) {
        ++raws;
        EXPECT_EQ(t.sizes(), (std::vector<std::int64_t>{16, 16})) << name;  // the map's grid (stride 2)
      } else {
        ++maps;
        EXPECT_EQ(t.sizes(), (std::vector<std::int64_t>{32, 32})) << name;
        EXPECT_GE(t.min().item<float>(), 0.0f);
        EXPECT_LE(t.max().item<float>(), 1.0f);
      }
    }
  }
  EXPECT_EQ(pngs, 4);  // 2 methods x 2 classes
  EXPECT_EQ(maps, 4);
  EXPECT_EQ(raws, 4);
  EXPECT_TRUE(fs::exists(out + "/scene_grid.png"));
  // CAM and Grad-CAM agree for a GAP-linear head (up to the scaling's epsilon).
  for (const auto& e : fs::directory_iterator(out)) {
    const auto name = e.path().filename().string();
    if (name.rfind("scene_cam_", 0) != 0 || e.path().extension() != ".npy" || contains(name, "_raw")) continue;
    const auto cam = attend::vision::read_npy(e.path().string());
    const auto grad = attend::vision::read_npy(out + "/scene_gradcam_" + name.substr(10));
    EXPECT_TRUE(torch::allclose(cam, grad, 0, 2e-3)) << name;
  }
}

TEST_F(SaliencyCli, VideoRoundTripKeepsFramesSizeAndRate) {
  const auto video = dir_->file("clip.avi");
  {
    attend::vision::VideoWriter writer(video, 12.5, cv::Size(40, 30));
    for (int i = 0; i < 11; ++i) {
      cv::Mat frame(30, 40, CV_8UC3, cv::Scalar(0, 0, 0));
      frame(cv::Rect(2 + i, 5, 12, 14)).setTo(cv::Scalar(200, 220, 240));
      writer.write(frame);
    }
    writer.close();
  }
  for (const auto& normalise : {"frame", "running", "global"}) {
    const auto out = dir_->file(std::string("video-") + normalise);
    const auto r = run({"saliency", *checkpoint_, video, "--out", out, "--method", "gradcam", "--batch", "4",
                        "--normalise", normalise, "--smooth", "0.5"});
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_TRUE(contains(r.out, "11 frames 40x30 at 12.50 fps")) << r.out;
    attend::vision::VideoReader reader(out + "/clip_gradcam.avi");
    EXPECT_EQ(reader.info().width, 40);
    EXPECT_EQ(reader.info().height, 30);
    EXPECT_DOUBLE_EQ(reader.info().fps, 12.5);
    int frames = 0;
    for (cv::Mat f; reader.read(f);) ++frames;
    EXPECT_EQ(frames, 11) << normalise;
  }
  // A folder of images taken as the frames of one video.
  fs::create_directories(dir_->file("frames"));
  for (int i = 0; i < 3; ++i) fs::copy_file(dir_->file("scene.png"), dir_->file("frames/f" + std::to_string(i) + ".png"));
  const auto as_video = run({"saliency", *checkpoint_, dir_->file("frames"), "--as-video", "--fps", "5", "--out",
                             dir_->file("frames-out"), "--method", "gradcam,eigencam"});
  ASSERT_EQ(as_video.code, 0) << as_video.err;
  for (const char* m : {"gradcam", "eigencam"}) {
    attend::vision::VideoReader reader(dir_->file("frames-out/frames_") + m + ".avi");
    EXPECT_EQ(reader.info().width, 32);
    EXPECT_DOUBLE_EQ(reader.info().fps, 5.0);
    int frames = 0;
    for (cv::Mat f; reader.read(f);) ++frames;
    EXPECT_EQ(frames, 3);
  }
  // A file of random bytes named .avi.
  std::ofstream(dir_->file("corrupt.avi")) << "not a video at all, just some bytes";
  const auto bad = run({"saliency", *checkpoint_, dir_->file("corrupt.avi"), "--out", dir_->file("bad")});
  EXPECT_EQ(bad.code, 1);
  EXPECT_TRUE(contains(bad.err, dir_->file("corrupt.avi"))) << bad.err;
}

TEST_F(SaliencyCli, MetricsOnTheCheckpointsScenesAndBenchmark) {
  const auto out = dir_->file("metrics");
  const auto r = run({"saliency", *checkpoint_, "--metrics", "--count", "3", "--method", "gradcam,eigencam", "--out",
                      out});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(contains(r.out, "pointing")) << r.out;
  std::ifstream in(out + "/saliency-metrics.json");
  const auto report = nlohmann::json::parse(in);
  for (const char* m : {"gradcam", "eigencam"}) {
    const auto& row = report["methods"][m];
    for (const char* key : {"deletion_auc", "insertion_auc", "pointing_percent", "iou"}) {
      ASSERT_TRUE(row.contains(key)) << m << " " << key;
      EXPECT_GE(row[key].get<double>(), 0.0);
    }
    EXPECT_LE(row["deletion_auc"].get<double>(), 1.0);
  }
  EXPECT_GT(report["pointing_chance_percent"].get<double>(), 0.0);
  const auto bench = run({"saliency", *checkpoint_, "--benchmark", "--repeats", "2", "--method", "gradcam"});
  ASSERT_EQ(bench.code, 0) << bench.err;
  EXPECT_TRUE(contains(bench.out, "x forward")) << bench.out;
}

TEST_F(SaliencyCli, TorchScriptModelsInBothForms) {
  const auto seq = run({"saliency", data("torchscript/sequential.pt"), dir_->file("scene.png"), "--out",
                        dir_->file("ts-a"), "--input-size", "32", "--layer", "relu2", "--method", "cam,gradcam"});
  ASSERT_EQ(seq.code, 0) << seq.err;
  EXPECT_TRUE(fs::exists(dir_->file("ts-a/scene_grid.png")));
  const auto tupled = run({"saliency", data("torchscript/tupled.pt"), dir_->file("scene.png"), "--out",
                           dir_->file("ts-b"), "--input-size", "32", "--script-method", "forward_with_activations",
                           "--layer", "2", "--class", "1"});
  ASSERT_EQ(tupled.code, 0) << tupled.err;
  EXPECT_TRUE(fs::exists(dir_->file("ts-b/scene_gradcam_1.png")));
}

TEST_F(SaliencyCli, BadInputsNameWhatIsWrong) {
  const auto image = dir_->file("scene.png");
  const auto out = dir_->file("bad-out");
  struct Case {
    std::vector<std::string> args;
    int code;
    std::string says;
  };
  const std::vector<Case> cases{
      {{"saliency", *checkpoint_, image, "--out", out, "--method", "gradcam+++"}, 2, "unknown method 'gradcam+++'"},
      {{"saliency", *checkpoint_, image, "--out", out, "--layer", "conv9"}, 2, "unknown layer 'conv9'"},
      {{"saliency", *checkpoint_, image, "--out", out, "--class", "10"}, 2, "--class 10 is out of range"},
      {{"saliency", *checkpoint_, image, "--out", out, "--class", "1", "--top-k", "2"}, 2, "not both"},
      {{"saliency", *checkpoint_, image, "--out", out, "--colormap", "rainbowz"}, 2, "jet"},
      {{"saliency", *checkpoint_, image, "--out", out, "--method", "cam", "--layer", "conv1"}, 2,
       "global average pooling"},
      {{"saliency", *checkpoint_, image}, 2, "--out DIR is required"},
      {{"saliency", *checkpoint_, "--out", out}, 2, "no images"},
      {{"saliency", *checkpoint_, image, "--out", out, "--mean", "0.5"}, 2, "applies to TorchScript models"},
      {{"saliency", dir_->file("nope.pt"), image, "--out", out}, 1, "nope.pt: no such file"},
      {{"saliency", image, image, "--out", out}, 1, "scene.png"},
      {{"saliency", *checkpoint_, dir_->file("missing.png"), "--out", out}, 1, "missing.png"},
      {{"saliency", *checkpoint_, image, "--out", "/proc/attend-cannot"}, 1, "/proc/attend-cannot"},
      {{"saliency", data("torchscript/broken_split.pt"), image, "--out", out, "--input-size", "32"}, 1,
       "does not reproduce forward"},
      {{"saliency", data("torchscript/tupled.pt"), image, "--out", out, "--input-size", "32", "--script-method",
        "nope"},
       1, "forward_with_activations"},
      {{"saliency", data("torchscript/sequential.pt"), image, "--out", out, "--input-size", "32", "--layer",
        "conv9"},
       2, "relu2"},
  };
  for (const auto& c : cases) {
    const auto r = run(c.args);
    std::string joined;
    for (const auto& a : c.args) joined += a + " ";
    EXPECT_EQ(r.code, c.code) << joined << "\n" << r.err;
    EXPECT_TRUE(contains(r.err, c.says)) << joined << "\n" << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << joined << "\n" << r.err;
  }
  // A RAM checkpoint has no feature map.
  const auto ram = dir_->file("ram");
  ASSERT_EQ(run({"train", "ram", "--data", dir_->file("items"), "--glimpses", "2", "--glimpse-size", "4",
                 "--scales", "1", "--hidden", "8", "--epochs", "1", "--val-count", "0", "--run-dir", ram})
                .code,
            0);
  const auto r = run({"saliency", ram + "/last.pt", image, "--out", out});
  EXPECT_EQ(r.code, 2);
  EXPECT_TRUE(contains(r.err, "has no feature map")) << r.err;
}

// A captioner's encoder explained word by word: the classes are its vocabulary.
TEST_F(SaliencyCli, CaptionerWordsAreItsClasses) {
  const auto run_dir = dir_->file("captioner");
  const auto trained = run({"train", "captioner", "--scenes", "objects", "--source", dir_->file("items"), "--canvas",
                            "32", "--level", "1", "--count", "8", "--val-count", "0", "--test-count", "2", "--epochs",
                            "1", "--filters", "4,6", "--embed", "4", "--hidden", "8", "--attention-size", "4",
                            "--run-dir", run_dir});
  ASSERT_EQ(trained.code, 0) << trained.err;
  const auto model = run_dir + "/last.pt";
  const auto out = dir_->file("caption-maps");
  const auto r = run({"saliency", model, dir_->file("scene.png"), "--out", out, "--method", "gradcam,layercam",
                      "--layer", "block1", "--top-k", "2", "--npy"});
  ASSERT_EQ(r.code, 0) << r.err;
  int overlays = 0;
  for (const auto& e : fs::directory_iterator(out)) {
    const auto name = e.path().filename().string();
    if (e.path().extension() == ".npy" && !contains(name, "_raw")) {
      EXPECT_EQ(attend::vision::read_npy(e.path().string()).sizes(), (std::vector<std::int64_t>{32, 32})) << name;
    }
    if (e.path().extension() == ".npy" && contains(name, "_raw")) {
      // block1 of a 32x32 input: a 16x16 grid.
      EXPECT_EQ(attend::vision::read_npy(e.path().string()).sizes(), (std::vector<std::int64_t>{16, 16})) << name;
    }
    if (e.path().extension() == ".png" && name != "scene_grid.png") {
      ++overlays;
      EXPECT_FALSE(contains(name, "end") || contains(name, "start") || contains(name, "pad")) << name;
    }
  }
  EXPECT_EQ(overlays, 4);  // 2 methods x 2 words
  const auto by_index = run({"saliency", model, dir_->file("scene.png"), "--out", out, "--class", "4"});
  EXPECT_EQ(by_index.code, 0) << by_index.err;
  struct Bad {
    std::vector<std::string> args;
    std::string message;
  };
  for (const auto& bad : std::vector<Bad>{
           {{"--class", "<end>"}, "'<end>' is a special token, not a word"},
           {{"--class", "zebra"}, "--class 'zebra' is not a class of captioner checkpoint"},
           {{"--method", "cam"}, "cam"},
           {{"--layer", "block3"}, "unknown layer 'block3' (captioner checkpoint " + model + " has block1, block2)"}}) {
    std::vector<std::string> args{"saliency", model, dir_->file("scene.png"), "--out", out};
    args.insert(args.end(), bad.args.begin(), bad.args.end());
    const auto e = run(args);
    EXPECT_EQ(e.code, 2) << bad.message << ": " << e.err;
    EXPECT_TRUE(contains(e.err, bad.message)) << e.err;
  }
}

// SEAM trained on object scenes, its pseudo-masks scored against the scenes' masks.
TEST_F(SaliencyCli, SeamTrainsOnObjectScenesAndEvalScoresItsMasks) {
  const auto run_dir = dir_->file("seam");
  const auto trained = run({"train", "seam", "--scenes", "objects", "--source", dir_->file("items"), "--canvas", "32",
                            "--objects", "1-2", "--count", "16", "--val-count", "4", "--test-count", "4", "--epochs",
                            "1", "--batch", "8", "--seam-filters", "4,6,8", "--seam-pools", "1", "--pcm-reduce",
                            "3,5", "--pcm-embed", "8", "--run-dir", run_dir});
  ASSERT_EQ(trained.code, 0) << trained.err;
  EXPECT_TRUE(contains(trained.err, "ecr")) << trained.err;  // the loss terms are reported
  const auto model = run_dir + "/last.pt";
  const auto r = run({"eval", model, "--masks", "--val-count", "4", "--scales", "1,2", "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["kind"], "seam");
  EXPECT_EQ(j["test_count"], 4);
  EXPECT_EQ(j["classes"].size(), 11u);  // background + 10 digits
  EXPECT_EQ(j["curve"].size(), 61u);    // alpha 0.00..0.60
  // Alpha is the best on validation, and the reported mIoU is the test curve's there.
  double best = -1, chosen = -1, at_chosen = -1;
  for (const auto& row : j["curve"]) {
    if (!row["val_miou"].is_null() && row["val_miou"].get<double>() > best) {
      best = row["val_miou"].get<double>();
      chosen = row["alpha"].get<double>();
      at_chosen = row["test_miou"].get<double>();
    }
  }
  EXPECT_DOUBLE_EQ(j["alpha"].get<double>(), chosen);
  EXPECT_DOUBLE_EQ(j["miou"].get<double>(), at_chosen);
  EXPECT_GE(j["miou"].get<double>(), 0.0);
  EXPECT_LE(j["miou"].get<double>(), 1.0);
  EXPECT_GE(j["equivariance_error"].get<double>(), 0.0);
  // The confusion matrix (rows truth, columns prediction) the scores come from, and the
  // shares of misplaced pixels read off it.
  const auto& confusion = j["confusion"];
  ASSERT_EQ(confusion.size(), 11u);
  double all = 0, correct = 0, object = 0, as_background = 0, as_other = 0, background = 0, as_object = 0;
  for (std::size_t t = 0; t < 11; ++t) {
    ASSERT_EQ(confusion[t].size(), 11u);
    double row = 0, column = 0;
    for (std::size_t p = 0; p < 11; ++p) {
      const double n = confusion[t][p].get<double>();
      row += n;
      column += confusion[p][t].get<double>();
      all += n;
      if (p == t) correct += n;
      if (t == 0) {
        background += n;
        if (p != 0) as_object += n;
      } else {
        object += n;
        if (p == 0) as_background += n;
        if (p != 0 && p != t) as_other += n;
      }
    }
    const double tp = confusion[t][t].get<double>();
    const auto& iou = j["classes"][t]["iou"];
    if (row + column == 0) {
      EXPECT_TRUE(iou.is_null()) << "class " << t;
    } else {
      EXPECT_NEAR(iou.get<double>(), tp / (row + column - tp), 1e-12) << "class " << t;
    }
  }
  ASSERT_GT(object, 0);
  ASSERT_GT(background, 0);
  EXPECT_LE(all, 4 * 32 * 32);  // the 4 test scenes' pixels, less the ignored bands
  EXPECT_NEAR(j["pixel_accuracy"].get<double>(), correct / all, 1e-12);
  EXPECT_NEAR(j["errors"]["object_as_background"].get<double>(), as_background / object, 1e-12);
  EXPECT_NEAR(j["errors"]["object_as_other_object"].get<double>(), as_other / object, 1e-12);
  EXPECT_NEAR(j["errors"]["background_as_object"].get<double>(), as_object / background, 1e-12);
  // The same by the number of objects in a scene (1 or 2 here): the groups split the
  // test scenes and their pixels.
  std::int64_t scenes = 0;
  std::vector<std::vector<double>> summed(11, std::vector<double>(11, 0.0));
  std::int64_t previous = 0;
  for (const auto& group : j["by_objects"]) {
    const auto objects = group["objects"].get<std::int64_t>();
    EXPECT_GT(objects, previous);  // in increasing order
    EXPECT_LE(objects, 2);
    previous = objects;
    scenes += group["scenes"].get<std::int64_t>();
    double group_all = 0, group_correct = 0;
    for (std::size_t t = 0; t < 11; ++t) {
      for (std::size_t p = 0; p < 11; ++p) {
        const double n = group["confusion"][t][p].get<double>();
        summed[t][p] += n;
        group_all += n;
        if (p == t) group_correct += n;
      }
    }
    EXPECT_NEAR(group["pixel_accuracy"].get<double>(), group_correct / group_all, 1e-12);
  }
  EXPECT_EQ(scenes, 4);
  for (std::size_t t = 0; t < 11; ++t) {
    for (std::size_t p = 0; p < 11; ++p) EXPECT_EQ(summed[t][p], confusion[t][p].get<double>()) << t << "," << p;
  }
  // A given alpha is used as given; the CAM baseline is scored the same way.
  const auto given = run({"eval", model, "--masks", "--alpha", "0.3", "--val-count", "0", "--scales", "1", "--no-flip",
                          "--json"});
  ASSERT_EQ(given.code, 0) << given.err;
  const auto gj = nlohmann::json::parse(given.out);
  EXPECT_DOUBLE_EQ(gj["alpha"].get<double>(), 0.3);
  EXPECT_EQ(gj["cams"], "revised");  // the PCM is trained: its maps by default
  // --cams raw scores the CAM head's maps before the PCM: another equivariance error.
  const auto raw = run({"eval", model, "--masks", "--alpha", "0.3", "--val-count", "0", "--scales", "1", "--no-flip",
                        "--cams", "raw", "--json"});
  ASSERT_EQ(raw.code, 0) << raw.err;
  const auto rj = nlohmann::json::parse(raw.out);
  EXPECT_EQ(rj["cams"], "raw");
  EXPECT_NE(rj["equivariance_error"].get<double>(), gj["equivariance_error"].get<double>());
  const auto raw_text = run({"eval", model, "--masks", "--alpha", "0.3", "--val-count", "0", "--scales", "1",
                             "--cams", "raw"});
  EXPECT_TRUE(contains(raw_text.out, "raw CAMs (before any PCM) masked by true labels")) << raw_text.out;
  const auto cam = run({"eval", *checkpoint_, "--masks", "--val-count", "2", "--scales", "1"});
  ASSERT_EQ(cam.code, 0) << cam.err;
  EXPECT_TRUE(contains(cam.out, "mIoU")) << cam.out;
  EXPECT_TRUE(std::regex_search(cam.out, std::regex("\nobject pixels labelled background [0-9]+[.][0-9] %, another "
                                                    "object class [0-9]+[.][0-9] %; background pixels labelled an "
                                                    "object [0-9]+[.][0-9] %\n")))
      << cam.out;
  // The pixel-supervised upper bound is scored by its own argmax: no alpha, no curve,
  // no validation scenes needed; segment labels by it too.
  const auto pixel_dir = dir_->file("seam-pixel");
  const auto pixel = run({"train", "seam", "--supervision", "pixel", "--scenes", "objects", "--source",
                          dir_->file("items"), "--canvas", "32", "--objects", "1-2", "--count", "16", "--val-count", "4",
                          "--test-count", "4", "--epochs", "1", "--batch", "8", "--seam-filters", "4,6,8",
                          "--seam-pools", "1", "--run-dir", pixel_dir});
  ASSERT_EQ(pixel.code, 0) << pixel.err;
  const auto argmax = run({"eval", pixel_dir + "/last.pt", "--masks", "--val-count", "0", "--scales", "1", "--json"});
  ASSERT_EQ(argmax.code, 0) << argmax.err;
  const auto aj = nlohmann::json::parse(argmax.out);
  EXPECT_TRUE(aj["alpha"].is_null()) << aj.dump();
  EXPECT_EQ(aj["alpha_chosen_on"], "none: the model's own argmax");
  EXPECT_TRUE(aj["curve"].empty());
  const auto argmax_text = run({"eval", pixel_dir + "/last.pt", "--masks", "--scales", "1"});
  EXPECT_TRUE(contains(argmax_text.out, "argmax of the model's own background and class probabilities"))
      << argmax_text.out;

  struct Bad {
    std::vector<std::string> args;
    int code;
    std::string message;
  };
  for (const auto& bad : std::vector<Bad>{
           {{"eval", model, "--masks", "--alpha", "1.5"}, 2, "--alpha must be in [0,1], got 1.5"},
           {{"eval", model, "--masks", "--val-count", "0"}, 2, "--val-count 0 needs --alpha"},
           {{"eval", model, "--masks", "--labels", "guess"}, 2, "--labels"},
           {{"eval", model, "--masks", "--scales", "0,1"}, 2, "--scales must each be in (0,4], got 0"},
           {{"eval", model, "--alpha", "0.3"}, 2, "--alpha needs --masks"},
           {{"eval", pixel_dir + "/last.pt", "--masks", "--alpha", "0.3"}, 2, "segments by its own argmax"},
           {{"eval", model, "--masks", "--cams", "both"}, 2, "--cams must be one of"},
           {{"eval", model, "--cams", "raw"}, 2, "--cams needs --masks"},
           {{"eval", *checkpoint_, "--masks", "--cams", "raw"}, 2, "a 'cam' model has one kind of CAM"},
           {{"eval", pixel_dir + "/last.pt", "--masks", "--cams", "raw"}, 2, "segments by its own argmax, not by CAMs"},
           {{"train", "seam", "--data", dir_->file("items"), "--run-dir", dir_->file("seam-idx")}, 2,
            "several classes per image; train it on object scenes"},
           {{"train", "seam", "--scenes", "objects", "--source", dir_->file("items"), "--canvas", "32", "--seam-pools",
             "2", "--seam-filters", "4,6,8", "--run-dir", dir_->file("seam-bad")},
            2, "pools must be between 1 and the number of blocks - 2"}}) {
    const auto e = run(bad.args);
    EXPECT_EQ(e.code, bad.code) << bad.message << ": " << e.err;
    EXPECT_TRUE(contains(e.err, bad.message)) << e.err;
  }
}

// attend segment over images of any size: labels and overlays at the image's size.
TEST_F(SaliencyCli, SegmentWritesLabelsAndOverlaysAtTheImagesSize) {
  const auto run_dir = dir_->file("seam-seg");
  const auto trained = run({"train", "seam", "--scenes", "objects", "--source", dir_->file("items"), "--canvas", "32",
                            "--objects", "1-2", "--count", "8", "--val-count", "0", "--test-count", "2", "--epochs",
                            "1", "--batch", "8", "--seam-filters", "4,6,8", "--seam-pools", "1", "--pcm-reduce",
                            "3,5", "--pcm-embed", "8", "--run-dir", run_dir});
  ASSERT_EQ(trained.code, 0) << trained.err;
  const auto model = run_dir + "/last.pt";
  fs::create_directories(dir_->file("seg/images"));
  fs::create_directories(dir_->file("seg/masks"));
  cv::Mat grey(40, 50, CV_8UC1, cv::Scalar(0));
  grey(cv::Rect(10, 8, 14, 16)).setTo(230);
  cv::imwrite(dir_->file("seg/images/a.png"), grey);
  cv::Mat mask(40, 50, CV_8UC1, cv::Scalar(0));
  mask(cv::Rect(10, 8, 14, 16)).setTo(4);  // class 3
  cv::imwrite(dir_->file("seg/masks/a.png"), mask);
  const auto out = dir_->file("seg-out");
  const auto r = run({"segment", model, dir_->file("seg/images"), "--out", out, "--labels", "gt", "--npy",
                      "--scales", "1"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(contains(r.out, "a.png: 3;")) << r.out;  // the mask's class, by name
  const auto labels = cv::imread(out + "/a_labels.png", cv::IMREAD_UNCHANGED);
  ASSERT_EQ(labels.size(), cv::Size(50, 40));
  double lo = 0, hi = 0;
  cv::minMaxLoc(labels, &lo, &hi);
  EXPECT_TRUE(hi == 0 || hi == 4) << hi;  // background, or the one class allowed
  const auto overlay = cv::imread(out + "/a_overlay.png");
  EXPECT_EQ(overlay.cols, hi == 4 ? 96 : 50);  // widened for the legend when a class is drawn
  const auto cams = attend::vision::read_npy(out + "/a_cams.npy");
  EXPECT_EQ(cams.sizes(), (std::vector<std::int64_t>{10, 40, 50}));
  EXPECT_EQ(cams.narrow(0, 0, 3).abs().max().item<float>(), 0.0f);  // absent classes are masked out
  // --cams raw: the CAM head's maps before the PCM, another map of the same class.
  const auto raw_out = dir_->file("seg-raw");
  const auto raw = run({"segment", model, dir_->file("seg/images/a.png"), "--out", raw_out, "--labels", "gt", "--npy",
                        "--scales", "1", "--cams", "raw"});
  ASSERT_EQ(raw.code, 0) << raw.err;
  const auto raw_cams = attend::vision::read_npy(raw_out + "/a_cams.npy");
  ASSERT_EQ(raw_cams.sizes(), cams.sizes());
  EXPECT_EQ(raw_cams.narrow(0, 0, 3).abs().max().item<float>(), 0.0f);
  EXPECT_GT((raw_cams[3] - cams[3]).abs().max().item<float>(), 1e-3);

  cv::Mat wrong(40, 50, CV_8UC1, cv::Scalar(0));
  cv::imwrite(dir_->file("seg/masks/b.png"), cv::Mat(10, 10, CV_8UC1, cv::Scalar(0)));
  cv::imwrite(dir_->file("seg/images/b.png"), wrong);
  cv::imwrite(dir_->file("loose.png"), wrong);
  struct Bad {
    std::vector<std::string> args;
    int code;
    std::string message;
  };
  for (const auto& bad : std::vector<Bad>{
           {{"segment", model, dir_->file("scene.png"), "--out", out}, 1, "has 3 channels; the model takes 1 (grey)"},
           {{"segment", model, dir_->file("seg/images/b.png"), "--out", out, "--labels", "gt"}, 1, "is 10x10, its image 50x40"},
           {{"segment", model, dir_->file("seg/images/a.png"), "--out", out, "--alpha", "-0.1"}, 2,
            "--alpha must be in [0,1]"},
           {{"segment", model, dir_->file("loose.png"), "--out", out, "--labels", "gt"}, 1,
            "--labels gt needs its mask"},
           {{"segment", model, dir_->file("nope.png"), "--out", out}, 1, "nope.png: no such file"},
           {{"segment", model, dir_->file("seg/images/a.png")}, 2, "--out DIR is required"},
           {{"segment", model, dir_->file("seg/images/a.png"), "--out", out, "--cams", "pcm"}, 2,
            "--cams must be one of raw, revised, got 'pcm'"}}) {
    const auto e = run(bad.args);
    EXPECT_EQ(e.code, bad.code) << bad.message << ": " << e.err;
    EXPECT_TRUE(contains(e.err, bad.message)) << e.err;
  }
}

// Folder inputs: each image that cannot be read is one error line naming it, the
// others are processed as usual, and the exit code is 1 at the end.
TEST_F(SaliencyCli, FolderInputsReportEachBadImageAndProcessTheRest) {
  const auto folder = dir_->file("mixed");
  fs::create_directories(folder);
  cv::Mat image(32, 32, CV_8UC1, cv::Scalar(0));
  image(cv::Rect(6, 8, 12, 14)).setTo(220);
  cv::imwrite(folder + "/a.png", image);
  cv::imwrite(folder + "/c.png", image);
  std::vector<unsigned char> png;
  cv::imencode(".png", image, png);
  png.resize(png.size() / 2);
  attend::testing::write_bytes(folder + "/b.png", png);  // truncated
  const auto bad = folder + "/b.png";
  auto lines = [](const std::string& text) { return std::count(text.begin(), text.end(), '\n'); };
  auto expect_two_of_three = [&](const attend::testing::CliRun& r, const std::string& what) {
    EXPECT_EQ(r.code, 1) << what << "\n" << r.err;
    EXPECT_TRUE(contains(r.out, folder + "/a.png: ")) << what << "\n" << r.out;
    EXPECT_TRUE(contains(r.out, folder + "/c.png: ")) << what << "\n" << r.out;
    EXPECT_FALSE(contains(r.out, bad)) << what << "\n" << r.out;
    EXPECT_TRUE(contains(r.err, "attend: error: " + bad + ": truncated PNG: the file ends inside the IDAT chunk"))
        << what << "\n" << r.err;
    EXPECT_EQ(lines(r.err) - (contains(r.err, "\nwrote ") ? 1 : 0), 1) << what << ": one line for the bad image\n"
                                                                      << r.err;
  };

  const auto classified = run({"classify", *checkpoint_, folder});
  expect_two_of_three(classified, "classify");
  EXPECT_EQ(lines(classified.out), 4) << "two lines per image\n" << classified.out;
  EXPECT_EQ(lines(classified.err), 1) << classified.err;
  // The good images' output is what it is without the bad one.
  fs::remove(bad);
  const auto good_only = run({"classify", *checkpoint_, folder});
  EXPECT_EQ(good_only.code, 0) << good_only.err;
  EXPECT_EQ(good_only.out, classified.out);
  EXPECT_EQ(good_only.err, "");
  attend::testing::write_bytes(bad, png);

  const auto sal = run({"saliency", *checkpoint_, folder, "--out", dir_->file("mixed-sal"), "--batch", "2"});
  expect_two_of_three(sal, "saliency");
  EXPECT_EQ(lines(sal.err), 1) << sal.err;
  std::set<char> overlaid;  // the first letter of each overlay's image
  for (const auto& e : fs::directory_iterator(dir_->file("mixed-sal"))) overlaid.insert(e.path().filename().string()[0]);
  EXPECT_EQ(overlaid, (std::set<char>{'a', 'c'}));
  const auto metrics = run({"saliency", *checkpoint_, folder, "--metrics", "--method", "gradcam"});
  EXPECT_EQ(metrics.code, 1) << metrics.err;
  EXPECT_TRUE(contains(metrics.out, "saliency metrics on 2 images")) << metrics.out;
  EXPECT_EQ(lines(metrics.err), 1) << metrics.err;

  const auto segmented = run({"segment", *checkpoint_, folder, "--out", dir_->file("mixed-seg"), "--scales", "1"});
  expect_two_of_three(segmented, "segment");
  EXPECT_TRUE(contains(segmented.err, "wrote 2 label images and overlays")) << segmented.err;
  EXPECT_TRUE(fs::exists(dir_->file("mixed-seg/a_labels.png")));
  EXPECT_TRUE(fs::exists(dir_->file("mixed-seg/c_labels.png")));
  EXPECT_FALSE(fs::exists(dir_->file("mixed-seg/b_labels.png")));

  const auto run_dir = dir_->file("mixed-captioner");
  ASSERT_EQ(run({"train", "captioner", "--scenes", "objects", "--source", dir_->file("items"), "--canvas", "32",
                 "--level", "1", "--count", "8", "--val-count", "0", "--test-count", "2", "--epochs", "1", "--filters",
                 "4", "--embed", "4", "--hidden", "8", "--attention-size", "4", "--run-dir", run_dir})
                .code,
            0);
  const auto captioned = run({"caption", run_dir + "/last.pt", folder, "--batch", "2"});
  expect_two_of_three(captioned, "caption");
  EXPECT_EQ(lines(captioned.out), 2) << captioned.out;

  // Every image bad: each reported, nothing else, exit 1.
  const auto huge = folder + "/huge";
  fs::create_directories(huge);
  std::vector<unsigned char> header(png.begin(), png.begin() + 33);
  for (int i = 0; i < 2; ++i) {  // IHDR width and height: 60000 (its CRC is not checked before the limit)
    header[16 + 4 * i] = 0;
    header[17 + 4 * i] = 0;
    header[18 + 4 * i] = 0xEA;
    header[19 + 4 * i] = 0x60;
  }
  attend::testing::write_bytes(huge + "/x.png", header);
  attend::testing::write_bytes(huge + "/y.png", {});
  const auto none = run({"classify", *checkpoint_, huge});
  EXPECT_EQ(none.code, 1);
  EXPECT_EQ(none.out, "");
  EXPECT_EQ(none.err, "attend: error: " + huge + "/x.png: image is 60000x60000, larger than the limit of 32768 "
                      "pixels per side\nattend: error: " + huge + "/y.png: is empty (0 bytes), not an image\n");
}
