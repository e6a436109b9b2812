// dev/gemm.cu: development bench for the float32 GEMM, C = alpha * A * B + beta * C, row-major.
//
// Variants, from the textbook to the one the library ships (each validated, then timed against
// cuBLAS SGEMM in the same run):
//   1  naive: one thread per element of C, A and B straight from global memory
//   2  shared-memory tiles: 32x32 tiles of A and B staged through shared memory, one output per thread
//   3  register-blocked 2-D tiles: 64x64 block tile, each thread keeps a 4x4 block of C in registers
//   4  4 + float4 global loads, A turned around (k-major) in shared memory, 128x128 tile, 8x8 per thread
//   5  the library's kernel (kernels/cuda/gemm.cu): warp tiles, double-buffered shared memory,
//      grouped tile order, any shape / transpose / batch
//
// Build and run (see README.md):
//   nvcc -O3 -std=c++17 -arch=sm_90 -I../include -I../core -I../kernels -o gemm gemm.cu -lcublas && ./gemm [m n k] [repeats]
#include "common.cuh"

#include "../kernels/cuda/gemm.cu"  // variant 5 is the library's own code, not a copy of it

#include <algorithm>
#include <cfloat>
#include <cstring>
#include <string>

// ---- CPU reference --------------------------------------------------------------------------------

// C = alpha * op(A) * op(B) + beta * C in double, with the rounding-error bound of any float32
// summation order for each element: (k + 4) * eps * (|alpha| * sum |a_ip b_pj| + |beta c_ij|).
struct Reference {
    std::vector<double> value, bound;
};

Reference reference_gemm(bool ta, bool tb, int m, int n, int k, float alpha, const std::vector<float>& a, int lda,
                         const std::vector<float>& b, int ldb, float beta, const std::vector<float>& c, int ldc) {
    Reference r;
    r.value.assign(c.begin(), c.end());
    r.bound.assign(c.size(), 0.0);
    for (int i = 0; i < m; ++i)
        for (int j = 0; j < n; ++j) {
            double sum = 0.0, sum_abs = 0.0;
            for (int p = 0; p < k; ++p) {
                const double x = ta ? a[size_t(p) * lda + i] : a[size_t(i) * lda + p];
                const double y = tb ? b[size_t(j) * ldb + p] : b[size_t(p) * ldb + j];
                sum += x * y;
                sum_abs += std::fabs(x * y);
            }
            const size_t at = size_t(i) * ldc + j;
            const bool product = k > 0 && alpha != 0.0f;  // BLAS: alpha == 0 or k == 0 reads neither A nor B
            const double old = beta == 0.0f ? 0.0 : double(beta) * c[at];
            r.value[at] = (product ? double(alpha) * sum : 0.0) + old;
            r.bound[at] = (k + 4) * double(FLT_EPSILON) * (std::fabs(alpha) * sum_abs + std::fabs(old)) + 1e-30;
        }
    return r;
}

// ---- Variant 1: naive --------------------------------------------------------------------------------

__global__ void gemm_kernel1(int m, int n, int k, float alpha, const float* a, const float* b, float beta, float* c) {
    const int col = blockIdx.x * blockDim.x + threadIdx.x;  // threadIdx.x along n: B and C reads coalesce
    const int row = blockIdx.y * blockDim.y + threadIdx.y;
    if (row >= m || col >= n) return;
    float sum = 0.0f;
    for (int p = 0; p < k; ++p) sum += a[size_t(row) * k + p] * b[size_t(p) * n + col];
    float* dst = c + size_t(row) * n + col;
    *dst = alpha * sum + (beta != 0.0f ? beta * *dst : 0.0f);
}

// ---- Variant 2: shared-memory tiles ------------------------------------------------------------------

constexpr int kTile2 = 32;

