// layout.cpp: the strided copy on the CPU, the one kernel behind permute / transpose (kn_permute_f32)
// and, later, slices and concatenation: y (contiguous) = x read through arbitrary strides.
//
// The API layer hands over a normalised geometry (StridedCopyArgs in backend.h): size-1 dimensions
// dropped and neighbours merged wherever x stays linear across them, so a permute that keeps the
// last dimension in place arrives as rows of contiguous floats (a memcpy each) and a 2-D transpose
// arrives as rank 2 with x_strides = {1, rows}.
//
// Technique: the last two output dimensions are cut into tiles, 32 x 32 when both sides of the copy
// are strided (a transpose: each tile reads 32 columns of 32 floats, 32 cache lines, which all stay
// in L1 while the tile's 32 output rows are written), whole rows when x's inner stride is 1 (then
// both sides stream). Tiles run on the thread pool, at least 16K elements per hand-off.
//
// Napkin math: a copy moves 8 bytes per element; a 4096 x 4096 transpose is 134 MB of traffic, about
// 10 ms at a core's ~13 GB/s of streaming bandwidth. A naive column walk instead touches a new cache
// line for every element read (64 B for 4 useful), 16x the traffic.
#include "cpu_kernels.h"
#include "thread_pool.h"

#include <algorithm>
#include <cstring>

namespace kn::cpu {
namespace {

constexpr int64_t kGrain = 1 << 14;  // elements per hand-off to the pool
constexpr int64_t kTile = 32;        // tile edge of the strided (transposing) case

// The offset in x (elements) of the first element of output plane `plane`, where a plane is one
// index of the dimensions before the last two (row-major, as y is laid out).
int64_t plane_offset(const StridedCopyArgs& a, int64_t plane) {
    int64_t offset = a.x_offset;
    for (int32_t d = a.rank - 3; d >= 0; --d) {
        offset += plane % a.dims[d] * a.x_strides[d];
        plane /= a.dims[d];
    }
    return offset;
}

}  // namespace

void strided_copy_f32(const StridedCopyArgs& a) {
    const float* x = static_cast<const float*>(a.x);
    float* y = static_cast<float*>(a.y);
    if (a.rank == 1) {
        const int64_t stride = a.x_strides[0];
        parallel_for(a.n, kGrain, [&](int64_t begin, int64_t end) {
            const float* src = x + a.x_offset;
            if (stride == 1) std::memcpy(y + begin, src + begin, static_cast<size_t>(end - begin) * sizeof(float));
            else for (int64_t i = begin; i < end; ++i) y[i] = src[i * stride];
        });
        return;
    }
    const int64_t rows = a.dims[a.rank - 2], cols = a.dims[a.rank - 1];
    const int64_t row_stride = a.x_strides[a.rank - 2], col_stride = a.x_strides[a.rank - 1];
    const int64_t planes = a.n / (rows * cols);
    const int64_t tile_rows = kTile, tile_cols = col_stride == 1 ? cols : kTile;
    const int64_t row_tiles = (rows + tile_rows - 1) / tile_rows, col_tiles = (cols + tile_cols - 1) / tile_cols;
    const int64_t tiles = planes * row_tiles * col_tiles;
    parallel_for(tiles, std::max<int64_t>(1, kGrain / (tile_rows * tile_cols)), [&](int64_t begin, int64_t end) {
        for (int64_t t = begin; t < end; ++t) {
            const int64_t plane = t / (row_tiles * col_tiles), in_plane = t % (row_tiles * col_tiles);
            const int64_t r0 = in_plane / col_tiles * tile_rows, c0 = in_plane % col_tiles * tile_cols;
            const int64_t r1 = std::min(rows, r0 + tile_rows), c1 = std::min(cols, c0 + tile_cols);
            const float* src = x + plane_offset(a, plane);
            float* dst = y + plane * rows * cols;
            if (col_stride == 1) {
                for (int64_t r = r0; r < r1; ++r)
                    std::memcpy(dst + r * cols + c0, src + r * row_stride + c0, static_cast<size_t>(c1 - c0) * sizeof(float));
            } else {
                for (int64_t r = r0; r < r1; ++r)
                    for (int64_t c = c0; c < c1; ++c) dst[r * cols + c] = src[r * row_stride + c * col_stride];
            }
        }
    });
}

}  // namespace kn::cpu
