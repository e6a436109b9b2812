// fuzz_c_api.cpp: libFuzzer target for the C API's argument validation (kernels.h), on the CPU device.
//
// The input is a little program: each step picks one export and draws its arguments from the bytes
// that follow: sizes, strides, offsets and shapes from a table of edge values (0, 1, -1, 2^31, 2^62 + 2,
// 2^63 - 1, ...) or raw 64-bit words, floats from {NaN, +-inf, 0.5, 1e30, ...} or raw bits, enums as
// raw int32 (valid, -1, 999, INT32_MIN), and buffer handles from eight slots that hold a live buffer
// of up to 4 KiB (its bytes written from the input, so index and label buffers hold anything), a freed
// handle, NULL, or a forged pointer. What must hold for every input (ASan/UBSan and the traps below
// catch the rest):
//   - no crash, no out-of-bounds access, no undefined behaviour, no leak of buffers;
//   - every status is a kn_status value, and every failure comes with a kn_last_error() message;
//   - when everything is freed, the device reports zero live buffers again.
// Build: cmake -DKN_SANITIZE=address,undefined -DKN_BUILD_FUZZERS=ON with CXX=clang++-14 (see
// scripts/ci-sanitizers.sh, which also runs it); seed corpus in native/fuzz/corpus/c_api.
#include "kernels.h"

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <vector>

namespace {

constexpr int kSlots = 8;
constexpr int64_t kMaxBytes = 4096;  // live buffers stay small: the point is validation, not work

// Reads the fuzz input front to back; past the end everything reads as zero.
class Input {
public:
    Input(const uint8_t* data, size_t size) : data_(data), size_(size) {}
    bool done() const { return pos_ >= size_; }
    uint8_t byte() { return pos_ < size_ ? data_[pos_++] : 0; }
    uint64_t word(int bytes) {
        uint64_t v = 0;
        for (int i = 0; i < bytes; ++i) v |= uint64_t{byte()} << (8 * i);
        return v;
    }
    // A size, stride, offset or dimension: mostly small or an edge value, sometimes raw.
    int64_t integer() {
        static const int64_t edges[] = {0, 1, 2, 3, 4, 5, 7, 8, 16, 31, 64, 1024, -1, -2,
                                        std::numeric_limits<int64_t>::max(), std::numeric_limits<int64_t>::min(),
                                        std::numeric_limits<int64_t>::max() - 1, std::numeric_limits<int64_t>::max() - 511,
                                        (int64_t{1} << 31) - 1, int64_t{1} << 31, int64_t{1} << 32,
                                        (int64_t{1} << 61) - 1, int64_t{1} << 62, (int64_t{1} << 62) + 2,
                                        std::numeric_limits<int64_t>::max() / 2 + 1, 1 << 20, (1 << 20) + 1, 6};
        uint8_t b = byte();
        if (b < 128) return b % 9;  // small values make the valid calls that reach the kernels
        if (b < 240) return edges[b % (sizeof edges / sizeof edges[0])];
        return static_cast<int64_t>(word(8));
    }
    float real() {
        static const float edges[] = {0.0f, 1.0f, -1.0f, 0.5f, 2.0f, 0.9f, 0.999f, 1e-8f, 1e30f, -0.0f,
                                      std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
                                      -std::numeric_limits<float>::infinity(), std::numeric_limits<float>::denorm_min(),
                                      std::numeric_limits<float>::max(), 3.0f};
        uint8_t b = byte();
        if (b < 224) return edges[b % (sizeof edges / sizeof edges[0])];
        uint32_t bits = static_cast<uint32_t>(word(4));
        float f;
        std::memcpy(&f, &bits, sizeof f);
        return f;
    }
    int32_t enumeration(int32_t count) {
        uint8_t b = byte();
        if (b < 200) return b % count;
        static const int32_t edges[] = {-1, 999, std::numeric_limits<int32_t>::min(), std::numeric_limits<int32_t>::max()};
        return b < 250 ? count + (b % 3) : edges[b % 4];
    }
    int32_t flag() { return static_cast<int32_t>(static_cast<int8_t>(byte())); }

private:
    const uint8_t* data_;
    size_t size_;
    size_t pos_ = 0;
};

kn_device* cpu() {
    static kn_device* d = [] {
        kn_device* found = nullptr;
        if (kn_device_find("cpu", &found) != KN_OK) std::abort();
        return found;
    }();
    return d;
}

// Every call goes through here: a status must be a kn_status and a failure must say why.
void check(kn_status s) {
    if (s < KN_OK || s > KN_ERROR_INTERNAL) __builtin_trap();
    if (s != KN_OK && kn_last_error()[0] == '\0') __builtin_trap();
    if (s == KN_ERROR_INTERNAL) __builtin_trap();  // "a bug in this library"
}

struct Slots {
    kn_buffer* live[kSlots] = {};
    kn_buffer* stale[kSlots] = {};  // handles freed by this input: passing them must be refused

