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
//       tanh N | dropout N | softmax ROWS COLS | column-sum ROWS COLS | sum N | read N   [ROUNDS]
// `read` is no library kernel: a plain pass that reads x once (independent vector sums, each line
// prefetched 4 KB ahead, no stores): about the most a read-only kernel (sum, column sums) can reach on
// the core against the same memcpy. With AVX-512 it loads whole 64-byte lines (four zmm sums); else
// 16-byte vectors (eight SSE sums). The width matters on Intel: on a Xeon (Sapphire Rapids class, KVM
// guest, 64M floats) the 16-byte pass measured 0.65-0.69x and whole lines 0.72-0.73x (a standalone probe
// with four zmm sums: 0.74-0.77x with or without prefetches; ymm 0.50x, xmm 0.39x without them); the
// library's sum, whose AVX-512 code loads whole lines, 0.66-0.69x. Either way 0.8x is out of reach there.
//
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

// Sum of x[0, n) (n a multiple of 32) in 8 vectors of 4 lanes (8 of the 16 SSE registers, no spills),
// each line also requested 4 KB ahead (without: ~0.53x on the Xeon): loads only, no chain to wait on.
float read_pass_sse(const float* x, int64_t n) {
    typedef float v4 __attribute__((vector_size(16), aligned(4)));
    v4 a0 = {}, a1 = {}, a2 = {}, a3 = {}, a4 = {}, a5 = {}, a6 = {}, a7 = {};
    for (int64_t i = 0; i + 32 <= n; i += 32) {
        const v4* p = reinterpret_cast<const v4*>(x + i);
        __builtin_prefetch(x + i + 1024, 0);  // 4 KB ahead, one request per line read
        __builtin_prefetch(x + i + 1040, 0);
        a0 += p[0]; a1 += p[1]; a2 += p[2]; a3 += p[3]; a4 += p[4]; a5 += p[5]; a6 += p[6]; a7 += p[7];
    }
    const v4 t = ((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7));
    return t[0] + t[1] + t[2] + t[3];
}

#if defined(__x86_64__)
// The same pass in whole lines: 4 zmm sums over 64 floats per step (n a multiple of 64).
__attribute__((target("avx512f"))) float read_pass_avx512(const float* x, int64_t n) {
    typedef float v16 __attribute__((vector_size(64), aligned(4)));
    v16 a0 = {}, a1 = {}, a2 = {}, a3 = {};
    for (int64_t i = 0; i + 64 <= n; i += 64) {
        const v16* p = reinterpret_cast<const v16*>(x + i);
        for (int64_t line = 0; line < 64; line += 16) __builtin_prefetch(x + i + 1024 + line, 0);
        a0 += p[0]; a1 += p[1]; a2 += p[2]; a3 += p[3];
    }
    const v16 t = (a0 + a1) + (a2 + a3);
    float s = 0.0f;
    for (int j = 0; j < 16; ++j) s += t[j];
    return s;
}
#endif

float read_pass(const float* x, int64_t n) {
#if defined(__x86_64__)
    if (__builtin_cpu_supports("avx512f")) return read_pass_avx512(x, n);
#endif
    return read_pass_sse(x, n);
}
}  // namespace

int main(int argc, char** argv) {
    if (argc < 3) {
        std::fprintf(stderr, "usage: bandwidth_cpu_bench tanh N | dropout N | softmax ROWS COLS | column-sum ROWS COLS | sum N | read N [ROUNDS]\n");
        return 2;
    }
    const std::string kind = argv[1];
    const bool two = kind == "softmax" || kind == "column-sum";
    const int64_t rows = std::atol(argv[2]), cols = two ? std::atol(argv[3]) : 1;
    const int rounds = argc > (two ? 4 : 3) ? std::atoi(argv[two ? 4 : 3]) : 15;
    const int64_t n = rows * cols;
    kn_device* device;
    check(kn_device_find("cpu", &device), "kn_device_find");
    const int64_t out_n = kind == "column-sum" ? cols : kind == "sum" || kind == "read" ? 1 : n;
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
    // The read pass goes over the buffer's own memory (kn_buffer_address: a host pointer on the CPU).
    void* x_address = nullptr;
    check(kn_buffer_address(x, 0, &x_address), "kn_buffer_address");
    volatile float sink = 0.0f;
    auto kernel = [&] {
        if (kind == "read") {
            sink = sink + read_pass(static_cast<const float*>(x_address), n);
            return;
        }
        if (kind == "tanh") check(kn_unary_f32(KN_UNARY_TANH, 0.0f, x, y, n), "tanh");
        else if (kind == "dropout") check(kn_dropout_f32(x, y, n, 0.5f, 1234, 0), "dropout");
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
