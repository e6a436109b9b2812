// opencl_queue.cpp: one OpenCL device's context and in-order command queue (opencl_backend.h):
// memory, the device-owned scratch buffers, and the launch shapes the launchers share. Every call
// is checked; a failure throws kn::Error naming the device, the call and, where there is one, the
// kernel ("opencl:0: clEnqueueNDRangeKernel(gemm_nn) failed: CL_OUT_OF_RESOURCES (-5)").
#include "opencl_backend.h"

#include <algorithm>
#include <iterator>

namespace kn::opencl {

Queue::Queue(const Api& cl, cl_platform_id platform, cl_device_id device, const std::string& device_name,
             const Tuning& tuning, cl_uint compute_units, cl_ulong max_alloc)
    : cl_(cl), platform_(platform), device_(device), device_name_(device_name), tuning_(tuning),
      compute_units_(compute_units), max_alloc_(max_alloc), program_(cl, device, device_name, tuning.options()) {}

Queue::~Queue() {
    // Devices live in a registry that is never destroyed, so this only runs if that changes.
    for (cl_mem s : scratch_)
        if (s) cl_.ReleaseMemObject(s);
    if (queue_) cl_.ReleaseCommandQueue(queue_);
    if (context_) cl_.ReleaseContext(context_);
}

void Queue::ensure_queue() {
    if (queue_) return;
    cl_int err = CL_SUCCESS;
    const cl_context_properties properties[] = {CL_CONTEXT_PLATFORM, reinterpret_cast<cl_context_properties>(platform_),
                                                0};
    if (!context_) {
        context_ = cl_.CreateContext(properties, 1, &device_, nullptr, nullptr, &err);
        check(err, "clCreateContext");
    }
    queue_ = cl_.CreateCommandQueue(context_, device_, 0, &err);
    check(err, "clCreateCommandQueue");
}

// ---- Memory ------------------------------------------------------------------------------------

cl_mem Queue::alloc(int64_t bytes) {
    if (static_cast<uint64_t>(bytes) > max_alloc_)
        fail(KN_ERROR_OUT_OF_MEMORY, device_name_, ": cannot allocate ", bytes, " bytes: larger than the ", max_alloc_,
             " bytes this device allows in one buffer (CL_DEVICE_MAX_MEM_ALLOC_SIZE)");
    ensure_queue();
    cl_int err = CL_SUCCESS;
    cl_mem m = cl_.CreateBuffer(context_, CL_MEM_READ_WRITE, static_cast<size_t>(bytes), nullptr, &err);
    check(err, "clCreateBuffer", cat(bytes, " bytes").c_str());
    return m;
}

void Queue::free(cl_mem memory) noexcept { cl_.ReleaseMemObject(memory); }

void Queue::write(cl_mem dst, int64_t dst_offset, const void* host_src, int64_t bytes) {
    ensure_queue();
    check(cl_.EnqueueWriteBuffer(queue_, dst, CL_TRUE, static_cast<size_t>(dst_offset), static_cast<size_t>(bytes),
                                 host_src, 0, nullptr, nullptr),
          "clEnqueueWriteBuffer");
}

void Queue::read(cl_mem src, int64_t src_offset, void* host_dst, int64_t bytes) {
    ensure_queue();
    check(cl_.EnqueueReadBuffer(queue_, src, CL_TRUE, static_cast<size_t>(src_offset), static_cast<size_t>(bytes),
                                host_dst, 0, nullptr, nullptr),
          "clEnqueueReadBuffer");
}

void Queue::copy(cl_mem dst, int64_t dst_offset, cl_mem src, int64_t src_offset, int64_t bytes) {
    ensure_queue();
    check(cl_.EnqueueCopyBuffer(queue_, src, dst, static_cast<size_t>(src_offset), static_cast<size_t>(dst_offset),
                                static_cast<size_t>(bytes), 0, nullptr, nullptr),
          "clEnqueueCopyBuffer");
}

void Queue::fill_f32(cl_mem dst, int64_t offset_elements, int64_t count, float value) {
    ensure_queue();
    check(cl_.EnqueueFillBuffer(queue_, dst, &value, sizeof(float), static_cast<size_t>(offset_elements) * 4,
                                static_cast<size_t>(count) * 4, 0, nullptr, nullptr),
          "clEnqueueFillBuffer");
}

void Queue::finish() {
    ensure_queue();
    check(cl_.Finish(queue_), "clFinish");
}

cl_mem Queue::scratch(ScratchSlot slot, int64_t bytes) {
    if (bytes > scratch_bytes_[slot]) {
        if (scratch_[slot]) {
            cl_.ReleaseMemObject(scratch_[slot]);
            scratch_[slot] = nullptr;
            scratch_bytes_[slot] = 0;
        }
        scratch_[slot] = alloc(bytes);
        scratch_bytes_[slot] = bytes;
    }
    return scratch_[slot];
}

void Queue::release_scratch() noexcept {
    // clReleaseMemObject defers the free until queued commands that use the buffer are done.
    for (int slot = 0; slot < kScratchSlots; slot++) {
        if (scratch_[slot]) cl_.ReleaseMemObject(scratch_[slot]);
        scratch_[slot] = nullptr;
        scratch_bytes_[slot] = 0;
    }
}

// ---- Kernels -----------------------------------------------------------------------------------

cl_kernel Queue::kernel(const std::string& kname) {
    ensure_queue();
    return program_.kernel(context_, kname);
}

void Queue::launch(cl_kernel kern, const char* kname, cl_uint dims, const size_t* global, const size_t* local) {
    check(cl_.EnqueueNDRangeKernel(queue_, kern, dims, nullptr, global, local, 0, nullptr, nullptr),
          "clEnqueueNDRangeKernel", kname);
}

void Queue::launch_elementwise(cl_kernel kern, const char* kname, int64_t n) {
    launch_1d(kern, kname, ceil_div(n, tuning_.ew_vec));
}

void Queue::launch_1d(cl_kernel kern, const char* kname, int64_t n) {
    const size_t local = static_cast<size_t>(tuning_.elementwise_wg);
    const size_t global = round_up(n, tuning_.elementwise_wg);
    launch(kern, kname, 1, &global, &local);
}

void Queue::launch_groups(cl_kernel kern, const char* kname, int64_t groups, int work_group) {
    const size_t local = static_cast<size_t>(work_group);
    const size_t global = static_cast<size_t>(groups) * local;
    launch(kern, kname, 1, &global, &local);
}

void Queue::launch_planes(cl_kernel kern, const char* kname, cl_uint first_plane_arg, int64_t plane_len,
                          int64_t planes) {
    const int64_t wg = tuning_.elementwise_wg;
    int64_t lx = 1;
    while (lx < plane_len && lx < wg) lx *= 2;
    const int64_t ly = std::max<int64_t>(1, wg / lx);
    const int64_t per_launch = kMaxBatchPerLaunch * ly;
    for (int64_t first = 0; first < planes; first += per_launch) {
        const int64_t count = std::min(per_launch, planes - first);
        set_arg(kern, kname, first_plane_arg, cl_long{first});
        const size_t global[2] = {round_up(plane_len, lx), round_up(count, ly)};
        const size_t local[2] = {static_cast<size_t>(lx), static_cast<size_t>(ly)};
        launch(kern, kname, 2, global, local);
    }
}

}  // namespace kn::opencl
