using System.Diagnostics;
using Kernels.Benchmarks.Cases;

namespace Kernels.Benchmarks.Engine;

/// <summary>How long the interleaved runner spends on each case.</summary>
/// <param name="SampleSeconds">Each timed sample repeats a side's call until at least this long (so timer resolution and one-off stalls do not matter).</param>
/// <param name="MinRounds">Rounds (one sample of each side) always taken.</param>
/// <param name="MaxRounds">Rounds never exceeded.</param>
/// <param name="CaseSeconds">After MinRounds, more rounds while the case has taken less than this.</param>
public sealed record RunnerSettings(double SampleSeconds, int MinRounds, int MaxRounds, double CaseSeconds)
{
    /// <summary>The CI regression mode: ~8-10 s per case.</summary>
    public static RunnerSettings Quick => new(0.02, 15, 61, 6);
    /// <summary>The full interleaved run: more rounds, longer samples.</summary>
    public static RunnerSettings Full => new(0.05, 11, 101, 10);
}

/// <summary>
/// Times a case's two sides alternately in one process: reference, kernels, kernels, reference, ...
/// (the order flips every round so neither side always runs second, after the other warmed or
/// evicted the caches). Every round gives one ratio = reference time / kernels time from two samples
/// taken a few milliseconds apart, so a load change on the machine (other builds on these two
/// cores) hits both sides of most rounds alike and cancels in the ratio. The reported ratio is the
/// median over rounds; the spread is their interquartile range.
/// With one thread (<see cref="Threading"/>) the samples are CPU time instead of wall-clock time, so
/// time spent descheduled counts for neither side.
/// </summary>
public static class InterleavedRunner
{
    public static CaseResult Run(BenchmarkCase benchmark, RunnerSettings settings)
    {
        var total = Stopwatch.StartNew();
        var (clock, clockName) = Threading.ClockFor(benchmark.Device);
        // Warm-up: first calls compile OpenCL programs (ours and CLBlast's), fault in pages, fill caches.
        benchmark.RunKernels();
        benchmark.RunReference();
        int kernelCalls = CallsPerSample(calls => Sample(benchmark.RunKernels, calls, clock), settings.SampleSeconds);
        int referenceCalls = CallsPerSample(calls => Sample(benchmark.RunReference, calls, clock), settings.SampleSeconds);

        var (referenceTimes, kernelTimes) = AlternateRounds(() => Sample(benchmark.RunReference, referenceCalls, clock),
                                                            () => Sample(benchmark.RunKernels, kernelCalls, clock),
                                                            settings, total);
        var ratios = referenceTimes.Zip(kernelTimes, (r, k) => r / k).ToList();
        return CaseResult.From(benchmark, "interleaved", Statistics.Median(kernelTimes), Statistics.Median(referenceTimes),
                               Statistics.Median(ratios), Statistics.Quantile(ratios, 0.25), Statistics.Quantile(ratios, 0.75),
                               ratios.Count) with
        {
            RatioOfMinimums = referenceTimes.Min() / kernelTimes.Min(),
            KernelsSamples = kernelTimes,
            ReferenceSamples = referenceTimes,
            Threads = Threading.Threads,
            Clock = clockName,
        };
    }

    /// <summary>Seconds per call of <paramref name="calls"/> back-to-back calls.</summary>
    static double Sample(Action call, int calls, Func<double> clock)
    {
        double start = clock();
        for (int i = 0; i < calls; i++) call();
        return (clock() - start) / calls;
    }

    /// <summary>
    /// Calls per sample so a sample lasts about <paramref name="seconds"/> (at least one call);
    /// <paramref name="sample"/> times that many calls and returns seconds per call.
    /// </summary>
    internal static int CallsPerSample(Func<int, double> sample, double seconds)
    {
        int calls = 1;
        while (true)
        {
            double perCall = sample(calls);
            if (perCall * calls >= seconds / 4 || calls >= 1 << 20)
                return Math.Max(1, (int)Math.Ceiling(seconds / Math.Max(perCall, 1e-9)));
            calls *= 4;
        }
    }

    /// <summary>
    /// One sample of each side per round, the order flipped every round (first, second, second, first, ...),
    /// until MaxRounds, or CaseSeconds of <paramref name="total"/> once MinRounds are in.
    /// </summary>
    internal static (List<double> First, List<double> Second) AlternateRounds(Func<double> first, Func<double> second,
                                                                              RunnerSettings settings, Stopwatch total)
    {
        var firstTimes = new List<double>();
        var secondTimes = new List<double>();
        for (int round = 0; round < settings.MaxRounds; round++)
        {
            if (round >= settings.MinRounds && total.Elapsed.TotalSeconds > settings.CaseSeconds) break;
            double a, b;
            if (round % 2 == 0) { a = first(); b = second(); }
            else { b = second(); a = first(); }
            firstTimes.Add(a);
            secondTimes.Add(b);
        }
        return (firstTimes, secondTimes);
    }
}

public static class Statistics
{
    public static double Median(IReadOnlyList<double> values) => Quantile(values, 0.5);

    /// <summary>Linear-interpolated quantile (as NumPy's default).</summary>
    public static double Quantile(IReadOnlyList<double> values, double q)
    {
        if (values.Count == 0) return double.NaN;
        var sorted = values.OrderBy(v => v).ToArray();
        double at = q * (sorted.Length - 1);
        int low = (int)Math.Floor(at), high = (int)Math.Ceiling(at);
        return sorted[low] + (sorted[high] - sorted[low]) * (at - low);
    }
}
