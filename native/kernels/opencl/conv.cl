// conv.cl: 2-D convolution in NCHW (kn_conv2d_f32, kn_conv2d_backward_data_f32,
// kn_conv2d_backward_weights_f32) with bias, stride, padding, dilation and groups.
//
// Technique: implicit GEMM, one GEMM per group, no im2col buffer in memory. The three passes are
// each C[M, N] = A[M, K] x B[K, N] with one operand gathered from an activation tensor on the fly
// (the padding / stride / dilation arithmetic happens while a tile is copied to local memory):
//   forward          y[oc, (n,oh,ow)]  = w[oc, (ic,kh,kw)]        x im2col(x)[(ic,kh,kw), (n,oh,ow)]
//   backward data   dx[ic, (n,ih,iw)]  = w^T[ic, (oc,kh,kw)]      x dy gathered[(oc,kh,kw), (n,ih,iw)]
//   backward weights dw[oc, (ic,kh,kw)] = dy[oc, (n,oh,ow)]        x im2col(x)^T[(n,oh,ow), (ic,kh,kw)]
// Backward data is the direct gather form: each dx element sums the (oc, kh, kw) taps that hit it,
// taking dy[(ih + pad - kh*dil) / stride] where that division is exact, so nothing is scattered
// and no atomics are needed (with stride s, (s_h*s_w - 1) of every s_h*s_w gathered B values are
// zeros: the price of a deterministic gather). Backward weights reduces over the long
// (n, oh, ow) axis; the host splits that axis into chunks (split-K) when the output tiles alone
// cannot fill the device, writes per-chunk partial sums to a scratch buffer and adds the chunks in
// a fixed order (conv2d_sum_partials): deterministic. The bias gradient is a per-channel
// work-group tree (conv2d_backward_bias).
// Tiles follow gemm.cl (same tunables, chosen per device type by the host):
//   GPUs: work-groups of (CONV_TILE_N / CONV_WPT_N) x (CONV_TILE_M / CONV_WPT_M) work-items share
//     TILE_M x TILE_K and TILE_K x TILE_N tiles in local memory (64 x 16 and 16 x 64, 4 x 4 per
//     work-item); each work-item gathers fixed columns of the B tile (its column's image /
//     output-row decomposition is computed once per kernel, consecutive work-items read
//     consecutive addresses) and accumulates a WPT_M x WPT_N register block. Per-group GEMMs
//     with fewer rows than the host's threshold (4: depthwise, a 1-channel input's dx) use the
//     direct kernels at the end of this file instead of a 64-row tile of mostly zeros.
//   CPUs (PoCL, CONV_SINGLE_WORK_ITEM): one work-item packs the A block and the gathered B block,
//     BLIS style, and walks 8 x 32 (float16) micro-tiles over a C block kept in local memory. The
//     gather copies runs: the B columns of one output row read one input row segment (zeros for
//     the padding), and for stride 1 with out_width == in_width ("same" padding along w) a whole
//     block row is one contiguous copy of the shifted plane plus a few zeroed wrap-around
//     columns. Every shape takes this path on a CPU: the direct kernels ran ~10x slower there
//     (PoCL vectorises across work-items only when the kernel body has no loop).
// Measured through libkernels on PoCL 3.1 (2 cores of an AMD EPYC with AVX-512, shared with other
// jobs: load average 5-10, so wall times varied 2x run to run). GFLOP/s per CPU-second of the
// process (all threads; the stable number under contention), wall-clock GFLOP/s in parentheses;
// best of 2 runs of 5 rounds, each against kn_gemm_f32 (gemm.cl) on the equivalent GEMM in the
// same run (forward NN, backward data TN = the column GEMM before a col2im, backward weights NT):
//   shape (batch 64 / 64 / 8)        M x N x K        forward          backward data    backward weights
//   MNIST conv1 1->32 28x28 3x3 p1   32x50176x9       57 (36)          6 (3)  [M = 1]   12 (6)
//     equivalent GEMM                                 70 (37)          55 (28)          12 (6)
//   MNIST conv2 32->64 14x14 3x3 p1  64x12544x288     127 (65)         67 (35)          86 (63)
//     equivalent GEMM                                 142 (109)        129 (73)         92 (91)
//   64->64 56x56 3x3 p1              64x25088x576     156 (103)        90 (58)          101 (70)
//     equivalent GEMM                                 124 (93)         107 (70)         79 (51)
// The gather is what separates a convolution from its GEMM: the B block is built from 14- to
// 56-element runs instead of streamed (alternating A/B runs, conv2 forward: ~90 -> ~120 per
// CPU-second with the shifted-plane copy). At 56x56 the convolution beats its GEMM: the GEMM
// streams a 58 MB B matrix, the gather re-reads a 6.4 MB x from cache. Backward data of conv1 has
// one input channel, so its GEMM has one row: 7/8 of each micro-tile idles and each gathered
// value serves 2 flops (first-layer dx is rarely needed; depthwise convolutions pay the same on a
// CPU: 64 channels 56x56 batch 8, ~3 GFLOP/s forward, against ~0.3 with the direct kernels).
//
// Index arithmetic: per-image offsets (channels x plane) must fit in int32 (the host checks and
// reports KN_ERROR_NOT_SUPPORTED otherwise); image and flattened column indices are 64-bit.

#ifndef CONV_TILE_M
#define CONV_TILE_M 64  // rows of C per work-group (output channels; input channels for backward data)
#endif
#ifndef CONV_TILE_N
#define CONV_TILE_N 64  // columns of C per work-group (output positions of the batch)
#endif
#ifndef CONV_TILE_K
#define CONV_TILE_K 16  // depth of the A and B tiles staged per barrier pair (GPU) or packed (CPU)
#endif
#ifndef CONV_WPT_M
#define CONV_WPT_M 4    // rows of C per work-item (register block height)
#endif
#ifndef CONV_WPT_N
#define CONV_WPT_N 4    // columns of C per work-item, a multiple of CONV_VEC_N
#endif
#ifndef CONV_VEC_N
#define CONV_VEC_N 4    // vector width along n of the B reads and the accumulators
#endif
#ifndef CONV_USE_FMA
#define CONV_USE_FMA 0  // 1 where the device has hardware fma (PoCL compiles mad to mul + add)
#endif
#ifndef CONV_SINGLE_WORK_ITEM
#define CONV_SINGLE_WORK_ITEM 0 // 1: one work-item per work-group packs and walks micro-tiles (CPUs)
#endif
#ifndef CONV_REDUCE_WG
#define CONV_REDUCE_WG 256 // work-items of the per-channel / per-weight tree reductions (power of 2)
#endif

