// bandwidth_cpu_bench.cpp: times one memory-bound CPU kernel (tanh, softmax, column sum, sum) through
// the public C API, interleaved with a one-thread memcpy of the same bytes, in the calling thread's
// CPU time, and prints the median ratio memcpy time / kernel time over the rounds with its quartiles
// (the same figure as `Kernels.Benchmarks ratios --threads 1`, without the .NET process around it:
// small enough for `perf record` and quick before/after loops: point LD_LIBRARY_PATH at either build).
//
// Build (from the repository root, after building the library into build/native):
//   g++ -O2 -std=c++17 -Inative/include native/dev/bandwidth_cpu_bench.cpp -Lbuild/native -lkernels
//       -o build/native/bandwidth_cpu_bench      (one command)
//   KN_NUM_THREADS=1 [KN_CPU_SIMD=avx2] LD_LIBRARY_PATH=build/native build/native/bandwidth_cpu_bench
//       tanh N | softmax ROWS COLS | column-sum ROWS COLS | sum N   [ROUNDS]
#include "kernels.h"
#include "cpu_bench.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <string>
#include <vector>

namespace {

using kn_dev::quantile;
using kn_dev::sample;
using kn_dev::check;
using kn_dev::thread_seconds;
}  // namespace

int main(int argc, char** argv) {
    if (argc < 3) {
        std::fprintf(stderr, "usage: bandwidth_cpu_bench tanh N | softmax ROWS COLS | column-sum ROWS COLS | sum N [ROUNDS]\n");
        return 2;
    }
    const std::string kind = argv[1];
    const bool two = kind == "softmax" || kind == "column-sum";
    const int64_t rows = std::atol(argv[2]), cols = two ? std::atol(argv[3]) : 1;
    const int rounds = argc > (two ? 4 : 3) ? std::atoi(argv[two ? 4 : 3]) : 15;
    const int64_t n = rows * cols;
    kn_device* device;
    check(kn_device_find("cpu", &device), "kn_device_find");
    const int64_t out_n = kind == "column-sum" ? cols : kind == "sum" ? 1 : n;
    kn_buffer *x, *y;
    check(kn_buffer_create(device, n * 4, &x), "create");
    check(kn_buffer_create(device, out_n * 4, &y), "create");
    std::vector<float> values(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) values[i] = std::sin(0.001f * static_cast<float>(i % 100003)) * 6.0f;
    check(kn_buffer_write(x, 0, values.data(), n * 4), "write");
    // The copy moves as many bytes as the kernel must (reads + writes; a copy of N bytes moves 2N), as the
    // benchmark program's CopyReference does: n floats for the maps, n / 2 for the reductions.
    const int64_t copy_bytes = (n + out_n) * 4 / 2 / 64 * 64;
    std::vector<char> src(static_cast<size_t>(copy_bytes)), dst(static_cast<size_t>(copy_bytes));
    std::memset(src.data(), 1, src.size());
    std::memset(dst.data(), 2, dst.size());
    auto kernel = [&] {
        if (kind == "tanh") check(kn_unary_f32(KN_UNARY_TANH, 0.0f, x, y, n), "tanh");
        else if (kind == "softmax") check(kn_softmax_f32(x, y, rows, cols, 0), "softmax");
        else if (kind == "column-sum") check(kn_reduce_f32(KN_REDUCE_SUM, x, y, 1, rows, cols), "reduce");
        else if (kind == "sum") check(kn_reduce_f32(KN_REDUCE_SUM, x, y, 1, n, 1), "reduce");
        else { std::fprintf(stderr, "unknown kernel %s\n", kind.c_str()); std::exit(2); }
        check(kn_device_synchronize(device), "sync");
    };
    auto copy = [&] { std::memcpy(dst.data(), src.data(), src.size()); };
    kernel();
    copy();
    const double one = std::max(sample(kernel, 1), 1e-7);
    const int calls = std::max(1, static_cast<int>(0.03 / one));
    std::vector<double> ratios, ours, theirs;
    for (int r = 0; r < rounds; ++r) {
        double k, c;
        if (r % 2) { k = sample(kernel, calls); c = sample(copy, calls); }
        else { c = sample(copy, calls); k = sample(kernel, calls); }
        ours.push_back(k);
        theirs.push_back(c);
        ratios.push_back(c / k);
    }
    std::printf("%s %s: %.3f ns/element, memcpy %.3f ns/element, ratio %.3f (%.3f-%.3f), %d rounds x %d calls\n",
                kind.c_str(), two ? (std::to_string(rows) + "x" + std::to_string(cols)).c_str() : std::to_string(n).c_str(),
                quantile(ours, 0.5) / n * 1e9, quantile(theirs, 0.5) / n * 1e9, quantile(ratios, 0.5),
                quantile(ratios, 0.25), quantile(ratios, 0.75), rounds, calls);
    kn_buffer_free(x);
    kn_buffer_free(y);
    return 0;
}
