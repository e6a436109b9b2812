// optimizer_cpu_bench.cpp: one optimizer step over the MNIST MLP's parameters (samples/MnistMlp:
// 784x512, 512, 512x256, 256, 256x10, 10 = 535,818 floats) through the public C API, as one call per
// tensor (kn_<name>_step_f32, what Optimizer.Step made before the many-calls) and as one
// kn_<name>_step_many_f32, interleaved round by round so load hits both alike, in the calling thread's
// CPU time (run it with KN_NUM_THREADS=1: the pool then runs every chunk in the caller). Prints the
// median microseconds per step of each and the median ratio per-tensor / many with its quartiles.
// KN_BENCH_WALL=1 times wall-clock instead (for more threads; cpu_bench.h).
//
// Build (from the repository root, after building the library into build/native):
//   g++ -O2 -std=c++17 -Inative/include native/dev/optimizer_cpu_bench.cpp -Lbuild/native -lkernels
//       -o build/native/optimizer_cpu_bench      (one command)
//   KN_NUM_THREADS=1 LD_LIBRARY_PATH=build/native build/native/optimizer_cpu_bench sgd|rmsprop|adam|adagrad [ROUNDS]
// sgd is SGD with momentum 0.9 (Nesterov off), rmsprop is RMSprop without momentum (PyTorch's
// defaults), adam is Adam, adagrad is Adagrad.
#include "kernels.h"
#include "cpu_bench.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <string>
#include <vector>

namespace {

using kn_dev::quantile;
using kn_dev::sample;
using kn_dev::check;
using kn_dev::thread_seconds;
}  // namespace

int main(int argc, char** argv) {
    if (argc < 2) {
        std::fprintf(stderr, "usage: optimizer_cpu_bench sgd|rmsprop|adam|adagrad [ROUNDS]\n");
        return 2;
    }
    const std::string kind = argv[1];
    const int rounds = argc > 2 ? std::atoi(argv[2]) : 21;
    const int states = kind == "adam" ? 2 : 1;  // sgd: velocity; rmsprop: square_avg; adagrad: sum
    const std::vector<int64_t> sizes = {784 * 512, 512, 512 * 256, 256, 256 * 10, 10};
    const int64_t count = static_cast<int64_t>(sizes.size());
    kn_device* device;
    check(kn_device_find("cpu", &device), "kn_device_find");
    // Operand k of tensor t: ops[k][t]; 0 param, 1 grad, 2.. states. Small values keep every update finite.
    std::vector<std::vector<kn_buffer*>> ops(2 + states, std::vector<kn_buffer*>(sizes.size()));
    for (size_t k = 0; k < ops.size(); ++k)
        for (size_t t = 0; t < sizes.size(); ++t) {
            check(kn_buffer_create(device, sizes[t] * 4, &ops[k][t]), "create");
            std::vector<float> v(static_cast<size_t>(sizes[t]));
            for (size_t i = 0; i < v.size(); ++i) v[i] = k >= 2 ? 0.001f : 0.01f * std::sin(0.37f * static_cast<float>(i + k));
            check(kn_buffer_write(ops[k][t], 0, v.data(), sizes[t] * 4), "write");
        }
    auto grads = const_cast<const kn_buffer* const*>(ops[1].data());
    auto per_tensor = [&] {
        for (int64_t t = 0; t < count; ++t) {
            kn_buffer* p = ops[0][t];
            const kn_buffer* g = ops[1][t];
            if (kind == "sgd") check(kn_sgd_step_f32(p, g, ops[2][t], sizes[t], 1e-3f, 0.9f, 0, 0, 0, 0), "sgd");
            else if (kind == "rmsprop") check(kn_rmsprop_step_f32(p, g, ops[2][t], nullptr, sizes[t], 1e-4f, 0.99f, 1e-8f, 0, 0), "rmsprop");
            else if (kind == "adam") check(kn_adam_step_f32(p, g, ops[2][t], ops[3][t], sizes[t], 1e-4f, 0.9f, 0.999f, 1e-8f, 0, 0, 10), "adam");
            else check(kn_adagrad_step_f32(p, g, ops[2][t], sizes[t], 1e-4f, 1e-10f, 0), "adagrad");
        }
    };
    auto many = [&] {
        if (kind == "sgd") check(kn_sgd_step_many_f32(count, ops[0].data(), grads, ops[2].data(), sizes.data(), 1e-3f, 0.9f, 0, 0, 0, 0), "sgd many");
        else if (kind == "rmsprop")
            check(kn_rmsprop_step_many_f32(count, ops[0].data(), grads, ops[2].data(), nullptr, sizes.data(), 1e-4f, 0.99f, 1e-8f, 0, 0), "rmsprop many");
        else if (kind == "adam")
            check(kn_adam_step_many_f32(count, ops[0].data(), grads, ops[2].data(), ops[3].data(), sizes.data(), 1e-4f, 0.9f, 0.999f, 1e-8f,
                                        0, 0, 10), "adam many");
        else check(kn_adagrad_step_many_f32(count, ops[0].data(), grads, ops[2].data(), sizes.data(), 1e-4f, 1e-10f, 0), "adagrad many");
    };
    // Calls per sample: enough for ~30 ms.
    per_tensor();
    many();
    const int calls = std::max(1, static_cast<int>(0.03 / std::max(1e-6, sample(per_tensor, 3))));
    std::vector<double> one_us, many_us, ratio;
    for (int r = 0; r < rounds; ++r) {
        const double a = sample(per_tensor, calls), b = sample(many, calls);
        one_us.push_back(a * 1e6);
        many_us.push_back(b * 1e6);
        ratio.push_back(a / b);
    }
    std::printf("%s over %lld tensors (535818 floats), %d rounds x %d steps: per-tensor %.1f us, many %.1f us per step (medians); "
                "per-tensor / many = %.3f (quartiles %.3f-%.3f)\n",
                kind.c_str(), static_cast<long long>(count), rounds, calls, quantile(one_us, 0.5), quantile(many_us, 0.5),
                quantile(ratio, 0.5), quantile(ratio, 0.25), quantile(ratio, 0.75));
    for (auto& array : ops)
        for (kn_buffer* b : array) kn_buffer_free(b);
    return 0;
}
