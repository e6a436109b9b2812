// api.cpp: the C API of kernels.h. Every export does the same three things:
//   1. validate its arguments once, with messages that name the function, the operand and the sizes
//      (a kernel export declares its buffers to a Call, operands.h, which checks them in one order);
//   2. lock the device and hand a normalised argument record (backend.h) to the device's backend;
//   3. turn any exception into a status plus a thread-local message (kn_last_error), so nothing
//      ever escapes the C boundary and the process stays usable after bad input.
#include "kernels.h"

#include "backend.h"
#include "buffer_table.h"
#include "caching_allocator.h"
#include "error.h"
#include "window_geometry.h"
#include "operands.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <tuple>
#include <vector>

using kn::cat;
using kn::Device;
using kn::Error;
using kn::fail;
using kn::api::add;
using kn::api::Buffer;
using kn::api::buffers;
using kn::api::Call;
using kn::api::check_enum;
using kn::api::check_non_negative;
using kn::api::checked_buffer;
using kn::api::kInt32;
using kn::api::kInt64;
using kn::api::mul;
using kn::api::Operand;
using kn::api::optional;

namespace {

thread_local std::string last_error;

// ---- Device registry --------------------------------------------------------------------------

struct Registry {
    std::vector<std::unique_ptr<Device>> devices;
    std::vector<std::unique_ptr<kn::CachingAllocator>> allocators;  // allocators[i] serves devices[i]
    std::string cuda_reason, opencl_reason;
};

// The cache is on unless KN_CACHING_ALLOCATOR=0. GPU caches are bounded by the device itself (an
// out-of-memory answer empties the cache and retries); host RAM is shared with everything else, so
// the CPU device keeps at most 1/8 of it parked.
void create_allocators(Registry& r) {
    const char* env = std::getenv("KN_CACHING_ALLOCATOR");
    bool enabled = !(env && std::strcmp(env, "0") == 0);
    for (auto& d : r.devices) {
        int64_t limit = d->kind == KN_DEVICE_CPU ? d->total_memory / 8 : d->total_memory;
        r.allocators.push_back(std::make_unique<kn::CachingAllocator>(*d, enabled, std::max<int64_t>(limit, 0)));
    }
}

Registry& registry() {
    static Registry* r = [] {
        auto* reg = new Registry();  // never destroyed: handles stay valid through process exit
        kn::enumerate_cpu_devices(reg->devices);
#ifdef KN_WITH_CUDA
        try {
            kn::enumerate_cuda_devices(reg->devices, reg->cuda_reason);
        } catch (const std::exception& e) {
            reg->cuda_reason = cat("CUDA enumeration failed: ", e.what());
        }
#else
        reg->cuda_reason = "not compiled in (this libkernels was built without the CUDA backend)";
#endif
#ifdef KN_WITH_OPENCL
        try {
            kn::enumerate_opencl_devices(reg->devices, reg->opencl_reason);
        } catch (const std::exception& e) {
            reg->opencl_reason = cat("OpenCL enumeration failed: ", e.what());
        }
#else
        reg->opencl_reason = "not compiled in (this libkernels was built without the OpenCL backend)";
#endif
        create_allocators(*reg);
        return reg;
    }();
    return *r;
}

const Device* as_device(const kn_device* d) { return reinterpret_cast<const Device*>(d); }
kn_device* as_handle(Device* d) { return reinterpret_cast<kn_device*>(d); }

Device& checked_device(const kn_device* handle, const char* fn) {
    if (!handle) fail(KN_ERROR_INVALID_ARGUMENT, fn, ": device is NULL");
    const Device* d = as_device(handle);
    for (const auto& known : registry().devices)
        if (known.get() == d) return *known;
    fail(KN_ERROR_INVALID_ARGUMENT, fn, ": not a device handle of this library");
}

kn::CachingAllocator& allocator_of(const Device* d) {
    Registry& r = registry();
    for (size_t i = 0; i < r.devices.size(); ++i)
        if (r.devices[i].get() == d) return *r.allocators[i];
    fail(KN_ERROR_INTERNAL, "no allocator for device ", d->name);
}

std::string device_names() {
    std::string names;
    for (const auto& d : registry().devices) names += (names.empty() ? "" : ", ") + d->name;
    return names;
}

// ---- Argument checks --------------------------------------------------------------------------

template <typename F>
kn_status guarded(F&& body) {
    try {
        body();
        return KN_OK;
    } catch (const Error& e) {
        last_error = e.what();
        return e.status();
    } catch (const std::bad_alloc&) {
        last_error = "host memory exhausted";
        return KN_ERROR_OUT_OF_MEMORY;
    } catch (const std::exception& e) {
        last_error = cat("internal error: ", e.what());
        return KN_ERROR_INTERNAL;
    } catch (...) {
        last_error = "internal error: unknown exception";
        return KN_ERROR_INTERNAL;
    }
}

template <typename T>
void check_out(T* out, const char* fn, const char* name) {
    if (!out) fail(KN_ERROR_INVALID_ARGUMENT, fn, ": output pointer '", name, "' is NULL");
}

// One property of a device into *out: the output pointer is checked first, then the device handle.
template <typename T, typename Read>
kn_status device_property(const char* fn, const kn_device* device, T* out, const char* out_name, Read read) {
    return guarded([&] {
        check_out(out, fn, out_name);
        *out = read(checked_device(device, fn));
    });
}

std::string shape_string(const int64_t* dims, int32_t rank) {
    std::string s = "[";
    for (int32_t i = 0; i < rank; ++i) s += (i ? ", " : "") + std::to_string(dims[i]);
    return s + "]";
}

int64_t checked_elements(const int64_t* dims, int32_t rank, const char* fn, const char* name) {
    if (rank < 0 || rank > KN_MAX_RANK)
        fail(KN_ERROR_INVALID_ARGUMENT, fn, ": rank of ", name, " is ", rank, "; supported 0..", KN_MAX_RANK);
    if (rank > 0 && !dims) fail(KN_ERROR_INVALID_ARGUMENT, fn, ": dims of ", name, " is NULL with rank ", rank);
    int64_t n = 1;
    for (int32_t i = 0; i < rank; ++i) {
        if (dims[i] < 0)
            fail(KN_ERROR_INVALID_ARGUMENT, fn, ": ", name, " has a negative dimension ", shape_string(dims, rank));
        n = mul(n, dims[i], fn);
    }
    return n;
}

// Drops size-1 dimensions and merges neighbours wherever both stride sets stay linear across them
// (outer stride == inner stride * inner size), writing the result to out_*; returns the new rank. No
// dimension left (every size 1) gives rank 1: one element, strides 1. The kernels then loop over as
// few dimensions as the layout allows (same-shape operands collapse to rank 1). Sizes >= 1.
int32_t merge_linear_dims(const int64_t* dims, int32_t rank, const int64_t* s0, const int64_t* s1,
                          int64_t* out_dims, int64_t* out_s0, int64_t* out_s1) {
    int32_t r = 0;
    for (int32_t d = 0; d < rank; ++d) {
        if (dims[d] == 1) continue;
        if (r > 0 && out_s0[r - 1] == s0[d] * dims[d] && out_s1[r - 1] == s1[d] * dims[d]) {
            out_dims[r - 1] *= dims[d];
            out_s0[r - 1] = s0[d];
            out_s1[r - 1] = s1[d];
            continue;
        }
        out_dims[r] = dims[d];
        out_s0[r] = s0[d];
        out_s1[r] = s1[d];
        ++r;
    }
    if (r == 0) {
        out_dims[0] = 1;
        out_s0[0] = 1;
        out_s1[0] = 1;
        r = 1;
    }
    return r;
}

// NumPy broadcasting of a and b into c, normalised for the kernels (see BroadcastGeometry).
kn::BroadcastGeometry broadcast(const int64_t* a_dims, int32_t a_rank, const int64_t* b_dims, int32_t b_rank,
                                const int64_t* c_dims, int32_t c_rank, const char* fn) {
    int32_t rank = std::max(a_rank, b_rank);
    int64_t out[KN_MAX_RANK], as[KN_MAX_RANK], bs[KN_MAX_RANK];
    int64_t a_stride = 1, b_stride = 1;
    for (int32_t d = rank - 1; d >= 0; --d) {
        int32_t ai = d - (rank - a_rank), bi = d - (rank - b_rank);
        int64_t ad = ai >= 0 ? a_dims[ai] : 1, bd = bi >= 0 ? b_dims[bi] : 1;
        if (ad != bd && ad != 1 && bd != 1)
            fail(KN_ERROR_SHAPE_MISMATCH, fn, ": shapes ", shape_string(a_dims, a_rank), " and ",
                 shape_string(b_dims, b_rank), " cannot be broadcast (dimension ", d, ": ", ad, " vs ", bd, ")");
        out[d] = ad == 1 ? bd : ad;
        as[d] = ad == 1 ? 0 : a_stride;
        bs[d] = bd == 1 ? 0 : b_stride;
        // Wrapping (unsigned) on purpose: each operand's element count fits int64 (checked_elements),
        // so these suffix products can only overflow past a zero dimension, as in [0, 2^61, 5] (found
        // by fuzz_c_api). Then the output is empty too and the strides are never used (see below).
        a_stride = static_cast<int64_t>(static_cast<uint64_t>(a_stride) * static_cast<uint64_t>(ad));
        b_stride = static_cast<int64_t>(static_cast<uint64_t>(b_stride) * static_cast<uint64_t>(bd));
    }
    bool match = c_rank == rank;
    for (int32_t d = 0; match && d < rank; ++d) match = c_dims[d] == out[d];
    if (!match)
        fail(KN_ERROR_SHAPE_MISMATCH, fn, ": output shape is ", shape_string(c_dims, c_rank), " but ",
             shape_string(a_dims, a_rank), " and ", shape_string(b_dims, b_rank), " broadcast to ",
             shape_string(out, rank));

    // An empty output: nothing to normalise (and its other dimensions' product may not fit int64).
    if (std::find(out, out + rank, int64_t{0}) != out + rank) {
        kn::BroadcastGeometry empty{};
        empty.rank = 1;
        return empty;  // n = 0, dims[0] = 0
    }

    // Drop size-1 dimensions, then merge neighbours where both operands stay linear across them.
    kn::BroadcastGeometry g{};
    g.n = 1;
    for (int32_t d = 0; d < rank; ++d) g.n *= out[d];
    g.rank = merge_linear_dims(out, rank, as, bs, g.dims, g.a_strides, g.b_strides);
    return g;
}

}  // namespace

// ---- Library ------------------------------------------------------------------------------------

