using Google.Protobuf;
using Kernels.Nn.OnnxProto;
using NUnit.Framework;

namespace Kernels.Nn.Tests;

/// <summary>
/// ONNX export: each model is exported, passed through the onnx package's checker, run in ONNX Runtime at
/// batch 1 and batch 3 (the batch is symbolic), and compared with our Forward in eval mode, on each device.
/// Weights are random (running statistics included) so that a misplaced bias or statistic shows. Shapes
/// are small and odd (primes) so that no tiling hides an error. Tolerance: 1e-5, absolute for values
/// below 1 and relative above (float32 sums in a different order differ by a few ulps).
/// </summary>
[TestFixture]
public sealed class OnnxExportTests
{
    private const double Tolerance = 1e-5;
    private string dir = "";

    [SetUp]
    public void CreateDirectory() => dir = OnnxTestSupport.TempDirectory();

    [TearDown]
    public void DeleteDirectory() => Directory.Delete(dir, recursive: true);

    /// <summary>A model for the round trip: its factory and the shape of one sample.</summary>
    public sealed record Case(string Name, Func<Device, Module> Create, long[] Sample)
    {
        public override string ToString() => Name;
    }

    private static Case[] Cases() => new[]
    {
        new Case("dense_relu_gemm", d => new Sequential(new Dense(7, 13, device: d), Activation.Relu(), new Dense(13, 5, device: d)), new long[] { 7 }),
        new Case("dense_no_bias", d => new Sequential(new Dense(11, 3, bias: false, device: d)), new long[] { 11 }),
        new Case("dense_rank3_matmul_add", d => new Sequential(new Dense(5, 3, device: d), Activation.Tanh(), new Dense(3, 2, bias: false, device: d)), new long[] { 4, 5 }),
        new Case("conv_stride_padding", d => new Sequential(new Conv2D(3, 6, 3, stride: 2, padding: 1, device: d), Activation.Relu()), new long[] { 3, 11, 13 }),
        new Case("conv_dilation_groups_no_bias", d => new Sequential(new Conv2D(4, 6, (3, 2), stride: (1, 2), padding: (2, 1), dilation: (2, 1), groups: 2, bias: false, device: d)), new long[] { 4, 9, 7 }),
        new Case("conv_depthwise", d => new Sequential(new Conv2D(5, 5, 3, padding: 1, groups: 5, device: d)), new long[] { 5, 7, 7 }),
        new Case("maxpool_padding", d => new Sequential(new MaxPool2D(3, stride: 2, padding: 1)), new long[] { 2, 9, 11 }),
        new Case("avgpool_count_include_pad", d => new Sequential(new AvgPool2D(3, stride: 2, padding: 1, countIncludePad: true)), new long[] { 2, 9, 11 }),
        new Case("avgpool_exclude_pad", d => new Sequential(new AvgPool2D((3, 2), stride: (2, 1), padding: (1, 1), countIncludePad: false)), new long[] { 3, 7, 5 }),
        new Case("global_avgpool", d => new Sequential(new Conv2D(2, 3, 2, device: d), new GlobalAvgPool2D(), new Dense(3, 2, device: d)), new long[] { 2, 5, 7 }),
        new Case("batchnorm2d", d => new Sequential(new Conv2D(3, 5, 3, device: d), new BatchNorm2D(5, eps: 1e-3f, device: d), Activation.Relu()), new long[] { 3, 7, 6 }),
        new Case("batchnorm1d_features", d => new Sequential(new Dense(6, 7, device: d), new BatchNorm1D(7, device: d)), new long[] { 6 }),
        new Case("batchnorm1d_length", d => new Sequential(new BatchNorm1D(3, device: d)), new long[] { 3, 5 }),
        new Case("leaky_relu", d => new Sequential(new Dense(5, 7, device: d), Activation.LeakyRelu(0.2f)), new long[] { 5 }),
        new Case("sigmoid", d => new Sequential(new Dense(5, 7, device: d), Activation.Sigmoid()), new long[] { 5 }),
        new Case("gelu", d => new Sequential(new Dense(5, 7, device: d), Activation.Gelu()), new long[] { 5 }),
        new Case("softmax", d => new Sequential(new Dense(5, 7, device: d), Activation.Softmax()), new long[] { 5 }),
        new Case("softmax_rank3_last_axis", d => new Sequential(new Dense(5, 3, device: d), Activation.Softmax()), new long[] { 4, 5 }),
        new Case("dropout_is_identity", d => new Sequential(new Dense(5, 7, device: d), new Dropout(0.5f), new Dense(7, 2, device: d)), new long[] { 5 }),
        new Case("flatten_reshape", d => new Sequential(new Flatten(), new Reshape(3, -1), new Dense(4, 2, device: d)), new long[] { 2, 2, 3 }),
        new Case("reshape_to_image", d => new Sequential(new Dense(12, 24, device: d), new Reshape(2, -1, 3), new Conv2D(2, 3, 2, device: d), new Flatten()), new long[] { 12 }),
        new Case("nested_sequential", d => new Sequential(new Sequential(new Dense(4, 6, device: d), Activation.Relu()), new Sequential(new Sequential(new Dense(6, 3, device: d)))), new long[] { 4 }),
        new Case("functional_residual_and_gate", d =>
        {
            var x = Symbolic.Input(6);
            var h = Activation.Relu().Call(new Dense(6, 6, device: d).Call(x));
            var residual = new Dense(6, 6, device: d).Call(h) + x;
            var gate = Activation.Sigmoid().Call(new Dense(6, 6, device: d).Call(x));
            return new Functional(x, new Dense(6, 3, device: d).Call(residual * gate));
        }, new long[] { 6 }),
        new Case("functional_shared_layer", d =>
        {
            var x = Symbolic.Input(5);
            var shared = new Dense(5, 5, device: d);
            return new Functional(x, shared.Call(Activation.Tanh().Call(shared.Call(x))));
        }, new long[] { 5 }),
        new Case("mnist_cnn_shape", d => new Sequential(
            new Conv2D(1, 4, 3, padding: 1, device: d), new BatchNorm2D(4, device: d), Activation.Relu(), new MaxPool2D(2),
            new Conv2D(4, 6, 3, device: d), Activation.Relu(), new MaxPool2D(2), new Flatten(), new Dense(6 * 2 * 2, 10, device: d)), new long[] { 1, 12, 12 }),
        // Recurrent layers: T = 6 steps of 5 features, 7 units (gate blocks of 7 rows: a wrong gate order shows).
        new Case("simple_rnn_last", d => new Sequential(new SimpleRNN(5, 7, device: d)), new long[] { 6, 5 }),
        new Case("simple_rnn_sequences_backwards", d => new Sequential(new SimpleRNN(5, 7, returnSequences: true, goBackwards: true, device: d)), new long[] { 6, 5 }),
        new Case("lstm_sequences_then_dense", d => new Sequential(new LSTM(5, 7, returnSequences: true, device: d), new Dense(7, 3, device: d)), new long[] { 6, 5 }),
        new Case("lstm_last_backwards", d => new Sequential(new LSTM(5, 7, goBackwards: true, device: d)), new long[] { 6, 5 }),
        new Case("lstm_no_bias_return_state", d => new Sequential(new LSTM(5, 7, returnState: true, bias: false, device: d)), new long[] { 6, 5 }),
        new Case("gru_sequences", d => new Sequential(new GRU(5, 7, returnSequences: true, device: d)), new long[] { 6, 5 }),
        new Case("gru_last", d => new Sequential(new GRU(5, 7, device: d)), new long[] { 6, 5 }),
        new Case("gru_sequences_backwards", d => new Sequential(new GRU(5, 7, returnSequences: true, goBackwards: true, device: d)), new long[] { 6, 5 }),
        new Case("stacked_lstm_gru", d => new Sequential(new LSTM(5, 7, returnSequences: true, device: d), new GRU(7, 3, device: d)), new long[] { 6, 5 }),
        new Case("bidirectional_lstm_concat_sequences", d => new Sequential(new Bidirectional(new LSTM(5, 7, returnSequences: true, device: d))), new long[] { 6, 5 }),
        new Case("bidirectional_lstm_concat_last", d => new Sequential(new Bidirectional(new LSTM(5, 7, device: d))), new long[] { 6, 5 }),
        new Case("bidirectional_gru_sum_sequences", d => new Sequential(new Bidirectional(new GRU(5, 7, returnSequences: true, device: d), "sum")), new long[] { 6, 5 }),
        new Case("bidirectional_gru_ave_last", d => new Sequential(new Bidirectional(new GRU(5, 7, device: d), "ave")), new long[] { 6, 5 }),
        new Case("bidirectional_rnn_mul_sequences", d => new Sequential(new Bidirectional(new SimpleRNN(5, 7, returnSequences: true, device: d), "mul")), new long[] { 6, 5 }),
        new Case("bidirectional_rnn_mul_last", d => new Sequential(new Bidirectional(new SimpleRNN(5, 7, device: d), "mul")), new long[] { 6, 5 }),
        new Case("lstm_one_step", d => new Sequential(new LSTM(5, 7, returnSequences: true, device: d)), new long[] { 1, 5 }),
    };

