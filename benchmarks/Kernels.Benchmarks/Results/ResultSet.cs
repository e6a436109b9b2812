using System.Runtime.InteropServices;
using System.Text.Json;
using System.Text.Json.Serialization;
using Kernels.Benchmarks.Cases;
using Kernels.Benchmarks.References;

namespace Kernels.Benchmarks;

/// <summary>
/// One case's outcome. Times are seconds per call (medians); throughput is GFLOP/s or GB/s for both
/// sides; Ratio = reference time / kernels time (above 1: faster than the reference), with the
/// quartiles of its per-round values when the interleaved runner measured it.
/// </summary>
public sealed record CaseResult
{
    public required string Id { get; init; }
    public required string Family { get; init; }
    public required string Device { get; init; }
    public required string DeviceDescription { get; init; }
    public required string Shape { get; init; }
    public required string Reference { get; init; }
    public required string Method { get; init; }
    public required string Unit { get; init; }
    public required double Work { get; init; }
    public required double KernelsSeconds { get; init; }
    public required double ReferenceSeconds { get; init; }
    public required double KernelsThroughput { get; init; }
    public required double ReferenceThroughput { get; init; }
    public required double Ratio { get; init; }
    public double? RatioLow { get; init; }
    public double? RatioHigh { get; init; }
    public int Rounds { get; init; }
    public double? Target { get; init; }
    /// <summary>Ratio of the fastest reference sample to the fastest Kernels sample (interleaved runs).</summary>
    public double? RatioOfMinimums { get; init; }
    /// <summary>Seconds per call of each sample, in round order (interleaved runs), for anyone who wants to look closer.</summary>
    public List<double>? KernelsSamples { get; init; }
    public List<double>? ReferenceSamples { get; init; }
    /// <summary>Threads of the CPU sides (0: every core).</summary>
    public int Threads { get; init; }
    /// <summary>"wall clock", or "thread CPU time" for one-thread CPU runs.</summary>
    public string? Clock { get; init; }

    public static CaseResult From(BenchmarkCase c, string method, double kernelsSeconds, double referenceSeconds,
                                  double ratio, double? ratioLow, double? ratioHigh, int rounds)
    {
        double scale = 1e-9;  // GFLOP/s, GB/s
        return new CaseResult
        {
            Id = c.Spec.Id,
            Family = c.Spec.Family,
            Device = c.Device.Name,
            DeviceDescription = c.Device.Description,
            Shape = c.Spec.Shape,
            Reference = c.ReferenceName,
            Method = method,
            Unit = c.Throughput == Throughput.Flops ? "GFLOP/s" : "GB/s",
            Work = c.Work,
            KernelsSeconds = kernelsSeconds,
            ReferenceSeconds = referenceSeconds,
            KernelsThroughput = c.Work / kernelsSeconds * scale,
            ReferenceThroughput = c.Work / referenceSeconds * scale,
            Ratio = ratio,
            RatioLow = ratioLow,
            RatioHigh = ratioHigh,
            Rounds = rounds,
            Target = c.Spec.Target,
        };
    }
}

/// <summary>Where and how a result set was measured.</summary>
public sealed record MachineInfo
{
    public required string Host { get; init; }
    public required string Cpu { get; init; }
    public required int LogicalCores { get; init; }
    public required string Os { get; init; }
    public required string Runtime { get; init; }
    public string? OpenBlas { get; init; }
    public required List<string> Devices { get; init; }
    public string? Note { get; init; }

    public static MachineInfo Current(string? note = null) => new()
    {
        Host = Environment.MachineName,
        Cpu = CpuModel(),
        LogicalCores = Environment.ProcessorCount,
        Os = RuntimeInformation.OSDescription,
        Runtime = RuntimeInformation.FrameworkDescription,
        OpenBlas = References.OpenBlas.Unavailable is null ? $"{References.OpenBlas.CoreName} kernels, {References.OpenBlas.Threads} threads, {References.OpenBlas.Config.Trim()}" : null,
        Devices = Kernels.Device.All.Select(d => d.ToString()).ToList(),
        Note = note,
    };

    /// <summary>"model name" of /proc/cpuinfo (the CPU model, which baselines are tied to).</summary>
    public static string CpuModel()
    {
        try
        {
            foreach (string line in File.ReadLines("/proc/cpuinfo"))
                if (line.StartsWith("model name", StringComparison.Ordinal))
                    return line[(line.IndexOf(':') + 1)..].Trim();
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
        return RuntimeInformation.ProcessArchitecture.ToString();
    }
}

/// <summary>A run's results, as written to results.json and read back by the report and the baseline check.</summary>
public sealed record ResultSet
{
    public required DateTimeOffset Date { get; init; }
    public required string Mode { get; init; }
    public required MachineInfo Machine { get; init; }
    public required List<CaseResult> Results { get; init; }
    public List<string> Skipped { get; init; } = new();

    public static readonly JsonSerializerOptions Json = new()
    {
        WriteIndented = true,
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
    };

    public void Save(string path)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
        File.WriteAllText(path, JsonSerializer.Serialize(this, Json) + "\n");
    }

    public static ResultSet Load(string path) =>
        JsonSerializer.Deserialize<ResultSet>(File.ReadAllText(path), Json)
        ?? throw new InvalidDataException($"{path}: not a results file");
}
