// selftest_layout.cpp: the self-test's cases for the layout family (kn_strided_copy_f32): permutes of
// every rank, transposes large enough for the tiled kernels, slices, expands (stride 0), the empty
// and the scalar case, and the error paths. A copy is exact, so results are compared bit for bit
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

// y = the strided view (x_offset, x_strides, dims) of x, copied; checked bit for bit.
void strided_copy_case(Context& cx, const std::string& name, int64_t x_size, int64_t x_offset,
                       const std::vector<int64_t>& x_strides, const std::vector<int64_t>& dims) {
    cx.report.run(name, [&] {
        Problems problems;
        Rng rng(seed_of(name));
        const int64_t n = std::accumulate(dims.begin(), dims.end(), int64_t{1}, std::multiplies<int64_t>());
        DeviceArray<float> X(cx.device, uniform(rng, x_size, -4, 4)), Y(cx.device, nan_filled(n));
        expect_ok_or_skip(cx, kn_strided_copy_f32(X.get(), x_offset, x_strides.data(), static_cast<int32_t>(x_strides.size()),
                                                  Y.get(), dims.data(), static_cast<int32_t>(dims.size())),
                          "kn_strided_copy_f32");
        std::vector<float> want = Y.written();
        const std::vector<float>& x = X.written();
        std::vector<int64_t> index(dims.size(), 0);
        for (int64_t i = 0; i < n; ++i) {
            int64_t offset = x_offset;
            for (size_t d = 0; d < dims.size(); ++d) offset += index[d] * x_strides[d];
            want[i] = x[offset];
            for (size_t d = dims.size(); d-- > 0;) {  // next row-major index
                if (++index[d] < dims[d]) break;
                index[d] = 0;
            }
        }
        std::vector<float> got = Y.read();
        problems.add(first_changed(got, want, 0, n, "y"));
        problems.add(guard_violation(got, Y, "y"));
        problems.add(input_violation(X, "x"));
        return problems;
    });
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
        kn_status s = kn_strided_copy_f32(x10.get(), 3, stride8, 1, y16.get(), dims4, 1);
        return expect_error(cx, s, KN_ERROR_SHAPE_MISMATCH, {"strided_copy", "x_offset = 3", "28"});
    });
    error_case("negative stride", [&] {
        kn_status s = kn_strided_copy_f32(x10.get(), 0, negative, 2, y16.get(), dims2x2, 2);
        return expect_error(cx, s, KN_ERROR_INVALID_ARGUMENT, {"x_strides[1] = -1"});
    });
    error_case("negative offset", [&] {
        kn_status s = kn_strided_copy_f32(x10.get(), -1, stride3, 1, y16.get(), dims4, 1);
        return expect_error(cx, s, KN_ERROR_INVALID_ARGUMENT, {"x_offset = -1"});
    });
    error_case("rank 9", [&] {
        const int64_t dims9[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1}, strides9[9] = {};
        kn_status s = kn_strided_copy_f32(x10.get(), 0, strides9, 9, y16.get(), dims9, 9);
        return expect_error(cx, s, KN_ERROR_INVALID_ARGUMENT, {"rank", "9"});
    });
    error_case("x_rank differs from y_rank", [&] {
        kn_status s = kn_strided_copy_f32(x10.get(), 0, stride3, 1, y16.get(), dims2x2, 2);
        return expect_error(cx, s, KN_ERROR_SHAPE_MISMATCH, {"x_rank = 1", "y_rank = 2"});
    });
    error_case("NULL strides", [&] {
        kn_status s = kn_strided_copy_f32(x10.get(), 0, nullptr, 2, y16.get(), dims2x2, 2);
        return expect_error(cx, s, KN_ERROR_INVALID_ARGUMENT, {"x_strides", "NULL"});
    });
    error_case("y too small", [&] {
        const int64_t dims_big[] = {7, 7}, strides0[] = {0, 0};
        kn_status s = kn_strided_copy_f32(x10.get(), 0, strides0, 2, y16.get(), dims_big, 2);
        return expect_error(cx, s, KN_ERROR_SHAPE_MISMATCH, {"y", "49"});
    });
    error_case("y is x", [&] {
        kn_status s = kn_strided_copy_f32(x10.get(), 0, stride3, 1, x10.get(), dims4, 1);
        return expect_error(cx, s, KN_ERROR_INVALID_ARGUMENT, {"same buffer"});
    });
    if (cx.other) {
        error_case("x and y on different devices", [&] {
            DeviceArray<float> elsewhere(cx.other, nan_filled(16));
            kn_status s = kn_strided_copy_f32(x10.get(), 0, stride3, 1, elsewhere.get(), dims4, 1);
            return expect_error(cx, s, KN_ERROR_DEVICE_MISMATCH, {"x", "y"});
        });
    }
}

}  // namespace selftest
