// opencl_device.cpp: the OpenCL backend. One OpenClDevice per OpenCL device of every platform
// (GPUs, CPUs, accelerators), named "opencl:N" in enumeration order.
//
// - Memory handles are cl_mem (cast to void*), always used at offset 0; byte offsets go into the
//   enqueue calls. One in-order command queue per device, so kernels run in call order and a
//   blocking read sees everything queued before it.
// - The OpenCL library is loaded at run time (opencl_loader.h): no link dependency.
// - Kernels: every native/kernels/opencl/*.cl is embedded at build time (generated/opencl_sources.h)
//   and built as one program per device, lazily at the first kernel use, with tunables passed as -D
//   options chosen from the device's type and limits (Tuning below); kernels are cached by name.
// - Every OpenCL call is checked; a failure throws kn::Error naming the device, the call, the
//   kernel and the error ("opencl:0: clEnqueueNDRangeKernel(gemm_nn) failed: CL_OUT_OF_RESOURCES
//   (-5)"). Allocation failures map to KN_ERROR_OUT_OF_MEMORY, everything else to KN_ERROR_BACKEND.
#include "backend.h"
#include "error.h"
#include "opencl_loader.h"
#include "opencl_sources.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>
#include <unordered_map>
#include <vector>

namespace kn {
namespace {

using ocl::Api;

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
size_t round_up(int64_t n, int64_t multiple) { return static_cast<size_t>(ceil_div(n, multiple) * multiple); }

std::string trim(std::string s) {
    while (!s.empty() && (s.back() == '\0' || s.back() == ' ' || s.back() == '\n' || s.back() == '\r' ||
                          s.back() == '\t'))
        s.pop_back();
    size_t first = s.find_first_not_of(" \t\r\n");
    return first == std::string::npos ? std::string() : s.substr(first);
}

std::string error_text(cl_int err) { return cat(ocl::error_name(err), " (", err, ")"); }

// clGetDeviceInfo for fixed-size values; `what` names the query in the error message.
template <typename T>
T device_value(const Api& cl, cl_device_id device, cl_device_info param, const char* what) {
    T value{};
    cl_int err = cl.GetDeviceInfo(device, param, sizeof(T), &value, nullptr);
    if (err != CL_SUCCESS) fail(KN_ERROR_BACKEND, "clGetDeviceInfo(", what, ") failed: ", error_text(err));
    return value;
}

std::string device_string(const Api& cl, cl_device_id device, cl_device_info param, const char* what) {
    size_t size = 0;
    cl_int err = cl.GetDeviceInfo(device, param, 0, nullptr, &size);
    std::string s(size, '\0');
    if (err == CL_SUCCESS && size > 0) err = cl.GetDeviceInfo(device, param, size, &s[0], nullptr);
    if (err != CL_SUCCESS) fail(KN_ERROR_BACKEND, "clGetDeviceInfo(", what, ") failed: ", error_text(err));
    return trim(s);
}

std::string platform_string(const Api& cl, cl_platform_id platform, cl_platform_info param) {
    size_t size = 0;
    if (cl.GetPlatformInfo(platform, param, 0, nullptr, &size) != CL_SUCCESS || size == 0) return "unknown platform";
    std::string s(size, '\0');
    if (cl.GetPlatformInfo(platform, param, size, &s[0], nullptr) != CL_SUCCESS) return "unknown platform";
    return trim(s);
}

// The tunables of one device. They become -D options of the program build and also fix the launch
// geometry here, so the two always agree.
struct Tuning {
    const char* profile = "gpu";
    // gemm.cl
    int tile_m = 64, tile_n = 64, tile_k = 16, wpt_m = 4, wpt_n = 4, vec_n = 4, vec_copy = 4;
    bool single_work_item = false, use_fma = false;
    // reduce.cl
    int reduce_wg = 256, reduce_cols_x = 32, reduce_vec = 1;
    bool reduce_contiguous = false;
    // softmax.cl
    int softmax_wg = 256, softmax_vec = 1;
    // elementwise.cl
    int ew_vec = 1;
    // conv.cl: implicit-GEMM tiles (register blocks, vector width and FMA as gemm.cl's), trees
    int conv_tile_m = 64, conv_tile_n = 64, conv_tile_k = 16, conv_reduce_wg = 256;
    // batch_norm.cl
    int batch_norm_wg = 256, batch_norm_vec = 1, batch_norm_chunk = 1;
    // pool.cl
    bool pool_rows = false;
    // Host-side only.
    int64_t softmax_small_cols = 16;  // rows up to this long use one work-item per row
    int elementwise_wg = 256;         // work-group size of the one-element-per-work-item kernels
    int64_t groups_per_unit = 8;      // work-groups per compute unit a reduction aims for
    // Convolutions whose per-group GEMM has fewer rows (output channels per group; input channels
    // for backward data) use the direct kernels: a depthwise 64-row tile would be 63/64 zeros.
    int64_t conv_direct_rows = 4;

