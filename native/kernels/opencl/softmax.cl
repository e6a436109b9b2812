// softmax.cl: softmax and log-softmax over the rows of a [rows, cols] matrix, their backward, and
// the fused cross-entropy loss built on the same row passes (kn_softmax_f32,
// kn_softmax_backward_f32, kn_cross_entropy_f32, kn_cross_entropy_backward_f32).
//
// Forward, per row: m = max x; s = sum e^(x - m); y = e^(x - m) / s, or log-softmax
// y = x - m - ln s. Subtracting the row maximum keeps every exponent <= 0, so nothing overflows
// for any finite input (a NaN anywhere in a row makes the whole row NaN, as in PyTorch).
// Backward, per row (from the forward output y):
//   softmax:     dx = y * (dy - sum(dy * y))
//   log_softmax: dx = dy - e^y * sum(dy)
// Technique: two shapes, picked by the host.
//   - *_rows: one work-group of SOFTMAX_WG work-items per row; each pass (max, sum, write) strides
//     the row with the whole group (coalesced) and meets in a local-memory tree. For long rows.
//   - *_rows_small: one work-item per row walking it sequentially; for short rows (a work-group
//     per 10-wide row would idle most of its lanes) and on CPUs with many rows, where one core
//     streaming a row beats splitting it.
// Both walk rows in SOFTMAX_VEC-wide vectors (CPUs: the SIMD width, so exp runs as vector math;
// GPUs: 1), with a scalar tail.
// Napkin math: forward reads x three times (max, sum, write; the later passes mostly hit cache) and
// writes y once, recomputing the exponent instead of storing it; memory bound.

#ifndef SOFTMAX_WG
#define SOFTMAX_WG 256  // work-items per row in the *_rows kernels (a power of two)
#endif
#ifndef SOFTMAX_VEC
#define SOFTMAX_VEC 1   // vector width of the row walks (1, 2, 4, 8 or 16)
#endif

#if (SOFTMAX_WG & (SOFTMAX_WG - 1)) != 0
#error "softmax.cl: SOFTMAX_WG must be a power of two"
#endif

#define SOFTMAX_CAT_(a, b) a##b
#define SOFTMAX_CAT(a, b) SOFTMAX_CAT_(a, b)
#if SOFTMAX_VEC == 1
typedef float sm_vec;
#define SM_VLOAD(p) (*(p))
#define SM_VSTORE(v, p) (*(p) = (v))
#else
typedef SOFTMAX_CAT(float, SOFTMAX_VEC) sm_vec;
#define SM_VLOAD(p) SOFTMAX_CAT(vload, SOFTMAX_VEC)(0, (p))
#define SM_VSTORE(v, p) SOFTMAX_CAT(vstore, SOFTMAX_VEC)((v), 0, (p))
#endif

inline float softmax_add(float a, float b) { return a + b; }

// Horizontal max / sum of a vector, pairwise.
inline float sm_hmax(sm_vec v) {
    float lanes[SOFTMAX_VEC];
    SM_VSTORE(v, lanes);
    for (int w = SOFTMAX_VEC / 2; w > 0; w /= 2)
        for (int l = 0; l < w; ++l) lanes[l] = fmax(lanes[l], lanes[l + w]);
    return lanes[0];
}
inline float sm_hsum(sm_vec v) {
    float lanes[SOFTMAX_VEC];
    SM_VSTORE(v, lanes);
    for (int w = SOFTMAX_VEC / 2; w > 0; w /= 2)
        for (int l = 0; l < w; ++l) lanes[l] += lanes[l + w];
    return lanes[0];
}

// fmax ignores NaN, which is fine here: a NaN element still poisons the sum and so the whole row.
#define SOFTMAX_TREE(scratch, lid, combine)                                                         \
    for (int s_ = SOFTMAX_WG / 2; s_ > 0; s_ /= 2) {                                                \
        barrier(CLK_LOCAL_MEM_FENCE);                                                               \
        if ((lid) < s_) scratch[lid] = combine(scratch[lid], scratch[(lid) + s_]);                  \
    }                                                                                               \
    barrier(CLK_LOCAL_MEM_FENCE);

