// conv_depthwise_impl.h: the per-plane loops of depthwise convolution (one input channel per group;
// conv.cpp holds the threading, the zero padding and the scratch), written as plain C++ that the
// compiler vectorises. Included once per instruction set with KN_ISA naming the namespace (portable
// in conv.cpp, avx2 in conv_depthwise_avx2.cpp, avx512 in conv_depthwise_avx512.cpp: see KN_ISA_ENTRY
// in cpu_kernels.h); everything except planes() has internal linkage, so no copy compiled for AVX-512
// can be picked by the linker for the portable path.
//
// Why per ISA: a depthwise output is kh kw multiply-adds on a plane that stays in L1/L2, so the loop
// is compute bound and its speed is the vector width. In conv.cpp, compiled for baseline x86-64, it
// ran on 4-wide SSE without FMA: 15 GFLOP/s forward for 8 x 64 x 56x56 3x3 on one Zen 5 core.
// Napkin math (AVX-512): a strip of 16 outputs is one register; each of the 9 taps is one unaligned
// load and one FMA, so ~9 cycles per 16 outputs at one load + one FMA issued per cycle: ~32 FLOP per
// cycle, ~150 GFLOP/s at 4.5 GHz, before the plane's copies into and out of the padded scratch.
// The loops are written on a four-function vector type (Vec below: AVX-512 / AVX2 intrinsics, or four
// plain floats the compiler maps to SSE or NEON): as plain loops over a float acc[16], GCC kept the
// accumulators in memory and vectorised little (29 GFLOP/s forward with AVX-512 enabled).
#ifndef KN_ISA
#error "define KN_ISA (portable, avx2 or avx512) before including conv_depthwise_impl.h"
#endif

#include "cpu_kernels.h"

#include <cstdint>
#include <cstring>
#if defined(__AVX512F__) || defined(__AVX2__)
#include <immintrin.h>
#endif

#ifndef KN_DEPTHWISE_PLANES_DECLARED
#define KN_DEPTHWISE_PLANES_DECLARED
namespace kn::cpu {
// A correlation of one source plane with one kh x kw filter:
//     out[oh, ow] = sum over taps (r, s) of w[r kw + s] src[(oh sh + r dh) pitch + ow sw + s dw]
// for oh < out_h, ow < out_w, every read in bounds (the caller pads the source).
struct Correlation {
    int64_t out_h, out_w;
    int64_t kh, kw, dh, dw, sh, sw;
    int64_t pitch;  // floats from one source row to the next
};
struct DepthwisePlanes {
    // out (out_h x out_w, rows out_w apart) = bias + the correlation; with accumulate, out += it.
    void (*correlate)(const Correlation& c, const float* src, const float* w, float bias, bool accumulate,
                      float* out);
    // sums[r kw + s] += sum over (oh, ow) of dy[oh, ow] src[(oh sh + r dh) pitch + ow sw + s dw]:
    // the weight gradient of one filter over one image (float lanes, then float64 per tap).
    void (*weight_sums)(const Correlation& c, const float* dy, const float* src, double* sums);
};
namespace portable { const DepthwisePlanes& depthwise_planes(); }
namespace avx2 { const DepthwisePlanes& depthwise_planes(); }
namespace avx512 { const DepthwisePlanes& depthwise_planes(); }
}  // namespace kn::cpu
#endif

