// backend.h: what a backend (CPU, CUDA, OpenCL) implements: the Device class, whose kernels and
// their argument records are declared once, in ops.h. The C API layer (api.cpp) validates every argument once, so a backend may assume:
//   - every buffer handle it receives is live, on this device, and large enough for the shapes;
//   - sizes are non-negative and the work is non-empty (n > 0 etc.), except where noted;
//   - calls on one device are serialised (the API holds the device's mutex), so a backend needs no
//     locking of its own for queues, kernel objects or scratch buffers.
// Memory handles are `void*`: a host pointer on the CPU, a device pointer on CUDA, a cl_mem on OpenCL.
// Errors are thrown as kn::Error (see error.h); the API layer turns them into a status.
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
