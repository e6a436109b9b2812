// opencl_backend.h: what the pieces of the OpenCL backend share.
//   opencl_device.cpp      the kn::Device face: what the device is, enumeration, the forwarders of ops.h
//   opencl_queue.cpp       Queue: the context, the in-order command queue, memory, scratch, launching
//   opencl_program.{h,cpp} the tunables and the program built from the embedded .cl files
//   <family>_launch.cpp    the launchers of one kernel family, beside its <family>.cl
// A launcher is `void opencl::<op>(const Args&, Queue&)` under the op's name in native/core/ops.h; it
// picks its kernels, binds their arguments and enqueues them, never waiting.
#pragma once

#include "backend.h"
#include "opencl_loader.h"
#include "opencl_program.h"
#include "ops.h"

#include <cstdint>
#include <string>

namespace kn::opencl {

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
inline size_t round_up(int64_t n, int64_t multiple) { return static_cast<size_t>(ceil_div(n, multiple) * multiple); }

// Memory handles are cl_mem (cast to void*, as backend.h says), always used at offset 0.
inline cl_mem mem(const void* p) { return static_cast<cl_mem>(const_cast<void*>(p)); }

// GPUs such as NVIDIA's cap the y and z NDRange dimensions at 65535 work-groups.
constexpr int64_t kMaxBatchPerLaunch = 65535;

// The device-owned scratch buffers, one per use, so that the buffers of one call never alias.
enum ScratchSlot {
    kScratchReduceValues,     // two-pass reductions: the partial values
    kScratchArgreduceIndices, // two-pass index reductions: the partial indices
    kScratchConvPartials,     // conv2d weight gradient: the split-K partial sums
    kScratchBatchNormMean,    // batch norm: the statistics nobody asked to keep
    kScratchBatchNormInvstd,
    kScratchSlots
};

// One device's context and in-order command queue, and what enqueuing on it needs. Calls on one
// device are serialised by the API (backend.h), so nothing here locks. The context and queue are
// created at first use, so merely listing devices stays cheap.
class Queue {
public:
    Queue(const Api& cl, cl_platform_id platform, cl_device_id device, const std::string& device_name,
          const Tuning& tuning, cl_uint compute_units, cl_ulong max_alloc);
    ~Queue();
    Queue(const Queue&) = delete;
    Queue& operator=(const Queue&) = delete;

    const std::string& device_name() const { return device_name_; }
    const Tuning& tuning() const { return tuning_; }
    cl_uint compute_units() const { return compute_units_; }

    // Memory (byte offsets; fill in float elements).
    cl_mem alloc(int64_t bytes);
    void free(cl_mem memory) noexcept;
    void write(cl_mem dst, int64_t dst_offset, const void* host_src, int64_t bytes);
    void read(cl_mem src, int64_t src_offset, void* host_dst, int64_t bytes);
    void copy(cl_mem dst, int64_t dst_offset, cl_mem src, int64_t src_offset, int64_t bytes);
    void fill_f32(cl_mem dst, int64_t offset_elements, int64_t count, float value);
    void finish();

    // A device-owned scratch buffer of at least `bytes`, grown on demand and kept. Reusing it across
    // calls is safe: the queue is in order and calls on a device are serialised by the API.
    cl_mem scratch(ScratchSlot slot, int64_t bytes);
    void release_scratch() noexcept;

    // Kernels: the cached kernel `kname`, its arguments, and the launch shapes the launchers share.
    cl_kernel kernel(const std::string& kname);

    template <typename T>
    void set_arg(cl_kernel kern, const char* kname, cl_uint index, const T& value) {
        const cl_int err = cl_.SetKernelArg(kern, index, sizeof(T), &value);
        if (err != CL_SUCCESS) check(err, "clSetKernelArg", cat(kname, " argument ", index).c_str());
    }

    template <typename... T>
    void set_args(cl_kernel kern, const char* kname, const T&... values) {
        cl_uint index = 0;
        (set_arg(kern, kname, index++, values), ...);
    }

    void launch(cl_kernel kern, const char* kname, cl_uint dims, const size_t* global, const size_t* local);
    // Elementwise kernels: one work-item per EW_VEC elements, rounded up to the work-group size.
    void launch_elementwise(cl_kernel kern, const char* kname, int64_t n);
    // One work-item per element (or row), the global size rounded up to the work-group size.
    void launch_1d(cl_kernel kern, const char* kname, int64_t n);
    // `groups` work-groups of `work_group` work-items along x.
    void launch_groups(cl_kernel kern, const char* kname, int64_t groups, int work_group);
    // One work-item per element of `planes` planes of plane_len elements: x = position in the plane,
    // y = plane. The work-group spans min(plane_len, elementwise_wg) positions (a power of two) and
    // as many planes as fill it, so short planes (1-D batch norm) do not idle a work-group; the
    // argument first_plane_arg receives each launch's first plane (y is split at 65535 groups).
    void launch_planes(cl_kernel kern, const char* kname, cl_uint first_plane_arg, int64_t plane_len, int64_t planes);

    // Throws for a failed OpenCL call (check_call with this device's name).
    void check(cl_int err, const char* call, const char* what = nullptr) const {
        check_call(err, device_name_, call, what);
    }

private:
    void ensure_queue();

