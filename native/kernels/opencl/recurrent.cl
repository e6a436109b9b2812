// recurrent.cl: the recurrent cells in OpenCL: one LSTM / GRU step after the layer's GEMMs, forward
// and backward, each one kernel (kn_lstm_cell_f32 and its backward, kn_gru_cell_f32 and its backward;
// kernels.h has the math and the saved layouts).
//
// Technique: each work-item takes RC_VEC consecutive units (j0 .. j0 + RC_VEC - 1) of one row b, as a
// vector (vloadN / vstoreN, vector tanh / exp), with the row's last partial vector done unit by unit;
// RC_VEC is the elementwise tuning's EW_VEC: 1 on GPUs (one unit per work-item, consecutive work-items
// on consecutive units, so every gate block is read and written coalesced), the SIMD width on CPUs,
// where PoCL's own work-item vectorisation gave up on these kernels and called the scalar math
// library (measured: the LSTM forward at batch 64, hidden 128 took ~400 us with one unit per work-item,
// ~13x a vectorised tanh over the same cells). The bodies are macros over a type T (float or the
// vector) so one definition serves both; a vector condition in ?: selects per component.
// Optional buffers arrive with a has_* flag (OpenCL 1.2 cannot pass a null buffer; the launcher binds
// another operand in their place, which the kernel then never touches). A masked row (mask[b] == 0)
// keeps its previous state forward and passes its gradient straight through backward.

#ifndef EW_VEC
#define EW_VEC 1
#endif
#define RC_VEC EW_VEC  // units per work-item (1, 2, 4, 8 or 16)

#define RC_CAT_(a, b) a##b
#define RC_CAT(a, b) RC_CAT_(a, b)
#if RC_VEC == 1
typedef float rc_vec;
#define RC_VLOAD(p) (*(p))
#define RC_VSTORE(v, p) (*(p) = (v))
#else
typedef RC_CAT(float, RC_VEC) rc_vec;
#define RC_VLOAD(p) RC_CAT(vload, RC_VEC)(0, (p))
#define RC_VSTORE(v, p) RC_CAT(vstore, RC_VEC)((v), 0, (p))
#endif
#define RC_LOAD1(p) (*(p))
#define RC_STORE1(v, p) (*(p) = (v))

// out = the logistic sigmoid of x without overflow: e^-|x| <= 1, so neither branch can overflow.
#define RC_SIGMOID(T, out, x)                                       \
    do {                                                            \
        const T x_ = (x);                                           \
        const T e_ = exp(-fabs(x_));                                \
        out = x_ >= 0.0f ? 1.0f / (1.0f + e_) : e_ / (1.0f + e_);  \
    } while (0)

// The work-item's row b and first unit j0; returns when it has none.
#define RC_PROLOGUE                                                 \
    const long chunks = (hidden + RC_VEC - 1) / RC_VEC;             \
    const long w = get_global_id(0);                                \
    if (w >= batch * chunks) return;                                \
    const long b = w / chunks, j0 = (w - b * chunks) * RC_VEC;      \
    const int update = !has_mask || mask[b] != 0.0f

// Runs BODY(T, LOAD, STORE, j) on the vector at j0 or, for the row's last partial vector, unit by unit.
#define RC_FOR_UNITS(BODY)                                          \
    if (j0 + RC_VEC <= hidden) {                                    \
        BODY(rc_vec, RC_VLOAD, RC_VSTORE, j0);                      \
    } else {                                                        \
        for (long j = j0; j < hidden; ++j) BODY(float, RC_LOAD1, RC_STORE1, j); \
    }

#define LSTM_FORWARD(T, LD, ST, j)                                                          \
    do {                                                                                    \
        __global const float* g4 = gates + b * 4 * hidden + (j);                            \
        const long e = b * hidden + (j);                                                    \
        T i, f, o;                                                                          \
        RC_SIGMOID(T, i, LD(g4));                                                           \
        RC_SIGMOID(T, f, LD(g4 + hidden));                                                  \
        const T g = tanh(LD(g4 + 2 * hidden));                                              \
        RC_SIGMOID(T, o, LD(g4 + 3 * hidden));                                              \
        const T cp = LD(c_prev + e);                                                        \
        const T cn = f * cp + i * g;                                                        \
        const T tc = tanh(cn);                                                              \
        if (has_saved) {                                                                    \
            __global float* s = saved + b * 5 * hidden + (j);                               \
            ST(i, s);                                                                       \
            ST(f, s + hidden);                                                              \
            ST(g, s + 2 * hidden);                                                          \
            ST(o, s + 3 * hidden);                                                          \
            ST(tc, s + 4 * hidden);                                                         \
        }                                                                                   \
        ST(update ? cn : cp, c + e);                                                        \
        ST(update ? o * tc : LD(h_prev + e), h + e);                                        \
    } while (0)

__kernel void lstm_cell(__global const float* gates, __global const float* c_prev, __global const float* h_prev,
                        __global const float* mask, __global float* h, __global float* c, __global float* saved,
                        const long batch, const long hidden, const int has_mask, const int has_saved) {
    RC_PROLOGUE;
    RC_FOR_UNITS(LSTM_FORWARD)
}