namespace kn::cpu::KN_ISA {
namespace {

// ---- Vec: kLanes floats; loads and stores of a whole vector or of its first n lanes (a Tail) -----
#if defined(__AVX512F__)
constexpr int64_t kLanes = 16;
struct Vec { __m512 v; };
struct Tail {
    int64_t n;
    __mmask16 m;
    explicit Tail(int64_t count) : n(count), m(static_cast<__mmask16>((1u << count) - 1)) {}
};
inline Vec splat(float x) { return {_mm512_set1_ps(x)}; }
inline Vec fma(Vec a, Vec b, Vec c) { return {_mm512_fmadd_ps(a.v, b.v, c.v)}; }
inline Vec add(Vec a, Vec b) { return {_mm512_add_ps(a.v, b.v)}; }
inline Vec load(const float* p) { return {_mm512_loadu_ps(p)}; }
inline Vec load(const float* p, Tail t) { return {_mm512_maskz_loadu_ps(t.m, p)}; }
inline void store(float* p, Vec a) { _mm512_storeu_ps(p, a.v); }
inline void store(float* p, Vec a, Tail t) { _mm512_mask_storeu_ps(p, t.m, a.v); }
inline __m512i lane_offsets(int64_t stride) {
    return _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                              _mm512_set1_epi32(static_cast<int>(stride)));
}
inline Vec load_strided(const float* p, int64_t stride) {
    return {_mm512_mask_i32gather_ps(_mm512_setzero_ps(), 0xFFFF, lane_offsets(stride), p, 4)};
}
inline Vec load_strided(const float* p, int64_t stride, Tail t) {
    return {_mm512_mask_i32gather_ps(_mm512_setzero_ps(), t.m, lane_offsets(stride), p, 4)};
}
// Stride 2: the even elements of 31 contiguous floats (two loads, one two-source permute), never
// reading past the last one used; a tail of n lanes reads 2n - 1.
inline Vec even_of(__m512 lo, __m512 hi) {
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    return {_mm512_permutex2var_ps(lo, even, hi)};
}
inline Vec load_stride2(const float* p) {
    return even_of(_mm512_loadu_ps(p), _mm512_maskz_loadu_ps(static_cast<__mmask16>(0x7FFF), p + 16));
}
inline Vec load_stride2(const float* p, Tail t) {
    const uint32_t used = (uint32_t{1} << (2 * t.n - 1)) - 1;  // 2n - 1 floats
    return even_of(_mm512_maskz_loadu_ps(static_cast<__mmask16>(used), p),
                   _mm512_maskz_loadu_ps(static_cast<__mmask16>(used >> 16), p + 16));
}
#elif defined(__AVX2__)
constexpr int64_t kLanes = 8;
struct Vec { __m256 v; };
struct Tail {
    int64_t n;
    __m256i m;
    explicit Tail(int64_t count)
        : n(count),
          m(_mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(count)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7))) {}
};
inline Vec splat(float x) { return {_mm256_set1_ps(x)}; }
inline Vec fma(Vec a, Vec b, Vec c) { return {_mm256_fmadd_ps(a.v, b.v, c.v)}; }
inline Vec add(Vec a, Vec b) { return {_mm256_add_ps(a.v, b.v)}; }
inline Vec load(const float* p) { return {_mm256_loadu_ps(p)}; }
inline Vec load(const float* p, Tail t) { return {_mm256_maskload_ps(p, t.m)}; }
inline void store(float* p, Vec a) { _mm256_storeu_ps(p, a.v); }
inline void store(float* p, Vec a, Tail t) { _mm256_maskstore_ps(p, t.m, a.v); }
inline __m256i lane_offsets(int64_t stride) {
    return _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_epi32(static_cast<int>(stride)));
}
inline Vec load_strided(const float* p, int64_t stride) { return {_mm256_i32gather_ps(p, lane_offsets(stride), 4)}; }
inline Vec load_strided(const float* p, int64_t stride, Tail t) {
    return {_mm256_mask_i32gather_ps(_mm256_setzero_ps(), p, lane_offsets(stride), _mm256_castsi256_ps(t.m), 4)};
}
// Stride 2: the even elements of 15 contiguous floats (two loads, a shuffle within 128-bit halves,
// then the 64-bit quarters put in order), never reading past the last one used.
inline Vec even_of(__m256 lo, __m256 hi) {
    const __m256 pairs = _mm256_shuffle_ps(lo, hi, _MM_SHUFFLE(2, 0, 2, 0));  // l0 l2 h0 h2 | l4 l6 h4 h6
    return {_mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(pairs), _MM_SHUFFLE(3, 1, 2, 0)))};
}
inline Vec load_stride2(const float* p) {
    return even_of(_mm256_loadu_ps(p), _mm256_maskload_ps(p + 8, Tail(7).m));
}
inline Vec load_stride2(const float* p, Tail t) {
    const int64_t used = 2 * t.n - 1;  // floats
    return even_of(_mm256_maskload_ps(p, Tail(used < 8 ? used : 8).m),
                   _mm256_maskload_ps(p + 8, Tail(used > 8 ? used - 8 : 0).m));
}
#else
// Four plain floats: loops of four the compiler turns into one SSE / NEON operation (or four scalar ones).
constexpr int64_t kLanes = 4;
struct Vec { float v[4]; };
struct Tail {
    int64_t n;
    explicit Tail(int64_t count) : n(count) {}
};
inline Vec splat(float x) { return {{x, x, x, x}}; }
inline Vec fma(Vec a, Vec b, Vec c) {
    for (int j = 0; j < 4; ++j) c.v[j] += a.v[j] * b.v[j];
    return c;
}
inline Vec add(Vec a, Vec b) {
    for (int j = 0; j < 4; ++j) a.v[j] += b.v[j];
    return a;
}
inline Vec load(const float* p) {
    Vec a;
    std::memcpy(a.v, p, sizeof a.v);
    return a;
}
inline Vec load(const float* p, Tail t) {
    Vec a = splat(0.0f);
    for (int64_t j = 0; j < t.n; ++j) a.v[j] = p[j];
    return a;
}
inline void store(float* p, Vec a) { std::memcpy(p, a.v, sizeof a.v); }
inline void store(float* p, Vec a, Tail t) {
    for (int64_t j = 0; j < t.n; ++j) p[j] = a.v[j];
}
inline Vec load_strided(const float* p, int64_t stride) { return {{p[0], p[stride], p[2 * stride], p[3 * stride]}}; }
inline Vec load_strided(const float* p, int64_t stride, Tail t) {
    Vec a = splat(0.0f);
    for (int64_t j = 0; j < t.n; ++j) a.v[j] = p[j * stride];
    return a;
}
inline Vec load_stride2(const float* p) { return load_strided(p, 2); }
inline Vec load_stride2(const float* p, Tail t) { return load_strided(p, 2, t); }
#endif

