#!/usr/bin/env bash
# benchmarks/gpu/run.sh: the GPU half of the benchmarks, run from the repository root on the GPU
# machine (the `device` tool: an H100 with nvcc, CMake, PyTorch; no .NET, no network).
#
#   1. native/dev: kernel-only CUDA timing (cudaEvents, L2 flushed before every repeat) of GEMM
#      against cuBLAS and of elementwise, reductions and softmax against the device-to-device copy;
#   2. libkernels built with CUDA, then the published benchmark program (carried as .gpu/bench.txz,
#      made on the CPU machine by `scripts/bench.sh --publish-gpu`) over every cuda:0 case,
#      interleaved with cuBLAS / cudaMemcpy in the same process: what a C# user pays per call;
#   3. benchmarks/gpu/mlp_step.py: the MNIST MLP training step, PyTorch eager against Kernels.
# Everything goes to ${OUT:-benchmarks/results/gpu}. Written on a machine without a GPU: not run yet.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${OUT:-benchmarks/results/gpu}
mkdir -p "$out"
arch=${CUDA_ARCH:-90}

echo "== native/dev: kernel-only timing (sm_$arch)"
(
  cd native/dev
  flags=(-O3 -std=c++17 -arch=sm_$arch -I../include -I../core -I../kernels -I../kernels/cuda)
  nvcc "${flags[@]}" -o /tmp/dev_gemm gemm.cu -lcublas
  nvcc "${flags[@]}" -o /tmp/dev_elementwise elementwise.cu ../kernels/cuda/elementwise.cu
  nvcc "${flags[@]}" -o /tmp/dev_reduce reduce.cu ../kernels/cuda/reduce.cu ../kernels/cuda/elementwise.cu
  nvcc "${flags[@]}" -o /tmp/dev_softmax softmax.cu ../kernels/cuda/softmax.cu
)
/tmp/dev_gemm 4096 4096 4096 20 | tee "$out/dev-gemm-4096.txt"
/tmp/dev_gemm 8192 8192 8192 10 | tee "$out/dev-gemm-8192.txt"
/tmp/dev_elementwise | tee "$out/dev-elementwise.txt"
/tmp/dev_reduce | tee "$out/dev-reduce.txt"
/tmp/dev_softmax | tee "$out/dev-softmax.txt"

if [ ! -f .gpu/bench.txz ]; then
  echo "== no .gpu/bench.txz: skipping the C# benchmarks and the PyTorch comparison (see benchmarks/README.md)"
  exit 0
fi

echo "== libkernels with CUDA"
cmake -S native -B build/gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DKN_WITH_CUDA=ON -DKN_WITH_OPENCL=AUTO \
      -DKN_CUDA_ARCHITECTURES="$arch" -DKN_BUILD_TESTS=OFF >/dev/null
cmake --build build/gpu --target kernels

echo "== Kernels.Benchmarks on cuda:0 (interleaved with cuBLAS / cudaMemcpy)"
rm -rf .gpu/bench && tar xJf .gpu/bench.txz -C .gpu
cp build/gpu/libkernels.so .gpu/bench/
cuda_lib=$(dirname "$(readlink -f "$(command -v nvcc)")")/../lib64
export KERNELS_CUDA_LIB_DIR=${KERNELS_CUDA_LIB_DIR:-$cuda_lib}
.gpu/bench/Kernels.Benchmarks ratios --cases '*/cuda:0/*' --out "$out/cuda" --note "GPU machine" | tee "$out/ratios.txt"

echo "== MNIST MLP step: PyTorch eager against Kernels"
python3 benchmarks/gpu/mlp_step.py --kernels-bin .gpu/bench/Kernels.Benchmarks | tee "$out/mlp-step.txt"
