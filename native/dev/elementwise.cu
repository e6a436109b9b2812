// dev/elementwise.cu: development bench for the memory-bound elementwise family, kernel-only: ReLU
// (kn_unary_f32), a + b (kn_binary_f32, same shapes) and a bias add (kn_binary_f32 broadcasting
// [rows, 512] + [512]), each against cudaMemcpy device to device moving the same bytes.
//
// Variants (each validated against a float64 CPU reference first, then timed):
//   1  scalar grid-stride loop: one float per thread per iteration
//   2  float4 grid-stride loop: 16-byte loads and stores (n % 4 == 0 and aligned buffers here)
//   3  the library's launcher (kernels/cuda/elementwise.cu, linked, not copied): op as a template
//      argument, float4 when aligned, 32-bit index math, the broadcast geometry of backend.h
//
// Napkin math: ReLU moves 8 bytes per element, add 12; 64M elements of add are 805 MB, ~0.27 ms at
// an H100's ~3 TB/s copy rate. Not yet run on a GPU (written on a machine without one).
//
// Build and run from native/dev (see README.md):
//   nvcc -O3 -std=c++17 -arch=sm_90 -I../include -I../core -I../kernels -I../kernels/cuda -o elementwise \
//        elementwise.cu ../kernels/cuda/elementwise.cu && ./elementwise [n] [repeats]
#include "bandwidth.cuh"

#include "cuda_kernels.h"

#include <cstring>
#include <string>

namespace {

constexpr int kThreads = 256;

unsigned grid_for(long long work, int sm_count) {
    const long long blocks = (work + kThreads - 1) / kThreads;
    return static_cast<unsigned>(std::max(1ll, std::min(blocks, 16ll * sm_count)));  // two waves of 8 blocks/SM
}

// ---- Variant 1: scalar grid-stride --------------------------------------------------------------

__global__ void relu_kernel1(const float* x, float* y, long long n) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
        y[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

__global__ void add_kernel1(const float* a, const float* b, float* c, long long n) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
        c[i] = a[i] + b[i];
}

__global__ void bias_add_kernel1(const float* a, const float* bias, float* c, long long n, int cols) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
        c[i] = a[i] + bias[i % cols];
}

// ---- Variant 2: float4 grid-stride --------------------------------------------------------------

__global__ void relu_kernel2(const float4* x, float4* y, long long n4) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n4; i += (long long)gridDim.x * blockDim.x) {
        float4 v = x[i];
        v.x = fmaxf(v.x, 0.0f); v.y = fmaxf(v.y, 0.0f); v.z = fmaxf(v.z, 0.0f); v.w = fmaxf(v.w, 0.0f);
        y[i] = v;
    }
}

__global__ void add_kernel2(const float4* a, const float4* b, float4* c, long long n4) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n4; i += (long long)gridDim.x * blockDim.x) {
        const float4 u = a[i], v = b[i];
        c[i] = make_float4(u.x + v.x, u.y + v.y, u.z + v.z, u.w + v.w);
    }
}

// cols % 4 == 0: a float4 of a never straddles two rows, so one modulo serves four outputs.
__global__ void bias_add_kernel2(const float4* a, const float4* bias, float4* c, long long n4, int cols4) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n4; i += (long long)gridDim.x * blockDim.x) {
        const float4 u = a[i], v = bias[i % cols4];
        c[i] = make_float4(u.x + v.x, u.y + v.y, u.z + v.z, u.w + v.w);
    }
}

// ---- Validation ---------------------------------------------------------------------------------

enum class Op { relu, add, bias_add };

const char* name_of(Op op) { return op == Op::relu ? "relu" : op == Op::add ? "add" : "bias add [rows, 512] + [512]"; }

// Every element against float64; one float32 rounding allowed.
bool check(const char* label, Op op, const std::vector<float>& a, const std::vector<float>& b, const float* device_c,
           long long n, int cols) {
    std::vector<float> got = host_copy_of(device_c, static_cast<size_t>(n));
    std::vector<double> want(n), bound(n);
    for (long long i = 0; i < n; ++i) {
        want[i] = op == Op::relu ? std::max(0.0, double(a[i])) : op == Op::add ? double(a[i]) + b[i] : double(a[i]) + b[i % cols];
        bound[i] = 6e-8 * std::fabs(want[i]);
    }
    return compare(label, got, want, bound);
}

struct Problem {
    Op op;
    long long n;
    int cols;  // bias add: the bias length (rows = n / cols)
    float *a, *b, *c;
    kn::cuda::LaunchContext ctx;

    double traffic() const { return op == Op::relu ? 8.0 * n : op == Op::add ? 12.0 * n : 8.0 * n + 4.0 * cols; }

