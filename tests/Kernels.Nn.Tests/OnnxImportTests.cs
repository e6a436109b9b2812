using System.Diagnostics;
using Google.Protobuf;
using Kernels.Nn.OnnxProto;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using NUnit.Framework;

namespace Kernels.Nn.Tests;

/// <summary>
/// ONNX import (<see cref="Onnx.Import(string, Device?)"/>) checked against ONNX Runtime, which no one
/// here wrote: small graphs built node by node (one per supported op and attribute), files exported by
/// PyTorch (torchvision's ResNet-18 and a small CNN with its BatchNormalization nodes kept, written by
/// tests/fixtures/onnx/make_resnet18.py), fine-tuning after import, and every refusal and malformed file
/// with its message.
/// </summary>
[TestFixture]
public class OnnxImportTests
{
    // ---- Building graphs by hand --------------------------------------------------------------------

    /// <summary>A one-input, one-output ONNX graph under construction (opset 17, batch axis "N").</summary>
    internal sealed class GraphBuilder
    {
        private int next;
        public readonly ModelProto Model;
        public GraphProto Graph => Model.Graph;

        public GraphBuilder(long[] sampleShape, TensorProto.Types.DataType type = TensorProto.Types.DataType.Float, long opset = 17)
        {
            Model = new ModelProto { IrVersion = 8, ProducerName = "OnnxImportTests", Graph = new GraphProto { Name = "g" } };
            Model.OpsetImport.Add(new OperatorSetIdProto { Domain = "", Version = opset });
            Graph.Input.Add(Info("x", type, sampleShape));
        }

