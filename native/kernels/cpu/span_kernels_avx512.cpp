// span_kernels_avx512.cpp: the span kernels (span_kernels_impl.h) compiled for AVX-512, 16 floats
// per instruction. Entered only after simd_level() has seen AVX-512 F/BW/DQ/VL in CPUID.
#include "cpu_kernels.h"

#if KN_CPU_X86
#define KN_ISA avx512
#include "span_kernels_impl.h"
#endif
