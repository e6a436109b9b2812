// linear.cpp: the backward of kn_linear_f32's epilogue (the forward's epilogue lives in gemm.cpp's
// driver): dz = dy * act'(x or y) and dbias = column sums of dz in one pass over dy. Each block of
// rows x columns of dz is summed while it is still in L1, so dz is written once and never re-read;
// the separate passes (unary backward, then a column reduction) read it back from memory.
#include "cpu_kernels.h"
#include "scratch_buffer.h"
#include "span_kernels.h"

#include "thread_pool.h"

#include <algorithm>

#ifndef LINEAR_BACKWARD_GRAIN
#define LINEAR_BACKWARD_GRAIN 16384  // elements per thread at least, as the elementwise ops use
#endif

namespace kn::cpu {
namespace {

// Partial column sums, one row of n per row group (the calling thread's buffer).
thread_local ScratchBuffer partial_sums_buffer{"linear backward partial sums"};

}  // namespace

void linear_backward_f32(const LinearBackwardArgs& args) {
    const SpanKernels& S = span_kernels();
    const int64_t m = args.m, n = args.n;
    const float* x = static_cast<const float*>(args.x);
    const float* y = static_cast<const float*>(args.y);
    const float* dy = static_cast<const float*>(args.dy);
    float* dz = static_cast<float*>(args.dz);
    float* dbias = static_cast<float*>(args.dbias);
    const bool identity = args.activation == KN_UNARY_SCALE && args.alpha == 1.0f;

    // dz for rows [r0, r1) and columns [c0, c0 + w): one span per row.
    auto derivative = [&](int64_t r0, int64_t r1, int64_t c0, int64_t w) {
        if (identity && dz == dy) return;
        for (int64_t r = r0; r < r1; ++r) {
            const int64_t o = r * n + c0;
            S.unary_backward(args.activation, args.alpha, x ? x + o : nullptr, y ? y + o : nullptr, dy + o, dz + o, w);
        }
    };

    // Row groups, one per thread, each with its own partial column sums; summed at the end.
    const int64_t groups = std::clamp<int64_t>(m * n / LINEAR_BACKWARD_GRAIN, 1, std::min<int64_t>(thread_count(), m));
    if (!dbias) {
        parallel_for(m, std::max<int64_t>(1, LINEAR_BACKWARD_GRAIN / n),
                     [&](int64_t r0, int64_t r1) { derivative(r0, r1, 0, n); });
        return;
    }
    float* partial = partial_sums_buffer.get(groups * n);
    // Rows per block: a block of dz (rows x kColumnWidth floats) fits in 32 KB of L1.
    const int64_t block_rows = std::max<int64_t>(1, 8192 / std::min(n, kColumnWidth));
    parallel_for(groups, 1, [&](int64_t g0, int64_t g1) {
        float sums[kColumnWidth];
        for (int64_t g = g0; g < g1; ++g) {
            const int64_t r0 = m * g / groups, r1 = m * (g + 1) / groups;
            float* out = partial + g * n;
            for (int64_t c0 = 0; c0 < n; c0 += kColumnWidth) {
                const int64_t w = std::min(kColumnWidth, n - c0);
                std::fill(out + c0, out + c0 + w, 0.0f);
                for (int64_t r = r0; r < r1; r += block_rows) {
                    const int64_t rows = std::min(block_rows, r1 - r);
                    derivative(r, r + rows, c0, w);
                    S.sum_columns(dz + r * n + c0, rows, n, w, false, sums);
                    for (int64_t j = 0; j < w; ++j) out[c0 + j] += sums[j];
                }
            }
        }
    });
    for (int64_t j = 0; j < n; ++j) dbias[j] = partial[j];
    for (int64_t g = 1; g < groups; ++g)
        for (int64_t j = 0; j < n; ++j) dbias[j] += partial[g * n + j];
}

}  // namespace kn::cpu
