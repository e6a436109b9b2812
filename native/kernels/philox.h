// philox.h: Philox-4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC'11),
// the counter-based generator behind dropout. uniform(seed, i) is a pure function of (seed, i), so a
// mask needs no storage (backward regenerates it), any thread computes any element, and every
// backend produces the same mask. This header serves the C++ and CUDA backends; the OpenCL kernels
// carry the same arithmetic in OpenCL C (kernels/opencl/*.cl), checked equal by the tests.
#pragma once

#include <stdint.h>

#if defined(__CUDACC__)
#define KN_PHILOX_FN __host__ __device__ __forceinline__
#else
// static: each translation unit keeps its own copy, so the copy compiled with AVX-512 in
// span_kernels_avx512.cpp can never be the one the linker picks for the portable path.
#define KN_PHILOX_FN static inline
#endif

namespace kn {

// The generator's round constants (as in Random123): the two multipliers and the two Weyl
// increments added to the key after every round.
constexpr uint32_t kPhiloxM0 = 0xD2511F53u, kPhiloxM1 = 0xCD9E8D57u;
constexpr uint32_t kPhiloxW0 = 0x9E3779B9u, kPhiloxW1 = 0xBB67AE85u;

KN_PHILOX_FN uint32_t philox_mulhi(uint32_t a, uint32_t b, uint32_t* lo) {
    uint64_t p = static_cast<uint64_t>(a) * b;
    *lo = static_cast<uint32_t>(p);
    return static_cast<uint32_t>(p >> 32);
}

// Philox-4x32-10 at counter (c0, c1, 0, 0) under key (k0, k1): the block's four 32-bit output words,
// in 32-bit words only, so a loop over counters vectorises on instruction sets without 64-bit lane
// arithmetic (AVX2). Random123's known-answer vectors check it (self-test).
KN_PHILOX_FN void philox4x32_10_block(uint32_t c0, uint32_t c1, uint32_t k0, uint32_t k1, uint32_t* words) {
    uint32_t c2 = 0, c3 = 0;
    // Unrolled, so a loop over counters around this call is straight-line code to vectorise.
#if defined(__CUDACC__)
#pragma unroll
#elif defined(__GNUC__)
#pragma GCC unroll 10
#endif
    for (int round = 0; round < 10; ++round) {
        uint32_t lo0, lo1;
        uint32_t hi0 = philox_mulhi(kPhiloxM0, c0, &lo0);
        uint32_t hi1 = philox_mulhi(kPhiloxM1, c2, &lo1);
        uint32_t n0 = hi1 ^ c1 ^ k0, n2 = hi0 ^ c3 ^ k1;
        c0 = n0; c1 = lo1; c2 = n2; c3 = lo0;
        k0 += kPhiloxW0;
        k1 += kPhiloxW1;
    }
    words[0] = c0;
    words[1] = c1;
    words[2] = c2;
    words[3] = c3;
}

// The random word of element `index` of the stream `seed`: word index mod 4 of the block at counter
// index / 4 (as cuRAND's Philox hands out a block's four words in turn), so one block serves four
// consecutive elements. The counter is 62 bits: (lo32(index / 4), hi32(index / 4), 0, 0).
KN_PHILOX_FN uint32_t philox_word(uint64_t seed, uint64_t index) {
    const uint64_t counter = index >> 2;
    uint32_t words[4];
    philox4x32_10_block(static_cast<uint32_t>(counter), static_cast<uint32_t>(counter >> 32),
                        static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32), words);
    return words[index & 3];
}

// The uniform of philox_uniform from the generator's 32-bit word (24 bits fit an int32 exactly; the
// signed conversion is the one AVX2 has).
KN_PHILOX_FN float philox_to_uniform(uint32_t word) {
    return static_cast<float>(static_cast<int32_t>(word >> 8)) * (1.0f / 16777216.0f);
}

// Uniform in [0, 1) with 24 random bits: exactly representable in float32 on every backend.
KN_PHILOX_FN float philox_uniform(uint64_t seed, uint64_t index) {
    return philox_to_uniform(philox_word(seed, index));
}

}  // namespace kn
