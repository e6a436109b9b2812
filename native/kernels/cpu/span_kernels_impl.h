// span_kernels_impl.h: the bodies of the span kernels (see span_kernels.h), written as plain C++
// loops that the compiler vectorises. Included once per instruction set with KN_ISA naming the
// namespace (portable, avx2, avx512: see KN_ISA_ENTRY in cpu_kernels.h); everything except table()
// has internal linkage, so the three compilations never meet at link time (an inline function
// compiled with AVX-512 must never be picked by the linker for the portable path).
//
// Technique: the transcendental functions the networks use all the time (exp, expm1, log, tanh,
// sigmoid, softplus, ELU) are branch-free float approximations derived here from Taylor series
// after range reduction, so each loop becomes straight-line SIMD code; rarer ones (erfc for GELU,
// in double; sin, cos, general pow) call the C library per element.
//   exp(x):   x = k ln2 + r, |r| <= ln2/2, e^r by its Taylor series to r^7 (truncation
//             0.347^8/8! = 5e-9 < float epsilon), 2^k applied as two exact power-of-two factors so
//             subnormal results and overflow to +inf come out right.
//   expm1(x): the same reduction, e^r - 1 by Taylor to r^8, then 2^k (e^r - 1) + (2^k - 1): no
//             cancellation near 0.
//   log(x):   x = m 2^e, m in [sqrt(1/2), sqrt(2)), ln m = 2 atanh(s), s = (m-1)/(m+1), |s| <= 0.172,
//             atanh series to s^11 (truncation 0.172^12/13 = 5e-11).
// Measured against double precision on ~45K inputs (a dense sweep of [-20, 20] and [-111, 111],
// powers of two from 2^-125 to 2^125, subnormals, +-0, +-inf, NaN), max relative error: exp 7e-8,
// log 1.7e-7, sigmoid 1.9e-7, ELU 1.2e-7, softplus 3.1e-7 (1-3 ulp); tanh is a rational fit
// (tanh_f below, 2.9e-7). Speed with
// AVX-512 on Zen 5, data in L1: exp 0.66 cycles/element, log 1.0, tanh 1.1, sigmoid 1.0, so from
// DRAM every one of them runs at memory speed on both cores. On ONE core they do not: measured
// from L1 (ns/element, AVX-512 / AVX2 on Zen 5): exp 0.19 / 0.36, tanh 0.30 / 0.53, sigmoid
// 0.25 / 0.51, against ~0.22 for a one-core copy from DRAM, so the expm1-based tanh reached only
// ~0.67x (AVX-512) and ~0.39x (AVX2) of one core's memcpy at 64M; the rational tanh_f and streaming
// stores for outputs past the last-level cache (unary_streaming) lift that (see tanh_f and
// benchmarks/results/2026-12-05-cpu-bandwidth-2).
// Selects after expensive arms go through blend() (below), so the loops vectorise even under GCC's
// default -ftrapping-math. sqrt vectorises only with -fno-math-errno; without it the code is still
// correct, only scalar there.
#ifndef KN_ISA
#error "define KN_ISA (portable, avx2 or avx512) before including span_kernels_impl.h"
#endif

#include "span_kernels.h"
#include "philox.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#if KN_CPU_X86
#include <immintrin.h>
#endif

