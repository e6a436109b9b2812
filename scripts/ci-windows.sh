#!/usr/bin/env bash
# ci-windows.sh: CI's Windows stage (issue 17), run on Linux with Debian's mingw-w64 and wine64
# (scripts/install-prereqs.sh installs both) and PowerShell 7 as a .NET tool.
#  1. kernels.dll and kernels_selftest.exe cross-compiled into build/win-x64
#     (native/cmake/mingw-w64-x86_64.cmake): CPU and OpenCL backends. CUDA on Windows needs MSVC as
#     nvcc's host compiler, so it is not built here; build.ps1 builds it on a Windows machine.
#  2. The DLL's imports are Windows' own DLLs only (OpenCL.dll is loaded at run time, never imported)
#     and its exports are the kn_* C API only.
#  3. The native self-test under wine64: CPU and OpenCL (wine's OpenCL.dll forwards to the host's
#     ICD loader, so PoCL runs the OpenCL kernels), then the CPU again on each lower SIMD path
#     (KN_CPU_SIMD=avx2 when the machine has AVX-512, and portable).
#  4. Kernels.Native.win-x64 packed into artifacts/packages: the pack stage (scripts/ci-pack.sh with
#     KN_PACK_EXTRA_RIDS=win-x64) then makes Kernels.Bindings depend on it and checks its contents.
#  5. build.ps1 under pwsh 7.6 (dotnet tool install into build/tools): a missing prerequisite is
#     named, then `test` with a filter, which on Linux builds with the host compiler (every step but
#     MSVC's), checks the bindings, builds the solution, runs the native self-test and a few tests of
#     each NUnit suite, in its own folder build/ps1-native (CPU + OpenCL), leaving build/native (the
#     test stage's sysroot + CUDA build, which the pack stage packs) as it is.
# Prints PASS/FAIL per step and "ci-windows: N passed, N failed"; exits 1 when anything failed.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
build=build/win-x64
packages="$root/artifacts/packages"

