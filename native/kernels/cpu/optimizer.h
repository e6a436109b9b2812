// optimizer.h: the CPU backend's optimizer updates over one contiguous span (SGD, Adam/AdamW,
// RMSprop, Adagrad). The same source, optimizer_impl.h, is compiled three times (optimizer.cpp
// portable, optimizer_avx2.cpp, optimizer_avx512.cpp) and the compiler vectorises it for each
// instruction set; optimizer_kernels() hands out the table of the widest set this CPU runs.
// training.cpp does the threading (and, for the kn_*_step_many_f32 calls, the walk over the tensors).
#pragma once

#include "cpu_kernels.h"

#if KN_CPU_X86
#include <immintrin.h>
#endif

namespace kn::cpu {

// Flushes subnormal floats (|x| < 2^-126, ~1.2e-38) to zero, inputs and results, on the calling
// thread for its lifetime: MXCSR's FTZ and DAZ bits set, the caller's MXCSR put back after. Every
// optimizer span kernel runs under one (TensorFlow runs its CPU kernels the same way).
// Why: Adam's and RMSprop's running averages decay geometrically wherever a gradient is (near)
// zero (a dead unit, an input pixel that is always 0, a batch the network already fits), and pass
// through the subnormal range on their way to 0 (v by 0.999 per step: ~16,000 steps there). On Intel
// cores each operation with a subnormal operand or result takes a microcode assist (~100+ cycles):
// the MNIST MLP step, which trains on one batch over and over, ran 0.34x of its GEMMs' time on
// OpenBLAS in half the rounds on an Intel Xeon (Sapphire Rapids class) instead of 0.78-0.81x, with
// Adam 25% of all samples in perf (the whole step at 0.78-0.81x with the flush). The values lost are
// below 1.2e-38; an update that small changes no parameter above ~1e-30. Zen cores have no such
// penalty, GPUs neither: the CUDA and OpenCL updates keep IEEE subnormals.
class FlushSubnormals {
public:
#if KN_CPU_X86
    FlushSubnormals() : saved_(_mm_getcsr()) { _mm_setcsr(saved_ | kFtz | kDaz); }
    ~FlushSubnormals() { _mm_setcsr(saved_); }
#else
    FlushSubnormals() {}  // other CPUs: IEEE subnormals (no x86 MXCSR to set)
#endif
    FlushSubnormals(const FlushSubnormals&) = delete;
    FlushSubnormals& operator=(const FlushSubnormals&) = delete;

private:
#if KN_CPU_X86
    static constexpr unsigned kFtz = 0x8000;  // MXCSR bit 15: flush subnormal results to zero
    static constexpr unsigned kDaz = 0x0040;  // MXCSR bit 6: read subnormal inputs as zero
    unsigned saved_;
#endif
};

// Adam's per-call constants, computed once per call (training.cpp: adam_constants).
struct AdamConstants {
    float lr, beta1, beta2, eps;
    float decay;  // param *= decay first: 1 - lr * weight_decay for AdamW, else 1
    float l2;     // g += l2 * param: weight_decay for Adam, else 0
    float c1, c2; // bias corrections 1 / (1 - beta^t)
};

struct OptimizerKernels {
    // Elements [0, n) of one tensor; the pointers are already offset to the span. No operand
    // aliases another (the C API checks that).
    void (*sgd)(const SgdArgs& args, float* param, const float* grad, float* velocity, int64_t n);
    void (*adam)(const AdamConstants& k, float* param, const float* grad, float* m, float* v, int64_t n);
    void (*rmsprop)(const RmspropArgs& args, float* param, const float* grad, float* square_avg, float* velocity,
                    int64_t n);
    void (*adagrad)(const AdagradArgs& args, float* param, const float* grad, float* sum, int64_t n);
};

const OptimizerKernels& optimizer_kernels();

namespace portable { const OptimizerKernels& optimizer_table(); }
namespace avx2 { const OptimizerKernels& optimizer_table(); }
namespace avx512 { const OptimizerKernels& optimizer_table(); }

}  // namespace kn::cpu
