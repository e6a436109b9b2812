// dev/conv.cu: development bench for the float32 NCHW convolution (forward, backward-data,
// backward-weights) of kernels/cuda/conv.cu.
//
// Variants (each validated against a float64 CPU reference first, then timed):
//   forward
//     1  direct: one thread per output, input and weights straight from global memory (written here)
//     2  implicit GEMM with 16 x 16 shared-memory tiles, one output per thread (written here)
//     3  library implicit GEMM, 64 x 64 block tile, 4 x 4 per thread, double-buffered
//     4  library implicit GEMM, 64 x 128 block tile, 4 x 8 per thread
//     5  library implicit GEMM, 128 x 128 block tile, 8 x 8 per thread
//     6  library as CudaDevice runs it (planned: direct kernels for narrow groups, else the tile above
//        that fills the GPU)
//     7  library direct kernel (what 6 picks for depthwise / narrow groups)
//   backward-data and backward-weights: 3 to 7 likewise (backward-weights with split-K planned
//   from the SM count, partials added by a second kernel)
// Variants 3 to 7 are the library's own code (kernels/cuda/conv.cu is included, not copied), run
// through its launcher with kn::cuda::Conv2dOptions.
//
// The reference is cuDNN through PyTorch, timed by conv_cudnn.py on the same shapes:
//   ./conv --csv conv.csv && python3 conv_cudnn.py conv.csv
// prints cuDNN's GFLOP/s and the ratio of each pass (see README.md).
//
// Build (see README.md):
//   nvcc -O3 -std=c++17 --expt-relaxed-constexpr -arch=sm_90 -I../include -I../core -I../kernels -o conv conv.cu
//   ./conv [--csv FILE] [--repeats N] [--only NAME]
#include "common.cuh"

#include "../kernels/cuda/conv.cu"  // variants 3 to 7 are the library's own code
#include "window_geometry.h"

#include <cfloat>
#include <cstring>
#include <string>

using kn::Conv2dGeometry;
using kn::cuda::Conv2dAlgorithm;
using kn::cuda::Conv2dOptions;

// ---- Shapes -----------------------------------------------------------------------------------------------

struct Shape {
    const char* name;
    int batch, C, H, W, OC, KH, KW, sh, sw, ph, pw, dh, dw, groups;

    // As the C API hands it to a backend (its rule, core/window_geometry.h, not a copy of it).
    Conv2dGeometry geometry() const {
        const kn::WindowAxis h = kn::window_axis(H, ph, KH, sh, dh), w = kn::window_axis(W, pw, KW, sw, dw);
        return Conv2dGeometry{batch, C, H, W, OC, KH, KW, h.stride, w.stride, ph, pw, dh, dw, groups, h.out, w.out};
    }
    int64_t x_n() const { return int64_t{batch} * C * H * W; }
    int64_t w_n() const { return int64_t{OC} * (C / groups) * KH * KW; }
    int64_t y_n() const {
        const Conv2dGeometry g = geometry();
        return int64_t{batch} * OC * g.out_height * g.out_width;
    }
    // The conventional count: 2 FLOPs per multiply-add, padding taps included; the same for all
    // three passes.
    double flops() const {
        const Conv2dGeometry g = geometry();
        return 2.0 * batch * OC * g.out_height * g.out_width * double(C / groups) * KH * KW;
    }
};

// Benchmark shapes: ResNet-50 / ResNeXt / MobileNet layers at batch 32.
const Shape kBenchmarkShapes[] = {
    // name                      N    C    H    W   OC  KH KW sh sw ph pw dh dw groups
    {"resnet 3x3 64, 56x56", 32, 64, 56, 56, 64, 3, 3, 1, 1, 1, 1, 1, 1, 1},
    {"resnet 3x3 128, 28x28", 32, 128, 28, 28, 128, 3, 3, 1, 1, 1, 1, 1, 1, 1},
    {"resnet 3x3 256, 14x14", 32, 256, 14, 14, 256, 3, 3, 1, 1, 1, 1, 1, 1, 1},
    {"resnet 3x3 512, 7x7", 32, 512, 7, 7, 512, 3, 3, 1, 1, 1, 1, 1, 1, 1},
    {"resnet 1x1 256->64, 56x56", 32, 256, 56, 56, 64, 1, 1, 1, 1, 0, 0, 1, 1, 1},
    {"resnet 1x1 64->256, 56x56", 32, 64, 56, 56, 256, 1, 1, 1, 1, 0, 0, 1, 1, 1},
    {"resnet stem 7x7/2 3->64", 32, 3, 224, 224, 64, 7, 7, 2, 2, 3, 3, 1, 1, 1},
    {"3x3/2 128, 56x56", 32, 128, 56, 56, 128, 3, 3, 2, 2, 1, 1, 1, 1, 1},
    {"dilated 3x3 d2 256, 28x28", 32, 256, 28, 28, 256, 3, 3, 1, 1, 2, 2, 2, 2, 1},
    {"resnext 3x3 128 g32, 28x28", 32, 128, 28, 28, 128, 3, 3, 1, 1, 1, 1, 1, 1, 32},
    {"depthwise 3x3 256, 56x56", 32, 256, 56, 56, 256, 3, 3, 1, 1, 1, 1, 1, 1, 256},
};

