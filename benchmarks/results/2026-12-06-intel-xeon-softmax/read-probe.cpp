#include <immintrin.h>
#include <cstdio>
#include <cstring>
#include <cstdlib>
#include <ctime>
#include <vector>
#include <algorithm>
static double cpu() { timespec t; clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t); return t.tv_sec + 1e-9 * t.tv_nsec; }
__attribute__((noinline)) float seq(const float* x, size_t n) {
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (size_t i = 0; i < n; i += 64) {
        a0 = _mm512_add_ps(a0, _mm512_load_ps(x + i)); a1 = _mm512_add_ps(a1, _mm512_load_ps(x + i + 16));
        a2 = _mm512_add_ps(a2, _mm512_load_ps(x + i + 32)); a3 = _mm512_add_ps(a3, _mm512_load_ps(x + i + 48));
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
}
// P pages at a time, one line of each in turn (glibc's large_memcpy_4x pattern)
template <int P>
__attribute__((noinline)) float pages(const float* x, size_t n) {
    __m512 a[P]; for (int p = 0; p < P; ++p) a[p] = _mm512_setzero_ps();
    const size_t page = 1024;  // floats
    for (size_t b = 0; b < n; b += P * page) {
        for (size_t i = 0; i < page; i += 16) {
#pragma GCC unroll 8
            for (int p = 0; p < P; ++p) a[p] = _mm512_add_ps(a[p], _mm512_load_ps(x + b + p * page + i));
        }
    }
    __m512 s = a[0]; for (int p = 1; p < P; ++p) s = _mm512_add_ps(s, a[p]);
    return _mm512_reduce_add_ps(s);
}
template <int P>
__attribute__((noinline)) float pagespf(const float* x, size_t n) {
    __m512 a[P]; for (int p = 0; p < P; ++p) a[p] = _mm512_setzero_ps();
    const size_t page = 1024;
    for (size_t b = 0; b < n; b += P * page) {
        for (size_t i = 0; i < page; i += 16) {
#pragma GCC unroll 8
            for (int p = 0; p < P; ++p) { _mm_prefetch((const char*)(x + b + P*page + p * page + i), _MM_HINT_T2); a[p] = _mm512_add_ps(a[p], _mm512_load_ps(x + b + p * page + i)); }
        }
    }
    __m512 s = a[0]; for (int p = 1; p < P; ++p) s = _mm512_add_ps(s, a[p]);
    return _mm512_reduce_add_ps(s);
}
int main() {
    size_t n = 64ull << 20;
    float* x = (float*)aligned_alloc(4096, n * 4 + 65536 * 4); float* y = (float*)aligned_alloc(4096, n * 4);
    for (size_t i = 0; i < n + 65536; ++i) x[i] = 1.0f; memset(y, 0, n * 4);
    volatile float sink;
    const char* names[] = {"seq", "pages2", "pages4", "pages8", "pages4pf", "pages8pf"};
    for (int round = 0; round < 5; ++round) {
        double t0 = cpu(); memcpy(y, x, n * 4); double tm = cpu() - t0;
        for (int k = 0; k < 6; ++k) {
            double t1 = cpu();
            switch (k) { case 0: sink = seq(x, n); break; case 1: sink = pages<2>(x, n); break; case 2: sink = pages<4>(x, n); break;
                case 3: sink = pages<8>(x, n); break; case 4: sink = pagespf<4>(x, n); break; case 5: sink = pagespf<8>(x, n); break; }
            double tk = cpu() - t1;
            double t2 = cpu(); memcpy(y, x, n * 4); double tm2 = cpu() - t2;
            printf("%s %.3f  ", names[k], (tm + tm2) / 2 / tk); tm = tm2;
        }
        printf("\n");
    }
}
