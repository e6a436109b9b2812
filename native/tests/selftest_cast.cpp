// selftest_cast.cpp: kn_cast between float32, int32 and int64 on every device, compared bit for bit
// with a host reference written from kernels.h's words (not from kernels/cast_rules.h, so a wrong
// rule there is caught too): truncation toward zero, saturation, NaN -> 0, round to nearest even for
// int -> float, the low 32 bits for int64 -> int32. Each case holds the edge values (+-0.5, +-2^31,
// +-2^63, +-inf, NaN, 2^24 + 1, ...) and random values, at lengths that are not multiples of any
// work-group, and checks the guard after the output and that the input is untouched.
#include "selftest_cast.h"

#include <cmath>
#include <functional>
#include <limits>

namespace selftest {
namespace {

const char* type_name(kn_dtype t) { return t == KN_FLOAT32 ? "float32" : t == KN_INT32 ? "int32" : "int64"; }

// The rules of kernels.h in plain double arithmetic.
int64_t float_to_int(float x, double lo, double hi, int64_t lo_value, int64_t hi_value) {
    if (std::isnan(x)) return 0;
    const double t = std::trunc(static_cast<double>(x));
    if (t < lo) return lo_value;
    if (t > hi) return hi_value;
    return static_cast<int64_t>(t);
}
int32_t want_f32_i32(float x) {
    return static_cast<int32_t>(float_to_int(x, -2147483648.0, 2147483647.0, INT32_MIN, INT32_MAX));
}
int64_t want_f32_i64(float x) {
    if (std::isnan(x)) return 0;
    if (x >= 9223372036854775808.0f) return INT64_MAX;  // 2^63 is not an int64: compare in float
    if (x < -9223372036854775808.0f) return INT64_MIN;
    return static_cast<int64_t>(std::trunc(static_cast<double>(x)));
}
int32_t want_i64_i32(int64_t v) {  // the low 32 bits, two's complement
    int64_t low = static_cast<int64_t>(static_cast<uint64_t>(v) & 0xFFFFFFFFu);
    return static_cast<int32_t>(low >= 0x80000000LL ? low - 0x100000000LL : low);
}
// int -> float: the host compiler's conversion, which rounds to nearest even on every target we
// build for (the spot values below pin the rule independently: 2^24 + 1 -> 2^24).
float want_int_to_f32(int64_t v) { return static_cast<float>(v); }

std::vector<float> float_inputs(Rng& rng, int64_t n) {
    const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
    std::vector<float> v = {0.0f, -0.0f, 0.5f, -0.5f, 0.99999994f, -0.99999994f, 1.0f, -1.0f, 2.7f, -2.7f,
                            16777217.0f, 2147483520.0f, 2147483648.0f, -2147483648.0f, -2147483904.0f, 3e9f, -3e9f,
                            9.2233715e18f, 9223372036854775808.0f, -9223372036854775808.0f, -1e19f, 1e30f, -1e30f,
                            inf, -inf, nan, -nan, 1e-30f, -1e-30f};
    while (static_cast<int64_t>(v.size()) < n) v.push_back(static_cast<float>(rng.uniform(-1e6, 1e6)));
    v.resize(static_cast<size_t>(n));
    return v;
}
std::vector<int32_t> int32_inputs(Rng& rng, int64_t n) {
    std::vector<int32_t> v = {0, 1, -1, 7, -7, 16777216, 16777217, -16777217, 16777219, INT32_MAX, INT32_MIN,
                              INT32_MAX - 64, 123456789};
    while (static_cast<int64_t>(v.size()) < n) v.push_back(static_cast<int32_t>(rng.uniform(-2e9, 2e9)));
    v.resize(static_cast<size_t>(n));
    return v;
}
std::vector<int64_t> int64_inputs(Rng& rng, int64_t n) {
    std::vector<int64_t> v = {0, 1, -1, 5, -5, (int64_t{1} << 32) + 5, -(int64_t{1} << 32) - 5, INT32_MAX, INT32_MIN,
                              int64_t{INT32_MAX} + 1, int64_t{INT32_MIN} - 1, INT64_MAX, INT64_MIN, 16777217,
                              (int64_t{1} << 53) + 1, (int64_t{1} << 40) + (int64_t{1} << 16) + 1, -(int64_t{1} << 62)};
    while (static_cast<int64_t>(v.size()) < n) v.push_back(static_cast<int64_t>(rng.uniform(-9e18, 9e18)));
    v.resize(static_cast<size_t>(n));
    return v;
}

template <typename From, typename To>
void cast_case(Context& cx, kn_dtype from, kn_dtype to, const std::vector<From>& x, std::function<To(From)> rule) {
    const int64_t n = static_cast<int64_t>(x.size());
    const std::string name = std::string("cast ") + type_name(from) + " -> " + type_name(to) + ", n = " + std::to_string(n);
    cx.report.run(name, [&] {
        Problems problems;
        DeviceArray<From> X(cx.device, x);
        DeviceArray<To> Y(cx.device, std::vector<To>(static_cast<size_t>(n), sentinel<To>()));
        expect_ok_or_skip(cx, kn_cast(X.get(), from, Y.get(), to, n), "kn_cast");
        std::vector<To> want = Y.written();
        for (int64_t i = 0; i < n; ++i) want[i] = rule(x[i]);
        const std::vector<To> got = Y.read();
        for (int64_t i = 0; i < n && problems.empty(); ++i)
            if (!same_bits(got[i], want[i]))
                problems.add("y[" + std::to_string(i) + "] of x = " + fmt(static_cast<double>(x[i])) + " is " +
                             fmt(static_cast<double>(got[i])) + ", want " + fmt(static_cast<double>(want[i])));
        problems.add(guard_violation(got, Y, "y"));
        problems.add(input_violation(X, "x"));
        return problems;
    });
}

}  // namespace

void test_cast(Context& cx) {
    Rng rng(seed_of("cast inputs"));
    for (int64_t n : {int64_t{1}, int64_t{29}, int64_t{1000}, int64_t{70001}}) {
        if (cx.quick && n > 1000) continue;
        const auto f = float_inputs(rng, n);
        const auto i32 = int32_inputs(rng, n);
        const auto i64 = int64_inputs(rng, n);
        cast_case<float, int32_t>(cx, KN_FLOAT32, KN_INT32, f, want_f32_i32);
        cast_case<float, int64_t>(cx, KN_FLOAT32, KN_INT64, f, want_f32_i64);
        cast_case<float, float>(cx, KN_FLOAT32, KN_FLOAT32, f, [](float v) { return v; });
        cast_case<int32_t, float>(cx, KN_INT32, KN_FLOAT32, i32, [](int32_t v) { return want_int_to_f32(v); });
        cast_case<int32_t, int64_t>(cx, KN_INT32, KN_INT64, i32, [](int32_t v) { return int64_t{v}; });
        cast_case<int32_t, int32_t>(cx, KN_INT32, KN_INT32, i32, [](int32_t v) { return v; });
        cast_case<int64_t, float>(cx, KN_INT64, KN_FLOAT32, i64, [](int64_t v) { return want_int_to_f32(v); });
        cast_case<int64_t, int32_t>(cx, KN_INT64, KN_INT32, i64, want_i64_i32);
        cast_case<int64_t, int64_t>(cx, KN_INT64, KN_INT64, i64, [](int64_t v) { return v; });
    }

    // Spot values stated in kernels.h, so the reference above cannot drift with the kernels.
    cx.report.run("cast kernels.h examples", [&] {
        Problems p;
        DeviceArray<float> X(cx.device, {2.7f, -2.7f, std::numeric_limits<float>::infinity(), 3e9f,
                                         -std::numeric_limits<float>::infinity(), std::numeric_limits<float>::quiet_NaN()});
        DeviceArray<int32_t> Y(cx.device, std::vector<int32_t>(6, 0));
        expect_ok_or_skip(cx, kn_cast(X.get(), KN_FLOAT32, Y.get(), KN_INT32, 6), "kn_cast");
        const std::vector<int32_t> want = {2, -2, INT32_MAX, INT32_MAX, INT32_MIN, 0}, got = Y.read();
        for (int i = 0; i < 6; ++i)
            if (got[i] != want[i]) p.add("float32 -> int32 of element " + std::to_string(i) + " is " + std::to_string(got[i]) +
                                         ", want " + std::to_string(want[i]));
        DeviceArray<int64_t> L(cx.device, {(int64_t{1} << 32) + 5, 16777217});
        DeviceArray<int32_t> I(cx.device, {0, 0});
        DeviceArray<float> F(cx.device, {0.0f, 0.0f});
        expect_ok_or_skip(cx, kn_cast(L.get(), KN_INT64, I.get(), KN_INT32, 2), "kn_cast");
        expect_ok_or_skip(cx, kn_cast(L.get(), KN_INT64, F.get(), KN_FLOAT32, 2), "kn_cast");
        if (I.read()[0] != 5) p.add("int64 2^32 + 5 -> int32 is " + std::to_string(I.read()[0]) + ", want 5");
        if (F.read()[1] != 16777216.0f) p.add("int64 2^24 + 1 -> float32 is " + fmt(F.read()[1]) + ", want 16777216");
        return p;
    });

    auto error_case = [&](const std::string& name, std::function<std::string()> body) {
        cx.report.run("error cast " + name, [&] {
            Problems p;
            p.add(body());
            return p;
        });
    };
    DeviceArray<float> x(cx.device, std::vector<float>(8, 1.5f));
    DeviceArray<int64_t> y(cx.device, std::vector<int64_t>(8, 0));
    error_case("y too small for int64", [&] {
        DeviceArray<int32_t> small(cx.device, std::vector<int32_t>(8, 0));  // 8 + guard int32 = fewer than 16 int64
        kn_status s = kn_cast(x.get(), KN_FLOAT32, small.get(), KN_INT64, 16);
        return expect_error(cx, s, KN_ERROR_SHAPE_MISMATCH, {"cast", "buffer 'y'", "int64"});
    });
    error_case("unknown x_type", [&] {
        kn_status s = kn_cast(x.get(), static_cast<kn_dtype>(7), y.get(), KN_INT64, 4);
        return expect_error(cx, s, KN_ERROR_INVALID_ARGUMENT, {"x_type"});
    });
    error_case("unknown y_type", [&] {
        kn_status s = kn_cast(x.get(), KN_FLOAT32, y.get(), static_cast<kn_dtype>(-1), 4);
        return expect_error(cx, s, KN_ERROR_INVALID_ARGUMENT, {"y_type"});
    });
    error_case("y is x", [&] {
        kn_status s = kn_cast(x.get(), KN_FLOAT32, x.get(), KN_INT32, 4);
        return expect_error(cx, s, KN_ERROR_INVALID_ARGUMENT, {"same buffer"});
    });
    error_case("negative n", [&] {
        kn_status s = kn_cast(x.get(), KN_FLOAT32, y.get(), KN_INT64, -1);
        return expect_error(cx, s, KN_ERROR_INVALID_ARGUMENT, {"n = -1"});
    });
    error_case("null x", [&] {
        kn_status s = kn_cast(nullptr, KN_FLOAT32, y.get(), KN_INT64, 4);
        return expect_error(cx, s, KN_ERROR_INVALID_ARGUMENT, {"x"});
    });
}

}  // namespace selftest
