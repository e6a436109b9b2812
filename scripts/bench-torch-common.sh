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

# The value of key=... in a result line.
field() { sed -n "s/.*[[:space:]]$1=\([0-9.]*\).*/\1/p" <<<"$2"; }

# One line naming the machine: CPU model, cores, torch version.
bench_torch_machine() {
  echo "CPU: $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1), $(nproc) cores; torch $("$torch_python" -c 'import torch; print(torch.__version__)')"
}

# Runs a PyTorch twin on $1 threads: bench_torch_run THREADS script.py ARGS...
bench_torch_run() {
  local t=$1; shift
  OMP_NUM_THREADS=$t OMP_WAIT_POLICY=PASSIVE "$torch_python" "$@" --threads "$t"
}
