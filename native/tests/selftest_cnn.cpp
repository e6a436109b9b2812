// selftest_cnn.cpp: the self-test's cases for convolution, pooling and batch normalization, each
// against a float64 reference computed here from the same float32 inputs, on every device.
//
// A non-CPU device that answers KN_ERROR_NOT_SUPPORTED for one of these ops (its kernels are not
// written yet) gets a SKIP line per case instead of a failure (kernels_selftest --strict: a failure).
//
// Tolerances (eps = 2^-23, see each section for the derivation):
//   short sums (a convolution output over in_channels/groups * kh * kw taps, a dx over
//   out_channels/groups * kh * kw taps, a pooling window): the classical worst-case bound of a
//   k-term float dot product in any order, (k + 3) eps sum |terms|, as for GEMM;
//   sums over the batch (conv dw and dbias over batch * out_h * out_w terms): a worst-case bound that
//   grows with k is useless there (k = 50000 allows more than the value itself), so these use
//   (min(k, 8 + 3 sqrt(k)) + 3) eps sum |terms|: any blocked, tree or sequential float order over
//   these random signed terms stays within a few eps sum |terms| (its partial sums random-walk), while
//   a missing or doubled image is off by ~sqrt(k / batch) times the typical term, far outside;
//   batch-norm statistics: the pairwise bound (ceil(log2 m) + 4) eps per sum, so float64 or
//   pairwise/blocked float accumulation passes and E[x^2] - E[x]^2 (tested with values ~1e4 of unit
//   spread) does not.
#include "selftest_cnn.h"

#include <cinttypes>
#include <functional>
#include <stdexcept>
#include <utility>

namespace selftest {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

double worst_case_sum_tol(int64_t terms, double abs_sum) { return (static_cast<double>(terms) + 3) * kEps * abs_sum; }

double batch_sum_tol(int64_t terms, double abs_sum) {
    const double k = static_cast<double>(terms);
    return (std::min(k, 8 + 3 * std::sqrt(k)) + 3) * kEps * abs_sum;
}

double log2_levels(int64_t m) { return std::ceil(std::log2(static_cast<double>(std::max<int64_t>(m, 1)))); }

std::string dims(std::initializer_list<int64_t> d) { return shape_str(std::vector<int64_t>(d)); }

// Checks got[0, want.size()) against want within tol, adding the description of any mismatch to p.
void compare_into(Problems& p, const std::vector<float>& got, const std::vector<double>& want,
                  const std::vector<double>& tol, const char* name) {
    p.add(compare(static_cast<int64_t>(want.size()), [&](int64_t i) { return got[i]; },
                  [&](int64_t i) { return want[i]; }, [&](int64_t i) { return tol[i]; })
              .describe(name));
}

// =================================================================================================
// Convolution
// =================================================================================================

struct ConvCase {
    int64_t n, c, h, w, k, kh, kw;
    int64_t sh = 1, sw = 1, ph = 0, pw = 0, dh = 1, dw = 1, groups = 1;

    ConvCase& stride(int64_t a, int64_t b) { sh = a; sw = b; return *this; }
    ConvCase& pad(int64_t a, int64_t b) { ph = a; pw = b; return *this; }
    ConvCase& dilation(int64_t a, int64_t b) { dh = a; dw = b; return *this; }
    ConvCase& group(int64_t g) { groups = g; return *this; }

    // The output size from the library's own rule (kn_conv2d_output_size), not a copy of its formula;
    // the self-test's hand-worked sizes for it are in selftest.cpp ("conv2d_output_size geometries").
    std::pair<int64_t, int64_t> out_size() const {
        int64_t out_h = 0, out_w = 0;
        if (kn_conv2d_output_size(n, c, h, w, k, kh, kw, sh, sw, ph, pw, dh, dw, groups, &out_h, &out_w) != KN_OK)
            throw std::runtime_error(std::string("kn_conv2d_output_size: ") + kn_last_error());
        return {out_h, out_w};
    }
    int64_t oh() const { return out_size().first; }
    int64_t ow() const { return out_size().second; }
    int64_t cg() const { return c / groups; }
    int64_t kg() const { return k / groups; }
    int64_t x_size() const { return n * c * h * w; }
    int64_t w_size() const { return k * cg() * kh * kw; }
    int64_t y_size() const { return n * k * oh() * ow(); }
    std::string label() const {
        char s[256];
        std::snprintf(s, sizeof s,
                      "x=[%" PRId64 ",%" PRId64 ",%" PRId64 ",%" PRId64 "] k=%" PRId64 " %" PRId64 "x%" PRId64
                      " stride=%" PRId64 "x%" PRId64 " pad=%" PRId64 "x%" PRId64 " dil=%" PRId64 "x%" PRId64
                      " groups=%" PRId64,
                      n, c, h, w, k, kh, kw, sh, sw, ph, pw, dh, dw, groups);
        return s;
    }
};

ConvCase conv(int64_t n, int64_t c, int64_t h, int64_t w, int64_t k, int64_t kh, int64_t kw) {
    return ConvCase{n, c, h, w, k, kh, kw};
}

// Calls fn(y_index, x_index, w_index) for every term of the convolution whose input lies inside the
// image (padding contributes nothing).
template <typename Fn>
void for_each_conv_term(const ConvCase& g, Fn&& fn) {
    const int64_t OH = g.oh(), OW = g.ow(), cg = g.cg(), kg = g.kg();
    for (int64_t n = 0; n < g.n; ++n)
        for (int64_t k = 0; k < g.k; ++k) {
            const int64_t group = k / kg;
            for (int64_t oh = 0; oh < OH; ++oh)
                for (int64_t ow = 0; ow < OW; ++ow) {
                    const int64_t yi = ((n * g.k + k) * OH + oh) * OW + ow;
                    for (int64_t cl = 0; cl < cg; ++cl) {
                        const int64_t c = group * cg + cl;
                        for (int64_t r = 0; r < g.kh; ++r) {
                            const int64_t ih = oh * g.sh - g.ph + r * g.dh;
                            if (ih < 0 || ih >= g.h) continue;
                            for (int64_t s = 0; s < g.kw; ++s) {
                                const int64_t iw = ow * g.sw - g.pw + s * g.dw;
                                if (iw < 0 || iw >= g.w) continue;
                                fn(yi, ((n * g.c + c) * g.h + ih) * g.w + iw, ((k * cg + cl) * g.kh + r) * g.kw + s);
                            }
                        }
                    }
                }
        }
}

kn_status call_conv(const ConvCase& g, kn_buffer* x, kn_buffer* w, kn_buffer* bias, kn_buffer* y) {
    return kn_conv2d_f32(x, w, bias, y, g.n, g.c, g.h, g.w, g.k, g.kh, g.kw, g.sh, g.sw, g.ph, g.pw, g.dh, g.dw,
                         g.groups);
}

void conv_forward_case(Context& cx, const ConvCase& g, bool with_bias) {
    std::string name = "conv2d " + g.label() + (with_bias ? " bias" : "");
    cx.report.run(name, [&] {
        Problems problems;
        Rng rng(seed_of(name));
        std::vector<float> x = uniform(rng, g.x_size(), -1, 1), w = uniform(rng, g.w_size(), -1, 1);
        std::vector<float> bias = uniform(rng, with_bias ? g.k : 0, -1, 1);
        DeviceArray<float> X(cx.device, x), Wt(cx.device, w), B(cx.device, bias), Y(cx.device, nan_filled(g.y_size()));
        expect_ok_or_skip(cx, call_conv(g, X.get(), Wt.get(), with_bias ? B.get() : nullptr, Y.get()), "kn_conv2d_f32");
        std::vector<float> got = Y.read();

        const int64_t plane = g.oh() * g.ow();
        std::vector<double> want(static_cast<size_t>(g.y_size())), mag(want.size()), tol(want.size());
        for (int64_t i = 0, y_n = g.y_size(); i < y_n; ++i) {
            want[i] = with_bias ? bias[(i / plane) % g.k] : 0.0;
            mag[i] = std::fabs(want[i]);
        }
        for_each_conv_term(g, [&](int64_t yi, int64_t xi, int64_t wi) {
            const double t = static_cast<double>(w[wi]) * x[xi];
            want[yi] += t;
            mag[yi] += std::fabs(t);
        });
        for (size_t i = 0; i < tol.size(); ++i) tol[i] = worst_case_sum_tol(g.cg() * g.kh * g.kw + 1, mag[i]);
        compare_into(problems, got, want, tol, "y");
        problems.add(guard_violation(got, Y, "y"));
        problems.add(input_violation(X, "x"));
        problems.add(input_violation(Wt, "w"));
        problems.add(input_violation(B, "bias"));
        return problems;
    });
}

void conv_backward_data_case(Context& cx, const ConvCase& g) {
    std::string name = "conv2d_backward_data " + g.label();
    cx.report.run(name, [&] {
        Problems problems;
        Rng rng(seed_of(name));
        std::vector<float> dy = uniform(rng, g.y_size(), -1, 1), w = uniform(rng, g.w_size(), -1, 1);
        DeviceArray<float> DY(cx.device, dy), Wt(cx.device, w), DX(cx.device, nan_filled(g.x_size()));
        expect_ok_or_skip(cx,
                          kn_conv2d_backward_data_f32(DY.get(), Wt.get(), DX.get(), g.n, g.c, g.h, g.w, g.k, g.kh, g.kw,
                                                      g.sh, g.sw, g.ph, g.pw, g.dh, g.dw, g.groups),
                          "kn_conv2d_backward_data_f32");
        std::vector<float> got = DX.read();
        // Every dx element is written: those no window reaches (stride > kernel) must be 0, not NaN.
        std::vector<double> want(static_cast<size_t>(g.x_size()), 0.0), mag(want.size(), 0.0), tol(want.size());
        for_each_conv_term(g, [&](int64_t yi, int64_t xi, int64_t wi) {
            const double t = static_cast<double>(w[wi]) * dy[yi];
            want[xi] += t;
            mag[xi] += std::fabs(t);
        });
        for (size_t i = 0; i < tol.size(); ++i) tol[i] = worst_case_sum_tol(g.kg() * g.kh * g.kw, mag[i]);
        compare_into(problems, got, want, tol, "dx");
        problems.add(guard_violation(got, DX, "dx"));
        problems.add(input_violation(DY, "dy"));
        problems.add(input_violation(Wt, "w"));
        return problems;
    });
}

void conv_backward_weights_case(Context& cx, const ConvCase& g, bool with_bias) {
    std::string name = "conv2d_backward_weights " + g.label() + (with_bias ? " dbias" : "");
    cx.report.run(name, [&] {
        Problems problems;
        Rng rng(seed_of(name));
        std::vector<float> x = uniform(rng, g.x_size(), -1, 1), dy = uniform(rng, g.y_size(), -1, 1);
        DeviceArray<float> X(cx.device, x), DY(cx.device, dy), DW(cx.device, nan_filled(g.w_size()));
        DeviceArray<float> DB(cx.device, nan_filled(with_bias ? g.k : 0));
        expect_ok_or_skip(cx,
                          kn_conv2d_backward_weights_f32(X.get(), DY.get(), DW.get(), with_bias ? DB.get() : nullptr,
                                                         g.n, g.c, g.h, g.w, g.k, g.kh, g.kw, g.sh, g.sw, g.ph, g.pw,
                                                         g.dh, g.dw, g.groups),
                          "kn_conv2d_backward_weights_f32");
        std::vector<float> got = DW.read();
        const int64_t terms = g.n * g.oh() * g.ow();  // per weight: one per image and output position
        std::vector<double> want(static_cast<size_t>(g.w_size()), 0.0), mag(want.size(), 0.0), tol(want.size());
        for_each_conv_term(g, [&](int64_t yi, int64_t xi, int64_t wi) {
            const double t = static_cast<double>(dy[yi]) * x[xi];
            want[wi] += t;
            mag[wi] += std::fabs(t);
        });
        for (size_t i = 0; i < tol.size(); ++i) tol[i] = batch_sum_tol(terms, mag[i]);
        compare_into(problems, got, want, tol, "dw");
        problems.add(guard_violation(got, DW, "dw"));
        if (with_bias) {
            std::vector<float> got_b = DB.read();
            const int64_t plane = g.oh() * g.ow();
            std::vector<double> want_b(static_cast<size_t>(g.k), 0.0), mag_b(want_b.size(), 0.0), tol_b(want_b.size());
            for (int64_t i = 0, y_n = g.y_size(); i < y_n; ++i) {
                want_b[(i / plane) % g.k] += dy[i];
                mag_b[(i / plane) % g.k] += std::fabs(dy[i]);
            }
            for (size_t i = 0; i < tol_b.size(); ++i) tol_b[i] = batch_sum_tol(terms, mag_b[i]);
            compare_into(problems, got_b, want_b, tol_b, "dbias");
            problems.add(guard_violation(got_b, DB, "dbias"));
        }
        problems.add(input_violation(X, "x"));
        problems.add(input_violation(DY, "dy"));
        return problems;
    });
}

}  // namespace

