// Binary elementwise ops with NumPy broadcasting, forward and fused backward, against float64.
using System.Globalization;
using Kernels.Tests.Support;
using NUnit.Framework;

namespace Kernels.Tests;

/// <summary>
/// One binary op: input domains, the float64 function, its two partial derivatives, and tolerance
/// scales. Tolerances are rtol * scale, rtol = 16 u (u = 2^-24): each op is one or two roundings
/// (a powf a few ulps more), and the scale is the magnitude of the terms the formula adds or the
/// result's condition number (|b ln a| for a^b). MAXIMUM and MINIMUM are exact (scale 0) and their
/// inputs come from a small set so that ties, whose gradient goes to a (kernels.h), are common.
/// </summary>
public sealed record BinaryOpSpec(
    BinaryOp Op,
    Func<long, string, float[]> InputsA, Func<long, string, float[]> InputsB,
    Func<double, double, double> Forward, Func<double, double, double> ForwardScale,
    Func<double, double, double> DerivativeA, Func<double, double, double> DerivativeAScale,
    Func<double, double, double> DerivativeB, Func<double, double, double> DerivativeBScale)
{
    public const double RelativeTolerance = 16 * TestData.Unit;

    public override string ToString() => Op.ToString();

    private static readonly float[] TieProne = { -2f, -1f, -0.5f, 0f, 0.5f, 1f, 2f };

    // Comparisons: ties and NaNs (which compare false, except NotEqual: IEEE, as PyTorch).
    private static readonly float[] TieProneWithNaN = { -1f, 0f, 0.5f, 1f, float.NaN };

    private static BinaryOpSpec Comparison(BinaryOp op, Func<double, double, bool> holds) =>
        new(op, (n, seed) => TestData.Choice(n, TieProneWithNaN, seed), (n, seed) => TestData.Choice(n, TieProneWithNaN, seed),
            (a, b) => holds(a, b) ? 1 : 0, (_, _) => 0,
            (_, _) => 0, (_, _) => 0, (_, _) => 0, (_, _) => 0);  // piecewise constant: zero gradients

    private static Func<long, string, float[]> Range(double low, double high) => (n, seed) => TestData.Uniform(n, low, high, seed);

    public static readonly BinaryOpSpec[] All =
    {
        new(BinaryOp.Add, Range(-3, 3), Range(-3, 3),
            (a, b) => a + b, (a, b) => Math.Abs(a) + Math.Abs(b),
            (_, _) => 1, (_, _) => 0, (_, _) => 1, (_, _) => 0),
        new(BinaryOp.Sub, Range(-3, 3), Range(-3, 3),
            (a, b) => a - b, (a, b) => Math.Abs(a) + Math.Abs(b),
            (_, _) => 1, (_, _) => 0, (_, _) => -1, (_, _) => 0),
        new(BinaryOp.Mul, Range(-3, 3), Range(-3, 3),
            (a, b) => a * b, (a, b) => Math.Abs(a * b),
            (_, b) => b, (_, b) => Math.Abs(b), (a, _) => a, (a, _) => Math.Abs(a)),
        new(BinaryOp.Div, Range(-3, 3), (n, seed) => TestData.AwayFromZero(n, 0.25, 4, seed),
            (a, b) => a / b, (a, b) => Math.Abs(a / b),
            (_, b) => 1 / b, (_, b) => Math.Abs(1 / b), (a, b) => -a / (b * b), (a, b) => 2 * Math.Abs(a / (b * b))),
        new(BinaryOp.Pow, Range(0.1, 4), Range(-2, 2),
            Math.Pow, (a, b) => Math.Pow(a, b) * (1 + Math.Abs(b * Math.Log(a))),
            (a, b) => b * Math.Pow(a, b - 1), (a, b) => Math.Abs(b * Math.Pow(a, b - 1)) * (1 + Math.Abs((b - 1) * Math.Log(a))) + Math.Pow(a, b - 1),
            (a, b) => Math.Pow(a, b) * Math.Log(a), (a, b) => Math.Pow(a, b) * (1 + Math.Abs(Math.Log(a)) * (1 + Math.Abs(b * Math.Log(a))))),
        new(BinaryOp.Maximum, (n, seed) => TestData.Choice(n, TieProne, seed), (n, seed) => TestData.Choice(n, TieProne, seed),
            Math.Max, (_, _) => 0,
            (a, b) => a >= b ? 1 : 0, (_, _) => 0, (a, b) => a >= b ? 0 : 1, (_, _) => 0),
        new(BinaryOp.Minimum, (n, seed) => TestData.Choice(n, TieProne, seed), (n, seed) => TestData.Choice(n, TieProne, seed),
            Math.Min, (_, _) => 0,
            (a, b) => a <= b ? 1 : 0, (_, _) => 0, (a, b) => a <= b ? 0 : 1, (_, _) => 0),
        Comparison(BinaryOp.Equal, (a, b) => a == b),
        Comparison(BinaryOp.NotEqual, (a, b) => a != b),
        Comparison(BinaryOp.Less, (a, b) => a < b),
        Comparison(BinaryOp.LessEqual, (a, b) => a <= b),
        Comparison(BinaryOp.Greater, (a, b) => a > b),
        Comparison(BinaryOp.GreaterEqual, (a, b) => a >= b),
    };
}

