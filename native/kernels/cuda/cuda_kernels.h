// cuda_kernels.h: the host-side launchers of the CUDA kernels (native/kernels/cuda/*.cu, one kernel
// family per file), one per op of native/core/ops.h under the op's name, called by CudaDevice
// (native/kernels/cuda/cuda_device.cpp) with device pointers and arguments the C API has validated
// (see backend.h for what a backend may assume).
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

// Device-owned scratch memory, for the launchers whose plan needs a workspace (two-pass reductions,
// split-K weight gradients, batch-norm partial statistics). CudaDevice keeps one buffer, grown on
// demand; the emulator's tests and native/dev hand out their own.
class ScratchSource {
public:
    // At least `bytes` (> 0) bytes of device memory, 16-byte aligned, for the kernels queued on the
    // stream until the next request (the stream runs in order; a source that must reallocate waits
    // for the queued kernels first). Throws kn::Error when it cannot allocate.
    virtual void* get(int64_t bytes) = 0;

protected:
    ~ScratchSource() = default;
};

// What every launcher needs to know about the device it queues work on.
struct LaunchContext {
    cudaStream_t stream = nullptr;  // the device's one in-order, non-blocking stream
    int sm_count = 1;               // streaming multiprocessors: sizes grid-stride grids and split reductions
    ScratchSource* scratch_source = nullptr;  // required only by the launchers that say so

    // Scratch for one launch: null for 0 bytes, and null without a scratch_source (a launcher whose
    // plan needs scratch then returns cudaErrorInvalidValue).
    void* scratch(int64_t bytes) const { return bytes > 0 && scratch_source ? scratch_source->get(bytes) : nullptr; }
};

// ---- The ops of native/core/ops.h: cuda::<name>(args, ctx[, options]) -------------------------------
// CudaDevice forwards each op of the table to the launcher of the same name; an op in ops.h's
// KN_OPS_NOT_IN_CUDA has no launcher yet, and the device answers KN_ERROR_NOT_SUPPORTED for it.
// Options exist for the emulator's tests and native/dev, which run every path on any shape;
// CudaDevice passes the defaults (the launchers then plan from the shape and ctx.sm_count).
KN_OPS_NOT_IN_CUDA(KN_OP_NOT_IMPLEMENTED)

// gemm.cu: C = alpha * op(A) * op(B) + beta * C over strided batches.
cudaError_t gemm_f32(const GemmArgs& args, const LaunchContext& ctx);
// ... and the dense layer: the GEMM then one bias + activation pass (backward: the activation's
// backward, then the column sums).
cudaError_t linear_f32(const LinearArgs& args, const LaunchContext& ctx);
cudaError_t linear_backward_f32(const LinearBackwardArgs& args, const LaunchContext& ctx);

// elementwise.cu. fill_f32 is the device's memory fill (not an op of the table).
cudaError_t fill_f32(float* dst, int64_t count, float value, const LaunchContext& ctx);
cudaError_t unary_f32(const UnaryArgs& args, const LaunchContext& ctx);
cudaError_t unary_backward_f32(const UnaryBackwardArgs& args, const LaunchContext& ctx);
// y = op(y + bias) with bias broadcast over the rows of a rows x cols y (kn_linear_f32's epilogue).
cudaError_t bias_unary_f32(float* y, const float* bias, int64_t rows, int64_t cols, kn_unary_op op, float alpha,
                           const LaunchContext& ctx);
cudaError_t binary_f32(const BinaryArgs& args, const LaunchContext& ctx);
cudaError_t binary_backward_f32(const BinaryBackwardArgs& args, const LaunchContext& ctx);

// layout.cu: the strided copy (permute, transpose, slices, expands).
cudaError_t strided_copy_f32(const StridedCopyArgs& args, const LaunchContext& ctx);

// gather.cu: gather rows and the deterministic scatter-add (through the API layer's plan).
cudaError_t gather_rows_f32(const GatherRowsArgs& args, const LaunchContext& ctx);
cudaError_t scatter_add_rows_f32(const ScatterAddRowsArgs& args, const LaunchContext& ctx);

// cast.cu: kn_cast between float32, int32 and int64 (the rules of kernels/cast_rules.h).
cudaError_t cast(const CastArgs& args, const LaunchContext& ctx);

// reduce.cu. Large reductions over few outputs run in two passes through ctx.scratch (required when
// the *_scratch_bytes plan is not 0). The plan depends only on the arguments and ctx.sm_count, so the
// two calls always agree, and the reduction order (hence the result) is the same on every run on the
// same device.
int64_t reduce_scratch_bytes(const ReduceArgs& args, const LaunchContext& ctx);
cudaError_t reduce_f32(const ReduceArgs& args, const LaunchContext& ctx);
int64_t argreduce_scratch_bytes(const ArgReduceArgs& args, const LaunchContext& ctx);
cudaError_t argreduce_f32(const ArgReduceArgs& args, const LaunchContext& ctx);

