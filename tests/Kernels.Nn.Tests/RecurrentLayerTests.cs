using NUnit.Framework;
using static Kernels.Nn.Tests.GradCheck;

namespace Kernels.Nn.Tests;

/// <summary>
/// SimpleRNN, LSTM, GRU and Bidirectional on every backend against the float64 reference of
/// <see cref="RecurrentReference"/>: values, and gradients with respect to the input, every weight and
/// bias and the initial states against float64 central differences, at awkward sizes (1 step, a prime
/// number of steps, batch 1, hidden sizes that are multiples of nothing); padding (masks and lengths)
/// leaking nothing; stateful carry-over; goBackwards; merge modes; bad input. A backend that is absent is
/// skipped with its reason, or fails when KERNELS_REQUIRE_CUDA=1 / KERNELS_REQUIRE_OPENCL=1 says it must be there.
/// </summary>
[TestFixture]
public class RecurrentLayerTests
{
    internal static RecurrentLayer Make(string kind, long input, long units, bool returnSequences = false, bool returnState = true,
                                        bool goBackwards = false, bool stateful = false, bool bias = true, int seed = 5, Device? device = null) =>
        kind switch
        {
            "SimpleRNN" => new SimpleRNN(input, units, returnSequences, returnState, goBackwards, stateful, bias, seed, device),
            "LSTM" => new LSTM(input, units, returnSequences, returnState, goBackwards, stateful, bias, seed, device),
            "GRU" => new GRU(input, units, returnSequences, returnState, goBackwards, stateful, bias, seed, device),
            _ => throw new ArgumentException(kind),
        };

    internal static double[] D(Tensor t) => t.ToArray().Select(v => (double)v).ToArray();
    internal static Tensor T(double[] v, long[] shape, Device device) => Tensor.FromArray(v.Select(x => (float)x).ToArray(), shape, device);

    private static readonly string[] Kinds = { "SimpleRNN", "LSTM", "GRU" };