// Validation shapes: small enough for a float64 CPU reference, awkward enough to hit edge tiles.
const Shape kValidationShapes[] = {
    {"3x3 pad 1, odd sizes", 2, 13, 17, 19, 70, 3, 3, 1, 1, 1, 1, 1, 1, 1},
    {"5x3 stride 2x1, pad 2x0, dilation 1x2", 3, 8, 21, 18, 33, 5, 3, 2, 1, 2, 0, 1, 2, 1},
    {"3x3 stride 3, pad > half", 2, 5, 23, 20, 140, 3, 3, 3, 3, 2, 2, 1, 1, 1},
    {"1x1 stride 2", 4, 64, 15, 15, 130, 1, 1, 2, 2, 0, 0, 1, 1, 1},
    {"grouped 4 x 16 channels", 2, 64, 12, 13, 64, 3, 3, 1, 1, 1, 1, 1, 1, 4},
    {"depthwise x2, stride 2", 2, 24, 19, 17, 48, 3, 3, 2, 2, 1, 1, 1, 1, 24},
};

// ---- CPU reference ----------------------------------------------------------------------------------------

enum class Pass { forward, backward_data, backward_weights };
const char* pass_name(Pass p) {
    return p == Pass::forward ? "forward" : p == Pass::backward_data ? "backward_data" : "backward_weights";
}

// In float64, with each element's bound (terms + 4) eps sum |terms|: the error of any float32
// summation order of the same products.
struct Reference {
    std::vector<double> value, bound;
};

Reference reference(Pass pass, const Shape& s, const std::vector<float>& x, const std::vector<float>& w,
                    const std::vector<float>& dy) {
    const Conv2dGeometry g = s.geometry();
    const int64_t icg_n = s.C / s.groups, ocg_n = s.OC / s.groups;
    const int64_t n = pass == Pass::forward ? s.y_n() : pass == Pass::backward_data ? s.x_n() : s.w_n();
    std::vector<double> sum(n, 0.0), sum_abs(n, 0.0);
    std::vector<int64_t> terms(n, 0);
    for (int64_t b = 0; b < s.batch; ++b)
        for (int64_t oc = 0; oc < s.OC; ++oc)
            for (int64_t oh = 0; oh < g.out_height; ++oh)
                for (int64_t ow = 0; ow < g.out_width; ++ow) {
                    const int64_t yi = ((b * s.OC + oc) * g.out_height + oh) * g.out_width + ow;
                    for (int64_t icg = 0; icg < icg_n; ++icg)
                        for (int64_t kh = 0; kh < s.KH; ++kh) {
                            const int64_t ih = oh * s.sh - s.ph + kh * s.dh;
                            if (ih < 0 || ih >= s.H) continue;
                            for (int64_t kw = 0; kw < s.KW; ++kw) {
                                const int64_t iw = ow * s.sw - s.pw + kw * s.dw;
                                if (iw < 0 || iw >= s.W) continue;
                                const int64_t ic = (oc / ocg_n) * icg_n + icg;
                                const int64_t xi = ((b * s.C + ic) * s.H + ih) * s.W + iw;
                                const int64_t wi = ((oc * icg_n + icg) * s.KH + kh) * s.KW + kw;
                                double t;
                                int64_t at;
                                if (pass == Pass::forward) { t = double(w[wi]) * x[xi]; at = yi; }
                                else if (pass == Pass::backward_data) { t = double(w[wi]) * dy[yi]; at = xi; }
                                else { t = double(dy[yi]) * x[xi]; at = wi; }
                                sum[at] += t;
                                sum_abs[at] += std::fabs(t);
                                ++terms[at];
                            }
                        }
                }
    Reference r;
    r.value = sum;
    r.bound.resize(n);
    for (int64_t i = 0; i < n; ++i) r.bound[i] = (terms[i] + 4) * double(FLT_EPSILON) * sum_abs[i] + 1e-30;
    return r;
}

