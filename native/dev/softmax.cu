// dev/softmax.cu: development bench for the row softmax (kn_softmax_f32), kernel-only, against
// cudaMemcpy device to device moving the same bytes: 4 read + 4 written per element, the least any
// softmax can move (a row read twice costs more only when the second read misses the cache).
//
// Variants (each validated against float64, then timed):
//   1  one thread per row, three passes over the row (max, sum of exp, write): the textbook, with
//      uncoalesced loads (neighbouring threads read addresses a row apart)
//   2  one block of 256 threads per row, two reads of the row (max and sum of exp through
//      shared-memory trees, then the write), coalesced
//   3  the library's launcher (kernels/cuda/softmax.cu, linked): the online softmax (running max and
//      rescaled sum in one read), a warp per row up to 1024 columns, float4 when aligned
// Shapes: [n / 1024, 1024] (attention-sized rows), [n / 32768, 32768] (long rows: one block per row
// in the library), [n / 16, 16] (short rows: many per warp would help; the library gives each a warp).
//
// Napkin math: 64M elements move 537 MB, ~0.18 ms at ~3 TB/s. Not yet run on a GPU.
//
// Build and run from native/dev (see README.md):
//   nvcc -O3 -std=c++17 -arch=sm_90 -I../include -I../core -I../kernels -I../kernels/cuda -o softmax \
//        softmax.cu ../kernels/cuda/softmax.cu && ./softmax [n] [repeats]
#include "bandwidth.cuh"

#include "cuda_kernels.h"

#include <cfloat>
#include <string>

namespace {

constexpr int kThreads = 256;

// ---- Variant 1: a thread per row ----------------------------------------------------------------

__global__ void softmax_kernel1(const float* x, float* y, long long rows, int cols) {
    const long long r = blockIdx.x * (long long)blockDim.x + threadIdx.x;
    if (r >= rows) return;
    const float* row = x + r * cols;
    float m = -FLT_MAX;
    for (int j = 0; j < cols; ++j) m = fmaxf(m, row[j]);
    float s = 0.0f;
    for (int j = 0; j < cols; ++j) s += __expf(row[j] - m);
    const float inv = 1.0f / s;
    for (int j = 0; j < cols; ++j) y[r * cols + j] = __expf(row[j] - m) * inv;
}

// ---- Variant 2: a block per row, two reads ----------------------------------------------------------

template <class Combine>
__device__ float block_reduce(float v, Combine combine) {
    __shared__ float partial[kThreads / 32];
    for (int offset = 16; offset > 0; offset >>= 1) v = combine(v, __shfl_xor_sync(0xffffffffu, v, offset));
    if (threadIdx.x % 32 == 0) partial[threadIdx.x / 32] = v;
    __syncthreads();
    v = partial[0];
    for (int w = 1; w < kThreads / 32; ++w) v = combine(v, partial[w]);  // every thread, same order: same bits
    __syncthreads();  // partial is reused by the next call
    return v;
}

__global__ void softmax_kernel2(const float* x, float* y, int cols) {
    const float* row = x + blockIdx.x * (long long)cols;
    float* out = y + blockIdx.x * (long long)cols;
    float m = -FLT_MAX;
    for (int j = threadIdx.x; j < cols; j += kThreads) m = fmaxf(m, row[j]);
    m = block_reduce(m, [](float a, float b) { return fmaxf(a, b); });
    float s = 0.0f;
    for (int j = threadIdx.x; j < cols; j += kThreads) s += __expf(row[j] - m);
    s = block_reduce(s, [](float a, float b) { return a + b; });
    const float inv = 1.0f / s;
    for (int j = threadIdx.x; j < cols; j += kThreads) out[j] = __expf(row[j] - m) * inv;
}

void run(int variant, const float* x, float* y, long long rows, int cols, const kn::cuda::LaunchContext& ctx) {
    if (variant == 1) {
        softmax_kernel1<<<static_cast<unsigned>((rows + kThreads - 1) / kThreads), kThreads, 0, ctx.stream>>>(x, y, rows, cols);
    } else if (variant == 2) {
        softmax_kernel2<<<static_cast<unsigned>(rows), kThreads, 0, ctx.stream>>>(x, y, cols);
    } else {
        kn::SoftmaxArgs args{x, y, rows, cols, false};
        CUDA_CHECK(kn::cuda::softmax_f32(args, ctx));
    }
}

// Sampled rows against float64: __expf and the float32 sum allow a few ulps plus cols * eps relative.
bool check(const char* label, const std::vector<float>& x, const float* device_y, long long rows, int cols) {
    std::vector<float> y = host_copy_of(device_y, static_cast<size_t>(rows * cols));
    std::vector<float> got;
    std::vector<double> want, bound;
    for (long long r = 0; r < rows; r += std::max(1ll, rows / 17)) {
        double m = -INFINITY, s = 0.0;
        for (int j = 0; j < cols; ++j) m = std::max(m, double(x[r * cols + j]));
        for (int j = 0; j < cols; ++j) s += std::exp(x[r * cols + j] - m);
        for (int j = 0; j < cols; ++j) {
            const double w = std::exp(x[r * cols + j] - m) / s;
            got.push_back(y[r * cols + j]);
            want.push_back(w);
            bound.push_back((16 + cols) * 1.1920929e-7 * w + 1e-30);
        }
    }
    return compare(label, got, want, bound);
}

const char* variant_name(int v) {
    return v == 1 ? "1 a thread per row, three passes" : v == 2 ? "2 a block per row, two reads" : "3 library (kernels/cuda/softmax.cu)";
}

}  // namespace

