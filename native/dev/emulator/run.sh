#!/usr/bin/env bash
# Builds native/kernels/cuda/*.cu for the CPU emulator and runs their tests (no GPU needed).
#   native/dev/emulator/run.sh [--sanitize] [fill|unary|binary|softmax|reduce|gemm]
# --sanitize adds AddressSanitizer and UBSan (out-of-bounds and misaligned accesses; ~3x slower).
# Environment: CXX (default g++), EMU_BUILD_DIR (default build/cuda-emulator), EMU_ORDER=reverse.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
native="$(cd "$here/../.." && pwd)"
out="${EMU_BUILD_DIR:-$native/../build/cuda-emulator}"
flags=(-std=c++17 -O2 -g -Wall -Wno-unknown-pragmas -Wno-unused-parameter
       -I "$here/include" -I "$out/src" -I "$native/include" -I "$native/src")
if [ "${1:-}" = --sanitize ]; then
  flags+=(-fsanitize=address,undefined -fno-sanitize-recover=undefined)
  export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=0}"
  shift
fi
mkdir -p "$out/src" "$out/obj"
cp "$native/kernels/cuda/cuda_kernels.h" "$out/src/"
objects=()
pids=()
for cu in "$native"/kernels/cuda/*.cu; do
  name="$(basename "$cu" .cu)"
  python3 "$here/translate.py" "$cu" > "$out/src/$name.cpp"
  "${CXX:-g++}" "${flags[@]}" -c "$out/src/$name.cpp" -o "$out/obj/$name.o" & pids+=($!)
  objects+=("$out/obj/$name.o")
done
"${CXX:-g++}" "${flags[@]}" -c "$here/emulator.cpp" -o "$out/obj/emulator.o" & pids+=($!)
"${CXX:-g++}" "${flags[@]}" -c "$here/test_cuda_kernels.cpp" -o "$out/obj/test_cuda_kernels.o" & pids+=($!)
for p in "${pids[@]}"; do wait "$p"; done
"${CXX:-g++}" "${flags[@]}" -o "$out/test_cuda_kernels" "${objects[@]}" "$out/obj/emulator.o" "$out/obj/test_cuda_kernels.o"
"$out/test_cuda_kernels" "$@"
