// reduce_launch.cpp: the launchers of reduce.cl. A reduction over few outputs is split along the
// reduced axis into chunks (plan_chunks) so the device gets enough work-groups: pass 1 writes one
// partial per chunk into device-owned scratch, pass 2 (the same kernels) combines the partials.
#include "opencl_backend.h"

#include <algorithm>
#include <limits>
#include <string>

namespace kn::opencl {
namespace {

// Columns one work-group of reduce_cols_* (REDUCE_VEC per work-item) or argreduce_cols_* covers.
int64_t columns_per_group(const Queue& q, bool arg) {
    return arg ? q.tuning().reduce_cols_x : int64_t{q.tuning().reduce_cols_x} * q.tuning().reduce_vec;
}

// How many chunks to split the reduced axis into so the device gets enough work-groups: 1 when
// the outputs alone make enough groups or the axis is short; otherwise enough chunks for about
// groups_per_unit groups per compute unit, each chunk still long enough to be worth a group.
int64_t plan_chunks(const Queue& q, int64_t outer, int64_t reduce, int64_t inner, bool arg) {
    const Tuning& t = q.tuning();
    const int64_t groups = inner == 1 ? outer : outer * ceil_div(inner, columns_per_group(q, arg));
    const int64_t target = std::max<int64_t>(1, int64_t{q.compute_units()} * t.groups_per_unit);
    if (groups >= target) return 1;
    const int64_t min_chunk = inner == 1 ? int64_t{t.reduce_wg} * t.reduce_vec * 4
                                         : int64_t{t.reduce_wg / t.reduce_cols_x} * 8;
    const int64_t chunks = std::min({ceil_div(target, groups), reduce / std::max<int64_t>(1, min_chunk),
                                     int64_t{4096}});
    return std::max<int64_t>(1, chunks);
}

int64_t chunk_length(int64_t reduce, int64_t chunks) { return ceil_div(reduce, chunks); }

// y[outer, chunks, inner] = op over each chunk of x[outer, reduce, inner], divided by divisor.
void reduce_pass(Queue& q, const char* op, const void* x, const void* y, int64_t outer, int64_t reduce, int64_t inner,
                 int64_t chunks, float divisor) {
    const int64_t len = chunk_length(reduce, chunks);
    chunks = ceil_div(reduce, len);  // the last chunk is never empty
    if (inner == 1) {
        const std::string kname = cat("reduce_rows_", op);
        cl_kernel kern = q.kernel(kname);
        q.set_args(kern, kname.c_str(), mem(x), mem(y), cl_long{reduce}, cl_long{chunks}, cl_long{len},
                   cl_float{divisor});
        q.launch_groups(kern, kname.c_str(), outer * chunks, q.tuning().reduce_wg);
    } else {
        const std::string kname = cat("reduce_cols_", op);
        cl_kernel kern = q.kernel(kname);
        q.set_args(kern, kname.c_str(), mem(x), mem(y), cl_long{reduce}, cl_long{inner}, cl_long{chunks},
                   cl_long{len}, cl_float{divisor});
        q.launch_groups(kern, kname.c_str(), ceil_div(inner, columns_per_group(q, false)) * outer * chunks,
                        q.tuning().reduce_wg);
    }
}

// Indices (and, for a first pass, values) of the extreme element of each chunk; index_in is
// null in a first pass (the index of element r is r).
void argreduce_pass(Queue& q, const char* op, const void* x, const void* index_in, const void* value_out,
                    const void* index_out, int64_t outer, int64_t reduce, int64_t inner, int64_t chunks) {
    const int64_t len = chunk_length(reduce, chunks);
    chunks = ceil_div(reduce, len);
    const cl_int has_index_in = index_in ? 1 : 0, has_value_out = value_out ? 1 : 0;
    // Unused buffer arguments are bound to x and never touched (their flags are off).
    const cl_mem in = index_in ? mem(index_in) : mem(x);
    const cl_mem values = value_out ? mem(value_out) : mem(x);
    if (inner == 1) {
        const std::string kname = cat("argreduce_rows_", op);
        cl_kernel kern = q.kernel(kname);
        q.set_args(kern, kname.c_str(), mem(x), in, values, mem(index_out), cl_long{reduce}, cl_long{chunks},
                   cl_long{len}, has_index_in, has_value_out);
        q.launch_groups(kern, kname.c_str(), outer * chunks, q.tuning().reduce_wg);
    } else {
        const std::string kname = cat("argreduce_cols_", op);
        cl_kernel kern = q.kernel(kname);
        q.set_args(kern, kname.c_str(), mem(x), in, values, mem(index_out), cl_long{reduce}, cl_long{inner},
                   cl_long{chunks}, cl_long{len}, has_index_in, has_value_out);
        q.launch_groups(kern, kname.c_str(), ceil_div(inner, columns_per_group(q, true)) * outer * chunks,
                        q.tuning().reduce_wg);
    }
}

}  // namespace

void reduce_f32(const ReduceArgs& r, Queue& q) {
    if (r.reduce == 0) {
        q.fill_f32(mem(r.y), 0, r.outer * r.inner,
                   r.op == KN_REDUCE_MEAN ? std::numeric_limits<float>::quiet_NaN() : 0.0f);
        return;
    }
    const char* op = r.op == KN_REDUCE_MAX ? "maximum" : r.op == KN_REDUCE_MIN ? "minimum"
                     : r.op == KN_REDUCE_SUM_SQUARES ? "sumsq" : "sum";
    // The second pass combines partial results: squares are already taken, sums stay sums.
    const char* combine_op = r.op == KN_REDUCE_SUM_SQUARES ? "sum" : op;
    const float divisor = r.op == KN_REDUCE_MEAN ? static_cast<float>(r.reduce) : 1.0f;
    const int64_t chunks = plan_chunks(q, r.outer, r.reduce, r.inner, false);
    if (chunks == 1) {
        reduce_pass(q, op, r.x, r.y, r.outer, r.reduce, r.inner, 1, divisor);
        return;
    }
    const cl_mem partial = q.scratch(kScratchReduceValues, r.outer * chunks * r.inner * 4);
    reduce_pass(q, op, r.x, partial, r.outer, r.reduce, r.inner, chunks, 1.0f);
    reduce_pass(q, combine_op, partial, r.y, r.outer, chunks, r.inner, 1, divisor);
}

void argreduce_f32(const ArgReduceArgs& r, Queue& q) {
    const char* op = r.op == KN_ARGMAX ? "maximum" : "minimum";
    const int64_t chunks = plan_chunks(q, r.outer, r.reduce, r.inner, true);
    if (chunks == 1) {
        argreduce_pass(q, op, r.x, nullptr, nullptr, r.indices, r.outer, r.reduce, r.inner, 1);
        return;
    }
    const int64_t partials = r.outer * chunks * r.inner;
    const cl_mem values = q.scratch(kScratchReduceValues, partials * 4);
    const cl_mem indices = q.scratch(kScratchArgreduceIndices, partials * 8);
    argreduce_pass(q, op, r.x, nullptr, values, indices, r.outer, r.reduce, r.inner, chunks);
    argreduce_pass(q, op, values, indices, nullptr, r.indices, r.outer, chunks, r.inner, 1);
}

}  // namespace kn::opencl