#if CONV_USE_FMA
#define CONV_MAD(a, b, c) fma((a), (b), (c))
#else
#define CONV_MAD(a, b, c) mad((a), (b), (c))
#endif

#if CONV_SINGLE_WORK_ITEM
#define CONV_DIM_N 1
#define CONV_DIM_M 1
#else
#define CONV_DIM_N (CONV_TILE_N / CONV_WPT_N)
#define CONV_DIM_M (CONV_TILE_M / CONV_WPT_M)
#endif
#define CONV_THREADS (CONV_DIM_M * CONV_DIM_N)
#define CONV_VECS_N (CONV_WPT_N / CONV_VEC_N)
#define CONV_LDA (CONV_TILE_K + 1)  // local A is [TILE_M][TILE_K + 1]: the pad spreads column walks
#define CONV_LDB CONV_TILE_N        // local B is [TILE_K][TILE_N] (vector loads along n)

#if CONV_TILE_M % CONV_WPT_M != 0 || CONV_TILE_N % CONV_WPT_N != 0 || CONV_WPT_N % CONV_VEC_N != 0
#error "conv.cl: CONV_TILE_M must be a multiple of CONV_WPT_M, CONV_TILE_N of CONV_WPT_N, CONV_WPT_N of CONV_VEC_N"
#endif
#if !CONV_SINGLE_WORK_ITEM && (CONV_THREADS % CONV_TILE_N != 0 || CONV_THREADS % CONV_TILE_K != 0 || \
                               (CONV_TILE_K * CONV_TILE_N) % CONV_THREADS != 0 ||                    \
                               (CONV_TILE_M * CONV_TILE_K) % CONV_THREADS != 0)
#error "conv.cl: the tile copies must split evenly over the work-items"
#endif
#if (CONV_REDUCE_WG & (CONV_REDUCE_WG - 1)) != 0
#error "conv.cl: CONV_REDUCE_WG must be a power of two"
#endif

#define CONV_CAT_(a, b) a##b
#define CONV_CAT(a, b) CONV_CAT_(a, b)
#if CONV_VEC_N == 1
typedef float conv_vec;
#define CONV_VLOAD(p) (*(p))
#define CONV_VSTORE(v, p) (*(p) = (v))
#else
typedef CONV_CAT(float, CONV_VEC_N) conv_vec;
#define CONV_VLOAD(p) CONV_CAT(vload, CONV_VEC_N)(0, (p))
#define CONV_VSTORE(v, p) CONV_CAT(vstore, CONV_VEC_N)((v), 0, (p))
#endif

// The three passes of one body; literal arguments, so every branch on them folds away.
#define CONV_FORWARD 0
#define CONV_BACKWARD_DATA 1
#define CONV_BACKWARD_WEIGHTS 2

// The geometry arrives as one int16 kernel argument in kernels.h's order (batch, in_channels,
// in_height, in_width, out_channels, kernel_height, kernel_width, stride h/w, pad h/w, dilation h/w,
// groups, out_height, out_width).
typedef struct {
    int batch, in_c, in_h, in_w, out_c, k_h, k_w, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups;
    int out_h, out_w;
    int in_cg, out_cg;  // channels per group
    int taps;           // k_h * k_w
    int in_hw, out_hw;  // plane sizes
} conv_geometry;

inline conv_geometry conv_unpack(const int16 v) {
    conv_geometry g;
    g.batch = v.s0; g.in_c = v.s1; g.in_h = v.s2; g.in_w = v.s3; g.out_c = v.s4; g.k_h = v.s5; g.k_w = v.s6;
    g.stride_h = v.s7; g.stride_w = v.s8; g.pad_h = v.s9; g.pad_w = v.sa; g.dil_h = v.sb; g.dil_w = v.sc;
    g.groups = v.sd; g.out_h = v.se; g.out_w = v.sf;
    g.in_cg = g.in_c / g.groups;
    g.out_cg = g.out_c / g.groups;
    g.taps = g.k_h * g.k_w;
    g.in_hw = g.in_h * g.in_w;
    g.out_hw = g.out_h * g.out_w;
    return g;
}

// GEMM sizes of each pass, per group.
inline int conv_gemm_m(const int mode, const conv_geometry g) {
    return mode == CONV_BACKWARD_DATA ? g.in_cg : g.out_cg;
}
inline long conv_gemm_n(const int mode, const conv_geometry g) {
    return mode == CONV_FORWARD ? (long)g.batch * g.out_hw
           : mode == CONV_BACKWARD_DATA ? (long)g.batch * g.in_hw : (long)g.in_cg * g.taps;
}
inline long conv_gemm_k(const int mode, const conv_geometry g) {
    return mode == CONV_FORWARD ? (long)g.in_cg * g.taps
           : mode == CONV_BACKWARD_DATA ? (long)g.out_cg * g.taps : (long)g.batch * g.out_hw;
}

// Row validity of the backward-data gather: output row (ih + pad - kh*dil) / stride when exact.
inline int conv_transposed_index(const int t, const int stride, const int size) {
    if (stride == 1) return t >= 0 && t < size ? t : -1;  // no division in the common case
    if (t < 0 || t % stride != 0) return -1;
    const int o = t / stride;
    return o < size ? o : -1;
}

#if CONV_SINGLE_WORK_ITEM
// ---- One work-item per work-group (CPUs) ------------------------------------------------------
// As gemm.cl's CPU kernel: no barrier and no per-work-item state, the packed blocks and the C
// block live in local memory (ordinary cached memory on a CPU), micro-tiles of CONV_WPT_M x
// CONV_WPT_N with float CONV_VEC_N vectors. Only the valid depth and the micro-tiles holding valid
// elements are computed.

inline void conv_zero(__local float* dst, const int count, const int step) {
    for (int t = 0; t < count; ++t) dst[t * step] = 0.0f;
}

