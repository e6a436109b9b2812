// conv.cu: 2-D convolution over NCHW float32 tensors with groups, stride, padding and dilation:
// forward with optional bias (kn_conv2d_f32), the gradient with respect to the input
// (kn_conv2d_backward_data_f32) and with respect to the weights and bias
// (kn_conv2d_backward_weights_f32). Plain FP32 on CUDA cores, no tensor cores, no TF32.
//
// Technique: every pass is a GEMM whose operands are gathered from the tensors on the fly (implicit
// GEMM: no im2col buffer is ever materialised). Per group g, with K = in_channels/groups * kh * kw:
//   forward:          y[oc, (n, oh, ow)]  = w[oc, (ic, kh, kw)]  x  im2col(x)[(ic, kh, kw), (n, oh, ow)]
//   backward-data:    dx[ic, (n, ih, iw)] = w^T[ic, (oc, kh, kw)] x  dy gathered at [(oc, kh, kw), (n, ih, iw)]
//   backward-weights: dw[oc, (ic, kh, kw)] = dy[oc, (n, oh, ow)] x  im2col(x)^T[(n, oh, ow), (ic, kh, kw)]
// One kernel template runs all three (conv_gemm_kernel): a block of 256 threads owns a BM x BN tile
// of the GEMM's output and walks the reduction in steps of CONV_BK; per step each thread gathers a
// few elements of both operand tiles (the padding, stride and dilation arithmetic happens here; a
// tap that falls into the padding reads as 0) into registers and stores them k-major into shared
// memory; two shared stages (double buffering) let the next step's global loads overlap this step's
// FMAs with one barrier per step. The math is the warp tiling of kernels/cuda/gemm.cu, from the same
// header (warp_tile.cuh): each warp owns a (32 SUB_M) x (16 SUB_N) part of the tile, each thread
// SUB_M x SUB_N sub-tiles of 4 x 4 accumulators read from shared memory as float4 (8 x 8 per thread
// for the 128 x 128 tile); this file adds the gathering tile loaders and the epilogues.
//   - Gathers go where memory is contiguous: consecutive threads take consecutive output columns
//     (n, oh, ow) of im2col(x) and of dy, so a warp reads runs of x or dy rows; the weights, which
//     are contiguous along (ic, kh, kw), are read with consecutive threads along k. Index
//     decompositions (n -> image, row, column; k -> channel, tap) use multiply-shift division
//     (fast_divmod.cuh), computed once per thread and tile where they do not depend on k.
//   - backward-data gathers rather than scatters, so it is deterministic without atomics. With
//     stride s > 1 an input pixel (ih, iw) only receives taps kh with (ih + pad - kh dil) divisible by
//     s, which depends only on ih mod s: the input is split into s_h x s_w residue classes, each a
//     GEMM whose reduction holds only the taps that reach it (an arithmetic progression of kh with
//     step s / gcd(s, dil)), so no FMA is spent on the zeros a strided dy would insert.
//   - backward-weights reduces over (n, oh, ow), which is huge while dw is small: the reduction is
//     split into a fixed number of chunks (split-K), each block writes its partial tile into scratch,
//     and a second kernel adds the partials in a fixed order: deterministic, no float atomics.
//   - the bias gradient is a per-channel block reduction of dy, split the same way.
//   - depthwise and narrow grouped convolutions (fewer than 8 output or input channels per group),
//     where a 64-wide GEMM tile would be mostly empty, use direct kernels instead: one thread per
//     output (forward) or per input (backward-data), and block reductions over (n, oh, ow) for up to
//     CONV_TAP_GROUP taps at a time (backward-weights). The direct kernels also take shapes whose
//     indices do not fit in int32 (int64 arithmetic).
//
// Napkin math (forward, batch 32, 64 -> 64 channels, 56 x 56, 3 x 3, pad 1): M = 64, N = 100352,
// K = 576: 2 M N K = 7.4 GFLOP against 25.7 MB of x + 25.7 MB of y: ~140 FLOP/B, compute-bound.
// Per 8-deep step a 128 x 128 block does 262 kFLOP and gathers 2 x 1024 elements (8 per thread),
// each ~15 integer instructions: ~120 per 512 FMAs a thread issues, so the gathers cost ~20% of
// issue slots on top of the 67 TFLOP/s FP32 peak of an H100 SXM (132 SMs x 128 lanes x 2 x 1.98 GHz).
// Registers: 64 accumulators + 16 fragments + 8 staged values + ~12 of gather state, capped at 128
// by __launch_bounds__(256, 2). Shared memory: 2 x 8 x 132 x 2 x 4 B = 16.5 KiB per block.
//
// Measured speed: not yet run on a GPU (written and compiled with nvcc 11.8 on a machine without
// one; its index arithmetic, barriers and edge tiles were run on the CPU by native/dev/emulator).
// native/dev/conv.cu times every path against cuDNN (native/dev/conv_cudnn.py).
#include "cuda_kernels.h"
#include "fast_divmod.cuh"
#include "warp_tile.cuh"

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#ifndef CONV_BK
#define CONV_BK 8  // reduction depth of one shared-memory stage (2 stages x (BM + BN + 8) x 8 x 4 B)
#endif
#ifndef CONV_SMEM_PAD
#define CONV_SMEM_PAD 4  // floats added to each shared row: rows stay 16-byte aligned for float4 reads
#endif
#ifndef CONV_GROUP_M
#define CONV_GROUP_M 8  // block-rows per group of the L2-friendly tile order (as in gemm.cu)
#endif
#ifndef CONV_DIRECT_MIN_CHANNELS
#define CONV_DIRECT_MIN_CHANNELS 8  // fewer GEMM rows (channels per group) than this: direct kernels
#endif
#ifndef CONV_TAP_GROUP
#define CONV_TAP_GROUP 9  // direct backward-weights: taps accumulated per pass over dy (3 x 3 in one)
#endif
#ifndef CONV_SPLIT_MIN_STEPS
#define CONV_SPLIT_MIN_STEPS 16  // backward-weights split-K: at least this many CONV_BK steps per chunk
#endif
#ifndef CONV_REDUCE_CHUNK_MIN
#define CONV_REDUCE_CHUNK_MIN 4096  // direct / bias reductions: at least this many (n, oh, ow) per block
#endif
#ifndef CONV_SCRATCH_MAX_FLOATS
#define CONV_SCRATCH_MAX_FLOATS (4 << 20)  // 16 MiB of split-K partials at most
#endif