namespace kn::cpu::KN_ISA {
namespace {

// ---- Scalar building blocks (inlined into the loops) -----------------------------------------

inline float as_float(int32_t bits) {
    float f;
    std::memcpy(&f, &bits, sizeof(f));
    return f;
}
inline int32_t as_bits(float f) {
    int32_t bits;
    std::memcpy(&bits, &f, sizeof(bits));
    return bits;
}
inline bool is_nan(float v) { return v != v; }
// c ? a : b as a bitwise blend of two computed values. A plain ?: whose arm holds the expensive
// result lets GCC sink that computation into a branch, and then (under its default
// -ftrapping-math) refuse to vectorise the loop; the blend keeps both arms unconditional.
inline float blend(bool c, float a, float b) {
    const int32_t mask = -static_cast<int32_t>(c);
    int32_t ia, ib;
    std::memcpy(&ia, &a, sizeof(ia));
    std::memcpy(&ib, &b, sizeof(ib));
    const int32_t r = (ia & mask) | (ib & ~mask);
    float f;
    std::memcpy(&f, &r, sizeof(f));
    return f;
}
inline int32_t blend(bool c, int32_t a, int32_t b) {
    const int32_t mask = -static_cast<int32_t>(c);
    return (a & mask) | (b & ~mask);
}
// c ? a : b for a clamp, where both arms are already computed. With AVX-512 GCC turns the plain
// ?: into one vmaxps/vminps; for AVX2 (GCC 12) the same ?: left the whole loop scalar ("control
// flow in loop": exp, tanh, sigmoid, ELU and softplus ran 7-16x slower than vectorised), so there
// it goes through blend(), which costs three integer operations instead of one.
inline float select(bool c, float a, float b) {
#if defined(__AVX512F__)
    return c ? a : b;
#else
    return blend(c, a, b);
#endif
}

// The C library's functions through the compiler's builtins: a std:: overload is an inline
// function with external linkage, and a copy compiled with AVX-512 could be picked by the linker
// for the portable code too; these helpers have internal linkage.
#if defined(__GNUC__)
inline float sqrt_f(float v) { return __builtin_sqrtf(v); }
inline float fabs_f(float v) { return __builtin_fabsf(v); }
inline float pow_f(float u, float v) { return __builtin_powf(u, v); }
inline float libm_log_f(float v) { return __builtin_logf(v); }
inline double erfc_d(double v) { return __builtin_erfc(v); }
inline double exp_d(double v) { return __builtin_exp(v); }
inline float sin_f(float v) { return __builtin_sinf(v); }
inline float cos_f(float v) { return __builtin_cosf(v); }
#else
inline float sqrt_f(float v) { return std::sqrt(v); }
inline float fabs_f(float v) { return std::fabs(v); }
inline float pow_f(float u, float v) { return std::pow(u, v); }
inline float libm_log_f(float v) { return std::log(v); }
inline double erfc_d(double v) { return std::erfc(v); }
inline double exp_d(double v) { return std::exp(v); }
inline float sin_f(float v) { return std::sin(v); }
inline float cos_f(float v) { return std::cos(v); }
#endif
// Round to the nearest integer (ties to even) for |v| < 2^22: adding 1.5 * 2^23 pushes the
// fraction bits out of the significand.
inline float round_to_integer(float v) { return (v + 12582912.0f) - 12582912.0f; }

constexpr float kLog2e = 1.44269504088896341f;
constexpr float kLn2Hi = 0.693359375f;        // ln 2 with 9 significant bits: k * kLn2Hi is exact
constexpr float kLn2Lo = -2.12194440e-4f;     // ln 2 - kLn2Hi
constexpr float kInfinity = HUGE_VALF;
constexpr double kSqrtHalfD = 0.70710678118654752;
constexpr double kInvSqrt2PiD = 0.39894228040143268;

// e^x = 2^k e^r after the range reduction r = x - k ln2 (|r| <= ln2 / 2), for exp_f (softmax has
// its own, exp_scaled_nonpositive): e^r by its degree-7 Taylor polynomial, 2^k
// for k in [-150, 128] as 2^k1 * 2^k2 with both factors normal floats (k1, k2 >= -75), so results
// in the subnormal range stay right. The exponent field is shifted as unsigned: for a NaN input k is
// whatever the caller derived from the NaN's bits and k + 127 can be negative, whose signed left
// shift is undefined (UBSan caught it); the factors are then garbage but the polynomial is NaN, and
// so is the product, as it must be.
inline float exp_reduced(float r, int32_t k) {
    float p = 1.0f / 5040.0f;
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    const int32_t k1 = k >> 1, k2 = k - k1;  // arithmetic shift: floor(k / 2)
    const auto two_to = [](int32_t e) { return as_float(static_cast<int32_t>(static_cast<uint32_t>(e + 127) << 23)); };
    return p * two_to(k1) * two_to(k2);
}

inline float exp_f(float x) {
    // Clamp where the answer is already 0 (e^-104 < half the smallest subnormal) or +inf
    // (e^89 > FLT_MAX). Written so a NaN input picks the constant (the x86 maxps/minps rule, one
    // instruction each); the NaN itself is restored at the end.
    float xc = select(x > -104.0f, x, -104.0f);
    xc = select(xc < 89.0f, xc, 89.0f);
    const float k = round_to_integer(xc * kLog2e);
    const float r = (xc - k * kLn2Hi) - k * kLn2Lo;
    const float result = exp_reduced(r, static_cast<int32_t>(k));
    return blend(is_nan(x), x, result);
}

// e^x - 1 for x <= 0 (larger x is treated as 0: callers select another branch there).
inline float expm1_nonpositive(float x) {
    float xc = select(x > -30.0f, x, -30.0f);  // e^-30 - 1 rounds to -1; NaN picks -30 (restored below)
    xc = select(xc < 0.0f, xc, 0.0f);
    const float k = round_to_integer(xc * kLog2e);  // in [-44, 0]
    const float r = (xc - k * kLn2Hi) - k * kLn2Lo;
    float p = 1.0f / 40320.0f;
    p = p * r + 1.0f / 5040.0f;
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    const float em1 = p * r;  // e^r - 1
    const float scale = as_float((static_cast<int32_t>(k) + 127) << 23);
    const float result = scale * em1 + (scale - 1.0f);
    return blend(is_nan(x), x, result);
}

inline float log_f(float x) {
    // Subnormals are scaled into the normal range first; 0, negatives, inf and NaN are patched in
    // at the end.
    const bool subnormal = x < 1.17549435e-38f;
    const float scaled = x * 8388608.0f;  // computed unconditionally: see the note on selects above
    const float xs = blend(subnormal, scaled, x);
    const int32_t bits = as_bits(xs);
    int32_t e = ((bits >> 23) & 0xff) - 127 - blend(subnormal, int32_t{23}, int32_t{0});
    float m = as_float((bits & 0x007fffff) | 0x3f800000);  // [1, 2)
    const bool upper = m > 1.41421356f;
    const float half = m * 0.5f;
    m = blend(upper, half, m);
    e = blend(upper, e + 1, e);
    const float s = (m - 1.0f) / (m + 1.0f), s2 = s * s;
    float p = 1.0f / 11.0f;
    p = p * s2 + 1.0f / 9.0f;
    p = p * s2 + 1.0f / 7.0f;
    p = p * s2 + 1.0f / 5.0f;
    p = p * s2 + 1.0f / 3.0f;
    p = p * s2 + 1.0f;
    const float fe = static_cast<float>(e);
    float result = fe * kLn2Hi + (2.0f * s * p + fe * kLn2Lo);
    result = blend(x == 0.0f, -kInfinity, result);
    result = blend(x < 0.0f, NAN, result);
    result = blend(x == kInfinity, kInfinity, result);
    return blend(is_nan(x), x, result);
}

// ln(1 + t) for t in [0, 1]: log of the rounded 1 + t, corrected by the rounding error
// (Goldberg, "What every computer scientist should know about floating-point", Theorem 4).
inline float log1p_unit(float t) {
    const float u = 1.0f + t;
    const float d = u - 1.0f;
    const float ratio = t / blend(d == 0.0f, 1.0f, d);
    const float corrected = log_f(u) * ratio;
    return blend(d == 0.0f, t, corrected);
}

// tanh as Eigen's ptanh_float (generic_fast_tanh_float): an odd degree-13 / even degree-6 rational
// minimax fit on the clamped input, x itself for |x| < 0.0004 (tanh x = x - x^3/3: relative error
// below 5.4e-8, under half an ulp). Cost per vector: |x|, 1 clamp, 1 square, 10 FMAs + 1 product, 1
// division, 1 output clamp, the sign put back (2), 1 compare + blend (~19 operations) against ~30 for the former expm1-based
// -e / (2 + e), which left one core compute-bound (0.30 ns/element with AVX-512 and 0.53 with AVX2
// from L1, against ~0.22 for a one-core copy from DRAM). Measured over a sweep of [-10, 10] in steps
// of 2^-12, [-0.01, 0.01] in steps of 1e-7, every power of two, subnormals, +-0, +-inf, NaN, 282772
// points against double tanh): at most 4.6 ulp / 2.9e-7 relative with FMA (AVX-512, AVX2), 6.1 ulp
// / 3.6e-7 without (the portable SSE2 build), against 2.5 ulp / 1.8e-7 for the expm1 form; the
// worst error is 3.3% of the self-test's tolerance (1e-5 |ref| + 1e-6). Beyond the clamp the fit
// gives +-1 exactly (the output clamp). NaN fails |x| >= 0.0004 and passes through as x; +-0 keep their sign (the expm1 form
// turned +0 into -0).
// Speed, one Zen 5 core, tanh/1M from cache: 0.21x -> 0.38x of a one-core memcpy with AVX-512,
// 0.12x -> 0.29x on the AVX2 path; tanh/64M 0.63x -> 0.96x and 0.41x -> 0.70x (streaming stores too),
// then 0.76-0.78x and 0.57x with the output clamp that makes +-1 exact for every compiler (load 1.4-2.2).
// Evaluated on |x| (one clamp at each end): tanh/64M 0.77-0.78x -> 0.97-0.99x with AVX-512; the AVX2 path
// stayed 0.58-0.63x (benchmarks/results/2026-12-05-cpu-bandwidth-3); its loop written out (tanh_avx2 below):
// 0.57-0.61x -> 0.72-0.73x (benchmarks/results/2026-12-05-cpu-bandwidth-4).
// tanh's odd rational fit (Eigen's), highest degree first: tanh x ~ x p(x^2) / q(x^2). One table for
// tanh_f and the AVX2 loop tanh_avx2, so the two cannot drift apart.
constexpr float kTanhP[7] = {-2.76076847742355e-16f, 2.00018790482477e-13f, -8.60467152213735e-11f, 5.12229709037114e-08f,
                             1.48572235717979e-05f, 6.37261928875436e-04f, 4.89352455891786e-03f};
constexpr float kTanhQ[4] = {1.19825839466702e-06f, 1.18534705686654e-04f, 2.26843463243900e-03f, 4.89352518554385e-03f};

inline float tanh_f(float x) {
    // +-1 exactly for large |x|, whatever the compiler: the clamp (9) lies past where the fit crosses 1
    // (r(9) = 1.035: its x^7-like growth beyond Eigen's fitted range, 7.905), and the result is clamped
    // to 1 below. Clamping the input at Eigen's own 7.905 / 7.999 gave exactly 1 only for one
    // FP contraction of the polynomials: clang-14's build gave tanh(inf) = 0.99999976 (4 ulp short).
    // Between 7.9 and 9, tanh x is within 2.5e-7 of 1, and the clamped result is 1.
    // The fit is odd, so it is evaluated on |x| and x's sign put back on the result: one clamp at
    // each end instead of two (each a compare and a blend with AVX2).
    constexpr float kClamp = 9.0f;
    const float ax = fabs_f(x);
    const float xc = select(ax < kClamp, ax, kClamp);  // NaN picks the clamp; x itself is returned below
    const float x2 = xc * xc;
    float p = kTanhP[0];
    for (int j = 1; j < 7; ++j) p = p * x2 + kTanhP[j];
    p = p * xc;
    float q = kTanhQ[0];
    for (int j = 1; j < 4; ++j) q = q * x2 + kTanhQ[j];
    float t = p / q;
    t = select(t < 1.0f, t, 1.0f);
    const float signed_t = as_float(as_bits(t) | (as_bits(x) & static_cast<int32_t>(0x80000000u)));
    return blend(!(ax >= 0.0004f), x, signed_t);
}

#if KN_CPU_X86 && defined(__AVX2__) && defined(__FMA__) && !defined(__AVX512F__)
// The AVX2 build's tanh loop, written out: tanh_f's operations one for one (the same FMAs, the same
// division, bit-identical results), with the clamps as vminps (a NaN picks the clamp, as select()
// does) where GCC 12 made each a compare and a vpblendvb, spilled a constant and reloaded x twice:
// ~30 instructions per 8 floats -> 21. One Zen 5 core from L1, 4096 floats: 0.37 -> 0.26 ns/element
// (a division per vector is not the bound: vrcpps and two correction steps measured 0.32-0.33, and two
// or four vectors per iteration 0.27 / 0.31; benchmarks/results/2026-12-05-cpu-bandwidth-4).
inline void tanh_avx2(const float* x, float* y, int64_t n) {
    const __m256 sign = _mm256_set1_ps(-0.0f), clamp = _mm256_set1_ps(9.0f), one = _mm256_set1_ps(1.0f);
    const __m256 tiny = _mm256_set1_ps(0.0004f);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 v = _mm256_loadu_ps(x + i);
        const __m256 ax = _mm256_andnot_ps(sign, v);
        const __m256 xc = _mm256_min_ps(ax, clamp);  // NaN: clamp (the second operand)
        const __m256 x2 = _mm256_mul_ps(xc, xc);
        // p and q interleaved (independent chains), each in tanh_f's order.
        __m256 p = _mm256_fmadd_ps(_mm256_set1_ps(kTanhP[0]), x2, _mm256_set1_ps(kTanhP[1]));
        __m256 q = _mm256_fmadd_ps(_mm256_set1_ps(kTanhQ[0]), x2, _mm256_set1_ps(kTanhQ[1]));
        p = _mm256_fmadd_ps(p, x2, _mm256_set1_ps(kTanhP[2]));
        q = _mm256_fmadd_ps(q, x2, _mm256_set1_ps(kTanhQ[2]));
        p = _mm256_fmadd_ps(p, x2, _mm256_set1_ps(kTanhP[3]));
        q = _mm256_fmadd_ps(q, x2, _mm256_set1_ps(kTanhQ[3]));
        p = _mm256_fmadd_ps(p, x2, _mm256_set1_ps(kTanhP[4]));
        p = _mm256_fmadd_ps(p, x2, _mm256_set1_ps(kTanhP[5]));
        p = _mm256_fmadd_ps(p, x2, _mm256_set1_ps(kTanhP[6]));
        p = _mm256_mul_ps(p, xc);
        const __m256 t = _mm256_min_ps(_mm256_div_ps(p, q), one);  // NaN: 1, as select(t < 1, t, 1)
        const __m256 signed_t = _mm256_or_ps(t, _mm256_and_ps(v, sign));
        const __m256 small = _mm256_cmp_ps(ax, tiny, _CMP_NGE_UQ);  // !(ax >= 0.0004): NaN too
        _mm256_storeu_ps(y + i, _mm256_blendv_ps(signed_t, v, small));
    }
    for (; i < n; ++i) y[i] = tanh_f(x[i]);
}
#define KN_TANH_AVX2 1
#endif

inline float sigmoid_f(float x) {
    // e^-|x| never overflows; for x < 0 the result e^x / (1 + e^x) keeps full relative accuracy
    // down into the subnormals.
    const float ax = fabs_f(x);
    const float e = exp_f(-ax);
    const float s = 1.0f / (1.0f + e);
    const float es = e * s;
    return blend(x < 0.0f, es, s);
}

inline float softplus_f(float x) {
    // ln(1 + e^x) = max(x, 0) + ln(1 + e^-|x|): nothing overflows for any x.
    const float ax = fabs_f(x);
    return blend(x > 0.0f, x, 0.0f) + log1p_unit(exp_f(-ax));
}

// GELU in double: in the left tail erfc(z) has relative condition number ~2z^2, so rounding
// -x/sqrt(2) to float would cost ~1e-5 relative error at x = -12.
inline float gelu_f(float x) {
    const double xd = x;
    return static_cast<float>(0.5 * xd * erfc_d(-xd * kSqrtHalfD));
}
inline float gelu_grad(float x) {
    // d/dx x Phi(x) = Phi(x) + x phi(x)
    const double xd = x;
    return static_cast<float>(0.5 * erfc_d(-xd * kSqrtHalfD) + xd * kInvSqrt2PiD * exp_d(-0.5 * xd * xd));
}

inline float sign_f(float x) { return x > 0.0f ? 1.0f : x < 0.0f ? -1.0f : x == 0.0f ? 0.0f : x; }

// x^alpha with the common exponents as plain arithmetic (exact and vectorisable) and the C
// library's powf for the rest, so special cases (negative bases, infinities) follow C99 pow.
template <typename F>
inline void for_each_pow(float alpha, int64_t n, F&& f) {
    if (alpha == 2.0f) f([](float x) { return x * x; });
    else if (alpha == 1.0f) f([](float x) { return x; });
    else if (alpha == 0.0f) f([](float) { return 1.0f; });
    else if (alpha == 3.0f) f([](float x) { return x * x * x; });
    // pow(x, 0.5) is sqrt except at -inf (pow: +inf, sqrt: NaN) and -0 (pow: +0, sqrt: -0); x + 0
    // turns -0 into +0, the blend fixes -inf, as C's powf, PyTorch and the GPU backends do.
    else if (alpha == 0.5f) f([](float x) { return blend(x == -kInfinity, kInfinity, sqrt_f(x + 0.0f)); });
    else if (alpha == -1.0f) f([](float x) { return 1.0f / x; });
    else f([alpha](float x) { return pow_f(x, alpha); });
    (void)n;
}

template <typename F>
inline void map(const float* x, float* y, int64_t n, F f) {
    for (int64_t i = 0; i < n; ++i) y[i] = f(x[i]);
}

// ---- Unary -------------------------------------------------------------------------------------

void unary(kn_unary_op op, float alpha, const float* x, float* y, int64_t n) {
    switch (op) {
        case KN_UNARY_NEG: map(x, y, n, [](float v) { return -v; }); break;
        case KN_UNARY_ABS: map(x, y, n, [](float v) { return fabs_f(v); }); break;
        case KN_UNARY_EXP: map(x, y, n, [](float v) { return exp_f(v); }); break;
        case KN_UNARY_LOG: map(x, y, n, [](float v) { return log_f(v); }); break;
        case KN_UNARY_SQRT: map(x, y, n, [](float v) { return sqrt_f(v); }); break;
        case KN_UNARY_RSQRT: map(x, y, n, [](float v) { return 1.0f / sqrt_f(v); }); break;
        case KN_UNARY_SQUARE: map(x, y, n, [](float v) { return v * v; }); break;
        case KN_UNARY_RECIPROCAL: map(x, y, n, [](float v) { return 1.0f / v; }); break;
        case KN_UNARY_TANH:
#if defined(KN_TANH_AVX2)
            tanh_avx2(x, y, n);
#else
            map(x, y, n, [](float v) { return tanh_f(v); });
#endif
            break;
        case KN_UNARY_SIGMOID: map(x, y, n, [](float v) { return sigmoid_f(v); }); break;
        case KN_UNARY_RELU: map(x, y, n, [](float v) { return v > 0.0f ? v : (is_nan(v) ? v : 0.0f); }); break;
        case KN_UNARY_LEAKY_RELU:
            map(x, y, n, [alpha](float v) {
                const float scaled = alpha * v;
                return blend(v > 0.0f, v, scaled);
            });
            break;
        case KN_UNARY_GELU: map(x, y, n, [](float v) { return gelu_f(v); }); break;
        case KN_UNARY_ELU:
            map(x, y, n, [alpha](float v) {
                const float negative = alpha * expm1_nonpositive(v);
                return blend(v > 0.0f, v, negative);
            });
            break;
        case KN_UNARY_SOFTPLUS: map(x, y, n, [](float v) { return softplus_f(v); }); break;
        case KN_UNARY_SIN: map(x, y, n, [](float v) { return sin_f(v); }); break;
        case KN_UNARY_COS: map(x, y, n, [](float v) { return cos_f(v); }); break;
        case KN_UNARY_SCALE: map(x, y, n, [alpha](float v) { return alpha * v; }); break;
        case KN_UNARY_ADD_SCALAR: map(x, y, n, [alpha](float v) { return v + alpha; }); break;
        case KN_UNARY_POW_SCALAR:
            for_each_pow(alpha, n, [&](auto pow_alpha) { map(x, y, n, pow_alpha); });
            break;
    }
}

// dst[i] = src[i] * scale with non-temporal stores (see kStreamingBytes): the lines of dst that lie
// wholly inside it go straight to memory without being read first; a partial line at either end
// takes ordinary stores. src is hot in L1 (a stack buffer the caller just filled); no fence here.
inline void store_streaming(const float* src, float scale, float* dst, int64_t n) {
    int64_t i = 0;
#if KN_CPU_X86
    const int64_t misaligned = static_cast<int64_t>(reinterpret_cast<uintptr_t>(dst) & 63) / 4;
    const int64_t head = std::min<int64_t>(n, misaligned == 0 ? 0 : 16 - misaligned);
    for (; i < head; ++i) dst[i] = src[i] * scale;
#if defined(__AVX512F__)
    const __m512 s16 = _mm512_set1_ps(scale);
    for (; i + 16 <= n; i += 16) _mm512_stream_ps(dst + i, _mm512_mul_ps(_mm512_loadu_ps(src + i), s16));
#elif defined(__AVX__)
    const __m256 s8 = _mm256_set1_ps(scale);
    for (; i + 16 <= n; i += 16) {
        _mm256_stream_ps(dst + i, _mm256_mul_ps(_mm256_loadu_ps(src + i), s8));
        _mm256_stream_ps(dst + i + 8, _mm256_mul_ps(_mm256_loadu_ps(src + i + 8), s8));
    }
#else
    const __m128 s4 = _mm_set1_ps(scale);
    for (; i + 16 <= n; i += 16)
        for (int64_t j = 0; j < 16; j += 4) _mm_stream_ps(dst + i + j, _mm_mul_ps(_mm_loadu_ps(src + i + j), s4));
#endif
#endif
    for (; i < n; ++i) dst[i] = src[i] * scale;
}

// unary() into a 512-byte stack buffer (L1), then streamed out: the buffer round trip costs two L1
// accesses per element, the streaming stores save a third of the DRAM traffic. Each chunk first
// requests its eight lines of x 4 KB ahead. Without that, on an Intel Xeon (Sapphire Rapids class,
// KVM guest) the arithmetic and the memory traffic added up instead of overlapping: tanh over 64M
// floats took 0.64-0.68 ns/element = 0.33 from L1 + 0.35 for a copy, 0.53x of a one-thread memcpy;
// with the prefetches 0.42 ns, 0.83x (AVX2 path 0.50x -> 0.76x). The chunk is small so the
// prefetches and the streaming stores stay interleaved with the arithmetic: 4 KB chunks with the
// same prefetches measured 0.70x, 1 KB 0.77-0.80x, 256 B 0.81x (native/dev/bandwidth_cpu_bench).
void unary_streaming(kn_unary_op op, float alpha, const float* x, float* y, int64_t n) {
    constexpr int64_t kChunk = 128;
    constexpr int64_t kPrefetchAhead = 4096;  // bytes
    alignas(64) float buffer[kChunk];
    for (int64_t i = 0; i < n; i += kChunk) {
        const int64_t m = std::min(kChunk, n - i);
#if defined(__GNUC__)
        // Past the end of x these fetch lines nobody reads; a prefetch never faults.
        const char* ahead = reinterpret_cast<const char*>(x + i) + kPrefetchAhead;
        for (int64_t b = 0; b < kChunk * static_cast<int64_t>(sizeof(float)); b += 64) __builtin_prefetch(ahead + b, 0, 3);
#endif
        unary(op, alpha, x + i, buffer, m);
        store_streaming(buffer, 1.0f, y + i, m);
    }
}

// dx[i] = dy[i] * g(s[i]) where s is x or y.
template <typename G>
inline void scale_by(const float* s, const float* dy, float* dx, int64_t n, G g) {
    for (int64_t i = 0; i < n; ++i) dx[i] = dy[i] * g(s[i]);
}

void unary_backward(kn_unary_op op, float alpha, const float* x, const float* y, const float* dy, float* dx,
                    int64_t n) {
    switch (op) {
        case KN_UNARY_NEG: map(dy, dx, n, [](float g) { return -g; }); break;
        case KN_UNARY_ABS: scale_by(x, dy, dx, n, [](float v) { return sign_f(v); }); break;  // 0 at x = 0
        case KN_UNARY_EXP: scale_by(y, dy, dx, n, [](float v) { return v; }); break;
        case KN_UNARY_LOG: scale_by(x, dy, dx, n, [](float v) { return 1.0f / v; }); break;
        case KN_UNARY_SQRT: scale_by(y, dy, dx, n, [](float v) { return 0.5f / v; }); break;
        case KN_UNARY_RSQRT: scale_by(y, dy, dx, n, [](float v) { return -0.5f * v * v * v; }); break;
        case KN_UNARY_SQUARE: scale_by(x, dy, dx, n, [](float v) { return 2.0f * v; }); break;
        case KN_UNARY_RECIPROCAL: scale_by(y, dy, dx, n, [](float v) { return -v * v; }); break;
        case KN_UNARY_TANH: scale_by(y, dy, dx, n, [](float v) { return 1.0f - v * v; }); break;
        case KN_UNARY_SIGMOID: scale_by(y, dy, dx, n, [](float v) { return v * (1.0f - v); }); break;
        case KN_UNARY_RELU:
            // relu'(0) = 0; a NaN input passes the gradient through, as PyTorch's threshold_backward.
            for (int64_t i = 0; i < n; ++i) dx[i] = x[i] <= 0.0f ? 0.0f : dy[i];
            break;
        case KN_UNARY_LEAKY_RELU:
            for (int64_t i = 0; i < n; ++i) {
                const float scaled = alpha * dy[i];
                dx[i] = blend(x[i] > 0.0f, dy[i], scaled);
            }
            break;
        case KN_UNARY_GELU: scale_by(x, dy, dx, n, [](float v) { return gelu_grad(v); }); break;
        case KN_UNARY_ELU:
            for (int64_t i = 0; i < n; ++i) {
                const float negative = dy[i] * alpha * exp_f(x[i]);
                dx[i] = blend(x[i] > 0.0f, dy[i], negative);
            }
            break;
        case KN_UNARY_SOFTPLUS: scale_by(x, dy, dx, n, [](float v) { return sigmoid_f(v); }); break;
        case KN_UNARY_SIN: scale_by(x, dy, dx, n, [](float v) { return cos_f(v); }); break;
        case KN_UNARY_COS: scale_by(x, dy, dx, n, [](float v) { return -sin_f(v); }); break;
        case KN_UNARY_SCALE: map(dy, dx, n, [alpha](float g) { return alpha * g; }); break;
        case KN_UNARY_ADD_SCALAR: map(dy, dx, n, [](float g) { return g; }); break;
        case KN_UNARY_POW_SCALAR:
            // d/dx x^a = a x^(a-1); a = 0 gives 0 everywhere (PyTorch's pow_backward).
            if (alpha == 0.0f) {
                for (int64_t i = 0; i < n; ++i) dx[i] = 0.0f;
            } else {
                for_each_pow(alpha - 1.0f, n, [&](auto pow_am1) {
                    scale_by(x, dy, dx, n, [alpha, pow_am1](float v) { return alpha * pow_am1(v); });
                });
            }
            break;
    }
}

// ---- Binary ------------------------------------------------------------------------------------

template <typename F>
inline void zip(const float* a, int64_t sa, const float* b, int64_t sb, float* c, int64_t n, F f) {
    if (sa == 1 && sb == 1) {
        for (int64_t i = 0; i < n; ++i) c[i] = f(a[i], b[i]);
    } else if (sa == 0 && sb == 1) {
        const float av = a[0];
        for (int64_t i = 0; i < n; ++i) c[i] = f(av, b[i]);
    } else if (sa == 1 && sb == 0) {
        const float bv = b[0];
        for (int64_t i = 0; i < n; ++i) c[i] = f(a[i], bv);
    } else {
        const float cv = f(a[0], b[0]);
        for (int64_t i = 0; i < n; ++i) c[i] = cv;
    }
}

// maximum/minimum propagate NaN from either side (torch.maximum).
inline float maximum_f(float a, float b) { return ((a > b) | is_nan(a)) ? a : b; }
inline float minimum_f(float a, float b) { return ((a < b) | is_nan(a)) ? a : b; }

void binary(kn_binary_op op, const float* a, int64_t sa, const float* b, int64_t sb, float* c, int64_t n) {
    switch (op) {
        case KN_BINARY_ADD: zip(a, sa, b, sb, c, n, [](float u, float v) { return u + v; }); break;
        case KN_BINARY_SUB: zip(a, sa, b, sb, c, n, [](float u, float v) { return u - v; }); break;
        case KN_BINARY_MUL: zip(a, sa, b, sb, c, n, [](float u, float v) { return u * v; }); break;
        case KN_BINARY_DIV: zip(a, sa, b, sb, c, n, [](float u, float v) { return u / v; }); break;
        case KN_BINARY_POW: zip(a, sa, b, sb, c, n, [](float u, float v) { return pow_f(u, v); }); break;
        case KN_BINARY_MAXIMUM: zip(a, sa, b, sb, c, n, [](float u, float v) { return maximum_f(u, v); }); break;
        case KN_BINARY_MINIMUM: zip(a, sa, b, sb, c, n, [](float u, float v) { return minimum_f(u, v); }); break;
        // Comparisons give 1.0f / 0.0f; an ordered compare with NaN is false, != with NaN is true.
        case KN_BINARY_EQUAL: zip(a, sa, b, sb, c, n, [](float u, float v) { return u == v ? 1.0f : 0.0f; }); break;
        case KN_BINARY_NOT_EQUAL: zip(a, sa, b, sb, c, n, [](float u, float v) { return u != v ? 1.0f : 0.0f; }); break;
        case KN_BINARY_LESS: zip(a, sa, b, sb, c, n, [](float u, float v) { return u < v ? 1.0f : 0.0f; }); break;
        case KN_BINARY_LESS_EQUAL: zip(a, sa, b, sb, c, n, [](float u, float v) { return u <= v ? 1.0f : 0.0f; }); break;
        case KN_BINARY_GREATER: zip(a, sa, b, sb, c, n, [](float u, float v) { return u > v ? 1.0f : 0.0f; }); break;
        case KN_BINARY_GREATER_EQUAL: zip(a, sa, b, sb, c, n, [](float u, float v) { return u >= v ? 1.0f : 0.0f; }); break;
    }
}

// out[i] = g(a[i*sa], b[i*sb], dc[i]) for one gradient output.
template <typename G>
inline void zip_grad(const float* a, int64_t sa, const float* b, int64_t sb, const float* dc, float* out,
                     int64_t n, G g) {
    if (sa == 1 && sb == 1) {
        for (int64_t i = 0; i < n; ++i) out[i] = g(a[i], b[i], dc[i]);
    } else if (sa == 0 && sb == 1) {
        const float av = a[0];
        for (int64_t i = 0; i < n; ++i) out[i] = g(av, b[i], dc[i]);
    } else if (sa == 1 && sb == 0) {
        const float bv = b[0];
        for (int64_t i = 0; i < n; ++i) out[i] = g(a[i], bv, dc[i]);
    } else {
        const float av = a[0], bv = b[0];
        for (int64_t i = 0; i < n; ++i) out[i] = g(av, bv, dc[i]);
    }
}

template <typename GA, typename GB>
inline void grads(const float* a, int64_t sa, const float* b, int64_t sb, const float* dc, float* da, float* db,
                  int64_t n, GA ga, GB gb) {
    if (da) zip_grad(a, sa, b, sb, dc, da, n, ga);
    if (db) zip_grad(a, sa, b, sb, dc, db, n, gb);
}

void binary_backward(kn_binary_op op, const float* a, int64_t sa, const float* b, int64_t sb, const float* dc,
                     float* da, float* db, int64_t n) {
    switch (op) {
        case KN_BINARY_ADD:
            grads(a, sa, b, sb, dc, da, db, n, [](float, float, float g) { return g; },
                  [](float, float, float g) { return g; });
            break;
        case KN_BINARY_SUB:
            grads(a, sa, b, sb, dc, da, db, n, [](float, float, float g) { return g; },
                  [](float, float, float g) { return -g; });
            break;
        case KN_BINARY_MUL:
            grads(a, sa, b, sb, dc, da, db, n, [](float, float v, float g) { return g * v; },
                  [](float u, float, float g) { return g * u; });
            break;
        case KN_BINARY_DIV:
            grads(a, sa, b, sb, dc, da, db, n, [](float, float v, float g) { return g / v; },
                  [](float u, float v, float g) { return -g * u / (v * v); });
            break;
        case KN_BINARY_POW:
            // As PyTorch: d/da = b a^(b-1), taken as 0 where b == 0 (so 0^0 contributes nothing);
            // d/db = a^b ln a, taken as 0 where a == 0 and b >= 0 (the limit from the right);
            // a < 0 gives NaN (ln of a negative number), a == 0 with b < 0 gives -inf.
            grads(a, sa, b, sb, dc, da, db, n,
                  [](float u, float v, float g) { return v == 0.0f ? 0.0f : g * v * pow_f(u, v - 1.0f); },
                  [](float u, float v, float g) {
                      return (u == 0.0f && v >= 0.0f) ? 0.0f : g * pow_f(u, v) * libm_log_f(u);
                  });
            break;
        case KN_BINARY_MAXIMUM:  // ties (and a NaN b) send the gradient to a
            grads(a, sa, b, sb, dc, da, db, n, [](float u, float v, float g) { return u >= v ? g : 0.0f; },
                  [](float u, float v, float g) { return u >= v ? 0.0f : g; });
            break;
        case KN_BINARY_MINIMUM:
            grads(a, sa, b, sb, dc, da, db, n, [](float u, float v, float g) { return u <= v ? g : 0.0f; },
                  [](float u, float v, float g) { return u <= v ? 0.0f : g; });
            break;
        case KN_BINARY_EQUAL:  // comparisons are piecewise constant: zero gradient everywhere
        case KN_BINARY_NOT_EQUAL:
        case KN_BINARY_LESS:
        case KN_BINARY_LESS_EQUAL:
        case KN_BINARY_GREATER:
        case KN_BINARY_GREATER_EQUAL:
            grads(a, sa, b, sb, dc, da, db, n, [](float, float, float) { return 0.0f; },
                  [](float, float, float) { return 0.0f; });
            break;
    }
}

// ---- Reductions --------------------------------------------------------------------------------

// 32 independent lanes (2 zmm / 4 ymm / 8 xmm of accumulators) within a block, a pairwise tree
// across blocks. Rounding error grows like (block/32 + log2(n/block)) eps instead of n eps.
constexpr int64_t kLanes = 32;
constexpr int64_t kSumBlock = 1024;  // 32 terms per lane before the tree takes over

// Sum of term(i) for i < n <= kSumBlock, 32 lanes folded pairwise.
template <typename Term>
inline float block_sum(int64_t n, Term term) {
    if (n < kLanes) {  // a short row (softmax over 10 classes): the lanes would cost more than they save
        float s = 0.0f;
        for (int64_t i = 0; i < n; ++i) s += term(i);
        return s;
    }
    float acc[kLanes] = {};
    int64_t i = 0;
    for (; i + kLanes <= n; i += kLanes)
        for (int64_t j = 0; j < kLanes; ++j) acc[j] += term(i + j);
    for (int64_t j = 0; i + j < n; ++j) acc[j] += term(i + j);
    for (int64_t width = kLanes / 2; width >= 1; width /= 2)
        for (int64_t j = 0; j < width; ++j) acc[j] += acc[j + width];
    return acc[0];
}

// Pairwise over kSumBlock blocks: split at a block boundary near the middle, recurse.
template <typename Term>
float pairwise_sum(int64_t begin, int64_t end, Term term) {
    const int64_t n = end - begin;
    if (n <= kSumBlock) return block_sum(n, [&](int64_t i) { return term(begin + i); });
    const int64_t blocks = (n + kSumBlock - 1) / kSumBlock;
    const int64_t mid = begin + blocks / 2 * kSumBlock;
    return pairwise_sum(begin, mid, term) + pairwise_sum(mid, end, term);
}

// pairwise_sum over a span (the same tree, so the same result), each leaf first requesting the
// block kSumPrefetchBlocks ahead: 64 prefetches per 4 KB block, requested 8 KB before the loads
// reach it (~250 ns at one core's ~35 GB/s, above DRAM's latency), on top of what the hardware
// prefetcher asks for. Measured on one Zen 5 core, sum/64M on the AVX2 path: 0.74x -> 0.94x of a
// one-core memcpy.
// Only for spans that come from beyond L2 (a 1K or 64K sum from cache would only pay for the
// extra instructions).
constexpr int64_t kSumPrefetchBlocks = 2;
constexpr int64_t kSumPrefetchMin = int64_t{1} << 18;  // floats: 1 MB
template <bool Squares>
float span_sum(const float* x, int64_t n, bool prefetch) {
    if (n <= kSumBlock) {
#if defined(__GNUC__)
        const char* ahead = reinterpret_cast<const char*>(x + kSumPrefetchBlocks * kSumBlock);
        if (prefetch)
            for (int64_t b = 0; b < kSumBlock * static_cast<int64_t>(sizeof(float)); b += 64) __builtin_prefetch(ahead + b, 0);
#endif
        return block_sum(n, [x](int64_t i) { return Squares ? x[i] * x[i] : x[i]; });
    }
    const int64_t blocks = (n + kSumBlock - 1) / kSumBlock;
    const int64_t mid = blocks / 2 * kSumBlock;
    return span_sum<Squares>(x, mid, prefetch) + span_sum<Squares>(x + mid, n - mid, prefetch);
}

float sum(const float* x, int64_t n, bool squares) {
    const bool prefetch = n >= kSumPrefetchMin;
    return squares ? span_sum<true>(x, n, prefetch) : span_sum<false>(x, n, prefetch);
}

// Keeps the running extreme unless v beats it or v is NaN; a NaN accumulator stays NaN.
// (Bitwise | and & on the comparisons, not || and &&: no short-circuit branches for the
// vectoriser to undo.)
inline float max_step(float acc, float v) { return (is_nan(acc) | (acc >= v)) ? acc : v; }
inline float min_step(float acc, float v) { return (is_nan(acc) | (acc <= v)) ? acc : v; }
template <bool IsMax>
inline float extreme_step(float acc, float v) { return IsMax ? max_step(acc, v) : min_step(acc, v); }

template <bool IsMax>
float extreme_impl(const float* x, int64_t n) {
    if (n < kLanes) {
        float result = x[0];
        for (int64_t i = 1; i < n; ++i) result = extreme_step<IsMax>(result, x[i]);
        return result;
    }
    float acc[kLanes];
    for (int64_t j = 0; j < kLanes; ++j) acc[j] = x[0];
    int64_t i = 0;
    for (; i + kLanes <= n; i += kLanes)
        for (int64_t j = 0; j < kLanes; ++j) acc[j] = extreme_step<IsMax>(acc[j], x[i + j]);
    for (int64_t j = 0; i + j < n; ++j) acc[j] = extreme_step<IsMax>(acc[j], x[i + j]);
    float result = acc[0];
    for (int64_t j = 1; j < kLanes; ++j) result = extreme_step<IsMax>(result, acc[j]);
    return result;
}

float extreme(const float* x, int64_t n, bool is_max) {
    return is_max ? extreme_impl<true>(x, n) : extreme_impl<false>(x, n);
}

// ---- Column reductions: out[i] = op over r of x[r * stride + i], i < width ---------------------
// Wide blocks go 32 columns at a time with the 32 accumulators in registers while the rows stream
// past (2 zmm / 4 ymm / 8 xmm). A narrow block that is a whole contiguous row (stride == width,
// width < 32: e.g. [N, 4] reduced over N) is read as one flat span with width * (32 / width) lanes,
// lane j belonging to column j % width, so it vectorises too. Sums are pairwise over leaves of
// ~1024 elements.
constexpr int64_t kColumnTile = 32;
#ifndef KN_COLUMN_STRIP
#define KN_COLUMN_STRIP 64
#endif
constexpr int64_t kRowBlock = 16;
constexpr int64_t kRowChunk = 64;  // rows per pass over a block's column tiles (max/min/arg)

inline bool flat_columns(int64_t stride, int64_t width) { return stride == width && width < kColumnTile; }
inline int64_t leaf_rows(int64_t width) { return kRowBlock > 1024 / width ? kRowBlock : 1024 / width; }

template <bool Squares>
inline float sum_term(float v) { return Squares ? v * v : v; }

template <bool Squares>
void sum_columns_leaf(const float* x, int64_t rows, int64_t stride, int64_t width, float* out) {
    if (flat_columns(stride, width)) {
        const int64_t lanes = width * (kColumnTile / width), total = rows * width;
        float acc[kColumnTile] = {};
        int64_t e = 0;
        for (; e + lanes <= total; e += lanes)
            for (int64_t j = 0; j < lanes; ++j) acc[j] += sum_term<Squares>(x[e + j]);
        for (int64_t j = 0; e + j < total; ++j) acc[j] += sum_term<Squares>(x[e + j]);
        for (int64_t i = 0; i < width; ++i) out[i] = 0.0f;
        for (int64_t j = 0; j < lanes; ++j) out[j % width] += acc[j];
        return;
    }
#if defined(__AVX512F__)
    // A full block (256 columns) with AVX-512: whole rows at a time with the 256 accumulators in
    // 16 of the 32 zmm registers (the width a compile-time constant, so nothing goes through
    // memory): the leaf's rows are read front to back instead of 128 bytes per row per tile.
    // Each column still adds its rows in the same order: bit-identical to the tiles below.
    // AVX2 has 16 ymm registers, too few for 256 floats, and keeps the tiles (the same row-major
    // loop with the accumulators in an L1 array measured slower there: [131072, 512] 0.42x -> 0.33x
    // of a one-core memcpy on the AVX2 path on Zen 5).
    if (width == kColumnWidth) {
        float acc[kColumnWidth] = {};
        for (int64_t r = 0; r < rows; ++r) {
            const float* row = x + r * stride;
            for (int64_t j = 0; j < kColumnWidth; ++j) acc[j] += sum_term<Squares>(row[j]);
        }
        for (int64_t j = 0; j < kColumnWidth; ++j) out[j] = acc[j];
        return;
    }
#endif
    // Each tile walks the leaf's rows 128 bytes at a time, 16 interleaved streams the hardware
    // prefetcher follows poorly; so each row also requests its two lines in the next leaf (rows
    // further down: one prefetch per line consumed, ~16 KB ahead for a 256-wide block).
    // Measured on the AVX2 path on Zen 5, [131072, 512]: 0.42x -> 0.59x of a one-core memcpy.
    int64_t i = 0;
#if defined(__AVX2__) && !defined(__AVX512F__)
    // AVX2: strips of KN_COLUMN_STRIP columns (their accumulators in KN_COLUMN_STRIP / 8 ymm registers),
    // the same walk down the leaf with kStrip / 16 lines per row instead of 2, and as many prefetches;
    // each column still adds its rows in order (bit-identical). Measured, one Zen 5 core on the AVX2
    // path, [131072, 512] block by block: 32 columns 0.47-0.52x of a one-thread memcpy, 64 columns
    // 0.55-0.62x, 128 (all 16 ymm registers) 0.55-0.56x.
    constexpr int64_t kStrip = KN_COLUMN_STRIP;
    for (; i + kStrip <= width; i += kStrip) {
        float acc[kStrip] = {};
        for (int64_t r = 0; r < rows; ++r) {
            const float* row = x + r * stride + i;
#if defined(__GNUC__)
            for (int64_t line = 0; line < kStrip; line += 16) __builtin_prefetch(row + rows * stride + line, 0);
#endif
            for (int64_t j = 0; j < kStrip; ++j) acc[j] += sum_term<Squares>(row[j]);
        }
        for (int64_t j = 0; j < kStrip; ++j) out[i + j] = acc[j];
    }
#endif
    for (; i + kColumnTile <= width; i += kColumnTile) {
        float acc[kColumnTile] = {};
        for (int64_t r = 0; r < rows; ++r) {
            const float* row = x + r * stride + i;
#if defined(__GNUC__)
            __builtin_prefetch(row + rows * stride, 0);
            __builtin_prefetch(row + rows * stride + 16, 0);
#endif
            for (int64_t j = 0; j < kColumnTile; ++j) acc[j] += sum_term<Squares>(row[j]);
        }
        for (int64_t j = 0; j < kColumnTile; ++j) out[i + j] = acc[j];
    }
    if (i < width) {
        const int64_t w = width - i;
        float acc[kColumnTile] = {};
        for (int64_t r = 0; r < rows; ++r) {
            const float* row = x + r * stride + i;
            for (int64_t j = 0; j < w; ++j) acc[j] += sum_term<Squares>(row[j]);
        }
        for (int64_t j = 0; j < w; ++j) out[i + j] = acc[j];
    }
}

template <bool Squares>
void sum_columns_pairwise(const float* x, int64_t rows, int64_t stride, int64_t width, float* out) {
    const int64_t leaf = leaf_rows(width);
    if (rows <= leaf) {
        sum_columns_leaf<Squares>(x, rows, stride, width, out);
        return;
    }
    const int64_t blocks = (rows + leaf - 1) / leaf;
    const int64_t mid = blocks / 2 * leaf;
    float right[kColumnWidth];
    sum_columns_pairwise<Squares>(x, mid, stride, width, out);
    sum_columns_pairwise<Squares>(x + mid * stride, rows - mid, stride, width, right);
    for (int64_t i = 0; i < width; ++i) out[i] += right[i];
}

void sum_columns(const float* x, int64_t rows, int64_t stride, int64_t width, bool squares, float* out) {
    if (rows == 0) {
        for (int64_t i = 0; i < width; ++i) out[i] = 0.0f;
        return;
    }
    if (squares) sum_columns_pairwise<true>(x, rows, stride, width, out);
    else sum_columns_pairwise<false>(x, rows, stride, width, out);
}

template <bool IsMax>
void extreme_columns_impl(const float* x, int64_t rows, int64_t stride, int64_t width, float* out) {
    if (flat_columns(stride, width)) {
        const int64_t lanes = width * (kColumnTile / width), total = rows * width;
        float acc[kColumnTile];
        for (int64_t j = 0; j < kColumnTile; ++j) acc[j] = x[j % width];
        int64_t e = 0;
        for (; e + lanes <= total; e += lanes)
            for (int64_t j = 0; j < lanes; ++j) acc[j] = extreme_step<IsMax>(acc[j], x[e + j]);
        for (int64_t j = 0; e + j < total; ++j) acc[j] = extreme_step<IsMax>(acc[j], x[e + j]);
        for (int64_t i = 0; i < width; ++i) out[i] = acc[i];
        for (int64_t j = width; j < lanes; ++j) out[j % width] = extreme_step<IsMax>(out[j % width], acc[j]);
        return;
    }
    // Rows go in chunks of kRowChunk across all column tiles, so a large stride (a wide inner
    // dimension) never walks one tile down thousands of rows, page after page.
    float acc[kColumnWidth];
    for (int64_t i = 0; i < width; ++i) acc[i] = x[i];
    for (int64_t r0 = 1; r0 < rows; r0 += kRowChunk) {
        const int64_t r1 = rows - r0 < kRowChunk ? rows : r0 + kRowChunk;
        for (int64_t i = 0; i < width; i += kColumnTile) {
            const int64_t w = width - i < kColumnTile ? width - i : kColumnTile;
            if (w == kColumnTile) {
                float tile[kColumnTile];
                for (int64_t j = 0; j < kColumnTile; ++j) tile[j] = acc[i + j];
                for (int64_t r = r0; r < r1; ++r) {
                    const float* row = x + r * stride + i;
                    for (int64_t j = 0; j < kColumnTile; ++j) tile[j] = extreme_step<IsMax>(tile[j], row[j]);
                }
                for (int64_t j = 0; j < kColumnTile; ++j) acc[i + j] = tile[j];
            } else {
                for (int64_t r = r0; r < r1; ++r) {
                    const float* row = x + r * stride + i;
                    for (int64_t j = 0; j < w; ++j) acc[i + j] = extreme_step<IsMax>(acc[i + j], row[j]);
                }
            }
        }
    }
    for (int64_t i = 0; i < width; ++i) out[i] = acc[i];
}

void extreme_columns(const float* x, int64_t rows, int64_t stride, int64_t width, bool is_max, float* out) {
    if (is_max) extreme_columns_impl<true>(x, rows, stride, width, out);
    else extreme_columns_impl<false>(x, rows, stride, width, out);
}

// Column argmax/argmin: the best value and its first row per column. NaN counts as the extreme
// (the first NaN wins and is never replaced); strict comparisons keep the first of equal values.
// Row numbers are tracked as int32 lanes (same width as the floats, so the selects vectorise);
// the caller keeps rows < 2^31.
template <bool IsMax>
inline bool arg_takes(float best, float v) {
    return (best == best) & (is_nan(v) | (IsMax ? v > best : v < best));
}

template <bool IsMax>
void arg_extreme_columns_impl(const float* x, int64_t rows, int64_t stride, int64_t width, float* value,
                              int64_t* index) {
    float best[kColumnWidth];
    int32_t at[kColumnWidth];
    for (int64_t i = 0; i < width; ++i) {
        best[i] = x[i];
        at[i] = 0;
    }
    for (int64_t r0 = 1; r0 < rows; r0 += kRowChunk) {
        const int64_t r1 = rows - r0 < kRowChunk ? rows : r0 + kRowChunk;
        for (int64_t i = 0; i < width; i += kColumnTile) {
            const int64_t w = width - i < kColumnTile ? width - i : kColumnTile;
            float tile[kColumnTile];
            int32_t tile_at[kColumnTile];
            for (int64_t j = 0; j < kColumnTile; ++j) {
                tile[j] = best[i + (j < w ? j : 0)];
                tile_at[j] = at[i + (j < w ? j : 0)];
            }
            for (int64_t r = r0; r < r1; ++r) {
                const float* row = x + r * stride + i;
                const int32_t r32 = static_cast<int32_t>(r);
                if (w == kColumnTile) {
                    for (int64_t j = 0; j < kColumnTile; ++j) {
                        const bool take = arg_takes<IsMax>(tile[j], row[j]);
                        tile[j] = take ? row[j] : tile[j];
                        tile_at[j] = take ? r32 : tile_at[j];
                    }
                } else {
                    for (int64_t j = 0; j < w; ++j) {
                        const bool take = arg_takes<IsMax>(tile[j], row[j]);
                        tile[j] = take ? row[j] : tile[j];
                        tile_at[j] = take ? r32 : tile_at[j];
                    }
                }
            }
            for (int64_t j = 0; j < w; ++j) {
                best[i + j] = tile[j];
                at[i + j] = tile_at[j];
            }
        }
    }
    for (int64_t i = 0; i < width; ++i) {
        value[i] = best[i];
        index[i] = at[i];
    }
}

void arg_extreme_columns(const float* x, int64_t rows, int64_t stride, int64_t width, bool is_max, float* value,
                         int64_t* index) {
    if (is_max) arg_extreme_columns_impl<true>(x, rows, stride, width, value, index);
    else arg_extreme_columns_impl<false>(x, rows, stride, width, value, index);
}

// ---- Softmax -----------------------------------------------------------------------------------

// 2^65 e^t for softmax, where t = x - max <= 0 (or NaN). Softmax is e^t / sum e^t, so any constant
// factor cancels; 2^65 keeps every e^t that is not below half the smallest subnormal (t >= -103.3)
// a normal float, so 2^k is ONE factor built from the bits of the rounding sum, where the unscaled
// form needs two (2^k1 2^k2, for the subnormal results) and their shifts and adds. The final
// y = (2^65 e^t) * (1 / (2^65 sum)) still rounds once, to a subnormal where the answer is one.
// t is clamped at -120 (2^65 e^-120 = 2.8e-33, whose y rounds to 0 as e^t does: e^-103.98 is
// below half the smallest subnormal); a NaN t stays NaN (the clamp keeps it, p is NaN, and the
// product by the scale factor stays NaN). e^r on |r| <= ln2/2 by a degree-5 fit (weighted least
// squares for relative error, with p(0) = 1 exactly so the maximum's own term is exactly 2^65:
// truncation 9.5e-8 relative, about 0.8 ulp; every other error is float rounding), and, where the
// target has FMA, r = t - k ln2 as one fused operation with ln2 rounded to float (its error, 1.9e-9 k,
// is 0.5 ulp at k = -30 and reaches 3 ulp only for the terms below e^-83, which no sum notices):
// two FMAs fewer than the degree-7 Taylor polynomial and the two-constant reduction of exp_f, on the
// two FMA pipes that bound this loop with AVX2.
// The rounding constant carries the exponent bias too: shifted's low bits are k + 65 + 127, in
// [18, 192] for t >= -120, so its bits shifted left by 23 are exactly the float 2^(k+65) (the
// constant's own bits above them fall off the top): 13 vector operations per 16 exponentials, one
// integer add fewer than adding the bias after the shift. The offset 192 is even, like the 64 that
// came before it, so ties in the rounding (the portable path rounds t log2e before the add) go the
// same way, and every term is exactly twice the old one: the same y, bit for bit.
constexpr float kSoftmaxShift = 12582912.0f + 192.0f;  // 1.5 2^23 (rounding) + 65 (the 2^65) + 127 (bias)
constexpr float kSoftmaxUnscale = 2.71050543e-20f;    // 2^-65, exact
constexpr float kSoftmaxLn2 = 0.693147182f;           // ln 2 rounded to float, for the fused r = t - k ln2
// The degree-5 fit of e^r above, highest degree first; p(0) = 1 exactly. One table for
// exp_scaled_nonpositive and the SIMD loops in exp_block.
constexpr float kExpScaledPoly[6] = {8.29027686e-3f, 4.18979451e-2f, 1.66676372e-1f, 4.99991506e-1f, 9.99999702e-1f, 1.0f};
inline float exp_scaled_nonpositive(float t) {
    const float tc = select(t < -120.0f, -120.0f, t);  // NaN compares false and stays
    const float shifted = tc * kLog2e + kSoftmaxShift;  // k + 192 in the low significand bits
    const float k = shifted - kSoftmaxShift;            // round(t log2e), in [-174, 0]
#if defined(__FMA__)
    const float r = __builtin_fmaf(-k, kSoftmaxLn2, tc);
#else
    const float r = (tc - k * kLn2Hi) - k * kLn2Lo;  // without FMA, k ln2 would round: two steps
#endif
    float p = kExpScaledPoly[0];
    for (int j = 1; j < 6; ++j) p = p * r + kExpScaledPoly[j];
    // The low bits of shifted's bits are k + 65 + 127 (kSoftmaxShift): shifted into the exponent
    // field they are 2^(k+65), in [2^-109, 2^65], always normal.
    const uint32_t exponent = static_cast<uint32_t>(as_bits(shifted)) << 23;
    return p * as_float(static_cast<int32_t>(exponent));
}

// e[i] = exp_scaled_nonpositive(x[i] - m) for i < n, returning their sum, in one pass: the sum is
// pairwise_sum's (32 lanes within blocks of kSumBlock, a tree across blocks), so the same value as
// summing e afterwards, without reading e again. Each 32 floats request the matching two lines of
// ahead (the next row, where its DRAM transfer should overlap this arithmetic; or x itself, a no-op
// from L1, which keeps a branch out of the loop: a branch would leave it scalar with AVX2).
// GCC 12's AVX-512 max and shift intrinsics start from _mm512_undefined_ps() / _epi32(), which
// -Wmaybe-uninitialized reports once inlined (as in gemm_avx512.cpp); nothing reads it.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
inline float exp_block(const float* x, float m, float* e, int64_t n, const float* ahead) {
    if (n < kLanes) {
        float s = 0.0f;
        for (int64_t i = 0; i < n; ++i) {
            e[i] = exp_scaled_nonpositive(x[i] - m);
            s += e[i];
        }
        return s;
    }
    float acc[kLanes] = {};
    int64_t i = 0;
#if KN_CPU_X86 && defined(__AVX2__) && defined(__FMA__) && !defined(__AVX512F__)
    // AVX2: the loop below written out, the 32 lanes as 4 ymm accumulators in registers (lane j in
    // register j / 8): GCC 12 kept acc[] on the stack and added each vector through a load and a store,
    // a store-forwarding chain per accumulator, and reloaded spilled constants. exp_scaled_nonpositive's
    // operations one for one (the same FMAs; bit-identical terms and sum). From L1, rows of 1024,
    // one Zen 5 core: see benchmarks/results/2026-12-05-cpu-bandwidth-4.
    {
        const __m256 mv = _mm256_set1_ps(m), lo = _mm256_set1_ps(-120.0f), log2e = _mm256_set1_ps(kLog2e);
        const __m256 shift = _mm256_set1_ps(kSoftmaxShift), ln2 = _mm256_set1_ps(kSoftmaxLn2);
        // The polynomial's coefficients as memory operands of the FMAs: held in registers (GCC's
        // choice for _mm256_set1_ps) they pushed the four accumulators onto the stack.
        struct Broadcast {
            alignas(32) float v[48];  // kExpScaledPoly[j] in lanes 8j .. 8j + 7
        };
        static constexpr Broadcast coefficients = [] {
            Broadcast b{};
            for (int j = 0; j < 48; ++j) b.v[j] = kExpScaledPoly[j / 8];
            return b;
        }();
        const float* c = coefficients.v;
        const auto exp8 = [&](const float* src, float* dst) {
            const __m256 t = _mm256_sub_ps(_mm256_loadu_ps(src), mv);
            const __m256 tc = _mm256_max_ps(lo, t);  // NaN: t (the second operand), as select()
            const __m256 shifted = _mm256_fmadd_ps(tc, log2e, shift);
            const __m256 k = _mm256_sub_ps(shifted, shift);
            const __m256 r = _mm256_fnmadd_ps(k, ln2, tc);
            __m256 p = _mm256_fmadd_ps(_mm256_load_ps(c), r, _mm256_load_ps(c + 8));
            p = _mm256_fmadd_ps(p, r, _mm256_load_ps(c + 16));
            p = _mm256_fmadd_ps(p, r, _mm256_load_ps(c + 24));
            p = _mm256_fmadd_ps(p, r, _mm256_load_ps(c + 32));
            p = _mm256_fmadd_ps(p, r, _mm256_load_ps(c + 40));
            const __m256i exponent = _mm256_slli_epi32(_mm256_castps_si256(shifted), 23);  // bias in the shift
            const __m256 v = _mm256_mul_ps(p, _mm256_castsi256_ps(exponent));
            _mm256_storeu_ps(dst, v);
            return v;
        };
        // Four named accumulators (an array of four stayed on the stack).
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        for (; i + kLanes <= n; i += kLanes) {
            __builtin_prefetch(ahead + i, 0);
            __builtin_prefetch(ahead + i + 16, 0);
            __asm__("" : "+r"(c));  // c's loads stay in the loop (not hoisted into registers)
            a0 = _mm256_add_ps(a0, exp8(x + i, e + i));
            a1 = _mm256_add_ps(a1, exp8(x + i + 8, e + i + 8));
            a2 = _mm256_add_ps(a2, exp8(x + i + 16, e + i + 16));
            a3 = _mm256_add_ps(a3, exp8(x + i + 24, e + i + 24));
        }
        _mm256_storeu_ps(acc, a0);
        _mm256_storeu_ps(acc + 8, a1);
        _mm256_storeu_ps(acc + 16, a2);
        _mm256_storeu_ps(acc + 24, a3);
    }
#elif KN_CPU_X86 && defined(__AVX512F__)
    // AVX-512: the same operations one for one (bit-identical terms and sum), 13 vector operations per
    // 16 exponentials. GCC 12 vectorised the plain loop below into ~20: it turned the clamp into a
    // compare, a mask inversion and masked moves that carry precomputed constants through every later
    // step for the clamped lanes, and -k into an XOR ahead of the FMA. Compute-bound from L1 on one
    // Xeon core (Sapphire Rapids class), rows of 1024, so every operation counts:
    // benchmarks/results/2026-12-06-intel-xeon-softmax.
    {
        const __m512 mv = _mm512_set1_ps(m), lo = _mm512_set1_ps(-120.0f), log2e = _mm512_set1_ps(kLog2e);
        const __m512 shift = _mm512_set1_ps(kSoftmaxShift), ln2 = _mm512_set1_ps(kSoftmaxLn2);
        const __m512 c0 = _mm512_set1_ps(kExpScaledPoly[0]), c1 = _mm512_set1_ps(kExpScaledPoly[1]);
        const __m512 c2 = _mm512_set1_ps(kExpScaledPoly[2]), c3 = _mm512_set1_ps(kExpScaledPoly[3]);
        const __m512 c4 = _mm512_set1_ps(kExpScaledPoly[4]), c5 = _mm512_set1_ps(kExpScaledPoly[5]);
        const auto exp16 = [&](const float* src, float* dst) {
            const __m512 t = _mm512_sub_ps(_mm512_loadu_ps(src), mv);
            const __m512 tc = _mm512_max_ps(lo, t);  // NaN: t (the second operand), as select()
            const __m512 shifted = _mm512_fmadd_ps(tc, log2e, shift);
            const __m512 k = _mm512_sub_ps(shifted, shift);
            const __m512 r = _mm512_fnmadd_ps(k, ln2, tc);
            __m512 p = _mm512_fmadd_ps(c0, r, c1);
            p = _mm512_fmadd_ps(p, r, c2);
            p = _mm512_fmadd_ps(p, r, c3);
            p = _mm512_fmadd_ps(p, r, c4);
            p = _mm512_fmadd_ps(p, r, c5);
            const __m512i exponent = _mm512_slli_epi32(_mm512_castps_si512(shifted), 23);  // bias in the shift
            const __m512 v = _mm512_mul_ps(p, _mm512_castsi512_ps(exponent));
            _mm512_storeu_ps(dst, v);
            return v;
        };
        __m512 a0 = _mm512_setzero_ps(), a1 = a0;  // lanes 0-15 and 16-31 of acc
        for (; i + kLanes <= n; i += kLanes) {
            __builtin_prefetch(ahead + i, 0);
            __builtin_prefetch(ahead + i + 16, 0);
            a0 = _mm512_add_ps(a0, exp16(x + i, e + i));
            a1 = _mm512_add_ps(a1, exp16(x + i + 16, e + i + 16));
        }
        _mm512_storeu_ps(acc, a0);
        _mm512_storeu_ps(acc + 16, a1);
    }
#endif
    for (; i + kLanes <= n; i += kLanes) {
#if defined(__GNUC__)
        __builtin_prefetch(ahead + i, 0);
        __builtin_prefetch(ahead + i + 16, 0);
#endif
        for (int64_t j = 0; j < kLanes; ++j) {
            const float v = exp_scaled_nonpositive(x[i + j] - m);
            e[i + j] = v;
            acc[j] += v;
        }
    }
    for (int64_t j = 0; i + j < n; ++j) {
        const float v = exp_scaled_nonpositive(x[i + j] - m);
        e[i + j] = v;
        acc[j] += v;
    }
    for (int64_t width = kLanes / 2; width >= 1; width /= 2)
        for (int64_t j = 0; j < width; ++j) acc[j] += acc[j + width];
    return acc[0];
}
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
inline float exp_row(const float* x, float m, float* e, int64_t n, const float* ahead) {
    if (n <= kSumBlock) return exp_block(x, m, e, n, ahead);
    const int64_t blocks = (n + kSumBlock - 1) / kSumBlock;
    const int64_t mid = blocks / 2 * kSumBlock;
    const float left = exp_row(x, m, e, mid, ahead);
    return left + exp_row(x + mid, m, e + mid, n - mid, ahead + mid);
}

// The row maximum for softmax, ignoring NaN (one vmaxps per vector; the NaN-propagating
// extreme_impl costs ~5x as much with its compare-and-blend chains). A NaN still reaches every
// output: its exp(x - m) is NaN, so the sum and every scaled or log-shifted value are NaN too,
// exactly as with a NaN maximum. -inf for a row of NaN / -inf (x - m is then NaN everywhere).
inline float row_max(const float* x, int64_t n) {
    if (n < kLanes) {  // a classifier's 10 logits: the 32 lanes would cost more than they save
        float m = -kInfinity;
        for (int64_t i = 0; i < n; ++i) m = x[i] > m ? x[i] : m;
        return m;
    }
    float acc[kLanes];
    for (int64_t j = 0; j < kLanes; ++j) acc[j] = -kInfinity;
    int64_t i = 0;
    for (; i + kLanes <= n; i += kLanes)
        for (int64_t j = 0; j < kLanes; ++j) acc[j] = x[i + j] > acc[j] ? x[i + j] : acc[j];
    for (int64_t j = 0; i + j < n; ++j) acc[j] = x[i + j] > acc[j] ? x[i + j] : acc[j];
    // The 32 lanes folded as a tree (GCC 12: a zmm and a ymm step, then 7 scalar ones): a chain of
    // 31 dependent vmaxss, 4 cycles each, had taken a third of softmax_row's own samples (perf, rows
    // of 1024 in cache).
    for (int64_t width = kLanes / 2; width >= 1; width /= 2)
        for (int64_t j = 0; j < width; ++j) acc[j] = acc[j + width] > acc[j] ? acc[j + width] : acc[j];
    return acc[0];
}

void softmax_row(const float* x, float* y, int64_t n, bool log, bool streaming, const float* next) {
    // Subtracting the row maximum keeps every exponent <= 0: no overflow for any finite input.
    // Three passes, the first from memory and the others from L1 for rows up to ~8K floats: the
    // maximum, exp(x - m) into y with a pairwise sum, and the scale (softmax) or the subtraction
    // of log(sum) (log-softmax, which never stores the exponentials, so y may be x).
    // Napkin math (one Zen 5 core, AVX-512, measured from L1): max ~0.02 ns/element, exp ~0.15,
    // sum and scale ~0.05; a copy of the row from and to DRAM takes ~0.22 ns/element. The exp pass
    // requests the next row (next) a line at a time, so that copy time overlaps this arithmetic.
    const float m = row_max(x, n);
    const float* ahead = next ? next : x;  // the last row requests its own lines: a no-op from L1
    if (streaming && n <= kStreamingRow) {
        // The same values as below, staged in L1 and streamed out (see kStreamingBytes): y is then
        // written once, without being read, instead of read, written, read and written again.
        alignas(64) float e[kStreamingRow];
        // The exponentials and their sum in one pass (exp_row), each line of x requesting the
        // matching line of the next row: the requests trickle out at the rate x is consumed, where
        // 64 back-to-back prefetches per 4 KB row (softmax.cpp's prefetch_row) fill the miss
        // buffers and stall the arithmetic behind them.
        const float s = exp_row(x, m, e, n, ahead);
        if (!log) {
            store_streaming(e, 1.0f / s, y, n);
        } else {
            const float log_s = log_f(s * kSoftmaxUnscale);  // s >= 2^65 (the maximum's own term): exact
            for (int64_t j = 0; j < n; ++j) e[j] = (x[j] - m) - log_s;
            store_streaming(e, 1.0f, y, n);
        }
        return;
    }
    if (!log) {
        const float s = exp_row(x, m, y, n, ahead);
        // One division, then products: within 1 ulp of y / s (a division per element cost about
        // as much as the exp polynomial).
        const float inv = 1.0f / s;
        for (int64_t i = 0; i < n; ++i) y[i] = y[i] * inv;
    } else {
        // y may be x, so the exponentials are summed without being stored in y; a short row
        // stages them in a local array so the exp loop still vectorises.
        float s;
        if (n < kLanes) {
            float e[kLanes];
            for (int64_t i = 0; i < n; ++i) e[i] = exp_scaled_nonpositive(x[i] - m);
            s = block_sum(n, [&e](int64_t i) { return e[i]; });
        } else {
            s = pairwise_sum(0, n, [x, m](int64_t i) { return exp_scaled_nonpositive(x[i] - m); });
        }
        const float log_s = log_f(s * kSoftmaxUnscale);  // s >= 2^65 (the maximum's own term): exact
        for (int64_t i = 0; i < n; ++i) y[i] = (x[i] - m) - log_s;
    }
}

void softmax_backward_row(const float* y, const float* dy, float* dx, int64_t n, bool log) {
    if (!log) {
        // dx = y * (dy - sum(dy * y))
        const float s = pairwise_sum(0, n, [y, dy](int64_t i) { return dy[i] * y[i]; });
        for (int64_t i = 0; i < n; ++i) dx[i] = y[i] * (dy[i] - s);
    } else {
        // dx = dy - exp(y) * sum(dy)
        const float s = pairwise_sum(0, n, [dy](int64_t i) { return dy[i]; });
        for (int64_t i = 0; i < n; ++i) dx[i] = dy[i] - exp_f(y[i]) * s;
    }
}

// ---- Recurrent cells ----------------------------------------------------------------------------
// Rows [begin, end) of one LSTM / GRU step (kernels.h has the math, ops.h the records). Each row is
// one straight loop over hidden with the branch-free sigmoid_f / tanh_f above, in a function whose
// pointer parameters are __restrict__: GCC vectorises these loops only when it knows the streams do
// not alias (restrict on local pointers is not enough: the loops stayed scalar, ~12x slower). A masked
// row (mask[b] == 0) is computed like the others and then overwritten by its previous state, which
// keeps the loop free of per-element selects. Optional operands (null pointers) are decided per call:
// the template flags make them compile-time constants inside the loops.

inline bool row_updates(const float* mask, int64_t b) { return mask == nullptr || mask[b] != 0.0f; }

template <bool kSave>
void lstm_row(const float* __restrict__ gates, const float* __restrict__ cp, float* __restrict__ h,
              float* __restrict__ c, float* __restrict__ s, int64_t H) {
    for (int64_t j = 0; j < H; ++j) {
        const float i = sigmoid_f(gates[j]), f = sigmoid_f(gates[H + j]), g = tanh_f(gates[2 * H + j]),
                    o = sigmoid_f(gates[3 * H + j]);
        const float cn = f * cp[j] + i * g;
        const float tc = tanh_f(cn);
        c[j] = cn;
        h[j] = o * tc;
        if (kSave) {
            s[j] = i;
            s[H + j] = f;
            s[2 * H + j] = g;
            s[3 * H + j] = o;
            s[4 * H + j] = tc;
        }
    }
}

template <bool kSave>
void lstm_rows(const LstmCellArgs& a, int64_t begin, int64_t end) {
    const int64_t H = a.hidden;
    const float* mask = static_cast<const float*>(a.mask);
    for (int64_t b = begin; b < end; ++b) {
        const float* cp = static_cast<const float*>(a.c_prev) + b * H;
        float* h = static_cast<float*>(a.h) + b * H;
        float* c = static_cast<float*>(a.c) + b * H;
        lstm_row<kSave>(static_cast<const float*>(a.gates) + b * 4 * H, cp, h, c,
                        kSave ? static_cast<float*>(a.saved) + b * 5 * H : nullptr, H);
        if (!row_updates(mask, b)) {
            std::memcpy(h, static_cast<const float*>(a.h_prev) + b * H, static_cast<size_t>(H) * sizeof(float));
            std::memcpy(c, cp, static_cast<size_t>(H) * sizeof(float));
        }
    }
}

void lstm_cell_rows(const LstmCellArgs& a, int64_t begin, int64_t end) {
    if (a.saved) lstm_rows<true>(a, begin, end);
    else lstm_rows<false>(a, begin, end);
}

// A masked row's gradient passes straight through: dgates 0, dc_prev = dc, dh_prev = dh.
inline void pass_through(const float* src, float* dst, int64_t n) {
    if (!dst) return;
    if (src) std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float));
    else std::memset(dst, 0, static_cast<size_t>(n) * sizeof(float));
}