// dst[t * step] = row[i0 + t * stride] where 0 <= i0 + t * stride < width, else 0, for t < len:
// one run of the im2col gather (the B columns of one output row read one input row).
inline void conv_gather_row(__global const float* row, const int i0, const int stride, const int width,
                            const int len, __local float* dst, const int step) {
    if (stride == 1) {
        // The common case, without divisions: zeros, a contiguous copy, zeros.
        const int lo = clamp(-i0, 0, len), hi = clamp(width - i0, lo, len);
        if (step == 1) {
            for (int t = 0; t < lo; ++t) dst[t] = 0.0f;
            for (int t = lo; t < hi; ++t) dst[t] = row[i0 + t];
            for (int t = hi; t < len; ++t) dst[t] = 0.0f;
        } else {
            for (int t = 0; t < lo; ++t) dst[t * step] = 0.0f;
            for (int t = lo; t < hi; ++t) dst[t * step] = row[i0 + t];
            for (int t = hi; t < len; ++t) dst[t * step] = 0.0f;
        }
        return;
    }
    int t_lo = i0 >= 0 ? 0 : (-i0 + stride - 1) / stride;  // first t inside the row
    int t_hi = i0 >= width ? 0 : (width - i0 + stride - 1) / stride;  // first t past its end
    t_lo = min(t_lo, len);
    t_hi = clamp(t_hi, t_lo, len);
    conv_zero(dst, t_lo, step);
    for (int t = t_lo; t < t_hi; ++t) dst[t * step] = row[i0 + t * stride];
    conv_zero(dst + t_hi * step, len - t_hi, step);
}

// The backward-data run: dst[t] = row[(i0 + t) / stride] where i0 + t is a non-negative multiple
// of stride and the quotient is below width, else 0.
inline void conv_gather_row_transposed(__global const float* row, const int i0, const int stride,
                                       const int width, const int len, __local float* dst) {
    if (stride == 1) {
        conv_gather_row(row, i0, 1, width, len, dst, 1);
        return;
    }
    conv_zero(dst, len, 1);
    for (int t = i0 >= 0 ? (stride - i0 % stride) % stride : -i0; t < len; t += stride) {
        const int o = (i0 + t) / stride;
        if (o >= width) break;
        dst[t] = row[o];
    }
}

// The stride-1 "same width" case (out_width == in_width): along the flattened positions of one
// image, the B row of one tap is the source plane shifted by shift_h rows and shift_w columns, so
// positions p0 .. p0 + len become one contiguous copy of plane[p + shift_h * width + shift_w]; the
// rows that fall outside the source plane are zeros, and the |shift_w| positions of each row that
// wrapped around to the neighbouring row are zeroed afterwards. One copy per block row instead of
// one run per image row (14-wide MNIST rows: ~9 runs of 14 per 128 columns).
inline void conv_gather_shifted(__global const float* plane, const int width, const int src_rows, const int p0,
                                const int len, const int shift_h, const int shift_w, __local float* dst) {
    const long shift = (long)shift_h * width + shift_w;
    // Positions whose source row exists, clipped so that p + shift stays inside the source plane.
    const int lo = (int)clamp(max(-(long)shift_h * width, -shift) - p0, 0L, (long)len);
    const int hi = (int)clamp(min((long)(src_rows - shift_h) * width, (long)src_rows * width - shift) - p0, (long)lo,
                              (long)len);
    for (int t = 0; t < lo; ++t) dst[t] = 0.0f;
    const int first = (int)(p0 + shift);  // the source of position p0 (in the plane for t >= lo)
    for (int t = lo; t < hi; ++t) dst[t] = plane[first + t];
    for (int t = hi; t < len; ++t) dst[t] = 0.0f;
    if (shift_w == 0 || hi <= lo) return;
    // Wrapped columns: [0, -shift_w) of each row for shift_w < 0, [width - shift_w, width) for > 0.
    const int bad = min(shift_w < 0 ? -shift_w : shift_w, width);
    const int col0 = shift_w < 0 ? 0 : width - bad;
    for (int row_start = (p0 + lo) / width * width; row_start < p0 + hi; row_start += width) {
        const int a = max(row_start + col0, p0 + lo) - p0, b = min(row_start + col0 + bad, p0 + hi) - p0;
        for (int t = a; t < b; ++t) dst[t] = 0.0f;
    }
}

// A block: rows m0 .. m0 + rows of A, depth columns from k0, into a_tile[r * CONV_LDA + kk];
// rows up to fill_rows are zeros.
inline void conv_pack_a(const int mode, const conv_geometry g, __global const float* src, const int group,
                        const int m0, const long k0, const int rows, const int depth, const int fill_rows,
                        __local float* a_tile) {
    for (int r = 0; r < rows; ++r) {
        __local float* dst = a_tile + r * CONV_LDA;
        if (mode == CONV_FORWARD) {
            // w[oc, (ic, kh, kw)]: a plain row copy.
            __global const float* row = src + (long)(group * g.out_cg + m0 + r) * g.in_cg * g.taps + k0;
            for (int kk = 0; kk < depth; ++kk) dst[kk] = row[kk];
        } else if (mode == CONV_BACKWARD_DATA) {
            // w^T: A[ic, (oc, tap)] = w[group * out_cg + oc, ic, tap].
            int oc = (int)(k0 / g.taps), tap = (int)(k0 - (long)oc * g.taps);
            __global const float* base = src + ((long)group * g.out_cg * g.in_cg + m0 + r) * g.taps;
            for (int kk = 0; kk < depth; ++kk) {
                dst[kk] = base[(long)oc * g.in_cg * g.taps + tap];
                if (++tap == g.taps) { tap = 0; ++oc; }
            }
        } else {
            // dy[oc, (n, p)]: runs of one image plane.
            long n = k0 / g.out_hw;
            int p = (int)(k0 - n * g.out_hw);
            for (int kk = 0; kk < depth;) {
                const int len = min(g.out_hw - p, depth - kk);
                __global const float* row = src + (n * g.out_c + group * g.out_cg + m0 + r) * (long)g.out_hw + p;
                for (int t = 0; t < len; ++t) dst[kk + t] = row[t];
                kk += len;
                p = 0;
                ++n;
            }
        }
    }
    for (int r = rows; r < fill_rows; ++r) conv_zero(a_tile + r * CONV_LDA, depth, 1);
}

