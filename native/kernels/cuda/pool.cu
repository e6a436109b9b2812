// pool.cu: 2-D max and average pooling over NCHW float32 tensors (kn_pool2d_f32) and their backward
// passes (kn_pool2d_backward_f32), with stride, padding (at most half the kernel) and, for average
// pooling, count_include_pad either way.
//
// Technique: one thread per output for the forward pass; it walks its window clipped to the input
// (padding never takes part: it never wins a maximum and adds nothing to a sum). Consecutive threads
// take consecutive output columns, so a warp reads rows of x strided by the pooling stride, and
// overlapping windows of neighbouring threads meet in L1. Max pooling keeps the first maximum in
// row-major window order and lets NaN win (x > best, or x is NaN and best is not), and records the
// winner's position ih * in_width + iw for the backward pass.
// The backward pass runs one thread per input element, which gathers dy from every window that
// covers it: output rows oh with oh * stride - pad <= ih < oh * stride - pad + kernel, i.e.
// ceil((ih + pad - kernel + 1) / stride) <= oh <= (ih + pad) / stride, likewise the columns. Max
// pooling takes dy where the recorded index is this element, average pooling dy / divisor of each
// window. Each dx element is written once, in a fixed order: deterministic, no atomics (a scatter
// from dy would need float atomics wherever windows overlap).
//
// Napkin math: memory-bound. Forward max 2 x 2 stride 2: reads x once (4 B per input), writes y and
// the int32 index (8 B per output = 2 B per input): ~6 B per input element; at an H100's ~3 TB/s,
// a [32, 64, 112, 112] tensor (103 MB) pools in ~50 us (154 MB moved). Backward reads dy and the
// indices once per covering window (L1/L2 hits when windows overlap) and writes dx once.
// Index decomposition uses multiply-shift division (fast_divmod.cuh); tensors past 2^31 elements
// take the int64 instantiation.
//
// Measured speed: not yet run on a GPU (compiled with nvcc 11.8; run on the CPU by native/dev/emulator).
#include "cuda_kernels.h"
#include "fast_divmod.cuh"

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#ifndef POOL_THREADS
#define POOL_THREADS 256
#endif
#ifndef POOL_BLOCKS_PER_SM
#define POOL_BLOCKS_PER_SM 32  // grid-stride grids: this many blocks per SM at most, the loop covers the rest
#endif