template <bool kDh, bool kDc, bool kDcPrev>
void lstm_backward_row(const float* __restrict__ s, const float* __restrict__ cp, const float* __restrict__ dh,
                       const float* __restrict__ dc, float* __restrict__ dg, float* __restrict__ dcp, int64_t H) {
    for (int64_t j = 0; j < H; ++j) {
        const float i = s[j], f = s[H + j], g = s[2 * H + j], o = s[3 * H + j], tc = s[4 * H + j];
        const float dhj = kDh ? dh[j] : 0.0f;
        const float dct = (kDc ? dc[j] : 0.0f) + dhj * o * (1.0f - tc * tc);
        dg[j] = dct * g * i * (1.0f - i);
        dg[H + j] = dct * cp[j] * f * (1.0f - f);
        dg[2 * H + j] = dct * i * (1.0f - g * g);
        dg[3 * H + j] = dhj * tc * o * (1.0f - o);
        if (kDcPrev) dcp[j] = dct * f;
    }
}

template <bool kDh, bool kDc, bool kDcPrev>
void lstm_backward_rows(const LstmCellBackwardArgs& a, int64_t begin, int64_t end) {
    const int64_t H = a.hidden;
    for (int64_t b = begin; b < end; ++b) {
        const float* dh = kDh ? static_cast<const float*>(a.dh) + b * H : nullptr;
        const float* dc = kDc ? static_cast<const float*>(a.dc) + b * H : nullptr;
        float* dg = static_cast<float*>(a.dgates) + b * 4 * H;
        float* dcp = kDcPrev ? static_cast<float*>(a.dc_prev) + b * H : nullptr;
        float* dhp = a.dh_prev ? static_cast<float*>(a.dh_prev) + b * H : nullptr;
        if (!row_updates(static_cast<const float*>(a.mask), b)) {
            std::memset(dg, 0, static_cast<size_t>(4 * H) * sizeof(float));
            pass_through(dc, dcp, H);
            pass_through(dh, dhp, H);
            continue;
        }
        lstm_backward_row<kDh, kDc, kDcPrev>(static_cast<const float*>(a.saved) + b * 5 * H,
                                             static_cast<const float*>(a.c_prev) + b * H, dh, dc, dg, dcp, H);
        if (dhp) std::memset(dhp, 0, static_cast<size_t>(H) * sizeof(float));
    }
}

