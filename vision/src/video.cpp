#include "attend/vision/video.h"

#include <attend/quiet_stderr.h>

#include <attend/atomic_file.h>
#include <attend/io_error.h>

#include <c10/util/Exception.h>

#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>
#include <opencv2/videoio.hpp>
#include <opencv2/videoio/registry.hpp>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <filesystem>
#include <optional>

namespace attend::vision {

namespace {

namespace fs = std::filesystem;

std::string lower_extension(const std::string& path) {
  auto ext = fs::path(path).extension().string();
  for (auto& c : ext) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return ext;
}

std::string size_str(const cv::Size& s) { return std::to_string(s.width) + "x" + std::to_string(s.height); }

// FFMPEG when this OpenCV has it: it reads and writes the common containers without
// the GStreamer backend's warnings on stderr for files it cannot open.
int preferred_backend() {
  static const int api = cv::videoio_registry::hasBackend(cv::CAP_FFMPEG) ? cv::CAP_FFMPEG : cv::CAP_ANY;
  return api;
}

std::string fourcc_string(double code) {
  const auto c = static_cast<std::uint32_t>(code);
  if (c == 0) return "";
  std::string s;
  for (int i = 0; i < 4; ++i) {
    const char ch = static_cast<char>((c >> (8 * i)) & 0xff);
    if (!std::isprint(static_cast<unsigned char>(ch))) return "";
    s += ch;
  }
  return s;
}

// Frames come out as CV_8UC3 BGR whatever the decoder gives.
void to_bgr8(cv::Mat& frame) {
  if (frame.channels() == 1) {
    cv::cvtColor(frame, frame, cv::COLOR_GRAY2BGR);
  } else if (frame.channels() == 4) {
    cv::cvtColor(frame, frame, cv::COLOR_BGRA2BGR);
  }
  if (frame.depth() != CV_8U) frame.convertTo(frame, CV_8U);
}

}  // namespace

bool is_video_file(const std::string& path) {
  static const char* const kExtensions[] = {".avi", ".mp4", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv"};
  const auto ext = lower_extension(path);
  return std::any_of(std::begin(kExtensions), std::end(kExtensions), [&](const char* e) { return ext == e; });
}

// ---------------------------------------------------------------------------- reader

struct VideoReader::Impl {
  std::string path;
  cv::VideoCapture capture;
  VideoInfo info;
  cv::Mat first;  // decoded by the constructor, handed out by the first read()
};

VideoReader::VideoReader(const std::string& path) : impl_(std::make_unique<Impl>()) {
  impl_->path = path;
  std::error_code ec;
  if (!fs::exists(path, ec)) throw IoError(path, "no such file");
  if (fs::is_directory(path, ec)) throw IoError(path, "is a folder, expected a video file");
  auto& cap = impl_->capture;
  // FFmpeg prints its own diagnostics ("[mov,mp4,... @ 0x...] moov atom not found")
  // before attend's line; they are kept off stderr (quiet_stderr.h).
  attend::detail::QuietStderr quiet;
  try {
    cap.open(path, preferred_backend());
  } catch (const cv::Exception& e) {
    throw IoError(path, "cannot open as a video: " + e.err);
  }
  if (!cap.isOpened()) throw IoError(path, "cannot open as a video (unknown format or corrupt data)");
  bool decoded = false;
  try {
    decoded = cap.read(impl_->first);
  } catch (const cv::Exception& e) {
    throw IoError(path, "cannot decode the first frame: " + e.err);
  }
  if (!decoded || impl_->first.empty()) throw IoError(path, "cannot decode the first frame (corrupt or empty video)");
  to_bgr8(impl_->first);
  auto& info = impl_->info;
  info.width = impl_->first.cols;
  info.height = impl_->first.rows;
  const double fps = cap.get(cv::CAP_PROP_FPS);
  info.fps = std::isfinite(fps) && fps > 0 ? fps : 0.0;
  const double frames = cap.get(cv::CAP_PROP_FRAME_COUNT);
  info.frames = std::isfinite(frames) && frames > 0 ? static_cast<std::int64_t>(std::llround(frames)) : -1;
  info.fourcc = fourcc_string(cap.get(cv::CAP_PROP_FOURCC));
}

VideoReader::~VideoReader() = default;
VideoReader::VideoReader(VideoReader&&) noexcept = default;
VideoReader& VideoReader::operator=(VideoReader&&) noexcept = default;

const std::string& VideoReader::path() const noexcept { return impl_->path; }
const VideoInfo& VideoReader::info() const noexcept { return impl_->info; }

bool VideoReader::read(cv::Mat& bgr) {
  if (!impl_->first.empty()) {
    bgr = impl_->first;
    impl_->first.release();
    return true;
  }
  if (!impl_->capture.isOpened()) return false;
  cv::Mat frame = bgr;  // lets the capture reuse the caller's buffer
  bool decoded = false;
  {
    attend::detail::QuietStderr quiet;  // a damaged frame's decoder messages
    decoded = impl_->capture.read(frame);
  }
  if (!decoded || frame.empty()) {
    impl_->capture.release();
    return false;
  }
  to_bgr8(frame);
  bgr = frame;
  return true;
}

std::vector<cv::Mat> VideoReader::read_batch(int n) {
  TORCH_CHECK(n >= 1, "VideoReader::read_batch: expected n >= 1, got ", n);
  std::vector<cv::Mat> frames;
  frames.reserve(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) {
    cv::Mat frame;  // fresh each time: frames never share a buffer
    if (!read(frame)) break;
    frames.push_back(std::move(frame));
  }
  return frames;
}

// ---------------------------------------------------------------------------- writer

struct VideoWriter::Impl {
  std::string path;
  std::optional<AtomicFile> file;
  cv::VideoWriter writer;
  cv::Size size;
  std::int64_t frames = 0;
  bool open = false;
};

VideoWriter::VideoWriter(const std::string& path, double fps, cv::Size size, const std::string& fourcc)
    : impl_(std::make_unique<Impl>()) {
  TORCH_CHECK(std::isfinite(fps) && fps > 0, "VideoWriter: expected fps > 0, got ", fps);
  TORCH_CHECK(size.width > 0 && size.height > 0, "VideoWriter: expected a positive frame size, got ",
              size_str(size));
  TORCH_CHECK(fourcc.empty() || fourcc.size() == 4, "VideoWriter: expected a four-character fourcc (or none), got '",
              fourcc, "'");
  const auto ext = lower_extension(path);
  std::string codec = fourcc;
  if (ext == ".avi") {
    if (codec.empty()) codec = "MJPG";
  } else if (ext == ".mp4") {
    if (codec.empty()) codec = "mp4v";
  } else {
    throw IoError(path, "unsupported video extension '" + ext + "'; supported: .avi (MJPG), .mp4 (mp4v)");
  }
  impl_->path = path;
  impl_->size = size;
  AtomicFile::remove_stale_temporaries(path);
  impl_->file.emplace(path);  // creates missing folders
  const auto& temp = impl_->file->temp_path();
  const int code = cv::VideoWriter::fourcc(codec[0], codec[1], codec[2], codec[3]);
  attend::detail::QuietStderr quiet;
  try {
    impl_->writer.open(temp, preferred_backend(), code, fps, size, true);
  } catch (const cv::Exception& e) {
    throw IoError(path, "cannot open a video writer for codec " + codec + ": " + e.err);
  }
  if (!impl_->writer.isOpened()) {
    throw IoError(path, "cannot open a video writer for codec " + codec + " (not supported by OpenCV's " +
                            (preferred_backend() == cv::CAP_FFMPEG ? "FFMPEG" : "available") +
                            " backend, or the folder is not writable)");
  }
  impl_->open = true;
}

VideoWriter::~VideoWriter() {
  try {
    if (impl_) close();
  } catch (...) {  // a destructor never throws; the temporary file is removed with impl_
  }
}

VideoWriter::VideoWriter(VideoWriter&&) noexcept = default;

VideoWriter& VideoWriter::operator=(VideoWriter&& other) noexcept {
  if (this != &other) {
    try {
      if (impl_) close();
    } catch (...) {
    }
    impl_ = std::move(other.impl_);
  }
  return *this;
}

void VideoWriter::write(const cv::Mat& bgr) {
  TORCH_CHECK(impl_ && impl_->open, "VideoWriter::write: the writer is closed");
  TORCH_CHECK(bgr.type() == CV_8UC3 || bgr.type() == CV_8UC1, "VideoWriter::write: expected a CV_8UC3 (BGR) or "
              "CV_8UC1 frame, got ", bgr.empty() ? std::string("an empty Mat") : cv::typeToString(bgr.type()));
  TORCH_CHECK(bgr.size() == impl_->size, "VideoWriter::write: expected a frame of ", size_str(impl_->size),
              " (width x height), got ", size_str(bgr.size()));
  attend::detail::QuietStderr quiet;  // the encoder's messages (a full disk, ...)
  if (bgr.channels() == 1) {
    cv::Mat colour;
    cv::cvtColor(bgr, colour, cv::COLOR_GRAY2BGR);
    impl_->writer.write(colour);
  } else {
    impl_->writer.write(bgr);
  }
  ++impl_->frames;
}

void VideoWriter::close() {
  if (!impl_ || !impl_->open) return;
  impl_->open = false;
  {
    attend::detail::QuietStderr quiet;
    impl_->writer.release();  // writes the trailer / index
  }
  impl_->file->commit();
}

bool VideoWriter::is_open() const noexcept { return impl_ && impl_->open; }
std::int64_t VideoWriter::frames_written() const noexcept { return impl_ ? impl_->frames : 0; }
const std::string& VideoWriter::path() const noexcept { return impl_->path; }
const std::string& VideoWriter::temp_path() const noexcept { return impl_->file->temp_path(); }

}  // namespace attend::vision
