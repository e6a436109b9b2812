// pool.cl: 2-D max and average pooling in NCHW, forward and backward (kn_pool2d_f32,
// kn_pool2d_backward_f32).
//
// Semantics: padding never takes part (as in PyTorch, 2 pad <= kernel, so every window holds a real
// element). MAX keeps the first maximum in row-major window order, NaN counting as the maximum
// (the first NaN wins and sticks), and records its plane position ih * in_width + iw in indices.
// AVG divides the window's sum by kernel_height * kernel_width (count_include_pad) or by the
// number of real elements. The backward is a gather: each dx element receives, from the windows
// that cover it (oh in [ceil((ih + pad - k + 1) / s), floor((ih + pad) / s)], likewise ow) in
// row-major window order, the dy of each window whose recorded winner it is (MAX) or
// dy / divisor (AVG). No atomics, so overlapping windows (stride < kernel) give reproducible sums.
//
// Technique: two layouts of the same arithmetic, picked by POOL_ROWS (the host sets it per device
// type); both add the same terms in the same order, so they return the same bits.
//   - GPUs, one work-item per element: forward per output, backward per input element, NDRange
//     x = position within a plane, y = plane (n * channels + c): consecutive work-items touch
//     consecutive addresses.
//   - CPUs (PoCL), one work-item per row of a plane: PoCL runs a work-group as a loop and only
//     vectorises it when the kernel body has no loop, which a window walk always has; per element
//     the window setup (two divisions) then cost more than the pooling. A row pays it once: the
//     forward streams the taps (kh, kw) past a tile of the row's outputs kept in private arrays,
//     the backward zeroes its dx row and adds each covering window's contribution to the elements
//     it belongs to (each dx element is owned by one work-item).
// NDRange y = plane from first_plane; the host splits the planes so that no launch exceeds 65535
// work-group rows. Plane positions are int32 (the API and the host reject larger planes), plane
// indices 64-bit.
// Napkin math: the forward reads each input about (k_h / s_h) * (k_w / s_w) times, mostly from
// cache, and writes one float (+ one int) per output: memory bound. MNIST's 2x2 / stride 2 pool of
// 64 x 32 x 28 x 28 reads 6.4 MB and writes 1.6 MB (+ 1.6 MB indices).
// Measured through libkernels on PoCL 3.1 (2 cores of an AMD EPYC, shared with other jobs), 2x2 /
// stride 2 on 64 x 32 x 28 x 28, GB/s of compulsory traffic (x + y + indices; dy + indices + dx),
// per CPU-second of the process and (wall), best of 2 runs: max forward 4.9 (4.9, 2.0 ms),
// max backward 10.6 (6.3, 1.5 ms), avg forward 7.4 (7.4, 1.1 ms), avg backward 4.4 (2.8,
// 2.9 ms); a device-to-device copy of x in the same runs: 55-104. The per-element layout on the
// same CPU: max forward 7.4 ms, max backward 32 ms (two divisions per element). What is left is
// the scalar window walk (~5 ns of CPU per max output), not memory.

typedef struct {
    int batch, channels, in_h, in_w, k_h, k_w, stride_h, stride_w, pad_h, pad_w, out_h, out_w;
    int count_include_pad;
    int in_hw, out_hw;
} pool_geometry;

// The int16 argument holds (batch, channels, in_height, in_width, kernel_height, kernel_width,
// stride h/w, pad h/w, out_height, out_width, count_include_pad, 0, 0, 0).
inline pool_geometry pool_unpack(const int16 v) {
    pool_geometry g;
    g.batch = v.s0; g.channels = v.s1; g.in_h = v.s2; g.in_w = v.s3; g.k_h = v.s4; g.k_w = v.s5;
    g.stride_h = v.s6; g.stride_w = v.s7; g.pad_h = v.s8; g.pad_w = v.s9; g.out_h = v.sa; g.out_w = v.sb;
    g.count_include_pad = v.sc;
    g.in_hw = g.in_h * g.in_w;
    g.out_hw = g.out_h * g.out_w;
    return g;
}

// The window of output (oh, ow) clipped to the real input: rows [h_lo, h_hi), columns [w_lo, w_hi).
#define POOL_WINDOW(g, oh, ow)                                          \
    const int ih0_ = (oh) * (g).stride_h - (g).pad_h;                   \
    const int iw0_ = (ow) * (g).stride_w - (g).pad_w;                   \
    const int h_lo = max(ih0_, 0), h_hi = min(ih0_ + (g).k_h, (g).in_h); \
    const int w_lo = max(iw0_, 0), w_hi = min(iw0_ + (g).k_w, (g).in_w);

