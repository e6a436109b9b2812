using Kernels.Benchmarks.Cases;

namespace Kernels.Benchmarks;

/// <summary>
/// A case by description: enough to list, select and report it without touching a device; <see cref="Create"/>
/// builds it (allocates and fills buffers) on its device.
/// </summary>
/// <param name="Id">family/device/shape, e.g. "gemm/cpu/1024x1024x1024": what baselines and filters name.</param>
/// <param name="Target">The issue's target ratio for this case, when it has one (reported, never asserted by a test).</param>
public sealed record CaseSpec(string Id, string Family, string DeviceName, string Shape, double? Target,
                              Func<CaseSpec, Device, BenchmarkCase> Factory)
{
    /// <summary>
    /// Why BenchmarkDotNet cannot run this case in reasonable time (its reference takes tens of
    /// seconds per call), or null. The interleaved runner still measures it, with fewer rounds.
    /// </summary>
    public string? TooSlowForBenchmarkDotNet { get; init; }

    public BenchmarkCase Create() => Factory(this, Device.Get(DeviceName));
}

/// <summary>
/// Every benchmark case, on every device found here whose reference can run. To add a family (conv2d,
/// for example): write a BenchmarkCase for it in Cases/ and one loop below that yields its shapes.
/// </summary>
public static class Catalog
{
    const long K = 1024, M = 1024 * 1024;

    /// <summary>The devices benchmarked and, for each one skipped, why.</summary>
    public static (List<Device> Devices, List<string> Skipped) Devices()
    {
        var devices = new List<Device>();
        var skipped = new List<string>();
        foreach (var kind in new[] { DeviceKind.Cpu, DeviceKind.Cuda, DeviceKind.OpenCL })
        {
            var (available, reason) = Device.BackendInfo(kind);
            if (!available) { skipped.Add($"{kind}: {reason}"); continue; }
            foreach (var device in Device.All.Where(d => d.Kind == kind))
            {
                string? missing = ReferenceDevices.GemmUnavailable(kind) ?? ReferenceDevices.CopyUnavailable(kind);
                if (missing is null) devices.Add(device);
                else skipped.Add($"{device.Name}: reference unavailable: {missing}");
            }
        }
        return (devices, skipped);
    }

    public static List<CaseSpec> All()
    {
        var specs = new List<CaseSpec>();
        foreach (var device in Devices().Devices)
            specs.AddRange(For(device));
        return specs;
    }

