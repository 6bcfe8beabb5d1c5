#include <attend/datasets/captions.h>
#include <attend/io_error.h>

#include <test_support.h>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <torch/torch.h>

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <functional>

namespace ds = attend::datasets;
namespace fs = std::filesystem;
using attend::testing::contains;
using attend::testing::error_message;
using attend::testing::TempDir;

namespace {

const std::string kFixtures = std::string(ATTEND_TEST_DATA) + "/captions";
const std::string kFlickr = kFixtures + "/dataset_flickr8k_tiny.json";
const std::string kCoco = kFixtures + "/dataset_coco_tiny.json";
const std::string kScenes = kFixtures + "/scenes_tiny.json";

void write_image(const fs::path& path, const cv::Mat& image) {
  fs::create_directories(path.parent_path());
  ASSERT_TRUE(cv::imwrite(path.string(), image)) << path;
}

void write_text(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
}

/// The images the Flickr fixture names: 8x6 solid colours, one per image (BGR).
const cv::Scalar kFlickrColours[] = {{200, 40, 40}, {40, 200, 40}, {40, 40, 200}};
const char* const kFlickrFiles[] = {"2513260012_03d33305cf.jpg", "1000268201_693b08cb0e.jpg",
                                    "1056338697_4f7d7ce270.jpg"};

void write_flickr_images(const fs::path& root) {
  for (int i = 0; i < 3; ++i) write_image(root / kFlickrFiles[i], cv::Mat(6, 8, CV_8UC3, kFlickrColours[i]));
}

void write_coco_images(const fs::path& root) {
  for (const char* name : {"val2014/COCO_val2014_000000391895.jpg", "val2014/COCO_val2014_000000522418.jpg",
                           "train2014/COCO_train2014_000000318556.jpg", "val2014/COCO_val2014_000000184613.jpg",
                           "train2014/COCO_train2014_000000060623.jpg"}) {
    write_image(root / name, cv::Mat(4, 4, CV_8UC3, cv::Scalar(128, 128, 128)));
  }
}

/// The files scenes_tiny.json names, consistent with its boxes: 8x6 images;
/// image 0 holds object 0 (label 3, instance 1) at x 0..2, y 1..2 and object 1
/// (label 7, instance 2) at x 5..6, y 3..5; image 1 holds object 0 (label 0) at
/// x 2..5, y 2..4. Label masks hold label + 1 and one ignore pixel (255).
void write_scene_files(const fs::path& root) {
  cv::Mat image0(6, 8, CV_8UC3, cv::Scalar(0, 0, 0));
  cv::Mat labels0(6, 8, CV_8UC1, cv::Scalar(0));
  cv::Mat instances0(6, 8, CV_8UC1, cv::Scalar(0));
  labels0(cv::Rect(0, 1, 3, 2)).setTo(4);
  instances0(cv::Rect(0, 1, 3, 2)).setTo(1);
  labels0(cv::Rect(5, 3, 2, 3)).setTo(8);
  instances0(cv::Rect(5, 3, 2, 3)).setTo(2);
  labels0.at<std::uint8_t>(0, 0) = 255;
  image0.setTo(cv::Scalar(255, 255, 255), instances0);
  write_image(root / "images/000000.png", image0);
  write_image(root / "masks/000000.png", labels0);
  write_image(root / "instances/000000.png", instances0);

  cv::Mat image1(6, 8, CV_8UC3, cv::Scalar(0, 0, 0));
  cv::Mat labels1(6, 8, CV_8UC1, cv::Scalar(0));
  cv::Mat instances1(6, 8, CV_8UC1, cv::Scalar(0));
  labels1(cv::Rect(2, 2, 4, 3)).setTo(1);
  instances1(cv::Rect(2, 2, 4, 3)).setTo(1);
  image1.setTo(cv::Scalar(255, 255, 255), instances1);
  write_image(root / "images/000001.png", image1);
  write_image(root / "masks/000001.png", labels1);
  write_image(root / "instances/000001.png", instances1);
}

/// Runs `f`, expects attend::IoError naming `path` with `needle` in a one-line
/// message; returns the message.
std::string expect_io_error(const std::function<void()>& f, const std::string& path, const std::string& needle) {
  try {
    f();
  } catch (const attend::IoError& e) {
    const std::string what = e.what();
    EXPECT_EQ(e.path(), path);
    EXPECT_EQ(what.rfind(path + ": ", 0), 0u) << what;
    EXPECT_TRUE(contains(what, needle)) << "expected \"" << needle << "\" in: " << what;
    EXPECT_FALSE(contains(what, "\n")) << "message must be one line: " << what;
    return what;
  } catch (const std::exception& e) {
    ADD_FAILURE() << "expected attend::IoError, got another exception: " << e.what();
    return "";
  }
  ADD_FAILURE() << "expected attend::IoError containing \"" << needle << "\", nothing was thrown";
  return "";
}

std::vector<std::string> filenames(const std::vector<const ds::CaptionImage*>& images) {
  std::vector<std::string> out;
  for (const auto* image : images) out.push_back(image->filename);
  return out;
}

using Tokens = std::vector<std::string>;

}  // namespace

