// opencl_program.h: what the OpenCL kernels are built with, and how. The tunables of a device
// (Tuning, chosen from its type and limits) become -D options of one program built from every
// embedded native/kernels/opencl/*.cl at the first kernel use, and they also fix the launch geometry
// in the launchers, so the two always agree. Program caches the kernels by name.
// Also the error text of a failed OpenCL call, which every piece of the backend reports the same way.
#pragma once

#include "error.h"
#include "opencl_loader.h"

#include <algorithm>
#include <cstdint>
#include <string>
#include <unordered_map>

namespace kn::opencl {

using ocl::Api;

// "CL_OUT_OF_RESOURCES (-5)".
std::string error_text(cl_int err);

// An OpenCL info string or build log without its terminating NUL and surrounding blanks.
std::string trim(std::string s);

// Throws for a failed OpenCL call: "opencl:0: clEnqueueNDRangeKernel(gemm_nn) failed:
// CL_OUT_OF_RESOURCES (-5)" (`what`, when given, goes in the parentheses). Allocation failures
// become KN_ERROR_OUT_OF_MEMORY, everything else KN_ERROR_BACKEND.
void check_call(cl_int err, const std::string& device_name, const char* call, const char* what = nullptr);

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

// Picks the tunables. CPUs (PoCL, Intel's and AMD's CPU runtimes) run a work-group as a loop on one
// core: GEMM then uses the single-work-item packing kernel with the SIMD width as vector width, and
// reductions use few work-items with contiguous vector loads. GPUs and accelerators get the tiled
// work-group shapes. KN_OPENCL_PROFILE=gpu|cpu overrides the choice (to run the GPU code paths on a
// CPU device in tests).
Tuning choose_tuning(cl_device_type type, size_t max_work_group, cl_ulong local_memory, cl_uint native_float_width,
                     bool has_fma);

// The kernels of one device: one program from every embedded .cl file, built with the tuning's
// options at the first kernel asked for, and each kernel created once and kept.
class Program {
public:
    Program(const Api& cl, cl_device_id device, const std::string& device_name, std::string options)
        : cl_(cl), device_(device), device_name_(device_name), options_(std::move(options)) {}
    ~Program();
    Program(const Program&) = delete;
    Program& operator=(const Program&) = delete;

    // The kernel `kname` (built for `context` at the first call). A failed build is not retried:
    // the sources and options cannot change in this process, so every later call reports it again.
    cl_kernel kernel(cl_context context, const std::string& kname);

private:
    void build(cl_context context);

    const Api& cl_;
    cl_device_id device_;
    std::string device_name_;  // for messages: "opencl:0"
    std::string options_;
    cl_program program_ = nullptr;
    std::string build_error_;  // set once a build failed
    std::unordered_map<std::string, cl_kernel> kernels_;
};

}  // namespace kn::opencl
