// cnn_cpu_bench.cpp: times the CNN kernels (convolution, pooling, batch norm) through the public C API
// on one device, each against a reference measured in the same run:
//   convolution: the library's own GEMM on the lowered shape (batch x [out/groups, in/groups*kh*kw] x
//                [in/groups*kh*kw, out_h*out_w]), i.e. what the convolution would cost if building the
//                column matrix were free; the ratio is the lowering's overhead;
//   pooling, batch norm: a device-to-device copy of the same bytes (x in, y out): memory speed.
// Each number is the best of the timed repeats (the machine is shared; the best is the least disturbed).
//
// Build (from the repository root, after building the library into build/cpu-native):
//   g++ -O2 -std=c++17 -Inative/include native/dev/cnn_cpu_bench.cpp -Lbuild/cpu-native -lkernels
//       -Wl,-rpath,$PWD/build/cpu-native -o build/cpu-native/cnn_cpu_bench      (one command)
//   build/cpu-native/cnn_cpu_bench [device] [filter]  (default cpu; filter: only the convolutions whose
//                                                     name holds it, e.g. depthwise; or "pooling" or
//                                                     "batch norm" for that section alone)
#include "kernels.h"
#include "cpu_bench.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <random>
#include <string>
#include <vector>

namespace {

kn_device* device = nullptr;

using kn_dev::check;

struct Buffer {
    kn_buffer* b = nullptr;
    explicit Buffer(int64_t floats, float lo = -1, float hi = 1) {
        check(kn_buffer_create(device, std::max<int64_t>(floats, 1) * 4, &b), "kn_buffer_create");
        std::vector<float> v(static_cast<size_t>(std::max<int64_t>(floats, 1)));
        std::mt19937 rng(static_cast<unsigned>(floats));
        std::uniform_real_distribution<float> u(lo, hi);
        for (auto& x : v) x = u(rng);
        check(kn_buffer_write(b, 0, v.data(), static_cast<int64_t>(v.size()) * 4), "kn_buffer_write");
    }
    ~Buffer() { kn_buffer_free(b); }
    kn_buffer* get() const { return b; }
};

// Best seconds per call over repeats filling ~0.4 s (at least 3), after one warm-up call.
double best_seconds(const std::function<void()>& call) {
    call();
    check(kn_device_synchronize(device), "sync");
    double best = 1e30, total = 0;
    for (int i = 0; i < 3 || (total < 0.4 && i < 200); ++i) {
        auto t0 = std::chrono::steady_clock::now();
        call();
        check(kn_device_synchronize(device), "sync");
        double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        best = std::min(best, s);
        total += s;
    }
    return best;
}

struct Conv {
    const char* name;
    int64_t n, c, h, w, k, kh, kw, stride, pad, groups;
};

void bench_conv(const Conv& g) {
    int64_t out_h = 0, out_w = 0;  // the library's own rule, not a copy of its formula
    check(kn_conv2d_output_size(g.n, g.c, g.h, g.w, g.k, g.kh, g.kw, g.stride, g.stride, g.pad, g.pad, 1, 1, g.groups,
                                &out_h, &out_w),
          "kn_conv2d_output_size");
    const int64_t P = out_h * out_w, cg = g.c / g.groups, kg = g.k / g.groups, krs = cg * g.kh * g.kw;
    const double flop = 2.0 * g.n * g.k * P * krs;
    Buffer x(g.n * g.c * g.h * g.w), w(g.k * krs), bias(g.k), y(g.n * g.k * P), dw(g.k * krs), db(g.k),
        dx(g.n * g.c * g.h * g.w);
    // The GEMM of the lowered forward: per image and group [kg, krs] x [krs, P].
    Buffer col(krs * P * g.groups), out(g.n * g.k * P);
    auto args = [&](auto fn, auto... buffers) {
        return fn(buffers..., g.n, g.c, g.h, g.w, g.k, g.kh, g.kw, g.stride, g.stride, g.pad, g.pad, 1, 1, g.groups);
    };
    double t_gemm = best_seconds([&] {
        check(kn_gemm_f32(KN_NO_TRANSPOSE, KN_NO_TRANSPOSE, kg, P, krs, 1.0f, w.get(), krs, kg * krs, col.get(), P,
                          krs * P, 0.0f, out.get(), P, kg * P, g.groups),
              "gemm");
    }) * static_cast<double>(g.n);  // one lowered GEMM per image (the column matrix reused: in cache)
    double t_fwd = best_seconds([&] { check(args(kn_conv2d_f32, x.get(), w.get(), bias.get(), y.get()), "conv2d"); });
    double t_bwd_data = best_seconds(
        [&] { check(args(kn_conv2d_backward_data_f32, y.get(), w.get(), dx.get()), "conv2d_backward_data"); });
    double t_bwd_w = best_seconds([&] {
        check(args(kn_conv2d_backward_weights_f32, x.get(), y.get(), dw.get(), db.get()), "conv2d_backward_weights");
    });
    auto gf = [&](double t) { return flop / t * 1e-9; };
    std::printf("%-34s %7.1f MFLOP  gemm %6.1f  fwd %6.1f (%3.0f%%)  bwd-data %6.1f (%3.0f%%)  bwd-w %6.1f (%3.0f%%) GFLOP/s\n",
                g.name, flop * 1e-6, gf(t_gemm), gf(t_fwd), 100 * t_gemm / t_fwd, gf(t_bwd_data),
                100 * t_gemm / t_bwd_data, gf(t_bwd_w), 100 * t_gemm / t_bwd_w);
}

double copy_gbs(int64_t floats) {
    Buffer a(floats), b(floats);
    double t = best_seconds([&] { check(kn_buffer_copy(b.get(), 0, a.get(), 0, floats * 4), "copy"); });
    return 2.0 * floats * 4 / t * 1e-9;
}

void bench_pool(const char* name, int64_t n, int64_t c, int64_t h, int64_t w, int64_t k, int64_t s, int64_t p) {
    int64_t oh = 0, ow = 0;
    check(kn_pool2d_output_size(n, c, h, w, k, k, s, s, p, p, &oh, &ow), "kn_pool2d_output_size");
    const int64_t xs = n * c * h * w, ys = n * c * oh * ow;
    Buffer x(xs), y(ys), idx(ys), dx(xs);
    double t_max = best_seconds(
        [&] { check(kn_pool2d_f32(KN_POOL_MAX, x.get(), y.get(), idx.get(), n, c, h, w, k, k, s, s, p, p, 1), "max"); });
    double t_avg = best_seconds(
        [&] { check(kn_pool2d_f32(KN_POOL_AVG, x.get(), y.get(), nullptr, n, c, h, w, k, k, s, s, p, p, 1), "avg"); });
    double t_max_b = best_seconds([&] {
        check(kn_pool2d_backward_f32(KN_POOL_MAX, y.get(), idx.get(), dx.get(), n, c, h, w, k, k, s, s, p, p, 1), "maxb");
    });
    double t_avg_b = best_seconds([&] {
        check(kn_pool2d_backward_f32(KN_POOL_AVG, y.get(), nullptr, dx.get(), n, c, h, w, k, k, s, s, p, p, 1), "avgb");
    });
    const double copy = copy_gbs(xs);
    auto gbs = [](double bytes, double t) { return bytes / t * 1e-9; };
    std::printf("%-34s copy %5.1f GB/s  max %5.1f  avg %5.1f  max-bwd %5.1f  avg-bwd %5.1f GB/s\n", name, copy,
                gbs(4.0 * (xs + 2 * ys), t_max), gbs(4.0 * (xs + ys), t_avg), gbs(4.0 * (xs + 2 * ys), t_max_b),
                gbs(4.0 * (xs + ys), t_avg_b));
}

void bench_batch_norm(const char* name, int64_t n, int64_t c, int64_t s) {
    const int64_t size = n * c * s;
    Buffer x(size), y(size), dy(size), dx(size), gamma(c), beta(c), rm(c), rv(c, 0.5f, 2.0f), sm(c), si(c), dg(c),
        dbeta(c);
    double t_train = best_seconds([&] {
        check(kn_batch_norm_f32(x.get(), y.get(), gamma.get(), beta.get(), rm.get(), rv.get(), sm.get(), si.get(), n, c,
                                s, 1e-5f, 0.1f, 1),
              "bn train");
    });
    double t_infer = best_seconds([&] {
        check(kn_batch_norm_f32(x.get(), y.get(), gamma.get(), beta.get(), rm.get(), rv.get(), sm.get(), si.get(), n, c,
                                s, 1e-5f, 0.1f, 0),
              "bn infer");
    });
    double t_back = best_seconds([&] {
        check(kn_batch_norm_backward_f32(x.get(), dy.get(), gamma.get(), sm.get(), si.get(), dx.get(), dg.get(),
                                         dbeta.get(), n, c, s, 1),
              "bn backward");
    });
    const double copy = copy_gbs(size), bytes = 4.0 * size;
    // Minimum traffic: forward x in, y out (training reads x three times: 4 passes of memory);
    // backward x, dy in, dx out (reads both twice: 5 passes).
    std::printf("%-34s copy %5.1f GB/s  train-fwd %5.1f  infer-fwd %5.1f  bwd %5.1f GB/s (of x+y / x+dy+dx bytes)\n",
                name, copy, 2 * bytes / t_train * 1e-9, 2 * bytes / t_infer * 1e-9, 3 * bytes / t_back * 1e-9);
}

}  // namespace