    int gemm_local_x() const { return single_work_item ? 1 : tile_n / wpt_n; }
    int gemm_local_y() const { return single_work_item ? 1 : tile_m / wpt_m; }
    int64_t gemm_local_bytes() const {
        int64_t a = std::max<int64_t>(int64_t{tile_m} * (tile_k + 1), int64_t{tile_k} * (tile_m + 1));
        int64_t b = int64_t{tile_k} * tile_n;
        int64_t c = single_work_item ? int64_t{tile_m} * tile_n : 1;
        return 4 * (a + b + c);
    }
    std::string options() const {
        return cat("-DTILE_M=", tile_m, " -DTILE_N=", tile_n, " -DTILE_K=", tile_k, " -DWPT_M=", wpt_m,
                   " -DWPT_N=", wpt_n, " -DVEC_N=", vec_n, " -DVEC_COPY=", vec_copy,
                   " -DGEMM_SINGLE_WORK_ITEM=", single_work_item ? 1 : 0, " -DGEMM_USE_FMA=", use_fma ? 1 : 0,
                   " -DREDUCE_WG=", reduce_wg, " -DREDUCE_COLS_X=", reduce_cols_x, " -DREDUCE_VEC=", reduce_vec,
                   " -DREDUCE_CONTIGUOUS=", reduce_contiguous ? 1 : 0, " -DSOFTMAX_WG=", softmax_wg,
                   " -DSOFTMAX_VEC=", softmax_vec, " -DEW_VEC=", ew_vec, " -DCONV_TILE_M=", conv_tile_m,
                   " -DCONV_TILE_N=", conv_tile_n, " -DCONV_TILE_K=", conv_tile_k, " -DCONV_WPT_M=", wpt_m,
                   " -DCONV_WPT_N=", wpt_n, " -DCONV_VEC_N=", vec_n, " -DCONV_USE_FMA=", use_fma ? 1 : 0,
                   " -DCONV_SINGLE_WORK_ITEM=", single_work_item ? 1 : 0, " -DCONV_REDUCE_WG=", conv_reduce_wg,
                   " -DBN_WG=", batch_norm_wg, " -DBN_VEC=", batch_norm_vec, " -DBN_CHUNK=", batch_norm_chunk,
                   " -DPOOL_ROWS=", pool_rows ? 1 : 0);
    }
    int conv_local_x() const { return single_work_item ? 1 : conv_tile_n / wpt_n; }
    int conv_local_y() const { return single_work_item ? 1 : conv_tile_m / wpt_m; }
};

int floor_pow2(size_t v) {
    int p = 1;
    while (static_cast<size_t>(p) * 2 <= v && p < (1 << 20)) p *= 2;
    return p;
}

// Picks the tunables. CPUs (PoCL, Intel's and AMD's CPU runtimes) run a work-group as a loop on one
// core: GEMM then uses the single-work-item packing kernel with the SIMD width as vector width, and
// reductions use few work-items with contiguous vector loads. GPUs and accelerators get the tiled
// work-group shapes. KN_OPENCL_PROFILE=gpu|cpu overrides the choice (to run the GPU code paths on a
// CPU device in tests).
Tuning choose_tuning(cl_device_type type, size_t max_work_group, cl_ulong local_memory, cl_uint native_float_width,
                     bool has_fma) {
    Tuning t;
    bool cpu = (type & CL_DEVICE_TYPE_CPU) != 0;
    if (const char* forced = std::getenv("KN_OPENCL_PROFILE")) {
        if (std::strcmp(forced, "gpu") == 0) cpu = false;
        else if (std::strcmp(forced, "cpu") == 0) cpu = true;
    }
    t.use_fma = has_fma;
    const int wg_limit = floor_pow2(max_work_group);
    if (cpu) {
        t.profile = "cpu";
        // Register block of 2 SIMD vectors x 8 rows (32 vector registers, AVX-512) or x 6 rows
        // (16 registers): accumulators + 2 B vectors + 1 broadcast A fit without spilling.
        t.vec_n = native_float_width >= 16 ? 16 : native_float_width >= 8 ? 8 : 4;
        t.wpt_n = 2 * t.vec_n;
        t.wpt_m = t.vec_n >= 16 ? 8 : 6;
        t.vec_copy = t.vec_n;
        t.single_work_item = true;
        t.tile_m = t.wpt_m * 8;  // 64 or 48 rows: a multiple of both wpt_m and vec_copy
        t.tile_n = 128;
        t.tile_k = 128;
        // Shrink the packed blocks until they fit the device's local memory (32 KiB on some runtimes).
        while (t.gemm_local_bytes() > static_cast<int64_t>(local_memory) && t.tile_k > t.vec_copy) t.tile_k /= 2;
        while (t.gemm_local_bytes() > static_cast<int64_t>(local_memory) && t.tile_n > t.wpt_n) t.tile_n /= 2;
        t.reduce_wg = std::min(16, wg_limit);
        t.reduce_cols_x = t.reduce_wg;
        t.reduce_vec = t.vec_n;
        t.reduce_contiguous = true;
        t.softmax_wg = std::min(16, wg_limit);
        t.softmax_vec = t.vec_n;
        t.softmax_small_cols = 0;  // decided by the row count instead, see use_small_softmax
        t.ew_vec = t.vec_n;
        t.elementwise_wg = std::min(256, wg_limit);
        t.groups_per_unit = 4;
        // The GEMM's packing shape. Per-channel statistics: one work-item per channel streaming
        // its planes in SIMD-wide vectors; elementwise passes: 1024 elements per work-item; pooling:
        // a row per work-item. PoCL only vectorises across work-items when the kernel body has no
        // loop, so each of these walks its elements itself (measured: per-element kernels with a
        // channel or window division per element ran at 0.3-4 GB/s).
        t.conv_tile_m = t.tile_m;
        t.conv_tile_n = t.tile_n;
        t.conv_tile_k = t.tile_k;
        t.conv_reduce_wg = std::min(16, wg_limit);
        t.batch_norm_wg = 1;
        t.batch_norm_vec = t.vec_n;
        t.batch_norm_chunk = 1024;
        t.pool_rows = true;
        // The direct kernels loop over taps inside each work-item, which PoCL runs unvectorised;
        // the implicit GEMM was ~10x faster even for depthwise (M = 1, 7/8 of each micro-tile
        // zeros), measured: never use them here.
        t.conv_direct_rows = 1;
    } else {
        // Devices with smaller work-groups or local memory: 32x32 tiles (64 work-items), then 16x16
        // (16), keeping 4x4 per work-item.
        while (t.tile_m > 16 && (t.gemm_local_x() * t.gemm_local_y() > wg_limit ||
                                 static_cast<cl_ulong>(t.gemm_local_bytes()) > local_memory)) {
            t.tile_m /= 2;
            t.tile_n /= 2;
        }
        t.reduce_wg = std::min(256, wg_limit);
        t.reduce_cols_x = std::min(32, t.reduce_wg);
        t.softmax_wg = std::min(256, wg_limit);
        t.elementwise_wg = std::min(256, wg_limit);
        // The GEMM's tile (as shrunk above) with its 4x4 register blocks; 16-deep k tiles.
        t.conv_tile_m = t.tile_m;
        t.conv_tile_n = t.tile_n;
        t.conv_tile_k = 16;
        t.conv_reduce_wg = std::min(256, wg_limit);
        t.batch_norm_wg = std::min(256, wg_limit);
    }
    return t;
}

const char* const kUnaryNames[] = {"neg",     "abs",     "exp",        "log",   "sqrt",   "rsqrt",  "square",
                                   "reciprocal", "tanh", "sigmoid",    "relu",  "leaky_relu", "gelu", "elu",
                                   "softplus", "sin",    "cos",        "scale", "add_scalar", "pow_scalar"};
const char* const kBinaryNames[] = {"add", "sub", "mul", "div", "power", "maximum", "minimum"};
static_assert(sizeof(kUnaryNames) / sizeof(kUnaryNames[0]) == KN_UNARY_POW_SCALAR + 1, "unary op table");
static_assert(sizeof(kBinaryNames) / sizeof(kBinaryNames[0]) == KN_BINARY_MINIMUM + 1, "binary op table");

cl_mem mem(const void* p) { return static_cast<cl_mem>(const_cast<void*>(p)); }

// GPUs such as NVIDIA's cap the y and z NDRange dimensions at 65535 work-groups.
constexpr int64_t kMaxBatchPerLaunch = 65535;

class OpenClDevice final : public Device {
public:
    OpenClDevice(const Api& cl, cl_platform_id platform, cl_device_id device, int index)
        : cl_(cl), platform_(platform), device_(device) {
        kind = KN_DEVICE_OPENCL;
        name = cat("opencl:", index);
        description = cat(device_string(cl, device, CL_DEVICE_NAME, "CL_DEVICE_NAME"), " (",
                          platform_string(cl, platform, CL_PLATFORM_NAME), ")");
        total_memory = static_cast<int64_t>(device_value<cl_ulong>(cl, device, CL_DEVICE_GLOBAL_MEM_SIZE,
                                                                   "CL_DEVICE_GLOBAL_MEM_SIZE"));
        const std::string version = device_string(cl, device, CL_DEVICE_VERSION, "CL_DEVICE_VERSION");
        int major = 0, minor = 0;
        if (std::sscanf(version.c_str(), "OpenCL %d.%d", &major, &minor) == 2) {
            capability_major = major;
            capability_minor = minor;
        }
        max_alloc_ = device_value<cl_ulong>(cl, device, CL_DEVICE_MAX_MEM_ALLOC_SIZE, "CL_DEVICE_MAX_MEM_ALLOC_SIZE");
        compute_units_ = device_value<cl_uint>(cl, device, CL_DEVICE_MAX_COMPUTE_UNITS, "CL_DEVICE_MAX_COMPUTE_UNITS");
        const size_t max_work_group =
            device_value<size_t>(cl, device, CL_DEVICE_MAX_WORK_GROUP_SIZE, "CL_DEVICE_MAX_WORK_GROUP_SIZE");
        const cl_ulong local_memory =
            device_value<cl_ulong>(cl, device, CL_DEVICE_LOCAL_MEM_SIZE, "CL_DEVICE_LOCAL_MEM_SIZE");
        const cl_device_type type = device_value<cl_device_type>(cl, device, CL_DEVICE_TYPE, "CL_DEVICE_TYPE");
        const cl_uint native_float_width = device_value<cl_uint>(
            cl, device, CL_DEVICE_NATIVE_VECTOR_WIDTH_FLOAT, "CL_DEVICE_NATIVE_VECTOR_WIDTH_FLOAT");
        const cl_device_fp_config fp =
            device_value<cl_device_fp_config>(cl, device, CL_DEVICE_SINGLE_FP_CONFIG, "CL_DEVICE_SINGLE_FP_CONFIG");
        tuning_ = choose_tuning(type, max_work_group, local_memory, native_float_width, (fp & CL_FP_FMA) != 0);
    }

    ~OpenClDevice() override {
        // Devices live in a registry that is never destroyed, so this only runs if that changes.
        for (auto& entry : kernels_) cl_.ReleaseKernel(entry.second);
        for (cl_mem s : scratch_)
            if (s) cl_.ReleaseMemObject(s);
        if (program_) cl_.ReleaseProgram(program_);
        if (queue_) cl_.ReleaseCommandQueue(queue_);
        if (context_) cl_.ReleaseContext(context_);
    }

