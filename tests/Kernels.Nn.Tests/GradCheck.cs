using NUnit.Framework;

namespace Kernels.Nn.Tests;

/// <summary>
/// Gradient checking in float64: the analytic gradient comes from autograd on the library's float32
/// kernels; the numeric one from central differences of a float64 reference implementation of the
/// same function, written here in C#. Loss = sum(w * f(inputs)) with fixed random weights w, so every
/// output element contributes with a different weight.
/// </summary>
internal static class GradCheck
{
    public delegate Tensor TensorFunction(Tensor[] inputs);
    public delegate double[] ReferenceFunction(double[][] inputs);

    public static double[] Random(long n, int seed, double low = -1, double high = 1)
    {
        var r = new Random(seed);
        var v = new double[n];
        for (long i = 0; i < n; i++) v[i] = low + (high - low) * r.NextDouble();
        return v;
    }

    /// <summary>
    /// Checks d(sum(w * f))/d(input) for every input against float64 central differences
    /// (h = 1e-6). Tolerance: |analytic - numeric| &lt;= atol + rtol * |numeric|, with defaults sized for
    /// float32 kernels (relative error ~1e-6 per op, a few ops deep).
    /// </summary>
    public static void Check(TensorFunction f, ReferenceFunction reference, (double[] Values, long[] Shape)[] inputs,
                             Device? device = null, double atol = 2e-3, double rtol = 2e-3, int seed = 99)
    {
        device ??= Device.Cpu;
        using var scope = new DisposeScope();
        var tensors = inputs.Select(i => Tensor.FromArray(i.Values.Select(v => (float)v).ToArray(), i.Shape, device)).ToArray();
        foreach (var t in tensors) t.RequiresGrad = true;
        var output = f(tensors);
        var weights = Random(output.Count, seed);
        var w = Tensor.FromArray(weights.Select(v => (float)v).ToArray(), output.ShapeArray, device);
        output.Mul(w).Sum().Backward();

        var x = inputs.Select(i => (double[])i.Values.Clone()).ToArray();
        double Loss()
        {
            var y = reference(x);
            Assert.That(y, Has.Length.EqualTo(weights.Length), "reference output size differs from the tensor function's");
            double s = 0;
            for (int i = 0; i < y.Length; i++) s += weights[i] * y[i];
            return s;
        }

        const double h = 1e-6;
        for (int k = 0; k < inputs.Length; k++)
        {
            var analytic = tensors[k].Grad?.ToArray() ?? throw new AssertionException($"input {k} received no gradient");
            for (int i = 0; i < x[k].Length; i++)
            {
                double saved = x[k][i];
                x[k][i] = saved + h;
                double plus = Loss();
                x[k][i] = saved - h;
                double minus = Loss();
                x[k][i] = saved;
                double numeric = (plus - minus) / (2 * h);
                Assert.That(Math.Abs(analytic[i] - numeric), Is.LessThanOrEqualTo(atol + rtol * Math.Abs(numeric)),
                    $"d/d input{k}[{i}]: autograd {analytic[i]} vs float64 finite difference {numeric}");
            }
        }
    }

    // ---- float64 reference helpers -----------------------------------------------------------------

    public static double[] Map(double[] x, Func<double, double> f) => x.Select(f).ToArray();

    /// <summary>NumPy broadcasting of two row-major arrays.</summary>
    public static double[] Broadcast(double[] a, long[] aShape, double[] b, long[] bShape, Func<double, double, double> f)
    {
        int rank = Math.Max(aShape.Length, bShape.Length);
        var outShape = new long[rank];
        for (int d = 0; d < rank; d++)
        {
            long ad = d - (rank - aShape.Length) >= 0 ? aShape[d - (rank - aShape.Length)] : 1;
            long bd = d - (rank - bShape.Length) >= 0 ? bShape[d - (rank - bShape.Length)] : 1;
            outShape[d] = Math.Max(ad, bd);
        }
        long n = outShape.Aggregate(1L, (p, d) => p * d);
        var result = new double[n];
        for (long i = 0; i < n; i++)
        {
            long rem = i, ai = 0, bi = 0, aStride = 1, bStride = 1;
            for (int d = rank - 1; d >= 0; d--)
            {
                long idx = rem % outShape[d];
                rem /= outShape[d];
                int ad = d - (rank - aShape.Length), bd = d - (rank - bShape.Length);
                if (ad >= 0) { if (aShape[ad] != 1) ai += idx * aStride; aStride *= aShape[ad]; }
                if (bd >= 0) { if (bShape[bd] != 1) bi += idx * bStride; bStride *= bShape[bd]; }
            }
            result[i] = f(a[ai], b[bi]);
        }
        return result;
    }

    public static double[] MatMul(double[] a, double[] b, long batch, long m, long k, long n, bool sharedB)
    {
        var c = new double[batch * m * n];
        for (long t = 0; t < batch; t++)
            for (long i = 0; i < m; i++)
                for (long j = 0; j < n; j++)
                {
                    double s = 0;
                    for (long p = 0; p < k; p++) s += a[t * m * k + i * k + p] * b[(sharedB ? 0 : t * k * n) + p * n + j];
                    c[t * m * n + i * n + j] = s;
                }
        return c;
    }

    public static double[] Softmax(double[] x, long cols, bool log)
    {
        var y = new double[x.Length];
        for (long r = 0; r < x.Length / cols; r++)
        {
            double max = double.NegativeInfinity;
            for (long c = 0; c < cols; c++) max = Math.Max(max, x[r * cols + c]);
            double sum = 0;
            for (long c = 0; c < cols; c++) sum += Math.Exp(x[r * cols + c] - max);
            for (long c = 0; c < cols; c++)
                y[r * cols + c] = log ? x[r * cols + c] - max - Math.Log(sum) : Math.Exp(x[r * cols + c] - max) / sum;
        }
        return y;
    }

    public static double Erf(double x)
    {
        // Abramowitz-Stegun 7.1.26 is too coarse for a 1e-6 finite difference; use a series/continued fraction.
        double t = Math.Abs(x);
        double result;
        if (t < 3)
        {
            double sum = t, term = t, t2 = t * t;
            for (int n = 1; n < 100; n++)
            {
                term *= -t2 / n;
                double add = term / (2 * n + 1);
                sum += add;
                if (Math.Abs(add) < 1e-17) break;
            }
            result = 2 / Math.Sqrt(Math.PI) * sum;
        }
        else
        {
            double f = 0;
            for (int n = 60; n >= 1; n--) f = n / 2.0 / (t + f);
            result = 1 - Math.Exp(-t * t) / Math.Sqrt(Math.PI) / (t + f);
        }
        return x < 0 ? -result : result;
    }
}
