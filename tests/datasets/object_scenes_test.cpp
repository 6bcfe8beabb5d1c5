#include <attend/datasets/captions.h>
#include <attend/datasets/object_scenes.h>

#include <torch/torch.h>

#include <opencv2/imgcodecs.hpp>

#include <gtest/gtest.h>
#include <test_support.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

namespace ds = attend::datasets;
using attend::testing::TempDir;

namespace {

/// Synthetic 28x28 items: item i (label (i + i / 10) % 10, so that every tenth item
/// still covers all classes) is a bar whose size depends on the
/// item, with a soft one-pixel rim (values 40) around a bright core (value 120 + i % 100),
/// so that thresholds matter and every item is distinguishable.
ds::Digits make_items(std::int64_t n, std::int64_t salt) {
  auto images = torch::zeros({n, 28, 28}, torch::kUInt8);
  auto a = images.accessor<std::uint8_t, 3>();
  for (std::int64_t i = 0; i < n; ++i) {
    const auto x0 = 4 + (i + salt) % 5, x1 = 20 + i % 4, y0 = 3 + i % 3, y1 = 22 + (i + salt) % 4;
    for (std::int64_t y = y0 - 1; y <= y1 + 1; ++y) {
      for (std::int64_t x = x0 - 1; x <= x1 + 1; ++x) {
        const bool core = y >= y0 && y <= y1 && x >= x0 && x <= x1;
        a[i][y][x] = static_cast<std::uint8_t>(core ? 120 + (i % 100) : 40);
      }
    }
  }
  const auto i = torch::arange(n, torch::kInt64);
  return {images, (i + i.div(10, "floor")) % 10};
}

std::shared_ptr<ds::ObjectSceneGenerator> make_generator(ds::ObjectSceneOptions options, std::uint64_t seed = 7) {
  std::vector<ds::Digits> train{make_items(300, 0)}, test{make_items(100, 1)};
  if (options.items() == ds::ObjectItems::kBoth) {
    train.push_back(make_items(200, 2));
    test.push_back(make_items(50, 3));
  }
  return std::make_shared<ds::ObjectSceneGenerator>(options, seed, train, test);
}

std::uint64_t hash_bytes(const torch::Tensor& t, std::uint64_t h = 1469598103934665603ULL) {
  const auto c = t.contiguous();
  const auto* p = c.data_ptr<std::uint8_t>();
  for (std::int64_t i = 0; i < c.numel(); ++i) h = (h ^ p[i]) * 1099511628211ULL;
  return h;
}

std::uint64_t hash_scene(const ds::ObjectScene& s) {
  auto h = hash_bytes(s.labels, hash_bytes(s.instances, hash_bytes(s.image)));
  for (const auto& caption : s.captions) {
    for (const auto& w : caption) {
      for (char ch : w) h = (h ^ static_cast<std::uint8_t>(ch)) * 1099511628211ULL;
    }
  }
  return h;
}

std::string joined(const std::vector<std::string>& tokens) { return ds::ObjectScene::sentence(tokens); }

const char* const kPlaces[] = {"top left", "top", "top right", "left", "center",
                               "right", "bottom left", "bottom", "bottom right"};

}  // namespace

// The same seed gives the same bytes and captions; another seed or epoch other ones;
// val and test do not move with the epoch. The golden hash pins the bytes across
// machines and versions (change it only with a note in docs/data.md).
TEST(ObjectScenes, SameSeedSameBytesOnEveryMachine) {
  const auto options = ds::ObjectSceneOptions().objects_min(1).objects_max(4).colour(true).background(
      ds::ObjectBackground::kClutter);
  const auto a = make_generator(options), b = make_generator(options), other = make_generator(options, 8);
  std::uint64_t total = 0;
  for (std::int64_t i = 0; i < 40; ++i) {
    const auto sa = a->generate(ds::ObjectSplit::kTrain, i, 3);
    EXPECT_EQ(hash_scene(sa), hash_scene(b->generate(ds::ObjectSplit::kTrain, i, 3))) << i;
    EXPECT_NE(hash_scene(sa), hash_scene(other->generate(ds::ObjectSplit::kTrain, i, 3))) << i;
    EXPECT_NE(hash_scene(sa), hash_scene(a->generate(ds::ObjectSplit::kTrain, i, 4))) << i;
    EXPECT_EQ(hash_scene(a->generate(ds::ObjectSplit::kTest, i, 0)), hash_scene(a->generate(ds::ObjectSplit::kTest, i, 9)));
    total = total * 31 + hash_scene(sa);
  }
  EXPECT_EQ(total, 10375498872245755762u) << "golden hash";
}

