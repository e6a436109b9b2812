// cuda_device.cpp: the CUDA backend. One CudaDevice per GPU, found by enumerate_cuda_devices.
//
// - Memory is plain device memory (cudaMalloc / cudaFree, not managed memory), so a kernel never
//   faults pages in and the host never touches device memory by accident.
// - Each device has one non-blocking stream, created at enumeration: every kernel and copy is
//   queued on it, in order, so the API's "one in-order queue per device" holds without events.
//   Non-blocking keeps it independent of the legacy default stream that other libraries in the
//   process (cuBLAS, a user's own CUDA code) may use.
// - The current device is per host thread in the CUDA runtime, and the API may call a device from
//   any thread, so every entry point first makes this device current (cudaSetDevice is cheap when
//   it already is).
// - Every CUDA call is checked; a failure becomes kn::Error(KN_ERROR_BACKEND) naming the device, the
//   call and CUDA's error name and text, and running out of memory becomes KN_ERROR_OUT_OF_MEMORY
//   with the sizes. Kernel launches are checked with cudaGetLastError right after launching (the
//   launchers in kernels/cuda do that); faults inside a kernel surface at the next call that waits.
// - cudart is linked statically, so the library loads where no driver exists; enumeration then
//   finds no device and says why.
#include "backend.h"
#include "cuda_kernels.h"
#include "error.h"

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

namespace kn {
namespace {

std::string cuda_error_text(cudaError_t e) { return cat(cudaGetErrorName(e), ": ", cudaGetErrorString(e)); }

// Bytes as a person reads them: "512 bytes", "3.2 MiB", "79.1 GiB".
std::string human_bytes(int64_t bytes) {
    const char* units[] = {"bytes", "KiB", "MiB", "GiB", "TiB"};
    double v = static_cast<double>(bytes);
    int u = 0;
    while (v >= 1024.0 && u < 4) {
        v /= 1024.0;
        ++u;
    }
    if (u == 0) return cat(bytes, " bytes");
    char text[32];
    std::snprintf(text, sizeof text, "%.1f %s", v, units[u]);
    return text;
}

char* bytes_at(void* p, int64_t offset) { return static_cast<char*>(p) + offset; }
const char* bytes_at(const void* p, int64_t offset) { return static_cast<const char*>(p) + offset; }

class CudaDevice final : public Device, cuda::ScratchSource {
public:
    CudaDevice(int ordinal, cudaStream_t stream, int sm_count) : ordinal_(ordinal), stream_(stream) {
        context_.stream = stream;
        context_.sm_count = sm_count;
        context_.scratch_source = this;
    }

    // The registry keeps devices for the life of the process, so this only runs if that changes;
    // it then releases what the device holds, ignoring errors (the runtime may be shutting down).
    ~CudaDevice() override {
        if (cudaSetDevice(ordinal_) == cudaSuccess) {
            cudaStreamSynchronize(stream_);
            if (scratch_) cudaFree(scratch_);
            cudaStreamDestroy(stream_);
        }
        cudaGetLastError();
    }

    // ---- Memory ----------------------------------------------------------------------------------

    void* alloc(int64_t bytes) override {
        activate();
        return allocate(bytes, "a buffer");
    }

    void free(void* memory) noexcept override {
        if (cudaSetDevice(ordinal_) != cudaSuccess) {
            cudaGetLastError();
            return;
        }
        // Kernels still queued may use this memory. cudaFree does not promise to wait for work on a
        // non-blocking stream, so wait here. Errors cannot be reported from free; a sticky error
        // will be reported by the next call that can.
        cudaStreamSynchronize(stream_);
        cudaFree(memory);
        cudaGetLastError();
    }

    void write(void* dst, int64_t dst_offset, const void* host_src, int64_t bytes) override {
        activate();
        check(cudaMemcpyAsync(bytes_at(dst, dst_offset), host_src, static_cast<size_t>(bytes), cudaMemcpyHostToDevice,
                              stream_),
              "cudaMemcpyAsync (host to device)");
        // The caller may reuse host_src as soon as we return.
        check(cudaStreamSynchronize(stream_), "cudaStreamSynchronize");
    }

