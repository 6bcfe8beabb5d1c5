#pragma once
/// Video files in and out, frame by frame, as 8-bit BGR cv::Mat.
///
/// Backend: OpenCV's FFMPEG videoio backend (Debian's OpenCV 4.6 is built with FFMPEG
/// and GStreamer; FFMPEG is preferred when present, so the file formats are those of
/// the system's libavformat/libavcodec). Writing .avi (MJPG) and .mp4 (mp4v) and
/// reading them back is tested on this build.

#include <opencv2/core/mat.hpp>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace attend::vision {

/// What a video's container declares.
struct VideoInfo {
  int width = 0, height = 0;
  /// Frames per second as the container says (0 when it does not say).
  double fps = 0;
  /// Frame count as the container says; -1 when unknown. May differ from the number of
  /// frames actually decodable.
  std::int64_t frames = -1;
  /// The codec's four-character code ("MJPG", "FMP4", ...); empty when unknown.
  std::string fourcc;
};

/// ensures: true when the extension (case-insensitive) is one of .avi .mp4 .mkv .mov
///          .webm .m4v .mpg .mpeg .wmv. Looks at the name only, not the file.
bool is_video_file(const std::string& path);

/// Reads a video file frame by frame.
class VideoReader {
 public:
  /// Opens `path` and decodes its first frame (kept for the first read()).
  /// throws attend::IoError naming the path when the file does not exist, is a folder,
  ///        cannot be opened as a video, or its first frame cannot be decoded.
  explicit VideoReader(const std::string& path);
  ~VideoReader();
  VideoReader(VideoReader&&) noexcept;
  VideoReader& operator=(VideoReader&&) noexcept;
  VideoReader(const VideoReader&) = delete;
  VideoReader& operator=(const VideoReader&) = delete;

  const std::string& path() const noexcept;
  /// ensures: width and height are those of the decoded frames.
  const VideoInfo& info() const noexcept;

  /// Reads the next frame.
  /// ensures: true and `bgr` an 8-bit CV_8UC3 BGR frame, or false at the end of the
  ///          video (then `bgr` is left as it was). As with cv::VideoCapture::read,
  ///          `bgr`'s buffer may be reused: pass a fresh Mat (or clone) to keep frames.
  bool read(cv::Mat& bgr);

  /// Reads up to `n` frames.
  /// requires: n >= 1 (throws c10::Error otherwise).
  /// ensures: n owning, independent CV_8UC3 BGR frames, fewer at the end of the video,
  ///          none once it is over.
  std::vector<cv::Mat> read_batch(int n);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// Writes a video file frame by frame. The frames go to a temporary file in the same
/// folder whose name keeps the extension (".<name>.<pid>.<n>.tmp.avi", see
/// attend::AtomicFile); close() finalises it and renames it into place. So a program
/// that is interrupted but still calls close() (or destroys the writer) leaves a
/// playable file, and a killed one leaves no half-written file under the final name
/// (its temporary file is removed by the next VideoWriter for the same path).
class VideoWriter {
 public:
  /// requires: fps > 0; size positive; fourcc empty or four characters.
  /// ensures:  an open writer of `size` frames at `fps`. The codec is `fourcc`, or by
  ///           the extension (case-insensitive): .avi -> "MJPG", .mp4 -> "mp4v".
  ///           Missing parent folders are created.
  /// throws c10::Error for fps, size or fourcc that break the requirements;
  ///        attend::IoError naming the path for another extension (listing the
  ///        supported ones) or when the backend cannot open a writer for this
  ///        extension and codec.
  VideoWriter(const std::string& path, double fps, cv::Size size, const std::string& fourcc = "");
  /// Closes (see close()); never throws.
  ~VideoWriter();
  VideoWriter(VideoWriter&&) noexcept;
  VideoWriter& operator=(VideoWriter&&) noexcept;
  VideoWriter(const VideoWriter&) = delete;
  VideoWriter& operator=(const VideoWriter&) = delete;

  /// Appends a frame.
  /// requires: the writer is open; bgr CV_8UC3 (BGR) or CV_8UC1 (grey) of exactly the
  ///           size given to the constructor.
  /// throws c10::Error naming the expected and actual sizes (or types) otherwise.
  void write(const cv::Mat& bgr);

  /// Finalises the file and renames it into place; later calls do nothing.
  /// throws attend::IoError naming the path when the rename fails.
  void close();

  bool is_open() const noexcept;
  std::int64_t frames_written() const noexcept;
  /// The final file name.
  const std::string& path() const noexcept;
  /// Where the frames go until close().
  const std::string& temp_path() const noexcept;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace attend::vision
