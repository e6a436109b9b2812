#!/usr/bin/env bash
# Builds native/kernels/cuda/*.cu for the CPU emulator and runs their tests (no GPU needed).
#   native/dev/emulator/run.sh [--sanitize] [FAMILY]
#     FAMILY of test_cuda_kernels: fill unary binary softmax reduce gemm linear layout gather cast recurrent optimizer_many
#     FAMILY of test_cuda_conv:    divmod conv conv_backward_data conv_backward_weights pool batch_norm
#     (none: both programs, every family)
# --sanitize adds AddressSanitizer and UBSan (out-of-bounds and misaligned accesses; ~3x slower).
# Environment: CXX (default g++), EMU_BUILD_DIR (default build/cuda-emulator), EMU_ORDER=reverse.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
native="$(cd "$here/../.." && pwd)"
out="${EMU_BUILD_DIR:-$native/../build/cuda-emulator}"
flags=(-std=c++17 -O2 -g -Wall -Wno-unknown-pragmas -Wno-unused-parameter
       -I "$here/include" -I "$out/src" -I "$native/include" -I "$native/core" -I "$native/kernels"
       -I "$native/tests")  # selftest_harness.h
if [ "${1:-}" = --sanitize ]; then
  flags+=(-fsanitize=address,undefined -fno-sanitize-recover=undefined)
  export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=0}"
  shift
fi
mkdir -p "$out/src" "$out/obj"
cp "$native/kernels/cuda/cuda_kernels.h" "$out/src/"
# Device headers shared by several kernel files go through the same translation as the kernels.
for h in "$native"/kernels/cuda/*.cuh; do
  [ -e "$h" ] && python3 "$here/translate.py" "$h" > "$out/src/$(basename "$h")"
done
objects=()
pids=()
for cu in "$native"/kernels/cuda/*.cu; do
  name="$(basename "$cu" .cu)"
  python3 "$here/translate.py" "$cu" > "$out/src/$name.cpp"
  "${CXX:-g++}" "${flags[@]}" -c "$out/src/$name.cpp" -o "$out/obj/$name.o" & pids+=($!)
  objects+=("$out/obj/$name.o")
done
tests=(test_cuda_kernels test_cuda_conv)
"${CXX:-g++}" "${flags[@]}" -c "$here/emulator.cpp" -o "$out/obj/emulator.o" & pids+=($!)
for t in "${tests[@]}"; do
  "${CXX:-g++}" "${flags[@]}" -c "$here/$t.cpp" -o "$out/obj/$t.o" & pids+=($!)
done
for p in "${pids[@]}"; do wait "$p"; done
for t in "${tests[@]}"; do
  "${CXX:-g++}" "${flags[@]}" -o "$out/$t" "${objects[@]}" "$out/obj/emulator.o" "$out/obj/$t.o"
done
case "${1:-}" in
  "") rc=0
      "$out/test_cuda_kernels" || rc=1
      "$out/test_cuda_conv" || rc=1
      exit $rc ;;
  divmod|conv|conv_backward_data|conv_backward_weights|pool|batch_norm) "$out/test_cuda_conv" "$@" ;;
  *) "$out/test_cuda_kernels" "$@" ;;
esac
