using NUnit.Framework;
using static Kernels.Nn.Tests.GradCheck;

namespace Kernels.Nn.Tests;

/// <summary>
/// The fused recurrent cells (RecurrentCells.Lstm / Gru: one kernel forward, one backward) on every
/// backend: values and gradients against the same cells composed from plain tensor ops
/// (<see cref="ComposedCells"/>, the version the contract started as), gradients against float64
/// finite differences (masks with padding rows, batch 1 and 3, hidden 1, 7 and 33, only H or only C
/// used, two unrolled steps sharing a recurrent weight), large gates, and bad input. A backend that is
/// absent is skipped with its reason, or fails when KERNELS_REQUIRE_CUDA=1 / KERNELS_REQUIRE_OPENCL=1
/// says it must be there.
/// </summary>
[TestFixture]
public class RecurrentCellTests
{
    // ---- float64 references of kernels.h's formulas ------------------------------------------------

    private static double Sigmoid(double x) => 1 / (1 + Math.Exp(-x));

    /// <summary>One LSTM step: (h, c), each [batch, hidden] row-major.</summary>
    private static (double[] H, double[] C) LstmRef(double[] gates, double[] cPrev, double[] hPrev, float[]? mask, long batch, long hidden)
    {
        var h = new double[batch * hidden];
        var c = new double[batch * hidden];
        for (long b = 0; b < batch; b++)
            for (long j = 0; j < hidden; j++)
            {
                long e = b * hidden + j, g0 = b * 4 * hidden + j;
                if (mask is not null && mask[b] == 0)
                {
                    h[e] = hPrev[e];
                    c[e] = cPrev[e];
                    continue;
                }
                double i = Sigmoid(gates[g0]), f = Sigmoid(gates[g0 + hidden]), g = Math.Tanh(gates[g0 + 2 * hidden]),
                       o = Sigmoid(gates[g0 + 3 * hidden]);
                c[e] = f * cPrev[e] + i * g;
                h[e] = o * Math.Tanh(c[e]);
            }
        return (h, c);
    }

    private static double[] GruRef(double[] xGates, double[] hGates, double[] hPrev, float[]? mask, long batch, long hidden)
    {
        var h = new double[batch * hidden];
        for (long b = 0; b < batch; b++)
            for (long j = 0; j < hidden; j++)
            {
                long e = b * hidden + j, at = b * 3 * hidden + j;
                if (mask is not null && mask[b] == 0)
                {
                    h[e] = hPrev[e];
                    continue;
                }
                double r = Sigmoid(xGates[at] + hGates[at]), z = Sigmoid(xGates[at + hidden] + hGates[at + hidden]);
                double n = Math.Tanh(xGates[at + 2 * hidden] + r * hGates[at + 2 * hidden]);
                h[e] = (1 - z) * n + z * hPrev[e];
            }
        return h;
    }

    /// <summary>[h | c] per row, the layout Concatenate(new[] { H, C }, 1) gives.</summary>
    private static double[] RowConcat(double[] a, double[] b, long batch, long hidden) =>
        Enumerable.Range(0, (int)batch).SelectMany(r => a.Skip(r * (int)hidden).Take((int)hidden)
                                                        .Concat(b.Skip(r * (int)hidden).Take((int)hidden))).ToArray();

    /// <summary>Every third row a padding step, row 1 always (so batch 2 and 3 have one).</summary>
    private static float[] MaskFor(long batch) =>
        Enumerable.Range(0, (int)batch).Select(b => b % 3 == 1 ? 0f : 1f).ToArray();

    private static float[] Floats(long n, int seed, double low, double high) =>
        Random(n, seed, low, high).Select(v => (float)v).ToArray();

    public static IEnumerable<TestCaseData> DevicesAndSizes()
    {
        foreach (var d in TestDevices.All())
            foreach (var (b, h) in new (long, long)[] { (1, 1), (3, 7), (1, 33), (3, 33), (2, 1) })
                foreach (bool masked in new[] { false, true })
                    yield return new TestCaseData(d.Arguments[0], d.Arguments[1], d.Arguments[2], b, h, masked)
                        .SetArgDisplayNames((string)d.Arguments[0]! == "cpu" ? "cpu" : d.Arguments[0]!.ToString()!.Split(':')[0],
                                            $"B{b}", $"H{h}", masked ? "masked" : "unmasked");
    }

