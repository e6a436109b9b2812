// common.cuh: helpers shared by the kernel development programs in native/dev (in the manner of
// karpathy/llm.c's dev/cuda/common.h): error checks, random data, comparison against a reference,
// and cudaEvent timing with the L2 cache flushed before every timed repeat.
//
// These are stand-alone tools, not library code: on a CUDA error they print it and exit.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>

#define CUDA_CHECK(call) cuda_check((call), #call, __FILE__, __LINE__)
#define CUBLAS_CHECK(call) cublas_check((call), #call, __FILE__, __LINE__)

inline void cuda_check(cudaError_t e, const char* what, const char* file, int line) {
    if (e == cudaSuccess) return;
    std::fprintf(stderr, "%s:%d: %s failed: %s: %s\n", file, line, what, cudaGetErrorName(e), cudaGetErrorString(e));
    std::exit(EXIT_FAILURE);
}

inline void cublas_check(cublasStatus_t s, const char* what, const char* file, int line) {
    if (s == CUBLAS_STATUS_SUCCESS) return;
    std::fprintf(stderr, "%s:%d: %s failed with cuBLAS status %d\n", file, line, what, static_cast<int>(s));
    std::exit(EXIT_FAILURE);
}

// Prints what the programs run on (name, SMs, compute capability, L2) and returns the SM count,
// which the library's launchers take (kn::cuda::LaunchContext::sm_count).
inline int describe_device() {
    int device = 0, sm_count = 0;
    CUDA_CHECK(cudaGetDevice(&device));
    cudaDeviceProp prop{};
    CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
    CUDA_CHECK(cudaDeviceGetAttribute(&sm_count, cudaDevAttrMultiProcessorCount, device));
    std::printf("%s, %d SMs, compute capability %d.%d, %.0f MB L2\n", prop.name, sm_count, prop.major, prop.minor,
                prop.l2CacheSize / 1e6);
    return sm_count;
}

// Uniform floats in [-1, 1) from a fixed seed (a 64-bit LCG's top 24 bits), so runs are
// comparable. (Not <random>: nvcc 11.8's front end rejects libstdc++ 12's <random>.)
inline std::vector<float> random_floats(size_t count, uint32_t seed) {
    uint64_t state = 0x9E3779B97F4A7C15ull * (seed + 1);
    std::vector<float> v(count);
    for (float& x : v) {
        state = state * 6364136223846793005ull + 1442695040888963407ull;
        x = static_cast<float>(state >> 40) / 8388608.0f - 1.0f;  // 24 bits / 2^23 - 1: [-1, 1)
    }
    return v;
}

template <typename T>
T* device_copy_of(const std::vector<T>& host) {
    T* d = nullptr;
    CUDA_CHECK(cudaMalloc(&d, host.size() * sizeof(T) + 16));  // + 16: never a zero-byte allocation
    CUDA_CHECK(cudaMemcpy(d, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice));
    return d;
}

template <typename T>
std::vector<T> host_copy_of(const T* device, size_t count) {
    std::vector<T> h(count);
    CUDA_CHECK(cudaMemcpy(h.data(), device, count * sizeof(T), cudaMemcpyDeviceToHost));
    return h;
}

// Compares got with want element by element against per-element bounds (bound[i] may be 0 for an
// exact match) and prints the first few mismatches. NaN matches NaN. Returns true when all match.
inline bool compare(const char* label, const std::vector<float>& got, const std::vector<double>& want,
                    const std::vector<double>& bound) {
    size_t bad = 0;
    double worst = 0.0;
    for (size_t i = 0; i < got.size(); ++i) {
        const double g = got[i], w = want[i];
        if (std::isnan(g) && std::isnan(w)) continue;
        const double err = std::fabs(g - w);
        const bool ok = err <= bound[i];  // false for NaN/inf mismatches too
        if (bound[i] > 0) worst = std::fmax(worst, err / bound[i]);
        if (!ok) {
            if (bad < 5) std::printf("    %s: element %zu is %.9g, expected %.9g (bound %.3g)\n", label, i, g, w, bound[i]);
            ++bad;
        }
    }
    if (bad) std::printf("    %s: %zu of %zu elements wrong\n", label, bad, got.size());
    return bad == 0;
}

// Times fn (which queues work on `stream`) over `repeats` runs after one warm-up run, writing a
// buffer larger than the L2 cache before each run (outside the timed interval) so every run starts
// from DRAM as a real workload would. Returns the mean milliseconds per run.
class Timer {
public:
    explicit Timer(cudaStream_t stream) : stream_(stream) {
        int device = 0, l2_bytes = 0;
        CUDA_CHECK(cudaGetDevice(&device));
        CUDA_CHECK(cudaDeviceGetAttribute(&l2_bytes, cudaDevAttrL2CacheSize, device));
        flush_bytes_ = static_cast<size_t>(std::max(l2_bytes, 1 << 20)) * 2;
        CUDA_CHECK(cudaMalloc(&flush_, flush_bytes_));
        CUDA_CHECK(cudaEventCreate(&start_));
        CUDA_CHECK(cudaEventCreate(&stop_));
    }
    ~Timer() {
        cudaFree(flush_);
        cudaEventDestroy(start_);
        cudaEventDestroy(stop_);
    }

    template <class Fn>
    double mean_ms(int repeats, Fn&& fn) {
        fn();
        CUDA_CHECK(cudaGetLastError());
        double total = 0.0;
        for (int r = 0; r < repeats; ++r) {
            CUDA_CHECK(cudaMemsetAsync(flush_, r & 0xff, flush_bytes_, stream_));
            CUDA_CHECK(cudaEventRecord(start_, stream_));
            fn();
            CUDA_CHECK(cudaEventRecord(stop_, stream_));
            CUDA_CHECK(cudaEventSynchronize(stop_));
            CUDA_CHECK(cudaGetLastError());
            float ms = 0.0f;
            CUDA_CHECK(cudaEventElapsedTime(&ms, start_, stop_));
            total += ms;
        }
        return total / repeats;
    }

private:
    cudaStream_t stream_;
    void* flush_ = nullptr;
    size_t flush_bytes_ = 0;
    cudaEvent_t start_{}, stop_{};
};

inline int ceil_div(int a, int b) { return (a + b - 1) / b; }
