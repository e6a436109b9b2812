// elementwise.cu: the memory-bound elementwise family: fill (kn_buffer_fill_f32), unary ops and
// their fused backward (kn_unary_f32, kn_unary_backward_f32), binary ops with NumPy broadcasting
// and their fused backward (kn_binary_f32, kn_binary_backward_f32).
//
// Technique: grid-stride loops over a grid of at most 16 blocks of 256 threads per SM (enough to
// fill every SM twice over; each thread then handles several elements, which amortises the index
// math). Contiguous operands go through float4 loads and stores when their addresses are 16-byte
// aligned, with a scalar loop for the last n % 4 elements. Broadcasting reads operands through the
// normalised BroadcastGeometry of backend.h, passed by value as a kernel argument, with 32-bit
// index math whenever the output has fewer than 2^32 elements (64-bit division costs several times
// more); when the innermost dimension is a multiple of 4 and each operand is either contiguous or
// broadcast along it (a bias add, for example), four outputs share one index computation and move
// as float4. Each op is a template argument, so the op switch happens once on the host.
//
// Napkin math: a binary op moves 12 bytes per element (two reads, one write); at an H100's ~3 TB/s
// that is ~250 G elements/s, so the arithmetic (even erff or powf) hides under the memory traffic and
// the kernels should run near the device-to-device copy rate. Not yet measured on a GPU.
//
// Semantics follow PyTorch where kernels.h leaves a choice, as the CPU backend does (see each op:
// ReLU and its gradient at NaN, sign(0) = 0, NaN-propagating maximum / minimum, pow's gradients).
// No pointer here is __restrict__ and no load uses the read-only path, because y may be x and dx may
// be dy (in-place ops); every element is read and then written by the same thread, so aliasing is safe.
#include "activations.cuh"
#include "cuda_kernels.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <initializer_list>
#include <type_traits>

#ifndef ELEMENTWISE_THREADS
#define ELEMENTWISE_THREADS 256  // threads per block: 8 warps, any SM runs 8 such blocks at once
#endif
#ifndef ELEMENTWISE_BLOCKS_PER_SM
#define ELEMENTWISE_BLOCKS_PER_SM 16  // grid cap: two full waves; more blocks only add scheduling
#endif

