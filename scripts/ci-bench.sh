#!/usr/bin/env bash
# scripts/ci-bench.sh: the performance regression check, for CI (1-2.5 minutes on the shared 2 cores
# at load average 5-13, about 1 more the first time a machine builds the reference library).
# A/B against a reference commit, on this machine, in this run: the submitted tree's libkernels (new)
# and the libkernels of the commit named in benchmarks/baseline/reference-commit (old; built CPU +
# OpenCL by scripts/build-reference.sh, cached per commit in ~/.cache/kernels) are timed case by case
# over the quick set (`scripts/bench.sh --list` marks it [quick]), interleaved: each side runs in a
# process of its own (the same benchmark program, each with its library next to it), the two take
# turns sample by sample, and each round gives new time / old time. A case whose median over the
# rounds is more than its tolerance (Catalog.QuickSet) above 1 is measured again, up to twice while
# the geometric mean of its measurements stays above, and regresses if it still is (one re-measurement
# was not enough on an Intel Xeon VM: the unchanged 1024^3 GEMM kernel read +5.2% and +5.5% during a
# burst of load, quartiles up to 1.33). Cases the reference library cannot run are
# reported, not judged. Prints every case, then "bench-ab: PASS" or "bench-ab: FAIL" naming each
# regressed case and by how much, and the closing line "bench-ab: N passed, N failed, N skipped"
# that .ci/run reads; exits 1 on a regression.
# Nothing here depends on the CPU model: both libraries run on this machine with the same settings
# (KN_CPU_SIMD=avx2 set for the script applies to both sides, for example).
#
#   scripts/ci-bench.sh                     the A/B check
#   scripts/ci-bench.sh --native-dir DIR    the submitted tree's libkernels is the one in DIR (build.sh bench-quick)
#   scripts/ci-bench.sh --record            also the old quick run against the references (OpenBLAS, CLBlast,
#                                           memcpy), shown beside benchmarks/baseline/quick.json: a record of
#                                           one machine kind, never a verdict
#   scripts/ci-bench.sh --write-baseline    measure that quick run and write it as the record (commit it on
#                                           its own, saying on which CPU and instruction set)
# Without --native-dir: build.sh's build/native when it is configured (brought up to date), else a
# CPU + OpenCL build in $BUILD_DIR (default build/bench-native).
# Environment: OUT (default benchmarks/results/quick), BASELINE (benchmarks/baseline/quick.json),
# AB_NEW_ENV / AB_OLD_ENV: NAME=VALUE pairs (space-separated) for one side only, e.g.
# AB_NEW_ENV=KN_CPU_SIMD=portable to see the check catch a slowdown; REFERENCE (a commit instead of
# the file's); KERNELS_CACHE (default ~/.cache/kernels).
set -euo pipefail
self=$(readlink -f "$0")
cd "$(dirname "$self")/.."
root=$(pwd)
baseline=${BASELINE:-benchmarks/baseline/quick.json}
out=${OUT:-benchmarks/results/quick}
native_dir=""
record=0
extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --write-baseline) record=1; extra+=(--write-baseline) ;;
    --record) record=1 ;;
    --tolerance|--why) extra+=("$1" "$2"); shift ;;
    --native-dir) native_dir=$2; shift ;;
    -h|--help) sed -n '2,/^set -/p' "$self" | sed '$d'; exit 0 ;;
    *) echo "ci-bench.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done
started=$(date +%s)

if [ -z "$native_dir" ]; then
  if [ -z "${BUILD_DIR:-}" ] && [ -f build/native/CMakeCache.txt ]; then
    native_dir=build/native  # build.sh's (in CI, just built by the test stage): only brought up to date
  else
    native_dir=${BUILD_DIR:-build/bench-native}
    cmake -S native -B "$native_dir" -DCMAKE_BUILD_TYPE=Release -DKN_WITH_CUDA=OFF -DKN_WITH_OPENCL=AUTO \
          -DKN_BUILD_TESTS=OFF >/dev/null
  fi
  echo "== libkernels, submitted tree ($native_dir)"
  cmake --build "$native_dir" --target kernels -j "$(nproc 2>/dev/null || echo 2)"
fi
native_dir=$(cd "$native_dir" && pwd)

echo "== libkernels, reference commit"
reference_dir=$(scripts/build-reference.sh ${REFERENCE:+"$REFERENCE"}) || {
  echo "bench-ab: FAIL (no reference library: see the message above)"; echo "bench-ab: 0 passed, 1 failed, 0 skipped"; exit 1; }
reference_sha=$(basename "$reference_dir")
echo "reference: $(cat "$reference_dir/commit.txt")"

echo "== Kernels.Benchmarks"
dotnet build benchmarks/Kernels.Benchmarks -c Release -p:KernelsNativeDir="$native_dir/" -nologo -v quiet
# One copy of the program per side, each with its own libkernels next to it (where the bindings'
# resolver looks first): the same C# code drives both libraries.
built=benchmarks/Kernels.Benchmarks/bin/Release/net10.0
sides=build/ab
rm -rf "$sides"; mkdir -p "$sides"
# Hard links (the folder is ~580 MB, mostly BenchmarkDotNet's and SkiaSharp's native runtimes); each
# libkernels.so link is removed before its copy goes in, so the built folder's file is never written.
for side in new old; do cp -al "$built" "$sides/$side" 2>/dev/null || cp -a "$built" "$sides/$side"; rm -f "$sides/$side/libkernels.so"; done
cp "$native_dir/libkernels.so" "$sides/new/libkernels.so"
cp "$reference_dir/libkernels.so" "$sides/old/libkernels.so"
echo "new: $native_dir/libkernels.so ($(date -r "$native_dir/libkernels.so" '+%Y-%m-%d %H:%M'))"
echo "old: $reference_dir/libkernels.so"

env_args=()
for pair in ${AB_NEW_ENV:-}; do env_args+=(--new-env "$pair"); done
for pair in ${AB_OLD_ENV:-}; do env_args+=(--old-env "$pair"); done
echo "== A/B regression check ($(uptime | sed 's/.*load average/load average/'))"
rc=0
dotnet "$sides/new/Kernels.Benchmarks.dll" ab --new "$root/$sides/new/Kernels.Benchmarks.dll" \
       --old "$root/$sides/old/Kernels.Benchmarks.dll" --reference "commit ${reference_sha:0:12}" \
       --out "$out" --retries 2 "${env_args[@]}" || rc=$?

if [ "$record" = 1 ]; then
  echo "== quick run against the references (the record; never a verdict)"
  cp -f "$native_dir/libkernels.so" "$built/libkernels.so"
  dotnet "$root/$built/Kernels.Benchmarks.dll" quick --baseline "$baseline" --out "$out/record" "${extra[@]}" || rc=$?
fi
echo "(ci-bench.sh: $(( $(date +%s) - started )) s; load average at the end: $(cut -d' ' -f1-3 /proc/loadavg))"
exit "$rc"
