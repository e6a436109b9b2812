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
}
