// elementwise_launch.cpp: the launchers of elementwise.cl: unary and binary ops (forward and
// backward; one kernel per op, and for binary ops per broadcast mode), dropout, clamp and the
// optimizer steps. All run one work-item per EW_VEC elements (Queue::launch_elementwise).
#include "opencl_backend.h"

#include <cmath>
#include <cstring>
#include <string>

namespace kn::opencl {
namespace {

const char* const kUnaryNames[] = {"neg",     "abs",     "exp",        "log",   "sqrt",   "rsqrt",  "square",
                                   "reciprocal", "tanh", "sigmoid",    "relu",  "leaky_relu", "gelu", "elu",
                                   "softplus", "sin",    "cos",        "scale", "add_scalar", "pow_scalar"};
const char* const kBinaryNames[] = {"add",       "sub",  "mul",        "div",     "power",
                                    "maximum",   "minimum", "equal",    "not_equal", "less",
                                    "less_equal", "greater", "greater_equal"};
static_assert(sizeof(kUnaryNames) / sizeof(kUnaryNames[0]) == KN_UNARY_POW_SCALAR + 1, "unary op table");
static_assert(sizeof(kBinaryNames) / sizeof(kBinaryNames[0]) == KN_BINARY_GREATER_EQUAL + 1, "binary op table");

// The variant of a binary kernel that fits the geometry: "11" both operands walked linearly, "10" b
// broadcast from one element, "01" a broadcast from one element, "nd" the general strided walk.
const char* binary_mode(const BroadcastGeometry& g) {
    if (g.rank == 1) {
        if (g.a_strides[0] == 1 && g.b_strides[0] == 1) return "11";
        if (g.a_strides[0] == 1 && g.b_strides[0] == 0) return "10";
        if (g.a_strides[0] == 0 && g.b_strides[0] == 1) return "01";
    }
    return "nd";
}

// BroadcastGeometry as long8 vectors; entries past the rank are size 1, stride 0.
void geometry_vectors(const BroadcastGeometry& g, cl_long8& dims, cl_long8& a_strides, cl_long8& b_strides) {
    for (int d = 0; d < 8; ++d) {
        const bool used = d < g.rank;
        dims.s[d] = used ? g.dims[d] : 1;
        a_strides.s[d] = used ? g.a_strides[d] : 0;
        b_strides.s[d] = used ? g.b_strides[d] : 0;
    }
}

}  // namespace

void unary_f32(const UnaryArgs& u, Queue& q) {
    const std::string kname = cat("unary_", kUnaryNames[u.op]);
    cl_kernel kern = q.kernel(kname);
    q.set_args(kern, kname.c_str(), mem(u.x), mem(u.y), cl_long{u.n}, cl_float{u.alpha});
    q.launch_elementwise(kern, kname.c_str(), u.n);
}

void bias_unary_f32(void* y, const void* bias, int64_t rows, int64_t cols, kn_unary_op op, float alpha, Queue& q) {
    const std::string kname = cat("bias_unary_", kUnaryNames[op]);
    cl_kernel kern = q.kernel(kname);
    q.set_args(kern, kname.c_str(), mem(y), mem(bias), cl_long{cols}, cl_long{rows * cols}, cl_float{alpha});
    q.launch_elementwise(kern, kname.c_str(), rows * cols);
}

void unary_backward_f32(const UnaryBackwardArgs& u, Queue& q) {
    const std::string kname = cat("unary_backward_", kUnaryNames[u.op]);
    cl_kernel kern = q.kernel(kname);
    // NEG, SCALE and ADD_SCALAR need neither x nor y; a missing one is replaced by dy (never read).
    const void* v = unary_backward_uses_output(u.op) ? u.y : u.x;
    if (!v) v = u.dy;
    q.set_args(kern, kname.c_str(), mem(v), mem(u.dy), mem(u.dx), cl_long{u.n}, cl_float{u.alpha});
    q.launch_elementwise(kern, kname.c_str(), u.n);
}

void binary_f32(const BinaryArgs& b, Queue& q) {
    const char* mode = binary_mode(b.g);
    const std::string kname = cat("binary_", kBinaryNames[b.op], "_", mode);
    cl_kernel kern = q.kernel(kname);
    if (std::strcmp(mode, "nd") == 0) {
        cl_long8 dims, a_strides, b_strides;
        geometry_vectors(b.g, dims, a_strides, b_strides);
        q.set_args(kern, kname.c_str(), mem(b.a), mem(b.b), mem(b.c), cl_long{b.g.n}, cl_int{b.g.rank}, dims,
                   a_strides, b_strides);
    } else {
        q.set_args(kern, kname.c_str(), mem(b.a), mem(b.b), mem(b.c), cl_long{b.g.n});
    }
    q.launch_elementwise(kern, kname.c_str(), b.g.n);
}

void binary_backward_f32(const BinaryBackwardArgs& b, Queue& q) {
    const char* mode = binary_mode(b.g);
    const std::string kname = cat("binary_backward_", kBinaryNames[b.op], "_", mode);
    cl_kernel kern = q.kernel(kname);
    // An unwanted gradient is switched off by its flag; its argument is bound to dc, which the
    // kernel then never writes (OpenCL 1.2 has no portable way to pass a null buffer).
    const cl_mem da = b.da ? mem(b.da) : mem(b.dc);
    const cl_mem db = b.db ? mem(b.db) : mem(b.dc);
    const cl_int has_da = b.da ? 1 : 0, has_db = b.db ? 1 : 0;
    if (std::strcmp(mode, "nd") == 0) {
        cl_long8 dims, a_strides, b_strides;
        geometry_vectors(b.g, dims, a_strides, b_strides);
        q.set_args(kern, kname.c_str(), mem(b.a), mem(b.b), mem(b.dc), da, db, cl_long{b.g.n}, has_da, has_db,
                   cl_int{b.g.rank}, dims, a_strides, b_strides);
    } else {
        q.set_args(kern, kname.c_str(), mem(b.a), mem(b.b), mem(b.dc), da, db, cl_long{b.g.n}, has_da, has_db);
    }
    q.launch_elementwise(kern, kname.c_str(), b.g.n);
}

// Forward and backward are the same map (kernels.h): keep(i) ? in[i] / (1 - p) : 0.
void dropout_f32(const DropoutArgs& d, Queue& q) {
    const char* kname = "dropout_mask";
    cl_kernel kern = q.kernel(kname);
    const float scale = 1.0f / (1.0f - d.p);  // in float32, as the CPU backend computes it
    q.set_args(kern, kname, mem(d.x), mem(d.y), cl_long{d.n}, cl_float{d.p}, cl_float{scale}, cl_ulong{d.seed},
               cl_ulong{d.offset});
    // One work-item per Philox block of four stream elements: blocks offset / 4 .. (offset + n - 1) / 4.
    const uint64_t first_block = d.offset >> 2, last_block = (d.offset + static_cast<uint64_t>(d.n) - 1) >> 2;
    q.launch_1d(kern, kname, static_cast<int64_t>(last_block - first_block + 1));
}

void clamp_f32(const ClampArgs& c, Queue& q) {
    const char* kname = "clamp_values";
    cl_kernel kern = q.kernel(kname);
    q.set_args(kern, kname, mem(c.x), mem(c.y), cl_long{c.n}, cl_float{c.low}, cl_float{c.high});
    q.launch_elementwise(kern, kname, c.n);
}

void sgd_step_f32(const SgdArgs& a, Queue& q) {
    const char* kname = "sgd_step";
    cl_kernel kern = q.kernel(kname);
    const cl_int has_velocity = a.velocity ? 1 : 0;
    q.set_args(kern, kname, mem(a.param), mem(a.grad), a.velocity ? mem(a.velocity) : mem(a.param), cl_long{a.n},
               cl_float{a.lr}, cl_float{a.momentum}, cl_float{a.dampening}, cl_float{a.weight_decay},
               cl_int{a.nesterov ? 1 : 0}, cl_int{a.first_step ? 1 : 0}, has_velocity);
    q.launch_elementwise(kern, kname, a.n);
}

void adam_step_f32(const AdamArgs& a, Queue& q) {
    const char* kname = "adam_step";
    cl_kernel kern = q.kernel(kname);
    // As on the CPU: bias corrections in double (beta2^t for t in the millions underflows
    // gracefully to 0), decoupled decay folded into one factor.
    const double step = static_cast<double>(a.step);
    const float c1 = static_cast<float>(1.0 / (1.0 - std::pow(static_cast<double>(a.beta1), step)));
    const float c2 = static_cast<float>(1.0 / (1.0 - std::pow(static_cast<double>(a.beta2), step)));
    const float decay = a.decoupled_weight_decay ? 1.0f - a.lr * a.weight_decay : 1.0f;
    const float l2 = a.decoupled_weight_decay ? 0.0f : a.weight_decay;
    q.set_args(kern, kname, mem(a.param), mem(a.grad), mem(a.m), mem(a.v), cl_long{a.n}, cl_float{a.lr},
               cl_float{a.beta1}, cl_float{a.beta2}, cl_float{a.eps}, cl_float{decay}, cl_float{l2}, cl_float{c1},
               cl_float{c2});
    q.launch_elementwise(kern, kname, a.n);
}

void rmsprop_step_f32(const RmspropArgs& a, Queue& q) {
    const char* kname = "rmsprop_step";
    cl_kernel kern = q.kernel(kname);
    const cl_int has_velocity = a.velocity ? 1 : 0;
    q.set_args(kern, kname, mem(a.param), mem(a.grad), mem(a.square_avg), a.velocity ? mem(a.velocity) : mem(a.param),
               cl_long{a.n}, cl_float{a.lr}, cl_float{a.alpha}, cl_float{a.eps}, cl_float{a.weight_decay},
               cl_float{a.momentum}, has_velocity);
    q.launch_elementwise(kern, kname, a.n);
}

void adagrad_step_f32(const AdagradArgs& a, Queue& q) {
    const char* kname = "adagrad_step";
    cl_kernel kern = q.kernel(kname);
    q.set_args(kern, kname, mem(a.param), mem(a.grad), mem(a.sum), cl_long{a.n}, cl_float{a.lr}, cl_float{a.eps},
               cl_float{a.weight_decay});
    q.launch_elementwise(kern, kname, a.n);
}

}  // namespace kn::opencl
