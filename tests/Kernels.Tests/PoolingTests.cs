// 2-D max and average pooling on every device, forward and backward, against float64 references
// written here: overlapping windows, stride larger than the window, padding (which must never win a
// max), both average divisors, ties (the first maximum wins) and NaN (it propagates); error paths.
using Kernels.Tests.Support;
using NUnit.Framework;

namespace Kernels.Tests;

public enum PoolValues
{
    /// <summary>Uniform in [-1, 1].</summary>
    Uniform,
    /// <summary>Uniform in [-3, -0.5]: a padding value of 0 would win every border window.</summary>
    Negative,
    /// <summary>From {-1, 0, 1}: many equal maxima, the first in row-major window order must win.</summary>
    Ties,
    /// <summary>Every 11th value NaN and every 13th -inf: a window holding a NaN gives NaN, at its first NaN.</summary>
    WithNaN,
}

public sealed record PoolCase(string Name, Pool2DGeometry G, PoolValues Values = PoolValues.Uniform)
{
    public override string ToString() => Name;

    public float[] Inputs(string seed)
    {
        float[] x = Values switch
        {
            PoolValues.Negative => TestData.Uniform(G.InputElements, -3, -0.5, seed),
            PoolValues.Ties => TestData.Choice(G.InputElements, new[] { -1f, 0f, 1f }, seed),
            _ => TestData.Uniform(G.InputElements, -1, 1, seed),
        };
        if (Values == PoolValues.WithNaN)
        {
            for (long i = 5; i < x.Length; i += 11) x[i] = float.NaN;
            for (long i = 3; i < x.Length; i += 13) x[i] = float.NegativeInfinity;
        }
        return x;
    }

    public static readonly PoolCase[] All =
    {
        new("2x2 stride 2", new Pool2DGeometry(2, 3, 8, 8, 2, 2, 2, 2)),
        new("3x3 stride 1 pad 1 (overlapping)", new Pool2DGeometry(1, 2, 7, 9, 3, 3, 1, 1, 1, 1)),
        new("3x3 stride 2 pad 1, primes", new Pool2DGeometry(2, 3, 13, 11, 3, 3, 2, 2, 1, 1), PoolValues.Negative),
        new("2x2 stride 3 (gaps)", new Pool2DGeometry(2, 2, 10, 9, 2, 2, 3, 3)),
        new("3x2 stride 2x1 pad 1", new Pool2DGeometry(1, 2, 9, 12, 3, 2, 2, 1, 1, 1)),
        new("5x5 pad 2 (half the window)", new Pool2DGeometry(2, 3, 5, 5, 5, 5, 1, 1, 2, 2), PoolValues.Negative),
        new("global 6x6", new Pool2DGeometry(2, 2, 6, 6, 6, 6, 1, 1)),
        new("stride 4, rows wider than a vector", new Pool2DGeometry(1, 2, 9, 67, 3, 3, 4, 4, 1, 1)),
        new("ties, 3x3 stride 2", new Pool2DGeometry(3, 5, 9, 11, 3, 3, 2, 2), PoolValues.Ties),
        new("NaN, 3x3 stride 1 pad 1", new Pool2DGeometry(3, 5, 9, 11, 3, 3, 1, 1, 1, 1), PoolValues.WithNaN),
    };

    /// <summary>The real rows [R0, R1) and columns [C0, C1) of output (oh, ow)'s window.</summary>
    public (long R0, long R1, long C0, long C1) Window(long oh, long ow)
    {
        long h0 = oh * G.StrideHeight - G.PadHeight, w0 = ow * G.StrideWidth - G.PadWidth;
        return (Math.Max(h0, 0), Math.Min(h0 + G.KernelHeight, G.InHeight), Math.Max(w0, 0), Math.Min(w0 + G.KernelWidth, G.InWidth));
    }
}

[TestFixtureSource(typeof(BackendDevices), nameof(BackendDevices.Fixtures))]
public sealed class PoolingTests : DeviceFixture
{
    public PoolingTests(string deviceName) : base(deviceName) { }

    private const double Eps = 2 * TestData.Unit;

    public static IEnumerable<TestCaseData> MaxCases() => PoolCase.All.Select(c => new TestCaseData(c).SetArgDisplayNames(c.Name));

    public static IEnumerable<TestCaseData> AvgCases() =>
        from c in PoolCase.All
        where c.Values is PoolValues.Uniform or PoolValues.Negative
        from includePad in new[] { true, false }
        where includePad || c.G.PadHeight > 0 || c.G.PadWidth > 0
        select new TestCaseData(c with { G = c.G with { CountIncludePad = includePad } })
            .SetArgDisplayNames(c.Name, includePad ? "count_include_pad" : "exclude pad");