    // ---- fused vs composed ---------------------------------------------------------------------------

    [TestCaseSource(nameof(DevicesAndSizes))]
    public void Fused_lstm_matches_the_composed_cell_in_values_and_gradients(string name, DeviceKind kind, string requireVariable,
                                                                             long batch, long hidden, bool masked)
    {
        var device = TestDevices.Require(name, kind, requireVariable);
        var gates = Floats(batch * 4 * hidden, 1, -4, 4);
        var cPrev = Floats(batch * hidden, 2, -2, 2);
        var hPrev = Floats(batch * hidden, 3, -1, 1);
        var wh = Floats(batch * hidden, 4, -1, 1);
        var wc = Floats(batch * hidden, 5, -1, 1);
        var results = new List<float[][]>();
        foreach (bool fused in new[] { true, false })
        {
            using var scope = new DisposeScope();
            var g = Tensor.FromArray(gates, new[] { batch, 4 * hidden }, device);
            var c0 = Tensor.FromArray(cPrev, new[] { batch, hidden }, device);
            var h0 = Tensor.FromArray(hPrev, new[] { batch, hidden }, device);
            foreach (var t in new[] { g, c0, h0 }) t.RequiresGrad = true;
            var mask = masked ? Tensor.FromArray(MaskFor(batch), new[] { batch }, device) : null;
            var (h, c) = fused ? RecurrentCells.Lstm(g, c0, h0, mask) : ComposedCells.Lstm(g, c0, h0, mask);
            var loss = (h * Tensor.FromArray(wh, new[] { batch, hidden }, device)).Sum()
                     + (c * Tensor.FromArray(wc, new[] { batch, hidden }, device)).Sum();
            loss.Backward();
            results.Add(new[] { h.ToArray(), c.ToArray(), g.Grad!.ToArray(), c0.Grad!.ToArray(),
                                h0.Grad?.ToArray() ?? new float[batch * hidden] });
        }
        string[] what = { "H", "C", "d gates", "d cPrev", "d hPrev" };
        for (int k = 0; k < what.Length; k++)
            Assert.That(results[0][k], Is.EqualTo(results[1][k]).Within(2e-6f), $"{what[k]}: fused vs composed");
    }

    [TestCaseSource(nameof(DevicesAndSizes))]
    public void Fused_gru_matches_the_composed_cell_in_values_and_gradients(string name, DeviceKind kind, string requireVariable,
                                                                            long batch, long hidden, bool masked)
    {
        var device = TestDevices.Require(name, kind, requireVariable);
        var xGates = Floats(batch * 3 * hidden, 11, -3, 3);
        var hGates = Floats(batch * 3 * hidden, 12, -3, 3);
        var hPrev = Floats(batch * hidden, 13, -1, 1);
        var w = Floats(batch * hidden, 14, -1, 1);
        var results = new List<float[][]>();
        foreach (bool fused in new[] { true, false })
        {
            using var scope = new DisposeScope();
            var xg = Tensor.FromArray(xGates, new[] { batch, 3 * hidden }, device);
            var hg = Tensor.FromArray(hGates, new[] { batch, 3 * hidden }, device);
            var h0 = Tensor.FromArray(hPrev, new[] { batch, hidden }, device);
            foreach (var t in new[] { xg, hg, h0 }) t.RequiresGrad = true;
            var mask = masked ? Tensor.FromArray(MaskFor(batch), new[] { batch }, device) : null;
            var h = fused ? RecurrentCells.Gru(xg, hg, h0, mask) : ComposedCells.Gru(xg, hg, h0, mask);
            (h * Tensor.FromArray(w, new[] { batch, hidden }, device)).Sum().Backward();
            results.Add(new[] { h.ToArray(), xg.Grad!.ToArray(), hg.Grad!.ToArray(), h0.Grad!.ToArray() });
        }
        string[] what = { "H", "d xGates", "d hGates", "d hPrev" };
        for (int k = 0; k < what.Length; k++)
            Assert.That(results[0][k], Is.EqualTo(results[1][k]).Within(2e-6f), $"{what[k]}: fused vs composed");
    }

