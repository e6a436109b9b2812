// dev/reduce.cu: development bench for the sum reduction (kn_reduce_f32 with KN_REDUCE_SUM), kernel-only,
// against cudaMemcpy device to device moving the same bytes (4 per element read, 4 per output written).
//
// Shapes, x viewed as [outer, reduce, inner]:
//   everything into one value (1 x n x 1): too few outputs to fill the GPU, the hard case;
//   row sums of [n / 1024, 1024] (a softmax denominator; inner = 1);
//   column sums of [n / 512, 512] (a bias gradient; inner = 512).
// Variants for the full sum (each validated against float64, then timed):
//   1  one block-level tree per 256 x 8 elements, then one atomicAdd per block into the result
//      (the textbook; order of the atomics varies from run to run, so the bits do too)
//   2  two passes: a grid of ~2 blocks per SM, each thread a float4 grid-stride running sum, warp
//      shuffle trees, one partial per block; a second one-block pass over the partials (deterministic)
//   3  the library's launcher (kernels/cuda/reduce.cu, linked), with its scratch buffer
// Row and column sums: the library only (its warp-per-row and column kernels).
//
// Napkin math: 64M floats = 268 MB read, ~90 us at ~3 TB/s. Not yet run on a GPU.
//
// Build and run from native/dev (see README.md):
//   nvcc -O3 -std=c++17 -arch=sm_90 -I../include -I../core -I../kernels -I../kernels/cuda -o reduce \
//        reduce.cu ../kernels/cuda/reduce.cu ../kernels/cuda/elementwise.cu && ./reduce [n] [repeats]
// (elementwise.cu for fill_f32, which the library's reduce uses for reduce == 0.)
#include "bandwidth.cuh"

#include "cuda_kernels.h"

#include <string>

namespace {

constexpr int kThreads = 256;

__device__ float warp_sum(float v) {
    for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
    return v;
}

// Sum of one value per thread over the block; the result is valid in thread 0.
__device__ float block_sum(float v) {
    __shared__ float warps[kThreads / 32];
    v = warp_sum(v);
    if (threadIdx.x % 32 == 0) warps[threadIdx.x / 32] = v;
    __syncthreads();
    v = threadIdx.x < kThreads / 32 ? warps[threadIdx.x] : 0.0f;
    if (threadIdx.x < 32) v = warp_sum(v);
    return v;
}

// ---- Variant 1: tree per block + atomicAdd ------------------------------------------------------

constexpr int kPerThread1 = 8;

__global__ void sum_kernel1(const float* x, long long n, float* result) {
    const long long base = blockIdx.x * (long long)kThreads * kPerThread1 + threadIdx.x;
    float v = 0.0f;
#pragma unroll
    for (int j = 0; j < kPerThread1; ++j) {
        const long long i = base + (long long)j * kThreads;  // consecutive threads, consecutive words
        if (i < n) v += x[i];
    }
    v = block_sum(v);
    if (threadIdx.x == 0) atomicAdd(result, v);
}

// ---- Variant 2: two deterministic passes ----------------------------------------------------------

__global__ void sum_kernel2_partials(const float4* x, long long n4, float* partials) {
    float v = 0.0f;
    for (long long i = blockIdx.x * (long long)kThreads + threadIdx.x; i < n4; i += (long long)gridDim.x * kThreads) {
        const float4 u = x[i];
        v += (u.x + u.y) + (u.z + u.w);
    }
    v = block_sum(v);
    if (threadIdx.x == 0) partials[blockIdx.x] = v;
}

__global__ void sum_kernel2_final(const float* partials, int count, float* result) {
    float v = 0.0f;
    for (int i = threadIdx.x; i < count; i += kThreads) v += partials[i];
    v = block_sum(v);
    if (threadIdx.x == 0) *result = v;
}

struct Shape {
    const char* name;
    long long outer, reduce, inner;
    long long count() const { return outer * reduce * inner; }
    long long outputs() const { return outer * inner; }
    double traffic() const { return 4.0 * count() + 4.0 * outputs(); }
};

// outputs of x[outer, reduce, inner] summed over reduce, in float64 with the bound of any float32 order.
bool check(const char* label, const Shape& s, const std::vector<float>& x, const float* device_y) {
    std::vector<float> got = host_copy_of(device_y, static_cast<size_t>(s.outputs()));
    std::vector<double> want(s.outputs()), bound(s.outputs());
    for (long long o = 0; o < s.outer; ++o)
        for (long long i = 0; i < s.inner; ++i) {
            double sum = 0.0, sum_abs = 0.0;
            for (long long r = 0; r < s.reduce; ++r) {
                const double v = x[(o * s.reduce + r) * s.inner + i];
                sum += v;
                sum_abs += std::fabs(v);
            }
            want[o * s.inner + i] = sum;
            bound[o * s.inner + i] = (s.reduce + 1) * 1.1920929e-7 * sum_abs + 1e-30;
        }
    return compare(label, got, want, bound);
}

// Also the library's scratch source (as CudaDevice's: one buffer, grown on demand and kept, so the
// timed repeats do not allocate).
struct Runner final : kn::cuda::ScratchSource {
    kn::cuda::LaunchContext ctx;
    void* scratch = nullptr;
    int64_t scratch_bytes = 0;
    float* partials = nullptr;

