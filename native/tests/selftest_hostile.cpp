// selftest_hostile.cpp: hostile input found by the probe of issue 12, one case per defect. Each case
// gives the C API what a careless or malicious caller could (sizes next to 2^63, indices pointing
// anywhere, stale handles, padding that wraps) and checks that the call is refused with a message
// naming the problem, that nothing outside the buffers was written, and that a correct call
// afterwards still gives the right answer (expect_error squares five numbers). Plus the three places
// where the library disagreed with PyTorch's semantics (clamp with low > high, pow(-inf, 0.5), gemm
// with k = 0 and lda = 0).
#include "selftest_hostile.h"

#include <atomic>
#include <cmath>
#include <functional>
#include <limits>
#include <mutex>
#include <thread>

namespace selftest {

namespace {

constexpr int64_t kInt64Max = std::numeric_limits<int64_t>::max();

}  // namespace

void test_hostile_input(Context& cx) {
    auto hostile_case = [&](const std::string& name, std::function<std::string()> body) {
        cx.report.run("hostile " + name, [&] {
            Problems p;
            p.add(body());
            return p;
        });
    };

    // 1. The caching allocator rounded the request up to its size class with (bytes + granule - 1),
    //    which wraps near 2^63: the request then took a parked 1 KiB block and reported KN_OK.
    for (int64_t bytes : {kInt64Max, kInt64Max - 511, kInt64Max - (int64_t{1} << 20) + 2,
                          ((int64_t{1} << 61) - 1) * 4 /* Tensor.Zeros([(1L<<61)-1]) */}) {
        hostile_case("buffer_create " + std::to_string(bytes) + " bytes after a small free", [&] {
            kn_buffer* small = nullptr;
            expect_ok(kn_buffer_create(cx.device, 64, &small), "kn_buffer_create (64 bytes)");
            expect_ok(kn_buffer_free(small), "kn_buffer_free");  // parks a small block
            kn_buffer* huge = nullptr;
            kn_status s = kn_buffer_create(cx.device, bytes, &huge);
            std::string problem = expect_error(cx, s, KN_ERROR_OUT_OF_MEMORY, {std::to_string(bytes), cx.name});
            if (s == KN_OK) kn_buffer_free(huge);  // never touched: writing it would crash
            return problem;
        });
    }

    // 2. Max pooling's backward routes dy through the indices its forward call wrote; the CPU wrote
    //    dx_plane[index] for whatever the buffer held. Hostile indices must be refused (CPU) or
    //    ignored (the GPU kernels gather: a dx element only takes dy from windows that cover it), and
    //    nothing outside dx may change.
    for (int32_t bad : {std::numeric_limits<int32_t>::min(), std::numeric_limits<int32_t>::max(), -1, 16}) {
        hostile_case("max pool backward with index " + std::to_string(bad), [&] {
            // One 4x4 plane, 2x2 windows, stride 2: 2x2 outputs; the second output's index is bad.
            DeviceArray<float> DY(cx.device, std::vector<float>(4, 1.0f));
            DeviceArray<int32_t> I(cx.device, std::vector<int32_t>{0, bad, 8, 10});
            DeviceArray<float> DX(cx.device, nan_filled(16));
            kn_status s = kn_pool2d_backward_f32(KN_POOL_MAX, DY.get(), I.get(), DX.get(), 1, 1, 4, 4, 2, 2, 2, 2, 0, 0, 1);
            std::string problem;
            if (cx.kind == KN_DEVICE_CPU || s != KN_OK)
                problem = expect_error(cx, s, KN_ERROR_INVALID_ARGUMENT, {std::to_string(bad), "position 1"});
            std::string guard = guard_violation(DX.read(), DX, "dx");
            return problem + (problem.empty() || guard.empty() ? "" : "; ") + guard;
        });
    }

    // 3. A freed handle used again. The handle was the address of a freed struct: the next buffer
    //    created often got the same address, so freeing A twice freed B.
    hostile_case("double free after the handle's address was reused", [&] {
        kn_buffer *a = nullptr, *b = nullptr;
        expect_ok(kn_buffer_create(cx.device, 256, &a), "kn_buffer_create (A)");
        expect_ok(kn_buffer_free(a), "kn_buffer_free (A)");
        expect_ok(kn_buffer_create(cx.device, 256, &b), "kn_buffer_create (B)");
        std::string problem = expect_error(cx, kn_buffer_free(a), KN_ERROR_INVALID_ARGUMENT, {"freed"});
        // B must be untouched and usable.
        std::vector<float> in(64, 2.5f), out(64, 0.0f);
        kn_status w = kn_buffer_write(b, 0, in.data(), 256);
        kn_status r = w == KN_OK ? kn_buffer_read(b, 0, out.data(), 256) : w;
        if (r != KN_OK || out != in)
            problem += std::string(problem.empty() ? "" : "; ") + "buffer B was freed or damaged by freeing A again (" +
                       status_name(r) + " " + kn_last_error() + ")";
        if (r == KN_OK) expect_ok(kn_buffer_free(b), "kn_buffer_free (B)");
        return problem;
    });
    hostile_case("kernel call with a freed handle", [&] {
        DeviceArray<float> Y(cx.device, nan_filled(4));
        kn_buffer* a = nullptr;
        expect_ok(kn_buffer_create(cx.device, 16, &a), "kn_buffer_create");
        expect_ok(kn_buffer_free(a), "kn_buffer_free");
        return expect_error(cx, kn_unary_f32(KN_UNARY_EXP, 0.0f, a, Y.get(), 4), KN_ERROR_INVALID_ARGUMENT, {"'x'"});
    });
    hostile_case("handle that was never created", [&] {
        DeviceArray<float> Y(cx.device, nan_filled(4));
        // An address no allocator hands out as a handle: the library must not read through it.
        auto* forged = reinterpret_cast<kn_buffer*>(uintptr_t{0x1000});
        return expect_error(cx, kn_unary_f32(KN_UNARY_EXP, 0.0f, forged, Y.get(), 4), KN_ERROR_INVALID_ARGUMENT, {"'x'"});
    });

    // Handles come from a table read without a lock: four threads creating, using and freeing buffers,
    // each also freeing its previous (stale) handle again, must each see only their own buffers.
    hostile_case("handles from four threads, with stale frees", [&] {
        std::atomic<int> problems{0};
        std::string first_problem;
        std::mutex first_mutex;
        auto worker = [&](int id) {
            kn_buffer* previous = nullptr;
            for (int i = 0; i < (cx.quick ? 200 : 1000) && problems.load() == 0; ++i) {
                kn_buffer *x = nullptr, *y = nullptr;
                std::vector<float> in(8, static_cast<float>(id * 100000 + i)), out(8, 0.0f);
                std::string problem;
                if (kn_buffer_create(cx.device, 32, &x) != KN_OK || kn_buffer_create(cx.device, 32, &y) != KN_OK)
                    problem = std::string("create: ") + kn_last_error();
                else if (previous && kn_buffer_free(previous) != KN_ERROR_INVALID_ARGUMENT)
                    problem = "freeing a stale handle again was not refused";
                else if (kn_buffer_write(x, 0, in.data(), 32) != KN_OK ||
                         kn_unary_f32(KN_UNARY_NEG, 0.0f, x, y, 8) != KN_OK || kn_buffer_read(y, 0, out.data(), 32) != KN_OK)
                    problem = std::string("use: ") + kn_last_error();
                else if (out[7] != -in[7])
                    problem = "thread " + std::to_string(id) + " read " + fmt(out[7]) + ", want " + fmt(-in[7]);
                kn_buffer_free(x);
                kn_buffer_free(y);
                previous = x;
                if (!problem.empty()) {
                    std::lock_guard<std::mutex> lock(first_mutex);
                    if (problems++ == 0) first_problem = problem;
                }
            }
        };
        std::vector<std::thread> threads;
        for (int t = 0; t < 4; ++t) threads.emplace_back(worker, t);
        for (auto& t : threads) t.join();
        return first_problem;
    });

    // 4. 2 * pad wrapped before the check: "window is larger than the padded input -9223372036854775804x4".
    hostile_case("pool2d padding near 2^62", [&] {
        DeviceArray<float> X(cx.device, std::vector<float>(16, 1.0f)), Y(cx.device, nan_filled(16));
        const int64_t pad = (int64_t{1} << 62) + 2;
        kn_status s = kn_pool2d_f32(KN_POOL_MAX, X.get(), Y.get(), nullptr, 1, 1, 4, 4, 3, 2, 1, 1, pad, 0, 1);
        std::string problem = expect_error(cx, s, KN_ERROR_INVALID_ARGUMENT, {std::to_string(pad), "pad_height"});
        if (std::string(kn_last_error()).find("-9223372036854775804") != std::string::npos)
            problem += "; the message shows a wrapped size: " + std::string(kn_last_error());
        return problem;
    });
    // Found by fuzz_c_api: the int32 plane check multiplied in_height * in_width first (UBSan: signed
    // overflow); a wrapped product could pass it.
    hostile_case("pool2d plane of 2^63 - 1 squared elements", [&] {
        DeviceArray<float> X(cx.device, std::vector<float>(16, 1.0f)), Y(cx.device, nan_filled(16));
        kn_status s = kn_pool2d_f32(KN_POOL_AVG, X.get(), Y.get(), nullptr, 1, 1, kInt64Max, kInt64Max, 2, 2, 2, 2, 0, 0, 1);
        return expect_error(cx, s, KN_ERROR_INVALID_ARGUMENT, {"too large for int32"});
    });
    hostile_case("pool2d plane of 2^32 elements", [&] {
        DeviceArray<float> X(cx.device, std::vector<float>(16, 1.0f)), Y(cx.device, nan_filled(16));
        kn_status s = kn_pool2d_f32(KN_POOL_AVG, X.get(), Y.get(), nullptr, 1, 1, int64_t{1} << 16, int64_t{1} << 16, 2, 2, 2, 2, 0, 0, 1);
        return expect_error(cx, s, KN_ERROR_INVALID_ARGUMENT, {"too large for int32"});
    });
    // Found by fuzz_c_api: broadcasting multiplied the dimensions from the right, past the zero that
    // keeps the element count of [0, 2^61 + 1, 5] in range (UBSan: signed overflow). An empty result
    // is fine: nothing to compute.
    hostile_case("binary with an empty shape whose other dimensions overflow", [&] {
        DeviceArray<float> A(cx.device, std::vector<float>(5, 1.0f)), C(cx.device, nan_filled(4));
        const int64_t dims[] = {0, (int64_t{1} << 61) + 1, 5}, b_dims[] = {5};
        expect_ok(kn_binary_f32(KN_BINARY_ADD, C.get(), dims, 3, A.get(), b_dims, 1, C.get(), dims, 3), "kn_binary_f32");
        expect_ok(kn_binary_backward_f32(KN_BINARY_MUL, C.get(), dims, 3, A.get(), b_dims, 1, C.get(), dims, 3, nullptr, nullptr),
                  "kn_binary_backward_f32");
        std::vector<float> c = C.read();
        return first_changed(c, C.written(), 0, C.size() + kGuard, "c");
    });
    // Found by fuzz_c_api: the CPU's padded copy of the input had (in + 2 pad)^2 floats, a product
    // that wrapped (pad 2^31 asked for 32 GiB instead of 2^66 bytes: on a large machine the lowering
    // would then write past it), and a huge stride with one output row overflowed stride * row length.
    hostile_case("conv2d whose padded input plane overflows int64", [&] {
        DeviceArray<float> X(cx.device, std::vector<float>(1, 1.0f)), W(cx.device, std::vector<float>(1, 1.0f));
        DeviceArray<float> Y(cx.device, nan_filled(1));
        const int64_t pad = int64_t{1} << 31, stride = int64_t{1} << 40;
        Problems p;
        p.add(expect_error(cx, kn_conv2d_f32(X.get(), W.get(), nullptr, Y.get(), 1, 1, 1, 1, 1, 1, 1, stride, stride, pad, pad, 1, 1, 1),
                           KN_ERROR_INVALID_ARGUMENT, {"overflow"}));
        p.add(expect_error(cx, kn_conv2d_backward_data_f32(Y.get(), W.get(), X.get(), 1, 1, 1, 1, 1, 1, 1, stride, stride, pad, pad, 1, 1, 1),
                           KN_ERROR_INVALID_ARGUMENT, {"overflow"}));
        return p.joined();
    });
    hostile_case("conv2d stride 2^62 with one output position", [&] {
        // x 3x3 = 1..9, w 2x2 = 1: the single window is the top-left 2x2, sum 1 + 2 + 4 + 5 = 12.
        DeviceArray<float> X(cx.device, std::vector<float>{1, 2, 3, 4, 5, 6, 7, 8, 9}), W(cx.device, std::vector<float>(4, 1.0f));
        DeviceArray<float> Y(cx.device, nan_filled(1)), DX(cx.device, nan_filled(9));
        const int64_t stride = int64_t{1} << 62;
        expect_ok_or_skip(cx, kn_conv2d_f32(X.get(), W.get(), nullptr, Y.get(), 1, 1, 3, 3, 1, 2, 2, stride, stride, 0, 0, 1, 1, 1),
                          "kn_conv2d_f32");
        expect_ok_or_skip(cx, kn_conv2d_backward_data_f32(Y.get(), W.get(), DX.get(), 1, 1, 3, 3, 1, 2, 2, stride, stride, 0, 0, 1, 1, 1),
                          "kn_conv2d_backward_data_f32");
        std::vector<float> y = Y.read(), dx = DX.read();
        Problems p;
        if (y[0] != 12.0f) p.add("y = " + fmt(y[0]) + ", want 12");
        const float want_dx[] = {12, 12, 0, 12, 12, 0, 0, 0, 0};
        for (int i = 0; i < 9; ++i)
            if (dx[i] != want_dx[i]) p.add("dx[" + std::to_string(i) + "] = " + fmt(dx[i]) + ", want " + fmt(want_dx[i]));
        p.add(guard_violation(y, Y, "y"));
        p.add(guard_violation(dx, DX, "dx"));
        return p.joined();
    });
    // Found by fuzz_c_api: pooling with one output row added the stride (2^63 - 1) to a row index.
    hostile_case("pool2d stride 2^63 - 1 with one output position", [&] {
        DeviceArray<float> X(cx.device, std::vector<float>{1, 2, 3, 4, 5, 6, 7, 8, 9}), Y(cx.device, nan_filled(1));
        DeviceArray<int32_t> I(cx.device, std::vector<int32_t>{-1});
        expect_ok_or_skip(cx, kn_pool2d_f32(KN_POOL_MAX, X.get(), Y.get(), I.get(), 1, 1, 3, 3, 2, 2, kInt64Max, kInt64Max, 0, 0, 1),
                          "kn_pool2d_f32(MAX)");
        std::vector<float> y = Y.read();
        std::vector<int32_t> index = I.read();
        Problems p;
        if (y[0] != 5.0f || index[0] != 4) p.add("max = " + fmt(y[0]) + " at " + std::to_string(index[0]) + ", want 5 at 4");
        expect_ok_or_skip(cx, kn_pool2d_f32(KN_POOL_AVG, X.get(), Y.get(), nullptr, 1, 1, 3, 3, 2, 2, kInt64Max, kInt64Max, 0, 0, 1),
                          "kn_pool2d_f32(AVG)");
        y = Y.read();
        if (y[0] != 3.0f) p.add("mean = " + fmt(y[0]) + ", want 3");
        p.add(guard_violation(y, Y, "y"));
        return p.joined();
    });
    hostile_case("conv2d padding near 2^63", [&] {
        DeviceArray<float> X(cx.device, std::vector<float>(16, 1.0f)), W(cx.device, std::vector<float>(4, 1.0f));
        DeviceArray<float> Y(cx.device, nan_filled(16));
        kn_status s = kn_conv2d_f32(X.get(), W.get(), nullptr, Y.get(), 1, 1, 4, 4, 1, 2, 2, 1, 1, kInt64Max - 1, 0, 1, 1, 1);
        return expect_error(cx, s, KN_ERROR_INVALID_ARGUMENT, {"overflow"});
    });

    // 5. PyTorch's semantics. clamp(x, low, high) with low > high is high everywhere (min(max(x, low), high)),
    //    NaN propagates.
    hostile_case("clamp with low > high gives high", [&] {
        const float nan = std::numeric_limits<float>::quiet_NaN();
        DeviceArray<float> X(cx.device, std::vector<float>{-3.0f, 0.0f, 2.0f, 5.0f, nan}), Y(cx.device, nan_filled(5));
        expect_ok_or_skip(cx, kn_clamp_f32(X.get(), Y.get(), 5, 4.0f, 1.0f), "kn_clamp_f32(low 4 > high 1)");
        std::vector<float> y = Y.read();
        Problems p;
        for (int i = 0; i < 4; ++i)
            if (y[i] != 1.0f) p.add("y[" + std::to_string(i) + "] = " + fmt(y[i]) + ", want 1 (high)");
        if (!std::isnan(y[4])) p.add("clamp(NaN) = " + fmt(y[4]) + ", want NaN");
        p.add(guard_violation(y, Y, "y"));
        return p.joined();
    });
    // pow(x, 0.5) as C's powf and PyTorch: pow(-inf, 0.5) = +inf, pow(-0, 0.5) = +0 (sqrt gives NaN and -0).
    hostile_case("pow_scalar 0.5 follows pow at -inf and -0", [&] {
        const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
        std::vector<float> x = {-inf, -0.0f, 4.0f, -4.0f, inf, nan, 0.25f};
        DeviceArray<float> X(cx.device, x), Y(cx.device, nan_filled(7));
        expect_ok_or_skip(cx, kn_unary_f32(KN_UNARY_POW_SCALAR, 0.5f, X.get(), Y.get(), 7), "kn_unary_f32(POW_SCALAR 0.5)");
        std::vector<float> y = Y.read();
        Problems p;
        for (size_t i = 0; i < x.size(); ++i) {
            float want = static_cast<float>(std::pow(static_cast<double>(x[i]), 0.5));
            bool good = std::isnan(want) ? std::isnan(y[i]) : same_bits(y[i], want);
            if (!good) p.add("pow(" + fmt(x[i]) + ", 0.5) = " + fmt(y[i]) + (std::signbit(y[i]) ? " (negative)" : "") +
                             ", want " + fmt(want));
        }
        return p.joined();
    });
    // gemm with k = 0: A is m x 0, so lda = 0 satisfies the header's lda >= k; likewise a transposed B
    // stored n x 0 with ldb = 0. C = beta C.
    for (bool transposed_b : {false, true}) {
        hostile_case(std::string("gemm k = 0 with lda = 0") + (transposed_b ? ", ldb = 0 (B transposed)" : ""), [&] {
            const int64_t m = 3, n = 2;
            DeviceArray<float> A(cx.device, std::vector<float>{7.0f}), B(cx.device, std::vector<float>{7.0f});
            DeviceArray<float> C(cx.device, std::vector<float>{1, 2, 3, 4, 5, 6});
            kn_status s = kn_gemm_f32(KN_NO_TRANSPOSE, transposed_b ? KN_TRANSPOSE : KN_NO_TRANSPOSE, m, n, 0, 1.0f,
                                      A.get(), 0, 0, B.get(), transposed_b ? 0 : n, 0, 0.5f, C.get(), n, 0, 1);
            expect_ok(s, "kn_gemm_f32(k = 0, lda = 0)");
            std::vector<float> c = C.read();
            Problems p;
            for (int i = 0; i < 6; ++i)
                if (c[i] != 0.5f * (i + 1)) p.add("C[" + std::to_string(i) + "] = " + fmt(c[i]) + ", want " + fmt(0.5 * (i + 1)));
            p.add(guard_violation(c, C, "c"));
            return p.joined();
        });
    }

    // 6. Enum arguments outside their range: refused by value, never loaded as an out-of-range enum
    //    (UBSan's -fsanitize=enum reported every such load in check_enum).
    hostile_case("enum arguments out of range", [&] {
        DeviceArray<float> X(cx.device, std::vector<float>(16, 1.0f)), Y(cx.device, nan_filled(16));
        DeviceArray<int64_t> I(cx.device, std::vector<int64_t>(16, 0));
        Problems p;
        int32_t available = 0;
        const char* reason = nullptr;
        p.add(expect_error(cx, kn_backend_info(static_cast<kn_device_kind>(-5), &available, &reason),
                           KN_ERROR_INVALID_ARGUMENT, {"-5"}));
        p.add(expect_error(cx, kn_unary_f32(static_cast<kn_unary_op>(1 << 30), 0.0f, X.get(), Y.get(), 4),
                           KN_ERROR_INVALID_ARGUMENT, {std::to_string(1 << 30)}));
        p.add(expect_error(cx, kn_reduce_f32(static_cast<kn_reduce_op>(-1), X.get(), Y.get(), 1, 4, 1),
                           KN_ERROR_INVALID_ARGUMENT, {"-1"}));
        p.add(expect_error(cx, kn_argreduce_f32(static_cast<kn_argreduce_op>(77), X.get(), I.get(), 1, 4, 1),
                           KN_ERROR_INVALID_ARGUMENT, {"77"}));
        p.add(expect_error(cx, kn_pool2d_f32(static_cast<kn_pool_op>(2), X.get(), Y.get(), nullptr, 1, 1, 4, 4, 2, 2, 2, 2, 0, 0, 1),
                           KN_ERROR_INVALID_ARGUMENT, {"op"}));
        p.add(expect_error(cx, kn_gemm_f32(static_cast<kn_transpose>(2), KN_NO_TRANSPOSE, 2, 2, 2, 1.0f, X.get(), 2, 0,
                                           X.get(), 2, 0, 0.0f, Y.get(), 2, 0, 1),
                           KN_ERROR_INVALID_ARGUMENT, {"trans_a"}));
        return p.joined();
    });
}

}  // namespace selftest
