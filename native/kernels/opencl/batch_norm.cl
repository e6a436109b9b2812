// batch_norm.cl: batch normalization over [batch, channels, spatial] (kn_batch_norm_f32,
// kn_batch_norm_backward_f32).
//
// Forward, training: per channel, mean over the m = batch * spatial values, then the biased
// variance as the mean of squared deviations from it (two passes over x, never E[x^2] - E[x]^2,
// which cancels catastrophically for values around 1e4 with a variance around 1), invstd =
// 1 / sqrt(var + eps), the running statistics updated as PyTorch does (unbiased variance); then
// y = (x - mean) * (invstd * gamma) + beta elementwise (never x * scale + shift, which cancels the
// same way). Inference: the statistics are running_mean and 1 / sqrt(running_var + eps).
// Backward: per channel dbeta = sum dy and dgamma = invstd * sum dy * (x - mean) in one pass, then
// elementwise dx = gamma * invstd / m * (m * dy - dbeta - xhat * dgamma) (training) or
// dy * gamma * invstd (inference).
// Technique: the per-channel passes are one work-group of BN_WG work-items per channel; each
// work-item keeps a running sum over its strided share of each image's plane (consecutive
// work-items read consecutive addresses), adds the per-image sums with Kahan compensation, and
// the work-group meets in a local-memory tree: no atomics, bitwise reproducible. Planes shorter than the work-group (1-D
// batch norm, spatial = 1) are walked as one flattened batch * spatial axis instead, with the
// running sum restarted every 64 terms. The elementwise passes are one work-item per element on a
// 3-D NDRange (x = position in the plane, y = channel, z = image), so no work-item divides.
// Napkin math: training forward reads x twice in the statistics kernel and once more to normalise
// (a channel's 64 x 28 x 28 x 4 B = 200 KB stays in L2 between its two passes) and writes y once;
// backward reads x and dy twice and writes dx once. Memory bound. One work-group per channel is
// C work-groups: enough for a CPU, thin for a large GPU with few channels.
// CPUs (PoCL) take another shape of the same passes, through the tunables: one work-item per
// channel streaming its planes in float16 vectors (BN_WG = 1, BN_VEC = 16), and 1024 elements per
// work-item in the elementwise passes, because PoCL vectorises across work-items only when the
// kernel body has no loop (the per-element shape ran at 0.6-0.9 GB/s there).
// Measured through libkernels on PoCL 3.1 (2 cores of an AMD EPYC, shared with other jobs),
// 64 x 32 x 784, GB/s of compulsory traffic (x in, y out; x, dy in, dx out) per CPU-second of the
// process and (wall), best of 2 runs: training forward 27.5 (29.7, 0.43 ms), inference forward
// 84.5 (84.5, 0.15 ms), training backward 37.3 (39.8, 0.48 ms); a device-to-device copy of x in
// the same run: 100. 1-D batch norm (256 x 512, spatial 1) is the weak case: 1.3-2.1 / 2.8-2.9 GB/s
// (0.67 / 0.84 ms), each channel's work-item reads one float per 2 KB row.

#ifndef BN_WG
#define BN_WG 256   // work-items per channel in the statistics passes (a power of two; CPUs: 1)
#endif
#ifndef BN_VEC
#define BN_VEC 1    // vector width of the plane walks (CPUs: the SIMD width; GPUs: 1, coalesced)
#endif
#ifndef BN_CHUNK
#define BN_CHUNK 1  // elements of one plane per work-item in the elementwise passes, a multiple of
                    // BN_VEC (GPUs: 1; CPUs: 1024, so the channel's division and the per-channel
                    // loads are paid once per 1024 elements, not per element)
#endif
#if (BN_WG & (BN_WG - 1)) != 0 || BN_CHUNK % BN_VEC != 0
#error "batch_norm.cl: BN_WG must be a power of two and BN_CHUNK a multiple of BN_VEC"
#endif