// Every object lies inside the canvas; its visible mask lies inside its tight box and
// its centre in its cell; where there is one object on black, its mask is exactly the
// pasted pixels above the threshold and its box bounds them.
TEST(ObjectScenes, ObjectsInsideMasksInsideBoxesAndEqualToThresholdedPixels) {
  for (const auto& options :
       {ds::ObjectSceneOptions().objects_min(1).objects_max(1),
        ds::ObjectSceneOptions().objects_min(1).objects_max(4).canvas(96).max_overlap(0.3),
        ds::ObjectSceneOptions().objects_min(3).objects_max(3).items(ds::ObjectItems::kBoth).canvas(80)}) {
    const auto g = make_generator(options);
    const auto s = options.canvas();
    for (std::int64_t i = 0; i < 150; ++i) {
      const auto scene = g->generate(ds::ObjectSplit::kTrain, i);
      const auto n = static_cast<std::int64_t>(scene.objects.size());
      ASSERT_GE(n, options.objects_min());
      ASSERT_LE(n, options.objects_max());
      const auto instances = scene.instances.to(torch::kInt64);
      for (std::int64_t k = 0; k < n; ++k) {
        const auto& ob = scene.objects[static_cast<size_t>(k)];
        EXPECT_GE(ob.bbox[0], 0);
        EXPECT_GE(ob.bbox[1], 0);
        EXPECT_LE(ob.bbox[0] + ob.bbox[2], s);
        EXPECT_LE(ob.bbox[1] + ob.bbox[3], s);
        EXPECT_GE(ob.centre_x, ob.cell_bbox[0]);
        EXPECT_LT(ob.centre_x, ob.cell_bbox[0] + ob.cell_bbox[2]);
        EXPECT_GE(ob.centre_y, ob.cell_bbox[1]);
        EXPECT_LT(ob.centre_y, ob.cell_bbox[1] + ob.cell_bbox[3]);
        const auto mask = instances == k + 1;
        const auto nz = mask.nonzero();
        if (nz.size(0) == 0) continue;  // fully hidden (allowed only with overlap)
        EXPECT_GE(nz.select(1, 1).min().item<std::int64_t>(), ob.bbox[0]);
        EXPECT_LT(nz.select(1, 1).max().item<std::int64_t>(), ob.bbox[0] + ob.bbox[2]);
        EXPECT_GE(nz.select(1, 0).min().item<std::int64_t>(), ob.bbox[1]);
        EXPECT_LT(nz.select(1, 0).max().item<std::int64_t>(), ob.bbox[1] + ob.bbox[3]);
      }
      // Grey on black: blending with white only raises values, so every mask pixel is
      // above the threshold in the image.
      const auto bright = scene.image > options.mask_threshold();
      EXPECT_EQ(((instances > 0) & ~bright).sum().item<std::int64_t>(), 0) << "scene " << i;
      if (n == 1) {
        EXPECT_TRUE(torch::equal(instances > 0, bright)) << "scene " << i;
        const auto nz = bright.nonzero();
        const auto& ob = scene.objects[0];
        EXPECT_EQ(nz.select(1, 1).min().item<std::int64_t>(), ob.bbox[0]);
        EXPECT_EQ(nz.select(1, 1).max().item<std::int64_t>(), ob.bbox[0] + ob.bbox[2] - 1);
        EXPECT_EQ(nz.select(1, 0).min().item<std::int64_t>(), ob.bbox[1]);
        EXPECT_EQ(nz.select(1, 0).max().item<std::int64_t>(), ob.bbox[1] + ob.bbox[3] - 1);
      }
    }
  }
}

