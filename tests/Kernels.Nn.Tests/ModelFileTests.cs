using NUnit.Framework;

namespace Kernels.Nn.Tests;

/// <summary>
/// Whole-model files (Module.Save / Module.Load, Model.Save / Model.Load) and the JSON model spec (ModelSpec):
/// every layer type survives a save and a load on each device with bit-identical outputs, a hand-written spec
/// builds and trains, and bad specs fail naming the JSON path of the field.
/// </summary>
[TestFixture]
public class ModelFileTests
{
    private string dir = "";

    [SetUp]
    public void MakeDirectory() => dir = Directory.CreateTempSubdirectory("kernels-modelfile-").FullName;

    [TearDown]
    public void RemoveDirectory()
    {
        try { Directory.Delete(dir, recursive: true); } catch (IOException) { }
    }

    /// <summary>Every image layer: groups, dilation, stride, padding, both poolings, both batch norms, leaky_relu, softmax.</summary>
    private static Sequential ImageNet(Device device) => new(
        new Conv2D(2, 4, kernelSize: 3, stride: (1, 2), padding: (1, 2), dilation: (2, 1), groups: 2, seed: 1, device: device),
        new BatchNorm2D(4, momentum: 0.2f, eps: 1e-3f, device: device),
        Activation.LeakyRelu(0.2f),
        new MaxPool2D(3, stride: 2, padding: 1),
        new AvgPool2D((2, 1), padding: (1, 0), countIncludePad: false),
        new Conv2D(4, 6, kernelSize: (1, 2), bias: false, seed: 2, device: device),
        new Sequential(new GlobalAvgPool2D(), new Dense(6, 5, seed: 3, device: device)),
        new BatchNorm1D(5, device: device),
        Activation.Gelu(),
        new Dropout(0.3f, seed: 9),
        new Dense(5, 3, bias: false, seed: 4, device: device),
        Activation.Softmax());

    /// <summary>A functional graph: a residual add, a gating mul, one layer used at two places, Reshape and Flatten.</summary>
    private static Functional Graph(Device device)
    {
        var x = Symbolic.Input(12);
        var shared = new Dense(12, 12, seed: 1, device: device);
        var h = Activation.Tanh().Call(shared.Call(x));
        var r = shared.Call(h) + x;
        var g = Activation.Sigmoid().Call(new Dense(12, 12, seed: 2, device: device).Call(x)) * r;
        var image = new Flatten().Call(new Reshape(3, 4).Call(g));
        return new Functional(x, new Dense(12, 2, seed: 3, device: device).Call(image));
    }

    /// <summary>The sequence layers: Embedding, Bidirectional LSTM, GRU, SimpleRNN.</summary>
    private static Sequential SequenceNet(Device device) => new(
        new Embedding(11, 4, paddingIdx: 0, seed: 1, device: device),
        new Bidirectional(new LSTM(4, 3, returnSequences: true, seed: 2, device: device), mergeMode: "concat"),
        new GRU(6, 3, returnSequences: true, seed: 3, device: device),
        new SimpleRNN(3, 2, goBackwards: true, bias: false, seed: 4, device: device));

    private static float[] Run(Module m, Tensor x)
    {
        using var y = m.Forward(x);
        return y.ToArray();
    }

