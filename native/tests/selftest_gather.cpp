// selftest_gather.cpp: the self-test's cases for the gather family: kn_gather_rows_f32 (a copy, so
// compared bit for bit) and kn_scatter_add_rows_f32, compared two ways: against a float64 reference
// within the float32 rounding bound of a sum in any order, and bit for bit against a float32 host sum
// in the order kernels.h promises (ascending position), which also makes every backend agree. Each
// scatter-add runs twice and the two results must be identical (determinism). Duplicates, a single
// index, the padding row, the empty call and every error path are covered.
#include "selftest_gather.h"

#include <cmath>
#include <functional>

namespace selftest {
namespace {

// n indices in [0, rows), skewed so that small rows repeat often (duplicates in every case).
std::vector<int64_t> skewed_indices(Rng& rng, int64_t n, int64_t rows) {
    std::vector<int64_t> v(static_cast<size_t>(n));
    for (auto& i : v) {
        const double u = rng.uniform(0, 1);
        i = std::min<int64_t>(rows - 1, static_cast<int64_t>(u * u * static_cast<double>(rows)));
    }
    return v;
}

void gather_case(Context& cx, int64_t rows, int64_t cols, const std::vector<int64_t>& indices) {
    const int64_t n = static_cast<int64_t>(indices.size());
    const std::string name = "gather_rows table [" + std::to_string(rows) + ", " + std::to_string(cols) + "], n = " +
                             std::to_string(n);
    cx.report.run(name, [&] {
        Problems problems;
        Rng rng(seed_of(name));
        DeviceArray<float> T(cx.device, uniform(rng, rows * cols, -4, 4)), Y(cx.device, nan_filled(n * cols));
        DeviceArray<int64_t> I(cx.device, indices);
        expect_ok_or_skip(cx, kn_gather_rows_f32(T.get(), rows, cols, I.get(), n, Y.get()), "kn_gather_rows_f32");
        std::vector<float> want = Y.written();
        for (int64_t i = 0; i < n; ++i)
            for (int64_t c = 0; c < cols; ++c) want[i * cols + c] = T.written()[indices[i] * cols + c];
        const std::vector<float> got = Y.read();
        problems.add(first_changed(got, want, 0, n * cols, "y"));
        problems.add(guard_violation(got, Y, "y"));
        problems.add(input_violation(T, "table"));
        problems.add(input_violation(I, "indices"));
        return problems;
    });
}

void scatter_add_case(Context& cx, int64_t rows, int64_t cols, const std::vector<int64_t>& indices,
                      int64_t padding_index) {
    const int64_t n = static_cast<int64_t>(indices.size());
    const std::string name = "scatter_add_rows dtable [" + std::to_string(rows) + ", " + std::to_string(cols) +
                             "], n = " + std::to_string(n) + ", padding_index = " + std::to_string(padding_index);
    cx.report.run(name, [&] {
        Problems problems;
        Rng rng(seed_of(name));
        const std::vector<float> dy = uniform(rng, n * cols, -1, 1), initial = uniform(rng, rows * cols, -1, 1);
        DeviceArray<float> DY(cx.device, dy);
        DeviceArray<int64_t> I(cx.device, indices);
        std::vector<float> first;
        for (int run = 0; run < 2; ++run) {  // two runs into fresh copies: the same bits (determinism)
            DeviceArray<float> DT(cx.device, initial);
            expect_ok_or_skip(cx, kn_scatter_add_rows_f32(DY.get(), I.get(), n, DT.get(), rows, cols, padding_index),
                              "kn_scatter_add_rows_f32");
            const std::vector<float> got = DT.read();
            problems.add(guard_violation(got, DT, "dtable"));
            if (run == 1) {
                problems.add(first_changed(got, first, 0, rows * cols, "second run differs from the first: dtable"));
                break;
            }
            first = got;
            // The float64 reference, and the float32 sum in ascending position order.
            std::vector<double> want(initial.begin(), initial.end()), magnitude(want.size());
            std::vector<float> ordered = DT.written();
            std::vector<int64_t> count(static_cast<size_t>(rows), 0);
            for (size_t e = 0; e < want.size(); ++e) magnitude[e] = std::fabs(want[e]);
            for (int64_t i = 0; i < n; ++i) {
                if (indices[i] == padding_index) continue;
                ++count[indices[i]];
                for (int64_t c = 0; c < cols; ++c) {
                    const int64_t e = indices[i] * cols + c;
                    want[e] += dy[i * cols + c];
                    magnitude[e] += std::fabs(dy[i * cols + c]);
                    ordered[e] += dy[i * cols + c];
                }
            }
            // A float32 sum of k + 1 terms in any order is within k * 2^-24 * sum |terms| of the exact sum.
            Comparison c = compare(
                rows * cols, [&](int64_t e) { return got[e]; }, [&](int64_t e) { return want[e]; },
                [&](int64_t e) { return static_cast<double>(count[e / cols] + 1) * std::ldexp(1.0, -24) * magnitude[e]; });
            problems.add(c.describe("dtable vs float64"));
            problems.add(first_changed(got, ordered, 0, rows * cols, "dtable vs the float32 sum in ascending order:"));
        }
        problems.add(input_violation(DY, "dy"));
        problems.add(input_violation(I, "indices"));
        return problems;
    });
}

}  // namespace

void test_gather(Context& cx) {
    Rng rng(seed_of("gather indices"));
    gather_case(cx, 1, 1, {0});
    gather_case(cx, 5, 3, {4, 0, 4, 2, 2, 2, 1});
    gather_case(cx, 17, 33, skewed_indices(rng, 40, 17));
    gather_case(cx, 101, 129, skewed_indices(rng, 257, 101));
    gather_case(cx, 4, 0, {3, 1});  // zero columns: nothing to copy, indices still checked
    gather_case(cx, 4, 6, {});      // no indices
    if (!cx.quick) gather_case(cx, 5000, 300, skewed_indices(rng, 4096, 5000));

    scatter_add_case(cx, 1, 1, {0}, -1);
    scatter_add_case(cx, 6, 4, {3}, -1);                            // a single index
    scatter_add_case(cx, 5, 3, {4, 0, 4, 2, 2, 2, 1, 4}, -1);       // duplicates
    scatter_add_case(cx, 5, 3, {4, 0, 4, 2, 2, 2, 1, 4}, 2);        // ... and the padding row
    scatter_add_case(cx, 3, 7, {1, 1, 1, 1}, 1);                    // every index is the padding row
    scatter_add_case(cx, 4, 5, {}, -1);                             // empty
    scatter_add_case(cx, 31, 37, skewed_indices(rng, 200, 31), 0);
    scatter_add_case(cx, 97, 130, skewed_indices(rng, 1000, 97), -1);
    scatter_add_case(cx, 8, 16, std::vector<int64_t>(513, 5), -1);  // one row, many positions
    if (!cx.quick) scatter_add_case(cx, 5000, 128, skewed_indices(rng, 6400, 5000), 0);

    // Errors: each names the problem; the device stays usable and the output is untouched.
    auto error_case = [&](const std::string& name, std::function<std::string()> body) {
        cx.report.run("error gather " + name, [&] {
            Problems p;
            p.add(body());
            return p;
        });
    };
    DeviceArray<float> table(cx.device, std::vector<float>(12, 1.0f)), y(cx.device, nan_filled(12));
    DeviceArray<int64_t> bad_high(cx.device, {0, 1, 2, 7}), bad_low(cx.device, {2, -1}), good(cx.device, {0, 3, 3, 1});
    error_case("gather_rows index past the table", [&] {
        kn_status s = kn_gather_rows_f32(table.get(), 4, 3, bad_high.get(), 4, y.get());
        std::string p = expect_error(cx, s, KN_ERROR_INVALID_ARGUMENT, {"gather_rows", "indices[3] = 7", "[0, 4)"});
        if (p.empty()) p = first_changed(y.read(), y.written(), 0, 12, "y written despite the error:");
        return p;
    });
    error_case("gather_rows negative index", [&] {
        kn_status s = kn_gather_rows_f32(table.get(), 4, 3, bad_low.get(), 2, y.get());
        return expect_error(cx, s, KN_ERROR_INVALID_ARGUMENT, {"indices[1] = -1"});
    });
    error_case("gather_rows bad index with zero columns", [&] {
        kn_status s = kn_gather_rows_f32(table.get(), 4, 0, bad_high.get(), 4, y.get());
        return expect_error(cx, s, KN_ERROR_INVALID_ARGUMENT, {"indices[3] = 7"});
    });
    error_case("gather_rows y too small", [&] {
        DeviceArray<float> small(cx.device, {});  // the guard only: 16 floats
        kn_status s = kn_gather_rows_f32(table.get(), 4, 7, good.get(), 4, small.get());
        return expect_error(cx, s, KN_ERROR_SHAPE_MISMATCH, {"buffer 'y'", "28"});
    });
    error_case("gather_rows indices too short", [&] {
        kn_status s = kn_gather_rows_f32(table.get(), 4, 1, good.get(), 40, y.get());
        return expect_error(cx, s, KN_ERROR_SHAPE_MISMATCH, {"indices", "int64", "40"});
    });
    error_case("gather_rows y is table", [&] {
        kn_status s = kn_gather_rows_f32(table.get(), 4, 3, good.get(), 4, table.get());
        return expect_error(cx, s, KN_ERROR_INVALID_ARGUMENT, {"same buffer"});
    });
    error_case("scatter_add_rows index past the table", [&] {
        kn_status s = kn_scatter_add_rows_f32(table.get(), bad_high.get(), 4, y.get(), 4, 3, -1);
        std::string p = expect_error(cx, s, KN_ERROR_INVALID_ARGUMENT, {"scatter_add_rows", "indices[3] = 7"});
        if (p.empty()) p = first_changed(y.read(), y.written(), 0, 12, "dtable written despite the error:");
        return p;
    });
    error_case("scatter_add_rows padding_index out of range", [&] {
        kn_status s = kn_scatter_add_rows_f32(table.get(), good.get(), 4, y.get(), 4, 3, 4);
        return expect_error(cx, s, KN_ERROR_INVALID_ARGUMENT, {"padding_index = 4"});
    });
    error_case("scatter_add_rows padding_index -2", [&] {
        kn_status s = kn_scatter_add_rows_f32(table.get(), good.get(), 4, y.get(), 4, 3, -2);
        return expect_error(cx, s, KN_ERROR_INVALID_ARGUMENT, {"padding_index = -2"});
    });
    error_case("scatter_add_rows dtable is dy", [&] {
        kn_status s = kn_scatter_add_rows_f32(table.get(), good.get(), 4, table.get(), 4, 3, -1);
        return expect_error(cx, s, KN_ERROR_INVALID_ARGUMENT, {"same buffer"});
    });
    error_case("scatter_add_rows negative n", [&] {
        kn_status s = kn_scatter_add_rows_f32(table.get(), good.get(), -1, y.get(), 4, 3, -1);
        return expect_error(cx, s, KN_ERROR_INVALID_ARGUMENT, {"n = -1"});
    });
}

}  // namespace selftest
