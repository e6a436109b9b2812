// The first thing a newcomer runs: which devices does libkernels see, and does a matrix multiply on
// each give the right answer, how fast? C = A * B with n x n float32 matrices; each device's result
// is checked against a float64 reference on sampled entries, then timed (median of several runs).
using System.Diagnostics;
using Kernels;

int n = args.Length > 0 && int.TryParse(args[0], out var size) && size > 0 ? size : 1024;

Console.WriteLine("Backends:");
foreach (var kind in new[] { DeviceKind.Cpu, DeviceKind.Cuda, DeviceKind.OpenCL })
{
    var (available, reason) = Device.BackendInfo(kind);
    Console.WriteLine($"  {kind,-7} {(available ? "available" : "absent: " + reason)}");
}
Console.WriteLine("Devices:");
foreach (var device in Device.All)
{
    var (major, minor) = device.Capability;
    Console.WriteLine($"  {device.Name,-10} {device.Description}  ({device.TotalMemory / (1L << 20)} MiB, capability {major}.{minor})");
}

var random = new Random(42);
var a = new float[n * n];
var b = new float[n * n];
for (int i = 0; i < a.Length; i++) a[i] = (float)(random.NextDouble() * 2 - 1);
for (int i = 0; i < b.Length; i++) b[i] = (float)(random.NextDouble() * 2 - 1);

// Sampled float64 reference: 64 entries of C, each a full dot product in double.
var samples = Enumerable.Range(0, 64).Select(_ => (Row: random.Next(n), Col: random.Next(n))).ToArray();
double[] reference = samples.Select(s =>
{
    double sum = 0;
    for (int p = 0; p < n; p++) sum += (double)a[s.Row * n + p] * b[p * n + s.Col];
    return sum;
}).ToArray();

Console.WriteLine($"\nSGEMM {n}x{n}x{n} (C = A * B), checked on {samples.Length} entries against float64:");
bool allCorrect = true;
foreach (var device in Device.All)
{
    using var da = DeviceBuffer.FromArray(device, a);
    using var db = DeviceBuffer.FromArray(device, b);
    using var dc = DeviceBuffer.Allocate(device, 4L * n * n);

    Ops.MatMul(da, db, dc, n, n, n);  // warm-up: OpenCL builds its program, caches fill
    var c = dc.ToArray();
    // float32 accumulation over n products of values in [-1, 1]: error grows ~ sqrt(n) * eps * n.
    double tolerance = 1e-5 * n;
    double maxError = samples.Select((s, i) => Math.Abs(c[s.Row * n + s.Col] - reference[i])).Max();
    bool correct = maxError <= tolerance;
    allCorrect &= correct;

    var times = new List<double>();
    var watch = new Stopwatch();
    for (int repeat = 0; repeat < 5; repeat++)
    {
        watch.Restart();
        Ops.MatMul(da, db, dc, n, n, n);
        device.Synchronize();
        times.Add(watch.Elapsed.TotalSeconds);
    }
    times.Sort();
    double gflops = 2.0 * n * n * n / times[times.Count / 2] / 1e9;
    Console.WriteLine($"  {device.Name,-10} {gflops,8:F1} GFLOP/s   max |error| {maxError:E2} (tolerance {tolerance:E1}) {(correct ? "OK" : "WRONG")}");
}
return allCorrect ? 0 : 1;
