/// Writes the fuzzers' seed corpora: make_corpus <corpus folder> (fuzz/corpus).
/// Run by `scripts/fuzz --make-corpus`. Every seed is made here from a fixed seed, so
/// a second run gives the same files (the LibTorch zip records of the checkpoints
/// aside, which may differ in their timestamps). Seeds are small, valid or nearly
/// valid inputs; the fuzzers' minimised regression inputs (corpus/<name>/regress-*)
/// are kept beside them and are not touched here.

#include "checkpoint_net.h"
#include "gzip_bytes.h"

#include <attend/datasets/idx.h>
#include <attend/models/checkpoint.h>

#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <torch/torch.h>
#include <unistd.h>
#include <zlib.h>

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

namespace {

namespace af = attend::fuzz;
namespace am = attend::models;
namespace fs = std::filesystem;
using Bytes = std::vector<std::uint8_t>;

void write_file(const fs::path& path, const Bytes& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  if (!out) throw std::runtime_error("cannot write " + path.string());
}

void write_text(const fs::path& path, const std::string& text) { write_file(path, Bytes(text.begin(), text.end())); }

Bytes read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return Bytes(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

Bytes head(const Bytes& bytes, std::size_t n) {
  return Bytes(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(std::min(n, bytes.size())));
}

/// An IDX file of `dims` whose data are 0, 1, 2, ... (mod 256).
Bytes idx_bytes(const std::vector<std::uint32_t>& dims) {
  Bytes out{0, 0, 0x08, static_cast<std::uint8_t>(dims.size())};
  std::size_t n = 1;
  for (auto d : dims) {
    out.insert(out.end(), {static_cast<std::uint8_t>(d >> 24), static_cast<std::uint8_t>(d >> 16),
                           static_cast<std::uint8_t>(d >> 8), static_cast<std::uint8_t>(d)});
    n *= d;
  }
  for (std::size_t i = 0; i < n; ++i) out.push_back(static_cast<std::uint8_t>(i * 37 % 256));
  return out;
}

Bytes gzip(const Bytes& bytes, int level) { return af::gzip_bytes(bytes.data(), bytes.size(), level); }

void make_idx(const fs::path& dir) {
  const auto images = idx_bytes({3, 4, 4});
  const auto labels = idx_bytes({10});
  write_file(dir / "images-3x4x4", images);
  write_file(dir / "labels-10", labels);
  write_file(dir / "rank2-5x3", idx_bytes({5, 3}));
  write_file(dir / "rank4-2x1x2x3", idx_bytes({2, 1, 2, 3}));
  write_file(dir / "empty-0x28x28", idx_bytes({0, 28, 28}));
  write_file(dir / "images-3x4x4.gz", gzip(images, 6));
  write_file(dir / "images-3x4x4-stored.gz", gzip(images, 0));  // header and data readable in the gzip
  write_file(dir / "labels-10-stored.gz", gzip(labels, 0));
  // Near-valid.
  write_file(dir / "truncated-header", head(images, 10));
  write_file(dir / "truncated-data", head(images, images.size() - 5));
  auto trailing = labels;
  trailing.push_back(0x2a);
  write_file(dir / "trailing-byte", trailing);
  auto int_type = images;
  int_type[2] = 0x0c;  // int32 elements: not read
  write_file(dir / "type-int32", int_type);
  auto rank5 = images;
  rank5[3] = 5;
  write_file(dir / "rank5", rank5);
  write_file(dir / "truncated-stream.gz", head(gzip(images, 6), 30));
  auto wrong_isize = gzip(images, 0);
  wrong_isize[wrong_isize.size() - 4] ^= 0x10;
  write_file(dir / "wrong-isize.gz", wrong_isize);
}

/// The checkpoint seeds: a resumable one (Adam state, the default and a named
/// generator), weights only, format 1, and near-valid cut-offs.
void make_checkpoints(const fs::path& dir, const fs::path& scratch) {
  torch::manual_seed(1);
  af::CheckpointNet net;
  torch::optim::Adam adam(net->parameters(), torch::optim::AdamOptions(1e-3));
  for (int step = 0; step < 2; ++step) {
    adam.zero_grad();
    net->forward(torch::randn({4, 4})).pow(2).mean().backward();
    adam.step();
  }
  auto sampler = at::make_generator<at::CPUGeneratorImpl>(7);
  const auto info = af::checkpoint_seed_info();
  am::save_checkpoint((dir / "resumable.pt").string(), info, *net, &adam, {{af::kSeedGeneratorName, sampler}});
  am::save_checkpoint((dir / "weights.pt").string(), info, *net);

  // Format 1: the training options and the data inside the model options.
  nlohmann::json options = info.model.options;
  options["training"] = info.training;
  options["data"] = info.data;
  const nlohmann::json meta = {{"format", 1},       {"kind", info.model.kind}, {"options", options},
                               {"state", info.state}, {"step", info.step},     {"epoch", info.epoch},
                               {"has_optimizer", false}};
  torch::serialize::OutputArchive archive;
  archive.write("attend_meta", c10::IValue(meta.dump()));
  torch::serialize::OutputArchive model(archive.compilation_unit());
  net->save(model);
  archive.write("model", model);
  archive.write("rng_state", at::detail::getDefaultCPUGenerator().get_state(), /*is_buffer=*/true);
  archive.save_to((dir / "format1.pt").string());

  const auto weights = read_file(dir / "weights.pt");
  write_file(dir / "truncated-half.pt", head(weights, weights.size() / 2));
  // Not an attend checkpoint: a LibTorch archive without the description.
  torch::serialize::OutputArchive foreign;
  foreign.write("weight", torch::arange(6, torch::kFloat32));
  foreign.save_to((scratch / "foreign.pt").string());
  write_file(dir / "foreign.pt", read_file(scratch / "foreign.pt"));
}

void make_captions(const fs::path& dir) {
  // Files the captions fuzzer creates in its image root (fuzz_captions.cpp kExistingFiles).
  write_text(dir / "coco.json", R"({"dataset": "coco", "images": [
 {"filepath": "val2014", "filename": "x.jpg", "imgid": 0, "split": "train", "sentids": [0, 1], "cocoid": 9,
  "sentences": [{"tokens": ["a", "man", "on", "a", "moped"], "raw": "A man on a moped.", "imgid": 0, "sentid": 0},
                {"tokens": ["man", "riding", "a", "bike"], "raw": "Man riding a bike", "imgid": 0, "sentid": 1}]},
 {"filepath": "val2014", "filename": "y.jpg", "imgid": 1, "split": "restval",
  "sentences": [{"tokens": ["a", "woman", "with", "a", "net"], "raw": "a woman with a net", "imgid": 1, "sentid": 2}]},
 {"filename": "a.jpg", "imgid": 2, "split": "val",
  "sentences": [{"tokens": ["two", "dogs"], "raw": "", "imgid": 2, "sentid": 3}]},
 {"filename": "b.jpg", "imgid": 3, "split": "test", "sentences": []}]}
)");
  write_text(dir / "flickr.json", R"({"images": [
 {"filename": "a.jpg", "split": "train", "sentences": [{"tokens": ["a", "child", "in", "pink"], "raw": "A child in pink."},
                                                        {"tokens": ["a", "girl"]}]},
 {"filename": "b.jpg", "split": "val", "sentences": [{"tokens": ["a", "black", "dog"], "sentid": 5}]},
 {"filename": "c.png", "split": "test", "sentences": [{"tokens": ["<unk>", "dog", "<end>", "x"]}]}],
 "dataset": "flickr8k"}
)");
  write_text(dir / "scenes.json", R"({"dataset": "attend-object-scenes", "seed": 7, "images": [
 {"filename": "000000.png", "filepath": "images", "imgid": 0, "split": "train", "mask": "masks/000000.png",
  "instances": "instances/000000.png",
  "objects": [{"label": 3, "word": "3", "bbox": [0, 1, 3, 2], "cell_bbox": [0, 0, 3, 2],
               "mask": "instances/000000.png", "instance": 1},
              {"label": 7, "word": "7", "bbox": [5, 3, 2, 3], "cell_bbox": [6, 4, 2, 2], "instance": 2}],
  "relation": {"subject": 0, "predicate": "left of", "object": 1},
  "sentences": [{"tokens": ["a", "3", "left", "of", "a", "7"], "raw": "a 3 left of a 7", "imgid": 0, "sentid": 0}]},
 {"filename": "000001.png", "filepath": "images", "imgid": 1, "split": "val", "mask": "masks/000001.png",
  "instances": "instances/000001.png",
  "objects": [{"label": 0, "word": "0", "bbox": [2, 2, 4, 3], "cell_bbox": [2, 2, 3, 2], "instance": 1, "area": 12}],
  "relation": null,
  "sentences": [{"tokens": ["a", "0"], "raw": "a 0", "imgid": 1, "sentid": 1}]}]}
)");
  // Near-valid.
  write_text(dir / "missing-split.json", R"({"images": [{"filename": "a.jpg", "sentences": [{"tokens": ["a"]}]}]})");
  write_text(dir / "empty-token.json",
             R"({"images": [{"filename": "a.jpg", "split": "train", "sentences": [{"tokens": ["a", ""]}]}]})");
  write_text(dir / "bad-relation.json", R"({"images": [{"filename": "a.jpg", "split": "train", "sentences": [],
 "objects": [{"label": 1, "bbox": [0, 0, 1, 1]}], "relation": {"subject": 0, "predicate": "on", "object": 3}}]})");
  write_text(dir / "duplicate.json", R"({"images": [{"filename": "a.jpg", "split": "train", "sentences": []},
 {"filename": "a.jpg", "split": "test", "imgid": 18446744073709551615, "sentences": []}]})");
  write_text(dir / "missing-file.json", R"({"images": [{"filename": "nope.jpg", "split": "train", "sentences": []}]})");
  write_text(dir / "truncated.json", R"({"dataset": "coco", "images": [{"filename": "a.jpg", "split": "tr)");
  write_text(dir / "top-level-array.json", R"([{"filename": "a.jpg"}, 1.5e308, -0, "\u00e9\ud83d\ude00"])");
}