extern "C" {

KN_API kn_status kn_get_version(int32_t* major, int32_t* minor, int32_t* patch) {
    return guarded([&] {
        check_out(major, "kn_get_version", "major");
        check_out(minor, "kn_get_version", "minor");
        check_out(patch, "kn_get_version", "patch");
        *major = KN_VERSION_MAJOR;
        *minor = KN_VERSION_MINOR;
        *patch = KN_VERSION_PATCH;
    });
}

KN_API const char* kn_last_error(void) { return last_error.c_str(); }

KN_API kn_status kn_backend_info(kn_device_kind kind, int32_t* available, const char** reason) {
    return guarded([&] {
        const char* fn = "kn_backend_info";
        check_enum(kind, KN_DEVICE_OPENCL, fn, "kind");
        check_out(available, fn, "available");
        check_out(reason, fn, "reason");
        Registry& r = registry();
        int32_t count = 0;
        for (const auto& d : r.devices) count += d->kind == kind;
        *available = count > 0;
        static const char* none = "";
        if (count > 0) *reason = none;
        else *reason = kind == KN_DEVICE_CUDA ? r.cuda_reason.c_str() : r.opencl_reason.c_str();
    });
}

// ---- Devices ------------------------------------------------------------------------------------

KN_API kn_status kn_device_count(int32_t* count) {
    return guarded([&] {
        check_out(count, "kn_device_count", "count");
        *count = static_cast<int32_t>(registry().devices.size());
    });
}

KN_API kn_status kn_device_get(int32_t index, kn_device** device) {
    return guarded([&] {
        check_out(device, "kn_device_get", "device");
        auto& devices = registry().devices;
        if (index < 0 || index >= static_cast<int32_t>(devices.size()))
            fail(KN_ERROR_NOT_FOUND, "kn_device_get: no device at index ", index, "; there are ",
                 devices.size(), " (", device_names(), ")");
        *device = as_handle(devices[index].get());
    });
}

KN_API kn_status kn_device_find(const char* name, kn_device** device) {
    return guarded([&] {
        const char* fn = "kn_device_find";
        if (!name) fail(KN_ERROR_INVALID_ARGUMENT, fn, ": name is NULL");
        check_out(device, fn, "device");
        std::string wanted(name);
        if (wanted == "cuda" || wanted == "opencl") wanted += ":0";
        for (const auto& d : registry().devices) {
            if (d->name == wanted) {
                *device = as_handle(d.get());
                return;
            }
        }
        Registry& r = registry();
        std::string why;
        if (wanted.rfind("cuda", 0) == 0 && !r.cuda_reason.empty()) why = "; CUDA: " + r.cuda_reason;
        if (wanted.rfind("opencl", 0) == 0 && !r.opencl_reason.empty()) why = "; OpenCL: " + r.opencl_reason;
        fail(KN_ERROR_NOT_FOUND, "no device named '", name, "'; available: ", device_names(), why);
    });
}

KN_API kn_status kn_device_name(const kn_device* device, const char** name) {
    return device_property("kn_device_name", device, name, "name", [](const Device& d) { return d.name.c_str(); });
}

KN_API kn_status kn_device_description(const kn_device* device, const char** description) {
    return device_property("kn_device_description", device, description, "description",
                           [](const Device& d) { return d.description.c_str(); });
}

KN_API kn_status kn_device_kind_of(const kn_device* device, kn_device_kind* kind) {
    return device_property("kn_device_kind_of", device, kind, "kind", [](const Device& d) { return d.kind; });
}

KN_API kn_status kn_device_memory(const kn_device* device, int64_t* total_bytes) {
    return device_property("kn_device_memory", device, total_bytes, "total_bytes",
                           [](const Device& d) { return d.total_memory; });
}

KN_API kn_status kn_device_capability(const kn_device* device, int32_t* major, int32_t* minor) {
    return guarded([&] {
        check_out(major, "kn_device_capability", "major");
        check_out(minor, "kn_device_capability", "minor");
        const Device& d = checked_device(device, "kn_device_capability");
        *major = d.capability_major;
        *minor = d.capability_minor;
    });
}

KN_API kn_status kn_device_synchronize(kn_device* device) {
    return guarded([&] {
        Device& d = checked_device(device, "kn_device_synchronize");
        std::lock_guard<std::mutex> lock(d.mutex);
        d.synchronize();
    });
}

// The caching allocator's counters, read under the device's lock (both stats calls below).
static kn::MemoryStats locked_stats(Device& d) {
    std::lock_guard<std::mutex> lock(d.mutex);
    return allocator_of(&d).stats();
}

KN_API kn_status kn_device_memory_stats(const kn_device* device, int64_t* live_bytes, int64_t* live_buffers,
                                        int64_t* cached_bytes, int64_t* peak_live_bytes) {
    return guarded([&] {
        Device& d = checked_device(device, "kn_device_memory_stats");
        const kn::MemoryStats s = locked_stats(d);
        if (live_bytes) *live_bytes = s.live_bytes;
        if (live_buffers) *live_buffers = s.live_buffers;
        if (cached_bytes) *cached_bytes = s.cached_bytes;
        if (peak_live_bytes) *peak_live_bytes = s.peak_live_bytes;
    });
}

KN_API kn_status kn_device_allocation_counts(const kn_device* device, int64_t* cache_hits, int64_t* device_allocations) {
    return guarded([&] {
        Device& d = checked_device(device, "kn_device_allocation_counts");
        const kn::MemoryStats s = locked_stats(d);
        if (cache_hits) *cache_hits = s.cache_hits;
        if (device_allocations) *device_allocations = s.device_allocations;
    });
}

KN_API kn_status kn_device_trim(kn_device* device) {
    return guarded([&] {
        Device& d = checked_device(device, "kn_device_trim");
        std::lock_guard<std::mutex> lock(d.mutex);
        d.release_scratch();
        allocator_of(&d).trim();
    });
}

// ---- Buffers ------------------------------------------------------------------------------------

KN_API kn_status kn_buffer_create(kn_device* device, int64_t bytes, kn_buffer** buffer) {
    return guarded([&] {
        const char* fn = "kn_buffer_create";
        check_out(buffer, fn, "buffer");
        Device& d = checked_device(device, fn);
        check_non_negative(bytes, fn, "bytes");
        auto b = std::make_unique<Buffer>(Buffer{&d, nullptr, bytes, 0});
        if (bytes > 0) {
            std::lock_guard<std::mutex> lock(d.mutex);
            try {
                b->memory = allocator_of(&d).allocate(bytes, &b->capacity);
            } catch (const Error& e) {  // say what was asked for (the allocator may name a rounded size)
                fail(e.status(), fn, ": ", bytes, " bytes requested on ", d.name, ": ", e.what());
            }
        }
        try {
            *buffer = buffers().add(b.get());
        } catch (...) {
            if (b->memory) {
                std::lock_guard<std::mutex> lock(d.mutex);
                allocator_of(&d).release(b->memory, b->bytes, b->capacity);
            }
            throw;
        }
        b.release();
    });
}

KN_API kn_status kn_buffer_free(kn_buffer* buffer) {
    return guarded([&] {
        if (!buffer) return;
        std::unique_ptr<Buffer> b(buffers().remove(buffer));
        if (!b)
            fail(KN_ERROR_INVALID_ARGUMENT, "kn_buffer_free: buffer is not a live buffer (already freed, or not created "
                 "by kn_buffer_create)");
        if (b->memory) {
            std::lock_guard<std::mutex> lock(b->device->mutex);
            allocator_of(b->device).release(b->memory, b->bytes, b->capacity);
        }
    });
}

KN_API kn_status kn_buffer_size(const kn_buffer* buffer, int64_t* bytes) {
    return guarded([&] {
        check_out(bytes, "kn_buffer_size", "bytes");
        *bytes = checked_buffer(buffer, "kn_buffer_size", "buffer").bytes;
    });
}

KN_API kn_status kn_buffer_device(const kn_buffer* buffer, kn_device** device) {
    return guarded([&] {
        check_out(device, "kn_buffer_device", "device");
        *device = as_handle(checked_buffer(buffer, "kn_buffer_device", "buffer").device);
    });
}

}  // extern "C"

namespace {
void check_range(const Buffer& b, int64_t offset, int64_t bytes, const char* fn, const char* name) {
    check_non_negative(offset, fn, "offset");
    check_non_negative(bytes, fn, "bytes");
    if (add(offset, bytes, fn) > b.bytes)
        fail(KN_ERROR_SHAPE_MISMATCH, fn, ": ", bytes, " bytes at offset ", offset, " overrun buffer '", name,
             "' of ", b.bytes, " bytes");
}
}  // namespace

