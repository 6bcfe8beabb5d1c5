#include <attend/atomic_file.h>
#include <attend/datasets/data_spec.h>
#include <attend/datasets/idx.h>
#include <attend/io_error.h>

#include <test_support.h>

#include <torch/torch.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <numeric>

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
  EXPECT_EQ(ds::DataSpec().kind(ds::DataKind::kIdx).dir("data/mnist").validation(ds::ValidationSplit::kLast).to_json(),
            idx);
  const auto stratified = ds::DataSpec().kind(ds::DataKind::kIdx).dir("d").seed(3).to_json();
  EXPECT_EQ(stratified["validation"], "stratified") << "the default for new runs";
  EXPECT_EQ(stratified["seed"], 3);
  EXPECT_EQ(ds::DataSpec::from_json(stratified).to_json(), stratified);
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
  const auto spec =
      ds::DataSpec().kind(ds::DataKind::kIdx).dir(dir.path().string()).validation(ds::ValidationSplit::kLast);
  const auto s = spec.training_sources(8);
  EXPECT_EQ(s.train->size(), 32);
  ASSERT_TRUE(s.validation);
  EXPECT_EQ(s.validation->size(), 8);
  // The last 8 training items are held out: all of class 8 and 9 in this sorted file.
  EXPECT_TRUE(torch::equal(s.validation->get({0}, 0).labels, torch::tensor({8}, torch::kInt64)));
  EXPECT_EQ(s.validation_indices, (std::vector<std::int64_t>{32, 33, 34, 35, 36, 37, 38, 39}));
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

// A stratified subset holds each class in proportion (within one of the expected
// count), is the same for the same seed, and another for another seed; training and
// validation together are the whole split, without overlap.
TEST(DataSpec, StratifiedValidationIsProportionalSeededAndDisjoint) {
  // 1000 labels sorted by class, classes of 50..150 items.
  std::vector<std::int64_t> labels;
  for (std::int64_t c = 0; c < 10; ++c) {
    for (std::int64_t i = 0; i < 50 + 10 * ((c * 3) % 11); ++i) labels.push_back(c);
  }
  const auto t = torch::tensor(labels, torch::kInt64);
  const auto n = static_cast<double>(labels.size());
  const auto a = ds::stratified_indices(t, 97, 1);
  ASSERT_EQ(a.size(), 97u);
  EXPECT_TRUE(std::is_sorted(a.begin(), a.end()));
  EXPECT_EQ(std::adjacent_find(a.begin(), a.end()), a.end()) << "no index twice";
  std::vector<double> held(10, 0.0), total(10, 0.0);
  for (auto l : labels) total[static_cast<size_t>(l)] += 1;
  for (auto i : a) held[static_cast<size_t>(labels[static_cast<size_t>(i)])] += 1;
  for (size_t c = 0; c < 10; ++c) EXPECT_LE(std::abs(held[c] - 97.0 * total[c] / n), 1.0) << "class " << c;
  EXPECT_EQ(ds::stratified_indices(t, 97, 1), a);
  EXPECT_NE(ds::stratified_indices(t, 97, 2), a);
  EXPECT_TRUE(ds::stratified_indices(t, 0, 1).empty());

  TempDir dir;
  write_digits(dir.path().string());
  const auto spec = ds::DataSpec().kind(ds::DataKind::kIdx).dir(dir.path().string()).seed(4);
  const auto s = spec.training_sources(10);
  EXPECT_EQ(s.train->size(), 30);
  EXPECT_EQ(s.validation->size(), 10);
  // Every class (4 items each) gives exactly one validation item.
  std::vector<std::int64_t> rows(10);
  std::iota(rows.begin(), rows.end(), 0);
  EXPECT_TRUE(torch::equal(std::get<0>(s.validation->get(rows, 0).labels.sort()), torch::arange(10)));
  const auto images = ds::read_idx(dir.file("train-images-idx3-ubyte"));
  for (size_t k = 0; k < s.validation_indices.size(); ++k) {
    const auto i = s.validation_indices[k];
    EXPECT_TRUE(torch::allclose(s.validation->get({static_cast<std::int64_t>(k)}, 0).images[0][0],
                                images[i].to(torch::kFloat32) / 255))
        << "validation item " << k << " is training item " << i;
  }
}

