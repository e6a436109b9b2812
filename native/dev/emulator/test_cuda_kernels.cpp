// test_cuda_kernels.cpp: runs every launcher of native/kernels/cuda on the CPU emulator (emulator.cpp)
// and compares the results with float64 references: fill, unary and binary ops and their backward
// passes over aligned and misaligned buffers and many broadcast geometries, all five reductions and
// both index reductions (ties, NaN, inf) through one- and two-pass plans, softmax / log-softmax and
// their backward passes over warp- and block-per-row shapes, and GEMM with every transpose, padded
// leading dimensions, batches with shared operands, beta = 0 over NaN, k = 0 and alpha = 0, on both
// tile configurations. Buffers are allocated at their exact size, so a build with AddressSanitizer
// reports any out-of-bounds access; the strided copy into contiguous and strided destinations; gather rows
// and the scatter-add (bit for bit); kn_cast between float32, int32 and int64 (edge values, bit for bit);
// the LSTM / GRU cell steps forward and backward, masked and not.
// Usage: test_cuda_kernels [fill|unary|binary|softmax|reduce|gemm|layout|gather|cast|recurrent]
#include "cuda_kernels.h"
#include "selftest_harness.h"
#include "host_scratch.h"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

using namespace kn;
using kn::cuda::LaunchContext;
using selftest::HostBuffer;

// The inputs: the harness's generator, one fixed seed per program.
static selftest::Rng rng(12345);
static float uniform(float lo, float hi) { return rng.uniform(lo, hi); }

static bool close(double got, double want, double rel, double abs_tol) {
    if (std::isnan(want)) return std::isnan(got);
    if (std::isinf(want)) return got == want;
    return std::fabs(got - want) <= rel * std::fabs(want) + abs_tol;
}

static LaunchContext ctx_with(int sm) { return LaunchContext{nullptr, sm}; }

// ---- fill ----------------------------------------------------------------------------------------
static void test_fill() {
    for (int offset = 0; offset < 5; ++offset)
        for (int count : {0, 1, 2, 3, 4, 5, 7, 8, 9, 100, 1001}) {
            HostBuffer b(offset + count + 3);
            for (size_t i = 0; i < b.n; ++i) b[i] = -1.0f;
            SELFTEST_EXPECT(cuda::fill_f32(b.p + offset, count, 7.0f, ctx_with(2)) == cudaSuccess, "fill launch");
            for (size_t i = 0; i < b.n; ++i) {
                const bool inside = int(i) >= offset && int(i) < offset + count;
                SELFTEST_EXPECT(b[i] == (inside ? 7.0f : -1.0f), "fill offset %d count %d element %zu = %g", offset, count, i, b[i]);
            }
        }
}

// ---- unary -----------------------------------------------------------------------------------------
static double unary_ref(kn_unary_op op, double x, double a) {
    switch (op) {
        case KN_UNARY_NEG: return -x;
        case KN_UNARY_ABS: return std::fabs(x);
        case KN_UNARY_EXP: return std::exp(x);
        case KN_UNARY_LOG: return std::log(x);
        case KN_UNARY_SQRT: return std::sqrt(x);
        case KN_UNARY_RSQRT: return 1 / std::sqrt(x);
        case KN_UNARY_SQUARE: return x * x;
        case KN_UNARY_RECIPROCAL: return 1 / x;
        case KN_UNARY_TANH: return std::tanh(x);
        case KN_UNARY_SIGMOID: return 1 / (1 + std::exp(-x));
        case KN_UNARY_RELU: return x > 0 ? x : 0;
        case KN_UNARY_LEAKY_RELU: return x > 0 ? x : a * x;
        case KN_UNARY_GELU: return 0.5 * x * std::erfc(-x / std::sqrt(2.0));
        case KN_UNARY_ELU: return x > 0 ? x : a * std::expm1(x);
        case KN_UNARY_SOFTPLUS: return std::log1p(std::exp(x));
        case KN_UNARY_SIN: return std::sin(x);
        case KN_UNARY_COS: return std::cos(x);
        case KN_UNARY_SCALE: return a * x;
        case KN_UNARY_ADD_SCALAR: return x + a;
        case KN_UNARY_POW_SCALAR: return std::pow(x, a);
    }
    return NAN;
}
static double unary_grad_ref(kn_unary_op op, double x, double a) {  // f'(x)
    const double pi = 3.14159265358979323846;
    switch (op) {
        case KN_UNARY_NEG: return -1;
        case KN_UNARY_ABS: return x > 0 ? 1 : (x < 0 ? -1 : 0);
        case KN_UNARY_EXP: return std::exp(x);
        case KN_UNARY_LOG: return 1 / x;
        case KN_UNARY_SQRT: return 0.5 / std::sqrt(x);
        case KN_UNARY_RSQRT: return -0.5 * std::pow(x, -1.5);
        case KN_UNARY_SQUARE: return 2 * x;
        case KN_UNARY_RECIPROCAL: return -1 / (x * x);
        case KN_UNARY_TANH: return 1 - std::tanh(x) * std::tanh(x);
        case KN_UNARY_SIGMOID: { double s = 1 / (1 + std::exp(-x)); return s * (1 - s); }
        case KN_UNARY_RELU: return x > 0 ? 1 : 0;
        case KN_UNARY_LEAKY_RELU: return x > 0 ? 1 : a;
        case KN_UNARY_GELU: return 0.5 * std::erfc(-x / std::sqrt(2.0)) + x * std::exp(-0.5 * x * x) / std::sqrt(2 * pi);
        case KN_UNARY_ELU: return x > 0 ? 1 : a * std::exp(x);
        case KN_UNARY_SOFTPLUS: return 1 / (1 + std::exp(-x));
        case KN_UNARY_SIN: return std::cos(x);
        case KN_UNARY_COS: return -std::sin(x);
        case KN_UNARY_SCALE: return a;
        case KN_UNARY_ADD_SCALAR: return 1;
        case KN_UNARY_POW_SCALAR: return a == 0 ? 0 : a * std::pow(x, a - 1);
    }
    return NAN;
}

