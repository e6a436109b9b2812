using NUnit.Framework;

namespace Kernels.Nn.Tests;

/// <summary>Each optimizer's fused kernel against the update rule computed by hand in float64, over
/// three steps (so state such as momentum and bias correction is exercised).</summary>
[TestFixture]
public class OptimizerTests
{
    private static readonly float[] Initial = { 0.5f, -1.25f, 2f, 0f, -0.3f, 1e-3f, 3.5f };
    private static readonly float[][] Gradients =
    {
        new[] { 0.1f, -0.2f, 0.3f, 0f, 1.5f, -2f, 0.05f },
        new[] { -0.4f, 0.25f, 0.1f, 0.2f, -1f, 0.5f, 0.3f },
        new[] { 0.2f, 0.2f, -0.6f, -0.1f, 0.7f, 0.01f, -0.9f },
    };

    private static double[] Run(Func<IEnumerable<Tensor>, Optimizer> create)
    {
        using var p = Tensor.FromArray(Initial, new long[] { Initial.Length });
        p.RequiresGrad = true;
        using var optimizer = create(new[] { p });
        foreach (var g in Gradients)
        {
            p.ZeroGrad();
            // Set the gradient the way Backward would: d(sum(p * g))/dp = g.
            using (var scope = new DisposeScope())
            {
                var gt = Tensor.FromArray(g, new long[] { g.Length });
                p.Mul(gt).Sum().Backward();
            }
            optimizer.Step();
        }
        return p.ToArray().Select(v => (double)v).ToArray();
    }

    private static void AssertClose(double[] actual, double[] expected, string what)
    {
        for (int i = 0; i < expected.Length; i++)
            Assert.That(actual[i], Is.EqualTo(expected[i]).Within(1e-5 + 1e-5 * Math.Abs(expected[i])), $"{what}: element {i}");
    }

    [TestCase(0f, 0f, 0f, false)]
    [TestCase(0.9f, 0f, 0f, false)]
    [TestCase(0.9f, 0.1f, 0.01f, false)]
    [TestCase(0.9f, 0f, 0.01f, true)]
    public void Sgd_matches_the_PyTorch_update_rule(float momentum, float dampening, float weightDecay, bool nesterov)
    {
        const double lr = 0.1;
        var p = Initial.Select(v => (double)v).ToArray();
        var velocity = new double[p.Length];
        for (int step = 0; step < Gradients.Length; step++)
            for (int i = 0; i < p.Length; i++)
            {
                double g = Gradients[step][i] + weightDecay * p[i];
                if (momentum != 0)
                {
                    velocity[i] = step == 0 ? g : momentum * velocity[i] + (1 - dampening) * g;
                    g = nesterov ? g + momentum * velocity[i] : velocity[i];
                }
                p[i] -= lr * g;
            }
        AssertClose(Run(ps => new Sgd(ps, (float)lr, momentum, dampening, weightDecay, nesterov)), p, "Sgd");
    }

    [TestCase(0f, false)]
    [TestCase(0.1f, false)]
    [TestCase(0.1f, true)]
    public void Adam_and_AdamW_match_the_update_rule(float weightDecay, bool decoupled)
    {
        const double lr = 0.01, b1 = 0.9, b2 = 0.999, eps = 1e-8;
        var p = Initial.Select(v => (double)v).ToArray();
        var m = new double[p.Length];
        var v = new double[p.Length];
        for (int t = 1; t <= Gradients.Length; t++)
            for (int i = 0; i < p.Length; i++)
            {
                double g = Gradients[t - 1][i];
                if (decoupled) p[i] *= 1 - lr * weightDecay;
                else g += weightDecay * p[i];
                m[i] = b1 * m[i] + (1 - b1) * g;
                v[i] = b2 * v[i] + (1 - b2) * g * g;
                double mHat = m[i] / (1 - Math.Pow(b1, t)), vHat = v[i] / (1 - Math.Pow(b2, t));
                p[i] -= lr * mHat / (Math.Sqrt(vHat) + eps);
            }
        var actual = Run(ps => decoupled ? new AdamW(ps, (float)lr, weightDecay: weightDecay) : new Adam(ps, (float)lr, weightDecay: weightDecay));
        AssertClose(actual, p, decoupled ? "AdamW" : "Adam");
    }

