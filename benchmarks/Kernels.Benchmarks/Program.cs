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
string? baselinePath = null, why = null, note = null, newProgram = null, oldProgram = null, referenceName = null;
var newEnvironment = new List<string>();
var oldEnvironment = new List<string>();
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
        case "--new": newProgram = Next(); break;
        case "--old": oldProgram = Next(); break;
        case "--new-env": newEnvironment.Add(Next()); break;
        case "--old-env": oldEnvironment.Add(Next()); break;
        case "--reference": referenceName = Next(); break;
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
    case "ab":
        return AbCheck();
    case "side":
        if (patterns.Count != 1) { Console.Error.WriteLine("side: name exactly one case with --cases"); return 2; }
        return AbRunner.Serve(patterns[0]);
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

    // The baseline is a record of ratios to the references on the machine kind it was recorded on
    // (its CPU model and instruction set); a ratio to OpenBLAS depends on which instruction set each
    // side uses, so it cannot judge another machine, and it judges none: the regression check is the
    // A/B comparison with the reference commit (`ab`). Shown here so a run can be set beside it.
    var reference = Baseline.Load(baselinePath);
    bool sameKind = reference.Machine.Cpu == combined.Machine.Cpu
                    && reference.Machine.Devices.FirstOrDefault() == combined.Machine.Devices.FirstOrDefault();
    Console.WriteLine($"\nThe record {baselinePath} ({reference.Date:yyyy-MM-dd}, {reference.Machine.Devices.FirstOrDefault()}), for information only" +
                      (sameKind ? ":" : $"; this machine is another kind ({combined.Machine.Devices.FirstOrDefault()}), so differences may be the machine:"));
    foreach (var k in reference.Ratios.Keys.Union(measured.Keys).OrderBy(k => k, StringComparer.Ordinal))
        Console.WriteLine(Comparison.Of(k, reference, measured.TryGetValue(k, out double m) ? m : null));
    Console.WriteLine($"\n({started.Elapsed.TotalSeconds:F0} s)");
    if (failures > 0) Console.WriteLine($"bench-quick: {failures} measuring run(s) failed (a correctness check or a setup: see above)");
    Console.WriteLine($"bench-quick: {results.Count} passed, {failures} failed");
    return failures == 0 ? 0 : 1;
}

