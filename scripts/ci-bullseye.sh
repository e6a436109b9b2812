#!/usr/bin/env bash
# scripts/ci-bullseye.sh: the PACKAGED libkernels.so in an older system: Debian 11 "bullseye", glibc 2.31,
# the package's Linux floor (issue 17). Runs after scripts/ci-pack.sh, as root (chroot), in the root
# scripts/bullseye-root.sh made (reused; made here if missing, ~1-2 min more):
#   1. the native self-test (build/native/kernels_selftest, built against the same sysroot by build.sh)
#      with the packaged libkernels.so next to it, on every device the root has: the CPU (no OpenCL
#      driver there, and no GPU);
#   2. the consumer program of scripts/ci-pack.sh (packaging/consumer/Program.cs), restored from the
#      packages in artifacts/packages and published self-contained for linux-x64 on this machine, run
#      inside the root: loads the library, reports OpenCL absent with its reason, trains on the CPU.
# A library that needs a newer glibc fails both: bullseye's loader refuses it ("version `GLIBC_2.34'
# not found"). Took 13-35 s on the shared 2-core machine (self-test 7-15 s, publish 6-19 s: the runtime
# pack is restored into a private NuGet cache, as the pack stage's consumer test does; more on a
# machine whose NuGet mirror is cold).
# Ends with "ci-bullseye: N passed, N failed, N skipped"; exits 1 when anything failed.
# Environment: BUILD_DIR (the self-test's build folder, default build/native), PACKAGE_DIR (default
# artifacts/packages), KN_PACKAGE_VERSION (as scripts/pack.sh), KN_BULLSEYE_ROOT (scripts/bullseye-root.sh).
set -uo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
packages=${PACKAGE_DIR:-artifacts/packages}
case "$packages" in /*) ;; *) packages="$repo/$packages" ;; esac
build_dir=${BUILD_DIR:-build/native}

passed=0 failed=0 skipped=0
pass() { passed=$((passed + 1)); echo "PASS $*"; }
fail() { failed=$((failed + 1)); echo "FAIL $*"; }
say() { printf '\n== %s\n' "$*"; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f s", b - a }'; }
started=$(now)
finish() {
  echo
  echo "ci-bullseye: took $(since "$started")"
  echo "ci-bullseye: $passed passed, $failed failed, $skipped skipped"
  [ "$failed" = 0 ]
  exit
}
export DOTNET_NOLOGO=1 DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1

version=$(scripts/package-version.sh)
native_package="$packages/Kernels.Native.linux-x64.$version.nupkg"

# ---- the root, and a folder inside it for this run ---------------------------------------------------
say "bullseye root"
[ "$(id -u)" = 0 ] || { fail "needs root (chroot)"; finish; }
bullseye=$(scripts/bullseye-root.sh | tail -1) && [ -d "$bullseye" ] || { fail "scripts/bullseye-root.sh made no root"; finish; }
echo "root: $bullseye ($(chroot "$bullseye" ldd --version | head -1))"
inside=$(mktemp -d "$bullseye/tmp/kernels-ci.XXXXXX")   # seen as ${inside#$bullseye} from inside
mounted_proc=0
cleanup() {
  # Unmounted even after a failure or an interrupt: a /proc left mounted inside the cached root would
  # outlive the run (and make the root's folder impossible to remove with rm --one-file-system).
  [ "$mounted_proc" = 1 ] && umount "$bullseye/proc"
  rm -rf --one-file-system "$inside"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
# .NET reads /proc (its own maps, the CPU count, cgroup limits); the self-test does not need it.
if ! mountpoint -q "$bullseye/proc"; then
  mount -t proc proc "$bullseye/proc" && mounted_proc=1 || { fail "mount -t proc $bullseye/proc"; finish; }
fi
# in_root COMMAND...: runs it inside the root with a clean environment (nothing of this machine's
# LD_LIBRARY_PATH, DOTNET_* or PATH leaks in).
in_root() { chroot "$bullseye" /usr/bin/env -i PATH=/usr/bin:/bin HOME=/root TMPDIR=/tmp LANG=C.UTF-8 "$@"; }

# ---- the packaged library ------------------------------------------------------------------------------
[ -f "$native_package" ] || { fail "$native_package not found: run scripts/ci-pack.sh (the pack stage) first"; finish; }
mkdir -p "$inside/selftest"
unzip -p "$native_package" runtimes/linux-x64/native/libkernels.so > "$inside/selftest/libkernels.so" \
  || { fail "no runtimes/linux-x64/native/libkernels.so in $native_package"; finish; }
newest=$(objdump -T "$inside/selftest/libkernels.so" | grep -o 'GLIBC_[0-9.]*' | sort -u -V | tail -1)
echo "library: $native_package -> libkernels.so, newest symbol version $newest (floor GLIBC_2.31)"

# ---- 1. the native self-test ---------------------------------------------------------------------------
say "native self-test inside bullseye"
t=$(now)
if [ ! -x "$build_dir/kernels_selftest" ]; then
  fail "self-test: $build_dir/kernels_selftest not found (./build.sh test builds it)"
else
  # Built against the sysroot (build.sh), so bullseye's libstdc++ 10 and glibc 2.31 run it; the library
  # next to it is the packaged one (LD_LIBRARY_PATH comes before the build folder's RUNPATH).
  cp "$build_dir/kernels_selftest" "$inside/selftest/"
  in_root LD_LIBRARY_PATH="${inside#$bullseye}/selftest" "${inside#$bullseye}/selftest/kernels_selftest" \
    > "$inside/selftest.log" 2>&1
  rc=$?
  summary=$(grep -E '^selftest: [0-9]+ passed, 0 failed' "$inside/selftest.log" | tail -1)
  if [ "$rc" = 0 ] && [ -n "$summary" ] && grep -q '^device .*cpu' "$inside/selftest.log"; then
    grep -E '^device ' "$inside/selftest.log"
    pass "self-test in bullseye with the packaged library: ${summary#selftest: } ($(since "$t"))"
  else
    tail -20 "$inside/selftest.log"; fail "self-test in bullseye (exit $rc)"
  fi
fi

# ---- 2. the consumer program, published self-contained ---------------------------------------------------
say "consumer program inside bullseye (self-contained publish of packaging/consumer/Program.cs)"
work=$(mktemp -d "${TMPDIR:-/tmp}/kernels-bullseye.XXXXXX")
trap 'cleanup; rm -rf "$work"' EXIT
mkdir -p "$work/feed"
for id in Kernels.Native.linux-x64 Kernels.Bindings Kernels.Nn; do
  cp "$packages/$id.$version.nupkg" "$work/feed/" || { fail "consumer: $packages/$id.$version.nupkg missing"; finish; }
done
# Kernels.Bindings also depends on every other native package the pack stage made (KN_PACK_EXTRA_RIDS,
# win-x64 in CI): they join the feed so the restore finds them.
for p in "$packages"/Kernels.Native.*."$version".nupkg; do
  [ -e "$p" ] && cp -n "$p" "$work/feed/"
done
# A private NuGet cache, so Kernels.* comes from these packages and not from a cached copy of the same
# version; only Kernels.* is mapped to the folder feed, the machine's own sources serve the rest.
export NUGET_PACKAGES="$work/nuget-packages"
mapfile -t source_keys < <(cd "$work" && dotnet nuget list source 2>/dev/null | sed -n 's/^ *[0-9][0-9]*\. *\(.*\) \[Enabled\]$/\1/p')
{
  echo '<?xml version="1.0" encoding="utf-8"?>'
  echo "<configuration><packageSources><add key=\"kernels-local\" value=\"$work/feed\" /></packageSources>"
  if [ ${#source_keys[@]} -gt 0 ]; then
    echo '<packageSourceMapping><packageSource key="kernels-local"><package pattern="Kernels.*" /></packageSource>'
    for key in "${source_keys[@]}"; do echo "<packageSource key=\"$key\"><package pattern=\"*\" /></packageSource>"; done
    echo '</packageSourceMapping>'
  fi
  echo '</configuration>'
} > "$work/nuget.config"
t=$(now)
if (cd "$work" && dotnet new console -n Consumer -o Consumer -f net10.0 --no-restore --no-update-check >/dev/null \
    && cp "$repo/packaging/consumer/Program.cs" Consumer/Program.cs \
    && cd Consumer && dotnet add package Kernels.Nn --version "$version" >"$work/add.log" 2>&1 \
    && dotnet publish -c Release -r linux-x64 --self-contained -o "$inside/consumer" -nologo -v quiet >"$work/publish.log" 2>&1); then
  if cmp -s "$inside/consumer/libkernels.so" "$inside/selftest/libkernels.so"; then
    pass "consumer: dotnet publish -r linux-x64 --self-contained, the packaged libkernels.so next to it ($(since "$t"))"
  else
    fail "consumer: the published libkernels.so is not the packaged one"
  fi
  t=$(now)
  # No OpenCL driver in the root: OpenCL must be reported absent (with its reason), the CPU must train.
  in_root "${inside#$bullseye}/consumer/Consumer" --require cpu --expect-absent opencl > "$work/consumer.log" 2>&1
  rc=$?
  cat "$work/consumer.log" | head -40
  if [ "$rc" = 0 ]; then
    pass "consumer: runs in bullseye (glibc 2.31): loads the library, trains on the CPU ($(since "$t"))"
  else
    fail "consumer: exit $rc in bullseye"
  fi
else
  cat "$work/add.log" "$work/publish.log" 2>/dev/null | tail -30
  fail "consumer: dotnet add package / publish --self-contained"
fi
finish
