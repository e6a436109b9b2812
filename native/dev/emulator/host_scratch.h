// host_scratch.h: the device-owned scratch of the CUDA launchers (cuda::ScratchSource) as the
// emulator's tests hand it out: a fresh buffer of exactly the bytes asked for (so AddressSanitizer,
// with run.sh --sanitize, reports an overrun), filled with garbage as fresh device memory is. It
// remembers what the last launch asked for, so a test can check the launcher's request against its
// *_scratch_bytes plan.
#pragma once

#include "cuda_kernels.h"
#include "selftest_harness.h"

#include <cstring>
#include <memory>

struct HostScratch final : kn::cuda::ScratchSource {
    std::unique_ptr<selftest::HostBuffer<double>> buf;
    int64_t asked = 0;  // bytes of the last request, 0 when none came

    void* get(int64_t bytes) override {
        asked = bytes;
        buf.reset(new selftest::HostBuffer<double>(size_t((bytes + 7) / 8)));
        std::memset(buf->p, 0xcd, size_t(bytes));
        return buf->p;
    }

    // A launch context on a device of `sm` multiprocessors whose scratch comes from here.
    kn::cuda::LaunchContext context(int sm) { return kn::cuda::LaunchContext{nullptr, sm, this}; }
};
