// Kernels.Benchmarks: every kernel family on every device, each case timed next to its reference in
// the same process (see benchmarks/README.md). Usage: see Usage() at the end, or run with --help.
using System.Diagnostics;
using System.Globalization;
using BenchmarkDotNet.Running;
using Kernels.Benchmarks;
using Kernels.Benchmarks.Engine;
using Kernels.Benchmarks.References;

CultureInfo.DefaultThreadCurrentCulture = CultureInfo.InvariantCulture;
CultureInfo.CurrentCulture = CultureInfo.InvariantCulture;

if (args.Length == 0 || args[0] is "-h" or "--help" or "help")
{
    Console.WriteLine(Usage());
    return args.Length == 0 ? 2 : 0;
}

string command = args[0];
var patterns = new List<string>();
var inputs = new List<string>();
string outDir = Path.Combine("benchmarks", "results", "latest");
string? baselinePath = null, why = null, note = null;
double? tolerance = null;
int retries = 1, threads = 0;
bool writeBaseline = false, quickSettings = false;
for (int i = 1; i < args.Length; i++)
{
    string Next() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"{args[i]} needs a value");
    switch (args[i])
    {
        case "--cases": patterns.Add(Next()); break;
        case "--out": outDir = Next(); break;
        case "--baseline": baselinePath = Next(); break;
        case "--retries": retries = int.Parse(Next(), CultureInfo.InvariantCulture); break;
        case "--write-baseline": writeBaseline = true; break;
        case "--tolerance": tolerance = double.Parse(Next(), CultureInfo.InvariantCulture); break;
        case "--why": why = Next(); break;
        case "--note": note = Next(); break;
        case "--threads": threads = int.Parse(Next(), CultureInfo.InvariantCulture); break;
        case "--quick-settings": quickSettings = true; break;
        default:
            if (command is "report" or "baseline" && !args[i].StartsWith("--", StringComparison.Ordinal)) { inputs.Add(args[i]); break; }
            Console.Error.WriteLine($"unknown option '{args[i]}'\n{Usage()}");
            return 2;
    }
}

// Before anything loads libkernels or OpenBLAS: both read these settings once, at start-up.
Threading.Limit(threads);
OpenBlas.PreferWidestKernels();

