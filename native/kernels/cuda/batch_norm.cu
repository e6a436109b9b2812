// batch_norm.cu: batch normalization over x viewed as [batch, channels, spatial] (kn_batch_norm_f32,
// training and inference) and its backward pass (kn_batch_norm_backward_f32); see kernels.h for the
// formulas and the running-statistics update (PyTorch's).
//
// Technique: per-channel statistics are block reductions over the channel's batch * spatial values,
// split into a fixed number of chunks per channel so that even a few channels fill the GPU; each
// block writes a partial sum, and a per-channel pass adds the partials in a fixed order
// (deterministic, no atomics; the plan depends only on the shape and the SM count). Inside a block:
// per-thread running sums, a warp-shuffle tree, then the warps' results in order.
//   training forward:  pass 1  sum x                        (partials per chunk)
//                      pass 2  sum (x - mean)^2            (each block first folds pass 1's partials)
//                      finish  per channel: mean, biased var, invstd, running stats, coefficients
//                      apply   y = ((x - mean_hi) - mean_lo) * (gamma * invstd) + beta
//   inference forward: coefficients from running_mean / running_var, then the same apply pass
//   backward:          pass    sum dy, sum dy * (x - mean)  (one read of x and dy)
//                      finish  dbeta, dgamma = invstd * sum dy (x - mean), and the dx coefficients
//                      apply   dx = gamma invstd (dy - dbeta / m - (x - mean) invstd dgamma / m)
//                              (inference: dx = gamma invstd dy)
// Precision: the variance is two-pass (never E[x^2] - E[x]^2, which cancels catastrophically for
// values ~1e4 with unit variance), and the per-thread sums and partials are double: float sums of
// 10^5 values of ~1e4 would carry an error of ~1e-2 in the mean, a 1% error in y at unit variance.
// The mean is kept as a float pair (hi + lo) for the apply pass, so x - mean is exact to float
// rounding even where mean itself is not representable. Doubles cost one DADD per element read:
// within the FP64 rate of every GPU at DRAM bandwidth (H100 67 TFLOP/s, consumer parts ~1/64 of
// FP32 ~ 1.3 TFLOP/s for ~250 G elements/s read).
//
// Napkin math (training, x of 103 MB): passes 1 and 2 read x, apply reads x and writes y: 4 x 103 MB
// at ~3 TB/s (H100) ~ 140 us; a one-read Welford pass would save one read (~35 us) at the cost of
// the simple two-pass formula. Backward: reads x and dy twice, writes dx once.
//
// Measured speed: not yet run on a GPU (compiled with nvcc 11.8; run on the CPU by native/dev/emulator).
#include "cuda_kernels.h"
#include "fast_divmod.cuh"

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>

#ifndef BATCH_NORM_THREADS
#define BATCH_NORM_THREADS 256
#endif
#ifndef BATCH_NORM_CHUNK_MIN
#define BATCH_NORM_CHUNK_MIN 4096  // values per channel a reduction block gets at least (16 per thread)
#endif
#ifndef BATCH_NORM_MAX_CHUNKS
#define BATCH_NORM_MAX_CHUNKS 256  // partials per channel (each block of pass 2 folds them all)
#endif
#ifndef BATCH_NORM_BLOCKS_PER_SM
#define BATCH_NORM_BLOCKS_PER_SM 4  // reduction blocks to aim for; elementwise grids use 8x this
#endif

