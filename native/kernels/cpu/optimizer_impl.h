// optimizer_impl.h: the bodies of the optimizer span kernels (see optimizer.h), plain C++ loops the
// compiler vectorises. Included once per instruction set with KN_ISA naming the namespace
// (portable, avx2, avx512: see KN_ISA_ENTRY in cpu_kernels.h); everything except optimizer_table()
// has internal linkage, so the three compilations never meet at link time.
//
// All four updates are memory-bound (Adam moves 28 bytes per element for ~15 flops). sqrt and the
// division stay the exact IEEE operations (vsqrtps / vdivps; no rsqrt approximation), so every
// instruction set computes the same formula; the SIMD paths may differ from the portable one only
// where the compiler contracts a * b + c into one FMA (one rounding fewer).
// __restrict: the operands never alias (the C API refuses it), which spares the compiler's
// run-time overlap checks between four or five pointers.
// Each update runs with subnormals flushed to zero on x86 (FlushSubnormals, optimizer.h).
#ifndef KN_ISA
#error "define KN_ISA (portable, avx2 or avx512) before including optimizer_impl.h"
#endif

#include "optimizer.h"

#include <cmath>
#include <cstdint>

namespace kn::cpu::KN_ISA {
namespace {

void sgd(const SgdArgs& a, float* __restrict p, const float* __restrict grad, float* __restrict vel, int64_t n) {
    const FlushSubnormals flush;  // optimizer.h: subnormal states cost Intel cores ~100 cycles each
    const float lr = a.lr, wd = a.weight_decay, momentum = a.momentum, keep = 1.0f - a.dampening;
    if (!vel) {
        for (int64_t i = 0; i < n; ++i) p[i] -= lr * (grad[i] + wd * p[i]);
        return;
    }
    // One loop per (first_step, nesterov) case: no data-independent branch inside the loop.
    if (a.first_step) {
        for (int64_t i = 0; i < n; ++i) {
            float g = grad[i] + wd * p[i];
            vel[i] = g;
            p[i] -= lr * (a.nesterov ? g + momentum * g : g);
        }
    } else if (a.nesterov) {
        for (int64_t i = 0; i < n; ++i) {
            float g = grad[i] + wd * p[i];
            float v = momentum * vel[i] + keep * g;
            vel[i] = v;
            p[i] -= lr * (g + momentum * v);
        }
    } else {
        for (int64_t i = 0; i < n; ++i) {
            float g = grad[i] + wd * p[i];
            float v = momentum * vel[i] + keep * g;
            vel[i] = v;
            p[i] -= lr * v;
        }
    }
}

void adam(const AdamConstants& k, float* __restrict p, const float* __restrict grad, float* __restrict m,
          float* __restrict v, int64_t n) {
    const FlushSubnormals flush;  // optimizer.h: subnormal states cost Intel cores ~100 cycles each
    const float lr = k.lr, beta1 = k.beta1, beta2 = k.beta2, eps = k.eps, decay = k.decay, l2 = k.l2, c1 = k.c1,
                c2 = k.c2;
    const float one_minus_beta1 = 1.0f - beta1, one_minus_beta2 = 1.0f - beta2;
    for (int64_t i = 0; i < n; ++i) {
        float w = p[i] * decay;
        float g = grad[i] + l2 * p[i];
        float mi = beta1 * m[i] + one_minus_beta1 * g;
        float vi = beta2 * v[i] + one_minus_beta2 * g * g;
        m[i] = mi;
        v[i] = vi;
        p[i] = w - lr * (mi * c1) / (std::sqrt(vi * c2) + eps);
    }
}

void rmsprop(const RmspropArgs& a, float* __restrict p, const float* __restrict grad, float* __restrict sq,
             float* __restrict vel, int64_t n) {
    const FlushSubnormals flush;  // optimizer.h: subnormal states cost Intel cores ~100 cycles each
    const float lr = a.lr, alpha = a.alpha, one_minus_alpha = 1.0f - a.alpha, eps = a.eps, wd = a.weight_decay,
                momentum = a.momentum;
    if (!vel) {
        for (int64_t i = 0; i < n; ++i) {
            float g = grad[i] + wd * p[i];
            float s = alpha * sq[i] + one_minus_alpha * g * g;
            sq[i] = s;
            p[i] -= lr * (g / (std::sqrt(s) + eps));
        }
        return;
    }
    for (int64_t i = 0; i < n; ++i) {
        float g = grad[i] + wd * p[i];
        float s = alpha * sq[i] + one_minus_alpha * g * g;
        sq[i] = s;
        float v = momentum * vel[i] + g / (std::sqrt(s) + eps);
        vel[i] = v;
        p[i] -= lr * v;
    }
}

void adagrad(const AdagradArgs& a, float* __restrict p, const float* __restrict grad, float* __restrict sum,
             int64_t n) {
    const FlushSubnormals flush;  // optimizer.h: subnormal states cost Intel cores ~100 cycles each
    const float lr = a.lr, eps = a.eps, wd = a.weight_decay;
    for (int64_t i = 0; i < n; ++i) {
        float g = grad[i] + wd * p[i];
        float s = sum[i] + g * g;
        sum[i] = s;
        p[i] -= lr * g / (std::sqrt(s) + eps);
    }
}

}  // namespace

const OptimizerKernels& optimizer_table() {
    static const OptimizerKernels kernels = {sgd, adam, rmsprop, adagrad};
    return kernels;
}

}  // namespace kn::cpu::KN_ISA
