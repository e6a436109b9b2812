// gemm_avx2.cpp: the AVX2+FMA SGEMM micro-kernel, one 6 x 16 tile of C from packed panels (see
// gemm.cpp for the packing, cache blocking and threading around it). Used on x86-64 CPUs without
// AVX-512 (and selectable with KN_CPU_SIMD=avx2 for testing).
//
// Technique: outer-product accumulation in registers. Per k step: 2 ymm loads of the B row, 6
// broadcasts of the packed A column, 12 FMAs into 12 ymm accumulators; 15 of the 16 ymm registers
// are live, nothing spills. The row count is a template parameter (1..6); a narrow edge (n % 16)
// uses masked loads/stores (vmaskmovps never touches the masked-off memory), one ymm per row where
// at most 8 columns are left.
// Napkin math (2 x 256-bit FMA pipes, 4-5 cycle latency): 12 independent chains cover the latency
// of two pipes; 8 loads per 12 FMAs fit 2 loads/cycle; peak 32 flop/cycle/core (measured
// 110 GFLOP/s/core with a register-only FMA loop on this 2-core EPYC).
// Packing: op(A) rows and stored-transposed op(B) columns are transposed 8 x 8 at a time in
// registers (gemm_pack_rows_avx2), as gemm_avx512.cpp does 16 x 16.
#include "cpu_kernels.h"

#if KN_CPU_X86
#include <immintrin.h>

namespace kn::cpu {

namespace {
constexpr int MR = kGemmAvx2MR;
constexpr int NR = kGemmAvx2NR;
static_assert(NR == 16, "the kernel holds one C row in two ymm registers");

// Narrow: nr <= 8, so only the first ymm column is computed (an edge of a few columns costs half a
// tile; see gemm_avx512.cpp).
template <int ROWS, bool Masked, bool Narrow = false>
void micro_kernel(int64_t kc, const float* a, const float* b, int64_t b_stride, float* c, int64_t ldc,
                  float alpha, float beta, __m256i mask0, __m256i mask1) {
    static_assert(Masked || !Narrow, "a narrow tile is an edge tile");
    __m256 acc0[ROWS], acc1[ROWS];
#pragma GCC unroll 6
    for (int r = 0; r < ROWS; ++r) {
        acc0[r] = _mm256_setzero_ps();
        if constexpr (!Narrow) acc1[r] = _mm256_setzero_ps();
    }
    // Start the C tile's cache misses now; they overlap with the k loop.
#pragma GCC unroll 6
    for (int r = 0; r < ROWS; ++r) {
        _mm_prefetch(reinterpret_cast<const char*>(c + r * ldc), _MM_HINT_T0);
        if constexpr (!Narrow) _mm_prefetch(reinterpret_cast<const char*>(c + r * ldc + NR - 1), _MM_HINT_T0);
    }

#pragma GCC unroll 4
    for (int64_t p = 0; p < kc; ++p) {
        const __m256 b0 = Masked ? _mm256_maskload_ps(b, mask0) : _mm256_loadu_ps(b);
        if constexpr (Narrow) {
#pragma GCC unroll 6
            for (int r = 0; r < ROWS; ++r) acc0[r] = _mm256_fmadd_ps(_mm256_broadcast_ss(a + r), b0, acc0[r]);
        } else {
            const __m256 b1 = Masked ? _mm256_maskload_ps(b + 8, mask1) : _mm256_loadu_ps(b + 8);
#pragma GCC unroll 6
            for (int r = 0; r < ROWS; ++r) {
                const __m256 ar = _mm256_broadcast_ss(a + r);
                acc0[r] = _mm256_fmadd_ps(ar, b0, acc0[r]);
                acc1[r] = _mm256_fmadd_ps(ar, b1, acc1[r]);
            }
        }
        a += MR;
        b += b_stride;
    }

    const __m256 va = _mm256_set1_ps(alpha), vb = _mm256_set1_ps(beta);
    const bool read_c = beta != 0.0f;  // beta == 0: C is not read (NaN in C must not propagate)
#pragma GCC unroll 6
    for (int r = 0; r < ROWS; ++r) {
        float* row = c + r * ldc;
        __m256 c0 = _mm256_mul_ps(va, acc0[r]);
        if constexpr (Narrow) {
            if (read_c) c0 = _mm256_fmadd_ps(vb, _mm256_maskload_ps(row, mask0), c0);
            _mm256_maskstore_ps(row, mask0, c0);
            continue;
        } else {
            __m256 c1 = _mm256_mul_ps(va, acc1[r]);
            if (Masked) {
                if (read_c) {
                    c0 = _mm256_fmadd_ps(vb, _mm256_maskload_ps(row, mask0), c0);
                    c1 = _mm256_fmadd_ps(vb, _mm256_maskload_ps(row + 8, mask1), c1);
                }
                _mm256_maskstore_ps(row, mask0, c0);
                _mm256_maskstore_ps(row + 8, mask1, c1);
            } else {
                if (read_c) {
                    c0 = _mm256_fmadd_ps(vb, _mm256_loadu_ps(row), c0);
                    c1 = _mm256_fmadd_ps(vb, _mm256_loadu_ps(row + 8), c1);
                }
                _mm256_storeu_ps(row, c0);
                _mm256_storeu_ps(row + 8, c1);
            }
        }
    }
}

using KernelFn = void (*)(int64_t, const float*, const float*, int64_t, float*, int64_t, float, float, __m256i,
                          __m256i);

template <bool Masked, bool Narrow = false>
KernelFn kernel_for_rows(int64_t mr) {
    switch (mr) {
        case 1: return micro_kernel<1, Masked, Narrow>;
        case 2: return micro_kernel<2, Masked, Narrow>;
        case 3: return micro_kernel<3, Masked, Narrow>;
        case 4: return micro_kernel<4, Masked, Narrow>;
        case 5: return micro_kernel<5, Masked, Narrow>;
        default: return micro_kernel<6, Masked, Narrow>;
    }
}

// Lanes [0, count) set (sign bit), for vmaskmovps.
__m256i lane_mask(int64_t count) {
    const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const int32_t n = count < 0 ? 0 : count > 8 ? 8 : static_cast<int32_t>(count);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), lanes);
}

