// bandwidth.cuh: what the memory-bound development programs (elementwise.cu, reduce.cu, softmax.cu)
// share: the device's copy bandwidth as their reference, and one table row per timed variant.
//
// The reference is cudaMemcpyAsync device to device moving as many bytes as the kernel (a copy of
// N bytes reads N and writes N, so it copies half the kernel's traffic), timed with the same
// Timer (cudaEvents, L2 flushed before every repeat) in the same run. A kernel at 1.00x moves its
// bytes as fast as the copy engine path does; the issue's target for the large sizes is >= 0.80x.
#pragma once

#include "common.cuh"

#include <cstdio>

struct CopyReference {
    float* source = nullptr;
    float* destination = nullptr;
    size_t bytes = 0;
    double ms = 0.0;

    CopyReference(double traffic_bytes, Timer& timer, cudaStream_t stream, int repeats) {
        bytes = static_cast<size_t>(traffic_bytes / 2) / 256 * 256;
        CUDA_CHECK(cudaMalloc(&source, bytes));
        CUDA_CHECK(cudaMalloc(&destination, bytes));
        CUDA_CHECK(cudaMemsetAsync(source, 0x3f, bytes, stream));
        ms = timer.mean_ms(repeats, [&] {
            CUDA_CHECK(cudaMemcpyAsync(destination, source, bytes, cudaMemcpyDeviceToDevice, stream));
        });
    }
    ~CopyReference() {
        cudaFree(source);
        cudaFree(destination);
    }
    CopyReference(const CopyReference&) = delete;
    CopyReference& operator=(const CopyReference&) = delete;

    void print_header(const char* what, double traffic_bytes) const {
        std::printf("\n%s: %.1f MB moved per call\n", what, traffic_bytes / 1e6);
        std::printf("  %-44s %10.4f ms %9.1f GB/s\n", "reference: cudaMemcpy device to device", ms, 2.0 * bytes / (ms * 1e6));
    }

    void print_row(const char* variant, double kernel_ms, double traffic_bytes) const {
        // ratio = copy time for the same traffic / kernel time = kernel GB/s / copy GB/s
        const double copy_ms_same_traffic = ms * traffic_bytes / (2.0 * bytes);
        std::printf("  %-44s %10.4f ms %9.1f GB/s %6.2fx copy\n", variant, kernel_ms, traffic_bytes / (kernel_ms * 1e6),
                    copy_ms_same_traffic / kernel_ms);
    }
};

// The command line of the bandwidth programs, `[n [repeats]]`: the element counts to time (by default
// from L2-resident to 1 GiB) and the repeats per timing. n must be a positive multiple of `multiple`
// (`why` says which variant needs that); otherwise this says so and exits.
struct SizeArgs {
    std::vector<long long> sizes{1ll << 20, 16ll << 20, 64ll << 20, 256ll << 20};
    int repeats = 20;
};

inline SizeArgs parse_size_args(int argc, char** argv, long long multiple, const char* why) {
    SizeArgs args;
    if (argc >= 2) args.sizes = {std::atoll(argv[1])};
    if (argc >= 3) args.repeats = std::max(1, std::atoi(argv[2]));
    for (long long n : args.sizes)
        if (n <= 0 || n % multiple != 0) {
            std::fprintf(stderr, "n must be a positive multiple of %lld%s; got %lld\n", multiple, why, n);
            std::exit(EXIT_FAILURE);
        }
    return args;
}