    // ---- Memory ------------------------------------------------------------------------------

    void* alloc(int64_t bytes) override {
        if (static_cast<uint64_t>(bytes) > max_alloc_)
            fail(KN_ERROR_OUT_OF_MEMORY, name, ": cannot allocate ", bytes, " bytes: larger than the ",
                 max_alloc_, " bytes this device allows in one buffer (CL_DEVICE_MAX_MEM_ALLOC_SIZE)");
        ensure_queue();
        cl_int err = CL_SUCCESS;
        cl_mem m = cl_.CreateBuffer(context_, CL_MEM_READ_WRITE, static_cast<size_t>(bytes), nullptr, &err);
        check(err, "clCreateBuffer", cat(bytes, " bytes").c_str());
        return m;
    }

    void free(void* memory) noexcept override { cl_.ReleaseMemObject(mem(memory)); }

    void write(void* dst, int64_t dst_offset, const void* host_src, int64_t bytes) override {
        ensure_queue();
        check(cl_.EnqueueWriteBuffer(queue_, mem(dst), CL_TRUE, static_cast<size_t>(dst_offset),
                                     static_cast<size_t>(bytes), host_src, 0, nullptr, nullptr),
              "clEnqueueWriteBuffer");
    }

    void read(const void* src, int64_t src_offset, void* host_dst, int64_t bytes) override {
        ensure_queue();
        check(cl_.EnqueueReadBuffer(queue_, mem(src), CL_TRUE, static_cast<size_t>(src_offset),
                                    static_cast<size_t>(bytes), host_dst, 0, nullptr, nullptr),
              "clEnqueueReadBuffer");
    }

    void copy(void* dst, int64_t dst_offset, const void* src, int64_t src_offset, int64_t bytes) override {
        ensure_queue();
        check(cl_.EnqueueCopyBuffer(queue_, mem(src), mem(dst), static_cast<size_t>(src_offset),
                                    static_cast<size_t>(dst_offset), static_cast<size_t>(bytes), 0, nullptr,
                                    nullptr),
              "clEnqueueCopyBuffer");
    }

    void fill_f32(void* dst, int64_t offset_elements, int64_t count, float value) override {
        ensure_queue();
        check(cl_.EnqueueFillBuffer(queue_, mem(dst), &value, sizeof(float), static_cast<size_t>(offset_elements) * 4,
                                    static_cast<size_t>(count) * 4, 0, nullptr, nullptr),
              "clEnqueueFillBuffer");
    }

    void synchronize() override {
        ensure_queue();
        check(cl_.Finish(queue_), "clFinish");
    }

    // ---- GEMM --------------------------------------------------------------------------------

    void gemm_f32(const GemmArgs& g) override {
        const Tuning& t = tuning_;
        if (g.k == 0 || g.alpha == 0.0f) {
            // BLAS semantics: A and B are not read, C = beta * C (and beta == 1 leaves C alone).
            if (g.beta == 1.0f) return;
            const char* kname = "gemm_scale_c";
            cl_kernel kern = kernel(kname);
            for (int64_t first = 0; first < g.batch_count; first += kMaxBatchPerLaunch) {
                const int64_t batches = std::min(kMaxBatchPerLaunch, g.batch_count - first);
                set_args(kern, kname, cl_long{g.m}, cl_long{g.n}, cl_float{g.beta}, mem(g.c), cl_long{g.ldc},
                         cl_long{g.stride_c}, cl_long{first});
                const size_t global[3] = {round_up(g.m * g.n, t.elementwise_wg), 1, static_cast<size_t>(batches)};
                const size_t local[3] = {static_cast<size_t>(t.elementwise_wg), 1, 1};
                launch(kern, kname, 3, global, local);
            }
            return;
        }
        const char* kname = g.trans_a ? (g.trans_b ? "gemm_tt" : "gemm_tn") : (g.trans_b ? "gemm_nt" : "gemm_nn");
        cl_kernel kern = kernel(kname);
        const int64_t tiles = ceil_div(g.m, t.tile_m) * ceil_div(g.n, t.tile_n);
        const size_t local[3] = {static_cast<size_t>(t.gemm_local_x()), static_cast<size_t>(t.gemm_local_y()), 1};
        for (int64_t first = 0; first < g.batch_count; first += kMaxBatchPerLaunch) {
            const int64_t batches = std::min(kMaxBatchPerLaunch, g.batch_count - first);
            set_args(kern, kname, cl_long{g.m}, cl_long{g.n}, cl_long{g.k}, cl_float{g.alpha}, cl_float{g.beta},
                     mem(g.a), cl_long{g.lda}, cl_long{g.stride_a}, mem(g.b), cl_long{g.ldb}, cl_long{g.stride_b},
                     mem(g.c), cl_long{g.ldc}, cl_long{g.stride_c}, cl_long{first});
            const size_t global[3] = {static_cast<size_t>(tiles) * local[0], local[1], static_cast<size_t>(batches)};
            launch(kern, kname, 3, global, local);
        }
    }

    // ---- Elementwise -------------------------------------------------------------------------

    void unary_f32(const UnaryArgs& u) override {
        const std::string kname = cat("unary_", kUnaryNames[u.op]);
        cl_kernel kern = kernel(kname);
        set_args(kern, kname.c_str(), mem(u.x), mem(u.y), cl_long{u.n}, cl_float{u.alpha});
        launch_elementwise(kern, kname.c_str(), u.n);
    }

    void unary_backward_f32(const UnaryBackwardArgs& u) override {
        const std::string kname = cat("unary_backward_", kUnaryNames[u.op]);
        cl_kernel kern = kernel(kname);
        // NEG, SCALE and ADD_SCALAR need neither x nor y; a missing one is replaced by dy (never read).
        const void* v = unary_backward_uses_output(u.op) ? u.y : u.x;
        if (!v) v = u.dy;
        set_args(kern, kname.c_str(), mem(v), mem(u.dy), mem(u.dx), cl_long{u.n}, cl_float{u.alpha});
        launch_elementwise(kern, kname.c_str(), u.n);
    }

    void binary_f32(const BinaryArgs& b) override {
        const char* mode = binary_mode(b.g);
        const std::string kname = cat("binary_", kBinaryNames[b.op], "_", mode);
        cl_kernel kern = kernel(kname);
        if (std::strcmp(mode, "nd") == 0) {
            cl_long8 dims, a_strides, b_strides;
            geometry_vectors(b.g, dims, a_strides, b_strides);
            set_args(kern, kname.c_str(), mem(b.a), mem(b.b), mem(b.c), cl_long{b.g.n}, cl_int{b.g.rank}, dims,
                     a_strides, b_strides);
        } else {
            set_args(kern, kname.c_str(), mem(b.a), mem(b.b), mem(b.c), cl_long{b.g.n});
        }
        launch_elementwise(kern, kname.c_str(), b.g.n);
    }

    void binary_backward_f32(const BinaryBackwardArgs& b) override {
        const char* mode = binary_mode(b.g);
        const std::string kname = cat("binary_backward_", kBinaryNames[b.op], "_", mode);
        cl_kernel kern = kernel(kname);
        // An unwanted gradient is switched off by its flag; its argument is bound to dc, which the
        // kernel then never writes (OpenCL 1.2 has no portable way to pass a null buffer).
        const cl_mem da = b.da ? mem(b.da) : mem(b.dc);
        const cl_mem db = b.db ? mem(b.db) : mem(b.dc);
        const cl_int has_da = b.da ? 1 : 0, has_db = b.db ? 1 : 0;
        if (std::strcmp(mode, "nd") == 0) {
            cl_long8 dims, a_strides, b_strides;
            geometry_vectors(b.g, dims, a_strides, b_strides);
            set_args(kern, kname.c_str(), mem(b.a), mem(b.b), mem(b.dc), da, db, cl_long{b.g.n}, has_da, has_db,
                     cl_int{b.g.rank}, dims, a_strides, b_strides);
        } else {
            set_args(kern, kname.c_str(), mem(b.a), mem(b.b), mem(b.dc), da, db, cl_long{b.g.n}, has_da, has_db);
        }
        launch_elementwise(kern, kname.c_str(), b.g.n);
    }

    // ---- Reductions --------------------------------------------------------------------------

