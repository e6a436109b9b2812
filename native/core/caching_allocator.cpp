// caching_allocator.cpp: see caching_allocator.h for the why and the policy.
#include "caching_allocator.h"

#include <algorithm>
#include <limits>

namespace kn {

namespace {
constexpr int64_t kSmallGranule = 512;          // bytes; CUDA's own allocation granularity
constexpr int64_t kLargeThreshold = 1 << 20;    // requests above 1 MiB
constexpr int64_t kLargeGranule = 1 << 20;      // round to whole MiB: <= 1 MiB waste on >= 1 MiB
}  // namespace

CachingAllocator::CachingAllocator(Device& device, bool enabled, int64_t cache_limit)
    : device_(device), enabled_(enabled), cache_limit_(cache_limit) {}

int64_t CachingAllocator::size_class(int64_t bytes) {
    int64_t granule = bytes > kLargeThreshold ? kLargeGranule : kSmallGranule;
    // bytes + granule - 1 wraps within a granule of 2^63 (and -1 is the sign of it): such a request
    // has no size class; -1 tells allocate() to refuse it rather than hand out a small parked block.
    if (bytes > std::numeric_limits<int64_t>::max() - (granule - 1)) return -1;
    return (bytes + granule - 1) / granule * granule;
}

void* CachingAllocator::allocate(int64_t bytes, int64_t* capacity) {
    int64_t size = enabled_ ? size_class(bytes) : bytes;
    if (size < bytes)
        fail(KN_ERROR_OUT_OF_MEMORY, "no device can hold that many (rounding ", bytes,
             " up to the caching allocator's block size overflows int64)");
    void* memory = nullptr;
    if (enabled_) {
        // Best fit among parked blocks, but never more than twice the request.
        auto it = parked_.lower_bound(size);
        if (it != parked_.end() && it->first <= 2 * size) {
            size = it->first;
            memory = it->second;
            parked_.erase(it);
            stats_.cached_bytes -= size;
            ++stats_.cache_hits;
        }
    }
    if (!memory) {
        ++stats_.device_allocations;
        try {
            memory = device_.alloc(size);
        } catch (const Error& e) {
            if (e.status() != KN_ERROR_OUT_OF_MEMORY || parked_.empty()) throw;
            trim();  // give the cache back to the driver and try once more
            memory = device_.alloc(size);
        }
    }
    *capacity = size;
    stats_.live_bytes += bytes;
    stats_.live_buffers += 1;
    stats_.peak_live_bytes = std::max(stats_.peak_live_bytes, stats_.live_bytes);
    return memory;
}

void CachingAllocator::release(void* memory, int64_t bytes, int64_t capacity) noexcept {
    stats_.live_bytes -= bytes;
    stats_.live_buffers -= 1;
    if (!enabled_ || capacity > cache_limit_) {
        device_.free(memory);
        return;
    }
    parked_.emplace(capacity, memory);
    stats_.cached_bytes += capacity;
    // Over the limit: return the largest parked blocks first (they are the rarest sizes to reuse
    // and free the most at once).
    while (stats_.cached_bytes > cache_limit_ && !parked_.empty()) {
        auto largest = std::prev(parked_.end());
        stats_.cached_bytes -= largest->first;
        device_.free(largest->second);
        parked_.erase(largest);
    }
}

void CachingAllocator::trim() noexcept {
    for (auto& [size, memory] : parked_) device_.free(memory);
    parked_.clear();
    stats_.cached_bytes = 0;
}

}  // namespace kn