void lstm_cell_backward_rows(const LstmCellBackwardArgs& a, int64_t begin, int64_t end) {
    using Rows = void (*)(const LstmCellBackwardArgs&, int64_t, int64_t);
    static constexpr Rows kRows[8] = {
        lstm_backward_rows<false, false, false>, lstm_backward_rows<false, false, true>,
        lstm_backward_rows<false, true, false>,  lstm_backward_rows<false, true, true>,
        lstm_backward_rows<true, false, false>,  lstm_backward_rows<true, false, true>,
        lstm_backward_rows<true, true, false>,   lstm_backward_rows<true, true, true>};
    kRows[(a.dh ? 4 : 0) + (a.dc ? 2 : 0) + (a.dc_prev ? 1 : 0)](a, begin, end);
}

template <bool kSave>
void gru_row(const float* __restrict__ xg, const float* __restrict__ hg, const float* __restrict__ hp,
             float* __restrict__ h, float* __restrict__ s, int64_t H) {
    for (int64_t j = 0; j < H; ++j) {
        const float r = sigmoid_f(xg[j] + hg[j]);
        const float z = sigmoid_f(xg[H + j] + hg[H + j]);
        const float n = tanh_f(xg[2 * H + j] + r * hg[2 * H + j]);
        h[j] = (1.0f - z) * n + z * hp[j];
        if (kSave) {
            s[j] = r;
            s[H + j] = z;
            s[2 * H + j] = n;
        }
    }
}

