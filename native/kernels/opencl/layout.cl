// layout.cl: the strided copy, the one kernel behind permute / transpose, narrow / select / slice and
// concatenate / stack / split: y = x through arbitrary strides, in the normalised geometry of
// StridedCopyArgs (ops.h: size-1 dimensions dropped, neighbours merged where x and y stay linear).
// strided_copy writes a contiguous y (from y_offset); strided_copy_to_view writes a strided y (a
// slice of a larger tensor).
//
// One work-item per output element: stores are contiguous, loads are contiguous whenever x's
// innermost stride is 1 (a permute that keeps the last dimension) and strided otherwise. That is
// what PoCL on a CPU wants (it vectorises across work-items and the caches absorb the strides). A
// GPU OpenCL device would want the shared-memory tile of cuda/layout.cu for a true transpose: not
// written yet, since no GPU OpenCL device runs in CI.
//
// The geometry arrives as long8 vectors (KN_MAX_RANK = 8), unpacked once per work-item; index math
// is 32-bit when every offset fits (the host says so through `narrow`).

__kernel void strided_copy(__global const float* x, __global float* y, const long n, const long x_offset,
                           const long y_offset, const int rank, const int narrow, const long8 dims8, const long8 strides8) {
    const long i = get_global_id(0);
    if (i >= n) return;
    long dims[8], strides[8];
    vstore8(dims8, 0, dims);
    vstore8(strides8, 0, strides);
    if (narrow) {
        uint rest = (uint)i, offset = (uint)x_offset;
        for (int d = rank - 1; d >= 0; --d) {
            const uint size = (uint)dims[d];
            offset += rest % size * (uint)strides[d];
            rest /= size;
        }
        y[y_offset + i] = x[offset];
    } else {
        long rest = i, offset = x_offset;
        for (int d = rank - 1; d >= 0; --d) {
            offset += rest % dims[d] * strides[d];
            rest /= dims[d];
        }
        y[y_offset + i] = x[offset];
    }
}

// A strided y: both offsets from the work-item's index (no 32-bit variant: the destination case is
// the gradient of a slice or a part of a concatenation, bandwidth-bound either way).
__kernel void strided_copy_to_view(__global const float* x, __global float* y, const long n, const long x_offset,
                                   const long y_offset, const int rank, const long8 dims8, const long8 x_strides8,
                                   const long8 y_strides8) {
    const long i = get_global_id(0);
    if (i >= n) return;
    long dims[8], x_strides[8], y_strides[8];
    vstore8(dims8, 0, dims);
    vstore8(x_strides8, 0, x_strides);
    vstore8(y_strides8, 0, y_strides);
    long rest = i, from = x_offset, to = y_offset;
    for (int d = rank - 1; d >= 0; --d) {
        const long index = rest % dims[d];
        from += index * x_strides[d];
        to += index * y_strides[d];
        rest /= dims[d];
    }
    y[to] = x[from];
}
