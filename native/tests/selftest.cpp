// selftest.cpp: kernels_selftest, the native self-test of libkernels (run by CTest, and on the GPU
// machine under compute-sanitizer memcheck/racecheck, where no .NET exists).
//
// For every device it runs every kernel family (GEMM, unary and binary forward/backward, reductions,
// argmax/argmin, softmax, cross-entropy, dropout, clamp, SGD/Adam/AdamW/RMSprop/Adagrad steps; and, in
// selftest_cnn.cpp, convolution, pooling and batch normalization) through the public C API only and
// compares each result with a float64 reference computed here from the same float32 inputs (never with
// another backend).
// Shapes are chosen to break tiling (1x1x1, primes, 1000x1, 257x511x129, empty), every output buffer
// carries trailing sentinels (harness), unwritten outputs start as NaN so a skipped element shows, and
// inputs are read back to prove they were not written. Error paths go through the C API and must
// return the documented status, a message, and leave the library usable.
//
//   kernels_selftest [--device NAME]... [--quick] [--require cuda|opencl]... [--strict] [--only TEXT] [--verbose]
//
// Prints one line per failing case (FAIL) and per case a non-CPU backend does not implement yet
// (SKIP: it answered KN_ERROR_NOT_SUPPORTED; --strict makes that a failure), per-device counts, and
// finally "selftest: N passed, N failed, N skipped"; exits 0 only when nothing failed.
#include "selftest_harness.h"
#include "selftest_cnn.h"
#include "selftest_layout.h"
#include "selftest_gather.h"
#include "selftest_cast.h"
#include "selftest_recurrent.h"
#include "selftest_hostile.h"

#include <array>
#include <functional>
#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__) || defined(_M_IX86)
#include <immintrin.h>
#define SELFTEST_X86 1
#else
#define SELFTEST_X86 0
#endif
#include <set>
#include <stdexcept>
#include <memory>

using namespace selftest;

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr float kNaNf = std::numeric_limits<float>::quiet_NaN();

struct Options {
    std::vector<std::string> devices;  // empty: all
    bool quick = false;
    bool verbose = false;
    bool strict = false;
    std::string only;  // run only the cases whose name contains this
    std::vector<kn_device_kind> required;
};

const char* flag(bool b) { return b ? "T" : "N"; }

// =================================================================================================
// GEMM
// =================================================================================================
//
// Tolerance: the classical forward error bound of a length-k dot product in any summation order,
// |fl(sum) - sum| <= gamma_k * sum |a_p b_p| with gamma_k ~ k * eps, plus one rounding each for the
// alpha and beta terms:  |err| <= (k + 3) * eps * (|alpha| * sum_p |a_ip b_pj| + |beta * c_ij|).
// It holds for FMA, blocked and tree orders alike, so it never fails a correct float32 kernel, while
// an indexing or tiling bug (a missing or doubled term) is off by O(|a b|), far outside it. A kernel
// that silently used TF32/bf16 would fail it, which is intended: this is an f32 GEMM.

struct GemmCase {
    int64_t m, n, k;
    bool ta = false, tb = false;
    float alpha = 1.0f, beta = 0.0f;
    int64_t pad_a = 0, pad_b = 0, pad_c = 0;  // leading dimension minus the row length
    int64_t batch = 1;
    bool share_a = false, share_b = false;    // stride 0: the same A (B) for every batch
    int64_t gap = 0;                          // extra elements between batches
};

void gemm_case(Context& cx, const GemmCase& g) {
    char label[256];
    std::snprintf(label, sizeof label,
                  "gemm %s%s m=%" PRId64 " n=%" PRId64 " k=%" PRId64 " alpha=%g beta=%g pad=%" PRId64 "/%" PRId64
                  "/%" PRId64 " batch=%" PRId64 "%s%s",
                  flag(g.ta), flag(g.tb), g.m, g.n, g.k, g.alpha, g.beta, g.pad_a, g.pad_b, g.pad_c, g.batch,
                  g.share_a ? " stride_a=0" : "", g.share_b ? " stride_b=0" : "");
    std::string name = label;
    cx.report.run(name, [&] {
        Problems problems;
        Rng rng(seed_of(name));
        const int64_t a_rows = g.ta ? g.k : g.m, a_cols = g.ta ? g.m : g.k;
        const int64_t b_rows = g.tb ? g.n : g.k, b_cols = g.tb ? g.k : g.n;
        const int64_t lda = std::max<int64_t>(1, a_cols) + g.pad_a;
        const int64_t ldb = std::max<int64_t>(1, b_cols) + g.pad_b;
        const int64_t ldc = std::max<int64_t>(1, g.n) + g.pad_c;
        const int64_t a_mat = a_rows * lda, b_mat = b_rows * ldb, c_mat = g.m * ldc;
        const int64_t stride_a = g.share_a ? 0 : a_mat + g.gap;
        const int64_t stride_b = g.share_b ? 0 : b_mat + g.gap;
        const int64_t stride_c = c_mat + g.gap;
        auto span = [&](int64_t mat, int64_t stride) {
            return g.batch <= 1 || stride == 0 ? mat : (g.batch - 1) * stride + mat;
        };

        // A and B: values in [-1, 1]; padding columns and batch gaps hold NaN, so a kernel that
        // multiplies an element outside the logical matrix poisons its result.
        auto make_operand = [&](int64_t rows, int64_t cols, int64_t ld, int64_t mat, int64_t stride) {
            std::vector<float> v(static_cast<size_t>(span(mat, stride)), kNaNf);
            int64_t copies = stride == 0 ? 1 : g.batch;
            for (int64_t bt = 0; bt < copies; ++bt)
                for (int64_t r = 0; r < rows; ++r)
                    for (int64_t col = 0; col < cols; ++col) v[bt * stride + r * ld + col] = rng.uniform(-1, 1);
            return v;
        };
        std::vector<float> a = make_operand(a_rows, a_cols, lda, a_mat, stride_a);
        std::vector<float> b = make_operand(b_rows, b_cols, ldb, b_mat, stride_b);
        // C: logical elements random (NaN when beta == 0: they must not leak); padding and gaps hold
        // the sentinel and must stay untouched.
        std::vector<float> c(static_cast<size_t>(span(c_mat, stride_c)), sentinel<float>());
        std::vector<char> logical(c.size(), 0);
        for (int64_t bt = 0; bt < g.batch; ++bt)
            for (int64_t i = 0; i < g.m; ++i)
                for (int64_t j = 0; j < g.n; ++j) {
                    int64_t p = bt * stride_c + i * ldc + j;
                    c[p] = g.beta == 0.0f ? kNaNf : rng.uniform(-1, 1);
                    logical[p] = 1;
                }

        DeviceArray<float> A(cx.device, a), B(cx.device, b), C(cx.device, c);
        expect_ok(kn_gemm_f32(g.ta ? KN_TRANSPOSE : KN_NO_TRANSPOSE, g.tb ? KN_TRANSPOSE : KN_NO_TRANSPOSE, g.m, g.n,
                              g.k, g.alpha, A.get(), lda, stride_a, B.get(), ldb, stride_b, g.beta, C.get(), ldc,
                              stride_c, g.batch),
                  "kn_gemm_f32");
        std::vector<float> got = C.read();

        std::vector<int64_t> pos;
        std::vector<double> want, tol;
        for (int64_t bt = 0; bt < g.batch; ++bt) {
            const float* ab = a.data() + bt * stride_a;
            const float* bb = b.data() + bt * stride_b;
            for (int64_t i = 0; i < g.m; ++i)
                for (int64_t j = 0; j < g.n; ++j) {
                    double s = 0, s_abs = 0;
                    for (int64_t p = 0; p < g.k; ++p) {
                        double av = g.ta ? ab[p * lda + i] : ab[i * lda + p];
                        double bv = g.tb ? bb[j * ldb + p] : bb[p * ldb + j];
                        s += av * bv;
                        s_abs += std::fabs(av * bv);
                    }
                    int64_t q = bt * stride_c + i * ldc + j;
                    double c0 = g.beta == 0.0f ? 0.0 : static_cast<double>(c[q]);
                    pos.push_back(q);
                    want.push_back(g.alpha * s + g.beta * c0);
                    tol.push_back((g.k + 3) * kEps * (std::fabs(g.alpha) * s_abs + std::fabs(g.beta * c0)));
                }
        }
        problems.add(compare(static_cast<int64_t>(pos.size()), [&](int64_t i) { return got[pos[i]]; },
                             [&](int64_t i) { return want[i]; }, [&](int64_t i) { return tol[i]; })
                         .describe("C"));
        for (size_t p = 0; p < c.size(); ++p) {
            if (!logical[p] && !same_bits(got[p], c[p])) {
                problems.add("C element " + std::to_string(p) + " outside the logical matrices (ldc padding or batch gap) changed to " + fmt(got[p]));
                break;
            }
        }
        problems.add(guard_violation(got, C, "C"));
        problems.add(input_violation(A, "A"));
        problems.add(input_violation(B, "B"));
        return problems;
    });
}

void test_gemm(Context& cx) {
    struct Shape { int64_t m, n, k; };
    std::vector<Shape> shapes = {{1, 1, 1},   {7, 7, 7},    {33, 33, 33}, {7, 33, 127}, {127, 7, 33},
                                 {33, 127, 7}, {65, 129, 63}, {17, 250, 9}, {100, 1, 7},  {1, 100, 7},
                                 {1, 1, 257},  {64, 64, 64}};
    if (!cx.quick) {
        shapes.push_back({1000, 1, 16});
        shapes.push_back({1, 1000, 16});
        shapes.push_back({1, 1, 1000});
        shapes.push_back({128, 128, 128});
        shapes.push_back({257, 511, 129});
    }
    // Each shape runs all four transposes; the parameter set rotates with the shape index so every
    // transpose meets every (alpha, beta, padding) combination across the shape list.
    struct Params { float alpha, beta; int64_t pad_a, pad_b, pad_c; };
    const Params params[4] = {{1.0f, 0.0f, 0, 0, 0},    // plain C = A B, NaN-filled C must not leak
                              {0.5f, 0.0f, 3, 5, 7},    // beta 0 with padded leading dimensions
                              {-1.5f, 0.25f, 1, 2, 3},  // general alpha/beta, padded
                              {1.0f, 1.0f, 0, 0, 0}};   // accumulate into C
    for (size_t s = 0; s < shapes.size(); ++s)
        for (int t = 0; t < 4; ++t) {
            const Params& p = params[(s + t) % 4];
            GemmCase g{shapes[s].m, shapes[s].n, shapes[s].k};
            g.ta = t & 1;
            g.tb = t & 2;
            g.alpha = p.alpha;
            g.beta = p.beta;
            g.pad_a = p.pad_a;
            g.pad_b = p.pad_b;
            g.pad_c = p.pad_c;
            gemm_case(cx, g);
        }
    if (!cx.quick) {
        GemmCase wide{1000, 1000, 1};  // k = 1: an outer product, C much larger than A and B
        wide.beta = 0.5f;
        gemm_case(cx, wide);
    }

    // k = 0: C = beta * C (and 0 when beta = 0, whatever C held).
    for (float beta : {0.0f, 0.5f}) {
        GemmCase g{5, 6, 0};
        g.beta = beta;
        gemm_case(cx, g);
        g.ta = g.tb = true;
        gemm_case(cx, g);
    }
    // alpha = 0: only the beta term remains.
    {
        GemmCase g{9, 4, 5};
        g.alpha = 0.0f;
        g.beta = -2.0f;
        gemm_case(cx, g);
    }
    // Empty: m = 0, n = 0 or no batches are no-ops (C untouched).
    gemm_case(cx, GemmCase{0, 5, 3});
    gemm_case(cx, GemmCase{4, 0, 3});
    {
        GemmCase g{3, 3, 3};
        g.batch = 0;
        gemm_case(cx, g);
    }

    // Strided batches: separate matrices with gaps between them, and stride 0 for A or for B.
    for (int t = 0; t < 4; ++t) {
        GemmCase g{7, 9, 5};
        g.ta = t & 1;
        g.tb = t & 2;
        g.batch = 3;
        g.gap = 3;
        g.beta = t == 3 ? 0.5f : 0.0f;
        g.pad_a = t;
        gemm_case(cx, g);
    }
    {
        GemmCase g{33, 17, 12};
        g.batch = 4;
        g.share_a = true;
        gemm_case(cx, g);
        g.ta = true;
        g.beta = 1.0f;
        gemm_case(cx, g);
    }
    {
        GemmCase g{17, 33, 12};
        g.batch = 4;
        g.share_b = true;
        g.tb = true;
        gemm_case(cx, g);
        g.ta = true;
        g.gap = 2;
        gemm_case(cx, g);
    }
    {
        GemmCase g{1, 1, 1};
        g.batch = 5;
        gemm_case(cx, g);
    }
    if (!cx.quick) {
        GemmCase g{65, 33, 31};
        g.batch = 7;
        g.gap = 1;
        g.alpha = 2.0f;
        g.beta = -1.0f;
        gemm_case(cx, g);
    }
}

// =================================================================================================
// Unary
// =================================================================================================
//
// Tolerances, relative with an absolute floor:
//   exact class (one to four correctly rounded float operations, or OpenCL's 3-ulp sqrt and 2.5-ulp
//   divide): |err| <= 1e-6 |ref|  (about 8 ulp);
//   transcendental class (exp/log/tanh/erf/pow/sin in float, up to 16 ulp in OpenCL 1.2, and the
//   cancellation in e^x - 1, 1 - y^2, 1 + erf near their zeros): |err| <= 1e-5 |ref| + 1e-6.

enum class Domain {
    Any,         // [-4, 4], |x| >= 1e-3 (keeps ABS/RELU/ELU away from their kink at 0)
    Positive,    // [0.05, 20], log-uniform (LOG, SQRT, RSQRT)
    NonZero,     // +-[0.1, 10] (RECIPROCAL)
    Saturating,  // [-30, 30] plus +-50, +-88, +-100 (TANH, SIGMOID, SOFTPLUS saturate without overflow)
    Exponent,    // [-20, 20] plus +-80 (EXP stays finite in float)
    Trig,        // [-8, 8]
    PowBase,     // [0.1, 4] (x^alpha for any real alpha)
};

struct UnaryInfo {
    kn_unary_op op;
    const char* name;
    Domain domain;
    std::vector<float> alphas;  // the parameters tested ({0} where the op has none)
    bool forward_transcendental, backward_transcendental;
};

const std::vector<UnaryInfo>& unary_ops() {
    static const std::vector<UnaryInfo> ops = {
        {KN_UNARY_NEG, "NEG", Domain::Any, {0.0f}, false, false},
        {KN_UNARY_ABS, "ABS", Domain::Any, {0.0f}, false, false},
        {KN_UNARY_EXP, "EXP", Domain::Exponent, {0.0f}, true, false},
        {KN_UNARY_LOG, "LOG", Domain::Positive, {0.0f}, true, false},
        {KN_UNARY_SQRT, "SQRT", Domain::Positive, {0.0f}, false, false},
        {KN_UNARY_RSQRT, "RSQRT", Domain::Positive, {0.0f}, false, false},
        {KN_UNARY_SQUARE, "SQUARE", Domain::Any, {0.0f}, false, false},
        {KN_UNARY_RECIPROCAL, "RECIPROCAL", Domain::NonZero, {0.0f}, false, false},
        {KN_UNARY_TANH, "TANH", Domain::Saturating, {0.0f}, true, true},
        {KN_UNARY_SIGMOID, "SIGMOID", Domain::Saturating, {0.0f}, true, true},
        {KN_UNARY_RELU, "RELU", Domain::Any, {0.0f}, false, false},
        {KN_UNARY_LEAKY_RELU, "LEAKY_RELU", Domain::Any, {0.01f, 0.2f}, false, false},
        {KN_UNARY_GELU, "GELU", Domain::Any, {0.0f}, true, true},
        {KN_UNARY_ELU, "ELU", Domain::Any, {1.0f, 0.3f}, true, true},
        {KN_UNARY_SOFTPLUS, "SOFTPLUS", Domain::Saturating, {0.0f}, true, true},
        {KN_UNARY_SIN, "SIN", Domain::Trig, {0.0f}, true, true},
        {KN_UNARY_COS, "COS", Domain::Trig, {0.0f}, true, true},
        {KN_UNARY_SCALE, "SCALE", Domain::Any, {-2.5f, 0.5f}, false, false},
        {KN_UNARY_ADD_SCALAR, "ADD_SCALAR", Domain::Any, {3.25f, -0.75f}, false, false},
        {KN_UNARY_POW_SCALAR, "POW_SCALAR", Domain::PowBase, {2.0f, 3.0f, 0.5f, -1.5f}, true, true},
    };
    return ops;
}

// The library's own rule (kn_unary_backward_uses_output), not a copy of its list.
bool backward_uses_output(kn_unary_op op) {
    int32_t uses_output = -1;
    if (kn_unary_backward_uses_output(op, &uses_output) != KN_OK)
        throw std::runtime_error(std::string("kn_unary_backward_uses_output: ") + kn_last_error());
    return uses_output != 0;
}

std::vector<float> draw(Rng& rng, Domain d, int64_t n) {
    std::vector<float> v(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) {
        float x = 0;
        switch (d) {
            case Domain::Any:
                do x = rng.uniform(-4, 4); while (std::fabs(x) < 1e-3f);
                break;
            case Domain::Positive: x = static_cast<float>(std::exp(rng.uniform(std::log(0.05), std::log(20.0)))); break;
            case Domain::NonZero:
                x = static_cast<float>(std::exp(rng.uniform(std::log(0.1), std::log(10.0))));
                if (rng.next() & 1) x = -x;
                break;
            case Domain::Saturating: {
                static const float extremes[] = {50.0f, -50.0f, 88.0f, -88.0f, 100.0f, -100.0f};
                x = i % 7 == 3 ? extremes[rng.below(6)] : rng.uniform(-30, 30);
                break;
            }
            case Domain::Exponent: x = i % 11 == 5 ? (rng.next() & 1 ? 80.0f : -80.0f) : rng.uniform(-20, 20); break;
            case Domain::Trig: x = rng.uniform(-8, 8); break;
            case Domain::PowBase: x = rng.uniform(0.1, 4); break;
        }
        v[i] = x;
    }
    return v;
}

double sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }

double unary_reference(kn_unary_op op, double a, double x) {
    switch (op) {
        case KN_UNARY_NEG: return -x;
        case KN_UNARY_ABS: return std::fabs(x);
        case KN_UNARY_EXP: return std::exp(x);
        case KN_UNARY_LOG: return std::log(x);
        case KN_UNARY_SQRT: return std::sqrt(x);
        case KN_UNARY_RSQRT: return 1.0 / std::sqrt(x);
        case KN_UNARY_SQUARE: return x * x;
        case KN_UNARY_RECIPROCAL: return 1.0 / x;
        case KN_UNARY_TANH: return std::tanh(x);
        case KN_UNARY_SIGMOID: return sigmoid(x);
        case KN_UNARY_RELU: return x > 0 ? x : 0.0;
        case KN_UNARY_LEAKY_RELU: return x > 0 ? x : a * x;
        case KN_UNARY_GELU: return 0.5 * x * std::erfc(-x / std::sqrt(2.0));  // x * Phi(x)
        case KN_UNARY_ELU: return x > 0 ? x : a * std::expm1(x);
        case KN_UNARY_SOFTPLUS: return x > 0 ? x + std::log1p(std::exp(-x)) : std::log1p(std::exp(x));
        case KN_UNARY_SIN: return std::sin(x);
        case KN_UNARY_COS: return std::cos(x);
        case KN_UNARY_SCALE: return a * x;
        case KN_UNARY_ADD_SCALAR: return x + a;
        case KN_UNARY_POW_SCALAR: return std::pow(x, a);
    }
    return kNaN;
}