template <bool kSave>
void gru_rows(const GruCellArgs& a, int64_t begin, int64_t end) {
    const int64_t H = a.hidden;
    for (int64_t b = begin; b < end; ++b) {
        const float* hp = static_cast<const float*>(a.h_prev) + b * H;
        float* h = static_cast<float*>(a.h) + b * H;
        gru_row<kSave>(static_cast<const float*>(a.x_gates) + b * 3 * H, static_cast<const float*>(a.h_gates) + b * 3 * H,
                       hp, h, kSave ? static_cast<float*>(a.saved) + b * 3 * H : nullptr, H);
        if (!row_updates(static_cast<const float*>(a.mask), b))
            std::memcpy(h, hp, static_cast<size_t>(H) * sizeof(float));
    }
}

void gru_cell_rows(const GruCellArgs& a, int64_t begin, int64_t end) {
    if (a.saved) gru_rows<true>(a, begin, end);
    else gru_rows<false>(a, begin, end);
}

template <bool kDhPrev>
void gru_backward_row(const float* __restrict__ s, const float* __restrict__ hn, const float* __restrict__ hp,
                      const float* __restrict__ dh, float* __restrict__ dxg, float* __restrict__ dhg,
                      float* __restrict__ dhp, int64_t H) {
    for (int64_t j = 0; j < H; ++j) {
        const float r = s[j], z = s[H + j], n = s[2 * H + j], d = dh[j];
        const float dn = d * (1.0f - z) * (1.0f - n * n);
        const float dz = d * (hp[j] - n) * z * (1.0f - z);
        const float dr = dn * hn[j] * r * (1.0f - r);
        dxg[j] = dr;
        dxg[H + j] = dz;
        dxg[2 * H + j] = dn;
        dhg[j] = dr;
        dhg[H + j] = dz;
        dhg[2 * H + j] = dn * r;
        if (kDhPrev) dhp[j] = d * z;
    }
}

