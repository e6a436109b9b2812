using System.Globalization;
using System.Text;

namespace Kernels.Benchmarks;

/// <summary>results.md: the targets first, then a table per family and the device-against-device comparison.</summary>
public static class MarkdownReport
{
    public static string Render(IReadOnlyList<ResultSet> sets)
    {
        var all = sets.SelectMany(s => s.Results).ToList();
        var md = new StringBuilder();
        md.AppendLine("# Kernels benchmark results").AppendLine();
        md.AppendLine("Every ratio is reference time / Kernels time measured in the same process on the same device");
        md.AppendLine("(above 1: faster than the reference). Throughput is GFLOP/s for GEMM and the training step,");
        md.AppendLine("GB/s read + written for memory-bound kernels, whose reference is a copy moving as many bytes.").AppendLine();

        foreach (var set in sets)
        {
            var m = set.Machine;
            md.AppendLine($"- **{set.Mode}** run, {set.Date:yyyy-MM-dd HH:mm} UTC: {m.Cpu}, {m.LogicalCores} logical cores, {m.Os}, {m.Runtime}");
            if (m.OpenBlas is not null) md.AppendLine($"  - OpenBLAS: {m.OpenBlas}");
            foreach (var d in m.Devices) md.AppendLine($"  - device {d}");
            foreach (var s in set.Skipped) md.AppendLine($"  - skipped: {s}");
            if (m.Note is not null) md.AppendLine($"  - note: {m.Note}");
        }
        md.AppendLine();

        var targets = all.Where(r => r.Target is not null).ToList();
        if (targets.Count > 0)
        {
            md.AppendLine("## Targets (issue 5)").AppendLine();
            md.AppendLine("| case | target | measured | reference | ratio | met | machine |");
            md.AppendLine("|---|---|---|---|---|---|---|");
            foreach (var r in targets)
            {
                var machine = sets.First(s => s.Results.Contains(r)).Machine;
                md.AppendLine($"| {r.Id} | {r.Target:0.0#}x {r.Reference} | {Throughput(r.KernelsThroughput, r.Unit)} | {Throughput(r.ReferenceThroughput, r.Unit)} | {Ratio(r)} | {(r.Ratio >= r.Target ? "yes" : "**no**")} | {machine.Cpu}; {r.DeviceDescription} |");
            }
            md.AppendLine();
        }

        foreach (var family in all.GroupBy(r => r.Family))
        {
            md.AppendLine($"## {family.Key}").AppendLine();
            md.AppendLine("| device | shape | Kernels time | Kernels | reference | reference time | reference throughput | ratio | method |");
            md.AppendLine("|---|---|---|---|---|---|---|---|---|");
            foreach (var r in family)
                md.AppendLine($"| {r.Device} | {r.Shape} | {Time(r.KernelsSeconds)} | {Throughput(r.KernelsThroughput, r.Unit)} | {r.Reference} | {Time(r.ReferenceSeconds)} | {Throughput(r.ReferenceThroughput, r.Unit)} | {Ratio(r)} | {r.Method} |");
            md.AppendLine();
        }

        var devices = all.Select(r => r.Device).Distinct().ToList();
        if (devices.Count > 1)
        {
            md.AppendLine("## Devices side by side (Kernels throughput; the plots show the same)").AppendLine();
            md.AppendLine($"| case | {string.Join(" | ", devices)} |");
            md.AppendLine($"|---|{string.Concat(devices.Select(_ => "---|"))}");
            foreach (var row in all.GroupBy(r => $"{r.Family} {r.Shape}"))
            {
                var cells = devices.Select(d => row.FirstOrDefault(r => r.Device == d) is { } r ? Throughput(r.KernelsThroughput, r.Unit) : "-");
                md.AppendLine($"| {row.Key} | {string.Join(" | ", cells)} |");
            }
            md.AppendLine();
        }
        return md.ToString();
    }

    public static string Ratio(CaseResult r) =>
        r.RatioLow is { } lo && r.RatioHigh is { } hi
            ? string.Create(CultureInfo.InvariantCulture, $"{r.Ratio:F2}x ({lo:F2}-{hi:F2})")
            : string.Create(CultureInfo.InvariantCulture, $"{r.Ratio:F2}x");

    public static string Throughput(double value, string unit) =>
        string.Create(CultureInfo.InvariantCulture, $"{value:F1} {unit}");

    public static string Time(double seconds) => seconds switch
    {
        < 1e-6 => string.Create(CultureInfo.InvariantCulture, $"{seconds * 1e9:F0} ns"),
        < 1e-3 => string.Create(CultureInfo.InvariantCulture, $"{seconds * 1e6:F1} us"),
        < 1 => string.Create(CultureInfo.InvariantCulture, $"{seconds * 1e3:F2} ms"),
        _ => string.Create(CultureInfo.InvariantCulture, $"{seconds:F2} s"),
    };
}