    // ---- gradients against float64 finite differences ------------------------------------------------

    public static IEnumerable<TestCaseData> DevicesAndAwkwardSizes()
    {
        foreach (var d in TestDevices.All())
            foreach (var (b, h) in new (long, long)[] { (1, 1), (3, 1), (1, 7), (3, 7), (3, 33) })
                yield return new TestCaseData(d.Arguments[0], d.Arguments[1], d.Arguments[2], b, h)
                    .SetArgDisplayNames(d.Arguments[0]!.ToString()!.Split(':')[0], $"B{b}", $"H{h}");
    }

    [TestCaseSource(nameof(DevicesAndAwkwardSizes))]
    public void Lstm_gradients_match_float64_finite_differences(string name, DeviceKind kind, string requireVariable, long batch, long hidden)
    {
        var device = TestDevices.Require(name, kind, requireVariable);
        var mask = MaskFor(batch);
        long[] gatesShape = { batch, 4 * hidden }, stateShape = { batch, hidden };
        var inputs = new[] { (Random(batch * 4 * hidden, 21, -3, 3), gatesShape), (Random(batch * hidden, 22, -2, 2), stateShape),
                             (Random(batch * hidden, 23), stateShape) };
        Tensor Mask() => Tensor.FromArray(mask, new[] { batch }, device);
        // Both outputs used, masked (padding rows pass dh and dc straight to hPrev and cPrev).
        Check(t =>
              {
                  var (h, c) = RecurrentCells.Lstm(t[0], t[1], t[2], Mask());
                  return Tensor.Concatenate(new[] { h, c }, 1);
              },
              x =>
              {
                  var (h, c) = LstmRef(x[0], x[1], x[2], mask, batch, hidden);
                  return RowConcat(h, c, batch, hidden);
              }, inputs, device);
        // Only H used; only C used (the other output gets no gradient at all). Unmasked, hPrev has no
        // direct path (its gradient comes through the layer's GEMM), so it is a constant here.
        var hConst = Floats(batch * hidden, 24, -1, 1);
        Tensor HPrev() => Tensor.FromArray(hConst, stateShape, device);
        var hConstD = hConst.Select(v => (double)v).ToArray();
        Check(t => RecurrentCells.Lstm(t[0], t[1], HPrev()).H.Tanh(),
              x => LstmRef(x[0], x[1], hConstD, null, batch, hidden).H.Select(Math.Tanh).ToArray(), inputs[..2], device);
        Check(t => RecurrentCells.Lstm(t[0], t[1], HPrev()).C.Square(),
              x => LstmRef(x[0], x[1], hConstD, null, batch, hidden).C.Select(v => v * v).ToArray(), inputs[..2], device);
    }

    [TestCaseSource(nameof(DevicesAndAwkwardSizes))]
    public void Gru_gradients_match_float64_finite_differences(string name, DeviceKind kind, string requireVariable, long batch, long hidden)
    {
        var device = TestDevices.Require(name, kind, requireVariable);
        var mask = MaskFor(batch);
        long[] gatesShape = { batch, 3 * hidden }, stateShape = { batch, hidden };
        var inputs = new[] { (Random(batch * 3 * hidden, 31, -3, 3), gatesShape), (Random(batch * 3 * hidden, 32, -3, 3), gatesShape),
                             (Random(batch * hidden, 33), stateShape) };
        foreach (bool masked in new[] { false, true })
            Check(t => RecurrentCells.Gru(t[0], t[1], t[2], masked ? Tensor.FromArray(mask, new[] { batch }, device) : null),
                  x => GruRef(x[0], x[1], x[2], masked ? mask : null, batch, hidden), inputs, device);
    }