// ---- Variant 1: direct ------------------------------------------------------------------------------------

__global__ void conv_kernel1(Conv2dGeometry g, const float* x, const float* w, float* y) {
    const int64_t total = g.batch * g.out_channels * g.out_height * g.out_width;
    const int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
    if (i >= total) return;
    const int64_t ow = i % g.out_width, oh = (i / g.out_width) % g.out_height;
    const int64_t oc = (i / (g.out_width * g.out_height)) % g.out_channels;
    const int64_t b = i / (g.out_width * g.out_height * g.out_channels);
    const int64_t icg_n = g.in_channels / g.groups, grp = oc / (g.out_channels / g.groups);
    float acc = 0.0f;
    for (int64_t icg = 0; icg < icg_n; ++icg)
        for (int64_t kh = 0; kh < g.kernel_height; ++kh)
            for (int64_t kw = 0; kw < g.kernel_width; ++kw) {
                const int64_t ih = oh * g.stride_height - g.pad_height + kh * g.dilation_height;
                const int64_t iw = ow * g.stride_width - g.pad_width + kw * g.dilation_width;
                if (ih < 0 || ih >= g.in_height || iw < 0 || iw >= g.in_width) continue;
                acc += x[((b * g.in_channels + grp * icg_n + icg) * g.in_height + ih) * g.in_width + iw] *
                       w[((oc * icg_n + icg) * g.kernel_height + kh) * g.kernel_width + kw];
            }
    y[i] = acc;
}

// ---- Variant 2: implicit GEMM, 16 x 16 shared-memory tiles --------------------------------------------------
// Per group: C[oc, n] = W[oc, k] B[k, n], n = (b, oh, ow), k = (ic, kh, kw); the block stages a 16 x 16
// tile of W and a 16 x 16 tile of B (gathered from x) per step of 16 along k.

constexpr int kTile2 = 16;

__global__ void conv_kernel2(Conv2dGeometry g, const float* x, const float* w, float* y) {
    __shared__ float ws[kTile2][kTile2];
    __shared__ float bs[kTile2][kTile2 + 1];
    const int64_t icg_n = g.in_channels / g.groups, ocg_n = g.out_channels / g.groups;
    const int64_t khw = g.kernel_height * g.kernel_width, K = icg_n * khw;
    const int64_t ohw = g.out_height * g.out_width, N = g.batch * ohw;
    const int64_t grp = blockIdx.z;
    const int tx = threadIdx.x, ty = threadIdx.y;
    const int64_t m = blockIdx.y * int64_t{kTile2} + ty;  // output channel within the group
    const int64_t n = blockIdx.x * int64_t{kTile2} + tx;
    // Column of B this thread loads (tx) is also the column it computes.
    const int64_t b = n / ohw, s = n % ohw, oh = s / g.out_width, ow = s % g.out_width;
    float acc = 0.0f;
    for (int64_t k0 = 0; k0 < K; k0 += kTile2) {
        const int64_t wk = k0 + tx;
        ws[ty][tx] = (m < ocg_n && wk < K) ? w[(grp * ocg_n + m) * K + wk] : 0.0f;
        const int64_t bk = k0 + ty;
        float v = 0.0f;
        if (n < N && bk < K) {
            const int64_t ic = bk / khw, kh = (bk % khw) / g.kernel_width, kw = bk % g.kernel_width;
            const int64_t ih = oh * g.stride_height - g.pad_height + kh * g.dilation_height;
            const int64_t iw = ow * g.stride_width - g.pad_width + kw * g.dilation_width;
            if (ih >= 0 && ih < g.in_height && iw >= 0 && iw < g.in_width)
                v = x[((b * g.in_channels + grp * icg_n + ic) * g.in_height + ih) * g.in_width + iw];
        }
        bs[ty][tx] = v;
        __syncthreads();
#pragma unroll
        for (int p = 0; p < kTile2; ++p) acc += ws[ty][p] * bs[p][tx];
        __syncthreads();
    }
    if (m < ocg_n && n < N) y[(b * g.out_channels + grp * ocg_n + m) * ohw + s] = acc;
}

