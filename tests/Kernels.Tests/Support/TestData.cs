// Deterministic test inputs. Every case draws from its own seeded generator (seeded from the case's
// name with a stable hash, not string.GetHashCode, which changes per process), so a failure
// reproduces with the same numbers on every run and every machine.
namespace Kernels.Tests.Support;

public static class TestData
{
    /// <summary>The float32 unit roundoff, 2^-24: the relative error of one correctly rounded
    /// float32 operation. Tolerances below are written as multiples of it.</summary>
    public const double Unit = 1.0 / (1 << 24);

    /// <summary>FNV-1a of the text: a seed that is the same in every process.</summary>
    public static int Seed(string text)
    {
        uint hash = 2166136261;
        foreach (char ch in text)
        {
            hash ^= ch;
            hash *= 16777619;
        }
        return (int)(hash & 0x7fffffff);
    }

    public static float[] Uniform(long count, double low, double high, string seedText)
    {
        var random = new Random(Seed(seedText));
        var values = new float[count];
        for (long i = 0; i < count; i++)
            values[i] = (float)(low + (high - low) * random.NextDouble());
        return values;
    }

    /// <summary>Magnitudes uniform in [minMagnitude, maxMagnitude] with a random sign: inputs that
    /// stay away from zero (a kink, a pole) by a known margin.</summary>
    public static float[] AwayFromZero(long count, double minMagnitude, double maxMagnitude, string seedText)
    {
        var random = new Random(Seed(seedText));
        var values = new float[count];
        for (long i = 0; i < count; i++)
        {
            double magnitude = minMagnitude + (maxMagnitude - minMagnitude) * random.NextDouble();
            values[i] = (float)(random.Next(2) == 0 ? -magnitude : magnitude);
        }
        return values;
    }

    /// <summary>Values drawn from a small set, so that equal values (ties) are common.</summary>
    public static float[] Choice(long count, float[] choices, string seedText)
    {
        var random = new Random(Seed(seedText));
        var values = new float[count];
        for (long i = 0; i < count; i++)
            values[i] = choices[random.Next(choices.Length)];
        return values;
    }

    public static float[] Filled(long count, float value)
    {
        var values = new float[count];
        Array.Fill(values, value);
        return values;
    }

    public static long Product(IReadOnlyList<long> shape)
    {
        long product = 1;
        foreach (long d in shape) product *= d;
        return product;
    }

    public static string ShapeText(IReadOnlyList<long> shape) => "[" + string.Join(", ", shape) + "]";
}