__global__ void gemm_kernel2(int m, int n, int k, float alpha, const float* a, const float* b, float beta, float* c) {
    __shared__ float as[kTile2][kTile2];
    __shared__ float bs[kTile2][kTile2 + 1];
    const int tx = threadIdx.x, ty = threadIdx.y;
    const int row = blockIdx.y * kTile2 + ty, col = blockIdx.x * kTile2 + tx;
    float sum = 0.0f;
    for (int k0 = 0; k0 < k; k0 += kTile2) {
        as[ty][tx] = (row < m && k0 + tx < k) ? a[size_t(row) * k + k0 + tx] : 0.0f;
        bs[ty][tx] = (k0 + ty < k && col < n) ? b[size_t(k0 + ty) * n + col] : 0.0f;
        __syncthreads();
#pragma unroll
        for (int p = 0; p < kTile2; ++p) sum += as[ty][p] * bs[p][tx];
        __syncthreads();
    }
    if (row < m && col < n) {
        float* dst = c + size_t(row) * n + col;
        *dst = alpha * sum + (beta != 0.0f ? beta * *dst : 0.0f);
    }
}

// ---- Variant 3: register-blocked 2-D tiles -----------------------------------------------------------

constexpr int kBM3 = 64, kBN3 = 64, kBK3 = 8, kT3 = 4;  // 256 threads, each a 4x4 block of C

__global__ void __launch_bounds__(256) gemm_kernel3(int m, int n, int k, float alpha, const float* a, const float* b,
                                                    float beta, float* c) {
    __shared__ float as[kBM3][kBK3];
    __shared__ float bs[kBK3][kBN3];
    const int tid = threadIdx.x;
    const int trow = tid / (kBN3 / kT3), tcol = tid % (kBN3 / kT3);
    const int m0 = blockIdx.y * kBM3, n0 = blockIdx.x * kBN3;
    float acc[kT3][kT3] = {};
    for (int k0 = 0; k0 < k; k0 += kBK3) {
        for (int l = tid; l < kBM3 * kBK3; l += 256) {
            const int r = l / kBK3, p = l % kBK3;
            as[r][p] = (m0 + r < m && k0 + p < k) ? a[size_t(m0 + r) * k + k0 + p] : 0.0f;
        }
        for (int l = tid; l < kBK3 * kBN3; l += 256) {
            const int p = l / kBN3, j = l % kBN3;
            bs[p][j] = (k0 + p < k && n0 + j < n) ? b[size_t(k0 + p) * n + n0 + j] : 0.0f;
        }
        __syncthreads();
#pragma unroll
        for (int p = 0; p < kBK3; ++p) {
            float x[kT3], y[kT3];
#pragma unroll
            for (int i = 0; i < kT3; ++i) x[i] = as[trow * kT3 + i][p];
#pragma unroll
            for (int j = 0; j < kT3; ++j) y[j] = bs[p][tcol * kT3 + j];
#pragma unroll
            for (int i = 0; i < kT3; ++i)
#pragma unroll
                for (int j = 0; j < kT3; ++j) acc[i][j] += x[i] * y[j];
        }
        __syncthreads();
    }
    for (int i = 0; i < kT3; ++i)
        for (int j = 0; j < kT3; ++j) {
            const int row = m0 + trow * kT3 + i, col = n0 + tcol * kT3 + j;
            if (row < m && col < n) {
                float* dst = c + size_t(row) * n + col;
                *dst = alpha * acc[i][j] + (beta != 0.0f ? beta * *dst : 0.0f);
            }
        }
}

// ---- Variant 4: float4 loads, k-major A in shared memory, 8x8 per thread ---------------------------
// Needs k % 4 == 0 and n % 4 == 0 (whole float4 rows); m is free.

constexpr int kBM4 = 128, kBN4 = 128, kBK4 = 8, kT4 = 8;

