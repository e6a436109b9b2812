using NUnit.Framework;
using static Kernels.Nn.Tests.GradCheck;

namespace Kernels.Nn.Tests;

/// <summary>
/// Comparisons (Eq/Ne/Lt/Le/Gt/Ge), Where, Softmax/LogSoftmax over any axis and SequenceMask on every
/// backend: values against the formulas written here (comparisons with NaN, ties and broadcasting),
/// gradients of Where and Softmax(axis) against float64 finite differences, and bad input.
/// </summary>
[TestFixture]
public class CompareTests
{
    private static readonly (string Name, Func<Tensor, Tensor, Tensor> Op, Func<float, float, bool> Want)[] Comparisons =
    {
        ("Eq", (a, b) => a.Eq(b), (u, v) => u == v),
        ("Ne", (a, b) => a.Ne(b), (u, v) => u != v),
        ("Lt", (a, b) => a.Lt(b), (u, v) => u < v),
        ("Le", (a, b) => a.Le(b), (u, v) => u <= v),
        ("Gt", (a, b) => a.Gt(b), (u, v) => u > v),
        ("Ge", (a, b) => a.Ge(b), (u, v) => u >= v),
    };

    private static readonly (string Name, Func<Tensor, float, Tensor> Op, Func<float, float, bool> Want)[] ScalarComparisons =
    {
        ("Eq", (a, s) => a.Eq(s), (u, v) => u == v),
        ("Ne", (a, s) => a.Ne(s), (u, v) => u != v),
        ("Lt", (a, s) => a.Lt(s), (u, v) => u < v),
        ("Le", (a, s) => a.Le(s), (u, v) => u <= v),
        ("Gt", (a, s) => a.Gt(s), (u, v) => u > v),
        ("Ge", (a, s) => a.Ge(s), (u, v) => u >= v),
    };