// The VOC label image: class+1 where an object shows, 0 for background, and 255
// exactly on the pixels 4-adjacent to an object drawn above them.
TEST(ObjectScenes, LabelImageFollowsTheVocConventionWithABoundaryBand) {
  const auto g = make_generator(ds::ObjectSceneOptions().objects_min(2).objects_max(3).canvas(72).max_overlap(0.5));
  for (std::int64_t i = 0; i < 60; ++i) {
    const auto scene = g->generate(ds::ObjectSplit::kVal, i);
    const auto inst = scene.instances.accessor<std::uint8_t, 2>();
    const auto lab = scene.labels.accessor<std::uint8_t, 2>();
    const auto s = scene.instances.size(0);
    std::int64_t band = 0;
    for (std::int64_t y = 0; y < s; ++y) {
      for (std::int64_t x = 0; x < s; ++x) {
        bool above = false;
        for (auto [dx, dy] : {std::pair{-1, 0}, {1, 0}, {0, -1}, {0, 1}}) {
          const auto xx = x + dx, yy = y + dy;
          if (xx >= 0 && yy >= 0 && xx < s && yy < s && inst[yy][xx] > inst[y][x]) above = true;
        }
        const int expected = above ? 255 : inst[y][x] == 0 ? 0 : scene.objects[inst[y][x] - 1u].label + 1;
        ASSERT_EQ(lab[y][x], expected) << "scene " << i << " at " << x << "," << y;
        band += above;
      }
    }
    EXPECT_GT(band, 0);
  }
}

// No caption contradicts the geometry: checked on thousands of two-object scenes
// against the centres, and the place words against the cells.
TEST(ObjectScenes, CaptionsNeverContradictTheGeometry) {
  const auto options = ds::ObjectSceneOptions().objects_min(1).objects_max(3).max_overlap(0.2);
  const auto g = make_generator(options);
  const double margin = 64.0 / 10.0;
  std::map<std::string, int> seen;
  for (std::int64_t i = 0; i < 3000; ++i) {
    const auto scene = g->generate(ds::ObjectSplit::kTrain, i);
    const auto& obs = scene.objects;
    auto word = [&](const ds::PlacedObject& o) { return std::string(o.word == "8" ? "an " : "a ") + o.word; };
    if (obs.size() == 1) {
      ASSERT_EQ(scene.captions.size(), 1u);
      EXPECT_EQ(joined(scene.captions[0]), word(obs[0]) + " at the " + kPlaces[obs[0].cell]);
      EXPECT_FALSE(scene.relation.has_value());
    } else if (obs.size() == 2) {
      ASSERT_TRUE(scene.relation.has_value());
      ASSERT_EQ(scene.captions.size(), 2u);
      const double dx = obs[1].centre_x - obs[0].centre_x, dy = obs[1].centre_y - obs[0].centre_y;
      const auto& p = scene.relation->predicate;
      ++seen[p];
      if (p == "left of") {
        EXPECT_TRUE(dx >= margin && std::abs(dx) - std::abs(dy) >= margin) << i;
        EXPECT_EQ(joined(scene.captions[0]), word(obs[0]) + " to the left of " + word(obs[1]));
        EXPECT_EQ(joined(scene.captions[1]), word(obs[1]) + " to the right of " + word(obs[0]));
      } else if (p == "right of") {
        // The first caption names the left object first.
        EXPECT_TRUE(-dx >= margin && std::abs(dx) - std::abs(dy) >= margin) << i;
        EXPECT_EQ(joined(scene.captions[0]), word(obs[1]) + " to the left of " + word(obs[0]));
        EXPECT_EQ(joined(scene.captions[1]), word(obs[0]) + " to the right of " + word(obs[1]));
      } else if (p == "above") {
        EXPECT_TRUE(dy >= margin && std::abs(dy) - std::abs(dx) >= margin) << i;
        EXPECT_EQ(joined(scene.captions[0]), word(obs[0]) + " above " + word(obs[1]));
        EXPECT_EQ(joined(scene.captions[1]), word(obs[1]) + " below " + word(obs[0]));
      } else {
        ASSERT_EQ(p, "below");
        EXPECT_TRUE(-dy >= margin && std::abs(dy) - std::abs(dx) >= margin) << i;
        EXPECT_EQ(joined(scene.captions[0]), word(obs[1]) + " above " + word(obs[0]));
        EXPECT_EQ(joined(scene.captions[1]), word(obs[0]) + " below " + word(obs[1]));
      }
    } else {
      // Three objects: distinct cells, in reading order.
      std::vector<const ds::PlacedObject*> order;
      for (const auto& o : obs) order.push_back(&o);
      std::sort(order.begin(), order.end(), [](auto* a, auto* b) { return a->cell < b->cell; });
      std::string expected;
      for (size_t k = 0; k < order.size(); ++k) {
        if (k > 0) {
          EXPECT_NE(order[k]->cell, order[k - 1]->cell);
        }
        expected += (k ? " and " : "") + word(*order[k]) + " at the " + kPlaces[order[k]->cell];
      }
      EXPECT_EQ(joined(scene.captions[0]), expected);
    }
    std::set<std::int64_t> labels;
    for (const auto& o : obs) labels.insert(o.label);
    EXPECT_EQ(labels.size(), obs.size()) << "distinct classes";
  }
  for (const char* p : {"left of", "right of", "above", "below"}) EXPECT_GT(seen[p], 100) << p;
}

