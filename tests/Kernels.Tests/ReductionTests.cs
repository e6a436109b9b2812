// Reductions and arg-reductions over the middle axis of [outer, reduce, inner], against float64.
using System.Globalization;
using Kernels.Tests.Support;
using NUnit.Framework;

namespace Kernels.Tests;

public enum ReduceValues
{
    /// <summary>Uniform in [-1, 1].</summary>
    Uniform,
    /// <summary>Uniform with every 7th element -inf and the first [outer, inner] slice's whole
    /// reduced axis -inf (a fully masked row).</summary>
    WithNegativeInfinity,
    /// <summary>Values from {-1, 0, 1, 2}: many equal maxima and minima (first index wins).</summary>
    Ties,
}

/// <summary>One reduction geometry: x is [outer, reduce, inner], y is [outer, inner].</summary>
public sealed record ReduceCase(long Outer, long Reduce, long Inner, ReduceValues Values = ReduceValues.Uniform)
{
    public long InputCount => Outer * Reduce * Inner;
    public long OutputCount => Outer * Inner;

    public override string ToString() => Values == ReduceValues.Uniform
        ? $"({Outer},{Reduce},{Inner})"
        : $"({Outer},{Reduce},{Inner}) {Values}";

    public float[] Inputs(string seed)
    {
        float[] x = Values == ReduceValues.Ties
            ? TestData.Choice(InputCount, new[] { -1f, 0f, 1f, 2f }, seed)
            : TestData.Uniform(InputCount, -1, 1, seed);
        if (Values == ReduceValues.WithNegativeInfinity && InputCount > 0)
        {
            for (long i = 0; i < x.Length; i += 7) x[i] = float.NegativeInfinity;
            for (long r = 0; r < Reduce; r++) x[r * Inner] = float.NegativeInfinity;   // y[0, 0] reduces only -inf
        }
        return x;
    }

    /// <summary>Geometries: single element, small odd sizes on every axis, a long reduced axis with
    /// inner = 1 (contiguous rows) and inner &gt; 1 (strided), many short rows, wide inner, a prime
    /// past 100k.</summary>
    public static readonly ReduceCase[] Geometries =
    {
        new(1, 1, 1), new(3, 7, 5), new(1, 1000, 1), new(33, 1, 17), new(5, 1000, 3),
        new(1000, 7, 1), new(2, 5, 1000), new(1, 100003, 1), new(0, 5, 3),
        new(3, 7, 5, ReduceValues.WithNegativeInfinity), new(4, 129, 1, ReduceValues.WithNegativeInfinity),
        new(3, 33, 2, ReduceValues.Ties),
    };
}

[TestFixtureSource(typeof(BackendDevices), nameof(BackendDevices.Fixtures))]
public sealed class ReductionTests : DeviceFixture
{
    public ReductionTests(string deviceName) : base(deviceName) { }

    public static IEnumerable<TestCaseData> ReduceCases() =>
        from op in Enum.GetValues<ReduceOp>()
        from c in ReduceCase.Geometries
        select new TestCaseData(op, c).SetArgDisplayNames(op.ToString(), c.ToString());

    /// <summary>reduce = 0: SUM and SUM_SQUARES give 0, MEAN gives NaN (kernels.h, as NumPy).</summary>
    public static IEnumerable<TestCaseData> EmptyReduceCases() =>
        from op in new[] { ReduceOp.Sum, ReduceOp.Mean, ReduceOp.SumSquares }
        from c in new[] { new ReduceCase(3, 0, 4), new ReduceCase(1, 0, 1) }
        select new TestCaseData(op, c).SetArgDisplayNames(op.ToString(), c.ToString());

    public static IEnumerable<TestCaseData> ArgReduceCases() =>
        from op in Enum.GetValues<ArgReduceOp>()
        from c in new[]
        {
            new ReduceCase(1, 1, 1, ReduceValues.Ties), new ReduceCase(3, 7, 5, ReduceValues.Ties),
            new ReduceCase(1, 1000, 1, ReduceValues.Ties), new ReduceCase(5, 1000, 3, ReduceValues.Ties),
            new ReduceCase(33, 1, 17, ReduceValues.Ties), new ReduceCase(1000, 7, 1, ReduceValues.Ties),
            new ReduceCase(1, 100003, 1, ReduceValues.Ties), new ReduceCase(1, 100003, 1),
            new ReduceCase(3, 7, 5, ReduceValues.WithNegativeInfinity), new ReduceCase(4, 129, 1, ReduceValues.WithNegativeInfinity),
            new ReduceCase(0, 5, 3),
        }
        select new TestCaseData(op, c).SetArgDisplayNames(op.ToString(), c.ToString());

