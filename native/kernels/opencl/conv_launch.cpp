// conv_launch.cpp: the launchers of conv.cl: 2-D convolution (NCHW) forward, backward-data and
// backward-weights (+ bias gradient). The implicit GEMM runs one C tile per work-group; convolutions
// whose per-group GEMM has fewer rows than conv_direct_rows (depthwise) use the direct kernels.
#include "opencl_backend.h"

#include <algorithm>
#include <limits>

namespace kn::opencl {
namespace {

// The geometry of conv.cl's kernels as one int16 argument (kernels.h's order, then out_height,
// out_width). The kernels index within an image in int32; larger images are refused here.
cl_int16 conv_geometry_vector(const Queue& q, const Conv2dGeometry& g, const char* op) {
    const int64_t in_cg = g.in_channels / g.groups;
    const int64_t values[16] = {g.batch, g.in_channels, g.in_height, g.in_width, g.out_channels,
                                g.kernel_height, g.kernel_width, g.stride_height, g.stride_width,
                                g.pad_height, g.pad_width, g.dilation_height, g.dilation_width,
                                g.groups, g.out_height, g.out_width};
    constexpr int64_t kMax = std::numeric_limits<cl_int>::max();
    const bool fits = *std::max_element(values, values + 16) <= kMax &&
                      g.in_height + 2 * g.pad_height <= kMax && g.in_width + 2 * g.pad_width <= kMax &&
                      g.in_channels * g.in_height * g.in_width <= kMax &&
                      g.out_channels * g.out_height * g.out_width <= kMax &&
                      g.out_channels * in_cg * g.kernel_height * g.kernel_width <= kMax;
    if (!fits)
        fail(KN_ERROR_NOT_SUPPORTED, q.device_name(), ": ", op, ": the OpenCL kernels index one image (channels x ",
             "height x width), the weights and the padded extent in int32; x is [", g.batch, ", ", g.in_channels, ", ",
             g.in_height, ", ", g.in_width, "], y [", g.batch, ", ", g.out_channels, ", ", g.out_height, ", ",
             g.out_width, "], padding ", g.pad_height, "x", g.pad_width);
    cl_int16 v;
    for (int i = 0; i < 16; ++i) v.s[i] = static_cast<cl_int>(values[i]);
    return v;
}

// conv.cl's implicit-GEMM kernels: x = the C tiles of one group, y = split-K chunks, z = groups
// from the argument first_group_arg (launched in slices of 65535, the z limit of some GPUs).
void launch_conv_gemm(Queue& q, cl_kernel kern, const char* kname, cl_uint first_group_arg, int64_t m, int64_t n,
                      int64_t chunks, int64_t groups) {
    const Tuning& t = q.tuning();
    const int64_t tiles = ceil_div(m, t.conv_tile_m) * ceil_div(n, t.conv_tile_n);
    const size_t local[3] = {static_cast<size_t>(t.conv_local_x()), static_cast<size_t>(t.conv_local_y()), 1};
    for (int64_t first = 0; first < groups; first += kMaxBatchPerLaunch) {
        const int64_t count = std::min(kMaxBatchPerLaunch, groups - first);
        q.set_arg(kern, kname, first_group_arg, cl_int{static_cast<cl_int>(first)});
        const size_t global[3] = {static_cast<size_t>(tiles) * local[0], static_cast<size_t>(chunks) * local[1],
                                  static_cast<size_t>(count)};
        q.launch(kern, kname, 3, global, local);
    }
}

}  // namespace

void conv2d_f32(const Conv2dArgs& a, Queue& q) {
    const Conv2dGeometry& g = a.g;
    const cl_int16 geometry = conv_geometry_vector(q, g, "conv2d");
    const cl_int has_bias = a.bias ? 1 : 0;
    const cl_mem bias = a.bias ? mem(a.bias) : mem(a.w);  // never read without has_bias
    const bool direct = g.out_channels / g.groups < q.tuning().conv_direct_rows;
    const char* kname = direct ? "conv2d_forward_direct" : "conv2d_forward_gemm";
    cl_kernel kern = q.kernel(kname);
    q.set_args(kern, kname, mem(a.x), mem(a.w), bias, has_bias, mem(a.y), geometry);
    if (direct) q.launch_planes(kern, kname, 6, g.out_height * g.out_width, g.batch * g.out_channels);
    else
        launch_conv_gemm(q, kern, kname, 6, g.out_channels / g.groups, g.batch * g.out_height * g.out_width, 1,
                         g.groups);
}

void conv2d_backward_data_f32(const Conv2dBackwardDataArgs& a, Queue& q) {
    const Conv2dGeometry& g = a.g;
    const cl_int16 geometry = conv_geometry_vector(q, g, "conv2d_backward_data");
    const bool direct = g.in_channels / g.groups < q.tuning().conv_direct_rows;
    const char* kname = direct ? "conv2d_backward_data_direct" : "conv2d_backward_data_gemm";
    cl_kernel kern = q.kernel(kname);
    q.set_args(kern, kname, mem(a.dy), mem(a.w), mem(a.dx), geometry);
    if (direct) q.launch_planes(kern, kname, 4, g.in_height * g.in_width, g.batch * g.in_channels);
    else
        launch_conv_gemm(q, kern, kname, 4, g.in_channels / g.groups, g.batch * g.in_height * g.in_width, 1,
                         g.groups);
}

void conv2d_backward_weights_f32(const Conv2dBackwardWeightsArgs& a, Queue& q) {
    const Conv2dGeometry& g = a.g;
    const cl_int16 geometry = conv_geometry_vector(q, g, "conv2d_backward_weights");
    const int64_t m = g.out_channels / g.groups;
    const int64_t n = g.in_channels / g.groups * g.kernel_height * g.kernel_width;
    const int64_t k = g.batch * g.out_height * g.out_width;
    if (m < q.tuning().conv_direct_rows) {
        const char* kname = "conv2d_backward_weights_direct";
        cl_kernel kern = q.kernel(kname);
        q.set_args(kern, kname, mem(a.x), mem(a.dy), mem(a.dw), geometry);
        q.launch_groups(kern, kname, g.out_channels * n, q.tuning().conv_reduce_wg);
    } else {
        // Split the reduced (n, oh, ow) axis when the output tiles alone leave the device idle;
        // each chunk a whole number of k tiles. The chunks are added in order afterwards.
        const Tuning& t = q.tuning();
        const int64_t tiles = ceil_div(m, t.conv_tile_m) * ceil_div(n, t.conv_tile_n) * g.groups;
        const int64_t target = std::max<int64_t>(1, int64_t{q.compute_units()} * t.groups_per_unit);
        const int64_t min_chunk = std::max<int64_t>(256, 2 * int64_t{t.conv_tile_k});
        int64_t chunks = tiles >= target ? 1 : std::min({ceil_div(target, tiles), k / min_chunk, int64_t{4096}});
        chunks = std::max<int64_t>(1, chunks);
        const int64_t chunk_len = ceil_div(ceil_div(k, chunks), t.conv_tile_k) * t.conv_tile_k;
        chunks = ceil_div(k, chunk_len);
        const int64_t count = g.out_channels * n;
        const cl_mem out = chunks == 1 ? mem(a.dw) : q.scratch(kScratchConvPartials, chunks * count * 4);
        const char* kname = "conv2d_backward_weights_gemm";
        cl_kernel kern = q.kernel(kname);
        q.set_args(kern, kname, mem(a.x), mem(a.dy), out, geometry, cl_int{0}, cl_long{chunk_len});
        launch_conv_gemm(q, kern, kname, 4, m, n, chunks, g.groups);
        if (chunks > 1) {
            const char* sname = "conv2d_sum_partials";
            cl_kernel sum = q.kernel(sname);
            q.set_args(sum, sname, out, mem(a.dw), cl_long{count}, cl_int{static_cast<cl_int>(chunks)});
            q.launch_1d(sum, sname, count);
        }
    }
    if (a.dbias) {
        const char* kname = "conv2d_backward_bias";
        cl_kernel kern = q.kernel(kname);
        q.set_args(kern, kname, mem(a.dy), mem(a.dbias), cl_int{static_cast<cl_int>(g.batch)},
                   cl_int{static_cast<cl_int>(g.out_channels)},
                   cl_int{static_cast<cl_int>(g.out_height * g.out_width)});
        q.launch_groups(kern, kname, g.out_channels, q.tuning().conv_reduce_wg);
    }
}

}  // namespace kn::opencl