    /// <summary>Per output: the max (first maximum; NaN wins at its first position) with its index,
    /// and the average's value, divisor and sum of |terms|.</summary>
    private static (double[] Max, int[] Index, double[] Avg, double[] Divisor, double[] AvgMagnitude) Reference(PoolCase c, float[] x)
    {
        Pool2DGeometry g = c.G;
        long oh = g.OutHeight, ow = g.OutWidth, planeIn = g.InHeight * g.InWidth;
        var max = new double[g.OutputElements];
        var index = new int[g.OutputElements];
        var avg = new double[g.OutputElements];
        var divisor = new double[g.OutputElements];
        var magnitude = new double[g.OutputElements];
        for (long p = 0; p < g.Batch * g.Channels; p++)
            for (long i = 0; i < oh; i++)
                for (long j = 0; j < ow; j++)
                {
                    long o = (p * oh + i) * ow + j;
                    var (r0, r1, c0, c1) = c.Window(i, j);
                    double best = x[p * planeIn + r0 * g.InWidth + c0], sum = 0, abs = 0;
                    long where = r0 * g.InWidth + c0;
                    for (long r = r0; r < r1; r++)
                        for (long s = c0; s < c1; s++)
                        {
                            double v = x[p * planeIn + r * g.InWidth + s];
                            if (!double.IsNaN(best) && (double.IsNaN(v) || v > best))
                            {
                                best = v;
                                where = r * g.InWidth + s;
                            }
                            sum += v;
                            abs += Math.Abs(v);
                        }
                    max[o] = best;
                    index[o] = (int)where;
                    divisor[o] = g.CountIncludePad ? g.KernelHeight * g.KernelWidth : (r1 - r0) * (c1 - c0);
                    avg[o] = sum / divisor[o];
                    magnitude[o] = abs / divisor[o];
                }
        return (max, index, avg, divisor, magnitude);
    }

    [TestCaseSource(nameof(MaxCases))]
    public void MaxForward_IsExactWithFirstMaximumIndices(PoolCase c)
    {
        Pool2DGeometry g = c.G;
        float[] x = c.Inputs($"max x {c}");
        using var xb = DeviceBuffer.FromArray(Device, x);
        using var yb = Guarded.Output(Device, g.OutputElements);
        using var ib = LayerSupport.Int32Buffer(Device, new int[g.OutputElements]);
        LayerSupport.Run(Device, () => Ops.Pool2D(PoolOp.Max, xb, yb, ib, g));
        var (max, index, _, _, _) = Reference(c, x);
        Expect.AllClose(Guarded.Read(yb, g.OutputElements, "y"), max, new double[max.Length], $"max pooling {c} on {DeviceName}");
        Expect.Equal(LayerSupport.ReadInt32(ib, g.OutputElements, "indices").Select(v => (long)v).ToArray(),
            index.Select(v => (long)v).ToArray(), $"max pooling indices {c} on {DeviceName}");
        LayerSupport.Unchanged(xb, x, "x");
    }

    [TestCaseSource(nameof(MaxCases))]
    public void MaxBackward_RoutesEachGradientToItsIndex(PoolCase c)
    {
        Pool2DGeometry g = c.G;
        float[] x = c.Inputs($"max x {c}");
        float[] dy = TestData.Uniform(g.OutputElements, -1, 1, $"max dy {c}");
        var (_, index, _, _, _) = Reference(c, x);   // the forward's indices, from the reference
        using var dyb = DeviceBuffer.FromArray(Device, dy);
        using var ib = LayerSupport.Int32Buffer(Device, index);
        using var dxb = Guarded.Output(Device, TestData.Filled(g.InputElements, float.NaN));
        LayerSupport.Run(Device, () => Ops.Pool2DBackward(PoolOp.Max, dyb, ib, dxb, g));

        long planeIn = g.InHeight * g.InWidth, planeOut = g.OutHeight * g.OutWidth;
        var expected = new double[g.InputElements];
        var magnitude = new double[g.InputElements];
        var terms = new long[g.InputElements];
        for (long o = 0; o < dy.Length; o++)
        {
            long xi = o / planeOut * planeIn + index[o];
            expected[xi] += dy[o];
            magnitude[xi] += Math.Abs(dy[o]);
            terms[xi]++;
        }
        double[] tolerance = magnitude.Select((m, i) => (terms[i] + 3) * Eps * m).ToArray();
        Expect.AllClose(Guarded.Read(dxb, g.InputElements, "dx"), expected, tolerance, $"max pooling backward {c} on {DeviceName}");
    }

    [TestCaseSource(nameof(AvgCases))]
    public void AvgForward_MatchesFloat64Reference(PoolCase c)
    {
        Pool2DGeometry g = c.G;
        float[] x = c.Inputs($"avg x {c}");
        using var xb = DeviceBuffer.FromArray(Device, x);
        using var yb = Guarded.Output(Device, g.OutputElements);
        LayerSupport.Run(Device, () => Ops.Pool2D(PoolOp.Avg, xb, yb, null, g));
        var (_, _, avg, _, magnitude) = Reference(c, x);
        long terms = g.KernelHeight * g.KernelWidth;
        Expect.AllClose(Guarded.Read(yb, g.OutputElements, "y"), avg, magnitude.Select(m => (terms + 3) * Eps * m).ToArray(),
            $"average pooling {c} on {DeviceName}");
    }

