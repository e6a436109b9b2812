// recurrent.cl: the recurrent cells in OpenCL: one LSTM / GRU step after the layer's GEMMs, forward
// and backward, each one kernel (kn_lstm_cell_f32 and its backward, kn_gru_cell_f32 and its backward;
// kernels.h has the math and the saved layouts). One work-item per cell (row b, unit j); consecutive
// work-items take consecutive units of a row, so every gate block is read and written coalesced.
// Optional buffers arrive with a has_* flag (OpenCL 1.2 cannot pass a null buffer; the launcher binds
// another operand in their place, which the kernel then never touches). A masked row (mask[b] == 0)
// keeps its previous state forward and passes its gradient straight through backward.

// The logistic sigmoid without overflow: e^-|x| <= 1, so neither branch can overflow for any x.
inline float rc_sigmoid(float x) {
    const float e = exp(-fabs(x));
    return x >= 0.0f ? 1.0f / (1.0f + e) : e / (1.0f + e);
}

__kernel void lstm_cell(__global const float* gates, __global const float* c_prev, __global const float* h_prev,
                        __global const float* mask, __global float* h, __global float* c, __global float* saved,
                        const long batch, const long hidden, const int has_mask, const int has_saved) {
    const long e = get_global_id(0);
    if (e >= batch * hidden) return;
    const long b = e / hidden, j = e - b * hidden;
    __global const float* g4 = gates + b * 4 * hidden + j;
    const float i = rc_sigmoid(g4[0]), f = rc_sigmoid(g4[hidden]), g = tanh(g4[2 * hidden]),
                o = rc_sigmoid(g4[3 * hidden]);
    const float cn = f * c_prev[e] + i * g;
    const float tc = tanh(cn);
    if (has_saved) {
        __global float* s = saved + b * 5 * hidden + j;
        s[0] = i;
        s[hidden] = f;
        s[2 * hidden] = g;
        s[3 * hidden] = o;
        s[4 * hidden] = tc;
    }
    const bool update = !has_mask || mask[b] != 0.0f;
    c[e] = update ? cn : c_prev[e];
    h[e] = update ? o * tc : h_prev[e];
}

__kernel void lstm_cell_backward(__global const float* saved, __global const float* c_prev,
                                 __global const float* mask, __global const float* dh, __global const float* dc,
                                 __global float* dgates, __global float* dc_prev, __global float* dh_prev,
                                 const long batch, const long hidden, const int has_mask, const int has_dh,
                                 const int has_dc, const int has_dc_prev, const int has_dh_prev) {
    const long e = get_global_id(0);
    if (e >= batch * hidden) return;
    const long b = e / hidden, j = e - b * hidden;
    const float dhj = has_dh ? dh[e] : 0.0f, dcj = has_dc ? dc[e] : 0.0f;
    __global float* dg = dgates + b * 4 * hidden + j;
    if (has_mask && mask[b] == 0.0f) {
        dg[0] = dg[hidden] = dg[2 * hidden] = dg[3 * hidden] = 0.0f;
        if (has_dc_prev) dc_prev[e] = dcj;
        if (has_dh_prev) dh_prev[e] = dhj;
        return;
    }
    __global const float* s = saved + b * 5 * hidden + j;
    const float i = s[0], f = s[hidden], g = s[2 * hidden], o = s[3 * hidden], tc = s[4 * hidden];
    const float dct = dcj + dhj * o * (1.0f - tc * tc);
    dg[0] = dct * g * i * (1.0f - i);
    dg[hidden] = dct * c_prev[e] * f * (1.0f - f);
    dg[2 * hidden] = dct * i * (1.0f - g * g);
    dg[3 * hidden] = dhj * tc * o * (1.0f - o);
    if (has_dc_prev) dc_prev[e] = dct * f;
    if (has_dh_prev) dh_prev[e] = 0.0f;
}

__kernel void gru_cell(__global const float* x_gates, __global const float* h_gates, __global const float* h_prev,
                       __global const float* mask, __global float* h, __global float* saved,
                       const long batch, const long hidden, const int has_mask, const int has_saved) {
    const long e = get_global_id(0);
    if (e >= batch * hidden) return;
    const long b = e / hidden, j = e - b * hidden;
    const long at = b * 3 * hidden + j;
    const float r = rc_sigmoid(x_gates[at] + h_gates[at]);
    const float z = rc_sigmoid(x_gates[at + hidden] + h_gates[at + hidden]);
    const float n = tanh(x_gates[at + 2 * hidden] + r * h_gates[at + 2 * hidden]);
    if (has_saved) {
        saved[at] = r;
        saved[at + hidden] = z;
        saved[at + 2 * hidden] = n;
    }
    const bool update = !has_mask || mask[b] != 0.0f;
    h[e] = update ? (1.0f - z) * n + z * h_prev[e] : h_prev[e];
}

__kernel void gru_cell_backward(__global const float* saved, __global const float* h_gates,
                                __global const float* h_prev, __global const float* mask, __global const float* dh,
                                __global float* dx_gates, __global float* dh_gates, __global float* dh_prev,
                                const long batch, const long hidden, const int has_mask, const int has_dh_prev) {
    const long e = get_global_id(0);
    if (e >= batch * hidden) return;
    const long b = e / hidden, j = e - b * hidden;
    const long at = b * 3 * hidden + j;
    const float d = dh[e];
    if (has_mask && mask[b] == 0.0f) {
        dx_gates[at] = dx_gates[at + hidden] = dx_gates[at + 2 * hidden] = 0.0f;
        dh_gates[at] = dh_gates[at + hidden] = dh_gates[at + 2 * hidden] = 0.0f;
        if (has_dh_prev) dh_prev[e] = d;
        return;
    }
    const float r = saved[at], z = saved[at + hidden], n = saved[at + 2 * hidden];
    const float dn = d * (1.0f - z) * (1.0f - n * n);
    const float dz = d * (h_prev[e] - n) * z * (1.0f - z);
    const float dr = dn * h_gates[at + 2 * hidden] * r * (1.0f - r);
    dx_gates[at] = dr;
    dx_gates[at + hidden] = dz;
    dx_gates[at + 2 * hidden] = dn;
    dh_gates[at] = dr;
    dh_gates[at + hidden] = dz;
    dh_gates[at + 2 * hidden] = dn * r;
    if (has_dh_prev) dh_prev[e] = d * z;
}
