// float64 reference math that .NET does not provide (erf, the normal CDF) and NumPy broadcasting,
// written independently of the library so that the tests check it rather than repeat it.
namespace Kernels.Tests.Support;

public static class Reference
{
    private static readonly double TwoOverSqrtPi = 2.0 / Math.Sqrt(Math.PI);

    /// <summary>erf in float64. For |z| &lt; 3 the series
    /// erf(z) = 2/sqrt(pi) e^(-z^2) sum_n z (2z^2)^n / (1*3*...*(2n+1)),
    /// whose terms are all of one sign (no cancellation, ~1e-15 relative); beyond, 1 - erfc(z).</summary>
    public static double Erf(double z)
    {
        if (double.IsNaN(z)) return double.NaN;
        if (Math.Abs(z) >= 3) return Math.Sign(z) * (1 - Erfc(Math.Abs(z)));
        double term = z, sum = z, twoZ2 = 2 * z * z;
        for (int n = 1; n < 200 && Math.Abs(term) > 1e-18 * Math.Abs(sum); n++)
        {
            term *= twoZ2 / (2 * n + 1);
            sum += term;
        }
        return TwoOverSqrtPi * Math.Exp(-z * z) * sum;
    }

    /// <summary>erfc in float64, accurate in relative terms in the tail: for z &gt;= 3 the
    /// continued fraction erfc(z) = e^(-z^2)/sqrt(pi) / (z + (1/2)/(z + 1/(z + (3/2)/(z + ...)))),
    /// evaluated bottom-up with 80 levels (converged to double precision for z &gt;= 3).</summary>
    public static double Erfc(double z)
    {
        if (z < 3) return 1 - Erf(z);
        double k = z;
        for (int n = 80; n >= 1; n--) k = z + n / 2.0 / k;
        return Math.Exp(-z * z) / (Math.Sqrt(Math.PI) * k);
    }

    /// <summary>The standard normal CDF Phi(x) = erfc(-x / sqrt 2) / 2, accurate in the left tail.</summary>
    public static double NormalCdf(double x) => 0.5 * Erfc(-x / Math.Sqrt(2));

    /// <summary>The standard normal density phi(x).</summary>
    public static double NormalPdf(double x) => Math.Exp(-0.5 * x * x) / Math.Sqrt(2 * Math.PI);

    public static double Sigmoid(double x) => x >= 0 ? 1 / (1 + Math.Exp(-x)) : Math.Exp(x) / (1 + Math.Exp(x));

    /// <summary>ln(1 + e^x) without overflow.</summary>
    public static double Softplus(double x) => Math.Max(x, 0) + Math.Log(1 + Math.Exp(-Math.Abs(x)));

    /// <summary>NumPy broadcasting: align at the last dimension; sizes equal or one of them 1.
    /// Null when the shapes do not broadcast.</summary>
    public static long[]? BroadcastShape(IReadOnlyList<long> a, IReadOnlyList<long> b)
    {
        int rank = Math.Max(a.Count, b.Count);
        var shape = new long[rank];
        for (int d = 0; d < rank; d++)
        {
            int ai = d - (rank - a.Count), bi = d - (rank - b.Count);
            long ad = ai >= 0 ? a[ai] : 1, bd = bi >= 0 ? b[bi] : 1;
            if (ad != bd && ad != 1 && bd != 1) return null;
            shape[d] = ad == 1 ? bd : ad;
        }
        return shape;
    }

    /// <summary>For each element of the broadcast output (row-major), the index it reads in an operand
    /// of the given shape.</summary>
    public static long[] BroadcastIndices(IReadOnlyList<long> operand, IReadOnlyList<long> output)
    {
        int rank = output.Count;
        var strides = new long[rank];   // operand strides aligned to the output; 0 where broadcast
        long stride = 1;
        for (int d = rank - 1; d >= 0; d--)
        {
            int oi = d - (rank - operand.Count);
            long size = oi >= 0 ? operand[oi] : 1;
            strides[d] = size == 1 ? 0 : stride;
            stride *= size;
        }
        long count = TestData.Product(output);
        var indices = new long[count];
        var position = new long[rank];
        for (long linear = 0; linear < count; linear++)
        {
            long offset = 0;
            for (int d = 0; d < rank; d++) offset += position[d] * strides[d];
            indices[linear] = offset;
            for (int d = rank - 1; d >= 0; d--)   // odometer increment
            {
                if (++position[d] < output[d]) break;
                position[d] = 0;
            }
        }
        return indices;
    }
}