    /// <summary>
    /// Two LSTM steps as a layer runs them: gates_t = x_t + h_{t-1} W, so h_1 feeds step 2 through the GEMM
    /// and (on padding rows) directly, and c_1 feeds step 2's cell: the two-output backward must see
    /// both gradients of step 1 once, after step 2's backward.
    /// </summary>
    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.All))]
    public void Two_unrolled_lstm_steps_match_float64_finite_differences(string name, DeviceKind kind, string requireVariable)
    {
        var device = TestDevices.Require(name, kind, requireVariable);
        const long batch = 3, hidden = 5;
        var mask1 = new float[] { 1, 0, 1 };
        var mask2 = new float[] { 1, 1, 0 };
        long[] gatesShape = { batch, 4 * hidden }, stateShape = { batch, hidden }, wShape = { hidden, 4 * hidden };
        var inputs = new[] { (Random(batch * 4 * hidden, 41, -2, 2), gatesShape), (Random(batch * 4 * hidden, 42, -2, 2), gatesShape),
                             (Random(hidden * 4 * hidden, 43, -0.7, 0.7), wShape), (Random(batch * hidden, 44), stateShape),
                             (Random(batch * hidden, 45), stateShape) };
        Check(t =>
              {
                  var m1 = Tensor.FromArray(mask1, new[] { batch }, device);
                  var m2 = Tensor.FromArray(mask2, new[] { batch }, device);
                  var (h1, c1) = RecurrentCells.Lstm(t[0] + t[4].MatMul(t[2]), t[3], t[4], m1);
                  var (h2, c2) = RecurrentCells.Lstm(t[1] + h1.MatMul(t[2]), c1, h1, m2);
                  return Tensor.Concatenate(new[] { h2, c2 }, 1);
              },
              x =>
              {
                  var (h1, c1) = LstmRef(Add(x[0], MatMul(x[4], x[2], 1, batch, hidden, 4 * hidden, true)), x[3], x[4], mask1, batch, hidden);
                  var (h2, c2) = LstmRef(Add(x[1], MatMul(h1, x[2], 1, batch, hidden, 4 * hidden, true)), c1, h1, mask2, batch, hidden);
                  return RowConcat(h2, c2, batch, hidden);
              }, inputs, device);
    }

    private static double[] Add(double[] a, double[] b) => a.Zip(b, (u, v) => u + v).ToArray();

    // ---- large gates, no recording ---------------------------------------------------------------------

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.All))]
    public void Large_gates_saturate_without_overflow(string name, DeviceKind kind, string requireVariable)
    {
        var device = TestDevices.Require(name, kind, requireVariable);
        const long batch = 2, hidden = 4;
        // +-3e38 and +-100: exp(-x) would overflow float32 in a naive sigmoid for the negative ones.
        var gates = Enumerable.Range(0, (int)(batch * 4 * hidden)).Select(i => (i % 4) switch { 0 => 3e38f, 1 => -3e38f, 2 => 100f, _ => -100f }).ToArray();
        var cPrev = Floats(batch * hidden, 51, -1, 1);
        using var scope = new DisposeScope();
        var g = Tensor.FromArray(gates, new[] { batch, 4 * hidden }, device);
        g.RequiresGrad = true;
        var c0 = Tensor.FromArray(cPrev, new[] { batch, hidden }, device);
        var h0 = Tensor.Zeros(new[] { batch, hidden }, device);
        var (h, c) = RecurrentCells.Lstm(g, c0, h0);
        var (hRef, cRef) = LstmRef(gates.Select(v => (double)v).ToArray(), cPrev.Select(v => (double)v).ToArray(), new double[batch * hidden], null, batch, hidden);
        Assert.That(h.ToArray(), Is.EqualTo(hRef.Select(v => (float)v).ToArray()).Within(1e-6f), "H");
        Assert.That(c.ToArray(), Is.EqualTo(cRef.Select(v => (float)v).ToArray()).Within(1e-6f), "C");
        (h.Sum() + c.Sum()).Backward();
        Assert.That(g.Grad!.ToArray().All(float.IsFinite), "the gradient of saturated gates is finite");
        var xg = Tensor.FromArray(gates.Take((int)(batch * 3 * hidden)).ToArray(), new[] { batch, 3 * hidden }, device);
        var hg = Tensor.FromArray(gates.Skip((int)(batch * hidden)).ToArray(), new[] { batch, 3 * hidden }, device);
        var gru = RecurrentCells.Gru(xg, hg, h0).ToArray();
        var gruRef = GruRef(xg.ToArray().Select(v => (double)v).ToArray(), hg.ToArray().Select(v => (double)v).ToArray(),
                            new double[batch * hidden], null, batch, hidden);
        Assert.That(gru, Is.EqualTo(gruRef.Select(v => (float)v).ToArray()).Within(1e-6f), "GRU H");
    }

    [Test]
    public void Without_gradients_nothing_is_recorded_and_the_values_are_the_same()
    {
        using var scope = new DisposeScope();
        var g = Tensor.FromArray(Floats(2 * 12, 61, -3, 3), new long[] { 2, 12 });
        var c0 = Tensor.FromArray(Floats(6, 62, -1, 1), new long[] { 2, 3 });
        var h0 = Tensor.FromArray(Floats(6, 63, -1, 1), new long[] { 2, 3 });
        var (h, c) = RecurrentCells.Lstm(g, c0, h0);
        Assert.That(h.RequiresGrad || c.RequiresGrad, Is.False, "no input requires gradients: nothing recorded");
        g.RequiresGrad = true;
        var (hr, cr) = RecurrentCells.Lstm(g, c0, h0);
        Assert.That(hr.RequiresGrad && cr.RequiresGrad, "both outputs record when the gates require gradients");
        Assert.That(hr.ToArray(), Is.EqualTo(h.ToArray()), "H with and without saving for backward");
        Assert.That(cr.ToArray(), Is.EqualTo(c.ToArray()), "C with and without saving for backward");
        using (Tensor.NoGrad())
        {
            var (hn, _) = RecurrentCells.Lstm(g, c0, h0);
            Assert.That(hn.RequiresGrad, Is.False, "NoGrad records nothing");
        }
    }

    [Test]
    public void A_backward_pass_runs_the_lstm_rule_once_with_both_gradients()
    {
        // Autograd of a two-output op: H and C each used twice; the gradient must be the sum over every use.
        var device = Device.Cpu;
        const long batch = 2, hidden = 3;
        var gates = Random(batch * 4 * hidden, 71, -2, 2);
        var cPrev = Random(batch * hidden, 72);
        var hPrev = Random(batch * hidden, 73);
        Check(t =>
              {
                  var (h, c) = RecurrentCells.Lstm(t[0], t[1], t[2], Tensor.FromArray(new float[] { 0, 1 }, new[] { batch }, device));
                  return (h * c + h.Tanh()) * 2f + c;
              },
              x =>
              {
                  var (h, c) = LstmRef(x[0], x[1], x[2], new float[] { 0, 1 }, batch, hidden);
                  return h.Zip(c, (u, v) => (u * v + Math.Tanh(u)) * 2 + v).ToArray();
              },
              new[] { (gates, new[] { batch, 4 * hidden }), (cPrev, new[] { batch, hidden }), (hPrev, new[] { batch, hidden }) }, device);
    }

    // ---- bad input -----------------------------------------------------------------------------------

    [Test]
    public void Shape_mismatches_throw_naming_the_shapes()
    {
        using var scope = new DisposeScope();
        var gates = Tensor.Zeros(new long[] { 2, 12 });
        var state = Tensor.Zeros(new long[] { 2, 3 });
        var ex = Assert.Throws<ShapeMismatchException>(() => RecurrentCells.Lstm(Tensor.Zeros(new long[] { 2, 11 }), state, state));
        Assert.That(ex!.Message, Does.Contain("gates [2, 11]").And.Contain("hPrev [2, 3]").And.Contain("[B, 4H]"));
        ex = Assert.Throws<ShapeMismatchException>(() => RecurrentCells.Lstm(gates, Tensor.Zeros(new long[] { 3, 3 }), state));
        Assert.That(ex!.Message, Does.Contain("cPrev [3, 3]"));
        ex = Assert.Throws<ShapeMismatchException>(() => RecurrentCells.Lstm(gates, state, state, Tensor.Zeros(new long[] { 3 })));
        Assert.That(ex!.Message, Does.Contain("mask").And.Contain("[3]").And.Contain("[2]"));
        ex = Assert.Throws<ShapeMismatchException>(() => RecurrentCells.Gru(Tensor.Zeros(new long[] { 2, 9 }), Tensor.Zeros(new long[] { 2, 6 }), state));
        Assert.That(ex!.Message, Does.Contain("hGates [2, 6]").And.Contain("xGates [2, 9]"));
        ex = Assert.Throws<ShapeMismatchException>(() => RecurrentCells.Gru(Tensor.Zeros(new long[] { 2, 9 }), Tensor.Zeros(new long[] { 2, 9 }), Tensor.Zeros(new long[] { 6 })));
        Assert.That(ex!.Message, Does.Contain("hPrev [6]"));
        Assert.Throws<ArgumentNullException>(() => RecurrentCells.Gru(null!, gates, state));
        // The process stays usable.
        Assert.That(RecurrentCells.Lstm(gates, state, state).H.ToArray(), Is.EqualTo(new float[6]));
    }

    [Test]
    public void Operands_on_two_devices_throw_naming_both()
    {
        if (!Device.TryGet("opencl:0", out var other)) Assert.Ignore("opencl:0 is not available: no second device");
        using var scope = new DisposeScope();
        var gates = Tensor.Zeros(new long[] { 2, 12 });
        var state = Tensor.Zeros(new long[] { 2, 3 });
        var elsewhere = Tensor.Zeros(new long[] { 2, 3 }, other);
        var ex = Assert.Throws<DeviceMismatchException>(() => RecurrentCells.Lstm(gates, state, elsewhere));
        Assert.That(ex!.Message, Does.Contain("cpu").And.Contain("opencl:0"));
    }
}

