// optimizer.cpp: the optimizer span kernels (optimizer_impl.h) compiled for the baseline instruction
// set (SSE2 on x86-64, NEON on AArch64), and the choice of table for this CPU.
#define KN_ISA portable
#include "optimizer_impl.h"

namespace kn::cpu {

const OptimizerKernels& optimizer_kernels() {
    static const OptimizerKernels& chosen = KN_ISA_ENTRY(optimizer_table)();
    return chosen;
}

}  // namespace kn::cpu
