// Kernels' side of the MNIST epochs against PyTorch: the twin of benchmarks/torch/mnist_twin.py. It
// trains the samples' own networks (samples/Common/MnistNetworks.cs) through the samples' own code path,
// Model.Compile(Adam 1e-3, "sparse_categorical_crossentropy", "accuracy") and Model.Fit(shuffle, seed 7,
// verbose 0), on random pixels in [0, 1) and random labels shaped like MNIST (flat [N, 784] float32
// images, int64 labels: what Mnist.Load gives; the time does not depend on the values).
//   mlp  samples/MnistMlp: 784-512-256-10, ReLU, dropout 0.2, batch 128 (469 batches per 60000-image epoch)
//   cnn  samples/MnistCnn: two conv 3x3 + batch norm + ReLU + max pool, dense 128, dropout 0.25, batch 64
//        (938 batches per epoch). The sample's cosine learning-rate schedule changes the rate once per
//        epoch, so it is left out (as on the PyTorch side).
// A warm-up Fit of --warmup batches (JIT, allocator) precedes the measured Fit of --batches batches
// (0: a whole 60000-image epoch); the measured figures are scaled to a whole epoch. The validation pass
// of the samples is not included (training only, on both sides).
// Threads: KN_NUM_THREADS, read by libkernels at start (the script sets it).
//   dotnet run -c Release --project benchmarks/MnistTwin -- --net mlp|cnn [--batches N] [--warmup N] [--device cpu|opencl:0|cuda:0]
//   dotnet run -c Release --project benchmarks/MnistTwin -- --gemms [--repeats N]
// --gemms times, alone, each of the eight GEMMs of the MLP's training step at its shape and with the
// transposes src/Nn uses (forward x W; dX = g W^T; dW = X^T g; the first layer's dX is not computed):
// median of --repeats calls (default 200) after 20 warm-up calls, in ms per call and s per 469-batch
// epoch, so a profile's GEMM share can be split by shape.
// Prints one line: `kernels <net> threads=N batches=B seconds_per_epoch=S cpu_seconds_per_epoch=C` (wall
// clock and process CPU time of the measured Fit, scaled to 60000 images; with one thread the CPU time
// leaves out waiting for a core).
using System.Diagnostics;
using System.Globalization;
using Kernels;
using Kernels.Nn;

const int EpochImages = 60000;
string net = "", deviceName = "cpu";
int batches = 0, warmup = 5, repeats = 200;
if (args.Length > 0 && args[0] == "--gemms")
{
    if (args.Length == 3 && args[1] == "--repeats") repeats = int.Parse(args[2], CultureInfo.InvariantCulture);
    return TimeGemms(repeats);
}
for (int i = 0; i + 1 < args.Length; i += 2)
{
    switch (args[i])
    {
        case "--net": net = args[i + 1]; break;
        case "--batches": batches = int.Parse(args[i + 1], CultureInfo.InvariantCulture); break;
        case "--warmup": warmup = int.Parse(args[i + 1], CultureInfo.InvariantCulture); break;
        case "--device": deviceName = args[i + 1]; break;
        default: Console.Error.WriteLine($"unknown option {args[i]}"); return 2;
    }
}
int batchSize = net switch { "mlp" => 128, "cnn" => 64, _ => 0 };
if (batchSize == 0) { Console.Error.WriteLine("give --net mlp or --net cnn"); return 2; }
int epochBatches = (EpochImages + batchSize - 1) / batchSize;
if (batches <= 0 || batches > epochBatches) batches = epochBatches;
string threads = Environment.GetEnvironmentVariable("KN_NUM_THREADS") is { Length: > 0 } n ? n : Environment.ProcessorCount.ToString(CultureInfo.InvariantCulture);

var device = Device.Get(deviceName);
var network = net == "mlp" ? MnistNetworks.Mlp(device) : MnistNetworks.Cnn(device);
using var model = new Model(network, device);
model.Compile(new Adam(network.Parameters(), learningRate: 1e-3f), "sparse_categorical_crossentropy", "accuracy");

var random = new Random(1);
ArrayDataset Images(int count)
{
    var pixels = new float[count * 784];
    for (int i = 0; i < pixels.Length; i++) pixels[i] = (float)random.NextDouble();
    var labels = new long[count];
    for (int i = 0; i < count; i++) labels[i] = random.Next(10);
    return new ArrayDataset(pixels, new long[] { 784 }, labels);
}
// The last batch of a whole epoch is partial (60000 = 468 x 128 + 96), as in the sample.
int measuredImages = batches == epochBatches ? EpochImages : batches * batchSize;
var warmupData = Images(warmup * batchSize);
var data = Images(measuredImages);

