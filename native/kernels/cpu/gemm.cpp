// gemm.cpp: C = alpha * op(A) * op(B) + beta * C on the CPU (row-major, leading dimensions, strided
// batches): packing, cache blocking, threading and the choice of micro-kernel.
//
// Technique: the BLIS loop nest (Van Zee & van de Geijn, "BLIS: A Framework for Rapidly
// Instantiating BLAS Functionality", 2015). For each NC-wide column block of C and each KC-deep
// slice of k, op(B) is packed into NR-wide panels; for each MC-tall row block, op(A) is packed into
// MR-tall panels (the MC x KC block sized for L2); the micro-kernel (gemm_avx512.cpp 14 x 32,
// gemm_avx2.cpp 6 x 16, or the portable 4 x 8 below) sweeps a column of tiles per B panel. Packing
// does the transposes and zero-pads the edges, so a micro-kernel sees one layout and only masks its
// edge loads and stores.
// Shapes that packing does not pay for: with at most 4 micro-tile rows (m <= 56 on AVX-512) each B
// panel would be used at most 4 times, so the kernel reads op(B) in place (measured +15-40% for
// m = 28..56 at n = 512..2048); n == 1 is a memory-bound matrix-vector product with its own loops
// (gemv below).
// Threads: C is cut into a grid of rectangles, one per thread (the grid that balances micro-tiles
// best; or whole GEMMs per thread for batches), and each thread packs its own panels into
// thread-local buffers, so the threads never wait on each other inside a GEMM.
// Napkin math (n = 2048): 17.2 GFLOP on 48 MB of operands; A and B are packed once or twice and C
// is read and written k / KC = 2 times, ~0.2 GB of traffic against 17 GFLOP: FMA-bound.
// Measured (2-core AMD EPYC Zen 5 VM, AVX-512, both threads, quiet machine; OpenBLAS 0.3.21
// cblas_sgemm in the same run, which uses AVX2 kernels on this CPU): n = 256: 345 vs 174 GFLOP/s,
// 512: 421 vs 197, 1024: 387 vs 205, 2048: 398 vs 209 (peak 431); batch x 784 -> 512
// (m = batch, k = 784, n = 512): batch 64: 328 vs 172, 128: 375 vs 183, 256: 405 vs 189.
// One thread: AVX-512 ~200 GFLOP/s, AVX2 path ~105 (OpenBLAS ~106), portable path ~35.
// Against OpenBLAS at its best here (1 thread, thread CPU time, interleaved, 2026-12-05;
// benchmarks/results/2026-12-05-gemm): at load average 3-6 the AVX-512 path vs OpenBLAS's SkylakeX
// kernels (twice its Haswell kernels' speed on this Zen 5) 1.01x at 1024^3, 0.97x at 2048^3,
// 1.03-1.10x on the MLP layer shapes; the AVX2 path on Zen 5 vs OpenBLAS's Haswell kernels
// 0.99-1.02x on all of them. At load 6-17 our side loses more than OpenBLAS (0.85-0.95x on several
// shapes). That day's packing changes (AVX2 transposing packer, contiguous-row packs, panel stride)
// cut packing from 18-22% to 5-7% of the AVX2 path's layer-GEMM samples (perf) and made those
// shapes 5-30% faster by themselves (native/dev/gemm_cpu_bench, before/after alternating).
#include "cpu_kernels.h"
#include "scratch_buffer.h"
#include "span_kernels.h"

#include "error.h"
#include "thread_pool.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <new>
#if defined(_WIN32)
#include <malloc.h>  // _aligned_malloc: the Windows C runtime has no aligned_alloc
#endif

