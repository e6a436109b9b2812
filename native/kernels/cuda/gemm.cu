// gemm.cu: C = alpha * op(A) * op(B) + beta * C for row-major float32 matrices in strided batches
// (kn_gemm_f32), on CUDA cores in plain FP32 (no tensor cores, no TF32), like cuBLAS SGEMM.
//
// Technique (the two-level blocking of GPU SGEMMs: CUTLASS's SIMT path, siboehm's "warptiling"):
//   - a block of 256 threads owns a BM x BN tile of C and walks k in steps of BK. Per step it copies
//     a BM x BK block of op(A) and a BK x BN block of op(B) into shared memory, both stored k-major
//     ([BK][BM] and [BK][BN]) whatever their global layout: an operand that is contiguous along k
//     (A untransposed, B transposed) is turned around while being stored, the others are copied
//     as they are. Global loads are float4 where alignment and the leading dimension allow;
//   - two shared-memory stages (double buffering): the next step's tile is loaded from global
//     memory into registers while the current one is multiplied, then stored into the other stage,
//     so each step needs a single __syncthreads;
//   - each warp owns a (32*SUB_M) x (16*SUB_N) part of the block tile; its 32 threads form an 8 x 4
//     grid and each keeps SUB_M x SUB_N sub-tiles of 4 x 4 accumulators in registers (8 x 8 for the
//     large tile). Per k a thread reads SUB_M + SUB_N float4 from shared memory and does
//     16 * SUB_M * SUB_N FMAs; lanes that read the same float4 are served by one broadcast. This
//     main loop (stages, fragments, FMAs) and the tile order below are warp_tile.cuh's, shared with
//     the implicit-GEMM convolution (conv.cu); this file adds the strided float4 tile loaders and
//     the alpha/beta epilogue;
//   - tiles are visited in groups of GEMM_GROUP_M block-rows (as Triton's matmul tutorial does) so
//     blocks resident together share rows of A and columns of B in L2; a block walks tiles and
//     batches in grid-stride loops, so no grid dimension ever exceeds its limit;
//   - edge tiles: loads outside the matrix are zero-filled and stores are guarded, so any m, n, k,
//     lda, ldb, ldc, stride works; beta == 0 never reads C; k == 0 or alpha == 0 only scales C
//     (BLAS: A and B are then not read, so their NaNs do not propagate).
//
// Napkin math (128 x 128 x 16 tile, 8 x 8 per thread): per k step a block does 2*128*128*16 =
// 524 kFLOP against 2*128*16*4 B = 16 KiB loaded: 32 FLOP/B, so 60 TFLOP/s needs ~1.9 TB/s from
// L2 (an H100 has well over that). In the inner loop a thread does 64 FMAs per 4 LDS.128; per warp
// that is 64 FMA instructions to ~4 shared-memory wavefronts (A: 8 distinct float4, B: 4), a
// quarter of the shared pipe's rate, so the FMA pipe is the limit. Registers: 64 accumulators +
// 16 fragments + 16 staged words; __launch_bounds__(256, 2) caps them at 128 for 2 blocks per SM.
// H100 SXM FP32 peak (CUDA cores) = 132 SMs * 128 lanes * 2 * 1.98 GHz = 67 TFLOP/s.
//
// Measured speed: not yet measured on a GPU (written and compiled on a machine without one);
// native/dev/gemm.cu times it against cuBLAS SGEMM (variant 5 there).
#include "cuda_kernels.h"
#include "warp_tile.cuh"

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#ifndef GEMM_LARGE_BK
#define GEMM_LARGE_BK 16  // k depth of a 128x128 stage: 2 x 16.5 KiB of shared memory, 1 barrier per 16 k
#endif
#ifndef GEMM_SMALL_BK
#define GEMM_SMALL_BK 16  // k depth of a 64x64 stage: one float4 per thread per operand per step
#endif
#ifndef GEMM_SMEM_PAD
#define GEMM_SMEM_PAD 4  // floats added to each shared row: keeps rows 16-byte aligned for float4
                         // reads and moves the turned-around stores off a single bank
#endif
#ifndef GEMM_GROUP_M
#define GEMM_GROUP_M 8  // block-rows per group of the L2-friendly tile order
#endif

