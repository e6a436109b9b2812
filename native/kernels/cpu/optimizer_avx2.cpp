// optimizer_avx2.cpp: the optimizer span kernels (optimizer_impl.h) compiled for AVX2 + FMA, 8 floats per
// instruction. Entered only after simd_level() has seen the instruction set in CPUID.
#include "cpu_kernels.h"

#if KN_CPU_X86
#define KN_ISA avx2
#include "optimizer_impl.h"
#endif