// f'(x), from the forward output y for the ops that kernels.h says use it (y is the float32 value the
// kernel is given), from x otherwise.
double unary_derivative(kn_unary_op op, double a, double x, double y) {
    const double pi = 3.14159265358979323846;
    switch (op) {
        case KN_UNARY_NEG: return -1.0;
        case KN_UNARY_ABS: return x > 0 ? 1.0 : -1.0;
        case KN_UNARY_EXP: return y;
        case KN_UNARY_LOG: return 1.0 / x;
        case KN_UNARY_SQRT: return 0.5 / y;
        case KN_UNARY_RSQRT: return -0.5 * y * y * y;  // d x^-1/2 = -1/2 x^-3/2
        case KN_UNARY_SQUARE: return 2.0 * x;
        case KN_UNARY_RECIPROCAL: return -y * y;
        case KN_UNARY_TANH: return 1.0 - y * y;
        case KN_UNARY_SIGMOID: return y * (1.0 - y);
        case KN_UNARY_RELU: return x > 0 ? 1.0 : 0.0;
        case KN_UNARY_LEAKY_RELU: return x > 0 ? 1.0 : a;
        case KN_UNARY_GELU:  // Phi(x) + x phi(x)
            return 0.5 * std::erfc(-x / std::sqrt(2.0)) + x * std::exp(-0.5 * x * x) / std::sqrt(2.0 * pi);
        case KN_UNARY_ELU: return x > 0 ? 1.0 : a * std::exp(x);
        case KN_UNARY_SOFTPLUS: return sigmoid(x);
        case KN_UNARY_SIN: return std::cos(x);
        case KN_UNARY_COS: return -std::sin(x);
        case KN_UNARY_SCALE: return a;
        case KN_UNARY_ADD_SCALAR: return 1.0;
        case KN_UNARY_POW_SCALAR: return a * std::pow(x, a - 1.0);
    }
    return kNaN;
}

double elementwise_tol(bool transcendental, double want) {
    return transcendental ? 1e-5 * std::fabs(want) + 1e-6 : 1e-6 * std::fabs(want);
}

void unary_forward_case(Context& cx, const UnaryInfo& u, float alpha, int64_t n, bool in_place) {
    std::string name = std::string("unary ") + u.name + " alpha=" + fmt(alpha) + " n=" + std::to_string(n) +
                       (in_place ? " in-place" : "");
    cx.report.run(name, [&] {
        Problems problems;
        Rng rng(seed_of(name));
        std::vector<float> x = draw(rng, u.domain, n);
        DeviceArray<float> X(cx.device, x);
        DeviceArray<float> Y(cx.device, nan_filled(in_place ? 0 : n));
        kn_buffer* out = in_place ? X.get() : Y.get();
        expect_ok(kn_unary_f32(u.op, alpha, X.get(), out, n), "kn_unary_f32");
        std::vector<float> got = in_place ? X.read() : Y.read();
        problems.add(compare(n, [&](int64_t i) { return got[i]; },
                             [&](int64_t i) { return unary_reference(u.op, alpha, x[i]); },
                             [&](int64_t i) {
                                 return elementwise_tol(u.forward_transcendental, unary_reference(u.op, alpha, x[i]));
                             })
                         .describe("y"));
        problems.add(guard_violation(got, in_place ? X : Y, "y"));
        if (!in_place) problems.add(input_violation(X, "x"));
        return problems;
    });
}

void unary_backward_case(Context& cx, const UnaryInfo& u, float alpha, int64_t n, bool in_place) {
    std::string name = std::string("unary_backward ") + u.name + " alpha=" + fmt(alpha) + " n=" +
                       std::to_string(n) + (in_place ? " dx=dy" : "");
    cx.report.run(name, [&] {
        Problems problems;
        Rng rng(seed_of(name));
        const bool uses_y = backward_uses_output(u.op);
        std::vector<float> x = draw(rng, u.domain, n);
        std::vector<float> y(x.size());
        for (size_t i = 0; i < x.size(); ++i) y[i] = static_cast<float>(unary_reference(u.op, alpha, x[i]));
        std::vector<float> dy = uniform(rng, n, -1, 1);
        // Only the operand the derivative needs is passed; the other is NULL, as kernels.h allows.
        DeviceArray<float> X(cx.device, uses_y ? std::vector<float>{} : x);
        DeviceArray<float> Y(cx.device, uses_y ? y : std::vector<float>{});
        DeviceArray<float> DY(cx.device, dy);
        DeviceArray<float> DX(cx.device, nan_filled(in_place ? 0 : n));
        kn_buffer* dx = in_place ? DY.get() : DX.get();
        expect_ok(kn_unary_backward_f32(u.op, alpha, uses_y ? nullptr : X.get(), uses_y ? Y.get() : nullptr, DY.get(),
                                        dx, n),
                  "kn_unary_backward_f32");
        std::vector<float> got = in_place ? DY.read() : DX.read();
        auto want = [&](int64_t i) { return dy[i] * unary_derivative(u.op, alpha, x[i], y[i]); };
        problems.add(compare(n, [&](int64_t i) { return got[i]; }, want,
                             [&](int64_t i) { return elementwise_tol(u.backward_transcendental, want(i)); })
                         .describe("dx"));
        problems.add(guard_violation(got, in_place ? DY : DX, "dx"));
        problems.add(input_violation(uses_y ? Y : X, uses_y ? "y" : "x"));
        if (!in_place) problems.add(input_violation(DY, "dy"));
        return problems;
    });
}

void test_unary(Context& cx) {
    std::vector<int64_t> sizes = {1, 7, 33, 1000};
    if (!cx.quick) sizes.push_back(65539);
    for (const UnaryInfo& u : unary_ops())
        for (float alpha : u.alphas) {
            for (int64_t n : sizes) {
                unary_forward_case(cx, u, alpha, n, false);
                unary_backward_case(cx, u, alpha, n, false);
            }
        }
    for (const UnaryInfo& u : unary_ops()) {
        unary_forward_case(cx, u, u.alphas[0], 257, true);   // y = x
        unary_backward_case(cx, u, u.alphas[0], 257, true);  // dx = dy
    }
    // Outputs past 32 MB, the CPU backend's threshold for streaming (non-temporal) stores
    // (kStreamingBytes in native/kernels/cpu/span_kernels.h): an odd length, so the chunks end in a
    // partial line, out of place and in place.
    if (!cx.quick) {
        const int64_t big = (int64_t{32} << 20) / 4 + 4099;
        for (const UnaryInfo& u : unary_ops())
            if (u.op == KN_UNARY_TANH || u.op == KN_UNARY_EXP) {
                unary_forward_case(cx, u, u.alphas[0], big, false);
                unary_forward_case(cx, u, u.alphas[0], big, true);
            }
    }
    // tanh's special values: +-0 keep their sign (odd function; the CPU's former expm1-based tanh
    // turned +0 into -0), +-inf give +-1, NaN stays NaN; 40 of them so the SIMD loops see them.
    cx.report.run("unary TANH signed zeros, infinities, NaN", [&] {
        Problems problems;
        const float inf = std::numeric_limits<float>::infinity();
        const float specials[] = {0.0f, -0.0f, inf, -inf, std::numeric_limits<float>::quiet_NaN()};
        std::vector<float> x;
        for (int i = 0; i < 40; ++i) x.push_back(specials[i % 5]);
        DeviceArray<float> X(cx.device, x), Y(cx.device, nan_filled(40));
        expect_ok(kn_unary_f32(KN_UNARY_TANH, 0.0f, X.get(), Y.get(), 40), "kn_unary_f32");
        const std::vector<float> got = Y.read();
        kn_device_kind kind = KN_DEVICE_CPU;
        expect_ok(kn_device_kind_of(cx.device, &kind), "kn_device_kind_of");
        const bool cpu = kind == KN_DEVICE_CPU;
        for (int i = 0; i < 40; ++i) {
            const float v = x[i], want = std::isnan(v) ? v : std::isinf(v) ? (v > 0 ? 1.0f : -1.0f) : v;
            // +-1 for +-inf: exactly on the CPU (its rational fit is clamped where it reaches 1),
            // within the transcendental tolerance elsewhere (OpenCL's tanh(inf) is 1 - 1 ulp on
            // PoCL); the rest exactly.
            const bool exact = !std::isinf(v) || cpu;
            const bool same = std::isnan(want) ? std::isnan(got[i])
                              : exact ? got[i] == want && std::signbit(got[i]) == std::signbit(want)
                                      : std::fabs(got[i] - want) <= elementwise_tol(true, want);
            if (!same) problems.add("tanh(" + fmt(v) + ") = " + fmt(got[i]) + ", want " + fmt(want));
        }
        return problems;
    });
    // n = 0: a no-op that must succeed and touch nothing.
    unary_forward_case(cx, unary_ops()[2], 0.0f, 0, false);
    unary_backward_case(cx, unary_ops()[2], 0.0f, 0, false);
    unary_backward_case(cx, unary_ops()[3], 0.0f, 0, false);
}

// =================================================================================================
// Linear (GEMM + bias + activation epilogue) and its backward
// =================================================================================================

// The activations a dense layer fuses, with the parameter each is tested at; SCALE 1 is the identity.
struct LinearActivation {
    kn_unary_op op;
    float alpha;
    const char* name;
    bool transcendental;
};

const std::vector<LinearActivation>& linear_activations() {
    static const std::vector<LinearActivation> acts = {
        {KN_UNARY_SCALE, 1.0f, "identity", false}, {KN_UNARY_RELU, 0.0f, "relu", false},
        {KN_UNARY_LEAKY_RELU, 0.1f, "leaky_relu", false}, {KN_UNARY_SIGMOID, 0.0f, "sigmoid", true},
        {KN_UNARY_TANH, 0.0f, "tanh", true}, {KN_UNARY_GELU, 0.0f, "gelu", true}};
    return acts;
}

void linear_case(Context& cx, const LinearActivation& act, int64_t m, int64_t n, int64_t k, bool trans_w, bool bias) {
    std::string name = std::string("linear ") + act.name + " m=" + std::to_string(m) + " n=" + std::to_string(n) +
                       " k=" + std::to_string(k) + (trans_w ? " w^T" : "") + (bias ? " bias" : " no-bias");
    cx.report.run(name, [&] {
        Problems problems;
        Rng rng(seed_of(name));
        std::vector<float> x = uniform(rng, m * k, -1, 1), w = uniform(rng, k * n, -1, 1), b = uniform(rng, n, -1, 1);
        DeviceArray<float> X(cx.device, x), W(cx.device, w), B(cx.device, bias ? b : std::vector<float>{});
        DeviceArray<float> Y(cx.device, nan_filled(m * n));
        expect_ok(kn_linear_f32(trans_w ? KN_TRANSPOSE : KN_NO_TRANSPOSE, m, n, k, X.get(), W.get(),
                                bias ? B.get() : nullptr, act.op, act.alpha, Y.get()),
                  "kn_linear_f32");
        std::vector<float> got = Y.read();
        std::vector<double> want(static_cast<size_t>(m * n)), tol(want.size());
        for (int64_t i = 0; i < m; ++i)
            for (int64_t j = 0; j < n; ++j) {
                double z = bias ? b[j] : 0.0, z_abs = std::fabs(z);
                for (int64_t p = 0; p < k; ++p) {
                    double t = static_cast<double>(x[i * k + p]) * (trans_w ? w[j * k + p] : w[p * n + j]);
                    z += t;
                    z_abs += std::fabs(t);
                }
                const double y = unary_reference(act.op, act.alpha, z);
                // The GEMM's rounding (as test_gemm states it) carried through the activation's slope
                // (at most ~1.13, GELU's), plus the activation's own rounding.
                const double slope = std::max(1.0, std::fabs(unary_derivative(act.op, act.alpha, z, y)));
                want[i * n + j] = y;
                tol[i * n + j] = slope * (k + 4) * kEps * z_abs + elementwise_tol(act.transcendental, y) + kFlushFloor;
            }
        problems.add(compare(m * n, [&](int64_t i) { return got[i]; }, [&](int64_t i) { return want[i]; },
                             [&](int64_t i) { return tol[i]; })
                         .describe("y"));
        problems.add(guard_violation(got, Y, "y"));
        problems.add(input_violation(X, "x"));
        problems.add(input_violation(W, "w"));
        if (bias) problems.add(input_violation(B, "bias"));
        return problems;
    });
}

void linear_backward_case(Context& cx, const LinearActivation& act, int64_t m, int64_t n, bool dbias, bool in_place) {
    std::string name = std::string("linear_backward ") + act.name + " m=" + std::to_string(m) + " n=" +
                       std::to_string(n) + (dbias ? " dbias" : " no-dbias") + (in_place ? " dz=dy" : "");
    cx.report.run(name, [&] {
        Problems problems;
        Rng rng(seed_of(name));
        const bool uses_y = backward_uses_output(act.op);
        std::vector<float> x = uniform(rng, m * n, -3, 3), dy = uniform(rng, m * n, -1, 1);
        std::vector<float> y(x.size());
        for (size_t i = 0; i < x.size(); ++i) y[i] = static_cast<float>(unary_reference(act.op, act.alpha, x[i]));
        DeviceArray<float> X(cx.device, uses_y ? std::vector<float>{} : x), Y(cx.device, uses_y ? y : std::vector<float>{});
        DeviceArray<float> DY(cx.device, dy), DZ(cx.device, nan_filled(in_place ? 0 : m * n));
        DeviceArray<float> DB(cx.device, nan_filled(dbias ? n : 0));
        kn_buffer* dz = in_place ? DY.get() : DZ.get();
        expect_ok(kn_linear_backward_f32(act.op, act.alpha, m, n, uses_y ? nullptr : X.get(), uses_y ? Y.get() : nullptr,
                                         DY.get(), dz, dbias ? DB.get() : nullptr),
                  "kn_linear_backward_f32");
        std::vector<float> got = in_place ? DY.read() : DZ.read();
        auto want = [&](int64_t i) { return dy[i] * unary_derivative(act.op, act.alpha, x[i], y[i]); };
        problems.add(compare(m * n, [&](int64_t i) { return got[i]; }, want,
                             [&](int64_t i) { return elementwise_tol(act.transcendental, want(i)) + kFlushFloor; })
                         .describe("dz"));
        problems.add(guard_violation(got, in_place ? DY : DZ, "dz"));
        if (dbias) {
            std::vector<float> gb = DB.read();
            std::vector<double> sum(static_cast<size_t>(n), 0.0), sum_abs(static_cast<size_t>(n), 0.0);
            for (int64_t i = 0; i < m; ++i)
                for (int64_t j = 0; j < n; ++j) {
                    sum[j] += want(i * n + j);
                    sum_abs[j] += std::fabs(want(i * n + j));
                }
            // Each term carries dz's own tolerance; the summation adds ~log2(m) roundings (pairwise)
            // or m of them (the GPUs' sequential blocks): m * eps bounds both.
            problems.add(compare(n, [&](int64_t j) { return gb[j]; }, [&](int64_t j) { return sum[j]; },
                                 [&](int64_t j) {
                                     return (m + 2) * kEps * sum_abs[j] +
                                            (act.transcendental ? 1e-5 : 1e-6) * sum_abs[j] + kFlushFloor;
                                 })
                             .describe("dbias"));
            problems.add(guard_violation(gb, DB, "dbias"));
        }
        problems.add(input_violation(uses_y ? Y : X, uses_y ? "y" : "x"));
        if (!in_place) problems.add(input_violation(DY, "dy"));
        return problems;
    });
}

void test_linear(Context& cx) {
    struct Shape { int64_t m, n, k; };
    // 1, primes, non-multiples of every micro-tile (14 x 32, 6 x 16, 4 x 8), k = 0, n = 1 (the GEMV
    // path), and sizes past the threading threshold (1M MACs) with rectangles split between threads.
    std::vector<Shape> shapes = {{1, 1, 1}, {1, 7, 5}, {13, 1, 17}, {7, 3, 0}, {15, 33, 29}, {29, 37, 131}};
    if (!cx.quick) {
        shapes.push_back({131, 300, 97});
        shapes.push_back({128, 10, 256});
        shapes.push_back({61, 517, 1031});  // k past one 1024-deep slice: the epilogue after the last
    }
    for (const LinearActivation& act : linear_activations())
        for (const Shape& s : shapes) {
            linear_case(cx, act, s.m, s.n, s.k, false, true);
            if (s.k > 0 && s.m > 1) linear_case(cx, act, s.m, s.n, s.k, true, false);
        }
    // No bias and identity: the plain GEMM through this entry point.
    linear_case(cx, linear_activations()[0], 29, 37, 131, false, false);
    struct Rows { int64_t m, n; };
    std::vector<Rows> sizes = {{1, 1}, {7, 3}, {13, 257}, {33, 10}};
    if (!cx.quick) {
        sizes.push_back({300, 131});   // 39k elements: two row groups on two threads
        sizes.push_back({129, 1031});  // columns past one 256-wide block
    }
    for (const LinearActivation& act : linear_activations())
        for (const Rows& r : sizes) {
            linear_backward_case(cx, act, r.m, r.n, true, false);
            linear_backward_case(cx, act, r.m, r.n, true, true);
            if (r.m > 1) linear_backward_case(cx, act, r.m, r.n, false, false);
        }
    linear_backward_case(cx, linear_activations()[1], 0, 5, true, false);  // no rows: dbias = 0

    auto error_case = [&](const std::string& what, const std::function<std::string()>& body) {
        cx.report.run("linear error: " + what, [&] {
            Problems p;
            p.add(body());
            return p;
        });
    };
    // Buffers of 64 and 3 floats (each plus kGuard): the 3-float one is too small for 20 or more.
    Rng rng(seed_of("linear errors"));
    DeviceArray<float> a(cx.device, uniform(rng, 64, -1, 1)), b(cx.device, uniform(rng, 64, -1, 1));
    DeviceArray<float> c(cx.device, nan_filled(64)), small(cx.device, uniform(rng, 3, -1, 1));
    error_case("w too small names the shapes", [&] {
        return expect_error(cx, kn_linear_f32(KN_NO_TRANSPOSE, 4, 5, 6, a.get(), small.get(), nullptr, KN_UNARY_RELU,
                                              0.0f, c.get()),
                            KN_ERROR_SHAPE_MISMATCH, {"w", "[6, 5]"});
    });
    error_case("bias too short", [&] {
        return expect_error(cx, kn_linear_f32(KN_NO_TRANSPOSE, 2, 30, 2, a.get(), b.get(), small.get(), KN_UNARY_RELU,
                                              0.0f, c.get()),
                            KN_ERROR_SHAPE_MISMATCH, {"bias"});
    });
    error_case("y aliasing x", [&] {
        return expect_error(cx, kn_linear_f32(KN_NO_TRANSPOSE, 2, 2, 2, a.get(), b.get(), nullptr, KN_UNARY_RELU, 0.0f,
                                              a.get()),
                            KN_ERROR_INVALID_ARGUMENT, {"y"});
    });
    error_case("unknown activation", [&] {
        return expect_error(cx, kn_linear_f32(KN_NO_TRANSPOSE, 2, 2, 2, a.get(), b.get(), nullptr,
                                              static_cast<kn_unary_op>(999), 0.0f, c.get()),
                            KN_ERROR_INVALID_ARGUMENT, {"activation"});
    });
    error_case("backward missing x for GELU", [&] {
        return expect_error(cx, kn_linear_backward_f32(KN_UNARY_GELU, 0.0f, 2, 2, nullptr, a.get(), b.get(), c.get(),
                                                       nullptr),
                            KN_ERROR_INVALID_ARGUMENT, {"pre-activation"});
    });
    error_case("backward dbias too short", [&] {
        return expect_error(cx, kn_linear_backward_f32(KN_UNARY_RELU, 0.0f, 2, 30, a.get(), nullptr, b.get(), c.get(),
                                                       small.get()),
                            KN_ERROR_SHAPE_MISMATCH, {"dbias"});
    });
}

