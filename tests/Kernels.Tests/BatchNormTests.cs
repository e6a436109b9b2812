// Batch normalization on every device: training forward (batch statistics, running-statistics update,
// saved mean and 1/std), inference forward, and backward in both modes, against float64 references
// written here; 1-D (spatial 1) and 2-D, a single value per channel, values around 1e4 with unit
// spread (which E[x^2] - E[x]^2 in float32 cannot normalise); error paths.
using Kernels.Tests.Support;
using NUnit.Framework;

namespace Kernels.Tests;

/// <summary>x is [Batch, Channels, Spatial]; values offset + per-channel shift + spread * U(-1, 1).</summary>
public sealed record BatchNormCase(string Name, long Batch, long Channels, long Spatial, double Offset = 0, double Spread = 1)
{
    public long Count => Batch * Channels * Spatial;
    public long M => Batch * Spatial;

    public override string ToString() => Name;

    public float[] Inputs(string seed)
    {
        float[] u = TestData.Uniform(Count, -1, 1, seed);
        float[] shift = TestData.Uniform(Channels, -1, 1, seed + " shift");
        var x = new float[Count];
        for (long i = 0; i < Count; i++)
        {
            long c = i / Spatial % Channels;
            x[i] = (float)(Offset + (Offset == 0 ? shift[c] : 0) + Spread * (0.5 + 0.5 * (c % 3)) * u[i]);
        }
        return x;
    }

    public static readonly BatchNormCase[] All =
    {
        new("2-D 4x3x(5x7)", 4, 3, 35),
        new("1-D 16x5", 16, 5, 1),
        new("short spatial 7x3x4", 7, 3, 4),
        new("one value per channel 1x4x1", 1, 4, 1),
        new("many channels 9x600x1", 9, 600, 1),
        new("odd spatial 2x3x1023", 2, 3, 1023),
        new("offset 1e4, 2-D", 8, 3, 100, 1e4, 1),
        new("offset 1e4, 1-D", 64, 4, 1, 1e4, 1),
    };
}

/// <summary>
/// Tolerances (eps = 2^-23, L = ceil(log2 m), m = batch * spatial) are those of a float32 two-pass
/// implementation with pairwise (or better) sums: mean (L + 4) eps mean|x|; variance (L + 6) eps var
/// plus the mean's error squared; 1/std from the variance's; y = (x - mean) 1/std gamma + beta
/// carries those through plus 6 eps of its terms. Backward: dbeta (L + 4) eps sum|dy|, dgamma
/// (L + 6) eps sum|dy xhat|, and dx 6 eps on each of its three terms plus the two sums' errors.
/// </summary>
[TestFixtureSource(typeof(BackendDevices), nameof(BackendDevices.Fixtures))]
public sealed class BatchNormTests : DeviceFixture
{
    public BatchNormTests(string deviceName) : base(deviceName) { }

    private const double Eps = 2 * TestData.Unit;
    private const float VarianceEps = 1e-5f;
    private const float Momentum = 0.1f;

    public static IEnumerable<TestCaseData> Cases() =>
        BatchNormCase.All.Select(c => new TestCaseData(c).SetArgDisplayNames(c.Name));

    public static IEnumerable<TestCaseData> CasesBothModes() =>
        from c in BatchNormCase.All
        from training in new[] { true, false }
        select new TestCaseData(c, training).SetArgDisplayNames(c.Name, training ? "training" : "inference");

    private static double Levels(long m) => Math.Ceiling(Math.Log2(Math.Max(m, 1)));

    private static (double[] Mean, double[] Var, double[] MeanAbs) Statistics(BatchNormCase c, float[] x)
    {
        var mean = new double[c.Channels];
        var variance = new double[c.Channels];
        var meanAbs = new double[c.Channels];
        for (long i = 0; i < c.Count; i++)
        {
            mean[i / c.Spatial % c.Channels] += x[i];
            meanAbs[i / c.Spatial % c.Channels] += Math.Abs(x[i]);
        }
        for (long ch = 0; ch < c.Channels; ch++)
        {
            mean[ch] /= c.M;
            meanAbs[ch] /= c.M;
        }
        for (long i = 0; i < c.Count; i++)
        {
            double d = x[i] - mean[i / c.Spatial % c.Channels];
            variance[i / c.Spatial % c.Channels] += d * d;
        }
        for (long ch = 0; ch < c.Channels; ch++) variance[ch] /= c.M;
        return (mean, variance, meanAbs);
    }

