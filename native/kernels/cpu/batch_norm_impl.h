// batch_norm_impl.h: the per-element loops of batch normalization (batch_norm.cpp holds the technique,
// the partition over threads and the per-channel arithmetic), written as plain C++ that the compiler
// vectorises. Included once per instruction set with KN_ISA naming the namespace (portable in
// batch_norm.cpp, avx2 in batch_norm_avx2.cpp, avx512 in batch_norm_avx512.cpp: see KN_ISA_ENTRY in
// cpu_kernels.h); everything except loops() has internal linkage.
//
// Why per ISA: the sums accumulate in 8 float64 lanes, which baseline x86-64 holds in four SSE
// registers with a float -> double conversion per pair; AVX-512 converts and adds 8 at once. In the
// MNIST CNN's training step these loops were 18% of the time at one thread (perf, issue 16), the
// backward sums alone 9%. The lane layout and the fold are the same on every ISA, so the sums are
// bit-identical across them; the affine passes may contract to FMAs where the ISA has them.
#ifndef KN_ISA
#error "define KN_ISA (portable, avx2 or avx512) before including batch_norm_impl.h"
#endif

#include "cpu_kernels.h"

#include <cstdint>
#if defined(__AVX512F__) || defined(__AVX2__)
#include <immintrin.h>
#endif

#ifndef KN_BATCH_NORM_LOOPS_DECLARED
#define KN_BATCH_NORM_LOOPS_DECLARED
namespace kn::cpu {
enum class BatchNormPass {
    sum,                 // s0 += x
    squared_deviation,   // s0 += ((x - mean_hi) - mean_lo)^2
    gradient,            // s0 += dy, s1 += dy * (x - mean_hi)
};
struct BatchNormLoops {
    // The pass's sums over one contiguous run of n values of one channel, added to s0 and s1.
    void (*run_sums[3])(const float* x, const float* dy, int64_t n, float mean_hi, float mean_lo, double& s0,
                        double& s1);
    // Row layout: a[j] (and b[j]) += the pass's term of column j, j < width, with per-column means.
    void (*row_sums[3])(const float* x, const float* dy, const float* mean_hi, const float* mean_lo, int64_t width,
                        double* a, double* b);
    // out = ((in - p0) - p1) * p2 + p3 over a run of one channel (the forward normalisation).
    void (*affine)(const float* in, int64_t n, float p0, float p1, float p2, float p3, float* out);
    // out = p2 * ((in - p3) - (x - p0) * p1) over a run of one channel (the backward's dx).
    void (*affine_backward)(const float* in, const float* x, int64_t n, float p0, float p1, float p2, float p3,
                            float* out);
    // The same two maps along a row whose parameters differ per column.
    void (*affine_row)(const float* in, int64_t width, const float* p0, const float* p1, const float* p2,
                       const float* p3, float* out);
    void (*affine_row_backward)(const float* in, const float* x, int64_t width, const float* p0, const float* p1,
                                const float* p2, const float* p3, float* out);
};
namespace portable { const BatchNormLoops& batch_norm_loops(); }
namespace avx2 { const BatchNormLoops& batch_norm_loops(); }
namespace avx512 { const BatchNormLoops& batch_norm_loops(); }
}  // namespace kn::cpu
#endif

