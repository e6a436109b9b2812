// test_cuda_conv.cpp: runs the convolution, pooling and batch-norm launchers of native/kernels/cuda
// (conv.cu, pool.cu, batch_norm.cu) on the CPU emulator and compares them with float64 references,
// over awkward shapes: odd and prime sizes, padding larger than half the kernel, stride larger than
// the kernel, 1 x 1 kernels, single channels, batch 1, groups and depthwise (with a channel
// multiplier), dilation, non-square kernels, backward-data residue classes that no tap reaches;
// every path of each launcher (direct kernels with int32 and int64 indices, the implicit GEMM with
// each block tile, split-K with several chunk counts, the planned choice at several SM counts);
// pooling with overlapping windows, count_include_pad both ways, NaN, ties and -inf in max pooling;
// batch norm with spatial 1 and > 1, m == 1, values ~1e4 with a small variance, one and several
// chunks per channel. Also the multiply-shift divider of fast_divmod.cuh.
//
// Buffers are allocated at their exact size (AddressSanitizer, with run.sh --sanitize, reports any
// access outside) and outputs start as NaN, so an element a kernel forgets to write fails.
// Usage: test_cuda_conv [divmod|conv|conv_backward_data|conv_backward_weights|pool|batch_norm]
#include "cuda_kernels.h"
#include "selftest_harness.h"
#include "fast_divmod.cuh"
#include "host_scratch.h"
#include "window_geometry.h"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

using namespace kn;
using kn::cuda::LaunchContext;
using selftest::HostBuffer;

// The inputs: the harness's generator, one fixed seed per program.
static selftest::Rng rng(987654321);
static float uniform(float lo, float hi) { return rng.uniform(lo, hi); }

static LaunchContext ctx_with(int sm) { return LaunchContext{nullptr, sm}; }

// Compares got[i] with want[i] within bound[i]; prints the first few mismatches under `label`.
static void expect_close(const char* label, const float* got, const std::vector<double>& want,
                         const std::vector<double>& bound) {
    int bad = 0;
    for (size_t i = 0; i < want.size(); ++i) {
        const double g = got[i];
        const bool ok = std::isnan(want[i])   ? std::isnan(g)
                        : std::isinf(want[i]) ? g == want[i]
                                              : std::fabs(g - want[i]) <= bound[i];
        if (!ok) {
            if (bad < 3) std::printf("    %s: element %zu = %.9g, want %.9g (bound %.3g)\n", label, i, g, want[i], bound[i]);
            ++bad;
        }
    }
    SELFTEST_EXPECT(bad == 0, "%s: %d of %zu elements wrong", label, bad, want.size());
}

// ---- fast_divmod.cuh ------------------------------------------------------------------------------
static void test_divmod() {
    std::vector<int64_t> divisors;
    for (int64_t d = 1; d <= 300; ++d) divisors.push_back(d);
    for (int b = 2; b <= 30; ++b)
        for (int64_t delta : {-1, 0, 1}) divisors.push_back((int64_t{1} << b) + delta);
    for (int i = 0; i < 200; ++i) divisors.push_back(1 + int64_t(uniform(0.0f, 1.0f) * 2147483000.0));
    divisors.push_back(2147483647);
    int bad = 0;
    for (int64_t d : divisors) {
        const cuda::Divider<int> div(d);
        std::vector<int64_t> ns = {0, 1, 2, d - 1, d, d + 1, 2 * d - 1, 2 * d, 2147483647, 2147483646, 2147483647 - d};
        for (int k = 0; k < 64; ++k) ns.push_back(int64_t(uniform(0.0f, 1.0f) * 2147483647.0));
        for (int64_t q = 1; q < 2147483647 / std::max<int64_t>(d, 1) && q < 1000000; q = q * 3 + 1)
            for (int64_t delta : {-1, 0, 1}) ns.push_back(q * d + delta);
        for (int64_t n : ns) {
            if (n < 0 || n > 2147483647) continue;
            int q, r;
            div.divmod(int(n), q, r);
            if (q != n / d || r != n % d) {
                if (bad < 5) std::printf("    divmod %lld / %lld: %d r %d\n", (long long)n, (long long)d, q, r);
                ++bad;
            }
        }
    }
    SELFTEST_EXPECT(bad == 0, "Divider<int>: %d wrong quotients", bad);
}

// ---- Convolution -----------------------------------------------------------------------------------

struct ConvCase {
    int64_t batch, C, H, W, OC, KH, KW, sh, sw, ph, pw, dh, dw, G;
};

// The geometry as the C API hands it to a backend (its rule, window_geometry.h, not a copy of it).
static Conv2dGeometry geometry_of(const ConvCase& c) {
    const WindowAxis h = window_axis(c.H, c.ph, c.KH, c.sh, c.dh), w = window_axis(c.W, c.pw, c.KW, c.sw, c.dw);
    return Conv2dGeometry{c.batch, c.C,  c.H,  c.W,  c.OC, c.KH, c.KW, h.stride,
                          w.stride, c.ph, c.pw, c.dh, c.dw, c.G,  h.out, w.out};
}

