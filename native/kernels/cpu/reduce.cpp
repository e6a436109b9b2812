// reduce.cpp: sum / mean / max / min / sum of squares and argmax / argmin over the middle axis of
// x viewed as [outer, reduce, inner], on the CPU.
//
// Technique: inner == 1 reduces contiguous rows (span kernels with 32 SIMD lanes per block of
// 1024 and a pairwise tree across blocks); inner > 1 reduces column blocks of up to 256 floats,
// 32 columns at a time with the accumulators in registers while the rows stream past (pairwise
// across row blocks; a narrow inner, e.g. [N, 4], is read as one flat span whose lanes map to
// columns); sums over 257-8192 columns take a row chunk (~512 KB) of every block at a time
// (sum_wide_columns). Threads take (outer, column block) units; when there are fewer units than threads, as
// for a full reduction (outer = inner = 1, e.g. 64M elements), the reduce axis itself is cut into
// parts whose partial results are combined in order at the end.
// Napkin math: a reduction reads 4 bytes per element and does 1 add: memory-bound at any SIMD
// width, so the goal is to keep both cores streaming (DRAM ~20-40 GB/s on this 2-core machine).
// Measured (64 MB input, both threads, GB/s read; a 2-thread memcpy moved 68 GB/s read + written
// in the same run on the quiet 2-core Zen 5 VM): full sum 100, full max 82, row sums
// [16384, 1024, 1] 114, column sums [1, 16384, 1024] 63, [64, 512, 512] 72, [1, 4M, 4] 50,
// column max 31, argmax of all elements 75, argmax of rows of 1000 54, column argmax 23.
// NaN: MAX/MIN return NaN when any element is NaN; ARGMAX/ARGMIN treat NaN as the extreme and
// return the first NaN's index (torch semantics); otherwise the first index of the extreme value.
#include "cpu_kernels.h"
#include "span_kernels.h"

#include "thread_pool.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#ifndef REDUCE_GRAIN
#define REDUCE_GRAIN 32768  // elements per task at least: below that a thread hand-off costs more
#endif