inline float pool_divisor(const pool_geometry g, const int oh, const int ow) {
    if (g.count_include_pad) return (float)(g.k_h * g.k_w);
    POOL_WINDOW(g, oh, ow)
    return (float)((h_hi - h_lo) * (w_hi - w_lo));
}

// The outputs whose windows cover input row i: [lo, hi] (empty when lo > hi).
inline int pool_first_window(const int i, const int pad, const int k, const int stride) {
    const int t = i + pad - k + 1;
    return t <= 0 ? 0 : (t + stride - 1) / stride;
}
inline int pool_last_window(const int i, const int pad, const int stride, const int out) {
    return min(out - 1, (i + pad) / stride);
}

#ifndef POOL_ROWS
#define POOL_ROWS 0  // 1: one work-item per row of a plane (CPUs), 0: one per element (GPUs)
#endif

#if POOL_ROWS
// ---- One work-item per row (CPUs) -------------------------------------------------------------
// NDRange x = row (oh forward, ih backward), y = plane.

#ifndef POOL_ROW_TILE
#define POOL_ROW_TILE 64  // outputs of a row kept in registers while the taps stream past
#endif

// The outputs t in [0, count) of a row tile whose tap column iw0 + t * stride is a real column:
// [lo, hi). Only the ends can fall into the padding (pad <= kernel / 2), so the range is found by
// stepping over at most pad / stride + 1 outputs at each end, without a division.
inline void pool_real_range(const int iw0, const int stride, const int width, const int count, int* lo, int* hi) {
    int a = 0, b = count;
    while (a < b && iw0 + a * stride < 0) ++a;
    while (b > a && iw0 + (b - 1) * stride >= width) --b;
    *lo = a;
    *hi = b;
}

// Forward rows: the taps (kh, kw) in row-major order outermost, the tile's outputs innermost, so
// each window still sees its real elements in row-major order (first maximum, first NaN; the same
// sums in the same order as the per-element kernels).
__kernel void pool2d_max(__global const float* x, __global float* y, __global int* indices, const int has_indices,
                         const int16 geometry, const long first_plane) {
    const pool_geometry g = pool_unpack(geometry);
    const int oh = get_global_id(0);
    const long plane = first_plane + get_global_id(1);
    if (oh >= g.out_h || plane >= (long)g.batch * g.channels) return;
    __global const float* src = x + plane * g.in_hw;
    const long o = plane * g.out_hw + oh * g.out_w;
    const int ih0 = oh * g.stride_h - g.pad_h;
    for (int t0 = 0; t0 < g.out_w; t0 += POOL_ROW_TILE) {
        const int count = min(POOL_ROW_TILE, g.out_w - t0);
        float best[POOL_ROW_TILE];
        int at[POOL_ROW_TILE];
        for (int t = 0; t < count; ++t) {
            best[t] = -INFINITY;
            at[t] = -1;  // no real element seen yet
        }
        for (int ih = max(ih0, 0); ih < min(ih0 + g.k_h, g.in_h); ++ih) {
            __global const float* row = src + ih * g.in_w;
            for (int kw = 0; kw < g.k_w; ++kw) {
                const int iw0 = t0 * g.stride_w - g.pad_w + kw;
                int lo, hi;
                pool_real_range(iw0, g.stride_w, g.in_w, count, &lo, &hi);
                for (int t = lo; t < hi; ++t) {
                    const int iw = iw0 + t * g.stride_w;
                    const float v = row[iw];
                    const float b = best[t];
                    const int take = at[t] < 0 || v > b || (v != v && b == b);
                    best[t] = take ? v : b;
                    at[t] = take ? ih * g.in_w + iw : at[t];
                }
            }
        }
        for (int t = 0; t < count; ++t) y[o + t0 + t] = best[t];
        if (has_indices)
            for (int t = 0; t < count; ++t) indices[o + t0 + t] = at[t];
    }
}