    /// <summary>
    /// Adam / AdamW make one kn_adam_step_many_f32 call for all parameters of a model; it must give
    /// every element exactly what one kn_adam_step_f32 per parameter gives (the CPU runs the same
    /// loop for both), over three steps of a two-layer network whose 20000-element weight spans the
    /// CPU pool's 16K chunks.
    /// </summary>
    [TestCase(false)]
    [TestCase(true)]
    public void Adam_over_a_model_in_one_call_equals_one_call_per_parameter(bool decoupled)
    {
        using var model = new Sequential(new Dense(100, 200, seed: 1), Activation.Tanh(), new Dense(200, 7, seed: 2));
        var parameters = model.Parameters().ToArray();
        Assert.That(parameters.Select(p => p.Count), Is.EqualTo(new long[] { 20000, 200, 1400, 7 }), "the shapes the test means to cover");
        var copies = parameters.Select(p => DeviceBuffer.FromArray(p.Device, p.ToArray())).ToArray();
        var m = parameters.Select(p => DeviceBuffer.FromArray(p.Device, new float[p.Count])).ToArray();
        var v = parameters.Select(p => DeviceBuffer.FromArray(p.Device, new float[p.Count])).ToArray();
        try
        {
            using Optimizer optimizer = decoupled ? new AdamW(model.Parameters(), 0.01f, weightDecay: 0.05f)
                                                  : new Adam(model.Parameters(), 0.01f, weightDecay: 0.05f);
            var input = new float[5 * 100];
            for (int i = 0; i < input.Length; i++) input[i] = MathF.Sin(i * 0.37f);
            for (int step = 1; step <= 3; step++)
            {
                optimizer.ZeroGrad();
                using (var scope = new DisposeScope())
                {
                    var x = Tensor.FromArray(input, new long[] { 5, 100 });
                    model.Forward(x).Mul(model.Forward(x)).Sum().Mul(step).Backward();
                }
                // The per-parameter reference, on copies, with this step's gradients.
                for (int i = 0; i < parameters.Length; i++)
                    Ops.AdamStep(copies[i], parameters[i].Grad!.Buffer, m[i], v[i], parameters[i].Count, 0.01f, 0.9f, 0.999f, 1e-8f,
                                 0.05f, decoupled, step);
                optimizer.Step();
                for (int i = 0; i < parameters.Length; i++)
                    Assert.That(parameters[i].ToArray(), Is.EqualTo(copies[i].ToArray()), $"parameter {i} after step {step}, bit for bit");
            }
        }
        finally
        {
            foreach (var b in copies.Concat(m).Concat(v)) b.Dispose();
        }
    }

    /// <summary>
    /// A layer used twice lists its parameters twice; each listing has its own Adam state and is
    /// updated in turn, as with one kn_adam_step_f32 per parameter (the many-tensor call refuses a
    /// buffer twice, so Adam must not hand it one).
    /// </summary>
    [Test]
    public void Adam_over_a_model_that_uses_a_layer_twice_updates_each_listing_in_turn()
    {
        var shared = new Dense(4, 4, seed: 5);
        using var model = new Sequential(shared, Activation.Tanh(), shared);
        var parameters = model.Parameters().ToArray();
        Assert.That(parameters, Has.Length.EqualTo(4));
        Assert.That(parameters[2], Is.SameAs(parameters[0]), "the shared layer's weight is listed twice");
        var copies = new[] { parameters[0], parameters[1] }.Select(p => DeviceBuffer.FromArray(p.Device, p.ToArray())).ToArray();
        var state = Enumerable.Range(0, 8).Select(i => DeviceBuffer.FromArray(Device.Cpu, new float[parameters[i / 2 % 2].Count])).ToArray();
        try
        {
            using var optimizer = new Adam(model.Parameters(), 0.01f);
            using (var scope = new DisposeScope())
                model.Forward(Tensor.FromArray(new[] { 0.5f, -1f, 2f, 0.25f }, new long[] { 1, 4 })).Sum().Backward();
            for (int i = 0; i < 4; i++)  // the reference: one call per listing, in order
                Ops.AdamStep(copies[i % 2], parameters[i].Grad!.Buffer, state[2 * i], state[2 * i + 1], parameters[i].Count, 0.01f,
                             0.9f, 0.999f, 1e-8f, 0f, false, 1);
            optimizer.Step();
            Assert.That(parameters[0].ToArray(), Is.EqualTo(copies[0].ToArray()), "weight, updated twice");
            Assert.That(parameters[1].ToArray(), Is.EqualTo(copies[1].ToArray()), "bias, updated twice");
        }
        finally
        {
            foreach (var b in copies.Concat(state)) b.Dispose();
        }
    }

