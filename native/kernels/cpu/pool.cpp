// pool.cpp: 2-D max and average pooling on the CPU (NCHW), forward and backward: the threading and
// the choice of instruction set; the per-plane loops are in pool_impl.h, compiled here for the
// baseline ISA and in pool_avx2.cpp / pool_avx512.cpp for wider vectors.
//
// Technique: one (image, channel) plane per task, planes dealt out to the threads in contiguous runs.
// Within a plane, each output row splits into the columns whose window lies entirely inside the input
// (the interior) and the few at the left/right border. The interior is computed in place in the
// output row, tap by tap in row-major window order:
//     max:  take = v > best || (v is NaN && best is not)          (first maximum; NaN wins)
//           best = take ? v : best, index = take ? position : index
//     avg:  sum += v, then sum *= 1 / divisor
// with v = x[ih, ow * stride + s - pad]: a branch-free loop over ow that the compiler vectorises
// (strides 1 and 2 are compiled as constants, so their loads are plain or even/odd shuffles). The
// border outputs take the same steps over their window clipped to the input, so padding never wins a
// max and never adds to a sum; rows outside the input are skipped for both.
// Backward, per plane: max zeroes dx and adds every dy to its recorded input, in output order; avg
// spreads each output row's dy / divisor along the row, then writes each dx row once as the sum of the
// spreads of the output rows covering it (pool_impl.h); where the windows neither overlap nor reach
// into padding (2x2/2, 3x3/3, global pooling) each dx element belongs to one window, and each output
// row's dy / divisor is written straight into the dx rows it covers (avg_backward_tiled). One thread,
// Intel Xeon family 6 model 207, alternating builds, GB/s of dx + dy (a copy: 25-28 on the same runs;
// benchmarks/results/2026-12-06-intel-xeon-pooling): MNIST 64 x 32 28x28 2x2/2 7.1-7.4 -> 19.7-20.4
// with AVX-512, 6.3-6.6 -> 16.4-16.6 on the AVX2 path; global 7x7 over 64 x 512 planes 3.6 -> 7.6-8.0
// and 3.5-3.7 -> 7.7-8.2. The general max backward's index check vectorised (it had compiled to a
// branch per index): ResNet stem 11.6-13.9 -> 16.8-17.1 (AVX-512). With AVX-512, max pooling's 2x2/2 windows
// tile the plane, and each dx element is written once instead (max_backward_2x2): MNIST max
// backward, best of 300 calls against the library before it, 64 x 32 28x28 465-496 -> 378-389 us,
// 64 x 64 14x14 189-191 -> 178 (one thread, Intel Xeon family 6 model 207, alternating pairs; an
// earlier pair of runs read 619-635 -> 400-416 and 253-255 -> 199-202). One thread owns a whole plane, so neither
// needs atomics and the order of the additions is fixed: deterministic.
// Napkin math (MNIST: 64 x 32 planes of 28x28, 2x2 window, stride 2): 6.4 MB in, 1.6 MB out and
// 1.6 MB of indices; with the NaN-aware select a max costs ~6 vector operations per tap, so at 4
// lanes (SSE2) it is compute-bound (2.4 ms on one core), at 16 (AVX-512, masked, pool_impl.h) 0.6 ms.
// Measured (native/dev/cnn_cpu_bench.cpp, 2-core AMD EPYC Zen 5 VM, AVX-512, one thread: the machine
// was shared and the second core measured no gain), GB/s of x + y (+ int32 indices for max) moved:
//   MNIST 64 x 32 28x28, 2x2/2 (in L3):      max 28.7, avg 26.7, max backward 38.4, avg backward 9.7
//                                            (a device copy of x: 92 GB/s read + write)
//   ResNet stem 8 x 64 112x112, 3x3/2 pad 1  max 9.4, avg 18.9, max backward 20.8, avg backward 11.0
//   (26 MB in, from DRAM):                   (the rows are prefetched by hand: 2.4x faster than without)
#define KN_ISA portable
#include "pool_impl.h"

#include "thread_pool.h"

#include <algorithm>
#include <atomic>
#include <limits>
#include <vector>

namespace kn::cpu {
namespace {

const PoolPlanes& pool_planes() {
    static const PoolPlanes& chosen = KN_ISA_ENTRY(planes)();
    return chosen;
}

// Whole planes per task, at least ~32K input elements per chunk of the pool.
int64_t plane_grain(const Pool2dGeometry& g) {
    return std::max<int64_t>(1, 32768 / std::max<int64_t>(1, g.in_height * g.in_width));
}

}  // namespace

void pool2d_f32(const Pool2dArgs& args) {
    const PoolPlanes& planes = pool_planes();
    parallel_for(args.g.batch * args.g.channels, plane_grain(args.g),
                 [&](int64_t begin, int64_t end) { planes.forward(args, begin, end); });
}

void pool2d_backward_f32(const Pool2dBackwardArgs& args) {
    const PoolPlanes& planes = pool_planes();
    const int64_t scratch_floats =
        args.op == KN_POOL_AVG ? (args.g.out_height + 1) * args.g.in_width + args.g.out_width : 0;
    // The first out-of-plane index over all planes (each task reports its own first; keep the least).
    std::atomic<int64_t> first_bad{std::numeric_limits<int64_t>::max()};
    parallel_for(args.g.batch * args.g.channels, plane_grain(args.g), [&](int64_t begin, int64_t end) {
        std::vector<float> scratch(static_cast<size_t>(scratch_floats));
        const int64_t bad = planes.backward(args, begin, end, scratch.data());
        if (bad < 0) return;
        int64_t seen = first_bad.load();
        while (bad < seen && !first_bad.compare_exchange_weak(seen, bad)) {}
    });
    const int64_t bad = first_bad.load();
    if (bad != std::numeric_limits<int64_t>::max()) {
        const Pool2dGeometry& g = args.g;
        const int64_t plane_out = g.out_height * g.out_width, plane = bad / plane_out, o = bad % plane_out;
        fail(KN_ERROR_INVALID_ARGUMENT, "pool2d_backward: indices holds ", static_cast<const int32_t*>(args.indices)[bad],
             " at position ", bad, " (image ", plane / g.channels, ", channel ", plane % g.channels, ", output row ",
             o / g.out_width, ", column ", o % g.out_width, "), outside the ", g.in_height, "x", g.in_width,
             " input plane; max pooling's backward needs the indices its forward call wrote (dx is undefined)");
    }
}

}  // namespace kn::cpu