__global__ void __launch_bounds__(256) gemm_kernel4(int m, int n, int k, float alpha, const float* a, const float* b,
                                                    float beta, float* c) {
    __shared__ __align__(16) float as[kBK4][kBM4];  // A turned around: a column of the tile is a row here
    __shared__ __align__(16) float bs[kBK4][kBN4];
    const int tid = threadIdx.x;
    const int trow = tid / (kBN4 / kT4), tcol = tid % (kBN4 / kT4);  // 16 x 16 threads
    const int m0 = blockIdx.y * kBM4, n0 = blockIdx.x * kBN4;
    const int a_row = tid / (kBK4 / 4), a_col = (tid % (kBK4 / 4)) * 4;  // one float4 of A per thread
    const int b_row = tid / (kBN4 / 4), b_col = (tid % (kBN4 / 4)) * 4;  // one float4 of B per thread
    float acc[kT4][kT4] = {};
    for (int k0 = 0; k0 < k; k0 += kBK4) {
        float4 va = make_float4(0.f, 0.f, 0.f, 0.f), vb = va;
        if (m0 + a_row < m && k0 + a_col < k) va = *reinterpret_cast<const float4*>(a + size_t(m0 + a_row) * k + k0 + a_col);
        if (k0 + b_row < k && n0 + b_col < n) vb = *reinterpret_cast<const float4*>(b + size_t(k0 + b_row) * n + n0 + b_col);
        as[a_col + 0][a_row] = va.x;
        as[a_col + 1][a_row] = va.y;
        as[a_col + 2][a_row] = va.z;
        as[a_col + 3][a_row] = va.w;
        *reinterpret_cast<float4*>(&bs[b_row][b_col]) = vb;
        __syncthreads();
#pragma unroll
        for (int p = 0; p < kBK4; ++p) {
            float x[kT4], y[kT4];
            const float4 x0 = *reinterpret_cast<const float4*>(&as[p][trow * kT4]);
            const float4 x1 = *reinterpret_cast<const float4*>(&as[p][trow * kT4 + 4]);
            const float4 y0 = *reinterpret_cast<const float4*>(&bs[p][tcol * kT4]);
            const float4 y1 = *reinterpret_cast<const float4*>(&bs[p][tcol * kT4 + 4]);
            x[0] = x0.x; x[1] = x0.y; x[2] = x0.z; x[3] = x0.w; x[4] = x1.x; x[5] = x1.y; x[6] = x1.z; x[7] = x1.w;
            y[0] = y0.x; y[1] = y0.y; y[2] = y0.z; y[3] = y0.w; y[4] = y1.x; y[5] = y1.y; y[6] = y1.z; y[7] = y1.w;
#pragma unroll
            for (int i = 0; i < kT4; ++i)
#pragma unroll
                for (int j = 0; j < kT4; ++j) acc[i][j] += x[i] * y[j];
        }
        __syncthreads();
    }
#pragma unroll
    for (int i = 0; i < kT4; ++i) {
        const int row = m0 + trow * kT4 + i;
        if (row >= m) continue;
#pragma unroll
        for (int j = 0; j < kT4; j += 4) {
            const int col = n0 + tcol * kT4 + j;
            if (col >= n) continue;
            float4* dst = reinterpret_cast<float4*>(c + size_t(row) * n + col);
            float4 v = make_float4(alpha * acc[i][j], alpha * acc[i][j + 1], alpha * acc[i][j + 2], alpha * acc[i][j + 3]);
            if (beta != 0.0f) {
                const float4 old = *dst;
                v.x += beta * old.x; v.y += beta * old.y; v.z += beta * old.z; v.w += beta * old.w;
            }
            *dst = v;
        }
    }
}

// ---- Variants as one table ------------------------------------------------------------------------------

struct Problem {
    int m, n, k;
    float alpha, beta;
    const float* a;
    const float* b;
    float* c;
};

struct Variant {
    const char* name;
    bool (*supports)(int m, int n, int k);
    void (*run)(const Problem& p, cudaStream_t stream, int sm_count);
};

bool any_shape(int, int, int) { return true; }
bool whole_float4_rows(int, int n, int k) { return n % 4 == 0 && k % 4 == 0; }

