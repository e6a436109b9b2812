// cast.cl: kn_cast on OpenCL: y[i] = (to) x[i] between float32, int32 and int64, one work-item per
// element. The rules of kernels.h come from the built-ins: convert_int_sat_rtz / convert_long_sat_rtz
// truncate toward zero, saturate out of range and give 0 for NaN (OpenCL C 6.2.3.3); int -> float
// rounds to nearest even (the default _rte); long -> int keeps the low 32 bits (as_int of the uint).

__kernel void cast_f32_i32(__global const float* x, __global int* y, const long n) {
    const long i = get_global_id(0);
    if (i < n) y[i] = convert_int_sat_rtz(x[i]);
}

__kernel void cast_f32_i64(__global const float* x, __global long* y, const long n) {
    const long i = get_global_id(0);
    if (i < n) y[i] = convert_long_sat_rtz(x[i]);
}

__kernel void cast_i32_f32(__global const int* x, __global float* y, const long n) {
    const long i = get_global_id(0);
    if (i < n) y[i] = convert_float_rte(x[i]);
}

__kernel void cast_i32_i64(__global const int* x, __global long* y, const long n) {
    const long i = get_global_id(0);
    if (i < n) y[i] = (long)x[i];
}

__kernel void cast_i64_f32(__global const long* x, __global float* y, const long n) {
    const long i = get_global_id(0);
    if (i < n) y[i] = convert_float_rte(x[i]);
}

__kernel void cast_i64_i32(__global const long* x, __global int* y, const long n) {
    const long i = get_global_id(0);
    if (i < n) y[i] = as_int((uint)(ulong)x[i]);
}

// The same type: a copy in 32-bit words (words = n for float32 / int32, 2 n for int64).
__kernel void cast_copy_words(__global const uint* x, __global uint* y, const long words) {
    const long i = get_global_id(0);
    if (i < words) y[i] = x[i];
}