    void reduce_f32(const ReduceArgs& r) override {
        if (r.reduce == 0) {
            fill_f32(r.y, 0, r.outer * r.inner,
                     r.op == KN_REDUCE_MEAN ? std::numeric_limits<float>::quiet_NaN() : 0.0f);
            return;
        }
        const char* op = r.op == KN_REDUCE_MAX ? "maximum" : r.op == KN_REDUCE_MIN ? "minimum"
                         : r.op == KN_REDUCE_SUM_SQUARES ? "sumsq" : "sum";
        // The second pass combines partial results: squares are already taken, sums stay sums.
        const char* combine_op = r.op == KN_REDUCE_SUM_SQUARES ? "sum" : op;
        const float divisor = r.op == KN_REDUCE_MEAN ? static_cast<float>(r.reduce) : 1.0f;
        const int64_t chunks = plan_chunks(r.outer, r.reduce, r.inner, false);
        if (chunks == 1) {
            reduce_pass(op, r.x, r.y, r.outer, r.reduce, r.inner, 1, divisor);
            return;
        }
        const cl_mem partial = scratch(0, r.outer * chunks * r.inner * 4);
        reduce_pass(op, r.x, partial, r.outer, r.reduce, r.inner, chunks, 1.0f);
        reduce_pass(combine_op, partial, r.y, r.outer, chunks, r.inner, 1, divisor);
    }

    void argreduce_f32(const ArgReduceArgs& r) override {
        const char* op = r.op == KN_ARGMAX ? "maximum" : "minimum";
        const int64_t chunks = plan_chunks(r.outer, r.reduce, r.inner, true);
        if (chunks == 1) {
            argreduce_pass(op, r.x, nullptr, nullptr, r.indices, r.outer, r.reduce, r.inner, 1);
            return;
        }
        const int64_t partials = r.outer * chunks * r.inner;
        const cl_mem values = scratch(0, partials * 4);
        const cl_mem indices = scratch(1, partials * 8);
        argreduce_pass(op, r.x, nullptr, values, indices, r.outer, r.reduce, r.inner, chunks);
        argreduce_pass(op, values, indices, nullptr, r.indices, r.outer, chunks, r.inner, 1);
    }

    // ---- Softmax -----------------------------------------------------------------------------

    void softmax_f32(const SoftmaxArgs& s) override {
        const bool small = use_small_softmax(s.rows, s.cols);
        const char* kname = small ? "softmax_rows_small" : "softmax_rows";
        cl_kernel kern = kernel(kname);
        if (small) {
            set_args(kern, kname, mem(s.x), mem(s.y), cl_long{s.rows}, cl_long{s.cols}, cl_int{s.log ? 1 : 0});
            launch_1d(kern, kname, s.rows);
        } else {
            set_args(kern, kname, mem(s.x), mem(s.y), cl_long{s.cols}, cl_int{s.log ? 1 : 0});
            launch_groups(kern, kname, s.rows, tuning_.softmax_wg);
        }
    }

    void softmax_backward_f32(const SoftmaxBackwardArgs& s) override {
        const bool small = use_small_softmax(s.rows, s.cols);
        const char* kname = small ? "softmax_backward_rows_small" : "softmax_backward_rows";
        cl_kernel kern = kernel(kname);
        if (small) {
            set_args(kern, kname, mem(s.y), mem(s.dy), mem(s.dx), cl_long{s.rows}, cl_long{s.cols},
                     cl_int{s.log ? 1 : 0});
            launch_1d(kern, kname, s.rows);
        } else {
            set_args(kern, kname, mem(s.y), mem(s.dy), mem(s.dx), cl_long{s.cols}, cl_int{s.log ? 1 : 0});
            launch_groups(kern, kname, s.rows, tuning_.softmax_wg);
        }
    }

    // ---- Training kernels ----------------------------------------------------------------------

    void cross_entropy_f32(const CrossEntropyArgs& c) override {
        const bool small = use_small_softmax(c.rows, c.cols);
        const char* kname = small ? "cross_entropy_rows_small" : "cross_entropy_rows";
        cl_kernel kern = kernel(kname);
        if (small) {
            set_args(kern, kname, mem(c.logits), mem(c.labels), mem(c.losses), cl_long{c.rows}, cl_long{c.cols});
            launch_1d(kern, kname, c.rows);
        } else {
            set_args(kern, kname, mem(c.logits), mem(c.labels), mem(c.losses), cl_long{c.cols});
            launch_groups(kern, kname, c.rows, tuning_.softmax_wg);
        }
    }

    void cross_entropy_backward_f32(const CrossEntropyBackwardArgs& c) override {
        const bool small = use_small_softmax(c.rows, c.cols);
        const char* kname = small ? "cross_entropy_backward_rows_small" : "cross_entropy_backward_rows";
        cl_kernel kern = kernel(kname);
        if (small) {
            set_args(kern, kname, mem(c.logits), mem(c.labels), mem(c.dlosses), mem(c.dlogits), cl_long{c.rows},
                     cl_long{c.cols});
            launch_1d(kern, kname, c.rows);
        } else {
            set_args(kern, kname, mem(c.logits), mem(c.labels), mem(c.dlosses), mem(c.dlogits), cl_long{c.cols});
            launch_groups(kern, kname, c.rows, tuning_.softmax_wg);
        }
    }

    // Forward and backward are the same map (kernels.h): keep(i) ? in[i] / (1 - p) : 0.
    void dropout_f32(const DropoutArgs& d) override { dropout(d); }
    void dropout_backward_f32(const DropoutArgs& d) override { dropout(d); }

    void clamp_f32(const ClampArgs& c) override {
        const char* kname = "clamp_values";
        cl_kernel kern = kernel(kname);
        set_args(kern, kname, mem(c.x), mem(c.y), cl_long{c.n}, cl_float{c.low}, cl_float{c.high});
        launch_elementwise(kern, kname, c.n);
    }

    void sgd_step_f32(const SgdArgs& a) override {
        const char* kname = "sgd_step";
        cl_kernel kern = kernel(kname);
        const cl_int has_velocity = a.velocity ? 1 : 0;
        set_args(kern, kname, mem(a.param), mem(a.grad), a.velocity ? mem(a.velocity) : mem(a.param), cl_long{a.n},
                 cl_float{a.lr}, cl_float{a.momentum}, cl_float{a.dampening}, cl_float{a.weight_decay},
                 cl_int{a.nesterov ? 1 : 0}, cl_int{a.first_step ? 1 : 0}, has_velocity);
        launch_elementwise(kern, kname, a.n);
    }

    void adam_step_f32(const AdamArgs& a) override {
        const char* kname = "adam_step";
        cl_kernel kern = kernel(kname);
        // As on the CPU: bias corrections in double (beta2^t for t in the millions underflows
        // gracefully to 0), decoupled decay folded into one factor.
        const float c1 = static_cast<float>(1.0 / (1.0 - std::pow(static_cast<double>(a.beta1), static_cast<double>(a.step))));
        const float c2 = static_cast<float>(1.0 / (1.0 - std::pow(static_cast<double>(a.beta2), static_cast<double>(a.step))));
        const float decay = a.decoupled_weight_decay ? 1.0f - a.lr * a.weight_decay : 1.0f;
        const float l2 = a.decoupled_weight_decay ? 0.0f : a.weight_decay;
        set_args(kern, kname, mem(a.param), mem(a.grad), mem(a.m), mem(a.v), cl_long{a.n}, cl_float{a.lr},
                 cl_float{a.beta1}, cl_float{a.beta2}, cl_float{a.eps}, cl_float{decay}, cl_float{l2}, cl_float{c1},
                 cl_float{c2});
        launch_elementwise(kern, kname, a.n);
    }

    void rmsprop_step_f32(const RmspropArgs& a) override {
        const char* kname = "rmsprop_step";
        cl_kernel kern = kernel(kname);
        const cl_int has_velocity = a.velocity ? 1 : 0;
        set_args(kern, kname, mem(a.param), mem(a.grad), mem(a.square_avg), a.velocity ? mem(a.velocity) : mem(a.param),
                 cl_long{a.n}, cl_float{a.lr}, cl_float{a.alpha}, cl_float{a.eps}, cl_float{a.weight_decay},
                 cl_float{a.momentum}, has_velocity);
        launch_elementwise(kern, kname, a.n);
    }

