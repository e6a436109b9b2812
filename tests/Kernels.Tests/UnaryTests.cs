// Unary elementwise ops, forward and fused backward, on every device against float64.
using System.Globalization;
using Kernels.Tests.Support;
using NUnit.Framework;

namespace Kernels.Tests;

/// <summary>
/// One unary op: its parameter, an input domain where it is defined and smooth, the float64 function
/// and derivative, and the scales its tolerances are measured against.
///
/// Tolerances are rtol * scale with rtol = 32 u (u = 2^-24, so ~1.9e-6): a few ulps for the
/// float32 library function (glibc/OpenCL/CUDA expf, logf, erff are within 1-4 ulp; CUDA's fast
/// intrinsics within ~8 ulp on these domains) plus the roundings of the formula around it.
/// The scale is |f(x)| plus what the formula's own roundings can cost where it cancels: for example
/// x*f'(x) (an internal rounding of x, such as 2x in tanh or x/sqrt2 in GELU, is amplified by the
/// condition number x f'/f), |x| for GELU computed as x/2 (1 + erf(x/sqrt2)), 1 + y^2 for the tanh
/// derivative 1 - y^2. Where the result is far from zero the scale is close to |f|: the check is
/// then a relative one, and an implementation using the tanh approximation of GELU (error ~1e-3),
/// a float16 path or a wrong formula fails it by orders of magnitude.
/// </summary>
public sealed record UnaryOpSpec(
    UnaryOp Op, float Alpha, string Domain,
    Func<long, string, float[]> Inputs,
    Func<double, double, double> Forward,          // f(x, alpha)
    Func<double, double, double> ForwardScale,     // tolerance scale at x
    bool DerivativeFromOutput,                     // kernels.h: EXP, SQRT, RSQRT, RECIPROCAL, TANH, SIGMOID use y
    Func<double, double, double> Derivative,       // f' as a function of y (when from output) or x, and alpha
    Func<double, double, double> DerivativeScale)  // tolerance scale of f' at that same argument
{
    public const double RelativeTolerance = 32 * TestData.Unit;

    public override string ToString() => Alpha == 0
        ? Op.ToString()
        : string.Create(CultureInfo.InvariantCulture, $"{Op}(alpha={Alpha})");

    private static Func<long, string, float[]> Range(double low, double high) =>
        (n, seed) => TestData.Uniform(n, low, high, seed);

    private static Func<long, string, float[]> AwayFromZero(double min, double max) =>
        (n, seed) => TestData.AwayFromZero(n, min, max, seed);

    /// <summary>Softplus inputs include values whose e^x overflows float32 (x &gt; 88.7).</summary>
    private static float[] SoftplusInputs(long n, string seed)
    {
        float[] x = TestData.Uniform(n, -20, 20, seed);
        float[] extremes = { 90f, -90f, 88.8f, 100f, -100f, 30f, -30f };
        for (int i = 0; i < x.Length && i < extremes.Length; i++) x[i * 3 % x.Length] = extremes[i];
        return x;
    }

    public static readonly UnaryOpSpec[] All =
    {
        new(UnaryOp.Neg, 0, "[-3, 3]", Range(-3, 3),
            (x, _) => -x, (x, _) => Math.Abs(x),
            false, (_, _) => -1, (_, _) => 1),
        new(UnaryOp.Abs, 0, "+-[0.001, 3]", AwayFromZero(1e-3, 3),
            (x, _) => Math.Abs(x), (x, _) => Math.Abs(x),
            false, (x, _) => Math.Sign(x), (_, _) => 1),
        new(UnaryOp.Exp, 0, "[-10, 10]", Range(-10, 10),
            (x, _) => Math.Exp(x), (x, _) => Math.Exp(x) * (1 + Math.Abs(x)),
            true, (y, _) => y, (y, _) => Math.Abs(y)),
        new(UnaryOp.Log, 0, "[0.01, 50]", Range(0.01, 50),
            (x, _) => Math.Log(x), (x, _) => Math.Abs(Math.Log(x)) + 1,
            false, (x, _) => 1 / x, (x, _) => 1 / x),
        new(UnaryOp.Sqrt, 0, "[0.01, 100]", Range(0.01, 100),
            (x, _) => Math.Sqrt(x), (x, _) => Math.Sqrt(x),
            true, (y, _) => 0.5 / y, (y, _) => 0.5 / y),
        new(UnaryOp.Rsqrt, 0, "[0.01, 100]", Range(0.01, 100),
            (x, _) => 1 / Math.Sqrt(x), (x, _) => 1 / Math.Sqrt(x),
            true, (y, _) => -0.5 * y * y * y, (y, _) => 0.5 * y * y * y),
        new(UnaryOp.Square, 0, "[-3, 3]", Range(-3, 3),
            (x, _) => x * x, (x, _) => x * x,
            false, (x, _) => 2 * x, (x, _) => 2 * Math.Abs(x)),
        new(UnaryOp.Reciprocal, 0, "+-[0.1, 10]", AwayFromZero(0.1, 10),
            (x, _) => 1 / x, (x, _) => 1 / Math.Abs(x),
            true, (y, _) => -y * y, (y, _) => y * y),
        new(UnaryOp.Tanh, 0, "[-8, 8]", Range(-8, 8),
            (x, _) => Math.Tanh(x), (_, _) => 1,
            true, (y, _) => 1 - y * y, (y, _) => 1 + y * y),
        new(UnaryOp.Sigmoid, 0, "[-12, 12]", Range(-12, 12),
            (x, _) => Reference.Sigmoid(x),
            (x, _) => Reference.Sigmoid(x) * (1 + Math.Abs(x) * (1 - Reference.Sigmoid(x))),
            true, (y, _) => y * (1 - y), (y, _) => Math.Abs(y) + y * y),
        new(UnaryOp.Relu, 0, "+-[0.001, 3]", AwayFromZero(1e-3, 3),
            (x, _) => Math.Max(x, 0), (x, _) => Math.Abs(x),
            false, (x, _) => x > 0 ? 1 : 0, (_, _) => 1),
        new(UnaryOp.LeakyRelu, 0.1f, "+-[0.001, 3]", AwayFromZero(1e-3, 3),
            (x, a) => x > 0 ? x : a * x, (x, a) => Math.Abs(x > 0 ? x : a * x),
            false, (x, a) => x > 0 ? 1 : a, (_, _) => 1),
        new(UnaryOp.Gelu, 0, "[-6, 6]", Range(-6, 6),
            (x, _) => x * Reference.NormalCdf(x),
            (x, _) => Math.Abs(x) * (1 + Math.Abs(x) * Reference.NormalPdf(x)) + Math.Abs(x * x) * Reference.NormalPdf(x),
            false, (x, _) => Reference.NormalCdf(x) + x * Reference.NormalPdf(x),
            (x, _) => 1 + Math.Abs(x) * Reference.NormalPdf(x) * (3 + x * x)),
        new(UnaryOp.Elu, 0.7f, "+-[0.001, 6]", AwayFromZero(1e-3, 6),
            (x, a) => x > 0 ? x : a * (Math.Exp(x) - 1), (x, a) => x > 0 ? Math.Abs(x) : a * (1 + Math.Abs(x) * Math.Exp(x)),
            false, (x, a) => x > 0 ? 1 : a * Math.Exp(x), (x, a) => x > 0 ? 1 : a * Math.Exp(x) * (1 + Math.Abs(x))),
        new(UnaryOp.Softplus, 0, "[-20, 20] and +-30, +-88.8, +-90, +-100", SoftplusInputs,
            (x, _) => Reference.Softplus(x), (x, _) => Math.Max(x, 0) + 1,
            false, (x, _) => Reference.Sigmoid(x), (x, _) => Reference.Sigmoid(x) * (1 + Math.Abs(x) * (1 - Reference.Sigmoid(x)))),
        new(UnaryOp.Sin, 0, "[-10, 10]", Range(-10, 10),
            (x, _) => Math.Sin(x), (x, _) => 1 + Math.Abs(x),
            false, (x, _) => Math.Cos(x), (x, _) => 1 + Math.Abs(x)),
        new(UnaryOp.Cos, 0, "[-10, 10]", Range(-10, 10),
            (x, _) => Math.Cos(x), (x, _) => 1 + Math.Abs(x),
            false, (x, _) => -Math.Sin(x), (x, _) => 1 + Math.Abs(x)),
        new(UnaryOp.Scale, -1.75f, "[-3, 3]", Range(-3, 3),
            (x, a) => a * x, (x, a) => Math.Abs(a * x),
            false, (_, a) => a, (_, a) => Math.Abs(a)),
        new(UnaryOp.AddScalar, 0.5f, "[-3, 3]", Range(-3, 3),
            (x, a) => x + a, (x, a) => Math.Abs(x) + Math.Abs(a),
            false, (_, _) => 1, (_, _) => 1),
        new(UnaryOp.PowScalar, 2.5f, "[0.05, 4]", Range(0.05, 4),
            (x, a) => Math.Pow(x, a), (x, a) => Math.Pow(x, a) * (1 + Math.Abs(a * Math.Log(x))),
            false, (x, a) => a * Math.Pow(x, a - 1), (x, a) => Math.Abs(a * Math.Pow(x, a - 1)) * (1 + Math.Abs((a - 1) * Math.Log(x)))),
        new(UnaryOp.PowScalar, -1.5f, "[0.05, 4]", Range(0.05, 4),
            (x, a) => Math.Pow(x, a), (x, a) => Math.Pow(x, a) * (1 + Math.Abs(a * Math.Log(x))),
            false, (x, a) => a * Math.Pow(x, a - 1), (x, a) => Math.Abs(a * Math.Pow(x, a - 1)) * (1 + Math.Abs((a - 1) * Math.Log(x)))),
    };

    /// <summary>Sizes: empty, one, a vector-width tail, a round-ish size, and a prime past 100k that
    /// leaves a tail for any block or SIMD width.</summary>
    public static readonly long[] Sizes = { 0, 1, 7, 1000, 100003 };

    public static IEnumerable<TestCaseData> Cases() =>
        from op in All
        from n in Sizes
        select new TestCaseData(op, n).SetArgDisplayNames(op.ToString(), n.ToString(CultureInfo.InvariantCulture));
}

