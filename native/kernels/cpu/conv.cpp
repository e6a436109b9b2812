// conv.cpp: 2-D convolution on the CPU (NCHW activations, [out_channels, in_channels / groups, kh, kw]
// weights): forward with bias, backward-data, backward-weights (+ bias gradient); stride, padding,
// dilation and groups (depthwise included).
//
// Technique: lowering to the packed GEMM of gemm.cpp (im2col, Chellapilla et al. 2006). For one image
// and one group the convolution is
//     y[oc, p] = sum_q w[oc, q] col[q, p],   q = (ic, r, s) < krs = cg kh kw,  p = (oh, ow) < oh * ow
// where col[q, p] = x[ic, oh sh - ph + r dh, ow sw - pw + s dw] (0 in the padding). Each image is first
// copied into zero-padded planes, so every column entry is a plain read (no bounds tests) and, for
// stride 1, each output row's segment is a copy in whole 8-float chunks (a memcpy/memset call per
// 14-float MNIST segment had cost more than the GEMM). The column matrix is built a block of output
// rows at a time (at most CONV_COLUMN_BLOCK_FLOATS, 1 MB, so it stays in L2 for large images) and all
// groups go to the GEMM as one strided batch:
//   forward:          y_g[kg, p]     = w_g[kg, krs] col_g[krs, p]                 (+ bias, row by row)
//   backward-data:    col_g[krs, p]  = w_g^T[krs, kg] dy_g[kg, p], then col2im adds each entry back
//                     into the padded planes, whose interior is dx
//   backward-weights: dw_g[kg, krs] += dy_g[kg, p] col_g^T[p, krs] over every image, or the transpose
//                     dw_g^T = col_g dy_g^T where that fills the micro-tiles better (MNIST conv1:
//                     32 x 9 would leave 23 of 32 tile columns empty; 32 -> 72 GFLOP/s on one core);
//                     dbias = per-channel float64 sums of dy.
// The forward does not write col at all where the GEMM packs its B operand: the packer reads the
// padded planes directly ("implicit GEMM", pack_implicit_columns), so the column matrix exists only
// as the GEMM's packed panels; the bias is added by the GEMM to each block of y while it is in
// cache. A stride-1 backward-data whose layer does not widen (in_channels >= out_channels per group)
// runs as that forward over dy with the flipped, transposed filter (backward_data_as_forward): no
// col, no col2im.
// A 1x1, stride-1, unpadded convolution needs no lowering: col is x itself (forward, backward-weights)
// and the backward-data GEMM writes dx directly. Depthwise convolution (one input channel per group)
// skips the GEMM, whose groups would be 1 x kh kw deep: direct loops over strips of outputs held in
// vector registers, compiled per instruction set (conv_depthwise_impl.h).
// Threads: images are dealt out to the threads in contiguous runs (each thread lowers and multiplies
// its own images with its own scratch, the GEMM running single-threaded inside it); the images left
// over when the batch does not divide evenly, and a batch smaller than the thread count, go one by
// one through the multi-threaded GEMM with the lowering split over channels. backward-weights gives
// each thread a private dw, summed in a fixed order at the end: deterministic for a given thread
// count, no atomics.
// Napkin math (MNIST conv2: batch 64, 32 -> 64 channels, 14x14, 3x3, pad 1): 462 MFLOP on 1.6 MB of
// input; col is 288 x 196 floats = 226 KB per image (L2), written once and read once by the GEMM:
// ~0.1 byte per FLOP, so the GEMM's speed on the 64 x 196 x 288 product decides.
// Measured (native/dev/cnn_cpu_bench.cpp, 2-core AMD EPYC Zen 5 VM, AVX-512, one thread: the machine
// was shared with other builds and the second core measured no gain), GFLOP/s forward / backward-data /
// backward-weights, and in brackets the library's GEMM on the same lowered shape with the column matrix
// already built (what the convolution would cost if lowering were free):
//   MNIST conv1 64 x 1->32 28x28:     76 / 119 /  49  (GEMM 168; k = 9 is too shallow to hide lowering)
//   MNIST conv2 64 x 32->64 14x14:   122 / 115 / 131  (GEMM 145)
//   ResNet 8 x 64->64 56x56:         131 / 136 / 141  (GEMM 155)
//   1x1 8 x 64->128 28x28:           168 / 170 / 147  (GEMM 199)
//   depthwise 8 x 64 56x56:           15 /  12 /   8  (through the GEMM it had measured 8 / 7 / 2);
//     per ISA (issue 16, same machine, `cnn_cpu_bench cpu depthwise`, AVX-512 / AVX2 path):
//                                     44 / 48 / 27 and 45 / 49 / 28 (before: 18 / 16 / 11, SSE2 only)
//   depthwise 3x3/2 8 x 64 112x112:   11-13 / 11-12 / 9-11 (before: 6.5 / 5.0 / 4.5; backward-data
//     by the upsampled-dy correlation); the forward is near memory speed: padding x costs a read and
//     a write of its 26 MB)
// The GEMM itself reaches ~200 GFLOP/s per core on large squares (~390 on both cores of a quiet machine).
// Implicit GEMM and the bias epilogue (issue 16; Intel Xeon, family 6 model 207, one thread, before ->
// after alternating in three pairs, cnn_cpu_bench with a bias; ranges over the pairs, GFLOP/s):
//   MNIST conv1 64 x 1->32 forward   53-62 ->  58-69  (im2col kept: the GEMM reads col in place)
//   MNIST conv2 64 x 32->64 forward  93-109 -> 103-122
//   ResNet 8 x 64->64 56x56 forward / backward-data  101-103 / 112 -> 128-130 / 131-133 (no bias
//     epilogue yet in that run); AVX2 path 67 / 68 -> 75-76 / 76-77
#define KN_ISA portable
#include "conv_depthwise_impl.h"