namespace kn::cuda {
namespace {

template <typename Index>
struct PoolParams {
    Index H, W, OH, OW, KH, KW, sh, sw, ph, pw, HW, OHW;
    Divider<Index> div_ow, div_oh;  // forward: output index -> (plane, oh, ow)
    Divider<Index> div_w, div_h;    // backward: input index -> (plane, ih, iw)
    bool count_include_pad;
};

template <typename Index>
PoolParams<Index> pool_params(const Pool2dGeometry& g) {
    PoolParams<Index> p;
    p.H = Index(g.in_height); p.W = Index(g.in_width); p.OH = Index(g.out_height); p.OW = Index(g.out_width);
    p.KH = Index(g.kernel_height); p.KW = Index(g.kernel_width); p.sh = Index(g.stride_height);
    p.sw = Index(g.stride_width); p.ph = Index(g.pad_height); p.pw = Index(g.pad_width);
    p.HW = p.H * p.W;
    p.OHW = p.OH * p.OW;
    p.div_ow = Divider<Index>(g.out_width);
    p.div_oh = Divider<Index>(g.out_height);
    p.div_w = Divider<Index>(g.in_width);
    p.div_h = Divider<Index>(g.in_height);
    p.count_include_pad = g.count_include_pad;
    return p;
}

template <typename Index>
__device__ __forceinline__ Index max_index(Index a, Index b) { return a > b ? a : b; }
template <typename Index>
__device__ __forceinline__ Index min_index(Index a, Index b) { return a < b ? a : b; }

// The window of output (oh, ow) clipped to the input: rows [h0, h1), columns [w0, w1); never empty
// (2 pad <= kernel, see kernels.h).
template <typename Index>
struct Window {
    Index h0, h1, w0, w1;
};

template <typename Index>
__device__ __forceinline__ Window<Index> window_of(const PoolParams<Index>& p, Index oh, Index ow) {
    const Index hs = oh * p.sh - p.ph, ws = ow * p.sw - p.pw;
    return Window<Index>{max_index<Index>(hs, 0), min_index<Index>(hs + p.KH, p.H), max_index<Index>(ws, 0),
                         min_index<Index>(ws + p.KW, p.W)};
}

// PyTorch's divisor: the full kernel area with count_include_pad (the window never reaches past the
// padded input without ceil_mode), else the number of real elements.
template <typename Index>
__device__ __forceinline__ float avg_divisor(const PoolParams<Index>& p, const Window<Index>& w) {
    return p.count_include_pad ? static_cast<float>(p.KH * p.KW) : static_cast<float>((w.h1 - w.h0) * (w.w1 - w.w0));
}

template <typename Index, bool MAX>
__global__ void __launch_bounds__(POOL_THREADS) pool2d_kernel(const PoolParams<Index> p, int64_t total,
                                                             const float* __restrict__ x, float* __restrict__ y,
                                                             int32_t* __restrict__ indices) {
    for (int64_t e = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; e < total; e += int64_t{gridDim.x} * blockDim.x) {
        const Index i = static_cast<Index>(e);
        Index t, ow, oh, plane;
        p.div_ow.divmod(i, t, ow);
        p.div_oh.divmod(t, plane, oh);
        const Window<Index> w = window_of(p, oh, ow);
        const float* xp = x + plane * p.HW;
        if (MAX) {
            Index best_at = w.h0 * p.W + w.w0;
            float best = __ldg(xp + best_at);
            for (Index ih = w.h0; ih < w.h1; ++ih)
                for (Index iw = w.w0; iw < w.w1; ++iw) {
                    const Index at = ih * p.W + iw;
                    const float v = __ldg(xp + at);
                    if (v > best || (v != v && best == best)) {  // first maximum; the first NaN wins
                        best = v;
                        best_at = at;
                    }
                }
            y[i] = best;
            if (indices) indices[i] = static_cast<int32_t>(best_at);
        } else {
            float sum = 0.0f;
            for (Index ih = w.h0; ih < w.h1; ++ih)
                for (Index iw = w.w0; iw < w.w1; ++iw) sum += __ldg(xp + ih * p.W + iw);
            y[i] = sum / avg_divisor(p, w);
        }
    }
}

template <typename Index, bool MAX>
__global__ void __launch_bounds__(POOL_THREADS) pool2d_backward_kernel(const PoolParams<Index> p, int64_t total,
                                                                      const float* __restrict__ dy,
                                                                      const int32_t* __restrict__ indices,
                                                                      float* __restrict__ dx) {
    for (int64_t e = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; e < total; e += int64_t{gridDim.x} * blockDim.x) {
        const Index i = static_cast<Index>(e);
        Index t, iw, ih, plane;
        p.div_w.divmod(i, t, iw);
        p.div_h.divmod(t, plane, ih);
        // Windows covering (ih, iw): first = ceil((i + pad - kernel + 1) / stride) when positive, else 0.
        const Index first_h = ih + p.ph - p.KH + 1, first_w = iw + p.pw - p.KW + 1;
        const Index oh0 = first_h > 0 ? (first_h + p.sh - 1) / p.sh : 0;
        const Index ow0 = first_w > 0 ? (first_w + p.sw - 1) / p.sw : 0;
        const Index oh1 = min_index<Index>((ih + p.ph) / p.sh + 1, p.OH);  // exclusive
        const Index ow1 = min_index<Index>((iw + p.pw) / p.sw + 1, p.OW);
        const float* dyp = dy + plane * p.OHW;
        float acc = 0.0f;
        if (MAX) {
            const int32_t* idx = indices + plane * p.OHW;
            const int32_t self = static_cast<int32_t>(ih * p.W + iw);
            for (Index oh = oh0; oh < oh1; ++oh)
                for (Index ow = ow0; ow < ow1; ++ow)
                    if (__ldg(idx + oh * p.OW + ow) == self) acc += __ldg(dyp + oh * p.OW + ow);
        } else {
            for (Index oh = oh0; oh < oh1; ++oh)
                for (Index ow = ow0; ow < ow1; ++ow)
                    acc += __ldg(dyp + oh * p.OW + ow) / avg_divisor(p, window_of(p, oh, ow));
        }
        dx[i] = acc;
    }
}

unsigned grid_for(int64_t n, const LaunchContext& ctx) {
    const int64_t blocks = std::min<int64_t>((n + POOL_THREADS - 1) / POOL_THREADS,
                                             int64_t{std::max(ctx.sm_count, 1)} * POOL_BLOCKS_PER_SM);
    return static_cast<unsigned>(std::max<int64_t>(blocks, 1));
}

bool needs_int64(const Pool2dGeometry& g) {
    const int64_t planes = g.batch * g.channels;
    return std::max(planes * g.in_height * g.in_width, planes * g.out_height * g.out_width) >= kInt32IndexLimit ||
           g.in_height + 2 * g.pad_height + g.stride_height >= kInt32IndexLimit ||
           g.in_width + 2 * g.pad_width + g.stride_width >= kInt32IndexLimit;
}

template <typename Index>
cudaError_t run_forward(const Pool2dArgs& a, const LaunchContext& ctx) {
    const PoolParams<Index> p = pool_params<Index>(a.g);
    const int64_t total = a.g.batch * a.g.channels * a.g.out_height * a.g.out_width;
    const auto* x = static_cast<const float*>(a.x);
    auto* y = static_cast<float*>(a.y);
    auto* idx = static_cast<int32_t*>(a.indices);
    if (a.op == KN_POOL_MAX)
        pool2d_kernel<Index, true><<<grid_for(total, ctx), POOL_THREADS, 0, ctx.stream>>>(p, total, x, y, idx);
    else
        pool2d_kernel<Index, false><<<grid_for(total, ctx), POOL_THREADS, 0, ctx.stream>>>(p, total, x, y, nullptr);
    return cudaGetLastError();
}

template <typename Index>
cudaError_t run_backward(const Pool2dBackwardArgs& a, const LaunchContext& ctx) {
    const PoolParams<Index> p = pool_params<Index>(a.g);
    const int64_t total = a.g.batch * a.g.channels * a.g.in_height * a.g.in_width;
    const auto* dy = static_cast<const float*>(a.dy);
    const auto* idx = static_cast<const int32_t*>(a.indices);
    auto* dx = static_cast<float*>(a.dx);
    if (a.op == KN_POOL_MAX)
        pool2d_backward_kernel<Index, true><<<grid_for(total, ctx), POOL_THREADS, 0, ctx.stream>>>(p, total, dy, idx, dx);
    else
        pool2d_backward_kernel<Index, false><<<grid_for(total, ctx), POOL_THREADS, 0, ctx.stream>>>(p, total, dy, nullptr, dx);
    return cudaGetLastError();
}

}  // namespace

cudaError_t pool2d_f32(const Pool2dArgs& args, const LaunchContext& ctx, const Pool2dOptions& options) {
    return options.wide_index || needs_int64(args.g) ? run_forward<int64_t>(args, ctx) : run_forward<int>(args, ctx);
}

cudaError_t pool2d_backward_f32(const Pool2dBackwardArgs& args, const LaunchContext& ctx,
                                const Pool2dOptions& options) {
    return options.wide_index || needs_int64(args.g) ? run_backward<int64_t>(args, ctx) : run_backward<int>(args, ctx);
}

}  // namespace kn::cuda
