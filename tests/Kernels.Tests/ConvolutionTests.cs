// 2-D convolution on every device: forward (with and without bias), backward-data and backward-weights
// (with the bias gradient) against float64 references written here; the adjoint identities that tie
// the three passes together; an empty batch; and the error paths.
using Kernels.Tests.Support;
using NUnit.Framework;

namespace Kernels.Tests;

/// <summary>One convolution geometry, named for what it is there to break.</summary>
public sealed record ConvCase(string Name, Conv2DGeometry G)
{
    public override string ToString() => Name;

    public static readonly ConvCase[] All =
    {
        new("2x3x7x9 to 4, 3x3 pad 1", new Conv2DGeometry(2, 3, 7, 9, 4, 3, 3, PadHeight: 1, PadWidth: 1)),
        new("one channel, batch 1", new Conv2DGeometry(1, 1, 5, 5, 1, 3, 3)),
        new("1x1 stride 1 (GEMM on x)", new Conv2DGeometry(3, 5, 11, 13, 7, 1, 1)),
        new("1x1 stride 2", new Conv2DGeometry(2, 4, 9, 7, 6, 1, 1, 2, 2)),
        new("pad 2 on a 3x3 kernel", new Conv2DGeometry(2, 3, 8, 8, 4, 3, 3, PadHeight: 2, PadWidth: 2)),
        new("pad 3x4 on a 3x3 kernel", new Conv2DGeometry(1, 2, 5, 6, 3, 3, 3, PadHeight: 3, PadWidth: 4)),
        new("stride 3 over a 2x2 kernel", new Conv2DGeometry(2, 3, 13, 17, 4, 2, 2, 3, 3)),
        new("3x2 kernel, stride 2x1, pad 1x0", new Conv2DGeometry(2, 3, 12, 11, 5, 3, 2, 2, 1, 1, 0)),
        new("dilation 2", new Conv2DGeometry(2, 4, 11, 13, 6, 3, 3, PadHeight: 2, PadWidth: 2, DilationHeight: 2, DilationWidth: 2)),
        new("groups 2", new Conv2DGeometry(2, 6, 9, 10, 4, 3, 3, PadHeight: 1, PadWidth: 1, Groups: 2)),
        new("depthwise", new Conv2DGeometry(3, 8, 10, 9, 8, 3, 3, PadHeight: 1, PadWidth: 1, Groups: 8)),
        new("depthwise x2, stride 2", new Conv2DGeometry(2, 4, 9, 9, 8, 3, 3, 2, 2, 1, 1, Groups: 4)),
        new("kernel as large as the padded input", new Conv2DGeometry(2, 3, 4, 5, 2, 6, 5, PadHeight: 1)),
        new("MNIST conv1-like 4x1x28x28 to 32", new Conv2DGeometry(4, 1, 28, 28, 32, 3, 3, PadHeight: 1, PadWidth: 1)),
        new("primes 3x7x13x11 to 5, stride 2", new Conv2DGeometry(3, 7, 13, 11, 5, 3, 3, 2, 2, 1, 1)),
    };

    /// <summary>Calls fn(y index, x index, w index) for every term whose input lies inside the image.</summary>
    public void ForEachTerm(Action<long, long, long> fn)
    {
        long cg = G.InChannels / G.Groups, kg = G.OutChannels / G.Groups, oh = G.OutHeight, ow = G.OutWidth;
        for (long n = 0; n < G.Batch; n++)
            for (long k = 0; k < G.OutChannels; k++)
                for (long i = 0; i < oh; i++)
                    for (long j = 0; j < ow; j++)
                    {
                        long yi = ((n * G.OutChannels + k) * oh + i) * ow + j;
                        for (long cl = 0; cl < cg; cl++)
                        {
                            long c = k / kg * cg + cl;
                            for (long r = 0; r < G.KernelHeight; r++)
                            {
                                long ih = i * G.StrideHeight - G.PadHeight + r * G.DilationHeight;
                                if (ih < 0 || ih >= G.InHeight) continue;
                                for (long s = 0; s < G.KernelWidth; s++)
                                {
                                    long iw = j * G.StrideWidth - G.PadWidth + s * G.DilationWidth;
                                    if (iw < 0 || iw >= G.InWidth) continue;
                                    fn(yi, ((n * G.InChannels + c) * G.InHeight + ih) * G.InWidth + iw,
                                       ((k * cg + cl) * G.KernelHeight + r) * G.KernelWidth + s);
                                }
                            }
                        }
                    }
    }
}

