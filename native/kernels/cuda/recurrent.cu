// recurrent.cu: the recurrent cells on CUDA: one LSTM / GRU step after the layer's GEMMs, forward and
// backward, each one kernel (kernels.h has the math and the saved layouts, ops.h the records).
//
// One thread per cell (row b, unit j), grid-stride; consecutive threads take consecutive units of a
// row, so each gate block is read and written coalesced. The kernels take the records by value (a
// few pointers and two sizes) and read optional operands through null checks that are uniform across
// the grid. A masked row (mask[b] == 0) keeps its previous state forward and passes its gradient
// straight through backward. Napkin math for batch 64, hidden 128: 8K cells, ~56 bytes of traffic
// per cell forward (gates, c_prev, h, c, saved) and ~60 backward: well under a microsecond of HBM
// bandwidth, so a step costs about one launch (~3 us) each way; the fusion is what saves the dozen
// launches the composed version pays.
#include "activations.cuh"
#include "cuda_kernels.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

namespace kn::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kBlocksPerSm = 16;

__device__ __forceinline__ bool updates(const float* mask, int64_t b) { return mask == nullptr || mask[b] != 0.0f; }

__global__ void lstm_cell_kernel(LstmCellArgs a) {
    const int64_t H = a.hidden, total = a.batch * H;
    const float* gates = static_cast<const float*>(a.gates);
    const float* c_prev = static_cast<const float*>(a.c_prev);
    const float* h_prev = static_cast<const float*>(a.h_prev);
    float* saved = static_cast<float*>(a.saved);
    for (int64_t e = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; e < total; e += int64_t{gridDim.x} * blockDim.x) {
        const int64_t b = e / H, j = e - b * H;
        const float* g4 = gates + b * 4 * H + j;
        const float i = stable_sigmoid(g4[0]), f = stable_sigmoid(g4[H]), g = tanhf(g4[2 * H]), o = stable_sigmoid(g4[3 * H]);
        const float cn = f * c_prev[e] + i * g;
        const float tc = tanhf(cn);
        if (saved) {
            float* s = saved + b * 5 * H + j;
            s[0] = i;
            s[H] = f;
            s[2 * H] = g;
            s[3 * H] = o;
            s[4 * H] = tc;
        }
        const bool update = updates(static_cast<const float*>(a.mask), b);
        static_cast<float*>(a.c)[e] = update ? cn : c_prev[e];
        static_cast<float*>(a.h)[e] = update ? o * tc : h_prev[e];
    }
}

__global__ void lstm_cell_backward_kernel(LstmCellBackwardArgs a) {
    const int64_t H = a.hidden, total = a.batch * H;
    const float* dh = static_cast<const float*>(a.dh);
    const float* dc = static_cast<const float*>(a.dc);
    float* dc_prev = static_cast<float*>(a.dc_prev);
    float* dh_prev = static_cast<float*>(a.dh_prev);
    for (int64_t e = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; e < total; e += int64_t{gridDim.x} * blockDim.x) {
        const int64_t b = e / H, j = e - b * H;
        const float dhj = dh ? dh[e] : 0.0f, dcj = dc ? dc[e] : 0.0f;
        float* dg = static_cast<float*>(a.dgates) + b * 4 * H + j;
        if (!updates(static_cast<const float*>(a.mask), b)) {
            dg[0] = dg[H] = dg[2 * H] = dg[3 * H] = 0.0f;
            if (dc_prev) dc_prev[e] = dcj;
            if (dh_prev) dh_prev[e] = dhj;
            continue;
        }
        const float* s = static_cast<const float*>(a.saved) + b * 5 * H + j;
        const float i = s[0], f = s[H], g = s[2 * H], o = s[3 * H], tc = s[4 * H];
        const float dct = dcj + dhj * o * (1.0f - tc * tc);
        dg[0] = dct * g * i * (1.0f - i);
        dg[H] = dct * static_cast<const float*>(a.c_prev)[e] * f * (1.0f - f);
        dg[2 * H] = dct * i * (1.0f - g * g);
        dg[3 * H] = dhj * tc * o * (1.0f - o);
        if (dc_prev) dc_prev[e] = dct * f;
        if (dh_prev) dh_prev[e] = 0.0f;
    }
}

