#!/usr/bin/env bash
# Installs the Debian packages the build and tests need (Debian 12). Used by .ci/run and by
# newcomers on a fresh machine; build.sh itself never installs anything, it only checks.
#   --with-cuda     also install nvcc 11.8 from Debian's non-free component (about 2 minutes)
#   --with-gpu-sim  also the tools that build GPGPU-Sim, the GPU simulator of scripts/gpu-sim.sh
#   --with-bullseye-root  also make the Debian 11 root (glibc 2.31) that release builds link against and
#                   scripts/ci-bullseye.sh tests in (scripts/bullseye-root.sh; 33-112 s, 294 MB, once)
set -euo pipefail
with_cuda=0 with_gpu_sim=0 with_bullseye_root=0
for a in "$@"; do
  [ "$a" = --with-cuda ] && with_cuda=1
  [ "$a" = --with-gpu-sim ] && with_gpu_sim=1
  [ "$a" = --with-bullseye-root ] && with_bullseye_root=1
done
sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
# libclang-rt-14-dev: the sanitizer and libFuzzer runtimes for clang-14 (scripts/ci-sanitizers.sh)
pkgs="cmake clang-14 libclang-rt-14-dev pocl-opencl-icd ocl-icd-opencl-dev opencl-headers clinfo libopenblas-dev libclblast-dev"
# Independent references for the model-exchange tests (issue 15), never used by the library itself:
# the ONNX checker (python3-onnx) and PyTorch + torchvision (python3-torchvision pulls python3-torch),
# which write the safetensors and ONNX files our readers are checked against.
pkgs="$pkgs python3-onnx python3-torchvision"
# scikit-learn's AdaBoostClassifier: the reference of the SAMME comparison in EnsembleTests (issue 19).
pkgs="$pkgs python3-sklearn"
# A font for the text of the training plots (Kernels.Nn.Plotting, PlotTests) and the benchmark plots:
# ScottPlot draws with a system font, which SkiaSharp's NoDependencies build finds in /usr/share/fonts.
pkgs="$pkgs fonts-dejavu-core"
# Windows from Linux (scripts/ci-windows.sh, issue 17): the x86-64 mingw-w64 C++ compiler with the
# posix threading model (std::thread), rather than the mingw-w64 metapackage, which also brings the
# i686 and win32-threads compilers (~135 MB more to download); wine64 runs the self-test.
pkgs="$pkgs g++-mingw-w64-x86-64-posix wine64"
# Open MPI for Kernels.Distributed's loopback checks under mpirun -np 2 (scripts/ci-mpi.sh, issue 18);
# the library itself only opens an MPI library (libmpi.so.40 here) at run time when a program is started by mpirun.
pkgs="$pkgs openmpi-bin libopenmpi-dev"
# MPICH, the other MPI ABI (integer handles, libmpich.so.12), for ci-mpi.sh's second pass under
# mpirun.mpich. Its mpirun/mpicc alternatives have priority 40 against Open MPI's 50, so plain `mpirun`
# stays Open MPI's; the scripts name mpirun.openmpi and mpirun.mpich anyway.
pkgs="$pkgs mpich libmpich12"
if [ "$with_cuda" = 1 ]; then
  # CUDA lives in non-free: derive a second sources file from the configured one (never hard-code a host).
  if [ -f /etc/apt/sources.list.d/debian.sources ] && [ ! -f /etc/apt/sources.list.d/nonfree.sources ]; then
    sed 's/^Components: main$/Components: contrib non-free/' /etc/apt/sources.list.d/debian.sources \
      | $sudo tee /etc/apt/sources.list.d/nonfree.sources >/dev/null
  fi
  pkgs="$pkgs nvidia-cuda-toolkit"
fi
# debootstrap makes the bullseye root (scripts/bullseye-root.sh): the glibc 2.31 sysroot of the released
# library and the older system scripts/ci-bullseye.sh runs it in (issue 17).
pkgs="$pkgs debootstrap"
if [ "$with_gpu_sim" = 1 ]; then
  # GPGPU-Sim's build: its PTX parser (bison, flex), makedepend (xutils-dev), zlib, and the GL
  # headers its build includes even though nothing is drawn.
  pkgs="$pkgs build-essential bison flex xutils-dev zlib1g-dev libglu1-mesa-dev"
fi
missing=""
for p in $pkgs; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
  echo "install-prereqs: installing:$missing"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends $missing
else
  echo "install-prereqs: all present"
fi
if [ "$with_bullseye_root" = 1 ]; then
  $sudo "$(dirname "$0")/bullseye-root.sh"
fi