#include "cpu_kernels.h"
#include "scratch_buffer.h"

#include "error.h"
#include "thread_pool.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <vector>
#if defined(_WIN32)
#include <malloc.h>
#endif

// Largest column-matrix block lowered at once, in floats (1 MB: one core's L2 on Zen 5). An image
// whose col is larger is lowered and multiplied a block of output positions at a time.
#ifndef CONV_COLUMN_BLOCK_FLOATS
#define CONV_COLUMN_BLOCK_FLOATS (int64_t{1} << 18)
#endif

namespace kn::cpu {
namespace {

// Per-thread scratch for the lowered columns and the zero-padded image (scratch_buffer.h).
thread_local ScratchBuffer column_scratch{"conv2d column scratch"}, padded_scratch{"conv2d padded-image scratch"};
// The flipped, transposed filter of backward_data_as_forward (the calling thread's).
thread_local ScratchBuffer flipped_weight_scratch{"conv2d flipped-filter scratch"};

// Slack after every scratch area: the stride-1 copies below move whole 8-float chunks and may run up
// to 7 floats past the end of what they were asked to copy.
constexpr int64_t kSlack = 8;

// The sizes every routine below needs, derived once from the geometry.
struct Shape {
    const Conv2dGeometry& g;
    int64_t cg, kg;          // input / output channels per group
    int64_t taps;            // kh * kw
    int64_t krs;             // cg * taps: the GEMM depth of one group (rows of its col block)
    int64_t plane_in;        // in_height * in_width
    int64_t plane_out;       // out_height * out_width
    int64_t padded_h, padded_w, padded_plane;  // the zero-padded input plane
    int64_t block_rows;      // output rows lowered at once
    bool direct;             // 1x1, stride 1, no padding: col is x itself
    bool depthwise;          // one input channel per group (groups > 1): direct loops, no GEMM

