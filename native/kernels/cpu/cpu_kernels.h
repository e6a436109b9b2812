// cpu_kernels.h: the CPU backend's kernel entry points (native/kernels/cpu/*.cpp), called by
// CpuDevice (native/kernels/cpu/cpu_device.cpp) with host pointers and arguments the C API has validated.
//
// Instruction sets are chosen at run time: files named *_avx512.cpp / *_avx2.cpp are compiled for
// that ISA (see CMakeLists.txt) and only entered after a CPUID check, so one binary runs on any
// x86-64 and the same sources build on other architectures with the portable code alone.
#pragma once

#include "backend.h"

#include <cstdint>

// The SIMD files are compiled only for x86-64; elsewhere the portable code is the whole backend.
#if defined(__x86_64__) || defined(_M_X64)
#define KN_CPU_X86 1
#else
#define KN_CPU_X86 0
#endif

namespace kn::cpu {

// ---- Instruction-set dispatch ----------------------------------------------------------------

enum class SimdLevel { portable = 0, avx2 = 1, avx512 = 2 };

// The widest level this CPU and OS support, lowered by the environment variable KN_CPU_SIMD
// ("avx512", "avx2" or "portable") so every code path can be tested on one machine. Decided once.
SimdLevel simd_level();
// The level as a register width in bits: 512, 256 or 128 (the device's capability_major).
int simd_width_bits(SimdLevel level);
const char* simd_level_name(SimdLevel level);

// The variant for simd_level(): portable, avx2 or avx512 (whatever T is: a function pointer, a table).
template <typename T>
T choose_isa(T portable, T avx2, T avx512) {
    switch (simd_level()) {
        case SimdLevel::avx512: return avx512;
        case SimdLevel::avx2: return avx2;
        default: return portable;
    }
}

// Compile once per instruction set: a kernel family written as plain C++ in one header
// (span_kernels_impl.h, pool_impl.h) is included by <family>.cpp, <family>_avx2.cpp and
// <family>_avx512.cpp after `#define KN_ISA portable` (avx2, avx512), and puts its entry point in
// namespace kn::cpu::KN_ISA; everything else in it has internal linkage, so the compilations never
// meet at link time. KN_ISA_ENTRY(name) is the entry point for this CPU (only the portable one
// exists off x86-64, where the *_avx*.cpp files compile to nothing).
#if KN_CPU_X86
#define KN_ISA_ENTRY(name) \
    ::kn::cpu::choose_isa(&::kn::cpu::portable::name, &::kn::cpu::avx2::name, &::kn::cpu::avx512::name)
#else
#define KN_ISA_ENTRY(name) (&::kn::cpu::portable::name)
#endif

// ---- Kernels (one family per file) -----------------------------------------------------------
// One entry point per op of native/core/ops.h, declared from its table and named as there: CpuDevice
// forwards each op to cpu::<name>(args). The CPU is the reference backend, so it has every op (a
// missing one does not link).

#define KN_CPU_DECLARE_OP(name, Args) void name(const Args& args);
KN_OPS(KN_CPU_DECLARE_OP)  // each in the family file ops.h names: gemm_f32 in gemm.cpp, ...
#undef KN_CPU_DECLARE_OP

void fill_f32(float* dst, int64_t count, float value);     // elementwise.cpp
void copy_bytes(void* dst, const void* src, int64_t bytes);// elementwise.cpp (parallel memcpy)

// ---- GEMM for the CPU's own callers (gemm.cpp): a caller-packed op(B), a bias per row of C ------
// A product whose op(B) is never stored: the convolution's column matrix, packed straight from the
// padded image (conv.cpp; "implicit GEMM"), so it is not written out and read back first.
// pack(context, batch, p0, kc, j0, nc, nr, panel_stride, dst) fills the panels of batch `batch`'s
// op(B) over depth [p0, p0 + kc) and columns [j0, j0 + nc): panel q starts at dst + q * panel_stride
// and holds op(B)[p0 + p][j0 + q * nr + j] at p * nr + j, zeros for columns past nc. Panels lie at
// least nr * kc + 8 floats apart, so a packer may write up to 8 floats past a row of nr floats as
// long as it writes rows in increasing p (a later row overwrites the excess).
struct GemmBPacker {
    void (*pack)(const void* context, int64_t batch, int64_t p0, int64_t kc, int64_t j0, int64_t nc, int64_t nr,
                 int64_t panel_stride, float* dst);
    const void* context;
};
// gemm_f32, with op(B) from b_packer when it is not null (the GEMM then always packs B, and g.b,
// ldb, stride_b and trans_b are not used), and with c[i][j] += row_bias[batch * m + i] applied to
// each block of C while it is still in cache when row_bias is not null (a convolution's bias: one
// per output channel, the groups' channels in batch order).
void gemm_f32_with(const GemmArgs& g, const GemmBPacker* b_packer, const float* row_bias);
// Whether gemm_f32 packs a stored-as-is op(B) for a product of m rows on one thread; where it does
// not, it reads op(B) in place, and an op(B) the caller must build anyway is best built in place.
bool gemm_packs_b(int64_t m);

// ---- GEMM micro-kernels (defined only where KN_CPU_X86) ----------------------------------------
// A micro-kernel computes one MR x NR tile of C:
//     C[0:mr, 0:nr] = alpha * sum_p a[p*MR + i] * b[p*b_stride + j] + beta * C[0:mr, 0:nr]
// a: a packed kc x MR panel (one MR-tall column of op(A) per p, zero-padded). b: kc rows of NR
// floats b_stride apart: a packed panel (b_stride = NR, zero-padded) or, where the kernel masks
// its loads, op(B) itself (b_stride = ldb). mr <= MR and nr <= NR are the valid edge sizes.
// beta == 0 does not read C (NaN in C must not propagate).
using GemmMicroKernel = void (*)(int64_t kc, const float* a, const float* b, int64_t b_stride, float* c,
                                 int64_t ldc, float alpha, float beta, int64_t mr, int64_t nr);

// Register math, 32 zmm: 14 rows x 2 vectors of 16 = 28 accumulators + 2 B vectors + 1 broadcast.
constexpr int kGemmAvx512MR = 14, kGemmAvx512NR = 32;
void gemm_micro_kernel_avx512(int64_t kc, const float* a, const float* b, int64_t b_stride, float* c,
                              int64_t ldc, float alpha, float beta, int64_t mr, int64_t nr);
// panel[p * panel_width + r] = src[r * ld + p] for r < rows, zero for rows <= r < panel_width:
// packs op(A) stored row-major (panel_width = MR) or op(B) stored transposed (panel_width = NR).
void gemm_pack_rows_avx512(const float* src, int64_t ld, int64_t rows, int64_t kc, int64_t panel_width,
                           float* panel);

// Register math, 16 ymm: 6 rows x 2 vectors of 8 = 12 accumulators + 2 B vectors + 1 broadcast.
constexpr int kGemmAvx2MR = 6, kGemmAvx2NR = 16;
void gemm_micro_kernel_avx2(int64_t kc, const float* a, const float* b, int64_t b_stride, float* c,
                            int64_t ldc, float alpha, float beta, int64_t mr, int64_t nr);
// As gemm_pack_rows_avx512, with 8 x 8 transposes (panel_width = 6 for A, 16 for B).
void gemm_pack_rows_avx2(const float* src, int64_t ld, int64_t rows, int64_t kc, int64_t panel_width,
                         float* panel);

}  // namespace kn::cpu