passed=0 failed=0
pass() { passed=$((passed + 1)); echo "PASS $*"; }
fail() { failed=$((failed + 1)); echo "FAIL $*"; }
say() { printf '\n== %s\n' "$*"; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f s", b - a }'; }
start=$(now)
finish() {
  [ -n "${wineserver:-}" ] && WINEPREFIX="$WINEPREFIX" "$wineserver" -k 2>/dev/null
  echo
  echo "ci-windows: took $(since "$start")"
  echo "ci-windows: $passed passed, $failed failed"
  [ "$failed" = 0 ]
  exit
}
export DOTNET_NOLOGO=1 DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1

# ---- 1. cross-compile --------------------------------------------------------------------------
say "kernels.dll (mingw-w64, $build)"
t=$(now)
if nice cmake -S native -B "$build" -DCMAKE_TOOLCHAIN_FILE="$root/native/cmake/mingw-w64-x86_64.cmake" \
       -DCMAKE_BUILD_TYPE=Release > "$build.configure.log" 2>&1 \
   && nice cmake --build "$build" -j "$(nproc 2>/dev/null || echo 2)" --target kernels kernels_selftest; then
  grep -o 'kernels: [A-Za-z]* backend [A-Z]*.*' "$build.configure.log"
  pass "build: kernels.dll and kernels_selftest.exe ($(since "$t"))"
else
  cat "$build.configure.log" 2>/dev/null; fail "build: kernels.dll (mingw-w64)"; finish
fi

# ---- 2. imports and exports ----------------------------------------------------------------------
say "imports and exports"
headers=$(x86_64-w64-mingw32-objdump -p "$build/kernels.dll")
imports=$(sed -n 's/^\s*DLL Name: //p' <<<"$headers" | sort -u)
echo "imports: $(tr '\n' ' ' <<<"$imports")"
# Windows' own: the kernel and the C runtime (msvcrt, or the UCRT's api-ms-win-crt-* forwarders).
foreign=$(grep -viE '^(kernel32|msvcrt|ucrtbase|api-ms-win-crt-[a-z0-9-]+)\.dll$' <<<"$imports")
if [ -z "$foreign" ]; then
  pass "imports: Windows' own DLLs only (no OpenCL.dll, no libstdc++/libgcc/winpthread DLL)"
else
  fail "imports: kernels.dll also imports $(tr '\n' ' ' <<<"$foreign")"
fi
# The export table's name list: lines "[  12] kn_gemm_f32" between "[Ordinal/Name Pointer] Table" and the next blank line.
exports=$(awk '/\[Ordinal\/Name Pointer\] Table/ { on = 1; next } on && NF == 0 { exit } on { print $NF }' <<<"$headers")
api=$(grep -c '^kn_' <<<"$exports")
others=$(grep -v '^kn_' <<<"$exports" | head -3 | tr '\n' ' ')
if [ "$api" -ge 20 ] && grep -qx kn_get_version <<<"$exports" && [ -z "$others" ]; then
  pass "exports: the C API only ($api kn_* functions)"
else
  fail "exports: $api kn_* functions${others:+, and also $others}"
fi

# ---- 3. the self-test under wine -----------------------------------------------------------------
say "native self-test under wine64"
wine=$(command -v wine64 || echo /usr/lib/wine/wine64)
wineserver=$(command -v wineserver || echo /usr/lib/wine/wineserver)
# A private prefix in the build folder: nothing of the user's ~/.wine is touched.
# WINEDLLOVERRIDES: no Mono or Gecko install attempt in the new prefix (nothing here needs .NET or HTML).
export WINEPREFIX="$root/$build/wine-prefix" WINEDEBUG=-all WINEDLLOVERRIDES="mscoree,mshtml="
# The first start creates the prefix (~5 s; it prints a harmless rundll32 message).
"$wine" cmd /c exit > /dev/null 2>&1
# selftest NAME LEVEL ARGS...: runs it under wine with KN_CPU_SIMD=LEVEL (empty: the CPU's best) and
# checks the CPU device reports the level that was asked for.
selftest() {
  local name=$1 level=$2 log="$root/$build/selftest-$1.log" t rc; shift 2
  t=$(now)
  (cd "$build" && env ${level:+KN_CPU_SIMD=$level} "$wine" kernels_selftest.exe "$@") > "$log" 2>&1
  rc=$?
  grep -E '^(device|backend) |^selftest:|FAIL' "$log" | head -20
  local summary; summary=$(grep '^selftest:' "$log" | tail -1)
  # KN_CPU_SIMD must reach the Windows process: the CPU device names the level it runs.
  # ("device 0: cpu  cpu  AMD EPYC (2 threads, AVX2+FMA), ...")
  local want; want=$(case "$level" in avx2) echo 'AVX2+FMA),';; portable) echo 'portable),';; esac)
  local cpu; cpu=$(grep -m1 '^device 0:' "$log")
  if [ -n "$want" ] && [[ "$cpu" != *", $want"* ]]; then
    fail "selftest $name under wine: the CPU device runs another level: $cpu"; return
  fi
  if [ "$rc" = 0 ] && [[ "$summary" == *" 0 failed"* ]]; then
    pass "selftest $name under wine: ${summary#selftest: } ($(since "$t"))"
  else
    tail -30 "$log"; fail "selftest $name under wine (exit $rc): ${summary:-no summary line}"
  fi
}
devices=(--device cpu)
# PoCL (scripts/install-prereqs.sh) gives the host an OpenCL CPU device; through wine it must work too.
if command -v clinfo >/dev/null && clinfo -l 2>/dev/null | grep -q Platform; then
  devices+=(--device opencl:0 --require opencl)
fi
best=avx2; grep -qw avx512f /proc/cpuinfo && best=avx512
selftest "cpu ($best)$([ ${#devices[@]} -gt 2 ] && echo ' + opencl:0')" "" "${devices[@]}"
[ "$best" = avx512 ] && selftest "cpu (KN_CPU_SIMD=avx2)" avx2 --device cpu
selftest "cpu (KN_CPU_SIMD=portable)" portable --device cpu
grep -h '^device 0:' "$root/$build"/selftest-*.log | sort -u

