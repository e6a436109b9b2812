using NUnit.Framework;

namespace Kernels.Nn.Tests;

/// <summary>
/// The model formats together, each path a user takes between them: a network built here, saved as one
/// model file, loaded, exported to ONNX and imported again; and models PyTorch exported to ONNX, imported,
/// saved as model files and loaded. Every hop must keep the outputs: the same values (bit for bit where
/// no format converts anything, within float rounding after ONNX's re-association of a fused layer).
/// </summary>
[TestFixture]
public class ModelExchangeTests
{
    private string dir = "";

    [SetUp]
    public void MakeDirectory() => dir = Directory.CreateTempSubdirectory("kernels-exchange-").FullName;

    [TearDown]
    public void RemoveDirectory()
    {
        if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
    }

    private static float[] Outputs(Module model, float[] input, long[] shape, Device device)
    {
        model.Eval();
        using var scope = new DisposeScope();
        using var noGrad = Tensor.NoGrad();
        var x = Tensor.FromArray(input, shape, device);
        return model.Forward(x).ToArray();
    }

    private static float[] RandomInput(long[] shape, int seed)
    {
        var random = new Random(seed);
        return Enumerable.Range(0, (int)shape.Aggregate(1L, (a, b) => a * b)).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray();
    }

    /// <summary>A residual CNN with every kind of state: convolution, batch normalization (running statistics
    /// moved by a training step), a shared-free residual add, pooling, Dense.</summary>
    private static Functional ResidualCnn(Device device)
    {
        var x = Symbolic.Input(3, 9, 9);
        var stem = Activation.Relu().Call(new BatchNorm2D(8, device: device).Call(new Conv2D(3, 8, new Size2(3, 3), padding: new Size2(1, 1), seed: 1, device: device).Call(x)));
        var branch = new BatchNorm2D(8, device: device).Call(new Conv2D(8, 8, new Size2(3, 3), padding: new Size2(1, 1), seed: 2, device: device).Call(stem));
        var merged = Activation.Relu().Call(stem + branch);
        var pooled = new Flatten().Call(new GlobalAvgPool2D().Call(new MaxPool2D(new Size2(2, 2)).Call(merged)));
        return new Functional(x, new Dense(8, 5, seed: 3, device: device).Call(pooled));
    }

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.All))]
    public void Built_here_saved_loaded_exported_and_imported_gives_the_same_outputs(string deviceName, DeviceKind kind, string requireVariable)
    {
        var device = TestDevices.Require(deviceName, kind, requireVariable);
        var shape = new long[] { 4, 3, 9, 9 };
        var input = RandomInput(shape, 5);
        using var original = ResidualCnn(device);
        // One training step, so the running statistics are not their initial 0 and 1.
        using (var scope = new DisposeScope())
        {
            original.Train();
            var loss = original.Forward(Tensor.FromArray(input, shape, device)).Square().Mean();
            loss.Backward();
        }
        var expected = Outputs(original, input, shape, device);

        var file = Path.Combine(dir, "net.safetensors");
        original.Save(file);
        using var loaded = Module.Load(file, device);
        Assert.That(Outputs(loaded, input, shape, device), Is.EqualTo(expected), "model file: bit for bit");

        var onnx = Path.Combine(dir, "net.onnx");
        Onnx.Export(loaded, onnx);
        using var imported = Onnx.Import(onnx, device);
        Assert.That(imported.ParameterCount, Is.EqualTo(original.ParameterCount));
        Assert.That(Outputs(imported, input, shape, device), Is.EqualTo(expected).Within(1e-5f), "ONNX export then import");

        // And the imported model is a model like any other: it saves and loads as one file.
        var again = Path.Combine(dir, "imported.safetensors");
        imported.Save(again);
        using var reloaded = Module.Load(again, device);
        Assert.That(Outputs(reloaded, input, shape, device), Is.EqualTo(Outputs(imported, input, shape, device)), "imported, saved, loaded: bit for bit");
    }

    [TestCase("small_cnn_bn", new long[] { 2, 3, 12, 12 })]
    [TestCase("lstm_gru", new long[] { 3, 6, 5 })]
    public void A_PyTorch_export_imported_here_saves_and_loads_as_a_model_file(string fixture, long[] shape)
    {
        var path = OnnxImportTests.Fixture(fixture);
        var input = RandomInput(shape, 9);
        using var imported = Onnx.Import(path);
        var expected = Outputs(imported, input, shape, Device.Cpu);
        var file = Path.Combine(dir, fixture + ".safetensors");
        imported.Save(file);
        using var loaded = (Functional)Module.Load(file);
        Assert.That(loaded.NamedState().Select(s => s.Name), Is.EqualTo(imported.NamedState().Select(s => s.Name)));
        Assert.That(Outputs(loaded, input, shape, Device.Cpu), Is.EqualTo(expected), $"{fixture}: PyTorch -> ONNX -> here -> model file -> here, bit for bit");
        // The spec inside the file is readable JSON naming the layers PyTorch's graph became.
        using var read = SafeTensors.Read(file);
        var spec = read.Metadata[ModelFile.SpecKey];
        foreach (var layer in loaded.Nodes.Select(n => n.Layer).OfType<Module>().Select(l => l.GetType().Name).Distinct())
            Assert.That(spec, Does.Contain($"\"{layer}\""), "the architecture travels in the metadata");
    }
}
