// Softmax and log-softmax over the rows of a [rows, cols] matrix, forward and backward, against float64.
using System.Globalization;
using Kernels.Tests.Support;
using NUnit.Framework;

namespace Kernels.Tests;

public enum SoftmaxLogits
{
    /// <summary>Uniform in [-5, 5].</summary>
    Moderate,
    /// <summary>1000 + uniform in [-20, 20]: e^x overflows float32 unless the row maximum is
    /// subtracted first.</summary>
    AroundThousand,
    /// <summary>Uniform in [-80, 80]: most e^(x - max) underflow.</summary>
    WideSpread,
    /// <summary>Every logit -1e30: the result is uniform (1/cols, log -ln cols).</summary>
    AllMinusHugeValue,
    /// <summary>Every other logit -1e30 (a mask), the rest moderate: the masked ones get exactly 0.</summary>
    HalfMasked,
}

public sealed record SoftmaxCase(long Rows, long Cols, SoftmaxLogits Logits = SoftmaxLogits.Moderate)
{
    public long Count => Rows * Cols;

    public override string ToString() => $"({Rows},{Cols}) {Logits}";

    public float[] Inputs(string seed)
    {
        return Logits switch
        {
            SoftmaxLogits.Moderate => TestData.Uniform(Count, -5, 5, seed),
            SoftmaxLogits.AroundThousand => TestData.Uniform(Count, 980, 1020, seed),
            SoftmaxLogits.WideSpread => TestData.Uniform(Count, -80, 80, seed),
            SoftmaxLogits.AllMinusHugeValue => TestData.Filled(Count, -1e30f),
            SoftmaxLogits.HalfMasked => TestData.Uniform(Count, -5, 5, seed).Select((v, i) => i % 2 == 1 ? -1e30f : v).ToArray(),
            _ => throw new ArgumentOutOfRangeException(nameof(Logits), Logits, null),
        };
    }

    public static readonly SoftmaxCase[] All =
    {
        new(1, 1), new(7, 33), new(128, 1000), new(3, 4099), new(1000, 7), new(0, 5),
        new(1, 1, SoftmaxLogits.AroundThousand), new(7, 33, SoftmaxLogits.AroundThousand), new(4, 1000, SoftmaxLogits.AroundThousand),
        new(5, 257, SoftmaxLogits.WideSpread),
        new(3, 33, SoftmaxLogits.AllMinusHugeValue), new(2, 1000, SoftmaxLogits.AllMinusHugeValue),
        new(5, 65, SoftmaxLogits.HalfMasked),
    };

    public static IEnumerable<TestCaseData> Cases() =>
        from log in new[] { false, true }
        from c in All
        select new TestCaseData(c, log).SetArgDisplayNames(c.ToString(), log ? "log" : "softmax");
}

[TestFixtureSource(typeof(BackendDevices), nameof(BackendDevices.Fixtures))]
public sealed class SoftmaxTests : DeviceFixture
{
    public SoftmaxTests(string deviceName) : base(deviceName) { }

    /// <summary>
    /// Tolerance, with u = 2^-24 and s = (log2 cols + 8) u for a row sum in tree order:
    /// softmax y_i = e^(x_i - m) / S, m the row maximum. e^t for t = x_i - m costs a relative
    /// u (|t| + 2) (the rounding of t is amplified by the exponential); S, a sum of such terms, is
    /// off by s (2 + W), W = sum_j e_j |t_j| / S the average amplification. So
    /// |y - ref| &lt;= y s (2 + W + |t|). log-softmax y_i = t - ln S: the same terms as absolute
    /// errors, plus s |ln S|. Elements that underflow are allowed 1e-37. No NaN or infinity is ever
    /// allowed (the reference has none for finite input). The tolerance has no term in |x| or |m|:
    /// t = x - m must be formed first (kernels.h), since x - (m + ln S) is off by u |m|, which is
    /// 6e-5 for logits around 1000 and everything for rows of -1e30 (it gives 1 instead of 1/cols).
    /// </summary>
    [TestCaseSource(typeof(SoftmaxCase), nameof(SoftmaxCase.Cases))]
    public void Softmax_Forward_MatchesFloat64ReferenceAndStaysFinite(SoftmaxCase c, bool log)
    {
        float[] x = c.Inputs($"softmax {c}");
        using var xb = DeviceBuffer.FromArray(Device, x);
        using var yb = Guarded.Output(Device, c.Count);
        Ops.Softmax(xb, yb, c.Rows, c.Cols, log);
        float[] y = Guarded.Read(yb, c.Count, "y");

        var expected = new double[c.Count];
        var tolerance = new double[c.Count];
        double s = (Math.Log2(Math.Max(c.Cols, 1)) + 8) * TestData.Unit;
        for (long row = 0; row < c.Rows; row++)
        {
            long start = row * c.Cols;
            double m = double.NegativeInfinity;
            for (long j = 0; j < c.Cols; j++) m = Math.Max(m, x[start + j]);
            double sum = 0, weighted = 0;
            for (long j = 0; j < c.Cols; j++)
            {
                double t = x[start + j] - m, e = Math.Exp(t);
                sum += e;
                weighted += e * Math.Abs(t);
            }
            double logSum = Math.Log(sum), amplification = weighted / sum;
            for (long j = 0; j < c.Cols; j++)
            {
                long i = start + j;
                double t = x[i] - m;
                double exponentError = s * (2 + amplification + Math.Abs(t));
                if (log)
                {
                    expected[i] = t - logSum;
                    tolerance[i] = exponentError + s * Math.Abs(logSum) + 1e-37;
                }
                else
                {
                    expected[i] = Math.Exp(t - logSum);
                    tolerance[i] = expected[i] * exponentError + 1e-37;
                }
            }
        }
        Expect.AllClose(y, expected, tolerance, $"{(log ? "log_softmax" : "softmax")} {c} on {DeviceName}");
    }