    [Test]
    public void Adam_step_many_errors_are_typed_and_name_the_tensor()
    {
        var device = Device.Get("cpu");
        using var a = DeviceBuffer.FromArray(device, new float[8]);
        using var b = DeviceBuffer.FromArray(device, new float[8]);
        using var c = DeviceBuffer.FromArray(device, new float[8]);
        using var d = DeviceBuffer.FromArray(device, new float[8]);
        using var e = DeviceBuffer.FromArray(device, new float[8]);
        using var f = DeviceBuffer.FromArray(device, new float[8]);
        using var g = DeviceBuffer.FromArray(device, new float[8]);
        using var h = DeviceBuffer.FromArray(device, new float[8]);
        using var small = DeviceBuffer.FromArray(device, new float[2]);
        void Call(DeviceBuffer[] p, DeviceBuffer[] gr, DeviceBuffer[] mm, DeviceBuffer[] vv, long[] n) =>
            Ops.AdamStepMany(p, gr, mm, vv, n, 1e-3f, 0.9f, 0.999f, 1e-8f, 0f, false, 1);

        var shared = Assert.Throws<KernelsArgumentException>(() => Call(new[] { a, b }, new[] { c, d }, new[] { e, e }, new[] { g, h }, new long[] { 8, 8 }))!;
        Assert.That(shared.Message, Does.Contain("m[0] and m[1]").And.Contain("same buffer"));
        var shortGrad = Assert.Throws<ShapeMismatchException>(() => Call(new[] { a, b }, new[] { c, small }, new[] { e, f }, new[] { g, h }, new long[] { 8, 8 }))!;
        Assert.That(shortGrad.Message, Does.Contain("grad[1]"));
        var missing = Assert.Throws<ArgumentNullException>(() => Call(new[] { a, b }, new[] { c, d }, new[] { e, f }, new[] { g, null! }, new long[] { 8, 8 }))!;
        Assert.That(missing.ParamName, Is.EqualTo("v[1]"));
        var lengths = Assert.Throws<ArgumentException>(() => Call(new[] { a, b }, new[] { c }, new[] { e, f }, new[] { g, h }, new long[] { 8, 8 }))!;
        Assert.That(lengths.Message, Does.Contain("one entry per tensor"));
        var disposed = DeviceBuffer.FromArray(device, new float[8]);
        disposed.Dispose();
        var gone = Assert.Throws<ObjectDisposedException>(() => Call(new[] { a, disposed }, new[] { c, d }, new[] { e, f }, new[] { g, h }, new long[] { 8, 8 }))!;
        Assert.That(gone.Message, Does.Contain("param[1]"));
        // Nothing stayed leased: the buffers can still be used and disposed.
        Call(new[] { a, b }, new[] { c, d }, new[] { e, f }, new[] { g, h }, new long[] { 8, 8 });
    }

    /// <summary>
    /// One optimizer configuration for the many-call tests: how to create it, how many state buffers one
    /// parameter has, and the per-parameter reference call (param, grad, state, n, step counted from 1) on copies.
    /// </summary>
    public sealed record ManyCase(string Name, Func<IEnumerable<Tensor>, Optimizer> Create, int States,
                                  Action<DeviceBuffer, DeviceBuffer, DeviceBuffer[], long, int> Reference)
    {
        public override string ToString() => Name;
    }