// softmax.cu
cudaError_t softmax_f32(const SoftmaxArgs& args, const LaunchContext& ctx);
cudaError_t softmax_backward_f32(const SoftmaxBackwardArgs& args, const LaunchContext& ctx);

// training.cu: losses, dropout, clamp, optimizer steps.
cudaError_t cross_entropy_f32(const CrossEntropyArgs& args, const LaunchContext& ctx);
cudaError_t cross_entropy_backward_f32(const CrossEntropyBackwardArgs& args, const LaunchContext& ctx);
cudaError_t dropout_f32(const DropoutArgs& args, const LaunchContext& ctx);
// The backward pass is the forward map applied to dy (kernels.h): keep(i) ? dy[i] / (1 - p) : 0.
inline cudaError_t dropout_backward_f32(const DropoutArgs& args, const LaunchContext& ctx) { return dropout_f32(args, ctx); }
cudaError_t clamp_f32(const ClampArgs& args, const LaunchContext& ctx);
cudaError_t sgd_step_f32(const SgdArgs& args, const LaunchContext& ctx);
cudaError_t adam_step_f32(const AdamArgs& args, const LaunchContext& ctx);
cudaError_t rmsprop_step_f32(const RmspropArgs& args, const LaunchContext& ctx);
cudaError_t adagrad_step_f32(const AdagradArgs& args, const LaunchContext& ctx);
// The kn_*_step_many_f32 calls: all tensors in one launch per group of up to 64 (their pointers as
// kernel parameters), each element through the same code as the per-tensor kernel.
cudaError_t sgd_step_many_f32(const SgdManyArgs& args, const LaunchContext& ctx);
cudaError_t adam_step_many_f32(const AdamManyArgs& args, const LaunchContext& ctx);
cudaError_t rmsprop_step_many_f32(const RmspropManyArgs& args, const LaunchContext& ctx);
cudaError_t adagrad_step_many_f32(const AdagradManyArgs& args, const LaunchContext& ctx);

// conv.cu: 2-D convolution (NCHW) forward, backward-data, backward-weights (+ bias gradient).
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
cudaError_t conv2d_f32(const Conv2dArgs& args, const LaunchContext& ctx, const Conv2dOptions& options = {});
cudaError_t conv2d_backward_data_f32(const Conv2dBackwardDataArgs& args, const LaunchContext& ctx,
                                     const Conv2dOptions& options = {});
// Split reductions (weights and bias gradients) go through ctx.scratch, as in reduce.cu.
int64_t conv2d_backward_weights_scratch_bytes(const Conv2dBackwardWeightsArgs& args, const LaunchContext& ctx,
                                              const Conv2dOptions& options = {});
cudaError_t conv2d_backward_weights_f32(const Conv2dBackwardWeightsArgs& args, const LaunchContext& ctx,
                                        const Conv2dOptions& options = {});

// pool.cu: max / average pooling forward (one thread per output) and backward (one thread per input,
// gathering from the windows that cover it).
struct Pool2dOptions {
    bool wide_index = false;  // int64 index arithmetic even where int32 suffices
};
cudaError_t pool2d_f32(const Pool2dArgs& args, const LaunchContext& ctx, const Pool2dOptions& options = {});
cudaError_t pool2d_backward_f32(const Pool2dBackwardArgs& args, const LaunchContext& ctx,
                                const Pool2dOptions& options = {});

// batch_norm.cu: training / inference forward and backward. Per-channel statistics are reduced in
// chunks whose partial sums (and the per-channel coefficients of the elementwise pass) live in
// ctx.scratch (required), sized as *_scratch_bytes says. chunks: 0 planned, else chunks per channel.
struct BatchNormOptions {
    int64_t chunks = 0;
    bool wide_index = false;
};
int64_t batch_norm_scratch_bytes(const BatchNormArgs& args, const LaunchContext& ctx, const BatchNormOptions& options = {});
cudaError_t batch_norm_f32(const BatchNormArgs& args, const LaunchContext& ctx, const BatchNormOptions& options = {});
int64_t batch_norm_backward_scratch_bytes(const BatchNormBackwardArgs& args, const LaunchContext& ctx,
                                          const BatchNormOptions& options = {});
cudaError_t batch_norm_backward_f32(const BatchNormBackwardArgs& args, const LaunchContext& ctx,
                                    const BatchNormOptions& options = {});

// recurrent.cu: the LSTM and GRU cell steps (one kernel each way, one thread per cell).
cudaError_t lstm_cell_f32(const LstmCellArgs& args, const LaunchContext& ctx);
cudaError_t lstm_cell_backward_f32(const LstmCellBackwardArgs& args, const LaunchContext& ctx);
cudaError_t gru_cell_f32(const GruCellArgs& args, const LaunchContext& ctx);
cudaError_t gru_cell_backward_f32(const GruCellBackwardArgs& args, const LaunchContext& ctx);

}  // namespace kn::cuda