/// <summary>
/// Tolerances (u = 2^-24): a k-term float32 dot product in any order is within (k + 3) 2u sum|terms|
/// of the exact value (forward: k = in/groups * kh * kw + 1 with the bias; backward-data: k =
/// out/groups * kh * kw). The weight and bias gradients sum batch * out_h * out_w terms, where that
/// worst case allows more than the value itself; they use (min(k, 8 + 3 sqrt k) + 3) 2u sum|terms|,
/// which any blocked, tree or running float order meets on these random signed terms (their partial
/// sums random-walk), while a missing or doubled image is off by far more.
/// </summary>
[TestFixtureSource(typeof(BackendDevices), nameof(BackendDevices.Fixtures))]
public sealed class ConvolutionTests : DeviceFixture
{
    public ConvolutionTests(string deviceName) : base(deviceName) { }

    private const double Eps = 2 * TestData.Unit;

    public static IEnumerable<TestCaseData> Cases() => ConvCase.All.Select(c => new TestCaseData(c).SetArgDisplayNames(c.Name));

    public static IEnumerable<TestCaseData> CasesWithBias() =>
        from c in ConvCase.All
        from bias in new[] { true, false }
        select new TestCaseData(c, bias).SetArgDisplayNames(c.Name, bias ? "bias" : "no bias");

    private static double BatchSumTolerance(long terms, double absSum) =>
        (Math.Min(terms, 8 + 3 * Math.Sqrt(terms)) + 3) * Eps * absSum;

    [TestCaseSource(nameof(CasesWithBias))]
    public void Forward_MatchesFloat64Reference(ConvCase c, bool withBias)
    {
        Conv2DGeometry g = c.G;
        float[] x = TestData.Uniform(g.InputElements, -1, 1, $"conv x {c}");
        float[] w = TestData.Uniform(g.WeightElements, -1, 1, $"conv w {c}");
        float[] bias = TestData.Uniform(g.OutChannels, -1, 1, $"conv bias {c}");
        using var xb = DeviceBuffer.FromArray(Device, x);
        using var wb = DeviceBuffer.FromArray(Device, w);
        using var bb = DeviceBuffer.FromArray(Device, bias);
        using var yb = Guarded.Output(Device, g.OutputElements);
        LayerSupport.Run(Device, () => Ops.Conv2D(xb, wb, withBias ? bb : null, yb, g));
        float[] y = Guarded.Read(yb, g.OutputElements, "y");

        long plane = g.OutHeight * g.OutWidth;
        var expected = new double[g.OutputElements];
        var magnitude = new double[g.OutputElements];
        for (long i = 0; i < expected.Length; i++)
        {
            expected[i] = withBias ? bias[i / plane % g.OutChannels] : 0;
            magnitude[i] = Math.Abs(expected[i]);
        }
        c.ForEachTerm((yi, xi, wi) =>
        {
            double t = (double)w[wi] * x[xi];
            expected[yi] += t;
            magnitude[yi] += Math.Abs(t);
        });
        long terms = g.InChannels / g.Groups * g.KernelHeight * g.KernelWidth + 1;
        double[] tolerance = magnitude.Select(m => (terms + 3) * Eps * m).ToArray();
        Expect.AllClose(y, expected, tolerance, $"conv2d {c} on {DeviceName}");
        LayerSupport.Unchanged(xb, x, "x");
        LayerSupport.Unchanged(wb, w, "w");
    }

    [TestCaseSource(nameof(Cases))]
    public void BackwardData_MatchesFloat64Reference(ConvCase c)
    {
        Conv2DGeometry g = c.G;
        float[] dy = TestData.Uniform(g.OutputElements, -1, 1, $"conv dy {c}");
        float[] w = TestData.Uniform(g.WeightElements, -1, 1, $"conv w {c}");
        using var dyb = DeviceBuffer.FromArray(Device, dy);
        using var wb = DeviceBuffer.FromArray(Device, w);
        // NaN-filled: every dx element must be written, 0 where no window reads the input.
        using var dxb = Guarded.Output(Device, TestData.Filled(g.InputElements, float.NaN));
        LayerSupport.Run(Device, () => Ops.Conv2DBackwardData(dyb, wb, dxb, g));
        float[] dx = Guarded.Read(dxb, g.InputElements, "dx");

        var expected = new double[g.InputElements];
        var magnitude = new double[g.InputElements];
        c.ForEachTerm((yi, xi, wi) =>
        {
            double t = (double)w[wi] * dy[yi];
            expected[xi] += t;
            magnitude[xi] += Math.Abs(t);
        });
        long terms = g.OutChannels / g.Groups * g.KernelHeight * g.KernelWidth;
        double[] tolerance = magnitude.Select(m => (terms + 3) * Eps * m).ToArray();
        Expect.AllClose(dx, expected, tolerance, $"conv2d backward-data {c} on {DeviceName}");
        LayerSupport.Unchanged(dyb, dy, "dy");
    }