static std::string describe(const ConvCase& c) {
    char s[200];
    std::snprintf(s, sizeof s, "x[%lld,%lld,%lld,%lld] w[%lld,%lld,%lld,%lld] s%lldx%lld p%lldx%lld d%lldx%lld g%lld",
                  (long long)c.batch, (long long)c.C, (long long)c.H, (long long)c.W, (long long)c.OC,
                  (long long)(c.C / c.G), (long long)c.KH, (long long)c.KW, (long long)c.sh, (long long)c.sw,
                  (long long)c.ph, (long long)c.pw, (long long)c.dh, (long long)c.dw, (long long)c.G);
    return s;
}

// The convolution's taps, in float64: calls tap(b, oc, oh, ow, ic, ih, iw, kh, kw) for every pair of
// an output and an input element it multiplies (padding taps excluded).
template <class Fn>
static void for_each_tap(const Conv2dGeometry& g, Fn&& tap) {
    const int64_t icg_n = g.in_channels / g.groups, ocg_n = g.out_channels / g.groups;
    for (int64_t b = 0; b < g.batch; ++b)
        for (int64_t oc = 0; oc < g.out_channels; ++oc) {
            const int64_t grp = oc / ocg_n;
            for (int64_t oh = 0; oh < g.out_height; ++oh)
                for (int64_t ow = 0; ow < g.out_width; ++ow)
                    for (int64_t icg = 0; icg < icg_n; ++icg)
                        for (int64_t kh = 0; kh < g.kernel_height; ++kh) {
                            const int64_t ih = oh * g.stride_height - g.pad_height + kh * g.dilation_height;
                            if (ih < 0 || ih >= g.in_height) continue;
                            for (int64_t kw = 0; kw < g.kernel_width; ++kw) {
                                const int64_t iw = ow * g.stride_width - g.pad_width + kw * g.dilation_width;
                                if (iw < 0 || iw >= g.in_width) continue;
                                tap(b, oc, oh, ow, grp * icg_n + icg, icg, ih, iw, kh, kw);
                            }
                        }
        }
}

struct ConvData {
    Conv2dGeometry g;
    int64_t x_n, w_n, y_n;
    std::vector<float> x, w, bias, dy;
    // References and per-element bounds: (terms + 4) eps sum |terms|, the rounding error of any
    // float32 summation order (with fused multiply-adds).
    std::vector<double> y, y_bound, dx, dx_bound, dw, dw_bound, dbias, dbias_bound;
};

static ConvData make_conv_data(const ConvCase& c) {
    ConvData d;
    d.g = geometry_of(c);
    const Conv2dGeometry& g = d.g;
    const int64_t icg_n = c.C / c.G, khw = c.KH * c.KW;
    d.x_n = c.batch * c.C * c.H * c.W;
    d.w_n = c.OC * icg_n * khw;
    d.y_n = c.batch * c.OC * g.out_height * g.out_width;
    d.x.resize(d.x_n);
    d.w.resize(d.w_n);
    d.bias.resize(c.OC);
    d.dy.resize(d.y_n);
    for (float& v : d.x) v = uniform(-1, 1);
    for (float& v : d.w) v = uniform(-1, 1);
    for (float& v : d.bias) v = uniform(-1, 1);
    for (float& v : d.dy) v = uniform(-1, 1);
    auto xi = [&](int64_t b, int64_t ch, int64_t ih, int64_t iw) { return ((b * c.C + ch) * c.H + ih) * c.W + iw; };
    auto yi = [&](int64_t b, int64_t oc, int64_t oh, int64_t ow) {
        return ((b * c.OC + oc) * g.out_height + oh) * g.out_width + ow;
    };
    auto wi = [&](int64_t oc, int64_t icg, int64_t kh, int64_t kw) { return ((oc * icg_n + icg) * c.KH + kh) * c.KW + kw; };
    std::vector<double> y_abs(d.y_n, 0), dx_abs(d.x_n, 0), dw_abs(d.w_n, 0);
    std::vector<int64_t> y_terms(d.y_n, 0), dx_terms(d.x_n, 0), dw_terms(d.w_n, 0);
    d.y.assign(d.y_n, 0);
    d.dx.assign(d.x_n, 0);
    d.dw.assign(d.w_n, 0);
    for_each_tap(g, [&](int64_t b, int64_t oc, int64_t oh, int64_t ow, int64_t ic, int64_t icg, int64_t ih, int64_t iw,
                        int64_t kh, int64_t kw) {
        const int64_t at_y = yi(b, oc, oh, ow), at_x = xi(b, ic, ih, iw), at_w = wi(oc, icg, kh, kw);
        const double xv = d.x[at_x], wv = d.w[at_w], gv = d.dy[at_y];
        d.y[at_y] += wv * xv;
        y_abs[at_y] += std::fabs(wv * xv);
        ++y_terms[at_y];
        d.dx[at_x] += wv * gv;
        dx_abs[at_x] += std::fabs(wv * gv);
        ++dx_terms[at_x];
        d.dw[at_w] += gv * xv;
        dw_abs[at_w] += std::fabs(gv * xv);
        ++dw_terms[at_w];
    });
    auto bound = [](int64_t terms, double sum_abs) { return (terms + 4) * double(FLT_EPSILON) * sum_abs + 1e-30; };
    d.y_bound.resize(d.y_n);
    for (int64_t i = 0; i < d.y_n; ++i) d.y_bound[i] = bound(y_terms[i], y_abs[i]);
    d.dx_bound.resize(d.x_n);
    for (int64_t i = 0; i < d.x_n; ++i) d.dx_bound[i] = bound(dx_terms[i], dx_abs[i]);
    d.dw_bound.resize(d.w_n);
    for (int64_t i = 0; i < d.w_n; ++i) d.dw_bound[i] = bound(dw_terms[i], dw_abs[i]);
    d.dbias.assign(c.OC, 0);
    d.dbias_bound.assign(c.OC, 0);
    const int64_t ohw = g.out_height * g.out_width;
    for (int64_t oc = 0; oc < c.OC; ++oc) {
        double sum_abs = 0;
        for (int64_t b = 0; b < c.batch; ++b)
            for (int64_t s = 0; s < ohw; ++s) {
                const double v = d.dy[(b * c.OC + oc) * ohw + s];
                d.dbias[oc] += v;
                sum_abs += std::fabs(v);
            }
        d.dbias_bound[oc] = bound(c.batch * ohw, sum_abs);
    }
    return d;
}