template <bool kDhPrev>
void gru_backward_rows(const GruCellBackwardArgs& a, int64_t begin, int64_t end) {
    const int64_t H = a.hidden;
    for (int64_t b = begin; b < end; ++b) {
        const float* dh = static_cast<const float*>(a.dh) + b * H;
        float* dxg = static_cast<float*>(a.dx_gates) + b * 3 * H;
        float* dhg = static_cast<float*>(a.dh_gates) + b * 3 * H;
        float* dhp = kDhPrev ? static_cast<float*>(a.dh_prev) + b * H : nullptr;
        if (!row_updates(static_cast<const float*>(a.mask), b)) {
            std::memset(dxg, 0, static_cast<size_t>(3 * H) * sizeof(float));
            std::memset(dhg, 0, static_cast<size_t>(3 * H) * sizeof(float));
            if (kDhPrev) std::memcpy(dhp, dh, static_cast<size_t>(H) * sizeof(float));
            continue;
        }
        gru_backward_row<kDhPrev>(static_cast<const float*>(a.saved) + b * 3 * H,
                                  static_cast<const float*>(a.h_gates) + b * 3 * H + 2 * H,
                                  static_cast<const float*>(a.h_prev) + b * H, dh, dxg, dhg, dhp, H);
    }
}

void gru_cell_backward_rows(const GruCellBackwardArgs& a, int64_t begin, int64_t end) {
    if (a.dh_prev) gru_backward_rows<true>(a, begin, end);
    else gru_backward_rows<false>(a, begin, end);
}