// =================================================================================================
// Binary (broadcasting)
// =================================================================================================
//
// The reference broadcasts by NumPy's rule on the original shapes (aligned at the last dimension, a
// size-1 dimension repeats), independent of the library's normalisation of the geometry.
// Tolerances: ADD/SUB/MUL/MAXIMUM/MINIMUM/DIV forward are one correctly rounded operation (<= 2.5 ulp
// for OpenCL's divide): 1e-6 relative. Backward: at most three roundings (DIV's -dc a / b^2):
// 2e-6 relative for DIV, 1e-6 for the others. POW (powf and logf) uses the transcendental class.

struct BinaryInfo {
    kn_binary_op op;
    const char* name;
};

const BinaryInfo kBinaryOps[] = {{KN_BINARY_ADD, "ADD"}, {KN_BINARY_SUB, "SUB"},         {KN_BINARY_MUL, "MUL"},
                                 {KN_BINARY_DIV, "DIV"}, {KN_BINARY_POW, "POW"},         {KN_BINARY_MAXIMUM, "MAXIMUM"},
                                 {KN_BINARY_MINIMUM, "MINIMUM"}, {KN_BINARY_EQUAL, "EQUAL"},
                                 {KN_BINARY_NOT_EQUAL, "NOT_EQUAL"}, {KN_BINARY_LESS, "LESS"},
                                 {KN_BINARY_LESS_EQUAL, "LESS_EQUAL"}, {KN_BINARY_GREATER, "GREATER"},
                                 {KN_BINARY_GREATER_EQUAL, "GREATER_EQUAL"}};

bool is_comparison(kn_binary_op op) { return op >= KN_BINARY_EQUAL && op <= KN_BINARY_GREATER_EQUAL; }

double binary_reference(kn_binary_op op, double a, double b) {
    switch (op) {
        case KN_BINARY_ADD: return a + b;
        case KN_BINARY_SUB: return a - b;
        case KN_BINARY_MUL: return a * b;
        case KN_BINARY_DIV: return a / b;
        case KN_BINARY_POW: return std::pow(a, b);
        case KN_BINARY_MAXIMUM: return a >= b ? a : b;
        case KN_BINARY_MINIMUM: return a <= b ? a : b;
        // IEEE: every ordered comparison with a NaN is false, != is true.
        case KN_BINARY_EQUAL: return a == b ? 1.0 : 0.0;
        case KN_BINARY_NOT_EQUAL: return a != b ? 1.0 : 0.0;
        case KN_BINARY_LESS: return a < b ? 1.0 : 0.0;
        case KN_BINARY_LESS_EQUAL: return a <= b ? 1.0 : 0.0;
        case KN_BINARY_GREATER: return a > b ? 1.0 : 0.0;
        case KN_BINARY_GREATER_EQUAL: return a >= b ? 1.0 : 0.0;
    }
    return kNaN;
}

// (d/da, d/db) of a op b; MAXIMUM/MINIMUM ties send the gradient to a (kernels.h).
std::pair<double, double> binary_derivatives(kn_binary_op op, double a, double b) {
    switch (op) {
        case KN_BINARY_ADD: return {1.0, 1.0};
        case KN_BINARY_SUB: return {1.0, -1.0};
        case KN_BINARY_MUL: return {b, a};
        case KN_BINARY_DIV: return {1.0 / b, -a / (b * b)};
        case KN_BINARY_POW: return {b * std::pow(a, b - 1.0), std::pow(a, b) * std::log(a)};
        case KN_BINARY_MAXIMUM: return a >= b ? std::make_pair(1.0, 0.0) : std::make_pair(0.0, 1.0);
        case KN_BINARY_MINIMUM: return a <= b ? std::make_pair(1.0, 0.0) : std::make_pair(0.0, 1.0);
        case KN_BINARY_EQUAL:
        case KN_BINARY_NOT_EQUAL:
        case KN_BINARY_LESS:
        case KN_BINARY_LESS_EQUAL:
        case KN_BINARY_GREATER:
        case KN_BINARY_GREATER_EQUAL: return {0.0, 0.0};  // piecewise constant
    }
    return {kNaN, kNaN};
}

double binary_forward_tol(kn_binary_op op, double want) {
    return op == KN_BINARY_POW ? 1e-5 * std::fabs(want) + 1e-6 : 1e-6 * std::fabs(want);
}
double binary_backward_tol(kn_binary_op op, double want) {
    if (op == KN_BINARY_POW) return 1e-5 * std::fabs(want) + 1e-6;
    return (op == KN_BINARY_DIV ? 2e-6 : 1e-6) * std::fabs(want);
}

// Operands in each op's domain. MAXIMUM/MINIMUM draw from five values so ties are frequent.
std::vector<float> binary_operand(Rng& rng, kn_binary_op op, bool is_b, int64_t n) {
    std::vector<float> v(static_cast<size_t>(n));
    for (auto& x : v) {
        switch (op) {
            case KN_BINARY_DIV:
                if (is_b) {
                    x = rng.uniform(0.5, 2);
                    if (rng.next() & 1) x = -x;
                } else {
                    x = rng.uniform(-2, 2);
                }
                break;
            case KN_BINARY_POW: x = is_b ? rng.uniform(-2, 2) : rng.uniform(0.5, 2.5); break;
            case KN_BINARY_MAXIMUM:
            case KN_BINARY_MINIMUM: x = static_cast<float>(rng.below(5)) * 0.5f - 1.0f; break;
            default:
                if (is_comparison(op)) {  // five levels (ties everywhere) and one NaN in eight
                    x = rng.below(8) == 0 ? NAN : static_cast<float>(rng.below(5)) * 0.5f - 1.0f;
                    break;
                } x = rng.uniform(-2, 2); break;
        }
    }
    return v;
}

int64_t elements(const std::vector<int64_t>& dims) {
    int64_t n = 1;
    for (int64_t d : dims) n *= d;
    return n;
}

// For each element of the broadcast output (row-major), the element of a and of b it reads.
struct BroadcastMap {
    std::vector<int64_t> c_dims;
    std::vector<int64_t> a_index, b_index;
};

BroadcastMap broadcast_map(const std::vector<int64_t>& a, const std::vector<int64_t>& b) {
    BroadcastMap m;
    const size_t rank = std::max(a.size(), b.size());
    std::vector<int64_t> ad(rank, 1), bd(rank, 1);
    std::copy(a.begin(), a.end(), ad.begin() + (rank - a.size()));
    std::copy(b.begin(), b.end(), bd.begin() + (rank - b.size()));
    m.c_dims.resize(rank);
    for (size_t d = 0; d < rank; ++d) m.c_dims[d] = ad[d] == 1 ? bd[d] : ad[d];
    std::vector<int64_t> as(rank), bs(rank);  // row-major strides of a and b, 0 where broadcast
    int64_t sa = 1, sb = 1;
    for (size_t d = rank; d-- > 0;) {
        as[d] = ad[d] == 1 ? 0 : sa;
        bs[d] = bd[d] == 1 ? 0 : sb;
        sa *= ad[d];
        sb *= bd[d];
    }
    const int64_t n = elements(m.c_dims);
    m.a_index.resize(static_cast<size_t>(n));
    m.b_index.resize(static_cast<size_t>(n));
    std::vector<int64_t> coord(rank, 0);
    for (int64_t i = 0; i < n; ++i) {
        int64_t ia = 0, ib = 0;
        for (size_t d = 0; d < rank; ++d) {
            ia += coord[d] * as[d];
            ib += coord[d] * bs[d];
        }
        m.a_index[i] = ia;
        m.b_index[i] = ib;
        for (size_t d = rank; d-- > 0;) {  // odometer
            if (++coord[d] < m.c_dims[d]) break;
            coord[d] = 0;
        }
    }
    return m;
}

void binary_forward_case(Context& cx, const BinaryInfo& op, const std::vector<int64_t>& ad,
                         const std::vector<int64_t>& bd) {
    std::string name = std::string("binary ") + op.name + " " + shape_str(ad) + " " + shape_str(bd);
    cx.report.run(name, [&] {
        Problems problems;
        Rng rng(seed_of(name));
        BroadcastMap map = broadcast_map(ad, bd);
        const int64_t n = elements(map.c_dims);
        std::vector<float> a = binary_operand(rng, op.op, false, elements(ad));
        std::vector<float> b = binary_operand(rng, op.op, true, elements(bd));
        DeviceArray<float> A(cx.device, a), B(cx.device, b), C(cx.device, nan_filled(n));
        expect_ok(kn_binary_f32(op.op, A.get(), ad.data(), static_cast<int32_t>(ad.size()), B.get(), bd.data(),
                                static_cast<int32_t>(bd.size()), C.get(), map.c_dims.data(),
                                static_cast<int32_t>(map.c_dims.size())),
                  "kn_binary_f32");
        std::vector<float> got = C.read();
        auto want = [&](int64_t i) { return binary_reference(op.op, a[map.a_index[i]], b[map.b_index[i]]); };
        problems.add(compare(n, [&](int64_t i) { return got[i]; }, want,
                             [&](int64_t i) { return binary_forward_tol(op.op, want(i)); })
                         .describe("c"));
        problems.add(guard_violation(got, C, "c"));
        problems.add(input_violation(A, "a"));
        problems.add(input_violation(B, "b"));
        return problems;
    });
}

// which: 3 = both gradients, 1 = da only (db NULL), 2 = db only (da NULL).
void binary_backward_case(Context& cx, const BinaryInfo& op, const std::vector<int64_t>& ad,
                          const std::vector<int64_t>& bd, int which) {
    std::string name = std::string("binary_backward ") + op.name + " " + shape_str(ad) + " " + shape_str(bd) +
                       (which == 1 ? " db=NULL" : which == 2 ? " da=NULL" : "");
    cx.report.run(name, [&] {
        Problems problems;
        Rng rng(seed_of(name));
        BroadcastMap map = broadcast_map(ad, bd);
        const int64_t n = elements(map.c_dims);
        std::vector<float> a = binary_operand(rng, op.op, false, elements(ad));
        std::vector<float> b = binary_operand(rng, op.op, true, elements(bd));
        std::vector<float> dc = uniform(rng, n, -1, 1);
        DeviceArray<float> A(cx.device, a), B(cx.device, b), DC(cx.device, dc);
        DeviceArray<float> DA(cx.device, nan_filled(n)), DB(cx.device, nan_filled(n));
        const int32_t ar = static_cast<int32_t>(ad.size()), br = static_cast<int32_t>(bd.size());
        const int32_t cr = static_cast<int32_t>(map.c_dims.size());
        expect_ok(kn_binary_backward_f32(op.op, A.get(), ad.data(), ar, B.get(), bd.data(), br, DC.get(),
                                         map.c_dims.data(), cr, (which & 1) ? DA.get() : nullptr,
                                         (which & 2) ? DB.get() : nullptr),
                  "kn_binary_backward_f32");
        for (int side = 0; side < 2; ++side) {
            DeviceArray<float>& out = side == 0 ? DA : DB;
            const char* out_name = side == 0 ? "da" : "db";
            std::vector<float> got = out.read();
            if (!(which & (1 << side))) {  // not requested: the buffer must be untouched
                problems.add(first_changed(got, out.written(), 0, n + kGuard,
                                           (std::string(out_name) + " (passed as NULL, must not be written)").c_str()));
                continue;
            }
            auto want = [&](int64_t i) {
                auto d = binary_derivatives(op.op, a[map.a_index[i]], b[map.b_index[i]]);
                return dc[i] * (side == 0 ? d.first : d.second);
            };
            problems.add(compare(n, [&](int64_t i) { return got[i]; }, want,
                                 [&](int64_t i) { return binary_backward_tol(op.op, want(i)); })
                             .describe(out_name));
            problems.add(guard_violation(got, out, out_name));
        }
        problems.add(input_violation(A, "a"));
        problems.add(input_violation(B, "b"));
        problems.add(input_violation(DC, "dc"));
        return problems;
    });
}

void test_binary(Context& cx) {
    using Dims = std::vector<int64_t>;
    std::vector<std::pair<Dims, Dims>> cases = {
        {{1}, {1}},                                       // 1 element
        {{}, {}},                                         // rank 0 both
        {{7}, {7}},                                       // same shape, prime
        {{2, 3, 4}, {2, 3, 4}},                           // same shape, rank 3
        {{}, {5, 7}},                                     // scalar (rank 0) left
        {{5, 7}, {}},                                     // scalar right
        {{1}, {33, 5}},                                   // [1] vs matrix
        {{33, 5}, {1, 1}},                                // matrix vs [1,1]
        {{4, 5}, {5}},                                    // row vector (lower rank)
        {{1, 5}, {4, 5}},                                 // row vector left, same rank
        {{4, 5}, {4, 1}},                                 // column vector
        {{4, 1}, {4, 5}},                                 // column vector left
        {{3, 1, 5}, {4, 1}},                              // both broadcast -> [3,4,5]
        {{4, 1}, {3, 1, 5}},
        {{2, 1, 3}, {1, 1, 3}},                           // a 1 shared by both
        {{2, 1, 3, 1, 4}, {1, 5, 1, 6, 1}},               // rank 5, alternating
        {{1, 1, 1, 1, 1}, {2, 3, 1, 2, 3}},               // rank 5, all-ones operand
        {{7, 1, 1, 33}, {1, 1, 5, 1}},
        {{2, 1, 2, 1, 2, 1, 2, 1}, {1, 2, 1, 2, 1, 2, 1, 2}},  // KN_MAX_RANK
        {{127, 129}, {129}},                              // non-multiple tiles
        {{1000, 1}, {1000, 1}},                           // 1000x1
        {{1, 1000}, {1}},                                 // 1x1000 vs scalar
        {{0, 5}, {5}},                                    // empty output: no-op
        {{3, 0}, {3, 1}},
    };
    if (cx.quick) {
        cases.push_back({{31, 1}, {1, 17}});
        cases.push_back({{1025}, {1025}});
    } else {
        cases.push_back({{300, 1}, {1, 257}});            // outer product, 77k elements
        cases.push_back({{65537}, {65537}});
        cases.push_back({{9, 1, 4099}, {1, 5, 1}});
    }
    for (const BinaryInfo& op : kBinaryOps) {
        for (const auto& c : cases) {
            binary_forward_case(cx, op, c.first, c.second);
            binary_backward_case(cx, op, c.first, c.second, 3);
        }
        binary_backward_case(cx, op, {3, 1, 5}, {4, 1}, 1);
        binary_backward_case(cx, op, {3, 1, 5}, {4, 1}, 2);
    }
}

// =================================================================================================
// Reductions and argreductions
// =================================================================================================
//
// kernels.h promises pairwise/tree-ordered sums, whose error is bounded by about log2(n) * eps *
// sum |x_i| (Higham, "Accuracy and Stability", 4.2); a blocked variant adds its block length. The
// check allows |err| <= 4 * (ceil(log2 n) + 2) * eps * sum |term|: ~1.1e-5 relative to sum |x| at
// n = 3,000,001, where a plain running float sum drifts by about 1e-4 and fails. MEAN adds the
// division; MAX/MIN must be exact (they select an input).

struct ReduceInfo {
    kn_reduce_op op;
    const char* name;
};
const ReduceInfo kReduceOps[] = {{KN_REDUCE_SUM, "SUM"},
                                 {KN_REDUCE_MEAN, "MEAN"},
                                 {KN_REDUCE_MAX, "MAX"},
                                 {KN_REDUCE_MIN, "MIN"},
                                 {KN_REDUCE_SUM_SQUARES, "SUM_SQUARES"}};

struct Axes {
    int64_t outer, reduce, inner;
};

std::string axes_str(const Axes& s) {
    return "[" + std::to_string(s.outer) + "," + std::to_string(s.reduce) + "," + std::to_string(s.inner) + "]";
}

void reduce_case(Context& cx, const ReduceInfo& op, const Axes& s) {
    std::string name = std::string("reduce ") + op.name + " [outer,reduce,inner]=" + axes_str(s);
    cx.report.run(name, [&] {
        Problems problems;
        Rng rng(seed_of(name));
        const int64_t out = s.outer * s.inner;
        // Mostly positive values so sums do not cancel; the huge all-elements case uses [0, 1], where
        // a plain running float sum (partial sums ~1e6, ulp 0.125) drifts well past the pairwise bound.
        std::vector<float> x = s.reduce > 100000 ? uniform(rng, s.outer * s.reduce * s.inner, 0.0, 1.0)
                                                 : uniform(rng, s.outer * s.reduce * s.inner, -0.5, 1.5);
        DeviceArray<float> X(cx.device, x), Y(cx.device, nan_filled(out));
        expect_ok(kn_reduce_f32(op.op, X.get(), Y.get(), s.outer, s.reduce, s.inner), "kn_reduce_f32");
        std::vector<float> got = Y.read();

        std::vector<double> want(static_cast<size_t>(out)), tol(static_cast<size_t>(out));
        const double levels = std::ceil(std::log2(static_cast<double>(std::max<int64_t>(s.reduce, 1))));
        const double sum_bound = 4.0 * (levels + 2.0) * kEps;
        for (int64_t o = 0; o < s.outer; ++o)
            for (int64_t i = 0; i < s.inner; ++i) {
                double sum = 0, sum_abs = 0, sq = 0, mx = -INFINITY, mn = INFINITY;
                for (int64_t r = 0; r < s.reduce; ++r) {
                    double v = x[(o * s.reduce + r) * s.inner + i];
                    sum += v;
                    sum_abs += std::fabs(v);
                    sq += v * v;
                    mx = std::max(mx, v);
                    mn = std::min(mn, v);
                }
                double w = 0, t = 0;
                switch (op.op) {
                    case KN_REDUCE_SUM: w = sum; t = sum_bound * sum_abs; break;
                    case KN_REDUCE_MEAN:
                        w = s.reduce == 0 ? kNaN : sum / s.reduce;
                        t = s.reduce == 0 ? 0 : sum_bound * sum_abs / s.reduce + 2 * kEps * std::fabs(w);
                        break;
                    case KN_REDUCE_MAX: w = mx; t = 0; break;
                    case KN_REDUCE_MIN: w = mn; t = 0; break;
                    case KN_REDUCE_SUM_SQUARES: w = sq; t = (sum_bound + kEps) * sq; break;
                }
                want[o * s.inner + i] = w;
                tol[o * s.inner + i] = t;
            }
        problems.add(compare(out, [&](int64_t i) { return got[i]; }, [&](int64_t i) { return want[i]; },
                             [&](int64_t i) { return tol[i]; })
                         .describe("y"));
        problems.add(guard_violation(got, Y, "y"));
        problems.add(input_violation(X, "x"));
        return problems;
    });
}

