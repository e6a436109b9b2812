using NUnit.Framework;

namespace Kernels.Nn.Tests;

/// <summary>
/// Model parallelism in one process (layers of one network on cpu and opencl:0, the activations and their
/// gradients crossing between them) and resuming a restarted training run from its backup. The OpenCL
/// cases skip naming the reason when opencl:0 is absent, and fail then when KERNELS_REQUIRE_OPENCL=1.
/// </summary>
[TestFixture]
public class ModelParallelTests
{
    private static Device OpenCl() => TestDevices.Require("opencl:0", DeviceKind.OpenCL, "KERNELS_REQUIRE_OPENCL");

    [Test]
    public void Gradient_flows_back_through_device_transfers_cpu_opencl_cpu()
    {
        var opencl = OpenCl();
        // f(x, y) = tanh((x * y) computed on opencl:0) on the cpu: both inputs cross to opencl:0 and the
        // product crosses back, so each gradient makes two transfers on its way back to the cpu.
        GradCheck.Check(
            t => t[0].To(opencl).Mul(t[1].To(opencl)).To(Device.Cpu).Tanh(),
            x => x[0].Select((v, i) => Math.Tanh(v * x[1][i])).ToArray(),
            new[] { (GradCheck.Random(15, 1), new long[] { 3, 5 }), (GradCheck.Random(15, 2), new long[] { 3, 5 }) });
    }

    [Test]
    public void A_transfer_is_recorded_only_when_its_input_needs_gradients()
    {
        var opencl = OpenCl();
        using var scope = new DisposeScope();
        var x = Tensor.FromArray(new float[] { 1, 2, 3 });
        Assert.That(x.To(opencl).RequiresGrad, Is.False, "a constant's copy");
        x.RequiresGrad = true;
        var moved = x.To(opencl);
        Assert.That(moved.RequiresGrad, Is.True);
        Assert.That(moved.Device, Is.SameAs(opencl));
        using (Tensor.NoGrad()) Assert.That(x.To(opencl).RequiresGrad, Is.False, "under NoGrad");
        moved.Mul(2f).Sum().Backward();
        Assert.That(x.Grad!.Device, Is.SameAs(Device.Cpu), "the gradient is on the leaf's device");
        Assert.That(x.Grad.ToArray(), Is.EqualTo(new float[] { 2, 2, 2 }));
    }

    // Four Gaussian blobs in 6-D, four classes.
    private static ArrayDataset Blobs(int count, int seed)
    {
        var r = new Random(seed);
        var x = new float[count * 6];
        var y = new long[count];
        for (int i = 0; i < count; i++)
        {
            int c = i % 4;
            for (int j = 0; j < 6; j++) x[6 * i + j] = (float)((j % 4 == c ? 1.5 : 0) + 0.5 * (r.NextDouble() - 0.5));
            y[i] = c;
        }
        return new ArrayDataset(x, new long[] { 6 }, y);
    }

    private static Sequential Mlp(bool dropout = false, int seedOffset = 0)
    {
        var net = new Sequential(new Dense(6, 24, seed: 1 + seedOffset), Activation.Relu(), new Dense(24, 16, seed: 2 + seedOffset), Activation.Tanh());
        if (dropout) net.Add(new Dropout(0.25f, seed: 7));
        net.Add(new Dense(16, 4, seed: 3 + seedOffset));
        return net;
    }

    private static Optimizer MakeOptimizer(string kind, Module net) => kind switch
    {
        "adam" => new Adam(net.Parameters(), 0.01f),
        _ => new Sgd(net.Parameters(), 0.05f, momentum: 0.9f),
    };

