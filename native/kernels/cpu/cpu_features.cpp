// cpu_features.cpp: which SIMD instruction set the CPU backend uses, decided once per process from
// CPUID (and the OS's saved-register support, XGETBV), lowered on request by KN_CPU_SIMD.
#include "cpu_kernels.h"

#include <cstdlib>
#include <cstring>

#if KN_CPU_X86 && defined(_MSC_VER) && !defined(__clang__)
#include <immintrin.h>
#include <intrin.h>
#endif

namespace kn::cpu {
namespace {

SimdLevel detect_hardware() {
#if KN_CPU_X86
#if defined(_MSC_VER) && !defined(__clang__)
    int info[4];
    __cpuid(info, 0);
    const int max_leaf = info[0];
    __cpuid(info, 1);
    const bool osxsave = (info[2] >> 27) & 1, avx = (info[2] >> 28) & 1, fma = (info[2] >> 12) & 1;
    if (!osxsave || !avx) return SimdLevel::portable;
    // The OS must save the registers: XMM+YMM state (bits 1, 2), plus opmask/ZMM (bits 5, 6, 7).
    const unsigned long long xcr0 = _xgetbv(0);
    const bool os_ymm = (xcr0 & 0x6) == 0x6, os_zmm = (xcr0 & 0xE6) == 0xE6;
    if (max_leaf < 7 || !os_ymm) return SimdLevel::portable;
    __cpuidex(info, 7, 0);
    const unsigned ebx = static_cast<unsigned>(info[1]);
    const bool avx2 = (ebx >> 5) & 1;
    const bool avx512 = ((ebx >> 16) & 1) && ((ebx >> 17) & 1) && ((ebx >> 30) & 1) && ((ebx >> 31) & 1);
    if (avx2 && fma && avx512 && os_zmm) return SimdLevel::avx512;
    if (avx2 && fma) return SimdLevel::avx2;
    return SimdLevel::portable;
#else
    // libgcc / compiler-rt also check XGETBV, so these answers include the OS's support.
    __builtin_cpu_init();
    const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                        __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
    if (avx2 && avx512) return SimdLevel::avx512;
    if (avx2) return SimdLevel::avx2;
    return SimdLevel::portable;
#endif
#else
    return SimdLevel::portable;
#endif
}

SimdLevel detect() {
    SimdLevel level = detect_hardware();
    // The override can only lower the level: asking for an ISA the CPU lacks would crash.
    if (const char* env = std::getenv("KN_CPU_SIMD")) {
        SimdLevel wanted = level;
        if (std::strcmp(env, "portable") == 0 || std::strcmp(env, "scalar") == 0) wanted = SimdLevel::portable;
        else if (std::strcmp(env, "avx2") == 0) wanted = SimdLevel::avx2;
        else if (std::strcmp(env, "avx512") == 0) wanted = SimdLevel::avx512;
        if (static_cast<int>(wanted) < static_cast<int>(level)) level = wanted;
    }
    return level;
}

}  // namespace

SimdLevel simd_level() {
    static const SimdLevel level = detect();
    return level;
}

int simd_width_bits(SimdLevel level) {
    switch (level) {
        case SimdLevel::avx512: return 512;
        case SimdLevel::avx2: return 256;
        default: return 128;
    }
}

const char* simd_level_name(SimdLevel level) {
    switch (level) {
        case SimdLevel::avx512: return "AVX-512";
        case SimdLevel::avx2: return "AVX2+FMA";
        default: return "portable";
    }
}

}  // namespace kn::cpu