// The A/B regression check: each quick case of the submitted tree's library (--new: this program built
// with it) against the reference commit's (--old), interleaved in this run on this machine (Engine/AbRunner).
// A case regresses when the new library's median time over the rounds is more than its tolerance
// (Catalog.QuickSet) above the old one's; it is then measured again (--retries times) and the verdict
// is taken on the geometric mean of its measurements, so a burst of load in one measurement is
// averaged with a normal one while a real slowdown is there every time. Cases the reference library
// cannot run (new in the submitted tree) are reported, not judged.
int AbCheck()
{
    if (newProgram is null || oldProgram is null) { Console.Error.WriteLine("ab: --new PROGRAM and --old PROGRAM are required"); return 2; }
    var available = Catalog.All().Select(s => s.Id).ToHashSet();
    var set = Catalog.QuickSet.Where(q => patterns.Count == 0 || patterns.Any(p => Catalog.Matches(q.Id, p))).ToList();
    var started = Stopwatch.StartNew();
    string load = File.Exists("/proc/loadavg") ? string.Join(" ", File.ReadAllText("/proc/loadavg").Split(' ').Take(3)) : "?";
    Console.WriteLine($"A/B: the submitted tree (new) against {referenceName ?? "the reference"} (old), {set.Count} case(s), load average {load} at the start");
    if (newEnvironment.Count > 0) Console.WriteLine($"  new side's environment: {string.Join(" ", newEnvironment)}");
    if (oldEnvironment.Count > 0) Console.WriteLine($"  old side's environment: {string.Join(" ", oldEnvironment)}");
    Console.WriteLine($"  {"case",-48} {"new",10} {"old",10}  new/old (quartiles, rounds)   verdict");

    var settings = RunnerSettings.Quick;
    var measurements = new List<AbMeasurement>();
    var skipped = new List<string>();
    var devicesShown = new HashSet<string>();
    foreach (var (id, caseThreads, _) in set)
    {
        if (!available.Contains(id)) { skipped.Add($"{Catalog.Key(id, caseThreads)}: its device or reference is not available here"); continue; }
        var m = AbRunner.Measure(id, caseThreads, newProgram, oldProgram, newEnvironment, oldEnvironment, settings);
        measurements.Add(m);
        Console.WriteLine(AbLine(m, set.First(q => q.Id == id && q.Threads == caseThreads).Tolerance));
        // Each side's device as its own library describes it (the CPU's SIMD level included), once per device:
        // what shows that both sides ran like with like, or which setting made them differ.
        if (m.Measured && devicesShown.Add(m.NewDevice + m.OldDevice))
            Console.WriteLine($"      new: {m.NewDevice}{(m.NewDevice == m.OldDevice ? "; old: the same" : $"\n      old: {m.OldDevice}")}");
    }

    double ToleranceOf(AbMeasurement m) => set.First(q => q.Id == m.Id && q.Threads == m.Threads).Tolerance;
    bool Slower(double ratio, AbMeasurement m) => ratio > 1 + ToleranceOf(m);
    var attempts = measurements.Where(m => m.Measured).ToDictionary(m => m.Key, m => new List<double> { m.Ratio });
    var firsts = measurements.Where(m => m.Measured).ToList();  // the re-measurements join `measurements` below
    for (int attempt = 0; attempt < retries; attempt++)
    {
        var suspects = firsts.Where(m => Slower(Geomean(attempts[m.Key]), m)).ToList();
        if (suspects.Count == 0) break;
        Console.WriteLine($"\n{suspects.Count} case(s) slower than the reference by more than their tolerance; measuring them again ({attempt + 1} of {retries}):");
        foreach (var suspect in suspects)
        {
            var again = AbRunner.Measure(suspect.Id, suspect.Threads, newProgram, oldProgram, newEnvironment, oldEnvironment, settings);
            measurements.Add(again with { Key = suspect.Key + $" (again {attempt + 1})" });
            if (again.Measured) attempts[suspect.Key].Add(again.Ratio);
            Console.WriteLine(AbLine(again, ToleranceOf(suspect)));
        }
    }

    var regressed = new List<string>();
    var notComparable = new List<string>();
    var failed = new List<string>();
    int passed = 0;
    foreach (var m in measurements.Where(m => !m.Key.Contains(" (again ", StringComparison.Ordinal)))
    {
        if (m.FailedBecause is not null) { failed.Add($"{m.Key}: {m.FailedBecause}"); continue; }
        if (m.NotComparableBecause is not null) { notComparable.Add($"{m.Key}: {m.NotComparableBecause}"); continue; }
        double mean = Geomean(attempts[m.Key]);
        if (Slower(mean, m))
            regressed.Add($"{m.Key}: {mean - 1:+0.0%} slower than the reference (new/old {string.Join(", then ", attempts[m.Key].Select(r => r.ToString("F3", CultureInfo.InvariantCulture)))}; allowed {ToleranceOf(m):0%})");
        else passed++;
    }

    // A check that compared nothing proves nothing: a reference library that runs no case at all (a
    // broken build, an incompatible API) fails the run instead of passing it, until the reference moves.
    if (notComparable.Count > 0 && passed + regressed.Count + failed.Count == 0)
        failed.Add("the reference library could run none of the cases: nothing was compared (move benchmarks/baseline/reference-commit to a compatible commit)");

    Directory.CreateDirectory(outDir);
    File.WriteAllText(Path.Combine(outDir, "ab.json"), System.Text.Json.JsonSerializer.Serialize(new
    {
        Date = DateTimeOffset.UtcNow, Reference = referenceName, Load = load, Machine = MachineInfo.Current(note),
        NewEnvironment = newEnvironment, OldEnvironment = oldEnvironment, Measurements = measurements, Skipped = skipped,
    }, ResultSet.Json) + "\n");
    Console.WriteLine($"\nWrote {Path.Combine(outDir, "ab.json")} ({started.Elapsed.TotalSeconds:F0} s)");
    foreach (string s in skipped) Console.WriteLine($"bench-ab: skipped {s}");
    foreach (string s in notComparable) Console.WriteLine($"bench-ab: not comparable (reported, not judged) {s}");
    foreach (string s in failed) Console.WriteLine($"bench-ab: FAILED {s}");
    foreach (string s in regressed) Console.WriteLine($"bench-ab: REGRESSED {s}");
    Console.WriteLine(regressed.Count + failed.Count == 0
        ? "bench-ab: PASS (no case slower than the reference commit by more than its tolerance)"
        : $"bench-ab: FAIL ({regressed.Count} regressed, {failed.Count} failed)");
    // The closing line CI's summary reads (.ci/run).
    Console.WriteLine($"bench-ab: {passed} passed, {regressed.Count + failed.Count} failed, {skipped.Count + notComparable.Count} skipped");
    return regressed.Count + failed.Count == 0 ? 0 : 1;
}