// No item appears in two splits: train and val share the train file but not its
// items (i % 10 == 9 is val), test comes from the other file; scenes draw only from
// their split's items.
TEST(ObjectScenes, SplitsUseDisjointItems) {
  const auto g = make_generator(ds::ObjectSceneOptions().objects_min(2).objects_max(3));
  const auto& train = g->pool(ds::ObjectSplit::kTrain, 0);
  const auto& val = g->pool(ds::ObjectSplit::kVal, 0);
  EXPECT_EQ(train.size(), 270u);
  EXPECT_EQ(val.size(), 30u);
  EXPECT_EQ(g->pool(ds::ObjectSplit::kTest, 0).size(), 100u);
  std::set<std::int64_t> train_items(train.begin(), train.end());
  for (auto i : val) EXPECT_EQ(train_items.count(i), 0u);
  for (std::int64_t i = 0; i < 300; ++i) {
    for (const auto& o : g->generate(ds::ObjectSplit::kVal, i).objects) EXPECT_EQ(o.item % 10, 9);
    for (const auto& o : g->generate(ds::ObjectSplit::kTrain, i).objects) EXPECT_NE(o.item % 10, 9);
  }
}

// A held-out triple never appears in training, in either phrasing, but does in val.
TEST(ObjectScenes, HeldOutTriplesAreAbsentFromTraining) {
  const auto triple = ds::RelationTriple::parse("1 left of 2");
  EXPECT_EQ(ds::RelationTriple::parse("2 right of 1").canonical(), triple);
  EXPECT_THROW(ds::RelationTriple::parse("1 near 2"), c10::Error);
  auto options = ds::ObjectSceneOptions().held_out({triple, ds::RelationTriple::parse("3 below 4")});
  const auto g = make_generator(options);
  auto count = [&](ds::ObjectSplit split) {
    std::int64_t n = 0;
    for (std::int64_t i = 0; i < 4000; ++i) {
      const auto scene = g->generate(split, i);
      for (const auto& caption : scene.captions) {
        const auto text = joined(caption);
        n += text == "a 1 to the left of a 2" || text == "a 2 to the right of a 1" || text == "a 4 above a 3" ||
             text == "a 3 below a 4";
      }
    }
    return n;
  };
  EXPECT_EQ(count(ds::ObjectSplit::kTrain), 0);
  EXPECT_GT(count(ds::ObjectSplit::kVal), 0);
  EXPECT_THROW(make_generator(ds::ObjectSceneOptions().held_out({ds::RelationTriple::parse("boot left of 2")})),
               c10::Error);
}

