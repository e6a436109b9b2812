// layout.cu: the strided copy, the one kernel behind permute / transpose, narrow / select / slice and
// concatenate / stack / split: y = x, both through arbitrary strides (StridedCopyArgs, normalised by
// the API layer: size-1 dimensions dropped, neighbours merged where x and y stay linear).
//
// For a contiguous y (the fast path; y starts at y_offset), two kernels:
// - transpose_tiles: when x is contiguous along the output's second-to-last dimension and strided
//   along its last (a transpose of the last two dimensions, batched over the ones before). The
//   textbook shared-memory transpose: a 32 x 8 block reads a 32 x 32 tile with coalesced loads along
//   x's contiguous dimension, then writes it back with coalesced stores along y's rows. The tile is
//   padded to 33 columns so the column reads of the write phase hit 32 different banks.
// - strided_copy: anything else. One thread per output element, coalesced stores; reads are
//   coalesced whenever x's innermost stride is 1 (a permute that keeps the last dimension), strided
//   otherwise. Index math in 32 bits when every offset fits (64-bit division costs several times more).
// For a strided y (a slice of a larger tensor: a narrow's gradient, one part of a concatenation):
// - strided_copy_to_view: one thread per element, both offsets from the index. Stores are coalesced
//   whenever y's innermost stride is 1, which is the case of every slice along a dimension but the last.
//
// Napkin math: a copy moves 8 bytes per element, so at an H100's ~3 TB/s a 4096 x 4096 transpose
// (134 MB) should take ~45 us. A naive transpose reads with a 16 KB stride and uses 4 of every 32
// bytes fetched, about 8x the traffic. Not yet measured on a GPU.
#include "cuda_kernels.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <limits>

namespace kn::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kBlocksPerSm = 16;
constexpr int kTile = 32, kTileRows = 8;  // transpose: 32 x 32 tile, 32 x 8 threads, 4 elements each

// The offset in x of the first element of output plane `plane` (one index of the dimensions before
// the last two).
template <typename Index>
__device__ __forceinline__ Index plane_offset(const StridedCopyArgs& g, Index plane) {
    Index offset = static_cast<Index>(g.x_offset);
    for (int d = g.rank - 3; d >= 0; --d) {
        const Index dim = static_cast<Index>(g.dims[d]);
        const Index q = plane / dim;
        offset += (plane - q * dim) * static_cast<Index>(g.x_strides[d]);
        plane = q;
    }
    return offset;
}

template <typename Index>
__global__ void strided_copy_kernel(const float* x, float* y, const StridedCopyArgs g) {
    const Index n = static_cast<Index>(g.n);
    for (Index i = blockIdx.x * static_cast<Index>(blockDim.x) + threadIdx.x; i < n;
         i += static_cast<Index>(gridDim.x) * blockDim.x) {
        Index rest = i, offset = static_cast<Index>(g.x_offset);
        for (int d = g.rank - 1; d >= 0; --d) {
            const Index dim = static_cast<Index>(g.dims[d]);
            const Index q = rest / dim;
            offset += (rest - q * dim) * static_cast<Index>(g.x_strides[d]);
            rest = q;
        }
        y[i] = x[offset];
    }
}

template <typename Index>
__global__ void strided_copy_to_view_kernel(const float* x, float* y, const StridedCopyArgs g) {
    const Index n = static_cast<Index>(g.n);
    for (Index i = blockIdx.x * static_cast<Index>(blockDim.x) + threadIdx.x; i < n;
         i += static_cast<Index>(gridDim.x) * blockDim.x) {
        Index rest = i, from = static_cast<Index>(g.x_offset), to = static_cast<Index>(g.y_offset);
        for (int d = g.rank - 1; d >= 0; --d) {
            const Index dim = static_cast<Index>(g.dims[d]);
            const Index q = rest / dim, index = rest - q * dim;
            from += index * static_cast<Index>(g.x_strides[d]);
            to += index * static_cast<Index>(g.y_strides[d]);
            rest = q;
        }
        y[to] = x[from];
    }
}

