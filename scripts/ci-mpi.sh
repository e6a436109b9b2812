#!/usr/bin/env bash
# Kernels.Distributed on loopback (issue 18): the checks of tests/Kernels.Distributed.Tests, each case
# one run of the program, under `mpirun.openmpi -np 2` (Open MPI from Debian), alone for the
# single-process cases, and a second pass of the quick checks under `mpirun.mpich -np 2` (MPICH from
# Debian: the other ABI, integer handles). Both MPIs come from scripts/install-prereqs.sh; the launchers
# are named explicitly because Debian's alternatives choose what plain `mpirun` is. Each line names the
# MPI it ran on (none = no launcher):
#   none/single-process   without mpirun: a world of one, collectives leave the data, DDP-Fit == Fit bit for bit
#   none/missing-library  mpirun's environment but no library: MpiNotFoundException naming it and the apt packages
#   none/not-mpi          a library that is neither Open MPI nor MPICH (libc): refused with a message
#   */collectives         broadcast / all-reduce (float, double, long; sum, max) / async all-reduce / barrier
#                         against hand computations; the library opened is the launcher's own
#   openmpi/allreduce-sizes-3  3 ranks: all-reduce sums and maxima of 1 to 100,003 floats exact (counts below the
#                         rank count included: the ring this library makes Open MPI's default splits by rank)
#   */equivalence-mlp     2 ranks x batch 16, 8 SGD-momentum steps == 1 process x batch 32 (within 1e-5)
#   openmpi/equivalence-cnn  the same with a CNN with BatchNorm (per-rank statistics, as DDP; see the program);
#                         after a synchronisation the running statistics are rank 0's on both ranks, bit for bit;
#                         the buckets through pinned host arrays (the CPU's default, OpenCL's, CUDA's without CUDA-aware MPI)
#   openmpi/equivalence-cnn-in-place  the same all-reduced in the device's own memory (what a CUDA-aware MPI gets on
#                         a GPU; here the CPU device, whose memory MPI can address)
#   openmpi/rank-killed   rank 1 SIGKILLs itself after batch 3: the job ends, naming rank 1, within 60 s
#   */rank-stalls         rank 1 hangs after batch 3: rank 0's all-reduce times out (KERNELS_MPI_TIMEOUT_S=5)
#                         with an error naming rank 1 and MPI_Abort ends the job within 45 s
#   openmpi/rank-stalls-3 3 ranks, rank 2 hangs: the liveness query names rank 2 alone (the other live rank,
#                         waiting in the collective too, answers), within 45 s; the message is rank 0's or rank 1's,
#                         whichever times out first (rank 1's won the race once on an Intel Xeon VM)
#   openmpi/accumulation  each rank's batch of 16 as 2 micro-batches of 8 (the first backward inside ddp.NoSync()),
#                         one all-reduce per step: the weights of 1 process x batch 32 (within 1e-5)
#   openmpi/resume        4 epochs straight == 2 epochs, a crash, new objects restored from the BackupAndRestore
#                         file (rank 0 writes, both ranks read), 2 more epochs: same weights bit for bit (~1-2 s)
#   mpich/wrong-library   MPICH's launcher with Open MPI's library (KERNELS_MPI_LIBRARY=libmpi.so.40): each
#                         process would be a world of one; Init refuses, naming both sizes
# Ends with "N passed, N failed, N skipped". Cost: 40 s on the 2-core machine at load 6-10 for the Open MPI
# part (19 s of runs plus the build of Kernels.Distributed and the check program; the native library is
# built only when missing); the MPICH pass adds about 10 s.
set -uo pipefail
cd "$(dirname "$0")/.."
passed=0 failed=0 skipped=0

if ! command -v mpirun.openmpi >/dev/null; then
  echo "ci-mpi: mpirun.openmpi not found: install openmpi-bin libopenmpi-dev (scripts/install-prereqs.sh)"
  echo "0 passed, 1 failed, 0 skipped"; exit 1
fi
if [ ! -f build/native/libkernels.so ]; then
  cmake -S native -B build/native -DKN_WITH_CUDA=OFF >/dev/null && cmake --build build/native -j"$(nproc)" --target kernels >/dev/null \
    || { echo "ci-mpi: native build failed"; echo "0 passed, 1 failed, 0 skipped"; exit 1; }
fi
dotnet build tests/Kernels.Distributed.Tests -c Release -v q -nologo >/dev/null \
  || { echo "ci-mpi: build of tests/Kernels.Distributed.Tests failed"; echo "0 passed, 1 failed, 0 skipped"; exit 1; }
prog=(dotnet tests/Kernels.Distributed.Tests/bin/Release/net10.0/Kernels.Distributed.Tests.dll)
mpirun=(mpirun.openmpi -np 2 --oversubscribe -x KERNELS_MPI_TIMEOUT_S)
[ "$(id -u)" = 0 ] && mpirun+=(--allow-run-as-root)
# Hydra (MPICH's launcher) passes the whole environment on; it runs as root without a flag.
mpich=(mpirun.mpich -np 2)
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
    passed=$((passed + 1)); printf 'PASS %-24s %6ss\n' "$name" "$elapsed"
  else
    failed=$((failed + 1)); printf 'FAIL %-24s %6ss: %s\n' "$name" "$elapsed" "$why"
  fi
  sed 's/^/    /' <<<"$out" | grep -Ev '^\s*$' | head -40
}