// In-register transpose of an 8 x 8 block: out[j][i] = in[i][j] (unpack, shuffle, 128-bit lane swap:
// 24 shuffles per 64 floats).
inline void transpose8(__m256 v[8]) {
    const __m256 t0 = _mm256_unpacklo_ps(v[0], v[1]), t1 = _mm256_unpackhi_ps(v[0], v[1]);
    const __m256 t2 = _mm256_unpacklo_ps(v[2], v[3]), t3 = _mm256_unpackhi_ps(v[2], v[3]);
    const __m256 t4 = _mm256_unpacklo_ps(v[4], v[5]), t5 = _mm256_unpackhi_ps(v[4], v[5]);
    const __m256 t6 = _mm256_unpacklo_ps(v[6], v[7]), t7 = _mm256_unpackhi_ps(v[6], v[7]);
    const __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
    const __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
    const __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
    const __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
    v[0] = _mm256_permute2f128_ps(u0, u4, 0x20);
    v[1] = _mm256_permute2f128_ps(u1, u5, 0x20);
    v[2] = _mm256_permute2f128_ps(u2, u6, 0x20);
    v[3] = _mm256_permute2f128_ps(u3, u7, 0x20);
    v[4] = _mm256_permute2f128_ps(u0, u4, 0x31);
    v[5] = _mm256_permute2f128_ps(u1, u5, 0x31);
    v[6] = _mm256_permute2f128_ps(u2, u6, 0x31);
    v[7] = _mm256_permute2f128_ps(u3, u7, 0x31);
}

}  // namespace

void gemm_pack_rows_avx2(const float* src, int64_t ld, int64_t rows, int64_t kc, int64_t panel_width,
                         float* panel) {
    // panel[p * panel_width + r] = src[r * ld + p] for r < rows (zero for rows..panel_width-1),
    // 8 rows x 8 p per transpose; panel_width is 6 (A) or 16 (B, in two halves of 8). The scalar
    // scatter this replaces took ~20% of a 128 x 512 x 784 GEMM on this path (perf, one thread).
    for (int64_t r0 = 0; r0 < panel_width; r0 += 8) {
        const int64_t width = panel_width - r0 < 8 ? panel_width - r0 : 8;  // lanes stored
        const int64_t valid = rows - r0;                                      // rows that exist
        const __m256i store_mask = lane_mask(width);
        int64_t p = 0;
        for (; p + 8 <= kc; p += 8) {
            __m256 v[8];
#pragma GCC unroll 8
            for (int i = 0; i < 8; ++i)
                v[i] = i < valid ? _mm256_loadu_ps(src + (r0 + i) * ld + p) : _mm256_setzero_ps();
            transpose8(v);
            if (width == 8) {
#pragma GCC unroll 8
                for (int j = 0; j < 8; ++j) _mm256_storeu_ps(panel + (p + j) * panel_width + r0, v[j]);
            } else {
#pragma GCC unroll 8
                for (int j = 0; j < 8; ++j) _mm256_maskstore_ps(panel + (p + j) * panel_width + r0, store_mask, v[j]);
            }
        }
        for (; p < kc; ++p)
            for (int64_t i = 0; i < width; ++i) panel[p * panel_width + r0 + i] = i < valid ? src[(r0 + i) * ld + p] : 0.0f;
    }
}

void gemm_micro_kernel_avx2(int64_t kc, const float* a, const float* b, int64_t b_stride, float* c, int64_t ldc,
                            float alpha, float beta, int64_t mr, int64_t nr) {
    if (nr == NR) {
        const __m256i all = _mm256_set1_epi32(-1);
        kernel_for_rows<false>(mr)(kc, a, b, b_stride, c, ldc, alpha, beta, all, all);
    } else if (nr <= 8) {
        kernel_for_rows<true, true>(mr)(kc, a, b, b_stride, c, ldc, alpha, beta, lane_mask(nr), lane_mask(0));
    } else {
        kernel_for_rows<true>(mr)(kc, a, b, b_stride, c, ldc, alpha, beta, lane_mask(nr), lane_mask(nr - 8));
    }
    // The row kernels take their lane masks in ymm registers, so GCC gives them no vzeroupper (a
    // function with 256-bit arguments is assumed to be called from AVX code) and tail-calls them from
    // here: the upper halves came back dirty into gemm.cpp's baseline (SSE) code, and every legacy-SSE
    // instruction after that ran slowly on Zen 5 (the SSE-built depthwise convolution measured
    // 5 GFLOP/s after an AVX2 GEMM against 18 after an AVX-512 one). Clean them before returning.
    _mm256_zeroupper();
}

}  // namespace kn::cpu

#endif  // KN_CPU_X86