namespace kn::cuda {
namespace {

constexpr int kThreads = BATCH_NORM_THREADS;

template <typename Index>
struct Shape {
    Index C, S;
    int64_t m;                      // batch * spatial: values per channel
    int64_t total;                  // batch * channels * spatial
    int64_t chunks, chunk_len;      // reduction split per channel
    Divider<Index> div_s, div_c;    // j -> (b, s) and i -> (plane, s); plane -> (b, c)
};

template <typename Index>
Shape<Index> shape_of(int64_t batch, int64_t channels, int64_t spatial, int64_t chunks, int64_t chunk_len) {
    Shape<Index> s;
    s.C = Index(channels);
    s.S = Index(spatial);
    s.m = batch * spatial;
    s.total = batch * channels * spatial;
    s.chunks = chunks;
    s.chunk_len = chunk_len;
    s.div_s = Divider<Index>(spatial);
    s.div_c = Divider<Index>(channels);
    return s;
}

// Per-channel coefficients of an apply pass, 16 bytes so one load brings all four.
struct __align__(16) Coefficients {
    float a, b, c, d;
};

__device__ __forceinline__ double warp_sum(double v) {
#pragma unroll
    for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_down_sync(0xffffffffu, v, offset);
    return v;
}

// Thread 0 gets the block's sum (fixed order: a shuffle tree per warp, then the warps in order).
// Ends with a barrier, so `shared` may be reused right after.
__device__ __forceinline__ double block_sum(double v, double* shared) {
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    v = warp_sum(v);
    if (lane == 0) shared[warp] = v;
    __syncthreads();
    if (threadIdx.x == 0) {
        v = 0.0;
        for (int q = 0; q < kThreads / 32; ++q) v += shared[q];
    }
    __syncthreads();
    return v;
}

template <typename Index>
__device__ __forceinline__ int64_t offset_of(const Shape<Index>& s, Index c, int64_t j) {
    Index b, sp;
    s.div_s.divmod(static_cast<Index>(j), b, sp);
    return (int64_t{b} * s.C + c) * s.S + sp;  // int64: only the int64 instantiation can exceed int32 here
}

// Pass 1 (SQUARES = false): partials[chunk][c] = sum of x over the chunk.
// Pass 2 (SQUARES = true): mean from pass 1's partials, then partials[chunks + chunk][c] = sum (x - mean)^2.
template <typename Index, bool SQUARES>
__global__ void __launch_bounds__(kThreads) batch_norm_sums_kernel(const Shape<Index> s, const float* __restrict__ x,
                                                                  double* __restrict__ partials) {
    __shared__ double shared[kThreads / 32];
    __shared__ double shared_mean;
    for (int64_t item = blockIdx.x; item < s.chunks * s.C; item += gridDim.x) {
        const Index c = static_cast<Index>(item % s.C);
        const int64_t chunk = item / s.C;
        double mean = 0.0;
        if (SQUARES) {  // warp 0 folds pass 1's partials once for the block (up to BATCH_NORM_MAX_CHUNKS)
            if (threadIdx.x < 32) {
                double sum = 0.0;
                for (int64_t q = threadIdx.x; q < s.chunks; q += 32) sum += partials[q * s.C + c];
                sum = warp_sum(sum);
                if (threadIdx.x == 0) shared_mean = sum / static_cast<double>(s.m);
            }
            __syncthreads();
            mean = shared_mean;
        }
        const int64_t begin = chunk * s.chunk_len, end = s.m - begin < s.chunk_len ? s.m : begin + s.chunk_len;
        double acc = 0.0;
        for (int64_t j = begin + threadIdx.x; j < end; j += blockDim.x) {
            const double v = __ldg(x + offset_of(s, c, j));
            if (SQUARES) {
                const double d = v - mean;
                acc = fma(d, d, acc);
            } else {
                acc += v;
            }
        }
        acc = block_sum(acc, shared);  // its closing barrier also protects shared_mean
        if (threadIdx.x == 0) partials[(SQUARES ? s.chunks * s.C : 0) + item] = acc;  // item = chunk * C + c
    }
}

struct FinishParams {
    int64_t channels, chunks, m;
    float eps, momentum;
    const float* gamma;
    const float* beta;
    float* running_mean;  // may be null (training)
    float* running_var;
    float* save_mean;     // may be null
    float* save_invstd;
};

// Training: per channel, the statistics from the partials and the apply pass's coefficients
// {mean_hi, mean_lo, gamma * invstd, beta}.
__global__ void __launch_bounds__(kThreads) batch_norm_finish_kernel(const FinishParams p,
                                                                    const double* __restrict__ partials,
                                                                    Coefficients* __restrict__ coefficients) {
    for (int64_t c = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; c < p.channels; c += int64_t{gridDim.x} * blockDim.x) {
        double sum = 0.0, squares = 0.0;
        for (int64_t q = 0; q < p.chunks; ++q) sum += partials[q * p.channels + c];
        for (int64_t q = 0; q < p.chunks; ++q) squares += partials[(p.chunks + q) * p.channels + c];
        const double m = static_cast<double>(p.m);
        const double mean = sum / m, var = squares / m;
        const double invstd = 1.0 / sqrt(var + static_cast<double>(p.eps));
        const float mean_hi = static_cast<float>(mean);
        if (p.save_mean) p.save_mean[c] = mean_hi;
        if (p.save_invstd) p.save_invstd[c] = static_cast<float>(invstd);
        if (p.running_mean) {
            const double unbiased = p.m > 1 ? var * m / (m - 1.0) : var;
            const double keep = 1.0 - static_cast<double>(p.momentum), take = p.momentum;
            p.running_mean[c] = static_cast<float>(keep * p.running_mean[c] + take * mean);
            p.running_var[c] = static_cast<float>(keep * p.running_var[c] + take * unbiased);
        }
        coefficients[c] = Coefficients{mean_hi, static_cast<float>(mean - mean_hi),
                                       static_cast<float>(p.gamma[c] * invstd), p.beta[c]};
    }
}

// Inference: the statistics are running_mean and running_var.
__global__ void __launch_bounds__(kThreads) batch_norm_inference_coefficients_kernel(const FinishParams p,
                                                                                    Coefficients* __restrict__ coefficients) {
    for (int64_t c = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; c < p.channels; c += int64_t{gridDim.x} * blockDim.x) {
        const float mean = p.running_mean[c];
        const double invstd = 1.0 / sqrt(static_cast<double>(p.running_var[c]) + static_cast<double>(p.eps));
        if (p.save_mean) p.save_mean[c] = mean;
        if (p.save_invstd) p.save_invstd[c] = static_cast<float>(invstd);
        coefficients[c] = Coefficients{mean, 0.0f, static_cast<float>(p.gamma[c] * invstd), p.beta[c]};
    }
}

// y = ((x - a) - b) * c + d with the channel's coefficients.
template <typename Index>
__global__ void __launch_bounds__(kThreads) batch_norm_apply_kernel(const Shape<Index> s, const float* __restrict__ x,
                                                                   const Coefficients* __restrict__ coefficients,
                                                                   float* __restrict__ y) {
    for (int64_t e = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; e < s.total; e += int64_t{gridDim.x} * blockDim.x) {
        const Index i = static_cast<Index>(e);
        Index plane, b, c;
        plane = s.div_s.div(i);
        s.div_c.divmod(plane, b, c);
        const Coefficients k = coefficients[c];
        y[i] = ((__ldg(x + i) - k.a) - k.b) * k.c + k.d;
    }
}

// Backward pass 1: partials[chunk][c] = sum dy, partials[chunks + chunk][c] = sum dy * (x - mean).
template <typename Index>
__global__ void __launch_bounds__(kThreads) batch_norm_backward_sums_kernel(const Shape<Index> s,
                                                                           const float* __restrict__ x,
                                                                           const float* __restrict__ dy,
                                                                           const float* __restrict__ save_mean,
                                                                           double* __restrict__ partials) {
    __shared__ double shared[kThreads / 32];
    for (int64_t item = blockIdx.x; item < s.chunks * s.C; item += gridDim.x) {
        const Index c = static_cast<Index>(item % s.C);
        const int64_t chunk = item / s.C;
        const float mean = __ldg(save_mean + c);
        const int64_t begin = chunk * s.chunk_len, end = s.m - begin < s.chunk_len ? s.m : begin + s.chunk_len;
        double sum_dy = 0.0, sum_dy_xmu = 0.0;
        for (int64_t j = begin + threadIdx.x; j < end; j += blockDim.x) {
            const int64_t at = offset_of(s, c, j);
            const double g = __ldg(dy + at);
            sum_dy += g;
            sum_dy_xmu = fma(g, static_cast<double>(__ldg(x + at) - mean), sum_dy_xmu);
        }
        sum_dy = block_sum(sum_dy, shared);
        sum_dy_xmu = block_sum(sum_dy_xmu, shared);
        if (threadIdx.x == 0) {
            partials[item] = sum_dy;
            partials[s.chunks * s.C + item] = sum_dy_xmu;
        }
    }
}

struct BackwardFinishParams {
    int64_t channels, chunks, m;
    bool training;
    const float* gamma;
    const float* save_mean;
    const float* save_invstd;
    float* dgamma;
    float* dbeta;
};

// dbeta, dgamma, and the dx coefficients {mean, gamma * invstd, dbeta / m, invstd * dgamma / m}.
__global__ void __launch_bounds__(kThreads) batch_norm_backward_finish_kernel(const BackwardFinishParams p,
                                                                             const double* __restrict__ partials,
                                                                             Coefficients* __restrict__ coefficients) {
    for (int64_t c = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; c < p.channels; c += int64_t{gridDim.x} * blockDim.x) {
        double sum_dy = 0.0, sum_dy_xmu = 0.0;
        for (int64_t q = 0; q < p.chunks; ++q) sum_dy += partials[q * p.channels + c];
        for (int64_t q = 0; q < p.chunks; ++q) sum_dy_xmu += partials[(p.chunks + q) * p.channels + c];
        const double invstd = p.save_invstd[c];
        const double dgamma = sum_dy_xmu * invstd;
        p.dbeta[c] = static_cast<float>(sum_dy);
        p.dgamma[c] = static_cast<float>(dgamma);
        const double m = static_cast<double>(p.m);
        coefficients[c] = Coefficients{p.save_mean[c], static_cast<float>(p.gamma[c] * invstd),
                                       p.training ? static_cast<float>(sum_dy / m) : 0.0f,
                                       p.training ? static_cast<float>(invstd * dgamma / m) : 0.0f};
    }
}

// Training: dx = b * (dy - c - (x - a) * d); inference: dx = b * dy (x is not read).
template <typename Index, bool TRAINING>
__global__ void __launch_bounds__(kThreads) batch_norm_backward_apply_kernel(const Shape<Index> s,
                                                                            const float* __restrict__ x,
                                                                            const float* __restrict__ dy,
                                                                            const Coefficients* __restrict__ coefficients,
                                                                            float* __restrict__ dx) {
    for (int64_t e = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; e < s.total; e += int64_t{gridDim.x} * blockDim.x) {
        const Index i = static_cast<Index>(e);
        Index plane, b, c;
        plane = s.div_s.div(i);
        s.div_c.divmod(plane, b, c);
        const Coefficients k = coefficients[c];
        const float g = __ldg(dy + i);
        dx[i] = TRAINING ? k.b * (g - k.c - (__ldg(x + i) - k.a) * k.d) : k.b * g;
    }
}

// ---- Planning -------------------------------------------------------------------------------------

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

unsigned grid_size(int64_t blocks) { return static_cast<unsigned>(std::max<int64_t>(1, std::min<int64_t>(blocks, 0x7fffffff))); }

unsigned elementwise_grid(int64_t n, const LaunchContext& ctx) {
    return grid_size(std::min(ceil_div(n, kThreads), int64_t{std::max(ctx.sm_count, 1)} * BATCH_NORM_BLOCKS_PER_SM * 8));
}

struct Plan {
    bool wide;
    int64_t chunks, chunk_len;
    int64_t partial_doubles;  // 2 * chunks * channels (0 when no reduction runs)
    int64_t scratch_bytes;    // coefficients (16 B per channel) first, then the partials
};

Plan make_plan(int64_t batch, int64_t channels, int64_t spatial, bool reduce, const LaunchContext& ctx,
               const BatchNormOptions& options) {
    Plan plan{};
    const int64_t m = batch * spatial;
    plan.wide = options.wide_index || batch * channels * spatial >= kInt32IndexLimit;
    plan.chunks = 1;
    plan.chunk_len = m;
    if (reduce && m > 0) {
        const int64_t sm = std::max(ctx.sm_count, 1);
        int64_t chunks = options.chunks > 0 ? options.chunks
                                            : std::min({ceil_div(sm * BATCH_NORM_BLOCKS_PER_SM, channels),
                                                        ceil_div(m, int64_t{BATCH_NORM_CHUNK_MIN}),
                                                        int64_t{BATCH_NORM_MAX_CHUNKS}});
        chunks = std::max<int64_t>(1, std::min(chunks, m));
        plan.chunk_len = ceil_div(m, chunks);
        plan.chunks = ceil_div(m, plan.chunk_len);
        plan.partial_doubles = 2 * plan.chunks * channels;
    }
    plan.scratch_bytes = channels * int64_t{sizeof(Coefficients)} + plan.partial_doubles * int64_t{sizeof(double)};
    return plan;
}

template <typename Index>
cudaError_t run_forward(const BatchNormArgs& a, const Plan& plan, void* scratch, const LaunchContext& ctx) {
    const Shape<Index> s = shape_of<Index>(a.batch, a.channels, a.spatial, plan.chunks, plan.chunk_len);
    auto* coefficients = static_cast<Coefficients*>(scratch);
    auto* partials = reinterpret_cast<double*>(coefficients + a.channels);
    const auto* x = static_cast<const float*>(a.x);
    FinishParams f{a.channels, plan.chunks, s.m, a.eps, a.momentum,
                   static_cast<const float*>(a.gamma), static_cast<const float*>(a.beta),
                   static_cast<float*>(a.running_mean), static_cast<float*>(a.running_var),
                   static_cast<float*>(a.save_mean), static_cast<float*>(a.save_invstd)};
    const unsigned channel_grid = grid_size(ceil_div(a.channels, kThreads));
    if (a.training) {
        const unsigned reduce_grid = grid_size(plan.chunks * a.channels);
        batch_norm_sums_kernel<Index, false><<<reduce_grid, kThreads, 0, ctx.stream>>>(s, x, partials);
        cudaError_t e = cudaGetLastError();
        if (e != cudaSuccess) return e;
        batch_norm_sums_kernel<Index, true><<<reduce_grid, kThreads, 0, ctx.stream>>>(s, x, partials);
        if ((e = cudaGetLastError()) != cudaSuccess) return e;
        batch_norm_finish_kernel<<<channel_grid, kThreads, 0, ctx.stream>>>(f, partials, coefficients);
        if ((e = cudaGetLastError()) != cudaSuccess) return e;
    } else {
        batch_norm_inference_coefficients_kernel<<<channel_grid, kThreads, 0, ctx.stream>>>(f, coefficients);
        const cudaError_t e = cudaGetLastError();
        if (e != cudaSuccess) return e;
    }
    batch_norm_apply_kernel<Index><<<elementwise_grid(s.total, ctx), kThreads, 0, ctx.stream>>>(s, x, coefficients,
                                                                                               static_cast<float*>(a.y));
    return cudaGetLastError();
}

template <typename Index>
cudaError_t run_backward(const BatchNormBackwardArgs& a, const Plan& plan, void* scratch, const LaunchContext& ctx) {
    const Shape<Index> s = shape_of<Index>(a.batch, a.channels, a.spatial, plan.chunks, plan.chunk_len);
    auto* coefficients = static_cast<Coefficients*>(scratch);
    auto* partials = reinterpret_cast<double*>(coefficients + a.channels);
    const auto* x = static_cast<const float*>(a.x);
    const auto* dy = static_cast<const float*>(a.dy);
    batch_norm_backward_sums_kernel<Index><<<grid_size(plan.chunks * a.channels), kThreads, 0, ctx.stream>>>(
        s, x, dy, static_cast<const float*>(a.save_mean), partials);
    cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess) return e;
    BackwardFinishParams f{a.channels, plan.chunks, s.m, a.training,
                           static_cast<const float*>(a.gamma), static_cast<const float*>(a.save_mean),
                           static_cast<const float*>(a.save_invstd), static_cast<float*>(a.dgamma),
                           static_cast<float*>(a.dbeta)};
    batch_norm_backward_finish_kernel<<<grid_size(ceil_div(a.channels, kThreads)), kThreads, 0, ctx.stream>>>(
        f, partials, coefficients);
    if ((e = cudaGetLastError()) != cudaSuccess || !a.dx) return e;
    auto* dx = static_cast<float*>(a.dx);
    if (a.training)
        batch_norm_backward_apply_kernel<Index, true><<<elementwise_grid(s.total, ctx), kThreads, 0, ctx.stream>>>(
            s, x, dy, coefficients, dx);
    else
        batch_norm_backward_apply_kernel<Index, false><<<elementwise_grid(s.total, ctx), kThreads, 0, ctx.stream>>>(
            s, x, dy, coefficients, dx);
    return cudaGetLastError();
}

}  // namespace