static void test_unary() {
    for (int o = 0; o <= KN_UNARY_POW_SCALAR; ++o) {
        const kn_unary_op op = static_cast<kn_unary_op>(o);
        const bool positive = op == KN_UNARY_LOG || op == KN_UNARY_SQRT || op == KN_UNARY_RSQRT || op == KN_UNARY_POW_SCALAR;
        const float alpha = op == KN_UNARY_POW_SCALAR ? 2.5f : 0.7f;
        for (int n : {1, 5, 1000, 4099})
            for (int shift : {0, 1})
                for (bool in_place : {false, true}) {
                    HostBuffer x(n, shift), y(n, shift), xs(n), dy(n, shift), dx(n, shift);
                    for (int i = 0; i < n; ++i) {
                        x[i] = positive ? uniform(0.1f, 3.0f) : uniform(-3.0f, 3.0f);
                        xs[i] = x[i];
                        dy[i] = uniform(-1.0f, 1.0f);
                    }
                    float* out = in_place ? x.p : y.p;
                    SELFTEST_EXPECT(cuda::unary_f32(UnaryArgs{op, alpha, x.p, out, n}, ctx_with(3)) == cudaSuccess, "unary launch");
                    for (int i = 0; i < n; ++i) {
                        const double want = unary_ref(op, xs[i], alpha);
                        SELFTEST_EXPECT(close(out[i], want, 3e-6, 1e-6), "unary op %d n %d shift %d element %d: %.9g vs %.9g (x=%g)", o, n,
                               shift, i, out[i], want, xs[i]);
                    }
                    // Backward from x or from the float forward output y, as the API passes them.
                    std::vector<float> yv(out, out + n);
                    HostBuffer yin(n, shift), xin(n, shift);
                    for (int i = 0; i < n; ++i) { yin[i] = yv[i]; xin[i] = xs[i]; }
                    const bool uses_y = unary_backward_uses_output(op);
                    std::vector<float> dyv(dy.p, dy.p + n);
                    float* dxp = in_place ? dy.p : dx.p;
                    SELFTEST_EXPECT(cuda::unary_backward_f32(UnaryBackwardArgs{op, alpha, uses_y ? nullptr : xin.p, uses_y ? yin.p : nullptr,
                                                                         dy.p, dxp, n},
                                                       ctx_with(3)) == cudaSuccess,
                           "unary backward launch");
                    for (int i = 0; i < n; ++i) {
                        const double want = dyv[i] * unary_grad_ref(op, xs[i], alpha);
                        SELFTEST_EXPECT(close(dxp[i], want, 2e-5, 2e-6), "unary backward op %d n %d element %d: %.9g vs %.9g (x=%g)", o, n, i,
                               dxp[i], want, xs[i]);
                    }
                }
    }
    // Edge values.
    HostBuffer x(6), y(6);
    const float vals[6] = {NAN, INFINITY, -INFINITY, 0.0f, 100.0f, -100.0f};
    std::memcpy(x.p, vals, sizeof vals);
    cuda::unary_f32(UnaryArgs{KN_UNARY_SOFTPLUS, 0, x.p, y.p, 6}, ctx_with(1));
    SELFTEST_EXPECT(std::isnan(y[0]) && y[1] == INFINITY && y[2] == 0.0f && close(y[3], std::log(2.0), 1e-6, 0) && y[4] == 100.0f &&
               y[5] >= 0 && y[5] < 1e-40,
           "softplus edges %g %g %g %g %g %g", y[0], y[1], y[2], y[3], y[4], y[5]);
    cuda::unary_f32(UnaryArgs{KN_UNARY_SIGMOID, 0, x.p, y.p, 6}, ctx_with(1));
    SELFTEST_EXPECT(std::isnan(y[0]) && y[1] == 1.0f && y[2] == 0.0f && y[3] == 0.5f && y[4] == 1.0f && y[5] >= 0 && y[5] < 1e-40,
           "sigmoid edges");
    // sigmoid(-100) = e^-100 is subnormal in float32 (a few bits of precision), but not 0.
    SELFTEST_EXPECT(close(y[5], std::exp(-100.0), 0.05, 0), "sigmoid(-100) is not flushed to 0: %g", y[5]);
    cuda::unary_f32(UnaryArgs{KN_UNARY_RELU, 0, x.p, y.p, 6}, ctx_with(1));
    SELFTEST_EXPECT(std::isnan(y[0]) && y[1] == INFINITY && y[2] == 0.0f && y[3] == 0.0f && y[4] == 100.0f && y[5] == 0.0f, "relu edges");
    x[3] = -0.0f;
    cuda::unary_f32(UnaryArgs{KN_UNARY_RELU, 0, x.p, y.p, 6}, ctx_with(1));
    SELFTEST_EXPECT(y[3] == 0.0f && !std::signbit(y[3]), "relu(-0) is +0, as on the CPU backend");
    // GELU's left tail, where 1 + erf(x / sqrt 2) cancels: compare relatively with float64.
    for (float v : {-3.0f, -6.0f, -9.0f, -12.0f}) {
        x[0] = v;
        cuda::unary_f32(UnaryArgs{KN_UNARY_GELU, 0, x.p, y.p, 1}, ctx_with(1));
        const double want = unary_ref(KN_UNARY_GELU, v, 0);
        SELFTEST_EXPECT(close(y[0], want, 1e-5, 0), "gelu(%g) = %g, want %g", v, y[0], want);
    }
    // Gradients at NaN: ReLU passes dy (PyTorch's threshold_backward), ABS gives NaN.
    HostBuffer g(2), dx(2);
    x[0] = NAN; x[1] = -0.0f; g[0] = 2.0f; g[1] = 3.0f;
    cuda::unary_backward_f32(UnaryBackwardArgs{KN_UNARY_RELU, 0, x.p, nullptr, g.p, dx.p, 2}, ctx_with(1));
    SELFTEST_EXPECT(dx[0] == 2.0f && dx[1] == 0.0f, "relu backward at NaN / -0: %g %g", dx[0], dx[1]);
    cuda::unary_backward_f32(UnaryBackwardArgs{KN_UNARY_ABS, 0, x.p, nullptr, g.p, dx.p, 2}, ctx_with(1));
    SELFTEST_EXPECT(std::isnan(dx[0]) && dx[1] == 0.0f, "abs backward at NaN / -0: %g %g", dx[0], dx[1]);
}

// ---- binary ------------------------------------------------------------------------------------------
static double binary_ref(kn_binary_op op, double a, double b) {
    switch (op) {
        case KN_BINARY_ADD: return a + b;
        case KN_BINARY_SUB: return a - b;
        case KN_BINARY_MUL: return a * b;
        case KN_BINARY_DIV: return a / b;
        case KN_BINARY_POW: return std::pow(a, b);
        case KN_BINARY_MAXIMUM: return (std::isnan(a) || std::isnan(b)) ? NAN : (a >= b ? a : b);
        case KN_BINARY_MINIMUM: return (std::isnan(a) || std::isnan(b)) ? NAN : (a <= b ? a : b);
        case KN_BINARY_EQUAL: return a == b;  // IEEE: NaN compares false, except !=
        case KN_BINARY_NOT_EQUAL: return a != b;
        case KN_BINARY_LESS: return a < b;
        case KN_BINARY_LESS_EQUAL: return a <= b;
        case KN_BINARY_GREATER: return a > b;
        case KN_BINARY_GREATER_EQUAL: return a >= b;
    }
    return NAN;
}
static void binary_grad_ref(kn_binary_op op, double a, double b, double& da, double& db) {
    switch (op) {
        case KN_BINARY_ADD: da = 1; db = 1; return;
        case KN_BINARY_SUB: da = 1; db = -1; return;
        case KN_BINARY_MUL: da = b; db = a; return;
        case KN_BINARY_DIV: da = 1 / b; db = -a / (b * b); return;
        case KN_BINARY_POW: da = b == 0 ? 0 : b * std::pow(a, b - 1); db = (a == 0 && b >= 0) ? 0 : std::pow(a, b) * std::log(a); return;
        case KN_BINARY_MAXIMUM: da = a >= b; db = !(a >= b); return;
        case KN_BINARY_MINIMUM: da = a <= b; db = !(a <= b); return;
        default: da = 0; db = 0; return;  // comparisons: zero gradient
    }
}

// Broadcast shape, per-operand strides, then the API's normalisation: drop size-1 dims, merge
// neighbours where both operands stay linear.
static BroadcastGeometry geometry(const std::vector<int64_t>& ad, const std::vector<int64_t>& bd, std::vector<int64_t>& cd,
                                  std::vector<int64_t>& a_full, std::vector<int64_t>& b_full) {
    const size_t rank = std::max(ad.size(), bd.size());
    cd.assign(rank, 1);
    std::vector<int64_t> A(rank, 1), B(rank, 1);
    for (size_t i = 0; i < ad.size(); ++i) A[rank - ad.size() + i] = ad[i];
    for (size_t i = 0; i < bd.size(); ++i) B[rank - bd.size() + i] = bd[i];
    for (size_t d = 0; d < rank; ++d) cd[d] = std::max(A[d], B[d]);
    a_full.assign(rank, 0);
    b_full.assign(rank, 0);
    int64_t sa = 1, sb = 1;
    for (int d = int(rank) - 1; d >= 0; --d) {
        a_full[d] = A[d] == 1 ? 0 : sa;
        b_full[d] = B[d] == 1 ? 0 : sb;
        sa *= A[d];
        sb *= B[d];
    }
    std::vector<int64_t> dims, as, bs;
    for (size_t d = 0; d < rank; ++d) {
        if (cd[d] == 1) continue;
        if (!dims.empty() && as.back() == a_full[d] * cd[d] && bs.back() == b_full[d] * cd[d]) {
            dims.back() *= cd[d];
            as.back() = a_full[d];
            bs.back() = b_full[d];
        } else {
            dims.push_back(cd[d]);
            as.push_back(a_full[d]);
            bs.push_back(b_full[d]);
        }
    }
    if (dims.empty()) { dims = {1}; as = {0}; bs = {0}; }
    BroadcastGeometry g{};
    g.rank = int(dims.size());
    g.n = 1;
    for (int d = 0; d < g.rank; ++d) {
        g.dims[d] = dims[d];
        g.a_strides[d] = as[d];
        g.b_strides[d] = bs[d];
        g.n *= dims[d];
    }
    return g;
}

