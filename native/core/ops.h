// ops.h: the kernels a device runs, each declared once: its argument record and its line in the
// table KN_OPS. Each entry X(name, Args) yields
//   - the virtual `void name(const Args&)` of kn::Device (backend.h), which by default answers
//     KN_ERROR_NOT_SUPPORTED ("cuda:0: cross_entropy is not implemented by this backend");
//   - in each backend's device class, an override that calls that backend's launcher, which has one
//     name and shape per backend:
//         cpu::name(args)                         declared from this table in native/kernels/cpu/cpu_kernels.h
//         cuda::name(args, ctx[, options])        native/kernels/cuda/cuda_kernels.h, returns cudaError_t
//         opencl::name(args, queue)               native/kernels/opencl/opencl_backend.h
// The memory operations (alloc, free, read, write, copy, fill_f32, synchronize, release_scratch) are
// not kernels of this list: they stay hand-written in each device class.
//
// Adding an op (native/README.md walks through one):
//   1. its argument record and one line of the table, here;
//   2. the launcher `name` in each backend's kernels (the CPU's declared by the table, the GPU
//      backends' in their header above, beside their options and launch shapes), or,
//      for a GPU backend that does not have the kernel yet, the same line in its list below
//      (KN_OPS_NOT_IN_CUDA / KN_OPS_NOT_IN_OPENCL; the CPU is the reference and has every op);
//   3. the C API export that validates and calls `device.name(args)` (native/api), its tests, and the
//      C# side (bindings, Tensor method, gradient rule).
// Names end in the element type (_f32) as the C API's do; messages drop it (op_message_name).
#pragma once

#include "kernels.h"

#include <cstdint>
#include <cstring>
#include <string>
#include <type_traits>