// ---- Variants as one table ---------------------------------------------------------------------------------

struct Buffers {
    const float* x;
    const float* w;
    const float* dy;
    float* out;      // y, dx or dw
    void* scratch;   // backward-weights split-K partials (at least scratch_bytes)
};

struct Variant {
    const char* name;
    bool forward_only;
    Conv2dOptions options;  // library variants
    void (*run)(const Variant& v, Pass pass, const Shape& s, const Buffers& b, cudaStream_t stream, int sm_count);
};

void run_kernel1(const Variant&, Pass, const Shape& s, const Buffers& b, cudaStream_t stream, int) {
    const int64_t total = s.y_n();
    conv_kernel1<<<static_cast<unsigned>((total + 255) / 256), 256, 0, stream>>>(s.geometry(), b.x, b.w, b.out);
}

void run_kernel2(const Variant&, Pass, const Shape& s, const Buffers& b, cudaStream_t stream, int) {
    const Conv2dGeometry g = s.geometry();
    const int64_t n = int64_t{s.batch} * g.out_height * g.out_width, m = s.OC / s.groups;
    const dim3 grid(static_cast<unsigned>((n + kTile2 - 1) / kTile2), static_cast<unsigned>((m + kTile2 - 1) / kTile2), s.groups);
    conv_kernel2<<<grid, dim3(kTile2, kTile2), 0, stream>>>(g, b.x, b.w, b.out);
}

int64_t library_scratch_bytes(const Variant& v, const Shape& s, int sm_count) {
    kn::Conv2dBackwardWeightsArgs a{s.geometry(), nullptr, nullptr, nullptr, nullptr};
    return kn::cuda::conv2d_backward_weights_scratch_bytes(a, kn::cuda::LaunchContext{nullptr, sm_count}, v.options);
}

// The library's scratch: the buffer allocated up front from library_scratch_bytes (the launcher's own
// plan, so it asks for no more), which keeps cudaMalloc out of the timed repeats.
struct PreallocatedScratch final : kn::cuda::ScratchSource {
    void* buffer;
    explicit PreallocatedScratch(void* b) : buffer(b) {}
    void* get(int64_t) override { return buffer; }
};

void run_library(const Variant& v, Pass pass, const Shape& s, const Buffers& b, cudaStream_t stream, int sm_count) {
    PreallocatedScratch scratch(b.scratch);
    const kn::cuda::LaunchContext ctx{stream, sm_count, &scratch};
    const Conv2dGeometry g = s.geometry();
    if (pass == Pass::forward)
        CUDA_CHECK(kn::cuda::conv2d_f32(kn::Conv2dArgs{g, b.x, b.w, nullptr, b.out}, ctx, v.options));
    else if (pass == Pass::backward_data)
        CUDA_CHECK(kn::cuda::conv2d_backward_data_f32(kn::Conv2dBackwardDataArgs{g, b.dy, b.w, b.out}, ctx, v.options));
    else
        CUDA_CHECK(kn::cuda::conv2d_backward_weights_f32(kn::Conv2dBackwardWeightsArgs{g, b.x, b.dy, b.out, nullptr},
                                                         ctx, v.options));
}

const Variant kVariants[] = {
    {"1 direct", true, {}, run_kernel1},
    {"2 implicit GEMM, 16x16 smem tiles", true, {}, run_kernel2},
    {"3 library GEMM 64x64", false, {Conv2dAlgorithm::implicit_gemm, 1, 0, false}, run_library},
    {"4 library GEMM 64x128", false, {Conv2dAlgorithm::implicit_gemm, 2, 0, false}, run_library},
    {"5 library GEMM 128x128", false, {Conv2dAlgorithm::implicit_gemm, 3, 0, false}, run_library},
    {"6 library planned", false, {}, run_library},
    {"7 library direct", false, {Conv2dAlgorithm::direct, 0, 0, false}, run_library},
};

// ---- Validation and timing ---------------------------------------------------------------------------------

int64_t out_count(Pass pass, const Shape& s) {
    return pass == Pass::forward ? s.y_n() : pass == Pass::backward_data ? s.x_n() : s.w_n();
}

