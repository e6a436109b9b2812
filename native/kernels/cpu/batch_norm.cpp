// batch_norm.cpp: batch normalization over [batch, channels, spatial] on the CPU, training and
// inference forward (with PyTorch's running-statistics update) and backward.
//
// Technique: per-channel sums over batch * spatial values, then one elementwise pass. The loops over the
// elements are in batch_norm_impl.h, compiled for baseline x86-64 here and for AVX2 / AVX-512 in
// batch_norm_avx2.cpp / batch_norm_avx512.cpp; this file partitions the work and does the per-channel
// arithmetic.
//   forward, training:  pass 1  mean = sum(x) / m
//                       pass 2  var  = sum(d^2) / m,  d = (x - mean_hi) - mean_lo
//                       pass 3  y    = d * (gamma invstd) + beta
//   backward:           pass 1  dbeta = sum(dy), sum(dy (x - mean)); dgamma = invstd * the latter
//                       pass 2  dx = gamma invstd (dy - dbeta / m - (x - mean) invstd dgamma / m)
// Never E[x^2] - E[x]^2: with values around 1e4 and unit variance that difference loses all of
// float's digits (E[x^2] ~ 1e8, ulp 8). The sums accumulate in float64 lanes (8 per loop, so they
// vectorise), which makes the mean exact to a few float64 ulps whatever the offset; the mean is then
// split into a float pair mean_hi + mean_lo, so x - mean_hi is exact (Sterbenz) for data near the mean
// and the normalised value keeps its digits without float64 arithmetic per element.
// Layout: with spatial >= BATCH_NORM_PLANE_RUN (32) each (image, channel) plane is a contiguous run, and a task sums
// whole runs of its channel; with a short spatial (1-D batch norm: spatial 1) a channel's values are
// scattered one per row, so a task takes a block of channels and sums down the rows with one
// accumulator per column (contiguous loads). Tasks split the batch too when there are fewer channel
// blocks than threads; their partial sums are combined in a fixed order (deterministic for a given
// thread count).
// Napkin math: training forward reads x three times and writes y once, backward reads x and dy twice
// and writes dx once: 4 and 5 passes over the tensor at a few operations per element, memory-bound at
// any SIMD width (the three forward passes measured about equal time each). Where the channels need
// no batch split, the passes run channel by channel, so only the first reads from memory (or L3) and
// the others from L2 (channel_at_a_time).
// Measured (native/dev/cnn_cpu_bench.cpp, 2-core AMD EPYC Zen 5 VM, one thread: the machine was shared
// and the second core measured no gain), GB/s of x + y (forward) or x + dy + dx (backward) bytes,
// i.e. per call, not per pass:
//   64 x 32 x (28x28) (6.4 MB):    training forward 17.3 (~35 GB/s over its 4 passes), inference
//                                  forward 72, backward 13.4 (~22 over 5 passes); device copy 115
//   8 x 64 x (56x56) (6.4 MB):     17.4, 75, 13.9
//   1-D 128 x 512 (256 KB):        11.5, 35, 19.6 (training forward: ~45 us per call)
// With the per-element loops compiled per instruction set (batch_norm_impl.h; issue 16, same machine,
// AVX-512 / the AVX2 path on it):
//   64 x 32 x (28x28):             30-32 / 29-32, 104-118 / 100-127, 46-53 / 42
//   8 x 64 x (56x56):              31 / 30-32, 102-121 / 98-129, 52-55 / 42
//   1-D 128 x 512:                 21-22 / 19-20, 56-59 / 54-56, 35-37 / 33-34
// Channel at a time (channel_at_a_time; issue 16, Intel Xeon family 6 model 207, one thread, AVX-512,
// alternating pairs): 64 x 32 x (28x28) training forward 11.0-11.3 -> 14.1, backward 16.6-17.3 ->
// 22.9-24.2; 8 x 64 x (56x56) 12.0-12.1 -> 15.8-15.9, 16.6-17.5 -> 25.3-26.9 (a copy: 28-30 GB/s).
#define KN_ISA portable
#include "batch_norm_impl.h"

#include "cpu_kernels.h"

