// selftest_layout.cpp: the self-test's cases for the layout family (kn_strided_copy_f32): permutes of
// every rank, transposes large enough for the tiled kernels, slices, expands (stride 0), strided
// destinations (slices of y: narrow gradients, concatenation parts), the empty and the scalar case,
// and the error paths (out of range, overlapping writes). A copy is exact, so results are compared bit for bit
// with a host reference that walks the same index formula as kernels.h states it.
#include "selftest_layout.h"

#include <functional>
#include <numeric>

namespace selftest {
namespace {

// The contiguous (row-major) strides of a shape.
std::vector<int64_t> contiguous_strides(const std::vector<int64_t>& dims) {
    std::vector<int64_t> s(dims.size());
    int64_t stride = 1;
    for (size_t d = dims.size(); d-- > 0;) {
        s[d] = stride;
        stride *= dims[d];
    }
    return s;
}

std::string list_str(const std::vector<int64_t>& v) { return shape_str(v); }

// The view (x_offset, x_strides, dims) of x copied into the view (y_offset, y_strides, dims) of y
// (y_strides empty: y contiguous, passed as NULL); checked bit for bit, y's other elements included
// (they must keep the values y held before).
void view_copy_case(Context& cx, const std::string& name, int64_t x_size, int64_t x_offset,
                    const std::vector<int64_t>& x_strides, int64_t y_size, int64_t y_offset,
                    const std::vector<int64_t>& y_strides, const std::vector<int64_t>& dims) {
    cx.report.run(name, [&] {
        Problems problems;
        Rng rng(seed_of(name));
        const int64_t n = std::accumulate(dims.begin(), dims.end(), int64_t{1}, std::multiplies<int64_t>());
        const std::vector<int64_t> y_layout = y_strides.empty() ? contiguous_strides(dims) : y_strides;
        DeviceArray<float> X(cx.device, uniform(rng, x_size, -4, 4)), Y(cx.device, uniform(rng, y_size, 10, 20));
        expect_ok_or_skip(cx, kn_strided_copy_f32(X.get(), x_offset, x_strides.data(), static_cast<int32_t>(x_strides.size()),
                                                  Y.get(), y_offset, y_strides.empty() ? nullptr : y_strides.data(),
                                                  static_cast<int32_t>(y_strides.size()), dims.data(),
                                                  static_cast<int32_t>(dims.size())),
                          "kn_strided_copy_f32");
        std::vector<float> want = Y.written();
        const std::vector<float>& x = X.written();
        std::vector<int64_t> index(dims.size(), 0);
        for (int64_t i = 0; i < n; ++i) {
            int64_t from = x_offset, to = y_offset;
            for (size_t d = 0; d < dims.size(); ++d) {
                from += index[d] * x_strides[d];
                to += index[d] * y_layout[d];
            }
            want[to] = x[from];
            for (size_t d = dims.size(); d-- > 0;) {  // next row-major index
                if (++index[d] < dims[d]) break;
                index[d] = 0;
            }
        }
        std::vector<float> got = Y.read();
        problems.add(first_changed(got, want, 0, y_size, "y"));
        problems.add(guard_violation(got, Y, "y"));
        problems.add(input_violation(X, "x"));
        return problems;
    });
}

// y (contiguous, exactly the copy's size) = the strided view (x_offset, x_strides, dims) of x.
void strided_copy_case(Context& cx, const std::string& name, int64_t x_size, int64_t x_offset,
                       const std::vector<int64_t>& x_strides, const std::vector<int64_t>& dims) {
    const int64_t n = std::accumulate(dims.begin(), dims.end(), int64_t{1}, std::multiplies<int64_t>());
    view_copy_case(cx, name, x_size, x_offset, x_strides, n, 0, {}, dims);
}

// x (contiguous, shape `dims`) permuted: y's dimension i is x's dimension perm[i].
void permute_case(Context& cx, const std::vector<int64_t>& dims, const std::vector<int64_t>& perm) {
    std::vector<int64_t> x_strides = contiguous_strides(dims), strides, out;
    for (int64_t p : perm) {
        strides.push_back(x_strides[p]);
        out.push_back(dims[p]);
    }
    const int64_t n = std::accumulate(dims.begin(), dims.end(), int64_t{1}, std::multiplies<int64_t>());
    strided_copy_case(cx, "permute " + list_str(dims) + " by " + list_str(perm), n, 0, strides, out);
}

}  // namespace

void test_layout(Context& cx) {
    // Every permutation of rank 1 to 4 on awkward sizes (primes, 1 in the middle).
    for (const std::vector<int64_t>& dims : std::vector<std::vector<int64_t>>{{7}, {3, 5}, {2, 3, 4}, {3, 1, 5, 2}}) {
        std::vector<int64_t> perm(dims.size());
        std::iota(perm.begin(), perm.end(), 0);
        do permute_case(cx, dims, perm);
        while (std::next_permutation(perm.begin(), perm.end()));
    }
    // Transposes past one tile, ragged at both edges, batched; rank 5 and 8.
    permute_case(cx, {67, 129}, {1, 0});
    permute_case(cx, {3, 33, 65}, {0, 2, 1});
    permute_case(cx, {5, 3, 37}, {2, 1, 0});
    permute_case(cx, {2, 3, 1, 5, 7}, {4, 0, 3, 2, 1});
    permute_case(cx, {2, 1, 3, 2, 1, 2, 3, 2}, {7, 6, 5, 4, 3, 2, 1, 0});
    if (!cx.quick) {
        permute_case(cx, {513, 1031}, {1, 0});
        permute_case(cx, {64, 128, 96}, {1, 0, 2});  // rows of 96 contiguous floats
    }
    // Slices (an offset and x's strides, a step of 2), a column, expands (stride 0), the scalar and
    // the empty copy.
    strided_copy_case(cx, "slice rows 2..4 cols 3,5,7 of [6, 10]", 60, 2 * 10 + 3, {10, 2}, {3, 3});
    strided_copy_case(cx, "column 4 of [9, 6]", 54, 4, {6}, {9});
    strided_copy_case(cx, "expand [1, 5] to [4, 5]", 5, 0, {0, 1}, {4, 5});
    strided_copy_case(cx, "expand one element to [3, 2, 7]", 3, 2, {0, 0, 0}, {3, 2, 7});
    strided_copy_case(cx, "scalar (rank 0)", 4, 3, {}, {});
    strided_copy_case(cx, "empty [0, 5]", 5, 0, {5, 1}, {0, 5});
    strided_copy_case(cx, "empty [3, 0] reading nothing past x", 2, 0, {100, 1}, {3, 0});

    // Strided destinations: a slice of y written from a contiguous x (a narrow's gradient, one part of
    // a concatenation), with a step, transposing on the way, a contiguous y from an offset, the
    // tiled sizes, and y's explicit strides equal to the contiguous ones.
    view_copy_case(cx, "into rows 2..4 of [6, 10]", 30, 0, {10, 1}, 60, 20, {10, 1}, {3, 10});
    view_copy_case(cx, "into cols 3..7 of [5, 11]", 20, 0, {4, 1}, 55, 3, {11, 1}, {5, 4});
    view_copy_case(cx, "into every 3rd col of [4, 13] from col 1", 16, 0, {4, 1}, 52, 1, {13, 3}, {4, 4});
    view_copy_case(cx, "select: into [:, 2, :] of [3, 5, 7]", 21, 0, {7, 1}, 105, 14, {35, 1}, {3, 7});
    view_copy_case(cx, "concatenate part 2 of 3 along dim 1: [2, 3, 4] into [2, 9, 4]", 24, 0, {12, 4, 1}, 72, 3 * 4,
                   {36, 4, 1}, {2, 3, 4});
    view_copy_case(cx, "stack: [5, 3] as [:, 1, :] of [5, 4, 3]", 15, 0, {3, 1}, 60, 3, {12, 1}, {5, 3});
    view_copy_case(cx, "transpose [3, 5] into cols 1..4 of [5, 6]", 15, 0, {1, 5}, 30, 1, {6, 1}, {5, 3});
    view_copy_case(cx, "contiguous y from offset 7", 12, 0, {4, 1}, 30, 7, {}, {3, 4});
    view_copy_case(cx, "explicit contiguous y strides", 12, 0, {1, 3}, 12, 0, {3, 1}, {4, 3});
    view_copy_case(cx, "scalar into element 5", 3, 2, {}, 9, 5, {}, {});
    view_copy_case(cx, "empty [0, 4] into [3, 4]", 4, 0, {4, 1}, 12, 0, {4, 1}, {0, 4});
    view_copy_case(cx, "size-1 dims with any stride into y", 6, 0, {1, 6, 1}, 20, 2, {0, 1000, 2}, {1, 1, 6});
    view_copy_case(cx, "into [:, 10:75] of [33, 80] (tiles)", 33 * 65, 0, {65, 1}, 33 * 80, 10, {80, 1}, {33, 65});
    view_copy_case(cx, "transpose [40, 70] into [70, 41] from col 1 (tiles)", 40 * 70, 0, {1, 70}, 70 * 41, 1, {41, 1},
                   {70, 40});
    view_copy_case(cx, "into [1:4, :, 2:5] of [5, 2, 6], rank 3", 18, 0, {6, 3, 1}, 60, 12 + 2, {12, 6, 1}, {3, 2, 3});

    // Errors: each names the problem; the device stays usable (expect_error checks).
    auto error_case = [&](const std::string& name, std::function<std::string()> body) {
        cx.report.run("error strided_copy " + name, [&] {
            Problems p;
            p.add(body());
            return p;
        });
    };
    DeviceArray<float> x10(cx.device, std::vector<float>(10, 1.0f)), y16(cx.device, nan_filled(16));
    const int64_t dims4[] = {4}, stride3[] = {3}, dims2x2[] = {2, 2}, negative[] = {2, -1};
    error_case("read past the end of x", [&] {
        // Offset 1 + 3 * 3 = element 10 of an x of 10 (+16 guard = 26 elements in the buffer).
        const int64_t stride8[] = {8};
        kn_status s = kn_strided_copy_f32(x10.get(), 3, stride8, 1, y16.get(), 0, nullptr, 0, dims4, 1);
        return expect_error(cx, s, KN_ERROR_SHAPE_MISMATCH, {"strided_copy", "x_offset = 3", "28"});
    });
    error_case("negative stride", [&] {
        kn_status s = kn_strided_copy_f32(x10.get(), 0, negative, 2, y16.get(), 0, nullptr, 0, dims2x2, 2);
        return expect_error(cx, s, KN_ERROR_INVALID_ARGUMENT, {"x_strides[1] = -1"});
    });
    error_case("negative offset", [&] {
        kn_status s = kn_strided_copy_f32(x10.get(), -1, stride3, 1, y16.get(), 0, nullptr, 0, dims4, 1);
        return expect_error(cx, s, KN_ERROR_INVALID_ARGUMENT, {"x_offset = -1"});
    });
    error_case("rank 9", [&] {
        const int64_t dims9[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1}, strides9[9] = {};
        kn_status s = kn_strided_copy_f32(x10.get(), 0, strides9, 9, y16.get(), 0, nullptr, 0, dims9, 9);
        return expect_error(cx, s, KN_ERROR_INVALID_ARGUMENT, {"rank", "9"});
    });
    error_case("x_rank differs from copy_rank", [&] {
        kn_status s = kn_strided_copy_f32(x10.get(), 0, stride3, 1, y16.get(), 0, nullptr, 0, dims2x2, 2);
        return expect_error(cx, s, KN_ERROR_SHAPE_MISMATCH, {"x_rank = 1", "copy_rank = 2"});
    });
    error_case("NULL strides", [&] {
        kn_status s = kn_strided_copy_f32(x10.get(), 0, nullptr, 2, y16.get(), 0, nullptr, 0, dims2x2, 2);
        return expect_error(cx, s, KN_ERROR_INVALID_ARGUMENT, {"x_strides", "NULL"});
    });
    error_case("y too small", [&] {
        const int64_t dims_big[] = {7, 7}, strides0[] = {0, 0};
        kn_status s = kn_strided_copy_f32(x10.get(), 0, strides0, 2, y16.get(), 0, nullptr, 0, dims_big, 2);
        return expect_error(cx, s, KN_ERROR_SHAPE_MISMATCH, {"y", "49"});
    });
    const int64_t strides2x1[] = {2, 1}, strides6x1[] = {6, 1}, strides0x1[] = {0, 1}, strides1x1[] = {1, 1},
                  strides3x1[] = {3, 1};
    error_case("y_rank differs from copy_rank", [&] {
        kn_status s = kn_strided_copy_f32(x10.get(), 0, strides2x1, 2, y16.get(), 0, stride3, 1, dims2x2, 2);
        return expect_error(cx, s, KN_ERROR_SHAPE_MISMATCH, {"y_rank = 1", "copy_rank = 2"});
    });
    error_case("write past the end of y", [&] {
        // Up to element 30 + 6 + 1 = 37 of y's 16 (+16 guard) elements: the message names y's view.
        kn_status s = kn_strided_copy_f32(x10.get(), 0, strides2x1, 2, y16.get(), 30, strides6x1, 2,
                                          dims2x2, 2);
        return expect_error(cx, s, KN_ERROR_SHAPE_MISMATCH, {"strided_copy", "y_offset = 30", "[6, 1]", "38"});
    });
    error_case("expand into y (stride 0)", [&] {
        kn_status s = kn_strided_copy_f32(x10.get(), 0, strides2x1, 2, y16.get(), 0, strides0x1, 2,
                                          dims2x2, 2);
        return expect_error(cx, s, KN_ERROR_INVALID_ARGUMENT, {"y_strides[0] = 0", "more than once"});
    });
    error_case("overlapping y rows (strides 1, 1)", [&] {
        kn_status s = kn_strided_copy_f32(x10.get(), 0, strides2x1, 2, y16.get(), 0, strides1x1, 2,
                                          dims2x2, 2);
        return expect_error(cx, s, KN_ERROR_INVALID_ARGUMENT, {"y_strides", "more than once", "y_offset = 0"});
    });
    error_case("interleaved y (dims [2, 3] strides [2, 1])", [&] {
        const int64_t dims2x3[] = {2, 3};
        kn_status s = kn_strided_copy_f32(x10.get(), 0, strides3x1, 2, y16.get(), 0,
                                          strides2x1, 2, dims2x3, 2);
        return expect_error(cx, s, KN_ERROR_INVALID_ARGUMENT, {"y_strides[0] = 2", "more than once"});
    });
    error_case("negative y stride", [&] {
        kn_status s = kn_strided_copy_f32(x10.get(), 0, strides2x1, 2, y16.get(), 4, negative, 2, dims2x2, 2);
        return expect_error(cx, s, KN_ERROR_INVALID_ARGUMENT, {"y_strides[1] = -1"});
    });
    error_case("negative y offset", [&] {
        kn_status s = kn_strided_copy_f32(x10.get(), 0, stride3, 1, y16.get(), -2, nullptr, 0, dims4, 1);
        return expect_error(cx, s, KN_ERROR_INVALID_ARGUMENT, {"y_offset = -2"});
    });
    error_case("y is x", [&] {
        kn_status s = kn_strided_copy_f32(x10.get(), 0, stride3, 1, x10.get(), 0, nullptr, 0, dims4, 1);
        return expect_error(cx, s, KN_ERROR_INVALID_ARGUMENT, {"same buffer"});
    });
    if (cx.other) {
        error_case("x and y on different devices", [&] {
            DeviceArray<float> elsewhere(cx.other, nan_filled(16));
            kn_status s = kn_strided_copy_f32(x10.get(), 0, stride3, 1, elsewhere.get(), 0, nullptr, 0, dims4, 1);
            return expect_error(cx, s, KN_ERROR_DEVICE_MISMATCH, {"x", "y"});
        });
    }
}

}  // namespace selftest
