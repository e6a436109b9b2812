using System.Diagnostics;
using NUnit.Framework;

namespace Kernels.Nn.Tests;

/// <summary>
/// The safetensors check that no one here wrote the other side of: tests/fixtures/safetensors/torch_safetensors.py
/// (PyTorch, with the format written and read from its description by struct + json) exports the state_dict of
/// the PyTorch twin of samples/MnistCnn (and samples/MnistMlp) with the logits of a fixed batch; it loads here into
/// the same architecture built in C#, which must predict the same classes with logits within 1e-4. Then ours
/// (a state dict, and a whole-model file) load in the script with PyTorch's strict load_state_dict and give our
/// logits there. Needs /usr/bin/python3 with torch (python3-torch; CI installs it with python3-torchvision);
/// skipped naming the package otherwise.
/// </summary>
[TestFixture]
public class TorchStateDictTests
{
    private string dir = "";

    [SetUp]
    public void MakeDirectory() => dir = Directory.CreateTempSubdirectory("kernels-torch-").FullName;

    [TearDown]
    public void RemoveDirectory()
    {
        try { Directory.Delete(dir, recursive: true); } catch (IOException) { }
    }

    private static readonly string Script = Path.Combine(AppContext.BaseDirectory, "fixtures", "safetensors", "torch_safetensors.py");

    private static (int ExitCode, string Output) Python(params string[] arguments)
    {
        var start = new ProcessStartInfo("/usr/bin/python3") { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in arguments) start.ArgumentList.Add(a);
        using var process = Process.Start(start)!;
        var stderr = process.StandardError.ReadToEndAsync();
        var stdout = process.StandardOutput.ReadToEnd();
        process.WaitForExit();
        return (process.ExitCode, stdout + stderr.Result);
    }

    private static void RequireTorch()
    {
        if (!File.Exists("/usr/bin/python3")) Assert.Ignore("/usr/bin/python3 is not installed (apt-get install python3-torch)");
        var (code, output) = Python("-c", "import torch");
        if (code != 0) Assert.Ignore($"python3-torch is not installed (apt-get install python3-torch): {output.Trim().Split('\n')[^1]}");
    }

    /// <summary>The samples' own networks (samples/Common/MnistNetworks.cs).</summary>
    private static Sequential Network(string kind) => kind == "cnn" ? MnistNetworks.Cnn(Device.Cpu) : MnistNetworks.Mlp(Device.Cpu);

    private static int[] ArgMax(float[] logits, int classes) =>
        Enumerable.Range(0, logits.Length / classes).Select(r => Array.IndexOf(logits, logits.Skip(r * classes).Take(classes).Max(), r * classes) - r * classes).ToArray();

    [TestCase("cnn")]
    [TestCase("mlp")]
    public void A_PyTorch_state_dict_loads_here_and_predicts_the_same(string kind)
    {
        RequireTorch();
        string weights = Path.Combine(dir, "torch.safetensors"), io = Path.Combine(dir, "torch-io.safetensors");
        var (code, output) = Python(Script, "export", kind, weights, io);
        TestContext.Out.WriteLine(output);
        Assert.That(code, Is.EqualTo(0), output);
        using var network = Network(kind);
        network.LoadStateDict(weights);   // strict: every name and shape of the twin's state_dict
        network.Eval();
        using var file = SafeTensors.Read(io);
        using var x = file.ReadTensor("input");
        using var expected = file.ReadTensor("logits");
        using var y = network.Forward(x);
        var ours = y.ToArray();
        var theirs = expected.ToArray();
        double largest = ours.Zip(theirs, (a, b) => (double)Math.Abs(a - b)).Max();
        TestContext.Out.WriteLine($"{kind}: largest logit difference from PyTorch {largest:G3}");
        Assert.That(ArgMax(ours, 10), Is.EqualTo(ArgMax(theirs, 10)), "the same classes");
        Assert.That(largest, Is.LessThanOrEqualTo(1e-4));
    }

    [TestCase("cnn")]
    [TestCase("mlp")]
    public void Our_state_dict_and_model_file_load_strictly_in_PyTorch_and_predict_the_same(string kind)
    {
        RequireTorch();
        using var network = Network(kind);
        var shape = new long[] { 16, 784 };   // both samples take flat images
        using var x = Tensor.Uniform(shape, 0, 1, 17);
        using (var y = network.Forward(x)) { }   // training mode: moves the batch-norm statistics
        network.Eval();
        using var logits = network.Forward(x);
        string weights = Path.Combine(dir, "ours.safetensors"), model = Path.Combine(dir, "ours-model.safetensors"), io = Path.Combine(dir, "ours-io.safetensors");
        network.SaveStateDict(weights);
        network.Save(model);
        SafeTensors.Save(io, new[] { ("input", x), ("logits", logits) });
        foreach (var file in new[] { weights, model })
        {
            var (code, output) = Python(Script, "check", kind, file, io);
            TestContext.Out.WriteLine(output);
            Assert.That(code, Is.EqualTo(0), output);
        }
    }
}