    private static void AssertSaveLoadRoundTrip(Module original, Tensor input, Device device, string path)
    {
        // Training steps move BatchNorm's running statistics away from their initial values.
        original.Train();
        using (var y = original.Forward(input)) { }
        original.Eval();
        var expected = Run(original, input);
        original.Save(path);
        using var loaded = Module.Load(path, device);
        loaded.Eval();
        Assert.That(loaded.GetType(), Is.EqualTo(original.GetType()));
        Assert.That(ModelSpec.ToJson(loaded), Is.EqualTo(ModelSpec.ToJson(original)), "the spec survives");
        Assert.That(loaded.NamedState().Select(p => p.Name), Is.EqualTo(original.NamedState().Select(p => p.Name)));
        foreach (var ((name, a), (_, b)) in original.NamedState().Zip(loaded.NamedState()))
        {
            Assert.That(ReferenceEquals(b.Device, device), name);
            Assert.That(b.ToArray(), Is.EqualTo(a.ToArray()), name);
        }
        Assert.That(Run(loaded, input).Select(BitConverter.SingleToInt32Bits), Is.EqualTo(expected.Select(BitConverter.SingleToInt32Bits)), "outputs bit for bit");
    }

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.All))]
    public void Image_layers_save_and_load_with_identical_outputs(string name, DeviceKind kind, string require)
    {
        var device = TestDevices.Require(name, kind, require);
        using var m = ImageNet(device);
        using var x = Tensor.Uniform(new long[] { 3, 2, 9, 10 }, -1, 1, 5, device);
        AssertSaveLoadRoundTrip(m, x, device, Path.Combine(dir, "image.safetensors"));
    }

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.All))]
    public void Functional_graph_saves_and_loads_with_its_wiring(string name, DeviceKind kind, string require)
    {
        var device = TestDevices.Require(name, kind, require);
        using var m = Graph(device);
        using var x = Tensor.Uniform(new long[] { 4, 12 }, -1, 1, 6, device);
        AssertSaveLoadRoundTrip(m, x, device, Path.Combine(dir, "graph.safetensors"));
        Assert.That(m.NamedParameters().Count(), Is.EqualTo(6), "the shared layer is saved once");
    }

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.All))]
    public void Sequence_layers_save_and_load_with_identical_outputs(string name, DeviceKind kind, string require)
    {
        var device = TestDevices.Require(name, kind, require);
        using var m = SequenceNet(device);
        using var ids = Tensor.FromArray(new long[] { 1, 2, 3, 0, 4, 5, 6, 7, 10, 9, 8, 0 }, new long[] { 3, 4 }, device);
        AssertSaveLoadRoundTrip(m, ids, device, Path.Combine(dir, "sequence.safetensors"));
    }

    [Test]
    public void Model_Save_and_Load_wrap_the_network()
    {
        var path = Path.Combine(dir, "model.safetensors");
        using var model = new Model(new Sequential(new Dense(3, 2, seed: 1), Activation.Relu()));
        model.Save(path);
        using var loaded = Model.Load(path);
        using var x = Tensor.FromArray(new[] { 1f, -2f, 3f }, new long[] { 1, 3 });
        Assert.That(Run(loaded.Network, x), Is.EqualTo(Run(model.Network, x)));
        Assert.That(ReferenceEquals(loaded.Device, Device.Cpu));
    }

    private sealed class Custom : Module
    {
        public override Tensor Forward(Tensor input) => input;
    }

    [Test]
    public void A_module_type_the_spec_does_not_know_fails_to_save_naming_it_and_writes_nothing()
    {
        var path = Path.Combine(dir, "custom.safetensors");
        using var m = new Sequential(new Dense(2, 2), new Sequential(new Custom()));
        var e = Assert.Throws<NotSupportedException>(() => m.Save(path))!;
        Assert.That(e.Message, Does.Contain("layers[1].layers[0] is a Kernels.Nn.Tests.ModelFileTests+Custom"));
        Assert.That(File.Exists(path), Is.False);
    }

    [Test]
    public void A_weights_only_file_is_refused_with_advice()
    {
        var path = Path.Combine(dir, "weights.safetensors");
        using var m = new Sequential(new Dense(2, 2));
        m.SaveStateDict(path);
        var e = Assert.Throws<InvalidDataException>(() => Module.Load(path))!;
        Assert.That(e.Message, Does.StartWith(path).And.Contain("no \"kernels.spec\"").And.Contain("LoadStateDict"));
    }

    [Test]
    public void A_model_file_loads_as_a_state_dict_into_the_same_network_built_in_code()
    {
        var path = Path.Combine(dir, "both.safetensors");
        using var m = ImageNet(Device.Cpu);
        m.Save(path);
        using var again = ImageNet(Device.Cpu);
        again.LoadStateDict(path);
        foreach (var ((name, a), (_, b)) in m.NamedState().Zip(again.NamedState()))
            Assert.That(b.ToArray(), Is.EqualTo(a.ToArray()), name);
    }

    [Test]
    public void A_spec_whose_weights_do_not_match_the_file_is_refused()
    {
        // A file whose spec says Dense(2 -> 3) but whose tensors are a Dense(2 -> 2)'s: the strict load refuses it.
        var path = Path.Combine(dir, "mismatch.safetensors");
        using var m = new Sequential(new Dense(2, 2, seed: 1));
        var spec = ModelSpec.ToJson(new Sequential(new Dense(2, 3)), indented: false);
        SafeTensors.Write(path, StateDict.Entries(m), new Dictionary<string, string> { [ModelFile.SpecKey] = spec });
        var e = Assert.Throws<InvalidDataException>(() => Module.Load(path))!;
        Assert.That(e.Message, Does.StartWith(path));
    }

    [Test]
    public void A_spec_claiming_more_weights_than_the_file_holds_is_refused_before_allocating()
    {
        var path = Path.Combine(dir, "huge.safetensors");
        using var m = new Sequential(new Dense(2, 2, seed: 1));
        var spec = "{\"type\": \"Sequential\", \"layers\": [{\"type\": \"Dense\", \"inputs\": 1000000, \"outputs\": 1000000}]}";
        SafeTensors.Write(path, StateDict.Entries(m), new Dictionary<string, string> { [ModelFile.SpecKey] = spec });
        long before = Tensor.LiveCount;
        var e = Assert.Throws<InvalidDataException>(() => Module.Load(path))!;
        Assert.That(e.Message, Does.StartWith(path).And.Contain("layers[0]: Dense(1000000 -> 1000000) would need 1000001000000 parameter and buffer elements; this spec may create at most 6 in all"));
        Assert.That(Tensor.LiveCount, Is.EqualTo(before));
    }

    // ---- Hand-written specs --------------------------------------------------------------------------

    private const string HandWritten = """
        {
          "spec_version": 1,
          "type": "Sequential",
          "layers": [
            {"type": "Reshape", "shape": [1, 4, 4]},
            {"type": "Conv2D", "in_channels": 1, "out_channels": 4, "kernel_size": 3, "padding": 1, "seed": 1},
            {"type": "Activation", "activation": "relu"},
            {"type": "MaxPool2D", "kernel_size": 2},
            {"type": "Flatten"},
            {"type": "Dense", "inputs": 16, "outputs": 2}
          ]
        }
        """;

    [Test]
    public void A_hand_written_spec_builds_trains_and_saves()
    {
        var specPath = Path.Combine(dir, "net.json");
        File.WriteAllText(specPath, HandWritten);
        using var network = ModelSpec.FromFile(specPath);
        // Class 0: bright top half; class 1: bright bottom half.
        var x = new float[64 * 16];
        var y = new long[64];
        var random = new Random(3);
        for (int i = 0; i < 64; i++)
        {
            int c = i % 2;
            for (int p = 0; p < 16; p++) x[i * 16 + p] = (float)random.NextDouble() * 0.5f + ((p < 8) == (c == 0) ? 1f : 0f);
            y[i] = c;
        }
        using var model = new Model(network);
        model.Compile(new Adam(network.Parameters(), 0.05f), "sparse_categorical_crossentropy", "accuracy");
        var history = model.Fit(new ArrayDataset(x, new long[] { 16 }, y), epochs: 15, batchSize: 16, verbose: 0);
        Assert.That(history["loss"][^1], Is.LessThan(history["loss"][0] * 0.5), "the hand-written network learns");
        Assert.That(history["accuracy"][^1], Is.EqualTo(1.0));
        var path = Path.Combine(dir, "trained.safetensors");
        model.Save(path);
        using var loaded = Module.Load(path);
        loaded.Eval();
        network.Eval();
        using var xs = Tensor.FromArray(x.AsSpan(0, 160), new long[] { 10, 16 });
        Assert.That(Run(loaded, xs), Is.EqualTo(Run(network, xs)));
    }

    // Bad specs: each names the JSON path of the field at fault.
    private static readonly object[] BadSpecs =
    {
        new object[] { "[1]", "expected an object, got [1]" },
        new object[] { "{\"type\": \"Sequential\", \"layers\": [", "not valid JSON (line 1" },
        new object[] { "{\"layers\": []}", "type: missing" },
        new object[] { "{\"type\": \"Conv3D\"}", "type: unknown layer type \"Conv3D\"; known: Sequential, Functional, Dense" },
        new object[] { "{\"type\": \"Sequential\", \"layers\": [{\"type\": \"Flatten\"}, {\"type\": \"Flatten\"}, {\"type\": \"Conv2D\", \"in_channels\": 1, \"out_channels\": 2, \"kernel_size\": [3]}]}",
                       "layers[2].kernel_size: expected a positive integer or two positive integers, got [3]" },
        new object[] { "{\"type\": \"Sequential\", \"layers\": [{\"type\": \"Dense\", \"inputs\": 2, \"outputs\": 0}]}", "layers[0].outputs: expected a positive integer, got 0" },
        new object[] { "{\"type\": \"Sequential\", \"layers\": [{\"type\": \"Dense\", \"inputs\": 2}]}", "layers[0].outputs: missing" },
        new object[] { "{\"type\": \"Sequential\", \"layers\": [{\"type\": \"Dense\", \"inputs\": 2, \"outputs\": 2, \"use_bias\": true}]}", "layers[0].use_bias: unknown field for Dense" },
        new object[] { "{\"type\": \"Sequential\", \"layers\": [{\"type\": \"Dense\", \"inputs\": 2, \"outputs\": 2, \"inputs\": 3}]}", "layers[0].inputs: the field appears twice" },
        new object[] { "{\"type\": \"Sequential\", \"layers\": [{\"type\": \"Activation\", \"activation\": \"swish\"}]}", "layers[0].activation: unknown activation 'swish'" },
        new object[] { "{\"type\": \"Sequential\", \"layers\": [{\"type\": \"Dropout\", \"p\": 1}]}", "layers[0].p: expected a probability in [0, 1), got 1" },
        new object[] { "{\"type\": \"Sequential\", \"layers\": [{\"type\": \"Conv2D\", \"in_channels\": 3, \"out_channels\": 4, \"kernel_size\": 1, \"groups\": 2}]}",
                       "layers[0].groups: in_channels = 3 and out_channels = 4 must both be divisible by groups = 2" },
        new object[] { "{\"type\": \"Sequential\", \"layers\": [{\"type\": \"Dense\", \"inputs\": 100000, \"outputs\": 100000}]}",
                       "layers[0]: Dense(100000 -> 100000) would need 10000100000 parameter and buffer elements; this spec may create at most 2147483648 in all" },
        new object[] { "{\"type\": \"Sequential\", \"layers\": [{\"type\": \"Dense\", \"inputs\": 9223372036854775807, \"outputs\": 2}]}", "would need more than 2^63" },
        new object[] { "{\"type\": \"Bidirectional\", \"layer\": {\"type\": \"Dense\", \"inputs\": 2, \"outputs\": 2}}", "layer: Bidirectional wraps a SimpleRNN, LSTM or GRU" },
        new object[] { "{\"type\": \"Functional\", \"input_shape\": [2], \"layers\": [], \"nodes\": [{\"op\": \"input\"}, {\"op\": \"add\", \"inputs\": [0, 2]}], \"output\": 1}",
                       "nodes[1].inputs[1]: expected an earlier node (0..0), got 2" },
        new object[] { "{\"type\": \"Functional\", \"input_shape\": [2], \"layers\": [{\"type\": \"Flatten\"}], \"nodes\": [{\"op\": \"input\"}, {\"layer\": 1, \"inputs\": [0]}], \"output\": 1}",
                       "nodes[1].layer: expected a layer index in 0..0, got 1" },
        new object[] { "{\"type\": \"Functional\", \"input_shape\": [2], \"layers\": [{\"type\": \"Flatten\"}], \"nodes\": [{\"op\": \"input\"}], \"output\": 0}",
                       "layers[0]: the layer is used by no node" },
        new object[] { "{\"type\": \"Functional\", \"input_shape\": [2], \"layers\": [{\"type\": \"Flatten\"}], \"nodes\": [{\"op\": \"input\"}, {\"layer\": 0, \"inputs\": [0]}, {\"op\": \"sub\", \"inputs\": [0, 1]}], \"output\": 2}",
                       "nodes[2].op: expected \"add\" or \"mul\" (or a \"layer\"), got \"sub\"" },
        new object[] { "{\"type\": \"Functional\", \"input_shape\": [2], \"layers\": [{\"type\": \"Flatten\"}], \"nodes\": [{\"op\": \"input\"}, {\"layer\": 0, \"inputs\": [0]}], \"output\": 0}",
                       "layers[0]: the layer is used only by nodes the output (node 0) does not depend on" },
        new object[] { "{\"type\": \"Sequential\", \"layers\": [], \"spec_version\": 2}", "spec_version: version 2 is not supported" },
    };

    [TestCaseSource(nameof(BadSpecs))]
    public void A_bad_spec_is_refused_naming_the_JSON_path(string json, string expected)
    {
        long before = Tensor.LiveCount;
        var e = Assert.Throws<InvalidDataException>(() => ModelSpec.FromJson(json).Dispose())!;
        Assert.That(e.Message, Does.Contain(expected));
        Assert.That(Tensor.LiveCount, Is.EqualTo(before), "nothing built is left behind");
    }

    [Test]
    public void A_JSON_syntax_error_is_reported_by_position_without_quoting_the_input()
    {
        // Found by the spec fuzzer: System.Text.Json's own message quotes the rest of the input, here 5000 bytes.
        var e = Assert.Throws<InvalidDataException>(() => ModelSpec.FromJson("{\"type\": tru" + new string('x', 5000)))!;
        Assert.That(e.Message, Is.EqualTo("not valid JSON (line 1, byte 13 of that line)"));
    }

    [Test]
    public void A_bad_spec_file_is_named_in_the_message()
    {
        var path = Path.Combine(dir, "bad.json");
        File.WriteAllText(path, "{\"type\": \"Sequential\", \"layers\": [{\"type\": \"Dense\", \"inputs\": 2, \"outputs\": 2}, {\"type\": \"Dropout\", \"p\": \"high\"}]}");
        var e = Assert.Throws<InvalidDataException>(() => ModelSpec.FromFile(path))!;
        Assert.That(e.Message, Is.EqualTo($"{path}: layers[1].p: expected a finite number, got \"high\""));
    }
}
