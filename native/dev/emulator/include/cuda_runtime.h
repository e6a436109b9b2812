// The CPU emulator's stand-in for <cuda_runtime.h>: just enough of CUDA C++ for the kernels in
// native/kernels/cuda to compile as ordinary C++ and run on the CPU (see ../emulator.cpp and
// ../../README.md). Not a general CUDA emulator: it covers what those kernels use.
//
// Model: a launch runs its blocks one after another; the threads of a block are fibers on one OS
// thread, each running until it reaches __syncthreads or a warp shuffle, so shared memory can be a
// function-local static (one block alive at a time) and barriers are exact.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <tuple>

#define __global__
#define __device__
#define __host__
#define __forceinline__ __attribute__((always_inline)) inline
#define __shared__ static
#define __align__(n) __attribute__((aligned(n)))
#define __launch_bounds__(...)

typedef enum cudaError {
    cudaSuccess = 0,
    cudaErrorInvalidValue = 1,
    cudaErrorInvalidConfiguration = 9
} cudaError_t;
typedef struct CUstream_st* cudaStream_t;

inline const char* cudaGetErrorName(cudaError_t e) {
    switch (e) {
        case cudaSuccess: return "cudaSuccess";
        case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
        case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    }
    return "unknown";
}

struct dim3 {
    unsigned x = 1, y = 1, z = 1;
    dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
struct uint3 {
    unsigned x, y, z;
};
// 16-byte aligned like CUDA's, so a misaligned float4 access is caught (UBSan's alignment check).
struct alignas(16) float4 {
    float x, y, z, w;
};
inline float4 make_float4(float x, float y, float z, float w) { return float4{x, y, z, w}; }

namespace emu {

struct ThreadState {
    uint3 thread_idx;
};
extern ThreadState* current_thread;
extern uint3 block_idx;
extern dim3 block_dim, grid_dim;

void* dynamic_shared();
void syncthreads();
int lane_id();
// Every lane of the warp deposits `in`; each then receives the value of lane `src` (its own value
// when src < 0). Checks that all 32 lanes take part, as a full-mask shuffle requires.
void shuffle_exchange(const void* in, void* out, size_t bytes, int src);
cudaError_t& last_error();
void run_grid(dim3 grid, dim3 block, size_t shared, const std::function<void()>& body);

// `kernel<<<grid, block, shared, stream>>>(args)` is rewritten by translate.py into
// `emu::make_launch(&kernel, grid, block, shared, stream)(args)`.
template <typename... Params>
struct Launch {
    void (*kernel)(Params...);
    dim3 grid, block;
    size_t shared;
    template <typename... Args>
    void operator()(Args&&... args) const {
        const std::tuple<Params...> params(static_cast<Params>(args)...);  // copied, as kernel arguments are
        run_grid(grid, block, shared, [&] { std::apply(kernel, params); });
    }
};
template <typename... Params>
Launch<Params...> make_launch(void (*kernel)(Params...), dim3 grid, dim3 block, size_t shared = 0,
                              cudaStream_t = nullptr) {
    return Launch<Params...>{kernel, grid, block, shared};
}

}  // namespace emu

#define threadIdx (emu::current_thread->thread_idx)
#define blockIdx (emu::block_idx)
#define blockDim (emu::block_dim)
#define gridDim (emu::grid_dim)

inline void __syncthreads() { emu::syncthreads(); }

inline cudaError_t cudaGetLastError() {
    const cudaError_t e = emu::last_error();
    emu::last_error() = cudaSuccess;
    return e;
}

template <typename T>
T __ldg(const T* p) {
    return *p;
}

// The high 32 bits of the 64-bit product (multiply-shift division, kernels/cuda/fast_divmod.cuh).
inline unsigned __umulhi(unsigned a, unsigned b) {
    return static_cast<unsigned>((static_cast<unsigned long long>(a) * b) >> 32);
}

template <typename T>
T __shfl_down_sync(unsigned mask, T v, int delta) {
    if (mask != 0xffffffffu) __builtin_trap();  // the kernels only use full-warp shuffles
    T out;
    const int src = emu::lane_id() + delta;
    emu::shuffle_exchange(&v, &out, sizeof(T), src < 32 ? src : -1);
    return out;
}

template <typename T>
T __shfl_xor_sync(unsigned mask, T v, int lane_mask) {
    if (mask != 0xffffffffu) __builtin_trap();
    T out;
    emu::shuffle_exchange(&v, &out, sizeof(T), emu::lane_id() ^ lane_mask);
    return out;
}