namespace kn {

// ---- The argument records -----------------------------------------------------------------------
// What the C API layer hands a backend, validated (see backend.h for what a backend may assume).

struct GemmArgs {
    bool trans_a, trans_b;
    int64_t m, n, k;           // m, n >= 1; k may be 0 (then C = beta * C); batch_count >= 1
    float alpha, beta;         // beta == 0: C must not be read
    const void* a; int64_t lda, stride_a;  // strides in elements; 0 = same matrix for every batch
    const void* b; int64_t ldb, stride_b;
    void* c;       int64_t ldc, stride_c;
    int64_t batch_count;
};

// y = act(x op(w) + bias): the GEMM (a = x, b = w, c = y, alpha 1, beta 0, one batch) and its epilogue.
struct LinearArgs {
    GemmArgs gemm;
    const void* bias;        // n elements, or null
    bool activate;           // false for the identity (KN_UNARY_SCALE with alpha 1)
    kn_unary_op activation;
    float alpha;
};

// dz = dy * act'(x or y), dbias = column sums of dz; all m x n contiguous.
struct LinearBackwardArgs {
    kn_unary_op activation;
    float alpha;
    const void* x;   // null when the derivative uses y
    const void* y;   // null when the derivative uses x
    const void* dy;
    void* dz;        // may equal dy
    void* dbias;     // n elements, or null
    int64_t m, n;    // >= 1
};

struct UnaryArgs {
    kn_unary_op op;
    float alpha;
    const void* x;
    void* y;       // may equal x
    int64_t n;     // >= 1
};

struct UnaryBackwardArgs {
    kn_unary_op op;
    float alpha;
    const void* x;  // null when the op's derivative uses y (see kernels.h)
    const void* y;  // null when the op's derivative uses x
    const void* dy;
    void* dx;       // may equal dy
    int64_t n;
};

// The broadcast geometry of a binary op after normalisation: dimensions of size 1 dropped and
// adjacent dimensions merged wherever both operands stay linear across them. Element (i0..ir-1) of
// the contiguous output reads a[sum i_d * a_strides[d]] and b[sum i_d * b_strides[d]]; a stride of
// 0 is a broadcast dimension. Same-shape operands collapse to rank 1 with strides 1 and 1; a scalar
// operand has stride 0. rank >= 1, n = product of dims >= 1.
struct BroadcastGeometry {
    int32_t rank;
    int64_t dims[KN_MAX_RANK];
    int64_t a_strides[KN_MAX_RANK];
    int64_t b_strides[KN_MAX_RANK];
    int64_t n;
};

struct BinaryArgs {
    kn_binary_op op;
    BroadcastGeometry g;
    const void* a;
    const void* b;
    void* c;        // contiguous, n elements
};

struct BinaryBackwardArgs {
    kn_binary_op op;
    BroadcastGeometry g;
    const void* a;
    const void* b;
    const void* dc; // contiguous, n elements
    void* da;       // contiguous, n elements (the broadcast shape), or null
    void* db;       // contiguous, n elements, or null
};

// A strided copy (kn_strided_copy_f32) after normalisation: dimensions of size 1 dropped and
// neighbours merged wherever both x and y stay linear across them. Element (i0..ir-1) copies
// x[x_offset + sum i_d * x_strides[d]] to y[y_offset + sum i_d * y_strides[d]]. rank >= 1, n = product
// of dims >= 1, strides >= 0, every element read lies inside x, every element written inside y and no
// two writes land on one element. y_contiguous: y_strides are the row-major strides of dims (the
// fast path every backend keeps: y written in order from y_offset).
struct StridedCopyArgs {
    const void* x;
    void* y;              // never x
    int32_t rank;
    int64_t dims[KN_MAX_RANK];
    int64_t x_strides[KN_MAX_RANK];
    int64_t y_strides[KN_MAX_RANK];
    int64_t x_offset;
    int64_t y_offset;
    bool y_contiguous;
    int64_t n;
};

// Gather rows (kn_gather_rows_f32): y[i, :] = table[indices[i], :]. n, cols >= 1; every index has been
// checked to lie in [0, rows) by the API layer.
struct GatherRowsArgs {
    const void* table;    // [rows, cols]
    const void* indices;  // int64 [n]
    void* y;              // [n, cols]; never table
    int64_t n, cols;
};

// Scatter-add rows (kn_scatter_add_rows_f32) through a plan the API layer builds on the host from the
// checked indices: the positions stably sorted by target row, in one int64 device
// buffer of 2 segments + 1 + positions entries:
//     plan[0 .. segments)                    the distinct target rows, ascending (padding left out)
//     plan[segments .. 2 segments]           start of each row's positions (CSR offsets; the last = positions)
//     plan[2 segments + 1 ...]               the positions i of dy, grouped by row, ascending within a row
// so dtable[row_s, c] += dy[p, c] for the row's positions p in order: no two threads touch one element
// of dtable and the order of the additions is fixed (deterministic). segments, positions, cols >= 1.
struct ScatterAddRowsArgs {
    const void* dy;       // [n, cols]
    const void* plan;     // int64, as above
    void* dtable;         // [rows, cols], accumulated into
    int64_t segments, positions, cols;
};

struct ReduceArgs {
    kn_reduce_op op;
    const void* x;  // [outer, reduce, inner]
    void* y;        // [outer, inner] (float32 for reduce, int64 for argreduce)
    int64_t outer, reduce, inner;  // all >= 1 (the API layer answers reduce == 0 itself by a fill)
};

struct ArgReduceArgs {
    kn_argreduce_op op;
    const void* x;
    void* indices;  // int64
    int64_t outer, reduce, inner;  // all >= 1
};

struct SoftmaxArgs {
    const void* x;
    void* y;
    int64_t rows, cols;  // both >= 1
    bool log;
};

struct SoftmaxBackwardArgs {
    const void* y;
    const void* dy;
    void* dx;
    int64_t rows, cols;  // both >= 1
    bool log;
};

struct CrossEntropyArgs {
    const void* logits;  // [rows, cols]
    const void* labels;  // int64 [rows]
    void* losses;        // [rows]
    int64_t rows, cols;  // both >= 1
};

struct CrossEntropyBackwardArgs {
    const void* logits;
    const void* labels;
    const void* dlosses; // [rows]
    void* dlogits;       // [rows, cols]
    int64_t rows, cols;
};

struct DropoutArgs {
    const void* x;       // forward: x; backward: dy
    void* y;             // forward: y; backward: dx (may equal x)
    int64_t n;           // >= 1
    float p;             // 0 <= p < 1
    uint64_t seed, offset;
};

struct ClampArgs {
    const void* x;
    void* y;             // may equal x
    int64_t n;
    float low, high;
};

struct SgdArgs {
    void* param; const void* grad; void* velocity;  // velocity null when momentum == 0
    int64_t n;
    float lr, momentum, dampening, weight_decay;
    bool nesterov, first_step;
};

struct AdamArgs {
    void* param; const void* grad; void* m; void* v;
    int64_t n;
    float lr, beta1, beta2, eps, weight_decay;
    bool decoupled_weight_decay;
    int64_t step;        // >= 1
};


struct RmspropArgs {
    void* param; const void* grad; void* square_avg; void* velocity;  // velocity null when momentum == 0
    int64_t n;
    float lr, alpha, eps, weight_decay, momentum;
};

struct AdagradArgs {
    void* param; const void* grad; void* sum;
    int64_t n;
    float lr, eps, weight_decay;
};

// kn_{sgd,adam,rmsprop,adagrad}_step_many_f32: count tensors, each a per-tensor record (SgdArgs,
// AdamArgs, ...) with its own buffers and n >= 1 (the API drops empty ones) and the same
// hyper-parameters in every entry.
template <typename Tensor>
struct ManyArgs {
    const Tensor* tensors;
    int64_t count;       // >= 1
};
using SgdManyArgs = ManyArgs<SgdArgs>;
using AdamManyArgs = ManyArgs<AdamArgs>;
using RmspropManyArgs = ManyArgs<RmspropArgs>;
using AdagradManyArgs = ManyArgs<AdagradArgs>;

// Convolution geometry, validated by the API layer (see kernels.h for the layout): every size >= 1
// except pad (>= 0) and batch (>= 1: the API answers batch == 0 itself); out_height/out_width >= 1;
// in_channels and out_channels divisible by groups.
struct Conv2dGeometry {
    int64_t batch, in_channels, in_height, in_width;
    int64_t out_channels, kernel_height, kernel_width;
    int64_t stride_height, stride_width, pad_height, pad_width, dilation_height, dilation_width;
    int64_t groups;
    int64_t out_height, out_width;
};

struct Conv2dArgs {
    Conv2dGeometry g;
    const void* x;     // [batch, in_channels, in_height, in_width]
    const void* w;     // [out_channels, in_channels / groups, kernel_height, kernel_width]
    const void* bias;  // [out_channels] or null
    void* y;           // [batch, out_channels, out_height, out_width]
};

struct Conv2dBackwardDataArgs {
    Conv2dGeometry g;
    const void* dy;
    const void* w;
    void* dx;          // overwritten
};

struct Conv2dBackwardWeightsArgs {
    Conv2dGeometry g;
    const void* x;
    const void* dy;
    void* dw;          // overwritten
    void* dbias;       // overwritten, or null
};

// Pooling geometry: all sizes >= 1 except pad (0 <= 2 pad <= kernel); out sizes >= 1.
struct Pool2dGeometry {
    int64_t batch, channels, in_height, in_width;
    int64_t kernel_height, kernel_width, stride_height, stride_width, pad_height, pad_width;
    int64_t out_height, out_width;
    bool count_include_pad;
};

struct Pool2dArgs {
    kn_pool_op op;
    Pool2dGeometry g;
    const void* x;
    void* y;
    void* indices;     // int32 [batch, channels, out_height, out_width]; MAX only, may be null
};

struct Pool2dBackwardArgs {
    kn_pool_op op;
    Pool2dGeometry g;
    const void* dy;
    const void* indices;  // MAX: required; AVG: null
    void* dx;             // overwritten
};

struct BatchNormArgs {
    const void* x;
    void* y;
    const void* gamma;
    const void* beta;
    void* running_mean;   // null allowed when training (then not updated)
    void* running_var;
    void* save_mean;      // may be null
    void* save_invstd;    // may be null
    int64_t batch, channels, spatial;  // all >= 1
    float eps, momentum;
    bool training;
};

struct BatchNormBackwardArgs {
    const void* x;
    const void* dy;
    const void* gamma;
    const void* save_mean;
    const void* save_invstd;
    void* dx;             // may be null
    void* dgamma;
    void* dbeta;
    int64_t batch, channels, spatial;  // all >= 1
    bool training;
};

// An elementwise conversion (kn_cast): y[i] = (to) x[i], the rules of kernels.h (kernels/cast_rules.h
// writes them once for the CPU and CUDA). n >= 1, from and to valid, y never x.
struct CastArgs {
    kn_dtype from, to;
    const void* x;
    void* y;
    int64_t n;
};

// The recurrent cells (kn_lstm_cell_f32, kn_gru_cell_f32 and their backward passes; kernels.h has the
// math and the saved layouts). batch, hidden >= 1; mask null = every row updated; no output aliases
// another operand.
struct LstmCellArgs {
    const void* gates;    // [batch, 4 hidden]: pre-activations i, f, g, o
    const void* c_prev;   // [batch, hidden]
    const void* h_prev;   // [batch, hidden]
    const void* mask;     // [batch] or null
    void* h;              // [batch, hidden]
    void* c;              // [batch, hidden]
    void* saved;          // [batch, 5 hidden]: i, f, g, o, tanh(c); or null
    int64_t batch, hidden;
};

struct LstmCellBackwardArgs {
    const void* saved;    // as the forward wrote it
    const void* c_prev;
    const void* mask;     // or null
    const void* dh;       // [batch, hidden] or null (zero)
    const void* dc;       // [batch, hidden] or null (zero)
    void* dgates;         // [batch, 4 hidden]
    void* dc_prev;        // [batch, hidden] or null
    void* dh_prev;        // [batch, hidden] or null (the direct path: dh on masked rows, else 0)
    int64_t batch, hidden;
};

struct GruCellArgs {
    const void* x_gates;  // [batch, 3 hidden]: r, z, n
    const void* h_gates;  // [batch, 3 hidden]
    const void* h_prev;   // [batch, hidden]
    const void* mask;     // [batch] or null
    void* h;              // [batch, hidden]
    void* saved;          // [batch, 3 hidden]: r, z, n; or null
    int64_t batch, hidden;
};

struct GruCellBackwardArgs {
    const void* saved;    // as the forward wrote it
    const void* h_gates;
    const void* h_prev;
    const void* mask;     // or null
    const void* dh;       // [batch, hidden]
    void* dx_gates;       // [batch, 3 hidden]
    void* dh_gates;       // [batch, 3 hidden]
    void* dh_prev;        // [batch, hidden] or null
    int64_t batch, hidden;
};

}  // namespace kn