bool validate(const Shape& s, int sm_count, cudaStream_t stream) {
    const auto x = random_floats(s.x_n(), 1), w = random_floats(s.w_n(), 2), dy = random_floats(s.y_n(), 3);
    float* dx = device_copy_of(x);
    float* dw = device_copy_of(w);
    float* ddy = device_copy_of(dy);
    bool ok = true;
    for (Pass pass : {Pass::forward, Pass::backward_data, Pass::backward_weights}) {
        const Reference ref = reference(pass, s, x, w, dy);
        const int64_t n = out_count(pass, s);
        for (const Variant& v : kVariants) {
            if (v.forward_only && pass != Pass::forward) continue;
            float* out = nullptr;
            CUDA_CHECK(cudaMalloc(&out, n * sizeof(float)));
            CUDA_CHECK(cudaMemset(out, 0xff, n * sizeof(float)));  // NaN: an unwritten element shows
            void* scratch = nullptr;
            const int64_t scratch_bytes = pass == Pass::backward_weights ? library_scratch_bytes(v, s, sm_count) : 0;
            if (scratch_bytes > 0) CUDA_CHECK(cudaMalloc(&scratch, scratch_bytes));
            v.run(v, pass, s, Buffers{dx, dw, ddy, out, scratch}, stream, sm_count);
            CUDA_CHECK(cudaGetLastError());
            CUDA_CHECK(cudaStreamSynchronize(stream));
            const std::string label = std::string(pass_name(pass)) + " " + v.name + " on " + s.name;
            const bool good = compare(label.c_str(), host_copy_of(out, n), ref.value, ref.bound);
            std::printf("  %-17s %-36s %-40s %s\n", pass_name(pass), v.name, s.name, good ? "ok" : "WRONG");
            ok = ok && good;
            CUDA_CHECK(cudaFree(out));
            if (scratch) CUDA_CHECK(cudaFree(scratch));
        }
    }
    CUDA_CHECK(cudaFree(dx));
    CUDA_CHECK(cudaFree(dw));
    CUDA_CHECK(cudaFree(ddy));
    return ok;
}

void benchmark(const Shape& s, int repeats, int sm_count, cudaStream_t stream, FILE* csv) {
    const auto x = random_floats(s.x_n(), 11), w = random_floats(s.w_n(), 12), dy = random_floats(s.y_n(), 13);
    float* dx = device_copy_of(x);
    float* dw = device_copy_of(w);
    float* ddy = device_copy_of(dy);
    Timer timer(stream);
    const Conv2dGeometry g = s.geometry();
    std::printf("\n%s: x [%d, %d, %d, %d], w [%d, %d, %d, %d], stride %dx%d, pad %dx%d, dilation %dx%d, groups %d -> %lldx%lld, %.2f GFLOP\n",
                s.name, s.batch, s.C, s.H, s.W, s.OC, s.C / s.groups, s.KH, s.KW, s.sh, s.sw, s.ph, s.pw, s.dh, s.dw,
                s.groups, (long long)g.out_height, (long long)g.out_width, s.flops() / 1e9);
    for (Pass pass : {Pass::forward, Pass::backward_data, Pass::backward_weights}) {
        const int64_t n = out_count(pass, s);
        float* out = nullptr;
        float* planned = nullptr;
        CUDA_CHECK(cudaMalloc(&out, n * sizeof(float)));
        CUDA_CHECK(cudaMalloc(&planned, n * sizeof(float)));
        // Every variant's output is checked against the planned library's (the validated reference
        // on these sizes would take minutes on the CPU): 64 eps sqrt(K) (|ref| + 1), as dev/gemm.cu does.
        const Variant& reference_variant = kVariants[5];
        void* scratch = nullptr;
        int64_t scratch_bytes = 0;
        for (const Variant& v : kVariants)
            if (!v.forward_only) scratch_bytes = std::max(scratch_bytes, library_scratch_bytes(v, s, sm_count));
        if (scratch_bytes > 0) CUDA_CHECK(cudaMalloc(&scratch, scratch_bytes));
        reference_variant.run(reference_variant, pass, s, Buffers{dx, dw, ddy, planned, scratch}, stream, sm_count);
        CUDA_CHECK(cudaStreamSynchronize(stream));
        const std::vector<float> ref = host_copy_of(planned, n);
        const double k = pass == Pass::backward_weights ? double(s.batch) * g.out_height * g.out_width
                                                        : double(s.C / s.groups) * s.KH * s.KW;
        std::vector<double> want(ref.begin(), ref.end()), bound(n);
        for (int64_t i = 0; i < n; ++i) bound[i] = 64.0 * FLT_EPSILON * std::sqrt(k) * (std::fabs(ref[i]) + 1.0);
        for (const Variant& v : kVariants) {
            if (v.forward_only && pass != Pass::forward) continue;
            const Buffers b{dx, dw, ddy, out, scratch};
            CUDA_CHECK(cudaMemsetAsync(out, 0xff, n * sizeof(float), stream));
            v.run(v, pass, s, b, stream, sm_count);
            CUDA_CHECK(cudaStreamSynchronize(stream));
            const bool ok = compare(v.name, host_copy_of(out, n), want, bound);
            const double ms = timer.mean_ms(repeats, [&] { v.run(v, pass, s, b, stream, sm_count); });
            const double gflops = s.flops() / ms / 1e6;
            std::printf("  %-17s %-36s %9.3f ms %9.1f GFLOP/s%s\n", pass_name(pass), v.name, ms, gflops,
                        ok ? "" : "  (WRONG RESULT)");
            if (csv)  // shape and variant names hold commas: quoted, as RFC 4180 (and Python's csv) read them
                std::fprintf(csv, "%s,\"%s\",%d,%d,%d,%d,%d,%d,%d,%d,%d,%d,%d,%d,%d,%d,\"%s\",%.6f,%.3f,%d\n", pass_name(pass), s.name,
                             s.batch, s.C, s.H, s.W, s.OC, s.KH, s.KW, s.sh, s.sw, s.ph, s.pw, s.dh, s.dw, s.groups, v.name, ms,
                             gflops, ok ? 1 : 0);
        }
        CUDA_CHECK(cudaFree(out));
        CUDA_CHECK(cudaFree(planned));
        if (scratch) CUDA_CHECK(cudaFree(scratch));
    }
    CUDA_CHECK(cudaFree(dx));
    CUDA_CHECK(cudaFree(dw));
    CUDA_CHECK(cudaFree(ddy));
}

