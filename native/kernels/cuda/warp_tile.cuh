// warp_tile.cuh: the register-blocked warp-tile main loop shared by the CUDA GEMM (gemm.cu) and the
// implicit-GEMM convolution (conv.cu). The two differ only in how they fetch operand tiles (GEMM
// reads strided matrices with float4 loads; the convolution gathers through im2col index math) and
// in their epilogues; the multiplication of the staged tiles is this one piece of code.
//
// Technique (CUTLASS's SIMT path, siboehm's "warptiling"): a block of WARPS_M x WARPS_N warps owns a
// BM x BN tile of C and walks the reduction in steps of BK. Both operand tiles sit in shared memory
// k-major ([BK][BM + PAD] and [BK][BN + PAD]) in two stages (double buffering): the caller's loaders
// fetch step s + 1 from global memory into registers while step s is multiplied, then store it into
// the other stage, so each step needs one __syncthreads. Each warp owns a (32 SUB_M) x (16 SUB_N)
// part of the block tile; its 32 lanes form an 8 x 4 grid and each keeps SUB_M x SUB_N sub-tiles of
// 4 x 4 accumulators. Per k a lane reads SUB_M + SUB_N float4 from shared memory (lanes reading the
// same float4 are served by one broadcast) and does 16 SUB_M SUB_N FMAs: for 8 x 8 per thread that
// is 64 FMAs per 4 LDS.128, so the FMA pipe, not shared memory, is the limit.
//
// Also here: the grouped tile order both kernels walk (Triton's matmul tutorial), so blocks that
// run together share rows of A and columns of B in L2.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace kn::cuda {

template <int WARPS_M, int WARPS_N, int SUB_M, int SUB_N, int BK, int SMEM_PAD>
struct WarpTile {
    static constexpr int kThreads = WARPS_M * WARPS_N * 32;
    static constexpr int kWarpM = 32 * SUB_M;  // rows per warp: 8 lane-rows x 4 rows x SUB_M
    static constexpr int kWarpN = 16 * SUB_N;  // columns per warp: 4 lane-columns x 4 x SUB_N
    static constexpr int BM = WARPS_M * kWarpM;
    static constexpr int BN = WARPS_N * kWarpN;
    static constexpr int kRowA = BM + SMEM_PAD;  // floats per shared row; the pad keeps rows 16-byte aligned
    static constexpr int kRowB = BN + SMEM_PAD;
    static constexpr int TM = 4 * SUB_M, TN = 4 * SUB_N;  // accumulators per thread
    static_assert(SMEM_PAD % 4 == 0, "shared rows must stay 16-byte aligned for the float4 reads");

    int warp_row0, warp_col0;  // this warp's first row and column in the block tile
    int thread_row;            // 0..7: lanes 4r..4r+3 share A fragments (one broadcast)
    int thread_col;            // 0..3

    __device__ __forceinline__ explicit WarpTile(int tid) {
        const int warp = tid / 32, lane = tid % 32;
        warp_row0 = (warp / WARPS_N) * kWarpM;
        warp_col0 = (warp % WARPS_N) * kWarpN;
        thread_row = lane / 4;
        thread_col = lane % 4;
    }

    // Accumulator acc[i][j] holds the block tile's element (row(i), col(j)).
    __device__ __forceinline__ int row(int i) const { return warp_row0 + (i / 4) * 32 + thread_row * 4 + (i % 4); }
    __device__ __forceinline__ int col(int j) const { return warp_col0 + (j / 4) * 16 + thread_col * 4 + (j % 4); }

    static __device__ __forceinline__ void zero(float (&acc)[TM][TN]) {
#pragma unroll
        for (int i = 0; i < TM; ++i)
#pragma unroll
            for (int j = 0; j < TN; ++j) acc[i][j] = 0.0f;
    }

