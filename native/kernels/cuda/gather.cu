// gather.cu: the gather family on CUDA: gather rows (index_select along dim 0, the forward of an
// embedding lookup) and its deterministic scatter-add backward.
//
// Gather: one thread per output element, grid-stride; consecutive threads copy consecutive columns
// of one row, so loads (of one table row) and stores are coalesced.
//
// Scatter-add: the API layer hands over a plan (ScatterAddRowsArgs in ops.h): the positions stably
// sorted by target row, on the host. One thread per (segment, column): it adds the segment's
// positions into dtable[row, c] one after the other, in ascending position order. No two threads
// write one element, so there are no atomics, and the order of the additions is the CPU's:
// the same bits on every run and on every backend. Napkin math: consecutive threads take consecutive
// columns of one row, so each of the segment's positions is a coalesced read of a dy row; traffic is
// dy once plus each touched table row once (12 bytes per element of dy at most), a few microseconds
// at HBM bandwidth for a batch of 64 x 100 tokens of 128 floats. The weak spot is a very frequent
// row (a padding-like token in every position): its threads walk all its positions in sequence. The
// loads do not depend on the running sum, so they can overlap; if they did not, one memory latency
// (~0.5 us) per position would make 6,400 positions ~3 ms. Not measured (no GPU here); splitting long
// segments into fixed chunks summed in a fixed order would keep determinism if it shows up.
#include "cuda_kernels.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

namespace kn::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kBlocksPerSm = 16;

__global__ void gather_rows_kernel(const float* __restrict__ table, const int64_t* __restrict__ indices,
                                   float* __restrict__ y, int64_t n, int64_t cols) {
    const int64_t total = n * cols;
    for (int64_t e = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; e < total; e += int64_t{gridDim.x} * blockDim.x) {
        const int64_t i = e / cols, c = e - i * cols;
        y[e] = table[indices[i] * cols + c];
    }
}

__global__ void scatter_add_rows_kernel(const float* __restrict__ dy, const int64_t* __restrict__ plan,
                                        float* __restrict__ dtable, int64_t segments, int64_t cols) {
    const int64_t* starts = plan + segments;
    const int64_t* order = starts + segments + 1;
    const int64_t total = segments * cols;
    for (int64_t e = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; e < total; e += int64_t{gridDim.x} * blockDim.x) {
        const int64_t s = e / cols, c = e - s * cols;
        float* target = dtable + plan[s] * cols + c;
        float sum = *target;
        for (int64_t k = starts[s]; k < starts[s + 1]; ++k) sum += dy[order[k] * cols + c];
        *target = sum;
    }
}

unsigned blocks_for(int64_t total, const LaunchContext& ctx) {
    const int64_t blocks = std::min<int64_t>((total + kThreads - 1) / kThreads, int64_t{std::max(ctx.sm_count, 1)} * kBlocksPerSm);
    return static_cast<unsigned>(std::max<int64_t>(blocks, 1));
}

}  // namespace

cudaError_t gather_rows_f32(const GatherRowsArgs& a, const LaunchContext& ctx) {
    gather_rows_kernel<<<blocks_for(a.n * a.cols, ctx), kThreads, 0, ctx.stream>>>(
        static_cast<const float*>(a.table), static_cast<const int64_t*>(a.indices), static_cast<float*>(a.y), a.n, a.cols);
    return cudaGetLastError();
}

cudaError_t scatter_add_rows_f32(const ScatterAddRowsArgs& a, const LaunchContext& ctx) {
    scatter_add_rows_kernel<<<blocks_for(a.segments * a.cols, ctx), kThreads, 0, ctx.stream>>>(
        static_cast<const float*>(a.dy), static_cast<const int64_t*>(a.plan), static_cast<float*>(a.dtable), a.segments,
        a.cols);
    return cudaGetLastError();
}

}  // namespace kn::cuda