    [TestCaseSource(nameof(AvgCases))]
    public void AvgBackward_SpreadsEachGradientOverItsWindow(PoolCase c)
    {
        Pool2DGeometry g = c.G;
        float[] x = c.Inputs($"avg x {c}");
        float[] dy = TestData.Uniform(g.OutputElements, -1, 1, $"avg dy {c}");
        var (_, _, _, divisor, _) = Reference(c, x);
        using var dyb = DeviceBuffer.FromArray(Device, dy);
        using var dxb = Guarded.Output(Device, TestData.Filled(g.InputElements, float.NaN));
        LayerSupport.Run(Device, () => Ops.Pool2DBackward(PoolOp.Avg, dyb, null, dxb, g));

        long planeIn = g.InHeight * g.InWidth, oh = g.OutHeight, ow = g.OutWidth;
        var expected = new double[g.InputElements];
        var magnitude = new double[g.InputElements];
        var terms = new long[g.InputElements];
        for (long p = 0; p < g.Batch * g.Channels; p++)
            for (long i = 0; i < oh; i++)
                for (long j = 0; j < ow; j++)
                {
                    long o = (p * oh + i) * ow + j;
                    var (r0, r1, c0, c1) = c.Window(i, j);
                    double share = dy[o] / divisor[o];
                    for (long r = r0; r < r1; r++)
                        for (long s = c0; s < c1; s++)
                        {
                            long xi = p * planeIn + r * g.InWidth + s;
                            expected[xi] += share;
                            magnitude[xi] += Math.Abs(share);
                            terms[xi]++;
                        }
                }
        double[] tolerance = magnitude.Select((m, i) => (terms[i] + 3) * Eps * m).ToArray();
        Expect.AllClose(Guarded.Read(dxb, g.InputElements, "dx"), expected, tolerance, $"average pooling backward {c} on {DeviceName}");
    }

    [Test]
    public void MaxWithoutIndices_GivesTheSameValues()
    {
        PoolCase c = PoolCase.All[2];
        float[] x = c.Inputs("max without indices");
        using var xb = DeviceBuffer.FromArray(Device, x);
        using var yb = Guarded.Output(Device, c.G.OutputElements);
        LayerSupport.Run(Device, () => Ops.Pool2D(PoolOp.Max, xb, yb, null, c.G));
        Expect.AllClose(Guarded.Read(yb, c.G.OutputElements, "y"), Reference(c, x).Max, new double[c.G.OutputElements], "max without indices");
    }

    [Test]
    public void PaddingMoreThanHalfTheWindow_ThrowsKernelsArgumentException()
    {
        using var b = DeviceBuffer.Allocate(Device, 4096 * sizeof(float));
        var g = new Pool2DGeometry(1, 2, 8, 8, 3, 3, 1, 1, 2, 1);
        var error = Assert.Throws<KernelsArgumentException>(() => Ops.Pool2D(PoolOp.Max, b, b, null, g));
        Assert.That(error!.Message, Does.Contain("padding 2x1").And.Contain("kernel 3x3").And.Contain("x [1, 2, 8, 8]"));
    }

    [Test]
    public void WindowLargerThanPaddedInput_ThrowsShapeMismatch()
    {
        using var b = DeviceBuffer.Allocate(Device, 4096 * sizeof(float));
        var g = new Pool2DGeometry(1, 1, 3, 9, 6, 2, 1, 1, 1, 0);
        var error = Assert.Throws<ShapeMismatchException>(() => Ops.Pool2D(PoolOp.Avg, b, b, null, g));
        Assert.That(error!.Message, Does.Contain("6x2").And.Contain("5x9"));
    }

    [Test]
    public void MaxBackwardWithoutIndices_ThrowsKernelsArgumentException()
    {
        using var b = DeviceBuffer.Allocate(Device, 4096 * sizeof(float));
        var g = new Pool2DGeometry(1, 2, 6, 6, 2, 2, 2, 2);
        var error = Assert.Throws<KernelsArgumentException>(() => Ops.Pool2DBackward(PoolOp.Max, b, null, b, g));
        Assert.That(error!.Message, Does.Contain("indices"));
    }

    [Test]
    public void IndicesBufferTooSmall_ThrowsShapeMismatchNamingIt()
    {
        using var b = DeviceBuffer.Allocate(Device, 4096 * sizeof(float));
        using var small = DeviceBuffer.Allocate(Device, 10 * sizeof(int));
        var g = new Pool2DGeometry(2, 3, 8, 8, 2, 2, 2, 2);
        var error = Assert.Throws<ShapeMismatchException>(() => Ops.Pool2D(PoolOp.Max, b, b, small, g));
        Assert.That(error!.Message, Does.Contain("'indices'").And.Contain("int32").And.Contain("96"));
    }
}