// Block (32, 8) per 32 x 32 tile of the last two output dimensions; planes along grid z, strided.
template <typename Index>
__global__ void transpose_tiles_kernel(const float* x, float* y, const StridedCopyArgs g, Index planes) {
    __shared__ float tile[kTile][kTile + 1];
    const Index rows = static_cast<Index>(g.dims[g.rank - 2]), cols = static_cast<Index>(g.dims[g.rank - 1]);
    const Index col_stride = static_cast<Index>(g.x_strides[g.rank - 1]);  // x's row stride is 1
    const Index r0 = static_cast<Index>(blockIdx.y) * kTile, c0 = static_cast<Index>(blockIdx.x) * kTile;
    for (Index p = blockIdx.z; p < planes; p += gridDim.z) {
        const Index base = plane_offset<Index>(g, p);
        // Read: consecutive threadIdx.x walk output rows, which are consecutive in x.
        for (int k = threadIdx.y; k < kTile; k += kTileRows) {
            const Index r = r0 + threadIdx.x, c = c0 + k;
            if (r < rows && c < cols) tile[k][threadIdx.x] = x[base + r + c * col_stride];
        }
        __syncthreads();
        // Write: consecutive threadIdx.x walk output columns, which are consecutive in y.
        float* out = y + p * rows * cols;
        for (int k = threadIdx.y; k < kTile; k += kTileRows) {
            const Index r = r0 + k, c = c0 + threadIdx.x;
            if (r < rows && c < cols) out[r * cols + c] = tile[threadIdx.x][k];
        }
        __syncthreads();  // the next plane reuses the tile
    }
}

// Whether every index fits 32-bit arithmetic: the largest offsets read and written, and n.
bool fits_int32(const StridedCopyArgs& g) {
    int64_t last_read = g.x_offset, last_written = g.y_offset + g.n;
    for (int d = 0; d < g.rank; ++d) last_read += (g.dims[d] - 1) * g.x_strides[d];
    if (!g.y_contiguous) {
        last_written = g.y_offset;
        for (int d = 0; d < g.rank; ++d) last_written += (g.dims[d] - 1) * g.y_strides[d];
    }
    // n < 2^30 also keeps the grid-stride increment (i += grid size) from wrapping past 2^31.
    return g.n < (int64_t{1} << 30) && last_read < std::numeric_limits<int32_t>::max() &&
           last_written < std::numeric_limits<int32_t>::max();
}

template <typename Index>
cudaError_t launch(const StridedCopyArgs& g, const LaunchContext& ctx) {
    const float* x = static_cast<const float*>(g.x);
    float* y = static_cast<float*>(g.y);
    const int64_t blocks = std::min<int64_t>((g.n + kThreads - 1) / kThreads, int64_t{std::max(ctx.sm_count, 1)} * kBlocksPerSm);
    if (!g.y_contiguous) {
        strided_copy_to_view_kernel<Index><<<static_cast<unsigned>(std::max<int64_t>(blocks, 1)), kThreads, 0, ctx.stream>>>(x, y, g);
        return cudaGetLastError();
    }
    y += g.y_offset;  // the contiguous kernels write y from 0
    if (g.rank >= 2 && g.x_strides[g.rank - 2] == 1 && g.x_strides[g.rank - 1] != 1) {
        const int64_t rows = g.dims[g.rank - 2], cols = g.dims[g.rank - 1];
        const int64_t row_tiles = (rows + kTile - 1) / kTile, col_tiles = (cols + kTile - 1) / kTile;
        if (row_tiles <= 65535 && col_tiles <= std::numeric_limits<int32_t>::max()) {
            const int64_t planes = g.n / (rows * cols);
            const dim3 grid(static_cast<unsigned>(col_tiles), static_cast<unsigned>(row_tiles),
                            static_cast<unsigned>(std::min<int64_t>(planes, 65535)));
            transpose_tiles_kernel<Index><<<grid, dim3(kTile, kTileRows), 0, ctx.stream>>>(x, y, g, static_cast<Index>(planes));
            return cudaGetLastError();
        }
    }
    strided_copy_kernel<Index><<<static_cast<unsigned>(std::max<int64_t>(blocks, 1)), kThreads, 0, ctx.stream>>>(x, y, g);
    return cudaGetLastError();
}

}  // namespace

cudaError_t strided_copy_f32(const StridedCopyArgs& args, const LaunchContext& ctx) {
    return fits_int32(args) ? launch<int32_t>(args, ctx) : launch<int64_t>(args, ctx);
}

}  // namespace kn::cuda