    explicit Shape(const Conv2dGeometry& geometry) : g(geometry) {
        cg = g.in_channels / g.groups;
        kg = g.out_channels / g.groups;
        taps = g.kernel_height * g.kernel_width;
        krs = cg * taps;
        plane_in = g.in_height * g.in_width;
        plane_out = g.out_height * g.out_width;
        padded_h = g.in_height + 2 * g.pad_height;
        padded_w = g.in_width + 2 * g.pad_width;
        padded_plane = padded_h * padded_w;
        direct = g.kernel_height == 1 && g.kernel_width == 1 && g.stride_height == 1 && g.stride_width == 1 &&
                 g.pad_height == 0 && g.pad_width == 0;
        depthwise = cg == 1 && g.groups > 1;
        const int64_t row_floats = g.in_channels * taps * g.out_width;  // col floats per output row
        block_rows = direct ? g.out_height
                            : std::clamp<int64_t>(CONV_COLUMN_BLOCK_FLOATS / row_floats, 1, g.out_height);
    }
    int64_t col_floats() const { return g.in_channels * taps * block_rows * g.out_width + kSlack; }
    int64_t padded_floats(int64_t channels) const { return channels * padded_plane + kSlack; }
};

// Copies n floats in whole 8-float chunks (constant-size copies the compiler turns into a few vector
// moves; a memcpy call per 14-float segment cost more than the copy), so it may write and read up to
// 7 floats past n: only for buffers with kSlack and segments written in increasing order.
inline void copy_chunks(float* __restrict dst, const float* __restrict src, int64_t n) {
    for (int64_t i = 0; i < n; i += 8) std::memcpy(dst + i, src + i, 8 * sizeof(float));
}

// Channels [c0, c1) of one image x, zero-padded: padded[c] is padded_h x padded_w.
void pad_planes(const Shape& S, const float* x, int64_t c0, int64_t c1, float* padded) {
    const Conv2dGeometry& g = S.g;
    for (int64_t c = c0; c < c1; ++c) {
        float* out = padded + c * S.padded_plane;
        const float* in = x + c * S.plane_in;
        std::fill(out, out + g.pad_height * S.padded_w, 0.0f);
        for (int64_t ih = 0; ih < g.in_height; ++ih) {
            float* row = out + (ih + g.pad_height) * S.padded_w;
            std::fill(row, row + g.pad_width, 0.0f);
            std::memcpy(row + g.pad_width, in + ih * g.in_width, static_cast<size_t>(g.in_width) * sizeof(float));
            std::fill(row + g.pad_width + g.in_width, row + S.padded_w, 0.0f);
        }
        std::fill(out + (g.pad_height + g.in_height) * S.padded_w, out + S.padded_plane, 0.0f);
    }
}

// The interior of padded planes [c0, c1) back into dx (the adjoint of pad_planes: the padding is dropped).
void unpad_planes(const Shape& S, const float* padded, int64_t c0, int64_t c1, float* dx) {
    const Conv2dGeometry& g = S.g;
    for (int64_t c = c0; c < c1; ++c)
        for (int64_t ih = 0; ih < g.in_height; ++ih)
            std::memcpy(dx + c * S.plane_in + ih * g.in_width,
                        padded + c * S.padded_plane + (ih + g.pad_height) * S.padded_w + g.pad_width,
                        static_cast<size_t>(g.in_width) * sizeof(float));
}

// col[q, (oh - oh0) * out_width + ow] for channels [c0, c1) (q counted from channel c0) and output rows
// [oh0, oh1), from the padded planes: every entry is a plain read, padding included.
void im2col(const Shape& S, const float* padded, int64_t c0, int64_t c1, int64_t oh0, int64_t oh1, float* col) {
    const Conv2dGeometry& g = S.g;
    const int64_t OW = g.out_width, sw = g.stride_width, ld = (oh1 - oh0) * OW;
    const int64_t row_step = g.stride_height * S.padded_w;
    for (int64_t c = c0; c < c1; ++c)
        for (int64_t r = 0; r < g.kernel_height; ++r)
            for (int64_t s = 0; s < g.kernel_width; ++s) {
                float* out = col + (((c - c0) * g.kernel_height + r) * g.kernel_width + s) * ld;
                const float* src =
                    padded + c * S.padded_plane + (oh0 * g.stride_height + r * g.dilation_height) * S.padded_w +
                    s * g.dilation_width;
                for (int64_t oh = oh0; oh < oh1; ++oh, src += row_step, out += OW) {
                    if (sw != 1) {
                        for (int64_t ow = 0; ow < OW; ++ow) out[ow] = src[ow * sw];
                    } else if (oh + 1 < oh1) {
                        copy_chunks(out, src, OW);  // the overrun lands in the next segment, written next
                    } else {
                        std::memcpy(out, src, static_cast<size_t>(OW) * sizeof(float));  // row end: exact
                    }
                }
            }
}

// The adjoint of im2col: padded[c, ...] += col[q, ...] for channels [c0, c1), output rows [oh0, oh1).
void col2im(const Shape& S, const float* col, int64_t c0, int64_t c1, int64_t oh0, int64_t oh1, float* padded) {
    const Conv2dGeometry& g = S.g;
    const int64_t OW = g.out_width, sw = g.stride_width, ld = (oh1 - oh0) * OW;
    const int64_t row_step = g.stride_height * S.padded_w;
    for (int64_t c = c0; c < c1; ++c)
        for (int64_t r = 0; r < g.kernel_height; ++r)
            for (int64_t s = 0; s < g.kernel_width; ++s) {
                const float* in = col + (((c - c0) * g.kernel_height + r) * g.kernel_width + s) * ld;
                float* dst = padded + c * S.padded_plane + (oh0 * g.stride_height + r * g.dilation_height) * S.padded_w +
                             s * g.dilation_width;
                for (int64_t oh = oh0; oh < oh1; ++oh, dst += row_step, in += OW) {
                    if (sw == 1)
                        for (int64_t ow = 0; ow < OW; ++ow) dst[ow] += in[ow];
                    else
                        for (int64_t ow = 0; ow < OW; ++ow) dst[ow * sw] += in[ow];
                }
            }
}

// ---- Implicit GEMM: the forward's column matrix packed straight from the padded planes ------------
// col[q, pos] = padded[row_offset(q) + column_offset(pos)], q = (c, r, s), pos = (oh, ow), with
//     row_offset = c padded_plane + r dh padded_w + s dw,   column_offset = oh sh padded_w + ow sw,
// so instead of writing col out (im2col) for the GEMM to read back and pack, the GEMM's B packer
// reads the padded planes directly (gemm_f32_with): one write of the panels instead of two
// (MNIST conv2: col and panels are 226 KB each per image, the padded planes 32 KB, in L1).
// Within a call the columns [j0, j0 + nc) fall into the same runs for every row q (a piece of one
// output row, cut where a panel ends), so the runs are worked out once and each row copies them
// from its own base pointer.
struct ImplicitColumns {
    const Shape& S;
    const float* padded;  // the image's padded planes, every group's channels
};

struct ColumnRun {
    int64_t dst;  // offset in the panels: panel * panel_stride + column within the panel
    int64_t src;  // column_offset of the run's first position
    int64_t len;  // positions
};

void pack_implicit_columns(const void* context, int64_t batch, int64_t p0, int64_t kc, int64_t j0, int64_t nc,
                           int64_t nr, int64_t panel_stride, float* dst) {
    const ImplicitColumns& columns = *static_cast<const ImplicitColumns*>(context);
    const Shape& S = columns.S;
    const Conv2dGeometry& g = S.g;
    const int64_t OW = g.out_width, sw = g.stride_width;
    // Counters instead of divisions (an integer division per run and per row had cost a fifth of
    // the packing: perf, MNIST conv2).
    thread_local std::vector<ColumnRun> runs;
    runs.clear();
    int64_t oh = j0 / OW, ow = j0 % OW, panel = 0, w = 0;
    for (int64_t j = 0; j < nc;) {
        const int64_t len = std::min({OW - ow, nc - j, nr - w});
        runs.push_back({panel * panel_stride + w, oh * g.stride_height * S.padded_w + ow * sw, len});
        j += len;
        ow += len;
        w += len;
        if (ow == OW) ow = 0, ++oh;
        if (w == nr) w = 0, ++panel;
    }
    const int64_t tail = nc % nr;  // valid columns of a last, partial panel (the rest are zeros)
    float* last_panel = dst + nc / nr * panel_stride;
    const float* image = columns.padded + batch * S.cg * S.padded_plane;  // group `batch`'s channels
    // Row q = (c, r, s) of the column matrix starts at image + c padded_plane + r dh padded_w + s dw.
    int64_t c = p0 / S.taps, r = p0 % S.taps / g.kernel_width, s = p0 % g.kernel_width;
    for (int64_t p = 0; p < kc; ++p) {
        const float* row = image + c * S.padded_plane + r * g.dilation_height * S.padded_w + s * g.dilation_width;
        if (++s == g.kernel_width) {
            s = 0;
            if (++r == g.kernel_height) r = 0, ++c;
        }
        float* out = dst + p * nr;
        if (sw == 1) {
            // Whole 8-float chunks: the excess lands in the run written next, in row p + 1 of the
            // same panel (written later) or in the zeros below, all within the panel spacing.
            for (const ColumnRun& run : runs) copy_chunks(out + run.dst, row + run.src, run.len);
        } else {
            for (const ColumnRun& run : runs)
                for (int64_t i = 0; i < run.len; ++i) out[run.dst + i] = row[run.src + i * sw];
        }
        if (tail) std::fill(last_panel + p * nr + tail, last_panel + (p + 1) * nr, 0.0f);
    }
}

// Whether the weight gradient's GEMM should produce dw^T[krs, kg] rather than dw[kg, krs]. A micro-tile
// costs about its rows (the kernel is compiled per row count) times its full width (masked columns
// cost as much as used ones), so the cheaper orientation puts the smaller dimension in the rows.
bool transposed_weight_gradient(int64_t kg, int64_t krs) {
    int64_t nr = 8;  // the portable kernel's tile width
#if KN_CPU_X86
    if (simd_level() == SimdLevel::avx512) nr = kGemmAvx512NR;
    else if (simd_level() == SimdLevel::avx2) nr = kGemmAvx2NR;
#endif
    auto cost = [nr](int64_t m, int64_t n) { return m * ((n + nr - 1) / nr * nr); };
    return 4 * cost(krs, kg) < 3 * cost(kg, krs);
}

// Runs fn(c0, c1) over the channel range [0, channels): split over the pool when `threaded` (the
// lowering of one image while the GEMM is multi-threaded), on this thread otherwise.
template <typename Fn>
void over_channels(bool threaded, int64_t channels, int64_t work_per_channel, Fn&& fn) {
    if (!threaded) {
        fn(int64_t{0}, channels);
        return;
    }
    // ~16K floats moved per chunk: below that the hand-off costs more than the copy.
    const int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(work_per_channel, 1));
    parallel_for(channels, grain, [&](int64_t c0, int64_t c1) { fn(c0, c1); });
}

// Deals the batch out: images [0, even) in contiguous runs, one run per thread (`per_image(n, false)`
// inside the pool), then images [even, batch) one at a time on all threads (`per_image(n, true)`).
template <typename Fn>
void over_images(int64_t batch, Fn&& per_image) {
    const int64_t threads = thread_count();
    const int64_t even = threads > 1 && batch >= threads ? batch / threads * threads : 0;
    if (even > 0) {
        parallel_for(even, 1, [&](int64_t begin, int64_t end) {
            for (int64_t n = begin; n < end; ++n) per_image(n, false);
        });
    }
    for (int64_t n = even; n < batch; ++n) per_image(n, threads > 1);
}

// One block of an image's output positions [p0, p0 + width) (whole output rows), lowered: group g's
// column matrix col_g[krs, width] is at data + g * group_stride, with rows ld apart. For a direct
// (1x1, stride 1, unpadded) convolution it is the image x itself.
struct ColumnBlock {
    int64_t p0, width;
    const float* data;
    int64_t ld, group_stride;
};

// The lowering shared by forward and backward-weights: pads image xn once into this thread's padded
// scratch, then builds its column matrix a block of S.block_rows output rows at a time in the column
// scratch and calls fn(block) on each (the next block overwrites it). `threaded`: the copies are
// split over the pool (see over_channels).
template <typename Fn>
void for_each_column_block(const Shape& S, const float* xn, bool threaded, Fn&& fn) {
    const Conv2dGeometry& g = S.g;
    float* padded = nullptr;
    float* col = nullptr;
    if (!S.direct) {
        padded = padded_scratch.get(S.padded_floats(g.in_channels));
        col = column_scratch.get(S.col_floats());
        over_channels(threaded, g.in_channels, S.padded_plane,
                      [&](int64_t c0, int64_t c1) { pad_planes(S, xn, c0, c1, padded); });
    }
    for (int64_t oh0 = 0; oh0 < g.out_height; oh0 += S.block_rows) {
        const int64_t oh1 = std::min(g.out_height, oh0 + S.block_rows);
        const int64_t p0 = oh0 * g.out_width, width = (oh1 - oh0) * g.out_width;
        ColumnBlock block{p0, width, xn + p0, S.plane_in, S.cg * S.plane_in};
        if (!S.direct) {
            over_channels(threaded, g.in_channels, S.taps * width, [&](int64_t c0, int64_t c1) {
                im2col(S, padded, c0, c1, oh0, oh1, col + c0 * S.taps * width);
            });
            block.data = col;
            block.ld = width;
            block.group_stride = S.krs * width;
        }
        fn(block);
    }
}

GemmArgs gemm_args(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float beta, const float* a,
                   int64_t lda, int64_t stride_a, const float* b, int64_t ldb, int64_t stride_b, float* c, int64_t ldc,
                   int64_t stride_c, int64_t batch_count) {
    return GemmArgs{trans_a, trans_b, m, n, k, 1.0f, beta, a, lda, stride_a, b, ldb, stride_b,
                    c, ldc, stride_c, batch_count};
}

// sum of x[0, n) in float64 over 8 independent lanes (vectorises; exact enough for any n here).
double row_sum(const float* x, int64_t n) {
    double lane[8] = {};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; ++j) lane[j] += x[i + j];
    for (int j = 0; i + j < n; ++j) lane[j] += x[i + j];
    return ((lane[0] + lane[1]) + (lane[2] + lane[3])) + ((lane[4] + lane[5]) + (lane[6] + lane[7]));
}

