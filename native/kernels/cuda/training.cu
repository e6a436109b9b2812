// training.cu: the kernels a training step needs around the big ones, on CUDA: fused cross-entropy
// (log-softmax + NLL) forward/backward, Philox dropout, clamp, and one fused pass per optimizer
// update (SGD, Adam/AdamW, RMSprop, Adagrad). Same arithmetic as kernels/cpu/training.cpp.
//
// The optimizer steps are memory-bound (Adam: 28 bytes moved per element for ~15 flops), so they
// are plain grid-stride loops sized to a few waves of the SMs; on an H100 (~3 TB/s) an Adam step over
// 100M parameters should take ~1 ms. Cross-entropy is one warp per row: rows are class counts
// (10..50k), and a warp-shuffle max/sum keeps the whole row reduction in registers.
// NOT YET MEASURED OR RUN ON A GPU (no GPU in the session that wrote it); compiled with nvcc 11.8.
#include "cuda_kernels.h"
#include "philox.h"

#include <cmath>

namespace kn::cuda {
namespace {

#ifndef TRAINING_BLOCK
#define TRAINING_BLOCK 256  // threads per block for the elementwise updates
#endif

int grid_for(int64_t n, const LaunchContext& ctx) {
    int64_t blocks = (n + TRAINING_BLOCK - 1) / TRAINING_BLOCK;
    int64_t cap = static_cast<int64_t>(ctx.sm_count) * 8;  // a few waves; the loop covers the rest
    return static_cast<int>(blocks < cap ? (blocks > 0 ? blocks : 1) : cap);
}

#define GRID_STRIDE(i, n) \
    for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < (n); i += static_cast<int64_t>(gridDim.x) * blockDim.x)

__device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// One warp per row: max, then sum of exp(x - max). Both are uniform across the warp on return.
__device__ __forceinline__ void row_stats(const float* row, int64_t cols, float* max_out, float* sum_out) {
    const int lane = threadIdx.x & 31;
    float m = -INFINITY;
    for (int64_t c = lane; c < cols; c += 32) m = fmaxf(m, row[c]);
    m = warp_max(m);
    float s = 0.0f;
    for (int64_t c = lane; c < cols; c += 32) s += expf(row[c] - m);
    *max_out = m;
    *sum_out = warp_sum(s);
}

__global__ void cross_entropy_kernel(const float* x, const int64_t* labels, float* loss, int64_t rows, int64_t cols) {
    const int64_t warps = static_cast<int64_t>(gridDim.x) * (blockDim.x / 32);
    for (int64_t r = blockIdx.x * static_cast<int64_t>(blockDim.x / 32) + threadIdx.x / 32; r < rows; r += warps) {
        const float* row = x + r * cols;
        float m, s;
        row_stats(row, cols, &m, &s);
        if ((threadIdx.x & 31) == 0) {
            int64_t label = labels[r];
            loss[r] = (label < 0 || label >= cols) ? NAN : (logf(s) + m) - row[label];
        }
    }
}

__global__ void cross_entropy_backward_kernel(const float* x, const int64_t* labels, const float* dloss, float* dx,
                                              int64_t rows, int64_t cols) {
    const int64_t warps = static_cast<int64_t>(gridDim.x) * (blockDim.x / 32);
    const int lane = threadIdx.x & 31;
    for (int64_t r = blockIdx.x * static_cast<int64_t>(blockDim.x / 32) + threadIdx.x / 32; r < rows; r += warps) {
        const float* row = x + r * cols;
        float* out = dx + r * cols;
        float m, s;
        row_stats(row, cols, &m, &s);
        const int64_t label = labels[r];
        const bool valid = label >= 0 && label < cols;
        const float scale = dloss[r] / s;
        for (int64_t c = lane; c < cols; c += 32)
            out[c] = valid ? expf(row[c] - m) * scale - (c == label ? dloss[r] : 0.0f) : NAN;
    }
}

// One Philox block per thread: its four words serve the four elements of the stream whose index j =
// offset + i has j / 4 = the block's counter (philox.h), so each block is drawn once. The first and
// last blocks may be partial (offset not a multiple of 4, n not either): bounds per element.
__global__ void dropout_kernel(const float* in, float* out, int64_t n, float p, uint64_t seed, uint64_t offset) {
    const float scale = 1.0f / (1.0f - p);
    const uint64_t first_block = offset >> 2;
    const int64_t blocks = static_cast<int64_t>(((offset + static_cast<uint64_t>(n) + 3) >> 2) - first_block);
    GRID_STRIDE(b, blocks) {
        const uint64_t counter = first_block + static_cast<uint64_t>(b);
        uint32_t words[4];
        philox4x32_10_block(static_cast<uint32_t>(counter), static_cast<uint32_t>(counter >> 32),
                            static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32), words);
#pragma unroll
        for (int e = 0; e < 4; ++e) {
            const int64_t i = static_cast<int64_t>(4 * counter + e - offset);  // wraps below 0 for a head block
            if (i >= 0 && i < n) out[i] = philox_to_uniform(words[e]) >= p ? in[i] * scale : 0.0f;
        }
    }
}

