#!/usr/bin/env bash
# scripts/ci-fuzz-readers.sh: property-based fuzzing of the C# file readers (IDX raw and gzip, the
# weights file, safetensors, state dicts, model specs, ONNX models), for CI: tests/Kernels.Nn.Tests/ReaderFuzzTests.cs
# (CsCheck) run for a fixed number of generated inputs per target. Each input is a random valid file with random mutations; reading it
# must load exactly what the tests' reference parser reads or throw InvalidDataException naming the
# file, with bounded allocation and the model unchanged on failure (a model spec: build, or throw
# InvalidDataException, leaking no tensor).
#
#   scripts/ci-fuzz-readers.sh                              15000 inputs per target (about 1 minute on 2 cores)
#   KERNELS_FUZZ_ITERATIONS=100000 scripts/ci-fuzz-readers.sh   more inputs
#   KERNELS_FUZZ_SECONDS=1800 scripts/ci-fuzz-readers.sh        30 minutes per target instead
#   CsCheck_Seed=<seed from a failure> scripts/ci-fuzz-readers.sh   replays a failure
# Uses the Release build of the tests when there is one (the test stage made it), else builds.
# Ends with "fuzz-readers: N passed, N failed, N skipped" (N = targets).
set -uo pipefail
cd "$(dirname "$(readlink -f "$0")")/.."
exe=tests/Kernels.Nn.Tests/bin/${CONFIGURATION:-Release}/net10.0/Kernels.Nn.Tests
if [ ! -x "$exe" ]; then ./build.sh build || { echo "fuzz-readers: 0 passed, 1 failed, 0 skipped"; exit 1; }; fi
export KERNELS_FUZZ_ITERATIONS=${KERNELS_FUZZ_ITERATIONS:-15000}
log=$(mktemp)
start=$(date +%s)
"$exe" --filter "FullyQualifiedName~ReaderFuzzTests" --output Detailed --no-ansi 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
echo "fuzz-readers: inputs per target:"
grep -E '^[A-Za-z_]+: [0-9]+ inputs$' "$log" | sort -u | sed 's/^/  /'
p=$(sed -n 's/^ *succeeded: *\([0-9]*\).*/\1/p' "$log" | tail -1)
f=$(sed -n 's/^ *failed: *\([0-9]*\).*/\1/p' "$log" | tail -1)
s=$(sed -n 's/^ *skipped: *\([0-9]*\).*/\1/p' "$log" | tail -1)
rm -f "$log"
if [ -z "$p" ]; then p=0; f=1; s=0; fi
[ "$rc" = 0 ] || [ "$f" != 0 ] || f=1
echo "fuzz-readers: $(( $(date +%s) - start )) s"
echo "fuzz-readers: $p passed, $f failed, ${s:-0} skipped"
[ "$rc" = 0 ]
