#!/usr/bin/env bash
# tests/scripts/toolchain_change.sh: build.sh must configure a build folder afresh when the toolchain it
# finds changes. The case it guards: a folder configured before nvcc was installed (CMake caches the
# missing CUDA compiler) went on building without CUDA, silently, once nvcc was there.
# Configures only (./build.sh configure), no compiling: about a minute. Needs nvcc on PATH (skips otherwise).
# Prints "toolchain-change: N passed, N failed, N skipped" and exits 1 on a failure.
set -uo pipefail
cd "$(dirname "$(readlink -f "$0")")/../.."
if ! command -v nvcc >/dev/null; then
  echo "toolchain-change: skipped: nvcc is not installed (scripts/install-prereqs.sh --with-cuda)"
  echo "toolchain-change: 0 passed, 0 failed, 1 skipped"; exit 0
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# A PATH without nvcc: every program of nvcc's folder but nvcc itself, linked into a folder of our own.
nvcc_dir=$(dirname "$(command -v nvcc)")
mkdir "$work/bin"
for f in "$nvcc_dir"/*; do [ "$(basename "$f")" = nvcc ] || ln -s "$f" "$work/bin/"; done
hidden_path=$work/bin
for d in ${PATH//:/ }; do [ "$d" = "$nvcc_dir" ] || [ "$(readlink -f "$d")" = "$(readlink -f "$nvcc_dir")" ] || hidden_path+=":$d"; done

passed=0 failed=0
# What decides whether the CUDA kernels get compiled: CUDA flags in the kernels target's build rules.
cuda_in_build() { grep -q '^CUDA_FLAGS' "$work/build/CMakeFiles/kernels.dir/flags.make" 2>/dev/null; }
verdict() {  # verdict WHAT OK(0/1) LOG
  if [ "$2" = 0 ]; then passed=$((passed + 1)); echo "ok: $1"
  else failed=$((failed + 1)); echo "FAILED: $1; build.sh said:"; sed 's/^/    /' "$3"; fi
}
PATH=$hidden_path BUILD_DIR=$work/build KN_WITH_CUDA=AUTO ./build.sh configure > "$work/before.log" 2>&1
! cuda_in_build; verdict "without nvcc on PATH the folder is configured without CUDA" $? "$work/before.log"
BUILD_DIR=$work/build KN_WITH_CUDA=AUTO ./build.sh configure > "$work/after.log" 2>&1
cuda_in_build; verdict "once nvcc is on PATH, the same folder is configured with CUDA" $? "$work/after.log"
grep -q 'kernels: CUDA backend ON' "$work/after.log"; verdict "build.sh says the CUDA backend is on" $? "$work/after.log"
BUILD_DIR=$work/build KN_WITH_CUDA=AUTO ./build.sh configure > "$work/again.log" 2>&1
! grep -q 'configuring it afresh' "$work/again.log"; verdict "an unchanged toolchain keeps the folder's configuration" $? "$work/again.log"
# Folders configured by a build.sh from before the toolchain record (no kn-toolchain.txt): kept when
# their CUDA state matches what is installed, configured afresh when it is the stale one.
rm "$work/build/kn-toolchain.txt"
BUILD_DIR=$work/build KN_WITH_CUDA=AUTO ./build.sh configure > "$work/legacy.log" 2>&1
! grep -q 'configuring it afresh' "$work/legacy.log"; verdict "a folder without a record whose CUDA state matches is kept" $? "$work/legacy.log"
rm -rf "$work/build"
PATH=$hidden_path BUILD_DIR=$work/build KN_WITH_CUDA=AUTO ./build.sh configure > "$work/legacy0.log" 2>&1
rm "$work/build/kn-toolchain.txt"
BUILD_DIR=$work/build KN_WITH_CUDA=AUTO ./build.sh configure > "$work/legacy1.log" 2>&1
cuda_in_build; verdict "a folder without a record, configured before nvcc was installed, gets CUDA" $? "$work/legacy1.log"
echo "toolchain-change: $passed passed, $failed failed, 0 skipped"
[ "$failed" = 0 ]