    [TestCaseSource(nameof(Cases))]
    public void TrainingForward_NormalisesAndUpdatesRunningStatistics(BatchNormCase c)
    {
        float[] x = c.Inputs($"bn x {c}");
        float[] gamma = TestData.Uniform(c.Channels, -1.5, 1.5, $"bn gamma {c}");
        float[] beta = TestData.Uniform(c.Channels, -1, 1, $"bn beta {c}");
        float[] runningMean = TestData.Uniform(c.Channels, -1, 1, $"bn running mean {c}");
        float[] runningVar = TestData.Uniform(c.Channels, 0.5, 2, $"bn running var {c}");
        using var xb = DeviceBuffer.FromArray(Device, x);
        using var yb = Guarded.Output(Device, c.Count);
        using var gb = DeviceBuffer.FromArray(Device, gamma);
        using var bb = DeviceBuffer.FromArray(Device, beta);
        using var rmb = Guarded.Output(Device, runningMean);
        using var rvb = Guarded.Output(Device, runningVar);
        using var smb = Guarded.Output(Device, c.Channels);
        using var sib = Guarded.Output(Device, c.Channels);
        LayerSupport.Run(Device, () => Ops.BatchNorm(xb, yb, gb, bb, rmb, rvb, smb, sib, c.Batch, c.Channels, c.Spatial,
            VarianceEps, Momentum, training: true));

        var (mean, variance, meanAbs) = Statistics(c, x);
        double levels = Levels(c.M);
        long ch = c.Channels;
        var meanTol = new double[ch];
        var invstd = new double[ch];
        var invstdTol = new double[ch];
        var rmWant = new double[ch];
        var rmTol = new double[ch];
        var rvWant = new double[ch];
        var rvTol = new double[ch];
        double unbiased = c.M > 1 ? (double)c.M / (c.M - 1) : 1;
        for (long k = 0; k < ch; k++)
        {
            meanTol[k] = (levels + 4) * Eps * meanAbs[k];
            double varTol = (levels + 6) * Eps * variance[k] + meanTol[k] * meanTol[k];
            invstd[k] = 1 / Math.Sqrt(variance[k] + VarianceEps);
            invstdTol[k] = invstd[k] * (varTol / (2 * (variance[k] + VarianceEps)) + 4 * Eps);
            rmWant[k] = (1 - Momentum) * (double)runningMean[k] + Momentum * mean[k];
            rmTol[k] = Momentum * meanTol[k] + 4 * Eps * (Math.Abs((1 - Momentum) * runningMean[k]) + Math.Abs(Momentum * mean[k]));
            rvWant[k] = (1 - Momentum) * (double)runningVar[k] + Momentum * variance[k] * unbiased;
            rvTol[k] = Momentum * unbiased * varTol + 4 * Eps * (Math.Abs((1 - Momentum) * runningVar[k]) + Math.Abs(Momentum * variance[k] * unbiased));
        }
        var want = new double[c.Count];
        var tol = new double[c.Count];
        for (long i = 0; i < c.Count; i++)
        {
            long k = i / c.Spatial % ch;
            double d = x[i] - mean[k], xhat = d * invstd[k];
            want[i] = xhat * gamma[k] + beta[k];
            tol[i] = Math.Abs(gamma[k]) * (meanTol[k] * invstd[k] + Math.Abs(d) * invstdTol[k]) +
                     6 * Eps * (Math.Abs(xhat * gamma[k]) + Math.Abs(beta[k]));
        }
        Expect.AllClose(Guarded.Read(yb, c.Count, "y"), want, tol, $"batch norm y {c} on {DeviceName}");
        Expect.AllClose(Guarded.Read(smb, ch, "save_mean"), mean, meanTol, $"save_mean {c}");
        Expect.AllClose(Guarded.Read(sib, ch, "save_invstd"), invstd, invstdTol, $"save_invstd {c}");
        Expect.AllClose(Guarded.Read(rmb, ch, "running_mean"), rmWant, rmTol, $"running_mean {c}");
        Expect.AllClose(Guarded.Read(rvb, ch, "running_var"), rvWant, rvTol, $"running_var {c}");
        LayerSupport.Unchanged(xb, x, "x");
    }