__kernel void pool2d_avg(__global const float* x, __global float* y, const int16 geometry, const long first_plane) {
    const pool_geometry g = pool_unpack(geometry);
    const int oh = get_global_id(0);
    const long plane = first_plane + get_global_id(1);
    if (oh >= g.out_h || plane >= (long)g.batch * g.channels) return;
    __global const float* src = x + plane * g.in_hw;
    const long o = plane * g.out_hw + oh * g.out_w;
    const int ih0 = oh * g.stride_h - g.pad_h;
    const int h_lo = max(ih0, 0), h_hi = min(ih0 + g.k_h, g.in_h);
    for (int t0 = 0; t0 < g.out_w; t0 += POOL_ROW_TILE) {
        const int count = min(POOL_ROW_TILE, g.out_w - t0);
        float sum[POOL_ROW_TILE];
        for (int t = 0; t < count; ++t) sum[t] = 0.0f;
        for (int ih = h_lo; ih < h_hi; ++ih) {
            __global const float* row = src + ih * g.in_w;
            for (int kw = 0; kw < g.k_w; ++kw) {
                const int iw0 = t0 * g.stride_w - g.pad_w + kw;
                int lo, hi;
                pool_real_range(iw0, g.stride_w, g.in_w, count, &lo, &hi);
                for (int t = lo; t < hi; ++t) sum[t] += row[iw0 + t * g.stride_w];
            }
        }
        for (int t = 0; t < count; ++t) {
            const int iw0 = (t0 + t) * g.stride_w - g.pad_w;
            const int cols = min(iw0 + g.k_w, g.in_w) - max(iw0, 0);
            const float divisor = g.count_include_pad ? (float)(g.k_h * g.k_w) : (float)((h_hi - h_lo) * cols);
            y[o + t0 + t] = sum[t] / divisor;
        }
    }
}

__kernel void pool2d_max_backward(__global const float* dy, __global const int* indices, __global float* dx,
                                  const int16 geometry, const long first_plane) {
    const pool_geometry g = pool_unpack(geometry);
    const int ih = get_global_id(0);
    const long plane = first_plane + get_global_id(1);
    if (ih >= g.in_h || plane >= (long)g.batch * g.channels) return;
    __global float* row = dx + plane * g.in_hw + ih * g.in_w;
    for (int iw = 0; iw < g.in_w; ++iw) row[iw] = 0.0f;
    __global const float* grad = dy + plane * g.out_hw;
    __global const int* winner = indices + plane * g.out_hw;
    const int oh_lo = pool_first_window(ih, g.pad_h, g.k_h, g.stride_h);
    const int oh_hi = pool_last_window(ih, g.pad_h, g.stride_h, g.out_h);
    const int row_start = ih * g.in_w;
    for (int oh = oh_lo; oh <= oh_hi; ++oh) {
        for (int ow = 0, iw0 = -g.pad_w; ow < g.out_w; ++ow, iw0 += g.stride_w) {
            // The winner lies in this row and inside the window's columns (as the gather requires).
            const int col = winner[oh * g.out_w + ow] - row_start;
            if (col >= 0 && col < g.in_w && col >= iw0 && col < iw0 + g.k_w) row[col] += grad[oh * g.out_w + ow];
        }
    }
}

__kernel void pool2d_avg_backward(__global const float* dy, __global float* dx, const int16 geometry,
                                  const long first_plane) {
    const pool_geometry g = pool_unpack(geometry);
    const int ih = get_global_id(0);
    const long plane = first_plane + get_global_id(1);
    if (ih >= g.in_h || plane >= (long)g.batch * g.channels) return;
    __global float* row = dx + plane * g.in_hw + ih * g.in_w;
    for (int iw = 0; iw < g.in_w; ++iw) row[iw] = 0.0f;
    __global const float* grad = dy + plane * g.out_hw;
    const int oh_lo = pool_first_window(ih, g.pad_h, g.k_h, g.stride_h);
    const int oh_hi = pool_last_window(ih, g.pad_h, g.stride_h, g.out_h);
    for (int oh = oh_lo; oh <= oh_hi; ++oh) {
        for (int ow = 0, iw0 = -g.pad_w; ow < g.out_w; ++ow, iw0 += g.stride_w) {
            const float share = grad[oh * g.out_w + ow] / pool_divisor(g, oh, ow);
            for (int iw = max(iw0, 0); iw < min(iw0 + g.k_w, g.in_w); ++iw) row[iw] += share;
        }
    }
}

#else
// ---- One work-item per element (GPUs) ---------------------------------------------------------

// Max: the first maximum in row-major window order; NaN counts as the maximum and sticks.
inline void pool_max_window(const pool_geometry g, __global const float* src, const int oh, const int ow,
                            float* best_out, int* at_out) {
    POOL_WINDOW(g, oh, ow)
    int at = h_lo * g.in_w + w_lo;
    float best = src[at];
    for (int ih = h_lo; ih < h_hi; ++ih) {
        for (int iw = w_lo; iw < w_hi; ++iw) {
            const float v = src[ih * g.in_w + iw];
            // Strictly greater keeps the first maximum; a NaN replaces a number, never the reverse
            // (v > NaN is false), so the first NaN sticks. (v != v is isnan without a call.)
            if (v > best || (v != v && best == best)) {
                best = v;
                at = ih * g.in_w + iw;
            }
        }
    }
    *best_out = best;
    *at_out = at;
}

