// GEMM on every device against a float64 reference: C = alpha * op(A) * op(B) + beta * C, batched.
using System.Globalization;
using Kernels.Tests.Support;
using NUnit.Framework;

namespace Kernels.Tests;

/// <summary>How C starts out before the call.</summary>
public enum GemmInitialC
{
    Random,
    /// <summary>NaN everywhere: with beta == 0 it must not propagate (BLAS semantics, kernels.h).</summary>
    NaN,
}

/// <summary>
/// One GEMM case: sizes, transposes, scalars, leading-dimension padding and batching. Padding and
/// the gaps between batches of A and B hold NaN, so a kernel that reads outside the logical matrix
/// poisons its result; C's padding must come back untouched.
/// </summary>
public sealed record GemmCase(long M, long N, long K,
    Transpose TransA = Transpose.NoTranspose, Transpose TransB = Transpose.NoTranspose,
    float Alpha = 1, float Beta = 0,
    long LdaPad = 0, long LdbPad = 0, long LdcPad = 0,
    long Batch = 1, bool ShareA = false, bool ShareB = false, long StridePad = 0,
    GemmInitialC InitialC = GemmInitialC.Random)
{
    private bool TA => TransA == Transpose.Transpose;
    private bool TB => TransB == Transpose.Transpose;
    public long ARows => TA ? K : M;
    public long ACols => TA ? M : K;
    public long BRows => TB ? N : K;
    public long BCols => TB ? K : N;
    public long Lda => Math.Max(1, ACols) + LdaPad;
    public long Ldb => Math.Max(1, BCols) + LdbPad;
    public long Ldc => Math.Max(1, N) + LdcPad;
    public long StrideA => Batch == 1 || ShareA ? 0 : ARows * Lda + StridePad;
    public long StrideB => Batch == 1 || ShareB ? 0 : BRows * Ldb + StridePad;
    public long StrideC => Batch == 1 ? 0 : M * Ldc + StridePad;
    public long ElementsA => (Batch - 1) * StrideA + ARows * Lda;
    public long ElementsB => (Batch - 1) * StrideB + BRows * Ldb;
    public long ElementsC => (Batch - 1) * StrideC + M * Ldc;
    public double Flops => 2.0 * M * N * K * Batch;

    public override string ToString()
    {
        var text = string.Create(CultureInfo.InvariantCulture,
            $"{M}x{N}x{K} {(TA ? 'T' : 'N')}{(TB ? 'T' : 'N')} alpha={Alpha} beta={Beta}");
        if (LdaPad != 0 || LdbPad != 0 || LdcPad != 0) text += $" lda={Lda} ldb={Ldb} ldc={Ldc}";
        if (Batch != 1) text += $" batch={Batch} strides={StrideA},{StrideB},{StrideC}";
        if (InitialC == GemmInitialC.NaN) text += " C=NaN";
        return text;
    }

    private static readonly (long M, long N, long K)[] TilingShapes =
    {
        (1, 1, 1), (7, 33, 127), (1000, 1, 1), (1, 1000, 1), (1, 1, 1000), (65, 129, 31), (257, 511, 129),
    };

    private static readonly (Transpose A, Transpose B)[] TransposeCombos =
    {
        (Transpose.NoTranspose, Transpose.NoTranspose), (Transpose.NoTranspose, Transpose.Transpose),
        (Transpose.Transpose, Transpose.NoTranspose), (Transpose.Transpose, Transpose.Transpose),
    };

    /// <summary>Shapes chosen to break any tiling (primes, one-off-a-power-of-two, degenerate
    /// vectors), each with all four transpose combinations.</summary>
    public static IEnumerable<TestCaseData> Shapes() =>
        from s in TilingShapes
        from t in TransposeCombos
        select Data(new GemmCase(s.M, s.N, s.K, t.A, t.B));

    public static IEnumerable<TestCaseData> Scalars() => new[]
    {
        new GemmCase(65, 129, 31, Alpha: 1.5f, Beta: -0.75f),
        new GemmCase(7, 33, 127, Transpose.Transpose, Transpose.Transpose, Alpha: -2, Beta: 1),
        new GemmCase(33, 17, 65, Transpose.NoTranspose, Transpose.Transpose, Alpha: 0.25f, Beta: 0.5f),
        new GemmCase(17, 9, 5, Alpha: 0, Beta: 2),   // alpha = 0: C = beta * C
    }.Select(Data);

    public static IEnumerable<TestCaseData> BetaZeroOverNaN() => new[]
    {
        new GemmCase(7, 33, 127, Transpose.NoTranspose, Transpose.Transpose, InitialC: GemmInitialC.NaN),
        new GemmCase(65, 129, 31, Transpose.Transpose, Transpose.NoTranspose, Alpha: 2, InitialC: GemmInitialC.NaN),
        new GemmCase(1, 1000, 1, InitialC: GemmInitialC.NaN),
    }.Select(Data);

    public static IEnumerable<TestCaseData> PaddedLeadingDimensions() =>
        from t in TransposeCombos
        select Data(new GemmCase(65, 129, 31, t.A, t.B, Alpha: 1, Beta: 0.5f, LdaPad: 3, LdbPad: 5, LdcPad: 7));

    /// <summary>k = 0: C = beta * C (and with beta = 0 over NaN, C = 0).</summary>
    public static IEnumerable<TestCaseData> EmptyInnerDimension() => new[]
    {
        new GemmCase(7, 33, 0, Beta: 0.5f),
        new GemmCase(7, 33, 0, Transpose.Transpose, Transpose.Transpose, Beta: -1),
        new GemmCase(7, 33, 0, InitialC: GemmInitialC.NaN),
    }.Select(Data);

    public static IEnumerable<TestCaseData> Batched() => new[]
    {
        new GemmCase(33, 17, 9, Batch: 3, Beta: 0.5f),
        new GemmCase(33, 17, 9, Transpose.NoTranspose, Transpose.Transpose, Batch: 4, ShareA: true),
        new GemmCase(31, 65, 7, Transpose.Transpose, Transpose.NoTranspose, Batch: 3, ShareB: true),
        new GemmCase(5, 7, 129, Transpose.Transpose, Transpose.Transpose, Batch: 5, StridePad: 11, LdaPad: 1, LdbPad: 2, LdcPad: 3),
        new GemmCase(1, 1, 1, Batch: 7),
    }.Select(Data);

    private static TestCaseData Data(GemmCase c) => new TestCaseData(c).SetArgDisplayNames(c.ToString());
}

