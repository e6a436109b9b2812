// cast.cu: kn_cast on CUDA: y[i] = (to) x[i] between float32, int32 and int64, by the rules of
// kernels/cast_rules.h (the same functions the CPU runs). One thread per element, grid-stride,
// coalesced loads and stores: a pure streaming kernel (at most 16 bytes per element), bound by
// memory bandwidth. Not measured on a GPU.
#include "cuda_kernels.h"
#include "cast_rules.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

namespace kn::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kBlocksPerSm = 16;

template <typename From, typename To>
__device__ __forceinline__ To convert(From v) { return static_cast<To>(v); }
template <> __device__ __forceinline__ int32_t convert<float, int32_t>(float v) { return cast_float_to_int32(v); }
template <> __device__ __forceinline__ int64_t convert<float, int64_t>(float v) { return cast_float_to_int64(v); }
template <> __device__ __forceinline__ int32_t convert<int64_t, int32_t>(int64_t v) { return cast_int64_to_int32(v); }

template <typename From, typename To>
__global__ void cast_kernel(const From* __restrict__ x, To* __restrict__ y, int64_t n) {
    for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n; i += int64_t{gridDim.x} * blockDim.x)
        y[i] = convert<From, To>(x[i]);
}

template <typename From, typename To>
cudaError_t launch(const CastArgs& a, const LaunchContext& ctx) {
    const int64_t blocks = std::min<int64_t>((a.n + kThreads - 1) / kThreads, int64_t{std::max(ctx.sm_count, 1)} * kBlocksPerSm);
    cast_kernel<From, To><<<static_cast<unsigned>(std::max<int64_t>(blocks, 1)), kThreads, 0, ctx.stream>>>(
        static_cast<const From*>(a.x), static_cast<To*>(a.y), a.n);
    return cudaGetLastError();
}

}  // namespace

cudaError_t cast(const CastArgs& a, const LaunchContext& ctx) {
    switch (a.from) {
    case KN_FLOAT32:
        if (a.to == KN_FLOAT32) return launch<float, float>(a, ctx);
        return a.to == KN_INT32 ? launch<float, int32_t>(a, ctx) : launch<float, int64_t>(a, ctx);
    case KN_INT32:
        if (a.to == KN_INT32) return launch<int32_t, int32_t>(a, ctx);
        return a.to == KN_FLOAT32 ? launch<int32_t, float>(a, ctx) : launch<int32_t, int64_t>(a, ctx);
    case KN_INT64:
        if (a.to == KN_INT64) return launch<int64_t, int64_t>(a, ctx);
        return a.to == KN_FLOAT32 ? launch<int64_t, float>(a, ctx) : launch<int64_t, int32_t>(a, ctx);
    }
    return cudaErrorInvalidValue;
}

}  // namespace kn::cuda
