#!/usr/bin/env bash
# scripts/bench-lstm-vs-torch.sh: LSTM training speed of Kernels against PyTorch on the same CPU, in
# the same run, threads matched. Two workloads (benchmarks/LstmTwin and its twin
# benchmarks/torch/lstm_twin.py, which say exactly what they run):
#   step   one LSTM training step: batch 64, 100 steps, 128 inputs, 128 hidden, forward + backward +
#          clipping + Adam;
#   mnist  the SequentialMnist sample's training step (batch 64, 28 steps, LSTM(28 -> 128) -> Dense 10),
#          scaled to a 938-batch epoch.
# For each thread count and workload: PyTorch, then Kernels, then PyTorch again (a drift in load shows
# as a difference between the two PyTorch figures); ratio = mean PyTorch time / Kernels time, so above
# 1.0x Kernels is faster. Two clocks, medians over the measured steps: wall time, and process CPU time,
# which with one thread leaves out the time spent waiting for a core (on a shared machine most of
# the wall time: the one-thread CPU-time ratio is the fair one there). PyTorch runs with
# OMP_WAIT_POLICY=PASSIVE: its OpenMP threads otherwise spin for a core that other processes hold
# (measured at 2 threads under load 4-6: 1.29 s per step spinning, 0.125 s passive). The load
# average is printed with each line.
#
#   scripts/bench-lstm-vs-torch.sh                 threads 1 and 2, 10 measured steps each
#   scripts/bench-lstm-vs-torch.sh --threads "1" --repeats 20
# Needs /usr/bin/python3 with torch (Debian: apt-get install -y python3-torch) and libkernels in
# build/native (./build.sh build, or cmake -S native -B build/native -DKN_WITH_CUDA=OFF).
set -euo pipefail
self=$(readlink -f "$0")
cd "$(dirname "$self")/.."
threads="1 2"
repeats=10
while [ $# -gt 0 ]; do
  case "$1" in
    --threads) threads=$2; shift ;;
    --repeats) repeats=$2; shift ;;
    -h|--help) sed -n '2,/^set -/p' "$self" | sed '$d'; exit 0 ;;
    *) echo "bench-lstm-vs-torch.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done
. scripts/bench-torch-common.sh
bench_torch_require bench-lstm-vs-torch.sh
dotnet build benchmarks/LstmTwin -c Release -v quiet -nologo >/dev/null
kernels=benchmarks/LstmTwin/bin/Release/net10.0/LstmTwin

bench_torch_fair_blas
bench_torch_machine
for t in $threads; do
  for mode in step mnist; do
    torch1=$(bench_torch_run "$t" benchmarks/torch/lstm_twin.py --mode "$mode" --repeats "$repeats")
    ours=$(KN_NUM_THREADS=$t "$kernels" --mode "$mode" --repeats "$repeats")
    torch2=$(bench_torch_run "$t" benchmarks/torch/lstm_twin.py --mode "$mode" --repeats "$repeats")
    load=$(cut -d' ' -f1-3 /proc/loadavg)
    for clock in seconds_per_step cpu_seconds_per_step; do
      a=$(field $clock "$torch1"); b=$(field $clock "$torch2"); k=$(field $clock "$ours")
      awk -v m="$mode" -v t="$t" -v c="$([ $clock = seconds_per_step ] && echo wall || echo cpu)" -v a="$a" -v b="$b" -v k="$k" -v load="$load" 'BEGIN {
        unit = (m == "mnist") ? 938 : 1; what = (m == "mnist") ? "s/epoch" : "s/step";
        printf "%-5s threads=%s %-4s PyTorch %.3f / %.3f %s  Kernels %.3f %s  ratio %.2fx  (load %s)\n",
               m, t, c, a * unit, b * unit, what, k * unit, what, (a + b) / 2 / k, load }'
    done
  done
done
