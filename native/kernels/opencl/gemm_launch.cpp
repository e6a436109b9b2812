// gemm_launch.cpp: the launcher of gemm.cl. C tiles of TILE_M x TILE_N (Tuning) along x, batches
// along z in slices of 65535; k == 0 or alpha == 0 only scales C, as BLAS does.
#include "opencl_backend.h"

#include <algorithm>

namespace kn::opencl {

void gemm_f32(const GemmArgs& g, Queue& q) {
    const Tuning& t = q.tuning();
    if (g.k == 0 || g.alpha == 0.0f) {
        // BLAS semantics: A and B are not read, C = beta * C (and beta == 1 leaves C alone).
        if (g.beta == 1.0f) return;
        const char* kname = "gemm_scale_c";
        cl_kernel kern = q.kernel(kname);
        for (int64_t first = 0; first < g.batch_count; first += kMaxBatchPerLaunch) {
            const int64_t batches = std::min(kMaxBatchPerLaunch, g.batch_count - first);
            q.set_args(kern, kname, cl_long{g.m}, cl_long{g.n}, cl_float{g.beta}, mem(g.c), cl_long{g.ldc},
                       cl_long{g.stride_c}, cl_long{first});
            const size_t global[3] = {round_up(g.m * g.n, t.elementwise_wg), 1, static_cast<size_t>(batches)};
            const size_t local[3] = {static_cast<size_t>(t.elementwise_wg), 1, 1};
            q.launch(kern, kname, 3, global, local);
        }
        return;
    }
    const char* kname = g.trans_a ? (g.trans_b ? "gemm_tt" : "gemm_tn") : (g.trans_b ? "gemm_nt" : "gemm_nn");
    cl_kernel kern = q.kernel(kname);
    const int64_t tiles = ceil_div(g.m, t.tile_m) * ceil_div(g.n, t.tile_n);
    const size_t local[3] = {static_cast<size_t>(t.gemm_local_x()), static_cast<size_t>(t.gemm_local_y()), 1};
    for (int64_t first = 0; first < g.batch_count; first += kMaxBatchPerLaunch) {
        const int64_t batches = std::min(kMaxBatchPerLaunch, g.batch_count - first);
        q.set_args(kern, kname, cl_long{g.m}, cl_long{g.n}, cl_long{g.k}, cl_float{g.alpha}, cl_float{g.beta},
                   mem(g.a), cl_long{g.lda}, cl_long{g.stride_a}, mem(g.b), cl_long{g.ldb}, cl_long{g.stride_b},
                   mem(g.c), cl_long{g.ldc}, cl_long{g.stride_c}, cl_long{first});
        const size_t global[3] = {static_cast<size_t>(tiles) * local[0], local[1], static_cast<size_t>(batches)};
        q.launch(kern, kname, 3, global, local);
    }
}

// kn_linear_f32: the GEMM, then bias and activation in one pass over y (an activation alone: the
// unary launcher). One more pass over y than the CPU's epilogue inside the GEMM.
void linear_f32(const LinearArgs& args, Queue& q) {
    gemm_f32(args.gemm, q);
    const GemmArgs& g = args.gemm;
    if (args.bias)  // the identity as SCALE by 1, exact
        bias_unary_f32(g.c, args.bias, g.m, g.n, args.activate ? args.activation : KN_UNARY_SCALE,
                       args.activate ? args.alpha : 1.0f, q);
    else if (args.activate)
        unary_f32({args.activation, args.alpha, g.c, g.c, g.m * g.n}, q);
}

// kn_linear_backward_f32: the activation's backward, then the column sums of dz with the reduction.
void linear_backward_f32(const LinearBackwardArgs& args, Queue& q) {
    unary_backward_f32({args.activation, args.alpha, args.x, args.y, args.dy, args.dz, args.m * args.n}, q);
    if (args.dbias) {
        reduce_f32({KN_REDUCE_SUM, args.dz, args.dbias, 1, args.m, args.n}, q);
    }
}

}  // namespace kn::opencl
