#!/usr/bin/env bash
# build.sh: builds libkernels (CMake), checks the generated bindings, builds the .NET code.
#   ./build.sh            build everything
#   ./build.sh configure  only configure the native library, and say which backends it will have
#   ./build.sh demo       build, then run the demo (devices + a checked matmul on each)
#   ./build.sh test       build, then run the native self-test and the NUnit tests; ends with
#                         "N passed, N failed, N skipped"
#   ./build.sh pack       build the native library, then make the NuGet packages in artifacts/packages
#                         (scripts/pack.sh; scripts/ci-pack.sh also checks them and runs a consumer project)
#   ./build.sh bench      build, then the full benchmarks (scripts/bench.sh; extra arguments pass through)
#   ./build.sh bench-quick  build, then the performance regression check: A/B against the reference
#                         commit on this machine (scripts/ci-bench.sh; ends with "bench-ab: PASS" or FAIL)
# It installs nothing: missing prerequisites are named with the command that installs them
# (scripts/install-prereqs.sh does it on Debian/Ubuntu).
# Environment: BUILD_DIR (default build/native), KN_WITH_CUDA / KN_WITH_OPENCL (AUTO|ON|OFF),
#              CONFIGURATION (Release),
#              KN_SYSROOT: the glibc the native library is built against. Unset: the bullseye root of
#              scripts/bullseye-root.sh (glibc 2.31, the package's floor) when it has been made, else this
#              machine's glibc (a library for this machine and newer ones only: the package check fails
#              it); a folder: that root (native/cmake/sysroot-bullseye.cmake); "host": this machine's.
set -euo pipefail
cd "$(dirname "$0")"
root=$(pwd)
build_dir=${BUILD_DIR:-build/native}
configuration=${CONFIGURATION:-Release}
action=${1:-build}

say() { printf '\n== %s\n' "$*"; }
die() { printf 'build.sh: %s\n' "$*" >&2; exit 1; }

