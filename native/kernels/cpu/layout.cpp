// layout.cpp: the strided copy on the CPU, the one kernel behind permute / transpose, narrow / select /
// slice, concatenate / stack / split: y = x, both read or written through arbitrary strides.
//
// The API layer hands over a normalised geometry (StridedCopyArgs in ops.h): size-1 dimensions
// dropped and neighbours merged wherever x and y stay linear across them, so a permute that keeps the
// last dimension in place arrives as rows of contiguous floats (a memcpy each) and a 2-D transpose
// arrives as rank 2 with x_strides = {1, rows}.
//
// Technique: the last two output dimensions are cut into tiles, 32 x 32 when both sides of the copy
// are strided (a transpose: each tile reads 32 columns of 32 floats, 32 cache lines, which all stay
// in L1 while the tile's 32 output rows are written), whole rows when x's and y's inner strides
// are 1 (then both sides stream). Tiles run on the thread pool, at least 16K elements per hand-off.
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

// The offsets in x and in y (elements) of the first element of plane `plane`, where a plane is one
// index of the dimensions before the last two (row-major, the order y is written in when contiguous).
struct PlaneOffsets {
    int64_t x, y;
};
PlaneOffsets plane_offsets(const StridedCopyArgs& a, int64_t plane) {
    PlaneOffsets o{a.x_offset, a.y_offset};
    for (int32_t d = a.rank - 3; d >= 0; --d) {
        const int64_t i = plane % a.dims[d];
        o.x += i * a.x_strides[d];
        o.y += i * a.y_strides[d];
        plane /= a.dims[d];
    }
    return o;
}

}  // namespace

// One code path for both destinations: a contiguous y is the case y_strides = row-major (its rows
// are memcpy'd when x's rows are contiguous too); a strided y (a slice of a larger tensor: the
// gradient of a narrow, a part of a concatenation) goes through the same tiles with its own strides.
void strided_copy_f32(const StridedCopyArgs& a) {
    const float* x = static_cast<const float*>(a.x);
    float* y = static_cast<float*>(a.y);
    if (a.rank == 1) {
        const int64_t xs = a.x_strides[0], ys = a.y_strides[0];
        parallel_for(a.n, kGrain, [&](int64_t begin, int64_t end) {
            const float* src = x + a.x_offset;
            float* dst = y + a.y_offset;
            if (xs == 1 && ys == 1) std::memcpy(dst + begin, src + begin, static_cast<size_t>(end - begin) * sizeof(float));
            else for (int64_t i = begin; i < end; ++i) dst[i * ys] = src[i * xs];
        });
        return;
    }
    const int64_t rows = a.dims[a.rank - 2], cols = a.dims[a.rank - 1];
    const int64_t x_row = a.x_strides[a.rank - 2], x_col = a.x_strides[a.rank - 1];
    const int64_t y_row = a.y_strides[a.rank - 2], y_col = a.y_strides[a.rank - 1];
    const bool rows_stream = x_col == 1 && y_col == 1;
    const int64_t planes = a.n / (rows * cols);
    const int64_t tile_rows = kTile, tile_cols = rows_stream ? cols : kTile;
    const int64_t row_tiles = (rows + tile_rows - 1) / tile_rows, col_tiles = (cols + tile_cols - 1) / tile_cols;
    const int64_t tiles = planes * row_tiles * col_tiles;
    parallel_for(tiles, std::max<int64_t>(1, kGrain / (tile_rows * tile_cols)), [&](int64_t begin, int64_t end) {
        for (int64_t t = begin; t < end; ++t) {
            const int64_t plane = t / (row_tiles * col_tiles), in_plane = t % (row_tiles * col_tiles);
            const int64_t r0 = in_plane / col_tiles * tile_rows, c0 = in_plane % col_tiles * tile_cols;
            const int64_t r1 = std::min(rows, r0 + tile_rows), c1 = std::min(cols, c0 + tile_cols);
            const PlaneOffsets o = plane_offsets(a, plane);
            const float* src = x + o.x;
            float* dst = y + o.y;
            if (rows_stream) {
                for (int64_t r = r0; r < r1; ++r)
                    std::memcpy(dst + r * y_row + c0, src + r * x_row + c0, static_cast<size_t>(c1 - c0) * sizeof(float));
            } else {
                for (int64_t r = r0; r < r1; ++r)
                    for (int64_t c = c0; c < c1; ++c) dst[r * y_row + c * y_col] = src[r * x_row + c * x_col];
            }
        }
    });
}

}  // namespace kn::cpu