// The kLanes (or the tail's) source values of a strip at column stride sw.
inline Vec load_at(const float* p, int64_t sw) {
    return sw == 1 ? load(p) : sw == 2 ? load_stride2(p) : load_strided(p, sw);
}
inline Vec load_at(const float* p, int64_t sw, Tail t) {
    return sw == 1 ? load(p, t) : sw == 2 ? load_stride2(p, t) : load_strided(p, sw, t);
}

// ---- Forward correlation: strips of outputs in registers while every tap is added ---------------

// Strips at the same columns of R consecutive output rows (src: the source under output (oh, ow) at
// tap 0; out: output (oh, ow)): acc[i] = bias + sum over taps of w[tap] * source under (oh + i, ow + j).
// R independent accumulators hide the FMA latency (one strip alone is a chain of kh kw dependent
// FMAs, 4 cycles each: measured 36 GFLOP/s, the chain's bound), and each tap's weight is broadcast
// once for all R rows. `tail`: none for kLanes outputs per row, or a Tail for fewer.
template <int R, typename... T>
inline void row_strips(const Correlation& c, const float* src, const float* w, float bias, bool accumulate, float* out,
                       T... tail) {
    Vec acc[R];
    for (int i = 0; i < R; ++i) acc[i] = splat(bias);
    for (int64_t r = 0; r < c.kh; ++r)
        for (int64_t s = 0; s < c.kw; ++s) {
            const Vec wv = splat(w[r * c.kw + s]);
            const float* tap = src + r * c.dh * c.pitch + s * c.dw;
            for (int i = 0; i < R; ++i) acc[i] = fma(wv, load_at(tap + i * c.sh * c.pitch, c.sw, tail...), acc[i]);
        }
    for (int i = 0; i < R; ++i) {
        if (accumulate) acc[i] = add(acc[i], load(out + i * c.out_w, tail...));
        store(out + i * c.out_w, acc[i], tail...);
    }
}