static void test_binary() {
    const std::vector<std::pair<std::vector<int64_t>, std::vector<int64_t>>> shapes = {
        {{1000}, {1000}}, {{1003}, {1003}}, {{7}, {1}}, {{1}, {4099}}, {{1}, {1}}, {{33, 64}, {64}}, {{33, 63}, {63}},
        {{5, 1, 8}, {1, 4, 8}}, {{6, 1}, {1, 5}}, {{2, 3, 4, 5}, {3, 1, 5}}, {{3, 1, 4}, {1, 5, 1}}, {{64, 1}, {64, 8}},
        {{2, 1, 3, 1, 2}, {1, 4, 1, 5, 1}}, {{16}, {4, 4, 16}}};
    for (int o = 0; o <= KN_BINARY_GREATER_EQUAL; ++o) {
        const kn_binary_op op = static_cast<kn_binary_op>(o);
        for (size_t si = 0; si < shapes.size(); ++si)
            for (int shift : {0, 1}) {
                const std::vector<int64_t>& ad = shapes[si].first;
                const std::vector<int64_t>& bd = shapes[si].second;
                std::vector<int64_t> cd, af, bf;
                const BroadcastGeometry g = geometry(ad, bd, cd, af, bf);
                int64_t na = 1, nb = 1;
                for (auto d : ad) na *= d;
                for (auto d : bd) nb *= d;
                HostBuffer a(na, shift), b(nb, shift), c(g.n, shift), dc(g.n, shift), da(g.n, shift), db(g.n, shift);
                for (int64_t i = 0; i < na; ++i) a[i] = op == KN_BINARY_POW ? uniform(0.2f, 2.0f) : uniform(-2.0f, 2.0f);
                for (int64_t i = 0; i < nb; ++i) b[i] = op == KN_BINARY_DIV ? uniform(0.5f, 2.0f) * (i % 2 ? 1 : -1) : uniform(-2.0f, 2.0f);
                if (op >= KN_BINARY_MAXIMUM)  // some ties (maximum, minimum, comparisons)
                    for (int64_t i = 0; i < nb; i += 3) b[i] = a[i % na];
                if (op >= KN_BINARY_EQUAL)  // and a NaN: compares false, except !=
                    a[0] = NAN;
                for (int64_t i = 0; i < g.n; ++i) dc[i] = uniform(-1.0f, 1.0f);
                SELFTEST_EXPECT(cuda::binary_f32(BinaryArgs{op, g, a.p, b.p, c.p}, ctx_with(2)) == cudaSuccess, "binary launch");
                // Reference by full-rank index arithmetic over the broadcast shape cd.
                const int rank = int(cd.size());
                auto offsets = [&](int64_t idx, int64_t& oa, int64_t& ob) {
                    oa = ob = 0;
                    for (int d = rank - 1; d >= 0; --d) {
                        const int64_t coord = idx % cd[d];
                        idx /= cd[d];
                        oa += coord * af[d];
                        ob += coord * bf[d];
                    }
                };
                for (int64_t i = 0; i < g.n; ++i) {
                    int64_t oa, ob;
                    offsets(i, oa, ob);
                    const double want = binary_ref(op, a[oa], b[ob]);
                    SELFTEST_EXPECT(close(c[i], want, 2e-6, 1e-7), "binary op %d shape#%zu shift %d element %lld: %.9g vs %.9g", o,
                           si, shift, (long long)i, c[i], want);
                }
                for (int which = 0; which < 3; ++which) {
                    float* dap = which == 2 ? nullptr : da.p;
                    float* dbp = which == 1 ? nullptr : db.p;
                    for (int64_t i = 0; i < g.n; ++i) da[i] = db[i] = -777.0f;
                    SELFTEST_EXPECT(cuda::binary_backward_f32(BinaryBackwardArgs{op, g, a.p, b.p, dc.p, dap, dbp}, ctx_with(2)) == cudaSuccess,
                           "binary backward launch");
                    for (int64_t i = 0; i < g.n; ++i) {
                        int64_t oa, ob;
                        offsets(i, oa, ob);
                        double ga, gb;
                        binary_grad_ref(op, a[oa], b[ob], ga, gb);
                        const double wa = dc[i] * ga, wb = dc[i] * gb;
                        if (dap) SELFTEST_EXPECT(close(da[i], wa, 1e-5, 1e-7), "binary backward da op %d element %lld: %.9g vs %.9g", o, (long long)i, da[i], wa);
                        else SELFTEST_EXPECT(da[i] == -777.0f, "da written though null");
                        if (dbp) SELFTEST_EXPECT(close(db[i], wb, 1e-5, 1e-7), "binary backward db op %d element %lld: %.9g vs %.9g", o, (long long)i, db[i], wb);
                        else SELFTEST_EXPECT(db[i] == -777.0f, "db written though null");
                    }
                }
            }
    }
    // NaN propagation of maximum / minimum.
    HostBuffer a(4), b(4), c(4);
    const float av[4] = {NAN, 1, 2, NAN}, bv[4] = {1, NAN, 2, NAN};
    std::memcpy(a.p, av, sizeof av);
    std::memcpy(b.p, bv, sizeof bv);
    BroadcastGeometry g{};
    g.rank = 1; g.dims[0] = 4; g.a_strides[0] = 1; g.b_strides[0] = 1; g.n = 4;
    for (kn_binary_op op : {KN_BINARY_MAXIMUM, KN_BINARY_MINIMUM}) {
        cuda::binary_f32(BinaryArgs{op, g, a.p, b.p, c.p}, ctx_with(1));
        SELFTEST_EXPECT(std::isnan(c[0]) && std::isnan(c[1]) && c[2] == 2 && std::isnan(c[3]), "max/min NaN");
    }
}

// ---- reduce ------------------------------------------------------------------------------------------
struct Shape { int64_t outer, reduce, inner; };

static void test_reduce() {
    const std::vector<Shape> shapes = {{1, 1, 1}, {1, 7, 1}, {3, 1000, 1}, {2, 1025, 1}, {1, 100000, 1}, {5, 5000, 1},
                                       {3, 40000, 1}, {1000, 3, 1}, {1, 3, 1000}, {4, 2000, 3}, {1, 50000, 2}, {2, 7, 33},
                                       {3, 1, 5}, {1, 0, 1}, {2, 0, 3}, {1, 1024, 1}, {2, 300, 64}, {1, 70000, 1}, {7, 1, 1}};
    for (int sm : {1, 4, 132})
        for (const Shape& s : shapes)
            for (int shift : {0, 1})
                for (int o = 0; o <= KN_REDUCE_SUM_SQUARES; ++o) {
                    const kn_reduce_op op = static_cast<kn_reduce_op>(o);
                    if (s.reduce == 0 && (op == KN_REDUCE_MAX || op == KN_REDUCE_MIN)) continue;
                    const int64_t nx = s.outer * s.reduce * s.inner, ny = s.outer * s.inner;
                    HostBuffer x(nx, shift), y(ny, shift);
                    for (int64_t i = 0; i < nx; ++i) x[i] = uniform(-1.0f, 1.0f);
                    const bool nan_case = (op == KN_REDUCE_MAX || op == KN_REDUCE_MIN) && nx > 2;
                    if (nan_case) x[nx / 2] = NAN;
                    ReduceArgs args{op, x.p, y.p, s.outer, s.reduce, s.inner};
                    // The scratch buffer at exactly the size asked for, so AddressSanitizer sees an overrun.
                    const int64_t scratch_bytes = cuda::reduce_scratch_bytes(args, ctx_with(sm));
                    HostScratch scratch;
                    SELFTEST_EXPECT(cuda::reduce_f32(args, scratch.context(sm)) == cudaSuccess, "reduce launch");
                    SELFTEST_EXPECT(scratch.asked == scratch_bytes, "reduce asked for %lld scratch bytes, planned %lld",
                                    (long long)scratch.asked, (long long)scratch_bytes);
                    // A two-pass plan without a scratch source is refused before anything is queued.
                    if (scratch_bytes > 0)
                        SELFTEST_EXPECT(cuda::reduce_f32(args, ctx_with(sm)) == cudaErrorInvalidValue,
                                        "reduce without scratch source: want cudaErrorInvalidValue");
                    for (int64_t oi = 0; oi < s.outer; ++oi)
                        for (int64_t ii = 0; ii < s.inner; ++ii) {
                            double sum = 0, sum_abs = 0, mx = -INFINITY, mn = INFINITY;
                            bool has_nan = false;
                            for (int64_t r = 0; r < s.reduce; ++r) {
                                const double v = x[(oi * s.reduce + r) * s.inner + ii];
                                if (std::isnan(v)) { has_nan = true; continue; }
                                const double t = op == KN_REDUCE_SUM_SQUARES ? v * v : v;
                                sum += t;
                                sum_abs += std::fabs(t);
                                mx = std::max(mx, v);
                                mn = std::min(mn, v);
                            }
                            const double got = y[oi * s.inner + ii];
                            const double bound = (s.reduce + 2) * FLT_EPSILON * sum_abs + 1e-30;
                            const char* fmt = "reduce op %d sm %d shape %lld,%lld,%lld shift %d out %lld,%lld: %.9g vs %.9g";
                            switch (op) {
                                case KN_REDUCE_SUM:
                                case KN_REDUCE_SUM_SQUARES:
                                    SELFTEST_EXPECT(std::fabs(got - sum) <= bound, fmt, o, sm, (long long)s.outer, (long long)s.reduce,
                                           (long long)s.inner, shift, (long long)oi, (long long)ii, got, sum);
                                    break;
                                case KN_REDUCE_MEAN: {
                                    if (s.reduce == 0) {
                                        SELFTEST_EXPECT(std::isnan(got), "mean over 0 elements");
                                        break;
                                    }
                                    const double want = sum / s.reduce;
                                    SELFTEST_EXPECT(std::fabs(got - want) <= bound / s.reduce + 1e-7 * std::fabs(want), fmt, o, sm,
                                           (long long)s.outer, (long long)s.reduce, (long long)s.inner, shift, (long long)oi,
                                           (long long)ii, got, want);
                                    break;
                                }
                                case KN_REDUCE_MAX:
                                case KN_REDUCE_MIN: {
                                    const double want = has_nan ? NAN : (op == KN_REDUCE_MAX ? mx : mn);
                                    SELFTEST_EXPECT((std::isnan(want) && std::isnan(got)) || got == want, fmt, o, sm, (long long)s.outer,
                                           (long long)s.reduce, (long long)s.inner, shift, (long long)oi, (long long)ii, got, want);
                                    break;
                                }
                            }
                        }
                }
    // argreduce with ties and NaN
    for (int sm : {1, 4, 132})
        for (const Shape& s : shapes) {
            if (s.reduce == 0) continue;
            for (int variant = 0; variant < 2; ++variant)
                for (int o = 0; o < 2; ++o) {
                    const int64_t nx = s.outer * s.reduce * s.inner, ny = s.outer * s.inner;
                    HostBuffer x(nx, variant), idx(ny * 2);
                    for (int64_t i = 0; i < nx; ++i) x[i] = float(int(uniform(0.0f, 5.0f)));  // many ties
                    if (variant == 1 && nx > 3) { x[nx / 3] = NAN; x[nx - 1] = NAN; x[nx / 5] = -INFINITY; x[nx / 7] = INFINITY; }
                    ArgReduceArgs args{static_cast<kn_argreduce_op>(o), x.p, idx.p, s.outer, s.reduce, s.inner};
                    const int64_t sb = cuda::argreduce_scratch_bytes(args, ctx_with(sm));
                    HostScratch scratch;
                    SELFTEST_EXPECT(cuda::argreduce_f32(args, scratch.context(sm)) == cudaSuccess, "argreduce launch");
                    SELFTEST_EXPECT(scratch.asked == sb, "argreduce asked for %lld scratch bytes, planned %lld",
                                    (long long)scratch.asked, (long long)sb);
                    const int64_t* got = reinterpret_cast<const int64_t*>(idx.p);
                    for (int64_t oi = 0; oi < s.outer; ++oi)
                        for (int64_t ii = 0; ii < s.inner; ++ii) {
                            int64_t best = 0;
                            for (int64_t r = 1; r < s.reduce; ++r) {
                                const float v = x[(oi * s.reduce + r) * s.inner + ii], bv = x[(oi * s.reduce + best) * s.inner + ii];
                                if (std::isnan(bv)) break;
                                if (std::isnan(v) || (o == 0 ? v > bv : v < bv)) best = r;
                            }
                            SELFTEST_EXPECT(got[oi * s.inner + ii] == best, "argreduce op %d sm %d shape %lld,%lld,%lld variant %d out %lld,%lld: %lld vs %lld",
                                   o, sm, (long long)s.outer, (long long)s.reduce, (long long)s.inner, variant, (long long)oi,
                                   (long long)ii, (long long)got[oi * s.inner + ii], (long long)best);
                        }
                }
        }
}