// ---------------------------------------------------------------------------------
// Reading Karpathy's layout

TEST(CaptionSet, ReadsFlickr8kLayoutWithAllFields) {
  TempDir dir;
  write_flickr_images(dir.path());
  const auto set = ds::read_caption_set(kFlickr, dir.path().string());
  EXPECT_EQ(set.dataset, "flickr8k");
  EXPECT_EQ(set.json_path, kFlickr);
  EXPECT_EQ(set.image_root, dir.path().string());
  ASSERT_EQ(set.images.size(), 3u);

  const auto& first = set.images[0];
  EXPECT_EQ(first.filename, "2513260012_03d33305cf.jpg");
  EXPECT_EQ(first.filepath, "");
  EXPECT_EQ(first.split, "train");
  EXPECT_EQ(first.imgid, 0);
  EXPECT_EQ(first.path, (dir.path() / "2513260012_03d33305cf.jpg").string());
  ASSERT_EQ(first.sentences.size(), 2u);
  EXPECT_EQ(first.sentences[0].tokens, (Tokens{"a", "black", "dog", "is", "running", "after", "a", "white", "dog",
                                               "in", "the", "snow"}));
  EXPECT_EQ(first.sentences[0].raw, "A black dog is running after a white dog in the snow .");
  EXPECT_EQ(first.sentences[0].sentid, 0);
  EXPECT_EQ(first.sentences[1].tokens, (Tokens{"black", "dog", "chasing", "brown", "dog", "through", "snow"}));
  EXPECT_EQ(first.sentences[1].sentid, 1);
  EXPECT_TRUE(first.objects.empty());
  EXPECT_FALSE(first.relation.has_value());
  EXPECT_EQ(first.mask, "");

  EXPECT_EQ(set.images[1].split, "val");
  EXPECT_EQ(set.images[1].imgid, 1);
  EXPECT_EQ(set.images[1].sentences[1].sentid, 3);
  EXPECT_EQ(set.images[1].sentences[1].tokens.back(), "fingerpaints");
  EXPECT_EQ(set.images[2].split, "test");
  EXPECT_EQ(set.images[2].filename, "1056338697_4f7d7ce270.jpg");
  ASSERT_EQ(set.images[2].sentences.size(), 1u);
  EXPECT_EQ(set.images[2].sentences[0].raw, "A dog shakes its head near the shore , a red ball next to it .");
}

TEST(CaptionSet, ReadsCocoLayoutWithFilepathAndIgnoresCocoid) {
  TempDir dir;
  write_coco_images(dir.path());
  const auto set = ds::read_caption_set(kCoco, dir.path().string());
  EXPECT_EQ(set.dataset, "coco");
  ASSERT_EQ(set.images.size(), 5u);
  const auto& first = set.images[0];
  EXPECT_EQ(first.filepath, "val2014");
  EXPECT_EQ(first.filename, "COCO_val2014_000000391895.jpg");
  EXPECT_EQ(first.path, (dir.path() / "val2014" / "COCO_val2014_000000391895.jpg").string());
  EXPECT_EQ(first.split, "test");
  ASSERT_EQ(first.sentences.size(), 2u);
  EXPECT_EQ(first.sentences[0].sentid, 770337);
  EXPECT_EQ(first.sentences[0].raw, "A man with a red helmet on a small moped on a dirt road. ");
  EXPECT_EQ(first.sentences[1].tokens.size(), 12u);
  EXPECT_EQ(set.images[2].path, (dir.path() / "train2014" / "COCO_train2014_000000318556.jpg").string());
  EXPECT_EQ(set.images[4].imgid, 4);
  EXPECT_EQ(set.images[4].sentences[0].sentid, 787986);
}