[TestFixtureSource(typeof(BackendDevices), nameof(BackendDevices.Fixtures))]
public sealed class GemmTests : DeviceFixture
{
    public GemmTests(string deviceName) : base(deviceName) { }

    [TestCaseSource(typeof(GemmCase), nameof(GemmCase.Shapes))]
    public void Gemm_TilingBreakingShapesAndTransposes_MatchFloat64Reference(GemmCase c) => RunAndCheck(c);

    [TestCaseSource(typeof(GemmCase), nameof(GemmCase.Scalars))]
    public void Gemm_AlphaAndBeta_ScaleProductAndAccumulateIntoC(GemmCase c) => RunAndCheck(c);

    [TestCaseSource(typeof(GemmCase), nameof(GemmCase.BetaZeroOverNaN))]
    public void Gemm_BetaZero_NeverReadsC(GemmCase c) => RunAndCheck(c);

    [TestCaseSource(typeof(GemmCase), nameof(GemmCase.PaddedLeadingDimensions))]
    public void Gemm_LeadingDimensionsLargerThanRows_UseOnlyTheLogicalMatrixAndKeepCPadding(GemmCase c) => RunAndCheck(c);

    [TestCaseSource(typeof(GemmCase), nameof(GemmCase.EmptyInnerDimension))]
    public void Gemm_KZero_GivesBetaTimesC(GemmCase c) => RunAndCheck(c);

    [TestCaseSource(typeof(GemmCase), nameof(GemmCase.Batched))]
    public void Gemm_BatchedWithStrides_MatchesEachBatchAndZeroStrideReusesOperand(GemmCase c) => RunAndCheck(c);

    [TestCase(0, 33, 7)]
    [TestCase(7, 0, 7)]
    [TestCase(0, 0, 0)]
    public void Gemm_MOrNZero_LeavesCUntouched(long m, long n, long k)
    {
        // The operands are sized for the non-zero dimensions only; C is a small buffer of sentinels
        // that must come back bit for bit.
        using var a = DeviceBuffer.FromArray(Device, TestData.Uniform(Math.Max(1, m * k), -1, 1, "gemm-empty-a"));
        using var b = DeviceBuffer.FromArray(Device, TestData.Uniform(Math.Max(1, k * n), -1, 1, "gemm-empty-b"));
        using var c = Guarded.Output(Device, 5);
        Ops.Gemm(Transpose.NoTranspose, Transpose.NoTranspose, m, n, k, 1, a, Math.Max(1, k), b, Math.Max(1, n), 0, c, Math.Max(1, n));
        Expect.Identical(Guarded.Read(c, 5, "C"), TestData.Filled(5, Guarded.Sentinel), $"C after a {m}x{n}x{k} GEMM");
    }

    [Test]
    public void MatMul_TwoByTwo_GivesTheTextbookProduct()
    {
        using var a = DeviceBuffer.FromArray(Device, new float[] { 1, 2, 3, 4 });
        using var b = DeviceBuffer.FromArray(Device, new float[] { 5, 6, 7, 8 });
        using var c = Guarded.Output(Device, 4);
        Ops.MatMul(a, b, c, 2, 2, 2);
        Expect.Identical(Guarded.Read(c, 4, "C"), new float[] { 19, 22, 43, 50 }, "[[1,2],[3,4]] x [[5,6],[7,8]]");
    }