// dbias[k] = sum of dy[n, k, :, :] over the batch, in float64 per channel, channels over the threads.
void bias_gradient(const Shape& S, const float* dy, float* dbias) {
    const Conv2dGeometry& g = S.g;
    const int64_t grain = std::max<int64_t>(1, 32768 / std::max<int64_t>(1, g.batch * S.plane_out));
    parallel_for(g.out_channels, grain, [&](int64_t k0, int64_t k1) {
        for (int64_t k = k0; k < k1; ++k) {
            double sum = 0;
            for (int64_t n = 0; n < g.batch; ++n) sum += row_sum(dy + (n * g.out_channels + k) * S.plane_out, S.plane_out);
            dbias[k] = static_cast<float>(sum);
        }
    });
}

// ---- Depthwise (one input channel per group): direct loops over the padded plane -------------------
// Each group's GEMM would be kg x (kh kw) x plane_out: a 1 x 9 deep product per output, all call and
// packing overhead. Instead each output plane is a direct correlation of its padded input plane with
// its filter, in strips of outputs that stay in registers while all taps are added (loading and
// storing the row once per tap instead was bound by the stores: 2.3 ms for 8 x 64 x 56x56 on one
// core). The plane loops are compiled per instruction set (conv_depthwise_impl.h); this file pads,
// threads and sums.

