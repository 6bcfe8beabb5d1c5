#pragma once
// QuietStderr: file descriptor 2 pointed at /dev/null while OpenCV's codecs run, so
// their own diagnostics never reach the user's terminal; attend reports the problem
// itself, in one line naming the file. Header-only, for attend's own sources that
// call codecs (vision's image and video I/O, datasets' caption image reader); not
// part of the API a user programs against.
//
// Why the descriptor, and not something narrower. The noise comes from four places:
// libpng ("libpng error: ...", "libpng warning: ...") and libjpeg ("Premature end of
// JPEG file", "Corrupt JPEG data: ...") print with fprintf(stderr) because OpenCV
// installs no message handlers of its own; OpenCV writes "imdecode_(...): can't read
// data: ..." to std::cerr and its "[ WARN:0@0.2] ..." log lines to stderr; FFmpeg
// prints "[mov,mp4,... @ 0x...] moov atom not found" from libavformat.
// cv::utils::logging::setLogLevel reaches only the third. Swapping the `stderr`
// FILE* or std::cerr's buffer reaches two of them, and both are unsynchronised
// global writes that race with every thread printing. Decoding PNG and JPEG with
// libpng and libjpeg directly, with handlers of our own, would fork OpenCV's colour
// conversion and EXIF handling (pixels would no longer be OpenCV's) and leave the
// other formats and FFmpeg as they are. dup2() is one atomic kernel operation that
// every writer above goes through, whatever library or thread it is.
//
// The price, and how it is kept small: while a codec call runs, whatever any thread
// of the process writes to fd 2 is discarded. So the guard covers only the codec
// call itself (never a whole command), the attend CLI decodes on its main thread
// while nothing else prints, and image_io.cpp validates every file's structure
// before a decoder sees it, so decoders rarely have anything to say. Guards nest and
// run concurrently: the first to enter redirects, the last to leave restores (under
// a mutex, so decodes in several threads still run in parallel). The destructor
// restores on every path, exceptions included. Under AddressSanitizer the
// sanitizer's reports go to the real stderr meanwhile, so a crash inside a decoder
// (the fuzzers look for those) is still reported.

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <iostream>
#include <mutex>

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define ATTEND_QUIET_STDERR_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) && !defined(ATTEND_QUIET_STDERR_ASAN)
#define ATTEND_QUIET_STDERR_ASAN 1
#endif
#ifdef ATTEND_QUIET_STDERR_ASAN
#include <sanitizer/common_interface_defs.h>
#endif

namespace attend::detail {

class QuietStderr {
 public:
  QuietStderr() {
    std::lock_guard<std::mutex> lock(shared().mutex);
    auto& s = shared();
    if (s.users++ > 0) return;
    std::cerr.flush();
    std::fflush(stderr);
    s.saved = ::fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 3);
    if (s.saved < 0) return;  // no stderr open: nothing to protect
    const int null = ::open("/dev/null", O_WRONLY | O_CLOEXEC);
    if (null < 0 || ::dup2(null, STDERR_FILENO) < 0) {
      ::close(s.saved);
      s.saved = -1;
    } else {
#ifdef ATTEND_QUIET_STDERR_ASAN
      __sanitizer_set_report_fd(reinterpret_cast<void*>(static_cast<std::intptr_t>(s.saved)));
#endif
    }
    if (null >= 0) ::close(null);
  }
  ~QuietStderr() {
    std::lock_guard<std::mutex> lock(shared().mutex);
    auto& s = shared();
    if (--s.users > 0 || s.saved < 0) return;
    std::cerr.flush();
    std::fflush(stderr);
    while (::dup2(s.saved, STDERR_FILENO) < 0 && errno == EINTR) {
    }
#ifdef ATTEND_QUIET_STDERR_ASAN
    __sanitizer_set_report_fd(reinterpret_cast<void*>(static_cast<std::intptr_t>(STDERR_FILENO)));
#endif
    ::close(s.saved);
    s.saved = -1;
  }
  QuietStderr(const QuietStderr&) = delete;
  QuietStderr& operator=(const QuietStderr&) = delete;

 private:
  struct Shared {
    std::mutex mutex;
    int users = 0;   // guards alive in this process
    int saved = -1;  // the real stderr while redirected
  };
  static Shared& shared() {
    static Shared s;
    return s;
  }
};

}  // namespace attend::detail