// Values from a few levels so ties are everywhere: the first index must win. With nans, some slices
// get NaNs, and kernels.h says NaN counts as the largest (argmax) and smallest (argmin) value, so the
// first NaN wins (NumPy's behaviour).
void argreduce_case(Context& cx, kn_argreduce_op op, const Axes& s, int levels, bool nans) {
    std::string name = std::string(op == KN_ARGMAX ? "argmax" : "argmin") + " [outer,reduce,inner]=" +
                       axes_str(s) + " levels=" + std::to_string(levels) + (nans ? " with NaN" : "");
    cx.report.run(name, [&] {
        Problems problems;
        Rng rng(seed_of(name));
        const int64_t out = s.outer * s.inner;
        std::vector<float> x(static_cast<size_t>(s.outer * s.reduce * s.inner));
        for (auto& v : x) v = static_cast<float>(rng.below(levels)) - levels / 2;
        if (nans) {
            for (int64_t o = 0; o < s.outer; ++o)
                for (int64_t i = 0; i < s.inner; ++i)
                    if ((o + i) % 3 != 2) {  // two of three slices get one or two NaNs
                        int64_t count = 1 + rng.below(2);
                        for (int64_t c = 0; c < count; ++c)
                            x[(o * s.reduce + rng.below(s.reduce)) * s.inner + i] = kNaNf;
                    }
        }
        DeviceArray<float> X(cx.device, x);
        DeviceArray<int64_t> I(cx.device, std::vector<int64_t>(static_cast<size_t>(out), -1));
        expect_ok(kn_argreduce_f32(op, X.get(), I.get(), s.outer, s.reduce, s.inner), "kn_argreduce_f32");
        std::vector<int64_t> got = I.read();
        int64_t bad = 0, first_bad = -1, got_first = 0, want_first = 0;
        for (int64_t o = 0; o < s.outer; ++o)
            for (int64_t i = 0; i < s.inner; ++i) {
                int64_t best = 0;
                for (int64_t r = 0; r < s.reduce; ++r) {
                    float v = x[(o * s.reduce + r) * s.inner + i];
                    float b = x[(o * s.reduce + best) * s.inner + i];
                    if (std::isnan(b)) break;  // the first NaN is final
                    if (std::isnan(v) || (op == KN_ARGMAX ? v > b : v < b)) best = r;
                }
                int64_t k = o * s.inner + i;
                if (got[k] != best) {
                    if (bad++ == 0) {
                        first_bad = k;
                        got_first = got[k];
                        want_first = best;
                    }
                }
            }
        if (bad)
            problems.add("indices: " + std::to_string(bad) + "/" + std::to_string(out) + " wrong, first bad index " +
                         std::to_string(first_bad) + " (got " + std::to_string(got_first) + ", want " +
                         std::to_string(want_first) + ")");
        problems.add(guard_violation(got, I, "indices"));
        problems.add(input_violation(X, "x"));
        return problems;
    });
}

void test_reduce(Context& cx) {
    std::vector<Axes> shapes = {{1, 1, 1},    {1, 7, 1},     {1, 1, 7},     {7, 1, 1},      {3, 33, 1},
                                {1, 33, 5},   {4, 127, 3},   {1, 1000, 1},  {1000, 1, 1},   {2, 1000, 3},
                                {5, 4097, 1}, {1, 4097, 2},  {17, 65, 33},  {3, 257, 129},  {64, 64, 64},
                                {0, 5, 3},    {3, 5, 0}};  // the last two: empty output, a no-op
    // More than one 256-column block (sums take a row chunk of every block at a time, chunks combined
    // pairwise: reduce.cpp's sum_wide_columns): a split reduce axis (outer 1), several outer indices,
    // a ragged last block, and one past kWideColumns (8192), which keeps one block at a time.
    for (Axes wide : {Axes{1, 1031, 513}, Axes{3, 300, 700}, Axes{2, 37, 8200}}) shapes.push_back(wide);
    shapes.push_back(cx.quick ? Axes{1, 100003, 1} : Axes{1, 3000001, 1});  // all elements
    if (!cx.quick) shapes.push_back({2, 65537, 1});
    for (const ReduceInfo& op : kReduceOps)
        for (const Axes& s : shapes) reduce_case(cx, op, s);
    // reduce = 0: SUM and SUM_SQUARES give 0, MEAN gives NaN (MAX/MIN are an error: see test_errors).
    for (const ReduceInfo& op : kReduceOps) {
        if (op.op == KN_REDUCE_MAX || op.op == KN_REDUCE_MIN) continue;
        reduce_case(cx, op, {1, 0, 1});
        reduce_case(cx, op, {3, 0, 5});
    }

    std::vector<Axes> arg_shapes = {{1, 1, 1},    {1, 7, 1},   {7, 1, 1},    {1, 1, 7},    {3, 33, 1},
                                    {1, 33, 5},   {4, 127, 3}, {2, 1000, 3}, {5, 4097, 1}, {17, 65, 33},
                                    {0, 5, 3}};
    for (kn_argreduce_op op : {KN_ARGMAX, KN_ARGMIN}) {
        for (const Axes& s : arg_shapes) argreduce_case(cx, op, s, 4, false);
        argreduce_case(cx, op, {4, 127, 3}, 4, true);
        argreduce_case(cx, op, {1, 1000, 1}, 1000, true);
        argreduce_case(cx, op, cx.quick ? Axes{1, 100003, 1} : Axes{1, 3000001, 1}, 1000, false);
    }
}

// =================================================================================================
// Softmax
// =================================================================================================
//
// Rows mix ordinary logits with stability traps: logits near +1000 and -1000 (exp overflows or
// underflows unless the row maximum is subtracted), a constant row of 1000s, and a row with a single
// 1000 among small values. Tolerances follow the error of exp(x - m) / sum:
//   softmax:      |err| <= (1e-5 + eps * (cols + 2 (|x_j| + |m|))) |ref|
//                 (exp to ~16 ulp, a sum of cols terms in any order, and the rounding of x - m, or of
//                 m + log(sum) in the exp(x - m - log sum) form, which scales with the logits);
//   log_softmax:  |err| <= 1e-5 |ref| + eps * (4 (|x_j| + |m|) + cols + 16);
//   backward:     the row sum is bounded by (cols + 4) eps sum |term|, then one or two roundings.

std::vector<float> softmax_logits(Rng& rng, int64_t rows, int64_t cols) {
    std::vector<float> x(static_cast<size_t>(rows * cols));
    for (int64_t r = 0; r < rows; ++r) {
        float* row = x.data() + r * cols;
        int64_t spike = cols > 0 ? rng.below(cols) : 0;
        for (int64_t j = 0; j < cols; ++j) {
            switch (r % 5) {
                case 0: row[j] = rng.uniform(-5, 5); break;
                case 1: row[j] = 1000.0f + rng.uniform(-10, 10); break;
                case 2: row[j] = 1000.0f; break;
                case 3: row[j] = -1000.0f + rng.uniform(-10, 10); break;
                case 4: row[j] = j == spike ? 1000.0f : rng.uniform(-5, 5); break;
            }
        }
    }
    return x;
}

// y[j] (double) for one row.
void softmax_row_reference(const float* x, int64_t cols, bool log, double* y) {
    double m = -INFINITY;
    for (int64_t j = 0; j < cols; ++j) m = std::max(m, static_cast<double>(x[j]));
    double s = 0;
    for (int64_t j = 0; j < cols; ++j) s += std::exp(x[j] - m);
    for (int64_t j = 0; j < cols; ++j) y[j] = log ? (x[j] - m) - std::log(s) : std::exp(x[j] - m) / s;
}

void softmax_forward_case(Context& cx, int64_t rows, int64_t cols, bool log) {
    std::string name = std::string(log ? "log_softmax" : "softmax") + " rows=" + std::to_string(rows) +
                       " cols=" + std::to_string(cols);
    cx.report.run(name, [&] {
        Problems problems;
        Rng rng(seed_of(name));
        std::vector<float> x = softmax_logits(rng, rows, cols);
        DeviceArray<float> X(cx.device, x), Y(cx.device, nan_filled(rows * cols));
        expect_ok(kn_softmax_f32(X.get(), Y.get(), rows, cols, log ? 1 : 0), "kn_softmax_f32");
        std::vector<float> got = Y.read();
        std::vector<double> want(x.size()), tol(x.size());
        for (int64_t r = 0; r < rows && cols > 0; ++r) {
            const float* xr = x.data() + r * cols;
            softmax_row_reference(xr, cols, log, want.data() + r * cols);
            double m = *std::max_element(xr, xr + cols);
            for (int64_t j = 0; j < cols; ++j) {
                double w = want[r * cols + j], scale = std::fabs(xr[j]) + std::fabs(m);
                tol[r * cols + j] = log ? 1e-5 * std::fabs(w) + kEps * (4 * scale + cols + 16)
                                        : (1e-5 + kEps * (cols + 2 * scale)) * std::fabs(w);
            }
        }
        problems.add(compare(rows * cols, [&](int64_t i) { return got[i]; }, [&](int64_t i) { return want[i]; },
                             [&](int64_t i) { return tol[i]; })
                         .describe("y"));
        problems.add(guard_violation(got, Y, "y"));
        problems.add(input_violation(X, "x"));
        return problems;
    });
}

void softmax_backward_case(Context& cx, int64_t rows, int64_t cols, bool log) {
    std::string name = std::string(log ? "log_softmax_backward" : "softmax_backward") + " rows=" +
                       std::to_string(rows) + " cols=" + std::to_string(cols);
    cx.report.run(name, [&] {
        Problems problems;
        Rng rng(seed_of(name));
        std::vector<float> x = softmax_logits(rng, rows, cols);
        // y is the forward output (the float32 rounding of the exact one); dy is arbitrary.
        std::vector<float> y(x.size());
        std::vector<double> row(static_cast<size_t>(cols));
        for (int64_t r = 0; r < rows; ++r) {
            softmax_row_reference(x.data() + r * cols, cols, log, row.data());
            for (int64_t j = 0; j < cols; ++j) y[r * cols + j] = static_cast<float>(row[j]);
        }
        std::vector<float> dy = uniform(rng, rows * cols, -1, 1);
        DeviceArray<float> Y(cx.device, y), DY(cx.device, dy), DX(cx.device, nan_filled(rows * cols));
        expect_ok(kn_softmax_backward_f32(Y.get(), DY.get(), DX.get(), rows, cols, log ? 1 : 0),
                  "kn_softmax_backward_f32");
        std::vector<float> got = DX.read();
        std::vector<double> want(x.size()), tol(x.size());
        const double sum_err = (cols + 4) * kEps;
        for (int64_t r = 0; r < rows; ++r) {
            const float* yr = y.data() + r * cols;
            const float* dr = dy.data() + r * cols;
            double s = 0, s_abs = 0;
            for (int64_t j = 0; j < cols; ++j) {
                double term = log ? dr[j] : static_cast<double>(dr[j]) * yr[j];
                s += term;
                s_abs += std::fabs(term);
            }
            for (int64_t j = 0; j < cols; ++j) {
                double w, t;
                if (log) {  // dx = dy - exp(y) * sum(dy)
                    double p = std::exp(static_cast<double>(yr[j]));
                    w = dr[j] - p * s;
                    t = 1e-5 * std::fabs(w) + 4 * kEps * std::fabs(dr[j]) +
                        p * (sum_err * s_abs + (1e-5 + 2 * kEps * std::fabs(yr[j])) * std::fabs(s));
                } else {  // dx = y * (dy - sum(dy * y))
                    w = yr[j] * (dr[j] - s);
                    t = 1e-5 * std::fabs(w) + std::fabs(yr[j]) * kEps * (4 * std::fabs(dr[j]) + (cols + 4) * s_abs);
                }
                want[r * cols + j] = w;
                tol[r * cols + j] = t;
            }
        }
        problems.add(compare(rows * cols, [&](int64_t i) { return got[i]; }, [&](int64_t i) { return want[i]; },
                             [&](int64_t i) { return tol[i]; })
                         .describe("dx"));
        problems.add(guard_violation(got, DX, "dx"));
        problems.add(input_violation(Y, "y"));
        problems.add(input_violation(DY, "dy"));
        return problems;
    });
}

void test_softmax(Context& cx) {
    struct Shape { int64_t rows, cols; };
    std::vector<Shape> shapes = {{1, 1}, {1, 7}, {7, 1}, {5, 33}, {33, 127}, {10, 1000}, {1000, 10}, {0, 5}, {5, 0}};
    if (!cx.quick) {
        shapes.push_back({7, 4097});
        shapes.push_back({2, 65537});
        shapes.push_back({257, 257});
        // Past 32 MB of output, where the CPU backend streams its stores (kStreamingBytes): rows of
        // 1023 (every row starts at a different alignment) and rows longer than the 4096 floats it
        // stages (kStreamingRow), which take the ordinary stores.
        shapes.push_back({8209, 1023});
        shapes.push_back({2, 4194319});
    }
    for (bool log : {false, true})
        for (const Shape& s : shapes) {
            softmax_forward_case(cx, s.rows, s.cols, log);
            softmax_backward_case(cx, s.rows, s.cols, log);
        }
}

// =================================================================================================
// Cross-entropy (fused log-softmax + negative log-likelihood)
// =================================================================================================
//
// loss[r] = logsumexp(x[r]) - x[r, label[r]]; the tolerance is log_softmax's (the same computation).
// A label outside [0, cols) must give a NaN loss (kernels.h). Backward:
// dx[r, c] = dloss[r] * (softmax(x[r])[c] - [c == label]), with softmax's tolerance scaled by |dloss|.

void cross_entropy_case(Context& cx, int64_t rows, int64_t cols, bool backward, bool bad_labels) {
    std::string name = std::string(backward ? "cross_entropy_backward" : "cross_entropy") + " rows=" +
                       std::to_string(rows) + " cols=" + std::to_string(cols) + (bad_labels ? " with bad labels" : "");
    cx.report.run(name, [&] {
        Problems problems;
        Rng rng(seed_of(name));
        std::vector<float> x = softmax_logits(rng, rows, cols);
        std::vector<int64_t> labels(static_cast<size_t>(rows));
        for (int64_t r = 0; r < rows; ++r) {
            labels[r] = rng.below(cols);
            if (bad_labels && r % 3 == 1) labels[r] = r % 2 ? cols : -1;  // out of range: NaN loss
        }
        std::vector<float> dloss = uniform(rng, rows, -2, 2);
        DeviceArray<float> X(cx.device, x), DL(cx.device, dloss);
        DeviceArray<int64_t> L(cx.device, labels);
        DeviceArray<float> Y(cx.device, nan_filled(backward ? rows * cols : rows));
        if (backward)
            expect_ok(kn_cross_entropy_backward_f32(X.get(), L.get(), DL.get(), Y.get(), rows, cols),
                      "kn_cross_entropy_backward_f32");
        else
            expect_ok(kn_cross_entropy_f32(X.get(), L.get(), Y.get(), rows, cols), "kn_cross_entropy_f32");
        std::vector<float> got = Y.read();
        const int64_t n = backward ? rows * cols : rows;
        std::vector<double> want(static_cast<size_t>(n)), tol(static_cast<size_t>(n));
        std::vector<double> p(static_cast<size_t>(cols));
        for (int64_t r = 0; r < rows; ++r) {
            const float* xr = x.data() + r * cols;
            double m = *std::max_element(xr, xr + cols);
            softmax_row_reference(xr, cols, false, p.data());
            double s = 0;
            for (int64_t j = 0; j < cols; ++j) s += std::exp(xr[j] - m);
            const int64_t lab = labels[r];
            const bool valid = lab >= 0 && lab < cols;
            if (!backward) {
                want[r] = valid ? (m + std::log(s)) - xr[lab] : kNaN;
                tol[r] = valid ? 1e-5 * std::fabs(want[r]) + kEps * (4 * (std::fabs(m) + std::fabs(xr[lab])) + cols + 16) : 0;
                continue;
            }
            for (int64_t j = 0; j < cols; ++j) {
                double scale = std::fabs(xr[j]) + std::fabs(m);
                want[r * cols + j] = dloss[r] * (p[j] - (j == lab ? 1.0 : 0.0));
                tol[r * cols + j] = std::fabs(dloss[r]) * ((1e-5 + kEps * (cols + 2 * scale)) * p[j] + 2 * kEps);
            }
        }
        problems.add(compare(n, [&](int64_t i) { return got[i]; }, [&](int64_t i) { return want[i]; },
                             [&](int64_t i) { return tol[i]; })
                         .describe(backward ? "dlogits" : "losses"));
        problems.add(guard_violation(got, Y, backward ? "dlogits" : "losses"));
        problems.add(input_violation(X, "logits"));
        problems.add(input_violation(L, "labels"));
        if (backward) problems.add(input_violation(DL, "dlosses"));
        return problems;
    });
}

void test_cross_entropy(Context& cx) {
    struct Shape { int64_t rows, cols; };
    std::vector<Shape> shapes = {{1, 1}, {1, 7}, {7, 2}, {5, 33}, {33, 127}, {10, 1000}, {1000, 10}};
    if (!cx.quick) {
        shapes.push_back({7, 4097});
        shapes.push_back({257, 257});
        // Past 32 MB of output, where the CPU backend streams its stores (kStreamingBytes): rows of
        // 1023 (every row starts at a different alignment) and rows longer than the 4096 floats it
        // stages (kStreamingRow), which take the ordinary stores.
        shapes.push_back({8209, 1023});
        shapes.push_back({2, 4194319});
    }
    for (bool backward : {false, true}) {
        for (const Shape& s : shapes) cross_entropy_case(cx, s.rows, s.cols, backward, false);
        cross_entropy_case(cx, 0, 5, backward, false);  // no rows: a no-op
    }
    cross_entropy_case(cx, 9, 13, false, true);
}

// =================================================================================================
// Dropout
// =================================================================================================
//
// The mask comes from Philox-4x32-10 (Salmon et al. SC'11), implemented here from the paper and
// checked against Random123's published known-answer vectors: key = seed as (low, high), ten rounds
// with multipliers 0xD2511F53 / 0xCD9E8D57 and key increments 0x9E3779B9 / 0xBB67AE85. Stream element
// j = offset + i takes output word j mod 4 of the block at counter (lo32(j / 4), hi32(j / 4), 0, 0);
// its top 24 bits / 2^24 is uniform(seed, j), and element i is kept where that is >= p. Kept values
// are x / (1 - p): at most two roundings (x * (1 / (1 - p))), 1e-6 relative. Offsets that are not
// multiples of 4 check the partial first block; offsets near 2^34 the carry into the counter's high
// word; seeds with high bits set the second key word.

std::array<uint32_t, 4> philox_block_reference(std::array<uint32_t, 4> c, std::array<uint32_t, 2> k) {
    for (int round = 0; round < 10; ++round) {
        uint64_t p0 = static_cast<uint64_t>(0xD2511F53u) * c[0];
        uint64_t p1 = static_cast<uint64_t>(0xCD9E8D57u) * c[2];
        c = {static_cast<uint32_t>(p1 >> 32) ^ c[1] ^ k[0], static_cast<uint32_t>(p1),
             static_cast<uint32_t>(p0 >> 32) ^ c[3] ^ k[1], static_cast<uint32_t>(p0)};
        k[0] += 0x9E3779B9u;
        k[1] += 0xBB67AE85u;
    }
    return c;
}

double philox_uniform_reference(uint64_t seed, uint64_t index) {
    const uint64_t counter = index / 4;
    const std::array<uint32_t, 4> block = philox_block_reference(
        {static_cast<uint32_t>(counter), static_cast<uint32_t>(counter >> 32), 0, 0},
        {static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32)});
    return static_cast<double>(block[index % 4] >> 8) / 16777216.0;
}

