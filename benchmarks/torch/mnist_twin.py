#!/usr/bin/env python3
"""The PyTorch twin of benchmarks/MnistTwin (Kernels' side): the networks of samples/MnistMlp and
samples/MnistCnn (samples/Common/MnistNetworks.cs), the same batch sizes, Adam at 1e-3, cross-entropy on
logits, one shuffled pass over random pixels in [0, 1) and random int64 labels shaped like MNIST (flat
[N, 784] float32 images), timed the same way: a warm-up of --warmup batches, then --batches batches
(0: the whole 60000-image epoch) scaled to a 60000-image epoch. Training only (no validation pass).

  mlp  784-512-256-10, ReLU, dropout 0.2, batch 128 (469 batches per epoch); Kaiming-uniform weights
       for the hidden layers (Keras's He uniform), Glorot-uniform for the last, zero biases, as ours.
  cnn  [1x28x28] -> conv 3x3 32 (no bias) -> batch norm -> ReLU -> max pool 2 -> conv 3x3 64 (no bias)
       -> batch norm -> ReLU -> max pool 2 -> flatten -> linear 3136->128 -> ReLU -> dropout 0.25 ->
       linear 128->10, batch 64 (938 batches per epoch); PyTorch's default init for the convolutions.

The loop is the frugal one a PyTorch user writes, matching what Model.Fit does: per batch, a gather of
the shuffled rows, forward, loss, backward, Adam; the epoch's loss sum and correct count stay tensors and
are read once at the end (no .item() per batch).

    /usr/bin/python3 benchmarks/torch/mnist_twin.py --net mlp --threads 1
Prints one line: `torch <net> threads=N batches=B seconds_per_epoch=S cpu_seconds_per_epoch=C` (wall
clock and process CPU time of the measured batches, scaled to 60000 images).
Run by scripts/bench-mnist-vs-torch.sh next to Kernels' side in the same run.
"""
import argparse
import math
import time

import torch
import torch.nn as nn

EPOCH_IMAGES = 60000


def mlp():
    layers = [nn.Linear(784, 512), nn.ReLU(), nn.Dropout(0.2), nn.Linear(512, 256), nn.ReLU(), nn.Dropout(0.2), nn.Linear(256, 10)]
    for layer in layers:
        if isinstance(layer, nn.Linear):
            if layer.out_features == 10:
                nn.init.xavier_uniform_(layer.weight)
            else:
                nn.init.kaiming_uniform_(layer.weight, nonlinearity="relu")
            nn.init.zeros_(layer.bias)
    return nn.Sequential(*layers)


def cnn():
    return nn.Sequential(
        nn.Unflatten(1, (1, 28, 28)),
        nn.Conv2d(1, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1, bias=False), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(64 * 7 * 7, 128), nn.ReLU(), nn.Dropout(0.25),
        nn.Linear(128, 10))


def train(net, optimizer, images, labels, batch_size, generator):
    """One shuffled pass; returns the mean loss and accuracy (read once, at the end)."""
    net.train()
    loss_fn = nn.CrossEntropyLoss()
    order = torch.randperm(images.shape[0], generator=generator)
    loss_sum = torch.zeros(())
    correct = torch.zeros((), dtype=torch.long)
    for start in range(0, images.shape[0], batch_size):
        rows = order[start:start + batch_size]
        x, y = images[rows], labels[rows]
        optimizer.zero_grad(set_to_none=True)
        logits = net(x)
        loss = loss_fn(logits, y)
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            loss_sum += loss.detach() * x.shape[0]
            correct += (logits.argmax(1) == y).sum()
    return loss_sum.item() / images.shape[0], correct.item() / images.shape[0]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--net", choices=["mlp", "cnn"], required=True)
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (match Kernels' KN_NUM_THREADS)")
    parser.add_argument("--warmup", type=int, default=5, help="warm-up batches before the measured ones")
    parser.add_argument("--batches", type=int, default=0, help="measured batches (0: a whole epoch)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(1)
    batch_size = 128 if args.net == "mlp" else 64
    epoch_batches = math.ceil(EPOCH_IMAGES / batch_size)
    batches = epoch_batches if args.batches <= 0 or args.batches > epoch_batches else args.batches
    measured = EPOCH_IMAGES if batches == epoch_batches else batches * batch_size
    net = mlp() if args.net == "mlp" else cnn()
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(7)

    def images(count):
        return torch.rand(count, 784), torch.randint(0, 10, (count,))

    warm_x, warm_y = images(args.warmup * batch_size)
    x, y = images(measured)
    train(net, optimizer, warm_x, warm_y, batch_size, generator)
    start, start_cpu = time.perf_counter(), time.process_time()
    train(net, optimizer, x, y, batch_size, generator)
    wall, cpu = time.perf_counter() - start, time.process_time() - start_cpu
    scale = EPOCH_IMAGES / measured
    print(f"torch {args.net} threads={args.threads} batches={batches} seconds_per_epoch={wall * scale:.3f} cpu_seconds_per_epoch={cpu * scale:.3f}")


if __name__ == "__main__":
    main()
