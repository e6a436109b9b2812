// recurrent.cpp: the recurrent cells on the CPU (one LSTM / GRU step after the layer's GEMMs; kernels.h
// has the math and the saved layouts). The row loops are span kernels (span_kernels_impl.h), compiled
// per instruction set so the sigmoid / tanh approximations vectorise; here they are only threaded:
// rows on the pool, with at least ~15 us of work per hand-off. Measured on the 2-core EPYC (AVX-512,
// one thread, batch 64 x hidden 128 = 8K cells): LSTM forward 16 us (~2 ns per cell: five
// transcendentals), backward 3.5 us (~0.4 ns per cell, no transcendentals). With the other core busy
// (as on a shared CI machine), splitting those 8K cells in two made the forward 23 us and the backward
// 6-8 us: a hand-off costs ~10 us there. Hence the grains: 8K cells forward, 32K backward.
#include "cpu_kernels.h"
#include "span_kernels.h"
#include "thread_pool.h"

#include <algorithm>

namespace kn::cpu {
namespace {
constexpr int64_t kForwardGrain = 1 << 13;   // cells (batch rows x hidden) per hand-off
constexpr int64_t kBackwardGrain = 1 << 15;

int64_t rows(int64_t cells, int64_t hidden) { return std::max<int64_t>(1, cells / hidden); }
}  // namespace

void lstm_cell_f32(const LstmCellArgs& a) {
    const SpanKernels& K = span_kernels();
    parallel_for(a.batch, rows(kForwardGrain, a.hidden), [&](int64_t begin, int64_t end) { K.lstm_cell(a, begin, end); });
}

void lstm_cell_backward_f32(const LstmCellBackwardArgs& a) {
    const SpanKernels& K = span_kernels();
    parallel_for(a.batch, rows(kBackwardGrain, a.hidden),
                 [&](int64_t begin, int64_t end) { K.lstm_cell_backward(a, begin, end); });
}

void gru_cell_f32(const GruCellArgs& a) {
    const SpanKernels& K = span_kernels();
    parallel_for(a.batch, rows(kForwardGrain, a.hidden), [&](int64_t begin, int64_t end) { K.gru_cell(a, begin, end); });
}

void gru_cell_backward_f32(const GruCellBackwardArgs& a) {
    const SpanKernels& K = span_kernels();
    parallel_for(a.batch, rows(kBackwardGrain, a.hidden),
                 [&](int64_t begin, int64_t end) { K.gru_cell_backward(a, begin, end); });
}

}  // namespace kn::cpu