// B block: depth rows from k0, cols columns from n0 (zeros up to fill_cols), into
// b_tile[kk * CONV_LDB + jj], gathered in runs of one (image, row).
inline void conv_pack_b(const int mode, const conv_geometry g, __global const float* src, const int group,
                        const long n0, const long k0, const int cols, const int depth, const int fill_cols,
                        __local float* b_tile) {
    const int same_width = g.stride_h == 1 && g.stride_w == 1 && g.in_w == g.out_w;
    if (mode != CONV_BACKWARD_WEIGHTS && same_width) {
        // Forward: B[(ic, kh, kw), (n, p)] = x[n, ic] shifted by (kh*dil - pad) rows/columns.
        // Backward data: B[(oc, kh, kw), (n, q)] = dy[n, oc] shifted by (pad - kh*dil).
        const int dst_plane = mode == CONV_FORWARD ? g.out_hw : g.in_hw;
        const int src_plane = mode == CONV_FORWARD ? g.in_hw : g.out_hw;
        const int src_rows = mode == CONV_FORWARD ? g.in_h : g.out_h;
        const int src_channels = mode == CONV_FORWARD ? g.in_c : g.out_c;
        const int src_group = mode == CONV_FORWARD ? g.in_cg : g.out_cg;
        const int sign = mode == CONV_FORWARD ? 1 : -1;
        long n = n0 / dst_plane;
        int p = (int)(n0 - n * dst_plane);
        const int c0 = (int)(k0 / g.taps), tap0 = (int)(k0 - (long)c0 * g.taps);
        for (int jj = 0; jj < cols;) {
            const int len = min(dst_plane - p, cols - jj);
            __global const float* image = src + (n * src_channels + group * src_group) * (long)src_plane;
            int c = c0, kh = tap0 / g.k_w, kw = tap0 - kh * g.k_w;
            for (int kk = 0; kk < depth; ++kk) {
                conv_gather_shifted(image + c * src_plane, g.in_w, src_rows, p, len,
                                    sign * (kh * g.dil_h - g.pad_h), sign * (kw * g.dil_w - g.pad_w),
                                    b_tile + kk * CONV_LDB + jj);
                if (++kw == g.k_w) { kw = 0; if (++kh == g.k_h) { kh = 0; ++c; } }
            }
            jj += len;
            p = 0;
            ++n;
        }
    } else if (mode == CONV_FORWARD) {
        // Rows (ic, kh, kw), columns (n, oh, ow): a run is one output row of one image.
        long n = n0 / g.out_hw;
        int p = (int)(n0 - n * g.out_hw);
        int oh = p / g.out_w, ow = p - oh * g.out_w;
        const int c0 = (int)(k0 / g.taps), tap0 = (int)(k0 - (long)c0 * g.taps);
        for (int jj = 0; jj < cols;) {
            const int len = min(g.out_w - ow, cols - jj);
            __global const float* image = src + (n * g.in_c + group * g.in_cg) * (long)g.in_hw;
            const int ih0 = oh * g.stride_h - g.pad_h, iw0 = ow * g.stride_w - g.pad_w;
            int c = c0, kh = tap0 / g.k_w, kw = tap0 - kh * g.k_w;
            for (int kk = 0; kk < depth; ++kk) {
                __local float* dst = b_tile + kk * CONV_LDB + jj;
                const int ih = ih0 + kh * g.dil_h;
                if (ih < 0 || ih >= g.in_h) conv_zero(dst, len, 1);
                else conv_gather_row(image + c * g.in_hw + ih * g.in_w, iw0 + kw * g.dil_w, g.stride_w, g.in_w, len,
                                     dst, 1);
                if (++kw == g.k_w) { kw = 0; if (++kh == g.k_h) { kh = 0; ++c; } }
            }
            jj += len;
            ow = 0;
            if (++oh == g.out_h) { oh = 0; ++n; }
        }
    } else if (mode == CONV_BACKWARD_DATA) {
        // Rows (oc, kh, kw), columns (n, ih, iw): a run is one input row of one image.
        long n = n0 / g.in_hw;
        int q = (int)(n0 - n * g.in_hw);
        int ih = q / g.in_w, iw = q - ih * g.in_w;
        const int c0 = (int)(k0 / g.taps), tap0 = (int)(k0 - (long)c0 * g.taps);
        for (int jj = 0; jj < cols;) {
            const int len = min(g.in_w - iw, cols - jj);
            __global const float* image = src + (n * g.out_c + group * g.out_cg) * (long)g.out_hw;
            int c = c0, kh = tap0 / g.k_w, kw = tap0 - kh * g.k_w;
            for (int kk = 0; kk < depth; ++kk) {
                __local float* dst = b_tile + kk * CONV_LDB + jj;
                const int oh = conv_transposed_index(ih + g.pad_h - kh * g.dil_h, g.stride_h, g.out_h);
                if (oh < 0) conv_zero(dst, len, 1);
                else conv_gather_row_transposed(image + c * g.out_hw + oh * g.out_w, iw + g.pad_w - kw * g.dil_w,
                                                g.stride_w, g.out_w, len, dst);
                if (++kw == g.k_w) { kw = 0; if (++kh == g.k_h) { kh = 0; ++c; } }
            }
            jj += len;
            iw = 0;
            if (++ih == g.in_h) { ih = 0; ++n; }
        }
    } else {
        // Rows (n, oh, ow), columns (ic, kh, kw): a run is one output row, stored down a column.
        long n = k0 / g.out_hw;
        int p = (int)(k0 - n * g.out_hw);
        int oh = p / g.out_w, ow = p - oh * g.out_w;
        const int c0 = (int)(n0 / g.taps), tap0 = (int)(n0 - (long)c0 * g.taps);
        for (int kk = 0; kk < depth;) {
            const int len = min(g.out_w - ow, depth - kk);
            __global const float* image = src + (n * g.in_c + group * g.in_cg) * (long)g.in_hw;
            const int ih0 = oh * g.stride_h - g.pad_h, iw0 = ow * g.stride_w - g.pad_w;
            int c = c0, kh = tap0 / g.k_w, kw = tap0 - kh * g.k_w;
            for (int jj = 0; jj < cols; ++jj) {
                __local float* dst = b_tile + kk * CONV_LDB + jj;
                const int ih = ih0 + kh * g.dil_h;
                if (ih < 0 || ih >= g.in_h) conv_zero(dst, len, CONV_LDB);
                else conv_gather_row(image + c * g.in_hw + ih * g.in_w, iw0 + kw * g.dil_w, g.stride_w, g.in_w, len,
                                     dst, CONV_LDB);
                if (++kw == g.k_w) { kw = 0; if (++kh == g.k_h) { kh = 0; ++c; } }
            }
            kk += len;
            ow = 0;
            if (++oh == g.out_h) { oh = 0; ++n; }
        }
    }
    if (cols < fill_cols)
        for (int kk = 0; kk < depth; ++kk) conv_zero(b_tile + kk * CONV_LDB + cols, fill_cols - cols, 1);
}

