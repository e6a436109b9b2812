// ops.h: the one list of the kernels a device runs. Each entry X(name, Args) yields
//   - the virtual `void name(const Args&)` of kn::Device (backend.h), which by default answers
//     KN_ERROR_NOT_SUPPORTED ("cuda:0: cross_entropy is not implemented by this backend");
//   - in each backend's device class, an override that calls that backend's launcher, which has one
//     name and shape per backend:
//         cpu::name(args)                         native/kernels/cpu/cpu_kernels.h
//         cuda::name(args, ctx[, options])        native/kernels/cuda/cuda_kernels.h, returns cudaError_t
//         opencl::name(args, queue)               native/kernels/opencl/opencl_backend.h
// The memory operations (alloc, free, read, write, copy, fill_f32, synchronize, release_scratch) are
// not kernels of this list: they stay hand-written in each device class.
//
// Adding an op:
//   1. its argument record in backend.h and one line here;
//   2. the launcher `name` in each backend's kernels (declared in the backend's header above), or,
//      for a GPU backend that does not have the kernel yet, the same line in its list below
//      (KN_OPS_NOT_IN_CUDA / KN_OPS_NOT_IN_OPENCL; the CPU is the reference and has every op);
//   3. the C API export that validates and calls `device.name(args)` (native/api), its tests, and the
//      C# side (bindings, Tensor method, gradient rule).
// Names end in the element type (_f32) as the C API's do; messages drop it (op_message_name).
#pragma once

#include <cstring>
#include <string>
#include <type_traits>

#define KN_OPS(X)                                                 \
    X(gemm_f32, GemmArgs)                                         \
    X(unary_f32, UnaryArgs)                                       \
    X(unary_backward_f32, UnaryBackwardArgs)                      \
    X(binary_f32, BinaryArgs)                                     \
    X(binary_backward_f32, BinaryBackwardArgs)                    \
    X(strided_copy_f32, StridedCopyArgs)                          \
    X(reduce_f32, ReduceArgs)                                     \
    X(argreduce_f32, ArgReduceArgs)                               \
    X(softmax_f32, SoftmaxArgs)                                   \
    X(softmax_backward_f32, SoftmaxBackwardArgs)                  \
    X(cross_entropy_f32, CrossEntropyArgs)                        \
    X(cross_entropy_backward_f32, CrossEntropyBackwardArgs)       \
    X(dropout_f32, DropoutArgs)                                   \
    X(dropout_backward_f32, DropoutArgs)                          \
    X(clamp_f32, ClampArgs)                                       \
    X(sgd_step_f32, SgdArgs)                                      \
    X(adam_step_f32, AdamArgs)                                    \
    X(rmsprop_step_f32, RmspropArgs)                              \
    X(adagrad_step_f32, AdagradArgs)                              \
    X(conv2d_f32, Conv2dArgs)                                     \
    X(conv2d_backward_data_f32, Conv2dBackwardDataArgs)           \
    X(conv2d_backward_weights_f32, Conv2dBackwardWeightsArgs)     \
    X(pool2d_f32, Pool2dArgs)                                     \
    X(pool2d_backward_f32, Pool2dBackwardArgs)                    \
    X(batch_norm_f32, BatchNormArgs)                              \
    X(batch_norm_backward_f32, BatchNormBackwardArgs)

// The ops a GPU backend has no launcher for yet (none today), as X(name, Args) lines like the table's.
// Its device answers KN_ERROR_NOT_SUPPORTED for them ("opencl:0: clamp is not implemented by this
// backend"), which the self-test's cases written with expect_ok_or_skip count as skipped on that
// device and the others as failed. An op that a backend lacks and that is not listed here does not
// compile, so no backend loses an op silently.
#define KN_OPS_NOT_IN_CUDA(X)
#define KN_OPS_NOT_IN_OPENCL(X)

namespace kn {

// What a backend's launcher lookup finds for an op in its KN_OPS_NOT_IN_* list: a function
// template that takes the op's arguments (and whatever the backend passes after them) and returns
// this marker. A real launcher is a plain function, which overload resolution prefers, so listing an
// op that has a launcher changes nothing; the forwarders test the result type (op_not_implemented).
struct OpNotImplemented {};
#define KN_OP_NOT_IMPLEMENTED(op, Args)                                    \
    template <typename... Rest>                                            \
    ::kn::OpNotImplemented op(const Args&, const Rest&...) { return {}; }

template <typename LauncherResult>
constexpr bool op_not_implemented = std::is_same_v<LauncherResult, OpNotImplemented>;

// The op as messages name it: the table's name without the element type ("cross_entropy_f32" ->
// "cross_entropy"), as the C API's messages and the backends' errors have always said.
inline std::string op_message_name(const char* op) {
    const size_t n = std::strlen(op);
    return n > 4 && std::strcmp(op + n - 4, "_f32") == 0 ? std::string(op, n - 4) : std::string(op);
}

}  // namespace kn