namespace kn::cuda {
namespace {

constexpr int kThreads = 256;  // every kernel of this file
constexpr int BK = CONV_BK;
static_assert(kThreads % BK == 0, "CONV_BK must divide the block size");

// ---- Shapes ---------------------------------------------------------------------------------------

// The geometry with its derived sizes, in int64 (host side).
struct Sizes {
    int64_t batch, C, H, W, OC, KH, KW, sh, sw, ph, pw, dh, dw, G, OH, OW;
    int64_t ICg, OCg, HW, OHW, KHW;
    int64_t x_n, y_n, w_n;
};

Sizes sizes_of(const Conv2dGeometry& g) {
    Sizes s{g.batch, g.in_channels, g.in_height, g.in_width, g.out_channels, g.kernel_height, g.kernel_width,
            g.stride_height, g.stride_width, g.pad_height, g.pad_width, g.dilation_height, g.dilation_width,
            g.groups, g.out_height, g.out_width, 0, 0, 0, 0, 0, 0, 0, 0};
    s.ICg = s.C / s.G;
    s.OCg = s.OC / s.G;
    s.HW = s.H * s.W;
    s.OHW = s.OH * s.OW;
    s.KHW = s.KH * s.KW;
    s.x_n = s.batch * s.C * s.HW;
    s.y_n = s.batch * s.OC * s.OHW;
    s.w_n = s.OC * s.ICg * s.KHW;
    return s;
}

// Every index, offset and intermediate coordinate of the int32 kernels fits: element counts bound
// all offsets, the padded extents bound every input coordinate a tap can reach.
bool fits_int32(const Sizes& s) {
    const int64_t largest = std::max({s.x_n, s.y_n, s.w_n, s.H + 2 * s.ph + s.sh, s.W + 2 * s.pw + s.sw,
                                      s.dh * s.KH + s.ph, s.dw * s.KW + s.pw});
    return largest < kInt32IndexLimit;
}

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

unsigned grid_size(int64_t blocks) { return static_cast<unsigned>(std::max<int64_t>(1, std::min<int64_t>(blocks, 0x7fffffff))); }

// Grid-stride grids for one thread per element: a few waves of blocks, the loop covers the rest.
unsigned elementwise_grid(int64_t elements, const LaunchContext& ctx) {
    return grid_size(std::min(ceil_div(elements, kThreads), int64_t{std::max(ctx.sm_count, 1)} * 32));
}

// ---- Shared device helpers ------------------------------------------------------------------------

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_down_sync(0xffffffffu, v, offset);
    return v;
}

// out[i] = sum over p < parts of partials[p * count + i], in order p = 0, 1, ...: the second pass of
// every split reduction of this file (fixed order: the same bits on every run).
__global__ void __launch_bounds__(kThreads) conv_fold_partials_kernel(const float* __restrict__ partials, int64_t parts,
                                                                      int64_t count, float* __restrict__ out) {
    for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < count; i += int64_t{gridDim.x} * blockDim.x) {
        float sum = 0.0f;
        for (int64_t p = 0; p < parts; ++p) sum += partials[p * count + i];
        out[i] = sum;
    }
}

cudaError_t launch_fold(const float* partials, int64_t parts, int64_t count, float* out, const LaunchContext& ctx) {
    conv_fold_partials_kernel<<<elementwise_grid(count, ctx), kThreads, 0, ctx.stream>>>(partials, parts, count, out);
    return cudaGetLastError();
}

// ---- Direct kernels -------------------------------------------------------------------------------

template <typename Index>
struct DirectParams {
    Index batch, C, H, W, OC, KH, KW, sh, sw, ph, pw, dh, dw, ICg, OCg, OH, OW, HW, OHW, KHW;
    Divider<Index> div_ow, div_oh, div_oc, div_ocg;  // output index -> (b, oc, oh, ow), oc -> group
    Divider<Index> div_w, div_h, div_c, div_icg;     // input index -> (b, c, ih, iw), c -> (group, ic)
    Divider<Index> div_ohw, div_kw;                  // (b, oh, ow) -> (b, oh * OW + ow); tap -> (kh, kw)
};

template <typename Index>
DirectParams<Index> direct_params(const Sizes& s) {
    DirectParams<Index> p;
    p.batch = Index(s.batch); p.C = Index(s.C); p.H = Index(s.H); p.W = Index(s.W); p.OC = Index(s.OC);
    p.KH = Index(s.KH); p.KW = Index(s.KW); p.sh = Index(s.sh); p.sw = Index(s.sw); p.ph = Index(s.ph);
    p.pw = Index(s.pw); p.dh = Index(s.dh); p.dw = Index(s.dw); p.ICg = Index(s.ICg); p.OCg = Index(s.OCg);
    p.OH = Index(s.OH); p.OW = Index(s.OW); p.HW = Index(s.HW); p.OHW = Index(s.OHW); p.KHW = Index(s.KHW);
    p.div_ow = Divider<Index>(s.OW); p.div_oh = Divider<Index>(s.OH); p.div_oc = Divider<Index>(s.OC);
    p.div_ocg = Divider<Index>(s.OCg);
    p.div_w = Divider<Index>(s.W); p.div_h = Divider<Index>(s.H); p.div_c = Divider<Index>(s.C);
    p.div_icg = Divider<Index>(s.ICg);
    p.div_ohw = Divider<Index>(s.OHW); p.div_kw = Divider<Index>(s.KW);
    return p;
}

// Forward, one thread per output y[b, oc, oh, ow]: the ICg * KH * KW taps straight from global memory
// (x through L1: neighbouring outputs share most of their window). For depthwise convolution this is
// the natural kernel: 2 * KH * KW FLOPs per 8 bytes of y and x each, memory-bound.
template <typename Index>
__global__ void __launch_bounds__(kThreads) conv2d_direct_kernel(const DirectParams<Index> p, const float* __restrict__ x,
                                                                 const float* __restrict__ w,
                                                                 const float* __restrict__ bias, float* __restrict__ y) {
    const int64_t total = int64_t{p.batch} * p.OC * p.OHW;
    for (int64_t e = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; e < total; e += int64_t{gridDim.x} * blockDim.x) {
        const Index i = static_cast<Index>(e);
        Index t, ow, oh, oc, b;
        p.div_ow.divmod(i, t, ow);
        p.div_oh.divmod(t, t, oh);
        p.div_oc.divmod(t, b, oc);
        const Index g = p.div_ocg.div(oc);
        const float* xg = x + (b * p.C + g * p.ICg) * p.HW;
        const float* wo = w + oc * (p.ICg * p.KHW);
        const Index ih0 = oh * p.sh - p.ph, iw0 = ow * p.sw - p.pw;
        float acc = 0.0f;
        for (Index ic = 0; ic < p.ICg; ++ic) {
            const float* xc = xg + ic * p.HW;
            const float* wc = wo + ic * p.KHW;
            for (Index kh = 0; kh < p.KH; ++kh) {
                const Index ih = ih0 + kh * p.dh;
                if (ih < 0 || ih >= p.H) continue;
                for (Index kw = 0; kw < p.KW; ++kw) {
                    const Index iw = iw0 + kw * p.dw;
                    if (iw < 0 || iw >= p.W) continue;
                    acc = fmaf(__ldg(xc + ih * p.W + iw), __ldg(wc + kh * p.KW + kw), acc);
                }
            }
        }
        if (bias) acc += __ldg(bias + oc);
        y[i] = acc;
    }
}