// The test's own Philox against Random123's known-answer vectors (its kat_vectors file: zero counter
// and key, all ones, and the digits of pi), so the reference the dropout cases trust is the published
// generator, not a second copy of ours.
void philox_known_answers(Context& cx) {
    cx.report.run("philox4x32-10 known answers (Random123)", [&] {
        Problems problems;
        struct Vector { std::array<uint32_t, 4> counter; std::array<uint32_t, 2> key; std::array<uint32_t, 4> out; };
        const Vector vectors[] = {
            {{0, 0, 0, 0}, {0, 0}, {0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u}},
            {{0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu}, {0xffffffffu, 0xffffffffu},
             {0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu}},
            {{0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u}, {0xa4093822u, 0x299f31d0u},
             {0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u}},
        };
        for (const Vector& v : vectors)
            if (philox_block_reference(v.counter, v.key) != v.out)
                problems.add("the test's Philox-4x32-10 misses Random123's vector for counter word 0 = " +
                             std::to_string(v.counter[0]));
        return problems;
    });
}

void dropout_case(Context& cx, int64_t n, float p, int64_t seed, int64_t offset, bool backward, bool in_place) {
    std::string name = std::string(backward ? "dropout_backward" : "dropout") + " n=" + std::to_string(n) +
                       " p=" + fmt(p) + " seed=" + std::to_string(seed) + " offset=" + std::to_string(offset) +
                       (in_place ? " in-place" : "");
    cx.report.run(name, [&] {
        Problems problems;
        Rng rng(seed_of(name));
        std::vector<float> x = uniform(rng, n, -3, 3);
        DeviceArray<float> X(cx.device, x), Y(cx.device, nan_filled(in_place ? 0 : n));
        kn_buffer* out = in_place ? X.get() : Y.get();
        if (backward)
            expect_ok(kn_dropout_backward_f32(X.get(), out, n, p, seed, offset), "kn_dropout_backward_f32");
        else
            expect_ok(kn_dropout_f32(X.get(), out, n, p, seed, offset), "kn_dropout_f32");
        std::vector<float> got = in_place ? X.read() : Y.read();
        int64_t kept = 0;
        auto want = [&](int64_t i) {
            bool keep = philox_uniform_reference(static_cast<uint64_t>(seed), static_cast<uint64_t>(offset + i)) >= p;
            return keep ? x[i] / (1.0 - static_cast<double>(p)) : 0.0;
        };
        for (int64_t i = 0; i < n; ++i) kept += want(i) != 0.0;
        problems.add(compare(n, [&](int64_t i) { return got[i]; }, want,
                             [&](int64_t i) { return 1e-6 * std::fabs(want(i)); })
                         .describe(backward ? "dx" : "y"));
        problems.add(guard_violation(got, in_place ? X : Y, backward ? "dx" : "y"));
        if (!in_place) problems.add(input_violation(X, backward ? "dy" : "x"));
        // The reference itself must drop about a fraction p (5 standard deviations of a binomial).
        if (n >= 1000) {
            double expect = n * (1.0 - p), sd = std::sqrt(n * p * (1.0 - p));
            if (std::fabs(kept - expect) > 5 * sd + 1)
                problems.add("test's Philox reference kept " + std::to_string(kept) + " of " + std::to_string(n) +
                             ", expected about " + fmt(expect));
        }
        return problems;
    });
}

void test_dropout(Context& cx) {
    philox_known_answers(cx);
    const int64_t big = cx.quick ? 4099 : 100003;
    for (bool backward : {false, true}) {
        dropout_case(cx, 1, 0.5f, 1, 0, backward, false);
        dropout_case(cx, 33, 0.1f, 42, 7, backward, false);
        dropout_case(cx, 1000, 0.5f, 42, 0, backward, false);
        dropout_case(cx, big, 0.3f, 1234567, 1000, backward, false);
        dropout_case(cx, big, 0.9f, -5, 3, backward, false);                        // seed with all high bits set
        dropout_case(cx, 1000, 0.25f, 0x123456789ABCDEFll, (1ll << 34) - 501, backward, false);  // counter carry
        dropout_case(cx, 2, 0.5f, 77, 5, backward, false);      // inside one block
        dropout_case(cx, 6, 0.5f, 77, 2, backward, false);      // a partial block at each end, none whole
        dropout_case(cx, 4099, 0.5f, 77, 4097, backward, false);
        dropout_case(cx, 1000, 0.0f, 9, 0, backward, false);                        // p = 0 keeps everything
        dropout_case(cx, 257, 0.5f, 3, 11, backward, true);
        dropout_case(cx, 0, 0.5f, 3, 0, backward, false);
    }
}

// =================================================================================================
// Clamp and optimizer steps
// =================================================================================================
//
// Clamp selects a value: exact. The optimizer updates are short chains of float operations; their
// tolerance is a running error bound: each reference value carries the magnitude m it was formed from
// (sums of |terms|, products of magnitudes, quotients by a positive well-conditioned denominator), and
// |err| <= 16 eps m allows about one rounding per operation in the longest chain (Adam's ~14). Adam
// also allows for bias corrections 1 - beta^t computed with a float pow (16 ulp in OpenCL 1.2), whose
// relative error grows as 16 eps beta^t / (1 - beta^t).

void clamp_case(Context& cx, int64_t n, float low, float high, bool in_place) {
    std::string name = "clamp n=" + std::to_string(n) + " [" + fmt(low) + ", " + fmt(high) + "]" +
                       (in_place ? " in-place" : "");
    cx.report.run(name, [&] {
        Problems problems;
        Rng rng(seed_of(name));
        std::vector<float> x = uniform(rng, n, -3, 3);
        for (int64_t i = 0; i < n; i += 5) x[i] = (i / 5) % 2 ? low : high;  // values on the bounds
        DeviceArray<float> X(cx.device, x), Y(cx.device, nan_filled(in_place ? 0 : n));
        expect_ok(kn_clamp_f32(X.get(), in_place ? X.get() : Y.get(), n, low, high), "kn_clamp_f32");
        std::vector<float> got = in_place ? X.read() : Y.read();
        problems.add(compare(n, [&](int64_t i) { return got[i]; },
                             [&](int64_t i) { return std::min(std::max(static_cast<double>(x[i]), double(low)), double(high)); },
                             [](int64_t) { return 0.0; })
                         .describe("y"));
        problems.add(guard_violation(got, in_place ? X : Y, "y"));
        if (!in_place) problems.add(input_violation(X, "x"));
        return problems;
    });
}

// A reference value and the magnitude it was computed from (see above).
struct Val {
    double v, m;
};
Val val(double x) { return {x, std::fabs(x)}; }
Val operator+(Val a, Val b) { return {a.v + b.v, a.m + b.m}; }
Val operator-(Val a, Val b) { return {a.v - b.v, a.m + b.m}; }
Val operator*(Val a, Val b) { return {a.v * b.v, a.m * b.m}; }
Val operator/(Val a, Val b) { return {a.v / b.v, a.m / std::fabs(b.v)}; }
Val sqrt_of(Val a) { return {std::sqrt(a.v), std::sqrt(a.m)}; }  // a is a sum of non-negative terms

enum class Optimizer { Sgd, Adam, AdamW, Rmsprop, Adagrad };

struct OptimizerCase {
    Optimizer kind;
    const char* label;
    float lr, weight_decay;
    float momentum = 0, dampening = 0;  // SGD, RMSprop
    bool nesterov = false, first_step = false;
    float beta1 = 0.9f, beta2 = 0.999f, eps = 1e-8f;  // Adam; RMSprop uses beta2 as alpha
    int64_t step = 1;
};

void optimizer_case(Context& cx, const OptimizerCase& o, int64_t n) {
    std::string name = std::string("optimizer ") + o.label + " n=" + std::to_string(n);
    cx.report.run(name, [&] {
        Problems problems;
        Rng rng(seed_of(name));
        std::vector<float> param = uniform(rng, n, -1, 1), grad = uniform(rng, n, -1, 1);
        std::vector<float> s1, s2;  // state: velocity / m / square_avg / sum, and v / velocity
        switch (o.kind) {
            case Optimizer::Sgd: s1 = uniform(rng, n, -0.1, 0.1); break;
            case Optimizer::Adam: case Optimizer::AdamW:
                s1 = uniform(rng, n, -0.1, 0.1);
                s2 = uniform(rng, n, 0, 0.01);
                break;
            case Optimizer::Rmsprop:
                s1 = uniform(rng, n, 0, 0.01);
                s2 = uniform(rng, n, -0.1, 0.1);
                break;
            case Optimizer::Adagrad: s1 = uniform(rng, n, 0, 1); break;
        }
        DeviceArray<float> P(cx.device, param), G(cx.device, grad), S1(cx.device, s1), S2(cx.device, s2);
        switch (o.kind) {
            case Optimizer::Sgd:
                expect_ok(kn_sgd_step_f32(P.get(), G.get(), o.momentum != 0 ? S1.get() : nullptr, n, o.lr, o.momentum,
                                          o.dampening, o.weight_decay, o.nesterov, o.first_step),
                          "kn_sgd_step_f32");
                break;
            case Optimizer::Adam: case Optimizer::AdamW:
                expect_ok(kn_adam_step_f32(P.get(), G.get(), S1.get(), S2.get(), n, o.lr, o.beta1, o.beta2, o.eps,
                                           o.weight_decay, o.kind == Optimizer::AdamW, o.step),
                          "kn_adam_step_f32");
                break;
            case Optimizer::Rmsprop:
                expect_ok(kn_rmsprop_step_f32(P.get(), G.get(), S1.get(), o.momentum != 0 ? S2.get() : nullptr, n, o.lr,
                                              o.beta2, o.eps, o.weight_decay, o.momentum),
                          "kn_rmsprop_step_f32");
                break;
            case Optimizer::Adagrad:
                expect_ok(kn_adagrad_step_f32(P.get(), G.get(), S1.get(), n, o.lr, o.eps, o.weight_decay),
                          "kn_adagrad_step_f32");
                break;
        }
        std::vector<Val> want_p(static_cast<size_t>(n)), want_s1(s1.size()), want_s2(s2.size());
        const Val lr = val(o.lr), wd = val(o.weight_decay), one = val(1.0), eps = val(o.eps);
        for (int64_t i = 0; i < n; ++i) {
            Val p = val(param[i]), g = val(grad[i]);
            switch (o.kind) {
                case Optimizer::Sgd: {
                    g = g + wd * p;
                    if (o.momentum != 0) {
                        Val mu = val(o.momentum);
                        Val vel = o.first_step ? g : mu * val(s1[i]) + (one - val(o.dampening)) * g;
                        want_s1[i] = vel;
                        g = o.nesterov ? g + mu * vel : vel;
                    }
                    want_p[i] = p - lr * g;
                    break;
                }
                case Optimizer::Adam: case Optimizer::AdamW: {
                    if (o.kind == Optimizer::AdamW) p = p * (one - lr * wd);
                    else g = g + wd * p;
                    Val b1 = val(o.beta1), b2 = val(o.beta2);
                    Val m = b1 * val(s1[i]) + (one - b1) * g;
                    Val v = b2 * val(s2[i]) + (one - b2) * g * g;
                    want_s1[i] = m;
                    want_s2[i] = v;
                    double bc1 = 1.0 - std::pow(double(o.beta1), double(o.step));
                    double bc2 = 1.0 - std::pow(double(o.beta2), double(o.step));
                    Val update = lr * (m / val(bc1)) / (sqrt_of(v / val(bc2)) + eps);
                    // Bias corrections from a float pow: relative error 16 eps beta^t / (1 - beta^t).
                    double bc_rel = 16 * kEps * ((1 - bc1) / bc1 + 0.5 * (1 - bc2) / bc2);
                    update.m += std::fabs(update.v) * bc_rel / (16 * kEps);
                    want_p[i] = p - update;
                    break;
                }
                case Optimizer::Rmsprop: {
                    g = g + wd * p;
                    Val alpha = val(o.beta2);
                    Val sa = alpha * val(s1[i]) + (one - alpha) * g * g;
                    want_s1[i] = sa;
                    Val step = g / (sqrt_of(sa) + eps);
                    if (o.momentum != 0) {
                        Val vel = val(o.momentum) * val(s2[i]) + step;
                        want_s2[i] = vel;
                        want_p[i] = p - lr * vel;
                    } else {
                        want_p[i] = p - lr * step;
                    }
                    break;
                }
                case Optimizer::Adagrad: {
                    g = g + wd * p;
                    Val sum = val(s1[i]) + g * g;
                    want_s1[i] = sum;
                    want_p[i] = p - lr * g / (sqrt_of(sum) + eps);
                    break;
                }
            }
        }
        auto check = [&](DeviceArray<float>& buf, const std::vector<Val>& want, const char* what, bool updated) {
            std::vector<float> got = buf.read();
            if (!updated) {  // a state buffer the call does not use must be untouched
                problems.add(first_changed(got, buf.written(), 0, buf.size() + kGuard, (std::string(what) + " (unused)").c_str()));
                return;
            }
            problems.add(compare(n, [&](int64_t i) { return got[i]; }, [&](int64_t i) { return want[i].v; },
                                 [&](int64_t i) { return 16 * kEps * want[i].m; })
                             .describe(what));
            problems.add(guard_violation(got, buf, what));
        };
        check(P, want_p, "param", true);
        problems.add(input_violation(G, "grad"));
        switch (o.kind) {
            case Optimizer::Sgd: check(S1, want_s1, "velocity", o.momentum != 0); break;
            case Optimizer::Adam: case Optimizer::AdamW:
                check(S1, want_s1, "m", true);
                check(S2, want_s2, "v", true);
                break;
            case Optimizer::Rmsprop:
                check(S1, want_s1, "square_avg", true);
                check(S2, want_s2, "velocity", o.momentum != 0);
                break;
            case Optimizer::Adagrad: check(S1, want_s1, "sum", true); break;
        }
        return problems;
    });
}

// One optimizer's many-tensor call as the self-tests drive it: the operands (param, grad, then the
// states; a state the call does not use, such as velocity without momentum, is left out), the range
// each starts in, and the two calls to compare. many(handles, n, count): handles[k] is operand k's
// array; one(buffers, n): buffers[k] is operand k of one tensor.
struct ManyCall {
    std::vector<const char*> names;
    std::vector<std::pair<double, double>> init;
    std::function<kn_status(kn_buffer* const* const* handles, const int64_t* n, int64_t count)> many;
    std::function<kn_status(kn_buffer* const* buffers, int64_t n)> one;
};

// Argument order of the calls: (count, param, grad, states..., n, hyper-parameters).
ManyCall sgd_many(float momentum, float dampening, float wd, bool nesterov, bool first_step) {
    const float lr = 0.05f;
    ManyCall c;
    c.names = {"param", "grad"};
    c.init = {{-1, 1}, {-1, 1}};
    if (momentum != 0.0f) {
        c.names.push_back("velocity");
        c.init.push_back({-0.1, 0.1});
    }
    c.many = [=](kn_buffer* const* const* h, const int64_t* n, int64_t count) {
        return kn_sgd_step_many_f32(count, h[0], const_cast<const kn_buffer* const*>(h[1]), momentum != 0.0f ? h[2] : nullptr,
                                    n, lr, momentum, dampening, wd, nesterov, first_step);
    };
    c.one = [=](kn_buffer* const* b, int64_t n) {
        return kn_sgd_step_f32(b[0], b[1], momentum != 0.0f ? b[2] : nullptr, n, lr, momentum, dampening, wd, nesterov,
                               first_step);
    };
    return c;
}

ManyCall adam_many(bool decoupled, int64_t step) {
    const float lr = 1e-3f, beta1 = 0.9f, beta2 = 0.999f, eps = 1e-8f, wd = 0.01f;
    ManyCall c;
    c.names = {"param", "grad", "m", "v"};
    c.init = {{-1, 1}, {-1, 1}, {-0.1, 0.1}, {0, 0.01}};
    c.many = [=](kn_buffer* const* const* h, const int64_t* n, int64_t count) {
        return kn_adam_step_many_f32(count, h[0], const_cast<const kn_buffer* const*>(h[1]), h[2], h[3], n, lr, beta1, beta2,
                                     eps, wd, decoupled, step);
    };
    c.one = [=](kn_buffer* const* b, int64_t n) {
        return kn_adam_step_f32(b[0], b[1], b[2], b[3], n, lr, beta1, beta2, eps, wd, decoupled, step);
    };
    return c;
}

ManyCall rmsprop_many(float momentum, float wd) {
    const float lr = 1e-2f, alpha = 0.99f, eps = 1e-8f;
    ManyCall c;
    c.names = {"param", "grad", "square_avg"};
    c.init = {{-1, 1}, {-1, 1}, {0, 0.01}};
    if (momentum != 0.0f) {
        c.names.push_back("velocity");
        c.init.push_back({-0.1, 0.1});
    }
    c.many = [=](kn_buffer* const* const* h, const int64_t* n, int64_t count) {
        return kn_rmsprop_step_many_f32(count, h[0], const_cast<const kn_buffer* const*>(h[1]), h[2],
                                        momentum != 0.0f ? h[3] : nullptr, n, lr, alpha, eps, wd, momentum);
    };
    c.one = [=](kn_buffer* const* b, int64_t n) {
        return kn_rmsprop_step_f32(b[0], b[1], b[2], momentum != 0.0f ? b[3] : nullptr, n, lr, alpha, eps, wd, momentum);
    };
    return c;
}

ManyCall adagrad_many(float wd) {
    const float lr = 1e-2f, eps = 1e-10f;
    ManyCall c;
    c.names = {"param", "grad", "sum"};
    c.init = {{-1, 1}, {-1, 1}, {0, 0.1}};
    c.many = [=](kn_buffer* const* const* h, const int64_t* n, int64_t count) {
        return kn_adagrad_step_many_f32(count, h[0], const_cast<const kn_buffer* const*>(h[1]), h[2], n, lr, eps, wd);
    };
    c.one = [=](kn_buffer* const* b, int64_t n) { return kn_adagrad_step_f32(b[0], b[1], b[2], n, lr, eps, wd); };
    return c;
}

// A kn_*_step_many_f32 call against one per-tensor call per tensor on copies of the same data: the
// per-tensor calls are checked against float64 above, so equality here carries that check over. On
// the CPU and OpenCL both calls run the same loop for every element, so the results must agree bit
// for bit; CUDA runs a different kernel (the multi-tensor one), where the compiler may contract the
// float operations differently, so it is held to the per-tensor bound of 16 eps times the magnitude.
void many_case(Context& cx, const char* optimizer, const std::string& label, std::vector<int64_t> sizes, const ManyCall& call) {
    std::string name = std::string("optimizer ") + optimizer + "_step_many " + label + " (" + std::to_string(sizes.size()) +
                       " tensors)";
    cx.report.run(name, [&] {
        Problems problems;
        Rng rng(seed_of(name));
        const bool exact = cx.kind != KN_DEVICE_CUDA;
        const size_t K = call.names.size();
        using Arrays = std::vector<std::unique_ptr<DeviceArray<float>>>;
        std::vector<Arrays> many(K), single(K);
        for (int64_t n : sizes)
            for (size_t k = 0; k < K; ++k) {
                std::vector<float> init = uniform(rng, n, call.init[k].first, call.init[k].second);
                many[k].push_back(std::make_unique<DeviceArray<float>>(cx.device, init));
                single[k].push_back(std::make_unique<DeviceArray<float>>(cx.device, init));
            }
        std::vector<std::vector<kn_buffer*>> handles(K);
        std::vector<kn_buffer* const*> arrays(K);
        for (size_t k = 0; k < K; ++k) {
            for (auto& a : many[k]) handles[k].push_back(a->get());
            arrays[k] = handles[k].data();
        }
        expect_ok(call.many(arrays.data(), sizes.data(), static_cast<int64_t>(sizes.size())), name.c_str());
        for (size_t t = 0; t < sizes.size(); ++t) {
            std::vector<kn_buffer*> one(K);
            for (size_t k = 0; k < K; ++k) one[k] = single[k][t]->get();
            expect_ok(call.one(one.data(), sizes[t]), "the per-tensor call");
        }
        for (size_t t = 0; t < sizes.size(); ++t)
            for (size_t k = 0; k < K; ++k) {
                std::vector<float> got = many[k][t]->read(), want = single[k][t]->read();
                std::string what = std::string(call.names[k]) + "[" + std::to_string(t) + "] (n=" + std::to_string(sizes[t]) + ")";
                if (exact) {
                    // Bit for bit, guard zone included (nothing written past n).
                    if (std::memcmp(got.data(), want.data(), got.size() * sizeof(float)) != 0)
                        problems.add(first_changed(got, want, 0, static_cast<int64_t>(got.size()), (what + " vs per-tensor:").c_str()));
                } else {
                    problems.add(compare(sizes[t], [&](int64_t i) { return got[i]; }, [&](int64_t i) { return double(want[i]); },
                                         [&](int64_t i) { return 16 * kEps * (std::fabs(double(want[i])) + 1.0); })
                                     .describe(what.c_str()));
                    problems.add(guard_violation(got, *many[k][t], what.c_str()));
                }
            }
        return problems;
    });
}

