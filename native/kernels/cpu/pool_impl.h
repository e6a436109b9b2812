// pool_impl.h: the per-plane loops of 2-D pooling (see pool.cpp for the technique and the threading),
// written as plain C++ that the compiler vectorises. Included once per instruction set with
// KN_ISA naming the namespace (portable in pool.cpp, avx2, avx512: see KN_ISA_ENTRY in cpu_kernels.h);
// everything except planes() has internal linkage and no std:: template is used, so no out-of-line copy compiled
// for AVX-512 can be picked by the linker for the portable path.
#ifndef KN_ISA
#error "define KN_ISA (portable, avx2 or avx512) before including pool_impl.h"
#endif

#include "cpu_kernels.h"

#include <cstdint>
#include <cstring>
#if defined(__AVX512F__) || defined(__AVX2__) || (defined(_MSC_VER) && defined(_M_X64))
#include <immintrin.h>
#endif

#ifndef KN_POOL_PLANES_DECLARED
#define KN_POOL_PLANES_DECLARED
namespace kn::cpu {
// Pools the (image, channel) planes [begin, end) of one call.
struct PoolPlanes {
    void (*forward)(const Pool2dArgs& args, int64_t begin, int64_t end);
    // scratch: (out_height + 1) * in_width + out_width floats (average pooling's per-row spreads).
    // Returns -1, or for max pooling the first position in indices (over the whole call) whose value
    // lies outside its plane: that plane's dx is left zero and the caller reports the error.
    int64_t (*backward)(const Pool2dBackwardArgs& args, int64_t begin, int64_t end, float* scratch);
};
namespace portable { const PoolPlanes& planes(); }
namespace avx2 { const PoolPlanes& planes(); }
namespace avx512 { const PoolPlanes& planes(); }
}  // namespace kn::cpu
#endif

namespace kn::cpu::KN_ISA {
namespace {

#if defined(__GNUC__) || defined(__clang__)
inline void prefetch(const float* p) { __builtin_prefetch(p); }
#elif defined(_M_X64)
inline void prefetch(const float* p) { _mm_prefetch(reinterpret_cast<const char*>(p), _MM_HINT_T0); }
#else
inline void prefetch(const float*) {}
#endif

// The backward's per-plane routines are kept out of line: each is compiled on its own, whatever
// backward_planes dispatches to next to it. Inlined together, GCC 12's code for the general average
// path ran the ResNet-stem shape 20% slower (8.9-9.1 -> 6.6-7.3 GB/s, AVX-512) once the tiled path
// was added beside it, and marking that one routine alone moved the general max path by 8%.
#if defined(__GNUC__) || defined(__clang__)
#define KN_POOL_PLANE __attribute__((noinline))
#elif defined(_MSC_VER)
#define KN_POOL_PLANE __declspec(noinline)
#else
#define KN_POOL_PLANE
#endif

inline int64_t min_i64(int64_t a, int64_t b) { return a < b ? a : b; }
inline int64_t max_i64(int64_t a, int64_t b) { return a > b ? a : b; }
inline bool is_nan(float v) { return v != v; }

// c ? a : b as a bitwise select of two computed values: with plain ?: (and ||) GCC keeps branches
// under its default -ftrapping-math and the loops stay scalar (measured 1.5 GB/s); as bit operations
// they vectorise.
inline int32_t select_bits(bool c, int32_t a, int32_t b) {
    const int32_t mask = -static_cast<int32_t>(c);
    return (a & mask) | (b & ~mask);
}
inline float select(bool c, float a, float b) {
    int32_t ia, ib;
    std::memcpy(&ia, &a, sizeof ia);
    std::memcpy(&ib, &b, sizeof ib);
    const int32_t r = select_bits(c, ia, ib);
    float f;
    std::memcpy(&f, &r, sizeof f);
    return f;
}
// Whether v replaces the running maximum b: larger, or the first NaN (the & and | are bitwise on
// purpose: every comparison is evaluated, so the loop has no branches; the int casts say so to clang's
// -Wbitwise-instead-of-logical).
inline bool replaces(float v, float b) {
    return static_cast<int>(v > b) | (static_cast<int>(is_nan(v)) & static_cast<int>(!is_nan(b)));
}

// Output columns [lo, hi) whose whole window lies inside the input row.
struct Interior {
    int64_t lo, hi;
};

Interior interior_columns(const Pool2dGeometry& g) {
    const int64_t lo = min_i64(g.out_width, (g.pad_width + g.stride_width - 1) / g.stride_width);
    const int64_t last = g.in_width + g.pad_width - g.kernel_width;  // ow * sw - pw + kw <= in_width
    const int64_t hi = last < 0 ? 0 : min_i64(g.out_width, last / g.stride_width + 1);
    return {lo, max_i64(lo, hi)};
}

// The divisor of the window whose real part spans `rows` x `cols` elements.
inline float avg_divisor(const Pool2dGeometry& g, int64_t rows, int64_t cols) {
    return static_cast<float>(g.count_include_pad ? g.kernel_height * g.kernel_width : rows * cols);
}

// ---- Max, forward --------------------------------------------------------------------------------

#if defined(__AVX512F__)
// AVX-512: 16 outputs per step with masked loads and stores, so a 14-wide MNIST row is one step with
// no scalar remainder (GCC's own vectorisation did 8 lanes plus 6 scalar NaN-aware selects, which
// cost more than the vector part).
inline __mmask16 lanes(int64_t n) { return static_cast<__mmask16>(n >= 16 ? 0xFFFF : (1u << n) - 1u); }

// row[q * step] for the n <= 16 lanes q, zero beyond n.
template <int STRIDE>
inline __m512 load_strided(const float* row, int64_t step, int64_t n) {
    const __mmask16 m = lanes(n);
    if (STRIDE == 1) return _mm512_maskz_loadu_ps(m, row);
    if (STRIDE == 2) {
        // Elements 0, 2, .., 2 (n - 1) of the next 2n - 1 floats: two masked loads, one permute.
        const int64_t span = 2 * n - 1;
        const __m512 lo = _mm512_maskz_loadu_ps(lanes(span), row);
        const __m512 hi = _mm512_maskz_loadu_ps(lanes(span > 16 ? span - 16 : 0), row + 16);
        const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
        return _mm512_permutex2var_ps(lo, even, hi);
    }
    const __m512i offsets = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                               _mm512_set1_epi32(static_cast<int32_t>(step)));
    return _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m, offsets, row, 4);
}

