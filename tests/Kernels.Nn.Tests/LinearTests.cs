using NUnit.Framework;

namespace Kernels.Nn.Tests;

/// <summary>
/// The fused dense layer (Tensor.Linear, kn_linear_f32 / kn_linear_backward_f32): the same values and
/// gradients as the separate MatMul, Add and activation ops, gradients against float64 finite
/// differences, Sequential's Dense + Activation fusion giving the unfused training trajectory, and
/// bad input.
/// </summary>
public class LinearTests
{
    private static IEnumerable<TestCaseData> Devices() => TestDevices.All();

    // (activation layer, the unfused op on a tensor, its float64 reference)
    private static readonly (string Name, Func<Activation?> Layer, Func<Tensor, Tensor> Op, Func<double, double> Reference)[] Activations =
    {
        ("identity", () => null, t => t, v => v),
        ("relu", Activation.Relu, t => t.Relu(), v => Math.Max(v, 0)),
        ("leaky_relu", () => Activation.LeakyRelu(0.1f), t => t.LeakyRelu(0.1f), v => v > 0 ? v : 0.1 * v),
        ("sigmoid", Activation.Sigmoid, t => t.Sigmoid(), v => 1 / (1 + Math.Exp(-v))),
        ("tanh", Activation.Tanh, t => t.Tanh(), Math.Tanh),
        ("gelu", Activation.Gelu, t => t.Gelu(), v => 0.5 * v * (1 + GradCheck.Erf(v / Math.Sqrt(2)))),
    };

    private static IEnumerable<TestCaseData> DevicesAndActivations()
    {
        foreach (var d in TestDevices.All())
            foreach (var a in Activations)
                foreach (bool bias in new[] { true, false })
                    yield return new TestCaseData(d.Arguments[0], d.Arguments[1], d.Arguments[2], a.Name, bias)
                        .SetArgDisplayNames((string)d.Arguments[0]!, a.Name, bias ? "bias" : "no-bias");
    }

    private static (string Name, Func<Activation?> Layer, Func<Tensor, Tensor> Op, Func<double, double> Reference) Act(string name) =>
        Activations.Single(a => a.Name == name);

    // Sequential(Dense, Activation): fused forward and backward against the unfused ops on the same
    // parameters. On the CPU the forward is the same GEMM followed by the same span kernels in the same
    // order, so it is compared bit for bit (on OpenCL/CUDA the fused bias+activation is its own kernel:
    // PoCL gave sigmoid 2 ulp apart from the unary kernel's, so 4 ulp there); dz too; the bias gradient is summed in blocks (fused) instead of one
    // pairwise column reduction, so it gets 1e-5 relative (a few roundings of a 37-row sum).
    [TestCaseSource(nameof(DevicesAndActivations))]
    public void FusedDenseActivationMatchesTheSeparateOps(string deviceName, DeviceKind kind, string require, string activation, bool bias)
    {
        var device = TestDevices.Require(deviceName, kind, require);
        using var scope = new DisposeScope();
        var a = Act(activation);
        var dense = new Dense(53, 29, bias, seed: 7, device: device);
        if (dense.Bias is not null)  // a non-zero bias, so that adding it is tested
            dense.Bias.RawBuffer.CopyFrom(Tensor.FromArray(GradCheck.Random(29, 3).Select(v => (float)v).ToArray(), new long[] { 29 }, device).RawBuffer,
                                          0, 0, 29 * sizeof(float));
        var layer = a.Layer();
        var model = layer is null ? new Sequential(dense) : new Sequential(dense, layer);
        var x = Tensor.FromArray(GradCheck.Random(37 * 53, 5, -2, 2).Select(v => (float)v).ToArray(), new long[] { 37, 53 }, device);
        var weights = Tensor.FromArray(GradCheck.Random(37 * 29, 6).Select(v => (float)v).ToArray(), new long[] { 37, 29 }, device);

        var fused = model.Forward(x);
        fused.Mul(weights).Sum().Backward();
        var fusedW = dense.Weight.Grad!.ToArray();
        var fusedB = dense.Bias?.Grad!.ToArray();
        foreach (var p in model.Parameters()) p.ZeroGrad();

        var z = x.MatMul(dense.Weight);
        if (dense.Bias is not null) z = z.Add(dense.Bias);
        var separate = a.Op(z);
        separate.Mul(weights).Sum().Backward();

        if (kind == DeviceKind.Cpu)
            Assert.That(fused.ToArray(), Is.EqualTo(separate.ToArray()), "forward, bit for bit");
        else  // two different device kernels: the OpenCL/CUDA compiler may vectorise exp differently in each
            Assert.That(fused.ToArray(), Is.EqualTo(separate.ToArray()).Within(4).Ulps, "forward, within 4 ulp");
        // The CPU's dz is bit for bit, so dW agrees to 1e-7 relative; on OpenCL/CUDA dz carries the forward's
        // few-ulp differences (above), so dW gets 1e-5 relative like the bias gradient.
        Assert.That(fusedW, Is.EqualTo(dense.Weight.Grad!.ToArray()).Within(kind == DeviceKind.Cpu ? 1e-5 : 1e-3).Percent, "weight gradient");
        if (fusedB is not null)
        {
            var want = dense.Bias!.Grad!.ToArray();
            for (int j = 0; j < want.Length; j++)
                Assert.That(fusedB[j], Is.EqualTo(want[j]).Within(1e-5 * Math.Max(1, Math.Abs(want[j]))), $"bias gradient [{j}]");
        }
    }

