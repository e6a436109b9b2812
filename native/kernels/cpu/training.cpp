// training.cpp: the kernels a training step needs around the big ones, on the CPU:
// fused cross-entropy (log-softmax + NLL) forward/backward, Philox dropout, clamp, and one fused
// pass per optimizer update (SGD, Adam/AdamW, RMSprop, Adagrad; their loops in optimizer_impl.h).
//
// All of them are memory-bound: an Adam step reads param, grad, m, v and writes param, m, v, so 28
// bytes per element for ~15 flops. The loops are written so the compiler vectorises them (no
// branches on data, restrict pointers; the optimizers once per instruction set), and they run on the thread pool in chunks of 16K elements
// (64 KB per array: large enough to amortise the ~5 us hand-off, small enough for L2).
#include "cpu_kernels.h"
#include "optimizer.h"
#include "span_kernels.h"
#include "thread_pool.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace kn::cpu {
namespace {

constexpr int64_t kGrain = 1 << 14;

// Chunks of [0, n) on the pool.
template <typename F>
void for_chunks(int64_t n, F&& body) {
    parallel_for(n, kGrain, [&](int64_t begin, int64_t end) { body(begin, end); });
}

// The kn_*_step_many_f32 calls: all tensors in one pool dispatch whose chunks run over the
// concatenation of the tensors' elements (a chunk may span several tensors), so a model's six small
// tensors cost one hand-off, not six. update(x, begin, end) runs the per-tensor loop on elements
// [begin, end) of tensor x; the loops are elementwise, so each element gets the same arithmetic
// whatever the split, and the results equal the per-tensor call's.
template <typename Tensor, typename Update>
void for_tensor_chunks(const ManyArgs<Tensor>& a, Update&& update) {
    if (a.count == 0) return;
    // first[t]: where tensor t starts in the concatenation (first[count] = total). On the stack for
    // up to 16 tensors; a reused thread-local vector beyond, so a step allocates nothing here.
    int64_t small[17];
    thread_local std::vector<int64_t> large;
    int64_t* first = small;
    if (a.count + 1 > 17) {
        large.resize(static_cast<size_t>(a.count + 1));
        first = large.data();
    }
    first[0] = 0;
    for (int64_t t = 0; t < a.count; ++t) first[t + 1] = first[t] + a.tensors[t].n;
    for_chunks(first[a.count], [&](int64_t b, int64_t e) {
        // The tensor holding element b: the last t with first[t] <= b (every n >= 1, so first rises).
        int64_t t = std::upper_bound(first, first + a.count + 1, b) - first - 1;
        while (b < e) {
            const int64_t begin = b - first[t], end = std::min(e, first[t + 1]) - first[t];
            update(a.tensors[t], begin, end);
            b = first[t] + end;
            ++t;
        }
    });
}

// Offsets an optional operand (velocity is null when momentum == 0).
inline float* at(void* x, int64_t i) { return x ? static_cast<float*>(x) + i : nullptr; }

}  // namespace

void cross_entropy_f32(const CrossEntropyArgs& a) {
    const float* x = static_cast<const float*>(a.logits);
    const int64_t* labels = static_cast<const int64_t*>(a.labels);
    float* loss = static_cast<float*>(a.losses);
    const int64_t cols = a.cols;
    parallel_for(a.rows, std::max<int64_t>(1, kGrain / cols), [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {
            const float* row = x + r * cols;
            float max = -std::numeric_limits<float>::infinity();
            for (int64_t c = 0; c < cols; ++c) max = std::max(max, row[c]);
            double sum = 0;  // cols terms in [0, 1]: a double sum costs nothing here and is exact enough
            for (int64_t c = 0; c < cols; ++c) sum += std::exp(row[c] - max);
            int64_t label = labels[r];
            loss[r] = (label < 0 || label >= cols)
                          ? std::numeric_limits<float>::quiet_NaN()
                          : static_cast<float>(std::log(sum) + max - row[label]);
        }
    });
}

void cross_entropy_backward_f32(const CrossEntropyBackwardArgs& a) {
    const float* x = static_cast<const float*>(a.logits);
    const int64_t* labels = static_cast<const int64_t*>(a.labels);
    const float* dloss = static_cast<const float*>(a.dlosses);
    float* dx = static_cast<float*>(a.dlogits);
    const int64_t cols = a.cols;
    parallel_for(a.rows, std::max<int64_t>(1, kGrain / cols), [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {
            const float* row = x + r * cols;
            float* out = dx + r * cols;
            float max = -std::numeric_limits<float>::infinity();
            for (int64_t c = 0; c < cols; ++c) max = std::max(max, row[c]);
            double sum = 0;
            for (int64_t c = 0; c < cols; ++c) sum += std::exp(row[c] - max);
            const float scale = dloss[r] / static_cast<float>(sum);
            for (int64_t c = 0; c < cols; ++c) out[c] = std::exp(row[c] - max) * scale;
            int64_t label = labels[r];
            if (label >= 0 && label < cols) out[label] -= dloss[r];
            else for (int64_t c = 0; c < cols; ++c) out[c] = std::numeric_limits<float>::quiet_NaN();
        }
    });
}

// Forward and backward are the same map: keep(i) ? in[i] / (1 - p) : 0.
void dropout_f32(const DropoutArgs& a) {
    const float* in = static_cast<const float*>(a.x);
    float* out = static_cast<float*>(a.y);
    const float scale = 1.0f / (1.0f - a.p);
    const SpanKernels& k = span_kernels();
    for_chunks(a.n, [&](int64_t b, int64_t e) {
        k.dropout(in + b, out + b, e - b, a.p, scale, a.seed, a.offset + static_cast<uint64_t>(b));
    });
}