// Output rows [oh, oh + R), every column.
template <int R>
inline void correlate_rows(const Correlation& c, const float* src, const float* w, float bias, bool accumulate,
                           int64_t oh, float* out) {
    const float* row = src + oh * c.sh * c.pitch;
    float* o = out + oh * c.out_w;
    int64_t ow = 0;
    for (; ow + kLanes <= c.out_w; ow += kLanes) row_strips<R>(c, row + ow * c.sw, w, bias, accumulate, o + ow);
    if (ow < c.out_w) row_strips<R>(c, row + ow * c.sw, w, bias, accumulate, o + ow, Tail(c.out_w - ow));
}

void correlate(const Correlation& c, const float* src, const float* w, float bias, bool accumulate, float* out) {
    int64_t oh = 0;
    for (; oh + 4 <= c.out_h; oh += 4) correlate_rows<4>(c, src, w, bias, accumulate, oh, out);
    for (; oh < c.out_h; ++oh) correlate_rows<1>(c, src, w, bias, accumulate, oh, out);
}

// ---- Weight gradient: per-tap accumulators over the whole plane --------------------------------

// Adds the lanes of acc[q] to sums[q] (q < count) in float64.
inline void add_lanes(const Vec* acc, int64_t count, double* sums) {
    for (int64_t q = 0; q < count; ++q) {
        float lanes[kLanes];
        store(lanes, acc[q]);
        double sum = 0;
        for (int64_t j = 0; j < kLanes; ++j) sum += lanes[j];
        sums[q] += sum;
    }
}

// TAPS accumulators (a 3x3 filter's 9 fit the registers of AVX2 and AVX-512 beside the dy strip):
// each dy strip is loaded once and multiplied by the source under each of the filter's taps.
template <int64_t KH, int64_t KW>
void weight_sums_fixed(const Correlation& c, const float* dy, const float* src, double* sums) {
    Vec acc[KH * KW];
    for (int64_t q = 0; q < KH * KW; ++q) acc[q] = splat(0.0f);
    for (int64_t oh = 0; oh < c.out_h; ++oh) {
        const float* d = dy + oh * c.out_w;
        const float* row = src + oh * c.sh * c.pitch;
        int64_t ow = 0;
        for (; ow + kLanes <= c.out_w; ow += kLanes) {
            const Vec dv = load(d + ow);
            for (int64_t r = 0; r < KH; ++r)
                for (int64_t s = 0; s < KW; ++s)
                    acc[r * KW + s] = fma(dv, load_at(row + r * c.dh * c.pitch + ow * c.sw + s * c.dw, c.sw),
                                          acc[r * KW + s]);
        }
        if (ow < c.out_w) {
            const Tail t(c.out_w - ow);
            const Vec dv = load(d + ow, t);
            for (int64_t r = 0; r < KH; ++r)
                for (int64_t s = 0; s < KW; ++s)
                    acc[r * KW + s] = fma(dv, load_at(row + r * c.dh * c.pitch + ow * c.sw + s * c.dw, c.sw, t),
                                          acc[r * KW + s]);
        }
    }
    add_lanes(acc, KH * KW, sums);
}

void weight_sums(const Correlation& c, const float* dy, const float* src, double* sums) {
    if (c.kh == 3 && c.kw == 3) {
        weight_sums_fixed<3, 3>(c, dy, src, sums);
        return;
    }
    // Any other filter: one tap at a time, as a 1x1 filter over the source shifted to that tap.
    Correlation tap = c;
    tap.kh = tap.kw = 1;
    for (int64_t r = 0; r < c.kh; ++r)
        for (int64_t s = 0; s < c.kw; ++s)
            weight_sums_fixed<1, 1>(tap, dy, src + r * c.dh * c.pitch + s * c.dw, sums + r * c.kw + s);
}

}  // namespace

const DepthwisePlanes& depthwise_planes() {
    static const DepthwisePlanes table{correlate, weight_sums};
    return table;
}

}  // namespace kn::cpu::KN_ISA
