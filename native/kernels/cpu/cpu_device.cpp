// cpu_device.cpp: the CPU backend. Memory is 64-byte aligned host memory (one cache line, and one
// zmm register, so aligned SIMD loads never split a line); every kernel runs synchronously on the
// calling thread plus the pool of kn::parallel_for, so synchronize() has nothing to wait for.
#include "backend.h"
#include "cpu_kernels.h"
#include "error.h"
#include "thread_pool.h"

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>

#if defined(_WIN32)
#ifndef NOMINMAX
#define NOMINMAX
#endif
#include <malloc.h>
#include <windows.h>
#elif defined(__APPLE__)
#include <sys/sysctl.h>
#include <sys/types.h>
#include <unistd.h>
#else
#include <unistd.h>
#endif

#if KN_CPU_X86
#if defined(_MSC_VER) && !defined(__clang__)
#include <intrin.h>
#else
#include <cpuid.h>
#endif
#endif

namespace kn {
namespace {

constexpr size_t kAlignment = 64;

char* bytes_at(void* p, int64_t offset) { return static_cast<char*>(p) + offset; }
const char* bytes_at(const void* p, int64_t offset) { return static_cast<const char*>(p) + offset; }

std::string trim(const std::string& s) {
    size_t b = s.find_first_not_of(" \t"), e = s.find_last_not_of(" \t\r\n");
    return b == std::string::npos ? std::string() : s.substr(b, e - b + 1);
}

// What the processor calls itself: /proc/cpuinfo on Linux, the CPUID brand string on other x86
// systems, sysctl on macOS.
std::string cpu_model_name() {
#if defined(__linux__)
    std::ifstream cpuinfo("/proc/cpuinfo");
    std::string line;
    // x86 says "model name"; ARM kernels say "Hardware" or nothing useful at all.
    for (const char* key : {"model name", "Hardware", "Processor", "cpu model"}) {
        cpuinfo.clear();
        cpuinfo.seekg(0);
        while (std::getline(cpuinfo, line)) {
            if (line.compare(0, std::strlen(key), key) != 0) continue;
            size_t colon = line.find(':');
            if (colon == std::string::npos) continue;
            std::string value = trim(line.substr(colon + 1));
            if (!value.empty()) return value;
        }
    }
#endif
#if KN_CPU_X86
    unsigned regs[12] = {};
#if defined(_MSC_VER) && !defined(__clang__)
    int info[4];
    __cpuid(info, 0x80000000);
    if (static_cast<unsigned>(info[0]) >= 0x80000004) {
        for (unsigned i = 0; i < 3; ++i) {
            __cpuid(info, static_cast<int>(0x80000002 + i));
            std::memcpy(regs + 4 * i, info, sizeof(info));
        }
        std::string brand(reinterpret_cast<const char*>(regs), sizeof(regs));
        brand = trim(brand.c_str());
        if (!brand.empty()) return brand;
    }
#else
    if (static_cast<unsigned>(__get_cpuid_max(0x80000000, nullptr)) >= 0x80000004u) {
        for (unsigned i = 0; i < 3; ++i)
            __get_cpuid(0x80000002 + i, &regs[4 * i], &regs[4 * i + 1], &regs[4 * i + 2], &regs[4 * i + 3]);
        std::string brand(reinterpret_cast<const char*>(regs), sizeof(regs));
        brand = trim(brand.c_str());
        if (!brand.empty()) return brand;
    }
#endif
#endif
#if defined(__APPLE__)
    char name[256] = {};
    size_t size = sizeof(name) - 1;
    if (sysctlbyname("machdep.cpu.brand_string", name, &size, nullptr, 0) == 0 && name[0]) return name;
#endif
#if KN_CPU_X86
    return "x86-64 CPU";
#else
    return "CPU";
#endif
}

int64_t physical_memory_bytes() {
#if defined(_WIN32)
    MEMORYSTATUSEX status;
    status.dwLength = sizeof(status);
    if (GlobalMemoryStatusEx(&status)) return static_cast<int64_t>(status.ullTotalPhys);
    return 0;
#elif defined(__APPLE__)
    int64_t bytes = 0;
    size_t size = sizeof(bytes);
    if (sysctlbyname("hw.memsize", &bytes, &size, nullptr, 0) == 0) return bytes;
    return 0;
#else
    long pages = sysconf(_SC_PHYS_PAGES), page_size = sysconf(_SC_PAGE_SIZE);
    if (pages > 0 && page_size > 0) return static_cast<int64_t>(pages) * page_size;
    return 0;
#endif
}

class CpuDevice : public Device {
public:
    CpuDevice() {
        kind = KN_DEVICE_CPU;
        name = "cpu";
        const cpu::SimdLevel level = cpu::simd_level();
        const int threads = thread_count();
        description = cat(cpu_model_name(), " (", threads, threads == 1 ? " thread, " : " threads, ",
                          cpu::simd_level_name(level), ")");
        total_memory = physical_memory_bytes();
        capability_major = cpu::simd_width_bits(level);
        capability_minor = 0;
    }

    void* alloc(int64_t bytes) override {
        // aligned_alloc wants a size that is a multiple of the alignment.
        const size_t rounded = (static_cast<size_t>(bytes) + kAlignment - 1) / kAlignment * kAlignment;
#if defined(_WIN32)
        void* p = _aligned_malloc(rounded, kAlignment);
#else
        void* p = std::aligned_alloc(kAlignment, rounded);
#endif
        if (!p) fail(KN_ERROR_OUT_OF_MEMORY, "cpu: cannot allocate ", bytes, " bytes");
        return p;
    }

    void free(void* memory) noexcept override {
#if defined(_WIN32)
        _aligned_free(memory);
#else
        std::free(memory);
#endif
    }

    void write(void* dst, int64_t dst_offset, const void* host_src, int64_t bytes) override {
        cpu::copy_bytes(bytes_at(dst, dst_offset), host_src, bytes);
    }

    void read(const void* src, int64_t src_offset, void* host_dst, int64_t bytes) override {
        cpu::copy_bytes(host_dst, bytes_at(src, src_offset), bytes);
    }

    void copy(void* dst, int64_t dst_offset, const void* src, int64_t src_offset, int64_t bytes) override {
        cpu::copy_bytes(bytes_at(dst, dst_offset), bytes_at(src, src_offset), bytes);
    }

    void fill_f32(void* dst, int64_t offset_elements, int64_t count, float value) override {
        cpu::fill_f32(static_cast<float*>(dst) + offset_elements, count, value);
    }

    void synchronize() override {}  // every CPU kernel has finished when its call returns

    // Every kernel of ops.h: CpuDevice::<name>(args) calls cpu::<name>(args).
#define KN_CPU_FORWARD(op, Args) \
    void op(const Args& args) override { cpu::op(args); }
    KN_OPS(KN_CPU_FORWARD)
#undef KN_CPU_FORWARD
};

}  // namespace

void enumerate_cpu_devices(std::vector<std::unique_ptr<Device>>& out) {
    out.push_back(std::make_unique<CpuDevice>());
}

}  // namespace kn