    private static IEnumerable<TestCaseData> CasesOnDevices()
    {
        foreach (var c in Cases())
            foreach (var device in TestDevices.All())
            {
                var args = device.Arguments;
                yield return new TestCaseData(c, args[0], args[1], args[2]).SetArgDisplayNames(c.Name, (string)args[0]!);
            }
    }

    [TestCaseSource(nameof(CasesOnDevices))]
    public void Export_runs_in_onnx_runtime_like_forward(Case c, string deviceName, DeviceKind kind, string requirement)
    {
        var device = TestDevices.Require(deviceName, kind, requirement);
        using var scope = new DisposeScope();
        using var model = c.Create(device);
        OnnxTestSupport.Randomize(model, seed: 7);
        model.Eval();
        var path = Path.Combine(dir, c.Name + ".onnx");
        Onnx.Export(model, path, model is Functional ? null : c.Sample);
        OnnxTestSupport.Check(path);

        var random = new Random(11);
        foreach (long batch in new long[] { 1, 3 })
        {
            var shape = new[] { batch }.Concat(c.Sample).ToArray();
            var input = new float[Tensor.ShapeSize(shape)];
            for (int i = 0; i < input.Length; i++) input[i] = (float)(random.NextDouble() * 4 - 2);
            var ours = model.Forward(Tensor.FromArray(input, shape, device));
            var (theirs, theirShape) = OnnxTestSupport.RunOrt(path, input, shape);
            double error = OnnxTestSupport.AssertClose(ours.ToArray(), ours.ShapeArray, theirs, theirShape, Tolerance, $"{c.Name} batch {batch} on {deviceName}");
            TestContext.Out.WriteLine($"{c.Name} batch {batch} on {deviceName}: max error {error:E2}");
        }
    }

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.All))]
    public void An_embedding_model_takes_int64_token_ids(string deviceName, DeviceKind kind, string requirement)
    {
        var device = TestDevices.Require(deviceName, kind, requirement);
        using var scope = new DisposeScope();
        using var model = new Sequential(new Embedding(11, 4, device: device), new LSTM(4, 5, returnSequences: true, device: device), new Dense(5, 3, device: device));
        OnnxTestSupport.Randomize(model, seed: 3);
        model.Eval();
        var path = Path.Combine(dir, "embedding.onnx");
        Onnx.Export(model, path, new long[] { 7 });
        OnnxTestSupport.Check(path);
        var proto = ModelProto.Parser.ParseFrom(File.ReadAllBytes(path));
        Assert.That(proto.Graph.Input.Single().Type.TensorType.ElemType, Is.EqualTo((int)TensorProto.Types.DataType.Int64));
        var random = new Random(5);
        foreach (long batch in new long[] { 1, 3 })
        {
            var shape = new[] { batch, 7L };
            var ids = Enumerable.Range(0, (int)(batch * 7)).Select(_ => (long)random.Next(11)).ToArray();
            var ours = model.Forward(Tensor.FromArray(ids, shape, device));
            var (theirs, theirShape) = OnnxTestSupport.RunOrt(path, ids, shape);
            double error = OnnxTestSupport.AssertClose(ours.ToArray(), ours.ShapeArray, theirs, theirShape, Tolerance, $"embedding batch {batch} on {deviceName}");
            TestContext.Out.WriteLine($"embedding batch {batch} on {deviceName}: max error {error:E2}");
        }
    }

    [Test]
    public void An_embedding_that_is_not_the_first_layer_is_refused()
    {
        using var model = new Sequential(new Dense(3, 3), new Embedding(5, 2));
        var e = Assert.Throws<NotSupportedException>(() => Onnx.ExportToBytes(model, new long[] { 3 }))!;
        Assert.That(e.Message, Does.Contain("Embedding '1'"));
    }

    [Test]
    public void A_stateful_recurrent_layer_is_refused_naming_the_layer_and_the_option()
    {
        using var model = new Sequential(new Dense(3, 3), new Sequential(new GRU(3, 4, stateful: true)));
        var e = Assert.Throws<NotSupportedException>(() => Onnx.ExportToBytes(model, new long[] { 2, 3 }))!;
        Assert.That(e.Message, Does.Contain("GRU '1.0'").And.Contain("stateful"));
    }

    [Test]
    public void Initializers_carry_the_state_names_and_nodes_the_module_paths()
    {
        using var model = new Sequential(new Conv2D(1, 2, 3), new BatchNorm2D(2), Activation.Relu(), new Flatten(), new Dense(2 * 3 * 3, 4));
        var proto = ModelProto.Parser.ParseFrom(Onnx.ExportToBytes(model, new long[] { 1, 5, 5 }));
        Assert.That(proto.Graph.Initializer.Select(t => t.Name), Is.EquivalentTo(model.NamedState().Select(s => s.Name)));
        Assert.That(proto.Graph.Node.Select(n => n.Name), Is.EqualTo(new[] { "0", "1", "2", "3", "4" }));
        Assert.That(proto.Graph.Node.Select(n => n.OpType), Is.EqualTo(new[] { "Conv", "BatchNormalization", "Relu", "Flatten", "Gemm" }));
        Assert.That(proto.OpsetImport.Single().Version, Is.EqualTo(17));
        Assert.That(proto.IrVersion, Is.EqualTo(8));
        Assert.That(proto.Graph.Input.Single().Type.TensorType.Shape.Dim[0].DimParam, Is.EqualTo("N"));
        Assert.That(proto.Graph.Output.Single().Type.TensorType.Shape.Dim.Select(d => d.DimValue).Skip(1), Is.EqualTo(new long[] { 4 }));
    }

    [Test]
    public void The_export_is_the_inference_form_whatever_the_training_mode()
    {
        using var model = new Sequential(new Conv2D(2, 3, 3), new BatchNorm2D(3), new Dropout(0.5f), new Flatten(), new Dense(3 * 3 * 3, 2));
        OnnxTestSupport.Randomize(model, seed: 1);
        var training = Onnx.ExportToBytes(model.Train(), new long[] { 2, 5, 5 });
        var evaluation = Onnx.ExportToBytes(model.Eval(), new long[] { 2, 5, 5 });
        Assert.That(training, Is.EqualTo(evaluation));
        Assert.That(ModelProto.Parser.ParseFrom(training).Graph.Node.Select(n => n.OpType), Does.Contain("Identity").And.Contain("BatchNormalization"));
    }

    private sealed class Doubler : Module
    {
        public override Tensor Forward(Tensor input) => input.Add(input);
    }

    [Test]
    public void An_unknown_layer_is_refused_naming_its_path_and_type_and_nothing_is_written()
    {
        using var model = new Sequential(new Dense(3, 3), new Sequential(Activation.Relu(), new Doubler()));
        var path = Path.Combine(dir, "model.onnx");
        File.WriteAllText(path, "previous");
        var e = Assert.Throws<NotSupportedException>(() => Onnx.Export(model, path, new long[] { 3 }))!;
        Assert.That(e.Message, Does.Contain("'1.1'").And.Contain("Doubler"));
        Assert.That(File.ReadAllText(path), Is.EqualTo("previous"), "the previous file is untouched");
        Assert.That(Directory.GetFiles(dir), Has.Length.EqualTo(1), "no temporary is left");
    }

    [Test]
    public void A_sequential_without_sample_shape_is_refused()
    {
        using var model = new Sequential(new Dense(3, 3));
        var e = Assert.Throws<ArgumentException>(() => Onnx.Export(model, Path.Combine(dir, "m.onnx")))!;
        Assert.That(e.Message, Does.Contain("sampleShape"));
        Assert.That(Directory.GetFiles(dir), Is.Empty);
    }

    [Test]
    public void The_checker_run_by_these_tests_rejects_a_wrong_output_shape()
    {
        // So that a passing Check means something: the same model with its declared output size off by one.
        using var model = new Sequential(new Dense(3, 4));
        var proto = ModelProto.Parser.ParseFrom(Onnx.ExportToBytes(model, new long[] { 3 }));
        var path = Path.Combine(dir, "good.onnx");
        File.WriteAllBytes(path, proto.ToByteArray());
        Assert.That(OnnxTestSupport.CheckerRejection(path), Is.Null);
        proto.Graph.Output[0].Type.TensorType.Shape.Dim[1].DimValue = 5;
        File.WriteAllBytes(path, proto.ToByteArray());
        Assert.That(OnnxTestSupport.CheckerRejection(path), Does.Contain("ShapeInferenceError"));
    }

    [Test]
    public void A_functional_model_takes_its_sample_shape_from_its_input_and_refuses_another()
    {
        var x = Symbolic.Input(4);
        using var model = new Functional(x, new Dense(4, 2).Call(x));
        var proto = ModelProto.Parser.ParseFrom(Onnx.ExportToBytes(model));
        Assert.That(proto.Graph.Input.Single().Type.TensorType.Shape.Dim.Select(d => d.DimValue).Skip(1), Is.EqualTo(new long[] { 4 }));
        var e = Assert.Throws<ArgumentException>(() => Onnx.ExportToBytes(model, new long[] { 5 }))!;
        Assert.That(e.Message, Does.Contain("[5]").And.Contain("[4]"));
    }

    [Test]
    public void A_sample_shape_that_does_not_fit_is_refused_naming_the_layer()
    {
        using var model = new Sequential(new Dense(3, 4), new Dense(5, 2));
        var e = Assert.Throws<ShapeMismatchException>(() => Onnx.ExportToBytes(model, new long[] { 3 }))!;
        Assert.That(e.Message, Does.Contain("'1'").And.Contain("[N, 4]"));
    }

    [Test]
    public void A_write_into_a_missing_folder_fails_with_an_IOException_naming_the_target()
    {
        using var model = new Sequential(new Dense(3, 3));
        var path = Path.Combine(dir, "absent", "m.onnx");
        var e = Assert.Throws<IOException>(() => Onnx.Export(model, path, new long[] { 3 }))!;
        Assert.That(e.Message, Does.Contain(path));
    }
}