void test_convolution(Context& cx) {
    std::vector<ConvCase> cases = {
        conv(2, 3, 7, 9, 4, 3, 3).pad(1, 1),                     // odd sizes, "same" padding
        conv(1, 1, 5, 5, 1, 3, 3),                               // one channel in and out, batch 1
        conv(3, 5, 11, 13, 7, 1, 1),                             // 1x1, stride 1, no padding: GEMM on x itself
        conv(2, 4, 9, 7, 6, 1, 1).stride(2, 2),                  // 1x1 but strided
        conv(2, 3, 10, 11, 5, 1, 1).pad(1, 1),                   // 1x1 but padded: a border of bias-only outputs
        conv(2, 3, 8, 8, 4, 3, 3).pad(2, 2),                     // padding larger than half the kernel
        conv(1, 2, 5, 6, 3, 3, 3).pad(3, 4),                     // padding >= kernel: all-padding windows
        conv(2, 3, 13, 17, 4, 2, 2).stride(3, 3),                // stride > kernel: inputs no window reads
        conv(2, 3, 12, 11, 5, 3, 2).stride(2, 1).pad(1, 0),      // non-square kernel and stride
        conv(2, 2, 9, 6, 3, 5, 1).pad(2, 0),                     // a column kernel
        conv(2, 4, 11, 13, 6, 3, 3).pad(2, 2).dilation(2, 2),    // dilation 2
        conv(1, 3, 13, 12, 2, 3, 2).stride(2, 3).pad(1, 1).dilation(3, 2),  // everything at once
        conv(2, 6, 9, 10, 4, 3, 3).pad(1, 1).group(2),           // groups 2
        conv(2, 6, 9, 9, 9, 3, 3).stride(2, 2).pad(1, 1).group(3),  // groups 3, strided
        conv(3, 8, 10, 9, 8, 3, 3).pad(1, 1).group(8),           // depthwise
        conv(2, 4, 7, 7, 8, 3, 3).pad(1, 1).group(4),            // depthwise, channel multiplier 2
        conv(2, 3, 11, 41, 3, 3, 3).stride(2, 2).pad(1, 1).group(3),  // depthwise strided: 21 = 16 + 5 outputs
        conv(2, 3, 9, 42, 3, 3, 3).pad(1, 1).group(3),           // depthwise, 42 = 16 + 16 + 8 + 2 outputs
        conv(1, 2, 12, 27, 4, 5, 5).pad(2, 2).group(2),          // depthwise 5x5, multiplier 2
        conv(2, 2, 13, 30, 2, 3, 3).pad(2, 2).dilation(2, 2).group(2),  // depthwise dilated
        conv(1, 3, 10, 19, 3, 3, 1).stride(1, 3).pad(1, 0).group(3),     // depthwise column kernel, stride 3
        conv(2, 3, 4, 5, 2, 6, 5).pad(1, 0),                     // kernel exactly the padded input: 1x1 out
        conv(3, 7, 13, 11, 5, 3, 3).stride(2, 2).pad(1, 1),      // primes
        conv(5, 2, 6, 7, 3, 3, 3).pad(1, 1),                     // a batch that does not divide by the threads
        conv(4, 1, 28, 28, 32, 3, 3).pad(1, 1),                  // MNIST conv1-like (CPU: dw computed transposed)
        conv(3, 1, 9, 8, 40, 3, 3).pad(1, 1),                    // few taps, many filters, odd batch
        conv(4, 4, 7, 9, 64, 1, 1).group(2),                     // grouped 1x1 with many filters per group
        conv(3, 16, 48, 48, 8, 3, 3).pad(1, 1),                  // col larger than one lowering block
        conv(1, 32, 97, 61, 4, 3, 3).stride(2, 2).pad(1, 1),     // blocks that start mid-row, strided
        conv(0, 3, 5, 5, 2, 3, 3),                               // batch 0: nothing to do (dw, dbias = 0)
        conv(1, 130, 6, 7, 5, 3, 3).pad(1, 1),                   // 1170 taps: the GEMM's k in two blocks
        conv(2, 6, 9, 10, 3, 3, 3).pad(1, 1).group(3),           // one filter per group: dx by a depthwise pass
        conv(2, 5, 12, 11, 3, 3, 3).pad(1, 2).dilation(2, 2),    // narrowing, dilated: dx as a forward pass
    };
    if (!cx.quick) {
        cases.push_back(conv(8, 32, 14, 14, 64, 3, 3).pad(1, 1));   // MNIST conv2-like
        cases.push_back(conv(2, 64, 19, 23, 64, 3, 3).pad(1, 1).group(64));  // wide depthwise
        cases.push_back(conv(2, 16, 31, 29, 24, 5, 5).stride(2, 2).pad(2, 2));
    }
    for (size_t i = 0; i < cases.size(); ++i) {
        const bool bias = i % 2 == 0;
        conv_forward_case(cx, cases[i], bias);
        conv_forward_case(cx, cases[i], !bias);
        conv_backward_data_case(cx, cases[i]);
        conv_backward_weights_case(cx, cases[i], bias);
        conv_backward_weights_case(cx, cases[i], !bias);
    }
}

