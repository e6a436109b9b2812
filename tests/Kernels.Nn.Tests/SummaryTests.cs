using NUnit.Framework;

namespace Kernels.Nn.Tests;

/// <summary>
/// Module.Summary / ModelSummary: parameter counts against the layers' formulas (and PyTorch's numbers for the
/// MNIST CNN's twin), output shapes against forward passes on real batches, functional graphs, and that the
/// summary leaves the network as it found it (training flags, stateful layers' states, no live tensors).
/// </summary>
[TestFixture]
public class SummaryTests
{
    // samples/MnistCnn's network.
    private static Sequential MnistCnn() => MnistNetworks.Cnn(Device.Cpu);

    private static SummaryRow Row(ModelSummary summary, string path) =>
        summary.Rows.SingleOrDefault(r => r.Path == path) ?? throw new AssertionException($"no row '{path}' in:\n{summary}");

    [Test]
    public void MnistCnn_counts_match_pytorch_twin_and_output_shapes_match_a_real_batch()
    {
        using var network = MnistCnn();
        var summary = ModelSummary.Of(network, 784);

        // PyTorch's twin (nn.Unflatten, Conv2d(bias=False), BatchNorm2d, ..., Linear), torch 1.13:
        // [sum(p.numel()) for m in net] and the float buffers (running_mean, running_var).
        long[] torchPerLayer = { 0, 288, 64, 0, 0, 18432, 128, 0, 0, 0, 401536, 0, 0, 1290 };
        for (int i = 0; i < torchPerLayer.Length; i++)
            Assert.That(Row(summary, $"{i}").Parameters, Is.EqualTo(torchPerLayer[i]), $"layer {i}");
        Assert.That(summary.TrainableParameters, Is.EqualTo(421_738));
        Assert.That(summary.NonTrainableValues, Is.EqualTo(192), "running_mean + running_var of 32 and 64 channels");
        Assert.That(summary.Bytes, Is.EqualTo(4 * (421_738 + 192)));

        // Each layer's output for a real batch of 3, layer by layer, in eval mode (what the summary runs).
        network.Eval();
        using var scope = new DisposeScope();
        var x = Tensor.Uniform(new long[] { 3, 784 }, -1, 1, seed: 9);
        for (int i = 0; i < network.Layers.Count; i++)
        {
            x = network.Layers[i].Forward(x);
            var expected = x.ShapeArray.ToArray();
            expected[0] = -1;
            Assert.That(Row(summary, $"{i}").OutputShape, Is.EqualTo(expected), $"layer {i} ({network.Layers[i].GetType().Name})");
        }
        Assert.That(Row(summary, "input").OutputShape, Is.EqualTo(new long[] { -1, 784 }));
    }

    [Test]
    public void Parameter_counts_follow_the_layer_formulas()
    {
        const long i = 12, u = 20;
        using var network = new Sequential(
            new Embedding(100, i, paddingIdx: 0),
            new Bidirectional(new LSTM(i, u, returnSequences: true)),
            new GRU(2 * u, u, returnSequences: true),
            new SimpleRNN(u, 6),
            new Dense(6, 5, bias: false),
            new BatchNorm1D(5));
        var summary = ModelSummary.Of(network, Dtype.Int64, 7);

        Assert.That(Row(summary, "0").Parameters, Is.EqualTo(100 * i), "Embedding: rows x dims");
        Assert.That(Row(summary, "1.forward").Parameters, Is.EqualTo(4 * u * (i + u + 2)), "LSTM: 4 units (in + units + 2)");
        Assert.That(Row(summary, "1.backward").Parameters, Is.EqualTo(4 * u * (i + u + 2)), "the backward LSTM has its own weights");
        Assert.That(Row(summary, "1").Parameters, Is.EqualTo(8 * u * (i + u + 2)), "Bidirectional: both directions");
        Assert.That(Row(summary, "2").Parameters, Is.EqualTo(3 * u * (2 * u + u + 2)), "GRU: 3 units (in + units + 2)");
        Assert.That(Row(summary, "3").Parameters, Is.EqualTo(6 * (u + 6 + 2)), "SimpleRNN: units (in + units + 2)");
        Assert.That(Row(summary, "4").Parameters, Is.EqualTo(6 * 5), "Dense without bias: in x out");
        Assert.That(Row(summary, "5").Parameters, Is.EqualTo(2 * 5), "BatchNorm: gamma and beta");
        Assert.That(summary.NonTrainableValues, Is.EqualTo(2 * 5), "BatchNorm's running mean and variance");
        Assert.That(summary.TrainableParameters, Is.EqualTo(network.ParameterCount));

        Assert.That(Row(summary, "0").OutputShape, Is.EqualTo(new long[] { -1, 7, i }));
        Assert.That(Row(summary, "1.forward").OutputShape, Is.EqualTo(new long[] { -1, 7, u }));
        Assert.That(Row(summary, "1").OutputShape, Is.EqualTo(new long[] { -1, 7, 2 * u }), "concat of both directions");
        Assert.That(Row(summary, "3").OutputShape, Is.EqualTo(new long[] { -1, 6 }), "last step only");
        Assert.That(Row(summary, "1.forward").Depth, Is.EqualTo(1), "Bidirectional's layers sit under it");
        Assert.That(Row(summary, "1").Layer, Is.EqualTo("Bidirectional(LSTM, concat)"));
        Assert.That(Row(summary, "1.backward").Layer, Is.EqualTo("LSTM(12->20, sequences, backwards)"));
    }