    [TestCase("adam")]
    [TestCase("sgd")]
    public void An_mlp_split_across_cpu_and_opencl_trains_like_the_same_mlp_on_the_cpu(string optimizer)
    {
        var opencl = OpenCl();
        var data = Blobs(96, 3);
        // Reference: the whole network on the cpu.
        using var single = new Model(Mlp());
        single.Compile(MakeOptimizer(optimizer, single.Network), "sparse_categorical_crossentropy");
        var singleHistory = single.Fit(data, epochs: 4, batchSize: 16, verbose: 0, seed: 5);

        // The same network (same seeds), its middle on opencl:0: cpu -> opencl:0 -> cpu.
        var net = Mlp().PlaceOn((0, Device.Cpu), (2, opencl), (4, Device.Cpu));
        Assert.That(((Dense)net.Layers[2]).Weight.Device, Is.SameAs(opencl));
        Assert.That(((Dense)net.Layers[0]).Weight.Device, Is.SameAs(Device.Cpu));
        using var split = new Model(net);
        Assert.That(split.Device, Is.SameAs(Device.Cpu), "the model's device is its output's");
        split.Compile(MakeOptimizer(optimizer, net), "sparse_categorical_crossentropy");
        var splitHistory = split.Fit(data, epochs: 4, batchSize: 16, verbose: 0, seed: 5);

        // 24 optimizer steps; the only differences are float32 rounding of opencl:0's kernels (another
        // summation order in the GEMMs) against the cpu's: 1e-5 absolute on losses near 1 and weights near 0.3
        // (measured on PoCL: at most 2.4e-7 on the weights, 2e-8 on the losses).
        Assert.That(singleHistory["loss"][^1], Is.LessThan(singleHistory["loss"][0]), "the reference learns");
        Assert.That(splitHistory["loss"], Is.EqualTo(singleHistory["loss"]).Within(1e-5), "loss curve");
        var expected = single.Network.NamedState().Select(p => p.Tensor.ToArray()).ToArray();
        var actual = net.NamedState().Select(p => p.Tensor.ToArray()).ToArray();
        double worst = 0;
        for (int i = 0; i < expected.Length; i++)
            for (int j = 0; j < expected[i].Length; j++) worst = Math.Max(worst, Math.Abs(actual[i][j] - expected[i][j]));
        double worstLoss = splitHistory["loss"].Zip(singleHistory["loss"], (a, b) => Math.Abs(a - b)).Max();
        TestContext.Out.WriteLine($"{optimizer}: largest weight difference {worst:G3}, largest loss difference {worstLoss:G3}");
        for (int i = 0; i < expected.Length; i++)
            Assert.That(actual[i], Is.EqualTo(expected[i]).Within(1e-5), $"tensor {net.NamedState().ElementAt(i).Name}");
    }

    [Test]
    public void A_network_placed_to_end_on_opencl_keeps_its_targets_there()
    {
        var opencl = OpenCl();
        var net = Mlp().PlaceOn((2, opencl));
        using var model = new Model(net);
        Assert.That(model.Device, Is.SameAs(opencl));
        model.Compile(new Adam(net.Parameters(), 0.01f), "sparse_categorical_crossentropy", "accuracy");
        var history = model.Fit(Blobs(64, 4), epochs: 3, batchSize: 16, verbose: 0);
        Assert.That(history["loss"][^1], Is.LessThan(history["loss"][0]));
        Assert.That(Assert.Throws<DeviceMismatchException>(() => new Model(Mlp().PlaceOn((2, opencl)), Device.Cpu))!.Message,
                    Does.Contain("output is on opencl:0"));
    }

    [Test]
    public void A_functional_network_with_a_skip_connection_across_devices_matches_the_cpu_one()
    {
        var opencl = OpenCl();
        // input -> a (cpu) -> b (opencl:0) -> b + a (the merge takes a to opencl:0) -> c (cpu).
        (Functional Net, Dense[] Layers) Build(Device middle)
        {
            var layers = new[] { new Dense(5, 8, seed: 1), new Dense(8, 8, seed: 2, device: middle), new Dense(8, 3, seed: 3) };
            var input = Symbolic.Input(5);
            var a = layers[0].Call(input);
            var b = layers[1].Call(a);
            return (new Functional(input, layers[2].Call(b + a)), layers);
        }
        var (cpuNet, cpuLayers) = Build(Device.Cpu);
        var (splitNet, splitLayers) = Build(opencl);
        using var scope = new DisposeScope();
        var x = Tensor.FromArray(GradCheck.Random(20, 4).Select(v => (float)v).ToArray(), new long[] { 4, 5 });
        var expected = cpuNet.Forward(x);
        var actual = splitNet.Forward(x);
        Assert.That(actual.Device, Is.SameAs(Device.Cpu));
        Assert.That(actual.ToArray(), Is.EqualTo(expected.ToArray()).Within(1e-5));
        expected.Sum().Backward();
        actual.Sum().Backward();
        for (int i = 0; i < 3; i++)
        {
            Assert.That(splitLayers[i].Weight.Grad!.Device, Is.SameAs(splitLayers[i].Weight.Device), $"layer {i}'s gradient stays on its device");
            Assert.That(splitLayers[i].Weight.Grad!.ToArray(), Is.EqualTo(cpuLayers[i].Weight.Grad!.ToArray()).Within(1e-5), $"layer {i}'s weight gradient");
        }
        cpuNet.Dispose();
        splitNet.Dispose();
    }