    void adagrad_step_f32(const AdagradArgs& a) override {
        const char* kname = "adagrad_step";
        cl_kernel kern = kernel(kname);
        set_args(kern, kname, mem(a.param), mem(a.grad), mem(a.sum), cl_long{a.n}, cl_float{a.lr}, cl_float{a.eps},
                 cl_float{a.weight_decay});
        launch_elementwise(kern, kname, a.n);
    }

    // ---- Convolution, pooling, batch normalization (conv.cl, pool.cl, batch_norm.cl) -----------

    void conv2d_f32(const Conv2dArgs& a) override {
        const Conv2dGeometry& g = a.g;
        const cl_int16 geometry = conv_geometry_vector(g, "conv2d");
        const cl_int has_bias = a.bias ? 1 : 0;
        const cl_mem bias = a.bias ? mem(a.bias) : mem(a.w);  // never read without has_bias
        const bool direct = g.out_channels / g.groups < tuning_.conv_direct_rows;
        const char* kname = direct ? "conv2d_forward_direct" : "conv2d_forward_gemm";
        cl_kernel kern = kernel(kname);
        set_args(kern, kname, mem(a.x), mem(a.w), bias, has_bias, mem(a.y), geometry);
        if (direct) launch_planes(kern, kname, 6, g.out_height * g.out_width, g.batch * g.out_channels);
        else launch_conv_gemm(kern, kname, 6, g.out_channels / g.groups, g.batch * g.out_height * g.out_width, 1, g.groups);
    }

    void conv2d_backward_data_f32(const Conv2dBackwardDataArgs& a) override {
        const Conv2dGeometry& g = a.g;
        const cl_int16 geometry = conv_geometry_vector(g, "conv2d_backward_data");
        const bool direct = g.in_channels / g.groups < tuning_.conv_direct_rows;
        const char* kname = direct ? "conv2d_backward_data_direct" : "conv2d_backward_data_gemm";
        cl_kernel kern = kernel(kname);
        set_args(kern, kname, mem(a.dy), mem(a.w), mem(a.dx), geometry);
        if (direct) launch_planes(kern, kname, 4, g.in_height * g.in_width, g.batch * g.in_channels);
        else launch_conv_gemm(kern, kname, 4, g.in_channels / g.groups, g.batch * g.in_height * g.in_width, 1, g.groups);
    }

    void conv2d_backward_weights_f32(const Conv2dBackwardWeightsArgs& a) override {
        const Conv2dGeometry& g = a.g;
        const cl_int16 geometry = conv_geometry_vector(g, "conv2d_backward_weights");
        const int64_t m = g.out_channels / g.groups;
        const int64_t n = g.in_channels / g.groups * g.kernel_height * g.kernel_width;
        const int64_t k = g.batch * g.out_height * g.out_width;
        if (m < tuning_.conv_direct_rows) {
            const char* kname = "conv2d_backward_weights_direct";
            cl_kernel kern = kernel(kname);
            set_args(kern, kname, mem(a.x), mem(a.dy), mem(a.dw), geometry);
            launch_groups(kern, kname, g.out_channels * n, tuning_.conv_reduce_wg);
        } else {
            // Split the reduced (n, oh, ow) axis when the output tiles alone leave the device idle;
            // each chunk a whole number of k tiles. The chunks are added in order afterwards.
            const Tuning& t = tuning_;
            const int64_t tiles = ceil_div(m, t.conv_tile_m) * ceil_div(n, t.conv_tile_n) * g.groups;
            const int64_t target = std::max<int64_t>(1, int64_t{compute_units_} * t.groups_per_unit);
            const int64_t min_chunk = std::max<int64_t>(256, 2 * int64_t{t.conv_tile_k});
            int64_t chunks = tiles >= target ? 1 : std::min({ceil_div(target, tiles), k / min_chunk, int64_t{4096}});
            chunks = std::max<int64_t>(1, chunks);
            const int64_t chunk_len = ceil_div(ceil_div(k, chunks), t.conv_tile_k) * t.conv_tile_k;
            chunks = ceil_div(k, chunk_len);
            const int64_t count = g.out_channels * n;
            const cl_mem out = chunks == 1 ? mem(a.dw) : scratch(2, chunks * count * 4);
            const char* kname = "conv2d_backward_weights_gemm";
            cl_kernel kern = kernel(kname);
            set_args(kern, kname, mem(a.x), mem(a.dy), out, geometry, cl_int{0}, cl_long{chunk_len});
            launch_conv_gemm(kern, kname, 4, m, n, chunks, g.groups);
            if (chunks > 1) {
                const char* sname = "conv2d_sum_partials";
                cl_kernel sum = kernel(sname);
                set_args(sum, sname, out, mem(a.dw), cl_long{count}, cl_int{static_cast<cl_int>(chunks)});
                launch_1d(sum, sname, count);
            }
        }
        if (a.dbias) {
            const char* kname = "conv2d_backward_bias";
            cl_kernel kern = kernel(kname);
            set_args(kern, kname, mem(a.dy), mem(a.dbias), cl_int{static_cast<cl_int>(g.batch)},
                     cl_int{static_cast<cl_int>(g.out_channels)},
                     cl_int{static_cast<cl_int>(g.out_height * g.out_width)});
            launch_groups(kern, kname, g.out_channels, tuning_.conv_reduce_wg);
        }
    }

    void pool2d_f32(const Pool2dArgs& a) override {
        const Pool2dGeometry& g = a.g;
        const cl_int16 geometry = pool_geometry_vector(g, "pool2d");
        // One work-item per output (GPUs) or per output row (CPUs, pool_rows).
        const int64_t planes = g.batch * g.channels;
        const int64_t plane = tuning_.pool_rows ? g.out_height : g.out_height * g.out_width;
        if (a.op == KN_POOL_MAX) {
            const char* kname = "pool2d_max";
            cl_kernel kern = kernel(kname);
            // Without indices the argument is bound to y and never written (has_indices = 0).
            set_args(kern, kname, mem(a.x), mem(a.y), a.indices ? mem(a.indices) : mem(a.y),
                     cl_int{a.indices ? 1 : 0}, geometry);
            launch_planes(kern, kname, 5, plane, planes);
        } else {
            const char* kname = "pool2d_avg";
            cl_kernel kern = kernel(kname);
            set_args(kern, kname, mem(a.x), mem(a.y), geometry);
            launch_planes(kern, kname, 3, plane, planes);
        }
    }

    void pool2d_backward_f32(const Pool2dBackwardArgs& a) override {
        const Pool2dGeometry& g = a.g;
        const cl_int16 geometry = pool_geometry_vector(g, "pool2d_backward");
        const int64_t planes = g.batch * g.channels;
        const int64_t plane = tuning_.pool_rows ? g.in_height : g.in_height * g.in_width;
        if (a.op == KN_POOL_MAX) {
            const char* kname = "pool2d_max_backward";
            cl_kernel kern = kernel(kname);
            set_args(kern, kname, mem(a.dy), mem(a.indices), mem(a.dx), geometry);
            launch_planes(kern, kname, 4, plane, planes);
        } else {
            const char* kname = "pool2d_avg_backward";
            cl_kernel kern = kernel(kname);
            set_args(kern, kname, mem(a.dy), mem(a.dx), geometry);
            launch_planes(kern, kname, 3, plane, planes);
        }
    }