/// <summary>A pair of operand shapes; the output shape is their broadcast.</summary>
public sealed record BroadcastCase(long[] A, long[] B)
{
    public long[] C => Reference.BroadcastShape(A, B) ?? throw new InvalidOperationException($"{this} does not broadcast");

    public override string ToString() => $"{TestData.ShapeText(A)}x{TestData.ShapeText(B)}";

    public static readonly BroadcastCase[] All =
    {
        new(new long[] { 5 }, new long[] { 5 }),                     // same shape
        new(new long[] { 1 }, new long[] { 7 }),                     // a is one element
        new(new long[] { 7 }, new long[] { 1 }),                     // b is one element
        new(new long[] { 3, 4 }, new long[] { 4 }),                  // a row added to every row
        new(new long[] { 4 }, new long[] { 3, 4 }),
        new(new long[] { 3, 1 }, new long[] { 1, 4 }),               // outer product shape
        new(new long[] { 2, 3, 1, 5 }, new long[] { 3, 4, 1 }),      // both broadcast, different ranks
        new(System.Array.Empty<long>(), new long[] { 6 }),           // rank-0 scalar
        new(new long[] { 6 }, System.Array.Empty<long>()),
        new(new long[] { 0, 3 }, new long[] { 3 }),                  // empty output
        new(new long[] { 129, 257 }, new long[] { 129, 1 }),         // a column per row, odd sizes past a tile
        new(new long[] { 33, 1, 65 }, new long[] { 1, 17, 65 }),
        new(new long[] { 100003 }, new long[] { 100003 }),           // long, prime: SIMD/block tails
    };
}

[TestFixtureSource(typeof(BackendDevices), nameof(BackendDevices.Fixtures))]
public sealed class BinaryTests : DeviceFixture
{
    public BinaryTests(string deviceName) : base(deviceName) { }

    public static IEnumerable<TestCaseData> Cases() =>
        from op in BinaryOpSpec.All
        from shapes in BroadcastCase.All
        select new TestCaseData(op, shapes).SetArgDisplayNames(op.ToString(), shapes.ToString());

    [Test]
    public void BinaryOpSpec_CoversEveryBinaryOp()
    {
        var covered = BinaryOpSpec.All.Select(s => s.Op).ToHashSet();
        Assert.That(Enum.GetValues<BinaryOp>().Where(op => !covered.Contains(op)), Is.Empty, "ops without a test case");
    }

    [TestCaseSource(nameof(Cases))]
    public void Binary_Forward_MatchesFloat64Reference(BinaryOpSpec spec, BroadcastCase shapes)
    {
        (float[] a, float[] b) = Inputs(spec, shapes);
        long n = TestData.Product(shapes.C);
        using var ab = DeviceBuffer.FromArray(Device, a);
        using var bb = DeviceBuffer.FromArray(Device, b);
        using var cb = Guarded.Output(Device, n);
        Ops.Binary(spec.Op, ab, shapes.A, bb, shapes.B, cb, shapes.C);
        float[] c = Guarded.Read(cb, n, "c");

        long[] ai = Reference.BroadcastIndices(shapes.A, shapes.C), bi = Reference.BroadcastIndices(shapes.B, shapes.C);
        var expected = new double[n];
        var tolerance = new double[n];
        for (long i = 0; i < n; i++)
        {
            double av = a[ai[i]], bv = b[bi[i]];
            expected[i] = spec.Forward(av, bv);
            tolerance[i] = BinaryOpSpec.RelativeTolerance * spec.ForwardScale(av, bv) + 1e-37;
        }
        Expect.AllClose(c, expected, tolerance, $"{spec} forward {shapes} on {DeviceName}");
    }