// Loops of one work-item over its share of a row of `cols` elements: vectors v = begin, begin +
// step, ... (element v * SOFTMAX_VEC), then the scalar tail elements begin, begin + step, ... past
// the last whole vector. `body_vec(c)` / `body_scalar(c)` see the element index c.
#define SOFTMAX_WALK(begin, step, body_vec, body_scalar)                                            \
    {                                                                                               \
        const long vectors_ = cols / SOFTMAX_VEC;                                                   \
        for (long v_ = (begin); v_ < vectors_; v_ += (step)) {                                      \
            const long c = v_ * SOFTMAX_VEC;                                                        \
            body_vec                                                                                \
        }                                                                                           \
        for (long c = vectors_ * SOFTMAX_VEC + (begin); c < cols; c += (step)) {                    \
            body_scalar                                                                             \
        }                                                                                           \
    }

// Row statistics of the forward pass for one work-item's share: the running max, then the sum of
// e^(x - row_max).
#define SOFTMAX_LOCAL_MAX(begin, step, in, result)                                                  \
    {                                                                                               \
        sm_vec mv = (sm_vec)(-INFINITY);                                                            \
        float ms = -INFINITY;                                                                       \
        SOFTMAX_WALK(begin, step, { mv = fmax(mv, SM_VLOAD((in) + c)); }, { ms = fmax(ms, (in)[c]); }) \
        result = fmax(sm_hmax(mv), ms);                                                             \
    }
#define SOFTMAX_LOCAL_SUM_EXP(begin, step, in, row_max, result)                                     \
    {                                                                                               \
        sm_vec sv = (sm_vec)(0.0f);                                                                 \
        float ss = 0.0f;                                                                            \
        SOFTMAX_WALK(begin, step, { sv += exp(SM_VLOAD((in) + c) - (row_max)); },                   \
                     { ss += exp((in)[c] - (row_max)); })                                           \
        result = sm_hsum(sv) + ss;                                                                  \
    }
#define SOFTMAX_WRITE(begin, step, in, out, row_max, total)                                         \
    if (log_softmax) {                                                                              \
        /* (x - max) - log(total), never x - (max + log(total)): the sum rounds away log(total)  \
           when max is large (1000 + 6.9 loses ~3e-5) or huge (-1e30 + 6.9 == -1e30). */          \
        const float log_total = log(total);                                                         \
        SOFTMAX_WALK(begin, step, { SM_VSTORE((SM_VLOAD((in) + c) - (row_max)) - log_total, (out) + c); }, \
                     { (out)[c] = ((in)[c] - (row_max)) - log_total; })                             \
    } else {                                                                                        \
        SOFTMAX_WALK(begin, step, { SM_VSTORE(exp(SM_VLOAD((in) + c) - (row_max)) / (total), (out) + c); }, \
                     { (out)[c] = exp((in)[c] - (row_max)) / (total); })                            \
    }

__kernel __attribute__((reqd_work_group_size(SOFTMAX_WG, 1, 1))) void softmax_rows(
    __global const float* x, __global float* y, const long cols, const int log_softmax) {
    __local float scratch[SOFTMAX_WG];
    const long row = get_group_id(0);
    const int lid = get_local_id(0);
    __global const float* in = x + row * cols;
    __global float* out = y + row * cols;

    float m;
    SOFTMAX_LOCAL_MAX(lid, SOFTMAX_WG, in, m)
    scratch[lid] = m;
    SOFTMAX_TREE(scratch, lid, fmax)
    const float row_max = scratch[0];
    barrier(CLK_LOCAL_MEM_FENCE);  // everyone has read scratch[0] before it is reused

    float s;
    SOFTMAX_LOCAL_SUM_EXP(lid, SOFTMAX_WG, in, row_max, s)
    scratch[lid] = s;
    SOFTMAX_TREE(scratch, lid, softmax_add)
    const float total = scratch[0];

    SOFTMAX_WRITE(lid, SOFTMAX_WG, in, out, row_max, total)
}

__kernel void softmax_rows_small(__global const float* x, __global float* y, const long rows,
                                 const long cols, const int log_softmax) {
    const long row = get_global_id(0);
    if (row >= rows) return;
    __global const float* in = x + row * cols;
    __global float* out = y + row * cols;
    float row_max, total;
    SOFTMAX_LOCAL_MAX(0, 1, in, row_max)
    SOFTMAX_LOCAL_SUM_EXP(0, 1, in, row_max, total)
    SOFTMAX_WRITE(0, 1, in, out, row_max, total)
}