[TestFixtureSource(typeof(BackendDevices), nameof(BackendDevices.Fixtures))]
public sealed class UnaryTests : DeviceFixture
{
    public UnaryTests(string deviceName) : base(deviceName) { }

    [Test]
    public void UnaryOpSpec_CoversEveryUnaryOp()
    {
        var covered = UnaryOpSpec.All.Select(s => s.Op).ToHashSet();
        Assert.That(Enum.GetValues<UnaryOp>().Where(op => !covered.Contains(op)), Is.Empty, "ops without a test case");
    }

    [TestCaseSource(typeof(UnaryOpSpec), nameof(UnaryOpSpec.Cases))]
    public void Unary_Forward_MatchesFloat64Reference(UnaryOpSpec spec, long n)
    {
        float[] x = spec.Inputs(n, $"unary {spec} {n}");
        using var xb = DeviceBuffer.FromArray(Device, x);
        using var yb = Guarded.Output(Device, n);
        Ops.Unary(spec.Op, xb, yb, n, spec.Alpha);
        float[] y = Guarded.Read(yb, n, "y");

        (double[] expected, double[] tolerance) = ForwardReference(spec, x);
        Expect.AllClose(y, expected, tolerance, $"{spec} forward over {spec.Domain}, n={n}, on {DeviceName}");
        Expect.Identical(xb.ToArray(), x, $"{spec}: the input x after the call");
    }

