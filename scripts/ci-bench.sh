#!/usr/bin/env bash
# scripts/ci-bench.sh: the performance regression check, for CI (about 2 minutes on 2 cores).
# Runs the quick set of cases (`scripts/bench.sh --list` marks them [quick]), each interleaved with
# its reference in one process, and compares every ratio (reference time / Kernels time, median over
# rounds) with the committed baseline benchmarks/baseline/quick.json. A ratio more than the
# baseline's tolerance below its baseline value is measured again, and if it is below both times the
# case has regressed: the script prints each case, which regressed and by how much, ends with
# "bench-quick: PASS" or "bench-quick: FAIL" and the closing line "bench-quick: N passed, N failed"
# that .ci/run's summary reads, and exits 1 on a regression.
#
#   scripts/ci-bench.sh                     check against the baseline
#   scripts/ci-bench.sh --write-baseline    measure and write a new baseline: commit it on its own,
#                                           saying why (a faster kernel, a new case, another machine)
#   scripts/ci-bench.sh --native-dir DIR    use the libkernels in DIR (build.sh bench-quick does)
# Without --native-dir: build.sh's build/native when it is configured (brought up to date), else a
# CPU + OpenCL build in $BUILD_DIR (default build/bench-native).
# Environment: BASELINE (default benchmarks/baseline/quick.json), OUT (benchmarks/results/quick).
set -euo pipefail
self=$(readlink -f "$0")
cd "$(dirname "$self")/.."
root=$(pwd)
baseline=${BASELINE:-benchmarks/baseline/quick.json}
out=${OUT:-benchmarks/results/quick}
native_dir=""
extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --write-baseline) extra+=(--write-baseline) ;;
    --tolerance|--why) extra+=("$1" "$2"); shift ;;
    --native-dir) native_dir=$2; shift ;;
    -h|--help) sed -n '2,/^set -/p' "$self" | sed '$d'; exit 0 ;;
    *) echo "ci-bench.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done

if [ -z "$native_dir" ]; then
  if [ -z "${BUILD_DIR:-}" ] && [ -f build/native/CMakeCache.txt ]; then
    native_dir=build/native  # build.sh's (in CI, just built by the test stage): only brought up to date
  else
    native_dir=${BUILD_DIR:-build/bench-native}
    cmake -S native -B "$native_dir" -DCMAKE_BUILD_TYPE=Release -DKN_WITH_CUDA=OFF -DKN_WITH_OPENCL=AUTO \
          -DKN_BUILD_TESTS=OFF >/dev/null
  fi
  echo "== libkernels ($native_dir)"
  cmake --build "$native_dir" --target kernels -j "$(nproc 2>/dev/null || echo 2)"
fi
native_dir=$(cd "$native_dir" && pwd)

echo "== Kernels.Benchmarks"
dotnet build benchmarks/Kernels.Benchmarks -c Release -p:KernelsNativeDir="$native_dir/" -nologo -v quiet
# The build copies libkernels only when it is newer than the one already in the output folder
# (PreserveNewest), so an older library from another build folder would silently not replace it.
cp -f "$native_dir/libkernels.so" benchmarks/Kernels.Benchmarks/bin/Release/net10.0/libkernels.so
echo "libkernels: $native_dir/libkernels.so ($(date -r "$native_dir/libkernels.so" '+%Y-%m-%d %H:%M'))"
echo "== quick regression run ($(uptime | sed 's/.*load average/load average/'))"
dotnet "$root/benchmarks/Kernels.Benchmarks/bin/Release/net10.0/Kernels.Benchmarks.dll" quick \
       --baseline "$baseline" --out "$out" "${extra[@]}"
