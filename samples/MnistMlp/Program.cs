// MNIST with a multi-layer perceptron: 784 -> 512 -> 256 -> 10, ReLU, dropout, Adam.
//   dotnet run --project samples/MnistMlp -c Release -- [--device cpu|opencl:0|cuda:0] [--epochs N] [--batch N] [--plot PATH] [--export-onnx PATH]
// Prints the network's summary first; --plot writes the loss and accuracy per epoch as a PNG (default: none);
// --export-onnx writes the trained network as an ONNX model.
// The last line printed is the test accuracy.
// The data is fetched once into ~/.cache/kernels/mnist (or $KERNELS_DATA/mnist).
using System.Diagnostics;
using Kernels;
using Kernels.Nn;

if (SampleArguments.Parse(args, epochs: 5, batchSize: 128, plots: true, exportsOnnx: true) is not { } arguments) return 2;
var (epochs, batchSize) = (arguments.Epochs, arguments.BatchSize);
var device = Device.Get(arguments.DeviceName);
Console.WriteLine($"Device: {device}");
var (train, test) = Mnist.Load(log: Console.Out);
Console.WriteLine($"MNIST: {train.Count} training and {test.Count} test images");

var network = MnistNetworks.Mlp(device);
using var model = new Model(network, device);
// MNIST's loader yields int64 labels: the loss and the accuracy read them on the device (no per-batch host copy).
model.Compile(new Adam(network.Parameters(), learningRate: 1e-3f), "sparse_categorical_crossentropy", "accuracy");

Console.WriteLine(model.Summary(784));
var watch = Stopwatch.StartNew();
var history = model.Fit(train, epochs: epochs, batchSize: batchSize, validationData: test, seed: 7);
double perEpoch = watch.Elapsed.TotalSeconds / Math.Max(1, epochs);
if (arguments.PlotPath is { } plotPath)
{
    // (--epochs 0 evaluates only: no history to draw)
    if (history.Epochs > 0) history.SavePlot(plotPath, $"MNIST MLP on {device.Name}");
    Console.WriteLine(history.Epochs > 0 ? $"Plot: {plotPath}" : $"Plot: {plotPath} not written (no epoch trained)");
}
if (arguments.ExportOnnx is { } onnxPath)
{
    Onnx.Export(network, onnxPath, sampleShape: new long[] { 784 });
    Console.WriteLine($"Exported to {onnxPath} (ONNX opset {Onnx.ExportOpset}; input \"input\" [N, 784], output \"output\" [N, 10] logits)");
}
var result = model.Evaluate(test);
Console.WriteLine($"Test accuracy {result["accuracy"] * 100:F2}%  loss {result["loss"]:F4}  ({perEpoch:F1} s/epoch on {device.Name})");
return 0;