    // A handle for an argument: live, stale, NULL or forged (the library must not read through it).
    kn_buffer* pick(Input& in) {
        uint8_t b = in.byte();
        int slot = b % kSlots;
        switch (b >> 6) {
            case 0: case 1: return live[slot];
            case 2: return stale[slot] ? stale[slot] : live[slot];
            default: return b & 1 ? nullptr : reinterpret_cast<kn_buffer*>(uintptr_t{0x1000} + 16 * slot);
        }
    }
    void create(Input& in) {
        int slot = in.byte() % kSlots;
        int64_t bytes = in.integer();
        if (bytes > kMaxBytes && bytes < (int64_t{1} << 56)) bytes %= kMaxBytes + 1;  // small, or hopeless
        kn_buffer* b = nullptr;
        kn_status s = kn_buffer_create(cpu(), bytes, &b);
        check(s);
        if (s != KN_OK) return;
        if (bytes > kMaxBytes) __builtin_trap();  // a hopeless size was accepted
        std::vector<uint8_t> fill(static_cast<size_t>(bytes));
        for (auto& v : fill) v = in.byte();
        if (bytes > 0) check(kn_buffer_write(b, 0, fill.data(), bytes));
        release(slot);
        live[slot] = b;
    }
    void release(int slot) {
        if (!live[slot]) return;
        check(kn_buffer_free(live[slot]));
        stale[slot] = live[slot];
        live[slot] = nullptr;
    }
    void free_all() {
        for (int i = 0; i < kSlots; ++i) release(i);
    }
};

// A shape (rank from -1 to KN_MAX_RANK + 1) into dims.
int32_t shape(Input& in, int64_t* dims) {
    int32_t rank = static_cast<int32_t>(in.byte() % (KN_MAX_RANK + 3)) - 1;
    for (int32_t i = 0; i < KN_MAX_RANK + 1; ++i) dims[i] = i < rank ? in.integer() : 1;
    return rank;
}

void step(Input& in, Slots& s) {
    kn_buffer* (Slots::*pick)(Input&) = &Slots::pick;
    auto B = [&] { return (s.*pick)(in); };
    auto I = [&] { return in.integer(); };
    auto F = [&] { return in.real(); };
    switch (in.byte() % 36) {  // 0..34: the cases below; 35: the default
        case 0: case 1: case 2: s.create(in); break;
        case 3: {  // free: live, stale (double free) or forged
            kn_buffer* b = B();
            kn_status st = kn_buffer_free(b);
            check(st);
            for (int i = 0; i < kSlots; ++i)
                if (st == KN_OK && s.live[i] == b) {
                    s.stale[i] = b;
                    s.live[i] = nullptr;
                }
            break;
        }
        case 4: {
            std::vector<uint8_t> host(kMaxBytes + 64);
            kn_buffer* b = B();
            int64_t off = I(), n = I();
            if (n >= 0 && n <= static_cast<int64_t>(host.size())) check(kn_buffer_write(b, off, host.data(), n));
            else check(kn_buffer_write(b, off, nullptr, n));
            if (n >= 0 && n <= static_cast<int64_t>(host.size())) check(kn_buffer_read(b, off, host.data(), n));
            break;
        }
        case 5: {
            kn_buffer *dst = B(), *src = B();
            int64_t doff = I(), soff = I(), n = I();
            check(kn_buffer_copy(dst, doff, src, soff, n));
            break;
        }
        case 6: {
            kn_buffer* b = B();
            int64_t off = I(), n = I();
            check(kn_buffer_fill_f32(b, off, n, F()));
            int64_t bytes = 0;
            kn_device* d = nullptr;
            check(kn_buffer_size(b, &bytes));
            check(kn_buffer_device(b, &d));
            break;
        }
        case 7: {
            // Enums stay int32 until the call: holding 3 in a kn_transpose object is itself undefined.
            int32_t ta = in.enumeration(2), tb = in.enumeration(2);
            int64_t m = I(), n = I(), k = I();
            float alpha = F();
            kn_buffer* a = B();
            int64_t lda = I(), sa = I();
            kn_buffer* b = B();
            int64_t ldb = I(), sb = I();
            float beta = F();
            kn_buffer* c = B();
            int64_t ldc = I(), sc = I(), batch = I();
            check(kn_gemm_f32(static_cast<kn_transpose>(ta), static_cast<kn_transpose>(tb), m, n, k, alpha, a, lda, sa, b, ldb, sb, beta, c, ldc, sc, batch));
            break;
        }
        case 8: {
            int32_t op = (in.enumeration(KN_UNARY_POW_SCALAR + 1));
            float alpha = F();
            kn_buffer *x = B(), *y = B();
            check(kn_unary_f32(static_cast<kn_unary_op>(op), alpha, x, y, I()));
            break;
        }
        case 9: {
            int32_t op = (in.enumeration(KN_UNARY_POW_SCALAR + 1));
            float alpha = F();
            kn_buffer *x = B(), *y = B(), *dy = B(), *dx = B();
            check(kn_unary_backward_f32(static_cast<kn_unary_op>(op), alpha, x, y, dy, dx, I()));
            break;
        }
        case 10: case 11: {
            int32_t op = (in.enumeration(KN_BINARY_GREATER_EQUAL + 1));
            int64_t ad[KN_MAX_RANK + 1], bd[KN_MAX_RANK + 1], cd[KN_MAX_RANK + 1];
            int32_t ar = shape(in, ad), br = shape(in, bd), cr = shape(in, cd);
            kn_buffer *a = B(), *b = B(), *c = B();
            if (in.byte() & 1) {
                check(kn_binary_f32(static_cast<kn_binary_op>(op), a, in.byte() == 0 ? nullptr : ad, ar, b, bd, br, c, cd, cr));
            } else {
                kn_buffer *da = B(), *db = B();
                check(kn_binary_backward_f32(static_cast<kn_binary_op>(op), a, ad, ar, b, bd, br, c, cd, cr, da, db));
            }
            break;
        }
        case 12: {
            int32_t op = (in.enumeration(KN_REDUCE_SUM_SQUARES + 1));
            kn_buffer *x = B(), *y = B();
            int64_t o = I(), r = I(), i = I();
            check(kn_reduce_f32(static_cast<kn_reduce_op>(op), x, y, o, r, i));
            break;
        }
        case 13: {
            int32_t op = (in.enumeration(KN_ARGMIN + 1));
            kn_buffer *x = B(), *y = B();
            int64_t o = I(), r = I(), i = I();
            check(kn_argreduce_f32(static_cast<kn_argreduce_op>(op), x, y, o, r, i));
            break;
        }
        case 14: {
            kn_buffer *x = B(), *y = B(), *z = B();
            int64_t rows = I(), cols = I();
            int32_t log = in.flag();
            if (in.byte() & 1) check(kn_softmax_f32(x, y, rows, cols, log));
            else check(kn_softmax_backward_f32(x, y, z, rows, cols, log));
            break;
        }
        case 15: {
            kn_buffer *logits = B(), *labels = B(), *out = B(), *d = B();
            int64_t rows = I(), cols = I();
            if (in.byte() & 1) check(kn_cross_entropy_f32(logits, labels, out, rows, cols));
            else check(kn_cross_entropy_backward_f32(logits, labels, out, d, rows, cols));
            break;
        }
        case 16: {
            kn_buffer *x = B(), *y = B();
            int64_t n = I();
            float p = F();
            int64_t seed = I(), offset = I();
            if (in.byte() & 1) check(kn_dropout_f32(x, y, n, p, seed, offset));
            else check(kn_dropout_backward_f32(x, y, n, p, seed, offset));
            break;
        }
        case 17: {
            kn_buffer *x = B(), *y = B();
            int64_t n = I();
            float lo = F(), hi = F();
            check(kn_clamp_f32(x, y, n, lo, hi));
            break;
        }
        case 18: {
            kn_buffer *p = B(), *g = B(), *v = B();
            int64_t n = I();
            float lr = F(), mom = F(), damp = F(), wd = F();
            int32_t nesterov = in.flag(), first = in.flag();
            check(kn_sgd_step_f32(p, g, v, n, lr, mom, damp, wd, nesterov, first));
            if (in.flag()) {  // the many-tensor form, as in case 19
                const int count = in.byte() % 4;
                kn_buffer* ps[3] = {p, B(), B()};
                const kn_buffer* gs[3] = {g, B(), B()};
                kn_buffer* vs[3] = {v, B(), B()};
                int64_t ns[3] = {n, I(), I()};
                const bool no_array = in.flag();
                check(kn_sgd_step_many_f32(count, ps, gs, no_array ? nullptr : vs, ns, lr, mom, damp, wd, nesterov, first));
            }
            break;
        }
        case 19: {
            kn_buffer *p = B(), *g = B(), *m = B(), *v = B();
            int64_t n = I();
            float lr = F(), b1 = F(), b2 = F(), eps = F(), wd = F();
            int32_t decoupled = in.flag();
            int64_t t = I();
            check(kn_adam_step_f32(p, g, m, v, n, lr, b1, b2, eps, wd, decoupled, t));
            if (in.flag()) {  // the many-tensor form: up to 3 tensors of picked (possibly aliased) buffers
                const int count = in.byte() % 4;
                kn_buffer* ps[3] = {p, B(), B()};
                const kn_buffer* gs[3] = {g, B(), B()};
                kn_buffer* ms[3] = {m, B(), B()};
                kn_buffer* vs[3] = {v, B(), B()};
                int64_t ns[3] = {n, I(), I()};
                const bool no_array = in.flag();
                check(kn_adam_step_many_f32(count, ps, gs, ms, no_array ? nullptr : vs, ns, lr, b1, b2, eps, wd, decoupled, t));
            }
            break;
        }
        case 20: {
            kn_buffer *p = B(), *g = B(), *sq = B(), *v = B();
            int64_t n = I();
            float lr = F(), alpha = F(), eps = F(), wd = F(), mom = F();
            check(kn_rmsprop_step_f32(p, g, sq, v, n, lr, alpha, eps, wd, mom));
            if (in.flag()) {  // the many-tensor form, as in case 19
                const int count = in.byte() % 4;
                kn_buffer* ps[3] = {p, B(), B()};
                const kn_buffer* gs[3] = {g, B(), B()};
                kn_buffer* sqs[3] = {sq, B(), B()};
                kn_buffer* vs[3] = {v, B(), B()};
                int64_t ns[3] = {n, I(), I()};
                const bool no_array = in.flag();
                check(kn_rmsprop_step_many_f32(count, ps, gs, sqs, no_array ? nullptr : vs, ns, lr, alpha, eps, wd, mom));
            }
            break;
        }
        case 21: {
            kn_buffer *p = B(), *g = B(), *sum = B();
            int64_t n = I();
            float lr = F(), eps = F(), wd = F();
            check(kn_adagrad_step_f32(p, g, sum, n, lr, eps, wd));
            if (in.flag()) {  // the many-tensor form, as in case 19
                const int count = in.byte() % 4;
                kn_buffer* ps[3] = {p, B(), B()};
                const kn_buffer* gs[3] = {g, B(), B()};
                kn_buffer* sums[3] = {sum, B(), B()};
                int64_t ns[3] = {n, I(), I()};
                check(kn_adagrad_step_many_f32(count, ps, gs, sums, ns, lr, eps, wd));
            }
            break;
        }
        case 22: case 23: case 24: {  // convolution: forward, backward data, backward weights
            int which = in.byte() % 3;
            kn_buffer *x = B(), *w = B(), *bias = B(), *y = B();
            int64_t g[14];
            for (auto& v : g) v = I();
            if (which == 0)
                check(kn_conv2d_f32(x, w, bias, y, g[0], g[1], g[2], g[3], g[4], g[5], g[6], g[7], g[8], g[9], g[10], g[11], g[12], g[13]));
            else if (which == 1)
                check(kn_conv2d_backward_data_f32(x, w, y, g[0], g[1], g[2], g[3], g[4], g[5], g[6], g[7], g[8], g[9], g[10], g[11], g[12], g[13]));
            else
                check(kn_conv2d_backward_weights_f32(x, y, w, bias, g[0], g[1], g[2], g[3], g[4], g[5], g[6], g[7], g[8], g[9], g[10], g[11], g[12], g[13]));
            break;
        }
        case 25: case 26: {  // pooling, forward or backward, with whatever indices hold
            int32_t op = (in.enumeration(KN_POOL_AVG + 1));
            kn_buffer *a = B(), *idx = B(), *b = B();
            int64_t g[10];
            for (auto& v : g) v = I();
            int32_t include = in.flag();
            if (in.byte() & 1)
                check(kn_pool2d_f32(static_cast<kn_pool_op>(op), a, b, idx, g[0], g[1], g[2], g[3], g[4], g[5], g[6], g[7], g[8], g[9], include));
            else
                check(kn_pool2d_backward_f32(static_cast<kn_pool_op>(op), a, idx, b, g[0], g[1], g[2], g[3], g[4], g[5], g[6], g[7], g[8], g[9], include));
            break;
        }
        case 27: {
            kn_buffer *x = B(), *y = B(), *gamma = B(), *beta = B(), *rm = B(), *rv = B(), *sm = B(), *si = B();
            int64_t n = I(), c = I(), sp = I();
            float eps = F(), mom = F();
            int32_t training = in.flag();
            check(kn_batch_norm_f32(x, y, gamma, beta, rm, rv, sm, si, n, c, sp, eps, mom, training));
            break;
        }
        case 28: {
            kn_buffer *x = B(), *dy = B(), *gamma = B(), *sm = B(), *si = B(), *dx = B(), *dg = B(), *db = B();
            int64_t n = I(), c = I(), sp = I();
            int32_t training = in.flag();
            check(kn_batch_norm_backward_f32(x, dy, gamma, sm, si, dx, dg, db, n, c, sp, training));
            break;
        }
        case 29: {  // device and library queries with hostile arguments
            int32_t available = 0, count = 0, major = 0, minor = 0;
            const char* text = nullptr;
            kn_device* d = nullptr;
            check(kn_backend_info(static_cast<kn_device_kind>(in.enumeration(3)), &available, &text));
            check(kn_device_get(static_cast<int32_t>(I()), &d));
            check(kn_device_count(&count));
            kn_device* forged = reinterpret_cast<kn_device*>(uintptr_t{0x2000});
            check(kn_device_name(in.byte() & 1 ? cpu() : forged, &text));
            check(kn_device_capability(in.byte() & 1 ? cpu() : nullptr, &major, &minor));
            check(kn_device_find(in.byte() & 1 ? "cuda:7" : "opencl:-1", &d));
            break;
        }
        case 30: check(kn_device_trim(cpu())); break;
        case 31: {  // strided copy between two views: hostile offsets, strides (overlapping, negative), ranks
            int64_t xs[KN_MAX_RANK + 1], ys[KN_MAX_RANK + 1], dims[KN_MAX_RANK + 1];
            int32_t xr = shape(in, xs), yr = shape(in, ys), r = shape(in, dims);
            kn_buffer *x = B(), *y = B();
            int64_t xo = I(), yo = I();
            const bool y_contiguous = in.byte() & 1;
            check(kn_strided_copy_f32(x, xo, xs, xr, y, yo, y_contiguous ? nullptr : ys, y_contiguous ? 0 : yr, dims, r));
            break;
        }
        case 32: {  // gather / scatter-add, with whatever the index buffer holds (the API checks each index)
            kn_buffer *t = B(), *idx = B(), *y = B();
            int64_t rows = I(), cols = I(), n = I(), padding = I();
            if (in.byte() & 1) check(kn_gather_rows_f32(t, rows, cols, idx, n, y));
            else check(kn_scatter_add_rows_f32(t, idx, n, y, rows, cols, padding));
            break;
        }
        case 33: {  // cast between element types, including undefined ones (enumeration: 3, 999, -1, INT32_MIN, ...)
            kn_buffer *x = B(), *y = B();
            // Kept as int32 and cast at the call, like the other enum steps: a kn_dtype variable holding -1
            // is itself undefined behaviour in C++ (UBSan's enum check), while the C ABI passes any int.
            const int32_t xt = in.enumeration(KN_INT64 + 1), yt = in.enumeration(KN_INT64 + 1);
            check(kn_cast(x, static_cast<kn_dtype>(xt), y, static_cast<kn_dtype>(yt), I()));
            break;
        }
        case 34: {  // the recurrent cells, forward or backward, with hostile sizes and aliased buffers
            kn_buffer *a = B(), *b = B(), *c = B(), *d = B(), *e = B(), *f = B(), *g = B(), *h = B();
            int64_t batch = I(), hidden = I();
            switch (in.byte() % 4) {
                case 0: check(kn_lstm_cell_f32(a, b, c, d, e, f, g, batch, hidden)); break;
                case 1: check(kn_lstm_cell_backward_f32(a, b, c, d, e, f, g, h, batch, hidden)); break;
                case 2: check(kn_gru_cell_f32(a, b, c, d, e, f, batch, hidden)); break;
                default: check(kn_gru_cell_backward_f32(a, b, c, d, e, f, g, h, batch, hidden)); break;
            }
            break;
        }
        default: check(kn_device_synchronize(cpu())); break;
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    Input in(data, size);
    Slots slots;
    int64_t live_before = 0;
    check(kn_device_memory_stats(cpu(), nullptr, &live_before, nullptr, nullptr));
    for (int steps = 0; steps < 64 && !in.done(); ++steps) step(in, slots);
    slots.free_all();
    int64_t live_after = -1;
    check(kn_device_memory_stats(cpu(), nullptr, &live_after, nullptr, nullptr));
    if (live_after != live_before) __builtin_trap();  // a buffer leaked, or a free was counted twice
    return 0;
}
