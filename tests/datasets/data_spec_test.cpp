#include <attend/atomic_file.h>
#include <attend/datasets/data_spec.h>
#include <attend/datasets/idx.h>
#include <attend/io_error.h>

#include <test_support.h>

#include <torch/torch.h>

#include <gtest/gtest.h>

#include <filesystem>

namespace ds = attend::datasets;
using attend::testing::contains;
using attend::testing::error_message;
using attend::testing::TempDir;

namespace {

/// 40 training and 20 test items of 10x10 digits; training labels sorted by class.
void write_digits(const std::string& dir) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(4);
  ds::write_idx(dir + "/train-images-idx3-ubyte", torch::randint(1, 256, {40, 10, 10}, gen, torch::kUInt8));
  ds::write_idx(dir + "/train-labels-idx1-ubyte", (torch::arange(40) / 4).to(torch::kUInt8));
  ds::write_idx(dir + "/t10k-images-idx3-ubyte", torch::randint(1, 256, {20, 10, 10}, gen, torch::kUInt8));
  ds::write_idx(dir + "/t10k-labels-idx1-ubyte", (torch::arange(20) % 10).to(torch::kUInt8));
}

}  // namespace

// The JSON is the one checkpoints have always stored: these literals are what the
// CLI wrote before DataSpec existed, so old checkpoints compare equal.
TEST(DataSpec, JsonIsTheStoredFormAndRoundTrips) {
  const nlohmann::json idx = {{"kind", "idx"}, {"dir", "data/mnist"}};
  const nlohmann::json scenes = {{"kind", "scenes"}, {"scenes", "cluttered"}, {"source", "data/mnist"},
                                 {"canvas", 60},     {"fragments", 4},        {"fragment_size", 8},
                                 {"seed", 1}};
  const nlohmann::json augmented = {{"kind", "idx"}, {"dir", "d"}, {"shift", 3}, {"rotate", 10.0},
                                    {"scale_jitter", 0.1}, {"seed", 7}};
  for (const auto& j : {idx, scenes, augmented}) {
    EXPECT_EQ(ds::DataSpec::from_json(j).to_json(), j) << j.dump();
  }
  EXPECT_EQ(ds::DataSpec().kind(ds::DataKind::kIdx).dir("data/mnist").to_json(), idx);
  const auto translated = ds::DataSpec()
                              .kind(ds::DataKind::kScenes)
                              .scenes(ds::SceneKind::kTranslated)
                              .fragments(4)
                              .to_json();
  EXPECT_EQ(translated["fragments"], 0) << "translated scenes have no clutter, whatever fragments says";
  EXPECT_TRUE(contains(error_message([] { ds::DataSpec::from_json({{"kind", "hdf5"}}); }), "unknown kind 'hdf5'"));
  EXPECT_TRUE(contains(error_message([] { ds::DataSpec::from_json({{"kind", "idx"}}); }), "missing 'dir'"));
  EXPECT_TRUE(contains(error_message([] { ds::DataSpec::from_json({{"kind", "idx"}, {"dir", "d"}, {"rotate", 200}}); }),
                            "rotation must be in 0..180 degrees, got 200"));
}

TEST(DataSpec, BuildsTrainingValidationAndTestSources) {
  TempDir dir;
  write_digits(dir.path().string());
  const auto spec = ds::DataSpec().kind(ds::DataKind::kIdx).dir(dir.path().string());
  const auto s = spec.training_sources(8);
  EXPECT_EQ(s.train->size(), 32);
  ASSERT_TRUE(s.validation);
  EXPECT_EQ(s.validation->size(), 8);
  // The last 8 training items are held out.
  EXPECT_TRUE(torch::equal(s.validation->get({0}, 0).labels, torch::tensor({8}, torch::kInt64)));
  EXPECT_EQ(spec.evaluation_source("test")->size(), 20);
  EXPECT_FALSE(spec.training_sources(0).validation);
  EXPECT_TRUE(contains(error_message([&] { spec.training_sources(40); }),
                            "validation count must be between 0 and 39 (the training split has 40 items), got 40"));
  EXPECT_TRUE(contains(error_message([&] { ds::DataSpec(spec).shift(10).training_sources(0); }),
                            "shift must be smaller than the 10x10 images, got 10"));
  // Augmented training changes training images only, drawn afresh each epoch.
  const auto shifted = ds::DataSpec(spec).shift(3).seed(5).training_sources(8);
  EXPECT_FALSE(torch::equal(shifted.train->get({0, 1, 2}, 0).images, shifted.train->get({0, 1, 2}, 1).images));
  EXPECT_TRUE(torch::equal(shifted.validation->get({0}, 0).images, s.validation->get({0}, 0).images));

  const auto scenes = ds::DataSpec()
                          .kind(ds::DataKind::kScenes)
                          .scenes(ds::SceneKind::kCluttered)
                          .source(dir.path().string())
                          .canvas(24)
                          .fragments(2)
                          .fragment_size(4)
                          .seed(3);
  const auto t = scenes.training_sources(4);
  EXPECT_EQ(t.train->height(), 24);
  EXPECT_FALSE(torch::equal(t.train->get({0}, 0).images, t.train->get({0}, 1).images)) << "fresh each epoch";
  EXPECT_TRUE(torch::equal(t.validation->get({0}, 0).images, t.validation->get({0}, 1).images)) << "fixed";
  const auto test = scenes.evaluation_source("test");
  EXPECT_TRUE(torch::equal(test->get({0, 1}, 0).images, test->get({0, 1}, 9).images));
  EXPECT_THROW(ds::DataSpec(scenes).source(dir.file("none")).evaluation_source("test"), attend::IoError);
}

TEST(AtomicFile, CommitsWholeFilesThroughUniqueTemporariesAndCleansUpOnFailure) {
  TempDir dir;
  const auto target = dir.file("sub/out.json");
  attend::write_file_atomically(target, "first");
  EXPECT_EQ(attend::testing::read_bytes(target), (std::vector<unsigned char>{'f', 'i', 'r', 's', 't'}));
  {
    attend::AtomicFile a(target), b(target);
    EXPECT_NE(a.temp_path(), b.temp_path()) << "two writers of one target never share a temporary file";
    EXPECT_EQ(std::filesystem::path(a.temp_path()).parent_path(), std::filesystem::path(target).parent_path());
    EXPECT_EQ(std::filesystem::path(a.temp_path()).extension(), ".json") << "the extension is kept";
    a.write("from a");
    b.write("from b");
    b.commit();
    // a is abandoned (as by an exception): its temporary file goes, the target stays b's.
  }
  const auto bytes = attend::testing::read_bytes(target);
  EXPECT_EQ(std::string(bytes.begin(), bytes.end()), "from b");
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir.file("sub")), {}), 1);
  // A target that is a folder cannot be replaced: the error names it, nothing is left behind.
  std::filesystem::create_directories(dir.file("sub/folder/x"));
  try {
    attend::write_file_atomically(dir.file("sub/folder"), "data");
    ADD_FAILURE() << "replaced a folder";
  } catch (const attend::IoError& e) {
    EXPECT_EQ(e.path(), dir.file("sub/folder"));
    EXPECT_NE(std::string(e.what()).find("cannot rename the temporary file into place"), std::string::npos);
  }
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir.file("sub")), {}), 2);
}
