#!/usr/bin/env bash
# pack.sh: makes the NuGet packages from the native library that ./build.sh built.
#   ./build.sh pack       brings build/native up to date (CMake, incremental), then runs this script
#   scripts/pack.sh       packs what is in build/native as it is (refuses a library older than its sources)
# Output, in artifacts/packages/:
#   Kernels.Native.linux-x64.<v>.nupkg  runtimes/linux-x64/native/libkernels.so, README, LICENSE, notices
#   Kernels.Bindings.<v>.nupkg          lib/net10.0/Kernels.Bindings.{dll,xml} -> Kernels.Native.linux-x64
#   Kernels.Nn.<v>.nupkg                lib/net10.0/Kernels.Nn.{dll,xml}       -> Kernels.Bindings, Google.Protobuf
#   Kernels.Nn.Plotting.<v>.nupkg       lib/net10.0/Kernels.Nn.Plotting.{dll,xml} -> Kernels.Nn, ScottPlot (SkiaSharp)
#   Kernels.Distributed.<v>.nupkg       lib/net10.0/Kernels.Distributed.{dll,xml} -> Kernels.Nn (MPI opened at run time)
# (managed code once, native code per platform: the split ONNX Runtime and SkiaSharp use; each DLL
# embeds its PDB, which embeds the sources). packaging/check-package.cs lists and checks them; scripts/ci-pack.sh runs
# everything CI needs (pack, check, size budget, a consumer project restoring from a folder feed).
# This script does not build native code: a release package must carry the CUDA fat binary, so the
# library comes from build.sh's build with nvcc present (scripts/install-prereqs.sh --with-cuda).
# The managed assemblies are built here, in Release, with their own bin/obj under build/pack.
# Environment:
#   BUILD_DIR            the CMake build folder holding libkernels.so (default build/native, as build.sh)
#   PACKAGE_DIR          output folder (default artifacts/packages)
#   KN_PACKAGE_VERSION   package version (default: KN_VERSION_* of native/include/kernels.h, e.g. 0.3.0);
#                        a prerelease (0.3.0-ci.42) must keep the header's major.minor.patch
#   KN_PACK_EXTRA_RIDS   RIDs whose native package was built elsewhere and already copied into
#                        PACKAGE_DIR (e.g. "win-x64" from packaging/native/win-x64 after ./build.ps1):
#                        Kernels.Bindings then depends on those too
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
native_dir=${BUILD_DIR:-build/native}
case "$native_dir" in /*) ;; *) native_dir="$root/$native_dir" ;; esac
out=${PACKAGE_DIR:-artifacts/packages}
case "$out" in /*) ;; *) out="$root/$out" ;; esac
rid=linux-x64
library="$native_dir/libkernels.so"

die() { printf 'pack.sh: %s\n' "$*" >&2; exit 1; }
say() { printf '\n== %s\n' "$*"; }

command -v dotnet >/dev/null || die "the .NET 10 SDK (dotnet) is missing"
[ "$(uname -s)" = Linux ] && [ "$(uname -m)" = x86_64 ] || die "packs $rid only; on Windows pack packaging/native/win-x64 after ./build.ps1"

# ---- version: the header is the source of truth; the generated bindings must agree with it -------
bindings_version() {
  local part v=""
  for part in MAJOR MINOR PATCH; do
    v+=$(sed -n "s/.*const int KN_VERSION_${part} = \\([0-9][0-9]*\\);.*/\\1/p" bindings/NativeMethods.g.cs).
  done
  echo "${v%.}"
}
hv=$(scripts/package-version.sh --header)
bv=$(bindings_version)
[[ "$hv" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || die "could not read KN_VERSION_MAJOR/MINOR/PATCH from native/include/kernels.h (got '$hv')"
[ "$hv" = "$bv" ] || die "kernels.h is version $hv but bindings/NativeMethods.g.cs was generated from $bv: regenerate with dotnet run --project tools/BindingsGen"
version=${KN_PACKAGE_VERSION:-$hv}
case "$version" in
  "$hv"|"$hv"-*) ;;
  *) die "KN_PACKAGE_VERSION=$version does not start with the header's version $hv (the managed side refuses a native library of another major.minor)" ;;
esac