    [TestCaseSource(nameof(ReduceCases))]
    public void Reduce_MatchesFloat64Reference(ReduceOp op, ReduceCase c)
    {
        float[] x = c.Inputs($"reduce {op} {c}");
        using var xb = DeviceBuffer.FromArray(Device, x);
        using var yb = Guarded.Output(Device, c.OutputCount);
        Ops.Reduce(op, xb, yb, c.Outer, c.Reduce, c.Inner);
        float[] y = Guarded.Read(yb, c.OutputCount, "y");
        (double[] expected, double[] tolerance) = ReduceReference(op, c, x);
        Expect.AllClose(y, expected, tolerance, $"{op} over {c} on {DeviceName}");
    }

    [TestCaseSource(nameof(EmptyReduceCases))]
    public void Reduce_OverZeroElements_GivesZeroOrNaNForMean(ReduceOp op, ReduceCase c)
    {
        using var xb = DeviceBuffer.Allocate(Device, 0);
        using var yb = Guarded.Output(Device, c.OutputCount);
        Ops.Reduce(op, xb, yb, c.Outer, c.Reduce, c.Inner);
        float expected = op == ReduceOp.Mean ? float.NaN : 0f;
        Expect.Identical(Guarded.Read(yb, c.OutputCount, "y"), TestData.Filled(c.OutputCount, expected), $"{op} over {c}");
    }

    [TestCase(ReduceOp.Max)]
    [TestCase(ReduceOp.Min)]
    public void Reduce_MaxOrMinOverZeroElements_ThrowsKernelsArgumentException(ReduceOp op)
    {
        using var xb = DeviceBuffer.Allocate(Device, 0);
        using var yb = DeviceBuffer.Allocate(Device, 12 * sizeof(float));
        var error = Assert.Throws<KernelsArgumentException>(() => Ops.Reduce(op, xb, yb, 3, 0, 4));
        Assert.That(error!.Message, Does.Contain(op == ReduceOp.Max ? "max" : "min").And.Contain("zero elements"));
    }

    /// <summary>
    /// The contract in kernels.h: "sums are pairwise/tree-ordered, not a running float". 3000001
    /// values in [0.05, 0.15] (all positive, so the relative error of the sum is not hidden by
    /// cancellation): a tree-ordered float32 sum is within ~log2(n) u ~ 1.3e-6 in the worst case and
    /// ~1e-7 typically; a running float32 sum drifts by ~1e-3 (checked below on the same data, so
    /// the test is known to be able to fail). Required: relative error below 1e-6.
    /// </summary>
    [TestCase(ReduceOp.Sum)]
    [TestCase(ReduceOp.Mean)]
    public void Reduce_SumOrMeanOf3000001PositiveValues_HasRelativeErrorBelow1e6(ReduceOp op)
    {
        const long n = 3_000_001;
        float[] x = TestData.Uniform(n, 0.05, 0.15, "three million");
        double exact = 0;
        float running = 0;
        foreach (float v in x)
        {
            exact += v;
            running += v;
        }
        double naiveError = Math.Abs(running - exact) / exact;
        Assert.That(naiveError, Is.GreaterThan(1e-5), "the data must be hard enough that a running float sum fails this test");

        using var xb = DeviceBuffer.FromArray(Device, x);
        using var yb = Guarded.Output(Device, 1);
        Ops.Reduce(op, xb, yb, 1, n, 1);
        double actual = Guarded.Read(yb, 1, "y")[0];
        double expected = op == ReduceOp.Mean ? exact / n : exact;
        double relativeError = Math.Abs(actual - expected) / expected;
        Assert.That(relativeError, Is.LessThan(1e-6),
            string.Create(CultureInfo.InvariantCulture, $"{op} of {n} values on {DeviceName}: got {actual:R}, float64 {expected:R} (a running float sum is off by {naiveError:G3})"));
    }

    [TestCaseSource(nameof(ArgReduceCases))]
    public void ArgReduce_GivesFirstIndexOfExtremum(ArgReduceOp op, ReduceCase c)
    {
        float[] x = c.Inputs($"argreduce {op} {c}");
        using var xb = DeviceBuffer.FromArray(Device, x);
        using var ib = Guarded.IndexOutput(Device, c.OutputCount);
        Ops.ArgReduce(op, xb, ib, c.Outer, c.Reduce, c.Inner);
        long[] indices = Guarded.ReadIndices(ib, c.OutputCount, "indices");
        Expect.Equal(indices, ArgReduceReference(op, c, x), $"{op} over {c} on {DeviceName}");
    }

