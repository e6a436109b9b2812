// cuda_kernels.h: the host-side launchers of the CUDA kernels (native/kernels/cuda/*.cu, one kernel
// family per file), called by CudaDevice (native/kernels/cuda/cuda_device.cpp) with device pointers and
// arguments the C API has validated (see backend.h for what a backend may assume).
//
// This header is read by both nvcc and the host C++ compiler, so it holds no device code: only
// declarations in terms of the CUDA runtime API's types.
//
// Every launcher queues its kernels on ctx.stream and never synchronizes. After each launch it
// asks cudaGetLastError and returns the first failure (cudaSuccess otherwise); the caller turns a
// failure into a kn::Error. Errors of the kernels themselves surface at the next synchronizing call.
#pragma once

#include "backend.h"

#include <cuda_runtime_api.h>

#include <cstdint>

namespace kn::cuda {

// What every launcher needs to know about the device it queues work on.
struct LaunchContext {
    cudaStream_t stream;  // the device's one in-order, non-blocking stream
    int sm_count;         // streaming multiprocessors: sizes grid-stride grids and split reductions
};

// gemm.cu: C = alpha * op(A) * op(B) + beta * C over strided batches.
cudaError_t launch_gemm(const GemmArgs& args, const LaunchContext& ctx);

// elementwise.cu
cudaError_t launch_fill(float* dst, int64_t count, float value, const LaunchContext& ctx);
cudaError_t launch_unary(const UnaryArgs& args, const LaunchContext& ctx);
cudaError_t launch_unary_backward(const UnaryBackwardArgs& args, const LaunchContext& ctx);
cudaError_t launch_binary(const BinaryArgs& args, const LaunchContext& ctx);
cudaError_t launch_binary_backward(const BinaryBackwardArgs& args, const LaunchContext& ctx);

// reduce.cu. Large reductions over few outputs run in two passes through a scratch buffer that the
// device owns: ask for its size first (0 when one pass suffices), then launch with a buffer of at
// least that many bytes (16-byte aligned; may be null when the size was 0). The plan depends only
// on the arguments and ctx.sm_count, so the two calls always agree, and the reduction order (hence
// the result) is the same on every run on the same device.
int64_t reduce_scratch_bytes(const ReduceArgs& args, const LaunchContext& ctx);
cudaError_t launch_reduce(const ReduceArgs& args, void* scratch, const LaunchContext& ctx);
int64_t argreduce_scratch_bytes(const ArgReduceArgs& args, const LaunchContext& ctx);
cudaError_t launch_argreduce(const ArgReduceArgs& args, void* scratch, const LaunchContext& ctx);

// softmax.cu
cudaError_t launch_softmax(const SoftmaxArgs& args, const LaunchContext& ctx);
cudaError_t launch_softmax_backward(const SoftmaxBackwardArgs& args, const LaunchContext& ctx);

// training.cu: losses, dropout (forward and backward share one launcher), clamp, optimizer steps.
cudaError_t launch_cross_entropy(const CrossEntropyArgs& args, const LaunchContext& ctx);
cudaError_t launch_cross_entropy_backward(const CrossEntropyBackwardArgs& args, const LaunchContext& ctx);
cudaError_t launch_dropout(const DropoutArgs& args, const LaunchContext& ctx);
cudaError_t launch_clamp(const ClampArgs& args, const LaunchContext& ctx);
cudaError_t launch_sgd_step(const SgdArgs& args, const LaunchContext& ctx);
cudaError_t launch_adam_step(const AdamArgs& args, const LaunchContext& ctx);
cudaError_t launch_rmsprop_step(const RmspropArgs& args, const LaunchContext& ctx);
cudaError_t launch_adagrad_step(const AdagradArgs& args, const LaunchContext& ctx);

// conv.cu: 2-D convolution (NCHW) forward, backward-data, backward-weights (+ bias gradient).
// Options exist for the emulator's tests and native/dev/conv.cu, which run every path on any shape;
// CudaDevice passes the defaults (the launchers then plan from the shape and ctx.sm_count).
enum class Conv2dAlgorithm {
    automatic,      // implicit GEMM, or the direct kernels where the GEMM degenerates (depthwise, tiny groups)
    direct,         // one thread per output (forward, backward-data) / block reductions (backward-weights)
    implicit_gemm,  // register-blocked implicit GEMM; falls back to direct when indices need int64
};
struct Conv2dOptions {
    Conv2dAlgorithm algorithm = Conv2dAlgorithm::automatic;
    int gemm_tile = 0;        // implicit GEMM block tile: 0 planned, 1 = 64x64, 2 = 64x128, 3 = 128x128
    int64_t split = 0;        // backward-weights: chunks of the reduction (split-K); 0 planned
    bool wide_index = false;  // direct kernels: int64 index arithmetic even where int32 suffices
};
cudaError_t launch_conv2d(const Conv2dArgs& args, const LaunchContext& ctx, const Conv2dOptions& options = {});
cudaError_t launch_conv2d_backward_data(const Conv2dBackwardDataArgs& args, const LaunchContext& ctx,
                                        const Conv2dOptions& options = {});
// Split reductions (weights and bias gradients) go through a scratch buffer the device owns, as in
// reduce.cu: ask for its size (0: none needed), then launch with at least that many bytes.
int64_t conv2d_backward_weights_scratch_bytes(const Conv2dBackwardWeightsArgs& args, const LaunchContext& ctx,
                                              const Conv2dOptions& options = {});
cudaError_t launch_conv2d_backward_weights(const Conv2dBackwardWeightsArgs& args, void* scratch,
                                           const LaunchContext& ctx, const Conv2dOptions& options = {});

// pool.cu: max / average pooling forward (one thread per output) and backward (one thread per input,
// gathering from the windows that cover it). wide_index as in Conv2dOptions.
cudaError_t launch_pool2d(const Pool2dArgs& args, const LaunchContext& ctx, bool wide_index = false);
cudaError_t launch_pool2d_backward(const Pool2dBackwardArgs& args, const LaunchContext& ctx, bool wide_index = false);

// batch_norm.cu: training / inference forward and backward. Per-channel statistics are reduced in
// chunks whose partial sums (and the per-channel coefficients of the elementwise pass) live in
// device-owned scratch: ask for its size first, as above. chunks: 0 planned, else chunks per channel.
struct BatchNormOptions {
    int64_t chunks = 0;
    bool wide_index = false;
};
int64_t batch_norm_scratch_bytes(const BatchNormArgs& args, const LaunchContext& ctx, const BatchNormOptions& options = {});
cudaError_t launch_batch_norm(const BatchNormArgs& args, void* scratch, const LaunchContext& ctx,
                              const BatchNormOptions& options = {});
int64_t batch_norm_backward_scratch_bytes(const BatchNormBackwardArgs& args, const LaunchContext& ctx,
                                          const BatchNormOptions& options = {});
cudaError_t launch_batch_norm_backward(const BatchNormBackwardArgs& args, void* scratch, const LaunchContext& ctx,
                                       const BatchNormOptions& options = {});

}  // namespace kn::cuda