// Options out of range name the option; impossible layouts fail with advice.
TEST(ObjectScenes, BadOptionsAreRefusedByName) {
  auto message = [](const ds::ObjectSceneOptions& o) {
    try {
      o.validate();
    } catch (const c10::Error& e) {
      return std::string(e.what_without_backtrace());
    }
    return std::string();
  };
  EXPECT_NE(message(ds::ObjectSceneOptions().canvas(31)).find("canvas must be in 32..1024"), std::string::npos);
  EXPECT_NE(message(ds::ObjectSceneOptions().objects_min(3).objects_max(2)).find("objects"), std::string::npos);
  EXPECT_EQ(message(ds::ObjectSceneOptions().objects_min(1).objects_max(9)), "");
  EXPECT_NE(message(ds::ObjectSceneOptions().size_min(0.6).size_max(0.5)).find("size"), std::string::npos);
  EXPECT_NE(message(ds::ObjectSceneOptions().jitter(std::nan(""))).find("jitter"), std::string::npos);
  const auto g = make_generator(ds::ObjectSceneOptions().objects_min(4).objects_max(4).size_min(0.9).size_max(1.0).max_attempts(50));
  try {
    g->generate(ds::ObjectSplit::kTrain, 0);
    FAIL() << "four objects of 90% of the canvas without overlap cannot be placed";
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what_without_backtrace()).find("no valid layout for train scene 0 in 50 attempts"),
              std::string::npos);
  }
  // Items of one class cannot make scenes of two distinct classes: said as such.
  auto one_class = make_items(40, 0);
  one_class.labels.fill_(4);
  const ds::ObjectSceneGenerator single(ds::ObjectSceneOptions(), 1, {one_class}, {one_class});
  try {
    single.generate(ds::ObjectSplit::kTest, 0);
    FAIL() << "two distinct classes from one";
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what_without_backtrace()).find("the test items have too few classes"), std::string::npos);
  }
  EXPECT_EQ(ds::ObjectSceneGenerator(ds::ObjectSceneOptions().distinct_classes(false), 1, {one_class}, {one_class})
                .generate(ds::ObjectSplit::kTest, 0)
                .objects.size(),
            2u);
}

// The options survive a JSON round trip (they go into manifests and checkpoints).
TEST(ObjectScenes, OptionsRoundTripThroughJson) {
  const auto o = ds::ObjectSceneOptions().canvas(128).objects_min(1).objects_max(4).colour(true).background(
      ds::ObjectBackground::kNoise).held_out({ds::RelationTriple::parse("3 above 7")}).size_min(0.2);
  const auto back = ds::ObjectSceneOptions::from_json(o.to_json());
  EXPECT_EQ(back.to_json(), o.to_json());
  EXPECT_EQ(back.held_out()[0], ds::RelationTriple::parse("3 above 7"));
  auto j = o.to_json();
  j.erase("canvas");
  EXPECT_THROW(ds::ObjectSceneOptions::from_json(j), c10::Error);
}