// ---- softmax -------------------------------------------------------------------------------------
static void test_softmax() {
    const std::vector<std::pair<int64_t, int64_t>> shapes = {{1, 1}, {3, 5}, {7, 4}, {2, 1024}, {3, 1025}, {2, 4096},
                                                              {1, 20000}, {1, 17001}, {100, 33}, {9, 32}};
    for (const auto& [rows, cols] : shapes)
        for (int shift : {0, 1})
            for (bool log : {false, true})
                for (bool in_place : {false, true}) {
                    const int64_t n = rows * cols;
                    HostBuffer x(n, shift), y(n, shift), dy(n, shift), dx(n, shift);
                    std::vector<float> xv(n);
                    for (int64_t i = 0; i < n; ++i) xv[i] = x[i] = uniform(-5.0f, 5.0f) + (i % 7 == 0 ? 60.0f : 0.0f);
                    float* out = in_place ? x.p : y.p;
                    SELFTEST_EXPECT(cuda::softmax_f32(SoftmaxArgs{x.p, out, rows, cols, log}, ctx_with(2)) == cudaSuccess, "softmax launch");
                    std::vector<double> want(n);
                    for (int64_t r = 0; r < rows; ++r) {
                        double m = -INFINITY, s = 0;
                        for (int64_t c = 0; c < cols; ++c) m = std::max(m, double(xv[r * cols + c]));
                        for (int64_t c = 0; c < cols; ++c) s += std::exp(xv[r * cols + c] - m);
                        for (int64_t c = 0; c < cols; ++c) {
                            const double v = xv[r * cols + c] - m;
                            want[r * cols + c] = log ? v - std::log(s) : std::exp(v) / s;
                        }
                    }
                    for (int64_t i = 0; i < n; ++i)
                        SELFTEST_EXPECT(close(out[i], want[i], 2e-5, log ? 2e-5 : 1e-9), "softmax log %d %lldx%lld shift %d element %lld: %.9g vs %.9g",
                               log, (long long)rows, (long long)cols, shift, (long long)i, out[i], want[i]);
                    // backward from the float forward output
                    HostBuffer yin(n, shift);
                    std::vector<float> dyv(n);
                    for (int64_t i = 0; i < n; ++i) { yin[i] = out[i]; dyv[i] = dy[i] = uniform(-1.0f, 1.0f); }
                    float* dxp = in_place ? dy.p : dx.p;
                    SELFTEST_EXPECT(cuda::softmax_backward_f32(SoftmaxBackwardArgs{yin.p, dy.p, dxp, rows, cols, log}, ctx_with(2)) == cudaSuccess,
                           "softmax backward launch");
                    for (int64_t r = 0; r < rows; ++r) {
                        double sum = 0, sum_abs = 0;
                        for (int64_t c = 0; c < cols; ++c) {
                            const double t = log ? dyv[r * cols + c] : double(dyv[r * cols + c]) * yin[r * cols + c];
                            sum += t;
                            sum_abs += std::fabs(t);
                        }
                        for (int64_t c = 0; c < cols; ++c) {
                            const double yv = yin[r * cols + c], g = dyv[r * cols + c];
                            const double w = log ? g - std::exp(yv) * sum : yv * (g - sum);
                            const double tol = 1e-5 * (std::fabs(w) + 1e-3) + (cols + 2) * FLT_EPSILON * sum_abs * (log ? std::exp(yv) : yv) + 1e-7;
                            SELFTEST_EXPECT(std::fabs(dxp[r * cols + c] - w) <= tol, "softmax backward log %d %lldx%lld element %lld,%lld: %.9g vs %.9g",
                                   log, (long long)rows, (long long)cols, (long long)r, (long long)c, dxp[r * cols + c], w);
                        }
                    }
                }
    // stability: all -inf row -> NaN; a huge but finite row works
    HostBuffer x(8), y(8);
    for (int i = 0; i < 4; ++i) x[i] = -INFINITY;
    for (int i = 4; i < 8; ++i) x[i] = 3e38f - i;
    cuda::softmax_f32(SoftmaxArgs{x.p, y.p, 2, 4, false}, ctx_with(1));
    SELFTEST_EXPECT(std::isnan(y[0]) && std::isnan(y[3]), "all -inf row is NaN");
    double s = 0;
    for (int i = 4; i < 8; ++i) s += y[i];
    SELFTEST_EXPECT(std::fabs(s - 1) < 1e-6, "large finite row sums to 1 (%g)", s);
}

// ---- gather --------------------------------------------------------------------------------------
// Gather rows is a copy (compared bit for bit); the scatter-add must equal, bit for bit, the float32
// sum in ascending position order that kernels.h promises. The plan is built as api.cpp builds it.
static void test_gather() {
    for (const auto& [rows, cols, n] : std::vector<std::tuple<int64_t, int64_t, int64_t>>{
             {1, 1, 1}, {5, 3, 8}, {17, 33, 40}, {31, 257, 300}, {8, 16, 513}}) {
        HostBuffer table(rows * cols), y(n * cols), dy(n * cols), dtable(rows * cols);
        HostBuffer<int64_t> idx(n);
        for (int64_t i = 0; i < rows * cols; ++i) table[i] = uniform(-4, 4);
        for (int64_t i = 0; i < n; ++i) {
            const float u = uniform(0, 1);
            idx[i] = std::min<int64_t>(rows - 1, static_cast<int64_t>(u * u * rows));  // many repeats
        }
        SELFTEST_EXPECT(cuda::gather_rows_f32(GatherRowsArgs{table.p, idx.p, y.p, n, cols}, ctx_with(2)) == cudaSuccess, "gather launch");
        for (int64_t i = 0; i < n; ++i)
            for (int64_t c = 0; c < cols; ++c)
                SELFTEST_EXPECT(selftest::same_bits(y[i * cols + c], table[idx[i] * cols + c]), "gather %lldx%lld n %lld: y[%lld, %lld]",
                                (long long)rows, (long long)cols, (long long)n, (long long)i, (long long)c);

        const int64_t padding = rows > 1 ? 0 : -1;
        std::vector<int64_t> sorted;
        for (int64_t i = 0; i < n; ++i)
            if (idx[i] != padding) sorted.push_back(i);
        std::stable_sort(sorted.begin(), sorted.end(), [&](int64_t a, int64_t b) { return idx[a] < idx[b]; });
        const int64_t positions = static_cast<int64_t>(sorted.size());
        if (positions == 0) continue;
        int64_t segments = 1;
        for (int64_t k = 1; k < positions; ++k) segments += idx[sorted[k]] != idx[sorted[k - 1]];
        HostBuffer<int64_t> plan(2 * segments + 1 + positions);
        for (int64_t k = 0, seg = 0; k < positions; ++k) {
            if (k == 0 || idx[sorted[k]] != idx[sorted[k - 1]]) {
                plan[seg] = idx[sorted[k]];
                plan[segments + seg++] = k;
            }
            plan[2 * segments + 1 + k] = sorted[k];
        }
        plan[2 * segments] = positions;
        std::vector<float> want(rows * cols);
        for (int64_t i = 0; i < n * cols; ++i) dy[i] = uniform(-1, 1);
        for (int64_t i = 0; i < rows * cols; ++i) want[i] = dtable[i] = uniform(-1, 1);
        for (int64_t i = 0; i < n; ++i)
            if (idx[i] != padding)
                for (int64_t c = 0; c < cols; ++c) want[idx[i] * cols + c] += dy[i * cols + c];
        SELFTEST_EXPECT(cuda::scatter_add_rows_f32(ScatterAddRowsArgs{dy.p, plan.p, dtable.p, segments, positions, cols}, ctx_with(2)) == cudaSuccess,
                        "scatter-add launch");
        for (int64_t i = 0; i < rows * cols; ++i)
            SELFTEST_EXPECT(selftest::same_bits(dtable[i], want[i]), "scatter-add %lldx%lld n %lld: dtable element %lld %.9g vs %.9g",
                            (long long)rows, (long long)cols, (long long)n, (long long)i, dtable[i], want[i]);
    }
}

