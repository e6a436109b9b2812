#!/usr/bin/env bash
# ci-cuda-emulator.sh: the CI stage that runs every CUDA kernel file on the CPU emulator
# (native/dev/emulator: the .cu files translated to C++, each launcher driven directly, including the
# variants the planner rarely picks: every GEMM / conv tile, split counts, forced 64-bit indices, reversed
# thread order). GPGPU-Sim (scripts/gpu-sim.sh) runs the kernels as PTX through the public API; this runs
# the launchers' every path, in about 2.5 minutes on 2 cores. Ends with "cuda-emulator: N passed, N failed"
# counting the two test programs (test_cuda_kernels, test_cuda_conv); their millions of single checks are
# printed above it, not added to CI's total.
set -uo pipefail
cd "$(dirname "$0")/.."
log=$(mktemp)
trap 'rm -f "$log"' EXIT
native/dev/emulator/run.sh 2>&1 | tee "$log" | grep -E "^FAIL|checks, [0-9]+ failures" | head -80
rc=${PIPESTATUS[0]}
passed=0 failed=0
while read -r checks failures; do
  if [ "$failures" -eq 0 ]; then passed=$((passed + 1)); else failed=$((failed + 1)); fi
done < <(sed -n 's/^\([0-9]*\) checks, \([0-9]*\) failures.*/\1 \2/p' "$log")
# A build failure or a crash leaves fewer than the two summary lines: each missing one is a failure.
missing=$((2 - passed - failed))
[ "$missing" -le 0 ] || { tail -20 "$log"; failed=$((failed + missing)); }
[ "$rc" -eq 0 ] || [ "$failed" -gt 0 ] || failed=1
echo "cuda-emulator: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