int main(int argc, char** argv) {
    const SizeArgs args = parse_size_args(argc, argv, 32768, "");

    const int sm_count = describe_device();
    cudaStream_t stream;
    CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
    const kn::cuda::LaunchContext ctx{stream, sm_count};
    Timer timer(stream);

    bool ok = true;
    for (int cols : {16, 1000, 1024, 32768, 5}) {
        const long long rows = cols >= 32768 ? 40 : 333;
        std::vector<float> x = random_floats(rows * cols, 4);
        for (float& v : x) v *= 8.0f;  // logits in [-8, 8): exp spans 7 decades
        float *dx = device_copy_of(x), *dy = nullptr;
        CUDA_CHECK(cudaMalloc(&dy, rows * cols * sizeof(float)));
        for (int v = 1; v <= 3; ++v) {
            run(v, dx, dy, rows, cols, ctx);
            CUDA_CHECK(cudaStreamSynchronize(stream));
            ok = check((std::to_string(rows) + " x " + std::to_string(cols) + ", variant " + std::to_string(v)).c_str(), x, dy, rows, cols) && ok;
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
        CUDA_CHECK(cudaMalloc(&y, n * sizeof(float)));
        CUDA_CHECK(cudaMemsetAsync(x, 0x3c, n * sizeof(float), stream));
        for (int cols : {1024, 32768, 16}) {
            const long long rows = n / cols;
            const double traffic = 8.0 * n;
            CopyReference copy(traffic, timer, stream, args.repeats);
            char what[128];
            std::snprintf(what, sizeof what, "softmax [%lld, %d], n = %lldM", rows, cols, n >> 20);
            copy.print_header(what, traffic);
            for (int v = 1; v <= 3; ++v) {
                // Variant 1 at long rows is thousands of times slower; time it once instead of 20 times.
                const int r = (v == 1 && cols > 1024) ? 1 : args.repeats;
                copy.print_row(variant_name(v), timer.mean_ms(r, [&] { run(v, x, y, rows, cols, ctx); }), traffic);
            }
        }
        cudaFree(x);
        cudaFree(y);
    }
    return EXIT_SUCCESS;
}