void run1(const Problem& p, cudaStream_t s, int) {
    gemm_kernel1<<<dim3(ceil_div(p.n, 32), ceil_div(p.m, 32)), dim3(32, 32), 0, s>>>(p.m, p.n, p.k, p.alpha, p.a, p.b, p.beta, p.c);
}
void run2(const Problem& p, cudaStream_t s, int) {
    gemm_kernel2<<<dim3(ceil_div(p.n, kTile2), ceil_div(p.m, kTile2)), dim3(kTile2, kTile2), 0, s>>>(p.m, p.n, p.k, p.alpha, p.a, p.b, p.beta, p.c);
}
void run3(const Problem& p, cudaStream_t s, int) {
    gemm_kernel3<<<dim3(ceil_div(p.n, kBN3), ceil_div(p.m, kBM3)), 256, 0, s>>>(p.m, p.n, p.k, p.alpha, p.a, p.b, p.beta, p.c);
}
void run4(const Problem& p, cudaStream_t s, int) {
    gemm_kernel4<<<dim3(ceil_div(p.n, kBN4), ceil_div(p.m, kBM4)), 256, 0, s>>>(p.m, p.n, p.k, p.alpha, p.a, p.b, p.beta, p.c);
}
void run5(const Problem& p, cudaStream_t s, int sm_count) {
    kn::GemmArgs g{false, false, p.m, p.n, p.k, p.alpha, p.beta, p.a, p.k, 0, p.b, p.n, 0, p.c, p.n, 0, 1};
    CUDA_CHECK(kn::cuda::gemm_f32(g, kn::cuda::LaunchContext{s, sm_count}));
}

const Variant kVariants[] = {
    {"1 naive", any_shape, run1},
    {"2 shared-memory tiles", any_shape, run2},
    {"3 register-blocked 2-D tiles", any_shape, run3},
    {"4 float4 + k-major A, 8x8/thread", whole_float4_rows, run4},
    {"5 library: warp tiles, 2 stages", any_shape, run5},
};

// ---- Validation -------------------------------------------------------------------------------------------

// Every variant on one shape against the CPU reference (alpha = 1.5, beta = -0.5).
bool validate_variants(int m, int n, int k, cudaStream_t stream, int sm_count) {
    const float alpha = 1.5f, beta = -0.5f;
    auto a = random_floats(size_t(m) * k, 1), b = random_floats(size_t(k) * n, 2), c = random_floats(size_t(m) * n, 3);
    const Reference want = reference_gemm(false, false, m, n, k, alpha, a, k, b, n, beta, c, n);
    float* da = device_copy_of(a);
    float* db = device_copy_of(b);
    bool ok = true;
    for (const Variant& v : kVariants) {
        if (!v.supports(m, n, k)) continue;
        float* dc = device_copy_of(c);
        v.run(Problem{m, n, k, alpha, beta, da, db, dc}, stream, sm_count);
        CUDA_CHECK(cudaGetLastError());
        CUDA_CHECK(cudaStreamSynchronize(stream));
        const std::string label = std::string(v.name) + " at " + std::to_string(m) + "x" + std::to_string(n) + "x" + std::to_string(k);
        const bool good = compare(label.c_str(), host_copy_of(dc, c.size()), want.value, want.bound);
        std::printf("  %-40s %4dx%4dx%4d  %s\n", v.name, m, n, k, good ? "ok" : "WRONG");
        ok = ok && good;
        CUDA_CHECK(cudaFree(dc));
    }
    CUDA_CHECK(cudaFree(da));
    CUDA_CHECK(cudaFree(db));
    return ok;
}

// The library kernel's edge cases: transposes, padded leading dimensions, batches with a shared
// operand, beta = 0 over NaN, k = 0, alpha = 0, primes and 1s, misaligned leading dimensions.
struct EdgeCase {
    bool ta, tb;
    int m, n, k;
    int pad_a, pad_b, pad_c;  // added to each leading dimension
    int batch;
    bool share_a, share_b;    // stride 0
    float alpha, beta;
    bool nan_in_c;            // C starts as NaN (only meaningful with beta == 0)
};