template <int STRIDE, bool INDICES>
void max_interior(const float* __restrict plane, int64_t W, int64_t ih0, int64_t ih1, int64_t kw, int64_t sw,
                  int64_t first_col, int64_t count, float* __restrict best_out, int32_t* __restrict where_out) {
    const int64_t step = STRIDE > 0 ? STRIDE : sw;
    const __m512i lane_offsets = _mm512_mullo_epi32(
        _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15), _mm512_set1_epi32(static_cast<int32_t>(step)));
    for (int64_t q0 = 0; q0 < count; q0 += 16) {
        const int64_t n = min_i64(16, count - q0);
        const int64_t col = first_col + q0 * step;
        __m512 best = load_strided<STRIDE>(plane + ih0 * W + col, step, n);
        __m512i where = _mm512_add_epi32(_mm512_set1_epi32(static_cast<int32_t>(ih0 * W + col)), lane_offsets);
        for (int64_t ih = ih0; ih < ih1; ++ih)
            for (int64_t s = ih == ih0 ? 1 : 0; s < kw; ++s) {
                const __m512 v = load_strided<STRIDE>(plane + ih * W + col + s, step, n);
                // take = v > best || (v is NaN && best is not): the first maximum, NaN sticking.
                const __mmask16 take = _mm512_cmp_ps_mask(v, best, _CMP_GT_OQ) |
                                       (_mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q) &
                                        _mm512_cmp_ps_mask(best, best, _CMP_ORD_Q));
                best = _mm512_mask_mov_ps(best, take, v);
                if (INDICES) {
                    const __m512i position =
                        _mm512_add_epi32(_mm512_set1_epi32(static_cast<int32_t>(ih * W + col + s)), lane_offsets);
                    where = _mm512_mask_mov_epi32(where, take, position);
                }
            }
        _mm512_mask_storeu_ps(best_out + q0, lanes(n), best);
        if (INDICES) _mm512_mask_storeu_epi32(where_out + q0, lanes(n), where);
    }
}
#elif defined(__AVX2__)
// AVX2: the AVX-512 loop above at 8 lanes, masks as vectors. GCC's own vectorisation of the generic
// loop below did 8 lanes with a scalar remainder (6 NaN-aware selects per 14-wide MNIST row) and,
// for stride 2, gathered the even columns element by element. One thread, Intel Xeon family 6 model
// 207, KN_CPU_SIMD=avx2, alternating builds (native/dev/cnn_cpu_bench pooling, GB/s of x + y +
// indices): MNIST 64 x 32 28x28 2x2/2 6.7-6.8 -> 11.8-12.3 (AVX-512 on the same core: 18-19), ResNet
// stem 8 x 64 112x112 3x3/2 pad 1 4.8-4.9 -> 5.8-6.0, global 7x7 0.8 -> 1.0; the same values and
// indices, NaN included.
inline __m256i lanes8(int64_t n) {
    const __m256i index = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int32_t>(n < 8 ? n : 8)), index);  // lane < n
}