static const std::vector<ConvCase>& conv_cases() {
    // batch, C, H, W, OC, KH, KW, sh, sw, ph, pw, dh, dw, groups
    static const std::vector<ConvCase> cases = {
        {2, 3, 5, 7, 4, 1, 1, 1, 1, 0, 0, 1, 1, 1},        // 1x1
        {2, 5, 9, 11, 7, 3, 3, 1, 1, 1, 1, 1, 1, 1},       // 3x3 "same"
        {3, 4, 13, 11, 9, 3, 3, 2, 2, 1, 1, 1, 1, 1},      // stride 2, primes
        {1, 3, 6, 5, 5, 3, 3, 1, 1, 3, 2, 1, 1, 1},        // padding larger than half the kernel
        {2, 2, 11, 13, 3, 2, 2, 3, 4, 0, 1, 1, 1, 1},      // stride larger than the kernel
        {1, 1, 7, 7, 1, 3, 3, 1, 1, 1, 1, 1, 1, 1},        // single channel, batch 1
        {2, 6, 8, 9, 9, 3, 3, 1, 1, 1, 1, 1, 1, 3},        // groups
        {2, 8, 10, 9, 8, 3, 3, 1, 1, 1, 1, 1, 1, 8},       // depthwise
        {2, 4, 9, 10, 8, 3, 3, 2, 2, 1, 1, 1, 1, 4},       // depthwise, multiplier 2, stride 2
        {2, 3, 12, 11, 5, 3, 3, 1, 1, 2, 2, 2, 2, 1},      // dilation 2
        {1, 3, 15, 14, 4, 3, 3, 2, 2, 2, 1, 2, 3, 1},      // stride 2 with dilation 2 / 3: whole classes get no tap
        {2, 3, 10, 12, 6, 1, 5, 1, 2, 0, 2, 1, 1, 1},      // non-square kernel 1x5
        {1, 4, 9, 7, 10, 5, 2, 2, 1, 2, 0, 1, 2, 2},       // 5x2, groups 2, dilation on w
        {2, 3, 4, 4, 5, 6, 6, 1, 1, 1, 1, 1, 1, 1},        // kernel = padded input: 1x1 output
        {2, 8, 13, 14, 70, 3, 3, 1, 1, 1, 1, 1, 1, 1},     // > 64 GEMM rows, several column tiles
        {1, 4, 9, 9, 130, 3, 3, 1, 1, 1, 1, 1, 1, 1},      // > 128 GEMM rows
        {2, 16, 12, 12, 20, 3, 3, 1, 1, 1, 1, 1, 1, 1},    // K = 144: many steps, split-K
        {2, 3, 14, 13, 6, 5, 5, 3, 3, 2, 2, 1, 1, 1},      // stride 3, 5x5: residue classes with 1 or 2 taps
        {1, 5, 10, 10, 9, 1, 1, 4, 4, 0, 0, 1, 1, 1},      // 1x1 stride 4: most inputs receive nothing
        {1, 6, 7, 8, 16, 3, 3, 1, 1, 1, 1, 1, 1, 2},       // groups with 8 output channels each
        {3, 9, 5, 6, 12, 2, 3, 1, 2, 1, 1, 3, 1, 1},       // dilation 3 on a 2-tap axis, stride 2 on w
        {2, 32, 6, 7, 24, 3, 3, 1, 1, 1, 1, 1, 1, 8},      // ResNeXt-like: 4 / 3 channels per group
    };
    return cases;
}

