// span_kernels.cpp: the span kernels (span_kernels_impl.h) compiled for the baseline instruction
// set (SSE2 on x86-64, NEON on AArch64), and the choice of table for this CPU.
#define KN_ISA portable
#include "span_kernels_impl.h"

namespace kn::cpu {

const SpanKernels& span_kernels() {
    static const SpanKernels& chosen = KN_ISA_ENTRY(table)();
    return chosen;
}

}  // namespace kn::cpu
