// softmax.cu: softmax and log-softmax over the rows of a [rows, cols] matrix (kn_softmax_f32) and
// their backward passes (kn_softmax_backward_f32):
//   forward:   y = exp(x - max) / sum(exp(x - max)),   log: y = x - max - ln(sum(exp(x - max)))
//   backward:  dx = y * (dy - sum(dy * y)),            log: dx = dy - exp(y) * sum(dy)
//
// Technique: one warp per row when a row has at most SOFTMAX_WARP_COLS elements (shuffles only, no
// shared memory, 8 rows per block), otherwise one block per row. The forward pass is the "online
// softmax" (Milakov & Gimelshein, 2018): a single read of the row keeps a running maximum m and a
// running sum s of exp(x - m), rescaling s whenever m grows; partial (m, s) pairs from threads merge
// the same way. A second read writes the outputs. Rows whose length is a multiple of 4 (with
// aligned buffers) move as float4. Every thread ends a reduction with the same bits (butterfly
// shuffles are symmetric, and the block step combines the warps in one fixed order), so results
// are reproducible.
//
// Napkin math: the forward reads x twice and writes y once (12 bytes per element; the second read
// usually hits L2 for rows under a few MB), the backward reads y and dy twice and writes dx. At an
// H100's ~3 TB/s a 4096 x 4096 forward should take ~70 us. Not yet measured on a GPU.
//
// NaN anywhere in a row makes the whole row NaN (it enters the sum); a row of all -inf gives NaN,
// as in PyTorch. y may be x and dx may be dy: each element is read and then written by one thread.
#include "cuda_kernels.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#ifndef SOFTMAX_WARP_COLS
#define SOFTMAX_WARP_COLS 1024  // rows up to this long: one warp per row (<= 32 elements per lane)
#endif
#ifndef SOFTMAX_BLOCK_THREADS
#define SOFTMAX_BLOCK_THREADS 256  // threads per block (8 warp-rows, or one long row)
#endif
#ifndef SOFTMAX_WIDE_COLS
#define SOFTMAX_WIDE_COLS 16384  // rows longer than this get 1024 threads
#endif

