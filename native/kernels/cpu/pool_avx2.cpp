// pool_avx2.cpp: the pooling plane loops (pool_impl.h) compiled for AVX2 + FMA, 8 floats per instruction.
// Entered only after simd_level() has seen the instruction set in CPUID (pool.cpp).
#include "cpu_kernels.h"

#if KN_CPU_X86
#define KN_ISA avx2
#include "pool_impl.h"
#endif