struct ConvPath {
    const char* name;
    cuda::Conv2dOptions options;
    int sm;
};

static std::vector<ConvPath> conv_paths() {
    using cuda::Conv2dAlgorithm;
    std::vector<ConvPath> paths;
    paths.push_back({"direct", {Conv2dAlgorithm::direct, 0, 0, false}, 4});
    paths.push_back({"direct int64", {Conv2dAlgorithm::direct, 0, 0, true}, 4});
    paths.push_back({"gemm 64x64", {Conv2dAlgorithm::implicit_gemm, 1, 0, false}, 4});
    paths.push_back({"gemm 64x128", {Conv2dAlgorithm::implicit_gemm, 2, 0, false}, 4});
    paths.push_back({"gemm 128x128", {Conv2dAlgorithm::implicit_gemm, 3, 0, false}, 4});
    paths.push_back({"planned sm=1", {}, 1});
    paths.push_back({"planned sm=132", {}, 132});
    return paths;
}

static void test_conv_forward() {
    for (const ConvCase& c : conv_cases()) {
        const ConvData d = make_conv_data(c);
        for (const ConvPath& path : conv_paths())
            for (int with_bias = 0; with_bias < 2; ++with_bias) {
                const int shift = with_bias;  // misaligned buffers on every other run
                HostBuffer<> x(d.x_n, shift), w(d.w_n, shift), bias(c.OC, shift), y(d.y_n, shift);
                std::copy(d.x.begin(), d.x.end(), x.p);
                std::copy(d.w.begin(), d.w.end(), w.p);
                std::copy(d.bias.begin(), d.bias.end(), bias.p);
                y.fill(NAN);
                Conv2dArgs args{d.g, x.p, w.p, with_bias ? bias.p : nullptr, y.p};
                SELFTEST_EXPECT(cuda::conv2d_f32(args, ctx_with(path.sm), path.options) == cudaSuccess, "conv2d launch");
                std::vector<double> want = d.y, bound = d.y_bound;
                if (with_bias) {
                    const int64_t ohw = d.g.out_height * d.g.out_width;
                    for (int64_t i = 0; i < d.y_n; ++i) {
                        const double b = d.bias[(i / ohw) % c.OC];
                        want[i] += b;
                        bound[i] += 2 * FLT_EPSILON * (std::fabs(want[i]) + std::fabs(b));
                    }
                }
                const std::string label = "conv2d " + describe(c) + " " + path.name + (with_bias ? " +bias" : "");
                expect_close(label.c_str(), y.p, want, bound);
            }
    }
}

static void test_conv_backward_data() {
    for (const ConvCase& c : conv_cases()) {
        const ConvData d = make_conv_data(c);
        for (const ConvPath& path : conv_paths()) {
            HostBuffer<> dy(d.y_n), w(d.w_n), dx(d.x_n);
            std::copy(d.dy.begin(), d.dy.end(), dy.p);
            std::copy(d.w.begin(), d.w.end(), w.p);
            dx.fill(NAN);
            Conv2dBackwardDataArgs args{d.g, dy.p, w.p, dx.p};
            SELFTEST_EXPECT(cuda::conv2d_backward_data_f32(args, ctx_with(path.sm), path.options) == cudaSuccess,
                   "conv2d_backward_data launch");
            const std::string label = "conv2d_backward_data " + describe(c) + " " + path.name;
            expect_close(label.c_str(), dx.p, d.dx, d.dx_bound);
        }
    }
}

static void test_conv_backward_weights() {
    using cuda::Conv2dAlgorithm;
    for (const ConvCase& c : conv_cases()) {
        const ConvData d = make_conv_data(c);
        // The emulator runs a block's 256 threads as fibers, so the direct kernel (a block per weight
        // row and tap group) is slow to emulate: forced splits only where the weights are small.
        std::vector<ConvPath> paths = conv_paths();
        const bool small = d.w_n <= 400;
        for (int64_t split : {1, 3, 7}) {
            if (split > 1 && !small) continue;
            paths.push_back({"direct split", {Conv2dAlgorithm::direct, 0, split, false}, 4});
            paths.push_back({"gemm 64x64 split", {Conv2dAlgorithm::implicit_gemm, 1, split, false}, 4});
            paths.push_back({"gemm 128x128 split", {Conv2dAlgorithm::implicit_gemm, 3, split, false}, 4});
        }
        for (const ConvPath& path : paths)
            for (int with_bias = 0; with_bias < 2; ++with_bias) {
                // Both with and without dbias on the cheap paths; the direct ones once, with dbias.
                if (!with_bias && path.options.algorithm == Conv2dAlgorithm::direct && !small) continue;
                HostBuffer<> x(d.x_n), dy(d.y_n), dw(d.w_n), dbias(c.OC);
                std::copy(d.x.begin(), d.x.end(), x.p);
                std::copy(d.dy.begin(), d.dy.end(), dy.p);
                dw.fill(NAN);
                dbias.fill(NAN);
                Conv2dBackwardWeightsArgs args{d.g, x.p, dy.p, dw.p, with_bias ? dbias.p : nullptr};
                HostScratch scratch;
                const int64_t bytes = cuda::conv2d_backward_weights_scratch_bytes(args, ctx_with(path.sm), path.options);
                SELFTEST_EXPECT(cuda::conv2d_backward_weights_f32(args, scratch.context(path.sm), path.options) == cudaSuccess,
                       "conv2d_backward_weights launch");
                SELFTEST_EXPECT(scratch.asked == bytes, "conv2d_backward_weights asked for %lld scratch bytes, planned %lld",
                                (long long)scratch.asked, (long long)bytes);
                char label[300];
                std::snprintf(label, sizeof label, "conv2d_backward_weights %s %s %lld%s", describe(c).c_str(), path.name,
                              (long long)path.options.split, with_bias ? " +dbias" : "");
                expect_close(label, dw.p, d.dw, d.dw_bound);
                if (with_bias) expect_close((std::string(label) + " dbias").c_str(), dbias.p, d.dbias, d.dbias_bound);
                else SELFTEST_EXPECT(std::isnan(dbias[0]), "%s: dbias written although null", label);
            }
    }
}

