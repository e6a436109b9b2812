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
//   dotnet run -c Release --project benchmarks/MnistTwin -- --net mlp|cnn [--batches N] [--warmup N]
// Prints one line: `kernels <net> threads=N batches=B seconds_per_epoch=S cpu_seconds_per_epoch=C` (wall
// clock and process CPU time of the measured Fit, scaled to 60000 images; with one thread the CPU time
// leaves out waiting for a core).
using System.Diagnostics;
using System.Globalization;
using Kernels;
using Kernels.Nn;

const int EpochImages = 60000;
string net = "";
int batches = 0, warmup = 5;
for (int i = 0; i + 1 < args.Length; i += 2)
{
    switch (args[i])
    {
        case "--net": net = args[i + 1]; break;
        case "--batches": batches = int.Parse(args[i + 1], CultureInfo.InvariantCulture); break;
        case "--warmup": warmup = int.Parse(args[i + 1], CultureInfo.InvariantCulture); break;
        default: Console.Error.WriteLine($"unknown option {args[i]}"); return 2;
    }
}
int batchSize = net switch { "mlp" => 128, "cnn" => 64, _ => 0 };
if (batchSize == 0) { Console.Error.WriteLine("give --net mlp or --net cnn"); return 2; }
int epochBatches = (EpochImages + batchSize - 1) / batchSize;
if (batches <= 0 || batches > epochBatches) batches = epochBatches;
string threads = Environment.GetEnvironmentVariable("KN_NUM_THREADS") is { Length: > 0 } n ? n : Environment.ProcessorCount.ToString(CultureInfo.InvariantCulture);

var device = Device.Cpu;
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
model.Fit(data, epochs: 1, batchSize: batchSize, shuffle: true, verbose: 0, seed: 7);
double wall = watch.Elapsed.TotalSeconds;
double cpu = (Process.GetCurrentProcess().TotalProcessorTime - cpuStart).TotalSeconds;
double scale = (double)EpochImages / measuredImages;
Console.WriteLine(FormattableString.Invariant(
    $"kernels {net} threads={threads} batches={batches} seconds_per_epoch={wall * scale:F3} cpu_seconds_per_epoch={cpu * scale:F3}"));
return 0;