    void read(const void* src, int64_t src_offset, void* host_dst, int64_t bytes) override {
        activate();
        // Queued behind every kernel that writes src, so the stream order makes the data current.
        check(cudaMemcpyAsync(host_dst, bytes_at(src, src_offset), static_cast<size_t>(bytes), cudaMemcpyDeviceToHost,
                              stream_),
              "cudaMemcpyAsync (device to host)");
        check(cudaStreamSynchronize(stream_), "cudaStreamSynchronize");
    }

    void copy(void* dst, int64_t dst_offset, const void* src, int64_t src_offset, int64_t bytes) override {
        activate();
        check(cudaMemcpyAsync(bytes_at(dst, dst_offset), bytes_at(src, src_offset), static_cast<size_t>(bytes),
                              cudaMemcpyDeviceToDevice, stream_),
              "cudaMemcpyAsync (device to device)");
    }

    void fill_f32(void* dst, int64_t offset_elements, int64_t count, float value) override {
        activate();
        check_launch(cuda::fill_f32(static_cast<float*>(dst) + offset_elements, count, value, context_), "fill");
    }

    void synchronize() override {
        activate();
        check(cudaStreamSynchronize(stream_), "cudaStreamSynchronize");
    }

    // ---- Kernels ---------------------------------------------------------------------------------

    // Every kernel of ops.h: CudaDevice::<name>(args) makes the device current and queues
    // cuda::<name>(args, context_), or answers NOT_SUPPORTED for an op in KN_OPS_NOT_IN_CUDA.
#define KN_CUDA_FORWARD(op, Args) \
    void op(const Args& args) override { run(#op, [&] { return cuda::op(args, context_); }); }
    KN_OPS(KN_CUDA_FORWARD)
#undef KN_CUDA_FORWARD

private:
    template <typename Launch>
    void run(const char* op, Launch launch) {
        if constexpr (op_not_implemented<decltype(launch())>) {
            unsupported(op_message_name(op));
        } else {
            activate();
            check_launch(launch(), op);
        }
    }

    void activate() { check(cudaSetDevice(ordinal_), "cudaSetDevice"); }

    void check(cudaError_t e, const char* call) {
        if (e == cudaSuccess) return;
        cudaGetLastError();  // clear a non-sticky error so it does not reappear at the next launch check
        if (e == cudaErrorMemoryAllocation)
            fail(KN_ERROR_OUT_OF_MEMORY, name, ": ", call, " ran out of device memory (", memory_state(), ")");
        fail(KN_ERROR_BACKEND, name, ": ", call, " failed: ", cuda_error_text(e));
    }

    void check_launch(cudaError_t e, const char* op) {
        if (e == cudaSuccess) return;
        cudaGetLastError();
        fail(KN_ERROR_BACKEND, name, ": ", op_message_name(op), " kernel launch failed: ", cuda_error_text(e));
    }

    // "3.1 GiB free of 79.1 GiB", or nothing useful if even that query fails.
    std::string memory_state() {
        size_t free_bytes = 0, total_bytes = 0;
        if (cudaMemGetInfo(&free_bytes, &total_bytes) != cudaSuccess) {
            cudaGetLastError();
            return "free memory unknown";
        }
        return cat(human_bytes(static_cast<int64_t>(free_bytes)), " free of ", human_bytes(static_cast<int64_t>(total_bytes)));
    }

    void* allocate(int64_t bytes, const char* what) {
        void* p = nullptr;
        const cudaError_t e = cudaMalloc(&p, static_cast<size_t>(bytes));
        if (e == cudaErrorMemoryAllocation) {
            cudaGetLastError();
            fail(KN_ERROR_OUT_OF_MEMORY, name, ": out of memory allocating ", what, " of ", bytes, " bytes (",
                 human_bytes(bytes), "; ", memory_state(), ")");
        }
        check(e, "cudaMalloc");
        return p;
    }

    void release_scratch() noexcept override {
        if (!scratch_) return;
        // Queued kernels may still read it.
        if (cudaSetDevice(ordinal_) == cudaSuccess && cudaStreamSynchronize(stream_) == cudaSuccess) {
            cudaFree(scratch_);
            scratch_ = nullptr;
            scratch_bytes_ = 0;
        }
        cudaGetLastError();
    }

    // ctx.scratch of the launchers (cuda::ScratchSource): the two-pass reductions' scratch buffer,
    // grown on demand and kept (it is small: at most REDUCE_MAX_CHUNKS partials per output, and only
    // when there are few outputs). Also holds the split-K partials of conv2d's weight gradient (at
    // most CONV_SCRATCH_MAX_FLOATS, 16 MiB) and batch norm's per-channel partials and coefficients
    // (a few KiB). cudaMalloc aligns to at least 256 bytes.
    void* get(int64_t bytes) override {
        if (bytes <= scratch_bytes_) return scratch_;
        if (scratch_) {
            // Queued kernels may still read the old buffer.
            check(cudaStreamSynchronize(stream_), "cudaStreamSynchronize");
            cudaFree(scratch_);
            cudaGetLastError();
            scratch_ = nullptr;
            scratch_bytes_ = 0;
        }
        const int64_t granule = int64_t{1} << 16;  // round up to 64 KiB so small growth does not reallocate
        const int64_t size = (bytes + granule - 1) / granule * granule;
        scratch_ = allocate(size, "reduction scratch");
        scratch_bytes_ = size;
        return scratch_;
    }

    int ordinal_;
    cudaStream_t stream_;
    cuda::LaunchContext context_{};
    void* scratch_ = nullptr;
    int64_t scratch_bytes_ = 0;
};

}  // namespace

void enumerate_cuda_devices(std::vector<std::unique_ptr<Device>>& out, std::string& reason) {
    int count = 0;
    const cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess) {
        cudaGetLastError();
        if (e == cudaErrorInsufficientDriver)
            reason = cat("no CUDA driver found (or the driver is older than the CUDA ", CUDART_VERSION / 1000, ".",
                         CUDART_VERSION % 1000 / 10, " runtime this library was built with)");
        else if (e == cudaErrorNoDevice)
            reason = "no CUDA device";
        else
            reason = cat("cudaGetDeviceCount failed: ", cuda_error_text(e));
        return;
    }
    if (count == 0) {
        reason = "no CUDA device";
        return;
    }