// The backward pass is the forward map applied to dy (kernels.h): keep(i) ? dy[i] / (1 - p) : 0.
void dropout_backward_f32(const DropoutArgs& a) { dropout_f32(a); }

void clamp_f32(const ClampArgs& a) {
    const float* x = static_cast<const float*>(a.x);
    float* y = static_cast<float*>(a.y);
    for_chunks(a.n, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) y[i] = std::min(std::max(x[i], a.low), a.high);
    });
}

// The optimizer updates: the loops live in optimizer_impl.h (compiled per instruction set); here
// they are threaded in chunks of kGrain elements.

void sgd_step_f32(const SgdArgs& a) {
    float* p = static_cast<float*>(a.param);
    const float* grad = static_cast<const float*>(a.grad);
    float* vel = static_cast<float*>(a.velocity);
    const OptimizerKernels& k = optimizer_kernels();
    for_chunks(a.n, [&](int64_t b, int64_t e) { k.sgd(a, p + b, grad + b, vel ? vel + b : nullptr, e - b); });
}

void sgd_step_many_f32(const SgdManyArgs& a) {
    const OptimizerKernels& k = optimizer_kernels();
    for_tensor_chunks(a, [&](const SgdArgs& x, int64_t b, int64_t e) {
        k.sgd(x, static_cast<float*>(x.param) + b, static_cast<const float*>(x.grad) + b, at(x.velocity, b), e - b);
    });
}

namespace {

AdamConstants adam_constants(const AdamArgs& a) {
    AdamConstants k;
    k.lr = a.lr;
    k.beta1 = a.beta1;
    k.beta2 = a.beta2;
    k.eps = a.eps;
    k.decay = a.decoupled_weight_decay ? 1.0f - a.lr * a.weight_decay : 1.0f;
    k.l2 = a.decoupled_weight_decay ? 0.0f : a.weight_decay;
    // Bias corrections in double: beta2^t for t in the millions underflows gracefully to 0.
    k.c1 = static_cast<float>(1.0 / (1.0 - std::pow(static_cast<double>(a.beta1), static_cast<double>(a.step))));
    k.c2 = static_cast<float>(1.0 / (1.0 - std::pow(static_cast<double>(a.beta2), static_cast<double>(a.step))));
    return k;
}

}  // namespace

void adam_step_f32(const AdamArgs& a) {
    float* p = static_cast<float*>(a.param);
    const float* grad = static_cast<const float*>(a.grad);
    float* m = static_cast<float*>(a.m);
    float* v = static_cast<float*>(a.v);
    const AdamConstants k = adam_constants(a);
    const OptimizerKernels& kernels = optimizer_kernels();
    for_chunks(a.n, [&](int64_t b, int64_t e) { kernels.adam(k, p + b, grad + b, m + b, v + b, e - b); });
}

void adam_step_many_f32(const AdamManyArgs& a) {
    if (a.count == 0) return;
    const AdamConstants k = adam_constants(a.tensors[0]);  // the hyper-parameters are the same in every entry
    const OptimizerKernels& kernels = optimizer_kernels();
    for_tensor_chunks(a, [&](const AdamArgs& x, int64_t b, int64_t e) {
        kernels.adam(k, static_cast<float*>(x.param) + b, static_cast<const float*>(x.grad) + b,
                     static_cast<float*>(x.m) + b, static_cast<float*>(x.v) + b, e - b);
    });
}

void rmsprop_step_f32(const RmspropArgs& a) {
    float* p = static_cast<float*>(a.param);
    const float* grad = static_cast<const float*>(a.grad);
    float* sq = static_cast<float*>(a.square_avg);
    float* vel = static_cast<float*>(a.velocity);
    const OptimizerKernels& k = optimizer_kernels();
    for_chunks(a.n, [&](int64_t b, int64_t e) {
        k.rmsprop(a, p + b, grad + b, sq + b, vel ? vel + b : nullptr, e - b);
    });
}

void rmsprop_step_many_f32(const RmspropManyArgs& a) {
    const OptimizerKernels& k = optimizer_kernels();
    for_tensor_chunks(a, [&](const RmspropArgs& x, int64_t b, int64_t e) {
        k.rmsprop(x, static_cast<float*>(x.param) + b, static_cast<const float*>(x.grad) + b,
                  static_cast<float*>(x.square_avg) + b, at(x.velocity, b), e - b);
    });
}

void adagrad_step_f32(const AdagradArgs& a) {
    float* p = static_cast<float*>(a.param);
    const float* grad = static_cast<const float*>(a.grad);
    float* sum = static_cast<float*>(a.sum);
    const OptimizerKernels& k = optimizer_kernels();
    for_chunks(a.n, [&](int64_t b, int64_t e) { k.adagrad(a, p + b, grad + b, sum + b, e - b); });
}

void adagrad_step_many_f32(const AdagradManyArgs& a) {
    const OptimizerKernels& k = optimizer_kernels();
    for_tensor_chunks(a, [&](const AdagradArgs& x, int64_t b, int64_t e) {
        k.adagrad(x, static_cast<float*>(x.param) + b, static_cast<const float*>(x.grad) + b,
                  static_cast<float*>(x.sum) + b, e - b);
    });
}

}  // namespace kn::cpu