TEST(CaptionSet, DefaultImageRootIsTheJsonFolder) {
  const auto set = ds::read_caption_set(kCoco, "", ds::CaptionReadOptions().check_files(false));
  EXPECT_EQ(set.image_root, kFixtures);
  EXPECT_EQ(set.images[1].path, kFixtures + "/val2014/COCO_val2014_000000522418.jpg");

  TempDir dir;  // the JSON beside its images, read without naming a root
  write_flickr_images(dir.path());
  fs::copy_file(kFlickr, dir.file("dataset_flickr8k_tiny.json"));
  const auto beside = ds::read_caption_set(dir.file("dataset_flickr8k_tiny.json"));
  EXPECT_EQ(beside.images[2].path, dir.file("1056338697_4f7d7ce270.jpg"));
}

TEST(CaptionSet, SplitKeepsFileOrderAndCountsRestvalAsTrain) {
  const auto set = ds::read_caption_set(kCoco, "", ds::CaptionReadOptions().check_files(false));
  EXPECT_EQ(filenames(set.split("train")),
            (Tokens{"COCO_val2014_000000522418.jpg", "COCO_train2014_000000318556.jpg",
                    "COCO_train2014_000000060623.jpg"}));
  EXPECT_EQ(filenames(set.split("train", false)), (Tokens{"COCO_train2014_000000318556.jpg"}));
  EXPECT_EQ(filenames(set.split("restval")),
            (Tokens{"COCO_val2014_000000522418.jpg", "COCO_train2014_000000060623.jpg"}));
  EXPECT_EQ(filenames(set.split("val")), (Tokens{"COCO_val2014_000000184613.jpg"}));
  EXPECT_EQ(filenames(set.split("test")), (Tokens{"COCO_val2014_000000391895.jpg"}));
  EXPECT_EQ(set.split("test")[0], &set.images[0]);
  EXPECT_TRUE(contains(error_message([&] { set.split("training"); }),
                       "expected \"train\", \"val\", \"test\" or \"restval\", got \"training\""));
}

TEST(CaptionSet, ReadsSceneFieldsObjectsAndRelation) {
  TempDir dir;
  write_scene_files(dir.path());
  const auto set = ds::read_caption_set(kScenes, dir.path().string());
  EXPECT_EQ(set.dataset, "attend-object-scenes");
  ASSERT_EQ(set.images.size(), 2u);
  const auto& image = set.images[0];
  EXPECT_EQ(image.path, (dir.path() / "images" / "000000.png").string());
  EXPECT_EQ(image.mask, "masks/000000.png");
  EXPECT_EQ(image.instances, "instances/000000.png");
  ASSERT_EQ(image.objects.size(), 2u);
  EXPECT_EQ(image.objects[0].label, 3);
  EXPECT_EQ(image.objects[0].word, "3");
  EXPECT_EQ(image.objects[0].bbox, (std::array<std::int64_t, 4>{0, 1, 3, 2}));
  EXPECT_EQ(image.objects[0].cell_bbox, (std::array<std::int64_t, 4>{0, 0, 3, 2}));
  EXPECT_EQ(image.objects[0].mask, "instances/000000.png");
  EXPECT_EQ(image.objects[0].instance, 1);
  EXPECT_EQ(image.objects[1].label, 7);
  EXPECT_EQ(image.objects[1].mask, "");
  EXPECT_EQ(image.objects[1].instance, 2);
  EXPECT_EQ(image.objects[1].bbox, (std::array<std::int64_t, 4>{5, 3, 2, 3}));
  ASSERT_TRUE(image.relation.has_value());
  EXPECT_EQ(image.relation->subject, 0);
  EXPECT_EQ(image.relation->object, 1);
  EXPECT_EQ(image.relation->predicate, "left of");
  EXPECT_EQ(image.sentences[0].tokens, (Tokens{"a", "3", "left", "of", "a", "7"}));
  EXPECT_FALSE(set.images[1].relation.has_value());
  EXPECT_EQ(set.resolve(set.images[1].mask), (dir.path() / "masks" / "000001.png").string());
}

// ---------------------------------------------------------------------------------
// Images and masks

TEST(CaptionFiles, ReadCaptionImageDecodesTheNamedFile) {
  TempDir dir;
  write_flickr_images(dir.path());
  const auto set = ds::read_caption_set(kFlickr, dir.path().string());
  for (int i = 0; i < 3; ++i) {
    const cv::Mat image = ds::read_caption_image(set.images[static_cast<std::size_t>(i)]);
    ASSERT_EQ(image.type(), CV_8UC3);
    ASSERT_EQ(image.size(), cv::Size(8, 6));
    const cv::Scalar mean = cv::mean(image);
    for (int c = 0; c < 3; ++c) EXPECT_NEAR(mean[c], kFlickrColours[i][c], 4.0) << "image " << i << " channel " << c;
  }
  const cv::Mat grey = ds::read_caption_image(set.images[0], cv::IMREAD_GRAYSCALE);
  EXPECT_EQ(grey.type(), CV_8UC1);
}