bool validate_edge_case(const EdgeCase& e, cudaStream_t stream, int sm_count) {
    const int a_rows = e.ta ? e.k : e.m, a_cols = e.ta ? e.m : e.k;
    const int b_rows = e.tb ? e.n : e.k, b_cols = e.tb ? e.k : e.n;
    const int lda = std::max(a_cols, 1) + e.pad_a, ldb = std::max(b_cols, 1) + e.pad_b, ldc = e.n + e.pad_c;
    const size_t size_a = size_t(a_rows) * lda, size_b = size_t(b_rows) * ldb, size_c = size_t(e.m) * ldc;
    const size_t stride_a = e.share_a ? 0 : size_a, stride_b = e.share_b ? 0 : size_b, stride_c = size_c;
    auto a = random_floats(std::max<size_t>(stride_a * (e.batch - 1) + size_a, 1), 11);
    auto b = random_floats(std::max<size_t>(stride_b * (e.batch - 1) + size_b, 1), 12);
    auto c = random_floats(stride_c * e.batch, 13);
    if (e.nan_in_c) std::fill(c.begin(), c.end(), NAN);
    float* da = device_copy_of(a);
    float* db = device_copy_of(b);
    float* dc = device_copy_of(c);
    kn::GemmArgs g{e.ta, e.tb, e.m, e.n, e.k, e.alpha, e.beta, da, lda, int64_t(stride_a), db, ldb, int64_t(stride_b),
                   dc, ldc, int64_t(stride_c), e.batch};
    CUDA_CHECK(kn::cuda::gemm_f32(g, kn::cuda::LaunchContext{stream, sm_count}));
    CUDA_CHECK(cudaStreamSynchronize(stream));
    const std::vector<float> got = host_copy_of(dc, c.size());
    bool ok = true;
    char label[160];
    std::snprintf(label, sizeof label, "%c%c m=%d n=%d k=%d pads=%d/%d/%d batch=%d%s%s alpha=%g beta=%g%s",
                  e.ta ? 'T' : 'N', e.tb ? 'T' : 'N', e.m, e.n, e.k, e.pad_a, e.pad_b, e.pad_c, e.batch,
                  e.share_a ? " shared-A" : "", e.share_b ? " shared-B" : "", e.alpha, e.beta, e.nan_in_c ? " NaN-C" : "");
    for (int i = 0; i < e.batch; ++i) {
        const std::vector<float> ai(a.begin() + stride_a * i, a.begin() + stride_a * i + size_a);
        const std::vector<float> bi(b.begin() + stride_b * i, b.begin() + stride_b * i + size_b);
        const std::vector<float> ci(c.begin() + stride_c * i, c.begin() + stride_c * i + size_c);
        Reference want = reference_gemm(e.ta, e.tb, e.m, e.n, e.k, e.alpha, ai, lda, bi, ldb, e.beta, ci, ldc);
        // Padding columns of C must be left exactly as they were (NaN stays NaN).
        const std::vector<float> gi(got.begin() + stride_c * i, got.begin() + stride_c * i + size_c);
        ok = compare(label, gi, want.value, want.bound) && ok;
    }
    std::printf("  %-72s %s\n", label, ok ? "ok" : "WRONG");
    CUDA_CHECK(cudaFree(da));
    CUDA_CHECK(cudaFree(db));
    CUDA_CHECK(cudaFree(dc));
    return ok;
}

// ---- Benchmark -------------------------------------------------------------------------------------------

