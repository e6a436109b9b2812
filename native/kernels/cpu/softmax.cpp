// softmax.cpp: softmax / log-softmax over the rows of a [rows, cols] matrix, and their backward,
// on the CPU.
//
// Technique: one row per task, rows spread over the threads. Per row (span_kernels_impl.h): the
// row maximum (vectorised), then exp(x - max) with the branch-free polynomial exp and a pairwise
// sum, then a scale (softmax) or a subtraction of log(sum) (log-softmax, which never stores the
// exponentials, so y may be x). Backward: one pairwise dot product per row, then one fused pass.
// Napkin math: 3 passes over a row (max, exp+sum, scale) that stays in L1/L2 for rows up to
// ~8K floats, so DRAM is touched once: 8 bytes per element, ~0.22 ns/element for a copy on one
// Zen 5 core; the arithmetic from L1 is ~0.27 ns/element with AVX-512 (exp ~0.19 of it) and ~0.42
// with AVX2, so one core is compute-bound and the next row is prefetched to overlap the two.
// Measured (one thread, CPU time, interleaved with a one-thread memcpy of the same bytes; 2-core
// Zen 5 VM, load ~1): 64M elements in rows of 1024: 0.65x of memcpy with AVX-512 (0.37x before
// issue 16's changes), 0.51x on the AVX2 path (0.08x before: its exp loop was scalar); see
// benchmarks/results/2026-12-05-cpu-bandwidth. Outputs past 32 MB now stream their stores
// (kStreamingBytes) and prefetch the next row a line at a time: 0.62x -> 0.65x (AVX-512), 0.48x ->
// 0.50x (AVX2) in benchmarks/results/2026-12-05-cpu-bandwidth-2 (load 7-18); still compute-bound
// on one core (the arithmetic alone is ~0.27 ns/element against ~0.21 for the copy). Then the exp
// scaled by one power of two (span_kernels_impl.h), a degree-5 fit and the sum in the exp pass: 0.68-0.71x ->
// 0.76-0.79x (AVX-512), 0.45-0.49x -> 0.61x (AVX2 path), load 2-15, benchmarks/results/2026-12-05-cpu-bandwidth-3.
// The AVX2 exp loop written out with its sums in registers (exp_block): 0.64-0.72x -> 0.70-0.72x, within
// the noise; still compute-bound, and not by the FMA count alone (benchmarks/results/2026-12-05-cpu-bandwidth-4).
// On a Sapphire Rapids class Xeon (one core): the AVX-512 exp loop written out (13 vector operations per
// 16 exponentials where GCC 12 had made ~20) and the next row requested by the exp pass instead of a
// burst of prefetches: 64M elements 0.78-0.82x -> 0.82-0.85x, rows in cache 0.45-0.83 -> 0.28-0.39
// ns/element (benchmarks/results/2026-12-06-intel-xeon-softmax).
// Older, both threads, 16M floats: rows of 1000 backward 74 GB/s (memcpy 68); log-softmax over rows of 10 ~36 ns of fixed cost per row.
#include "cpu_kernels.h"
#include "span_kernels.h"

#include "thread_pool.h"

#include <algorithm>

#ifndef SOFTMAX_GRAIN
#define SOFTMAX_GRAIN 8192  // elements per thread at least (rows are never split)
#endif

namespace kn::cpu {
namespace {

// Prefetches up to kPrefetchBytes of the next row of x, one request per 64-byte line; longer rows
// are left to the hardware prefetchers after that. Only x: prefetching y for writing as well made
// it slower (128 requests per 4 KB row crowd the miss buffers; measured 0.42 ns/element against
// 0.34 for x alone and 0.45 without any, one Zen 5 core, rows of 1024, 64M elements).
constexpr int64_t kPrefetchBytes = 16384;
void prefetch_row(const float* x, int64_t cols) {
    const int64_t bytes = std::min<int64_t>(cols * static_cast<int64_t>(sizeof(float)), kPrefetchBytes);
    const char* xb = reinterpret_cast<const char*>(x);
    for (int64_t b = 0; b < bytes; b += 64) __builtin_prefetch(xb + b, 0);
}

}  // namespace


void softmax_f32(const SoftmaxArgs& args) {
    const SpanKernels& K = span_kernels();
    const float* x = static_cast<const float*>(args.x);
    float* y = static_cast<float*>(args.y);
    const int64_t cols = args.cols;
    const int64_t grain_rows = std::max<int64_t>(1, SOFTMAX_GRAIN / cols);
    // An output larger than the last-level cache is streamed (span_kernels.h, kStreamingBytes).
    const bool streaming = args.rows * cols * static_cast<int64_t>(sizeof(float)) >= kStreamingBytes;
    parallel_for(args.rows, grain_rows, [&](int64_t begin, int64_t end) {
        for (int64_t r = begin; r < end; ++r) {
            // The row after this one is requested while this one is computed, so its DRAM transfer
            // overlaps this row's arithmetic (without it the two add up: 0.45 ns/element on one
            // core against 0.28 for the arithmetic alone and 0.23 for a copy). Softmax's exp pass
            // requests it a line at a time (exp_row's `ahead`); log-softmax, whose exponentials are
            // only summed, outside the streaming path takes prefetch_row's burst. The burst had also
            // served softmax's non-streaming rows: 21% of softmax's samples for rows of 1024 in cache
            // (the lines must still come from L2), 0.26-0.29 -> 0.25-0.27 ns/element there.
            const float* next = r + 1 < end ? x + (r + 1) * cols : nullptr;
            if (next && args.log && !(streaming && cols <= kStreamingRow)) prefetch_row(next, cols);
            K.softmax_row(x + r * cols, y + r * cols, cols, args.log, streaming, next);
        }
        if (streaming) store_fence();
    });
}

void softmax_backward_f32(const SoftmaxBackwardArgs& args) {
    const SpanKernels& K = span_kernels();
    const float* y = static_cast<const float*>(args.y);
    const float* dy = static_cast<const float*>(args.dy);
    float* dx = static_cast<float*>(args.dx);
    const int64_t cols = args.cols;
    const int64_t grain_rows = std::max<int64_t>(1, SOFTMAX_GRAIN / cols);
    parallel_for(args.rows, grain_rows, [&](int64_t begin, int64_t end) {
        for (int64_t r = begin; r < end; ++r)
            K.softmax_backward_row(y + r * cols, dy + r * cols, dx + r * cols, cols, args.log);
    });
}

}  // namespace kn::cpu