// The torch::data dataset: float images in [0,1] equal to the scene's bytes and
// multi-hot targets of the classes present; training changes with the epoch.
TEST(ObjectScenes, DatasetGivesImagesAndImageLevelLabels) {
  const auto g = make_generator(ds::ObjectSceneOptions().objects_min(1).objects_max(3).colour(true).items(ds::ObjectItems::kBoth));
  ds::ObjectSceneDataset train(g, ds::ObjectSplit::kTrain, 50);
  const auto batch = train.get_batch({0, 5, 7});
  ASSERT_EQ(batch.data.sizes(), (std::vector<std::int64_t>{3, 3, 64, 64}));
  ASSERT_EQ(batch.target.sizes(), (std::vector<std::int64_t>{3, 20}));
  const auto scene = g->generate(ds::ObjectSplit::kTrain, 5, 0);
  EXPECT_TRUE(torch::equal(batch.data[1].permute({1, 2, 0}).mul(255).round().to(torch::kUInt8), scene.image));
  EXPECT_EQ(batch.target[1].sum().item<float>(), static_cast<float>(scene.objects.size()));
  for (const auto& o : scene.objects) EXPECT_EQ(batch.target[1][o.label].item<float>(), 1.0f);
  train.set_epoch(1);
  EXPECT_FALSE(torch::equal(train.get_batch({5}).data[0], batch.data[1]));
  ds::ObjectSceneDataset test(g, ds::ObjectSplit::kTest, 10);
  const auto t0 = test.get_batch({2}).data;
  test.set_epoch(4);
  EXPECT_TRUE(torch::equal(test.get_batch({2}).data, t0));
}

// The written data set: the JSON says what the PNGs show, and the bytes do not depend
// on the number of threads.
TEST(ObjectScenes, WrittenFilesMatchTheScenesAndDoNotDependOnThreads) {
  const auto g = make_generator(ds::ObjectSceneOptions().objects_min(1).objects_max(3).colour(true));
  TempDir one, two;
  const auto j = ds::write_object_scenes(*g, {6, 2, 3}, one.path().string(), 1);
  ds::write_object_scenes(*g, {6, 2, 3}, two.path().string(), 2);
  ASSERT_EQ(j["images"].size(), 11u);
  auto bytes = [](const std::string& path) {
    std::stringstream s;
    s << std::ifstream(path, std::ios::binary).rdbuf();
    return s.str();
  };
  for (const auto& entry : j["images"]) {
    for (const auto& file : {"images/" + entry["filename"].get<std::string>(), entry["mask"].get<std::string>(),
                             entry["instances"].get<std::string>()}) {
      EXPECT_FALSE(bytes(one.file(file)).empty()) << file;
      EXPECT_EQ(bytes(one.file(file)), bytes(two.file(file))) << file;
    }
  }
  EXPECT_EQ(bytes(one.file("dataset_objects.json")), bytes(two.file("dataset_objects.json")));
  // Image 7 is val scene 1: its PNG decodes to the scene's RGB bytes.
  const auto& entry = j["images"][7];
  EXPECT_EQ(entry["split"], "val");
  EXPECT_EQ(entry["imgid"], 7);
  const auto scene = g->generate(ds::ObjectSplit::kVal, 1);
  const auto bgr = cv::imread(one.file("images/" + entry["filename"].get<std::string>()), cv::IMREAD_COLOR);
  ASSERT_EQ(bgr.rows, 64);
  const auto rgb = scene.image.accessor<std::uint8_t, 3>();
  for (int y = 0; y < 64; ++y) {
    for (int x = 0; x < 64; ++x) {
      ASSERT_EQ(bgr.at<cv::Vec3b>(y, x)[2], rgb[y][x][0]);
      ASSERT_EQ(bgr.at<cv::Vec3b>(y, x)[0], rgb[y][x][2]);
    }
  }
  ASSERT_EQ(entry["objects"].size(), scene.objects.size());
  EXPECT_EQ(entry["objects"][0]["bbox"], nlohmann::json(scene.objects[0].bbox));
  EXPECT_EQ(entry["sentences"][0]["raw"], joined(scene.captions[0]));
  EXPECT_EQ(entry["sentences"][0]["sentid"], entry["sentids"][0]);
  const auto instances = cv::imread(one.file(entry["instances"].get<std::string>()), cv::IMREAD_UNCHANGED);
  ASSERT_EQ(instances.type(), CV_8UC1);
  EXPECT_EQ(cv::countNonZero(instances == 1), (scene.instances == 1).sum().item<std::int64_t>());
}