// On an x86 CPU every optimizer update reads and writes subnormals as zero (kernels.h; Intel cores
// take a ~100-cycle assist per subnormal operand, and decaying moment estimates sit in that range
// for thousands of steps), and leaves the calling thread's MXCSR as it found it. Elements: a
// subnormal gradient and state (read as 0: the state becomes 0, the parameter keeps its value); a
// state just above FLT_MIN whose decayed value falls below it (flushed to 0); a normal element,
// which must still be updated (its exact value is checked by the optimizer cases above).
void optimizer_subnormal_case(Context& cx) {
    if (!SELFTEST_X86 || cx.kind != KN_DEVICE_CPU) return;  // elsewhere IEEE subnormals are kept (kernels.h)
    cx.report.run("optimizer updates flush subnormals to zero on x86 and keep the caller's MXCSR", [&] {
        Problems problems;
#if SELFTEST_X86
        const float tiny = 1e-39f, edge = 1.2e-38f;      // subnormal; normal, but 0.9 * edge is not
        const std::vector<float> param = {1.0f, 1.0f, 0.5f}, grad = {tiny, 0.0f, 0.25f};
        const std::vector<float> s1 = {tiny, edge, 0.1f}, s2 = {tiny, edge, 0.01f};
        const char* names[] = {"sgd momentum", "adam", "rmsprop momentum", "adagrad"};
        for (int which = 0; which < 4; ++which) {
            DeviceArray<float> P(cx.device, param), G(cx.device, grad), S1(cx.device, s1), S2(cx.device, s2);
            const unsigned before = _mm_getcsr();
            kn_status status = KN_OK;
            switch (which) {
                case 0: status = kn_sgd_step_f32(P.get(), G.get(), S1.get(), 3, 0.1f, 0.9f, 0.0f, 0.0f, 0, 0); break;
                case 1: status = kn_adam_step_f32(P.get(), G.get(), S1.get(), S2.get(), 3, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.0f, 0, 5); break;
                case 2: status = kn_rmsprop_step_f32(P.get(), G.get(), S2.get(), S1.get(), 3, 1e-2f, 0.9f, 1e-8f, 0.0f, 0.9f); break;
                default: status = kn_adagrad_step_f32(P.get(), G.get(), S1.get(), 3, 1e-2f, 1e-10f, 0.0f); break;
            }
            expect_ok(status, names[which]);
            if (_mm_getcsr() != before) problems.add(std::string(names[which]) + " changed the caller's MXCSR");
            const std::vector<float> p = P.read(), a = S1.read(), b = S2.read();
            const std::string who = std::string(names[which]) + ": ";
            // Element 0: everything subnormal is read as 0, so the state is 0 and the parameter unchanged.
            if (a[0] != 0.0f) problems.add(who + "state 1 of a subnormal element is " + fmt(a[0]) + ", want 0");
            if (p[0] != 1.0f) problems.add(who + "the parameter of a subnormal element moved to " + fmt(p[0]));
            // Element 1: a momentum / moment 0.9 * edge < FLT_MIN is flushed (Adagrad's sum only grows).
            if (which == 0 || which == 1) {
                if (a[1] != 0.0f) problems.add(who + "a decayed state below FLT_MIN is " + fmt(a[1]) + ", want 0");
            }
            if (which == 1 && b[0] != 0.0f) problems.add(who + "v of the subnormal element is " + fmt(b[0]) + ", want 0");
            // Element 2: ordinary values, the ordinary update (a change well above rounding).
            if (!(std::fabs(p[2] - 0.5f) > 1e-4f)) problems.add(who + "the normal element did not move: " + fmt(p[2]));
        }
#endif
        return problems;
    });
}

void test_optimizers(Context& cx) {
    for (int64_t n : {int64_t{1}, int64_t{33}, int64_t{1000}, cx.quick ? int64_t{4099} : int64_t{65539}}) {
        clamp_case(cx, n, -0.5f, 1.25f, false);
        clamp_case(cx, n, 0.75f, 0.75f, n == 33);  // low == high, and in place once
    }
    clamp_case(cx, 0, -1.0f, 1.0f, false);

    std::vector<OptimizerCase> cases;
    {
        OptimizerCase o{Optimizer::Sgd, "sgd plain", 0.1f, 0.0f};
        cases.push_back(o);
        o.label = "sgd weight_decay";
        o.weight_decay = 0.01f;
        cases.push_back(o);
        o.label = "sgd momentum first_step";
        o.momentum = 0.9f;
        o.first_step = true;
        cases.push_back(o);
        o.label = "sgd momentum dampening";
        o.first_step = false;
        o.dampening = 0.1f;
        cases.push_back(o);
        o.label = "sgd nesterov";
        o.dampening = 0.0f;
        o.nesterov = true;
        cases.push_back(o);
    }
    for (Optimizer k : {Optimizer::Adam, Optimizer::AdamW}) {
        bool w = k == Optimizer::AdamW;
        OptimizerCase o{k, w ? "adamw step 1" : "adam step 1", 1e-3f, 0.0f};
        cases.push_back(o);
        o.label = w ? "adamw step 10 weight_decay" : "adam step 10 weight_decay";
        o.step = 10;
        o.weight_decay = 0.05f;
        cases.push_back(o);
        o.label = w ? "adamw step 1000 beta 0.8/0.99" : "adam step 1000 beta 0.8/0.99";
        o.step = 1000;
        o.beta1 = 0.8f;
        o.beta2 = 0.99f;
        o.eps = 1e-6f;
        cases.push_back(o);
    }
    {
        OptimizerCase o{Optimizer::Rmsprop, "rmsprop", 1e-2f, 0.0f};
        o.beta2 = 0.99f;  // alpha
        cases.push_back(o);
        o.label = "rmsprop momentum weight_decay";
        o.momentum = 0.9f;
        o.weight_decay = 0.01f;
        cases.push_back(o);
    }
    {
        OptimizerCase o{Optimizer::Adagrad, "adagrad", 1e-2f, 0.0f};
        o.eps = 1e-10f;
        cases.push_back(o);
        o.label = "adagrad weight_decay";
        o.weight_decay = 0.1f;
        cases.push_back(o);
    }
    for (const auto& o : cases)
        for (int64_t n : {int64_t{1}, int64_t{33}, cx.quick ? int64_t{1000} : int64_t{65539}}) optimizer_case(cx, o, n);
    optimizer_case(cx, cases[0], 0);

    // Sizes that break the 16K-element chunks of the CPU pool: empty tensors, one element, a prime,
    // a tensor crossing a chunk edge, tensors smaller than one SIMD vector between large ones.
    many_case(cx, "adam", "0,1,7,4097", {0, 1, 7, 4097}, adam_many(false, 1));
    many_case(cx, "adam", "mlp-like adamw", {784 * 51, 512, 512 * 25, 256, 2560, 10}, adam_many(true, 10));
    many_case(cx, "adam", "chunk-spanning", {16383, 3, 16385, 0, 1, cx.quick ? int64_t{4099} : int64_t{40009}, 5},
              adam_many(false, 1000));
    std::vector<int64_t> many_small;  // more tensors than one CUDA launch takes (64)
    for (int i = 0; i < 70; ++i) many_small.push_back(1 + (i * 37) % 129);
    many_case(cx, "adam", "70 small", many_small, adam_many(true, 3));
    many_case(cx, "adam", "none", {}, adam_many(false, 1));
    optimizer_subnormal_case(cx);

    // SGD, RMSprop and Adagrad over the sizes the brief of their many-calls names (0, 1, 7, 33, 1000,
    // 4099), with and without the optional velocity, Nesterov, dampening and weight decay.
    const std::vector<int64_t> sizes = {0, 1, 7, 33, 1000, 4099};
    many_case(cx, "sgd", "plain", sizes, sgd_many(0.0f, 0.0f, 0.0f, false, false));
    many_case(cx, "sgd", "momentum first step", sizes, sgd_many(0.9f, 0.0f, 0.0f, false, true));
    many_case(cx, "sgd", "momentum dampening wd", sizes, sgd_many(0.9f, 0.1f, 1e-2f, false, false));
    many_case(cx, "sgd", "nesterov wd", sizes, sgd_many(0.9f, 0.0f, 1e-2f, true, false));
    many_case(cx, "sgd", "nesterov first step", sizes, sgd_many(0.9f, 0.0f, 0.0f, true, true));
    many_case(cx, "sgd", "momentum chunk-spanning", {16383, 3, 16385, 0, 1, 4099, 5}, sgd_many(0.9f, 0.0f, 5e-4f, false, false));
    many_case(cx, "sgd", "momentum 70 small", many_small, sgd_many(0.9f, 0.0f, 0.0f, true, false));
    many_case(cx, "rmsprop", "plain", sizes, rmsprop_many(0.0f, 0.0f));
    many_case(cx, "rmsprop", "momentum wd", sizes, rmsprop_many(0.9f, 1e-2f));
    many_case(cx, "rmsprop", "momentum chunk-spanning", {16383, 3, 16385, 0, 1, 4099, 5}, rmsprop_many(0.5f, 0.0f));
    many_case(cx, "rmsprop", "70 small", many_small, rmsprop_many(0.0f, 1e-3f));
    many_case(cx, "adagrad", "plain", sizes, adagrad_many(0.0f));
    many_case(cx, "adagrad", "wd", sizes, adagrad_many(1e-2f));
    many_case(cx, "adagrad", "chunk-spanning", {16383, 3, 16385, 0, 1, 4099, 5}, adagrad_many(0.0f));
    many_case(cx, "adagrad", "70 small", many_small, adagrad_many(1e-3f));
    many_case(cx, "sgd", "none", {}, sgd_many(0.9f, 0.0f, 0.0f, false, false));
}

// =================================================================================================
// Memory: write/read with offsets, fill, copies within and across devices
// =================================================================================================

// Last on each device: every buffer the tests made is freed, so kn_device_trim must leave nothing
// behind, neither cached blocks nor the backend's workspace (compute-sanitizer's leak check then
// reports only real leaks).
void test_trim(Context& cx) {
    cx.report.run("trim: no live buffers, nothing cached afterwards", [&] {
        Problems problems;
        expect_ok(kn_device_trim(cx.device), "kn_device_trim");
        int64_t live = -1, buffers = -1, cached = -1;
        expect_ok(kn_device_memory_stats(cx.device, &live, &buffers, &cached, nullptr), "kn_device_memory_stats");
        if (live != 0 || buffers != 0)
            problems.add("after every test: " + std::to_string(buffers) + " buffers of " + std::to_string(live) +
                         " bytes still live (a test leaked a buffer)");
        if (cached != 0) problems.add("after kn_device_trim: " + std::to_string(cached) + " bytes still cached");
        // The workspace comes back on demand: a reduction after the trim still works.
        kn_buffer* x = nullptr;
        kn_buffer* y = nullptr;
        const int64_t n = 100000;
        expect_ok(kn_buffer_create(cx.device, n * 4, &x), "kn_buffer_create");
        std::unique_ptr<kn_buffer, kn_status (*)(kn_buffer*)> hold_x(x, kn_buffer_free);
        expect_ok(kn_buffer_create(cx.device, 4, &y), "kn_buffer_create");
        std::unique_ptr<kn_buffer, kn_status (*)(kn_buffer*)> hold_y(y, kn_buffer_free);
        expect_ok(kn_buffer_fill_f32(x, 0, n, 0.5f), "kn_buffer_fill_f32");
        expect_ok(kn_reduce_f32(KN_REDUCE_SUM, x, y, 1, n, 1), "kn_reduce_f32 after trim");
        float sum = 0;
        expect_ok(kn_buffer_read(y, 0, &sum, 4), "kn_buffer_read");
        if (sum != 50000.0f) problems.add("sum of 100000 halves after a trim is " + std::to_string(sum) + ", want 50000");
        hold_x.reset();
        hold_y.reset();
        expect_ok(kn_device_trim(cx.device), "kn_device_trim");
        return problems;
    });
}

// The caching allocator's counters: a block freed and requested again at the same size comes from the
// cache (cache_hits + 1, device_allocations unchanged). With KN_CACHING_ALLOCATOR=0 every request
// goes to the device instead.
void test_allocation_counts(Context& cx) {
    cx.report.run("allocation counts: a freed block is reused from the cache", [&] {
        Problems problems;
        const char* env = std::getenv("KN_CACHING_ALLOCATOR");
        const bool caching = !(env && std::string(env) == "0");
        const int64_t bytes = 12345 * 4;
        kn_buffer* b = nullptr;
        expect_ok(kn_buffer_create(cx.device, bytes, &b), "kn_buffer_create");
        expect_ok(kn_buffer_free(b), "kn_buffer_free");
        int64_t hits0 = -1, allocations0 = -1, hits1 = -1, allocations1 = -1;
        expect_ok(kn_device_allocation_counts(cx.device, &hits0, &allocations0), "kn_device_allocation_counts");
        expect_ok(kn_buffer_create(cx.device, bytes, &b), "kn_buffer_create");
        expect_ok(kn_device_allocation_counts(cx.device, &hits1, &allocations1), "kn_device_allocation_counts");
        expect_ok(kn_buffer_free(b), "kn_buffer_free");
        const int64_t want_hits = caching ? 1 : 0, want_allocations = caching ? 0 : 1;
        if (hits1 - hits0 != want_hits || allocations1 - allocations0 != want_allocations)
            problems.add("the second request of " + std::to_string(bytes) + " bytes added " + std::to_string(hits1 - hits0) +
                         " cache hits and " + std::to_string(allocations1 - allocations0) + " device allocations, want " +
                         std::to_string(want_hits) + " and " + std::to_string(want_allocations));
        expect_ok(kn_device_allocation_counts(cx.device, nullptr, nullptr), "kn_device_allocation_counts (NULL outputs)");
        return problems;
    });
}

void test_memory(Context& cx) {
    cx.report.run("memory write/read/fill/copy", [&] {
        Problems problems;
        Rng rng(seed_of("memory"));
        const int64_t n = 1003;
        std::vector<float> data = uniform(rng, n, -10, 10);
        kn_buffer* buf = nullptr;
        expect_ok(kn_buffer_create(cx.device, n * 4, &buf), "kn_buffer_create");
        std::unique_ptr<kn_buffer, kn_status (*)(kn_buffer*)> hold(buf, kn_buffer_free);
        int64_t size = -1;
        expect_ok(kn_buffer_size(buf, &size), "kn_buffer_size");
        if (size != n * 4) problems.add("kn_buffer_size says " + std::to_string(size) + ", want " + std::to_string(n * 4));
        kn_device* owner = nullptr;
        expect_ok(kn_buffer_device(buf, &owner), "kn_buffer_device");
        if (owner != cx.device) problems.add("kn_buffer_device returned another device");

        // Write in two pieces at offsets, read back in different pieces.
        expect_ok(kn_buffer_write(buf, 0, data.data(), 400 * 4), "kn_buffer_write");
        expect_ok(kn_buffer_write(buf, 400 * 4, data.data() + 400, (n - 400) * 4), "kn_buffer_write (offset)");
        std::vector<float> back(static_cast<size_t>(n));
        expect_ok(kn_buffer_read(buf, 0, back.data(), 7 * 4), "kn_buffer_read");
        expect_ok(kn_buffer_read(buf, 7 * 4, back.data() + 7, (n - 7) * 4), "kn_buffer_read (offset)");
        problems.add(first_changed(back, data, 0, n, "write/read round trip:"));

        // Fill a middle range.
        expect_ok(kn_buffer_fill_f32(buf, 100, 517, 2.5f), "kn_buffer_fill_f32");
        std::vector<float> expect = data;
        std::fill(expect.begin() + 100, expect.begin() + 617, 2.5f);
        expect_ok(kn_buffer_read(buf, 0, back.data(), n * 4), "kn_buffer_read");
        problems.add(first_changed(back, expect, 0, n, "after fill:"));

        // The address handed to libraries that take device memory (CUDA-aware MPI): the buffer's own
        // bytes on the CPU (read through it), an address offset by the byte offset on CUDA, refused on OpenCL.
        void* base = nullptr;
        void* at = nullptr;
        kn_status address_status = kn_buffer_address(buf, 0, &base);
        if (cx.kind == KN_DEVICE_OPENCL) {
            if (address_status != KN_ERROR_NOT_SUPPORTED) problems.add("kn_buffer_address on OpenCL did not say KN_ERROR_NOT_SUPPORTED");
        } else {
            expect_ok(address_status, "kn_buffer_address");
            expect_ok(kn_buffer_address(buf, 400 * 4, &at), "kn_buffer_address (offset)");
            if (!base || static_cast<char*>(at) - static_cast<char*>(base) != 400 * 4)
                problems.add("kn_buffer_address: offset 1600 is not the base address + 1600 bytes");
            if (cx.kind == KN_DEVICE_CPU) {
                expect_ok(kn_device_synchronize(cx.device), "kn_device_synchronize");
                std::vector<float> seen(static_cast<const float*>(base), static_cast<const float*>(base) + n);
                problems.add(first_changed(seen, expect, 0, n, "read through kn_buffer_address:"));
            }
        }
        void* past = nullptr;
        if (cx.kind != KN_DEVICE_OPENCL && kn_buffer_address(buf, n * 4 + 4, &past) != KN_ERROR_SHAPE_MISMATCH)
            problems.add("kn_buffer_address 4 bytes past the end was not refused with KN_ERROR_SHAPE_MISMATCH");

        // Copy within the buffer (non-overlapping ranges) and into a second buffer of this device.
        expect_ok(kn_buffer_copy(buf, 800 * 4, buf, 10 * 4, 150 * 4), "kn_buffer_copy (same buffer)");
        std::copy(expect.begin() + 10, expect.begin() + 160, expect.begin() + 800);
        kn_buffer* second = nullptr;
        expect_ok(kn_buffer_create(cx.device, n * 4, &second), "kn_buffer_create");
        std::unique_ptr<kn_buffer, kn_status (*)(kn_buffer*)> hold2(second, kn_buffer_free);
        expect_ok(kn_buffer_copy(second, 0, buf, 0, n * 4), "kn_buffer_copy");
        expect_ok(kn_buffer_read(second, 0, back.data(), n * 4), "kn_buffer_read");
        problems.add(first_changed(back, expect, 0, n, "after copies:"));

        // Across devices and back (staged through the host).
        if (cx.other) {
            kn_buffer* remote = nullptr;
            expect_ok(kn_buffer_create(cx.other, n * 4, &remote), "kn_buffer_create (other device)");
            std::unique_ptr<kn_buffer, kn_status (*)(kn_buffer*)> hold3(remote, kn_buffer_free);
            expect_ok(kn_buffer_copy(remote, 0, second, 0, n * 4), "kn_buffer_copy (to other device)");
            expect_ok(kn_buffer_fill_f32(second, 0, n, 0.0f), "kn_buffer_fill_f32");
            expect_ok(kn_buffer_copy(second, 4, remote, 4, (n - 1) * 4), "kn_buffer_copy (from other device)");
            expect_ok(kn_buffer_read(second, 0, back.data(), n * 4), "kn_buffer_read");
            expect[0] = 0.0f;
            problems.add(first_changed(back, expect, 0, n, "after a cross-device round trip:"));
        }

        // Zero-byte buffers exist and can be freed; synchronize works.
        kn_buffer* empty = nullptr;
        expect_ok(kn_buffer_create(cx.device, 0, &empty), "kn_buffer_create (0 bytes)");
        expect_ok(kn_buffer_free(empty), "kn_buffer_free (0 bytes)");
        expect_ok(kn_buffer_free(nullptr), "kn_buffer_free (NULL)");
        expect_ok(kn_device_synchronize(cx.device), "kn_device_synchronize");
        return problems;
    });
}