extern "C" {

KN_API kn_status kn_buffer_address(kn_buffer* buffer, int64_t offset, void** address) {
    return guarded([&] {
        const char* fn = "kn_buffer_address";
        check_out(address, fn, "address");
        const Buffer& b = checked_buffer(buffer, fn, "buffer");
        check_range(b, offset, 0, fn, "buffer");
        if (b.device->kind == KN_DEVICE_OPENCL)
            fail(KN_ERROR_NOT_SUPPORTED, fn, ": the buffer is on ", b.device->name,
                 " (OpenCL), whose memory is a cl_mem handle, not an address another library can use");
        // CPU: a host pointer; CUDA: a device pointer (the allocator's block, of which the buffer is the start).
        *address = b.memory ? static_cast<char*>(b.memory) + offset : nullptr;
    });
}

KN_API kn_status kn_buffer_write(kn_buffer* dst, int64_t dst_offset, const void* src, int64_t bytes) {
    return guarded([&] {
        const char* fn = "kn_buffer_write";
        const Buffer& b = checked_buffer(dst, fn, "dst");
        check_range(b, dst_offset, bytes, fn, "dst");
        if (bytes == 0) return;
        if (!src) fail(KN_ERROR_INVALID_ARGUMENT, fn, ": src is NULL");
        std::lock_guard<std::mutex> lock(b.device->mutex);
        b.device->write(b.memory, dst_offset, src, bytes);
    });
}

KN_API kn_status kn_buffer_read(const kn_buffer* src, int64_t src_offset, void* dst, int64_t bytes) {
    return guarded([&] {
        const char* fn = "kn_buffer_read";
        const Buffer& b = checked_buffer(src, fn, "src");
        check_range(b, src_offset, bytes, fn, "src");
        if (bytes == 0) return;
        if (!dst) fail(KN_ERROR_INVALID_ARGUMENT, fn, ": dst is NULL");
        std::lock_guard<std::mutex> lock(b.device->mutex);
        b.device->read(b.memory, src_offset, dst, bytes);
    });
}

KN_API kn_status kn_buffer_copy(kn_buffer* dst, int64_t dst_offset, const kn_buffer* src, int64_t src_offset,
                                int64_t bytes) {
    return guarded([&] {
        const char* fn = "kn_buffer_copy";
        const Buffer& d = checked_buffer(dst, fn, "dst");
        const Buffer& s = checked_buffer(src, fn, "src");
        check_range(d, dst_offset, bytes, fn, "dst");
        check_range(s, src_offset, bytes, fn, "src");
        if (bytes == 0) return;
        if (d.device == s.device) {
            if (d.memory == s.memory && dst_offset < src_offset + bytes && src_offset < dst_offset + bytes)
                fail(KN_ERROR_INVALID_ARGUMENT, fn, ": source and destination ranges overlap");
            std::lock_guard<std::mutex> lock(d.device->mutex);
            d.device->copy(d.memory, dst_offset, s.memory, src_offset, bytes);
            return;
        }
        // Across devices: stage through host memory, one device lock at a time (never both, so two
        // opposite copies cannot deadlock).
        std::vector<unsigned char> staging(static_cast<size_t>(bytes));
        {
            std::lock_guard<std::mutex> lock(s.device->mutex);
            s.device->read(s.memory, src_offset, staging.data(), bytes);
        }
        std::lock_guard<std::mutex> lock(d.device->mutex);
        d.device->write(d.memory, dst_offset, staging.data(), bytes);
    });
}

KN_API kn_status kn_buffer_fill_f32(kn_buffer* dst, int64_t offset, int64_t count, float value) {
    return guarded([&] {
        const char* fn = "kn_buffer_fill_f32";
        const Buffer& b = checked_buffer(dst, fn, "dst");
        check_non_negative(offset, fn, "offset");
        check_non_negative(count, fn, "count");
        if (add(offset, count, fn) > b.bytes / 4)
            fail(KN_ERROR_SHAPE_MISMATCH, fn, ": ", count, " elements at element offset ", offset,
                 " overrun buffer 'dst' of ", b.bytes / 4, " float32 elements");
        if (count == 0) return;
        std::lock_guard<std::mutex> lock(b.device->mutex);
        b.device->fill_f32(b.memory, offset, count, value);
    });
}

// ---- GEMM ---------------------------------------------------------------------------------------

KN_API kn_status kn_gemm_f32(kn_transpose trans_a, kn_transpose trans_b, int64_t m, int64_t n, int64_t k,
                             float alpha, const kn_buffer* a, int64_t lda, int64_t stride_a,
                             const kn_buffer* b, int64_t ldb, int64_t stride_b, float beta, kn_buffer* c,
                             int64_t ldc, int64_t stride_c, int64_t batch_count) {
    return guarded([&] {
        Call call("gemm");
        call.enumeration(trans_a, KN_TRANSPOSE, "trans_a");
        call.enumeration(trans_b, KN_TRANSPOSE, "trans_b");
        call.non_negative({{"m", m}, {"n", n}, {"k", k}, {"batch_count", batch_count}, {"stride_a", stride_a},
                           {"stride_b", stride_b}, {"stride_c", stride_c}});

        // Stored shapes: A is m x k (k x m transposed), B is k x n (n x k transposed).
        bool ta = trans_a == KN_TRANSPOSE, tb = trans_b == KN_TRANSPOSE;
        int64_t a_rows = ta ? k : m, a_cols = ta ? m : k;
        int64_t b_rows = tb ? n : k, b_cols = tb ? k : n;
        auto check_ld = [&](int64_t ld, int64_t rows, int64_t cols, const char* ld_name, const char* mat,
                            bool transposed) {
            // ld >= the row length, as kernels.h says; an empty row (k = 0) accepts ld = 0.
            if (ld < cols)
                call.fail(KN_ERROR_SHAPE_MISMATCH, ld_name, " = ", ld, " is smaller than the row length ", cols, " of ",
                          mat, " (stored ", rows, "x", cols, transposed ? ", transposed" : "", ")");
        };
        check_ld(lda, a_rows, a_cols, "lda", "A", ta);
        check_ld(ldb, b_rows, b_cols, "ldb", "B", tb);
        check_ld(ldc, m, n, "ldc", "C", false);

        // Elements each operand must hold: the last batch's last row ends at
        // (batch-1)*stride + (rows-1)*ld + cols. An empty product reads and writes nothing.
        bool empty = m == 0 || n == 0 || batch_count == 0;
        auto extent = [&](int64_t rows, int64_t cols, int64_t ld, int64_t stride) {
            if (empty || rows == 0 || cols == 0) return int64_t{0};
            return call.add(call.add(call.mul(batch_count - 1, stride), call.mul(rows - 1, ld)), cols);
        };
        auto dims = [&] { return cat("m=", m, ", n=", n, ", k=", k, ", batch_count=", batch_count); };
        auto a_shape = [&] { return cat("A (", a_rows, "x", a_cols, ", lda=", lda, ", stride_a=", stride_a, ", ", dims(), ")"); };
        auto b_shape = [&] { return cat("B (", b_rows, "x", b_cols, ", ldb=", ldb, ", stride_b=", stride_b, ", ", dims(), ")"); };
        auto c_shape = [&] { return cat("C (", m, "x", n, ", ldc=", ldc, ", stride_c=", stride_c, ", ", dims(), ")"); };
        const Operand& A = call.in("a", a, extent(a_rows, a_cols, lda, stride_a), a_shape);
        const Operand& B = call.in("b", b, extent(b_rows, b_cols, ldb, stride_b), b_shape);
        const Operand& C = call.out("c", c, extent(m, n, ldc, stride_c), c_shape);
        if (c == a || c == b) call.fail(KN_ERROR_INVALID_ARGUMENT, "c must not be the same buffer as a or b");
        call.check();
        if (empty) return;
        if (batch_count > 1 && stride_c < (m - 1) * ldc + n)
            call.fail(KN_ERROR_SHAPE_MISMATCH, "stride_c = ", stride_c, " makes the batches of C overlap (each C is ", m,
                      "x", n, " with ldc=", ldc, ", spanning ", (m - 1) * ldc + n, " elements)");
        call.run([&](Device& d) {
            d.gemm_f32({ta, tb, m, n, k, alpha, beta, A.memory(), lda, stride_a, B.memory(), ldb, stride_b, C.memory(),
                        ldc, stride_c, batch_count});
        });
    });
}

// ---- Dense layer --------------------------------------------------------------------------------

KN_API kn_status kn_linear_f32(kn_transpose trans_w, int64_t m, int64_t n, int64_t k, const kn_buffer* x,
                               const kn_buffer* w, const kn_buffer* bias, kn_unary_op activation, float alpha,
                               kn_buffer* y) {
    return guarded([&] {
        Call call("linear");
        call.enumeration(trans_w, KN_TRANSPOSE, "trans_w");
        call.enumeration(activation, KN_UNARY_POW_SCALAR, "activation");
        call.non_negative({{"m", m}, {"n", n}, {"k", k}});
        const bool tw = trans_w == KN_TRANSPOSE;
        auto shapes = [&] {
            return cat("x [m, k] = [", m, ", ", k, "], w ", tw ? "[n, k] = [" : "[k, n] = [", tw ? n : k, ", ",
                       tw ? k : n, "], bias [n] = [", n, "], y [m, n] = [", m, ", ", n, "]");
        };
        const Operand& X = call.in("x", x, call.mul(m, k), shapes);
        const Operand& W = call.in("w", w, call.mul(k, n), shapes);
        const Operand& B = call.in("bias", optional(bias), n, shapes);
        const Operand& Y = call.out("y", y, call.mul(m, n), shapes);
        if (y == x || y == w || (bias && y == bias))
            call.fail(KN_ERROR_INVALID_ARGUMENT, "y must not be the same buffer as x, w or bias");
        call.check();
        if (m == 0 || n == 0) return;
        const bool identity = activation == KN_UNARY_SCALE && alpha == 1.0f;
        kn::GemmArgs gemm{false, tw, m, n, k, 1.0f, 0.0f, X.memory(), k, 0, W.memory(), tw ? k : n, 0,
                          Y.memory(), n, 0, 1};
        call.run([&](Device& d) { d.linear_f32({gemm, B.memory(), !identity, activation, alpha}); });
    });
}

KN_API kn_status kn_linear_backward_f32(kn_unary_op activation, float alpha, int64_t m, int64_t n,
                                        const kn_buffer* x, const kn_buffer* y, const kn_buffer* dy, kn_buffer* dz,
                                        kn_buffer* dbias) {
    return guarded([&] {
        Call call("linear_backward");
        call.enumeration(activation, KN_UNARY_POW_SCALAR, "activation");
        call.non_negative({{"m", m}, {"n", n}});
        const bool uses_y = kn::unary_backward_uses_output(activation);
        const kn_buffer* needed = uses_y ? y : x;
        if (!needed)
            call.fail(KN_ERROR_INVALID_ARGUMENT, "the derivative of this activation is computed from ",
                      uses_y ? "the forward output y" : "the pre-activation x", ", which is NULL");
        const int64_t count = call.mul(m, n);
        auto shapes = [&] { return cat("[m, n] = [", m, ", ", n, "], dbias [n] = [", n, "]"); };
        const Operand& N = call.in(uses_y ? "y" : "x", needed, count, shapes);
        const Operand& DY = call.in("dy", dy, count, shapes);
        const Operand& DZ = call.out("dz", dz, count, shapes);
        const Operand& DB = call.out("dbias", optional(dbias), n, shapes);
        if (dbias && (dbias == dz || dbias == dy || dbias == needed))
            call.fail(KN_ERROR_INVALID_ARGUMENT, "dbias must not be the same buffer as dy, dz or the activation's input");
        call.check();
        if (n == 0) return;
        if (m == 0) {
            // No rows: the column sums are zero.
            if (dbias) call.run([&](Device& d) { d.fill_f32(DB.memory(), 0, n, 0.0f); });
            return;
        }
        call.run([&](Device& d) {
            d.linear_backward_f32({activation, alpha, uses_y ? nullptr : N.memory(), uses_y ? N.memory() : nullptr,
                                   DY.memory(), DZ.memory(), DB.memory(), m, n});
        });
    });
}

// ---- Elementwise --------------------------------------------------------------------------------

KN_API kn_status kn_unary_f32(kn_unary_op op, float alpha, const kn_buffer* x, kn_buffer* y, int64_t n) {
    return guarded([&] {
        Call call("unary");
        call.enumeration(op, KN_UNARY_POW_SCALAR, "op");
        call.non_negative({{"n", n}});
        auto count = [&] { return cat("n = ", n); };
        const Operand& X = call.in("x", x, n, count);
        const Operand& Y = call.out("y", y, n, count);
        call.check();
        if (n == 0) return;
        call.run([&](Device& d) { d.unary_f32({op, alpha, X.memory(), Y.memory(), n}); });
    });
}

KN_API kn_status kn_unary_backward_f32(kn_unary_op op, float alpha, const kn_buffer* x, const kn_buffer* y,
                                       const kn_buffer* dy, kn_buffer* dx, int64_t n) {
    return guarded([&] {
        Call call("unary_backward");
        call.enumeration(op, KN_UNARY_POW_SCALAR, "op");
        call.non_negative({{"n", n}});
        bool uses_y = kn::unary_backward_uses_output(op);
        const kn_buffer* needed = uses_y ? y : x;
        if (!needed)
            call.fail(KN_ERROR_INVALID_ARGUMENT, "the derivative of this op is computed from ",
                      uses_y ? "the forward output y" : "the input x", ", which is NULL");
        auto count = [&] { return cat("n = ", n); };
        const Operand& N = call.in(uses_y ? "y" : "x", needed, n, count);
        const Operand& DY = call.in("dy", dy, n, count);
        const Operand& DX = call.out("dx", dx, n, count);
        call.check();
        if (n == 0) return;
        call.run([&](Device& d) {
            d.unary_backward_f32({op, alpha, uses_y ? nullptr : N.memory(), uses_y ? N.memory() : nullptr, DY.memory(),
                                  DX.memory(), n});
        });
    });
}

KN_API kn_status kn_unary_backward_uses_output(kn_unary_op op, int32_t* uses_output) {
    return guarded([&] {
        const char* fn = "unary_backward_uses_output";
        check_enum(op, KN_UNARY_POW_SCALAR, fn, "op");
        check_out(uses_output, fn, "uses_output");
        *uses_output = kn::unary_backward_uses_output(op) ? 1 : 0;
    });
}

KN_API kn_status kn_binary_f32(kn_binary_op op, const kn_buffer* a, const int64_t* a_dims, int32_t a_rank,
                               const kn_buffer* b, const int64_t* b_dims, int32_t b_rank, kn_buffer* c,
                               const int64_t* c_dims, int32_t c_rank) {
    return guarded([&] {
        Call call("binary");
        call.enumeration(op, KN_BINARY_GREATER_EQUAL, "op");
        int64_t na = checked_elements(a_dims, a_rank, call.fn, "a");
        int64_t nb = checked_elements(b_dims, b_rank, call.fn, "b");
        int64_t nc = checked_elements(c_dims, c_rank, call.fn, "c");
        kn::BroadcastGeometry g = broadcast(a_dims, a_rank, b_dims, b_rank, c_dims, c_rank, call.fn);
        auto a_shape = [&] { return "shape " + shape_string(a_dims, a_rank); };
        auto b_shape = [&] { return "shape " + shape_string(b_dims, b_rank); };
        auto c_shape = [&] { return "shape " + shape_string(c_dims, c_rank); };
        const Operand& A = call.in("a", a, na, a_shape);
        const Operand& B = call.in("b", b, nb, b_shape);
        const Operand& C = call.out("c", c, nc, c_shape);
        call.check();
        if (nc == 0) return;
        call.run([&](Device& d) { d.binary_f32({op, g, A.memory(), B.memory(), C.memory()}); });
    });
}

KN_API kn_status kn_binary_backward_f32(kn_binary_op op, const kn_buffer* a, const int64_t* a_dims,
                                        int32_t a_rank, const kn_buffer* b, const int64_t* b_dims,
                                        int32_t b_rank, const kn_buffer* dc, const int64_t* c_dims,
                                        int32_t c_rank, kn_buffer* da, kn_buffer* db) {
    return guarded([&] {
        Call call("binary_backward");
        call.enumeration(op, KN_BINARY_GREATER_EQUAL, "op");
        int64_t na = checked_elements(a_dims, a_rank, call.fn, "a");
        int64_t nb = checked_elements(b_dims, b_rank, call.fn, "b");
        int64_t nc = checked_elements(c_dims, c_rank, call.fn, "dc");
        kn::BroadcastGeometry g = broadcast(a_dims, a_rank, b_dims, b_rank, c_dims, c_rank, call.fn);
        auto a_shape = [&] { return "shape " + shape_string(a_dims, a_rank); };
        auto b_shape = [&] { return "shape " + shape_string(b_dims, b_rank); };
        auto c_shape = [&] { return "shape " + shape_string(c_dims, c_rank); };
        auto broadcast_shape = [&] { return "the broadcast " + c_shape(); };  // da, db: unreduced gradients
        const Operand& A = call.in("a", a, na, a_shape);
        const Operand& B = call.in("b", b, nb, b_shape);
        const Operand& DC = call.in("dc", dc, nc, c_shape);
        const Operand& DA = call.out("da", optional(da), nc, broadcast_shape);
        const Operand& DB = call.out("db", optional(db), nc, broadcast_shape);
        call.check();
        if (nc == 0 || (!da && !db)) return;
        call.run([&](Device& d) {
            d.binary_backward_f32({op, g, A.memory(), B.memory(), DC.memory(), DA.memory(), DB.memory()});
        });
    });
}

// ---- Layout -------------------------------------------------------------------------------------

KN_API kn_status kn_strided_copy_f32(const kn_buffer* x, int64_t x_offset, const int64_t* x_strides, int32_t x_rank,
                                     kn_buffer* y, int64_t y_offset, const int64_t* y_strides, int32_t y_rank,
                                     const int64_t* copy_dims, int32_t copy_rank) {
    return guarded([&] {
        Call call("strided_copy");
        int64_t n = checked_elements(copy_dims, copy_rank, call.fn, "copy");
        if (x_rank != copy_rank)
            call.fail(KN_ERROR_SHAPE_MISMATCH, "x_strides has x_rank = ", x_rank, " entries but copy_dims has copy_rank = ",
                      copy_rank);
        if (y_strides ? y_rank != copy_rank : y_rank != 0)
            call.fail(KN_ERROR_SHAPE_MISMATCH, "y_strides has y_rank = ", y_rank, " entries but copy_dims has copy_rank = ",
                      copy_rank, y_strides ? "" : " (y_strides is NULL: y contiguous, y_rank must be 0)");
        if (x_rank > 0 && !x_strides) call.fail(KN_ERROR_INVALID_ARGUMENT, "x_strides is NULL with rank ", x_rank);
        call.non_negative({{"x_offset", x_offset}, {"y_offset", y_offset}});
        // y's strides: as given, or the row-major ones of copy_dims (y contiguous).
        int64_t y_layout[KN_MAX_RANK] = {};
        int64_t row_major = 1;
        for (int32_t d = copy_rank - 1; d >= 0; --d) {
            y_layout[d] = y_strides ? y_strides[d] : row_major;
            if (n > 0) row_major *= copy_dims[d];  // at most n: no overflow (an empty copy needs no strides)
        }
        for (int32_t d = 0; d < copy_rank; ++d) {
            if (x_strides[d] < 0) call.fail(KN_ERROR_INVALID_ARGUMENT, "x_strides[", d, "] = ", x_strides[d], " is negative");
            if (y_layout[d] < 0) call.fail(KN_ERROR_INVALID_ARGUMENT, "y_strides[", d, "] = ", y_layout[d], " is negative");
        }
        auto x_view = [&] {
            return cat("the view (x_offset = ", x_offset, ", x_strides ", shape_string(x_strides, x_rank), ", copy_dims ",
                       shape_string(copy_dims, copy_rank), ")");
        };
        auto y_view = [&] {
            return cat("the view (y_offset = ", y_offset, ", y_strides ", shape_string(y_layout, copy_rank),
                       y_strides ? "" : " (contiguous)", ", copy_dims ", shape_string(copy_dims, copy_rank), ")");
        };
        // The last element read and written: offset + sum (dims[d] - 1) * strides[d]; an empty copy
        // touches nothing.
        int64_t reads = 0, writes = 0;
        if (n > 0) {
            int64_t last_read = x_offset, last_written = y_offset;
            for (int32_t d = 0; d < copy_rank; ++d) {
                last_read = call.add(last_read, call.mul(copy_dims[d] - 1, x_strides[d]));
                last_written = call.add(last_written, call.mul(copy_dims[d] - 1, y_layout[d]));
            }
            reads = call.add(last_read, 1);
            writes = call.add(last_written, 1);
            // No two writes on one element: sorted by stride, each dimension's stride must pass the
            // span of all the smaller ones (this refuses an expand into y and interleaved layouts).
            int32_t order[KN_MAX_RANK], count = 0;
            for (int32_t d = 0; d < copy_rank; ++d) {  // insertion sort by y stride (at most 8 entries)
                if (copy_dims[d] <= 1) continue;
                int32_t k = count++;
                for (; k > 0 && y_layout[order[k - 1]] > y_layout[d]; --k) order[k] = order[k - 1];
                order[k] = d;
            }
            int64_t span = 0;  // the largest offset reached by the dimensions so far
            for (int32_t k = 0; k < count; ++k) {
                const int32_t d = order[k];
                if (y_layout[d] <= span)
                    call.fail(KN_ERROR_INVALID_ARGUMENT, "y_strides[", d, "] = ", y_layout[d], " writes elements of ",
                              y_view(), " more than once (each stride of a dimension longer than 1 must exceed ", span,
                              ", the span of the smaller strides)");
                span += (copy_dims[d] - 1) * y_layout[d];
            }
        }
        const Operand& X = call.in("x", x, reads, x_view);
        const Operand& Y = call.out("y", y, writes, y_view);
        if (x == y) call.fail(KN_ERROR_INVALID_ARGUMENT, "y must not be the same buffer as x");
        call.check();
        if (n == 0) return;

        // Normalise: drop size-1 dimensions, merge neighbours where both x and y stay linear across
        // them (a permute that keeps the last dimensions in place becomes rows of contiguous floats).
        kn::StridedCopyArgs args{};
        args.x_offset = x_offset;
        args.y_offset = y_offset;
        args.n = n;
        args.rank = merge_linear_dims(copy_dims, copy_rank, x_strides, y_layout, args.dims, args.x_strides, args.y_strides);
        args.y_contiguous = true;  // every dimension left is longer than 1 (or the single element)
        int64_t y_row_major = 1;
        for (int32_t d = args.rank - 1; d >= 0; --d) {
            if (args.dims[d] > 1 && args.y_strides[d] != y_row_major) args.y_contiguous = false;
            y_row_major *= args.dims[d];
        }
        call.run([&](Device& d) {
            args.x = X.memory();
            args.y = Y.memory();
            d.strided_copy_f32(args);
        });
    });
}

// ---- Reductions ---------------------------------------------------------------------------------

KN_API kn_status kn_reduce_f32(kn_reduce_op op, const kn_buffer* x, kn_buffer* y, int64_t outer, int64_t reduce,
                               int64_t inner) {
    return guarded([&] {
        Call call("reduce");
        call.enumeration(op, KN_REDUCE_SUM_SQUARES, "op");
        call.non_negative({{"outer", outer}, {"reduce", reduce}, {"inner", inner}});
        int64_t out = call.mul(outer, inner);
        auto shape = [&] { return cat("[outer, reduce, inner] = [", outer, ", ", reduce, ", ", inner, "]"); };
        const Operand& X = call.in("x", x, call.mul(out, reduce), shape);
        const Operand& Y = call.out("y", y, out, shape);
        if (x == y) call.fail(KN_ERROR_INVALID_ARGUMENT, "y must not be the same buffer as x");
        call.check();
        if (out == 0) return;
        if (reduce == 0 && (op == KN_REDUCE_MAX || op == KN_REDUCE_MIN))
            call.fail(KN_ERROR_INVALID_ARGUMENT, op == KN_REDUCE_MAX ? "max" : "min", " over zero elements has no value (",
                      shape(), ")");
        call.run([&](Device& d) {
            if (reduce == 0)  // a sum over nothing is 0, a mean NaN (0 / 0)
                d.fill_f32(Y.memory(), 0, out, op == KN_REDUCE_MEAN ? std::numeric_limits<float>::quiet_NaN() : 0.0f);
            else
                d.reduce_f32({op, X.memory(), Y.memory(), outer, reduce, inner});
        });
    });
}

KN_API kn_status kn_argreduce_f32(kn_argreduce_op op, const kn_buffer* x, kn_buffer* indices, int64_t outer,
                                  int64_t reduce, int64_t inner) {
    return guarded([&] {
        Call call("argreduce");
        call.enumeration(op, KN_ARGMIN, "op");
        call.non_negative({{"outer", outer}, {"reduce", reduce}, {"inner", inner}});
        int64_t out = call.mul(outer, inner);
        auto shape = [&] { return cat("[outer, reduce, inner] = [", outer, ", ", reduce, ", ", inner, "]"); };
        const Operand& X = call.in("x", x, call.mul(out, reduce), shape);
        const Operand& I = call.out("indices", indices, out, shape, kInt64);
        if (x == indices) call.fail(KN_ERROR_INVALID_ARGUMENT, "indices must not be the same buffer as x");
        call.check();
        if (out == 0) return;
        if (reduce == 0)
            call.fail(KN_ERROR_INVALID_ARGUMENT, op == KN_ARGMAX ? "argmax" : "argmin",
                      " over zero elements has no index (", shape(), ")");
        call.run([&](Device& d) { d.argreduce_f32({op, X.memory(), I.memory(), outer, reduce, inner}); });
    });
}

// ---- Softmax ------------------------------------------------------------------------------------

KN_API kn_status kn_softmax_f32(const kn_buffer* x, kn_buffer* y, int64_t rows, int64_t cols, int32_t log) {
    return guarded([&] {
        Call call("softmax");
        call.non_negative({{"rows", rows}, {"cols", cols}});
        int64_t n = call.mul(rows, cols);
        auto shape = [&] { return cat("[rows, cols] = [", rows, ", ", cols, "]"); };
        const Operand& X = call.in("x", x, n, shape);
        const Operand& Y = call.out("y", y, n, shape);
        call.check();
        if (n == 0) return;
        call.run([&](Device& d) { d.softmax_f32({X.memory(), Y.memory(), rows, cols, log != 0}); });
    });
}

KN_API kn_status kn_softmax_backward_f32(const kn_buffer* y, const kn_buffer* dy, kn_buffer* dx, int64_t rows,
                                         int64_t cols, int32_t log) {
    return guarded([&] {
        Call call("softmax_backward");
        call.non_negative({{"rows", rows}, {"cols", cols}});
        int64_t n = call.mul(rows, cols);
        auto shape = [&] { return cat("[rows, cols] = [", rows, ", ", cols, "]"); };
        const Operand& Y = call.in("y", y, n, shape);
        const Operand& DY = call.in("dy", dy, n, shape);
        const Operand& DX = call.out("dx", dx, n, shape);
        call.check();
        if (n == 0) return;
        call.run([&](Device& d) { d.softmax_backward_f32({Y.memory(), DY.memory(), DX.memory(), rows, cols, log != 0}); });
    });
}


// ---- Losses -------------------------------------------------------------------------------------

KN_API kn_status kn_cross_entropy_f32(const kn_buffer* logits, const kn_buffer* labels, kn_buffer* losses,
                                      int64_t rows, int64_t cols) {
    return guarded([&] {
        Call call("cross_entropy");
        call.non_negative({{"rows", rows}, {"cols", cols}});
        auto shape = [&] { return cat("[rows, cols] = [", rows, ", ", cols, "]"); };
        const Operand& X = call.in("logits", logits, call.mul(rows, cols), shape);
        const Operand& L = call.in("labels", labels, rows, shape, kInt64);
        const Operand& Y = call.out("losses", losses, rows, shape);
        call.check();
        if (rows == 0) return;
        if (cols == 0) call.fail(KN_ERROR_SHAPE_MISMATCH, "no classes (", shape(), ")");
        call.run([&](Device& d) { d.cross_entropy_f32({X.memory(), L.memory(), Y.memory(), rows, cols}); });
    });
}

KN_API kn_status kn_cross_entropy_backward_f32(const kn_buffer* logits, const kn_buffer* labels,
                                               const kn_buffer* dlosses, kn_buffer* dlogits, int64_t rows,
                                               int64_t cols) {
    return guarded([&] {
        Call call("cross_entropy_backward");
        call.non_negative({{"rows", rows}, {"cols", cols}});
        int64_t n = call.mul(rows, cols);
        auto shape = [&] { return cat("[rows, cols] = [", rows, ", ", cols, "]"); };
        const Operand& X = call.in("logits", logits, n, shape);
        const Operand& L = call.in("labels", labels, rows, shape, kInt64);
        const Operand& DY = call.in("dlosses", dlosses, rows, shape);
        const Operand& DX = call.out("dlogits", dlogits, n, shape);
        call.check();
        if (rows == 0 || cols == 0) return;
        call.run([&](Device& d) {
            d.cross_entropy_backward_f32({X.memory(), L.memory(), DY.memory(), DX.memory(), rows, cols});
        });
    });
}

// ---- Gather / scatter-add -----------------------------------------------------------------------
// Error design: a GPU kernel cannot raise an error, and an out-of-range index would read or write
// outside the table. So the indices are read to the host and checked before any kernel runs (one
// synchronisation and 8 n bytes; n is a batch of tokens, thousands, not millions), and the first bad
// one is reported with its position. The scatter-add's deterministic order needs the positions
// sorted by row anyway; having the indices on the host, the API layer sorts them there (a stable
// sort, O(n log n)) and hands the kernels the plan (ScatterAddRowsArgs in ops.h).

}  // extern "C"

