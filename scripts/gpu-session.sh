#!/usr/bin/env bash
# Everything a session lent a GPU machine (the `device` tool: nvcc 13, CMake, PyTorch, compute-sanitizer,
# ncu; no .NET, no network) should run, in two halves:
#
#   scripts/gpu-session.sh prepare    here: publishes the NUnit suites, the MNIST samples and the benchmark
#                                     program as one self-contained linux-x64 folder and packs it with the
#                                     MNIST files into .gpu/app.txz (ignored by git; about 50 MB)
#   scripts/gpu-session.sh run        there (with `carry: [".gpu"]`), one call of about 7 minutes, logging
#                                     each step to .gpu/out (and $OUT/logs.tgz) under a time limit:
#       0. libkernels (sm_90, no OpenCL) and native/dev's gemm.cu / conv.cu, built with that machine's nvcc
#       1. in parallel: kernels_selftest --device cuda:0 --require cuda (every kernel against float64);
#          compute-sanitizer memcheck, racecheck and initcheck on the --quick self-test (with
#          KN_CACHING_ALLOCATOR=0 so a freed block is really freed and overruns are seen); both NUnit
#          suites with KERNELS_REQUIRE_CUDA=1 (a missing GPU fails instead of skipping)
#       2. one at a time: MNIST MLP and CNN on cuda:0 (accuracy, seconds per epoch), gemm.cu against
#          cuBLAS, conv.cu against cuDNN (conv_cudnn.py), and the C# benchmark cases on cuda:0
# Each step's exit status and seconds go to summary.txt; one failing step does not stop the others.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
action=${1:-}
# The device tool returns at most 8 files from $OUT: the logs are written elsewhere and come back as one
# archive (logs.tgz) beside summary.txt.
out=$root/.gpu/out

