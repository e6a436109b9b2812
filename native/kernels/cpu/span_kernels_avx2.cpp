// span_kernels_avx2.cpp: the span kernels (span_kernels_impl.h) compiled for AVX2 + FMA, 8 floats
// per instruction. Entered only after simd_level() has seen AVX2 and FMA in CPUID.
#include "cpu_kernels.h"

#if KN_CPU_X86
#define KN_ISA avx2
#include "span_kernels_impl.h"
#endif