    [Test]
    public void MatMul_OddShape_MatchesGemmWithDefaults()
    {
        var c = new GemmCase(37, 19, 23);
        float[] a = TestData.Uniform(c.M * c.K, -1, 1, "matmul-a"), b = TestData.Uniform(c.K * c.N, -1, 1, "matmul-b");
        using var ab = DeviceBuffer.FromArray(Device, a);
        using var bb = DeviceBuffer.FromArray(Device, b);
        using var cb = Guarded.Output(Device, c.M * c.N);
        Ops.MatMul(ab, bb, cb, c.M, c.N, c.K);
        float[] actual = Guarded.Read(cb, c.M * c.N, "C");
        (double[] expected, double[] tolerance) = Reference(c, a, b, TestData.Filled(c.M * c.N, float.NaN));
        Expect.AllClose(actual, expected, tolerance, $"MatMul {c.M}x{c.N}x{c.K} on {DeviceName}");
    }

    private void RunAndCheck(GemmCase c)
    {
        string seed = c.ToString();
        float[] a = WithNaNPadding(TestData.Uniform(c.ElementsA, -1, 1, seed + "a"), c.ARows, c.ACols, c.Lda, c.StrideA, c.Batch);
        float[] b = WithNaNPadding(TestData.Uniform(c.ElementsB, -1, 1, seed + "b"), c.BRows, c.BCols, c.Ldb, c.StrideB, c.Batch);
        float[] c0 = c.InitialC == GemmInitialC.NaN
            ? TestData.Filled(c.ElementsC, float.NaN)
            : TestData.Uniform(c.ElementsC, -1, 1, seed + "c");

        using var ab = DeviceBuffer.FromArray(Device, a);
        using var bb = DeviceBuffer.FromArray(Device, b);
        using var cb = Guarded.Output(Device, c0);
        Ops.Gemm(c.TransA, c.TransB, c.M, c.N, c.K, c.Alpha, ab, c.Lda, bb, c.Ldb, c.Beta, cb, c.Ldc,
                 c.Batch, c.StrideA, c.StrideB, c.StrideC);
        float[] actual = Guarded.Read(cb, c.ElementsC, "C");

        (double[] expected, double[] tolerance) = Reference(c, a, b, c0);
        Expect.AllClose(actual, expected, tolerance, $"GEMM {c} on {DeviceName}");
    }

    /// <summary>
    /// The float64 product and a per-element tolerance. Tolerance: a float32 dot product of length k,
    /// summed in any order (blocked, tree, FMA or not), is within gamma_k = k*u/(1-k*u) of the exact
    /// value relative to sum_p |a_ip b_pj| (Higham, Accuracy and Stability, 3.1); scaling by alpha
    /// and adding beta*C cost a few more roundings. So |c - ref| &lt;= (k+4) u (|alpha| sum|a||b| +
    /// |beta c0|), u = 2^-24. It is the worst case; typical errors are far smaller, yet it fails a
    /// wrong index (an error the size of one product, ~0.25 here, against a tolerance of ~2e-4 at
    /// k=129) and TF32 or half-precision inputs (relative error 2^-11 per product).
    /// Elements of C outside the logical matrices (padding, gaps between batches) must be unchanged.
    /// </summary>
    private static (double[] Expected, double[] Tolerance) Reference(GemmCase c, float[] a, float[] b, float[] c0)
    {
        var expected = new double[c.ElementsC];
        var tolerance = new double[c.ElementsC];
        for (long i = 0; i < c0.Length; i++) expected[i] = c0[i];   // untouched unless written below

        bool ta = c.TransA == Transpose.Transpose, tb = c.TransB == Transpose.Transpose;
        double gamma = (c.K + 4) * TestData.Unit;
        for (long batch = 0; batch < c.Batch; batch++)
        {
            long baseA = batch * c.StrideA, baseB = batch * c.StrideB, baseC = batch * c.StrideC;
            for (long i = 0; i < c.M; i++)
            {
                for (long j = 0; j < c.N; j++)
                {
                    double sum = 0, magnitude = 0;
                    for (long p = 0; p < c.K; p++)
                    {
                        double av = a[baseA + (ta ? p * c.Lda + i : i * c.Lda + p)];
                        double bv = b[baseB + (tb ? j * c.Ldb + p : p * c.Ldb + j)];
                        sum += av * bv;
                        magnitude += Math.Abs(av * bv);
                    }
                    long ci = baseC + i * c.Ldc + j;
                    double previous = c.Beta == 0 ? 0 : (double)c.Beta * c0[ci];
                    expected[ci] = c.Alpha * sum + previous;
                    tolerance[ci] = gamma * (Math.Abs(c.Alpha) * magnitude + Math.Abs(previous)) + 1e-37;
                }
            }
        }
        return (expected, tolerance);
    }

    /// <summary>Sets every element outside the logical rows x cols matrices (row padding past cols,
    /// gaps between batches) to NaN.</summary>
    private static float[] WithNaNPadding(float[] data, long rows, long cols, long ld, long stride, long batch)
    {
        var used = new bool[data.Length];
        long batches = stride == 0 ? 1 : batch;
        for (long t = 0; t < batches; t++)
            for (long r = 0; r < rows; r++)
                for (long col = 0; col < cols; col++)
                    used[t * stride + r * ld + col] = true;
        for (long i = 0; i < data.Length; i++)
            if (!used[i]) data[i] = float.NaN;
        return data;
    }
}