const DepthwisePlanes& depthwise_kernels() {
    static const DepthwisePlanes& chosen = KN_ISA_ENTRY(depthwise_planes)();
    return chosen;
}

// The forward correlation over a padded input plane (also what the weight gradient reads).
Correlation forward_correlation(const Shape& S) {
    const Conv2dGeometry& g = S.g;
    return {g.out_height, g.out_width, g.kernel_height, g.kernel_width, g.dilation_height, g.dilation_width,
            g.stride_height, g.stride_width, S.padded_w};
}

// Backward-data: dx is the correlation of the stride-upsampled, zero-padded dy with the flipped kernel,
//     dx[ih, iw] = sum over taps of w[r, s] u[ih + ph - r dh, iw + pw - s dw]
// where u holds dy[oh, ow] at (oh sh, ow sw) and zeros between (u = dy for stride 1), r' = kh-1-r and
// s' = kw-1-s: the forward strip loop over u placed in a zero plane large enough that every read is in
// bounds, summed over the group's output channels. For stride 2 three of every four products are with
// zeros, and that still ran 2x faster than scattering each dy row tap by tap into dx (5 GFLOP/s).
struct FlippedGeometry {
    int64_t up_h, up_w;          // u: (out - 1) stride + 1 in each direction
    int64_t pad_top, pad_left;   // zeros above / left of u in its padded plane
    int64_t height, width;       // the padded u plane
};

FlippedGeometry flipped_geometry(const Shape& S) {
    const Conv2dGeometry& g = S.g;
    const int64_t uh = (g.out_height - 1) * g.stride_height + 1, uw = (g.out_width - 1) * g.stride_width + 1;
    const int64_t extent_h = g.dilation_height * (g.kernel_height - 1), extent_w = g.dilation_width * (g.kernel_width - 1);
    // u row ih + ph - r dh ranges over [ih + ph - extent_h, ih + ph] for ih in [0, in_height).
    const int64_t top = std::max<int64_t>(0, extent_h - g.pad_height), left = std::max<int64_t>(0, extent_w - g.pad_width);
    const int64_t bottom = std::max<int64_t>(0, g.in_height - 1 + g.pad_height - (uh - 1));
    const int64_t right = std::max<int64_t>(0, g.in_width - 1 + g.pad_width - (uw - 1));
    return {uh, uw, top, left, top + uh + bottom, left + uw + right};
}

// Tasks over (image, group) planes, ~32K floats of work per chunk.
int64_t plane_grain(const Shape& S) {
    return std::max<int64_t>(1, 32768 / std::max<int64_t>(1, S.kg * (S.plane_out + S.padded_plane)));
}

void depthwise_forward(const Shape& S, const float* x, const float* w, const float* bias, float* y) {
    const Conv2dGeometry& g = S.g;
    const DepthwisePlanes& kernels = depthwise_kernels();
    const Correlation c = forward_correlation(S);
    parallel_for(g.batch * g.groups, plane_grain(S), [&](int64_t begin, int64_t end) {
        float* padded = padded_scratch.get(S.padded_floats(1));
        for (int64_t t = begin; t < end; ++t) {  // t = n * groups + group = the input plane's index
            pad_planes(S, x + t * S.plane_in, 0, 1, padded);
            const int64_t group = t % g.groups;
            for (int64_t j = 0; j < S.kg; ++j) {
                const int64_t k = group * S.kg + j;
                kernels.correlate(c, padded, w + k * S.taps, bias ? bias[k] : 0.0f, false,
                                  y + ((t / g.groups) * g.out_channels + k) * S.plane_out);
            }
        }
    });
}