namespace {

// The n indices of `indices`, each checked to lie in [0, rows); called under the device's lock.
std::vector<int64_t> checked_indices(const Call& call, Device& d, void* indices, int64_t n, int64_t rows) {
    std::vector<int64_t> host(static_cast<size_t>(n));
    d.read(indices, 0, host.data(), n * static_cast<int64_t>(sizeof(int64_t)));
    for (int64_t i = 0; i < n; ++i)
        if (host[i] < 0 || host[i] >= rows)
            call.fail(KN_ERROR_INVALID_ARGUMENT, "indices[", i, "] = ", host[i], " is outside [0, ", rows,
                      ") (the table has ", rows, " rows)");
    return host;
}

// Device memory for one call's temporary data, freed when the call ends (also on an error).
class DeviceScratch {
public:
    DeviceScratch(Device& d, int64_t bytes) : d_(d), memory_(d.alloc(bytes)) {}
    ~DeviceScratch() { d_.free(memory_); }
    DeviceScratch(const DeviceScratch&) = delete;
    DeviceScratch& operator=(const DeviceScratch&) = delete;
    void* memory() const { return memory_; }

private:
    Device& d_;
    void* memory_;
};

}  // namespace

extern "C" {

KN_API kn_status kn_gather_rows_f32(const kn_buffer* table, int64_t rows, int64_t cols, const kn_buffer* indices,
                                    int64_t n, kn_buffer* y) {
    return guarded([&] {
        Call call("gather_rows");
        call.non_negative({{"rows", rows}, {"cols", cols}, {"n", n}});
        auto shape = [&] { return cat("table [rows, cols] = [", rows, ", ", cols, "] and n = ", n, " indices"); };
        const Operand& T = call.in("table", table, call.mul(rows, cols), shape);
        const Operand& I = call.in("indices", indices, n, shape, kInt64);
        const Operand& Y = call.out("y", y, call.mul(n, cols), shape);
        if (table == y) call.fail(KN_ERROR_INVALID_ARGUMENT, "y must not be the same buffer as table");
        call.check();
        if (n == 0) return;
        call.run([&](Device& d) {
            checked_indices(call, d, I.memory(), n, rows);  // before cols == 0 returns: a bad index is still bad
            if (cols == 0) return;
            d.gather_rows_f32({T.memory(), I.memory(), Y.memory(), n, cols});
        });
    });
}

KN_API kn_status kn_scatter_add_rows_f32(const kn_buffer* dy, const kn_buffer* indices, int64_t n, kn_buffer* dtable,
                                         int64_t rows, int64_t cols, int64_t padding_index) {
    return guarded([&] {
        Call call("scatter_add_rows");
        call.non_negative({{"n", n}, {"rows", rows}, {"cols", cols}});
        if (padding_index < -1 || (padding_index >= rows && padding_index != -1))
            call.fail(KN_ERROR_INVALID_ARGUMENT, "padding_index = ", padding_index, " is neither -1 (none) nor in [0, ",
                      rows, ")");
        auto shape = [&] { return cat("dtable [rows, cols] = [", rows, ", ", cols, "] and n = ", n, " indices"); };
        const Operand& DY = call.in("dy", dy, call.mul(n, cols), shape);
        const Operand& I = call.in("indices", indices, n, shape, kInt64);
        const Operand& DT = call.out("dtable", dtable, call.mul(rows, cols), shape);
        if (dy == dtable) call.fail(KN_ERROR_INVALID_ARGUMENT, "dtable must not be the same buffer as dy");
        call.check();
        if (n == 0) return;
        call.run([&](Device& d) {
            const std::vector<int64_t> index = checked_indices(call, d, I.memory(), n, rows);
            if (cols == 0) return;
            // The plan: the positions sorted by row, stably (so ascending within a row), then cut into
            // one segment per distinct row. O(n log n) on the host, nothing the size of the table.
            std::vector<int64_t> sorted;
            sorted.reserve(static_cast<size_t>(n));
            for (int64_t i = 0; i < n; ++i)
                if (index[static_cast<size_t>(i)] != padding_index) sorted.push_back(i);
            if (sorted.empty()) return;  // every index is the padding row
            std::stable_sort(sorted.begin(), sorted.end(), [&](int64_t a, int64_t b) { return index[a] < index[b]; });
            const int64_t positions = static_cast<int64_t>(sorted.size());
            int64_t segments = 1;
            for (int64_t k = 1; k < positions; ++k) segments += index[sorted[k]] != index[sorted[k - 1]];
            std::vector<int64_t> plan(static_cast<size_t>(2 * segments + 1 + positions));
            int64_t* targets = plan.data();
            int64_t* starts = targets + segments;
            std::copy(sorted.begin(), sorted.end(), starts + segments + 1);
            for (int64_t k = 0, s = 0; k < positions; ++k)
                if (k == 0 || index[sorted[k]] != index[sorted[k - 1]]) {
                    targets[s] = index[sorted[k]];
                    starts[s++] = k;
                }
            starts[segments] = positions;
            const int64_t bytes = static_cast<int64_t>(plan.size() * sizeof(int64_t));
            DeviceScratch scratch(d, bytes);
            d.write(scratch.memory(), 0, plan.data(), bytes);
            d.scatter_add_rows_f32({DY.memory(), scratch.memory(), DT.memory(), segments, positions, cols});
        });
    });
}

// ---- Dropout ------------------------------------------------------------------------------------

}  // extern "C"