    // A device that cannot be set up (busy in exclusive mode, out of memory for a context, ...) is
    // skipped; names stay contiguous ("cuda:0" is always the first usable one).
    std::string first_failure;
    int added = 0;
    for (int ordinal = 0; ordinal < count; ++ordinal) {
        auto failed = [&](const char* call, cudaError_t err) {
            cudaGetLastError();
            if (first_failure.empty())
                first_failure = cat("CUDA device ", ordinal, ": ", call, " failed: ", cuda_error_text(err));
        };
        cudaError_t err = cudaSetDevice(ordinal);
        if (err != cudaSuccess) { failed("cudaSetDevice", err); continue; }

        // Only fields and attributes present in both CUDA 11.8 and CUDA 13 (which removed, for
        // example, cudaDeviceProp::clockRate and memoryClockRate).
        cudaDeviceProp prop{};
        err = cudaGetDeviceProperties(&prop, ordinal);
        if (err != cudaSuccess) { failed("cudaGetDeviceProperties", err); continue; }
        int major = 0, minor = 0, sm_count = 0;
        err = cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, ordinal);
        if (err == cudaSuccess) err = cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, ordinal);
        if (err == cudaSuccess) err = cudaDeviceGetAttribute(&sm_count, cudaDevAttrMultiProcessorCount, ordinal);
        if (err != cudaSuccess) { failed("cudaDeviceGetAttribute", err); continue; }

        cudaStream_t stream = nullptr;
        err = cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking);
        if (err != cudaSuccess) { failed("cudaStreamCreateWithFlags", err); continue; }

        auto device = std::make_unique<CudaDevice>(ordinal, stream, std::max(sm_count, 1));
        device->kind = KN_DEVICE_CUDA;
        device->name = cat("cuda:", added);
        device->description = prop.name;
        device->total_memory = static_cast<int64_t>(prop.totalGlobalMem);
        device->capability_major = major;
        device->capability_minor = minor;
        out.push_back(std::move(device));
        ++added;
    }
    if (added == 0) reason = first_failure.empty() ? std::string("no usable CUDA device") : first_failure;
}

}  // namespace kn