namespace kn::cuda {
namespace {

struct GemmParams {
    int64_t m, n, k;
    float alpha, beta;
    const float* a; int64_t lda, stride_a;
    const float* b; int64_t ldb, stride_b;
    float* c;       int64_t ldc, stride_c;
    int64_t batch_count;
    int64_t tiles_m, tiles_n;  // of the chosen block tile
    bool vec_a, vec_b, vec_c;  // float4 access is aligned for this operand (base, ld and stride)
};

// One operand's tile: X_EXTENT rows of op(A) (or columns of op(B)) by BK along k, staged through
// registers into shared memory stored k-major as [BK][X_EXTENT + GEMM_SMEM_PAD]. K_CONTIGUOUS says
// the operand's global layout is contiguous along k (A untransposed, B transposed); then each thread
// reads 4 consecutive k of one x and stores them down a column of the shared tile. Otherwise it
// reads 4 consecutive x of one k and stores them as one float4.
//
// Chunk l of a thread is chunk tid + l * THREADS, which lies kStepX rows of x (K_CONTIGUOUS) or
// kStepK rows of k (otherwise) after chunk 0; so a thread keeps only a pointer to its chunk 0 and
// two small int bounds, and offsets come from ld (a kernel parameter, read from the constant bank).
// That keeps the main loop within 128 registers: two 256-thread blocks per SM.
template <int X_EXTENT, int BK, int THREADS, bool K_CONTIGUOUS>
struct TileLoader {
    static constexpr int kRow = X_EXTENT + GEMM_SMEM_PAD;  // floats per shared row
    static constexpr int kChunks = X_EXTENT * BK / 4;      // float4 chunks per tile
    static constexpr int kLoads = kChunks / THREADS;        // chunks per thread
    static constexpr int kStepX = THREADS / (BK / 4);       // K_CONTIGUOUS: x rows between chunks
    static constexpr int kStepK = THREADS / (X_EXTENT / 4); // otherwise: k rows between chunks
    static_assert(kChunks % THREADS == 0, "the tile must split evenly into float4 chunks per thread");
    static_assert(X_EXTENT % 4 == 0 && BK % 4 == 0, "tile sides must be multiples of 4");
    static_assert(K_CONTIGUOUS ? THREADS % (BK / 4) == 0 : THREADS % (X_EXTENT / 4) == 0,
                  "a thread's chunks must sit at a fixed offset from each other");

    const float* src;     // this thread's chunk 0 at the current k step
    int x_left;           // valid x from this thread's first x on (clamped, may be <= 0)
    int k_first;          // offset along k of this thread's chunk 0 within the tile
    float4 staged[kLoads];

    // Points at the tile whose first element is (x0, 0).
    __device__ __forceinline__ void start(const float* base, int64_t ld, int64_t x0, int64_t x_size, int tid) {
        int64_t x;
        if (K_CONTIGUOUS) {
            x = x0 + tid / (BK / 4);
            k_first = (tid % (BK / 4)) * 4;
            src = base + x * ld + k_first;
        } else {
            x = x0 + (tid % (X_EXTENT / 4)) * 4;
            k_first = tid / (X_EXTENT / 4);
            src = base + k_first * ld + x;
        }
        const int64_t left = x_size - x;
        x_left = left > (1 << 30) ? (1 << 30) : static_cast<int>(left);
    }

    // Reads the current k step (k_left = k_size - k0 valid k from the tile's first k, clamped);
    // elements outside the matrix read as 0. Pointers are only formed for elements that exist.
    __device__ __forceinline__ void load(int64_t ld, int k_left, bool vec) {
#pragma unroll
        for (int l = 0; l < kLoads; ++l) {
            float4 v = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
            if (K_CONTIGUOUS) {
                const int valid_k = k_left - k_first;  // k of this chunk's 4 that exist
                if (l * kStepX < x_left && valid_k > 0) {
                    const float* p = src + l * kStepX * ld;
                    if (vec && valid_k >= 4) {
                        v = __ldg(reinterpret_cast<const float4*>(p));
                    } else {
                        v.x = __ldg(p);
                        if (valid_k > 1) v.y = __ldg(p + 1);
                        if (valid_k > 2) v.z = __ldg(p + 2);
                        if (valid_k > 3) v.w = __ldg(p + 3);
                    }
                }
            } else {
                if (k_first + l * kStepK < k_left && x_left > 0) {
                    const float* p = src + l * kStepK * ld;
                    if (vec && x_left >= 4) {
                        v = __ldg(reinterpret_cast<const float4*>(p));
                    } else {
                        v.x = __ldg(p);
                        if (x_left > 1) v.y = __ldg(p + 1);
                        if (x_left > 2) v.z = __ldg(p + 2);
                        if (x_left > 3) v.w = __ldg(p + 3);
                    }
                }
            }
            staged[l] = v;
        }
    }