namespace {
kn_status dropout_call(const kn_buffer* in, kn_buffer* out, int64_t n, float p, int64_t seed, int64_t offset,
                       bool backward) {
    return guarded([&] {
        Call call(backward ? "dropout_backward" : "dropout");
        call.non_negative({{"n", n}, {"offset", offset}});
        if (!(p >= 0.0f && p < 1.0f)) call.fail(KN_ERROR_INVALID_ARGUMENT, "p = ", p, " is outside [0, 1)");
        auto count = [&] { return cat("n = ", n); };
        const Operand& X = call.in(backward ? "dy" : "x", in, n, count);
        const Operand& Y = call.out(backward ? "dx" : "y", out, n, count);
        call.check();
        if (n == 0) return;
        kn::DropoutArgs args{X.memory(), Y.memory(), n, p, static_cast<uint64_t>(seed), static_cast<uint64_t>(offset)};
        call.run([&](Device& d) {
            if (backward) d.dropout_backward_f32(args);
            else d.dropout_f32(args);
        });
    });
}
}  // namespace

extern "C" {

KN_API kn_status kn_dropout_f32(const kn_buffer* x, kn_buffer* y, int64_t n, float p, int64_t seed, int64_t offset) {
    return dropout_call(x, y, n, p, seed, offset, false);
}

KN_API kn_status kn_dropout_backward_f32(const kn_buffer* dy, kn_buffer* dx, int64_t n, float p, int64_t seed,
                                         int64_t offset) {
    return dropout_call(dy, dx, n, p, seed, offset, true);
}

// ---- Optimizer updates --------------------------------------------------------------------------

KN_API kn_status kn_clamp_f32(const kn_buffer* x, kn_buffer* y, int64_t n, float low, float high) {
    return guarded([&] {
        Call call("clamp");
        call.non_negative({{"n", n}});
        // low > high is allowed and gives high everywhere, as min(max(x, low), high) and PyTorch do.
        if (std::isnan(low) || std::isnan(high))
            call.fail(KN_ERROR_INVALID_ARGUMENT, "the bounds must be numbers (low = ", low, ", high = ", high, ")");
        auto count = [&] { return cat("n = ", n); };
        const Operand& X = call.in("x", x, n, count);
        const Operand& Y = call.out("y", y, n, count);
        call.check();
        if (n == 0) return;
        call.run([&](Device& d) { d.clamp_f32({X.memory(), Y.memory(), n, low, high}); });
    });
}

}  // extern "C"

namespace {
// Learning rates, eps, decay and momentum factors: each >= 0 (NaN is refused too).
void check_rates(const char* fn, std::initializer_list<std::pair<const char*, float>> rates) {
    for (const auto& [name, v] : rates)
        if (!(v >= 0.0f)) fail(KN_ERROR_INVALID_ARGUMENT, fn, ": ", name, " = ", v, " must be >= 0");
}

// The hyper-parameter checks of each optimizer, shared by its per-tensor and many-tensor calls.
// has_velocity: whether the velocity operand (a buffer, or the many-call's array) was given; a
// many-call of no tensors needs no arrays at all, as kn_adam_step_many_f32.
void check_sgd(const char* fn, float lr, float momentum, float dampening, float weight_decay, int32_t nesterov,
               bool has_velocity, const char* velocity_kind) {
    check_rates(fn, {{"lr", lr}, {"momentum", momentum}, {"weight_decay", weight_decay}});
    if (momentum != 0.0f && !has_velocity)
        fail(KN_ERROR_INVALID_ARGUMENT, fn, ": momentum = ", momentum, " needs a velocity ", velocity_kind);
    if (nesterov && (momentum == 0.0f || dampening != 0.0f))
        fail(KN_ERROR_INVALID_ARGUMENT, fn, ": Nesterov momentum needs momentum > 0 and dampening = 0");
}

void check_adam(const char* fn, float lr, float beta1, float beta2, float eps, float weight_decay, int64_t step) {
    check_rates(fn, {{"lr", lr}, {"eps", eps}, {"weight_decay", weight_decay}});
    if (!(beta1 >= 0.0f && beta1 < 1.0f)) fail(KN_ERROR_INVALID_ARGUMENT, fn, ": beta1 = ", beta1, " is outside [0, 1)");
    if (!(beta2 >= 0.0f && beta2 < 1.0f)) fail(KN_ERROR_INVALID_ARGUMENT, fn, ": beta2 = ", beta2, " is outside [0, 1)");
    if (step < 1) fail(KN_ERROR_INVALID_ARGUMENT, fn, ": step = ", step, " must be >= 1 (the first update is step 1)");
}

void check_rmsprop(const char* fn, float lr, float alpha, float eps, float weight_decay, float momentum,
                   bool has_velocity, const char* velocity_kind) {
    check_rates(fn, {{"lr", lr}, {"eps", eps}, {"weight_decay", weight_decay}, {"momentum", momentum}});
    if (!(alpha >= 0.0f && alpha <= 1.0f)) fail(KN_ERROR_INVALID_ARGUMENT, fn, ": alpha = ", alpha, " is outside [0, 1]");
    if (momentum != 0.0f && !has_velocity)
        fail(KN_ERROR_INVALID_ARGUMENT, fn, ": momentum = ", momentum, " needs a velocity ", velocity_kind);
}

// One operand array of a kn_*_step_many_f32 call: its name ("grad") and count handles. An operand
// the call does not use (velocity when momentum == 0) has used = false: it is not read at all, and
// its memory is null in every tensor.
struct ManyOperand {
    const char* name;
    const kn_buffer* const* handles;
    bool used = true;
};
constexpr int kMaxManyOperands = 4;

// The checks and the dispatch of every kn_*_step_many_f32 call. Each bad operand is named by its
// array and tensor index ("grad[3] holds ...", "m[0] and v[2] are the same buffer"): every array
// present, every n[t] >= 0, every buffer live, on one device and holding n[t] float32 elements, and
// no buffer twice anywhere in the call (the tensors are updated in parallel, so even two tensors
// sharing a state buffer would race). make(memory, n) builds tensor t's per-tensor record from its
// operands' memory (memory[k] for operand k; null for an unused one); empty tensors are dropped;
// run(device, ManyArgs) makes the backend call under the device's lock.
template <typename Tensor, typename Make, typename Run>
void many_call(const char* fn, int64_t count, std::initializer_list<ManyOperand> operands, const int64_t* n, Make&& make,
               Run&& run) {
    check_non_negative(count, fn, "count");
    if (count == 0) return;
    const ManyOperand* arrays = operands.begin();
    const int K = static_cast<int>(operands.size());
    for (int k = 0; k < K; ++k)
        if (arrays[k].used && !arrays[k].handles)
            fail(KN_ERROR_INVALID_ARGUMENT, fn, ": the array '", arrays[k].name, "' is NULL (count = ", count, ")");
    if (!n) fail(KN_ERROR_INVALID_ARGUMENT, fn, ": the array 'n' is NULL (count = ", count, ")");
    // Reused between calls so a training step allocates nothing here after its first one.
    struct Seen {
        const kn_buffer* handle;
        int64_t tensor;
        int operand;
        bool operator<(const Seen& o) const { return std::tie(handle, tensor, operand) < std::tie(o.handle, o.tensor, o.operand); }
    };
    thread_local std::vector<Tensor> tensors;
    thread_local std::vector<Seen> seen;
    tensors.clear();
    seen.clear();
    Device* device = nullptr;
    Seen device_from{};  // the operand that named the device
    for (int64_t t = 0; t < count; ++t) {
        if (n[t] < 0) fail(KN_ERROR_INVALID_ARGUMENT, fn, ": n[", t, "] = ", n[t], " is negative");
        void* memory[kMaxManyOperands] = {};
        for (int k = 0; k < K; ++k) {
            if (!arrays[k].used) continue;
            const char* name = arrays[k].name;
            const kn_buffer* h = arrays[k].handles[t];
            if (!h) fail(KN_ERROR_INVALID_ARGUMENT, fn, ": buffer ", name, "[", t, "] is NULL");
            Buffer* b = buffers().find(h);
            if (!b)
                fail(KN_ERROR_INVALID_ARGUMENT, fn, ": buffer ", name, "[", t,
                     "] is not a live buffer (already freed, or not created by kn_buffer_create)");
            if (!device) {
                device = b->device;
                device_from = {h, t, k};
            } else if (b->device != device) {
                fail(KN_ERROR_DEVICE_MISMATCH, fn, ": ", arrays[device_from.operand].name, "[", device_from.tensor, "] is on ",
                     device->name, " but ", name, "[", t, "] is on ", b->device->name, "; move them to one device first");
            }
            if (b->bytes / 4 < n[t])
                fail(KN_ERROR_SHAPE_MISMATCH, fn, ": buffer ", name, "[", t, "] holds ", b->bytes / 4, " float32 elements (",
                     b->bytes, " bytes) but n[", t, "] = ", n[t], " needs ", n[t]);
            seen.push_back({h, t, k});
            memory[k] = b->memory;
        }
        if (n[t] > 0) tensors.push_back(make(memory, n[t]));
    }
    std::sort(seen.begin(), seen.end());
    for (size_t i = 1; i < seen.size(); ++i)
        if (seen[i].handle == seen[i - 1].handle) {
            const Seen &a = seen[i - 1], &c = seen[i];
            fail(KN_ERROR_INVALID_ARGUMENT, fn, ": ", arrays[a.operand].name, "[", a.tensor, "] and ", arrays[c.operand].name,
                 "[", c.tensor, "] are the same buffer");
        }
    if (tensors.empty()) return;
    std::lock_guard<std::mutex> lock(device->mutex);
    run(*device, kn::ManyArgs<Tensor>{tensors.data(), static_cast<int64_t>(tensors.size())});
}
}  // namespace