        public static ValueInfoProto Info(string name, TensorProto.Types.DataType type, long[] sampleShape)
        {
            var shape = new TensorShapeProto();
            shape.Dim.Add(new TensorShapeProto.Types.Dimension { DimParam = "N" });
            foreach (var d in sampleShape) shape.Dim.Add(new TensorShapeProto.Types.Dimension { DimValue = d });
            return new ValueInfoProto { Name = name, Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = (int)type, Shape = shape } } };
        }

        public string Weights(string name, long[] dims, int seed, float scale = 0.5f)
        {
            var rng = new Random(seed);
            long count = dims.Aggregate(1L, (a, b) => a * b);
            var values = Enumerable.Range(0, (int)count).Select(_ => (float)(rng.NextDouble() * 2 - 1) * scale).ToArray();
            return Floats(name, values, dims);
        }

        public string Floats(string name, float[] values, params long[] dims)
        {
            var t = new TensorProto { Name = name, DataType = (int)TensorProto.Types.DataType.Float };
            t.Dims.AddRange(dims);
            t.RawData = ByteString.CopyFrom(values.SelectMany(BitConverter.GetBytes).ToArray());
            Graph.Initializer.Add(t);
            return name;
        }

        public string Int64s(string name, long[] values, params long[] dims)
        {
            var t = new TensorProto { Name = name, DataType = (int)TensorProto.Types.DataType.Int64 };
            t.Dims.AddRange(dims);
            t.Int64Data.AddRange(values);   // the typed field (not raw_data), so both forms are read
            Graph.Initializer.Add(t);
            return name;
        }

        public NodeProto Node(string op, string[] inputs, params AttributeProto[] attributes)
        {
            var node = new NodeProto { OpType = op, Name = $"{op.ToLowerInvariant()}{next}" };
            node.Input.AddRange(inputs);
            node.Output.Add($"v{next++}");
            node.Attribute.AddRange(attributes);
            Graph.Node.Add(node);
            return node;
        }

        public string Op(string op, string[] inputs, params AttributeProto[] attributes) => Node(op, inputs, attributes).Output[0];

        public byte[] Build(string output)
        {
            Graph.Output.Clear();
            Graph.Output.Add(new ValueInfoProto { Name = output });
            return Model.ToByteArray();
        }
    }

    internal static AttributeProto Attr(string name, long value) => new() { Name = name, Type = AttributeProto.Types.AttributeType.Int, I = value };
    internal static AttributeProto Attr(string name, float value) => new() { Name = name, Type = AttributeProto.Types.AttributeType.Float, F = value };
    internal static AttributeProto Attr(string name, string value) => new() { Name = name, Type = AttributeProto.Types.AttributeType.String, S = ByteString.CopyFromUtf8(value) };
    internal static AttributeProto Attr(string name, params long[] values)
    {
        var a = new AttributeProto { Name = name, Type = AttributeProto.Types.AttributeType.Ints };
        a.Ints.AddRange(values);
        return a;
    }

    private static float[] RandomInput(long count, int seed)
    {
        var rng = new Random(seed);
        return Enumerable.Range(0, (int)count).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();
    }

    // ---- The two sides ------------------------------------------------------------------------------

    /// <summary>
    /// An ONNX Runtime session with its graph optimizations off, so it runs each node as the operator set
    /// defines it: ORT 1.20.1's Pad + AveragePool fusion drops the padded zeros from the average (measured
    /// here: a corner output equal to the corner input alone instead of a quarter of it; microsoft/onnxruntime
    /// issue 22177, fixed by pull request 23190 after 1.20.1), and a reference must not rewrite the graph it checks.
    /// </summary>
    private static InferenceSession Reference(byte[] model) => new(model, new SessionOptions { GraphOptimizationLevel = GraphOptimizationLevel.ORT_DISABLE_ALL });

    private static InferenceSession Reference(string path) => new(path, new SessionOptions { GraphOptimizationLevel = GraphOptimizationLevel.ORT_DISABLE_ALL });

    private static (float[] Values, long[] Shape) RunOrt(InferenceSession session, float[] input, long[] shape)
    {
        var tensor = new DenseTensor<float>(input, shape.Select(d => checked((int)d)).ToArray());
        using var results = session.Run(new[] { NamedOnnxValue.CreateFromTensor(session.InputMetadata.Keys.First(), tensor) });
        var output = results.First().AsTensor<float>();
        return (output.ToArray(), output.Dimensions.ToArray().Select(d => (long)d).ToArray());
    }

    private static (float[] Values, long[] Shape) RunOurs(Module model, float[] input, long[] shape, Device device)
    {
        using var scope = new DisposeScope();
        using var noGrad = Tensor.NoGrad();
        var x = Tensor.FromArray(input, shape, device);
        var y = model.Forward(x);
        return (y.ToArray(), y.ShapeArray.ToArray());
    }

    /// <summary>Largest |ours - theirs|, after checking the shapes agree.</summary>
    private static double MaxAbsDiff((float[] Values, long[] Shape) ours, (float[] Values, long[] Shape) theirs, string what)
    {
        Assert.That(ours.Shape, Is.EqualTo(theirs.Shape), $"{what}: output shape (ours vs ONNX Runtime)");
        double worst = 0;
        for (int i = 0; i < ours.Values.Length; i++)
        {
            double d = Math.Abs((double)ours.Values[i] - theirs.Values[i]);
            if (double.IsNaN(d)) d = double.PositiveInfinity;
            worst = Math.Max(worst, d);
        }
        return worst;
    }

    private static double CompareWithOrt(byte[] model, long[] inputShape, Device device, int seed = 7)
    {
        var input = RandomInput(inputShape.Aggregate(1L, (a, b) => a * b), seed);
        using var session = Reference(model);
        var theirs = RunOrt(session, input, inputShape);
        using var ours = Onnx.Import(model, device);
        return MaxAbsDiff(RunOurs(ours, input, inputShape, device), theirs, "imported model");
    }

    // ---- One graph per op and attribute -------------------------------------------------------------

    /// <summary>(name, builder, input shape with batch) of each op case.</summary>
    private static IEnumerable<TestCaseData> OpCases()
    {
        TestCaseData Case(string name, long[] shape, Func<GraphBuilder, string> body, long opset = 17) =>
            new TestCaseData(shape, body, opset).SetArgDisplayNames(name);

        yield return Case("Gemm transB=1 with bias", new long[] { 3, 5 }, g =>
            g.Op("Gemm", new[] { "x", g.Weights("w", new long[] { 4, 5 }, 1), g.Weights("b", new long[] { 4 }, 2) }, Attr("transB", 1L)));
        yield return Case("Gemm transB=0, bias [1, out]", new long[] { 3, 5 }, g =>
            g.Op("Gemm", new[] { "x", g.Weights("w", new long[] { 5, 4 }, 1), g.Weights("b", new long[] { 1, 4 }, 2) }));
        yield return Case("Gemm without bias", new long[] { 2, 6 }, g =>
            g.Op("Gemm", new[] { "x", g.Weights("w", new long[] { 6, 3 }, 1) }));
        yield return Case("MatMul + Add (bias fused)", new long[] { 3, 5 }, g =>
            g.Op("Add", new[] { g.Op("MatMul", new[] { "x", g.Weights("w", new long[] { 5, 4 }, 1) }), g.Weights("b", new long[] { 4 }, 2) }));
        yield return Case("MatMul on [N, T, F]", new long[] { 2, 3, 5 }, g =>
            g.Op("MatMul", new[] { "x", g.Weights("w", new long[] { 5, 4 }, 1) }));
        yield return Case("Relu, Sigmoid, Tanh, LeakyRelu", new long[] { 2, 7 }, g =>
            g.Op("LeakyRelu", new[] { g.Op("Tanh", new[] { g.Op("Sigmoid", new[] { g.Op("Relu", new[] { "x" }) }) }) }, Attr("alpha", 0.3f)));
        yield return Case("LeakyRelu default alpha", new long[] { 2, 7 }, g => g.Op("LeakyRelu", new[] { "x" }));
        yield return Case("Softmax axis -1 on [N, T, F]", new long[] { 2, 3, 5 }, g => g.Op("Softmax", new[] { "x" }));
        yield return Case("Softmax axis 2 on [N, T, F]", new long[] { 2, 3, 5 }, g => g.Op("Softmax", new[] { "x" }, Attr("axis", 2L)));
        yield return Case("Identity, Dropout (eval)", new long[] { 2, 4 }, g =>
            g.Op("Dropout", new[] { g.Op("Identity", new[] { "x" }), g.Floats("ratio", new[] { 0.25f }) }));
        yield return Case("Conv stride 2 pads 1", new long[] { 2, 3, 9, 8 }, g =>
            g.Op("Conv", new[] { "x", g.Weights("w", new long[] { 4, 3, 3, 3 }, 1), g.Weights("b", new long[] { 4 }, 2) },
                Attr("strides", 2L, 2L), Attr("pads", 1L, 1L, 1L, 1L), Attr("kernel_shape", 3L, 3L)));
        yield return Case("Conv dilation 2, group 2, no bias, pads (2, 1)", new long[] { 1, 4, 10, 9 }, g =>
            g.Op("Conv", new[] { "x", g.Weights("w", new long[] { 6, 2, 3, 2 }, 1) },
                Attr("dilations", 2L, 2L), Attr("group", 2L), Attr("pads", 2L, 1L, 2L, 1L)));
        yield return Case("Conv auto_pad VALID", new long[] { 1, 2, 6, 6 }, g =>
            g.Op("Conv", new[] { "x", g.Weights("w", new long[] { 3, 2, 3, 3 }, 1) }, Attr("auto_pad", "VALID")));
        yield return Case("MaxPool 3x3 stride 2 pads 1", new long[] { 2, 3, 9, 9 }, g =>
            g.Op("MaxPool", new[] { "x" }, Attr("kernel_shape", 3L, 3L), Attr("strides", 2L, 2L), Attr("pads", 1L, 1L, 1L, 1L)));
        yield return Case("MaxPool default stride 1", new long[] { 1, 2, 5, 6 }, g =>
            g.Op("MaxPool", new[] { "x" }, Attr("kernel_shape", 2L, 2L)));
        yield return Case("AveragePool count_include_pad 0", new long[] { 2, 3, 7, 7 }, g =>
            g.Op("AveragePool", new[] { "x" }, Attr("kernel_shape", 3L, 3L), Attr("strides", 2L, 2L), Attr("pads", 1L, 1L, 1L, 1L)));
        yield return Case("AveragePool count_include_pad 1", new long[] { 2, 3, 7, 7 }, g =>
            g.Op("AveragePool", new[] { "x" }, Attr("kernel_shape", 3L, 3L), Attr("strides", 2L, 2L), Attr("pads", 1L, 1L, 1L, 1L), Attr("count_include_pad", 1L)));
        yield return Case("AveragePool 2x2 stride 1 pads 1 count_include_pad 1", new long[] { 1, 2, 5, 5 }, g =>
            g.Op("AveragePool", new[] { "x" }, Attr("kernel_shape", 2L, 2L), Attr("strides", 1L, 1L), Attr("pads", 1L, 1L, 1L, 1L), Attr("count_include_pad", 1L)));
        yield return Case("MaxPool 2x2 stride 1 pads 1", new long[] { 1, 2, 5, 5 }, g =>
            g.Op("MaxPool", new[] { "x" }, Attr("kernel_shape", 2L, 2L), Attr("strides", 1L, 1L), Attr("pads", 1L, 1L, 1L, 1L)));
        yield return Case("Pad then AveragePool (PyTorch's count_include_pad)", new long[] { 1, 2, 5, 5 }, g =>
            g.Op("AveragePool", new[] { g.Op("Pad", new[] { "x", g.Int64s("pads", new long[] { 0, 0, 1, 1, 0, 0, 1, 1 }, 8) }) },
                Attr("kernel_shape", 2L, 2L), Attr("strides", 1L, 1L)));
        yield return Case("GlobalAveragePool + Flatten", new long[] { 2, 3, 4, 5 }, g =>
            g.Op("Flatten", new[] { g.Op("GlobalAveragePool", new[] { "x" }) }));
        yield return Case("GlobalAveragePool kept [N, C, 1, 1]", new long[] { 2, 3, 4, 5 }, g => g.Op("GlobalAveragePool", new[] { "x" }));
        yield return Case("BatchNormalization [N, C, H, W]", new long[] { 2, 3, 4, 4 }, g =>
            g.Op("BatchNormalization", new[] { "x", g.Weights("s", new long[] { 3 }, 1), g.Weights("b", new long[] { 3 }, 2),
                g.Weights("m", new long[] { 3 }, 3), g.Floats("v", new[] { 0.5f, 1.5f, 2f }, 3) }, Attr("epsilon", 1e-3f)));
        yield return Case("BatchNormalization [N, C]", new long[] { 4, 3 }, g =>
            g.Op("BatchNormalization", new[] { "x", g.Weights("s", new long[] { 3 }, 1), g.Weights("b", new long[] { 3 }, 2),
                g.Weights("m", new long[] { 3 }, 3), g.Floats("v", new[] { 0.5f, 1.5f, 2f }, 3) }));
        yield return Case("Flatten of [N, C, H, W]", new long[] { 2, 3, 2, 2 }, g => g.Op("Flatten", new[] { "x" }));
        yield return Case("Reshape [0, -1] then [-1, 3, 4] (Constant node)", new long[] { 2, 3, 2, 2 }, g =>
        {
            var flat = g.Op("Reshape", new[] { "x", g.Int64s("s1", new long[] { 0, -1 }, 2) });
            var shapeNode = g.Node("Constant", Array.Empty<string>(), new AttributeProto { Name = "value_ints", Type = AttributeProto.Types.AttributeType.Ints, Ints = { 0, 3, -1 } });
            return g.Op("Reshape", new[] { flat, shapeNode.Output[0] });
        });
        yield return Case("Add and Mul of two branches (residual, gating)", new long[] { 2, 4 }, g =>
        {
            var a = g.Op("Gemm", new[] { "x", g.Weights("w1", new long[] { 4, 4 }, 1) });
            var b = g.Op("Sigmoid", new[] { g.Op("Gemm", new[] { "x", g.Weights("w2", new long[] { 4, 4 }, 2) }) });
            return g.Op("Mul", new[] { g.Op("Add", new[] { a, "x" }), b });
        });
        yield return Case("Reshape to Shape(x) (shape arithmetic)", new long[] { 2, 3, 4 }, g =>
            g.Op("Relu", new[] { g.Op("Reshape", new[] { "x", g.Op("Shape", new[] { "x" }) }) }));
        yield return Case("x.view(x.size(0), -1) as PyTorch exports it", new long[] { 2, 3, 2, 2 }, g =>
        {
            var batch = g.Op("Gather", new[] { g.Op("Shape", new[] { "x" }), g.Int64s("zero", new long[] { 0 }) }, Attr("axis", 0L));
            var shape = g.Op("Concat", new[] { g.Op("Unsqueeze", new[] { batch, g.Int64s("axes", new long[] { 0 }, 1) }), g.Int64s("minus1", new long[] { -1 }, 1) }, Attr("axis", 0L));
            return g.Op("Gemm", new[] { g.Op("Reshape", new[] { "x", shape }), g.Weights("w", new long[] { 12, 3 }, 1) });
        });
        yield return Case("Gelu (opset 20)", new long[] { 2, 6 }, g => g.Op("Gelu", new[] { "x" }), opset: 20);
    }

    [TestCaseSource(nameof(OpCases))]
    public void ImportedOpMatchesOnnxRuntime(long[] shape, Delegate body, long opset)
    {
        var g = new GraphBuilder(shape[1..], opset: opset);
        var model = g.Build(((Func<GraphBuilder, string>)body)(g));
        double diff;
        try { diff = CompareWithOrt(model, shape, Device.Cpu); }
        catch (OnnxRuntimeException e) when (e.Message.Contains("opset", StringComparison.OrdinalIgnoreCase))
        {
            Assert.Ignore($"this ONNX Runtime does not run the graph: {e.Message}");
            return;
        }
        Assert.That(diff, Is.LessThanOrEqualTo(1e-5), "max |ours - ONNX Runtime|");
    }

    [Test]
    public void GeluErfPatternOfOpset17IsOneGelu()
    {
        // How PyTorch (before opset 20) and our exporter write the exact GELU: 0.5 x (1 + erf(x / sqrt 2)).
        var g = new GraphBuilder(new long[] { 6 });
        var x = g.Op("Gemm", new[] { "x", g.Weights("w", new long[] { 6, 6 }, 1) });
        var erf = g.Op("Erf", new[] { g.Op("Div", new[] { x, g.Floats("sqrt2", new[] { MathF.Sqrt(2f) }) }) });
        var times = g.Op("Mul", new[] { x, g.Op("Add", new[] { erf, g.Floats("one", new[] { 1f }) }) });
        var model = g.Build(g.Op("Mul", new[] { times, g.Floats("half", new[] { 0.5f }) }));
        using (var imported = Onnx.Import(model))
            Assert.That(imported.Nodes.Select(n => n.Layer).OfType<Activation>().Single().Name, Is.EqualTo("gelu"));
        Assert.That(CompareWithOrt(model, new long[] { 3, 6 }, Device.Cpu), Is.LessThanOrEqualTo(1e-5));
    }

    [Test]
    public void DivideNotPartOfGeluIsRefused()
    {
        var g = new GraphBuilder(new long[] { 6 });
        var e = ImportError(g.Build(g.Op("Div", new[] { "x", g.Floats("two", new[] { 2f }) })));
        Assert.That(e, Is.TypeOf<NotSupportedException>());
        Assert.That(e.Message, Does.Contain("node 'div0' (Div) is not supported: the operator Div has no counterpart"));
    }

    [Test]
    public void GatherOnAnInitializerIsAnEmbedding()
    {
        var g = new GraphBuilder(new long[] { 5 }, TensorProto.Types.DataType.Int64);
        var model = g.Build(g.Op("Gather", new[] { g.Weights("table", new long[] { 10, 3 }, 4), "x" }));
        var ids = new long[] { 0, 3, 9, 2, 2, 7, 1, 0, 5, 4 };
        using var session = Reference(model);
        var tensor = new DenseTensor<long>(ids, new[] { 2, 5 });
        using var results = session.Run(new[] { NamedOnnxValue.CreateFromTensor("x", tensor) });
        var theirs = results.First().AsTensor<float>();
        using var ours = Onnx.Import(model);
        Assert.That(ours.Nodes.Select(n => n.Layer).OfType<Embedding>().Count(), Is.EqualTo(1));
        using var x = Tensor.FromArray(ids, new long[] { 2, 5 });
        using var y = ours.Forward(x);
        Assert.That(y.ShapeArray, Is.EqualTo(new long[] { 2, 5, 3 }));
        Assert.That(y.ToArray(), Is.EqualTo(theirs.ToArray()).Within(1e-6));
    }

    [Test]
    public void ImportedLayersAreOurs()
    {
        var g = new GraphBuilder(new long[] { 5 });
        var model = g.Build(g.Op("Relu", new[] { g.Op("Gemm", new[] { "x", g.Weights("w", new long[] { 4, 5 }, 1), g.Weights("b", new long[] { 4 }, 2) }, Attr("transB", 1L)) }));
        using var network = Onnx.Import(model);
        Assert.That(network.Training, Is.False, "an imported model starts in evaluation mode");
        var dense = network.Nodes.Select(n => n.Layer).OfType<Dense>().Single();
        Assert.That((dense.Inputs, dense.Outputs), Is.EqualTo((5L, 4L)));
        Assert.That(network.Nodes.Select(n => n.Layer).OfType<Activation>().Single().Name, Is.EqualTo("relu"));
        Assert.That(network.NamedParameters().Select(p => p.Name), Is.EqualTo(new[] { "0.weight", "0.bias" }));
        // The PyTorch-layout [out, in] weight was transposed into ours: element (o = 1, i = 2) of the file.
        var rng = new Random(1);
        var file = Enumerable.Range(0, 20).Select(_ => (float)(rng.NextDouble() * 2 - 1) * 0.5f).ToArray();
        Assert.That(dense.Weight.ToArray()[2 * 4 + 1], Is.EqualTo(file[1 * 5 + 2]));
    }

    // ---- Files exported by PyTorch ------------------------------------------------------------------

    private static readonly object fixtureLock = new();

    /// <summary>
    /// The path of a PyTorch-exported fixture, made by make_resnet18.py in a cache directory
    /// (KERNELS_ONNX_CACHE, else a folder under the temp directory; a subfolder per script version) when missing. Skips naming the
    /// Debian packages when torch or torchvision is absent.
    /// </summary>
    internal static string Fixture(string name)
    {
        var script = Path.Combine(TestContext.CurrentContext.TestDirectory, "fixtures", "onnx", "make_resnet18.py");
        Assert.That(File.Exists(script), Is.True, $"{script} is missing from the test output");
        // One folder per version of the script, so a changed script never meets an old file.
        var version = Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(File.ReadAllBytes(script)))[..12];
        var root = Environment.GetEnvironmentVariable("KERNELS_ONNX_CACHE") is { Length: > 0 } c ? c : Path.Combine(Path.GetTempPath(), "kernels-onnx-fixtures");
        var cache = Path.Combine(root, version);
        var path = Path.Combine(cache, name + ".onnx");
        lock (fixtureLock)
        {
            if (File.Exists(path)) return path;
            const string python = "/usr/bin/python3";
            if (!File.Exists(python) || Run(python, "-c \"import torch, torchvision\"").Code != 0)
                Assert.Ignore($"{name}.onnx is made by PyTorch: needs /usr/bin/python3 with python3-torch and python3-torchvision (apt-get install python3-torch python3-torchvision)");
            Directory.CreateDirectory(cache);
            var watch = Stopwatch.StartNew();
            var (code, output) = Run(python, $"\"{script}\" \"{cache}\" {name}");
            Assert.That(code, Is.EqualTo(0), $"make_resnet18.py failed:\n{output}");
            TestContext.Out.WriteLine($"{name}.onnx generated by PyTorch in {watch.Elapsed.TotalSeconds:F1} s");
            return path;
        }
    }

    private static (int Code, string Output) Run(string file, string arguments)
    {
        var info = new ProcessStartInfo(file, arguments) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        info.Environment["OMP_NUM_THREADS"] = "1";
        using var process = Process.Start(info)!;
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        process.WaitForExit();
        return (process.ExitCode, output.Result + error.Result);
    }

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.All))]
    public void TorchvisionResNet18MatchesOnnxRuntime(string deviceName, DeviceKind kind, string requireVariable)
    {
        var device = TestDevices.Require(deviceName, kind, requireVariable);
        var path = Fixture("resnet18");
        var shape = new long[] { 2, 3, 224, 224 };
        var input = RandomInput(shape.Aggregate(1L, (a, b) => a * b), 2026);
        var watch = Stopwatch.StartNew();
        (float[], long[]) theirs;
        using (var session = Reference(path)) theirs = RunOrt(session, input, shape);
        var ortTime = watch.Elapsed;
        watch.Restart();
        using var model = Onnx.Import(path, device);
        var importTime = watch.Elapsed;
        Assert.That(model.Parameters().All(p => p.Device == device), Is.True, $"every weight lives on {deviceName}");
        watch.Restart();
        var ours = RunOurs(model, input, shape, device);
        var forwardTime = watch.Elapsed;
        watch.Restart();
        RunOurs(model, input, shape, device);
        var secondTime = watch.Elapsed;
        double diff = MaxAbsDiff(ours, theirs, "ResNet-18");
        TestContext.Out.WriteLine($"ResNet-18 on {deviceName}: max |ours - ORT| = {diff:E2} over {ours.Item1.Length} logits; " +
                                  $"import {importTime.TotalSeconds:F2} s, forward (2 x 3x224x224) {forwardTime.TotalSeconds:F2} s (again: {secondTime.TotalSeconds:F2} s), ORT {ortTime.TotalSeconds:F2} s");
        // torchvision's resnet18 has 11,689,512 parameters; the export folds each batch norm (gamma and beta,
        // 2 x 4,800 values) into its convolution (a bias, 4,800 values): 11,684,712, every value of the file's initializers.
        Assert.That(model.ParameterCount, Is.EqualTo(11_684_712));
        Assert.That(model.Nodes.Count(n => n.Layer is Conv2D), Is.EqualTo(20));
        Assert.That(model.Nodes.Count(n => n.Name == "add"), Is.EqualTo(8), "the residual connections are merges");
        Assert.That(diff, Is.LessThanOrEqualTo(1e-4), "max |ours - ONNX Runtime| on ResNet-18's logits");
    }

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.All))]
    public void TorchCnnWithBatchNormMatchesOnnxRuntime(string deviceName, DeviceKind kind, string requireVariable)
    {
        var device = TestDevices.Require(deviceName, kind, requireVariable);
        var path = Fixture("small_cnn_bn");
        var shape = new long[] { 4, 3, 12, 12 };
        var input = RandomInput(shape.Aggregate(1L, (a, b) => a * b), 11);
        (float[], long[]) theirs;
        using (var session = Reference(path)) theirs = RunOrt(session, input, shape);
        using var model = Onnx.Import(path, device);
        var layers = model.Nodes.Select(n => n.Layer).Where(l => l is not null).ToList();
        Assert.That(layers.OfType<BatchNorm2D>().Count(), Is.EqualTo(2), "BatchNormalization nodes after convolutions");
        Assert.That(layers.OfType<BatchNorm1D>().Count(), Is.EqualTo(1), "BatchNormalization after a Gemm");
        Assert.That(layers.OfType<AvgPool2D>().Count(c => c.CountIncludePad && c.Padding == new Size2(1, 1)), Is.EqualTo(1), "PyTorch's Pad + AveragePool");
        double diff = MaxAbsDiff(RunOurs(model, input, shape, device), theirs, "small CNN");
        TestContext.Out.WriteLine($"small CNN with batch norm on {deviceName}: max |ours - ORT| = {diff:E2}");
        Assert.That(diff, Is.LessThanOrEqualTo(1e-5));
    }

    // ---- Round trips of our own exporter (Onnx.ExportToBytes) ----------------------------------------

    /// <summary>The export tests' models (OnnxExportTests.Cases: every layer and merge the exporter writes).</summary>
    private static IEnumerable<TestCaseData> ExportCases()
    {
        var cases = typeof(OnnxExportTests).GetMethod("Cases", System.Reflection.BindingFlags.NonPublic | System.Reflection.BindingFlags.Static)
                    ?? throw new InvalidOperationException("OnnxExportTests.Cases() is gone: update OnnxImportTests.ExportCases");
        foreach (var c in (OnnxExportTests.Case[])cases.Invoke(null, null)!)
            yield return new TestCaseData(c).SetArgDisplayNames(c.Name);
    }

    [TestCaseSource(nameof(ExportCases))]
    public void ExportedModelImportsAndComputesTheSame(OnnxExportTests.Case c)
    {
        using var original = c.Create(Device.Cpu);
        original.Eval();
        var bytes = Onnx.ExportToBytes(original, c.Sample);
        var shape = new[] { 3L }.Concat(c.Sample).ToArray();
        var input = RandomInput(shape.Aggregate(1L, (a, b) => a * b), 17);
        using var imported = Onnx.Import(bytes);
        var expected = RunOurs(original, input, shape, Device.Cpu);
        var actual = RunOurs(imported, input, shape, Device.Cpu);
        Assert.That(MaxAbsDiff(actual, expected, c.Name), Is.LessThanOrEqualTo(1e-5), "max |imported - original|");
        Assert.That(imported.ParameterCount, Is.EqualTo(original.ParameterCount), "the same number of trainable values");
    }

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.All))]
    public void TorchLstmThenGruMatchesOnnxRuntime(string deviceName, DeviceKind kind, string requireVariable)
    {
        var device = TestDevices.Require(deviceName, kind, requireVariable);
        var path = Fixture("lstm_gru");
        var shape = new long[] { 3, 6, 5 };
        var input = RandomInput(shape.Aggregate(1L, (a, b) => a * b), 21);
        (float[], long[]) theirs;
        using (var session = Reference(path)) theirs = RunOrt(session, input, shape);
        using var model = Onnx.Import(path, device);
        var layers = model.Nodes.Select(n => n.Layer).Where(l => l is not null).ToList();
        Assert.That(layers.Select(l => l!.GetType().Name), Is.EqualTo(new[] { "LSTM", "GRU" }), "PyTorch's Transposes, zero states and Squeezes fold into the two layers");
        double diff = MaxAbsDiff(RunOurs(model, input, shape, device), theirs, "LSTM + GRU");
        TestContext.Out.WriteLine($"PyTorch LSTM + GRU on {deviceName}: max |ours - ORT| = {diff:E2}");
        Assert.That(diff, Is.LessThanOrEqualTo(1e-5));
    }

    // ---- Fine-tuning after import -------------------------------------------------------------------

    [Test]
    public void ImportedModelFineTunes()
    {
        using var model = Onnx.Import(Fixture("small_cnn_bn"));
        var parameters = model.Parameters().ToList();
        Assert.That(parameters, Is.Not.Empty);
        Assert.That(parameters.All(p => p.RequiresGrad), Is.True);
        var head = model.Nodes.Select(n => n.Layer).OfType<Dense>().Last();
        var before = head.Weight.ToArray();
        model.Train();
        var rng = new Random(5);
        var input = RandomInput(16 * 3 * 12 * 12, 3);
        var labels = Enumerable.Range(0, 16).Select(_ => (long)rng.Next(10)).ToArray();
        using var optimizer = new Adam(parameters, 1e-2f);
        var losses = new List<float>();
        for (int step = 0; step < 8; step++)
        {
            using var scope = new DisposeScope();
            var x = Tensor.FromArray(input, new long[] { 16, 3, 12, 12 });
            var probabilities = model.Forward(x);   // the PyTorch model ends in Softmax
            optimizer.ZeroGrad();
            // Log-probabilities are logits whose softmax is the probabilities again: cross-entropy of the model.
            var loss = Losses.SparseCategoricalCrossEntropy(probabilities.Add(1e-6f).Log(), labels);
            loss.Backward();
            Assert.That(head.Weight.Grad, Is.Not.Null, "gradients reach the imported Dense weight");
            optimizer.Step();
            losses.Add(loss.Item());
        }
        TestContext.Out.WriteLine($"fine-tuning losses: {string.Join(", ", losses.Select(l => l.ToString("F4")))}");
        Assert.That(losses[^1], Is.LessThan(losses[0] * 0.8f), "the loss falls while fine-tuning the imported model");
        Assert.That(head.Weight.ToArray(), Is.Not.EqualTo(before), "the imported weights changed");
    }

    [Test]
    public void ImportedResNet18FineTunes()
    {
        using var model = Onnx.Import(Fixture("resnet18"));
        model.Train();
        var fc = model.Nodes.Select(n => n.Layer).OfType<Dense>().Single();
        var firstConv = model.Nodes.Select(n => n.Layer).OfType<Conv2D>().First();
        var input = RandomInput(2 * 3 * 224 * 224, 8);
        var labels = new long[] { 3, 917 };
        using var optimizer = new Sgd(model.Parameters(), 3e-4f);
        var losses = new List<float>();
        var watch = Stopwatch.StartNew();
        for (int step = 0; step < 4; step++)
        {
            using var scope = new DisposeScope();
            optimizer.ZeroGrad();
            var loss = Losses.SparseCategoricalCrossEntropy(model.Forward(Tensor.FromArray(input, new long[] { 2, 3, 224, 224 })), labels);
            loss.Backward();
            Assert.That(firstConv.Weight.Grad, Is.Not.Null, "gradients reach the first convolution through 8 residual blocks");
            optimizer.Step();
            losses.Add(loss.Item());
        }
        TestContext.Out.WriteLine($"fine-tuning the imported ResNet-18 (batch 2, 224x224, SGD): {string.Join(", ", losses.Select(l => l.ToString("F4")))} in {watch.Elapsed.TotalSeconds:F1} s");
        Assert.That(losses[^1], Is.LessThan(losses[0] * 0.5f), "the loss falls on a fixed batch");
        Assert.That(fc.Weight.Grad, Is.Not.Null);
    }

    [Test]
    public void ImportedRecurrentModelFineTunes()
    {
        using var model = Onnx.Import(Fixture("lstm_gru"));
        var lstm = model.Nodes.Select(n => n.Layer).OfType<LSTM>().Single();
        var before = lstm.WeightIh.ToArray();
        model.Train();
        var input = RandomInput(8 * 6 * 5, 4);
        var target = RandomInput(8 * 6 * 4, 5).Select(v => v * 0.5f).ToArray();
        using var optimizer = new Adam(model.Parameters(), 2e-2f);
        var losses = new List<float>();
        for (int step = 0; step < 10; step++)
        {
            using var scope = new DisposeScope();
            optimizer.ZeroGrad();
            var loss = Losses.MeanSquaredError(model.Forward(Tensor.FromArray(input, new long[] { 8, 6, 5 })), Tensor.FromArray(target, new long[] { 8, 6, 4 }));
            loss.Backward();
            Assert.That(lstm.WeightIh.Grad, Is.Not.Null, "gradients reach the first imported layer through the GRU");
            optimizer.Step();
            losses.Add(loss.Item());
        }
        TestContext.Out.WriteLine($"fine-tuning the imported LSTM + GRU: {string.Join(", ", losses.Select(l => l.ToString("F4")))}");
        Assert.That(losses[^1], Is.LessThan(losses[0] * 0.8f));
        Assert.That(lstm.WeightIh.ToArray(), Is.Not.EqualTo(before));
    }

    // ---- Refusals -----------------------------------------------------------------------------------

    private static Exception ImportError(byte[] model) =>
        Assert.Catch(() => Onnx.Import(model, null, "test.onnx").Dispose())!;

    private static IEnumerable<TestCaseData> Refusals()
    {
        TestCaseData Case(string name, Type exception, string message, Func<GraphBuilder, string> body, long[]? sample = null) =>
            new TestCaseData(exception, message, body, sample ?? new long[] { 3, 8, 8 }).SetArgDisplayNames(name);
        string Conv(GraphBuilder g, params AttributeProto[] a) => g.Op("Conv", new[] { "x", g.Weights("w", new long[] { 2, 3, 3, 3 }, 1) }, a);

        yield return Case("unknown op", typeof(NotSupportedException), "node 'erf0' (Erf) is not supported: the operator Erf has no counterpart",
            g => g.Op("Erf", new[] { "x" }));
        yield return Case("custom domain", typeof(NotSupportedException), "operator domain 'com.microsoft'",
            g => { var n = g.Node("Relu", new[] { "x" }); n.Domain = "com.microsoft"; return n.Output[0]; });
        yield return Case("asymmetric pads", typeof(NotSupportedException), "pads = [1, 1, 0, 0] are not symmetric",
            g => Conv(g, Attr("pads", 1L, 1L, 0L, 0L)));
        yield return Case("auto_pad SAME_UPPER", typeof(NotSupportedException), "auto_pad = SAME_UPPER",
            g => Conv(g, Attr("auto_pad", "SAME_UPPER")));
        yield return Case("3-D convolution weight", typeof(NotSupportedException), "its input has shape [N, 3, 8]; only [N, C, H, W] inputs are supported",
            g => g.Op("Conv", new[] { "x", g.Weights("w", new long[] { 2, 3, 3 }, 1) }), new long[] { 3, 8 });
        yield return Case("ceil_mode", typeof(NotSupportedException), "ceil_mode = 1",
            g => g.Op("MaxPool", new[] { "x" }, Attr("kernel_shape", 2L, 2L), Attr("ceil_mode", 1L)));
        yield return Case("pool dilations", typeof(NotSupportedException), "dilations = [2, 2]",
            g => g.Op("MaxPool", new[] { "x" }, Attr("kernel_shape", 2L, 2L), Attr("dilations", 2L, 2L)));
        yield return Case("Gemm alpha", typeof(NotSupportedException), "alpha = 2, beta = 1",
            g => g.Op("Gemm", new[] { "x", g.Weights("w", new long[] { 4, 3 }, 1) }, Attr("alpha", 2f)), new long[] { 4 });
        yield return Case("Gemm transA", typeof(NotSupportedException), "transA = 1",
            g => g.Op("Gemm", new[] { "x", g.Weights("w", new long[] { 4, 3 }, 1) }, Attr("transA", 1L)), new long[] { 4 });
        yield return Case("Gemm with a computed weight", typeof(NotSupportedException), "the weight B 'x' is computed",
            g => g.Op("Gemm", new[] { "x", "x" }), new long[] { 4 });
        yield return Case("Add of a constant", typeof(NotSupportedException), "Add of the constant 'c'",
            g => g.Op("Add", new[] { "x", g.Weights("c", new long[] { 4 }, 1) }), new long[] { 4 });
        yield return Case("Mul with broadcasting", typeof(NotSupportedException), "only equal shapes",
            g => g.Op("Mul", new[] { g.Op("GlobalAveragePool", new[] { "x" }), "x" }));
        yield return Case("Softmax over axis 1 of [N, T, F]", typeof(NotSupportedException), "axis = 1 on a rank-3 input",
            g => g.Op("Softmax", new[] { "x" }, Attr("axis", 1L)), new long[] { 3, 4 });
        yield return Case("Flatten axis 2", typeof(NotSupportedException), "axis = 2",
            g => g.Op("Flatten", new[] { "x" }, Attr("axis", 2L)));
        yield return Case("Reshape that fixes the batch", typeof(NotSupportedException), "fixes the batch size at 2",
            g => g.Op("Reshape", new[] { "x", g.Int64s("s", new long[] { 2, -1 }, 2) }));
        yield return Case("Reshape with a computed shape", typeof(NotSupportedException), "the shape 'x' is computed; it must be an initializer or a Constant",
            g => g.Op("Reshape", new[] { "x", "x" }));
        yield return Case("Shape used as a runtime value", typeof(NotSupportedException), "node 'relu1' (Relu) is not supported: input 'v0' is a constant",
            g => g.Op("Relu", new[] { g.Op("Shape", new[] { "x" }) }));
        yield return Case("Transpose other than around a recurrent node", typeof(NotSupportedException), "perm = [0, 2, 1] on [N, 3, 8, 8]",
            g => g.Op("Transpose", new[] { "x" }, Attr("perm", 0L, 2L, 1L)));
        yield return Case("LSTM with a non-zero initial state", typeof(NotSupportedException), "a non-zero initial state 'h0'",
            g => g.Op("LSTM", new[] { g.Op("Transpose", new[] { "x" }, Attr("perm", 1L, 0L, 2L)), g.Weights("W", new long[] { 1, 8, 4 }, 1), g.Weights("R", new long[] { 1, 8, 2 }, 2), "", "", g.Weights("h0", new long[] { 1, 1, 2 }, 3) }, Attr("hidden_size", 2L)),
            new long[] { 5, 4 });
        yield return Case("Add reading a time-major transpose", typeof(NotSupportedException), "input 'v0' is a time-major transpose, supported only as a recurrent node's input",
            g => g.Op("Add", new[] { g.Op("Transpose", new[] { "x" }, Attr("perm", 1L, 0L, 2L)), "x" }), new long[] { 5, 4 });
        yield return Case("graph output is a time-major transpose", typeof(NotSupportedException), "the graph output 'v0' is a time-major transpose",
            g => g.Op("Transpose", new[] { "x" }, Attr("perm", 1L, 0L, 2L)), new long[] { 5, 4 });
        yield return Case("GRU with linear_before_reset 0", typeof(NotSupportedException), "linear_before_reset = 0",
            g => g.Op("GRU", new[] { g.Op("Transpose", new[] { "x" }, Attr("perm", 1L, 0L, 2L)), g.Weights("W", new long[] { 1, 6, 4 }, 1), g.Weights("R", new long[] { 1, 6, 2 }, 2) }, Attr("hidden_size", 2L)),
            new long[] { 5, 4 });
        yield return Case("RNN output used raw", typeof(NotSupportedException), "its output Y is followed by something other than the patterns exporters write",
            g => g.Op("RNN", new[] { g.Op("Transpose", new[] { "x" }, Attr("perm", 1L, 0L, 2L)), g.Weights("W", new long[] { 1, 2, 4 }, 1), g.Weights("R", new long[] { 1, 2, 2 }, 2) }, Attr("hidden_size", 2L)),
            new long[] { 5, 4 });
        yield return Case("BatchNormalization training_mode", typeof(NotSupportedException), "training_mode = 1",
            g => g.Op("BatchNormalization", new[] { "x", g.Weights("s", new long[] { 3 }, 1), g.Weights("b", new long[] { 3 }, 2), g.Weights("m", new long[] { 3 }, 3), g.Weights("v", new long[] { 3 }, 4) }, Attr("training_mode", 1L)));
        yield return Case("MaxPool indices used", typeof(NotSupportedException), "its output 1 ('idx') is used",
            g => { var n = g.Node("MaxPool", new[] { "x" }, Attr("kernel_shape", 2L, 2L)); n.Output.Add("idx"); return g.Op("Identity", new[] { "idx" }); });
        yield return Case("Gelu tanh approximation", typeof(NotSupportedException), "approximate = tanh",
            g => g.Op("Gelu", new[] { "x" }, Attr("approximate", "tanh")));
        yield return Case("Pad not before AveragePool", typeof(NotSupportedException), "only a Pad whose one consumer is an AveragePool",
            g => g.Op("Relu", new[] { g.Op("Pad", new[] { "x", g.Int64s("p", new long[] { 0, 0, 1, 1, 0, 0, 1, 1 }, 8) }) }));
        // Malformed graphs: InvalidDataException naming the node.
        yield return Case("dangling input name", typeof(InvalidDataException), "node 'relu0' (Relu): input 'nowhere' is not a graph input, an initializer or an earlier node's output",
            g => g.Op("Relu", new[] { "nowhere" }));
        yield return Case("missing initializer", typeof(InvalidDataException), "input 'w' is not a graph input, an initializer",
            g => g.Op("Conv", new[] { "x", "w" }));
        yield return Case("BatchNormalization scale of the wrong size", typeof(InvalidDataException), "the scale 's' has shape [4]; expected [3]",
            g => g.Op("BatchNormalization", new[] { "x", g.Weights("s", new long[] { 4 }, 1), g.Weights("b", new long[] { 3 }, 2), g.Weights("m", new long[] { 3 }, 3), g.Weights("v", new long[] { 3 }, 4) }));
        yield return Case("Conv channels", typeof(InvalidDataException), "the input has 3 channels but the weight [2, 2, 3, 3] with group = 1 expects 2",
            g => g.Op("Conv", new[] { "x", g.Weights("w", new long[] { 2, 2, 3, 3 }, 1) }));
        yield return Case("Gemm features", typeof(InvalidDataException), "its input has shape [N, 4] but the weight expects 5 features",
            g => g.Op("Gemm", new[] { "x", g.Weights("w", new long[] { 5, 3 }, 1) }), new long[] { 4 });
        yield return Case("window larger than the input", typeof(InvalidDataException), "the window (5 with dilation) is larger than the padded height 4",
            g => g.Op("MaxPool", new[] { "x" }, Attr("kernel_shape", 5L, 5L)), new long[] { 3, 4, 4 });
        yield return Case("output not produced", typeof(InvalidDataException), "the graph output 'ghost' is not produced by any node",
            g => { g.Op("Relu", new[] { "x" }); return "ghost"; });
    }

    [TestCaseSource(nameof(Refusals))]
    public void RefusesNamingTheProblem(Type exception, string message, Delegate body, long[] sample)
    {
        var g = new GraphBuilder(sample);
        var error = ImportError(g.Build(((Func<GraphBuilder, string>)body)(g)));
        Assert.That(error, Is.TypeOf(exception), error.ToString());
        Assert.That(error.Message, Does.Contain(message).And.StartWith("test.onnx: "));
    }

    /// <summary>Google.Protobuf's parser can throw IndexOutOfRangeException (not InvalidProtocolBufferException) on a
    /// length prefix near 2^31 (protocolbuffers/protobuf#26856, open); the CI fuzzer found it in a mutated export.
    /// Import must still answer with InvalidDataException naming the file.</summary>
    [TestCase("3a 0a 2a ff ff ff ff 07 31 2f 73 71", TestName = "Truncated initializer with a 2^31 length prefix")]
    [TestCase("3a 08 2a ff ff ff ff 67 2a cc", TestName = "Truncated initializer with an overlong length prefix")]
    [TestCase("CI_FUZZ", TestName = "The CI fuzzer's 491-byte mutated export")]
    public void MalformedProtobufIsInvalidDataNamingTheFile(string hex)
    {
        var bytes = hex == "CI_FUZZ" ? Convert.FromBase64String(CiFuzzFinding) : Convert.FromHexString(hex.Replace(" ", ""));
        var error = ImportError(bytes);
        Assert.That(error, Is.TypeOf<InvalidDataException>(), error.ToString());
        Assert.That(error.Message, Does.StartWith("test.onnx: not a valid ONNX file"));
    }

    /// <summary>ReaderFuzzTests, seed 1-yt8UjWoOo2 (exported model seed 4166296, 2 edits, 1 byte mutation).</summary>
    private const string CiFuzzFinding =
        "CAgSCktlcm5lbHMuTm4aBzAuMy4wLjA6ywMKJQoFaW5wdXQKCDAud2VpZ2h0CgYwLmJpYXMSATAaATAiBEdlbW0KIgoBMAoHMS9z" +
        "cXJ0MhIIMS9zY2FsZWQaBTEvRGl2IgNEaXYKHQoIMS9zY2FsZWQSBTEvZXJmGgUxL0VyZiIDRXJmCiYKBTEvZXJmCgUxL29uZRIK" +
        "MS9wbHVzX29uZRoFMS9BZGQiA0FkZAomCgEwCgoxL3BsdXNfb25lEgkxL3RpbWVzX3gaBTEvTXVsIgNNdWwKIwoJMS90aW1lc194" +
        "CgYxL2hhbGYSATEaBjEvSGFsZiIDTXVsCikKBG11bDAKCDIud2VpZ2h0CgYyLmJpYXMSBm91dHB1dBoBMiIER2VtbRIEbWFpbioS" +
        "CAEQAUIGMC5iaWFzSgQAAAAAKoX+//8HMS9zcXJ0MkoE8wS1PyoPEAFCBTEvb25lSgQAAIA/KhAQAUIGMS9oYWxmSgQAAAA/Kh4I" +
        "AQgDEAFCCDIud2VpZ2h0SgzO7Rk//MqEP6Tyzb4qGggDEAFCBjIuYmlhc0oMAAAAAAAAAAAAAAAAWhgKBWlucHV0Eg8KDQgBEgkK" +
        "AxIBTgoCCAFiGQoGb3V0cHV0Eg8KDQgBEgkKAxIBTgoCCANCBAoAEBE=";

    [Test]
    public void ALongChainImportsAndRuns()
    {
        // A file is small per node (about 20 bytes for a Relu): a deep graph must not exhaust the stack.
        var g = new GraphBuilder(new long[] { 3 });
        var x = "x";
        for (int i = 0; i < 100_000; i++) x = g.Op("Relu", new[] { x });
        using var model = Onnx.Import(g.Build(x));
        Assert.That(RunOurs(model, new float[] { -1, 2, 3 }, new long[] { 1, 3 }, Device.Cpu).Values, Is.EqualTo(new float[] { 0, 2, 3 }));
    }

    [Test]
    public void RefusesSeveralInputsAndOutputsByName()
    {
        var g = new GraphBuilder(new long[] { 4 });
        g.Graph.Input.Add(GraphBuilder.Info("y", TensorProto.Types.DataType.Float, new long[] { 4 }));
        var e = ImportError(g.Build(g.Op("Add", new[] { "x", "y" })));
        Assert.That(e, Is.TypeOf<NotSupportedException>());
        Assert.That(e.Message, Does.Contain("2 inputs ('x', 'y')"));

        var h = new GraphBuilder(new long[] { 4 });
        var a = h.Op("Relu", new[] { "x" });
        var b = h.Op("Tanh", new[] { "x" });
        h.Build(a);
        h.Graph.Output.Add(new ValueInfoProto { Name = b });
        e = ImportError(h.Model.ToByteArray());
        Assert.That(e, Is.TypeOf<NotSupportedException>());
        Assert.That(e.Message, Does.Contain("2 outputs ('v0', 'v1')"));
    }

    [Test]
    public void RefusesASymbolicSampleAxis()
    {
        var g = new GraphBuilder(new long[] { 4 });
        g.Graph.Input[0].Type.TensorType.Shape.Dim[1] = new TensorShapeProto.Types.Dimension { DimParam = "T" };
        var e = ImportError(g.Build(g.Op("Relu", new[] { "x" })));
        Assert.That(e, Is.TypeOf<NotSupportedException>());
        Assert.That(e.Message, Does.Contain("symbolic size 'T' at axis 1"));
    }

    // ---- Malformed files ----------------------------------------------------------------------------

    private static byte[] SmallModel(Action<GraphBuilder>? edit = null)
    {
        var g = new GraphBuilder(new long[] { 4 });
        var output = g.Op("Gemm", new[] { "x", g.Weights("w", new long[] { 4, 3 }, 1), g.Weights("b", new long[] { 3 }, 2) });
        edit?.Invoke(g);
        return g.Build(output);
    }

    [Test]
    public void RefusesMalformedFiles()
    {
        var e = ImportError(System.Text.Encoding.ASCII.GetBytes("this is not an ONNX file at all"));
        Assert.That(e, Is.TypeOf<InvalidDataException>());
        Assert.That(e.Message, Does.StartWith("test.onnx: not a valid ONNX file"));

        var full = SmallModel();
        e = ImportError(full[..(full.Length - 7)]);
        Assert.That(e, Is.TypeOf<InvalidDataException>(), e.ToString());
        Assert.That(e.Message, Does.StartWith("test.onnx: "));

        e = ImportError(SmallModel(g => g.Graph.Initializer[0].RawData = ByteString.CopyFrom(new byte[44])));
        Assert.That(e, Is.TypeOf<InvalidDataException>());
        Assert.That(e.Message, Is.EqualTo("test.onnx: initializer 'w': raw_data holds 44 bytes but dims [4, 3] of Float need 48"));

        // Dims claiming 2^60 elements are refused before anything is allocated.
        e = ImportError(SmallModel(g => { g.Graph.Initializer[0].Dims.Clear(); g.Graph.Initializer[0].Dims.Add(1L << 30); g.Graph.Initializer[0].Dims.Add(1L << 30); }));
        Assert.That(e, Is.TypeOf<InvalidDataException>());
        Assert.That(e.Message, Does.Contain("initializer 'w': dims [1073741824, 1073741824] hold more values than any file can"));

        e = ImportError(SmallModel(g => { g.Graph.Initializer[1].RawData = ByteString.Empty; g.Graph.Initializer[1].ClearRawData(); g.Graph.Initializer[1].FloatData.Add(1f); }));
        Assert.That(e, Is.TypeOf<InvalidDataException>());
        Assert.That(e.Message, Does.Contain("initializer 'b': holds 1 Float values but dims [3] need 3"));

        e = ImportError(SmallModel(g => g.Graph.Initializer[0].DataType = (int)TensorProto.Types.DataType.Float16));
        Assert.That(e, Is.TypeOf<NotSupportedException>());
        Assert.That(e.Message, Does.Contain("initializer 'w' has element type Float16"));

        e = ImportError(SmallModel(g => g.Graph.Initializer.Add(g.Graph.Initializer[0].Clone())));
        Assert.That(e, Is.TypeOf<InvalidDataException>());
        Assert.That(e.Message, Does.Contain("initializer 'w' appears more than once"));

        // 100,000 nested unknown groups (tag 0x7B: field 15, start-group): the parser's recursion limit, not the stack.
        e = ImportError(Enumerable.Repeat((byte)0x7B, 100_000).ToArray());
        Assert.That(e, Is.TypeOf<InvalidDataException>());

        // The process stays usable: a good model imports after all the refusals.
        using var model = Onnx.Import(SmallModel());
        Assert.That(model.ParameterCount, Is.EqualTo(15));
    }

    [Test]
    public void ImportsFromStreamAndFile()
    {
        var bytes = SmallModel();
        var path = Path.Combine(Path.GetTempPath(), $"kernels-onnx-{Environment.ProcessId}.onnx");
        File.WriteAllBytes(path, bytes);
        try
        {
            using var fromFile = Onnx.Import(path);
            using var fromStream = Onnx.Import(new MemoryStream(bytes));
            var input = RandomInput(8, 3);
            Assert.That(RunOurs(fromFile, input, new long[] { 2, 4 }, Device.Cpu).Values,
                        Is.EqualTo(RunOurs(fromStream, input, new long[] { 2, 4 }, Device.Cpu).Values));
            File.WriteAllBytes(path, bytes[..10]);
            var e = Assert.Catch(() => Onnx.Import(path))!;
            Assert.That(e, Is.TypeOf<InvalidDataException>());
            Assert.That(e.Message, Does.StartWith(path + ": "));
        }
        finally { File.Delete(path); }
    }
}