    __device__ __forceinline__ void advance(int64_t ld) { src += K_CONTIGUOUS ? int64_t{BK} : BK * ld; }

    __device__ __forceinline__ void store(float* tile, int tid) const {
#pragma unroll
        for (int l = 0; l < kLoads; ++l) {
            const int chunk = tid + l * THREADS;
            const float4 v = staged[l];
            if (K_CONTIGUOUS) {
                const int x = chunk / (BK / 4);
                const int kq = (chunk % (BK / 4)) * 4;
                tile[(kq + 0) * kRow + x] = v.x;
                tile[(kq + 1) * kRow + x] = v.y;
                tile[(kq + 2) * kRow + x] = v.z;
                tile[(kq + 3) * kRow + x] = v.w;
            } else {
                const int kr = chunk / (X_EXTENT / 4);
                const int xq = (chunk % (X_EXTENT / 4)) * 4;
                *reinterpret_cast<float4*>(tile + kr * kRow + xq) = v;
            }
        }
    }
};

__device__ __forceinline__ int clamp_to_int(int64_t v) {
    return v > (1 << 30) ? (1 << 30) : static_cast<int>(v);
}

// The block tile is (WARPS_M * 32 * SUB_M) x (WARPS_N * 16 * SUB_N); its main loop is warp_tile.cuh's.
template <int WARPS_M, int WARPS_N, int SUB_M, int SUB_N, int BK, int MIN_BLOCKS, bool TRANS_A, bool TRANS_B>
__global__ void __launch_bounds__(WARPS_M * WARPS_N * 32, MIN_BLOCKS)
gemm_warp_tiled_kernel(const GemmParams p) {
    using Tile = WarpTile<WARPS_M, WARPS_N, SUB_M, SUB_N, BK, GEMM_SMEM_PAD>;
    constexpr int BM = Tile::BM, BN = Tile::BN;
    using LoaderA = TileLoader<BM, BK, Tile::kThreads, !TRANS_A>;  // A stored m x k is contiguous along k
    using LoaderB = TileLoader<BN, BK, Tile::kThreads, TRANS_B>;   // B stored n x k is contiguous along k

    __shared__ __align__(16) float a_stages[2][BK * Tile::kRowA];
    __shared__ __align__(16) float b_stages[2][BK * Tile::kRowB];

    const int tid = threadIdx.x;
    const Tile tile(tid);
    const int64_t k_steps = (p.k + BK - 1) / BK;
    const int64_t work = p.tiles_m * p.tiles_n * p.batch_count;

    for (int64_t t = blockIdx.x; t < work; t += gridDim.x) {
        float acc[Tile::TM][Tile::TN];
        Tile::zero(acc);
        LoaderA load_a;
        LoaderB load_b;
        {
            const auto o = grouped_tile<BM, BN, GEMM_GROUP_M, int64_t>(t, p.tiles_m, p.tiles_n);
            load_a.start(p.a + o.problem * p.stride_a, p.lda, o.m0, p.m, tid);
            load_b.start(p.b + o.problem * p.stride_b, p.ldb, o.n0, p.n, tid);
        }
        tile.template multiply<false>(  // k >= 1: launch_gemm handles k == 0 without this kernel
            k_steps, a_stages, b_stages, acc,
            [&](int64_t step) {
                const int k_left = clamp_to_int(p.k - step * BK);
                if (step > 0) {  // the loaders point at the previous step
                    load_a.advance(p.lda);
                    load_b.advance(p.ldb);
                }
                load_a.load(p.lda, k_left, p.vec_a);
                load_b.load(p.ldb, k_left, p.vec_b);
            },
            [&](float* a_stage, float* b_stage) {
                load_a.store(a_stage, tid);
                load_b.store(b_stage, tid);
            });

        // Epilogue. The tile's origin is derived again from t rather than kept in registers
        // through the k loop (the empty asm hides that t is unchanged, so the compiler cannot reuse
        // the values from before the loop): that frees six registers where they are scarcest.
        int64_t t_again = t;
        asm volatile("" : "+l"(t_again));
        const auto o = grouped_tile<BM, BN, GEMM_GROUP_M, int64_t>(t_again, p.tiles_m, p.tiles_n);
        // Accumulator (i, j) is C[o.m0 + tile.row(i), o.n0 + tile.col(j)]; a lane's columns come in
        // runs of 4 (j = 4s .. 4s + 3), stored as one float4 where alignment allows.
        const int rows_left = clamp_to_int(p.m - o.m0);
        const int cols_left = clamp_to_int(p.n - o.n0);
        float* c_tile = p.c + o.problem * p.stride_c + o.m0 * p.ldc + o.n0;
#pragma unroll
        for (int i = 0; i < Tile::TM; ++i) {
            const int row = tile.row(i);
            if (row >= rows_left) continue;
            float* c_row = c_tile + row * p.ldc;
#pragma unroll
            for (int s = 0; s < SUB_N; ++s) {
                const int col = tile.col(s * 4);
                float v[4];
#pragma unroll
                for (int j = 0; j < 4; ++j) v[j] = p.alpha * acc[i][s * 4 + j];
                if (p.vec_c && col + 3 < cols_left) {
                    float4* dst = reinterpret_cast<float4*>(c_row + col);
                    if (p.beta != 0.0f) {
                        const float4 old = *dst;
                        v[0] += p.beta * old.x; v[1] += p.beta * old.y;
                        v[2] += p.beta * old.z; v[3] += p.beta * old.w;
                    }
                    *dst = make_float4(v[0], v[1], v[2], v[3]);
                } else {
#pragma unroll
                    for (int j = 0; j < 4; ++j) {
                        if (col + j < cols_left) {
                            float* dst = c_row + col + j;
                            *dst = p.beta != 0.0f ? v[j] + p.beta * *dst : v[j];
                        }
                    }
                }
            }
        }
    }
}

// C = beta * C (k == 0 or alpha == 0). beta == 0 writes zeros without reading C.
__global__ void gemm_scale_c_kernel(float* c, int64_t m, int64_t n, int64_t ldc, int64_t stride_c,
                                    int64_t batch_count, float beta) {
    const int64_t count = m * n;
    for (int64_t batch = blockIdx.z; batch < batch_count; batch += gridDim.z) {
        float* C = c + batch * stride_c;
        for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < count;
             i += int64_t{gridDim.x} * blockDim.x) {
            float* dst = C + (i / n) * ldc + i % n;
            *dst = beta != 0.0f ? beta * *dst : 0.0f;
        }
    }
}

bool float4_aligned(const void* base, int64_t ld, int64_t stride, int64_t batch_count) {
    return reinterpret_cast<uintptr_t>(base) % 16 == 0 && ld % 4 == 0 && (batch_count == 1 || stride % 4 == 0);
}

template <int WARPS_M, int WARPS_N, int SUB_M, int SUB_N, int BK, int MIN_BLOCKS>
struct GemmConfig {
    static constexpr int kThreads = WARPS_M * WARPS_N * 32;
    static constexpr int BM = WARPS_M * 32 * SUB_M;
    static constexpr int BN = WARPS_N * 16 * SUB_N;

