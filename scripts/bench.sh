#!/usr/bin/env bash
# scripts/bench.sh: the full benchmarks, one command. Every kernel family on every device found here
# (CPU, OpenCL; CUDA on a GPU machine), each case next to its reference measured in the same process:
# OpenBLAS sgemm (CPU), CLBlast (OpenCL), cuBLAS (CUDA), the device's copy bandwidth (memory-bound
# kernels). Writes results.json, results.md, gemm.png and bandwidth.png (and BenchmarkDotNet's own
# reports under bdn/) to benchmarks/results/latest, or $OUT.
#
#   scripts/bench.sh                       BenchmarkDotNet over every case (about 30 minutes on 2 cores)
#   scripts/bench.sh --interleaved         the interleaved runner instead: reference and Kernels alternate
#                                          within the process, so load from other work cancels in the ratios
#   scripts/bench.sh --cases 'gemm/cpu/*'  a subset (repeatable; '*' matches anything; see `--list`)
#   scripts/bench.sh --list                the cases this machine can run
#   scripts/bench.sh --publish-gpu         package the program for the GPU machine (.gpu/bench.txz),
#                                          where benchmarks/gpu/run.sh runs it
#   scripts/bench.sh --native-dir DIR      use the libkernels already built in DIR (build.sh bench does)
# Environment: OUT, BUILD_DIR (default build/bench-native: CPU + OpenCL backends), NOTE (stored with
# the results), KERNELS_OPENBLAS_CORETYPE (see benchmarks/README.md).
set -euo pipefail
self=$(readlink -f "$0")
cd "$(dirname "$self")/.."
root=$(pwd)
out=${OUT:-benchmarks/results/latest}
native_dir=""
mode=full
cases=()
while [ $# -gt 0 ]; do
  case "$1" in
    --interleaved) mode=ratios ;;
    --list) mode=list ;;
    --publish-gpu) mode=publish ;;
    --cases) cases+=(--cases "$2"); shift ;;
    --native-dir) native_dir=$2; shift ;;
    -h|--help) sed -n '2,/^set -/p' "$self" | sed '$d'; exit 0 ;;
    *) echo "bench.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done

if [ -z "$native_dir" ]; then
  native_dir=${BUILD_DIR:-build/bench-native}
  echo "== libkernels ($native_dir, CUDA ${KN_WITH_CUDA:-OFF})"
  cmake -S native -B "$native_dir" -DCMAKE_BUILD_TYPE=Release -DKN_WITH_CUDA="${KN_WITH_CUDA:-OFF}" \
        -DKN_WITH_OPENCL=AUTO -DKN_BUILD_TESTS=OFF >/dev/null
  cmake --build "$native_dir" --target kernels -j "$(nproc 2>/dev/null || echo 2)"
fi
native_dir=$(cd "$native_dir" && pwd)

if [ "$mode" = publish ]; then
  echo "== publishing for the GPU machine (.gpu/bench.txz; its libkernels is replaced there by a CUDA build)"
  rm -rf .gpu/bench
  dotnet publish benchmarks/Kernels.Benchmarks -c Release -r linux-x64 --self-contained -o .gpu/bench \
         -p:KernelsNativeDir="$native_dir/" -nologo -v quiet
  tar cJf .gpu/bench.txz -C .gpu bench
  ls -la .gpu/bench.txz
  exit 0
fi

echo "== Kernels.Benchmarks"
dotnet build benchmarks/Kernels.Benchmarks -c Release -p:KernelsNativeDir="$native_dir/" -nologo -v quiet
# The build copies libkernels only when it is newer than the one already in the output folder
# (PreserveNewest), so an older library from another build folder would silently not replace it.
cp -f "$native_dir/libkernels.so" benchmarks/Kernels.Benchmarks/bin/Release/net10.0/libkernels.so
echo "libkernels: $native_dir/libkernels.so ($(date -r "$native_dir/libkernels.so" '+%Y-%m-%d %H:%M'))"
program=(dotnet "$root/benchmarks/Kernels.Benchmarks/bin/Release/net10.0/Kernels.Benchmarks.dll")
if [ "$mode" = list ]; then
  exec "${program[@]}" list "${cases[@]}"
fi
note=${NOTE:-"$(uptime | sed 's/.*load average/load average/') at the start"}
"${program[@]}" "$mode" "${cases[@]}" --out "$out" --note "$note"