// =================================================================================================
// Error paths
// =================================================================================================

void test_errors(Context& cx) {
    auto error_case = [&](const std::string& name, std::function<std::string()> body) {
        cx.report.run("error " + name, [&] {
            Problems p;
            p.add(body());
            return p;
        });
    };
    DeviceArray<float> small(cx.device, std::vector<float>(8, 1.0f));  // 8 + kGuard = 24 floats
    DeviceArray<float> big(cx.device, std::vector<float>(4096, 1.0f));
    DeviceArray<float> big2(cx.device, std::vector<float>(4096, 1.0f));
    DeviceArray<float> big3(cx.device, std::vector<float>(4096, 1.0f));

    // kn_adam_step_many_f32: the message names the tensor index of the bad operand. Two valid
    // tensors (p, g, m, v); each case breaks one thing.
    {
        DeviceArray<float> m0(cx.device, std::vector<float>(4096, 0.0f)), v0(cx.device, std::vector<float>(4096, 0.0f));
        DeviceArray<float> m1(cx.device, std::vector<float>(4096, 0.0f)), v1(cx.device, std::vector<float>(4096, 0.0f));
        kn_buffer* p[2] = {big.get(), big3.get()};
        const kn_buffer* g[2] = {big2.get(), small.get()};
        kn_buffer* m[2] = {m0.get(), m1.get()};
        kn_buffer* v[2] = {v0.get(), v1.get()};
        int64_t n[2] = {100, 5};
        auto call = [&](kn_buffer* const* pp, kn_buffer* const* mm, kn_buffer* const* vv, const int64_t* nn, int64_t step) {
            return kn_adam_step_many_f32(2, pp, g, mm, vv, nn, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.0f, 0, step);
        };
        error_case("adam_step_many same m buffer in two tensors", [&] {
            kn_buffer* shared[2] = {m0.get(), m0.get()};
            return expect_error(cx, call(p, shared, v, n, 1), KN_ERROR_INVALID_ARGUMENT, {"m[0] and m[1]", "same buffer"});
        });
        error_case("adam_step_many grad[1] too small", [&] {
            int64_t n_big[2] = {100, 1000};
            return expect_error(cx, call(p, m, v, n_big, 1), KN_ERROR_SHAPE_MISMATCH, {"grad[1]", "1000"});
        });
        error_case("adam_step_many NULL v[1]", [&] {
            kn_buffer* v_null[2] = {v0.get(), nullptr};
            return expect_error(cx, call(p, m, v_null, n, 1), KN_ERROR_INVALID_ARGUMENT, {"v[1]", "NULL"});
        });
        error_case("adam_step_many negative n[1]", [&] {
            int64_t n_neg[2] = {4, -3};
            return expect_error(cx, call(p, m, v, n_neg, 1), KN_ERROR_INVALID_ARGUMENT, {"n[1]", "-3"});
        });
        error_case("adam_step_many step 0", [&] {
            return expect_error(cx, call(p, m, v, n, 0), KN_ERROR_INVALID_ARGUMENT, {"step"});
        });
        if (cx.other) {
            DeviceArray<float> remote(cx.other, std::vector<float>(16, 0.0f));
            error_case("adam_step_many param[1] on another device", [&] {
                kn_buffer* p_remote[2] = {big.get(), remote.get()};
                return expect_error(cx, call(p_remote, m, v, n, 1), KN_ERROR_DEVICE_MISMATCH, {"param[1]"});
            });
        }
    }

    // kn_sgd/rmsprop/adagrad_step_many_f32: the same checks (one routine in api.cpp), named by
    // array and tensor index. Two valid tensors: param, grad, and a state buffer each.
    {
        DeviceArray<float> s0(cx.device, std::vector<float>(4096, 0.0f)), s1(cx.device, std::vector<float>(4096, 0.0f));
        DeviceArray<float> w0(cx.device, std::vector<float>(4096, 0.0f)), w1(cx.device, std::vector<float>(4096, 0.0f));
        kn_buffer* p[2] = {big.get(), big3.get()};
        const kn_buffer* g[2] = {big2.get(), small.get()};
        kn_buffer* st[2] = {s0.get(), s1.get()};
        kn_buffer* vel[2] = {w0.get(), w1.get()};
        int64_t n[2] = {100, 5};
        auto sgd = [&](kn_buffer* const* pp, kn_buffer* const* vv, const int64_t* nn, float momentum) {
            return kn_sgd_step_many_f32(2, pp, g, vv, nn, 0.1f, momentum, 0.0f, 0.0f, 0, 0);
        };
        error_case("sgd_step_many same velocity buffer in two tensors", [&] {
            kn_buffer* shared[2] = {w1.get(), w1.get()};
            return expect_error(cx, sgd(p, shared, n, 0.9f), KN_ERROR_INVALID_ARGUMENT, {"velocity[0] and velocity[1]", "same buffer"});
        });
        error_case("sgd_step_many param[1] is grad[0]", [&] {
            kn_buffer* aliased[2] = {big.get(), big2.get()};
            return expect_error(cx, sgd(aliased, vel, n, 0.9f), KN_ERROR_INVALID_ARGUMENT, {"grad[0] and param[1]", "same buffer"});
        });
        error_case("sgd_step_many grad[1] too small", [&] {
            int64_t n_big[2] = {100, 1000};
            return expect_error(cx, sgd(p, vel, n_big, 0.9f), KN_ERROR_SHAPE_MISMATCH, {"grad[1]", "1000"});
        });
        error_case("sgd_step_many NULL velocity[1] with momentum", [&] {
            kn_buffer* v_null[2] = {w0.get(), nullptr};
            return expect_error(cx, sgd(p, v_null, n, 0.9f), KN_ERROR_INVALID_ARGUMENT, {"velocity[1]", "NULL"});
        });
        error_case("sgd_step_many NULL velocity array with momentum", [&] {
            return expect_error(cx, sgd(p, nullptr, n, 0.9f), KN_ERROR_INVALID_ARGUMENT, {"momentum", "velocity array"});
        });
        error_case("sgd_step_many negative n[1]", [&] {
            int64_t n_neg[2] = {4, -3};
            return expect_error(cx, sgd(p, nullptr, n_neg, 0.0f), KN_ERROR_INVALID_ARGUMENT, {"n[1]", "-3"});
        });
        error_case("sgd_step_many nesterov without momentum", [&] {
            return expect_error(cx, kn_sgd_step_many_f32(2, p, g, nullptr, n, 0.1f, 0.0f, 0.0f, 0.0f, 1, 0),
                                KN_ERROR_INVALID_ARGUMENT, {"Nesterov"});
        });
        error_case("rmsprop_step_many NULL velocity[0] with momentum", [&] {
            kn_buffer* v_null[2] = {nullptr, w1.get()};
            return expect_error(cx, kn_rmsprop_step_many_f32(2, p, g, st, v_null, n, 0.01f, 0.99f, 1e-8f, 0.0f, 0.9f),
                                KN_ERROR_INVALID_ARGUMENT, {"velocity[0]", "NULL"});
        });
        error_case("rmsprop_step_many square_avg[1] is velocity[0]", [&] {
            kn_buffer* v_shared[2] = {s1.get(), w1.get()};
            return expect_error(cx, kn_rmsprop_step_many_f32(2, p, g, st, v_shared, n, 0.01f, 0.99f, 1e-8f, 0.0f, 0.9f),
                                KN_ERROR_INVALID_ARGUMENT, {"velocity[0] and square_avg[1]", "same buffer"});
        });
        error_case("adagrad_step_many sum[1] too small", [&] {
            kn_buffer* short_sum[2] = {s0.get(), small.get()};
            int64_t n_mid[2] = {100, 50};
            kn_buffer* g_big[2] = {big2.get(), w1.get()};
            return expect_error(cx, kn_adagrad_step_many_f32(2, p, g_big, short_sum, n_mid, 0.01f, 1e-10f, 0.0f),
                                KN_ERROR_SHAPE_MISMATCH, {"sum[1]", "50"});
        });
        error_case("adagrad_step_many negative n[0]", [&] {
            int64_t n_neg[2] = {-1, 5};
            return expect_error(cx, kn_adagrad_step_many_f32(2, p, g, st, n_neg, 0.01f, 1e-10f, 0.0f), KN_ERROR_INVALID_ARGUMENT,
                                {"n[0]", "-1"});
        });
        if (cx.other) {
            DeviceArray<float> remote(cx.other, std::vector<float>(16, 0.0f));
            error_case("sgd_step_many velocity[1] on another device", [&] {
                kn_buffer* v_remote[2] = {w0.get(), remote.get()};
                return expect_error(cx, sgd(p, v_remote, n, 0.9f), KN_ERROR_DEVICE_MISMATCH, {"velocity[1]"});
            });
            error_case("adagrad_step_many sum[0] on another device", [&] {
                kn_buffer* s_remote[2] = {remote.get(), s1.get()};
                return expect_error(cx, kn_adagrad_step_many_f32(2, p, g, s_remote, n, 0.01f, 1e-10f, 0.0f),
                                    KN_ERROR_DEVICE_MISMATCH, {"sum[0]"});
            });
        }
    }

    // GEMM: A is 13x17 but its buffer holds 24 floats; B and C fit.
    error_case("gemm A buffer too small", [&] {
        kn_status s = kn_gemm_f32(KN_NO_TRANSPOSE, KN_NO_TRANSPOSE, 13, 11, 17, 1.0f, small.get(), 17, 0, big.get(), 11,
                                  0, 0.0f, big2.get(), 11, 0, 1);
        return expect_error(cx, s, KN_ERROR_SHAPE_MISMATCH, {"13", "17"});
    });
    error_case("gemm C buffer too small", [&] {
        kn_status s = kn_gemm_f32(KN_NO_TRANSPOSE, KN_NO_TRANSPOSE, 19, 23, 3, 1.0f, big.get(), 3, 0, big2.get(), 23, 0,
                                  0.0f, small.get(), 23, 0, 1);
        return expect_error(cx, s, KN_ERROR_SHAPE_MISMATCH, {"19", "23"});
    });
    error_case("gemm lda smaller than k", [&] {
        kn_status s = kn_gemm_f32(KN_NO_TRANSPOSE, KN_NO_TRANSPOSE, 4, 4, 29, 1.0f, big.get(), 5, 0, big2.get(), 4, 0,
                                  0.0f, big3.get(), 4, 0, 1);
        return expect_error(cx, s, KN_ERROR_SHAPE_MISMATCH, {"29"});
    });
    error_case("gemm batches of C overlap", [&] {
        kn_status s = kn_gemm_f32(KN_NO_TRANSPOSE, KN_NO_TRANSPOSE, 4, 4, 4, 1.0f, big.get(), 4, 16, big2.get(), 4, 16,
                                  0.0f, big3.get(), 4, 8, 3);
        return expect_error(cx, s, KN_ERROR_SHAPE_MISMATCH);
    });
    error_case("gemm null B", [&] {
        kn_status s = kn_gemm_f32(KN_NO_TRANSPOSE, KN_NO_TRANSPOSE, 2, 2, 2, 1.0f, big.get(), 2, 0, nullptr, 2, 0,
                                  0.0f, big3.get(), 2, 0, 1);
        return expect_error(cx, s, KN_ERROR_INVALID_ARGUMENT);
    });
    error_case("gemm negative m", [&] {
        kn_status s = kn_gemm_f32(KN_NO_TRANSPOSE, KN_NO_TRANSPOSE, -2, 2, 2, 1.0f, big.get(), 2, 0, big2.get(), 2, 0,
                                  0.0f, big3.get(), 2, 0, 1);
        return expect_error(cx, s, KN_ERROR_INVALID_ARGUMENT);
    });
    error_case("gemm invalid transpose", [&] {
        kn_status s = kn_gemm_f32(static_cast<kn_transpose>(7), KN_NO_TRANSPOSE, 2, 2, 2, 1.0f, big.get(), 2, 0,
                                  big2.get(), 2, 0, 0.0f, big3.get(), 2, 0, 1);
        return expect_error(cx, s, KN_ERROR_INVALID_ARGUMENT);
    });
    error_case("gemm C aliases A", [&] {
        kn_status s = kn_gemm_f32(KN_NO_TRANSPOSE, KN_NO_TRANSPOSE, 2, 2, 2, 1.0f, big.get(), 2, 0, big2.get(), 2, 0,
                                  0.0f, big.get(), 2, 0, 1);
        return expect_error(cx, s, KN_ERROR_INVALID_ARGUMENT);
    });

    // Elementwise.
    error_case("unary buffer too small", [&] {
        return expect_error(cx, kn_unary_f32(KN_UNARY_EXP, 0.0f, small.get(), big.get(), 1009),
                            KN_ERROR_SHAPE_MISMATCH, {"1009"});
    });
    error_case("unary null x", [&] {
        return expect_error(cx, kn_unary_f32(KN_UNARY_EXP, 0.0f, nullptr, big.get(), 4), KN_ERROR_INVALID_ARGUMENT);
    });
    error_case("unary negative n", [&] {
        return expect_error(cx, kn_unary_f32(KN_UNARY_EXP, 0.0f, big.get(), big2.get(), -1), KN_ERROR_INVALID_ARGUMENT);
    });
    error_case("unary unknown op", [&] {
        return expect_error(cx, kn_unary_f32(static_cast<kn_unary_op>(999), 0.0f, big.get(), big2.get(), 4),
                            KN_ERROR_INVALID_ARGUMENT);
    });
    error_case("unary_backward missing y for TANH", [&] {
        return expect_error(cx, kn_unary_backward_f32(KN_UNARY_TANH, 0.0f, big.get(), nullptr, big2.get(), big3.get(), 4),
                            KN_ERROR_INVALID_ARGUMENT);
    });
    error_case("unary_backward missing x for GELU", [&] {
        return expect_error(cx, kn_unary_backward_f32(KN_UNARY_GELU, 0.0f, nullptr, big.get(), big2.get(), big3.get(), 4),
                            KN_ERROR_INVALID_ARGUMENT);
    });

    // Rule queries: the library exports its shape and derivative rules so that no caller keeps a copy.
    error_case("unary_backward_uses_output follows kernels.h", [&] {
        // The list documented at kn_unary_backward_f32: EXP, SQRT, RSQRT, RECIPROCAL, TANH, SIGMOID use y.
        const std::set<int> from_y = {KN_UNARY_EXP, KN_UNARY_SQRT, KN_UNARY_RSQRT, KN_UNARY_RECIPROCAL,
                                      KN_UNARY_TANH, KN_UNARY_SIGMOID};
        for (int op = 0; op <= KN_UNARY_POW_SCALAR; ++op) {
            int32_t uses = -1;
            if (kn_unary_backward_uses_output(static_cast<kn_unary_op>(op), &uses) != KN_OK)
                return "op " + std::to_string(op) + " failed: " + kn_last_error();
            if (uses != (from_y.count(op) ? 1 : 0))
                return "op " + std::to_string(op) + ": uses_output = " + std::to_string(uses);
        }
        return std::string();
    });
    error_case("unary_backward_uses_output unknown op", [&] {
        int32_t uses = 0;
        return expect_error(cx, kn_unary_backward_uses_output(static_cast<kn_unary_op>(999), &uses),
                            KN_ERROR_INVALID_ARGUMENT, {"op", "999"});
    });
    error_case("unary_backward_uses_output null out-pointer", [&] {
        return expect_error(cx, kn_unary_backward_uses_output(KN_UNARY_TANH, nullptr), KN_ERROR_INVALID_ARGUMENT,
                            {"uses_output"});
    });
    error_case("conv2d_output_size geometries", [&] {
        struct Want { int64_t in_h, in_w, k_h, k_w, s_h, s_w, p_h, p_w, d_h, d_w, oh, ow; };
        // Output sizes worked by hand from (in + 2 pad - dilation (k - 1) - 1) / stride + 1.
        const Want wants[] = {{32, 32, 3, 3, 2, 2, 1, 1, 1, 1, 16, 16},
                              {7, 9, 3, 3, 1, 1, 0, 0, 2, 2, 3, 5},
                              {5, 6, 5, 1, 3, 4, 2, 0, 1, 1, 2, 2},
                              {1, 1, 1, 1, 1000, 1000, 0, 0, 1, 1, 1, 1}};
        for (const Want& w : wants) {
            int64_t oh = -1, ow = -1;
            if (kn_conv2d_output_size(2, 4, w.in_h, w.in_w, 6, w.k_h, w.k_w, w.s_h, w.s_w, w.p_h, w.p_w, w.d_h, w.d_w,
                                      2, &oh, &ow) != KN_OK)
                return std::string("failed: ") + kn_last_error();
            if (oh != w.oh || ow != w.ow)
                return "in " + std::to_string(w.in_h) + "x" + std::to_string(w.in_w) + ": got " + std::to_string(oh) +
                       "x" + std::to_string(ow) + ", want " + std::to_string(w.oh) + "x" + std::to_string(w.ow);
        }
        return std::string();
    });
    // The query and kn_conv2d_f32 run the same validation: same status, same message after the name.
    auto after_name = [](const std::string& m) { return m.substr(m.find(':')); };
    error_case("conv2d_output_size kernel larger than the padded input, as conv2d says", [&] {
        int64_t oh = 0, ow = 0;
        std::string problem = expect_error(cx, kn_conv2d_output_size(1, 3, 2, 2, 4, 3, 3, 1, 1, 0, 0, 1, 1, 1, &oh, &ow),
                                           KN_ERROR_SHAPE_MISMATCH, {"conv2d_output_size", "padded input is only 2x2"});
        std::string query = kn_conv2d_output_size(1, 3, 2, 2, 4, 3, 3, 1, 1, 0, 0, 1, 1, 1, &oh, &ow) == KN_OK
                                ? "" : kn_last_error();
        std::string call = kn_conv2d_f32(big.get(), big2.get(), nullptr, big3.get(), 1, 3, 2, 2, 4, 3, 3, 1, 1, 0, 0,
                                         1, 1, 1) == KN_OK ? "" : kn_last_error();
        if (problem.empty() && after_name(query) != after_name(call))
            problem = "query says '" + query + "' but conv2d says '" + call + "'";
        return problem;
    });
    error_case("conv2d_output_size groups do not divide the channels", [&] {
        int64_t oh = 0, ow = 0;
        return expect_error(cx, kn_conv2d_output_size(1, 6, 8, 8, 4, 3, 3, 1, 1, 0, 0, 1, 1, 4, &oh, &ow),
                            KN_ERROR_SHAPE_MISMATCH, {"divisible by groups = 4"});
    });
    error_case("conv2d_output_size zero stride", [&] {
        int64_t oh = 0, ow = 0;
        return expect_error(cx, kn_conv2d_output_size(1, 3, 8, 8, 4, 3, 3, 0, 1, 0, 0, 1, 1, 1, &oh, &ow),
                            KN_ERROR_INVALID_ARGUMENT, {"stride_height = 0"});
    });
    error_case("conv2d_output_size null out-pointer", [&] {
        int64_t oh = 0;
        return expect_error(cx, kn_conv2d_output_size(1, 3, 8, 8, 4, 3, 3, 1, 1, 0, 0, 1, 1, 1, &oh, nullptr),
                            KN_ERROR_INVALID_ARGUMENT, {"out_width"});
    });
    error_case("pool2d_output_size geometries", [&] {
        struct Want { int64_t in_h, in_w, k_h, k_w, s_h, s_w, p_h, p_w, oh, ow; };
        // Worked by hand from (in + 2 pad - kernel) / stride + 1.
        const Want wants[] = {{5, 5, 2, 2, 2, 2, 0, 0, 2, 2}, {7, 7, 3, 3, 2, 2, 1, 1, 4, 4}, {4, 9, 4, 2, 1, 3, 2, 1, 5, 4}};
        for (const Want& w : wants) {
            int64_t oh = -1, ow = -1;
            if (kn_pool2d_output_size(2, 3, w.in_h, w.in_w, w.k_h, w.k_w, w.s_h, w.s_w, w.p_h, w.p_w, &oh, &ow) != KN_OK)
                return std::string("failed: ") + kn_last_error();
            if (oh != w.oh || ow != w.ow)
                return "in " + std::to_string(w.in_h) + "x" + std::to_string(w.in_w) + ": got " + std::to_string(oh) +
                       "x" + std::to_string(ow) + ", want " + std::to_string(w.oh) + "x" + std::to_string(w.ow);
        }
        return std::string();
    });
    error_case("pool2d_output_size padding over half the kernel, as pool2d says", [&] {
        int64_t oh = 0, ow = 0;
        std::string problem = expect_error(cx, kn_pool2d_output_size(1, 1, 3, 3, 2, 2, 2, 2, 2, 2, &oh, &ow),
                                           KN_ERROR_INVALID_ARGUMENT, {"pool2d_output_size", "more than half the kernel"});
        std::string query = kn_pool2d_output_size(1, 1, 3, 3, 2, 2, 2, 2, 2, 2, &oh, &ow) == KN_OK ? "" : kn_last_error();
        std::string call = kn_pool2d_f32(KN_POOL_MAX, big.get(), big2.get(), nullptr, 1, 1, 3, 3, 2, 2, 2, 2, 2, 2, 1)
                                   == KN_OK ? "" : kn_last_error();
        if (problem.empty() && after_name(query) != after_name(call))
            problem = "query says '" + query + "' but pool2d says '" + call + "'";
        return problem;
    });
    error_case("pool2d_output_size window larger than the padded input", [&] {
        int64_t oh = 0, ow = 0;
        return expect_error(cx, kn_pool2d_output_size(1, 1, 3, 3, 4, 4, 1, 1, 0, 0, &oh, &ow), KN_ERROR_SHAPE_MISMATCH,
                            {"larger than the padded input 3x3"});
    });
    error_case("pool2d_output_size null out-pointer", [&] {
        int64_t ow = 0;
        return expect_error(cx, kn_pool2d_output_size(1, 1, 4, 4, 2, 2, 2, 2, 0, 0, nullptr, &ow),
                            KN_ERROR_INVALID_ARGUMENT, {"out_height"});
    });
    const int64_t a_dims[] = {13, 14}, b_dims[] = {15}, c_dims[] = {13, 14}, wrong_c[] = {13, 15};
    error_case("binary incompatible shapes", [&] {
        return expect_error(cx, kn_binary_f32(KN_BINARY_ADD, big.get(), a_dims, 2, big2.get(), b_dims, 1, big3.get(),
                                              c_dims, 2),
                            KN_ERROR_SHAPE_MISMATCH, {"13", "14", "15"});
    });
    error_case("binary wrong output shape", [&] {
        return expect_error(cx, kn_binary_f32(KN_BINARY_ADD, big.get(), a_dims, 2, big2.get(), a_dims, 2, big3.get(),
                                              wrong_c, 2),
                            KN_ERROR_SHAPE_MISMATCH, {"15"});
    });
    error_case("binary buffer too small", [&] {
        return expect_error(cx, kn_binary_f32(KN_BINARY_MUL, small.get(), a_dims, 2, big2.get(), a_dims, 2, big3.get(),
                                              c_dims, 2),
                            KN_ERROR_SHAPE_MISMATCH, {"13", "14"});
    });
    error_case("binary negative dimension", [&] {
        const int64_t neg[] = {3, -2};
        return expect_error(cx, kn_binary_f32(KN_BINARY_ADD, big.get(), neg, 2, big2.get(), neg, 2, big3.get(), neg, 2),
                            KN_ERROR_INVALID_ARGUMENT);
    });
    error_case("binary rank above KN_MAX_RANK", [&] {
        const int64_t ones[KN_MAX_RANK + 1] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
        return expect_error(cx, kn_binary_f32(KN_BINARY_ADD, big.get(), ones, KN_MAX_RANK + 1, big2.get(), ones, 1,
                                              big3.get(), ones, KN_MAX_RANK + 1),
                            KN_ERROR_INVALID_ARGUMENT);
    });
    error_case("binary unknown op", [&] {
        return expect_error(cx, kn_binary_f32(static_cast<kn_binary_op>(-1), big.get(), c_dims, 2, big2.get(), c_dims, 2,
                                              big3.get(), c_dims, 2),
                            KN_ERROR_INVALID_ARGUMENT);
    });
    error_case("binary_backward incompatible shapes", [&] {
        return expect_error(cx, kn_binary_backward_f32(KN_BINARY_MUL, big.get(), a_dims, 2, big2.get(), b_dims, 1,
                                                       big3.get(), c_dims, 2, big.get(), nullptr),
                            KN_ERROR_SHAPE_MISMATCH);
    });

    // Reductions and softmax.
    error_case("reduce x too small", [&] {
        return expect_error(cx, kn_reduce_f32(KN_REDUCE_SUM, small.get(), big.get(), 3, 31, 1), KN_ERROR_SHAPE_MISMATCH,
                            {"31"});
    });
    error_case("reduce negative outer", [&] {
        return expect_error(cx, kn_reduce_f32(KN_REDUCE_SUM, big.get(), big2.get(), -1, 4, 1), KN_ERROR_INVALID_ARGUMENT);
    });
    error_case("reduce MAX over zero elements", [&] {
        return expect_error(cx, kn_reduce_f32(KN_REDUCE_MAX, big.get(), big2.get(), 2, 0, 2), KN_ERROR_INVALID_ARGUMENT);
    });
    error_case("reduce MIN over zero elements", [&] {
        return expect_error(cx, kn_reduce_f32(KN_REDUCE_MIN, big.get(), big2.get(), 1, 0, 1), KN_ERROR_INVALID_ARGUMENT);
    });
    error_case("argmax over zero elements", [&] {
        return expect_error(cx, kn_argreduce_f32(KN_ARGMAX, big.get(), big2.get(), 1, 0, 1), KN_ERROR_INVALID_ARGUMENT);
    });
    error_case("argmax indices buffer too small", [&] {
        // 24 floats hold 12 int64 indices; 37 are needed.
        return expect_error(cx, kn_argreduce_f32(KN_ARGMAX, big.get(), small.get(), 37, 2, 1), KN_ERROR_SHAPE_MISMATCH,
                            {"37"});
    });
    error_case("softmax y too small", [&] {
        return expect_error(cx, kn_softmax_f32(big.get(), small.get(), 41, 3, 0), KN_ERROR_SHAPE_MISMATCH, {"41"});
    });
    error_case("softmax_backward null dy", [&] {
        return expect_error(cx, kn_softmax_backward_f32(big.get(), nullptr, big2.get(), 2, 2, 1),
                            KN_ERROR_INVALID_ARGUMENT);
    });

    // Buffers.
    error_case("buffer_create negative size", [&] {
        kn_buffer* b = nullptr;
        return expect_error(cx, kn_buffer_create(cx.device, -4, &b), KN_ERROR_INVALID_ARGUMENT);
    });
    error_case("buffer_write past the end", [&] {
        std::vector<float> host(64, 0.0f);
        return expect_error(cx, kn_buffer_write(small.get(), 8, host.data(), 64 * 4), KN_ERROR_SHAPE_MISMATCH);
    });
    error_case("buffer_read negative offset", [&] {
        float host[4];
        return expect_error(cx, kn_buffer_read(small.get(), -4, host, 16), KN_ERROR_INVALID_ARGUMENT);
    });
    error_case("buffer_fill past the end", [&] {
        return expect_error(cx, kn_buffer_fill_f32(small.get(), 20, 10, 1.0f), KN_ERROR_SHAPE_MISMATCH);
    });

    // The order of the checks (native/api/operands.h): scalar arguments, then each handle (NULL, not
    // live), then aliasing, then one device, then sizes; with two faults the earlier one is reported.
    error_case("order: a NULL operand before another operand's size", [&] {
        return expect_error(cx, kn_unary_f32(KN_UNARY_EXP, 0.0f, small.get(), nullptr, 1009), KN_ERROR_INVALID_ARGUMENT,
                            {"'y'", "NULL"});
    });
    error_case("order: size arithmetic before the operands", [&] {
        return expect_error(cx, kn_softmax_f32(nullptr, big.get(), int64_t{1} << 62, 4, 0), KN_ERROR_INVALID_ARGUMENT,
                            {"overflow"});
    });
    error_case("order: one buffer passed twice before sizes", [&] {
        kn_status s = kn_adam_step_f32(small.get(), small.get(), big.get(), big2.get(), 1009, 0.1f, 0.9f, 0.999f, 1e-8f,
                                       0.0f, 0, 1);
        return expect_error(cx, s, KN_ERROR_INVALID_ARGUMENT, {"'param' and 'grad' are the same buffer"});
    });

    // Two devices in one call.
    if (cx.other) {
        DeviceArray<float> remote(cx.other, std::vector<float>(4096, 1.0f));
        error_case("order: devices before sizes", [&] {
            return expect_error(cx, kn_softmax_f32(small.get(), remote.get(), 1009, 1, 0), KN_ERROR_DEVICE_MISMATCH);
        });
        error_case("order: devices before sizes in an optimizer update", [&] {
            kn_status s = kn_adam_step_f32(small.get(), big.get(), big2.get(), remote.get(), 1009, 0.1f, 0.9f, 0.999f,
                                           1e-8f, 0.0f, 0, 1);
            return expect_error(cx, s, KN_ERROR_DEVICE_MISMATCH, {"'v'"});
        });
        error_case("unary x and y on two devices", [&] {
            return expect_error(cx, kn_unary_f32(KN_UNARY_EXP, 0.0f, big.get(), remote.get(), 16),
                                KN_ERROR_DEVICE_MISMATCH);
        });
        error_case("gemm B on another device", [&] {
            kn_status s = kn_gemm_f32(KN_NO_TRANSPOSE, KN_NO_TRANSPOSE, 4, 4, 4, 1.0f, big.get(), 4, 0, remote.get(), 4,
                                      0, 0.0f, big3.get(), 4, 0, 1);
            return expect_error(cx, s, KN_ERROR_DEVICE_MISMATCH);
        });
        error_case("binary_backward db on another device", [&] {
            return expect_error(cx, kn_binary_backward_f32(KN_BINARY_MUL, big.get(), c_dims, 2, big2.get(), c_dims, 2,
                                                           big3.get(), c_dims, 2, nullptr, remote.get()),
                                KN_ERROR_DEVICE_MISMATCH);
        });
    }
}

