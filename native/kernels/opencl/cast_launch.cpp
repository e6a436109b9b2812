// cast_launch.cpp: the launcher of cast.cl (kn_cast): one kernel per pair of types, one work-item
// per element (per 32-bit word for a same-type copy).
#include "opencl_backend.h"

namespace kn::opencl {

namespace {

const char* kernel_name(kn_dtype from, kn_dtype to) {
    switch (from) {
    case KN_FLOAT32: return to == KN_INT32 ? "cast_f32_i32" : "cast_f32_i64";
    case KN_INT32: return to == KN_FLOAT32 ? "cast_i32_f32" : "cast_i32_i64";
    case KN_INT64: return to == KN_FLOAT32 ? "cast_i64_f32" : "cast_i64_i32";
    }
    return nullptr;
}

}  // namespace

void cast(const CastArgs& a, Queue& q) {
    if (a.from == a.to) {
        const char* kname = "cast_copy_words";
        const int64_t words = a.from == KN_INT64 ? 2 * a.n : a.n;
        cl_kernel kern = q.kernel(kname);
        q.set_args(kern, kname, mem(a.x), mem(a.y), cl_long{words});
        q.launch_1d(kern, kname, words);
        return;
    }
    const char* kname = kernel_name(a.from, a.to);
    cl_kernel kern = q.kernel(kname);
    q.set_args(kern, kname, mem(a.x), mem(a.y), cl_long{a.n});
    q.launch_1d(kern, kname, a.n);
}

}  // namespace kn::opencl
