// gemm_cpu_bench.cpp: times one GEMM shape through the public C API on the CPU device, in the calling
// thread's CPU time (so time spent descheduled on a loaded machine counts for nothing), and prints the
// best and the median GFLOP/s. Small enough to run under perf (`perf record -e cpu-clock`) and to
// link against two builds of libkernels for a before/after comparison (run them alternately).
//
// Build (from the repository root, after building the library into build/native):
//   g++ -O2 -std=c++17 -Inative/include native/dev/gemm_cpu_bench.cpp -Lbuild/native -lkernels
//       -Wl,-rpath,$PWD/build/native -o build/native/gemm_cpu_bench      (one command)
//   KN_NUM_THREADS=1 [KN_CPU_SIMD=avx2] build/native/gemm_cpu_bench M N K NN|NT|TN|TT [SECONDS]
#include "kernels.h"
#include "cpu_bench.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <vector>

namespace {

using kn_dev::thread_seconds;

kn_device* device = nullptr;

using kn_dev::check;
}  // namespace

int main(int argc, char** argv) {
    if (argc < 5) {
        std::fprintf(stderr, "usage: gemm_cpu_bench M N K NN|NT|TN|TT [SECONDS]\n");
        return 2;
    }
    const int64_t m = std::atol(argv[1]), n = std::atol(argv[2]), k = std::atol(argv[3]);
    const bool trans_a = argv[4][0] == 'T', trans_b = argv[4][1] == 'T';
    const double seconds = argc > 5 ? std::atof(argv[5]) : 2.0;
    check(kn_device_find("cpu", &device), "kn_device_find");
    kn_buffer *a, *b, *c;
    check(kn_buffer_create(device, m * k * 4, &a), "kn_buffer_create");
    check(kn_buffer_create(device, k * n * 4, &b), "kn_buffer_create");
    check(kn_buffer_create(device, m * n * 4, &c), "kn_buffer_create");
    std::vector<float> values(static_cast<size_t>(std::max(m * k, k * n)));
    for (size_t i = 0; i < values.size(); ++i) values[i] = static_cast<float>(i % 17) * 0.01f;
    check(kn_buffer_write(a, 0, values.data(), m * k * 4), "kn_buffer_write");
    check(kn_buffer_write(b, 0, values.data(), k * n * 4), "kn_buffer_write");
    const int64_t lda = trans_a ? m : k, ldb = trans_b ? k : n;
    auto call = [&] {
        check(kn_gemm_f32(trans_a ? KN_TRANSPOSE : KN_NO_TRANSPOSE, trans_b ? KN_TRANSPOSE : KN_NO_TRANSPOSE, m, n, k,
                          1.0f, a, lda, 0, b, ldb, 0, 0.0f, c, n, 0, 1),
              "kn_gemm_f32");
        check(kn_device_synchronize(device), "kn_device_synchronize");
    };
    call();  // warm-up: packing buffers, page faults
    std::vector<double> times;
    for (double total = 0; total < seconds;) {
        const double t0 = thread_seconds();
        call();
        times.push_back(thread_seconds() - t0);
        total += times.back();
    }
    std::sort(times.begin(), times.end());
    const double flop = 2.0 * m * n * k;
    std::printf("%ldx%ldx%ld %s: best %.1f median %.1f GFLOP/s (%zu calls)\n", static_cast<long>(m),
                static_cast<long>(n), static_cast<long>(k), argv[4], flop / times.front() * 1e-9,
                flop / times[times.size() / 2] * 1e-9, times.size());
    kn_buffer_free(a);
    kn_buffer_free(b);
    kn_buffer_free(c);
    return 0;
}