// Backward-data, one thread per input dx[b, c, ih, iw], gathering from every output whose window
// holds it: oh = (ih + pad - kh dil) / stride where that division is exact and in range.
template <typename Index>
__global__ void __launch_bounds__(kThreads) conv2d_direct_backward_data_kernel(const DirectParams<Index> p,
                                                                               const float* __restrict__ dy,
                                                                               const float* __restrict__ w,
                                                                               float* __restrict__ dx) {
    const int64_t total = int64_t{p.batch} * p.C * p.HW;
    for (int64_t e = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; e < total; e += int64_t{gridDim.x} * blockDim.x) {
        const Index i = static_cast<Index>(e);
        Index t, iw, ih, c, b, g, icg;
        p.div_w.divmod(i, t, iw);
        p.div_h.divmod(t, t, ih);
        p.div_c.divmod(t, b, c);
        p.div_icg.divmod(c, g, icg);
        float acc = 0.0f;
        for (Index ocg = 0; ocg < p.OCg; ++ocg) {
            const Index oc = g * p.OCg + ocg;
            const float* dyp = dy + (b * p.OC + oc) * p.OHW;
            const float* wp = w + (oc * p.ICg + icg) * p.KHW;
            for (Index kh = 0; kh < p.KH; ++kh) {
                const Index num_h = ih + p.ph - kh * p.dh;  // = oh * stride when this tap reaches ih
                if (num_h < 0) break;                       // falls with kh
                Index oh = num_h;
                if (p.sh != 1) {
                    oh = num_h / p.sh;
                    if (oh * p.sh != num_h) continue;
                }
                if (oh >= p.OH) continue;
                for (Index kw = 0; kw < p.KW; ++kw) {
                    const Index num_w = iw + p.pw - kw * p.dw;
                    if (num_w < 0) break;
                    Index ow = num_w;
                    if (p.sw != 1) {
                        ow = num_w / p.sw;
                        if (ow * p.sw != num_w) continue;
                    }
                    if (ow >= p.OW) continue;
                    acc = fmaf(__ldg(dyp + oh * p.OW + ow), __ldg(wp + kh * p.KW + kw), acc);
                }
            }
        }
        dx[i] = acc;
    }
}

// Backward-weights without a GEMM: block item = (chunk, oc, ic, tap group), its threads stride over
// the chunk's (b, oh, ow), read dy once per position and accumulate up to CONV_TAP_GROUP taps of
// x. The threads' sums go to shared memory once; then warp w reduces taps w, w + 8, ... (32 lanes
// over 8 columns each, then a shuffle tree): one barrier, and 5 shuffles per tap instead of per
// tap and warp. out is dw when chunks == 1, else partials [chunks][OC][ICg][KH][KW] for
// conv_fold_partials_kernel.
template <typename Index>
__global__ void __launch_bounds__(kThreads) conv2d_direct_backward_weights_kernel(
    const DirectParams<Index> p, const float* __restrict__ x, const float* __restrict__ dy, float* __restrict__ out,
    int64_t chunks, int64_t chunk_len, int64_t tap_groups) {
    __shared__ float thread_sums[CONV_TAP_GROUP][kThreads];
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    const int64_t R = int64_t{p.batch} * p.OHW;
    const int64_t items = chunks * p.OC * p.ICg * tap_groups;
    for (int64_t item = blockIdx.x; item < items; item += gridDim.x) {
        // Tap groups, then channels of one group, vary fastest: blocks that run together share dy.
        const int64_t tg = item % tap_groups;
        int64_t rest = item / tap_groups;
        const Index icg = static_cast<Index>(rest % p.ICg);
        rest /= p.ICg;
        const Index oc = static_cast<Index>(rest % p.OC);
        const int64_t chunk = rest / p.OC;
        const Index g = p.div_ocg.div(oc);
        const Index tap0 = static_cast<Index>(tg * CONV_TAP_GROUP);
        const int taps = p.KHW - tap0 < CONV_TAP_GROUP ? static_cast<int>(p.KHW - tap0) : CONV_TAP_GROUP;
        Index tap_h[CONV_TAP_GROUP], tap_w[CONV_TAP_GROUP];
#pragma unroll
        for (int t = 0; t < CONV_TAP_GROUP; ++t) {
            Index kh = 0, kw = 0;
            if (t < taps) p.div_kw.divmod(tap0 + t, kh, kw);
            tap_h[t] = kh * p.dh;
            tap_w[t] = kw * p.dw;
        }
        float acc[CONV_TAP_GROUP];
#pragma unroll
        for (int t = 0; t < CONV_TAP_GROUP; ++t) acc[t] = 0.0f;
        const int64_t begin = chunk * chunk_len, end = R - begin < chunk_len ? R : begin + chunk_len;
        for (int64_t r = begin + threadIdx.x; r < end; r += blockDim.x) {
            Index b, s, oh, ow;
            p.div_ohw.divmod(static_cast<Index>(r), b, s);
            p.div_ow.divmod(s, oh, ow);
            const float d = __ldg(dy + (b * p.OC + oc) * p.OHW + s);
            const float* xp = x + (b * p.C + g * p.ICg + icg) * p.HW;
            const Index ih0 = oh * p.sh - p.ph, iw0 = ow * p.sw - p.pw;
#pragma unroll
            for (int t = 0; t < CONV_TAP_GROUP; ++t) {
                if (t >= taps) break;
                const Index ih = ih0 + tap_h[t], iw = iw0 + tap_w[t];
                if (ih >= 0 && ih < p.H && iw >= 0 && iw < p.W) acc[t] = fmaf(d, __ldg(xp + ih * p.W + iw), acc[t]);
            }
        }
#pragma unroll
        for (int t = 0; t < CONV_TAP_GROUP; ++t) thread_sums[t][threadIdx.x] = acc[t];
        __syncthreads();
        for (int t = warp; t < taps; t += kThreads / 32) {  // uniform within a warp: full-warp shuffles
            float v = 0.0f;
            for (int q = lane; q < kThreads; q += 32) v += thread_sums[t][q];
            v = warp_sum(v);
            if (lane == 0) {
                const int64_t w_n = int64_t{p.OC} * p.ICg * p.KHW;
                out[chunk * w_n + (int64_t{oc} * p.ICg + icg) * p.KHW + tap0 + t] = v;
            }
        }
        __syncthreads();  // thread_sums is rewritten by the next item
    }
}

// dbias[oc] = sum of dy[b, oc, :, :] over the batch: block item = (chunk, oc) over a chunk of the
// (b, oh, ow) positions. out is dbias when chunks == 1, else partials [chunks][OC].
template <typename Index>
__global__ void __launch_bounds__(kThreads) conv2d_bias_grad_kernel(const DirectParams<Index> p,
                                                                    const float* __restrict__ dy,
                                                                    float* __restrict__ out, int64_t chunks,
                                                                    int64_t chunk_len) {
    __shared__ float warp_sums[kThreads / 32];
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    const int64_t R = int64_t{p.batch} * p.OHW;
    for (int64_t item = blockIdx.x; item < chunks * p.OC; item += gridDim.x) {
        const Index oc = static_cast<Index>(item % p.OC);
        const int64_t chunk = item / p.OC;
        const int64_t begin = chunk * chunk_len, end = R - begin < chunk_len ? R : begin + chunk_len;
        float acc = 0.0f;
        for (int64_t r = begin + threadIdx.x; r < end; r += blockDim.x) {
            Index b, s;
            p.div_ohw.divmod(static_cast<Index>(r), b, s);
            acc += __ldg(dy + (b * p.OC + oc) * p.OHW + s);
        }
        acc = warp_sum(acc);
        if (lane == 0) warp_sums[warp] = acc;
        __syncthreads();
        if (threadIdx.x == 0) {
            float sum = 0.0f;
            for (int q = 0; q < kThreads / 32; ++q) sum += warp_sums[q];
            out[item] = sum;  // item = chunk * OC + oc
        }
        __syncthreads();
    }
}

// ---- Implicit GEMM --------------------------------------------------------------------------------

// The geometry as int (the implicit GEMM only runs where fits_int32 holds).
struct ConvInts {
    int C, H, W, OC, KH, KW, sh, sw, ph, pw, dh, dw, ICg, OCg, OH, OW, HW, OHW, KHW;
};

