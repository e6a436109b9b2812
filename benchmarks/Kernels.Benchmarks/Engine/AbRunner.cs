using System.Diagnostics;
using System.Globalization;
using Kernels.Benchmarks.Cases;

namespace Kernels.Benchmarks.Engine;

/// <summary>
/// The A/B regression check (scripts/ci-bench.sh): one case of the submitted tree's libkernels (new)
/// against the reference commit's (old), on this machine, in this run, timed interleaved
/// (new, old, old, new, ...: the order flips every round, as in <see cref="InterleavedRunner"/>).
///
/// Why two processes: both libraries export the same symbols, and the bindings bind every import to
/// the one library their resolver loads, so one process cannot hold both behind the same C# code.
/// Each side is therefore this program in a child process of its own (`side`), started from a folder
/// that holds its libkernels next to it, exactly as a user's program loads it; it sets the case up once
/// and then runs "sample N" (N back-to-back calls, timed by the case's clock, <see cref="Threading.ClockFor"/>)
/// whenever the parent asks, over stdin/stdout. Only one side runs at a time (the other waits on
/// its pipe), so they never compete for the cores, and each round's two samples are milliseconds
/// apart, so a load change on the machine hits both and cancels in the round's ratio. A crash or a
/// missing export in the reference library ends only that child: the case is reported as not comparable.
/// </summary>
public static class AbRunner
{
    /// <summary>Runs one A/B measurement of a case; never throws for what either side does.</summary>
    public static AbMeasurement Measure(string id, int threads, string newProgram, string oldProgram,
                                        IReadOnlyList<string> newEnvironment, IReadOnlyList<string> oldEnvironment,
                                        RunnerSettings settings)
    {
        var total = Stopwatch.StartNew();
        // The reference's library may be another minor version; the bindings then refuse it unless told.
        using var fresh = SideProcess.Start("new", newProgram, id, threads, newEnvironment);
        using var old = SideProcess.Start("old", oldProgram, id, threads,
                                          oldEnvironment.Prepend("KERNELS_ACCEPT_OTHER_NATIVE_VERSION=1").ToList());
        var (newState, newDetail) = fresh.WaitReady();
        var (oldState, oldDetail) = old.WaitReady();
        if (newState != "ready")
            return AbMeasurement.Failed(id, threads, $"the submitted tree's library cannot run it: {newDetail}");
        if (oldState != "ready")
            return AbMeasurement.NotComparable(id, threads, $"the reference library cannot run it: {oldDetail}");

        try
        {
            // Both sides make the same number of calls per sample, sized on the new side (~SampleSeconds).
            int calls = InterleavedRunner.CallsPerSample(fresh.Sample, settings.SampleSeconds);
            old.Sample(calls);  // the reference side's warm-up at the sample size

            var (newTimes, oldTimes) = InterleavedRunner.AlternateRounds(() => fresh.Sample(calls), () => old.Sample(calls),
                                                                         settings, total);
            var ratios = newTimes.Zip(oldTimes, (n, o) => n / o).ToList();
            return new AbMeasurement
            {
                Key = Catalog.Key(id, threads), Id = id, Threads = threads, Clock = fresh.Clock,
                NewDevice = newDetail, OldDevice = oldDetail,
                NewSeconds = Statistics.Median(newTimes), OldSeconds = Statistics.Median(oldTimes),
                Ratio = Statistics.Median(ratios), RatioQ1 = Statistics.Quantile(ratios, 0.25), RatioQ3 = Statistics.Quantile(ratios, 0.75),
                Rounds = ratios.Count, CallsPerSample = calls, Ratios = ratios,
            };
        }
        catch (SideException e) when (e.Side == "old")
        {
            return AbMeasurement.NotComparable(id, threads, $"the reference library stopped while timed: {e.Message}");
        }
        catch (SideException e)
        {
            return AbMeasurement.Failed(id, threads, $"the submitted tree's library stopped while timed: {e.Message}");
        }
    }

    /// <summary>
    /// The child's part (`Kernels.Benchmarks side --cases ID --threads T`): sets the case up with the
    /// libkernels next to this program, checks both its sides against float64 (so no time is taken of a
    /// call that computes the wrong thing), then answers the parent. Lines for the parent start "ab: ";
    /// anything else a library prints is ignored by it.
    /// </summary>
    public static int Serve(string id)
    {
        BenchmarkCase benchmark;
        try
        {
            var spec = Catalog.All().FirstOrDefault(s => s.Id == id);
            if (spec is null)
            {
                Console.WriteLine($"ab: unavailable no case '{id}' with this library on this machine");
                return 0;
            }
            benchmark = spec.Create();
            benchmark.Check();
            benchmark.RunKernels();
        }
        catch (Exception e)
        {
            // EntryPointNotFoundException: the library lacks a function the case calls (an older one);
            // KernelsException: a version or device it does not support, or a wrong result.
            Console.WriteLine($"ab: unavailable {e.GetType().Name}: {OneLine(e.Message)}");
            return 0;
        }
        using (benchmark)
        {
            var (clock, clockName) = Threading.ClockFor(benchmark.Device);
            Console.WriteLine($"ab: ready {clockName}|{benchmark.Device}");
            while (Console.In.ReadLine() is { } command)
            {
                if (!command.StartsWith("sample ", StringComparison.Ordinal)) break;
                int calls = int.Parse(command["sample ".Length..], CultureInfo.InvariantCulture);
                try
                {
                    double start = clock();
                    for (int i = 0; i < calls; i++) benchmark.RunKernels();
                    Console.WriteLine($"ab: seconds {((clock() - start) / calls).ToString("R", CultureInfo.InvariantCulture)}");
                }
                catch (Exception e)
                {
                    Console.WriteLine($"ab: failed {e.GetType().Name}: {OneLine(e.Message)}");
                    return 1;
                }
            }
        }
        return 0;
    }