    const Api& cl_;
    cl_platform_id platform_;
    cl_device_id device_;
    std::string device_name_;
    Tuning tuning_;
    cl_uint compute_units_;
    cl_ulong max_alloc_;
    cl_context context_ = nullptr;
    cl_command_queue queue_ = nullptr;
    Program program_;
    cl_mem scratch_[kScratchSlots] = {};
    int64_t scratch_bytes_[kScratchSlots] = {};
};

// ---- The ops of native/core/ops.h: opencl::<name>(args, queue) ---------------------------------------
// OpenClDevice forwards each op of the table to the launcher of the same name; an op in ops.h's
// KN_OPS_NOT_IN_OPENCL has no launcher yet, and the device answers KN_ERROR_NOT_SUPPORTED for it.
KN_OPS_NOT_IN_OPENCL(KN_OP_NOT_IMPLEMENTED)

// gemm_launch.cpp (gemm.cl)
void gemm_f32(const GemmArgs& args, Queue& q);
// ... and the dense layer: the GEMM then one bias + activation pass (backward: the activation's
// backward, then the column sums).
void linear_f32(const LinearArgs& args, Queue& q);
void linear_backward_f32(const LinearBackwardArgs& args, Queue& q);
// elementwise_launch.cpp (elementwise.cl): unary and binary ops, dropout, clamp, optimizer steps
void unary_f32(const UnaryArgs& args, Queue& q);
void unary_backward_f32(const UnaryBackwardArgs& args, Queue& q);
// y = op(y + bias) with bias broadcast over the rows of a rows x cols y (kn_linear_f32's epilogue).
void bias_unary_f32(void* y, const void* bias, int64_t rows, int64_t cols, kn_unary_op op, float alpha, Queue& q);
void binary_f32(const BinaryArgs& args, Queue& q);
void binary_backward_f32(const BinaryBackwardArgs& args, Queue& q);
// layout_launch.cpp (layout.cl): the strided copy
void strided_copy_f32(const StridedCopyArgs& args, Queue& q);
void dropout_f32(const DropoutArgs& args, Queue& q);
// The backward pass is the forward map applied to dy (kernels.h): keep(i) ? dy[i] / (1 - p) : 0.
inline void dropout_backward_f32(const DropoutArgs& args, Queue& q) { dropout_f32(args, q); }
void clamp_f32(const ClampArgs& args, Queue& q);
void sgd_step_f32(const SgdArgs& args, Queue& q);
void adam_step_f32(const AdamArgs& args, Queue& q);
void rmsprop_step_f32(const RmspropArgs& args, Queue& q);
void adagrad_step_f32(const AdagradArgs& args, Queue& q);
// The kn_*_step_many_f32 calls: OpenCL cannot put buffers (cl_mem) in an array a kernel reads, so
// each tensor gets its own launch of the per-tensor kernel.
template <typename Tensor>
void launch_each(const ManyArgs<Tensor>& a, Queue& q, void (*one)(const Tensor&, Queue&)) {
    for (int64_t t = 0; t < a.count; ++t) one(a.tensors[t], q);
}
inline void sgd_step_many_f32(const SgdManyArgs& a, Queue& q) { launch_each(a, q, sgd_step_f32); }
inline void adam_step_many_f32(const AdamManyArgs& a, Queue& q) { launch_each(a, q, adam_step_f32); }
inline void rmsprop_step_many_f32(const RmspropManyArgs& a, Queue& q) { launch_each(a, q, rmsprop_step_f32); }
inline void adagrad_step_many_f32(const AdagradManyArgs& a, Queue& q) { launch_each(a, q, adagrad_step_f32); }
// gather_launch.cpp (gather.cl): gather rows and the deterministic scatter-add
void gather_rows_f32(const GatherRowsArgs& args, Queue& q);
void scatter_add_rows_f32(const ScatterAddRowsArgs& args, Queue& q);
// reduce_launch.cpp (reduce.cl)
void reduce_f32(const ReduceArgs& args, Queue& q);
void argreduce_f32(const ArgReduceArgs& args, Queue& q);
// softmax_launch.cpp (softmax.cl): softmax and the cross-entropy loss, which share its row kernels
void softmax_f32(const SoftmaxArgs& args, Queue& q);
void softmax_backward_f32(const SoftmaxBackwardArgs& args, Queue& q);
void cross_entropy_f32(const CrossEntropyArgs& args, Queue& q);
void cross_entropy_backward_f32(const CrossEntropyBackwardArgs& args, Queue& q);
// cast_launch.cpp (cast.cl): kn_cast between float32, int32 and int64
void cast(const CastArgs& args, Queue& q);
// conv_launch.cpp (conv.cl)
void conv2d_f32(const Conv2dArgs& args, Queue& q);
void conv2d_backward_data_f32(const Conv2dBackwardDataArgs& args, Queue& q);
void conv2d_backward_weights_f32(const Conv2dBackwardWeightsArgs& args, Queue& q);
// pool_launch.cpp (pool.cl)
void pool2d_f32(const Pool2dArgs& args, Queue& q);
void pool2d_backward_f32(const Pool2dBackwardArgs& args, Queue& q);
// batch_norm_launch.cpp (batch_norm.cl)
void batch_norm_f32(const BatchNormArgs& args, Queue& q);
void batch_norm_backward_f32(const BatchNormBackwardArgs& args, Queue& q);
// recurrent_launch.cpp (recurrent.cl): the LSTM and GRU cell steps
void lstm_cell_f32(const LstmCellArgs& args, Queue& q);
void lstm_cell_backward_f32(const LstmCellBackwardArgs& args, Queue& q);
void gru_cell_f32(const GruCellArgs& args, Queue& q);
void gru_cell_backward_f32(const GruCellBackwardArgs& args, Queue& q);

}  // namespace kn::opencl