int main(int argc, char** argv) {
    const char* csv_path = nullptr;
    const char* only = nullptr;
    int repeats = 10;
    for (int i = 1; i < argc; ++i) {
        if (!std::strcmp(argv[i], "--csv") && i + 1 < argc) csv_path = argv[++i];
        else if (!std::strcmp(argv[i], "--repeats") && i + 1 < argc) repeats = std::max(1, std::atoi(argv[++i]));
        else if (!std::strcmp(argv[i], "--only") && i + 1 < argc) only = argv[++i];
        else {
            std::fprintf(stderr, "usage: %s [--csv FILE] [--repeats N] [--only SUBSTRING-OF-SHAPE-NAME]\n", argv[0]);
            return EXIT_FAILURE;
        }
    }
    const int sm_count = describe_device();
    cudaStream_t stream;
    CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));

    std::printf("\nvalidation against a float64 CPU reference:\n");
    bool ok = true;
    for (const Shape& s : kValidationShapes) ok = validate(s, sm_count, stream) && ok;
    if (!ok) {
        std::printf("\nvalidation FAILED: not timing\n");
        return EXIT_FAILURE;
    }

    FILE* csv = nullptr;
    if (csv_path) {
        csv = std::fopen(csv_path, "w");
        if (!csv) {
            std::fprintf(stderr, "cannot write %s\n", csv_path);
            return EXIT_FAILURE;
        }
        std::fprintf(csv, "pass,shape,batch,in_channels,in_height,in_width,out_channels,kernel_height,kernel_width,"
                          "stride_height,stride_width,pad_height,pad_width,dilation_height,dilation_width,groups,"
                          "variant,ms,gflops,matches\n");
    }
    std::printf("\nmean of %d runs each, L2 flushed before every run; FLOPs = 2 x multiply-adds incl. padding taps:\n", repeats);
    for (const Shape& s : kBenchmarkShapes)
        if (!only || std::strstr(s.name, only)) benchmark(s, repeats, sm_count, stream, csv);
    if (csv) std::fclose(csv);
    CUDA_CHECK(cudaStreamDestroy(stream));
    return EXIT_SUCCESS;
}