    void batch_norm_f32(const BatchNormArgs& a) override {
        const int64_t channels = a.channels;
        // Without save_mean / save_invstd the statistics go to scratch buffers for the normalise pass.
        const cl_mem mean = a.save_mean ? mem(a.save_mean) : scratch(3, channels * 4);
        const cl_mem invstd = a.save_invstd ? mem(a.save_invstd) : scratch(4, channels * 4);
        if (a.training) {
            const char* kname = "batch_norm_statistics";
            cl_kernel kern = kernel(kname);
            const bool running = a.running_mean != nullptr;
            set_args(kern, kname, mem(a.x), mean, invstd, running ? mem(a.running_mean) : mem(a.x),
                     running ? mem(a.running_var) : mem(a.x), cl_int{running ? 1 : 0}, cl_long{a.batch},
                     cl_long{channels}, cl_long{a.spatial}, cl_float{a.eps}, cl_float{a.momentum});
            launch_groups(kern, kname, channels, tuning_.batch_norm_wg);
        } else {
            const char* kname = "batch_norm_inference_statistics";
            cl_kernel kern = kernel(kname);
            set_args(kern, kname, mem(a.running_mean), mem(a.running_var), mean, invstd, cl_long{channels},
                     cl_float{a.eps});
            launch_1d(kern, kname, channels);
        }
        const char* kname = "batch_norm_normalize";
        cl_kernel kern = kernel(kname);
        set_args(kern, kname, mem(a.x), mem(a.y), mean, invstd, mem(a.gamma), mem(a.beta), cl_long{a.batch},
                 cl_long{channels}, cl_long{a.spatial});
        launch_nchw(kern, kname, 9, ceil_div(a.spatial, tuning_.batch_norm_chunk), channels, a.batch);
    }

    void batch_norm_backward_f32(const BatchNormBackwardArgs& a) override {
        const int64_t channels = a.channels;
        {
            const char* kname = "batch_norm_backward_reduce";
            cl_kernel kern = kernel(kname);
            set_args(kern, kname, mem(a.x), mem(a.dy), mem(a.save_mean), mem(a.save_invstd), mem(a.dgamma),
                     mem(a.dbeta), cl_long{a.batch}, cl_long{channels}, cl_long{a.spatial});
            launch_groups(kern, kname, channels, tuning_.batch_norm_wg);
        }
        if (!a.dx) return;
        const char* kname = "batch_norm_backward_data";
        cl_kernel kern = kernel(kname);
        set_args(kern, kname, mem(a.x), mem(a.dy), mem(a.gamma), mem(a.save_mean), mem(a.save_invstd), mem(a.dgamma),
                 mem(a.dbeta), mem(a.dx), cl_long{a.batch}, cl_long{channels}, cl_long{a.spatial},
                 cl_float{static_cast<float>(a.batch * a.spatial)}, cl_int{a.training ? 1 : 0});
        launch_nchw(kern, kname, 13, ceil_div(a.spatial, tuning_.batch_norm_chunk), channels, a.batch);
    }

private:
    void dropout(const DropoutArgs& d) {
        const char* kname = "dropout_mask";
        cl_kernel kern = kernel(kname);
        const float scale = 1.0f / (1.0f - d.p);  // in float32, as the CPU backend computes it
        set_args(kern, kname, mem(d.x), mem(d.y), cl_long{d.n}, cl_float{d.p}, cl_float{scale}, cl_ulong{d.seed},
                 cl_ulong{d.offset});
        launch_elementwise(kern, kname, d.n);
    }

    // Throws for a failed OpenCL call: "opencl:0: clEnqueueNDRangeKernel(gemm_nn) failed: ...".
    void check(cl_int err, const char* call, const char* what = nullptr) const {
        if (err == CL_SUCCESS) return;
        const kn_status status = (err == CL_MEM_OBJECT_ALLOCATION_FAILURE || err == CL_OUT_OF_HOST_MEMORY)
                                     ? KN_ERROR_OUT_OF_MEMORY
                                     : KN_ERROR_BACKEND;
        if (what) fail(status, name, ": ", call, "(", what, ") failed: ", error_text(err));
        fail(status, name, ": ", call, " failed: ", error_text(err));
    }

    // The context and queue are created at first use, so merely listing devices stays cheap.
    void ensure_queue() {
        if (queue_) return;
        cl_int err = CL_SUCCESS;
        const cl_context_properties properties[] = {CL_CONTEXT_PLATFORM,
                                                    reinterpret_cast<cl_context_properties>(platform_), 0};
        if (!context_) {
            context_ = cl_.CreateContext(properties, 1, &device_, nullptr, nullptr, &err);
            check(err, "clCreateContext");
        }
        queue_ = cl_.CreateCommandQueue(context_, device_, 0, &err);
        check(err, "clCreateCommandQueue");
    }

    // Builds the program from every embedded .cl file, once, at the first kernel use.
    void ensure_program() {
        if (program_) return;
        // A failed build is not retried: the sources and options cannot change in this process.
        if (!build_error_.empty()) fail(KN_ERROR_BACKEND, build_error_);
        ensure_queue();
        std::vector<const char*> texts;
        for (int i = 0; i < kn_opencl_source_count; ++i) texts.push_back(kn_opencl_sources[i].text);
        cl_int err = CL_SUCCESS;
        cl_program program = cl_.CreateProgramWithSource(context_, static_cast<cl_uint>(texts.size()), texts.data(),
                                                          nullptr, &err);
        check(err, "clCreateProgramWithSource");
        const std::string options = tuning_.options();
        err = cl_.BuildProgram(program, 1, &device_, options.c_str(), nullptr, nullptr);
        if (err != CL_SUCCESS) {
            std::string log;
            size_t size = 0;
            if (cl_.GetProgramBuildInfo(program, device_, CL_PROGRAM_BUILD_LOG, 0, nullptr, &size) == CL_SUCCESS &&
                size > 0) {
                log.resize(size);
                cl_.GetProgramBuildInfo(program, device_, CL_PROGRAM_BUILD_LOG, size, &log[0], nullptr);
                log = trim(log);
            }
            cl_.ReleaseProgram(program);
            constexpr size_t kMaxLog = 3000;
            if (log.size() > kMaxLog) log = log.substr(0, kMaxLog) + "\n... (build log truncated)";
            build_error_ = cat(name, ": building the OpenCL kernels failed: ", error_text(err), " with options \"",
                               options, "\"; build log:\n", log.empty() ? "(empty)" : log);
            fail(KN_ERROR_BACKEND, build_error_);
        }
        program_ = program;
    }

    cl_kernel kernel(const std::string& kname) {
        auto found = kernels_.find(kname);
        if (found != kernels_.end()) return found->second;
        ensure_program();
        cl_int err = CL_SUCCESS;
        cl_kernel k = cl_.CreateKernel(program_, kname.c_str(), &err);
        check(err, "clCreateKernel", kname.c_str());
        kernels_.emplace(kname, k);
        return k;
    }

    template <typename T>
    void set_arg(cl_kernel kern, const char* kname, cl_uint index, const T& value) {
        const cl_int err = cl_.SetKernelArg(kern, index, sizeof(T), &value);
        if (err != CL_SUCCESS) check(err, "clSetKernelArg", cat(kname, " argument ", index).c_str());
    }

    template <typename... T>
    void set_args(cl_kernel kern, const char* kname, const T&... values) {
        cl_uint index = 0;
        (set_arg(kern, kname, index++, values), ...);
    }

    void launch(cl_kernel kern, const char* kname, cl_uint dims, const size_t* global, const size_t* local) {
        check(cl_.EnqueueNDRangeKernel(queue_, kern, dims, nullptr, global, local, 0, nullptr, nullptr),
              "clEnqueueNDRangeKernel", kname);
    }

    // Elementwise kernels: one work-item per EW_VEC elements, rounded up to the work-group size.
    void launch_elementwise(cl_kernel kern, const char* kname, int64_t n) {
        launch_1d(kern, kname, ceil_div(n, tuning_.ew_vec));
    }

    // One work-item per element (or row), the global size rounded up to the work-group size.
    void launch_1d(cl_kernel kern, const char* kname, int64_t n) {
        const size_t local = static_cast<size_t>(tuning_.elementwise_wg);
        const size_t global = round_up(n, tuning_.elementwise_wg);
        launch(kern, kname, 1, &global, &local);
    }

    // `groups` work-groups of `work_group` work-items along x.
    void launch_groups(cl_kernel kern, const char* kname, int64_t groups, int work_group) {
        const size_t local = static_cast<size_t>(work_group);
        const size_t global = static_cast<size_t>(groups) * local;
        launch(kern, kname, 1, &global, &local);
    }

