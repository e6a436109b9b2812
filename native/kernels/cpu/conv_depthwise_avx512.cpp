// conv_depthwise_avx512.cpp: the depthwise convolution's plane loops (conv_depthwise_impl.h) compiled for
// AVX-512, 16 floats per instruction. Entered only after simd_level() has seen the instruction set in
// CPUID (conv.cpp).
#include "cpu_kernels.h"

#if KN_CPU_X86
#define KN_ISA avx512
#include "conv_depthwise_impl.h"
#endif
