// gemm_avx512.cpp: the AVX-512 SGEMM micro-kernel (one 14 x 32 tile of C) and the AVX-512
// packing routines (see gemm.cpp for the cache blocking and threading around them).
//
// Technique: outer-product accumulation in registers. Per k step the kernel loads one 32-wide row
// of the B panel (2 zmm), broadcasts each of the 14 values of the packed A column and issues 28
// FMAs into 28 zmm accumulators: 31 of the 32 zmm registers are live, nothing spills. The row
// count is a template parameter (1..14), so a short edge tile or a skinny GEMM (m < 14) does only
// the FMAs it needs; a narrow edge (n % 32) masks its B loads and C stores, and one of at most 16
// columns computes one zmm per row instead of two (one thread, this Xeon, medians: 64 x 196 x 288,
// MNIST conv2's product, 134-136 -> 151 GFLOP/s; 128 x 10 x 256, a 10-class output layer, 31 -> 45).
// Napkin math (Zen 5, 2 x 512-bit FMA pipes, 4-cycle latency): 28 independent FMA chains hide the
// latency 3.5x over; 16 loads per 28 FMAs stay under the 2 vector loads/cycle the core sustains;
// the tile re-reads 14 + 32 floats per 896 flops, so operands come from L1/L2 and the kernel is
// bound by FMA throughput: peak 64 flop/cycle/core. Measured on this 2-core EPYC (Zen 5, ~3.4 GHz):
// a register-only FMA loop peaks at 220 GFLOP/s/core and the kernel with its panels in L1 reaches
// the same 220 (14x32, 12x32, 8x48 and 6x64 tiles all measured alike); whole GEMMs: gemm.cpp.
// Packing: op(A) rows and stored-transposed op(B) columns are transposed 16 x 16 at a time in
// registers (unpack + 128-bit lane shuffles, 64 shuffles per 256 floats) instead of one scalar
// load and store per float.
#include "cpu_kernels.h"

#if KN_CPU_X86
// GCC 12's AVX-512 unpack/shuffle intrinsics start from _mm512_undefined_ps(), a deliberately
// uninitialised value that -Wmaybe-uninitialized reports once inlined; nothing here reads it.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>

namespace kn::cpu {

namespace {
constexpr int MR = kGemmAvx512MR;
constexpr int NR = kGemmAvx512NR;
static_assert(NR == 32, "the kernel holds one C row in two zmm registers");

// ROWS rows of C; Masked: nr < 32, so B loads and C stores are masked to the valid columns (the
// B panel may be the caller's unpacked matrix, where reading past column n could fault). Narrow:
// nr <= 16, so only the first zmm column is computed: an edge of a few columns (MNIST conv2's
// 196 = 6 x 32 + 4 outputs, a 10-class output layer) costs half a tile instead of a whole one.
template <int ROWS, bool Masked, bool Narrow = false>
void micro_kernel(int64_t kc, const float* a, const float* b, int64_t b_stride, float* c, int64_t ldc,
                  float alpha, float beta, __mmask16 mask0, __mmask16 mask1) {
    static_assert(Masked || !Narrow, "a narrow tile is an edge tile");
    __m512 acc0[ROWS], acc1[ROWS];
#pragma GCC unroll 14
    for (int r = 0; r < ROWS; ++r) {
        acc0[r] = _mm512_setzero_ps();
        if constexpr (!Narrow) acc1[r] = _mm512_setzero_ps();
    }
    // The C tile is touched only after the k loop: start its cache misses now so they overlap
    // with the FMAs.
#pragma GCC unroll 14
    for (int r = 0; r < ROWS; ++r) {
        _mm_prefetch(reinterpret_cast<const char*>(c + r * ldc), _MM_HINT_T0);
        if constexpr (!Narrow) _mm_prefetch(reinterpret_cast<const char*>(c + r * ldc + NR - 1), _MM_HINT_T0);
    }

#pragma GCC unroll 4
    for (int64_t p = 0; p < kc; ++p) {
        const __m512 b0 = Masked ? _mm512_maskz_loadu_ps(mask0, b) : _mm512_loadu_ps(b);
        if constexpr (Narrow) {
#pragma GCC unroll 14
            for (int r = 0; r < ROWS; ++r) acc0[r] = _mm512_fmadd_ps(_mm512_set1_ps(a[r]), b0, acc0[r]);
        } else {
            const __m512 b1 = Masked ? _mm512_maskz_loadu_ps(mask1, b + 16) : _mm512_loadu_ps(b + 16);
#pragma GCC unroll 14
            for (int r = 0; r < ROWS; ++r) {
                const __m512 ar = _mm512_set1_ps(a[r]);
                acc0[r] = _mm512_fmadd_ps(ar, b0, acc0[r]);
                acc1[r] = _mm512_fmadd_ps(ar, b1, acc1[r]);
            }
        }
        a += MR;
        b += b_stride;
    }

    const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
    const bool read_c = beta != 0.0f;  // beta == 0: C is not read (NaN in C must not propagate)
#pragma GCC unroll 14
    for (int r = 0; r < ROWS; ++r) {
        float* row = c + r * ldc;
        __m512 c0 = _mm512_mul_ps(va, acc0[r]);
        if constexpr (Narrow) {
            if (read_c) c0 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(mask0, row), c0);
            _mm512_mask_storeu_ps(row, mask0, c0);
            continue;
        } else {
            __m512 c1 = _mm512_mul_ps(va, acc1[r]);
            if (Masked) {
                if (read_c) {
                    c0 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(mask0, row), c0);
                    c1 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(mask1, row + 16), c1);
                }
                _mm512_mask_storeu_ps(row, mask0, c0);
                _mm512_mask_storeu_ps(row + 16, mask1, c1);
            } else {
                if (read_c) {
                    c0 = _mm512_fmadd_ps(vb, _mm512_loadu_ps(row), c0);
                    c1 = _mm512_fmadd_ps(vb, _mm512_loadu_ps(row + 16), c1);
                }
                _mm512_storeu_ps(row, c0);
                _mm512_storeu_ps(row + 16, c1);
            }
        }
    }
}

