// gather.cpp: the gather family on the CPU: gather rows (index_select along dim 0, the forward of
// an embedding lookup) and its deterministic scatter-add backward.
//
// Gather: each output row is a memcpy of one table row (the API layer has checked every index).
// Rows run on the thread pool, at least 16K floats per hand-off.
//
// Scatter-add: the API layer hands over a plan (ScatterAddRowsArgs in ops.h): the distinct target
// rows and, for each, its positions of dy in ascending order. A segment (one target row) belongs to
// one thread, which adds the row's positions into it one after the other, the whole row at a time
// (a vectorisable loop over cols). Every element of dtable so sees its additions in ascending
// position order, the order the GPU kernels use too: bit-for-bit the same result on every run and on
// every backend, with no atomics. Napkin math: the pass reads dy once and reads + writes each touched
// table row once per position, 12 bytes per element of dy; a batch of 64 x 100 tokens of 128 floats
// is 10 MB of traffic, under a millisecond.
#include "cpu_kernels.h"
#include "thread_pool.h"

#include <algorithm>
#include <cstring>

namespace kn::cpu {
namespace {
constexpr int64_t kGrain = 1 << 14;  // floats per hand-off to the pool
}  // namespace

void gather_rows_f32(const GatherRowsArgs& a) {
    const float* table = static_cast<const float*>(a.table);
    const int64_t* indices = static_cast<const int64_t*>(a.indices);
    float* y = static_cast<float*>(a.y);
    const int64_t cols = a.cols;
    parallel_for(a.n, std::max<int64_t>(1, kGrain / cols), [&](int64_t begin, int64_t end) {
        for (int64_t i = begin; i < end; ++i)
            std::memcpy(y + i * cols, table + indices[i] * cols, static_cast<size_t>(cols) * sizeof(float));
    });
}

void scatter_add_rows_f32(const ScatterAddRowsArgs& a) {
    const float* dy = static_cast<const float*>(a.dy);
    const int64_t* targets = static_cast<const int64_t*>(a.plan);
    const int64_t* starts = targets + a.segments;
    const int64_t* order = starts + a.segments + 1;
    float* dtable = static_cast<float*>(a.dtable);
    const int64_t cols = a.cols;
    // A hand-off: about kGrain floats of dy, counted as segments of the average length.
    const int64_t per_segment = std::max<int64_t>(1, a.positions / a.segments * cols);
    parallel_for(a.segments, std::max<int64_t>(1, kGrain / per_segment), [&](int64_t begin, int64_t end) {
        for (int64_t s = begin; s < end; ++s) {
            float* row = dtable + targets[s] * cols;
            for (int64_t k = starts[s]; k < starts[s + 1]; ++k) {
                const float* src = dy + order[k] * cols;
                for (int64_t c = 0; c < cols; ++c) row[c] += src[c];
            }
        }
    });
}

}  // namespace kn::cpu
