// opencl_device.cpp: the OpenCL backend's kn::Device. One OpenClDevice per OpenCL device of every
// platform (GPUs, CPUs, accelerators), named "opencl:N" in enumeration order.
//
// - The OpenCL library is loaded at run time (opencl_loader.h): no link dependency.
// - The device is the face the API sees: what the device is (from clGetDeviceInfo, at enumeration),
//   and the operations, which it hands to its Queue (opencl_queue.cpp: context, in-order command
//   queue, memory, scratch) and to the launchers of native/core/ops.h (<family>_launch.cpp, one per
//   kernel family beside its .cl file). The kernels are built from the embedded .cl sources with
//   tunables chosen from the device's type and limits (opencl_program.h).
// - Every OpenCL call is checked; a failure throws kn::Error naming the device, the call, the
//   kernel and the error ("opencl:0: clEnqueueNDRangeKernel(gemm_nn) failed: CL_OUT_OF_RESOURCES
//   (-5)"). Allocation failures map to KN_ERROR_OUT_OF_MEMORY, everything else to KN_ERROR_BACKEND.
#include "backend.h"
#include "error.h"
#include "opencl_backend.h"

#include <cstdio>
#include <memory>
#include <string>
#include <vector>

namespace kn {
namespace {

using opencl::Api;
using opencl::error_text;
using opencl::mem;
using opencl::trim;

// clGetDeviceInfo for fixed-size values; `what` names the query in the error message.
template <typename T>
T device_value(const Api& cl, cl_device_id device, cl_device_info param, const char* what) {
    T value{};
    cl_int err = cl.GetDeviceInfo(device, param, sizeof(T), &value, nullptr);
    if (err != CL_SUCCESS) fail(KN_ERROR_BACKEND, "clGetDeviceInfo(", what, ") failed: ", error_text(err));
    return value;
}

std::string device_string(const Api& cl, cl_device_id device, cl_device_info param, const char* what) {
    size_t size = 0;
    cl_int err = cl.GetDeviceInfo(device, param, 0, nullptr, &size);
    std::string s(size, '\0');
    if (err == CL_SUCCESS && size > 0) err = cl.GetDeviceInfo(device, param, size, &s[0], nullptr);
    if (err != CL_SUCCESS) fail(KN_ERROR_BACKEND, "clGetDeviceInfo(", what, ") failed: ", error_text(err));
    return trim(s);
}

std::string platform_string(const Api& cl, cl_platform_id platform, cl_platform_info param) {
    size_t size = 0;
    if (cl.GetPlatformInfo(platform, param, 0, nullptr, &size) != CL_SUCCESS || size == 0) return "unknown platform";
    std::string s(size, '\0');
    if (cl.GetPlatformInfo(platform, param, size, &s[0], nullptr) != CL_SUCCESS) return "unknown platform";
    return trim(s);
}

class OpenClDevice final : public Device {
public:
    OpenClDevice(const Api& cl, cl_platform_id platform, cl_device_id device, int index) {
        kind = KN_DEVICE_OPENCL;
        name = cat("opencl:", index);
        description = cat(device_string(cl, device, CL_DEVICE_NAME, "CL_DEVICE_NAME"), " (",
                          platform_string(cl, platform, CL_PLATFORM_NAME), ")");
        total_memory = static_cast<int64_t>(device_value<cl_ulong>(cl, device, CL_DEVICE_GLOBAL_MEM_SIZE,
                                                                   "CL_DEVICE_GLOBAL_MEM_SIZE"));
        const std::string version = device_string(cl, device, CL_DEVICE_VERSION, "CL_DEVICE_VERSION");
        int major = 0, minor = 0;
        if (std::sscanf(version.c_str(), "OpenCL %d.%d", &major, &minor) == 2) {
            capability_major = major;
            capability_minor = minor;
        }
        const cl_ulong max_alloc =
            device_value<cl_ulong>(cl, device, CL_DEVICE_MAX_MEM_ALLOC_SIZE, "CL_DEVICE_MAX_MEM_ALLOC_SIZE");
        const cl_uint compute_units =
            device_value<cl_uint>(cl, device, CL_DEVICE_MAX_COMPUTE_UNITS, "CL_DEVICE_MAX_COMPUTE_UNITS");
        const size_t max_work_group =
            device_value<size_t>(cl, device, CL_DEVICE_MAX_WORK_GROUP_SIZE, "CL_DEVICE_MAX_WORK_GROUP_SIZE");
        const cl_ulong local_memory =
            device_value<cl_ulong>(cl, device, CL_DEVICE_LOCAL_MEM_SIZE, "CL_DEVICE_LOCAL_MEM_SIZE");
        const cl_device_type type = device_value<cl_device_type>(cl, device, CL_DEVICE_TYPE, "CL_DEVICE_TYPE");
        const cl_uint native_float_width = device_value<cl_uint>(
            cl, device, CL_DEVICE_NATIVE_VECTOR_WIDTH_FLOAT, "CL_DEVICE_NATIVE_VECTOR_WIDTH_FLOAT");
        const cl_device_fp_config fp =
            device_value<cl_device_fp_config>(cl, device, CL_DEVICE_SINGLE_FP_CONFIG, "CL_DEVICE_SINGLE_FP_CONFIG");
        const opencl::Tuning tuning =
            opencl::choose_tuning(type, max_work_group, local_memory, native_float_width, (fp & CL_FP_FMA) != 0);
        queue_ = std::make_unique<opencl::Queue>(cl, platform, device, name, tuning, compute_units, max_alloc);
    }

