// Large CPU results allocated with transparent huge pages, for kernels bound by memory traffic.
//
// A fresh buffer above glibc's mmap threshold (32 MiB at most) comes straight from mmap, and
// the first write to each of its 4 KiB pages faults into the kernel, which clears the page.
// For a memory-bound kernel that costs more than the work itself (allocating and filling
// 256 MiB: 311 ms, 68 ms with huge pages; batch norm's 85 MB output: 74 vs 18 ms, on the
// project machine). Asking for huge pages before the first write cuts the faults 512-fold, as
// torch's own allocator does for every allocation under THP_MEM_ALLOC_ENABLE=1. Advisory:
// ignored where unsupported or disabled. CPU tensors only.
//
// NB: a result much smaller than what its kernel reads (a pool's output, an upsample's input
// gradient) is also populated up front, on the calling thread. On the project machine (a KVM
// guest) the worker threads' page faults on a fresh result, taken while both threads stream
// their input, ran several times slower than the same faults taken alone: the upsample
// backward (B2 C32 16^4 <- 32^4, 2 threads) took 42-50 ms, the 1-thread time, and 21-23 ms
// with its 16.8 MB result populated first; max_pool's forward median went from 82 to 23 ms.
// Populating is a serial page clearing, which only pays when the result is small: for the
// upsample's 268 MB forward output it cost 26 -> 40 ms. Hence kPopulateRatio, which bounds
// that clearing to an eighth of the kernel's reads. The gains above are repeated calls of one
// op; a forward + backward loop of the same upsample measured 49-56 ms with and without.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>

#ifdef __linux__
#include <sys/mman.h>
#endif

namespace ndops {

// A result of at most 1 / kPopulateRatio of the bytes its kernel reads is populated up front.
constexpr int64_t kPopulateRatio = 8;

// Call on a fresh CPU tensor, before anything writes to it; read_bytes: what the kernel that
// fills it reads (0: never populate up front).
inline void advise_huge_pages(const at::Tensor& fresh, int64_t read_bytes = 0) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  constexpr uintptr_t kHuge = uintptr_t{2} << 20;
  const uintptr_t bytes = fresh.nbytes();
  if (bytes < 8 * kHuge) return;  // below 16 MiB the faults cost little
  const auto begin = reinterpret_cast<uintptr_t>(fresh.const_data_ptr());
  const uintptr_t first = (begin + kHuge - 1) & ~(kHuge - 1);
  const uintptr_t last = (begin + bytes) & ~(kHuge - 1);
  if (last > first) madvise(reinterpret_cast<void*>(first), last - first, MADV_HUGEPAGE);
#if defined(MADV_POPULATE_WRITE)
  if (static_cast<int64_t>(bytes) * kPopulateRatio <= read_bytes) {
    constexpr uintptr_t kPage = 4096;
    const uintptr_t page_first = (begin + kPage - 1) & ~(kPage - 1);
    const uintptr_t page_last = (begin + bytes) & ~(kPage - 1);
    // Fails harmlessly (EINVAL) on kernels before 5.14: the pages then fault as they are written.
    if (page_last > page_first) {
      madvise(reinterpret_cast<void*>(page_first), page_last - page_first, MADV_POPULATE_WRITE);
    }
  }
#endif
#else
  (void)fresh;
  (void)read_bytes;
#endif
}

inline at::Tensor empty_with_huge_pages(c10::IntArrayRef sizes, const at::TensorOptions& options,
                                        int64_t read_bytes = 0) {
  at::Tensor out = at::empty(sizes, options);
  advise_huge_pages(out, read_bytes);
  return out;
}

}  // namespace ndops