    static IEnumerable<CaseSpec> For(Device device)
    {
        string d = device.Name;
        var kind = device.Kind;
        bool gpu = kind == DeviceKind.Cuda;
        bool cpu = kind == DeviceKind.Cpu;

        // GEMM, square: the issue's 128..4096, and 8192 on a GPU, where 4096 still leaves the largest GPUs half idle.
        foreach (long n in gpu ? new long[] { 128, 256, 512, 1024, 2048, 4096, 8192 } : new long[] { 128, 256, 512, 1024, 2048, 4096 })
        {
            var shape = new GemmShape(n, n, n);
            double? target = kind switch
            {
                DeviceKind.Cpu when n is 1024 or 2048 => 0.9,       // issue 5: >= 0.9x OpenBLAS at 1024 and 2048
                DeviceKind.Cuda when n == 4096 => 0.9,              // >= 0.9x cuBLAS SGEMM at 4096^3
                DeviceKind.OpenCL when n is 1024 or 2048 => 1.0,    // >= 1.0x CLBlast on the same device
                _ => null,
            };
            yield return new CaseSpec($"gemm/{d}/{shape}", "gemm", d, shape.ToString(), target,
                                      (s, dev) => new GemmCase(s, dev, shape))
            {
                // CLBlast on PoCL, untuned, runs 4096^3 at ~4 GFLOP/s: ~35 s per call, and BenchmarkDotNet's
                // pilot + 3 warm-up + 11 iterations went past its 10-minute limit (and ended the run).
                TooSlowForBenchmarkDotNet = kind == DeviceKind.OpenCL && n >= 4096 && device.Description.Contains("Portable Computing Language")
                    ? "CLBlast takes ~35 s per 4096^3 call on PoCL; use --interleaved for this case" : null,
            };
        }

        // GEMM, the shapes of a Dense layer's forward and backward (see MlpStepCase.StepGemms).
        foreach (long batch in new long[] { 128, 1024 })
        {
            foreach (var shape in new[]
                     {
                         new GemmShape(batch, 512, 784),                 // fc1 forward: [b, 784] x [784, 512]
                         new GemmShape(784, 512, batch, TransA: true),   // fc1 weight gradient
                         new GemmShape(batch, 512, 256, TransB: true),   // fc2 input gradient
                         new GemmShape(512, 256, batch, TransA: true),   // fc2 weight gradient
                     })
            {
                yield return new CaseSpec($"gemm-layer/{d}/{shape}", "gemm-layer", d, shape.ToString(), null,
                                          (s, dev) => new GemmCase(s, dev, shape));
            }
        }

        // Elementwise and reductions, 1K to 64M elements (256 MiB per operand).
        double? bandwidthTarget = cpu || gpu ? 0.8 : null;  // >= 0.8x copy bandwidth at large sizes (CPU, CUDA)
        foreach (long n in new[] { 1 * K, 64 * K, 1 * M, 16 * M, 64 * M })
        {
            string shape = Elements(n);
            bool large = n >= 16 * M;
            double? target = large && (cpu || n >= 64 * M) ? bandwidthTarget : null;
            yield return new CaseSpec($"relu/{d}/{shape}", "relu", d, shape, target,
                                      (s, dev) => new ElementwiseCase(s, dev, ElementwiseKind.Relu, 1, n));
            yield return new CaseSpec($"add/{d}/{shape}", "add", d, shape, target,
                                      (s, dev) => new ElementwiseCase(s, dev, ElementwiseKind.Add, 1, n));
            yield return new CaseSpec($"sum/{d}/{shape}", "sum", d, shape, target,
                                      (s, dev) => new ReduceCase(s, dev, 1, n, 1));
        }
        // tanh and column-sum also at 64M elements, where the issue's 0.8x copy-bandwidth target applies (CPU).
        foreach (long n in new[] { 1 * M, 16 * M, 64 * M })
        {
            string shape = Elements(n);
            double? target = n >= 64 * M && cpu ? bandwidthTarget : null;
            yield return new CaseSpec($"tanh/{d}/{shape}", "tanh", d, shape, target,
                                      (s, dev) => new ElementwiseCase(s, dev, ElementwiseKind.Tanh, 1, n));
            yield return new CaseSpec($"column-sum/{d}/{n / 512}x512", "column-sum", d, $"{n / 512}x512", target,
                                      (s, dev) => new ReduceCase(s, dev, 1, n / 512, 512));
            if (n >= 64 * M) continue;  // bias-add and row-sum stay at 1M and 16M
            yield return new CaseSpec($"bias-add/{d}/{n / 512}x512", "bias-add", d, $"{n / 512}x512", null,
                                      (s, dev) => new ElementwiseCase(s, dev, ElementwiseKind.BiasAdd, n / 512, 512));
            yield return new CaseSpec($"row-sum/{d}/{n / 1024}x1024", "row-sum", d, $"{n / 1024}x1024", null,
                                      (s, dev) => new ReduceCase(s, dev, n / 1024, 1024, 1));
        }

        // The Adam update (28 bytes per element) against a copy of the same bytes: the MNIST MLP's
        // 535,818 parameters (2 MB per operand: in L2/L3 on the benchmark VM) and 16M (from DRAM).
        foreach (long n in new long[] { 535818, 16 * M })
        {
            string shape = n == 535818 ? "535818" : Elements(n);
            yield return new CaseSpec($"adam/{d}/{shape}", "adam", d, $"{shape} parameters", null,
                                      (s, dev) => new AdamCase(s, dev, n));
        }

        // Softmax over rows: a classifier's logits, attention-sized rows, and 64M elements.
        foreach (var (rows, cols) in new (long, long)[] { (128, 10), (1024, 1024), (16 * K, 1024), (64 * K, 1024) })
        {
            double? target = (gpu || cpu) && rows * cols >= 64 * M ? 0.8 : null;  // CPU: issue 16
            yield return new CaseSpec($"softmax/{d}/{rows}x{cols}", "softmax", d, $"{rows}x{cols}", target,
                                      (s, dev) => new SoftmaxCase(s, dev, rows, cols));
        }

        // Convolution, forward: MNIST CNN's second layer, a ResNet 3x3 stage, a 1x1 projection.
        foreach (var (name, g) in new (string, Conv2DGeometry)[]
                 {
                     ("mnist-conv2 64x32x14x14 k3 p1 -> 64", new Conv2DGeometry(64, 32, 14, 14, 64, 3, 3, PadHeight: 1, PadWidth: 1)),
                     ("resnet 8x64x56x56 k3 p1 -> 64", new Conv2DGeometry(8, 64, 56, 56, 64, 3, 3, PadHeight: 1, PadWidth: 1)),
                     ("1x1 8x64x28x28 -> 128", new Conv2DGeometry(8, 64, 28, 28, 128, 1, 1)),
                 })
        {
            string shape = name[(name.IndexOf(' ') + 1)..];
            yield return new CaseSpec($"conv2d/{d}/{name.Split(' ')[0]}", "conv2d", d, shape, null,
                                      (s, dev) => new Conv2DCase(s, dev, g));
        }

        // One Dense + ReLU layer of the MNIST MLP, forward + backward: fused against separate ops.
        foreach (var (batch, inputs, outputs) in new (long, long, long)[] { (128, 784, 512), (128, 512, 256) })
            yield return new CaseSpec($"dense-relu/{d}/{batch}x{inputs}x{outputs}", "dense-relu", d,
                                      $"batch {batch}, {inputs} -> {outputs}, forward + backward", null,
                                      (s, dev) => new DenseLayerCase(s, dev, batch, inputs, outputs));

        // One full training step of the MNIST MLP.
        foreach (long batch in new long[] { 128 })
            yield return new CaseSpec($"mlp-step/{d}/batch{batch}", "mlp-step", d, $"784-512-256-10, batch {batch}",
                                      null, (s, dev) => new MlpStepCase(s, dev, batch));

        // One recurrent cell step, forward + backward, fused against the composed cell (issue 14's
        // benchmark shape: batch 64, 128 hidden).
        foreach (bool lstm in new[] { true, false })
        {
            string family = lstm ? "lstm-cell" : "gru-cell";
            yield return new CaseSpec($"{family}/{d}/64x128", family, d, "batch 64, hidden 128, forward + backward",
                                      null, (s, dev) => new RecurrentCellCase(s, dev, lstm, 64, 128));
        }
    }