    // ---- Memory ------------------------------------------------------------------------------

    void* alloc(int64_t bytes) override { return queue_->alloc(bytes); }
    void free(void* memory) noexcept override { queue_->free(mem(memory)); }

    void write(void* dst, int64_t dst_offset, const void* host_src, int64_t bytes) override {
        queue_->write(mem(dst), dst_offset, host_src, bytes);
    }

    void read(const void* src, int64_t src_offset, void* host_dst, int64_t bytes) override {
        queue_->read(mem(src), src_offset, host_dst, bytes);
    }

    void copy(void* dst, int64_t dst_offset, const void* src, int64_t src_offset, int64_t bytes) override {
        queue_->copy(mem(dst), dst_offset, mem(src), src_offset, bytes);
    }

    void fill_f32(void* dst, int64_t offset_elements, int64_t count, float value) override {
        queue_->fill_f32(mem(dst), offset_elements, count, value);
    }

    void synchronize() override { queue_->finish(); }
    void release_scratch() noexcept override { queue_->release_scratch(); }

    // ---- Kernels -----------------------------------------------------------------------------
    // Every kernel of ops.h: OpenClDevice::<name>(args) calls opencl::<name>(args, queue), or answers
    // NOT_SUPPORTED for an op in KN_OPS_NOT_IN_OPENCL.
#define KN_OPENCL_FORWARD(op, Args) \
    void op(const Args& args) override { run(#op, [&] { return opencl::op(args, *queue_); }); }
    KN_OPS(KN_OPENCL_FORWARD)
#undef KN_OPENCL_FORWARD

private:
    template <typename Launch>
    void run(const char* op, Launch launch) {
        if constexpr (op_not_implemented<decltype(launch())>) unsupported(op_message_name(op));
        else launch();
    }

    std::unique_ptr<opencl::Queue> queue_;
};

}  // namespace

void enumerate_opencl_devices(std::vector<std::unique_ptr<Device>>& out, std::string& reason) {
    const Api* cl = ocl::api(reason);
    if (!cl) return;
    cl_uint platform_count = 0;
    cl_int err = cl->GetPlatformIDs(0, nullptr, &platform_count);
    // The ICD loader answers CL_PLATFORM_NOT_FOUND_KHR (-1001) when no driver is registered.
    if (err == -1001 || (err == CL_SUCCESS && platform_count == 0)) {
        reason = "no OpenCL platform found";
        return;
    }
    if (err != CL_SUCCESS) {
        reason = cat("clGetPlatformIDs failed: ", error_text(err));
        return;
    }
    std::vector<cl_platform_id> platforms(platform_count);
    err = cl->GetPlatformIDs(platform_count, platforms.data(), nullptr);
    if (err != CL_SUCCESS) {
        reason = cat("clGetPlatformIDs failed: ", error_text(err));
        return;
    }
    int index = 0;
    std::string problems;
    for (cl_platform_id platform : platforms) {
        cl_uint device_count = 0;
        err = cl->GetDeviceIDs(platform, CL_DEVICE_TYPE_ALL, 0, nullptr, &device_count);
        if (err == CL_DEVICE_NOT_FOUND || (err == CL_SUCCESS && device_count == 0)) continue;
        if (err != CL_SUCCESS) {
            problems += cat("; clGetDeviceIDs on platform \"", platform_string(*cl, platform, CL_PLATFORM_NAME),
                            "\" failed: ", error_text(err));
            continue;
        }
        std::vector<cl_device_id> devices(device_count);
        err = cl->GetDeviceIDs(platform, CL_DEVICE_TYPE_ALL, device_count, devices.data(), nullptr);
        if (err != CL_SUCCESS) {
            problems += cat("; clGetDeviceIDs on platform \"", platform_string(*cl, platform, CL_PLATFORM_NAME),
                            "\" failed: ", error_text(err));
            continue;
        }
        for (cl_device_id device : devices) {
            try {
                out.push_back(std::make_unique<OpenClDevice>(*cl, platform, device, index));
                ++index;
            } catch (const Error& e) {
                problems += cat("; a device of platform \"", platform_string(*cl, platform, CL_PLATFORM_NAME),
                                "\" was skipped: ", e.what());
            }
        }
    }
    if (index == 0) reason = cat("no OpenCL device found (", platform_count, " platform(s))", problems);
}

}  // namespace kn
