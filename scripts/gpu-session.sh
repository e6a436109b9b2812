#!/usr/bin/env bash
# Everything a session lent a GPU machine (the `device` tool: nvcc 13, CMake, PyTorch, compute-sanitizer,
# ncu; no .NET, no network) should run, in two halves:
#
#   scripts/gpu-session.sh prepare    here: publishes the NUnit suites and the MNIST samples as one
#                                     self-contained linux-x64 folder and packs it with the MNIST files
#                                     into .gpu/ (ignored by git; about 45 MB compressed)
#   scripts/gpu-session.sh run        there (with `carry: [".gpu"]`): builds libkernels with that machine's
#                                     nvcc, then runs, logging each step to $OUT (or .gpu/out):
#       1. kernels_selftest --require cuda             every kernel on cuda:0 against float64
#       2. compute-sanitizer memcheck, racecheck, initcheck on kernels_selftest --quick --device cuda:0
#          (KN_CACHING_ALLOCATOR=0 so a freed block is really freed and overruns are seen)
#       3. the NUnit suites with KERNELS_REQUIRE_CUDA=1 (a missing GPU fails instead of skipping)
#       4. MNIST MLP and CNN samples on cuda:0 (accuracy and seconds per epoch)
#   scripts/gpu-session.sh bench      there: native/dev/gemm.cu against cuBLAS and conv timings against
#                                     cuDNN (PyTorch), kernel-only with cudaEvents
# Each step's exit status is printed; the script goes on after a failure so one run shows everything.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
action=${1:-}
out=${OUT:-$root/.gpu/out}

prepare() {
  set -e
  ./build.sh build
  rm -rf .gpu/app && mkdir -p .gpu/app .gpu/data/mnist
  for p in tests/Kernels.Tests tests/Kernels.Nn.Tests samples/MnistMlp samples/MnistCnn; do
    dotnet publish "$p" -c Release -r linux-x64 --self-contained -o .gpu/app -nologo -v q \
      -p:KernelsNativeDir="$root/build/native/"
  done
  local cache=${KERNELS_DATA:-$HOME/.cache/kernels}/mnist
  for f in train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte; do
    if [ -f "$cache/$f" ]; then gzip -9c "$cache/$f" > ".gpu/data/mnist/$f.gz"
    elif [ -f "$cache/$f.gz" ]; then cp "$cache/$f.gz" .gpu/data/mnist/
    else echo "gpu-session: $cache/$f is missing: run a MNIST sample once first (it downloads the data)" >&2; exit 1; fi
  done
  tar cJf .gpu/app.txz -C .gpu app data && rm -rf .gpu/app .gpu/data
  du -h .gpu/app.txz
}

step() {  # step NAME COMMAND...: runs it with its output in $out/NAME.log, prints the status
  local name=$1; shift
  echo "== $name: $*"
  "$@" > "$out/$name.log" 2>&1
  local rc=$?
  tail -n 15 "$out/$name.log"
  echo "== $name: exit $rc"
  echo "$name $rc" >> "$out/summary.txt"
}

build_native() {
  cmake -S native -B build/gpu -DCMAKE_BUILD_TYPE=Release -DKN_WITH_CUDA=ON -DKN_WITH_OPENCL=OFF \
        -DCMAKE_CUDA_ARCHITECTURES=90 > "$out/cmake.log" 2>&1 &&
  cmake --build build/gpu -j "$(nproc)" >> "$out/cmake.log" 2>&1
}

run() {
  mkdir -p "$out"; : > "$out/summary.txt"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > "$out/gpu.txt" 2>&1; cat "$out/gpu.txt"
  step build build_native || true
  local st=build/gpu/kernels_selftest
  step selftest "$st" --require cuda
  export KN_CACHING_ALLOCATOR=0
  step memcheck compute-sanitizer --tool memcheck --leak-check full --error-exitcode 9 "$st" --quick --device cuda:0
  step racecheck compute-sanitizer --tool racecheck --error-exitcode 9 "$st" --quick --device cuda:0
  step initcheck compute-sanitizer --tool initcheck --error-exitcode 9 "$st" --quick --device cuda:0
  unset KN_CACHING_ALLOCATOR
  if [ -f .gpu/app.txz ]; then
    rm -rf /tmp/gpuapp && mkdir -p /tmp/gpuapp && tar xJf .gpu/app.txz -C /tmp/gpuapp
    cp build/gpu/libkernels.so /tmp/gpuapp/app/   # the library built here, next to the assemblies
    export KERNELS_REQUIRE_CUDA=1 KERNELS_DATA=/tmp/gpuapp/data
    step nunit_kernels /tmp/gpuapp/app/Kernels.Tests
    step nunit_nn /tmp/gpuapp/app/Kernels.Nn.Tests
    step mnist_mlp /tmp/gpuapp/app/MnistMlp --device cuda:0 --epochs 5
    step mnist_cnn /tmp/gpuapp/app/MnistCnn --device cuda:0 --epochs 3
  else
    echo "gpu-session: .gpu/app.txz not carried: run 'scripts/gpu-session.sh prepare' here and carry .gpu"
  fi
  echo; echo "summary (step exit):"; cat "$out/summary.txt"
}

bench() {
  mkdir -p "$out"
  (cd native/dev && nvcc -O3 -std=c++17 -arch=sm_90 -I../include -I../src -o /tmp/gemm gemm.cu -lcublas) &&
    step gemm_vs_cublas /tmp/gemm 4096 4096 4096 10
  (cd native/dev && nvcc -O3 -std=c++17 --expt-relaxed-constexpr -arch=sm_90 -I../include -I../src -o /tmp/conv conv.cu) &&
    step conv_kernels /tmp/conv --csv "$out/conv.csv" &&
    step conv_vs_cudnn python3 native/dev/conv_cudnn.py "$out/conv.csv"
}

case "$action" in
  prepare) prepare ;;
  run) run ;;
  bench) bench ;;
  *) echo "usage: scripts/gpu-session.sh prepare|run|bench" >&2; exit 2 ;;
esac
