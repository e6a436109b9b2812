#!/usr/bin/env bash
# ci-pack.sh: CI's packaging stage, run after ./build.sh test on the same machine.
#   scripts/ci-pack.sh              pack (./build.sh pack), check, then the consumer test
#   scripts/ci-pack.sh --no-pack    check and consumer-test the packages already in artifacts/packages
# 1. ./build.sh pack: brings build/native up to date (with nvcc present, the CUDA fat binary is in it)
#    and makes Kernels.Native.linux-x64, Kernels.Bindings and Kernels.Nn.
# 2. packaging/check-package.cs: lists every file of every package and checks contents, metadata,
#    symbols, the native library's dependencies and GLIBC floor, the fat binary's architectures and
#    the size budget.
# 3. The consumer test, as a user would do it, in a temporary folder outside the repository:
#    `dotnet new console`, `dotnet add package Kernels.Nn` from a local folder feed holding copies of
#    the packages, then packaging/consumer/Program.cs (devices, why a backend is absent, a few
#    training steps on each device, loss checks) run three ways: as built, with the OpenCL ICDs
#    hidden (the library must still load and train on the CPU), and from `dotnet publish -r linux-x64`
#    (the library next to the app); and once with a stand-in libkernels of another version next to
#    the published app, which must be refused with both versions named. Then the README's example,
#    extracted from README.md, is run the
#    same way, so the example users copy is known to compile and train.
#    NuGet state is private to the run: NUGET_PACKAGES points into the temporary folder (a rerun with
#    the same version can never pick up a stale copy from ~/.nuget/packages, and the user's cache is
#    never touched), and package source mapping sends Kernels.* to the local feed only while
#    everything else still comes from the machine's configured sources.
# Prints PASS/FAIL per stage and "ci-pack: N passed, N failed"; exits 1 when anything failed.
# Environment: KN_PACKAGE_VERSION (see scripts/pack.sh), KN_CI_KEEP=1 keeps the temporary folder,
#   KN_PACK_EXTRA_RIDS (see scripts/pack.sh; .ci/run sets win-x64, packed by scripts/ci-windows.sh):
#   those native packages are checked too and join the consumer test's feed (Kernels.Bindings
#   depends on them).
set -uo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
packages="$root/artifacts/packages"
do_pack=1
[ "${1:-}" = --no-pack ] && do_pack=0

passed=0 failed=0
pass() { passed=$((passed + 1)); echo "PASS $*"; }
fail() { failed=$((failed + 1)); echo "FAIL $*"; }
say() { printf '\n== %s\n' "$*"; }
finish() {
  echo
  echo "ci-pack: $passed passed, $failed failed"
  [ "$failed" = 0 ]
  exit
}
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f s", b - a }'; }

export DOTNET_NOLOGO=1 DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1

# The version the packages carry: KN_PACKAGE_VERSION, else the header's, as scripts/pack.sh decides.
version=$(scripts/package-version.sh)

# ---- 1. pack ------------------------------------------------------------------------------------
if [ "$do_pack" = 1 ]; then
  say "pack ($version)"
  t=$(now)
  if ./build.sh pack; then pass "pack: ./build.sh pack ($(since "$t"))"; else fail "pack: ./build.sh pack"; finish; fi
fi

# ---- 2. contents, metadata, budget --------------------------------------------------------------
say "package contents"
t=$(now)
require_cuda=--require-cuda
# A machine without nvcc packs a CPU/OpenCL-only library; CI installs nvcc, so there it is required.
command -v nvcc >/dev/null || { require_cuda=""; echo "ci-pack: note: nvcc not found, the CUDA fat binary is not required"; }
extra_rids=()
[ -n "${KN_PACK_EXTRA_RIDS:-}" ] && extra_rids=(--extra-rids "$KN_PACK_EXTRA_RIDS")
if dotnet run --file packaging/check-package.cs -- --packages "$packages" --version "$version" $require_cuda --max-glibc 2.31 "${extra_rids[@]}"; then
  pass "contents: packaging/check-package.cs ($(since "$t"))"
else
  fail "contents: packaging/check-package.cs (see the FAIL lines above)"
