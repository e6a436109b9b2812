using System.Diagnostics;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using NUnit.Framework;

namespace Kernels.Nn.Tests;

/// <summary>
/// The samples' check of ONNX export (issue 15): the MNIST samples' MLP and CNN (samples/Common/MnistNetworks.cs,
/// the definitions the samples train), trained briefly here on the CPU, exported, and run by ONNX Runtime on
/// the whole MNIST test set: all 10,000 arg-max predictions must agree with the library's, and every logit
/// within 1e-4 (absolute below 1, relative above). The data is fetched into the MNIST cache on first use
/// (as the samples do); where it cannot be fetched the test is skipped naming why.
/// </summary>
[TestFixture]
public sealed class OnnxMnistTests
{
    private const double LogitTolerance = 1e-4;

    // The MLP trains one whole epoch (469 steps, ~3 s here); the CNN 300 steps (19,200 images, ~8 s).
    [TestCase("mlp", 469, 128)]
    [TestCase("cnn", 300, 64)]
    public void A_trained_sample_network_predicts_the_mnist_test_set_as_onnx_runtime_does(string network, int steps, int batchSize)
    {
        ArrayDataset train, test;
        try
        {
            (train, test) = Mnist.Load();
        }
        catch (Exception e) when (e is IOException or InvalidOperationException or InvalidDataException or UnauthorizedAccessException)
        {
            Assert.Ignore($"MNIST is not in {Mnist.DefaultDirectory} and could not be fetched: {e.Message}");
            return;
        }
        var device = Device.Cpu;
        using var scope = new DisposeScope();
        using var model = new Model(network == "mlp" ? MnistNetworks.Mlp(device) : MnistNetworks.Cnn(device), device);
        model.Compile(new Adam(model.Network.Parameters(), learningRate: 1e-3f), "sparse_categorical_crossentropy", "accuracy");
        var watch = Stopwatch.StartNew();
        model.Fit(train.Subset(Enumerable.Range(0, Math.Min(steps * batchSize, train.Count)).ToArray()), epochs: 1, batchSize: batchSize, verbose: 0, seed: 7);
        double trainSeconds = watch.Elapsed.TotalSeconds;

        var ours = model.Predict(test).ToArray();
        var path = Path.Combine(Path.GetTempPath(), $"kn-mnist-{network}-{Guid.NewGuid():N}.onnx");
        try
        {
            model.ExportOnnx(path, new long[] { 784 });
            OnnxTestSupport.Check(path);
            watch.Restart();
            var theirs = RunInChunks(path, test, chunk: 1000);
            double ortSeconds = watch.Elapsed.TotalSeconds;

            var labels = new long[test.Count];
            var features = new float[784];
            for (int i = 0; i < test.Count; i++) test.Get(i, features, labels.AsSpan(i, 1));
            int agree = 0, correct = 0;
            for (int i = 0; i < test.Count; i++)
            {
                int a = ArgMax(ours.AsSpan(i * 10, 10)), b = ArgMax(theirs.AsSpan(i * 10, 10));
                if (a == b) agree++;
                if (a == labels[i]) correct++;
            }
            double error = OnnxTestSupport.AssertClose(ours, new long[] { test.Count, 10 }, theirs, new long[] { test.Count, 10 }, LogitTolerance, $"{network} logits");
            TestContext.Out.WriteLine($"{network}: {steps} steps of {batchSize} in {trainSeconds:F1} s, test accuracy {100.0 * correct / test.Count:F2}%, " +
                                      $"ONNX Runtime {ortSeconds:F1} s for {test.Count} images, arg-max agreement {agree}/{test.Count}, max logit error {error:E2}");
            Assert.That(agree, Is.EqualTo(test.Count), $"{network}: images whose predicted class differs between the library and ONNX Runtime");
            // The check is about a trained network, not an untrained one whose logits are all near zero.
            Assert.That((double)correct / test.Count, Is.GreaterThan(0.9), $"{network}: test accuracy after {steps} steps");
        }
        finally
        {
            File.Delete(path);
        }
    }

    private static float[] RunInChunks(string path, Dataset data, int chunk)
    {
        using var session = new InferenceSession(path);
        var result = new float[data.Count * 10];
        var label = new long[1];
        for (int start = 0; start < data.Count; start += chunk)
        {
            int n = Math.Min(chunk, data.Count - start);
            var input = new float[n * 784];
            for (int i = 0; i < n; i++) data.Get(start + i, input.AsSpan(i * 784, 784), label);
            using var outputs = session.Run(new[] { NamedOnnxValue.CreateFromTensor("input", new DenseTensor<float>(input, new[] { n, 784 })) });
            outputs.First().AsTensor<float>().ToArray().CopyTo(result, start * 10);
        }
        return result;
    }

    private static int ArgMax(ReadOnlySpan<float> values)
    {
        int best = 0;
        for (int i = 1; i < values.Length; i++) if (values[i] > values[best]) best = i;
        return best;
    }
}