    static string OneLine(string text) => text.ReplaceLineEndings(" ").Trim();

    sealed class SideException(string side, string message) : Exception(message)
    {
        public string Side { get; } = side;
    }

    /// <summary>A child process running one side of a case.</summary>
    sealed class SideProcess : IDisposable
    {
        // Setting a case up builds OpenCL programs and fills up to 256 MiB of buffers: seconds on a busy machine.
        static readonly TimeSpan SetupTimeout = TimeSpan.FromMinutes(3);
        static readonly TimeSpan SampleTimeout = TimeSpan.FromMinutes(1);

        readonly Process _process;
        readonly string _side;
        public string Clock { get; private set; } = "";

        SideProcess(string side, Process process) { _side = side; _process = process; }

        public static SideProcess Start(string side, string program, string id, int threads, IReadOnlyList<string> environment)
        {
            var start = new ProcessStartInfo
            {
                FileName = program.EndsWith(".dll", StringComparison.Ordinal) ? "dotnet" : program,
                UseShellExecute = false, RedirectStandardInput = true, RedirectStandardOutput = true,
            };
            if (program.EndsWith(".dll", StringComparison.Ordinal)) start.ArgumentList.Add(program);
            foreach (string a in new[] { "side", "--cases", id, "--threads", threads.ToString(CultureInfo.InvariantCulture) })
                start.ArgumentList.Add(a);
            foreach (string pair in environment)
            {
                int eq = pair.IndexOf('=');
                if (eq <= 0) throw new ArgumentException($"'{pair}' is not NAME=VALUE");
                start.Environment[pair[..eq]] = pair[(eq + 1)..];
            }
            return new SideProcess(side, Process.Start(start) ?? throw new InvalidOperationException($"could not start {program}"));
        }

        /// <summary>("ready", device) or ("unavailable"/"failed", why).</summary>
        public (string State, string Detail) WaitReady()
        {
            try
            {
                string line = Read(SetupTimeout);
                int space = line.IndexOf(' ');
                string state = space < 0 ? line : line[..space], detail = space < 0 ? "" : line[(space + 1)..];
                if (state == "ready")
                {
                    int bar = detail.IndexOf('|');
                    Clock = detail[..bar];
                    detail = detail[(bar + 1)..];
                }
                return (state, detail);
            }
            catch (SideException e) { return ("failed", e.Message); }
        }

        public double Sample(int calls)
        {
            _process.StandardInput.WriteLine($"sample {calls}");
            _process.StandardInput.Flush();
            string line = Read(SampleTimeout);
            if (!line.StartsWith("seconds ", StringComparison.Ordinal)) throw new SideException(_side, line);
            return double.Parse(line["seconds ".Length..], CultureInfo.InvariantCulture);
        }

        /// <summary>The next line for the parent, without its "ab: ".</summary>
        string Read(TimeSpan timeout)
        {
            while (true)
            {
                var next = _process.StandardOutput.ReadLineAsync();
                if (!next.Wait(timeout))
                    throw new SideException(_side, $"no answer within {timeout.TotalSeconds:F0} s");
                if (next.Result is not { } line)
                {
                    _process.WaitForExit();
                    throw new SideException(_side, $"the process ended (exit code {_process.ExitCode}{(_process.ExitCode > 128 ? $", signal {_process.ExitCode - 128}" : "")})");
                }
                if (line.StartsWith("ab: ", StringComparison.Ordinal)) return line[4..];
            }
        }

        public void Dispose()
        {
            try
            {
                if (!_process.HasExited)
                {
                    _process.StandardInput.Close();  // the side's loop ends at end of input
                    if (!_process.WaitForExit(10_000)) _process.Kill();
                }
            }
            catch (Exception e) when (e is InvalidOperationException or IOException) { }
            _process.Dispose();
        }
    }
}

/// <summary>One A/B measurement of a case: ratio = new time / old time per round (above 1: new is slower).</summary>
public sealed record AbMeasurement
{
    public required string Key { get; init; }
    public required string Id { get; init; }
    public required int Threads { get; init; }
    public string Clock { get; init; } = "";
    public string NewDevice { get; init; } = "";
    public string OldDevice { get; init; } = "";
    public double NewSeconds { get; init; }
    public double OldSeconds { get; init; }
    public double Ratio { get; init; }
    public double RatioQ1 { get; init; }
    public double RatioQ3 { get; init; }
    public int Rounds { get; init; }
    public int CallsPerSample { get; init; }
    public List<double> Ratios { get; init; } = new();
    /// <summary>Why the case was not compared (the reference library cannot run it), or null.</summary>
    public string? NotComparableBecause { get; init; }
    /// <summary>Why the submitted tree's side failed, or null.</summary>
    public string? FailedBecause { get; init; }

    public bool Measured => NotComparableBecause is null && FailedBecause is null;

    public static AbMeasurement NotComparable(string id, int threads, string why) =>
        new() { Key = Catalog.Key(id, threads), Id = id, Threads = threads, NotComparableBecause = why };

    public static AbMeasurement Failed(string id, int threads, string why) =>
        new() { Key = Catalog.Key(id, threads), Id = id, Threads = threads, FailedBecause = why };
}