    [TestCaseSource(nameof(Cases))]
    public void InferenceForward_UsesRunningStatisticsAndLeavesThemAlone(BatchNormCase c)
    {
        float[] x = c.Inputs($"bn x {c}");
        float[] gamma = TestData.Uniform(c.Channels, -1.5, 1.5, $"bn gamma {c}");
        float[] beta = TestData.Uniform(c.Channels, -1, 1, $"bn beta {c}");
        // Running statistics near the data's, as after training (around the offset for the 1e4 cases).
        float[] runningMean = TestData.Uniform(c.Channels, c.Offset - 1, c.Offset + 1, $"bn running mean {c}");
        float[] runningVar = TestData.Uniform(c.Channels, 0.5, 2, $"bn running var {c}");
        using var xb = DeviceBuffer.FromArray(Device, x);
        using var yb = Guarded.Output(Device, c.Count);
        using var gb = DeviceBuffer.FromArray(Device, gamma);
        using var bb = DeviceBuffer.FromArray(Device, beta);
        using var rmb = DeviceBuffer.FromArray(Device, runningMean);
        using var rvb = DeviceBuffer.FromArray(Device, runningVar);
        using var smb = Guarded.Output(Device, c.Channels);
        using var sib = Guarded.Output(Device, c.Channels);
        LayerSupport.Run(Device, () => Ops.BatchNorm(xb, yb, gb, bb, rmb, rvb, smb, sib, c.Batch, c.Channels, c.Spatial,
            VarianceEps, Momentum, training: false));

        var invstd = new double[c.Channels];
        for (long k = 0; k < c.Channels; k++) invstd[k] = 1 / Math.Sqrt((double)runningVar[k] + VarianceEps);
        var want = new double[c.Count];
        var tol = new double[c.Count];
        for (long i = 0; i < c.Count; i++)
        {
            long k = i / c.Spatial % c.Channels;
            double xhat = (x[i] - (double)runningMean[k]) * invstd[k];
            want[i] = xhat * gamma[k] + beta[k];
            tol[i] = 8 * Eps * Math.Abs(xhat * gamma[k]) + 6 * Eps * Math.Abs(beta[k]);
        }
        Expect.AllClose(Guarded.Read(yb, c.Count, "y"), want, tol, $"batch norm inference y {c} on {DeviceName}");
        Expect.Identical(Guarded.Read(smb, c.Channels, "save_mean"), runningMean, "save_mean = running_mean");
        Expect.AllClose(Guarded.Read(sib, c.Channels, "save_invstd"), invstd, invstd.Select(v => 4 * Eps * v).ToArray(), "save_invstd");
        LayerSupport.Unchanged(rmb, runningMean, "running_mean");
        LayerSupport.Unchanged(rvb, runningVar, "running_var");
    }

    [TestCaseSource(nameof(CasesBothModes))]
    public void Backward_MatchesFloat64Reference(BatchNormCase c, bool training)
    {
        float[] x = c.Inputs($"bn backward x {c}");
        float[] dy = TestData.Uniform(c.Count, -1, 1, $"bn backward dy {c}");
        float[] gamma = TestData.Uniform(c.Channels, -1.5, 1.5, $"bn backward gamma {c}");
        var (mean, variance, _) = Statistics(c, x);
        float[] saveMean = mean.Select(v => (float)v).ToArray();
        float[] saveInvStd = variance.Select(v => (float)(1 / Math.Sqrt(v + VarianceEps))).ToArray();
        using var xb = DeviceBuffer.FromArray(Device, x);
        using var dyb = DeviceBuffer.FromArray(Device, dy);
        using var gb = DeviceBuffer.FromArray(Device, gamma);
        using var smb = DeviceBuffer.FromArray(Device, saveMean);
        using var sib = DeviceBuffer.FromArray(Device, saveInvStd);
        using var dxb = Guarded.Output(Device, TestData.Filled(c.Count, float.NaN));
        using var dgb = Guarded.Output(Device, TestData.Filled(c.Channels, float.NaN));
        using var dbb = Guarded.Output(Device, TestData.Filled(c.Channels, float.NaN));
        LayerSupport.Run(Device, () => Ops.BatchNormBackward(xb, dyb, gb, smb, sib, dxb, dgb, dbb, c.Batch, c.Channels, c.Spatial, training));

        long ch = c.Channels;
        double levels = Levels(c.M), m = c.M;
        var dbeta = new double[ch];
        var dgamma = new double[ch];
        var dbetaAbs = new double[ch];
        var dgammaAbs = new double[ch];
        double Xhat(long i) => (x[i] - (double)saveMean[i / c.Spatial % ch]) * saveInvStd[i / c.Spatial % ch];
        for (long i = 0; i < c.Count; i++)
        {
            long k = i / c.Spatial % ch;
            dbeta[k] += dy[i];
            dbetaAbs[k] += Math.Abs(dy[i]);
            dgamma[k] += dy[i] * Xhat(i);
            dgammaAbs[k] += Math.Abs(dy[i] * Xhat(i));
        }
        double[] dbetaTol = dbetaAbs.Select(a => (levels + 4) * Eps * a).ToArray();
        double[] dgammaTol = dgammaAbs.Select(a => (levels + 6) * Eps * a).ToArray();
        Expect.AllClose(Guarded.Read(dgb, ch, "dgamma"), dgamma, dgammaTol, $"dgamma {c} on {DeviceName}");
        Expect.AllClose(Guarded.Read(dbb, ch, "dbeta"), dbeta, dbetaTol, $"dbeta {c} on {DeviceName}");

        var want = new double[c.Count];
        var tol = new double[c.Count];
        for (long i = 0; i < c.Count; i++)
        {
            long k = i / c.Spatial % ch;
            double a = (double)gamma[k] * saveInvStd[k], xh = Xhat(i);
            if (training)
            {
                want[i] = a * (dy[i] - dbeta[k] / m - xh * dgamma[k] / m);
                tol[i] = Math.Abs(a) * (6 * Eps * (Math.Abs(dy[i]) + Math.Abs(dbeta[k]) / m + Math.Abs(xh * dgamma[k]) / m) +
                                        dbetaTol[k] / m + Math.Abs(xh) * dgammaTol[k] / m);
            }
            else
            {
                want[i] = a * dy[i];
                tol[i] = 4 * Eps * Math.Abs(want[i]);
            }
        }
        Expect.AllClose(Guarded.Read(dxb, c.Count, "dx"), want, tol, $"batch norm dx {c} ({(training ? "training" : "inference")}) on {DeviceName}");
    }

