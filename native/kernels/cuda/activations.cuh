// activations.cuh: the pointwise activations that more than one CUDA kernel family evaluates (the
// elementwise unary op and the fused recurrent cells), written once so both round the same way.
#pragma once

#include <cuda_runtime.h>

#include <cmath>

namespace kn::cuda {

// The logistic sigmoid for any float: e^-|x| <= 1 never overflows, and for x < 0 the result
// e^x / (1 + e^x) keeps its relative accuracy down into the subnormals (1 / (1 + e^-x) would flush
// to 0 below x = -88).
__device__ __forceinline__ float stable_sigmoid(float x) {
    const float e = expf(-fabsf(x)), s = 1.0f / (1.0f + e);
    return x >= 0.0f ? s : e * s;
}

}  // namespace kn::cuda