# ---- 4. the package --------------------------------------------------------------------------------
say "Kernels.Native.win-x64"
version=$(scripts/package-version.sh)
# Deterministic zip entries, as scripts/pack.sh does.
if [ -z "${SOURCE_DATE_EPOCH:-}" ] && epoch=$(git log -1 --format=%ct 2>/dev/null) && [ -n "$epoch" ]; then
  export SOURCE_DATE_EPOCH=$epoch
fi
t=$(now)
mkdir -p "$packages"
rm -f "$packages"/Kernels.Native.win-x64.*.nupkg
# The package description names this build's backends (packaging/native/Kernels.Native.props); an
# environment variable, since MSBuild's -p: would split the sentence at its commas and semicolons.
if KernelsNativeBackends="This build has the CPU and OpenCL backends, not CUDA (CUDA on Windows needs an MSVC build: build.ps1). OpenCL uses the system's OpenCL.dll, loaded at run time; the CPU backend always works." \
   dotnet pack packaging/native/win-x64/Kernels.Native.win-x64.csproj -c Release -o "$packages" -nologo -v minimal -clp:NoSummary \
     -p:KernelsPackBuild=true -p:Version="$version" -p:KernelsNativeDir="$root/$build/" \
   && [ -f "$packages/Kernels.Native.win-x64.$version.nupkg" ]; then
  # Its contents (runtimes/win-x64/native/kernels.dll, PE32+ x86-64, imports, exports) are checked by
  # packaging/check-package.cs in the pack stage, with the packages that depend on it.
  pass "pack: $packages/Kernels.Native.win-x64.$version.nupkg ($(since "$t"))"
else
  fail "pack: Kernels.Native.win-x64.$version.nupkg"
fi

# ---- 5. build.ps1 under PowerShell ---------------------------------------------------------------
say "build.ps1 under pwsh"
pwsh=build/tools/pwsh
t=$(now)
if [ -x "$pwsh" ] || dotnet tool install --tool-path build/tools PowerShell --version 7.6.10 >/dev/null; then
  pass "pwsh: $("$pwsh" -NoProfile -Command '$PSVersionTable.PSVersion.ToString()') ($(since "$t"))"
  # Plain output: no ANSI colours in the CI log.
  export NO_COLOR=1
  # With only dotnet on PATH (the tool's launcher needs it), the first missing prerequisite is named.
  bare=$(mktemp -d)
  ln -s "$(command -v dotnet)" "$bare/dotnet"
  out=$(PATH="$bare" "$pwsh" -NoProfile -File build.ps1 check 2>&1); rc=$?
  rm -rf "$bare"
  if [ "$rc" != 0 ] && grep -q 'missing prerequisite: CMake 3.24+ (cmake not on PATH)' <<<"$out"; then
    pass "build.ps1 check: a missing cmake is named, exit $rc"
  else
    echo "$out"; fail "build.ps1 check: without cmake on PATH (exit $rc)"
  fi
  # The test action with a filter that selects a few tests in each suite: the native build, the
  # bindings check, the solution build, the self-test found by its platform's name, and dotnet test
  # on both projects (the full suites already ran in the test stage). `demo` differs only in its last line.
  t=$(now)
  filter="FullyQualifiedName~NativeLibraryResolverTests|FullyQualifiedName~PermuteTests"
  # Its own build folder, CPU + OpenCL: build/native is the test stage's sysroot build with the CUDA fat
  # binary, which the pack stage packs; build.ps1's plain configure of that folder rebuilt all of it
  # against the host (about 10 minutes, and a library above the glibc floor).
  if BUILD_DIR=build/ps1-native KN_WITH_CUDA=OFF "$pwsh" -NoProfile -File build.ps1 test --filter "$filter"; then
    pass "build.ps1 test --filter \"$filter\": native build, bindings check, solution build, self-test, both NUnit suites ($(since "$t"))"
  else
    fail "build.ps1 test --filter \"$filter\""
  fi
else
  fail "pwsh: dotnet tool install --tool-path build/tools PowerShell --version 7.6.10"
fi
finish
