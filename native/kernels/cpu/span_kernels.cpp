// span_kernels.cpp: the span kernels (span_kernels_impl.h) compiled for the baseline instruction
// set (SSE2 on x86-64, NEON on AArch64), and the choice of table for this CPU.
#define KN_SPAN_NAMESPACE portable
#include "span_kernels_impl.h"

namespace kn::cpu {

const SpanKernels& span_kernels() {
    static const SpanKernels& chosen = [] () -> const SpanKernels& {
#if KN_CPU_X86
        switch (simd_level()) {
            case SimdLevel::avx512: return avx512::table();
            case SimdLevel::avx2: return avx2::table();
            default: break;
        }
#endif
        return portable::table();
    }();
    return chosen;
}

}  // namespace kn::cpu