    // The geometry of conv.cl's kernels as one int16 argument (kernels.h's order, then out_height,
    // out_width). The kernels index within an image in int32; larger images are refused here.
    cl_int16 conv_geometry_vector(const Conv2dGeometry& g, const char* op) const {
        const int64_t in_cg = g.in_channels / g.groups;
        const int64_t values[16] = {g.batch, g.in_channels, g.in_height, g.in_width, g.out_channels,
                                    g.kernel_height, g.kernel_width, g.stride_height, g.stride_width,
                                    g.pad_height, g.pad_width, g.dilation_height, g.dilation_width,
                                    g.groups, g.out_height, g.out_width};
        constexpr int64_t kMax = std::numeric_limits<cl_int>::max();
        const bool fits = *std::max_element(values, values + 16) <= kMax &&
                          g.in_height + 2 * g.pad_height <= kMax && g.in_width + 2 * g.pad_width <= kMax &&
                          g.in_channels * g.in_height * g.in_width <= kMax &&
                          g.out_channels * g.out_height * g.out_width <= kMax &&
                          g.out_channels * in_cg * g.kernel_height * g.kernel_width <= kMax;
        if (!fits)
            fail(KN_ERROR_NOT_SUPPORTED, name, ": ", op, ": the OpenCL kernels index one image (channels x height x ",
                 "width), the weights and the padded extent in int32; x is [", g.batch, ", ", g.in_channels, ", ",
                 g.in_height, ", ", g.in_width, "], y [", g.batch, ", ", g.out_channels, ", ", g.out_height, ", ",
                 g.out_width, "], padding ", g.pad_height, "x", g.pad_width);
        cl_int16 v;
        for (int i = 0; i < 16; ++i) v.s[i] = static_cast<cl_int>(values[i]);
        return v;
    }

    cl_int16 pool_geometry_vector(const Pool2dGeometry& g, const char* op) const {
        const int64_t values[13] = {g.batch, g.channels, g.in_height, g.in_width, g.kernel_height, g.kernel_width,
                                    g.stride_height, g.stride_width, g.pad_height, g.pad_width, g.out_height,
                                    g.out_width, g.count_include_pad ? 1 : 0};
        constexpr int64_t kMax = std::numeric_limits<cl_int>::max();
        if (*std::max_element(values, values + 13) > kMax || g.in_height + 2 * g.pad_height > kMax ||
            g.in_width + 2 * g.pad_width > kMax || g.out_height * g.out_width > kMax)
            fail(KN_ERROR_NOT_SUPPORTED, name, ": ", op, ": the OpenCL kernels index a plane in int32; x is [", g.batch,
                 ", ", g.channels, ", ", g.in_height, ", ", g.in_width, "], y [", g.batch, ", ", g.channels, ", ",
                 g.out_height, ", ", g.out_width, "]");
        cl_int16 v{};
        for (int i = 0; i < 13; ++i) v.s[i] = static_cast<cl_int>(values[i]);
        return v;
    }

    // conv.cl's implicit-GEMM kernels: x = the C tiles of one group, y = split-K chunks, z = groups
    // from the argument first_group_arg (launched in slices of 65535, the z limit of some GPUs).
    void launch_conv_gemm(cl_kernel kern, const char* kname, cl_uint first_group_arg, int64_t m, int64_t n,
                          int64_t chunks, int64_t groups) {
        const Tuning& t = tuning_;
        const int64_t tiles = ceil_div(m, t.conv_tile_m) * ceil_div(n, t.conv_tile_n);
        const size_t local[3] = {static_cast<size_t>(t.conv_local_x()), static_cast<size_t>(t.conv_local_y()), 1};
        for (int64_t first = 0; first < groups; first += kMaxBatchPerLaunch) {
            const int64_t count = std::min(kMaxBatchPerLaunch, groups - first);
            set_arg(kern, kname, first_group_arg, cl_int{static_cast<cl_int>(first)});
            const size_t global[3] = {static_cast<size_t>(tiles) * local[0], static_cast<size_t>(chunks) * local[1],
                                      static_cast<size_t>(count)};
            launch(kern, kname, 3, global, local);
        }
    }

    // One work-item per element of `planes` planes of plane_len elements: x = position in the plane,
    // y = plane. The work-group spans min(plane_len, elementwise_wg) positions (a power of two) and
    // as many planes as fill it, so short planes (1-D batch norm) do not idle a work-group; the
    // argument first_plane_arg receives each launch's first plane (y is split at 65535 groups).
    void launch_planes(cl_kernel kern, const char* kname, cl_uint first_plane_arg, int64_t plane_len, int64_t planes) {
        const int64_t wg = tuning_.elementwise_wg;
        int64_t lx = 1;
        while (lx < plane_len && lx < wg) lx *= 2;
        const int64_t ly = std::max<int64_t>(1, wg / lx);
        const int64_t per_launch = kMaxBatchPerLaunch * ly;
        for (int64_t first = 0; first < planes; first += per_launch) {
            const int64_t count = std::min(per_launch, planes - first);
            set_arg(kern, kname, first_plane_arg, cl_long{first});
            const size_t global[2] = {round_up(plane_len, lx), round_up(count, ly)};
            const size_t local[2] = {static_cast<size_t>(lx), static_cast<size_t>(ly)};
            launch(kern, kname, 2, global, local);
        }
    }

    // One work-item per (chunk of a plane, channel, image): x = chunk, y = channel, z = image, the
    // work-group min(chunks, elementwise_wg) chunks wide (a power of two) and as many channels as
    // fill it. The arguments first_arg and first_arg + 1 receive each launch's first channel and
    // first image (y and z are split at 65535 work-groups).
    void launch_nchw(cl_kernel kern, const char* kname, cl_uint first_arg, int64_t chunks, int64_t channels,
                     int64_t images) {
        const int64_t wg = tuning_.elementwise_wg;
        int64_t lx = 1;
        while (lx < chunks && lx < wg) lx *= 2;
        const int64_t ly = std::max<int64_t>(1, wg / lx);
        const int64_t channels_per_launch = kMaxBatchPerLaunch * ly;
        for (int64_t c0 = 0; c0 < channels; c0 += channels_per_launch) {
            const int64_t nc = std::min(channels_per_launch, channels - c0);
            for (int64_t n0 = 0; n0 < images; n0 += kMaxBatchPerLaunch) {
                const int64_t nn = std::min(kMaxBatchPerLaunch, images - n0);
                set_arg(kern, kname, first_arg, cl_long{c0});
                set_arg(kern, kname, first_arg + 1, cl_long{n0});
                const size_t global[3] = {round_up(chunks, lx), round_up(nc, ly), static_cast<size_t>(nn)};
                const size_t local[3] = {static_cast<size_t>(lx), static_cast<size_t>(ly), 1};
                launch(kern, kname, 3, global, local);
            }
        }
    }

    void release_scratch() noexcept override {
        // clReleaseMemObject defers the free until queued commands that use the buffer are done.
        for (int slot = 0; slot < static_cast<int>(std::size(scratch_)); slot++) {
            if (scratch_[slot]) cl_.ReleaseMemObject(scratch_[slot]);
            scratch_[slot] = nullptr;
            scratch_bytes_[slot] = 0;
        }
    }

    // A device-owned scratch buffer (slots: 0 reduction values, 1 argreduce indices, 2 convolution
    // split-K partial sums, 3 and 4 batch-norm statistics nobody asked to keep), grown on
    // demand. Reusing it across calls is safe: the queue is in order and calls on a device are
    // serialised by the API.
    cl_mem scratch(int slot, int64_t bytes) {
        if (bytes > scratch_bytes_[slot]) {
            if (scratch_[slot]) {
                cl_.ReleaseMemObject(scratch_[slot]);
                scratch_[slot] = nullptr;
                scratch_bytes_[slot] = 0;
            }
            scratch_[slot] = static_cast<cl_mem>(alloc(bytes));
            scratch_bytes_[slot] = bytes;
        }
        return scratch_[slot];
    }

    static const char* binary_mode(const BroadcastGeometry& g) {
        if (g.rank == 1) {
            if (g.a_strides[0] == 1 && g.b_strides[0] == 1) return "11";
            if (g.a_strides[0] == 1 && g.b_strides[0] == 0) return "10";
            if (g.a_strides[0] == 0 && g.b_strides[0] == 1) return "01";
        }
        return "nd";
    }