    [Test]
    public void A_bad_placement_is_a_typed_error_and_moves_nothing()
    {
        var net = Mlp();
        var first = ((Dense)net.Layers[0]).Weight;
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => net.PlaceOn((0, Device.Cpu), (5, Device.Cpu)))!;
        Assert.That(e.Message, Does.Contain("layer 5 does not exist").And.Contain("layers 0 to 4"));
        Assert.Throws<ArgumentOutOfRangeException>(() => net.PlaceOn((-1, Device.Cpu)));
        Assert.That(Assert.Throws<ArgumentException>(() => net.PlaceOn((2, Device.Cpu), (2, Device.Cpu)))!.Message, Does.Contain("increasing"));
        Assert.Throws<ArgumentException>(() => net.PlaceOn());
        Assert.That(Assert.Throws<DeviceNotFoundException>(() => net.PlaceOn((0, Device.Get("opencl:9"))))!.Message, Does.Contain("opencl:9"));
        Assert.That(first.Device, Is.SameAs(Device.Cpu));
        // A plain module does not move activations: its parameters on two devices cannot make a Model.
        if (Device.TryGet("opencl:0", out var opencl))
        {
            var dense = new Dense(3, 2);
            dense.Bias!.MoveTo(opencl);
            Assert.That(Assert.Throws<DeviceMismatchException>(() => new Model(dense))!.Message, Does.Contain("several devices"));
        }
        net.Dispose();
    }

    [Test]
    public void Moving_a_parameter_after_the_optimizer_made_its_state_is_a_typed_error()
    {
        var opencl = OpenCl();
        using var net = Mlp();
        using var optimizer = new Adam(net.Parameters());
        using (var scope = new DisposeScope())
        {
            net.Forward(Tensor.Ones(new long[] { 2, 6 })).Sum().Backward();
            optimizer.Step();   // state on the cpu
        }
        net.PlaceOn((2, opencl));
        using (var scope = new DisposeScope())
        {
            net.Forward(Tensor.Ones(new long[] { 2, 6 })).To(Device.Cpu).Sum().Backward();
            var e = Assert.Throws<DeviceMismatchException>(() => optimizer.Step())!;
            Assert.That(e.Message, Does.Contain("parameter 2 is on opencl:0 but its optimizer state is on cpu"));
        }
    }

    // ---- Resuming from a backup ---------------------------------------------------------------------

    private sealed class Crash : Callback
    {
        public override void OnEpochEnd(int epoch, IReadOnlyDictionary<string, double> logs)
        {
            if (epoch == 1) throw new IOException("simulated crash after epoch 2");
        }
    }

    [TestCase("adam")]
    [TestCase("sgd")]
    public void A_restarted_run_resumes_from_its_backup_to_the_weights_of_an_uninterrupted_run(string optimizer)
    {
        var data = Blobs(80, 6);
        var path = Path.Combine(Path.GetTempPath(), $"kn-backup-{Guid.NewGuid():N}.safetensors");
        try
        {
            // Straight: 4 epochs.
            using var straight = new Model(Mlp(dropout: true));
            straight.Compile(MakeOptimizer(optimizer, straight.Network), "sparse_categorical_crossentropy");
            var straightHistory = straight.Fit(data, epochs: 4, batchSize: 16, verbose: 0, seed: 11);

            // Interrupted after epoch 2 (an exception out of Fit, as a killed process leaves the backup).
            using (var first = new Model(Mlp(dropout: true)))
            {
                first.Compile(MakeOptimizer(optimizer, first.Network), "sparse_categorical_crossentropy");
                Assert.Throws<IOException>(() => first.Fit(data, epochs: 4, batchSize: 16, verbose: 0, seed: 11,
                                                           callbacks: new Callback[] { new BackupAndRestore(path), new Crash() }));
            }
            Assert.That(File.Exists(path), "the backup survives the crash");

            // Restarted: new objects, initialised differently on purpose (the backup must overwrite them).
            using var second = new Model(Mlp(dropout: true, seedOffset: 100));
            second.Compile(MakeOptimizer(optimizer, second.Network), "sparse_categorical_crossentropy");
            var backup = new BackupAndRestore(path);
            var resumedHistory = second.Fit(data, epochs: 4, batchSize: 16, verbose: 0, seed: 11, callbacks: new[] { backup });
            Assert.That(backup.RestoredEpoch, Is.EqualTo(2));
            Assert.That(resumedHistory.Epochs, Is.EqualTo(2), "only epochs 3 and 4 ran");
            Assert.That(File.Exists(path), Is.False, "a completed run deletes its backup");

            // Same data order per epoch (seed + epoch), same optimizer state, same dropout masks: bit-identical.
            Assert.That(resumedHistory["loss"], Is.EqualTo(straightHistory["loss"].Skip(2)));
            Assert.That(second.Optimizer.Steps, Is.EqualTo(straight.Optimizer.Steps));
            var expected = straight.Network.NamedState().ToArray();
            var actual = second.Network.NamedState().ToArray();
            for (int i = 0; i < expected.Length; i++)
                Assert.That(actual[i].Tensor.ToArray(), Is.EqualTo(expected[i].Tensor.ToArray()), $"tensor {expected[i].Name}");
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Test]
    public void A_backup_of_another_network_or_optimizer_is_refused_and_changes_nothing()
    {
        var data = Blobs(32, 8);
        var path = Path.Combine(Path.GetTempPath(), $"kn-backup-{Guid.NewGuid():N}.safetensors");
        try
        {
            using (var source = new Model(Mlp()))
            {
                source.Compile(new Adam(source.Network.Parameters()), "sparse_categorical_crossentropy");
                source.Fit(data, epochs: 1, batchSize: 16, verbose: 0, callbacks: new[] { new BackupAndRestore(path, deleteOnTrainEnd: false) });
            }
            Assert.That(File.Exists(path), "kept: deleteOnTrainEnd false");

            using var other = new Model(new Sequential(new Dense(6, 8, seed: 4), Activation.Relu(), new Dense(8, 16, seed: 5), Activation.Tanh(), new Dense(16, 4, seed: 6)));
            other.Compile(new Adam(other.Network.Parameters()), "sparse_categorical_crossentropy");
            var before = other.Network.NamedState().Select(p => p.Tensor.ToArray()).ToArray();
            var e = Assert.Throws<InvalidDataException>(() => other.Fit(data, epochs: 2, verbose: 0, callbacks: new[] { new BackupAndRestore(path) }))!;
            Assert.That(e.Message, Does.Contain(path).And.Contain("\"model.0.weight\" has shape [6, 24], the network's is [6, 8]"));
            Assert.That(other.Network.NamedState().Select(p => p.Tensor.ToArray()), Is.EqualTo(before), "unchanged");

            using var sgd = new Model(Mlp());
            sgd.Compile(new Sgd(sgd.Network.Parameters()), "sparse_categorical_crossentropy");
            Assert.That(Assert.Throws<InvalidDataException>(() => sgd.Fit(data, epochs: 2, verbose: 0, callbacks: new[] { new BackupAndRestore(path) }))!.Message,
                        Does.Contain("it holds Adam state but the model is compiled with Sgd"));
        }
        finally
        {
            File.Delete(path);
        }
    }
}