namespace {

// =================================================================================================
// Pooling
// =================================================================================================
//
// Max: exact (0 tolerance); the index must be the first maximum of the window in row-major order
// over its real elements, and a NaN in the window must come out as NaN with the first NaN's index.
// Avg forward: a sum of at most kh*kw terms and a division: (kh kw + 3) eps sum |x| / divisor.
// Backward: dx is a sum of the dy (max) or dy / divisor (avg) that reach it: (terms + 3) eps sum |term|.

enum class PoolValues {
    uniform,   // [-1, 1]
    negative,  // [-3, -0.5]: a padding value of 0 would win every border window
    ties,      // {-1, 0, 1}: the first maximum must win
    nans,      // ~8% NaN, ~4% -inf, the rest [-1, 1]
};

const char* pool_values_name(PoolValues v) {
    switch (v) {
        case PoolValues::uniform: return "";
        case PoolValues::negative: return " negative";
        case PoolValues::ties: return " ties";
        case PoolValues::nans: return " with NaN";
    }
    return "";
}

struct PoolCase {
    int64_t n, c, h, w, kh, kw;
    int64_t sh = 1, sw = 1, ph = 0, pw = 0;
    PoolValues values = PoolValues::uniform;

    PoolCase& stride(int64_t a, int64_t b) { sh = a; sw = b; return *this; }
    PoolCase& pad(int64_t a, int64_t b) { ph = a; pw = b; return *this; }
    PoolCase& with(PoolValues v) { values = v; return *this; }

    // The output size from the library's own rule (kn_pool2d_output_size), not a copy of its formula.
    std::pair<int64_t, int64_t> out_size() const {
        int64_t out_h = 0, out_w = 0;
        if (kn_pool2d_output_size(n, c, h, w, kh, kw, sh, sw, ph, pw, &out_h, &out_w) != KN_OK)
            throw std::runtime_error(std::string("kn_pool2d_output_size: ") + kn_last_error());
        return {out_h, out_w};
    }
    int64_t oh() const { return out_size().first; }
    int64_t ow() const { return out_size().second; }
    int64_t x_size() const { return n * c * h * w; }
    int64_t y_size() const { return n * c * oh() * ow(); }
    std::string label() const {
        char s[256];
        std::snprintf(s, sizeof s,
                      "x=[%" PRId64 ",%" PRId64 ",%" PRId64 ",%" PRId64 "] %" PRId64 "x%" PRId64 " stride=%" PRId64
                      "x%" PRId64 " pad=%" PRId64 "x%" PRId64 "%s",
                      n, c, h, w, kh, kw, sh, sw, ph, pw, pool_values_name(values));
        return s;
    }
};

PoolCase pool(int64_t n, int64_t c, int64_t h, int64_t w, int64_t kh, int64_t kw) { return PoolCase{n, c, h, w, kh, kw}; }

std::vector<float> pool_input(Rng& rng, const PoolCase& g) {
    std::vector<float> x(static_cast<size_t>(g.x_size()));
    for (auto& v : x) {
        switch (g.values) {
            case PoolValues::uniform: v = rng.uniform(-1, 1); break;
            case PoolValues::negative: v = rng.uniform(-3, -0.5); break;
            case PoolValues::ties: v = static_cast<float>(rng.below(3)) - 1.0f; break;
            case PoolValues::nans: {
                const int64_t r = rng.below(100);
                v = r < 8 ? std::numeric_limits<float>::quiet_NaN() : r < 12 ? -INFINITY : rng.uniform(-1, 1);
                break;
            }
        }
    }
    return x;
}

// The real (inside the input) rows [r0, r1) and columns [c0, c1) of output (oh, ow)'s window.
struct Window {
    int64_t r0, r1, c0, c1;
};

Window window_of(const PoolCase& g, int64_t oh, int64_t ow) {
    const int64_t h0 = oh * g.sh - g.ph, w0 = ow * g.sw - g.pw;
    return {std::max<int64_t>(h0, 0), std::min(h0 + g.kh, g.h), std::max<int64_t>(w0, 0), std::min(w0 + g.kw, g.w)};
}

// Reference forward: y (and, for max, the first-maximum index within the plane) per output.
struct PoolReference {
    std::vector<double> y, tol;
    std::vector<int32_t> index;
    std::vector<double> divisor;
};

PoolReference pool_reference(const PoolCase& g, kn_pool_op op, bool count_include_pad, const std::vector<float>& x) {
    PoolReference ref;
    const int64_t OH = g.oh(), OW = g.ow();
    ref.y.resize(static_cast<size_t>(g.y_size()));
    ref.tol.resize(ref.y.size());
    ref.index.resize(ref.y.size());
    ref.divisor.resize(ref.y.size());
    for (int64_t p = 0; p < g.n * g.c; ++p) {
        const float* plane = x.data() + p * g.h * g.w;
        for (int64_t oh = 0; oh < OH; ++oh)
            for (int64_t ow = 0; ow < OW; ++ow) {
                const int64_t o = (p * OH + oh) * OW + ow;
                const Window win = window_of(g, oh, ow);
                double best = plane[win.r0 * g.w + win.c0], sum = 0, mag = 0;
                int64_t where = win.r0 * g.w + win.c0;
                for (int64_t ih = win.r0; ih < win.r1; ++ih)
                    for (int64_t iw = win.c0; iw < win.c1; ++iw) {
                        const double v = plane[ih * g.w + iw];
                        if (!std::isnan(best) && (std::isnan(v) || v > best)) {
                            best = v;
                            where = ih * g.w + iw;
                        }
                        sum += v;
                        mag += std::fabs(v);
                    }
                const double count = static_cast<double>((win.r1 - win.r0) * (win.c1 - win.c0));
                const double divisor = count_include_pad ? static_cast<double>(g.kh * g.kw) : count;
                ref.divisor[o] = divisor;
                ref.index[o] = static_cast<int32_t>(where);
                if (op == KN_POOL_MAX) {
                    ref.y[o] = best;
                    ref.tol[o] = 0;
                } else {
                    ref.y[o] = sum / divisor;
                    ref.tol[o] = worst_case_sum_tol(g.kh * g.kw, mag / divisor);
                }
            }
    }
    return ref;
}

std::string pool_op_label(kn_pool_op op, bool count_include_pad, bool indices) {
    if (op == KN_POOL_MAX) return indices ? "MAX" : "MAX (no indices)";
    return count_include_pad ? "AVG count_include_pad" : "AVG exclude_pad";
}

void pool_forward_case(Context& cx, const PoolCase& g, kn_pool_op op, bool count_include_pad, bool indices) {
    std::string name = "pool2d " + pool_op_label(op, count_include_pad, indices) + " " + g.label();
    cx.report.run(name, [&] {
        Problems problems;
        Rng rng(seed_of(name));
        std::vector<float> x = pool_input(rng, g);
        DeviceArray<float> X(cx.device, x), Y(cx.device, nan_filled(g.y_size()));
        DeviceArray<int32_t> I(cx.device, std::vector<int32_t>(static_cast<size_t>(indices ? g.y_size() : 0), -7));
        expect_ok_or_skip(cx,
                          kn_pool2d_f32(op, X.get(), Y.get(), indices ? I.get() : nullptr, g.n, g.c, g.h, g.w, g.kh,
                                        g.kw, g.sh, g.sw, g.ph, g.pw, count_include_pad ? 1 : 0),
                          "kn_pool2d_f32");
        std::vector<float> got = Y.read();
        PoolReference ref = pool_reference(g, op, count_include_pad, x);
        compare_into(problems, got, ref.y, ref.tol, "y");
        problems.add(guard_violation(got, Y, "y"));
        if (indices) {
            std::vector<int32_t> got_i = I.read();
            int64_t bad = 0, first = -1;
            for (int64_t o = 0, y_n = g.y_size(); o < y_n; ++o)
                if (got_i[o] != ref.index[o] && bad++ == 0) first = o;
            if (bad)
                problems.add("indices: " + std::to_string(bad) + "/" + std::to_string(g.y_size()) +
                             " wrong, first bad output " + std::to_string(first) + " (got " +
                             std::to_string(got_i[first]) + ", want " + std::to_string(ref.index[first]) + ")");
            problems.add(guard_violation(got_i, I, "indices"));
        }
        problems.add(input_violation(X, "x"));
        return problems;
    });
}

void pool_backward_case(Context& cx, const PoolCase& g, kn_pool_op op, bool count_include_pad) {
    std::string name = "pool2d_backward " + pool_op_label(op, count_include_pad, true) + " " + g.label();
    cx.report.run(name, [&] {
        Problems problems;
        Rng rng(seed_of(name));
        // The forward's indices (and divisors) come from the reference, so this case does not depend on
        // the device's forward pass.
        std::vector<float> x = pool_input(rng, g);
        PoolReference ref = pool_reference(g, op, count_include_pad, x);
        std::vector<float> dy = uniform(rng, g.y_size(), -1, 1);
        DeviceArray<float> DY(cx.device, dy), DX(cx.device, nan_filled(g.x_size()));
        DeviceArray<int32_t> I(cx.device, op == KN_POOL_MAX ? ref.index : std::vector<int32_t>{});
        expect_ok_or_skip(cx,
                          kn_pool2d_backward_f32(op, DY.get(), op == KN_POOL_MAX ? I.get() : nullptr, DX.get(), g.n,
                                                 g.c, g.h, g.w, g.kh, g.kw, g.sh, g.sw, g.ph, g.pw,
                                                 count_include_pad ? 1 : 0),
                          "kn_pool2d_backward_f32");
        std::vector<float> got = DX.read();
        const int64_t OH = g.oh(), OW = g.ow(), plane = g.h * g.w;
        std::vector<double> want(static_cast<size_t>(g.x_size()), 0.0), mag(want.size(), 0.0), tol(want.size());
        std::vector<int64_t> terms(want.size(), 0);
        for (int64_t p = 0; p < g.n * g.c; ++p)
            for (int64_t oh = 0; oh < OH; ++oh)
                for (int64_t ow = 0; ow < OW; ++ow) {
                    const int64_t o = (p * OH + oh) * OW + ow;
                    auto add = [&](int64_t xi, double v) {
                        want[xi] += v;
                        mag[xi] += std::fabs(v);
                        ++terms[xi];
                    };
                    if (op == KN_POOL_MAX) {
                        add(p * plane + ref.index[o], dy[o]);
                        continue;
                    }
                    const Window win = window_of(g, oh, ow);
                    for (int64_t ih = win.r0; ih < win.r1; ++ih)
                        for (int64_t iw = win.c0; iw < win.c1; ++iw) add(p * plane + ih * g.w + iw, dy[o] / ref.divisor[o]);
                }
        for (size_t i = 0; i < tol.size(); ++i) tol[i] = worst_case_sum_tol(terms[i] + 1, mag[i]);
        compare_into(problems, got, want, tol, "dx");
        problems.add(guard_violation(got, DX, "dx"));
        problems.add(input_violation(DY, "dy"));
        if (op == KN_POOL_MAX) problems.add(input_violation(I, "indices"));
        return problems;
    });
}

}  // namespace