// Lookups that do not depend on one device.
void test_device_lookup(Reporter& report, kn_device* any_device) {
    Context cx{any_device, "global", true, report, nullptr};
    for (const char* bad : {"cuda:99", "opencl:99", "bogus", "cpu:1", ""}) {
        report.run(std::string("error device_find '") + bad + "'", [&] {
            Problems p;
            kn_device* d = nullptr;
            p.add(expect_error(cx, kn_device_find(bad, &d), KN_ERROR_NOT_FOUND));
            return p;
        });
    }
    report.run("error device_get past the end", [&] {
        Problems p;
        int32_t count = 0;
        expect_ok(kn_device_count(&count), "kn_device_count");
        kn_device* d = nullptr;
        p.add(expect_error(cx, kn_device_get(count, &d), KN_ERROR_NOT_FOUND));
        return p;
    });
    report.run("error device_find NULL name", [&] {
        Problems p;
        kn_device* d = nullptr;
        p.add(expect_error(cx, kn_device_find(nullptr, &d), KN_ERROR_INVALID_ARGUMENT));
        return p;
    });
    report.run("device_find cpu", [&] {
        Problems p;
        kn_device* d = nullptr;
        expect_ok(kn_device_find("cpu", &d), "kn_device_find(\"cpu\")");
        kn_device_kind kind;
        expect_ok(kn_device_kind_of(d, &kind), "kn_device_kind_of");
        if (kind != KN_DEVICE_CPU) p.add("\"cpu\" is not a CPU device");
        kn_device* first = nullptr;
        expect_ok(kn_device_get(0, &first), "kn_device_get(0)");
        if (first != d) p.add("device 0 is not the CPU");
        return p;
    });
}

// =================================================================================================
// Driver
// =================================================================================================

const char* kind_name(kn_device_kind k) {
    switch (k) {
        case KN_DEVICE_CPU: return "cpu";
        case KN_DEVICE_CUDA: return "cuda";
        case KN_DEVICE_OPENCL: return "opencl";
    }
    return "?";
}

int usage(const char* argv0) {
    std::fprintf(stderr,
                 "usage: %s [--device NAME]... [--quick] [--require cuda|opencl]... [--strict] [--verbose]\n"
                 "  --device NAME   test only this device (cpu, cuda:0, opencl:1, ...); repeatable; default all\n"
                 "  --quick         smaller shapes (for compute-sanitizer runs)\n"
                 "  --require KIND  fail unless a device of this kind exists (cuda or opencl)\n"
                 "  --strict        an op a GPU backend answers NOT_SUPPORTED for fails instead of SKIP\n"
                 "  --only TEXT     run only the cases whose name contains TEXT\n"
                 "  --verbose       print passing cases too\n",
                 argv0);
    return 2;
}

}  // namespace

int main(int argc, char** argv) {
    Options opt;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        if (a == "--device" && i + 1 < argc) {
            opt.devices.push_back(argv[++i]);
        } else if (a == "--quick") {
            opt.quick = true;
        } else if (a == "--strict") {
            opt.strict = true;
        } else if (a == "--only" && i + 1 < argc) {
            opt.only = argv[++i];
        } else if (a == "--verbose" || a == "-v") {
            opt.verbose = true;
        } else if (a == "--require" && i + 1 < argc) {
            std::string k = argv[++i];
            if (k == "cuda") opt.required.push_back(KN_DEVICE_CUDA);
            else if (k == "opencl") opt.required.push_back(KN_DEVICE_OPENCL);
            else return usage(argv[0]);
        } else {
            return usage(argv[0]);
        }
    }

    Reporter report(opt.verbose, opt.only);
    int32_t major = 0, minor = 0, patch = 0;
    if (kn_get_version(&major, &minor, &patch) == KN_OK)
        std::printf("libkernels %d.%d.%d%s\n", major, minor, patch, opt.quick ? " (quick)" : "");

    for (kn_device_kind k : {KN_DEVICE_CPU, KN_DEVICE_CUDA, KN_DEVICE_OPENCL}) {
        int32_t available = 0;
        const char* reason = "";
        if (kn_backend_info(k, &available, &reason) == KN_OK)
            std::printf("backend %-6s %s%s%s\n", kind_name(k), available ? "available" : "unavailable",
                        available ? "" : ": ", available ? "" : reason);
        else
            std::printf("backend %-6s kn_backend_info failed: %s\n", kind_name(k), kn_last_error());
    }

    int32_t count = 0;
    if (kn_device_count(&count) != KN_OK || count < 1) {
        std::printf("no devices (%s)\nselftest: 0 passed, 1 failed\n", kn_last_error());
        return 1;
    }
    std::vector<kn_device*> all;
    for (int32_t i = 0; i < count; ++i) {
        kn_device* d = nullptr;
        const char *name = "?", *description = "?";
        int64_t memory = 0;
        int32_t cap_major = 0, cap_minor = 0;
        kn_device_kind kind = KN_DEVICE_CPU;
        if (kn_device_get(i, &d) != KN_OK) {
            std::printf("device %d: kn_device_get failed: %s\n", i, kn_last_error());
            continue;
        }
        kn_device_name(d, &name);
        kn_device_description(d, &description);
        kn_device_kind_of(d, &kind);
        kn_device_memory(d, &memory);
        kn_device_capability(d, &cap_major, &cap_minor);
        std::printf("device %d: %-10s %-6s %s, %.1f GiB, capability %d.%d\n", i, name, kind_name(kind), description,
                    memory / 1073741824.0, cap_major, cap_minor);
        all.push_back(d);
    }
    std::fflush(stdout);

    report.begin_device("global");
    for (kn_device_kind k : opt.required) {
        bool found = false;
        for (kn_device* d : all) {
            kn_device_kind kind;
            if (kn_device_kind_of(d, &kind) == KN_OK && kind == k) found = true;
        }
        int32_t available = 0;
        const char* reason = "";
        kn_backend_info(k, &available, &reason);
        report.record(std::string("require ") + kind_name(k),
                      found ? "" : std::string("no ") + kind_name(k) + " device: " + reason);
    }

    std::vector<kn_device*> selected;
    if (opt.devices.empty()) {
        selected = all;
    } else {
        for (const auto& n : opt.devices) {
            kn_device* d = nullptr;
            if (kn_device_find(n.c_str(), &d) == KN_OK) selected.push_back(d);
            else report.record("select device '" + n + "'", kn_last_error());
        }
    }
    test_device_lookup(report, all[0]);
    report.end_device();

    for (kn_device* d : selected) {
        const char* name = "?";
        kn_device_name(d, &name);
        kn_device* other = nullptr;
        for (kn_device* e : all)
            if (e != d) {
                other = e;
                break;
            }
        kn_device_kind kind = KN_DEVICE_CPU;
        kn_device_kind_of(d, &kind);
        Context cx{d, name, opt.quick, report, other, kind, opt.strict};
        report.begin_device(name);
        std::printf("testing %s ...\n", name);
        std::fflush(stdout);
        test_memory(cx);
        test_allocation_counts(cx);
        test_errors(cx);
        test_gemm(cx);
        test_unary(cx);
        test_linear(cx);
        test_binary(cx);
        test_layout(cx);
        test_gather(cx);
        test_cast(cx);
        test_reduce(cx);
        test_softmax(cx);
        test_cross_entropy(cx);
        test_dropout(cx);
        test_optimizers(cx);
        test_convolution(cx);
        test_pooling(cx);
        test_batch_norm(cx);
        test_recurrent(cx);
        test_cnn_errors(cx);
        test_hostile_input(cx);
        test_trim(cx);
        report.end_device();
    }
    report.summary();
    return report.total_failed() == 0 ? 0 : 1;
}