namespace kn::cpu {
namespace {

constexpr int64_t kMaxPartRows = int64_t{1} << 30;

bool is_nan(float v) { return v != v; }

// The same NaN-propagating step as the span kernels, for combining partial results.
float extreme_step(float acc, float v, bool is_max) {
    if (is_nan(acc)) return acc;
    if (is_nan(v)) return v;
    return is_max ? (v > acc ? v : acc) : (v < acc ? v : acc);
}

// How the work is cut: units = outer x column blocks, each unit's reduce axis in `parts` pieces.
struct Partition {
    int64_t blocks;     // column blocks per outer index (1 when inner == 1)
    int64_t units;      // outer * blocks
    int64_t parts;      // pieces of the reduce axis per unit
    int64_t part_rows;  // rows of the reduce axis per piece (the last may be shorter)
};

Partition partition(int64_t outer, int64_t reduce, int64_t inner, bool wide = false) {
    Partition p;
    p.blocks = inner == 1 || wide ? 1 : (inner + kColumnWidth - 1) / kColumnWidth;
    p.units = outer * p.blocks;
    p.parts = 1;
    const int64_t threads = thread_count();
    const int64_t total = outer * reduce * inner;
    if (p.units < threads && total >= 2 * REDUCE_GRAIN) {
        const int64_t wanted = (threads + p.units - 1) / p.units;
        const int64_t width = inner == 1 ? 1 : wide ? inner : std::min<int64_t>(inner, kColumnWidth);
        const int64_t max_parts = std::max<int64_t>(1, reduce * width / REDUCE_GRAIN);
        p.parts = std::min(wanted, max_parts);
    }
    // The column kernels count rows in int32 lanes: keep every part under 2^31 rows.
    p.parts = std::max(p.parts, (reduce + kMaxPartRows - 1) / kMaxPartRows);
    p.part_rows = (reduce + p.parts - 1) / p.parts;
    if (inner == 1) {
        // Cut contiguous rows at multiples of 2048 so each part's pairwise tree has whole blocks.
        p.part_rows = (p.part_rows + 2047) / 2048 * 2048;
        p.parts = (reduce + p.part_rows - 1) / p.part_rows;
    }
    return p;
}

// Runs task(unit, part) for every unit and part, on the pool.
template <typename Task>
void run_tasks(const Partition& p, int64_t elements_per_task, Task task) {
    const int64_t tasks = p.units * p.parts;
    const int64_t grain = std::max<int64_t>(1, REDUCE_GRAIN / std::max<int64_t>(1, elements_per_task));
    parallel_for(tasks, grain, [&](int64_t begin, int64_t end) {
        for (int64_t t = begin; t < end; ++t) task(t / p.parts, t % p.parts);
    });
}

// Column sums of a row-major [rows, inner] block with kColumnWidth < inner <= kWideColumns, all of
// its column blocks together: rows in chunks of about kChunkBytes, each chunk summed block by block
// while it is in the cache, the chunks combined pairwise (the same pairwise error class as the leaves
// inside sum_columns). One block at a time over all rows instead read every row 1 KB at a time with
// the row's other kilobytes left for a later pass: the DRAM stream then skipped between every
// kilobyte, and the hardware prefetchers fetched part of what the pass skipped. Measured, one thread,
// [131072, 512] on one Zen 5 core: 0.56-0.61x -> 0.70-0.75x of a one-thread memcpy on the AVX2
// path, 0.59-0.61x -> 0.72-0.75x with AVX-512 (load 14).
constexpr int64_t kWideColumns = 8192;
constexpr int64_t kChunkBytes = int64_t{512} << 10;
void sum_wide_columns(const SpanKernels& K, const float* x, int64_t rows, int64_t inner, int64_t chunk_rows,
                      bool squares, float* out) {
    if (rows <= chunk_rows) {
        for (int64_t i0 = 0; i0 < inner; i0 += kColumnWidth)
            K.sum_columns(x + i0, rows, inner, std::min(kColumnWidth, inner - i0), squares, out + i0);
        return;
    }
    const int64_t chunks = (rows + chunk_rows - 1) / chunk_rows;
    const int64_t mid = chunks / 2 * chunk_rows;
    std::vector<float> right(static_cast<size_t>(inner));
    sum_wide_columns(K, x, mid, inner, chunk_rows, squares, out);
    sum_wide_columns(K, x + mid * inner, rows - mid, inner, chunk_rows, squares, right.data());
    for (int64_t i = 0; i < inner; ++i) out[i] += right[i];
}

}  // namespace

void reduce_f32(const ReduceArgs& args) {
    const SpanKernels& K = span_kernels();
    const float* x = static_cast<const float*>(args.x);
    float* y = static_cast<float*>(args.y);
    const int64_t outer = args.outer, reduce = args.reduce, inner = args.inner;
    const bool is_sum = args.op == KN_REDUCE_SUM || args.op == KN_REDUCE_MEAN || args.op == KN_REDUCE_SUM_SQUARES;
    const bool squares = args.op == KN_REDUCE_SUM_SQUARES, is_max = args.op == KN_REDUCE_MAX;

    if (reduce == 0) {  // the API answers this itself; kept so the kernel is total
        const float v = args.op == KN_REDUCE_MEAN ? std::numeric_limits<float>::quiet_NaN() : 0.0f;
        std::fill(y, y + outer * inner, v);
        return;
    }
    // Divide (not multiply by 1/reduce) so a mean of equal values is exact.
    const float count = static_cast<float>(reduce);
    auto finish = [&](float v) { return args.op == KN_REDUCE_MEAN ? v / count : v; };

    // Sums over more than one column block but not too many take all blocks of a row chunk together.
    const bool wide = is_sum && inner > kColumnWidth && inner <= kWideColumns;
    const int64_t chunk_rows = wide ? std::max<int64_t>(16, kChunkBytes / (inner * 4) / 16 * 16) : 0;
    const Partition p = partition(outer, reduce, inner, wide);
    const int64_t width_max = inner == 1 ? 1 : wide ? inner : std::min<int64_t>(inner, kColumnWidth);
    // Partial results, one row of width_max per (unit, part), only when the reduce axis is split.
    std::vector<float> partial(p.parts > 1 ? static_cast<size_t>(p.units * p.parts * width_max) : 0);

    run_tasks(p, p.part_rows * width_max, [&](int64_t unit, int64_t part) {
        const int64_t o = unit / p.blocks, block = unit % p.blocks;
        const int64_t r0 = part * p.part_rows, r1 = std::min(reduce, r0 + p.part_rows);
        float* out = p.parts > 1 ? partial.data() + (unit * p.parts + part) * width_max : nullptr;
        if (inner == 1) {
            const float* row = x + o * reduce + r0;
            const float v = is_sum ? K.sum(row, r1 - r0, squares) : K.extreme(row, r1 - r0, is_max);
            if (out) out[0] = v;
            else y[o] = finish(v);
            return;
        }
        const int64_t i0 = block * kColumnWidth, width = wide ? inner : std::min(kColumnWidth, inner - i0);
        const float* base = x + (o * reduce + r0) * inner + i0;
        float* dst = out ? out : y + o * inner + i0;
        if (wide) sum_wide_columns(K, base, r1 - r0, inner, chunk_rows, squares, dst);
        else if (is_sum) K.sum_columns(base, r1 - r0, inner, width, squares, dst);
        else K.extreme_columns(base, r1 - r0, inner, width, is_max, dst);
        if (!out && args.op == KN_REDUCE_MEAN)
            for (int64_t i = 0; i < width; ++i) dst[i] /= count;
    });

    if (p.parts == 1) return;
    // Combine the parts of each unit in order (a handful per unit).
    for (int64_t unit = 0; unit < p.units; ++unit) {
        const int64_t o = unit / p.blocks, block = unit % p.blocks;
        const int64_t i0 = inner == 1 ? 0 : block * kColumnWidth;
        const int64_t width = inner == 1 ? 1 : wide ? inner : std::min(kColumnWidth, inner - i0);
        float* dst = y + o * inner + i0;
        for (int64_t i = 0; i < width; ++i) {
            float acc = partial[(unit * p.parts) * width_max + i];
            for (int64_t part = 1; part < p.parts; ++part) {
                const float v = partial[(unit * p.parts + part) * width_max + i];
                acc = is_sum ? acc + v : extreme_step(acc, v, is_max);
            }
            dst[i] = finish(acc);
        }
    }
}

namespace {

// The first index of the extreme (or of the first NaN) in row[0, n), with its value.
void arg_extreme_span(const SpanKernels& K, const float* row, int64_t n, bool is_max, float& value, int64_t& index) {
    const float v = K.extreme(row, n, is_max);  // vectorised pass; NaN if any element is NaN
    int64_t i = 0;
    if (is_nan(v)) {
        while (!is_nan(row[i])) ++i;
    } else {
        while (row[i] != v) ++i;
    }
    value = v;
    index = i;
}

}  // namespace

void argreduce_f32(const ArgReduceArgs& args) {
    const SpanKernels& K = span_kernels();
    const float* x = static_cast<const float*>(args.x);
    int64_t* y = static_cast<int64_t*>(args.indices);
    const int64_t outer = args.outer, reduce = args.reduce, inner = args.inner;
    const bool is_max = args.op == KN_ARGMAX;

    const Partition p = partition(outer, reduce, inner);
    const int64_t width_max = inner == 1 ? 1 : std::min<int64_t>(inner, kColumnWidth);
    const size_t partial_size = p.parts > 1 ? static_cast<size_t>(p.units * p.parts * width_max) : 0;
    std::vector<float> partial_value(partial_size);
    std::vector<int64_t> partial_index(partial_size);

    run_tasks(p, p.part_rows * width_max, [&](int64_t unit, int64_t part) {
        const int64_t o = unit / p.blocks, block = unit % p.blocks;
        const int64_t r0 = part * p.part_rows, r1 = std::min(reduce, r0 + p.part_rows);
        const size_t slot = static_cast<size_t>((unit * p.parts + part) * width_max);
        if (inner == 1) {
            float v;
            int64_t i;
            arg_extreme_span(K, x + o * reduce + r0, r1 - r0, is_max, v, i);
            if (p.parts > 1) {
                partial_value[slot] = v;
                partial_index[slot] = r0 + i;
            } else {
                y[o] = i;
            }
            return;
        }
        const int64_t i0 = block * kColumnWidth, width = std::min(kColumnWidth, inner - i0);
        float values[kColumnWidth];
        int64_t indices[kColumnWidth];
        K.arg_extreme_columns(x + (o * reduce + r0) * inner + i0, r1 - r0, inner, width, is_max, values, indices);
        for (int64_t i = 0; i < width; ++i) {
            if (p.parts > 1) {
                partial_value[slot + i] = values[i];
                partial_index[slot + i] = r0 + indices[i];
            } else {
                y[o * inner + i0 + i] = indices[i];
            }
        }
    });

    if (p.parts == 1) return;
    // Parts cover increasing index ranges, so strict comparisons keep the first index overall.
    for (int64_t unit = 0; unit < p.units; ++unit) {
        const int64_t o = unit / p.blocks, block = unit % p.blocks;
        const int64_t i0 = inner == 1 ? 0 : block * kColumnWidth;
        const int64_t width = inner == 1 ? 1 : std::min(kColumnWidth, inner - i0);
        for (int64_t i = 0; i < width; ++i) {
            const size_t first = static_cast<size_t>(unit * p.parts * width_max + i);
            float best = partial_value[first];
            int64_t best_index = partial_index[first];
            for (int64_t part = 1; part < p.parts; ++part) {
                const size_t slot = first + static_cast<size_t>(part * width_max);
                const float v = partial_value[slot];
                if (!is_nan(best) && (is_nan(v) || (is_max ? v > best : v < best))) {
                    best = v;
                    best_index = partial_index[slot];
                }
            }
            y[o * inner + i0 + i] = best_index;
        }
    }
}

}  // namespace kn::cpu