ConvInts conv_ints(const Sizes& s) {
    return ConvInts{int(s.C),  int(s.H),  int(s.W),  int(s.OC),  int(s.KH),  int(s.KW), int(s.sh),
                    int(s.sw), int(s.ph), int(s.pw), int(s.dh),  int(s.dw),  int(s.ICg), int(s.OCg),
                    int(s.OH), int(s.OW), int(s.HW), int(s.OHW), int(s.KHW)};
}

// One GEMM problem per z (a group; a group and a split-K chunk for backward-weights).
struct GemmShape {
    int m, n, k;  // k may be 0 (backward-data residue classes that no tap reaches): the tile is zeros
    int tiles_m, tiles_n, problems;
};

// Operand tiles are BK x X (X = BM rows of A or BN columns of B), stored k-major in shared memory as
// [BK][X + CONV_SMEM_PAD]. Two thread-to-element mappings:
//   - "x-fast": consecutive threads take consecutive x at one k; a thread keeps one x (its gather
//     state is computed once per tile) and loads kLoads k values, kThreads / X apart;
//   - "k-fast": consecutive threads take consecutive k at one x; a thread keeps one k offset (its k
//     decomposition is computed once per step) and loads kLoads x values, kThreads / BK apart.
// Either way a warp's shared-memory stores hit 32 different banks.
template <int X>
struct TileMap {
    static constexpr int kRow = X + CONV_SMEM_PAD;
    static constexpr int kLoads = X * BK / kThreads;
    static constexpr int kStepK = kThreads / X;   // x-fast: k rows between a thread's loads
    static constexpr int kStepX = kThreads / BK;  // k-fast: x rows between a thread's loads
    static_assert(kThreads % X == 0 && (X * BK) % kThreads == 0, "tile must split evenly over the threads");

    template <int N>
    static __device__ __forceinline__ void store_x_fast(const float (&v)[N], float* tile, int tid) {
        const int x = tid % X, k = tid / X;
#pragma unroll
        for (int l = 0; l < N; ++l) tile[(k + l * kStepK) * kRow + x] = v[l];
    }
    template <int N>
    static __device__ __forceinline__ void store_k_fast(const float (&v)[N], float* tile, int tid) {
        const int k = tid % BK, x = tid / BK;
#pragma unroll
        for (int l = 0; l < N; ++l) tile[k * kRow + x + l * kStepX] = v[l];
    }
};

// ---- Forward: y[oc, (b, oh, ow)] = w[oc, (ic, kh, kw)] x im2col(x) ----

struct ForwardParams {
    GemmShape s;
    ConvInts c;
    const float* x;
    const float* w;
    const float* bias;
    float* y;
    Divider<int> div_ohw, div_ow, div_khw, div_kw;
};

struct ForwardOp {
    using Params = ForwardParams;

    // A = the group's weights [OCg, K], contiguous along k: k-fast.
    template <int X>
    struct LoaderA {
        using Map = TileMap<X>;
        int row_offset;  // w offset of this thread's first row at k = 0
        int x_left;      // rows of A from this thread's first row to the end
        int k_sub;
        float staged[Map::kLoads];

        __device__ __forceinline__ void start(const Params& p, int z, int x0, int tid) {
            k_sub = tid % BK;
            const int x = x0 + tid / BK;
            x_left = p.s.m - x;
            row_offset = x_left > 0 ? (z * p.c.OCg + x) * p.s.k : 0;
        }
        __device__ __forceinline__ void load(const Params& p, int k0, int k_end, int) {
            const int k = k0 + k_sub;
#pragma unroll
            for (int l = 0; l < Map::kLoads; ++l) {
                float v = 0.0f;
                if (k < k_end && l * Map::kStepX < x_left) v = __ldg(p.w + row_offset + l * Map::kStepX * p.s.k + k);
                staged[l] = v;
            }
        }
        __device__ __forceinline__ void store(float* tile, int tid) const { Map::store_k_fast(staged, tile, tid); }
    };

    // B = im2col(x) [K, batch * OHW], gathered: x-fast (consecutive output pixels).
    template <int X>
    struct LoaderB {
        using Map = TileMap<X>;
        int image;  // x offset of (b, first channel of the group), or -1 past the last column
        int ih0, iw0, k_sub;
        float staged[Map::kLoads];

        __device__ __forceinline__ void start(const Params& p, int z, int x0, int tid) {
            const int n = x0 + tid % X;
            k_sub = tid / X;
            image = -1;
            ih0 = iw0 = 0;
            if (n < p.s.n) {
                int b, s, oh, ow;
                p.div_ohw.divmod(n, b, s);
                p.div_ow.divmod(s, oh, ow);
                image = (b * p.c.C + z * p.c.ICg) * p.c.HW;
                ih0 = oh * p.c.sh - p.c.ph;
                iw0 = ow * p.c.sw - p.c.pw;
            }
        }
        __device__ __forceinline__ void load(const Params& p, int k0, int k_end, int) {
#pragma unroll
            for (int l = 0; l < Map::kLoads; ++l) {
                const int k = k0 + k_sub + l * Map::kStepK;
                float v = 0.0f;
                if (image >= 0 && k < k_end) {
                    int ic, tap, kh, kw;
                    p.div_khw.divmod(k, ic, tap);
                    p.div_kw.divmod(tap, kh, kw);
                    const int ih = ih0 + kh * p.c.dh, iw = iw0 + kw * p.c.dw;
                    if (static_cast<unsigned>(ih) < static_cast<unsigned>(p.c.H) &&
                        static_cast<unsigned>(iw) < static_cast<unsigned>(p.c.W))
                        v = __ldg(p.x + image + ic * p.c.HW + ih * p.c.W + iw);
                }
                staged[l] = v;
            }
        }
        __device__ __forceinline__ void store(float* tile, int tid) const { Map::store_x_fast(staged, tile, tid); }
    };

    static __device__ __forceinline__ void k_range(const Params& p, int, int& begin, int& end) {
        begin = 0;
        end = p.s.k;
    }
    static __device__ __forceinline__ float* output(const Params& p, int) { return p.y; }
    static __device__ __forceinline__ int row_offset(const Params& p, int z, int m) { return (z * p.c.OCg + m) * p.c.OHW; }
    static __device__ __forceinline__ int col_offset(const Params& p, int, int n) {
        int b, s;
        p.div_ohw.divmod(n, b, s);
        return b * p.c.OC * p.c.OHW + s;
    }
    static __device__ __forceinline__ float row_bias(const Params& p, int z, int m) {
        return p.bias ? __ldg(p.bias + z * p.c.OCg + m) : 0.0f;
    }
};

// ---- Backward-data, one stride residue class (rh, rw) per launch ----
// Input rows ih = rh + sh * i (i < Hc) receive exactly the taps kh = kh0 + jh * step_h (jh < cnt_h),
// from output row oh = i + base_h - jh * dq_h; likewise the columns. The GEMM per group:
//   dx[ic, (b, i, j)] = sum over (oc, jh, jw) of w[oc, ic, kh, kw] * dy[b, oc, oh, ow].

struct BackwardDataParams {
    GemmShape s;
    ConvInts c;
    const float* dy;
    const float* w;
    float* dx;
    int rh, rw, kh0, kw0, step_h, step_w, base_h, base_w, dq_h, dq_w;
    Divider<int> div_taps, div_cnt_w, div_class_hw, div_class_w;  // k -> (oc, jh, jw); n -> (b, i, j)
};