/// <summary>
/// The cells composed from plain tensor ops (Narrow, Sigmoid, Tanh, Mul, Add, Sub: a dozen kernels and
/// their backward rules per step): the first version of the RecurrentCells contract, kept as the
/// reference the fused kernels are compared with. Same shapes and mask rule (0/1 masks).
/// </summary>
internal static class ComposedCells
{
    public static (Tensor H, Tensor C) Lstm(Tensor gates, Tensor cPrev, Tensor hPrev, Tensor? mask = null)
    {
        long batch = hPrev.Shape[0], hidden = hPrev.Shape[1];
        var i = gates.Narrow(1, 0, hidden).Sigmoid();
        var f = gates.Narrow(1, hidden, hidden).Sigmoid();
        var g = gates.Narrow(1, 2 * hidden, hidden).Tanh();
        var o = gates.Narrow(1, 3 * hidden, hidden).Sigmoid();
        var c = f * cPrev + i * g;
        var h = o * c.Tanh();
        if (mask is null) return (h, c);
        var m = mask.Reshape(batch, 1);
        return (Keep(h, hPrev, m), Keep(c, cPrev, m));
    }

    public static Tensor Gru(Tensor xGates, Tensor hGates, Tensor hPrev, Tensor? mask = null)
    {
        long batch = hPrev.Shape[0], hidden = hPrev.Shape[1];
        var r = (xGates.Narrow(1, 0, hidden) + hGates.Narrow(1, 0, hidden)).Sigmoid();
        var z = (xGates.Narrow(1, hidden, hidden) + hGates.Narrow(1, hidden, hidden)).Sigmoid();
        var n = (xGates.Narrow(1, 2 * hidden, hidden) + r * hGates.Narrow(1, 2 * hidden, hidden)).Tanh();
        var h = n + z * (hPrev - n);
        return mask is null ? h : Keep(h, hPrev, mask.Reshape(batch, 1));
    }

    // m * next + (1 - m) * prev, written so that a 0/1 mask selects exactly: prev + m * (next - prev).
    static Tensor Keep(Tensor next, Tensor prev, Tensor m) => prev + m * (next - prev);
}
