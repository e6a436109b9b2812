# scripts/bench-torch-common.sh: what the benchmarks against PyTorch share (sourced by
# scripts/bench-lstm-vs-torch.sh and scripts/bench-mnist-vs-torch.sh, from the repository root).
# PyTorch runs with OMP_NUM_THREADS as well as set_num_threads (its OpenMP pool spins otherwise) and
# OMP_WAIT_POLICY=PASSIVE: its OpenMP threads otherwise spin for a core that other processes hold
# (measured at 2 threads under load 4-6: 1.29 s per LSTM step spinning, 0.125 s passive).

torch_python=/usr/bin/python3

# Fails naming what is missing: torch for the PyTorch side, libkernels for ours. $1: the script's name.
bench_torch_require() {
  if ! "$torch_python" -c 'import torch' 2>/dev/null; then
    echo "$1: $torch_python cannot import torch (Debian: apt-get install -y python3-torch)" >&2
    exit 1
  fi
  if [ ! -f build/native/libkernels.so ]; then
    echo "$1: build/native/libkernels.so is missing: run ./build.sh build first" >&2
    exit 1
  fi
}

# The OpenBLAS kernels PyTorch runs its dense products on (Debian's torch links libopenblas), by the
# name OpenBLAS gives them; "unknown" where that library is not the one loaded.
bench_torch_blas_core() {
  "$torch_python" - <<'PY' 2>/dev/null || echo unknown
import ctypes, torch
lib = ctypes.CDLL("libopenblas.so.0")
lib.openblas_get_corename.restype = ctypes.c_char_p
print(lib.openblas_get_corename().decode())
PY
}

# OpenBLAS 0.3.21 does not know some newer CPUs and falls back to its SSE3 kernels ("Prescott"): on
# the Intel Xeon family 6 model 207 guest, PyTorch's MNIST MLP epoch took 6.1-6.5 s on them against
# 2.7-3.0 s on the AVX-512 ones, which made the earlier rounds' MLP ratios there 2x too flattering
# (benchmarks/results/2026-12-06-intel-xeon-pooling/torch-mlp-coretype.txt).
# When OPENBLAS_CORETYPE is unset and OpenBLAS fell back, give PyTorch the kernels of the CPU's widest
# vector ISA (SkylakeX for AVX-512, Haswell for AVX2) and say so. Our side does not use OpenBLAS.
bench_torch_fair_blas() {
  local core
  core=$(bench_torch_blas_core)
  if [ -z "${OPENBLAS_CORETYPE+set}" ] && [ "$core" = Prescott ]; then
    if grep -qw avx512f /proc/cpuinfo; then export OPENBLAS_CORETYPE=SkylakeX
    elif grep -qw avx2 /proc/cpuinfo; then export OPENBLAS_CORETYPE=Haswell
    fi
    [ -n "${OPENBLAS_CORETYPE:-}" ] && echo "note: OpenBLAS fell back to its Prescott kernels on this CPU; PyTorch runs with OPENBLAS_CORETYPE=$OPENBLAS_CORETYPE"
  fi
  return 0
}

# The value of key=... in a result line.
field() { sed -n "s/.*[[:space:]]$1=\([0-9.]*\).*/\1/p" <<<"$2"; }

# One line naming the machine: CPU model, cores, torch version.
bench_torch_machine() {
  echo "CPU: $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1), $(nproc) cores; torch $("$torch_python" -c 'import torch; print(torch.__version__)'); PyTorch's OpenBLAS kernels: $(bench_torch_blas_core)"
}

# Runs a PyTorch twin on $1 threads: bench_torch_run THREADS script.py ARGS...
bench_torch_run() {
  local t=$1; shift
  OMP_NUM_THREADS=$t OMP_WAIT_POLICY=PASSIVE "$torch_python" "$@" --threads "$t"
}
