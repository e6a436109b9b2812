using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Diagnosers;
using BenchmarkDotNet.Exporters;
using BenchmarkDotNet.Exporters.Json;
using BenchmarkDotNet.Jobs;
using BenchmarkDotNet.Loggers;
using BenchmarkDotNet.Reports;
using BenchmarkDotNet.Running;
using BenchmarkDotNet.Toolchains.InProcess.Emit;
using Kernels.Benchmarks.Cases;
using Perfolizer.Horology;
using BenchmarkCase = BenchmarkDotNet.Running.BenchmarkCase;
using KernelsCase = Kernels.Benchmarks.Cases.BenchmarkCase;

namespace Kernels.Benchmarks.Engine;

/// <summary>
/// The BenchmarkDotNet view of the catalog: one parameter value per case, two benchmarks per value,
/// the reference and the library's call. BenchmarkDotNet measures what a C# user pays per call
/// (with its warm-up, pilot and outlier handling); the ratio is the reference's median over ours.
/// Runs in process (the cases hold native buffers and the selection is a static), one case after
/// the other, so unlike <see cref="InterleavedRunner"/> its ratios do not cancel load changes between
/// the reference's and the kernels' measurement: on a busy machine prefer the interleaved ratios.
/// </summary>
public class KernelBenchmarks
{
    /// <summary>The cases to run (set by Program before BenchmarkRunner.Run).</summary>
    public static List<CaseSpec> Selected { get; set; } = new();

    /// <summary>What each case reported about itself in its setup, for the columns and the results file.</summary>
    public static readonly Dictionary<string, (double Work, Throughput Throughput, string Reference, string Device)> Facts = new();

    [ParamsSource(nameof(CaseIds))]
    public string Case { get; set; } = "";

    public static IEnumerable<string> CaseIds => Selected.Select(s => s.Id);

    KernelsCase? instance;

    [GlobalSetup]
    public void Setup()
    {
        var spec = Selected.Single(s => s.Id == Case);
        instance = spec.Create();
        instance.Check();
        lock (Facts) Facts[Case] = (instance.Work, instance.Throughput, instance.ReferenceName, instance.Device.Description);
    }

    [Benchmark]
    public void Reference() => instance!.RunReference();

    [Benchmark]
    public void Kernels() => instance!.RunKernels();

    [GlobalCleanup]
    public void Cleanup()
    {
        instance?.Dispose();
        instance = null;
    }

    /// <summary>
    /// In process; 3 warm-up and 11 measured iterations of at least 250 ms each (a 4096^3 CLBlast
    /// call on PoCL takes ~6 s, so one invocation per iteration there); one call per invocation
    /// (UnrollFactor 1: a delegate call costs ~1 ns next to our calls' 100 ns and more).
    /// </summary>
    public static IConfig Config(string artifacts) => ManualConfig.CreateEmpty()
        .AddJob(Job.Default
            .WithToolchain(new InProcessEmitToolchain(TimeSpan.FromMinutes(30), logOutput: false))
            .WithWarmupCount(3)
            .WithIterationCount(11)
            .WithIterationTime(TimeInterval.FromMilliseconds(250))
            .WithUnrollFactor(1)
            .WithId("kernels"))
        .AddLogger(ConsoleLogger.Default)
        .AddColumnProvider(DefaultColumnProviders.Instance)
        .AddColumn(new ThroughputColumn(), new RatioToReferenceColumn())
        .AddDiagnoser(MemoryDiagnoser.Default)
        .AddExporter(JsonExporter.Full, MarkdownExporter.GitHub)
        .WithSummaryStyle(SummaryStyle.Default.WithMaxParameterColumnWidth(64))  // whole case ids, not "gemm/(...)x1024"
        .WithArtifactsPath(artifacts)
        .WithOptions(ConfigOptions.DisableLogFile);

