// softmax_launch.cpp: the launchers of softmax.cl: softmax / log-softmax and the cross-entropy loss,
// forward and backward. Rows go one work-group each, or one work-item each where they are short (or,
// on CPUs, plentiful): use_small_softmax.
#include "opencl_backend.h"

#include <cstring>

namespace kn::opencl {
namespace {

// Short rows, or (on CPUs) enough rows to keep every core busy: one work-item per row.
bool use_small_softmax(const Queue& q, int64_t rows, int64_t cols) {
    if (cols <= q.tuning().softmax_small_cols) return true;
    return std::strcmp(q.tuning().profile, "cpu") == 0 && rows >= int64_t{q.compute_units()} * 4;
}

}  // namespace

void softmax_f32(const SoftmaxArgs& s, Queue& q) {
    const bool small = use_small_softmax(q, s.rows, s.cols);
    const char* kname = small ? "softmax_rows_small" : "softmax_rows";
    cl_kernel kern = q.kernel(kname);
    if (small) {
        q.set_args(kern, kname, mem(s.x), mem(s.y), cl_long{s.rows}, cl_long{s.cols}, cl_int{s.log ? 1 : 0});
        q.launch_1d(kern, kname, s.rows);
    } else {
        q.set_args(kern, kname, mem(s.x), mem(s.y), cl_long{s.cols}, cl_int{s.log ? 1 : 0});
        q.launch_groups(kern, kname, s.rows, q.tuning().softmax_wg);
    }
}

void softmax_backward_f32(const SoftmaxBackwardArgs& s, Queue& q) {
    const bool small = use_small_softmax(q, s.rows, s.cols);
    const char* kname = small ? "softmax_backward_rows_small" : "softmax_backward_rows";
    cl_kernel kern = q.kernel(kname);
    if (small) {
        q.set_args(kern, kname, mem(s.y), mem(s.dy), mem(s.dx), cl_long{s.rows}, cl_long{s.cols},
                   cl_int{s.log ? 1 : 0});
        q.launch_1d(kern, kname, s.rows);
    } else {
        q.set_args(kern, kname, mem(s.y), mem(s.dy), mem(s.dx), cl_long{s.cols}, cl_int{s.log ? 1 : 0});
        q.launch_groups(kern, kname, s.rows, q.tuning().softmax_wg);
    }
}

void cross_entropy_f32(const CrossEntropyArgs& c, Queue& q) {
    const bool small = use_small_softmax(q, c.rows, c.cols);
    const char* kname = small ? "cross_entropy_rows_small" : "cross_entropy_rows";
    cl_kernel kern = q.kernel(kname);
    if (small) {
        q.set_args(kern, kname, mem(c.logits), mem(c.labels), mem(c.losses), cl_long{c.rows}, cl_long{c.cols});
        q.launch_1d(kern, kname, c.rows);
    } else {
        q.set_args(kern, kname, mem(c.logits), mem(c.labels), mem(c.losses), cl_long{c.cols});
        q.launch_groups(kern, kname, c.rows, q.tuning().softmax_wg);
    }
}

void cross_entropy_backward_f32(const CrossEntropyBackwardArgs& c, Queue& q) {
    const bool small = use_small_softmax(q, c.rows, c.cols);
    const char* kname = small ? "cross_entropy_backward_rows_small" : "cross_entropy_backward_rows";
    cl_kernel kern = q.kernel(kname);
    if (small) {
        q.set_args(kern, kname, mem(c.logits), mem(c.labels), mem(c.dlosses), mem(c.dlogits), cl_long{c.rows},
                   cl_long{c.cols});
        q.launch_1d(kern, kname, c.rows);
    } else {
        q.set_args(kern, kname, mem(c.logits), mem(c.labels), mem(c.dlosses), mem(c.dlogits), cl_long{c.cols});
        q.launch_groups(kern, kname, c.rows, q.tuning().softmax_wg);
    }
}

}  // namespace kn::opencl