    [TestCaseSource(typeof(UnaryOpSpec), nameof(UnaryOpSpec.Cases))]
    public void UnaryBackward_MatchesFloat64AnalyticDerivative(UnaryOpSpec spec, long n)
    {
        // The kernel gets exactly what the op needs (kernels.h): y for EXP/SQRT/RSQRT/RECIPROCAL/
        // TANH/SIGMOID, x otherwise, and NULL for the other one. y is the float64 forward rounded to
        // float32, so this test does not depend on the forward kernel.
        float[] x = spec.Inputs(n, $"unary {spec} {n}");
        float[] y = x.Select(v => (float)spec.Forward(v, spec.Alpha)).ToArray();
        float[] dy = TestData.Uniform(n, -2, 2, $"unary dy {spec} {n}");
        using var xb = spec.DerivativeFromOutput ? null : DeviceBuffer.FromArray(Device, x);
        using var yb = spec.DerivativeFromOutput ? DeviceBuffer.FromArray(Device, y) : null;
        using var dyb = DeviceBuffer.FromArray(Device, dy);
        using var dxb = Guarded.Output(Device, n);
        Ops.UnaryBackward(spec.Op, xb, yb, dyb, dxb, n, spec.Alpha);
        float[] dx = Guarded.Read(dxb, n, "dx");

        (double[] expected, double[] tolerance) = BackwardReference(spec, spec.DerivativeFromOutput ? y : x, dy);
        Expect.AllClose(dx, expected, tolerance, $"{spec} backward (from {(spec.DerivativeFromOutput ? "y" : "x")}) over {spec.Domain}, n={n}, on {DeviceName}");
    }

