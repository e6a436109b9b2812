// caching_allocator.h: keeps freed device memory for reuse, per device.
//
// Why: a training step creates and frees hundreds of intermediate tensors. cudaMalloc/cudaFree
// synchronise the whole device and cost tens of microseconds each; clCreateBuffer is cheaper but
// still a driver call; on the CPU, glibc serves large blocks with fresh mmap()s whose pages fault
// in (a 64 MB buffer is 16k page faults, several milliseconds) on every use. Sizes repeat from step
// to step, so a freed block is almost always the right size for a later request.
//
// How: requests are rounded up to a size class (512 B granularity below 1 MiB, 1 MiB above); a
// free parks the block in a best-fit map keyed by its class size; an allocation takes the smallest
// parked block that fits and wastes at most its own size again (a 1 KB request never pins a 100 MB
// block). When the device reports out-of-memory, the cache is returned to the driver and the
// allocation retried once. trim() returns everything on request.
//
// Ordering: every backend runs one in-order queue per device, so a block freed while kernels that
// use it are still queued can be handed out at once: later work on the same queue runs after them.
//
// Not thread-safe by itself: the API layer calls it with the device's mutex held.
#pragma once

#include "backend.h"

#include <cstdint>
#include <map>

namespace kn {

struct MemoryStats {
    int64_t live_bytes = 0, live_buffers = 0, cached_bytes = 0, peak_live_bytes = 0;
    // Allocations served from the cache, and those that went to the device (the driver, or the
    // system allocator on the CPU): a steady training step should only add to cache_hits.
    int64_t cache_hits = 0, device_allocations = 0;
};

class CachingAllocator {
public:
    // cache_limit: the most bytes kept parked (older free blocks beyond it go back at once);
    // enabled == false frees everything immediately (KN_CACHING_ALLOCATOR=0).
    CachingAllocator(Device& device, bool enabled, int64_t cache_limit);
    ~CachingAllocator() = default;
    CachingAllocator(const CachingAllocator&) = delete;
    CachingAllocator& operator=(const CachingAllocator&) = delete;

    // Returns memory of at least `bytes` (> 0); *capacity receives the block's real size, which
    // release() must be given back.
    void* allocate(int64_t bytes, int64_t* capacity);
    void release(void* memory, int64_t bytes, int64_t capacity) noexcept;
    void trim() noexcept;
    MemoryStats stats() const { return stats_; }

    static int64_t size_class(int64_t bytes);

private:
    Device& device_;
    bool enabled_;
    int64_t cache_limit_;
    std::multimap<int64_t, void*> parked_;  // class size -> block
    MemoryStats stats_;
};

}  // namespace kn
