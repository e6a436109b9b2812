// opencl_program.cpp: the tunables of a device, and the one program built from the embedded
// kernel sources with them (see opencl_program.h).
#include "opencl_program.h"
#include "opencl_sources.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <vector>

namespace kn::opencl {
namespace {

int floor_pow2(size_t v) {
    int p = 1;
    while (static_cast<size_t>(p) * 2 <= v && p < (1 << 20)) p *= 2;
    return p;
}

}  // namespace

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

std::string trim(std::string s) {
    while (!s.empty() && (s.back() == '\0' || s.back() == ' ' || s.back() == '\n' || s.back() == '\r' ||
                          s.back() == '\t'))
        s.pop_back();
    size_t first = s.find_first_not_of(" \t\r\n");
    return first == std::string::npos ? std::string() : s.substr(first);
}

std::string error_text(cl_int err) { return cat(ocl::error_name(err), " (", err, ")"); }

void check_call(cl_int err, const std::string& device_name, const char* call, const char* what) {
    if (err == CL_SUCCESS) return;
    const kn_status status = (err == CL_MEM_OBJECT_ALLOCATION_FAILURE || err == CL_OUT_OF_HOST_MEMORY)
                                 ? KN_ERROR_OUT_OF_MEMORY
                                 : KN_ERROR_BACKEND;
    if (what) fail(status, device_name, ": ", call, "(", what, ") failed: ", error_text(err));
    fail(status, device_name, ": ", call, " failed: ", error_text(err));
}

Program::~Program() {
    // Devices live in a registry that is never destroyed, so this only runs if that changes.
    for (auto& entry : kernels_) cl_.ReleaseKernel(entry.second);
    if (program_) cl_.ReleaseProgram(program_);
}

cl_kernel Program::kernel(cl_context context, const std::string& kname) {
    auto found = kernels_.find(kname);
    if (found != kernels_.end()) return found->second;
    if (!program_) build(context);
    cl_int err = CL_SUCCESS;
    cl_kernel k = cl_.CreateKernel(program_, kname.c_str(), &err);
    check_call(err, device_name_, "clCreateKernel", kname.c_str());
    kernels_.emplace(kname, k);
    return k;
}

void Program::build(cl_context context) {
    if (!build_error_.empty()) fail(KN_ERROR_BACKEND, build_error_);
    std::vector<const char*> texts;
    for (int i = 0; i < kn_opencl_source_count; ++i) texts.push_back(kn_opencl_sources[i].text);
    cl_int err = CL_SUCCESS;
    cl_program program = cl_.CreateProgramWithSource(context, static_cast<cl_uint>(texts.size()), texts.data(),
                                                     nullptr, &err);
    check_call(err, device_name_, "clCreateProgramWithSource");
    err = cl_.BuildProgram(program, 1, &device_, options_.c_str(), nullptr, nullptr);
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
        build_error_ = cat(device_name_, ": building the OpenCL kernels failed: ", error_text(err), " with options \"",
                           options_, "\"; build log:\n", log.empty() ? "(empty)" : log);
        fail(KN_ERROR_BACKEND, build_error_);
    }
    program_ = program;
}

}  // namespace kn::opencl