    // acc += the product of `steps` steps of BK along the reduction, through the two shared stages
    // a_stages and b_stages. load(step) fetches that step's operand tiles into the loaders' registers
    // (steps 0, 1, ... in order; step 0 before the loop); store(a_stage, b_stage) writes what load
    // fetched into one stage. MAY_BE_EMPTY: steps may be 0 (then nothing is loaded and acc is left as
    // it is); without it steps >= 1 is the caller's promise and the test is left out. Ends with a
    // barrier, so the stages may be rewritten at once.
    // The code the kernels had before this header was shared is kept as it was where ptxas cares:
    // the kernels zero acc before starting their loaders, declare the stages as two __shared__
    // arrays (one struct of both moved spills), and the GEMM, whose k is never 0, skips the test
    // (at the 128-register cap of its 128 x 128 tile the extra branch cost spills).
    template <bool MAY_BE_EMPTY, class Step, class Load, class Store>
    __device__ __forceinline__ void multiply(Step steps, float (&a_stages)[2][BK * kRowA],
                                             float (&b_stages)[2][BK * kRowB], float (&acc)[TM][TN], Load&& load,
                                             Store&& store) const {
        if (!MAY_BE_EMPTY || steps > 0) {
            load(Step{0});
            store(a_stages[0], b_stages[0]);
        }
        __syncthreads();

        for (Step step = 0; step < steps; ++step) {
            const int stage = static_cast<int>(step & 1);
            const bool has_next = step + 1 < steps;
            if (has_next) load(step + 1);  // the next step's global loads are in flight during the FMAs
            const float* as = a_stages[stage] + warp_row0 + thread_row * 4;
            const float* bs = b_stages[stage] + warp_col0 + thread_col * 4;
#pragma unroll
            for (int kk = 0; kk < BK; ++kk) {
                float a_frag[TM], b_frag[TN];
#pragma unroll
                for (int s = 0; s < SUB_M; ++s) {
                    const float4 v = *reinterpret_cast<const float4*>(as + kk * kRowA + s * 32);
                    a_frag[s * 4 + 0] = v.x; a_frag[s * 4 + 1] = v.y;
                    a_frag[s * 4 + 2] = v.z; a_frag[s * 4 + 3] = v.w;
                }
#pragma unroll
                for (int s = 0; s < SUB_N; ++s) {
                    const float4 v = *reinterpret_cast<const float4*>(bs + kk * kRowB + s * 16);
                    b_frag[s * 4 + 0] = v.x; b_frag[s * 4 + 1] = v.y;
                    b_frag[s * 4 + 2] = v.z; b_frag[s * 4 + 3] = v.w;
                }
#pragma unroll
                for (int i = 0; i < TM; ++i)
#pragma unroll
                    for (int j = 0; j < TN; ++j) acc[i][j] = fmaf(a_frag[i], b_frag[j], acc[i][j]);
            }
            if (has_next) store(a_stages[stage ^ 1], b_stages[stage ^ 1]);  // last read before the previous barrier
            __syncthreads();
        }
    }
};

template <typename Index>
struct GroupedTile {
    Index problem, m0, n0;  // which matrix (batch entry, group, ...), and the tile's first row and column
};

// Work item t (a tile of one of several equal-shaped problems) -> its origin. Within a problem, tiles
// go in groups of GROUP_M block-rows, walking down each column of tiles of the group before moving
// right, so blocks that run at the same time share a few block-rows of A and block-columns of B in L2.
// Index: int64_t (GEMM), or int where every index fits (the implicit-GEMM convolution).
template <int BM, int BN, int GROUP_M, typename Index>
__device__ __forceinline__ GroupedTile<Index> grouped_tile(int64_t t, int64_t tiles_m, int64_t tiles_n) {
    const int64_t tiles = tiles_m * tiles_n;
    GroupedTile<Index> o;
    o.problem = static_cast<Index>(t / tiles);
    const int64_t tile = t - o.problem * tiles;
    const int64_t group_span = int64_t{GROUP_M} * tiles_n;
    const int64_t group = tile / group_span;
    const int64_t first_tile_m = group * GROUP_M;
    const int64_t rows_in_group = tiles_m - first_tile_m;
    const int64_t group_rows = rows_in_group < GROUP_M ? rows_in_group : int64_t{GROUP_M};
    const int64_t in_group = tile - group * group_span;
    o.m0 = static_cast<Index>((first_tile_m + in_group % group_rows) * BM);
    o.n0 = static_cast<Index>((in_group / group_rows) * BN);
    return o;
}

}  // namespace kn::cuda