    // Five levels (ties everywhere) and NaNs on both sides; a [3, 5] against b [5] (broadcast rows).
    private static readonly float[] A =
    {
        -1, 0, 0.5f, float.NaN, 1,
        0, 0, 1, -1, float.NaN,
        0.5f, -1, 0.5f, 1, 0,
    };
    private static readonly float[] B = { -1, 0.5f, 0.5f, 0, float.NaN };

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.All))]
    public void Comparisons_follow_IEEE_with_NaN_ties_and_broadcasting(string name, DeviceKind kind, string requireVariable)
    {
        var device = TestDevices.Require(name, kind, requireVariable);
        using var a = Tensor.FromArray(A, new long[] { 3, 5 }, device);
        using var b = Tensor.FromArray(B, new long[] { 5 }, device);
        foreach (var (opName, op, want) in Comparisons)
        {
            using var c = op(a, b);
            Assert.That(c.ShapeArray, Is.EqualTo(new long[] { 3, 5 }), $"{opName} on {name}: shape");
            var expected = Enumerable.Range(0, 15).Select(i => want(A[i], B[i % 5]) ? 1f : 0f).ToArray();
            Assert.That(c.ToArray(), Is.EqualTo(expected), $"{opName}([3,5], [5]) on {name}");
            using var reversed = op(b, a);  // broadcast on the left
            var expectedReversed = Enumerable.Range(0, 15).Select(i => want(B[i % 5], A[i]) ? 1f : 0f).ToArray();
            Assert.That(reversed.ToArray(), Is.EqualTo(expectedReversed), $"{opName}([5], [3,5]) on {name}");
        }
        foreach (var (opName, op, want) in ScalarComparisons)
            foreach (float s in new[] { 0.5f, float.NaN })
            {
                using var c = op(a, s);
                Assert.That(c.ToArray(), Is.EqualTo(A.Select(u => want(u, s) ? 1f : 0f).ToArray()), $"{opName}(x, {s}) on {name}");
            }
    }

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.All))]
    public void Comparisons_carry_no_gradient(string name, DeviceKind kind, string requireVariable)
    {
        var device = TestDevices.Require(name, kind, requireVariable);
        using var scope = new DisposeScope();
        var x = Tensor.FromArray(new float[] { -1, 0, 2 }, new long[] { 3 }, device);
        x.RequiresGrad = true;
        var mask = x.Gt(0f);
        Assert.That(mask.RequiresGrad, Is.False, "a comparison result is a constant");
        // Used inside a differentiable expression, the mask acts as a constant factor.
        x.Mul(mask).Sum().Backward();
        Assert.That(x.Grad!.ToArray(), Is.EqualTo(new float[] { 0, 0, 1 }));
    }

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.All))]
    public void Where_picks_a_or_b_and_its_gradients_match_finite_differences(string name, DeviceKind kind, string requireVariable)
    {
        var device = TestDevices.Require(name, kind, requireVariable);
        long[] shape = { 3, 7 }, bShape = { 7 };
        var condition = Random(21, 11).Select(v => v > 0 ? 1f : 0f).ToArray();
        var a = Random(21, 12, -3, 3);
        var b = Random(7, 13, -3, 3);
        using (var scope = new DisposeScope())
        {
            var c = Tensor.FromArray(condition, shape, device);
            var y = Tensor.Where(c, Tensor.FromArray(a.Select(v => (float)v).ToArray(), shape, device),
                                 Tensor.FromArray(b.Select(v => (float)v).ToArray(), bShape, device));
            var want = Enumerable.Range(0, 21).Select(i => condition[i] == 1 ? (float)a[i] : (float)b[i % 7]).ToArray();
            Assert.That(y.ToArray(), Is.EqualTo(want), $"Where on {name}");
        }
        Check(t =>
              {
                  var c = Tensor.FromArray(condition, shape, device);
                  return Tensor.Where(c, t[0], t[1]);
              },
              x => Enumerable.Range(0, 21).Select(i => condition[i] * x[0][i] + (1 - condition[i]) * x[1][i % 7]).ToArray(),
              new[] { (a, shape), (b, bShape) }, device);
    }

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.All))]
    public void Where_refuses_a_condition_that_is_not_0_or_1(string name, DeviceKind kind, string requireVariable)
    {
        var device = TestDevices.Require(name, kind, requireVariable);
        using var scope = new DisposeScope();
        var c = Tensor.FromArray(new float[] { 1, 0, 0.5f }, new long[] { 3 }, device);
        var a = Tensor.FromArray(new float[] { 1, 2, 3 }, new long[] { 3 }, device);
        var e = Assert.Throws<ArgumentException>(() => Tensor.Where(c, a, a))!;
        Assert.That(e.Message, Does.Contain("element 2 is 0.5"));
        Assert.That(Tensor.Where(c.Eq(1f), a, a.Neg()).ToArray(), Is.EqualTo(new float[] { 1, -2, -3 }), "usable after the error");
    }

    /// <summary>Softmax (or log-softmax) of a row-major [outer, n, inner] array over its middle axis, in float64.</summary>
    private static double[] SoftmaxOverAxis(double[] x, long[] shape, int axis, bool log)
    {
        long n = shape[axis], inner = 1, outer = 1;
        for (int d = axis + 1; d < shape.Length; d++) inner *= shape[d];
        for (int d = 0; d < axis; d++) outer *= shape[d];
        var y = new double[x.Length];
        for (long o = 0; o < outer; o++)
            for (long i = 0; i < inner; i++)
            {
                long At(long k) => (o * n + k) * inner + i;
                double max = double.NegativeInfinity, sum = 0;
                for (long k = 0; k < n; k++) max = Math.Max(max, x[At(k)]);
                for (long k = 0; k < n; k++) sum += Math.Exp(x[At(k)] - max);
                for (long k = 0; k < n; k++)
                    y[At(k)] = log ? x[At(k)] - max - Math.Log(sum) : Math.Exp(x[At(k)] - max) / sum;
            }
        return y;
    }

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.All))]
    public void Softmax_over_any_axis_matches_the_formula_and_finite_differences(string name, DeviceKind kind, string requireVariable)
    {
        var device = TestDevices.Require(name, kind, requireVariable);
        long[] shape = { 3, 4, 5 };
        var x = Random(60, 21, -3, 3);
        foreach (bool log in new[] { false, true })
            foreach (int axis in new[] { 0, 1, 2, -3, -2, -1 })
            {
                int d = axis < 0 ? axis + 3 : axis;
                var want = SoftmaxOverAxis(x, shape, d, log);
                string what = $"{(log ? "LogSoftmax" : "Softmax")}({axis}) of [3, 4, 5] on {name}";
                using (var scope = new DisposeScope())
                {
                    var t = Tensor.FromArray(x.Select(v => (float)v).ToArray(), shape, device);
                    var y = log ? t.LogSoftmax(axis) : t.Softmax(axis);
                    Assert.That(y.ShapeArray, Is.EqualTo(shape), what + ": shape");
                    var got = y.ToArray();
                    for (int i = 0; i < got.Length; i++)
                        Assert.That(got[i], Is.EqualTo(want[i]).Within(1e-5 + 1e-5 * Math.Abs(want[i])), $"{what}: element {i}");
                }
                if (axis >= 0)  // gradients: once per axis
                    Check(t => log ? t[0].LogSoftmax(axis) : t[0].Softmax(axis),
                          v => SoftmaxOverAxis(v[0], shape, d, log), new[] { (x, shape) }, device);
            }
    }

    [Test]
    public void Softmax_refuses_an_axis_out_of_range()
    {
        using var x = Tensor.FromArray(new float[6], new long[] { 2, 3 });
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => x.Softmax(2))!;
        Assert.That(e.Message, Does.Contain("Softmax(2): a tensor of rank 2 [2, 3] has dimensions -2..1"));
        Assert.Throws<ArgumentOutOfRangeException>(() => x.LogSoftmax(-3));
        using var scalar = Tensor.Scalar(1f);
        Assert.Throws<ArgumentException>(() => scalar.Softmax(0));
    }

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.All))]
    public void SequenceMask_marks_the_steps_before_each_length(string name, DeviceKind kind, string requireVariable)
    {
        var device = TestDevices.Require(name, kind, requireVariable);
        using var mask = Tensor.SequenceMask(new long[] { 3, 0, 5, 1 }, 5, device);
        Assert.That(mask.ShapeArray, Is.EqualTo(new long[] { 4, 5 }));
        Assert.That(mask.Device.Name, Is.EqualTo(device.Name));
        Assert.That(mask.ToArray(), Is.EqualTo(new float[]
        {
            1, 1, 1, 0, 0,
            0, 0, 0, 0, 0,
            1, 1, 1, 1, 1,
            1, 0, 0, 0, 0,
        }));
    }

    [Test]
    public void SequenceMask_refuses_lengths_outside_0_to_maxLength()
    {
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => Tensor.SequenceMask(new long[] { 2, 6 }, 5))!;
        Assert.That(e.Message, Does.Contain("length 6 at position 1 is outside 0..5"));
        Assert.Throws<ArgumentOutOfRangeException>(() => Tensor.SequenceMask(new long[] { -1 }, 5));
        Assert.Throws<ArgumentOutOfRangeException>(() => Tensor.SequenceMask(new long[] { 0 }, -1));
        Assert.Throws<ArgumentNullException>(() => Tensor.SequenceMask(null!, 5));
        using var empty = Tensor.SequenceMask(Array.Empty<long>(), 5);
        Assert.That(empty.ShapeArray, Is.EqualTo(new long[] { 0, 5 }));
    }
}
