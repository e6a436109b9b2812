// cpu_bench.h: what the CPU benches in native/dev share: the status check, the clock and the
// statistics (bandwidth_cpu_bench, cnn_cpu_bench, gemm_cpu_bench, optimizer_cpu_bench). Header-only;
// Linux (clock_gettime).
#pragma once

#include "kernels.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <string>
#include <vector>

namespace kn_dev {

// Exits with the library's message when a call fails (a bench has nothing to recover).
inline void check(kn_status s, const char* what) {
    if (s != KN_OK) {
        std::fprintf(stderr, "%s failed: %s\n", what, kn_last_error());
        std::exit(1);
    }
}

// The calling thread's CPU time in seconds: load from other processes drops out of a one-thread
// measurement. With KN_BENCH_WALL=1, wall-clock time instead (for KN_NUM_THREADS > 1, where the
// pool's workers do part of the work: noisy on a shared machine).
inline double thread_seconds() {
    static const bool wall = std::getenv("KN_BENCH_WALL") && std::string(std::getenv("KN_BENCH_WALL")) == "1";
    timespec t;
    clock_gettime(wall ? CLOCK_MONOTONIC : CLOCK_THREAD_CPUTIME_ID, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

// Seconds per call of f over `calls` back-to-back calls.
template <typename F>
double sample(F&& f, int calls) {
    const double t0 = thread_seconds();
    for (int i = 0; i < calls; ++i) f();
    return (thread_seconds() - t0) / calls;
}

// The q-quantile (0 <= q <= 1) of v, nearest rank.
inline double quantile(std::vector<double> v, double q) {
    std::sort(v.begin(), v.end());
    return v[static_cast<size_t>(q * (v.size() - 1) + 0.5)];
}

}  // namespace kn_dev