TEST(CaptionFiles, LabelMaskHoldsTheFileValues) {
  TempDir dir;
  write_scene_files(dir.path());
  const auto set = ds::read_caption_set(kScenes, dir.path().string());
  for (const cv::Size size : {cv::Size(), cv::Size(8, 6)}) {
    const cv::Mat mask = ds::read_label_mask(set.images[0], set, size);
    ASSERT_EQ(mask.type(), CV_8UC1);
    ASSERT_EQ(mask.size(), cv::Size(8, 6));
    EXPECT_EQ(mask.at<std::uint8_t>(0, 0), 255);  // ignore band
    EXPECT_EQ(mask.at<std::uint8_t>(1, 0), 4);    // label 3 + 1
    EXPECT_EQ(mask.at<std::uint8_t>(5, 6), 8);    // label 7 + 1
    EXPECT_EQ(mask.at<std::uint8_t>(0, 7), 0);
    EXPECT_EQ(cv::countNonZero(mask == 4), 6);
    EXPECT_EQ(cv::countNonZero(mask == 8), 6);
  }
}

TEST(CaptionFiles, ObjectMaskIsItsInstanceOnly) {
  TempDir dir;
  write_scene_files(dir.path());
  const auto set = ds::read_caption_set(kScenes, dir.path().string());
  const auto& image = set.images[0];
  const cv::Mat first = ds::read_object_mask(image.objects[0], image, set);   // its own "mask"
  const cv::Mat second = ds::read_object_mask(image.objects[1], image, set, cv::Size(8, 6));  // the image's
  ASSERT_EQ(first.type(), CV_8UC1);
  cv::Mat expected_first(6, 8, CV_8UC1, cv::Scalar(0));
  expected_first(cv::Rect(0, 1, 3, 2)).setTo(255);
  cv::Mat expected_second(6, 8, CV_8UC1, cv::Scalar(0));
  expected_second(cv::Rect(5, 3, 2, 3)).setTo(255);
  EXPECT_EQ(cv::countNonZero(first != expected_first), 0);
  EXPECT_EQ(cv::countNonZero(second != expected_second), 0);
  // The tight box of the mask is the object's bbox.
  const cv::Rect box = cv::boundingRect(second);
  EXPECT_EQ(box, cv::Rect(5, 3, 2, 3));

  ds::SceneObject missing = image.objects[1];
  missing.instance = 9;
  expect_io_error([&] { ds::read_object_mask(missing, image, set); }, set.resolve(image.instances),
                  "no pixel of instance 9");
  ds::SceneObject nowhere = image.objects[1];
  ds::CaptionImage bare = image;
  bare.instances.clear();
  EXPECT_TRUE(contains(error_message([&] { ds::read_object_mask(nowhere, bare, set); }),
                       "names an instance image"));
  bare.mask.clear();
  EXPECT_TRUE(contains(error_message([&] { ds::read_label_mask(bare, set); }), "has no \"mask\""));
}

TEST(CaptionFiles, MaskOfAnotherSizeIsAnIoError) {
  TempDir dir;
  write_scene_files(dir.path());
  write_image(dir.path() / "masks/000001.png", cv::Mat(3, 4, CV_8UC1, cv::Scalar(0)));
  write_image(dir.path() / "instances/000001.png", cv::Mat(6, 8, CV_8UC3, cv::Scalar(1, 1, 1)));
  const auto set = ds::read_caption_set(kScenes, dir.path().string());
  const auto& image = set.images[1];
  expect_io_error([&] { ds::read_label_mask(image, set); }, set.resolve(image.mask), "mask 4x3 but image 8x6");
  expect_io_error([&] { ds::read_label_mask(set.images[0], set, cv::Size(16, 6)); },
                  set.resolve(set.images[0].mask), "mask 8x6 but image 16x6");
  expect_io_error([&] { ds::read_object_mask(image.objects[0], image, set); }, set.resolve(image.instances),
                  "expected the instance image to be an 8-bit single-channel image, found CV_8UC3");
}