    /// <summary>The data must really defeat the one-pass formula in float32, or the offset cases prove nothing.</summary>
    [Test]
    public void OffsetCase_DefeatsTheOnePassFormulaInFloat32()
    {
        BatchNormCase c = BatchNormCase.All.First(k => k.Offset == 1e4);
        float[] x = c.Inputs($"bn x {c}");
        var (_, variance, _) = Statistics(c, x);
        float sum = 0, sumSquares = 0;
        for (long i = 0; i < c.Count; i += c.Spatial * c.Channels)   // channel 0 of every image
            for (long s = 0; s < c.Spatial; s++)
            {
                sum += x[i + s];
                sumSquares += x[i + s] * x[i + s];
            }
        float onePass = sumSquares / c.M - sum / c.M * (sum / c.M);
        Assert.That(Math.Abs(onePass - variance[0]), Is.GreaterThan(0.5 * variance[0]),
            "E[x^2] - E[x]^2 in float32 must be far off on this data");
    }

    [Test]
    public void TrainingWithNoValues_ThrowsShapeMismatch()
    {
        using var b = DeviceBuffer.Allocate(Device, 64 * sizeof(float));
        var error = Assert.Throws<ShapeMismatchException>(() =>
            Ops.BatchNorm(b, b, b, b, null, null, null, null, 0, 3, 5, VarianceEps, Momentum, training: true));
        Assert.That(error!.Message, Does.Contain("batch = 0"));
    }

    [Test]
    public void InferenceWithoutRunningStatistics_ThrowsKernelsArgumentException()
    {
        using var b = DeviceBuffer.Allocate(Device, 64 * sizeof(float));
        var error = Assert.Throws<KernelsArgumentException>(() =>
            Ops.BatchNorm(b, b, b, b, null, null, null, null, 2, 3, 5, VarianceEps, Momentum, training: false));
        Assert.That(error!.Message, Does.Contain("running_mean"));
    }

    [Test]
    public void GammaBufferTooSmall_ThrowsShapeMismatchNamingItAndTheShape()
    {
        using var b = DeviceBuffer.Allocate(Device, 4096 * sizeof(float));
        using var small = DeviceBuffer.Allocate(Device, 8 * sizeof(float));
        var error = Assert.Throws<ShapeMismatchException>(() =>
            Ops.BatchNorm(b, b, small, b, null, null, null, null, 2, 30, 5, VarianceEps, Momentum, training: true));
        Assert.That(error!.Message, Does.Contain("'gamma'").And.Contain("[2, 30, 5]"));
    }

    [Test]
    public void BackwardDxBufferTooSmall_ThrowsShapeMismatch()
    {
        using var b = DeviceBuffer.Allocate(Device, 4096 * sizeof(float));
        using var small = DeviceBuffer.Allocate(Device, 8 * sizeof(float));
        var error = Assert.Throws<ShapeMismatchException>(() =>
            Ops.BatchNormBackward(b, b, b, b, b, small, b, b, 3, 4, 5, training: true));
        Assert.That(error!.Message, Does.Contain("'dx'").And.Contain("[3, 4, 5]"));
    }
}