void test_pooling(Context& cx) {
    std::vector<PoolCase> cases = {
        pool(2, 3, 8, 8, 2, 2).stride(2, 2),                          // the classic 2x2/2
        pool(2, 3, 7, 9, 2, 2).stride(2, 2),                          // 2x2/2 leaving a row and a column over
        pool(1, 2, 10, 11, 3, 3).stride(3, 3).with(PoolValues::ties), // 3x3/3 tiles, two columns over
        pool(1, 1, 7, 9, 3, 3).pad(1, 1),                             // overlapping (stride 1 < 3), padded
        pool(2, 3, 13, 11, 3, 3).stride(2, 2).pad(1, 1),              // overlapping, primes
        pool(2, 3, 13, 11, 3, 3).stride(2, 2).pad(1, 1).with(PoolValues::negative),  // padding must not win
        pool(2, 2, 10, 9, 2, 2).stride(3, 3),                         // stride > kernel: unread inputs get dx 0
        pool(2, 3, 10, 11, 3, 3).stride(3, 3),                        // 3x3/3 tiles (average too), two columns over
        pool(1, 2, 6, 71, 2, 2).stride(2, 2),                         // 2x2/2, 35 windows a row: 16 + 16 + 3, one column over
        pool(1, 2, 9, 12, 3, 2).stride(2, 1).pad(1, 1),               // non-square window, stride, padding
        pool(2, 3, 5, 5, 5, 5).pad(2, 2).with(PoolValues::negative),  // padding = half the window
        pool(3, 4, 1, 17, 1, 3).stride(1, 2).pad(0, 1),               // one input row
        pool(2, 2, 6, 6, 6, 6),                                       // global pooling: one output per plane
        pool(1, 1, 1, 1, 1, 1),                                       // 1x1 everything
        pool(2, 2, 17, 19, 3, 3).stride(4, 4).pad(1, 1),              // stride 4 (no constant-stride variant)
        pool(2, 2, 11, 16, 4, 4).stride(3, 3).pad(2, 2),              // stride 3, pad 2
        pool(2, 2, 9, 300, 3, 3).pad(1, 1),                           // rows wider than one interior strip
        pool(1, 2, 7, 261, 3, 3).stride(2, 2).pad(1, 1),
        pool(4, 8, 28, 28, 2, 2).stride(2, 2),                        // MNIST-like
        pool(3, 5, 9, 11, 3, 3).stride(2, 2).with(PoolValues::ties),  // ties: first maximum
        pool(3, 5, 9, 11, 3, 3).stride(1, 1).pad(1, 1).with(PoolValues::nans),  // NaN propagates, -inf
        pool(2, 3, 8, 8, 2, 2).stride(2, 2).with(PoolValues::nans),
        pool(0, 3, 4, 4, 2, 2).stride(2, 2),                          // batch 0: nothing to do
    };
    if (!cx.quick) {
        cases.push_back(pool(16, 32, 28, 28, 2, 2).stride(2, 2));
        cases.push_back(pool(2, 8, 56, 57, 3, 3).stride(2, 2).pad(1, 1));  // ResNet stem pooling shape
    }
    for (const PoolCase& g : cases) {
        pool_forward_case(cx, g, KN_POOL_MAX, false, true);
        pool_backward_case(cx, g, KN_POOL_MAX, false);
        if (g.values == PoolValues::nans || g.values == PoolValues::ties) continue;  // max-only features
        for (bool include_pad : {true, false}) {
            if (!include_pad && g.ph == 0 && g.pw == 0) continue;  // the same divisor either way
            pool_forward_case(cx, g, KN_POOL_AVG, include_pad, false);
            pool_backward_case(cx, g, KN_POOL_AVG, include_pad);
        }
    }
    // Max without indices (inference): the same values.
    pool_forward_case(cx, cases[2], KN_POOL_MAX, false, false);
    pool_forward_case(cx, cases[16], KN_POOL_MAX, false, false);
}

