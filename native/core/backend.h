// backend.h: what a backend (CPU, CUDA, OpenCL) implements, and the argument records the C API
// hands it. The C API layer (api.cpp) validates every argument once, so a backend may assume:
//   - every buffer handle it receives is live, on this device, and large enough for the shapes;
//   - sizes are non-negative and the work is non-empty (n > 0 etc.), except where noted;
//   - calls on one device are serialised (the API holds the device's mutex), so a backend needs no
//     locking of its own for queues, kernel objects or scratch buffers.
// Memory handles are `void*`: a host pointer on the CPU, a device pointer on CUDA, a cl_mem on OpenCL.
// Errors are thrown as kn::Error (see error.h); the API layer turns them into a status.
// The kernels a device runs are listed once, in ops.h: each entry names an op and its record here.
#pragma once

#include "kernels.h"
#include "error.h"
#include "ops.h"

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace kn {

struct GemmArgs {
    bool trans_a, trans_b;
    int64_t m, n, k;           // m, n >= 1; k may be 0 (then C = beta * C); batch_count >= 1
    float alpha, beta;         // beta == 0: C must not be read
    const void* a; int64_t lda, stride_a;  // strides in elements; 0 = same matrix for every batch
    const void* b; int64_t ldb, stride_b;
    void* c;       int64_t ldc, stride_c;
    int64_t batch_count;
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
// neighbours merged wherever x stays linear across them. Element (i0..ir-1) of the contiguous y reads
// x[x_offset + sum i_d * x_strides[d]]. rank >= 1, n = product of dims >= 1, strides >= 0, and every
// element read lies inside x.
struct StridedCopyArgs {
    const void* x;
    void* y;              // contiguous, n elements; never x
    int32_t rank;
    int64_t dims[KN_MAX_RANK];
    int64_t x_strides[KN_MAX_RANK];
    int64_t x_offset;
    int64_t n;
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

// One device. The object is the kn_device handle of the C API (kn_device is declared as this type
// in api.cpp), lives as long as the process and is created by its backend's enumerate function.
class Device {
public:
    virtual ~Device() = default;

    kn_device_kind kind = KN_DEVICE_CPU;
    std::string name;          // "cpu", "cuda:0", "opencl:1"
    std::string description;   // what the hardware calls itself
    int64_t total_memory = 0;  // bytes
    int32_t capability_major = 0, capability_minor = 0;
    std::mutex mutex;          // held by the API layer around every call on this device

    // Memory. alloc never receives 0 bytes; free never receives null. Offsets are in bytes.
    virtual void* alloc(int64_t bytes) = 0;            // throws Error(KN_ERROR_OUT_OF_MEMORY, ...)
    virtual void free(void* memory) noexcept = 0;
    virtual void write(void* dst, int64_t dst_offset, const void* host_src, int64_t bytes) = 0;
    virtual void read(const void* src, int64_t src_offset, void* host_dst, int64_t bytes) = 0;
    virtual void copy(void* dst, int64_t dst_offset, const void* src, int64_t src_offset,
                      int64_t bytes) = 0;
    virtual void fill_f32(void* dst, int64_t offset_elements, int64_t count, float value) = 0;
    virtual void synchronize() = 0;
    // Frees the workspace a backend keeps between calls (reduction partials, split-K sums); the next
    // call that needs it allocates it again. kn_device_trim calls it with the caching allocator's trim.
    virtual void release_scratch() noexcept {}

    // Kernels: one virtual per entry of ops.h, `void name(const Args& args)`. A backend overrides them
    // all at once from the table (see ops.h); one that lacks an op keeps the default, which reports
    // KN_ERROR_NOT_SUPPORTED naming the device and the operation.
#define KN_DECLARE_OP(op, Args) \
    virtual void op(const Args&) { unsupported(op_message_name(#op)); }
    KN_OPS(KN_DECLARE_OP)
#undef KN_DECLARE_OP

protected:
    [[noreturn]] void unsupported(const std::string& op) const {
        throw Error(KN_ERROR_NOT_SUPPORTED, name + ": " + op + " is not implemented by this backend");
    }
};

// What each backend contributes to the device registry. `index_base` is the number of devices of
// that kind found so far (always 0 today); `reason` is set to why the backend has no devices when it
// returns none ("no CUDA driver found", ...), and left alone otherwise.
void enumerate_cpu_devices(std::vector<std::unique_ptr<Device>>& out);
#ifdef KN_WITH_CUDA
void enumerate_cuda_devices(std::vector<std::unique_ptr<Device>>& out, std::string& reason);
#endif
#ifdef KN_WITH_OPENCL
void enumerate_opencl_devices(std::vector<std::unique_ptr<Device>>& out, std::string& reason);
#endif

// True where the op's backward derivative is computed from the forward output y (see kernels.h).
inline bool unary_backward_uses_output(kn_unary_op op) {
    switch (op) {
        case KN_UNARY_EXP: case KN_UNARY_SQRT: case KN_UNARY_RSQRT: case KN_UNARY_RECIPROCAL:
        case KN_UNARY_TANH: case KN_UNARY_SIGMOID:
            return true;
        default:
            return false;
    }
}

}  // namespace kn