namespace kn::cuda {
namespace {

unsigned grid_for(int64_t work, const LaunchContext& ctx) {
    const int64_t blocks = (work + ELEMENTWISE_THREADS - 1) / ELEMENTWISE_THREADS;
    const int64_t cap = int64_t{std::max(ctx.sm_count, 1)} * ELEMENTWISE_BLOCKS_PER_SM;
    return static_cast<unsigned>(std::max<int64_t>(1, std::min(blocks, cap)));
}

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

__device__ __forceinline__ int64_t first_index() { return blockIdx.x * int64_t{blockDim.x} + threadIdx.x; }
__device__ __forceinline__ int64_t grid_stride() { return int64_t{gridDim.x} * blockDim.x; }

// ---- Fill ---------------------------------------------------------------------------------------

// dst[0, count) = value: up to 3 scalars to reach a 16-byte boundary, float4 stores, a scalar tail.
__global__ void fill_kernel(float* dst, int64_t count, float value) {
    const int64_t misalignment = static_cast<int64_t>((16 - reinterpret_cast<uintptr_t>(dst) % 16) % 16 / 4);
    const int64_t head = misalignment < count ? misalignment : count;
    const int64_t body = (count - head) / 4;  // float4 stores
    const int64_t tail_start = head + body * 4;
    const int64_t first = first_index(), stride = grid_stride();
    if (first < head) dst[first] = value;
    if (first < count - tail_start) dst[tail_start + first] = value;
    float4* body_dst = reinterpret_cast<float4*>(dst + head);
    const float4 v = make_float4(value, value, value, value);
    for (int64_t i = first; i < body; i += stride) body_dst[i] = v;
}

// ---- Unary --------------------------------------------------------------------------------------

template <kn_unary_op OP>
__device__ __forceinline__ float unary_forward(float x, float alpha) {
    if constexpr (OP == KN_UNARY_NEG) return -x;
    else if constexpr (OP == KN_UNARY_ABS) return fabsf(x);
    else if constexpr (OP == KN_UNARY_EXP) return expf(x);
    else if constexpr (OP == KN_UNARY_LOG) return logf(x);
    else if constexpr (OP == KN_UNARY_SQRT) return sqrtf(x);
    else if constexpr (OP == KN_UNARY_RSQRT) return 1.0f / sqrtf(x);  // rsqrtf is 2 ulp; this is 1
    else if constexpr (OP == KN_UNARY_SQUARE) return x * x;
    else if constexpr (OP == KN_UNARY_RECIPROCAL) return 1.0f / x;
    else if constexpr (OP == KN_UNARY_TANH) return tanhf(x);
    else if constexpr (OP == KN_UNARY_SIGMOID) return stable_sigmoid(x);
    else if constexpr (OP == KN_UNARY_RELU) return x > 0.0f ? x : (x != x ? x : 0.0f);  // NaN stays NaN (PyTorch)
    else if constexpr (OP == KN_UNARY_LEAKY_RELU) return x > 0.0f ? x : alpha * x;
    // x * Phi(x) with Phi(x) = erfc(-x / sqrt 2) / 2: in the left tail 1 + erf(x / sqrt 2) would
    // cancel to 0 (GELU(-6) ~ -6e-9), erfc keeps it.
    else if constexpr (OP == KN_UNARY_GELU) return 0.5f * x * erfcf(-x * 0.70710678118654752f);
    else if constexpr (OP == KN_UNARY_ELU) return x > 0.0f ? x : alpha * expm1f(x);
    // ln(1 + e^x) = max(x, 0) + ln(1 + e^-|x|): the exponent is never positive, so nothing overflows,
    // and log1pf keeps the small tail accurate. NaN propagates through the second term.
    else if constexpr (OP == KN_UNARY_SOFTPLUS) return fmaxf(x, 0.0f) + log1pf(expf(-fabsf(x)));
    else if constexpr (OP == KN_UNARY_SIN) return sinf(x);
    else if constexpr (OP == KN_UNARY_COS) return cosf(x);
    else if constexpr (OP == KN_UNARY_SCALE) return alpha * x;
    else if constexpr (OP == KN_UNARY_ADD_SCALAR) return x + alpha;
    else return powf(x, alpha);  // KN_UNARY_POW_SCALAR
}

// dy * f'(.), where in is the forward output y for EXP, SQRT, RSQRT, RECIPROCAL, TANH, SIGMOID
// (unary_backward_uses_output in backend.h) and the input x for the others.
template <kn_unary_op OP>
__device__ __forceinline__ float unary_backward(float in, float dy, float alpha) {
    if constexpr (OP == KN_UNARY_NEG) return -dy;
    else if constexpr (OP == KN_UNARY_ABS)  // dy * sign(x): sign(0) = 0, sign(NaN) = NaN
        return dy * (in > 0.0f ? 1.0f : in < 0.0f ? -1.0f : in == 0.0f ? 0.0f : in);
    else if constexpr (OP == KN_UNARY_EXP) return dy * in;                                   // in = e^x
    else if constexpr (OP == KN_UNARY_LOG) return dy / in;
    else if constexpr (OP == KN_UNARY_SQRT) return dy * 0.5f / in;                           // in = sqrt x
    else if constexpr (OP == KN_UNARY_RSQRT) return dy * -0.5f * in * in * in;               // in = x^-1/2
    else if constexpr (OP == KN_UNARY_SQUARE) return dy * 2.0f * in;
    else if constexpr (OP == KN_UNARY_RECIPROCAL) return -dy * in * in;                      // in = 1/x
    else if constexpr (OP == KN_UNARY_TANH) return dy * (1.0f - in * in);                   // in = tanh x
    else if constexpr (OP == KN_UNARY_SIGMOID) return dy * in * (1.0f - in);                 // in = sigmoid x
    else if constexpr (OP == KN_UNARY_RELU) return in <= 0.0f ? 0.0f : dy;  // 0 at x = 0; NaN passes dy
    else if constexpr (OP == KN_UNARY_LEAKY_RELU) return in > 0.0f ? dy : alpha * dy;
    else if constexpr (OP == KN_UNARY_GELU) {
        // d/dx x*Phi(x) = Phi(x) + x * phi(x), phi the standard normal density.
        const float cdf = 0.5f * erfcf(-in * 0.70710678118654752f);
        const float pdf = 0.39894228040143268f * expf(-0.5f * in * in);
        return dy * (cdf + in * pdf);
    }
    else if constexpr (OP == KN_UNARY_ELU) return in > 0.0f ? dy : dy * alpha * expf(in);
    else if constexpr (OP == KN_UNARY_SOFTPLUS) return dy * unary_forward<KN_UNARY_SIGMOID>(in, 0.0f);
    else if constexpr (OP == KN_UNARY_SIN) return dy * cosf(in);
    else if constexpr (OP == KN_UNARY_COS) return -dy * sinf(in);
    else if constexpr (OP == KN_UNARY_SCALE) return alpha * dy;
    else if constexpr (OP == KN_UNARY_ADD_SCALAR) return dy;
    // alpha * x^(alpha-1); an exponent of 0 has gradient 0 everywhere (PyTorch), which also avoids
    // 0 * inf = NaN at x = 0.
    else return alpha == 0.0f ? 0.0f : dy * alpha * powf(in, alpha - 1.0f);  // KN_UNARY_POW_SCALAR
}

template <kn_unary_op OP>
__global__ void unary_kernel(const float* x, float* y, int64_t n, float alpha, bool vec) {
    const int64_t first = first_index(), stride = grid_stride();
    int64_t scalar_start = 0;
    if (vec) {
        const int64_t n4 = n / 4;
        const float4* x4 = reinterpret_cast<const float4*>(x);
        float4* y4 = reinterpret_cast<float4*>(y);
        for (int64_t i = first; i < n4; i += stride) {
            float4 v = x4[i];
            v.x = unary_forward<OP>(v.x, alpha);
            v.y = unary_forward<OP>(v.y, alpha);
            v.z = unary_forward<OP>(v.z, alpha);
            v.w = unary_forward<OP>(v.w, alpha);
            y4[i] = v;
        }
        scalar_start = n4 * 4;
    }
    for (int64_t i = scalar_start + first; i < n; i += stride) y[i] = unary_forward<OP>(x[i], alpha);
}

// y[i] = op(y[i] + bias[i % cols]) over a row-major rows x cols y: the dense layer's epilogue after
// its GEMM (kn_linear_f32), one pass over y instead of a broadcast add and a unary pass.
template <kn_unary_op OP>
__global__ void bias_unary_kernel(float* y, const float* bias, int64_t cols, int64_t n, float alpha) {
    const int64_t first = first_index(), stride = grid_stride();
    for (int64_t i = first; i < n; i += stride) y[i] = unary_forward<OP>(y[i] + bias[i % cols], alpha);
}

template <kn_unary_op OP>
__global__ void unary_backward_kernel(const float* in, const float* dy, float* dx, int64_t n, float alpha, bool vec) {
    const int64_t first = first_index(), stride = grid_stride();
    int64_t scalar_start = 0;
    if (vec) {
        const int64_t n4 = n / 4;
        const float4* in4 = reinterpret_cast<const float4*>(in);
        const float4* dy4 = reinterpret_cast<const float4*>(dy);
        float4* dx4 = reinterpret_cast<float4*>(dx);
        for (int64_t i = first; i < n4; i += stride) {
            const float4 v = in4[i], g = dy4[i];
            dx4[i] = make_float4(unary_backward<OP>(v.x, g.x, alpha), unary_backward<OP>(v.y, g.y, alpha),
                                 unary_backward<OP>(v.z, g.z, alpha), unary_backward<OP>(v.w, g.w, alpha));
        }
        scalar_start = n4 * 4;
    }
    for (int64_t i = scalar_start + first; i < n; i += stride) dx[i] = unary_backward<OP>(in[i], dy[i], alpha);
}

// Calls f(std::integral_constant<kn_unary_op, op>{}) so each op is its own kernel instantiation.
template <class F>
cudaError_t with_unary_op(kn_unary_op op, F&& f) {
    using K = kn_unary_op;
    switch (op) {
        case KN_UNARY_NEG: return f(std::integral_constant<K, KN_UNARY_NEG>{});
        case KN_UNARY_ABS: return f(std::integral_constant<K, KN_UNARY_ABS>{});
        case KN_UNARY_EXP: return f(std::integral_constant<K, KN_UNARY_EXP>{});
        case KN_UNARY_LOG: return f(std::integral_constant<K, KN_UNARY_LOG>{});
        case KN_UNARY_SQRT: return f(std::integral_constant<K, KN_UNARY_SQRT>{});
        case KN_UNARY_RSQRT: return f(std::integral_constant<K, KN_UNARY_RSQRT>{});
        case KN_UNARY_SQUARE: return f(std::integral_constant<K, KN_UNARY_SQUARE>{});
        case KN_UNARY_RECIPROCAL: return f(std::integral_constant<K, KN_UNARY_RECIPROCAL>{});
        case KN_UNARY_TANH: return f(std::integral_constant<K, KN_UNARY_TANH>{});
        case KN_UNARY_SIGMOID: return f(std::integral_constant<K, KN_UNARY_SIGMOID>{});
        case KN_UNARY_RELU: return f(std::integral_constant<K, KN_UNARY_RELU>{});
        case KN_UNARY_LEAKY_RELU: return f(std::integral_constant<K, KN_UNARY_LEAKY_RELU>{});
        case KN_UNARY_GELU: return f(std::integral_constant<K, KN_UNARY_GELU>{});
        case KN_UNARY_ELU: return f(std::integral_constant<K, KN_UNARY_ELU>{});
        case KN_UNARY_SOFTPLUS: return f(std::integral_constant<K, KN_UNARY_SOFTPLUS>{});
        case KN_UNARY_SIN: return f(std::integral_constant<K, KN_UNARY_SIN>{});
        case KN_UNARY_COS: return f(std::integral_constant<K, KN_UNARY_COS>{});
        case KN_UNARY_SCALE: return f(std::integral_constant<K, KN_UNARY_SCALE>{});
        case KN_UNARY_ADD_SCALAR: return f(std::integral_constant<K, KN_UNARY_ADD_SCALAR>{});
        case KN_UNARY_POW_SCALAR: return f(std::integral_constant<K, KN_UNARY_POW_SCALAR>{});
    }
    return cudaErrorInvalidValue;  // the C API rejects unknown ops before a backend sees them
}

// ---- Binary -------------------------------------------------------------------------------------

template <kn_binary_op OP>
__device__ __forceinline__ float binary_forward(float a, float b) {
    if constexpr (OP == KN_BINARY_ADD) return a + b;
    else if constexpr (OP == KN_BINARY_SUB) return a - b;
    else if constexpr (OP == KN_BINARY_MUL) return a * b;
    else if constexpr (OP == KN_BINARY_DIV) return a / b;
    else if constexpr (OP == KN_BINARY_POW) return powf(a, b);
    // NaN in either operand gives NaN (torch.maximum / torch.minimum).
    else if constexpr (OP == KN_BINARY_MAXIMUM) return (a > b || a != a) ? a : b;
    else if constexpr (OP == KN_BINARY_MINIMUM) return (a < b || a != a) ? a : b;
    // Comparisons: 1 or 0; an ordered compare with NaN is false, != with NaN is true (IEEE).
    else if constexpr (OP == KN_BINARY_EQUAL) return a == b ? 1.0f : 0.0f;
    else if constexpr (OP == KN_BINARY_NOT_EQUAL) return a != b ? 1.0f : 0.0f;
    else if constexpr (OP == KN_BINARY_LESS) return a < b ? 1.0f : 0.0f;
    else if constexpr (OP == KN_BINARY_LESS_EQUAL) return a <= b ? 1.0f : 0.0f;
    else if constexpr (OP == KN_BINARY_GREATER) return a > b ? 1.0f : 0.0f;
    else return a >= b ? 1.0f : 0.0f;  // KN_BINARY_GREATER_EQUAL
}

// The partial derivatives times the upstream gradient g: da = g * d(a op b)/da, db = g * d/db.
template <kn_binary_op OP>
__device__ __forceinline__ void binary_backward(float a, float b, float g, float& da, float& db) {
    if constexpr (OP == KN_BINARY_ADD) { da = g; db = g; }
    else if constexpr (OP == KN_BINARY_SUB) { da = g; db = -g; }
    else if constexpr (OP == KN_BINARY_MUL) { da = g * b; db = g * a; }
    else if constexpr (OP == KN_BINARY_DIV) { da = g / b; db = -g * a / (b * b); }
    else if constexpr (OP == KN_BINARY_POW) {
        // As PyTorch's pow_backward_self / pow_backward_exponent:
        //   d/da = b * a^(b-1), defined as 0 where b == 0 (so 0^-1 = inf never gives 0 * inf);
        //   d/db = a^b * ln a, defined as 0 where a == 0 and b >= 0 (the limit of a^b ln a as
        //   a -> 0+); for a < 0, ln a is NaN and so is the gradient, as in PyTorch.
        da = b == 0.0f ? 0.0f : g * b * powf(a, b - 1.0f);
        db = (a == 0.0f && b >= 0.0f) ? 0.0f : g * powf(a, b) * logf(a);
    }
    else if constexpr (OP == KN_BINARY_MAXIMUM) {  // ties send the gradient to a (kernels.h)
        const bool to_a = a >= b;
        da = to_a ? g : 0.0f; db = to_a ? 0.0f : g;
    }
    else if constexpr (OP == KN_BINARY_MINIMUM) {
        const bool to_a = a <= b;
        da = to_a ? g : 0.0f; db = to_a ? 0.0f : g;
    }
    else { da = 0.0f; db = 0.0f; }  // comparisons: piecewise constant, zero gradient
}

template <class F>
cudaError_t with_binary_op(kn_binary_op op, F&& f) {
    using K = kn_binary_op;
    switch (op) {
        case KN_BINARY_ADD: return f(std::integral_constant<K, KN_BINARY_ADD>{});
        case KN_BINARY_SUB: return f(std::integral_constant<K, KN_BINARY_SUB>{});
        case KN_BINARY_MUL: return f(std::integral_constant<K, KN_BINARY_MUL>{});
        case KN_BINARY_DIV: return f(std::integral_constant<K, KN_BINARY_DIV>{});
        case KN_BINARY_POW: return f(std::integral_constant<K, KN_BINARY_POW>{});
        case KN_BINARY_MAXIMUM: return f(std::integral_constant<K, KN_BINARY_MAXIMUM>{});
        case KN_BINARY_MINIMUM: return f(std::integral_constant<K, KN_BINARY_MINIMUM>{});
        case KN_BINARY_EQUAL: return f(std::integral_constant<K, KN_BINARY_EQUAL>{});
        case KN_BINARY_NOT_EQUAL: return f(std::integral_constant<K, KN_BINARY_NOT_EQUAL>{});
        case KN_BINARY_LESS: return f(std::integral_constant<K, KN_BINARY_LESS>{});
        case KN_BINARY_LESS_EQUAL: return f(std::integral_constant<K, KN_BINARY_LESS_EQUAL>{});
        case KN_BINARY_GREATER: return f(std::integral_constant<K, KN_BINARY_GREATER>{});
        case KN_BINARY_GREATER_EQUAL: return f(std::integral_constant<K, KN_BINARY_GREATER_EQUAL>{});
    }
    return cudaErrorInvalidValue;
}

// BroadcastGeometry in the index type the kernel computes with (uint32_t when n < 2^32, which
// bounds every offset too: a broadcast operand never has more elements than the output).
template <typename Index>
struct Geometry {
    int rank;
    Index dims[KN_MAX_RANK];
    Index a_strides[KN_MAX_RANK];
    Index b_strides[KN_MAX_RANK];
};

template <typename Index>
Geometry<Index> convert(const BroadcastGeometry& g) {
    Geometry<Index> r{};
    r.rank = g.rank;
    for (int d = 0; d < g.rank; ++d) {
        r.dims[d] = static_cast<Index>(g.dims[d]);
        r.a_strides[d] = static_cast<Index>(g.a_strides[d]);
        r.b_strides[d] = static_cast<Index>(g.b_strides[d]);
    }
    return r;
}

// Offsets into a and b of output element `out` (row-major over g.dims).
template <typename Index>
__device__ __forceinline__ void broadcast_offsets(const Geometry<Index>& g, Index out, Index& a_off, Index& b_off) {
    a_off = 0;
    b_off = 0;
#pragma unroll
    for (int d = KN_MAX_RANK - 1; d >= 0; --d) {
        if (d < g.rank) {
            const Index coord = out % g.dims[d];
            out /= g.dims[d];
            a_off += coord * g.a_strides[d];
            b_off += coord * g.b_strides[d];
        }
    }
}

// One operand's four values at offset off for four consecutive outputs of the innermost dimension:
// a float4 when the operand is contiguous there, else one value broadcast four times.
__device__ __forceinline__ float4 load4(const float* p, bool contiguous, int64_t off) {
    if (contiguous) return *reinterpret_cast<const float4*>(p + off);
    const float v = p[off];
    return make_float4(v, v, v, v);
}

// Rank 1 with strides 0 or 1: same-shape operands, or one of them a scalar.
template <kn_binary_op OP>
__global__ void binary_rank1_kernel(const float* a, int64_t sa, const float* b, int64_t sb, float* c, int64_t n, bool vec) {
    const int64_t first = first_index(), stride = grid_stride();
    int64_t scalar_start = 0;
    if (vec) {
        const int64_t n4 = n / 4;
        for (int64_t i = first; i < n4; i += stride) {
            const float4 x = load4(a, sa != 0, i * 4 * sa), y = load4(b, sb != 0, i * 4 * sb);
            reinterpret_cast<float4*>(c)[i] = make_float4(binary_forward<OP>(x.x, y.x), binary_forward<OP>(x.y, y.y),
                                                          binary_forward<OP>(x.z, y.z), binary_forward<OP>(x.w, y.w));
        }
        scalar_start = n4 * 4;
    }
    for (int64_t i = scalar_start + first; i < n; i += stride) c[i] = binary_forward<OP>(a[i * sa], b[i * sb]);
}

// Any broadcast, four outputs per step: needs dims[rank-1] % 4 == 0 and both operands contiguous
// (stride 1, other strides multiples of 4, aligned base) or broadcast (stride 0) innermost.
template <kn_binary_op OP, typename Index>
__global__ void binary_broadcast4_kernel(Geometry<Index> g, const float* a, const float* b, float* c, Index n4) {
    const bool a_contiguous = g.a_strides[g.rank - 1] != 0, b_contiguous = g.b_strides[g.rank - 1] != 0;
    for (int64_t i = first_index(); i < static_cast<int64_t>(n4); i += grid_stride()) {
        Index a_off, b_off;
        broadcast_offsets(g, static_cast<Index>(i * 4), a_off, b_off);
        const float4 x = load4(a, a_contiguous, a_off), y = load4(b, b_contiguous, b_off);
        reinterpret_cast<float4*>(c)[i] = make_float4(binary_forward<OP>(x.x, y.x), binary_forward<OP>(x.y, y.y),
                                                      binary_forward<OP>(x.z, y.z), binary_forward<OP>(x.w, y.w));
    }
}

// Any broadcast, one output per step.
template <kn_binary_op OP, typename Index>
__global__ void binary_broadcast_kernel(Geometry<Index> g, const float* a, const float* b, float* c, Index n) {
    for (int64_t i = first_index(); i < static_cast<int64_t>(n); i += grid_stride()) {
        Index a_off, b_off;
        broadcast_offsets(g, static_cast<Index>(i), a_off, b_off);
        c[i] = binary_forward<OP>(a[a_off], b[b_off]);
    }
}

// Backward counterparts: dc is contiguous in the output shape, da and db (either may be null) too.
template <kn_binary_op OP>
__device__ __forceinline__ void store_backward4(const float4& x, const float4& y, const float4& g, float* da,
                                                float* db, int64_t i4) {
    float4 ga, gb;
    binary_backward<OP>(x.x, y.x, g.x, ga.x, gb.x);
    binary_backward<OP>(x.y, y.y, g.y, ga.y, gb.y);
    binary_backward<OP>(x.z, y.z, g.z, ga.z, gb.z);
    binary_backward<OP>(x.w, y.w, g.w, ga.w, gb.w);
    if (da) reinterpret_cast<float4*>(da)[i4] = ga;
    if (db) reinterpret_cast<float4*>(db)[i4] = gb;
}

template <kn_binary_op OP>
__device__ __forceinline__ void store_backward(float x, float y, float g, float* da, float* db, int64_t i) {
    float ga, gb;
    binary_backward<OP>(x, y, g, ga, gb);
    if (da) da[i] = ga;
    if (db) db[i] = gb;
}

template <kn_binary_op OP>
__global__ void binary_backward_rank1_kernel(const float* a, int64_t sa, const float* b, int64_t sb, const float* dc,
                                             float* da, float* db, int64_t n, bool vec) {
    const int64_t first = first_index(), stride = grid_stride();
    int64_t scalar_start = 0;
    if (vec) {
        const int64_t n4 = n / 4;
        for (int64_t i = first; i < n4; i += stride) {
            const float4 x = load4(a, sa != 0, i * 4 * sa), y = load4(b, sb != 0, i * 4 * sb);
            store_backward4<OP>(x, y, reinterpret_cast<const float4*>(dc)[i], da, db, i);
        }
        scalar_start = n4 * 4;
    }
    for (int64_t i = scalar_start + first; i < n; i += stride) store_backward<OP>(a[i * sa], b[i * sb], dc[i], da, db, i);
}

template <kn_binary_op OP, typename Index>
__global__ void binary_backward_broadcast4_kernel(Geometry<Index> g, const float* a, const float* b, const float* dc,
                                                  float* da, float* db, Index n4) {
    const bool a_contiguous = g.a_strides[g.rank - 1] != 0, b_contiguous = g.b_strides[g.rank - 1] != 0;
    for (int64_t i = first_index(); i < static_cast<int64_t>(n4); i += grid_stride()) {
        Index a_off, b_off;
        broadcast_offsets(g, static_cast<Index>(i * 4), a_off, b_off);
        const float4 x = load4(a, a_contiguous, a_off), y = load4(b, b_contiguous, b_off);
        store_backward4<OP>(x, y, reinterpret_cast<const float4*>(dc)[i], da, db, i);
    }
}

template <kn_binary_op OP, typename Index>
__global__ void binary_backward_broadcast_kernel(Geometry<Index> g, const float* a, const float* b, const float* dc,
                                                 float* da, float* db, Index n) {
    for (int64_t i = first_index(); i < static_cast<int64_t>(n); i += grid_stride()) {
        Index a_off, b_off;
        broadcast_offsets(g, static_cast<Index>(i), a_off, b_off);
        store_backward<OP>(a[a_off], b[b_off], dc[i], da, db, i);
    }
}

// Which kernel shape a geometry can use.
enum class BroadcastPath { rank1, broadcast4, general };

BroadcastPath choose_path(const BroadcastGeometry& g, const void* a, const void* b,
                          std::initializer_list<const void*> contiguous_buffers) {
    bool outputs_aligned = true;
    for (const void* p : contiguous_buffers) outputs_aligned = outputs_aligned && (p == nullptr || aligned16(p));
    const int last = g.rank - 1;
    const int64_t sa = g.a_strides[last], sb = g.b_strides[last];
    const bool unit_or_zero = (sa == 0 || sa == 1) && (sb == 0 || sb == 1);
    if (g.rank == 1 && unit_or_zero) return BroadcastPath::rank1;
    if (!unit_or_zero || g.dims[last] % 4 != 0 || !outputs_aligned) return BroadcastPath::general;
    // A contiguous operand must start every group of four outputs on a 16-byte boundary.
    auto operand_ok = [&](const void* p, const int64_t* strides) {
        if (strides[last] == 0) return true;
        if (!aligned16(p)) return false;
        for (int d = 0; d < last; ++d)
            if (strides[d] % 4 != 0) return false;
        return true;
    };
    return operand_ok(a, g.a_strides) && operand_ok(b, g.b_strides) ? BroadcastPath::broadcast4
                                                                   : BroadcastPath::general;
}

// Rank-1 float4 path: every buffer read or written as float4 must be aligned.
bool rank1_vec_ok(const BroadcastGeometry& g, const void* a, const void* b,
                  std::initializer_list<const void*> contiguous_buffers) {
    bool ok = (g.a_strides[0] == 0 || aligned16(a)) && (g.b_strides[0] == 0 || aligned16(b));
    for (const void* p : contiguous_buffers) ok = ok && (p == nullptr || aligned16(p));
    return ok;
}

}  // namespace

cudaError_t fill_f32(float* dst, int64_t count, float value, const LaunchContext& ctx) {
    if (count <= 0) return cudaSuccess;
    fill_kernel<<<grid_for((count + 3) / 4, ctx), ELEMENTWISE_THREADS, 0, ctx.stream>>>(dst, count, value);
    return cudaGetLastError();
}

cudaError_t unary_f32(const UnaryArgs& args, const LaunchContext& ctx) {
    const float* x = static_cast<const float*>(args.x);
    float* y = static_cast<float*>(args.y);
    const bool vec = aligned16(x) && aligned16(y);
    const unsigned grid = grid_for(vec ? (args.n + 3) / 4 : args.n, ctx);
    return with_unary_op(args.op, [&](auto op) {
        unary_kernel<decltype(op)::value><<<grid, ELEMENTWISE_THREADS, 0, ctx.stream>>>(x, y, args.n, args.alpha, vec);
        return cudaGetLastError();
    });
}

cudaError_t bias_unary_f32(float* y, const float* bias, int64_t rows, int64_t cols, kn_unary_op op, float alpha,
                          const LaunchContext& ctx) {
    const int64_t n = rows * cols;
    const unsigned grid = grid_for(n, ctx);
    return with_unary_op(op, [&](auto o) {
        bias_unary_kernel<decltype(o)::value><<<grid, ELEMENTWISE_THREADS, 0, ctx.stream>>>(y, bias, cols, n, alpha);
        return cudaGetLastError();
    });
}

cudaError_t unary_backward_f32(const UnaryBackwardArgs& args, const LaunchContext& ctx) {
    const float* in = static_cast<const float*>(unary_backward_uses_output(args.op) ? args.y : args.x);
    const float* dy = static_cast<const float*>(args.dy);
    float* dx = static_cast<float*>(args.dx);
    const bool vec = aligned16(in) && aligned16(dy) && aligned16(dx);
    const unsigned grid = grid_for(vec ? (args.n + 3) / 4 : args.n, ctx);
    return with_unary_op(args.op, [&](auto op) {
        unary_backward_kernel<decltype(op)::value><<<grid, ELEMENTWISE_THREADS, 0, ctx.stream>>>(in, dy, dx, args.n, args.alpha, vec);
        return cudaGetLastError();
    });
}

cudaError_t binary_f32(const BinaryArgs& args, const LaunchContext& ctx) {
    const BroadcastGeometry& g = args.g;
    const float* a = static_cast<const float*>(args.a);
    const float* b = static_cast<const float*>(args.b);
    float* c = static_cast<float*>(args.c);
    const BroadcastPath path = choose_path(g, a, b, {c});
    const bool small = g.n <= int64_t{0xffffffff};
    return with_binary_op(args.op, [&](auto op) {
        constexpr kn_binary_op OP = decltype(op)::value;
        if (path == BroadcastPath::rank1) {
            const bool vec = rank1_vec_ok(g, a, b, {c});
            binary_rank1_kernel<OP><<<grid_for(vec ? (g.n + 3) / 4 : g.n, ctx), ELEMENTWISE_THREADS, 0, ctx.stream>>>(
                a, g.a_strides[0], b, g.b_strides[0], c, g.n, vec);
        } else if (path == BroadcastPath::broadcast4) {
            const unsigned grid = grid_for(g.n / 4, ctx);
            if (small)
                binary_broadcast4_kernel<OP, uint32_t><<<grid, ELEMENTWISE_THREADS, 0, ctx.stream>>>(
                    convert<uint32_t>(g), a, b, c, static_cast<uint32_t>(g.n / 4));
            else
                binary_broadcast4_kernel<OP, uint64_t><<<grid, ELEMENTWISE_THREADS, 0, ctx.stream>>>(
                    convert<uint64_t>(g), a, b, c, static_cast<uint64_t>(g.n / 4));
        } else {
            const unsigned grid = grid_for(g.n, ctx);
            if (small)
                binary_broadcast_kernel<OP, uint32_t><<<grid, ELEMENTWISE_THREADS, 0, ctx.stream>>>(
                    convert<uint32_t>(g), a, b, c, static_cast<uint32_t>(g.n));
            else
                binary_broadcast_kernel<OP, uint64_t><<<grid, ELEMENTWISE_THREADS, 0, ctx.stream>>>(
                    convert<uint64_t>(g), a, b, c, static_cast<uint64_t>(g.n));
        }
        return cudaGetLastError();
    });
}

cudaError_t binary_backward_f32(const BinaryBackwardArgs& args, const LaunchContext& ctx) {
    const BroadcastGeometry& g = args.g;
    const float* a = static_cast<const float*>(args.a);
    const float* b = static_cast<const float*>(args.b);
    const float* dc = static_cast<const float*>(args.dc);
    float* da = static_cast<float*>(args.da);
    float* db = static_cast<float*>(args.db);
    if (da == nullptr && db == nullptr) return cudaSuccess;
    const BroadcastPath path = choose_path(g, a, b, {dc, da, db});
    const bool small = g.n <= int64_t{0xffffffff};
    return with_binary_op(args.op, [&](auto op) {
        constexpr kn_binary_op OP = decltype(op)::value;
        if (path == BroadcastPath::rank1) {
            const bool vec = rank1_vec_ok(g, a, b, {dc, da, db});
            binary_backward_rank1_kernel<OP><<<grid_for(vec ? (g.n + 3) / 4 : g.n, ctx), ELEMENTWISE_THREADS, 0, ctx.stream>>>(
                a, g.a_strides[0], b, g.b_strides[0], dc, da, db, g.n, vec);
        } else if (path == BroadcastPath::broadcast4) {
            const unsigned grid = grid_for(g.n / 4, ctx);
            if (small)
                binary_backward_broadcast4_kernel<OP, uint32_t><<<grid, ELEMENTWISE_THREADS, 0, ctx.stream>>>(
                    convert<uint32_t>(g), a, b, dc, da, db, static_cast<uint32_t>(g.n / 4));
            else
                binary_backward_broadcast4_kernel<OP, uint64_t><<<grid, ELEMENTWISE_THREADS, 0, ctx.stream>>>(
                    convert<uint64_t>(g), a, b, dc, da, db, static_cast<uint64_t>(g.n / 4));
        } else {
            const unsigned grid = grid_for(g.n, ctx);
            if (small)
                binary_backward_broadcast_kernel<OP, uint32_t><<<grid, ELEMENTWISE_THREADS, 0, ctx.stream>>>(
                    convert<uint32_t>(g), a, b, dc, da, db, static_cast<uint32_t>(g.n));
            else
                binary_backward_broadcast_kernel<OP, uint64_t><<<grid, ELEMENTWISE_THREADS, 0, ctx.stream>>>(
                    convert<uint64_t>(g), a, b, dc, da, db, static_cast<uint64_t>(g.n));
        }
        return cudaGetLastError();
    });
}

}  // namespace kn::cuda