namespace {

// =================================================================================================
// Batch normalization
// =================================================================================================
//
// Forward, training (m = batch * spatial, L = ceil(log2 m)), from a float implementation's error:
//   mean:   |err| <= (L + 4) eps mean|x|                       (a pairwise sum, then / m and rounding)
//   var:    |err| <= (L + 6) eps var + err_mean^2             (two-pass: the mean's error enters squared)
//   invstd: |err| <= invstd (err_var / (2 (var + eps)) + 4 eps)
//   y:      |err| <= |gamma| (err_mean invstd + |x - mean| err_invstd) + 6 eps (|xhat gamma| + |beta|)
//   running stats: momentum times the statistic's error plus 4 eps of each term.
// Inference: y from the given statistics, 8 eps |xhat gamma| + 6 eps |beta|; save_mean = running_mean
// exactly.
// Backward (from the float32 save_mean/save_invstd it is given): dbeta (L + 4) eps sum|dy|, dgamma
// (L + 6) eps sum|dy xhat|, dx = gamma invstd (dy - dbeta/m - xhat dgamma/m) with 6 eps on each of
// its terms plus the two sums' errors carried through.

struct BnCase {
    int64_t n, c, s;
    double offset = 0, spread = 1;  // x = offset + per-channel shift + spread * U(-1, 1) * per-channel scale
    bool training = true;
    bool running = true;   // pass running_mean/running_var (training may leave them NULL)
    bool save = true;      // pass save_mean/save_invstd
    bool dx = true;        // backward: pass dx
    float momentum = 0.1f, eps = 1e-5f;

    BnCase& inference() { training = false; return *this; }
    BnCase& values(double o, double sp) { offset = o; spread = sp; return *this; }
    BnCase& without_running() { running = false; return *this; }
    BnCase& without_save() { save = false; return *this; }
    BnCase& without_dx() { dx = false; return *this; }
    BnCase& with_momentum(float m) { momentum = m; return *this; }