inline void conv_gemm(const int mode, const conv_geometry g, __global const float* a_src,
                      __global const float* b_src, __global const float* bias, const int has_bias,
                      __global float* out, const int first_group, const long chunk_len,
                      __local float* a_tile, __local float* b_tile, __local float* c_tile) {
    const int group = first_group + get_group_id(2);
    const int m = conv_gemm_m(mode, g);
    const long n = conv_gemm_n(mode, g), k = conv_gemm_k(mode, g);
    const long tiles_n = (n + CONV_TILE_N - 1) / CONV_TILE_N;
    const long tile = get_group_id(0);
    const int m0 = (int)(tile / tiles_n) * CONV_TILE_M;
    const long n0 = (tile % tiles_n) * CONV_TILE_N;
    const int rows = min(CONV_TILE_M, m - m0);
    const int cols = (int)min((long)CONV_TILE_N, n - n0);
    const int micro_rows = (rows + CONV_WPT_M - 1) / CONV_WPT_M * CONV_WPT_M;
    const int micro_cols = (cols + CONV_WPT_N - 1) / CONV_WPT_N * CONV_WPT_N;
    const long chunk = get_group_id(1);
    const long k_begin = mode == CONV_BACKWARD_WEIGHTS ? chunk * chunk_len : 0;
    const long k_end = mode == CONV_BACKWARD_WEIGHTS ? min(k, k_begin + chunk_len) : k;

    for (int i = 0; i < micro_rows * CONV_TILE_N; i += CONV_VEC_N) CONV_VSTORE((conv_vec)(0.0f), c_tile + i);

    for (long k0 = k_begin; k0 < k_end; k0 += CONV_TILE_K) {
        const int depth = (int)min((long)CONV_TILE_K, k_end - k0);
        conv_pack_a(mode, g, a_src, group, m0, k0, rows, depth, micro_rows, a_tile);
        conv_pack_b(mode, g, b_src, group, n0, k0, cols, depth, micro_cols, b_tile);
        for (int mi = 0; mi < micro_rows; mi += CONV_WPT_M) {
            for (int ni = 0; ni < micro_cols; ni += CONV_WPT_N) {
                conv_vec acc[CONV_WPT_M][CONV_VECS_N];
#pragma unroll
                for (int i = 0; i < CONV_WPT_M; ++i)
#pragma unroll
                    for (int v = 0; v < CONV_VECS_N; ++v)
                        acc[i][v] = CONV_VLOAD(c_tile + (mi + i) * CONV_TILE_N + ni + v * CONV_VEC_N);
                for (int kk = 0; kk < depth; ++kk) {
                    conv_vec b_vec[CONV_VECS_N];
#pragma unroll
                    for (int v = 0; v < CONV_VECS_N; ++v)
                        b_vec[v] = CONV_VLOAD(b_tile + kk * CONV_LDB + ni + v * CONV_VEC_N);
#pragma unroll
                    for (int i = 0; i < CONV_WPT_M; ++i) {
                        const float a_val = a_tile[(mi + i) * CONV_LDA + kk];
#pragma unroll
                        for (int v = 0; v < CONV_VECS_N; ++v)
                            acc[i][v] = CONV_MAD((conv_vec)(a_val), b_vec[v], acc[i][v]);
                    }
                }
#pragma unroll
                for (int i = 0; i < CONV_WPT_M; ++i)
#pragma unroll
                    for (int v = 0; v < CONV_VECS_N; ++v)
                        CONV_VSTORE(acc[i][v], c_tile + (mi + i) * CONV_TILE_N + ni + v * CONV_VEC_N);
            }
        }
    }

    // Scatter the C block to its NCHW home, in runs of one image plane.
    for (int r = 0; r < rows; ++r) {
        __local const float* src = c_tile + r * CONV_TILE_N;
        if (mode == CONV_BACKWARD_WEIGHTS) {
            __global float* dst = out + ((chunk * g.groups + group) * g.out_cg + m0 + r) * n + n0;
            for (int jj = 0; jj < cols; ++jj) dst[jj] = src[jj];
        } else {
            const int plane = mode == CONV_FORWARD ? g.out_hw : g.in_hw;
            const int channels = mode == CONV_FORWARD ? g.out_c : g.in_c;
            const int channel = group * m + m0 + r;
            const float b = (mode == CONV_FORWARD && has_bias) ? bias[channel] : 0.0f;
            long img = n0 / plane;
            int p = (int)(n0 - img * plane);
            for (int jj = 0; jj < cols;) {
                const int len = min(plane - p, cols - jj);
                __global float* dst = out + (img * channels + channel) * (long)plane + p;
                for (int t = 0; t < len; ++t) dst[t] = src[jj + t] + b;
                jj += len;
                p = 0;
                ++img;
            }
        }
    }
}

#define CONV_C_LOCAL (CONV_TILE_M * CONV_TILE_N)

#else
// ---- Work-groups sharing the tiles (GPUs) --------------------------------------------------------

