#!/usr/bin/env python3
"""The PyTorch twin of benchmarks/LstmTwin (Kernels' side): the same two workloads, the same shapes,
the same optimizer, timed the same way (wall clock, median of the measured repeats after warm-up).

  step   one LSTM training step: input [64, 100, 128] (batch-first), LSTM(128 -> 128) over 100 steps
         with the whole output sequence, loss = mean(output^2), backward, global-norm clipping at 1,
         Adam. One figure: seconds per step.
  mnist  the Sequential-MNIST sample's step: input [64, 28, 28] (28 rows of 28 pixels),
         LSTM(28 -> 128), last hidden state -> Linear(128 -> 10), cross-entropy, backward,
         clipping at 1, Adam; --batches steps timed and scaled to a 60000-image epoch
         (938 batches of 64). The pixels are random: the time does not depend on them.

    /usr/bin/python3 benchmarks/torch/lstm_twin.py --mode step --threads 2
Prints one line: `torch <mode> threads=N seconds_per_step=S cpu_seconds_per_step=C` (wall clock and
process CPU time, medians).
Run by scripts/bench-lstm-vs-torch.sh next to Kernels' side in the same run.
"""
import argparse
import statistics
import time

import torch
import torch.nn as nn


def step_workload(batch, steps, features, hidden):
    torch.manual_seed(1)
    lstm = nn.LSTM(features, hidden, batch_first=True)
    x = torch.rand(batch, steps, features) * 2 - 1
    optimizer = torch.optim.Adam(lstm.parameters(), lr=1e-3)

    def step():
        optimizer.zero_grad(set_to_none=True)
        out, _ = lstm(x)
        loss = out.pow(2).mean()
        value = loss.item()  # Kernels' Trainer reads the loss once per step
        loss.backward()
        torch.nn.utils.clip_grad_norm_(lstm.parameters(), 1.0)
        optimizer.step()
        return value

    return step


def mnist_workload(batch):
    torch.manual_seed(1)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = nn.LSTM(28, 128, batch_first=True)
            self.dense = nn.Linear(128, 10)

        def forward(self, x):
            _, (h, _) = self.lstm(x)
            return self.dense(h[-1])

    net = Net()
    x = torch.rand(batch, 28, 28)
    labels = torch.randint(0, 10, (batch,))
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(net(x), labels)
        value = loss.item()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        optimizer.step()
        return value

    return step


def median_seconds(step, warmup, repeats):
    """Median wall-clock and process-CPU seconds per step. With one thread the CPU time leaves out
    the time the process waited for a core, which on a shared machine is most of the wall time."""
    for _ in range(warmup):
        step()
    walls, cpus = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        step()
        walls.append(time.perf_counter() - start)
        cpus.append(time.process_time() - start_cpu)
    return statistics.median(walls), statistics.median(cpus)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=["step", "mnist"], required=True)
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (match Kernels' KN_NUM_THREADS)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=10, help="measured steps (mnist: batches)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    step = step_workload(64, 100, 128, 128) if args.mode == "step" else mnist_workload(64)
    wall, cpu = median_seconds(step, args.warmup, args.repeats)
    print(f"torch {args.mode} threads={args.threads} seconds_per_step={wall:.6f} cpu_seconds_per_step={cpu:.6f}")


if __name__ == "__main__":
    main()
