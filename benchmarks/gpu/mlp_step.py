#!/usr/bin/env python3
"""One training step of the MNIST MLP (784 -> 512 -> 256 -> 10, ReLU, dropout 0.2, Adam, batch 128):
PyTorch eager against Kernels on the same GPU, and the ratio.

The PyTorch step is the one Kernels' Trainer runs (and MlpStepCase times): zero the gradients,
forward, cross-entropy, read the loss (a synchronisation), backward, Adam step. FP32 throughout
(TF32 off, as Kernels' SGEMM is plain FP32). Kernels' time comes from the published benchmark
program, run by this script between two PyTorch measurements (PyTorch before and after, so a
clock or load drift shows up as a difference between those two).

    python3 benchmarks/gpu/mlp_step.py --kernels-bin .gpu/bench/Kernels.Benchmarks
    python3 benchmarks/gpu/mlp_step.py --kernels-json results/gpu/results.json   # an earlier run's

Prints seconds per step of each and ratio = PyTorch time / Kernels time (above 1: Kernels faster).
Written on a machine without a GPU: not run yet.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time


def torch_step_seconds(batch, steps, warmup, device):
    import torch
    import torch.nn as nn

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.manual_seed(1)
    model = nn.Sequential(
        nn.Linear(784, 512), nn.ReLU(), nn.Dropout(0.2),
        nn.Linear(512, 256), nn.ReLU(), nn.Dropout(0.2),
        nn.Linear(256, 10)).to(device)
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    x = torch.rand(batch, 784, device=device)
    labels = torch.randint(0, 10, (batch,), device=device)

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), labels)
        value = loss.item()  # the Trainer reads the loss every step: a synchronisation
        loss.backward()
        optimizer.step()
        return value

    for _ in range(warmup):
        step()
    torch.cuda.synchronize()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times), torch.__version__, torch.cuda.get_device_name(0)


def kernels_step_seconds(results_path, device_name, batch):
    with open(results_path) as f:
        results = json.load(f)
    case = f"mlp-step/{device_name}/batch{batch}"
    for r in results["results"]:
        if r["id"] == case:
            return r["kernelsSeconds"], r
    raise SystemExit(f"{results_path} has no case {case}; cases: {[r['id'] for r in results['results']]}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kernels-bin", help="the published Kernels.Benchmarks program (run here on --kernels-device)")
    parser.add_argument("--kernels-json", help="a results.json that holds the mlp-step case (instead of running the program)")
    parser.add_argument("--kernels-device", default="cuda:0")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=30)
    args = parser.parse_args()
    if not args.kernels_bin and not args.kernels_json:
        parser.error("give --kernels-bin or --kernels-json")
    if args.batch != 128:
        print("note: the benchmark program's catalog has batch 128 only", file=sys.stderr)

    before, torch_version, gpu = torch_step_seconds(args.batch, args.steps, args.warmup, "cuda")
    if args.kernels_json:
        results_path = args.kernels_json
    else:
        out = tempfile.mkdtemp(prefix="mlp-step-")
        subprocess.run([args.kernels_bin, "ratios", "--cases", f"mlp-step/{args.kernels_device}/*", "--out", out], check=True)
        results_path = os.path.join(out, "results.json")
    kernels, case = kernels_step_seconds(results_path, args.kernels_device, args.batch)
    after, _, _ = torch_step_seconds(args.batch, args.steps, args.warmup, "cuda")
    torch_seconds = statistics.median([before, after])

    print(f"GPU: {gpu}; PyTorch {torch_version} (eager, FP32, Adam default implementation)")
    print(f"MLP 784-512-256-10 training step, batch {args.batch}:")
    print(f"  PyTorch eager   {torch_seconds * 1e3:8.3f} ms/step  (before {before * 1e3:.3f}, after {after * 1e3:.3f})")
    print(f"  Kernels         {kernels * 1e3:8.3f} ms/step  ({case['deviceDescription']}; against its own reference: {case['ratio']:.2f}x {case['reference']})")
    print(f"  ratio PyTorch / Kernels = {torch_seconds / kernels:.2f}x (above 1: Kernels faster)")


if __name__ == "__main__":
    main()