// row[q * step] for the n <= 8 lanes q, zero beyond n; masked loads never touch the lanes left out.
template <int STRIDE>
inline __m256 load_strided8(const float* row, int64_t step, int64_t n) {
    if (STRIDE == 1) return _mm256_maskload_ps(row, lanes8(n));
    if (STRIDE == 2) {
        // Elements 0, 2, .., 2 (n - 1) of the next 2n - 1 floats: two masked loads, the even lanes of
        // each picked (vshufps) and the 128-bit halves put in order (vpermpd).
        const int64_t span = 2 * n - 1;
        const __m256 lo = _mm256_maskload_ps(row, lanes8(span));
        const __m256 hi = _mm256_maskload_ps(row + 8, lanes8(span > 8 ? span - 8 : 0));
        const __m256 even = _mm256_shuffle_ps(lo, hi, _MM_SHUFFLE(2, 0, 2, 0));  // lo0 lo2 hi0 hi2 | lo4 lo6 hi4 hi6
        return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(even), _MM_SHUFFLE(3, 1, 2, 0)));
    }
    const __m256i offsets = _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
                                               _mm256_set1_epi32(static_cast<int32_t>(step)));
    return _mm256_mask_i32gather_ps(_mm256_setzero_ps(), row, offsets, _mm256_castsi256_ps(lanes8(n)), 4);
}

template <int STRIDE, bool INDICES>
void max_interior(const float* __restrict plane, int64_t W, int64_t ih0, int64_t ih1, int64_t kw, int64_t sw,
                  int64_t first_col, int64_t count, float* __restrict best_out, int32_t* __restrict where_out) {
    const int64_t step = STRIDE > 0 ? STRIDE : sw;
    const __m256i lane_offsets =
        _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_epi32(static_cast<int32_t>(step)));
    for (int64_t q0 = 0; q0 < count; q0 += 8) {
        const int64_t n = min_i64(8, count - q0);
        const int64_t col = first_col + q0 * step;
        __m256 best = load_strided8<STRIDE>(plane + ih0 * W + col, step, n);
        __m256i where = _mm256_add_epi32(_mm256_set1_epi32(static_cast<int32_t>(ih0 * W + col)), lane_offsets);
        for (int64_t ih = ih0; ih < ih1; ++ih)
            for (int64_t s = ih == ih0 ? 1 : 0; s < kw; ++s) {
                const __m256 v = load_strided8<STRIDE>(plane + ih * W + col + s, step, n);
                // take = v > best || (v is NaN && best is not): the first maximum, NaN sticking.
                const __m256 take = _mm256_or_ps(_mm256_cmp_ps(v, best, _CMP_GT_OQ),
                                                 _mm256_and_ps(_mm256_cmp_ps(v, v, _CMP_UNORD_Q),
                                                               _mm256_cmp_ps(best, best, _CMP_ORD_Q)));
                best = _mm256_blendv_ps(best, v, take);
                if (INDICES) {
                    const __m256i position =
                        _mm256_add_epi32(_mm256_set1_epi32(static_cast<int32_t>(ih * W + col + s)), lane_offsets);
                    where = _mm256_castps_si256(
                        _mm256_blendv_ps(_mm256_castsi256_ps(where), _mm256_castsi256_ps(position), take));
                }
            }
        const __m256i store = lanes8(n);
        _mm256_maskstore_ps(best_out + q0, store, best);
        if (INDICES) _mm256_maskstore_epi32(where_out + q0, store, where);
    }
}
#else

// The `count` interior outputs of one output row, accumulated in place in the output row itself (it
// is in L1; stack temporaries and copies cost more than the work for MNIST's 14-wide rows). STRIDE > 0
// is the column stride as a compile-time constant; 0 means "use sw".
template <int STRIDE, bool INDICES>
void max_interior(const float* __restrict plane, int64_t W, int64_t ih0, int64_t ih1, int64_t kw, int64_t sw,
                  int64_t first_col, int64_t count, float* __restrict best, int32_t* __restrict where) {
    const int64_t step = STRIDE > 0 ? STRIDE : sw;
    {
        const float* row = plane + ih0 * W + first_col;
        const int32_t base = static_cast<int32_t>(ih0 * W + first_col);
        for (int64_t q = 0; q < count; ++q) best[q] = row[q * step];
        if (INDICES)
            for (int64_t q = 0; q < count; ++q) where[q] = base + static_cast<int32_t>(q * step);
    }
    for (int64_t ih = ih0; ih < ih1; ++ih) {
        for (int64_t s = ih == ih0 ? 1 : 0; s < kw; ++s) {
            const float* row = plane + ih * W + first_col + s;
            const int32_t base = static_cast<int32_t>(ih * W + first_col + s);
            for (int64_t q = 0; q < count; ++q) {
                const float v = row[q * step];
                const bool take = replaces(v, best[q]);
                best[q] = select(take, v, best[q]);
                if (INDICES) where[q] = select_bits(take, base + static_cast<int32_t>(q * step), where[q]);
            }
        }
    }
}

#endif

// One output whose window is clipped (a border column): the same steps over the real elements only.
void max_clipped(const float* plane, int64_t W, int64_t ih0, int64_t ih1, int64_t iw0, int64_t iw1, float* y,
                 int32_t* index) {
    float best = plane[ih0 * W + iw0];
    int64_t where = ih0 * W + iw0;
    for (int64_t ih = ih0; ih < ih1; ++ih)
        for (int64_t iw = ih == ih0 ? iw0 + 1 : iw0; iw < iw1; ++iw) {
            const float v = plane[ih * W + iw];
            if (replaces(v, best)) {
                best = v;
                where = ih * W + iw;
            }
        }
    *y = best;
    if (index) *index = static_cast<int32_t>(where);
}

