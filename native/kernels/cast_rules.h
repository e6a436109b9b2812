// cast_rules.h: the conversions of kn_cast (kernels.h states them), written once for the CPU and CUDA
// backends. The OpenCL kernels use the built-ins with the same rules (convert_int_sat_rtz,
// convert_long_sat_rtz, the low word of a long), checked equal by the self-test.
//
// float -> integer is the one conversion C leaves undefined out of range (and for NaN); here it
// saturates and maps NaN to 0, which is what the GPUs' own round-toward-zero conversions do
// (PTX cvt.rzi.sat, OpenCL's _sat_rtz), so the three backends give the same bits for every input.
#pragma once

#include <stdint.h>
#include <string.h>

#if defined(__CUDACC__)
#define KN_CAST_FN __host__ __device__ __forceinline__
#else
#define KN_CAST_FN inline
#endif

namespace kn {

// The bounds are written as exact powers of two: 2^31 and 2^63 are floats, INT32_MAX and INT64_MAX
// are not (they would round up to the power of two and let it through).
KN_CAST_FN int32_t cast_float_to_int32(float x) {
    if (x != x) return 0;                          // NaN
    if (x >= 2147483648.0f) return INT32_MAX;      // >= 2^31, +inf
    if (x < -2147483648.0f) return INT32_MIN;      // < -2^31, -inf
    return static_cast<int32_t>(x);                // truncation toward zero, in range
}

// Within int32's range the 32-bit conversion does it. Beyond (2^31 <= |x| < 2^63) x is a whole number
// (every float from 2^24 up is), rebuilt from its bits with integer operations: mantissa << (exponent - 23).
// Not the hardware's float -> int64 conversion: GPGPU-Sim's cvt.rzi.s64.f32 wraps 2^31 to -2^31 (found
// by the self-test on the simulated GPU), and this form is exact on every backend and simulator.
KN_CAST_FN int64_t cast_float_to_int64(float x) {
    if (x != x) return 0;
    if (x >= 9223372036854775808.0f) return INT64_MAX;   // >= 2^63
    if (x <= -9223372036854775808.0f) return INT64_MIN;  // <= -2^63 (-2^63 itself is INT64_MIN)
    if (x > -2147483648.0f && x < 2147483648.0f) return cast_float_to_int32(x);
    uint32_t bits;
    memcpy(&bits, &x, sizeof bits);
    const int shift = static_cast<int>((bits >> 23) & 0xFFu) - 150;  // 8..39 here: 2^31 <= |x| < 2^63
    const int64_t magnitude = static_cast<int64_t>((bits & 0x7FFFFFu) | 0x800000u) << shift;
    return (bits >> 31) ? -magnitude : magnitude;
}

// The low 32 bits as a two's-complement int32 (the unsigned steps are defined for every value).
KN_CAST_FN int32_t cast_int64_to_int32(int64_t x) {
    const uint32_t low = static_cast<uint32_t>(static_cast<uint64_t>(x));
    return low <= 0x7FFFFFFFu ? static_cast<int32_t>(low) : static_cast<int32_t>(low - 0x80000000u) + INT32_MIN;
}

}  // namespace kn