// ---- The table ----------------------------------------------------------------------------------
// The comment names each op's kernel family: native/kernels/cpu/<family>.cpp, cuda/<family>.cu and
// opencl/<family>.cl with its launcher opencl/<family>_launch.cpp ("a | b.cl": the OpenCL kernels live in b.cl).

#define KN_OPS(X) \
    X(gemm_f32, GemmArgs)                                      /* gemm                       */ \
    X(linear_f32, LinearArgs)                                  /* gemm                       */ \
    X(linear_backward_f32, LinearBackwardArgs)                 /* gemm (CPU: linear.cpp)      */ \
    X(unary_f32, UnaryArgs)                                    /* elementwise                */ \
    X(unary_backward_f32, UnaryBackwardArgs)                   /* elementwise                */ \
    X(binary_f32, BinaryArgs)                                  /* elementwise                */ \
    X(binary_backward_f32, BinaryBackwardArgs)                 /* elementwise                */ \
    X(strided_copy_f32, StridedCopyArgs)                       /* layout                     */ \
    X(reduce_f32, ReduceArgs)                                  /* reduce                     */ \
    X(argreduce_f32, ArgReduceArgs)                            /* reduce                     */ \
    X(gather_rows_f32, GatherRowsArgs)                         /* gather                     */ \
    X(scatter_add_rows_f32, ScatterAddRowsArgs)                /* gather                     */ \
    X(softmax_f32, SoftmaxArgs)                                /* softmax                    */ \
    X(softmax_backward_f32, SoftmaxBackwardArgs)               /* softmax                    */ \
    X(cross_entropy_f32, CrossEntropyArgs)                     /* training | softmax.cl      */ \
    X(cross_entropy_backward_f32, CrossEntropyBackwardArgs)    /* training | softmax.cl      */ \
    X(dropout_f32, DropoutArgs)                                /* training | elementwise.cl  */ \
    X(dropout_backward_f32, DropoutArgs)                       /* training | elementwise.cl  */ \
    X(clamp_f32, ClampArgs)                                    /* training | elementwise.cl  */ \
    X(sgd_step_f32, SgdArgs)                                   /* training | elementwise.cl  */ \
    X(sgd_step_many_f32, SgdManyArgs)                          /* training | elementwise.cl  */ \
    X(adam_step_f32, AdamArgs)                                 /* training | elementwise.cl  */ \
    X(adam_step_many_f32, AdamManyArgs)                        /* training | elementwise.cl  */ \
    X(rmsprop_step_f32, RmspropArgs)                           /* training | elementwise.cl  */ \
    X(rmsprop_step_many_f32, RmspropManyArgs)                  /* training | elementwise.cl  */ \
    X(adagrad_step_f32, AdagradArgs)                           /* training | elementwise.cl  */ \
    X(adagrad_step_many_f32, AdagradManyArgs)                  /* training | elementwise.cl  */ \
    X(conv2d_f32, Conv2dArgs)                                  /* conv                       */ \
    X(conv2d_backward_data_f32, Conv2dBackwardDataArgs)        /* conv                       */ \
    X(conv2d_backward_weights_f32, Conv2dBackwardWeightsArgs)  /* conv                       */ \
    X(pool2d_f32, Pool2dArgs)                                  /* pool                       */ \
    X(pool2d_backward_f32, Pool2dBackwardArgs)                 /* pool                       */ \
    X(batch_norm_f32, BatchNormArgs)                           /* batch_norm                 */ \
    X(batch_norm_backward_f32, BatchNormBackwardArgs)          /* batch_norm                 */ \
    X(cast, CastArgs)                                          /* cast                       */ \
    X(lstm_cell_f32, LstmCellArgs)                             /* recurrent                  */ \
    X(lstm_cell_backward_f32, LstmCellBackwardArgs)            /* recurrent                  */ \
    X(gru_cell_f32, GruCellArgs)                               /* recurrent                  */ \
    X(gru_cell_backward_f32, GruCellBackwardArgs)              /* recurrent                  */

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