// ---- cast ----------------------------------------------------------------------------------------
// Every pair of types over edge values (NaN, +-inf, +-2^31, +-2^63, halves, 2^24 + 1) against kernels.h's
// rules written here in double arithmetic, at a length that leaves a partial block.
static void test_cast() {
    const float inf = INFINITY, nan = NAN;
    std::vector<float> f = {0.0f, -0.0f, 0.5f, -0.5f, 2.7f, -2.7f, 16777217.0f, 2147483520.0f, 2147483648.0f,
                            -2147483648.0f, -2147483904.0f, 3e9f, -3e9f, 9223372036854775808.0f, -1e19f, inf, -inf, nan};
    std::vector<int64_t> l = {0, -1, (int64_t{1} << 32) + 5, INT64_MAX, INT64_MIN, 16777217, -(int64_t{1} << 40) - 3,
                              int64_t{INT32_MAX} + 1};
    while (f.size() < 301) f.push_back(uniform(-1e6f, 1e6f));
    while (l.size() < 301) l.push_back(static_cast<int64_t>(uniform(-1e9f, 1e9f)) * 1000003);
    const int64_t n = static_cast<int64_t>(f.size());
    auto trunc_sat = [](float x, double lo, double hi) -> double {
        if (std::isnan(x)) return 0;
        const double t = std::trunc(static_cast<double>(x));
        return t < lo ? lo : t > hi ? hi : t;
    };
    HostBuffer<float> xf(n), yf(n);
    HostBuffer<int32_t> yi(n), xi(n);
    HostBuffer<int64_t> yl(n), xl(n);
    for (int64_t i = 0; i < n; ++i) xf[i] = f[i], xl[i] = l[i], xi[i] = static_cast<int32_t>(l[i] % 2000000000);
    SELFTEST_EXPECT(cuda::cast(CastArgs{KN_FLOAT32, KN_INT32, xf.p, yi.p, n}, ctx_with(2)) == cudaSuccess, "cast launch");
    SELFTEST_EXPECT(cuda::cast(CastArgs{KN_FLOAT32, KN_INT64, xf.p, yl.p, n}, ctx_with(2)) == cudaSuccess, "cast launch");
    for (int64_t i = 0; i < n; ++i) {
        SELFTEST_EXPECT(yi[i] == static_cast<int32_t>(trunc_sat(f[i], INT32_MIN, INT32_MAX)), "cast f32 -> i32 of %.9g gave %d", f[i], yi[i]);
        const int64_t want = std::isnan(f[i]) ? 0 : f[i] >= 9223372036854775808.0f ? INT64_MAX : f[i] < -9223372036854775808.0f ? INT64_MIN
                                                  : static_cast<int64_t>(std::trunc(static_cast<double>(f[i])));
        SELFTEST_EXPECT(yl[i] == want, "cast f32 -> i64 of %.9g gave %lld", f[i], (long long)yl[i]);
    }
    SELFTEST_EXPECT(cuda::cast(CastArgs{KN_INT64, KN_INT32, xl.p, yi.p, n}, ctx_with(2)) == cudaSuccess, "cast launch");
    SELFTEST_EXPECT(cuda::cast(CastArgs{KN_INT64, KN_FLOAT32, xl.p, yf.p, n}, ctx_with(2)) == cudaSuccess, "cast launch");
    for (int64_t i = 0; i < n; ++i) {
        const uint32_t low = static_cast<uint32_t>(static_cast<uint64_t>(l[i]));
        int32_t want;
        std::memcpy(&want, &low, 4);
        SELFTEST_EXPECT(yi[i] == want, "cast i64 -> i32 of %lld gave %d", (long long)l[i], yi[i]);
        SELFTEST_EXPECT(selftest::same_bits(yf[i], static_cast<float>(l[i])), "cast i64 -> f32 of %lld", (long long)l[i]);
    }
    SELFTEST_EXPECT(cuda::cast(CastArgs{KN_INT32, KN_INT64, xi.p, yl.p, n}, ctx_with(2)) == cudaSuccess, "cast launch");
    SELFTEST_EXPECT(cuda::cast(CastArgs{KN_INT32, KN_FLOAT32, xi.p, yf.p, n}, ctx_with(2)) == cudaSuccess, "cast launch");
    for (int64_t i = 0; i < n; ++i) {
        SELFTEST_EXPECT(yl[i] == xi[i], "cast i32 -> i64 of %d", xi[i]);
        SELFTEST_EXPECT(selftest::same_bits(yf[i], static_cast<float>(xi[i])), "cast i32 -> f32 of %d", xi[i]);
    }
    SELFTEST_EXPECT(cuda::cast(CastArgs{KN_INT64, KN_INT64, xl.p, yl.p, n}, ctx_with(2)) == cudaSuccess, "cast launch");
    for (int64_t i = 0; i < n; ++i) SELFTEST_EXPECT(yl[i] == l[i], "cast i64 -> i64 copy of element %lld", (long long)i);
}

// ---- recurrent -----------------------------------------------------------------------------------
// The LSTM and GRU cell steps against float64 references of kernels.h's formulas, masked and not, with
// the optional operands present and absent, over grids smaller than the work (grid-stride loops).
static double sigmoid_ref(double x) { return 1 / (1 + std::exp(-x)); }