int main(int argc, char** argv) {
    check(kn_device_find(argc > 1 ? argv[1] : "cpu", &device), "kn_device_find");
    const char* description = "";
    kn_device_description(device, &description);
    std::printf("%s\n", description);
    const Conv convs[] = {
        {"MNIST conv1 64x1->32 28x28", 64, 1, 28, 28, 32, 3, 3, 1, 1, 1},
        {"MNIST conv1 128x1->32 28x28", 128, 1, 28, 28, 32, 3, 3, 1, 1, 1},
        {"MNIST conv2 64x32->64 14x14", 64, 32, 14, 14, 64, 3, 3, 1, 1, 1},
        {"MNIST conv2 128x32->64 14x14", 128, 32, 14, 14, 64, 3, 3, 1, 1, 1},
        {"ResNet 8x64->64 56x56", 8, 64, 56, 56, 64, 3, 3, 1, 1, 1},
        {"ResNet 1x64->64 56x56", 1, 64, 56, 56, 64, 3, 3, 1, 1, 1},
        {"1x1 8x64->128 28x28", 8, 64, 28, 28, 128, 1, 1, 1, 0, 1},
        {"depthwise 8x64 56x56", 8, 64, 56, 56, 64, 3, 3, 1, 1, 64},
        {"depthwise 3x3/2 8x64 112x112", 8, 64, 112, 112, 64, 3, 3, 2, 1, 64},
    };
    // A name filter: only the convolutions whose name holds it; "pooling" or "batch norm": only that section.
    const std::string only = argc > 2 ? argv[2] : "";
    const bool all = only.empty();
    if (all || (only != "pooling" && only != "batch norm")) {
        std::printf("convolution (3x3 unless named; %% = the lowered GEMM's time / the op's time)\n");
        for (const Conv& g : convs)
            if (std::string(g.name).find(only) != std::string::npos) bench_conv(g);
    }
    if (all || only == "pooling") {
        std::printf("pooling (bytes: x + y, + int32 indices for max)\n");
        bench_pool("MNIST 64x32 28x28 2x2/2", 64, 32, 28, 28, 2, 2, 0);
        bench_pool("ResNet stem 8x64 112x112 3x3/2 p1", 8, 64, 112, 112, 3, 2, 1);
        bench_pool("global 7x7 64x512 (a ResNet head)", 64, 512, 7, 7, 7, 1, 0);
    }
    if (!all && only != "batch norm") return 0;
    std::printf("batch norm\n");
    bench_batch_norm("MNIST 64x32x(28x28)", 64, 32, 784);
    bench_batch_norm("ResNet 8x64x(56x56)", 8, 64, 3136);
    bench_batch_norm("1-D 128x512", 128, 512, 1);
    return 0;
}