TEST(CaptionFiles, UndecodableOrMissingImageIsAnIoError) {
  TempDir dir;
  write_flickr_images(dir.path());
  const auto set = ds::read_caption_set(kFlickr, dir.path().string());
  write_text(set.images[1].path, "this is not a JPEG");
  expect_io_error([&] { ds::read_caption_image(set.images[1]); }, set.images[1].path, "not a decodable image");
  write_text(set.images[2].path, "");
  expect_io_error([&] { ds::read_caption_image(set.images[2]); }, set.images[2].path, "empty file");
  fs::remove(set.images[0].path);
  expect_io_error([&] { ds::read_caption_image(set.images[0]); }, set.images[0].path, "file does not exist");
}

// ---------------------------------------------------------------------------------
// Bad caption files

TEST(CaptionSet, MissingImageFileNamesTheEntryAndPath) {
  TempDir dir;
  write_flickr_images(dir.path());
  fs::remove(dir.path() / kFlickrFiles[1]);
  expect_io_error([&] { ds::read_caption_set(kFlickr, dir.path().string()); }, kFlickr,
                  "images[1]: image file does not exist: " + (dir.path() / kFlickrFiles[1]).string());
  // Without the check the file is read all the same.
  EXPECT_EQ(ds::read_caption_set(kFlickr, dir.path().string(), ds::CaptionReadOptions().check_files(false))
                .images.size(),
            3u);
}

TEST(CaptionSet, MissingMaskFileNamesTheField) {
  TempDir dir;
  write_scene_files(dir.path());
  fs::remove(dir.path() / "instances/000001.png");
  expect_io_error([&] { ds::read_caption_set(kScenes, dir.path().string()); }, kScenes,
                  "images[1].instances: file does not exist: " + (dir.path() / "instances/000001.png").string());
}

TEST(CaptionSet, MissingJsonFileIsAnIoError) {
  TempDir dir;
  expect_io_error([&] { ds::read_caption_set(dir.file("nothing.json")); }, dir.file("nothing.json"),
                  "file does not exist");
}

struct BadCaptionFile {
  const char* name;
  const char* json;
  const char* fragment;
};

void PrintTo(const BadCaptionFile& c, std::ostream* os) { *os << c.name; }

class CaptionBadFile : public ::testing::TestWithParam<BadCaptionFile> {};

TEST_P(CaptionBadFile, ThrowsIoErrorNamingTheFieldAndProblem) {
  TempDir dir;
  const auto path = dir.file("captions.json");
  write_text(path, GetParam().json);
  expect_io_error([&] { ds::read_caption_set(path, "", ds::CaptionReadOptions().check_files(false)); }, path,
                  GetParam().fragment);
}

#define CAPTION_IMAGE(extra) R"({"filename": "a.jpg", "split": "train", "sentences": [{"tokens": ["a"]}])" extra "}"

