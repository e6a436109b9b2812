// scratch_buffer.h: a 64-byte-aligned float buffer that grows on demand and is kept. Used per
// thread (thread_local) for GEMM packing and convolution lowering: the pool's threads live as long
// as the process, and a fresh multi-megabyte allocation per call would page-fault its way in
// (~0.25 us per 4 KB page) on every call.
#pragma once

#include "error.h"

#include <cstdint>
#include <cstdlib>
#if defined(_WIN32)
#include <malloc.h>
#endif

namespace kn::cpu {

class ScratchBuffer {
public:
    explicit ScratchBuffer(const char* what) : what_(what) {}
    ~ScratchBuffer() { release(); }
    ScratchBuffer(const ScratchBuffer&) = delete;
    ScratchBuffer& operator=(const ScratchBuffer&) = delete;

    // At least `floats` floats; the contents are not kept when it grows.
    float* get(int64_t floats) {
        if (floats > capacity_) {
            // floats * 4 + 63 must not wrap size_t (the callers' sizes are checked int64 products).
            if (floats > static_cast<int64_t>((SIZE_MAX - 63) / sizeof(float)))
                fail(KN_ERROR_OUT_OF_MEMORY, "cpu: cannot allocate ", floats, " floats of ", what_);
            release();
            const size_t bytes = (static_cast<size_t>(floats) * sizeof(float) + 63) / 64 * 64;
#if defined(_WIN32)
            data_ = static_cast<float*>(_aligned_malloc(bytes, 64));
#else
            data_ = static_cast<float*>(std::aligned_alloc(64, bytes));
#endif
            if (!data_) fail(KN_ERROR_OUT_OF_MEMORY, "cpu: cannot allocate ", bytes, " bytes of ", what_);
            capacity_ = floats;
        }
        return data_;
    }

private:
    void release() {
#if defined(_WIN32)
        _aligned_free(data_);
#else
        std::free(data_);
#endif
        data_ = nullptr;
        capacity_ = 0;
    }
    const char* what_;
    float* data_ = nullptr;
    int64_t capacity_ = 0;
};

}  // namespace kn::cpu