void depthwise_backward_data(const Shape& S, const float* dy, const float* w, float* dx) {
    const Conv2dGeometry& g = S.g;
    const int64_t OW = g.out_width, sh = g.stride_height, sw = g.stride_width;
    // Gather form (see FlippedGeometry): each dx strip accumulates in registers.
    const FlippedGeometry f = flipped_geometry(S);
    const int64_t plane = f.height * f.width;
    // dx[ih, iw] = sum over taps of flipped[r', s'] padded[ih + row_offset + r' dh, iw + col_offset + s' dw]
    const int64_t row_offset = f.pad_top + g.pad_height - g.dilation_height * (g.kernel_height - 1);
    const int64_t col_offset = f.pad_left + g.pad_width - g.dilation_width * (g.kernel_width - 1);
    const Correlation c{g.in_height, g.in_width, g.kernel_height, g.kernel_width, g.dilation_height,
                        g.dilation_width, 1, 1, f.width};
    const DepthwisePlanes& kernels = depthwise_kernels();
    parallel_for(g.batch * g.groups, plane_grain(S), [&](int64_t begin, int64_t end) {
        float* padded = padded_scratch.get(plane + kSlack);
        std::vector<float> flipped(static_cast<size_t>(S.taps));
        std::fill(padded, padded + plane, 0.0f);  // only u's sample positions are written below
        for (int64_t t = begin; t < end; ++t) {
            const int64_t n = t / g.groups, group = t % g.groups;
            for (int64_t j = 0; j < S.kg; ++j) {
                const int64_t k = group * S.kg + j;
                const float* dyk = dy + (n * g.out_channels + k) * S.plane_out;
                for (int64_t oh = 0; oh < g.out_height; ++oh) {
                    float* row = padded + (f.pad_top + oh * sh) * f.width + f.pad_left;
                    if (sw == 1)
                        std::memcpy(row, dyk + oh * OW, static_cast<size_t>(OW) * sizeof(float));
                    else
                        for (int64_t ow = 0; ow < OW; ++ow) row[ow * sw] = dyk[oh * OW + ow];
                }
                for (int64_t tap = 0; tap < S.taps; ++tap) flipped[tap] = w[k * S.taps + (S.taps - 1 - tap)];
                // The group's first output channel writes dx, the others add to it.
                kernels.correlate(c, padded + row_offset * f.width + col_offset, flipped.data(), 0.0f, j > 0,
                                  dx + t * S.plane_in);
            }
        }
    });
}

void depthwise_backward_weights(const Shape& S, const float* x, const float* dy, float* dw) {
    const Conv2dGeometry& g = S.g;
    const DepthwisePlanes& kernels = depthwise_kernels();
    const Correlation c = forward_correlation(S);
    // Groups over the threads; each sums its weights over the whole batch (float lanes per image,
    // float64 across images), so the result does not depend on the thread count.
    parallel_for(g.groups, 1, [&](int64_t begin, int64_t end) {
        float* padded = padded_scratch.get(S.padded_floats(1));
        std::vector<double> sums(static_cast<size_t>(S.kg * S.taps));
        for (int64_t group = begin; group < end; ++group) {
            std::fill(sums.begin(), sums.end(), 0.0);
            for (int64_t n = 0; n < g.batch; ++n) {
                pad_planes(S, x + (n * g.groups + group) * S.plane_in, 0, 1, padded);
                for (int64_t j = 0; j < S.kg; ++j) {
                    const int64_t k = group * S.kg + j;
                    kernels.weight_sums(c, dy + (n * g.out_channels + k) * S.plane_out, padded,
                                        sums.data() + j * S.taps);
                }
            }
            for (int64_t i = 0; i < S.kg * S.taps; ++i) dw[group * S.kg * S.taps + i] = static_cast<float>(sums[i]);
        }
    });
}

// The forward of every image: y_g[kg, plane_out] = w_g[kg, krs] col_g[krs, plane_out] (+ bias) per
// group, col packed from the padded image by the GEMM (pack_implicit_columns) and the bias added by
// the GEMM to each block of y while it is in cache (a separate pass over y had been 10% of MNIST
// conv1's samples). Where the GEMM would read col in place rather than pack it (few filters: MNIST
// conv1's 32 on AVX-512), col is built by im2col instead, which is then the only copy (the implicit
// packer ran MNIST conv1 5-9% slower there), and a direct (1x1, stride 1, unpadded) convolution
// multiplies x itself.
void forward_images(const Shape& S, const float* x, const float* w, const float* bias, float* y) {
    const Conv2dGeometry& g = S.g;
    const int64_t x_image = g.in_channels * S.plane_in, y_image = g.out_channels * S.plane_out;
    const bool implicit = !S.direct && gemm_packs_b(S.kg);
    over_images(g.batch, [&](int64_t n, bool threaded) {
        const float* xn = x + n * x_image;
        float* yn = y + n * y_image;
        if (!implicit) {
            for_each_column_block(S, xn, threaded, [&](const ColumnBlock& col) {
                gemm_f32_with(gemm_args(false, false, S.kg, col.width, S.krs, 0.0f, w, S.krs, S.kg * S.krs, col.data,
                                        col.ld, col.group_stride, yn + col.p0, S.plane_out, S.kg * S.plane_out,
                                        g.groups),
                              nullptr, bias);
            });
            return;
        }
        float* padded = padded_scratch.get(S.padded_floats(g.in_channels));
        over_channels(threaded, g.in_channels, S.padded_plane,
                      [&](int64_t c0, int64_t c1) { pad_planes(S, xn, c0, c1, padded); });
        const ImplicitColumns columns{S, padded};
        const GemmBPacker packer{pack_implicit_columns, &columns};
        gemm_f32_with(gemm_args(false, false, S.kg, S.plane_out, S.krs, 0.0f, w, S.krs, S.kg * S.krs, nullptr, 0, 0,
                                yn, S.plane_out, S.kg * S.plane_out, g.groups),
                      &packer, bias);
    });
}

