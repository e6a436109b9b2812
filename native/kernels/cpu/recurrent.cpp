// recurrent.cpp: the recurrent cells on the CPU (one LSTM / GRU step after the layer's GEMMs; kernels.h
// has the math and the saved layouts). The row loops are span kernels (span_kernels_impl.h), compiled
// per instruction set so the sigmoid / tanh approximations vectorise; here they are only threaded:
// rows on the pool, at least kGrain cells per hand-off. Napkin math for batch 64, hidden 128: 8K cells,
// five transcendentals each at ~1 cycle per element with AVX-512 plus ~40 bytes of traffic per cell,
// a few microseconds, about the cost of one hand-off to the pool: so a step that small runs on two
// chunks at most.
#include "cpu_kernels.h"
#include "span_kernels.h"
#include "thread_pool.h"

#include <algorithm>

namespace kn::cpu {
namespace {
constexpr int64_t kGrain = 1 << 12;  // cells (batch rows x hidden) per hand-off

int64_t row_grain(int64_t hidden) { return std::max<int64_t>(1, kGrain / hidden); }
}  // namespace

void lstm_cell_f32(const LstmCellArgs& a) {
    const SpanKernels& K = span_kernels();
    parallel_for(a.batch, row_grain(a.hidden), [&](int64_t begin, int64_t end) { K.lstm_cell(a, begin, end); });
}

void lstm_cell_backward_f32(const LstmCellBackwardArgs& a) {
    const SpanKernels& K = span_kernels();
    parallel_for(a.batch, row_grain(a.hidden), [&](int64_t begin, int64_t end) { K.lstm_cell_backward(a, begin, end); });
}

void gru_cell_f32(const GruCellArgs& a) {
    const SpanKernels& K = span_kernels();
    parallel_for(a.batch, row_grain(a.hidden), [&](int64_t begin, int64_t end) { K.gru_cell(a, begin, end); });
}

void gru_cell_backward_f32(const GruCellBackwardArgs& a) {
    const SpanKernels& K = span_kernels();
    parallel_for(a.batch, row_grain(a.hidden), [&](int64_t begin, int64_t end) { K.gru_cell_backward(a, begin, end); });
}

}  // namespace kn::cpu