/// A colour test pattern: gradients and a few squares.
cv::Mat pattern(int width, int height) {
  cv::Mat image(height, width, CV_8UC3);
  for (int y = 0; y < height; ++y) {
    for (int x = 0; x < width; ++x) {
      image.at<cv::Vec3b>(y, x) = cv::Vec3b(static_cast<std::uint8_t>(x * 255 / width),
                                            static_cast<std::uint8_t>(y * 255 / height),
                                            static_cast<std::uint8_t>((x / 4 + y / 4) % 2 ? 200 : 30));
    }
  }
  return image;
}

Bytes encode(const std::string& ext, const cv::Mat& image, const std::vector<int>& params = {}) {
  Bytes out;
  if (!cv::imencode(ext, image, out, params)) throw std::runtime_error("cannot encode " + ext);
  return out;
}

void put_u32be(Bytes& bytes, std::size_t at, std::uint32_t v) {
  for (int k = 0; k < 4; ++k) bytes[at + k] = static_cast<std::uint8_t>(v >> (24 - 8 * k));
}

void make_images(const fs::path& dir) {
  const cv::Mat colour = pattern(16, 12);
  cv::Mat grey;
  cv::cvtColor(colour, grey, cv::COLOR_BGR2GRAY);
  cv::Mat bgra;
  cv::cvtColor(colour, bgra, cv::COLOR_BGR2BGRA);
  cv::Mat deep;
  colour.convertTo(deep, CV_16UC3, 257.0);
  const auto png = encode(".png", colour);
  write_file(dir / "colour.png", png);
  write_file(dir / "grey.png", encode(".png", grey));
  write_file(dir / "alpha.png", encode(".png", bgra));
  write_file(dir / "16bit.png", encode(".png", deep));
  write_file(dir / "colour.jpg", encode(".jpg", colour, {cv::IMWRITE_JPEG_QUALITY, 75}));
  write_file(dir / "grey-progressive.jpg",
             encode(".jpg", grey, {cv::IMWRITE_JPEG_QUALITY, 50, cv::IMWRITE_JPEG_PROGRESSIVE, 1}));
  write_file(dir / "colour.bmp", encode(".bmp", pattern(6, 5)));
  write_file(dir / "colour.ppm", encode(".ppm", pattern(5, 4)));
  write_file(dir / "grey.pgm", encode(".pgm", grey(cv::Rect(0, 0, 6, 6)).clone(), {cv::IMWRITE_PXM_BINARY, 0}));
  write_file(dir / "colour.tiff", encode(".tiff", pattern(8, 8)));
  write_file(dir / "colour.webp", encode(".webp", pattern(8, 8)));
  // OpenJPEG's default of 6 resolution levels needs at least 32x32 pixels.
  write_file(dir / "colour.jp2", encode(".jp2", pattern(32, 32), {cv::IMWRITE_JPEG2000_COMPRESSION_X1000, 50}));
  cv::Mat radiance;
  pattern(4, 4).convertTo(radiance, CV_32FC3, 1 / 255.0);
  write_file(dir / "colour.hdr", encode(".hdr", radiance));
  write_file(dir / "colour.ras", encode(".ras", pattern(4, 4)));
  // Near-valid: cut in half; a PNG whose header (with a correct CRC) claims
  // 4000x3000 pixels and holds 16x12.
  write_file(dir / "truncated.png", head(png, png.size() / 2));
  auto big = png;
  put_u32be(big, 16, 4000);  // IHDR width, height: bytes 16..23; CRC over type and data at 29
  put_u32be(big, 20, 3000);
  put_u32be(big, 29, static_cast<std::uint32_t>(crc32(0, big.data() + 12, 17)));
  write_file(dir / "claims-4000x3000.png", big);
  write_text(dir / "claims-3000x2000.ppm", "P6\n3000 2000\n255\n\x01\x02\x03");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: make_corpus <corpus folder>   (e.g. fuzz/corpus)\n");
    return 2;
  }
  try {
    const fs::path root = argv[1];
    for (const char* name : {"idx", "checkpoint", "captions", "image"}) fs::create_directories(root / name);
    const fs::path scratch = fs::temp_directory_path() / ("attend-make-corpus-" + std::to_string(::getpid()));
    fs::create_directories(scratch);
    make_idx(root / "idx");
    make_checkpoints(root / "checkpoint", scratch);
    make_captions(root / "captions");
    make_images(root / "image");
    fs::remove_all(scratch);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "make_corpus: %s\n", e.what());
    return 1;
  }
  return 0;
}
