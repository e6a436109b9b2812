// elementwise.cpp: unary and binary maps and their fused backward passes, plus fill and copy, on
// the CPU: the threading and broadcast walk around the span kernels (span_kernels_impl.h).
//
// Technique: the output is contiguous, so threads take contiguous ranges of it. Binary ops walk
// the normalised BroadcastGeometry (backend.h) as runs along the innermost dimension, where each
// operand's stride is 1 (contiguous) or 0 (broadcast): a run is one vectorised span-kernel call,
// so a same-shape op is a single run, a bias add [N, D] + [D] is N runs of D.
// Napkin math: a binary op moves 12 bytes per element and does 1 flop; at ~20-40 GB/s of DRAM
// bandwidth for 2 cores, the vectorised loops (16 floats per instruction) are bound by memory for
// the arithmetic ops and by the exp/log polynomials (~20 flops each) only when data sits in cache.
// Measured (64 MB operands, both threads, bandwidth = bytes read + written; a 2-thread memcpy ran
// at 68 GB/s in the same run on the quiet 2-core Zen 5 VM): neg/relu/sqrt 93-100 GB/s, add/mul/
// maximum 89-93, bias add [16384, 1024] + [1024] 101, row broadcast [16384, 1024] - [16384, 1] 94,
// mul backward 81, exp 66, sigmoid 52, tanh 47, log 46, softplus 15, sin 11, GELU 4 (the last
// three call the C library per element).
#include "cpu_kernels.h"
#include "span_kernels.h"

#include "thread_pool.h"

#include <algorithm>
#include <cstring>

#ifndef ELEMENTWISE_GRAIN
#define ELEMENTWISE_GRAIN 16384  // elements per thread at least: 64 KB per operand, ~5 us of work,
#endif                           // so waking a worker (a few us) pays for itself
#ifndef ELEMENTWISE_GRAIN_LIBM
#define ELEMENTWISE_GRAIN_LIBM 1024  // ops that call the C library per element (~10-20 ns each)
#endif
#ifndef COPY_GRAIN_BYTES
#define COPY_GRAIN_BYTES (int64_t{1} << 20)  // memcpy below 1 MB is faster on one core
#endif