    [Test]
    public void Unary_InPlace_WhenYIsX_MatchesReference()
    {
        UnaryOpSpec spec = UnaryOpSpec.All.First(s => s.Op == UnaryOp.Tanh);
        const long n = 1031;
        float[] x = spec.Inputs(n, "unary in place");
        using var buffer = DeviceBuffer.FromArray(Device, x);
        Ops.Unary(spec.Op, buffer, buffer, n, spec.Alpha);
        (double[] expected, double[] tolerance) = ForwardReference(spec, x);
        Expect.AllClose(buffer.ToArray(), expected, tolerance, $"in-place tanh on {DeviceName}");
    }

    [Test]
    public void UnaryBackward_InPlace_WhenDxIsDy_MatchesReference()
    {
        UnaryOpSpec spec = UnaryOpSpec.All.First(s => s.Op == UnaryOp.Sigmoid);
        const long n = 1031;
        float[] x = spec.Inputs(n, "unary backward in place");
        float[] y = x.Select(v => (float)spec.Forward(v, spec.Alpha)).ToArray();
        float[] dy = TestData.Uniform(n, -2, 2, "unary backward in place dy");
        using var yb = DeviceBuffer.FromArray(Device, y);
        using var gradient = DeviceBuffer.FromArray(Device, dy);
        Ops.UnaryBackward(spec.Op, null, yb, gradient, gradient, n);
        (double[] expected, double[] tolerance) = BackwardReference(spec, y, dy);
        Expect.AllClose(gradient.ToArray(), expected, tolerance, $"in-place sigmoid backward on {DeviceName}");
    }

    [Test]
    public void UnaryBackward_GivenBothXAndY_UsesTheOneItNeeds()
    {
        foreach (UnaryOp op in new[] { UnaryOp.Exp, UnaryOp.Gelu })
        {
            UnaryOpSpec spec = UnaryOpSpec.All.First(s => s.Op == op);
            const long n = 257;
            float[] x = spec.Inputs(n, "both x and y");
            float[] y = x.Select(v => (float)spec.Forward(v, spec.Alpha)).ToArray();
            float[] dy = TestData.Uniform(n, -2, 2, "both x and y dy");
            using var xb = DeviceBuffer.FromArray(Device, x);
            using var yb = DeviceBuffer.FromArray(Device, y);
            using var dyb = DeviceBuffer.FromArray(Device, dy);
            using var dxb = Guarded.Output(Device, n);
            Ops.UnaryBackward(spec.Op, xb, yb, dyb, dxb, n, spec.Alpha);
            (double[] expected, double[] tolerance) = BackwardReference(spec, spec.DerivativeFromOutput ? y : x, dy);
            Expect.AllClose(Guarded.Read(dxb, n, "dx"), expected, tolerance, $"{spec} backward given x and y on {DeviceName}");
        }
    }

    [Test]
    public void Unary_WithNSmallerThanTheBuffers_TouchesOnlyTheFirstN()
    {
        const long n = 13;
        float[] x = TestData.Uniform(40, -3, 3, "unary prefix");
        using var xb = DeviceBuffer.FromArray(Device, x);
        using var yb = Guarded.Output(Device, 40);
        Ops.Unary(UnaryOp.Neg, xb, yb, n);
        float[] y = Guarded.Read(yb, 40, "y");
        Expect.Identical(y[..(int)n], x[..(int)n].Select(v => -v).ToArray(), "the first n elements");
        Expect.Identical(y[(int)n..], TestData.Filled(40 - n, Guarded.Sentinel), "the elements past n");
    }

    private static (double[] Expected, double[] Tolerance) ForwardReference(UnaryOpSpec spec, float[] x)
    {
        var expected = new double[x.Length];
        var tolerance = new double[x.Length];
        for (int i = 0; i < x.Length; i++)
        {
            expected[i] = spec.Forward(x[i], spec.Alpha);
            tolerance[i] = UnaryOpSpec.RelativeTolerance * spec.ForwardScale(x[i], spec.Alpha) + 1e-37;
        }
        return (expected, tolerance);
    }

    private static (double[] Expected, double[] Tolerance) BackwardReference(UnaryOpSpec spec, float[] argument, float[] dy)
    {
        var expected = new double[argument.Length];
        var tolerance = new double[argument.Length];
        for (int i = 0; i < argument.Length; i++)
        {
            expected[i] = dy[i] * spec.Derivative(argument[i], spec.Alpha);
            tolerance[i] = UnaryOpSpec.RelativeTolerance * Math.Abs(dy[i]) * spec.DerivativeScale(argument[i], spec.Alpha) + 1e-37;
        }
        return (expected, tolerance);
    }
}
