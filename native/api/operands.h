// operands.h: the checks one kernel export of the C API (api.cpp) runs on its arguments, written once.
//
// An export names its buffers with their role, element type and the element count its shape needs;
// the Call checks them and runs the kernel under the device's lock:
//
//     Call call("softmax");                                    // the name every message starts with
//     call.non_negative({{"rows", rows}, {"cols", cols}});
//     int64_t n = call.mul(rows, cols);
//     auto shape = [&] { return cat("[rows, cols] = [", rows, ", ", cols, "]"); };
//     const Operand& X = call.in("x", x, n, shape);            // float32 unless an Item says otherwise
//     const Operand& Y = call.out("y", y, n, shape);           // optional(y) would let y be NULL
//     call.check();                                            // one device, and every size
//     if (n == 0) return;                                      // empty work: validated, nothing to run
//     call.run([&](Device& d) { d.softmax_f32({X.memory(), Y.memory(), rows, cols, log != 0}); });
//
// The first thing wrong is the one reported, in this order:
//   1. the scalar arguments (enums, sizes and their products, geometry): the export's own checks,
//      written before its operands (the optimizer updates keep checking param and grad before their
//      rates, as they always did);
//   2. each handle as it is declared, in declaration order: NULL, or not live (freed or forged);
//      then the export's rules on aliasing (the handles alone decide those);
//   3. check(): all present operands on one device (reported against the first declared), then each
//      operand holds what its shape needs, in declaration order.
// So a NULL or stale handle is reported before any size, and two devices before a size.
// A shape description (`why`) is a callable kept by reference and run only when a size check fails:
// a successful call (thousands per training step) builds no strings and allocates nothing. Pass a
// named lambda that lives as long as the Call (a temporary would not compile: it binds to `Why&`).
#pragma once

#include "backend.h"
#include "buffer_table.h"
#include "error.h"

#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <limits>
#include <mutex>
#include <string>
#include <utility>