    /// <summary>
    /// Backward from the float32 forward output y (the float64 reference rounded, so this does not
    /// depend on the forward kernel) and dy uniform in [-1, 1]:
    ///   softmax:     dx = y (dy - sum(dy y)),   tolerance s y (|dy| + sum|dy y|)
    ///   log-softmax: dx = dy - e^y sum(dy),     tolerance s (|dy| + e^y (1 + |y|) sum|dy|)
    /// with s = (log2 cols + 8) u as above (a tree-ordered row sum and a few roundings).
    /// </summary>
    [TestCaseSource(typeof(SoftmaxCase), nameof(SoftmaxCase.Cases))]
    public void SoftmaxBackward_MatchesFloat64Reference(SoftmaxCase c, bool log)
    {
        float[] x = c.Inputs($"softmax {c}");
        float[] y = ForwardRounded(x, c, log);
        float[] dy = TestData.Uniform(c.Count, -1, 1, $"softmax dy {c}");
        using var yb = DeviceBuffer.FromArray(Device, y);
        using var dyb = DeviceBuffer.FromArray(Device, dy);
        using var dxb = Guarded.Output(Device, c.Count);
        Ops.SoftmaxBackward(yb, dyb, dxb, c.Rows, c.Cols, log);
        float[] dx = Guarded.Read(dxb, c.Count, "dx");

        var expected = new double[c.Count];
        var tolerance = new double[c.Count];
        double s = (Math.Log2(Math.Max(c.Cols, 1)) + 8) * TestData.Unit;
        for (long row = 0; row < c.Rows; row++)
        {
            long start = row * c.Cols;
            double dot = 0, dotMagnitude = 0, sum = 0, sumMagnitude = 0;
            for (long j = 0; j < c.Cols; j++)
            {
                double yv = y[start + j], g = dy[start + j];
                dot += g * yv;
                dotMagnitude += Math.Abs(g * yv);
                sum += g;
                sumMagnitude += Math.Abs(g);
            }
            for (long j = 0; j < c.Cols; j++)
            {
                long i = start + j;
                double yv = y[i], g = dy[i];
                if (log)
                {
                    expected[i] = g - Math.Exp(yv) * sum;
                    tolerance[i] = s * (Math.Abs(g) + Math.Exp(yv) * (1 + Math.Abs(yv)) * sumMagnitude) + 1e-37;
                }
                else
                {
                    expected[i] = yv * (g - dot);
                    tolerance[i] = s * Math.Abs(yv) * (Math.Abs(g) + dotMagnitude) + 1e-37;
                }
            }
        }
        Expect.AllClose(dx, expected, tolerance, $"{(log ? "log_softmax" : "softmax")} backward {c} on {DeviceName}");
    }

    [Test]
    public void Softmax_RowsOfMinusHugeValue_AreUniformToARounding()
    {
        // Every logit -1e30: x - max is exactly 0, so each probability is 1/cols (exact in float32
        // for cols a power of two; allowed 2 roundings) and log-softmax is -ln(cols) (4 roundings of
        // ln 64 = 4.16). An implementation forming x - (max + ln S) gets 1 and 0 instead.
        const long cols = 64;
        const long count = 2 * cols;
        using var xb = DeviceBuffer.FromArray(Device, TestData.Filled(count, -1e30f));
        using var yb = Guarded.Output(Device, count);
        Ops.Softmax(xb, yb, 2, cols);
        Expect.AllClose(Guarded.Read(yb, count, "y"), Enumerable.Repeat(1.0 / cols, (int)count).ToArray(),
            Enumerable.Repeat(2 * TestData.Unit / cols, (int)count).ToArray(), "softmax of rows of -1e30");
        Ops.Softmax(xb, yb, 2, cols, log: true);
        Expect.AllClose(Guarded.Read(yb, count, "log y"), Enumerable.Repeat(-Math.Log(cols), (int)count).ToArray(),
            Enumerable.Repeat(4 * TestData.Unit * Math.Log(cols), (int)count).ToArray(), "log_softmax of rows of -1e30");
    }

    private static float[] ForwardRounded(float[] x, SoftmaxCase c, bool log)
    {
        var y = new float[x.Length];
        for (long row = 0; row < c.Rows; row++)
        {
            long start = row * c.Cols;
            double m = double.NegativeInfinity, sum = 0;
            for (long j = 0; j < c.Cols; j++) m = Math.Max(m, x[start + j]);
            for (long j = 0; j < c.Cols; j++) sum += Math.Exp(x[start + j] - m);
            double logSum = Math.Log(sum);
            for (long j = 0; j < c.Cols; j++)
            {
                double t = x[start + j] - m - logSum;
                y[start + j] = (float)(log ? t : Math.Exp(t));
            }
        }
        return y;
    }
}
