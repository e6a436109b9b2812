// layout.cl: the strided copy, the one kernel behind permute / transpose (kn_permute_f32): y
// (contiguous) = x read through arbitrary strides, in the normalised geometry of StridedCopyArgs
// (backend.h: size-1 dimensions dropped, neighbours merged where x stays linear across them).
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
                           const int rank, const int narrow, const long8 dims8, const long8 strides8) {
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
        y[i] = x[offset];
    } else {
        long rest = i, offset = x_offset;
        for (int d = rank - 1; d >= 0; --d) {
            offset += rest % dims[d] * strides[d];
            rest /= dims[d];
        }
        y[i] = x[offset];
    }
}