    static cudaError_t launch(GemmParams p, bool trans_a, bool trans_b, const LaunchContext& ctx) {
        p.tiles_m = (p.m + BM - 1) / BM;
        p.tiles_n = (p.n + BN - 1) / BN;
        // One block per tile of every matrix; beyond 2^31 - 1 blocks the kernel's grid-stride loop
        // takes the rest.
        const int64_t work = p.tiles_m * p.tiles_n * p.batch_count;
        const dim3 grid(static_cast<unsigned>(std::min<int64_t>(work, 0x7fffffff)));
        if (!trans_a && !trans_b)
            gemm_warp_tiled_kernel<WARPS_M, WARPS_N, SUB_M, SUB_N, BK, MIN_BLOCKS, false, false><<<grid, kThreads, 0, ctx.stream>>>(p);
        else if (!trans_a && trans_b)
            gemm_warp_tiled_kernel<WARPS_M, WARPS_N, SUB_M, SUB_N, BK, MIN_BLOCKS, false, true><<<grid, kThreads, 0, ctx.stream>>>(p);
        else if (trans_a && !trans_b)
            gemm_warp_tiled_kernel<WARPS_M, WARPS_N, SUB_M, SUB_N, BK, MIN_BLOCKS, true, false><<<grid, kThreads, 0, ctx.stream>>>(p);
        else
            gemm_warp_tiled_kernel<WARPS_M, WARPS_N, SUB_M, SUB_N, BK, MIN_BLOCKS, true, true><<<grid, kThreads, 0, ctx.stream>>>(p);
        return cudaGetLastError();
    }
};

// 128 x 128 tiles, 8 x 8 per thread, 2 blocks per SM: the large-problem kernel.
using GemmLarge = GemmConfig<2, 4, 2, 2, GEMM_LARGE_BK, 2>;
// 64 x 64 tiles, 4 x 4 per thread: four times the blocks, for problems that would leave SMs idle.
using GemmSmall = GemmConfig<2, 4, 1, 1, GEMM_SMALL_BK, 4>;

}  // namespace