using KernelFn = void (*)(int64_t, const float*, const float*, int64_t, float*, int64_t, float, float, __mmask16,
                          __mmask16);

template <bool Masked, bool Narrow = false>
KernelFn kernel_for_rows(int64_t mr) {
    switch (mr) {
        case 1: return micro_kernel<1, Masked, Narrow>;
        case 2: return micro_kernel<2, Masked, Narrow>;
        case 3: return micro_kernel<3, Masked, Narrow>;
        case 4: return micro_kernel<4, Masked, Narrow>;
        case 5: return micro_kernel<5, Masked, Narrow>;
        case 6: return micro_kernel<6, Masked, Narrow>;
        case 7: return micro_kernel<7, Masked, Narrow>;
        case 8: return micro_kernel<8, Masked, Narrow>;
        case 9: return micro_kernel<9, Masked, Narrow>;
        case 10: return micro_kernel<10, Masked, Narrow>;
        case 11: return micro_kernel<11, Masked, Narrow>;
        case 12: return micro_kernel<12, Masked, Narrow>;
        case 13: return micro_kernel<13, Masked, Narrow>;
        default: return micro_kernel<14, Masked, Narrow>;
    }
}

__mmask16 low_mask(int64_t count) {
    return count >= 16 ? __mmask16(0xFFFF) : count <= 0 ? __mmask16(0) : __mmask16((1u << count) - 1);
}

// In-register transpose of a 16 x 16 block: out[j][i] = in[i][j].
inline void transpose16(__m512 v[16]) {
    __m512 t[16], u[16];
#pragma GCC unroll 8
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_ps(v[i], v[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(v[i], v[i + 1]);
    }
    // Rows 4q..4q+3, column c (within each 128-bit lane) -> u[4q + c].
#pragma GCC unroll 4
    for (int q = 0; q < 4; ++q) {
        const __m512d a0 = _mm512_castps_pd(t[4 * q]), a1 = _mm512_castps_pd(t[4 * q + 1]);
        const __m512d b0 = _mm512_castps_pd(t[4 * q + 2]), b1 = _mm512_castps_pd(t[4 * q + 3]);
        u[4 * q + 0] = _mm512_castpd_ps(_mm512_unpacklo_pd(a0, b0));
        u[4 * q + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a0, b0));
        u[4 * q + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(a1, b1));
        u[4 * q + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(a1, b1));
    }
    // Gather the four 128-bit lanes of each column: output column 4L + c.
#pragma GCC unroll 4
    for (int c = 0; c < 4; ++c) {
        const __m512 w0 = _mm512_shuffle_f32x4(u[c], u[4 + c], 0x88), w1 = _mm512_shuffle_f32x4(u[c], u[4 + c], 0xDD);
        const __m512 x0 = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0x88);
        const __m512 x1 = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0xDD);
        v[c] = _mm512_shuffle_f32x4(w0, x0, 0x88);
        v[8 + c] = _mm512_shuffle_f32x4(w0, x0, 0xDD);
        v[4 + c] = _mm512_shuffle_f32x4(w1, x1, 0x88);
        v[12 + c] = _mm512_shuffle_f32x4(w1, x1, 0xDD);
    }
}

}  // namespace

void gemm_micro_kernel_avx512(int64_t kc, const float* a, const float* b, int64_t b_stride, float* c,
                              int64_t ldc, float alpha, float beta, int64_t mr, int64_t nr) {
    if (nr == NR) {
        kernel_for_rows<false>(mr)(kc, a, b, b_stride, c, ldc, alpha, beta, 0xFFFF, 0xFFFF);
    } else if (nr <= 16) {
        kernel_for_rows<true, true>(mr)(kc, a, b, b_stride, c, ldc, alpha, beta, low_mask(nr), 0);
    } else {
        kernel_for_rows<true>(mr)(kc, a, b, b_stride, c, ldc, alpha, beta, low_mask(nr), low_mask(nr - 16));
    }
}

void gemm_pack_rows_avx512(const float* src, int64_t ld, int64_t rows, int64_t kc, int64_t panel_width,
                           float* panel) {
    // panel[p * panel_width + r] = src[r * ld + p] for r < rows (zero for rows..panel_width-1),
    // 16 rows x 16 p per transpose; panel_width is 14 (A) or 32 (B, in two halves of 16).
    for (int64_t r0 = 0; r0 < panel_width; r0 += 16) {
        const int64_t width = panel_width - r0 < 16 ? panel_width - r0 : 16;  // lanes stored
        const int64_t valid = rows - r0;                                        // rows that exist
        const __mmask16 store_mask = low_mask(width);
        int64_t p = 0;
        for (; p + 16 <= kc; p += 16) {
            __m512 v[16];
#pragma GCC unroll 16
            for (int i = 0; i < 16; ++i)
                v[i] = i < valid ? _mm512_loadu_ps(src + (r0 + i) * ld + p) : _mm512_setzero_ps();
            transpose16(v);
#pragma GCC unroll 16
            for (int j = 0; j < 16; ++j) _mm512_mask_storeu_ps(panel + (p + j) * panel_width + r0, store_mask, v[j]);
        }
        for (; p < kc; ++p)
            for (int64_t i = 0; i < width; ++i) panel[p * panel_width + r0 + i] = i < valid ? src[(r0 + i) * ld + p] : 0.0f;
    }
}

}  // namespace kn::cpu

#endif  // KN_CPU_X86