    public static IEnumerable<ManyCase> ManyCases()
    {
        yield return new ManyCase("sgd", ps => new Sgd(ps, 0.05f), 0,
            (p, g, s, n, step) => Ops.SgdStep(p, g, null, n, 0.05f, 0, 0, 0, false, step == 1));
        yield return new ManyCase("sgd momentum", ps => new Sgd(ps, 0.05f, momentum: 0.9f), 1,
            (p, g, s, n, step) => Ops.SgdStep(p, g, s[0], n, 0.05f, 0.9f, 0, 0, false, step == 1));
        yield return new ManyCase("sgd momentum dampening wd", ps => new Sgd(ps, 0.05f, 0.9f, 0.1f, 0.01f), 1,
            (p, g, s, n, step) => Ops.SgdStep(p, g, s[0], n, 0.05f, 0.9f, 0.1f, 0.01f, false, step == 1));
        yield return new ManyCase("sgd nesterov wd", ps => new Sgd(ps, 0.05f, 0.9f, 0f, 0.01f, nesterov: true), 1,
            (p, g, s, n, step) => Ops.SgdStep(p, g, s[0], n, 0.05f, 0.9f, 0, 0.01f, true, step == 1));
        yield return new ManyCase("rmsprop", ps => new RmsProp(ps, 0.01f), 1,
            (p, g, s, n, step) => Ops.RmsPropStep(p, g, s[0], null, n, 0.01f, 0.99f, 1e-8f, 0, 0));
        yield return new ManyCase("rmsprop momentum wd", ps => new RmsProp(ps, 0.01f, weightDecay: 0.01f, momentum: 0.9f), 2,
            (p, g, s, n, step) => Ops.RmsPropStep(p, g, s[0], s[1], n, 0.01f, 0.99f, 1e-8f, 0.01f, 0.9f));
        yield return new ManyCase("adagrad wd", ps => new Adagrad(ps, 0.01f, weightDecay: 0.01f), 1,
            (p, g, s, n, step) => Ops.AdagradStep(p, g, s[0], n, 0.01f, 1e-10f, 0.01f));
        yield return new ManyCase("adamw", ps => new AdamW(ps, 0.01f, weightDecay: 0.05f), 2,
            (p, g, s, n, step) => Ops.AdamStep(p, g, s[0], s[1], n, 0.01f, 0.9f, 0.999f, 1e-8f, 0.05f, true, step));
    }

    /// <summary>
    /// Sgd, RmsProp, Adagrad and AdamW make one kn_*_step_many_f32 call for all parameters of a device; it must give
    /// every element exactly what one per-parameter call gives (the CPU runs the same loop for both; OpenCL
    /// launches the same kernel per tensor), over three steps of a two-layer network whose 20000-element weight
    /// spans the CPU pool's 16K chunks. SGD's first step (the velocity starts as the gradient) is step 1.
    /// </summary>
    [Test]
    public void Optimizer_over_a_model_in_one_call_equals_one_call_per_parameter(
        [ValueSource(nameof(ManyCases))] ManyCase optimizerCase, [Values("cpu", "opencl:0")] string deviceName)
    {
        var device = deviceName == "cpu" ? Device.Cpu : TestDevices.Require(deviceName, DeviceKind.OpenCL, "KERNELS_REQUIRE_OPENCL");
        using var model = new Sequential(new Dense(100, 200, seed: 1), Activation.Tanh(), new Dense(200, 7, seed: 2));
        model.To(device);
        var parameters = model.Parameters().ToArray();
        Assert.That(parameters.Select(p => p.Count), Is.EqualTo(new long[] { 20000, 200, 1400, 7 }), "the shapes the test means to cover");
        var copies = parameters.Select(p => DeviceBuffer.FromArray(device, p.ToArray())).ToArray();
        var states = parameters.Select(p => Enumerable.Range(0, optimizerCase.States)
                                                      .Select(_ => DeviceBuffer.FromArray(device, new float[p.Count])).ToArray()).ToArray();
        try
        {
            using var optimizer = optimizerCase.Create(model.Parameters());
            var input = new float[5 * 100];
            for (int i = 0; i < input.Length; i++) input[i] = MathF.Sin(i * 0.37f);
            for (int step = 1; step <= 3; step++)
            {
                optimizer.ZeroGrad();
                using (var scope = new DisposeScope())
                {
                    var x = Tensor.FromArray(input, new long[] { 5, 100 }, device);
                    model.Forward(x).Mul(model.Forward(x)).Sum().Mul(step).Backward();
                }
                for (int i = 0; i < parameters.Length; i++)
                    optimizerCase.Reference(copies[i], parameters[i].Grad!.Buffer, states[i], parameters[i].Count, step);
                optimizer.Step();
                for (int i = 0; i < parameters.Length; i++)
                    Assert.That(parameters[i].ToArray(), Is.EqualTo(copies[i].ToArray()),
                                $"{optimizerCase.Name} on {device.Name}: parameter {i} after step {step}, bit for bit");
            }
        }
        finally
        {
            foreach (var b in copies.Concat(states.SelectMany(s => s))) b.Dispose();
        }
    }