static double Geomean(IReadOnlyList<double> values) => Math.Exp(values.Average(Math.Log));

static string AbLine(AbMeasurement m, double tolerance)
{
    if (m.FailedBecause is not null) return $"  {m.Key,-48} FAILED: {m.FailedBecause}";
    if (m.NotComparableBecause is not null) return $"  {m.Key,-48} not comparable: {m.NotComparableBecause}";
    string verdict = m.Ratio > 1 + tolerance ? $"SLOWER by {m.Ratio - 1:0.0%} (allowed {tolerance:0%})"
        : m.Ratio < 1 - tolerance ? $"ok, faster by {1 - m.Ratio:0.0%}" : $"ok ({m.Ratio - 1:+0.0%;-0.0%;0.0%}, allowed {tolerance:0%})";
    return $"  {m.Key,-48} {Seconds(m.NewSeconds),10} {Seconds(m.OldSeconds),10}  {m.Ratio:F3} ({m.RatioQ1:F3}-{m.RatioQ3:F3}, {m.Rounds,2})   {verdict}   [{m.Clock}]";
}

static string Seconds(double s) => s >= 1 ? $"{s:F2} s" : s >= 1e-3 ? $"{s * 1e3:F2} ms" : $"{s * 1e6:F1} us";

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
      ab      --new PROGRAM --old PROGRAM [--new-env N=V]... [--old-env N=V]... [--reference TEXT] [--out DIR] [--retries N]
                                                  CI regression check: each quick case of two builds of this program (each
                                                  with its own libkernels next to it) timed interleaved; exit 1 on a regression
      side    --cases ID --threads T              one side of `ab` (started by it; answers over stdin/stdout)
      quick   --baseline FILE [--out DIR]         the quick set against the references, shown beside the recorded baseline
                                                  (a record of one machine kind: it never fails a run)
      quick   --baseline FILE --write-baseline [--tolerance T] [--why TEXT]
                                                  measure the quick set and write it as the new baseline
      baseline --baseline FILE --tolerance T --why TEXT RESULTS.json...
                                                  a baseline from several quick runs (each case's median ratio)
      report  --out DIR RESULTS.json...           merge result files (this machine's, a GPU machine's) into one report
    PATTERN matches case ids with '*': "gemm/cpu/*", "*/opencl:0/*". --threads N limits the CPU sides
    (libkernels, OpenBLAS, memcpy) to N threads; with 1, CPU cases are timed by thread CPU time.
    --note TEXT is stored with the results. Default DIR: benchmarks/results/latest.
    """;