    /// <summary>
    /// Runs the layer, checks its output and final states against the reference (|diff| &lt;= 1e-5 + 1e-4 |ref|),
    /// then d(loss)/d(everything) against float64 central differences of the reference, with
    /// loss = sum(w1 * output) + sum(w2 * h) (+ sum(w3 * c)).
    /// </summary>
    internal static void CheckLayer(Device device, string kind, long batch, long steps, long input, long hidden, bool returnSequences,
                                    bool bias = true, bool goBackwards = false, long[]? lengths = null, double[]? mask = null,
                                    bool initialState = true, double atol = 2e-3, double rtol = 2e-3)
    {
        using var scope = new DisposeScope();
        using var layer = Make(kind, input, hidden, returnSequences, goBackwards: goBackwards, bias: bias, device: device);
        var reference = new RecurrentReference
        {
            Kind = kind, Batch = batch, Steps = steps, Input = input, Hidden = hidden, GoBackwards = goBackwards,
            Lengths = lengths, Mask = mask,
        };
        int n = reference.StateCount;
        var stateShape = new[] { batch, hidden };
        var values = new List<double[]> { Random(batch * steps * input, 1, -2, 2), D(layer.WeightIh), D(layer.WeightHh) };
        var leaves = new List<Tensor> { T(values[0], new[] { batch, steps, input }, device), layer.WeightIh, layer.WeightHh };
        if (bias)
        {
            values.Add(D(layer.BiasIh!));
            values.Add(D(layer.BiasHh!));
            leaves.Add(layer.BiasIh!);
            leaves.Add(layer.BiasHh!);
        }
        Tensor[]? states = null;
        if (initialState)
        {
            states = new Tensor[n];
            for (int i = 0; i < n; i++)
            {
                values.Add(Random(batch * hidden, 10 + i));
                states[i] = T(values[^1], stateShape, device);
                leaves.Add(states[i]);
            }
        }
        leaves[0].RequiresGrad = true;
        if (states is not null) foreach (var s in states) s.RequiresGrad = true;

        using var maskTensor = mask is null ? null : T(mask, new[] { batch, steps }, device);
        var result = layer.Forward(leaves[0], states, maskTensor, lengths);
        long outputCount = returnSequences ? batch * steps * hidden : batch * hidden;
        Assert.That(result.Output.ShapeArray, Is.EqualTo(returnSequences ? new[] { batch, steps, hidden } : stateShape), "output shape");
        Assert.That(result.States, Has.Count.EqualTo(n), "states returned");

        (double[] Output, double[] H, double[]? C) Reference(IReadOnlyList<double[]> v)
        {
            int k = 3;
            double[]? bih = bias ? v[k++] : null, bhh = bias ? v[k++] : null;
            double[]? h0 = initialState ? v[k++] : null, c0 = initialState && n == 2 ? v[k] : null;
            var (outputs, h, c) = reference.Run(v[0], v[1], v[2], bih, bhh, h0, c0);
            return (returnSequences ? outputs : h, h, c);
        }

        var want = Reference(values);
        AssertClose(D(result.Output), want.Output, "output");
        AssertClose(D(result.States[0]), want.H, "final h");
        if (n == 2) AssertClose(D(result.States[1]), want.C!, "final c");

        var w1 = Random(outputCount, 21);
        var w2 = Random(batch * hidden, 22);
        var w3 = Random(batch * hidden, 23);
        var loss = result.Output.Mul(T(w1, result.Output.ShapeArray, device)).Sum()
                   .Add(result.States[0].Mul(T(w2, stateShape, device)).Sum());
        if (n == 2) loss = loss.Add(result.States[1].Mul(T(w3, stateShape, device)).Sum());
        loss.Backward();

        double Loss(IReadOnlyList<double[]> v)
        {
            var (o, h, c) = Reference(v);
            double sum = 0;
            for (int i = 0; i < o.Length; i++) sum += w1[i] * o[i];
            for (int i = 0; i < h.Length; i++) sum += w2[i] * h[i];
            if (c is not null) for (int i = 0; i < c.Length; i++) sum += w3[i] * c[i];
            return sum;
        }

        string[] names = { "input", "weight_ih", "weight_hh" };
        names = names.Concat(bias ? new[] { "bias_ih", "bias_hh" } : Array.Empty<string>())
                     .Concat(initialState ? (n == 2 ? new[] { "h0", "c0" } : new[] { "h0" }) : Array.Empty<string>()).ToArray();
        const double h = 1e-6;
        for (int k = 0; k < values.Count; k++)
        {
            var analytic = leaves[k].Grad?.ToArray() ?? throw new AssertionException($"{names[k]} received no gradient");
            var x = values[k];
            for (int i = 0; i < x.Length; i++)
            {
                double saved = x[i];
                x[i] = saved + h;
                double plus = Loss(values);
                x[i] = saved - h;
                double minus = Loss(values);
                x[i] = saved;
                double numeric = (plus - minus) / (2 * h);
                Assert.That(Math.Abs(analytic[i] - numeric), Is.LessThanOrEqualTo(atol + rtol * Math.Abs(numeric)),
                    $"{kind}: d loss / d {names[k]}[{i}]: autograd {analytic[i]} vs float64 finite difference {numeric}");
            }
        }
    }

    internal static void AssertClose(double[] got, double[] want, string what, double atol = 1e-5, double rtol = 1e-4)
    {
        Assert.That(got, Has.Length.EqualTo(want.Length), $"{what}: element count");
        for (int i = 0; i < got.Length; i++)
            Assert.That(Math.Abs(got[i] - want[i]), Is.LessThanOrEqualTo(atol + rtol * Math.Abs(want[i])),
                $"{what}[{i}]: {got[i]} vs float64 reference {want[i]}");
    }

