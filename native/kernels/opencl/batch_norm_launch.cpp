// batch_norm_launch.cpp: the launchers of batch_norm.cl: per-channel statistics (one work-group per
// channel), then an elementwise pass over (chunk of a plane, channel, image).
#include "opencl_backend.h"

#include <algorithm>

namespace kn::opencl {
namespace {

// One work-item per (chunk of a plane, channel, image): x = chunk, y = channel, z = image, the
// work-group min(chunks, elementwise_wg) chunks wide (a power of two) and as many channels as
// fill it. The arguments first_arg and first_arg + 1 receive each launch's first channel and
// first image (y and z are split at 65535 work-groups).
void launch_nchw(Queue& q, cl_kernel kern, const char* kname, cl_uint first_arg, int64_t chunks, int64_t channels,
                 int64_t images) {
    const int64_t wg = q.tuning().elementwise_wg;
    int64_t lx = 1;
    while (lx < chunks && lx < wg) lx *= 2;
    const int64_t ly = std::max<int64_t>(1, wg / lx);
    const int64_t channels_per_launch = kMaxBatchPerLaunch * ly;
    for (int64_t c0 = 0; c0 < channels; c0 += channels_per_launch) {
        const int64_t nc = std::min(channels_per_launch, channels - c0);
        for (int64_t n0 = 0; n0 < images; n0 += kMaxBatchPerLaunch) {
            const int64_t nn = std::min(kMaxBatchPerLaunch, images - n0);
            q.set_arg(kern, kname, first_arg, cl_long{c0});
            q.set_arg(kern, kname, first_arg + 1, cl_long{n0});
            const size_t global[3] = {round_up(chunks, lx), round_up(nc, ly), static_cast<size_t>(nn)};
            const size_t local[3] = {static_cast<size_t>(lx), static_cast<size_t>(ly), 1};
            q.launch(kern, kname, 3, global, local);
        }
    }
}

}  // namespace

void batch_norm_f32(const BatchNormArgs& a, Queue& q) {
    const int64_t channels = a.channels;
    // Without save_mean / save_invstd the statistics go to scratch buffers for the normalise pass.
    const cl_mem mean = a.save_mean ? mem(a.save_mean) : q.scratch(kScratchBatchNormMean, channels * 4);
    const cl_mem invstd = a.save_invstd ? mem(a.save_invstd) : q.scratch(kScratchBatchNormInvstd, channels * 4);
    if (a.training) {
        const char* kname = "batch_norm_statistics";
        cl_kernel kern = q.kernel(kname);
        const bool running = a.running_mean != nullptr;
        q.set_args(kern, kname, mem(a.x), mean, invstd, running ? mem(a.running_mean) : mem(a.x),
                   running ? mem(a.running_var) : mem(a.x), cl_int{running ? 1 : 0}, cl_long{a.batch},
                   cl_long{channels}, cl_long{a.spatial}, cl_float{a.eps}, cl_float{a.momentum});
        q.launch_groups(kern, kname, channels, q.tuning().batch_norm_wg);
    } else {
        const char* kname = "batch_norm_inference_statistics";
        cl_kernel kern = q.kernel(kname);
        q.set_args(kern, kname, mem(a.running_mean), mem(a.running_var), mean, invstd, cl_long{channels},
                   cl_float{a.eps});
        q.launch_1d(kern, kname, channels);
    }
    const char* kname = "batch_norm_normalize";
    cl_kernel kern = q.kernel(kname);
    q.set_args(kern, kname, mem(a.x), mem(a.y), mean, invstd, mem(a.gamma), mem(a.beta), cl_long{a.batch},
               cl_long{channels}, cl_long{a.spatial});
    launch_nchw(q, kern, kname, 9, ceil_div(a.spatial, q.tuning().batch_norm_chunk), channels, a.batch);
}

void batch_norm_backward_f32(const BatchNormBackwardArgs& a, Queue& q) {
    const int64_t channels = a.channels;
    {
        const char* kname = "batch_norm_backward_reduce";
        cl_kernel kern = q.kernel(kname);
        q.set_args(kern, kname, mem(a.x), mem(a.dy), mem(a.save_mean), mem(a.save_invstd), mem(a.dgamma),
                   mem(a.dbeta), cl_long{a.batch}, cl_long{channels}, cl_long{a.spatial});
        q.launch_groups(kern, kname, channels, q.tuning().batch_norm_wg);
    }
    if (!a.dx) return;
    const char* kname = "batch_norm_backward_data";
    cl_kernel kern = q.kernel(kname);
    q.set_args(kern, kname, mem(a.x), mem(a.dy), mem(a.gamma), mem(a.save_mean), mem(a.save_invstd), mem(a.dgamma),
               mem(a.dbeta), mem(a.dx), cl_long{a.batch}, cl_long{channels}, cl_long{a.spatial},
               cl_float{static_cast<float>(a.batch * a.spatial)}, cl_int{a.training ? 1 : 0});
    launch_nchw(q, kern, kname, 13, ceil_div(a.spatial, q.tuning().batch_norm_chunk), channels, a.batch);
}

}  // namespace kn::opencl