namespace kn::cpu::KN_ISA {
namespace {

// The sum of 8 float64 lanes, pairwise.
inline double fold(const double* lane) {
    return ((lane[0] + lane[1]) + (lane[2] + lane[3])) + ((lane[4] + lane[5]) + (lane[6] + lane[7]));
}

template <BatchNormPass P>
void run_sums(const float* __restrict x, const float* __restrict dy, int64_t n, float mean_hi, float mean_lo,
              double& s0, double& s1) {
    double a[8] = {}, b[8] = {};
    auto step = [&](int64_t i, int j) {
        if constexpr (P == BatchNormPass::sum) {
            a[j] += x[i];
        } else if constexpr (P == BatchNormPass::squared_deviation) {
            const float d = (x[i] - mean_hi) - mean_lo;
            a[j] += static_cast<double>(d * d);
        } else {
            a[j] += dy[i];
            b[j] += static_cast<double>(dy[i] * (x[i] - mean_hi));
        }
    };
    int64_t i = 0;
#if defined(__AVX512F__) || defined(__AVX2__)
    if constexpr (P == BatchNormPass::gradient) {
        // GCC left this pass's 8-lane step scalar (two loads, a float product converted to double:
        // ~16 GB/s for the backward, its sums 9% of the MNIST CNN's step), so it is written out: the
        // same float product and the same float64 lane additions in the same order (bit-identical).
        const __m256 mh = _mm256_set1_ps(mean_hi);
#if defined(__AVX512F__)
        __m512d sa = _mm512_setzero_pd(), sb = _mm512_setzero_pd();
        for (; i + 8 <= n; i += 8) {
            const __m256 d = _mm256_loadu_ps(dy + i), t = _mm256_mul_ps(d, _mm256_sub_ps(_mm256_loadu_ps(x + i), mh));
            // maskz with all lanes: _mm512_cvtps_pd's undefined pass-through trips GCC 12's
            // -Wmaybe-uninitialized; the instruction is the same vcvtps2pd.
            sa = _mm512_add_pd(sa, _mm512_maskz_cvtps_pd(0xFF, d));
            sb = _mm512_add_pd(sb, _mm512_maskz_cvtps_pd(0xFF, t));
        }
        _mm512_storeu_pd(a, sa);
        _mm512_storeu_pd(b, sb);
#else
        __m256d sa0 = _mm256_setzero_pd(), sa1 = _mm256_setzero_pd(), sb0 = _mm256_setzero_pd(), sb1 = _mm256_setzero_pd();
        for (; i + 8 <= n; i += 8) {
            const __m256 d = _mm256_loadu_ps(dy + i), t = _mm256_mul_ps(d, _mm256_sub_ps(_mm256_loadu_ps(x + i), mh));
            sa0 = _mm256_add_pd(sa0, _mm256_cvtps_pd(_mm256_castps256_ps128(d)));
            sa1 = _mm256_add_pd(sa1, _mm256_cvtps_pd(_mm256_extractf128_ps(d, 1)));
            sb0 = _mm256_add_pd(sb0, _mm256_cvtps_pd(_mm256_castps256_ps128(t)));
            sb1 = _mm256_add_pd(sb1, _mm256_cvtps_pd(_mm256_extractf128_ps(t, 1)));
        }
        _mm256_storeu_pd(a, sa0);
        _mm256_storeu_pd(a + 4, sa1);
        _mm256_storeu_pd(b, sb0);
        _mm256_storeu_pd(b + 4, sb1);
#endif
    }
#endif
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; ++j) step(i + j, j);
    for (int j = 0; i + j < n; ++j) step(i + j, j);
    s0 += fold(a);
    s1 += fold(b);
}

template <BatchNormPass P>
void row_sums(const float* __restrict x, const float* __restrict dy, const float* __restrict hi,
              const float* __restrict lo, int64_t width, double* __restrict a, double* __restrict b) {
    if constexpr (P == BatchNormPass::sum) {
        for (int64_t j = 0; j < width; ++j) a[j] += x[j];
    } else if constexpr (P == BatchNormPass::squared_deviation) {
        for (int64_t j = 0; j < width; ++j) {
            const float d = (x[j] - hi[j]) - lo[j];
            a[j] += static_cast<double>(d * d);
        }
    } else {
        for (int64_t j = 0; j < width; ++j) {
            a[j] += dy[j];
            b[j] += static_cast<double>(dy[j] * (x[j] - hi[j]));
        }
    }
}

// The affine maps may run in place (y = x, dx = dy or dx = x): no __restrict on in, x, out; GCC
// vectorises them behind a run-time overlap check.
void affine(const float* in, int64_t n, float p0, float p1, float p2, float p3, float* out) {
    for (int64_t s = 0; s < n; ++s) out[s] = ((in[s] - p0) - p1) * p2 + p3;
}

void affine_backward(const float* in, const float* x, int64_t n, float p0, float p1, float p2, float p3, float* out) {
    for (int64_t s = 0; s < n; ++s) out[s] = p2 * ((in[s] - p3) - (x[s] - p0) * p1);
}

void affine_row(const float* in, int64_t width, const float* __restrict p0, const float* __restrict p1,
                const float* __restrict p2, const float* __restrict p3, float* out) {
    for (int64_t j = 0; j < width; ++j) out[j] = ((in[j] - p0[j]) - p1[j]) * p2[j] + p3[j];
}

void affine_row_backward(const float* in, const float* x, int64_t width, const float* __restrict p0,
                         const float* __restrict p1, const float* __restrict p2, const float* __restrict p3,
                         float* out) {
    for (int64_t j = 0; j < width; ++j) out[j] = p2[j] * ((in[j] - p3[j]) - (x[j] - p0[j]) * p1[j]);
}

}  // namespace

const BatchNormLoops& batch_norm_loops() {
    static const BatchNormLoops table{
        {run_sums<BatchNormPass::sum>, run_sums<BatchNormPass::squared_deviation>, run_sums<BatchNormPass::gradient>},
        {row_sums<BatchNormPass::sum>, row_sums<BatchNormPass::squared_deviation>, row_sums<BatchNormPass::gradient>},
        affine,
        affine_backward,
        affine_row,
        affine_row_backward};
    return table;
}

}  // namespace kn::cpu::KN_ISA
