// fast_divmod.cuh: integer division by divisors fixed at launch time, for the index arithmetic of
// the convolution, pooling and batch-norm kernels (an output index -> image, channel, row, column).
//
// A 32-bit integer division is not an instruction on NVIDIA GPUs but a ~20-instruction sequence, and
// a 64-bit one is a call of ~70. The kernels decompose one or two indices per element they touch,
// so with plain division a memory-bound kernel would become bound by integer throughput instead.
// Division by an invariant d is a multiply-high and a shift (Granlund and Montgomery, "Division by
// invariant integers using multiplication", PLDI 1994; the form CUTLASS's FastDivmod uses):
//   l = ceil(log2 d), p = 31 + l, m = ceil(2^p / d):  n / d = umulhi(n, m) >> (p - 32)
// exact for 0 <= n < 2^31: with m d = 2^p + e (0 <= e < d <= 2^l), n m / 2^p = n / d + n e / (d 2^p)
// and n e < 2^31 2^l = 2^p, so the error term stays below 1/d and never carries into the quotient.
// m < 2^32 because d > 2^(l-1); d == 1 (l = 0) is special-cased.
//
// Divider<int> is that; Divider<int64_t> is plain 64-bit division, for tensors whose indices do not
// fit in int32 (the launchers pick the index type from the sizes).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace kn::cuda {

template <typename Index>
struct Divider;

template <>
struct Divider<int> {
    int divisor = 1;
    unsigned multiplier = 0;
    unsigned shift = 0;

    Divider() = default;
    // 1 <= d < 2^31 (host side, at launch).
    explicit Divider(int64_t d) : divisor(static_cast<int>(d)) {
        if (divisor <= 1) return;
        int l = 0;
        while ((int64_t{1} << l) < d) ++l;
        multiplier = static_cast<unsigned>(((uint64_t{1} << (31 + l)) + static_cast<uint64_t>(d) - 1) / static_cast<uint64_t>(d));
        shift = static_cast<unsigned>(l - 1);
    }

    // 0 <= n < 2^31.
    __device__ __forceinline__ int div(int n) const {
        return divisor == 1 ? n : static_cast<int>(__umulhi(static_cast<unsigned>(n), multiplier) >> shift);
    }
    __device__ __forceinline__ void divmod(int n, int& quotient, int& remainder) const {
        const int q = div(n);
        remainder = n - q * divisor;
        quotient = q;
    }
};

template <>
struct Divider<int64_t> {
    int64_t divisor = 1;

    Divider() = default;
    explicit Divider(int64_t d) : divisor(d) {}

    __device__ __forceinline__ int64_t div(int64_t n) const { return n / divisor; }
    __device__ __forceinline__ void divmod(int64_t n, int64_t& quotient, int64_t& remainder) const {
        const int64_t q = n / divisor;
        remainder = n - q * divisor;
        quotient = q;
    }
};

// Largest element count (and index) the int32 kernels accept: headroom above it keeps sums such as
// "tile origin + tile size" and "index + grid stride" from overflowing.
constexpr int64_t kInt32IndexLimit = (int64_t{1} << 31) - (int64_t{1} << 20);

}  // namespace kn::cuda