    /// <summary>The results of a BenchmarkDotNet summary in the harness's own form.</summary>
    public static List<CaseResult> Results(Summary summary)
    {
        var results = new List<CaseResult>();
        foreach (var spec in Selected)
        {
            var kernels = Report(summary, spec.Id, nameof(Kernels));
            var reference = Report(summary, spec.Id, nameof(Reference));
            if (kernels?.ResultStatistics is null || reference?.ResultStatistics is null || !Facts.TryGetValue(spec.Id, out var facts))
                continue;
            double k = kernels.ResultStatistics.Median * 1e-9, r = reference.ResultStatistics.Median * 1e-9;
            results.Add(new CaseResult
            {
                Id = spec.Id,
                Family = spec.Family,
                Device = spec.DeviceName,
                DeviceDescription = facts.Device,
                Shape = spec.Shape,
                Reference = facts.Reference,
                Method = "BenchmarkDotNet",
                Unit = facts.Throughput == Throughput.Flops ? "GFLOP/s" : "GB/s",
                Work = facts.Work,
                KernelsSeconds = k,
                ReferenceSeconds = r,
                KernelsThroughput = facts.Work / k * 1e-9,
                ReferenceThroughput = facts.Work / r * 1e-9,
                Ratio = r / k,
                Rounds = kernels.ResultStatistics.N,
                Target = spec.Target,
            });
        }
        return results;
    }

    static BenchmarkReport? Report(Summary summary, string id, string method) =>
        summary.Reports.FirstOrDefault(r => r.BenchmarkCase.Descriptor.WorkloadMethod.Name == method && CaseOf(r.BenchmarkCase) == id);

    internal static string? CaseOf(BenchmarkCase benchmark) =>
        benchmark.Parameters.Items.FirstOrDefault(p => p.Name == nameof(Case))?.Value as string;

    /// <summary>GFLOP/s or GB/s of each row, from its median.</summary>
    sealed class ThroughputColumn : IColumn
    {
        public string Id => "Throughput";
        public string ColumnName => "Throughput";
        public bool AlwaysShow => true;
        public ColumnCategory Category => ColumnCategory.Custom;
        public int PriorityInCategory => 0;
        public bool IsNumeric => true;
        public UnitType UnitType => UnitType.Dimensionless;
        public string Legend => "GFLOP/s (GEMM, training step) or GB/s read + written (memory-bound kernels), from the median";
        public bool IsDefault(Summary summary, BenchmarkCase benchmarkCase) => false;
        public bool IsAvailable(Summary summary) => true;
        public string GetValue(Summary summary, BenchmarkCase benchmarkCase, SummaryStyle style) => GetValue(summary, benchmarkCase);

        public string GetValue(Summary summary, BenchmarkCase benchmarkCase)
        {
            var stats = summary[benchmarkCase]?.ResultStatistics;
            string? id = CaseOf(benchmarkCase);
            if (stats is null || id is null || !Facts.TryGetValue(id, out var f)) return "-";
            return $"{f.Work / (stats.Median * 1e-9) * 1e-9:F1} {(f.Throughput == Throughput.Flops ? "GFLOP/s" : "GB/s")}";
        }
    }

    /// <summary>On the Kernels row: reference median / kernels median (above 1: faster than the reference).</summary>
    sealed class RatioToReferenceColumn : IColumn
    {
        public string Id => "RatioToReference";
        public string ColumnName => "vs reference";
        public bool AlwaysShow => true;
        public ColumnCategory Category => ColumnCategory.Custom;
        public int PriorityInCategory => 1;
        public bool IsNumeric => true;
        public UnitType UnitType => UnitType.Dimensionless;
        public string Legend => "Kernels row: reference median time / Kernels median time, same run (above 1 = faster than the reference)";
        public bool IsDefault(Summary summary, BenchmarkCase benchmarkCase) => false;
        public bool IsAvailable(Summary summary) => true;
        public string GetValue(Summary summary, BenchmarkCase benchmarkCase, SummaryStyle style) => GetValue(summary, benchmarkCase);

        public string GetValue(Summary summary, BenchmarkCase benchmarkCase)
        {
            if (benchmarkCase.Descriptor.WorkloadMethod.Name != nameof(Kernels)) return "";
            string? id = CaseOf(benchmarkCase);
            var kernels = summary[benchmarkCase]?.ResultStatistics;
            var reference = id is null ? null : Report(summary, id, nameof(Reference))?.ResultStatistics;
            return kernels is null || reference is null ? "-" : $"{reference.Median / kernels.Median:F2}x";
        }
    }
}