    void run(int variant) const {
        const unsigned grid1 = grid_for(n, ctx.sm_count), grid4 = grid_for(n / 4, ctx.sm_count);
        switch (variant) {
            case 1:
                if (op == Op::relu) relu_kernel1<<<grid1, kThreads, 0, ctx.stream>>>(a, c, n);
                else if (op == Op::add) add_kernel1<<<grid1, kThreads, 0, ctx.stream>>>(a, b, c, n);
                else bias_add_kernel1<<<grid1, kThreads, 0, ctx.stream>>>(a, b, c, n, cols);
                break;
            case 2:
                if (op == Op::relu) relu_kernel2<<<grid4, kThreads, 0, ctx.stream>>>((const float4*)a, (float4*)c, n / 4);
                else if (op == Op::add) add_kernel2<<<grid4, kThreads, 0, ctx.stream>>>((const float4*)a, (const float4*)b, (float4*)c, n / 4);
                else bias_add_kernel2<<<grid4, kThreads, 0, ctx.stream>>>((const float4*)a, (const float4*)b, (float4*)c, n / 4, cols / 4);
                break;
            default: {
                cudaError_t e;
                if (op == Op::relu) {
                    kn::UnaryArgs args{KN_UNARY_RELU, 0.0f, a, c, n};
                    e = kn::cuda::unary_f32(args, ctx);
                } else {
                    kn::BinaryArgs args{};
                    args.op = KN_BINARY_ADD;
                    if (op == Op::add) {  // what api.cpp's normalisation makes of two equal shapes
                        args.g.rank = 1;
                        args.g.dims[0] = n;
                        args.g.a_strides[0] = 1;
                        args.g.b_strides[0] = 1;
                    } else {  // [rows, cols] + [cols]: b is broadcast along rows (stride 0)
                        args.g.rank = 2;
                        args.g.dims[0] = n / cols;
                        args.g.dims[1] = cols;
                        args.g.a_strides[0] = cols;
                        args.g.a_strides[1] = 1;
                        args.g.b_strides[0] = 0;
                        args.g.b_strides[1] = 1;
                    }
                    args.g.n = n;
                    args.a = a;
                    args.b = b;
                    args.c = c;
                    e = kn::cuda::binary_f32(args, ctx);
                }
                CUDA_CHECK(e);
            }
        }
    }
};

const char* variant_name(int v) {
    return v == 1 ? "1 scalar grid-stride" : v == 2 ? "2 float4 grid-stride" : "3 library (kernels/cuda/elementwise.cu)";
}

}  // namespace

int main(int argc, char** argv) {
    const SizeArgs args = parse_size_args(argc, argv, 2048, " (float4 variants, 512-wide bias)");

    const int sm_count = describe_device();
    cudaStream_t stream;
    CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
    const kn::cuda::LaunchContext ctx{stream, sm_count};
    Timer timer(stream);

    // Validation on a small odd-sized problem for the library (its scalar tails) and a float4-sized one for all.
    bool ok = true;
    for (Op op : {Op::relu, Op::add, Op::bias_add}) {
        const long long n = 512 * 37;
        std::vector<float> a = random_floats(n, 1), b = random_floats(op == Op::bias_add ? 512 : n, 2);
        float *da = device_copy_of(a), *db = device_copy_of(b), *dc = nullptr;
        CUDA_CHECK(cudaMalloc(&dc, n * sizeof(float)));
        for (int v = 1; v <= 3; ++v) {
            Problem p{op, n, 512, da, db, dc, ctx};
            p.run(v);
            CUDA_CHECK(cudaStreamSynchronize(stream));
            ok = check((std::string(name_of(op)) + " variant " + std::to_string(v)).c_str(), op, a, b, dc, n, 512) && ok;
        }
        cudaFree(da);
        cudaFree(db);
        cudaFree(dc);
    }
    if (!ok) {
        std::printf("validation FAILED: not timing\n");
        return EXIT_FAILURE;
    }
    std::printf("validation: all variants match float64\n");

    for (long long n : args.sizes) {
        for (Op op : {Op::relu, Op::add, Op::bias_add}) {
            float *a = nullptr, *b = nullptr, *c = nullptr;
            CUDA_CHECK(cudaMalloc(&a, n * sizeof(float)));
            CUDA_CHECK(cudaMalloc(&b, n * sizeof(float)));
            CUDA_CHECK(cudaMalloc(&c, n * sizeof(float)));
            CUDA_CHECK(cudaMemsetAsync(a, 0x3f, n * sizeof(float), stream));
            CUDA_CHECK(cudaMemsetAsync(b, 0x3e, n * sizeof(float), stream));
            Problem p{op, n, 512, a, b, c, ctx};
            CopyReference copy(p.traffic(), timer, stream, args.repeats);
            char what[128];
            std::snprintf(what, sizeof what, "%s, n = %lldM", name_of(op), n >> 20);
            copy.print_header(what, p.traffic());
            for (int v = 1; v <= 3; ++v) copy.print_row(variant_name(v), timer.mean_ms(args.repeats, [&] { p.run(v); }), p.traffic());
            cudaFree(a);
            cudaFree(b);
            cudaFree(c);
        }
    }
    return EXIT_SUCCESS;
}
