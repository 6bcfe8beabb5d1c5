#include "attend/datasets/idx.h"

#include <attend/atomic_file.h>
#include <attend/io_error.h>

#include <torch/torch.h>
#include <zlib.h>

#include <array>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>

namespace attend::datasets {
namespace {

namespace fs = std::filesystem;

std::string describe_errno() { return std::strerror(errno); }

/// Sequential byte source over a plain or gzip file.
class Reader {
 public:
  explicit Reader(const std::string& path) : path_(path) {
    std::error_code ec;
    if (!fs::exists(path, ec)) throw IoError(path, "no such file");
    if (fs::is_directory(path, ec)) throw IoError(path, "is a directory, expected an IDX file");
    file_size_ = static_cast<std::int64_t>(fs::file_size(path, ec));
    if (ec) throw IoError(path, "cannot read: " + ec.message());
    if (file_size_ == 0) throw IoError(path, "empty file, expected an IDX header");
    std::array<unsigned char, 2> head{};
    {
      std::ifstream probe(path, std::ios::binary);
      if (!probe) throw IoError(path, "cannot open: " + describe_errno());
      probe.read(reinterpret_cast<char*>(head.data()), 2);
      gzip_ = file_size_ >= 2 && head[0] == 0x1f && head[1] == 0x8b;
      if (gzip_ && file_size_ >= 18) {  // ISIZE: uncompressed length mod 2^32, little-endian
        std::array<unsigned char, 4> t{};
        probe.seekg(-4, std::ios::end);
        probe.read(reinterpret_cast<char*>(t.data()), 4);
        gzip_isize_ = std::uint32_t{t[0]} | (std::uint32_t{t[1]} << 8) | (std::uint32_t{t[2]} << 16) |
                      (std::uint32_t{t[3]} << 24);
        has_isize_ = static_cast<bool>(probe);
      }
    }
    gz_ = gzopen(path.c_str(), "rb");
    if (gz_ == nullptr) throw IoError(path, "cannot open: " + describe_errno());
    gzbuffer(gz_, 1 << 17);
  }
  ~Reader() {
    if (gz_ != nullptr) gzclose(gz_);
  }
  Reader(const Reader&) = delete;
  Reader& operator=(const Reader&) = delete;

  bool gzip() const { return gzip_; }
  /// For gzip: the uncompressed size modulo 2^32 that the trailer records.
  bool has_isize() const { return has_isize_; }
  std::uint32_t isize() const { return gzip_isize_; }
  std::int64_t file_size() const { return file_size_; }

  /// Reads up to n bytes; returns how many were read (fewer only at end of data).
  std::int64_t read(void* out, std::int64_t n) {
    auto* dst = static_cast<unsigned char*>(out);
    std::int64_t done = 0;
    while (done < n) {
      const auto chunk = static_cast<unsigned>(std::min<std::int64_t>(n - done, 1 << 30));
      const int got = gzread(gz_, dst + done, chunk);
      if (got < 0) {
        int code = 0;
        const char* msg = gzerror(gz_, &code);
        throw IoError(path_, std::string("corrupt gzip stream: ") + (msg ? msg : "unknown error"));
      }
      if (got == 0) break;
      done += got;
    }
    return done;
  }

