// opencl_loader.h: the OpenCL entry points libkernels uses, resolved at run time from the system's
// OpenCL ICD loader (libOpenCL.so.1 / libOpenCL.so / OpenCL.dll) instead of linked, so the library
// loads and runs its CPU backend on machines that have no OpenCL installed at all.
#pragma once

#include <CL/cl.h>

#include <string>

namespace kn::ocl {

// One function pointer per OpenCL call in use, typed from <CL/cl.h> (OpenCL 1.2 API).
struct Api {
    decltype(&::clGetPlatformIDs) GetPlatformIDs;
    decltype(&::clGetPlatformInfo) GetPlatformInfo;
    decltype(&::clGetDeviceIDs) GetDeviceIDs;
    decltype(&::clGetDeviceInfo) GetDeviceInfo;
    decltype(&::clCreateContext) CreateContext;
    decltype(&::clReleaseContext) ReleaseContext;
    decltype(&::clCreateCommandQueue) CreateCommandQueue;
    decltype(&::clReleaseCommandQueue) ReleaseCommandQueue;
    decltype(&::clCreateBuffer) CreateBuffer;
    decltype(&::clReleaseMemObject) ReleaseMemObject;
    decltype(&::clEnqueueWriteBuffer) EnqueueWriteBuffer;
    decltype(&::clEnqueueReadBuffer) EnqueueReadBuffer;
    decltype(&::clEnqueueCopyBuffer) EnqueueCopyBuffer;
    decltype(&::clEnqueueFillBuffer) EnqueueFillBuffer;
    decltype(&::clCreateProgramWithSource) CreateProgramWithSource;
    decltype(&::clBuildProgram) BuildProgram;
    decltype(&::clGetProgramBuildInfo) GetProgramBuildInfo;
    decltype(&::clReleaseProgram) ReleaseProgram;
    decltype(&::clCreateKernel) CreateKernel;
    decltype(&::clReleaseKernel) ReleaseKernel;
    decltype(&::clGetKernelWorkGroupInfo) GetKernelWorkGroupInfo;
    decltype(&::clSetKernelArg) SetKernelArg;
    decltype(&::clEnqueueNDRangeKernel) EnqueueNDRangeKernel;
    decltype(&::clFinish) Finish;
};

// The table, loaded once (thread-safe) and never unloaded: OpenCL objects stay valid until the
// process ends. Returns null when no loader (or a loader lacking a needed call) is found, and then
// sets `reason` to a sentence saying what was tried.
const Api* api(std::string& reason);

// "CL_OUT_OF_RESOURCES" for -5, ...; "unknown OpenCL error" for codes outside the standard set.
const char* error_name(cl_int code);

}  // namespace kn::ocl