// What the writer writes, the caption-set reader reads back: splits, captions, boxes,
// the relation and each object's pixel mask as the generator made it.
TEST(ObjectScenes, WrittenDataSetReadsBackThroughTheCaptionReader) {
  const auto g = make_generator(ds::ObjectSceneOptions().objects_min(1).objects_max(3).max_overlap(0.3));
  TempDir dir;
  ds::write_object_scenes(*g, {5, 2, 3}, dir.path().string(), 2);
  const auto set = ds::read_caption_set(dir.file("dataset_objects.json"));
  EXPECT_EQ(set.dataset, "objects");
  ASSERT_EQ(set.images.size(), 10u);
  EXPECT_EQ(set.split("train").size(), 5u);
  EXPECT_EQ(set.split("val").size(), 2u);
  EXPECT_EQ(set.split("test").size(), 3u);
  for (std::int64_t i = 0; i < 3; ++i) {
    const auto& entry = *set.split("test")[static_cast<size_t>(i)];
    const auto scene = g->generate(ds::ObjectSplit::kTest, i);
    ASSERT_EQ(entry.objects.size(), scene.objects.size());
    ASSERT_EQ(entry.sentences.size(), scene.captions.size());
    EXPECT_EQ(entry.sentences[0].tokens, scene.captions[0]);
    EXPECT_EQ(entry.relation.has_value(), scene.relation.has_value());
    if (entry.relation) {
      EXPECT_EQ(entry.relation->predicate, scene.relation->predicate);
    }
    const auto labels = ds::read_label_mask(entry, set);
    EXPECT_EQ(cv::countNonZero(labels == 255), (scene.labels == 255).sum().item<std::int64_t>());
    for (size_t k = 0; k < entry.objects.size(); ++k) {
      EXPECT_EQ(entry.objects[k].word, scene.objects[k].word);
      EXPECT_EQ(entry.objects[k].bbox, scene.objects[k].bbox);
      const auto visible = (scene.instances == static_cast<std::int64_t>(k + 1)).sum().item<std::int64_t>();
      if (visible == 0) continue;  // a hidden object has no pixels to read
      EXPECT_EQ(cv::countNonZero(ds::read_object_mask(entry.objects[k], entry, set)), visible);
    }
  }
}

// Writing a smaller set into a folder that holds a larger one leaves only the new
// set: its JSON and no numbered file of the old one beyond it.
TEST(ObjectScenes, RewritingAFolderLeavesOnlyTheNewDataSet) {
  const auto g = make_generator(ds::ObjectSceneOptions().objects_min(1).objects_max(2));
  TempDir dir;
  ds::write_object_scenes(*g, {8, 2, 2}, dir.path().string(), 2);
  ASSERT_TRUE(std::filesystem::exists(dir.file("images/000011.png")));
  ds::write_object_scenes(*g, {3, 1, 1}, dir.path().string(), 1);
  const auto j = nlohmann::json::parse(std::ifstream(dir.file("dataset_objects.json")));
  EXPECT_EQ(j["images"].size(), 5u);
  for (const char* sub : {"images", "masks", "instances"}) {
    std::size_t files = 0;
    for (const auto& f : std::filesystem::directory_iterator(dir.file(sub))) files += f.is_regular_file();
    EXPECT_EQ(files, 5u) << sub;
  }
  // A stop request: no JSON, and the error says so.
  std::atomic<bool> stop{true};
  EXPECT_THROW(ds::write_object_scenes(*g, {3, 1, 1}, dir.path().string(), 2, &stop), ds::DataSetInterrupted);
  EXPECT_FALSE(std::filesystem::exists(dir.file("dataset_objects.json")));
}