struct BackwardDataOp {
    using Params = BackwardDataParams;

    // A = w^T [ICg, (oc, jh, jw)]: k-fast (one k decomposition per step, shared by the thread's rows).
    template <int X>
    struct LoaderA {
        using Map = TileMap<X>;
        int first_ic, x_left, k_sub;
        float staged[Map::kLoads];

        __device__ __forceinline__ void start(const Params& p, int z, int x0, int tid) {
            k_sub = tid % BK;
            first_ic = x0 + tid / BK;
            x_left = p.s.m - first_ic;
        }
        __device__ __forceinline__ void load(const Params& p, int k0, int k_end, int z) {
            const int k = k0 + k_sub;
            int base = 0;
            const bool valid_k = k < k_end && x_left > 0;
            if (valid_k) {
                int oc, j, jh, jw;
                p.div_taps.divmod(k, oc, j);
                p.div_cnt_w.divmod(j, jh, jw);
                const int kh = p.kh0 + jh * p.step_h, kw = p.kw0 + jw * p.step_w;
                base = ((z * p.c.OCg + oc) * p.c.ICg + first_ic) * p.c.KHW + kh * p.c.KW + kw;
            }
#pragma unroll
            for (int l = 0; l < Map::kLoads; ++l) {
                float v = 0.0f;
                if (valid_k && l * Map::kStepX < x_left) v = __ldg(p.w + base + l * Map::kStepX * p.c.KHW);
                staged[l] = v;
            }
        }
        __device__ __forceinline__ void store(float* tile, int tid) const { Map::store_k_fast(staged, tile, tid); }
    };

    // B = dy gathered at [(oc, jh, jw), (b, i, j)]: x-fast (consecutive input columns of the class).
    template <int X>
    struct LoaderB {
        using Map = TileMap<X>;
        int image;  // dy offset of (b, first channel of the group), or -1
        int oh_base, ow_base, k_sub;
        float staged[Map::kLoads];

        __device__ __forceinline__ void start(const Params& p, int z, int x0, int tid) {
            const int n = x0 + tid % X;
            k_sub = tid / X;
            image = -1;
            oh_base = ow_base = 0;
            if (n < p.s.n) {
                int b, s, i, j;
                p.div_class_hw.divmod(n, b, s);
                p.div_class_w.divmod(s, i, j);
                image = (b * p.c.OC + z * p.c.OCg) * p.c.OHW;
                oh_base = i + p.base_h;
                ow_base = j + p.base_w;
            }
        }
        __device__ __forceinline__ void load(const Params& p, int k0, int k_end, int) {
#pragma unroll
            for (int l = 0; l < Map::kLoads; ++l) {
                const int k = k0 + k_sub + l * Map::kStepK;
                float v = 0.0f;
                if (image >= 0 && k < k_end) {
                    int oc, j, jh, jw;
                    p.div_taps.divmod(k, oc, j);
                    p.div_cnt_w.divmod(j, jh, jw);
                    const int oh = oh_base - jh * p.dq_h, ow = ow_base - jw * p.dq_w;
                    if (static_cast<unsigned>(oh) < static_cast<unsigned>(p.c.OH) &&
                        static_cast<unsigned>(ow) < static_cast<unsigned>(p.c.OW))
                        v = __ldg(p.dy + image + oc * p.c.OHW + oh * p.c.OW + ow);
                }
                staged[l] = v;
            }
        }
        __device__ __forceinline__ void store(float* tile, int tid) const { Map::store_x_fast(staged, tile, tid); }
    };

    static __device__ __forceinline__ void k_range(const Params& p, int, int& begin, int& end) {
        begin = 0;
        end = p.s.k;
    }
    static __device__ __forceinline__ float* output(const Params& p, int) { return p.dx; }
    static __device__ __forceinline__ int row_offset(const Params& p, int z, int m) { return (z * p.c.ICg + m) * p.c.HW; }
    static __device__ __forceinline__ int col_offset(const Params& p, int, int n) {
        int b, s, i, j;
        p.div_class_hw.divmod(n, b, s);
        p.div_class_w.divmod(s, i, j);
        return b * p.c.C * p.c.HW + (p.rh + p.c.sh * i) * p.c.W + p.rw + p.c.sw * j;
    }
    static __device__ __forceinline__ float row_bias(const Params&, int, int) { return 0.0f; }
};

// ---- Backward-weights: dw[oc, (ic, kh, kw)] = dy[oc, (b, oh, ow)] x im2col(x)^T, split over (b, oh, ow) ----

struct BackwardWeightsParams {
    GemmShape s;  // k = batch * OHW (the whole reduction); problems = groups * splits
    ConvInts c;
    const float* x;
    const float* dy;
    float* out;   // dw when splits == 1, else partials [splits][OC][ICg * KH * KW]
    int splits, split_len;
    Divider<int> div_ohw, div_ow, div_khw, div_kw;
};

struct BackwardWeightsOp {
    using Params = BackwardWeightsParams;

    // A = dy [OCg, (b, oh, ow)], contiguous along k within an image: k-fast.
    template <int X>
    struct LoaderA {
        using Map = TileMap<X>;
        int first_row;  // (g * OCg + first oc) * OHW
        int x_left, k_sub;
        float staged[Map::kLoads];

        __device__ __forceinline__ void start(const Params& p, int z, int x0, int tid) {
            k_sub = tid % BK;
            const int x = x0 + tid / BK;
            x_left = p.s.m - x;
            first_row = x_left > 0 ? ((z / p.splits) * p.c.OCg + x) * p.c.OHW : 0;
        }
        __device__ __forceinline__ void load(const Params& p, int k0, int k_end, int) {
            const int r = k0 + k_sub;
            int base = 0;
            const bool valid_r = r < k_end && x_left > 0;
            if (valid_r) {
                int b, s;
                p.div_ohw.divmod(r, b, s);
                base = b * p.c.OC * p.c.OHW + first_row + s;
            }
#pragma unroll
            for (int l = 0; l < Map::kLoads; ++l) {
                float v = 0.0f;
                if (valid_r && l * Map::kStepX < x_left) v = __ldg(p.dy + base + l * Map::kStepX * p.c.OHW);
                staged[l] = v;
            }
        }
        __device__ __forceinline__ void store(float* tile, int tid) const { Map::store_k_fast(staged, tile, tid); }
    };

    // B = im2col(x)^T [(b, oh, ow), (ic, kh, kw)]: k-fast (consecutive output pixels read
    // consecutive input pixels); the column decompositions are fixed for the tile.
    template <int X>
    struct LoaderB {
        using Map = TileMap<X>;
        int plane[Map::kLoads];  // (g * ICg + ic) * HW of each of the thread's columns, -1 past the end
        int tap_h[Map::kLoads], tap_w[Map::kLoads];
        int k_sub;
        float staged[Map::kLoads];