__global__ void clamp_kernel(const float* x, float* y, int64_t n, float low, float high) {
    // std::min(std::max(x, low), high) as the CPU and OpenCL backends: NaN passes through (fmaxf would
    // turn it into low), and low > high gives high.
    GRID_STRIDE(i, n) {
        const float v = x[i] < low ? low : x[i];
        y[i] = high < v ? high : v;
    }
}

// ---- The optimizer updates ----
// One element of each update, shared by the per-tensor kernel and the many-tensor one so both
// compute the same float operations: update(param, grad, state0, state1, i) updates element i of
// one tensor. The states are SGD: velocity; Adam: m, v; RMSprop: square_avg, velocity; Adagrad: sum
// (null where unused: velocity without momentum). element_of() builds each from the per-tensor
// record on the host; operands_of() gives the record's pointers.

struct Operands {
    float* param;
    const float* grad;
    float* state0;
    float* state1;
};

struct SgdElement {
    float lr, momentum, dampening, weight_decay;
    bool nesterov, first_step;
    __device__ __forceinline__ void operator()(float* p, const float* grad, float* vel, float*, int64_t i) const {
        float g = grad[i] + weight_decay * p[i];
        if (vel) {
            float v = first_step ? g : momentum * vel[i] + (1.0f - dampening) * g;
            vel[i] = v;
            g = nesterov ? g + momentum * v : v;
        }
        p[i] -= lr * g;
    }
};

SgdElement element_of(const SgdArgs& a) {
    return {a.lr, a.momentum, a.dampening, a.weight_decay, a.nesterov, a.first_step};
}
Operands operands_of(const SgdArgs& a) {
    return {static_cast<float*>(a.param), static_cast<const float*>(a.grad), static_cast<float*>(a.velocity), nullptr};
}

struct AdamElement {
    float lr, beta1, beta2, eps;
    float decay;   // param *= decay first: 1 - lr * weight_decay for AdamW, else 1
    float l2;      // g += l2 * param: weight_decay for Adam, else 0
    float c1, c2;  // bias corrections 1 / (1 - beta^t)
    __device__ __forceinline__ void operator()(float* p, const float* grad, float* m, float* v, int64_t i) const {
        float w = p[i];
        float g = grad[i] + l2 * w;
        float mi = beta1 * m[i] + (1.0f - beta1) * g;
        float vi = beta2 * v[i] + (1.0f - beta2) * g * g;
        m[i] = mi;
        v[i] = vi;
        p[i] = w * decay - lr * (mi * c1) / (sqrtf(vi * c2) + eps);
    }
};

AdamElement element_of(const AdamArgs& a) {
    // Bias corrections on the host in double: beta2^t underflows gracefully for huge t.
    const float c1 = static_cast<float>(1.0 / (1.0 - std::pow(static_cast<double>(a.beta1), static_cast<double>(a.step))));
    const float c2 = static_cast<float>(1.0 / (1.0 - std::pow(static_cast<double>(a.beta2), static_cast<double>(a.step))));
    const float decay = a.decoupled_weight_decay ? 1.0f - a.lr * a.weight_decay : 1.0f;
    const float l2 = a.decoupled_weight_decay ? 0.0f : a.weight_decay;
    return {a.lr, a.beta1, a.beta2, a.eps, decay, l2, c1, c2};
}
Operands operands_of(const AdamArgs& a) {
    return {static_cast<float*>(a.param), static_cast<const float*>(a.grad), static_cast<float*>(a.m), static_cast<float*>(a.v)};
}