inline float pool_avg_window(const pool_geometry g, __global const float* src, const int oh, const int ow) {
    POOL_WINDOW(g, oh, ow)
    float sum = 0.0f;
    for (int ih = h_lo; ih < h_hi; ++ih)
        for (int iw = w_lo; iw < w_hi; ++iw) sum += src[ih * g.in_w + iw];
    const float divisor = g.count_include_pad ? (float)(g.k_h * g.k_w) : (float)((h_hi - h_lo) * (w_hi - w_lo));
    return sum / divisor;
}


__kernel void pool2d_max(__global const float* x, __global float* y, __global int* indices, const int has_indices,
                         const int16 geometry, const long first_plane) {
    const pool_geometry g = pool_unpack(geometry);
    const int p = get_global_id(0);
    const long plane = first_plane + get_global_id(1);
    if (p >= g.out_hw || plane >= (long)g.batch * g.channels) return;
    const int oh = p / g.out_w, ow = p - oh * g.out_w;
    float best;
    int at;
    pool_max_window(g, x + plane * g.in_hw, oh, ow, &best, &at);
    const long o = plane * g.out_hw + p;
    y[o] = best;
    if (has_indices) indices[o] = at;
}

__kernel void pool2d_avg(__global const float* x, __global float* y, const int16 geometry, const long first_plane) {
    const pool_geometry g = pool_unpack(geometry);
    const int p = get_global_id(0);
    const long plane = first_plane + get_global_id(1);
    if (p >= g.out_hw || plane >= (long)g.batch * g.channels) return;
    const int oh = p / g.out_w, ow = p - oh * g.out_w;
    y[plane * g.out_hw + p] = pool_avg_window(g, x + plane * g.in_hw, oh, ow);
}

__kernel void pool2d_max_backward(__global const float* dy, __global const int* indices, __global float* dx,
                                  const int16 geometry, const long first_plane) {
    const pool_geometry g = pool_unpack(geometry);
    const int q = get_global_id(0);
    const long plane = first_plane + get_global_id(1);
    if (q >= g.in_hw || plane >= (long)g.batch * g.channels) return;
    const int ih = q / g.in_w, iw = q - ih * g.in_w;
    const int oh_lo = pool_first_window(ih, g.pad_h, g.k_h, g.stride_h);
    const int oh_hi = pool_last_window(ih, g.pad_h, g.stride_h, g.out_h);
    const int ow_lo = pool_first_window(iw, g.pad_w, g.k_w, g.stride_w);
    const int ow_hi = pool_last_window(iw, g.pad_w, g.stride_w, g.out_w);
    __global const float* grad = dy + plane * g.out_hw;
    __global const int* winner = indices + plane * g.out_hw;
    float sum = 0.0f;
    for (int oh = oh_lo; oh <= oh_hi; ++oh)
        for (int ow = ow_lo; ow <= ow_hi; ++ow)
            if (winner[oh * g.out_w + ow] == q) sum += grad[oh * g.out_w + ow];
    dx[plane * g.in_hw + q] = sum;
}

__kernel void pool2d_avg_backward(__global const float* dy, __global float* dx, const int16 geometry,
                                  const long first_plane) {
    const pool_geometry g = pool_unpack(geometry);
    const int q = get_global_id(0);
    const long plane = first_plane + get_global_id(1);
    if (q >= g.in_hw || plane >= (long)g.batch * g.channels) return;
    const int ih = q / g.in_w, iw = q - ih * g.in_w;
    const int oh_lo = pool_first_window(ih, g.pad_h, g.k_h, g.stride_h);
    const int oh_hi = pool_last_window(ih, g.pad_h, g.stride_h, g.out_h);
    const int ow_lo = pool_first_window(iw, g.pad_w, g.k_w, g.stride_w);
    const int ow_hi = pool_last_window(iw, g.pad_w, g.stride_w, g.out_w);
    __global const float* grad = dy + plane * g.out_hw;
    float sum = 0.0f;
    for (int oh = oh_lo; oh <= oh_hi; ++oh)
        for (int ow = ow_lo; ow <= ow_hi; ++ow) sum += grad[oh * g.out_w + ow] / pool_divisor(g, oh, ow);
    dx[plane * g.in_hw + q] = sum;
}

#endif  // POOL_ROWS

#undef POOL_WINDOW