// Asks for the input rows the next output row reads first (rows [ih1, ih1 + stride_height)): a
// plane is walked a few rows at a time, which the hardware prefetchers follow poorly when the planes
// come from DRAM (ResNet-stem max pooling, 8 x 64 x 112x112 from DRAM on one core: 7.6 ms without,
// 3.1 ms with; two output rows ahead measured the same).
inline void prefetch_rows(const float* plane, int64_t W, int64_t from, int64_t to) {
    for (int64_t ih = from; ih < to; ++ih)
        for (int64_t i = 0; i < W; i += 16) prefetch(plane + ih * W + i);
}

template <int STRIDE, bool INDICES>
void max_plane(const Pool2dGeometry& g, const Interior& in, const float* plane, float* y, int32_t* indices) {
    const int64_t W = g.in_width, OW = g.out_width;
    for (int64_t oh = 0; oh < g.out_height; ++oh) {
        const int64_t h = oh * g.stride_height - g.pad_height;
        const int64_t ih0 = max_i64(h, 0), ih1 = min_i64(h + g.kernel_height, g.in_height);
        prefetch_rows(plane, W, ih1, min_i64(ih1 + g.stride_height, g.in_height));
        float* y_row = y + oh * OW;
        int32_t* i_row = INDICES ? indices + oh * OW : nullptr;
        auto border = [&](int64_t ow) {
            const int64_t w0 = ow * g.stride_width - g.pad_width;
            max_clipped(plane, W, ih0, ih1, max_i64(w0, 0), min_i64(w0 + g.kernel_width, W), y_row + ow,
                        INDICES ? i_row + ow : nullptr);
        };
        for (int64_t ow = 0; ow < in.lo; ++ow) border(ow);
        if (in.hi > in.lo)
            max_interior<STRIDE, INDICES>(plane, W, ih0, ih1, g.kernel_width, g.stride_width,
                                          in.lo * g.stride_width - g.pad_width, in.hi - in.lo, y_row + in.lo,
                                          INDICES ? i_row + in.lo : nullptr);
        for (int64_t ow = in.hi; ow < OW; ++ow) border(ow);
    }
}

// ---- Average, forward ----------------------------------------------------------------------------

#if defined(__AVX512F__)
template <int STRIDE>
void avg_interior(const float* __restrict plane, int64_t W, int64_t ih0, int64_t ih1, int64_t kw, int64_t sw,
                  int64_t first_col, int64_t count, float inverse_divisor, float* __restrict out) {
    const int64_t step = STRIDE > 0 ? STRIDE : sw;
    for (int64_t q0 = 0; q0 < count; q0 += 16) {
        const int64_t n = min_i64(16, count - q0);
        const int64_t col = first_col + q0 * step;
        __m512 sum = _mm512_setzero_ps();
        for (int64_t ih = ih0; ih < ih1; ++ih)
            for (int64_t s = 0; s < kw; ++s)
                sum = _mm512_add_ps(sum, load_strided<STRIDE>(plane + ih * W + col + s, step, n));
        _mm512_mask_storeu_ps(out + q0, lanes(n), _mm512_mul_ps(sum, _mm512_set1_ps(inverse_divisor)));
    }
}
#elif defined(__AVX2__)
// AVX2: 8 outputs per step with load_strided8 (max_interior's loads), the taps added in the generic
// loop's order, so the sums are the same. GCC's vectorisation of the generic loop left a scalar
// remainder per row and gathered stride-2 columns one by one. One thread, KN_CPU_SIMD=avx2 on the
// Xeon, alternating builds on a loaded host: MNIST 64 x 32 28x28 2x2/2 1.63-1.73 -> 1.09-1.12 ms a
// call; global 7x7 over 64 x 512 planes 1.3-1.7 -> 5.3-5.8 GB/s; the ResNet stem unchanged.
template <int STRIDE>
void avg_interior(const float* __restrict plane, int64_t W, int64_t ih0, int64_t ih1, int64_t kw, int64_t sw,
                  int64_t first_col, int64_t count, float inverse_divisor, float* __restrict out) {
    const int64_t step = STRIDE > 0 ? STRIDE : sw;
    for (int64_t q0 = 0; q0 < count; q0 += 8) {
        const int64_t n = min_i64(8, count - q0);
        const int64_t col = first_col + q0 * step;
        __m256 sum = _mm256_setzero_ps();
        for (int64_t ih = ih0; ih < ih1; ++ih)
            for (int64_t s = 0; s < kw; ++s)
                sum = _mm256_add_ps(sum, load_strided8<STRIDE>(plane + ih * W + col + s, step, n));
        _mm256_maskstore_ps(out + q0, lanes8(n), _mm256_mul_ps(sum, _mm256_set1_ps(inverse_divisor)));
    }
}
#else
template <int STRIDE>
void avg_interior(const float* __restrict plane, int64_t W, int64_t ih0, int64_t ih1, int64_t kw, int64_t sw,
                  int64_t first_col, int64_t count, float inverse_divisor, float* __restrict sum) {
    const int64_t step = STRIDE > 0 ? STRIDE : sw;
    for (int64_t q = 0; q < count; ++q) sum[q] = 0.0f;
    for (int64_t ih = ih0; ih < ih1; ++ih)
        for (int64_t s = 0; s < kw; ++s) {
            const float* row = plane + ih * W + first_col + s;
            for (int64_t q = 0; q < count; ++q) sum[q] += row[q * step];
        }
    for (int64_t q = 0; q < count; ++q) sum[q] *= inverse_divisor;
}
#endif