#define BN_CAT_(a, b) a##b
#define BN_CAT(a, b) BN_CAT_(a, b)
#if BN_VEC == 1
typedef float bn_vec;
#define BN_VLOAD(p) (*(p))
#define BN_VSTORE(v, p) (*(p) = (v))
#else
typedef BN_CAT(float, BN_VEC) bn_vec;
#define BN_VLOAD(p) BN_CAT(vload, BN_VEC)(0, (p))
#define BN_VSTORE(v, p) BN_CAT(vstore, BN_VEC)((v), 0, (p))
// Horizontal sum of a vector, pairwise.
inline float bn_hsum(const bn_vec v) {
    float lanes[BN_VEC];
    BN_VSTORE(v, lanes);
    for (int w = BN_VEC / 2; w > 0; w /= 2)
        for (int l = 0; l < w; ++l) lanes[l] += lanes[l + w];
    return lanes[0];
}
#endif

#define BN_SUM 0                 // sum x
#define BN_SQUARED_DEVIATIONS 1  // sum (x - mean)^2
#define BN_GRADIENT_SUMS 2       // (sum dy, sum dy * (x - mean))

// The terms of element(s) at p (a scalar or a BN_VEC vector), as two accumulators a and b.
#define BN_TERMS(what, TYPE, LOAD, x, dy, p, mean, a, b)   \
    if ((what) == BN_SUM) {                                \
        a += LOAD(x + (p));                                \
    } else if ((what) == BN_SQUARED_DEVIATIONS) {          \
        const TYPE d_ = LOAD(x + (p)) - (mean);            \
        a += d_ * d_;                                      \
    } else {                                               \
        const TYPE g_ = LOAD(dy + (p));                    \
        a += g_;                                           \
        b += g_ * (LOAD(x + (p)) - (mean));                \
    }
#define BN_SCALAR_LOAD(p) (*(p))

// total += v with Kahan compensation (comp carries the lost low bits): the per-image (or per
// 64-term block) sums of a work-item are added this way, so a CPU work-item that owns a whole
// channel of 20000 one-element planes does not build a 20000-term running float sum. Exact
// algebra is kept: the kernels are built without -cl-unsafe-math-optimizations.
inline void bn_kahan_add(float2* total, float2* comp, const float2 v) {
    const float2 y = v - *comp;
    const float2 t = *total + y;
    *comp = (t - *total) - y;
    *total = t;
}

// This work-item's share of channel c's sums (what is a literal, so the branches fold away).
// Planes at least BN_WG long: work-item lid walks positions lid, lid + BN_WG, ... of every image's
// plane (BN_WG == 1: the whole plane in BN_VEC-wide vectors plus a scalar tail), one running sum
// per image, the images' sums added up.
inline float2 bn_partial_sums(const int what, __global const float* x, __global const float* dy, const float mean,
                              const long batch, const long channels, const long spatial, const long c,
                              const int lid) {
    float2 total = (float2)(0.0f), comp = (float2)(0.0f);
    if (spatial >= BN_WG) {
        for (long n = 0; n < batch; ++n) {
            const long base = (n * channels + c) * spatial;
            __global const float* xp = x + base;
            __global const float* dyp = dy + base;
#if BN_WG == 1 && BN_VEC > 1
            float a = 0.0f, b = 0.0f;
            long s = 0;
            if (spatial >= BN_VEC) {  // short planes (1-D batch norm) skip the vectors and their hsum
                bn_vec va = (bn_vec)(0.0f), vb = (bn_vec)(0.0f);
                for (; s + BN_VEC <= spatial; s += BN_VEC) { BN_TERMS(what, bn_vec, BN_VLOAD, xp, dyp, s, mean, va, vb) }
                a = bn_hsum(va);
                b = bn_hsum(vb);
            }
            for (; s < spatial; ++s) { BN_TERMS(what, float, BN_SCALAR_LOAD, xp, dyp, s, mean, a, b) }
#else
            float a = 0.0f, b = 0.0f;
            for (long s = lid; s < spatial; s += BN_WG) { BN_TERMS(what, float, BN_SCALAR_LOAD, xp, dyp, s, mean, a, b) }
#endif
            bn_kahan_add(&total, &comp, (float2)(a, b));
        }
    } else {
        // Short planes (1-D batch norm): one flattened batch * spatial axis, the running sum
        // restarted every 64 terms.
        const long m = batch * spatial;
        float a = 0.0f, b = 0.0f;
        int terms = 0;
        for (long j = lid; j < m; j += BN_WG) {
            const long n = j / spatial;
            const long i = (n * channels + c) * spatial + (j - n * spatial);
            BN_TERMS(what, float, BN_SCALAR_LOAD, x, dy, i, mean, a, b)
            if (++terms == 64) {
                bn_kahan_add(&total, &comp, (float2)(a, b));
                a = b = 0.0f;
                terms = 0;
            }
        }
        bn_kahan_add(&total, &comp, (float2)(a, b));
    }
    return total;
}