INSTANTIATE_TEST_SUITE_P(
    Captions, CaptionBadFile,
    ::testing::Values(
        BadCaptionFile{"Malformed", "{\"images\": [\n  {\"filename\": \"a.jpg\",}\n]}",
                       "malformed JSON: parse error at line 2, column "},
        BadCaptionFile{"Empty", "", "malformed JSON: parse error at line 1, column 1"},
        BadCaptionFile{"TopLevelArray", "[]", "expected a JSON object at the top level, found array"},
        BadCaptionFile{"NoImages", R"({"dataset": "coco"})", "missing the 'images' array"},
        BadCaptionFile{"ImagesNotArray", R"({"images": {}})", "images: expected an array, found object"},
        BadCaptionFile{"DatasetNotString", R"({"dataset": 3, "images": []})", "dataset: expected a string"},
        BadCaptionFile{"ImageNotObject", R"({"images": [)" CAPTION_IMAGE("") R"(, 5]})",
                       "images[1]: expected an object, found number"},
        BadCaptionFile{"NoFilename", R"({"images": [{"split": "train", "sentences": []}]})",
                       "images[0]: missing 'filename'"},
        BadCaptionFile{"EmptyFilename", R"({"images": [{"filename": "", "split": "train", "sentences": []}]})",
                       "images[0].filename: an empty file name"},
        BadCaptionFile{"SplitNotString", R"({"images": [{"filename": "a.jpg", "split": 1, "sentences": []}]})",
                       "images[0].split: expected a string, found number"},
        BadCaptionFile{"UnknownSplit", R"({"images": [{"filename": "a.jpg", "split": "tran", "sentences": []}]})",
                       "images[0].split: unknown split 'tran' (expected train, val, test or restval)"},
        BadCaptionFile{"ImgidFraction", R"({"images": [)" CAPTION_IMAGE(R"(, "imgid": 1.5)") "]}",
                       "images[0].imgid: expected an integer, found a fraction 1.5"},
        BadCaptionFile{"NoSentences", R"({"images": [{"filename": "a.jpg", "split": "val"}]})",
                       "images[0]: missing the 'sentences' array"},
        BadCaptionFile{"SentenceWithoutTokens",
                       R"({"images": [{"filename": "a.jpg", "split": "train", "sentences": [{"tokens": ["a"]}]},
                                      {"filename": "b.jpg", "split": "train", "sentences": [{"tokens": ["b"]}]},
                                      {"filename": "c.jpg", "split": "val", "sentences": []},
                                      {"filename": "d.jpg", "split": "test",
                                       "sentences": [{"tokens": ["d"]}, {"tokens": [], "raw": ""}]}]})",
                       "images[3].sentences[1]: a sentence without tokens"},
        BadCaptionFile{"SentenceMissingTokens",
                       R"({"images": [{"filename": "a.jpg", "split": "train", "sentences": [{"raw": "a dog"}]}]})",
                       "images[0].sentences[0]: a sentence without tokens"},
        BadCaptionFile{"TokensNotArray",
                       R"({"images": [{"filename": "a.jpg", "split": "train", "sentences": [{"tokens": "a dog"}]}]})",
                       "images[0].sentences[0].tokens: expected an array, found string"},
        BadCaptionFile{"DuplicateFilename",
                       R"({"images": [{"filename": "a.jpg", "split": "train", "sentences": []},
                                      {"filename": "b.jpg", "split": "train", "sentences": []},
                                      {"filename": "a.jpg", "split": "val", "sentences": []}]})",
                       "images[2].filename: duplicate file name 'a.jpg' (also images[0])"},
        BadCaptionFile{"TokenNotString", R"({"images": [{"filename": "a.jpg", "split": "train",
                                                        "sentences": [{"tokens": ["a", 2]}]}]})",
                       "images[0].sentences[0].tokens[1]: expected a string, found number"},
        BadCaptionFile{"EmptyToken", R"({"images": [{"filename": "a.jpg", "split": "train",
                                                    "sentences": [{"tokens": ["a", ""]}]}]})",
                       "images[0].sentences[0].tokens[1]: an empty token"},
        BadCaptionFile{"SentenceImgidDiffers", R"({"images": [{"filename": "a.jpg", "split": "train", "imgid": 4,
                                                              "sentences": [{"tokens": ["a"], "imgid": 3}]}]})",
                       "images[0].sentences[0].imgid: 3 but the image's imgid is 4"},
        BadCaptionFile{"BoxOfThree", R"({"images": [)" CAPTION_IMAGE(R"(, "objects": [{"label": 1, "bbox": [1, 2, 3]}])") "]}",
                       "images[0].objects[0].bbox: expected an array [x, y, width, height], found an array of 3"},
        BadCaptionFile{"EmptyBox", R"({"images": [)" CAPTION_IMAGE(R"(, "objects": [{"label": 1, "bbox": [1, 2, 0, 3]}])") "]}",
                       "images[0].objects[0].bbox: expected x, y >= 0 and width, height > 0, found [1,2,0,3]"},
        BadCaptionFile{"InstanceWithoutImage",
                       R"({"images": [)" CAPTION_IMAGE(R"(, "objects": [{"label": 1, "bbox": [1, 2, 1, 3], "instance": 1}])") "]}",
                       "images[0].objects[0]: an instance without an instance image"},
        BadCaptionFile{"InstanceOutOfRange",
                       R"({"images": [)" CAPTION_IMAGE(R"(, "instances": "i.png", "objects": [{"label": 1, "bbox": [1, 2, 1, 3], "instance": 256}])") "]}",
                       "images[0].objects[0].instance: expected a pixel value 1..255, found 256"},
        BadCaptionFile{"RelationIndexOutOfRange",
                       R"({"images": [)" CAPTION_IMAGE(R"(, "objects": [{"label": 1, "bbox": [1, 2, 1, 3]}],
                                       "relation": {"subject": 0, "predicate": "above", "object": 1})") "]}",
                       "images[0].relation.object: object index 1 outside 0..0 (1 objects)"},
        BadCaptionFile{"RelationWithoutPredicate",
                       R"({"images": [)" CAPTION_IMAGE(R"(, "objects": [{"label": 1, "bbox": [1, 2, 1, 3]}, {"label": 2, "bbox": [0, 0, 1, 1]}],
                                       "relation": {"subject": 0, "object": 1})") "]}",
                       "images[0].relation: missing 'predicate'"},
        BadCaptionFile{"MaskNotString", R"({"images": [)" CAPTION_IMAGE(R"(, "mask": 3)") "]}",
                       "images[0].mask: expected a string, found number"}),
    [](const ::testing::TestParamInfo<BadCaptionFile>& info) { return std::string(info.param.name); });

