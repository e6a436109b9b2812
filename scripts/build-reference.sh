#!/usr/bin/env bash
# scripts/build-reference.sh: builds libkernels of the reference commit (benchmarks/baseline/reference-commit)
# for the A/B regression check (scripts/ci-bench.sh), and prints the folder that holds its libkernels.so.
# CPU + OpenCL backends only (no CUDA: the A/B cases run on the CPU and PoCL, and nvcc would take many
# minutes on 2 cores). Only native/ of that commit is needed: it is taken with `git archive` into a
# temporary folder, built there, and the library is kept in $KERNELS_CACHE/reference/<sha>/ (default
# ~/.cache/kernels), so a machine builds each reference once (about 1.5 minutes on 2 cores).
# The cache entry appears whole or not at all (built elsewhere, then renamed into place).
#
#   scripts/build-reference.sh            the commit named in benchmarks/baseline/reference-commit
#   scripts/build-reference.sh SHA        another commit
# The commit must be in this clone: CI clones main with its history. In a shallow clone the script
# fetches the commit (or deepens the history) from origin, and fails naming the commit when it cannot.
set -euo pipefail
self=$(readlink -f "$0")
cd "$(dirname "$self")/.."
die() { printf 'build-reference.sh: %s\n' "$*" >&2; exit 1; }

name=${1:-$(sed -e 's/#.*//' -e '/^[[:space:]]*$/d' benchmarks/baseline/reference-commit | head -1 | tr -d '[:space:]')}
[ -n "$name" ] || die "benchmarks/baseline/reference-commit names no commit"
if ! git cat-file -e "$name^{commit}" 2>/dev/null; then
  if [ "$(git rev-parse --is-shallow-repository 2>/dev/null)" = true ]; then
    echo "build-reference.sh: $name is not in this shallow clone; fetching it from origin" >&2
    git fetch -q origin "$name" 2>/dev/null || git fetch -q --unshallow origin 2>/dev/null || true
  fi
  git cat-file -e "$name^{commit}" 2>/dev/null \
    || die "the reference commit $name is not in this clone (shallow: $(git rev-parse --is-shallow-repository)); clone main with its history (git clone without --depth, or git fetch --unshallow)"
fi
sha=$(git rev-parse "$name^{commit}")
cache=${KERNELS_CACHE:-$HOME/.cache/kernels}/reference/$sha
if [ -f "$cache/libkernels.so" ]; then
  echo "build-reference.sh: reference $sha: cached in $cache" >&2
  echo "$cache"
  exit 0
fi

# Built next to the cache entry (same file system), so the final rename is atomic.
mkdir -p "$(dirname "$cache")"
work=$(mktemp -d "$(dirname "$cache")/.building.XXXXXX")
trap 'rm -rf "$work"' EXIT
echo "build-reference.sh: building the reference $sha (CPU + OpenCL) in $work" >&2
git archive "$sha" native | tar -x -C "$work"
cmake -S "$work/native" -B "$work/build" -DCMAKE_BUILD_TYPE=Release -DKN_WITH_CUDA=OFF -DKN_WITH_OPENCL=AUTO \
      -DKN_BUILD_TESTS=OFF >/dev/null
cmake --build "$work/build" --target kernels -j "$(nproc 2>/dev/null || echo 2)" >&2
cp "$work/build/libkernels.so" "$work/libkernels.so"
git log -1 --format='%H %cd %s' "$sha" > "$work/commit.txt"
mkdir "$work/entry" && mv "$work/libkernels.so" "$work/commit.txt" "$work/entry/"
# rename is atomic; another run that finished first wins and this copy is dropped
mv -T "$work/entry" "$cache" 2>/dev/null || true
[ -f "$cache/libkernels.so" ] || die "could not place the reference library in $cache"
echo "$cache"