template <int STRIDE>
void avg_plane(const Pool2dGeometry& g, const Interior& in, const float* plane, float* y) {
    const int64_t W = g.in_width, OW = g.out_width;
    for (int64_t oh = 0; oh < g.out_height; ++oh) {
        const int64_t h = oh * g.stride_height - g.pad_height;
        const int64_t ih0 = max_i64(h, 0), ih1 = min_i64(h + g.kernel_height, g.in_height);
        prefetch_rows(plane, W, ih1, min_i64(ih1 + g.stride_height, g.in_height));
        float* y_row = y + oh * OW;
        auto border = [&](int64_t ow) {
            const int64_t w0 = ow * g.stride_width - g.pad_width;
            const int64_t iw0 = max_i64(w0, 0), iw1 = min_i64(w0 + g.kernel_width, W);
            float sum = 0.0f;
            for (int64_t ih = ih0; ih < ih1; ++ih)
                for (int64_t iw = iw0; iw < iw1; ++iw) sum += plane[ih * W + iw];
            y_row[ow] = sum / avg_divisor(g, ih1 - ih0, iw1 - iw0);
        };
        for (int64_t ow = 0; ow < in.lo; ++ow) border(ow);
        // 1 / divisor, rounded once: one more rounding than a division, inside the tolerance of a
        // kernel_height * kernel_width term float sum.
        const float inverse = 1.0f / avg_divisor(g, ih1 - ih0, g.kernel_width);
        if (in.hi > in.lo)
            avg_interior<STRIDE>(plane, W, ih0, ih1, g.kernel_width, g.stride_width,
                                 in.lo * g.stride_width - g.pad_width, in.hi - in.lo, inverse, y_row + in.lo);
        for (int64_t ow = in.hi; ow < OW; ++ow) border(ow);
    }
}

// One plane of the forward pass with the column stride as a constant where it is 1 or 2.
template <int STRIDE>
void forward_plane(const Pool2dArgs& args, const Interior& in, const float* plane, float* y, int32_t* indices) {
    if (args.op == KN_POOL_AVG) avg_plane<STRIDE>(args.g, in, plane, y);
    else if (indices) max_plane<STRIDE, true>(args.g, in, plane, y, indices);
    else max_plane<STRIDE, false>(args.g, in, plane, y, nullptr);
}

void forward_planes(const Pool2dArgs& args, int64_t begin, int64_t end) {
    const Pool2dGeometry& g = args.g;
    const float* x = static_cast<const float*>(args.x);
    float* y = static_cast<float*>(args.y);
    int32_t* indices = static_cast<int32_t*>(args.indices);
    const int64_t plane_in = g.in_height * g.in_width, plane_out = g.out_height * g.out_width;
    const Interior in = interior_columns(g);
    for (int64_t p = begin; p < end; ++p) {
        const float* plane = x + p * plane_in;
        float* y_plane = y + p * plane_out;
        int32_t* i_plane = indices ? indices + p * plane_out : nullptr;
        switch (g.stride_width) {
            case 1: forward_plane<1>(args, in, plane, y_plane, i_plane); break;
            case 2: forward_plane<2>(args, in, plane, y_plane, i_plane); break;
            default: forward_plane<0>(args, in, plane, y_plane, i_plane); break;
        }
    }
}

// ---- Backward ------------------------------------------------------------------------------------