prepare() {
  set -e
  ./build.sh build
  rm -rf .gpu/app && mkdir -p .gpu/app .gpu/data/mnist
  # The benchmark program first: the projects published after it win where they share a dependency.
  for p in benchmarks/Kernels.Benchmarks tests/Kernels.Tests tests/Kernels.Nn.Tests samples/MnistMlp samples/MnistCnn; do
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

deadline=${GPU_SESSION_SECONDS:-480}   # timed steps that would start after this are skipped (the lease is short)

step() {  # step NAME SECONDS COMMAND...: runs it under a time limit, output in $out/NAME.log, prints the status
  local name=$1 limit=$2; shift 2
  local t0=$SECONDS
  if [ $((SECONDS + limit / 2)) -gt "$deadline" ]; then
    echo "skipped: the session's $deadline s were nearly spent" > "$out/$name.log"
    echo "$name exit=skipped seconds=0" >> "$out/summary.txt"; return 0
  fi
  [ "$(type -t "$1")" = function ] && set -- bash -c "$*"   # timeout runs programs: a function goes through bash
  timeout -k 5 "$limit" "$@" > "$out/$name.log" 2>&1
  local rc=$?
  [ "$rc" = 124 ] && echo "(stopped at its ${limit} s limit)" >> "$out/$name.log"
  echo "$name exit=$rc seconds=$((SECONDS - t0))" >> "$out/summary.txt"
  return 0
}

show() {  # show NAME [LINES]: the step's log tail, under a header
  echo; echo "==== $1 ($(grep "^$1 " "$out/summary.txt" | cut -d' ' -f2-))"
  tail -n "${2:-12}" "$out/$1.log"
}

# Built with this machine's nvcc for sm_90 only (the H100/H200 here): the package's fat binary holds
# sm_75..90 SASS and PTX, but on a 15-minute lease one architecture compiles in a fifth of the time.
build_native() {
  cmake -S native -B build/gpu -DCMAKE_BUILD_TYPE=Release -DKN_WITH_CUDA=ON -DKN_WITH_OPENCL=OFF \
        -DKN_CUDA_ARCHITECTURES=90-real &&
  cmake --build build/gpu -j "$(nproc)"
}

build_dev() {  # the kernel-development programs of native/dev (kernel-only timing against cuBLAS / cuDNN)
  cd native/dev &&
  nvcc -O3 -std=c++17 -arch=sm_90 -I../include -I../core -I../kernels -o /tmp/dev_gemm gemm.cu -lcublas &&
  nvcc -O3 -std=c++17 --expt-relaxed-constexpr -arch=sm_90 -I../include -I../core -I../kernels -o /tmp/dev_conv conv.cu
}

export -f build_native build_dev

# One call of the device tool: about 7 minutes on an H200, so that a 15-minute lease (machine start
# included) leaves time to run it again. Correctness first, in parallel (one GPU, 16 cores; the
# runs share the GPU, which is fine for checks and wrong for timing); then the timed steps, alone.
run() {
  mkdir -p "$out"; : > "$out/summary.txt"
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader | tee "$out/gpu.txt"
  nvcc --version | tail -2 >> "$out/gpu.txt"
  local app=/tmp/gpuapp/app
  if [ -f .gpu/app.txz ]; then
    (rm -rf /tmp/gpuapp && mkdir -p /tmp/gpuapp && tar xJf .gpu/app.txz -C /tmp/gpuapp) &
  fi
  step build 240 build_native & step build_dev 240 build_dev & wait
  show build 5; show build_dev 5
  [ -x build/gpu/kernels_selftest ] || { echo "gpu-session: the build failed (log above)"; return 1; }
  [ -d "$app" ] && cp build/gpu/libkernels.so "$app/"   # the library built here, next to the assemblies
  local st=build/gpu/kernels_selftest
  # 1. correctness, in parallel
  step selftest 200 "$st" --device cuda:0 --require cuda &
  # --report-api-errors no: the self-test's hostile-input cases ask for impossible buffers on purpose, and
  # the cudaMalloc errors they get (reported by the library as KN_ERROR_OUT_OF_MEMORY) are not memory bugs.
  KN_CACHING_ALLOCATOR=0 step memcheck 200 compute-sanitizer --tool memcheck --leak-check full --report-api-errors no \
    --error-exitcode 9 "$st" --quick --device cuda:0 &
  KN_CACHING_ALLOCATOR=0 step racecheck 200 compute-sanitizer --tool racecheck --error-exitcode 9 "$st" --quick --device cuda:0 &
  KN_CACHING_ALLOCATOR=0 step initcheck 200 compute-sanitizer --tool initcheck --error-exitcode 9 "$st" --quick --device cuda:0 &
  if [ -d "$app" ]; then
    KERNELS_REQUIRE_CUDA=1 step nunit_kernels 200 "$app/Kernels.Tests" &
    KERNELS_REQUIRE_CUDA=1 step nunit_nn 200 "$app/Kernels.Nn.Tests" &
  fi
  wait
  for s in selftest memcheck racecheck initcheck nunit_kernels nunit_nn; do [ -f "$out/$s.log" ] && show $s 8; done
  # 2. timed, one at a time
  if [ -d "$app" ]; then
    export KERNELS_DATA=/tmp/gpuapp/data
    step mnist_mlp 60 "$app/MnistMlp" --device cuda:0 --epochs 3
    step mnist_cnn 90 "$app/MnistCnn" --device cuda:0 --epochs 2
    show mnist_mlp 6; show mnist_cnn 6
  fi
  if [ -x /tmp/dev_gemm ]; then
    step gemm_vs_cublas 60 /tmp/dev_gemm 4096 4096 4096 10; show gemm_vs_cublas 14
  fi
  if [ -x /tmp/dev_conv ]; then
    step conv_kernels 90 /tmp/dev_conv --csv "$out/conv.csv"; show conv_kernels 6
    step conv_vs_cudnn 60 python3 native/dev/conv_cudnn.py "$out/conv.csv"; show conv_vs_cudnn 30
  fi
  if [ -x "$app/Kernels.Benchmarks" ]; then
    local cuda_lib; cuda_lib=$(dirname "$(readlink -f "$(command -v nvcc)")")/../lib64
    KERNELS_CUDA_LIB_DIR=$cuda_lib step bench_ratios 90 "$app/Kernels.Benchmarks" ratios --quick-settings \
      --cases 'gemm/cuda:0/*' --cases 'mlp-step/cuda:0/*' --cases 'softmax/cuda:0/*' --cases 'relu/cuda:0/*' --out "$out/bench"
    show bench_ratios 30
    [ -f "$out/bench/results.json" ] &&
      { step mlp_step_vs_pytorch 60 python3 benchmarks/gpu/mlp_step.py --kernels-json "$out/bench/results.json"
        show mlp_step_vs_pytorch 12; }
  fi
  echo; echo "summary:"; cat "$out/summary.txt"
  if [ -n "${OUT:-}" ]; then
    tar czf "$OUT/logs.tgz" -C "$out" . && cp "$out/summary.txt" "$OUT/"
  fi
}

case "$action" in
  prepare) prepare ;;
  run) run ;;
  *) echo "usage: scripts/gpu-session.sh prepare|run" >&2; exit 2 ;;
esac