// Backward: s = sum(dy * y) (softmax) or sum(dy) (log-softmax) over the row, then the write pass.
#define SOFTMAX_LOCAL_GRAD_SUM(begin, step, yr, dyr, result)                                        \
    {                                                                                               \
        sm_vec sv = (sm_vec)(0.0f);                                                                 \
        float ss = 0.0f;                                                                            \
        if (log_softmax) {                                                                          \
            SOFTMAX_WALK(begin, step, { sv += SM_VLOAD((dyr) + c); }, { ss += (dyr)[c]; })          \
        } else {                                                                                    \
            SOFTMAX_WALK(begin, step, { sv += SM_VLOAD((dyr) + c) * SM_VLOAD((yr) + c); },          \
                         { ss += (dyr)[c] * (yr)[c]; })                                             \
        }                                                                                           \
        result = sm_hsum(sv) + ss;                                                                  \
    }
#define SOFTMAX_GRAD_WRITE(begin, step, yr, dyr, dxr, total)                                        \
    if (log_softmax) {                                                                              \
        SOFTMAX_WALK(begin, step,                                                                   \
                     { SM_VSTORE(SM_VLOAD((dyr) + c) - exp(SM_VLOAD((yr) + c)) * (total), (dxr) + c); }, \
                     { (dxr)[c] = (dyr)[c] - exp((yr)[c]) * (total); })                             \
    } else {                                                                                        \
        SOFTMAX_WALK(begin, step,                                                                   \
                     { SM_VSTORE(SM_VLOAD((yr) + c) * (SM_VLOAD((dyr) + c) - (total)), (dxr) + c); }, \
                     { (dxr)[c] = (yr)[c] * ((dyr)[c] - (total)); })                                \
    }

__kernel __attribute__((reqd_work_group_size(SOFTMAX_WG, 1, 1))) void softmax_backward_rows(
    __global const float* y, __global const float* dy, __global float* dx, const long cols,
    const int log_softmax) {
    __local float scratch[SOFTMAX_WG];
    const long row = get_group_id(0);
    const int lid = get_local_id(0);
    __global const float* yr = y + row * cols;
    __global const float* dyr = dy + row * cols;
    __global float* dxr = dx + row * cols;

    float s;
    SOFTMAX_LOCAL_GRAD_SUM(lid, SOFTMAX_WG, yr, dyr, s)
    scratch[lid] = s;
    SOFTMAX_TREE(scratch, lid, softmax_add)
    const float total = scratch[0];

    SOFTMAX_GRAD_WRITE(lid, SOFTMAX_WG, yr, dyr, dxr, total)
}

__kernel void softmax_backward_rows_small(__global const float* y, __global const float* dy,
                                          __global float* dx, const long rows, const long cols,
                                          const int log_softmax) {
    const long row = get_global_id(0);
    if (row >= rows) return;
    __global const float* yr = y + row * cols;
    __global const float* dyr = dy + row * cols;
    __global float* dxr = dx + row * cols;
    float total;
    SOFTMAX_LOCAL_GRAD_SUM(0, 1, yr, dyr, total)
    SOFTMAX_GRAD_WRITE(0, 1, yr, dyr, dxr, total)
}

// ---- Cross-entropy: fused log-softmax + negative log-likelihood ---------------------------------
// losses[r] = logsumexp(logits[r, :]) - logits[r, label], label = labels[r] (int64); NaN for a
// label outside [0, cols). Backward: dlogits[r, c] = dlosses[r] * (softmax[c] - (c == label)),
// all NaN for an invalid label. Same two shapes and row walks as softmax above.

inline int cross_entropy_label_ok(long label, long cols) { return label >= 0 && label < cols; }