    Runner(cudaStream_t stream, int sm_count) : ctx{stream, sm_count, this} {}

    void* get(int64_t need) override {
        if (need > scratch_bytes) {
            CUDA_CHECK(cudaStreamSynchronize(ctx.stream));  // queued kernels may still read the old buffer
            cudaFree(scratch);
            CUDA_CHECK(cudaMalloc(&scratch, static_cast<size_t>(need)));
            scratch_bytes = need;
        }
        return scratch;
    }

    void library(const Shape& s, const float* x, float* y) {
        kn::ReduceArgs args{KN_REDUCE_SUM, x, y, s.outer, s.reduce, s.inner};
        CUDA_CHECK(kn::cuda::reduce_f32(args, ctx));
    }

    void run(int variant, const Shape& s, const float* x, float* y) {
        const long long n = s.count();
        if (variant == 1) {
            CUDA_CHECK(cudaMemsetAsync(y, 0, sizeof(float), ctx.stream));
            const long long blocks = (n + kThreads * kPerThread1 - 1) / (kThreads * kPerThread1);
            sum_kernel1<<<static_cast<unsigned>(blocks), kThreads, 0, ctx.stream>>>(x, n, y);
        } else if (variant == 2) {
            const int blocks = 2 * ctx.sm_count;
            if (!partials) CUDA_CHECK(cudaMalloc(&partials, 4096 * sizeof(float)));
            sum_kernel2_partials<<<blocks, kThreads, 0, ctx.stream>>>(reinterpret_cast<const float4*>(x), n / 4, partials);
            sum_kernel2_final<<<1, kThreads, 0, ctx.stream>>>(partials, blocks, y);
        } else {
            library(s, x, y);
        }
    }
};

const char* variant_name(int v) {
    return v == 1 ? "1 block tree + atomicAdd" : v == 2 ? "2 two passes, float4, deterministic" : "3 library (kernels/cuda/reduce.cu)";
}

}  // namespace

int main(int argc, char** argv) {
    const SizeArgs args = parse_size_args(argc, argv, 1024, "");

    const int sm_count = describe_device();
    cudaStream_t stream;
    CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
    Runner runner(stream, sm_count);
    Timer timer(stream);

    // Validation: every variant on the full sum (a size that is not a multiple of the block's
    // 2048-element step), the library on rows and columns of odd sizes too.
    bool ok = true;
    {
        const long long n = 1000 * 1024;
        std::vector<float> x = random_floats(n, 3);
        float *dx = device_copy_of(x), *dy = nullptr;
        CUDA_CHECK(cudaMalloc(&dy, n * sizeof(float)));
        const Shape full{"sum", 1, n, 1};
        for (int v = 1; v <= 3; ++v) {
            runner.run(v, full, dx, dy);
            CUDA_CHECK(cudaStreamSynchronize(stream));
            ok = check(("full sum, variant " + std::to_string(v)).c_str(), full, x, dy) && ok;
        }
        for (const Shape& s : {Shape{"rows", 1000, 1024, 1}, Shape{"columns", 1, 2000, 512}, Shape{"odd", 7, 1001, 13}}) {
            const long long count = s.count();
            std::vector<float> xs(x.begin(), x.begin() + count);
            runner.library(s, dx, dy);
            CUDA_CHECK(cudaStreamSynchronize(stream));
            ok = check((std::string("library, ") + s.name).c_str(), s, xs, dy) && ok;
        }
        cudaFree(dx);
        cudaFree(dy);
    }
    if (!ok) {
        std::printf("validation FAILED: not timing\n");
        return EXIT_FAILURE;
    }
    std::printf("validation: all variants match float64\n");

    for (long long n : args.sizes) {
        float *x = nullptr, *y = nullptr;
        CUDA_CHECK(cudaMalloc(&x, n * sizeof(float)));
        CUDA_CHECK(cudaMalloc(&y, (n / 512) * sizeof(float)));
        CUDA_CHECK(cudaMemsetAsync(x, 0x3c, n * sizeof(float), stream));
        const Shape shapes[] = {{"sum of everything", 1, n, 1}, {"row sums [n/1024, 1024]", n / 1024, 1024, 1},
                                {"column sums [n/512, 512]", 1, n / 512, 512}};
        for (const Shape& s : shapes) {
            CopyReference copy(s.traffic(), timer, stream, args.repeats);
            char what[128];
            std::snprintf(what, sizeof what, "%s, n = %lldM", s.name, n >> 20);
            copy.print_header(what, s.traffic());
            for (int v = (s.outputs() == 1 ? 1 : 3); v <= 3; ++v)
                copy.print_row(variant_name(v), timer.mean_ms(args.repeats, [&] { runner.run(v, s, x, y); }), s.traffic());
        }
        cudaFree(x);
        cudaFree(y);
    }
    return EXIT_SUCCESS;
}