    [TestCaseSource(nameof(Cases))]
    public void BinaryBackward_GradientsInBroadcastShape_MatchFloat64Reference(BinaryOpSpec spec, BroadcastCase shapes)
    {
        (float[] a, float[] b) = Inputs(spec, shapes);
        long n = TestData.Product(shapes.C);
        float[] dc = TestData.Uniform(n, -2, 2, $"binary dc {spec} {shapes}");
        using var ab = DeviceBuffer.FromArray(Device, a);
        using var bb = DeviceBuffer.FromArray(Device, b);
        using var dcb = DeviceBuffer.FromArray(Device, dc);
        using var dab = Guarded.Output(Device, n);
        using var dbb = Guarded.Output(Device, n);
        Ops.BinaryBackward(spec.Op, ab, shapes.A, bb, shapes.B, dcb, shapes.C, dab, dbb);

        (double[] da, double[] daTolerance, double[] db, double[] dbTolerance) = BackwardReference(spec, shapes, a, b, dc);
        Assert.Multiple(() =>
        {
            Expect.AllClose(Guarded.Read(dab, n, "da"), da, daTolerance, $"{spec} da {shapes} on {DeviceName}");
            Expect.AllClose(Guarded.Read(dbb, n, "db"), db, dbTolerance, $"{spec} db {shapes} on {DeviceName}");
        });
    }

    [TestCaseSource(typeof(BinaryOpSpec), nameof(BinaryOpSpec.All))]
    public void BinaryBackward_WithNullDaOrDb_WritesOnlyTheOtherGradient(BinaryOpSpec spec)
    {
        var shapes = new BroadcastCase(new long[] { 3, 1 }, new long[] { 1, 4 });
        (float[] a, float[] b) = Inputs(spec, shapes);
        long n = TestData.Product(shapes.C);
        float[] dc = TestData.Uniform(n, -2, 2, $"binary null dc {spec}");
        (double[] da, double[] daTolerance, double[] db, double[] dbTolerance) = BackwardReference(spec, shapes, a, b, dc);
        using var ab = DeviceBuffer.FromArray(Device, a);
        using var bb = DeviceBuffer.FromArray(Device, b);
        using var dcb = DeviceBuffer.FromArray(Device, dc);

        using (var dbOnly = Guarded.Output(Device, n))
        {
            Ops.BinaryBackward(spec.Op, ab, shapes.A, bb, shapes.B, dcb, shapes.C, null, dbOnly);
            Expect.AllClose(Guarded.Read(dbOnly, n, "db"), db, dbTolerance, $"{spec} db with da = null on {DeviceName}");
        }
        using (var daOnly = Guarded.Output(Device, n))
        {
            Ops.BinaryBackward(spec.Op, ab, shapes.A, bb, shapes.B, dcb, shapes.C, daOnly, null);
            Expect.AllClose(Guarded.Read(daOnly, n, "da"), da, daTolerance, $"{spec} da with db = null on {DeviceName}");
        }
        // Neither gradient wanted: a valid no-op.
        Ops.BinaryBackward(spec.Op, ab, shapes.A, bb, shapes.B, dcb, shapes.C, null, null);
    }

    private static (float[] A, float[] B) Inputs(BinaryOpSpec spec, BroadcastCase shapes) =>
        (spec.InputsA(TestData.Product(shapes.A), $"binary a {spec} {shapes}"),
         spec.InputsB(TestData.Product(shapes.B), $"binary b {spec} {shapes}"));

    private static (double[] Da, double[] DaTolerance, double[] Db, double[] DbTolerance) BackwardReference(
        BinaryOpSpec spec, BroadcastCase shapes, float[] a, float[] b, float[] dc)
    {
        long n = dc.Length;
        long[] ai = Reference.BroadcastIndices(shapes.A, shapes.C), bi = Reference.BroadcastIndices(shapes.B, shapes.C);
        var da = new double[n];
        var daTolerance = new double[n];
        var db = new double[n];
        var dbTolerance = new double[n];
        for (long i = 0; i < n; i++)
        {
            double av = a[ai[i]], bv = b[bi[i]], g = dc[i];
            da[i] = g * spec.DerivativeA(av, bv);
            db[i] = g * spec.DerivativeB(av, bv);
            // One more rounding for the multiplication by dc.
            daTolerance[i] = BinaryOpSpec.RelativeTolerance * Math.Abs(g) * (spec.DerivativeAScale(av, bv) + Math.Abs(spec.DerivativeA(av, bv))) + 1e-37;
            dbTolerance[i] = BinaryOpSpec.RelativeTolerance * Math.Abs(g) * (spec.DerivativeBScale(av, bv) + Math.Abs(spec.DerivativeB(av, bv))) + 1e-37;
        }
        return (da, daTolerance, db, dbTolerance);
    }
}

/// <summary>Ops.BroadcastShape is computed in C#; it needs no device.</summary>
public sealed class BroadcastShapeTests
{
    public static IEnumerable<TestCaseData> ShapeCases() =>
        BroadcastCase.All.Select(s => new TestCaseData(s).SetArgDisplayNames(s.ToString()));

    [TestCaseSource(nameof(ShapeCases))]
    public void BroadcastShape_MatchesNumPyRule(BroadcastCase shapes) =>
        Assert.That(Ops.BroadcastShape(shapes.A, shapes.B), Is.EqualTo(shapes.C), shapes.ToString());
}
