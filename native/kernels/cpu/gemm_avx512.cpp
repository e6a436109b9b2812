// gemm_avx512.cpp: the AVX-512 SGEMM micro-kernel, one 14 x 32 tile of C from packed panels
// (see gemm.cpp for the packing, cache blocking and threading around it).
//
// Technique: outer-product accumulation in registers. Per k step the kernel loads one 32-wide row
// of the packed B panel (2 zmm), broadcasts each of the 14 values of the packed A column and issues
// 28 FMAs into 28 zmm accumulators: 31 of the 32 zmm registers are live, nothing spills.
// Napkin math (Zen 5, 2 x 512-bit FMA pipes, 4-cycle latency): 28 independent FMA chains hide the
// latency 3.5x over; 16 loads per 28 FMAs stay under the 2 vector loads/cycle the core sustains;
// the tile re-reads 14 + 32 floats per 896 flops, so the operands come from L1/L2 and the kernel is
// bound by FMA throughput: peak 64 flop/cycle/core (measured 220 GFLOP/s/core with a register-only
// FMA loop on this 2-core EPYC at ~3.4 GHz).
#include "cpu_kernels.h"

#if KN_CPU_X86
#include <immintrin.h>

namespace kn::cpu {

namespace {
constexpr int MR = kGemmAvx512MR;
constexpr int NR = kGemmAvx512NR;
static_assert(NR == 32, "the kernel holds one C row in two zmm registers");
}  // namespace

void gemm_micro_kernel_avx512(int64_t kc, const float* a, const float* b, float* c, int64_t ldc,
                              float alpha, float beta, int64_t mr, int64_t nr) {
    __m512 acc0[MR], acc1[MR];
#pragma GCC unroll 14
    for (int r = 0; r < MR; ++r) {
        acc0[r] = _mm512_setzero_ps();
        acc1[r] = _mm512_setzero_ps();
    }
    // The C tile is touched only after the k loop: start its cache misses now so they overlap with
    // the FMAs (a prefetch never faults, so rows past mr are harmless).
#pragma GCC unroll 14
    for (int r = 0; r < MR; ++r) {
        _mm_prefetch(reinterpret_cast<const char*>(c + r * ldc), _MM_HINT_T0);
        _mm_prefetch(reinterpret_cast<const char*>(c + r * ldc + NR - 1), _MM_HINT_T0);
    }

#pragma GCC unroll 4
    for (int64_t p = 0; p < kc; ++p) {
        const __m512 b0 = _mm512_load_ps(b);
        const __m512 b1 = _mm512_load_ps(b + 16);
#pragma GCC unroll 14
        for (int r = 0; r < MR; ++r) {
            const __m512 ar = _mm512_set1_ps(a[r]);
            acc0[r] = _mm512_fmadd_ps(ar, b0, acc0[r]);
            acc1[r] = _mm512_fmadd_ps(ar, b1, acc1[r]);
        }
        a += MR;
        b += NR;
    }

    const __m512 va = _mm512_set1_ps(alpha);
    if (mr == MR && nr == NR) {
        if (beta == 0.0f) {
#pragma GCC unroll 14
            for (int r = 0; r < MR; ++r) {
                _mm512_storeu_ps(c + r * ldc, _mm512_mul_ps(va, acc0[r]));
                _mm512_storeu_ps(c + r * ldc + 16, _mm512_mul_ps(va, acc1[r]));
            }
        } else {
            const __m512 vb = _mm512_set1_ps(beta);
#pragma GCC unroll 14
            for (int r = 0; r < MR; ++r) {
                float* row = c + r * ldc;
                _mm512_storeu_ps(row, _mm512_fmadd_ps(va, acc0[r], _mm512_mul_ps(vb, _mm512_loadu_ps(row))));
                _mm512_storeu_ps(row + 16,
                                 _mm512_fmadd_ps(va, acc1[r], _mm512_mul_ps(vb, _mm512_loadu_ps(row + 16))));
            }
        }
        return;
    }

    // Edge tile: park the accumulators in a local tile (constant indices keep them in registers
    // above), then update only the valid mr x nr part with masked loads/stores.
    alignas(64) float tile[MR * NR];
#pragma GCC unroll 14
    for (int r = 0; r < MR; ++r) {
        _mm512_store_ps(tile + r * NR, _mm512_mul_ps(va, acc0[r]));
        _mm512_store_ps(tile + r * NR + 16, _mm512_mul_ps(va, acc1[r]));
    }
    const __mmask16 mask0 = nr >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << nr) - 1);
    const __mmask16 mask1 = nr <= 16 ? __mmask16(0) : nr >= 32 ? __mmask16(0xFFFF) : __mmask16((1u << (nr - 16)) - 1);
    const __m512 vb = _mm512_set1_ps(beta);
    for (int64_t r = 0; r < mr; ++r) {
        float* row = c + r * ldc;
        __m512 t0 = _mm512_load_ps(tile + r * NR), t1 = _mm512_load_ps(tile + r * NR + 16);
        if (beta != 0.0f) {
            t0 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(mask0, row), t0);
            t1 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(mask1, row + 16), t1);
        }
        _mm512_mask_storeu_ps(row, mask0, t0);
        _mm512_mask_storeu_ps(row + 16, mask1, t1);
    }
}

}  // namespace kn::cpu

#endif  // KN_CPU_X86