extern "C" {

KN_API kn_status kn_sgd_step_f32(kn_buffer* param, const kn_buffer* grad, kn_buffer* velocity, int64_t n, float lr,
                                 float momentum, float dampening, float weight_decay, int32_t nesterov,
                                 int32_t first_step) {
    return guarded([&] {
        Call call("sgd_step");
        auto count = [&] { return cat("n = ", n); };
        const Operand& P = call.out("param", param, n, count);
        const Operand& G = call.in("grad", grad, n, count);
        check_sgd(call.fn, lr, momentum, dampening, weight_decay, nesterov, velocity != nullptr, "buffer");
        call.non_negative({{"n", n}});
        const Operand& V = call.out("velocity", optional(momentum != 0.0f ? velocity : nullptr), n, count);
        call.all_distinct();
        call.check();
        if (n == 0) return;
        call.run([&](Device& d) {
            d.sgd_step_f32({P.memory(), G.memory(), V.memory(), n, lr, momentum, dampening, weight_decay, nesterov != 0,
                            first_step != 0});
        });
    });
}

KN_API kn_status kn_sgd_step_many_f32(int64_t count, kn_buffer* const* param, const kn_buffer* const* grad,
                                      kn_buffer* const* velocity, const int64_t* n, float lr, float momentum,
                                      float dampening, float weight_decay, int32_t nesterov, int32_t first_step) {
    return guarded([&] {
        const char* fn = "sgd_step_many";
        check_sgd(fn, lr, momentum, dampening, weight_decay, nesterov, velocity || count == 0, "array");
        many_call<kn::SgdArgs>(
            fn, count, {{"param", param}, {"grad", grad}, {"velocity", velocity, momentum != 0.0f}}, n,
            [&](void* const* m, int64_t size) {
                return kn::SgdArgs{m[0], m[1], m[2], size, lr, momentum, dampening, weight_decay, nesterov != 0,
                                   first_step != 0};
            },
            [](Device& d, const kn::SgdManyArgs& a) { d.sgd_step_many_f32(a); });
    });
}

KN_API kn_status kn_adam_step_f32(kn_buffer* param, const kn_buffer* grad, kn_buffer* m, kn_buffer* v, int64_t n,
                                  float lr, float beta1, float beta2, float eps, float weight_decay,
                                  int32_t decoupled_weight_decay, int64_t step) {
    return guarded([&] {
        Call call("adam_step");
        auto count = [&] { return cat("n = ", n); };
        const Operand& P = call.out("param", param, n, count);
        const Operand& G = call.in("grad", grad, n, count);
        const Operand& M = call.out("m", m, n, count);
        const Operand& V = call.out("v", v, n, count);
        check_adam(call.fn, lr, beta1, beta2, eps, weight_decay, step);
        call.non_negative({{"n", n}});
        call.all_distinct();
        call.check();
        if (n == 0) return;
        call.run([&](Device& d) {
            d.adam_step_f32({P.memory(), G.memory(), M.memory(), V.memory(), n, lr, beta1, beta2, eps, weight_decay,
                             decoupled_weight_decay != 0, step});
        });
    });
}

KN_API kn_status kn_adam_step_many_f32(int64_t count, kn_buffer* const* param, const kn_buffer* const* grad,
                                       kn_buffer* const* m, kn_buffer* const* v, const int64_t* n, float lr,
                                       float beta1, float beta2, float eps, float weight_decay,
                                       int32_t decoupled_weight_decay, int64_t step) {
    return guarded([&] {
        const char* fn = "adam_step_many";
        check_adam(fn, lr, beta1, beta2, eps, weight_decay, step);
        many_call<kn::AdamArgs>(
            fn, count, {{"param", param}, {"grad", grad}, {"m", m}, {"v", v}}, n,
            [&](void* const* mem, int64_t size) {
                return kn::AdamArgs{mem[0], mem[1], mem[2], mem[3], size, lr, beta1, beta2, eps, weight_decay,
                                    decoupled_weight_decay != 0, step};
            },
            [](Device& d, const kn::AdamManyArgs& a) { d.adam_step_many_f32(a); });
    });
}

KN_API kn_status kn_rmsprop_step_f32(kn_buffer* param, const kn_buffer* grad, kn_buffer* square_avg,
                                     kn_buffer* velocity, int64_t n, float lr, float alpha, float eps,
                                     float weight_decay, float momentum) {
    return guarded([&] {
        Call call("rmsprop_step");
        auto count = [&] { return cat("n = ", n); };
        const Operand& P = call.out("param", param, n, count);
        const Operand& G = call.in("grad", grad, n, count);
        const Operand& S = call.out("square_avg", square_avg, n, count);
        check_rmsprop(call.fn, lr, alpha, eps, weight_decay, momentum, velocity != nullptr, "buffer");
        call.non_negative({{"n", n}});
        const Operand& V = call.out("velocity", optional(momentum != 0.0f ? velocity : nullptr), n, count);
        call.all_distinct();
        call.check();
        if (n == 0) return;
        call.run([&](Device& d) {
            d.rmsprop_step_f32({P.memory(), G.memory(), S.memory(), V.memory(), n, lr, alpha, eps, weight_decay, momentum});
        });
    });
}

KN_API kn_status kn_rmsprop_step_many_f32(int64_t count, kn_buffer* const* param, const kn_buffer* const* grad,
                                          kn_buffer* const* square_avg, kn_buffer* const* velocity, const int64_t* n,
                                          float lr, float alpha, float eps, float weight_decay, float momentum) {
    return guarded([&] {
        const char* fn = "rmsprop_step_many";
        check_rmsprop(fn, lr, alpha, eps, weight_decay, momentum, velocity || count == 0, "array");
        many_call<kn::RmspropArgs>(
            fn, count,
            {{"param", param}, {"grad", grad}, {"square_avg", square_avg}, {"velocity", velocity, momentum != 0.0f}}, n,
            [&](void* const* m, int64_t size) {
                return kn::RmspropArgs{m[0], m[1], m[2], m[3], size, lr, alpha, eps, weight_decay, momentum};
            },
            [](Device& d, const kn::RmspropManyArgs& a) { d.rmsprop_step_many_f32(a); });
    });
}

KN_API kn_status kn_adagrad_step_f32(kn_buffer* param, const kn_buffer* grad, kn_buffer* sum, int64_t n, float lr,
                                     float eps, float weight_decay) {
    return guarded([&] {
        Call call("adagrad_step");
        auto count = [&] { return cat("n = ", n); };
        const Operand& P = call.out("param", param, n, count);
        const Operand& G = call.in("grad", grad, n, count);
        const Operand& S = call.out("sum", sum, n, count);
        check_rates(call.fn, {{"lr", lr}, {"eps", eps}, {"weight_decay", weight_decay}});
        call.non_negative({{"n", n}});
        call.all_distinct();
        call.check();
        if (n == 0) return;
        call.run([&](Device& d) { d.adagrad_step_f32({P.memory(), G.memory(), S.memory(), n, lr, eps, weight_decay}); });
    });
}

KN_API kn_status kn_adagrad_step_many_f32(int64_t count, kn_buffer* const* param, const kn_buffer* const* grad,
                                          kn_buffer* const* sum, const int64_t* n, float lr, float eps,
                                          float weight_decay) {
    return guarded([&] {
        const char* fn = "adagrad_step_many";
        check_rates(fn, {{"lr", lr}, {"eps", eps}, {"weight_decay", weight_decay}});
        many_call<kn::AdagradArgs>(
            fn, count, {{"param", param}, {"grad", grad}, {"sum", sum}}, n,
            [&](void* const* m, int64_t size) { return kn::AdagradArgs{m[0], m[1], m[2], size, lr, eps, weight_decay}; },
            [](Device& d, const kn::AdagradManyArgs& a) { d.adagrad_step_many_f32(a); });
    });
}

}  // extern "C"

// ---- Convolution, pooling, batch normalization ---------------------------------------------------

namespace {

std::string conv_shapes(const kn::Conv2dGeometry& g) {
    return cat("x [", g.batch, ", ", g.in_channels, ", ", g.in_height, ", ", g.in_width, "], w [", g.out_channels,
               ", ", g.groups > 0 ? g.in_channels / g.groups : 0, ", ", g.kernel_height, ", ", g.kernel_width,
               "], stride ", g.stride_height, "x", g.stride_width, ", padding ", g.pad_height, "x", g.pad_width,
               ", dilation ", g.dilation_height, "x", g.dilation_width, ", groups ", g.groups);
}

// Validates a convolution's geometry and computes its output size; messages name every shape.
kn::Conv2dGeometry conv_geometry(const char* fn, int64_t batch, int64_t in_channels, int64_t in_height,
                                 int64_t in_width, int64_t out_channels, int64_t kernel_height,
                                 int64_t kernel_width, int64_t stride_height, int64_t stride_width,
                                 int64_t pad_height, int64_t pad_width, int64_t dilation_height,
                                 int64_t dilation_width, int64_t groups) {
    kn::Conv2dGeometry g{batch, in_channels, in_height, in_width, out_channels, kernel_height, kernel_width,
                         stride_height, stride_width, pad_height, pad_width, dilation_height, dilation_width,
                         groups, 0, 0};
    check_non_negative(batch, fn, "batch");
    check_non_negative(pad_height, fn, "pad_height");
    check_non_negative(pad_width, fn, "pad_width");
    const std::pair<const char*, int64_t> positive[] = {
        {"in_channels", in_channels}, {"in_height", in_height}, {"in_width", in_width},
        {"out_channels", out_channels}, {"kernel_height", kernel_height}, {"kernel_width", kernel_width},
        {"stride_height", stride_height}, {"stride_width", stride_width},
        {"dilation_height", dilation_height}, {"dilation_width", dilation_width}, {"groups", groups}};
    for (const auto& [name, v] : positive)
        if (v < 1) fail(KN_ERROR_INVALID_ARGUMENT, fn, ": ", name, " = ", v, " must be >= 1 (", conv_shapes(g), ")");
    if (in_channels % groups != 0 || out_channels % groups != 0)
        fail(KN_ERROR_SHAPE_MISMATCH, fn, ": in_channels = ", in_channels, " and out_channels = ", out_channels,
             " must both be divisible by groups = ", groups, " (", conv_shapes(g), ")");
    // Effective kernel extent (dilation spreads the taps) against the padded input.
    int64_t extent_h = add(mul(dilation_height, kernel_height - 1, fn), 1, fn);
    int64_t extent_w = add(mul(dilation_width, kernel_width - 1, fn), 1, fn);
    int64_t padded_h = add(in_height, mul(2, pad_height, fn), fn);
    int64_t padded_w = add(in_width, mul(2, pad_width, fn), fn);
    if (extent_h > padded_h || extent_w > padded_w)
        fail(KN_ERROR_SHAPE_MISMATCH, fn, ": the kernel spans ", extent_h, "x", extent_w,
             " (with dilation) but the padded input is only ", padded_h, "x", padded_w, " (", conv_shapes(g), ")");
    // The CPU backend lowers through a zero-padded copy of the input: its size must be a number.
    mul(mul(padded_h, padded_w, fn), in_channels, fn);
    // The output size and the strides the backends get: the one rule (window_geometry.h).
    const kn::WindowAxis h = kn::window_axis(in_height, pad_height, kernel_height, stride_height, dilation_height);
    const kn::WindowAxis w = kn::window_axis(in_width, pad_width, kernel_width, stride_width, dilation_width);
    g.out_height = h.out;
    g.out_width = w.out;
    g.stride_height = h.stride;
    g.stride_width = w.stride;
    return g;
}

struct ConvSizes {
    int64_t x, w, y;
};

ConvSizes conv_sizes(const kn::Conv2dGeometry& g, const char* fn) {
    return {mul(mul(g.batch, g.in_channels, fn), mul(g.in_height, g.in_width, fn), fn),
            mul(mul(g.out_channels, g.in_channels / g.groups, fn), mul(g.kernel_height, g.kernel_width, fn), fn),
            mul(mul(g.batch, g.out_channels, fn), mul(g.out_height, g.out_width, fn), fn)};
}

}  // namespace

