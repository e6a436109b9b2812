// Interleaved ours vs OpenBLAS for arbitrary shapes (dev only, not committed).
#include "kernels.h"
#include "cpu_bench.h"
#include <cblas.h>
#include <vector>
#include <cstdio>
#include <algorithm>
using namespace kn_dev;
int main(int argc, char** argv) {
  int rounds = atoi(argv[1]);
  kn_device* dev; check(kn_device_find("cpu", &dev), "find");
  for (int s = 2; s + 2 < argc + 0 && s + 2 <= argc - 1; s += 3) {
    long m = atol(argv[s]), n = atol(argv[s+1]), k = atol(argv[s+2]);
    std::vector<float> A(m*k), B(k*n), C(m*n);
    for (auto& x : A) x = (rand() % 100) / 100.f; for (auto& x : B) x = (rand() % 100) / 100.f;
    kn_buffer *a, *b, *c;
    check(kn_buffer_create(dev, m*k*4, &a), "c"); check(kn_buffer_create(dev, k*n*4, &b), "c"); check(kn_buffer_create(dev, m*n*4, &c), "c");
    kn_buffer_write(a, 0, A.data(), m*k*4); kn_buffer_write(b, 0, B.data(), k*n*4);
    double fl = 2.0*m*n*k; int calls = std::max(1, int(0.3e9*0.5 / fl * 1000 / 1000 * 0 + 3e9 / fl));
    auto ours = [&]{ check(kn_gemm_f32(KN_NO_TRANSPOSE, KN_NO_TRANSPOSE, m, n, k, 1, a, k, 0, b, n, 0, 0, c, n, 0, 1), "gemm"); };
    auto ref = [&]{ cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, k, 1, A.data(), k, B.data(), n, 0, C.data(), n); };
    ours(); ref();
    std::vector<double> r, go, gr;
    for (int i = 0; i < rounds; ++i) {
      double t1 = sample(ours, calls), t2 = sample(ref, calls);
      r.push_back(t2 / t1); go.push_back(fl / t1 * 1e-9); gr.push_back(fl / t2 * 1e-9);
    }
    std::sort(r.begin(), r.end()); std::sort(go.begin(), go.end()); std::sort(gr.begin(), gr.end());
    printf("%ldx%ldx%ld: ours %.1f ref %.1f ratio %.3f (%.3f-%.3f)\n", m, n, k, go[rounds/2], gr[rounds/2], r[rounds/2], r[rounds/4], r[3*rounds/4]);
    kn_buffer_free(a); kn_buffer_free(b); kn_buffer_free(c);
  }
}