// Backward-data of a stride-1 convolution is itself a forward convolution (the transposed
// convolution): with r' = kh - 1 - r and s' = kw - 1 - s,
//     dx[c, ih, iw] = sum over k, r', s' of w[k, c, r, s] dy[k, ih + ph - r dh, iw + pw - s dw]
// is the correlation of dy, zero-padded by dh (kh - 1) - ph rows (dw (kw - 1) - pw columns), with
// the filter w'[c, k, r', s'] = w[k, c, r, s], group by group. Run through forward_images it needs
// no column matrix and no col2im. The trade: the packer then copies kg kh kw rows per position for
// a product cg deep in its rows (M = cg), where the col2im path writes, re-reads and scatters cg kh kw
// rows for a product kg deep. It pays where cg >= kg (one thread, this Xeon, cnn_cpu_bench, GFLOP/s
// col2im -> forward: ResNet 8 x 64->64 56x56 112 -> 131-133) and loses where the layer widens
// (MNIST conv2 32->64: 95 -> 78-82; conv1 1->32: 55-73 -> 8, its packing is the whole product).
// Strided convolutions, padding wider than the kernel's reach and widening layers keep col2im.
bool backward_data_is_forward(const Shape& S) {
    const Conv2dGeometry& g = S.g;
    return S.cg >= S.kg && g.stride_height == 1 && g.stride_width == 1 &&
           g.pad_height <= g.dilation_height * (g.kernel_height - 1) &&
           g.pad_width <= g.dilation_width * (g.kernel_width - 1);
}

void backward_data_as_forward(const Shape& S, const float* dy, const float* w, float* dx) {
    const Conv2dGeometry& g = S.g;
    Conv2dGeometry t = g;
    t.in_channels = g.out_channels;
    t.in_height = g.out_height;
    t.in_width = g.out_width;
    t.out_channels = g.in_channels;
    t.pad_height = g.dilation_height * (g.kernel_height - 1) - g.pad_height;
    t.pad_width = g.dilation_width * (g.kernel_width - 1) - g.pad_width;
    t.out_height = g.in_height;
    t.out_width = g.in_width;
    // w'[group * cg + c][j * taps + (taps - 1 - tap)] = w[group * kg + j][c * taps + tap].
    float* flipped = flipped_weight_scratch.get(g.out_channels * S.krs);
    for (int64_t group = 0; group < g.groups; ++group)
        for (int64_t j = 0; j < S.kg; ++j)
            for (int64_t c = 0; c < S.cg; ++c)
                for (int64_t tap = 0; tap < S.taps; ++tap)
                    flipped[((group * S.cg + c) * S.kg + j) * S.taps + (S.taps - 1 - tap)] =
                        w[((group * S.kg + j) * S.cg + c) * S.taps + tap];
    const Shape T(t);
    if (T.depthwise)  // one output channel per group of the original: one dy channel per group here
        depthwise_forward(T, dy, flipped, nullptr, dx);
    else
        forward_images(T, dy, flipped, nullptr, dx);
}

}  // namespace

void conv2d_f32(const Conv2dArgs& args) {
    const Shape S(args.g);
    const float* x = static_cast<const float*>(args.x);
    const float* w = static_cast<const float*>(args.w);
    const float* bias = static_cast<const float*>(args.bias);
    float* y = static_cast<float*>(args.y);
    if (S.depthwise) {
        depthwise_forward(S, x, w, bias, y);
        return;
    }
    forward_images(S, x, w, bias, y);
}

void conv2d_backward_data_f32(const Conv2dBackwardDataArgs& args) {
    const Shape S(args.g);
    const Conv2dGeometry& g = args.g;
    const float* dy = static_cast<const float*>(args.dy);
    const float* w = static_cast<const float*>(args.w);
    float* dx = static_cast<float*>(args.dx);
    if (S.depthwise) {
        depthwise_backward_data(S, dy, w, dx);
        return;
    }
    if (!S.direct && backward_data_is_forward(S)) {
        backward_data_as_forward(S, dy, w, dx);
        return;
    }
    const int64_t x_image = g.in_channels * S.plane_in, y_image = g.out_channels * S.plane_out;
    const int64_t OW = g.out_width;

    over_images(g.batch, [&](int64_t n, bool threaded) {
        const float* dyn = dy + n * y_image;
        float* dxn = dx + n * x_image;
        if (S.direct) {  // dx_g[cg, p] = w_g^T[cg, kg] dy_g[kg, p]: no col2im
            gemm_f32(gemm_args(true, false, S.cg, S.plane_out, S.kg, 0.0f, w, S.krs, S.kg * S.krs, dyn, S.plane_out,
                               S.kg * S.plane_out, dxn, S.plane_in, S.cg * S.plane_in, g.groups));
            return;
        }
        float* padded = padded_scratch.get(S.padded_floats(g.in_channels));
        float* col = column_scratch.get(S.col_floats());
        over_channels(threaded, g.in_channels, S.padded_plane, [&](int64_t c0, int64_t c1) {
            std::fill(padded + c0 * S.padded_plane, padded + c1 * S.padded_plane, 0.0f);
        });
        for (int64_t oh0 = 0; oh0 < g.out_height; oh0 += S.block_rows) {
            const int64_t oh1 = std::min(g.out_height, oh0 + S.block_rows);
            const int64_t p0 = oh0 * OW, width = (oh1 - oh0) * OW;
            gemm_f32(gemm_args(true, false, S.krs, width, S.kg, 0.0f, w, S.krs, S.kg * S.krs, dyn + p0, S.plane_out,
                               S.kg * S.plane_out, col, width, S.krs * width, g.groups));
            over_channels(threaded, g.in_channels, S.taps * width, [&](int64_t c0, int64_t c1) {
                col2im(S, col + c0 * S.taps * width, c0, c1, oh0, oh1, padded);
            });
        }
        over_channels(threaded, g.in_channels, S.plane_in,
                      [&](int64_t c0, int64_t c1) { unpad_planes(S, padded, c0, c1, dxn); });
    });
}

