#!/usr/bin/env bash
# Kernels.Distributed on loopback (issue 18): the checks of tests/Kernels.Distributed.Tests, each case
# one run of the program, under `mpirun -np 2` (Open MPI from Debian, installed by
# scripts/install-prereqs.sh) or alone for the single-process cases:
#   single-process   without mpirun: a world of one, collectives leave the data, DDP-Fit == Fit bit for bit
#   missing-library  mpirun's environment but no library: MpiNotFoundException naming it and the apt package
#   not-open-mpi     a library that is not Open MPI (libc): refused with a message
#   collectives      broadcast / all-reduce (float, double, long; sum, max) / async all-reduce / barrier
#                    against hand computations
#   equivalence-mlp  2 ranks x batch 16, 8 SGD-momentum steps == 1 process x batch 32 (within 1e-5)
#   equivalence-cnn  the same with a CNN with BatchNorm (per-rank statistics, as DDP; see the program)
#   rank-killed      rank 1 SIGKILLs itself after batch 3: the job ends, naming rank 1, within 60 s
#   rank-stalls      rank 1 hangs after batch 3: rank 0's all-reduce times out (KERNELS_MPI_TIMEOUT_S=5)
#                    with an error naming rank 1 and MPI_Abort ends the job within 45 s
#   resume           4 epochs straight == 2 epochs, a crash, new objects restored from the BackupAndRestore
#                    file (rank 0 writes, both ranks read), 2 more epochs: same weights bit for bit (~1-2 s)
# Ends with "N passed, N failed, N skipped". Cost: 40 s on the 2-core machine at load 6-10 (19 s of runs
# plus the build of Kernels.Distributed and the check program; the native library is built only when missing).
set -uo pipefail
cd "$(dirname "$0")/.."
passed=0 failed=0 skipped=0

if ! command -v mpirun >/dev/null; then
  echo "ci-mpi: mpirun not found: install openmpi-bin libopenmpi-dev (scripts/install-prereqs.sh)"
  echo "0 passed, 1 failed, 0 skipped"; exit 1
fi
if [ ! -f build/native/libkernels.so ]; then
  cmake -S native -B build/native -DKN_WITH_CUDA=OFF >/dev/null && cmake --build build/native -j"$(nproc)" --target kernels >/dev/null \
    || { echo "ci-mpi: native build failed"; echo "0 passed, 1 failed, 0 skipped"; exit 1; }
fi
dotnet build tests/Kernels.Distributed.Tests -c Release -v q -nologo >/dev/null \
  || { echo "ci-mpi: build of tests/Kernels.Distributed.Tests failed"; echo "0 passed, 1 failed, 0 skipped"; exit 1; }
prog=(dotnet tests/Kernels.Distributed.Tests/bin/Release/net10.0/Kernels.Distributed.Tests.dll)
mpirun=(mpirun -np 2 --oversubscribe -x KERNELS_MPI_TIMEOUT_S)
[ "$(id -u)" = 0 ] && mpirun+=(--allow-run-as-root)
export KERNELS_MPI_TIMEOUT_S=${KERNELS_MPI_TIMEOUT_S:-60}

# check NAME WANT_RC(zero|nonzero) MAX_SECONDS PATTERN... -- COMMAND...: passes when the exit status is as
# wanted, the run took at most MAX_SECONDS, and every extended-regex PATTERN is in the output.
check() {
  local name=$1 want=$2 max=$3; shift 3
  local patterns=()
  while [ "$1" != -- ]; do patterns+=("$1"); shift; done; shift
  local out start rc elapsed why=""
  start=$(date +%s%N)
  out=$(timeout 300 "$@" 2>&1); rc=$?
  local ms=$(( ($(date +%s%N) - start) / 1000000 ))
  elapsed=$((ms / 1000)).$(( ms % 1000 / 100 ))
  if [ "$want" = zero ] && [ "$rc" != 0 ]; then why="exit status $rc"; fi
  if [ "$want" = nonzero ] && { [ "$rc" = 0 ] || [ "$rc" = 124 ]; }; then why="exit status $rc (the job should have failed, within the bound)"; fi
  if [ "$ms" -gt $((max * 1000)) ]; then why="$why took ${elapsed}s > ${max}s"; fi
  for p in "${patterns[@]}"; do grep -Eq -- "$p" <<<"$out" || why="$why; no '$p' in the output"; done
  if [ -z "$why" ]; then
    passed=$((passed + 1)); printf 'PASS %-16s %6ss\n' "$name" "$elapsed"
  else
    failed=$((failed + 1)); printf 'FAIL %-16s %6ss: %s\n' "$name" "$elapsed" "$why"
  fi
  sed 's/^/    /' <<<"$out" | grep -Ev '^\s*$' | head -40
}

check single-process zero 60 'OK single-process' -- "${prog[@]}" single-process
check missing-library zero 60 'OK missing-library' -- "${prog[@]}" missing-library
check not-open-mpi zero 60 'OK not-open-mpi' -- "${prog[@]}" not-open-mpi
check collectives zero 120 'OK collectives \(rank 0 of 2\)' 'OK collectives \(rank 1 of 2\)' -- "${mpirun[@]}" "${prog[@]}" collectives
check equivalence-mlp zero 120 'OK equivalence-mlp \(rank 0 of 2\)' 'OK equivalence-mlp \(rank 1 of 2\)' -- "${mpirun[@]}" "${prog[@]}" equivalence-mlp
check equivalence-cnn zero 120 'OK equivalence-cnn \(rank 0 of 2\)' 'OK equivalence-cnn \(rank 1 of 2\)' -- "${mpirun[@]}" "${prog[@]}" equivalence-cnn
check rank-killed nonzero 60 'rank 1 .*(signal 9|Killed)' -- "${mpirun[@]}" "${prog[@]}" rank-killed
check rank-stalls nonzero 45 'rank 0: all-reduce of gradient bucket 0 .* did not complete within 5 s: rank 1 did not arrive' -- \
  env KERNELS_MPI_TIMEOUT_S=5 "${mpirun[@]}" "${prog[@]}" rank-stalls
check resume zero 120 'OK resume \(rank 0 of 2\)' 'OK resume \(rank 1 of 2\)' -- "${mpirun[@]}" "${prog[@]}" resume

echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" = 0 ]