    [TestCase(ArgReduceOp.Argmax)]
    [TestCase(ArgReduceOp.Argmin)]
    public void ArgReduce_WithNaN_GivesFirstNaNIndex(ArgReduceOp op)
    {
        // kernels.h: NaN counts as the largest for argmax and as the smallest for argmin.
        float[] x = { 1, 5, -3, float.NaN, 7, float.NaN, -9, 2 };
        using var xb = DeviceBuffer.FromArray(Device, x);
        using var ib = Guarded.IndexOutput(Device, 1);
        Ops.ArgReduce(op, xb, ib, 1, x.Length, 1);
        Assert.That(Guarded.ReadIndices(ib, 1, "indices")[0], Is.EqualTo(3), $"{op} of [1, 5, -3, NaN, 7, NaN, -9, 2]");
    }

    [TestCase(ArgReduceOp.Argmax)]
    [TestCase(ArgReduceOp.Argmin)]
    public void ArgReduce_OverZeroElements_ThrowsKernelsArgumentException(ArgReduceOp op)
    {
        using var xb = DeviceBuffer.Allocate(Device, 0);
        using var ib = DeviceBuffer.Allocate(Device, 4 * sizeof(long));
        var error = Assert.Throws<KernelsArgumentException>(() => Ops.ArgReduce(op, xb, ib, 2, 0, 2));
        Assert.That(error!.Message, Does.Contain(op == ArgReduceOp.Argmax ? "argmax" : "argmin").And.Contain("zero elements"));
    }

    /// <summary>
    /// Tolerances: MAX and MIN are exact. A float32 sum of r terms in a tree or blocked order of
    /// block b is within (b + log2 r) u sum|x| of the exact sum (Higham 4.2), u = 2^-24; the bound
    /// used allows blocks up to 64, plus two roundings (the division for MEAN, the squares for
    /// SUM_SQUARES). The strict check of the tree order is the 3000001-element test above.
    /// </summary>
    private static (double[] Expected, double[] Tolerance) ReduceReference(ReduceOp op, ReduceCase c, float[] x)
    {
        var expected = new double[c.OutputCount];
        var tolerance = new double[c.OutputCount];
        double gamma = (Math.Min(c.Reduce, 64) + Math.Ceiling(Math.Log2(Math.Max(c.Reduce, 1))) + 2) * TestData.Unit;
        for (long o = 0; o < c.Outer; o++)
        {
            for (long i = 0; i < c.Inner; i++)
            {
                double sum = 0, magnitude = 0, squares = 0;
                double max = double.NegativeInfinity, min = double.PositiveInfinity;
                for (long r = 0; r < c.Reduce; r++)
                {
                    double v = x[(o * c.Reduce + r) * c.Inner + i];
                    sum += v;
                    magnitude += Math.Abs(v);
                    squares += v * v;
                    max = Math.Max(max, v);
                    min = Math.Min(min, v);
                }
                long yi = o * c.Inner + i;
                (expected[yi], tolerance[yi]) = op switch
                {
                    ReduceOp.Sum => (sum, gamma * magnitude),
                    ReduceOp.Mean => (sum / c.Reduce, gamma * magnitude / c.Reduce),
                    ReduceOp.SumSquares => (squares, gamma * squares),
                    ReduceOp.Max => (max, 0.0),
                    ReduceOp.Min => (min, 0.0),
                    _ => throw new ArgumentOutOfRangeException(nameof(op), op, null),
                };
            }
        }
        return (expected, tolerance);
    }

    private static long[] ArgReduceReference(ArgReduceOp op, ReduceCase c, float[] x)
    {
        var indices = new long[c.OutputCount];
        for (long o = 0; o < c.Outer; o++)
        {
            for (long i = 0; i < c.Inner; i++)
            {
                long best = 0;
                float bestValue = x[o * c.Reduce * c.Inner + i];
                for (long r = 1; r < c.Reduce && !float.IsNaN(bestValue); r++)
                {
                    float v = x[(o * c.Reduce + r) * c.Inner + i];
                    bool better = float.IsNaN(v) || (op == ArgReduceOp.Argmax ? v > bestValue : v < bestValue);
                    if (better)
                    {
                        best = r;
                        bestValue = v;
                    }
                }
                indices[o * c.Inner + i] = best;
            }
        }
        return indices;
    }
}