# ---- the native library: present, built from the current sources ---------------------------------
[ -f "$library" ] || die "$library not found: run ./build.sh (or ./build.sh pack) first, or set BUILD_DIR"
stale=$(find native/include native/core native/api native/kernels native/cmake native/CMakeLists.txt -type f -newer "$library" 2>/dev/null | head -3)
[ -z "$stale" ] || die "$library is older than its sources ($(echo $stale | tr '\n' ' ')...): rebuild it with ./build.sh pack"
sections=$(readelf -SW "$library" 2>/dev/null || true)   # (not piped into grep -q: pipefail + SIGPIPE)
if [[ "$sections" != *.nv_fatbin* ]]; then
  echo "pack.sh: warning: $library has no CUDA fat binary (built without nvcc): the package will have no CUDA backend," \
       "and packaging/check-package.cs --require-cuda will fail it"
fi

# The Linux floor (glibc 2.31) holds only for a library built against the bullseye sysroot (build.sh
# selects it once scripts/bullseye-root.sh has made it); packing a host build is allowed, for trying
# things out, but packaging/check-package.cs fails it.
if [ -z "$(sed -n 's/^KN_SYSROOT:[A-Z]*=\(..*\)$/\1/p' "$native_dir/CMakeCache.txt" 2>/dev/null)" ]; then
  echo "pack.sh: warning: $library was built against this machine's glibc, not the bullseye sysroot: the package" \
       "needs a newer glibc than the floor (2.31) and packaging/check-package.cs will fail it;" \
       "make the root with scripts/bullseye-root.sh (as root), then ./build.sh pack"
fi

extra_rids=${KN_PACK_EXTRA_RIDS:-}
native_rids=$rid
for r in $extra_rids; do
  [ -f "$out/Kernels.Native.$r.$version.nupkg" ] || die "KN_PACK_EXTRA_RIDS names $r but $out/Kernels.Native.$r.$version.nupkg is not there"
  # Space-separated: an escaped ';' (%3B) stays a literal ';' inside the one item Kernels.Bindings.csproj
  # makes of it, which named no project, so Kernels.Bindings depended on nothing at all.
  native_rids+=" $r"
done

# ---- pack ---------------------------------------------------------------------------------------
say "packages $version from $library into $out"
mkdir -p "$out"
rm -f "$out"/Kernels.Nn.*.nupkg "$out"/Kernels.Nn.Plotting.*.nupkg "$out"/Kernels.Distributed.*.nupkg "$out"/Kernels.Bindings.*.nupkg "$out"/Kernels.Native.$rid.*.nupkg
# A clean managed build each time (a few seconds): nothing left over from another version or branch.
rm -rf build/pack
common=(-c Release -o "$out" -nologo -v minimal -clp:NoSummary
        -p:KernelsPackBuild=true -p:Version="$version" -p:KernelsNativeDir="$native_dir/"
        -p:KernelsPackNativeRids="$native_rids")
# Deterministic packages: with SOURCE_DATE_EPOCH set, NuGet (7.9+) stamps every zip entry with that
# time instead of now, so the same commit packs to byte-identical .nupkg files (the compiler side is
# Deterministic + ContinuousIntegrationBuild). The last commit's time is the usual choice.
if [ -z "${SOURCE_DATE_EPOCH:-}" ] && epoch=$(git log -1 --format=%ct 2>/dev/null) && [ -n "$epoch" ]; then
  export SOURCE_DATE_EPOCH=$epoch
fi
start=$(date +%s)
dotnet pack "packaging/native/$rid/Kernels.Native.$rid.csproj" "${common[@]}"
dotnet pack bindings/Kernels.Bindings.csproj "${common[@]}"
dotnet pack src/Nn/Kernels.Nn.csproj "${common[@]}"
dotnet pack src/Plotting/Kernels.Nn.Plotting.csproj "${common[@]}"
dotnet pack src/Distributed/Kernels.Distributed.csproj "${common[@]}"
echo "pack.sh: packed in $(( $(date +%s) - start )) s"

say "packages"
for p in "$out/Kernels.Native.$rid.$version.nupkg" "$out/Kernels.Bindings.$version.nupkg" "$out/Kernels.Nn.$version.nupkg" "$out/Kernels.Nn.Plotting.$version.nupkg" "$out/Kernels.Distributed.$version.nupkg"; do
  [ -f "$p" ] || die "expected $p, not produced"
  printf '  %-48s %8.2f MB\n' "$(basename "$p")" "$(awk "BEGIN { print $(stat -c %s "$p") / 1048576 }")"
done
echo "pack.sh: check them with: dotnet run --file packaging/check-package.cs -- --packages $out --version $version"