// ---- Pooling -------------------------------------------------------------------------------------------

struct PoolCase {
    int64_t batch, channels, H, W, KH, KW, sh, sw, ph, pw;
};

static Pool2dGeometry pool_geometry(const PoolCase& c, bool count_include_pad) {
    const WindowAxis h = window_axis(c.H, c.ph, c.KH, c.sh), w = window_axis(c.W, c.pw, c.KW, c.sw);
    return Pool2dGeometry{c.batch, c.channels, c.H,   c.W,   c.KH, c.KW, h.stride, w.stride, c.ph, c.pw,
                          h.out,   w.out,      count_include_pad};
}

static void test_pool() {
    // batch, channels, H, W, KH, KW, sh, sw, ph, pw
    const std::vector<PoolCase> cases = {
        {2, 3, 8, 8, 2, 2, 2, 2, 0, 0},      // classic 2x2 / 2
        {2, 3, 9, 11, 3, 3, 2, 2, 1, 1},     // overlapping windows, padding, odd sizes
        {1, 2, 7, 5, 3, 3, 1, 1, 1, 1},      // stride 1: each input in up to 9 windows
        {3, 2, 10, 7, 3, 2, 2, 1, 1, 0},     // non-square kernel and stride
        {2, 2, 11, 13, 2, 2, 3, 3, 0, 1},    // stride larger than the kernel: uncovered inputs
        {1, 1, 5, 6, 1, 1, 1, 1, 0, 0},      // 1x1
        {2, 3, 6, 5, 6, 5, 1, 1, 0, 0},      // global pooling (one window per plane)
        {1, 4, 13, 9, 5, 4, 2, 3, 2, 2},     // padding = half the kernel
        {1, 1, 1, 1, 1, 1, 1, 1, 0, 0},      // one element
        {2, 1, 4, 17, 2, 4, 1, 2, 1, 2},     // wide
    };
    for (const PoolCase& c : cases)
        for (int include_pad = 0; include_pad < 2; ++include_pad)
            for (int special = 0; special < 3; ++special)  // 0: random, 1: many ties and -inf, 2: NaN
                for (int wide = 0; wide < 2; ++wide)
                    for (int sm : {1, 64}) {
                        const Pool2dGeometry g = pool_geometry(c, include_pad);
                        const int64_t planes = c.batch * c.channels, hw = c.H * c.W, ohw = g.out_height * g.out_width;
                        const int64_t x_n = planes * hw, y_n = planes * ohw;
                        HostBuffer<> x(x_n), y(y_n), dy(y_n), dx(x_n);
                        HostBuffer<int32_t> idx(y_n);
                        for (int64_t i = 0; i < x_n; ++i) {
                            x[i] = uniform(-2, 2);
                            if (special == 1) x[i] = std::floor(x[i]) + (uniform(0, 1) < 0.1f ? -INFINITY : 0.0f);
                            if (special == 2 && uniform(0, 1) < 0.08f) x[i] = NAN;
                        }
                        for (int64_t i = 0; i < y_n; ++i) dy[i] = uniform(-1, 1);
                        char label[200];
                        std::snprintf(label, sizeof label,
                                      "pool x[%lld,%lld,%lld,%lld] k%lldx%lld s%lldx%lld p%lldx%lld include_pad %d data %d wide %d sm %d",
                                      (long long)c.batch, (long long)c.channels, (long long)c.H, (long long)c.W, (long long)c.KH,
                                      (long long)c.KW, (long long)c.sh, (long long)c.sw, (long long)c.ph, (long long)c.pw,
                                      include_pad, special, wide, sm);
                        for (kn_pool_op op : {KN_POOL_MAX, KN_POOL_AVG}) {
                            if (op == KN_POOL_AVG && special != 0) continue;
                            if (op == KN_POOL_MAX && include_pad) continue;  // not used by MAX
                            y.fill(NAN);
                            idx.fill(-7);
                            dx.fill(NAN);
                            SELFTEST_EXPECT(cuda::pool2d_f32(Pool2dArgs{op, g, x.p, y.p, op == KN_POOL_MAX ? idx.p : nullptr},
                                                       ctx_with(sm), cuda::Pool2dOptions{wide != 0}) == cudaSuccess,
                                   "pool launch");
                            // Reference: windows clipped to the input, first maximum in row-major order,
                            // NaN wins; backward gathers into each input from the windows.
                            std::vector<double> want_y(y_n), bound_y(y_n, 0), want_dx(x_n, 0), bound_dx(x_n, 0);
                            std::vector<int32_t> want_idx(y_n);
                            for (int64_t pl = 0; pl < planes; ++pl)
                                for (int64_t oh = 0; oh < g.out_height; ++oh)
                                    for (int64_t ow = 0; ow < g.out_width; ++ow) {
                                        const int64_t h0 = std::max<int64_t>(oh * c.sh - c.ph, 0),
                                                      h1 = std::min(oh * c.sh - c.ph + c.KH, c.H);
                                        const int64_t w0 = std::max<int64_t>(ow * c.sw - c.pw, 0),
                                                      w1 = std::min(ow * c.sw - c.pw + c.KW, c.W);
                                        const int64_t o = pl * ohw + oh * g.out_width + ow;
                                        double best = NAN, sum = 0, sum_abs = 0;
                                        int64_t best_at = -1;
                                        for (int64_t ih = h0; ih < h1; ++ih)
                                            for (int64_t iw = w0; iw < w1; ++iw) {
                                                const double v = x[pl * hw + ih * c.W + iw];
                                                sum += v;
                                                sum_abs += std::fabs(v);
                                                if (best_at < 0 || (std::isnan(v) && !std::isnan(best)) ||
                                                    (!std::isnan(best) && v > best)) {
                                                    best = v;
                                                    best_at = ih * c.W + iw;
                                                }
                                            }
                                        const double divisor = include_pad ? double(c.KH * c.KW) : double((h1 - h0) * (w1 - w0));
                                        if (op == KN_POOL_MAX) {
                                            want_y[o] = best;
                                            want_idx[o] = int32_t(best_at);
                                            want_dx[pl * hw + best_at] += dy[o];
                                            bound_dx[pl * hw + best_at] += (c.KH * c.KW + 2) * FLT_EPSILON * std::fabs(dy[o]);
                                        } else {
                                            want_y[o] = sum / divisor;
                                            bound_y[o] = ((h1 - h0) * (w1 - w0) + 2) * FLT_EPSILON * sum_abs / divisor + 1e-30;
                                            for (int64_t ih = h0; ih < h1; ++ih)
                                                for (int64_t iw = w0; iw < w1; ++iw) {
                                                    want_dx[pl * hw + ih * c.W + iw] += dy[o] / divisor;
                                                    bound_dx[pl * hw + ih * c.W + iw] += (c.KH * c.KW + 2) * FLT_EPSILON *
                                                                                         std::fabs(dy[o]) / divisor;
                                                }
                                        }
                                    }
                            const std::string l = std::string(label) + (op == KN_POOL_MAX ? " MAX" : " AVG");
                            expect_close(l.c_str(), y.p, want_y, bound_y);
                            if (op == KN_POOL_MAX) {
                                int bad = 0;
                                for (int64_t i = 0; i < y_n; ++i) bad += idx[i] != want_idx[i];
                                SELFTEST_EXPECT(bad == 0, "%s: %d indices wrong", l.c_str(), bad);
                            }
                            SELFTEST_EXPECT(cuda::pool2d_backward_f32(
                                       Pool2dBackwardArgs{op, g, dy.p, op == KN_POOL_MAX ? idx.p : nullptr, dx.p},
                                       ctx_with(sm), cuda::Pool2dOptions{wide != 0}) == cudaSuccess,
                                   "pool backward launch");
                            expect_close((l + " backward").c_str(), dx.p, want_dx, bound_dx);
                        }
                    }
    // Without indices (inference): y alone.
    const PoolCase c{1, 2, 5, 5, 3, 3, 2, 2, 1, 1};
    const Pool2dGeometry g = pool_geometry(c, false);
    HostBuffer<> x(50), y(2 * 9);
    for (int i = 0; i < 50; ++i) x[i] = float(i % 7);
    SELFTEST_EXPECT(cuda::pool2d_f32(Pool2dArgs{KN_POOL_MAX, g, x.p, y.p, nullptr}, ctx_with(2)) == cudaSuccess, "pool launch");
    SELFTEST_EXPECT(y[0] == std::max({x[0], x[1], x[5], x[6]}), "max pool without indices: %g", y[0]);
}