    [TestCaseSource(nameof(Cases))]
    public void BackwardWeights_MatchesFloat64Reference(ConvCase c)
    {
        Conv2DGeometry g = c.G;
        float[] x = TestData.Uniform(g.InputElements, -1, 1, $"conv x {c}");
        float[] dy = TestData.Uniform(g.OutputElements, -1, 1, $"conv dy {c}");
        using var xb = DeviceBuffer.FromArray(Device, x);
        using var dyb = DeviceBuffer.FromArray(Device, dy);
        // NaN-filled: both gradients are overwritten, never accumulated into.
        using var dwb = Guarded.Output(Device, TestData.Filled(g.WeightElements, float.NaN));
        using var dbb = Guarded.Output(Device, TestData.Filled(g.OutChannels, float.NaN));
        LayerSupport.Run(Device, () => Ops.Conv2DBackwardWeights(xb, dyb, dwb, dbb, g));
        float[] dw = Guarded.Read(dwb, g.WeightElements, "dw");
        float[] dbias = Guarded.Read(dbb, g.OutChannels, "dbias");

        var expected = new double[g.WeightElements];
        var magnitude = new double[g.WeightElements];
        c.ForEachTerm((yi, xi, wi) =>
        {
            double t = (double)dy[yi] * x[xi];
            expected[wi] += t;
            magnitude[wi] += Math.Abs(t);
        });
        long terms = g.Batch * g.OutHeight * g.OutWidth;
        Expect.AllClose(dw, expected, magnitude.Select(m => BatchSumTolerance(terms, m)).ToArray(),
            $"conv2d backward-weights {c} on {DeviceName}");

        long plane = g.OutHeight * g.OutWidth;
        var expectedBias = new double[g.OutChannels];
        var magnitudeBias = new double[g.OutChannels];
        for (long i = 0; i < dy.Length; i++)
        {
            expectedBias[i / plane % g.OutChannels] += dy[i];
            magnitudeBias[i / plane % g.OutChannels] += Math.Abs(dy[i]);
        }
        Expect.AllClose(dbias, expectedBias, magnitudeBias.Select(m => BatchSumTolerance(terms, m)).ToArray(),
            $"conv2d bias gradient {c} on {DeviceName}");
    }

    /// <summary>
    /// The three passes are one linear map and its adjoints: for y = conv(x, w),
    /// sum(dy * y) = sum(dx * x) = sum(dw * w) with dx, dw from dy. Computed from the device's own
    /// outputs in float64, so a backward pass that is the adjoint of a different convolution (a
    /// transposed kernel, a shifted padding) fails even where a reference shares the mistake.
    /// Tolerance: 1e-4 of the sums of |terms|, far above float32 rounding, far below an O(1) mismatch.
    /// </summary>
    [TestCaseSource(nameof(Cases))]
    public void ForwardAndBackward_AreAdjoint(ConvCase c)
    {
        Conv2DGeometry g = c.G;
        float[] x = TestData.Uniform(g.InputElements, -1, 1, $"adjoint x {c}");
        float[] w = TestData.Uniform(g.WeightElements, -1, 1, $"adjoint w {c}");
        float[] dy = TestData.Uniform(g.OutputElements, -1, 1, $"adjoint dy {c}");
        using var xb = DeviceBuffer.FromArray(Device, x);
        using var wb = DeviceBuffer.FromArray(Device, w);
        using var dyb = DeviceBuffer.FromArray(Device, dy);
        using var yb = DeviceBuffer.Allocate(Device, g.OutputElements * sizeof(float));
        using var dxb = DeviceBuffer.Allocate(Device, g.InputElements * sizeof(float));
        using var dwb = DeviceBuffer.Allocate(Device, g.WeightElements * sizeof(float));
        LayerSupport.Run(Device, () =>
        {
            Ops.Conv2D(xb, wb, null, yb, g);
            Ops.Conv2DBackwardData(dyb, wb, dxb, g);
            Ops.Conv2DBackwardWeights(xb, dyb, dwb, null, g);
        });
        (double dyY, double dyYAbs) = Dot(dy, yb.ToArray());
        (double dxX, double dxXAbs) = Dot(dxb.ToArray(), x);
        (double dwW, double dwWAbs) = Dot(dwb.ToArray(), w);
        double tolerance = 1e-4 * (dyYAbs + dxXAbs + dwWAbs);
        Assert.Multiple(() =>
        {
            Assert.That(dxX, Is.EqualTo(dyY).Within(tolerance), $"<dx, x> vs <dy, y> for {c} on {DeviceName}");
            Assert.That(dwW, Is.EqualTo(dyY).Within(tolerance), $"<dw, w> vs <dy, y> for {c} on {DeviceName}");
        });
    }

    private static (double Sum, double AbsSum) Dot(float[] a, float[] b)
    {
        double sum = 0, abs = 0;
        for (int i = 0; i < a.Length; i++)
        {
            sum += (double)a[i] * b[i];
            abs += Math.Abs((double)a[i] * b[i]);
        }
        return (sum, abs);
    }

