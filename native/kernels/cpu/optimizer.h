// optimizer.h: the CPU backend's optimizer updates over one contiguous span (SGD, Adam/AdamW,
// RMSprop, Adagrad). The same source, optimizer_impl.h, is compiled three times (optimizer.cpp
// portable, optimizer_avx2.cpp, optimizer_avx512.cpp) and the compiler vectorises it for each
// instruction set; optimizer_kernels() hands out the table of the widest set this CPU runs.
// training.cpp does the threading (and, for the kn_*_step_many_f32 calls, the walk over the tensors).
#pragma once

#include "cpu_kernels.h"

namespace kn::cpu {

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