    [Test]
    public void Conv2D_row_names_its_arguments_and_counts_grouped_weights()
    {
        // out * in / groups * kh * kw + out; PyTorch's Conv2d(8, 16, (3, 5), groups=4) has 496 too.
        using var network = new Sequential(new Conv2D(8, 16, kernelSize: (3, 5), stride: 2, padding: (1, 2), dilation: 1, groups: 4));
        var summary = ModelSummary.Of(network, 8, 9, 11);
        Assert.That(Row(summary, "0").Parameters, Is.EqualTo(16 * 8 / 4 * 3 * 5 + 16).And.EqualTo(496));
        Assert.That(Row(summary, "0").Layer, Is.EqualTo("Conv2D(8->16, 3x5, stride 2, pad 1x2, groups 4)"));
        Assert.That(Row(summary, "0").OutputShape, Is.EqualTo(new long[] { -1, 16, 5, 6 }), "(9 + 2 - 3) / 2 + 1 = 5, (11 + 4 - 5) / 2 + 1 = 6");
    }

    [Test]
    public void Functional_graph_shows_every_node_merges_and_shared_layers_once_in_the_totals()
    {
        var x = Symbolic.Input(16);
        var shared = new Dense(16, 16, seed: 1);
        var h = Activation.Relu().Call(shared.Call(x));
        var residual = h + x;
        var again = shared.Call(residual);           // the same Dense a second time
        var gated = again * new Sequential(new Dense(16, 16, seed: 2), Activation.Sigmoid()).Call(residual);
        using var network = new Functional(x, new Dense(16, 3, seed: 3).Call(gated));

        var summary = ModelSummary.Of(network);      // a functional model knows its input shape
        string text = network.Summary();
        Assert.That(text, Is.EqualTo(summary.ToString()));

        Assert.That(summary.Rows.Select(r => r.Path), Is.EqualTo(new[] { "input", "0", "1", "add", "0[1]", "2", "2.0", "2.1", "mul", "3" }));
        Assert.That(Row(summary, "add").ConnectedTo, Is.EqualTo(new[] { "1", "input" }));
        Assert.That(Row(summary, "0[1]").ConnectedTo, Is.EqualTo(new[] { "add" }));
        Assert.That(Row(summary, "0[1]").Parameters, Is.EqualTo(0), "the second call holds no weights of its own");
        Assert.That(Row(summary, "mul").ConnectedTo, Is.EqualTo(new[] { "0[1]", "2" }));
        Assert.That(Row(summary, "3").OutputShape, Is.EqualTo(new long[] { -1, 3 }));
        Assert.That(summary.TrainableParameters, Is.EqualTo(2 * (16 * 16 + 16) + 16 * 3 + 3).And.EqualTo(network.ParameterCount));
        Assert.That(text, Does.Contain("Connected to"));
        Assert.That(text, Does.Contain("Trainable parameters: 595"));
    }

