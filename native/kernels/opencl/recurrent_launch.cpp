// recurrent_launch.cpp: the launchers of recurrent.cl (the LSTM and GRU cell steps, forward and
// backward): one work-item per cell, one kernel per call. An absent optional buffer is bound to a
// required operand of the same call and switched off by its flag (the kernel never touches it).
#include "opencl_backend.h"

namespace kn::opencl {
namespace {
cl_mem or_else(const void* optional, const void* stand_in) { return mem(optional ? optional : stand_in); }
cl_int flag(const void* p) { return p ? 1 : 0; }
}  // namespace

void lstm_cell_f32(const LstmCellArgs& a, Queue& q) {
    const char* kname = "lstm_cell";
    cl_kernel kern = q.kernel(kname);
    q.set_args(kern, kname, mem(a.gates), mem(a.c_prev), mem(a.h_prev), or_else(a.mask, a.gates), mem(a.h), mem(a.c),
               or_else(a.saved, a.h), cl_long{a.batch}, cl_long{a.hidden}, flag(a.mask), flag(a.saved));
    q.launch_1d(kern, kname, a.batch * a.hidden);
}

void lstm_cell_backward_f32(const LstmCellBackwardArgs& a, Queue& q) {
    const char* kname = "lstm_cell_backward";
    cl_kernel kern = q.kernel(kname);
    q.set_args(kern, kname, mem(a.saved), mem(a.c_prev), or_else(a.mask, a.saved), or_else(a.dh, a.saved),
               or_else(a.dc, a.saved), mem(a.dgates), or_else(a.dc_prev, a.dgates), or_else(a.dh_prev, a.dgates),
               cl_long{a.batch}, cl_long{a.hidden}, flag(a.mask), flag(a.dh), flag(a.dc), flag(a.dc_prev),
               flag(a.dh_prev));
    q.launch_1d(kern, kname, a.batch * a.hidden);
}

void gru_cell_f32(const GruCellArgs& a, Queue& q) {
    const char* kname = "gru_cell";
    cl_kernel kern = q.kernel(kname);
    q.set_args(kern, kname, mem(a.x_gates), mem(a.h_gates), mem(a.h_prev), or_else(a.mask, a.x_gates), mem(a.h),
               or_else(a.saved, a.h), cl_long{a.batch}, cl_long{a.hidden}, flag(a.mask), flag(a.saved));
    q.launch_1d(kern, kname, a.batch * a.hidden);
}

void gru_cell_backward_f32(const GruCellBackwardArgs& a, Queue& q) {
    const char* kname = "gru_cell_backward";
    cl_kernel kern = q.kernel(kname);
    q.set_args(kern, kname, mem(a.saved), mem(a.h_gates), mem(a.h_prev), or_else(a.mask, a.saved), mem(a.dh),
               mem(a.dx_gates), mem(a.dh_gates), or_else(a.dh_prev, a.dx_gates), cl_long{a.batch}, cl_long{a.hidden},
               flag(a.mask), flag(a.dh_prev));
    q.launch_1d(kern, kname, a.batch * a.hidden);
}

}  // namespace kn::opencl