__global__ void gru_cell_kernel(GruCellArgs a) {
    const int64_t H = a.hidden, total = a.batch * H;
    const float* xg = static_cast<const float*>(a.x_gates);
    const float* hg = static_cast<const float*>(a.h_gates);
    const float* h_prev = static_cast<const float*>(a.h_prev);
    float* saved = static_cast<float*>(a.saved);
    for (int64_t e = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; e < total; e += int64_t{gridDim.x} * blockDim.x) {
        const int64_t b = e / H, j = e - b * H;
        const int64_t at = b * 3 * H + j;
        const float r = stable_sigmoid(xg[at] + hg[at]);
        const float z = stable_sigmoid(xg[at + H] + hg[at + H]);
        const float n = tanhf(xg[at + 2 * H] + r * hg[at + 2 * H]);
        if (saved) {
            saved[at] = r;
            saved[at + H] = z;
            saved[at + 2 * H] = n;
        }
        const bool update = updates(static_cast<const float*>(a.mask), b);
        static_cast<float*>(a.h)[e] = update ? (1.0f - z) * n + z * h_prev[e] : h_prev[e];
    }
}

__global__ void gru_cell_backward_kernel(GruCellBackwardArgs a) {
    const int64_t H = a.hidden, total = a.batch * H;
    const float* saved = static_cast<const float*>(a.saved);
    float* dxg = static_cast<float*>(a.dx_gates);
    float* dhg = static_cast<float*>(a.dh_gates);
    float* dh_prev = static_cast<float*>(a.dh_prev);
    for (int64_t e = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; e < total; e += int64_t{gridDim.x} * blockDim.x) {
        const int64_t b = e / H, j = e - b * H;
        const int64_t at = b * 3 * H + j;
        const float d = static_cast<const float*>(a.dh)[e];
        if (!updates(static_cast<const float*>(a.mask), b)) {
            dxg[at] = dxg[at + H] = dxg[at + 2 * H] = 0.0f;
            dhg[at] = dhg[at + H] = dhg[at + 2 * H] = 0.0f;
            if (dh_prev) dh_prev[e] = d;
            continue;
        }
        const float r = saved[at], z = saved[at + H], n = saved[at + 2 * H];
        const float dn = d * (1.0f - z) * (1.0f - n * n);
        const float dz = d * (static_cast<const float*>(a.h_prev)[e] - n) * z * (1.0f - z);
        const float dr = dn * static_cast<const float*>(a.h_gates)[at + 2 * H] * r * (1.0f - r);
        dxg[at] = dr;
        dxg[at + H] = dz;
        dxg[at + 2 * H] = dn;
        dhg[at] = dr;
        dhg[at + H] = dz;
        dhg[at + 2 * H] = dn * r;
        if (dh_prev) dh_prev[e] = d * z;
    }
}

unsigned blocks_for(int64_t total, const LaunchContext& ctx) {
    const int64_t blocks = std::min<int64_t>((total + kThreads - 1) / kThreads, int64_t{std::max(ctx.sm_count, 1)} * kBlocksPerSm);
    return static_cast<unsigned>(std::max<int64_t>(blocks, 1));
}

}  // namespace

cudaError_t lstm_cell_f32(const LstmCellArgs& a, const LaunchContext& ctx) {
    lstm_cell_kernel<<<blocks_for(a.batch * a.hidden, ctx), kThreads, 0, ctx.stream>>>(a);
    return cudaGetLastError();
}

cudaError_t lstm_cell_backward_f32(const LstmCellBackwardArgs& a, const LaunchContext& ctx) {
    lstm_cell_backward_kernel<<<blocks_for(a.batch * a.hidden, ctx), kThreads, 0, ctx.stream>>>(a);
    return cudaGetLastError();
}

cudaError_t gru_cell_f32(const GruCellArgs& a, const LaunchContext& ctx) {
    gru_cell_kernel<<<blocks_for(a.batch * a.hidden, ctx), kThreads, 0, ctx.stream>>>(a);
    return cudaGetLastError();
}

cudaError_t gru_cell_backward_f32(const GruCellBackwardArgs& a, const LaunchContext& ctx) {
    gru_cell_backward_kernel<<<blocks_for(a.batch * a.hidden, ctx), kThreads, 0, ctx.stream>>>(a);
    return cudaGetLastError();
}

}  // namespace kn::cuda