check_prerequisites() {
  local missing=()
  command -v cmake >/dev/null || missing+=("cmake")
  command -v c++ >/dev/null || command -v g++ >/dev/null || missing+=("a C++17 compiler (g++)")
  command -v dotnet >/dev/null || missing+=(".NET 10 SDK (dotnet)")
  command -v clang-14 >/dev/null || command -v clang >/dev/null || missing+=("clang-14 (parses kernels.h for the bindings check)")
  if [ ${#missing[@]} -gt 0 ]; then
    die "missing prerequisites: ${missing[*]}. On Debian/Ubuntu run: scripts/install-prereqs.sh"
  fi
  if [ ! -f /usr/include/CL/cl.h ] && [ "${KN_WITH_OPENCL:-AUTO}" != OFF ]; then
    echo "build.sh: note: OpenCL headers not found, building without the OpenCL backend (scripts/install-prereqs.sh installs them)"
  fi
  if ! command -v nvcc >/dev/null && [ "${KN_WITH_CUDA:-AUTO}" != OFF ]; then
    echo "build.sh: note: nvcc not found, building without the CUDA backend (scripts/install-prereqs.sh --with-cuda installs it)"
  fi
}

# The sysroot the native library is built against (see KN_SYSROOT above); prints nothing for the host.
# The bullseye root is complete once it has the stamp scripts/bullseye-root.sh writes last.
sysroot_chosen() {
  local dir=${KN_SYSROOT-}
  if [ "$dir" = host ]; then return 0; fi
  if [ -z "$dir" ]; then
    dir=$(scripts/bullseye-root.sh --path)
    [ -f "$dir/.kernels-bullseye-root" ] || return 0
  fi
  [ -f "$dir/.kernels-bullseye-root" ] || die "KN_SYSROOT=$dir is not a root made by scripts/bullseye-root.sh (no .kernels-bullseye-root in it)"
  command -v clang++-14 >/dev/null || die "building against the sysroot $dir needs clang-14 (scripts/install-prereqs.sh); KN_SYSROOT=host builds against this machine's glibc"
  echo "$dir"
}

configure_native() {
  say "native library ($build_dir)"
  local args=(-S native -B "$build_dir" -DCMAKE_BUILD_TYPE=Release
              -DKN_WITH_CUDA="${KN_WITH_CUDA:-AUTO}" -DKN_WITH_OPENCL="${KN_WITH_OPENCL:-AUTO}")
  local sysroot; sysroot=$(sysroot_chosen)
  if [ -n "$sysroot" ]; then
    # Against bullseye's glibc 2.31 and GCC 10 C++ runtime (the host's g++ compiles, clang-14 links
    # and is nvcc's host compiler; see native/cmake/sysroot-bullseye.cmake): the floor
    # packaging/check-package.cs enforces. (A change of sysroot changes the arguments: configured afresh.)
    echo "build.sh: building against the sysroot $sysroot ($(sed -n 's/^glibc: //p' "$sysroot/.kernels-bullseye-root"); linked by clang-14)"
    args+=(-DCMAKE_TOOLCHAIN_FILE="$root/native/cmake/sysroot-bullseye.cmake" -DKN_SYSROOT="$sysroot")
    # nvcc's host compiler too (any nvcc version): GCC would link its own newer C++ runtime.
    command -v nvcc >/dev/null && args+=(-DCMAKE_CUDA_HOST_COMPILER=clang++-14)
  else
    echo "build.sh: building against this machine's glibc $(ldd --version 2>/dev/null | sed -n '1s/.* //p'): the library" \
         "runs here and on newer systems only; the package's floor (glibc 2.31) needs the bullseye sysroot (scripts/bullseye-root.sh)"
  fi
  if [ -z "$sysroot" ] && command -v nvcc >/dev/null; then
    # nvcc before 12 refuses g++ 12 as its host compiler; Debian's nvcc 11.8 works with clang++-14.
    local v; v=$(nvcc --version | sed -n 's/.*release \([0-9]*\)\..*/\1/p')
    if [ -n "$v" ] && [ "$v" -lt 12 ] && command -v clang++-14 >/dev/null; then
      args+=(-DCMAKE_CUDA_HOST_COMPILER=clang++-14)
    fi
  fi
  # CMake keeps what it found at the first configure, a missing nvcc included (check_language(CUDA)
  # caches NOTFOUND): a folder configured before nvcc was installed went on building without CUDA,
  # silently, and the pack stage failed later ("no .nv_fatbin section"). So the toolchain found now
  # is compared with the one the folder was configured with, and a change configures it afresh.
  local toolchain; toolchain=$(toolchain_found "${args[@]}")
  if [ -f "$build_dir/CMakeCache.txt" ] && [ ! -f "$build_dir/kn-toolchain.txt" ] && ! cuda_cache_stale; then
    # Configured by a build.sh from before this record: adopt what it found rather than rebuild
    # everything (a CUDA build is many minutes), unless its CUDA state is the stale one above.
    echo "$toolchain" > "$build_dir/kn-toolchain.txt"
  fi
  if [ -f "$build_dir/CMakeCache.txt" ] && [ "$(cat "$build_dir/kn-toolchain.txt" 2>/dev/null)" != "$toolchain" ]; then
    echo "build.sh: the toolchain changed since $build_dir was configured; configuring it afresh:"
    diff <(cat "$build_dir/kn-toolchain.txt" 2>/dev/null) <(echo "$toolchain") | sed -n 's/^\([<>]\)/  \1/p' \
      | sed 's/^  </  was:/; s/^  >/  now:/' || true
    rm -rf "$build_dir/CMakeCache.txt" "$build_dir/CMakeFiles"
  fi
  local configured
  configured=$(cmake "${args[@]}") || { echo "$configured"; die "cmake could not configure $build_dir"; }
  echo "$toolchain" > "$build_dir/kn-toolchain.txt"
  # Say which backends this build has, and why CUDA is off when nvcc is there.
  grep -o 'kernels: [A-Za-z]* backend [A-Z]*.*' <<<"$configured" || true
  if command -v nvcc >/dev/null && [ "${KN_WITH_CUDA:-AUTO}" != OFF ] && grep -q 'kernels: CUDA backend OFF' <<<"$configured"; then
    echo "build.sh: warning: nvcc is at $(command -v nvcc) but CMake found no working CUDA compiler;" \
         "see $build_dir/CMakeFiles/CMakeError.log (or configure with KN_WITH_CUDA=ON for the error)"
  fi
}

build_native() {
  configure_native
  cmake --build "$build_dir" -j "$(nproc 2>/dev/null || echo 2)"
}

# True when the folder's cache disagrees with the nvcc on PATH: no CUDA compiler cached although nvcc
# is there (and CUDA is not turned off), or one cached although nvcc is gone.
cuda_cache_stale() {
  local cached; cached=$(sed -n 's/^CMAKE_CUDA_COMPILER:[A-Z]*=//p' "$build_dir/CMakeCache.txt")
  if command -v nvcc >/dev/null; then
    [ "${KN_WITH_CUDA:-AUTO}" != OFF ] && [[ -z "$cached" || "$cached" == *NOTFOUND ]]
  else
    [[ -n "$cached" && "$cached" != *NOTFOUND ]]
  fi
}

# What a configure depends on and CMake would not notice changing: the compilers found (nvcc, C++),
# CMake itself, the OpenCL headers, and the arguments (KN_WITH_CUDA=OFF then AUTO, for example).
toolchain_found() {
  local nvcc cxx
  nvcc=$(readlink -f "$(command -v nvcc)" || true)
  cxx=$(readlink -f "$(command -v "${CXX:-c++}")" || true)
  echo "nvcc: ${nvcc:-none}${nvcc:+ ($("$nvcc" --version | sed -n 's/.*release \([0-9.]*\).*/\1/p'))}"
  echo "c++: ${cxx:-none}${cxx:+ ($("$cxx" --version | head -1))}"
  echo "cmake: $(cmake --version | head -1)"
  echo "OpenCL headers: $([ -f /usr/include/CL/cl.h ] && echo present || echo absent)"
  echo "arguments: $*"
  # CMake reads a toolchain file at the first configure only: an edited one needs a fresh folder.
  case " $* " in *" -DCMAKE_TOOLCHAIN_FILE="*) echo "sysroot toolchain: $(cksum < "$root/native/cmake/sysroot-bullseye.cmake")" ;; esac
}

build_managed() {
  say "bindings check (regenerate from kernels.h and compare)"
  dotnet run --project tools/BindingsGen -c "$configuration" -- --check
  say "managed code"
  dotnet build Kernels.sln -c "$configuration" -p:KernelsNativeDir="$root/$build_dir/" -nologo -v quiet
}

run_tests() {
  local log; log=$(mktemp)
  say "native self-test (every kernel on every device against a float64 reference)"
  set +e
  (cd "$build_dir" && ./kernels_selftest) | tee "$log"
  local native_rc=${PIPESTATUS[0]}
  set -e
  local np nf
  np=$(sed -n 's/^selftest: \([0-9]*\) passed, \([0-9]*\) failed.*/\1/p' "$log" | tail -1)
  nf=$(sed -n 's/^selftest: \([0-9]*\) passed, \([0-9]*\) failed.*/\2/p' "$log" | tail -1)
  ns=$(sed -n 's/^selftest: .* failed, \([0-9]*\) skipped.*/\1/p' "$log" | tail -1)
  [ -n "$np" ] || { np=0; nf=1; }
  [ -n "$ns" ] || ns=0

  say "NUnit tests (kernels on every device, then src/Nn)"
  local tp=0 tf=0 ts=0 managed_rc=0 project
  for project in tests/Kernels.Tests tests/Kernels.Nn.Tests; do
    set +e
    dotnet test --project "$project" -c "$configuration" --no-build | tee "$log"
    local rc=${PIPESTATUS[0]}
    set -e
    local p f s
    p=$(sed -n 's/^ *succeeded: *\([0-9]*\).*/\1/p' "$log" | tail -1)
    f=$(sed -n 's/^ *failed: *\([0-9]*\).*/\1/p' "$log" | tail -1)
    s=$(sed -n 's/^ *skipped: *\([0-9]*\).*/\1/p' "$log" | tail -1)
    if [ -z "$p" ]; then p=0; f=1; s=0; echo "build.sh: could not read the summary of $project (counted as a failure)"; fi
    [ "$rc" = 0 ] || [ "$f" != 0 ] || f=1
    [ "$rc" = 0 ] || managed_rc=$rc
    tp=$((tp + p)); tf=$((tf + f)); ts=$((ts + s))
  done
  rm -f "$log"
  echo
  echo "native self-test: $np passed, $nf failed, $ns skipped; NUnit: $tp passed, $tf failed, $ts skipped"
  echo "$((np + tp)) passed, $((nf + tf)) failed, $((ns + ts)) skipped"
  [ "$native_rc" = 0 ] && [ "$managed_rc" = 0 ]
}

check_prerequisites
case "$action" in
  configure) configure_native ;;
  build) build_native; build_managed ;;
  demo)  build_native; build_managed
         say "demo"
         dotnet run --project samples/Demo -c "$configuration" --no-build ;;
  test)  build_native; build_managed; run_tests ;;
  pack)  build_native; BUILD_DIR="$build_dir" scripts/pack.sh ;;
  bench) build_native; scripts/bench.sh --native-dir "$build_dir" "${@:2}" ;;
  bench-quick) build_native; scripts/ci-bench.sh --native-dir "$build_dir" ;;
  *) die "unknown action '$action' (build, configure, demo, test, pack, bench, bench-quick)" ;;
esac