#include "thread_pool.h"

#include <algorithm>
#include <cmath>
#include <vector>

#ifndef BATCH_NORM_PLANE_RUN
#define BATCH_NORM_PLANE_RUN 32  // spatial sizes from here on are summed plane by plane
#endif
#ifndef BATCH_NORM_ROW_FLOATS
#define BATCH_NORM_ROW_FLOATS 512  // columns per task in the row layout (2 x 4 KB of float64 accumulators)
#endif

namespace kn::cpu {
namespace {

using Pass = BatchNormPass;

// The per-element loops for this CPU (batch_norm_impl.h: portable, AVX2 or AVX-512).
const BatchNormLoops& loops() {
    static const BatchNormLoops& chosen = KN_ISA_ENTRY(batch_norm_loops)();
    return chosen;
}

// How the [batch, channels, spatial] tensor is cut into tasks (see the header comment).
struct Partition {
    int64_t batch, channels, spatial;
    bool rows;         // the row layout (short spatial)
    int64_t block;     // channels per task
    int64_t blocks;    // channel blocks
    int64_t chunks;    // batch chunks

    Partition(int64_t n, int64_t c, int64_t s) : batch(n), channels(c), spatial(s) {
        rows = s < BATCH_NORM_PLANE_RUN;
        block = rows ? std::max<int64_t>(1, BATCH_NORM_ROW_FLOATS / s) : 1;
        blocks = (c + block - 1) / block;
        const int64_t threads = thread_count(), total = n * c * s;
        // Enough tasks to keep every thread busy with little imbalance (4 per thread), unless the
        // whole tensor is too small for the hand-off (~32K floats) or the channels already suffice.
        if (threads == 1 || total < 32768 || blocks >= 4 * threads) chunks = 1;
        else chunks = std::min(n, (4 * threads + blocks - 1) / blocks);
    }
    int64_t chunk_begin(int64_t k) const { return batch * k / chunks; }
    int64_t plane(int64_t n, int64_t c) const { return (n * channels + c) * spatial; }  // plane layout
};

// sums[c * 2 + {0, 1}] = the pass's two sums for channel c over the whole batch and spatial extent.
// mean_hi / mean_lo: per channel (unused by Pass::sum).
template <Pass P>
void channel_sums(const Partition& part, const float* x, const float* dy, const float* mean_hi,
                  const float* mean_lo, double* sums) {
    const int64_t C = part.channels, S = part.spatial;
    const auto run_sums = loops().run_sums[static_cast<int>(P)];
    const auto row_sums = loops().row_sums[static_cast<int>(P)];
    std::vector<double> partial(static_cast<size_t>(C * part.chunks * 2), 0.0);  // [c][chunk][2]
    parallel_for(part.blocks * part.chunks, 1, [&](int64_t begin, int64_t end) {
        std::vector<double> acc0, acc1;
        std::vector<float> hi, lo;
        for (int64_t task = begin; task < end; ++task) {
            const int64_t b = task / part.chunks, k = task % part.chunks;
            const int64_t c0 = b * part.block, c1 = std::min(C, c0 + part.block);
            const int64_t n0 = part.chunk_begin(k), n1 = part.chunk_begin(k + 1);
            if (!part.rows) {
                for (int64_t c = c0; c < c1; ++c) {
                    double s0 = 0, s1 = 0;
                    const float mh = mean_hi ? mean_hi[c] : 0.0f, ml = mean_lo ? mean_lo[c] : 0.0f;
                    for (int64_t n = n0; n < n1; ++n) {
                        const int64_t offset = (n * C + c) * S;
                        run_sums(x + offset, dy ? dy + offset : nullptr, S, mh, ml, s0, s1);
                    }
                    partial[(c * part.chunks + k) * 2] = s0;
                    partial[(c * part.chunks + k) * 2 + 1] = s1;
                }
                continue;
            }
            // Row layout: one float64 accumulator per column of the block, summed down the rows.
            const int64_t width = (c1 - c0) * S;
            acc0.assign(static_cast<size_t>(width), 0.0);
            acc1.assign(static_cast<size_t>(width), 0.0);
            hi.assign(static_cast<size_t>(width), 0.0f);
            lo.assign(static_cast<size_t>(width), 0.0f);
            if (mean_hi)
                for (int64_t j = 0; j < width; ++j) {
                    hi[j] = mean_hi[c0 + j / S];
                    lo[j] = mean_lo ? mean_lo[c0 + j / S] : 0.0f;
                }
            double* a = acc0.data();
            double* bb = acc1.data();
            const float* h = hi.data();
            const float* l = lo.data();
            for (int64_t n = n0; n < n1; ++n)
                row_sums(x + (n * C + c0) * S, dy ? dy + (n * C + c0) * S : nullptr, h, l, width, a, bb);
            for (int64_t c = c0; c < c1; ++c) {
                double s0 = 0, s1 = 0;
                for (int64_t s = 0; s < S; ++s) {
                    s0 += a[(c - c0) * S + s];
                    s1 += bb[(c - c0) * S + s];
                }
                partial[(c * part.chunks + k) * 2] = s0;
                partial[(c * part.chunks + k) * 2 + 1] = s1;
            }
        }
    });
    for (int64_t c = 0; c < C; ++c) {
        double s0 = 0, s1 = 0;
        for (int64_t k = 0; k < part.chunks; ++k) {
            s0 += partial[(c * part.chunks + k) * 2];
            s1 += partial[(c * part.chunks + k) * 2 + 1];
        }
        sums[c * 2] = s0;
        sums[c * 2 + 1] = s1;
    }
}

// out = ((in - p0) - p1) * p2 + p3 with per-channel parameters (the forward normalisation), or, for
// the backward, out = p2 * ((in - p3) - (x - p0) * p1) (p3 = dbeta / m); one pass over the tensor.
struct ChannelAffine {
    std::vector<float> p0, p1, p2, p3;
};

template <bool Backward>
void elementwise(const Partition& part, const ChannelAffine& k, const float* in, const float* x, float* out) {
    const int64_t N = part.batch, C = part.channels, S = part.spatial;
    const BatchNormLoops& L = loops();
    if (!part.rows) {
        parallel_for(N * C, std::max<int64_t>(1, 32768 / S), [&](int64_t begin, int64_t end) {
            for (int64_t plane = begin; plane < end; ++plane) {
                const int64_t c = plane % C, offset = plane * S;
                if constexpr (Backward)
                    L.affine_backward(in + offset, x + offset, S, k.p0[c], k.p1[c], k.p2[c], k.p3[c], out + offset);
                else
                    L.affine(in + offset, S, k.p0[c], k.p1[c], k.p2[c], k.p3[c], out + offset);
            }
        });
        return;
    }
    // Row layout: the parameters expanded to one per column of a row, so the loop runs down a
    // contiguous row of channels * spatial values.
    const int64_t width = C * S;
    ChannelAffine e;
    for (auto* v : {&e.p0, &e.p1, &e.p2, &e.p3}) v->resize(static_cast<size_t>(width));
    for (int64_t j = 0; j < width; ++j) {
        e.p0[j] = k.p0[j / S];
        e.p1[j] = k.p1[j / S];
        e.p2[j] = k.p2[j / S];
        e.p3[j] = k.p3[j / S];
    }
    const float *p0 = e.p0.data(), *p1 = e.p1.data(), *p2 = e.p2.data(), *p3 = e.p3.data();
    parallel_for(N, std::max<int64_t>(1, 32768 / width), [&](int64_t begin, int64_t end) {
        for (int64_t n = begin; n < end; ++n) {
            if constexpr (Backward)
                L.affine_row_backward(in + n * width, x + n * width, width, p0, p1, p2, p3, out + n * width);
            else
                L.affine_row(in + n * width, width, p0, p1, p2, p3, out + n * width);
        }
    });
}

// Whether each channel's passes run back to back, one task per channel, instead of each pass over
// the whole tensor: a plane-layout tensor whose channels need no batch split (no cross-task sums
// between the passes). A channel's batch x spatial values are then read once from memory and again
// from L2 (MNIST conv1: 64 x 784 floats, 200 KB; the whole 6.4 MB tensor had been read three times
// from L3 or memory in the forward, twice in the backward). The sums and their order are the
// same as the whole-tensor passes' with one batch chunk: bit-identical results.
bool channel_at_a_time(const Partition& part) { return !part.rows && part.chunks == 1; }

// fn(c) for every channel c, one task per channel (the channel-at-a-time passes).
template <typename Fn>
void each_channel(int64_t channels, Fn&& fn) {
    parallel_for(channels, 1, [&](int64_t c0, int64_t c1) {
        for (int64_t c = c0; c < c1; ++c) fn(c);
    });
}

}  // namespace

void batch_norm_f32(const BatchNormArgs& args) {
    const Partition part(args.batch, args.channels, args.spatial);
    const int64_t C = args.channels;
    const double m = static_cast<double>(args.batch) * static_cast<double>(args.spatial);
    const float* x = static_cast<const float*>(args.x);
    const float* gamma = static_cast<const float*>(args.gamma);
    const float* beta = static_cast<const float*>(args.beta);
    float* running_mean = static_cast<float*>(args.running_mean);
    float* running_var = static_cast<float*>(args.running_var);
    float* save_mean = static_cast<float*>(args.save_mean);
    float* save_invstd = static_cast<float*>(args.save_invstd);

    ChannelAffine k;
    for (auto* v : {&k.p0, &k.p1, &k.p2, &k.p3}) v->resize(static_cast<size_t>(C));
    // Channel c's normalisation parameters (the same arithmetic on every path): the mean as a float
    // pair, then the scale gamma invstd and the shift beta.
    auto set_mean = [&](int64_t c, double mean) {
        k.p0[c] = static_cast<float>(mean);
        k.p1[c] = static_cast<float>(mean - static_cast<double>(k.p0[c]));
        if (save_mean) save_mean[c] = k.p0[c];
    };
    auto set_scale = [&](int64_t c, double invstd) {
        k.p2[c] = static_cast<float>(static_cast<double>(gamma[c]) * invstd);
        k.p3[c] = beta[c];
        if (save_invstd) save_invstd[c] = static_cast<float>(invstd);
    };
    auto set_variance = [&](int64_t c, double mean, double var) {
        if (running_mean) {
            const double momentum = args.momentum;
            const double unbiased = m > 1 ? var * m / (m - 1) : var;
            running_mean[c] = static_cast<float>((1 - momentum) * running_mean[c] + momentum * mean);
            running_var[c] = static_cast<float>((1 - momentum) * running_var[c] + momentum * unbiased);
        }
        set_scale(c, 1.0 / std::sqrt(var + static_cast<double>(args.eps)));
    };
    if (args.training && channel_at_a_time(part)) {
        // All three passes per channel, so the second and third read it from L2 (see channel_at_a_time).
        const BatchNormLoops& L = loops();
        float* y = static_cast<float*>(args.y);
        each_channel(C, [&](int64_t c) {
            const int64_t N = part.batch, S = part.spatial;
            double s0 = 0, s1 = 0;
            for (int64_t n = 0; n < N; ++n) L.run_sums[0](x + part.plane(n, c), nullptr, S, 0.0f, 0.0f, s0, s1);
            const double mean = s0 / m;
            set_mean(c, mean);
            s0 = s1 = 0;
            for (int64_t n = 0; n < N; ++n) L.run_sums[1](x + part.plane(n, c), nullptr, S, k.p0[c], k.p1[c], s0, s1);
            set_variance(c, mean, s0 / m);
            for (int64_t n = 0; n < N; ++n)
                L.affine(x + part.plane(n, c), S, k.p0[c], k.p1[c], k.p2[c], k.p3[c], y + part.plane(n, c));
        });
        return;
    }
    if (args.training) {
        std::vector<double> sums(static_cast<size_t>(2 * C)), mean(static_cast<size_t>(C));
        channel_sums<Pass::sum>(part, x, nullptr, nullptr, nullptr, sums.data());
        for (int64_t c = 0; c < C; ++c) {
            mean[c] = sums[2 * c] / m;
            set_mean(c, mean[c]);
        }
        channel_sums<Pass::squared_deviation>(part, x, nullptr, k.p0.data(), k.p1.data(), sums.data());
        for (int64_t c = 0; c < C; ++c) set_variance(c, mean[c], sums[2 * c] / m);
    } else {
        for (int64_t c = 0; c < C; ++c) {  // inference: the running statistics
            k.p0[c] = running_mean[c];
            k.p1[c] = 0.0f;
            if (save_mean) save_mean[c] = running_mean[c];
            set_scale(c, 1.0 / std::sqrt(static_cast<double>(running_var[c]) + static_cast<double>(args.eps)));
        }
    }
    elementwise<false>(part, k, x, nullptr, static_cast<float*>(args.y));
}

void batch_norm_backward_f32(const BatchNormBackwardArgs& args) {
    const Partition part(args.batch, args.channels, args.spatial);
    const int64_t C = args.channels;
    const double m = static_cast<double>(args.batch) * static_cast<double>(args.spatial);
    const float* x = static_cast<const float*>(args.x);
    const float* dy = static_cast<const float*>(args.dy);
    const float* gamma = static_cast<const float*>(args.gamma);
    const float* save_mean = static_cast<const float*>(args.save_mean);
    const float* save_invstd = static_cast<const float*>(args.save_invstd);
    float* dgamma = static_cast<float*>(args.dgamma);
    float* dbeta = static_cast<float*>(args.dbeta);

    ChannelAffine k;
    for (auto* v : {&k.p0, &k.p1, &k.p2, &k.p3}) v->resize(static_cast<size_t>(C));
    // Channel c's gradients and dx parameters from its two sums (the same arithmetic on either path).
    auto set_gradients = [&](int64_t c, double sum_dy, double sum_dy_xmu) {
        const double invstd = save_invstd[c];
        dbeta[c] = static_cast<float>(sum_dy);
        dgamma[c] = static_cast<float>(invstd * sum_dy_xmu);
        // training:  dx = gamma invstd (dy - dbeta / m - (x - mean) invstd^2 sum(dy (x - mean)) / m)
        // inference: dx = gamma invstd dy, as the forward form ((dy - 0) - 0) * gamma invstd + 0, so a
        //            non-finite x cannot leak into dx through a 0 * inf.
        k.p2[c] = static_cast<float>(static_cast<double>(gamma[c]) * invstd);
        k.p0[c] = args.training ? save_mean[c] : 0.0f;
        k.p1[c] = args.training ? static_cast<float>(invstd * invstd * sum_dy_xmu / m) : 0.0f;
        k.p3[c] = args.training ? static_cast<float>(sum_dy / m) : 0.0f;
    };
    if (args.training && channel_at_a_time(part)) {
        // Both passes per channel, the second reading x and dy from L2 (see channel_at_a_time).
        float* dx = static_cast<float*>(args.dx);
        each_channel(C, [&](int64_t c) {
            double sum_dy = 0, sum_dy_xmu = 0;
            for (int64_t n = 0; n < part.batch; ++n) {
                const int64_t at = part.plane(n, c);
                loops().run_sums[2](x + at, dy + at, part.spatial, save_mean[c], 0.0f, sum_dy, sum_dy_xmu);
            }
            set_gradients(c, sum_dy, sum_dy_xmu);
            for (int64_t n = 0; dx && n < part.batch; ++n) {
                const int64_t at = part.plane(n, c);
                loops().affine_backward(dy + at, x + at, part.spatial, k.p0[c], k.p1[c], k.p2[c], k.p3[c], dx + at);
            }
        });
        return;
    }
    std::vector<double> sums(static_cast<size_t>(2 * C));
    channel_sums<Pass::gradient>(part, x, dy, save_mean, nullptr, sums.data());
    for (int64_t c = 0; c < C; ++c) set_gradients(c, sums[2 * c], sums[2 * c + 1]);
    if (!args.dx) return;
    if (args.training) elementwise<true>(part, k, dy, x, static_cast<float*>(args.dx));
    else elementwise<false>(part, k, dy, nullptr, static_cast<float*>(args.dx));
}

}  // namespace kn::cpu