int64_t batch_norm_scratch_bytes(const BatchNormArgs& args, const LaunchContext& ctx, const BatchNormOptions& options) {
    return make_plan(args.batch, args.channels, args.spatial, args.training, ctx, options).scratch_bytes;
}

cudaError_t batch_norm_f32(const BatchNormArgs& args, const LaunchContext& ctx, const BatchNormOptions& options) {
    const Plan plan = make_plan(args.batch, args.channels, args.spatial, args.training, ctx, options);
    void* scratch = ctx.scratch(plan.scratch_bytes);
    if (plan.scratch_bytes > 0 && !scratch) return cudaErrorInvalidValue;
    return plan.wide ? run_forward<int64_t>(args, plan, scratch, ctx) : run_forward<int>(args, plan, scratch, ctx);
}

int64_t batch_norm_backward_scratch_bytes(const BatchNormBackwardArgs& args, const LaunchContext& ctx,
                                          const BatchNormOptions& options) {
    return make_plan(args.batch, args.channels, args.spatial, true, ctx, options).scratch_bytes;
}

cudaError_t batch_norm_backward_f32(const BatchNormBackwardArgs& args, const LaunchContext& ctx,
                                    const BatchNormOptions& options) {
    const Plan plan = make_plan(args.batch, args.channels, args.spatial, true, ctx, options);
    void* scratch = ctx.scratch(plan.scratch_bytes);
    if (plan.scratch_bytes > 0 && !scratch) return cudaErrorInvalidValue;
    return plan.wide ? run_backward<int64_t>(args, plan, scratch, ctx) : run_backward<int>(args, plan, scratch, ctx);
}

}  // namespace kn::cuda
