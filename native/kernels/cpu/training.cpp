// training.cpp: the kernels a training step needs around the big ones, on the CPU:
// fused cross-entropy (log-softmax + NLL) forward/backward, Philox dropout, clamp, and one fused
// pass per optimizer update (SGD, Adam/AdamW, RMSprop, Adagrad).
//
// All of them are memory-bound: an Adam step reads param, grad, m, v and writes param, m, v, so 28
// bytes per element for ~15 flops. The loops are written so the compiler vectorises them (no
// branches on data, restrict pointers), and they run on the thread pool in chunks of 16K elements
// (64 KB per array: large enough to amortise the ~5 us hand-off, small enough for L2).
#include "cpu_kernels.h"
#include "span_kernels.h"
#include "thread_pool.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace kn::cpu {
namespace {

constexpr int64_t kGrain = 1 << 14;

// Chunks of [0, n) on the pool.
template <typename F>
void for_chunks(int64_t n, F&& body) {
    parallel_for(n, kGrain, [&](int64_t begin, int64_t end) { body(begin, end); });
}

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

void sgd_step_f32(const SgdArgs& a) {
    float* p = static_cast<float*>(a.param);
    const float* grad = static_cast<const float*>(a.grad);
    float* vel = static_cast<float*>(a.velocity);
    for_chunks(a.n, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) {
            float g = grad[i] + a.weight_decay * p[i];
            if (vel) {
                float v = a.first_step ? g : a.momentum * vel[i] + (1.0f - a.dampening) * g;
                vel[i] = v;
                g = a.nesterov ? g + a.momentum * v : v;
            }
            p[i] -= a.lr * g;
        }
    });
}

void adam_step_f32(const AdamArgs& a) {
    float* p = static_cast<float*>(a.param);
    const float* grad = static_cast<const float*>(a.grad);
    float* m = static_cast<float*>(a.m);
    float* v = static_cast<float*>(a.v);
    // Bias corrections in double: beta2^t for t in the millions underflows gracefully to 0.
    const float c1 = static_cast<float>(1.0 / (1.0 - std::pow(static_cast<double>(a.beta1), static_cast<double>(a.step))));
    const float c2 = static_cast<float>(1.0 / (1.0 - std::pow(static_cast<double>(a.beta2), static_cast<double>(a.step))));
    const float decay = a.decoupled_weight_decay ? 1.0f - a.lr * a.weight_decay : 1.0f;
    const float l2 = a.decoupled_weight_decay ? 0.0f : a.weight_decay;
    for_chunks(a.n, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) {
            float w = p[i] * decay;
            float g = grad[i] + l2 * p[i];
            float mi = a.beta1 * m[i] + (1.0f - a.beta1) * g;
            float vi = a.beta2 * v[i] + (1.0f - a.beta2) * g * g;
            m[i] = mi;
            v[i] = vi;
            p[i] = w - a.lr * (mi * c1) / (std::sqrt(vi * c2) + a.eps);
        }
    });
}

void rmsprop_step_f32(const RmspropArgs& a) {
    float* p = static_cast<float*>(a.param);
    const float* grad = static_cast<const float*>(a.grad);
    float* sq = static_cast<float*>(a.square_avg);
    float* vel = static_cast<float*>(a.velocity);
    for_chunks(a.n, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) {
            float g = grad[i] + a.weight_decay * p[i];
            float s = a.alpha * sq[i] + (1.0f - a.alpha) * g * g;
            sq[i] = s;
            float step = g / (std::sqrt(s) + a.eps);
            if (vel) {
                float v = a.momentum * vel[i] + step;
                vel[i] = v;
                step = v;
            }
            p[i] -= a.lr * step;
        }
    });
}

void adagrad_step_f32(const AdagradArgs& a) {
    float* p = static_cast<float*>(a.param);
    const float* grad = static_cast<const float*>(a.grad);
    float* sum = static_cast<float*>(a.sum);
    for_chunks(a.n, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) {
            float g = grad[i] + a.weight_decay * p[i];
            float s = sum[i] + g * g;
            sum[i] = s;
            p[i] -= a.lr * g / (std::sqrt(s) + a.eps);
        }
    });
}

}  // namespace kn::cpu