        __device__ __forceinline__ void start(const Params& p, int z, int x0, int tid) {
            k_sub = tid % BK;
            const int g = z / p.splits;
#pragma unroll
            for (int l = 0; l < Map::kLoads; ++l) {
                const int n = x0 + tid / BK + l * Map::kStepX;
                plane[l] = -1;
                tap_h[l] = tap_w[l] = 0;
                if (n < p.s.n) {
                    int ic, tap, kh, kw;
                    p.div_khw.divmod(n, ic, tap);
                    p.div_kw.divmod(tap, kh, kw);
                    plane[l] = (g * p.c.ICg + ic) * p.c.HW;
                    tap_h[l] = kh * p.c.dh;
                    tap_w[l] = kw * p.c.dw;
                }
            }
        }
        __device__ __forceinline__ void load(const Params& p, int k0, int k_end, int) {
            const int r = k0 + k_sub;
            int image = 0, ih0 = 0, iw0 = 0;
            if (r < k_end) {
                int b, s, oh, ow;
                p.div_ohw.divmod(r, b, s);
                p.div_ow.divmod(s, oh, ow);
                image = b * p.c.C * p.c.HW;
                ih0 = oh * p.c.sh - p.c.ph;
                iw0 = ow * p.c.sw - p.c.pw;
            }
#pragma unroll
            for (int l = 0; l < Map::kLoads; ++l) {
                float v = 0.0f;
                const int ih = ih0 + tap_h[l], iw = iw0 + tap_w[l];
                if (r < k_end && plane[l] >= 0 && static_cast<unsigned>(ih) < static_cast<unsigned>(p.c.H) &&
                    static_cast<unsigned>(iw) < static_cast<unsigned>(p.c.W))
                    v = __ldg(p.x + image + plane[l] + ih * p.c.W + iw);
                staged[l] = v;
            }
        }
        __device__ __forceinline__ void store(float* tile, int tid) const { Map::store_k_fast(staged, tile, tid); }
    };

    static __device__ __forceinline__ void k_range(const Params& p, int z, int& begin, int& end) {
        const int split = z % p.splits;
        begin = split * p.split_len;
        end = p.s.k - begin < p.split_len ? p.s.k : begin + p.split_len;
    }
    static __device__ __forceinline__ float* output(const Params& p, int z) {
        return p.out + static_cast<int64_t>(z % p.splits) * p.c.OC * p.s.n;
    }
    static __device__ __forceinline__ int row_offset(const Params& p, int z, int m) {
        return ((z / p.splits) * p.c.OCg + m) * p.s.n;
    }
    static __device__ __forceinline__ int col_offset(const Params&, int, int n) { return n; }
    static __device__ __forceinline__ float row_bias(const Params&, int, int) { return 0.0f; }
};

// The implicit GEMM; the block tile is (WARPS_M * 32 * SUB_M) x (WARPS_N * 16 * SUB_N) (file header), its
// main loop warp_tile.cuh's (as for gemm.cu), its tile order gemm.cu's (groups of CONV_GROUP_M block-rows).
template <class Op, int WARPS_M, int WARPS_N, int SUB_M, int SUB_N, int MIN_BLOCKS>
__global__ void __launch_bounds__(WARPS_M * WARPS_N * 32, MIN_BLOCKS) conv_gemm_kernel(const typename Op::Params p) {
    using Tile = WarpTile<WARPS_M, WARPS_N, SUB_M, SUB_N, BK, CONV_SMEM_PAD>;
    static_assert(Tile::kThreads == kThreads, "the loaders assume kThreads threads");
    constexpr int BM = Tile::BM, BN = Tile::BN;
    using LoaderA = typename Op::template LoaderA<BM>;
    using LoaderB = typename Op::template LoaderB<BN>;

    __shared__ __align__(16) float a_stages[2][BK * Tile::kRowA];
    __shared__ __align__(16) float b_stages[2][BK * Tile::kRowB];

    const int tid = threadIdx.x;
    const Tile tile(tid);
    const int64_t work = int64_t{p.s.tiles_m} * p.s.tiles_n * p.s.problems;
    for (int64_t t = blockIdx.x; t < work; t += gridDim.x) {
        const auto o = grouped_tile<BM, BN, CONV_GROUP_M, int>(t, p.s.tiles_m, p.s.tiles_n);
        const int z = o.problem, m0 = o.m0, n0 = o.n0;
        int k_begin, k_end;
        Op::k_range(p, z, k_begin, k_end);
        const int steps = k_end > k_begin ? (k_end - k_begin + BK - 1) / BK : 0;

        float acc[Tile::TM][Tile::TN];
        Tile::zero(acc);
        LoaderA load_a;
        LoaderB load_b;
        load_a.start(p, z, m0, tid);
        load_b.start(p, z, n0, tid);
        tile.template multiply<true>(  // backward-data classes that no tap reaches have k == 0
            steps, a_stages, b_stages, acc,
            [&](int step) {
                const int k0 = k_begin + step * BK;
                load_a.load(p, k0, k_end, z);
                load_b.load(p, k0, k_end, z);
            },
            [&](float* a_stage, float* b_stage) {
                load_a.store(a_stage, tid);
                load_b.store(b_stage, tid);
            });

        // Epilogue: accumulator (i, j) is output (m0 + tile.row(i), n0 + tile.col(j)); its address is a
        // row part plus a column part, the column parts computed once.
        float* out = Op::output(p, z);
        int col_offset[Tile::TN];
#pragma unroll
        for (int j = 0; j < Tile::TN; ++j) {
            const int n = n0 + tile.col(j);
            col_offset[j] = n < p.s.n ? Op::col_offset(p, z, n) : -1;
        }
#pragma unroll
        for (int i = 0; i < Tile::TM; ++i) {
            const int m = m0 + tile.row(i);
            if (m >= p.s.m) continue;
            const int row = Op::row_offset(p, z, m);
            const float bias = Op::row_bias(p, z, m);
#pragma unroll
            for (int j = 0; j < Tile::TN; ++j)
                if (col_offset[j] >= 0) out[row + col_offset[j]] = acc[i][j] + bias;
        }
    }
}

// Block tiles: 1 = 64 x 64 (4 x 4 per thread, 4 blocks per SM), 2 = 64 x 128 (4 x 8), 3 = 128 x 128
// (8 x 8, 2 blocks per SM). All 256 threads as 2 x 4 warps.
template <class Op, int WARPS_M, int WARPS_N, int SUB_M, int SUB_N, int MIN_BLOCKS>
cudaError_t launch_gemm_config(typename Op::Params p, const LaunchContext& ctx) {
    p.s.tiles_m = static_cast<int>(ceil_div(p.s.m, WARPS_M * 32 * SUB_M));
    p.s.tiles_n = static_cast<int>(ceil_div(p.s.n, WARPS_N * 16 * SUB_N));
    const int64_t work = int64_t{p.s.tiles_m} * p.s.tiles_n * p.s.problems;
    conv_gemm_kernel<Op, WARPS_M, WARPS_N, SUB_M, SUB_N, MIN_BLOCKS><<<grid_size(work), kThreads, 0, ctx.stream>>>(p);
    return cudaGetLastError();
}

template <class Op>
cudaError_t launch_gemm_tile(int tile, const typename Op::Params& p, const LaunchContext& ctx) {
    if (tile == 3) return launch_gemm_config<Op, 2, 4, 2, 2, 2>(p, ctx);
    if (tile == 2) return launch_gemm_config<Op, 2, 4, 1, 2, 3>(p, ctx);
    return launch_gemm_config<Op, 2, 4, 1, 1, 4>(p, ctx);
}

// The largest tile that still gives every SM a block; the 128-row tile only when there are more
// than 64 rows (a 64-row problem would waste half of it).
int plan_tile(int64_t m, int64_t n, int64_t problems, const Conv2dOptions& options, const LaunchContext& ctx) {
    if (options.gemm_tile >= 1 && options.gemm_tile <= 3) return options.gemm_tile;
    const int64_t sm = std::max(ctx.sm_count, 1);
    if (m > 64 && ceil_div(m, 128) * ceil_div(n, 128) * problems >= sm) return 3;
    if (ceil_div(m, 64) * ceil_div(n, 128) * problems >= sm) return 2;
    return 1;
}