    // ---- values and gradients at awkward sizes -------------------------------------------------------

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.All))]
    public void Layers_match_float64_reference_and_finite_differences_at_awkward_sizes(string name, DeviceKind deviceKind, string requireVariable)
    {
        var device = TestDevices.Require(name, deviceKind, requireVariable);
        foreach (var kind in Kinds)
        {
            CheckLayer(device, kind, batch: 1, steps: 1, input: 3, hidden: 5, returnSequences: false);                      // one step, batch 1
            CheckLayer(device, kind, batch: 3, steps: 7, input: 4, hidden: 7, returnSequences: true);                       // prime T and H
            CheckLayer(device, kind, batch: 2, steps: 5, input: 2, hidden: 3, returnSequences: true, initialState: false);  // zero initial state
            CheckLayer(device, kind, batch: 2, steps: 3, input: 3, hidden: 4, returnSequences: false, bias: false);         // no bias
        }
    }

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.All))]
    public void Layers_match_the_reference_with_a_hidden_size_of_33(string name, DeviceKind deviceKind, string requireVariable)
    {
        var device = TestDevices.Require(name, deviceKind, requireVariable);
        foreach (var kind in Kinds)
            CheckLayer(device, kind, batch: 2, steps: 2, input: 3, hidden: 33, returnSequences: true);
    }

    // ---- padding: masks and lengths --------------------------------------------------------------------

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.All))]
    public void Lengths_and_masks_match_the_reference_forwards_and_backwards(string name, DeviceKind deviceKind, string requireVariable)
    {
        var device = TestDevices.Require(name, deviceKind, requireVariable);
        long[] lengths = { 5, 2, 0, 4 };  // a full row, a short one, an empty one
        // A mask that is not a prefix: holes in the middle of a row.
        double[] mask = { 1, 0, 1, 1, 0,   0, 0, 1, 0, 1,   1, 1, 1, 1, 1,   0, 0, 0, 0, 0 };
        foreach (var kind in Kinds)
        {
            CheckLayer(device, kind, batch: 4, steps: 5, input: 3, hidden: 4, returnSequences: true, lengths: lengths);
            CheckLayer(device, kind, batch: 4, steps: 5, input: 3, hidden: 4, returnSequences: false, lengths: lengths, goBackwards: true);
            CheckLayer(device, kind, batch: 4, steps: 5, input: 3, hidden: 4, returnSequences: true, lengths: lengths, goBackwards: true);
            CheckLayer(device, kind, batch: 4, steps: 5, input: 3, hidden: 4, returnSequences: true, mask: mask);
            CheckLayer(device, kind, batch: 4, steps: 5, input: 3, hidden: 4, returnSequences: true, mask: mask, goBackwards: true);
        }
    }

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.All))]
    public void Padding_leaks_nothing_into_outputs_gradients_or_final_states(string name, DeviceKind deviceKind, string requireVariable)
    {
        var device = TestDevices.Require(name, deviceKind, requireVariable);
        long batch = 3, steps = 6, input = 2, hidden = 5;
        long[] lengths = { 6, 1, 4 };
        foreach (var kind in Kinds)
            foreach (bool backwards in new[] { false, true })
            {
                using var scope = new DisposeScope();
                using var layer = Make(kind, input, hidden, returnSequences: true, goBackwards: backwards, device: device);
                var xs = Random(batch * steps * input, 3, -2, 2);
                // Garbage in the padding: huge values must not reach anything.
                for (long b = 0; b < batch; b++)
                    for (long t = lengths[b]; t < steps; t++)
                        for (long i = 0; i < input; i++) xs[(b * steps + t) * input + i] = 1e4 * (i + 1);
                var x = T(xs, new[] { batch, steps, input }, device);
                x.RequiresGrad = true;
                var result = layer.Forward(x, null, lengths: lengths);
                var output = result.Output.ToArray();
                var weights = Random(output.Length, 4);
                result.Output.Mul(T(weights, result.Output.ShapeArray, device)).Sum().Add(result.States[0].Sum()).Backward();
                var dx = x.Grad!.ToArray();
                for (long b = 0; b < batch; b++)
                {
                    for (long t = lengths[b]; t < steps; t++)
                    {
                        for (long k = 0; k < hidden; k++)
                            Assert.That(output[(b * steps + t) * hidden + k], Is.EqualTo(0f), $"{kind}: output at padded step {t} of row {b}");
                        for (long i = 0; i < input; i++)
                            Assert.That(dx[(b * steps + t) * input + i], Is.EqualTo(0f), $"{kind}: gradient at padded step {t} of row {b}");
                    }
                    // The final state is the state of the row alone, cut to its length.
                    long length = lengths[b];
                    var row = T(xs.Skip((int)(b * steps * input)).Take((int)(length * input)).ToArray(), new[] { 1, length, input }, device);
                    var alone = length == 0 ? null : layer.Forward(row, null);
                    var h = result.States[0].ToArray().Skip((int)(b * hidden)).Take((int)hidden).Select(v => (double)v).ToArray();
                    var want = alone is null ? new double[hidden] : D(alone.States[0]);
                    AssertClose(h, want, $"{kind}{(backwards ? " backwards" : "")}: final h of row {b} vs the row alone", 1e-6, 1e-5);
                }
            }
    }

    // ---- goBackwards, stateful, Bidirectional, stacking -------------------------------------------------

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.All))]
    public void GoBackwards_equals_the_forward_layer_on_the_reversed_sequence(string name, DeviceKind deviceKind, string requireVariable)
    {
        var device = TestDevices.Require(name, deviceKind, requireVariable);
        long batch = 2, steps = 5, input = 3, hidden = 4;
        foreach (var kind in Kinds)
        {
            using var scope = new DisposeScope();
            using var forwards = Make(kind, input, hidden, returnSequences: true, seed: 9, device: device);
            using var backwards = Make(kind, input, hidden, returnSequences: true, goBackwards: true, seed: 9, device: device);
            var xs = Random(batch * steps * input, 6);
            var reversed = new double[xs.Length];
            for (long b = 0; b < batch; b++)
                for (long t = 0; t < steps; t++)
                    Array.Copy(xs, (b * steps + t) * input, reversed, (b * steps + steps - 1 - t) * input, input);
            var a = backwards.Forward(T(xs, new[] { batch, steps, input }, device), null);
            var b2 = forwards.Forward(T(reversed, new[] { batch, steps, input }, device), null);
            // Same kernels on the same values in the same order: the same bits.
            Assert.That(a.Output.ToArray(), Is.EqualTo(b2.Output.ToArray()), $"{kind}: outputs (in processed order, as Keras)");
            Assert.That(a.States.Last().ToArray(), Is.EqualTo(b2.States.Last().ToArray()), $"{kind}: final state");
        }
    }

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.All))]
    public void Stateful_layer_carries_its_final_states_into_the_next_batch_detached(string name, DeviceKind deviceKind, string requireVariable)
    {
        var device = TestDevices.Require(name, deviceKind, requireVariable);
        long batch = 2, steps = 6, input = 3, hidden = 4;
        foreach (var kind in Kinds)
        {
            using var scope = new DisposeScope();
            using var whole = Make(kind, input, hidden, returnSequences: true, seed: 4, device: device);
            using var stateful = Make(kind, input, hidden, returnSequences: true, stateful: true, seed: 4, device: device);
            var xs = Random(batch * steps * input, 8);
            var x = T(xs, new[] { batch, steps, input }, device);
            var full = whole.Forward(x, null);
            var first = x.Narrow(1, 0, 2).Detach();
            first.RequiresGrad = true;
            var second = x.Narrow(1, 2, 4);
            var out1 = stateful.Forward(first, null);
            var out2 = stateful.Forward(second, null);
            AssertClose(D(out2.Output), D(full.Output.Narrow(1, 2, 4)), $"{kind}: second batch continues the first", 1e-6, 1e-5);
            for (int i = 0; i < full.States.Count; i++)
                AssertClose(D(out2.States[i]), D(full.States[i]), $"{kind}: final state {i}", 1e-6, 1e-5);

            // The carried state is detached: the second batch's loss sends nothing into the first batch.
            out2.Output.Sum().Backward();
            Assert.That(first.Grad, Is.Null, $"{kind}: gradient crossed the batch boundary");

            // ResetStates: the next batch starts from zeros again.
            stateful.ResetStates();
            var again = stateful.Forward(first, null);
            Assert.That(again.Output.ToArray(), Is.EqualTo(out1.Output.ToArray()), $"{kind}: after ResetStates");

            // A stateful layer needs one batch size.
            var ex = Assert.Throws<ShapeMismatchException>(() => stateful.Forward(T(Random(3 * steps * input, 1), new[] { 3L, steps, input }, device)));
            Assert.That(ex!.Message, Does.Contain("3 rows").And.Contain("carried state has 2"));
        }
    }

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.All))]
    public void Bidirectional_merges_the_forward_and_the_time_ordered_backward_outputs(string name, DeviceKind deviceKind, string requireVariable)
    {
        var device = TestDevices.Require(name, deviceKind, requireVariable);
        long batch = 3, steps = 4, input = 2, hidden = 3;
        long[] lengths = { 4, 2, 3 };
        foreach (var kind in Kinds)
            foreach (var merge in new[] { "concat", "sum", "mul", "ave" })
                foreach (bool sequences in new[] { true, false })
                {
                    using var scope = new DisposeScope();
                    using var bi = new Bidirectional(Make(kind, input, hidden, sequences, device: device), merge);
                    var names = bi.NamedParameters().Select(p => p.Name).ToArray();
                    Assert.That(names, Does.Contain("forward.weight_ih").And.Contain("backward.weight_hh"));
                    var xs = Random(batch * steps * input, 12);
                    var result = bi.Forward(T(xs, new[] { batch, steps, input }, device), null, lengths: lengths);
                    long width = merge == "concat" ? 2 * hidden : hidden;
                    Assert.That(result.Output.ShapeArray, Is.EqualTo(sequences ? new[] { batch, steps, width } : new[] { batch, width }), $"{kind} {merge}");
                    Assert.That(result.States, Has.Count.EqualTo(2 * bi.Forwards.StateCount));

                    RecurrentReference Ref(bool backwards) => new()
                    {
                        Kind = kind, Batch = batch, Steps = steps, Input = input, Hidden = hidden, GoBackwards = backwards, Lengths = lengths,
                    };
                    (double[], double[]) Run(RecurrentLayer l, RecurrentReference r)
                    {
                        var (o, h, _) = r.Run(xs, D(l.WeightIh), D(l.WeightHh), D(l.BiasIh!), D(l.BiasHh!));
                        return (sequences ? o : h, h);
                    }
                    var (fw, _) = Run(bi.Forwards, Ref(false));
                    var backRef = Ref(true);
                    var (bw, _) = Run(bi.Backwards, backRef);
                    if (sequences) bw = backRef.ToTimeOrder(bw, hidden);
                    long rows = fw.Length / hidden;
                    var want = new double[rows * width];
                    for (long r = 0; r < rows; r++)
                        for (long k = 0; k < hidden; k++)
                        {
                            double f = fw[r * hidden + k], b = bw[r * hidden + k];
                            if (merge == "concat")
                            {
                                want[r * width + k] = f;
                                want[r * width + hidden + k] = b;
                            }
                            else want[r * width + k] = merge switch { "sum" => f + b, "mul" => f * b, _ => (f + b) / 2 };
                        }
                    AssertClose(D(result.Output), want, $"{kind} {merge} returnSequences={sequences}");
                }
    }

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.All))]
    public void Bidirectional_gradients_match_finite_differences_with_lengths(string name, DeviceKind deviceKind, string requireVariable)
    {
        var device = TestDevices.Require(name, deviceKind, requireVariable);
        long batch = 2, steps = 3, input = 2, hidden = 3;
        long[] lengths = { 3, 2 };
        foreach (var kind in Kinds)
        {
            using var scope = new DisposeScope();
            using var bi = new Bidirectional(Make(kind, input, hidden, returnSequences: true, returnState: false, device: device));
            var values = Random(batch * steps * input, 13);
            var x = T(values, new[] { batch, steps, input }, device);
            x.RequiresGrad = true;
            var output = bi.Forward(x, null, lengths: lengths).Output;
            var w = Random(output.Count, 14);
            output.Mul(T(w, output.ShapeArray, device)).Sum().Backward();
            var analytic = x.Grad!.ToArray();

            double Loss()
            {
                var fw = new RecurrentReference { Kind = kind, Batch = batch, Steps = steps, Input = input, Hidden = hidden, Lengths = lengths };
                var bw = new RecurrentReference { Kind = kind, Batch = batch, Steps = steps, Input = input, Hidden = hidden, Lengths = lengths, GoBackwards = true };
                var f = fw.Run(values, D(bi.Forwards.WeightIh), D(bi.Forwards.WeightHh), D(bi.Forwards.BiasIh!), D(bi.Forwards.BiasHh!)).Outputs;
                var b = bw.ToTimeOrder(bw.Run(values, D(bi.Backwards.WeightIh), D(bi.Backwards.WeightHh), D(bi.Backwards.BiasIh!), D(bi.Backwards.BiasHh!)).Outputs, hidden);
                double sum = 0;
                for (long r = 0; r < batch * steps; r++)
                    for (long k = 0; k < hidden; k++)
                        sum += w[r * 2 * hidden + k] * f[r * hidden + k] + w[r * 2 * hidden + hidden + k] * b[r * hidden + k];
                return sum;
            }
            for (int i = 0; i < values.Length; i++)
            {
                double saved = values[i];
                values[i] = saved + 1e-6;
                double plus = Loss();
                values[i] = saved - 1e-6;
                double minus = Loss();
                values[i] = saved;
                double numeric = (plus - minus) / 2e-6;
                Assert.That(Math.Abs(analytic[i] - numeric), Is.LessThanOrEqualTo(2e-3 + 2e-3 * Math.Abs(numeric)), $"{kind}: d/d x[{i}]");
            }
        }
    }

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.All))]
    public void Stacked_layers_with_dropout_between_them_train(string name, DeviceKind deviceKind, string requireVariable)
    {
        var device = TestDevices.Require(name, deviceKind, requireVariable);
        // LSTM(returnSequences) -> Dropout -> GRU -> Dense, learning to output the mean of the first feature
        // over the sequence: the loss must fall well below its starting value.
        using var model = new Sequential(
            new LSTM(2, 8, returnSequences: true, seed: 1, device: device),
            new Dropout(0.2f, seed: 3),
            new GRU(8, 8, seed: 2, device: device),
            new Dense(8, 1, seed: 4, device: device));
        Assert.That(model.NamedParameters().Select(p => p.Name), Does.Contain("0.weight_ih").And.Contain("2.bias_hh"));
        var optimizer = new Adam(model.Parameters(), 0.02f);
        long batch = 16, steps = 5;
        var xs = Random(batch * steps * 2, 20);
        var ys = new double[batch];
        for (long b = 0; b < batch; b++)
        {
            for (long t = 0; t < steps; t++) ys[b] += xs[(b * steps + t) * 2] / steps;
        }
        float first = 0, last = 0;
        for (int epoch = 0; epoch < 150; epoch++)
        {
            using var scope = new DisposeScope();
            model.ZeroGrad();
            var prediction = model.Forward(T(xs, new[] { batch, steps, 2 }, device));
            var loss = prediction.Sub(T(ys, new[] { batch, 1L }, device)).Square().Mean();
            loss.Backward();
            optimizer.Step();
            if (epoch == 0) first = loss.Item();
            last = loss.Item();
        }
        Assert.That(last, Is.LessThan(first * 0.2f), $"loss {first} -> {last}");
    }

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.All))]
    public void Step_gradients_are_shared_per_pass_of_backward(string name, DeviceKind deviceKind, string requireVariable)
    {
        // The steps add their gradients into one shared gradient of the input projection and of W_hh^T per
        // pass: a second pass over the same graph, or a loss that reaches only some steps, must start afresh.
        var device = TestDevices.Require(name, deviceKind, requireVariable);
        foreach (var kind in Kinds)
        {
            using var scope = new DisposeScope();
            using var layer = Make(kind, 3, 4, returnSequences: true, device: device);
            var x = Tensor.Uniform(new long[] { 2, 5, 3 }, -1, 1, 7, device);
            x.RequiresGrad = true;
            var output = layer.Forward(x);
            output.Select(1, 1).Sum().Backward();  // reaches steps 0 and 1 only
            var dxEarly = x.Grad!.ToArray();
            var dwEarly = layer.WeightHh.Grad!.ToArray();
            for (int i = 2 * 3; i < 5 * 3; i++) Assert.That(dxEarly[i], Is.EqualTo(0f), $"{kind}: step {i / 3} of row 0 is after the loss");
            x.ZeroGrad();
            layer.ZeroGrad();

            var loss = output.Sum();
            loss.Backward();
            var dx = x.Grad!.ToArray();
            var dw = layer.WeightHh.Grad!.ToArray();
            loss.Backward();  // again: gradients accumulate to twice the first pass
            Assert.That(x.Grad!.ToArray(), Is.EqualTo(dx.Select(v => 2 * v).ToArray()).Within(1e-6f), $"{kind}: d x after two passes");
            Assert.That(layer.WeightHh.Grad!.ToArray(), Is.EqualTo(dw.Select(v => 2 * v).ToArray()).Within(1e-5f), $"{kind}: d weight_hh after two passes");
            Assert.That(dx, Is.Not.EqualTo(dxEarly), $"{kind}: the full loss reaches more than the early one");

            // The same gradients from a fresh graph: nothing of the earlier passes leaked in.
            x.ZeroGrad();
            layer.ZeroGrad();
            layer.Forward(x).Sum().Backward();
            Assert.That(x.Grad!.ToArray(), Is.EqualTo(dx), $"{kind}: d x of a fresh graph");
            Assert.That(layer.WeightHh.Grad!.ToArray(), Is.EqualTo(dw), $"{kind}: d weight_hh of a fresh graph");
        }
    }

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.All))]
    public void Forward_and_backward_inside_a_scope_leave_no_tensor_behind(string name, DeviceKind deviceKind, string requireVariable)
    {
        var device = TestDevices.Require(name, deviceKind, requireVariable);
        foreach (var kind in Kinds)
        {
            using var layer = Make(kind, 3, 4, returnSequences: true, stateful: true, device: device);
            using var bi = new Bidirectional(Make(kind, 3, 4, returnSequences: true, device: device));
            void Batch()
            {
                using var scope = new DisposeScope();
                var x = Tensor.Uniform(new long[] { 2, 5, 3 }, -1, 1, 7, device);
                layer.Forward(x).Sum().Add(bi.Forward(x, null, lengths: new long[] { 5, 3 }).Output.Sum()).Backward();
            }
            Batch();  // the stateful layer now carries two (h) or four (h, c) tensors, and every parameter has a gradient
            long live = Tensor.LiveCount;
            for (int i = 0; i < 3; i++) Batch();
            Assert.That(Tensor.LiveCount, Is.EqualTo(live), $"{kind}: live tensors after three more batches");
        }
    }

    [Test]
    public void Weights_move_through_a_weights_file_under_PyTorch_names()
    {
        string path = Path.Combine(Path.GetTempPath(), $"recurrent-{Guid.NewGuid():N}.knw");
        try
        {
            using var scope = new DisposeScope();
            using var saved = new Bidirectional(new LSTM(3, 4, returnSequences: true, seed: 1));
            using var loaded = new Bidirectional(new LSTM(3, 4, returnSequences: true, seed: 2));
            Assert.That(saved.NamedParameters().Select(p => (p.Name, string.Join("x", p.Tensor.Shape))), Is.EqualTo(new[]
            {
                ("forward.weight_ih", "16x3"), ("forward.weight_hh", "16x4"), ("forward.bias_ih", "16"), ("forward.bias_hh", "16"),
                ("backward.weight_ih", "16x3"), ("backward.weight_hh", "16x4"), ("backward.bias_ih", "16"), ("backward.bias_hh", "16"),
            }));
            var x = Tensor.Uniform(new long[] { 2, 5, 3 }, -1, 1, 3);
            Assert.That(loaded.Forward(x).ToArray(), Is.Not.EqualTo(saved.Forward(x).ToArray()), "different seeds, different weights");
            WeightsFile.Save(saved, path);
            WeightsFile.Load(loaded, path);
            Assert.That(loaded.Forward(x).ToArray(), Is.EqualTo(saved.Forward(x).ToArray()));
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Test]
    public void Weights_start_uniform_within_one_over_sqrt_units_as_in_PyTorch()
    {
        using var gru = new GRU(10, 25, seed: 3);
        foreach (var (name, tensor) in gru.NamedParameters())
        {
            var v = tensor.ToArray();
            Assert.That(v.Max(), Is.LessThanOrEqualTo(0.2f).And.GreaterThan(0.18f), name);
            Assert.That(v.Min(), Is.GreaterThanOrEqualTo(-0.2f).And.LessThan(-0.18f), name);
        }
        Assert.That(gru.WeightIh.Shape, Is.EqualTo(new long[] { 75, 10 }));
        Assert.That(gru.WeightHh.Shape, Is.EqualTo(new long[] { 75, 25 }));
        Assert.That(new SimpleRNN(2, 3, bias: false).NamedParameters().Select(p => p.Name), Is.EqualTo(new[] { "weight_ih", "weight_hh" }));
    }

    // ---- bad input ---------------------------------------------------------------------------------------

    [Test]
    public void Bad_input_throws_naming_the_shapes()
    {
        using var scope = new DisposeScope();
        using var lstm = new LSTM(3, 4);
        var ex = Assert.Throws<ShapeMismatchException>(() => lstm.Forward(Tensor.Zeros(new long[] { 2, 3 })));
        Assert.That(ex!.Message, Does.Contain("[B, T, 3]").And.Contain("[2, 3]"));
        ex = Assert.Throws<ShapeMismatchException>(() => lstm.Forward(Tensor.Zeros(new long[] { 2, 5, 4 })));
        Assert.That(ex!.Message, Does.Contain("[2, 5, 4]"));
        var x = Tensor.Zeros(new long[] { 2, 5, 3 });
        Assert.That(Assert.Throws<ArgumentException>(() => lstm.Forward(Tensor.Zeros(new long[] { 2, 0, 3 })))!.Message, Does.Contain("no time steps"));
        Assert.That(Assert.Throws<ShapeMismatchException>(() => lstm.Forward(x, null, mask: Tensor.Ones(new long[] { 2, 4 })))!.Message,
            Does.Contain("[2, 5]").And.Contain("[2, 4]"));
        Assert.That(Assert.Throws<ArgumentException>(() => lstm.Forward(x, null, mask: Tensor.Full(new long[] { 2, 5 }, 0.5f)))!.Message,
            Does.Contain("only 0 and 1").And.Contain("[0, 0]"));
        Assert.That(Assert.Throws<ShapeMismatchException>(() => lstm.Forward(x, null, lengths: new long[] { 5 }))!.Message,
            Does.Contain("1 lengths for a batch of 2"));
        Assert.That(Assert.Throws<ArgumentOutOfRangeException>(() => lstm.Forward(x, null, lengths: new long[] { 5, 6 }))!.Message,
            Does.Contain("length 6"));
        Assert.That(Assert.Throws<ArgumentException>(() => lstm.Forward(x, null, mask: Tensor.Ones(new long[] { 2, 5 }), lengths: new long[] { 5, 5 }))!.Message,
            Does.Contain("not both"));
        Assert.That(Assert.Throws<ArgumentException>(() => lstm.Forward(x, new[] { Tensor.Zeros(new long[] { 2, 4 }) }))!.Message,
            Does.Contain("takes 2"));
        Assert.That(Assert.Throws<ShapeMismatchException>(() => lstm.Forward(x, new[] { Tensor.Zeros(new long[] { 2, 4 }), Tensor.Zeros(new long[] { 3, 4 }) }))!.Message,
            Does.Contain("initial state 1").And.Contain("[2, 4]").And.Contain("[3, 4]"));
        Assert.Throws<ArgumentOutOfRangeException>(() => new GRU(0, 4));
        Assert.That(Assert.Throws<ArgumentException>(() => new Bidirectional(new SimpleRNN(3, 4), "max"))!.Message, Does.Contain("\"max\""));
        Assert.That(Assert.Throws<ArgumentException>(() => new Bidirectional(new SimpleRNN(3, 4, goBackwards: true)))!.Message, Does.Contain("goBackwards"));
        // The layer is still usable after every refusal.
        Assert.That(lstm.Forward(x).ShapeArray, Is.EqualTo(new long[] { 2, 4 }));
    }
}