namespace kn::api {

inline void check_non_negative(int64_t v, const char* fn, const char* name) {
    if (v < 0) fail(KN_ERROR_INVALID_ARGUMENT, fn, ": ", name, " = ", v, " is negative");
}

// Size arithmetic on already-checked non-negative values, refusing results past int64.
inline int64_t mul(int64_t a, int64_t b, const char* fn) {
    if (a != 0 && b > std::numeric_limits<int64_t>::max() / a)
        fail(KN_ERROR_INVALID_ARGUMENT, fn, ": sizes overflow int64 (", a, " * ", b, ")");
    return a * b;
}

inline int64_t add(int64_t a, int64_t b, const char* fn) {
    if (b > std::numeric_limits<int64_t>::max() - a)
        fail(KN_ERROR_INVALID_ARGUMENT, fn, ": sizes overflow int64 (", a, " + ", b, ")");
    return a + b;
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

[[noreturn]] inline void fail_not_live(const char* fn, const char* name) {
    fail(KN_ERROR_INVALID_ARGUMENT, fn, ": buffer '", name,
         "' is not a live buffer (already freed, or not created by kn_buffer_create)");
}

inline Buffer& checked_buffer(const kn_buffer* b, const char* fn, const char* name) {
    if (!b) fail(KN_ERROR_INVALID_ARGUMENT, fn, ": buffer '", name, "' is NULL");
    Buffer* found = buffers().find(b);
    if (!found) fail_not_live(fn, name);
    return *found;
}

// What one element of an operand is, as the size messages name it.
struct Item {
    int64_t bytes;
    const char* name;
};
inline constexpr Item kFloat32{4, "float32"}, kInt64{8, "int64"}, kInt32{4, "int32"};

// A buffer argument as the caller passed it: required (NULL is an error) unless wrapped in optional().
struct Handle {
    Handle(const kn_buffer* b) : handle(b) {}  // implicit on purpose: call.in("x", x, ...)
    const kn_buffer* handle;
    bool required = true;
};

// A buffer argument that may be NULL, meaning absent: not checked, its memory() null.
inline Handle optional(const kn_buffer* b) {
    Handle h(b);
    h.required = false;
    return h;
}

// One buffer argument of a call, as declared.
class Operand {
public:
    // The device memory to hand to the kernel; null for an absent optional operand.
    void* memory() const { return buffer_ ? buffer_->memory : nullptr; }

private:
    // No initialisers: a Call's array of them stays untouched until declare() fills one (the hot path).
    friend class Call;
    const char* name_;
    const kn_buffer* handle_;
    Buffer* buffer_;  // null when absent
    int64_t elements_;
    Item item_;
    const void* why_;                        // the description callable ...
    std::string (*describe_)(const void*);   // ... and how to call it
};

// The checks and the dispatch of one call of a kernel export; see the top of this file.
class Call {
public:
    explicit Call(const char* fn) : fn(fn) {}
    Call(const Call&) = delete;
    Call& operator=(const Call&) = delete;

    const char* const fn;  // "softmax": the start of every message

    // ---- Scalar arguments (step 1) ----
    void non_negative(std::initializer_list<std::pair<const char*, int64_t>> values) const {
        for (const auto& [name, v] : values) check_non_negative(v, fn, name);
    }
    template <typename Enum>
    void enumeration(const Enum& v, int32_t last, const char* name) const { check_enum(v, last, fn, name); }
    int64_t mul(int64_t a, int64_t b) const { return api::mul(a, b, fn); }
    int64_t add(int64_t a, int64_t b) const { return api::add(a, b, fn); }
    template <typename... Parts>
    [[noreturn]] void fail(kn_status status, Parts&&... parts) const {
        kn::fail(status, fn, ": ", std::forward<Parts>(parts)...);
    }

    // ---- Operands (step 2): `elements` items of `item` each; in and out differ only for the reader ----
    template <typename Why>
    const Operand& in(const char* name, Handle b, int64_t elements, Why& why, Item item = kFloat32) {
        return declare(name, b, elements, why, item);
    }
    template <typename Why>
    const Operand& out(const char* name, Handle b, int64_t elements, Why& why, Item item = kFloat32) {
        return declare(name, b, elements, why, item);
    }

    // No two present operands are the same buffer (for updates that read and write several in place).
    void all_distinct() const {
        for (int i = 0; i < count_; ++i)
            for (int j = i + 1; j < count_; ++j)
                if (operands_[i].handle_ && operands_[i].handle_ == operands_[j].handle_)
                    fail(KN_ERROR_INVALID_ARGUMENT, "'", operands_[i].name_, "' and '", operands_[j].name_,
                         "' are the same buffer");
    }

    // ---- Step 3: one device, then every size; returns the device ----
    Device& check() {
        const Operand* first = nullptr;
        for (int i = 0; i < count_; ++i) {
            const Operand& o = operands_[i];
            if (!o.buffer_) continue;
            if (!first) first = &o;
            else if (o.buffer_->device != first->buffer_->device)
                fail(KN_ERROR_DEVICE_MISMATCH, "'", first->name_, "' is on ", first->buffer_->device->name,
                         " but '", o.name_, "' is on ", o.buffer_->device->name, "; move them to one device first");
        }
        if (!first) fail(KN_ERROR_INTERNAL, "no buffer operand was declared");
        for (int i = 0; i < count_; ++i) {
            const Operand& o = operands_[i];
            if (!o.buffer_) continue;
            int64_t need = mul(o.elements_, o.item_.bytes);
            if (o.buffer_->bytes < need)
                fail(KN_ERROR_SHAPE_MISMATCH, "buffer '", o.name_, "' holds ", o.buffer_->bytes / o.item_.bytes,
                         " ", o.item_.name, " elements (", o.buffer_->bytes, " bytes) but ", o.describe_(o.why_),
                         " needs ", o.elements_);
        }
        device_ = first->buffer_->device;
        return *device_;
    }

    // Runs `kernel(device)` under the device's lock. Only after check(): a forgotten check() fails
    // every call of the export, which any test that reaches its kernel shows.
    template <typename Kernel>
    void run(Kernel&& kernel) {
        if (!device_) fail(KN_ERROR_INTERNAL, "run before check (a bug in api.cpp)");
        std::lock_guard<std::mutex> lock(device_->mutex);
        kernel(*device_);
    }

private:
    static constexpr int kMaxOperands = 8;  // batch normalization takes the most

    template <typename Why>
    const Operand& declare(const char* name, Handle b, int64_t elements, Why& why, Item item) {
        if (count_ == kMaxOperands) fail(KN_ERROR_INTERNAL, "more than ", kMaxOperands, " buffer operands");
        Operand& o = operands_[count_++];
        o.name_ = name;
        o.handle_ = b.handle;
        o.buffer_ = b.handle || b.required ? &checked_buffer(b.handle, fn, name) : nullptr;
        o.elements_ = elements;
        o.item_ = item;
        o.why_ = &why;
        o.describe_ = [](const void* f) -> std::string { return (*static_cast<const Why*>(f))(); };
        return o;
    }

    Operand operands_[kMaxOperands];
    int count_ = 0;
    Device* device_ = nullptr;  // set by check()
};

}  // namespace kn::api
