#!/usr/bin/env bash
# scripts/bench-mnist-vs-torch.sh: the MNIST samples' training epochs, Kernels against PyTorch on the
# same CPU, in the same run, threads matched (the peer column of issue 16). Two networks, each side
# training it the way its users do (benchmarks/MnistTwin through Model.Fit exactly as samples/MnistMlp
# and samples/MnistCnn call it; benchmarks/torch/mnist_twin.py, which says exactly what it runs):
#   mlp  784-512-256-10, ReLU, dropout 0.2, Adam, batch 128: a whole 60000-image epoch by default;
#   cnn  2 x (conv 3x3, batch norm, ReLU, max pool), dense 128, dropout 0.25, Adam, batch 64:
#        300 of the epoch's 938 batches by default, scaled to the epoch.
# Random pixels and labels of MNIST's shapes (the time does not depend on them); training only, no
# validation pass; a warm-up of 5 batches first on each side. For each thread count (KN_NUM_THREADS on
# ours, set_num_threads + OMP_NUM_THREADS on PyTorch's) and network: PyTorch, then Kernels, then PyTorch
# again (a drift in load shows as a difference between the two PyTorch figures); ratio = mean PyTorch
# time / Kernels time, so above 1.0x Kernels is faster. Two clocks: wall time, and process CPU time,
# which with one thread leaves out the time spent waiting for a core (on a shared machine the fair
# one). The load average is printed with each line, and a Markdown table of everything at the end.
#
#   scripts/bench-mnist-vs-torch.sh                      threads 1 and 2, both networks (~3 min idle)
#   scripts/bench-mnist-vs-torch.sh --threads 1 --nets mlp --mlp-batches 200 --cnn-batches 938
#   scripts/bench-mnist-vs-torch.sh --kernels DIR/MnistTwin   Kernels' side from another build of
#                                       benchmarks/MnistTwin (dotnet build ... -o DIR: before a change)
# Needs /usr/bin/python3 with torch (Debian: apt-get install -y python3-torch) and libkernels in
# build/native (./build.sh build, or cmake -S native -B build/native -DKN_WITH_CUDA=OFF).
set -euo pipefail
self=$(readlink -f "$0")
cd "$(dirname "$self")/.."
threads="1 2"
nets="mlp cnn"
mlp_batches=0
cnn_batches=300
kernels=""
while [ $# -gt 0 ]; do
  case "$1" in
    --threads) threads=$2; shift ;;
    --nets) nets=$2; shift ;;
    --mlp-batches) mlp_batches=$2; shift ;;
    --cnn-batches) cnn_batches=$2; shift ;;
    --kernels) kernels=$2; shift ;;
    -h|--help) sed -n '2,/^set -/p' "$self" | sed '$d'; exit 0 ;;
    *) echo "bench-mnist-vs-torch.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done
. scripts/bench-torch-common.sh
bench_torch_require bench-mnist-vs-torch.sh
if [ -z "$kernels" ]; then
  dotnet build benchmarks/MnistTwin -c Release -v quiet -nologo >/dev/null
  kernels=benchmarks/MnistTwin/bin/Release/net10.0/MnistTwin
fi

bench_torch_fair_blas
bench_torch_machine
table="| network | threads | clock | PyTorch s/epoch (1st / 2nd run) | Kernels s/epoch | ratio | load average |
|---|---|---|---|---|---|---|"
for t in $threads; do
  for net in $nets; do
    batches=$([ "$net" = mlp ] && echo "$mlp_batches" || echo "$cnn_batches")
    torch1=$(bench_torch_run "$t" benchmarks/torch/mnist_twin.py --net "$net" --batches "$batches")
    ours=$(KN_NUM_THREADS=$t "$kernels" --net "$net" --batches "$batches")
    torch2=$(bench_torch_run "$t" benchmarks/torch/mnist_twin.py --net "$net" --batches "$batches")
    load=$(cut -d' ' -f1-3 /proc/loadavg)
    measured=$(field batches "$ours")
    for clock in seconds_per_epoch cpu_seconds_per_epoch; do
      a=$(field $clock "$torch1"); b=$(field $clock "$torch2"); k=$(field $clock "$ours")
      c=$([ $clock = seconds_per_epoch ] && echo wall || echo cpu)
      awk -v n="$net" -v t="$t" -v c="$c" -v a="$a" -v b="$b" -v k="$k" -v m="$measured" -v load="$load" 'BEGIN {
        printf "%-3s threads=%s %-4s PyTorch %.2f / %.2f s/epoch  Kernels %.2f s/epoch  ratio %.2fx  (%s batches measured; load %s)\n",
               n, t, c, a, b, k, (a + b) / 2 / k, m, load }'
      table+=$'\n'$(awk -v n="$net" -v t="$t" -v c="$c" -v a="$a" -v b="$b" -v k="$k" -v load="$load" 'BEGIN {
        printf "| %s | %s | %s | %.2f / %.2f | %.2f | %.2fx | %s |", n, t, c, a, b, k, (a + b) / 2 / k, load }')
    done
  done
done
echo
echo "$table"