// Average, one plane, in two steps that write dx exactly once (no zero-fill pass, no read-modify-write
// of a plane that may come from DRAM):
//   1. spread[oh][iw] = the sum of dy[oh, ow] / divisor over the windows of output row oh that cover
//      column iw (kw scalar adds per output, into scratch that stays in L1/L2);
//   2. dx[ih] = the sum of spread[oh] over the output rows whose windows cover input row ih (a
//      contiguous vector loop; rows no window covers get 0).
// Adding dy / divisor tap by tap into a zeroed dx instead (a strided read-modify-write) ran at 5 GB/s
// for the ResNet-stem shape on one core. `scratch` holds (out_height + 1) * in_width + out_width floats.
KN_POOL_PLANE void avg_backward_plane(const Pool2dGeometry& g, const float* dy, float* dx, float* scratch) {
    const int64_t W = g.in_width, OW = g.out_width, sw = g.stride_width;
    float* share = scratch + g.out_height * W;  // one row's dy / divisor
    for (int64_t oh = 0; oh < g.out_height; ++oh) {
        const int64_t h = oh * g.stride_height - g.pad_height;
        const int64_t rows = min_i64(h + g.kernel_height, g.in_height) - max_i64(h, 0);
        for (int64_t ow = 0; ow < OW; ++ow) {
            const int64_t w0 = ow * sw - g.pad_width;
            share[ow] = dy[oh * OW + ow] / avg_divisor(g, rows, min_i64(w0 + g.kernel_width, W) - max_i64(w0, 0));
        }
        float* __restrict spread = scratch + oh * W;
        for (int64_t iw = 0; iw < W; ++iw) spread[iw] = 0.0f;
        for (int64_t s = 0; s < g.kernel_width; ++s) {
            // Outputs whose column s lands inside the row: 0 <= ow * sw - pw + s < W.
            const int64_t offset = s - g.pad_width;
            const int64_t lo = offset >= 0 ? 0 : (-offset + sw - 1) / sw;
            const int64_t hi = W - 1 - offset < 0 ? 0 : min_i64(OW, (W - 1 - offset) / sw + 1);
            const float* __restrict v = share;
            if (sw == 1)
                for (int64_t ow = lo; ow < hi; ++ow) spread[ow + offset] += v[ow];
            else
                for (int64_t ow = lo; ow < hi; ++ow) spread[ow * sw + offset] += v[ow];
        }
    }
    for (int64_t ih = 0; ih < g.in_height; ++ih) {
        // Output rows oh with oh * sh - ph <= ih < oh * sh - ph + kh.
        const int64_t top = ih + g.pad_height - g.kernel_height + 1;
        const int64_t oh0 = max_i64(0, top <= 0 ? 0 : (top + g.stride_height - 1) / g.stride_height);
        const int64_t oh1 = min_i64(g.out_height, (ih + g.pad_height) / g.stride_height + 1);
        float* __restrict row = dx + ih * W;
        if (oh0 >= oh1) {
            for (int64_t iw = 0; iw < W; ++iw) row[iw] = 0.0f;
            continue;
        }
        const float* __restrict first = scratch + oh0 * W;
        for (int64_t iw = 0; iw < W; ++iw) row[iw] = first[iw];
        for (int64_t oh = oh0 + 1; oh < oh1; ++oh) {
            const float* __restrict add = scratch + oh * W;
            for (int64_t iw = 0; iw < W; ++iw) row[iw] += add[iw];
        }
    }
}

