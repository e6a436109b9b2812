// Element-wise comparison against a float64 reference, with a tolerance per element, and output
// buffers with guard elements after them.
using System.Globalization;
using System.Text;
using NUnit.Framework;

namespace Kernels.Tests.Support;

public static class Expect
{
    /// <summary>
    /// Asserts |actual[i] - expected[i]| &lt;= tolerance[i] for every i. A NaN expected value needs
    /// a NaN; an infinite one needs the same infinity; a NaN or infinite actual value where a finite
    /// one is expected always fails. The message names how many elements failed, the first and the
    /// worst (by |error| / tolerance), with all the numbers.
    /// </summary>
    public static void AllClose(float[] actual, double[] expected, double[] tolerance, string what)
    {
        Assert.That(actual, Has.Length.EqualTo(expected.Length), $"{what}: element count");
        int failures = 0, first = -1, worst = -1;
        double worstRatio = 0;
        for (int i = 0; i < actual.Length; i++)
        {
            double e = expected[i], a = actual[i];
            bool ok;
            if (double.IsNaN(e)) ok = double.IsNaN(a);
            else if (double.IsInfinity(e)) ok = a == e;
            else ok = Math.Abs(a - e) <= tolerance[i];   // false for a NaN a
            if (ok) continue;

            failures++;
            if (first < 0) first = i;
            double ratio = double.IsFinite(a) && double.IsFinite(e) && tolerance[i] > 0
                ? Math.Abs(a - e) / tolerance[i]
                : double.PositiveInfinity;
            if (worst < 0 || ratio > worstRatio)
            {
                worst = i;
                worstRatio = ratio;
            }
        }
        if (failures == 0) return;

        var message = new StringBuilder();
        message.Append(CultureInfo.InvariantCulture, $"{what}: {failures} of {actual.Length} elements outside tolerance");
        message.Append("; first ").Append(Describe(first, actual, expected, tolerance));
        if (worst != first) message.Append("; worst ").Append(Describe(worst, actual, expected, tolerance));
        Assert.Fail(message.ToString());
    }

    /// <summary>Exact comparison (integers, indices, values that must come through untouched).</summary>
    public static void Equal(long[] actual, long[] expected, string what)
    {
        Assert.That(actual, Has.Length.EqualTo(expected.Length), $"{what}: element count");
        int failures = 0, first = -1;
        for (int i = 0; i < actual.Length; i++)
        {
            if (actual[i] == expected[i]) continue;
            failures++;
            if (first < 0) first = i;
        }
        if (failures > 0)
            Assert.Fail($"{what}: {failures} of {actual.Length} elements differ; first at [{first}]: got {actual[first]}, expected {expected[first]}");
    }

    /// <summary>Bit-exact float comparison (NaN equals NaN).</summary>
    public static void Identical(float[] actual, float[] expected, string what)
    {
        Assert.That(actual, Has.Length.EqualTo(expected.Length), $"{what}: element count");
        for (int i = 0; i < actual.Length; i++)
        {
            if (BitConverter.SingleToInt32Bits(actual[i]) != BitConverter.SingleToInt32Bits(expected[i]) &&
                !(float.IsNaN(actual[i]) && float.IsNaN(expected[i])))
                Assert.Fail(string.Create(CultureInfo.InvariantCulture,
                    $"{what}: element [{i}] is {actual[i]:R}, expected {expected[i]:R} (first difference of {actual.Length} elements)"));
        }
    }

    private static string Describe(int i, float[] actual, double[] expected, double[] tolerance) =>
        string.Create(CultureInfo.InvariantCulture,
            $"at [{i}]: got {actual[i]:R}, expected {expected[i]:G10}, |error| {Math.Abs(actual[i] - expected[i]):G3} > tolerance {tolerance[i]:G3}");
}

/// <summary>
/// Output buffers followed by guard elements holding a sentinel, written from the host (not with a
/// kernel under test). A kernel that writes past the end of its output (a vector store or a tile
/// that spills over) changes a guard and fails the test, even where the buffer was big enough for
/// the spill not to crash. (ggml's test-backend-ops puts sentinels after each output the same way.)
/// </summary>
public static class Guarded
{
    /// <summary>Odd and larger than any SIMD width or work-group tail a kernel might spill.</summary>
    public const int GuardElements = 37;

    /// <summary>A finite value no test produces.</summary>
    public const float Sentinel = -12345.6789f;

    /// <summary>count floats of sentinel plus the guard.</summary>
    public static DeviceBuffer Output(Device device, long count) =>
        Output(device, TestData.Filled(count, Sentinel));

    /// <summary>The given initial contents plus the guard.</summary>
    public static DeviceBuffer Output(Device device, float[] initial)
    {
        var all = new float[initial.Length + GuardElements];
        initial.CopyTo(all, 0);
        Array.Fill(all, Sentinel, initial.Length, GuardElements);
        return DeviceBuffer.FromArray(device, all);
    }

    /// <summary>Reads the first count floats after checking that the guard is intact.</summary>
    public static float[] Read(DeviceBuffer buffer, long count, string what)
    {
        float[] all = buffer.ToArray();
        Assert.That(all, Has.Length.EqualTo(count + GuardElements), $"{what}: buffer length");
        for (long i = count; i < all.Length; i++)
        {
            if (BitConverter.SingleToInt32Bits(all[i]) != BitConverter.SingleToInt32Bits(Sentinel))
                Assert.Fail(string.Create(CultureInfo.InvariantCulture,
                    $"{what}: the kernel wrote past the end of its output: guard element {i - count} (index {i}) is {all[i]:R}"));
        }
        return all[..(int)count];
    }

    /// <summary>An int64 output (indices) with a guard: count + guard elements of -7.</summary>
    public static DeviceBuffer IndexOutput(Device device, long count)
    {
        var all = new long[count + GuardElements];
        Array.Fill(all, -7L);
        var buffer = DeviceBuffer.Allocate(device, all.Length * sizeof(long));
        buffer.Write<long>(all);
        return buffer;
    }

    public static long[] ReadIndices(DeviceBuffer buffer, long count, string what)
    {
        long[] all = buffer.ToInt64Array();
        Assert.That(all, Has.Length.EqualTo(count + GuardElements), $"{what}: buffer length");
        for (long i = count; i < all.Length; i++)
        {
            if (all[i] != -7L)
                Assert.Fail($"{what}: the kernel wrote past the end of its output: guard element {i - count} is {all[i]}");
        }
        return all[..(int)count];
    }
}
