// opencl_loader.cpp: finds the OpenCL ICD loader at run time and resolves the calls in Api.
// The library is never linked against libOpenCL, so a machine without one still loads libkernels;
// the OpenCL backend then reports "no OpenCL loader found" and lists no devices.
#include "opencl_loader.h"

#if defined(_WIN32)
#define WIN32_LEAN_AND_MEAN
#include <windows.h>
#else
#include <dlfcn.h>
#endif

namespace kn::ocl {
namespace {

#if defined(_WIN32)
const char* const kLibraryNames[] = {"OpenCL.dll"};
void* open_library(const char* name) { return reinterpret_cast<void*>(LoadLibraryA(name)); }
void* find_symbol(void* library, const char* name) {
    return reinterpret_cast<void*>(GetProcAddress(static_cast<HMODULE>(library), name));
}
#else
// The versioned name first: the unversioned symlink only exists where development files are installed.
const char* const kLibraryNames[] = {"libOpenCL.so.1", "libOpenCL.so"};
void* open_library(const char* name) { return dlopen(name, RTLD_NOW | RTLD_LOCAL); }
void* find_symbol(void* library, const char* name) { return dlsym(library, name); }
#endif

struct Loaded {
    Api api{};
    bool ok = false;
    std::string reason;
};

template <typename Fn>
bool resolve(void* library, const char* library_name, const char* symbol, Fn& slot, std::string& reason) {
    void* p = find_symbol(library, symbol);
    if (!p) {
        reason = std::string("the OpenCL loader ") + library_name + " lacks " + symbol +
                 " (an OpenCL 1.2 loader is required)";
        return false;
    }
    slot = reinterpret_cast<Fn>(p);
    return true;
}

Loaded load() {
    Loaded out;
    void* library = nullptr;
    const char* library_name = nullptr;
    std::string tried;
    for (const char* name : kLibraryNames) {
        tried += (tried.empty() ? "" : ", ") + std::string(name);
        library = open_library(name);
        if (library) {
            library_name = name;
            break;
        }
    }
    if (!library) {
        out.reason = "no OpenCL loader found (tried " + tried + ")";
        return out;
    }
    // Never unloaded: OpenCL objects and ICD threads must outlive every use, up to process exit.
    Api& a = out.api;
    std::string& r = out.reason;
    const char* n = library_name;
    bool ok = resolve(library, n, "clGetPlatformIDs", a.GetPlatformIDs, r) &&
              resolve(library, n, "clGetPlatformInfo", a.GetPlatformInfo, r) &&
              resolve(library, n, "clGetDeviceIDs", a.GetDeviceIDs, r) &&
              resolve(library, n, "clGetDeviceInfo", a.GetDeviceInfo, r) &&
              resolve(library, n, "clCreateContext", a.CreateContext, r) &&
              resolve(library, n, "clReleaseContext", a.ReleaseContext, r) &&
              resolve(library, n, "clCreateCommandQueue", a.CreateCommandQueue, r) &&
              resolve(library, n, "clReleaseCommandQueue", a.ReleaseCommandQueue, r) &&
              resolve(library, n, "clCreateBuffer", a.CreateBuffer, r) &&
              resolve(library, n, "clReleaseMemObject", a.ReleaseMemObject, r) &&
              resolve(library, n, "clEnqueueWriteBuffer", a.EnqueueWriteBuffer, r) &&
              resolve(library, n, "clEnqueueReadBuffer", a.EnqueueReadBuffer, r) &&
              resolve(library, n, "clEnqueueCopyBuffer", a.EnqueueCopyBuffer, r) &&
              resolve(library, n, "clEnqueueFillBuffer", a.EnqueueFillBuffer, r) &&
              resolve(library, n, "clCreateProgramWithSource", a.CreateProgramWithSource, r) &&
              resolve(library, n, "clBuildProgram", a.BuildProgram, r) &&
              resolve(library, n, "clGetProgramBuildInfo", a.GetProgramBuildInfo, r) &&
              resolve(library, n, "clReleaseProgram", a.ReleaseProgram, r) &&
              resolve(library, n, "clCreateKernel", a.CreateKernel, r) &&
              resolve(library, n, "clReleaseKernel", a.ReleaseKernel, r) &&
              resolve(library, n, "clGetKernelWorkGroupInfo", a.GetKernelWorkGroupInfo, r) &&
              resolve(library, n, "clSetKernelArg", a.SetKernelArg, r) &&
              resolve(library, n, "clEnqueueNDRangeKernel", a.EnqueueNDRangeKernel, r) &&
              resolve(library, n, "clFinish", a.Finish, r);
    out.ok = ok;
    return out;
}

}  // namespace

const Api* api(std::string& reason) {
    static const Loaded loaded = load();  // thread-safe one-time initialisation (C++11 statics)
    if (!loaded.ok) {
        reason = loaded.reason;
        return nullptr;
    }
    return &loaded.api;
}

const char* error_name(cl_int code) {
    // Numbers rather than macros: the 2.x/3.0 codes are hidden when CL_TARGET_OPENCL_VERSION=120,
    // yet a newer driver may still return them.
    switch (code) {
        case 0: return "CL_SUCCESS";
        case -1: return "CL_DEVICE_NOT_FOUND";
        case -2: return "CL_DEVICE_NOT_AVAILABLE";
        case -3: return "CL_COMPILER_NOT_AVAILABLE";
        case -4: return "CL_MEM_OBJECT_ALLOCATION_FAILURE";
        case -5: return "CL_OUT_OF_RESOURCES";
        case -6: return "CL_OUT_OF_HOST_MEMORY";
        case -7: return "CL_PROFILING_INFO_NOT_AVAILABLE";
        case -8: return "CL_MEM_COPY_OVERLAP";
        case -9: return "CL_IMAGE_FORMAT_MISMATCH";
        case -10: return "CL_IMAGE_FORMAT_NOT_SUPPORTED";
        case -11: return "CL_BUILD_PROGRAM_FAILURE";
        case -12: return "CL_MAP_FAILURE";
        case -13: return "CL_MISALIGNED_SUB_BUFFER_OFFSET";
        case -14: return "CL_EXEC_STATUS_ERROR_FOR_EVENTS_IN_WAIT_LIST";
        case -15: return "CL_COMPILE_PROGRAM_FAILURE";
        case -16: return "CL_LINKER_NOT_AVAILABLE";
        case -17: return "CL_LINK_PROGRAM_FAILURE";
        case -18: return "CL_DEVICE_PARTITION_FAILED";
        case -19: return "CL_KERNEL_ARG_INFO_NOT_AVAILABLE";
        case -30: return "CL_INVALID_VALUE";
        case -31: return "CL_INVALID_DEVICE_TYPE";
        case -32: return "CL_INVALID_PLATFORM";
        case -33: return "CL_INVALID_DEVICE";
        case -34: return "CL_INVALID_CONTEXT";
        case -35: return "CL_INVALID_QUEUE_PROPERTIES";
        case -36: return "CL_INVALID_COMMAND_QUEUE";
        case -37: return "CL_INVALID_HOST_PTR";
        case -38: return "CL_INVALID_MEM_OBJECT";
        case -39: return "CL_INVALID_IMAGE_FORMAT_DESCRIPTOR";
        case -40: return "CL_INVALID_IMAGE_SIZE";
        case -41: return "CL_INVALID_SAMPLER";
        case -42: return "CL_INVALID_BINARY";
        case -43: return "CL_INVALID_BUILD_OPTIONS";
        case -44: return "CL_INVALID_PROGRAM";
        case -45: return "CL_INVALID_PROGRAM_EXECUTABLE";
        case -46: return "CL_INVALID_KERNEL_NAME";
        case -47: return "CL_INVALID_KERNEL_DEFINITION";
        case -48: return "CL_INVALID_KERNEL";
        case -49: return "CL_INVALID_ARG_INDEX";
        case -50: return "CL_INVALID_ARG_VALUE";
        case -51: return "CL_INVALID_ARG_SIZE";
        case -52: return "CL_INVALID_KERNEL_ARGS";
        case -53: return "CL_INVALID_WORK_DIMENSION";
        case -54: return "CL_INVALID_WORK_GROUP_SIZE";
        case -55: return "CL_INVALID_WORK_ITEM_SIZE";
        case -56: return "CL_INVALID_GLOBAL_OFFSET";
        case -57: return "CL_INVALID_EVENT_WAIT_LIST";
        case -58: return "CL_INVALID_EVENT";
        case -59: return "CL_INVALID_OPERATION";
        case -60: return "CL_INVALID_GL_OBJECT";
        case -61: return "CL_INVALID_BUFFER_SIZE";
        case -62: return "CL_INVALID_MIP_LEVEL";
        case -63: return "CL_INVALID_GLOBAL_WORK_SIZE";
        case -64: return "CL_INVALID_PROPERTY";
        case -65: return "CL_INVALID_IMAGE_DESCRIPTOR";
        case -66: return "CL_INVALID_COMPILER_OPTIONS";
        case -67: return "CL_INVALID_LINKER_OPTIONS";
        case -68: return "CL_INVALID_DEVICE_PARTITION_COUNT";
        case -69: return "CL_INVALID_PIPE_SIZE";
        case -70: return "CL_INVALID_DEVICE_QUEUE";
        case -71: return "CL_INVALID_SPEC_ID";
        case -72: return "CL_MAX_SIZE_RESTRICTION_EXCEEDED";
        case -1001: return "CL_PLATFORM_NOT_FOUND_KHR";
        default: return "unknown OpenCL error";
    }
}

}  // namespace kn::ocl