model.Fit(warmupData, epochs: 1, batchSize: batchSize, shuffle: true, verbose: 0, seed: 7);
var cpuStart = Process.GetCurrentProcess().TotalProcessorTime;
var watch = Stopwatch.StartNew();
long startTicks = Stopwatch.GetTimestamp();
model.Fit(data, epochs: 1, batchSize: batchSize, shuffle: true, verbose: 0, seed: 7);
double wall = watch.Elapsed.TotalSeconds;
// For a profiler: the measured Fit's start and end on CLOCK_MONOTONIC (Stopwatch's clock on Linux),
// e.g. `perf record -k CLOCK_MONOTONIC ...` then `perf report --time START,END`.
if (Environment.GetEnvironmentVariable("MNIST_TWIN_MARKS") == "1")
    Console.Error.WriteLine(FormattableString.Invariant(
        $"measured Fit: {(double)startTicks / Stopwatch.Frequency:F6},{(double)Stopwatch.GetTimestamp() / Stopwatch.Frequency:F6}"));
double cpu = (Process.GetCurrentProcess().TotalProcessorTime - cpuStart).TotalSeconds;
double scale = (double)EpochImages / measuredImages;
Console.WriteLine(FormattableString.Invariant(
    $"kernels {net} device={device.Name} threads={threads} batches={batches} seconds_per_epoch={wall * scale:F3} cpu_seconds_per_epoch={cpu * scale:F3}"));
return 0;

static int TimeGemms(int repeats)
{
    const int Batch = 128, EpochBatches = 469;
    var layers = new (long In, long Out)[] { (784, 512), (512, 256), (256, 10) };
    var device = Device.Cpu;
    string threads = Environment.GetEnvironmentVariable("KN_NUM_THREADS") ?? "all";
    double total = 0;
    Console.WriteLine($"GEMMs of one MLP step, batch {Batch}, KN_NUM_THREADS={threads}: ms per call (median of {repeats}), s per {EpochBatches}-batch epoch");
    for (int l = 0; l < layers.Length; l++)
    {
        var (k, n) = layers[l];
        using var x = DeviceBuffer.FromArray(device, Filled(Batch * k));
        using var w = DeviceBuffer.FromArray(device, Filled(k * n));
        using var g = DeviceBuffer.FromArray(device, Filled(Batch * n));
        using var y = DeviceBuffer.Allocate(device, 4L * Batch * n);
        using var dx = DeviceBuffer.Allocate(device, 4L * Batch * k);
        using var dw = DeviceBuffer.Allocate(device, 4L * k * n);
        var cases = new List<(string Name, Action Call)>
        {
            ($"forward  y = x W     [{Batch}x{k}] x [{k}x{n}]  (NN, m={Batch} n={n} k={k})",
             () => Ops.Gemm(Transpose.NoTranspose, Transpose.NoTranspose, Batch, n, k, 1f, x, k, w, n, 0f, y, n)),
            ($"backward dW = x^T g  [{k}x{Batch}] x [{Batch}x{n}]  (TN, m={k} n={n} k={Batch})",
             () => Ops.Gemm(Transpose.Transpose, Transpose.NoTranspose, k, n, Batch, 1f, x, k, g, n, 0f, dw, n)),
        };
        if (l > 0)
            cases.Add(($"backward dX = g W^T  [{Batch}x{n}] x [{n}x{k}]  (NT, m={Batch} n={k} k={n})",
                       () => Ops.Gemm(Transpose.NoTranspose, Transpose.Transpose, Batch, k, n, 1f, g, n, w, n, 0f, dx, k)));
        foreach (var (name, call) in cases)
        {
            for (int i = 0; i < 20; i++) call();
            var times = new List<double>();
            for (int i = 0; i < repeats; i++)
            {
                var watch = Stopwatch.StartNew();
                call();
                times.Add(watch.Elapsed.TotalMilliseconds);
            }
            times.Sort();
            double ms = times[times.Count / 2];
            total += ms;
            Console.WriteLine(FormattableString.Invariant($"  {name,-62} {ms,8:F4} ms  {ms * EpochBatches / 1000,7:F3} s/epoch"));
        }
    }
    Console.WriteLine(FormattableString.Invariant($"  {"all eight",-62} {total,8:F4} ms  {total * EpochBatches / 1000,7:F3} s/epoch"));
    return 0;

    static float[] Filled(long count)
    {
        var random = new Random(3);
        var values = new float[count];
        for (int i = 0; i < values.Length; i++) values[i] = (float)random.NextDouble() - 0.5f;
        return values;
    }
}