 private:
  std::string path_;
  gzFile gz_ = nullptr;
  bool gzip_ = false;
  bool has_isize_ = false;
  std::uint32_t gzip_isize_ = 0;
  std::int64_t file_size_ = 0;
};

IdxHeader parse_header(Reader& in, const std::string& path) {
  std::array<unsigned char, 4> magic{};
  if (in.read(magic.data(), 4) != 4) throw IoError(path, "truncated header: fewer than 4 bytes");
  if (magic[0] != 0 || magic[1] != 0) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "bad magic %02x %02x %02x %02x, expected 00 00 <type> <rank>",
                  magic[0], magic[1], magic[2], magic[3]);
    throw IoError(path, buf);
  }
  IdxHeader header;
  header.gzip = in.gzip();
  header.type = magic[2];
  if (header.type != 0x08) {
    char buf[96];
    std::snprintf(buf, sizeof buf, "unsupported IDX element type 0x%02x, only unsigned bytes (0x08) are read",
                  header.type);
    throw IoError(path, buf);
  }
  const int rank = magic[3];
  if (rank < 1 || rank > 4) throw IoError(path, "IDX rank " + std::to_string(rank) + " is outside 1..4");
  // The product of the non-zero dims: with a zero dim the data are empty, but the
  // other dims still make the strides (and data_bytes() multiplies them first), so
  // they are held to the limit too.
  std::int64_t total = 1;
  for (int d = 0; d < rank; ++d) {
    std::array<unsigned char, 4> b{};
    if (in.read(b.data(), 4) != 4) throw IoError(path, "truncated header: dimension " + std::to_string(d) + " missing");
    const std::int64_t dim = (std::int64_t{b[0]} << 24) | (b[1] << 16) | (b[2] << 8) | b[3];
    header.dims.push_back(dim);
    if (dim != 0 && total > kMaxIdxBytes / dim) {
      total = kMaxIdxBytes + 1;
    } else if (dim != 0) {
      total *= dim;
    }
  }
  if (total > kMaxIdxBytes) {
    throw IoError(path, "declared size " + std::string(c10::str(c10::IntArrayRef(header.dims))) +
                            " exceeds the limit of " + std::to_string(kMaxIdxBytes) + " bytes");
  }
  return header;
}

}  // namespace

std::int64_t IdxHeader::data_bytes() const {
  std::int64_t n = 1;
  for (auto d : dims) n *= d;
  return n;
}

IdxHeader read_idx_header(const std::string& path) {
  Reader in(path);
  return parse_header(in, path);
}

torch::Tensor read_idx(const std::string& path) {
  Reader in(path);
  const IdxHeader header = parse_header(in, path);
  const std::int64_t want = header.data_bytes();
  const std::int64_t header_bytes = 4 + 4 * static_cast<std::int64_t>(header.dims.size());
  const auto dims_text = c10::str(c10::IntArrayRef(header.dims));

  if (!header.gzip && in.file_size() != header_bytes + want) {
    const std::int64_t have = in.file_size() - header_bytes;
    throw IoError(path, std::string(have < want ? "truncated" : "trailing bytes") + ": dims " + dims_text +
                            " declare " + std::to_string(want) + " data bytes but the file holds " +
                            std::to_string(have));
  }
  // gzip: the trailer's length must agree with the header before anything is
  // allocated, so a corrupt or lying header cannot make us reserve gigabytes.
  if (header.gzip && in.has_isize() &&
      static_cast<std::uint32_t>(header_bytes + want) != in.isize()) {
    throw IoError(path, "dims " + dims_text + " declare " + std::to_string(header_bytes + want) +
                            " uncompressed bytes but the gzip trailer records " + std::to_string(in.isize()) +
                            " (mod 2^32): truncated or corrupt");
  }
  // The trailer agrees only modulo 2^32; deflate expands at most 1032:1, which bounds
  // what the file can hold (and what a tiny file with a lying header makes us allocate).
  if (header.gzip && want > in.file_size() * 1032) {
    throw IoError(path, "truncated: dims " + dims_text + " declare " + std::to_string(want) +
                            " data bytes but a gzip file of " + std::to_string(in.file_size()) +
                            " bytes holds at most " + std::to_string(in.file_size() * 1032));
  }
  auto out = torch::empty(header.dims, torch::kUInt8);
  // gzip: the declared size is only a claim, so the data is read in chunks and the
  // tensor is filled as bytes arrive; a short stream is reported, not trusted.
  const std::int64_t got = in.read(out.data_ptr<std::uint8_t>(), want);
  if (got != want) {
    throw IoError(path, "truncated: dims " + dims_text + " declare " + std::to_string(want) +
                            " data bytes but the stream ends after " + std::to_string(got));
  }
  unsigned char extra = 0;
  if (in.read(&extra, 1) != 0) {
    throw IoError(path, "trailing bytes after the " + std::to_string(want) + " data bytes declared by dims " +
                            dims_text);
  }
  return out;
}

