// span_kernels.h: the CPU backend's loops over one contiguous span (elementwise maps, span and
// column reductions, one softmax row). The same source, span_kernels_impl.h, is compiled three
// times (span_kernels.cpp portable, span_kernels_avx2.cpp, span_kernels_avx512.cpp) and the
// compiler vectorises it for each instruction set; span_kernels() hands out the table of the
// widest set this CPU runs. The callers (elementwise.cpp, reduce.cpp, softmax.cpp) do the
// threading, broadcasting and shape logic around these loops.
#pragma once

#include "cpu_kernels.h"

#if KN_CPU_X86
#include <immintrin.h>
#endif

namespace kn::cpu {

struct SpanKernels {
    // y[i] = op(x[i]); y may equal x.
    void (*unary)(kn_unary_op op, float alpha, const float* x, float* y, int64_t n);
    // The same, y written with non-temporal (streaming) stores, for outputs larger than the last-level
    // cache (see kStreamingBytes); the caller ends its writes with store_fence().
    void (*unary_streaming)(kn_unary_op op, float alpha, const float* x, float* y, int64_t n);
    // dx[i] = dy[i] * op'(x[i] or y[i]); dx may equal dy.
    void (*unary_backward)(kn_unary_op op, float alpha, const float* x, const float* y, const float* dy,
                           float* dx, int64_t n);
    // c[i] = a[i * sa] op b[i * sb] with sa, sb in {0, 1} (0 = one value broadcast over the span).
    void (*binary)(kn_binary_op op, const float* a, int64_t sa, const float* b, int64_t sb, float* c, int64_t n);
    // da[i] = dc[i] * d(a op b)/da, db[i] = dc[i] * d(a op b)/db; da or db may be null.
    void (*binary_backward)(kn_binary_op op, const float* a, int64_t sa, const float* b, int64_t sb,
                            const float* dc, float* da, float* db, int64_t n);
    // Pairwise (tree-ordered) sum of x[i], or of x[i]^2 when squares.
    float (*sum)(const float* x, int64_t n, bool squares);
    // out[i] = sum over r < rows of x[r * stride + i] (or its square), i < width <= kColumnWidth,
    // pairwise over r.
    void (*sum_columns)(const float* x, int64_t rows, int64_t stride, int64_t width, bool squares, float* out);
    // Largest (is_max) or smallest x[i]; NaN if any x[i] is NaN. n >= 1.
    float (*extreme)(const float* x, int64_t n, bool is_max);
    // out[i] = extreme over r < rows of x[r * stride + i], i < width; NaN-propagating. rows >= 1.
    void (*extreme_columns)(const float* x, int64_t rows, int64_t stride, int64_t width, bool is_max, float* out);
    // Per column: the extreme value and the first row holding it (NaN counts as the extreme),
    // i < width <= kColumnWidth, 1 <= rows < 2^31.
    void (*arg_extreme_columns)(const float* x, int64_t rows, int64_t stride, int64_t width, bool is_max,
                                float* value, int64_t* index);
    // One row of softmax / log-softmax (y may equal x), and of their backward (dx may equal dy).
    // streaming: y written with non-temporal stores (rows up to kStreamingRow; longer rows ignore
    // it), the caller ends its writes with store_fence(); then next (the following row, or null)
    // is prefetched, one line per line of x consumed.
    void (*softmax_row)(const float* x, float* y, int64_t n, bool log, bool streaming, const float* next);
    void (*softmax_backward_row)(const float* y, const float* dy, float* dx, int64_t n, bool log);
    // Rows [begin, end) of one recurrent cell step, forward and backward (recurrent.cpp threads them).
    void (*lstm_cell)(const LstmCellArgs& args, int64_t begin, int64_t end);
    void (*lstm_cell_backward)(const LstmCellBackwardArgs& args, int64_t begin, int64_t end);
    void (*gru_cell)(const GruCellArgs& args, int64_t begin, int64_t end);
    void (*gru_cell_backward)(const GruCellBackwardArgs& args, int64_t begin, int64_t end);
    // y[i] = x[i] * scale where the Philox uniform of element offset + i is >= p, else 0 (philox.h);
    // y may equal x.
    void (*dropout)(const float* x, float* y, int64_t n, float p, float scale, uint64_t seed, uint64_t offset);
};

// Widest column block sum_columns / extreme_columns accept (their pairwise temporaries live on
// the stack: 256 floats = 1 KB per tree level).
constexpr int64_t kColumnWidth = 256;

const SpanKernels& span_kernels();

// Outputs of at least this many bytes are written with non-temporal stores. A store that misses the
// cache first reads the line (read-for-ownership), so y = f(x) with ordinary stores moves 12 bytes of
// DRAM traffic per float (read x, read y's line, write it back), with streaming stores 8, as glibc's
// memcpy does above its own threshold (the reference our bandwidth ratios are taken against). It pays only when the output cannot stay in the
// last-level cache for the next op anyway: 32 MB is the L3 of one Zen 3 / Zen 5 CCD. A fixed
// constant, because sysconf(_SC_LEVEL3_CACHE_SIZE) on the KVM guest we measure on reports 384 MB
// (the host's total) while lscpu shows the guest's 32 MB.
constexpr int64_t kStreamingBytes = int64_t{32} << 20;
// Longest softmax row staged in a stack buffer for streaming stores (16 KB, within L1).
constexpr int64_t kStreamingRow = 4096;

// Orders the non-temporal stores before anything after it (another thread reading the output).
inline void store_fence() {
#if KN_CPU_X86
    _mm_sfence();
#endif
}

// One table per instruction set (defined where KN_CPU_X86 for the SIMD ones).
namespace portable { const SpanKernels& table(); }
namespace avx2 { const SpanKernels& table(); }
namespace avx512 { const SpanKernels& table(); }

}  // namespace kn::cpu