// Average, one plane whose windows do not overlap and need no padding (kernel <= stride, or a single
// window, along each axis: 2x2/2 as in LeNet, 3x3/3, global average pooling): every dx element is 0
// or its one window's dy / divisor, so each output row's values are written straight into the first
// dx row its windows cover (dy / divisor repeated kernel_width times per window, 0 in the gaps) and
// copied from there to the other rows. With no padding and the floor-mode output size
// (core/window_geometry.h) every window lies inside the plane, so all share the divisor kh * kw.
// The values are the general path's (0 + dy / divisor: -0 comes out +0 as there, bit-identical),
// without its per-output index arithmetic, strided scalar adds and row sums (figures in pool.cpp).
// `scratch` holds out_width floats.
KN_POOL_PLANE void avg_backward_tiled(const Pool2dGeometry& g, const float* dy, float* dx, float* scratch) {
    const int64_t W = g.in_width, OW = g.out_width, kh = g.kernel_height, kw = g.kernel_width, sw = g.stride_width;
    float* __restrict share = scratch;                   // one output row's 0 + dy / divisor
    const int64_t covered_width = (OW - 1) * sw + kw;  // columns some window covers
    const float divisor = avg_divisor(g, kh, kw);
    int64_t done = 0;  // dx rows [0, done) written
    for (int64_t oh = 0; oh < g.out_height; ++oh) {
        const int64_t h = oh * g.stride_height;
        for (int64_t i = done * W; i < h * W; ++i) dx[i] = 0.0f;  // a gap between windows (kernel < stride)
        const float* dy_row = dy + oh * OW;
        float* first = dx + h * W;
        done = h + kh;
#if defined(__AVX512F__)
        if (kw == 2 && sw == 2) {
            // 16 windows per step: their values interleaved with themselves into 32 columns (vpermps),
            // stored to every row of the window (GCC's loops left the division scalar for rows of
            // fewer than 16 windows and called memcpy per row: MNIST's planes ran at 12-14 GB/s).
            const __m512i low = _mm512_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
            const __m512i high = _mm512_setr_epi32(8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13, 14, 14, 15, 15);
            const __m512 d = _mm512_set1_ps(divisor);
            for (int64_t ow = 0; ow < OW; ow += 16) {
                const int64_t n = min_i64(16, OW - ow);
                const __m512 v = _mm512_add_ps(_mm512_setzero_ps(), _mm512_div_ps(_mm512_maskz_loadu_ps(lanes(n), dy_row + ow), d));
                const uint32_t out = n == 16 ? 0xFFFFFFFFu : (1u << (2 * n)) - 1;
                // (maskz with every lane: the unmasked intrinsic starts from _mm512_undefined_ps(), which GCC 12
                // reports as maybe-uninitialized; the instruction is the same vpermps.)
                const __m512 v_low = _mm512_maskz_permutexvar_ps(0xFFFF, low, v), v_high = _mm512_maskz_permutexvar_ps(0xFFFF, high, v);
                for (int64_t r = 0; r < kh; ++r) {
                    _mm512_mask_storeu_ps(first + r * W + 2 * ow, static_cast<__mmask16>(out), v_low);
                    _mm512_mask_storeu_ps(first + r * W + 2 * ow + 16, static_cast<__mmask16>(out >> 16), v_high);
                }
            }
            for (int64_t r = 0; r < kh; ++r)
                for (int64_t iw = covered_width; iw < W; ++iw) first[r * W + iw] = 0.0f;
            continue;
        }
#endif
        for (int64_t ow = 0; ow < OW; ++ow) share[ow] = 0.0f + dy_row[ow] / divisor;
        if (OW == 1 && covered_width == W) {
            // One window across the whole row (global average pooling): the window's rows are one
            // contiguous run of a single value.
            for (int64_t i = 0; i < kh * W; ++i) first[i] = share[0];
            continue;
        }
        if (kw == 2 && sw == 2) {
            // Each value twice: GCC vectorises this (unpack), where the general loop below stays scalar.
            for (int64_t ow = 0; ow < OW; ++ow) first[2 * ow] = first[2 * ow + 1] = share[ow];
        } else {
            for (int64_t iw = 0; iw < covered_width; ++iw) first[iw] = 0.0f;  // the gaps (kernel < stride)
            for (int64_t ow = 0; ow < OW; ++ow)
                for (int64_t s = 0; s < kw; ++s) first[ow * sw + s] = share[ow];
        }
        for (int64_t iw = covered_width; iw < W; ++iw) first[iw] = 0.0f;
        for (int64_t r = 1; r < kh; ++r)
            for (int64_t iw = 0; iw < W; ++iw) first[r * W + iw] = first[iw];
    }
    for (int64_t i = done * W; i < g.in_height * W; ++i) dx[i] = 0.0f;
}

#if defined(__AVX512F__)
// Max-pool backward for 2x2/2 windows (kernel == stride == 2, no padding: MNIST's). Each dx element
// lies in at most one window, so it is written once: dy where its window's index points at it, 0
// elsewhere (0 + dy, as the general path's zero-then-add gives, so -0 comes out +0), instead of
// zeroing the plane and then adding each dy at its index (a second pass over dx and a scalar
// read-modify-write per window). 16 windows of one output row per step: the index relative to each
// window's top-left input is 0, 1, W or W + 1 on a hit; four masked copies of dy are interleaved
// into the two dx rows. Every index must hit its own window: the count of hits equals the window
// count exactly when it does. Otherwise (a forged or corrupted index) it returns false and the caller
// redoes the plane on the general path, which validates and reports.
bool max_backward_2x2(const Pool2dGeometry& g, const float* dy, const int32_t* indices, float* dx) {
    const int64_t W = g.in_width, OW = g.out_width;
    const __m512i twice = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i low = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    const __m512i high = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
    const __m512i zero = _mm512_setzero_si512(), one = _mm512_set1_epi32(1);
    const __m512i below = _mm512_set1_epi32(static_cast<int32_t>(W)), below_right = _mm512_set1_epi32(static_cast<int32_t>(W + 1));
    __m512i hits = _mm512_setzero_si512();
    for (int64_t oh = 0; oh < g.out_height; ++oh) {
        float* top = dx + 2 * oh * W;
        float* bottom = top + W;
        for (int64_t ow = 0; ow < OW; ow += 16) {
            const int64_t n = OW - ow < 16 ? OW - ow : 16;
            const __mmask16 in = static_cast<__mmask16>((1u << n) - 1);
            const __m512i corner = _mm512_add_epi32(_mm512_set1_epi32(static_cast<int32_t>(2 * oh * W + 2 * ow)), twice);
            const __m512i at = _mm512_sub_epi32(_mm512_maskz_loadu_epi32(in, indices + oh * OW + ow), corner);
            const __m512 v = _mm512_add_ps(_mm512_setzero_ps(), _mm512_maskz_loadu_ps(in, dy + oh * OW + ow));  // 0 + dy
            const __mmask16 m00 = _mm512_mask_cmpeq_epi32_mask(in, at, zero), m01 = _mm512_mask_cmpeq_epi32_mask(in, at, one);
            const __mmask16 m10 = _mm512_mask_cmpeq_epi32_mask(in, at, below);
            const __mmask16 m11 = _mm512_mask_cmpeq_epi32_mask(in, at, below_right);
            hits = _mm512_mask_add_epi32(hits, static_cast<__mmask16>(m00 | m01 | m10 | m11), hits, one);
            const uint32_t out = n == 16 ? 0xFFFFFFFFu : (1u << (2 * n)) - 1;
            const __mmask16 out_low = static_cast<__mmask16>(out), out_high = static_cast<__mmask16>(out >> 16);
            const __m512 l0 = _mm512_maskz_mov_ps(m00, v), r0 = _mm512_maskz_mov_ps(m01, v);
            const __m512 l1 = _mm512_maskz_mov_ps(m10, v), r1 = _mm512_maskz_mov_ps(m11, v);
            _mm512_mask_storeu_ps(top + 2 * ow, out_low, _mm512_permutex2var_ps(l0, low, r0));
            _mm512_mask_storeu_ps(top + 2 * ow + 16, out_high, _mm512_permutex2var_ps(l0, high, r0));
            _mm512_mask_storeu_ps(bottom + 2 * ow, out_low, _mm512_permutex2var_ps(l1, low, r1));
            _mm512_mask_storeu_ps(bottom + 2 * ow + 16, out_high, _mm512_permutex2var_ps(l1, high, r1));
        }
        if (W > 2 * OW) top[W - 1] = bottom[W - 1] = 0.0f;  // an odd width: the last column is in no window
    }
    for (int64_t i = 2 * g.out_height * W; i < g.in_height * W; ++i) dx[i] = 0.0f;  // an odd height: the last row
    // (Summed through memory: GCC 12's _mm512_reduce_add_epi32 trips -Wmaybe-uninitialized.)
    int32_t lanes[16];
    _mm512_storeu_si512(lanes, hits);
    int64_t total = 0;
    for (int32_t lane : lanes) total += lane;
    return total == g.out_height * OW;
}
#endif