// Philox-4x32-10, one block per four elements: ten rounds of two 32x32->64-bit products. Element j of
// the stream takes word j mod 4 of the block at counter j / 4 (philox.h); drawing one block per element
// and keeping its first word, as this did before, spent four times the multiplies: dropout was 19% of
// the MNIST MLP's training step at one thread (perf, issue 16), a quarter of what its GEMMs took.
// The mask is the same pure function of (seed, j) as philox_uniform(seed, j) >= p on every backend:
// the uniform is r / 2^24 for the 24-bit integer r, so the test is r >= ceil(p 2^24), exactly, in
// integers; and the dropped element's +0.0 comes from masking the kept value's bits, which (unlike
// a float select) GCC vectorises for AVX2 as well.
inline float dropout_element(float x, uint32_t word, int32_t threshold, float scale) {
    const float kept = x * scale;
    const int32_t r = static_cast<int32_t>(word >> 8);
    uint32_t bits;
    std::memcpy(&bits, &kept, sizeof bits);
    bits &= static_cast<uint32_t>(-static_cast<int32_t>(r >= threshold));
    float out;
    std::memcpy(&out, &bits, sizeof out);
    return out;
}

#if KN_CPU_X86 && defined(__AVX2__)
// Philox-4x32-10 written out for SIMD, one block per 32-bit lane (register w[e] holds word e of each
// lane's block): the same arithmetic as philox4x32_10_block, which dropout_blocks' plain loop below
// leaves to the compiler. GCC 12 vectorised that loop badly: with AVX-512DQ it widened each 32x32->64
// product to 64-bit lanes for vpmullq (3 uops, ~15 cycles of latency on Intel cores), and its AVX2 code
// was little better: dropout took 1.56-1.58 ns per element with AVX-512 and 2.63-2.64 on the AVX2 path on
// an Intel Xeon (model 207, one thread, 64K elements from L2; native/dev/bandwidth_cpu_bench dropout),
// ~7% of the MNIST MLP's training step there. Here each product is vpmuludq, which multiplies the even 32-bit
// lanes into 64 bits; a second one takes the odd lanes shifted down, and an in-lane shuffle (and blend)
// sorts the low and high halves back into 32-bit lanes. Napkin math per round and register: 2 x (shift,
// 2 multiplies, 2 shuffles or 4 shuffle/blends) + 2 three-way XORs, plus 2 key additions: 12-16
// operations; 10 rounds for 16 blocks (AVX-512) = 64 elements, ~2.5 operations per element; 8 blocks
// (AVX2) = 32 elements, ~5. A round is a chain of ~9 cycles (multiply 5, shuffle, XOR), so two
// registers' chains are interleaved. Measured (same machine and bench): AVX-512 0.54 ns per element,
// AVX2 path 1.10-1.15 (benchmarks/results/2026-12-06-intel-xeon/dropout.txt); in a sweep of 4 runs each,
// one chain 0.52-0.60 / 1.27-1.38, two 0.51-0.53 / 1.04-1.12, three or four 0.50 / 0.88-1.15.
// GCC 12's integer shift and multiply intrinsics start from _mm512_undefined_epi32(), a deliberately
// uninitialised value that -W(maybe-)uninitialized reports once inlined (as in gemm_avx512.cpp).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
#if defined(__AVX512F__)
using PhiloxLanes = __m512i;
constexpr uint32_t kPhiloxLanes = 16;
inline PhiloxLanes philox_set1(uint32_t v) { return _mm512_set1_epi32(static_cast<int>(v)); }
inline PhiloxLanes philox_iota() { return _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15); }
inline PhiloxLanes philox_add(PhiloxLanes a, PhiloxLanes b) { return _mm512_add_epi32(a, b); }
inline PhiloxLanes philox_xor3(PhiloxLanes a, PhiloxLanes b, PhiloxLanes c) {
    return _mm512_ternarylogic_epi32(a, b, c, 0x96);
}
inline void philox_mulhilo(PhiloxLanes a, PhiloxLanes m, PhiloxLanes& hi, PhiloxLanes& lo) {
    const __m512i even = _mm512_mul_epu32(a, m);                           // lanes 2i: words (lo, hi)
    const __m512i odd = _mm512_mul_epu32(_mm512_srli_epi64(a, 32), m);     // lanes 2i + 1, likewise
    lo = _mm512_mask_shuffle_epi32(even, 0xAAAA, odd, _MM_PERM_CCAA);      // odd lanes: odd's low words
    hi = _mm512_mask_shuffle_epi32(odd, 0x5555, even, _MM_PERM_DDBB);      // even lanes: even's high words
}
#else
using PhiloxLanes = __m256i;
constexpr uint32_t kPhiloxLanes = 8;
inline PhiloxLanes philox_set1(uint32_t v) { return _mm256_set1_epi32(static_cast<int>(v)); }
inline PhiloxLanes philox_iota() { return _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7); }
inline PhiloxLanes philox_add(PhiloxLanes a, PhiloxLanes b) { return _mm256_add_epi32(a, b); }
inline PhiloxLanes philox_xor3(PhiloxLanes a, PhiloxLanes b, PhiloxLanes c) {
    return _mm256_xor_si256(_mm256_xor_si256(a, b), c);
}
inline void philox_mulhilo(PhiloxLanes a, PhiloxLanes m, PhiloxLanes& hi, PhiloxLanes& lo) {
    const __m256i even = _mm256_mul_epu32(a, m);
    const __m256i odd = _mm256_mul_epu32(_mm256_srli_epi64(a, 32), m);
    lo = _mm256_blend_epi32(even, _mm256_shuffle_epi32(odd, 0xA0), 0xAA);   // words (0, 0, 2, 2) of odd
    hi = _mm256_blend_epi32(_mm256_shuffle_epi32(even, 0xF5), odd, 0xAA);   // words (1, 1, 3, 3) of even
}
#endif