int tile_rows(int tile) { return tile == 3 ? 128 : 64; }
int tile_cols(int tile) { return tile == 1 ? 64 : 128; }

// ---- Planning -------------------------------------------------------------------------------------

enum class Path { direct32, direct64, gemm };

// The GEMM rows are output channels per group (forward, backward-weights) or input channels per
// group (backward-data); with fewer than CONV_DIRECT_MIN_CHANNELS a 64-row tile is mostly idle.
Path choose_path(const Sizes& s, int64_t gemm_rows, const Conv2dOptions& options) {
    if (!fits_int32(s) || options.wide_index) return Path::direct64;
    switch (options.algorithm) {
        case Conv2dAlgorithm::direct: return Path::direct32;
        case Conv2dAlgorithm::implicit_gemm: return Path::gemm;
        case Conv2dAlgorithm::automatic: break;
    }
    return gemm_rows < CONV_DIRECT_MIN_CHANNELS ? Path::direct32 : Path::gemm;
}

struct BackwardWeightsPlan {
    Path path;
    int tile = 1;
    int64_t weight_chunks = 1, weight_chunk_len = 0;  // split of the (b, oh, ow) reduction for dw
    int64_t tap_groups = 1;                           // direct path
    int64_t bias_chunks = 1, bias_chunk_len = 0;
    int64_t weight_partials_floats = 0, bias_partials_floats = 0;  // scratch: [weights][bias]
};

BackwardWeightsPlan plan_backward_weights(const Conv2dBackwardWeightsArgs& args, const LaunchContext& ctx,
                                          const Conv2dOptions& options) {
    const Sizes s = sizes_of(args.g);
    BackwardWeightsPlan plan;
    plan.path = choose_path(s, s.OCg, options);
    const int64_t R = s.batch * s.OHW;
    const int64_t sm = std::max(ctx.sm_count, 1);
    const int64_t scratch_cap_chunks = std::max<int64_t>(1, CONV_SCRATCH_MAX_FLOATS / std::max<int64_t>(s.w_n, 1));
    int64_t chunks;
    if (plan.path == Path::gemm) {
        const int64_t n = s.ICg * s.KHW;
        plan.tile = plan_tile(s.OCg, n, s.G, options, ctx);
        const int64_t tiles = ceil_div(s.OCg, tile_rows(plan.tile)) * ceil_div(n, tile_cols(plan.tile)) * s.G;
        // Two resident blocks per SM; each chunk at least CONV_SPLIT_MIN_STEPS steps deep.
        chunks = options.split > 0 ? options.split
                                   : std::min({ceil_div(2 * sm, tiles), ceil_div(R, int64_t{BK} * CONV_SPLIT_MIN_STEPS),
                                               scratch_cap_chunks});
        chunks = std::max<int64_t>(1, std::min(chunks, R));
        plan.weight_chunk_len = ceil_div(ceil_div(R, chunks), BK) * BK;  // whole steps per chunk
    } else {
        plan.tap_groups = ceil_div(s.KHW, CONV_TAP_GROUP);
        const int64_t items = s.OC * s.ICg * plan.tap_groups;
        chunks = options.split > 0 ? options.split
                                   : std::min({ceil_div(4 * sm, items), ceil_div(R, int64_t{CONV_REDUCE_CHUNK_MIN}),
                                               scratch_cap_chunks});
        chunks = std::max<int64_t>(1, std::min(chunks, R));
        plan.weight_chunk_len = ceil_div(R, chunks);
    }
    plan.weight_chunks = ceil_div(R, plan.weight_chunk_len);
    if (plan.weight_chunks > 1) plan.weight_partials_floats = ceil_div(plan.weight_chunks * s.w_n, 4) * 4;
    if (args.dbias) {
        int64_t bias_chunks = options.split > 0 ? options.split
                                                : std::min(ceil_div(4 * sm, s.OC), ceil_div(R, int64_t{CONV_REDUCE_CHUNK_MIN}));
        bias_chunks = std::max<int64_t>(1, std::min(bias_chunks, R));
        plan.bias_chunk_len = ceil_div(R, bias_chunks);
        plan.bias_chunks = ceil_div(R, plan.bias_chunk_len);
        if (plan.bias_chunks > 1) plan.bias_partials_floats = plan.bias_chunks * s.OC;
    }
    return plan;
}

template <typename Index>
cudaError_t launch_direct_backward_weights(const Sizes& s, const Conv2dBackwardWeightsArgs& args,
                                           const BackwardWeightsPlan& plan, float* partials, const LaunchContext& ctx) {
    const DirectParams<Index> p = direct_params<Index>(s);
    float* out = plan.weight_chunks > 1 ? partials : static_cast<float*>(args.dw);
    const int64_t items = plan.weight_chunks * s.OC * s.ICg * plan.tap_groups;
    conv2d_direct_backward_weights_kernel<Index><<<grid_size(items), kThreads, 0, ctx.stream>>>(
        p, static_cast<const float*>(args.x), static_cast<const float*>(args.dy), out, plan.weight_chunks,
        plan.weight_chunk_len, plan.tap_groups);
    return cudaGetLastError();
}

template <typename Index>
cudaError_t launch_bias_grad(const Sizes& s, const Conv2dBackwardWeightsArgs& args, const BackwardWeightsPlan& plan,
                             float* partials, const LaunchContext& ctx) {
    const DirectParams<Index> p = direct_params<Index>(s);
    float* out = plan.bias_chunks > 1 ? partials : static_cast<float*>(args.dbias);
    conv2d_bias_grad_kernel<Index><<<grid_size(plan.bias_chunks * s.OC), kThreads, 0, ctx.stream>>>(
        p, static_cast<const float*>(args.dy), out, plan.bias_chunks, plan.bias_chunk_len);
    cudaError_t e = cudaGetLastError();
    if (e == cudaSuccess && plan.bias_chunks > 1)
        e = launch_fold(partials, plan.bias_chunks, s.OC, static_cast<float*>(args.dbias), ctx);
    return e;
}

int gcd(int64_t a, int64_t b) {
    while (b) {
        const int64_t t = a % b;
        a = b;
        b = t;
    }
    return static_cast<int>(a);
}

}  // namespace

cudaError_t conv2d_f32(const Conv2dArgs& args, const LaunchContext& ctx, const Conv2dOptions& options) {
    const Sizes s = sizes_of(args.g);
    const auto* x = static_cast<const float*>(args.x);
    const auto* w = static_cast<const float*>(args.w);
    const auto* bias = static_cast<const float*>(args.bias);
    auto* y = static_cast<float*>(args.y);
    switch (choose_path(s, s.OCg, options)) {
        case Path::direct64:
            conv2d_direct_kernel<int64_t><<<elementwise_grid(s.y_n, ctx), kThreads, 0, ctx.stream>>>(
                direct_params<int64_t>(s), x, w, bias, y);
            return cudaGetLastError();
        case Path::direct32:
            conv2d_direct_kernel<int><<<elementwise_grid(s.y_n, ctx), kThreads, 0, ctx.stream>>>(direct_params<int>(s), x,
                                                                                                 w, bias, y);
            return cudaGetLastError();
        case Path::gemm: break;
    }
    ForwardParams p{};
    p.c = conv_ints(s);
    p.s.m = int(s.OCg);
    p.s.n = int(s.batch * s.OHW);
    p.s.k = int(s.ICg * s.KHW);
    p.s.problems = int(s.G);
    p.x = x;
    p.w = w;
    p.bias = bias;
    p.y = y;
    p.div_ohw = Divider<int>(s.OHW);
    p.div_ow = Divider<int>(s.OW);
    p.div_khw = Divider<int>(s.KHW);
    p.div_kw = Divider<int>(s.KW);
    return launch_gemm_tile<ForwardOp>(plan_tile(p.s.m, p.s.n, p.s.problems, options, ctx), p, ctx);
}

