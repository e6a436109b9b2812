// layout_launch.cpp: the launchers of layout.cl, the strided copy behind permute / transpose / slices /
// concatenation: one work-item per element, the geometry as long8 vectors (KN_MAX_RANK = 8); a
// contiguous y takes strided_copy, a strided one strided_copy_to_view.
#include "opencl_backend.h"

#include <limits>

namespace kn::opencl {

void strided_copy_f32(const StridedCopyArgs& a, Queue& q) {
    cl_long8 dims{}, x_strides{}, y_strides{};
    int64_t last = a.x_offset;  // the largest offset read: 32-bit index math when it and n fit
    for (int32_t d = 0; d < a.rank; ++d) {
        dims.s[d] = a.dims[d];
        x_strides.s[d] = a.x_strides[d];
        y_strides.s[d] = a.y_strides[d];
        last += (a.dims[d] - 1) * a.x_strides[d];
    }
    if (!a.y_contiguous) {
        const char* kname = "strided_copy_to_view";
        cl_kernel kern = q.kernel(kname);
        q.set_args(kern, kname, mem(a.x), mem(a.y), cl_long{a.n}, cl_long{a.x_offset}, cl_long{a.y_offset},
                   cl_int{a.rank}, dims, x_strides, y_strides);
        q.launch_1d(kern, kname, a.n);
        return;
    }
    const cl_int narrow = a.n <= std::numeric_limits<int32_t>::max() && last <= std::numeric_limits<int32_t>::max();
    const char* kname = "strided_copy";
    cl_kernel kern = q.kernel(kname);
    q.set_args(kern, kname, mem(a.x), mem(a.y), cl_long{a.n}, cl_long{a.x_offset}, cl_long{a.y_offset}, cl_int{a.rank},
               narrow, dims, x_strides);
    q.launch_1d(kern, kname, a.n);
}

}  // namespace kn::opencl
