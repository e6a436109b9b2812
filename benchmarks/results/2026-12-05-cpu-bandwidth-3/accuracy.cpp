// Accuracy of the CPU softmax and tanh against double, through the C API (benchmarks/results/2026-12-05-cpu-bandwidth-3).
// g++ -O2 -std=c++17 -Inative/include accuracy.cpp -Lbuild/native -lkernels -o acc; KN_CPU_SIMD=avx2 LD_LIBRARY_PATH=build/native ./acc
#include "kernels.h"
#include <cmath>
#include <cstdio>
#include <cstring>
#include <vector>
#include <algorithm>
static kn_device* dev;
static std::vector<float> run_unary(const std::vector<float>& x) {
    kn_buffer *X, *Y; int64_t n = x.size();
    kn_buffer_create(dev, n * 4, &X); kn_buffer_create(dev, n * 4, &Y);
    kn_buffer_write(X, 0, x.data(), n * 4);
    if (kn_unary_f32(KN_UNARY_TANH, 0, X, Y, n) != KN_OK) std::puts(kn_last_error());
    std::vector<float> y(n); kn_buffer_read(Y, 0, y.data(), n * 4);
    kn_buffer_free(X); kn_buffer_free(Y); return y;
}
static double ulp_of(double v) { float f = std::fabs((float)v); if (f < 1.17549435e-38f) return 1.4e-45; return std::nextafter(f, INFINITY) - f; }
int main() {
    kn_device_find("cpu", &dev);
    // tanh sweep (as benchmarks/results/2026-12-05-cpu-bandwidth-2)
    std::vector<float> x;
    for (double v = -10; v <= 10; v += 1.0 / 4096) x.push_back((float)v);
    for (double v = -0.01; v <= 0.01; v += 1e-7) x.push_back((float)v);
    for (int e = -149; e <= 127; ++e) for (float s : {1.0f, -1.0f, 1.7f, -1.7f}) x.push_back(s * std::ldexp(1.0f, e));
    for (float v : {0.0f, -0.0f, 1e-45f, -1e-45f, 3e-39f, -3e-39f, 20.f, -20.f, 50.f, -50.f, 88.f, -88.f, 1e30f, -1e30f, 3e38f, -3e38f, INFINITY, -INFINITY, NAN}) x.push_back(v);
    std::vector<float> y = run_unary(x);
    double worst_ulp = 0, worst_rel = 0, worst_tol = 0; float at = 0; int bad_special = 0;
    for (size_t i = 0; i < x.size(); ++i) {
        if (std::isnan(x[i])) { if (!std::isnan(y[i])) ++bad_special; continue; }
        double ref = std::tanh((double)x[i]);
        double err = std::fabs(y[i] - ref);
        if (std::isinf(x[i]) && y[i] != (x[i] > 0 ? 1.0f : -1.0f)) ++bad_special;
        if (x[i] == 0 && (y[i] != 0 || std::signbit(y[i]) != std::signbit(x[i]))) ++bad_special;
        double u = err / ulp_of(ref); if (u > worst_ulp) { worst_ulp = u; at = x[i]; }
        if (ref != 0) worst_rel = std::max(worst_rel, err / std::fabs(ref));
        worst_tol = std::max(worst_tol, err / (1e-5 * std::fabs(ref) + 1e-6));
    }
    std::printf("tanh: %zu inputs, max %.2f ulp (x = %.5g), max rel %.3g, worst err/tol %.4f, special wrong %d\n", x.size(), worst_ulp, at, worst_rel, worst_tol, bad_special);
    // softmax: rows of 1024 with logits spread over [-s, 0] for several s (down to subnormal outputs)
    for (int log = 0; log < 2; ++log) {
        double sw_ulp = 0, sw_rel = 0, sub_abs = 0; int zeros_wrong = 0;
        for (float spread : {1.0f, 10.0f, 30.0f, 80.0f, 100.0f, 110.0f, 1000.0f}) {
            const int rows = 64, cols = 1024; std::vector<float> xs(rows * cols);
            unsigned st = 12345;
            for (auto& v : xs) { st = st * 1664525u + 1013904223u; v = -spread * (st >> 8) / 16777216.0f + 3.0f; }
            kn_buffer *X, *Y; kn_buffer_create(dev, xs.size() * 4, &X); kn_buffer_create(dev, xs.size() * 4, &Y);
            kn_buffer_write(X, 0, xs.data(), xs.size() * 4);
            kn_softmax_f32(X, Y, rows, cols, log);
            std::vector<float> ys(xs.size()); kn_buffer_read(Y, 0, ys.data(), ys.size() * 4);
            kn_buffer_free(X); kn_buffer_free(Y);
            double sp_ulp = 0;
            for (int r = 0; r < rows; ++r) {
                const float* xr = &xs[r * cols]; double m = *std::max_element(xr, xr + cols), s = 0;
                for (int j = 0; j < cols; ++j) s += std::exp((double)xr[j] - m);
                for (int j = 0; j < cols; ++j) {
                    double ref = log ? (xr[j] - m) - std::log(s) : std::exp((double)xr[j] - m) / s;
                    double got = ys[r * cols + j], err = std::fabs(got - ref);
                    if (!log && std::fabs(ref) < 1.17549435e-38) { sub_abs = std::max(sub_abs, err); if ((float)ref == 0 && got != 0) ++zeros_wrong; continue; }
                    sw_ulp = std::max(sw_ulp, err / ulp_of(ref)); sw_rel = std::max(sw_rel, err / std::fabs(ref));
                    sp_ulp = std::max(sp_ulp, err / ulp_of(ref));
                }
            }
            std::printf("  %s logits over [-%g, 0] + 3: max %.2f ulp\n", log ? "log_softmax" : "softmax", spread, sp_ulp);
        }
        std::printf("%s: max %.2f ulp, max rel %.3g (normal outputs); subnormal outputs max abs err %.3g, true zeros not zero %d\n",
                    log ? "log_softmax" : "softmax", sw_ulp, sw_rel, sub_abs, zeros_wrong);
    }
}