extern "C" {

#define KN_CONV_PARAMS                                                                                   \
    int64_t batch, int64_t in_channels, int64_t in_height, int64_t in_width, int64_t out_channels,        \
        int64_t kernel_height, int64_t kernel_width, int64_t stride_height, int64_t stride_width,        \
        int64_t pad_height, int64_t pad_width, int64_t dilation_height, int64_t dilation_width, int64_t groups
#define KN_CONV_ARGS                                                                                      \
    batch, in_channels, in_height, in_width, out_channels, kernel_height, kernel_width, stride_height,    \
        stride_width, pad_height, pad_width, dilation_height, dilation_width, groups

KN_API kn_status kn_conv2d_output_size(KN_CONV_PARAMS, int64_t* out_height, int64_t* out_width) {
    return guarded([&] {
        const char* fn = "conv2d_output_size";
        check_out(out_height, fn, "out_height");
        check_out(out_width, fn, "out_width");
        kn::Conv2dGeometry g = conv_geometry(fn, KN_CONV_ARGS);
        *out_height = g.out_height;
        *out_width = g.out_width;
    });
}

KN_API kn_status kn_conv2d_f32(const kn_buffer* x, const kn_buffer* w, const kn_buffer* bias, kn_buffer* y,
                               KN_CONV_PARAMS) {
    return guarded([&] {
        Call call("conv2d");
        kn::Conv2dGeometry g = conv_geometry(call.fn, KN_CONV_ARGS);
        ConvSizes n = conv_sizes(g, call.fn);
        auto shapes = [&] { return conv_shapes(g); };
        const Operand& X = call.in("x", x, n.x, shapes);
        const Operand& W = call.in("w", w, n.w, shapes);
        const Operand& Y = call.out("y", y, n.y, shapes);
        const Operand& Bias = call.in("bias", optional(bias), out_channels, shapes);
        call.check();
        if (batch == 0) return;
        call.run([&](Device& d) { d.conv2d_f32({g, X.memory(), W.memory(), Bias.memory(), Y.memory()}); });
    });
}

KN_API kn_status kn_conv2d_backward_data_f32(const kn_buffer* dy, const kn_buffer* w, kn_buffer* dx, KN_CONV_PARAMS) {
    return guarded([&] {
        Call call("conv2d_backward_data");
        kn::Conv2dGeometry g = conv_geometry(call.fn, KN_CONV_ARGS);
        ConvSizes n = conv_sizes(g, call.fn);
        auto shapes = [&] { return conv_shapes(g); };
        const Operand& DY = call.in("dy", dy, n.y, shapes);
        const Operand& W = call.in("w", w, n.w, shapes);
        const Operand& DX = call.out("dx", dx, n.x, shapes);
        call.check();
        if (batch == 0) return;
        call.run([&](Device& d) { d.conv2d_backward_data_f32({g, DY.memory(), W.memory(), DX.memory()}); });
    });
}

KN_API kn_status kn_conv2d_backward_weights_f32(const kn_buffer* x, const kn_buffer* dy, kn_buffer* dw,
                                                kn_buffer* dbias, KN_CONV_PARAMS) {
    return guarded([&] {
        Call call("conv2d_backward_weights");
        kn::Conv2dGeometry g = conv_geometry(call.fn, KN_CONV_ARGS);
        ConvSizes n = conv_sizes(g, call.fn);
        auto shapes = [&] { return conv_shapes(g); };
        const Operand& X = call.in("x", x, n.x, shapes);
        const Operand& DY = call.in("dy", dy, n.y, shapes);
        const Operand& DW = call.out("dw", dw, n.w, shapes);
        const Operand& DBias = call.out("dbias", optional(dbias), out_channels, shapes);
        call.check();
        call.run([&](Device& d) {
            if (batch == 0) {  // an empty batch contributes nothing: the gradients are zero
                d.fill_f32(DW.memory(), 0, n.w, 0.0f);
                if (dbias) d.fill_f32(DBias.memory(), 0, out_channels, 0.0f);
                return;
            }
            d.conv2d_backward_weights_f32({g, X.memory(), DY.memory(), DW.memory(), DBias.memory()});
        });
    });
}

#undef KN_CONV_PARAMS
#undef KN_CONV_ARGS

}  // extern "C"

namespace {

std::string pool_shapes(const kn::Pool2dGeometry& g) {
    return cat("x [", g.batch, ", ", g.channels, ", ", g.in_height, ", ", g.in_width, "], kernel ", g.kernel_height,
               "x", g.kernel_width, ", stride ", g.stride_height, "x", g.stride_width, ", padding ", g.pad_height, "x",
               g.pad_width);
}

// Validates a pooling geometry and computes its output size (the op does not change it).
kn::Pool2dGeometry pool_geometry(const char* fn, int64_t batch, int64_t channels, int64_t in_height,
                                 int64_t in_width, int64_t kernel_height, int64_t kernel_width, int64_t stride_height,
                                 int64_t stride_width, int64_t pad_height, int64_t pad_width, int32_t count_include_pad) {
    kn::Pool2dGeometry g{batch, channels, in_height, in_width, kernel_height, kernel_width, stride_height,
                         stride_width, pad_height, pad_width, 0, 0, count_include_pad != 0};
    check_non_negative(batch, fn, "batch");
    check_non_negative(pad_height, fn, "pad_height");
    check_non_negative(pad_width, fn, "pad_width");
    const std::pair<const char*, int64_t> positive[] = {
        {"channels", channels}, {"in_height", in_height}, {"in_width", in_width},
        {"kernel_height", kernel_height}, {"kernel_width", kernel_width},
        {"stride_height", stride_height}, {"stride_width", stride_width}};
    for (const auto& [name, v] : positive)
        if (v < 1) fail(KN_ERROR_INVALID_ARGUMENT, fn, ": ", name, " = ", v, " must be >= 1 (", pool_shapes(g), ")");
    // pad > kernel / 2, not 2 * pad > kernel: the product wraps for pads near 2^62, and the compiler
    // may then also drop the overflow checks below (signed overflow is undefined behaviour).
    if (pad_height > kernel_height / 2 || pad_width > kernel_width / 2)
        fail(KN_ERROR_INVALID_ARGUMENT, fn, ": padding ", pad_height, "x", pad_width, " (pad_height x pad_width)",
             " is more than half the kernel (", pool_shapes(g), ")");
    int64_t padded_h = add(in_height, mul(2, pad_height, fn), fn);
    int64_t padded_w = add(in_width, mul(2, pad_width, fn), fn);
    if (kernel_height > padded_h || kernel_width > padded_w)
        fail(KN_ERROR_SHAPE_MISMATCH, fn, ": the ", kernel_height, "x", kernel_width,
             " window is larger than the padded input ", padded_h, "x", padded_w, " (", pool_shapes(g), ")");
    if (in_height > std::numeric_limits<int32_t>::max() / in_width)  // in_height * in_width could wrap
        fail(KN_ERROR_INVALID_ARGUMENT, fn, ": a ", in_height, "x", in_width, " plane is too large for int32 indices");
    // The output size and the strides the backends get: the one rule (window_geometry.h; a stride
    // past the padded input no longer overflows ih + stride_height, found by fuzz_c_api).
    const kn::WindowAxis h = kn::window_axis(in_height, pad_height, kernel_height, stride_height);
    const kn::WindowAxis w = kn::window_axis(in_width, pad_width, kernel_width, stride_width);
    g.out_height = h.out;
    g.out_width = w.out;
    g.stride_height = h.stride;
    g.stride_width = w.stride;
    return g;
}

kn_status pool_call(const kn_pool_op& op, const kn_buffer* in, kn_buffer* out, const kn_buffer* indices, int64_t batch,
                    int64_t channels, int64_t in_height, int64_t in_width, int64_t kernel_height, int64_t kernel_width,
                    int64_t stride_height, int64_t stride_width, int64_t pad_height, int64_t pad_width,
                    int32_t count_include_pad, bool backward) {
    return guarded([&] {
        Call call(backward ? "pool2d_backward" : "pool2d");
        call.enumeration(op, KN_POOL_AVG, "op");
        kn::Pool2dGeometry g = pool_geometry(call.fn, batch, channels, in_height, in_width, kernel_height,
                                             kernel_width, stride_height, stride_width, pad_height, pad_width,
                                             count_include_pad);
        int64_t planes = call.mul(batch, channels);
        int64_t x_n = call.mul(planes, call.mul(in_height, in_width));
        int64_t y_n = call.mul(planes, call.mul(g.out_height, g.out_width));
        auto shapes = [&] { return pool_shapes(g); };
        // Forward reads x and writes y (and, for max, the int32 indices); backward reads dy and the
        // indices and writes dx.
        const Operand& I = call.in(backward ? "dy" : "x", in, backward ? y_n : x_n, shapes);
        const Operand& O = call.out(backward ? "dx" : "y", out, backward ? x_n : y_n, shapes);
        if (backward && op == KN_POOL_MAX && !indices)
            call.fail(KN_ERROR_INVALID_ARGUMENT, "max pooling's backward needs the indices its forward call wrote");
        const Operand& Idx = call.out("indices", optional(op == KN_POOL_MAX ? indices : nullptr), y_n, shapes, kInt32);
        call.check();
        if (batch == 0) return;
        call.run([&](Device& d) {
            if (backward) d.pool2d_backward_f32({op, g, I.memory(), Idx.memory(), O.memory()});
            else d.pool2d_f32({op, g, I.memory(), O.memory(), Idx.memory()});
        });
    });
}

}  // namespace