cudaError_t conv2d_backward_data_f32(const Conv2dBackwardDataArgs& args, const LaunchContext& ctx,
                                     const Conv2dOptions& options) {
    const Sizes s = sizes_of(args.g);
    const auto* dy = static_cast<const float*>(args.dy);
    const auto* w = static_cast<const float*>(args.w);
    auto* dx = static_cast<float*>(args.dx);
    switch (choose_path(s, s.ICg, options)) {
        case Path::direct64:
            conv2d_direct_backward_data_kernel<int64_t><<<elementwise_grid(s.x_n, ctx), kThreads, 0, ctx.stream>>>(
                direct_params<int64_t>(s), dy, w, dx);
            return cudaGetLastError();
        case Path::direct32:
            conv2d_direct_backward_data_kernel<int><<<elementwise_grid(s.x_n, ctx), kThreads, 0, ctx.stream>>>(
                direct_params<int>(s), dy, w, dx);
            return cudaGetLastError();
        case Path::gemm: break;
    }
    // One GEMM per stride residue class (rh, rw) (file header); with stride 1 there is one class.
    const int step_h = int(s.sh / gcd(s.sh, s.dh)), step_w = int(s.sw / gcd(s.sw, s.dw));
    for (int64_t rh = 0; rh < std::min(s.sh, s.H); ++rh)
        for (int64_t rw = 0; rw < std::min(s.sw, s.W); ++rw) {
            BackwardDataParams p{};
            p.c = conv_ints(s);
            p.dy = dy;
            p.w = w;
            p.dx = dx;
            p.rh = int(rh);
            p.rw = int(rw);
            p.step_h = step_h;
            p.step_w = step_w;
            // The first tap of each axis that reaches this class: (r + pad - k dil) divisible by stride.
            int64_t kh0 = -1, kw0 = -1;
            for (int64_t kh = 0; kh < std::min(s.KH, int64_t{step_h}) && kh0 < 0; ++kh)
                if ((rh + s.ph - kh * s.dh) % s.sh == 0) kh0 = kh;
            for (int64_t kw = 0; kw < std::min(s.KW, int64_t{step_w}) && kw0 < 0; ++kw)
                if ((rw + s.pw - kw * s.dw) % s.sw == 0) kw0 = kw;
            const int64_t cnt_h = kh0 < 0 ? 0 : (s.KH - 1 - kh0) / step_h + 1;
            const int64_t cnt_w = kw0 < 0 ? 0 : (s.KW - 1 - kw0) / step_w + 1;
            p.kh0 = int(std::max<int64_t>(kh0, 0));
            p.kw0 = int(std::max<int64_t>(kw0, 0));
            p.base_h = int((rh + s.ph - p.kh0 * s.dh) / s.sh);  // exact when cnt_h > 0 (unused otherwise)
            p.base_w = int((rw + s.pw - p.kw0 * s.dw) / s.sw);
            p.dq_h = int(s.dh * step_h / s.sh);
            p.dq_w = int(s.dw * step_w / s.sw);
            const int64_t class_h = ceil_div(s.H - rh, s.sh), class_w = ceil_div(s.W - rw, s.sw);
            p.div_taps = Divider<int>(std::max<int64_t>(cnt_h * cnt_w, 1));
            p.div_cnt_w = Divider<int>(std::max<int64_t>(cnt_w, 1));
            p.div_class_hw = Divider<int>(class_h * class_w);
            p.div_class_w = Divider<int>(class_w);
            p.s.m = int(s.ICg);
            p.s.n = int(s.batch * class_h * class_w);
            p.s.k = int(s.OCg * cnt_h * cnt_w);
            p.s.problems = int(s.G);
            const cudaError_t e =
                launch_gemm_tile<BackwardDataOp>(plan_tile(p.s.m, p.s.n, p.s.problems, options, ctx), p, ctx);
            if (e != cudaSuccess) return e;
        }
    return cudaSuccess;
}

int64_t conv2d_backward_weights_scratch_bytes(const Conv2dBackwardWeightsArgs& args, const LaunchContext& ctx,
                                              const Conv2dOptions& options) {
    const BackwardWeightsPlan plan = plan_backward_weights(args, ctx, options);
    return (plan.weight_partials_floats + plan.bias_partials_floats) * int64_t{sizeof(float)};
}

cudaError_t conv2d_backward_weights_f32(const Conv2dBackwardWeightsArgs& args, const LaunchContext& ctx,
                                        const Conv2dOptions& options) {
    const Sizes s = sizes_of(args.g);
    const BackwardWeightsPlan plan = plan_backward_weights(args, ctx, options);
    const int64_t scratch_bytes = conv2d_backward_weights_scratch_bytes(args, ctx, options);
    void* scratch = ctx.scratch(scratch_bytes);
    if (scratch_bytes > 0 && !scratch) return cudaErrorInvalidValue;
    float* weight_partials = static_cast<float*>(scratch);
    float* bias_partials = weight_partials ? weight_partials + plan.weight_partials_floats : nullptr;
    cudaError_t e = cudaSuccess;
    switch (plan.path) {
        case Path::direct64: e = launch_direct_backward_weights<int64_t>(s, args, plan, weight_partials, ctx); break;
        case Path::direct32: e = launch_direct_backward_weights<int>(s, args, plan, weight_partials, ctx); break;
        case Path::gemm: {
            BackwardWeightsParams p{};
            p.c = conv_ints(s);
            p.x = static_cast<const float*>(args.x);
            p.dy = static_cast<const float*>(args.dy);
            p.out = plan.weight_chunks > 1 ? weight_partials : static_cast<float*>(args.dw);
            p.splits = int(plan.weight_chunks);
            p.split_len = int(plan.weight_chunk_len);
            p.s.m = int(s.OCg);
            p.s.n = int(s.ICg * s.KHW);
            p.s.k = int(s.batch * s.OHW);
            p.s.problems = int(s.G * plan.weight_chunks);
            p.div_ohw = Divider<int>(s.OHW);
            p.div_ow = Divider<int>(s.OW);
            p.div_khw = Divider<int>(s.KHW);
            p.div_kw = Divider<int>(s.KW);
            e = launch_gemm_tile<BackwardWeightsOp>(plan.tile, p, ctx);
            break;
        }
    }
    if (e == cudaSuccess && plan.weight_chunks > 1)
        e = launch_fold(weight_partials, plan.weight_chunks, s.w_n, static_cast<float*>(args.dw), ctx);
    if (e == cudaSuccess && args.dbias)
        e = plan.path == Path::direct64 ? launch_bias_grad<int64_t>(s, args, plan, bias_partials, ctx)
                                        : launch_bias_grad<int>(s, args, plan, bias_partials, ctx);
    return e;
}

}  // namespace kn::cuda
