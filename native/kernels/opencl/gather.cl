// gather.cl: the gather family in OpenCL: gather rows (index_select along dim 0, the forward of an
// embedding lookup) and its deterministic scatter-add backward. The same design as cuda/gather.cu
// (see there and ops.h's ScatterAddRowsArgs): one work-item per output element for the gather; one
// per (segment, column) for the scatter-add, which adds the segment's positions in ascending order,
// so the result is bit for bit the CPU's and the CUDA backend's, with no atomics.

__kernel void gather_rows(__global const float* table, __global const long* indices, __global float* y,
                          const long n, const long cols) {
    const long e = get_global_id(0);
    if (e >= n * cols) return;
    const long i = e / cols, c = e - i * cols;
    y[e] = table[indices[i] * cols + c];
}

__kernel void scatter_add_rows(__global const float* dy, __global const long* plan, __global float* dtable,
                               const long segments, const long cols) {
    const long e = get_global_id(0);
    if (e >= segments * cols) return;
    const long s = e / cols, c = e - s * cols;
    __global const long* starts = plan + segments;
    __global const long* order = starts + segments + 1;
    __global float* target = dtable + plan[s] * cols + c;
    float sum = *target;
    for (long k = starts[s]; k < starts[s + 1]; ++k) sum += dy[order[k] * cols + c];
    *target = sum;
}