// ---------------------------------------------------------------------------------
// Vocabulary

TEST(Vocabulary, BuildOrdersByCountThenAlphabetically) {
  const auto vocab = ds::Vocabulary::build({{"a", "dog", "runs"}, {"a", "cat", "runs"}, {"a", "bird"}, {"zebra"}});
  EXPECT_EQ(vocab.words(),
            (Tokens{"<pad>", "<start>", "<end>", "<unk>", "a", "runs", "bird", "cat", "dog", "zebra"}));
  EXPECT_EQ(vocab.size(), 10);
  EXPECT_EQ(vocab.id("a"), 4);
  EXPECT_EQ(vocab.id("runs"), 5);
  EXPECT_EQ(vocab.id("zebra"), 9);
  EXPECT_EQ(vocab.word(7), "cat");
  EXPECT_EQ(vocab.id("<end>"), ds::Vocabulary::kEnd);
  // Another order of the same captions gives the same ids.
  EXPECT_EQ(ds::Vocabulary::build({{"zebra"}, {"a", "bird"}, {"runs", "cat", "a"}, {"dog", "runs", "a"}}), vocab);
}

TEST(Vocabulary, MinCountDropsRareWordsToUnk) {
  const auto vocab = ds::Vocabulary::build({{"a", "dog", "runs"}, {"a", "cat", "runs"}, {"a", "bird"}}, 2);
  EXPECT_EQ(vocab.words(), (Tokens{"<pad>", "<start>", "<end>", "<unk>", "a", "runs"}));
  EXPECT_EQ(vocab.id("dog"), ds::Vocabulary::kUnk);
  EXPECT_FALSE(vocab.contains("dog"));
  EXPECT_TRUE(vocab.contains("runs"));
  EXPECT_EQ(vocab.id("never seen"), ds::Vocabulary::kUnk);
  EXPECT_EQ(ds::Vocabulary::build({{"a"}}, 2).size(), 4);
  EXPECT_TRUE(contains(error_message([] { ds::Vocabulary::build({{"a"}}, 0); }), "expected min_count >= 1, got 0"));
  EXPECT_TRUE(contains(error_message([] { ds::Vocabulary::build({{"a"}, {"b", ""}}); }),
                       "an empty token in token list 1"));
}

TEST(Vocabulary, SpecialWordsInCaptionsAreNotCounted) {
  const auto vocab = ds::Vocabulary::build({{"<unk>", "a", "<end>"}, {"<unk>", "<pad>"}});
  EXPECT_EQ(vocab.words(), (Tokens{"<pad>", "<start>", "<end>", "<unk>", "a"}));
  EXPECT_EQ(ds::Vocabulary().size(), 4);
}

TEST(Vocabulary, EncodeWrapsAndDecodeUnwraps) {
  const auto vocab = ds::Vocabulary::build({{"a", "dog", "runs"}, {"a", "cat", "runs"}});
  // a=4 runs=5 cat=6 dog=7
  EXPECT_EQ(vocab.encode({"a", "cat", "flies"}), (std::vector<std::int64_t>{1, 4, 6, 3, 2}));
  EXPECT_EQ(vocab.encode({}), (std::vector<std::int64_t>{1, 2}));
  EXPECT_EQ(vocab.decode({1, 4, 6, 3, 2, 7, 0}), (Tokens{"a", "cat", "<unk>"}));
  EXPECT_EQ(vocab.decode({4, 0, 7, 5}), (Tokens{"a", "dog", "runs"}));
  EXPECT_EQ(vocab.decode(vocab.encode({"dog", "runs"})), (Tokens{"dog", "runs"}));
  EXPECT_TRUE(contains(error_message([&] { vocab.decode({1, 8}); }), "expected ids in 0..7, got 8"));
  EXPECT_TRUE(contains(error_message([&] { vocab.word(-1); }), "expected an id in 0..7, got -1"));
}

TEST(Vocabulary, JsonRoundTripKeepsEveryId) {
  const auto vocab = ds::Vocabulary::build({{"a", "dog", "runs"}, {"a", "cat", "runs"}, {"ünïcode"}});
  const auto j = vocab.to_json();
  EXPECT_EQ(j.at("words").size(), 9u);
  EXPECT_EQ(j.at("words")[4], "a");
  const auto back = ds::Vocabulary::from_json(nlohmann::json::parse(j.dump()));
  EXPECT_EQ(back, vocab);
  for (const auto& word : vocab.words()) EXPECT_EQ(back.id(word), vocab.id(word)) << word;
}