check none/single-process zero 60 'OK single-process' -- "${prog[@]}" single-process
check none/missing-library zero 60 'OK missing-library' -- "${prog[@]}" missing-library
check none/not-mpi zero 60 'OK not-mpi' -- "${prog[@]}" not-mpi
check openmpi/collectives zero 120 'OK collectives \(rank 0 of 2\)' 'OK collectives \(rank 1 of 2\)' 'rank 0: libmpi\.so\.40: Open MPI' -- \
  "${mpirun[@]}" "${prog[@]}" collectives
check openmpi/allreduce-sizes-3 zero 120 'exact' 'OK allreduce-sizes \(rank 0 of 3\)' 'OK allreduce-sizes \(rank 2 of 3\)' -- \
  "${mpirun[@]/#2/3}" "${prog[@]}" allreduce-sizes
check openmpi/equivalence-mlp zero 120 'OK equivalence-mlp \(rank 0 of 2\)' 'OK equivalence-mlp \(rank 1 of 2\)' -- "${mpirun[@]}" "${prog[@]}" equivalence-mlp
check openmpi/equivalence-cnn zero 120 'OK equivalence-cnn \(rank 0 of 2\)' 'OK equivalence-cnn \(rank 1 of 2\)' -- "${mpirun[@]}" "${prog[@]}" equivalence-cnn
check openmpi/equivalence-cnn-in-place zero 120 'all-reduced in device memory' 'OK equivalence-cnn \(rank 0 of 2\)' 'OK equivalence-cnn \(rank 1 of 2\)' -- \
  "${mpirun[@]}" "${prog[@]}" equivalence-cnn --in-place
check openmpi/rank-killed nonzero 60 'rank 1 .*(signal 9|Killed)' -- "${mpirun[@]}" "${prog[@]}" rank-killed
check openmpi/rank-stalls nonzero 45 'rank 0: all-reduce of gradient bucket 0 .* did not complete within 5 s: rank 1 did not arrive' -- \
  env KERNELS_MPI_TIMEOUT_S=5 "${mpirun[@]}" "${prog[@]}" rank-stalls
# Ranks 0 and 1 both time out; whichever of them aborts the job first is the one whose message shows.
stalls3='did not complete within 5 s: rank 2 did not arrive .*; rank'
check openmpi/rank-stalls-3 nonzero 45 "(rank 0: all-reduce of gradient bucket 0 .* $stalls3 1|rank 1: all-reduce of gradient bucket 0 .* $stalls3 0) answered from inside a collective" -- \
  env KERNELS_MPI_TIMEOUT_S=5 "${mpirun[@]/#2/3}" "${prog[@]}" rank-stalls
check openmpi/accumulation zero 120 'accumulated micro-batches' 'OK accumulation \(rank 0 of 2\)' 'OK accumulation \(rank 1 of 2\)' -- \
  "${mpirun[@]}" "${prog[@]}" accumulation
check openmpi/resume zero 120 'OK resume \(rank 0 of 2\)' 'OK resume \(rank 1 of 2\)' -- "${mpirun[@]}" "${prog[@]}" resume

# MPICH: the quick checks again, the library chosen by the launcher (Hydra sets PMI_RANK: libmpich.so.12 is
# tried first) and named in the collectives' output.
if command -v mpirun.mpich >/dev/null; then
  check mpich/collectives zero 120 'OK collectives \(rank 0 of 2\)' 'OK collectives \(rank 1 of 2\)' 'rank 0: libmpich\.so\.12: MPICH Version' -- \
    "${mpich[@]}" "${prog[@]}" collectives
  check mpich/equivalence-mlp zero 120 'OK equivalence-mlp \(rank 0 of 2\)' 'OK equivalence-mlp \(rank 1 of 2\)' -- "${mpich[@]}" "${prog[@]}" equivalence-mlp
  check mpich/rank-stalls nonzero 45 'rank 0: all-reduce of gradient bucket 0 .* did not complete within 5 s: rank 1 did not arrive' -- \
    env KERNELS_MPI_TIMEOUT_S=5 "${mpich[@]}" "${prog[@]}" rank-stalls
  check mpich/wrong-library zero 60 'sees a world of 1 process\(es\) but the launcher started 2' 'OK wrong-library' -- \
    env KERNELS_MPI_LIBRARY=libmpi.so.40 "${mpich[@]}" "${prog[@]}" wrong-library
else
  failed=$((failed + 1)); echo "FAIL mpich/*: mpirun.mpich not found: install mpich libmpich12 (scripts/install-prereqs.sh)"
fi

echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" = 0 ]