    int64_t size() const { return n * c * s; }
    std::string label() const {
        char b[256];
        std::snprintf(b, sizeof b, "%s [batch,channels,spatial]=[%" PRId64 ",%" PRId64 ",%" PRId64 "]%s%s%s%s",
                      training ? "training" : "inference", n, c, s,
                      offset != 0 || spread != 1 ? (" x~" + fmt(offset) + "+-" + fmt(spread)).c_str() : "",
                      training && !running ? " no running stats" : "", !save ? " no save" : "",
                      momentum != 0.1f ? (" momentum=" + fmt(momentum)).c_str() : "");
        return b;
    }
};

BnCase bn(int64_t n, int64_t c, int64_t s) { return BnCase{n, c, s}; }

struct BnInputs {
    std::vector<float> x, gamma, beta, running_mean, running_var;
};

BnInputs bn_inputs(Rng& rng, const BnCase& g) {
    BnInputs in;
    in.x.resize(static_cast<size_t>(g.size()));
    std::vector<double> shift(static_cast<size_t>(g.c)), scale(static_cast<size_t>(g.c));
    for (int64_t c = 0; c < g.c; ++c) {
        shift[c] = g.offset == 0 ? rng.uniform(-1, 1) : 0.0;
        scale[c] = g.spread * (0.5 + 0.5 * static_cast<double>(c % 3));
    }
    for (int64_t i = 0; i < g.size(); ++i) {
        const int64_t c = (i / g.s) % g.c;
        in.x[i] = static_cast<float>(g.offset + shift[c] + scale[c] * rng.uniform(-1, 1));
    }
    in.gamma = uniform(rng, g.c, -1.5, 1.5);
    in.beta = uniform(rng, g.c, -1, 1);
    in.running_mean = uniform(rng, g.c, -1, 1);
    in.running_var = uniform(rng, g.c, 0.5, 2);
    return in;
}

// Per-channel statistics of x in float64.
struct BnStats {
    std::vector<double> mean, var, mean_abs;
};

BnStats bn_stats(const BnCase& g, const std::vector<float>& x) {
    BnStats st;
    const double m = static_cast<double>(g.n * g.s);
    st.mean.assign(static_cast<size_t>(g.c), 0.0);
    st.var.assign(st.mean.size(), 0.0);
    st.mean_abs.assign(st.mean.size(), 0.0);
    for (int64_t i = 0; i < g.size(); ++i) {
        st.mean[(i / g.s) % g.c] += x[i];
        st.mean_abs[(i / g.s) % g.c] += std::fabs(x[i]);
    }
    for (int64_t c = 0; c < g.c; ++c) {
        st.mean[c] /= m;
        st.mean_abs[c] /= m;
    }
    for (int64_t i = 0; i < g.size(); ++i) {
        const double d = x[i] - st.mean[(i / g.s) % g.c];
        st.var[(i / g.s) % g.c] += d * d;
    }
    for (int64_t c = 0; c < g.c; ++c) st.var[c] /= m;
    return st;
}

void bn_forward_case(Context& cx, const BnCase& g) {
    std::string name = "batch_norm " + g.label();
    cx.report.run(name, [&] {
        Problems problems;
        Rng rng(seed_of(name));
        BnInputs in = bn_inputs(rng, g);
        const bool running = !g.training || g.running;
        DeviceArray<float> X(cx.device, in.x), Y(cx.device, nan_filled(g.size()));
        DeviceArray<float> G(cx.device, in.gamma), B(cx.device, in.beta);
        DeviceArray<float> RM(cx.device, running ? in.running_mean : std::vector<float>{});
        DeviceArray<float> RV(cx.device, running ? in.running_var : std::vector<float>{});
        DeviceArray<float> SM(cx.device, nan_filled(g.save ? g.c : 0)), SI(cx.device, nan_filled(g.save ? g.c : 0));
        expect_ok_or_skip(cx,
                          kn_batch_norm_f32(X.get(), Y.get(), G.get(), B.get(), running ? RM.get() : nullptr,
                                            running ? RV.get() : nullptr, g.save ? SM.get() : nullptr,
                                            g.save ? SI.get() : nullptr, g.n, g.c, g.s, g.eps, g.momentum,
                                            g.training ? 1 : 0),
                          "kn_batch_norm_f32");

        const int64_t C = g.c, m = g.n * g.s;
        const double L = log2_levels(m), eps = g.eps, mom = g.momentum;
        std::vector<double> mean(static_cast<size_t>(C)), invstd(mean.size()), mean_tol(mean.size(), 0.0),
            invstd_tol(mean.size());
        std::vector<double> rm_want(mean.size()), rm_tol(mean.size()), rv_want(mean.size()), rv_tol(mean.size());
        if (g.training) {
            BnStats st = bn_stats(g, in.x);
            for (int64_t c = 0; c < C; ++c) {
                mean[c] = st.mean[c];
                mean_tol[c] = (L + 4) * kEps * st.mean_abs[c];
                const double var_tol = (L + 6) * kEps * st.var[c] + mean_tol[c] * mean_tol[c];
                invstd[c] = 1.0 / std::sqrt(st.var[c] + eps);
                invstd_tol[c] = invstd[c] * (var_tol / (2 * (st.var[c] + eps)) + 4 * kEps);
                const double unbiased_factor = m > 1 ? static_cast<double>(m) / static_cast<double>(m - 1) : 1.0;
                const double rm0 = in.running_mean[c], rv0 = in.running_var[c];
                rm_want[c] = (1 - mom) * rm0 + mom * mean[c];
                rm_tol[c] = mom * mean_tol[c] + 4 * kEps * (std::fabs((1 - mom) * rm0) + std::fabs(mom * mean[c]));
                rv_want[c] = (1 - mom) * rv0 + mom * st.var[c] * unbiased_factor;
                rv_tol[c] = mom * unbiased_factor * var_tol +
                            4 * kEps * (std::fabs((1 - mom) * rv0) + std::fabs(mom * st.var[c] * unbiased_factor));
            }
        } else {
            for (int64_t c = 0; c < C; ++c) {
                mean[c] = in.running_mean[c];
                invstd[c] = 1.0 / std::sqrt(static_cast<double>(in.running_var[c]) + eps);
                invstd_tol[c] = 4 * kEps * invstd[c];
            }
        }
        std::vector<float> got = Y.read();
        std::vector<double> want(static_cast<size_t>(g.size())), tol(want.size());
        for (int64_t i = 0; i < g.size(); ++i) {
            const int64_t c = (i / g.s) % C;
            const double d = in.x[i] - mean[c], xhat = d * invstd[c], gm = in.gamma[c];
            want[i] = xhat * gm + in.beta[c];
            tol[i] = g.training ? std::fabs(gm) * (mean_tol[c] * invstd[c] + std::fabs(d) * invstd_tol[c]) +
                                      6 * kEps * (std::fabs(xhat * gm) + std::fabs(in.beta[c]))
                                : 8 * kEps * std::fabs(xhat * gm) + 6 * kEps * std::fabs(in.beta[c]);
        }
        compare_into(problems, got, want, tol, "y");
        problems.add(guard_violation(got, Y, "y"));
        if (g.save) {
            std::vector<float> sm = SM.read(), si = SI.read();
            std::vector<double> sm_tol = g.training ? mean_tol : std::vector<double>(mean.size(), 0.0);
            compare_into(problems, sm, mean, sm_tol, "save_mean");
            compare_into(problems, si, invstd, invstd_tol, "save_invstd");
            problems.add(guard_violation(sm, SM, "save_mean"));
            problems.add(guard_violation(si, SI, "save_invstd"));
        }
        if (g.training && running) {
            std::vector<float> rm = RM.read(), rv = RV.read();
            compare_into(problems, rm, rm_want, rm_tol, "running_mean");
            compare_into(problems, rv, rv_want, rv_tol, "running_var");
            problems.add(guard_violation(rm, RM, "running_mean"));
            problems.add(guard_violation(rv, RV, "running_var"));
        } else if (running) {
            problems.add(input_violation(RM, "running_mean (inference)"));
            problems.add(input_violation(RV, "running_var (inference)"));
        }
        problems.add(input_violation(X, "x"));
        problems.add(input_violation(G, "gamma"));
        problems.add(input_violation(B, "beta"));
        return problems;
    });
}

void bn_backward_case(Context& cx, const BnCase& g) {
    std::string name = "batch_norm_backward " + g.label() + (g.dx ? "" : " no dx");
    cx.report.run(name, [&] {
        Problems problems;
        Rng rng(seed_of(name));
        BnInputs in = bn_inputs(rng, g);
        std::vector<float> dy = uniform(rng, g.size(), -1, 1);
        const int64_t C = g.c, m = g.n * g.s;
        // The saved statistics a forward call would have written, as float32.
        std::vector<float> save_mean(static_cast<size_t>(C)), save_invstd(save_mean.size());
        if (g.training) {
            BnStats st = bn_stats(g, in.x);
            for (int64_t c = 0; c < C; ++c) {
                save_mean[c] = static_cast<float>(st.mean[c]);
                save_invstd[c] = static_cast<float>(1.0 / std::sqrt(st.var[c] + g.eps));
            }
        } else {
            for (int64_t c = 0; c < C; ++c) {
                save_mean[c] = in.running_mean[c];
                save_invstd[c] = static_cast<float>(1.0 / std::sqrt(static_cast<double>(in.running_var[c]) + g.eps));
            }
        }
        DeviceArray<float> X(cx.device, in.x), DY(cx.device, dy), G(cx.device, in.gamma);
        DeviceArray<float> SM(cx.device, save_mean), SI(cx.device, save_invstd);
        DeviceArray<float> DX(cx.device, nan_filled(g.dx ? g.size() : 0));
        DeviceArray<float> DG(cx.device, nan_filled(C)), DB(cx.device, nan_filled(C));
        expect_ok_or_skip(cx,
                          kn_batch_norm_backward_f32(X.get(), DY.get(), G.get(), SM.get(), SI.get(),
                                                     g.dx ? DX.get() : nullptr, DG.get(), DB.get(), g.n, g.c, g.s,
                                                     g.training ? 1 : 0),
                          "kn_batch_norm_backward_f32");

        const double L = log2_levels(m);
        std::vector<double> dbeta(static_cast<size_t>(C), 0.0), dgamma(dbeta.size(), 0.0), dbeta_abs(dbeta.size(), 0.0),
            dgamma_abs(dbeta.size(), 0.0), dbeta_tol(dbeta.size()), dgamma_tol(dbeta.size());
        auto xhat = [&](int64_t i) {
            const int64_t c = (i / g.s) % C;
            return (static_cast<double>(in.x[i]) - save_mean[c]) * static_cast<double>(save_invstd[c]);
        };
        for (int64_t i = 0; i < g.size(); ++i) {
            const int64_t c = (i / g.s) % C;
            dbeta[c] += dy[i];
            dbeta_abs[c] += std::fabs(dy[i]);
            dgamma[c] += dy[i] * xhat(i);
            dgamma_abs[c] += std::fabs(dy[i] * xhat(i));
        }
        for (int64_t c = 0; c < C; ++c) {
            dbeta_tol[c] = (L + 4) * kEps * dbeta_abs[c];
            dgamma_tol[c] = (L + 6) * kEps * dgamma_abs[c];
        }
        std::vector<float> got_g = DG.read(), got_b = DB.read();
        compare_into(problems, got_g, dgamma, dgamma_tol, "dgamma");
        compare_into(problems, got_b, dbeta, dbeta_tol, "dbeta");
        problems.add(guard_violation(got_g, DG, "dgamma"));
        problems.add(guard_violation(got_b, DB, "dbeta"));
        if (g.dx) {
            std::vector<float> got = DX.read();
            std::vector<double> want(static_cast<size_t>(g.size())), tol(want.size());
            const double md = static_cast<double>(m);
            for (int64_t i = 0; i < g.size(); ++i) {
                const int64_t c = (i / g.s) % C;
                const double a = static_cast<double>(in.gamma[c]) * save_invstd[c], xh = xhat(i);
                if (g.training) {
                    want[i] = a * (dy[i] - dbeta[c] / md - xh * dgamma[c] / md);
                    tol[i] = std::fabs(a) * (6 * kEps * (std::fabs(dy[i]) + std::fabs(dbeta[c]) / md +
                                                         std::fabs(xh * dgamma[c]) / md) +
                                             dbeta_tol[c] / md + std::fabs(xh) * dgamma_tol[c] / md);
                } else {
                    want[i] = a * dy[i];
                    tol[i] = 4 * kEps * std::fabs(want[i]);
                }
            }
            compare_into(problems, got, want, tol, "dx");
            problems.add(guard_violation(got, DX, "dx"));
        }
        problems.add(input_violation(X, "x"));
        problems.add(input_violation(DY, "dy"));
        problems.add(input_violation(G, "gamma"));
        problems.add(input_violation(SM, "save_mean"));
        problems.add(input_violation(SI, "save_invstd"));
        return problems;
    });
}

}  // namespace

void test_batch_norm(Context& cx) {
    std::vector<BnCase> cases = {
        bn(4, 3, 35),                              // 2-D: spatial = 5 x 7
        bn(16, 5, 1),                              // 1-D batch norm (spatial 1)
        bn(7, 3, 4),                               // short spatial
        bn(1, 4, 1),                               // m == 1: variance 0, biased running variance
        bn(1, 3, 9),                               // batch 1
        bn(3, 70, 1),                              // many channels, spatial 1
        bn(9, 600, 1),                             // more channels than one row block
        bn(2, 3, 1023),                            // odd spatial
        bn(8, 3, 100).values(1e4, 1),              // large mean offset, unit spread: no cancellation
        bn(64, 4, 1).values(1e4, 1),               // the same in 1-D
        bn(2, 2, 2000).values(-3e4, 0.01),         // larger offset, variance near eps
        bn(32, 2, 784),                            // few channels, many values: the batch split over threads
        bn(20000, 3, 1),                           // 1-D, long batch
        bn(5, 3, 40).without_running(),            // training without running statistics
        bn(5, 3, 40).without_save(),
        bn(6, 2, 9).with_momentum(1.0f),           // running stats replaced by the batch's
        bn(6, 2, 9).with_momentum(0.0f),           // running stats unchanged
        bn(4, 3, 35).inference(),
        bn(16, 5, 1).inference(),
        bn(1, 2, 1).inference(),
        bn(3, 2, 50).values(1e4, 1).inference(),
        bn(0, 3, 4).inference().without_save(),   // no values: nothing to do
    };
    if (!cx.quick) {
        cases.push_back(bn(16, 32, 196));          // MNIST conv2-like
        cases.push_back(bn(128, 256, 1));          // after a dense layer
    }
    for (const BnCase& g : cases) {
        bn_forward_case(cx, g);
        if (g.n * g.s > 0 && g.save) bn_backward_case(cx, g);
    }
    bn_backward_case(cx, bn(4, 3, 35).without_dx());
    bn_backward_case(cx, bn(16, 5, 1).inference().without_dx());
}

