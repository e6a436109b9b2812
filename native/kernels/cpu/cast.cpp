// cast.cpp: kn_cast on the CPU: y[i] = (to) x[i] between float32, int32 and int64, by the rules of
// kernels/cast_rules.h. A streaming loop per pair of types (the compiler vectorises the plain ones);
// at most 16 bytes per element move, so it runs at memory bandwidth on the thread pool.
#include "cpu_kernels.h"
#include "cast_rules.h"
#include "thread_pool.h"

#include <cstring>

namespace kn::cpu {
namespace {

constexpr int64_t kGrain = 1 << 15;  // elements per hand-off to the pool

template <typename From, typename To, typename Convert>
void convert(const CastArgs& a, Convert f) {
    const From* x = static_cast<const From*>(a.x);
    To* y = static_cast<To*>(a.y);
    parallel_for(a.n, kGrain, [&](int64_t begin, int64_t end) {
        for (int64_t i = begin; i < end; ++i) y[i] = f(x[i]);
    });
}

int64_t element_bytes(kn_dtype t) { return t == KN_INT64 ? 8 : 4; }

}  // namespace

void cast(const CastArgs& a) {
    if (a.from == a.to) {
        std::memcpy(a.y, a.x, static_cast<size_t>(a.n * element_bytes(a.from)));
        return;
    }
    switch (a.from) {
    case KN_FLOAT32:
        if (a.to == KN_INT32) convert<float, int32_t>(a, cast_float_to_int32);
        else convert<float, int64_t>(a, cast_float_to_int64);
        return;
    case KN_INT32:
        if (a.to == KN_FLOAT32) convert<int32_t, float>(a, [](int32_t v) { return static_cast<float>(v); });
        else convert<int32_t, int64_t>(a, [](int32_t v) { return static_cast<int64_t>(v); });
        return;
    case KN_INT64:
        if (a.to == KN_FLOAT32) convert<int64_t, float>(a, [](int64_t v) { return static_cast<float>(v); });
        else convert<int64_t, int32_t>(a, cast_int64_to_int32);
        return;
    }
}

}  // namespace kn::cpu