#define LSTM_BACKWARD(T, LD, ST, j)                                                         \
    do {                                                                                    \
        const long e = b * hidden + (j);                                                    \
        const T dhj = has_dh ? LD(dh + e) : (T)(0.0f);                                      \
        const T dcj = has_dc ? LD(dc + e) : (T)(0.0f);                                      \
        __global float* dg = dgates + b * 4 * hidden + (j);                                 \
        if (!update) {                                                                      \
            ST((T)(0.0f), dg);                                                              \
            ST((T)(0.0f), dg + hidden);                                                     \
            ST((T)(0.0f), dg + 2 * hidden);                                                 \
            ST((T)(0.0f), dg + 3 * hidden);                                                 \
            if (has_dc_prev) ST(dcj, dc_prev + e);                                          \
            if (has_dh_prev) ST(dhj, dh_prev + e);                                          \
            break;                                                                          \
        }                                                                                   \
        __global const float* s = saved + b * 5 * hidden + (j);                             \
        const T i = LD(s), f = LD(s + hidden), g = LD(s + 2 * hidden), o = LD(s + 3 * hidden), \
                tc = LD(s + 4 * hidden);                                                    \
        const T dct = dcj + dhj * o * (1.0f - tc * tc);                                     \
        ST(dct * g * i * (1.0f - i), dg);                                                   \
        ST(dct * LD(c_prev + e) * f * (1.0f - f), dg + hidden);                             \
        ST(dct * i * (1.0f - g * g), dg + 2 * hidden);                                      \
        ST(dhj * tc * o * (1.0f - o), dg + 3 * hidden);                                     \
        if (has_dc_prev) ST(dct * f, dc_prev + e);                                          \
        if (has_dh_prev) ST((T)(0.0f), dh_prev + e);                                        \
    } while (0)

__kernel void lstm_cell_backward(__global const float* saved, __global const float* c_prev,
                                 __global const float* mask, __global const float* dh, __global const float* dc,
                                 __global float* dgates, __global float* dc_prev, __global float* dh_prev,
                                 const long batch, const long hidden, const int has_mask, const int has_dh,
                                 const int has_dc, const int has_dc_prev, const int has_dh_prev) {
    RC_PROLOGUE;
    RC_FOR_UNITS(LSTM_BACKWARD)
}

#define GRU_FORWARD(T, LD, ST, j)                                                           \
    do {                                                                                    \
        const long at = b * 3 * hidden + (j), e = b * hidden + (j);                         \
        T r, z;                                                                             \
        RC_SIGMOID(T, r, LD(x_gates + at) + LD(h_gates + at));                              \
        RC_SIGMOID(T, z, LD(x_gates + at + hidden) + LD(h_gates + at + hidden));            \
        const T n = tanh(LD(x_gates + at + 2 * hidden) + r * LD(h_gates + at + 2 * hidden)); \
        if (has_saved) {                                                                    \
            ST(r, saved + at);                                                              \
            ST(z, saved + at + hidden);                                                     \
            ST(n, saved + at + 2 * hidden);                                                 \
        }                                                                                   \
        const T hp = LD(h_prev + e);                                                        \
        ST(update ? (1.0f - z) * n + z * hp : hp, h + e);                                   \
    } while (0)

__kernel void gru_cell(__global const float* x_gates, __global const float* h_gates, __global const float* h_prev,
                       __global const float* mask, __global float* h, __global float* saved,
                       const long batch, const long hidden, const int has_mask, const int has_saved) {
    RC_PROLOGUE;
    RC_FOR_UNITS(GRU_FORWARD)
}

#define GRU_BACKWARD(T, LD, ST, j)                                                          \
    do {                                                                                    \
        const long at = b * 3 * hidden + (j), e = b * hidden + (j);                         \
        const T d = LD(dh + e);                                                             \
        if (!update) {                                                                      \
            ST((T)(0.0f), dx_gates + at);                                                   \
            ST((T)(0.0f), dx_gates + at + hidden);                                          \
            ST((T)(0.0f), dx_gates + at + 2 * hidden);                                      \
            ST((T)(0.0f), dh_gates + at);                                                   \
            ST((T)(0.0f), dh_gates + at + hidden);                                          \
            ST((T)(0.0f), dh_gates + at + 2 * hidden);                                      \
            if (has_dh_prev) ST(d, dh_prev + e);                                            \
            break;                                                                          \
        }                                                                                   \
        const T r = LD(saved + at), z = LD(saved + at + hidden), n = LD(saved + at + 2 * hidden); \
        const T dn = d * (1.0f - z) * (1.0f - n * n);                                       \
        const T dz = d * (LD(h_prev + e) - n) * z * (1.0f - z);                             \
        const T dr = dn * LD(h_gates + at + 2 * hidden) * r * (1.0f - r);                   \
        ST(dr, dx_gates + at);                                                              \
        ST(dz, dx_gates + at + hidden);                                                     \
        ST(dn, dx_gates + at + 2 * hidden);                                                 \
        ST(dr, dh_gates + at);                                                              \
        ST(dz, dh_gates + at + hidden);                                                     \
        ST(dn * r, dh_gates + at + 2 * hidden);                                             \
        if (has_dh_prev) ST(d * z, dh_prev + e);                                            \
    } while (0)

__kernel void gru_cell_backward(__global const float* saved, __global const float* h_gates,
                                __global const float* h_prev, __global const float* mask, __global const float* dh,
                                __global float* dx_gates, __global float* dh_gates, __global float* dh_prev,
                                const long batch, const long hidden, const int has_mask, const int has_dh_prev) {
    RC_PROLOGUE;
    RC_FOR_UNITS(GRU_BACKWARD)
}