    [Test]
    public void Summary_leaves_training_flags_states_and_memory_as_they_were()
    {
        var lstm = new LSTM(3, 4, stateful: true, seed: 1);
        var dropout = new Dropout(0.5f, seed: 2);
        using var network = new Sequential(lstm, dropout, new Dense(4, 2, seed: 3));
        using var twinLstm = new LSTM(3, 4, stateful: true, seed: 1);
        dropout.Eval();                              // a mixed state: only the dropout in eval mode
        using var scope = new DisposeScope();
        var batch = Tensor.Uniform(new long[] { 2, 5, 3 }, -1, 1, seed: 4);
        lstm.Forward(batch);                         // carries states of a batch of 2
        twinLstm.Forward(batch);

        long live = Tensor.LiveCount;
        var text = network.Summary(5, 3);
        Assert.That(Tensor.LiveCount, Is.EqualTo(live), "every tensor of the trial batch was freed");
        Assert.That(text, Does.Contain("LSTM(3->4, stateful)"));
        Assert.That(network.Training, Is.True);
        Assert.That(lstm.Training, Is.True);
        Assert.That(dropout.Training, Is.False, "the flag set by hand is kept");
        // The carried states of the batch of 2 are still there: the next batch continues from them.
        Assert.That(lstm.Forward(batch).ToArray(), Is.EqualTo(twinLstm.Forward(batch).ToArray()));
    }

    [Test]
    public void A_sample_shape_a_layer_refuses_names_the_layer_and_leaves_the_network_usable()
    {
        using var network = MnistCnn();
        var e = Assert.Throws<ShapeMismatchException>(() => network.Summary(100))!;
        Assert.That(e.Message, Does.Contain("layer 0 (Reshape(1, 28, 28))").And.Contain("[N, 100]"));
        Assert.That(network.Layers.All(l => l.Training), Is.True, "training flags restored after the error");
        var dense = new Sequential(new Dense(4, 2));
        e = Assert.Throws<ShapeMismatchException>(() => dense.Summary(5))!;
        Assert.That(e.Message, Does.Contain("layer 0 (Dense(4->2))").And.Contain("[N, 5]"));
        Assert.That(ModelSummary.Of(network, 784).Rows, Has.Count.EqualTo(15), "the next summary works");
    }

    [Test]
    public void Without_a_sample_shape_the_layers_are_listed_with_unknown_shapes()
    {
        using var network = new Sequential(new Dense(4, 3), new Sequential(new Dense(3, 2), Activation.Tanh()));
        var summary = ModelSummary.Of(network);
        Assert.That(summary.Rows.Select(r => (r.Path, r.Depth, r.Parameters)),
                    Is.EqualTo(new[] { ("0", 0, 15L), ("1", 0, 8L), ("1.0", 1, 8L), ("1.1", 1, 0L) }));
        Assert.That(summary.Rows.All(r => r.OutputShape is null), Is.True);
        Assert.That(network.Summary(), Does.Contain("?"));
    }

    [Test]
    public void Frozen_parameters_count_as_non_trainable()
    {
        var first = new Dense(4, 3);
        using var network = new Sequential(first, new Dense(3, 2));
        first.Weight.RequiresGrad = false;
        var summary = ModelSummary.Of(network, 4);
        Assert.That(summary.NonTrainableValues, Is.EqualTo(12));
        Assert.That(summary.TrainableParameters, Is.EqualTo(3 + 3 * 2 + 2));
    }

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.All))]
    public void The_trial_batch_runs_on_the_networks_device(string name, DeviceKind kind, string requireVariable)
    {
        var device = TestDevices.Require(name, kind, requireVariable);
        using var network = new Sequential(
            new Conv2D(1, 4, kernelSize: 3, padding: 1, device: device), new BatchNorm2D(4, device: device), Activation.Relu(),
            new MaxPool2D(2), new Flatten(), new Dense(4 * 4 * 4, 3, device: device));
        long live = Tensor.LiveCount;
        var summary = ModelSummary.Of(network, 1, 8, 8);
        Assert.That(Tensor.LiveCount, Is.EqualTo(live));
        Assert.That(Row(summary, "3").OutputShape, Is.EqualTo(new long[] { -1, 4, 4, 4 }));
        Assert.That(Row(summary, "5").OutputShape, Is.EqualTo(new long[] { -1, 3 }));
        Assert.That(summary.TrainableParameters, Is.EqualTo(4 * 9 + 4 + 2 * 4 + 64 * 3 + 3));
    }

    [Test]
    public void Model_summary_is_the_network_summary()
    {
        using var model = new Model(MnistCnn());
        Assert.That(model.Summary(784), Is.EqualTo(model.Network.Summary(784)));
        Assert.That(model.Summary(784), Does.Contain("Conv2D(1->32, 3x3, stride 1, pad 1, no bias)").And.Contain("[N, 64, 7, 7]"));
    }
}