    // BroadcastGeometry as long8 vectors; entries past the rank are size 1, stride 0.
    static void geometry_vectors(const BroadcastGeometry& g, cl_long8& dims, cl_long8& a_strides,
                                 cl_long8& b_strides) {
        for (int d = 0; d < 8; ++d) {
            const bool used = d < g.rank;
            dims.s[d] = used ? g.dims[d] : 1;
            a_strides.s[d] = used ? g.a_strides[d] : 0;
            b_strides.s[d] = used ? g.b_strides[d] : 0;
        }
    }

    // How many chunks to split the reduced axis into so the device gets enough work-groups: 1 when
    // the outputs alone make enough groups or the axis is short; otherwise enough chunks for about
    // groups_per_unit groups per compute unit, each chunk still long enough to be worth a group.
    int64_t plan_chunks(int64_t outer, int64_t reduce, int64_t inner, bool arg) const {
        const Tuning& t = tuning_;
        const int64_t groups = inner == 1 ? outer : outer * ceil_div(inner, columns_per_group(arg));
        const int64_t target = std::max<int64_t>(1, int64_t{compute_units_} * t.groups_per_unit);
        if (groups >= target) return 1;
        const int64_t min_chunk = inner == 1 ? int64_t{t.reduce_wg} * t.reduce_vec * 4
                                             : int64_t{t.reduce_wg / t.reduce_cols_x} * 8;
        const int64_t chunks = std::min({ceil_div(target, groups), reduce / std::max<int64_t>(1, min_chunk),
                                         int64_t{4096}});
        return std::max<int64_t>(1, chunks);
    }

    static int64_t chunk_length(int64_t reduce, int64_t chunks) { return ceil_div(reduce, chunks); }

    // y[outer, chunks, inner] = op over each chunk of x[outer, reduce, inner], divided by divisor.
    void reduce_pass(const char* op, const void* x, const void* y, int64_t outer, int64_t reduce, int64_t inner,
                     int64_t chunks, float divisor) {
        const int64_t len = chunk_length(reduce, chunks);
        chunks = ceil_div(reduce, len);  // the last chunk is never empty
        if (inner == 1) {
            const std::string kname = cat("reduce_rows_", op);
            cl_kernel kern = kernel(kname);
            set_args(kern, kname.c_str(), mem(x), mem(y), cl_long{reduce}, cl_long{chunks}, cl_long{len},
                     cl_float{divisor});
            launch_groups(kern, kname.c_str(), outer * chunks, tuning_.reduce_wg);
        } else {
            const std::string kname = cat("reduce_cols_", op);
            cl_kernel kern = kernel(kname);
            set_args(kern, kname.c_str(), mem(x), mem(y), cl_long{reduce}, cl_long{inner}, cl_long{chunks},
                     cl_long{len}, cl_float{divisor});
            launch_groups(kern, kname.c_str(), ceil_div(inner, columns_per_group(false)) * outer * chunks,
                          tuning_.reduce_wg);
        }
    }

    // Columns one work-group of reduce_cols_* (REDUCE_VEC per work-item) or argreduce_cols_* covers.
    int64_t columns_per_group(bool arg) const {
        return arg ? tuning_.reduce_cols_x : int64_t{tuning_.reduce_cols_x} * tuning_.reduce_vec;
    }

    // Indices (and, for a first pass, values) of the extreme element of each chunk; index_in is
    // null in a first pass (the index of element r is r).
    void argreduce_pass(const char* op, const void* x, const void* index_in, const void* value_out,
                        const void* index_out, int64_t outer, int64_t reduce, int64_t inner, int64_t chunks) {
        const int64_t len = chunk_length(reduce, chunks);
        chunks = ceil_div(reduce, len);
        const cl_int has_index_in = index_in ? 1 : 0, has_value_out = value_out ? 1 : 0;
        // Unused buffer arguments are bound to x and never touched (their flags are off).
        const cl_mem in = index_in ? mem(index_in) : mem(x);
        const cl_mem values = value_out ? mem(value_out) : mem(x);
        if (inner == 1) {
            const std::string kname = cat("argreduce_rows_", op);
            cl_kernel kern = kernel(kname);
            set_args(kern, kname.c_str(), mem(x), in, values, mem(index_out), cl_long{reduce}, cl_long{chunks},
                     cl_long{len}, has_index_in, has_value_out);
            launch_groups(kern, kname.c_str(), outer * chunks, tuning_.reduce_wg);
        } else {
            const std::string kname = cat("argreduce_cols_", op);
            cl_kernel kern = kernel(kname);
            set_args(kern, kname.c_str(), mem(x), in, values, mem(index_out), cl_long{reduce}, cl_long{inner},
                     cl_long{chunks}, cl_long{len}, has_index_in, has_value_out);
            launch_groups(kern, kname.c_str(), ceil_div(inner, columns_per_group(true)) * outer * chunks,
                          tuning_.reduce_wg);
        }
    }

    // Short rows, or (on CPUs) enough rows to keep every core busy: one work-item per row.
    bool use_small_softmax(int64_t rows, int64_t cols) const {
        if (cols <= tuning_.softmax_small_cols) return true;
        return std::strcmp(tuning_.profile, "cpu") == 0 && rows >= int64_t{compute_units_} * 4;
    }

    const Api& cl_;
    cl_platform_id platform_;
    cl_device_id device_;
    cl_context context_ = nullptr;
    cl_command_queue queue_ = nullptr;
    cl_program program_ = nullptr;
    std::string build_error_;  // set once a program build failed
    std::unordered_map<std::string, cl_kernel> kernels_;
    cl_mem scratch_[5] = {};
    int64_t scratch_bytes_[5] = {};
    cl_ulong max_alloc_ = 0;
    cl_uint compute_units_ = 1;
    Tuning tuning_;
};

}  // namespace

void enumerate_opencl_devices(std::vector<std::unique_ptr<Device>>& out, std::string& reason) {
    const Api* cl = ocl::api(reason);
    if (!cl) return;
    cl_uint platform_count = 0;
    cl_int err = cl->GetPlatformIDs(0, nullptr, &platform_count);
    // The ICD loader answers CL_PLATFORM_NOT_FOUND_KHR (-1001) when no driver is registered.
    if (err == -1001 || (err == CL_SUCCESS && platform_count == 0)) {
        reason = "no OpenCL platform found";
        return;
    }
    if (err != CL_SUCCESS) {
        reason = cat("clGetPlatformIDs failed: ", error_text(err));
        return;
    }
    std::vector<cl_platform_id> platforms(platform_count);
    err = cl->GetPlatformIDs(platform_count, platforms.data(), nullptr);
    if (err != CL_SUCCESS) {
        reason = cat("clGetPlatformIDs failed: ", error_text(err));
        return;
    }
    int index = 0;
    std::string problems;
    for (cl_platform_id platform : platforms) {
        cl_uint device_count = 0;
        err = cl->GetDeviceIDs(platform, CL_DEVICE_TYPE_ALL, 0, nullptr, &device_count);
        if (err == CL_DEVICE_NOT_FOUND || (err == CL_SUCCESS && device_count == 0)) continue;
        if (err != CL_SUCCESS) {
            problems += cat("; clGetDeviceIDs on platform \"", platform_string(*cl, platform, CL_PLATFORM_NAME),
                            "\" failed: ", error_text(err));
            continue;
        }
        std::vector<cl_device_id> devices(device_count);
        err = cl->GetDeviceIDs(platform, CL_DEVICE_TYPE_ALL, device_count, devices.data(), nullptr);
        if (err != CL_SUCCESS) {
            problems += cat("; clGetDeviceIDs on platform \"", platform_string(*cl, platform, CL_PLATFORM_NAME),
                            "\" failed: ", error_text(err));
            continue;
        }
        for (cl_device_id device : devices) {
            try {
                out.push_back(std::make_unique<OpenClDevice>(*cl, platform, device, index));
                ++index;
            } catch (const Error& e) {
                problems += cat("; a device of platform \"", platform_string(*cl, platform, CL_PLATFORM_NAME),
                                "\" was skipped: ", e.what());
            }
        }
    }
    if (index == 0) reason = cat("no OpenCL device found (", platform_count, " platform(s))", problems);
}

}  // namespace kn
