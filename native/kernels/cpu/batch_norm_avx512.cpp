// batch_norm_avx512.cpp: batch normalization's per-element loops (batch_norm_impl.h) compiled for
// AVX-512, 16 floats per instruction. Entered only after simd_level() has seen the
// instruction set in CPUID (batch_norm.cpp).
#include "cpu_kernels.h"

#if KN_CPU_X86
#define KN_ISA avx512
#include "batch_norm_impl.h"
#endif