cudaError_t gemm_f32(const GemmArgs& args, const LaunchContext& ctx) {
    GemmParams p{};
    p.m = args.m; p.n = args.n; p.k = args.k;
    p.alpha = args.alpha; p.beta = args.beta;
    p.a = static_cast<const float*>(args.a); p.lda = args.lda; p.stride_a = args.stride_a;
    p.b = static_cast<const float*>(args.b); p.ldb = args.ldb; p.stride_b = args.stride_b;
    p.c = static_cast<float*>(args.c);       p.ldc = args.ldc; p.stride_c = args.stride_c;
    p.batch_count = args.batch_count;
    p.vec_a = float4_aligned(p.a, p.lda, p.stride_a, p.batch_count);
    p.vec_b = float4_aligned(p.b, p.ldb, p.stride_b, p.batch_count);
    p.vec_c = float4_aligned(p.c, p.ldc, p.stride_c, p.batch_count);

    if (p.k == 0 || p.alpha == 0.0f) {
        const int threads = 256;
        const int64_t blocks = std::min<int64_t>((p.m * p.n + threads - 1) / threads, int64_t{ctx.sm_count} * 16);
        const dim3 grid(static_cast<unsigned>(std::max<int64_t>(blocks, 1)), 1,
                        static_cast<unsigned>(std::min<int64_t>(p.batch_count, 65535)));
        gemm_scale_c_kernel<<<grid, threads, 0, ctx.stream>>>(p.c, p.m, p.n, p.ldc, p.stride_c, p.batch_count, p.beta);
        return cudaGetLastError();
    }

    // The large tile when it still gives every SM at least one block; otherwise the small one,
    // which makes four times as many blocks (a 1024^2 C is 64 large tiles but 256 small ones).
    const int64_t large_blocks = ((p.m + GemmLarge::BM - 1) / GemmLarge::BM) *
                                 ((p.n + GemmLarge::BN - 1) / GemmLarge::BN) * p.batch_count;
    if (large_blocks >= ctx.sm_count)
        return GemmLarge::launch(p, args.trans_a, args.trans_b, ctx);
    return GemmSmall::launch(p, args.trans_a, args.trans_b, ctx);
}

// kn_linear_f32: the GEMM, then bias and activation in one pass over y (an activation alone: the
// unary launcher). One more pass over y than the CPU's epilogue inside the GEMM.
cudaError_t linear_f32(const LinearArgs& args, const LaunchContext& ctx) {
    if (cudaError_t e = gemm_f32(args.gemm, ctx); e != cudaSuccess) return e;
    const GemmArgs& g = args.gemm;
    float* y = static_cast<float*>(g.c);
    if (args.bias)  // the identity as SCALE by 1, exact
        return bias_unary_f32(y, static_cast<const float*>(args.bias), g.m, g.n, args.activate ? args.activation : KN_UNARY_SCALE,
                              args.activate ? args.alpha : 1.0f, ctx);
    if (args.activate) return unary_f32({args.activation, args.alpha, y, y, g.m * g.n}, ctx);
    return cudaSuccess;
}

// kn_linear_backward_f32: the activation's backward, then the column sums of dz with the reduction.
cudaError_t linear_backward_f32(const LinearBackwardArgs& args, const LaunchContext& ctx) {
    if (cudaError_t e = unary_backward_f32({args.activation, args.alpha, args.x, args.y, args.dy, args.dz, args.m * args.n}, ctx);
        e != cudaSuccess)
        return e;
    if (args.dbias) {
        return reduce_f32({KN_REDUCE_SUM, args.dz, args.dbias, 1, args.m, args.n}, ctx);
    }
    return cudaSuccess;
}

}  // namespace kn::cuda