// Max, one plane, any geometry: dx zeroed, then each dy added at its recorded input. Returns -1, or
// the first position in the plane's indices that lies outside it (dx is then left zero).
KN_POOL_PLANE int64_t max_backward_plane(int64_t plane_in, int64_t plane_out, const float* dy, const int32_t* indices,
                                         float* dx) {
    for (int64_t i = 0; i < plane_in; ++i) dx[i] = 0.0f;
    // indices come from the caller: a forged or corrupted entry would otherwise write anywhere. One
    // pass over the plane's indices (in L1 right after) before any write; the comparisons are
    // combined bitwise, so the pass has no branch and vectorises (&& left it scalar and branchy).
    int inside = 1;
    for (int64_t o = 0; o < plane_out; ++o)
        inside &= static_cast<int>(indices[o] >= 0) & static_cast<int>(indices[o] < plane_in);
    if (!inside) {
        for (int64_t o = 0; o < plane_out; ++o)
            if (indices[o] < 0 || indices[o] >= plane_in) return o;
    }
    for (int64_t o = 0; o < plane_out; ++o) dx[indices[o]] += dy[o];
    return -1;
}

int64_t backward_planes(const Pool2dBackwardArgs& args, int64_t begin, int64_t end, float* scratch) {
    const Pool2dGeometry& g = args.g;
    const float* dy = static_cast<const float*>(args.dy);
    const int32_t* indices = static_cast<const int32_t*>(args.indices);
    float* dx = static_cast<float*>(args.dx);
    const int64_t plane_in = g.in_height * g.in_width, plane_out = g.out_height * g.out_width;
#if defined(__AVX512F__)
    const bool two_by_two = g.kernel_height == 2 && g.kernel_width == 2 && g.stride_height == 2 &&
                            g.stride_width == 2 && g.pad_height == 0 && g.pad_width == 0;
#endif
    // Average pooling whose windows neither overlap nor reach into padding (avg_backward_tiled).
    const bool avg_tiles = g.pad_height == 0 && g.pad_width == 0 &&
                           (g.kernel_height <= g.stride_height || g.out_height == 1) &&
                           (g.kernel_width <= g.stride_width || g.out_width == 1);
    for (int64_t p = begin; p < end; ++p) {
        float* dx_plane = dx + p * plane_in;
        const float* dy_plane = dy + p * plane_out;
        if (args.op == KN_POOL_MAX) {
#if defined(__AVX512F__)
            if (two_by_two && max_backward_2x2(g, dy_plane, indices + p * plane_out, dx_plane)) continue;
#endif
            const int64_t bad = max_backward_plane(plane_in, plane_out, dy_plane, indices + p * plane_out, dx_plane);
            if (bad >= 0) return p * plane_out + bad;
        } else if (avg_tiles) {
            avg_backward_tiled(g, dy_plane, dx_plane, scratch);
        } else {
            avg_backward_plane(g, dy_plane, dx_plane, scratch);
        }
    }
    return -1;
}

}  // namespace

const PoolPlanes& planes() {
    static const PoolPlanes table{forward_planes, backward_planes};
    return table;
}

}  // namespace kn::cpu::KN_ISA