// Blocking, tuned on Zen 5 (48 KB L1D, 1 MB L2 per core): C is re-read and re-written once per
// KC-deep slice of k, so a deep KC cuts C traffic (KC = 256 ran ~8% slower at n = 2048). The
// panels then stream from L2 rather than sit in L1, which costs nothing: a k step needs
// 14 + 32 floats (184 B) per 14 cycles of FMAs, a fifth of L2's 64 B/cycle.
#ifndef GEMM_KC
#define GEMM_KC 1024  // k depth of a packed block
#endif
#ifndef GEMM_MC
#define GEMM_MC 126   // rows of the packed A block: 126 x 1024 floats = 504 KB, half of L2
#endif
#ifndef GEMM_NC
#define GEMM_NC 1024  // columns of the packed B block: 1024 x 1024 floats = 4 MB, in L3 (2048
#endif                // measured the same, at twice the per-thread buffer)
#ifndef GEMM_PORTABLE_MR
#define GEMM_PORTABLE_MR 4  // the portable kernel's tile: 4 x 8 = 8 SSE2/NEON accumulators
#endif
#ifndef GEMM_PORTABLE_NR
#define GEMM_PORTABLE_NR 8
#endif
#ifndef GEMM_UNPACKED_B_MAX_TILES
#define GEMM_UNPACKED_B_MAX_TILES 4  // up to 4 micro-tile rows read B in place instead of packing it
#endif
#ifndef GEMM_THREADING_MIN_MACS
#define GEMM_THREADING_MIN_MACS (int64_t{1} << 20)  // below ~2 MFLOP (~10 us on one core) a thread
#endif                                               // hand-off costs more than it saves