// Object scenes as a DataSpec: the JSON round-trips, training scenes change with the
// epoch and carry multi-hot labels of the objects drawn, validation comes from the
// val split and the test source is the generator's test split.
TEST(DataSpec, ObjectScenesAreMultiLabelSources) {
  TempDir dir;
  // 28x28 items with a bright block, labels i % 10.
  for (const auto& [prefix, n] : std::vector<std::pair<std::string, int>>{{"train", 60}, {"t10k", 30}}) {
    auto gen = at::make_generator<at::CPUGeneratorImpl>(prefix == "train" ? 9 : 10);
    auto images = torch::zeros({n, 28, 28}, torch::kUInt8);
    images.narrow(1, 6, 16).narrow(2, 8, 12).copy_(torch::randint(100, 256, {n, 16, 12}, gen, torch::kUInt8));
    ds::write_idx(dir.file(prefix + "-images-idx3-ubyte"), images);
    ds::write_idx(dir.file(prefix + "-labels-idx1-ubyte"), (torch::arange(n) % 10).to(torch::kUInt8));
  }
  const auto spec = ds::DataSpec()
                        .kind(ds::DataKind::kObjects)
                        .objects(ds::ObjectSceneOptions().canvas(32).objects_min(1).objects_max(3))
                        .source(dir.path().string())
                        .count(12)
                        .test_count(5)
                        .seed(3);
  EXPECT_TRUE(spec.multi_label());
  const auto json = spec.to_json();
  EXPECT_EQ(json["kind"], "objects");
  EXPECT_EQ(ds::DataSpec::from_json(json).to_json(), json);
  const auto sources = spec.training_sources(4);
  ASSERT_EQ(sources.train->size(), 12);
  ASSERT_EQ(sources.validation->size(), 4);
  const auto generator = spec.object_generator();
  const auto batch = sources.train->get({0, 1, 2}, 2);
  ASSERT_EQ(batch.labels.sizes(), (std::vector<std::int64_t>{3, 10}));
  for (std::int64_t i = 0; i < 3; ++i) {
    const auto scene = generator->generate(ds::ObjectSplit::kTrain, i, 2);
    auto expected = torch::zeros({10});
    for (const auto& ob : scene.objects) expected[ob.label] = 1;
    EXPECT_TRUE(batch.labels[i].equal(expected)) << i;
    EXPECT_TRUE(batch.images[i][0].equal(scene.image.to(torch::kFloat32) / 255)) << i;
  }
  // Another epoch, other scenes; validation and test stay fixed.
  EXPECT_FALSE(sources.train->get({0}, 3).images.equal(sources.train->get({0}, 2).images));
  EXPECT_TRUE(sources.validation->get({1}, 0).images.equal(sources.validation->get({1}, 5).images));
  const auto test = spec.evaluation_source("test");
  ASSERT_EQ(test->size(), 5);
  EXPECT_TRUE(test->get({4}, 0).images[0][0].equal(
      generator->generate(ds::ObjectSplit::kTest, 4, 0).image.to(torch::kFloat32) / 255));
  EXPECT_THROW(ds::DataSpec(spec).count(0).validate(), c10::Error);
}

TEST(Labels, ALabelOutsideTheClassesIsNamedWithItsFileAndIndex) {
  TempDir dir;
  write_digits(dir.path().string());
  const auto labels = dir.file("train-labels-idx1-ubyte");
  auto values = (torch::arange(40) / 4).to(torch::kUInt8);
  values[33] = 200;
  values[36] = 12;
  ds::write_idx(labels, values);
  const auto spec = ds::DataSpec().kind(ds::DataKind::kIdx).dir(dir.path().string());
  // Without a class count nothing is checked (as before); with one, the file and the
  // first bad label's position in it are named, also when validation reorders items.
  EXPECT_NO_THROW(spec.training_sources(5));
  for (const auto split : {ds::ValidationSplit::kLast, ds::ValidationSplit::kStratified}) {
    auto s = spec;
    s.validation(split);
    try {
      s.training_sources(5, 10);
      ADD_FAILURE() << "label 200 accepted";
    } catch (const attend::IoError& e) {
      EXPECT_EQ(std::string(e.what()),
                labels + ": label 200 at index 33 is outside 0..9 (2 of 40 labels are; 10 classes)");
    }
  }
  EXPECT_NO_THROW(spec.training_sources(5, 201)) << "a model with 201 classes has a class 200";
  EXPECT_NO_THROW(spec.evaluation_source("test", 10));
  ds::write_idx(dir.file("t10k-labels-idx1-ubyte"), torch::full({20}, 10, torch::kUInt8));
  EXPECT_THROW(spec.evaluation_source("test", 10), attend::IoError);

  // select() keeps where each item came from.
  const auto digits = ds::load_split(dir.path().string(), "train");
  const auto picked = ds::select(digits, {36, 2});
  try {
    ds::check_labels(picked, 10);
    ADD_FAILURE() << "label 12 accepted";
  } catch (const attend::IoError& e) {
    EXPECT_EQ(std::string(e.what()), labels + ": label 12 at index 36 is outside 0..9 (1 of 2 labels are; 10 classes)");
  }
}