void benchmark(int m, int n, int k, int repeats, cublasHandle_t handle, cudaStream_t stream, int sm_count) {
    const double flops = 2.0 * m * n * k;
    auto a = random_floats(size_t(m) * k, 21), b = random_floats(size_t(k) * n, 22);
    float* da = device_copy_of(a);
    float* db = device_copy_of(b);
    float* dc = nullptr;
    float* dref = nullptr;
    CUDA_CHECK(cudaMalloc(&dc, size_t(m) * n * sizeof(float)));
    CUDA_CHECK(cudaMalloc(&dref, size_t(m) * n * sizeof(float)));
    const float one = 1.0f, zero = 0.0f;
    // Row-major C = A B is column-major C^T = B^T A^T: cuBLAS sees B first.
    auto cublas = [&](float* out) {
        CUBLAS_CHECK(cublasSgemm(handle, CUBLAS_OP_N, CUBLAS_OP_N, n, m, k, &one, db, n, da, k, &zero, out, n));
    };
    cublas(dref);
    CUDA_CHECK(cudaStreamSynchronize(stream));
    const std::vector<float> ref = host_copy_of(dref, size_t(m) * n);
    // Against cuBLAS: both are float32 sums in different orders; allow 64 eps * sqrt(k) * (|ref| + 1).
    std::vector<double> want(ref.begin(), ref.end()), bound(ref.size());
    for (size_t i = 0; i < ref.size(); ++i) bound[i] = 64.0 * FLT_EPSILON * std::sqrt(double(k)) * (std::fabs(ref[i]) + 1.0);

    Timer timer(stream);
    const double cublas_ms = timer.mean_ms(repeats, [&] { cublas(dc); });
    const double cublas_gflops = flops / cublas_ms / 1e6;
    std::printf("\n%dx%dx%d, mean of %d runs, L2 flushed before each:\n", m, n, k, repeats);
    std::printf("  %-40s %9.3f ms %9.1f GFLOP/s\n", "cuBLAS sgemm (FP32, no TF32)", cublas_ms, cublas_gflops);
    for (const Variant& v : kVariants) {
        if (!v.supports(m, n, k)) {
            std::printf("  %-40s (shape not supported)\n", v.name);
            continue;
        }
        const Problem p{m, n, k, 1.0f, 0.0f, da, db, dc};
        CUDA_CHECK(cudaMemsetAsync(dc, 0xff, size_t(m) * n * sizeof(float), stream));  // NaN: unwritten shows
        v.run(p, stream, sm_count);
        CUDA_CHECK(cudaStreamSynchronize(stream));
        const bool ok = compare(v.name, host_copy_of(dc, ref.size()), want, bound);
        const double ms = timer.mean_ms(repeats, [&] { v.run(p, stream, sm_count); });
        const double gflops = flops / ms / 1e6;
        std::printf("  %-40s %9.3f ms %9.1f GFLOP/s  %5.3fx cuBLAS%s\n", v.name, ms, gflops, gflops / cublas_gflops,
                    ok ? "" : "  (WRONG RESULT)");
    }
    CUDA_CHECK(cudaFree(da));
    CUDA_CHECK(cudaFree(db));
    CUDA_CHECK(cudaFree(dc));
    CUDA_CHECK(cudaFree(dref));
}

// The library kernel with each pair of transposes against cuBLAS with the same operations.
void benchmark_transposes(int m, int n, int k, int repeats, cublasHandle_t handle, cudaStream_t stream, int sm_count) {
    const double flops = 2.0 * m * n * k;
    auto a = random_floats(size_t(m) * k, 31), b = random_floats(size_t(k) * n, 32);
    float* da = device_copy_of(a);
    float* db = device_copy_of(b);
    float* dc = nullptr;
    CUDA_CHECK(cudaMalloc(&dc, size_t(m) * n * sizeof(float)));
    Timer timer(stream);
    const float one = 1.0f, zero = 0.0f;
    std::printf("\nlibrary kernel by transpose, %dx%dx%d:\n", m, n, k);
    for (int t = 0; t < 4; ++t) {
        const bool ta = t & 2, tb = t & 1;
        const int lda = ta ? m : k, ldb = tb ? k : n;
        const double ref_ms = timer.mean_ms(repeats, [&] {
            CUBLAS_CHECK(cublasSgemm(handle, tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N, n, m, k, &one,
                                     db, ldb, da, lda, &zero, dc, n));
        });
        kn::GemmArgs g{ta, tb, m, n, k, 1.0f, 0.0f, da, lda, 0, db, ldb, 0, dc, n, 0, 1};
        const double ms = timer.mean_ms(repeats, [&] { CUDA_CHECK(kn::cuda::gemm_f32(g, kn::cuda::LaunchContext{stream, sm_count})); });
        std::printf("  %c%c  library %9.1f GFLOP/s   cuBLAS %9.1f GFLOP/s   %5.3fx\n", ta ? 'T' : 'N', tb ? 'T' : 'N',
                    flops / ms / 1e6, flops / ref_ms / 1e6, ref_ms / ms);
    }
    CUDA_CHECK(cudaFree(da));
    CUDA_CHECK(cudaFree(db));
    CUDA_CHECK(cudaFree(dc));
}

