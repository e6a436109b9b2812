#!/usr/bin/env python3
"""cuDNN (through PyTorch) on the shapes native/dev/conv.cu timed, and the ratio of ours to it.

    ./conv --csv conv.csv              # our variants, validated then timed (native/dev/conv.cu)
    python3 conv_cudnn.py conv.csv     # cuDNN on the same shapes and passes, then the comparison

For every (pass, shape) row of the CSV this times torch's convolution on the GPU the same way
conv.cu times ours: float32 NCHW, TF32 off (plain FP32 like our kernels), one warm-up call (which
also lets cudnn.benchmark pick its algorithm), then the mean of --repeats calls measured with CUDA
events, with the L2 cache flushed (a buffer twice its size is written) before each call, outside
the timed interval. The passes are aten.convolution_backward with only the input gradient (backward
data) or only the weight gradient (backward weights, no bias gradient: conv.cu times dw alone).

Prints, per shape and pass: cuDNN's ms and GFLOP/s, our planned variant's (what the library runs)
and our best variant's, and the ratios ours / cuDNN. --deterministic also sets
cudnn.deterministic (our kernels are deterministic; cuDNN's fastest backward algorithms may not be).
"""
import argparse
import csv
import sys
from collections import OrderedDict


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("csv", help="the file written by ./conv --csv")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--deterministic", action="store_true", help="restrict cuDNN to deterministic algorithms")
    args = parser.parse_args()

    import torch
    import torch.nn.functional as F

    if not torch.cuda.is_available():
        sys.exit("conv_cudnn.py: no CUDA device visible to PyTorch")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.benchmark = True
    torch.backends.cudnn.deterministic = args.deterministic
    device = torch.device("cuda")
    props = torch.cuda.get_device_properties(device)
    l2_bytes = getattr(props, "L2_cache_size", 0) or (50 << 20)
    flush = torch.empty(2 * l2_bytes, dtype=torch.uint8, device=device)
    print(f"{props.name}, PyTorch {torch.__version__}, cuDNN {torch.backends.cudnn.version()}, "
          f"TF32 off, cudnn.benchmark on, deterministic {args.deterministic}")

    # (pass, shape) -> geometry and our variants' timings.
    rows = OrderedDict()
    with open(args.csv, newline="") as f:
        for r in csv.DictReader(f):
            key = (r["pass"], r["shape"])
            entry = rows.setdefault(key, {"geometry": {k: int(r[k]) for k in (
                "batch", "in_channels", "in_height", "in_width", "out_channels", "kernel_height", "kernel_width",
                "stride_height", "stride_width", "pad_height", "pad_width", "dilation_height", "dilation_width",
                "groups")}, "ours": {}})
            entry["ours"][r["variant"]] = (float(r["ms"]), float(r["gflops"]), r["matches"] == "1")
    if not rows:
        sys.exit(f"conv_cudnn.py: no rows in {args.csv}")

    start = torch.cuda.Event(enable_timing=True)
    stop = torch.cuda.Event(enable_timing=True)

    def mean_ms(fn):
        fn()
        torch.cuda.synchronize()
        total = 0.0
        for r in range(args.repeats):
            flush.fill_(r & 0xFF)
            start.record()
            fn()
            stop.record()
            stop.synchronize()
            total += start.elapsed_time(stop)
        return total / args.repeats

    def flops(g, oh, ow):
        return 2.0 * g["batch"] * g["out_channels"] * oh * ow * (g["in_channels"] // g["groups"]) * \
            g["kernel_height"] * g["kernel_width"]

    print(f"\n{'pass':17} {'shape':32} {'cuDNN ms':>9} {'GFLOP/s':>9} | {'planned':>9} {'ratio':>6} | "
          f"{'best of ours':36} {'GFLOP/s':>9} {'ratio':>6}")
    for (pass_name, shape_name), entry in rows.items():
        g = entry["geometry"]
        x = torch.randn(g["batch"], g["in_channels"], g["in_height"], g["in_width"], device=device)
        w = torch.randn(g["out_channels"], g["in_channels"] // g["groups"], g["kernel_height"], g["kernel_width"],
                        device=device)
        stride = (g["stride_height"], g["stride_width"])
        padding = (g["pad_height"], g["pad_width"])
        dilation = (g["dilation_height"], g["dilation_width"])
        y = F.conv2d(x, w, None, stride, padding, dilation, g["groups"])
        dy = torch.randn_like(y)
        if pass_name == "forward":
            def run():
                F.conv2d(x, w, None, stride, padding, dilation, g["groups"])
        else:
            mask = [pass_name == "backward_data", pass_name == "backward_weights", False]

            def run():
                torch.ops.aten.convolution_backward(dy, x, w, None, stride, padding, dilation, False, [0, 0],
                                                    g["groups"], mask)
        ms = mean_ms(run)
        gflops = flops(g, y.shape[2], y.shape[3]) / ms / 1e6
        ours = entry["ours"]
        planned = next((v for k, v in ours.items() if "planned" in k), None)
        valid = {k: v for k, v in ours.items() if v[2]}
        best_name, best = max(valid.items(), key=lambda kv: kv[1][1]) if valid else ("(none matched)", (0, 0, False))
        planned_text = f"{planned[1]:9.1f} {planned[1] / gflops:6.3f}" if planned else f"{'-':>9} {'-':>6}"
        print(f"{pass_name:17} {shape_name[:32]:32} {ms:9.3f} {gflops:9.1f} | {planned_text} | "
              f"{best_name[:36]:36} {best[1]:9.1f} {best[1] / gflops:6.3f}")


if __name__ == "__main__":
    main()