static void test_recurrent() {
    const double tol = 64 * FLT_EPSILON;
    for (const auto& [B, H] : std::vector<std::pair<int64_t, int64_t>>{{1, 1}, {3, 7}, {5, 33}, {64, 128}})
        for (bool masked : {false, true})
            for (bool optional_present : {true, false})
                for (int sm : {1, 3}) {
                    const int64_t n = B * H;
                    HostBuffer gates(4 * n), cp(n), hp(n), mask(B), h(n), c(n), saved(5 * n), dh(n), dc(n), dg(4 * n),
                        dcp(n), dhp(n);
                    for (int64_t i = 0; i < 4 * n; ++i) gates[i] = uniform(-4, 4);
                    for (int64_t i = 0; i < n; ++i) {
                        cp[i] = uniform(-2, 2);
                        hp[i] = uniform(-1, 1);
                        dh[i] = uniform(-1, 1);
                        dc[i] = uniform(-1, 1);
                        dcp[i] = dhp[i] = -7.0f;
                    }
                    for (int64_t b = 0; b < B; ++b) mask[b] = b % 3 == 1 ? 0.0f : 1.0f;
                    const float* m = masked ? mask.p : nullptr;
                    SELFTEST_EXPECT(cuda::lstm_cell_f32(LstmCellArgs{gates.p, cp.p, hp.p, m, h.p, c.p, saved.p, B, H}, ctx_with(sm)) ==
                                        cudaSuccess, "lstm launch");
                    SELFTEST_EXPECT(cuda::lstm_cell_backward_f32(LstmCellBackwardArgs{saved.p, cp.p, m, optional_present ? dh.p : nullptr,
                                                                                      dc.p, dg.p, optional_present ? dcp.p : nullptr,
                                                                                      optional_present ? dhp.p : nullptr, B, H},
                                                                 ctx_with(sm)) == cudaSuccess,
                                    "lstm backward launch");
                    for (int64_t b = 0; b < B; ++b)
                        for (int64_t j = 0; j < H; ++j) {
                            const int64_t e = b * H + j, g0 = b * 4 * H + j;
                            const bool update = !masked || mask[b] != 0.0f;
                            const double i = sigmoid_ref(gates[g0]), f = sigmoid_ref(gates[g0 + H]), g = std::tanh(double(gates[g0 + 2 * H])),
                                         o = sigmoid_ref(gates[g0 + 3 * H]);
                            const double cn = f * cp[e] + i * g, tc = std::tanh(cn);
                            const double dhj = optional_present ? dh[e] : 0.0, dct = dc[e] + dhj * o * (1 - tc * tc);
                            const double want_dg[4] = {dct * g * i * (1 - i), dct * cp[e] * f * (1 - f), dct * i * (1 - g * g),
                                                       dhj * tc * o * (1 - o)};
                            SELFTEST_EXPECT(close(h[e], update ? o * tc : hp[e], tol, tol), "lstm %lldx%lld h[%lld] %g", (long long)B, (long long)H, (long long)e, h[e]);
                            SELFTEST_EXPECT(close(c[e], update ? cn : cp[e], tol, tol), "lstm %lldx%lld c[%lld] %g", (long long)B, (long long)H, (long long)e, c[e]);
                            SELFTEST_EXPECT(close(saved[b * 5 * H + 4 * H + j], tc, tol, tol), "lstm saved tanh c [%lld]", (long long)e);
                            for (int k = 0; k < 4; ++k)
                                SELFTEST_EXPECT(close(dg[g0 + k * H], update ? want_dg[k] : 0.0, tol, tol), "lstm %lldx%lld dgates block %d [%lld] %g",
                                                (long long)B, (long long)H, k, (long long)e, dg[g0 + k * H]);
                            if (optional_present) {
                                SELFTEST_EXPECT(close(dcp[e], update ? dct * f : dc[e], tol, tol), "lstm dc_prev[%lld] %g", (long long)e, dcp[e]);
                                SELFTEST_EXPECT(close(dhp[e], update ? 0.0 : dhj, tol, tol), "lstm dh_prev[%lld] %g", (long long)e, dhp[e]);
                            } else {
                                SELFTEST_EXPECT(dcp[e] == -7.0f && dhp[e] == -7.0f, "lstm wrote an absent output at %lld", (long long)e);
                            }
                        }

                    HostBuffer xg(3 * n), hg(3 * n), gh(n), gs(3 * n), dxg(3 * n), dhg(3 * n);
                    for (int64_t i = 0; i < 3 * n; ++i) {
                        xg[i] = uniform(-3, 3);
                        hg[i] = uniform(-3, 3);
                    }
                    for (int64_t i = 0; i < n; ++i) dhp[i] = -7.0f;
                    SELFTEST_EXPECT(cuda::gru_cell_f32(GruCellArgs{xg.p, hg.p, hp.p, m, gh.p, gs.p, B, H}, ctx_with(sm)) == cudaSuccess,
                                    "gru launch");
                    SELFTEST_EXPECT(cuda::gru_cell_backward_f32(GruCellBackwardArgs{gs.p, hg.p, hp.p, m, dh.p, dxg.p, dhg.p,
                                                                                    optional_present ? dhp.p : nullptr, B, H},
                                                                ctx_with(sm)) == cudaSuccess,
                                    "gru backward launch");
                    for (int64_t b = 0; b < B; ++b)
                        for (int64_t j = 0; j < H; ++j) {
                            const int64_t e = b * H + j, at = b * 3 * H + j;
                            const bool update = !masked || mask[b] != 0.0f;
                            const double r = sigmoid_ref(double(xg[at]) + hg[at]), z = sigmoid_ref(double(xg[at + H]) + hg[at + H]);
                            const double nn = std::tanh(xg[at + 2 * H] + r * hg[at + 2 * H]);
                            const double d = dh[e], dn = d * (1 - z) * (1 - nn * nn), dz = d * (hp[e] - nn) * z * (1 - z);
                            const double dr = dn * hg[at + 2 * H] * r * (1 - r);
                            const double want_dx[3] = {dr, dz, dn}, want_dh[3] = {dr, dz, dn * r};
                            SELFTEST_EXPECT(close(gh[e], update ? (1 - z) * nn + z * hp[e] : hp[e], tol, tol), "gru %lldx%lld h[%lld] %g",
                                            (long long)B, (long long)H, (long long)e, gh[e]);
                            for (int k = 0; k < 3; ++k) {
                                SELFTEST_EXPECT(close(dxg[at + k * H], update ? want_dx[k] : 0.0, tol, tol), "gru dx_gates block %d [%lld]", k, (long long)e);
                                SELFTEST_EXPECT(close(dhg[at + k * H], update ? want_dh[k] : 0.0, tol, tol), "gru dh_gates block %d [%lld]", k, (long long)e);
                            }
                            if (optional_present)
                                SELFTEST_EXPECT(close(dhp[e], update ? d * z : d, tol, tol), "gru dh_prev[%lld] %g", (long long)e, dhp[e]);
                            else
                                SELFTEST_EXPECT(dhp[e] == -7.0f, "gru wrote an absent dh_prev at %lld", (long long)e);
                        }
                }
    // Saturated gates: no overflow in the sigmoid for any finite input.
    HostBuffer gates(4), cp(1), hp(1), h(1), c(1);
    gates[0] = -3e38f, gates[1] = 3e38f, gates[2] = -100.0f, gates[3] = 3e38f, cp[0] = 0.5f, hp[0] = 0.0f;
    cuda::lstm_cell_f32(LstmCellArgs{gates.p, cp.p, hp.p, nullptr, h.p, c.p, nullptr, 1, 1}, ctx_with(1));
    SELFTEST_EXPECT(c[0] == 0.5f && close(h[0], std::tanh(0.5), 1e-6, 1e-7), "saturated lstm: c %g h %g", c[0], h[0]);
}

// ---- gemm ----------------------------------------------------------------------------------------
struct GemmCase {
    bool ta, tb;
    int m, n, k, pad_a, pad_b, pad_c, batch;
    bool share_a, share_b;
    float alpha, beta;
    bool nan_c;
    int shift;  // misalign all three operands by this many floats
};