struct RmspropElement {
    float lr, alpha, eps, weight_decay, momentum;
    __device__ __forceinline__ void operator()(float* p, const float* grad, float* sq, float* vel, int64_t i) const {
        float g = grad[i] + weight_decay * p[i];
        float s = alpha * sq[i] + (1.0f - alpha) * g * g;
        sq[i] = s;
        float step = g / (sqrtf(s) + eps);
        if (vel) {
            float v = momentum * vel[i] + step;
            vel[i] = v;
            step = v;
        }
        p[i] -= lr * step;
    }
};

RmspropElement element_of(const RmspropArgs& a) { return {a.lr, a.alpha, a.eps, a.weight_decay, a.momentum}; }
Operands operands_of(const RmspropArgs& a) {
    return {static_cast<float*>(a.param), static_cast<const float*>(a.grad), static_cast<float*>(a.square_avg),
            static_cast<float*>(a.velocity)};
}

struct AdagradElement {
    float lr, eps, weight_decay;
    __device__ __forceinline__ void operator()(float* p, const float* grad, float* sum, float*, int64_t i) const {
        float g = grad[i] + weight_decay * p[i];
        float s = sum[i] + g * g;
        sum[i] = s;
        p[i] -= lr * g / (sqrtf(s) + eps);
    }
};

AdagradElement element_of(const AdagradArgs& a) { return {a.lr, a.eps, a.weight_decay}; }
Operands operands_of(const AdagradArgs& a) {
    return {static_cast<float*>(a.param), static_cast<const float*>(a.grad), static_cast<float*>(a.sum), nullptr};
}

template <typename Element>
__global__ void one_tensor_kernel(Element update, Operands o, int64_t n) {
    GRID_STRIDE(i, n) update(o.param, o.grad, o.state0, o.state1, i);
}

// The kn_*_step_many_f32 calls as PyTorch's multi_tensor_apply does them: the pointers and sizes of
// up to kManyTensors tensors travel in the kernel's parameters (by value; 4 KB of parameter space,
// this record is ~2.6 KB), one launch per such group. The grid strides over the concatenation of
// the group's elements; each thread finds its tensor once by binary search over first[] and then
// walks forward, as its index only grows.
constexpr int kManyTensors = 64;
struct ManyTable {
    Operands tensor[kManyTensors];
    int64_t first[kManyTensors + 1];  // tensor t holds elements [first[t], first[t + 1])
    int count;
};
static_assert(sizeof(ManyTable) + sizeof(AdamElement) + 64 <= 4096, "kernel parameters are limited to 4 KB");

template <typename Element>
__global__ void many_tensor_kernel(ManyTable table, Element update) {
    const int64_t total = table.first[table.count];
    int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
    if (i >= total) return;
    int lo = 0, hi = table.count - 1;  // the last t with first[t] <= i
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (table.first[mid] <= i) lo = mid; else hi = mid - 1;
    }
    int t = lo;
    for (; i < total; i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
        while (i >= table.first[t + 1]) ++t;
        const Operands& o = table.tensor[t];
        update(o.param, o.grad, o.state0, o.state1, i - table.first[t]);
    }
}

int rows_grid(int64_t rows, const LaunchContext& ctx) {
    const int64_t warps_per_block = TRAINING_BLOCK / 32;
    int64_t blocks = (rows + warps_per_block - 1) / warps_per_block;
    int64_t cap = static_cast<int64_t>(ctx.sm_count) * 8;
    return static_cast<int>(blocks < cap ? (blocks > 0 ? blocks : 1) : cap);
}

}  // namespace

