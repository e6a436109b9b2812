// Sequential MNIST: each 28x28 image is read row by row, as 28 time steps of 28 features, by an LSTM;
// its last hidden state classifies the digit.
//   [B, 28, 28] -> LSTM(28 -> 128) -> h_28 [B, 128] -> Dense 10
// Adam (1e-3, cosine decay over the epochs), gradients clipped to global norm 1.
// About 81 K parameters. Per image forward: 28 steps x (28 + 128) x 512 x 2 = 4.5 MFLOP of GEMM, so
// a training epoch (forward + two backward GEMMs) is ~0.8 TFLOP, in 28 small [64 x 128] x [128 x 512]
// steps per batch: latency-bound, not FLOP-bound.
//   dotnet run -c Release --project samples/SequentialMnist -- [--device cpu|opencl:0|cuda:0] [--epochs N] [--batch N] [--plot PATH]
// Prints the network's summary first; --plot writes the loss and accuracy per epoch as a PNG (default: none).
// The data is fetched once into ~/.cache/kernels/mnist (or $KERNELS_DATA/mnist). Prints the test
// accuracy last.
using System.Diagnostics;
using Kernels;
using Kernels.Nn;

if (SampleArguments.Parse(args, epochs: 10, batchSize: 64, plots: true) is not { } arguments) return 2;
var (epochs, batchSize) = (arguments.Epochs, arguments.BatchSize);
var device = Device.Get(arguments.DeviceName);
Console.WriteLine($"Device: {device}");
var (train, test) = Mnist.LoadRows(log: Console.Out);
Console.WriteLine($"Sequential MNIST: {train.Count} training and {test.Count} test images of {train.FeatureShape[0]} steps x {train.FeatureShape[1]} features");

var network = new Sequential(
    new LSTM(28, 128, seed: 1, device: device),
    new Dense(128, 10, seed: 2, device: device));
using var model = new Model(network, device) { GradientClipNorm = 1f };
model.Compile(new Adam(network.Parameters(), learningRate: 1e-3f), "sparse_categorical_crossentropy", "accuracy");

Console.WriteLine(model.Summary(28, 28));
var epochTimes = new List<double>();
var watch = new Stopwatch();
var timing = new LambdaCallback { EpochEnd = (_, _) => epochTimes.Add(watch.Elapsed.TotalSeconds) };
// Each epoch timed from its start to the end of the validation pass that Fit runs after it.
var start = new EpochStartTimer(watch);
var history = model.Fit(train, epochs: epochs, batchSize: batchSize, validationData: test, seed: 7,
                        callbacks: new Callback[] { start, new LearningRateScheduler(LearningRateSchedule.Cosine(Math.Max(1, epochs))), timing });
if (arguments.PlotPath is { } plotPath)
{
    // (--epochs 0 evaluates only: no history to draw)
    if (history.Epochs > 0) history.SavePlot(plotPath, $"Sequential MNIST (LSTM) on {device.Name}");
    Console.WriteLine(history.Epochs > 0 ? $"Plot: {plotPath}" : $"Plot: {plotPath} not written (no epoch trained)");
}
var result = model.Evaluate(test);
double perEpoch = epochTimes.Count == 0 ? 0 : epochTimes.Average();
Console.WriteLine($"Time per epoch (training + validation pass): {string.Join(", ", epochTimes.Select(t => $"{t:F0} s"))}");
Console.WriteLine($"Test accuracy {result["accuracy"] * 100:F2}%  loss {result["loss"]:F4}  ({perEpoch:F0} s/epoch on {device.Name}, {epochs} epochs)");
return 0;

/// <summary>Restarts the stopwatch at each epoch's start.</summary>
internal sealed class EpochStartTimer(Stopwatch watch) : Callback
{
    public override void OnEpochBegin(int epoch) => watch.Restart();
}