// ---- Batch normalization ---------------------------------------------------------------------------------

struct BnCase {
    int64_t batch, channels, spatial;
    float offset, scale;  // x = offset + scale * uniform(-1, 1)
};

static void test_batch_norm() {
    const std::vector<BnCase> cases = {
        {4, 3, 5, 0, 1},          {1, 2, 1, 0, 1},       // m == 1
        {7, 5, 1, 0.5f, 2},       // spatial 1 (1-D batch norm)
        {2, 3, 1000, 0, 3},       {3, 1, 4097, -1, 1},   {1, 4, 20011, 0, 1},  // long channels: several chunks
        {5, 2, 33, 1e4f, 0.01f},  // values ~1e4 with a small variance
        {16, 3, 300, 1e4f, 1},    {2, 7, 49, 3, 1e-3f},
    };
    for (const BnCase& c : cases)
        for (int64_t chunks : {0, 1, 3})
            for (int wide = 0; wide < 2; ++wide)
                for (int sm : {1, 132})
                    for (int training = 0; training < 2; ++training)
                        for (int with_running = 0; with_running < 2; ++with_running) {
                            if (!training && !with_running) continue;  // inference needs the running statistics
                            const int64_t C = c.channels, S = c.spatial, n = c.batch * C * S, m = c.batch * S;
                            const float eps = 1e-5f, momentum = 0.1f;
                            HostBuffer<> x(n), y(n), gamma(C), beta(C), rm(C), rv(C), save_mean(C), save_invstd(C);
                            HostBuffer<> dy(n), dx(n), dgamma(C), dbeta(C);
                            for (int64_t i = 0; i < n; ++i) {
                                x[i] = c.offset + c.scale * uniform(-1, 1);
                                dy[i] = uniform(-1, 1);
                            }
                            std::vector<float> rm0(C), rv0(C);
                            for (int64_t k = 0; k < C; ++k) {
                                gamma[k] = uniform(0.5f, 1.5f);
                                beta[k] = uniform(-1, 1);
                                rm0[k] = rm[k] = c.offset + c.scale * uniform(-0.5f, 0.5f);
                                rv0[k] = rv[k] = c.scale * c.scale * uniform(0.2f, 0.4f);
                            }
                            y.fill(NAN);
                            save_mean.fill(NAN);
                            save_invstd.fill(NAN);
                            const cuda::BatchNormOptions options{chunks, wide != 0};
                            BatchNormArgs args{x.p, y.p, gamma.p, beta.p, with_running ? rm.p : nullptr,
                                               with_running ? rv.p : nullptr, save_mean.p, save_invstd.p,
                                               c.batch, C, S, eps, momentum, training != 0};
                            HostScratch scratch;
                            const int64_t bytes = cuda::batch_norm_scratch_bytes(args, ctx_with(sm), options);
                            SELFTEST_EXPECT(cuda::batch_norm_f32(args, scratch.context(sm), options) == cudaSuccess,
                                   "batch_norm launch");
                            SELFTEST_EXPECT(scratch.asked == bytes, "batch_norm asked for %lld scratch bytes, planned %lld",
                                            (long long)scratch.asked, (long long)bytes);
                            char label[200];
                            std::snprintf(label, sizeof label,
                                          "batch_norm [%lld,%lld,%lld] x~%g+-%g chunks %lld wide %d sm %d training %d running %d",
                                          (long long)c.batch, (long long)C, (long long)S, c.offset, c.scale, (long long)chunks,
                                          wide, sm, training, with_running);
                            // Reference statistics in float64 (two passes).
                            std::vector<double> mean(C), var(C), invstd(C);
                            for (int64_t k = 0; k < C; ++k) {
                                double s = 0, q = 0;
                                for (int64_t b = 0; b < c.batch; ++b)
                                    for (int64_t j = 0; j < S; ++j) s += x[(b * C + k) * S + j];
                                mean[k] = s / m;
                                for (int64_t b = 0; b < c.batch; ++b)
                                    for (int64_t j = 0; j < S; ++j) {
                                        const double dd = x[(b * C + k) * S + j] - mean[k];
                                        q += dd * dd;
                                    }
                                var[k] = q / m;
                                if (!training) {
                                    mean[k] = rm0[k];
                                    var[k] = rv0[k];
                                }
                                invstd[k] = 1 / std::sqrt(var[k] + eps);
                            }
                            std::vector<double> want(n), bound(n);
                            for (int64_t i = 0; i < n; ++i) {
                                const int64_t k = (i / S) % C;
                                const double normalized = (x[i] - mean[k]) * invstd[k] * gamma[k];
                                want[i] = normalized + beta[k];
                                // + the float pair (hi, lo) that carries the mean: |mean| eps^2 off.
                                bound[i] = 8 * FLT_EPSILON * (std::fabs(normalized) + std::fabs(beta[k])) +
                                           4.0 * FLT_EPSILON * FLT_EPSILON * std::fabs(mean[k]) * invstd[k] * gamma[k] + 1e-30;
                            }
                            expect_close(label, y.p, want, bound);
                            std::vector<double> mean_bound(C), invstd_bound(C);
                            for (int64_t k = 0; k < C; ++k) {
                                mean_bound[k] = FLT_EPSILON * std::fabs(mean[k]) + 1e-30;
                                invstd_bound[k] = 2 * FLT_EPSILON * invstd[k];
                            }
                            expect_close((std::string(label) + " save_mean").c_str(), save_mean.p, mean, mean_bound);
                            expect_close((std::string(label) + " save_invstd").c_str(), save_invstd.p, invstd, invstd_bound);
                            if (with_running) {
                                std::vector<double> want_rm(C), want_rv(C), rm_bound(C), rv_bound(C);
                                for (int64_t k = 0; k < C; ++k) {
                                    if (training) {
                                        const double unbiased = m > 1 ? var[k] * m / (m - 1) : var[k];
                                        want_rm[k] = 0.9 * double(rm0[k]) + 0.1 * mean[k];
                                        want_rv[k] = 0.9 * double(rv0[k]) + 0.1 * unbiased;
                                    } else {
                                        want_rm[k] = rm0[k];
                                        want_rv[k] = rv0[k];
                                    }
                                    rm_bound[k] = 2 * FLT_EPSILON * (std::fabs(rm0[k]) + std::fabs(mean[k])) + 1e-30;
                                    rv_bound[k] = 4 * FLT_EPSILON * (std::fabs(rv0[k]) + std::fabs(want_rv[k])) + 1e-30;
                                }
                                expect_close((std::string(label) + " running_mean").c_str(), rm.p, want_rm, rm_bound);
                                expect_close((std::string(label) + " running_var").c_str(), rv.p, want_rv, rv_bound);
                            }

                            // Backward from the forward call's saved statistics, as the API passes them.
                            dx.fill(NAN);
                            dgamma.fill(NAN);
                            dbeta.fill(NAN);
                            for (int with_dx = 0; with_dx < 2; ++with_dx) {
                                BatchNormBackwardArgs bargs{x.p, dy.p, gamma.p, save_mean.p, save_invstd.p,
                                                            with_dx ? dx.p : nullptr, dgamma.p, dbeta.p,
                                                            c.batch, C, S, training != 0};
                                const int64_t bbytes = cuda::batch_norm_backward_scratch_bytes(bargs, ctx_with(sm), options);
                                SELFTEST_EXPECT(cuda::batch_norm_backward_f32(bargs, scratch.context(sm), options) == cudaSuccess,
                                       "batch_norm_backward launch");
                                SELFTEST_EXPECT(scratch.asked == bbytes, "batch_norm_backward asked for %lld scratch bytes, planned %lld",
                                                (long long)scratch.asked, (long long)bbytes);
                                if (!with_dx) {
                                    SELFTEST_EXPECT(std::isnan(dx[0]), "%s: dx written although null", label);
                                    continue;
                                }
                                std::vector<double> want_db(C, 0), want_dg(C, 0), db_bound(C, 0), dg_bound(C, 0);
                                std::vector<double> xhat(n);
                                for (int64_t i = 0; i < n; ++i) {
                                    const int64_t k = (i / S) % C;
                                    xhat[i] = (double(x[i]) - save_mean[k]) * double(save_invstd[k]);
                                    want_db[k] += dy[i];
                                    want_dg[k] += dy[i] * xhat[i];
                                    db_bound[k] += 4 * FLT_EPSILON * std::fabs(dy[i]);
                                    dg_bound[k] += 4 * FLT_EPSILON * std::fabs(dy[i] * xhat[i]);
                                }
                                expect_close((std::string(label) + " dbeta").c_str(), dbeta.p, want_db, db_bound);
                                expect_close((std::string(label) + " dgamma").c_str(), dgamma.p, want_dg, dg_bound);
                                std::vector<double> want_dx(n), dx_bound(n);
                                for (int64_t i = 0; i < n; ++i) {
                                    const int64_t k = (i / S) % C;
                                    const double k1 = double(gamma[k]) * save_invstd[k];
                                    if (training) {
                                        const double t1 = dy[i], t2 = want_db[k] / m, t3 = xhat[i] * want_dg[k] / m;
                                        want_dx[i] = k1 * (t1 - t2 - t3);
                                        dx_bound[i] = 16 * FLT_EPSILON * k1 * (std::fabs(t1) + std::fabs(t2) + std::fabs(t3)) + 1e-30;
                                    } else {
                                        want_dx[i] = k1 * dy[i];
                                        dx_bound[i] = 4 * FLT_EPSILON * std::fabs(want_dx[i]) + 1e-30;
                                    }
                                }
                                expect_close((std::string(label) + " dx").c_str(), dx.p, want_dx, dx_bound);
                            }
                        }
}

int main(int argc, char** argv) {
    const std::string only = argc > 1 ? argv[1] : "";
    if (only.empty() || only == "divmod") test_divmod();
    if (only.empty() || only == "conv") test_conv_forward();
    if (only.empty() || only == "conv_backward_data") test_conv_backward_data();
    if (only.empty() || only == "conv_backward_weights") test_conv_backward_weights();
    if (only.empty() || only == "pool") test_pool();
    if (only.empty() || only == "batch_norm") test_batch_norm();
    return selftest::check_tally().finish("convolution, pooling and batch-norm kernels match the references");
}