void write_idx(const std::string& path, const torch::Tensor& data) {
  TORCH_CHECK(data.defined(), "write_idx: expected a defined tensor for ", path);
  TORCH_CHECK(data.scalar_type() == torch::kUInt8, "write_idx: expected a uint8 tensor, got ",
              data.scalar_type(), " for ", path);
  TORCH_CHECK(data.dim() >= 1 && data.dim() <= 4, "write_idx: expected rank 1..4, got sizes ", data.sizes(),
              " for ", path);
  for (auto d : data.sizes()) {
    TORCH_CHECK(d <= 0xffffffffLL, "write_idx: dimension ", d, " does not fit IDX's uint32 for ", path);
  }
  const auto bytes = data.contiguous().cpu();
  std::vector<unsigned char> header{0, 0, 0x08, static_cast<unsigned char>(data.dim())};
  for (auto d : data.sizes()) {
    const auto u = static_cast<std::uint32_t>(d);
    header.insert(header.end(), {static_cast<unsigned char>(u >> 24), static_cast<unsigned char>(u >> 16),
                                 static_cast<unsigned char>(u >> 8), static_cast<unsigned char>(u)});
  }
  const bool gzip = path.size() > 3 && path.compare(path.size() - 3, 3, ".gz") == 0;
  AtomicFile::remove_stale_temporaries(path);
  AtomicFile file(path);
  const std::string& tmp = file.temp_path();
  const auto* payload = bytes.data_ptr<std::uint8_t>();
  const std::int64_t n = bytes.numel();
  bool ok = true;
  std::string problem;
  if (gzip) {
    gzFile gz = gzopen(tmp.c_str(), "wb6");
    if (gz == nullptr) throw IoError(path, "cannot create " + tmp + ": " + describe_errno());
    ok = gzwrite(gz, header.data(), static_cast<unsigned>(header.size())) == static_cast<int>(header.size());
    for (std::int64_t done = 0; ok && done < n;) {
      const auto chunk = static_cast<unsigned>(std::min<std::int64_t>(n - done, 1 << 30));
      ok = gzwrite(gz, payload + done, chunk) == static_cast<int>(chunk);
      done += chunk;
    }
    if (!ok) problem = describe_errno();
    ok = (gzclose(gz) == Z_OK) && ok;
  } else {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) throw IoError(path, "cannot create " + tmp + ": " + describe_errno());
    out.write(reinterpret_cast<const char*>(header.data()), static_cast<std::streamsize>(header.size()));
    out.write(reinterpret_cast<const char*>(payload), static_cast<std::streamsize>(n));
    out.flush();
    ok = static_cast<bool>(out);
    if (!ok) problem = describe_errno();
  }
  if (!ok) throw IoError(path, "write failed" + (problem.empty() ? std::string() : ": " + problem));
  file.commit();
}

SplitFiles find_split(const std::string& dir, const std::string& split) {
  TORCH_CHECK(split == "train" || split == "test", "find_split: split must be \"train\" or \"test\", got \"",
              split, "\"");
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) {
    throw IoError(dir, fs::exists(dir, ec) ? "is a file, expected a folder of IDX files" : "no such folder");
  }
  const std::string prefix = split == "train" ? "train" : "t10k";
  auto pick = [&](const std::string& stem) {
    for (const char* suffix : {"", ".gz"}) {
      const auto candidate = (fs::path(dir) / (stem + suffix)).string();
      if (fs::exists(candidate, ec)) return candidate;
    }
    throw IoError(dir, "no " + stem + " or " + stem + ".gz in this folder");
  };
  return {pick(prefix + "-images-idx3-ubyte"), pick(prefix + "-labels-idx1-ubyte")};
}

}  // namespace attend::datasets