    [Test]
    public void EmptyBatch_ForwardTouchesNothingAndWeightGradientsAreZero()
    {
        var g = new Conv2DGeometry(0, 3, 5, 5, 2, 3, 3);
        using var xb = DeviceBuffer.Allocate(Device, 0);
        using var wb = DeviceBuffer.FromArray(Device, TestData.Uniform(g.WeightElements, -1, 1, "empty w"));
        using var yb = Guarded.Output(Device, 0);
        using var dwb = Guarded.Output(Device, TestData.Filled(g.WeightElements, float.NaN));
        using var dbb = Guarded.Output(Device, TestData.Filled(2, float.NaN));
        Ops.Conv2D(xb, wb, null, yb, g);
        Guarded.Read(yb, 0, "y");
        LayerSupport.Run(Device, () => Ops.Conv2DBackwardWeights(xb, xb, dwb, dbb, g));
        Expect.Identical(Guarded.Read(dwb, g.WeightElements, "dw"), new float[g.WeightElements], "dw of an empty batch");
        Expect.Identical(Guarded.Read(dbb, 2, "dbias"), new float[2], "dbias of an empty batch");
    }

    [Test]
    public void KernelLargerThanPaddedInput_ThrowsShapeMismatchNamingBoth()
    {
        using var b = DeviceBuffer.Allocate(Device, 4096 * sizeof(float));
        var g = new Conv2DGeometry(1, 1, 4, 4, 1, 6, 6);
        var error = Assert.Throws<ShapeMismatchException>(() => Ops.Conv2D(b, b, null, b, g));
        Assert.That(error!.Message, Does.Contain("6x6").And.Contain("4x4").And.Contain("x [1, 1, 4, 4]"));
    }

    [Test]
    public void DilatedKernelLargerThanPaddedInput_ThrowsShapeMismatch()
    {
        using var b = DeviceBuffer.Allocate(Device, 4096 * sizeof(float));
        var g = new Conv2DGeometry(2, 3, 5, 9, 4, 3, 3, DilationHeight: 3);
        var error = Assert.Throws<ShapeMismatchException>(() => Ops.Conv2DBackwardWeights(b, b, b, null, g));
        Assert.That(error!.Message, Does.Contain("7x3").And.Contain("5x9"));
    }

    [Test]
    public void ChannelsNotDivisibleByGroups_ThrowsShapeMismatchNamingThem()
    {
        using var b = DeviceBuffer.Allocate(Device, 4096 * sizeof(float));
        var g = new Conv2DGeometry(1, 6, 5, 5, 4, 3, 3, PadHeight: 1, PadWidth: 1, Groups: 3);
        var error = Assert.Throws<ShapeMismatchException>(() => Ops.Conv2DBackwardData(b, b, b, g));
        Assert.That(error!.Message, Does.Contain("in_channels = 6").And.Contain("out_channels = 4").And.Contain("groups = 3"));
    }

    [Test]
    public void InputBufferTooSmall_ThrowsShapeMismatchNamingTheBufferAndShape()
    {
        using var small = DeviceBuffer.Allocate(Device, 100 * sizeof(float));
        using var b = DeviceBuffer.Allocate(Device, 4096 * sizeof(float));
        var g = new Conv2DGeometry(2, 3, 8, 8, 4, 3, 3, PadHeight: 1, PadWidth: 1);
        var error = Assert.Throws<ShapeMismatchException>(() => Ops.Conv2D(small, b, null, b, g));
        Assert.That(error!.Message, Does.Contain("'x'").And.Contain("x [2, 3, 8, 8]").And.Contain("384"));
    }

    [Test]
    public void WeightGradientBufferTooSmall_ThrowsShapeMismatch()
    {
        using var small = DeviceBuffer.Allocate(Device, 100 * sizeof(float));
        using var b = DeviceBuffer.Allocate(Device, 4096 * sizeof(float));
        var g = new Conv2DGeometry(2, 3, 8, 8, 4, 3, 3);
        var error = Assert.Throws<ShapeMismatchException>(() => Ops.Conv2DBackwardWeights(b, b, small, null, g));
        Assert.That(error!.Message, Does.Contain("'dw'").And.Contain("w [4, 3, 3, 3]"));
    }

    [Test]
    public void ZeroStride_ThrowsKernelsArgumentException()
    {
        using var b = DeviceBuffer.Allocate(Device, 4096 * sizeof(float));
        var g = new Conv2DGeometry(1, 1, 4, 4, 1, 3, 3, StrideHeight: 0);
        var error = Assert.Throws<KernelsArgumentException>(() => Ops.Conv2D(b, b, null, b, g));
        Assert.That(error!.Message, Does.Contain("stride_height"));
    }
}