void conv2d_backward_weights_f32(const Conv2dBackwardWeightsArgs& args) {
    const Shape S(args.g);
    const Conv2dGeometry& g = args.g;
    const float* x = static_cast<const float*>(args.x);
    const float* dy = static_cast<const float*>(args.dy);
    float* dw = static_cast<float*>(args.dw);
    if (args.dbias) bias_gradient(S, dy, static_cast<float*>(args.dbias));
    if (S.depthwise) {
        depthwise_backward_weights(S, x, dy, dw);
        return;
    }
    const int64_t x_image = g.in_channels * S.plane_in, y_image = g.out_channels * S.plane_out;
    const int64_t w_floats = g.out_channels * S.krs;

    // Slot t accumulates dw over its own run of images; slot 0 writes the caller's dw, the others
    // private copies, summed in slot order at the end (deterministic for a given thread count).
    // Orientation: dw_g[kg, krs] = dy_g col_g^T, or its transpose dw_g^T[krs, kg] = col_g dy_g^T when
    // that fills the GEMM's micro-tiles better (MNIST conv1: kg = 32, krs = 9 would leave 23 of 32 tile
    // columns empty); the transposed slots are all private and transposed back at the end.
    const bool transposed = transposed_weight_gradient(S.kg, S.krs);
    const int64_t threads = thread_count();
    const int64_t slots = threads > 1 && g.batch >= threads ? threads : 1;
    const int64_t even = slots > 1 ? g.batch / slots * slots : 0;
    const int64_t private_slots = transposed ? slots : slots - 1;
    std::vector<float> private_dw(static_cast<size_t>(private_slots * w_floats));
    std::vector<char> started(static_cast<size_t>(slots), 0);

    auto image = [&](int64_t slot, int64_t n, bool threaded) {
        float* slot_dw = transposed ? private_dw.data() + slot * w_floats
                                    : slot == 0 ? dw : private_dw.data() + (slot - 1) * w_floats;
        const float* dyn = dy + n * y_image;
        for_each_column_block(S, x + n * x_image, threaded, [&](const ColumnBlock& col) {
            // The first product of a slot overwrites (beta = 0 never reads what dw held).
            const float beta = started[slot] ? 1.0f : 0.0f;
            started[slot] = 1;
            if (transposed)  // dw_g^T[krs, kg] (+)= col_g[krs, width] dy_g^T[width, kg]
                gemm_f32(gemm_args(false, true, S.krs, S.kg, col.width, beta, col.data, col.ld, col.group_stride,
                                   dyn + col.p0, S.plane_out, S.kg * S.plane_out, slot_dw, S.kg, S.krs * S.kg,
                                   g.groups));
            else  // dw_g[kg, krs] (+)= dy_g[kg, width] col_g^T[width, krs]
                gemm_f32(gemm_args(false, true, S.kg, S.krs, col.width, beta, dyn + col.p0, S.plane_out,
                                   S.kg * S.plane_out, col.data, col.ld, col.group_stride, slot_dw, S.krs,
                                   S.kg * S.krs, g.groups));
        });
    };

    if (even > 0) {
        const int64_t per_slot = even / slots;
        parallel_for(slots, 1, [&](int64_t begin, int64_t end) {
            for (int64_t slot = begin; slot < end; ++slot)
                for (int64_t n = slot * per_slot; n < (slot + 1) * per_slot; ++n) image(slot, n, false);
        });
    }
    for (int64_t n = even; n < g.batch; ++n) image(0, n, threads > 1);

    if (transposed) {
        // dw[group, j, q] = sum over slots of dw^T[group, q, j].
        for (int64_t i = 0; i < w_floats; ++i) {
            const int64_t group = i / (S.kg * S.krs), j = i / S.krs % S.kg, q = i % S.krs;
            const int64_t t = (group * S.krs + q) * S.kg + j;
            float sum = private_dw[t];
            for (int64_t slot = 1; slot < slots; ++slot) sum += private_dw[slot * w_floats + t];
            dw[i] = sum;
        }
    } else if (slots > 1) {
        parallel_for(w_floats, 4096, [&](int64_t i0, int64_t i1) {
            for (int64_t slot = 1; slot < slots; ++slot) {
                const float* src = private_dw.data() + (slot - 1) * w_floats;
                for (int64_t i = i0; i < i1; ++i) dw[i] += src[i];
            }
        });
    }
}

}  // namespace kn::cpu