// The four words of the blocks at counters (c0 + lane, c1) and, for group g, (c0 + g kPhiloxLanes + lane,
// c1) under key (k0, k1): kGroups independent chains interleaved.
template <int kGroups>
inline void philox_lanes(uint32_t c0, uint32_t c1, uint32_t k0, uint32_t k1, PhiloxLanes w[kGroups][4]) {
    PhiloxLanes x0[kGroups], x1[kGroups], x2[kGroups], x3[kGroups];
    for (int g = 0; g < kGroups; ++g) {
        x0[g] = philox_add(philox_set1(c0 + g * kPhiloxLanes), philox_iota());
        x1[g] = philox_set1(c1);
        x2[g] = philox_set1(0);
        x3[g] = x2[g];
    }
    PhiloxLanes key0 = philox_set1(k0), key1 = philox_set1(k1);
    const PhiloxLanes m0 = philox_set1(kPhiloxM0), m1 = philox_set1(kPhiloxM1);
    const PhiloxLanes w0 = philox_set1(kPhiloxW0), w1 = philox_set1(kPhiloxW1);
    for (int round = 0; round < 10; ++round) {
        for (int g = 0; g < kGroups; ++g) {
            PhiloxLanes hi0, lo0, hi1, lo1;
            philox_mulhilo(x0[g], m0, hi0, lo0);
            philox_mulhilo(x2[g], m1, hi1, lo1);
            x0[g] = philox_xor3(hi1, x1[g], key0);
            x2[g] = philox_xor3(hi0, x3[g], key1);
            x1[g] = lo1;
            x3[g] = lo0;
        }
        key0 = philox_add(key0, w0);
        key1 = philox_add(key1, w1);
    }
    for (int g = 0; g < kGroups; ++g) {
        w[g][0] = x0[g];
        w[g][1] = x1[g];
        w[g][2] = x2[g];
        w[g][3] = x3[g];
    }
}

// kPhiloxLanes blocks = 4 kPhiloxLanes elements of dropout: the words transposed into element order
// (element 4k + e takes word e of block k), then kept where (word >> 8) >= threshold, as dropout_element.
template <int kGroups>
inline void dropout_lanes(const float* x, float* y, int32_t threshold, float scale, uint32_t c0, uint32_t c1,
                          uint32_t k0, uint32_t k1) {
    PhiloxLanes ws[kGroups][4];
    philox_lanes<kGroups>(c0, c1, k0, k1, ws);
    for (int g = 0; g < kGroups; ++g, x += 4 * kPhiloxLanes, y += 4 * kPhiloxLanes) {
        const PhiloxLanes* w = ws[g];
#if defined(__AVX512F__)
        // Two rounds of two-source permutes: (w0, w1) and (w2, w3) interleaved pairwise, then the pairs
        // interleaved, 8 vpermt2d for 64 elements.
        const __m512i pair_lo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
        const __m512i pair_hi = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
        const __m512i quad_lo = _mm512_setr_epi32(0, 1, 16, 17, 2, 3, 18, 19, 4, 5, 20, 21, 6, 7, 22, 23);
        const __m512i quad_hi = _mm512_setr_epi32(8, 9, 24, 25, 10, 11, 26, 27, 12, 13, 28, 29, 14, 15, 30, 31);
        const __m512i l01 = _mm512_permutex2var_epi32(w[0], pair_lo, w[1]);  // blocks 0-7: words 0, 1
        const __m512i h01 = _mm512_permutex2var_epi32(w[0], pair_hi, w[1]);  // blocks 8-15
        const __m512i l23 = _mm512_permutex2var_epi32(w[2], pair_lo, w[3]);
        const __m512i h23 = _mm512_permutex2var_epi32(w[2], pair_hi, w[3]);
        const __m512i words[4] = {_mm512_permutex2var_epi32(l01, quad_lo, l23),   // blocks 0-3
                                  _mm512_permutex2var_epi32(l01, quad_hi, l23),   // blocks 4-7
                                  _mm512_permutex2var_epi32(h01, quad_lo, h23),
                                  _mm512_permutex2var_epi32(h01, quad_hi, h23)};
        const __m512i t = _mm512_set1_epi32(threshold);
        const __m512 s = _mm512_set1_ps(scale);
        for (int q = 0; q < 4; ++q) {
            const __mmask16 keep = _mm512_cmpge_epi32_mask(_mm512_srli_epi32(words[q], 8), t);
            _mm512_storeu_ps(y + 16 * q, _mm512_maskz_mul_ps(keep, _mm512_loadu_ps(x + 16 * q), s));
        }
#else
        // The 4x4 transpose within each 128-bit half (unpack), then the halves regrouped: 12 shuffles for
        // 32 elements. Block b sits in half b / 4 of the unpacked registers.
        const __m256i t0 = _mm256_unpacklo_epi32(w[0], w[1]), t1 = _mm256_unpackhi_epi32(w[0], w[1]);
        const __m256i t2 = _mm256_unpacklo_epi32(w[2], w[3]), t3 = _mm256_unpackhi_epi32(w[2], w[3]);
        const __m256i b04 = _mm256_unpacklo_epi64(t0, t2), b15 = _mm256_unpackhi_epi64(t0, t2);
        const __m256i b26 = _mm256_unpacklo_epi64(t1, t3), b37 = _mm256_unpackhi_epi64(t1, t3);
        const __m256i words[4] = {_mm256_permute2x128_si256(b04, b15, 0x20),    // blocks 0, 1
                                  _mm256_permute2x128_si256(b26, b37, 0x20),    // blocks 2, 3
                                  _mm256_permute2x128_si256(b04, b15, 0x31),
                                  _mm256_permute2x128_si256(b26, b37, 0x31)};
        const __m256i t = _mm256_set1_epi32(threshold - 1);  // r >= threshold as r > threshold - 1 (no 32-bit >=)
        const __m256 s = _mm256_set1_ps(scale);
        for (int q = 0; q < 4; ++q) {
            const __m256i keep = _mm256_cmpgt_epi32(_mm256_srli_epi32(words[q], 8), t);
            const __m256 kept = _mm256_mul_ps(_mm256_loadu_ps(x + 8 * q), s);
            _mm256_storeu_ps(y + 8 * q, _mm256_and_ps(kept, _mm256_castsi256_ps(keep)));
        }
#endif
    }
}
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
#endif

// Blocks whose counters share the high word c1: block k is counter (c0 + k, c1), no carry in between,
// and serves elements 4k .. 4k + 3 of x and y.
void dropout_blocks(const float* x, float* y, uint32_t blocks, int32_t threshold, float scale, uint32_t c0,
                    uint32_t c1, uint32_t k0, uint32_t k1) {
    uint32_t k = 0;
#if KN_CPU_X86 && defined(__AVX2__)
    for (; blocks - k >= 2 * kPhiloxLanes; k += 2 * kPhiloxLanes)
        dropout_lanes<2>(x + 4 * k, y + 4 * k, threshold, scale, c0 + k, c1, k0, k1);
    for (; blocks - k >= kPhiloxLanes; k += kPhiloxLanes)
        dropout_lanes<1>(x + 4 * k, y + 4 * k, threshold, scale, c0 + k, c1, k0, k1);
#endif
    for (; k < blocks; ++k) {
        uint32_t words[4];
        philox4x32_10_block(c0 + k, c1, k0, k1, words);
        for (int e = 0; e < 4; ++e) y[4 * k + e] = dropout_element(x[4 * k + e], words[e], threshold, scale);
    }
}

// Elements offset .. offset + n - 1 of the stream: the ones before the first whole block and after the
// last one one at a time, whole blocks in runs cut where the block counter's low word wraps, so each
// run's lanes need only 32-bit arithmetic (AVX2 has no 64-bit lane multiply).
void dropout(const float* x, float* y, int64_t n, float p, float scale, uint64_t seed, uint64_t offset) {
    const uint32_t k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
    const int32_t threshold = static_cast<int32_t>(std::ceil(static_cast<double>(p) * 16777216.0));  // p in [0, 1)
    int64_t done = 0;
    auto one = [&] {
        y[done] = dropout_element(x[done], philox_word(seed, offset + static_cast<uint64_t>(done)), threshold, scale);
        ++done;
    };
    while (done < n && ((offset + static_cast<uint64_t>(done)) & 3) != 0) one();
    while (n - done >= 4) {
        const uint64_t counter = (offset + static_cast<uint64_t>(done)) >> 2;
        const uint64_t to_wrap = (uint64_t{1} << 32) - (counter & 0xFFFFFFFFu);  // 1 .. 2^32
        const uint32_t blocks = static_cast<uint32_t>(
            std::min<uint64_t>({to_wrap, static_cast<uint64_t>(n - done) / 4, uint64_t{1} << 28}));
        dropout_blocks(x + done, y + done, blocks, threshold, scale, static_cast<uint32_t>(counter),
                       static_cast<uint32_t>(counter >> 32), k0, k1);
        done += 4 * static_cast<int64_t>(blocks);
    }
    while (done < n) one();
}

}  // namespace

const SpanKernels& table() {
    static const SpanKernels kernels = {unary, unary_streaming, unary_backward, binary, binary_backward, sum, sum_columns,
                                        extreme, extreme_columns, arg_extreme_columns, softmax_row,
                                        softmax_backward_row, lstm_cell_rows, lstm_cell_backward_rows,
                                        gru_cell_rows, gru_cell_backward_rows, dropout};
    return kernels;
}

}  // namespace kn::cpu::KN_ISA