    /// <summary>
    /// A warm Optimizer.Step allocates nothing on the managed heap: the many-call's operand arrays are reused, the
    /// native handles go on the stack.
    /// </summary>
    [Test]
    public void A_warm_step_allocates_nothing([ValueSource(nameof(ManyCases))] ManyCase optimizerCase)
    {
        using var model = new Sequential(new Dense(10, 20, seed: 1), Activation.Tanh(), new Dense(20, 3, seed: 2));
        using var optimizer = optimizerCase.Create(model.Parameters());
        using (var scope = new DisposeScope())
            model.Forward(Tensor.FromArray(new float[2 * 10], new long[] { 2, 10 })).Sum().Backward();
        optimizer.Step();
        optimizer.Step();
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 10; i++) optimizer.Step();
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.That(allocated, Is.EqualTo(0), $"{optimizerCase.Name}: bytes allocated by 10 warm steps");
    }

    /// <summary>
    /// SGD's first step is tracked per parameter (it has no velocity before its first update), while
    /// kn_sgd_step_many_f32 takes one flag per call: a parameter that gets its first gradient at step 2, beside one
    /// in its second step, must still start its velocity from the gradient, as one kn_sgd_step_f32 per parameter does
    /// (and the other must not). Dampening makes the two differ even from a zero velocity.
    /// </summary>
    [Test]
    public void Sgd_with_momentum_keeps_each_parameters_first_step()
    {
        using var a = Tensor.FromArray(new[] { 0.5f, -1f, 2f }, new long[] { 3 });
        using var b = Tensor.FromArray(new[] { 1.5f, 0.25f }, new long[] { 2 });
        using var c = Tensor.FromArray(new[] { -0.75f }, new long[] { 1 });
        a.RequiresGrad = b.RequiresGrad = c.RequiresGrad = true;
        var all = new[] { b, a, c };
        var copies = all.Select(t => DeviceBuffer.FromArray(Device.Cpu, t.ToArray())).ToArray();
        var velocity = all.Select(t => DeviceBuffer.FromArray(Device.Cpu, new float[t.Count])).ToArray();
        var started = new bool[3];
        try
        {
            using var optimizer = new Sgd(all, 0.1f, momentum: 0.9f, dampening: 0.5f);
            for (int step = 1; step <= 3; step++)
            {
                optimizer.ZeroGrad();
                // Step 1 reaches a only; step 2 a and b (b, listed first, in its first step); step 3 all, c in its first.
                var used = step == 1 ? new[] { a } : step == 2 ? new[] { a, b } : all;
                using (var scope = new DisposeScope())
                    used.Select(t => t.Mul(t).Sum()).Aggregate((x, y) => x.Add(y)).Mul(step).Backward();
                for (int i = 0; i < 3; i++)
                {
                    if (all[i].Grad is null) continue;
                    Ops.SgdStep(copies[i], all[i].Grad!.Buffer, velocity[i], all[i].Count, 0.1f, 0.9f, 0.5f, 0, false, !started[i]);
                    started[i] = true;
                }
                optimizer.Step();
                for (int i = 0; i < 3; i++)
                    Assert.That(all[i].ToArray(), Is.EqualTo(copies[i].ToArray()), $"parameter {i} after step {step}, bit for bit");
            }
        }
        finally
        {
            foreach (var buffer in copies.Concat(velocity)) buffer.Dispose();
        }
    }

    [Test]
    public void Sgd_RmsProp_and_Adagrad_step_many_errors_are_typed_and_name_the_tensor()
    {
        var device = Device.Get("cpu");
        var x = Enumerable.Range(0, 8).Select(_ => DeviceBuffer.FromArray(device, new float[8])).ToArray();
        using var small = DeviceBuffer.FromArray(device, new float[2]);
        try
        {
            var n = new long[] { 8, 8 };
            var sharedVelocity = Assert.Throws<KernelsArgumentException>(() =>
                Ops.SgdStepMany(new[] { x[0], x[1] }, new[] { x[2], x[3] }, new[] { x[4], x[4] }, n, 0.1f, 0.9f, 0, 0, false, false))!;
            Assert.That(sharedVelocity.Message, Does.Contain("velocity[0] and velocity[1]").And.Contain("same buffer"));
            var shortGrad = Assert.Throws<ShapeMismatchException>(() =>
                Ops.SgdStepMany(new[] { x[0], x[1] }, new[] { x[2], small }, default, n, 0.1f, 0, 0, 0, false, true))!;
            Assert.That(shortGrad.Message, Does.Contain("grad[1]"));
            var nullVelocity = Assert.Throws<ArgumentNullException>(() =>
                Ops.SgdStepMany(new[] { x[0], x[1] }, new[] { x[2], x[3] }, new[] { x[4], null! }, n, 0.1f, 0.9f, 0, 0, false, false))!;
            Assert.That(nullVelocity.ParamName, Is.EqualTo("velocity[1]"));
            var noVelocity = Assert.Throws<ArgumentException>(() =>
                Ops.SgdStepMany(new[] { x[0], x[1] }, new[] { x[2], x[3] }, default, n, 0.1f, 0.9f, 0, 0, false, false))!;
            Assert.That(noVelocity.Message, Does.Contain("velocity").And.Contain("one entry per tensor"));
            var negative = Assert.Throws<KernelsArgumentException>(() =>
                Ops.AdagradStepMany(new[] { x[0], x[1] }, new[] { x[2], x[3] }, new[] { x[4], x[5] }, new long[] { 8, -1 }, 0.01f, 1e-10f, 0))!;
            Assert.That(negative.Message, Does.Contain("n[1]"));
            var aliased = Assert.Throws<KernelsArgumentException>(() =>
                Ops.RmsPropStepMany(new[] { x[0], x[1] }, new[] { x[2], x[3] }, new[] { x[4], x[5] }, new[] { x[5], x[6] }, n, 0.01f, 0.99f,
                                    1e-8f, 0, 0.9f))!;
            Assert.That(aliased.Message, Does.Contain("velocity[0] and square_avg[1]").And.Contain("same buffer"));
            var disposed = DeviceBuffer.FromArray(device, new float[8]);
            disposed.Dispose();
            var gone = Assert.Throws<ObjectDisposedException>(() =>
                Ops.AdagradStepMany(new[] { x[0], x[1] }, new[] { x[2], x[3] }, new[] { x[4], disposed }, n, 0.01f, 1e-10f, 0))!;
            Assert.That(gone.Message, Does.Contain("sum[1]"));
            if (Device.TryGet("opencl:0", out var other))
            {
                using var remote = DeviceBuffer.FromArray(other, new float[8]);
                var mismatch = Assert.Throws<DeviceMismatchException>(() =>
                    Ops.RmsPropStepMany(new[] { x[0], x[1] }, new[] { x[2], x[3] }, new[] { x[4], remote }, default, n, 0.01f, 0.99f, 1e-8f, 0, 0))!;
                Assert.That(mismatch.Message, Does.Contain("square_avg[1]"));
            }
            // Nothing stayed leased: the buffers can still be used and disposed.
            Ops.SgdStepMany(new[] { x[0], x[1] }, new[] { x[2], x[3] }, new[] { x[4], x[5] }, n, 0.1f, 0.9f, 0, 0, false, true);
            Ops.RmsPropStepMany(new[] { x[0], x[1] }, new[] { x[2], x[3] }, new[] { x[4], x[5] }, default, n, 0.01f, 0.99f, 1e-8f, 0, 0);
            Ops.AdagradStepMany(new[] { x[0], x[1] }, new[] { x[2], x[3] }, new[] { x[4], x[5] }, n, 0.01f, 1e-10f, 0);
        }
        finally
        {
            foreach (var b in x) b.Dispose();
        }
    }

    [TestCase(0f)]
    [TestCase(0.9f)]
    public void RmsProp_matches_the_update_rule(float momentum)
    {
        const double lr = 0.01, alpha = 0.99, eps = 1e-8, wd = 0.01;
        var p = Initial.Select(v => (double)v).ToArray();
        var sq = new double[p.Length];
        var vel = new double[p.Length];
        for (int t = 0; t < Gradients.Length; t++)
            for (int i = 0; i < p.Length; i++)
            {
                double g = Gradients[t][i] + wd * p[i];
                sq[i] = alpha * sq[i] + (1 - alpha) * g * g;
                double step = g / (Math.Sqrt(sq[i]) + eps);
                if (momentum > 0) { vel[i] = momentum * vel[i] + step; p[i] -= lr * vel[i]; }
                else p[i] -= lr * step;
            }
        AssertClose(Run(ps => new RmsProp(ps, (float)lr, (float)alpha, (float)eps, (float)wd, momentum)), p, "RmsProp");
    }

    [Test]
    public void Adagrad_matches_the_update_rule()
    {
        const double lr = 0.1, eps = 1e-10;
        var p = Initial.Select(v => (double)v).ToArray();
        var sum = new double[p.Length];
        for (int t = 0; t < Gradients.Length; t++)
            for (int i = 0; i < p.Length; i++)
            {
                double g = Gradients[t][i];
                sum[i] += g * g;
                p[i] -= lr * g / (Math.Sqrt(sum[i]) + eps);
            }
        AssertClose(Run(ps => new Adagrad(ps, (float)lr, (float)eps)), p, "Adagrad");
    }

    [Test]
    public void Gradient_clipping_by_value_and_by_global_norm()
    {
        using var a = Tensor.FromArray(new[] { 3f, -4f }, new long[] { 2 });
        using var b = Tensor.FromArray(new[] { 12f }, new long[] { 1 });
        a.RequiresGrad = b.RequiresGrad = true;
        using (var scope = new DisposeScope())
            a.Mul(a).Sum().Mul(0.5f).Add(b.Mul(b).Sum().Mul(0.5f)).Backward();   // grads = values: (3, -4), (12)
        float norm = GradientClipping.ByGlobalNorm(new[] { a, b }, 6.5f);
        Assert.That(norm, Is.EqualTo(13f).Within(1e-5f), "norm of (3, -4, 12)");
        Assert.That(a.Grad!.ToArray(), Is.EqualTo(new[] { 1.5f, -2f }).Within(1e-4f), "scaled by 6.5/13");
        Assert.That(b.Grad!.ToArray(), Is.EqualTo(new[] { 6f }).Within(1e-4f));
        GradientClipping.ByValue(new[] { a, b }, 1.75f);
        Assert.That(a.Grad!.ToArray(), Is.EqualTo(new[] { 1.5f, -1.75f }).Within(1e-5f), "1.5 (from the norm scaling) is inside the clip");
        Assert.That(b.Grad!.ToArray(), Is.EqualTo(new[] { 1.75f }), "clamped exactly to the bound");
    }

    [Test]
    public void Learning_rate_schedules()
    {
        Assert.That(LearningRateSchedule.Step(2, 0.5f).Rate(5, 1f), Is.EqualTo(0.25f).Within(1e-7f));
        Assert.That(LearningRateSchedule.Exponential(0.9f).Rate(2, 1f), Is.EqualTo(0.81f).Within(1e-6f));
        var cosine = LearningRateSchedule.Cosine(10, 0.1f);
        Assert.That(cosine.Rate(0, 1f), Is.EqualTo(1f).Within(1e-6f));
        Assert.That(cosine.Rate(5, 1f), Is.EqualTo(0.55f).Within(1e-6f));
        Assert.That(cosine.Rate(10, 1f), Is.EqualTo(0.1f).Within(1e-6f));
    }
}
