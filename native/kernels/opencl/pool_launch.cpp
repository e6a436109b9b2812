// pool_launch.cpp: the launchers of pool.cl: max / average pooling forward and backward, one
// work-item per output (GPUs) or per output row (CPUs: pool_rows).
#include "opencl_backend.h"

#include <algorithm>
#include <limits>

namespace kn::opencl {
namespace {

// The geometry of pool.cl's kernels as one int16 argument (Pool2dGeometry's order, count_include_pad
// last). The kernels index within a plane in int32; larger planes are refused here.
cl_int16 pool_geometry_vector(const Queue& q, const Pool2dGeometry& g, const char* op) {
    const int64_t values[13] = {g.batch, g.channels, g.in_height, g.in_width, g.kernel_height, g.kernel_width,
                                g.stride_height, g.stride_width, g.pad_height, g.pad_width, g.out_height,
                                g.out_width, g.count_include_pad ? 1 : 0};
    constexpr int64_t kMax = std::numeric_limits<cl_int>::max();
    if (*std::max_element(values, values + 13) > kMax || g.in_height + 2 * g.pad_height > kMax ||
        g.in_width + 2 * g.pad_width > kMax || g.out_height * g.out_width > kMax)
        fail(KN_ERROR_NOT_SUPPORTED, q.device_name(), ": ", op, ": the OpenCL kernels index a plane in int32; x is [",
             g.batch, ", ", g.channels, ", ", g.in_height, ", ", g.in_width, "], y [", g.batch, ", ", g.channels, ", ",
             g.out_height, ", ", g.out_width, "]");
    cl_int16 v{};
    for (int i = 0; i < 13; ++i) v.s[i] = static_cast<cl_int>(values[i]);
    return v;
}

}  // namespace

void pool2d_f32(const Pool2dArgs& a, Queue& q) {
    const Pool2dGeometry& g = a.g;
    const cl_int16 geometry = pool_geometry_vector(q, g, "pool2d");
    // One work-item per output (GPUs) or per output row (CPUs, pool_rows).
    const int64_t planes = g.batch * g.channels;
    const int64_t plane = q.tuning().pool_rows ? g.out_height : g.out_height * g.out_width;
    if (a.op == KN_POOL_MAX) {
        const char* kname = "pool2d_max";
        cl_kernel kern = q.kernel(kname);
        // Without indices the argument is bound to y and never written (has_indices = 0).
        q.set_args(kern, kname, mem(a.x), mem(a.y), a.indices ? mem(a.indices) : mem(a.y),
                   cl_int{a.indices ? 1 : 0}, geometry);
        q.launch_planes(kern, kname, 5, plane, planes);
    } else {
        const char* kname = "pool2d_avg";
        cl_kernel kern = q.kernel(kname);
        q.set_args(kern, kname, mem(a.x), mem(a.y), geometry);
        q.launch_planes(kern, kname, 3, plane, planes);
    }
}

void pool2d_backward_f32(const Pool2dBackwardArgs& a, Queue& q) {
    const Pool2dGeometry& g = a.g;
    const cl_int16 geometry = pool_geometry_vector(q, g, "pool2d_backward");
    const int64_t planes = g.batch * g.channels;
    const int64_t plane = q.tuning().pool_rows ? g.in_height : g.in_height * g.in_width;
    if (a.op == KN_POOL_MAX) {
        const char* kname = "pool2d_max_backward";
        cl_kernel kern = q.kernel(kname);
        q.set_args(kern, kname, mem(a.dy), mem(a.indices), mem(a.dx), geometry);
        q.launch_planes(kern, kname, 4, plane, planes);
    } else {
        const char* kname = "pool2d_avg_backward";
        cl_kernel kern = q.kernel(kname);
        q.set_args(kern, kname, mem(a.dy), mem(a.dx), geometry);
        q.launch_planes(kern, kname, 3, plane, planes);
    }
}

}  // namespace kn::opencl
