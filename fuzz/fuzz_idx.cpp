/// Fuzzes the IDX reader (datasets/src/idx.cpp), plain and gzip.
///
/// Each input is a file as a user would hand it to `attend data`/`train --data`:
///   1. read as it is (plain, or gzip when it starts with 1f 8b: the corpus holds
///      both, and stored-block gzip files whose header, data and trailer the fuzzer
///      can change byte by byte);
///   2. when it is not gzip, gzip-compressed here and read again, so every IDX
///      header and body the fuzzer makes also goes through the gzip path with a
///      well-formed stream.
/// Findings besides the general rule (fuzz_support.h): read_idx and read_idx_header
/// disagreeing on the header; a tensor that is not contiguous uint8 with the declared
/// dims; the plain and gzip readings of the same bytes disagreeing.

#include "fuzz_support.h"
#include "gzip_bytes.h"

#include <attend/datasets/idx.h>

#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <vector>

namespace {

namespace ad = attend::datasets;
namespace af = attend::fuzz;

/// The outcome of reading one file: the tensor, or undefined when refused.
torch::Tensor read_checked(const std::string& path) {
  const std::string what = "read_idx(" + path + ")";
  torch::Tensor out;
  if (!af::accepts(what, [&] { out = ad::read_idx(path); })) return {};
  ad::IdxHeader header;
  if (!af::accepts("read_idx_header", [&] { header = ad::read_idx_header(path); })) {
    af::finding(what, "read_idx accepted a file whose header read_idx_header refuses");
  }
  if (!out.defined() || out.scalar_type() != torch::kUInt8 || !out.is_contiguous()) {
    af::finding(what, "the tensor is not a contiguous uint8 tensor");
  }
  if (out.sizes() != c10::IntArrayRef(header.dims)) {
    af::finding(what, "sizes " + c10::str(out.sizes()) + " differ from the declared dims " +
                          c10::str(c10::IntArrayRef(header.dims)));
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  torch::set_num_threads(1);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const bool is_gzip = size >= 2 && data[0] == 0x1f && data[1] == 0x8b;
  const auto as_is = af::write_input(is_gzip ? "input-idx-ubyte.gz" : "input-idx-ubyte", data, size);
  const auto plain = read_checked(as_is);
  if (is_gzip) return 0;

  const auto compressed = af::gzip_bytes(data, size);
  const auto gz = af::write_input("compressed-idx-ubyte.gz", compressed.data(), compressed.size());
  const auto unzipped = read_checked(gz);
  if (plain.defined() != unzipped.defined()) {
    af::finding("read_idx", std::string("the plain file is ") + (plain.defined() ? "accepted" : "refused") +
                                " but the same bytes gzip-compressed are " +
                                (unzipped.defined() ? "accepted" : "refused"));
  }
  if (plain.defined() && !torch::equal(plain, unzipped)) {
    af::finding("read_idx", "the plain and the gzip-compressed file give different tensors");
  }
  return 0;
}