__kernel __attribute__((reqd_work_group_size(SOFTMAX_WG, 1, 1))) void cross_entropy_rows(
    __global const float* logits, __global const long* labels, __global float* losses, const long cols) {
    __local float scratch[SOFTMAX_WG];
    const long row = get_group_id(0);
    const int lid = get_local_id(0);
    __global const float* in = logits + row * cols;

    float m;
    SOFTMAX_LOCAL_MAX(lid, SOFTMAX_WG, in, m)
    scratch[lid] = m;
    SOFTMAX_TREE(scratch, lid, fmax)
    const float row_max = scratch[0];
    barrier(CLK_LOCAL_MEM_FENCE);

    float s;
    SOFTMAX_LOCAL_SUM_EXP(lid, SOFTMAX_WG, in, row_max, s)
    scratch[lid] = s;
    SOFTMAX_TREE(scratch, lid, softmax_add)
    if (lid == 0) {
        const long label = labels[row];
        losses[row] = cross_entropy_label_ok(label, cols) ? log(scratch[0]) + row_max - in[label] : NAN;
    }
}

__kernel void cross_entropy_rows_small(__global const float* logits, __global const long* labels,
                                       __global float* losses, const long rows, const long cols) {
    const long row = get_global_id(0);
    if (row >= rows) return;
    __global const float* in = logits + row * cols;
    float row_max, total;
    SOFTMAX_LOCAL_MAX(0, 1, in, row_max)
    SOFTMAX_LOCAL_SUM_EXP(0, 1, in, row_max, total)
    const long label = labels[row];
    losses[row] = cross_entropy_label_ok(label, cols) ? log(total) + row_max - in[label] : NAN;
}

// The write pass: out[c] = e^(x[c] - row_max) * scale with scale = dloss / sum (NaN for an invalid
// label, which makes the whole row NaN); the label's element then gets -dloss.
#define CROSS_ENTROPY_GRAD_WRITE(begin, step, in, out, row_max, scale)                              \
    SOFTMAX_WALK(begin, step, { SM_VSTORE(exp(SM_VLOAD((in) + c) - (row_max)) * (scale), (out) + c); }, \
                 { (out)[c] = exp((in)[c] - (row_max)) * (scale); })

__kernel __attribute__((reqd_work_group_size(SOFTMAX_WG, 1, 1))) void cross_entropy_backward_rows(
    __global const float* logits, __global const long* labels, __global const float* dlosses,
    __global float* dlogits, const long cols) {
    __local float scratch[SOFTMAX_WG];
    const long row = get_group_id(0);
    const int lid = get_local_id(0);
    __global const float* in = logits + row * cols;
    __global float* out = dlogits + row * cols;

    float m;
    SOFTMAX_LOCAL_MAX(lid, SOFTMAX_WG, in, m)
    scratch[lid] = m;
    SOFTMAX_TREE(scratch, lid, fmax)
    const float row_max = scratch[0];
    barrier(CLK_LOCAL_MEM_FENCE);

    float s;
    SOFTMAX_LOCAL_SUM_EXP(lid, SOFTMAX_WG, in, row_max, s)
    scratch[lid] = s;
    SOFTMAX_TREE(scratch, lid, softmax_add)
    const long label = labels[row];
    const int ok = cross_entropy_label_ok(label, cols);
    const float dloss = dlosses[row];
    const float scale = ok ? dloss / scratch[0] : NAN;
    CROSS_ENTROPY_GRAD_WRITE(lid, SOFTMAX_WG, in, out, row_max, scale)
    // The label's element may have been written by another work-item: order the two writes.
    barrier(CLK_GLOBAL_MEM_FENCE);
    if (lid == 0 && ok) out[label] -= dloss;
}

__kernel void cross_entropy_backward_rows_small(__global const float* logits, __global const long* labels,
                                                __global const float* dlosses, __global float* dlogits,
                                                const long rows, const long cols) {
    const long row = get_global_id(0);
    if (row >= rows) return;
    __global const float* in = logits + row * cols;
    __global float* out = dlogits + row * cols;
    float row_max, total;
    SOFTMAX_LOCAL_MAX(0, 1, in, row_max)
    SOFTMAX_LOCAL_SUM_EXP(0, 1, in, row_max, total)
    const long label = labels[row];
    const int ok = cross_entropy_label_ok(label, cols);
    const float dloss = dlosses[row];
    const float scale = ok ? dloss / total : NAN;
    CROSS_ENTROPY_GRAD_WRITE(0, 1, in, out, row_max, scale)
    if (ok) out[label] -= dloss;
}