inline void conv_gemm(const int mode, const conv_geometry g, __global const float* a_src,
                      __global const float* b_src, __global const float* bias, const int has_bias,
                      __global float* out, const int first_group, const long chunk_len,
                      __local float* a_tile, __local float* b_tile, __local float* c_tile) {
    const int group = first_group + get_group_id(2);
    const int m = conv_gemm_m(mode, g);
    const long n = conv_gemm_n(mode, g), k = conv_gemm_k(mode, g);
    const long tiles_n = (n + CONV_TILE_N - 1) / CONV_TILE_N;
    const long tile = get_group_id(0);
    const int m0 = (int)(tile / tiles_n) * CONV_TILE_M;
    const long n0 = (tile % tiles_n) * CONV_TILE_N;
    const long chunk = get_group_id(1);
    const long k_begin = mode == CONV_BACKWARD_WEIGHTS ? chunk * chunk_len : 0;
    const long k_end = mode == CONV_BACKWARD_WEIGHTS ? min(k, k_begin + chunk_len) : k;
    const int tx = get_local_id(0), ty = get_local_id(1);
    const int tid = ty * CONV_DIM_N + tx;

    // A copy: work-item tid owns column a_kk of the A tile, rows a_r0 + l * (THREADS / TILE_K).
    const int a_kk = tid % CONV_TILE_K, a_r0 = tid / CONV_TILE_K;
#define CONV_A_STEP (CONV_THREADS / CONV_TILE_K)
#define CONV_A_LOADS (CONV_TILE_M * CONV_TILE_K / CONV_THREADS)
#define CONV_B_LOADS (CONV_TILE_K * CONV_TILE_N / CONV_THREADS)

    // B copy. Forward / backward data: work-item tid owns column b_jj of the B tile (one output or
    // input position, decomposed once here), rows b_k0 + l * (THREADS / TILE_N); consecutive
    // work-items take consecutive positions, so the gather reads consecutive addresses.
    // Backward weights: work-item tid owns row b_kk (one output position, decomposed per k step)
    // and columns b_j0 + l * (THREADS / TILE_K) (taps, decomposed once here).
    const int b_jj = tid % CONV_TILE_N, b_k0 = tid / CONV_TILE_N;
    const int b_kk = tid % CONV_TILE_K, b_j0 = tid / CONV_TILE_K;
    long col_image = 0;     // forward / backward data: offset of the image's group channels
    int col_h = 0, col_w = 0, col_valid = 0;
    int tap_offset[CONV_B_LOADS], tap_h[CONV_B_LOADS], tap_w[CONV_B_LOADS], tap_valid[CONV_B_LOADS];
    if (mode == CONV_FORWARD) {
        const long j = n0 + b_jj;
        col_valid = j < n;
        const long img = col_valid ? j / g.out_hw : 0;
        const int p = (int)(j - img * g.out_hw);
        const int oh = p / g.out_w;
        col_h = oh * g.stride_h - g.pad_h;
        col_w = (p - oh * g.out_w) * g.stride_w - g.pad_w;
        col_image = (img * g.in_c + group * g.in_cg) * (long)g.in_hw;
    } else if (mode == CONV_BACKWARD_DATA) {
        const long j = n0 + b_jj;
        col_valid = j < n;
        const long img = col_valid ? j / g.in_hw : 0;
        const int q = (int)(j - img * g.in_hw);
        const int ih = q / g.in_w;
        col_h = ih + g.pad_h;
        col_w = q - ih * g.in_w + g.pad_w;
        col_image = (img * g.out_c + group * g.out_cg) * (long)g.out_hw;
    } else {
#pragma unroll
        for (int l = 0; l < CONV_B_LOADS; ++l) {
            const long j = n0 + b_j0 + l * (CONV_THREADS / CONV_TILE_K);
            tap_valid[l] = j < n;
            const int c = tap_valid[l] ? (int)(j / g.taps) : 0;
            const int tap = (int)(j - (long)c * g.taps);
            const int kh = tap / g.k_w;
            tap_offset[l] = (group * g.in_cg + c) * g.in_hw;
            tap_h[l] = kh * g.dil_h - g.pad_h;
            tap_w[l] = (tap - kh * g.k_w) * g.dil_w - g.pad_w;
        }
    }

    conv_vec acc[CONV_WPT_M][CONV_VECS_N];
#pragma unroll
    for (int i = 0; i < CONV_WPT_M; ++i)
#pragma unroll
        for (int v = 0; v < CONV_VECS_N; ++v) acc[i][v] = (conv_vec)(0.0f);

    for (long k0 = k_begin; k0 < k_end; k0 += CONV_TILE_K) {
        // A tile.
        {
            const long kq = k0 + a_kk;
            const int k_ok = kq < k_end;
            long a_base = 0;  // the part of the address that depends on k only
            if (mode == CONV_FORWARD) {
                a_base = (long)group * g.out_cg * (g.in_cg * g.taps) + kq;
            } else if (mode == CONV_BACKWARD_DATA) {
                const int oc = k_ok ? (int)(kq / g.taps) : 0;
                a_base = ((long)(group * g.out_cg + oc) * g.in_cg) * g.taps + (kq - (long)oc * g.taps);
            } else {
                const long img = k_ok ? kq / g.out_hw : 0;
                a_base = (img * g.out_c + group * g.out_cg) * (long)g.out_hw + (kq - img * g.out_hw);
            }
            const long row_stride = mode == CONV_FORWARD ? (long)g.in_cg * g.taps
                                    : mode == CONV_BACKWARD_DATA ? (long)g.taps : (long)g.out_hw;
#pragma unroll
            for (int l = 0; l < CONV_A_LOADS; ++l) {
                const int r = a_r0 + l * CONV_A_STEP;
                const int row = m0 + r;
                a_tile[r * CONV_LDA + a_kk] = (k_ok && row < m) ? a_src[a_base + row * row_stride] : 0.0f;
            }
        }
        // B tile.
        if (mode == CONV_BACKWARD_WEIGHTS) {
            const long kq = k0 + b_kk;
            const int k_ok = kq < k_end;
            const long img = k_ok ? kq / g.out_hw : 0;
            const int p = (int)(kq - img * g.out_hw);
            const int oh = p / g.out_w;
            const int ih0 = oh * g.stride_h, iw0 = (p - oh * g.out_w) * g.stride_w;
            __global const float* image = b_src + img * g.in_c * (long)g.in_hw;
#pragma unroll
            for (int l = 0; l < CONV_B_LOADS; ++l) {
                const int ih = ih0 + tap_h[l], iw = iw0 + tap_w[l];
                const int ok = k_ok && tap_valid[l] && ih >= 0 && ih < g.in_h && iw >= 0 && iw < g.in_w;
                b_tile[b_kk * CONV_LDB + b_j0 + l * (CONV_THREADS / CONV_TILE_K)] =
                    ok ? image[tap_offset[l] + ih * g.in_w + iw] : 0.0f;
            }
        } else {
#pragma unroll
            for (int l = 0; l < CONV_B_LOADS; ++l) {
                const int kk = b_k0 + l * (CONV_THREADS / CONV_TILE_N);
                const long kq = k0 + kk;
                float v = 0.0f;
                if (col_valid && kq < k_end) {
                    const int c = (int)(kq / g.taps);
                    const int tap = (int)(kq - (long)c * g.taps);
                    const int kh = tap / g.k_w, kw = tap - kh * g.k_w;
                    if (mode == CONV_FORWARD) {
                        const int ih = col_h + kh * g.dil_h, iw = col_w + kw * g.dil_w;
                        if (ih >= 0 && ih < g.in_h && iw >= 0 && iw < g.in_w)
                            v = b_src[col_image + c * g.in_hw + ih * g.in_w + iw];
                    } else {
                        const int oh = conv_transposed_index(col_h - kh * g.dil_h, g.stride_h, g.out_h);
                        const int ow = conv_transposed_index(col_w - kw * g.dil_w, g.stride_w, g.out_w);
                        if (oh >= 0 && ow >= 0) v = b_src[col_image + c * g.out_hw + oh * g.out_w + ow];
                    }
                }
                b_tile[kk * CONV_LDB + b_jj] = v;
            }
        }
        barrier(CLK_LOCAL_MEM_FENCE);

#pragma unroll
        for (int kk = 0; kk < CONV_TILE_K; ++kk) {
            conv_vec b_vec[CONV_VECS_N];
#pragma unroll
            for (int v = 0; v < CONV_VECS_N; ++v)
                b_vec[v] = CONV_VLOAD(b_tile + kk * CONV_LDB + (v * CONV_DIM_N + tx) * CONV_VEC_N);
#pragma unroll
            for (int i = 0; i < CONV_WPT_M; ++i) {
                const float a_val = a_tile[(ty * CONV_WPT_M + i) * CONV_LDA + kk];
#pragma unroll
                for (int v = 0; v < CONV_VECS_N; ++v) acc[i][v] = CONV_MAD((conv_vec)(a_val), b_vec[v], acc[i][v]);
            }
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }

    // Store each element to its NCHW (or weight) home.
    const int plane = mode == CONV_FORWARD ? g.out_hw : g.in_hw;
    const int channels = mode == CONV_FORWARD ? g.out_c : g.in_c;
#pragma unroll
    for (int i = 0; i < CONV_WPT_M; ++i) {
        const int row = m0 + ty * CONV_WPT_M + i;
        if (row >= m) continue;
        const int channel = group * m + row;
        const float b = (mode == CONV_FORWARD && has_bias) ? bias[channel] : 0.0f;
#pragma unroll
        for (int v = 0; v < CONV_VECS_N; ++v) {
            float values[CONV_VEC_N];
            CONV_VSTORE(acc[i][v], values);
            const long col0 = n0 + (v * CONV_DIM_N + tx) * CONV_VEC_N;
#pragma unroll
            for (int e = 0; e < CONV_VEC_N; ++e) {
                const long col = col0 + e;
                if (col >= n) continue;
                if (mode == CONV_BACKWARD_WEIGHTS) {
                    out[((chunk * g.groups + group) * g.out_cg + row) * n + col] = values[e];
                } else {
                    const long img = col / plane;
                    out[(img * channels + channel) * (long)plane + (col - img * plane)] = values[e] + b;
                }
            }
        }
    }
#undef CONV_A_STEP
#undef CONV_A_LOADS
#undef CONV_B_LOADS
}

#define CONV_C_LOCAL 1  // the C block lives in registers

#endif  // CONV_SINGLE_WORK_ITEM

#define CONV_GEMM_KERNEL __kernel __attribute__((reqd_work_group_size(CONV_DIM_N, CONV_DIM_M, 1))) void
#define CONV_GEMM_LOCALS                                 \
    __local float a_tile[CONV_TILE_M * CONV_LDA];        \
    __local float b_tile[CONV_TILE_K * CONV_LDB];        \
    __local float c_tile[CONV_C_LOCAL];

// NDRange: x = C tiles of one group (M tiles x N tiles) x CONV_DIM_N, y = CONV_DIM_M (x chunks for
// backward weights), z = groups from first_group (the host splits at 65535).
CONV_GEMM_KERNEL conv2d_forward_gemm(__global const float* x, __global const float* w, __global const float* bias,
                                     const int has_bias, __global float* y, const int16 geometry,
                                     const int first_group) {
    CONV_GEMM_LOCALS
    conv_gemm(CONV_FORWARD, conv_unpack(geometry), w, x, bias, has_bias, y, first_group, 0, a_tile, b_tile, c_tile);
}

CONV_GEMM_KERNEL conv2d_backward_data_gemm(__global const float* dy, __global const float* w, __global float* dx,
                                           const int16 geometry, const int first_group) {
    CONV_GEMM_LOCALS
    conv_gemm(CONV_BACKWARD_DATA, conv_unpack(geometry), w, dy, w, 0, dx, first_group, 0, a_tile, b_tile, c_tile);
}

// out is dw ([out_channels, in_channels / groups, kh, kw]) when the host runs one chunk, else the
// [chunks, out_channels, in_channels / groups * kh * kw] partial sums for conv2d_sum_partials.
CONV_GEMM_KERNEL conv2d_backward_weights_gemm(__global const float* x, __global const float* dy, __global float* out,
                                              const int16 geometry, const int first_group, const long chunk_len) {
    CONV_GEMM_LOCALS
    conv_gemm(CONV_BACKWARD_WEIGHTS, conv_unpack(geometry), dy, x, dy, 0, out, first_group, chunk_len, a_tile,
              b_tile, c_tile);
}

// out[i] = sum over c < chunks of partials[c * count + i], in chunk order (deterministic).
__kernel void conv2d_sum_partials(__global const float* partials, __global float* out, const long count,
                                  const int chunks) {
    const long i = get_global_id(0);
    if (i >= count) return;
    float sum = 0.0f;
    for (int c = 0; c < chunks; ++c) sum += partials[c * count + i];
    out[i] = sum;
}

// ---- Direct kernels (depthwise and other thin groups) ---------------------------------------------
// NDRange: x = position within a plane (rounded up), y = plane from first_plane (the host splits
// the planes at 65535 work-group rows). The tap loops (kh, kw) are outermost and their bounds are
// the same for every work-item, validity is a select on a clamped address, and the channel loop is
// innermost: the index arithmetic (divisions for backward data) is paid once per tap, not per
// multiply-add, and the control flow stays uniform so a CPU runtime can vectorise across
// work-items (consecutive work-items read consecutive addresses at stride 1).

// y[n, oc, oh, ow]: one work-item per output element, plane = n * out_channels + oc.
__kernel void conv2d_forward_direct(__global const float* x, __global const float* w, __global const float* bias,
                                    const int has_bias, __global float* y, const int16 geometry,
                                    const long first_plane) {
    const conv_geometry g = conv_unpack(geometry);
    const int p = get_global_id(0);
    const long plane = first_plane + get_global_id(1);
    if (p >= g.out_hw || plane >= (long)g.batch * g.out_c) return;
    const long img = plane / g.out_c;
    const int oc = (int)(plane - img * g.out_c);
    const int group = oc / g.out_cg;
    const int oh = p / g.out_w, ow = p - oh * g.out_w;
    const int ih0 = oh * g.stride_h - g.pad_h, iw0 = ow * g.stride_w - g.pad_w;
    __global const float* image = x + (img * g.in_c + group * g.in_cg) * (long)g.in_hw;
    __global const float* filter = w + (long)oc * g.in_cg * g.taps;
    float acc = 0.0f;
    for (int kh = 0; kh < g.k_h; ++kh) {
        const int ih = ih0 + kh * g.dil_h;
        const int h_ok = ih >= 0 && ih < g.in_h;
        for (int kw = 0; kw < g.k_w; ++kw) {
            const int iw = iw0 + kw * g.dil_w;
            const int ok = h_ok && iw >= 0 && iw < g.in_w;
            const int at = ok ? ih * g.in_w + iw : 0;  // a safe address when the tap is padding
            const int tap = kh * g.k_w + kw;
            for (int c = 0; c < g.in_cg; ++c) {
                const float v = image[c * g.in_hw + at];
                acc = mad(ok ? v : 0.0f, filter[c * g.taps + tap], acc);
            }
        }
    }
    y[plane * g.out_hw + p] = acc + (has_bias ? bias[oc] : 0.0f);
}

// dx[n, ic, ih, iw]: one work-item per input element gathers the (oc, kh, kw) taps that hit it.
__kernel void conv2d_backward_data_direct(__global const float* dy, __global const float* w, __global float* dx,
                                          const int16 geometry, const long first_plane) {
    const conv_geometry g = conv_unpack(geometry);
    const int q = get_global_id(0);
    const long plane = first_plane + get_global_id(1);
    if (q >= g.in_hw || plane >= (long)g.batch * g.in_c) return;
    const long img = plane / g.in_c;
    const int ic = (int)(plane - img * g.in_c);
    const int group = ic / g.in_cg, icg = ic - group * g.in_cg;
    const int ih = q / g.in_w, iw = q - ih * g.in_w;
    __global const float* grad = dy + (img * g.out_c + group * g.out_cg) * (long)g.out_hw;
    __global const float* filter = w + ((long)group * g.out_cg * g.in_cg + icg) * g.taps;
    const int filter_stride = g.in_cg * g.taps;  // from one output channel's filter to the next
    float acc = 0.0f;
    for (int kh = 0; kh < g.k_h; ++kh) {
        const int oh = conv_transposed_index(ih + g.pad_h - kh * g.dil_h, g.stride_h, g.out_h);
        for (int kw = 0; kw < g.k_w; ++kw) {
            const int ow = conv_transposed_index(iw + g.pad_w - kw * g.dil_w, g.stride_w, g.out_w);
            const int ok = oh >= 0 && ow >= 0;
            const int at = ok ? oh * g.out_w + ow : 0;
            const int tap = kh * g.k_w + kw;
            for (int c = 0; c < g.out_cg; ++c) {
                const float v = grad[c * g.out_hw + at];
                acc = mad(ok ? v : 0.0f, filter[c * filter_stride + tap], acc);
            }
        }
    }
    dx[plane * g.in_hw + q] = acc;
}

// A work-group tree over CONV_REDUCE_WG values; every work-item gets the total.
inline float conv_group_sum(float v, __local float* scratch) {
    const int lid = get_local_id(0);
    scratch[lid] = v;
    for (int s = CONV_REDUCE_WG / 2; s > 0; s /= 2) {
        barrier(CLK_LOCAL_MEM_FENCE);
        if (lid < s) scratch[lid] += scratch[lid + s];
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    const float total = scratch[0];
    barrier(CLK_LOCAL_MEM_FENCE);  // everyone has read scratch[0] before it can be reused
    return total;
}

// dw[oc, ic, kh, kw]: one work-group per weight (first_weight + group id), summing
// dy * x over (n, oh, ow); per image a running sum per work-item, then the tree.
__kernel __attribute__((reqd_work_group_size(CONV_REDUCE_WG, 1, 1))) void conv2d_backward_weights_direct(
    __global const float* x, __global const float* dy, __global float* dw, const int16 geometry) {
    __local float scratch[CONV_REDUCE_WG];
    const conv_geometry g = conv_unpack(geometry);
    const long e = get_group_id(0);
    const int lid = get_local_id(0);
    const int oc = (int)(e / (g.in_cg * g.taps));
    const int rest = (int)(e - (long)oc * g.in_cg * g.taps);
    const int c = rest / g.taps, tap = rest - c * g.taps;
    const int kh = tap / g.k_w, kw = tap - kh * g.k_w;
    const int group = oc / g.out_cg;
    const int dh = kh * g.dil_h - g.pad_h, dw_ = kw * g.dil_w - g.pad_w;
    // Work-item lid visits positions lid, lid + WG, ... of each plane; (oh, ow) advance without a
    // division per element.
    const int first_oh = lid / g.out_w, first_ow = lid - first_oh * g.out_w;
    const int step_oh = CONV_REDUCE_WG / g.out_w, step_ow = CONV_REDUCE_WG - step_oh * g.out_w;
    float total = 0.0f;
    for (long img = 0; img < g.batch; ++img) {
        __global const float* grad = dy + (img * g.out_c + oc) * (long)g.out_hw;
        __global const float* input = x + (img * g.in_c + group * g.in_cg + c) * (long)g.in_hw;
        float sum = 0.0f;
        int oh = first_oh, ow = first_ow;
        for (int p = lid; p < g.out_hw; p += CONV_REDUCE_WG) {
            const int ih = oh * g.stride_h + dh, iw = ow * g.stride_w + dw_;
            const int ok = ih >= 0 && ih < g.in_h && iw >= 0 && iw < g.in_w;
            const float v = input[ok ? ih * g.in_w + iw : 0];
            sum = mad(grad[p], ok ? v : 0.0f, sum);
            oh += step_oh;
            ow += step_ow;
            if (ow >= g.out_w) { ow -= g.out_w; ++oh; }
        }
        total += sum;
    }
    total = conv_group_sum(total, scratch);
    if (lid == 0) dw[e] = total;
}

// dbias[oc] = sum of dy[n, oc, :, :] over n: one work-group per channel.
__kernel __attribute__((reqd_work_group_size(CONV_REDUCE_WG, 1, 1))) void conv2d_backward_bias(
    __global const float* dy, __global float* dbias, const int batch, const int channels, const int plane) {
    __local float scratch[CONV_REDUCE_WG];
    const int oc = get_group_id(0);
    const int lid = get_local_id(0);
    float total = 0.0f;
    for (long img = 0; img < batch; ++img) {
        __global const float* grad = dy + (img * channels + oc) * (long)plane;
        float sum = 0.0f;
        for (int p = lid; p < plane; p += CONV_REDUCE_WG) sum += grad[p];
        total += sum;
    }
    total = conv_group_sum(total, scratch);
    if (lid == 0) dbias[oc] = total;
}