TEST(Vocabulary, FromJsonRejectsMalformedInput) {
  using nlohmann::json;
  const auto message = [](const json& j) { return error_message([&] { ds::Vocabulary::from_json(j); }); };
  EXPECT_TRUE(contains(message(json::array()), "vocabulary: expected an object with a \"words\" array, got array"));
  EXPECT_TRUE(contains(message(json{{"words", "a"}}), "\"words\" must be an array, got string"));
  EXPECT_TRUE(contains(message(json{{"words", {"<pad>", "<start>"}}}), "expected at least the 4 special words, got 2"));
  EXPECT_TRUE(contains(message(json{{"words", {"<pad>", "<end>", "<start>", "<unk>"}}}),
                       "words[1] must be \"<start>\", got \"<end>\""));
  EXPECT_TRUE(contains(message(json{{"words", {"<pad>", "<start>", "<end>", "<unk>", "a", 3}}}),
                       "words[5] must be a string, got number"));
  EXPECT_TRUE(contains(message(json{{"words", {"<pad>", "<start>", "<end>", "<unk>", "a", "b", "a"}}}),
                       "words[6] \"a\" repeats words[4]"));
  EXPECT_TRUE(contains(message(json{{"words", {"<pad>", "<start>", "<end>", "<unk>", ""}}}), "words[4] is empty"));
}

// ---------------------------------------------------------------------------------
// Batches

TEST(CaptionBatch, PadsToTheLongestAndCountsStartAndEnd) {
  const auto vocab = ds::Vocabulary::build({{"a", "dog", "runs"}, {"a", "cat", "runs"}});
  const auto batch = ds::make_caption_batch(vocab, {{"a", "dog"}, {"a", "cat", "runs", "fast"}, {}});
  EXPECT_EQ(batch.tokens.scalar_type(), torch::kInt64);
  EXPECT_EQ(batch.lengths.scalar_type(), torch::kInt64);
  const auto expected = torch::tensor({1, 4, 7, 2, 0, 0,  //
                                       1, 4, 6, 5, 3, 2,  //
                                       1, 2, 0, 0, 0, 0},
                                      torch::kInt64)
                            .view({3, 6});
  EXPECT_TRUE(torch::equal(batch.tokens, expected)) << batch.tokens;
  EXPECT_TRUE(torch::equal(batch.lengths, torch::tensor({4, 6, 2}, torch::kInt64))) << batch.lengths;
}

TEST(CaptionBatch, TruncatesLongCaptionsKeepingEnd) {
  const auto vocab = ds::Vocabulary::build({{"a", "dog", "runs"}, {"a", "cat", "runs"}});
  const auto batch = ds::make_caption_batch(vocab, {{"a", "cat", "runs", "fast"}, {"dog"}}, 4);
  const auto expected = torch::tensor({1, 4, 6, 2,  //
                                       1, 7, 2, 0},
                                      torch::kInt64)
                            .view({2, 4});
  EXPECT_TRUE(torch::equal(batch.tokens, expected)) << batch.tokens;
  EXPECT_TRUE(torch::equal(batch.lengths, torch::tensor({4, 3}, torch::kInt64))) << batch.lengths;
  // A cap above every length changes nothing.
  EXPECT_TRUE(torch::equal(ds::make_caption_batch(vocab, {{"dog"}}, 10).tokens,
                           torch::tensor({1, 7, 2}, torch::kInt64).view({1, 3})));
  const auto two = ds::make_caption_batch(vocab, {{"dog", "runs"}}, 2);
  EXPECT_TRUE(torch::equal(two.tokens, torch::tensor({1, 2}, torch::kInt64).view({1, 2})));
}

TEST(CaptionBatch, EmptyBatchAndBadCap) {
  const ds::Vocabulary vocab;
  const auto empty = ds::make_caption_batch(vocab, {});
  EXPECT_EQ(empty.tokens.sizes(), (std::vector<std::int64_t>{0, 0}));
  EXPECT_EQ(empty.lengths.sizes(), (std::vector<std::int64_t>{0}));
  EXPECT_TRUE(contains(error_message([&] { ds::make_caption_batch(vocab, {{"a"}}, 1); }),
                       "expected max_length 0 (no cap) or >= 2 (<start> and <end>), got 1"));
  EXPECT_TRUE(contains(error_message([&] { ds::make_caption_batch(vocab, {{"a"}}, -3); }), "got -3"));
}
