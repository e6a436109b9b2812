// gather_launch.cpp: the launchers of gather.cl (gather rows and the deterministic scatter-add):
// one work-item per output element, one per (segment, column) of the scatter-add's plan.
#include "opencl_backend.h"

namespace kn::opencl {

void gather_rows_f32(const GatherRowsArgs& a, Queue& q) {
    const char* kname = "gather_rows";
    cl_kernel kern = q.kernel(kname);
    q.set_args(kern, kname, mem(a.table), mem(a.indices), mem(a.y), cl_long{a.n}, cl_long{a.cols});
    q.launch_1d(kern, kname, a.n * a.cols);
}

void scatter_add_rows_f32(const ScatterAddRowsArgs& a, Queue& q) {
    const char* kname = "scatter_add_rows";
    cl_kernel kern = q.kernel(kname);
    q.set_args(kern, kname, mem(a.dy), mem(a.plan), mem(a.dtable), cl_long{a.segments}, cl_long{a.cols});
    q.launch_1d(kern, kname, a.segments * a.cols);
}

}  // namespace kn::opencl