namespace kn::cpu {
namespace {

bool unary_calls_libm(kn_unary_op op, float alpha) {
    switch (op) {
        case KN_UNARY_GELU: case KN_UNARY_SIN: case KN_UNARY_COS: return true;
        case KN_UNARY_POW_SCALAR:
            return !(alpha == 0.0f || alpha == 1.0f || alpha == 2.0f || alpha == 3.0f || alpha == 0.5f ||
                     alpha == -1.0f);
        default: return false;
    }
}

// Calls run(out_offset, a_offset, b_offset, count) for the maximal runs along the innermost
// dimension that cover output elements [begin, end) of the broadcast geometry g.
template <typename Run>
void for_each_run(const BroadcastGeometry& g, int64_t begin, int64_t end, Run run) {
    const int last = g.rank - 1;
    int64_t index[KN_MAX_RANK];
    int64_t a_offset = 0, b_offset = 0, rest = begin;
    for (int d = last; d >= 0; --d) {
        index[d] = rest % g.dims[d];
        rest /= g.dims[d];
        a_offset += index[d] * g.a_strides[d];
        b_offset += index[d] * g.b_strides[d];
    }
    int64_t position = begin;
    while (position < end) {
        const int64_t count = std::min(g.dims[last] - index[last], end - position);
        run(position, a_offset, b_offset, count);
        position += count;
        index[last] += count;
        a_offset += count * g.a_strides[last];
        b_offset += count * g.b_strides[last];
        // Carry into the outer dimensions.
        for (int d = last; d > 0 && index[d] == g.dims[d]; --d) {
            a_offset += g.a_strides[d - 1] - index[d] * g.a_strides[d];
            b_offset += g.b_strides[d - 1] - index[d] * g.b_strides[d];
            index[d] = 0;
            ++index[d - 1];
        }
    }
}

bool unit_or_broadcast(int64_t stride) { return stride == 0 || stride == 1; }

}  // namespace

void unary_f32(const UnaryArgs& args) {
    const SpanKernels& K = span_kernels();
    const float* x = static_cast<const float*>(args.x);
    float* y = static_cast<float*>(args.y);
    const int64_t grain = unary_calls_libm(args.op, args.alpha) ? ELEMENTWISE_GRAIN_LIBM : ELEMENTWISE_GRAIN;
    // An output larger than the last-level cache is streamed (span_kernels.h, kStreamingBytes).
    if (args.n * static_cast<int64_t>(sizeof(float)) >= kStreamingBytes) {
        parallel_for(args.n, grain, [&](int64_t begin, int64_t end) {
            K.unary_streaming(args.op, args.alpha, x + begin, y + begin, end - begin);
            store_fence();
        });
        return;
    }
    parallel_for(args.n, grain, [&](int64_t begin, int64_t end) {
        K.unary(args.op, args.alpha, x + begin, y + begin, end - begin);
    });
}

void unary_backward_f32(const UnaryBackwardArgs& args) {
    const SpanKernels& K = span_kernels();
    const float* x = static_cast<const float*>(args.x);
    const float* y = static_cast<const float*>(args.y);
    const float* dy = static_cast<const float*>(args.dy);
    float* dx = static_cast<float*>(args.dx);
    const int64_t grain = unary_calls_libm(args.op, args.alpha) ? ELEMENTWISE_GRAIN_LIBM : ELEMENTWISE_GRAIN;
    parallel_for(args.n, grain, [&](int64_t begin, int64_t end) {
        K.unary_backward(args.op, args.alpha, x ? x + begin : nullptr, y ? y + begin : nullptr, dy + begin,
                         dx + begin, end - begin);
    });
}

void binary_f32(const BinaryArgs& args) {
    const SpanKernels& K = span_kernels();
    const BroadcastGeometry& g = args.g;
    const float* a = static_cast<const float*>(args.a);
    const float* b = static_cast<const float*>(args.b);
    float* c = static_cast<float*>(args.c);
    const int64_t sa = g.a_strides[g.rank - 1], sb = g.b_strides[g.rank - 1];
    const bool spans = unit_or_broadcast(sa) && unit_or_broadcast(sb);
    const int64_t grain = args.op == KN_BINARY_POW ? ELEMENTWISE_GRAIN_LIBM : ELEMENTWISE_GRAIN;
    parallel_for(g.n, grain, [&](int64_t begin, int64_t end) {
        for_each_run(g, begin, end, [&](int64_t out, int64_t ao, int64_t bo, int64_t count) {
            if (spans) {
                K.binary(args.op, a + ao, sa, b + bo, sb, c + out, count);
            } else {
                // A normalised geometry of dense operands always ends in stride 0 or 1; any other
                // inner stride is still computed correctly, one element at a time.
                for (int64_t i = 0; i < count; ++i) K.binary(args.op, a + ao + i * sa, 0, b + bo + i * sb, 0, c + out + i, 1);
            }
        });
    });
}

void binary_backward_f32(const BinaryBackwardArgs& args) {
    const SpanKernels& K = span_kernels();
    const BroadcastGeometry& g = args.g;
    const float* a = static_cast<const float*>(args.a);
    const float* b = static_cast<const float*>(args.b);
    const float* dc = static_cast<const float*>(args.dc);
    float* da = static_cast<float*>(args.da);
    float* db = static_cast<float*>(args.db);
    if (!da && !db) return;
    const int64_t sa = g.a_strides[g.rank - 1], sb = g.b_strides[g.rank - 1];
    const bool spans = unit_or_broadcast(sa) && unit_or_broadcast(sb);
    const int64_t grain = args.op == KN_BINARY_POW ? ELEMENTWISE_GRAIN_LIBM : ELEMENTWISE_GRAIN;
    parallel_for(g.n, grain, [&](int64_t begin, int64_t end) {
        for_each_run(g, begin, end, [&](int64_t out, int64_t ao, int64_t bo, int64_t count) {
            if (spans) {
                K.binary_backward(args.op, a + ao, sa, b + bo, sb, dc + out, da ? da + out : nullptr,
                                  db ? db + out : nullptr, count);
            } else {
                for (int64_t i = 0; i < count; ++i)
                    K.binary_backward(args.op, a + ao + i * sa, 0, b + bo + i * sb, 0, dc + out + i,
                                      da ? da + out + i : nullptr, db ? db + out + i : nullptr, 1);
            }
        });
    });
}

void fill_f32(float* dst, int64_t count, float value) {
    parallel_for(count, COPY_GRAIN_BYTES / 4, [&](int64_t begin, int64_t end) {
        std::fill(dst + begin, dst + end, value);
    });
}

void copy_bytes(void* dst, const void* src, int64_t bytes) {
    char* d = static_cast<char*>(dst);
    const char* s = static_cast<const char*>(src);
    parallel_for(bytes, COPY_GRAIN_BYTES, [&](int64_t begin, int64_t end) {
        std::memcpy(d + begin, s + begin, static_cast<size_t>(end - begin));
    });
}

}  // namespace kn::cpu