    // d/d(x, W, b) of sum(w * act(x W + b)) against float64 central differences of the same function.
    [TestCaseSource(nameof(DevicesAndActivations))]
    public void GradientsMatchFiniteDifferences(string deviceName, DeviceKind kind, string require, string activation, bool bias)
    {
        var device = TestDevices.Require(deviceName, kind, require);
        var a = Act(activation);
        var op = a.Layer()?.Elementwise ?? UnaryOp.Scale;
        float alpha = a.Layer()?.Slope ?? 1f;
        const long m = 5, k = 7, n = 3;
        var inputs = new List<(double[], long[])> { (GradCheck.Random(m * k, 1), new[] { m, k }), (GradCheck.Random(k * n, 2), new[] { k, n }) };
        if (bias) inputs.Add((GradCheck.Random(n, 3), new[] { n }));
        GradCheck.Check(t => t[0].Linear(t[1], bias ? t[2] : null, op, alpha),
            v =>
            {
                var y = new double[m * n];
                for (long i = 0; i < m; i++)
                    for (long j = 0; j < n; j++)
                    {
                        double s = bias ? v[2][j] : 0;
                        for (long p = 0; p < k; p++) s += v[0][i * k + p] * v[1][p * n + j];
                        y[i * n + j] = a.Reference(s);
                    }
                return y;
            }, inputs.ToArray(), device);
    }

    // Sequential's fusion is invisible to training: three Adam steps of a Dense-relu-Dense-tanh-Dense
    // network, fused (Sequential.Forward) and unfused (each layer alone, Dense as MatMul + Add), from the
    // same initial weights, stay within 1e-5 relative of each other (the bias gradients' summation
    // order is the only difference).
    [Test]
    public void SequentialFusionGivesTheUnfusedTrainingTrajectory()
    {
        using var scope = new DisposeScope();
        Sequential Build() => new(new Dense(20, 16, seed: 1), Activation.Relu(), new Dense(16, 12, seed: 2), Activation.Tanh(),
                                  new Dense(12, 4, seed: 3));
        var fused = Build();
        var unfused = Build();
        var x = Tensor.FromArray(GradCheck.Random(32 * 20, 11).Select(v => (float)v).ToArray(), new long[] { 32, 20 });
        var target = Tensor.FromArray(GradCheck.Random(32 * 4, 12).Select(v => (float)v).ToArray(), new long[] { 32, 4 });
        Tensor Unfused(Tensor input)
        {
            var h = input;
            foreach (var layer in unfused.Layers)
            {
                if (layer is Dense d) h = h.MatMul(d.Weight).Add(d.Bias!);
                else h = layer.Forward(h);
            }
            return h;
        }
        var optFused = new Adam(fused.Parameters(), 1e-2f);
        var optUnfused = new Adam(unfused.Parameters(), 1e-2f);
        for (int step = 0; step < 3; step++)
        {
            optFused.ZeroGrad();
            Losses.MeanSquaredError(fused.Forward(x), target).Backward();
            optFused.Step();
            optUnfused.ZeroGrad();
            Losses.MeanSquaredError(Unfused(x), target).Backward();
            optUnfused.Step();
            foreach (var ((name, p), (_, q)) in fused.NamedParameters().Zip(unfused.NamedParameters()))
            {
                var got = p.ToArray();
                var want = q.ToArray();
                for (int i = 0; i < want.Length; i++)
                    Assert.That(got[i], Is.EqualTo(want[i]).Within(1e-5 * Math.Max(1, Math.Abs(want[i]))), $"step {step}: {name}[{i}]");
            }
        }
        // The fused forward really is one node per Dense + Activation pair.
        Assert.That(fused.Forward(x).Node!.Name, Is.EqualTo("Linear"));
        var hidden = new Sequential(fused.Layers[0], fused.Layers[1]).Forward(x);
        Assert.That(hidden.Node!.Name, Is.EqualTo("Linear"), "Dense + relu fused into one node");
    }

    [Test]
    public void BadInputIsATypedExceptionNamingTheShapes()
    {
        using var scope = new DisposeScope();
        var x = Tensor.Zeros(new long[] { 3, 4 });
        var ex = Assert.Throws<ShapeMismatchException>(() => x.Linear(Tensor.Zeros(new long[] { 5, 2 })));
        Assert.That(ex!.Message, Does.Contain("[3, 4]").And.Contain("[5, 2]"));
        ex = Assert.Throws<ShapeMismatchException>(() => x.Linear(Tensor.Zeros(new long[] { 4, 2 }), Tensor.Zeros(new long[] { 3 })));
        Assert.That(ex!.Message, Does.Contain("[3]").And.Contain("[2]"));
        ex = Assert.Throws<ShapeMismatchException>(() => new Dense(6, 2).Forward(x));
        Assert.That(ex!.Message, Does.Contain("[3, 4]"));
        // The process stays usable.
        Assert.That(x.Linear(Tensor.Ones(new long[] { 4, 2 })).ToArray(), Is.All.EqualTo(0f));
    }

    [Test]
    public void WeightOnAnotherDeviceIsADeviceMismatchNamingBoth()
    {
        if (!Device.TryGet("opencl:0", out var other)) Assert.Ignore("opencl:0 is not available: " + Device.BackendInfo(DeviceKind.OpenCL).Item2);
        using var scope = new DisposeScope();
        var x = Tensor.Zeros(new long[] { 3, 4 });
        var ex = Assert.Throws<DeviceMismatchException>(() => x.Linear(Tensor.Zeros(new long[] { 4, 2 }, other)));
        Assert.That(ex!.Message, Does.Contain("cpu").And.Contain("opencl:0").And.Contain("[4, 2]"));
    }
}