namespace kn::cpu {
namespace {

// ---- Portable micro-kernel ---------------------------------------------------------------------
// Plain C++ over fixed-size arrays: the compiler keeps the 4 x 8 accumulators in vector registers
// (SSE2 on baseline x86-64, NEON on ARM). The fallback for CPUs without AVX2.
void gemm_micro_kernel_portable(int64_t kc, const float* a, const float* b, int64_t b_stride, float* c,
                                int64_t ldc, float alpha, float beta, int64_t mr, int64_t nr) {
    constexpr int MR = GEMM_PORTABLE_MR, NR = GEMM_PORTABLE_NR;
    float acc[MR][NR] = {};
    for (int64_t p = 0; p < kc; ++p) {
        for (int i = 0; i < MR; ++i) {
            const float ai = a[i];
            for (int j = 0; j < NR; ++j) acc[i][j] += ai * b[j];
        }
        a += MR;
        b += b_stride;
    }
    for (int64_t i = 0; i < mr; ++i) {
        float* row = c + i * ldc;
        if (beta == 0.0f) {
            for (int64_t j = 0; j < nr; ++j) row[j] = alpha * acc[i][j];
        } else {
            for (int64_t j = 0; j < nr; ++j) row[j] = alpha * acc[i][j] + beta * row[j];
        }
    }
}

using PackRows = void (*)(const float* src, int64_t ld, int64_t rows, int64_t kc, int64_t panel_width,
                          float* panel);

struct KernelConfig {
    GemmMicroKernel kernel;
    int64_t mr, nr;
    bool reads_unpacked_b;  // the kernel masks its B loads, so it may read op(B) in place
    PackRows pack_rows;     // SIMD transposing packer, or null for the plain loops below
};

const KernelConfig& kernel_config() {
    static const KernelConfig config = []() -> KernelConfig {
        const KernelConfig portable{gemm_micro_kernel_portable, GEMM_PORTABLE_MR, GEMM_PORTABLE_NR, false, nullptr};
#if KN_CPU_X86
        return choose_isa(portable, KernelConfig{gemm_micro_kernel_avx2, kGemmAvx2MR, kGemmAvx2NR, true, gemm_pack_rows_avx2},
                          KernelConfig{gemm_micro_kernel_avx512, kGemmAvx512MR, kGemmAvx512NR, true,
                                       gemm_pack_rows_avx512});
#else
        return portable;
#endif
    }();
    return config;
}

// ---- Packing buffers -------------------------------------------------------------------------
// One A and one B buffer per thread, grown on demand and kept (scratch_buffer.h).
thread_local ScratchBuffer a_pack_buffer{"GEMM packing buffer (A)"}, b_pack_buffer{"GEMM packing buffer (B)"};

// What kn_linear_f32 applies to each finished block of C: c[i][j] = act(c[i][j] + bias[j]); or,
// for the convolution (gemm_f32_with), c[i][j] += bias[batch * m + i].
struct Epilogue {
    const float* bias;  // n elements (m per batch when per_row), or null
    bool activate;
    kn_unary_op op;
    float alpha;
    bool per_row;       // bias by row of C (one per output channel) instead of by column
};

// The epilogue over rows [row0, row0 + rows) x [col0, col0 + cols) of batch `batch`'s C of m rows,
// starting at c (already offset to that block), with the vectorised span kernels the elementwise ops
// use; each row is in L1 or L2 when it runs.
void apply_epilogue(const Epilogue& e, float* c, int64_t ldc, int64_t m, int64_t batch, int64_t row0, int64_t rows,
                    int64_t col0, int64_t cols) {
    const SpanKernels& S = span_kernels();
    for (int64_t i = 0; i < rows; ++i) {
        float* row = c + i * ldc;
        if (e.per_row) S.unary(KN_UNARY_ADD_SCALAR, e.bias[batch * m + row0 + i], row, row, cols);
        else if (e.bias) S.binary(KN_BINARY_ADD, row, 1, e.bias + col0, 1, row, cols);
        if (e.activate) S.unary(e.op, e.alpha, row, row, cols);
    }
}

// One GEMM with its operands resolved to this batch's pointers.
struct Problem {
    bool trans_a, trans_b;
    int64_t m, n, k;
    float alpha, beta;
    const float* a; int64_t lda;
    const float* b; int64_t ldb;
    float* c; int64_t ldc;
    const Epilogue* epilogue;  // null for a plain GEMM
    const GemmBPacker* b_packer;  // null: op(B) is b; otherwise the caller packs it (as batch `batch`)
    int64_t batch;
};

// Floats from one packed panel to the next: W * kc plus one cache line. Without the line, panels
// of kc = 1024 lie a multiple of 4 KB apart (24 KB for MR = 6, 64 KB for NR = 16), so the same
// p of every panel falls in one L1 set: packing, which writes all panels of a block at once,
// missed on its stores (perf: 15-20% of a 512 x 256 x 1024 TN GEMM on the AVX2 path).
int64_t panel_stride(int64_t width, int64_t kc) { return width * kc + 16; }

// Packing where each k step p of the block is `count` contiguous floats (src + p * ld): op(A)
// stored transposed, op(B) stored as is. Panel q (width W) gets floats [q*W, q*W + W) of every
// row at dst + q * panel_stride + p*W, columns past `count` zero. Row p outer: each source row is
// read once, front to back (what the hardware prefetcher follows best; panel at a time re-read
// each source line once per panel). A full panel's W floats are a compile-time count, so their
// memcpy compiles to a few vector moves (the element loop did not: the compiler cannot rule out
// that the panel overlaps the source, and copied scalars).
template <int W>
void pack_contiguous_w(const float* src, int64_t ld, int64_t count, int64_t kc, float* dst) {
    const int64_t stride = panel_stride(W, kc);
    const int64_t full = count / W;
    for (int64_t p = 0; p < kc; ++p) {
        const float* row = src + p * ld;
        float* out = dst + p * W;
        // Row p + 8 is a jump of 8 * ld floats that the prefetcher does not guess: ask for its lines
        // now (op(A) of a 512 x 256 x 1024 TN GEMM comes from L3, and its loads were half the
        // packing's samples without this).
        if (p + 8 < kc)
            for (int64_t c = 0; c < count; c += 16) __builtin_prefetch(row + 8 * ld + c);
        int64_t q = 0;
        for (; q < full; ++q) std::memcpy(out + q * stride, row + q * W, sizeof(float) * W);
        if (q * W < count) {
            for (int64_t w = 0; w < W; ++w) out[q * stride + w] = q * W + w < count ? row[q * W + w] : 0.0f;
        }
    }
}

void pack_contiguous(const float* src, int64_t ld, int64_t count, int64_t kc, int64_t width, float* dst) {
    switch (width) {
        case GEMM_PORTABLE_MR: return pack_contiguous_w<GEMM_PORTABLE_MR>(src, ld, count, kc, dst);
        case GEMM_PORTABLE_NR: return pack_contiguous_w<GEMM_PORTABLE_NR>(src, ld, count, kc, dst);
#if KN_CPU_X86
        case kGemmAvx2MR: return pack_contiguous_w<kGemmAvx2MR>(src, ld, count, kc, dst);
        case kGemmAvx2NR: return pack_contiguous_w<kGemmAvx2NR>(src, ld, count, kc, dst);
        case kGemmAvx512MR: return pack_contiguous_w<kGemmAvx512MR>(src, ld, count, kc, dst);
        case kGemmAvx512NR: return pack_contiguous_w<kGemmAvx512NR>(src, ld, count, kc, dst);
#endif
        default: break;
    }
    for (int64_t p = 0; p < kc; ++p)
        for (int64_t q = 0; q * width < count; ++q)
            for (int64_t w = 0; w < width; ++w)
                dst[q * panel_stride(width, kc) + p * width + w] = q * width + w < count ? src[p * ld + q * width + w] : 0.0f;
}

// Rows [i0, i0 + mc) x depth [p0, p0 + kc) of op(A) into MR-tall panels: panel q holds
// op(A)[i0 + q*MR + r][p0 + p] at q*panel_stride(MR, kc) + p*MR + r, rows past the edge zero.
void pack_a(const Problem& P, const KernelConfig& K, int64_t i0, int64_t mc, int64_t p0, int64_t kc,
            float* dst) {
    const int64_t MR = K.mr;
    if (P.trans_a) {
        // Stored transposed: op(A)[i][p] = a[p * lda + i], mc contiguous floats per p.
        pack_contiguous(P.a + p0 * P.lda + i0, P.lda, mc, kc, MR, dst);
        return;
    }
    for (int64_t i = 0; i < mc; i += MR) {
        const int64_t rows = std::min(MR, mc - i);
        float* panel = dst + i / MR * panel_stride(MR, kc);
        if (K.pack_rows) {
            K.pack_rows(P.a + (i0 + i) * P.lda + p0, P.lda, rows, kc, MR, panel);
        } else {
            // op(A) row r is contiguous in p: read each row once, scatter with stride MR (the
            // panel is MR * kc * 4 = 14 KB, so the scattered writes stay in L1).
            for (int64_t r = 0; r < rows; ++r) {
                const float* src = P.a + (i0 + i + r) * P.lda + p0;
                for (int64_t p = 0; p < kc; ++p) panel[p * MR + r] = src[p];
            }
            for (int64_t r = rows; r < MR; ++r)
                for (int64_t p = 0; p < kc; ++p) panel[p * MR + r] = 0.0f;
        }
    }
}

// Depth [p0, p0 + kc) x columns [j0, j0 + nc) of op(B) into NR-wide panels: panel q holds
// op(B)[p0 + p][j0 + q*NR + j] at q*panel_stride(NR, kc) + p*NR + j, columns past the edge zero.
void pack_b(const Problem& P, const KernelConfig& K, int64_t p0, int64_t kc, int64_t j0, int64_t nc,
            float* dst) {
    const int64_t NR = K.nr;
    if (P.b_packer) {
        P.b_packer->pack(P.b_packer->context, P.batch, p0, kc, j0, nc, NR, panel_stride(NR, kc), dst);
        return;
    }
    if (!P.trans_b) {
        // Stored as is: nc contiguous floats per p.
        pack_contiguous(P.b + p0 * P.ldb + j0, P.ldb, nc, kc, NR, dst);
        return;
    }
    for (int64_t j = 0; j < nc; j += NR) {
        const int64_t cols = std::min(NR, nc - j);
        float* panel = dst + j / NR * panel_stride(NR, kc);
        if (K.pack_rows) {
            K.pack_rows(P.b + (j0 + j) * P.ldb + p0, P.ldb, cols, kc, NR, panel);
        } else {
            // Stored transposed: op(B)[p][j] = b[j * ldb + p]; read each stored row once.
            for (int64_t c = 0; c < cols; ++c) {
                const float* src = P.b + (j0 + j + c) * P.ldb + p0;
                for (int64_t p = 0; p < kc; ++p) panel[p * NR + c] = src[p];
            }
            for (int64_t c = cols; c < NR; ++c)
                for (int64_t p = 0; p < kc; ++p) panel[p * NR + c] = 0.0f;
        }
    }
}

// Splits `total` into `parts` near-equal block sizes rounded up to `multiple` (so KC = 300 becomes
// 2 x 152 rather than 256 + 44, and no block is a sliver).
int64_t balanced_block(int64_t total, int64_t max_block, int64_t multiple) {
    const int64_t parts = (total + max_block - 1) / max_block;
    const int64_t block = (total + parts - 1) / parts;
    return (block + multiple - 1) / multiple * multiple;
}

// A few rows of C use each B panel only a few times: then packing B costs more (one extra read and
// write of B) than reading op(B) in place, rows ldb apart, with masked edges.
bool reads_b_in_place(const KernelConfig& K, bool trans_b, int64_t rows) {
    return K.reads_unpacked_b && !trans_b && rows <= GEMM_UNPACKED_B_MAX_TILES * K.mr;
}

// The BLIS loop nest over the rectangle [m0, m1) x [n0, n1) of C, on the calling thread.
void gemm_rectangle(const Problem& P, const KernelConfig& K, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
    const int64_t MR = K.mr, NR = K.nr;
    const int64_t kc_max = balanced_block(P.k, GEMM_KC, 4);
    const int64_t mc_max = balanced_block(m1 - m0, std::max<int64_t>(GEMM_MC / MR, 1) * MR, MR);
    const int64_t nc_max = balanced_block(n1 - n0, std::max<int64_t>(GEMM_NC / NR, 1) * NR, NR);
    const bool pack_b_panels = P.b_packer || !reads_b_in_place(K, P.trans_b, m1 - m0);
    float* a_pack = a_pack_buffer.get(mc_max / MR * panel_stride(MR, kc_max));
    float* b_pack = pack_b_panels ? b_pack_buffer.get(nc_max / NR * panel_stride(NR, kc_max)) : nullptr;

    for (int64_t jc = n0; jc < n1; jc += nc_max) {
        const int64_t nc = std::min(nc_max, n1 - jc);
        for (int64_t pc = 0; pc < P.k; pc += kc_max) {
            const int64_t kc = std::min(kc_max, P.k - pc);
            // The first k slice applies beta; later slices accumulate onto it.
            const float beta = pc == 0 ? P.beta : 1.0f;
            if (pack_b_panels) pack_b(P, K, pc, kc, jc, nc, b_pack);
            for (int64_t ic = m0; ic < m1; ic += mc_max) {
                const int64_t mc = std::min(mc_max, m1 - ic);
                pack_a(P, K, ic, mc, pc, kc, a_pack);
                for (int64_t jr = 0; jr < nc; jr += NR) {
                    const int64_t nr = std::min(NR, nc - jr);
                    const float* b_panel = pack_b_panels ? b_pack + jr / NR * panel_stride(NR, kc) : P.b + pc * P.ldb + jc + jr;
                    const int64_t b_stride = pack_b_panels ? NR : P.ldb;
                    float* c_col = P.c + ic * P.ldc + jc + jr;
                    for (int64_t ir = 0; ir < mc; ir += MR) {
                        K.kernel(kc, a_pack + ir / MR * panel_stride(MR, kc), b_panel, b_stride, c_col + ir * P.ldc, P.ldc, P.alpha,
                                 beta, std::min(MR, mc - ir), nr);
                    }
                }
                // After the last k slice this mc x nc block of C is final and still in L2 (at most
                // MC x NC floats, half of it): bias and activation now save a pass over C from memory.
                if (P.epilogue && pc + kc == P.k)
                    apply_epilogue(*P.epilogue, P.c + ic * P.ldc + jc, P.ldc, P.m, P.batch, ic, mc, jc, nc);
            }
        }
    }
}

// n == 1: a matrix-vector product, c[i * ldc] = alpha * sum_p op(A)[i][p] x[p] + beta * c[i * ldc].
// It reads each element of A once for one FMA, so it is memory-bound: packing A or filling 32-wide
// micro-tiles with one useful column would only add traffic. Rows [i0, i1) of C, x gathered into a
// contiguous vector by the caller.
constexpr int64_t kGemvLanes = 32;  // independent partial sums per dot product (2 zmm / 4 ymm)

void gemv_rows(const Problem& P, const float* x, int64_t i0, int64_t i1) {
    auto finish = [&](int64_t i, float dot) {
        float* c = P.c + i * P.ldc;
        *c = P.beta == 0.0f ? P.alpha * dot : P.alpha * dot + P.beta * *c;
    };
    if (!P.trans_a) {
        // Row i of A is contiguous: a dot product with 32 lanes, folded pairwise.
        for (int64_t i = i0; i < i1; ++i) {
            const float* a = P.a + i * P.lda;
            float acc[kGemvLanes] = {};
            int64_t p = 0;
            for (; p + kGemvLanes <= P.k; p += kGemvLanes)
                for (int64_t j = 0; j < kGemvLanes; ++j) acc[j] += a[p + j] * x[p + j];
            for (int64_t j = 0; p + j < P.k; ++j) acc[j] += a[p + j] * x[p + j];
            for (int64_t width = kGemvLanes / 2; width >= 1; width /= 2)
                for (int64_t j = 0; j < width; ++j) acc[j] += acc[j + width];
            finish(i, acc[0]);
        }
        return;
    }
    // Stored transposed: row p of the stored matrix holds op(A)[i0..i1)[p] contiguously, so the
    // product is a sum of scaled rows (axpy), accumulated in blocks of columns that stay in L1.
    constexpr int64_t kBlock = 512;
    float acc[kBlock];
    for (int64_t b0 = i0; b0 < i1; b0 += kBlock) {
        const int64_t width = std::min(kBlock, i1 - b0);
        for (int64_t j = 0; j < width; ++j) acc[j] = 0.0f;
        for (int64_t p = 0; p < P.k; ++p) {
            const float* a = P.a + p * P.lda + b0;
            const float xp = x[p];
            for (int64_t j = 0; j < width; ++j) acc[j] += xp * a[j];
        }
        for (int64_t j = 0; j < width; ++j) finish(b0 + j, acc[j]);
    }
}

void gemv(const Problem& P, int threads) {
    // x = op(B)[:, 0]: contiguous when B is stored transposed (1 x k), every ldb floats otherwise.
    float* x = b_pack_buffer.get(P.k);
    for (int64_t p = 0; p < P.k; ++p) x[p] = P.trans_b ? P.b[p] : P.b[p * P.ldb];
    const int64_t grain = std::max<int64_t>(1, GEMM_THREADING_MIN_MACS / std::max<int64_t>(P.k, 1));
    auto rows = [&](int64_t begin, int64_t end) {
        gemv_rows(P, x, begin, end);
        if (P.epilogue) apply_epilogue(*P.epilogue, P.c + begin * P.ldc, P.ldc, P.m, P.batch, begin, end - begin, 0, 1);
    };
    if (threads == 1) {
        rows(0, P.m);
        return;
    }
    parallel_for(P.m, grain, rows);
}

// C = beta * C where there is no product to add (k == 0 or alpha == 0); beta == 0 writes zeros
// without reading C, as BLAS does.
void scale_c(const GemmArgs& g) {
    float* c0 = static_cast<float*>(g.c);
    for (int64_t batch = 0; batch < g.batch_count; ++batch) {
        for (int64_t i = 0; i < g.m; ++i) {
            float* row = c0 + batch * g.stride_c + i * g.ldc;
            if (g.beta == 0.0f) std::fill(row, row + g.n, 0.0f);
            else if (g.beta != 1.0f)
                for (int64_t j = 0; j < g.n; ++j) row[j] *= g.beta;
        }
    }
}

// The grid of rectangles (rows x cols <= threads) that minimises the most micro-tiles any one
// thread computes; ties go to fewer threads.
void choose_grid(int64_t tiles_m, int64_t tiles_n, int threads, int64_t& grid_m, int64_t& grid_n) {
    int64_t best = -1;
    grid_m = grid_n = 1;
    for (int64_t gm = 1; gm <= threads; ++gm) {
        for (int64_t gn = 1; gm * gn <= threads; ++gn) {
            const int64_t cost = ((tiles_m + gm - 1) / gm) * ((tiles_n + gn - 1) / gn);
            if (best < 0 || cost < best || (cost == best && gm * gn < grid_m * grid_n)) {
                best = cost;
                grid_m = gm;
                grid_n = gn;
            }
        }
    }
}

}  // namespace

namespace {

// gemm_f32, linear_f32 with its epilogue (null for a plain GEMM), and gemm_f32_with with its row
// bias epilogue and its packer (null: op(B) is g.b).
void gemm_driver(const GemmArgs& g, const Epilogue* epilogue, const GemmBPacker* b_packer = nullptr) {
    if (g.k == 0 || g.alpha == 0.0f) {
        scale_c(g);
        if (epilogue)
            for (int64_t batch = 0; batch < g.batch_count; ++batch)
                apply_epilogue(*epilogue, static_cast<float*>(g.c) + batch * g.stride_c, g.ldc, g.m, batch, 0, g.m, 0, g.n);
        return;
    }
    const KernelConfig& K = kernel_config();
    const float* a = static_cast<const float*>(g.a);
    const float* b = static_cast<const float*>(g.b);
    float* c = static_cast<float*>(g.c);
    auto problem = [&](int64_t batch) {
        return Problem{g.trans_a, g.trans_b, g.m, g.n, g.k, g.alpha, g.beta,
                       a + batch * g.stride_a, g.lda, b + batch * g.stride_b, g.ldb,
                       c + batch * g.stride_c, g.ldc, epilogue, b_packer, batch};
    };

    const int threads = thread_count();
    const int64_t macs = g.m * g.n * g.k;
    if (g.n == 1 && !b_packer) {
        for (int64_t batch = 0; batch < g.batch_count; ++batch) gemv(problem(batch), threads);
        return;
    }
    if (threads == 1 || macs * g.batch_count < GEMM_THREADING_MIN_MACS) {
        for (int64_t batch = 0; batch < g.batch_count; ++batch)
            gemm_rectangle(problem(batch), K, 0, g.m, 0, g.n);
        return;
    }

    // Whole GEMMs per thread when the batches divide evenly or are many (then each GEMM also runs
    // without any cross-thread split); otherwise every GEMM is cut into a grid of rectangles.
    int64_t grid_m = 1, grid_n = 1;
    const bool whole_batches = g.batch_count >= threads &&
                               (g.batch_count % threads == 0 || g.batch_count >= 8 * threads);
    const int64_t tiles_m = (g.m + K.mr - 1) / K.mr, tiles_n = (g.n + K.nr - 1) / K.nr;
    if (!whole_batches) choose_grid(tiles_m, tiles_n, threads, grid_m, grid_n);
    const int64_t per_batch = grid_m * grid_n;

    parallel_for(g.batch_count * per_batch, 1, [&](int64_t begin, int64_t end) {
        for (int64_t task = begin; task < end; ++task) {
            const int64_t batch = task / per_batch, cell = task % per_batch;
            const int64_t gi = cell / grid_n, gj = cell % grid_n;
            // Rectangle edges fall on micro-tile boundaries so no tile is split between threads.
            const int64_t m0 = std::min(g.m, tiles_m * gi / grid_m * K.mr);
            const int64_t m1 = std::min(g.m, tiles_m * (gi + 1) / grid_m * K.mr);
            const int64_t n0 = std::min(g.n, tiles_n * gj / grid_n * K.nr);
            const int64_t n1 = std::min(g.n, tiles_n * (gj + 1) / grid_n * K.nr);
            if (m0 < m1 && n0 < n1) gemm_rectangle(problem(batch), K, m0, m1, n0, n1);
        }
    });
}

}  // namespace

void gemm_f32(const GemmArgs& g) { gemm_driver(g, nullptr); }

void gemm_f32_with(const GemmArgs& g, const GemmBPacker* b_packer, const float* row_bias) {
    const Epilogue bias_rows{row_bias, false, KN_UNARY_SCALE, 1.0f, true};
    gemm_driver(g, row_bias ? &bias_rows : nullptr, b_packer);
}

bool gemm_packs_b(int64_t m) { return !reads_b_in_place(kernel_config(), false, m); }

void linear_f32(const LinearArgs& args) {
    const Epilogue epilogue{static_cast<const float*>(args.bias), args.activate, args.activation, args.alpha, false};
    gemm_driver(args.gemm, args.bias || args.activate ? &epilogue : nullptr);
}

}  // namespace kn::cpu