// =================================================================================================
// Error paths
// =================================================================================================

void test_cnn_errors(Context& cx) {
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
    DeviceArray<float> big4(cx.device, std::vector<float>(4096, 1.0f));
    DeviceArray<float> big5(cx.device, std::vector<float>(4096, 1.0f));
    DeviceArray<float> big6(cx.device, std::vector<float>(4096, 1.0f));

    // Convolution.
    error_case("conv2d kernel larger than the padded input", [&] {
        kn_status s = kn_conv2d_f32(big.get(), big2.get(), nullptr, big3.get(), 1, 1, 4, 4, 1, 6, 6, 1, 1, 0, 0, 1, 1, 1);
        return expect_error(cx, s, KN_ERROR_SHAPE_MISMATCH, {"6x6", "4x4", "x [1, 1, 4, 4]"});
    });
    error_case("conv2d dilated kernel larger than the padded input", [&] {
        // 3 taps at dilation 3 span 7 > 5 + 2 * 0.
        kn_status s = kn_conv2d_f32(big.get(), big2.get(), nullptr, big3.get(), 2, 3, 5, 9, 4, 3, 3, 1, 1, 0, 0, 3, 1, 1);
        return expect_error(cx, s, KN_ERROR_SHAPE_MISMATCH, {"7x3", "5x9", "dilation 3x1"});
    });
    error_case("conv2d_backward_data kernel larger than the padded input", [&] {
        kn_status s = kn_conv2d_backward_data_f32(big.get(), big2.get(), big3.get(), 1, 2, 3, 3, 2, 5, 5, 1, 1, 0, 0, 1,
                                                  1, 1);
        return expect_error(cx, s, KN_ERROR_SHAPE_MISMATCH, {"5x5", "3x3"});
    });
    error_case("conv2d channels not divisible by groups", [&] {
        kn_status s = kn_conv2d_f32(big.get(), big2.get(), nullptr, big3.get(), 1, 6, 5, 5, 4, 3, 3, 1, 1, 1, 1, 1, 1, 3);
        return expect_error(cx, s, KN_ERROR_SHAPE_MISMATCH, {"in_channels = 6", "out_channels = 4", "groups = 3"});
    });
    error_case("conv2d_backward_weights in_channels not divisible by groups", [&] {
        kn_status s = kn_conv2d_backward_weights_f32(big.get(), big2.get(), big3.get(), nullptr, 1, 5, 5, 5, 4, 3, 3, 1,
                                                     1, 1, 1, 1, 1, 2);
        return expect_error(cx, s, KN_ERROR_SHAPE_MISMATCH, {"in_channels = 5", "groups = 2"});
    });
    error_case("conv2d x buffer too small", [&] {
        kn_status s = kn_conv2d_f32(small.get(), big2.get(), nullptr, big3.get(), 2, 3, 8, 8, 4, 3, 3, 1, 1, 1, 1, 1, 1, 1);
        return expect_error(cx, s, KN_ERROR_SHAPE_MISMATCH, {"'x'", "x [2, 3, 8, 8]", "384"});
    });
    error_case("conv2d w buffer too small", [&] {
        kn_status s = kn_conv2d_f32(big.get(), small.get(), nullptr, big3.get(), 2, 3, 8, 8, 4, 3, 3, 1, 1, 1, 1, 1, 1, 1);
        return expect_error(cx, s, KN_ERROR_SHAPE_MISMATCH, {"'w'", "w [4, 3, 3, 3]", "108"});
    });
    error_case("conv2d y buffer too small", [&] {
        kn_status s = kn_conv2d_f32(big.get(), big2.get(), nullptr, small.get(), 1, 3, 8, 8, 4, 3, 3, 1, 1, 1, 1, 1, 1, 1);
        return expect_error(cx, s, KN_ERROR_SHAPE_MISMATCH, {"'y'", "256"});
    });
    error_case("conv2d bias buffer too small", [&] {
        kn_status s = kn_conv2d_f32(big.get(), big2.get(), small.get(), big3.get(), 1, 3, 4, 4, 30, 1, 1, 1, 1, 0, 0, 1, 1, 1);
        return expect_error(cx, s, KN_ERROR_SHAPE_MISMATCH, {"'bias'", "30"});
    });
    error_case("conv2d_backward_data dx buffer too small", [&] {
        kn_status s = kn_conv2d_backward_data_f32(big.get(), big2.get(), small.get(), 2, 3, 8, 8, 4, 3, 3, 1, 1, 1, 1, 1,
                                                  1, 1);
        return expect_error(cx, s, KN_ERROR_SHAPE_MISMATCH, {"'dx'", "x [2, 3, 8, 8]"});
    });
    error_case("conv2d_backward_weights dw buffer too small", [&] {
        kn_status s = kn_conv2d_backward_weights_f32(big.get(), big2.get(), small.get(), nullptr, 2, 3, 8, 8, 4, 3, 3, 1,
                                                     1, 1, 1, 1, 1, 1);
        return expect_error(cx, s, KN_ERROR_SHAPE_MISMATCH, {"'dw'", "w [4, 3, 3, 3]"});
    });
    error_case("conv2d_backward_weights dbias buffer too small", [&] {
        kn_status s = kn_conv2d_backward_weights_f32(big.get(), big2.get(), big3.get(), small.get(), 1, 2, 3, 3, 40, 1,
                                                     1, 1, 1, 0, 0, 1, 1, 1);
        return expect_error(cx, s, KN_ERROR_SHAPE_MISMATCH, {"'dbias'", "40"});
    });
    error_case("conv2d stride 0", [&] {
        kn_status s = kn_conv2d_f32(big.get(), big2.get(), nullptr, big3.get(), 1, 1, 4, 4, 1, 3, 3, 0, 1, 0, 0, 1, 1, 1);
        return expect_error(cx, s, KN_ERROR_INVALID_ARGUMENT, {"stride_height"});
    });
    error_case("conv2d negative padding", [&] {
        kn_status s = kn_conv2d_f32(big.get(), big2.get(), nullptr, big3.get(), 1, 1, 4, 4, 1, 3, 3, 1, 1, 0, -1, 1, 1, 1);
        return expect_error(cx, s, KN_ERROR_INVALID_ARGUMENT, {"pad_width"});
    });
    error_case("conv2d groups 0", [&] {
        kn_status s = kn_conv2d_f32(big.get(), big2.get(), nullptr, big3.get(), 1, 2, 4, 4, 2, 3, 3, 1, 1, 0, 0, 1, 1, 0);
        return expect_error(cx, s, KN_ERROR_INVALID_ARGUMENT, {"groups"});
    });
    error_case("conv2d null x", [&] {
        kn_status s = kn_conv2d_f32(nullptr, big2.get(), nullptr, big3.get(), 1, 1, 4, 4, 1, 3, 3, 1, 1, 0, 0, 1, 1, 1);
        return expect_error(cx, s, KN_ERROR_INVALID_ARGUMENT);
    });

    // Pooling.
    error_case("pool2d padding more than half the kernel", [&] {
        kn_status s = kn_pool2d_f32(KN_POOL_MAX, big.get(), big2.get(), nullptr, 1, 2, 8, 8, 3, 3, 1, 1, 2, 1, 1);
        return expect_error(cx, s, KN_ERROR_INVALID_ARGUMENT, {"padding 2x1", "kernel 3x3", "x [1, 2, 8, 8]"});
    });
    error_case("pool2d_backward padding more than half the kernel", [&] {
        kn_status s = kn_pool2d_backward_f32(KN_POOL_AVG, big.get(), nullptr, big2.get(), 1, 2, 8, 8, 2, 4, 1, 1, 0, 3, 1);
        return expect_error(cx, s, KN_ERROR_INVALID_ARGUMENT, {"padding 0x3", "kernel 2x4"});
    });
    error_case("pool2d window larger than the padded input", [&] {
        kn_status s = kn_pool2d_f32(KN_POOL_AVG, big.get(), big2.get(), nullptr, 1, 1, 3, 9, 6, 2, 1, 1, 1, 0, 1);
        return expect_error(cx, s, KN_ERROR_SHAPE_MISMATCH, {"6x2", "5x9"});
    });
    error_case("pool2d y buffer too small", [&] {
        kn_status s = kn_pool2d_f32(KN_POOL_MAX, big.get(), small.get(), nullptr, 2, 3, 8, 8, 2, 2, 2, 2, 0, 0, 1);
        return expect_error(cx, s, KN_ERROR_SHAPE_MISMATCH, {"'y'", "x [2, 3, 8, 8]", "96"});
    });
    error_case("pool2d x buffer too small", [&] {
        kn_status s = kn_pool2d_f32(KN_POOL_AVG, small.get(), big.get(), nullptr, 1, 1, 7, 7, 2, 2, 2, 2, 0, 0, 1);
        return expect_error(cx, s, KN_ERROR_SHAPE_MISMATCH, {"'x'", "49"});
    });
    error_case("pool2d indices buffer too small", [&] {
        kn_status s = kn_pool2d_f32(KN_POOL_MAX, big.get(), big2.get(), small.get(), 2, 3, 8, 8, 2, 2, 2, 2, 0, 0, 1);
        return expect_error(cx, s, KN_ERROR_SHAPE_MISMATCH, {"'indices'", "int32", "96"});
    });
    error_case("pool2d_backward dx buffer too small", [&] {
        kn_status s = kn_pool2d_backward_f32(KN_POOL_AVG, big.get(), nullptr, small.get(), 1, 2, 6, 6, 2, 2, 2, 2, 0, 0, 1);
        return expect_error(cx, s, KN_ERROR_SHAPE_MISMATCH, {"'dx'", "72"});
    });
    error_case("pool2d_backward max without indices", [&] {
        kn_status s = kn_pool2d_backward_f32(KN_POOL_MAX, big.get(), nullptr, big2.get(), 1, 2, 6, 6, 2, 2, 2, 2, 0, 0, 1);
        return expect_error(cx, s, KN_ERROR_INVALID_ARGUMENT, {"indices"});
    });
    error_case("pool2d unknown op", [&] {
        kn_status s = kn_pool2d_f32(static_cast<kn_pool_op>(5), big.get(), big2.get(), nullptr, 1, 1, 4, 4, 2, 2, 2, 2, 0,
                                    0, 1);
        return expect_error(cx, s, KN_ERROR_INVALID_ARGUMENT, {"op"});
    });
    error_case("pool2d stride 0", [&] {
        kn_status s = kn_pool2d_f32(KN_POOL_MAX, big.get(), big2.get(), nullptr, 1, 1, 4, 4, 2, 2, 2, 0, 0, 0, 1);
        return expect_error(cx, s, KN_ERROR_INVALID_ARGUMENT, {"stride_width"});
    });

    // Batch normalization.
    error_case("batch_norm training with no values", [&] {
        kn_status s = kn_batch_norm_f32(big.get(), big2.get(), big3.get(), big4.get(), nullptr, nullptr, nullptr,
                                        nullptr, 0, 3, 5, 1e-5f, 0.1f, 1);
        return expect_error(cx, s, KN_ERROR_SHAPE_MISMATCH, {"batch = 0"});
    });
    error_case("batch_norm inference without running statistics", [&] {
        kn_status s = kn_batch_norm_f32(big.get(), big2.get(), big3.get(), big4.get(), nullptr, nullptr, nullptr,
                                        nullptr, 2, 3, 5, 1e-5f, 0.1f, 0);
        return expect_error(cx, s, KN_ERROR_INVALID_ARGUMENT, {"running_mean"});
    });
    error_case("batch_norm running_mean without running_var", [&] {
        kn_status s = kn_batch_norm_f32(big.get(), big2.get(), big3.get(), big4.get(), big5.get(), nullptr, nullptr,
                                        nullptr, 2, 3, 5, 1e-5f, 0.1f, 1);
        return expect_error(cx, s, KN_ERROR_INVALID_ARGUMENT, {"running_var"});
    });
    error_case("batch_norm gamma buffer too small", [&] {
        kn_status s = kn_batch_norm_f32(big.get(), big2.get(), small.get(), big4.get(), nullptr, nullptr, nullptr,
                                        nullptr, 2, 30, 5, 1e-5f, 0.1f, 1);
        return expect_error(cx, s, KN_ERROR_SHAPE_MISMATCH, {"'gamma'", "[2, 30, 5]"});
    });
    error_case("batch_norm x buffer too small", [&] {
        kn_status s = kn_batch_norm_f32(small.get(), big2.get(), big3.get(), big4.get(), nullptr, nullptr, nullptr,
                                        nullptr, 2, 3, 5, 1e-5f, 0.1f, 1);
        return expect_error(cx, s, KN_ERROR_SHAPE_MISMATCH, {"'x'", "[2, 3, 5]", "30"});
    });
    error_case("batch_norm save_invstd buffer too small", [&] {
        kn_status s = kn_batch_norm_f32(big.get(), big2.get(), big3.get(), big4.get(), nullptr, nullptr, big5.get(),
                                        small.get(), 2, 31, 5, 1e-5f, 0.1f, 1);
        return expect_error(cx, s, KN_ERROR_SHAPE_MISMATCH, {"'save_invstd'", "31"});
    });
    error_case("batch_norm eps 0", [&] {
        kn_status s = kn_batch_norm_f32(big.get(), big2.get(), big3.get(), big4.get(), nullptr, nullptr, nullptr,
                                        nullptr, 2, 3, 5, 0.0f, 0.1f, 1);
        return expect_error(cx, s, KN_ERROR_INVALID_ARGUMENT, {"eps"});
    });
    error_case("batch_norm momentum above 1", [&] {
        kn_status s = kn_batch_norm_f32(big.get(), big2.get(), big3.get(), big4.get(), nullptr, nullptr, nullptr,
                                        nullptr, 2, 3, 5, 1e-5f, 1.5f, 1);
        return expect_error(cx, s, KN_ERROR_INVALID_ARGUMENT, {"momentum"});
    });
    error_case("batch_norm_backward dx buffer too small", [&] {
        kn_status s = kn_batch_norm_backward_f32(big.get(), big2.get(), big3.get(), big4.get(), big5.get(), small.get(),
                                                 big6.get(), big.get(), 3, 4, 5, 1);
        return expect_error(cx, s, KN_ERROR_SHAPE_MISMATCH, {"'dx'", "[3, 4, 5]", "60"});
    });
    error_case("batch_norm_backward null dgamma", [&] {
        kn_status s = kn_batch_norm_backward_f32(big.get(), big2.get(), big3.get(), big4.get(), big5.get(), big6.get(),
                                                 nullptr, big.get(), 3, 4, 5, 1);
        return expect_error(cx, s, KN_ERROR_INVALID_ARGUMENT);
    });

    if (cx.other) {
        DeviceArray<float> remote(cx.other, std::vector<float>(4096, 1.0f));
        error_case("conv2d w on another device", [&] {
            kn_status s = kn_conv2d_f32(big.get(), remote.get(), nullptr, big3.get(), 1, 1, 4, 4, 1, 3, 3, 1, 1, 0, 0, 1, 1, 1);
            return expect_error(cx, s, KN_ERROR_DEVICE_MISMATCH, {"'w'"});
        });
        error_case("pool2d indices on another device", [&] {
            kn_status s = kn_pool2d_f32(KN_POOL_MAX, big.get(), big2.get(), remote.get(), 1, 1, 4, 4, 2, 2, 2, 2, 0, 0, 1);
            return expect_error(cx, s, KN_ERROR_DEVICE_MISMATCH, {"'indices'"});
        });
        error_case("batch_norm running_var on another device", [&] {
            kn_status s = kn_batch_norm_f32(big.get(), big2.get(), big3.get(), big4.get(), big5.get(), remote.get(),
                                            nullptr, nullptr, 2, 3, 5, 1e-5f, 0.1f, 1);
            return expect_error(cx, s, KN_ERROR_DEVICE_MISMATCH, {"'running_var'"});
        });
    }
}

}  // namespace selftest