extern "C" {

KN_API kn_status kn_pool2d_output_size(int64_t batch, int64_t channels, int64_t in_height, int64_t in_width,
                                       int64_t kernel_height, int64_t kernel_width, int64_t stride_height,
                                       int64_t stride_width, int64_t pad_height, int64_t pad_width,
                                       int64_t* out_height, int64_t* out_width) {
    return guarded([&] {
        const char* fn = "pool2d_output_size";
        check_out(out_height, fn, "out_height");
        check_out(out_width, fn, "out_width");
        kn::Pool2dGeometry g = pool_geometry(fn, batch, channels, in_height, in_width, kernel_height, kernel_width,
                                             stride_height, stride_width, pad_height, pad_width, 1);
        *out_height = g.out_height;
        *out_width = g.out_width;
    });
}

KN_API kn_status kn_pool2d_f32(kn_pool_op op, const kn_buffer* x, kn_buffer* y, kn_buffer* indices, int64_t batch,
                               int64_t channels, int64_t in_height, int64_t in_width, int64_t kernel_height,
                               int64_t kernel_width, int64_t stride_height, int64_t stride_width, int64_t pad_height,
                               int64_t pad_width, int32_t count_include_pad) {
    return pool_call(op, x, y, indices, batch, channels, in_height, in_width, kernel_height, kernel_width,
                     stride_height, stride_width, pad_height, pad_width, count_include_pad, false);
}

KN_API kn_status kn_pool2d_backward_f32(kn_pool_op op, const kn_buffer* dy, const kn_buffer* indices, kn_buffer* dx,
                                        int64_t batch, int64_t channels, int64_t in_height, int64_t in_width,
                                        int64_t kernel_height, int64_t kernel_width, int64_t stride_height,
                                        int64_t stride_width, int64_t pad_height, int64_t pad_width,
                                        int32_t count_include_pad) {
    return pool_call(op, dy, dx, indices, batch, channels, in_height, in_width, kernel_height, kernel_width,
                     stride_height, stride_width, pad_height, pad_width, count_include_pad, true);
}

KN_API kn_status kn_batch_norm_f32(const kn_buffer* x, kn_buffer* y, const kn_buffer* gamma, const kn_buffer* beta,
                                   kn_buffer* running_mean, kn_buffer* running_var, kn_buffer* save_mean,
                                   kn_buffer* save_invstd, int64_t batch, int64_t channels, int64_t spatial,
                                   float eps, float momentum, int32_t training) {
    return guarded([&] {
        Call call("batch_norm");
        call.non_negative({{"batch", batch}, {"spatial", spatial}});
        if (channels < 1) call.fail(KN_ERROR_INVALID_ARGUMENT, "channels = ", channels, " must be >= 1");
        if (!(eps > 0.0f)) call.fail(KN_ERROR_INVALID_ARGUMENT, "eps = ", eps, " must be > 0");
        if (!(momentum >= 0.0f && momentum <= 1.0f))
            call.fail(KN_ERROR_INVALID_ARGUMENT, "momentum = ", momentum, " is outside [0, 1]");
        if (training && call.mul(batch, spatial) == 0)
            call.fail(KN_ERROR_SHAPE_MISMATCH, "training-mode statistics need at least one value per channel (batch = ",
                      batch, ", spatial = ", spatial, ")");
        if (!training && (!running_mean || !running_var))
            call.fail(KN_ERROR_INVALID_ARGUMENT, "inference mode (training = 0) needs running_mean and running_var");
        if ((running_mean == nullptr) != (running_var == nullptr))
            call.fail(KN_ERROR_INVALID_ARGUMENT, "pass both running_mean and running_var, or neither");
        int64_t n = call.mul(call.mul(batch, channels), spatial);
        auto shapes = [&] { return cat("[batch, channels, spatial] = [", batch, ", ", channels, ", ", spatial, "]"); };
        const Operand& X = call.in("x", x, n, shapes);
        const Operand& Y = call.out("y", y, n, shapes);
        const Operand& Gamma = call.in("gamma", gamma, channels, shapes);
        const Operand& Beta = call.in("beta", beta, channels, shapes);
        const Operand& RunningMean = call.out("running_mean", optional(running_mean), channels, shapes);
        const Operand& RunningVar = call.out("running_var", optional(running_var), channels, shapes);
        const Operand& SaveMean = call.out("save_mean", optional(save_mean), channels, shapes);
        const Operand& SaveInvstd = call.out("save_invstd", optional(save_invstd), channels, shapes);
        call.check();
        if (n == 0) return;
        call.run([&](Device& d) {
            d.batch_norm_f32({X.memory(), Y.memory(), Gamma.memory(), Beta.memory(), RunningMean.memory(),
                              RunningVar.memory(), SaveMean.memory(), SaveInvstd.memory(), batch, channels, spatial, eps,
                              momentum, training != 0});
        });
    });
}

KN_API kn_status kn_batch_norm_backward_f32(const kn_buffer* x, const kn_buffer* dy, const kn_buffer* gamma,
                                            const kn_buffer* save_mean, const kn_buffer* save_invstd, kn_buffer* dx,
                                            kn_buffer* dgamma, kn_buffer* dbeta, int64_t batch, int64_t channels,
                                            int64_t spatial, int32_t training) {
    return guarded([&] {
        Call call("batch_norm_backward");
        call.non_negative({{"batch", batch}, {"spatial", spatial}});
        if (channels < 1) call.fail(KN_ERROR_INVALID_ARGUMENT, "channels = ", channels, " must be >= 1");
        int64_t n = call.mul(call.mul(batch, channels), spatial);
        auto shapes = [&] { return cat("[batch, channels, spatial] = [", batch, ", ", channels, ", ", spatial, "]"); };
        const Operand& X = call.in("x", x, n, shapes);
        const Operand& DY = call.in("dy", dy, n, shapes);
        const Operand& DX = call.out("dx", optional(dx), n, shapes);
        const Operand& Gamma = call.in("gamma", gamma, channels, shapes);
        const Operand& SaveMean = call.in("save_mean", save_mean, channels, shapes);
        const Operand& SaveInvstd = call.in("save_invstd", save_invstd, channels, shapes);
        const Operand& DGamma = call.out("dgamma", dgamma, channels, shapes);
        const Operand& DBeta = call.out("dbeta", dbeta, channels, shapes);
        call.check();
        call.run([&](Device& d) {
            if (n == 0) {  // no values: the parameter gradients are zero sums
                d.fill_f32(DGamma.memory(), 0, channels, 0.0f);
                d.fill_f32(DBeta.memory(), 0, channels, 0.0f);
                return;
            }
            d.batch_norm_backward_f32({X.memory(), DY.memory(), Gamma.memory(), SaveMean.memory(), SaveInvstd.memory(),
                                       DX.memory(), DGamma.memory(), DBeta.memory(), batch, channels, spatial,
                                       training != 0});
        });
    });
}

// ---- Element types ------------------------------------------------------------------------------

KN_API kn_status kn_cast(const kn_buffer* x, kn_dtype x_type, kn_buffer* y, kn_dtype y_type, int64_t n) {
    return guarded([&] {
        Call call("cast");
        call.enumeration(x_type, KN_INT64, "x_type");
        call.enumeration(y_type, KN_INT64, "y_type");
        call.non_negative({{"n", n}});
        auto item = [](kn_dtype t) { return t == KN_FLOAT32 ? kn::api::kFloat32 : t == KN_INT32 ? kn::api::kInt32 : kn::api::kInt64; };
        auto count = [&] { return cat("n = ", n); };
        const Operand& X = call.in("x", x, n, count, item(x_type));
        const Operand& Y = call.out("y", y, n, count, item(y_type));
        if (x == y) call.fail(KN_ERROR_INVALID_ARGUMENT, "y must not be the same buffer as x");
        call.check();
        if (n == 0) return;
        call.run([&](Device& d) { d.cast({x_type, y_type, X.memory(), Y.memory(), n}); });
    });
}

}  // extern "C"

// ---- Recurrent cells ----------------------------------------------------------------------------
// The pointwise step of an LSTM / GRU (kernels.h has the math and the saved layouts). Inputs may share
// a buffer (a zero initial state for both h_prev and c_prev); an output may share none.

namespace {

struct NamedHandle {
    const char* name;
    const kn_buffer* handle;
};

void outputs_distinct(const Call& call, std::initializer_list<NamedHandle> inputs,
                      std::initializer_list<NamedHandle> outputs) {
    for (auto o = outputs.begin(); o != outputs.end(); ++o) {
        if (!o->handle) continue;
        for (const NamedHandle& i : inputs)
            if (i.handle == o->handle)
                call.fail(KN_ERROR_INVALID_ARGUMENT, o->name, " must not be the same buffer as ", i.name);
        for (auto p = outputs.begin(); p != o; ++p)
            if (p->handle == o->handle)
                call.fail(KN_ERROR_INVALID_ARGUMENT, o->name, " must not be the same buffer as ", p->name);
    }
}

}  // namespace

extern "C" {

KN_API kn_status kn_lstm_cell_f32(const kn_buffer* gates, const kn_buffer* c_prev, const kn_buffer* h_prev,
                                  const kn_buffer* mask, kn_buffer* h, kn_buffer* c, kn_buffer* saved,
                                  int64_t batch, int64_t hidden) {
    return guarded([&] {
        Call call("lstm_cell");
        call.non_negative({{"batch", batch}, {"hidden", hidden}});
        const int64_t n = call.mul(batch, hidden);
        auto shapes = [&] { return cat("[batch, hidden] = [", batch, ", ", hidden, "]"); };
        const Operand& G = call.in("gates", gates, call.mul(n, 4), shapes);
        const Operand& CP = call.in("c_prev", c_prev, n, shapes);
        const Operand& HP = call.in("h_prev", h_prev, n, shapes);
        const Operand& M = call.in("mask", optional(mask), batch, shapes);
        const Operand& H = call.out("h", h, n, shapes);
        const Operand& C = call.out("c", c, n, shapes);
        const Operand& S = call.out("saved", optional(saved), call.mul(n, 5), shapes);
        outputs_distinct(call, {{"gates", gates}, {"c_prev", c_prev}, {"h_prev", h_prev}, {"mask", mask}},
                         {{"h", h}, {"c", c}, {"saved", saved}});
        call.check();
        if (n == 0) return;
        call.run([&](Device& d) {
            d.lstm_cell_f32({G.memory(), CP.memory(), HP.memory(), M.memory(), H.memory(), C.memory(), S.memory(),
                             batch, hidden});
        });
    });
}

KN_API kn_status kn_lstm_cell_backward_f32(const kn_buffer* saved, const kn_buffer* c_prev, const kn_buffer* mask,
                                           const kn_buffer* dh, const kn_buffer* dc, kn_buffer* dgates,
                                           kn_buffer* dc_prev, kn_buffer* dh_prev, int64_t batch, int64_t hidden) {
    return guarded([&] {
        Call call("lstm_cell_backward");
        call.non_negative({{"batch", batch}, {"hidden", hidden}});
        const int64_t n = call.mul(batch, hidden);
        auto shapes = [&] { return cat("[batch, hidden] = [", batch, ", ", hidden, "]"); };
        const Operand& S = call.in("saved", saved, call.mul(n, 5), shapes);
        const Operand& CP = call.in("c_prev", c_prev, n, shapes);
        const Operand& M = call.in("mask", optional(mask), batch, shapes);
        const Operand& DH = call.in("dh", optional(dh), n, shapes);
        const Operand& DC = call.in("dc", optional(dc), n, shapes);
        const Operand& DG = call.out("dgates", dgates, call.mul(n, 4), shapes);
        const Operand& DCP = call.out("dc_prev", optional(dc_prev), n, shapes);
        const Operand& DHP = call.out("dh_prev", optional(dh_prev), n, shapes);
        outputs_distinct(call, {{"saved", saved}, {"c_prev", c_prev}, {"mask", mask}, {"dh", dh}, {"dc", dc}},
                         {{"dgates", dgates}, {"dc_prev", dc_prev}, {"dh_prev", dh_prev}});
        call.check();
        if (n == 0) return;
        call.run([&](Device& d) {
            d.lstm_cell_backward_f32({S.memory(), CP.memory(), M.memory(), DH.memory(), DC.memory(), DG.memory(),
                                      DCP.memory(), DHP.memory(), batch, hidden});
        });
    });
}

KN_API kn_status kn_gru_cell_f32(const kn_buffer* x_gates, const kn_buffer* h_gates, const kn_buffer* h_prev,
                                 const kn_buffer* mask, kn_buffer* h, kn_buffer* saved, int64_t batch,
                                 int64_t hidden) {
    return guarded([&] {
        Call call("gru_cell");
        call.non_negative({{"batch", batch}, {"hidden", hidden}});
        const int64_t n = call.mul(batch, hidden);
        auto shapes = [&] { return cat("[batch, hidden] = [", batch, ", ", hidden, "]"); };
        const Operand& XG = call.in("x_gates", x_gates, call.mul(n, 3), shapes);
        const Operand& HG = call.in("h_gates", h_gates, call.mul(n, 3), shapes);
        const Operand& HP = call.in("h_prev", h_prev, n, shapes);
        const Operand& M = call.in("mask", optional(mask), batch, shapes);
        const Operand& H = call.out("h", h, n, shapes);
        const Operand& S = call.out("saved", optional(saved), call.mul(n, 3), shapes);
        outputs_distinct(call, {{"x_gates", x_gates}, {"h_gates", h_gates}, {"h_prev", h_prev}, {"mask", mask}},
                         {{"h", h}, {"saved", saved}});
        call.check();
        if (n == 0) return;
        call.run([&](Device& d) {
            d.gru_cell_f32({XG.memory(), HG.memory(), HP.memory(), M.memory(), H.memory(), S.memory(), batch, hidden});
        });
    });
}

KN_API kn_status kn_gru_cell_backward_f32(const kn_buffer* saved, const kn_buffer* h_gates, const kn_buffer* h_prev,
                                          const kn_buffer* mask, const kn_buffer* dh, kn_buffer* dx_gates,
                                          kn_buffer* dh_gates, kn_buffer* dh_prev, int64_t batch, int64_t hidden) {
    return guarded([&] {
        Call call("gru_cell_backward");
        call.non_negative({{"batch", batch}, {"hidden", hidden}});
        const int64_t n = call.mul(batch, hidden);
        auto shapes = [&] { return cat("[batch, hidden] = [", batch, ", ", hidden, "]"); };
        const Operand& S = call.in("saved", saved, call.mul(n, 3), shapes);
        const Operand& HG = call.in("h_gates", h_gates, call.mul(n, 3), shapes);
        const Operand& HP = call.in("h_prev", h_prev, n, shapes);
        const Operand& M = call.in("mask", optional(mask), batch, shapes);
        const Operand& DH = call.in("dh", dh, n, shapes);
        const Operand& DXG = call.out("dx_gates", dx_gates, call.mul(n, 3), shapes);
        const Operand& DHG = call.out("dh_gates", dh_gates, call.mul(n, 3), shapes);
        const Operand& DHP = call.out("dh_prev", optional(dh_prev), n, shapes);
        outputs_distinct(call, {{"saved", saved}, {"h_gates", h_gates}, {"h_prev", h_prev}, {"mask", mask}, {"dh", dh}},
                         {{"dx_gates", dx_gates}, {"dh_gates", dh_gates}, {"dh_prev", dh_prev}});
        call.check();
        if (n == 0) return;
        call.run([&](Device& d) {
            d.gru_cell_backward_f32({S.memory(), HG.memory(), HP.memory(), M.memory(), DH.memory(), DXG.memory(),
                                     DHG.memory(), DHP.memory(), batch, hidden});
        });
    });
}

}  // extern "C"