// A work-group tree over BN_WG values; every work-item gets the total.
inline float2 bn_group_sum(const float2 v, __local float2* scratch) {
    const int lid = get_local_id(0);
    scratch[lid] = v;
    for (int s = BN_WG / 2; s > 0; s /= 2) {
        barrier(CLK_LOCAL_MEM_FENCE);
        if (lid < s) scratch[lid] += scratch[lid + s];
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    const float2 total = scratch[0];
    barrier(CLK_LOCAL_MEM_FENCE);  // everyone has read scratch[0] before the next tree rewrites it
    return total;
}

// Training statistics, one work-group per channel. running_mean / running_var are updated when
// has_running (otherwise they are bound to x and never touched).
__kernel __attribute__((reqd_work_group_size(BN_WG, 1, 1))) void batch_norm_statistics(
    __global const float* x, __global float* mean_out, __global float* invstd_out, __global float* running_mean,
    __global float* running_var, const int has_running, const long batch, const long channels, const long spatial,
    const float eps, const float momentum) {
    __local float2 scratch[BN_WG];
    const long c = get_group_id(0);
    const int lid = get_local_id(0);
    const long m = batch * spatial;
    const float mean = bn_group_sum(bn_partial_sums(BN_SUM, x, x, 0.0f, batch, channels, spatial, c, lid), scratch).x /
                       (float)m;
    const float var =
        bn_group_sum(bn_partial_sums(BN_SQUARED_DEVIATIONS, x, x, mean, batch, channels, spatial, c, lid), scratch).x /
        (float)m;
    if (lid != 0) return;
    mean_out[c] = mean;
    invstd_out[c] = 1.0f / sqrt(var + eps);
    if (has_running) {
        const float unbiased = m > 1 ? var * ((float)m / (float)(m - 1)) : var;
        running_mean[c] = (1.0f - momentum) * running_mean[c] + momentum * mean;
        running_var[c] = (1.0f - momentum) * running_var[c] + momentum * unbiased;
    }
}

// Inference statistics: mean_out = running_mean, invstd_out = 1 / sqrt(running_var + eps).
__kernel void batch_norm_inference_statistics(__global const float* running_mean, __global const float* running_var,
                                              __global float* mean_out, __global float* invstd_out,
                                              const long channels, const float eps) {
    const long c = get_global_id(0);
    if (c >= channels) return;
    mean_out[c] = running_mean[c];
    invstd_out[c] = 1.0f / sqrt(running_var[c] + eps);
}

// Elementwise passes: NDRange x = chunk of a plane, y = channel (from first_channel), z = image
// (from first_image); the host splits y and z at 65535 work-group rows. Work-item (x, c, n)
// handles positions [x * BN_CHUNK, (x + 1) * BN_CHUNK) of plane (n, c) in BN_VEC-wide vectors
// plus a scalar tail; `channel_loads` reads its channel's parameters once. No division anywhere,
// so 1-D batch norm (spatial = 1, one element per work-item) stays cheap.
#define BN_PLANE_WALK(channel_loads, vector_body, scalar_body)                         \
    const long s0 = (long)get_global_id(0) * BN_CHUNK;                                 \
    const long c = first_channel + get_global_id(1);                                   \
    const long n = first_image + get_global_id(2);                                     \
    if (s0 >= spatial || c >= channels || n >= batch) return;                          \
    const long s_end = min(spatial, s0 + BN_CHUNK);                                    \
    const long base = (n * channels + c) * spatial;                                    \
    channel_loads                                                                      \
    long s = s0;                                                                       \
    for (; s + BN_VEC <= s_end; s += BN_VEC) { const long i = base + s; vector_body }  \
    for (; s < s_end; ++s) { const long i = base + s; scalar_body }
#define BN_SCALAR_STORE(v, p) (*(p) = (v))

// y = (x - mean) * (invstd * gamma) + beta.
__kernel void batch_norm_normalize(__global const float* x, __global float* y, __global const float* mean,
                                   __global const float* invstd, __global const float* gamma,
                                   __global const float* beta, const long batch, const long channels,
                                   const long spatial, const long first_channel, const long first_image) {
#define BN_NORMALIZE(TYPE, LOAD, STORE) STORE((LOAD(x + i) - (TYPE)(mu)) * (TYPE)(scale) + (TYPE)(shift), y + i);
    BN_PLANE_WALK(const float mu = mean[c]; const float scale = invstd[c] * gamma[c]; const float shift = beta[c];,
                  BN_NORMALIZE(bn_vec, BN_VLOAD, BN_VSTORE), BN_NORMALIZE(float, BN_SCALAR_LOAD, BN_SCALAR_STORE))
#undef BN_NORMALIZE
}

// dbeta = sum dy, dgamma = invstd * sum dy * (x - mean): one work-group per channel.
__kernel __attribute__((reqd_work_group_size(BN_WG, 1, 1))) void batch_norm_backward_reduce(
    __global const float* x, __global const float* dy, __global const float* mean, __global const float* invstd,
    __global float* dgamma, __global float* dbeta, const long batch, const long channels, const long spatial) {
    __local float2 scratch[BN_WG];
    const long c = get_group_id(0);
    const int lid = get_local_id(0);
    const float2 sums =
        bn_group_sum(bn_partial_sums(BN_GRADIENT_SUMS, x, dy, mean[c], batch, channels, spatial, c, lid), scratch);
    if (lid != 0) return;
    dbeta[c] = sums.x;
    dgamma[c] = sums.y * invstd[c];
}

// dx per element, after batch_norm_backward_reduce wrote dgamma and dbeta; m = batch * spatial.
//   training:  dx = gamma * invstd / m * ((m * dy - dbeta) - xhat * dgamma)
//   inference: dx = dy * gamma * invstd
__kernel void batch_norm_backward_data(__global const float* x, __global const float* dy, __global const float* gamma,
                                       __global const float* mean, __global const float* invstd,
                                       __global const float* dgamma, __global const float* dbeta, __global float* dx,
                                       const long batch, const long channels, const long spatial, const float m,
                                       const int training, const long first_channel, const long first_image) {
#define BN_DX(TYPE, LOAD, STORE)                                                                            \
    if (training) {                                                                                         \
        const TYPE xhat = (LOAD(x + i) - (TYPE)(mu)) * (TYPE)(inv);                                         \
        STORE((TYPE)(scale / m) * (((TYPE)(m) * LOAD(dy + i) - (TYPE)(db)) - xhat * (TYPE)(dg)), dx + i);  \
    } else {                                                                                                \
        STORE(LOAD(dy + i) * (TYPE)(scale), dx + i);                                                        \
    }
    BN_PLANE_WALK(const float mu = mean[c]; const float inv = invstd[c]; const float scale = gamma[c] * inv;
                  const float db = dbeta[c]; const float dg = dgamma[c];,
                  BN_DX(bn_vec, BN_VLOAD, BN_VSTORE), BN_DX(float, BN_SCALAR_LOAD, BN_SCALAR_STORE))
#undef BN_DX
}

#undef BN_PLANE_WALK
#undef BN_SCALAR_STORE
#undef BN_SCALAR_LOAD
#undef BN_TERMS