int main(int argc, char** argv) {
    int m = 4096, n = 4096, k = 4096, repeats = 10;
    if (argc >= 4) {
        m = std::atoi(argv[1]);
        n = std::atoi(argv[2]);
        k = std::atoi(argv[3]);
    }
    if (argc >= 5) repeats = std::max(1, std::atoi(argv[4]));

    const int sm_count = describe_device();

    cudaStream_t stream;
    CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
    cublasHandle_t handle;
    CUBLAS_CHECK(cublasCreate(&handle));
    CUBLAS_CHECK(cublasSetStream(handle, stream));
    CUBLAS_CHECK(cublasSetMathMode(handle, CUBLAS_DEFAULT_MATH));  // plain FP32: TF32 would not be SGEMM

    std::printf("\nvalidation against a float64 CPU reference:\n");
    bool ok = true;
    ok = validate_variants(256, 384, 128, stream, sm_count) && ok;
    ok = validate_variants(257, 131, 67, stream, sm_count) && ok;
    ok = validate_variants(132, 260, 36, stream, sm_count) && ok;

    const EdgeCase cases[] = {
        // ta, tb,  m,   n,   k, pads,    batch, shares,       alpha, beta, NaN-C
        {false, false, 1, 1, 1, 0, 0, 0, 1, false, false, 1.0f, 0.0f, false},
        {false, false, 1, 300, 77, 0, 0, 0, 1, false, false, 1.0f, 0.0f, false},
        {false, false, 300, 1, 77, 0, 0, 0, 1, false, false, 1.0f, 0.0f, false},
        {false, false, 7, 13, 1, 0, 0, 0, 1, false, false, 2.0f, 0.5f, false},
        {false, false, 131, 257, 509, 0, 0, 0, 1, false, false, 1.0f, 0.0f, false},
        {true, false, 131, 257, 509, 0, 0, 0, 1, false, false, 1.0f, 1.0f, false},
        {false, true, 131, 257, 509, 0, 0, 0, 1, false, false, -1.0f, 0.25f, false},
        {true, true, 131, 257, 509, 0, 0, 0, 1, false, false, 0.5f, -2.0f, false},
        {false, false, 256, 256, 256, 3, 5, 7, 1, false, false, 1.0f, 1.0f, false},
        {true, true, 200, 136, 96, 4, 8, 4, 1, false, false, 1.0f, 1.0f, false},
        {false, false, 129, 129, 129, 0, 0, 0, 1, false, false, 1.0f, 0.0f, true},   // beta 0 ignores NaN in C
        {false, false, 64, 48, 0, 0, 0, 0, 1, false, false, 1.0f, 0.5f, false},     // k = 0: C = beta C
        {false, false, 64, 48, 0, 0, 0, 0, 1, false, false, 1.0f, 0.0f, true},      // k = 0, beta 0: zeros
        {false, false, 64, 48, 32, 0, 0, 0, 1, false, false, 0.0f, 2.0f, false},    // alpha = 0
        {false, false, 33, 65, 17, 1, 2, 3, 5, false, false, 1.0f, 0.5f, false},    // batched
        {true, false, 33, 65, 17, 0, 0, 0, 4, true, false, 1.0f, 0.0f, false},      // shared A
        {false, true, 100, 40, 60, 0, 1, 0, 3, false, true, 1.0f, 0.0f, false},     // shared B
        // Enough 128x128 tiles (>= the SM count) for the large-tile kernel:
        {false, false, 1600, 1700, 24, 0, 0, 0, 1, false, false, 1.0f, 0.0f, false},
        {true, false, 1621, 1531, 40, 1, 0, 2, 1, false, false, 1.0f, 0.5f, false},   // primes, unaligned ld
        {false, true, 1543, 1601, 29, 0, 3, 0, 1, false, false, 1.0f, 0.0f, false},
        {true, true, 1601, 1543, 33, 2, 1, 1, 1, false, false, 1.0f, 0.0f, false},
        {false, false, 300, 260, 50, 0, 0, 0, 40, false, true, 1.0f, 0.0f, false},    // batched, shared B
    };
    for (const EdgeCase& e : cases) ok = validate_edge_case(e, stream, sm_count) && ok;
    if (!ok) {
        std::printf("\nvalidation FAILED: not timing\n");
        return EXIT_FAILURE;
    }

    benchmark(m, n, k, repeats, handle, stream, sm_count);
    benchmark_transposes(m, n, k, repeats, handle, stream, sm_count);

    CUBLAS_CHECK(cublasDestroy(handle));
    CUDA_CHECK(cudaStreamDestroy(stream));
    return EXIT_SUCCESS;
}