static void test_gemm() {
    const std::vector<GemmCase> cases = {
        {false, false, 1, 1, 1, 0, 0, 0, 1, false, false, 1, 0, false, 0},
        {false, false, 1, 300, 77, 0, 0, 0, 1, false, false, 1, 0, false, 0},
        {false, false, 300, 1, 77, 0, 0, 0, 1, false, false, 1, 0, false, 0},
        {false, false, 7, 13, 1, 0, 0, 0, 1, false, false, 2, 0.5f, false, 0},
        {false, false, 131, 257, 109, 0, 0, 0, 1, false, false, 1, 0, false, 0},
        {true, false, 131, 257, 109, 0, 0, 0, 1, false, false, 1, 1, false, 0},
        {false, true, 131, 257, 109, 0, 0, 0, 1, false, false, -1, 0.25f, false, 0},
        {true, true, 131, 257, 109, 0, 0, 0, 1, false, false, 0.5f, -2, false, 0},
        {false, false, 256, 128, 64, 3, 5, 7, 1, false, false, 1, 1, false, 0},
        {true, true, 200, 136, 96, 4, 8, 4, 1, false, false, 1, 1, false, 0},
        {false, false, 129, 129, 129, 0, 0, 0, 1, false, false, 1, 0, true, 0},
        {false, false, 64, 48, 0, 0, 0, 0, 1, false, false, 1, 0.5f, false, 0},
        {false, false, 64, 48, 0, 0, 0, 0, 1, false, false, 1, 0, true, 0},
        {false, false, 64, 48, 32, 0, 0, 0, 1, false, false, 0, 2, false, 0},
        {false, false, 33, 65, 17, 1, 2, 3, 5, false, false, 1, 0.5f, false, 0},
        {true, false, 33, 65, 17, 0, 0, 0, 4, true, false, 1, 0, false, 0},
        {false, true, 100, 40, 60, 0, 1, 0, 3, false, true, 1, 0, false, 0},
        {false, false, 128, 128, 64, 0, 0, 0, 1, false, false, 1, 0, false, 1},
        {true, true, 96, 160, 40, 0, 0, 0, 2, false, false, 1, 0.5f, false, 1},
        {false, false, 257, 250, 33, 0, 0, 0, 1, false, false, 1, 0, false, 0},
        {true, false, 130, 260, 17, 1, 0, 2, 1, false, false, 1, 0.5f, false, 0},
        {false, true, 260, 130, 31, 0, 3, 0, 2, false, false, 1, 0, false, 0},
        {false, false, 64, 64, 1000, 0, 0, 0, 1, false, false, 1, 0, false, 0},
    };
    for (int sm : {1, 100000})  // 1: always the 128x128 kernel; huge: always the 64x64 kernel
        for (const GemmCase& e : cases) {
            const int a_rows = e.ta ? e.k : e.m, a_cols = e.ta ? e.m : e.k;
            const int b_rows = e.tb ? e.n : e.k, b_cols = e.tb ? e.k : e.n;
            const int lda = std::max(a_cols, 1) + e.pad_a, ldb = std::max(b_cols, 1) + e.pad_b, ldc = e.n + e.pad_c;
            // Extents exactly as the API checks them: the last batch's last row ends at (rows-1)*ld + cols.
            auto extent = [](int rows, int cols, int ld) { return rows == 0 || cols == 0 ? 0 : size_t(rows - 1) * ld + cols; };
            const size_t ext_a = extent(a_rows, a_cols, lda), ext_b = extent(b_rows, b_cols, ldb), ext_c = extent(e.m, e.n, ldc);
            const size_t stride_a = e.share_a ? 0 : size_t(a_rows) * lda, stride_b = e.share_b ? 0 : size_t(b_rows) * ldb,
                         stride_c = size_t(e.m) * ldc;
            const size_t na = stride_a * (e.batch - 1) + ext_a, nb = stride_b * (e.batch - 1) + ext_b, nc = stride_c * (e.batch - 1) + ext_c;
            HostBuffer a(na, e.shift), b(nb, e.shift), c(nc, e.shift);
            for (size_t i = 0; i < na; ++i) a[i] = uniform(-1, 1);
            for (size_t i = 0; i < nb; ++i) b[i] = uniform(-1, 1);
            std::vector<float> c0(nc);
            for (size_t i = 0; i < nc; ++i) c0[i] = c[i] = e.nan_c ? NAN : uniform(-1, 1);
            GemmArgs g{e.ta, e.tb, e.m, e.n, e.k, e.alpha, e.beta, a.p, lda, int64_t(stride_a), b.p, ldb, int64_t(stride_b), c.p, ldc,
                       int64_t(stride_c), e.batch};
            SELFTEST_EXPECT(cuda::gemm_f32(g, ctx_with(sm)) == cudaSuccess, "gemm launch");
            int bad = 0;
            for (int bi = 0; bi < e.batch; ++bi)
                for (int i = 0; i < e.m; ++i)
                    for (int j = 0; j < ldc && size_t(bi) * stride_c + size_t(i) * ldc + j < nc; ++j) {
                        const size_t at = bi * stride_c + size_t(i) * ldc + j;
                        if (j >= e.n) {  // padding must be untouched
                            if (!(std::isnan(c0[at]) ? std::isnan(c[at]) : c[at] == c0[at])) ++bad;
                            continue;
                        }
                        double sum = 0, sum_abs = 0;
                        for (int p = 0; p < e.k; ++p) {
                            const double x = e.ta ? a[bi * stride_a + size_t(p) * lda + i] : a[bi * stride_a + size_t(i) * lda + p];
                            const double y = e.tb ? b[bi * stride_b + size_t(j) * ldb + p] : b[bi * stride_b + size_t(p) * ldb + j];
                            sum += x * y;
                            sum_abs += std::fabs(x * y);
                        }
                        const bool product = e.k > 0 && e.alpha != 0;
                        const double old = e.beta == 0 ? 0 : double(e.beta) * c0[at];
                        const double want = (product ? e.alpha * sum : 0) + old;
                        const double bound = (e.k + 4) * FLT_EPSILON * (std::fabs(e.alpha) * sum_abs + std::fabs(old)) + 1e-30;
                        if (!(std::fabs(c[at] - want) <= bound)) {
                            if (bad < 3)
                                std::printf("  gemm sm %d %c%c %dx%dx%d batch %d: C[%d][%d][%d] = %.9g, want %.9g\n", sm, e.ta ? 'T' : 'N',
                                            e.tb ? 'T' : 'N', e.m, e.n, e.k, e.batch, bi, i, j, c[at], want);
                            ++bad;
                        }
                    }
            SELFTEST_EXPECT(bad == 0, "gemm sm %d %c%c %dx%dx%d pads %d/%d/%d batch %d shift %d: %d wrong", sm, e.ta ? 'T' : 'N', e.tb ? 'T' : 'N',
                   e.m, e.n, e.k, e.pad_a, e.pad_b, e.pad_c, e.batch, e.shift, bad);
        }
}

// ---- linear (GEMM, then bias and activation; backward: activation derivative, then column sums) -----
static double linear_act(kn_unary_op op, float alpha, double z) {
    switch (op) {
        case KN_UNARY_RELU: return z > 0 ? z : 0;
        case KN_UNARY_TANH: return std::tanh(z);
        case KN_UNARY_LEAKY_RELU: return z > 0 ? z : alpha * z;
        default: return z;  // KN_UNARY_SCALE with alpha 1: the identity
    }
}

static void test_linear() {
    struct Case { int m, n, k; bool tw, bias; kn_unary_op op; float alpha; };
    const std::vector<Case> cases = {
        {1, 1, 1, false, true, KN_UNARY_RELU, 0},        {7, 13, 5, false, true, KN_UNARY_TANH, 0},
        {33, 65, 17, true, true, KN_UNARY_LEAKY_RELU, 0.1f}, {131, 257, 109, false, false, KN_UNARY_RELU, 0},
        {64, 48, 0, false, true, KN_UNARY_TANH, 0},      {29, 31, 37, false, true, KN_UNARY_SCALE, 1},
    };
    for (const Case& e : cases) {
        HostBuffer x(size_t(e.m) * e.k + 1), w(size_t(e.k) * e.n + 1), b(size_t(e.n)), y(size_t(e.m) * e.n);
        for (size_t i = 0; i < x.n; ++i) x[i] = uniform(-1, 1);
        for (size_t i = 0; i < w.n; ++i) w[i] = uniform(-1, 1);
        for (size_t i = 0; i < b.n; ++i) b[i] = uniform(-1, 1);
        const bool identity = e.op == KN_UNARY_SCALE && e.alpha == 1.0f;
        GemmArgs g{false, e.tw, e.m, e.n, e.k, 1.0f, 0.0f, x.p, e.k, 0, w.p, e.tw ? e.k : e.n, 0, y.p, e.n, 0, 1};
        SELFTEST_EXPECT(cuda::linear_f32(LinearArgs{g, e.bias ? b.p : nullptr, !identity, e.op, e.alpha}, ctx_with(2)) == cudaSuccess,
                        "linear launch");
        int bad = 0;
        for (int i = 0; i < e.m; ++i)
            for (int j = 0; j < e.n; ++j) {
                double z = e.bias ? b[j] : 0, z_abs = std::fabs(z);
                for (int p = 0; p < e.k; ++p) {
                    const double t = double(x[size_t(i) * e.k + p]) * (e.tw ? w[size_t(j) * e.k + p] : w[size_t(p) * e.n + j]);
                    z += t;
                    z_abs += std::fabs(t);
                }
                const double want = linear_act(e.op, e.alpha, z);
                if (!(std::fabs(y[size_t(i) * e.n + j] - want) <= (e.k + 4) * FLT_EPSILON * z_abs + 1e-6 * std::fabs(want) + 1e-30)) ++bad;
            }
        SELFTEST_EXPECT(bad == 0, "linear %dx%dx%d%s%s op %d: %d wrong", e.m, e.n, e.k, e.tw ? " w^T" : "", e.bias ? " bias" : "",
                        int(e.op), bad);

        // Backward over y's shape: dz = dy * act'(.), dbias = column sums of dz.
        HostBuffer dy(size_t(e.m) * e.n), dz(size_t(e.m) * e.n), db(size_t(e.n));
        for (size_t i = 0; i < dy.n; ++i) dy[i] = uniform(-1, 1);
        const bool from_y = e.op == KN_UNARY_TANH;
        SELFTEST_EXPECT(cuda::linear_backward_f32(LinearBackwardArgs{e.op, e.alpha, from_y ? nullptr : y.p, from_y ? y.p : nullptr, dy.p,
                                                                     dz.p, db.p, e.m, e.n},
                                                  ctx_with(2)) == cudaSuccess,
                        "linear_backward launch");
        bad = 0;
        std::vector<double> sums(size_t(e.n), 0.0), sums_abs(size_t(e.n), 0.0);
        for (int i = 0; i < e.m; ++i)
            for (int j = 0; j < e.n; ++j) {
                const size_t at = size_t(i) * e.n + j;
                const double v = y[at];
                const double slope = e.op == KN_UNARY_TANH ? 1 - v * v : e.op == KN_UNARY_RELU ? (v > 0 ? 1 : 0)
                                     : e.op == KN_UNARY_LEAKY_RELU ? (v > 0 ? 1 : e.alpha) : e.alpha;
                const double want = dy[at] * slope;
                // 1 - y^2 in float cancels near |y| = 1: y^2's rounding (eps) becomes an absolute error.
                const double tol = 1e-6 * std::fabs(want) + 2 * FLT_EPSILON * std::fabs(dy[at]) + 1e-30;
                sums[j] += want;
                sums_abs[j] += std::fabs(want) + tol;
                if (!(std::fabs(dz[at] - want) <= tol)) ++bad;
            }
        for (int j = 0; j < e.n; ++j)
            if (!(std::fabs(db[j] - sums[j]) <= (e.m + 4) * FLT_EPSILON * sums_abs[j] + 1e-6 * sums_abs[j] + 1e-30)) ++bad;
        SELFTEST_EXPECT(bad == 0, "linear_backward %dx%d op %d: %d wrong", e.m, e.n, int(e.op), bad);
    }
}

