#pragma once
/// In-memory gzip for the IDX fuzzer and the corpus generator.

#include <zlib.h>

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <vector>

namespace attend::fuzz {

/// `size` bytes as one gzip member (deflate with a gzip wrapper) at `level` 0..9;
/// level 0 gives stored blocks, whose payload bytes appear unchanged in the output.
/// One deflate state per thread and level is kept and reset: allocating zlib's
/// quarter-megabyte state for every fuzz input would cost more than the reading.
/// throws std::runtime_error when zlib fails.
inline std::vector<std::uint8_t> gzip_bytes(const std::uint8_t* data, std::size_t size, int level = 1) {
  struct Deflater {
    z_stream z{};
    explicit Deflater(int level) {
      if (deflateInit2(&z, level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
        throw std::runtime_error("gzip_bytes: deflateInit2 failed");
      }
    }
    ~Deflater() { deflateEnd(&z); }
  };
  if (level < 0 || level > 9) throw std::runtime_error("gzip_bytes: level outside 0..9");
  thread_local std::unique_ptr<Deflater> deflaters[10];
  if (!deflaters[level]) deflaters[level] = std::make_unique<Deflater>(level);
  z_stream& z = deflaters[level]->z;
  deflateReset(&z);
  std::vector<std::uint8_t> out(deflateBound(&z, static_cast<uLong>(size)) + 64);
  z.next_in = const_cast<Bytef*>(data);
  z.avail_in = static_cast<uInt>(size);
  z.next_out = out.data();
  z.avail_out = static_cast<uInt>(out.size());
  if (deflate(&z, Z_FINISH) != Z_STREAM_END) throw std::runtime_error("gzip_bytes: deflate did not finish");
  out.resize(z.total_out);
  return out;
}

}  // namespace attend::fuzz