    /// <summary>
    /// The quick regression set (scripts/ci-bench.sh): case ids, the threads they run on, and how much
    /// slower the submitted tree's library may be than the reference commit's before the A/B check
    /// calls it a regression (new time / old time - 1, median over interleaved rounds).
    /// Threads 1: every CPU side runs on one thread (KN_NUM_THREADS=1, OPENBLAS_NUM_THREADS=1, a
    /// one-thread memcpy, POCL_MAX_PTHREAD_COUNT=1) and is timed in CPU time (Engine.Threading), so
    /// load from other work on the machine mostly drops out: the stable signal for the kernels' own
    /// code. Threads 0 (every core, wall-clock time): the threaded CPU paths, which CPU time cannot
    /// judge; noisier under load, hence the wider tolerance.
    /// Tolerances: from how far new/old rose above 1 in 11 A/B runs of one unchanged tree on the
    /// shared 2-core Zen 5 VM at load average 5-13 (benchmarks/README.md, "The A/B check"): GEMM in
    /// CPU time at most 1.8% -> 5%; the CPU MLP step at most 0.7% -> 10%; relu, add, sum and softmax
    /// at most 7.7% -> 15% (other processes' memory traffic, which CPU time cannot see); PoCL at most
    /// 8.6% -> 20%; the all-threads wall-clock case at most 12.3% -> 30%. A case above its line is
    /// measured again and judged on both measurements, so one unlucky measurement does not fail it.
    /// </summary>
    public static readonly IReadOnlyList<(string Id, int Threads, double Tolerance)> QuickSet = new (string, int, double)[]
    {
        ("gemm/cpu/256x256x256", 1, 0.05),
        ("gemm/cpu/1024x1024x1024", 1, 0.05),
        ("gemm-layer/cpu/128x512x784", 1, 0.05),
        ("gemm-layer/cpu/784x512x128 TN", 1, 0.05),
        ("relu/cpu/16M", 1, 0.15),
        ("add/cpu/16M", 1, 0.15),
        ("sum/cpu/16M", 1, 0.15),
        ("softmax/cpu/16384x1024", 1, 0.15),
        ("mlp-step/cpu/batch128", 1, 0.10),
        // Issue 16's fused pieces of that step on their own: the Dense + ReLU layer (GEMM epilogue and
        // fused backward) and the one-call Adam over the MLP's 535,818 parameters.
        ("dense-relu/cpu/128x784x512", 1, 0.10),
        ("adam/cpu/535818", 1, 0.20),  // 2 MB operands in L2/L3: +10.6% for identical code at load 10
        ("gemm/opencl:0/512x512x512", 1, 0.20),
        ("add/opencl:0/16M", 1, 0.20),
        ("mlp-step/opencl:0/batch128", 1, 0.20),
        // The all-threads GEMM against OpenBLAS stays out of the quick set: in CI-like runs its ratio
        // swung from 1.05x (quiet) to 0.62x (quartiles 0.53-1.06) within minutes on an idle 2-core VM,
        // too close to any usable tolerance; the one-thread GEMM cases guard the kernel, add/cpu/16M
        // the thread pool, and the full run (scripts/bench.sh) still measures the threaded GEMM.
        ("add/cpu/16M", 0, 0.30),
    };

    /// <summary>The baseline's key of a case run on <paramref name="threads"/> threads (0: every core).</summary>
    public static string Key(string id, int threads) => threads == 0 ? id : $"{id} [{threads} thread{(threads == 1 ? "" : "s")}]";

    static string Elements(long n) => n >= M ? $"{n / M}M" : $"{n / K}K";

    /// <summary>
    /// Cases whose id matches any of the patterns ('*' matches any run of characters, e.g. "gemm/cpu/*"
    /// or "*/opencl:0/*"); all cases when there are none.
    /// </summary>
    public static List<CaseSpec> Select(IEnumerable<CaseSpec> specs, IReadOnlyList<string> patterns) =>
        patterns.Count == 0 ? specs.ToList() : specs.Where(s => patterns.Any(p => Matches(s.Id, p))).ToList();

    public static bool Matches(string id, string pattern) =>
        System.Text.RegularExpressions.Regex.IsMatch(id, "^" + string.Join(".*", pattern.Split('*').Select(System.Text.RegularExpressions.Regex.Escape)) + "$");
}