cudaError_t cross_entropy_f32(const CrossEntropyArgs& a, const LaunchContext& ctx) {
    cross_entropy_kernel<<<rows_grid(a.rows, ctx), TRAINING_BLOCK, 0, ctx.stream>>>(
        static_cast<const float*>(a.logits), static_cast<const int64_t*>(a.labels), static_cast<float*>(a.losses), a.rows, a.cols);
    return cudaGetLastError();
}

cudaError_t cross_entropy_backward_f32(const CrossEntropyBackwardArgs& a, const LaunchContext& ctx) {
    cross_entropy_backward_kernel<<<rows_grid(a.rows, ctx), TRAINING_BLOCK, 0, ctx.stream>>>(
        static_cast<const float*>(a.logits), static_cast<const int64_t*>(a.labels), static_cast<const float*>(a.dlosses),
        static_cast<float*>(a.dlogits), a.rows, a.cols);
    return cudaGetLastError();
}

// Forward and backward are the same map (keep(i) ? in / (1 - p) : 0): dropout_backward_f32 calls this.
cudaError_t dropout_f32(const DropoutArgs& a, const LaunchContext& ctx) {
    dropout_kernel<<<grid_for((a.n + 6) / 4, ctx), TRAINING_BLOCK, 0, ctx.stream>>>(
        static_cast<const float*>(a.x), static_cast<float*>(a.y), a.n, a.p, a.seed, a.offset);
    return cudaGetLastError();
}

cudaError_t clamp_f32(const ClampArgs& a, const LaunchContext& ctx) {
    clamp_kernel<<<grid_for(a.n, ctx), TRAINING_BLOCK, 0, ctx.stream>>>(
        static_cast<const float*>(a.x), static_cast<float*>(a.y), a.n, a.low, a.high);
    return cudaGetLastError();
}

namespace {

template <typename Tensor>
cudaError_t launch_one(const Tensor& a, const LaunchContext& ctx) {
    auto update = element_of(a);
    one_tensor_kernel<decltype(update)><<<grid_for(a.n, ctx), TRAINING_BLOCK, 0, ctx.stream>>>(update, operands_of(a), a.n);
    return cudaGetLastError();
}

template <typename Tensor>
cudaError_t launch_many(const ManyArgs<Tensor>& a, const LaunchContext& ctx) {
    if (a.count == 0) return cudaSuccess;
    const auto update = element_of(a.tensors[0]);  // the hyper-parameters are the same in every entry
    for (int64_t start = 0; start < a.count; start += kManyTensors) {
        ManyTable table;
        table.count = static_cast<int>(a.count - start < kManyTensors ? a.count - start : kManyTensors);
        table.first[0] = 0;
        for (int t = 0; t < table.count; ++t) {
            table.tensor[t] = operands_of(a.tensors[start + t]);
            table.first[t + 1] = table.first[t] + a.tensors[start + t].n;
        }
        many_tensor_kernel<decltype(update)><<<grid_for(table.first[table.count], ctx), TRAINING_BLOCK, 0, ctx.stream>>>(
            table, update);
        cudaError_t e = cudaGetLastError();
        if (e != cudaSuccess) return e;
    }
    return cudaSuccess;
}

}  // namespace

cudaError_t sgd_step_f32(const SgdArgs& a, const LaunchContext& ctx) { return launch_one(a, ctx); }
cudaError_t sgd_step_many_f32(const SgdManyArgs& a, const LaunchContext& ctx) { return launch_many(a, ctx); }
cudaError_t adam_step_f32(const AdamArgs& a, const LaunchContext& ctx) { return launch_one(a, ctx); }
cudaError_t adam_step_many_f32(const AdamManyArgs& a, const LaunchContext& ctx) { return launch_many(a, ctx); }
cudaError_t rmsprop_step_f32(const RmspropArgs& a, const LaunchContext& ctx) { return launch_one(a, ctx); }
cudaError_t rmsprop_step_many_f32(const RmspropManyArgs& a, const LaunchContext& ctx) { return launch_many(a, ctx); }
cudaError_t adagrad_step_f32(const AdagradArgs& a, const LaunchContext& ctx) { return launch_one(a, ctx); }
cudaError_t adagrad_step_many_f32(const AdagradManyArgs& a, const LaunchContext& ctx) { return launch_many(a, ctx); }

}  // namespace kn::cuda