switch (command)
{
    case "list":
    {
        var (devices, skipped) = Catalog.Devices();
        Console.WriteLine($"Devices: {string.Join(", ", devices.Select(d => d.ToString()))}");
        foreach (var s in skipped) Console.WriteLine($"Skipped: {s}");
        foreach (var spec in Catalog.Select(Catalog.All(), patterns))
        {
            var quick = Catalog.QuickSet.Where(q => q.Id == spec.Id).Select(q => q.Threads == 0 ? "all threads" : $"{q.Threads} thread").ToList();
            Console.WriteLine($"  {spec.Id}{(quick.Count > 0 ? $"   [quick: {string.Join(", ", quick)}]" : "")}{(spec.Target is { } t ? $"   [target {t:0.0#}x]" : "")}");
        }
        return 0;
    }
    case "full":
    {
        var selected = Catalog.Select(Catalog.All(), patterns);
        var specs = selected.Where(s => s.TooSlowForBenchmarkDotNet is null).ToList();
        KernelBenchmarks.Selected = specs;
        Directory.CreateDirectory(outDir);
        var summary = BenchmarkRunner.Run<KernelBenchmarks>(KernelBenchmarks.Config(Path.GetFullPath(Path.Combine(outDir, "bdn"))));
        var set = NewSet("full (BenchmarkDotNet)", KernelBenchmarks.Results(summary), note);
        var missing = specs.Select(s => s.Id).Except(set.Results.Select(r => r.Id)).ToList();
        foreach (var id in missing) set.Skipped.Add($"{id}: no result (its setup or check failed: see the log above)");
        foreach (var s in selected.Where(s => s.TooSlowForBenchmarkDotNet is not null)) set.Skipped.Add($"{s.Id}: {s.TooSlowForBenchmarkDotNet}");
        WriteOutputs(new[] { set }, outDir);
        return missing.Count == 0 ? 0 : 1;
    }
    case "ratios":
    {
        var specs = Catalog.Select(Catalog.All(), patterns);
        var (set, failures) = RunInterleaved(specs, quickSettings ? RunnerSettings.Quick : RunnerSettings.Full,
                                             threads == 0 ? "interleaved" : $"interleaved, {threads} thread(s)", note);
        WriteOutputs(new[] { set }, outDir);
        return failures == 0 ? 0 : 1;
    }
    case "quick":
        return Quick();
    case "baseline":
        return WriteBaselineFromRuns();
    case "report":
    {
        if (inputs.Count == 0) { Console.Error.WriteLine("report: name at least one results.json"); return 2; }
        WriteOutputs(inputs.Select(ResultSet.Load).ToList(), outDir);
        return 0;
    }
    default:
        Console.Error.WriteLine($"unknown command '{command}'\n{Usage()}");
        return 2;
}

// The quick regression mode: each thread setting of the quick set runs in a child process of its
// own (thread counts are fixed at library start-up), the parent compares with the baseline.
int Quick()
{
    if (baselinePath is null) { Console.Error.WriteLine("quick: --baseline FILE is required"); return 2; }
    var available = Catalog.All().Select(s => s.Id).ToHashSet();
    var set = Catalog.QuickSet.Where(q => patterns.Count == 0 || patterns.Any(p => Catalog.Matches(q.Id, p))).ToList();
    var results = new List<CaseResult>();
    var skipped = new List<string>();
    int failures = 0;
    var started = Stopwatch.StartNew();
    foreach (var group in set.GroupBy(q => q.Threads))
    {
        var ids = group.Select(q => q.Id).Where(available.Contains).ToList();
        foreach (var absent in group.Select(q => q.Id).Where(id => !available.Contains(id)))
            skipped.Add($"{Catalog.Key(absent, group.Key)}: its device or reference is not available here");
        if (ids.Count == 0) continue;
        var (partial, ok) = RunChild(ids, group.Key, Path.Combine(outDir, group.Key == 0 ? "all-threads" : $"{group.Key}-thread"));
        if (partial is not null) { results.AddRange(partial.Results); skipped.AddRange(partial.Skipped); }
        if (!ok) failures++;
    }
    var combined = new ResultSet { Date = DateTimeOffset.UtcNow, Mode = "quick (interleaved)", Machine = MachineInfo.Current(note), Results = results, Skipped = skipped };
    WriteOutputs(new[] { combined }, outDir);
    var measured = results.ToDictionary(r => Catalog.Key(r.Id, r.Threads), r => r.Ratio);

    if (writeBaseline)
    {
        var old = File.Exists(baselinePath) ? Baseline.Load(baselinePath) : null;
        var baseline = new Baseline
        {
            Tolerance = tolerance ?? old?.Tolerance ?? throw new ArgumentException("--write-baseline needs --tolerance for a new baseline"),
            CaseTolerances = old?.CaseTolerances ?? new(),
            Why = why ?? old?.Why ?? "",
            Machine = combined.Machine,
            Date = combined.Date,
            Ratios = new SortedDictionary<string, double>(measured.ToDictionary(kv => kv.Key, kv => Math.Round(kv.Value, 3)), StringComparer.Ordinal),
        };
        baseline.Save(baselinePath);
        Console.WriteLine($"\nWrote the baseline {baselinePath} ({baseline.Ratios.Count} cases, tolerance {baseline.Tolerance:P0}) in {started.Elapsed.TotalSeconds:F0} s. Commit it on its own.");
        return failures == 0 ? 0 : 1;
    }

    var reference = Baseline.Load(baselinePath);
    Console.WriteLine($"\nAgainst the baseline {baselinePath} (recorded {reference.Date:yyyy-MM-dd} on {reference.Machine.Cpu}; tolerance {reference.Tolerance:P0}):");
    if (reference.Machine.Cpu != combined.Machine.Cpu)
        Console.WriteLine($"  note: this machine is a {combined.Machine.Cpu}, the baseline's a {reference.Machine.Cpu}; ratios move less than times between machines, but a failure here may be the machine.");
    var comparisons = reference.Ratios.Keys.Union(measured.Keys).OrderBy(k => k, StringComparer.Ordinal)
        .Select(k => Comparison.Of(k, reference, measured.TryGetValue(k, out double m) ? m : null)).ToList();

    // A case below its baseline is measured again (retries times), and its verdict is then taken on
    // the geometric mean of all its measurements: one burst of load on the machine is averaged with a
    // normal run and passes, a real slowdown is there every time and stays below the line.
    var attempts = comparisons.Where(c => c.Measured is not null).ToDictionary(c => c.Id, c => new List<double> { c.Measured!.Value });
    for (int attempt = 0; attempt < retries && comparisons.Any(c => c.Verdict == Verdict.Regressed); attempt++)
    {
        var suspects = comparisons.Where(c => c.Verdict == Verdict.Regressed).Select(c => c.Id).ToHashSet();
        Console.WriteLine($"\n{suspects.Count} case(s) below the baseline; measuring them again ({attempt + 1} of {retries}):");
        foreach (var group in set.Where(q => suspects.Contains(Catalog.Key(q.Id, q.Threads))).GroupBy(q => q.Threads))
        {
            var (again, _) = RunChild(group.Select(q => q.Id).ToList(), group.Key,
                                      Path.Combine(outDir, $"retry{attempt + 1}-{(group.Key == 0 ? "all" : group.Key.ToString(CultureInfo.InvariantCulture))}"));
            foreach (var r in again?.Results ?? new())
            {
                string key = Catalog.Key(r.Id, r.Threads);
                attempts[key].Add(r.Ratio);
                double mean = Math.Exp(attempts[key].Average(Math.Log));
                int at = comparisons.FindIndex(c => c.Id == key);
                comparisons[at] = Comparison.Of(key, reference, mean);
                Console.WriteLine($"  {key}: {string.Join(", then ", attempts[key].Select(v => v.ToString("F2", CultureInfo.InvariantCulture) + "x"))}: " +
                                  $"geometric mean {mean:F2}x, {(comparisons[at].Verdict == Verdict.Regressed ? "still below the baseline" : "within the tolerance: noise")}");
            }
        }
    }

    Console.WriteLine();
    foreach (var c in comparisons) Console.WriteLine(c);
    var regressed = comparisons.Where(c => c.Verdict is Verdict.Regressed or Verdict.Missing).ToList();
    Console.WriteLine($"\n({started.Elapsed.TotalSeconds:F0} s)");
    // The closing line CI's summary reads (.ci/run): cases within tolerance (or new) pass, regressed
    // or missing cases and failed measuring runs fail.
    int passedCount = comparisons.Count(c => c.Verdict is Verdict.Pass or Verdict.Faster or Verdict.New);
    string closing = $"bench-quick: {passedCount} passed, {regressed.Count + failures} failed";
    if (regressed.Count == 0 && failures == 0)
    {
        Console.WriteLine($"bench-quick: PASS (every case within its tolerance of the baseline, or better)");
        Console.WriteLine(closing);
        return 0;
    }
    foreach (var c in regressed)
        Console.WriteLine(c.Verdict == Verdict.Missing
            ? $"bench-quick: {c.Id} was not measured (device or reference missing, or its check failed)"
            : $"bench-quick: {c.Id} regressed: ratio {c.Measured:F2}x against the baseline's {c.Baseline:F2}x ({c.Change:+0.0%;-0.0%}, allowed -{c.Tolerance:P0})");
    if (failures > 0) Console.WriteLine($"bench-quick: {failures} measuring run(s) failed (a correctness check or a setup: see above)");
    Console.WriteLine($"bench-quick: FAIL ({regressed.Count} regressed or missing)");
    Console.WriteLine(closing);
    return 1;
}

// A baseline from several quick runs of one tree: each case's median ratio over the runs, so one
// unlucky run does not become the bar every later run is held to.
int WriteBaselineFromRuns()
{
    if (baselinePath is null || inputs.Count == 0 || tolerance is null || why is null)
    {
        Console.Error.WriteLine("baseline: --baseline FILE --tolerance T --why TEXT and one or more quick results.json are required");
        return 2;
    }
    var runs = inputs.Select(ResultSet.Load).ToList();
    var ratios = runs.SelectMany(r => r.Results).GroupBy(r => Catalog.Key(r.Id, r.Threads))
        .ToDictionary(g => g.Key, g => Math.Round(Statistics.Median(g.Select(r => r.Ratio).ToList()), 3));
    var old = File.Exists(baselinePath) ? Baseline.Load(baselinePath) : null;
    var baseline = new Baseline
    {
        Tolerance = tolerance.Value,
        CaseTolerances = old?.CaseTolerances ?? new(),
        Why = why,
        Machine = runs[^1].Machine,
        Date = runs[^1].Date,
        Ratios = new SortedDictionary<string, double>(ratios, StringComparer.Ordinal),
    };
    baseline.Save(baselinePath);
    Console.WriteLine($"Wrote the baseline {baselinePath}: {ratios.Count} cases, the median of {runs.Count} runs each. Commit it on its own.");
    return 0;
}

// Runs `ratios` with the quick settings on the given cases and thread count in a child process.
(ResultSet? Set, bool Ok) RunChild(List<string> ids, int childThreads, string childOut)
{
    var start = new ProcessStartInfo { FileName = Environment.ProcessPath!, UseShellExecute = false };
    if (Path.GetFileNameWithoutExtension(Environment.ProcessPath!) == "dotnet")
        start.ArgumentList.Add(typeof(Catalog).Assembly.Location);
    foreach (string a in new[] { "ratios", "--quick-settings", "--threads", childThreads.ToString(CultureInfo.InvariantCulture), "--out", childOut })
        start.ArgumentList.Add(a);
    foreach (string id in ids) { start.ArgumentList.Add("--cases"); start.ArgumentList.Add(id); }
    if (note is not null) { start.ArgumentList.Add("--note"); start.ArgumentList.Add(note); }
    using var child = Process.Start(start) ?? throw new InvalidOperationException($"could not start {start.FileName}");
    child.WaitForExit();
    string json = Path.Combine(childOut, "results.json");
    return (File.Exists(json) ? ResultSet.Load(json) : null, child.ExitCode == 0);
}

(ResultSet Set, int Failures) RunInterleaved(List<CaseSpec> specs, RunnerSettings settings, string mode, string? runNote)
{
    var (_, skipped) = Catalog.Devices();
    var results = new List<CaseResult>();
    int failures = 0;
    Console.WriteLine($"{mode}: {specs.Count} case(s); each side timed alternately, ratio = reference time / Kernels time (median, quartiles)");
    foreach (var spec in specs)
    {
        try
        {
            using var benchmark = spec.Create();
            benchmark.Check();
            var r = InterleavedRunner.Run(benchmark, settings);
            results.Add(r);
            Console.WriteLine($"  {Catalog.Key(r.Id, r.Threads),-48} {MarkdownReport.Throughput(r.KernelsThroughput, r.Unit),14}  ref {MarkdownReport.Throughput(r.ReferenceThroughput, r.Unit),14}  {MarkdownReport.Ratio(r),-20} {r.Reference}");
        }
        catch (Exception e) when (e is InvalidOperationException or Kernels.KernelsException or NotSupportedException)
        {
            failures++;
            skipped.Add($"{spec.Id}: {e.Message}");
            Console.WriteLine($"  {spec.Id,-48} FAILED: {e.Message}");
        }
    }
    return (new ResultSet { Date = DateTimeOffset.UtcNow, Mode = mode, Machine = MachineInfo.Current(runNote), Results = results, Skipped = skipped }, failures);
}

static ResultSet NewSet(string mode, List<CaseResult> results, string? note)
{
    var (_, skipped) = Catalog.Devices();
    return new ResultSet { Date = DateTimeOffset.UtcNow, Mode = mode, Machine = MachineInfo.Current(note), Results = results, Skipped = skipped };
}

static void WriteOutputs(IReadOnlyList<ResultSet> sets, string directory)
{
    Directory.CreateDirectory(directory);
    string json = Path.Combine(directory, "results.json"), md = Path.Combine(directory, "results.md");
    if (sets.Count == 1) sets[0].Save(json);
    else new ResultSet { Date = DateTimeOffset.UtcNow, Mode = "merged", Machine = sets[0].Machine, Results = sets.SelectMany(s => s.Results).ToList() }.Save(json);
    File.WriteAllText(md, MarkdownReport.Render(sets));
    var plots = Plots.Write(sets, directory);
    Console.WriteLine($"Wrote {json}, {md}{string.Concat(plots.Select(p => ", " + p))}");
}

static string Usage() => """
    usage: Kernels.Benchmarks COMMAND [options]
      list    [--cases PATTERN]...                the cases this machine can run ([quick] marks the regression set)
      full    [--cases PATTERN]... [--out DIR]    BenchmarkDotNet over the cases; writes results.json, results.md,
                                                  gemm.png, bandwidth.png, and BenchmarkDotNet's reports in DIR/bdn
      ratios  [--cases PATTERN]... [--out DIR] [--threads N] [--quick-settings]
                                                  the interleaved runner (reference and Kernels alternating)
      quick   --baseline FILE [--out DIR] [--retries N]
                                                  CI regression mode: the quick set against the baseline; exit 1 on a regression
      quick   --baseline FILE --write-baseline [--tolerance T] [--why TEXT]
                                                  measure the quick set and write it as the new baseline
      baseline --baseline FILE --tolerance T --why TEXT RESULTS.json...
                                                  a baseline from several quick runs (each case's median ratio)
      report  --out DIR RESULTS.json...           merge result files (this machine's, a GPU machine's) into one report
    PATTERN matches case ids with '*': "gemm/cpu/*", "*/opencl:0/*". --threads N limits the CPU sides
    (libkernels, OpenBLAS, memcpy) to N threads; with 1, CPU cases are timed by thread CPU time.
    --note TEXT is stored with the results. Default DIR: benchmarks/results/latest.
    """;