fi
for id in Kernels.Native.linux-x64 Kernels.Bindings Kernels.Nn; do
  [ -f "$packages/$id.$version.nupkg" ] || { fail "consumer: $packages/$id.$version.nupkg missing"; finish; }
done

# ---- 3. consumer test ---------------------------------------------------------------------------
say "consumer test (fresh project, folder feed, private NuGet cache)"
consumer_start=$(now)
work=$(mktemp -d "${TMPDIR:-/tmp}/kernels-consumer.XXXXXX")
[ "${KN_CI_KEEP:-0}" = 1 ] && echo "ci-pack: keeping $work" || trap 'rm -rf "$work"' EXIT
mkdir -p "$work/feed" "$work/no-opencl-icds"
cp "$packages"/Kernels.Native.linux-x64."$version".nupkg "$packages"/Kernels.Bindings."$version".nupkg \
   "$packages"/Kernels.Nn."$version".nupkg "$work/feed/"
for r in ${KN_PACK_EXTRA_RIDS:-}; do cp "$packages/Kernels.Native.$r.$version.nupkg" "$work/feed/"; done
export NUGET_PACKAGES="$work/nuget-packages"

# The machine's own sources (read from its NuGet configuration, never written into the repository)
# stay in use for anything else; only Kernels.* is mapped to the folder feed.
mapfile -t source_keys < <(cd "$work" && dotnet nuget list source 2>/dev/null \
                           | sed -n 's/^ *[0-9][0-9]*\. *\(.*\) \[Enabled\]$/\1/p')
{
  echo '<?xml version="1.0" encoding="utf-8"?>'
  echo '<configuration>'
  echo '  <packageSources>'
  echo "    <add key=\"kernels-local\" value=\"$work/feed\" />"
  echo '  </packageSources>'
  if [ ${#source_keys[@]} -gt 0 ]; then
    echo '  <packageSourceMapping>'
    echo '    <packageSource key="kernels-local"><package pattern="Kernels.*" /></packageSource>'
    for key in "${source_keys[@]}"; do
      echo "    <packageSource key=\"$key\"><package pattern=\"*\" /></packageSource>"
    done
    echo '  </packageSourceMapping>'
  fi
  echo '</configuration>'
} > "$work/nuget.config"

# One fresh console project with the package added the way the README says; $1 is its name, $2 the
# Program.cs to put in it. Leaves the project in $work/$1.
new_project() {
  local name=$1 program=$2 t
  t=$(now)
  (cd "$work" && dotnet new console -n "$name" -o "$name" -f net10.0 --no-restore --no-update-check >/dev/null) \
    || { fail "$name: dotnet new console"; return 1; }
  cp "$program" "$work/$name/Program.cs"
  if (cd "$work/$name" && dotnet add package Kernels.Nn --version "$version" >"$work/$name.add.log" 2>&1); then
    pass "$name: dotnet add package Kernels.Nn --version $version (restore from the folder feed, $(since "$t"))"
  else
    cat "$work/$name.add.log"; fail "$name: dotnet add package Kernels.Nn"; return 1
  fi
  # Nothing in the project or its restore output may lead back into this repository.
  if grep -rl --include='*.csproj' --include='*.json' --include='*.props' --include='*.targets' -F "$root" "$work/$name" >/dev/null; then
    fail "$name: refers to $root: $(grep -rl -F "$root" "$work/$name" | head -3 | tr '\n' ' ')"
  else
    pass "$name: no reference to the repository (project, assets file, NuGet props)"
  fi
  t=$(now)
  if (cd "$work/$name" && dotnet build -c Release -nologo -v quiet >"$work/$name.build.log" 2>&1); then
    pass "$name: dotnet build ($(since "$t"))"
  else
    cat "$work/$name.build.log"; fail "$name: dotnet build"; return 1
  fi
}

# run NAME DESCRIPTION COMMAND...: runs a built program, shows its output, PASS when it exits 0.
run() {
  local name=$1 what=$2 t; shift 2
  t=$(now)
  echo "-- $name: $what"
  if (cd "$work/$name" && "$@"); then pass "$name: $what ($(since "$t"))"; else fail "$name: $what"; fi
}

if new_project Consumer "$root/packaging/consumer/Program.cs"; then
  app=(dotnet bin/Release/net10.0/Consumer.dll)
  # PoCL (scripts/install-prereqs.sh) gives CI an OpenCL CPU device: there OpenCL must work.
  opencl=()
  command -v clinfo >/dev/null && clinfo -l 2>/dev/null | grep -q Platform && opencl=(--require opencl)
  run Consumer "devices, training on each, loss checks ${opencl[*]}" "${app[@]}" --require cpu "${opencl[@]}"
  # An empty ICD folder is a machine with the loader but no OpenCL driver: not an error at load,
  # OpenCL reported absent with its reason, the CPU trains.
  run Consumer "with no OpenCL ICD: loads, reports OpenCL absent, trains on the CPU" \
      env OCL_ICD_VENDORS="$work/no-opencl-icds" "${app[@]}" --require cpu --expect-absent opencl
  t=$(now)
  if (cd "$work/Consumer" && dotnet publish -c Release -r linux-x64 --self-contained false -o "$work/published" -nologo -v quiet >"$work/publish.log" 2>&1) \
     && [ -f "$work/published/libkernels.so" ]; then
    pass "Consumer: dotnet publish -r linux-x64 puts libkernels.so next to the app ($(since "$t"))"
    run Consumer "published app (library next to it)" "$work/published/Consumer" --require cpu "${opencl[@]}"
    # A libkernels of another version next to the app must be refused with a message that names
    # both versions. A stand-in that only answers kn_get_version is enough: nothing else gets called.
    if command -v cc >/dev/null; then
      cp -r "$work/published" "$work/mismatch"
      printf '#include <stdint.h>\n__attribute__((visibility("default"))) int32_t kn_get_version(int32_t* major, int32_t* minor, int32_t* patch)\n{ *major = 9; *minor = 9; *patch = 0; return 0; }\n' > "$work/other_version.c"
      cc -shared -fPIC -o "$work/mismatch/libkernels.so" "$work/other_version.c"
      echo "-- Consumer: published app with a libkernels 9.9.0 next to it"
      # (through sh, so the abort of an unhandled exception is reported into the log, not here)
      sh -c '"$0"; exit $?' "$work/mismatch/Consumer" > "$work/mismatch.out" 2>&1; rc=$?
      grep -m1 'libkernels 9.9.0' "$work/mismatch.out"
      if [ "$rc" != 0 ] && grep -q "is libkernels 9.9.0, but Kernels.Bindings was generated from kernels.h ${version%%-*}" "$work/mismatch.out"; then
        pass "Consumer: a native library of another version is refused, naming both versions"
      else
        cat "$work/mismatch.out"; fail "Consumer: a native library of another version was not refused clearly (exit $rc)"
      fi
    else
      echo "SKIP Consumer: version-mismatch check needs a C compiler (cc)"
    fi
  else
    cat "$work/publish.log"; fail "Consumer: dotnet publish -r linux-x64 (libkernels.so next to the app)"
  fi
fi

# The README's example: the first ```csharp block of its "Use it from your project" section.
awk '/^## Use it from your project/ { section = 1; next }
     section && /^## / { exit }
     section && /^```csharp/ { inblock = 1; next }
     inblock && /^```/ { exit }
     inblock { print }' README.md > "$work/ReadmeExample.cs"
if [ "$(grep -c . "$work/ReadmeExample.cs")" -lt 5 ]; then
  fail "README: no csharp example found in its \"Use it from your project\" section"
elif new_project ReadmeExample "$work/ReadmeExample.cs"; then
  run ReadmeExample "the README's example runs" bash -c 'set -o pipefail; dotnet bin/Release/net10.0/ReadmeExample.dll | tee ../readme-example.out'
  # It prints "<device>: loss A -> B, ...": training must have lowered the loss.
  if awk 'match($0, /loss [0-9.]+ -> [0-9.]+/) { split(substr($0, RSTART + 5, RLENGTH - 5), v, " -> "); found = 1; ok = v[2] < v[1] }
          END { exit !(found && ok) }' "$work/readme-example.out"; then
    pass "ReadmeExample: the loss fell"
  else
    fail "ReadmeExample: no falling loss in its output"
  fi
fi
echo "ci-pack: consumer test took $(since "$consumer_start") (restore, builds, runs, publish)"
finish
