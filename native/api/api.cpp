// api.cpp: the C API of kernels.h. Every export does the same three things:
//   1. validate its arguments once, with messages that name the function, the operand and the sizes;
//   2. lock the device and hand a normalised argument record (backend.h) to the device's backend;
//   3. turn any exception into a status plus a thread-local message (kn_last_error), so nothing
//      ever escapes the C boundary and the process stays usable after bad input.
#include "kernels.h"

#include "backend.h"
#include "caching_allocator.h"
#include "error.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <mutex>
#include <new>
#include <string>
#include <vector>

using kn::cat;
using kn::Device;
using kn::Error;
using kn::fail;

// A buffer. Callers never see its address: a kn_buffer* handle is a never-reused id (see BufferTable),
// so a stale handle (freed, even after its memory went to a new buffer) or a forged one is refused
// instead of being read through. kn_buffer itself stays an incomplete type here on purpose: nothing
// can dereference a handle without going through the table.
struct Buffer {
    Device* device;
    void* memory;   // null when bytes == 0
    int64_t bytes;
    int64_t capacity;  // the block's size class (caching_allocator.h), >= bytes
};
namespace {

thread_local std::string last_error;

// Live buffers by handle. A handle encodes a slot of this table and the slot's generation:
//     handle = generation << 36 | slot << 8 | kHandleTag
// Freeing bumps the slot's generation, so the old handle never matches again even when the slot and
// the memory go to the next buffer: freeing A, creating B and freeing A again finds no A and leaves B
// alone. Slots live in chunks that are never freed or moved, so a lookup reads them without a lock
// (two acquire loads; a training step makes thousands of calls with several buffers each). The tag
// in the low bits keeps small integers and real (aligned) pointers from ever matching a handle.
// Creating and freeing take a mutex for the free list. A generation wraps after 2^28 reuses of one
// slot; a handle kept that long could then match again.
class BufferTable {
public:
    kn_buffer* add(Buffer* b) {
        std::lock_guard<std::mutex> lock(mutex_);
        uint32_t slot;
        if (!free_slots_.empty()) {
            slot = free_slots_.back();
            free_slots_.pop_back();
        } else {
            if (next_slot_ == kChunkSlots * kChunks)
                kn::fail(KN_ERROR_OUT_OF_MEMORY, "kn_buffer_create: ", next_slot_, " buffers are live, the most handles this library has");
            slot = next_slot_;
            auto& chunk = chunks_[slot / kChunkSlots];
            if (!chunk.load(std::memory_order_relaxed)) chunk.store(new Slot[kChunkSlots], std::memory_order_release);
            ++next_slot_;
        }
        Slot& s = at(slot);
        s.buffer.store(b, std::memory_order_relaxed);
        uint32_t generation = s.generation.load(std::memory_order_relaxed);
        s.live.store(true, std::memory_order_release);
        return reinterpret_cast<kn_buffer*>(static_cast<uintptr_t>(
            uint64_t{generation} << 36 | uint64_t{slot} << 8 | kHandleTag));
    }
    Buffer* find(const kn_buffer* handle) const {
        const Slot* s = slot_of(handle);
        return s ? s->buffer.load(std::memory_order_relaxed) : nullptr;
    }
    // Removes and returns the buffer (nullptr when the handle is not live): exactly one of two racing
    // frees of one handle gets it.
    Buffer* remove(const kn_buffer* handle) {
        std::lock_guard<std::mutex> lock(mutex_);
        Slot* s = const_cast<Slot*>(slot_of(handle));
        if (!s) return nullptr;
        Buffer* b = s->buffer.load(std::memory_order_relaxed);
        s->live.store(false, std::memory_order_relaxed);
        s->generation.store((s->generation.load(std::memory_order_relaxed) + 1) & kGenerationMask, std::memory_order_release);
        free_slots_.push_back(static_cast<uint32_t>((key(handle) >> 8) & kSlotMask));
        return b;
    }

private:
    static_assert(sizeof(uintptr_t) == 8, "buffer handles are 64-bit");
    static constexpr uint64_t kHandleTag = 0x4b;  // 'K'
    static constexpr uint64_t kSlotMask = (uint64_t{1} << 28) - 1, kGenerationMask = (uint64_t{1} << 28) - 1;
    static constexpr uint32_t kChunkSlots = 4096, kChunks = 65536;  // up to 2^28 live buffers
    struct Slot {
        std::atomic<uint32_t> generation{0};
        std::atomic<bool> live{false};
        std::atomic<Buffer*> buffer{nullptr};
    };
    static uint64_t key(const kn_buffer* handle) { return static_cast<uint64_t>(reinterpret_cast<uintptr_t>(handle)); }
    Slot& at(uint32_t slot) const {
        return chunks_[slot / kChunkSlots].load(std::memory_order_acquire)[slot % kChunkSlots];
    }
    // The slot a handle names, if the handle is well formed, the slot exists, is live, and is still in
    // the handle's generation; otherwise nullptr. Reads only memory this table owns.
    const Slot* slot_of(const kn_buffer* handle) const {
        uint64_t k = key(handle);
        if ((k & 0xff) != kHandleTag) return nullptr;
        uint64_t slot = (k >> 8) & kSlotMask, generation = k >> 36;
        if (generation > kGenerationMask) return nullptr;
        const Slot* chunk = chunks_[slot / kChunkSlots].load(std::memory_order_acquire);
        if (!chunk) return nullptr;
        const Slot& s = chunk[slot % kChunkSlots];
        if (s.generation.load(std::memory_order_acquire) != generation || !s.live.load(std::memory_order_acquire))
            return nullptr;
        return &s;
    }
    std::mutex mutex_;
    std::vector<uint32_t> free_slots_;
    uint32_t next_slot_ = 0;
    std::atomic<Slot*> chunks_[kChunks] = {};
};

BufferTable& buffers() {
    static BufferTable* table = new BufferTable();  // never destroyed, like the registry
    return *table;
}

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

[[noreturn]] void fail_not_live(const char* fn, const char* name) {
    fail(KN_ERROR_INVALID_ARGUMENT, fn, ": buffer '", name,
         "' is not a live buffer (already freed, or not created by kn_buffer_create)");
}

Buffer& checked_buffer(const kn_buffer* b, const char* fn, const char* name) {
    if (!b) fail(KN_ERROR_INVALID_ARGUMENT, fn, ": buffer '", name, "' is NULL");
    Buffer* found = buffers().find(b);
    if (!found) fail_not_live(fn, name);
    return *found;
}

// The memory of an optional buffer already checked by checked_buffer (null for a NULL handle).
void* memory_of(const kn_buffer* b) {
    if (!b) return nullptr;
    Buffer* found = buffers().find(b);
    if (!found) fail(KN_ERROR_INVALID_ARGUMENT, "a buffer was freed while a call was using it");
    return found->memory;
}

void check_non_negative(int64_t v, const char* fn, const char* name) {
    if (v < 0) fail(KN_ERROR_INVALID_ARGUMENT, fn, ": ", name, " = ", v, " is negative");
}

// Size arithmetic on already-checked non-negative values, refusing results past int64.
int64_t mul(int64_t a, int64_t b, const char* fn) {
    if (a != 0 && b > std::numeric_limits<int64_t>::max() / a)
        fail(KN_ERROR_INVALID_ARGUMENT, fn, ": sizes overflow int64 (", a, " * ", b, ")");
    return a * b;
}

int64_t add(int64_t a, int64_t b, const char* fn) {
    if (b > std::numeric_limits<int64_t>::max() - a)
        fail(KN_ERROR_INVALID_ARGUMENT, fn, ": sizes overflow int64 (", a, " + ", b, ")");
    return a + b;
}

// The buffer must hold `elements` items of `item_bytes`; says what the shape needed otherwise.
// `why` is a callable returning that description, run only on failure: successful calls (the
// hot path, thousands per training step) build no strings.
template <typename Why>
void check_holds(const Buffer& b, int64_t elements, int64_t item_bytes, const char* fn,
                 const char* name, Why&& why, const char* item_type = nullptr) {
    int64_t need = mul(elements, item_bytes, fn);
    if (b.bytes < need)
        fail(KN_ERROR_SHAPE_MISMATCH, fn, ": buffer '", name, "' holds ", b.bytes / item_bytes, " ",
             item_type ? item_type : item_bytes == 4 ? "float32" : "int64", " elements (", b.bytes,
             " bytes) but ", why(), " needs ", elements);
}

// All named buffers on one device; returns it.
Device& same_device(const char* fn, std::initializer_list<std::pair<const char*, const kn_buffer*>> buffers) {
    Device* first = nullptr;
    const char* first_name = nullptr;
    for (const auto& [name, handle] : buffers) {
        if (!handle) continue;
        Device* device = checked_buffer(handle, fn, name).device;
        if (!first) {
            first = device;
            first_name = name;
        } else if (device != first) {
            fail(KN_ERROR_DEVICE_MISMATCH, fn, ": '", first_name, "' is on ", first->name, " but '", name,
                 "' is on ", device->name, "; move them to one device first");
        }
    }
    return *first;
}

// An enum argument arrives as whatever int the caller passed. Loading an enum object whose value is
// outside the enum's range is undefined behaviour in C++ (UBSan's -fsanitize=enum reports it), so the
// value is taken by reference and its bytes read as the int they are before any enum-typed use. (A
// KN_..._COUNT sentinel would not help: 999 is still outside the range of 0..20.)
template <typename Enum>
void check_enum(const Enum& v, int32_t last, const char* fn, const char* name) {
    static_assert(sizeof(Enum) == sizeof(int32_t), "kernels.h enums are int-sized");
    int32_t i;
    std::memcpy(&i, &v, sizeof i);
    if (i < 0 || i > last) fail(KN_ERROR_INVALID_ARGUMENT, fn, ": ", name, " = ", i, " is not a valid value");
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
    g.rank = 0;
    g.n = 1;
    for (int32_t d = 0; d < rank; ++d) {
        g.n *= out[d];
        if (out[d] == 1) continue;
        if (g.rank > 0) {
            int32_t p = g.rank - 1;
            if (g.a_strides[p] == as[d] * out[d] && g.b_strides[p] == bs[d] * out[d]) {
                g.dims[p] *= out[d];
                g.a_strides[p] = as[d];
                g.b_strides[p] = bs[d];
                continue;
            }
        }
        g.dims[g.rank] = out[d];
        g.a_strides[g.rank] = as[d];
        g.b_strides[g.rank] = bs[d];
        ++g.rank;
    }
    if (g.rank == 0) {  // every dimension is 1: a single element
        g.rank = 1;
        g.dims[0] = 1;
        g.a_strides[0] = 1;
        g.b_strides[0] = 1;
    }
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
    return guarded([&] {
        check_out(name, "kn_device_name", "name");
        *name = checked_device(device, "kn_device_name").name.c_str();
    });
}

KN_API kn_status kn_device_description(const kn_device* device, const char** description) {
    return guarded([&] {
        check_out(description, "kn_device_description", "description");
        *description = checked_device(device, "kn_device_description").description.c_str();
    });
}

KN_API kn_status kn_device_kind_of(const kn_device* device, kn_device_kind* kind) {
    return guarded([&] {
        check_out(kind, "kn_device_kind_of", "kind");
        *kind = checked_device(device, "kn_device_kind_of").kind;
    });
}

KN_API kn_status kn_device_memory(const kn_device* device, int64_t* total_bytes) {
    return guarded([&] {
        check_out(total_bytes, "kn_device_memory", "total_bytes");
        *total_bytes = checked_device(device, "kn_device_memory").total_memory;
    });
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

KN_API kn_status kn_device_memory_stats(const kn_device* device, int64_t* live_bytes, int64_t* live_buffers,
                                        int64_t* cached_bytes, int64_t* peak_live_bytes) {
    return guarded([&] {
        Device& d = checked_device(device, "kn_device_memory_stats");
        kn::MemoryStats s;
        {
            std::lock_guard<std::mutex> lock(d.mutex);
            s = allocator_of(&d).stats();
        }
        if (live_bytes) *live_bytes = s.live_bytes;
        if (live_buffers) *live_buffers = s.live_buffers;
        if (cached_bytes) *cached_bytes = s.cached_bytes;
        if (peak_live_bytes) *peak_live_bytes = s.peak_live_bytes;
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
        const char* fn = "gemm";
        check_enum(trans_a, KN_TRANSPOSE, fn, "trans_a");
        check_enum(trans_b, KN_TRANSPOSE, fn, "trans_b");
        check_non_negative(m, fn, "m");
        check_non_negative(n, fn, "n");
        check_non_negative(k, fn, "k");
        check_non_negative(batch_count, fn, "batch_count");
        check_non_negative(stride_a, fn, "stride_a");
        check_non_negative(stride_b, fn, "stride_b");
        check_non_negative(stride_c, fn, "stride_c");
        const Buffer& A = checked_buffer(a, fn, "a");
        const Buffer& B = checked_buffer(b, fn, "b");
        const Buffer& C = checked_buffer(c, fn, "c");
        Device& dev = same_device(fn, {{"a", a}, {"b", b}, {"c", c}});
        if (c == a || c == b) fail(KN_ERROR_INVALID_ARGUMENT, fn, ": c must not be the same buffer as a or b");

        // Stored shapes: A is m x k (k x m transposed), B is k x n (n x k transposed).
        bool ta = trans_a == KN_TRANSPOSE, tb = trans_b == KN_TRANSPOSE;
        int64_t a_rows = ta ? k : m, a_cols = ta ? m : k;
        int64_t b_rows = tb ? n : k, b_cols = tb ? k : n;
        auto check_ld = [&](int64_t ld, int64_t rows, int64_t cols, const char* ld_name, const char* mat,
                            bool transposed) {
            // ld >= the row length, as kernels.h says; an empty row (k = 0) accepts ld = 0.
            if (ld < cols)
                fail(KN_ERROR_SHAPE_MISMATCH, fn, ": ", ld_name, " = ", ld, " is smaller than the row length ",
                     cols, " of ", mat, " (stored ", rows, "x", cols, transposed ? ", transposed" : "", ")");
        };
        check_ld(lda, a_rows, a_cols, "lda", "A", ta);
        check_ld(ldb, b_rows, b_cols, "ldb", "B", tb);
        check_ld(ldc, m, n, "ldc", "C", false);
        if (m == 0 || n == 0 || batch_count == 0) return;

        // Elements each operand must hold: the last batch's last row ends at
        // (batch-1)*stride + (rows-1)*ld + cols.
        auto extent = [&](int64_t rows, int64_t cols, int64_t ld, int64_t stride) {
            if (rows == 0 || cols == 0) return int64_t{0};
            return add(add(mul(batch_count - 1, stride, fn), mul(rows - 1, ld, fn), fn), cols, fn);
        };
        auto dims = [&] { return cat("m=", m, ", n=", n, ", k=", k, ", batch_count=", batch_count); };
        check_holds(A, extent(a_rows, a_cols, lda, stride_a), 4, fn, "a", [&] { return cat("A (", a_rows, "x", a_cols, ", lda=", lda, ", stride_a=", stride_a, ", ", dims(), ")"); });
        check_holds(B, extent(b_rows, b_cols, ldb, stride_b), 4, fn, "b", [&] { return cat("B (", b_rows, "x", b_cols, ", ldb=", ldb, ", stride_b=", stride_b, ", ", dims(), ")"); });
        check_holds(C, extent(m, n, ldc, stride_c), 4, fn, "c", [&] { return cat("C (", m, "x", n, ", ldc=", ldc, ", stride_c=", stride_c, ", ", dims(), ")"); });
        if (batch_count > 1 && stride_c < (m - 1) * ldc + n)
            fail(KN_ERROR_SHAPE_MISMATCH, fn, ": stride_c = ", stride_c, " makes the batches of C overlap (each C is ",
                 m, "x", n, " with ldc=", ldc, ", spanning ", (m - 1) * ldc + n, " elements)");

        kn::GemmArgs args{ta, tb, m, n, k, alpha, beta, A.memory, lda, stride_a, B.memory, ldb, stride_b,
                          C.memory, ldc, stride_c, batch_count};
        std::lock_guard<std::mutex> lock(dev.mutex);
        dev.gemm_f32(args);
    });
}

// ---- Elementwise --------------------------------------------------------------------------------

KN_API kn_status kn_unary_f32(kn_unary_op op, float alpha, const kn_buffer* x, kn_buffer* y, int64_t n) {
    return guarded([&] {
        const char* fn = "unary";
        check_enum(op, KN_UNARY_POW_SCALAR, fn, "op");
        check_non_negative(n, fn, "n");
        const Buffer& X = checked_buffer(x, fn, "x");
        const Buffer& Y = checked_buffer(y, fn, "y");
        Device& dev = same_device(fn, {{"x", x}, {"y", y}});
        check_holds(X, n, 4, fn, "x", [&] { return cat("n = ", n); });
        check_holds(Y, n, 4, fn, "y", [&] { return cat("n = ", n); });
        if (n == 0) return;
        std::lock_guard<std::mutex> lock(dev.mutex);
        dev.unary_f32({op, alpha, X.memory, Y.memory, n});
    });
}

KN_API kn_status kn_unary_backward_f32(kn_unary_op op, float alpha, const kn_buffer* x, const kn_buffer* y,
                                       const kn_buffer* dy, kn_buffer* dx, int64_t n) {
    return guarded([&] {
        const char* fn = "unary_backward";
        check_enum(op, KN_UNARY_POW_SCALAR, fn, "op");
        check_non_negative(n, fn, "n");
        bool uses_y = kn::unary_backward_uses_output(op);
        const kn_buffer* needed = uses_y ? y : x;
        if (!needed)
            fail(KN_ERROR_INVALID_ARGUMENT, fn, ": the derivative of this op is computed from ",
                 uses_y ? "the forward output y" : "the input x", ", which is NULL");
        const Buffer& N = checked_buffer(needed, fn, uses_y ? "y" : "x");
        const Buffer& DY = checked_buffer(dy, fn, "dy");
        const Buffer& DX = checked_buffer(dx, fn, "dx");
        Device& dev = same_device(fn, {{uses_y ? "y" : "x", needed}, {"dy", dy}, {"dx", dx}});
        check_holds(N, n, 4, fn, uses_y ? "y" : "x", [&] { return cat("n = ", n); });
        check_holds(DY, n, 4, fn, "dy", [&] { return cat("n = ", n); });
        check_holds(DX, n, 4, fn, "dx", [&] { return cat("n = ", n); });
        if (n == 0) return;
        std::lock_guard<std::mutex> lock(dev.mutex);
        dev.unary_backward_f32({op, alpha, uses_y ? nullptr : N.memory, uses_y ? N.memory : nullptr,
                                DY.memory, DX.memory, n});
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
        const char* fn = "binary";
        check_enum(op, KN_BINARY_MINIMUM, fn, "op");
        int64_t na = checked_elements(a_dims, a_rank, fn, "a");
        int64_t nb = checked_elements(b_dims, b_rank, fn, "b");
        int64_t nc = checked_elements(c_dims, c_rank, fn, "c");
        const Buffer& A = checked_buffer(a, fn, "a");
        const Buffer& B = checked_buffer(b, fn, "b");
        const Buffer& C = checked_buffer(c, fn, "c");
        Device& dev = same_device(fn, {{"a", a}, {"b", b}, {"c", c}});
        kn::BroadcastGeometry g = broadcast(a_dims, a_rank, b_dims, b_rank, c_dims, c_rank, fn);
        check_holds(A, na, 4, fn, "a", [&] { return "shape " + shape_string(a_dims, a_rank); });
        check_holds(B, nb, 4, fn, "b", [&] { return "shape " + shape_string(b_dims, b_rank); });
        check_holds(C, nc, 4, fn, "c", [&] { return "shape " + shape_string(c_dims, c_rank); });
        if (nc == 0) return;
        std::lock_guard<std::mutex> lock(dev.mutex);
        dev.binary_f32({op, g, A.memory, B.memory, C.memory});
    });
}

KN_API kn_status kn_binary_backward_f32(kn_binary_op op, const kn_buffer* a, const int64_t* a_dims,
                                        int32_t a_rank, const kn_buffer* b, const int64_t* b_dims,
                                        int32_t b_rank, const kn_buffer* dc, const int64_t* c_dims,
                                        int32_t c_rank, kn_buffer* da, kn_buffer* db) {
    return guarded([&] {
        const char* fn = "binary_backward";
        check_enum(op, KN_BINARY_MINIMUM, fn, "op");
        int64_t na = checked_elements(a_dims, a_rank, fn, "a");
        int64_t nb = checked_elements(b_dims, b_rank, fn, "b");
        int64_t nc = checked_elements(c_dims, c_rank, fn, "dc");
        const Buffer& A = checked_buffer(a, fn, "a");
        const Buffer& B = checked_buffer(b, fn, "b");
        const Buffer& DC = checked_buffer(dc, fn, "dc");
        if (da) checked_buffer(da, fn, "da");
        if (db) checked_buffer(db, fn, "db");
        Device& dev = same_device(fn, {{"a", a}, {"b", b}, {"dc", dc}, {"da", da}, {"db", db}});
        kn::BroadcastGeometry g = broadcast(a_dims, a_rank, b_dims, b_rank, c_dims, c_rank, fn);
        auto c_shape = [&] { return "shape " + shape_string(c_dims, c_rank); };
        check_holds(A, na, 4, fn, "a", [&] { return "shape " + shape_string(a_dims, a_rank); });
        check_holds(B, nb, 4, fn, "b", [&] { return "shape " + shape_string(b_dims, b_rank); });
        check_holds(DC, nc, 4, fn, "dc", c_shape);
        if (da) check_holds(checked_buffer(da, fn, "da"), nc, 4, fn, "da", [&] { return "the broadcast " + c_shape(); });
        if (db) check_holds(checked_buffer(db, fn, "db"), nc, 4, fn, "db", [&] { return "the broadcast " + c_shape(); });
        if (nc == 0 || (!da && !db)) return;
        std::lock_guard<std::mutex> lock(dev.mutex);
        dev.binary_backward_f32({op, g, A.memory, B.memory, DC.memory, memory_of(da),
                                 memory_of(db)});
    });
}

// ---- Reductions ---------------------------------------------------------------------------------

}  // extern "C"

namespace {
void check_reduce_shape(int64_t outer, int64_t reduce, int64_t inner, const char* fn) {
    check_non_negative(outer, fn, "outer");
    check_non_negative(reduce, fn, "reduce");
    check_non_negative(inner, fn, "inner");
}
}  // namespace

extern "C" {

KN_API kn_status kn_reduce_f32(kn_reduce_op op, const kn_buffer* x, kn_buffer* y, int64_t outer, int64_t reduce,
                               int64_t inner) {
    return guarded([&] {
        const char* fn = "reduce";
        check_enum(op, KN_REDUCE_SUM_SQUARES, fn, "op");
        check_reduce_shape(outer, reduce, inner, fn);
        const Buffer& X = checked_buffer(x, fn, "x");
        const Buffer& Y = checked_buffer(y, fn, "y");
        Device& dev = same_device(fn, {{"x", x}, {"y", y}});
        if (x == y) fail(KN_ERROR_INVALID_ARGUMENT, fn, ": y must not be the same buffer as x");
        int64_t out = mul(outer, inner, fn);
        auto shape = [&] { return cat("[outer, reduce, inner] = [", outer, ", ", reduce, ", ", inner, "]"); };
        check_holds(X, mul(out, reduce, fn), 4, fn, "x", shape);
        check_holds(Y, out, 4, fn, "y", shape);
        if (out == 0) return;
        std::lock_guard<std::mutex> lock(dev.mutex);
        if (reduce == 0) {
            if (op == KN_REDUCE_MAX || op == KN_REDUCE_MIN)
                fail(KN_ERROR_INVALID_ARGUMENT, fn, ": ", op == KN_REDUCE_MAX ? "max" : "min",
                     " over zero elements has no value (", shape(), ")");
            dev.fill_f32(Y.memory, 0, out, op == KN_REDUCE_MEAN ? std::numeric_limits<float>::quiet_NaN() : 0.0f);
            return;
        }
        dev.reduce_f32({op, X.memory, Y.memory, outer, reduce, inner});
    });
}

KN_API kn_status kn_argreduce_f32(kn_argreduce_op op, const kn_buffer* x, kn_buffer* indices, int64_t outer,
                                  int64_t reduce, int64_t inner) {
    return guarded([&] {
        const char* fn = "argreduce";
        check_enum(op, KN_ARGMIN, fn, "op");
        check_reduce_shape(outer, reduce, inner, fn);
        const Buffer& X = checked_buffer(x, fn, "x");
        const Buffer& I = checked_buffer(indices, fn, "indices");
        Device& dev = same_device(fn, {{"x", x}, {"indices", indices}});
        if (x == indices) fail(KN_ERROR_INVALID_ARGUMENT, fn, ": indices must not be the same buffer as x");
        int64_t out = mul(outer, inner, fn);
        auto shape = [&] { return cat("[outer, reduce, inner] = [", outer, ", ", reduce, ", ", inner, "]"); };
        check_holds(X, mul(out, reduce, fn), 4, fn, "x", shape);
        check_holds(I, out, 8, fn, "indices", shape);
        if (out == 0) return;
        if (reduce == 0)
            fail(KN_ERROR_INVALID_ARGUMENT, fn, ": ", op == KN_ARGMAX ? "argmax" : "argmin",
                 " over zero elements has no index (", shape(), ")");
        std::lock_guard<std::mutex> lock(dev.mutex);
        dev.argreduce_f32({op, X.memory, I.memory, outer, reduce, inner});
    });
}

// ---- Softmax ------------------------------------------------------------------------------------

KN_API kn_status kn_softmax_f32(const kn_buffer* x, kn_buffer* y, int64_t rows, int64_t cols, int32_t log) {
    return guarded([&] {
        const char* fn = "softmax";
        check_non_negative(rows, fn, "rows");
        check_non_negative(cols, fn, "cols");
        const Buffer& X = checked_buffer(x, fn, "x");
        const Buffer& Y = checked_buffer(y, fn, "y");
        Device& dev = same_device(fn, {{"x", x}, {"y", y}});
        int64_t n = mul(rows, cols, fn);
        auto shape = [&] { return cat("[rows, cols] = [", rows, ", ", cols, "]"); };
        check_holds(X, n, 4, fn, "x", shape);
        check_holds(Y, n, 4, fn, "y", shape);
        if (n == 0) return;
        std::lock_guard<std::mutex> lock(dev.mutex);
        dev.softmax_f32({X.memory, Y.memory, rows, cols, log != 0});
    });
}

KN_API kn_status kn_softmax_backward_f32(const kn_buffer* y, const kn_buffer* dy, kn_buffer* dx, int64_t rows,
                                         int64_t cols, int32_t log) {
    return guarded([&] {
        const char* fn = "softmax_backward";
        check_non_negative(rows, fn, "rows");
        check_non_negative(cols, fn, "cols");
        const Buffer& Y = checked_buffer(y, fn, "y");
        const Buffer& DY = checked_buffer(dy, fn, "dy");
        const Buffer& DX = checked_buffer(dx, fn, "dx");
        Device& dev = same_device(fn, {{"y", y}, {"dy", dy}, {"dx", dx}});
        int64_t n = mul(rows, cols, fn);
        auto shape = [&] { return cat("[rows, cols] = [", rows, ", ", cols, "]"); };
        check_holds(Y, n, 4, fn, "y", shape);
        check_holds(DY, n, 4, fn, "dy", shape);
        check_holds(DX, n, 4, fn, "dx", shape);
        if (n == 0) return;
        std::lock_guard<std::mutex> lock(dev.mutex);
        dev.softmax_backward_f32({Y.memory, DY.memory, DX.memory, rows, cols, log != 0});
    });
}


// ---- Losses -------------------------------------------------------------------------------------

KN_API kn_status kn_cross_entropy_f32(const kn_buffer* logits, const kn_buffer* labels, kn_buffer* losses,
                                      int64_t rows, int64_t cols) {
    return guarded([&] {
        const char* fn = "cross_entropy";
        check_non_negative(rows, fn, "rows");
        check_non_negative(cols, fn, "cols");
        const Buffer& X = checked_buffer(logits, fn, "logits");
        const Buffer& L = checked_buffer(labels, fn, "labels");
        const Buffer& Y = checked_buffer(losses, fn, "losses");
        Device& dev = same_device(fn, {{"logits", logits}, {"labels", labels}, {"losses", losses}});
        auto shape = [&] { return cat("[rows, cols] = [", rows, ", ", cols, "]"); };
        check_holds(X, mul(rows, cols, fn), 4, fn, "logits", shape);
        check_holds(L, rows, 8, fn, "labels", shape);
        check_holds(Y, rows, 4, fn, "losses", shape);
        if (rows == 0) return;
        if (cols == 0) fail(KN_ERROR_SHAPE_MISMATCH, fn, ": no classes (", shape(), ")");
        std::lock_guard<std::mutex> lock(dev.mutex);
        dev.cross_entropy_f32({X.memory, L.memory, Y.memory, rows, cols});
    });
}

KN_API kn_status kn_cross_entropy_backward_f32(const kn_buffer* logits, const kn_buffer* labels,
                                               const kn_buffer* dlosses, kn_buffer* dlogits, int64_t rows,
                                               int64_t cols) {
    return guarded([&] {
        const char* fn = "cross_entropy_backward";
        check_non_negative(rows, fn, "rows");
        check_non_negative(cols, fn, "cols");
        const Buffer& X = checked_buffer(logits, fn, "logits");
        const Buffer& L = checked_buffer(labels, fn, "labels");
        const Buffer& DY = checked_buffer(dlosses, fn, "dlosses");
        const Buffer& DX = checked_buffer(dlogits, fn, "dlogits");
        Device& dev = same_device(fn, {{"logits", logits}, {"labels", labels}, {"dlosses", dlosses}, {"dlogits", dlogits}});
        auto shape = [&] { return cat("[rows, cols] = [", rows, ", ", cols, "]"); };
        check_holds(X, mul(rows, cols, fn), 4, fn, "logits", shape);
        check_holds(L, rows, 8, fn, "labels", shape);
        check_holds(DY, rows, 4, fn, "dlosses", shape);
        check_holds(DX, mul(rows, cols, fn), 4, fn, "dlogits", shape);
        if (rows == 0 || cols == 0) return;
        std::lock_guard<std::mutex> lock(dev.mutex);
        dev.cross_entropy_backward_f32({X.memory, L.memory, DY.memory, DX.memory, rows, cols});
    });
}

// ---- Dropout ------------------------------------------------------------------------------------

}  // extern "C"

namespace {
kn_status dropout_call(const kn_buffer* in, kn_buffer* out, int64_t n, float p, int64_t seed, int64_t offset,
                       bool backward) {
    return guarded([&] {
        const char* fn = backward ? "dropout_backward" : "dropout";
        const char* in_name = backward ? "dy" : "x";
        const char* out_name = backward ? "dx" : "y";
        check_non_negative(n, fn, "n");
        check_non_negative(offset, fn, "offset");
        if (!(p >= 0.0f && p < 1.0f)) fail(KN_ERROR_INVALID_ARGUMENT, fn, ": p = ", p, " is outside [0, 1)");
        const Buffer& X = checked_buffer(in, fn, in_name);
        const Buffer& Y = checked_buffer(out, fn, out_name);
        Device& dev = same_device(fn, {{in_name, in}, {out_name, out}});
        check_holds(X, n, 4, fn, in_name, [&] { return cat("n = ", n); });
        check_holds(Y, n, 4, fn, out_name, [&] { return cat("n = ", n); });
        if (n == 0) return;
        kn::DropoutArgs args{X.memory, Y.memory, n, p, static_cast<uint64_t>(seed), static_cast<uint64_t>(offset)};
        std::lock_guard<std::mutex> lock(dev.mutex);
        if (backward) dev.dropout_backward_f32(args);
        else dev.dropout_f32(args);
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
        const char* fn = "clamp";
        check_non_negative(n, fn, "n");
        // low > high is allowed and gives high everywhere, as min(max(x, low), high) and PyTorch do.
        if (std::isnan(low) || std::isnan(high))
            fail(KN_ERROR_INVALID_ARGUMENT, fn, ": the bounds must be numbers (low = ", low, ", high = ", high, ")");
        const Buffer& X = checked_buffer(x, fn, "x");
        const Buffer& Y = checked_buffer(y, fn, "y");
        Device& dev = same_device(fn, {{"x", x}, {"y", y}});
        check_holds(X, n, 4, fn, "x", [&] { return cat("n = ", n); });
        check_holds(Y, n, 4, fn, "y", [&] { return cat("n = ", n); });
        if (n == 0) return;
        std::lock_guard<std::mutex> lock(dev.mutex);
        dev.clamp_f32({X.memory, Y.memory, n, low, high});
    });
}

}  // extern "C"

namespace {
// Parameter, gradient and every state buffer: live, on one device, n floats each, distinct.
Device& check_optimizer_buffers(const char* fn, int64_t n,
                                std::initializer_list<std::pair<const char*, const kn_buffer*>> buffers) {
    check_non_negative(n, fn, "n");
    for (const auto& [name, b] : buffers) {
        if (!b) continue;
        check_holds(checked_buffer(b, fn, name), n, 4, fn, name, [&] { return cat("n = ", n); });
    }
    for (auto i = buffers.begin(); i != buffers.end(); ++i)
        for (auto j = i + 1; j != buffers.end(); ++j)
            if (i->second && i->second == j->second)
                fail(KN_ERROR_INVALID_ARGUMENT, fn, ": '", i->first, "' and '", j->first, "' are the same buffer");
    return same_device(fn, buffers);
}

void check_rate(float v, const char* fn, const char* name) {
    if (!(v >= 0.0f)) fail(KN_ERROR_INVALID_ARGUMENT, fn, ": ", name, " = ", v, " must be >= 0");
}
}  // namespace

extern "C" {

KN_API kn_status kn_sgd_step_f32(kn_buffer* param, const kn_buffer* grad, kn_buffer* velocity, int64_t n, float lr,
                                 float momentum, float dampening, float weight_decay, int32_t nesterov,
                                 int32_t first_step) {
    return guarded([&] {
        const char* fn = "sgd_step";
        checked_buffer(param, fn, "param");
        checked_buffer(grad, fn, "grad");
        check_rate(lr, fn, "lr");
        check_rate(momentum, fn, "momentum");
        check_rate(weight_decay, fn, "weight_decay");
        if (momentum != 0.0f && !velocity) fail(KN_ERROR_INVALID_ARGUMENT, fn, ": momentum = ", momentum, " needs a velocity buffer");
        if (nesterov && (momentum == 0.0f || dampening != 0.0f))
            fail(KN_ERROR_INVALID_ARGUMENT, fn, ": Nesterov momentum needs momentum > 0 and dampening = 0");
        Device& dev = check_optimizer_buffers(fn, n, {{"param", param}, {"grad", grad}, {"velocity", momentum != 0.0f ? velocity : nullptr}});
        if (n == 0) return;
        std::lock_guard<std::mutex> lock(dev.mutex);
        dev.sgd_step_f32({memory_of(param), memory_of(grad), memory_of(momentum != 0.0f ? velocity : nullptr), n, lr, momentum,
                          dampening, weight_decay, nesterov != 0, first_step != 0});
    });
}

KN_API kn_status kn_adam_step_f32(kn_buffer* param, const kn_buffer* grad, kn_buffer* m, kn_buffer* v, int64_t n,
                                  float lr, float beta1, float beta2, float eps, float weight_decay,
                                  int32_t decoupled_weight_decay, int64_t step) {
    return guarded([&] {
        const char* fn = "adam_step";
        for (auto [name, b] : {std::pair<const char*, const kn_buffer*>{"param", param}, {"grad", grad}, {"m", m}, {"v", v}})
            checked_buffer(b, fn, name);
        check_rate(lr, fn, "lr");
        check_rate(eps, fn, "eps");
        check_rate(weight_decay, fn, "weight_decay");
        if (!(beta1 >= 0.0f && beta1 < 1.0f)) fail(KN_ERROR_INVALID_ARGUMENT, fn, ": beta1 = ", beta1, " is outside [0, 1)");
        if (!(beta2 >= 0.0f && beta2 < 1.0f)) fail(KN_ERROR_INVALID_ARGUMENT, fn, ": beta2 = ", beta2, " is outside [0, 1)");
        if (step < 1) fail(KN_ERROR_INVALID_ARGUMENT, fn, ": step = ", step, " must be >= 1 (the first update is step 1)");
        Device& dev = check_optimizer_buffers(fn, n, {{"param", param}, {"grad", grad}, {"m", m}, {"v", v}});
        if (n == 0) return;
        std::lock_guard<std::mutex> lock(dev.mutex);
        dev.adam_step_f32({memory_of(param), memory_of(grad), memory_of(m), memory_of(v), n, lr, beta1, beta2, eps, weight_decay,
                           decoupled_weight_decay != 0, step});
    });
}

KN_API kn_status kn_rmsprop_step_f32(kn_buffer* param, const kn_buffer* grad, kn_buffer* square_avg,
                                     kn_buffer* velocity, int64_t n, float lr, float alpha, float eps,
                                     float weight_decay, float momentum) {
    return guarded([&] {
        const char* fn = "rmsprop_step";
        checked_buffer(param, fn, "param");
        checked_buffer(grad, fn, "grad");
        checked_buffer(square_avg, fn, "square_avg");
        check_rate(lr, fn, "lr");
        check_rate(eps, fn, "eps");
        check_rate(weight_decay, fn, "weight_decay");
        check_rate(momentum, fn, "momentum");
        if (!(alpha >= 0.0f && alpha <= 1.0f)) fail(KN_ERROR_INVALID_ARGUMENT, fn, ": alpha = ", alpha, " is outside [0, 1]");
        if (momentum != 0.0f && !velocity) fail(KN_ERROR_INVALID_ARGUMENT, fn, ": momentum = ", momentum, " needs a velocity buffer");
        const kn_buffer* vel = momentum != 0.0f ? velocity : nullptr;
        Device& dev = check_optimizer_buffers(fn, n, {{"param", param}, {"grad", grad}, {"square_avg", square_avg}, {"velocity", vel}});
        if (n == 0) return;
        std::lock_guard<std::mutex> lock(dev.mutex);
        dev.rmsprop_step_f32({memory_of(param), memory_of(grad), memory_of(square_avg), memory_of(vel), n, lr, alpha,
                              eps, weight_decay, momentum});
    });
}

KN_API kn_status kn_adagrad_step_f32(kn_buffer* param, const kn_buffer* grad, kn_buffer* sum, int64_t n, float lr,
                                     float eps, float weight_decay) {
    return guarded([&] {
        const char* fn = "adagrad_step";
        checked_buffer(param, fn, "param");
        checked_buffer(grad, fn, "grad");
        checked_buffer(sum, fn, "sum");
        check_rate(lr, fn, "lr");
        check_rate(eps, fn, "eps");
        check_rate(weight_decay, fn, "weight_decay");
        Device& dev = check_optimizer_buffers(fn, n, {{"param", param}, {"grad", grad}, {"sum", sum}});
        if (n == 0) return;
        std::lock_guard<std::mutex> lock(dev.mutex);
        dev.adagrad_step_f32({memory_of(param), memory_of(grad), memory_of(sum), n, lr, eps, weight_decay});
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
    g.out_height = (padded_h - extent_h) / stride_height + 1;
    g.out_width = (padded_w - extent_w) / stride_width + 1;
    // With one output row (column) the stride is never stepped; a stride past the padded input is
    // replaced by the smallest one with the same single output, so that no backend multiplies a
    // stride near 2^63 by a row length (found by fuzz_c_api: stride_height * padded_width overflowed).
    if (g.out_height == 1) g.stride_height = std::min(stride_height, padded_h - extent_h + 1);
    if (g.out_width == 1) g.stride_width = std::min(stride_width, padded_w - extent_w + 1);
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
        const char* fn = "conv2d";
        kn::Conv2dGeometry g = conv_geometry(fn, KN_CONV_ARGS);
        const Buffer& X = checked_buffer(x, fn, "x");
        const Buffer& W = checked_buffer(w, fn, "w");
        const Buffer& Y = checked_buffer(y, fn, "y");
        if (bias) checked_buffer(bias, fn, "bias");
        Device& dev = same_device(fn, {{"x", x}, {"w", w}, {"bias", bias}, {"y", y}});
        ConvSizes n = conv_sizes(g, fn);
        auto shapes = [&] { return conv_shapes(g); };
        check_holds(X, n.x, 4, fn, "x", shapes);
        check_holds(W, n.w, 4, fn, "w", shapes);
        check_holds(Y, n.y, 4, fn, "y", shapes);
        if (bias) check_holds(checked_buffer(bias, fn, "bias"), out_channels, 4, fn, "bias", shapes);
        if (batch == 0) return;
        std::lock_guard<std::mutex> lock(dev.mutex);
        dev.conv2d_f32({g, X.memory, W.memory, memory_of(bias), Y.memory});
    });
}

KN_API kn_status kn_conv2d_backward_data_f32(const kn_buffer* dy, const kn_buffer* w, kn_buffer* dx, KN_CONV_PARAMS) {
    return guarded([&] {
        const char* fn = "conv2d_backward_data";
        kn::Conv2dGeometry g = conv_geometry(fn, KN_CONV_ARGS);
        const Buffer& DY = checked_buffer(dy, fn, "dy");
        const Buffer& W = checked_buffer(w, fn, "w");
        const Buffer& DX = checked_buffer(dx, fn, "dx");
        Device& dev = same_device(fn, {{"dy", dy}, {"w", w}, {"dx", dx}});
        ConvSizes n = conv_sizes(g, fn);
        auto shapes = [&] { return conv_shapes(g); };
        check_holds(DY, n.y, 4, fn, "dy", shapes);
        check_holds(W, n.w, 4, fn, "w", shapes);
        check_holds(DX, n.x, 4, fn, "dx", shapes);
        if (batch == 0) return;
        std::lock_guard<std::mutex> lock(dev.mutex);
        dev.conv2d_backward_data_f32({g, DY.memory, W.memory, DX.memory});
    });
}

KN_API kn_status kn_conv2d_backward_weights_f32(const kn_buffer* x, const kn_buffer* dy, kn_buffer* dw,
                                                kn_buffer* dbias, KN_CONV_PARAMS) {
    return guarded([&] {
        const char* fn = "conv2d_backward_weights";
        kn::Conv2dGeometry g = conv_geometry(fn, KN_CONV_ARGS);
        const Buffer& X = checked_buffer(x, fn, "x");
        const Buffer& DY = checked_buffer(dy, fn, "dy");
        const Buffer& DW = checked_buffer(dw, fn, "dw");
        if (dbias) checked_buffer(dbias, fn, "dbias");
        Device& dev = same_device(fn, {{"x", x}, {"dy", dy}, {"dw", dw}, {"dbias", dbias}});
        ConvSizes n = conv_sizes(g, fn);
        auto shapes = [&] { return conv_shapes(g); };
        check_holds(X, n.x, 4, fn, "x", shapes);
        check_holds(DY, n.y, 4, fn, "dy", shapes);
        check_holds(DW, n.w, 4, fn, "dw", shapes);
        if (dbias) check_holds(checked_buffer(dbias, fn, "dbias"), out_channels, 4, fn, "dbias", shapes);
        std::lock_guard<std::mutex> lock(dev.mutex);
        if (batch == 0) {  // an empty batch contributes nothing: the gradients are zero
            dev.fill_f32(DW.memory, 0, n.w, 0.0f);
            if (dbias) dev.fill_f32(memory_of(dbias), 0, out_channels, 0.0f);
            return;
        }
        dev.conv2d_backward_weights_f32({g, X.memory, DY.memory, DW.memory, memory_of(dbias)});
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
    g.out_height = (padded_h - kernel_height) / stride_height + 1;
    g.out_width = (padded_w - kernel_width) / stride_width + 1;
    // One output row (column): the stride is never stepped; a stride past the padded input becomes the
    // smallest with the same single output, so no backend adds it to a row index (found by fuzz_c_api:
    // ih + stride_height overflowed for a stride of 2^63 - 1). Every stride is then <= in + 1.
    if (g.out_height == 1) g.stride_height = std::min(stride_height, padded_h - kernel_height + 1);
    if (g.out_width == 1) g.stride_width = std::min(stride_width, padded_w - kernel_width + 1);
    return g;
}

kn_status pool_call(const kn_pool_op& op, const kn_buffer* in, kn_buffer* out, const kn_buffer* indices, int64_t batch,
                    int64_t channels, int64_t in_height, int64_t in_width, int64_t kernel_height, int64_t kernel_width,
                    int64_t stride_height, int64_t stride_width, int64_t pad_height, int64_t pad_width,
                    int32_t count_include_pad, bool backward) {
    return guarded([&] {
        const char* fn = backward ? "pool2d_backward" : "pool2d";
        const char* in_name = backward ? "dy" : "x";
        const char* out_name = backward ? "dx" : "y";
        check_enum(op, KN_POOL_AVG, fn, "op");
        kn::Pool2dGeometry g = pool_geometry(fn, batch, channels, in_height, in_width, kernel_height,
                                             kernel_width, stride_height, stride_width, pad_height, pad_width,
                                             count_include_pad);
        const Buffer& I = checked_buffer(in, fn, in_name);
        const Buffer& O = checked_buffer(out, fn, out_name);
        const kn_buffer* idx = op == KN_POOL_MAX ? indices : nullptr;
        if (backward && op == KN_POOL_MAX && !indices)
            fail(KN_ERROR_INVALID_ARGUMENT, fn, ": max pooling's backward needs the indices its forward call wrote");
        if (idx) checked_buffer(idx, fn, "indices");
        Device& dev = same_device(fn, {{in_name, in}, {out_name, out}, {"indices", idx}});
        int64_t planes = mul(batch, channels, fn);
        int64_t x_n = mul(planes, mul(in_height, in_width, fn), fn);
        int64_t y_n = mul(planes, mul(g.out_height, g.out_width, fn), fn);
        auto shapes = [&] { return pool_shapes(g); };
        check_holds(I, backward ? y_n : x_n, 4, fn, in_name, shapes);
        check_holds(O, backward ? x_n : y_n, 4, fn, out_name, shapes);
        if (idx) check_holds(checked_buffer(idx, fn, "indices"), y_n, 4, fn, "indices", shapes, "int32");
        if (batch == 0) return;
        std::lock_guard<std::mutex> lock(dev.mutex);
        if (backward) dev.pool2d_backward_f32({op, g, I.memory, memory_of(idx), O.memory});
        else dev.pool2d_f32({op, g, I.memory, O.memory, memory_of(idx)});
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
        const char* fn = "batch_norm";
        check_non_negative(batch, fn, "batch");
        check_non_negative(spatial, fn, "spatial");
        if (channels < 1) fail(KN_ERROR_INVALID_ARGUMENT, fn, ": channels = ", channels, " must be >= 1");
        if (!(eps > 0.0f)) fail(KN_ERROR_INVALID_ARGUMENT, fn, ": eps = ", eps, " must be > 0");
        if (!(momentum >= 0.0f && momentum <= 1.0f))
            fail(KN_ERROR_INVALID_ARGUMENT, fn, ": momentum = ", momentum, " is outside [0, 1]");
        if (training && mul(batch, spatial, fn) == 0)
            fail(KN_ERROR_SHAPE_MISMATCH, fn, ": training-mode statistics need at least one value per channel (batch = ",
                 batch, ", spatial = ", spatial, ")");
        if (!training && (!running_mean || !running_var))
            fail(KN_ERROR_INVALID_ARGUMENT, fn, ": inference mode (training = 0) needs running_mean and running_var");
        if ((running_mean == nullptr) != (running_var == nullptr))
            fail(KN_ERROR_INVALID_ARGUMENT, fn, ": pass both running_mean and running_var, or neither");
        const Buffer& X = checked_buffer(x, fn, "x");
        const Buffer& Y = checked_buffer(y, fn, "y");
        std::pair<const char*, kn_buffer*> per_channel[] = {{"gamma", const_cast<kn_buffer*>(gamma)},
                                                            {"beta", const_cast<kn_buffer*>(beta)},
                                                            {"running_mean", running_mean}, {"running_var", running_var},
                                                            {"save_mean", save_mean}, {"save_invstd", save_invstd}};
        auto shapes = [&] { return cat("[batch, channels, spatial] = [", batch, ", ", channels, ", ", spatial, "]"); };
        checked_buffer(gamma, fn, "gamma");  // required; the others in the list are optional
        checked_buffer(beta, fn, "beta");
        for (auto& [name, b] : per_channel)
            if (b) check_holds(checked_buffer(b, fn, name), channels, 4, fn, name, shapes);
        Device& dev = same_device(fn, {{"x", x}, {"y", y}, {"gamma", gamma}, {"beta", beta},
                                       {"running_mean", running_mean}, {"running_var", running_var},
                                       {"save_mean", save_mean}, {"save_invstd", save_invstd}});
        int64_t n = mul(mul(batch, channels, fn), spatial, fn);
        check_holds(X, n, 4, fn, "x", shapes);
        check_holds(Y, n, 4, fn, "y", shapes);
        if (n == 0) return;
        std::lock_guard<std::mutex> lock(dev.mutex);
        dev.batch_norm_f32({X.memory, Y.memory, memory_of(gamma), memory_of(beta), memory_of(running_mean), memory_of(running_var),
                            memory_of(save_mean), memory_of(save_invstd), batch, channels, spatial, eps, momentum, training != 0});
    });
}

KN_API kn_status kn_batch_norm_backward_f32(const kn_buffer* x, const kn_buffer* dy, const kn_buffer* gamma,
                                            const kn_buffer* save_mean, const kn_buffer* save_invstd, kn_buffer* dx,
                                            kn_buffer* dgamma, kn_buffer* dbeta, int64_t batch, int64_t channels,
                                            int64_t spatial, int32_t training) {
    return guarded([&] {
        const char* fn = "batch_norm_backward";
        check_non_negative(batch, fn, "batch");
        check_non_negative(spatial, fn, "spatial");
        if (channels < 1) fail(KN_ERROR_INVALID_ARGUMENT, fn, ": channels = ", channels, " must be >= 1");
        const Buffer& X = checked_buffer(x, fn, "x");
        const Buffer& DY = checked_buffer(dy, fn, "dy");
        if (dx) checked_buffer(dx, fn, "dx");
        auto shapes = [&] { return cat("[batch, channels, spatial] = [", batch, ", ", channels, ", ", spatial, "]"); };
        std::pair<const char*, const kn_buffer*> per_channel[] = {{"gamma", gamma}, {"save_mean", save_mean},
                                                                  {"save_invstd", save_invstd}, {"dgamma", dgamma},
                                                                  {"dbeta", dbeta}};
        for (auto& [name, b] : per_channel) check_holds(checked_buffer(b, fn, name), channels, 4, fn, name, shapes);
        Device& dev = same_device(fn, {{"x", x}, {"dy", dy}, {"gamma", gamma}, {"save_mean", save_mean},
                                       {"save_invstd", save_invstd}, {"dx", dx}, {"dgamma", dgamma}, {"dbeta", dbeta}});
        int64_t n = mul(mul(batch, channels, fn), spatial, fn);
        check_holds(X, n, 4, fn, "x", shapes);
        check_holds(DY, n, 4, fn, "dy", shapes);
        if (dx) check_holds(checked_buffer(dx, fn, "dx"), n, 4, fn, "dx", shapes);
        std::lock_guard<std::mutex> lock(dev.mutex);
        if (n == 0) {  // no values: the parameter gradients are zero sums
            dev.fill_f32(memory_of(dgamma), 0, channels, 0.0f);
            dev.fill_f32(memory_of(dbeta), 0, channels, 0.0f);
            return;
        }
        dev.batch_norm_backward_f32({X.memory, DY.memory, memory_of(gamma), memory_of(save_mean), memory_of(save_invstd),
                                     memory_of(dx), memory_of(dgamma), memory_of(dbeta), batch, channels, spatial,
                                     training != 0});
    });
}

}  // extern "C"