// ---- layout (strided copy) -------------------------------------------------------------------------
// The normalised geometry as the API layer hands it over: contiguous destinations through the transpose
// tiles and the general kernel (from a y_offset), strided destinations (a slice of y) through the
// to-view kernel; y's other elements must keep their values.
static void layout_case(const char* name, std::vector<int64_t> dims, std::vector<int64_t> xs, int64_t x_offset,
                        std::vector<int64_t> ys, int64_t y_offset, bool y_contiguous, size_t y_size) {
    StridedCopyArgs g{};
    g.rank = static_cast<int32_t>(dims.size());
    g.n = 1;
    int64_t last_read = x_offset;
    for (int d = 0; d < g.rank; ++d) {
        g.dims[d] = dims[d];
        g.x_strides[d] = xs[d];
        g.y_strides[d] = ys[d];
        g.n *= dims[d];
        last_read += (dims[d] - 1) * xs[d];
    }
    g.x_offset = x_offset;
    g.y_offset = y_offset;
    g.y_contiguous = y_contiguous;
    HostBuffer x(static_cast<size_t>(last_read + 1)), y(y_size), want(y_size);
    for (size_t i = 0; i < x.n; ++i) x[i] = uniform(-4, 4);
    for (size_t i = 0; i < y.n; ++i) y[i] = want[i] = uniform(10, 20);
    for (int64_t i = 0; i < g.n; ++i) {
        int64_t rest = i, from = x_offset, to = y_offset;
        for (int d = g.rank - 1; d >= 0; --d) {
            from += rest % dims[d] * xs[d];
            to += rest % dims[d] * ys[d];
            rest /= dims[d];
        }
        want[static_cast<size_t>(to)] = x[static_cast<size_t>(from)];
    }
    g.x = x.p;
    g.y = y.p;
    SELFTEST_EXPECT(cuda::strided_copy_f32(g, ctx_with(2)) == cudaSuccess, "%s: launch", name);
    for (size_t i = 0; i < y.n; ++i)
        SELFTEST_EXPECT(y[i] == want[i], "%s: y element %zu = %g, want %g", name, i, y[i], want[i]);
}

static void test_layout() {
    layout_case("transpose tiles [37, 45] into y from 3", {37, 45}, {1, 37}, 0, {45, 1}, 3, true, 37 * 45 + 5);
    layout_case("batched transpose [3, 33, 65]", {3, 33, 65}, {33 * 65, 1, 33}, 2, {33 * 65, 65, 1}, 0, true, 3 * 33 * 65);
    layout_case("general kernel, step 2 from offset 1", {5, 7}, {14, 2}, 1, {7, 1}, 4, true, 40);
    layout_case("into cols 3..7 of [5, 11]", {5, 4}, {4, 1}, 0, {11, 1}, 3, false, 55);
    layout_case("transpose into cols 1..4 of [5, 6]", {5, 3}, {1, 5}, 0, {6, 1}, 1, false, 30);
    layout_case("rank 3 into [1:4, :, 2:5] of [5, 2, 6]", {3, 2, 3}, {6, 3, 1}, 0, {12, 6, 1}, 14, false, 60);
    layout_case("every 3rd element from 2", {9}, {1}, 0, {3}, 2, false, 29);
}

// The kn_*_step_many_f32 multi-tensor kernel (pointers in the kernel parameters, one launch per 64
// tensors, a grid-stride walk over the concatenation) against one per-tensor launch per tensor on
// copies: the same element functor, so the same bits. make(operands, n) builds one tensor's record
// from its K operands (param, grad, states; operands[k] null for an unused state).
template <typename Tensor, typename Make>
static void optimizer_many_case(const char* what, int sm, int K, Make make,
                                cudaError_t (*many)(const ManyArgs<Tensor>&, const LaunchContext&),
                                cudaError_t (*one)(const Tensor&, const LaunchContext&)) {
    std::vector<int64_t> sizes = {1, 7, 4097, 300, 2, 1025};
    for (int i = 0; i < 70; ++i) sizes.push_back(1 + (i * 37) % 129);  // more than one launch's 64
    std::vector<std::unique_ptr<HostBuffer<float>>> many_data, single_data;
    std::vector<Tensor> tensors;
    for (size_t t = 0; t < sizes.size(); ++t) {
        const int64_t n = sizes[t];
        float* ops[4] = {};
        for (int k = 0; k < K; ++k) {
            many_data.emplace_back(new HostBuffer<float>(n));
            single_data.emplace_back(new HostBuffer<float>(n));
            for (int64_t i = 0; i < n; ++i) {
                float x = k >= 2 ? uniform(0.0f, 0.01f) : uniform(-1.0f, 1.0f);  // states >= 0 (v, square_avg, sum)
                (*many_data.back())[i] = x;
                (*single_data.back())[i] = x;
            }
            ops[k] = many_data.back()->p;
        }
        tensors.push_back(make(ops, n));
    }
    SELFTEST_EXPECT(many(ManyArgs<Tensor>{tensors.data(), static_cast<int64_t>(tensors.size())}, ctx_with(sm)) == cudaSuccess,
                    "%s_many launch", what);
    for (size_t t = 0; t < sizes.size(); ++t) {
        float* ops[4] = {};
        for (int k = 0; k < K; ++k) ops[k] = single_data[K * t + k]->p;
        SELFTEST_EXPECT(one(make(ops, sizes[t]), ctx_with(sm)) == cudaSuccess, "%s launch", what);
        for (int k = 0; k < K; ++k)
            for (int64_t i = 0; i < sizes[t]; ++i)
                SELFTEST_EXPECT(selftest::same_bits((*many_data[K * t + k])[i], (*single_data[K * t + k])[i]),
                                "%s_many sm %d tensor %zu operand %d element %lld: %.9g, per-tensor %.9g", what, sm, t, k,
                                (long long)i, (*many_data[K * t + k])[i], (*single_data[K * t + k])[i]);
    }
}

static void test_optimizer_many() {
    for (int sm : {1, 3}) {
        const bool variant = sm == 3;  // the second pass takes the other branch of each option
        optimizer_many_case<AdamArgs>("adam_step", sm, 4, [&](float* const* o, int64_t n) {
            return AdamArgs{o[0], o[1], o[2], o[3], n, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.01f, variant, 7};
        }, cuda::adam_step_many_f32, cuda::adam_step_f32);
        optimizer_many_case<SgdArgs>("sgd_step", sm, 3, [&](float* const* o, int64_t n) {
            return SgdArgs{o[0], o[1], o[2], n, 0.05f, 0.9f, 0.0f, 0.01f, variant, false};
        }, cuda::sgd_step_many_f32, cuda::sgd_step_f32);
        optimizer_many_case<SgdArgs>("sgd_step (no momentum)", sm, 2, [&](float* const* o, int64_t n) {
            return SgdArgs{o[0], o[1], nullptr, n, 0.05f, 0.0f, 0.0f, 0.01f, false, variant};
        }, cuda::sgd_step_many_f32, cuda::sgd_step_f32);
        optimizer_many_case<RmspropArgs>("rmsprop_step", sm, variant ? 4 : 3, [&](float* const* o, int64_t n) {
            return RmspropArgs{o[0], o[1], o[2], variant ? o[3] : nullptr, n, 1e-2f, 0.99f, 1e-8f, 0.01f, variant ? 0.9f : 0.0f};
        }, cuda::rmsprop_step_many_f32, cuda::rmsprop_step_f32);
        optimizer_many_case<AdagradArgs>("adagrad_step", sm, 3, [&](float* const* o, int64_t n) {
            return AdagradArgs{o[0], o[1], o[2], n, 1e-2f, 1e-10f, variant ? 0.01f : 0.0f};
        }, cuda::adagrad_step_many_f32, cuda::adagrad_step_f32);
    }
}

int main(int argc, char** argv) {
    const std::string only = argc > 1 ? argv[1] : "";
    if (only.empty() || only == "fill") test_fill();
    if (only.empty() || only == "unary") test_unary();
    if (only.empty() || only == "binary") test_binary();
    if (only.empty() || only == "softmax") test_softmax();
    if (only.empty() || only == "reduce") test_reduce();
    if (only.empty() || only == "gemm") test_gemm();
    if (only.empty() || only == "linear") test_linear();
    if (only.empty() || only == "layout") test_layout();
    if (only.empty() || only == "gather") test_gather();
    if (only.empty() || only == "cast") test_cast();
    if (only.empty() || only == "recurrent") test_recurrent();
    if (only.empty() || only == "optimizer_many") test_optimizer_many();
    return selftest::check_tally().finish("all CUDA kernels match the references");
}