namespace kn::cuda {
namespace {

// A running maximum and the sum of exp(x - max) over the elements seen.
struct MaxSum {
    float max, sum;
};

__device__ __forceinline__ void add_element(MaxSum& a, float x) {
    if (x > a.max) {  // the new maximum rescales the old sum; exp(-inf) = 0 covers the first element
        a.sum = a.sum * expf(a.max - x) + 1.0f;
        a.max = x;
    } else if (x != -INFINITY) {  // -inf adds nothing (and -inf - -inf would be NaN); NaN lands here
        a.sum += expf(x - a.max);
    }
}

// Symmetric in a and b (fmaxf and + commute), so butterfly partners compute the same bits.
__device__ __forceinline__ MaxSum merge(MaxSum a, MaxSum b) {
    const float m = fmaxf(a.max, b.max);
    const float sa = a.max == -INFINITY ? 0.0f : a.sum * expf(a.max - m);
    const float sb = b.max == -INFINITY ? 0.0f : b.sum * expf(b.max - m);
    return MaxSum{m, sa + sb};
}

__device__ __forceinline__ MaxSum combine(MaxSum a, MaxSum b) { return merge(a, b); }
__device__ __forceinline__ float combine(float a, float b) { return a + b; }

__device__ __forceinline__ MaxSum shuffle_xor(MaxSum v, int mask) {
    return MaxSum{__shfl_xor_sync(0xffffffffu, v.max, mask), __shfl_xor_sync(0xffffffffu, v.sum, mask)};
}
__device__ __forceinline__ float shuffle_xor(float v, int mask) { return __shfl_xor_sync(0xffffffffu, v, mask); }

// Every lane (BLOCK: every thread of the block) ends with the combination over the warp (block).
// The block variant ends with a barrier so `shared` (32 entries) may be reused right after.
template <bool BLOCK, typename T>
__device__ __forceinline__ T all_reduce(T v, T* shared) {
#pragma unroll
    for (int mask = 16; mask > 0; mask /= 2) v = combine(v, shuffle_xor(v, mask));
    if constexpr (BLOCK) {
        const int warps = blockDim.x / 32;
        if (threadIdx.x % 32 == 0) shared[threadIdx.x / 32] = v;
        __syncthreads();
        v = shared[0];
        for (int w = 1; w < warps; ++w) v = combine(v, shared[w]);
        __syncthreads();
    }
    return v;
}

// Which rows a thread works on and where it starts in a row. BLOCK: block b takes rows b, b + grid,
// ...; otherwise warp w of the grid takes rows w, w + warps, ...
template <bool BLOCK>
struct RowWalk {
    int64_t first_row, row_step;
    int rank, size;  // this thread's position in its row group, and the group's size
    __device__ __forceinline__ RowWalk() {
        if constexpr (BLOCK) {
            first_row = blockIdx.x;
            row_step = gridDim.x;
            rank = threadIdx.x;
            size = blockDim.x;
        } else {
            const int warps_per_block = blockDim.x / 32;
            first_row = int64_t{blockIdx.x} * warps_per_block + threadIdx.x / 32;
            row_step = int64_t{gridDim.x} * warps_per_block;
            rank = threadIdx.x % 32;
            size = 32;
        }
    }
};

// Launched with up to 1024 threads (long rows), so it must fit 64 registers per thread.
template <bool BLOCK, bool VEC>
__global__ void __launch_bounds__(1024) softmax_kernel(const float* x, float* y, int64_t rows, int64_t cols, bool log) {
    __shared__ MaxSum shared[32];
    const RowWalk<BLOCK> walk;
    for (int64_t row = walk.first_row; row < rows; row += walk.row_step) {
        const float* xr = x + row * cols;
        float* yr = y + row * cols;
        MaxSum ms{-INFINITY, 0.0f};
        if (VEC) {
            const float4* x4 = reinterpret_cast<const float4*>(xr);
            for (int64_t c = walk.rank; c < cols / 4; c += walk.size) {
                const float4 v = x4[c];
                add_element(ms, v.x); add_element(ms, v.y); add_element(ms, v.z); add_element(ms, v.w);
            }
        } else {
            for (int64_t c = walk.rank; c < cols; c += walk.size) add_element(ms, xr[c]);
        }
        ms = all_reduce<BLOCK>(ms, shared);
        const float m = ms.max, s = ms.sum, log_s = logf(ms.sum);
        if (VEC) {
            const float4* x4 = reinterpret_cast<const float4*>(xr);
            float4* y4 = reinterpret_cast<float4*>(yr);
            for (int64_t c = walk.rank; c < cols / 4; c += walk.size) {
                const float4 v = x4[c];
                y4[c] = log ? make_float4(v.x - m - log_s, v.y - m - log_s, v.z - m - log_s, v.w - m - log_s)
                            : make_float4(expf(v.x - m) / s, expf(v.y - m) / s, expf(v.z - m) / s, expf(v.w - m) / s);
            }
        } else {
            for (int64_t c = walk.rank; c < cols; c += walk.size) {
                const float v = xr[c];
                yr[c] = log ? v - m - log_s : expf(v - m) / s;
            }
        }
    }
}

// softmax: dx = y * (dy - sum(dy * y)); log_softmax: dx = dy - exp(y) * sum(dy).
template <bool BLOCK, bool VEC>
__global__ void __launch_bounds__(1024) softmax_backward_kernel(const float* y, const float* dy, float* dx, int64_t rows, int64_t cols, bool log) {
    __shared__ float shared[32];
    const RowWalk<BLOCK> walk;
    for (int64_t row = walk.first_row; row < rows; row += walk.row_step) {
        const float* yr = y + row * cols;
        const float* dyr = dy + row * cols;
        float* dxr = dx + row * cols;
        float sum = 0.0f;
        if (VEC) {
            const float4* y4 = reinterpret_cast<const float4*>(yr);
            const float4* g4 = reinterpret_cast<const float4*>(dyr);
            for (int64_t c = walk.rank; c < cols / 4; c += walk.size) {
                const float4 g = g4[c];
                if (log) {
                    sum += (g.x + g.y) + (g.z + g.w);
                } else {
                    const float4 v = y4[c];
                    sum += (g.x * v.x + g.y * v.y) + (g.z * v.z + g.w * v.w);
                }
            }
        } else {
            for (int64_t c = walk.rank; c < cols; c += walk.size) sum += log ? dyr[c] : dyr[c] * yr[c];
        }
        sum = all_reduce<BLOCK>(sum, shared);
        if (VEC) {
            const float4* y4 = reinterpret_cast<const float4*>(yr);
            const float4* g4 = reinterpret_cast<const float4*>(dyr);
            float4* d4 = reinterpret_cast<float4*>(dxr);
            for (int64_t c = walk.rank; c < cols / 4; c += walk.size) {
                const float4 v = y4[c], g = g4[c];
                d4[c] = log ? make_float4(g.x - expf(v.x) * sum, g.y - expf(v.y) * sum, g.z - expf(v.z) * sum,
                                          g.w - expf(v.w) * sum)
                            : make_float4(v.x * (g.x - sum), v.y * (g.y - sum), v.z * (g.z - sum), v.w * (g.w - sum));
            }
        } else {
            for (int64_t c = walk.rank; c < cols; c += walk.size) {
                const float v = yr[c], g = dyr[c];
                dxr[c] = log ? g - expf(v) * sum : v * (g - sum);
            }
        }
    }
}

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

unsigned grid_size(int64_t blocks) { return static_cast<unsigned>(std::max<int64_t>(1, std::min<int64_t>(blocks, 0x7fffffff))); }

// Launches KERNEL<BLOCK, VEC> with the row-to-thread mapping chosen from cols.
template <template <bool, bool> class Kernel, typename... Args>
cudaError_t launch_rows(int64_t rows, int64_t cols, bool vec, const LaunchContext& ctx, Args... args) {
    if (cols <= SOFTMAX_WARP_COLS) {
        const unsigned grid = grid_size((rows + SOFTMAX_BLOCK_THREADS / 32 - 1) / (SOFTMAX_BLOCK_THREADS / 32));
        if (vec) Kernel<false, true>::launch(grid, SOFTMAX_BLOCK_THREADS, ctx.stream, args...);
        else Kernel<false, false>::launch(grid, SOFTMAX_BLOCK_THREADS, ctx.stream, args...);
    } else {
        const int threads = cols > SOFTMAX_WIDE_COLS ? 1024 : SOFTMAX_BLOCK_THREADS;
        if (vec) Kernel<true, true>::launch(grid_size(rows), threads, ctx.stream, args...);
        else Kernel<true, false>::launch(grid_size(rows), threads, ctx.stream, args...);
    }
    return cudaGetLastError();
}

template <bool BLOCK, bool VEC>
struct Forward {
    static void launch(unsigned grid, int threads, cudaStream_t stream, const float* x, float* y, int64_t rows,
                       int64_t cols, bool log) {
        softmax_kernel<BLOCK, VEC><<<grid, threads, 0, stream>>>(x, y, rows, cols, log);
    }
};

template <bool BLOCK, bool VEC>
struct Backward {
    static void launch(unsigned grid, int threads, cudaStream_t stream, const float* y, const float* dy, float* dx,
                       int64_t rows, int64_t cols, bool log) {
        softmax_backward_kernel<BLOCK, VEC><<<grid, threads, 0, stream>>>(y, dy, dx, rows, cols, log);
    }
};

}  // namespace

cudaError_t softmax_f32(const SoftmaxArgs& args, const LaunchContext& ctx) {
    const float* x = static_cast<const float*>(args.x);
    float* y = static_cast<float*>(args.y);
    const bool vec = args.cols % 4 == 0 && aligned16(x) && aligned16(y);
    return launch_rows<Forward>(args.rows, args.cols, vec, ctx, x, y, args.rows, args.cols, args.log);
}

cudaError_t softmax_backward_f32(const SoftmaxBackwardArgs& args, const LaunchContext& ctx) {
    const float* y = static_cast<const float*>(args.y);
    const float* dy = static_cast<const float*>(args.dy);
    float* dx = static_cast<float*>(args.dx);
    const bool vec = args.cols % 4 == 0 && aligned16(y) && aligned16(dy) && aligned16(dx);
    return launch_rows<Backward>(args.rows, args.cols, vec, ctx, y, dy, dx, args.rows, args.cols, args.log);
}

}  // namespace kn::cuda
